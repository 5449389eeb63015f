//! The request context: made once at the edge of each plane, passed to wherever the service
//! authorizes or records.

use std::net::{IpAddr, SocketAddr};
use std::time::SystemTime;

/// What the listener knows about a connection; it puts one in every request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// The TCP peer (a proxy's address when behind one; see [`RequestContext::source_ip`]).
    pub peer: SocketAddr,
    /// Whether the connection is TLS.
    pub tls: bool,
}

/// What per-client limits count as one client: an IPv4 address, or an IPv6 address's /64 (one
/// host is routinely given a whole /64, so counting single IPv6 addresses would let it take as
/// many shares as it likes). An IPv4 address written as IPv6 (`::ffff:a.b.c.d`) is that IPv4 one.
pub fn client_network(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from_bits(v6.to_bits() & !u128::from(u64::MAX))),
        },
    }
}

/// How an identity proved itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    /// A registry token (`docker login -u AWS`, `Bearer`).
    Token,
    /// An access key id and its secret as HTTP Basic credentials.
    AccessKey,
    /// A SigV4 signature by an access key (the ECR API).
    SigV4,
    /// A console session cookie.
    Session,
}

/// Who is calling, resolved once when the request is authenticated; nothing later looks the
/// caller up again, so a key removed mid-request cannot turn its signer into someone else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// No credentials (anonymous pulls, `--no-auth`).
    Anonymous,
    /// The account's root user: allowed unless a resource policy denies it (see `evaluate`).
    Root { access_key_id: String, via: CredentialKind },
    /// An IAM user of the registry's account.
    User { name: String, access_key_id: String, via: CredentialKind },
    /// The server itself, doing work no request asked for (lifecycle expiry, GC, replication,
    /// cache fills): `task` names it in recorded events. Allowed like the root.
    Server { task: String },
}

/// The user name IAM gives the account root in `aws:username`-style places.
pub const ROOT_USER: &str = "root";

impl Identity {
    /// The name access logs and audit records show (`root` for the root user), `None` when anonymous.
    pub fn user_name(&self) -> Option<&str> {
        match self {
            Identity::Anonymous => None,
            Identity::Root { .. } => Some(ROOT_USER),
            Identity::User { name, .. } => Some(name),
            Identity::Server { task } => Some(task),
        }
    }

    pub fn access_key_id(&self) -> Option<&str> {
        match self {
            Identity::Anonymous | Identity::Server { .. } => None,
            Identity::Root { access_key_id, .. } | Identity::User { access_key_id, .. } => Some(access_key_id),
        }
    }

    /// The root user, or the server itself: the registry's administrators.
    pub fn is_root(&self) -> bool {
        matches!(self, Identity::Root { .. } | Identity::Server { .. })
    }

    /// The ARN IAM names this caller by in `account`: `arn:aws:iam::<account>:root` or
    /// `arn:aws:iam::<account>:user/<name>`; `anonymous` for no caller.
    pub fn arn(&self, account: &str) -> String {
        match self {
            Identity::Anonymous => "anonymous".into(),
            Identity::Root { .. } | Identity::Server { .. } => format!("arn:aws:iam::{account}:root"),
            Identity::User { name, .. } => format!("arn:aws:iam::{account}:user/{name}"),
        }
    }
}

/// One request, as every authorization decision and recorded event sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestContext {
    /// A UUID; the ECR plane returns it as `x-amzn-RequestId`, access and audit logs carry it.
    pub request_id: String,
    pub received_at: SystemTime,
    /// The client's address: the TCP peer, or the address a trusted proxy reported in
    /// `X-Forwarded-For`. `None` for work not started by a request (lifecycle, GC, replication).
    pub source_ip: Option<IpAddr>,
    /// Whether the client reached the server over TLS (`aws:SecureTransport`).
    pub secure_transport: bool,
    pub user_agent: Option<String>,
    pub identity: Identity,
}

impl RequestContext {
    /// The context of work the server does on its own (lifecycle expiry, GC, replication):
    /// `task` names the subsystem in recorded events, `request_id` identifies this run of it.
    pub fn server(task: &str, request_id: String) -> RequestContext {
        RequestContext {
            request_id,
            received_at: SystemTime::now(),
            source_ip: None,
            secure_transport: false,
            user_agent: None,
            identity: Identity::Server { task: task.to_owned() },
        }
    }
}

/// What a plane served, put on its response next to the [`RequestContext`]: the edge's request
/// metrics and the audit trail read it there, so neither needs to know either plane's routes.
#[derive(Debug, Clone, PartialEq)]
pub struct Served {
    /// The operation as metrics label it: the ECR operation on the ECR plane (`PutImage`), the
    /// `/v2/` operation on the OCI plane (`PutManifest`, `GetBlob`, …).
    pub operation: &'static str,
    /// The ECR operation CloudTrail records for it (on `/v2/` as ECR maps its Docker API: a
    /// manifest PUT is `PutImage`), and whether it changes anything (then it is audited).
    pub event_name: &'static str,
    /// The service CloudTrail would name (`ecr.amazonaws.com`; `iam.amazonaws.com` for user and
    /// access-key changes made in the console).
    pub event_source: &'static str,
    pub mutating: bool,
    /// The names and references the request gave (never a body's content or a credential): the
    /// audit record's `requestParameters`.
    pub parameters: serde_json::Map<String, serde_json::Value>,
    /// The error code and message the client got, if the request failed.
    pub error: Option<(&'static str, String)>,
    /// Why the caller was refused, when credentials were rejected (`invalid_credentials`,
    /// `invalid_signature`, …) or a policy denied the request (`access_denied`).
    pub auth_failure: Option<&'static str>,
    /// The access key id a refused caller presented outside the `Authorization` header (the
    /// console's sign-in form), for the audit record; the edge reads the header's itself.
    pub presented_access_key_id: Option<String>,
}

impl Served {
    pub fn new(operation: &'static str, event_name: &'static str, mutating: bool) -> Served {
        Served {
            operation,
            event_name,
            event_source: "ecr.amazonaws.com",
            mutating,
            parameters: serde_json::Map::new(),
            error: None,
            auth_failure: None,
            presented_access_key_id: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_is_an_ipv4_address_or_an_ipv6_64() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(client_network(ip("192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(client_network(ip("2001:db8:1:2:3:4:5:6")), ip("2001:db8:1:2::"));
        assert_eq!(client_network(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(client_network(ip("::1")), ip("::"));
    }
}

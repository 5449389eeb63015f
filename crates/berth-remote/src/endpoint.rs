//! Where a remote registry lives, and Docker Hub's naming rules.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use berth_spec::RepositoryName;
use reqwest::Url;

/// Docker Hub's API host; `docker.io` and `index.docker.io` are its names in image references.
const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";
const DOCKER_HUB_ALIASES: [&str; 3] = ["docker.io", "index.docker.io", DOCKER_HUB_API_HOST];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("registry URL {0:?} is neither host[:port] nor an http:// or https:// URL")]
    Malformed(String),
    #[error("registry URL {0:?} must be scheme://host[:port] only, without credentials, path, query or fragment")]
    NotARegistryRoot(String),
    #[error("plain http to the registry {0} is only allowed when it is on loopback; use https")]
    PlainHttpNotLoopback(String),
}

/// A registry's base URL (`/v2/` hangs below it).
///
/// A bare `host[:port]` means https, as ECR's `upstreamRegistryUrl`; a URL may say `http://`, which
/// callers accept only for loopback registries ([`Endpoint::require_tls_unless_loopback`]).
/// `docker.io` and `index.docker.io` become Docker Hub's API host, `registry-1.docker.io`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// `scheme://host[:port]/`.
    base: Url,
    docker_hub: bool,
}

impl Endpoint {
    pub fn parse(text: &str) -> Result<Endpoint, EndpointError> {
        let text = text.trim();
        // The URL parser drops tabs and newlines anywhere and C0 controls at either end: what
        // it would silently repair is refused instead.
        if text.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(EndpointError::Malformed(redact(text)));
        }
        let with_scheme = if text.contains("://") { text.to_owned() } else { format!("https://{text}") };
        let mut url = Url::parse(&with_scheme).map_err(|_| EndpointError::Malformed(redact(text)))?;
        let host_ok = match url.host() {
            Some(url::Host::Domain(name)) => is_dns_name(name),
            Some(_) => true,
            None => false,
        };
        if !matches!(url.scheme(), "http" | "https") || !host_ok {
            return Err(EndpointError::Malformed(redact(text)));
        }
        let bare = url.username().is_empty()
            && url.password().is_none()
            && url.path() == "/"
            && url.query().is_none()
            && url.fragment().is_none();
        if !bare {
            return Err(EndpointError::NotARegistryRoot(redact(text)));
        }
        let docker_hub = url.port().is_none()
            && url
                .host_str()
                .is_some_and(|host| DOCKER_HUB_ALIASES.iter().any(|alias| host.eq_ignore_ascii_case(alias)));
        if docker_hub {
            url.set_host(Some(DOCKER_HUB_API_HOST)).map_err(|_| EndpointError::Malformed(redact(text)))?;
        }
        Ok(Endpoint { base: url, docker_hub })
    }

    /// Whether both name one registry: the same scheme, host and port.
    pub fn same_registry(&self, other: &Endpoint) -> bool {
        self.base.origin() == other.base.origin()
    }

    pub fn is_docker_hub(&self) -> bool {
        self.docker_hub
    }

    pub fn is_https(&self) -> bool {
        self.base.scheme() == "https"
    }

    /// The host is a loopback address or `localhost` (which RFC 6761 reserves for loopback).
    pub fn is_loopback(&self) -> bool {
        match self.base.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(name)) => {
                let name = name.trim_end_matches('.');
                name.eq_ignore_ascii_case("localhost") || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
            }
            None => false,
        }
    }

    /// The rule Berth applies to configured upstreams and destinations: https, or plain http to
    /// loopback only (credentials and content would otherwise cross the network in the clear).
    pub fn require_tls_unless_loopback(&self) -> Result<(), EndpointError> {
        if self.is_https() || self.is_loopback() {
            Ok(())
        } else {
            Err(EndpointError::PlainHttpNotLoopback(self.to_string()))
        }
    }

    /// The name the registry knows `name` by: Docker Hub keeps official images under `library/`,
    /// so `nginx` is `library/nginx` there. Other registries take names as they are.
    pub fn remote_name(&self, name: &RepositoryName) -> RepositoryName {
        if self.docker_hub && !name.as_str().contains('/') {
            format!("library/{name}").parse().unwrap_or_else(|_| name.clone())
        } else {
            name.clone()
        }
    }

    /// `<base>/v2/<path>`; `path` is made of validated names, tags and digests, so joining cannot
    /// escape `/v2/`.
    pub(crate) fn v2_url(&self, path: &str) -> Url {
        let mut url = self.base.clone();
        url.set_path(&format!("/v2/{path}"));
        url
    }

    /// Whether `url` is this registry (scheme, host and port): only there does it get the
    /// registry's credentials.
    pub(crate) fn is_same_origin(&self, url: &Url) -> bool {
        url.scheme() == self.base.scheme()
            && url.host() == self.base.host()
            && url.port_or_known_default() == self.base.port_or_known_default()
    }
}

/// A host name a registry can have: dot-separated labels of letters, digits, hyphens (none at a
/// label's ends) and underscores (Compose service names), at most 63 characters each and 253 in
/// all, with an optional final dot.
fn is_dns_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    name.len() <= 253
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// The input may have held `user:password@`: keep only what is safe to echo.
fn redact(text: &str) -> String {
    match text.rsplit_once('@') {
        Some((_, rest)) => format!("<redacted>@{rest}"),
        None => text.to_owned(),
    }
}

impl FromStr for Endpoint {
    type Err = EndpointError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Endpoint::parse(s)
    }
}

impl fmt::Display for Endpoint {
    /// `scheme://host[:port]`, without the trailing slash.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.base.as_str().trim_end_matches('/'))
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Endpoint({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(text: &str) -> Endpoint {
        Endpoint::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn compose_names_and_a_final_dot_are_hosts() {
        assert_eq!(endpoint("http://my_registry:5000").to_string(), "http://my_registry:5000");
        assert_eq!(endpoint("registry.example.").to_string(), "https://registry.example.");
    }

    #[test]
    fn a_bare_host_means_https() {
        assert_eq!(endpoint("quay.io").to_string(), "https://quay.io");
        assert_eq!(endpoint("ghcr.io:443").to_string(), "https://ghcr.io");
        assert_eq!(endpoint("registry.example:5000").to_string(), "https://registry.example:5000");
        assert_eq!(endpoint(" public.ecr.aws/ ").to_string(), "https://public.ecr.aws");
        assert!(endpoint("quay.io").is_https());
    }

    #[test]
    fn urls_keep_their_scheme_and_port() {
        let e = endpoint("http://127.0.0.1:5001");
        assert_eq!(e.to_string(), "http://127.0.0.1:5001");
        assert!(!e.is_https());
        assert_eq!(e.v2_url("a/b/manifests/latest").as_str(), "http://127.0.0.1:5001/v2/a/b/manifests/latest");
        assert_eq!(endpoint("HTTPS://Quay.IO/").to_string(), "https://quay.io");
    }

    #[test]
    fn docker_hub_names_map_to_its_api_host() {
        for name in ["docker.io", "index.docker.io", "registry-1.docker.io", "https://docker.io"] {
            let e = endpoint(name);
            assert!(e.is_docker_hub(), "{name}");
            assert_eq!(e.to_string(), "https://registry-1.docker.io");
        }
        assert!(!endpoint("docker.io:5000").is_docker_hub());
        assert!(!endpoint("mirror.docker.io.example").is_docker_hub());
    }

    #[test]
    fn docker_hub_puts_single_component_names_under_library() {
        let hub = endpoint("docker.io");
        let name = |s: &str| s.parse::<RepositoryName>().unwrap();
        assert_eq!(hub.remote_name(&name("nginx")).as_str(), "library/nginx");
        assert_eq!(hub.remote_name(&name("bitnami/redis")).as_str(), "bitnami/redis");
        assert_eq!(endpoint("quay.io").remote_name(&name("nginx")).as_str(), "nginx");
    }

    #[test]
    fn anything_but_a_registry_root_is_refused() {
        let long_label = format!("{}.example", "a".repeat(64));
        let long_name = format!("{}example", "abcdefghi.".repeat(25));
        for bad in [
            "",
            "ftp://host",
            "https://",
            "http://:80",
            "not a url",
            "https://host:99999",
            "quay.io\0",
            "quay\n.io",
            "-bad-.example.com",
            "a..b",
            &long_label,
            &long_name,
        ] {
            assert!(matches!(Endpoint::parse(bad), Err(EndpointError::Malformed(_))), "{bad:?}");
        }
        for bad in ["https://host/v2/", "host/path", "https://host?x=1", "https://host/#f"] {
            assert!(matches!(Endpoint::parse(bad), Err(EndpointError::NotARegistryRoot(_))), "{bad:?}");
        }
    }

    #[test]
    fn credentials_in_the_url_are_refused_and_not_echoed() {
        let error = Endpoint::parse("https://user:hunter2@registry.example").unwrap_err();
        assert!(matches!(error, EndpointError::NotARegistryRoot(_)));
        assert!(!error.to_string().contains("hunter2"), "{error}");
    }

    #[test]
    fn plain_http_only_to_loopback() {
        for ok in ["http://127.0.0.1:5000", "http://127.1.2.3", "http://[::1]:5000", "http://localhost:5000", "quay.io"]
        {
            assert!(endpoint(ok).require_tls_unless_loopback().is_ok(), "{ok}");
        }
        for refused in ["http://10.0.0.1:5000", "http://registry.example", "http://[::2]"] {
            let error = endpoint(refused).require_tls_unless_loopback().unwrap_err();
            assert!(matches!(error, EndpointError::PlainHttpNotLoopback(_)), "{refused}");
        }
    }

    #[test]
    fn origin_is_scheme_host_and_port() {
        let e = endpoint("https://registry.example");
        assert!(e.is_same_origin(&Url::parse("https://registry.example:443/v2/x/blobs/uploads/1").unwrap()));
        assert!(!e.is_same_origin(&Url::parse("http://registry.example/v2/").unwrap()));
        assert!(!e.is_same_origin(&Url::parse("https://registry.example:8443/v2/").unwrap()));
        assert!(!e.is_same_origin(&Url::parse("https://cdn.example/blob").unwrap()));
    }
}

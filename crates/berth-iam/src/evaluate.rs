//! The one authorization decision, IAM's rules for a request within one account:
//!
//! 1. The server itself is always allowed; so is the account root for the actions that repair
//!    policies (`ROOT_REPAIRS`), so no policy can lock it out.
//! 2. Otherwise an explicit `Deny` in any policy in force wins — for the root only a `Deny` in a
//!    resource policy as written binds (it has no identity policies, and a fail-closed stand-in
//!    for an unreadable policy does not bind it), as IAM's resource policies bind an account's root.
//! 3. Otherwise the request is allowed if an identity policy of the caller allows it, or a
//!    resource policy (the repository's, or the registry's, whose statements cover every
//!    repository) allows it with a `Principal` that names the caller — within one account either
//!    side suffices.
//! 4. Otherwise the root is allowed (IAM never denies it implicitly); anyone else is implicitly
//!    denied.
//!
//! Pure and allocation-free on the common path: the statements that decided are kept inline in
//! the [`Decision`] (policy names are shared `Arc<str>`s).

use std::fmt;
use std::sync::Arc;

use smallvec::SmallVec;

use crate::actions;
use crate::context::Identity;
use crate::keys::ConditionKeys;
use crate::policy::{Effect, Policy};

/// One request to authorize.
pub struct AuthzRequest<'a> {
    /// `ecr:PutImage`, or a Berth action (`berth:GetMetrics`); case-insensitive as in IAM.
    pub action: &'a str,
    /// The repository's ARN ([`crate::arn::repository_arn`]), `arn:…:repository/*` for list
    /// calls, or `*` for registry-wide calls.
    pub resource: &'a str,
    /// The caller, the account and the condition-key values.
    pub keys: &'a ConditionKeys<'a>,
}

/// A policy with the name decisions report it by (`AmazonEC2ContainerRegistryReadOnly`,
/// `user/ci/push-team-a`, `repository/team-a/app`).
#[derive(Debug, Clone)]
pub struct NamedPolicy {
    pub name: Arc<str>,
    pub policy: Arc<Policy>,
    /// False for a deny-all that stands in for a stored policy that cannot be read: the root
    /// must stay able to repair what fails closed.
    binds_root: bool,
}

impl NamedPolicy {
    pub fn new(name: &str, policy: Arc<Policy>) -> NamedPolicy {
        NamedPolicy { name: Arc::from(name), policy, binds_root: true }
    }

    /// This policy with no principal naming `user` of `account` ([`Policy::forgetting_user`]).
    pub fn forgetting_user(&self, account: &str, user: &str) -> NamedPolicy {
        NamedPolicy { policy: Arc::new(self.policy.forgetting_user(account, user)), ..self.clone() }
    }

    /// `policy` enforced in place of a stored one that cannot be read (it binds everyone but
    /// the root).
    pub fn fail_closed(name: &str, policy: Arc<Policy>) -> NamedPolicy {
        NamedPolicy { binds_root: false, ..NamedPolicy::new(name, policy) }
    }
}

/// What the account root may always do, whatever a policy denies: read, replace and remove the
/// repository and registry policies (as S3 keeps a bucket's policy within its root's reach).
const ROOT_REPAIRS: [&str; 6] = [
    actions::GET_REPOSITORY_POLICY,
    actions::SET_REPOSITORY_POLICY,
    actions::DELETE_REPOSITORY_POLICY,
    actions::GET_REGISTRY_POLICY,
    actions::PUT_REGISTRY_POLICY,
    actions::DELETE_REGISTRY_POLICY,
];

/// The policies in force for one request.
#[derive(Debug, Clone, Copy, Default)]
pub struct PolicySet<'a> {
    /// The caller's identity policies (for anonymous callers, what the server grants them).
    pub identity: &'a [NamedPolicy],
    /// The repository's policy, if the request is about a repository that has one.
    pub repository: Option<&'a NamedPolicy>,
    /// The registry policy (ECR's `V2` scope: it applies to every repository).
    pub registry: Option<&'a NamedPolicy>,
}

impl<'a> PolicySet<'a> {
    fn iter(&self) -> impl Iterator<Item = (PolicySource, &'a NamedPolicy)> {
        let identity = self.identity.iter().map(|p| (PolicySource::Identity, p));
        let repository = self.repository.map(|p| (PolicySource::Repository, p));
        let registry = self.registry.map(|p| (PolicySource::Registry, p));
        identity.chain(repository).chain(registry)
    }

    /// Whether a decision under these policies may differ between two requests of the same
    /// caller, action and repository (see [`Policy::varies_per_request`]); if not, it can be cached.
    pub fn varies_per_request(&self) -> bool {
        self.iter().any(|(_, named)| named.policy.varies_per_request())
    }
}

/// Where a policy came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicySource {
    Identity,
    Repository,
    Registry,
}

impl PolicySource {
    /// IAM's name for the policy type in access-denied messages.
    fn policy_type(self) -> &'static str {
        match self {
            PolicySource::Identity => "an identity-based policy",
            PolicySource::Repository | PolicySource::Registry => "a resource-based policy",
        }
    }
}

impl fmt::Display for PolicySource {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            PolicySource::Identity => "identity policy",
            PolicySource::Repository => "repository policy",
            PolicySource::Registry => "registry policy",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Allowed,
    ExplicitDeny,
    ImplicitDeny,
}

/// A statement that took part in a decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchedStatement {
    pub policy: Arc<str>,
    pub source: PolicySource,
    pub sid: Option<Arc<str>>,
    /// The statement's position in its policy, from 0.
    pub index: usize,
    pub effect: Effect,
}

impl fmt::Display for MatchedStatement {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{} by Statement[{}]", self.effect, self.index)?;
        if let Some(sid) = &self.sid {
            write!(f, " (Sid {sid:?})")?;
        }
        write!(f, " of {} {:?}", self.source, self.policy)
    }
}

/// An authorization decision and the statements that decided it: every matching `Deny` for an
/// explicit deny, the matching `Allow`s for an allow, none for an implicit deny or the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub outcome: Outcome,
    statements: SmallVec<[MatchedStatement; 2]>,
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        self.outcome == Outcome::Allowed
    }

    pub fn statements(&self) -> &[MatchedStatement] {
        &self.statements
    }

    /// The message of ECR's `AccessDeniedException` (also used for `/v2/`'s `DENIED`), in IAM's
    /// wording; `None` when allowed. Like IAM, it names one policy type when several denied.
    pub fn denial_message(&self, request: &AuthzRequest) -> Option<String> {
        let reason = match self.outcome {
            Outcome::Allowed => return None,
            Outcome::ImplicitDeny => format!("because no identity-based policy allows the {} action", request.action),
            Outcome::ExplicitDeny => {
                let source = self.statements.first().map_or(PolicySource::Identity, |s| s.source);
                format!("with an explicit deny in {}", source.policy_type())
            }
        };
        let user = request.keys.identity().arn(request.keys.account());
        Some(format!(
            "User: {user} is not authorized to perform: {} on resource: {} {reason}",
            request.action, request.resource
        ))
    }
}

/// One line per deciding statement, for `berth policy simulate` and debug logs.
impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match (self.outcome, self.statements.is_empty()) {
            (Outcome::Allowed, true) => {
                return f.write_str(
                    "allowed: the root user (refused only by a resource policy's Deny, never the policy actions)",
                );
            }
            (Outcome::Allowed, false) => f.write_str("allowed")?,
            (Outcome::ExplicitDeny, _) => f.write_str("explicit deny")?,
            (Outcome::ImplicitDeny, _) => return f.write_str("implicit deny: no statement allows the request"),
        }
        for statement in &self.statements {
            write!(f, "\n  {statement}")?;
        }
        Ok(())
    }
}

/// IAM's decision on `request` under `policies`.
pub fn evaluate(request: &AuthzRequest, policies: &PolicySet) -> Decision {
    let allowed = || Decision { outcome: Outcome::Allowed, statements: SmallVec::new() };
    let root = match request.keys.identity() {
        Identity::Server { .. } => return allowed(),
        Identity::Root { .. } if ROOT_REPAIRS.iter().any(|a| a.eq_ignore_ascii_case(request.action)) => {
            return allowed();
        }
        identity => matches!(identity, Identity::Root { .. }),
    };
    let mut denies = SmallVec::new();
    let mut allows = SmallVec::new();
    for (source, named) in policies.iter() {
        if root && (source == PolicySource::Identity || !named.binds_root) {
            continue;
        }
        for (index, statement) in named.policy.statements().iter().enumerate() {
            // Once something denies, allows no longer matter: skip their evaluation. The root
            // needs no allow.
            if statement.effect == Effect::Allow && (root || !denies.is_empty()) {
                continue;
            }
            let truth = statement.truth(request.action, request.resource, request.keys);
            if !statement.effect.applies(truth) {
                continue;
            }
            let matched = MatchedStatement {
                policy: named.name.clone(),
                source,
                sid: statement.sid.clone(),
                index,
                effect: statement.effect,
            };
            match statement.effect {
                Effect::Deny => denies.push(matched),
                Effect::Allow => allows.push(matched),
            }
        }
    }
    if !denies.is_empty() {
        Decision { outcome: Outcome::ExplicitDeny, statements: denies }
    } else if !allows.is_empty() {
        Decision { outcome: Outcome::Allowed, statements: allows }
    } else if root {
        allowed()
    } else {
        Decision { outcome: Outcome::ImplicitDeny, statements: SmallVec::new() }
    }
}

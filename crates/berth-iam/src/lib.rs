//! Who is asking, and may they: the one request context both planes (and the console) build at
//! their edge ([`RequestContext`]), the one identity type ([`Identity`]), and the pure IAM policy
//! evaluator every authorization decision goes through.
//!
//! Pure: no I/O, no async, no clock reads except what the caller puts in the context. That keeps
//! every decision reproducible (`berth policy simulate` replays one offline) and fuzzable.
//!
//! ```
//! use std::sync::Arc;
//! use berth_iam::*;
//!
//! let policy = Policy::parse_identity(managed::by_name(managed::PULL_ONLY).unwrap(), SizeLimit::MANAGED_POLICY)?;
//! let attached = [NamedPolicy::new(managed::PULL_ONLY, Arc::new(policy))];
//! let context = RequestContext {
//!     identity: Identity::User { name: "node".into(), access_key_id: "AKIA1".into(), via: CredentialKind::Token },
//!     ..RequestContext::server("example", "req-1".into())
//! };
//! let keys = ConditionKeys::new(&context, "123456789012");
//! let resource = arn::repository_arn("us-east-1", "123456789012", "app");
//! let pull = AuthzRequest { action: actions::BATCH_GET_IMAGE, resource: &resource, keys: &keys };
//! let policies = PolicySet { identity: &attached, ..PolicySet::default() };
//! assert!(evaluate(&pull, &policies).is_allowed());
//! let push = AuthzRequest { action: actions::PUT_IMAGE, ..pull };
//! let decision = evaluate(&push, &policies);
//! assert_eq!(decision.outcome, Outcome::ImplicitDeny);
//! assert_eq!(
//!     decision.denial_message(&push).unwrap(),
//!     "User: arn:aws:iam::123456789012:user/node is not authorized to perform: ecr:PutImage on resource: \
//!      arn:aws:ecr:us-east-1:123456789012:repository/app because no identity-based policy allows the ecr:PutImage action"
//! );
//! # Ok::<(), PolicyError>(())
//! ```

pub mod actions;
pub mod arn;
mod condition;
mod context;
mod evaluate;
mod json;
mod keys;
pub mod managed;
mod policy;
mod truth;
mod variables;
pub mod wildcard;

pub use context::{ConnectionInfo, CredentialKind, Identity, RequestContext, Served, client_network};
pub use evaluate::{AuthzRequest, Decision, MatchedStatement, NamedPolicy, Outcome, PolicySet, PolicySource, evaluate};
pub use keys::{ConditionKeys, Tag, Tags};
pub use policy::{Effect, Policy, PolicyError, PolicyKind, SizeLimit};

#[cfg(test)]
mod tests;

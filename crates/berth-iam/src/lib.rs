//! Who is asking, and may they: the one request context both planes (and the console) build at
//! their edge ([`RequestContext`]), the one identity type ([`Identity`]), and the pure IAM policy
//! evaluator every authorization decision goes through.
//!
//! Pure: no I/O, no async, no clock reads except what the caller puts in the context. That keeps
//! every decision reproducible (`berth policy simulate` replays one offline) and fuzzable.

mod context;

pub use context::{ConnectionInfo, CredentialKind, Identity, RequestContext};

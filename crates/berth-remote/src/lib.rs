//! Berth as a client of other OCI registries: the pull-through cache's upstreams (Docker Hub,
//! GHCR, quay, ECR, another Berth, distribution's registry) and replication's destinations.
//!
//! A [`Client`] is one connection pool with its timeouts and trust roots; [`Client::remote`]
//! gives a [`Remote`] per registry and credentials, which keeps that registry's auth state
//! (scheme learned from its first challenge, Bearer tokens cached per scope until shortly before
//! they expire). Both are cheap to clone. Nothing is global.
//!
//! Invariants:
//! - Credentials and tokens never reach logs or error messages, and go only to the registry's
//!   own origin (scheme, host, port) and its token realm: never to another origin a redirect
//!   or `Location` leads to (S3, a CDN).
//! - Content is verified: a manifest fetched by digest (or announced with one) must hash to it;
//!   a whole blob's stream ends in [`Error::DigestMismatch`] rather than cleanly if it does not.
//! - Blobs stream both ways; memory per transfer is bounded by the pieces in flight.
//!
//! Errors are typed so a caller can tell an unavailable registry ([`Error::is_unavailable`]:
//! serve from cache, retry later) from a missing image or refused credentials.

mod auth;
mod config;
mod credentials;
mod endpoint;
mod error;
mod pull;
mod push;
mod remote;
mod transport;

pub use config::{ClientConfig, TrustRoots};
pub use credentials::{Credentials, Secret};
pub use endpoint::{Endpoint, EndpointError};
pub use error::{Error, Result};
pub use pull::{BlobStream, ByteRange, ContentRange, FetchedManifest, ManifestHead};
pub use push::{Mount, UploadSession};
pub use remote::{Client, Remote};

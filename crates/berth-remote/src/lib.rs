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

pub use config::{ClientConfig, TrustRoots, http_client};
pub use credentials::{Credentials, Secret};
pub use endpoint::{Endpoint, EndpointError};
pub use error::{Error, Result};
pub use pull::{BlobStream, ByteRange, ContentRange, FetchedManifest, ManifestHead};
pub use push::{Mount, UploadSession};
pub use remote::{Client, Remote};

#[cfg(test)]
mod tests {
    use super::*;
    use berth_spec::{Digest, Reference, RepositoryName};
    use bytes::Bytes;

    /// The cache serves a blob from one task while another stores it, and replication runs in
    /// background tasks: handles, streams and every operation's future must move between threads.
    #[test]
    fn handles_streams_and_futures_are_send() {
        fn send<T: Send + 'static>(_: T) {}
        fn send_sync<T: Send + Sync + 'static>() {}
        send_sync::<Client>();
        send_sync::<Remote>();
        send_sync::<Error>();
        send_sync::<UploadSession>();
        fn stream<T: futures::Stream<Item = Result<Bytes>> + Send + Unpin + 'static>() {}
        stream::<BlobStream>();

        let remote =
            Client::new(ClientConfig::default()).unwrap().remote("quay.io".parse().unwrap(), Credentials::Anonymous);
        let name: RepositoryName = "a/b".parse().unwrap();
        let digest = Digest::sha256_of(b"");
        let reference = Reference::Digest(digest.clone());
        let body = futures::stream::empty::<std::result::Result<Bytes, std::io::Error>>();
        let (r, n, d, f) = (remote.clone(), name.clone(), digest.clone(), reference.clone());
        send(async move { r.get_manifest(&n, &f).await });
        let (r, n, d2) = (remote.clone(), name.clone(), d.clone());
        send(async move { r.get_blob(&n, &d2, None).await });
        let (r, n) = (remote.clone(), name.clone());
        send(async move { r.push_blob(&n, &d, 0, body, None).await });
        let (r, n) = (remote.clone(), name.clone());
        send(async move { r.mount_blob(&n, &digest, &n).await });
        send(async move { remote.put_manifest(&name, &reference, "t", Bytes::new()).await });
    }
}

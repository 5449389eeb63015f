//! Media types the registry understands. Manifests are served with exactly the type they were
//! pushed with, except an image manifest pulled by tag by a client that does not accept it
//! ([`crate::convert`]).

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// The empty JSON object `{}` (OCI's "empty descriptor"), used as config of artifacts.
pub const EMPTY_JSON: &[u8] = b"{}";

/// Every manifest media type the registry stores, for `Accept` negotiation lists.
pub const MANIFEST_TYPES: [&str; 4] = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST];

/// Strips parameters (`; charset=...`) and whitespace from a Content-Type value.
pub fn essence(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or("").trim()
}

/// Layers that clients fetch from elsewhere (`urls`); their blobs need not be in the registry.
pub fn is_non_distributable(media_type: &str) -> bool {
    media_type.contains(".nondistributable.") || media_type.contains(".foreign.")
}

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

/// Whether `name` is a media type as the image spec requires of descriptors (RFC 6838's
/// restricted names: `type/subtype`, each 1–127 characters, starting alphanumeric), without
/// parameters.
pub fn is_media_type(name: &str) -> bool {
    let restricted = |part: &str| {
        let mut chars = part.chars();
        part.len() <= 127
            && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
            && chars.all(|c| c.is_ascii_alphanumeric() || "!#$&^_.+-".contains(c))
    };
    name.split_once('/').is_some_and(|(kind, subtype)| restricted(kind) && restricted(subtype))
}

/// Layers that clients fetch from elsewhere (`urls`); their blobs need not be in the registry.
pub fn is_non_distributable(media_type: &str) -> bool {
    media_type.contains(".nondistributable.") || media_type.contains(".foreign.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_are_rfc_6838_restricted_names() {
        for good in [OCI_MANIFEST, "application/vnd.cncf.helm.chart.content.v1.tar+gzip", "a/b", "text/x-c!#$&^_.+-"] {
            assert!(is_media_type(good), "{good}");
        }
        let long = format!("application/{}", "x".repeat(128));
        for bad in ["", "garbage", "/b", "a/", "a/b/c", "a b/c", "-a/b", "a/.b", "a/b; charset=x", long.as_str()] {
            assert!(!is_media_type(bad), "{bad}");
        }
    }
}

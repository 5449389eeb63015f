//! `Manifest::parse` under every Content-Type a client may send.

use berth_spec::manifest::MAX_DESCRIPTOR_SIZE;
use berth_spec::{Digest, Manifest, ManifestKind, media};

const CONTENT_TYPES: [Option<&str>; 9] = [
    None,
    Some(media::OCI_MANIFEST),
    Some(media::OCI_INDEX),
    Some(media::DOCKER_MANIFEST),
    Some(media::DOCKER_LIST),
    Some(media::DOCKER_SCHEMA1_SIGNED),
    Some("application/vnd.oci.image.manifest.v1+json; charset=utf-8"),
    Some("application/json"),
    Some(""),
];

/// The first byte picks the Content-Type, the rest is the body. What parses is one of the four
/// manifest kinds with the members its kind requires, sizes that fit int64 (also in sum),
/// well-formed digests, and means the same after a canonical re-serialisation (no duplicate key
/// or other ambiguity survived).
pub fn manifest(data: &[u8]) {
    let Some((selector, body)) = data.split_first() else { return };
    let content_type = CONTENT_TYPES[usize::from(*selector) % CONTENT_TYPES.len()];
    let Ok(parsed) = Manifest::parse(body, content_type) else { return };

    match parsed.kind {
        ManifestKind::Image => {
            assert!([media::OCI_MANIFEST, media::DOCKER_MANIFEST].contains(&parsed.media_type.as_str()));
            assert!(parsed.config.is_some() && parsed.manifests.is_empty());
        }
        ManifestKind::Index => {
            assert!([media::OCI_INDEX, media::DOCKER_LIST].contains(&parsed.media_type.as_str()));
            assert!(parsed.config.is_none() && parsed.layers.is_empty());
        }
    }
    let listed = parsed.config.iter().chain(&parsed.layers).chain(&parsed.manifests);
    let mut total: u64 = 0;
    for descriptor in listed.clone().chain(&parsed.subject) {
        assert_eq!(descriptor.digest.as_str().parse::<Digest>().as_ref(), Ok(&descriptor.digest));
        assert!(descriptor.size <= MAX_DESCRIPTOR_SIZE);
    }
    for descriptor in listed {
        total = total.checked_add(descriptor.size).expect("a parsed manifest's sizes cannot overflow");
    }
    assert!(total <= MAX_DESCRIPTOR_SIZE);
    for blob in parsed.required_blobs() {
        assert!(parsed.config.as_ref() == Some(blob) || parsed.layers.contains(blob));
    }

    let value: serde_json::Value = serde_json::from_slice(body).expect("a manifest that parses is JSON");
    let canonical = serde_json::to_vec(&value).expect("JSON values serialise");
    assert_eq!(Manifest::parse(&canonical, content_type), Ok(parsed), "re-serialised, the manifest changed meaning");
}

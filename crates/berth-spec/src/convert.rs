//! ECR's manifest conversion on pulls by tag: a client that accepts Docker schema 2 but not OCI
//! (or the reverse) gets the stored image manifest rewritten into the format it names, as ECR's
//! "image manifest conversion" table documents. Pulls by digest are never converted (the digest
//! names the stored bytes), nor are indexes, artifacts or schema 1 (which would need signing).
//!
//! Only media types change; every other field, unknown ones too, keeps its value and order, so
//! the config and layers are the same blobs.

use serde_json::Value;

use crate::manifest::MAX_MANIFEST_BYTES;
use crate::media::{DOCKER_MANIFEST, OCI_MANIFEST};

/// Config and layer media types, Docker schema 2 ↔ OCI image spec.
const DESCRIPTOR_TYPES: [(&str, &str); 6] = [
    ("application/vnd.docker.container.image.v1+json", "application/vnd.oci.image.config.v1+json"),
    ("application/vnd.docker.image.rootfs.diff.tar.gzip", "application/vnd.oci.image.layer.v1.tar+gzip"),
    (
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    ),
    ("application/vnd.docker.image.rootfs.diff.tar", "application/vnd.oci.image.layer.v1.tar"),
    ("application/vnd.docker.image.rootfs.diff.tar.zstd", "application/vnd.oci.image.layer.v1.tar+zstd"),
    ("application/vnd.docker.image.rootfs.foreign.diff.tar", "application/vnd.oci.image.layer.nondistributable.v1.tar"),
];

/// The format to convert a manifest stored as `stored_type` to for a client accepting
/// `accepted` (media types, as in an `Accept` header), if any: `None` when the stored bytes are
/// what it gets — it accepts them (or anything, or said nothing), or no conversion gives it a
/// format it names. Reads no manifest; [`convert`] then does the rewriting.
pub fn target_for(stored_type: &str, accepted: &[&str]) -> Option<&'static str> {
    let takes = |wanted: &str| accepted.iter().any(|a| a.eq_ignore_ascii_case(wanted));
    if accepted.is_empty() || takes(stored_type) || takes("*/*") || takes("application/*") {
        return None;
    }
    match stored_type {
        DOCKER_MANIFEST if takes(OCI_MANIFEST) => Some(OCI_MANIFEST),
        OCI_MANIFEST if takes(DOCKER_MANIFEST) => Some(DOCKER_MANIFEST),
        _ => None,
    }
}

/// `content`, an image manifest in the other format, rewritten as `target` (`DOCKER_MANIFEST` or
/// `OCI_MANIFEST`, from [`target_for`]); `None` when some part has no counterpart there (an
/// artifact, a `subject`, a layer type Docker does not know) or the result would be larger than a
/// manifest may be.
pub fn convert(content: &[u8], target: &str) -> Option<Vec<u8>> {
    let to_oci = target == OCI_MANIFEST;
    let mut manifest: Value = serde_json::from_slice(content).ok()?;
    let object = manifest.as_object_mut()?;
    // Schema 2 has neither; dropping them would change what the manifest means.
    if !to_oci && (object.contains_key("subject") || object.contains_key("artifactType")) {
        return None;
    }
    object.insert("mediaType".into(), Value::String(target.into()));
    let retype = |descriptor: &mut Value| -> Option<()> {
        let media_type = descriptor.get_mut("mediaType")?;
        let counterpart = DESCRIPTOR_TYPES.iter().find_map(|(docker, oci)| {
            let (from, to) = if to_oci { (docker, oci) } else { (oci, docker) };
            media_type.as_str().is_some_and(|m| m.eq_ignore_ascii_case(from)).then_some(*to)
        })?;
        *media_type = Value::String(counterpart.into());
        Some(())
    };
    retype(object.get_mut("config")?)?;
    for layer in object.get_mut("layers")?.as_array_mut()? {
        retype(layer)?;
    }
    // Compact, and never more than a registry takes (clients cap what they read at 4 MiB too).
    let converted = serde_json::to_vec(&manifest).ok()?;
    (converted.len() <= MAX_MANIFEST_BYTES).then_some(converted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Manifest, ManifestKind};

    /// What a client accepting `accepted` gets instead of `content`, as the registry composes it.
    fn for_client(stored_type: &str, content: &[u8], accepted: &[&str]) -> Option<(&'static str, Vec<u8>)> {
        let target = target_for(stored_type, accepted)?;
        Some((target, convert(content, target)?))
    }

    const DOCKER: &str = r#"{
   "schemaVersion": 2,
   "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
   "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 7023,
              "digest": "sha256:b5b2b2c507a0944348e0303114d8d93aaaa081732b86451d9bce1f432a537bc7"},
   "layers": [
      {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 32654,
       "digest": "sha256:e692418e4cbaf90ca69d05a66403747baa33ee08806650b51fab815ad7fc331f"},
      {"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", "size": 16724,
       "digest": "sha256:3c3a4604a545cdc127456d94e421cd355bca5b528f4a9c1905b15da2eb4a4c6b",
       "urls": ["https://example.com/layer"]}
   ]
}"#;

    #[test]
    fn docker_to_oci_and_back_keeps_every_blob() {
        let (media_type, oci) = for_client(DOCKER_MANIFEST, DOCKER.as_bytes(), &[OCI_MANIFEST]).unwrap();
        assert_eq!(media_type, OCI_MANIFEST);
        let parsed = Manifest::parse_pushed(&oci, Some(OCI_MANIFEST)).unwrap();
        let docker = Manifest::parse(DOCKER.as_bytes(), None).unwrap();
        assert_eq!((parsed.media_type.as_str(), parsed.kind), (OCI_MANIFEST, ManifestKind::Image));
        let config = parsed.config.as_ref().unwrap();
        assert_eq!(config.media_type, "application/vnd.oci.image.config.v1+json");
        assert_eq!((&config.digest, config.size), (&docker.config.as_ref().unwrap().digest, 7023));
        let layer_types: Vec<_> = parsed.layers.iter().map(|l| l.media_type.as_str()).collect();
        assert_eq!(
            layer_types,
            [
                "application/vnd.oci.image.layer.v1.tar+gzip",
                "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            ]
        );
        assert_eq!(parsed.layers[1].urls, ["https://example.com/layer"]);
        let digests = |m: &Manifest| m.layers.iter().map(|l| l.digest.clone()).collect::<Vec<_>>();
        assert_eq!(digests(&parsed), digests(&docker));

        let (media_type, back) = for_client(OCI_MANIFEST, &oci, &[DOCKER_MANIFEST]).unwrap();
        assert_eq!(media_type, DOCKER_MANIFEST);
        assert_eq!(Manifest::parse_pushed(&back, Some(DOCKER_MANIFEST)).unwrap(), docker);
    }

    #[test]
    fn stored_bytes_when_the_client_takes_them_or_says_nothing() {
        let docker = DOCKER.as_bytes();
        assert_eq!(for_client(DOCKER_MANIFEST, docker, &[]), None);
        assert_eq!(for_client(DOCKER_MANIFEST, docker, &[OCI_MANIFEST, DOCKER_MANIFEST]), None);
        assert_eq!(for_client(DOCKER_MANIFEST, docker, &[OCI_MANIFEST, "*/*"]), None);
        assert_eq!(
            for_client(DOCKER_MANIFEST, docker, &["APPLICATION/VND.DOCKER.DISTRIBUTION.MANIFEST.V2+JSON"]),
            None
        );
        // Nothing converts to schema 1, nor into or out of an index.
        assert_eq!(for_client(DOCKER_MANIFEST, docker, &[crate::media::DOCKER_SCHEMA1_SIGNED]), None);
        assert_eq!(for_client(crate::media::OCI_INDEX, b"{}", &[crate::media::DOCKER_LIST]), None);
    }

    #[test]
    fn artifacts_and_unknown_layers_stay_as_stored() {
        let artifact = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
            "artifactType":"application/vnd.example.sbom",
            "config":{"mediaType":"application/vnd.oci.empty.v1+json","size":2,
              "digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"},
            "layers":[]}"#;
        assert_eq!(for_client(OCI_MANIFEST, artifact.as_bytes(), &[DOCKER_MANIFEST]), None);
        let helm = DOCKER.replace("application/vnd.docker.container.image.v1+json", "application/vnd.cncf.helm.config");
        assert_eq!(for_client(DOCKER_MANIFEST, helm.as_bytes(), &[OCI_MANIFEST]), None);
        assert_eq!(for_client(DOCKER_MANIFEST, b"not json", &[OCI_MANIFEST]), None);
        // Docker's longer layer type makes an OCI manifest just under the limit go over it.
        let (_, oci) = for_client(DOCKER_MANIFEST, DOCKER.as_bytes(), &[OCI_MANIFEST]).unwrap();
        let with_layers = |n: usize| {
            let mut manifest: serde_json::Value = serde_json::from_slice(&oci).unwrap();
            let layer = manifest["layers"][0].clone();
            manifest["layers"] = serde_json::Value::Array(vec![layer; n]);
            serde_json::to_vec(&manifest).unwrap()
        };
        let layer_bytes = with_layers(2).len() - with_layers(1).len();
        let most = (MAX_MANIFEST_BYTES - 1000) / layer_bytes;
        assert!(with_layers(most).len() <= MAX_MANIFEST_BYTES);
        assert_eq!(for_client(OCI_MANIFEST, &with_layers(most), &[DOCKER_MANIFEST]), None);
        // The output is compact: one with a tenth fewer layers converts, within the limit.
        let (_, fits) = for_client(OCI_MANIFEST, &with_layers(most * 9 / 10), &[DOCKER_MANIFEST]).unwrap();
        assert!(fits.len() <= MAX_MANIFEST_BYTES);
    }
}

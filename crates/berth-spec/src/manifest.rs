//! Manifest parsing. A manifest is stored and served as the exact bytes that were pushed; parsing
//! only validates it and extracts what the registry must track: the blobs it needs, the child
//! manifests of an index, its subject, and what the referrers API reports about it.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::digest::Digest;
use crate::media;

/// The distribution spec lets a registry bound manifest size; 4 MiB is what distribution and ECR use.
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is not valid JSON: {0}")]
    Json(String),
    #[error("Docker schema 1 manifests are not supported; push schema 2 or OCI (any docker/buildx since 2017 does)")]
    Schema1,
    #[error("manifest schemaVersion must be 2")]
    SchemaVersion,
    #[error("Content-Type {header:?} does not match the manifest's mediaType {body:?}")]
    MediaTypeMismatch { header: String, body: String },
    #[error("manifest media type {0:?} is not supported")]
    UnsupportedMediaType(String),
    #[error("manifest has no mediaType and no Content-Type was given")]
    MissingMediaType,
    #[error("{media_type} manifest lacks required field {field:?}")]
    MissingField { media_type: String, field: &'static str },
    #[error("manifest is larger than {MAX_MANIFEST_BYTES} bytes")]
    TooLarge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    /// Docker v2 schema 2 manifest or OCI image manifest: a config and layers.
    Image,
    /// Docker manifest list or OCI image index: child manifests.
    Index,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default)]
    pub variant: Option<String>,
    #[serde(default, rename = "os.version")]
    pub os_version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default)]
    pub artifact_type: Option<String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub platform: Option<Platform>,
    #[serde(default)]
    pub urls: Vec<String>,
}

impl Descriptor {
    /// True when the registry must hold this layer's blob: foreign/non-distributable layers are
    /// fetched by clients from their `urls`.
    pub fn requires_blob(&self) -> bool {
        !media::is_non_distributable(&self.media_type) && self.urls.is_empty()
    }
}

/// Fields of any manifest shape; unknown fields are ignored here (they stay in the stored bytes).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    schema_version: Option<i64>,
    media_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    artifact_type: Option<String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The effective media type: the body's `mediaType`, else the Content-Type it was pushed with.
    pub media_type: String,
    pub kind: ManifestKind,
    pub config: Option<Descriptor>,
    pub layers: Vec<Descriptor>,
    pub manifests: Vec<Descriptor>,
    pub subject: Option<Descriptor>,
    pub artifact_type: Option<String>,
    pub annotations: BTreeMap<String, String>,
}

impl Manifest {
    /// Parses `bytes` pushed with Content-Type `content_type` (if any).
    pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Manifest, ManifestError> {
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(ManifestError::TooLarge);
        }
        let header = content_type.map(media::essence).filter(|s| !s.is_empty());
        if header.is_some_and(is_schema1) {
            return Err(ManifestError::Schema1);
        }
        let raw: Raw = serde_json::from_slice(bytes).map_err(|e| ManifestError::Json(e.to_string()))?;
        if raw.media_type.as_deref().is_some_and(is_schema1) || raw.schema_version == Some(1) {
            return Err(ManifestError::Schema1);
        }
        if raw.schema_version != Some(2) {
            return Err(ManifestError::SchemaVersion);
        }
        let media_type = match (&raw.media_type, header) {
            (Some(body), Some(header)) if body != header => {
                return Err(ManifestError::MediaTypeMismatch { header: header.to_owned(), body: body.clone() });
            }
            (Some(body), _) => body.clone(),
            (None, Some(header)) => header.to_owned(),
            // Neither says: OCI allows omitting mediaType, so infer from the shape.
            (None, None) if raw.manifests.is_some() => media::OCI_INDEX.to_owned(),
            (None, None) if raw.config.is_some() => media::OCI_MANIFEST.to_owned(),
            (None, None) => return Err(ManifestError::MissingMediaType),
        };
        let kind = match media_type.as_str() {
            media::OCI_MANIFEST | media::DOCKER_MANIFEST => ManifestKind::Image,
            media::OCI_INDEX | media::DOCKER_LIST => ManifestKind::Index,
            other => return Err(ManifestError::UnsupportedMediaType(other.to_owned())),
        };
        let missing = |field| ManifestError::MissingField { media_type: media_type.clone(), field };
        let (config, layers, manifests) = match kind {
            ManifestKind::Image => {
                (Some(raw.config.ok_or_else(|| missing("config"))?), raw.layers.unwrap_or_default(), vec![])
            }
            ManifestKind::Index => (None, vec![], raw.manifests.ok_or_else(|| missing("manifests"))?),
        };
        Ok(Manifest {
            media_type,
            kind,
            config,
            layers,
            manifests,
            subject: raw.subject,
            artifact_type: raw.artifact_type,
            annotations: raw.annotations,
        })
    }

    /// Blobs that must already be in the repository for this manifest to be accepted.
    pub fn required_blobs(&self) -> impl Iterator<Item = &Descriptor> {
        self.config.iter().chain(self.layers.iter().filter(|l| l.requires_blob()))
    }

    /// What the referrers API reports as this manifest's artifact type: `artifactType`,
    /// falling back to the config's media type for image manifests.
    pub fn effective_artifact_type(&self) -> Option<&str> {
        self.artifact_type.as_deref().or(self.config.as_ref().map(|c| c.media_type.as_str()))
    }
}

fn is_schema1(media_type: &str) -> bool {
    media_type == media::DOCKER_SCHEMA1 || media_type == media::DOCKER_SCHEMA1_SIGNED
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    fn image(mt: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{mt}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":3}},{{"mediaType":"application/vnd.oci.image.layer.nondistributable.v1.tar","digest":"{}","size":4,"urls":["https://x"]}}],"extra":{{"kept":true}}}}"#,
            d('a'),
            d('b'),
            d('c')
        )
    }

    #[test]
    fn image_manifest_references() {
        let m = Manifest::parse(image(media::OCI_MANIFEST).as_bytes(), None).unwrap();
        assert_eq!(m.kind, ManifestKind::Image);
        let req: Vec<_> = m.required_blobs().map(|x| x.digest.to_string()).collect();
        assert_eq!(req, vec![d('a'), d('b')]);
        assert_eq!(m.effective_artifact_type(), Some("application/vnd.oci.image.config.v1+json"));
    }

    #[test]
    fn media_type_agreement() {
        let body = image(media::OCI_MANIFEST);
        assert!(
            Manifest::parse(body.as_bytes(), Some("application/vnd.oci.image.manifest.v1+json; charset=utf-8")).is_ok()
        );
        assert!(matches!(
            Manifest::parse(body.as_bytes(), Some(media::DOCKER_MANIFEST)),
            Err(ManifestError::MediaTypeMismatch { .. })
        ));
        let no_mt = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{}","digest":"{}","size":1}}]}}"#,
            media::OCI_MANIFEST,
            d('e')
        );
        assert_eq!(Manifest::parse(no_mt.as_bytes(), None).unwrap().media_type, media::OCI_INDEX);
        assert_eq!(Manifest::parse(no_mt.as_bytes(), Some(media::DOCKER_LIST)).unwrap().media_type, media::DOCKER_LIST);
    }

    #[test]
    fn rejects_schema1_and_garbage() {
        assert_eq!(Manifest::parse(br#"{"schemaVersion":1,"fsLayers":[]}"#, None), Err(ManifestError::Schema1));
        assert_eq!(Manifest::parse(b"{}", Some(media::DOCKER_SCHEMA1_SIGNED)), Err(ManifestError::Schema1));
        assert!(matches!(Manifest::parse(b"not json", None), Err(ManifestError::Json(_))));
        assert!(matches!(
            Manifest::parse(format!(r#"{{"schemaVersion":2,"mediaType":"{}"}}"#, media::OCI_INDEX).as_bytes(), None),
            Err(ManifestError::MissingField { field: "manifests", .. })
        ));
        let bad_digest =
            r#"{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:nothex","size":1},"layers":[]}"#;
        assert!(matches!(Manifest::parse(bad_digest.as_bytes(), None), Err(ManifestError::Json(_))));
    }
}

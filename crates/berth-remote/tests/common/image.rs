//! A multi-arch image built in the test (index → per-platform manifests → config + layers), and
//! pushing / pulling it whole through `Remote`.

use berth_remote::{Remote, Result};
use berth_spec::media::{OCI_INDEX, OCI_MANIFEST};
use berth_spec::{Digest, Reference, RepositoryName, Tag};
use bytes::Bytes;
use futures::StreamExt;
use serde_json::json;

use super::stream_of;

pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

#[derive(Clone)]
pub struct Blob {
    pub digest: Digest,
    pub bytes: Bytes,
}

impl Blob {
    pub fn new(bytes: impl Into<Bytes>) -> Blob {
        let bytes = bytes.into();
        Blob { digest: Digest::sha256_of(&bytes), bytes }
    }

    fn descriptor(&self, media_type: &str) -> serde_json::Value {
        json!({"mediaType": media_type, "digest": self.digest.as_str(), "size": self.bytes.len()})
    }
}

#[derive(Clone)]
pub struct ImageManifest {
    pub manifest: Blob,
    pub config: Blob,
    pub layers: Vec<Blob>,
}

impl ImageManifest {
    pub fn blobs(&self) -> impl Iterator<Item = &Blob> {
        std::iter::once(&self.config).chain(&self.layers)
    }
}

#[derive(Clone)]
pub struct Index {
    pub index: Blob,
    pub children: Vec<ImageManifest>,
}

/// Deterministic pseudo-random bytes (xorshift64*), different for each seed.
pub fn pseudo_random(seed: &str, len: usize) -> Vec<u8> {
    let mut state =
        seed.bytes().fold(0x9E37_79B9_7F4A_7C15u64, |s, b| (s ^ u64::from(b)).wrapping_mul(0x100_0000_01B3)) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// An OCI index of two platforms, each with a config and two layers (one of `layer_size`).
pub fn multiarch(seed: &str, layer_size: usize) -> Index {
    let children = ["amd64", "arm64"]
        .iter()
        .map(|arch| {
            let config = Blob::new(
                serde_json::to_vec(&json!({"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}, "seed": seed}))
                    .unwrap(),
            );
            let layers = vec![
                Blob::new(pseudo_random(&format!("{seed}/{arch}/big"), layer_size)),
                Blob::new(pseudo_random(&format!("{seed}/{arch}/small"), 1000)),
            ];
            let manifest = json!({
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": config.descriptor(OCI_CONFIG),
                "layers": layers.iter().map(|l| l.descriptor(OCI_LAYER)).collect::<Vec<_>>(),
            });
            ImageManifest { manifest: Blob::new(serde_json::to_vec(&manifest).unwrap()), config, layers }
        })
        .collect::<Vec<_>>();
    let index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": children.iter().zip(["amd64", "arm64"]).map(|(child, arch)| {
            let mut descriptor = child.manifest.descriptor(OCI_MANIFEST);
            descriptor["platform"] = json!({"architecture": arch, "os": "linux"});
            descriptor
        }).collect::<Vec<_>>(),
    });
    Index { index: Blob::new(serde_json::to_vec(&index).unwrap()), children }
}

pub fn tag(text: &str) -> Reference {
    Reference::Tag(text.parse::<Tag>().expect("tag"))
}

pub fn by_digest(digest: &Digest) -> Reference {
    Reference::Digest(digest.clone())
}

pub async fn push_blob(remote: &Remote, name: &RepositoryName, blob: &Blob) -> Result<()> {
    let size = blob.bytes.len() as u64;
    remote.push_blob(name, &blob.digest, size, stream_of(blob.bytes.clone(), 64 * 1024), None).await
}

/// Blobs, then children by digest, then the index under `tag_name`: a pullable order.
pub async fn push_index(remote: &Remote, name: &RepositoryName, image: &Index, tag_name: &str) -> Result<()> {
    for child in &image.children {
        for blob in child.blobs() {
            push_blob(remote, name, blob).await?;
        }
        let digest = remote
            .put_manifest(name, &by_digest(&child.manifest.digest), OCI_MANIFEST, child.manifest.bytes.clone())
            .await?;
        assert_eq!(digest, child.manifest.digest);
    }
    let digest = remote.put_manifest(name, &tag(tag_name), OCI_INDEX, image.index.bytes.clone()).await?;
    assert_eq!(digest, image.index.digest);
    Ok(())
}

pub async fn collect_blob(remote: &Remote, name: &RepositoryName, digest: &Digest) -> Result<Vec<u8>> {
    let mut stream = remote.get_blob(name, digest, None).await?;
    let mut bytes = Vec::new();
    while let Some(piece) = stream.next().await {
        bytes.extend_from_slice(&piece?);
    }
    Ok(bytes)
}

/// Pulls the image by `tag_name` as a runtime would and checks every byte.
pub async fn pull_and_check(remote: &Remote, name: &RepositoryName, image: &Index, tag_name: &str) -> Result<()> {
    let head = remote.head_manifest(name, &tag(tag_name)).await?;
    assert_eq!(head.digest, image.index.digest);
    assert_eq!(head.media_type, OCI_INDEX);
    assert_eq!(head.size, image.index.bytes.len() as u64);
    let index = remote.get_manifest(name, &tag(tag_name)).await?;
    assert_eq!((index.digest.clone(), index.media_type.as_str()), (image.index.digest.clone(), OCI_INDEX));
    assert_eq!(index.bytes, image.index.bytes);
    for child in &image.children {
        let fetched = remote.get_manifest(name, &by_digest(&child.manifest.digest)).await?;
        assert_eq!(fetched.bytes, child.manifest.bytes);
        assert_eq!(fetched.media_type, OCI_MANIFEST);
        for blob in child.blobs() {
            assert_eq!(remote.head_blob(name, &blob.digest).await?, Some(blob.bytes.len() as u64));
            assert_eq!(collect_blob(remote, name, &blob.digest).await?, blob.bytes, "blob {}", blob.digest);
        }
    }
    Ok(())
}

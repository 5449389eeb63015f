//! The same large transfer through a real client: `skopeo copy` from an OCI layout on disk to
//! each registry, and back into a `dir:` copy.

use std::io::Write as _;
use std::path::Path;

use anyhow::{Context as _, ensure};
use serde_json::json;
use sha2::{Digest as _, Sha256};
use tempfile::TempDir;
use tokio::process::Command;

use crate::payload::{Chunks, Descriptor, ImageDocs, MANIFEST_TYPE, RandomBlob};
use crate::phases::{Transfer, measured, settle_disks};
use crate::target::Target;

/// `skopeo --version`, or None when it is not installed.
pub async fn version() -> Option<String> {
    let output = Command::new("skopeo").arg("--version").output().await.ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// An OCI image layout on disk, tagged `latest`.
pub struct Layout {
    dir: TempDir,
    layer_bytes: u64,
    manifest: bytes::Bytes,
}

impl Layout {
    /// Writes fresh layers (hashing while writing) plus config, manifest and index.
    pub async fn write(parent: &Path, blobs: Vec<RandomBlob>, note: String) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("skopeo-src-").tempdir_in(parent)?;
        let root = dir.path().to_owned();
        let (layer_bytes, manifest) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let blob_dir = root.join("blobs/sha256");
            std::fs::create_dir_all(&blob_dir)?;
            let write_blob = |data: &[u8]| -> anyhow::Result<String> {
                let hex = hex::encode(Sha256::digest(data));
                std::fs::write(blob_dir.join(&hex), data)?;
                Ok(format!("sha256:{hex}"))
            };
            let mut layers = Vec::new();
            for blob in &blobs {
                let mut file = tempfile::NamedTempFile::new_in(&blob_dir)?;
                let (mut chunks, mut buf, mut hasher) = (Chunks::new(*blob), Vec::new(), Sha256::new());
                while chunks.fill_next(&mut buf) {
                    hasher.update(&buf);
                    file.write_all(&buf)?;
                }
                let hex = hex::encode(hasher.finalize());
                file.persist(blob_dir.join(&hex))?;
                layers.push(Descriptor { digest: format!("sha256:{hex}"), size: blob.len });
            }
            let docs = ImageDocs::new(&layers, &note);
            write_blob(&docs.config)?;
            let manifest_digest = write_blob(&docs.manifest)?;
            let index = json!({
                "schemaVersion": 2,
                "manifests": [{
                    "mediaType": MANIFEST_TYPE,
                    "digest": manifest_digest,
                    "size": docs.manifest.len(),
                    "annotations": { "org.opencontainers.image.ref.name": "latest" },
                }],
            });
            std::fs::write(root.join("index.json"), serde_json::to_vec(&index)?)?;
            std::fs::write(root.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
            Ok((layers.iter().map(|l| l.size).sum(), docs.manifest))
        })
        .await??;
        Ok(Self { dir, layer_bytes, manifest })
    }

    /// `--preserve-digests` keeps skopeo from gzipping the (uncompressed) layers on the way,
    /// so both registries receive exactly these bytes.
    pub async fn push(&self, target: &Target, reference: &str) -> anyhow::Result<Transfer> {
        settle_disks().await;
        let source = format!("oci:{}:latest", self.dir.path().display());
        let destination = format!("docker://{}/{reference}", target.authority);
        let creds = target.credentials.as_ref().map(|(id, secret)| format!("{id}:{secret}"));
        let mut args = vec!["--preserve-digests", "--dest-tls-verify=false"];
        if let Some(creds) = &creds {
            args.extend(["--dest-creds", creds]);
        }
        let window = measured(target, copy(&[&args[..], &[&source, &destination]].concat())).await?;
        Ok(Transfer { bytes: self.layer_bytes, window })
    }

    /// Pulls into a scratch `dir:` copy (skopeo checks every blob digest) and compares the manifest.
    pub async fn pull(&self, target: &Target, reference: &str, scratch: &Path) -> anyhow::Result<Transfer> {
        let into = tempfile::Builder::new().prefix("skopeo-pull-").tempdir_in(scratch)?;
        let source = format!("docker://{}/{reference}", target.authority);
        let destination = format!("dir:{}", into.path().display());
        let creds = target.credentials.as_ref().map(|(id, secret)| format!("{id}:{secret}"));
        let mut args = vec!["--src-tls-verify=false"];
        if let Some(creds) = &creds {
            args.extend(["--src-creds", creds]);
        }
        let window = measured(target, copy(&[&args[..], &[&source, &destination]].concat())).await?;
        let pulled = std::fs::read(into.path().join("manifest.json")).context("pulled manifest.json")?;
        ensure!(pulled == self.manifest, "skopeo pulled a different manifest from {reference}");
        Ok(Transfer { bytes: self.layer_bytes, window })
    }
}

async fn copy(args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new("skopeo")
        .args(["copy", "--quiet", "--insecure-policy"])
        .args(args)
        .output()
        .await
        .context("running skopeo")?;
    ensure!(
        output.status.success(),
        "skopeo copy {} failed ({}): {}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(())
}

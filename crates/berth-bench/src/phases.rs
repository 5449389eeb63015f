//! One measurement against one registry: push or pull the large image, push many small ones,
//! prepare the repository the request-rate phases read.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context as _, ensure};
use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::header;
use hyper::{Method, StatusCode};
use indicatif::ProgressBar;

use crate::client::{Client, DIGEST_HEADER, UploadMode};
use crate::load::LoadRequest;
use crate::payload::{Body, LargeImage, MANIFEST_ACCEPT, SmallImage, Verifier};
use crate::target::{Clocks, Target, Window};

/// Bytes moved and the window they took.
pub struct Transfer {
    pub bytes: u64,
    pub window: Window,
}

impl Transfer {
    pub fn mb_per_second(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.window.elapsed.as_secs_f64()
    }

    /// CPU seconds per GB of (server, client).
    pub fn cpu_seconds_per_gb(&self) -> (Option<f64>, Option<f64>) {
        let per_gb = |cpu: Option<f64>| cpu.map(|cpu| cpu / (self.bytes as f64 / 1e9));
        (per_gb(self.window.server_cpu), per_gb(self.window.client_cpu))
    }
}

/// Runs `work` with the wall clock and both CPU clocks around it.
pub async fn measured(target: &Target, work: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<Window> {
    let clocks = Clocks::start(target);
    work.await?;
    Ok(clocks.stop(target))
}

/// Flushes dirty pages left by earlier phases so they don't slow down the next push, which
/// would penalise whichever registry goes second after one that does not fsync.
pub async fn settle_disks() {
    // SAFETY: sync(2) has no preconditions.
    tokio::task::spawn_blocking(|| unsafe { libc::sync() }).await.ok();
}

pub async fn push_large(
    target: &Target,
    image: &LargeImage,
    mode: UploadMode,
    progress: &ProgressBar,
) -> anyhow::Result<Transfer> {
    settle_disks().await;
    let window = measured(target, async {
        let mut client = target.client();
        for (blob, digest) in &image.layers {
            client.upload_blob(&image.repo, digest, Body::random(*blob, progress.clone()), mode).await?;
        }
        let docs = &image.docs;
        let config = Body::Full(Some(docs.config.clone()));
        client.upload_blob(&image.repo, &docs.config_digest, config, UploadMode::Put).await?;
        client.put_manifest(&image.repo, &image.tag, docs.manifest.clone(), &docs.manifest_digest).await
    })
    .await?;
    Ok(Transfer { bytes: image.layer_bytes(), window })
}

/// Pulls like a client would (manifest by tag, config, layers) and checks every byte.
pub async fn pull_large(target: &Target, image: &LargeImage, progress: &ProgressBar) -> anyhow::Result<Transfer> {
    let window = measured(target, async {
        let mut client = target.client();
        let docs = &image.docs;
        client.get_manifest(&image.repo, &image.tag, &docs.manifest).await?;
        let config_path = format!("/v2/{}/blobs/{}", image.repo, docs.config_digest);
        let (_, config) = client.expect(StatusCode::OK, Method::GET, &config_path, &[], Body::Empty).await?;
        ensure!(config == docs.config, "GET {config_path} returned a different config than was pushed");
        for (blob, digest) in &image.layers {
            let path = format!("/v2/{}/blobs/{digest}", image.repo);
            let response = client.send(Method::GET, &path, &[], Body::Empty).await?;
            ensure!(response.status() == StatusCode::OK, "GET {path}: {}", response.status());
            let headers = response.headers();
            if let Some(length) = headers.get(header::CONTENT_LENGTH) {
                ensure!(
                    length.to_str()?.parse::<u64>()? == blob.len,
                    "GET {path}: Content-Length {length:?}, pushed {} bytes",
                    blob.len
                );
            }
            if let Some(reported) = headers.get(DIGEST_HEADER) {
                ensure!(reported == digest.as_str(), "GET {path}: {DIGEST_HEADER} {reported:?}");
            }
            let mut verifier = Verifier::new(*blob);
            let mut body = response.into_body();
            while let Some(frame) = body.frame().await {
                if let Some(data) = frame.with_context(|| format!("reading {path}"))?.data_ref() {
                    verifier.update(data).with_context(|| format!("GET {path}"))?;
                    progress.inc(data.len() as u64);
                }
            }
            verifier.finish().with_context(|| format!("GET {path}"))?;
        }
        Ok(())
    })
    .await?;
    Ok(Transfer { bytes: image.layer_bytes(), window })
}

/// Layer blob, config blob, manifest: five requests, as a client pushing a tiny image makes.
async fn push_small_image(client: &mut Client, repo: &str, image: &SmallImage) -> anyhow::Result<()> {
    let layer = Body::Full(Some(image.layer.clone()));
    client.upload_blob(repo, &image.layer_digest, layer, UploadMode::Put).await?;
    let docs = &image.docs;
    let config = Body::Full(Some(docs.config.clone()));
    client.upload_blob(repo, &docs.config_digest, config, UploadMode::Put).await?;
    client.put_manifest(repo, &image.tag, docs.manifest.clone(), &docs.manifest_digest).await
}

/// Pushes all images with `concurrency` workers, one connection each.
pub async fn push_small(
    target: &Target,
    repo: &str,
    images: Arc<Vec<SmallImage>>,
    concurrency: usize,
    progress: &ProgressBar,
) -> anyhow::Result<Window> {
    let window = measured(target, async {
        let next = Arc::new(AtomicUsize::new(0));
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..concurrency {
            let (next, images, progress) = (next.clone(), images.clone(), progress.clone());
            let (mut client, repo) = (target.client(), repo.to_owned());
            workers.spawn(async move {
                loop {
                    let Some(image) = images.get(next.fetch_add(1, Ordering::Relaxed)) else {
                        return anyhow::Ok(());
                    };
                    push_small_image(&mut client, &repo, image).await?;
                    progress.inc(1);
                }
            });
        }
        while let Some(outcome) = workers.join_next().await {
            outcome??;
        }
        Ok(())
    })
    .await?;
    Ok(window)
}

/// The repository the request-rate phases read: one image under many tags.
pub struct HotRepo {
    repo: String,
    manifest: Bytes,
    digest: String,
    tags_list: Bytes,
}

impl HotRepo {
    pub async fn create(target: &Target, repo: &str, image: &SmallImage, tag_count: usize) -> anyhow::Result<Self> {
        let mut client = target.client();
        let mut tags = vec!["latest".to_owned()];
        tags.extend((1..tag_count).map(|i| format!("t{i:04}")));
        let docs = &image.docs;
        push_small_image(&mut client, repo, image).await?;
        for tag in &tags[1..] {
            client.put_manifest(repo, tag, docs.manifest.clone(), &docs.manifest_digest).await?;
        }
        let path = format!("/v2/{repo}/tags/list");
        let (_, tags_list) = client.expect(StatusCode::OK, Method::GET, &path, &[], Body::Empty).await?;
        let listed: serde_json::Value =
            serde_json::from_slice(&tags_list).with_context(|| format!("GET {path}: not JSON"))?;
        ensure!(listed["name"] == repo, "GET {path}: name {}", listed["name"]);
        let mut listed_tags: Vec<&str> = listed["tags"]
            .as_array()
            .with_context(|| format!("GET {path}: no tags array"))?
            .iter()
            .filter_map(serde_json::Value::as_str)
            .collect();
        listed_tags.sort_unstable();
        tags.sort_unstable();
        ensure!(listed_tags == tags, "GET {path}: listed {} tags, pushed {}", listed_tags.len(), tags.len());
        client.get_manifest(repo, "latest", &docs.manifest).await?;
        Ok(Self {
            repo: repo.to_owned(),
            manifest: docs.manifest.clone(),
            digest: docs.manifest_digest.clone(),
            tags_list,
        })
    }

    pub fn get_by_tag(&self) -> LoadRequest {
        LoadRequest {
            method: Method::GET,
            path: format!("/v2/{}/manifests/latest", self.repo),
            accept: Some(MANIFEST_ACCEPT),
            body: Some(self.manifest.clone()),
            digest: None,
        }
    }

    pub fn head_by_digest(&self) -> LoadRequest {
        LoadRequest {
            method: Method::HEAD,
            path: format!("/v2/{}/manifests/{}", self.repo, self.digest),
            accept: Some(MANIFEST_ACCEPT),
            body: None,
            digest: Some(self.digest.clone()),
        }
    }

    /// Answers must stay identical to the listing checked at setup.
    pub fn tags_list(&self) -> LoadRequest {
        LoadRequest {
            method: Method::GET,
            path: format!("/v2/{}/tags/list", self.repo),
            accept: None,
            body: Some(self.tags_list.clone()),
            digest: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfer_rates_use_decimal_units() {
        let window = Window { elapsed: std::time::Duration::from_secs(4), server_cpu: Some(3.0), client_cpu: None };
        let transfer = Transfer { bytes: 2_000_000_000, window };
        assert_eq!(transfer.mb_per_second(), 500.0);
        assert_eq!(transfer.cpu_seconds_per_gb(), (Some(1.5), None));
    }
}

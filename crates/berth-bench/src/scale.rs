//! `--scale`: how each cost grows with the registry's size, on SQLite. For every size a fresh data
//! dir is populated through berth-meta's store traits (pushing 10^5 tags one by one would time the
//! pushes, not the reads), then `berth serve --no-auth` starts on it and every request is timed
//! over HTTP (median of `--scale-samples`). Each curve ends with the log-log slope of time against
//! size: about 1 is linear, about 0 constant, so a paginated read should stay near 0.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use berth_meta::{BlobLinkStore, ManifestStore, Origin, PutManifest, PutTag, RepositoryStore, Shutdown, SqliteStore};
use berth_spec::{Digest, RepositoryName, Tag};
use hyper::{Method, StatusCode, header};
use serde_json::{Value, json};

use crate::client::UploadMode;
use crate::payload::{Body, Seeds, SmallImage};
use crate::target::{Binaries, Spec, Target, berth_data_dir};

/// The sizes each curve visits.
pub struct ScaleSizes {
    pub tags: Vec<usize>,
    pub repositories: Vec<usize>,
    pub blobs: Vec<usize>,
    pub samples: usize,
}

impl ScaleSizes {
    pub fn new(smoke: bool, samples: usize) -> Self {
        if smoke {
            ScaleSizes { tags: vec![10, 100], repositories: vec![10, 100], blobs: vec![10, 100], samples }
        } else {
            ScaleSizes {
                tags: vec![100, 1_000, 10_000, 100_000],
                repositories: vec![10, 100, 1_000, 10_000],
                blobs: vec![1_000, 10_000, 100_000],
                samples,
            }
        }
    }
}

/// One curve: a size per row, a median time (ms) per measured request, and the server's RSS.
pub struct Curve {
    pub title: &'static str,
    pub columns: Vec<&'static str>,
    pub rows: Vec<(usize, Vec<f64>, f64)>,
}

impl Curve {
    fn new(title: &'static str, columns: Vec<&'static str>) -> Self {
        Curve { title, columns, rows: Vec::new() }
    }

    /// Least-squares slope of ln(time) over ln(size) for column `i`.
    pub fn slope(&self, i: usize) -> Option<f64> {
        let points: Vec<(f64, f64)> = self
            .rows
            .iter()
            .filter(|(size, times, _)| *size > 0 && times[i] > 0.0)
            .map(|(size, times, _)| ((*size as f64).ln(), times[i].ln()))
            .collect();
        if points.len() < 2 {
            return None;
        }
        let n = points.len() as f64;
        let (mx, my) = (points.iter().map(|p| p.0).sum::<f64>() / n, points.iter().map(|p| p.1).sum::<f64>() / n);
        let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
        let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
        (sxx > 0.0).then(|| sxy / sxx)
    }

    pub fn print(&self) {
        println!("\n{} (ms, median; RSS of the server afterwards)", self.title);
        let header: Vec<String> =
            std::iter::once("size".to_string()).chain(self.columns.iter().map(|c| c.to_string())).collect();
        println!("| {} | RSS MiB |", header.join(" | "));
        println!("|{}---|", "---|".repeat(header.len()));
        for (size, times, rss) in &self.rows {
            let cells: Vec<String> = times.iter().map(|t| format!("{t:.2}")).collect();
            println!("| {size} | {} | {rss:.1} |", cells.join(" | "));
        }
        let slopes: Vec<String> =
            (0..self.columns.len()).map(|i| self.slope(i).map_or_else(|| "-".into(), |s| format!("{s:.2}"))).collect();
        println!("| log-log slope | {} | |", slopes.join(" | "));
    }

    pub fn to_json(&self) -> Value {
        json!({
            "title": self.title,
            "columns": self.columns,
            "rows": self.rows.iter().map(|(size, times, rss)| json!({"size": size, "ms": times, "rss_mib": rss})).collect::<Vec<_>>(),
            "slopes": (0..self.columns.len()).map(|i| self.slope(i)).collect::<Vec<_>>(),
        })
    }
}

/// Runs every curve; `work_dir` gets one data dir per point.
pub async fn run(binaries: &Binaries, work_dir: &Path, sizes: &ScaleSizes) -> anyhow::Result<Vec<Curve>> {
    let mut seeds = Seeds::from_os()?;
    let mut tags = Curve::new(
        "tags in one repository",
        vec!["tags/list, every page", "tags/list?n=100", "page from the middle", "PUT one more tag"],
    );
    for &n in &sizes.tags {
        tags.rows.push(tags_point(binaries, work_dir, n, sizes.samples, &mut seeds).await?);
    }
    let mut repositories = Curve::new(
        "repositories",
        vec![
            "_catalog, every page",
            "_catalog?n=100",
            "DescribeRepositories, every page",
            "DescribeRepositories first page",
        ],
    );
    for &n in &sizes.repositories {
        repositories.rows.push(repositories_point(binaries, work_dir, n, sizes.samples).await?);
    }
    let mut blobs = Curve::new("unreferenced blob links (GC)", vec!["berth gc --dry-run"]);
    for &n in &sizes.blobs {
        blobs.rows.push(gc_point(binaries, work_dir, n).await?);
    }
    Ok(vec![tags, repositories, blobs])
}

fn origin() -> Origin {
    Origin { actor: "berth:bench".into(), access_key_id: None, request_id: "bench".into() }
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// A fresh data dir for one point, with its store opened.
async fn store_for(work_dir: &Path, point: &str) -> anyhow::Result<(std::path::PathBuf, SqliteStore)> {
    let dir = work_dir.join(point);
    let data = berth_data_dir(&dir, "B");
    std::fs::create_dir_all(&data)?;
    let store = SqliteStore::open(&data.join("metadata.db")).await.context("opening the metadata database")?;
    Ok((dir, store))
}

async fn start(binaries: &Binaries, dir: &Path) -> anyhow::Result<Target> {
    Target::start("B", &Spec::Berth, None, binaries, dir).await
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// Median wall time of `samples` runs of `once`, in ms.
async fn timed<F, Fut>(samples: usize, mut once: F) -> anyhow::Result<f64>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut times = Vec::with_capacity(samples);
    for i in 0..samples.max(1) {
        let started = Instant::now();
        once(i).await?;
        times.push(ms(started.elapsed()));
    }
    Ok(median(times))
}

/// Follows `Link: <...>; rel="next"` from `first` until the last page; returns the page count.
async fn walk_pages(target: &Target, first: &str) -> anyhow::Result<usize> {
    let mut client = target.client();
    let mut next = Some(first.to_string());
    let mut pages = 0;
    while let Some(path) = next {
        let (response, _) = client.expect(StatusCode::OK, Method::GET, &path, &[], Body::Empty).await?;
        pages += 1;
        next = response.headers().get(header::LINK).and_then(|v| v.to_str().ok()).and_then(|link| {
            link.split_once('<').and_then(|(_, rest)| rest.split_once('>')).map(|(p, _)| p.to_string())
        });
    }
    Ok(pages)
}

fn rss(target: &Target) -> f64 {
    target.memory_mib().map_or(0.0, |(rss, _)| rss)
}

async fn tags_point(
    binaries: &Binaries,
    work_dir: &Path,
    n: usize,
    samples: usize,
    seeds: &mut Seeds,
) -> anyhow::Result<(usize, Vec<f64>, f64)> {
    eprintln!("scale: {n} tags");
    let (dir, store) = store_for(work_dir, &format!("tags-{n}")).await?;
    let repo: RepositoryName = "scale/tags".parse()?;
    store.ensure_repository(&origin(), &repo, "{}", now()).await?;
    // Stored sparse: tags/list reads tags, not the manifest's blobs.
    let content = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#;
    let digest = Digest::sha256_of(content);
    let names: Vec<Tag> = (0..n).map(|i| format!("t{i:07}").parse()).collect::<Result<_, _>>()?;
    for batch in names.chunks(1_000) {
        let put = PutManifest {
            repo: &repo,
            digest: &digest,
            media_type: "application/vnd.oci.image.manifest.v1+json",
            content,
            artifact_type: None,
            annotations: None,
            subject: None,
            blobs: &[],
            children: &[],
            sparse: true,
            tags: batch.iter().map(|tag| PutTag { tag, immutable: false }).collect(),
            now: now(),
        };
        store.put_manifest(&origin(), put).await?;
    }
    store.close().await;
    let target = start(binaries, &dir).await?;
    let middle = format!("t{:07}", n / 2);
    let full = timed(samples, |_| async { walk_pages(&target, "/v2/scale/tags/tags/list").await.map(drop) }).await?;
    let first = timed(samples, |_| async { walk_first(&target, "/v2/scale/tags/tags/list?n=100").await }).await?;
    let from_middle = timed(samples, |_| {
        let path = format!("/v2/scale/tags/tags/list?n=100&last={middle}");
        let target = &target;
        async move { walk_first(target, &path).await }
    })
    .await?;
    let image = SmallImage::generate(seeds, "scale/tags", "extra".into(), 1024);
    let mut client = target.client();
    client
        .upload_blob("scale/tags", &image.layer_digest, Body::Full(Some(image.layer.clone())), UploadMode::Put)
        .await?;
    client
        .upload_blob(
            "scale/tags",
            &image.docs.config_digest,
            Body::Full(Some(image.docs.config.clone())),
            UploadMode::Put,
        )
        .await?;
    let push = timed(samples, |i| {
        let (manifest, digest) = (image.docs.manifest.clone(), image.docs.manifest_digest.clone());
        let mut client = target.client();
        async move { client.put_manifest("scale/tags", &format!("extra{i}"), manifest, &digest).await }
    })
    .await?;
    Ok((n, vec![full, first, from_middle, push], rss(&target)))
}

async fn walk_first(target: &Target, path: &str) -> anyhow::Result<()> {
    target.client().expect(StatusCode::OK, Method::GET, path, &[], Body::Empty).await.map(drop)
}

async fn describe_repositories(target: &Target, next_token: Option<&str>) -> anyhow::Result<Option<String>> {
    let body = match next_token {
        Some(token) => json!({"maxResults": 100, "nextToken": token}),
        None => json!({"maxResults": 100}),
    };
    let headers = [
        (header::HeaderName::from_static("x-amz-target"), "AmazonEC2ContainerRegistry_V20150921.DescribeRepositories"),
        (header::CONTENT_TYPE, "application/x-amz-json-1.1"),
    ];
    let body = Body::Full(Some(serde_json::to_vec(&body)?.into()));
    let (_, bytes) = target.client().expect(StatusCode::OK, Method::POST, "/", &headers, body).await?;
    let answer: Value = serde_json::from_slice(&bytes)?;
    Ok(answer["nextToken"].as_str().map(str::to_owned))
}

async fn repositories_point(
    binaries: &Binaries,
    work_dir: &Path,
    n: usize,
    samples: usize,
) -> anyhow::Result<(usize, Vec<f64>, f64)> {
    eprintln!("scale: {n} repositories");
    let (dir, store) = store_for(work_dir, &format!("repositories-{n}")).await?;
    for i in 0..n {
        let name: RepositoryName = format!("scale/r{i:06}").parse()?;
        store.create_repository(&origin(), &name, "{}", now()).await?;
    }
    store.close().await;
    let target = start(binaries, &dir).await?;
    let catalog = timed(samples, |_| async { walk_pages(&target, "/v2/_catalog").await.map(drop) }).await?;
    let catalog_page = timed(samples, |_| async { walk_first(&target, "/v2/_catalog?n=100").await }).await?;
    let describe_all = timed(samples, |_| async {
        let mut token = describe_repositories(&target, None).await?;
        while let Some(next) = token {
            token = describe_repositories(&target, Some(&next)).await?;
        }
        Ok(())
    })
    .await?;
    let describe_first = timed(samples, |_| async { describe_repositories(&target, None).await.map(drop) }).await?;
    Ok((n, vec![catalog, catalog_page, describe_all, describe_first], rss(&target)))
}

/// `berth gc --dry-run` over `n` blob links no manifest needs, linked long ago; its wall time
/// and peak RSS (from wait4) stand for the GC pass.
async fn gc_point(binaries: &Binaries, work_dir: &Path, n: usize) -> anyhow::Result<(usize, Vec<f64>, f64)> {
    eprintln!("scale: {n} blob links for GC");
    let (dir, store) = store_for(work_dir, &format!("blobs-{n}")).await?;
    let repo: RepositoryName = "scale/blobs".parse()?;
    store.ensure_repository(&origin(), &repo, "{}", 0).await?;
    for i in 0..n {
        let digest = Digest::sha256_of(format!("blob {i}").as_bytes());
        store.link_blob(&repo, &digest, 1024, 0).await?;
    }
    store.close().await;
    let data = berth_data_dir(&dir, "B");
    let started = Instant::now();
    let child = std::process::Command::new(&binaries.berth)
        .args(["gc", "--dry-run", "--data-dir"])
        .arg(&data)
        .stdout(std::process::Stdio::null())
        .spawn()
        .context("starting berth gc")?;
    let (status, max_rss_kib) = wait_with_rusage(child.id())?;
    let took = started.elapsed();
    anyhow::ensure!(status == 0, "berth gc --dry-run exited with status {status}");
    Ok((n, vec![ms(took)], max_rss_kib as f64 / 1024.0))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Waits for a child and returns (exit status, peak RSS in KiB) from `wait4`.
fn wait_with_rusage(pid: u32) -> anyhow::Result<(i32, i64)> {
    let mut status = 0;
    // SAFETY: rusage is plain data that wait4 fills in; the pid is our own unreaped child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut usage) };
    anyhow::ensure!(reaped == pid as libc::pid_t, "wait4: {}", std::io::Error::last_os_error());
    let code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { -1 };
    Ok((code, usage.ru_maxrss))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_of_a_linear_and_a_constant_cost() {
        let mut curve = Curve::new("t", vec!["linear", "constant"]);
        for n in [10usize, 100, 1000] {
            curve.rows.push((n, vec![n as f64 * 0.5, 3.0], 0.0));
        }
        assert!((curve.slope(0).unwrap() - 1.0).abs() < 1e-9);
        assert!(curve.slope(1).unwrap().abs() < 1e-9);
    }
}

//! `--scale`: how each cost grows with the registry's size, on SQLite and (with
//! `--scale-postgres`) on PostgreSQL. For every size a fresh data dir (and PostgreSQL schema) is
//! populated through berth-meta's store traits (pushing 10^5 tags one by one would time the
//! pushes, not the reads), then `berth serve --no-auth` starts on it and every request is timed
//! over HTTP (median of `--scale-samples`, fewer once a request has taken [`SAMPLE_BUDGET`]).
//! Each curve ends with the log-log slope of time against size: about 1 is linear, about 0
//! constant, so a paginated read should stay near 0.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use berth_meta::{MetadataStore, Origin, PostgresStore, PutManifest, PutTag, SqliteStore};
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
    pub lifecycle: Vec<usize>,
    pub samples: usize,
}

impl ScaleSizes {
    /// The full or smoke sizes, without those above `max` if given.
    pub fn new(smoke: bool, samples: usize, max: Option<usize>) -> Self {
        let mut sizes = Self::all(smoke, samples);
        if let Some(max) = max {
            for list in [&mut sizes.tags, &mut sizes.repositories, &mut sizes.blobs, &mut sizes.lifecycle] {
                list.retain(|&n| n <= max);
            }
        }
        sizes
    }

    fn all(smoke: bool, samples: usize) -> Self {
        if smoke {
            ScaleSizes {
                tags: vec![10, 100],
                repositories: vec![10, 100],
                blobs: vec![10, 100],
                lifecycle: vec![10, 100],
                samples,
            }
        } else {
            ScaleSizes {
                tags: vec![100, 1_000, 10_000, 100_000],
                repositories: vec![10, 100, 1_000, 10_000],
                blobs: vec![1_000, 10_000, 100_000],
                lifecycle: vec![100, 1_000, 10_000, 50_000],
                samples,
            }
        }
    }
}

/// Sampling of one request stops early once its runs have taken this long in all.
const SAMPLE_BUDGET: Duration = Duration::from_secs(30);

/// One curve: a size per row, a median time (ms) per measured request, and a memory figure.
pub struct Curve {
    pub title: String,
    pub columns: Vec<&'static str>,
    /// What the memory column holds.
    pub memory: &'static str,
    pub rows: Vec<(usize, Vec<f64>, f64)>,
}

impl Curve {
    pub(crate) fn new(title: String, columns: Vec<&'static str>, memory: &'static str) -> Self {
        Curve { title, columns, memory, rows: Vec::new() }
    }

    /// Adds a row, and says it on stderr at once: a big point can take many minutes.
    fn add(&mut self, row: (usize, Vec<f64>, f64)) {
        let (size, times, memory) = &row;
        let times: Vec<String> = times.iter().map(|t| format!("{t:.2}")).collect();
        eprintln!("scale:   {size}: {} ms; {memory:.1} MiB", times.join(", "));
        self.rows.push(row);
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
        println!("\n{} (ms, median; last column: {})", self.title, self.memory);
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
            "memory": self.memory,
            "rows": self.rows.iter().map(|(size, times, rss)| json!({"size": size, "ms": times, "rss_mib": rss})).collect::<Vec<_>>(),
            "slopes": (0..self.columns.len()).map(|i| self.slope(i)).collect::<Vec<_>>(),
        })
    }
}

/// The curves `--scale` can draw (`--scale-curve` picks some; all by default).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CurveKind {
    Tags,
    Repositories,
    Gc,
    Lifecycle,
}

/// Where a curve's metadata lives: a fresh SQLite file per point, or a fresh schema per point on
/// the PostgreSQL server at `url`.
pub enum Backend {
    Sqlite,
    Postgres { url: String },
}

impl Backend {
    fn label(&self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres { .. } => "PostgreSQL",
        }
    }
}

/// Runs every curve on every backend, printing each once drawn; `work_dir` gets one data dir
/// per point.
pub async fn run(
    binaries: &Binaries,
    work_dir: &Path,
    sizes: &ScaleSizes,
    backends: &[Backend],
    kinds: &[CurveKind],
) -> anyhow::Result<Vec<Curve>> {
    let mut seeds = Seeds::from_os()?;
    let mut curves = Vec::new();
    let wanted = |kind: CurveKind| kinds.is_empty() || kinds.contains(&kind);
    for backend in backends {
        let on = |title: &str| format!("{title} ({})", backend.label());
        if wanted(CurveKind::Tags) {
            let mut tags = Curve::new(
                on("tags in one repository"),
                vec!["tags/list, every page", "tags/list?n=100", "page from the middle", "PUT one more tag"],
                RSS_AFTER,
            );
            for &n in &sizes.tags {
                tags.add(tags_point(binaries, work_dir, backend, n, sizes.samples, &mut seeds).await?);
            }
            tags.print();
            curves.push(tags);
        }
        if wanted(CurveKind::Repositories) {
            let mut repositories = Curve::new(
                on("repositories"),
                vec![
                    "_catalog, every page",
                    "_catalog?n=100",
                    "DescribeRepositories, every page",
                    "DescribeRepositories first page",
                ],
                RSS_AFTER,
            );
            for &n in &sizes.repositories {
                repositories.add(repositories_point(binaries, work_dir, backend, n, sizes.samples).await?);
            }
            repositories.print();
            curves.push(repositories);
        }
        if wanted(CurveKind::Gc) {
            let mut blobs =
                Curve::new(on("unreferenced blob links (GC)"), vec!["berth gc --dry-run"], "peak RSS of berth gc, MiB");
            for &n in &sizes.blobs {
                blobs.add(gc_point(binaries, work_dir, backend, n).await?);
            }
            blobs.print();
            curves.push(blobs);
        }
        if wanted(CurveKind::Lifecycle) {
            let mut lifecycle = Curve::new(
                on("images under a lifecycle policy"),
                vec!["preview: Start until COMPLETE", "preview: every page of results", "expiry run (server's timer)"],
                "peak RSS of the server, MiB",
            );
            for &n in &sizes.lifecycle {
                lifecycle.add(lifecycle_point(binaries, work_dir, backend, n, sizes.samples).await?);
            }
            lifecycle.print();
            curves.push(lifecycle);
        }
    }
    Ok(curves)
}

const RSS_AFTER: &str = "RSS of the server afterwards, MiB";

fn origin() -> Origin {
    Origin { actor: "berth:bench".into(), access_key_id: None, request_id: "bench".into(), by_replication: false }
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// One point's registry: a fresh data dir and, on PostgreSQL, a fresh schema of its own.
struct Point {
    dir: PathBuf,
    database_url: Option<String>,
    /// The admin pool and schema to drop once the point is measured.
    schema: Option<(sqlx::PgPool, String)>,
}

impl Point {
    /// Creates the point's data dir (and schema) and opens its store for populating.
    async fn new(backend: &Backend, work_dir: &Path, name: &str) -> anyhow::Result<(Point, Arc<dyn MetadataStore>)> {
        let dir = work_dir.join(name);
        let data = berth_data_dir(&dir, "B");
        std::fs::create_dir_all(&data)?;
        match backend {
            Backend::Sqlite => {
                let store =
                    SqliteStore::open(&data.join("metadata.db")).await.context("opening the metadata database")?;
                Ok((Point { dir, database_url: None, schema: None }, Arc::new(store)))
            }
            Backend::Postgres { url } => {
                // As berth-meta's own PostgreSQL tests do: a schema per point, reached via search_path.
                let schema = format!("berth_bench_{}_{}", std::process::id(), name.replace('-', "_"));
                let admin = sqlx::PgPool::connect(url).await.with_context(|| format!("connecting to {url}"))?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
                )))
                .execute(&admin)
                .await
                .context("creating the point's schema")?;
                let separator = if url.contains('?') { '&' } else { '?' };
                let database_url = format!("{url}{separator}options[search_path]={schema}");
                let store = PostgresStore::connect(&database_url).await.context("opening the PostgreSQL store")?;
                Ok((Point { dir, database_url: Some(database_url), schema: Some((admin, schema)) }, Arc::new(store)))
            }
        }
    }

    /// `--database-url` for `berth serve` and `berth gc` when the point is on PostgreSQL.
    fn database_args(&self) -> Vec<String> {
        self.database_url.iter().flat_map(|url| ["--database-url".to_string(), url.clone()]).collect()
    }

    /// Starts the server on the populated point. On PostgreSQL the point's tables are analyzed
    /// first: a registry that grew by pushing has statistics (autovacuum analyzes a table once
    /// a tenth of it changed), while a bulk load has none, and without them the planner sorts a
    /// whole repository's tags for every page instead of walking the key.
    async fn start(&self, binaries: &Binaries) -> anyhow::Result<Target> {
        if let Some((admin, schema)) = &self.schema {
            let tables: Vec<String> = sqlx::query_scalar("SELECT tablename::text FROM pg_tables WHERE schemaname = $1")
                .bind(schema)
                .fetch_all(admin)
                .await
                .context("listing the point's tables")?;
            let list = tables.iter().map(|table| format!("{schema}.{table}")).collect::<Vec<_>>().join(", ");
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("ANALYZE {list}")))
                .execute(admin)
                .await
                .context("analyzing the point's tables")?;
        }
        Target::start_with_args("B", &Spec::Berth, None, binaries, &self.dir, &self.database_args()).await
    }

    /// Drops the point's schema (the servers on it must have stopped).
    async fn finish(self) -> anyhow::Result<()> {
        if let Some((admin, schema)) = self.schema {
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                .execute(&admin)
                .await
                .context("dropping the point's schema")?;
            admin.close().await;
        }
        Ok(())
    }
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// Median wall time of `samples` runs of `once` (fewer once they took [`SAMPLE_BUDGET`]), in ms.
async fn timed<F, Fut>(samples: usize, mut once: F) -> anyhow::Result<f64>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut times = Vec::with_capacity(samples);
    let all = Instant::now();
    for i in 0..samples.max(1) {
        let started = Instant::now();
        once(i).await?;
        times.push(ms(started.elapsed()));
        if all.elapsed() >= SAMPLE_BUDGET {
            break;
        }
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
    backend: &Backend,
    n: usize,
    samples: usize,
    seeds: &mut Seeds,
) -> anyhow::Result<(usize, Vec<f64>, f64)> {
    eprintln!("scale: {n} tags ({})", backend.label());
    let (point, store) = Point::new(backend, work_dir, &format!("tags-{n}")).await?;
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
            foreign_blobs: &[],
            children: &[],
            sparse: true,
            tags: batch.iter().map(|tag| PutTag { tag, immutable: false }).collect(),
            settings_version: None,
            now: now(),
        };
        store.put_manifest(&origin(), put).await?;
    }
    store.close().await;
    let target = point.start(binaries).await?;
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
    let memory = rss(&target);
    drop(target);
    point.finish().await?;
    Ok((n, vec![full, first, from_middle, push], memory))
}

async fn walk_first(target: &Target, path: &str) -> anyhow::Result<()> {
    target.client().expect(StatusCode::OK, Method::GET, path, &[], Body::Empty).await.map(drop)
}

/// One call of ECR's JSON API (unsigned: the server runs `--no-auth`); its answer.
async fn ecr(target: &Target, action: &str, request: Value) -> anyhow::Result<Value> {
    let amz_target = format!("AmazonEC2ContainerRegistry_V20150921.{action}");
    let headers = [
        (header::HeaderName::from_static("x-amz-target"), amz_target.as_str()),
        (header::CONTENT_TYPE, "application/x-amz-json-1.1"),
    ];
    let body = Body::Full(Some(serde_json::to_vec(&request)?.into()));
    let (_, bytes) = target.client().expect(StatusCode::OK, Method::POST, "/", &headers, body).await?;
    serde_json::from_slice(&bytes).with_context(|| format!("{action} answered no JSON"))
}

/// Adds `nextToken` to a paginated request when there is one.
fn page_request(mut request: Value, next_token: Option<&str>) -> Value {
    if let Some(token) = next_token {
        request["nextToken"] = token.into();
    }
    request
}

async fn describe_repositories(target: &Target, next_token: Option<&str>) -> anyhow::Result<Option<String>> {
    let answer = ecr(target, "DescribeRepositories", page_request(json!({"maxResults": 100}), next_token)).await?;
    Ok(answer["nextToken"].as_str().map(str::to_owned))
}

async fn repositories_point(
    binaries: &Binaries,
    work_dir: &Path,
    backend: &Backend,
    n: usize,
    samples: usize,
) -> anyhow::Result<(usize, Vec<f64>, f64)> {
    eprintln!("scale: {n} repositories ({})", backend.label());
    let (point, store) = Point::new(backend, work_dir, &format!("repositories-{n}")).await?;
    for i in 0..n {
        let name: RepositoryName = format!("scale/r{i:06}").parse()?;
        store.create_repository(&origin(), &name, "{}", now()).await?;
    }
    store.close().await;
    let target = point.start(binaries).await?;
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
    let memory = rss(&target);
    drop(target);
    point.finish().await?;
    Ok((n, vec![catalog, catalog_page, describe_all, describe_first], memory))
}

/// `berth gc --dry-run` over `n` blob links no manifest needs, linked long ago; its wall time
/// and peak RSS (from wait4) stand for the GC pass.
async fn gc_point(
    binaries: &Binaries,
    work_dir: &Path,
    backend: &Backend,
    n: usize,
) -> anyhow::Result<(usize, Vec<f64>, f64)> {
    eprintln!("scale: {n} blob links for GC ({})", backend.label());
    let (point, store) = Point::new(backend, work_dir, &format!("blobs-{n}")).await?;
    let repo: RepositoryName = "scale/blobs".parse()?;
    store.ensure_repository(&origin(), &repo, "{}", 0).await?;
    let linker = store.clone();
    populate(n, move |i| {
        let (store, repo) = (linker.clone(), repo.clone());
        async move {
            let digest = Digest::sha256_of(format!("blob {i}").as_bytes());
            Ok(store.link_blob(&repo, &digest, 1024, 0).await?)
        }
    })
    .await?;
    store.close().await;
    let data = berth_data_dir(&point.dir, "B");
    let started = Instant::now();
    let child = std::process::Command::new(&binaries.berth)
        .args(["gc", "--dry-run", "--data-dir"])
        .arg(&data)
        .args(point.database_args())
        .stdout(std::process::Stdio::null())
        .spawn()
        .context("starting berth gc")?;
    let (status, max_rss_kib) = wait_with_rusage(child.id())?;
    let took = started.elapsed();
    anyhow::ensure!(status == 0, "berth gc --dry-run exited with status {status}");
    point.finish().await?;
    Ok((n, vec![ms(took)], max_rss_kib as f64 / 1024.0))
}

/// Tasks that populate a store at once: PostgreSQL takes the writes in parallel, SQLite queues them.
const POPULATE_TASKS: usize = 8;

/// Runs `each(i)` for every i in 0..n, on [`POPULATE_TASKS`] tasks.
async fn populate<F, Fut>(n: usize, each: F) -> anyhow::Result<()>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let each = Arc::new(each);
    let mut tasks = tokio::task::JoinSet::new();
    for first in 0..POPULATE_TASKS {
        let each = each.clone();
        tasks.spawn(async move {
            for i in (first..n).step_by(POPULATE_TASKS) {
                each(i).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(())
}

const DAY_MS: i64 = 86_400_000;
const LIFECYCLE_REPO: &str = "scale/lifecycle";
/// Expires untagged images after 14 days and all but the newest 50 `dev-` builds; releases stay.
const LIFECYCLE_POLICY: &str = r#"{"rules": [
  {"rulePriority": 1, "description": "untagged images after 14 days",
   "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 14},
   "action": {"type": "expire"}},
  {"rulePriority": 2, "description": "the newest 50 dev builds stay",
   "selection": {"tagStatus": "tagged", "tagPrefixList": ["dev-"], "countType": "imageCountMoreThan", "countNumber": 50},
   "action": {"type": "expire"}}]}"#;
const KEPT_DEV_BUILDS: usize = 50;

/// Image `i` of `n` in the lifecycle curve: every fourth untagged, every fourth a release
/// (`v1.i`), the rest dev builds (`dev-i`); pushed from now back to 60 days ago, newest first,
/// each 6 h off a whole day (plus i ms, so no two tie) so that a run minutes later judges it alike.
fn lifecycle_image(i: usize, n: usize) -> (Option<String>, i64) {
    let tag = match i % 4 {
        0 => None,
        3 => Some(format!("v1.{i}")),
        _ => Some(format!("dev-{i}")),
    };
    let age = (i * 60 / n) as i64 * DAY_MS + DAY_MS / 4 + i as i64;
    (tag, age)
}

/// How many of the `n` images [`LIFECYCLE_POLICY`] expires, counted here independently of Berth.
fn lifecycle_expected(n: usize) -> usize {
    let images: Vec<_> = (0..n).map(|i| lifecycle_image(i, n)).collect();
    let untagged_old = images.iter().filter(|(tag, age)| tag.is_none() && *age > 14 * DAY_MS).count();
    let dev = images.iter().filter(|(tag, _)| tag.as_ref().is_some_and(|t| t.starts_with("dev-"))).count();
    untagged_old + dev.saturating_sub(KEPT_DEV_BUILDS)
}

/// A lifecycle policy over `n` images in one repository: how long its preview takes (Start,
/// then Get until COMPLETE; then every page of results) and how long the server's own expiry
/// run takes (PutLifecyclePolicy, then the next maintenance pass runs it; its duration is the
/// server's `berth_maintenance_duration_seconds` for the task, read from /metrics). Both are
/// checked against the number of images the policy must expire. Memory is the server's peak.
async fn lifecycle_point(
    binaries: &Binaries,
    work_dir: &Path,
    backend: &Backend,
    n: usize,
    samples: usize,
) -> anyhow::Result<(usize, Vec<f64>, f64)> {
    eprintln!("scale: {n} images under a lifecycle policy ({})", backend.label());
    let (point, store) = Point::new(backend, work_dir, &format!("lifecycle-{n}")).await?;
    let repo: RepositoryName = LIFECYCLE_REPO.parse()?;
    store.ensure_repository(&origin(), &repo, "{}", now()).await?;
    let pushed_before = now();
    let pusher = store.clone();
    populate(n, move |i| {
        let (store, repo) = (pusher.clone(), repo.clone());
        async move {
            let (tag, age) = lifecycle_image(i, n);
            // Sparse like the tags curve's: the evaluator reads tags and push times, not blobs.
            let content = format!(
                r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2}},"layers":[],"annotations":{{"org.opencontainers.image.revision":"{i}"}}}}"#
            );
            let tag: Option<Tag> = tag.map(|t| t.parse()).transpose()?;
            let put = PutManifest {
                repo: &repo,
                digest: &Digest::sha256_of(content.as_bytes()),
                media_type: "application/vnd.oci.image.manifest.v1+json",
                content: content.as_bytes(),
                artifact_type: None,
                annotations: None,
                subject: None,
                blobs: &[],
                foreign_blobs: &[],
                children: &[],
                sparse: true,
                tags: tag.iter().map(|tag| PutTag { tag, immutable: false }).collect(),
                settings_version: None,
                now: pushed_before - age,
            };
            store.put_manifest(&origin(), put).await.map(drop).map_err(Into::into)
        }
    })
    .await?;
    store.close().await;
    let expected = lifecycle_expected(n);
    let target = point.start(binaries).await?;

    let (mut until_complete, mut every_page) = (Vec::new(), Vec::new());
    let all = Instant::now();
    for _ in 0..samples.max(1) {
        let started = Instant::now();
        let request = json!({"repositoryName": LIFECYCLE_REPO, "lifecyclePolicyText": LIFECYCLE_POLICY});
        ecr(&target, "StartLifecyclePolicyPreview", request).await?;
        let first = loop {
            let page = ecr(&target, "GetLifecyclePolicyPreview", json!({"repositoryName": LIFECYCLE_REPO})).await?;
            match page["status"].as_str() {
                Some("COMPLETE") => break page,
                Some("IN_PROGRESS") => tokio::time::sleep(Duration::from_millis(10)).await,
                other => anyhow::bail!("lifecycle preview ended {other:?}: {page}"),
            }
        };
        until_complete.push(ms(started.elapsed()));
        let summary = first["summary"]["expiringImageTotalCount"].as_u64();
        anyhow::ensure!(summary == Some(expected as u64), "the preview expires {summary:?} images, not {expected}");
        let pages = Instant::now();
        let mut results = 0;
        let mut token = None;
        loop {
            let request = page_request(json!({"repositoryName": LIFECYCLE_REPO}), token.as_deref());
            let page = ecr(&target, "GetLifecyclePolicyPreview", request).await?;
            results += page["previewResults"].as_array().map_or(0, Vec::len);
            token = page["nextToken"].as_str().map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
        every_page.push(ms(pages.elapsed()));
        anyhow::ensure!(results == expected, "the preview's pages list {results} images, not {expected}");
        if all.elapsed() >= SAMPLE_BUDGET {
            break;
        }
    }

    // The first maintenance pass runs at start-up; the policy's own run is the pass after it.
    let before = wait_for_lifecycle_runs(&target, 1.0).await?;
    let request = json!({"repositoryName": LIFECYCLE_REPO, "lifecyclePolicyText": LIFECYCLE_POLICY});
    ecr(&target, "PutLifecyclePolicy", request).await?;
    let after = wait_for_lifecycle_runs(&target, before.runs + 1.0).await?;
    let expired = after.items - before.items;
    anyhow::ensure!(expired == expected as f64, "the lifecycle run expired {expired} images, not {expected}");
    let left = list_images(&target).await?;
    anyhow::ensure!(left == n - expected, "{left} images are left after the lifecycle run, not {}", n - expected);
    let expiry = (after.seconds - before.seconds) * 1000.0;
    let peak = target.memory_mib().map_or(0.0, |(_, peak)| peak);
    drop(target);
    point.finish().await?;
    Ok((n, vec![median(until_complete), median(every_page), expiry], peak))
}

/// The lifecycle task's figures on /metrics: finished runs, their total seconds, images expired.
struct LifecycleRuns {
    runs: f64,
    seconds: f64,
    items: f64,
}

/// Polls /metrics until at least `runs` lifecycle runs have finished (all successfully).
async fn wait_for_lifecycle_runs(target: &Target, runs: f64) -> anyhow::Result<LifecycleRuns> {
    // A pass every 10 s, and a big repository's run may take minutes on a busy machine.
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        let (_, body) = target.client().expect(StatusCode::OK, Method::GET, "/metrics", &[], Body::Empty).await?;
        let text = String::from_utf8_lossy(&body);
        let metric = |name: &str, labels: &[&str]| -> f64 {
            text.lines()
                .filter(|line| line.starts_with(name) && line[name.len()..].starts_with('{'))
                .filter(|line| labels.iter().all(|label| line.contains(label)))
                .filter_map(|line| line.rsplit_once(' ').and_then(|(_, value)| value.parse::<f64>().ok()))
                .sum()
        };
        let task = r#"task="lifecycle""#;
        let failed = metric("berth_maintenance_runs_total", &[task, r#"outcome="failure""#]);
        anyhow::ensure!(failed == 0.0, "a lifecycle run failed{}", target.log_tail());
        let found = LifecycleRuns {
            runs: metric("berth_maintenance_runs_total", &[task]),
            seconds: metric("berth_maintenance_duration_seconds_sum", &[task]),
            items: metric("berth_maintenance_items_total", &[task]),
        };
        if found.runs >= runs {
            return Ok(found);
        }
        anyhow::ensure!(Instant::now() < deadline, "no lifecycle run finished within 30 minutes");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How many images the lifecycle curve's repository holds (ListImages, every page).
async fn list_images(target: &Target) -> anyhow::Result<usize> {
    let mut images = 0;
    let mut token = None;
    loop {
        let request = page_request(json!({"repositoryName": LIFECYCLE_REPO, "maxResults": 1000}), token.as_deref());
        let page = ecr(target, "ListImages", request).await?;
        images += page["imageIds"].as_array().map_or(0, Vec::len);
        token = page["nextToken"].as_str().map(str::to_owned);
        if token.is_none() {
            return Ok(images);
        }
    }
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
        let mut curve = Curve::new("t".into(), vec!["linear", "constant"], RSS_AFTER);
        for n in [10usize, 100, 1000] {
            curve.rows.push((n, vec![n as f64 * 0.5, 3.0], 0.0));
        }
        assert!((curve.slope(0).unwrap() - 1.0).abs() < 1e-9);
        assert!(curve.slope(1).unwrap().abs() < 1e-9);
    }

    #[test]
    fn lifecycle_mix_expires_old_untagged_images_and_surplus_dev_builds() {
        // 8 images, ages 0, 7, 15, 22, 30, ... days: of the untagged ones (0 and 4) only the
        // 30-day-old expires; 4 dev builds are fewer than the 50 kept.
        assert_eq!(lifecycle_expected(8), 1);
        // 400 images, image i is floor(0.15 i) days (+6 h) old: untagged 96, 100, ..., 396 are
        // past 14 days (76 of them), and 200 dev builds keep their newest 50.
        assert_eq!(lifecycle_expected(400), 76 + 150);
        assert_eq!(lifecycle_image(7, 8), (Some("v1.7".into()), 52 * DAY_MS + DAY_MS / 4 + 7));
    }
}

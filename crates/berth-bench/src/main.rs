//! berth-bench: compares two OCI registries side by side, black box, over the distribution API.
//!
//! Every phase alternates between the two registries within a round (A then B in odd rounds,
//! B then A in even ones, so neither always runs second on a busy disk), and the report gives
//! medians over rounds and B/A ratios, next to the machine's own ceilings measured in the run.

mod ceilings;
mod client;
mod load;
mod payload;
mod phases;
mod plot;
mod progress;
mod report;
mod scale;
mod skopeo;
mod target;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use clap::Parser;
use serde_json::{Value, json};

use crate::ceilings::{CeilingSizes, Ceilings};
use crate::client::UploadMode;
use crate::load::LoadRequest;
use crate::payload::{LargeImage, Seeds, SmallImage, split_blobs};
use crate::phases::{HotRepo, Transfer};
use crate::progress::{Detail, Progress};
use crate::report::{Failure, Measure, Metric, Phase, Results};
use crate::target::{Binaries, Spec, Target};

const MIB: u64 = 1 << 20;

#[derive(Parser)]
#[command(
    version,
    about = "Compare two OCI registries: large push/pull throughput, small-image pushes, manifest \
             request rates, server CPU per operation and memory, against the machine's ceilings."
)]
struct Cli {
    /// Registry A: `docker-registry`, `berth` (no auth), `berth-root` (every request signed in as
    /// root), `berth-user` (as a user with a least-privilege policy) — all started here — or the
    /// http:// URL of a running one.
    #[arg(long, default_value = "docker-registry")]
    a: Spec,
    /// Registry B, as for --a. Ratios are B/A.
    #[arg(long, default_value = "berth")]
    b: Spec,
    /// PID of registry A when it is given as a URL, to read its CPU time and memory from /proc.
    #[arg(long)]
    a_pid: Option<u32>,
    /// PID of registry B when it is given as a URL.
    #[arg(long)]
    b_pid: Option<u32>,
    /// The berth binary, started as `serve --listen 127.0.0.1:PORT --data-dir DIR --no-auth`.
    #[arg(long, default_value = "target/release/berth")]
    berth_bin: PathBuf,
    #[arg(long, default_value = "/usr/bin/docker-registry")]
    docker_registry_bin: PathBuf,
    /// Where registry data, logs and the skopeo images go; the disk ceiling is measured here too.
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Rounds of every phase on each registry [default: 3; smoke: 1].
    #[arg(long)]
    rounds: Option<u32>,
    /// Size of the large image in MiB [default: 1024; smoke: 4].
    #[arg(long)]
    large_mib: Option<u64>,
    /// Number of layers the large image is split into.
    #[arg(long, default_value_t = 4)]
    large_layers: u32,
    /// Small images pushed per round [default: 300; smoke: 20].
    #[arg(long)]
    small_count: Option<usize>,
    /// Seconds of load per request-rate phase [default: 10; smoke: 1].
    #[arg(long)]
    duration_secs: Option<f64>,
    /// Parallel connections for small pushes and request-rate phases.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Tags in the repository that tags/list reads [default: 100; smoke: 10].
    #[arg(long)]
    tags: Option<usize>,
    /// How the lean client sends a large blob after POST.
    #[arg(long, value_enum, default_value = "patch")]
    upload: UploadMode,
    /// Skip the skopeo phases even when skopeo is installed.
    #[arg(long)]
    no_skopeo: bool,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Tiny sizes for CI: checks every phase works (and fails on any error) in seconds.
    #[arg(long)]
    smoke: bool,
    /// Instead of comparing registries: how Berth's costs grow with its size (tags in one
    /// repository, repositories, blob links under GC, images under a lifecycle policy), each as
    /// a table with its log-log slope.
    #[arg(long)]
    scale: bool,
    /// Timed runs per request and size in --scale (the median is reported).
    #[arg(long, default_value_t = 5)]
    scale_samples: usize,
    /// Also run every --scale curve on PostgreSQL: a fresh schema per size on the server at this
    /// URL (e.g. the $BERTH_TEST_POSTGRES_URL that scripts/postgres.sh prints).
    #[arg(long, value_name = "URL", requires = "scale")]
    scale_postgres: Option<String>,
    /// Draw the --scale curves on PostgreSQL only, not on SQLite as well.
    #[arg(long, requires = "scale_postgres")]
    scale_postgres_only: bool,
    /// Leave out the --scale sizes above this (a quicker run of the lower end of each curve).
    #[arg(long, value_name = "N", requires = "scale")]
    scale_max_size: Option<usize>,
    /// Also draw the --scale curves as an SVG (a log-log panel per curve) into this file.
    #[arg(long, value_name = "FILE", requires = "scale")]
    scale_plot: Option<PathBuf>,
    /// Only these --scale curves (repeatable) [default: all].
    #[arg(long, value_enum, requires = "scale")]
    scale_curve: Vec<scale::CurveKind>,
}

/// Sizes after applying the smoke-mode defaults.
struct Settings {
    rounds: u32,
    large_bytes: u64,
    large_layers: u32,
    small_count: usize,
    duration: Duration,
    concurrency: usize,
    tags: usize,
    upload: UploadMode,
    ceiling_sizes: CeilingSizes,
}

/// Layer size of the small images: tiny, so the phase measures per-request work.
const SMALL_LAYER_BYTES: usize = 1024;

impl Settings {
    fn from_cli(cli: &Cli) -> anyhow::Result<Self> {
        let pick = |value: Option<u64>, full: u64, smoke: u64| value.unwrap_or(if cli.smoke { smoke } else { full });
        let duration_secs = cli.duration_secs.unwrap_or(if cli.smoke { 1.0 } else { 10.0 });
        anyhow::ensure!(duration_secs > 0.0, "--duration-secs must be positive");
        anyhow::ensure!(cli.concurrency > 0, "--concurrency must be at least 1");
        let settings = Settings {
            rounds: pick(cli.rounds.map(u64::from), 3, 1).try_into()?,
            large_bytes: pick(cli.large_mib, 1024, 4) * MIB,
            large_layers: cli.large_layers.max(1),
            small_count: pick(cli.small_count.map(|n| n as u64), 300, 20) as usize,
            duration: Duration::from_secs_f64(duration_secs),
            concurrency: cli.concurrency,
            tags: pick(cli.tags.map(|n| n as u64), 100, 10).max(1) as usize,
            upload: cli.upload,
            ceiling_sizes: if cli.smoke {
                CeilingSizes { sha256: 16 << 20, disk: 16 << 20, loopback: 64 << 20 }
            } else {
                CeilingSizes { sha256: 256 << 20, disk: 512 << 20, loopback: 2 << 30 }
            },
        };
        anyhow::ensure!(settings.rounds > 0, "--rounds must be at least 1");
        anyhow::ensure!(settings.large_bytes > 0, "--large-mib must be at least 1");
        Ok(settings)
    }

    fn json(&self, smoke: bool) -> Value {
        json!({
            "smoke": smoke,
            "rounds": self.rounds,
            "large_bytes": self.large_bytes,
            "large_layers": self.large_layers,
            "upload": format!("{:?}", self.upload).to_lowercase(),
            "small_count": self.small_count,
            "small_layer_bytes": SMALL_LAYER_BYTES,
            "duration_secs": self.duration.as_secs_f64(),
            "concurrency": self.concurrency,
            "tags": self.tags,
        })
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // Registries are started on this (the main) thread: PR_SET_PDEATHSIG ties them to it.
    let outcome = tokio::select! {
        outcome = run(&cli) => outcome,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("berth-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The two registries, indexed 0 = A, 1 = B.
type Pair<T> = [T; 2];

/// Returns whether every phase succeeded.
async fn run(cli: &Cli) -> anyhow::Result<bool> {
    let settings = Settings::from_cli(cli)?;
    let parent = cli.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    let work = tempfile::Builder::new()
        .prefix("berth-bench-")
        .tempdir_in(&parent)
        .with_context(|| format!("creating a work directory in {}", parent.display()))?;
    let binaries = Binaries { berth: cli.berth_bin.clone(), docker_registry: cli.docker_registry_bin.clone() };
    if cli.scale {
        let mut backends = if cli.scale_postgres_only { vec![] } else { vec![scale::Backend::Sqlite] };
        backends.extend(cli.scale_postgres.iter().map(|url| scale::Backend::Postgres { url: url.clone() }));
        let sizes = scale::ScaleSizes::new(cli.smoke, cli.scale_samples, cli.scale_max_size);
        let curves = scale::run(&binaries, work.path(), &sizes, &backends, &cli.scale_curve).await?;
        if let Some(path) = &cli.json {
            let document = json!({ "scale": curves.iter().map(scale::Curve::to_json).collect::<Vec<_>>() });
            std::fs::write(path, serde_json::to_vec_pretty(&document)?)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        if let Some(path) = &cli.scale_plot {
            std::fs::write(path, plot::svg(&curves)).with_context(|| format!("writing {}", path.display()))?;
        }
        return Ok(true);
    }
    let targets: Pair<Target> = [
        Target::start("A", &cli.a, cli.a_pid, &binaries, work.path()).await?,
        Target::start("B", &cli.b, cli.b_pid, &binaries, work.path()).await?,
    ];
    let mut results = Results::default();
    let skopeo = if cli.no_skopeo { None } else { skopeo::version().await };
    match (&skopeo, cli.no_skopeo) {
        (_, true) => results.notes.push("skopeo phases skipped (--no-skopeo)".into()),
        (None, false) => results.notes.push("skopeo not found: skopeo phases skipped".into()),
        (Some(_), false) => {}
    }

    // Steps: ceilings and two setups; per round, lean large (prepare + 2 pushes + 2 pulls),
    // 2 small pushes and 6 request-rate phases, and skopeo (prepare + 2 pushes + 2 pulls).
    let per_round = 5 + 2 + 6 + if skopeo.is_some() { 5 } else { 0 };
    let progress = Progress::new(3 + u64::from(settings.rounds) * per_round);
    for target in &targets {
        progress.log(target.describe());
    }
    let mut seeds = Seeds::from_os()?;

    progress.step("measuring machine ceilings".into(), Detail::Spinner);
    let ceilings = {
        let (sizes, dir) = (settings.ceiling_sizes.clone(), work.path().to_owned());
        tokio::task::spawn_blocking(move || ceilings::measure(&sizes, &dir, &mut Seeds::from_os()?)).await??
    };
    progress.done(format!(
        "ceilings: SHA-256 one core {:.0} MB/s, durable disk write {:.0} MB/s, loopback one stream {:.0} MB/s",
        ceilings.sha256, ceilings.disk_durable_write, ceilings.loopback
    ));

    // Idle: started, answered /v2/, and left alone while the ceilings ran.
    for (side, target) in targets.iter().enumerate() {
        if let Some((rss, _)) = target.memory_mib() {
            results.add(Metric(Phase::Memory, Measure::IdleRss), side, rss);
        }
        if target.pid.is_some() && !target.reset_peak_memory() {
            results.notes.push(format!("{}: could not reset peak RSS; it counts from process start", target.label));
        }
    }

    // A fresh namespace per run: registries given by URL may hold an earlier run's repositories.
    let namespace = format!("bench-{:08x}", seeds.next() as u32);
    let mut hot: Pair<Option<HotRepo>> = [None, None];
    for (side, target) in targets.iter().enumerate() {
        let repo = format!("{namespace}/hot-{}", target.label.to_lowercase());
        progress.step(format!("{}: preparing {repo}", target.label), Detail::Spinner);
        let image = SmallImage::generate(&mut seeds, &repo, "latest".into(), SMALL_LAYER_BYTES);
        match HotRepo::create(target, &repo, &image, settings.tags).await {
            Ok(created) => {
                hot[side] = Some(created);
                progress.done(format!("{}: {repo} ready with {} tags", target.label, settings.tags));
            }
            Err(error) => {
                let title = format!("{}: preparing {repo}", target.label);
                fail(
                    &mut results,
                    &progress,
                    target.label,
                    (title, "setup of the manifest-read repository"),
                    None,
                    error,
                );
            }
        }
    }

    for round in 1..=settings.rounds {
        let order = if round % 2 == 1 { [0, 1] } else { [1, 0] };
        let ctx = RoundContext {
            targets: &targets,
            order,
            round,
            namespace: &namespace,
            settings: &settings,
            progress: &progress,
        };
        ctx.large_lean(&mut seeds, &mut results).await?;
        ctx.small(&mut seeds, &mut results).await;
        ctx.request_rates(&hot, &mut results).await;
        if skopeo.is_some() {
            ctx.large_skopeo(&mut seeds, work.path(), &mut results).await?;
        }
    }

    for (side, target) in targets.iter().enumerate() {
        if let Some((_, peak)) = target.memory_mib() {
            results.add(Metric(Phase::Memory, Measure::PeakRss), side, peak);
        }
    }
    progress.finish();

    let names = targets.each_ref().map(Target::describe);
    let machine = machine_json();
    println!(
        "machine: {}, {} cores, {} MiB RAM, Linux {}",
        machine["cpu"].as_str().unwrap_or("unknown CPU"),
        machine["cores"],
        machine["memory_mib"],
        machine["kernel"].as_str().unwrap_or("?")
    );
    print!("{}", results.table([&names[0], &names[1]], &ceilings));
    // The work directory, logs included, goes away on exit: show what a failing server said.
    for target in &targets {
        let tail = target.log_tail();
        if !tail.is_empty() && results.failures.iter().any(|f| f.registry == target.label) {
            eprintln!("{} ({}):{tail}", target.label, target.name);
        }
    }
    if let Some(path) = &cli.json {
        let document = report_json(cli, &settings, &targets, &ceilings, skopeo.as_deref(), &results, machine);
        std::fs::write(path, serde_json::to_string_pretty(&document)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(results.failures.is_empty())
}

fn fail(
    results: &mut Results,
    progress: &Progress,
    registry: &'static str,
    (title, phase): (String, &str),
    round: Option<u32>,
    error: anyhow::Error,
) {
    let message = format!("{error:#}").trim_end().to_owned();
    progress.done(format!("{title}: FAILED: {message}"));
    results.failures.push(Failure { registry, phase: phase.to_owned(), round, message });
}

/// Records (server, client) CPU per unit of work and describes it for the progress log.
fn record_cpu(
    results: &mut Results,
    phase: Phase,
    side: usize,
    (server, client): (Option<f64>, Option<f64>),
    unit: &str,
) -> String {
    let mut text = String::new();
    for (measure, value, who) in [(Measure::Cpu, server, "server"), (Measure::ClientCpu, client, "client")] {
        if let Some(value) = value {
            results.add(Metric(phase, measure), side, value);
            text += &format!(", {who} CPU {value:.3} {unit}");
        }
    }
    text
}

/// What every phase of one round needs.
struct RoundContext<'a> {
    targets: &'a Pair<Target>,
    order: [usize; 2],
    round: u32,
    namespace: &'a str,
    settings: &'a Settings,
    progress: &'a Progress,
}

impl RoundContext<'_> {
    fn title(&self, side: usize, what: &str) -> String {
        format!("round {}/{} {} {what}", self.round, self.settings.rounds, self.targets[side].label)
    }

    fn record_transfer(&self, results: &mut Results, phase: Phase, side: usize, transfer: &Transfer) {
        results.add(Metric(phase, Measure::Rate), side, transfer.mb_per_second());
        let line = format!("{}: {:.0} MB/s", self.title(side, phase.label()), transfer.mb_per_second());
        let cpu = transfer.cpu_seconds_per_gb();
        self.progress.done(line + &record_cpu(results, phase, side, cpu, "s/GB"));
    }

    fn failed(&self, results: &mut Results, side: usize, phase: Phase, error: anyhow::Error) {
        let what = (self.title(side, phase.label()), phase.label());
        fail(results, self.progress, self.targets[side].label, what, Some(self.round), error);
    }

    async fn large_lean(&self, seeds: &mut Seeds, results: &mut Results) -> anyhow::Result<()> {
        let settings = self.settings;
        self.progress.step(format!("round {}: generating and hashing fresh large images", self.round), Detail::Spinner);
        let mut images = Vec::new();
        for side in [0, 1] {
            let tag = format!("r{}-{}", self.round, self.targets[side].label.to_lowercase());
            images.push(
                LargeImage::generate(
                    seeds,
                    format!("{}/large", self.namespace),
                    tag,
                    settings.large_bytes,
                    settings.large_layers,
                )
                .await?,
            );
        }
        self.progress.done(format!("round {}: large images ready", self.round));
        let mut pushed = [false, false];
        for side in self.order {
            let title = self.title(side, Phase::LargePush.label());
            let bar = self.progress.step(title, Detail::Bytes(settings.large_bytes));
            match phases::push_large(&self.targets[side], &images[side], settings.upload, &bar).await {
                Ok(transfer) => {
                    pushed[side] = true;
                    self.record_transfer(results, Phase::LargePush, side, &transfer);
                }
                Err(error) => self.failed(results, side, Phase::LargePush, error),
            }
        }
        for side in self.order {
            let title = self.title(side, Phase::LargePull.label());
            let bar = self.progress.step(title, Detail::Bytes(settings.large_bytes));
            if !pushed[side] {
                self.progress.done(format!("{}: skipped, the push failed", self.title(side, Phase::LargePull.label())));
                continue;
            }
            match phases::pull_large(&self.targets[side], &images[side], &bar).await {
                Ok(transfer) => self.record_transfer(results, Phase::LargePull, side, &transfer),
                Err(error) => self.failed(results, side, Phase::LargePull, error),
            }
        }
        Ok(())
    }

    async fn small(&self, seeds: &mut Seeds, results: &mut Results) {
        let count = self.settings.small_count;
        for side in self.order {
            let repo = format!("{}/small-r{}", self.namespace, self.round);
            let images: Vec<_> =
                (0..count).map(|i| SmallImage::generate(seeds, &repo, format!("i{i:05}"), SMALL_LAYER_BYTES)).collect();
            let bar = self.progress.step(self.title(side, Phase::SmallPush.label()), Detail::Items(count as u64));
            let target = &self.targets[side];
            match phases::push_small(target, &repo, Arc::new(images), self.settings.concurrency, &bar).await {
                Ok(window) => {
                    let rate = count as f64 / window.elapsed.as_secs_f64();
                    results.add(Metric(Phase::SmallPush, Measure::Rate), side, rate);
                    let line = format!("{}: {rate:.0} images/s", self.title(side, Phase::SmallPush.label()));
                    let per_image_ms = |cpu: Option<f64>| cpu.map(|cpu| cpu * 1000.0 / count as f64);
                    let cpu = (per_image_ms(window.server_cpu), per_image_ms(window.client_cpu));
                    self.progress.done(line + &record_cpu(results, Phase::SmallPush, side, cpu, "ms/image"));
                }
                Err(error) => self.failed(results, side, Phase::SmallPush, error),
            }
        }
    }

    async fn request_rates(&self, hot: &Pair<Option<HotRepo>>, results: &mut Results) {
        type RequestFor = fn(&HotRepo) -> LoadRequest;
        let phases: [(Phase, RequestFor); 3] = [
            (Phase::ManifestGet, HotRepo::get_by_tag),
            (Phase::ManifestHead, HotRepo::head_by_digest),
            (Phase::TagsList, HotRepo::tags_list),
        ];
        for (phase, request) in phases {
            for side in self.order {
                let target = &self.targets[side];
                let bar = self.progress.step(self.title(side, phase.label()), Detail::Requests);
                let Some(repo) = &hot[side] else {
                    self.progress.done(format!("{}: skipped, setup failed", self.title(side, phase.label())));
                    continue;
                };
                let (concurrency, duration) = (self.settings.concurrency, self.settings.duration);
                let outcome = load::run(target, Arc::new(request(repo)), concurrency, duration, &bar).await;
                match outcome {
                    Ok(load) if load.errors == 0 && load.ok > 0 => {
                        let rps = load.requests_per_second();
                        results.add(Metric(phase, Measure::Rate), side, rps);
                        let (p50, p99) = (load.percentile_ms(0.50), load.percentile_ms(0.99));
                        let mut line = format!("{}: {rps:.0} req/s", self.title(side, phase.label()));
                        if let (Some(p50), Some(p99)) = (p50, p99) {
                            results.add(Metric(phase, Measure::P50), side, p50);
                            results.add(Metric(phase, Measure::P99), side, p99);
                            line += &format!(", p50 {p50:.2} ms, p99 {p99:.2} ms");
                        }
                        let cpu = load.cpu_seconds_per_thousand();
                        self.progress.done(line + &record_cpu(results, phase, side, cpu, "s/1k req"));
                    }
                    Ok(load) => {
                        let error = anyhow::anyhow!(
                            "{} of {} requests failed; first: {}",
                            load.errors,
                            load.ok + load.errors,
                            load.first_error.as_deref().unwrap_or("no request completed")
                        );
                        self.failed(results, side, phase, error);
                    }
                    Err(error) => self.failed(results, side, phase, error),
                }
            }
        }
    }

    /// One image per round, pushed to both registries: they do not share storage, so neither
    /// can skip a blob.
    async fn large_skopeo(
        &self,
        seeds: &mut Seeds,
        work_dir: &std::path::Path,
        results: &mut Results,
    ) -> anyhow::Result<()> {
        let settings = self.settings;
        self.progress.step(format!("round {}: writing the skopeo source image", self.round), Detail::Spinner);
        let blobs = split_blobs(seeds, settings.large_bytes, settings.large_layers);
        let layout = skopeo::Layout::write(work_dir, blobs, format!("skopeo round {}", self.round)).await?;
        self.progress.done(format!("round {}: skopeo source image ready", self.round));
        let reference = format!("{}/skopeo:r{}", self.namespace, self.round);
        let mut pushed = [false, false];
        for side in self.order {
            self.progress.step(self.title(side, Phase::SkopeoPush.label()), Detail::Spinner);
            match layout.push(&self.targets[side], &reference).await {
                Ok(transfer) => {
                    pushed[side] = true;
                    self.record_transfer(results, Phase::SkopeoPush, side, &transfer);
                }
                Err(error) => self.failed(results, side, Phase::SkopeoPush, error),
            }
        }
        for side in self.order {
            self.progress.step(self.title(side, Phase::SkopeoPull.label()), Detail::Spinner);
            if !pushed[side] {
                self.progress
                    .done(format!("{}: skipped, the push failed", self.title(side, Phase::SkopeoPull.label())));
                continue;
            }
            match layout.pull(&self.targets[side], &reference, work_dir).await {
                Ok(transfer) => self.record_transfer(results, Phase::SkopeoPull, side, &transfer),
                Err(error) => self.failed(results, side, Phase::SkopeoPull, error),
            }
        }
        Ok(())
    }
}

fn report_json(
    cli: &Cli,
    settings: &Settings,
    targets: &Pair<Target>,
    ceilings: &Ceilings,
    skopeo: Option<&str>,
    results: &Results,
    machine: Value,
) -> Value {
    let registry = |target: &Target| {
        json!({
            "name": target.name,
            "version": target.version,
            "address": target.authority,
            "pid": target.pid,
        })
    };
    json!({
        "tool": "berth-bench",
        "tool_version": env!("CARGO_PKG_VERSION"),
        "unix_time": SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        "ok": results.failures.is_empty(),
        "machine": machine,
        "settings": settings.json(cli.smoke),
        "registries": { "a": registry(&targets[0]), "b": registry(&targets[1]) },
        "skopeo": skopeo,
        "ceilings_mb_s": {
            "sha256_one_core": ceilings.sha256,
            "disk_durable_write": ceilings.disk_durable_write,
            "loopback_one_stream": ceilings.loopback,
        },
        "units": "MB = 10^6 bytes, GB = 10^9 bytes, MiB = 2^20 bytes; ratios are median(B) / median(A)",
        "metrics": results.metrics_json(ceilings),
        "notes": results.notes,
        "failures": results.failures_json(),
    })
}

/// Enough to tell later which machine a figure came from.
fn machine_json() -> Value {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let cpu = cpuinfo
        .lines()
        .find(|line| line.starts_with("model name"))
        .and_then(|line| line.split_once(':'))
        .map(|(_, model)| model.trim().to_owned());
    let meminfo = read("/proc/meminfo");
    let memory_mib = meminfo
        .lines()
        .find(|line| line.starts_with("MemTotal:"))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<u64>().ok())
        .map(|kib| kib / 1024);
    json!({
        "cpu": cpu,
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "memory_mib": memory_mib,
        "kernel": read("/proc/sys/kernel/osrelease").trim(),
    })
}

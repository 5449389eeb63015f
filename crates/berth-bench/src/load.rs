//! Closed-loop load generator: N workers, each with its own keep-alive connection, send the same
//! request back to back for a fixed time and check every answer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::header::{self, HeaderName};
use hyper::{Method, StatusCode};
use indicatif::ProgressBar;
use tokio::sync::{Barrier, watch};

use crate::client::{Client, DIGEST_HEADER};
use crate::payload::Body;
use crate::target::{Clocks, Target, Window};

/// A stalled server must fail the phase, not hang the benchmark.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The request to repeat and what a correct answer looks like.
pub struct LoadRequest {
    pub method: Method,
    pub path: String,
    pub accept: Option<&'static str>,
    /// GET: the exact body expected.
    pub body: Option<Bytes>,
    /// HEAD: the digest the registry must report.
    pub digest: Option<String>,
}

impl LoadRequest {
    async fn send_once(&self, client: &mut Client) -> anyhow::Result<()> {
        let accept: Vec<(HeaderName, &str)> = self.accept.map(|value| (header::ACCEPT, value)).into_iter().collect();
        let exchange = client.expect(StatusCode::OK, self.method.clone(), &self.path, &accept, Body::Empty);
        let Ok(answer) = tokio::time::timeout(REQUEST_TIMEOUT, exchange).await else {
            client.disconnect();
            anyhow::bail!("{} {}: no answer within {REQUEST_TIMEOUT:?}", self.method, self.path);
        };
        let (response, body) = answer?;
        if let Some(expected) = &self.body {
            anyhow::ensure!(body == *expected, "{} {}: unexpected body", self.method, self.path);
        }
        if let Some(digest) = &self.digest {
            let reported = response.headers().get(DIGEST_HEADER).and_then(|v| v.to_str().ok());
            anyhow::ensure!(
                reported == Some(digest.as_str()),
                "{} {}: {DIGEST_HEADER} {reported:?}, expected {digest}",
                self.method,
                self.path
            );
        }
        Ok(())
    }
}

pub struct LoadResult {
    pub ok: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub window: Window,
    /// Latencies of the successful requests, in microseconds, sorted.
    latencies_us: Vec<u32>,
}

impl LoadResult {
    pub fn requests_per_second(&self) -> f64 {
        self.ok as f64 / self.window.elapsed.as_secs_f64()
    }

    /// CPU seconds per 1,000 successful requests of (server, client).
    pub fn cpu_seconds_per_thousand(&self) -> (Option<f64>, Option<f64>) {
        let per_thousand = |cpu: Option<f64>| cpu.map(|cpu| cpu * 1000.0 / self.ok as f64);
        (per_thousand(self.window.server_cpu), per_thousand(self.window.client_cpu))
    }

    /// Latency percentile in milliseconds (nearest rank).
    pub fn percentile_ms(&self, fraction: f64) -> Option<f64> {
        let rank = (fraction * self.latencies_us.len() as f64).ceil() as usize;
        let index = rank.clamp(1, self.latencies_us.len().max(1)) - 1;
        self.latencies_us.get(index).map(|&us| f64::from(us) / 1000.0)
    }
}

struct WorkerOutcome {
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    latencies_us: Vec<u32>,
}

/// Runs the load against `target`; the window opens once every worker is connected and warm.
pub async fn run(
    target: &Target,
    request: Arc<LoadRequest>,
    concurrency: usize,
    duration: Duration,
    progress: &ProgressBar,
) -> anyhow::Result<LoadResult> {
    let ready = Arc::new(Barrier::new(concurrency + 1));
    let (go, start_signal) = watch::channel(None::<Instant>);
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (ready, mut start_signal) = (ready.clone(), start_signal.clone());
        let (request, progress) = (request.clone(), progress.clone());
        let mut client = target.client();
        workers.spawn(async move {
            // Connect and warm up outside the measured window.
            let warmup = request.send_once(&mut client).await;
            ready.wait().await;
            let deadline = start_signal.wait_for(Option::is_some).await.ok().and_then(|d| *d);
            let mut outcome = WorkerOutcome { ok: 0, errors: 0, first_error: None, latencies_us: Vec::new() };
            if let Err(error) = warmup {
                outcome.errors += 1;
                outcome.first_error = Some(format!("{error:#}"));
            }
            let Some(deadline) = deadline else {
                return outcome;
            };
            while Instant::now() < deadline {
                let sent = Instant::now();
                match request.send_once(&mut client).await {
                    Ok(()) => {
                        outcome.ok += 1;
                        let us = sent.elapsed().as_micros();
                        outcome.latencies_us.push(u32::try_from(us).unwrap_or(u32::MAX));
                    }
                    Err(error) => {
                        outcome.errors += 1;
                        outcome.first_error.get_or_insert_with(|| format!("{error:#}"));
                    }
                }
                progress.inc(1);
            }
            outcome
        });
    }
    ready.wait().await;
    let clocks = Clocks::start(target);
    go.send_replace(Some(Instant::now() + duration));

    let (mut ok, mut errors, mut first_error, mut latencies_us) = (0, 0, None, Vec::new());
    while let Some(outcome) = workers.join_next().await {
        let outcome = outcome?;
        ok += outcome.ok;
        errors += outcome.errors;
        first_error = first_error.or(outcome.first_error);
        latencies_us.extend(outcome.latencies_us);
    }
    let window = clocks.stop(target);
    latencies_us.sort_unstable();
    Ok(LoadResult { ok, errors, first_error, window, latencies_us })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let window = Window { elapsed: Duration::from_secs(1), server_cpu: Some(0.2), client_cpu: None };
        let result = LoadResult {
            ok: 100,
            errors: 0,
            first_error: None,
            window,
            latencies_us: (1..=100).map(|ms| ms * 1000).collect(),
        };
        assert_eq!(result.percentile_ms(0.5), Some(50.0));
        assert_eq!(result.percentile_ms(0.99), Some(99.0));
        assert_eq!(result.requests_per_second(), 100.0);
        assert_eq!(result.cpu_seconds_per_thousand(), (Some(2.0), None));
        let empty = LoadResult { latencies_us: Vec::new(), ..result };
        assert_eq!(empty.percentile_ms(0.5), None);
    }
}

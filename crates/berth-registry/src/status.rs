//! What this process's background work last did: read by the console's admin page, written by
//! the garbage collector and the lifecycle runner. Nothing here is persisted.

use std::sync::Mutex;
use std::time::Instant;

use berth_meta::Millis;

use crate::{GcReport, Registry, now_millis};

/// When a background run finished and what came of it (the error's text when it failed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished<T> {
    pub at: Millis,
    pub outcome: Result<T, String>,
}

/// The last runs of this process: `berth gc` in another process or another server's runs are
/// not seen here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MaintenanceStatus {
    /// The last garbage-collection pass that could delete (dry runs are not recorded).
    pub last_gc: Option<Finished<GcReport>>,
    /// The last run of every repository's lifecycle policy, with how many images it expired.
    pub last_lifecycle_run: Option<Finished<usize>>,
}

#[derive(Debug, Default)]
pub(crate) struct StatusLog(Mutex<MaintenanceStatus>);

impl StatusLog {
    pub(crate) fn record(&self, update: impl FnOnce(&mut MaintenanceStatus)) {
        update(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

/// Records one maintenance run as metrics: `berth_maintenance_runs_total{task,outcome}`,
/// `berth_maintenance_duration_seconds{task}` and `berth_maintenance_items_total{task}` (uploads
/// expired, images expired, blobs deleted). The server's exporter renders them.
pub(crate) fn record_run<T, E>(
    task: &'static str,
    started: Instant,
    outcome: &Result<T, E>,
    items: impl Fn(&T) -> u64,
) {
    let outcome_label = if outcome.is_ok() { "success" } else { "failure" };
    metrics::counter!("berth_maintenance_runs_total", "task" => task, "outcome" => outcome_label).increment(1);
    metrics::histogram!("berth_maintenance_duration_seconds", "task" => task).record(started.elapsed().as_secs_f64());
    if let Ok(value) = outcome {
        metrics::counter!("berth_maintenance_items_total", "task" => task).increment(items(value));
    }
}

pub(crate) fn finished<T: Clone, E: std::fmt::Display>(outcome: &Result<T, E>) -> Finished<T> {
    let outcome = match outcome {
        Ok(value) => Ok(value.clone()),
        Err(error) => Err(error.to_string()),
    };
    Finished { at: now_millis(), outcome }
}

impl Registry {
    pub fn maintenance_status(&self) -> MaintenanceStatus {
        self.status.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

//! Per-rule counters of the pull-through cache: added up in memory on the request path (one
//! short lock), written to the metadata store as increments by maintenance, so several servers
//! sharing PostgreSQL add up and a request never waits for a write.

use std::collections::HashMap;
use std::sync::Mutex;

use berth_meta::{CacheStatsDelta, MetadataStore, Millis};

use crate::pull_through::{CacheRule, rule_from_record};
use crate::{Registry, Result, now_millis};

/// One rule with its counters, for `berth cache status`.
#[derive(Debug, Clone)]
pub struct RuleStatus {
    pub rule: CacheRule,
    /// Totals flushed by every server so far (a server adds its own every 10 s).
    pub stats: CacheStatsDelta,
}

/// Every rule with its counters, sorted by prefix (counters of deleted rules are left out).
pub async fn cache_status(meta: &dyn MetadataStore) -> Result<Vec<RuleStatus>> {
    let mut stats: std::collections::HashMap<String, CacheStatsDelta> = meta.cache_stats().await?.into_iter().collect();
    meta.cache_rules()
        .await?
        .into_iter()
        .map(|record| {
            let rule = rule_from_record(record)?;
            let stats = stats.remove(&rule.ecr_repository_prefix).unwrap_or_default();
            Ok(RuleStatus { rule, stats })
        })
        .collect()
}

#[derive(Default)]
pub(crate) struct CacheStats {
    pending: Mutex<HashMap<String, CacheStatsDelta>>,
}

/// What a pull of cached content was.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Served {
    /// From what the cache holds (`bytes` of blob data; 0 for a manifest).
    Cache { bytes: u64 },
    /// Fetched upstream for this pull.
    Upstream { bytes: u64 },
}

impl CacheStats {
    fn with(&self, prefix: &str, change: impl FnOnce(&mut CacheStatsDelta)) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        match pending.get_mut(prefix) {
            Some(delta) => change(delta),
            None => change(pending.entry(prefix.to_owned()).or_default()),
        }
    }

    pub(crate) fn served(&self, prefix: &str, served: Served) {
        self.with(prefix, |delta| match served {
            Served::Cache { bytes } => {
                delta.hits += 1;
                delta.bytes_from_cache += bytes as i64;
            }
            Served::Upstream { bytes } => {
                delta.misses += 1;
                delta.bytes_from_upstream += bytes as i64;
            }
        });
        metrics::counter!("berth_pull_through_requests_total", "rule" => prefix.to_owned(), "served_from" => served.source())
            .increment(1);
        metrics::counter!("berth_pull_through_bytes_total", "rule" => prefix.to_owned(), "served_from" => served.source())
            .increment(served.bytes());
    }

    pub(crate) fn upstream_failed(&self, prefix: &str, message: String) {
        let at: Millis = now_millis();
        self.with(prefix, |delta| delta.last_error = Some((at, message)));
        metrics::counter!("berth_pull_through_upstream_errors_total", "rule" => prefix.to_owned()).increment(1);
    }

    fn drain(&self) -> Vec<(String, CacheStatsDelta)> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner())).into_iter().collect()
    }

    /// Puts back what could not be written, so a failed flush loses nothing.
    fn restore(&self, deltas: Vec<(String, CacheStatsDelta)>) {
        for (prefix, failed) in deltas {
            self.with(&prefix, |delta| {
                delta.hits += failed.hits;
                delta.misses += failed.misses;
                delta.bytes_from_cache += failed.bytes_from_cache;
                delta.bytes_from_upstream += failed.bytes_from_upstream;
                if delta.last_error.is_none() {
                    delta.last_error = failed.last_error;
                }
            });
        }
    }
}

impl Served {
    fn source(self) -> &'static str {
        match self {
            Served::Cache { .. } => "cache",
            Served::Upstream { .. } => "upstream",
        }
    }

    fn bytes(self) -> u64 {
        match self {
            Served::Cache { bytes } | Served::Upstream { bytes } => bytes,
        }
    }
}

impl Registry {
    /// Writes the counters gathered since the last flush (maintenance, and on shutdown).
    pub async fn flush_cache_stats(&self) {
        let deltas = self.pull_through.stats.drain();
        if deltas.is_empty() {
            return;
        }
        if let Err(e) = self.meta.add_cache_stats(&deltas).await {
            tracing::warn!(error = %e, "recording pull-through cache counters failed");
            self.pull_through.stats.restore(deltas);
        }
    }
}

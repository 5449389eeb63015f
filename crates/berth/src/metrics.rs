//! Prometheus metrics. Everything is recorded through the `metrics` facade (the edge for
//! requests, the service for maintenance runs, a periodic task for store totals) and rendered on
//! scrape by `metrics-exporter-prometheus`; process figures are read on scrape.
//!
//! `/metrics` on the registry's port needs `berth:GetMetrics` (the root user always has it);
//! `--metrics-listen` serves it without authentication on an address of its own.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_auth::{AuthError, Authenticator};
use berth_iam::{Identity, RequestContext, Served};
use berth_meta::MetadataStore;
use berth_registry::{Registry, Resource};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Request latencies: from a cached manifest read (~100 µs) to a large blob transfer.
const LATENCY_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];
/// Maintenance runs: from an idle tick to a GC pass over a large bucket.
const MAINTENANCE_BUCKETS: &[f64] = &[0.01, 0.1, 1.0, 10.0, 60.0, 300.0, 1800.0, 3600.0];
/// How often store totals are counted (one scan of the blob links' digest index).
pub const TOTALS_INTERVAL: Duration = Duration::from_secs(15);
/// How often recorded latencies are folded into their histograms' buckets. Until then the
/// exporter keeps each as a raw 8-byte sample: at 60k requests a second, the 15 s between
/// totals held 7–8 MiB of them, a third of the server's peak RSS.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(1);

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub struct Metrics {
    handle: PrometheusHandle,
    process: metrics_process::Collector,
}

impl Metrics {
    /// Installs the process-wide recorder (once per process) and describes the metrics.
    pub fn install() -> anyhow::Result<Arc<Metrics>> {
        let handle = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full("berth_http_request_duration_seconds".into()), LATENCY_BUCKETS)?
            .set_buckets_for_metric(Matcher::Full("berth_maintenance_duration_seconds".into()), MAINTENANCE_BUCKETS)?
            .install_recorder()?;
        describe();
        let process = metrics_process::Collector::default();
        process.describe();
        Ok(Arc::new(Metrics { handle, process }))
    }

    pub fn render(&self) -> String {
        self.process.collect();
        self.handle.render()
    }

    /// Keeps histograms compact every [`UPKEEP_INTERVAL`] and counts what the store holds every
    /// [`TOTALS_INTERVAL`], in one task so that stopping it stops both.
    pub async fn maintain(self: Arc<Self>, meta: Arc<dyn MetadataStore>) {
        let upkeep = async {
            let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                self.handle.run_upkeep();
            }
        };
        tokio::join!(upkeep, self.count_totals(meta));
    }

    async fn count_totals(&self, meta: Arc<dyn MetadataStore>) {
        let mut tick = tokio::time::interval(TOTALS_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            for pool in meta.pools() {
                let name = pool.name;
                metrics::gauge!("berth_metadata_pool_connections", "pool" => name, "state" => "idle").set(pool.idle);
                let busy = pool.open.saturating_sub(pool.idle);
                metrics::gauge!("berth_metadata_pool_connections", "pool" => name, "state" => "in_use").set(busy);
                metrics::gauge!("berth_metadata_pool_max_connections", "pool" => name).set(pool.max);
            }
            match meta.totals().await {
                Ok(totals) => {
                    metrics::gauge!("berth_blobs_stored").set(totals.blobs as f64);
                    metrics::gauge!("berth_blob_bytes_stored").set(totals.blob_bytes as f64);
                    metrics::gauge!("berth_uploads_in_progress").set(totals.uploads as f64);
                }
                Err(e) => {
                    // Read from the store directly, not through the registry's error mapping.
                    metrics::counter!("berth_store_errors_total", "store" => "metadata").increment(1);
                    tracing::warn!(error = %e, "counting store totals failed");
                }
            }
        }
    }
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!("berth_http_requests_total", "Requests answered, by plane, operation, method and status class");
    describe_histogram!(
        "berth_http_request_duration_seconds",
        Unit::Seconds,
        "Time to the response's head, by plane, operation and method"
    );
    describe_counter!("berth_http_received_bytes_total", Unit::Bytes, "Request body bytes received, by plane");
    describe_counter!("berth_http_sent_bytes_total", Unit::Bytes, "Response body bytes sent, by plane");
    describe_counter!("berth_auth_failures_total", "Refused credentials and denied requests, by plane and reason");
    describe_gauge!("berth_blobs_stored", "Distinct blobs linked by some repository (counted every 15 s)");
    describe_gauge!("berth_blob_bytes_stored", Unit::Bytes, "Bytes of those blobs (counted every 15 s)");
    describe_gauge!("berth_uploads_in_progress", "Open upload sessions, on all servers (counted every 15 s)");
    describe_counter!("berth_maintenance_runs_total", "Maintenance runs (lifecycle, gc, upload_expiry), by outcome");
    describe_histogram!("berth_maintenance_duration_seconds", Unit::Seconds, "Duration of maintenance runs");
    describe_counter!(
        "berth_maintenance_items_total",
        "What maintenance removed: expired uploads, expired images, deleted blobs"
    );
    describe_counter!(
        "berth_store_errors_total",
        "Failed store calls (I/O, backend, full storage), by store: metadata, blobs"
    );
    describe_gauge!(
        "berth_metadata_pool_connections",
        "Metadata connections of this process, by pool and state (every 15 s)"
    );
    describe_gauge!("berth_metadata_pool_max_connections", "The most connections each metadata pool opens");
    describe_counter!(
        "berth_pull_through_requests_total",
        "Pulls served under pull-through cache rules, by rule and served_from (cache, upstream)"
    );
    describe_counter!(
        "berth_pull_through_bytes_total",
        Unit::Bytes,
        "Blob bytes of those pulls, by rule and served_from (manifests are not counted)"
    );
    describe_counter!("berth_pull_through_upstream_errors_total", "Failed upstream fetches, by rule");
    describe_counter!(
        "berth_webhook_deliveries_total",
        "Webhook deliveries, by webhook and outcome (success, failure)"
    );
    describe_gauge!("berth_webhook_backlog_events", "Events a webhook has yet to deliver, by webhook");
    describe_counter!(
        "berth_audit_records_dropped_total",
        "Audit records that could not be written (the audit log's file or disk failed)"
    );
}

/// The status class label: `2xx` … `5xx`.
pub fn status_class(status: StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// The method label, from a fixed set so a client cannot mint series.
pub fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

pub struct MetricsRoute {
    pub metrics: Arc<Metrics>,
    pub registry: Arc<Registry>,
    pub auth: Arc<Authenticator>,
}

/// `GET /metrics` on the registry's port: for callers allowed `berth:GetMetrics`.
pub fn authorized_router(route: MetricsRoute) -> Router {
    Router::new().route("/metrics", axum::routing::get(authorized)).with_state(Arc::new(route))
}

async fn authorized(
    State(route): State<Arc<MetricsRoute>>,
    ctx: Option<axum::Extension<RequestContext>>,
    headers: HeaderMap,
) -> Response {
    let Some(axum::Extension(mut ctx)) = ctx else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    // Refusals reach the edge like the planes' own: counted, audited and throttled per address.
    let mut served = Served::new("GetMetrics", "GetMetrics", false);
    served.event_source = "berth";
    let mut response = match route.auth.authenticate(&headers).await {
        Err(refused) => {
            served.auth_failure = refused.failure_reason();
            served.error = Some(("UNAUTHORIZED", refused.to_string()));
            refused.into_response()
        }
        Ok(Identity::Anonymous) if !route.auth.mode().admits_anonymous() => {
            AuthError::CredentialsRequired.into_response()
        }
        Ok(identity) => {
            ctx.identity = identity;
            let allowed = route
                .registry
                .authorizer()
                .authorize(&ctx, &[berth_iam::actions::GET_METRICS], Resource::Registry)
                .await;
            match allowed {
                Ok(()) => scrape(&route.metrics),
                Err(denied) => {
                    served.auth_failure = Some("access_denied");
                    served.error = Some(("DENIED", denied.to_string()));
                    let body = berth_oci::error_body("DENIED", &denied.to_string());
                    (StatusCode::FORBIDDEN, [(header::CONTENT_TYPE, "application/json")], body).into_response()
                }
            }
        }
    };
    response.extensions_mut().insert(ctx);
    response.extensions_mut().insert(served);
    response
}

fn scrape(metrics: &Metrics) -> Response {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], metrics.render()).into_response()
}

/// `GET /metrics` for `--metrics-listen`: no authentication (bind it where only Prometheus reaches).
pub fn anonymous_router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", axum::routing::get(|State(m): State<Arc<Metrics>>| async move { scrape(&m) }))
        .with_state(metrics)
}

//! `berth serve`: opens the stores, builds the service and serves both APIs on every listen address.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use berth_auth::{
    AuthMode, Authenticator, Identities, MasterKey, RootBootstrap, RootKeys, TokenIssuer, UpstreamSecrets,
};
use berth_meta::{MetadataStore, PostgresStore, SqliteStore};
use berth_registry::pull_through::{SecretOpener, Secrets, UpstreamLogin};
use berth_registry::replication::{Destination, DestinationId, Replicator};
use berth_registry::webhooks::WebhookSender;
use berth_registry::{AnonymousAccess, Registry, RegistryConfig, UrlSigningKey};
use berth_storage::{BlobStore, FsBlobStore, S3BlobStore};
use tokio::net::TcpListener;

use crate::audit::AuditLog;
use crate::config::{LogFormat, ServeConfig, Tls};
use crate::ecr_auth::EcrIdentities;
use crate::edge::{self, Edge};
use crate::metrics::{self, Metrics};
use crate::{health, listener};

/// How often abandoned uploads are expired and buffered pull times written.
const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(10);

/// With its metadata in the data directory's SQLite file, one server holds the directory: a
/// second `berth serve` there is refused, since upload sessions (their locks and hashing state)
/// and group commit are one process's (several servers share PostgreSQL instead). The lock is
/// the kernel's, so a killed server leaves none behind; the CLI commands beside a server
/// (`berth user`, `secret`, `policy`, `gc`) take none.
fn lock_sqlite_data_dir(config: &ServeConfig) -> anyhow::Result<Option<std::fs::File>> {
    if config.database_url.is_some() {
        return Ok(None);
    }
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let path = config.data_dir.join("serve.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another berth serve is using the data directory {} (its metadata is SQLite, one server's alone; \
             several servers share a --database-url)",
            config.data_dir.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot lock the data directory; a second server on it would not be refused");
            Ok(None)
        }
    }
}

/// The metadata and blob stores `config` names; `berth gc` opens them the same way.
pub async fn open_stores(config: &ServeConfig) -> anyhow::Result<(Arc<dyn MetadataStore>, Arc<dyn BlobStore>)> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let meta: Arc<dyn MetadataStore> = match &config.database_url {
        Some(url) => {
            Arc::new(PostgresStore::connect(url).await.context("connecting to the PostgreSQL metadata database")?)
        }
        None => Arc::new(
            SqliteStore::open(&config.data_dir.join("metadata.db")).await.context("opening the metadata database")?,
        ),
    };
    let blobs: Arc<dyn BlobStore> = match &config.s3 {
        Some(s3) => {
            tracing::info!(bucket = s3.bucket, prefix = s3.prefix, endpoint = s3.endpoint, "blobs in S3");
            Arc::new(S3BlobStore::open(s3.clone()).await.context("opening S3 blob storage")?)
        }
        None => Arc::new(FsBlobStore::open(&config.data_dir).await.context("opening blob storage")?),
    };
    Ok((meta, blobs))
}

pub async fn run(config: ServeConfig) -> anyhow::Result<()> {
    let logs = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Text => logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init(),
        LogFormat::Json => logs.json().flatten_event(true).with_current_span(false).init(),
    }
    std::panic::set_hook(Box::new(edge::log_panic));
    let metrics = Metrics::install()?;

    let _only_server = lock_sqlite_data_dir(&config)?;
    let (meta, blobs) = open_stores(&config).await?;
    let health = health::router(meta.clone(), blobs.clone());
    let master_key =
        MasterKey::load(&config.data_dir, config.master_key_file.as_deref()).context("loading the master key")?;
    let url_signing_key = UrlSigningKey::from(master_key.url_signing_key());
    let registry = Registry::new(
        blobs,
        meta.clone(),
        RegistryConfig {
            create_on_push: config.create_on_push,
            upload_expiry: config.upload_expiry,
            url_signing_key,
            shared_metadata: config.database_url.is_some(),
            lifecycle_interval: config.lifecycle_interval,
            account_id: config.registry_id.clone(),
            region: config.region.clone(),
            anonymous_access: anonymous_access(&config),
            sparse_indexes: config.sparse_indexes,
            replication_destinations: config
                .replication_destinations
                .iter()
                .map(|d| DestinationId { region: d.region.clone(), registry_id: d.registry_id.clone() })
                .collect(),
            secrets: Secrets(Some(Arc::new(SealedUpstreamSecrets(UpstreamSecrets::new(&master_key))))),
            cache_tag_recheck: config.cache_tag_recheck,
        },
    );
    let auth = Arc::new(authentication(&config, meta.clone(), &master_key).await?);

    let tls = match &config.tls {
        Tls::Off => None,
        Tls::Files { cert, key } => Some(listener::load_tls(cert, key)?),
        Tls::SelfSigned => {
            let mut hosts = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
            for addr in config.listen.iter().filter(|addr| !addr.ip().is_unspecified()) {
                let ip = addr.ip().to_string();
                if !hosts.contains(&ip) {
                    hosts.push(ip);
                }
            }
            let (cert, key) = listener::self_signed(&config.data_dir.join("tls"), hosts)?;
            let line = format!(
                "berth: self-signed TLS certificate at {} (trust it with --cacert / --cert-dir)\n",
                cert.display()
            );
            announce(&config, &line)?;
            Some(listener::load_tls(&cert, &key)?)
        }
    };
    for addr in config.listen.iter().filter(|addr| !addr.ip().is_loopback() && config.plain_http(**addr)) {
        tracing::warn!(listen = %addr, "serving plain HTTP on a non-loopback address (--insecure-http)");
    }

    let limits = listener::Limits {
        max_connections: listener::connection_cap(config.limits.max_connections),
        ..config.limits.clone()
    };
    let mut ports = Vec::with_capacity(config.listen.len());
    for &addr in &config.listen {
        let tcp = TcpListener::bind(addr).await.with_context(|| format!("listening on {addr}"))?;
        ports.push(listener::Port { plain_http: config.plain_http(addr), tcp });
    }
    let locals = ports.iter().map(|port| port.tcp.local_addr()).collect::<Result<Vec<_>, _>>()?;
    if let Some(host) = &config.ecr_host {
        tracing::info!(
            host,
            registry_id = config.registry_id,
            region = config.region,
            "the TLS certificate names this ECR registry"
        );
    }

    let ecr_config = berth_ecr::EcrConfig {
        registry_id: config.registry_id.clone(),
        region: config.region.clone(),
        public_url: config
            .public_url
            .clone()
            .unwrap_or_else(|| default_public_url(&locals, ports[0].plain_http, config.ecr_host.as_deref())),
    };
    let (authentication, tokens): (berth_ecr::Authentication, Arc<dyn berth_ecr::TokenIssuer>) = if config.no_auth {
        (berth_ecr::Authentication::Disabled, Arc::new(berth_ecr::AuthDisabledTokens))
    } else {
        let identities = Arc::new(EcrIdentities(auth.clone()));
        (berth_ecr::Authentication::SigV4(identities.clone()), identities)
    };
    let console = berth_console::router(
        registry.clone(),
        auth.clone(),
        berth_console::ConsoleConfig {
            public_url: ecr_config.public_url.clone(),
            auth_disabled: config.no_auth,
            session_key: master_key.console_session_key(),
            session_lifetime: config.token_lifetime,
            gc_interval: config.gc_interval,
            gc_grace: config.gc_grace,
        },
    );
    let ecr_backend = berth_ecr::RegistryBackend::new(registry.clone(), ecr_config, tokens);
    let ecr = berth_ecr::router(berth_ecr::EcrService::new(Arc::new(ecr_backend), authentication));
    // The edge is the outermost layer: every request gets its context (and id) there, and a
    // panic anywhere inside is answered and logged with that id.
    let audit = match &config.audit {
        Some(target) => {
            Some(AuditLog::open(target.clone(), config.registry_id.clone(), config.region.clone()).with_context(
                || match target {
                    crate::audit::AuditTarget::File { path, .. } => format!("opening the audit log {}", path.display()),
                    crate::audit::AuditTarget::Stdout => "opening the audit log on stdout".to_owned(),
                },
            )?)
        }
        None => None,
    };
    // Installed before the ready line, so no SIGHUP after it finds the default action (exit).
    let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing the SIGHUP handler")?;
    let hangup = tokio::spawn(reopen_on_hangup(hangups, audit.clone()));
    let throttle = crate::throttle::LoginThrottle::new(config.auth_failures_per_minute);
    let edge = Arc::new(Edge::new(config.trusted_proxies.clone(), audit, throttle, config.ecr_accounts.clone()));
    let metrics_route =
        metrics::MetricsRoute { metrics: metrics.clone(), registry: registry.clone(), auth: auth.clone() };
    let app = berth_oci::router(registry.clone(), auth.clone())
        .merge(ecr)
        .merge(health)
        .merge(metrics::authorized_router(metrics_route))
        .merge(berth_ecr::download::router(registry.clone()))
        .merge(console)
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(edge, edge::serve_request));

    let metrics_listener = match config.metrics_listen {
        Some(addr) => {
            let tcp = TcpListener::bind(addr).await.with_context(|| format!("listening for metrics on {addr}"))?;
            tracing::info!(listen = %tcp.local_addr()?, "serving /metrics without authentication");
            let router = metrics::anonymous_router(metrics.clone());
            Some(tokio::spawn(async move { axum::serve(tcp, router).await }))
        }
        None => None,
    };
    let totals = tokio::spawn(metrics.clone().maintain(meta.clone()));

    let maintenance = tokio::spawn({
        let registry = registry.clone();
        async move {
            let mut tick = tokio::time::interval(MAINTENANCE_INTERVAL);
            loop {
                tick.tick().await;
                registry.maintain().await;
            }
        }
    });

    let trim = tokio::spawn(return_freed_memory());

    // Its own task: a pass lists all of storage, which must not hold up the maintenance tick.
    let gc = config.gc_interval.map(|interval| {
        let (registry, grace) = (registry.clone(), config.gc_grace);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match registry.collect_garbage(grace, false).await {
                    Ok(report) => tracing::info!(?report, "garbage collection pass"),
                    Err(e) => tracing::warn!(error = %e, "garbage collection pass failed"),
                }
            }
        })
    });

    let stop_consumers = tokio_util::sync::CancellationToken::new();
    let mut consumers = start_replication(&registry, &config, stop_consumers.clone()).await?;
    consumers.extend(start_webhooks(&registry, &config, stop_consumers.clone()).await?);

    // The ready line comes last: every setting that can fail has been applied.
    tracing::info!(data_dir = %config.data_dir.display(), tls = tls.is_some(), "serving");
    let mut ready_lines = String::new();
    for (port, local) in ports.iter().zip(&locals) {
        if port.plain_http {
            ready_lines.push_str(&format!("berth listening on http://{local}\n"));
        }
        if tls.is_some() {
            ready_lines.push_str(&format!("berth listening on https://{local}\n"));
        }
    }
    announce(&config, &ready_lines)?;
    let server = listener::Listener { tls, limits };
    server.serve(ports, app, shutdown_signal()).await?;
    // Replicators and webhook senders give back what they claimed, so the next start (or another server) resumes
    // at once rather than after the lease.
    stop_consumers.cancel();
    for task in consumers {
        if tokio::time::timeout(Duration::from_secs(10), task).await.is_err() {
            tracing::warn!("an event consumer did not stop within 10 s; its claim returns when its lease ends");
        }
    }
    maintenance.abort();
    hangup.abort();
    trim.abort();
    totals.abort();
    if let Some(listener) = metrics_listener {
        listener.abort();
    }
    if let Some(gc) = gc {
        gc.abort();
        // Ended before the wait below, so the pass cannot begin a deletion after it.
        let _ = gc.await;
        if tokio::time::timeout(Duration::from_secs(30), registry.finish_blob_deletions()).await.is_err() {
            tracing::warn!(
                "a blob deletion did not end within 30 s; pushes of that blob wait until it is presumed stalled"
            );
        }
    }
    registry.flush_pulls().await;
    registry.flush_cache_stats().await;
    if let Err(e) = registry.flush_finished_uploads().await {
        tracing::warn!(error = %e, "deleting finished upload sessions failed");
    }
    meta.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Starts a replicator per configured destination (none without `[[replication.destinations]]`).
async fn start_replication(
    registry: &Arc<Registry>,
    config: &ServeConfig,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    if config.replication_destinations.is_empty() {
        return Ok(Vec::new());
    }
    // The destination recognises replication by its user agent (REPLICATION creation templates).
    let client_config = berth_remote::ClientConfig {
        user_agent: berth_registry::replication::REPLICATION_USER_AGENT.to_owned(),
        ..berth_remote::ClientConfig::default()
    };
    let client = berth_remote::Client::new(client_config).context("building the replication client")?;
    let destinations = config
        .replication_destinations
        .iter()
        .map(|d| {
            let endpoint = berth_remote::Endpoint::parse(&d.url).context("a replication destination's URL")?;
            let credentials = berth_remote::Credentials::basic(&d.access_key_id, &d.secret_access_key);
            Ok(Destination {
                id: DestinationId { region: d.region.clone(), registry_id: d.registry_id.clone() },
                remote: client.remote(endpoint, credentials),
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    tracing::info!(destinations = destinations.len(), "replicating");
    Replicator::new(registry.clone()).start(destinations, stop).await.context("registering replication consumers")
}

/// Starts a sender per `[[webhooks]]` entry.
async fn start_webhooks(
    registry: &Arc<Registry>,
    config: &ServeConfig,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    if config.webhooks.is_empty() {
        return Ok(Vec::new());
    }
    let http =
        berth_remote::http_client(&berth_remote::ClientConfig::default()).context("building the webhook client")?;
    tracing::info!(webhooks = config.webhooks.len(), "sending image events");
    WebhookSender::new(registry.clone(), http)
        .start(config.webhooks.clone(), stop)
        .await
        .context("registering webhook consumers")
}

/// What callers without credentials may do: pull with `--anonymous-pull`, everything with
/// `--no-auth`, nothing otherwise.
fn anonymous_access(config: &ServeConfig) -> AnonymousAccess {
    if config.no_auth {
        AnonymousAccess::Everything
    } else if config.anonymous_pull {
        AnonymousAccess::Pull
    } else {
        AnonymousAccess::Nothing
    }
}

/// Opens the identities, makes sure a root user exists (printing generated keys once) and
/// builds the per-request authenticator.
/// The registry opens upstream credentials (`berth secret put`) with the auth layer's key.
struct SealedUpstreamSecrets(UpstreamSecrets);

impl SecretOpener for SealedUpstreamSecrets {
    fn open(&self, name: &str, sealed: &[u8]) -> Option<UpstreamLogin> {
        let login = self.0.open(name, sealed)?;
        Some(UpstreamLogin { username: login.username, password: login.password, upstream: login.upstream })
    }
}

/// Writes lines meant for the operator (ready lines, generated credentials) to stdout, or to
/// stderr when the audit trail takes stdout (`--audit-log -`), which then holds its JSON only.
fn announce(config: &ServeConfig, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    if matches!(config.audit, Some(crate::audit::AuditTarget::Stdout)) {
        let mut err = std::io::stderr().lock();
        err.write_all(text.as_bytes())?;
        err.flush()
    } else {
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())?;
        out.flush()
    }
}

async fn authentication(
    config: &ServeConfig,
    meta: Arc<dyn MetadataStore>,
    master_key: &MasterKey,
) -> anyhow::Result<Authenticator> {
    let identities = Arc::new(Identities::new(meta, master_key));
    identities.check_master_key().await.context("checking the master key against the stored access keys")?;
    let root_keys = RootKeys::from_env().context("reading BERTH_ROOT_ACCESS_KEY_ID / BERTH_ROOT_SECRET_ACCESS_KEY")?;
    if let RootBootstrap::Generated { credentials, file } =
        identities.bootstrap_root(&config.data_dir, root_keys).await.context("setting up the root user")?
    {
        let line = format!(
            "berth: generated root credentials (shown once; also in {}): {}\n",
            file.display(),
            serde_json::to_string(&credentials)?
        );
        announce(config, &line)?;
    }
    // Refused since; one made before keeps anonymous callers' aws:userid.
    for user in identities.users().await?.iter().filter(|user| user.name.eq_ignore_ascii_case("anonymous")) {
        tracing::warn!(
            user = user.name,
            "a user's aws:userid is its name, and \"anonymous\" is anonymous callers': policies naming it match this user too; recreate the user under another name"
        );
    }
    let mode = if config.no_auth {
        tracing::warn!("authentication is off (--no-auth): anyone who can reach this port can push and delete");
        AuthMode::Disabled
    } else if config.anonymous_pull {
        AuthMode::AnonymousPull
    } else {
        AuthMode::Required
    };
    Ok(Authenticator::new(identities, TokenIssuer::new(master_key, config.token_lifetime), mode))
}

/// A path no API serves: an OCI error (the plane that answers any path but `POST /`).
/// No route: an ECR call (its `X-Amz-Target`) sent to another path — an `--endpoint-url` with a
/// path — gets an ECR error the aws CLI prints, where an OCI body left it an empty message.
async fn not_found(headers: HeaderMap) -> Response {
    if headers.contains_key(berth_ecr::endpoint::TARGET_HEADER) {
        let error = berth_ecr::EcrError::UnknownOperation(
            "the ECR API is served at / on this port: give --endpoint-url without a path".into(),
        );
        let content_type = [(header::CONTENT_TYPE, berth_ecr::error::CONTENT_TYPE)];
        return (StatusCode::NOT_FOUND, content_type, error.body().to_string()).into_response();
    }
    oci_error(
        StatusCode::NOT_FOUND,
        "UNSUPPORTED",
        "no such endpoint: Berth serves the OCI API under /v2/ and the ECR API at POST /",
    )
}

/// A method the route does not serve, in its plane's error shape: ECR's for `/`, OCI's elsewhere.
async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    if uri.path() == "/" {
        let error = berth_ecr::EcrError::UnknownOperation(format!(
            "the ECR API takes POST requests with an X-Amz-Target header, not {method}"
        ));
        let content_type = [(header::CONTENT_TYPE, berth_ecr::error::CONTENT_TYPE)];
        return (StatusCode::METHOD_NOT_ALLOWED, content_type, error.body().to_string()).into_response();
    }
    oci_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "UNSUPPORTED",
        &format!("method {method} is not supported on this endpoint"),
    )
}

fn oci_error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], berth_oci::error_body(code, message)).into_response()
}

/// Where clients reach this server unless `--public-url` says: the ECR registry name the
/// certificate holds, else the first bound address, with a loopback address standing in for
/// "all interfaces" so the URL works from this machine.
fn default_public_url(locals: &[std::net::SocketAddr], plain_http: bool, ecr_host: Option<&str>) -> String {
    if let Some(host) = ecr_host {
        // HTTPS's own port if Berth listens on it, so the URL reads as ECR's.
        return if locals.iter().any(|local| local.port() == 443) {
            format!("https://{host}")
        } else {
            format!("https://{host}:{}", locals[0].port())
        };
    }
    let mut addr = locals[0];
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    format!("{}://{addr}", if plain_http { "http" } else { "https" })
}

async fn shutdown_signal() {
    interrupted().await;
    tracing::info!("shutting down: finishing in-flight requests");
}

/// Ctrl-C or SIGTERM (a server stopping, `berth gc` interrupted); never, where neither can be
/// listened for.
pub(crate) async fn interrupted() {
    use tokio::signal::unix::{SignalKind, signal};
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// SIGHUP, which would otherwise end the process, reopens the audit log at its path (after an
/// outside rotator moved it) and is otherwise only logged: a hangup of the terminal or a reload
/// reflex must not take the registry down.
async fn reopen_on_hangup(mut hangups: tokio::signal::unix::Signal, audit: Option<AuditLog>) {
    while hangups.recv().await.is_some() {
        match &audit {
            Some(audit) => audit.reopen(),
            None => tracing::info!("SIGHUP: no audit log to reopen; nothing else is reloaded"),
        }
    }
}

/// How often memory the C allocator holds freed is given back to the system.
const TRIM_INTERVAL: Duration = Duration::from_secs(10);
/// How often idle transfer buffers are looked at (`berth_storage::release_idle_buffers`).
const BUFFER_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Gives memory that was freed back to the system every [`TRIM_INTERVAL`]. glibc returns only
/// the free top of each arena by itself; a burst (hundreds of uploads stalled at once, then
/// gone) left its freed pages in the middle of the arenas counted in the RSS for good.
/// `malloc_trim` releases those pages too, off the hot path: setting a lower trim threshold
/// instead costs every `free` (20 % more CPU per metadata request, measured). Spare direct-I/O
/// buffers go a second after the last transfer.
async fn return_freed_memory() {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + BUFFER_CHECK_INTERVAL, BUFFER_CHECK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_trim = tokio::time::Instant::now();
    loop {
        tick.tick().await;
        berth_storage::release_idle_buffers();
        if last_trim.elapsed() < TRIM_INTERVAL {
            continue;
        }
        last_trim = tokio::time::Instant::now();
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim has no preconditions; it only walks the allocator's own state.
        let _ = tokio::task::spawn_blocking(|| unsafe { libc::malloc_trim(0) }).await;
    }
}

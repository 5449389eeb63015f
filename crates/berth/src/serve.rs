//! `berth serve`: opens the stores, builds the service and serves both APIs on one listener.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use berth_meta::{MetadataStore, SqliteStore};
use berth_oci::OpenAccess;
use berth_registry::{Registry, RegistryConfig};
use berth_storage::{BlobStore, FsBlobStore};
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

use crate::config::{ServeConfig, Tls};
use crate::listener;

/// How often abandoned uploads are expired and buffered pull times written.
const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(10);

pub async fn run(config: ServeConfig) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG").unwrap_or_else(|_| "info,tower_http=info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let meta: Arc<dyn MetadataStore> = Arc::new(
        SqliteStore::open(&config.data_dir.join("metadata.db")).await.context("opening the metadata database")?,
    );
    let blobs: Arc<dyn BlobStore> = Arc::new(FsBlobStore::open(&config.data_dir).await.context("opening blob storage")?);
    let registry = Arc::new(Registry::new(
        blobs,
        meta.clone(),
        RegistryConfig { create_on_push: config.create_on_push, upload_expiry: config.upload_expiry },
    ));

    let app = berth_oci::router(registry.clone(), Arc::new(OpenAccess))
        .layer(CatchPanicLayer::new())
        .layer(TraceLayer::new_for_http());

    let tls = match &config.tls {
        Tls::Off => None,
        Tls::Files { cert, key } => Some(listener::load_tls(cert, key)?),
        Tls::SelfSigned => {
            let mut hosts = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
            if !config.listen.ip().is_unspecified() {
                hosts.push(config.listen.ip().to_string());
            }
            let (cert, key) = listener::self_signed(&config.data_dir.join("tls"), hosts)?;
            println!("berth: self-signed TLS certificate at {} (trust it with --cacert / --cert-dir)", cert.display());
            Some(listener::load_tls(&cert, &key)?)
        }
    };
    if config.plain_http && !config.listen.ip().is_loopback() {
        tracing::warn!(listen = %config.listen, "serving plain HTTP on a non-loopback address (--insecure-http)");
    }

    let tcp = TcpListener::bind(config.listen).await.with_context(|| format!("listening on {}", config.listen))?;
    let local = tcp.local_addr()?;
    tracing::info!(data_dir = %config.data_dir.display(), tls = tls.is_some(), plain_http = config.plain_http, "serving");
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        if config.plain_http {
            writeln!(out, "berth listening on http://{local}")?;
        }
        if tls.is_some() {
            writeln!(out, "berth listening on https://{local}")?;
        }
        out.flush()?;
    }

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

    let server = listener::Listener { tls, plain_http: config.plain_http };
    server.serve(tcp, app, shutdown_signal()).await?;
    maintenance.abort();
    registry.flush_pulls().await;
    meta.close().await;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

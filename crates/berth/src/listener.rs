//! The accept loop: one port serves plain HTTP and, when configured, TLS.
//!
//! The first byte of a connection tells them apart (0x16 starts a TLS handshake). This is what the
//! docker CLI needs: it speaks plain HTTP to loopback registries, and elsewhere tries HTTPS first,
//! falling back to HTTP only when a TLS ClientHello is answered with `HTTP/` (hyper's 400 does).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use berth_iam::ConnectionInfo;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tower::Layer;

const TLS_HANDSHAKE: u8 = 0x16;
/// In-flight requests get this long to finish after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Listener {
    pub tls: Option<TlsAcceptor>,
    /// Whether plain-HTTP connections are served (loopback, or `--insecure-http`).
    pub plain_http: bool,
}

/// Loads a PEM certificate chain and private key.
pub fn load_tls(cert: &Path, key: &Path) -> anyhow::Result<TlsAcceptor> {
    let certs = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing certificates in {}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key).with_context(|| format!("reading private key {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("certificate and key do not form a valid pair")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Creates (once) a self-signed certificate for `hosts` under `dir`; returns (cert, key) paths.
pub fn self_signed(dir: &Path, hosts: Vec<String>) -> anyhow::Result<(std::path::PathBuf, std::path::PathBuf)> {
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    if !(cert_path.exists() && key_path.exists()) {
        std::fs::create_dir_all(dir)?;
        let generated = rcgen::generate_simple_self_signed(hosts).context("generating a self-signed certificate")?;
        std::fs::write(&cert_path, generated.cert.pem())?;
        write_private(&key_path, generated.signing_key.serialize_pem().as_bytes())?;
    }
    Ok((cert_path, key_path))
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

impl Listener {
    /// Serves `app` until `shutdown` resolves, then drains in-flight connections.
    pub async fn serve(
        self,
        listener: TcpListener,
        app: Router,
        shutdown: impl Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let this = Arc::new(self);
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let this = this.clone();
            let app = app.clone();
            let watcher = graceful.watcher();
            tokio::spawn(async move {
                if let Err(e) = this.connection(stream, peer, app, watcher).await {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            });
        }
        drop(listener);
        tokio::select! {
            () = graceful.shutdown() => {}
            () = tokio::time::sleep(DRAIN_TIMEOUT) => tracing::warn!("connections still open after the drain timeout"),
        }
        Ok(())
    }

    async fn connection(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        app: Router,
        watcher: hyper_util::server::graceful::Watcher,
    ) -> anyhow::Result<()> {
        stream.set_nodelay(true)?;
        let builder = auto::Builder::new(TokioExecutor::new());
        let mut first = [0u8; 1];
        let is_tls = stream.peek(&mut first).await? == 1 && first[0] == TLS_HANDSHAKE;
        // Every request learns its peer and transport here, for its RequestContext.
        let info = ConnectionInfo { peer, tls: is_tls && self.tls.is_some() };
        let service = TowerToHyperService::new(axum::Extension(info).layer(app));
        match (&self.tls, is_tls) {
            (Some(acceptor), true) => {
                let tls = acceptor.accept(stream).await.context("TLS handshake")?;
                watcher.watch(builder.serve_connection_with_upgrades(TokioIo::new(tls), service).into_owned()).await
            }
            (_, _) if self.plain_http => {
                watcher.watch(builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned()).await
            }
            (_, _) => {
                tracing::debug!(%peer, "plain HTTP refused on a TLS-only listener");
                let mut stream = stream;
                let body = "this registry speaks HTTPS on this port\n";
                let reply = format!(
                    "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                stream.write_all(reply.as_bytes()).await?;
                return Ok(());
            }
        }
        .map_err(|e| anyhow::anyhow!(e))
    }
}

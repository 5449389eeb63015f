//! Client settings and the TLS configuration built from them.

use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::error::{Error, Result};

/// Settings shared by every registry a [`crate::Client`] talks to (one connection pool).
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// TCP connect plus TLS handshake.
    pub connect_timeout: Duration,
    /// From a request fully sent to the response's headers (a registry finishing a large upload
    /// may take a while to answer the final `PUT`).
    pub response_timeout: Duration,
    /// Longest pause between two pieces of a body, in either direction, before the transfer is
    /// given up as stalled. A slow but moving transfer never times out.
    pub idle_timeout: Duration,
    /// Which certificate authorities https registries may present.
    pub trust: TrustRoots,
    /// Blobs up to this size are uploaded in one `PUT`; larger ones in `PATCH`es of this size.
    /// Each chunk streams, so this bounds requests, not memory.
    pub upload_chunk_size: u64,
    pub user_agent: String,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            connect_timeout: Duration::from_secs(10),
            response_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            trust: TrustRoots::System,
            upload_chunk_size: 16 * 1024 * 1024,
            user_agent: concat!("berth/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

/// The trust anchors for https registries.
///
/// The operating system's store (`/etc/ssl/certs`, `SSL_CERT_FILE`, ... through
/// rustls-platform-verifier, as object_store's S3 client uses): it follows the host's
/// ca-certificates updates and corporate CAs installed there, where a compiled-in bundle
/// (webpki-roots) would go stale with the binary.
#[derive(Clone, Debug, Default)]
pub enum TrustRoots {
    #[default]
    System,
    /// The system's store plus the certificates of a PEM bundle (a private CA).
    SystemAndPem(Vec<u8>),
    /// Only the certificates of a PEM bundle.
    OnlyPem(Vec<u8>),
}

/// A plain HTTP client with the trust roots, connect timeout and user agent of `config` and no
/// redirects, for endpoints that are not registries (webhook receivers): one TLS stack for all
/// of Berth's outgoing traffic.
pub fn http_client(config: &ClientConfig) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls_config(&config.trust)?)
        .connect_timeout(config.connect_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(&config.user_agent)
        .http1_only()
        .build()
        .map_err(|e| Error::Config(format!("HTTP client: {}", e.without_url())))
}

fn parse_pem_bundle(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Config(format!("CA bundle: {e}")))?;
    if certs.is_empty() {
        return Err(Error::Config("CA bundle holds no PEM certificate".into()));
    }
    Ok(certs)
}

/// rustls on ring with the chosen roots, HTTP/1.1 only: a blob transfer gets a TCP connection
/// of its own rather than sharing one HTTP/2 connection's flow-control window with others.
pub(crate) fn tls_config(trust: &TrustRoots) -> Result<rustls::ClientConfig> {
    let provider: Arc<CryptoProvider> = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("TLS: {e}")))?;
    let system_error = |e: rustls::Error| Error::Config(format!("system trust store: {e}"));
    let mut config = match trust {
        TrustRoots::System => {
            let verifier = rustls_platform_verifier::Verifier::new(provider).map_err(system_error)?;
            builder.dangerous().with_custom_certificate_verifier(Arc::new(verifier)).with_no_client_auth()
        }
        TrustRoots::SystemAndPem(pem) => {
            let verifier = rustls_platform_verifier::Verifier::new_with_extra_roots(parse_pem_bundle(pem)?, provider)
                .map_err(system_error)?;
            builder.dangerous().with_custom_certificate_verifier(Arc::new(verifier)).with_no_client_auth()
        }
        TrustRoots::OnlyPem(pem) => {
            let mut roots = RootCertStore::empty();
            for cert in parse_pem_bundle(pem)? {
                roots.add(cert).map_err(|e| Error::Config(format!("CA bundle: {e}")))?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_store_loads() {
        tls_config(&TrustRoots::System).expect("the test machine has ca-certificates");
    }

    #[test]
    fn a_bundle_without_certificates_is_a_config_error() {
        for pem in [&b""[..], b"not pem", b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n"] {
            let error = tls_config(&TrustRoots::OnlyPem(pem.to_vec())).unwrap_err();
            assert!(matches!(error, Error::Config(_)), "{error}");
        }
    }
}

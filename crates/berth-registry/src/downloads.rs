//! Time-limited signed layer downloads (ECR's GetDownloadUrlForLayer, which AWS answers with a
//! pre-signed S3 URL). The signature binds repository, digest and expiry, so the URL itself is
//! the credential: whoever holds it may read that one blob until it expires, and nothing else.

use std::fmt;

use berth_iam::RequestContext;
use berth_spec::{Digest, RepositoryName};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::{BlobBody, ByteRange, Registry, RegistryError, Result, now_millis};

const KEY_LEN: usize = 32;

/// The key download URLs are signed with. Every server answering a URL must hold the same key:
/// the server derives it from the master key they share.
#[derive(Clone)]
pub struct UrlSigningKey([u8; KEY_LEN]);

impl fmt::Debug for UrlSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UrlSigningKey(..)")
    }
}

impl From<[u8; KEY_LEN]> for UrlSigningKey {
    fn from(key: [u8; KEY_LEN]) -> Self {
        UrlSigningKey(key)
    }
}

impl UrlSigningKey {
    pub fn random() -> Self {
        let mut key = [0; KEY_LEN];
        getrandom::fill(&mut key).expect("the operating system's random number generator failed");
        UrlSigningKey(key)
    }

    /// A keyed hash of `text` under this installation's key: the same on every server of one
    /// deployment (they share the master key it derives from), different across deployments.
    pub(crate) fn keyed_hash(&self, text: &str) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(text.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// A `fill` URL may fetch the layer from a pull-through cache's upstream: only one whose
    /// signer was allowed to import gets it, and the flag cannot be added to another URL.
    fn mac(&self, repo: &RepositoryName, digest: &Digest, expires_at: i64, fill: bool) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        let purpose = if fill { "berth-layer-download-fill" } else { "berth-layer-download" };
        mac.update(format!("{purpose}\n{repo}\n{digest}\n{expires_at}").as_bytes());
        mac
    }
}

/// What a layer download URL carries besides its path and expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedDownload {
    pub signature: String,
    /// The layer is not cached yet: the download fills it from the pull-through upstream.
    pub fill: bool,
}

impl Registry {
    /// Signs a download of `digest` from `repo` that is valid until `expires_at` (epoch
    /// seconds). ECR only hands out layers of images: `BlobUnknown` if the repository lacks the
    /// blob, `LayerInaccessible` if no image in it references it. A pull-through cache
    /// repository's layer not fetched yet is signed when a cached manifest lists it and `ctx`
    /// may import it: that download fills it, as `/v2/` would.
    pub async fn sign_layer_download(
        &self,
        ctx: &RequestContext,
        repo: &RepositoryName,
        digest: &Digest,
        expires_at: i64,
    ) -> Result<SignedDownload> {
        self.repository(repo).await?;
        // Which images reference the layer comes from one indexed read of the references stored
        // with each manifest, not a parse of every manifest.
        let fill = match self.blob_link(repo, digest).await {
            Ok(link) => {
                crate::archive::refuse_archived_layer(digest, link.needed_by)?;
                if link.needed_by.is_none() {
                    return Err(RegistryError::LayerInaccessible(digest.clone()));
                }
                false
            }
            Err(RegistryError::BlobUnknown(_)) if self.fillable(repo, digest).await? => {
                self.authorize_import(ctx, repo).await?;
                true
            }
            Err(e) => return Err(e),
        };
        let mac = self.config.url_signing_key.mac(repo, digest, expires_at, fill);
        Ok(SignedDownload { signature: hex::encode(mac.finalize().into_bytes()), fill })
    }

    /// Whether a download may fetch `digest` for `repo` from its pull-through upstream: the
    /// repository is a cache's and an image of it in the standard class lists the layer (then as
    /// when the URL is used, not only when it was signed).
    async fn fillable(&self, repo: &RepositoryName, digest: &Digest) -> Result<bool> {
        if self.cached_repository(repo).await?.is_none() {
            return Ok(false);
        }
        let Some(manifest) = self.meta.manifest_needing(repo, digest).await? else { return Ok(false) };
        let record = match self.get_manifest(repo, &berth_spec::Reference::Digest(manifest), None).await {
            Ok(record) => record,
            Err(RegistryError::ManifestUnknown(_) | RegistryError::NameUnknown(_)) => return Ok(false),
            Err(e) => return Err(e),
        };
        if record.storage_class == berth_meta::StorageClass::Archive {
            return Err(RegistryError::LayerArchived(digest.clone()));
        }
        Ok(true)
    }

    /// Opens a download signed by [`Registry::sign_layer_download`]; `Denied` if the signature
    /// does not match or the URL has expired.
    pub async fn open_signed_layer(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
        expires_at: i64,
        signed: &SignedDownload,
        range: Option<ByteRange>,
    ) -> Result<BlobBody> {
        let presented = hex::decode(&signed.signature).unwrap_or_default();
        let mac = self.config.url_signing_key.mac(repo, digest, expires_at, signed.fill);
        if mac.verify_slice(&presented).is_err() {
            return Err(RegistryError::Denied("the download URL's signature is not valid".into()));
        }
        if expires_at.saturating_mul(1000) < now_millis() {
            return Err(RegistryError::Denied("the download URL has expired".into()));
        }
        match self.get_blob(repo, digest, range).await {
            // The signer was allowed to import (`sign_layer_download`), and a cached image still
            // lists the layer; the fill never creates the repository.
            Err(RegistryError::BlobUnknown(_))
                if signed.fill
                    && self.meta.get_repository(repo).await?.is_some()
                    && self.fillable(repo, digest).await? =>
            {
                let signer = RequestContext::server(LAYER_DOWNLOAD, uuid::Uuid::new_v4().to_string());
                self.pull_blob(&signer, repo, digest, range).await
            }
            other => other,
        }
    }
}

/// The task a signed download's pull-through fill runs as.
const LAYER_DOWNLOAD: &str = "layer-download";

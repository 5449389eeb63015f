//! Time-limited signed layer downloads (ECR's GetDownloadUrlForLayer, which AWS answers with a
//! pre-signed S3 URL). The signature binds repository, digest and expiry, so the URL itself is
//! the credential: whoever holds it may read that one blob until it expires, and nothing else.

use std::fmt;
use std::fs::{DirBuilder, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use berth_spec::{Digest, RepositoryName};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::{BlobBody, ByteRange, Registry, RegistryError, Result, now_millis};

const KEY_LEN: usize = 32;

/// The key download URLs are signed with. Every server answering a URL must hold the same key,
/// so servers sharing a data directory share it through [`UrlSigningKey::load_or_create`].
#[derive(Clone)]
pub struct UrlSigningKey([u8; KEY_LEN]);

impl fmt::Debug for UrlSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UrlSigningKey(..)")
    }
}

impl UrlSigningKey {
    pub fn random() -> Self {
        let mut key = [0; KEY_LEN];
        getrandom::fill(&mut key).expect("the operating system's random number generator failed");
        UrlSigningKey(key)
    }

    /// Reads the key at `path`, creating it (random, mode 0600, its directory 0700) on first
    /// use. The file appears complete or not at all, so servers starting together agree.
    pub fn load_or_create(path: &Path) -> std::io::Result<Self> {
        if let Some(key) = Self::read(path)? {
            return Ok(key);
        }
        if let Some(dir) = path.parent() {
            DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        }
        let key = Self::random();
        let temporary = path.with_extension(format!("{}.tmp", uuid::Uuid::new_v4().simple()));
        let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&temporary)?;
        file.write_all(&key.0)?;
        file.sync_all()?;
        let linked = std::fs::hard_link(&temporary, path);
        std::fs::remove_file(&temporary)?;
        match linked {
            Ok(()) => Ok(key),
            // Another server created it first: use theirs.
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Self::read(path)?.ok_or(e),
            Err(e) => Err(e),
        }
    }

    fn read(path: &Path) -> std::io::Result<Option<Self>> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let key = bytes.try_into().map_err(|_| {
            std::io::Error::new(
                ErrorKind::InvalidData,
                format!("{} does not hold a {KEY_LEN}-byte key", path.display()),
            )
        })?;
        Ok(Some(UrlSigningKey(key)))
    }

    fn mac(&self, repo: &RepositoryName, digest: &Digest, expires_at: i64) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(format!("berth-layer-download\n{repo}\n{digest}\n{expires_at}").as_bytes());
        mac
    }
}

impl Registry {
    /// Signs a download of `digest` from `repo` that is valid until `expires_at` (epoch
    /// seconds), returning the hex signature. ECR only hands out layers of images: `BlobUnknown`
    /// if the repository lacks the blob, `LayerInaccessible` if no image in it references it.
    pub async fn sign_layer_download(&self, repo: &RepositoryName, digest: &Digest, expires_at: i64) -> Result<String> {
        self.repository(repo).await?;
        // Which images reference the layer comes from one indexed read of the references stored
        // with each manifest, not a parse of every manifest.
        let link = self.blob_link(repo, digest).await?;
        crate::archive::refuse_archived_layer(digest, link.needed_by)?;
        if link.needed_by.is_none() {
            return Err(RegistryError::LayerInaccessible(digest.clone()));
        }
        Ok(hex::encode(self.config.url_signing_key.mac(repo, digest, expires_at).finalize().into_bytes()))
    }

    /// Opens a download signed by [`Registry::sign_layer_download`]; `Denied` if the signature
    /// does not match or the URL has expired.
    pub async fn open_signed_layer(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
        expires_at: i64,
        signature: &str,
        range: Option<ByteRange>,
    ) -> Result<BlobBody> {
        let presented = hex::decode(signature).unwrap_or_default();
        let mac = self.config.url_signing_key.mac(repo, digest, expires_at);
        if mac.verify_slice(&presented).is_err() {
            return Err(RegistryError::Denied("the download URL's signature is not valid".into()));
        }
        if expires_at.saturating_mul(1000) < now_millis() {
            return Err(RegistryError::Denied("the download URL has expired".into()));
        }
        self.get_blob(repo, digest, range).await
    }
}

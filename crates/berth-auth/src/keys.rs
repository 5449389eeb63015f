//! The master key, kept in `<data-dir>/keys/master.key` (32 random bytes, mode 0600, in a 0700
//! directory) and never in the database.
//!
//! Why a key file at all: SigV4 verification recomputes the client's signature, so the server
//! needs every access key's *plaintext* secret; secrets cannot be hashed like passwords. They are
//! encrypted instead, and the key is kept apart from the metadata so a copied database, a backup
//! or a dump of a shared PostgreSQL reveals no secret on its own.
//!
//! Two independent subkeys are derived as HMAC-SHA256(master, label) — HMAC under a uniformly
//! random key is a PRF, which is all HKDF-Expand does for a single block:
//! - the secret-encryption key: XChaCha20-Poly1305, a fresh random 24-byte nonce per secret
//!   stored in front of the ciphertext, the access key id as associated data (a ciphertext copied
//!   into another user's row does not decrypt);
//! - the registry-token signing key (see [`crate::token`]), so tokens and stored secrets never
//!   share a key, and a token forged or leaked tells nothing about the encryption key;
//! - the console's session key (`berth-console`), so a session cookie is never a registry token;
//! - the upstream-secret key (`crate::upstream`): credentials for other registries, sealed the
//!   same way with the secret's name as associated data.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::Error;

const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;
/// First byte of a sealed secret, so the format can change without guessing.
const SEALED_FORMAT_V1: u8 = 1;
const SECRET_ENCRYPTION_LABEL: &[u8] = b"berth/v1/access-key-secret-encryption";
const TOKEN_SIGNING_LABEL: &[u8] = b"berth/v1/registry-token-signing";
const CONSOLE_SESSION_LABEL: &[u8] = b"berth/v1/console-session";
const UPSTREAM_SECRET_LABEL: &[u8] = b"berth/v1/upstream-secret-encryption";
const URL_SIGNING_LABEL: &[u8] = b"berth/v1/layer-download-url-signing";

pub(crate) type HmacSha256 = Hmac<Sha256>;

pub struct MasterKey {
    bytes: [u8; KEY_LEN],
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// Where the key of `data_dir` lives.
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("keys").join("master.key")
    }

    /// The key every server of a cluster must share: `file` when given (`--master-key-file`,
    /// `BERTH_MASTER_KEY_FILE`; it must exist — Berth never invents a key several nodes are meant
    /// to share), else the data dir's own, created on first use.
    pub fn load(data_dir: &Path, file: Option<&Path>) -> Result<Self, Error> {
        match file {
            Some(path) => read_key(path)?.ok_or_else(|| {
                key_error(
                    path,
                    format!("does not exist; create it once with `head -c {KEY_LEN} /dev/urandom > FILE && chmod 600 FILE` and give every server the same file"),
                )
            }),
            None => Self::load_or_create(data_dir),
        }
    }

    /// Reads the key, creating it on first use. Refuses a key file other users can read, like
    /// ssh does, rather than keep using a key that may have leaked.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, Error> {
        let path = Self::path(data_dir);
        if let Some(key) = read_key(&path)? {
            return Ok(key);
        }
        let dir = path.parent().expect("the key path has a parent");
        fs::create_dir_all(data_dir).map_err(|e| Error::io(format!("creating {}", data_dir.display()), e))?;
        create_private_dir(dir)?;
        let key = MasterKey { bytes: random_bytes() };
        // Write a complete temporary file, then hard-link it into place: the link fails if another
        // process (`berth user add` racing `berth serve`) won, and nobody ever reads a partial key.
        let temporary = dir.join(format!(".master.key.{}.tmp", hex_suffix()));
        write_new_private_file(&temporary, &key.bytes)?;
        let linked = fs::hard_link(&temporary, &path);
        let _ = fs::remove_file(&temporary);
        match linked {
            Ok(()) => {
                sync_dir(dir)?;
                tracing::info!(path = %path.display(), "created a new master key");
                Ok(key)
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                read_key(&path)?.ok_or_else(|| key_error(&path, "vanished while being created"))
            }
            Err(e) => Err(Error::io(format!("creating {}", path.display()), e)),
        }
    }

    fn derive(&self, label: &[u8]) -> [u8; KEY_LEN] {
        let mut mac = HmacSha256::new_from_slice(&self.bytes).expect("HMAC takes keys of any length");
        mac.update(label);
        mac.finalize().into_bytes().into()
    }

    pub(crate) fn secret_cipher(&self) -> SecretCipher {
        let key = self.derive(SECRET_ENCRYPTION_LABEL);
        SecretCipher { aead: XChaCha20Poly1305::new(&key.into()) }
    }

    /// Seals the credentials of upstream registries (`crate::upstream`); its own subkey, so an
    /// access-key ciphertext never opens as an upstream secret or the other way round.
    pub(crate) fn upstream_secret_cipher(&self) -> SecretCipher {
        let key = self.derive(UPSTREAM_SECRET_LABEL);
        SecretCipher { aead: XChaCha20Poly1305::new(&key.into()) }
    }

    pub(crate) fn token_signing_key(&self) -> [u8; KEY_LEN] {
        self.derive(TOKEN_SIGNING_LABEL)
    }

    /// The key the web console signs its session cookies and CSRF tokens with: every server
    /// sharing the master key accepts the same sessions, and they survive restarts.
    pub fn console_session_key(&self) -> [u8; KEY_LEN] {
        self.derive(CONSOLE_SESSION_LABEL)
    }

    /// The key layer download URLs (`GetDownloadUrlForLayer`) are signed with: a URL one server
    /// hands out works on every server sharing the master key.
    pub fn url_signing_key(&self) -> [u8; KEY_LEN] {
        self.derive(URL_SIGNING_LABEL)
    }
}

fn key_error(path: &Path, problem: impl Into<String>) -> Error {
    Error::MasterKey { path: path.to_owned(), problem: problem.into() }
}

fn read_key(path: &Path) -> Result<Option<MasterKey>, Error> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("opening {}", path.display()), e)),
    };
    let metadata = file.metadata().map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(key_error(path, format!("is accessible by other users (mode {mode:o}); run `chmod 600` on it")));
    }
    let mut bytes = Vec::with_capacity(KEY_LEN);
    // Read one byte more than needed to notice a file that is too long.
    (&file)
        .take(KEY_LEN as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let bytes: [u8; KEY_LEN] = bytes.try_into().map_err(|bytes: Vec<u8>| {
        key_error(path, format!("must hold exactly {KEY_LEN} bytes, found {}", bytes.len()))
    })?;
    Ok(Some(MasterKey { bytes }))
}

fn create_private_dir(dir: &Path) -> Result<(), Error> {
    match DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::io(format!("creating {}", dir.display()), e)),
    }
}

/// Creates `path` (which must not exist) with mode 0600 and durably writes `contents`.
fn write_new_private_file(path: &Path, contents: &[u8]) -> Result<(), Error> {
    let context = || format!("writing {}", path.display());
    let mut file =
        OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(|e| Error::io(context(), e))?;
    file.write_all(contents).map_err(|e| Error::io(context(), e))?;
    file.sync_all().map_err(|e| Error::io(context(), e))
}

/// Replaces `path` atomically with a 0600 file holding `contents` (readers see the old or the
/// new file, never a partial one).
pub(crate) fn replace_private_file(path: &Path, contents: &[u8]) -> Result<(), Error> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    let temporary = dir.join(format!(".{file_name}.{}.tmp", hex_suffix()));
    write_new_private_file(&temporary, contents)?;
    if let Err(e) = fs::rename(&temporary, path) {
        let _ = fs::remove_file(&temporary);
        return Err(Error::io(format!("writing {}", path.display()), e));
    }
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| Error::io(format!("syncing {}", dir.display()), e))
}

pub(crate) fn hex_suffix() -> String {
    random_bytes::<8>().iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes from the operating system's CSPRNG. Its failure leaves nothing safe to do, hence the panic.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the operating system's random number generator failed");
    bytes
}

/// Encrypts access-key secrets for the database (format: version byte, nonce, ciphertext + tag).
pub(crate) struct SecretCipher {
    aead: XChaCha20Poly1305,
}

impl SecretCipher {
    /// Seals `secret`; `access_key_id` (for upstream secrets: their name) is the associated data.
    pub(crate) fn seal(&self, access_key_id: &str, secret: &str) -> Vec<u8> {
        let nonce_bytes: [u8; NONCE_LEN] = random_bytes();
        let nonce = XNonce::from(nonce_bytes);
        let ciphertext = self
            .aead
            .encrypt(&nonce, Payload { msg: secret.as_bytes(), aad: access_key_id.as_bytes() })
            .expect("XChaCha20-Poly1305 encrypts messages of any practical length");
        let mut sealed = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        sealed.push(SEALED_FORMAT_V1);
        sealed.extend_from_slice(&nonce_bytes);
        sealed.extend_from_slice(&ciphertext);
        sealed
    }

    /// `None` if the bytes were not sealed for this access key id with this master key.
    pub(crate) fn open(&self, access_key_id: &str, sealed: &[u8]) -> Option<String> {
        let (&version, rest) = sealed.split_first()?;
        if version != SEALED_FORMAT_V1 || rest.len() < NONCE_LEN {
            return None;
        }
        let (nonce_bytes, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce = XNonce::try_from(nonce_bytes).ok()?;
        let plaintext = self.aead.decrypt(&nonce, Payload { msg: ciphertext, aad: access_key_id.as_bytes() }).ok()?;
        String::from_utf8(plaintext).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn key_file_is_created_private_and_reloaded_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        let created = MasterKey::load_or_create(&data_dir).unwrap();
        let path = MasterKey::path(&data_dir);
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert_eq!(fs::read(&path).unwrap(), created.bytes);
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);

        let reloaded = MasterKey::load_or_create(&data_dir).unwrap();
        assert_eq!(reloaded.bytes, created.bytes);
    }

    #[test]
    fn two_data_dirs_get_different_keys() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let key_a = MasterKey::load_or_create(a.path()).unwrap();
        let key_b = MasterKey::load_or_create(b.path()).unwrap();
        assert_ne!(key_a.bytes, key_b.bytes);
    }

    #[test]
    fn readable_by_others_or_wrong_length_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        MasterKey::load_or_create(dir.path()).unwrap();
        let path = MasterKey::path(dir.path());

        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = MasterKey::load_or_create(dir.path()).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");

        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(&path, [7u8; 33]).unwrap();
        let err = MasterKey::load_or_create(dir.path()).unwrap_err();
        assert!(err.to_string().contains("exactly 32 bytes, found 33"), "{err}");
    }

    #[test]
    fn derived_keys_differ_from_each_other_and_from_the_master() {
        let dir = tempfile::tempdir().unwrap();
        let key = MasterKey::load_or_create(dir.path()).unwrap();
        let signing = key.token_signing_key();
        assert_ne!(signing, key.bytes);
        assert_ne!(signing, key.derive(SECRET_ENCRYPTION_LABEL));
        assert_eq!(signing, key.token_signing_key());
        let session = key.console_session_key();
        assert!(![key.bytes, signing, key.derive(SECRET_ENCRYPTION_LABEL)].contains(&session));
    }

    #[test]
    fn secret_round_trips_and_is_not_stored_in_plain_text() {
        let dir = tempfile::tempdir().unwrap();
        let cipher = MasterKey::load_or_create(dir.path()).unwrap().secret_cipher();
        let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        let sealed = cipher.seal("AKIAEXAMPLE", secret);
        assert!(!sealed.windows(secret.len()).any(|w| w == secret.as_bytes()));
        assert_eq!(cipher.open("AKIAEXAMPLE", &sealed).as_deref(), Some(secret));
        // A fresh nonce each time: sealing the same secret twice gives different bytes.
        let again = cipher.seal("AKIAEXAMPLE", secret);
        assert_ne!(sealed, again);
        assert_eq!(cipher.open("AKIAEXAMPLE", &again).as_deref(), Some(secret));
    }

    #[test]
    fn sealed_secret_does_not_open_elsewhere_or_after_tampering() {
        let dir = tempfile::tempdir().unwrap();
        let cipher = MasterKey::load_or_create(dir.path()).unwrap().secret_cipher();
        let sealed = cipher.seal("AKIAONE", "secret-one");

        assert_eq!(cipher.open("AKIATWO", &sealed), None, "bound to its access key id");
        for index in [0, 1, NONCE_LEN + 1, sealed.len() - 1] {
            let mut tampered = sealed.clone();
            tampered[index] ^= 0x01;
            assert_eq!(cipher.open("AKIAONE", &tampered), None, "byte {index} flipped");
        }
        assert_eq!(cipher.open("AKIAONE", &sealed[..NONCE_LEN]), None);
        assert_eq!(cipher.open("AKIAONE", &[]), None);

        let other_dir = tempfile::tempdir().unwrap();
        let other = MasterKey::load_or_create(other_dir.path()).unwrap().secret_cipher();
        assert_eq!(other.open("AKIAONE", &sealed), None, "another master key");
    }
}

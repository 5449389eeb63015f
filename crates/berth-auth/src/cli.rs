//! The `berth user ...` and `berth token` commands, minus argument parsing. They write to the
//! data dir's store directly; a running server notices within [`crate::REVALIDATE_INTERVAL`].
//! Output is JSON (one document per command) so scripts can parse it.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use berth_meta::MetadataStore;

use crate::Error;
use crate::keys::MasterKey;
use crate::token::{DEFAULT_TOKEN_LIFETIME, TokenIssuer};
use crate::users::{Identities, ROOT_USER};

/// The environment variable naming a shared master key file, for `berth serve` and the CLI alike.
const MASTER_KEY_FILE_ENV: &str = "BERTH_MASTER_KEY_FILE";

/// `berth user add NAME`: prints `{"userName":..,"accessKeyId":..,"secretAccessKey":..}`, the
/// only time the secret is shown.
pub async fn user_add(
    store: Arc<dyn MetadataStore>,
    data_dir: &Path,
    name: &str,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let master_key = master_key(data_dir)?;
    let credentials = Identities::new(store, &master_key).create_user(name).await?;
    print_json(out, &serde_json::to_value(&credentials).expect("credentials serialize"))
}

/// `berth user list`: a JSON array of `{"userName","accessKeyId","createdAt"}` (seconds since the
/// epoch, as the ECR API writes times), sorted by name. Needs no key: nothing secret is read.
pub async fn user_list(store: Arc<dyn MetadataStore>, out: &mut dyn Write) -> Result<(), Error> {
    let users: Vec<serde_json::Value> = store
        .list_users()
        .await?
        .into_iter()
        .map(|user| {
            serde_json::json!({
                "userName": user.name,
                "accessKeyId": user.access_key_id,
                "createdAt": user.created_at as f64 / 1000.0,
            })
        })
        .collect();
    print_json(out, &serde_json::Value::Array(users))
}

/// `berth user remove NAME`: fails with [`Error::UserNotFound`] if there is no such user.
pub async fn user_remove(store: Arc<dyn MetadataStore>, name: &str) -> Result<(), Error> {
    if store.delete_user(name).await? { Ok(()) } else { Err(Error::UserNotFound(name.to_owned())) }
}

/// `berth token [--user NAME]`: prints a registry token (default user `root`), valid 12 hours,
/// usable as `docker login -u AWS --password-stdin`.
pub async fn token(
    store: Arc<dyn MetadataStore>,
    data_dir: &Path,
    user: Option<&str>,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let master_key = master_key(data_dir)?;
    let issuer = TokenIssuer::new(&master_key, DEFAULT_TOKEN_LIFETIME);
    let issued = Identities::new(store, &master_key).issue_token(&issuer, user.unwrap_or(ROOT_USER)).await?;
    writeln!(out, "{}", issued.token).map_err(|e| Error::io("writing the token".into(), e))
}

/// The key the server uses: `BERTH_MASTER_KEY_FILE` when set (as `berth serve` reads it), else
/// the data dir's.
fn master_key(data_dir: &Path) -> Result<MasterKey, Error> {
    let file = std::env::var_os(MASTER_KEY_FILE_ENV).map(std::path::PathBuf::from);
    MasterKey::load(data_dir, file.as_deref())
}

fn print_json(out: &mut dyn Write, value: &serde_json::Value) -> Result<(), Error> {
    writeln!(out, "{value}").map_err(|e| Error::io("writing the output".into(), e))
}

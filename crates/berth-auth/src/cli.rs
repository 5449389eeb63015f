//! The `berth user ...` and `berth token` commands, minus argument parsing. They write to the
//! data dir's store directly; a running server notices within [`crate::REVALIDATE_INTERVAL`].
//! Output is JSON (one document per command) so scripts can parse it.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use berth_iam::{Policy, SizeLimit, managed};
use berth_meta::{AccessKeyStatus, MetaError, MetadataStore, UserPolicy};

use crate::Error;
use crate::keys::MasterKey;
use crate::token::{DEFAULT_TOKEN_LIFETIME, TokenIssuer};
use crate::users::{Identities, ROOT_USER};

/// The environment variable naming a shared master key file, for `berth serve` and the CLI alike.
const MASTER_KEY_FILE_ENV: &str = "BERTH_MASTER_KEY_FILE";

/// `berth user add NAME [--policy P]...`: prints `{"userName":..,"accessKeyId":..,
/// "secretAccessKey":..}`, the only time the secret is shown. Every policy is checked (see
/// [`resolve_policy`]) before the user is created with them, in one transaction.
pub async fn user_add(
    store: Arc<dyn MetadataStore>,
    data_dir: &Path,
    name: &str,
    policies: &[String],
    out: &mut dyn Write,
) -> Result<(), Error> {
    let policies = policies.iter().map(|p| resolve_policy(p)).collect::<Result<Vec<_>, _>>()?;
    let master_key = master_key(data_dir)?;
    let credentials = Identities::new(store, &master_key).create_user(name, &policies).await?;
    print_json(out, &serde_json::to_value(&credentials).expect("credentials serialize"))
}

/// `berth user list`: a JSON array of `{"userName","accessKeyId","status","createdAt","policies"}`
/// (seconds since the epoch, as the ECR API writes times; policy names), sorted by name. Needs
/// no key: nothing secret is read.
pub async fn user_list(store: Arc<dyn MetadataStore>, out: &mut dyn Write) -> Result<(), Error> {
    let mut policies: std::collections::HashMap<String, Vec<String>> = std::collections::HashMap::new();
    for (user, policy) in store.list_user_policies().await? {
        policies.entry(user).or_default().push(policy.name);
    }
    let users: Vec<serde_json::Value> = store
        .list_users()
        .await?
        .into_iter()
        .map(|user| {
            let attached = policies.remove(&user.name).unwrap_or_default();
            serde_json::json!({
                "userName": user.name,
                "accessKeyId": user.access_key_id,
                "status": user.key_status.as_str(),
                "createdAt": user.created_at as f64 / 1000.0,
                "policies": attached,
            })
        })
        .collect();
    print_json(out, &serde_json::Value::Array(users))
}

/// A `--policy` argument: the name (or ARN) of one of AWS's managed ECR policies, else the path
/// of a JSON identity-policy document, named after its file (`ci-push.json` → `ci-push`), which
/// must parse as IAM would accept it.
pub fn resolve_policy(argument: &str) -> Result<UserPolicy, Error> {
    if managed::by_name(argument).is_some() {
        let name = argument.rsplit('/').next().unwrap_or(argument);
        return Ok(UserPolicy { name: name.to_owned(), document: None });
    }
    let path = Path::new(argument);
    let document = std::fs::read_to_string(path).map_err(|e| {
        let names: Vec<&str> = managed::ALL.iter().map(|(name, _)| *name).collect();
        Error::InvalidPolicy(format!(
            "{argument} is neither a managed policy ({}) nor a readable policy file: {e}",
            names.join(", ")
        ))
    })?;
    Policy::parse_identity(&document, SizeLimit::MANAGED_POLICY)
        .map_err(|e| Error::InvalidPolicy(format!("{argument} is not a valid identity policy: {e}")))?;
    let name = path.file_stem().and_then(|stem| stem.to_str()).unwrap_or_default();
    // IAM's rule for policy names.
    let valid =
        (1..=128).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b));
    if !valid || managed::by_name(name).is_some() {
        return Err(Error::InvalidPolicy(format!(
            "{argument}: the file's name {name:?} names the policy; use 1 to 128 letters, digits or +=,.@_- \
             and not a managed policy's name"
        )));
    }
    Ok(UserPolicy { name: name.to_owned(), document: Some(document) })
}

/// `berth user policy attach NAME P`: attaches (or replaces, by name) a policy; prints the user's
/// policies as `policy list` does.
pub async fn policy_attach(
    store: Arc<dyn MetadataStore>,
    user: &str,
    policy: &str,
    out: &mut dyn Write,
) -> Result<(), Error> {
    if user == ROOT_USER {
        return Err(Error::RootUnchangeable("is allowed everything: policies do not apply to it"));
    }
    let policy = resolve_policy(policy)?;
    store.attach_user_policy(user, &policy).await.map_err(unknown_user)?;
    policy_list(store, user, out).await
}

/// `berth user policy detach NAME P` (a policy's name, or the file or managed policy it was
/// attached as); prints the user's remaining policies.
pub async fn policy_detach(
    store: Arc<dyn MetadataStore>,
    user: &str,
    policy: &str,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let name = resolve_policy(policy).map(|p| p.name).unwrap_or_else(|_| policy.to_owned());
    if !store.detach_user_policy(user, &name).await.map_err(unknown_user)? {
        return Err(Error::PolicyNotAttached { user: user.to_owned(), policy: name });
    }
    policy_list(store, user, out).await
}

/// `berth user policy list NAME`: `{"userName","policies":[{"policyName","policyArn"} for a
/// managed policy, {"policyName","policyDocument"} for the user's own]}`.
pub async fn policy_list(store: Arc<dyn MetadataStore>, user: &str, out: &mut dyn Write) -> Result<(), Error> {
    if store.user_by_name(user).await?.is_none() {
        return Err(Error::UserNotFound(user.to_owned()));
    }
    let policies: Vec<serde_json::Value> = store
        .list_user_policies()
        .await?
        .into_iter()
        .filter(|(owner, _)| owner == user)
        .map(|(_, policy)| match policy.document {
            None => serde_json::json!({
                "policyName": policy.name,
                "policyArn": format!("arn:aws:iam::aws:policy/{}", policy.name),
            }),
            Some(document) => serde_json::json!({
                "policyName": policy.name,
                "policyDocument": serde_json::from_str::<serde_json::Value>(&document).unwrap_or(document.into()),
            }),
        })
        .collect();
    print_json(out, &serde_json::json!({ "userName": user, "policies": policies }))
}

/// The store's `UserUnknown` as the CLI and the identities report it.
pub(crate) fn unknown_user(e: MetaError) -> Error {
    match e {
        MetaError::UserUnknown(name) => Error::UserNotFound(name),
        other => other.into(),
    }
}

/// `berth user key activate|deactivate NAME`: sets the status of the user's access key (IAM's
/// `Active` / `Inactive`) and prints `{"userName","accessKeyId","status","previousStatus"}`. The
/// root user's key can be deactivated too: this command, which needs only the data dir, is the
/// way back.
pub async fn key_status(
    store: Arc<dyn MetadataStore>,
    name: &str,
    status: AccessKeyStatus,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let previous = store.set_access_key_status(name, status).await.map_err(unknown_user)?;
    let user = store.user_by_name(name).await?.ok_or_else(|| Error::UserNotFound(name.to_owned()))?;
    print_json(
        out,
        &serde_json::json!({
            "userName": user.name,
            "accessKeyId": user.access_key_id,
            "status": user.key_status.as_str(),
            "previousStatus": previous.as_str(),
        }),
    )
}

/// `berth user remove NAME`: fails with [`Error::UserNotFound`] if there is no such user. The
/// root user stays, as the console keeps it: removing it would lock its automation out and a
/// restart would make it anew with other keys.
pub async fn user_remove(store: Arc<dyn MetadataStore>, name: &str) -> Result<(), Error> {
    if name == ROOT_USER {
        return Err(Error::RootUnchangeable(
            "cannot be removed (to stop its key: berth user key deactivate root, undone by activate)",
        ));
    }
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
pub fn master_key(data_dir: &Path) -> Result<MasterKey, Error> {
    let file = std::env::var_os(MASTER_KEY_FILE_ENV).map(std::path::PathBuf::from);
    MasterKey::load(data_dir, file.as_deref())
}

fn print_json(out: &mut dyn Write, value: &serde_json::Value) -> Result<(), Error> {
    writeln!(out, "{value}").map_err(|e| Error::io("writing the output".into(), e))
}

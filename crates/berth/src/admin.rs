//! `berth user ...` and `berth token`: identity management on a data directory, safe to run
//! while a server uses it (SQLite serialises the writers; the server notices within a second).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use berth_meta::{MetadataStore, PostgresStore, SqliteStore};

#[derive(clap::Args)]
pub struct DataDir {
    /// The server's data directory [default: ./berth-data]
    #[arg(long, env = "BERTH_DATA_DIR", default_value = "berth-data")]
    data_dir: PathBuf,
    /// The server's PostgreSQL URL, when it keeps metadata there.
    #[arg(long, env = "BERTH_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
}

#[derive(clap::Subcommand)]
pub enum UserCommand {
    /// Create a user with a fresh access key; prints {"userName","accessKeyId","secretAccessKey"}.
    Add {
        name: String,
        #[command(flatten)]
        dir: DataDir,
    },
    /// List users (no secrets).
    List {
        #[command(flatten)]
        dir: DataDir,
    },
    /// Remove a user; its access key and registry tokens stop working.
    Remove {
        name: String,
        #[command(flatten)]
        dir: DataDir,
    },
}

#[derive(clap::Args)]
pub struct TokenArgs {
    /// The user the token authenticates as [default: root]
    #[arg(long)]
    user: Option<String>,
    #[command(flatten)]
    dir: DataDir,
}

/// The same metadata store `berth serve` uses for these flags.
async fn open(dir: &DataDir) -> anyhow::Result<Arc<dyn MetadataStore>> {
    if let Some(url) = &dir.database_url {
        return Ok(Arc::new(PostgresStore::connect(url).await.context("connecting to PostgreSQL")?));
    }
    std::fs::create_dir_all(&dir.data_dir).with_context(|| format!("creating {}", dir.data_dir.display()))?;
    let store = SqliteStore::open(&dir.data_dir.join("metadata.db")).await.context("opening the metadata database")?;
    Ok(Arc::new(store))
}

pub async fn user(command: UserCommand) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let store = match &command {
        UserCommand::Add { dir, .. } | UserCommand::List { dir } | UserCommand::Remove { dir, .. } => open(dir).await?,
    };
    let result = match &command {
        UserCommand::Add { name, dir } => berth_auth::cli::user_add(store.clone(), &dir.data_dir, name, &mut out).await,
        UserCommand::List { .. } => berth_auth::cli::user_list(store.clone(), &mut out).await,
        UserCommand::Remove { name, .. } => berth_auth::cli::user_remove(store.clone(), name).await,
    };
    store.close().await;
    Ok(result?)
}

pub async fn token(args: TokenArgs) -> anyhow::Result<()> {
    let store = open(&args.dir).await?;
    let result =
        berth_auth::cli::token(store.clone(), &args.dir.data_dir, args.user.as_deref(), &mut std::io::stdout().lock())
            .await;
    store.close().await;
    Ok(result?)
}

#[derive(clap::Subcommand)]
pub enum SecretCommand {
    /// Store (or replace) credentials for an upstream registry, sealed under the master key;
    /// prints the ARN a pull-through cache rule's credentialArn names them by.
    Put {
        /// The secret's name: the ARN ends in `secret:ecr-pullthroughcache/NAME`.
        name: String,
        /// The user name at the upstream registry.
        #[arg(long)]
        username: String,
        /// Read the password (or access token) from standard input; required, so it never shows
        /// in the process list or shell history.
        #[arg(long, required = true)]
        password_stdin: bool,
        /// The 12-digit account id in the ARN: the server's --registry-id [default: 000000000000]
        #[arg(long, env = "BERTH_REGISTRY_ID", default_value = "000000000000")]
        registry_id: String,
        /// The region in the ARN: the server's --region [default: us-east-1]
        #[arg(long, env = "BERTH_REGION", default_value = "us-east-1")]
        region: String,
        #[command(flatten)]
        dir: DataDir,
    },
}

pub async fn secret(command: SecretCommand) -> anyhow::Result<()> {
    let SecretCommand::Put { name, username, password_stdin: _, registry_id, region, dir } = command;
    let mut password = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin().lock(), &mut password).context("reading the password")?;
    let password = password.strip_suffix('\n').map(|p| p.strip_suffix('\r').unwrap_or(p)).unwrap_or(&password);
    anyhow::ensure!(!password.is_empty(), "the password on standard input is empty");
    let master_key = berth_auth::MasterKey::load_or_create(&dir.data_dir)?;
    let store = open(&dir).await?;
    let login = berth_auth::UpstreamLogin { username, password: password.to_owned() };
    let result =
        berth_auth::upstream::put_secret(store.clone(), &master_key, &name, &login, &region, &registry_id).await;
    store.close().await;
    println!("{}", result?);
    Ok(())
}

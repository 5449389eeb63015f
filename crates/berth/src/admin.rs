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

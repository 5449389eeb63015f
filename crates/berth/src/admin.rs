//! `berth user ...`, `berth token` and `berth policy simulate`: identity management on a data
//! directory, safe to run while a server uses it (SQLite serialises the writers; the server
//! notices within a second), and IAM's policy simulator over the same store, offline.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use berth_meta::{AccessKeyStatus, MetadataStore, PostgresStore, SqliteStore};

#[derive(clap::Args)]
pub struct DataDir {
    /// The server's data directory
    #[arg(long, env = "BERTH_DATA_DIR", default_value = "./berth-data")]
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
        /// An identity policy for the user: a managed policy's name (AmazonEC2ContainerRegistryFullAccess,
        /// …PowerUser, …ReadOnly, …PullOnly) or a JSON policy file (named after the file). Repeatable;
        /// without any the user may do nothing.
        #[arg(long = "policy", value_name = "FILE|MANAGED_NAME")]
        policies: Vec<String>,
        #[command(flatten)]
        dir: DataDir,
    },
    /// Attach, detach and list a user's identity policies (prints the user's policies as JSON).
    #[command(subcommand)]
    Policy(UserPolicyCommand),
    /// Deactivate or reactivate a user's access key (IAM's Active / Inactive).
    #[command(subcommand)]
    Key(UserKeyCommand),
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

#[derive(clap::Subcommand)]
pub enum UserKeyCommand {
    /// Make the user's access key work again (its tokens and console sessions too).
    Activate {
        name: String,
        #[command(flatten)]
        dir: DataDir,
    },
    /// Stop the user's access key, its registry tokens and console sessions, keeping the user and
    /// its policies (within a second on a running server).
    Deactivate {
        name: String,
        #[command(flatten)]
        dir: DataDir,
    },
}

#[derive(clap::Subcommand)]
pub enum UserPolicyCommand {
    /// Attach a managed policy or a policy file (replacing the user's policy of the same name).
    Attach {
        name: String,
        #[arg(value_name = "FILE|MANAGED_NAME")]
        policy: String,
        #[command(flatten)]
        dir: DataDir,
    },
    /// Detach a policy, by its name (or the file or managed name it was attached as).
    Detach {
        name: String,
        policy: String,
        #[command(flatten)]
        dir: DataDir,
    },
    /// Print the user's policies as JSON.
    List {
        name: String,
        #[command(flatten)]
        dir: DataDir,
    },
}

#[derive(clap::Subcommand)]
pub enum PolicyCommand {
    /// Decide one request offline as the server would, and print the decision (allowed, explicit
    /// deny, implicit deny) with the statements that made it.
    Simulate(SimulateArgs),
}

#[derive(clap::Args)]
pub struct SimulateArgs {
    /// The user making the request (`root` is refused only by a resource policy's Deny).
    #[arg(long)]
    user: String,
    /// The ECR action, e.g. ecr:PutImage.
    #[arg(long)]
    action: String,
    /// The repository the request is about; without it, the registry (`*`).
    #[arg(long)]
    repository: Option<String>,
    /// The client address (`aws:SourceIp`).
    #[arg(long)]
    source_ip: Option<std::net::IpAddr>,
    /// Whether the request came over TLS (`aws:SecureTransport`).
    #[arg(long)]
    secure_transport: bool,
    /// The server's --registry-id (the account in ARNs) [default: 000000000000]
    #[arg(long, env = "BERTH_REGISTRY_ID")]
    registry_id: Option<String>,
    /// The server's --region [default: us-east-1]
    #[arg(long, env = "BERTH_REGION")]
    region: Option<String>,
    #[command(flatten)]
    dir: DataDir,
}

#[derive(clap::Args)]
pub struct TokenArgs {
    /// The user the token authenticates as [default: root]
    #[arg(long)]
    user: Option<String>,
    #[command(flatten)]
    dir: DataDir,
}

/// Whether a command may start a new, empty store: only those that set one up (`user add`,
/// `secret put`, as before a first `berth serve`); the others refuse a data dir without one, so
/// a mistyped path is an error rather than an empty registry.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Store {
    CreateIfMissing,
    Existing,
}

/// Fails unless `data_dir` holds a metadata database (`berth serve`'s, on SQLite).
pub fn require_existing(data_dir: &Path) -> anyhow::Result<()> {
    let database = data_dir.join("metadata.db");
    anyhow::ensure!(
        database.is_file(),
        "no Berth data in {}: {} does not exist (give the --data-dir, or --database-url, that `berth serve` uses)",
        data_dir.display(),
        database.display()
    );
    Ok(())
}

/// The same metadata store `berth serve` uses for these flags.
async fn open(dir: &DataDir, store: Store) -> anyhow::Result<Arc<dyn MetadataStore>> {
    if let Some(url) = &dir.database_url {
        return Ok(Arc::new(PostgresStore::connect(url).await.context("connecting to PostgreSQL")?));
    }
    if store == Store::Existing {
        require_existing(&dir.data_dir)?;
    }
    std::fs::create_dir_all(&dir.data_dir).with_context(|| format!("creating {}", dir.data_dir.display()))?;
    let store = SqliteStore::open(&dir.data_dir.join("metadata.db")).await.context("opening the metadata database")?;
    Ok(Arc::new(store))
}

pub async fn user(command: UserCommand) -> anyhow::Result<()> {
    use UserPolicyCommand::{Attach, Detach, List};
    use berth_auth::cli;
    let mut out = std::io::stdout().lock();
    let store = match &command {
        UserCommand::Add { dir, .. } => open(dir, Store::CreateIfMissing).await?,
        UserCommand::List { dir }
        | UserCommand::Remove { dir, .. }
        | UserCommand::Key(UserKeyCommand::Activate { dir, .. } | UserKeyCommand::Deactivate { dir, .. })
        | UserCommand::Policy(Attach { dir, .. } | Detach { dir, .. } | List { dir, .. }) => {
            open(dir, Store::Existing).await?
        }
    };
    let result = match &command {
        UserCommand::Add { name, policies, dir } => {
            let added = cli::user_add(store.clone(), &dir.data_dir, name, policies, &mut out).await;
            if added.is_ok() && policies.is_empty() {
                eprintln!(
                    "warning: user {name} has no policy and may do nothing; attach one with \
                     `berth user policy attach {name} AmazonEC2ContainerRegistryReadOnly` (or another)"
                );
            }
            added
        }
        UserCommand::List { .. } => cli::user_list(store.clone(), &mut out).await,
        UserCommand::Remove { name, .. } => cli::user_remove(store.clone(), name).await,
        UserCommand::Key(UserKeyCommand::Activate { name, .. }) => {
            cli::key_status(store.clone(), name, AccessKeyStatus::Active, &mut out).await
        }
        UserCommand::Key(UserKeyCommand::Deactivate { name, .. }) => {
            cli::key_status(store.clone(), name, AccessKeyStatus::Inactive, &mut out).await
        }
        UserCommand::Policy(Attach { name, policy, .. }) => {
            cli::policy_attach(store.clone(), name, policy, &mut out).await
        }
        UserCommand::Policy(Detach { name, policy, .. }) => {
            cli::policy_detach(store.clone(), name, policy, &mut out).await
        }
        UserCommand::Policy(List { name, .. }) => cli::policy_list(store.clone(), name, &mut out).await,
    };
    store.close().await;
    Ok(result?)
}

/// `berth policy simulate`: the server's own authorizer over the store, for one request.
pub async fn policy(command: PolicyCommand) -> anyhow::Result<()> {
    let PolicyCommand::Simulate(args) = command;
    let store = open(&args.dir, Store::Existing).await?;
    let result = simulate(store.clone(), &args).await;
    store.close().await;
    let text = result?;
    println!("{text}");
    Ok(())
}

async fn simulate(store: Arc<dyn MetadataStore>, args: &SimulateArgs) -> anyhow::Result<String> {
    use berth_iam::{CredentialKind, RequestContext};
    use berth_registry::{Authorizer, RegistryConfig, Resource};

    let mut config = RegistryConfig::default();
    if let Some(id) = &args.registry_id {
        anyhow::ensure!(berth_ecr::validate::is_account_id(id), "--registry-id must be 12 digits, not {id:?}");
        config.account_id.clone_from(id);
    }
    if let Some(region) = &args.region {
        anyhow::ensure!(berth_ecr::names::is_region(region), "--region must be like us-east-1, not {region:?}");
        config.region.clone_from(region);
    }
    let user = store.user_by_name(&args.user).await?.with_context(|| format!("user {} does not exist", args.user))?;
    let identity = berth_auth::identity_of(&user.name, &user.access_key_id, CredentialKind::AccessKey);
    let ctx = RequestContext {
        source_ip: args.source_ip,
        secure_transport: args.secure_transport,
        identity,
        ..RequestContext::server("simulate", "simulate".into())
    };
    // The actions the server checks: ECR's (service prefix in any case, as IAM reads it) and
    // berth:GetMetrics.
    let known = berth_iam::actions::ALL_ECR.iter().chain([&berth_iam::actions::GET_METRICS]);
    let Some(action) = known.copied().find(|known| {
        let (service, name) = known.split_once(':').expect("actions name their service");
        // IAM reads action names in any case.
        args.action
            .split_once(':')
            .is_some_and(|(s, n)| s.eq_ignore_ascii_case(service) && n.eq_ignore_ascii_case(name))
    }) else {
        anyhow::bail!(
            "--action must be an action Berth checks, such as ecr:PutImage or berth:GetMetrics, not {:?}",
            args.action
        );
    };
    let repository = match &args.repository {
        Some(name) => Some(
            name.parse::<berth_spec::RepositoryName>()
                .map_err(|e| anyhow::anyhow!("--repository {name:?} is not a repository name: {e}"))?,
        ),
        None => None,
    };
    let resource = match &repository {
        Some(repository) => Resource::Repository(repository.as_str()),
        None => Resource::Registry,
    };
    let authorizer = Authorizer::new(store, &config);
    let explanation = authorizer.explain(&ctx, action, resource).await?;
    let mut text = format!("{}\n{action} on {}\n{}", args.user, authorizer.arn(resource), explanation.decision);
    if let Some(message) = explanation.message {
        text.push_str(&format!("\nthe API answers: {message}"));
    }
    Ok(text)
}

pub async fn token(args: TokenArgs) -> anyhow::Result<()> {
    let store = open(&args.dir, Store::Existing).await?;
    let user = args.user.as_deref();
    let result = async {
        may_get_token(store.clone(), user).await?;
        let mut out = std::io::stdout().lock();
        anyhow::Ok(berth_auth::cli::token(store.clone(), &args.dir.data_dir, user, &mut out).await?)
    }
    .await;
    store.close().await;
    result
}

/// A token stands for `ecr:GetAuthorizationToken`, so the CLI mints one only for a user whose
/// policies allow that action from anywhere: `aws ecr get-login-password` would be refused
/// otherwise, and the token would get past a policy gating it by address.
async fn may_get_token(store: Arc<dyn MetadataStore>, user: Option<&str>) -> anyhow::Result<()> {
    use berth_iam::{CredentialKind, RequestContext};
    use berth_registry::{Authorizer, RegistryConfig, Resource};

    let Some(name) = user.filter(|name| *name != berth_auth::ROOT_USER) else { return Ok(()) };
    let Some(user) = store.user_by_name(name).await? else {
        return Ok(()); // the token command says the user does not exist
    };
    let identity = berth_auth::identity_of(&user.name, &user.access_key_id, CredentialKind::AccessKey);
    // No address; over TLS, as a careful client would ask.
    let ctx = RequestContext { identity, secure_transport: true, ..RequestContext::server("token", "token".into()) };
    let authorizer = Authorizer::new(store, &RegistryConfig::default());
    let action = berth_iam::actions::GET_AUTHORIZATION_TOKEN;
    let explanation = authorizer.explain(&ctx, action, Resource::Registry).await?;
    anyhow::ensure!(
        explanation.decision.is_allowed(),
        "user {name} may not get a token: its policies do not allow {action} from any address ({}); \
         `berth policy simulate --user {name} --action {action}` explains the decision",
        explanation.decision
    );
    Ok(())
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
        /// The upstream registry URL the credentials are for (`https://ghcr.io`, `docker.io`):
        /// only rules of that upstream may use them, and any user allowed to create rules may
        /// name them; without it, only the root user's rules may.
        #[arg(long)]
        upstream: Option<String>,
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
    let SecretCommand::Put { name, username, upstream, password_stdin: _, registry_id, region, dir } = command;
    if let Some(url) = &upstream {
        berth_registry::pull_through::upstream_endpoint(url)?;
    }
    let mut password = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin().lock(), &mut password).context("reading the password")?;
    let password = password.strip_suffix('\n').map(|p| p.strip_suffix('\r').unwrap_or(p)).unwrap_or(&password);
    anyhow::ensure!(!password.is_empty(), "the password on standard input is empty");
    let master_key = berth_auth::cli::master_key(&dir.data_dir)?;
    let store = open(&dir, Store::CreateIfMissing).await?;
    let login = berth_auth::UpstreamLogin { username, password: password.to_owned(), upstream };
    let result =
        berth_auth::upstream::put_secret(store.clone(), &master_key, &name, &login, &region, &registry_id).await;
    store.close().await;
    println!("{}", result?);
    Ok(())
}

#[derive(clap::Subcommand)]
pub enum CacheCommand {
    /// Per pull-through cache rule as JSON: pulls served from the cache (hits) and from the
    /// upstream (misses), their bytes, and the last upstream failure. Servers add their counts
    /// every 10 seconds.
    Status {
        #[command(flatten)]
        dir: DataDir,
    },
}

pub async fn cache(command: CacheCommand) -> anyhow::Result<()> {
    let CacheCommand::Status { dir } = command;
    let store = open(&dir, Store::Existing).await?;
    let result = berth_registry::cache_stats::cache_status(&*store).await;
    store.close().await;
    let rules: Vec<serde_json::Value> = result?
        .into_iter()
        .map(|status| {
            let stats = &status.stats;
            let pulls = stats.hits + stats.misses;
            serde_json::json!({
                "ecrRepositoryPrefix": status.rule.ecr_repository_prefix,
                "upstreamRegistryUrl": status.rule.upstream.upstream_registry_url,
                "hits": stats.hits,
                "misses": stats.misses,
                "hitRatio": if pulls > 0 { Some(stats.hits as f64 / pulls as f64) } else { None },
                "bytesFromCache": stats.bytes_from_cache,
                "bytesFromUpstream": stats.bytes_from_upstream,
                "lastUpstreamError": stats.last_error.as_ref().map(|(at, message)| serde_json::json!({
                    "at": rfc3339(*at),
                    "message": message,
                })),
            })
        })
        .collect();
    println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "rules": rules }))?);
    Ok(())
}

#[derive(clap::Subcommand)]
pub enum OutboxCommand {
    /// Every consumer of the event outbox as JSON: name (`webhook/<name>`,
    /// `replication/<region>/<registry id>`), when it was registered and last claimed for by any
    /// server, and how many events wait for it (they, and older ones, are kept until it takes them).
    Consumers {
        #[command(flatten)]
        dir: DataDir,
    },
    /// Removes a consumer that left every server's configuration, with its backlog, so the
    /// outbox prunes what it held back. Refused while any server claimed for it within
    /// `--idle-secs` (servers claim for their configured consumers twice a second while idle).
    RemoveConsumer {
        name: String,
        /// How long no server may have claimed for it; must outlast the longest delivery
        /// (a webhook's timeout, a large blob replicated); at least 10.
        #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(10..))]
        idle_secs: u64,
        #[command(flatten)]
        dir: DataDir,
    },
}

pub async fn outbox(command: OutboxCommand) -> anyhow::Result<()> {
    use berth_registry::events::{ConsumerRemoval, EventLog};
    match command {
        OutboxCommand::Consumers { dir } => {
            let store = open(&dir, Store::Existing).await?;
            let result = EventLog::new(store.clone()).consumers().await;
            store.close().await;
            let consumers: Vec<serde_json::Value> = result?
                .into_iter()
                .map(|c| {
                    serde_json::json!({
                        "name": c.name,
                        "registeredAt": rfc3339(c.registered_at),
                        "lastClaimedAt": c.last_claimed_at.map(rfc3339),
                        "pendingEvents": c.pending,
                    })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "consumers": consumers }))?);
            Ok(())
        }
        OutboxCommand::RemoveConsumer { name, idle_secs, dir } => {
            let store = open(&dir, Store::Existing).await?;
            let idle = std::time::Duration::from_secs(idle_secs);
            let result = EventLog::new(store.clone()).remove_idle(&name, idle).await;
            store.close().await;
            match result? {
                ConsumerRemoval::Removed => {
                    println!("removed consumer {name}; maintenance prunes the events it held back within an hour");
                    Ok(())
                }
                ConsumerRemoval::Unknown => anyhow::bail!("no consumer is named {name} (see `berth outbox consumers`)"),
                ConsumerRemoval::Active { last_active } => anyhow::bail!(
                    "consumer {name} was registered or claimed for by a server at {}, within the last {idle_secs} s: \
                     a server still has it configured. Remove it from every server's configuration file and \
                     restart them, then try again after {idle_secs} s",
                    rfc3339(last_active)
                ),
            }
        }
    }
}

/// Milliseconds since the epoch as `2026-01-31T12:00:00.123Z`.
fn rfc3339(millis: i64) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| millis.to_string())
}

//! `berth`: the registry server and its command-line tools.

mod admin;
mod audit;
mod config;
mod connection;
mod ecr_auth;
mod edge;
mod gc;
mod health;
mod listener;
mod metrics;
mod serve;
mod throttle;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "berth", version, about = "A self-hostable, ECR-compatible container registry")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the registry (OCI /v2/ API and ECR API on one port).
    Serve(config::ServeArgs),
    /// Manage users and their access keys.
    #[command(subcommand)]
    User(admin::UserCommand),
    /// Explain authorization decisions offline (IAM's policy simulator).
    #[command(subcommand)]
    Policy(admin::PolicyCommand),
    /// Print a registry token (a docker login password for user AWS), valid 12 hours.
    Token(admin::TokenArgs),
    /// Credentials for upstream registries (pull-through cache rules' credentialArn).
    #[command(subcommand)]
    Secret(admin::SecretCommand),
    /// The pull-through cache as the servers saw it.
    #[command(subcommand)]
    Cache(admin::CacheCommand),
    /// The event outbox's consumers (webhooks, replication destinations) across all servers.
    #[command(subcommand)]
    Outbox(admin::OutboxCommand),
    /// Reclaim blob data no image needs: one garbage-collection pass, safe while servers run.
    /// Takes the server's flags or config file, to find its stores.
    Gc(gc::GcArgs),
}

fn main() -> anyhow::Result<()> {
    release_large_buffers();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve::run(args.resolve()?)),
        Command::User(command) => runtime.block_on(admin::user(command)),
        Command::Token(args) => runtime.block_on(admin::token(args)),
        Command::Policy(command) => runtime.block_on(admin::policy(command)),
        Command::Secret(command) => runtime.block_on(admin::secret(command)),
        Command::Cache(command) => runtime.block_on(admin::cache(command)),
        Command::Outbox(command) => runtime.block_on(admin::outbox(command)),
        Command::Gc(args) => runtime.block_on(gc::run(args)),
    }
}

/// Makes glibc return every allocation of 128 KiB or more to the system when it is freed. By
/// default glibc raises that threshold to the size of the largest block freed so far (up to 32
/// MiB), after which request bodies of a few MiB (manifests, ECR calls) come from its arenas and
/// stay resident when freed: hostile bodies once left a server at 119 MiB instead of 17 MiB
/// (tests/soak/hostile.py). Setting the threshold turns that adjustment off. An operator's own
/// `MALLOC_MMAP_THRESHOLD_` wins.
fn release_large_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
        // SAFETY: mallopt only sets a tunable of the allocator, before any thread exists.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        }
    }
}

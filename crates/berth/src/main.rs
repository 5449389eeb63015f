//! `berth`: the registry server and its command-line tools.

mod admin;
mod audit;
mod config;
mod connection;
mod ecr_auth;
mod ecr_names;
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

/// Fixes glibc's mmap threshold at 512 KiB and its trim threshold at 2 MiB. By default glibc
/// raises the mmap threshold to the size of the largest block freed so far (up to 32 MiB), after
/// which request bodies of a few MiB (manifests, ECR calls) come from its arenas and stay resident
/// when freed: hostile bodies once left a server at 119 MiB instead of 17 MiB
/// (tests/soak/hostile.py). Setting it turns that adjustment off. Not lower: the byte paths'
/// buffers (256 KiB file reads, hyper's socket reads of up to 400 KiB) must come from the arenas
/// and be reused, since a fresh mapping per buffer faults in every page (at 128 KiB a pull cost
/// 1.0 s of CPU per GB instead of 0.5). The trim threshold keeps up to 2 MiB free at an arena's
/// top for the next buffer. An operator's own `MALLOC_MMAP_THRESHOLD_` wins.
fn release_large_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
        // SAFETY: mallopt only sets a tunable of the allocator, before any thread exists.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 512 * 1024);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 2 * 1024 * 1024);
        }
    }
}

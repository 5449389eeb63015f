//! `berth`: the registry server and its command-line tools.

mod admin;
mod config;
mod ecr_auth;
mod listener;
mod serve;

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
    /// Print a registry token (a docker login password for user AWS), valid 12 hours.
    Token(admin::TokenArgs),
}

fn main() -> anyhow::Result<()> {
    limit_malloc_arenas();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve::run(args.resolve()?)),
        Command::User(command) => runtime.block_on(admin::user(command)),
        Command::Token(args) => runtime.block_on(admin::token(args)),
    }
}

/// glibc gives each thread that allocates its own malloc arena (up to 8 per core), and each
/// arena keeps freed memory around: two arenas keep an idle server's RSS small at no measurable
/// cost on two cores.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts allocator tuning; called before any thread is started.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

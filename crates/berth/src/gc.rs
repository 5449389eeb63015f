//! `berth gc [--dry-run]`: one garbage-collection pass over the stores a server with the same
//! flags or config file uses. Safe next to running servers: GC's protocol is the same as their
//! own passes' (ARCHITECTURE.md, "Garbage collection").

use berth_registry::{GcReport, Registry, RegistryConfig};

use crate::config::ServeArgs;
use crate::serve;

#[derive(clap::Args)]
pub struct GcArgs {
    /// Report what a pass would reclaim now, changing nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    server: ServeArgs,
}

pub async fn run(args: GcArgs) -> anyhow::Result<()> {
    let config = args.server.resolve()?;
    if config.database_url.is_none() {
        crate::admin::require_existing(&config.data_dir)?;
    }
    let (meta, blobs) = serve::open_stores(&config).await?;
    let registry = Registry::new(blobs, meta.clone(), RegistryConfig::default());
    // Interrupted (Ctrl-C, SIGTERM), the pass stops but the deletions it began end first.
    let result = tokio::select! {
        result = registry.collect_garbage(config.gc_grace, args.dry_run) => Some(result),
        () = serve::interrupted() => None,
    };
    // Bounded: a second Ctrl-C no longer ends the process once the handlers are installed.
    if tokio::time::timeout(std::time::Duration::from_secs(30), registry.finish_blob_deletions()).await.is_err() {
        eprintln!("a blob deletion did not end within 30 s; pushes of that blob wait until it is presumed stalled");
    }
    meta.close().await;
    match result {
        Some(result) => println!("{}", summary(&result?, args.dry_run)),
        None => {
            anyhow::bail!("interrupted: the blob deletions under way were finished; run berth gc again for the rest")
        }
    }
    Ok(())
}

fn summary(report: &GcReport, dry_run: bool) -> String {
    let (release, delete) = if dry_run { ("would release", "would delete") } else { ("released", "deleted") };
    format!(
        "{release} {} blob links no manifest needs; {delete} {} blobs ({} bytes); {} unlinked blobs ({} bytes) \
         are in their grace period",
        report.links_released, report.blobs_deleted, report.bytes_deleted, report.blobs_waiting, report.bytes_waiting
    )
}

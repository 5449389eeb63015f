//! Group commit: what makes a committed write durable before the store reports it done.
//!
//! PostgreSQL's commit is durable by itself. SQLite's writer runs at `synchronous = NORMAL`, so a
//! commit only writes the WAL, and every write path then waits in [`Durability::committed`]: one
//! `fdatasync` of the WAL covers every commit that finished before it started, so concurrent
//! writers share one flush (a burst of eight pushes pays one, not eight) while "acknowledged means
//! durable" still holds. What SQLite moves out of the WAL goes through a checkpoint, which syncs
//! the database file itself at `NORMAL`.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{MetaError, Result};

pub(crate) enum Durability {
    /// The database's commit is durable (PostgreSQL).
    OnCommit,
    /// Commits are durable once the WAL is synced (SQLite at `synchronous = NORMAL`).
    WalSync(WalSync),
}

impl Durability {
    /// Why writes fail until a restart (a failed WAL sync), if they do.
    pub(crate) async fn failure(&self) -> Option<String> {
        match self {
            Durability::OnCommit => None,
            Durability::WalSync(wal) => wal.state.lock().await.failed.clone(),
        }
    }

    /// Waits until every commit this caller finished is durable. Call after each committed write.
    pub(crate) async fn committed(&self) -> Result<()> {
        match self {
            Durability::OnCommit => Ok(()),
            Durability::WalSync(wal) => wal.committed().await,
        }
    }
}

pub(crate) struct WalSync {
    wal: PathBuf,
    /// Commits finished so far; a commit's ticket is this count just after it.
    finished: AtomicU64,
    state: tokio::sync::Mutex<SyncState>,
}

#[derive(Default)]
struct SyncState {
    /// Every ticket up to this one is durable.
    synced: u64,
    /// The WAL file as last synced, with its inode number: SQLite deletes it when its last
    /// connection closes and creates it anew later (`sync_wal` reopens it then). Held open so a
    /// writeback error the kernel records is reported to us.
    file: Option<(u64, std::fs::File)>,
    /// After a failed sync nothing says which commits reached the disk (a retried fsync may
    /// succeed over lost pages), so every later write fails until a restart.
    failed: Option<String>,
}

impl WalSync {
    /// Syncs the WAL of the SQLite database at `database`.
    pub(crate) fn new(database: &Path) -> WalSync {
        let mut wal = database.as_os_str().to_owned();
        wal.push("-wal");
        WalSync { wal: wal.into(), finished: AtomicU64::new(0), state: tokio::sync::Mutex::default() }
    }

    /// Every commit up to this ticket is durable.
    #[cfg(test)]
    pub(crate) async fn synced_through(&self) -> u64 {
        self.state.lock().await.synced
    }

    async fn committed(&self) -> Result<()> {
        let ticket = self.finished.fetch_add(1, Ordering::SeqCst) + 1;
        let mut state = self.state.lock().await;
        if let Some(failure) = &state.failed {
            return Err(MetaError::Backend(failure.clone()));
        }
        if state.synced >= ticket {
            // A sync that started after this commit finished covered it.
            return Ok(());
        }
        // Every commit counted here finished before the sync below starts.
        let through = self.finished.load(Ordering::SeqCst);
        let (wal, held) = (self.wal.clone(), state.file.take());
        let (file, synced) = tokio::task::spawn_blocking(move || sync_wal(&wal, held))
            .await
            .map_err(|e| MetaError::Backend(e.to_string()))?;
        state.file = file;
        match synced {
            Ok(()) => {
                state.synced = through;
                Ok(())
            }
            Err(e) => {
                let failure = format!("syncing the metadata WAL {} failed ({e}); restart berth", self.wal.display());
                tracing::error!("{failure}");
                state.failed = Some(failure.clone());
                Err(MetaError::Backend(failure))
            }
        }
    }
}

/// `fdatasync`s the WAL at `path`, reusing `held` while it is still the file there.
fn sync_wal(path: &Path, held: Option<(u64, std::fs::File)>) -> (Option<(u64, std::fs::File)>, io::Result<()>) {
    let inode = match std::fs::metadata(path) {
        Ok(meta) => meta.ino(),
        // No WAL: the last connection closed, and its checkpoint synced everything into the
        // database file.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return (held, Ok(())),
        Err(e) => return (held, Err(e)),
    };
    // Same inode number and still linked: the same file. (A WAL deleted and recreated may get the
    // number of the old one back, whose open descriptor then syncs nothing that matters.)
    let still_there = |file: &std::fs::File| file.metadata().is_ok_and(|meta| meta.nlink() > 0);
    let file = match held {
        Some((held_inode, file)) if held_inode == inode && still_there(&file) => file,
        _ => {
            let opened = std::fs::File::open(path).and_then(|file| {
                // A new WAL file: its directory entry must be durable too.
                let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
                std::fs::File::open(dir)?.sync_all()?;
                Ok(file)
            });
            match opened {
                Ok(file) => file,
                Err(e) => return (None, Err(e)),
            }
        }
    };
    let synced = file.sync_data();
    (Some((inode, file)), synced)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_commit_waits_for_a_sync_that_started_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("meta.db");
        let wal = WalSync::new(&database);
        // No WAL yet: nothing to sync, and nothing lost.
        wal.committed().await.unwrap();
        std::fs::write(dir.path().join("meta.db-wal"), b"frames").unwrap();
        wal.committed().await.unwrap();
        let state = wal.state.lock().await;
        assert_eq!(state.synced, 2, "the second commit was synced");
        assert!(state.file.is_some(), "the WAL stays open for the next sync");
    }

    #[tokio::test]
    async fn a_recreated_wal_is_the_one_synced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db-wal");
        std::fs::write(&path, b"old").unwrap();
        let wal = WalSync::new(&dir.path().join("meta.db"));
        wal.committed().await.unwrap();
        // SQLite deletes the WAL when its last connection closes and creates it anew later,
        // perhaps under the same inode number.
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, b"new").unwrap();
        wal.committed().await.unwrap();
        let state = wal.state.lock().await;
        let (_, held) = state.file.as_ref().unwrap();
        assert!(held.metadata().unwrap().nlink() > 0, "the descriptor synced is the linked WAL");
        assert_eq!(held.metadata().unwrap().ino(), std::fs::metadata(&path).unwrap().ino());
    }

    #[tokio::test]
    async fn a_failed_sync_fails_every_later_write() {
        let dir = tempfile::tempdir().unwrap();
        let wal_path = dir.path().join("meta.db-wal");
        // open(2) of a socket fails (ENXIO): the sync cannot be done.
        let socket = std::os::unix::net::UnixListener::bind(&wal_path).unwrap();
        let wal = WalSync::new(&dir.path().join("meta.db"));
        let first = wal.committed().await.unwrap_err();
        assert!(first.to_string().contains("restart berth"), "{first}");
        drop(socket);
        std::fs::remove_file(&wal_path).unwrap();
        std::fs::write(&wal_path, b"frames").unwrap();
        let later = wal.committed().await.unwrap_err();
        assert_eq!(later.to_string(), first.to_string(), "a sync that works now does not vouch for the lost one");
        let failure = Durability::WalSync(wal).failure().await.expect("readiness hears of it");
        assert!(failure.contains("restart berth"), "{failure}");
    }
}

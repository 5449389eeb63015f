//! Direct I/O (`O_DIRECT`) for the bulk of large blobs: their bytes move between Berth's buffers
//! and the disk by DMA instead of being copied through the page cache.
//!
//! Why: on the VM the bench runs on, putting 1 GiB into page-cache pages costs 2.5–3.7 s of
//! system time whenever the guest has not touched that memory lately (buffered `dd`, written or
//! read), against 0.06–0.15 s for the same bytes written or read directly; a large push spent
//! 69 % of its CPU in that copy. A commit's fsync then has no gigabyte of dirty pages to write
//! back either. MinIO writes objects the same way. The cost is that such blobs are not in the
//! page cache afterwards; `FsBlobStore` reads a large blob through the cache from its second read
//! in a while, so a hot layer still ends up cached.
//!
//! Direct transfers need their file offset, length and buffer address aligned ([`align`]); the
//! unaligned ends of an upload go through the page cache. Where a filesystem refuses `O_DIRECT`
//! (EINVAL or EOPNOTSUPP at open or at a transfer) the same bytes go through the page cache
//! instead.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Alignment of direct transfers and of where they start in a file: the page size, and at least
/// 4 KiB, the largest logical block size of common disks. Page-sized, so a page of a file is
/// written either directly or through the page cache, never both (ZFS also asks for it).
pub(crate) fn align() -> usize {
    static ALIGN: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    // SAFETY: sysconf has no preconditions.
    *ALIGN.get_or_init(|| (unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize).max(4096))
}

/// Bytes per direct transfer: few syscalls per GB, one such buffer per transfer in flight.
pub(crate) const CHUNK: usize = 1024 * 1024;

/// A [`CHUNK`]-sized buffer at an [`align`]ed address, filled from its start.
pub(crate) struct AlignedBuffer {
    raw: Vec<u8>,
    start: usize,
    len: usize,
}

/// Memory of dropped buffers (with each one's aligned start), for the next: a fresh buffer
/// costs a page fault and zeroing per page, on the bench VM more than the transfer into it.
/// Kept only while transfers go on: [`release_idle_buffers`] frees them after [`SPARE_IDLE`].
static SPARE: Mutex<Spares> = Mutex::new(Spares { buffers: Vec::new(), last_used: None });
/// Spare buffers kept at most: a pull's piece in flight, the next being read, one being written.
const SPARE_MAX: usize = 4;
/// How long spare buffers outlive the last transfer that used one.
const SPARE_IDLE: Duration = Duration::from_secs(1);

struct Spares {
    buffers: Vec<(Vec<u8>, usize)>,
    last_used: Option<Instant>,
}

fn spare() -> std::sync::MutexGuard<'static, Spares> {
    SPARE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Frees the spare buffers when no transfer has taken or returned one for [`SPARE_IDLE`]: held
/// for good they kept 4 MiB in a server's RSS after its last large transfer.
pub fn release_idle_buffers() {
    spare().release_if_idle(Instant::now());
}

impl Spares {
    fn release_if_idle(&mut self, now: Instant) {
        if self.last_used.is_some_and(|used| now.saturating_duration_since(used) >= SPARE_IDLE) {
            self.buffers = Vec::new();
            self.last_used = None;
        }
    }
}

impl AlignedBuffer {
    /// An empty buffer, reusing a dropped one's memory if there is any.
    pub(crate) fn new() -> AlignedBuffer {
        let reused = {
            let mut spares = spare();
            spares.last_used = Some(Instant::now());
            spares.buffers.pop()
        };
        let (raw, start) = reused.unwrap_or_else(|| {
            let raw = vec![0u8; CHUNK + align()];
            let start = raw.as_ptr().align_offset(align());
            (raw, start)
        });
        AlignedBuffer { raw, start, len: 0 }
    }

    pub(crate) fn filled(&self) -> &[u8] {
        &self.raw[self.start..self.start + self.len]
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn is_full(&self) -> bool {
        self.len == CHUNK
    }

    /// Copies as much of `data` as fits; returns how much that was.
    pub(crate) fn fill_from(&mut self, data: &[u8]) -> usize {
        let taken = data.len().min(CHUNK - self.len);
        let at = self.start + self.len;
        self.raw[at..at + taken].copy_from_slice(&data[..taken]);
        self.len += taken;
        taken
    }

    pub(crate) fn clear(&mut self) {
        self.len = 0;
    }
}

impl Drop for AlignedBuffer {
    fn drop(&mut self) {
        let mut spares = spare();
        if spares.buffers.len() < SPARE_MAX {
            spares.buffers.push((std::mem::take(&mut self.raw), self.start));
            spares.last_used = Some(Instant::now());
        }
    }
}

impl AsRef<[u8]> for AlignedBuffer {
    fn as_ref(&self) -> &[u8] {
        self.filled()
    }
}

/// Direct uploads under way at most. Each holds up to three [`CHUNK`] buffers (one filling
/// while its client sends, one being written, one spare), so a crowd of clients stalling in mid
/// body would otherwise pin a megabyte each; past this, uploads go through the page cache.
const WRITERS_MAX: usize = 16;
static WRITERS: AtomicUsize = AtomicUsize::new(0);

/// One of the [`WRITERS_MAX`] places for a direct upload, given back when dropped.
pub(crate) struct WriterSlot(());

impl WriterSlot {
    /// A free place, or `None` when [`WRITERS_MAX`] direct uploads are under way.
    pub(crate) fn take() -> Option<WriterSlot> {
        WRITERS
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < WRITERS_MAX).then_some(n + 1))
            .ok()
            .map(|_| WriterSlot(()))
    }
}

impl Drop for WriterSlot {
    fn drop(&mut self) {
        WRITERS.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Opens `path` for direct writes (`write`) or reads; `None` where the filesystem refuses.
#[cfg(target_os = "linux")]
pub(crate) fn open(path: &Path, write: bool) -> io::Result<Option<File>> {
    use std::os::unix::fs::OpenOptionsExt;
    let opened = std::fs::OpenOptions::new().read(!write).write(write).custom_flags(libc::O_DIRECT).open(path);
    match opened {
        Ok(file) => Ok(Some(file)),
        Err(e) if refused(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn open(_path: &Path, _write: bool) -> io::Result<Option<File>> {
    Ok(None)
}

/// The file behind `file` opened again for direct reads — the same inode, even if it was
/// unlinked since (a blob deleted mid-pull) — or `None` where that cannot be done (no `/proc`,
/// no `O_DIRECT`): the caller then reads through the page cache.
#[cfg(target_os = "linux")]
pub(crate) fn reopen_for_reading(file: &File) -> Option<File> {
    use std::os::fd::AsRawFd;
    open(Path::new(&format!("/proc/self/fd/{}", file.as_raw_fd())), false).ok().flatten()
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn reopen_for_reading(_file: &File) -> Option<File> {
    None
}

/// How filesystems without direct I/O (or with stricter alignment) answer it.
fn refused(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EINVAL | libc::EOPNOTSUPP))
}

/// Writes `data` at `offset` (a multiple of [`align`]): its aligned part through `direct` when
/// given, the rest — and all of it where direct writes are refused — through `buffered`, a
/// descriptor of the same file. Returns `direct` unless it was refused, for the next write.
pub(crate) fn write_at(direct: Option<File>, buffered: &File, data: &[u8], offset: u64) -> io::Result<Option<File>> {
    debug_assert_eq!(offset % align() as u64, 0);
    let aligned = data.len() / align() * align();
    let direct = match direct {
        Some(file) if aligned > 0 => match file.write_all_at(&data[..aligned], offset) {
            Ok(()) => Some(file),
            Err(e) if refused(&e) => {
                buffered.write_all_at(&data[..aligned], offset)?;
                None
            }
            Err(e) => return Err(e),
        },
        direct => {
            buffered.write_all_at(&data[..aligned], offset)?;
            direct
        }
    };
    buffered.write_all_at(&data[aligned..], offset + aligned as u64)?;
    Ok(direct)
}

/// Up to [`CHUNK`] bytes of `file` (opened by [`open`] for reading) from `offset`, a multiple of
/// [`align`]; fewer only at the end of the file. `None` if the filesystem refuses.
pub(crate) fn read_at(file: &File, offset: u64) -> io::Result<Option<AlignedBuffer>> {
    debug_assert_eq!(offset % align() as u64, 0);
    let mut buffer = AlignedBuffer::new();
    while !buffer.is_full() {
        let at = buffer.start + buffer.len;
        let end = buffer.start + CHUNK;
        match file.read_at(&mut buffer.raw[at..end], offset + buffer.len as u64) {
            Ok(0) => break,
            Ok(read) => {
                buffer.len += read;
                // A transfer that stops short of a block stopped at the end of the file.
                if read % align() != 0 {
                    break;
                }
            }
            Err(e) if refused(&e) => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Some(buffer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spare_buffers_go_only_after_a_second_unused() {
        let used = Instant::now();
        let mut spares = Spares { buffers: vec![(vec![0; 8], 0)], last_used: Some(used) };
        spares.release_if_idle(used + Duration::from_millis(900));
        assert_eq!(spares.buffers.len(), 1, "still in use a moment ago");
        spares.release_if_idle(used + SPARE_IDLE);
        assert!(spares.buffers.is_empty() && spares.last_used.is_none());
    }

    fn content(len: usize) -> Vec<u8> {
        (0..len as u32).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn buffers_are_aligned_and_fill_to_their_size() {
        let mut buffer = AlignedBuffer::new();
        assert_eq!(buffer.filled().as_ptr() as usize % align(), 0);
        let data = content(CHUNK + 10);
        assert_eq!(buffer.fill_from(&data[..10]), 10);
        assert_eq!(buffer.fill_from(&data[10..]), CHUNK - 10, "only what fits");
        assert!(buffer.is_full());
        assert_eq!(buffer.filled(), &data[..CHUNK]);
        buffer.clear();
        assert!(buffer.is_empty());
    }

    /// Whatever the filesystem under the test's temporary directory does with `O_DIRECT` (tmpfs
    /// and ext4 take it, others refuse), the bytes land where they belong and read back whole.
    #[test]
    fn writes_and_reads_land_whole_with_or_without_direct_io() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("file");
        let data = content(3 * CHUNK + 1234);
        let buffered = std::fs::OpenOptions::new().create(true).truncate(true).write(true).open(&path).unwrap();
        let mut direct = open(&path, true).unwrap();
        let mut offset = 0;
        for piece in data.chunks(CHUNK) {
            let mut buffer = AlignedBuffer::new();
            buffer.fill_from(piece);
            direct = write_at(direct, &buffered, buffer.filled(), offset).unwrap();
            offset += piece.len() as u64;
        }
        assert_eq!(std::fs::read(&path).unwrap(), data);
        let Some(reader) = open(&path, false).unwrap() else { return };
        let mut read = Vec::new();
        loop {
            let piece = read_at(&reader, read.len() as u64).unwrap().expect("a file opened direct reads direct");
            read.extend_from_slice(piece.filled());
            if !piece.is_full() {
                break;
            }
        }
        assert_eq!(read, data);
    }
}

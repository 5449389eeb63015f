//! Filesystem backend: `blobs/<alg>/<hh>/<hex>` for committed blobs, `uploads/<id>` for staging.
//!
//! Commit = fsync the staged file, rename it into place, fsync the directory: after a crash a blob
//! path either holds the whole verified content or does not exist.

use std::io::{self, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use berth_spec::Digest;
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::fs;

use crate::{BlobStore, ByteStream, ChunkObserver, StoreError, direct};

/// Large reads keep syscalls and per-chunk overhead low on the pull path.
const READ_CHUNK: usize = 256 * 1024;
/// Mapped pieces are larger: fewer mmap/munmap calls, and they cost page tables, not copies.
const MAP_CHUNK: usize = 1024 * 1024;

pub struct FsBlobStore {
    root: PathBuf,
    durable_dirs: Arc<DurableDirs>,
    read_lately: ReadLately,
}

/// A read of at least this much of a blob is direct (see [`direct`]) where the page cache lacks
/// the bytes, unless the blob was read a moment ago.
const DIRECT_READ_MIN: u64 = direct::CHUNK as u64;

/// Blobs read lately, so that the second read of a large blob in a while goes through the page
/// cache and leaves it there: a layer many clients pull is served from memory, one pulled once
/// never displaces anything.
#[derive(Default)]
struct ReadLately(Mutex<std::collections::HashMap<Digest, std::time::Instant>>);

/// How long a read counts as lately.
const READ_LATELY: std::time::Duration = std::time::Duration::from_secs(600);
/// Blobs remembered at most; older ones are forgotten first.
const READ_LATELY_MAX: usize = 4096;

impl ReadLately {
    /// Notes a read of `digest`; whether it is the first in a while.
    fn first_in_a_while(&self, digest: &Digest) -> bool {
        let now = std::time::Instant::now();
        let mut reads = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if reads.len() >= READ_LATELY_MAX {
            reads.retain(|_, at| now.duration_since(*at) < READ_LATELY);
            if reads.len() >= READ_LATELY_MAX {
                reads.clear();
            }
        }
        reads.insert(digest.clone(), now).is_none_or(|before| now.duration_since(before) >= READ_LATELY)
    }
}

/// Directories known to be synced into their parents (or given: the store's root), so a blob is
/// renamed only into a directory whose entry outlasts a crash — including one another commit
/// is making right now, whose parent it may not have synced yet.
#[derive(Default)]
struct DurableDirs(Mutex<std::collections::HashSet<PathBuf>>);

impl DurableDirs {
    fn contains(&self, dir: &Path) -> bool {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).contains(dir)
    }

    fn insert(&self, dir: &Path) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).insert(dir.to_owned());
    }

    fn forget(&self, dir: &Path) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(dir);
    }
}

impl FsBlobStore {
    /// Opens (creating if needed) a store rooted at `root`.
    pub async fn open(root: impl Into<PathBuf>) -> io::Result<FsBlobStore> {
        let root = root.into();
        let durable_dirs = Arc::new(DurableDirs::default());
        let (dirs, made) = (durable_dirs.clone(), root.clone());
        tokio::task::spawn_blocking(move || {
            // The root is the operator's; what the store makes in it is synced into it.
            std::fs::create_dir_all(&made)?;
            dirs.insert(&made);
            create_dir_durably(&made.join("uploads"), &dirs)?;
            create_dir_durably(&made.join("blobs"), &dirs)
        })
        .await
        .map_err(io::Error::other)??;
        Ok(FsBlobStore { root, durable_dirs, read_lately: ReadLately::default() })
    }

    fn upload_path(&self, upload: &str) -> Result<PathBuf, StoreError> {
        // Upload ids come from URLs: allow only characters that cannot form a path.
        if upload.is_empty() || !upload.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(StoreError::UploadNotFound(upload.to_owned()));
        }
        Ok(self.root.join("uploads").join(upload))
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.root.join("blobs").join(digest.algorithm().as_str()).join(&hex[..2]).join(hex)
    }
}

fn not_found_as_none<T>(r: io::Result<T>) -> io::Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes `chunks` in order at the file's position (blocking).
fn write_chunks(file: &mut std::fs::File, chunks: &[bytes::Bytes]) -> io::Result<()> {
    chunks.iter().try_for_each(|chunk| std::io::Write::write_all(file, chunk))
}

/// Bytes gathered per blocking write: few thread hand-offs per GB, little memory per upload.
const WRITE_BATCH: usize = 256 * 1024;

/// A whole body up to this size (an image config, a tiny layer) is written on the request's
/// thread: copying it into the page cache costs less than a blocking task's two thread switches.
/// Kept small because the kernel may pause a writing thread while dirty pages are over its limit
/// (big uploads outrunning the disk), and this thread serves other requests too.
const INLINE_WRITE_MAX: usize = 16 * 1024;

/// How long received bytes of an upload may wait in memory for more before they are written:
/// a client that stalls in mid body then holds no more than one socket read of the server's.
const IDLE_FLUSH: std::time::Duration = std::time::Duration::from_millis(250);

/// Writes an upload's chunks as they arrive, without copying them: chunks gather into a batch
/// that one blocking task writes while the next batch is received (and hashed) meanwhile.
struct BatchWriter {
    /// The file, when no write is in flight.
    file: Option<std::fs::File>,
    in_flight: Option<tokio::task::JoinHandle<(std::fs::File, io::Result<()>)>>,
    batch: Vec<bytes::Bytes>,
    batch_len: usize,
}

impl BatchWriter {
    async fn push(&mut self, chunk: bytes::Bytes) -> io::Result<()> {
        self.batch_len += chunk.len();
        self.batch.push(chunk);
        if self.batch_len >= WRITE_BATCH { self.start_write().await } else { Ok(()) }
    }

    /// Waits for the write in flight, then hands the current batch to a new one.
    async fn start_write(&mut self) -> io::Result<()> {
        self.settle().await?;
        let Some(mut file) = self.file.take() else { return Err(io::Error::other("upload file lost")) };
        let batch = std::mem::take(&mut self.batch);
        self.batch_len = 0;
        self.in_flight = Some(tokio::task::spawn_blocking(move || {
            let result = write_chunks(&mut file, &batch);
            (file, result)
        }));
        Ok(())
    }

    /// Waits for the write in flight (if any); the file is back in `self.file` unless the task died.
    async fn settle(&mut self) -> io::Result<()> {
        let Some(task) = self.in_flight.take() else { return Ok(()) };
        let (file, result) = task.await.map_err(io::Error::other)?;
        self.file = Some(file);
        result
    }

    /// Writes what is left when `complete` (else drops it) and waits for every write.
    async fn finish(mut self, complete: bool) -> (Option<std::fs::File>, io::Result<()>) {
        let mut result = self.settle().await;
        if complete && result.is_ok() && !self.batch.is_empty() {
            result = self.start_write().await;
            if result.is_ok() {
                result = self.settle().await;
            }
        }
        (self.file, result)
    }
}

/// How the rest of an upload's body after its first batch is written.
enum UploadWriter {
    Batched(BatchWriter),
    Direct(DirectWriter),
}

impl UploadWriter {
    /// Whether received bytes wait in memory that [`UploadWriter::flush`] would write out: a
    /// batch does; a direct upload's partly filled buffer cannot be written until it is full
    /// (alignment), and [`direct::WriterSlot`] bounds how many of those there are.
    fn holds_unwritten(&self) -> bool {
        matches!(self, UploadWriter::Batched(writer) if writer.batch_len > 0)
    }

    /// Starts writing what a batch holds (see [`UploadWriter::holds_unwritten`]).
    async fn flush(&mut self) -> io::Result<()> {
        match self {
            UploadWriter::Batched(writer) if writer.batch_len > 0 => writer.start_write().await,
            _ => Ok(()),
        }
    }

    async fn push(&mut self, chunk: bytes::Bytes) -> io::Result<()> {
        match self {
            UploadWriter::Batched(writer) => writer.push(chunk).await,
            UploadWriter::Direct(writer) => writer.push(&chunk).await,
        }
    }

    /// Writes what is left when `complete` and waits for every write; returns the file.
    async fn finish(self, complete: bool) -> (Option<std::fs::File>, io::Result<()>) {
        match self {
            UploadWriter::Batched(writer) => writer.finish(complete).await,
            UploadWriter::Direct(writer) => writer.finish(complete).await,
        }
    }
}

/// The two descriptors a direct upload writes through (see [`direct::write_at`]).
struct DirectFiles {
    buffered: std::fs::File,
    direct: Option<std::fs::File>,
}

/// Writes a large body directly (see [`direct`]): its chunks are copied into an aligned buffer
/// that one blocking task writes while the next buffer fills.
struct DirectWriter {
    /// The descriptors, when no write is in flight.
    files: Option<DirectFiles>,
    in_flight: Option<tokio::task::JoinHandle<(DirectFiles, direct::AlignedBuffer, io::Result<()>)>>,
    filling: direct::AlignedBuffer,
    /// The buffer back from the last write, for the next.
    spare: Option<direct::AlignedBuffer>,
    /// File offset of `filling`'s first byte, a multiple of `direct::align()`.
    position: u64,
    _slot: direct::WriterSlot,
}

impl DirectWriter {
    fn new(buffered: std::fs::File, direct: std::fs::File, position: u64, slot: direct::WriterSlot) -> DirectWriter {
        DirectWriter {
            files: Some(DirectFiles { buffered, direct: Some(direct) }),
            in_flight: None,
            filling: direct::AlignedBuffer::new(),
            spare: None,
            position,
            _slot: slot,
        }
    }

    async fn push(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            data = &data[self.filling.fill_from(data)..];
            if self.filling.is_full() {
                self.start_write().await?;
            }
        }
        Ok(())
    }

    /// Waits for the write in flight, then hands the filled buffer to a new one.
    async fn start_write(&mut self) -> io::Result<()> {
        self.settle().await?;
        let Some(files) = self.files.take() else { return Err(io::Error::other("upload file lost")) };
        let next = self.spare.take().unwrap_or_else(direct::AlignedBuffer::new);
        let buffer = std::mem::replace(&mut self.filling, next);
        let position = self.position;
        self.position += buffer.filled().len() as u64;
        self.in_flight = Some(tokio::task::spawn_blocking(move || {
            let DirectFiles { buffered, direct } = files;
            match direct::write_at(direct, &buffered, buffer.filled(), position) {
                Ok(direct) => (DirectFiles { buffered, direct }, buffer, Ok(())),
                Err(e) => (DirectFiles { buffered, direct: None }, buffer, Err(e)),
            }
        }));
        Ok(())
    }

    async fn settle(&mut self) -> io::Result<()> {
        let Some(task) = self.in_flight.take() else { return Ok(()) };
        let (files, mut buffer, result) = task.await.map_err(io::Error::other)?;
        self.files = Some(files);
        buffer.clear();
        self.spare = Some(buffer);
        result
    }

    async fn finish(mut self, complete: bool) -> (Option<std::fs::File>, io::Result<()>) {
        let mut result = self.settle().await;
        if complete && result.is_ok() && !self.filling.is_empty() {
            result = self.start_write().await;
            if result.is_ok() {
                result = self.settle().await;
            }
        }
        (self.files.map(|files| files.buffered), result)
    }
}

/// A blob or upload file opened for reading: where the wanted bytes start, and how many.
struct Span {
    file: Arc<std::fs::File>,
    start: u64,
    len: u64,
    /// Whether `mincore` tells the truth about this file's cached pages: since Linux 5.0 it
    /// reports every page of a file mapping as cached unless the caller owns the file or may
    /// write it, so a file of another user (a data directory restored by someone else) is read,
    /// never mapped.
    residency_known: bool,
}

/// Opens `path` (`None` if missing) in one blocking task with the span to read: `range`, or the
/// whole file; `Err(size)` if the range does not fit.
async fn open_span(path: PathBuf, range: Option<Range<u64>>) -> io::Result<Option<Result<Span, u64>>> {
    let opened = tokio::task::spawn_blocking(move || -> io::Result<Result<Span, u64>> {
        let file = Arc::new(std::fs::File::open(&path)?);
        let metadata = file.metadata()?;
        let (size, residency_known) = (metadata.len(), owned_by_us(&metadata));
        Ok(match range {
            None => Ok(Span { file, start: 0, len: size, residency_known }),
            Some(r) if r.start > r.end || r.end > size => Err(size),
            Some(r) => Ok(Span { file, start: r.start, len: r.end - r.start, residency_known }),
        })
    })
    .await
    .map_err(io::Error::other)?;
    not_found_as_none(opened)
}

/// The span's bytes in `READ_CHUNK` pieces, none copied more than needed. A piece the page cache
/// holds is served right here: from a committed blob (`mappable`) as a read-only mapping of the
/// cached pages (`MAP_CHUNK` long), which a plain-HTTP socket write copies once (`sendfile`
/// cost twice as much CPU per GiB on loopback, see `connection.rs`); otherwise read straight into
/// the buffer that goes out (tokio's `File` would copy every byte once more through its own
/// buffer). Only a piece that needs the disk goes to a blocking thread (on a pull of cached data
/// those hand-offs cost more CPU than the copies); with `direct`, from the first such piece on the
/// rest is read directly (see [`direct`]), each piece while the one before goes out.
fn file_chunks(span: Span, mappable: bool, direct: bool) -> ByteStream {
    let reader = SpanReader {
        file: span.file,
        offset: span.start,
        remaining: span.len,
        mappable: mappable && span.residency_known,
        uncached: if direct { Uncached::MayGoDirect } else { Uncached::Buffered },
    };
    futures::stream::try_unfold(reader, |mut reader| async move {
        if reader.remaining == 0 {
            return Ok(None);
        }
        let chunk = reader.next_piece().await?;
        if chunk.is_empty() {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "blob file is shorter than its size"));
        }
        let read = chunk.len() as u64;
        reader.offset += read;
        reader.remaining -= read;
        Ok(Some((chunk, reader)))
    })
    .boxed()
}

struct SpanReader {
    file: Arc<std::fs::File>,
    offset: u64,
    remaining: u64,
    mappable: bool,
    uncached: Uncached,
}

/// How a [`SpanReader`] reads what the page cache does not hold.
enum Uncached {
    /// Through the page cache, on a blocking thread.
    Buffered,
    /// Directly, from the first such piece on, once the file is opened again for it.
    MayGoDirect,
    /// Directly, through `file`; the piece at the offset given may be on its way already.
    Direct { file: Arc<std::fs::File>, next: Option<(u64, DirectRead)> },
}

type DirectRead = tokio::task::JoinHandle<io::Result<Option<direct::AlignedBuffer>>>;

impl SpanReader {
    async fn next_piece(&mut self) -> io::Result<bytes::Bytes> {
        if matches!(self.uncached, Uncached::Direct { .. })
            && let Some(piece) = self.direct_piece().await?
        {
            return Ok(piece);
        }
        let want = self.remaining.min(READ_CHUNK as u64) as usize;
        let (file, offset) = (&self.file, self.offset);
        let mapped = self.mappable.then(|| map_cached(file, offset, self.remaining.min(MAP_CHUNK as u64) as usize));
        if let Some(mapped) = mapped.transpose()?.flatten() {
            return Ok(mapped);
        }
        if let Some(read) = read_cached(file, offset, want)? {
            return Ok(read.into());
        }
        if let Uncached::MayGoDirect = self.uncached {
            let file = self.file.clone();
            let reopened = tokio::task::spawn_blocking(move || direct::reopen_for_reading(&file))
                .await
                .map_err(io::Error::other)?;
            self.uncached = match reopened {
                Some(file) => Uncached::Direct { file: Arc::new(file), next: None },
                None => Uncached::Buffered,
            };
            if let Some(piece) = self.direct_piece().await? {
                return Ok(piece);
            }
        }
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || -> io::Result<bytes::Bytes> {
            let mut chunk = Vec::with_capacity(want);
            let mut reader = &*file;
            std::io::Seek::seek(&mut reader, SeekFrom::Start(offset))?;
            std::io::Read::read_to_end(&mut std::io::Read::take(reader, want as u64), &mut chunk)?;
            Ok(chunk.into())
        })
        .await
        .map_err(io::Error::other)?
    }

    /// The next piece read directly, with a read of the one after started; `None` (and reading
    /// through the page cache from now on) if the filesystem refuses.
    async fn direct_piece(&mut self) -> io::Result<Option<bytes::Bytes>> {
        let Uncached::Direct { file, next } = &mut self.uncached else { return Ok(None) };
        let align = direct::align() as u64;
        let aligned = self.offset / align * align;
        let read = match next.take() {
            Some((at, read)) if at == aligned => read,
            _ => read_directly(file, aligned),
        };
        let Some(buffer) = read.await.map_err(io::Error::other)?? else {
            self.uncached = Uncached::Buffered;
            return Ok(None);
        };
        let (lead, filled) = ((self.offset - aligned) as usize, buffer.filled().len());
        if lead >= filled {
            // The file ends before the span does.
            return Ok(Some(bytes::Bytes::new()));
        }
        let taken = (filled - lead).min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        if buffer.is_full() && (taken as u64) < self.remaining {
            let following = aligned + filled as u64;
            *next = Some((following, read_directly(file, following)));
        }
        Ok(Some(bytes::Bytes::from_owner(buffer).slice(lead..lead + taken)))
    }
}

fn read_directly(file: &Arc<std::fs::File>, offset: u64) -> DirectRead {
    let file = file.clone();
    tokio::task::spawn_blocking(move || direct::read_at(&file, offset))
}

/// `access(W_OK)`: the kernel's answer, which also says no for a read-only mount (even to root).
#[cfg(unix)]
fn writable(path: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: `path` is a NUL-terminated string that outlives the call.
    if unsafe { libc::access(path.as_ptr(), libc::W_OK) } == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

#[cfg(not(unix))]
fn writable(_path: &Path) -> io::Result<()> {
    Ok(())
}

/// Free space below which the probe reports the blob store unable to take a push.
const MIN_FREE_BYTES: u64 = 1024 * 1024;

/// Whether the filesystem holding `dir` has room for a push: [`MIN_FREE_BYTES`] available to
/// unprivileged writers (root's reserved blocks need `CAP_SYS_RESOURCE`, which containers lack),
/// and a free inode, where the filesystem counts blocks and inodes at all.
#[cfg(unix)]
fn room_for_a_push(dir: &Path) -> Result<(), String> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: `path` is NUL-terminated and outlives the call; `stats` is a plain C struct that
    // statvfs fills.
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut stats) } != 0 {
        return Err(io::Error::last_os_error().to_string());
    }
    let free = (stats.f_bavail as u64).saturating_mul(stats.f_frsize as u64);
    if stats.f_blocks > 0 && free < MIN_FREE_BYTES {
        return Err(format!("the filesystem is full ({free} bytes free)"));
    }
    if stats.f_files > 0 && stats.f_ffree == 0 {
        return Err("the filesystem has no free inodes".to_owned());
    }
    Ok(())
}

#[cfg(not(unix))]
fn room_for_a_push(_dir: &Path) -> Result<(), String> {
    Ok(())
}

/// The file's owner is this process's user, or the process is root's (which may write anything).
#[cfg(unix)]
fn owned_by_us(metadata: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let user = unsafe { libc::geteuid() };
    user == 0 || metadata.uid() == user
}

#[cfg(not(unix))]
fn owned_by_us(_metadata: &std::fs::Metadata) -> bool {
    false
}

/// Up to `want` bytes at `offset` if the page cache holds them (`preadv2` with `RWF_NOWAIT`:
/// possibly fewer, never waiting for the disk); `None` when it would have to wait, at the end of
/// the file, or where the kernel cannot say.
#[cfg(target_os = "linux")]
fn read_cached(file: &std::fs::File, offset: u64, want: usize) -> io::Result<Option<Vec<u8>>> {
    use std::os::fd::AsRawFd;
    let mut chunk: Vec<u8> = Vec::with_capacity(want);
    let iov = libc::iovec { iov_base: chunk.as_mut_ptr().cast(), iov_len: want };
    // SAFETY: the iovec points at `want` bytes of `chunk`'s spare capacity, which outlives the call.
    let read = unsafe { libc::preadv2(file.as_raw_fd(), &iov, 1, offset as libc::off_t, libc::RWF_NOWAIT) };
    if read < 0 {
        let error = io::Error::last_os_error();
        return match error.raw_os_error() {
            Some(libc::EAGAIN | libc::EOPNOTSUPP | libc::ENOSYS | libc::EINVAL) => Ok(None),
            _ => Err(error),
        };
    }
    if read == 0 {
        return Ok(None);
    }
    // SAFETY: the kernel initialised the first `read` (≤ `want`) bytes.
    unsafe { chunk.set_len(read as usize) };
    Ok(Some(chunk))
}

/// A read-only mapping of part of a committed blob, unmapped when the last `Bytes` into it drops.
/// Safe to read for as long as it lives: a committed blob file is written whole before it is
/// renamed into place, never written or truncated after, and only ever unlinked (which leaves a
/// mapping intact), so no access can run past its end.
#[cfg(target_os = "linux")]
struct MappedPiece {
    ptr: *mut libc::c_void,
    len: usize,
}

// SAFETY: the mapping is read-only and owned by this value alone.
#[cfg(target_os = "linux")]
unsafe impl Send for MappedPiece {}
#[cfg(target_os = "linux")]
unsafe impl Sync for MappedPiece {}

#[cfg(target_os = "linux")]
impl AsRef<[u8]> for MappedPiece {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `ptr` maps `len` readable bytes of a file that never shrinks (see the type).
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>(), self.len) }
    }
}

#[cfg(target_os = "linux")]
impl Drop for MappedPiece {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping this value owns, after its last reader.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

/// `want` bytes at `offset` of a committed blob as a mapping of its cached pages, `None` unless
/// every page is in the page cache (the socket write that copies them should not wait for the
/// disk on the request's thread; a page evicted between this check and that write costs one
/// read there) or where the kernel cannot map the file.
#[cfg(target_os = "linux")]
fn map_cached(file: &std::fs::File, offset: u64, want: usize) -> io::Result<Option<bytes::Bytes>> {
    use std::os::fd::AsRawFd;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
    let lead = (offset % page as u64) as usize;
    let len = lead + want;
    // SAFETY: a fresh read-only shared mapping of the file; the kernel picks the address.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            (offset - lead as u64) as libc::off_t,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Ok(None);
    }
    let mapped = MappedPiece { ptr, len };
    let mut resident = vec![0u8; len.div_ceil(page)];
    // SAFETY: `resident` has one byte per page of the mapping.
    if unsafe { libc::mincore(ptr, len, resident.as_mut_ptr()) } != 0 || resident.iter().any(|p| p & 1 == 0) {
        return Ok(None);
    }
    Ok(Some(bytes::Bytes::from_owner(mapped).slice(lead..)))
}

#[cfg(not(target_os = "linux"))]
fn map_cached(_file: &std::fs::File, _offset: u64, _want: usize) -> io::Result<Option<bytes::Bytes>> {
    Ok(None)
}

#[cfg(not(target_os = "linux"))]
fn read_cached(_file: &std::fs::File, _offset: u64, _want: usize) -> io::Result<Option<Vec<u8>>> {
    Ok(None)
}

/// fsync(file) → rename → fsync(dir); an existing blob makes the staged copy redundant.
/// `None` when the upload is not there (never made, or committed by a concurrent retry); a
/// missing blob directory is an error of its own, not the client's unknown upload.
fn commit_file(from: &Path, to: &Path, durable_dirs: &DurableDirs) -> io::Result<Option<()>> {
    if to.try_exists()? {
        std::fs::remove_file(from).ok();
        return Ok(Some(()));
    }
    let Some(staged) = not_found_as_none(std::fs::File::open(from))? else { return Ok(None) };
    staged.sync_all()?;
    let dir = to.parent().expect("blob path has a parent");
    create_dir_durably(dir, durable_dirs)?;
    match std::fs::rename(from, to) {
        Err(e) if e.kind() == io::ErrorKind::NotFound && !from.try_exists()? => return Ok(None),
        // The fan-out directories known made are gone (`blobs/` emptied or replaced under the
        // running server): make them again, once.
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let algorithm_dir = dir.parent().expect("a blob's fan-out directory has a parent");
            durable_dirs.forget(dir);
            durable_dirs.forget(algorithm_dir);
            create_dir_durably(dir, durable_dirs)?;
            std::fs::rename(from, to)?;
        }
        renamed => renamed?,
    }
    std::fs::File::open(dir)?.sync_all()?;
    Ok(Some(()))
}

/// Creates `dir` and its missing parents up to a directory in `durable`, syncing each into its
/// parent: a blob's fan-out directory must outlast a crash as its renamed file does. One found
/// already there (made by a concurrent commit, or before a restart) is synced into its parent
/// once too, as its maker may not have done so yet.
fn create_dir_durably(dir: &Path, durable: &DurableDirs) -> io::Result<()> {
    if durable.contains(dir) {
        return Ok(());
    }
    let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) else {
        // Above every directory the store makes: nothing to sync into.
        std::fs::create_dir_all(dir)?;
        durable.insert(dir);
        return Ok(());
    };
    create_dir_durably(parent, durable)?;
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {}
        Err(e) => return Err(e),
    }
    std::fs::File::open(parent)?.sync_all()?;
    durable.insert(dir);
    Ok(())
}

/// What [`write_first_batch`] opened and did.
struct FirstBatch {
    file: std::fs::File,
    /// A second descriptor for direct writes, if asked for and the filesystem takes them.
    direct: Option<std::fs::File>,
    /// The file's length before the write.
    current: u64,
    written: io::Result<()>,
}

/// Opens an upload file (and, if `direct`, a descriptor for direct writes) and, if it holds
/// exactly `offset` bytes, writes `first` there.
fn write_first_batch(path: &Path, offset: u64, first: &[bytes::Bytes], direct: bool) -> io::Result<FirstBatch> {
    let mut file = std::fs::OpenOptions::new().write(true).open(path)?;
    let current = file.metadata()?.len();
    if current != offset {
        return Ok(FirstBatch { file, direct: None, current, written: Ok(()) });
    }
    let direct = if direct { direct::open(path, true)? } else { None };
    std::io::Seek::seek(&mut file, SeekFrom::Start(offset))?;
    let written = write_chunks(&mut file, first);
    Ok(FirstBatch { file, direct, current, written })
}

/// Takes the bytes past the last [`direct::align`]ed offset off the end of `first`, which ends
/// at file offset `end`, and returns them in order (the first batch then ends where direct
/// writes can start).
fn split_off_unaligned(first: &mut Vec<bytes::Bytes>, end: u64) -> Vec<bytes::Bytes> {
    let mut excess = (end % direct::align() as u64) as usize;
    let mut carry = Vec::new();
    while excess > 0 {
        let Some(mut last) = first.pop() else { break };
        if last.len() > excess {
            carry.push(last.split_off(last.len() - excess));
            first.push(last);
            break;
        }
        excess -= last.len();
        carry.push(last);
    }
    carry.reverse();
    carry
}

#[async_trait]
impl BlobStore for FsBlobStore {
    /// Creating and measuring a staged file are metadata calls on the hot `uploads/` directory;
    /// they run on the request's thread, where a blocking task's two thread switches would
    /// cost more than the call (small pushes make several per blob).
    async fn create_upload(&self, upload: &str) -> Result<(), StoreError> {
        std::fs::File::create(self.upload_path(upload)?)?;
        Ok(())
    }

    async fn append(
        &self,
        upload: &str,
        offset: u64,
        mut data: ByteStream,
        observe: ChunkObserver<'_>,
    ) -> Result<u64, StoreError> {
        let path = self.upload_path(upload)?;
        // The first batch is gathered before the file is opened, so that opening, checking the
        // length and writing take one blocking task, or none for a small whole body.
        let mut first = Vec::new();
        let mut first_len = 0;
        let mut ended = false;
        while first_len < WRITE_BATCH {
            // A client that pauses gets what it sent written rather than held.
            let next = if first_len == 0 {
                data.next().await
            } else {
                match tokio::time::timeout(IDLE_FLUSH, data.next()).await {
                    Ok(next) => next,
                    Err(_) => break,
                }
            };
            match next {
                Some(Ok(chunk)) => {
                    observe(&chunk);
                    first_len += chunk.len();
                    first.push(chunk);
                }
                Some(Err(e)) => return Err(StoreError::Body(e)),
                None => {
                    ended = true;
                    break;
                }
            }
        }
        // A large body goes on directly from the first aligned offset after the first batch
        // (see `direct`): what passes it waits in `carry`.
        let slot = if ended { None } else { direct::WriterSlot::take() };
        let carry = match slot {
            Some(_) => split_off_unaligned(&mut first, offset + first_len as u64),
            None => Vec::new(),
        };
        let first_end = offset + (first_len - carry.iter().map(bytes::Bytes::len).sum::<usize>()) as u64;
        let opened = if ended && first_len <= INLINE_WRITE_MAX {
            write_first_batch(&path, offset, &first, false)
        } else {
            let direct = slot.is_some();
            tokio::task::spawn_blocking(move || write_first_batch(&path, offset, &first, direct))
                .await
                .map_err(io::Error::other)?
        };
        let FirstBatch { file, direct, current, written: first_written } =
            not_found_as_none(opened)?.ok_or_else(|| StoreError::UploadNotFound(upload.to_owned()))?;
        if current != offset {
            return Err(StoreError::OffsetMismatch { current });
        }
        let mut writer = match direct.zip(slot) {
            Some((direct, slot)) => UploadWriter::Direct(DirectWriter::new(file, direct, first_end, slot)),
            None => UploadWriter::Batched(BatchWriter {
                file: Some(file),
                in_flight: None,
                batch: Vec::new(),
                batch_len: 0,
            }),
        };
        let mut written = offset + first_len as u64;
        let mut received: Result<(), StoreError> = first_written.map_err(StoreError::from);
        for chunk in carry {
            if received.is_ok()
                && let Err(e) = writer.push(chunk).await
            {
                received = Err(e.into());
            }
        }
        while received.is_ok() && !ended {
            let next = if writer.holds_unwritten() {
                match tokio::time::timeout(IDLE_FLUSH, data.next()).await {
                    Ok(next) => next,
                    Err(_) => {
                        if let Err(e) = writer.flush().await {
                            received = Err(e.into());
                        }
                        continue;
                    }
                }
            } else {
                data.next().await
            };
            let Some(chunk) = next else { break };
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(e) => {
                    received = Err(StoreError::Body(e));
                    break;
                }
            };
            observe(&chunk);
            written += chunk.len() as u64;
            if let Err(e) = writer.push(chunk).await {
                received = Err(e.into());
            }
        }
        // Always wait for the write in flight: the file must be quiet before it is cut back.
        let (file, stored) = writer.finish(received.is_ok()).await;
        if let Err(e) = received.and(stored.map_err(StoreError::from)) {
            // A write task that died took its descriptor along: cut back through a new one.
            let path = self.upload_path(upload)?;
            let cut = move || match file {
                Some(file) => file.set_len(offset),
                None => std::fs::OpenOptions::new().write(true).open(path)?.set_len(offset),
            };
            tokio::task::spawn_blocking(cut).await.map_err(io::Error::other)??;
            return Err(e);
        }
        Ok(written)
    }

    async fn upload_len(&self, upload: &str) -> Result<Option<u64>, StoreError> {
        Ok(not_found_as_none(std::fs::metadata(self.upload_path(upload)?))?.map(|m| m.len()))
    }

    async fn read_upload(&self, upload: &str) -> Result<ByteStream, StoreError> {
        let span = open_span(self.upload_path(upload)?, None)
            .await?
            .ok_or_else(|| StoreError::UploadNotFound(upload.to_owned()))?
            .map_err(|size| StoreError::RangeNotSatisfiable { size })?;
        // Not mapped: a failed append truncates an upload file.
        Ok(file_chunks(span, false, false))
    }

    async fn commit(&self, upload: &str, digest: &Digest) -> Result<(), StoreError> {
        let from = self.upload_path(upload)?;
        let to = self.blob_path(digest);
        // One blocking task for the whole sequence: each tokio::fs call is a thread hand-off, and
        // small pushes are dominated by such per-call costs, not by the bytes.
        let durable_dirs = self.durable_dirs.clone();
        let committed = tokio::task::spawn_blocking(move || commit_file(&from, &to, &durable_dirs))
            .await
            .map_err(io::Error::other)?;
        committed?.ok_or_else(|| StoreError::UploadNotFound(upload.to_owned()))
    }

    async fn abort(&self, upload: &str) -> Result<(), StoreError> {
        let path = self.upload_path(upload)?;
        not_found_as_none(fs::remove_file(&path).await)?;
        Ok(())
    }

    async fn stat(&self, digest: &Digest) -> Result<Option<u64>, StoreError> {
        Ok(not_found_as_none(fs::metadata(self.blob_path(digest)).await)?.map(|m| m.len()))
    }

    async fn read(&self, digest: &Digest, range: Option<Range<u64>>) -> Result<ByteStream, StoreError> {
        let span = open_span(self.blob_path(digest), range)
            .await?
            .ok_or_else(|| StoreError::BlobNotFound(digest.clone()))?
            .map_err(|size| StoreError::RangeNotSatisfiable { size })?;
        let direct = span.len >= DIRECT_READ_MIN && self.read_lately.first_in_a_while(digest);
        Ok(file_chunks(span, true, direct))
    }

    async fn delete(&self, digest: &Digest) -> Result<(), StoreError> {
        not_found_as_none(fs::remove_file(self.blob_path(digest)).await)?;
        Ok(())
    }

    /// The staging and blob directories are there and writable: a data dir moved away or
    /// remounted read-only makes every push fail, which the empty blob's absence would not show.
    /// On a blocking thread: a hung mount must stall this probe (which the caller times out),
    /// not a runtime worker.
    async fn probe(&self) -> Result<(), StoreError> {
        let root = self.root.clone();
        let checked = tokio::task::spawn_blocking(move || {
            for name in ["uploads", "blobs"] {
                // Named relative to the data dir: the answer goes to anonymous probes.
                let unusable = |why: String| io::Error::other(format!("{name}/: {why}"));
                let dir = root.join(name);
                match std::fs::metadata(&dir) {
                    Ok(metadata) if metadata.is_dir() => {}
                    Ok(_) => return Err(unusable("not a directory".into())),
                    Err(e) => return Err(unusable(e.to_string())),
                }
                writable(&dir).map_err(|e| unusable(e.to_string()))?;
            }
            // Permission is not room: a full disk refuses every push (507) with the mode bits fine.
            room_for_a_push(&root.join("uploads")).map_err(|why| io::Error::other(format!("uploads/: {why}")))
        });
        Ok(checked.await.map_err(io::Error::other)??)
    }

    fn list_blobs(&self) -> BoxStream<'static, Result<(Digest, u64), StoreError>> {
        let walk = BlobWalk { pending: vec![(self.root.join("blobs"), Vec::new())], current: None };
        futures::stream::try_unfold(walk, BlobWalk::next).boxed()
    }
}

/// A depth-first walk of `blobs/<alg>/<hh>/<hex>`, one directory open at a time.
struct BlobWalk {
    /// Directories still to read, with the path components below `blobs/` that lead to them.
    pending: Vec<(PathBuf, Vec<String>)>,
    current: Option<(fs::ReadDir, Vec<String>)>,
}

impl BlobWalk {
    async fn next(mut self) -> Result<Option<((Digest, u64), BlobWalk)>, StoreError> {
        loop {
            let Some((dir, components)) = &mut self.current else {
                let Some((path, components)) = self.pending.pop() else {
                    return Ok(None);
                };
                self.current = not_found_as_none(fs::read_dir(&path).await)?.map(|dir| (dir, components));
                continue;
            };
            let Some(entry) = dir.next_entry().await? else {
                self.current = None;
                continue;
            };
            let name = entry.file_name().to_string_lossy().into_owned();
            // Deleted since it was listed: not a blob any more.
            let Some(metadata) = not_found_as_none(entry.metadata().await)? else {
                continue;
            };
            if components.len() < 2 {
                if metadata.is_dir() {
                    let mut below = components.clone();
                    below.push(name);
                    self.pending.push((entry.path(), below));
                }
                continue;
            }
            match format!("{}:{name}", components[0]).parse::<Digest>() {
                Ok(digest) if metadata.is_file() => return Ok(Some(((digest, metadata.len()), self))),
                _ => tracing::warn!(path = %entry.path().display(), "not a blob; left alone"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_filesystem_with_room_takes_a_push() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(super::room_for_a_push(dir.path()), Ok(()));
        let missing = super::room_for_a_push(&dir.path().join("gone")).unwrap_err();
        assert!(missing.contains("No such file"), "{missing}");
    }

    #[tokio::test]
    async fn conformance() {
        let dir = tempfile::tempdir().unwrap();
        let store = super::FsBlobStore::open(dir.path()).await.unwrap();
        crate::testsuite::run_all(&store).await;
    }

    /// A blob directory gone under a running store (data dir moved, unmounted) is the store's
    /// failure, which readiness reports too; the upload is not "unknown" to the client. One
    /// replaced by an empty directory takes commits again.
    #[tokio::test]
    async fn a_missing_blob_directory_fails_the_commit_and_the_probe_and_an_empty_one_works() {
        use crate::{BlobStore, StoreError};
        let dir = tempfile::tempdir().unwrap();
        let store = super::FsBlobStore::open(dir.path()).await.unwrap();
        store.probe().await.unwrap();
        store.create_upload("u1").await.unwrap();
        let digest = berth_spec::Digest::sha256_of(b"");
        std::fs::rename(dir.path().join("blobs"), dir.path().join("away")).unwrap();
        assert!(matches!(store.probe().await, Err(StoreError::Io(_))));
        assert!(matches!(store.commit("u1", &digest).await, Err(StoreError::Io(_))));
        assert!(matches!(store.commit("never-made", &digest).await, Err(StoreError::UploadNotFound(_))));
        std::fs::rename(dir.path().join("away"), dir.path().join("blobs")).unwrap();
        store.commit("u1", &digest).await.unwrap();
        assert_eq!(store.stat(&digest).await.unwrap(), Some(0));

        // `blobs/` replaced by an empty directory: the fan-out directories are made again.
        std::fs::rename(dir.path().join("blobs"), dir.path().join("old-blobs")).unwrap();
        std::fs::create_dir(dir.path().join("blobs")).unwrap();
        store.probe().await.unwrap();
        store.create_upload("u2").await.unwrap();
        store.commit("u2", &digest).await.unwrap();
        assert_eq!(store.stat(&digest).await.unwrap(), Some(0));
    }

    #[test]
    fn directories_are_made_once_with_their_parents() {
        let dir = tempfile::tempdir().unwrap();
        let durable = super::DurableDirs::default();
        durable.insert(dir.path());
        let nested = dir.path().join("blobs/sha256/ab");
        super::create_dir_durably(&nested, &durable).unwrap();
        assert!(nested.is_dir());
        assert!(durable.contains(&dir.path().join("blobs/sha256")) && durable.contains(&nested));
        // Made by someone else meanwhile: synced into its parent all the same, then known.
        std::fs::create_dir(dir.path().join("blobs/sha256/cd")).unwrap();
        super::create_dir_durably(&dir.path().join("blobs/sha256/cd"), &durable).unwrap();
        assert!(durable.contains(&dir.path().join("blobs/sha256/cd")));
        std::fs::write(dir.path().join("file"), b"x").unwrap();
        let blocked = dir.path().join("file/sub");
        assert!(super::create_dir_durably(&blocked, &durable).is_err(), "a file in the way is an error");
    }

    #[test]
    fn the_first_batch_ends_where_direct_writes_can_start() {
        let a = super::direct::align();
        let chunks = |lens: &[usize]| lens.iter().map(|&n| bytes::Bytes::from(vec![n as u8; n])).collect::<Vec<_>>();
        // Ends 310 bytes past a boundary: the last two chunks wait.
        let mut first = chunks(&[a, 200, 110]);
        let carry = super::split_off_unaligned(&mut first, (a + 310) as u64);
        assert_eq!(first.iter().map(|c| c.len()).collect::<Vec<_>>(), [a]);
        assert_eq!(carry.iter().map(|c| c.len()).collect::<Vec<_>>(), [200, 110]);
        // A batch that started 100 bytes before a boundary and ends 200 past it: a chunk is cut.
        let mut first = chunks(&[a - 100, 300]);
        let carry = super::split_off_unaligned(&mut first, (2 * a + 200) as u64);
        assert_eq!(first.iter().map(|c| c.len()).collect::<Vec<_>>(), [a - 100, 100]);
        assert_eq!(carry.iter().map(|c| c.len()).collect::<Vec<_>>(), [200]);
        let mut aligned = chunks(&[a]);
        assert!(super::split_off_unaligned(&mut aligned, 2 * a as u64).is_empty());
        assert_eq!(aligned.len(), 1);
    }

    /// A blob deleted while a first read streams it (GC, a DELETE) still reads whole: the
    /// direct reads go to the file already open, not to its path.
    #[tokio::test]
    async fn a_blob_deleted_mid_read_still_reads_whole() {
        use crate::BlobStore;
        use futures::{StreamExt, TryStreamExt};
        let dir = tempfile::tempdir().unwrap();
        let store = super::FsBlobStore::open(dir.path()).await.unwrap();
        let content: Vec<u8> = (0..3 * 1_048_576 + 5u32).map(|i| (i % 241) as u8).collect();
        let digest = berth_spec::Digest::sha256_of(&content);
        store.create_upload("up").await.unwrap();
        let chunks: Vec<std::io::Result<bytes::Bytes>> =
            content.chunks(50_000).map(|c| Ok(bytes::Bytes::copy_from_slice(c))).collect();
        store.append("up", 0, futures::stream::iter(chunks).boxed(), &mut |_| {}).await.unwrap();
        store.commit("up", &digest).await.unwrap();
        let mut stream = store.read(&digest, None).await.unwrap();
        let mut read = stream.next().await.unwrap().unwrap().to_vec();
        store.delete(&digest).await.unwrap();
        assert_eq!(store.stat(&digest).await.unwrap(), None, "gone from its path");
        while let Some(piece) = stream.try_next().await.unwrap() {
            read.extend_from_slice(&piece);
        }
        assert!(read == content, "every byte of the deleted blob, in order");
    }

    /// A client that stalls in mid body has what it sent written, not held in memory: in the
    /// first batch, and in a later one (all uploads beyond the direct ones go batched).
    #[tokio::test]
    async fn a_stalled_body_is_written_while_it_waits() {
        use crate::BlobStore;
        use futures::StreamExt;
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(super::FsBlobStore::open(dir.path()).await.unwrap());
        // Hold every direct place, so the upload goes batched past its first batch.
        let _held: Vec<_> = std::iter::from_fn(super::direct::WriterSlot::take).collect();
        store.create_upload("up").await.unwrap();
        let (sender, receiver) = futures::channel::mpsc::unbounded::<std::io::Result<bytes::Bytes>>();
        let appending = {
            let store = store.clone();
            tokio::spawn(async move { store.append("up", 0, receiver.boxed(), &mut |_| {}).await })
        };
        let length = || std::fs::metadata(dir.path().join("uploads/up")).map(|m| m.len()).unwrap_or(0);
        let waits_for = |want: u64| async move {
            for _ in 0..100 {
                if length() == want {
                    return true;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            false
        };
        sender.unbounded_send(Ok(bytes::Bytes::from(vec![1u8; 100_000]))).unwrap();
        assert!(waits_for(100_000).await, "the first batch's bytes are written while the body stalls");
        sender.unbounded_send(Ok(bytes::Bytes::from(vec![2u8; 300_000]))).unwrap();
        sender.unbounded_send(Ok(bytes::Bytes::from(vec![3u8; 50_000]))).unwrap();
        assert!(waits_for(450_000).await, "so are a later batch's");
        drop(sender);
        assert_eq!(appending.await.unwrap().unwrap(), 450_000);
    }

    /// Spans of a blob read directly (where the filesystem takes `O_DIRECT`) come out as read
    /// through the page cache, wherever they start and end.
    #[tokio::test]
    async fn direct_reads_give_the_bytes_of_any_span() {
        use futures::TryStreamExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        let content: Vec<u8> = (0..3 * 1_048_576 + 777u32).map(|i| (i % 253) as u8).collect();
        std::fs::write(&path, &content).unwrap();
        let len = content.len() as u64;
        for (start, end) in [(0, len), (1, len), (4095, 1_048_577), (1_048_576, 2 * 1_048_576), (len - 5, len)] {
            let file = std::sync::Arc::new(std::fs::File::open(&path).unwrap());
            let span = super::Span { file, start, len: end - start, residency_known: false };
            let read: Vec<u8> = super::file_chunks(span, false, true)
                .try_fold(Vec::new(), |mut all, piece| async move {
                    all.extend_from_slice(&piece);
                    Ok(all)
                })
                .await
                .unwrap();
            assert!(read == content[start as usize..end as usize], "{start}..{end}");
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn cached_reads_advance_like_read_and_stop_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        let content: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &content).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let mut read = Vec::new();
        // Just written, so cached: every piece comes without a blocking read.
        while let Some(piece) = super::read_cached(&file, read.len() as u64, 100_000).unwrap() {
            assert!(piece.len() <= 100_000);
            read.extend(piece);
        }
        assert_eq!(read, content);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn mapped_pieces_hold_the_bytes_at_any_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        let content: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &content).unwrap();
        let file = std::sync::Arc::new(std::fs::File::open(&path).unwrap());
        for (offset, want) in [(0, 300_000), (1, 4095), (4095, 2), (4096, 100_000), (299_999, 1)] {
            let piece = super::map_cached(&file, offset as u64, want).unwrap().expect("just written, so cached");
            assert_eq!(&piece[..], &content[offset..offset + want], "{want} bytes at {offset}");
        }
    }
}

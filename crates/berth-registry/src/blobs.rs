//! Blob reads and the upload state machine.
//!
//! Uploads are hashed (SHA-256) while they stream in; the hash state lives in memory next to the
//! session, so finishing a sha256 upload never re-reads it. A sha512 finish, or a session that
//! outlived a restart, re-reads the staged data once.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use berth_iam::RequestContext;
use berth_meta::{BlobLink, MetaError, Millis, StorageClass, UploadSession};
use berth_spec::manifest::Manifest;
use berth_spec::{Algorithm, ByteRange, ChunkRange, Digest, Digester, Reference, RepositoryName};
use berth_storage::{ByteStream, StoreError};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::archive::refuse_archived_layer;
use crate::{Registry, RegistryError, Result, now_millis};
use berth_iam::actions;

/// Hash state of an upload; `hashed_len` says how many bytes `hasher` has seen.
pub(crate) struct UploadHashState {
    hasher: Digester,
    hashed_len: u64,
    /// When the session row was last touched; expiry needs minutes, not a write per PATCH.
    touched_at: Millis,
    /// ECR layer-API parts received, length by first byte (see `layers.rs`); empty for /v2/ uploads.
    pub(crate) parts: BTreeMap<u64, u64>,
}

impl Default for UploadHashState {
    fn default() -> Self {
        UploadHashState::new(0)
    }
}

impl UploadHashState {
    /// A fresh state whose session row was written at `touched_at` (0: unknown, touch at once).
    fn new(touched_at: Millis) -> Self {
        UploadHashState { hasher: Digester::new(Algorithm::Sha256), hashed_len: 0, touched_at, parts: BTreeMap::new() }
    }
}

/// One upload's in-memory side: the hash state behind the lock every append and finish holds,
/// and what a `DELETE` or a status request needs without waiting for that lock.
#[derive(Clone)]
pub(crate) struct UploadHandle {
    pub(crate) state: Arc<tokio::sync::Mutex<UploadHashState>>,
    cancelled: CancellationToken,
    /// The bytes stored but for an append in flight ([`UNKNOWN_LENGTH`] until this process
    /// has seen one), so a status request need not wait for that append to end.
    stored: Arc<AtomicU64>,
}

const UNKNOWN_LENGTH: u64 = u64::MAX;

impl Default for UploadHandle {
    fn default() -> Self {
        UploadHandle {
            state: Arc::default(),
            cancelled: CancellationToken::default(),
            stored: Arc::new(AtomicU64::new(UNKNOWN_LENGTH)),
        }
    }
}

/// Session rows are touched at most this often (milliseconds), or a quarter of the upload
/// expiry if that is shorter (see `touch_interval`).
const TOUCH_INTERVAL: Millis = 60_000;

pub struct BlobBody {
    pub size: u64,
    /// The served part when a range was requested (half-open).
    pub range: Option<std::ops::Range<u64>>,
    pub stream: ByteStream,
}

pub enum MountOutcome {
    Mounted {
        digest: Digest,
    },
    /// The blob could not be mounted; a normal upload session was started instead.
    Upload(UploadStatus),
}

/// Fails the stream (so the store rolls the append back) when it carries more or fewer bytes
/// than its `Content-Range` announced.
fn exact_length(body: ByteStream, expected: u64) -> ByteStream {
    let mismatch = move |what: &str| {
        std::io::Error::other(format!("chunk is {what} than the {expected} bytes its Content-Range announced"))
    };
    futures::stream::unfold((body, 0u64, false), move |(mut body, seen, done)| async move {
        if done {
            return None;
        }
        match body.next().await {
            Some(Ok(chunk)) => {
                let seen = seen + chunk.len() as u64;
                if seen > expected {
                    Some((Err(mismatch("longer")), (body, seen, true)))
                } else {
                    Some((Ok(chunk), (body, seen, false)))
                }
            }
            Some(Err(e)) => Some((Err(e), (body, seen, true))),
            None if seen < expected => Some((Err(mismatch("shorter")), (body, seen, true))),
            None => None,
        }
    })
    .boxed()
}

/// Fails the stream (so the store rolls the append back) as soon as the upload is cancelled,
/// instead of waiting for a client that may be slow, or stalled until the body timeout.
fn until_cancelled(body: ByteStream, cancelled: CancellationToken) -> ByteStream {
    let cancelled = Box::pin(cancelled.cancelled_owned());
    futures::stream::unfold((body, cancelled, false), |(mut body, mut cancelled, done)| async move {
        if done {
            return None;
        }
        tokio::select! {
            biased;
            () = &mut cancelled => Some((Err(std::io::Error::other("the upload was cancelled")), (body, cancelled, true))),
            item = body.next() => item.map(|item| (item, (body, cancelled, false))),
        }
    })
    .boxed()
}

/// A body already in memory, as a stream.
pub(crate) fn byte_stream(data: bytes::Bytes) -> ByteStream {
    futures::stream::once(async move { Ok(data) }).boxed()
}

#[derive(Debug, Clone)]
pub struct UploadStatus {
    pub id: String,
    /// Bytes received so far.
    pub offset: u64,
}

impl Registry {
    /// Size of a blob `repo` serves: linked there and not needed by archived images only.
    pub async fn stat_blob(&self, repo: &RepositoryName, digest: &Digest) -> Result<u64> {
        let link = self.blob_link(repo, digest).await?;
        refuse_archived_layer(digest, link.needed_by)?;
        Ok(link.size)
    }

    /// The blob's link in `repo`, archived or not (`BlobUnknown` if it has none).
    pub async fn blob_link(&self, repo: &RepositoryName, digest: &Digest) -> Result<BlobLink> {
        self.meta.blob_link(repo, digest).await?.ok_or_else(|| RegistryError::BlobUnknown(digest.clone()))
    }

    /// The media type a manifest of `repo` gives the blob (as config or layer), as ECR's
    /// `BatchCheckLayerAvailability` reports it; `None` while no manifest needs the blob.
    pub async fn blob_media_type(&self, repo: &RepositoryName, digest: &Digest) -> Result<Option<String>> {
        let Some(manifest) = self.meta.manifest_needing(repo, digest).await? else {
            return Ok(None);
        };
        // Deleted since it was found: the blob is described by no manifest now.
        let record = match self.get_manifest(repo, &Reference::Digest(manifest), None).await {
            Ok(record) => record,
            Err(RegistryError::ManifestUnknown(_) | RegistryError::NameUnknown(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let Ok(parsed) = Manifest::parse(&record.content, Some(&record.media_type)) else {
            return Ok(None);
        };
        let listed = parsed.required_blobs().chain(parsed.foreign_layers());
        Ok(listed.into_iter().find(|d| &d.digest == digest).map(|d| d.media_type.clone()))
    }

    pub async fn get_blob(&self, repo: &RepositoryName, digest: &Digest, range: Option<ByteRange>) -> Result<BlobBody> {
        let size = self.stat_blob(repo, digest).await?;
        let range = match range {
            None => None,
            Some(r) => Some(r.resolve(size).ok_or(RegistryError::RangeInvalid { size })?),
        };
        let stream = self.blobs.read(digest, range.clone()).await?;
        Ok(BlobBody { size, range, stream })
    }

    /// Removes the blob from `repo`. The data stays: deleting it here would race with a
    /// concurrent upload of the same content; reclaiming unlinked data is garbage collection's job.
    pub async fn delete_blob(&self, ctx: &RequestContext, repo: &RepositoryName, digest: &Digest) -> Result<()> {
        self.repository(repo).await?;
        if !self.meta.unlink_blob(&self.origin(ctx), repo, digest).await? {
            return Err(RegistryError::BlobUnknown(digest.clone()));
        }
        Ok(())
    }

    pub async fn start_upload(&self, ctx: &RequestContext, repo: &RepositoryName) -> Result<UploadStatus> {
        self.refuse_push_into_cache(repo).await?;
        let id = uuid::Uuid::new_v4().to_string();
        let now = now_millis();
        let session = UploadSession { id: id.clone(), repo: repo.to_string(), created_at: now, updated_at: now };
        // The session row's foreign key says whether the repository exists, so the usual case
        // (it does) needs no read first; only a missing one goes through create-on-push.
        match self.meta.create_upload(&session).await {
            Err(MetaError::RepositoryNotFound(_)) => {
                self.push_target(ctx, repo).await?;
                self.meta.create_upload(&session).await?;
            }
            other => other?,
        }
        self.blobs.create_upload(&id).await?;
        self.live_sessions().insert(id.clone(), repo.clone());
        // The row was just written: the first append need not touch it again.
        let started = UploadHandle {
            state: Arc::new(UploadHashState::new(now).into()),
            stored: Arc::new(AtomicU64::new(0)),
            ..Default::default()
        };
        self.upload_handles().insert(id.clone(), started);
        Ok(UploadStatus { id, offset: 0 })
    }

    /// Cross-repository mount. `from: None` takes the blob from any repository that has it.
    /// Only a source whose policy lets the caller download layers is used; otherwise (or if no
    /// source has the blob, or the account setting `BLOB_MOUNTING` is DISABLED) an ordinary
    /// upload starts, as the spec says.
    pub async fn mount_blob(
        &self,
        ctx: &RequestContext,
        repo: &RepositoryName,
        digest: &Digest,
        from: Option<&RepositoryName>,
    ) -> Result<MountOutcome> {
        if !self.authorizer.blob_mounting().await? {
            return Ok(MountOutcome::Upload(self.start_upload(ctx, repo).await?));
        }
        let source_size = match from {
            Some(from) if self.may_read_layers(ctx, from).await? => self.servable_size(from, digest).await?,
            Some(_) => None,
            None => {
                let mut size = None;
                for candidate in self.meta.repositories_with_blob(digest).await? {
                    let Ok(name) = candidate.parse::<RepositoryName>() else { continue };
                    if self.may_read_layers(ctx, &name).await? {
                        size = self.servable_size(&name, digest).await?;
                        if size.is_some() {
                            break;
                        }
                    }
                }
                size
            }
        };
        match source_size {
            Some(size) => {
                self.push_target(ctx, repo).await?;
                self.keep_from_collection(digest).await?;
                self.meta.link_blob(repo, digest, size, now_millis()).await?;
                Ok(MountOutcome::Mounted { digest: digest.clone() })
            }
            None => Ok(MountOutcome::Upload(self.start_upload(ctx, repo).await?)),
        }
    }

    /// The blob's size where `source` would serve it to a pull, for a mount: not where only
    /// archived images need it (a mount must not read what a pull may not).
    async fn servable_size(&self, source: &RepositoryName, digest: &Digest) -> Result<Option<u64>> {
        let link = self.meta.blob_link(source, digest).await?;
        Ok(link.filter(|link| !matches!(link.needed_by, Some(StorageClass::Archive))).map(|link| link.size))
    }

    async fn may_read_layers(&self, ctx: &RequestContext, source: &RepositoryName) -> Result<bool> {
        match self.authorize(ctx, source, &[actions::GET_DOWNLOAD_URL_FOR_LAYER]).await {
            Ok(()) => Ok(true),
            Err(RegistryError::AccessDenied { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Checks that upload `id` exists and belongs to `repo`. Sessions this process created or
    /// already confirmed are known in memory; others (after a restart) are read from the database.
    async fn session(&self, repo: &RepositoryName, id: &str) -> Result<()> {
        // Ids are UUIDs this registry made; anything else (a decoded NUL, which PostgreSQL
        // refuses outright) is unknown without asking the store.
        if uuid::Uuid::try_parse(id).is_err() {
            return Err(RegistryError::BlobUploadUnknown);
        }
        let known = self.live_sessions().get(id).map(|owner| owner == repo);
        match known {
            Some(true) => Ok(()),
            Some(false) => Err(RegistryError::BlobUploadUnknown),
            None => match self.meta.get_upload(id).await? {
                Some(s) if s.repo == repo.as_str() => {
                    self.live_sessions().insert(id.to_owned(), repo.clone());
                    Ok(())
                }
                _ => Err(RegistryError::BlobUploadUnknown),
            },
        }
    }

    pub(crate) fn finished_uploads(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.finished_uploads.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Deletes the session rows of uploads finished since the last call, in one write (also
    /// called on shutdown).
    pub async fn flush_finished_uploads(&self) -> Result<()> {
        let finished = std::mem::take(&mut *self.finished_uploads());
        if finished.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.meta.delete_uploads(&finished).await {
            self.finished_uploads().extend(finished);
            return Err(e.into());
        }
        Ok(())
    }

    fn live_sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, RepositoryName>> {
        self.live_sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn upload_handles(&self) -> std::sync::MutexGuard<'_, HashMap<String, UploadHandle>> {
        self.uploads.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn upload_handle(&self, id: &str) -> UploadHandle {
        self.upload_handles().entry(id.to_owned()).or_default().clone()
    }

    pub(crate) fn upload_state(&self, id: &str) -> Arc<tokio::sync::Mutex<UploadHashState>> {
        self.upload_handle(id).state
    }

    fn forget_upload_state(&self, id: &str) {
        self.upload_handles().remove(id);
        self.live_sessions().remove(id);
    }

    /// Where an upload stands, for a client asking: while an append is in flight, the bytes
    /// stored before it (it may still roll back), without waiting for it to end — a client that
    /// resumes after a stalled connection asks while its old request still holds the upload.
    pub async fn upload_progress(&self, repo: &RepositoryName, id: &str) -> Result<UploadStatus> {
        self.session(repo, id).await?;
        let handle = self.upload_handle(id);
        let stored = handle.stored.load(Ordering::Acquire);
        if stored != UNKNOWN_LENGTH && handle.state.try_lock().is_err() {
            return Ok(UploadStatus { id: id.to_owned(), offset: stored });
        }
        self.upload_status(repo, id).await
    }

    /// Bytes received so far. Waits for an append in progress, so it never reports bytes an
    /// append may still roll back.
    pub async fn upload_status(&self, repo: &RepositoryName, id: &str) -> Result<UploadStatus> {
        self.session(repo, id).await?;
        let state = self.upload_state(id);
        let _appends_done = state.lock().await;
        let offset = self.blobs.upload_len(id).await?.ok_or(RegistryError::BlobUploadUnknown)?;
        Ok(UploadStatus { id: id.to_owned(), offset })
    }

    /// Appends a chunk. A `range` (from `Content-Range`) must start at the bytes received so far
    /// (else `RangeInvalid`) and match the body's length; on any failure the session is left as it
    /// was. The append runs on a task of its own: a client that disconnects mid-body ends it
    /// through its failing body (rolled back), never by dropping it half-way.
    pub async fn append_upload(
        &self,
        repo: &RepositoryName,
        id: &str,
        range: Option<ChunkRange>,
        body: ByteStream,
    ) -> Result<UploadStatus> {
        let (repo, id) = (repo.clone(), id.to_owned());
        self.detached(move |registry| async move { registry.append_attached(&repo, &id, range, body).await }).await
    }

    /// Upload `id`'s lock for an append or a finish, or `RangeInvalid` with the bytes stored so
    /// far when another request holds it past [`UPLOAD_BUSY_WAIT`] (a 416 naming where the upload
    /// stands, which the client can resume from once that request ends).
    async fn lock_for_writing<'h>(
        &self,
        id: &str,
        handle: &'h UploadHandle,
    ) -> Result<tokio::sync::MutexGuard<'h, UploadHashState>> {
        if let Ok(state) = tokio::time::timeout(UPLOAD_BUSY_WAIT, handle.state.lock()).await {
            return Ok(state);
        }
        let size = match handle.stored.load(Ordering::Acquire) {
            UNKNOWN_LENGTH => self.blobs.upload_len(id).await?.ok_or(RegistryError::BlobUploadUnknown)?,
            stored => stored,
        };
        Err(RegistryError::RangeInvalid { size })
    }

    /// [`Registry::append_upload`] on the caller's task: only for work already detached.
    async fn append_attached(
        &self,
        repo: &RepositoryName,
        id: &str,
        range: Option<ChunkRange>,
        body: ByteStream,
    ) -> Result<UploadStatus> {
        self.session(repo, id).await?;
        let handle = self.upload_handle(id);
        let mut state = self.lock_for_writing(id, &handle).await?;
        let (_, len) = self.append_locked(id, &handle, &mut state, range, body).await?;
        Ok(UploadStatus { id: id.to_owned(), offset: len })
    }

    /// The append itself, under the upload's lock (held by the caller); returns the lengths
    /// before and after.
    async fn append_locked(
        &self,
        id: &str,
        handle: &UploadHandle,
        state: &mut UploadHashState,
        range: Option<ChunkRange>,
        body: ByteStream,
    ) -> Result<(u64, u64)> {
        if handle.cancelled.is_cancelled() {
            return Err(RegistryError::BlobUploadUnknown);
        }
        let offset = self.blobs.upload_len(id).await?.ok_or(RegistryError::BlobUploadUnknown)?;
        handle.stored.store(offset, Ordering::Release);
        let body = match range {
            Some(r) if r.start != offset => return Err(RegistryError::RangeInvalid { size: offset }),
            Some(r) => exact_length(body, r.len),
            None => body,
        };
        let body = until_cancelled(body, handle.cancelled.clone());
        let hashing = state.hashed_len == offset;
        let mut hasher = state.hasher.clone();
        let mut observe = |chunk: &[u8]| {
            if hashing {
                hasher.update(chunk)
            }
        };
        let append = self.blobs.append(id, offset, body, &mut observe);
        // Touched before and while bytes arrive, not only after: another server's expiry sweep
        // sees only the row, and a long PATCH (docker sends a layer as one) is not abandoned.
        let now = now_millis();
        if now - state.touched_at > self.touch_interval() {
            self.meta.touch_upload(id, now).await?;
            state.touched_at = now;
        }
        let heartbeat = async {
            let every = (self.config.upload_expiry / 4).max(std::time::Duration::from_secs(1));
            loop {
                tokio::time::sleep(every).await;
                if let Err(e) = self.meta.touch_upload(id, now_millis()).await {
                    tracing::warn!(upload = id, error = %e, "could not mark an upload receiving bytes as touched");
                }
            }
        };
        let appended = tokio::select! {
            appended = append => appended,
            never = heartbeat => never,
        };
        // Cancelled while appending: whatever the store did, the upload is going away.
        if handle.cancelled.is_cancelled() {
            return Err(RegistryError::BlobUploadUnknown);
        }
        let len = appended?;
        handle.stored.store(len, Ordering::Release);
        if hashing {
            state.hasher = hasher;
            state.hashed_len = len;
        }
        let now = now_millis();
        if now - state.touched_at > self.touch_interval() {
            self.meta.touch_upload(id, now).await?;
            state.touched_at = now;
        }
        Ok((offset, len))
    }

    /// How stale a session row may get between requests: well within the upload expiry, so a
    /// session written to every few seconds never expires, however short the expiry is set.
    fn touch_interval(&self) -> Millis {
        TOUCH_INTERVAL.min(self.config.upload_expiry.as_millis() as Millis / 4)
    }

    /// Completes an upload with an optional final chunk: verifies the digest, commits the data
    /// under it and links it into the repository. On a digest mismatch nothing becomes visible,
    /// and an upload the final chunk added to ends (`DigestInvalid` says so).
    /// Runs on a task of its own, like an append, so a disconnect cannot stop it between commit
    /// and link.
    pub async fn finish_upload(
        &self,
        repo: &RepositoryName,
        id: &str,
        digest: &Digest,
        range: Option<ChunkRange>,
        final_chunk: Option<ByteStream>,
    ) -> Result<Digest> {
        let (repo, id, digest) = (repo.clone(), id.to_owned(), digest.clone());
        self.detached(
            move |registry| async move { registry.finish_attached(&repo, &id, &digest, range, final_chunk).await },
        )
        .await
    }

    async fn finish_attached(
        &self,
        repo: &RepositoryName,
        id: &str,
        digest: &Digest,
        range: Option<ChunkRange>,
        final_chunk: Option<ByteStream>,
    ) -> Result<Digest> {
        self.session(repo, id).await?;
        let handle = self.upload_handle(id);
        // One hold of the lock from the last byte to the commit: nothing can append in between.
        let mut state = self.lock_for_writing(id, &handle).await?;
        let (len, appended) = match final_chunk {
            Some(chunk) => {
                let (before, len) = self.append_locked(id, &handle, &mut state, range, chunk).await?;
                (len, len != before)
            }
            None => (self.blobs.upload_len(id).await?.ok_or(RegistryError::BlobUploadUnknown)?, false),
        };
        let actual = if digest.algorithm() == Algorithm::Sha256 && state.hashed_len == len {
            state.hasher.clone().finish()
        } else {
            let mut hasher = Digester::new(digest.algorithm());
            let mut data = self.blobs.read_upload(id).await?;
            while let Some(chunk) = data.next().await {
                if handle.cancelled.is_cancelled() {
                    return Err(RegistryError::BlobUploadUnknown);
                }
                hasher.update(&chunk.map_err(StoreError::Io)?);
            }
            hasher.finish()
        };
        if &actual != digest {
            let mut message = format!("uploaded content has digest {actual}, not the {digest} given");
            if appended {
                // The final chunk is stored and cannot be taken back: the upload ends, as
                // distribution's does, rather than keep bytes that cannot make `digest`.
                handle.cancelled.cancel();
                self.discard_upload(id).await?;
                drop(state);
                self.forget_upload_state(id);
                message.push_str("; the upload is cancelled, start a new one");
            }
            return Err(RegistryError::DigestInvalid(message));
        }
        // Ended meanwhile (its repository deleted): nothing is committed.
        if handle.cancelled.is_cancelled() {
            return Err(RegistryError::BlobUploadUnknown);
        }
        self.keep_from_collection(digest).await?;
        self.blobs.commit(id, digest).await?;
        self.meta.link_blob(repo, digest, len, now_millis()).await?;
        drop(state);
        self.forget_upload_state(id);
        // The session row goes in the next batch: with its data committed away, the session
        // answers "unknown" already, and one commit per batch beats one per blob.
        self.finished_uploads().push(id.to_owned());
        Ok(actual)
    }

    /// Single-request upload (`POST ?digest=`), on a task of its own: a client that disconnects
    /// mid-body leaves no session or staged data behind (they go at once, not at expiry).
    pub async fn upload_monolithic(
        &self,
        ctx: &RequestContext,
        repo: &RepositoryName,
        digest: &Digest,
        body: ByteStream,
    ) -> Result<Digest> {
        let (ctx, repo, digest) = (ctx.clone(), repo.clone(), digest.clone());
        self.detached(move |registry| async move {
            let status = registry.start_upload(&ctx, &repo).await?;
            let result = registry.finish_attached(&repo, &status.id, &digest, None, Some(body)).await;
            if result.is_err() {
                registry.cancel_upload(&repo, &status.id).await.ok();
            }
            result
        })
        .await
    }

    /// Cancels an upload. An append in progress is stopped and rolled back (its request gets
    /// `BlobUploadUnknown`); a finish in progress completes first, and then the upload is gone
    /// already (`BlobUploadUnknown` here).
    pub async fn cancel_upload(&self, repo: &RepositoryName, id: &str) -> Result<()> {
        self.session(repo, id).await?;
        let handle = self.upload_handle(id);
        handle.cancelled.cancel();
        let state = handle.state.lock().await;
        if self.blobs.upload_len(id).await?.is_none() {
            return Err(RegistryError::BlobUploadUnknown);
        }
        self.discard_upload(id).await?;
        drop(state);
        self.forget_upload_state(id);
        Ok(())
    }

    /// Ends the uploads of a repository just deleted (their rows went with it): `listed` (read
    /// before the delete) and this server's sessions of the repository, which also covers one
    /// started after the listing. At once, none answers any more and an append in progress
    /// stops; their staged data goes on a task of its own, since a finish in progress (which
    /// stops at its next check) may hold an upload a while, and the delete's client may leave.
    /// A server that knew a session without this one finds its data gone at its next write.
    pub(crate) fn end_uploads(&self, repo: &RepositoryName, listed: Vec<String>) {
        let mut ids: std::collections::BTreeSet<String> = listed.into_iter().collect();
        ids.extend(self.live_sessions().iter().filter(|(_, owner)| *owner == repo).map(|(id, _)| id.clone()));
        for id in &ids {
            self.live_sessions().remove(id);
            self.upload_handle(id).cancelled.cancel();
        }
        let this = self.arc();
        tokio::spawn(async move {
            for id in ids {
                let handle = this.upload_handle(&id);
                let state = handle.state.lock().await;
                if let Err(e) = this.blobs.abort(&id).await {
                    tracing::warn!(upload = %id, error = %e, "removing the staged data of a deleted repository's upload failed");
                }
                drop(state);
                this.forget_upload_state(&id);
            }
        });
    }

    /// Removes an upload's session row and staged data; the caller holds its lock and then
    /// forgets its state.
    async fn discard_upload(&self, id: &str) -> Result<()> {
        self.meta.delete_upload(id).await?;
        self.blobs.abort(id).await?;
        Ok(())
    }

    /// Stores a small blob from memory (the OCI empty config), as if uploaded.
    pub(crate) async fn put_small_blob(
        &self,
        ctx: &RequestContext,
        repo: &RepositoryName,
        data: &'static [u8],
    ) -> Result<Digest> {
        let digest = Digest::sha256_of(data);
        self.upload_monolithic(ctx, repo, &digest, byte_stream(bytes::Bytes::from_static(data))).await
    }

    /// Removes sessions untouched for the expiry period; returns how many.
    pub(crate) async fn expire_uploads(&self) -> Result<u64> {
        let before = now_millis() - self.config.upload_expiry.as_millis() as i64;
        let mut expired = 0;
        for session in self.meta.stale_uploads(before).await? {
            let handle = self.upload_handle(&session.id);
            // An append in progress (it touches the row when it ends): not abandoned.
            let Ok(state) = handle.state.try_lock() else { continue };
            tracing::info!(upload = %session.id, repo = %session.repo, "expiring abandoned upload");
            self.meta.delete_upload(&session.id).await?;
            self.blobs.abort(&session.id).await?;
            drop(state);
            self.forget_upload_state(&session.id);
            expired += 1;
        }
        Ok(expired)
    }
}

/// How long a write to an upload waits for another request's write to end before it is
/// refused. Clients write an upload one request after another; two at once means one is a retry
/// while the other still trickles in (it may, for up to the body timeout at a time).
const UPLOAD_BUSY_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

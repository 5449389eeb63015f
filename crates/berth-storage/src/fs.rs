//! Filesystem backend: `blobs/<alg>/<hh>/<hex>` for committed blobs, `uploads/<id>` for staging.
//!
//! Commit = fsync the staged file, rename it into place, fsync the directory: after a crash a blob
//! path either holds the whole verified content or does not exist.

use std::io::{self, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use berth_spec::Digest;
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::fs::{self, File};
use tokio::io::AsyncWriteExt;
use tokio_util::io::ReaderStream;

use crate::{BlobStore, ByteStream, ChunkObserver, StoreError};

/// Large reads keep syscalls and per-chunk overhead low on the pull path.
const READ_CHUNK: usize = 256 * 1024;

pub struct FsBlobStore {
    root: PathBuf,
}

impl FsBlobStore {
    /// Opens (creating if needed) a store rooted at `root`.
    pub async fn open(root: impl Into<PathBuf>) -> io::Result<FsBlobStore> {
        let root = root.into();
        fs::create_dir_all(root.join("uploads")).await?;
        fs::create_dir_all(root.join("blobs")).await?;
        Ok(FsBlobStore { root })
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

/// `len` bytes from `file`'s position, in `READ_CHUNK` pieces each read straight into the buffer
/// that goes out (tokio's `File` would copy every byte once more through its own buffer).
fn file_chunks(file: std::fs::File, len: u64) -> ByteStream {
    futures::stream::try_unfold((file, len), |(file, remaining)| async move {
        if remaining == 0 {
            return Ok(None);
        }
        let want = remaining.min(READ_CHUNK as u64);
        let (file, chunk) = tokio::task::spawn_blocking(move || -> io::Result<(std::fs::File, Vec<u8>)> {
            let mut chunk = Vec::with_capacity(want as usize);
            std::io::Read::read_to_end(&mut std::io::Read::take(&file, want), &mut chunk)?;
            Ok((file, chunk))
        })
        .await
        .map_err(io::Error::other)??;
        if chunk.is_empty() {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "blob file is shorter than its size"));
        }
        let read = chunk.len() as u64;
        Ok(Some((bytes::Bytes::from(chunk), (file, remaining - read))))
    })
    .boxed()
}

/// fsync(file) → rename → fsync(dir); an existing blob makes the staged copy redundant.
fn commit_file(from: &Path, to: &Path) -> io::Result<()> {
    if to.try_exists()? {
        std::fs::remove_file(from).ok();
        return Ok(());
    }
    std::fs::File::open(from)?.sync_all()?;
    let dir = to.parent().expect("blob path has a parent");
    std::fs::create_dir_all(dir)?;
    std::fs::rename(from, to)?;
    std::fs::File::open(dir)?.sync_all()
}

#[async_trait]
impl BlobStore for FsBlobStore {
    async fn create_upload(&self, upload: &str) -> Result<(), StoreError> {
        let path = self.upload_path(upload)?;
        File::create(&path).await?;
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
        // Open, check the length and seek in one blocking task (one thread hand-off, not three).
        let opened = tokio::task::spawn_blocking(move || -> io::Result<(std::fs::File, u64)> {
            let mut file = std::fs::OpenOptions::new().write(true).open(&path)?;
            let current = file.metadata()?.len();
            std::io::Seek::seek(&mut file, SeekFrom::Start(offset))?;
            Ok((file, current))
        })
        .await
        .map_err(io::Error::other)?;
        let (file, current) =
            not_found_as_none(opened)?.ok_or_else(|| StoreError::UploadNotFound(upload.to_owned()))?;
        if current != offset {
            return Err(StoreError::OffsetMismatch { current });
        }
        file.seek(SeekFrom::Start(offset)).await?;
        let mut written = offset;
        let result: Result<(), StoreError> = async {
            while let Some(chunk) = data.next().await {
                let chunk = chunk.map_err(StoreError::Body)?;
                file.write_all(&chunk).await?;
                observe(&chunk);
                written += chunk.len() as u64;
            }
            file.flush().await?;
            Ok(())
        }
        .await;
        if let Err(e) = result {
            file.set_len(offset).await?;
            return Err(e);
        }
        Ok(written)
    }

    async fn upload_len(&self, upload: &str) -> Result<Option<u64>, StoreError> {
        let path = self.upload_path(upload)?;
        Ok(not_found_as_none(fs::metadata(&path).await)?.map(|m| m.len()))
    }

    async fn read_upload(&self, upload: &str) -> Result<ByteStream, StoreError> {
        let path = self.upload_path(upload)?;
        let file =
            not_found_as_none(File::open(&path).await)?.ok_or_else(|| StoreError::UploadNotFound(upload.to_owned()))?;
        Ok(ReaderStream::with_capacity(file, READ_CHUNK).boxed())
    }

    async fn commit(&self, upload: &str, digest: &Digest) -> Result<(), StoreError> {
        let from = self.upload_path(upload)?;
        let to = self.blob_path(digest);
        // One blocking task for the whole sequence: each tokio::fs call is a thread hand-off, and
        // small pushes are dominated by such per-call costs, not by the bytes.
        let committed = tokio::task::spawn_blocking(move || commit_file(&from, &to)).await.map_err(io::Error::other)?;
        not_found_as_none(committed)?.ok_or_else(|| StoreError::UploadNotFound(upload.to_owned()))
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
        let path = self.blob_path(digest);
        // Open, size and seek in one blocking task.
        let opened = tokio::task::spawn_blocking(move || -> io::Result<(std::fs::File, Result<u64, u64>)> {
            let mut file = std::fs::File::open(&path)?;
            let size = file.metadata()?.len();
            let span = match range {
                None => Ok(size),
                Some(r) if r.start > r.end || r.end > size => Err(size),
                Some(r) => {
                    std::io::Seek::seek(&mut file, SeekFrom::Start(r.start))?;
                    Ok(r.end - r.start)
                }
            };
            Ok((file, span))
        })
        .await
        .map_err(io::Error::other)?;
        let (file, span) = not_found_as_none(opened)?.ok_or_else(|| StoreError::BlobNotFound(digest.clone()))?;
        let len = span.map_err(|size| StoreError::RangeNotSatisfiable { size })?;
        Ok(file_chunks(file, len))
    }

    async fn delete(&self, digest: &Digest) -> Result<(), StoreError> {
        not_found_as_none(fs::remove_file(self.blob_path(digest)).await)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn conformance() {
        let dir = tempfile::tempdir().unwrap();
        let store = super::FsBlobStore::open(dir.path()).await.unwrap();
        crate::testsuite::run_all(&store).await;
    }
}

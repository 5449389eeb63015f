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
use tokio::fs::{self, File, OpenOptions};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
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

async fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir).await?.sync_all().await
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
        let mut file = match OpenOptions::new().write(true).open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(StoreError::UploadNotFound(upload.to_owned())),
            Err(e) => return Err(e.into()),
        };
        let current = file.metadata().await?.len();
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
        let file = not_found_as_none(File::open(&path).await)?.ok_or_else(|| StoreError::UploadNotFound(upload.to_owned()))?;
        Ok(ReaderStream::with_capacity(file, READ_CHUNK).boxed())
    }

    async fn commit(&self, upload: &str, digest: &Digest) -> Result<(), StoreError> {
        let from = self.upload_path(upload)?;
        let to = self.blob_path(digest);
        if fs::try_exists(&to).await? {
            fs::remove_file(&from).await.ok();
            return Ok(());
        }
        let file = not_found_as_none(File::open(&from).await)?.ok_or_else(|| StoreError::UploadNotFound(upload.to_owned()))?;
        file.sync_all().await?;
        drop(file);
        let dir = to.parent().expect("blob path has a parent");
        fs::create_dir_all(dir).await?;
        fs::rename(&from, &to).await?;
        sync_dir(dir).await?;
        Ok(())
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
        let mut file = not_found_as_none(File::open(self.blob_path(digest)).await)?
            .ok_or_else(|| StoreError::BlobNotFound(digest.clone()))?;
        match range {
            None => Ok(ReaderStream::with_capacity(file, READ_CHUNK).boxed()),
            Some(r) => {
                let size = file.metadata().await?.len();
                if r.start > r.end || r.end > size {
                    return Err(StoreError::RangeNotSatisfiable { size });
                }
                file.seek(SeekFrom::Start(r.start)).await?;
                Ok(ReaderStream::with_capacity(file.take(r.end - r.start), READ_CHUNK).boxed())
            }
        }
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

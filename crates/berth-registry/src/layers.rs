//! ECR's layer upload API (InitiateLayerUpload, UploadLayerPart, CompleteLayerUpload) over the
//! same upload sessions as `/v2/` uploads, with ECR's stricter rules on parts. A layer uploaded
//! here is an ordinary blob of the repository, so `/v2/` serves it too.

use berth_iam::RequestContext;
use berth_spec::{Digest, RepositoryName};
use bytes::Bytes;

use crate::blobs::byte_stream;
use crate::{ChunkRange, Registry, RegistryError, Result, UploadStatus};

/// ECR's smallest part, except the last (the `/v2/` plane has no such rule: docker sends
/// chunks of any size).
pub const MIN_LAYER_PART_BYTES: u64 = 5 * 1024 * 1024;

impl Registry {
    /// Starts an upload in an existing repository (the ECR API never creates repositories).
    pub async fn initiate_layer_upload(&self, ctx: &RequestContext, repo: &RepositoryName) -> Result<UploadStatus> {
        self.repository(repo).await?;
        self.start_upload(ctx, repo).await
    }

    /// Appends one part, bytes `first..=last`: it must start at the first byte not received yet
    /// and hold exactly that many bytes. Returns the last byte received.
    pub async fn upload_layer_part(
        &self,
        repo: &RepositoryName,
        id: &str,
        first: u64,
        last: u64,
        data: Bytes,
    ) -> Result<u64> {
        self.repository(repo).await?;
        let received = self.upload_status(repo, id).await?.offset;
        let invalid = |received: u64, reason: String| RegistryError::LayerPartInvalid {
            last_valid_byte: received as i64 - 1,
            reason,
        };
        if first != received {
            return Err(invalid(
                received,
                format!("the part starts at byte {first}, the upload continues at byte {received}"),
            ));
        }
        let len = data.len() as u64;
        if last < first || last - first + 1 != len {
            return Err(invalid(received, format!("the part claims bytes {first}-{last} but carries {len} bytes")));
        }
        self.append_upload(repo, id, Some(ChunkRange { start: first, len }), byte_stream(data)).await.map_err(|e| {
            match e {
                // Another part of the same upload got in first.
                RegistryError::RangeInvalid { size } => {
                    invalid(size, format!("the part starts at byte {first}, the upload continues at byte {size}"))
                }
                other => other,
            }
        })?;
        self.upload_state(id).lock().await.parts.insert(first, len);
        Ok(last)
    }

    /// Completes an upload as the blob `digest` and links it into the repository.
    pub async fn complete_layer_upload(&self, repo: &RepositoryName, id: &str, digest: &Digest) -> Result<Digest> {
        self.repository(repo).await?;
        if self.upload_status(repo, id).await?.offset == 0 {
            return Err(RegistryError::EmptyUpload);
        }
        {
            let state = self.upload_state(id);
            let state = state.lock().await;
            // Parts survive only in memory: after a restart the sizes are not checked again.
            let mut all_but_last = state.parts.values().rev().skip(1);
            if all_but_last.any(|&len| len < MIN_LAYER_PART_BYTES) {
                return Err(RegistryError::LayerPartTooSmall { min: MIN_LAYER_PART_BYTES });
            }
        }
        if self.meta.linked_blob(repo, digest).await?.is_some() {
            self.cancel_upload(repo, id).await?;
            return Err(RegistryError::LayerAlreadyExists(digest.clone()));
        }
        self.finish_upload(repo, id, digest, None, None).await.map_err(|e| match e {
            RegistryError::DigestInvalid(reason) => RegistryError::LayerInvalid(reason),
            other => other,
        })
    }
}

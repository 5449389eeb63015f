//! ECR's archive storage class: `UpdateImageStorageClass` moves an image between STANDARD and
//! ARCHIVE. An archived image is listed and described (`imageStatus` ARCHIVED) but refused on
//! pull on both planes until it is restored (or pushed again). Berth keeps an archived image's
//! blobs where they are (filesystem and S3 alike), so a restore completes within the call:
//! `ACTIVATING`, which ECR shows for up to 20 minutes, never appears.
//!
//! An index takes its children along (ECR documents nothing about indexes; this keeps every
//! index whole): archiving one archives its untagged children that no other STANDARD index lists
//! (a tagged child is an image of its own, as lifecycle policies judge it), restoring
//! one restores all its children, and a child that a STANDARD index lists cannot be archived
//! alone (`ArchiveRefused`). Referrers (signatures, SBOMs) keep their own class.

use berth_iam::RequestContext;
use berth_meta::{MetaError, StorageClass};
use berth_spec::{Digest, RepositoryName};

use crate::images::ImageSelector;
use crate::{Registry, RegistryError, Result, now_millis};

impl Registry {
    /// Moves the selected image (with its children, for an index) to `class`; returns its digest.
    /// Already in `class` is no error, as a repeated call changes nothing.
    pub async fn update_image_storage_class(
        &self,
        ctx: &RequestContext,
        repo: &RepositoryName,
        selector: &ImageSelector,
        class: StorageClass,
    ) -> Result<Digest> {
        self.repository(repo).await?;
        let digest = self.resolve_image(repo, selector).await?.manifest.digest;
        let outcome = self.meta.update_storage_class(&self.origin(ctx), repo, &digest, class, now_millis()).await;
        self.manifests.invalidate_repo(repo);
        match outcome {
            Ok(_) => Ok(digest),
            Err(MetaError::ManifestReferenced { index }) => Err(RegistryError::ArchiveRefused { index }),
            Err(MetaError::ManifestUnknown(gone)) => Err(RegistryError::ManifestUnknown(gone.to_string())),
            Err(other) => Err(other.into()),
        }
    }
}

/// Refuses a pull of a blob that only archived images need: an archived image's layers do not
/// pull by digest either, while a layer another STANDARD image shares stays pullable.
pub(crate) fn refuse_archived_layer(digest: &Digest, needed_by: Option<StorageClass>) -> Result<()> {
    match needed_by {
        Some(StorageClass::Archive) => Err(RegistryError::LayerArchived(digest.clone())),
        Some(StorageClass::Standard) | None => Ok(()),
    }
}

/// Refuses a pull of an archived image (ECR answers such pulls 404).
pub(crate) fn refuse_archived(reference: &str, class: StorageClass) -> Result<()> {
    match class {
        StorageClass::Standard => Ok(()),
        StorageClass::Archive => Err(RegistryError::ImageArchived(reference.to_owned())),
    }
}

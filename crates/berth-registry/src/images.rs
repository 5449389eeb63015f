//! Images as the ECR API sees them: one per manifest digest, with the tags on it. Listing with
//! tag filters in keyset pages, lookups and deletes with a result per requested image, PutImage.
//!
//! The `/v2/` plane writes the same manifests and tags, so an image pushed there is listed here
//! at once and an image put here pulls there.

use berth_iam::RequestContext;
use berth_meta::{ImageRecord, ManifestRecord, MetaError, StorageClass};
use berth_spec::{Digest, Manifest, Reference, RepositoryName, Tag};

use crate::manifests::PushedManifest;
use crate::pull_through::{PullThroughError, UpstreamTrouble};
use crate::{Registry, RegistryError, Result};

/// How a request names an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSelector {
    Tag(Tag),
    Digest(Digest),
    /// Both given: the tag must be on that digest.
    TagAndDigest(Tag, Digest),
}

/// ECR's `tagStatus` filter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TagStatus {
    Tagged,
    Untagged,
    #[default]
    Any,
}

impl TagStatus {
    fn admits(self, image: &ImageRecord) -> bool {
        match self {
            TagStatus::Tagged => !image.tags.is_empty(),
            TagStatus::Untagged => image.tags.is_empty(),
            TagStatus::Any => true,
        }
    }
}

/// ECR's `imageStatus` filter over listings: the images of one storage class, or all (`None`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImageFilter {
    pub tags: TagStatus,
    pub class: Option<StorageClass>,
}

impl ImageFilter {
    fn admits(self, image: &ImageRecord) -> bool {
        self.tags.admits(image) && self.class.is_none_or(|class| image.manifest.storage_class == class)
    }
}

/// One ListImages entry: a (digest, tag) pair, or the digest alone for an untagged image.
/// Ordered by digest, then tag, the untagged entry first.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ImageId {
    pub digest: Digest,
    pub tag: Option<String>,
}

/// What a delete removed: the image's digest and the tags that went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletedImage {
    pub digest: Digest,
    pub tags: Vec<String>,
}

/// An ECR PutImage: exact manifest bytes, the media type the client declared, and optionally the
/// tag to move and the digest the client expects.
#[derive(Debug, Clone, Copy)]
pub struct PutImage<'a> {
    pub content: &'a [u8],
    pub media_type: Option<&'a str>,
    pub tag: Option<&'a Tag>,
    pub digest: Option<&'a Digest>,
}

/// Images read per store round trip when not all of them are kept.
pub(crate) const SCAN_BATCH: usize = 100;

impl Registry {
    /// Images sorted by digest, strictly after `after`, that pass `filter`; at most `limit` (and
    /// whether more remain).
    pub async fn list_images(
        &self,
        repo: &RepositoryName,
        after: Option<&Digest>,
        limit: usize,
        filter: ImageFilter,
    ) -> Result<(Vec<ImageRecord>, bool)> {
        self.repository(repo).await?;
        let mut found = Vec::new();
        let batch = if filter == ImageFilter::default() { limit + 1 } else { (limit + 1).max(SCAN_BATCH) };
        self.scan_images(repo, after, batch, |image| {
            if filter.admits(&image) {
                found.push(image);
            }
            found.len() <= limit
        })
        .await?;
        let more = found.len() > limit;
        found.truncate(limit);
        for image in &mut found {
            self.merge_pending_pull(repo, &mut image.manifest);
        }
        Ok((found, more))
    }

    /// ListImages entries strictly after `after` that pass `filter`; at most `limit` (and whether
    /// more remain).
    pub async fn list_image_ids(
        &self,
        repo: &RepositoryName,
        after: Option<&ImageId>,
        limit: usize,
        filter: ImageFilter,
    ) -> Result<(Vec<ImageId>, bool)> {
        self.repository(repo).await?;
        let mut ids = Vec::new();
        if let Some(after) = after
            && let Some(image) = self.meta.get_image(repo, &after.digest).await?
        {
            // The cursor's own image may have tags after the cursor's tag.
            ids.extend(image_ids(&image, filter).into_iter().filter(|id| id > after));
        }
        if ids.len() <= limit {
            self.scan_images(repo, after.map(|id| &id.digest), (limit + 1).max(SCAN_BATCH), |image| {
                ids.extend(image_ids(&image, filter));
                ids.len() <= limit
            })
            .await?;
        }
        let more = ids.len() > limit;
        ids.truncate(limit);
        Ok((ids, more))
    }

    /// Reads the images after `after` in digest order, `batch` per store round trip, handing each
    /// to `visit` until it returns false or the images run out.
    pub(crate) async fn scan_images(
        &self,
        repo: &RepositoryName,
        after: Option<&Digest>,
        batch: usize,
        mut visit: impl FnMut(ImageRecord) -> bool,
    ) -> Result<()> {
        let mut cursor = after.cloned();
        loop {
            let page = self.meta.list_images(repo, cursor.as_ref(), batch).await?;
            let exhausted = page.len() < batch;
            cursor = page.last().map(|image| image.manifest.digest.clone());
            for image in page {
                if !visit(image) {
                    return Ok(());
                }
            }
            if exhausted {
                return Ok(());
            }
        }
    }

    /// Looks each selector up, one result per selector (ECR's BatchGetImage and DescribeImages
    /// with `imageIds`). `pulled_by` makes it a pull: archived images are refused
    /// (`ImageArchived`), and in a repository a cache rule covers each is first pulled as `/v2/`
    /// would (from the upstream when not cached or due for a check, creating the repository),
    /// as ECR's BatchGetImage does. The caller counts what it answers with as pulled
    /// ([`Registry::record_pulls`]), once it knows it answers.
    pub async fn resolve_images(
        &self,
        repo: &RepositoryName,
        selectors: &[ImageSelector],
        pulled_by: Option<&RequestContext>,
    ) -> Result<Vec<Result<ImageRecord>>> {
        let mut filled = match pulled_by {
            Some(ctx) if self.cached_repository(repo).await?.is_some() => {
                Some(self.fill_images(ctx, repo, selectors).await.into_iter())
            }
            _ => None,
        };
        if let Err(missing) = self.repository(repo).await {
            // A cache repository the upstream could not fill (down, rate-limiting, refusing the
            // rule's credentials): each image's failure says so, as once the repository exists,
            // rather than the repository being unknown. One the upstream lacks stays unknown.
            let failures: Vec<Result<()>> = filled.map(Iterator::collect).unwrap_or_default();
            let upstream_failed = failures.iter().any(|failure| {
                matches!(failure, Err(RegistryError::PullThrough(PullThroughError::ManifestNotCached { .. })))
            });
            if !matches!(missing, RegistryError::NameUnknown(_)) || !upstream_failed {
                return Err(missing);
            }
            let unknown = || RegistryError::NameUnknown(repo.to_string());
            return Ok(failures.into_iter().map(|failure| Err(failure.err().unwrap_or_else(unknown))).collect());
        }
        let mut results = Vec::with_capacity(selectors.len());
        for selector in selectors {
            // What the upstream could not provide is this image's failure.
            if let Some(Err(failure)) = filled.as_mut().and_then(Iterator::next) {
                results.push(Err(failure));
                continue;
            }
            let mut result = self.resolve_image(repo, selector).await;
            if let (Ok(image), Some(_)) = (&result, pulled_by) {
                let digest = image.manifest.digest.to_string();
                if let Err(archived) = crate::archive::refuse_archived(&digest, image.manifest.storage_class) {
                    result = Err(archived);
                }
            }
            if let Ok(image) = &mut result {
                self.merge_pending_pull(repo, &mut image.manifest);
            }
            results.push(result);
        }
        Ok(results)
    }

    /// Pulls each selector through the cache; what the upstream could not give is that image's
    /// failure. A caller who may not import just gets what is cached, and once the upstream
    /// failed as a whole (down, rate-limiting, refusing the rule's credentials) the ids after
    /// are not asked for: a batch of 100 must not wait out 100 timeouts.
    async fn fill_images(
        &self,
        ctx: &RequestContext,
        repo: &RepositoryName,
        selectors: &[ImageSelector],
    ) -> Vec<Result<()>> {
        let mut filled = Vec::with_capacity(selectors.len());
        let mut upstream_failed: Option<(UpstreamTrouble, String)> = None;
        for selector in selectors {
            let reference = match selector {
                ImageSelector::Tag(tag) | ImageSelector::TagAndDigest(tag, _) => Reference::Tag(tag.clone()),
                ImageSelector::Digest(digest) => Reference::Digest(digest.clone()),
            };
            if let Some((trouble, message)) = &upstream_failed {
                let missing = self.stored_manifest(repo, &reference).await.map(|stored| stored.is_none());
                filled.push(match missing {
                    Ok(true) => {
                        Err(PullThroughError::ManifestNotCached { trouble: *trouble, message: message.clone() }.into())
                    }
                    Ok(false) => Ok(()),
                    Err(e) => Err(e),
                });
                continue;
            }
            filled.push(match self.pull_manifest_of_any_class(ctx, repo, &reference).await {
                Ok(_) | Err(RegistryError::AccessDenied { .. }) => Ok(()),
                Err(RegistryError::PullThrough(PullThroughError::ManifestNotCached { trouble, message })) => {
                    upstream_failed = Some((trouble, message.clone()));
                    Err(PullThroughError::ManifestNotCached { trouble, message }.into())
                }
                Err(e) => Err(e),
            });
        }
        filled
    }

    pub(crate) async fn resolve_image(&self, repo: &RepositoryName, selector: &ImageSelector) -> Result<ImageRecord> {
        let (digest, tag) = match selector {
            ImageSelector::Digest(digest) => (digest.clone(), None),
            ImageSelector::TagAndDigest(tag, digest) => (digest.clone(), Some(tag)),
            ImageSelector::Tag(tag) => match self.meta.get_manifest(repo, &Reference::Tag(tag.clone())).await? {
                Some(manifest) => (manifest.digest, None),
                None => return Err(RegistryError::ManifestUnknown(tag.to_string())),
            },
        };
        let image = self
            .meta
            .get_image(repo, &digest)
            .await?
            .ok_or_else(|| RegistryError::ManifestUnknown(digest.to_string()))?;
        if let Some(tag) = tag
            && !image.tags.iter().any(|t| t == tag.as_str())
        {
            return Err(self.tag_not_on(repo, tag, &digest).await?);
        }
        Ok(image)
    }

    /// Why `tag` does not name `digest`, as ECR's failure codes tell it, the same for every
    /// operation taking both: one of them missing is `ImageNotFound` (`ManifestUnknown`), both
    /// there is `ImageTagDoesNotMatchDigest`.
    async fn tag_not_on(&self, repo: &RepositoryName, tag: &Tag, digest: &Digest) -> Result<RegistryError> {
        if self.meta.get_manifest(repo, &Reference::Tag(tag.clone())).await?.is_none() {
            return Ok(RegistryError::ManifestUnknown(tag.to_string()));
        }
        if self.meta.get_image(repo, digest).await?.is_none() {
            return Ok(RegistryError::ManifestUnknown(digest.to_string()));
        }
        Ok(RegistryError::TagDigestMismatch { tag: tag.to_string(), digest: digest.clone() })
    }

    /// ECR's BatchDeleteImage, one result per selector. By digest: the image and all its tags
    /// (refused while an index in the repository lists it). By tag, or tag and digest: the tag,
    /// and the image with it when that was its last tag — as ECR documents, so a last tag of an
    /// image an index lists is refused like the image (`ImageReferencedByManifestList`).
    pub async fn delete_images(
        &self,
        ctx: &RequestContext,
        repo: &RepositoryName,
        selectors: &[ImageSelector],
    ) -> Result<Vec<Result<DeletedImage>>> {
        self.repository(repo).await?;
        let mut results = Vec::with_capacity(selectors.len());
        for selector in selectors {
            let result = match selector {
                ImageSelector::Digest(digest) => self.delete_image(ctx, repo, digest).await,
                ImageSelector::Tag(tag) => self.untag_image(ctx, repo, tag, None).await,
                ImageSelector::TagAndDigest(tag, digest) => self.untag_image(ctx, repo, tag, Some(digest)).await,
            };
            self.manifests.invalidate_repo(repo);
            results.push(result);
        }
        Ok(results)
    }

    async fn delete_image(&self, ctx: &RequestContext, repo: &RepositoryName, digest: &Digest) -> Result<DeletedImage> {
        let image = self
            .meta
            .get_image(repo, digest)
            .await?
            .ok_or_else(|| RegistryError::ManifestUnknown(digest.to_string()))?;
        self.meta.delete_manifest(&self.origin(ctx), repo, digest).await.map_err(|e| match e {
            MetaError::ManifestUnknown(d) => RegistryError::ManifestUnknown(d.to_string()),
            other => other.into(),
        })?;
        Ok(DeletedImage { digest: digest.clone(), tags: image.tags })
    }

    /// Removes `tag` (which must be on `expected`, if given). Tag and image are two writes: a
    /// push that re-tags the image in between can lose that tag (the store has no conditional
    /// delete); an index that lists the image arriving in between, or two requests removing its
    /// last two tags at once, leave it untagged (the last-tag check is not in the delete's transaction).
    async fn untag_image(
        &self,
        ctx: &RequestContext,
        repo: &RepositoryName,
        tag: &Tag,
        expected: Option<&Digest>,
    ) -> Result<DeletedImage> {
        let unknown = || RegistryError::ManifestUnknown(tag.to_string());
        let current = self.meta.get_manifest(repo, &Reference::Tag(tag.clone())).await?.ok_or_else(unknown)?.digest;
        if let Some(expected) = expected
            && expected != &current
        {
            return Err(self.tag_not_on(repo, tag, expected).await?);
        }
        let last_tag = self.meta.get_image(repo, &current).await?.is_some_and(|image| image.tags.len() == 1);
        if last_tag && let Some(index) = self.meta.parents(repo, &current).await?.into_iter().next() {
            return Err(RegistryError::ManifestReferenced { index });
        }
        let origin = self.origin(ctx);
        let digest = self.meta.delete_tag(&origin, repo, tag).await?.ok_or_else(unknown)?;
        let now_untagged = self.meta.get_image(repo, &digest).await?.is_some_and(|image| image.tags.is_empty());
        if now_untagged && self.meta.parents(repo, &digest).await?.is_empty() {
            match self.meta.delete_manifest(&origin, repo, &digest).await {
                // Gone already, or an index listing it arrived meanwhile: it stays, untagged.
                Ok(()) | Err(MetaError::ManifestUnknown(_) | MetaError::ManifestReferenced { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(DeletedImage { digest, tags: vec![tag.to_string()] })
    }

    /// ECR's PutImage: stores the exact bytes in an existing repository. Unlike a `/v2/` push it
    /// never creates the repository, and re-putting a digest under a tag it already has is
    /// `ImageAlreadyExists`, unless the put restored it from the archive. Returns the digest and
    /// the manifest's media type.
    pub async fn put_image(
        &self,
        ctx: &RequestContext,
        repo: &RepositoryName,
        put: PutImage<'_>,
    ) -> Result<(Digest, String)> {
        self.refuse_push_into_cache(repo).await?;
        let repository = self.describe_repository(repo).await?;
        // The checks of a `/v2/` push (CVE-2021-41190 among them): the planes store the same.
        let manifest = Manifest::parse_pushed(put.content, put.media_type)?;
        let digest = match put.digest {
            Some(expected) => {
                let actual = Digest::of(expected.algorithm(), put.content);
                if &actual != expected {
                    return Err(RegistryError::ImageDigestMismatch { expected: expected.clone(), actual });
                }
                actual
            }
            None => Digest::sha256_of(put.content),
        };
        let pushed = PushedManifest { parsed: &manifest, content: put.content, digest: &digest };
        let tags = put.tag.map(std::slice::from_ref).unwrap_or_default();
        let outcome = self.store_manifest(ctx, &repository, pushed, tags).await?;
        if let Some(tag) = put.tag
            && !outcome.manifest_created
            && !outcome.restored
            && outcome.previous_tag_targets.first() == Some(&Some(digest.clone()))
        {
            return Err(RegistryError::ImageAlreadyExists { digest, tag: tag.to_string() });
        }
        Ok((digest, manifest.media_type))
    }

    /// Shows a pull that is still buffered in memory (see `pulls.rs`).
    fn merge_pending_pull(&self, repo: &RepositoryName, manifest: &mut ManifestRecord) {
        if let Some(at) = self.pulls.pending(repo, &manifest.digest) {
            manifest.last_pulled_at = Some(manifest.last_pulled_at.map_or(at, |stored| stored.max(at)));
        }
    }
}

/// An image's ListImages entries that pass `filter`, in order.
fn image_ids(image: &ImageRecord, filter: ImageFilter) -> Vec<ImageId> {
    if !filter.admits(image) {
        return vec![];
    }
    let digest = &image.manifest.digest;
    if image.tags.is_empty() {
        return vec![ImageId { digest: digest.clone(), tag: None }];
    }
    image.tags.iter().map(|tag| ImageId { digest: digest.clone(), tag: Some(tag.clone()) }).collect()
}

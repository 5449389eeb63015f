//! Manifest push, pull, delete, tags and referrers.

use std::collections::BTreeMap;
use std::sync::Arc;

use berth_iam::RequestContext;
use berth_meta::{ManifestRecord, MetaError, PutManifest, PutOutcome, PutTag};
use berth_spec::{Digest, Manifest, ManifestKind, Reference, RepositoryName, Tag, media};

use crate::{Registry, RegistryError, RepositoryInfo, RepositorySettings, Result, now_millis};

#[derive(Debug, Clone)]
pub struct PutManifestOutcome {
    pub digest: Digest,
    /// The manifest's subject, echoed as `OCI-Subject` so clients know referrers are indexed.
    pub subject: Option<Digest>,
    pub manifest_created: bool,
    /// Every tag now naming the manifest by this push, sorted.
    pub tags: Vec<Tag>,
}

/// One entry of a referrers index.
#[derive(Debug, Clone)]
pub struct Referrer {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    pub artifact_type: Option<String>,
    pub annotations: Option<BTreeMap<String, String>>,
}

/// A page of [`Registry::referrers`]; `more` when referrers past its last remain.
#[derive(Debug, Clone)]
pub struct ReferrersPage {
    pub referrers: Vec<Referrer>,
    pub more: bool,
}

/// Annotations one page of referrers carries at most, as much as one manifest may hold.
pub const REFERRERS_PAGE_BYTES: u64 = berth_spec::manifest::MAX_MANIFEST_BYTES as u64;
/// What a descriptor costs a page besides its annotations (digest, types, JSON punctuation).
const DESCRIPTOR_BYTES: u64 = 256;
/// Referrers read from the store at a time while a page fills.
const REFERRERS_BATCH: usize = 64;

/// How often a push judges its tags again because the repository's settings changed meanwhile
/// (each time a settings change committed between its read and its write).
const MAX_SETTINGS_RACES: u32 = 8;

/// Manifest bytes as pushed, parsed, with the digest they were checked to have.
#[derive(Clone, Copy)]
pub(crate) struct PushedManifest<'a> {
    pub parsed: &'a Manifest,
    pub content: &'a [u8],
    pub digest: &'a Digest,
}

impl Registry {
    /// Validates and stores a manifest under `reference` (a tag, or the digest the bytes must have).
    pub async fn put_manifest(
        &self,
        ctx: &RequestContext,
        repo: &RepositoryName,
        reference: &Reference,
        content_type: Option<&str>,
        content: &[u8],
    ) -> Result<PutManifestOutcome> {
        self.put_manifest_with_tags(ctx, repo, reference, &[], content_type, content).await
    }

    /// [`put_manifest`](Self::put_manifest) that also moves `extra_tags` (the distribution spec's
    /// `?tag=` parameters) to the manifest in the same transaction: all of them or none.
    pub async fn put_manifest_with_tags(
        &self,
        ctx: &RequestContext,
        repo: &RepositoryName,
        reference: &Reference,
        extra_tags: &[Tag],
        content_type: Option<&str>,
        content: &[u8],
    ) -> Result<PutManifestOutcome> {
        let manifest = Manifest::parse_pushed(content, content_type)?;
        let (digest, tag) = match reference {
            Reference::Digest(expected) => {
                let actual = Digest::of(expected.algorithm(), content);
                if &actual != expected {
                    return Err(RegistryError::DigestInvalid(format!(
                        "manifest content has digest {actual}, not {expected} as the reference says"
                    )));
                }
                (actual, None)
            }
            Reference::Tag(tag) => (Digest::sha256_of(content), Some(tag)),
        };
        let mut tags: Vec<Tag> = tag.into_iter().chain(extra_tags).cloned().collect();
        tags.sort();
        tags.dedup();
        // A repository that does not exist yet holds no manifests and no blobs (but the empty
        // JSON, which pushes link on demand), so a manifest needing any is refused before
        // creating it — unless the new repository will take sparse manifests.
        let needs_nothing_held = |settings: &RepositorySettings| {
            if settings.allows_sparse_indexes(self.config.sparse_indexes) {
                return Ok(());
            }
            if let Some(child) = manifest.manifests.first() {
                return Err(RegistryError::ManifestChildUnknown(child.digest.clone()));
            }
            let empty = Digest::sha256_of(media::EMPTY_JSON);
            let missing: Vec<Digest> =
                manifest.required_blobs().filter(|d| d.digest != empty).map(|d| d.digest.clone()).collect();
            if missing.is_empty() { Ok(()) } else { Err(RegistryError::ManifestBlobUnknown(missing)) }
        };
        let repository = RepositoryInfo::try_from(self.push_target_if(ctx, repo, Some(&needs_nothing_held)).await?)?;
        let pushed = PushedManifest { parsed: &manifest, content, digest: &digest };
        let outcome = self.store_manifest(ctx, &repository, pushed, &tags).await?;
        Ok(PutManifestOutcome {
            digest,
            subject: manifest.subject.map(|s| s.digest),
            manifest_created: outcome.manifest_created,
            tags,
        })
    }

    /// Stores a pushed manifest (and moves `tags` to it, all or none) in `repository`, applying
    /// its tag-mutability settings; shared by both planes' pushes.
    pub(crate) async fn store_manifest(
        &self,
        ctx: &RequestContext,
        repository: &RepositoryInfo,
        pushed: PushedManifest<'_>,
        tags: &[Tag],
    ) -> Result<PutOutcome> {
        let blobs = self.required_blobs(ctx, &repository.name, pushed.parsed).await?;
        let sparse = repository.settings.allows_sparse_indexes(self.config.sparse_indexes);
        self.commit_manifest(ctx, repository, pushed, &blobs, sparse, tags).await
    }

    /// Writes a parsed manifest needing `blobs` (invariant 4; absent ones allowed if `sparse`)
    /// and moves `tags` to it, all or none: the one write of pushes and cache fills alike. Each
    /// tag's immutability is judged by the settings the write finds current (invariant 28).
    pub(crate) async fn commit_manifest(
        &self,
        ctx: &RequestContext,
        repository: &RepositoryInfo,
        pushed: PushedManifest<'_>,
        blobs: &[(Digest, u64)],
        sparse: bool,
        tags: &[Tag],
    ) -> Result<PutOutcome> {
        let PushedManifest { parsed: manifest, content, digest } = pushed;
        let repo = &repository.name;
        // A push that says it is another registry's replication is not replicated onward
        // (`Origin::by_replication`): the claim needs `ecr:ReplicateImage`, so only a caller
        // trusted to replicate can keep a push from its rules.
        if crate::replication::is_replication(ctx) {
            self.authorize(ctx, repo, &[berth_iam::actions::REPLICATE_IMAGE]).await?;
        }
        let children: Vec<(Digest, u64)> = match manifest.kind {
            ManifestKind::Index => manifest.manifests.iter().map(|d| (d.digest.clone(), d.size)).collect(),
            ManifestKind::Image => vec![],
        };
        let foreign: Vec<Digest> = manifest.foreign_layers().map(|d| d.digest.clone()).collect();
        let annotations = (!manifest.annotations.is_empty())
            .then(|| serde_json::to_string(&manifest.annotations).expect("annotations serialize"));
        let mut judged_by = None;
        let mut attempts = 0;
        let outcome = loop {
            attempts += 1;
            let current = judged_by.as_ref().unwrap_or(repository);
            let settings = &current.settings;
            let put_tags =
                tags.iter().map(|tag| PutTag { tag, immutable: settings.tag_is_immutable(tag.as_str()) }).collect();
            let put = PutManifest {
                repo,
                digest,
                media_type: &manifest.media_type,
                content,
                artifact_type: manifest.effective_artifact_type(),
                annotations: annotations.as_deref(),
                subject: manifest.subject.as_ref().map(|s| &s.digest),
                blobs,
                foreign_blobs: &foreign,
                children: &children,
                sparse,
                tags: put_tags,
                settings_version: (!tags.is_empty()).then_some(current.settings_version),
                now: now_millis(),
            };
            match self.meta.put_manifest(&self.origin(ctx), put).await {
                // The settings changed since they were read: judge the tags by the new ones.
                Err(MetaError::SettingsConflict(_)) if attempts < MAX_SETTINGS_RACES => {
                    let fresh = self.meta.get_repository(repo).await?;
                    judged_by = Some(fresh.ok_or_else(|| RegistryError::NameUnknown(repo.to_string()))?.try_into()?);
                }
                outcome => break outcome,
            }
        };
        self.manifests.invalidate_repo(repo);
        Ok(outcome?)
    }

    /// The blobs a manifest needs with their sizes. The OCI empty config (`{}`) is provided by the
    /// registry itself, so artifact pushes need not upload two bytes first.
    async fn required_blobs(
        &self,
        ctx: &RequestContext,
        repo: &RepositoryName,
        manifest: &Manifest,
    ) -> Result<Vec<(Digest, u64)>> {
        let empty = Digest::sha256_of(media::EMPTY_JSON);
        let mut blobs = Vec::new();
        for d in manifest.required_blobs() {
            if d.digest == empty && self.meta.linked_blob(repo, &empty).await?.is_none() {
                self.put_small_blob(ctx, repo, media::EMPTY_JSON).await?;
            }
            blobs.push((d.digest.clone(), d.size));
        }
        Ok(blobs)
    }

    /// ECR's conversion of a manifest pulled by tag for a client that takes only the other image
    /// format (`berth_spec::convert`): its media type and bytes, or `None` for the stored ones.
    /// A large one is rewritten on a blocking thread (a 4 MiB manifest takes tens of ms).
    pub async fn converted_for(manifest: &ManifestRecord, accepted: &[&str]) -> Option<(&'static str, Vec<u8>)> {
        const INLINE_BYTES: usize = 64 * 1024;
        let target = berth_spec::convert::target_for(&manifest.media_type, accepted)?;
        let converted = if manifest.content.len() <= INLINE_BYTES {
            berth_spec::convert::convert(&manifest.content, target)
        } else {
            let content = manifest.content.clone();
            tokio::task::spawn_blocking(move || berth_spec::convert::convert(&content, target)).await.ok()?
        };
        Some((target, converted?))
    }

    /// Resolves a manifest, `NameUnknown`/`ManifestUnknown` when absent. `pulled_by` marks it
    /// pulled by that caller for ECR's `lastRecordedPullTime` (GET, not HEAD).
    pub async fn get_manifest(
        &self,
        repo: &RepositoryName,
        reference: &Reference,
        pulled_by: Option<&RequestContext>,
    ) -> Result<Arc<ManifestRecord>> {
        let cached = match self.manifests.get(repo, reference) {
            Some(hit) => Some(hit),
            None => {
                let generation = self.manifests.generation();
                let found = self.meta.get_manifest(repo, reference).await?.map(Arc::new);
                if let Some(m) = &found {
                    self.manifests.fill(generation, repo, reference, m.clone());
                }
                found
            }
        };
        match cached {
            Some(m) => {
                if let Some(ctx) = pulled_by {
                    self.record_pull(ctx, repo, &m.digest);
                }
                Ok(m)
            }
            None => {
                self.repository(repo).await?;
                Err(RegistryError::ManifestUnknown(reference.to_string()))
            }
        }
    }

    /// Deleting by tag removes only the tag; by digest, the manifest and every tag on it.
    pub async fn delete_manifest(
        &self,
        ctx: &RequestContext,
        repo: &RepositoryName,
        reference: &Reference,
    ) -> Result<()> {
        self.repository(repo).await?;
        let result = self.delete_manifest_uncached(ctx, repo, reference).await;
        self.manifests.invalidate_repo(repo);
        result
    }

    async fn delete_manifest_uncached(
        &self,
        ctx: &RequestContext,
        repo: &RepositoryName,
        reference: &Reference,
    ) -> Result<()> {
        let origin = self.origin(ctx);
        match reference {
            Reference::Tag(tag) => match self.meta.delete_tag(&origin, repo, tag).await? {
                Some(_) => Ok(()),
                None => Err(RegistryError::ManifestUnknown(tag.to_string())),
            },
            Reference::Digest(digest) => self.meta.delete_manifest(&origin, repo, digest).await.map_err(|e| match e {
                berth_meta::MetaError::ManifestUnknown(d) => RegistryError::ManifestUnknown(d.to_string()),
                other => other.into(),
            }),
        }
    }

    /// Tags sorted byte-wise after `last`, at most `n` (and whether more remain).
    pub async fn list_tags(
        &self,
        repo: &RepositoryName,
        n: Option<usize>,
        last: Option<&str>,
    ) -> Result<(Vec<String>, bool)> {
        let all = match (self.manifests.tags(repo), n) {
            (Some(cached), _) => cached,
            // A page on a miss reads only itself (and one more tag, to tell whether more remain):
            // where servers share the database nothing caches the full list, and reading it
            // for every page made paging through n tags cost n²/page.
            (None, Some(n)) => {
                self.repository(repo).await?;
                let mut page = self.meta.list_tags(repo, last, Some(n.saturating_add(1))).await?;
                let more = page.len() > n;
                page.truncate(n);
                return Ok((page, more));
            }
            (None, None) => {
                let generation = self.manifests.generation();
                self.repository(repo).await?;
                let all = Arc::new(self.meta.list_tags(repo, None, None).await?);
                self.manifests.fill_tags(generation, repo, all.clone());
                all
            }
        };
        let start = last.map_or(0, |last| all.partition_point(|t| t.as_str() <= last));
        let end = n.map_or(all.len(), |n| start.saturating_add(n).min(all.len()));
        Ok((all[start..end].to_vec(), end < all.len()))
    }

    /// One page of the manifests whose subject is `subject`, by digest after `after`: at most
    /// `limit` of them, and their annotations at most [`REFERRERS_PAGE_BYTES`] in all (at least
    /// one referrer per page), since each manifest's may be megabytes and a subject may have any
    /// number of referrers. `artifact_types`, if not empty, keeps only referrers of those types.
    /// A repository or subject that does not exist simply has no referrers.
    pub async fn referrers(
        &self,
        repo: &RepositoryName,
        subject: &Digest,
        artifact_types: &[&str],
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<ReferrersPage> {
        let mut referrers = Vec::new();
        let mut budget_used = 0u64;
        let mut cursor = after.cloned();
        loop {
            let batch = self.meta.referrers(repo, subject, cursor.as_ref(), REFERRERS_BATCH).await?;
            let exhausted = batch.len() < REFERRERS_BATCH;
            for record in batch {
                cursor = Some(record.digest.clone());
                let wanted = artifact_types.is_empty()
                    || record.artifact_type.as_deref().is_some_and(|t| artifact_types.contains(&t));
                if !wanted {
                    continue;
                }
                let cost = record.annotations_len + DESCRIPTOR_BYTES;
                if referrers.len() == limit || (!referrers.is_empty() && budget_used + cost > REFERRERS_PAGE_BYTES) {
                    return Ok(ReferrersPage { referrers, more: true });
                }
                budget_used += cost;
                let annotations = match record.annotations {
                    Some(text) => Some(text),
                    None if record.annotations_len > 0 => self.meta.annotations(repo, &record.digest).await?,
                    None => None,
                };
                referrers.push(Referrer {
                    size: record.size,
                    annotations: annotations.as_deref().and_then(|a| serde_json::from_str(a).ok()),
                    media_type: record.media_type,
                    digest: record.digest,
                    artifact_type: record.artifact_type,
                });
            }
            if exhausted {
                return Ok(ReferrersPage { referrers, more: false });
            }
        }
    }

    /// Parses a `<name>` from a URL or request into a repository name.
    pub fn parse_name(name: &str) -> Result<RepositoryName> {
        name.parse().map_err(RegistryError::from)
    }

    pub fn parse_tag(tag: &str) -> Result<Tag> {
        tag.parse().map_err(RegistryError::from)
    }
}

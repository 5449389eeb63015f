//! In-memory cache of manifests, tag resolutions and tag lists, so hot manifest GET/HEAD and
//! tags/list requests are served without a database round trip.
//!
//! Correctness rests on one rule: every write path goes through `Registry`, which calls
//! [`ManifestCache::invalidate_repo`] after its transaction committed. A reader fills the cache only
//! if no invalidation happened since it started reading (a generation counter checked under the
//! lock), so a read that raced with a write can never plant a stale entry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use berth_meta::ManifestRecord;
use berth_spec::{Reference, RepositoryName};

/// Cached manifest bytes are bounded; past this the cache starts over (simple, and hot
/// entries come right back).
const BYTE_BUDGET: usize = 32 * 1024 * 1024;

pub(crate) struct ManifestCache {
    /// Off when other processes write the same metadata: their writes never invalidate ours.
    enabled: bool,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    generation: u64,
    bytes: usize,
    entries: HashMap<RepositoryName, HashMap<Reference, Arc<ManifestRecord>>>,
    /// Each repository's tags, sorted byte-wise.
    tag_lists: HashMap<RepositoryName, Arc<Vec<String>>>,
}

impl Inner {
    /// Makes room for `more` bytes, starting over when the budget would be exceeded.
    fn reserve(&mut self, more: usize) {
        if self.bytes + more > BYTE_BUDGET {
            self.entries.clear();
            self.tag_lists.clear();
            self.bytes = 0;
        }
        self.bytes += more;
    }
}

fn tag_list_bytes(tags: &[String]) -> usize {
    tags.iter().map(|t| t.len() + std::mem::size_of::<String>()).sum()
}

impl ManifestCache {
    pub(crate) fn new(enabled: bool) -> ManifestCache {
        ManifestCache { enabled, inner: Mutex::default() }
    }

    pub(crate) fn generation(&self) -> u64 {
        self.lock().generation
    }

    pub(crate) fn get(&self, repo: &RepositoryName, reference: &Reference) -> Option<Arc<ManifestRecord>> {
        self.lock().entries.get(repo)?.get(reference).cloned()
    }

    /// Stores what a read that started at `generation` found, unless a write intervened.
    pub(crate) fn fill(
        &self,
        generation: u64,
        repo: &RepositoryName,
        reference: &Reference,
        record: Arc<ManifestRecord>,
    ) {
        let mut inner = self.lock();
        if !self.enabled || inner.generation != generation {
            return;
        }
        inner.reserve(record.content.len());
        inner.entries.entry(repo.clone()).or_default().insert(reference.clone(), record);
    }

    pub(crate) fn tags(&self, repo: &RepositoryName) -> Option<Arc<Vec<String>>> {
        self.lock().tag_lists.get(repo).cloned()
    }

    /// Stores a repository's full tag list read at `generation`, unless a write intervened.
    pub(crate) fn fill_tags(&self, generation: u64, repo: &RepositoryName, tags: Arc<Vec<String>>) {
        let mut inner = self.lock();
        if !self.enabled || inner.generation != generation {
            return;
        }
        inner.reserve(tag_list_bytes(&tags));
        inner.tag_lists.insert(repo.clone(), tags);
    }

    /// Drops everything cached for `repo`; call after any committed write to it.
    pub(crate) fn invalidate_repo(&self, repo: &RepositoryName) {
        let mut inner = self.lock();
        inner.generation += 1;
        if let Some(removed) = inner.entries.remove(repo) {
            inner.bytes -= removed.values().map(|r| r.content.len()).sum::<usize>();
        }
        if let Some(removed) = inner.tag_lists.remove(repo) {
            inner.bytes -= tag_list_bytes(&removed);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_spec::Digest;

    fn record() -> Arc<ManifestRecord> {
        Arc::new(ManifestRecord {
            digest: Digest::sha256_of(b"m"),
            media_type: "x".into(),
            content: b"m".to_vec(),
            artifact_type: None,
            subject: None,
            annotations: None,
            image_size: 0,
            pushed_at: 0,
            last_pulled_at: None,
            storage_class: Default::default(),
            last_archived_at: None,
            last_activated_at: None,
        })
    }

    #[test]
    fn a_read_racing_a_write_does_not_fill() {
        let cache = ManifestCache::new(true);
        let repo: RepositoryName = "r".parse().unwrap();
        let tag: Reference = "t".parse().unwrap();
        let before = cache.generation();
        cache.invalidate_repo(&repo);
        cache.fill(before, &repo, &tag, record());
        assert!(cache.get(&repo, &tag).is_none());
        cache.fill(cache.generation(), &repo, &tag, record());
        assert!(cache.get(&repo, &tag).is_some());
        cache.invalidate_repo(&repo);
        assert!(cache.get(&repo, &tag).is_none());
    }

    #[test]
    fn tag_lists_follow_the_same_rule() {
        let cache = ManifestCache::new(true);
        let repo: RepositoryName = "r".parse().unwrap();
        let before = cache.generation();
        cache.invalidate_repo(&repo);
        cache.fill_tags(before, &repo, Arc::new(vec!["a".into()]));
        assert!(cache.tags(&repo).is_none());
        cache.fill_tags(cache.generation(), &repo, Arc::new(vec!["a".into()]));
        assert_eq!(cache.tags(&repo).unwrap().as_slice(), ["a".to_string()]);
        cache.invalidate_repo(&repo);
        assert!(cache.tags(&repo).is_none());
    }

    #[test]
    fn a_disabled_cache_never_fills() {
        let cache = ManifestCache::new(false);
        let repo: RepositoryName = "r".parse().unwrap();
        cache.fill(cache.generation(), &repo, &"t".parse().unwrap(), record());
        cache.fill_tags(cache.generation(), &repo, Arc::new(vec!["t".into()]));
        assert!(cache.get(&repo, &"t".parse().unwrap()).is_none());
        assert!(cache.tags(&repo).is_none());
    }
}

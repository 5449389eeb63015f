//! A repository's images as the console draws them: every manifest, parsed once, with the edges
//! that give them shape — an index and the children it lists, a subject and its referrers.

use std::collections::{HashMap, HashSet};

use berth_registry::{ImageFilter, ImageRecord, Registry, RegistryError};
use berth_spec::{Digest, Manifest, ManifestKind, RepositoryName};

use crate::session::Millis;

/// Images read per service call.
const PAGE: usize = 200;

pub struct Entry {
    pub record: ImageRecord,
    /// `None` when the stored bytes no longer parse (a format this version does not know).
    pub manifest: Option<Manifest>,
    /// Indexes in the repository that list this manifest.
    pub parents: Vec<usize>,
    /// The manifests this index lists that are in the repository, in the index's order.
    pub children: Vec<usize>,
    /// Manifests in the repository whose subject this is.
    pub referrers: Vec<usize>,
    /// The subject, when it is in the repository.
    pub subject: Option<usize>,
}

impl Entry {
    /// No index here lists it and it refers to nothing here.
    fn is_root(&self) -> bool {
        self.parents.is_empty() && self.subject.is_none()
    }

    pub fn digest(&self) -> &Digest {
        &self.record.manifest.digest
    }

    pub fn is_index(&self) -> bool {
        self.manifest.as_ref().is_some_and(|m| m.kind == ManifestKind::Index)
    }
}

pub struct Inventory {
    pub entries: Vec<Entry>,
    position: HashMap<Digest, usize>,
}

impl Inventory {
    pub async fn load(registry: &Registry, repo: &RepositoryName) -> Result<Inventory, RegistryError> {
        let mut records = Vec::new();
        let mut after: Option<Digest> = None;
        loop {
            let (page, more) = registry.list_images(repo, after.as_ref(), PAGE, ImageFilter::default()).await?;
            after = page.last().map(|image| image.manifest.digest.clone());
            records.extend(page);
            if !more {
                break;
            }
        }
        Ok(Inventory::from_records(records))
    }

    pub fn from_records(records: Vec<ImageRecord>) -> Inventory {
        let position: HashMap<Digest, usize> =
            records.iter().enumerate().map(|(i, image)| (image.manifest.digest.clone(), i)).collect();
        let mut entries: Vec<Entry> = records
            .into_iter()
            .map(|record| {
                let manifest = Manifest::parse(&record.manifest.content, Some(&record.manifest.media_type)).ok();
                Entry { record, manifest, parents: vec![], children: vec![], referrers: vec![], subject: None }
            })
            .collect();
        for i in 0..entries.len() {
            let children: Vec<usize> = entries[i]
                .manifest
                .as_ref()
                .map(|m| m.manifests.iter().filter_map(|d| position.get(&d.digest).copied()).collect())
                .unwrap_or_default();
            for &child in &children {
                entries[child].parents.push(i);
            }
            entries[i].children = children;
            if let Some(subject) = entries[i].record.manifest.subject.as_ref().and_then(|d| position.get(d)).copied() {
                entries[i].subject = Some(subject);
                entries[subject].referrers.push(i);
            }
        }
        Inventory { entries, position }
    }

    pub fn get(&self, digest: &Digest) -> Option<usize> {
        self.position.get(digest).copied()
    }

    /// What a person calls the repository's images: the manifests no index lists and that refer
    /// to nothing here (the roots of the tree), and every tagged one besides (the per-platform
    /// images `docker manifest create` combines keep their own tags), newest push first.
    pub fn top_level(&self) -> Vec<usize> {
        self.newest_first(|entry| entry.is_root() || !entry.record.tags.is_empty())
    }

    /// The roots of the tree of indexes and referrers, newest push first.
    pub fn roots(&self) -> Vec<usize> {
        self.newest_first(Entry::is_root)
    }

    fn newest_first(&self, pick: impl Fn(&Entry) -> bool) -> Vec<usize> {
        let mut picked: Vec<usize> = (0..self.entries.len()).filter(|&i| pick(&self.entries[i])).collect();
        picked.sort_by(|&a, &b| {
            let (a, b) = (&self.entries[a].record.manifest, &self.entries[b].record.manifest);
            b.pushed_at.cmp(&a.pushed_at).then_with(|| a.digest.cmp(&b.digest))
        });
        picked
    }

    /// Bytes of the configs and layers the repository's image manifests need, each blob once.
    pub fn stored_bytes(&self) -> u64 {
        let mut seen: HashSet<&Digest> = HashSet::new();
        self.entries
            .iter()
            .filter_map(|e| e.manifest.as_ref())
            .flat_map(|m| m.required_blobs())
            .filter(|d| seen.insert(&d.digest))
            .map(|d| d.size)
            .sum()
    }

    pub fn last_push(&self) -> Option<Millis> {
        self.entries.iter().map(|e| e.record.manifest.pushed_at).max()
    }
}

#[cfg(test)]
mod tests {
    use berth_registry::ManifestRecord;

    use super::*;

    fn record(content: &str, media_type: &str, tags: &[&str], pushed_at: Millis) -> ImageRecord {
        let digest = Digest::sha256_of(content.as_bytes());
        let subject = Manifest::parse(content.as_bytes(), Some(media_type)).unwrap().subject.map(|s| s.digest);
        ImageRecord {
            manifest: ManifestRecord {
                digest,
                media_type: media_type.into(),
                content: content.as_bytes().to_vec(),
                artifact_type: None,
                subject,
                annotations: None,
                image_size: 0,
                pushed_at,
                last_pulled_at: None,
                storage_class: Default::default(),
                last_archived_at: None,
                last_activated_at: None,
            },
            tags: tags.iter().map(|t| t.to_string()).collect(),
        }
    }

    fn image(layer: &str, size: u64) -> String {
        let config = Digest::sha256_of(b"config");
        let layer = Digest::sha256_of(layer.as_bytes());
        format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":10}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{layer}","size":{size}}}]}}"#
        )
    }

    #[test]
    fn indexes_children_and_referrers_are_linked_and_only_roots_are_top_level() {
        const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
        let (amd, arm) = (image("amd", 100), image("arm", 200));
        let (amd_digest, arm_digest) = (Digest::sha256_of(amd.as_bytes()), Digest::sha256_of(arm.as_bytes()));
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"mediaType":"{MANIFEST}","digest":"{amd_digest}","size":{},"platform":{{"os":"linux","architecture":"amd64"}}}},{{"mediaType":"{MANIFEST}","digest":"{arm_digest}","size":{},"platform":{{"os":"linux","architecture":"arm64","variant":"v8"}}}}]}}"#,
            amd.len(),
            arm.len()
        );
        let index_digest = Digest::sha256_of(index.as_bytes());
        let empty = Digest::sha256_of(b"{}");
        let signature = format!(
            r#"{{"schemaVersion":2,"mediaType":"{MANIFEST}","artifactType":"application/vnd.dev.cosign.artifact.sig.v1+json","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{empty}","size":2}},"layers":[],"subject":{{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"{index_digest}","size":{}}}}}"#,
            index.len()
        );
        let lone = image("lone", 50);
        let inventory = Inventory::from_records(vec![
            record(&amd, MANIFEST, &[], 1),
            record(&arm, MANIFEST, &[], 1),
            record(&index, "application/vnd.oci.image.index.v1+json", &["v1"], 2),
            record(&signature, MANIFEST, &[], 3),
            record(&lone, MANIFEST, &["old"], 0),
        ]);
        let at = |d: &Digest| inventory.get(d).unwrap();
        let idx = at(&index_digest);
        assert!(inventory.entries[idx].is_index());
        assert_eq!(inventory.entries[idx].children, vec![at(&amd_digest), at(&arm_digest)]);
        assert_eq!(inventory.entries[at(&amd_digest)].parents, vec![idx]);
        let sig = at(&Digest::sha256_of(signature.as_bytes()));
        assert_eq!(inventory.entries[idx].referrers, vec![sig]);
        assert_eq!(inventory.entries[sig].subject, Some(idx));
        let lone_at = at(&Digest::sha256_of(lone.as_bytes()));
        assert_eq!(inventory.top_level(), vec![idx, lone_at], "newest first; children and referrers hang below");
        assert_eq!(inventory.roots(), inventory.top_level());
        // A tagged child is an image of its own too (as `docker manifest create` leaves them).
        let tagged_child = Inventory::from_records(vec![
            record(&amd, MANIFEST, &["image_one_tag"], 1),
            record(&arm, MANIFEST, &[], 1),
            record(&index, "application/vnd.oci.image.index.v1+json", &["v1"], 2),
        ]);
        let (idx, amd_at) = (tagged_child.get(&index_digest).unwrap(), tagged_child.get(&amd_digest).unwrap());
        assert_eq!(tagged_child.top_level(), vec![idx, amd_at]);
        assert_eq!(tagged_child.roots(), vec![idx]);
        // Config (10, shared) + 100 + 200 + 50 + the empty config (2): each blob once.
        assert_eq!(inventory.stored_bytes(), 10 + 100 + 200 + 50 + 2);
        assert_eq!(inventory.last_push(), Some(3));
    }
}

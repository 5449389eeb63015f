//! Per-repository settings (ECR's repository configuration), stored as one JSON document so the
//! metadata backends need no schema change when the ECR plane grows.

use std::collections::BTreeSet;

use berth_meta::Millis;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::principals::PrincipalBindings;

/// ECR's resource-tag limit per repository.
pub const MAX_RESOURCE_TAGS: usize = 50;

/// ECR's four tag-mutability modes; the JSON spelling is the wire value (`IMMUTABLE_WITH_EXCLUSION`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TagMutability {
    #[default]
    Mutable,
    Immutable,
    ImmutableWithExclusion,
    MutableWithExclusion,
}

impl TagMutability {
    pub fn has_exclusions(self) -> bool {
        matches!(self, TagMutability::ImmutableWithExclusion | TagMutability::MutableWithExclusion)
    }

    /// ECR's spelling, for messages.
    pub fn as_wire(self) -> &'static str {
        match self {
            TagMutability::Mutable => "MUTABLE",
            TagMutability::Immutable => "IMMUTABLE",
            TagMutability::ImmutableWithExclusion => "IMMUTABLE_WITH_EXCLUSION",
            TagMutability::MutableWithExclusion => "MUTABLE_WITH_EXCLUSION",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TagMutabilityFilter {
    pub filter_type: String,
    pub filter: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum EncryptionType {
    #[default]
    #[serde(rename = "AES256")]
    Aes256,
    #[serde(rename = "KMS")]
    Kms,
    #[serde(rename = "KMS_DSSE")]
    KmsDsse,
}

/// The encryption configuration a repository was created with. The ECR API takes only AES256
/// (Berth has no KMS; encryption at rest is the storage backend's); KMS values an earlier
/// Berth recorded are still read and echoed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Encryption {
    pub encryption_type: EncryptionType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kms_key: Option<String>,
}

/// A resource tag (`Key`/`Value` on the ECR wire), kept in the order keys were first added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceTag {
    pub key: String,
    pub value: String,
}

/// What policies see of it (`aws:RequestTag/<key>`, `aws:ResourceTag/<key>`).
impl berth_iam::Tag for ResourceTag {
    fn key(&self) -> &str {
        &self.key
    }
    fn value(&self) -> &str {
        &self.value
    }
}

/// The resource tag that turns sparse indexes on (`true`) or off (`false`) for one repository,
/// settable with `aws ecr tag-resource` or at `create-repository`, overriding `--sparse-indexes`.
pub const SPARSE_INDEXES_TAG: &str = "berth:sparse-indexes";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RepositorySettings {
    pub image_tag_mutability: TagMutability,
    pub image_tag_mutability_exclusion_filters: Vec<TagMutabilityFilter>,
    /// ECR's deprecated per-repository scanning switch; recorded and echoed (Berth does not scan).
    pub scan_on_push: bool,
    pub encryption: Encryption,
    pub resource_tags: Vec<ResourceTag>,
    /// The lifecycle policy text exactly as put (ECR returns it verbatim).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifecycle_policy: Option<String>,
    /// When the lifecycle policy last ran (ECR's `lastEvaluatedAt`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifecycle_evaluated_at: Option<Millis>,
    /// The last lifecycle preview started; its results are computed when read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifecycle_preview: Option<LifecyclePreview>,
    /// The repository policy text exactly as set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository_policy: Option<String>,
    /// The users the repository policy named when it was set, each with its creation time
    /// (see `principals`).
    #[serde(default, skip_serializing_if = "PrincipalBindings::is_empty")]
    pub repository_policy_principals: PrincipalBindings,
    /// Fields this version does not know (a newer version wrote them), kept as they are so a
    /// write here does not drop them.
    #[serde(flatten)]
    pub unknown_fields: Map<String, Value>,
}

/// A stored settings document this version cannot read. Nothing falls back to defaults (no
/// policy, mutable tags): pushes and settings writes are refused, and authorization treats it as
/// an unenforceable repository policy, "deny all but the root's repair".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SettingsUnreadable(String);

/// A lifecycle preview: the policy it tries and when it started. Reading it evaluates that
/// policy over the images pushed before the start, at the start time, so every page of the
/// results agrees and no result set is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LifecyclePreview {
    pub policy_text: String,
    pub started_at: Millis,
}

impl RepositorySettings {
    /// Reads a stored document. Fields a newer version added load as [`Self::unknown_fields`];
    /// a document that does not parse is [`SettingsUnreadable`], never the defaults.
    pub fn from_json(json: &str) -> Result<RepositorySettings, SettingsUnreadable> {
        serde_json::from_str(json).map_err(|e| SettingsUnreadable(e.to_string()))
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("settings serialize")
    }

    /// The fields (by their names in the document) whose values differ in `after`, sorted.
    pub fn changed_fields(&self, after: &RepositorySettings) -> Vec<String> {
        let (before, after) = (self.to_object(), after.to_object());
        let names: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
        names.into_iter().filter(|name| before.get(*name) != after.get(*name)).cloned().collect()
    }

    fn to_object(&self) -> Map<String, Value> {
        match serde_json::to_value(self).expect("settings serialize") {
            Value::Object(fields) => fields,
            other => unreachable!("settings serialize as an object, not {other}"),
        }
    }

    /// Whether an index pushed here may list children the repository does not hold: the
    /// [`SPARSE_INDEXES_TAG`] resource tag (`true`/`false`) when set, else `server_default`.
    pub fn allows_sparse_indexes(&self, server_default: bool) -> bool {
        match self.resource_tags.iter().rev().find(|t| t.key == SPARSE_INDEXES_TAG) {
            Some(tag) if tag.value.eq_ignore_ascii_case("true") => true,
            Some(tag) if tag.value.eq_ignore_ascii_case("false") => false,
            _ => server_default,
        }
    }

    /// Whether pushing `tag` may not move it once it exists.
    pub fn tag_is_immutable(&self, tag: &str) -> bool {
        let excluded = || self.image_tag_mutability_exclusion_filters.iter().any(|f| wildcard_match(&f.filter, tag));
        match self.image_tag_mutability {
            TagMutability::Immutable => true,
            TagMutability::ImmutableWithExclusion => !excluded(),
            TagMutability::MutableWithExclusion => excluded(),
            TagMutability::Mutable => false,
        }
    }

    /// Adds or overwrites `tags` (later duplicates win); `false`, and nothing changed, if the
    /// repository would end up with more than [`MAX_RESOURCE_TAGS`].
    pub fn merge_resource_tags(&mut self, tags: &[ResourceTag]) -> bool {
        let mut merged = self.resource_tags.clone();
        for tag in tags {
            match merged.iter_mut().find(|t| t.key == tag.key) {
                Some(existing) => existing.value = tag.value.clone(),
                None => merged.push(tag.clone()),
            }
        }
        if merged.len() > MAX_RESOURCE_TAGS {
            return false;
        }
        self.resource_tags = merged;
        true
    }

    /// Removes the tags with these keys; absent keys are ignored, as in ECR.
    pub fn remove_resource_tags(&mut self, keys: &[String]) {
        self.resource_tags.retain(|t| !keys.contains(&t.key));
    }
}

/// ECR's tag filters: `*` matches any run of characters, everything else is literal. Greedy with
/// one backtrack point: linear in practice, no recursion.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let (pattern, text) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while ti < text.len() {
        if pi < pattern.len() && pattern[pi] == b'*' {
            backtrack = Some((pi, ti));
            pi += 1;
        } else if pi < pattern.len() && pattern[pi] == text[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((bp, bt)) = backtrack {
            pi = bp + 1;
            ti = bt + 1;
            backtrack = Some((bp, bt + 1));
        } else {
            return false;
        }
    }
    pattern[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match("v*", "v1.2"));
        assert!(wildcard_match("sha256-*.sig", "sha256-abc.sig"));
        assert!(!wildcard_match("sha256-*.sig", "sha256-abc.att"));
        assert!(wildcard_match("a*b*c", "axxbyyc"));
        assert!(!wildcard_match("abc", "abcd"));
    }

    #[test]
    fn mutability_modes() {
        let mut s = RepositorySettings::default();
        assert!(!s.tag_is_immutable("latest"));
        s.image_tag_mutability = TagMutability::Immutable;
        assert!(s.tag_is_immutable("latest"));
        s.image_tag_mutability = TagMutability::ImmutableWithExclusion;
        s.image_tag_mutability_exclusion_filters =
            vec![TagMutabilityFilter { filter_type: "WILDCARD".into(), filter: "dev-*".into() }];
        assert!(s.tag_is_immutable("v1"));
        assert!(!s.tag_is_immutable("dev-1"));
        s.image_tag_mutability = TagMutability::MutableWithExclusion;
        assert!(!s.tag_is_immutable("v1"));
        assert!(s.tag_is_immutable("dev-1"));
        assert!(RepositorySettings::from_json("{not json").is_err());
        assert!(RepositorySettings::from_json(r#"{"imageTagMutability":"SOMETIMES"}"#).is_err());
    }

    #[test]
    fn documents_of_the_first_version_still_load() {
        let old = r#"{"imageTagMutability":"IMMUTABLE_WITH_EXCLUSION","imageTagMutabilityExclusionFilters":[{"filterType":"WILDCARD","filter":"dev-*"}]}"#;
        let s = RepositorySettings::from_json(old).unwrap();
        assert_eq!(s.image_tag_mutability, TagMutability::ImmutableWithExclusion);
        assert_eq!(s.encryption.encryption_type, EncryptionType::Aes256);
        assert!(s.resource_tags.is_empty());
        let round = RepositorySettings::from_json(&s.to_json()).unwrap();
        assert_eq!(round, s);
        assert!(s.to_json().contains(r#""encryptionType":"AES256""#), "{}", s.to_json());
    }

    #[test]
    fn fields_of_a_newer_version_survive_a_write_and_count_as_changes() {
        let newer = r#"{"imageTagMutability":"IMMUTABLE","replication":{"to":["eu"]},"scanOnPush":true}"#;
        let mut s = RepositorySettings::from_json(newer).unwrap();
        assert_eq!(s.image_tag_mutability, TagMutability::Immutable);
        let before = s.clone();
        s.repository_policy = Some("{}".into());
        let written: Value = serde_json::from_str(&s.to_json()).unwrap();
        assert_eq!(written["replication"], serde_json::json!({"to":["eu"]}));
        assert_eq!(before.changed_fields(&s), ["repositoryPolicy"]);
        s.unknown_fields.clear();
        assert_eq!(before.changed_fields(&s), ["replication", "repositoryPolicy"]);
    }

    #[test]
    fn resource_tags_merge_and_stay_within_the_limit() {
        let tag = |k: &str, v: &str| ResourceTag { key: k.into(), value: v.into() };
        let mut s = RepositorySettings::default();
        assert!(s.merge_resource_tags(&[tag("team", "web"), tag("env", "dev")]));
        assert!(s.merge_resource_tags(&[tag("env", "prod"), tag("cost", "42")]));
        assert_eq!(s.resource_tags, vec![tag("team", "web"), tag("env", "prod"), tag("cost", "42")]);
        let many: Vec<ResourceTag> = (0..48).map(|i| tag(&format!("k{i}"), "v")).collect();
        assert!(!s.merge_resource_tags(&many), "3 + 48 > 50");
        assert_eq!(s.resource_tags.len(), 3, "a refused merge changes nothing");
        assert!(s.merge_resource_tags(&many[..47]));
        assert_eq!(s.resource_tags.len(), MAX_RESOURCE_TAGS);
        s.remove_resource_tags(&["team".into(), "absent".into()]);
        assert_eq!(s.resource_tags.len(), MAX_RESOURCE_TAGS - 1);
        assert!(!s.resource_tags.iter().any(|t| t.key == "team"));
    }
}

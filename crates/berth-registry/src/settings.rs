//! Per-repository settings (ECR's repository configuration), stored as one JSON document so the
//! metadata backends need no schema change when the ECR plane grows.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TagMutabilityFilter {
    pub filter_type: String,
    pub filter: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RepositorySettings {
    /// MUTABLE, IMMUTABLE, MUTABLE_WITH_EXCLUSION or IMMUTABLE_WITH_EXCLUSION.
    pub image_tag_mutability: String,
    pub image_tag_mutability_exclusion_filters: Vec<TagMutabilityFilter>,
}

impl Default for RepositorySettings {
    fn default() -> Self {
        RepositorySettings { image_tag_mutability: "MUTABLE".into(), image_tag_mutability_exclusion_filters: vec![] }
    }
}

impl RepositorySettings {
    /// Settings written by an older or newer version still load: unknown fields are ignored and
    /// an unreadable document falls back to the defaults (mutable), logged.
    pub fn from_json(json: &str) -> RepositorySettings {
        serde_json::from_str(json).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "unreadable repository settings; using defaults");
            RepositorySettings::default()
        })
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("settings serialize")
    }

    /// Whether pushing `tag` may not move it once it exists.
    pub fn tag_is_immutable(&self, tag: &str) -> bool {
        let excluded = || self.image_tag_mutability_exclusion_filters.iter().any(|f| wildcard_match(&f.filter, tag));
        match self.image_tag_mutability.as_str() {
            "IMMUTABLE" => true,
            "IMMUTABLE_WITH_EXCLUSION" => !excluded(),
            "MUTABLE_WITH_EXCLUSION" => excluded(),
            _ => false,
        }
    }
}

/// ECR's tag filters: `*` matches any run of characters, everything else is literal.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            backtrack = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
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
    p[pi..].iter().all(|&c| c == b'*')
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
        s.image_tag_mutability = "IMMUTABLE".into();
        assert!(s.tag_is_immutable("latest"));
        s.image_tag_mutability = "IMMUTABLE_WITH_EXCLUSION".into();
        s.image_tag_mutability_exclusion_filters = vec![TagMutabilityFilter { filter_type: "WILDCARD".into(), filter: "dev-*".into() }];
        assert!(s.tag_is_immutable("v1"));
        assert!(!s.tag_is_immutable("dev-1"));
        s.image_tag_mutability = "MUTABLE_WITH_EXCLUSION".into();
        assert!(!s.tag_is_immutable("v1"));
        assert!(s.tag_is_immutable("dev-1"));
        assert_eq!(RepositorySettings::from_json("{not json"), RepositorySettings::default());
    }
}

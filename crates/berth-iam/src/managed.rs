//! AWS's managed policies for ECR, kept as data, verbatim from AWS's managed policy reference
//! (`arn:aws:iam::aws:policy/<name>`, the default versions: FullAccess v3, PowerUser v3,
//! ReadOnly v3, PullOnly v1), and the two built-in policies the server grants anonymous callers.
//!
//! FullAccess's statements for `cloudtrail:LookupEvents` and `iam:CreateServiceLinkedRole` are
//! kept too: they parse, and they match no action Berth ever asks about, so they grant nothing.

use crate::policy::{Policy, SizeLimit};

pub const FULL_ACCESS: &str = "AmazonEC2ContainerRegistryFullAccess";
pub const POWER_USER: &str = "AmazonEC2ContainerRegistryPowerUser";
pub const READ_ONLY: &str = "AmazonEC2ContainerRegistryReadOnly";
pub const PULL_ONLY: &str = "AmazonEC2ContainerRegistryPullOnly";

/// Every managed policy: (name, document).
pub const ALL: [(&str, &str); 4] = [
    (FULL_ACCESS, include_str!("managed/AmazonEC2ContainerRegistryFullAccess.json")),
    (POWER_USER, include_str!("managed/AmazonEC2ContainerRegistryPowerUser.json")),
    (READ_ONLY, include_str!("managed/AmazonEC2ContainerRegistryReadOnly.json")),
    (PULL_ONLY, include_str!("managed/AmazonEC2ContainerRegistryPullOnly.json")),
];

/// The document of managed policy `name`, given by name or by its ARN
/// (`arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly`).
pub fn by_name(name: &str) -> Option<&'static str> {
    let name = name.strip_prefix("arn:aws:iam::aws:policy/").unwrap_or(name);
    ALL.iter().find(|(n, _)| *n == name).map(|(_, document)| *document)
}

/// What `--anonymous-pull` lets callers without credentials do: what pulling needs on `/v2/`
/// (manifests and referrers, blobs, blob existence checks) and tag lists — exactly what Berth
/// allowed them before identity policies existed, so `skopeo list-tags`/`crane ls` keep working.
/// Repositories only (`repository/*`): not `_catalog` or any registry-wide call.
pub const ANONYMOUS_PULL: &str = include_str!("managed/BerthAnonymousPull.json");

/// What `--no-auth` lets everyone do: everything (that mode is refused off loopback).
pub const NO_AUTH: &str = include_str!("managed/BerthNoAuth.json");

/// [`ANONYMOUS_PULL`], compiled.
pub fn anonymous_pull() -> Policy {
    builtin(ANONYMOUS_PULL)
}

/// [`NO_AUTH`], compiled.
pub fn no_auth() -> Policy {
    builtin(NO_AUTH)
}

fn builtin(document: &str) -> Policy {
    // A constant document, parsed by the tests below: failing here is a build defect.
    Policy::parse_identity(document, SizeLimit::MANAGED_POLICY).expect("built-in policies parse")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_managed_and_builtin_policy_parses() {
        for (name, document) in ALL {
            Policy::parse_identity(document, SizeLimit::MANAGED_POLICY).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(by_name(name), Some(document));
            assert_eq!(by_name(&format!("arn:aws:iam::aws:policy/{name}")), Some(document));
        }
        assert_eq!(by_name("AmazonEC2ContainerRegistryreadonly"), None);
        assert!(!anonymous_pull().varies_per_request());
        assert!(!no_auth().varies_per_request());
    }
}

//! The lifecycle-policy grammar and its evaluator.

use std::collections::HashMap;

use berth_registry::lifecycle::{LifecycleImage, LifecyclePolicy, evaluate};
use berth_spec::Digest;

const DAY: i64 = 24 * 3600 * 1000;
const NOW: i64 = 1_767_225_600_000;

fn digest(n: u8) -> Digest {
    Digest::sha256_of(&[n])
}

fn image(n: u8, tags: &[&str], age_days: i64, children: &[u8], subject: Option<u8>) -> LifecycleImage {
    LifecycleImage {
        digest: digest(n),
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        pushed_at: NOW - age_days * DAY,
        children: children.iter().map(|c| digest(*c)).collect(),
        subject: subject.map(digest),
        archived: false,
    }
}

/// A repository with what the evaluator treats specially: tagged and untagged images of many
/// ages, a multi-arch index with untagged children, a child with a tag of its own, a child two
/// indexes share, referrers (one tagged) and a referrer of a referrer.
fn repository() -> Vec<LifecycleImage> {
    vec![
        image(1, &["latest", "v1.2.3"], 0, &[], None),
        image(2, &["v1.2.2"], 3, &[], None),
        image(3, &["prod-1", "release"], 40, &[], None),
        image(4, &[], 400, &[], None),
        image(5, &[], 2, &[], None),
        image(10, &["multi"], 30, &[11, 12, 13], None),
        image(11, &[], 30, &[], None),
        image(12, &["arm64-only"], 30, &[], None),
        image(13, &[], 30, &[], None),
        image(14, &["other-multi"], 90, &[13], None),
        image(20, &[], 10, &[], Some(3)),
        image(21, &["sig"], 10, &[], Some(10)),
        image(22, &[], 1, &[], Some(20)),
        image(23, &[], 200, &[], Some(99)),
    ]
}

/// The input as a policy text. Of a policy that parses, the expiries over a sample repository
/// are distinct images of it, keep images whole as documented (nothing a surviving index lists
/// expires; a referrer goes with its subject) and come in a deletable order (an index before
/// what it lists).
pub fn lifecycle(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(policy) = LifecyclePolicy::parse(text) else { return };
    let images = repository();
    let expiries = evaluate(&policy, &images, NOW);

    let mut order = HashMap::new();
    for (position, expiry) in expiries.iter().enumerate() {
        assert!(images.iter().any(|i| i.digest == expiry.digest), "{} is not in the repository", expiry.digest);
        assert!(order.insert(&expiry.digest, position).is_none(), "{} expires twice", expiry.digest);
    }
    for image in &images {
        let expired = order.get(&image.digest);
        for child in &image.children {
            match (expired, order.get(child)) {
                (None, Some(_)) => panic!("{child} expired though the surviving index {} lists it", image.digest),
                (Some(index), Some(child_at)) => assert!(index < child_at, "{child} would be deleted before its index"),
                _ => {}
            }
        }
        if let Some(subject) = &image.subject
            && order.contains_key(subject)
        {
            assert!(expired.is_some(), "{} outlived its subject {subject}", image.digest);
        }
    }
}

//! The lifecycle-policy grammar and its evaluator.

use std::collections::HashMap;

use berth_registry::lifecycle::{Kept, KeptBecause, LifecycleImage, LifecyclePolicy, explain};
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
        // Every third image was pulled at some point, every fifth restored from the archive.
        last_pulled_at: n.is_multiple_of(3).then(|| NOW - i64::from(n) * DAY),
        archived: false,
        last_archived_at: None,
        last_activated_at: n.is_multiple_of(5).then_some(NOW - 2 * DAY),
    }
}

fn archived(image: LifecycleImage, days: i64) -> LifecycleImage {
    LifecycleImage { archived: true, last_archived_at: Some(NOW - days * DAY), ..image }
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
        archived(image(30, &["archived-multi"], 500, &[31], None), 200),
        archived(image(31, &[], 500, &[], None), 200),
        archived(image(32, &["v0.9"], 600, &[], None), 95),
        archived(image(33, &[], 600, &[], None), 400),
    ]
}

/// The input as a policy text. Of a policy that parses, the expiries over a sample repository
/// are distinct images of it, keep images whole as documented (nothing a surviving index lists
/// expires; a referrer goes with its subject unless a rule of its own keeps it) and come in a
/// deletable order (an index before what it lists). What moves to the archive is STANDARD, survives, never splits an index that
/// stays STANDARD, and moves an index before what it lists.
pub fn lifecycle(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(policy) = LifecyclePolicy::parse(text) else { return };
    let images = repository();
    let evaluation = explain(&policy, &images, NOW);
    let expiries = evaluation.expired;

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
            && expired.is_none()
        {
            let own = |k: &&Kept| k.digest == image.digest && k.because == KeptBecause::NotSelected;
            let kept_by_a_rule = evaluation.kept.iter().any(|k| own(&k))
                || evaluation.transitioned.iter().any(|v| v.digest == image.digest);
            assert!(kept_by_a_rule, "{} outlived its subject {subject} with no rule keeping it", image.digest);
        }
    }

    let moved: HashMap<_, _> = evaluation.transitioned.iter().enumerate().map(|(at, v)| (&v.digest, at)).collect();
    assert_eq!(moved.len(), evaluation.transitioned.len(), "an image moves twice");
    for image in &images {
        let moves = moved.get(&image.digest);
        if moves.is_some() {
            assert!(!image.archived, "{} is archived already", image.digest);
            assert!(!order.contains_key(&image.digest), "{} both expires and moves", image.digest);
        }
        for child in &image.children {
            match (moves, moved.get(child)) {
                (None, Some(_)) if !image.archived && !order.contains_key(&image.digest) => {
                    panic!("{child} moved out of the STANDARD index {} that stays", image.digest)
                }
                (Some(index), Some(child_at)) => assert!(index < child_at, "{child} would move before its index"),
                _ => {}
            }
        }
    }
}

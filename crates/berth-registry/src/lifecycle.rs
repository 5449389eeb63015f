//! ECR lifecycle policies: the policy grammar with ECR's validation rules, and one pure
//! evaluator that both the preview and the periodic expiry use.
//!
//! ECR's documented semantics, per rule in ascending `rulePriority`: the rule selects the images
//! matching its tag requirements; an image matched by an earlier rule cannot be expired by a
//! later one, but still counts towards `imageCountMoreThan` (which keeps the newest N by push
//! time); `sinceImagePushed` expires images older than N days.
//!
//! The archive tier adds a second action and two count types: `transition` moves what a rule
//! selects to the archive storage class (`sinceImagePulled`: not pulled for N days, only with
//! `transition`), and rules with `"storageClass": "archive"` judge archived images
//! (`sinceImageTransitioned`: archived for N ≥ 90 days, only with `expire`). A rule judges the
//! images of its own storage class only, so the tag-status constraints (one untagged rule, `any`
//! last) hold per storage class, as ECR's own documented two-rule example needs.
//!
//! Where Berth deliberately differs from ECR, multi-arch images and referrers stay whole:
//! - untagged children of an index and untagged referrers of a subject in the repository are not
//!   judged by the rules (they are not orphans); they live while some parent lives;
//! - nothing a surviving index lists is ever expired, even if a rule selected it;
//! - when an index expires, its children go with it unless another surviving index lists them
//!   (or they carry tags of their own that no rule expired);
//! - referrers go with their subject, tagged or not;
//! - except what a rule keeps: a tagged referrer a rule matches is judged by that rule alone, and
//!   the untagged images an expiry leaves behind are judged again as the untagged images they
//!   become; one a rule matches and does not expire stays (ECR: "an image that matches the
//!   tagging requirements of a rule cannot be expired by a rule with a lower priority").

use std::collections::{HashMap, HashSet};

use berth_meta::Millis;
use berth_spec::Digest;
use serde_json::{Map, Value};

use crate::settings::wildcard_match;

/// ECR's limits on a policy.
pub const MAX_RULES: usize = 50;
pub const MAX_PATTERN_WILDCARDS: usize = 4;
pub const MIN_POLICY_LENGTH: usize = 100;
pub const MAX_POLICY_LENGTH: usize = 30_720;

const DAY_MILLIS: i64 = 24 * 3600 * 1000;

/// A validated lifecycle policy, rules in evaluation order (ascending priority).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecyclePolicy {
    rules: Vec<Rule>,
}

/// ECR refuses to expire an image that has been archived for fewer days than this.
pub const MIN_ARCHIVED_DAYS: u64 = 90;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    priority: u32,
    tags: TagSelection,
    /// The storage class of the images the rule judges.
    archived: bool,
    count: Count,
    action: RuleAction,
}

/// What a rule does to the images it selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuleAction {
    Expire,
    /// Move to the archive storage class (ECR's only `targetStorageClass`).
    Transition,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TagSelection {
    /// An image matches when every prefix (pattern) is matched by at least one of its tags.
    Tagged {
        prefixes: Vec<String>,
        patterns: Vec<String>,
    },
    Untagged,
    Any,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Count {
    MoreThan(u64),
    SincePushedDays(u64),
    /// Since the last pull, or the restore or push when not pulled since.
    SincePulledDays(u64),
    SinceArchivedDays(u64),
}

/// What the evaluator needs to know about one image of the repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleImage {
    pub digest: Digest,
    pub tags: Vec<String>,
    pub pushed_at: Millis,
    /// The manifests an index lists (empty for an image manifest).
    pub children: Vec<Digest>,
    /// The manifest this one refers to (OCI 1.1 `subject`).
    pub subject: Option<Digest>,
    pub last_pulled_at: Option<Millis>,
    /// In the archive storage class: only rules with `"storageClass": "archive"` judge it, but
    /// it stays in every rule's picture, so what it lists is kept.
    pub archived: bool,
    pub last_archived_at: Option<Millis>,
    /// When it was last restored from the archive.
    pub last_activated_at: Option<Millis>,
}

impl LifecycleImage {
    /// What `sinceImagePulled` counts from: the last pull, or the restore or push when the
    /// image was not pulled since (ECR's documented fallbacks).
    fn last_used_at(&self) -> Millis {
        [self.last_pulled_at, self.last_activated_at].into_iter().flatten().fold(self.pushed_at, Millis::max)
    }
}

/// One image a policy expires or archives, and the priority of the rule that caused it (for an
/// image that goes with its index or subject, the rule that expired that parent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub digest: Digest,
    pub rule_priority: u32,
}

/// Why a policy text is refused; the text is the detail after ECR's
/// "Lifecycle policy validation failure: ".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(pub String);

fn fail<T>(detail: impl Into<String>) -> Result<T, PolicyError> {
    Err(PolicyError(detail.into()))
}

fn only_known(object: &Map<String, Value>, at: &str, known: &[&str]) -> Result<(), PolicyError> {
    let unknown: Vec<&str> = object.keys().map(String::as_str).filter(|k| !known.contains(k)).collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        fail(format!(
            "object instance at {at} has properties which are not allowed by the schema: {unknown:?} (allowed: {known:?})"
        ))
    }
}

fn positive_integer(value: Option<&Value>, at: &str) -> Result<u64, PolicyError> {
    match value {
        None => fail(format!("{at} is required")),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(0) => {
                fail(format!("{at}: numeric instance is lower than the required minimum (minimum: 1, found: 0)"))
            }
            Some(n) => Ok(n),
            None if n.as_i64().is_some() => {
                fail(format!("{at}: numeric instance is lower than the required minimum (minimum: 1, found: {n})"))
            }
            None => fail(format!("{at}: instance type (number {n}) does not match the required type integer")),
        },
        Some(other) => {
            fail(format!("{at}: instance type ({}) does not match the required type integer", type_name(other)))
        }
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn one_of<'v>(value: Option<&'v Value>, at: &str, allowed: &[&str]) -> Result<&'v str, PolicyError> {
    match value {
        None => fail(format!("{at} is required (one of {allowed:?})")),
        Some(Value::String(s)) if allowed.contains(&s.as_str()) => Ok(s),
        Some(Value::String(s)) => {
            fail(format!("{at}: instance value ({s}) not found in enum (possible values: {allowed:?})"))
        }
        Some(other) => {
            fail(format!("{at}: instance type ({}) does not match the required type string", type_name(other)))
        }
    }
}

fn string_list(value: &Value, at: &str) -> Result<Vec<String>, PolicyError> {
    let Value::Array(items) = value else {
        return fail(format!("{at}: instance type ({}) does not match the required type array", type_name(value)));
    };
    if items.is_empty() {
        return fail(format!("{at}: array is too short: must have at least 1 element"));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::String(s) if !s.is_empty() => Ok(s.clone()),
            Value::String(_) => fail(format!("{at}[{i}] must not be empty")),
            other => {
                fail(format!("{at}[{i}]: instance type ({}) does not match the required type string", type_name(other)))
            }
        })
        .collect()
}

impl LifecyclePolicy {
    /// Parses and validates a policy text as ECR does.
    pub fn parse(text: &str) -> Result<LifecyclePolicy, PolicyError> {
        let document: Value =
            serde_json::from_str(text).map_err(|e| PolicyError(format!("the policy is not valid JSON: {e}")))?;
        let Value::Object(document) = document else {
            return fail(format!("instance type ({}) does not match the required type object", type_name(&document)));
        };
        only_known(&document, "/", &["rules"])?;
        let Some(rules) = document.get("rules") else {
            return fail(r#"object has missing required properties (["rules"])"#);
        };
        let Value::Array(rules) = rules else {
            return fail(format!(
                "/rules: instance type ({}) does not match the required type array",
                type_name(rules)
            ));
        };
        if rules.is_empty() {
            return fail("/rules: array is too short: must have at least 1 element");
        }
        if rules.len() > MAX_RULES {
            return fail(format!("/rules: a policy can have at most {MAX_RULES} rules, found {}", rules.len()));
        }
        let mut parsed: Vec<Rule> =
            rules.iter().enumerate().map(|(i, rule)| Rule::parse(rule, i)).collect::<Result<_, _>>()?;
        parsed.sort_by_key(|r| r.priority);
        if let Some(pair) = parsed.windows(2).find(|pair| pair[0].priority == pair[1].priority) {
            return fail(format!("rulePriority must be unique: {} is used by more than one rule", pair[0].priority));
        }
        for archived in [false, true] {
            let class: Vec<&Rule> = parsed.iter().filter(|r| r.archived == archived).collect();
            let of_class = if archived { " of storageClass 'archive'" } else { "" };
            if class.iter().filter(|r| r.tags == TagSelection::Untagged).count() > 1 {
                return fail(format!("only one rule{of_class} is allowed to select untagged images"));
            }
            if let Some(any) = class.iter().position(|r| r.tags == TagSelection::Any)
                && any != class.len() - 1
            {
                return fail(format!(
                    "the rule with tagStatus 'any' (rulePriority {}) must have the highest rulePriority{of_class}",
                    class[any].priority
                ));
            }
        }
        Ok(LifecyclePolicy { rules: parsed })
    }
}

impl Rule {
    fn parse(rule: &Value, index: usize) -> Result<Rule, PolicyError> {
        let at = format!("/rules/{index}");
        let Value::Object(rule) = rule else {
            return fail(format!("{at}: instance type ({}) does not match the required type object", type_name(rule)));
        };
        only_known(rule, &at, &["rulePriority", "description", "selection", "action"])?;
        let priority = positive_integer(rule.get("rulePriority"), &format!("{at}/rulePriority"))?;
        let priority = u32::try_from(priority)
            .map_err(|_| PolicyError(format!("{at}/rulePriority: {priority} is larger than {}", u32::MAX)))?;
        if let Some(description) = rule.get("description")
            && !description.is_string()
        {
            return fail(format!(
                "{at}/description: instance type ({}) does not match the required type string",
                type_name(description)
            ));
        }
        let action_at = format!("{at}/action");
        let Some(Value::Object(action)) = rule.get("action") else {
            return fail(format!("{action_at} is required and must be an object like {{\"type\": \"expire\"}}"));
        };
        only_known(action, &action_at, &["type", "targetStorageClass"])?;
        let action_type = one_of(action.get("type"), &format!("{action_at}/type"), &["expire", "transition"])?;
        let action_kind = if action_type == "transition" {
            one_of(action.get("targetStorageClass"), &format!("{action_at}/targetStorageClass"), &["archive"])?;
            RuleAction::Transition
        } else {
            if action.contains_key("targetStorageClass") {
                return fail(format!("{action_at}: targetStorageClass is only allowed with type 'transition'"));
            }
            RuleAction::Expire
        };

        let selection_at = format!("{at}/selection");
        let Some(Value::Object(selection)) = rule.get("selection") else {
            return fail(format!("{selection_at} is required and must be an object"));
        };
        only_known(
            selection,
            &selection_at,
            &["tagStatus", "tagPrefixList", "tagPatternList", "storageClass", "countType", "countUnit", "countNumber"],
        )?;
        let status =
            one_of(selection.get("tagStatus"), &format!("{selection_at}/tagStatus"), &["any", "tagged", "untagged"])?;
        let prefixes = selection
            .get("tagPrefixList")
            .map(|v| string_list(v, &format!("{selection_at}/tagPrefixList")))
            .transpose()?;
        let patterns = selection
            .get("tagPatternList")
            .map(|v| string_list(v, &format!("{selection_at}/tagPatternList")))
            .transpose()?;
        let tags = match status {
            "tagged" => match (prefixes, patterns) {
                (Some(_), Some(_)) => {
                    return fail(format!("{selection_at}: tagPrefixList and tagPatternList cannot both be specified"));
                }
                (None, None) => {
                    return fail(format!(
                        "{selection_at}: tagStatus 'tagged' requires tagPrefixList or tagPatternList"
                    ));
                }
                (Some(prefixes), None) => {
                    if let Some(p) = prefixes.iter().find(|p| p.contains('*')) {
                        return fail(format!(
                            "{selection_at}/tagPrefixList: '{p}' contains '*'; wildcards are only allowed in tagPatternList"
                        ));
                    }
                    TagSelection::Tagged { prefixes, patterns: vec![] }
                }
                (None, Some(patterns)) => {
                    if let Some(p) = patterns.iter().find(|p| p.matches('*').count() > MAX_PATTERN_WILDCARDS) {
                        return fail(format!(
                            "{selection_at}/tagPatternList: '{p}' has more than {MAX_PATTERN_WILDCARDS} wildcards ('*')"
                        ));
                    }
                    TagSelection::Tagged { prefixes: vec![], patterns }
                }
            },
            other => {
                if prefixes.is_some() || patterns.is_some() {
                    return fail(format!(
                        "{selection_at}: tagPrefixList and tagPatternList are only allowed with tagStatus 'tagged', not '{other}'"
                    ));
                }
                if other == "any" { TagSelection::Any } else { TagSelection::Untagged }
            }
        };
        let count_type = one_of(
            selection.get("countType"),
            &format!("{selection_at}/countType"),
            &["imageCountMoreThan", "sinceImagePushed", "sinceImagePulled", "sinceImageTransitioned"],
        )?;
        let number = positive_integer(selection.get("countNumber"), &format!("{selection_at}/countNumber"))?;
        let count = if count_type == "imageCountMoreThan" {
            if selection.contains_key("countUnit") {
                return fail(format!("{selection_at}: countUnit is only allowed with the countTypes 'since…'"));
            }
            Count::MoreThan(number)
        } else {
            one_of(selection.get("countUnit"), &format!("{selection_at}/countUnit"), &["days"])?;
            match count_type {
                "sinceImagePushed" => Count::SincePushedDays(number),
                "sinceImagePulled" => Count::SincePulledDays(number),
                _ => Count::SinceArchivedDays(number),
            }
        };
        let archived = match selection.get("storageClass") {
            None => false,
            class => one_of(class, &format!("{selection_at}/storageClass"), &["standard", "archive"])? == "archive",
        };
        match count {
            Count::SinceArchivedDays(_) if !archived => {
                return fail(format!(
                    "{selection_at}: countType 'sinceImageTransitioned' requires storageClass 'archive'"
                ));
            }
            Count::SinceArchivedDays(_) if action_kind != RuleAction::Expire => {
                return fail(format!(
                    "{selection_at}: countType 'sinceImageTransitioned' is only allowed with the action 'expire'"
                ));
            }
            Count::SinceArchivedDays(days) if days < MIN_ARCHIVED_DAYS => {
                return fail(format!(
                    "{selection_at}/countNumber: archived images can only expire after at least {MIN_ARCHIVED_DAYS} days in the archive, found {days}"
                ));
            }
            Count::SinceArchivedDays(_) => {}
            _ if archived => {
                return fail(format!(
                    "{selection_at}: storageClass 'archive' is only allowed with countType 'sinceImageTransitioned'"
                ));
            }
            Count::SincePulledDays(_) if action_kind == RuleAction::Expire => {
                return fail(format!(
                    "{selection_at}: countType 'sinceImagePulled' is only allowed with the action 'transition'"
                ));
            }
            _ => {}
        }
        Ok(Rule { priority, tags, archived, count, action: action_kind })
    }

    fn selects(&self, tags: &[String]) -> bool {
        match &self.tags {
            TagSelection::Any => true,
            TagSelection::Untagged => tags.is_empty(),
            TagSelection::Tagged { prefixes, patterns } => {
                !tags.is_empty()
                    && prefixes.iter().all(|p| tags.iter().any(|t| t.starts_with(p.as_str())))
                    && patterns.iter().all(|p| tags.iter().any(|t| wildcard_match(p, t)))
            }
        }
    }
}

/// Why an image a policy does not expire stays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeptBecause {
    /// Judged on its own and no rule expires it.
    NotSelected,
    /// An index that stays lists it.
    ListedBy(Digest),
    /// An untagged referrer whose subject stays.
    ReferrerOf(Digest),
}

/// One image a policy keeps: why, and the rule that selected it when a parent overruled that rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    pub digest: Digest,
    pub because: KeptBecause,
    pub selected_by: Option<u32>,
}

/// Everything [`explain`] found: what expires (in deletion order), what moves to the archive
/// (an index before what it lists), and why the rest stays as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evaluation {
    pub expired: Vec<Verdict>,
    pub transitioned: Vec<Verdict>,
    pub kept: Vec<Kept>,
}

impl Evaluation {
    /// What a run does, in the order it must: every expiry, then every transition.
    pub fn into_actions(self) -> impl Iterator<Item = (Verdict, RuleAction)> {
        (self.expired.into_iter().map(|v| (v, RuleAction::Expire)))
            .chain(self.transitioned.into_iter().map(|v| (v, RuleAction::Transition)))
    }
}

/// The images `policy` expires among `images` (one repository) at `now`, in an order in which
/// they can be deleted: an index before the manifests it lists.
pub fn evaluate(policy: &LifecyclePolicy, images: &[LifecycleImage], now: Millis) -> Vec<Verdict> {
    explain(policy, images, now).expired
}

/// What `policy` does to every image of `images` at `now`: what the periodic run applies, the
/// preview reports and the console draws on an image list.
pub fn explain(policy: &LifecyclePolicy, images: &[LifecycleImage], now: Millis) -> Evaluation {
    let position: HashMap<&Digest, usize> = images.iter().enumerate().map(|(i, image)| (&image.digest, i)).collect();
    // Edges within the repository: parent -> dependants (index -> child, subject -> referrer).
    let mut listed_by: Vec<Vec<usize>> = vec![vec![]; images.len()];
    let mut referrers: Vec<Vec<usize>> = vec![vec![]; images.len()];
    for (i, image) in images.iter().enumerate() {
        for child in image.children.iter().filter_map(|d| position.get(d)) {
            listed_by[*child].push(i);
        }
        if let Some(&subject) = image.subject.as_ref().and_then(|d| position.get(d)) {
            referrers[subject].push(i);
        }
    }
    let subject_of = |i: usize| images[i].subject.as_ref().and_then(|d| position.get(d)).copied();
    // Untagged images that belong to a parent here are not judged on their own.
    let judged: Vec<bool> = (0..images.len())
        .map(|i| !(images[i].tags.is_empty() && (!listed_by[i].is_empty() || subject_of(i).is_some())))
        .collect();

    let mut judged = judged;
    let (mut selected, mut claimed) = select(policy, images, &judged, now);
    let is_selected = |selected: &HashMap<usize, (u32, RuleAction)>, i: usize, action: RuleAction| {
        selected.get(&i).is_some_and(|(_, a)| *a == action)
    };
    let mut roots: Vec<usize> =
        (0..images.len()).filter(|&i| judged[i] && !is_selected(&selected, i, RuleAction::Expire)).collect();
    let mut survives = surviving(images, &position, &referrers, &judged, &claimed, &mut roots);
    // Untagged images left behind by what expires (the children of an expired index, the
    // referrers of an expired subject) become what ECR sees in them, untagged images: judged so
    // (ranked among every image the rules match), one that a rule matches and does not expire
    // stays. The rest go with their parent. Nothing judged before changes its fate.
    let left_behind: Vec<usize> =
        (0..images.len()).filter(|&i| !judged[i] && !survives[i] && images[i].tags.is_empty()).collect();
    if !left_behind.is_empty() {
        let mut as_orphans = judged.clone();
        left_behind.iter().for_each(|&i| as_orphans[i] = true);
        let (orphan_selected, orphan_claimed) = select(policy, images, &as_orphans, now);
        for &i in left_behind.iter().filter(|i| orphan_claimed.contains(i)) {
            if let Some(selection) = orphan_selected.get(&i) {
                selected.insert(i, *selection);
            }
            if !is_selected(&selected, i, RuleAction::Expire) {
                judged[i] = true;
                claimed.insert(i);
                roots.push(i);
            }
        }
        survives = surviving(images, &position, &referrers, &judged, &claimed, &mut roots);
    }
    let selected_for = |i: usize, action: RuleAction| is_selected(&selected, i, action);

    // Each expired image gets the rule of its own selection, or of a parent that expired.
    let expiring: Vec<bool> = survives.iter().map(|s| !s).collect();
    let expired = verdicts(images, &expiring, (&selected, RuleAction::Expire), &listed_by, subject_of);

    // What moves to the archive: the survivors a transition selected, and the untagged children
    // of an index that moves. A STANDARD survivor that stays keeps what it lists (the archive
    // refuses to split an index), so what moves can let more move: repeat until nothing changes.
    let holds = |p: usize, moving: &[bool]| survives[p] && !images[p].archived && !moving[p];
    let mut moving = vec![false; images.len()];
    loop {
        let mut changed = false;
        for i in 0..images.len() {
            if !survives[i] || images[i].archived || moving[i] {
                continue;
            }
            let wants = if judged[i] {
                selected_for(i, RuleAction::Transition)
            } else {
                listed_by[i].iter().any(|&p| moving[p])
            };
            if wants && !listed_by[i].iter().any(|&p| holds(p, &moving)) {
                moving[i] = true;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let transitioned = verdicts(images, &moving, (&selected, RuleAction::Transition), &listed_by, |_| None);

    // A survivor is a root or was reached from a surviving parent: an index listing it, or the
    // subject of an untagged referrer.
    let mut is_root = vec![false; images.len()];
    roots.iter().for_each(|&i| is_root[i] = true);
    let kept = (0..images.len())
        .filter(|&i| survives[i] && !moving[i])
        .map(|i| {
            let held_by = listed_by[i].iter().find(|&&p| holds(p, &moving));
            let because = match (listed_by[i].iter().find(|&&p| survives[p]), subject_of(i)) {
                _ if selected_for(i, RuleAction::Transition) && held_by.is_some() => {
                    KeptBecause::ListedBy(images[*held_by.expect("checked")].digest.clone())
                }
                _ if is_root[i] => KeptBecause::NotSelected,
                (Some(&index), _) => KeptBecause::ListedBy(images[index].digest.clone()),
                (None, Some(subject)) => KeptBecause::ReferrerOf(images[subject].digest.clone()),
                (None, None) => KeptBecause::NotSelected,
            };
            Kept { digest: images[i].digest.clone(), because, selected_by: selected.get(&i).map(|(p, _)| *p) }
        })
        .collect();
    Evaluation { expired, transitioned, kept }
}

/// One pass of the rules over the `judged` images, in priority order: the images each rule acts
/// on (an image matched by an earlier rule is not acted on by a later one, but still counts
/// towards `imageCountMoreThan`), and every image some rule matched.
fn select(
    policy: &LifecyclePolicy,
    images: &[LifecycleImage],
    judged: &[bool],
    now: Millis,
) -> (HashMap<usize, (u32, RuleAction)>, HashSet<usize>) {
    let mut selected: HashMap<usize, (u32, RuleAction)> = HashMap::new();
    let mut claimed: HashSet<usize> = HashSet::new();
    for rule in &policy.rules {
        let mut matching: Vec<usize> = (0..images.len())
            .filter(|&i| judged[i] && images[i].archived == rule.archived && rule.selects(&images[i].tags))
            .collect();
        let older_than = |days: u64, at: &dyn Fn(&LifecycleImage) -> Millis| -> Vec<usize> {
            let cutoff = now.saturating_sub(i64::try_from(days).unwrap_or(i64::MAX).saturating_mul(DAY_MILLIS));
            matching.iter().filter(|&&i| at(&images[i]) < cutoff).copied().collect()
        };
        let acted_on: Vec<usize> = match rule.count {
            Count::MoreThan(keep) => {
                // Newest first; equal push times in digest order, so the outcome is deterministic.
                matching.sort_by(|&a, &b| {
                    images[b].pushed_at.cmp(&images[a].pushed_at).then_with(|| images[a].digest.cmp(&images[b].digest))
                });
                matching.iter().skip(usize::try_from(keep).unwrap_or(usize::MAX)).copied().collect()
            }
            Count::SincePushedDays(days) => older_than(days, &|image| image.pushed_at),
            Count::SincePulledDays(days) => older_than(days, &LifecycleImage::last_used_at),
            Count::SinceArchivedDays(days) => {
                older_than(days, &|image| image.last_archived_at.unwrap_or(image.pushed_at))
            }
        };
        for i in acted_on {
            if !claimed.contains(&i) {
                selected.insert(i, (rule.priority, rule.action));
            }
        }
        claimed.extend(matching);
    }
    (selected, claimed)
}

/// What survives: the `roots` (judged images no rule expires), everything a survivor lists, and
/// the untagged referrers of a survivor. A root that is a referrer whose subject did not survive
/// goes too unless a rule matched it (a rule that keeps an image keeps it), which can take more
/// with it: `roots` loses those, repeated until nothing changes.
fn surviving(
    images: &[LifecycleImage],
    position: &HashMap<&Digest, usize>,
    referrers: &[Vec<usize>],
    judged: &[bool],
    claimed: &HashSet<usize>,
    roots: &mut Vec<usize>,
) -> Vec<bool> {
    let subject_of = |i: usize| images[i].subject.as_ref().and_then(|d| position.get(d)).copied();
    loop {
        let mut survives = vec![false; images.len()];
        let mut stack = roots.clone();
        while let Some(i) = stack.pop() {
            if std::mem::replace(&mut survives[i], true) {
                continue;
            }
            let children = images[i].children.iter().filter_map(|d| position.get(d)).copied();
            let untagged_referrers = referrers[i].iter().copied().filter(|&r| !judged[r]);
            stack.extend(children.chain(untagged_referrers));
        }
        let before = roots.len();
        roots.retain(|&i| claimed.contains(&i) || subject_of(i).is_none_or(|s| survives[s]));
        if roots.len() == before {
            return survives;
        }
    }
}

/// The images marked in `acted_on`, an index before what it lists, each with the rule that
/// selected it for `action` or else the rule of a parent (an index listing it, or its
/// `subject_of`) that is acted on too.
fn verdicts(
    images: &[LifecycleImage],
    acted_on: &[bool],
    (selected, action): (&HashMap<usize, (u32, RuleAction)>, RuleAction),
    listed_by: &[Vec<usize>],
    subject_of: impl Fn(usize) -> Option<usize>,
) -> Vec<Verdict> {
    let members: Vec<usize> = (0..images.len()).filter(|&i| acted_on[i]).collect();
    let mut cause: HashMap<usize, u32> =
        members.iter().filter_map(|&i| selected.get(&i).filter(|(_, a)| *a == action).map(|(p, _)| (i, *p))).collect();
    loop {
        let mut changed = false;
        for &i in &members {
            if cause.contains_key(&i) {
                continue;
            }
            let parents = listed_by[i].iter().copied().chain(subject_of(i)).filter(|&p| acted_on[p]);
            if let Some(priority) = parents.filter_map(|p| cause.get(&p)).min().copied() {
                cause.insert(i, priority);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }

    fn depth_of(i: usize, listed_by: &[Vec<usize>], acted_on: &[bool], depth: &mut HashMap<usize, usize>) -> usize {
        if let Some(&d) = depth.get(&i) {
            return d;
        }
        depth.insert(i, 0); // cycle guard; digests make cycles impossible
        let d = listed_by[i]
            .iter()
            .filter(|&&p| acted_on[p])
            .map(|&p| depth_of(p, listed_by, acted_on, depth) + 1)
            .max()
            .unwrap_or(0);
        depth.insert(i, d);
        d
    }
    let mut depth: HashMap<usize, usize> = HashMap::new();
    let mut order: Vec<(usize, usize)> =
        members.iter().map(|&i| (depth_of(i, listed_by, acted_on, &mut depth), i)).collect();
    order.sort();
    order
        .into_iter()
        .filter_map(|(_, i)| {
            // Every member has a cause: it was selected, or a parent acted on had one.
            cause.get(&i).map(|&rule_priority| Verdict { digest: images[i].digest.clone(), rule_priority })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Millis = 1_800_000_000_000;

    fn digest(name: &str) -> Digest {
        Digest::sha256_of(name.as_bytes())
    }

    /// An image named `name` (its digest is derived from the name), pushed `age_days` ago.
    fn image(name: &str, tags: &[&str], age_days: f64) -> LifecycleImage {
        LifecycleImage {
            digest: digest(name),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            pushed_at: NOW - (age_days * DAY_MILLIS as f64) as i64,
            children: vec![],
            subject: None,
            last_pulled_at: None,
            archived: false,
            last_archived_at: None,
            last_activated_at: None,
        }
    }

    fn index(name: &str, tags: &[&str], age_days: f64, children: &[&str]) -> LifecycleImage {
        LifecycleImage { children: children.iter().map(|c| digest(c)).collect(), ..image(name, tags, age_days) }
    }

    fn referrer(name: &str, tags: &[&str], age_days: f64, subject: &str) -> LifecycleImage {
        LifecycleImage { subject: Some(digest(subject)), ..image(name, tags, age_days) }
    }

    fn policy(rules: serde_json::Value) -> LifecyclePolicy {
        let text = serde_json::json!({ "rules": rules }).to_string();
        LifecyclePolicy::parse(&text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn rule(priority: u32, selection: serde_json::Value) -> serde_json::Value {
        serde_json::json!({"rulePriority": priority, "description": "test", "selection": selection, "action": {"type": "expire"}})
    }

    /// (name, rule priority) of what `policy` expires among `images`, in deletion order.
    fn expired(policy: &LifecyclePolicy, images: &[LifecycleImage]) -> Vec<(String, u32)> {
        named(images, evaluate(policy, images, NOW))
    }

    /// (name, rule priority) of what `policy` moves to the archive, in the order it moves.
    fn transitioned(policy: &LifecyclePolicy, images: &[LifecycleImage]) -> Vec<(String, u32)> {
        named(images, explain(policy, images, NOW).transitioned)
    }

    fn named(images: &[LifecycleImage], verdicts: Vec<Verdict>) -> Vec<(String, u32)> {
        let names: HashMap<Digest, String> = images
            .iter()
            .map(|i| {
                let name = [
                    "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p", "q", "r", "s", "t",
                ]
                .iter()
                .flat_map(|p| (0..10).map(move |n| format!("{p}{n}")))
                .chain(
                    ["idx", "idx2", "outer", "sig", "sbom", "att", "orphan", "shared", "amd", "arm"].map(String::from),
                )
                .find(|candidate| digest(candidate) == i.digest)
                .expect("test images use known names");
                (i.digest.clone(), name)
            })
            .collect();
        verdicts.into_iter().map(|e| (names[&e.digest].clone(), e.rule_priority)).collect()
    }

    fn names(list: &[(&str, u32)]) -> Vec<(String, u32)> {
        list.iter().map(|(n, p)| (n.to_string(), *p)).collect()
    }

    fn sorted(mut list: Vec<(String, u32)>) -> Vec<(String, u32)> {
        list.sort();
        list
    }

    // ---- validation

    fn refused(document: serde_json::Value) -> String {
        let text = document.to_string();
        LifecyclePolicy::parse(&text).expect_err(&text).0
    }

    #[test]
    fn the_documented_examples_parse() {
        let p = policy(serde_json::json!([
            rule(
                1,
                serde_json::json!({"tagStatus": "tagged", "tagPrefixList": ["prod"], "countType": "imageCountMoreThan", "countNumber": 10})
            ),
            rule(
                2,
                serde_json::json!({"tagStatus": "tagged", "tagPatternList": ["*-rc*", "v*"], "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 14})
            ),
            rule(
                5,
                serde_json::json!({"tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 1})
            ),
            rule(9, serde_json::json!({"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 100})),
        ]));
        assert_eq!(p.rules.iter().map(|r| r.priority).collect::<Vec<_>>(), vec![1, 2, 5, 9]);
        // Priorities need not be sequential nor listed in order.
        let p = policy(serde_json::json!([
            rule(20, serde_json::json!({"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 1})),
            rule(3, serde_json::json!({"tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": 1})),
        ]));
        assert_eq!(p.rules.iter().map(|r| r.priority).collect::<Vec<_>>(), vec![3, 20]);
    }

    #[test]
    fn invalid_policies_say_why() {
        let untagged =
            serde_json::json!({"tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": 1});
        let cases: Vec<(serde_json::Value, &str)> = vec![
            (serde_json::json!([1, 2]), "does not match the required type object"),
            (serde_json::json!({}), r#"missing required properties (["rules"])"#),
            (serde_json::json!({"rules": []}), "at least 1 element"),
            (serde_json::json!({"rules": [], "extra": 1}), "not allowed by the schema"),
            (
                serde_json::json!({"rules": [rule(1, untagged.clone()), rule(1, serde_json::json!({"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 1}))]}),
                "rulePriority must be unique",
            ),
            (
                serde_json::json!({"rules": [rule(1, untagged.clone()), rule(2, untagged.clone())]}),
                "only one rule is allowed to select untagged images",
            ),
            (
                serde_json::json!({"rules": [rule(2, untagged.clone()), rule(1, serde_json::json!({"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 1}))]}),
                "must have the highest rulePriority",
            ),
            (serde_json::json!({"rules": [rule(0, untagged.clone())]}), "minimum: 1, found: 0"),
            (
                serde_json::json!({"rules": [rule(1, serde_json::json!({"tagStatus": "TAGGED", "tagPrefixList": ["v"], "countType": "imageCountMoreThan", "countNumber": 1}))]}),
                r#"instance value (TAGGED) not found in enum"#,
            ),
            (
                serde_json::json!({"rules": [rule(1, serde_json::json!({"tagStatus": "tagged", "countType": "imageCountMoreThan", "countNumber": 1}))]}),
                "requires tagPrefixList or tagPatternList",
            ),
            (
                serde_json::json!({"rules": [rule(1, serde_json::json!({"tagStatus": "tagged", "tagPrefixList": ["v"], "tagPatternList": ["v*"], "countType": "imageCountMoreThan", "countNumber": 1}))]}),
                "cannot both be specified",
            ),
            (
                serde_json::json!({"rules": [rule(1, serde_json::json!({"tagStatus": "tagged", "tagPrefixList": ["v*"], "countType": "imageCountMoreThan", "countNumber": 1}))]}),
                "wildcards are only allowed in tagPatternList",
            ),
            (
                serde_json::json!({"rules": [rule(1, serde_json::json!({"tagStatus": "tagged", "tagPatternList": ["*a*b*c*d*"], "countType": "imageCountMoreThan", "countNumber": 1}))]}),
                "more than 4 wildcards",
            ),
            (
                serde_json::json!({"rules": [rule(1, serde_json::json!({"tagStatus": "tagged", "tagPatternList": [], "countType": "imageCountMoreThan", "countNumber": 1}))]}),
                "at least 1 element",
            ),
            (
                serde_json::json!({"rules": [rule(1, serde_json::json!({"tagStatus": "untagged", "tagPrefixList": ["v"], "countType": "imageCountMoreThan", "countNumber": 1}))]}),
                "only allowed with tagStatus 'tagged'",
            ),
            (
                serde_json::json!({"rules": [rule(1, serde_json::json!({"tagStatus": "untagged", "countType": "imageCountMoreThan", "countUnit": "days", "countNumber": 1}))]}),
                "countUnit is only allowed with the countTypes 'since…'",
            ),
            (
                serde_json::json!({"rules": [rule(1, serde_json::json!({"tagStatus": "untagged", "countType": "sinceImagePushed", "countNumber": 1}))]}),
                "countUnit is required",
            ),
            (
                serde_json::json!({"rules": [rule(1, serde_json::json!({"tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "hours", "countNumber": 1}))]}),
                "instance value (hours) not found in enum",
            ),
            (
                serde_json::json!({"rules": [rule(1, serde_json::json!({"tagStatus": "untagged", "countType": "sinceImagePulled", "countUnit": "days", "countNumber": 1}))]}),
                "'sinceImagePulled' is only allowed with the action 'transition'",
            ),
            (
                serde_json::json!({"rules": [rule(1, serde_json::json!({"tagStatus": "untagged", "countType": "sinceImageTransitioned", "countUnit": "days", "countNumber": 100}))]}),
                "'sinceImageTransitioned' requires storageClass 'archive'",
            ),
            (
                serde_json::json!({"rules": [rule(1, serde_json::json!({"tagStatus": "untagged", "storageClass": "archive", "countType": "sinceImageTransitioned", "countUnit": "days", "countNumber": 89}))]}),
                "at least 90 days in the archive, found 89",
            ),
            (
                serde_json::json!({"rules": [rule(1, serde_json::json!({"tagStatus": "untagged", "storageClass": "archive", "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 100}))]}),
                "storageClass 'archive' is only allowed with countType 'sinceImageTransitioned'",
            ),
            (
                serde_json::json!({"rules": [rule(1, serde_json::json!({"tagStatus": "untagged", "storageClass": "glacier", "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 1}))]}),
                "instance value (glacier) not found in enum",
            ),
            (
                serde_json::json!({"rules": [{"rulePriority": 1, "selection": {"tagStatus": "untagged", "storageClass": "archive", "countType": "sinceImageTransitioned", "countUnit": "days", "countNumber": 90}, "action": {"type": "transition", "targetStorageClass": "archive"}}]}),
                "'sinceImageTransitioned' is only allowed with the action 'expire'",
            ),
            (
                serde_json::json!({"rules": [{"rulePriority": 1, "selection": untagged.clone(), "action": {"type": "expire", "targetStorageClass": "archive"}}]}),
                "targetStorageClass is only allowed with type 'transition'",
            ),
            (
                serde_json::json!({"rules": [{"rulePriority": 1, "selection": untagged.clone(), "action": {"type": "transition", "targetStorageClass": "standard"}}]}),
                "instance value (standard) not found in enum",
            ),
            (
                serde_json::json!({"rules": [rule(1, serde_json::json!({"tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": 0}))]}),
                "minimum: 1, found: 0",
            ),
            (
                serde_json::json!({"rules": [rule(1, serde_json::json!({"tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": "5"}))]}),
                "does not match the required type integer",
            ),
            (
                serde_json::json!({"rules": [rule(1, serde_json::json!({"tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": 1.5}))]}),
                "does not match the required type integer",
            ),
            (
                serde_json::json!({"rules": [rule(1, serde_json::json!({"tagStatus": "untagged", "countType": "imageCountMoreThan"}))]}),
                "countNumber is required",
            ),
            (
                serde_json::json!({"rules": [{"rulePriority": 1, "selection": untagged.clone(), "action": {"type": "transition"}}]}),
                "targetStorageClass is required",
            ),
            (
                serde_json::json!({"rules": [{"rulePriority": 1, "selection": untagged.clone(), "action": {"type": "archive"}}]}),
                "instance value (archive) not found in enum",
            ),
            (serde_json::json!({"rules": [{"rulePriority": 1, "selection": untagged.clone()}]}), "action is required"),
            (
                serde_json::json!({"rules": [{"selection": untagged.clone(), "action": {"type": "expire"}}]}),
                "rulePriority is required",
            ),
            (
                serde_json::json!({"rules": [{"rulePriority": 1, "selection": untagged, "action": {"type": "expire"}, "when": "now"}]}),
                "not allowed by the schema",
            ),
        ];
        for (document, says) in cases {
            let message = refused(document.clone());
            assert!(message.contains(says), "{document}: {message:?} should contain {says:?}");
        }
        assert!(LifecyclePolicy::parse("{not json").unwrap_err().0.contains("not valid JSON"));
    }

    // ---- ECR's documented semantics

    #[test]
    fn image_count_keeps_the_newest_by_push_time() {
        let p = policy(serde_json::json!([rule(
            1,
            serde_json::json!({"tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": 2})
        )]));
        let images = [
            image("a0", &[], 3.0),
            image("a1", &[], 1.0),
            image("a2", &[], 4.0),
            image("a3", &[], 2.0),
            image("a4", &["v1"], 9.0),
        ];
        assert_eq!(sorted(expired(&p, &images)), names(&[("a0", 1), ("a2", 1)]));
    }

    #[test]
    fn since_image_pushed_expires_older_than_n_days() {
        let p = policy(serde_json::json!([rule(
            1,
            serde_json::json!({"tagStatus": "tagged", "tagPrefixList": ["dev"], "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 7})
        )]));
        let images = [image("a0", &["dev-1"], 8.0), image("a1", &["dev-2"], 6.9), image("a2", &["prod"], 30.0)];
        assert_eq!(expired(&p, &images), names(&[("a0", 1)]));
    }

    #[test]
    fn every_prefix_or_pattern_must_be_matched_by_some_tag() {
        let p = policy(serde_json::json!([rule(
            1,
            serde_json::json!({"tagStatus": "tagged", "tagPrefixList": ["alpha", "beta"], "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 1})
        )]));
        let images =
            [image("a0", &["alpha1", "beta1"], 5.0), image("a1", &["alpha1"], 5.0), image("a2", &["beta-alpha"], 5.0)];
        assert_eq!(expired(&p, &images), names(&[("a0", 1)]));
        let p = policy(serde_json::json!([rule(
            1,
            serde_json::json!({"tagStatus": "tagged", "tagPatternList": ["*-rc*"], "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 1})
        )]));
        let images = [
            image("a0", &["v1-rc2"], 5.0),
            image("a1", &["v1"], 5.0),
            image("a2", &["rc"], 5.0),
            image("a3", &["x", "2-rc"], 5.0),
        ];
        assert_eq!(sorted(expired(&p, &images)), names(&[("a0", 1), ("a3", 1)]));
    }

    /// The docs' example: an image matched by a higher-priority rule is never expired by a later
    /// rule, but the later rule still counts it.
    #[test]
    fn earlier_rules_claim_images_later_rules_still_count_them() {
        let p = policy(serde_json::json!([
            rule(
                1,
                serde_json::json!({"tagStatus": "tagged", "tagPrefixList": ["prod"], "countType": "imageCountMoreThan", "countNumber": 1})
            ),
            rule(2, serde_json::json!({"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 2})),
        ]));
        let images = [
            image("a0", &["prod-3"], 1.0),
            image("a1", &["beta"], 2.0),
            image("a2", &["prod-2"], 3.0),
            image("a3", &["beta-old"], 4.0),
            image("a4", &[], 5.0),
        ];
        // Rule 1 keeps prod-3 and expires prod-2. Rule 2 counts a0 and a1 as the newest two and
        // expires a3 and a4 (a2 was already expired by rule 1; a0 is claimed by rule 1).
        assert_eq!(sorted(expired(&p, &images)), names(&[("a2", 1), ("a3", 2), ("a4", 2)]));
    }

    #[test]
    fn claimed_images_are_not_expired_by_later_rules() {
        let p = policy(serde_json::json!([
            rule(
                1,
                serde_json::json!({"tagStatus": "tagged", "tagPrefixList": ["keep"], "countType": "imageCountMoreThan", "countNumber": 100})
            ),
            rule(
                2,
                serde_json::json!({"tagStatus": "any", "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 1})
            ),
        ]));
        let images = [image("a0", &["keep-me"], 50.0), image("a1", &["other"], 50.0), image("a2", &[], 0.5)];
        assert_eq!(expired(&p, &images), names(&[("a1", 2)]));
    }

    #[test]
    fn equal_push_times_break_ties_by_digest() {
        let p = policy(serde_json::json!([rule(
            1,
            serde_json::json!({"tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": 1})
        )]));
        let images: Vec<LifecycleImage> = (0..5).map(|i| image(&format!("b{i}"), &[], 1.0)).collect();
        let first = expired(&p, &images);
        let mut reversed = images.clone();
        reversed.reverse();
        assert_eq!(sorted(expired(&p, &reversed)), sorted(first.clone()));
        assert_eq!(first.len(), 4);
        let kept = images.iter().map(|i| &i.digest).min().unwrap();
        assert!(evaluate(&p, &images, NOW).iter().all(|e| &e.digest != kept), "the smallest digest counts as newest");
    }

    // ---- multi-arch and referrers: Berth keeps images whole

    #[test]
    fn children_of_a_kept_index_are_not_untagged_orphans() {
        let p = policy(serde_json::json!([rule(
            1,
            serde_json::json!({"tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 1})
        )]));
        let images = [
            image("amd", &[], 10.0),
            image("arm", &[], 10.0),
            index("idx", &["v1"], 10.0, &["amd", "arm"]),
            image("orphan", &[], 10.0),
        ];
        assert_eq!(expired(&p, &images), names(&[("orphan", 1)]));
        // ECR would count the children against imageCountMoreThan too; here they do not.
        let p = policy(serde_json::json!([rule(
            1,
            serde_json::json!({"tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": 1})
        )]));
        let images = [
            image("amd", &[], 1.0),
            image("arm", &[], 1.0),
            index("idx", &["v1"], 1.0, &["amd", "arm"]),
            image("a0", &[], 5.0),
            image("a1", &[], 6.0),
        ];
        assert_eq!(expired(&p, &images), names(&[("a1", 1)]));
    }

    #[test]
    fn an_expired_index_takes_its_children_after_it_unless_a_kept_index_lists_them() {
        let p = policy(serde_json::json!([rule(
            1,
            serde_json::json!({"tagStatus": "tagged", "tagPrefixList": ["v"], "countType": "imageCountMoreThan", "countNumber": 1})
        )]));
        let images = [
            image("a0", &[], 20.0),
            image("a1", &[], 20.0),
            image("shared", &[], 20.0),
            image("a2", &[], 1.0),
            index("idx", &["v1"], 20.0, &["a0", "a1", "shared"]),
            index("idx2", &["v2"], 1.0, &["a2", "shared"]),
        ];
        let result = expired(&p, &images);
        assert_eq!(result[0], ("idx".to_owned(), 1), "the index goes first: {result:?}");
        assert_eq!(sorted(result), names(&[("a0", 1), ("a1", 1), ("idx", 1)]));
    }

    #[test]
    fn explain_says_why_each_survivor_stays() {
        let p = policy(serde_json::json!([rule(
            1,
            serde_json::json!({"tagStatus": "tagged", "tagPatternList": ["*-amd64"], "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 1})
        )]));
        let images = [
            image("amd", &["v1-amd64"], 10.0),
            image("arm", &[], 10.0),
            index("idx", &["v1"], 10.0, &["amd", "arm"]),
            referrer("sig", &[], 10.0, "idx"),
            image("a0", &["old-amd64"], 10.0),
        ];
        let evaluation = explain(&p, &images, NOW);
        assert_eq!(evaluation.expired, evaluate(&p, &images, NOW), "evaluate is explain's expiries");
        assert_eq!(evaluation.expired, vec![Verdict { digest: digest("a0"), rule_priority: 1 }]);
        let why = |name: &str| evaluation.kept.iter().find(|k| k.digest == digest(name)).cloned();
        assert_eq!(
            why("amd"),
            Some(Kept { digest: digest("amd"), because: KeptBecause::ListedBy(digest("idx")), selected_by: Some(1) }),
            "a rule selected it, the index overrules"
        );
        assert_eq!(why("arm").map(|k| (k.because, k.selected_by)), Some((KeptBecause::ListedBy(digest("idx")), None)));
        assert_eq!(why("idx").map(|k| (k.because, k.selected_by)), Some((KeptBecause::NotSelected, None)));
        assert_eq!(why("sig").map(|k| k.because), Some(KeptBecause::ReferrerOf(digest("idx"))));
        assert_eq!(why("a0"), None, "expired images are not kept");
        assert_eq!(evaluation.kept.len() + evaluation.expired.len(), images.len(), "every image has one verdict");
    }

    #[test]
    fn a_kept_index_protects_children_a_rule_selected() {
        // Per-arch tags (a common workaround on ECR) no longer decide the children's fate.
        let p = policy(serde_json::json!([rule(
            1,
            serde_json::json!({"tagStatus": "tagged", "tagPatternList": ["*-amd64"], "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 1})
        )]));
        let images = [
            image("amd", &["v1-amd64"], 10.0),
            image("arm", &[], 10.0),
            index("idx", &["v1"], 10.0, &["amd", "arm"]),
            image("a0", &["old-amd64"], 10.0),
        ];
        assert_eq!(expired(&p, &images), names(&[("a0", 1)]));
    }

    #[test]
    fn a_tagged_child_of_an_expired_index_stays_unless_a_rule_expires_it() {
        let p = policy(serde_json::json!([rule(
            1,
            serde_json::json!({"tagStatus": "tagged", "tagPrefixList": ["v1"], "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 1})
        )]));
        let images = [
            image("amd", &["pinned-amd64"], 10.0),
            image("arm", &[], 10.0),
            index("idx", &["v1"], 10.0, &["amd", "arm"]),
        ];
        assert_eq!(expired(&p, &images), names(&[("idx", 1), ("arm", 1)]));
    }

    #[test]
    fn nested_indexes_expire_outermost_first() {
        let p = policy(serde_json::json!([rule(
            1,
            serde_json::json!({"tagStatus": "any", "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 1})
        )]));
        let images =
            [image("a0", &[], 5.0), index("idx", &[], 5.0, &["a0"]), index("outer", &["release"], 5.0, &["idx"])];
        assert_eq!(expired(&p, &images), names(&[("outer", 1), ("idx", 1), ("a0", 1)]));
        // Kept outer index: nothing under it goes, even through an 'any' rule that selects all.
        let images =
            [image("a0", &[], 5.0), index("idx", &[], 5.0, &["a0"]), index("outer", &["release"], 0.5, &["idx"])];
        assert_eq!(expired(&p, &images), vec![]);
    }

    #[test]
    fn referrers_go_with_their_subject_and_stay_with_it() {
        let p = policy(serde_json::json!([
            rule(
                1,
                serde_json::json!({"tagStatus": "tagged", "tagPrefixList": ["old"], "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 1})
            ),
            rule(
                2,
                serde_json::json!({"tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 1})
            ),
        ]));
        let images = [
            image("a0", &["old-1"], 9.0),
            referrer("sig", &[], 9.0, "a0"),
            referrer("sbom", &["sbom-of-old"], 9.0, "a0"),
            referrer("att", &[], 9.0, "sig"),
            image("a1", &["new"], 9.0),
            referrer("b0", &[], 9.0, "a1"),
        ];
        // The signature of a kept image stays although it is old and untagged; everything that
        // refers (directly or not) to the expired image goes: the tagged SBOM no rule matches
        // with that image's rule, the untagged ones left behind by the untagged rule.
        assert_eq!(sorted(expired(&p, &images)), names(&[("a0", 1), ("att", 2), ("sbom", 1), ("sig", 2)]));
    }

    #[test]
    fn a_referrer_a_rule_keeps_stays_when_its_subject_expires() {
        // ECR: "An image that matches the tagging requirements of a rule cannot be expired by a
        // rule with a lower priority." The SBOM matches rule 1, which keeps it.
        let p = policy(serde_json::json!([
            rule(
                1,
                serde_json::json!({"tagStatus": "tagged", "tagPatternList": ["release*"], "countType": "imageCountMoreThan", "countNumber": 100})
            ),
            rule(
                2,
                serde_json::json!({"tagStatus": "tagged", "tagPatternList": ["v*"], "countType": "imageCountMoreThan", "countNumber": 1})
            ),
        ]));
        let images = [
            image("s1", &["v1"], 10.0),
            referrer("sbom", &["release-sbom-1"], 9.0, "s1"),
            referrer("sig", &[], 9.0, "sbom"),
            image("s2", &["v2"], 2.0),
        ];
        assert_eq!(sorted(expired(&p, &images)), names(&[("s1", 2)]), "the SBOM and its own signature stay");
    }

    #[test]
    fn children_an_untagged_rule_keeps_stay_when_their_index_expires() {
        let p = policy(serde_json::json!([
            rule(1, serde_json::json!({"tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": 10})),
            rule(
                2,
                serde_json::json!({"tagStatus": "tagged", "tagPatternList": ["v*"], "countType": "imageCountMoreThan", "countNumber": 1})
            ),
        ]));
        let images = [
            index("i0", &["v1"], 10.0, &["c1", "c2"]),
            image("c1", &[], 10.0),
            image("c2", &[], 10.0),
            index("i2", &["v2"], 1.0, &["c3"]),
            image("c3", &[], 1.0),
        ];
        assert_eq!(sorted(expired(&p, &images)), names(&[("i0", 2)]), "rule 1 keeps the children it is left with");
        // Ranked among the untagged images: with room for one, the older child goes by rule 1.
        let p = policy(serde_json::json!([
            rule(1, serde_json::json!({"tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": 1})),
            rule(
                2,
                serde_json::json!({"tagStatus": "tagged", "tagPatternList": ["v*"], "countType": "imageCountMoreThan", "countNumber": 1})
            ),
        ]));
        let images = [
            index("i0", &["v1"], 10.0, &["c1"]),
            image("c1", &[], 10.0),
            index("i2", &["v2"], 1.0, &[]),
            image("t0", &[], 5.0),
        ];
        assert_eq!(sorted(expired(&p, &images)), names(&[("c1", 1), ("i0", 2)]));
    }

    #[test]
    fn a_referrer_whose_subject_is_absent_is_judged_on_its_own() {
        let p = policy(serde_json::json!([rule(
            1,
            serde_json::json!({"tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 1})
        )]));
        let images = [referrer("sig", &[], 5.0, "gone-subject"), referrer("b1", &[], 0.1, "gone-subject")];
        assert_eq!(expired(&p, &images), names(&[("sig", 1)]));
    }

    #[test]
    fn the_referrers_of_an_index_and_its_children_follow_the_index() {
        let p = policy(serde_json::json!([rule(
            1,
            serde_json::json!({"tagStatus": "tagged", "tagPrefixList": ["v"], "countType": "imageCountMoreThan", "countNumber": 1})
        )]));
        let images = [
            image("amd", &[], 10.0),
            referrer("att", &[], 10.0, "amd"),
            index("idx", &["v1"], 10.0, &["amd"]),
            referrer("sig", &[], 10.0, "idx"),
            image("arm", &[], 1.0),
            index("idx2", &["v2"], 1.0, &["arm"]),
        ];
        let result = expired(&p, &images);
        assert_eq!(sorted(result.clone()), names(&[("amd", 1), ("att", 1), ("idx", 1), ("sig", 1)]));
        let at = |n: &str| result.iter().position(|(name, _)| name == n).unwrap();
        assert!(at("idx") < at("amd"), "{result:?}");
    }

    #[test]
    fn standard_rules_never_select_archived_images_which_keep_what_they_list() {
        let p = policy(serde_json::json!([rule(
            1,
            serde_json::json!({"tagStatus": "any", "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 1})
        )]));
        let archived = |image: LifecycleImage| LifecycleImage { archived: true, ..image };
        let images = vec![
            archived(index("idx", &["v1"], 10.0, &["amd"])),
            image("amd", &[], 10.0),
            archived(image("a1", &["v0"], 10.0)),
            image("a0", &["v2"], 10.0),
        ];
        assert_eq!(expired(&p, &images), names(&[("a0", 1)]));
    }

    #[test]
    fn no_rule_matching_expires_nothing() {
        let p = policy(serde_json::json!([rule(
            1,
            serde_json::json!({"tagStatus": "tagged", "tagPrefixList": ["nightly"], "countType": "imageCountMoreThan", "countNumber": 1})
        )]));
        let images = [image("a0", &["v1"], 100.0), image("a1", &[], 100.0)];
        assert_eq!(expired(&p, &images), vec![]);
        assert_eq!(evaluate(&p, &[], NOW), vec![]);
    }

    fn archived(image: LifecycleImage, days_ago: f64) -> LifecycleImage {
        LifecycleImage { archived: true, last_archived_at: Some(NOW - (days_ago * DAY_MILLIS as f64) as i64), ..image }
    }

    fn days_ago(days: f64) -> Option<Millis> {
        Some(NOW - (days * DAY_MILLIS as f64) as i64)
    }

    /// ECR's documented pair: archive what is not pulled for 90 days, delete what has been in the
    /// archive for a year. Two `any` rules parse because each judges its own storage class.
    fn archive_then_expire() -> LifecyclePolicy {
        policy(serde_json::json!([
            {"rulePriority": 1, "selection": {"tagStatus": "any", "countType": "sinceImagePulled", "countUnit": "days", "countNumber": 90},
             "action": {"type": "transition", "targetStorageClass": "archive"}},
            {"rulePriority": 2, "selection": {"tagStatus": "any", "storageClass": "archive", "countType": "sinceImageTransitioned", "countUnit": "days", "countNumber": 365},
             "action": {"type": "expire"}},
        ]))
    }

    #[test]
    fn constraints_on_tag_status_hold_per_storage_class() {
        archive_then_expire();
        let any_first = serde_json::json!({"rules": [
            rule(1, serde_json::json!({"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 5})),
            {"rulePriority": 2, "selection": {"tagStatus": "untagged", "countType": "sinceImagePulled", "countUnit": "days", "countNumber": 9},
             "action": {"type": "transition", "targetStorageClass": "archive"}},
        ]});
        assert!(refused(any_first).contains("must have the highest rulePriority"));
        let two_untagged_archive_rules = serde_json::json!({"rules": [
            rule(1, serde_json::json!({"tagStatus": "untagged", "storageClass": "archive", "countType": "sinceImageTransitioned", "countUnit": "days", "countNumber": 90})),
            rule(2, serde_json::json!({"tagStatus": "untagged", "storageClass": "archive", "countType": "sinceImageTransitioned", "countUnit": "days", "countNumber": 120})),
        ]});
        assert!(refused(two_untagged_archive_rules).contains("only one rule of storageClass 'archive'"));
    }

    #[test]
    fn since_image_pulled_counts_from_the_last_pull_or_restore_or_push() {
        let p = archive_then_expire();
        let images = [
            LifecycleImage { last_pulled_at: days_ago(100.0), ..image("a0", &["old-pull"], 200.0) },
            LifecycleImage { last_pulled_at: days_ago(10.0), ..image("a1", &["fresh-pull"], 200.0) },
            image("a2", &["never-pulled-old"], 91.0),
            image("a3", &["never-pulled-new"], 89.0),
            LifecycleImage {
                last_pulled_at: days_ago(150.0),
                last_activated_at: days_ago(5.0),
                ..image("a4", &["restored"], 200.0)
            },
        ];
        assert_eq!(sorted(transitioned(&p, &images)), names(&[("a0", 1), ("a2", 1)]));
        assert_eq!(expired(&p, &images), vec![]);
    }

    #[test]
    fn archive_rules_judge_archived_images_by_their_time_in_the_archive() {
        let p = archive_then_expire();
        let images = [
            archived(image("a0", &["v1"], 900.0), 400.0),
            archived(image("a1", &["v2"], 900.0), 300.0),
            // Pushed long ago but restored: a STANDARD image, judged by the first rule only.
            LifecycleImage { last_activated_at: days_ago(1.0), ..image("a2", &["v3"], 900.0) },
        ];
        assert_eq!(expired(&p, &images), names(&[("a0", 2)]));
        assert_eq!(transitioned(&p, &images), vec![]);
    }

    #[test]
    fn an_index_moves_with_its_untagged_children_and_keeps_a_tagged_child_it_shares() {
        let p = policy(serde_json::json!([
            {"rulePriority": 1, "selection": {"tagStatus": "tagged", "tagPrefixList": ["v"], "countType": "imageCountMoreThan", "countNumber": 1},
             "action": {"type": "transition", "targetStorageClass": "archive"}},
        ]));
        let images = [
            index("idx", &["v1"], 10.0, &["amd", "arm"]),
            image("amd", &[], 10.0),
            image("arm", &[], 10.0),
            referrer("sig", &[], 10.0, "idx"),
            index("idx2", &["v2"], 1.0, &["a0"]),
            // Selected, but the kept index idx2 lists it: the archive will not split idx2.
            image("a0", &["v0"], 20.0),
        ];
        let moved = transitioned(&p, &images);
        assert_eq!(sorted(moved.clone()), names(&[("amd", 1), ("arm", 1), ("idx", 1)]));
        assert_eq!(moved[0], ("idx".to_owned(), 1), "the index moves before its children: {moved:?}");
        let evaluation = explain(&p, &images, NOW);
        let kept = |name: &str| evaluation.kept.iter().find(|k| k.digest == digest(name)).cloned();
        assert_eq!(
            kept("a0").map(|k| (k.because, k.selected_by)),
            Some((KeptBecause::ListedBy(digest("idx2")), Some(1)))
        );
        assert!(kept("sig").is_some(), "referrers keep their own class");
        assert!(kept("idx").is_none() && evaluation.expired.is_empty());
    }

    #[test]
    fn an_image_a_transition_claimed_is_not_expired_by_a_later_rule() {
        let p = policy(serde_json::json!([
            {"rulePriority": 1, "selection": {"tagStatus": "tagged", "tagPrefixList": ["v"], "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 30},
             "action": {"type": "transition", "targetStorageClass": "archive"}},
            rule(2, serde_json::json!({"tagStatus": "any", "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 7})),
        ]));
        let images = [image("a0", &["v1"], 60.0), image("a1", &["v2"], 10.0), image("a2", &["dev"], 10.0)];
        assert_eq!(transitioned(&p, &images), names(&[("a0", 1)]));
        assert_eq!(expired(&p, &images), names(&[("a2", 2)]));
    }
}

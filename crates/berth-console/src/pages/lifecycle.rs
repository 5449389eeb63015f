//! The lifecycle page: the repository's policy, rule by rule, and what it would do if it ran now,
//! drawn on the image list — what expires by which rule, and what stays because an index or a
//! subject still needs it. The verdicts come from the service's evaluator (the one expiry and
//! `GetLifecyclePolicyPreview` use), never from a second implementation here.

use std::collections::HashMap;

use askama::Template;
use axum::http::Uri;
use axum::response::Response;
use berth_registry::lifecycle::KeptBecause;
use berth_registry::{LifecycleExplanation, RegistryError};
use berth_spec::{Digest, RepositoryName};
use serde::Deserialize;
use serde_json::Value;

use super::render;
use super::repository::{Tabs, kind_of};
use crate::authz::{self, Scope};
use crate::inventory::Inventory;
use crate::view::{self, Layout};
use crate::{Console, ConsoleError, Visitor, paths};

struct RuleRow {
    priority: String,
    description: String,
    selects: String,
    count: String,
}

struct Row {
    depth: u8,
    digest: String,
    short: String,
    href: String,
    tags: Vec<String>,
    what: String,
    pushed: String,
    verdict: &'static str,
    text: String,
    rule: String,
}

#[derive(Template)]
#[template(path = "lifecycle.html")]
struct LifecyclePage {
    layout: Layout,
    name: String,
    repository_href: String,
    tabs: Tabs,
    /// The policy in force and the last preview, when the repository has them: (label, href, current).
    switch: Vec<(String, String, bool)>,
    shown: Option<PolicyView>,
}

/// Which policy the page draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    /// The policy in force, judged now.
    InForce,
    /// The last `StartLifecyclePolicyPreview`'s policy, judged when it started (as
    /// `GetLifecyclePolicyPreview` answers).
    Preview,
}

struct PolicyView {
    which: Which,
    rules: Vec<RuleRow>,
    raw: String,
    /// When the policy in force last ran (`None` for a preview).
    last_run: Option<String>,
    evaluated_at: String,
    /// This page's rows, of `total`, the first numbered `first`.
    rows: Vec<Row>,
    total: usize,
    first: usize,
    previous: Option<String>,
    next: Option<String>,
    expiring: usize,
    archiving: usize,
}

/// Rows a page shows: a repository under a policy may hold tens of thousands of images.
const ROWS_PER_PAGE: usize = 100;

#[derive(Deserialize, Default)]
#[serde(default)]
struct Query {
    view: String,
    page: usize,
}

fn strings(value: Option<&Value>) -> String {
    value
        .and_then(Value::as_array)
        .map(|list| list.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "))
        .unwrap_or_default()
}

/// The rules as a table (display only: the service validated and evaluates the text).
fn rule_rows(text: &str) -> Vec<RuleRow> {
    let document: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let mut rules: Vec<&Value> =
        document.get("rules").and_then(Value::as_array).map(|r| r.iter().collect()).unwrap_or_default();
    rules.sort_by_key(|r| r.get("rulePriority").and_then(Value::as_u64).unwrap_or(u64::MAX));
    rules
        .into_iter()
        .map(|rule| {
            let selection = rule.get("selection").cloned().unwrap_or(Value::Null);
            let status = selection.get("tagStatus").and_then(Value::as_str).unwrap_or("");
            let selects = match status {
                "tagged" => {
                    let prefixes = strings(selection.get("tagPrefixList"));
                    let patterns = strings(selection.get("tagPatternList"));
                    if prefixes.is_empty() {
                        format!("tagged images with a tag matching {patterns}")
                    } else {
                        format!("tagged images with tags starting {prefixes}")
                    }
                }
                "untagged" => "untagged images".into(),
                "any" => "all images".into(),
                other => other.to_owned(),
            };
            let selects = match selection.get("storageClass").and_then(Value::as_str) {
                Some("archive") => format!("{selects} in the archive"),
                _ => selects,
            };
            let number = selection.get("countNumber").and_then(Value::as_u64).unwrap_or(0);
            let act = match rule.pointer("/action/type").and_then(Value::as_str) {
                Some("transition") => "archives",
                _ => "expires",
            };
            let count = match selection.get("countType").and_then(Value::as_str) {
                Some("imageCountMoreThan") => format!("keeps the newest {number}, {act} the rest"),
                Some("sinceImagePushed") => format!("{act} those pushed more than {number} days ago"),
                Some("sinceImagePulled") => format!("{act} those not pulled for {number} days"),
                Some("sinceImageTransitioned") => format!("{act} those archived more than {number} days ago"),
                _ => String::new(),
            };
            RuleRow {
                priority: rule.get("rulePriority").map(Value::to_string).unwrap_or_default(),
                description: rule.get("description").and_then(Value::as_str).unwrap_or("").to_owned(),
                selects,
                count,
            }
        })
        .collect()
}

/// The verdict on every image, in the image list's order: each image, then its platforms and
/// referrers below it.
fn rows(inventory: &Inventory, repo: &RepositoryName, explanation: &LifecycleExplanation) -> Vec<Row> {
    let mut verdicts: HashMap<&Digest, (&'static str, String, String)> = HashMap::new();
    for expiry in &explanation.evaluation.expired {
        let rule = expiry.rule_priority.to_string();
        verdicts.insert(&expiry.digest, ("expire", format!("Expires by rule {rule}"), rule));
    }
    for transition in &explanation.evaluation.transitioned {
        let rule = transition.rule_priority.to_string();
        verdicts.insert(&transition.digest, ("archive", format!("Moves to the archive by rule {rule}"), rule));
    }
    for kept in &explanation.evaluation.kept {
        let selected = kept.selected_by.map(|p| p.to_string()).unwrap_or_default();
        let text = match (&kept.because, kept.selected_by) {
            (KeptBecause::NotSelected, _) => "Kept: no rule expires it".to_owned(),
            (KeptBecause::ListedBy(index), Some(rule)) => {
                format!("Kept: rule {rule} selects it, but index {} still lists it", view::short_digest(index))
            }
            (KeptBecause::ListedBy(index), None) => format!("Kept with index {}", view::short_digest(index)),
            (KeptBecause::ReferrerOf(subject), _) => format!("Kept with its subject {}", view::short_digest(subject)),
        };
        let verdict = if matches!(kept.because, KeptBecause::NotSelected) { "keep" } else { "protected" };
        verdicts.insert(&kept.digest, (verdict, text, selected));
    }
    let mut rows = Vec::new();
    let mut visit = |i: usize, depth: u8, what: String| {
        let entry = &inventory.entries[i];
        let (verdict, text, rule) = verdicts.get(entry.digest()).cloned().unwrap_or((
            "unknown",
            "Not judged: pushed after the evaluation".into(),
            String::new(),
        ));
        rows.push(Row {
            depth,
            digest: entry.digest().to_string(),
            short: view::short_digest(entry.digest()),
            href: paths::href_image(repo, entry.digest()),
            tags: entry.record.tags.clone(),
            what,
            pushed: view::time(entry.record.manifest.pushed_at),
            verdict,
            text,
            rule,
        });
    };
    for top in inventory.roots() {
        let entry = &inventory.entries[top];
        visit(top, 0, kind_of(entry).0.to_owned());
        if let Some(manifest) = &entry.manifest {
            for descriptor in &manifest.manifests {
                if let Some(child) = inventory.get(&descriptor.digest) {
                    let platform = descriptor.platform.as_ref().map_or_else(
                        || "platform manifest".to_owned(),
                        |p| match &p.variant {
                            Some(variant) => format!("{}/{}/{variant}", p.os, p.architecture),
                            None => format!("{}/{}", p.os, p.architecture),
                        },
                    );
                    visit(child, 1, platform);
                }
            }
        }
        for &referrer in &entry.referrers {
            let artifact = inventory.entries[referrer].record.manifest.artifact_type.clone();
            visit(referrer, 1, format!("referrer ({})", artifact.as_deref().unwrap_or("no type")));
        }
    }
    rows
}

fn policy_view(
    inventory: &Inventory,
    repo: &RepositoryName,
    which: Which,
    explanation: &LifecycleExplanation,
    page: usize,
) -> PolicyView {
    let all = rows(inventory, repo, explanation);
    let total = all.len();
    let pages = total.div_ceil(ROWS_PER_PAGE).max(1);
    let page = page.clamp(1, pages);
    let view = match which {
        Which::InForce => "policy",
        Which::Preview => "preview",
    };
    let page_link = |page: usize| format!("{}?view={view}&page={page}", paths::href_lifecycle(repo));
    PolicyView {
        which,
        rules: rule_rows(&explanation.policy.text),
        raw: serde_json::from_str::<Value>(&explanation.policy.text)
            .ok()
            .and_then(|v| serde_json::to_string_pretty(&v).ok())
            .unwrap_or_else(|| explanation.policy.text.clone()),
        last_run: (which == Which::InForce).then(|| view::time_or_never(explanation.policy.last_evaluated_at)),
        evaluated_at: view::time(explanation.evaluated_at),
        rows: all.into_iter().skip((page - 1) * ROWS_PER_PAGE).take(ROWS_PER_PAGE).collect(),
        total,
        first: (page - 1) * ROWS_PER_PAGE + 1,
        previous: (page > 1).then(|| page_link(page - 1)),
        next: (page < pages).then(|| page_link(page + 1)),
        expiring: explanation.evaluation.expired.len(),
        archiving: explanation.evaluation.transitioned.len(),
    }
}

/// `None` when the repository has no such policy.
fn absent_if_missing(
    result: Result<LifecycleExplanation, RegistryError>,
) -> Result<Option<LifecycleExplanation>, ConsoleError> {
    match result {
        Ok(explanation) => Ok(Some(explanation)),
        Err(RegistryError::PolicyNotFound(_)) => Ok(None),
        Err(other) => Err(other.into()),
    }
}

pub async fn page(
    console: &Console,
    visitor: &Visitor,
    repo: &RepositoryName,
    uri: &Uri,
) -> Result<Response, ConsoleError> {
    let registry = &console.registry;
    authz::authorize(registry, &visitor.ctx, Scope::Repository(repo), authz::READ_LIFECYCLE).await?;
    authz::authorize(registry, &visitor.ctx, Scope::Repository(repo), authz::LIST_IMAGES).await?;
    registry.describe_repository(repo).await?;
    let query = axum::extract::Query::<Query>::try_from_uri(uri).map(|q| q.0).unwrap_or_default();
    let in_force = absent_if_missing(registry.explain_lifecycle_policy(repo).await)?;
    let preview = absent_if_missing(registry.explain_lifecycle_preview(repo).await)?;
    let which = match (query.view.as_str(), &in_force, &preview) {
        ("preview", _, Some(_)) | (_, None, Some(_)) => Some(Which::Preview),
        (_, Some(_), _) => Some(Which::InForce),
        (_, None, None) => None,
    };
    let href = paths::href_lifecycle(repo);
    let mut switch = Vec::new();
    if in_force.is_some() {
        switch.push(("Policy in force".into(), format!("{href}?view=policy"), which == Some(Which::InForce)));
    }
    if let Some(preview) = &preview {
        let label = format!("Last preview (started {})", view::time(preview.evaluated_at));
        switch.push((label, format!("{href}?view=preview"), which == Some(Which::Preview)));
    }
    let shown = match which {
        None => None,
        Some(which) => {
            let inventory = Inventory::load(registry, repo).await?;
            let explanation = match which {
                Which::InForce => in_force.as_ref(),
                Which::Preview => preview.as_ref(),
            };
            explanation.map(|e| policy_view(&inventory, repo, which, e, query.page))
        }
    };
    Ok(render(&LifecyclePage {
        layout: visitor.layout(),
        name: repo.to_string(),
        repository_href: paths::href_repository(repo),
        tabs: Tabs::new(console, visitor, repo, "lifecycle").await?,
        switch,
        shown,
    }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn rules_read_as_sentences_in_priority_order() {
        let text = r#"{"rules":[
            {"rulePriority":2,"description":"old untagged","selection":{"tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"days","countNumber":14},"action":{"type":"expire"}},
            {"rulePriority":1,"selection":{"tagStatus":"tagged","tagPrefixList":["v"],"countType":"imageCountMoreThan","countNumber":3},"action":{"type":"expire"}}]}"#;
        let rows = super::rule_rows(text);
        assert_eq!(rows.iter().map(|r| r.priority.as_str()).collect::<Vec<_>>(), ["1", "2"]);
        assert_eq!(rows[0].selects, "tagged images with tags starting v");
        assert_eq!(rows[0].count, "keeps the newest 3, expires the rest");
        assert_eq!(rows[1].selects, "untagged images");
        assert_eq!(rows[1].count, "expires those pushed more than 14 days ago");
        assert_eq!(rows[1].description, "old untagged");
    }

    #[test]
    fn archive_rules_say_what_they_move_and_what_they_judge() {
        let text = r#"{"rules":[
            {"rulePriority":1,"selection":{"tagStatus":"any","countType":"sinceImagePulled","countUnit":"days","countNumber":30},"action":{"type":"transition","targetStorageClass":"archive"}},
            {"rulePriority":2,"selection":{"tagStatus":"any","storageClass":"archive","countType":"sinceImageTransitioned","countUnit":"days","countNumber":90},"action":{"type":"expire"}}]}"#;
        let rows = super::rule_rows(text);
        assert_eq!(
            rows.iter().map(|r| (r.selects.as_str(), r.count.as_str())).collect::<Vec<_>>(),
            [
                ("all images", "archives those not pulled for 30 days"),
                ("all images in the archive", "expires those archived more than 90 days ago"),
            ]
        );
    }
}

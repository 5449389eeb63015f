//! The repositories page: every repository the visitor may describe, searchable, with its image
//! count, stored size, last push and settings badges.

use askama::Template;
use axum::http::Uri;
use axum::response::Response;
use berth_iam::RequestContext;
use berth_registry::pull_through::{self, CacheRule};
use berth_registry::settings::TagMutability;
use berth_registry::{Registry, RepositoryInfo};
use berth_spec::RepositoryName;
use serde::Deserialize;

use super::render;
use crate::authz::{self, Scope};
use crate::inventory::Inventory;
use crate::view::{self, Layout};
use crate::{Console, ConsoleError, Visitor, paths};

/// Repositories per page.
const PAGE: usize = 50;
/// Repositories read per service call while filtering.
const BATCH: usize = 200;

#[derive(Deserialize, Default)]
#[serde(default)]
struct Query {
    q: String,
    after: Option<String>,
}

pub struct Badge {
    /// What the badge says (a cache rule's names its upstream).
    pub label: String,
    pub class: &'static str,
    pub title: String,
}

/// Which badges a visitor may see beyond what `DescribeRepositories` answers (tag mutability).
pub struct BadgeAccess {
    /// A cache rule's upstream, which ECR shows only to `DescribePullThroughCacheRules`.
    pub upstream: bool,
    pub lifecycle: bool,
    pub repository_policy: bool,
}

impl BadgeAccess {
    pub async fn of(
        registry: &Registry,
        ctx: &RequestContext,
        repo: &RepositoryName,
        upstream: bool,
    ) -> Result<BadgeAccess, ConsoleError> {
        let may = |actions| authz::allowed(registry, ctx, Scope::Repository(repo), actions);
        Ok(BadgeAccess {
            upstream,
            lifecycle: may(authz::READ_LIFECYCLE).await?,
            repository_policy: may(authz::READ_REPOSITORY_POLICY).await?,
        })
    }
}

/// A repository's settings as badges, and the pull-through cache rule it is under (of `rules`),
/// as far as `access` lets the visitor see them.
pub fn badges(info: &RepositoryInfo, rules: &[CacheRule], access: &BadgeAccess) -> Vec<Badge> {
    let settings = &info.settings;
    let mut badges = Vec::new();
    let filters = || {
        settings.image_tag_mutability_exclusion_filters.iter().map(|f| f.filter.as_str()).collect::<Vec<_>>().join(", ")
    };
    match settings.image_tag_mutability {
        TagMutability::Mutable => {}
        TagMutability::Immutable => badges.push(Badge {
            label: "immutable tags".into(),
            class: "immutable",
            title: "Tags cannot be moved once pushed.".into(),
        }),
        TagMutability::ImmutableWithExclusion => badges.push(Badge {
            label: "immutable tags*".into(),
            class: "immutable",
            title: format!("Tags cannot be moved, except those matching: {}", filters()),
        }),
        TagMutability::MutableWithExclusion => badges.push(Badge {
            label: "some immutable tags".into(),
            class: "immutable",
            title: format!("Tags matching these filters cannot be moved: {}", filters()),
        }),
    }
    if access.lifecycle && settings.lifecycle_policy.is_some() {
        badges.push(Badge {
            label: "lifecycle policy".into(),
            class: "lifecycle",
            title: "Old images expire by rule.".into(),
        });
    }
    if access.repository_policy && settings.repository_policy.is_some() {
        badges.push(Badge {
            label: "repository policy".into(),
            class: "policy",
            title: "A repository policy narrows who may do what here.".into(),
        });
    }
    if let Some(rule) = pull_through::rule_for(rules, info.name.as_str()) {
        let prefix = &rule.ecr_repository_prefix;
        badges.push(if access.upstream {
            let upstream = &rule.upstream.upstream_registry_url;
            Badge {
                label: format!("cache: {upstream}"),
                class: "cache",
                title: format!("Pull-through cache rule {prefix}: images come from {upstream}"),
            }
        } else {
            Badge {
                label: "pull-through cache".into(),
                class: "cache",
                title: format!("Pull-through cache rule {prefix}: images come from an upstream registry"),
            }
        });
    }
    badges
}

struct Row {
    name: String,
    href: String,
    images: String,
    manifests: String,
    size: String,
    size_title: String,
    last_push: String,
    badges: Vec<Badge>,
}

#[derive(Template)]
#[template(path = "repositories.html")]
struct RepositoriesPage {
    layout: Layout,
    q: String,
    rows: Vec<Row>,
    next: Option<String>,
    paged: bool,
}

pub async fn page(console: &Console, visitor: &Visitor, uri: &Uri) -> Result<Response, ConsoleError> {
    let query = axum::extract::Query::<Query>::try_from_uri(uri).map(|q| q.0).unwrap_or_default();
    let needle = query.q.trim().to_lowercase();
    let registry = &console.registry;
    let mut shown: Vec<RepositoryInfo> = Vec::new();
    let mut cursor = query.after.clone();
    let mut more_after_page = false;
    'scan: loop {
        let (batch, more) = registry.list_repositories(cursor.as_deref(), BATCH).await?;
        cursor = batch.last().map(|r| r.name.to_string());
        for info in batch {
            if !needle.is_empty() && !info.name.as_str().contains(&needle) {
                continue;
            }
            if !authz::allowed(registry, &visitor.ctx, Scope::Repository(&info.name), authz::LIST_REPOSITORY).await? {
                continue;
            }
            if shown.len() == PAGE {
                more_after_page = true;
                break 'scan;
            }
            shown.push(info);
        }
        if !more {
            break;
        }
    }
    let rules = registry.cache_rules().await?;
    let show_upstream = authz::allowed(registry, &visitor.ctx, Scope::Registry, authz::READ_CACHE_RULES).await?;
    let mut rows = Vec::with_capacity(shown.len());
    for info in &shown {
        let listed = authz::allowed(registry, &visitor.ctx, Scope::Repository(&info.name), authz::LIST_IMAGES).await?;
        let inventory = if listed { Some(Inventory::load(registry, &info.name).await?) } else { None };
        let not_allowed = || "—".to_owned();
        rows.push(Row {
            name: info.name.to_string(),
            href: paths::href_repository(&info.name),
            images: inventory.as_ref().map_or_else(not_allowed, |i| i.top_level().len().to_string()),
            manifests: inventory.as_ref().map_or_else(String::new, |i| match i.entries.len() {
                1 => "1 manifest".into(),
                n => format!("{n} manifests"),
            }),
            size: inventory.as_ref().map_or_else(not_allowed, |i| view::size(i.stored_bytes())),
            size_title: inventory.as_ref().map_or_else(String::new, |i| {
                format!("{} bytes of configs and layers, each counted once", i.stored_bytes())
            }),
            last_push: inventory.as_ref().map_or_else(not_allowed, |i| view::time_or_never(i.last_push())),
            badges: badges(info, &rules, &BadgeAccess::of(registry, &visitor.ctx, &info.name, show_upstream).await?),
        });
    }
    let next = more_after_page.then(|| {
        let last = shown.last().map(|r| r.name.to_string()).unwrap_or_default();
        format!("{}?q={}&after={}", paths::href_repositories(), super::urlencode(&query.q), super::urlencode(&last))
    });
    Ok(render(&RepositoriesPage { layout: visitor.layout(), q: query.q, rows, next, paged: query.after.is_some() }))
}

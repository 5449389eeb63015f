//! The repository page: its images newest first, each with tags, digest, size and times; a
//! multi-arch index as a platform matrix; referrers (signatures, SBOMs, attestations) grouped
//! under their subject; pull commands; and the actions the visitor may take.

use askama::Template;
use axum::http::Uri;
use axum::response::Response;
use berth_registry::RepositoryInfo;
use berth_registry::settings::TagMutability;
use berth_spec::{Descriptor, RepositoryName};
use serde::Deserialize;

use super::render;
use super::repositories::{Badge, BadgeAccess, badges};
use crate::authz::{self, Capabilities, Scope};
use crate::inventory::{Entry, Inventory};
use crate::paths::{self, RepositoryAction};
use crate::view::{self, Layout};
use crate::{Console, ConsoleError, Visitor};

/// The tabs every repository page shows.
pub struct Tabs {
    /// `None` where the visitor may not open the page (no tab leads to "Not allowed").
    pub images: Option<String>,
    pub lifecycle: Option<String>,
    pub permissions: Option<String>,
    pub current: &'static str,
}

impl Tabs {
    pub async fn new(
        console: &Console,
        visitor: &Visitor,
        repo: &RepositoryName,
        current: &'static str,
    ) -> Result<Tabs, ConsoleError> {
        let may = async |actions: &[&'static str]| {
            authz::allowed(&console.registry, &visitor.ctx, Scope::Repository(repo), actions).await
        };
        let listed = may(authz::LIST_REPOSITORY).await?;
        let lifecycle = may(authz::READ_LIFECYCLE).await? && may(authz::LIST_IMAGES).await?;
        Ok(Tabs {
            images: listed.then(|| paths::href_repository(repo)),
            lifecycle: lifecycle.then(|| paths::href_lifecycle(repo)),
            permissions: listed.then(|| paths::href_permissions(repo)),
            current,
        })
    }
}

pub struct TagChip {
    pub name: String,
    pub immutable: bool,
}

/// One row of a platform matrix: an index entry and the child it names.
pub struct PlatformRow {
    pub os: String,
    pub architecture: String,
    pub variant: String,
    pub digest: String,
    pub short: String,
    pub href: String,
    pub size: String,
    /// Config and layers of the child, in bytes (`None` if the child is not readable).
    pub size_bytes: Option<u64>,
    pub layers: String,
    pub note: Option<String>,
}

pub struct ReferrerItem {
    pub digest: String,
    pub short: String,
    pub href: String,
    pub size: String,
    pub pushed: String,
    /// The platform it refers to when its subject is a child of the image, not the image.
    pub of: Option<String>,
}

pub struct ReferrerGroup {
    pub label: &'static str,
    pub artifact_type: String,
    pub items: Vec<ReferrerItem>,
}

pub struct ImageCard {
    pub digest: String,
    pub short: String,
    pub href: String,
    pub tags: Vec<TagChip>,
    /// Tags beyond those shown.
    pub more_tags: usize,
    pub kind: &'static str,
    pub kind_class: &'static str,
    pub media_type: String,
    pub artifact_type: Option<String>,
    pub size: String,
    pub size_title: String,
    pub pushed: String,
    pub pushed_iso: String,
    pub pulled: String,
    pub platforms: Vec<PlatformRow>,
    pub referrer_groups: Vec<ReferrerGroup>,
    pub pull_by_tag: Vec<String>,
    pub pull_by_digest: String,
    /// The subject's digest when this manifest refers to one that is not in the repository.
    pub dangling_subject: Option<String>,
}

/// What kind of thing a manifest is, for people: label and CSS class.
pub fn kind_of(entry: &Entry) -> (&'static str, &'static str) {
    let Some(manifest) = &entry.manifest else { return ("Unreadable manifest", "unknown") };
    if entry.is_index() {
        return ("Multi-arch index", "index");
    }
    let config_type = manifest.config.as_ref().map(|c| c.media_type.as_str()).unwrap_or_default();
    let image_config = matches!(
        config_type,
        "application/vnd.oci.image.config.v1+json" | "application/vnd.docker.container.image.v1+json"
    );
    if manifest.artifact_type.is_some() || !image_config { ("Artifact", "artifact") } else { ("Image", "image") }
}

/// Friendly names for the artifact types that signing and SBOM tools push as referrers.
pub fn artifact_label(artifact_type: &str) -> &'static str {
    let t = artifact_type.to_ascii_lowercase();
    if t.contains("sigstore.bundle") {
        "Sigstore bundles"
    } else if t.contains("signature") || t.contains("cosign.artifact.sig") {
        "Signatures"
    } else if t.contains("spdx") || t.contains("cyclonedx") || t.contains("sbom") || t.contains("syft") {
        "SBOMs"
    } else if t.contains("in-toto") || t.contains("attestation") || t.contains("provenance") {
        "Attestations"
    } else {
        "Other artifacts"
    }
}

fn platform_label(descriptor: &Descriptor) -> Option<String> {
    let p = descriptor.platform.as_ref()?;
    Some(match &p.variant {
        Some(variant) => format!("{}/{}/{variant}", p.os, p.architecture),
        None => format!("{}/{}", p.os, p.architecture),
    })
}

/// The platform matrix of an index entry: one row per entry of its `manifests`.
pub fn platform_rows(inventory: &Inventory, repo: &RepositoryName, index: &Entry) -> Vec<PlatformRow> {
    let Some(manifest) = &index.manifest else { return vec![] };
    manifest
        .manifests
        .iter()
        .map(|descriptor| {
            let child = inventory.get(&descriptor.digest).map(|i| &inventory.entries[i]);
            let child_manifest = child.and_then(|c| c.manifest.as_ref());
            let size_bytes = child_manifest.map(|m| m.required_blobs().map(|d| d.size).sum::<u64>());
            let annotation = |key: &str| descriptor.annotations.get(key).map(String::as_str);
            let note = match (annotation("vnd.docker.reference.type"), annotation("vnd.docker.reference.digest")) {
                (Some("attestation-manifest"), Some(of)) => {
                    Some(format!("build attestation of {}", of.get(..19).unwrap_or(of)))
                }
                (Some(kind), _) => Some(kind.to_owned()),
                (None, _) if child.is_none() => Some("not in this repository".into()),
                (None, _) => None,
            };
            let platform = descriptor.platform.as_ref();
            PlatformRow {
                os: platform.map_or("—".into(), |p| p.os.clone()),
                architecture: platform.map_or("—".into(), |p| p.architecture.clone()),
                variant: platform.and_then(|p| p.variant.clone()).unwrap_or_else(|| "—".into()),
                digest: descriptor.digest.to_string(),
                short: view::short_digest(&descriptor.digest),
                href: paths::href_image(repo, &descriptor.digest),
                size: size_bytes.map_or_else(|| "—".into(), view::size),
                size_bytes,
                layers: child_manifest.map_or_else(|| "—".into(), |m| m.layers.len().to_string()),
                note,
            }
        })
        .collect()
}

/// The referrers of `entry` and of the manifests it lists, grouped by kind.
pub fn referrer_groups(inventory: &Inventory, repo: &RepositoryName, entry: &Entry) -> Vec<ReferrerGroup> {
    let mut subjects: Vec<(&Entry, Option<String>)> = vec![(entry, None)];
    if let Some(manifest) = &entry.manifest {
        for descriptor in &manifest.manifests {
            if let Some(child) = inventory.get(&descriptor.digest) {
                let label = platform_label(descriptor).unwrap_or_else(|| view::short_digest(&descriptor.digest));
                subjects.push((&inventory.entries[child], Some(label)));
            }
        }
    }
    let mut groups: Vec<ReferrerGroup> = Vec::new();
    for (subject, of) in subjects {
        for &r in &subject.referrers {
            let referrer = &inventory.entries[r];
            let artifact_type = referrer.record.manifest.artifact_type.clone().unwrap_or_else(|| "(none)".into());
            let item = ReferrerItem {
                digest: referrer.digest().to_string(),
                short: view::short_digest(referrer.digest()),
                href: paths::href_image(repo, referrer.digest()),
                size: view::size(referrer.manifest.as_ref().map_or(0, |m| m.required_blobs().map(|d| d.size).sum())),
                pushed: view::time(referrer.record.manifest.pushed_at),
                of: of.clone(),
            };
            match groups.iter_mut().find(|g| g.artifact_type == artifact_type) {
                Some(group) => group.items.push(item),
                None => groups.push(ReferrerGroup {
                    label: artifact_label(&artifact_type),
                    artifact_type,
                    items: vec![item],
                }),
            }
        }
    }
    groups.sort_by(|a, b| a.label.cmp(b.label).then_with(|| a.artifact_type.cmp(&b.artifact_type)));
    groups
}

/// Tags shown on an image's card in the repository page, each a chip with its own form and pull
/// command: an image under thousands of tags made a page of megabytes. The rest are counted,
/// and the image's page shows more.
pub const TAGS_ON_CARD: usize = 20;

/// `tag_limit`: how many of the image's tags get a chip and a pull command.
pub fn image_card(
    inventory: &Inventory,
    info: &RepositoryInfo,
    host: &str,
    entry: &Entry,
    tag_limit: usize,
) -> ImageCard {
    let repo = &info.name;
    let record = &entry.record.manifest;
    let (kind, kind_class) = kind_of(entry);
    let shown_tags = &entry.record.tags[..entry.record.tags.len().min(tag_limit)];
    let blob_bytes: u64 = entry.manifest.as_ref().map_or(0, |m| m.required_blobs().map(|d| d.size).sum());
    let (size, size_title) = if entry.is_index() {
        (
            format!("up to {} per platform", view::size(record.image_size)),
            "the largest platform's config and layers".into(),
        )
    } else {
        (view::size(blob_bytes), format!("{blob_bytes} bytes of config and layers"))
    };
    ImageCard {
        digest: record.digest.to_string(),
        short: view::short_digest(&record.digest),
        href: paths::href_image(repo, &record.digest),
        tags: shown_tags
            .iter()
            .map(|t| TagChip { name: t.clone(), immutable: info.settings.tag_is_immutable(t) })
            .collect(),
        more_tags: entry.record.tags.len() - shown_tags.len(),
        kind,
        kind_class,
        media_type: record.media_type.clone(),
        artifact_type: entry.manifest.as_ref().and_then(|m| m.effective_artifact_type().map(str::to_owned)),
        size,
        size_title,
        pushed: view::time(record.pushed_at),
        pushed_iso: view::datetime(record.pushed_at),
        pulled: view::time_or_never(record.last_pulled_at),
        platforms: if entry.is_index() { platform_rows(inventory, repo, entry) } else { vec![] },
        referrer_groups: referrer_groups(inventory, repo, entry),
        pull_by_tag: shown_tags.iter().map(|t| format!("docker pull {host}/{repo}:{t}")).collect(),
        pull_by_digest: format!("docker pull {host}/{repo}@{}", record.digest),
        dangling_subject: match (&record.subject, entry.subject) {
            (Some(subject), None) => Some(subject.to_string()),
            _ => None,
        },
    }
}

/// The forms' targets.
pub struct ActionLinks {
    pub delete_image: String,
    pub add_tag: String,
    pub remove_tag: String,
    pub tag_mutability: String,
}

impl ActionLinks {
    pub fn new(repo: &RepositoryName) -> ActionLinks {
        ActionLinks {
            delete_image: paths::href_action(repo, RepositoryAction::DeleteImage),
            add_tag: paths::href_action(repo, RepositoryAction::AddTag),
            remove_tag: paths::href_action(repo, RepositoryAction::RemoveTag),
            tag_mutability: paths::href_action(repo, RepositoryAction::TagMutability),
        }
    }
}

#[derive(Template)]
#[template(path = "repository.html")]
struct RepositoryPage {
    layout: Layout,
    name: String,
    uri: String,
    badges: Vec<Badge>,
    tabs: Tabs,
    caps: Capabilities,
    actions: ActionLinks,
    notice: Option<&'static str>,
    immutable: bool,
    mutability: &'static str,
    exclusion_filters: String,
    cards: Vec<ImageCard>,
    manifests: usize,
    /// Images in the repository (the cards are one page of them).
    images: usize,
    /// The first card's place among them, from 1.
    first: usize,
    previous: Option<String>,
    next: Option<String>,
}

/// Image cards per page: a card holds up to three forms, and a thousand made a 3.9 MB page.
const IMAGES_PER_PAGE: usize = 50;

#[derive(Deserialize, Default)]
#[serde(default)]
struct Query {
    done: String,
    /// The page of images, from 1.
    page: usize,
}

/// What an action that redirected here did (only fixed texts: nothing from the URL is shown).
fn notice(done: &str) -> Option<&'static str> {
    Some(match done {
        "deleted" => "The image was deleted.",
        "tag-added" => "The tag was added.",
        "tag-removed" => "The tag was removed; the image stays.",
        "immutable" => "Tags of this repository are now immutable.",
        "mutable" => "Tags of this repository are now mutable.",
        _ => return None,
    })
}

pub async fn page(
    console: &Console,
    visitor: &Visitor,
    repo: &RepositoryName,
    uri: &Uri,
) -> Result<Response, ConsoleError> {
    let registry = &console.registry;
    authz::authorize(registry, &visitor.ctx, Scope::Repository(repo), authz::LIST_REPOSITORY).await?;
    let info = registry.describe_repository(repo).await?;
    let caps = Capabilities::of(registry, &visitor.ctx, repo).await?;
    let query = axum::extract::Query::<Query>::try_from_uri(uri).map(|q| q.0).unwrap_or_default();
    let inventory = if caps.list_images { Some(Inventory::load(registry, repo).await?) } else { None };
    let top = inventory.as_ref().map(Inventory::top_level).unwrap_or_default();
    let (manifests, images) = (inventory.as_ref().map_or(0, |i| i.entries.len()), top.len());
    let pages = images.div_ceil(IMAGES_PER_PAGE).max(1);
    let page = query.page.clamp(1, pages);
    let cards = match &inventory {
        Some(inventory) => top
            .into_iter()
            .skip((page - 1) * IMAGES_PER_PAGE)
            .take(IMAGES_PER_PAGE)
            .map(|i| image_card(inventory, &info, &console.registry_host, &inventory.entries[i], TAGS_ON_CARD))
            .collect(),
        None => vec![],
    };
    let page_link = |page: usize| format!("{}?page={page}", paths::href_repository(repo));
    let show_upstream =
        authz::allowed(&console.registry, &visitor.ctx, Scope::Registry, authz::READ_CACHE_RULES).await?;
    let access = BadgeAccess::of(&console.registry, &visitor.ctx, repo, show_upstream).await?;
    let badges = badges(&info, &console.registry.cache_rules().await?, &access);
    let settings = &info.settings;
    Ok(render(&RepositoryPage {
        layout: visitor.layout(),
        name: repo.to_string(),
        uri: format!("{}/{repo}", console.registry_host),
        badges,
        tabs: Tabs::new(console, visitor, repo, "images").await?,
        caps,
        actions: ActionLinks::new(repo),
        notice: notice(&query.done),
        immutable: matches!(
            settings.image_tag_mutability,
            TagMutability::Immutable | TagMutability::ImmutableWithExclusion
        ),
        mutability: match settings.image_tag_mutability {
            TagMutability::Mutable => "Mutable: pushing a tag again moves it.",
            TagMutability::Immutable => "Immutable: a tag, once pushed, always names the same image.",
            TagMutability::ImmutableWithExclusion => "Immutable, except tags matching the exclusion filters.",
            TagMutability::MutableWithExclusion => "Mutable, except tags matching the filters, which are immutable.",
        },
        exclusion_filters: settings
            .image_tag_mutability_exclusion_filters
            .iter()
            .map(|f| f.filter.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        cards,
        manifests,
        images,
        first: (page - 1) * IMAGES_PER_PAGE + 1,
        previous: (page > 1).then(|| page_link(page - 1)),
        next: (page < pages).then(|| page_link(page + 1)),
    }))
}

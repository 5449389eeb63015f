//! The image page: one manifest in full. For an image, its config (entrypoint, command, env,
//! labels, history) and layers; for an index, its platform matrix; for an artifact, its blobs
//! and subject; and the raw JSON of each, behind a toggle that works without JavaScript.

use std::collections::BTreeMap;

use askama::Template;
use axum::response::Response;
use berth_registry::{ImageSelector, RepositoryInfo};
use berth_spec::{Digest, RepositoryName};
use futures::TryStreamExt;
use serde::Deserialize;

use super::render;
use super::repository::{ImageCard, Tabs, image_card};
use crate::authz::{self, Scope};
use crate::inventory::Inventory;
use crate::paths::RepositoryAction;
use crate::view::{self, Layout};
use crate::{Console, ConsoleError, Visitor, paths};

/// Configs larger than this are not shown (real ones are a few KiB).
const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;
/// Rows a list on the page shows, and characters of raw JSON: a pushed document may hold tens of
/// thousands of labels or annotations, which no one reads on a page and a browser chokes on.
const MAX_ROWS: usize = 500;
const MAX_RAW_CHARS: usize = 256 * 1024;
/// Tags (and their pull commands) the page names; `aws ecr list-images` lists any more.
const TAGS_ON_IMAGE_PAGE: usize = 200;

/// The first [`MAX_ROWS`] of a list, and how many more there are.
struct Rows<T> {
    shown: Vec<T>,
    hidden: usize,
}

impl<T> Rows<T> {
    fn new(mut all: Vec<T>) -> Rows<T> {
        let hidden = all.len().saturating_sub(MAX_ROWS);
        all.truncate(MAX_ROWS);
        Rows { shown: all, hidden }
    }

    fn is_empty(&self) -> bool {
        self.shown.is_empty()
    }
}

const IMAGE_CONFIG_TYPES: [&str; 2] =
    ["application/vnd.oci.image.config.v1+json", "application/vnd.docker.container.image.v1+json"];

/// The parts of an OCI / Docker image config the page shows; unknown fields are ignored.
#[derive(Deserialize, Default)]
#[serde(default)]
struct ImageConfig {
    architecture: Option<String>,
    os: Option<String>,
    variant: Option<String>,
    created: Option<String>,
    author: Option<String>,
    config: Option<ContainerConfig>,
    history: Vec<History>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "PascalCase")]
struct ContainerConfig {
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    env: Option<Vec<String>>,
    labels: Option<BTreeMap<String, String>>,
    working_dir: Option<String>,
    user: Option<String>,
    exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    stop_signal: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct History {
    created: Option<String>,
    created_by: Option<String>,
    comment: Option<String>,
    empty_layer: bool,
}

struct HistoryRow {
    created: String,
    created_by: String,
    comment: String,
    empty_layer: bool,
}

struct LayerRow {
    digest: String,
    short: String,
    media_type: String,
    size: String,
    size_bytes: u64,
}

struct EnvRow {
    name: String,
    value: String,
}

/// What the config says, ready to show.
struct ConfigView {
    platform: String,
    created: String,
    author: String,
    /// Shown as code; `None` shows as a dash.
    entrypoint: Option<String>,
    cmd: Option<String>,
    working_dir: Option<String>,
    user: Option<String>,
    exposed_ports: String,
    stop_signal: String,
    env: Rows<EnvRow>,
    labels: Rows<(String, String)>,
    history: Rows<HistoryRow>,
    raw: String,
}

#[derive(Template)]
#[template(path = "image.html")]
struct ImagePage {
    layout: Layout,
    name: String,
    repository_href: String,
    tabs: Tabs,
    card: ImageCard,
    config_descriptor: Option<LayerRow>,
    layers: Rows<LayerRow>,
    config: Option<ConfigView>,
    config_note: Option<String>,
    annotations: Rows<(String, String)>,
    subject_href: Option<String>,
    raw_manifest: String,
    parents: Vec<(String, String)>,
    /// Whether the visitor may describe images: tags and push and pull times are what
    /// `DescribeImages` answers, not what a pull (`BatchGetImage` by digest) reads.
    described: bool,
    may_delete: bool,
    delete_action: String,
}

/// `["sh", "-c", "x y"]` as a shell would read it back.
fn command_line(words: &[String]) -> String {
    words
        .iter()
        .map(|w| {
            if !w.is_empty() && w.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b)) {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `bytes` formatted for reading, at most [`MAX_RAW_CHARS`] of it.
fn pretty(bytes: &[u8]) -> String {
    let mut text = serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| String::from_utf8_lossy(bytes).into_owned());
    if let Some((cut, _)) = text.char_indices().nth(MAX_RAW_CHARS) {
        text.truncate(cut);
        text.push_str("\n… (cut here: pull the document to read it all)");
    }
    text
}

fn config_view(bytes: &[u8]) -> Result<ConfigView, String> {
    let config: ImageConfig =
        serde_json::from_slice(bytes).map_err(|e| format!("the config is not valid JSON: {e}"))?;
    let container = config.config.unwrap_or_default();
    let or_dash = |s: Option<String>| s.filter(|s| !s.is_empty()).unwrap_or_else(|| "—".into());
    let platform = match (&config.os, &config.architecture, &config.variant) {
        (Some(os), Some(arch), Some(variant)) => format!("{os}/{arch}/{variant}"),
        (Some(os), Some(arch), None) => format!("{os}/{arch}"),
        _ => "—".into(),
    };
    Ok(ConfigView {
        platform,
        created: or_dash(config.created),
        author: or_dash(config.author),
        entrypoint: container.entrypoint.as_deref().map(command_line).filter(|s| !s.is_empty()),
        cmd: container.cmd.as_deref().map(command_line).filter(|s| !s.is_empty()),
        working_dir: container.working_dir.filter(|s| !s.is_empty()),
        user: container.user.filter(|s| !s.is_empty()),
        exposed_ports: or_dash(container.exposed_ports.map(|p| p.into_keys().collect::<Vec<_>>().join(", "))),
        stop_signal: or_dash(container.stop_signal),
        env: Rows::new(
            container
                .env
                .unwrap_or_default()
                .into_iter()
                .map(|pair| match pair.split_once('=') {
                    Some((name, value)) => EnvRow { name: name.into(), value: value.into() },
                    None => EnvRow { name: pair, value: String::new() },
                })
                .collect(),
        ),
        labels: Rows::new(container.labels.unwrap_or_default().into_iter().collect()),
        history: Rows::new(
            config
                .history
                .into_iter()
                .map(|h| HistoryRow {
                    created: h.created.unwrap_or_default(),
                    created_by: h.created_by.unwrap_or_default(),
                    comment: h.comment.unwrap_or_default(),
                    empty_layer: h.empty_layer,
                })
                .collect(),
        ),
        raw: pretty(bytes),
    })
}

fn layer_row(descriptor: &berth_spec::Descriptor) -> LayerRow {
    LayerRow {
        digest: descriptor.digest.to_string(),
        short: view::short_digest(&descriptor.digest),
        media_type: descriptor.media_type.clone(),
        size: view::size(descriptor.size),
        size_bytes: descriptor.size,
    }
}

/// Reads the config blob, if it is an image config of a reasonable size.
async fn read_config(console: &Console, repo: &RepositoryName, digest: &Digest) -> Result<Vec<u8>, ConsoleError> {
    let blob = console.registry.get_blob(repo, digest, None).await?;
    if blob.size > MAX_CONFIG_BYTES {
        return Err(ConsoleError::BadRequest(format!("the config is {} bytes; too large to show", blob.size)));
    }
    let chunks: Vec<_> =
        blob.stream.try_collect().await.map_err(|e| ConsoleError::Internal(format!("reading config {digest}: {e}")))?;
    Ok(chunks.concat())
}

pub async fn page(
    console: &Console,
    visitor: &Visitor,
    repo: &RepositoryName,
    digest: &Digest,
) -> Result<Response, ConsoleError> {
    let registry = &console.registry;
    authz::authorize(registry, &visitor.ctx, Scope::Repository(repo), authz::READ_IMAGE).await?;
    let info: RepositoryInfo = registry.describe_repository(repo).await?;
    let found = registry.resolve_images(repo, &[ImageSelector::Digest(digest.clone())], None).await?;
    let record = found.into_iter().next().ok_or_else(|| ConsoleError::NotFound(format!("no image {digest}")))??;
    // Children and referrers need the rest of the repository; listing it needs its own permission.
    let described = authz::allowed(registry, &visitor.ctx, Scope::Repository(repo), authz::LIST_IMAGES).await?;
    let inventory = if described {
        Inventory::load(registry, repo).await?
    } else {
        // Without the listing, an index's children still show: the visitor may pull them.
        let alone = Inventory::from_records(vec![record.clone()]);
        let children: Vec<ImageSelector> = alone.entries[0]
            .manifest
            .iter()
            .flat_map(|m| &m.manifests)
            .map(|child| ImageSelector::Digest(child.digest.clone()))
            .collect();
        let mut records = vec![record.clone()];
        if !children.is_empty() {
            records.extend(registry.resolve_images(repo, &children, None).await?.into_iter().flatten());
        }
        Inventory::from_records(records)
    };
    let entry_at = inventory.get(digest);
    let single;
    let entry = match entry_at {
        Some(i) => &inventory.entries[i],
        None => {
            // Deleted between the two reads: show what was resolved.
            single = Inventory::from_records(vec![record]);
            &single.entries[0]
        }
    };
    let mut card = image_card(&inventory, &info, &console.registry_host, entry, TAGS_ON_IMAGE_PAGE);
    if !described {
        card.tags.clear();
        card.more_tags = 0;
        card.pull_by_tag.clear();
    }
    let manifest = entry.manifest.as_ref();
    let config_descriptor = manifest.and_then(|m| m.config.as_ref());
    let (config, config_note) = match config_descriptor {
        Some(d) if IMAGE_CONFIG_TYPES.contains(&d.media_type.as_str()) => {
            match read_config(console, repo, &d.digest).await {
                Ok(bytes) => match config_view(&bytes) {
                    Ok(view) => (Some(view), None),
                    Err(note) => (None, Some(note)),
                },
                // Absent, or the image is archived: say which.
                Err(ConsoleError::NotFound(why)) => (None, Some(format!("The config cannot be read: {why}."))),
                Err(ConsoleError::BadRequest(note)) => (None, Some(note)),
                Err(other) => return Err(other),
            }
        }
        Some(d) => (None, Some(format!("The config is a {} blob, not an image config.", d.media_type))),
        None => (None, None),
    };
    let parents = entry
        .parents
        .iter()
        .map(|&p| {
            let parent = inventory.entries[p].digest();
            (paths::href_image(repo, parent), view::short_digest(parent))
        })
        .collect();
    Ok(render(&ImagePage {
        layout: visitor.layout(),
        name: repo.to_string(),
        repository_href: paths::href_repository(repo),
        tabs: Tabs::new(console, visitor, repo, "images").await?,
        config_descriptor: config_descriptor.map(layer_row),
        layers: Rows::new(manifest.map(|m| m.layers.iter().map(layer_row).collect()).unwrap_or_default()),
        config,
        config_note,
        annotations: Rows::new(manifest.map(|m| m.annotations.clone().into_iter().collect()).unwrap_or_default()),
        subject_href: entry.record.manifest.subject.as_ref().map(|s| paths::href_image(repo, s)),
        raw_manifest: pretty(&entry.record.manifest.content),
        parents,
        described,
        may_delete: authz::allowed(registry, &visitor.ctx, Scope::Repository(repo), authz::DELETE_IMAGE).await?,
        delete_action: paths::href_action(repo, RepositoryAction::DeleteImage),
        card,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_read_like_a_shell_line() {
        let words = ["/bin/sh", "-c", "echo 'hi' there", ""].map(String::from);
        assert_eq!(command_line(&words), r"/bin/sh -c 'echo '\''hi'\'' there' ''");
    }

    #[test]
    fn a_config_becomes_its_view() {
        let config = br#"{"architecture":"arm64","os":"linux","variant":"v8","config":{"Entrypoint":["/app"],"Cmd":["--port","80"],"Env":["PATH=/bin","EMPTY="],"Labels":{"org.opencontainers.image.source":"https://example.com"},"ExposedPorts":{"80/tcp":{}}},"history":[{"created":"2024-01-01T00:00:00Z","created_by":"COPY app /app"},{"created_by":"ENV x=y","empty_layer":true}]}"#;
        let view = config_view(config).unwrap();
        assert_eq!(view.platform, "linux/arm64/v8");
        assert_eq!((view.entrypoint.as_deref(), view.cmd.as_deref()), (Some("/app"), Some("--port 80")));
        assert_eq!(
            view.env.shown.iter().map(|e| (e.name.as_str(), e.value.as_str())).collect::<Vec<_>>(),
            [("PATH", "/bin"), ("EMPTY", "")]
        );
        assert_eq!(
            view.labels.shown,
            [("org.opencontainers.image.source".to_owned(), "https://example.com".to_owned())]
        );
        assert_eq!(view.exposed_ports, "80/tcp");
        assert_eq!(view.working_dir, None);
        assert_eq!((view.history.shown.len(), view.history.hidden), (2, 0));
        assert!(view.history.shown[1].empty_layer);
        assert!(config_view(b"not json").is_err());
        // Every field is optional: an almost empty config still shows.
        assert_eq!(config_view(b"{}").unwrap().platform, "—");
    }

    #[test]
    fn a_huge_config_shows_its_first_rows_and_the_start_of_its_json() {
        let env: Vec<String> = (0..20_000).map(|i| format!("VAR{i}={}", "x".repeat(20))).collect();
        let config = serde_json::to_vec(&serde_json::json!({"config": {"Env": env}})).unwrap();
        let view = config_view(&config).unwrap();
        assert_eq!((view.env.shown.len(), view.env.hidden), (MAX_ROWS, 20_000 - MAX_ROWS));
        assert!(view.raw.chars().count() < MAX_RAW_CHARS + 100, "{}", view.raw.len());
        assert!(view.raw.ends_with("(cut here: pull the document to read it all)"));
    }
}

//! The console's one authorization point. Every page and every action asks [`authorize`] (or
//! [`allowed`], the same decision as a yes/no for showing a button), which asks the service's
//! authorization — the function both APIs use — with the ECR actions the page or action performs,
//! so a user denied an action through the API is denied it here too, and never sees its button.

use berth_iam::{RequestContext, actions};
use berth_registry::{Registry, Resource};
use berth_spec::RepositoryName;

use crate::error::ConsoleError;

/// What a decision is about.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    Repository(&'a RepositoryName),
    /// Registry-wide settings such as the pull-through cache rules.
    Registry,
    /// Users and their keys, and the server's maintenance: the account root's alone until IAM
    /// identity policies give `iam:*` actions a meaning in Berth.
    Administration,
}

/// Listing a repository among the others.
pub const LIST_REPOSITORY: &[&str] = &[actions::DESCRIBE_REPOSITORIES];
/// A repository's images with their tags.
pub const LIST_IMAGES: &[&str] = &[actions::DESCRIBE_IMAGES, actions::LIST_IMAGES];
/// An image's manifest and config (what a pull reads).
pub const READ_IMAGE: &[&str] = &[actions::BATCH_GET_IMAGE, actions::GET_DOWNLOAD_URL_FOR_LAYER];
pub const READ_LIFECYCLE: &[&str] = &[actions::GET_LIFECYCLE_POLICY, actions::GET_LIFECYCLE_POLICY_PREVIEW];
pub const READ_REPOSITORY_POLICY: &[&str] = &[actions::GET_REPOSITORY_POLICY];
pub const READ_REGISTRY_POLICY: &[&str] = &[actions::GET_REGISTRY_POLICY];
pub const DELETE_IMAGE: &[&str] = &[actions::BATCH_DELETE_IMAGE];
/// Adding a tag puts the image's manifest again under the new tag, as ECR's PutImage does; the
/// console reads that manifest for the caller, so the caller must be allowed to read it too.
pub const ADD_TAG: &[&str] = &[actions::BATCH_GET_IMAGE, actions::PUT_IMAGE];
pub const REMOVE_TAG: &[&str] = &[actions::BATCH_DELETE_IMAGE];
pub const SET_TAG_MUTABILITY: &[&str] = &[actions::PUT_IMAGE_TAG_MUTABILITY];
/// What `docker pull` performs on the `/v2/` plane.
pub const PULL: &[&str] = &[actions::BATCH_GET_IMAGE, actions::GET_DOWNLOAD_URL_FOR_LAYER];
/// What `docker push` performs on the `/v2/` plane.
pub const PUSH: &[&str] = &[
    actions::BATCH_CHECK_LAYER_AVAILABILITY,
    actions::INITIATE_LAYER_UPLOAD,
    actions::UPLOAD_LAYER_PART,
    actions::COMPLETE_LAYER_UPLOAD,
    actions::PUT_IMAGE,
];
/// Signing in with an access key: the token `docker login` would have been given.
pub const SIGN_IN_WITH_KEY: &[&str] = &[actions::GET_AUTHORIZATION_TOKEN];
/// Reading which upstream a pull-through cache rule names.
pub const READ_CACHE_RULES: &[&str] = &[actions::DESCRIBE_PULL_THROUGH_CACHE_RULES];
/// Changing the repository's policies and settings.
pub const MANAGE: &[&str] =
    &[actions::SET_REPOSITORY_POLICY, actions::PUT_LIFECYCLE_POLICY, actions::PUT_IMAGE_TAG_MUTABILITY];

/// `Denied` unless the caller may perform every one of `actions` in `scope`.
pub async fn authorize(
    registry: &Registry,
    ctx: &RequestContext,
    scope: Scope<'_>,
    actions: &[&'static str],
) -> Result<(), ConsoleError> {
    match scope {
        Scope::Repository(repo) => registry.authorize(ctx, repo, actions).await.map_err(ConsoleError::from),
        Scope::Registry => registry.authorizer().authorize(ctx, actions, Resource::Registry).await.map_err(Into::into),
        Scope::Administration if ctx.identity.is_root() => Ok(()),
        Scope::Administration => Err(ConsoleError::Denied(
            "Only the root user may manage users and see the server's maintenance status.".into(),
        )),
    }
}

/// [`authorize`] as a yes or no; other failures (the store) are still errors.
pub async fn allowed(
    registry: &Registry,
    ctx: &RequestContext,
    scope: Scope<'_>,
    actions: &[&'static str],
) -> Result<bool, ConsoleError> {
    match authorize(registry, ctx, scope, actions).await {
        Ok(()) => Ok(true),
        Err(ConsoleError::Denied(_)) => Ok(false),
        Err(other) => Err(other),
    }
}

/// A decision on a page's actions, with why: what the permissions page shows in a cell.
pub struct Verdict {
    pub allowed: bool,
    /// For a denial, the service's denial text, and with [`Detail::Statements`] the statements
    /// that denied; else the statements that allowed (or that the root needs none).
    pub why: String,
}

/// The decision on `actions` in `repo`, from the service's own evaluator (what [`authorize`]
/// enforces), explained: the first denied action decides a denial.
pub async fn explain(
    registry: &Registry,
    ctx: &RequestContext,
    repo: &RepositoryName,
    actions: &[&'static str],
    detail: Detail,
) -> Result<Verdict, ConsoleError> {
    let mut reasons: Vec<String> = Vec::new();
    for action in actions {
        let explanation = registry.authorizer().explain(ctx, action, Resource::Repository(repo.as_str())).await?;
        let statements = match detail {
            Detail::Statements => one_line(&explanation.decision.to_string()),
            Detail::Outcome => String::new(),
        };
        if let Some(message) = explanation.message {
            return Ok(Verdict { allowed: false, why: format!("{message}. {statements}").trim_end().to_owned() });
        }
        reasons.push(match detail {
            Detail::Statements => format!("{action}: {statements}"),
            Detail::Outcome => format!("{action}: allowed"),
        });
    }
    Ok(Verdict { allowed: true, why: reasons.join("; ") })
}

/// How much of a decision [`explain`] tells: the statements that made it name the policies'
/// `Sid`s and indexes, which only a caller who may read those policies should see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    Statements,
    /// What the service's own answer says, and no more.
    Outcome,
}

/// A decision's lines (outcome, then one per statement) as one sentence.
fn one_line(text: &str) -> String {
    let mut lines = text.lines().map(str::trim);
    let head = lines.next().unwrap_or_default().to_owned();
    let rest: Vec<&str> = lines.collect();
    if rest.is_empty() { head } else { format!("{head}: {}", rest.join(", ")) }
}

/// What a caller may do in one repository: which parts of a page to show, which buttons to draw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub list_images: bool,
    pub read_image: bool,
    pub read_lifecycle: bool,
    pub read_policy: bool,
    pub delete_image: bool,
    pub add_tag: bool,
    pub remove_tag: bool,
    pub set_tag_mutability: bool,
}

impl Capabilities {
    pub async fn of(registry: &Registry, ctx: &RequestContext, repo: &RepositoryName) -> Result<Self, ConsoleError> {
        let may = async |actions| allowed(registry, ctx, Scope::Repository(repo), actions).await;
        Ok(Capabilities {
            list_images: may(LIST_IMAGES).await?,
            read_image: may(READ_IMAGE).await?,
            read_lifecycle: may(READ_LIFECYCLE).await?,
            read_policy: may(READ_REPOSITORY_POLICY).await?,
            delete_image: may(DELETE_IMAGE).await?,
            add_tag: may(ADD_TAG).await?,
            remove_tag: may(REMOVE_TAG).await?,
            set_tag_mutability: may(SET_TAG_MUTABILITY).await?,
        })
    }
}

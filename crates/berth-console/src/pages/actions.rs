//! The repository actions: delete an image, add or remove a tag, toggle tag immutability. Each
//! checks the form (same site, CSRF token), then the authorization (the same ECR action the API
//! would need), then asks for confirmation (a page without JavaScript, a dialog with it), then
//! calls the service operation the API uses, which has the last word (an index still listing
//! the image, an immutable tag).

use askama::Template;
use axum::extract::Request;
use axum::response::Response;
use berth_iam::Served;
use berth_registry::settings::TagMutability;
use berth_registry::{ImageSelector, PutImage, Registry};
use berth_spec::{Digest, Reference, RepositoryName};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{redirect, render};
use crate::authz::{self, Scope};
use crate::paths::{self, RepositoryAction};
use crate::view::{self, Layout};
use crate::{Console, ConsoleError, HasCsrf, Visitor};

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ActionForm {
    csrf: String,
    digest: String,
    tag: String,
    mutability: String,
    confirmed: String,
}

impl HasCsrf for ActionForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// The page that asks before an action when the browser did not (no JavaScript).
#[derive(Template)]
#[template(path = "confirm.html")]
pub struct ConfirmPage {
    pub layout: Layout,
    pub title: &'static str,
    pub message: String,
    pub action: String,
    pub fields: Vec<(&'static str, String)>,
    pub button: &'static str,
    pub danger: bool,
    pub cancel: String,
}

fn digest(form: &ActionForm) -> Result<Digest, ConsoleError> {
    form.digest.parse().map_err(|e| ConsoleError::BadRequest(format!("not an image digest: {e}")))
}

fn tag(form: &ActionForm) -> Result<berth_spec::Tag, ConsoleError> {
    Registry::parse_tag(form.tag.trim()).map_err(ConsoleError::from)
}

/// What the audit trail records for `action`: the ECR operation the API would call.
pub fn served(repo: &RepositoryName, action: RepositoryAction) -> Served {
    let (operation, event_name) = match action {
        RepositoryAction::DeleteImage => ("ConsoleDeleteImage", "BatchDeleteImage"),
        RepositoryAction::AddTag => ("ConsoleAddTag", "PutImage"),
        RepositoryAction::RemoveTag => ("ConsoleRemoveTag", "BatchDeleteImage"),
        RepositoryAction::TagMutability => ("ConsoleTagMutability", "PutImageTagMutability"),
    };
    let mut served = Served::new(operation, event_name, true);
    served.parameters.insert("repositoryName".into(), json!(repo.as_str()));
    served
}

/// The request parameters the API call would carry (names and references only).
fn record_parameters(served: &mut Served, action: RepositoryAction, form: &ActionForm) {
    let mut parameters = |pairs: &[(&str, Value)]| {
        for (name, value) in pairs {
            served.parameters.insert((*name).into(), value.clone());
        }
    };
    let (digest, tag) = (form.digest.trim(), form.tag.trim());
    match action {
        RepositoryAction::DeleteImage => parameters(&[("imageIds", json!([{"imageDigest": digest}]))]),
        RepositoryAction::AddTag => parameters(&[("imageTag", json!(tag)), ("imageDigest", json!(digest))]),
        RepositoryAction::RemoveTag => parameters(&[("imageIds", json!([{"imageTag": tag}]))]),
        RepositoryAction::TagMutability => parameters(&[("imageTagMutability", json!(form.mutability))]),
    }
}

/// Runs `action` from its posted form. `served` is what the audit trail records: nothing
/// changed (not audited) while the action only asks for confirmation.
pub async fn submit(
    console: &Console,
    visitor: &Visitor,
    repo: &RepositoryName,
    action: RepositoryAction,
    request: Request,
    served: &mut Served,
) -> Result<Response, ConsoleError> {
    let form: ActionForm = console.form(visitor, request).await?;
    record_parameters(served, action, &form);
    let required = match action {
        RepositoryAction::DeleteImage => authz::DELETE_IMAGE,
        RepositoryAction::AddTag => authz::ADD_TAG,
        RepositoryAction::RemoveTag => authz::REMOVE_TAG,
        RepositoryAction::TagMutability => authz::SET_TAG_MUTABILITY,
    };
    let registry = &console.registry;
    let ctx = &visitor.ctx;
    authz::authorize(registry, ctx, Scope::Repository(repo), required).await?;
    let back = paths::href_repository(repo);
    let confirm = |title, message: String, fields: Vec<(&'static str, String)>, button, danger| {
        Ok(render(&ConfirmPage {
            layout: visitor.layout(),
            title,
            message,
            action: paths::href_action(repo, action),
            fields,
            button,
            danger,
            cancel: back.clone(),
        }))
    };
    let confirmed = form.confirmed == "yes";
    served.mutating = confirmed;
    match action {
        RepositoryAction::DeleteImage => {
            let digest = digest(&form)?;
            if !confirmed {
                let message = format!("Delete image {digest} from {repo}, with all its tags? This cannot be undone.");
                return confirm("Delete image?", message, vec![("digest", digest.to_string())], "Delete image", true);
            }
            let result = registry.delete_images(ctx, repo, &[ImageSelector::Digest(digest)]).await?;
            result.into_iter().next().ok_or_else(|| ConsoleError::Internal("no result for the delete".into()))??;
            Ok(redirect(&format!("{back}?done=deleted")))
        }
        RepositoryAction::AddTag => {
            let digest = digest(&form)?;
            let tag = tag(&form)?;
            if !confirmed {
                let message = format!("Add tag {tag} to image {}?", view::short_digest(&digest));
                let fields = vec![("digest", digest.to_string()), ("tag", tag.to_string())];
                return confirm("Add tag?", message, fields, "Add tag", false);
            }
            let manifest = registry.get_manifest(repo, &Reference::Digest(digest.clone()), None).await?;
            let put = PutImage {
                content: &manifest.content,
                media_type: Some(&manifest.media_type),
                tag: Some(&tag),
                digest: Some(&digest),
            };
            registry.put_image(ctx, repo, put).await?;
            Ok(redirect(&format!("{back}?done=tag-added")))
        }
        RepositoryAction::RemoveTag => {
            let digest = digest(&form)?;
            let tag = tag(&form)?;
            if !confirmed {
                let message = format!(
                    "Remove tag {tag} from image {}? The image stays; with no tags left it is untagged, and a lifecycle rule for untagged images may expire it.",
                    view::short_digest(&digest)
                );
                let fields = vec![("digest", digest.to_string()), ("tag", tag.to_string())];
                return confirm("Remove tag?", message, fields, "Remove tag", true);
            }
            // The tag must still be on the image the visitor saw it on.
            let selector = ImageSelector::TagAndDigest(tag.clone(), digest);
            let found = registry.resolve_images(repo, &[selector], None).await?;
            found.into_iter().next().ok_or_else(|| ConsoleError::Internal("no result for the lookup".into()))??;
            registry.delete_manifest(ctx, repo, &Reference::Tag(tag)).await?;
            Ok(redirect(&format!("{back}?done=tag-removed")))
        }
        RepositoryAction::TagMutability => {
            let (mutability, done, message) = match form.mutability.as_str() {
                "IMMUTABLE" => (
                    TagMutability::Immutable,
                    "immutable",
                    "Make tags immutable? A pushed tag can then never be moved to another image.",
                ),
                "MUTABLE" => (
                    TagMutability::Mutable,
                    "mutable",
                    "Make tags mutable? Pushing a tag again will then move it to the new image.",
                ),
                _ => return Err(ConsoleError::BadRequest("mutability must be IMMUTABLE or MUTABLE".into())),
            };
            if !confirmed {
                let fields = vec![("mutability", form.mutability.clone())];
                return confirm("Change tag mutability?", message.into(), fields, "Change", false);
            }
            registry.set_tag_mutability(ctx, repo, mutability, vec![]).await?;
            Ok(redirect(&format!("{back}?done={done}")))
        }
    }
}

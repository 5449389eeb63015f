//! The admin page (the root user's): users and their access keys — create, deactivate, activate,
//! delete — and what the server's background work last did.

use askama::Template;
use axum::extract::Request;
use axum::http::Uri;
use axum::response::Response;
use berth_auth::{AccessKeyStatus, ROOT_USER};
use berth_iam::Served;
use berth_registry::{Finished, GcReport};
use serde::Deserialize;

use super::actions::ConfirmPage;
use super::{redirect, render};
use crate::authz::{self, Scope};
use crate::view::{self, Layout};
use crate::{Console, ConsoleError, HasCsrf, Visitor, paths};

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct UserForm {
    csrf: String,
    name: String,
    confirmed: String,
    /// The managed policy a new user gets; empty: none (the user may do nothing).
    #[serde(default)]
    policy: String,
    /// The access key's new status (IAM's `Active` / `Inactive`).
    #[serde(default)]
    status: String,
}

impl HasCsrf for UserForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

struct UserRow {
    name: String,
    access_key_id: String,
    created: String,
    active: bool,
    /// Not [`locks_out`]: the user may be deleted or deactivated here.
    deletable: bool,
}

/// A new user's keys: shown on this one page, never again.
struct CreatedUser {
    name: String,
    access_key_id: String,
    secret_access_key: String,
}

struct Run {
    when: String,
    outcome: String,
    failed: bool,
}

#[derive(Template)]
#[template(path = "admin.html")]
struct AdminPage {
    layout: Layout,
    users: Vec<UserRow>,
    created: Option<CreatedUser>,
    notice: Option<&'static str>,
    gc_schedule: String,
    last_gc: Option<Run>,
    upload_expiry: String,
    lifecycle_schedule: String,
    last_lifecycle: Option<Run>,
    /// What a new user may be given, FullAccess first (the form's default).
    managed_policies: Vec<&'static str>,
}

fn gc_outcome(report: &GcReport) -> String {
    format!(
        "released {} links, deleted {} blobs ({}); {} unused blobs ({}) wait out the grace period",
        report.links_released,
        report.blobs_deleted,
        view::size(report.bytes_deleted),
        report.blobs_waiting,
        view::size(report.bytes_waiting)
    )
}

fn run<T>(finished: Option<Finished<T>>, describe: impl Fn(&T) -> String) -> Option<Run> {
    finished.map(|f| Run {
        when: view::time(f.at),
        failed: f.outcome.is_err(),
        outcome: match &f.outcome {
            Ok(value) => describe(value),
            Err(error) => format!("failed: {error}"),
        },
    })
}

async fn admin_page(
    console: &Console,
    visitor: &Visitor,
    created: Option<CreatedUser>,
    notice: Option<&'static str>,
) -> Result<Response, ConsoleError> {
    let users = console
        .auth
        .identities()
        .users()
        .await
        .map_err(|_| ConsoleError::Unavailable)?
        .into_iter()
        .map(|u| UserRow {
            deletable: !locks_out(visitor, &u.name),
            created: view::time(u.created_at),
            active: u.is_active(),
            name: u.name,
            access_key_id: u.access_key_id,
        })
        .collect();
    let status = console.registry.maintenance_status();
    let config = console.registry.config();
    Ok(render(&AdminPage {
        layout: visitor.layout().in_section("admin"),
        managed_policies: berth_iam::managed::ALL.iter().map(|(name, _)| *name).collect(),
        users,
        created,
        notice,
        gc_schedule: match console.config.gc_interval {
            Some(interval) => format!(
                "Every {}; blobs unused for {} are reclaimed.",
                view::duration(interval),
                view::duration(console.config.gc_grace)
            ),
            None => "Off (--gc-interval-secs 0): run berth gc by hand.".into(),
        },
        last_gc: run(status.last_gc, gc_outcome),
        upload_expiry: view::duration(config.upload_expiry),
        lifecycle_schedule: format!(
            "Every {}, and right after a lifecycle policy is put.",
            view::duration(config.lifecycle_interval)
        ),
        last_lifecycle: run(status.last_lifecycle_run, |expired| match expired {
            1 => "expired 1 image".into(),
            n => format!("expired {n} images"),
        }),
    }))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Query {
    done: String,
}

pub async fn page(console: &Console, visitor: &Visitor, uri: &Uri) -> Result<Response, ConsoleError> {
    authz::authorize(&console.registry, &visitor.ctx, Scope::Administration, &[]).await?;
    let query = axum::extract::Query::<Query>::try_from_uri(uri).map(|q| q.0).unwrap_or_default();
    let notice = match query.done.as_str() {
        "user-deleted" => Some("The user was deleted; its access key and sessions no longer work."),
        "key-deactivated" => Some("The access key was deactivated; it, its tokens and its sessions no longer work."),
        "key-activated" => Some("The access key was activated again."),
        _ => None,
    };
    admin_page(console, visitor, None, notice).await
}

/// Whether deleting `name` or deactivating its key could lock the console's administrator out:
/// the root user and the visitor are not offered either.
fn locks_out(visitor: &Visitor, name: &str) -> bool {
    name == ROOT_USER || Some(name) == visitor.session.user_name.as_deref()
}

/// What the audit trail records for a user change: IAM's operation, as CloudTrail names it.
pub fn served(event_name: &'static str) -> Served {
    let operation = match event_name {
        "CreateUser" => "ConsoleCreateUser",
        "DeleteUser" => "ConsoleDeleteUser",
        _ => "ConsoleUpdateAccessKey",
    };
    let mut served = Served::new(operation, event_name, true);
    served.event_source = "iam.amazonaws.com";
    served
}

pub async fn create_user(
    console: &Console,
    visitor: &Visitor,
    request: Request,
    served: &mut Served,
) -> Result<Response, ConsoleError> {
    let form: UserForm = console.form(visitor, request).await?;
    served.parameters.insert("userName".into(), form.name.trim().into());
    authz::authorize(&console.registry, &visitor.ctx, Scope::Administration, &[]).await?;
    let name = form.name.trim();
    let identities = console.auth.identities();
    if identities.user(name).await.map_err(|_| ConsoleError::Unavailable)?.is_some() {
        return Err(ConsoleError::Conflict(format!("A user named {name} exists already.")));
    }
    let policies = match form.policy.as_str() {
        "" => vec![],
        name if berth_iam::managed::by_name(name).is_some() => {
            vec![berth_auth::UserPolicy { name: name.to_owned(), document: None }]
        }
        other => return Err(ConsoleError::BadRequest(format!("{other} is not a managed policy."))),
    };
    let credentials = identities.create_user(name, &policies).await?;
    tracing::info!(user = %credentials.user_name, by = visitor.session.user_name.as_deref().unwrap_or("anonymous"), "console: user created");
    let created = CreatedUser {
        name: credentials.user_name.clone(),
        access_key_id: credentials.access_key_id.clone(),
        secret_access_key: credentials.secret_access_key.clone(),
    };
    admin_page(console, visitor, Some(created), Some("The user was created.")).await
}

pub async fn delete_user(
    console: &Console,
    visitor: &Visitor,
    request: Request,
    served: &mut Served,
) -> Result<Response, ConsoleError> {
    let form: UserForm = console.form(visitor, request).await?;
    served.parameters.insert("userName".into(), form.name.trim().into());
    authz::authorize(&console.registry, &visitor.ctx, Scope::Administration, &[]).await?;
    let name = form.name.trim().to_owned();
    if locks_out(visitor, &name) {
        return Err(ConsoleError::BadRequest(
            "The root user and the signed-in user cannot be deleted from the console.".into(),
        ));
    }
    if form.confirmed != "yes" {
        served.mutating = false;
        return Ok(render(&ConfirmPage {
            layout: visitor.layout().in_section("admin"),
            title: "Delete user?",
            message: format!(
                "Delete user {name}? Its access key, registry tokens and console sessions stop working at once."
            ),
            action: format!("{}/admin/users/delete", paths::ROOT),
            fields: vec![("name", name)],
            button: "Delete user",
            danger: true,
            cancel: paths::href_admin(),
        }));
    }
    console.auth.identities().remove_user(&name).await?;
    tracing::info!(user = %name, by = visitor.session.user_name.as_deref().unwrap_or("anonymous"), "console: user deleted");
    Ok(redirect(&format!("{}/admin?done=user-deleted", paths::ROOT)))
}

/// Deactivates or activates a user's access key (IAM's `UpdateAccessKey`); deactivating asks for
/// confirmation first. Like deleting, not for the root user or the visitor (no lock-out).
pub async fn update_access_key(
    console: &Console,
    visitor: &Visitor,
    request: Request,
    served: &mut Served,
) -> Result<Response, ConsoleError> {
    let form: UserForm = console.form(visitor, request).await?;
    let name = form.name.trim().to_owned();
    served.parameters.insert("userName".into(), name.clone().into());
    served.parameters.insert("status".into(), form.status.clone().into());
    authz::authorize(&console.registry, &visitor.ctx, Scope::Administration, &[]).await?;
    let Some(status) = AccessKeyStatus::parse(&form.status) else {
        return Err(ConsoleError::BadRequest("The status must be Active or Inactive.".into()));
    };
    if locks_out(visitor, &name) {
        return Err(ConsoleError::BadRequest(
            "The keys of the root user and the signed-in user cannot be changed from the console.".into(),
        ));
    }
    let identities = console.auth.identities();
    let user = identities.user(&name).await.map_err(|_| ConsoleError::Unavailable)?;
    let user = user.ok_or_else(|| ConsoleError::NotFound(format!("User {name} does not exist.")))?;
    served.parameters.insert("accessKeyId".into(), user.access_key_id.clone().into());
    if status == AccessKeyStatus::Inactive && form.confirmed != "yes" {
        served.mutating = false;
        return Ok(render(&ConfirmPage {
            layout: visitor.layout().in_section("admin"),
            title: "Deactivate access key?",
            message: format!(
                "Deactivate the access key {} of {name}? It, the user's registry tokens and console sessions stop \
                 working at once; activating it again brings them back.",
                user.access_key_id
            ),
            action: format!("{}/admin/users/key", paths::ROOT),
            fields: vec![("name", name), ("status", status.as_str().to_owned())],
            button: "Deactivate key",
            danger: true,
            cancel: paths::href_admin(),
        }));
    }
    identities.set_access_key_status(&name, status).await?;
    tracing::info!(user = %name, status = status.as_str(), by = visitor.session.user_name.as_deref().unwrap_or("anonymous"), "console: access key status set");
    let done = match status {
        AccessKeyStatus::Active => "key-activated",
        AccessKeyStatus::Inactive => "key-deactivated",
    };
    Ok(redirect(&format!("{}/admin?done={done}", paths::ROOT)))
}

//! The permissions page: who may pull, push, delete and manage this repository, and why. Every
//! cell is the service's own decision for that user (its identity policies, the repository's
//! and the registry's policy), with the statements that made it — to a visitor who may read
//! those policies — so the page shows what the APIs would answer, not a second reading of the
//! policies. The repository policy's statements are listed beside it.

use askama::Template;
use axum::response::Response;
use berth_auth::ROOT_USER;
use berth_iam::{CredentialKind, Identity, RequestContext};
use berth_registry::RegistryError;
use berth_spec::RepositoryName;
use serde_json::Value;

use super::render;
use super::repository::Tabs;
use crate::authz::{self, Detail, Scope};
use crate::view::Layout;
use crate::{Console, ConsoleError, Visitor, paths};

/// The columns: what a person wants to know, and the ECR actions each needs.
const COLUMNS: [(&str, &[&str]); 4] = [
    ("Pull", authz::PULL),
    ("Push", authz::PUSH),
    ("Delete images", authz::DELETE_IMAGE),
    ("Manage policies and settings", authz::MANAGE),
];

struct Cell {
    allowed: bool,
    why: String,
}

struct UserRow {
    user: String,
    cells: Vec<Cell>,
}

struct Statement {
    sid: String,
    effect: String,
    principal: String,
    action: String,
    condition: String,
}

#[derive(Template)]
#[template(path = "permissions.html")]
struct PermissionsPage {
    layout: Layout,
    name: String,
    repository_href: String,
    tabs: Tabs,
    columns: Vec<&'static str>,
    rows: Vec<UserRow>,
    everyone: bool,
    statements: Option<Vec<Statement>>,
    raw_policy: String,
}

/// A policy element (`"*"`, a string, a list, an object) in one line.
fn compact(value: Option<&Value>) -> String {
    match value {
        None => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => items.iter().map(|v| compact(Some(v))).collect::<Vec<_>>().join(", "),
        Some(other) => other.to_string(),
    }
}

/// The statements of a stored policy, for display (the service validated and enforces it).
fn statements(text: &str) -> Vec<Statement> {
    let document: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let list: Vec<&Value> = match document.get("Statement") {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(one @ Value::Object(_)) => vec![one],
        _ => vec![],
    };
    list.into_iter()
        .map(|s| {
            let negated = |plain: &str, not: &str| match (s.get(plain), s.get(not)) {
                (Some(v), _) => compact(Some(v)),
                (None, Some(v)) => format!("everything except {}", compact(Some(v))),
                (None, None) => String::new(),
            };
            Statement {
                sid: compact(s.get("Sid")),
                effect: compact(s.get("Effect")),
                principal: negated("Principal", "NotPrincipal"),
                action: negated("Action", "NotAction"),
                condition: compact(s.get("Condition")),
            }
        })
        .collect()
}

/// The identity a user would have when calling the APIs, without the visitor's request details
/// (address, agent): the decision is about the user, not about this browser.
fn as_user(visitor: &Visitor, name: &str, access_key_id: &str) -> RequestContext {
    let via = CredentialKind::AccessKey;
    let identity = if name == ROOT_USER {
        Identity::Root { access_key_id: access_key_id.to_owned(), via }
    } else {
        Identity::User { name: name.to_owned(), access_key_id: access_key_id.to_owned(), via }
    };
    RequestContext { identity, source_ip: None, user_agent: None, ..visitor.ctx.clone() }
}

pub async fn page(console: &Console, visitor: &Visitor, repo: &RepositoryName) -> Result<Response, ConsoleError> {
    let registry = &console.registry;
    authz::authorize(registry, &visitor.ctx, Scope::Repository(repo), authz::LIST_REPOSITORY).await?;
    registry.describe_repository(repo).await?;
    // The root sees every user's row; anyone else sees their own.
    let everyone = authz::allowed(registry, &visitor.ctx, Scope::Administration, &[]).await?;
    let subjects: Vec<(String, RequestContext)> = if everyone {
        console
            .auth
            .identities()
            .users()
            .await
            .map_err(|_| ConsoleError::Unavailable)?
            .into_iter()
            .map(|u| {
                let ctx = as_user(visitor, &u.name, &u.access_key_id);
                (u.name, ctx)
            })
            .collect()
    } else {
        vec![(visitor.session.user_name.clone().unwrap_or_else(|| "anonymous".into()), visitor.ctx.clone())]
    };
    let may_read_policy =
        authz::allowed(registry, &visitor.ctx, Scope::Repository(repo), authz::READ_REPOSITORY_POLICY).await?;
    // A decision's statements may come from the registry policy too.
    let may_read_policies =
        may_read_policy && authz::allowed(registry, &visitor.ctx, Scope::Registry, authz::READ_REGISTRY_POLICY).await?;
    let detail = if may_read_policies { Detail::Statements } else { Detail::Outcome };
    let mut rows = Vec::with_capacity(subjects.len());
    for (user, ctx) in subjects {
        let mut cells = Vec::with_capacity(COLUMNS.len());
        for (_, actions) in COLUMNS {
            let verdict = authz::explain(registry, &ctx, repo, actions, detail).await?;
            cells.push(Cell { allowed: verdict.allowed, why: verdict.why });
        }
        rows.push(UserRow { user, cells });
    }
    let (statements, raw_policy) = if may_read_policy {
        match registry.repository_policy(repo).await {
            Ok(text) => (Some(statements(&text)), text),
            Err(RegistryError::PolicyNotFound(_)) => (Some(vec![]), String::new()),
            Err(other) => return Err(other.into()),
        }
    } else {
        (None, String::new())
    };
    Ok(render(&PermissionsPage {
        layout: visitor.layout(),
        name: repo.to_string(),
        repository_href: paths::href_repository(repo),
        tabs: Tabs::new(console, visitor, repo, "permissions").await?,
        columns: COLUMNS.iter().map(|(label, _)| *label).collect(),
        rows,
        everyone,
        statements,
        raw_policy,
    }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn statements_show_principals_actions_and_negations() {
        let text = r#"{"Version":"2012-10-17","Statement":[
            {"Sid":"NoDeletes","Effect":"Deny","Principal":{"AWS":["arn:aws:iam::000000000000:user/ci"]},"Action":["ecr:BatchDeleteImage","ecr:PutImage"]},
            {"Effect":"Deny","NotPrincipal":{"AWS":"arn:aws:iam::000000000000:root"},"NotAction":"ecr:BatchGetImage"}]}"#;
        let statements = super::statements(text);
        assert_eq!(statements.len(), 2);
        assert_eq!(statements[0].sid, "NoDeletes");
        assert_eq!(statements[0].principal, r#"{"AWS":["arn:aws:iam::000000000000:user/ci"]}"#);
        assert_eq!(statements[0].action, "ecr:BatchDeleteImage, ecr:PutImage");
        assert!(statements[1].principal.starts_with("everything except "));
        assert_eq!(statements[1].action, "everything except ecr:BatchGetImage");
        assert!(super::statements("{}").is_empty());
    }
}

//! The console's URLs, parsed into a typed [`ConsolePath`] (repository names contain slashes, so
//! axum's router cannot split them) and built back by the `href_*` functions the pages use.
//!
//! A repository's sub-pages follow a `/-/` segment: no repository name component can be `-`
//! (components start and end with a letter or digit), so `/-/` never belongs to a name.

use berth_spec::{Digest, RepositoryName};

pub const ROOT: &str = "/console";
/// Where the sign-in form posts credentials (the edge throttles it like an `Authorization` header).
pub const SIGN_IN: &str = "/console/sign-in";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepositoryAction {
    DeleteImage,
    AddTag,
    RemoveTag,
    TagMutability,
}

impl RepositoryAction {
    fn segment(self) -> &'static str {
        match self {
            RepositoryAction::DeleteImage => "delete-image",
            RepositoryAction::AddTag => "add-tag",
            RepositoryAction::RemoveTag => "remove-tag",
            RepositoryAction::TagMutability => "tag-mutability",
        }
    }

    const ALL: [RepositoryAction; 4] = [
        RepositoryAction::DeleteImage,
        RepositoryAction::AddTag,
        RepositoryAction::RemoveTag,
        RepositoryAction::TagMutability,
    ];
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsolePath {
    Home,
    SignIn,
    SignOut,
    Asset(&'static str),
    Repositories,
    Repository(RepositoryName),
    Image(RepositoryName, Digest),
    Lifecycle(RepositoryName),
    Permissions(RepositoryName),
    Action(RepositoryName, RepositoryAction),
    Admin,
    CreateUser,
    DeleteUser,
    UpdateAccessKey,
}

/// The embedded assets, by file name.
pub const ASSETS: [&str; 2] = ["console.css", "console.js"];

impl ConsolePath {
    /// The methods the page takes, as an `Allow` header lists them (HEAD wherever GET).
    pub fn methods(&self) -> &'static str {
        match self {
            ConsolePath::SignIn => "GET, HEAD, POST",
            ConsolePath::Home
            | ConsolePath::Asset(_)
            | ConsolePath::Repositories
            | ConsolePath::Repository(_)
            | ConsolePath::Image(..)
            | ConsolePath::Lifecycle(_)
            | ConsolePath::Permissions(_)
            | ConsolePath::Admin => "GET, HEAD",
            ConsolePath::SignOut
            | ConsolePath::Action(..)
            | ConsolePath::CreateUser
            | ConsolePath::DeleteUser
            | ConsolePath::UpdateAccessKey => "POST",
        }
    }

    /// The page to come back to after signing in: the page itself where it answers GET, else
    /// the page whose form posts here (a POST target cannot be shown, and a form that met an
    /// expired session did nothing).
    pub fn page_to_resume(&self) -> String {
        match self {
            ConsolePath::Action(name, _) => href_repository(name),
            ConsolePath::CreateUser | ConsolePath::DeleteUser | ConsolePath::UpdateAccessKey => href_admin(),
            ConsolePath::SignOut | ConsolePath::SignIn | ConsolePath::Asset(_) | ConsolePath::Home => {
                href_repositories()
            }
            ConsolePath::Repositories => href_repositories(),
            ConsolePath::Repository(name) => href_repository(name),
            ConsolePath::Image(name, digest) => href_image(name, digest),
            ConsolePath::Lifecycle(name) => href_lifecycle(name),
            ConsolePath::Permissions(name) => href_permissions(name),
            ConsolePath::Admin => href_admin(),
        }
    }

    /// `None` for anything that is not a console page (a 404).
    pub fn parse(path: &str) -> Option<ConsolePath> {
        let rest = path.strip_prefix(ROOT)?;
        let rest = match rest {
            "" | "/" => return Some(ConsolePath::Home),
            rest => rest.strip_prefix('/')?,
        };
        Some(match rest {
            "sign-in" => ConsolePath::SignIn,
            "sign-out" => ConsolePath::SignOut,
            "repositories" => ConsolePath::Repositories,
            "admin" => ConsolePath::Admin,
            "admin/users" => ConsolePath::CreateUser,
            "admin/users/delete" => ConsolePath::DeleteUser,
            "admin/users/key" => ConsolePath::UpdateAccessKey,
            _ => {
                if let Some(asset) = rest.strip_prefix("assets/") {
                    return ASSETS.into_iter().find(|a| *a == asset).map(ConsolePath::Asset);
                }
                let repository = rest.strip_prefix("repositories/")?;
                let (name, sub) = match repository.split_once("/-/") {
                    Some((name, sub)) => (name, Some(sub)),
                    None => (repository, None),
                };
                let name: RepositoryName = name.parse().ok()?;
                match sub {
                    None => ConsolePath::Repository(name),
                    Some("lifecycle") => ConsolePath::Lifecycle(name),
                    Some("permissions") => ConsolePath::Permissions(name),
                    Some(sub) => {
                        if let Some(digest) = sub.strip_prefix("images/") {
                            return Some(ConsolePath::Image(name, digest.parse().ok()?));
                        }
                        let action = RepositoryAction::ALL.into_iter().find(|a| a.segment() == sub)?;
                        ConsolePath::Action(name, action)
                    }
                }
            }
        })
    }
}

pub fn href_repositories() -> String {
    format!("{ROOT}/repositories")
}

pub fn href_repository(name: &RepositoryName) -> String {
    format!("{ROOT}/repositories/{name}")
}

pub fn href_image(name: &RepositoryName, digest: &Digest) -> String {
    format!("{ROOT}/repositories/{name}/-/images/{digest}")
}

pub fn href_lifecycle(name: &RepositoryName) -> String {
    format!("{ROOT}/repositories/{name}/-/lifecycle")
}

pub fn href_permissions(name: &RepositoryName) -> String {
    format!("{ROOT}/repositories/{name}/-/permissions")
}

pub fn href_action(name: &RepositoryName, action: RepositoryAction) -> String {
    format!("{ROOT}/repositories/{name}/-/{}", action.segment())
}

pub fn href_admin() -> String {
    format!("{ROOT}/admin")
}

pub fn href_asset(name: &str) -> String {
    // The version in the query makes browsers fetch the new file after an upgrade.
    format!("{ROOT}/assets/{name}?v={}", env!("CARGO_PKG_VERSION"))
}

/// Where to go after signing in: only a console path of this server, never an open redirect,
/// and no dot segment that a browser would resolve to outside the console.
pub fn safe_next(next: Option<&str>) -> String {
    let within_console = |next: &str| {
        let path = next.split(['?', '#']).next().unwrap_or_default();
        !path.split('/').any(|segment| segment == "." || segment == "..")
            && !path.to_ascii_lowercase().contains("%2e")
            // A page, not an action's target: a link cannot send a form there (it would be 405).
            && ConsolePath::parse(path).is_some_and(|page| page.methods().starts_with("GET"))
    };
    match next {
        Some(next)
            if next.starts_with(&format!("{ROOT}/"))
                && !next.contains("//")
                && !next.contains('\\')
                && next.bytes().all(|b| b.is_ascii_graphic())
                && within_console(next) =>
        {
            next.to_owned()
        }
        _ => href_repositories(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> RepositoryName {
        s.parse().unwrap()
    }

    #[test]
    fn pages_parse_and_build_back() {
        let repo = name("team-a/web/app");
        let digest = Digest::sha256_of(b"x");
        for (path, parsed) in [
            (href_repositories(), ConsolePath::Repositories),
            (href_repository(&repo), ConsolePath::Repository(repo.clone())),
            (href_image(&repo, &digest), ConsolePath::Image(repo.clone(), digest.clone())),
            (href_lifecycle(&repo), ConsolePath::Lifecycle(repo.clone())),
            (href_permissions(&repo), ConsolePath::Permissions(repo.clone())),
            (href_action(&repo, RepositoryAction::AddTag), ConsolePath::Action(repo.clone(), RepositoryAction::AddTag)),
        ] {
            assert_eq!(ConsolePath::parse(&path), Some(parsed), "{path}");
        }
        for action in RepositoryAction::ALL {
            assert_eq!(
                ConsolePath::parse(&href_action(&repo, action)),
                Some(ConsolePath::Action(repo.clone(), action))
            );
        }
        assert_eq!(ConsolePath::parse("/console"), Some(ConsolePath::Home));
        assert_eq!(ConsolePath::parse("/console/"), Some(ConsolePath::Home));
        assert_eq!(ConsolePath::parse("/console/admin/users"), Some(ConsolePath::CreateUser));
        assert_eq!(ConsolePath::parse("/console/admin/users/key"), Some(ConsolePath::UpdateAccessKey));
        assert_eq!(ConsolePath::parse("/console/assets/console.css"), Some(ConsolePath::Asset("console.css")));
    }

    #[test]
    fn anything_else_is_not_a_page() {
        for path in [
            "/consoles",
            "/console/nope",
            "/console/assets/../metadata.db",
            "/console/assets/other.js",
            "/console/repositories/UPPER",
            "/console/repositories/a//b",
            "/console/repositories/app/-/unknown",
            "/console/repositories/app/-/images/sha256:short",
            "/console/repositories/app/-/images/",
            "/v2/app/manifests/latest",
        ] {
            assert_eq!(ConsolePath::parse(path), None, "{path}");
        }
    }

    #[test]
    fn only_console_paths_are_followed_after_sign_in() {
        assert_eq!(safe_next(Some("/console/repositories/app")), "/console/repositories/app");
        assert_eq!(safe_next(Some("/console/repositories?q=..")), "/console/repositories?q=..", "a query is no path");
        for hostile in [
            None,
            Some("https://evil.example/"),
            Some("//evil.example/console/"),
            Some("/console//evil.example"),
            Some("/console/\\evil"),
            Some("/v2/"),
            Some("/console/a b"),
            Some("/console/../v2/_catalog"),
            Some("/console/%2e%2e/v2/_catalog"),
            Some("/console/repositories/./../../metrics"),
            Some("/console/sign-out"),
            Some("/console/repositories/app/-/add-tag"),
            Some("/console/nowhere"),
        ] {
            assert_eq!(safe_next(hostile), "/console/repositories", "{hostile:?}");
        }
    }
}

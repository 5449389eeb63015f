//! What Berth presents to a remote registry. Secrets never reach `Debug`, `Display` or logs.

use std::fmt;

/// How to authenticate to a remote registry.
///
/// `Basic` is also what the Bearer token flow sends to the token realm, and what ECR and Berth
/// take as `AWS` + registry token or access key id + secret.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Credentials {
    #[default]
    Anonymous,
    Basic {
        username: String,
        password: Secret,
    },
}

impl Credentials {
    pub fn basic(username: impl Into<String>, password: impl Into<String>) -> Credentials {
        Credentials::Basic { username: username.into(), password: Secret(password.into()) }
    }

    pub(crate) fn username(&self) -> Option<&str> {
        match self {
            Credentials::Anonymous => None,
            Credentials::Basic { username, .. } => Some(username),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Anonymous => f.write_str("Anonymous"),
            Credentials::Basic { username, .. } => write!(f, "Basic({username:?}, <redacted>)"),
        }
    }
}

/// A password or token: readable only through [`Secret::expose`], redacted everywhere else.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_password() {
        let credentials = Credentials::basic("AWS", "eyJwYXlsb2FkIjoi-secret");
        let shown = format!("{credentials:?} {:?}", Secret::new("hunter2"));
        assert_eq!(shown, "Basic(\"AWS\", <redacted>) <redacted>");
        assert_eq!(credentials.username(), Some("AWS"));
        assert_eq!(Credentials::default(), Credentials::Anonymous);
    }
}

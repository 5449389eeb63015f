//! The ARNs Berth names things by: repositories (`arn:aws:ecr:<region>:<account>:repository/<name>`),
//! users and the root (`arn:aws:iam::<account>:user/<name>`, `…:root`, see
//! [`Identity::arn`](crate::Identity::arn)).

/// The resource of registry-wide calls (`GetAuthorizationToken`, `DescribeRegistry`, `_catalog`):
/// IAM requires `"Resource": "*"` for them.
pub const ANY_RESOURCE: &str = "*";

/// The ARN of repository `name` in `account`, the resource of every repository-scoped call.
pub fn repository_arn(region: &str, account: &str, name: &str) -> String {
    format!("arn:aws:ecr:{region}:{account}:repository/{name}")
}

/// The resource of list calls over repositories (`DescribeRepositories` without names).
pub fn all_repositories_arn(region: &str, account: &str) -> String {
    repository_arn(region, account, "*")
}

/// A parsed ARN: `arn:<partition>:<service>:<region>:<account>:<resource>`; the resource may
/// contain further colons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arn<'a> {
    pub partition: &'a str,
    pub service: &'a str,
    pub region: &'a str,
    pub account: &'a str,
    pub resource: &'a str,
}

impl<'a> Arn<'a> {
    /// `None` unless `text` has the six parts of an ARN with a non-empty partition and service.
    pub fn parse(text: &'a str) -> Option<Arn<'a>> {
        let mut parts = text.splitn(6, ':');
        if parts.next()? != "arn" {
            return None;
        }
        let arn = Arn {
            partition: parts.next()?,
            service: parts.next()?,
            region: parts.next()?,
            account: parts.next()?,
            resource: parts.next()?,
        };
        (!arn.partition.is_empty() && !arn.service.is_empty()).then_some(arn)
    }

    /// The repository an ECR repository ARN names.
    pub fn repository_name(&self) -> Option<&'a str> {
        if self.service != "ecr" {
            return None;
        }
        self.resource.strip_prefix("repository/").filter(|name| !name.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_arns_round_trip() {
        let arn = repository_arn("eu-west-1", "123456789012", "team-a/app");
        assert_eq!(arn, "arn:aws:ecr:eu-west-1:123456789012:repository/team-a/app");
        let parsed = Arn::parse(&arn).unwrap();
        assert_eq!((parsed.region, parsed.account), ("eu-west-1", "123456789012"));
        assert_eq!(parsed.repository_name(), Some("team-a/app"));
        assert_eq!(all_repositories_arn("r", "1"), "arn:aws:ecr:r:1:repository/*");
    }

    #[test]
    fn other_arns_and_non_arns() {
        let user = Arn::parse("arn:aws:iam::123456789012:user/ci").unwrap();
        assert_eq!((user.service, user.region, user.resource), ("iam", "", "user/ci"));
        assert_eq!(user.repository_name(), None);
        let log = Arn::parse("arn:aws:logs:r:1:log-group:x:*").unwrap();
        assert_eq!(log.resource, "log-group:x:*");
        for not_an_arn in ["", "*", "arn:aws:ecr", "arn::ecr:r:a:x", "urn:aws:ecr:r:a:repository/x"] {
            assert_eq!(Arn::parse(not_an_arn), None, "{not_an_arn}");
        }
        assert_eq!(Arn::parse("arn:aws:ecr:r:a:repository/").unwrap().repository_name(), None);
    }
}

//! ECR repository policies: IAM resource-policy documents, checked for the structure IAM
//! requires, stored verbatim, and enforced for their explicit denies.
//!
//! Berth's users are IAM users of the registry's own account, and account users already hold
//! every permission (as if their identity policy allowed `ecr:*`). So, as IAM evaluates a
//! same-account request, an `Allow` grants nothing more and the only effect a repository policy
//! can have is an explicit `Deny` ([`decide`]). Two documented choices:
//! - The account root may always get, set and delete the repository policy, so a policy can
//!   never lock the registry's owner out of repairing it (S3 treats bucket policies the same way).
//! - A `Deny` statement with a `Condition` is refused when set: Berth has none of the request
//!   context IAM conditions read (source VPC, IP, MFA, tags), and guessing either way would be
//!   wrong. `Allow` statements may carry conditions (they grant nothing either way).

use berth_iam::Identity;
use serde_json::Value;

use crate::lifecycle::PolicyError;
use crate::settings::glob;

pub const MAX_POLICY_LENGTH: usize = 10_240;

const VERSIONS: [&str; 2] = ["2012-10-17", "2008-10-17"];

/// The actions the account root may not be denied (see the module docs).
const ROOT_ALWAYS_ALLOWED: [&str; 3] =
    ["ecr:GetRepositoryPolicy", "ecr:SetRepositoryPolicy", "ecr:DeleteRepositoryPolicy"];

/// The ECR actions the `/v2/` plane's requests perform, as AWS documents for ECR's Docker API
/// (`_catalog` lists repositories: `DescribeRepositories`).
pub mod actions {
    pub const BATCH_GET_IMAGE: &str = "ecr:BatchGetImage";
    pub const GET_DOWNLOAD_URL_FOR_LAYER: &str = "ecr:GetDownloadUrlForLayer";
    pub const BATCH_CHECK_LAYER_AVAILABILITY: &str = "ecr:BatchCheckLayerAvailability";
    pub const INITIATE_LAYER_UPLOAD: &str = "ecr:InitiateLayerUpload";
    pub const UPLOAD_LAYER_PART: &str = "ecr:UploadLayerPart";
    pub const COMPLETE_LAYER_UPLOAD: &str = "ecr:CompleteLayerUpload";
    pub const PUT_IMAGE: &str = "ecr:PutImage";
    pub const BATCH_DELETE_IMAGE: &str = "ecr:BatchDeleteImage";
    pub const LIST_IMAGES: &str = "ecr:ListImages";
    pub const DESCRIBE_REPOSITORIES: &str = "ecr:DescribeRepositories";
}

fn fail<T>(detail: impl Into<String>) -> Result<T, PolicyError> {
    Err(PolicyError(detail.into()))
}

/// The outcome for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// An explicit deny, with the `Sid` of the statement that matched, if it has one.
    Deny {
        sid: Option<String>,
    },
}

/// A validated policy, reduced to what enforcement needs: its `Deny` statements.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepositoryPolicy {
    denies: Vec<DenyStatement>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct DenyStatement {
    sid: Option<String>,
    principals: Principals,
    actions: Actions,
}

/// `Principal` matches the listed principals, `NotPrincipal` everyone else.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Principals {
    listed: Vec<PrincipalPattern>,
    negated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PrincipalPattern {
    /// `"*"` or `{"AWS": "*"}`.
    Everyone,
    /// An AWS principal string: an account id or an ARN.
    Aws(String),
    /// A principal of another kind (`Service`, `Federated`, `CanonicalUser`): never a Berth caller.
    Other,
}

/// `Action` matches the listed patterns, `NotAction` every other action. Patterns are lower-cased
/// (IAM compares action names case-insensitively).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Actions {
    patterns: Vec<String>,
    negated: bool,
}

/// Checks `text` is a resource policy IAM would accept in shape: a JSON object with an optional
/// `Version` of the two IAM knows, and `Statement` (one object or a non-empty list), each with
/// `Effect` Allow or Deny, a `Principal` (or `NotPrincipal`) and an `Action` (or `NotAction`)
/// of strings; and that Berth can enforce it (no `Condition` on a `Deny`).
pub fn validate(text: &str) -> Result<(), PolicyError> {
    RepositoryPolicy::parse(text).map(|_| ())
}

impl RepositoryPolicy {
    pub fn parse(text: &str) -> Result<RepositoryPolicy, PolicyError> {
        if text.chars().count() > MAX_POLICY_LENGTH {
            return fail(format!("the policy is longer than {MAX_POLICY_LENGTH} characters"));
        }
        let document: Value =
            serde_json::from_str(text).map_err(|e| PolicyError(format!("the policy is not valid JSON: {e}")))?;
        let Value::Object(document) = document else {
            return fail("the policy must be a JSON object");
        };
        if let Some(version) = document.get("Version")
            && !version.as_str().is_some_and(|v| VERSIONS.contains(&v))
        {
            return fail(format!("Version must be one of {VERSIONS:?}, not {version}"));
        }
        let statements = match document.get("Statement") {
            None => return fail("the policy has no Statement"),
            Some(Value::Array(list)) if list.is_empty() => return fail("Statement must not be empty"),
            Some(Value::Array(list)) => list.iter().collect(),
            Some(one @ Value::Object(_)) => vec![one],
            Some(other) => return fail(format!("Statement must be an object or a list of objects, not {other}")),
        };
        let mut denies = Vec::new();
        for (i, statement) in statements.into_iter().enumerate() {
            let at = format!("Statement[{i}]");
            let Value::Object(statement) = statement else {
                return fail(format!("{at} must be an object"));
            };
            let deny = match statement.get("Effect").and_then(Value::as_str) {
                Some("Allow") => false,
                Some("Deny") => true,
                _ => return fail(format!("{at}.Effect must be \"Allow\" or \"Deny\"")),
            };
            let principals = match (statement.get("Principal"), statement.get("NotPrincipal")) {
                (Some(p), None) => principals(p, false),
                (None, Some(p)) => principals(p, true),
                _ => None,
            };
            let Some(principals) = principals else {
                return fail(format!(
                    "{at} needs a Principal or NotPrincipal: \"*\" or an object like {{\"AWS\": [\"arn:...\"]}}"
                ));
            };
            let actions = match (statement.get("Action"), statement.get("NotAction")) {
                (Some(a), None) => strings(a).map(|patterns| Actions { patterns, negated: false }),
                (None, Some(a)) => strings(a).map(|patterns| Actions { patterns, negated: true }),
                _ => None,
            };
            let Some(mut actions) = actions else {
                return fail(format!(
                    "{at} needs an Action or NotAction: a string or a list of strings like \"ecr:BatchGetImage\""
                ));
            };
            if !deny {
                continue;
            }
            if statement.contains_key("Condition") {
                return fail(format!(
                    "{at} is a Deny with a Condition, which Berth cannot evaluate; state the principals and actions without one"
                ));
            }
            actions.patterns.iter_mut().for_each(|p| p.make_ascii_lowercase());
            let sid = statement.get("Sid").and_then(Value::as_str).map(str::to_owned);
            denies.push(DenyStatement { sid, principals, actions });
        }
        Ok(RepositoryPolicy { denies })
    }

    /// Whether the policy denies nothing (it has only `Allow` statements).
    pub fn is_permissive(&self) -> bool {
        self.denies.is_empty()
    }
}

/// IAM's verdict on `caller` (of account `account`) performing `action` (`ecr:<Operation>`)
/// under `policy`: denied if a `Deny` statement matches both, allowed otherwise.
pub fn decide(policy: &RepositoryPolicy, caller: &Identity, account: &str, action: &str) -> Decision {
    if caller.is_root() && ROOT_ALWAYS_ALLOWED.iter().any(|a| a.eq_ignore_ascii_case(action)) {
        return Decision::Allow;
    }
    let action = action.to_ascii_lowercase();
    let matched = policy.denies.iter().find(|s| s.actions.matches(&action) && s.principals.matches(caller, account));
    match matched {
        Some(statement) => Decision::Deny { sid: statement.sid.clone() },
        None => Decision::Allow,
    }
}

impl Actions {
    fn matches(&self, action: &str) -> bool {
        // IAM's action wildcards: `*` any run of characters, `?` any one character.
        self.patterns.iter().any(|p| glob(p.as_bytes(), action.as_bytes(), Some(b'?'))) != self.negated
    }
}

impl Principals {
    fn matches(&self, caller: &Identity, account: &str) -> bool {
        self.listed.iter().any(|p| p.matches(caller, account)) != self.negated
    }
}

impl PrincipalPattern {
    /// An account id or the account root ARN stands for every principal of the account (that is
    /// how IAM reads them in a resource policy); a user ARN for that user only.
    fn matches(&self, caller: &Identity, account: &str) -> bool {
        let PrincipalPattern::Aws(principal) = self else {
            return *self == PrincipalPattern::Everyone;
        };
        if *caller == Identity::Anonymous {
            return false;
        }
        let whole_account = principal == account
            || principal.strip_prefix("arn:aws:iam::").and_then(|rest| rest.strip_suffix(":root")) == Some(account);
        whole_account || *principal == caller.arn(account)
    }
}

/// `"*"`, or an object of principal kinds to a string or list of strings.
fn principals(value: &Value, negated: bool) -> Option<Principals> {
    let listed = match value {
        Value::String(s) if s == "*" => vec![PrincipalPattern::Everyone],
        Value::Object(map) if !map.is_empty() => {
            let mut listed = Vec::new();
            for (kind, names) in map {
                for name in strings(names)? {
                    listed.push(match (kind.as_str(), name.as_str()) {
                        ("AWS", "*") => PrincipalPattern::Everyone,
                        ("AWS", _) => PrincipalPattern::Aws(name),
                        _ => PrincipalPattern::Other,
                    });
                }
            }
            listed
        }
        _ => return None,
    };
    Some(Principals { listed, negated })
}

/// A non-empty string, or a non-empty list of them.
fn strings(value: &Value) -> Option<Vec<String>> {
    let one = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_owned);
    match value {
        Value::Array(items) if !items.is_empty() => items.iter().map(one).collect(),
        Value::Array(_) => None,
        other => one(other).map(|s| vec![s]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_iam::CredentialKind;

    fn user(name: &str) -> Identity {
        Identity::User { name: name.into(), access_key_id: format!("AKIA{name}"), via: CredentialKind::SigV4 }
    }

    fn root() -> Identity {
        Identity::Root { access_key_id: "AKIAROOT".into(), via: CredentialKind::SigV4 }
    }

    const ACCOUNT: &str = "123456789012";

    fn ci() -> Identity {
        user("ci")
    }

    fn verdict(policy: &str, caller: &Identity, action: &str) -> Decision {
        decide(&RepositoryPolicy::parse(policy).expect(policy), caller, ACCOUNT, action)
    }

    fn denied(policy: &str, caller: &Identity, action: &str) -> bool {
        matches!(verdict(policy, caller, action), Decision::Deny { .. })
    }

    const NO_PUSH_FOR_CI: &str = r#"{"Version":"2012-10-17","Statement":[{"Sid":"NoPushForCi","Effect":"Deny",
        "Principal":{"AWS":"arn:aws:iam::123456789012:user/ci"},
        "Action":["ecr:PutImage","ecr:InitiateLayerUpload","ecr:UploadLayerPart","ecr:CompleteLayerUpload"]}]}"#;

    #[test]
    fn accepts_the_documented_shapes() {
        let pull = r#"{"Version":"2012-10-17","Statement":[{"Sid":"pull","Effect":"Allow",
            "Principal":{"AWS":["arn:aws:iam::123456789012:root"]},
            "Action":["ecr:BatchGetImage","ecr:GetDownloadUrlForLayer"]}]}"#;
        assert_eq!(validate(pull), Ok(()));
        let single = r#"{"Statement":{"Effect":"Deny","Principal":"*","Action":"ecr:*"}}"#;
        assert_eq!(validate(single), Ok(()));
        let with_condition = r#"{"Version":"2008-10-17","Statement":[{"Effect":"Allow","NotPrincipal":{"Service":"lambda.amazonaws.com"},
            "NotAction":"ecr:DeleteRepository","Condition":{"StringEquals":{"aws:sourceVpce":"vpce-1"}}}]}"#;
        assert_eq!(validate(with_condition), Ok(()));
    }

    #[test]
    fn refuses_what_iam_would() {
        for (text, says) in [
            ("{oops", "not valid JSON"),
            ("[]", "JSON object"),
            (r#"{"Version":"2020-01-01","Statement":[]}"#, "Version"),
            (r#"{"Version":"2012-10-17"}"#, "no Statement"),
            (r#"{"Statement":[]}"#, "must not be empty"),
            (r#"{"Statement":[{"Effect":"Maybe","Principal":"*","Action":"ecr:*"}]}"#, "Effect"),
            (r#"{"Statement":[{"Effect":"Allow","Action":"ecr:*"}]}"#, "Principal"),
            (r#"{"Statement":[{"Effect":"Allow","Principal":"someone","Action":"ecr:*"}]}"#, "Principal"),
            (r#"{"Statement":[{"Effect":"Allow","Principal":"*","NotPrincipal":"*","Action":"ecr:*"}]}"#, "Principal"),
            (r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":[]},"Action":"ecr:*"}]}"#, "Principal"),
            (r#"{"Statement":[{"Effect":"Allow","Principal":"*"}]}"#, "Action"),
            (r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":[]}]}"#, "Action"),
            (r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":["ecr:*",""]}]}"#, "Action"),
            (r#"{"Statement":["x"]}"#, "must be an object"),
        ] {
            let err = validate(text).expect_err(text);
            assert!(err.0.contains(says), "{text}: {err}");
        }
        let long = format!(
            r#"{{"Statement":[{{"Effect":"Allow","Principal":"*","Action":"ecr:*","Sid":"{}"}}]}}"#,
            "a".repeat(MAX_POLICY_LENGTH)
        );
        assert!(validate(&long).unwrap_err().0.contains("longer than 10240"));
    }

    #[test]
    fn a_deny_with_a_condition_is_refused() {
        let text = r#"{"Statement":[{"Effect":"Deny","Principal":"*","Action":"ecr:PutImage",
            "Condition":{"StringEquals":{"aws:username":"ci"}}}]}"#;
        assert!(validate(text).unwrap_err().0.contains("Deny with a Condition"));
    }

    #[test]
    fn denies_the_named_user_only_the_named_actions() {
        let deny = Decision::Deny { sid: Some("NoPushForCi".into()) };
        for action in ["ecr:PutImage", "ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload"] {
            assert_eq!(verdict(NO_PUSH_FOR_CI, &ci(), action), deny, "{action}");
        }
        for action in
            ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability", "ecr:ListImages"]
        {
            assert_eq!(verdict(NO_PUSH_FOR_CI, &ci(), action), Decision::Allow, "{action}");
        }
        for other in [user("alice"), user("CI"), root(), Identity::Anonymous] {
            assert_eq!(verdict(NO_PUSH_FOR_CI, &other, "ecr:PutImage"), Decision::Allow, "{other:?}");
        }
    }

    #[test]
    fn action_names_match_case_insensitively_with_wildcards() {
        let policy = |action: &str| {
            format!(
                r#"{{"Statement":{{"Effect":"Deny","Principal":{{"AWS":"arn:aws:iam::123456789012:user/ci"}},"Action":"{action}"}}}}"#
            )
        };
        assert!(denied(&policy("ECR:putimage"), &ci(), "ecr:PutImage"));
        assert!(denied(&policy("ecr:*"), &ci(), "ecr:DeleteRepository"));
        assert!(denied(&policy("*"), &ci(), "ecr:DeleteRepository"));
        assert!(denied(&policy("ecr:Batch*"), &ci(), "ecr:BatchGetImage"));
        assert!(denied(&policy("ecr:Batch*"), &ci(), "ecr:BatchDeleteImage"));
        assert!(!denied(&policy("ecr:Batch*"), &ci(), "ecr:PutImage"));
        assert!(denied(&policy("ecr:?utImage"), &ci(), "ecr:PutImage"));
        assert!(!denied(&policy("ecr:PutImag"), &ci(), "ecr:PutImage"));
        assert!(!denied(&policy("s3:*"), &ci(), "ecr:PutImage"));
    }

    #[test]
    fn principals_name_a_user_the_account_or_everyone() {
        let policy = |principal: &str| {
            format!(r#"{{"Statement":[{{"Effect":"Deny","Principal":{principal},"Action":"ecr:PutImage"}}]}}"#)
        };
        let alice = user("alice");
        for everyone in [r#""*""#, r#"{"AWS":"*"}"#, r#"{"AWS":["arn:aws:iam::111111111111:root","*"]}"#] {
            for caller in [ci(), alice.clone(), root(), Identity::Anonymous] {
                assert!(denied(&policy(everyone), &caller, "ecr:PutImage"), "{everyone} {caller:?}");
            }
        }
        for account in [r#"{"AWS":"123456789012"}"#, r#"{"AWS":"arn:aws:iam::123456789012:root"}"#] {
            for caller in [ci(), alice.clone(), root()] {
                assert!(denied(&policy(account), &caller, "ecr:PutImage"), "{account} {caller:?}");
            }
            assert!(!denied(&policy(account), &Identity::Anonymous, "ecr:PutImage"), "anonymous is not of the account");
        }
        for elsewhere in [
            r#"{"AWS":"111111111111"}"#,
            r#"{"AWS":"arn:aws:iam::111111111111:root"}"#,
            r#"{"AWS":"arn:aws:iam::111111111111:user/ci"}"#,
            r#"{"Service":"ecr.amazonaws.com"}"#,
            r#"{"AWS":"arn:aws:iam::123456789012:user/c*"}"#,
        ] {
            assert!(!denied(&policy(elsewhere), &ci(), "ecr:PutImage"), "{elsewhere}");
        }
    }

    #[test]
    fn not_principal_and_not_action_invert_the_match() {
        let all_but_ci = r#"{"Statement":[{"Effect":"Deny","NotPrincipal":{"AWS":"arn:aws:iam::123456789012:user/ci"},"Action":"ecr:PutImage"}]}"#;
        assert!(!denied(all_but_ci, &ci(), "ecr:PutImage"));
        assert!(denied(all_but_ci, &user("alice"), "ecr:PutImage"));
        assert!(denied(all_but_ci, &Identity::Anonymous, "ecr:PutImage"));
        let read_only = r#"{"Statement":[{"Effect":"Deny","Principal":"*","NotAction":["ecr:BatchGetImage","ecr:GetDownloadUrlForLayer"]}]}"#;
        assert!(!denied(read_only, &ci(), "ecr:BatchGetImage"));
        assert!(!denied(read_only, &ci(), "ECR:GetDownloadUrlForLayer"));
        assert!(denied(read_only, &ci(), "ecr:PutImage"));
    }

    #[test]
    fn allow_statements_grant_and_deny_nothing() {
        let allow_only = r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:user/alice"},"Action":"ecr:BatchGetImage"}]}"#;
        let policy = RepositoryPolicy::parse(allow_only).unwrap();
        assert!(policy.is_permissive());
        assert_eq!(decide(&policy, &ci(), ACCOUNT, "ecr:PutImage"), Decision::Allow);
        // An explicit deny wins over an allow for the same principal and action.
        let both = r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"ecr:*"},
            {"Effect":"Deny","Principal":"*","Action":"ecr:PutImage"}]}"#;
        assert_eq!(verdict(both, &ci(), "ecr:PutImage"), Decision::Deny { sid: None });
    }

    #[test]
    fn the_root_can_always_repair_the_policy() {
        let lockout = r#"{"Statement":[{"Effect":"Deny","Principal":"*","Action":"ecr:*"}]}"#;
        for action in [
            "ecr:SetRepositoryPolicy",
            "ecr:DeleteRepositoryPolicy",
            "ecr:GetRepositoryPolicy",
            "ecr:deleterepositorypolicy",
        ] {
            assert_eq!(verdict(lockout, &root(), action), Decision::Allow, "{action}");
            assert!(denied(lockout, &ci(), action), "{action}");
        }
        assert!(denied(lockout, &root(), "ecr:PutImage"), "root is subject to other denies");
    }

    #[test]
    fn callers_have_iam_arns() {
        assert_eq!(ci().arn(ACCOUNT), "arn:aws:iam::123456789012:user/ci");
        assert_eq!(root().arn(ACCOUNT), "arn:aws:iam::123456789012:root");
        assert_eq!(Identity::Anonymous.arn(ACCOUNT), "anonymous");
    }
}

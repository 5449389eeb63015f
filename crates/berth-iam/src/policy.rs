//! The IAM policy grammar: documents parsed once into a compiled [`Policy`] that evaluation walks
//! without parsing or allocating. Validation is IAM's where IAM documents it, and refuses what
//! Berth could only guess at (unknown elements, duplicate keys, unknown operators, malformed
//! values), each with a message that says what is wrong and where
//! (`Statement[1].Condition: unknown operator "StringEq"`). Parsing never panics.

use std::fmt;
use std::sync::Arc;

use crate::condition::Condition;
use crate::context::Identity;
use crate::json::Json;
use crate::keys::{ConditionKeys, varies_per_request};
use crate::truth::Truth;
use crate::variables::Pattern;
use crate::wildcard::{Tok, glob, tokens};

/// The policy language versions IAM knows; policy variables exist only in the first.
const VERSION_WITH_VARIABLES: &str = "2012-10-17";
const VERSIONS: [&str; 2] = [VERSION_WITH_VARIABLES, "2008-10-17"];

/// Why a document is not a policy Berth accepts; `Display` gives `location: problem`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    location: String,
    problem: String,
}

impl PolicyError {
    pub(crate) fn new(location: &str, problem: impl Into<String>) -> PolicyError {
        PolicyError { location: location.to_owned(), problem: problem.into() }
    }

    /// Where in the document (`Statement[1].Condition`), empty for the document as a whole.
    pub fn location(&self) -> &str {
        &self.location
    }

    pub fn problem(&self) -> &str {
        &self.problem
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if self.location.is_empty() {
            f.write_str(&self.problem)
        } else {
            write!(f, "{}: {}", self.location, self.problem)
        }
    }
}

impl std::error::Error for PolicyError {}

/// How long a policy document may be, and how it is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeLimit {
    /// Every character counts (ECR's `policyText` constraint).
    Characters(usize),
    /// Whitespace does not count (IAM's identity-policy quotas).
    NonWhitespaceCharacters(usize),
}

impl SizeLimit {
    /// ECR: `SetRepositoryPolicy`'s `policyText`, at most 10,240 characters.
    pub const REPOSITORY_POLICY: SizeLimit = SizeLimit::Characters(10_240);
    /// ECR: `PutRegistryPolicy`'s `policyText`, at most 10,240 characters.
    pub const REGISTRY_POLICY: SizeLimit = SizeLimit::Characters(10_240);
    /// IAM: a managed policy, at most 6,144 characters not counting whitespace. Berth's user
    /// policies are standalone documents like customer managed policies.
    pub const MANAGED_POLICY: SizeLimit = SizeLimit::NonWhitespaceCharacters(6_144);
    /// IAM: all inline policies of one user together, at most 2,048 characters not counting
    /// whitespace (sum [`SizeLimit::measure`] over them).
    pub const USER_INLINE_POLICIES: SizeLimit = SizeLimit::NonWhitespaceCharacters(2_048);

    /// `text`'s size as this limit counts it.
    pub fn measure(self, text: &str) -> usize {
        match self {
            SizeLimit::Characters(_) => text.chars().count(),
            SizeLimit::NonWhitespaceCharacters(_) => text.chars().filter(|c| !c.is_whitespace()).count(),
        }
    }

    pub fn max(self) -> usize {
        match self {
            SizeLimit::Characters(max) | SizeLimit::NonWhitespaceCharacters(max) => max,
        }
    }

    fn check(self, text: &str) -> Result<(), PolicyError> {
        let size = self.measure(text);
        if size <= self.max() {
            return Ok(());
        }
        let counted = match self {
            SizeLimit::Characters(_) => "characters",
            SizeLimit::NonWhitespaceCharacters(_) => "characters other than whitespace",
        };
        Err(PolicyError::new("", format!("the policy has {size} {counted}; at most {} are allowed", self.max())))
    }
}

/// Which side of IAM's evaluation a document is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    /// Attached to a user: names no `Principal` (it is the user), needs a `Resource`.
    Identity,
    /// A repository or registry policy: names its `Principal`s; `Resource` is optional (a
    /// repository policy's resource is its repository; a registry policy's, every repository).
    Resource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

impl Effect {
    /// Whether a statement of this effect applies given what its parts evaluated to. The only
    /// place a three-valued [`Truth`] becomes a decision: an `Allow` needs a definite yes, a
    /// `Deny` applies unless definitely not. So what Berth cannot evaluate can make a decision
    /// more restrictive, never less.
    pub(crate) fn applies(self, truth: Truth) -> bool {
        match self {
            Effect::Allow => truth == Truth::True,
            Effect::Deny => truth != Truth::False,
        }
    }
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Effect::Allow => "Allow",
            Effect::Deny => "Deny",
        })
    }
}

/// A parsed, validated policy document, ready to evaluate. Share it behind an `Arc`.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    kind: PolicyKind,
    statements: Box<[Statement]>,
    varies_per_request: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Statement {
    pub(crate) sid: Option<Arc<str>>,
    pub(crate) effect: Effect,
    /// `None` in identity policies.
    principals: Option<Principals>,
    actions: Actions,
    /// `None`: a resource policy's own resource.
    resources: Option<Resources>,
    condition: Option<Condition>,
}

/// `Principal` matches the listed principals, `NotPrincipal` everyone else.
#[derive(Debug, Clone, PartialEq)]
struct Principals {
    listed: Box<[PrincipalPattern]>,
    negated: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum PrincipalPattern {
    /// `"*"` or `{"AWS": "*"}`: everyone, anonymous callers included.
    Everyone,
    /// An account id: every principal of that account.
    Account(Box<str>),
    /// An IAM ARN: `arn:aws:iam::<account>:root` (the whole account) or a user's.
    Arn(Box<str>),
    /// A principal of another kind (`Service`, `Federated`, `CanonicalUser`): never a Berth caller.
    Other,
}

#[derive(Debug, Clone, PartialEq)]
struct Actions {
    patterns: Box<[ActionPattern]>,
    negated: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum ActionPattern {
    Any,
    /// No wildcard: compared ASCII-case-insensitively.
    Exact(Box<str>),
    Glob(Box<[Tok]>),
}

#[derive(Debug, Clone, PartialEq)]
struct Resources {
    patterns: Box<[Pattern]>,
    negated: bool,
}

const DOCUMENT_ELEMENTS: [&str; 3] = ["Version", "Id", "Statement"];
const STATEMENT_ELEMENTS: [&str; 9] =
    ["Sid", "Effect", "Principal", "NotPrincipal", "Action", "NotAction", "Resource", "NotResource", "Condition"];

impl Policy {
    /// Parses a policy attached to users (`berth user add --policy`, the managed policies).
    pub fn parse_identity(text: &str, limit: SizeLimit) -> Result<Policy, PolicyError> {
        Policy::parse(text, PolicyKind::Identity, limit)
    }

    /// Parses a repository or registry policy.
    pub fn parse_resource(text: &str, limit: SizeLimit) -> Result<Policy, PolicyError> {
        Policy::parse(text, PolicyKind::Resource, limit)
    }

    /// Parses a repository policy being set, as ECR accepts one: a resource policy whose
    /// statements name no `Resource` or `NotResource` (the repository is the resource; ECR
    /// answers "Invalid repository policy provided" to one that does). Policies stored before
    /// this check are still evaluated, through [`Policy::parse_resource`].
    pub fn parse_repository(text: &str) -> Result<Policy, PolicyError> {
        let policy = Policy::parse_resource(text, SizeLimit::REPOSITORY_POLICY)?;
        policy.check_principals()?;
        if let Some(i) = policy.statements.iter().position(|s| s.resources.is_some()) {
            return Err(PolicyError::new(
                &policy.statement_location(i),
                "a repository policy names no Resource or NotResource: the repository it is set on is its resource",
            ));
        }
        Ok(policy)
    }

    /// Parses a registry policy being set: a resource policy whose principals IAM would take.
    pub fn parse_registry(text: &str) -> Result<Policy, PolicyError> {
        let policy = Policy::parse_resource(text, SizeLimit::REGISTRY_POLICY)?;
        policy.check_principals()?;
        Ok(policy)
    }

    /// Where statement `i` is, as errors name it: `Statement` when it is the only one.
    fn statement_location(&self, i: usize) -> String {
        if self.statements.len() == 1 { "Statement".to_owned() } else { format!("Statement[{i}]") }
    }

    /// A policy being set names only principals IAM would take (see [`invalid_principal_arn`]).
    /// A stored one that names others still evaluates, through [`Policy::parse_resource`]: those
    /// principals match no caller, as they always did.
    fn check_principals(&self) -> Result<(), PolicyError> {
        for (i, statement) in self.statements.iter().enumerate() {
            let Some(principals) = &statement.principals else { continue };
            for pattern in principals.listed.iter() {
                let PrincipalPattern::Arn(arn) = pattern else { continue };
                if let Some(why) = invalid_principal_arn(arn) {
                    let statement = self.statement_location(i);
                    let element = if principals.negated { "NotPrincipal" } else { "Principal" };
                    return Err(PolicyError::new(
                        &format!("{statement}.{element}.AWS"),
                        format!("Invalid principal in policy: {arn:?}: {why}"),
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn parse(text: &str, kind: PolicyKind, limit: SizeLimit) -> Result<Policy, PolicyError> {
        limit.check(text)?;
        if kind == PolicyKind::Identity
            && let Some((at, c)) =
                text.chars().enumerate().find(|(_, c)| !matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{ff}'))
        {
            return Err(PolicyError::new(
                "",
                format!(
                    "the character at offset {at} is U+{:04X}; IAM policies may contain only tab, line feed, carriage return and U+0020 to U+00FF",
                    c as u32
                ),
            ));
        }
        let document =
            Json::parse(text).map_err(|e| PolicyError::new("", format!("the policy is not valid JSON: {e}")))?;
        let Json::Object(members) = &document else {
            return Err(PolicyError::new("", format!("the policy must be a JSON object, not {}", document.kind())));
        };
        check_members(members, &DOCUMENT_ELEMENTS, "")?;
        let version = match member(members, "Version") {
            None => None,
            Some(Json::String(v)) if VERSIONS.contains(&v.as_str()) => Some(v.as_str()),
            Some(other) => {
                return Err(PolicyError::new(
                    "Version",
                    format!("must be \"2012-10-17\" or \"2008-10-17\", not {}", describe(other)),
                ));
            }
        };
        if let Some(id) = member(members, "Id")
            && !matches!(id, Json::String(_))
        {
            return Err(PolicyError::new("Id", format!("must be a string, not {}", id.kind())));
        }
        let variables = version == Some(VERSION_WITH_VARIABLES);
        let listed: Vec<(String, &Json)> = match member(members, "Statement") {
            None => return Err(PolicyError::new("", "the policy has no Statement")),
            Some(Json::Array(list)) if list.is_empty() => {
                return Err(PolicyError::new("Statement", "must not be empty"));
            }
            Some(Json::Array(list)) => list.iter().enumerate().map(|(i, s)| (format!("Statement[{i}]"), s)).collect(),
            Some(one @ Json::Object(_)) => vec![("Statement".to_owned(), one)],
            Some(other) => {
                return Err(PolicyError::new(
                    "Statement",
                    format!("must be an object or a non-empty array of objects, not {}", other.kind()),
                ));
            }
        };
        let mut statements: Vec<Statement> = Vec::with_capacity(listed.len());
        for (at, json) in &listed {
            let statement = Statement::parse(json, at, kind, variables)?;
            if kind == PolicyKind::Identity
                && let Some(sid) = &statement.sid
                && let Some(first) = statements.iter().position(|s| s.sid.as_ref() == Some(sid))
            {
                return Err(PolicyError::new(
                    &format!("{at}.Sid"),
                    format!("{sid:?} is also the Sid of {}; Sids must be unique within a policy", listed[first].0),
                ));
            }
            statements.push(statement);
        }
        let varies_per_request = statements.iter().any(|s| s.keys().any(varies_per_request));
        Ok(Policy { kind, statements: statements.into_boxed_slice(), varies_per_request })
    }

    pub fn kind(&self) -> PolicyKind {
        self.kind
    }

    /// Whether the policy reads keys that differ between two requests of one caller on one
    /// repository (source IP, TLS, time, user agent, request tags). If no policy in force does,
    /// a decision can be cached per (caller, action, repository and its settings).
    pub fn varies_per_request(&self) -> bool {
        self.varies_per_request
    }

    /// The users of `account` its principals name by ARN (`arn:aws:iam::<account>:user/<name>`),
    /// each once.
    pub fn named_users(&self, account: &str) -> Vec<&str> {
        let mut users: Vec<&str> = self
            .statements
            .iter()
            .filter_map(|s| s.principals.as_ref())
            .flat_map(|p| p.listed.iter())
            .filter_map(|p| p.user_of(account))
            .collect();
        users.sort_unstable();
        users.dedup();
        users
    }

    /// The policy with every principal naming `user` of `account` turned into one that names
    /// nobody: what IAM does when the user a principal was bound to is deleted (the ARN becomes
    /// the old user's unique ID), so a new user of the same name is not that principal.
    pub fn forgetting_user(&self, account: &str, user: &str) -> Policy {
        let mut policy = self.clone();
        for principals in policy.statements.iter_mut().filter_map(|s| s.principals.as_mut()) {
            for pattern in principals.listed.iter_mut().filter(|p| p.user_of(account) == Some(user)) {
                *pattern = PrincipalPattern::Other;
            }
        }
        policy
    }

    pub(crate) fn statements(&self) -> &[Statement] {
        &self.statements
    }
}

/// The member `name` of an object (after [`check_members`], there is at most one).
fn member<'j>(members: &'j [(String, Json)], name: &str) -> Option<&'j Json> {
    members.iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

/// Refuses duplicate and unknown members.
fn check_members(members: &[(String, Json)], known: &[&str], at: &str) -> Result<(), PolicyError> {
    for (i, (name, _)) in members.iter().enumerate() {
        if members[..i].iter().any(|(n, _)| n == name) {
            return Err(PolicyError::new(at, format!("{name:?} appears twice")));
        }
        if !known.contains(&name.as_str()) {
            let expected = known.iter().map(|k| format!("{k:?}")).collect::<Vec<_>>().join(", ");
            return Err(PolicyError::new(at, format!("unknown element {name:?} (expected {expected})")));
        }
    }
    Ok(())
}

/// A JSON value for an error message: strings quoted, other values by kind.
fn describe(json: &Json) -> String {
    match json {
        Json::String(s) => format!("{s:?}"),
        other => other.kind().to_owned(),
    }
}

/// A string, or a non-empty array of strings.
fn strings<'j>(json: &'j Json, at: &str) -> Result<Vec<&'j str>, PolicyError> {
    let problem =
        || PolicyError::new(at, format!("must be a string or a non-empty array of strings, not {}", json.kind()));
    match json {
        Json::String(s) => Ok(vec![s]),
        Json::Array(items) if !items.is_empty() => items
            .iter()
            .map(|item| match item {
                Json::String(s) => Ok(s.as_str()),
                _ => Err(problem()),
            })
            .collect(),
        _ => Err(problem()),
    }
}

/// The one element of a positive/negated pair (`Action`/`NotAction`), with whether it is negated.
fn one_of<'j>(
    members: &'j [(String, Json)],
    positive: &str,
    negative: &str,
    at: &str,
) -> Result<Option<(&'j Json, bool)>, PolicyError> {
    match (member(members, positive), member(members, negative)) {
        (Some(_), Some(_)) => Err(PolicyError::new(at, format!("has both {positive} and {negative}; use one"))),
        (Some(json), None) => Ok(Some((json, false))),
        (None, Some(json)) => Ok(Some((json, true))),
        (None, None) => Ok(None),
    }
}

impl Statement {
    fn parse(json: &Json, at: &str, kind: PolicyKind, variables: bool) -> Result<Statement, PolicyError> {
        let Json::Object(members) = json else {
            return Err(PolicyError::new(at, format!("a statement must be an object, not {}", json.kind())));
        };
        check_members(members, &STATEMENT_ELEMENTS, at)?;
        let sid = match member(members, "Sid") {
            None => None,
            Some(Json::String(sid)) => {
                if kind == PolicyKind::Identity && !sid.chars().all(|c| c.is_ascii_alphanumeric()) {
                    return Err(PolicyError::new(
                        &format!("{at}.Sid"),
                        format!("{sid:?} must contain only letters and digits (IAM's rule for identity policies)"),
                    ));
                }
                Some(Arc::from(sid.as_str()))
            }
            Some(other) => {
                return Err(PolicyError::new(&format!("{at}.Sid"), format!("must be a string, not {}", other.kind())));
            }
        };
        let effect = match member(members, "Effect") {
            Some(Json::String(e)) if e == "Allow" => Effect::Allow,
            Some(Json::String(e)) if e == "Deny" => Effect::Deny,
            Some(other) => {
                return Err(PolicyError::new(
                    &format!("{at}.Effect"),
                    format!("must be \"Allow\" or \"Deny\", not {}", describe(other)),
                ));
            }
            None => return Err(PolicyError::new(at, "has no Effect")),
        };
        let principals = match (kind, one_of(members, "Principal", "NotPrincipal", at)?) {
            (PolicyKind::Identity, None) => None,
            (PolicyKind::Identity, Some(_)) => {
                return Err(PolicyError::new(
                    at,
                    "an identity policy names no Principal or NotPrincipal: it applies to the user it is attached to",
                ));
            }
            (PolicyKind::Resource, None) => {
                return Err(PolicyError::new(
                    at,
                    "a repository or registry policy statement needs a Principal or NotPrincipal, like {\"AWS\": \"arn:aws:iam::123456789012:user/ci\"} or \"*\"",
                ));
            }
            (PolicyKind::Resource, Some((json, negated))) => {
                let element = if negated { "NotPrincipal" } else { "Principal" };
                Some(Principals { listed: principals(json, &format!("{at}.{element}"))?, negated })
            }
        };
        let Some((json, negated)) = one_of(members, "Action", "NotAction", at)? else {
            return Err(PolicyError::new(at, "needs an Action or NotAction, like \"ecr:BatchGetImage\""));
        };
        let element = format!("{at}.{}", if negated { "NotAction" } else { "Action" });
        let actions = Actions {
            patterns: strings(json, &element)?.into_iter().map(|a| action(a, &element)).collect::<Result<_, _>>()?,
            negated,
        };
        let resources = match one_of(members, "Resource", "NotResource", at)? {
            None if kind == PolicyKind::Identity => {
                return Err(PolicyError::new(
                    at,
                    "needs a Resource or NotResource, like \"arn:aws:ecr:us-east-1:123456789012:repository/team-a/*\" or \"*\"",
                ));
            }
            None => None,
            Some((json, negated)) => {
                let element = format!("{at}.{}", if negated { "NotResource" } else { "Resource" });
                let patterns = strings(json, &element)?
                    .into_iter()
                    .map(|r| resource(r, &element, variables))
                    .collect::<Result<_, _>>()?;
                Some(Resources { patterns, negated })
            }
        };
        let condition = match member(members, "Condition") {
            None => None,
            Some(json) => Some(Condition::parse(json, &format!("{at}.Condition"), variables)?),
        };
        Ok(Statement { sid, effect, principals, actions, resources, condition })
    }

    /// Every condition key (or policy variable) the statement reads.
    fn keys(&self) -> impl Iterator<Item = &str> {
        let resource_variables = self.resources.iter().flat_map(|r| r.patterns.iter().flat_map(Pattern::var_keys));
        resource_variables.chain(self.condition.iter().flat_map(Condition::keys))
    }

    /// Whether the statement covers this request: its action, principal, resource and condition
    /// all match. `Unknown` when only something Berth cannot know stands between.
    pub(crate) fn truth(&self, action: &str, resource: &str, keys: &ConditionKeys) -> Truth {
        if !self.actions.matches(action) {
            return Truth::False;
        }
        if let Some(principals) = &self.principals
            && !principals.matches(keys.identity(), keys.account(), self.effect)
        {
            return Truth::False;
        }
        let mut truth = Truth::True;
        if let Some(resources) = &self.resources {
            truth = resources.truth(resource, keys);
            if truth == Truth::False {
                return truth;
            }
        }
        if let Some(condition) = &self.condition {
            truth = truth.and(condition.truth(keys));
        }
        truth
    }
}

/// `"*"`, or an object of principal kinds to a string or list of strings.
fn principals(json: &Json, at: &str) -> Result<Box<[PrincipalPattern]>, PolicyError> {
    let members = match json {
        Json::String(s) if s == "*" => return Ok(Box::new([PrincipalPattern::Everyone])),
        Json::Object(members) if !members.is_empty() => members,
        _ => {
            return Err(PolicyError::new(
                at,
                format!(
                    "must be \"*\" or an object like {{\"AWS\": \"arn:aws:iam::123456789012:user/ci\"}}, not {}",
                    describe(json)
                ),
            ));
        }
    };
    check_members(members, &["AWS", "Service", "Federated", "CanonicalUser"], at)?;
    let mut listed = Vec::new();
    for (kind, names) in members {
        let at = format!("{at}.{kind}");
        for name in strings(names, &at)? {
            listed.push(match kind.as_str() {
                "AWS" if name == "*" => PrincipalPattern::Everyone,
                "AWS" if name.len() == 12 && name.bytes().all(|b| b.is_ascii_digit()) => {
                    PrincipalPattern::Account(name.into())
                }
                "AWS" if name.starts_with("arn:") => PrincipalPattern::Arn(name.into()),
                "AWS" => {
                    return Err(PolicyError::new(
                        &at,
                        format!("{name:?} is not a principal: use a 12-digit account id, an IAM ARN or \"*\""),
                    ));
                }
                _ => PrincipalPattern::Other,
            });
        }
    }
    Ok(listed.into_boxed_slice())
}

/// Why `arn` cannot be a principal, if it cannot: IAM takes an account's root, a user, a role or
/// an STS session, each named exactly — a wildcard in part of one (`user/*`), a group or a regional
/// IAM ARN is refused there ("Invalid principal in policy"), where it would seem to cover callers
/// and match none.
fn invalid_principal_arn(arn: &str) -> Option<&'static str> {
    if arn.contains(['*', '?']) {
        return Some("a principal ARN takes no wildcard; use \"*\" for everyone, or a Condition on aws:PrincipalArn");
    }
    let (service, rest) = match (arn.strip_prefix("arn:aws:iam::"), arn.strip_prefix("arn:aws:sts::")) {
        (Some(rest), _) => ("iam", rest),
        (_, Some(rest)) => ("sts", rest),
        _ => return Some("name a principal as arn:aws:iam::ACCOUNT:root or arn:aws:iam::ACCOUNT:user/NAME"),
    };
    let (account, resource) = rest.split_once(':').unwrap_or((rest, ""));
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return Some("the account must be a 12-digit id");
    }
    // IAM's name characters; a path's segments between slashes.
    let named = |names: &str, segments: usize| {
        let parts: Vec<&str> = names.split('/').collect();
        parts.len() >= segments
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b)))
    };
    let valid = match (service, resource.split_once('/')) {
        ("iam", None) => resource == "root",
        ("iam", Some(("user" | "role", names))) => named(names, 1),
        ("sts", Some(("assumed-role", names))) => named(names, 2),
        ("sts", Some(("federated-user", names))) => named(names, 1),
        _ => false,
    };
    (!valid).then_some("name the account's root (:root), a user (:user/NAME), a role or an STS session")
}

/// `*`, or `service:Action` with IAM's wildcards in the action part.
fn action(text: &str, at: &str) -> Result<ActionPattern, PolicyError> {
    if text == "*" {
        return Ok(ActionPattern::Any);
    }
    let vendor_ok = |vendor: &str| !vendor.is_empty() && vendor.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    match text.split_once(':') {
        Some((vendor, name)) if vendor_ok(vendor) && !name.is_empty() => {}
        _ => {
            return Err(PolicyError::new(
                at,
                format!(
                    "{text:?} is not an action: write \"service:Action\" (\"ecr:PutImage\", \"ecr:Batch*\") or \"*\""
                ),
            ));
        }
    }
    if text.contains(['*', '?']) {
        Ok(ActionPattern::Glob(tokens(text, true).collect()))
    } else {
        Ok(ActionPattern::Exact(text.into()))
    }
}

/// `*`, or an ARN pattern.
fn resource(text: &str, at: &str, variables: bool) -> Result<Pattern, PolicyError> {
    if text != "*" && !text.starts_with("arn:") {
        return Err(PolicyError::new(
            at,
            format!(
                "{text:?} is not a resource: write an ARN (\"arn:aws:ecr:<region>:<account>:repository/<name>\") or \"*\""
            ),
        ));
    }
    Pattern::compile(text, variables).map_err(|problem| PolicyError::new(at, problem))
}

impl Actions {
    fn matches(&self, action: &str) -> bool {
        let listed = self.patterns.iter().any(|pattern| match pattern {
            ActionPattern::Any => true,
            ActionPattern::Exact(name) => name.eq_ignore_ascii_case(action),
            ActionPattern::Glob(toks) => glob(toks, action, true),
        });
        listed != self.negated
    }
}

impl Resources {
    fn truth(&self, resource: &str, keys: &ConditionKeys) -> Truth {
        let listed = Truth::any(self.patterns.iter().map(|p| p.matches(resource, keys, true)));
        if self.negated { listed.not() } else { listed }
    }
}

impl Principals {
    /// An account (its id or root ARN) in a `Deny`'s `Principal` covers every principal of the
    /// account. In an `Allow` IAM reads it as delegation — the account's users still need their
    /// own identity policy's Allow — so there it grants the root alone; in a `NotPrincipal` list
    /// it exempts the root alone, as AWS documents for `Deny` with `NotPrincipal`.
    fn matches(&self, identity: &Identity, account: &str, effect: Effect) -> bool {
        let whole_account = effect == Effect::Deny && !self.negated;
        self.listed.iter().any(|p| p.matches(identity, account, whole_account)) != self.negated
    }
}

impl PrincipalPattern {
    /// The user of `account` this pattern names by ARN.
    fn user_of(&self, account: &str) -> Option<&str> {
        match self {
            PrincipalPattern::Arn(arn) => {
                arn.strip_prefix("arn:aws:iam::")?.strip_prefix(account)?.strip_prefix(":user/")
            }
            _ => None,
        }
    }

    /// A user ARN names that user and `*` everyone; an account names its root, or every
    /// principal of it when `whole_account`; anonymous callers are of no account.
    fn matches(&self, identity: &Identity, account: &str, whole_account: bool) -> bool {
        if *self == PrincipalPattern::Everyone {
            return true;
        }
        if *identity == Identity::Anonymous {
            return false;
        }
        let the_account = whole_account || matches!(identity, Identity::Root { .. });
        match self {
            PrincipalPattern::Account(id) => **id == *account && the_account,
            PrincipalPattern::Arn(arn) => {
                let Some(rest) = arn.strip_prefix("arn:aws:iam::").and_then(|r| r.strip_prefix(account)) else {
                    return false;
                };
                match (rest, identity) {
                    (":root", _) => the_account,
                    (rest, Identity::User { name, .. }) => rest.strip_prefix(":user/") == Some(name),
                    _ => false,
                }
            }
            PrincipalPattern::Everyone | PrincipalPattern::Other => false,
        }
    }
}

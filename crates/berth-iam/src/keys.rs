//! The condition-key values of one request, read lazily from the [`RequestContext`] and the tags
//! the caller supplies: nothing is computed or allocated unless a policy condition (or policy
//! variable) asks for it, so a request under policies without conditions costs no key work.

use std::borrow::Cow;
use std::net::IpAddr;
use std::time::UNIX_EPOCH;

use crate::context::{Identity, RequestContext};

/// A key/value tag as the `…ResourceTag/<key>`, `aws:RequestTag/<key>` and `aws:TagKeys` keys see
/// it. Implement it for the registry's own tag type to pass its tags without copying them.
pub trait Tag {
    fn key(&self) -> &str;
    fn value(&self) -> &str;
}

impl Tag for (String, String) {
    fn key(&self) -> &str {
        &self.0
    }
    fn value(&self) -> &str {
        &self.1
    }
}

impl Tag for (&str, &str) {
    fn key(&self) -> &str {
        self.0
    }
    fn value(&self) -> &str {
        self.1
    }
}

/// A set of tags (a repository's, or those a request sets); implemented for every `Vec` of
/// [`Tag`]s, so `&settings.resource_tags` can be passed as it is.
pub trait Tags {
    fn tag_at(&self, index: usize) -> Option<(&str, &str)>;
}

impl<T: Tag> Tags for Vec<T> {
    fn tag_at(&self, index: usize) -> Option<(&str, &str)> {
        self.get(index).map(|t| (t.key(), t.value()))
    }
}

/// The tags of `tags`, in order.
fn iter(tags: &dyn Tags) -> impl Iterator<Item = (&str, &str)> {
    (0..).map_while(|i| tags.tag_at(i))
}

/// The value of tag `key`: IAM compares the tag-key part of a condition key case-insensitively.
fn tag_value<'t>(tags: &'t dyn Tags, key: &str) -> Option<&'t str> {
    iter(tags).find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v)
}

/// What the caller says about a key Berth has no other source for.
#[derive(Debug, Clone)]
enum Override {
    Values(Vec<String>),
    /// The request has a value Berth cannot know; see [`ConditionKeys::set_unknown`].
    Unknown,
}

/// The condition-key values of one request. Build it once per request from its context, the
/// registry account, and (when the call has them) the repository's tags and the tags the request
/// sets; key names are case-insensitive as in IAM, and a key not listed here is absent.
///
/// | key | value |
/// |---|---|
/// | `aws:username` | the user's name (absent for the root and anonymous callers, as in IAM) |
/// | `aws:userid` | the user's name (Berth users have no separate unique id; none may be named `anonymous`), the account id for the root, `anonymous` |
/// | `aws:PrincipalArn` | `arn:aws:iam::<account>:user/<name>` or `…:root`; absent when anonymous |
/// | `aws:PrincipalAccount` | the account id; absent when anonymous |
/// | `aws:PrincipalType` | `User`, `Account` (root) or `Anonymous` |
/// | `aws:SourceIp` | [`RequestContext::source_ip`] |
/// | `aws:SecureTransport` | [`RequestContext::secure_transport`] |
/// | `aws:CurrentTime`, `aws:EpochTime` | [`RequestContext::received_at`], to the second |
/// | `aws:UserAgent` | [`RequestContext::user_agent`] |
/// | `aws:RequestedRegion` | [`ConditionKeys::requested_region`] |
/// | `aws:ResourceTag/<k>`, `ecr:ResourceTag/<k>` | [`ConditionKeys::resource_tags`] |
/// | `aws:RequestTag/<k>`, `aws:TagKeys` | [`ConditionKeys::request_tags`] |
pub struct ConditionKeys<'a> {
    context: &'a RequestContext,
    account: &'a str,
    region: Option<&'a str>,
    resource_tags: Option<&'a dyn Tags>,
    request_tags: Option<&'a dyn Tags>,
    overrides: Vec<(String, Override)>,
}

/// A key's value(s) in one request, as the condition operators read them.
pub(crate) enum KeyValue<'k> {
    Absent,
    /// The request has a value Berth cannot know: conditions over it evaluate to "unknown".
    Unknown,
    One(Item<'k>),
    /// A multi-valued key: the keys of these tags (`aws:TagKeys`).
    TagKeys(&'k dyn Tags),
    /// A multi-valued key the caller set.
    List(&'k [String]),
}

/// One value of a key, typed where Berth has it typed, so comparisons need no round trip
/// through text.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Item<'k> {
    Str(Cow<'k, str>),
    Bool(bool),
    Ip(IpAddr),
    /// Seconds since the Unix epoch; `epoch_text` when its text form is epoch seconds
    /// (`aws:EpochTime`) rather than ISO 8601 (`aws:CurrentTime`).
    Time {
        secs: i64,
        epoch_text: bool,
    },
}

impl<'k> Item<'k> {
    /// The value as IAM's string operators see it.
    pub(crate) fn text(&self) -> Cow<'k, str> {
        match self {
            Item::Str(s) => s.clone(),
            Item::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
            Item::Ip(ip) => Cow::Owned(ip.to_string()),
            Item::Time { secs, epoch_text: true } => Cow::Owned(secs.to_string()),
            Item::Time { secs, epoch_text: false } => Cow::Owned(crate::condition::iso8601(*secs)),
        }
    }
}

impl<'k> KeyValue<'k> {
    /// The values of the key, in order (none when absent or unknown).
    pub(crate) fn into_items(self) -> impl Iterator<Item = Item<'k>> {
        let (one, tags, list) = match self {
            KeyValue::One(item) => (Some(item), None, None),
            KeyValue::TagKeys(tags) => (None, Some(tags), None),
            KeyValue::List(values) => (None, None, Some(values)),
            KeyValue::Absent | KeyValue::Unknown => (None, None, None),
        };
        one.into_iter()
            .chain(tags.into_iter().flat_map(|t| iter(t).map(|(k, _)| Item::Str(Cow::Borrowed(k)))))
            .chain(list.into_iter().flat_map(|l| l.iter().map(|v| Item::Str(Cow::Borrowed(v.as_str())))))
    }

    /// IAM treats an empty multi-valued key like an absent one.
    pub(crate) fn is_absent(&self) -> bool {
        match self {
            KeyValue::Absent => true,
            KeyValue::TagKeys(tags) => tags.tag_at(0).is_none(),
            KeyValue::List(values) => values.is_empty(),
            KeyValue::Unknown | KeyValue::One(_) => false,
        }
    }
}

impl<'a> ConditionKeys<'a> {
    /// The keys of `context`, a request to the registry of `account`.
    pub fn new(context: &'a RequestContext, account: &'a str) -> ConditionKeys<'a> {
        ConditionKeys { context, account, region: None, resource_tags: None, request_tags: None, overrides: Vec::new() }
    }

    /// `aws:RequestedRegion`: the region the registry serves.
    pub fn requested_region(mut self, region: &'a str) -> Self {
        self.region = Some(region);
        self
    }

    /// The tags of the repository the request acts on (`aws:ResourceTag/<k>`, `ecr:ResourceTag/<k>`).
    /// Leave unset when it has none, or does not exist yet (create-on-push): the keys are absent.
    pub fn resource_tags(mut self, tags: &'a dyn Tags) -> Self {
        self.resource_tags = Some(tags);
        self
    }

    /// The tags the request sets (`CreateRepository`, `TagResource`): `aws:RequestTag/<k>` and
    /// `aws:TagKeys`. `UntagResource` sets only the keys: pass them with empty values.
    pub fn request_tags(mut self, tags: &'a dyn Tags) -> Self {
        self.request_tags = Some(tags);
        self
    }

    /// Gives `key` these values (several make it multi-valued), replacing any Berth derives.
    /// For `berth policy simulate --context` and keys only the caller knows.
    pub fn set(mut self, key: &str, values: Vec<String>) -> Self {
        self.overrides.push((key.to_ascii_lowercase(), Override::Values(values)));
        self
    }

    /// Marks `key` as one the request has a value for that Berth cannot know (e.g. the client's
    /// address behind a proxy that is not trusted). Conditions over it evaluate to "unknown",
    /// which never lets an `Allow` apply and always lets a `Deny` apply.
    pub fn set_unknown(mut self, key: &str) -> Self {
        self.overrides.push((key.to_ascii_lowercase(), Override::Unknown));
        self
    }

    pub fn identity(&self) -> &'a Identity {
        &self.context.identity
    }

    pub fn account(&self) -> &'a str {
        self.account
    }

    /// The value of `key`, given in lower case.
    pub(crate) fn get(&self, key: &str) -> KeyValue<'_> {
        if let Some((_, value)) = self.overrides.iter().rev().find(|(k, _)| k == key) {
            return match value {
                Override::Values(values) => KeyValue::List(values),
                Override::Unknown => KeyValue::Unknown,
            };
        }
        let identity = &self.context.identity;
        let text = |s: &'a str| KeyValue::One(Item::Str(Cow::Borrowed(s)));
        let anonymous = *identity == Identity::Anonymous;
        match key {
            "aws:username" => match identity {
                Identity::User { name, .. } => text(name),
                _ => KeyValue::Absent,
            },
            "aws:userid" => match identity {
                Identity::User { name, .. } => text(name),
                Identity::Root { .. } | Identity::Server { .. } => text(self.account),
                Identity::Anonymous => text("anonymous"),
            },
            "aws:principalarn" if !anonymous => KeyValue::One(Item::Str(Cow::Owned(identity.arn(self.account)))),
            "aws:principalaccount" if !anonymous => text(self.account),
            "aws:principaltype" => text(match identity {
                Identity::User { .. } => "User",
                Identity::Root { .. } | Identity::Server { .. } => "Account",
                Identity::Anonymous => "Anonymous",
            }),
            "aws:sourceip" => self.context.source_ip.map_or(KeyValue::Absent, |ip| KeyValue::One(Item::Ip(ip))),
            "aws:securetransport" => KeyValue::One(Item::Bool(self.context.secure_transport)),
            "aws:currenttime" => KeyValue::One(Item::Time { secs: self.received_secs(), epoch_text: false }),
            "aws:epochtime" => KeyValue::One(Item::Time { secs: self.received_secs(), epoch_text: true }),
            "aws:useragent" => self.context.user_agent.as_deref().map_or(KeyValue::Absent, text),
            "aws:requestedregion" => self.region.map_or(KeyValue::Absent, text),
            "aws:tagkeys" => self.request_tags.map_or(KeyValue::Absent, KeyValue::TagKeys),
            _ => {
                let tag = |prefix: &str, tags: Option<&'a dyn Tags>| {
                    let tag_key = key.strip_prefix(prefix)?;
                    tag_value(tags?, tag_key).map(text)
                };
                tag("aws:resourcetag/", self.resource_tags)
                    .or_else(|| tag("ecr:resourcetag/", self.resource_tags))
                    .or_else(|| tag("aws:requesttag/", self.request_tags))
                    .unwrap_or(KeyValue::Absent)
            }
        }
    }

    fn received_secs(&self) -> i64 {
        match self.context.received_at.duration_since(UNIX_EPOCH) {
            Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
            Err(before) => i64::try_from(before.duration().as_secs()).map_or(i64::MIN, |s| -s),
        }
    }
}

/// Whether a condition over `key` (lower case) can decide differently for two requests of the
/// same caller on the same repository (whose tags change only with its settings): such policies
/// make decisions that cannot be cached per (user, repository).
pub(crate) fn varies_per_request(key: &str) -> bool {
    matches!(
        key,
        "aws:sourceip" | "aws:securetransport" | "aws:currenttime" | "aws:epochtime" | "aws:useragent" | "aws:tagkeys"
    ) || key.starts_with("aws:requesttag/")
}

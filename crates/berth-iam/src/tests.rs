//! The evaluator end to end: documents parsed from text, requests built from a [`RequestContext`],
//! decisions checked. Table-driven; each table says what IAM does.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use crate::truth::Truth;
use crate::*;

const ACCOUNT: &str = "123456789012";
const REGION: &str = "us-east-1";
/// 2026-01-31T12:00:00Z.
const NOON: u64 = 1_769_860_800;

fn repo(name: &str) -> String {
    arn::repository_arn(REGION, ACCOUNT, name)
}

fn user(name: &str) -> Identity {
    Identity::User { name: name.into(), access_key_id: "AKIATESTKEY".into(), via: CredentialKind::SigV4 }
}

fn root() -> Identity {
    Identity::Root { access_key_id: "AKIAROOT".into(), via: CredentialKind::SigV4 }
}

fn context(identity: Identity) -> RequestContext {
    RequestContext {
        request_id: "req-1".into(),
        received_at: UNIX_EPOCH + Duration::from_secs(NOON),
        source_ip: Some("203.0.113.7".parse().unwrap()),
        secure_transport: true,
        user_agent: Some("docker/27.0".into()),
        identity,
    }
}

fn identity_policy(name: &str, text: &str) -> NamedPolicy {
    let policy = Policy::parse_identity(text, SizeLimit::MANAGED_POLICY).unwrap_or_else(|e| panic!("{text}: {e}"));
    NamedPolicy::new(name, Arc::new(policy))
}

fn resource_policy(name: &str, text: &str) -> NamedPolicy {
    let policy = Policy::parse_resource(text, SizeLimit::REPOSITORY_POLICY).unwrap_or_else(|e| panic!("{text}: {e}"));
    NamedPolicy::new(name, Arc::new(policy))
}

fn managed(name: &str) -> NamedPolicy {
    identity_policy(name, managed::by_name(name).unwrap())
}

/// An identity policy of one statement.
fn allow(action: &str, resource: &str) -> NamedPolicy {
    identity_policy(
        "allow",
        &format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":{action},"Resource":{resource}}}]}}"#
        ),
    )
}

/// The repository's tags and the tags the request sets, for every request below.
fn resource_tags() -> Vec<(String, String)> {
    vec![("team".into(), "a".into()), ("env".into(), "prod".into())]
}

fn request_tags() -> Vec<(String, String)> {
    vec![("team".into(), "b".into()), ("cost".into(), "42".into())]
}

/// Decides `action` on `resource` for `identity`, with the standard context and tags.
fn decide(identity: &Identity, action: &str, resource: &str, policies: &PolicySet) -> Decision {
    decide_with(identity, action, resource, policies, |keys| keys)
}

fn decide_with(
    identity: &Identity,
    action: &str,
    resource: &str,
    policies: &PolicySet,
    adjust: impl for<'k> FnOnce(ConditionKeys<'k>) -> ConditionKeys<'k>,
) -> Decision {
    let context = context(identity.clone());
    let (resource_tags, request_tags) = (resource_tags(), request_tags());
    let keys = adjust(
        ConditionKeys::new(&context, ACCOUNT)
            .requested_region(REGION)
            .resource_tags(&resource_tags)
            .request_tags(&request_tags),
    );
    evaluate(&AuthzRequest { action, resource, keys: &keys }, policies)
}

fn allowed(identity: &Identity, action: &str, resource: &str, policies: &PolicySet) -> bool {
    decide(identity, action, resource, policies).is_allowed()
}

fn identity_only(policies: &[NamedPolicy]) -> PolicySet<'_> {
    PolicySet { identity: policies, ..PolicySet::default() }
}

// ---------------------------------------------------------------------------------------------
// Conditions

/// What a condition evaluates to for user `ci` under the standard context, read through the
/// evaluator: an `Allow` applies only when it is true, a `Deny` unless it is false.
fn condition_truth(condition: &str, adjust: impl for<'k> Fn(ConditionKeys<'k>) -> ConditionKeys<'k>) -> Truth {
    let statement = |effect: &str| {
        format!(
            r#"{{"Version":"2012-10-17","Statement":{{"Effect":"{effect}","Action":"ecr:*","Resource":"*","Condition":{condition}}}}}"#
        )
    };
    let (allow, deny) = (identity_policy("allow", &statement("Allow")), identity_policy("deny", &statement("Deny")));
    let ci = user("ci");
    let resource = repo("team-a/app");
    let allow = decide_with(&ci, "ecr:PutImage", &resource, &identity_only(&[allow]), &adjust).outcome;
    let deny = decide_with(&ci, "ecr:PutImage", &resource, &identity_only(&[deny]), &adjust).outcome;
    match (allow, deny) {
        (Outcome::Allowed, Outcome::ExplicitDeny) => Truth::True,
        (Outcome::ImplicitDeny, Outcome::ExplicitDeny) => Truth::Unknown,
        (Outcome::ImplicitDeny, Outcome::ImplicitDeny) => Truth::False,
        other => panic!("{condition}: an Allow applied where the same Deny did not: {other:?}"),
    }
}

fn check_conditions(cases: &[(&str, Truth)], adjust: impl for<'k> Fn(ConditionKeys<'k>) -> ConditionKeys<'k>) {
    for (condition, expected) in cases {
        assert_eq!(condition_truth(condition, &adjust), *expected, "{condition}");
    }
}

use Truth::{False as F, True as T, Unknown as U};

#[test]
fn string_operators() {
    check_conditions(
        &[
            (r#"{"StringEquals":{"aws:username":"ci"}}"#, T),
            (r#"{"StringEquals":{"aws:username":["alice","ci"]}}"#, T),
            (r#"{"StringEquals":{"aws:username":"CI"}}"#, F),
            (r#"{"StringEquals":{"AWS:UserName":"ci"}}"#, T),
            (r#"{"StringEqualsIgnoreCase":{"aws:username":"CI"}}"#, T),
            (r#"{"StringNotEquals":{"aws:username":"ci"}}"#, F),
            (r#"{"StringNotEquals":{"aws:username":["alice","bob"]}}"#, T),
            (r#"{"StringNotEqualsIgnoreCase":{"aws:username":"CI"}}"#, F),
            (r#"{"StringNotEqualsIgnoreCase":{"aws:username":"bob"}}"#, T),
            (r#"{"StringLike":{"aws:username":"c?"}}"#, T),
            (r#"{"StringLike":{"aws:username":["x*","c*"]}}"#, T),
            (r#"{"StringLike":{"aws:username":"C*"}}"#, F),
            (r#"{"StringNotLike":{"aws:username":"c*"}}"#, F),
            (r#"{"StringNotLike":{"aws:username":"x*"}}"#, T),
            (r#"{"StringEquals":{"aws:userid":"ci"}}"#, T),
            (r#"{"StringEquals":{"aws:PrincipalType":"User"}}"#, T),
            (r#"{"StringEquals":{"aws:PrincipalAccount":"123456789012"}}"#, T),
            (r#"{"StringEquals":{"aws:RequestedRegion":"us-east-1"}}"#, T),
            (r#"{"StringLike":{"aws:UserAgent":"docker/*"}}"#, T),
            (r#"{"StringEquals":{"aws:SecureTransport":"true"}}"#, T),
            (r#"{"StringEquals":{"aws:SourceIp":"203.0.113.7"}}"#, T),
            (r#"{"StringEquals":{"aws:CurrentTime":"2026-01-31T12:00:00Z"}}"#, T),
            (r#"{"StringEquals":{"aws:EpochTime":"1769860800"}}"#, T),
            (r#"{"StringEquals":{"aws:ResourceTag/team":"a"}}"#, T),
            (r#"{"StringEquals":{"ecr:ResourceTag/TEAM":"a"}}"#, T),
            (r#"{"StringEquals":{"aws:RequestTag/team":"b"}}"#, T),
            (r#"{"StringEquals":{"aws:RequestTag/team":"a"}}"#, F),
        ],
        |keys| keys,
    );
}

#[test]
fn arn_operators() {
    check_conditions(
        &[
            (r#"{"ArnEquals":{"aws:PrincipalArn":"arn:aws:iam::123456789012:user/ci"}}"#, T),
            (r#"{"ArnLike":{"aws:PrincipalArn":"arn:aws:iam::*:user/c*"}}"#, T),
            (r#"{"ArnLike":{"aws:PrincipalArn":"arn:aws:iam::123456789012:root"}}"#, F),
            (r#"{"ArnNotEquals":{"aws:PrincipalArn":"arn:aws:iam::123456789012:user/ci"}}"#, F),
            (r#"{"ArnNotLike":{"aws:PrincipalArn":["arn:aws:iam::*:user/a*","arn:aws:iam::*:user/b*"]}}"#, T),
            (r#"{"ArnLike":{"aws:PrincipalArn":"arn:aws:iam::123456789012:user/C*"}}"#, F),
        ],
        |keys| keys,
    );
}

#[test]
fn numeric_operators() {
    check_conditions(
        &[
            (r#"{"NumericEquals":{"aws:RequestTag/cost":"42"}}"#, T),
            (r#"{"NumericEquals":{"aws:RequestTag/cost":42}}"#, T),
            (r#"{"NumericEquals":{"aws:RequestTag/cost":"42.0"}}"#, T),
            (r#"{"NumericNotEquals":{"aws:RequestTag/cost":"42"}}"#, F),
            (r#"{"NumericNotEquals":{"aws:RequestTag/cost":["1","2"]}}"#, T),
            (r#"{"NumericLessThan":{"aws:RequestTag/cost":"43"}}"#, T),
            (r#"{"NumericLessThan":{"aws:RequestTag/cost":"42"}}"#, F),
            (r#"{"NumericLessThanEquals":{"aws:RequestTag/cost":"42"}}"#, T),
            (r#"{"NumericGreaterThan":{"aws:RequestTag/cost":"41.5"}}"#, T),
            (r#"{"NumericGreaterThan":{"aws:RequestTag/cost":"-1"}}"#, T),
            (r#"{"NumericGreaterThanEquals":{"aws:RequestTag/cost":"43"}}"#, F),
            // A value that is no number matches nothing.
            (r#"{"NumericLessThan":{"aws:RequestTag/team":"100"}}"#, F),
            (r#"{"NumericLessThan":{"aws:EpochTime":"1769860801"}}"#, T),
        ],
        |keys| keys,
    );
}

#[test]
fn date_operators() {
    check_conditions(
        &[
            (r#"{"DateLessThan":{"aws:CurrentTime":"2026-02-01T00:00:00Z"}}"#, T),
            (r#"{"DateGreaterThan":{"aws:CurrentTime":"2026-02-01T00:00:00Z"}}"#, F),
            (r#"{"DateEquals":{"aws:CurrentTime":"2026-01-31T12:00:00Z"}}"#, T),
            (r#"{"DateEquals":{"aws:CurrentTime":"1769860800"}}"#, T),
            (r#"{"DateNotEquals":{"aws:CurrentTime":"2026-01-31T12:00:00Z"}}"#, F),
            (r#"{"DateLessThanEquals":{"aws:CurrentTime":"2026-01-31T12:00:00Z"}}"#, T),
            (r#"{"DateLessThan":{"aws:CurrentTime":"2026-01-31T12:00:00Z"}}"#, F),
            (r#"{"DateGreaterThanEquals":{"aws:CurrentTime":"2026-01-31T13:00:00+01:00"}}"#, T),
            (r#"{"DateGreaterThan":{"aws:EpochTime":"2026-01-01"}}"#, T),
            (r#"{"DateLessThan":{"aws:CurrentTime":["2020-01-01","2027-01-01"]}}"#, T),
        ],
        |keys| keys,
    );
}

#[test]
fn bool_and_ip_operators() {
    check_conditions(
        &[
            (r#"{"Bool":{"aws:SecureTransport":"true"}}"#, T),
            (r#"{"Bool":{"aws:SecureTransport":true}}"#, T),
            (r#"{"Bool":{"aws:SecureTransport":"TRUE"}}"#, T),
            (r#"{"Bool":{"aws:SecureTransport":"false"}}"#, F),
            (r#"{"IpAddress":{"aws:SourceIp":"203.0.113.0/24"}}"#, T),
            (r#"{"IpAddress":{"aws:SourceIp":"203.0.113.7"}}"#, T),
            (r#"{"IpAddress":{"aws:SourceIp":"198.51.100.0/24"}}"#, F),
            (r#"{"IpAddress":{"aws:SourceIp":["198.51.100.0/24","203.0.0.0/8"]}}"#, T),
            (r#"{"IpAddress":{"aws:SourceIp":"2001:db8::/32"}}"#, F),
            (r#"{"NotIpAddress":{"aws:SourceIp":"203.0.113.0/24"}}"#, F),
            (r#"{"NotIpAddress":{"aws:SourceIp":["198.51.100.0/24","10.0.0.0/8"]}}"#, T),
        ],
        |keys| keys,
    );
    check_conditions(&[(r#"{"IpAddress":{"aws:SourceIp":"2001:db8::/32"}}"#, T)], |keys| {
        keys.set("aws:SourceIp", vec!["2001:db8::1".into()])
    });
    // An IPv4 client on a dual-stack socket shows up as an IPv4-mapped IPv6 address.
    check_conditions(&[(r#"{"IpAddress":{"aws:SourceIp":"203.0.113.0/24"}}"#, T)], |keys| {
        keys.set("aws:SourceIp", vec!["::ffff:203.0.113.7".into()])
    });
    let mapped: IpAddr = "::ffff:203.0.113.7".parse().unwrap();
    let context = RequestContext { source_ip: Some(mapped), ..context(user("ci")) };
    let keys = ConditionKeys::new(&context, ACCOUNT);
    let policy = identity_policy(
        "p",
        r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":"203.0.113.0/24"}}}}"#,
    );
    let request = AuthzRequest { action: "ecr:PutImage", resource: "*", keys: &keys };
    assert!(evaluate(&request, &identity_only(&[policy])).is_allowed());
}

/// What IAM does with a key the request does not have (here `aws:SourceVpce`, which Berth never
/// has, and `aws:username` of the root user).
#[test]
fn absent_keys() {
    check_conditions(
        &[
            (r#"{"StringEquals":{"aws:SourceVpce":"vpce-1"}}"#, F),
            (r#"{"StringNotEquals":{"aws:SourceVpce":"vpce-1"}}"#, T),
            (r#"{"StringLike":{"aws:SourceVpce":"*"}}"#, F),
            (r#"{"StringNotLike":{"aws:SourceVpce":"*"}}"#, T),
            (r#"{"StringEqualsIfExists":{"aws:SourceVpce":"vpce-1"}}"#, T),
            (r#"{"StringNotEqualsIfExists":{"aws:SourceVpce":"vpce-1"}}"#, T),
            (r#"{"ArnLike":{"aws:SourceArn":"*"}}"#, F),
            (r#"{"ArnNotEquals":{"aws:SourceArn":"arn:aws:s3:::b"}}"#, T),
            (r#"{"NumericLessThan":{"aws:MultiFactorAuthAge":"3600"}}"#, F),
            (r#"{"NumericNotEquals":{"aws:MultiFactorAuthAge":"1"}}"#, T),
            (r#"{"NumericLessThanIfExists":{"aws:MultiFactorAuthAge":"3600"}}"#, T),
            (r#"{"DateGreaterThan":{"aws:TokenIssueTime":"2020-01-01"}}"#, F),
            (r#"{"DateNotEquals":{"aws:TokenIssueTime":"2020-01-01"}}"#, T),
            (r#"{"Bool":{"aws:MultiFactorAuthPresent":"true"}}"#, F),
            (r#"{"BoolIfExists":{"aws:MultiFactorAuthPresent":"false"}}"#, T),
            (r#"{"IpAddress":{"aws:VpcSourceIp":"10.0.0.0/8"}}"#, F),
            (r#"{"NotIpAddress":{"aws:VpcSourceIp":"10.0.0.0/8"}}"#, T),
            (r#"{"Null":{"aws:SourceVpce":"true"}}"#, T),
            (r#"{"Null":{"aws:SourceVpce":"false"}}"#, F),
            (r#"{"Null":{"aws:username":"false"}}"#, T),
            (r#"{"Null":{"aws:username":"true"}}"#, F),
            (r#"{"StringEquals":{"aws:ResourceTag/missing":"x"}}"#, F),
            (r#"{"ForAnyValue:StringEquals":{"aws:SourceVpce":"x"}}"#, F),
            (r#"{"ForAllValues:StringEquals":{"aws:SourceVpce":"x"}}"#, T),
            // IfExists on a present key is the plain operator.
            (r#"{"StringEqualsIfExists":{"aws:username":"alice"}}"#, F),
        ],
        |keys| keys,
    );
    // Without request tags, aws:TagKeys is absent; with an empty set, it counts as absent too.
    let no_request_tags = |condition: &str| {
        let context = context(user("ci"));
        let keys = ConditionKeys::new(&context, ACCOUNT);
        let policy = identity_policy(
            "p",
            &format!(
                r#"{{"Version":"2012-10-17","Statement":{{"Effect":"Allow","Action":"*","Resource":"*","Condition":{condition}}}}}"#
            ),
        );
        evaluate(&AuthzRequest { action: "ecr:TagResource", resource: "*", keys: &keys }, &identity_only(&[policy]))
            .is_allowed()
    };
    assert!(no_request_tags(r#"{"ForAllValues:StringEquals":{"aws:TagKeys":"team"}}"#));
    assert!(!no_request_tags(r#"{"ForAnyValue:StringEquals":{"aws:TagKeys":"team"}}"#));
    assert!(no_request_tags(r#"{"Null":{"aws:TagKeys":"true"}}"#));
    check_conditions(
        &[
            (r#"{"ForAllValues:StringEquals":{"aws:TagKeys":"team"}}"#, T),
            (r#"{"ForAnyValue:StringEquals":{"aws:TagKeys":"team"}}"#, F),
            (r#"{"Null":{"aws:TagKeys":"true"}}"#, T),
        ],
        |keys| keys.set("aws:TagKeys", vec![]),
    );
    // The root user has no aws:username; anonymous callers have no account.
    let keys_of = |identity: Identity| {
        let context = context(identity);
        let keys = ConditionKeys::new(&context, ACCOUNT);
        ["aws:username", "aws:principalaccount", "aws:principalarn"].map(|key| keys.get(key).is_absent())
    };
    assert_eq!(keys_of(root()), [true, false, false]);
    assert_eq!(keys_of(Identity::Anonymous), [true, true, true]);
    assert_eq!(keys_of(user("ci")), [false, false, false]);
}

/// `aws:TagKeys` here is {team, cost}.
#[test]
fn set_operators_over_multi_valued_keys() {
    check_conditions(
        &[
            (r#"{"ForAnyValue:StringEquals":{"aws:TagKeys":"team"}}"#, T),
            (r#"{"ForAnyValue:StringEquals":{"aws:TagKeys":["owner","x"]}}"#, F),
            (r#"{"ForAllValues:StringEquals":{"aws:TagKeys":["team","cost","owner"]}}"#, T),
            (r#"{"ForAllValues:StringEquals":{"aws:TagKeys":"team"}}"#, F),
            (r#"{"ForAllValues:StringLike":{"aws:TagKeys":["t*","c*"]}}"#, T),
            (r#"{"ForAnyValue:StringNotEquals":{"aws:TagKeys":"team"}}"#, T),
            (r#"{"ForAnyValue:StringNotEquals":{"aws:TagKeys":["team","cost"]}}"#, F),
            (r#"{"ForAllValues:StringNotEquals":{"aws:TagKeys":"owner"}}"#, T),
            (r#"{"ForAllValues:StringNotEquals":{"aws:TagKeys":"team"}}"#, F),
            (r#"{"ForAnyValue:StringEqualsIgnoreCase":{"aws:TagKeys":"TEAM"}}"#, T),
            // Without a set operator a multi-valued key matches if any value does.
            (r#"{"StringEquals":{"aws:TagKeys":"cost"}}"#, T),
            (r#"{"StringNotEquals":{"aws:TagKeys":"cost"}}"#, F),
            (r#"{"Null":{"aws:TagKeys":"false"}}"#, T),
            // Single-valued keys work with set operators too.
            (r#"{"ForAnyValue:StringEquals":{"aws:username":"ci"}}"#, T),
            (r#"{"ForAllValues:StringEqualsIfExists":{"aws:username":"ci"}}"#, T),
        ],
        |keys| keys,
    );
}

#[test]
fn several_keys_and_operators_must_all_hold() {
    check_conditions(
        &[
            (r#"{"StringEquals":{"aws:username":"ci","aws:PrincipalType":"User"}}"#, T),
            (r#"{"StringEquals":{"aws:username":"ci","aws:PrincipalType":"Account"}}"#, F),
            (r#"{"StringEquals":{"aws:username":"ci"},"Bool":{"aws:SecureTransport":"false"}}"#, F),
            (
                r#"{"StringEquals":{"aws:username":"ci"},"IpAddress":{"aws:SourceIp":"203.0.113.0/24"},"DateLessThan":{"aws:CurrentTime":"2027-01-01"}}"#,
                T,
            ),
            (r#"{}"#, T),
        ],
        |keys| keys,
    );
}

#[test]
fn condition_values_take_policy_variables() {
    check_conditions(
        &[
            (r#"{"StringEquals":{"aws:RequestTag/team":"${aws:username}"}}"#, F),
            (r#"{"StringLike":{"aws:UserAgent":"${aws:username}*"}}"#, F),
            (r#"{"StringEquals":{"aws:ResourceTag/team":"${aws:RequestTag/nope, 'a'}"}}"#, T),
            (r#"{"StringEquals":{"aws:ResourceTag/team":"${aws:RequestTag/nope}"}}"#, F),
            (r#"{"StringNotEquals":{"aws:ResourceTag/team":"${aws:RequestTag/nope}"}}"#, T),
            (r#"{"StringEquals":{"aws:RequestTag/owner":"${aws:username}"}}"#, T),
            (r#"{"ArnEquals":{"aws:PrincipalArn":"arn:aws:iam::${aws:PrincipalAccount}:user/${aws:username}"}}"#, T),
        ],
        |keys| keys.set("aws:RequestTag/owner", vec!["ci".into()]),
    );
}

// ---------------------------------------------------------------------------------------------
// What Berth cannot evaluate

/// Every operator family over a key whose value Berth cannot know.
const OVER_UNKNOWN_SOURCE_IP: &[&str] = &[
    r#"{"IpAddress":{"aws:SourceIp":"203.0.113.0/24"}}"#,
    r#"{"NotIpAddress":{"aws:SourceIp":"203.0.113.0/24"}}"#,
    r#"{"IpAddressIfExists":{"aws:SourceIp":"203.0.113.0/24"}}"#,
    r#"{"NotIpAddressIfExists":{"aws:SourceIp":"203.0.113.0/24"}}"#,
    r#"{"StringEquals":{"aws:SourceIp":"203.0.113.7"}}"#,
    r#"{"StringNotLike":{"aws:SourceIp":"*"}}"#,
    r#"{"ForAllValues:StringEquals":{"aws:SourceIp":"x"}}"#,
    r#"{"ForAnyValue:StringNotEquals":{"aws:SourceIp":"x"}}"#,
    r#"{"Null":{"aws:SourceIp":"true"}}"#,
    r#"{"Null":{"aws:SourceIp":"false"}}"#,
    r#"{"NumericLessThan":{"aws:SourceIp":"1"}}"#,
    r#"{"DateNotEquals":{"aws:SourceIp":"2020-01-01"}}"#,
    r#"{"Bool":{"aws:SourceIp":"false"}}"#,
    r#"{"ArnNotLike":{"aws:SourceIp":"arn:*"}}"#,
    r#"{"StringEquals":{"aws:username":"${aws:SourceIp}"}}"#,
    r#"{"StringNotEquals":{"aws:username":"${aws:SourceIp, 'x'}"}}"#,
];

fn unknown_source_ip(keys: ConditionKeys<'_>) -> ConditionKeys<'_> {
    keys.set_unknown("aws:SourceIp")
}

fn unknown_username(keys: ConditionKeys<'_>) -> ConditionKeys<'_> {
    keys.set_unknown("aws:username")
}

#[test]
fn unknown_values_evaluate_to_unknown() {
    let unknown = unknown_source_ip;
    for condition in OVER_UNKNOWN_SOURCE_IP {
        assert_eq!(condition_truth(condition, unknown), U, "{condition}");
        // AND with something false is still false; with something true, still unknown.
        let and_false =
            condition.replacen('{', r#"{"ArnEquals":{"aws:PrincipalArn":"arn:aws:iam::123456789012:user/alice"},"#, 1);
        assert_eq!(condition_truth(&and_false, unknown), F, "{and_false}");
        let and_true = condition.replacen('{', r#"{"ArnLike":{"aws:PrincipalArn":"arn:aws:iam::*:user/ci"},"#, 1);
        assert_eq!(condition_truth(&and_true, unknown), U, "{and_true}");
    }
}

/// The safety rule: a condition Berth cannot evaluate never turns a `Deny` into an allow. For
/// each condition, the decision with the value unknown denies whenever the decision with the
/// value known would deny, for every value it could have — and an `Allow` over it grants nothing.
#[test]
fn what_berth_cannot_evaluate_never_turns_a_deny_into_an_allow() {
    let everything = identity_policy("all", r#"{"Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}"#);
    let possible_values = ["203.0.113.7", "198.51.100.1", "2001:db8::1", "x"];
    for condition in OVER_UNKNOWN_SOURCE_IP {
        let guarded = |effect: &str| {
            identity_policy(
                "guarded",
                &format!(
                    r#"{{"Version":"2012-10-17","Statement":{{"Sid":"Guard","Effect":"{effect}","Action":"ecr:*","Resource":"*","Condition":{condition}}}}}"#
                ),
            )
        };
        let deny_set = [everything.clone(), guarded("Deny")];
        let allow_set = [guarded("Allow")];
        let resource = repo("team-a/app");
        let with_unknown = |set: &[NamedPolicy]| {
            decide_with(&user("ci"), "ecr:PutImage", &resource, &identity_only(set), unknown_source_ip)
        };
        let denied = with_unknown(&deny_set);
        assert_eq!(denied.outcome, Outcome::ExplicitDeny, "{condition}");
        assert_eq!(denied.statements()[0].sid.as_deref(), Some("Guard"));
        assert_eq!(with_unknown(&allow_set).outcome, Outcome::ImplicitDeny, "{condition}");
        for value in possible_values {
            let known = |set: &[NamedPolicy]| {
                decide_with(&user("ci"), "ecr:PutImage", &resource, &identity_only(set), |keys| {
                    keys.set("aws:SourceIp", vec![value.into()])
                })
            };
            if !known(&deny_set).is_allowed() {
                assert!(!denied.is_allowed(), "{condition} with {value}");
            }
            if !known(&allow_set).is_allowed() {
                assert!(!with_unknown(&allow_set).is_allowed(), "{condition} with {value}");
            }
        }
    }
}

/// The same through a resource pattern: a variable whose value Berth cannot know.
#[test]
fn unknown_variables_in_resources_deny_but_never_allow() {
    let everything = identity_policy("all", r#"{"Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}"#);
    let deny = resource_policy(
        "repo",
        r#"{"Version":"2012-10-17","Statement":{"Effect":"Deny","Principal":"*","Action":"ecr:*","NotResource":"arn:aws:ecr:*:*:repository/${aws:username}/*"}}"#,
    );
    let identity = [everything];
    let set = PolicySet { identity: &identity, repository: Some(&deny), registry: None };
    let unknown = unknown_username;
    assert!(decide(&user("ci"), "ecr:PutImage", &repo("ci/app"), &set).is_allowed());
    assert!(!decide(&user("ci"), "ecr:PutImage", &repo("alice/app"), &set).is_allowed());
    let decision = decide_with(&user("ci"), "ecr:PutImage", &repo("ci/app"), &set, unknown);
    assert_eq!(decision.outcome, Outcome::ExplicitDeny);
    let allow_own = identity_policy(
        "own",
        r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"ecr:*","Resource":"arn:aws:ecr:*:*:repository/${aws:username}/*"}}"#,
    );
    let decision = decide_with(&user("ci"), "ecr:PutImage", &repo("ci/app"), &identity_only(&[allow_own]), unknown);
    assert_eq!(decision.outcome, Outcome::ImplicitDeny);
}

// ---------------------------------------------------------------------------------------------
// Actions, resources, principals

#[test]
fn actions_and_not_actions() {
    let ci = user("ci");
    let resource = repo("team-a/app");
    for (pattern, action, expected) in [
        (r#""ecr:PutImage""#, "ecr:PutImage", true),
        (r#""ECR:putimage""#, "ecr:PutImage", true),
        (r#""ecr:PutImage""#, "ECR:PUTIMAGE", true),
        (r#""ecr:Put*""#, "ecr:PutImage", true),
        (r#""ecr:Put*""#, "ecr:PutLifecyclePolicy", true),
        (r#""ecr:Put*""#, "ecr:BatchGetImage", false),
        (r#""ecr:?utImage""#, "ecr:PutImage", true),
        (r#""ecr:PutImag""#, "ecr:PutImage", false),
        (r#""ecr:*""#, "ecr:DeleteRepository", true),
        (r#""ecr:*""#, "berth:GetMetrics", false),
        (r#""berth:*""#, "berth:GetMetrics", true),
        (r#""*""#, "berth:GetMetrics", true),
        (r#""s3:*""#, "ecr:PutImage", false),
        (r#"["ecr:BatchGetImage","ecr:GetDownloadUrlForLayer"]"#, "ecr:GetDownloadUrlForLayer", true),
        (r#"["ecr:BatchGetImage","ecr:GetDownloadUrlForLayer"]"#, "ecr:PutImage", false),
    ] {
        let policies = [allow(pattern, r#""*""#)];
        assert_eq!(allowed(&ci, action, &resource, &identity_only(&policies)), expected, "{pattern} {action}");
    }
    let all_but_delete = identity_policy(
        "p",
        r#"{"Statement":{"Effect":"Allow","NotAction":["ecr:DeleteRepository","ecr:*Policy"],"Resource":"*"}}"#,
    );
    let policies = [all_but_delete];
    let set = identity_only(&policies);
    assert!(allowed(&ci, "ecr:PutImage", &resource, &set));
    assert!(allowed(&ci, "berth:GetMetrics", &resource, &set));
    assert!(!allowed(&ci, "ecr:DeleteRepository", &resource, &set));
    assert!(!allowed(&ci, "ecr:SetRepositoryPolicy", &resource, &set));
}

#[test]
fn resources_and_not_resources() {
    let ci = user("ci");
    for (pattern, resource, expected) in [
        ("arn:aws:ecr:us-east-1:123456789012:repository/team-a/*", repo("team-a/app"), true),
        ("arn:aws:ecr:us-east-1:123456789012:repository/team-a/*", repo("team-a/app/nested"), true),
        ("arn:aws:ecr:us-east-1:123456789012:repository/team-a/*", repo("team-ab"), false),
        ("arn:aws:ecr:us-east-1:123456789012:repository/team-a/*", repo("team-a"), false),
        ("arn:aws:ecr:us-east-1:123456789012:repository/team-a*", repo("team-ab"), true),
        ("arn:aws:ecr:us-east-1:123456789012:repository/Team-A/*", repo("team-a/app"), false),
        ("arn:aws:ecr:us-east-1:123456789012:repository/team-?/app", repo("team-b/app"), true),
        ("arn:aws:ecr:*:123456789012:repository/*", repo("x"), true),
        ("arn:aws:ecr:eu-west-1:123456789012:repository/*", repo("x"), false),
        ("arn:aws:ecr:us-east-1:111111111111:repository/*", repo("x"), false),
        ("arn:aws:ecr:*", repo("x"), true),
        ("*", repo("x"), true),
        ("*", "*".to_owned(), true),
        // Registry-wide calls need "*": an ARN pattern does not cover them.
        ("arn:aws:ecr:*:*:*", "*".to_owned(), false),
        ("arn:aws:ecr:us-east-1:123456789012:repository/*", arn::all_repositories_arn(REGION, ACCOUNT), true),
        ("arn:aws:ecr:us-east-1:123456789012:repository/team-a/*", arn::all_repositories_arn(REGION, ACCOUNT), false),
    ] {
        let policies = [allow(r#""ecr:*""#, &format!("{pattern:?}"))];
        assert_eq!(
            allowed(&ci, "ecr:PutImage", &resource, &identity_only(&policies)),
            expected,
            "{pattern} {resource}"
        );
    }
    let all_but_prod = identity_policy(
        "p",
        r#"{"Statement":{"Effect":"Allow","Action":"ecr:*","NotResource":["arn:aws:ecr:*:*:repository/prod/*","arn:aws:ecr:*:*:repository/prod"]}}"#,
    );
    let policies = [all_but_prod];
    let set = identity_only(&policies);
    assert!(allowed(&ci, "ecr:PutImage", &repo("team-a/app"), &set));
    assert!(allowed(&ci, "ecr:GetAuthorizationToken", "*", &set));
    assert!(!allowed(&ci, "ecr:PutImage", &repo("prod/app"), &set));
    assert!(!allowed(&ci, "ecr:PutImage", &repo("prod"), &set));
    assert!(allowed(&ci, "ecr:PutImage", &repo("production"), &set));
}

#[test]
fn principals_and_not_principals() {
    let (ci, alice, anonymous) = (user("ci"), user("alice"), Identity::Anonymous);
    let resource = repo("team-a/app");
    for (principal, who, expected) in [
        (r#""*""#, &ci, true),
        (r#""*""#, &anonymous, true),
        (r#"{"AWS":"*"}"#, &anonymous, true),
        // An account in an Allow delegates to its identity policies: it grants no user by itself.
        (r#"{"AWS":"123456789012"}"#, &ci, false),
        (r#"{"AWS":"123456789012"}"#, &anonymous, false),
        (r#"{"AWS":"arn:aws:iam::123456789012:root"}"#, &alice, false),
        (r#"{"AWS":"arn:aws:iam::123456789012:root"}"#, &anonymous, false),
        (r#"{"AWS":"arn:aws:iam::123456789012:user/ci"}"#, &ci, true),
        (r#"{"AWS":"arn:aws:iam::123456789012:user/ci"}"#, &alice, false),
        (r#"{"AWS":"arn:aws:iam::123456789012:user/ci"}"#, &anonymous, false),
        (r#"{"AWS":"arn:aws:iam::123456789012:user/CI"}"#, &ci, false),
        (r#"{"AWS":"arn:aws:iam::123456789012:user/c*"}"#, &ci, false),
        (r#"{"AWS":"arn:aws:iam::111111111111:root"}"#, &ci, false),
        (r#"{"AWS":"111111111111"}"#, &ci, false),
        (r#"{"AWS":"arn:aws:iam::111111111111:user/ci"}"#, &ci, false),
        (r#"{"Service":"ecr.amazonaws.com"}"#, &ci, false),
        (r#"{"AWS":["arn:aws:iam::111111111111:root","arn:aws:iam::123456789012:user/ci"]}"#, &ci, true),
        (r#"{"AWS":"arn:aws:iam::111111111111:root","Service":"x.amazonaws.com"}"#, &ci, false),
    ] {
        let policy = resource_policy(
            "repository/team-a/app",
            &format!(r#"{{"Statement":{{"Effect":"Allow","Principal":{principal},"Action":"ecr:PutImage"}}}}"#),
        );
        let set = PolicySet { repository: Some(&policy), ..PolicySet::default() };
        assert_eq!(allowed(who, "ecr:PutImage", &resource, &set), expected, "{principal} {who:?}");
    }
    // An account in a Deny covers every principal of it; in NotPrincipal only its root.
    let full = [managed(managed::FULL_ACCESS)];
    for principal in
        [r#""Principal":{"AWS":"123456789012"}"#, r#""Principal":{"AWS":"arn:aws:iam::123456789012:root"}"#]
    {
        let policy = resource_policy(
            "repo",
            &format!(r#"{{"Statement":{{"Effect":"Deny",{principal},"Action":"ecr:PutImage"}}}}"#),
        );
        let set = PolicySet { identity: &full, repository: Some(&policy), registry: None };
        assert!(!allowed(&ci, "ecr:PutImage", &resource, &set), "{principal}");
        assert!(!allowed(&root(), "ecr:PutImage", &resource, &set), "{principal}");
    }
    let all_but_root = resource_policy(
        "repo",
        r#"{"Statement":{"Effect":"Deny","NotPrincipal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"ecr:PutImage"}}"#,
    );
    let set = PolicySet { identity: &full, repository: Some(&all_but_root), registry: None };
    assert!(!allowed(&ci, "ecr:PutImage", &resource, &set));
    assert!(allowed(&root(), "ecr:PutImage", &resource, &set));
    // NotPrincipal with Deny: everyone but ci, anonymous callers included.
    let all_but_ci = resource_policy(
        "repo",
        r#"{"Statement":{"Effect":"Deny","NotPrincipal":{"AWS":"arn:aws:iam::123456789012:user/ci"},"Action":"ecr:PutImage"}}"#,
    );
    let set = PolicySet { identity: &full, repository: Some(&all_but_ci), registry: None };
    assert!(allowed(&ci, "ecr:PutImage", &resource, &set));
    assert!(!allowed(&alice, "ecr:PutImage", &resource, &set));
    assert!(!allowed(&anonymous, "ecr:PutImage", &resource, &set));
    assert!(allowed(&alice, "ecr:BatchGetImage", &resource, &set));
    // A repository policy without Resource covers its repository, whatever the ARN.
    let open =
        resource_policy("repo", r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"ecr:BatchGetImage"}}"#);
    let set = PolicySet { repository: Some(&open), ..PolicySet::default() };
    assert!(allowed(&anonymous, "ecr:BatchGetImage", &resource, &set));
    assert!(!allowed(&anonymous, "ecr:PutImage", &resource, &set));
}

// ---------------------------------------------------------------------------------------------
// Precedence across policies

#[test]
fn deny_precedence_across_identity_repository_and_registry_policies() {
    let ci = user("ci");
    let resource = repo("team-a/app");
    let allow_all =
        identity_policy("AllowAll", r#"{"Statement":{"Sid":"All","Effect":"Allow","Action":"ecr:*","Resource":"*"}}"#);
    let deny_push = identity_policy(
        "DenyPush",
        r#"{"Statement":{"Sid":"NoPush","Effect":"Deny","Action":"ecr:PutImage","Resource":"*"}}"#,
    );
    let repo_allow = resource_policy(
        "repository/team-a/app",
        r#"{"Statement":{"Sid":"Ci","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:user/ci"},"Action":"ecr:*"}}"#,
    );
    let repo_deny = resource_policy(
        "repository/team-a/app",
        r#"{"Statement":{"Sid":"Freeze","Effect":"Deny","Principal":"*","Action":"ecr:PutImage"}}"#,
    );
    let registry_allow = resource_policy(
        "registry",
        r#"{"Statement":{"Sid":"Reg","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:user/ci"},"Action":"ecr:PutImage","Resource":"arn:aws:ecr:*:*:repository/team-a/*"}}"#,
    );
    let registry_deny = resource_policy(
        "registry",
        r#"{"Statement":{"Sid":"RegFreeze","Effect":"Deny","Principal":"*","Action":"ecr:PutImage","Resource":"arn:aws:ecr:*:*:repository/*"}}"#,
    );
    let other_user = resource_policy(
        "repository/team-a/app",
        r#"{"Statement":{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:user/alice"},"Action":"ecr:*"}}"#,
    );

    let none: &[NamedPolicy] = &[];
    /// (case, identity policies, repository policy, registry policy, outcome, deciding Sids)
    type Case<'p> =
        (&'p str, &'p [NamedPolicy], Option<&'p NamedPolicy>, Option<&'p NamedPolicy>, Outcome, &'p [&'p str]);
    let cases: &[Case] = &[
        ("nothing in force", none, None, None, Outcome::ImplicitDeny, &[]),
        ("identity allow", std::slice::from_ref(&allow_all), None, None, Outcome::Allowed, &["All"]),
        (
            "identity allow + repository deny",
            std::slice::from_ref(&allow_all),
            Some(&repo_deny),
            None,
            Outcome::ExplicitDeny,
            &["Freeze"],
        ),
        (
            "identity deny + repository allow",
            std::slice::from_ref(&deny_push),
            Some(&repo_allow),
            None,
            Outcome::ExplicitDeny,
            &["NoPush"],
        ),
        ("repository allow alone (same account)", none, Some(&repo_allow), None, Outcome::Allowed, &["Ci"]),
        ("repository allow for another user", none, Some(&other_user), None, Outcome::ImplicitDeny, &[]),
        ("registry allow alone", none, None, Some(&registry_allow), Outcome::Allowed, &["Reg"]),
        (
            "registry deny beats repository allow",
            none,
            Some(&repo_allow),
            Some(&registry_deny),
            Outcome::ExplicitDeny,
            &["RegFreeze"],
        ),
        (
            "registry deny beats identity allow",
            std::slice::from_ref(&allow_all),
            None,
            Some(&registry_deny),
            Outcome::ExplicitDeny,
            &["RegFreeze"],
        ),
        (
            "every deny is reported",
            &[allow_all.clone(), deny_push.clone()],
            Some(&repo_deny),
            Some(&registry_deny),
            Outcome::ExplicitDeny,
            &["NoPush", "Freeze", "RegFreeze"],
        ),
        (
            "every allow is reported",
            std::slice::from_ref(&allow_all),
            Some(&repo_allow),
            Some(&registry_allow),
            Outcome::Allowed,
            &["All", "Ci", "Reg"],
        ),
    ];
    for (name, identity, repository, registry, outcome, sids) in cases {
        let set = PolicySet { identity, repository: *repository, registry: *registry };
        let decision = decide(&ci, "ecr:PutImage", &resource, &set);
        assert_eq!(decision.outcome, *outcome, "{name}");
        let found: Vec<&str> = decision.statements().iter().filter_map(|s| s.sid.as_deref()).collect();
        assert_eq!(found, *sids, "{name}");
        // The root: never denied by identity policies or for want of an allow, bound by a
        // resource policy's Deny — and always able to repair the policies.
        let root_push = decide(&root(), "ecr:PutImage", &resource, &set);
        let resource_denies: Vec<&str> =
            sids.iter().copied().filter(|sid| ["Freeze", "RegFreeze"].contains(sid)).collect();
        if resource_denies.is_empty() {
            assert!(root_push.is_allowed() && root_push.statements().is_empty(), "{name}: root {root_push}");
        } else {
            assert_eq!(root_push.outcome, Outcome::ExplicitDeny, "{name}: root");
            let found: Vec<&str> = root_push.statements().iter().filter_map(|s| s.sid.as_deref()).collect();
            assert_eq!(found, resource_denies, "{name}: root");
        }
        for action in [
            "ecr:SetRepositoryPolicy",
            "ecr:DeleteRepositoryPolicy",
            "ecr:GetRepositoryPolicy",
            "ECR:putregistrypolicy",
            "ecr:DeleteRegistryPolicy",
            "ecr:GetRegistryPolicy",
        ] {
            let decision = decide(&root(), action, &resource, &set);
            assert!(decision.is_allowed() && decision.statements().is_empty(), "{name}: root {action}");
        }
        let server = Identity::Server { task: "lifecycle".into() };
        assert!(decide(&server, "ecr:BatchDeleteImage", &resource, &set).is_allowed(), "{name}: server");
    }
    let both = [allow_all, deny_push];
    let decision = decide(&ci, "ecr:PutImage", &resource, &identity_only(&both));
    assert_eq!(
        decision.statements(),
        [MatchedStatement {
            policy: "DenyPush".into(),
            source: PolicySource::Identity,
            sid: Some("NoPush".into()),
            index: 0,
            effect: Effect::Deny
        }]
    );
    assert_eq!(
        decision.to_string(),
        "explicit deny\n  Deny by Statement[0] (Sid \"NoPush\") of identity policy \"DenyPush\""
    );
}

/// Today's repository-policy behaviour carries over for users holding full access.
#[test]
fn a_deny_only_repository_policy_narrows_full_access() {
    let full = [managed(managed::FULL_ACCESS)];
    let no_push_for_ci = resource_policy(
        "repository/team-a/app",
        r#"{"Version":"2012-10-17","Statement":[{"Sid":"NoPushForCi","Effect":"Deny",
            "Principal":{"AWS":"arn:aws:iam::123456789012:user/ci"},
            "Action":["ecr:PutImage","ecr:InitiateLayerUpload","ecr:UploadLayerPart","ecr:CompleteLayerUpload"]}]}"#,
    );
    let set = PolicySet { identity: &full, repository: Some(&no_push_for_ci), registry: None };
    let resource = repo("team-a/app");
    for action in
        [actions::PUT_IMAGE, actions::INITIATE_LAYER_UPLOAD, actions::UPLOAD_LAYER_PART, actions::COMPLETE_LAYER_UPLOAD]
    {
        assert_eq!(decide(&user("ci"), action, &resource, &set).outcome, Outcome::ExplicitDeny, "{action}");
        assert!(allowed(&user("alice"), action, &resource, &set), "{action}");
    }
    for action in [actions::BATCH_GET_IMAGE, actions::GET_DOWNLOAD_URL_FOR_LAYER, actions::LIST_IMAGES] {
        assert!(allowed(&user("ci"), action, &resource, &set), "{action}");
    }
}

// ---------------------------------------------------------------------------------------------
// Managed and built-in policies

#[test]
fn managed_policies_allow_what_aws_publishes() {
    let resource = repo("team-a/app");
    let ci = user("ci");
    use actions::*;
    let cases: &[(&str, &[&str], &[&str])] = &[
        (
            managed::PULL_ONLY,
            &[GET_AUTHORIZATION_TOKEN, BATCH_GET_IMAGE, GET_DOWNLOAD_URL_FOR_LAYER, BATCH_IMPORT_UPSTREAM_IMAGE],
            &[
                PUT_IMAGE,
                DESCRIBE_IMAGES,
                LIST_IMAGES,
                BATCH_CHECK_LAYER_AVAILABILITY,
                INITIATE_LAYER_UPLOAD,
                DESCRIBE_REPOSITORIES,
                DELETE_REPOSITORY,
            ],
        ),
        (
            managed::READ_ONLY,
            &[
                GET_AUTHORIZATION_TOKEN,
                BATCH_GET_IMAGE,
                GET_DOWNLOAD_URL_FOR_LAYER,
                BATCH_CHECK_LAYER_AVAILABILITY,
                DESCRIBE_IMAGES,
                LIST_IMAGES,
                DESCRIBE_REPOSITORIES,
                GET_REPOSITORY_POLICY,
                GET_LIFECYCLE_POLICY,
                LIST_TAGS_FOR_RESOURCE,
            ],
            &[
                PUT_IMAGE,
                INITIATE_LAYER_UPLOAD,
                BATCH_DELETE_IMAGE,
                DELETE_REPOSITORY,
                SET_REPOSITORY_POLICY,
                CREATE_REPOSITORY,
                PUT_LIFECYCLE_POLICY,
            ],
        ),
        (
            managed::POWER_USER,
            &[
                GET_AUTHORIZATION_TOKEN,
                BATCH_GET_IMAGE,
                DESCRIBE_IMAGES,
                PUT_IMAGE,
                INITIATE_LAYER_UPLOAD,
                UPLOAD_LAYER_PART,
                COMPLETE_LAYER_UPLOAD,
                BATCH_CHECK_LAYER_AVAILABILITY,
            ],
            &[
                BATCH_DELETE_IMAGE,
                DELETE_REPOSITORY,
                CREATE_REPOSITORY,
                SET_REPOSITORY_POLICY,
                DELETE_REPOSITORY_POLICY,
                PUT_LIFECYCLE_POLICY,
                PUT_REGISTRY_POLICY,
                TAG_RESOURCE,
            ],
        ),
        (
            managed::FULL_ACCESS,
            ALL_ECR,
            // Non-ECR actions, including the service-linked role its second statement allows only
            // for ECR replication (a condition key Berth never has).
            &["berth:GetMetrics", "iam:CreateServiceLinkedRole", "s3:GetObject"],
        ),
    ];
    for (name, may, may_not) in cases {
        let policies = [managed(name)];
        let set = identity_only(&policies);
        for action in *may {
            let resource = if *action == GET_AUTHORIZATION_TOKEN { "*" } else { resource.as_str() };
            assert!(allowed(&ci, action, resource, &set), "{name} may {action}");
        }
        for action in *may_not {
            assert_eq!(decide(&ci, action, &resource, &set).outcome, Outcome::ImplicitDeny, "{name} may not {action}");
        }
    }
}

#[test]
fn built_in_policies_for_anonymous_callers() {
    let anonymous = Identity::Anonymous;
    let resource = repo("team-a/app");
    let pull = [NamedPolicy::new("anonymous-pull", Arc::new(managed::anonymous_pull()))];
    let set = identity_only(&pull);
    use actions::*;
    for action in [BATCH_GET_IMAGE, GET_DOWNLOAD_URL_FOR_LAYER, BATCH_CHECK_LAYER_AVAILABILITY, LIST_IMAGES] {
        assert!(allowed(&anonymous, action, &resource, &set), "{action}");
    }
    for action in [PUT_IMAGE, INITIATE_LAYER_UPLOAD, BATCH_DELETE_IMAGE, DESCRIBE_IMAGES, GET_AUTHORIZATION_TOKEN] {
        assert!(!allowed(&anonymous, action, &resource, &set), "{action}");
    }
    assert!(!allowed(&anonymous, DESCRIBE_REPOSITORIES, "*", &set), "_catalog stays closed");
    // A repository policy may deny anonymous pulls of one repository.
    let private = resource_policy("repo", r#"{"Statement":{"Effect":"Deny","Principal":"*","Action":"ecr:*"}}"#);
    let narrowed = PolicySet { identity: &pull, repository: Some(&private), registry: None };
    assert!(!allowed(&anonymous, BATCH_GET_IMAGE, &resource, &narrowed));

    let everything = [NamedPolicy::new("no-auth", Arc::new(managed::no_auth()))];
    let set = identity_only(&everything);
    for action in [PUT_IMAGE, DELETE_REPOSITORY, DESCRIBE_REPOSITORIES, "berth:GetMetrics"] {
        assert!(allowed(&anonymous, action, &resource, &set), "{action}");
        assert!(allowed(&anonymous, action, "*", &set), "{action}");
    }
}

// ---------------------------------------------------------------------------------------------
// Policy variables

#[test]
fn policy_variables_in_resources() {
    let own = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"ecr:*","Resource":"arn:aws:ecr:*:${aws:PrincipalAccount}:repository/${aws:username}/*"}}"#;
    let policies = [identity_policy("own", own)];
    let set = identity_only(&policies);
    assert!(allowed(&user("ci"), "ecr:PutImage", &repo("ci/app"), &set));
    assert!(!allowed(&user("ci"), "ecr:PutImage", &repo("alice/app"), &set));
    assert!(allowed(&user("alice"), "ecr:PutImage", &repo("alice/app"), &set));
    assert!(!allowed(&Identity::Anonymous, "ecr:PutImage", &repo("ci/app"), &set), "no username, no match");
    // A value is literal: a user named "*" owns only the repository "*/…".
    assert!(!allowed(&user("*"), "ecr:PutImage", &repo("ci/app"), &set));
    assert!(allowed(&user("*"), "ecr:PutImage", &repo("*/app"), &set));
    // No variables before 2012-10-17.
    let old = identity_policy("old", &own.replace("2012-10-17", "2008-10-17"));
    let old = [old];
    assert!(!allowed(&user("ci"), "ecr:PutImage", &repo("ci/app"), &identity_only(&old)));
    // Defaults, and the escapes for literal wildcards.
    let public = identity_policy(
        "public",
        r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"ecr:*","Resource":["arn:aws:ecr:*:*:repository/${aws:username, 'public'}/*","arn:aws:ecr:*:*:repository/star${*}"]}}"#,
    );
    let public = [public];
    let set = identity_only(&public);
    assert!(allowed(&Identity::Anonymous, "ecr:BatchGetImage", &repo("public/app"), &set));
    assert!(!allowed(&Identity::Anonymous, "ecr:BatchGetImage", &repo("ci/app"), &set));
    assert!(allowed(&Identity::Anonymous, "ecr:BatchGetImage", &repo("star*"), &set));
    assert!(!allowed(&Identity::Anonymous, "ecr:BatchGetImage", &repo("starx"), &set));
    // The root's aws:userid is the account id.
    let by_userid = [identity_policy(
        "u",
        r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"ecr:*","Resource":"arn:aws:ecr:*:*:repository/${aws:userid}"}}"#,
    )];
    assert!(allowed(&user("ci"), "ecr:PutImage", &repo("ci"), &identity_only(&by_userid)));
}

// ---------------------------------------------------------------------------------------------
// Messages and caching

#[test]
fn access_denied_messages_use_iams_wording() {
    let resource = repo("team-a/app");
    let request_message = |identity: &Identity, set: &PolicySet| {
        let context = context(identity.clone());
        let keys = ConditionKeys::new(&context, ACCOUNT);
        let request = AuthzRequest { action: "ecr:PutImage", resource: &resource, keys: &keys };
        evaluate(&request, set).denial_message(&request)
    };
    let prefix = "User: arn:aws:iam::123456789012:user/ci is not authorized to perform: ecr:PutImage on resource: arn:aws:ecr:us-east-1:123456789012:repository/team-a/app";
    assert_eq!(
        request_message(&user("ci"), &PolicySet::default()).unwrap(),
        format!("{prefix} because no identity-based policy allows the ecr:PutImage action")
    );
    let deny = [identity_policy("d", r#"{"Statement":{"Effect":"Deny","Action":"*","Resource":"*"}}"#)];
    assert_eq!(
        request_message(&user("ci"), &identity_only(&deny)).unwrap(),
        format!("{prefix} with an explicit deny in an identity-based policy")
    );
    let repo_deny = resource_policy("r", r#"{"Statement":{"Effect":"Deny","Principal":"*","Action":"*"}}"#);
    let set = PolicySet { repository: Some(&repo_deny), ..PolicySet::default() };
    assert_eq!(
        request_message(&user("ci"), &set).unwrap(),
        format!("{prefix} with an explicit deny in a resource-based policy")
    );
    let set = PolicySet { registry: Some(&repo_deny), ..PolicySet::default() };
    assert!(request_message(&user("ci"), &set).unwrap().ends_with("with an explicit deny in a resource-based policy"));
    assert!(request_message(&Identity::Anonymous, &set).unwrap().starts_with("User: anonymous is not authorized"));
    assert_eq!(
        request_message(&root(), &set).unwrap(),
        "User: arn:aws:iam::123456789012:root is not authorized to perform: ecr:PutImage on resource: \
         arn:aws:ecr:us-east-1:123456789012:repository/team-a/app with an explicit deny in a resource-based policy"
    );
    // A deny-all standing in for a policy that cannot be read binds everyone but the root.
    let fail_closed = NamedPolicy::fail_closed("registry", repo_deny.policy.clone());
    let set = PolicySet { registry: Some(&fail_closed), ..PolicySet::default() };
    assert!(request_message(&user("ci"), &set).is_some());
    assert_eq!(request_message(&root(), &set), None);
}

#[test]
fn policies_say_whether_their_decisions_can_be_cached() {
    let varies = |condition: &str| {
        Policy::parse_identity(
            &format!(r#"{{"Version":"2012-10-17","Statement":{{"Effect":"Deny","Action":"*","Resource":"*","Condition":{condition}}}}}"#),
            SizeLimit::MANAGED_POLICY,
        )
        .unwrap()
        .varies_per_request()
    };
    assert!(varies(r#"{"NotIpAddress":{"aws:SourceIp":"10.0.0.0/8"}}"#));
    assert!(varies(r#"{"Bool":{"aws:SecureTransport":"false"}}"#));
    assert!(varies(r#"{"DateGreaterThan":{"aws:CurrentTime":"2026-01-01"}}"#));
    assert!(varies(r#"{"ForAnyValue:StringEquals":{"aws:TagKeys":"x"}}"#));
    assert!(varies(r#"{"StringEquals":{"aws:RequestTag/team":"x"}}"#));
    assert!(varies(r#"{"StringEquals":{"aws:username":"${aws:SourceIp}"}}"#));
    assert!(!varies(r#"{"StringEquals":{"aws:username":"ci"}}"#));
    assert!(!varies(r#"{"StringEquals":{"aws:ResourceTag/team":"${aws:username}"}}"#));
    let in_resource = Policy::parse_identity(
        r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"*","Resource":"arn:aws:ecr:*:*:repository/${aws:EpochTime}"}}"#,
        SizeLimit::MANAGED_POLICY,
    )
    .unwrap();
    assert!(in_resource.varies_per_request());
    let stable = [managed(managed::READ_ONLY)];
    assert!(!identity_only(&stable).varies_per_request());
}

// ---------------------------------------------------------------------------------------------
// Parse errors, one family at a time

fn identity_error(text: &str) -> String {
    Policy::parse_identity(text, SizeLimit::MANAGED_POLICY).expect_err(text).to_string()
}

fn resource_error(text: &str) -> String {
    Policy::parse_resource(text, SizeLimit::REPOSITORY_POLICY).expect_err(text).to_string()
}

/// A one-statement identity policy with `extra` members added to an Allow of ecr:* on *.
fn statement_with(extra: &str) -> String {
    format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":"ecr:*","Resource":"*"}},{{"Effect":"Allow","Action":"ecr:*","Resource":"*"{extra}}}]}}"#
    )
}

#[test]
fn repository_policies_name_no_resource() {
    let allow = r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"ecr:BatchGetImage"}}"#;
    assert!(Policy::parse_repository(allow).is_ok());
    let with = |element: &str| {
        format!(
            r#"{{"Statement":[{{"Effect":"Allow","Principal":"*","Action":"ecr:*"}},{{"Effect":"Deny","Principal":"*","Action":"ecr:*","{element}":"*"}}]}}"#
        )
    };
    for element in ["Resource", "NotResource"] {
        let text = with(element);
        assert_eq!(
            Policy::parse_repository(&text).expect_err(&text).to_string(),
            "Statement[1]: a repository policy names no Resource or NotResource: the repository it is set on is its resource"
        );
        assert!(Policy::parse_resource(&text, SizeLimit::REPOSITORY_POLICY).is_ok(), "a stored one still evaluates");
    }
}

#[test]
fn error_size_limits() {
    let padded = |n: usize| {
        format!(r#"{{"Statement":{{"Effect":"Allow","Principal":"*","Action":"ecr:*","Sid":"{}"}}}}"#, "a".repeat(n))
    };
    let base = padded(0).chars().count();
    assert!(Policy::parse_resource(&padded(10_240 - base), SizeLimit::REPOSITORY_POLICY).is_ok());
    assert_eq!(resource_error(&padded(10_241 - base)), "the policy has 10241 characters; at most 10240 are allowed");
    // IAM does not count whitespace.
    let spaced = format!("{}{}", " ".repeat(7_000), r#"{"Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}"#);
    assert!(Policy::parse_identity(&spaced, SizeLimit::MANAGED_POLICY).is_ok());
    let long =
        format!(r#"{{"Statement":{{"Sid":"{}","Effect":"Allow","Action":"*","Resource":"*"}}}}"#, "a".repeat(6_144));
    assert!(
        identity_error(&long)
            .starts_with("the policy has 6213 characters other than whitespace; at most 6144 are allowed")
    );
}

#[test]
fn error_characters_iam_does_not_allow() {
    let text = "{\"Statement\":{\"Sid\":\"a\u{2028}\",\"Effect\":\"Allow\",\"Action\":\"*\",\"Resource\":\"*\"}}";
    assert_eq!(
        identity_error(text),
        "the character at offset 22 is U+2028; IAM policies may contain only tab, line feed, carriage return and U+0020 to U+00FF"
    );
}

#[test]
fn error_json_and_document_shape() {
    assert!(
        identity_error("{oops").starts_with("the policy is not valid JSON: key must be a string at line 1 column 2")
    );
    assert_eq!(identity_error("[]"), "the policy must be a JSON object, not an array");
    assert_eq!(
        identity_error(r#"{"Statment":[]}"#),
        r#"unknown element "Statment" (expected "Version", "Id", "Statement")"#
    );
    assert_eq!(identity_error(r#"{"Version":"2012-10-17"}"#), "the policy has no Statement");
    assert_eq!(identity_error(r#"{"Statement":[]}"#), "Statement: must not be empty");
    assert_eq!(
        identity_error(r#"{"Statement":"x"}"#),
        "Statement: must be an object or a non-empty array of objects, not a string"
    );
    assert_eq!(
        identity_error(r#"{"Statement":[{"Effect":"Allow","Action":"*","Resource":"*"},"x"]}"#),
        "Statement[1]: a statement must be an object, not a string"
    );
    assert_eq!(identity_error(r#"{"Id":5,"Statement":[]}"#), "Id: must be a string, not a number");
}

#[test]
fn error_duplicate_keys() {
    assert_eq!(
        identity_error(r#"{"Statement":{"Effect":"Allow","Effect":"Deny","Action":"*","Resource":"*"}}"#),
        r#"Statement: "Effect" appears twice"#
    );
    assert_eq!(identity_error(r#"{"Statement":[],"Statement":[]}"#), r#""Statement" appears twice"#);
    assert_eq!(
        identity_error(&statement_with(
            r#","Condition":{"Bool":{"aws:SecureTransport":"true"},"Bool":{"aws:SecureTransport":"true"}}"#
        )),
        r#"Statement[1].Condition: operator "Bool" appears twice"#
    );
    assert_eq!(
        identity_error(&statement_with(r#","Condition":{"StringEquals":{"aws:username":"a","AWS:USERNAME":"b"}}"#)),
        r#"Statement[1].Condition.StringEquals["AWS:USERNAME"]: the key appears twice under this operator"#
    );
}

#[test]
fn error_version() {
    assert_eq!(
        identity_error(r#"{"Version":"2020-01-01","Statement":[]}"#),
        r#"Version: must be "2012-10-17" or "2008-10-17", not "2020-01-01""#
    );
    assert_eq!(
        identity_error(r#"{"Version":2012,"Statement":[]}"#),
        r#"Version: must be "2012-10-17" or "2008-10-17", not a number"#
    );
}

#[test]
fn error_statement_elements() {
    assert_eq!(
        identity_error(&statement_with(r#","Actions":"*""#)),
        r#"Statement[1]: unknown element "Actions" (expected "Sid", "Effect", "Principal", "NotPrincipal", "Action", "NotAction", "Resource", "NotResource", "Condition")"#
    );
    assert_eq!(
        identity_error(r#"{"Statement":{"Effect":"allow","Action":"*","Resource":"*"}}"#),
        r#"Statement.Effect: must be "Allow" or "Deny", not "allow""#
    );
    assert_eq!(identity_error(r#"{"Statement":{"Action":"*","Resource":"*"}}"#), "Statement: has no Effect");
}

#[test]
fn error_actions() {
    assert_eq!(
        identity_error(r#"{"Statement":{"Effect":"Allow","Resource":"*"}}"#),
        r#"Statement: needs an Action or NotAction, like "ecr:BatchGetImage""#
    );
    assert_eq!(
        identity_error(r#"{"Statement":{"Effect":"Allow","Action":"*","NotAction":"*","Resource":"*"}}"#),
        "Statement: has both Action and NotAction; use one"
    );
    for bad in ["ecrPutImage", "ecr:", ":PutImage", "e*:PutImage", ""] {
        assert_eq!(
            identity_error(&format!(
                r#"{{"Statement":{{"Effect":"Allow","Action":["ecr:*","{bad}"],"Resource":"*"}}}}"#
            )),
            format!(
                r#"Statement.Action: {bad:?} is not an action: write "service:Action" ("ecr:PutImage", "ecr:Batch*") or "*""#
            )
        );
    }
    assert_eq!(
        identity_error(r#"{"Statement":{"Effect":"Allow","NotAction":[],"Resource":"*"}}"#),
        "Statement.NotAction: must be a string or a non-empty array of strings, not an array"
    );
    assert_eq!(
        identity_error(r#"{"Statement":{"Effect":"Allow","Action":["*",3],"Resource":"*"}}"#),
        "Statement.Action: must be a string or a non-empty array of strings, not an array"
    );
}

#[test]
fn error_resources() {
    assert_eq!(
        identity_error(r#"{"Statement":{"Effect":"Allow","Action":"*"}}"#),
        r#"Statement: needs a Resource or NotResource, like "arn:aws:ecr:us-east-1:123456789012:repository/team-a/*" or "*""#
    );
    assert_eq!(
        identity_error(r#"{"Statement":{"Effect":"Allow","Action":"*","Resource":"my-repo"}}"#),
        r#"Statement.Resource: "my-repo" is not a resource: write an ARN ("arn:aws:ecr:<region>:<account>:repository/<name>") or "*""#
    );
    assert_eq!(
        identity_error(
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"*","NotResource":"arn:aws:ecr:*:*:repository/${aws:username"}}"#
        ),
        r#"Statement.NotResource: unterminated policy variable in "arn:aws:ecr:*:*:repository/${aws:username" (write ${$} for a literal $)"#
    );
    // Resource policies may leave it out.
    assert!(
        Policy::parse_resource(
            r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"*"}}"#,
            SizeLimit::REPOSITORY_POLICY
        )
        .is_ok()
    );
}

#[test]
fn error_principals() {
    assert_eq!(
        identity_error(r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"*","Resource":"*"}}"#),
        "Statement: an identity policy names no Principal or NotPrincipal: it applies to the user it is attached to"
    );
    assert_eq!(
        resource_error(r#"{"Statement":{"Effect":"Allow","Action":"*"}}"#),
        r#"Statement: a repository or registry policy statement needs a Principal or NotPrincipal, like {"AWS": "arn:aws:iam::123456789012:user/ci"} or "*""#
    );
    assert_eq!(
        resource_error(r#"{"Statement":{"Effect":"Allow","Principal":"someone","Action":"*"}}"#),
        r#"Statement.Principal: must be "*" or an object like {"AWS": "arn:aws:iam::123456789012:user/ci"}, not "someone""#
    );
    assert_eq!(
        resource_error(r#"{"Statement":{"Effect":"Allow","Principal":{"AWS":"someone"},"Action":"*"}}"#),
        r#"Statement.Principal.AWS: "someone" is not a principal: use a 12-digit account id, an IAM ARN or "*""#
    );
    assert_eq!(
        resource_error(r#"{"Statement":{"Effect":"Allow","NotPrincipal":{"Aws":"*"},"Action":"*"}}"#),
        r#"Statement.NotPrincipal: unknown element "Aws" (expected "AWS", "Service", "Federated", "CanonicalUser")"#
    );
    assert_eq!(
        resource_error(r#"{"Statement":{"Effect":"Allow","Principal":{"AWS":[]},"Action":"*"}}"#),
        "Statement.Principal.AWS: must be a string or a non-empty array of strings, not an array"
    );
    // A principal IAM would refuse (a wildcard in part of an ARN, a group, a regional IAM ARN, no
    // name) is refused in a policy being set; a stored one still evaluates, matching no one.
    for (arn, why) in [
        ("arn:aws:iam::000000000000:user/*", "takes no wildcard"),
        ("arn:aws:iam::000000000000:user/r?", "takes no wildcard"),
        ("arn:aws:iam::*:user/ro", "takes no wildcard"),
        ("arn:aws:iam::000000000000:user/", "name the account's root"),
        ("arn:aws:iam::000000000000:user", "name the account's root"),
        ("arn:aws:iam::000000000000:root ", "name the account's root"),
        ("arn:aws:iam::000000000000:group/x", "name the account's root"),
        ("arn:aws:iam::000000000000:", "name the account's root"),
        ("arn:aws:iam:us-east-1:000000000000:root", "name a principal as"),
        ("arn:", "name a principal as"),
        ("arn:aws:iam::0000:user/ro", "12-digit id"),
    ] {
        let text = format!(
            r#"{{"Statement":{{"Effect":"Deny","Principal":{{"AWS":["arn:aws:iam::000000000000:user/ci","{arn}"]}},"Action":"*"}}}}"#
        );
        for error in [
            Policy::parse_repository(&text).expect_err(&text).to_string(),
            Policy::parse_registry(&text).expect_err(&text).to_string(),
        ] {
            assert!(
                error.starts_with(&format!("Statement.Principal.AWS: Invalid principal in policy: {arn:?}")),
                "{error}"
            );
            assert!(error.contains(why), "{error}");
        }
        assert!(Policy::parse_resource(&text, SizeLimit::REPOSITORY_POLICY).is_ok(), "a stored one still evaluates");
    }
    for arn in [
        "arn:aws:iam::000000000000:root",
        "arn:aws:iam::000000000000:user/ci",
        "arn:aws:iam::000000000000:user/team/ci.bot@x",
        "arn:aws:iam::000000000000:role/deploy",
        "arn:aws:sts::000000000000:assumed-role/deploy/session",
    ] {
        let text = format!(r#"{{"Statement":{{"Effect":"Deny","NotPrincipal":{{"AWS":"{arn}"}},"Action":"*"}}}}"#);
        assert!(Policy::parse_repository(&text).is_ok(), "{arn}");
    }
    assert_eq!(
        resource_error(r#"{"Statement":{"Effect":"Allow","Principal":{},"Action":"*"}}"#),
        r#"Statement.Principal: must be "*" or an object like {"AWS": "arn:aws:iam::123456789012:user/ci"}, not an object"#
    );
}

#[test]
fn error_sids() {
    assert_eq!(
        identity_error(&statement_with(r#","Sid":"no spaces""#)),
        r#"Statement[1].Sid: "no spaces" must contain only letters and digits (IAM's rule for identity policies)"#
    );
    let twice = r#"{"Statement":[{"Sid":"A","Effect":"Allow","Action":"*","Resource":"*"},{"Sid":"A","Effect":"Deny","Action":"*","Resource":"*"}]}"#;
    assert_eq!(
        identity_error(twice),
        r#"Statement[1].Sid: "A" is also the Sid of Statement[0]; Sids must be unique within a policy"#
    );
    assert_eq!(identity_error(&statement_with(r#","Sid":1"#)), "Statement[1].Sid: must be a string, not a number");
    // Repository policies (ECR) are freer.
    assert!(
        Policy::parse_resource(
            r#"{"Statement":{"Sid":"allow pulls, from CI","Effect":"Allow","Principal":"*","Action":"*"}}"#,
            SizeLimit::REPOSITORY_POLICY
        )
        .is_ok()
    );
}

#[test]
fn error_conditions() {
    for (condition, message) in [
        (r#""x""#, "Statement[1].Condition: must be an object of operators, not a string"),
        (r#"{"StringEq":{"aws:username":"x"}}"#, r#"Statement[1].Condition: unknown operator "StringEq""#),
        (r#"{"stringequals":{"aws:username":"x"}}"#, r#"Statement[1].Condition: unknown operator "stringequals""#),
        (
            r#"{"ForSomeValues:StringEquals":{"aws:username":"x"}}"#,
            r#"Statement[1].Condition: unknown operator "ForSomeValues:StringEquals""#,
        ),
        (
            r#"{"NullIfExists":{"aws:username":"true"}}"#,
            r#"Statement[1].Condition: operator "NullIfExists" is not valid: Null takes no ForAnyValue:, ForAllValues: or IfExists"#,
        ),
        (
            r#"{"BinaryEquals":{"aws:username":"eA=="}}"#,
            r#"Statement[1].Condition: operator "BinaryEquals" is not supported: no condition key Berth knows is binary"#,
        ),
        (
            r#"{"StringEquals":"x"}"#,
            "Statement[1].Condition.StringEquals: must be an object of condition keys, not a string",
        ),
        (r#"{"StringEquals":{}}"#, "Statement[1].Condition.StringEquals: names no condition key"),
        (
            r#"{"StringEquals":{"username":"x"}}"#,
            r#"Statement[1].Condition.StringEquals["username"]: a condition key is prefixed by its service, like "aws:SourceIp""#,
        ),
        (
            r#"{"StringEquals":{"aws:username":[]}}"#,
            r#"Statement[1].Condition.StringEquals["aws:username"]: the value list is empty"#,
        ),
        (
            r#"{"StringEquals":{"aws:username":{"a":1}}}"#,
            r#"Statement[1].Condition.StringEquals["aws:username"]: a value must be a string, number or boolean, not an object"#,
        ),
        (
            r#"{"StringEquals":{"aws:username":["a",null]}}"#,
            r#"Statement[1].Condition.StringEquals["aws:username"]: a value must be a string, number or boolean, not null"#,
        ),
        (
            r#"{"NumericLessThan":{"aws:EpochTime":"ten"}}"#,
            r#"Statement[1].Condition.NumericLessThan["aws:EpochTime"]: "ten" is not a number"#,
        ),
        (
            r#"{"DateLessThan":{"aws:CurrentTime":"2026-13-01"}}"#,
            r#"Statement[1].Condition.DateLessThan["aws:CurrentTime"]: "2026-13-01" is not a date: use ISO 8601 ("2026-01-31T12:00:00Z") or epoch seconds"#,
        ),
        (
            r#"{"Bool":{"aws:SecureTransport":"yes"}}"#,
            r#"Statement[1].Condition.Bool["aws:SecureTransport"]: "yes" is not true or false"#,
        ),
        (
            r#"{"Null":{"aws:username":"maybe"}}"#,
            r#"Statement[1].Condition.Null["aws:username"]: "maybe" is not true or false"#,
        ),
        (
            r#"{"IpAddress":{"aws:SourceIp":"10.0.0.0/33"}}"#,
            r#"Statement[1].Condition.IpAddress["aws:SourceIp"]: "10.0.0.0/33" is not an IP address or CIDR block"#,
        ),
        (
            r#"{"StringLike":{"aws:username":"${}"}}"#,
            r#"Statement[1].Condition.StringLike["aws:username"]: empty policy variable in "${}""#,
        ),
    ] {
        assert_eq!(identity_error(&statement_with(&format!(r#","Condition":{condition}"#))), message, "{condition}");
    }
    // Policy variables are plain text before 2012-10-17, so nothing to refuse there.
    let old =
        statement_with(r#","Condition":{"StringLike":{"aws:username":"${}"}}"#).replace("2012-10-17", "2008-10-17");
    assert!(Policy::parse_identity(&old, SizeLimit::MANAGED_POLICY).is_ok());
}

// ---------------------------------------------------------------------------------------------
// Hostile input

/// A small deterministic generator (xorshift), so the property runs the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// Random JSON built from the policy grammar's own vocabulary, so it gets deep into the parser.
fn random_json(rng: &mut Rng, depth: usize) -> String {
    const KEYS: &[&str] = &[
        "Version",
        "Id",
        "Statement",
        "Sid",
        "Effect",
        "Principal",
        "NotPrincipal",
        "Action",
        "NotAction",
        "Resource",
        "NotResource",
        "Condition",
        "AWS",
        "Service",
        "StringEquals",
        "ForAllValues:StringLikeIfExists",
        "ForAnyValue:StringNotEquals",
        "NumericLessThan",
        "DateGreaterThan",
        "IpAddress",
        "NotIpAddress",
        "Bool",
        "Null",
        "ArnLike",
        "aws:username",
        "aws:SourceIp",
        "aws:TagKeys",
        "aws:CurrentTime",
        "x",
    ];
    const STRINGS: &[&str] = &[
        "2012-10-17",
        "2008-10-17",
        "Allow",
        "Deny",
        "*",
        "ecr:*",
        "ecr:Put?mage",
        "arn:aws:ecr:*:*:repository/*",
        "arn:aws:iam::123456789012:root",
        "123456789012",
        "${aws:username}",
        "${aws:x, 'd''}",
        "${",
        "${*}",
        "10.0.0.0/8",
        "::1",
        "2026-01-31T12:00:00+01:00",
        "1769860800",
        "true",
        "42",
        "-1.5",
        "",
        "é",
        "\\u0000",
        "arn:",
        ":::::::",
    ];
    match (rng.below(if depth > 5 { 3 } else { 6 }), depth) {
        (0, _) => format!("{:?}", rng.pick(STRINGS)),
        (1, _) => rng.pick(&["true", "false", "null", "0", "12", "1e400", "-0.0"]).to_owned(),
        (2, _) => format!("{:?}", rng.pick(KEYS)),
        (3, _) => {
            let items: Vec<String> = (0..rng.below(4)).map(|_| random_json(rng, depth + 1)).collect();
            format!("[{}]", items.join(","))
        }
        _ => {
            let members: Vec<String> =
                (0..rng.below(5)).map(|_| format!("{:?}:{}", rng.pick(KEYS), random_json(rng, depth + 1))).collect();
            format!("{{{}}}", members.join(","))
        }
    }
}

/// A statement assembled from valid and invalid pieces of the grammar.
fn random_statement(rng: &mut Rng) -> String {
    const OPERATORS: &[&str] = &[
        "StringEquals",
        "StringNotLikeIfExists",
        "ForAllValues:StringEquals",
        "ForAnyValue:ArnLike",
        "NumericLessThan",
        "DateGreaterThanEquals",
        "Bool",
        "IpAddress",
        "NotIpAddress",
        "Null",
        "BinaryEquals",
        "StringEq",
    ];
    const KEYS: &[&str] = &[
        "aws:username",
        "aws:SourceIp",
        "aws:TagKeys",
        "aws:CurrentTime",
        "aws:RequestTag/cost",
        "ecr:ResourceTag/team",
        "bad",
    ];
    const VALUES: &[&str] = &[
        r#""ci""#,
        r#""${aws:username}""#,
        r#""10.0.0.0/8""#,
        r#""2026-01-01""#,
        r#""42""#,
        "true",
        r#"["a","b*"]"#,
        "[]",
        "{}",
        r#""${aws:SourceIp, 'x'}""#,
    ];
    const ACTIONS: &[&str] = &[r#""*""#, r#""ecr:*""#, r#"["ecr:PutImage","ecr:Batch*"]"#, r#""ecr""#, "[]"];
    const RESOURCES: &[&str] = &[
        r#""*""#,
        r#""arn:aws:ecr:*:*:repository/${aws:username}/*""#,
        r#"["arn:aws:ecr:us-east-1:123456789012:repository/a"]"#,
        r#""repo""#,
    ];
    const PRINCIPALS: &[&str] = &[
        r#""*""#,
        r#"{"AWS":"123456789012"}"#,
        r#"{"AWS":["arn:aws:iam::123456789012:user/ci"]}"#,
        r#"{"Service":"x"}"#,
    ];
    let mut members = vec![format!(r#""Effect":{:?}"#, rng.pick(&["Allow", "Deny", "Maybe"]))];
    members.push(format!(r#""{}":{}"#, rng.pick(&["Action", "NotAction"]), rng.pick(ACTIONS)));
    if rng.below(4) != 0 {
        members.push(format!(r#""{}":{}"#, rng.pick(&["Resource", "NotResource"]), rng.pick(RESOURCES)));
    }
    if rng.below(2) == 0 {
        members.push(format!(r#""{}":{}"#, rng.pick(&["Principal", "NotPrincipal"]), rng.pick(PRINCIPALS)));
    }
    if rng.below(2) == 0 {
        let tests: Vec<String> = (0..1 + rng.below(3))
            .map(|_| format!(r#""{}":{{"{}":{}}}"#, rng.pick(OPERATORS), rng.pick(KEYS), rng.pick(VALUES)))
            .collect();
        members.push(format!(r#""Condition":{{{}}}"#, tests.join(",")));
    }
    format!("{{{}}}", members.join(","))
}

/// Parsing any input returns a policy or an error, never a panic; and whatever parses evaluates
/// without panicking, for requests with odd actions and resources too.
#[test]
fn parsing_and_evaluating_arbitrary_input_never_panics() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let seeds: Vec<&str> =
        managed::ALL.iter().map(|(_, d)| *d).chain([managed::ANONYMOUS_PULL, managed::NO_AUTH]).collect();
    let context = context(user("ci"));
    let tags = request_tags();
    let keys = ConditionKeys::new(&context, ACCOUNT).request_tags(&tags).resource_tags(&tags);
    let resources = [repo("a"), "*".into(), String::new(), ":::::::::".into(), "arn:aws:ecr:é:1:repository/ü".into()];
    let mut parsed = 0;
    for round in 0..6_000 {
        let text = if round % 3 == 2 {
            let statements: Vec<String> = (0..1 + rng.below(3)).map(|_| random_statement(&mut rng)).collect();
            format!(
                r#"{{"Version":"{}","Statement":[{}]}}"#,
                rng.pick(&["2012-10-17", "2008-10-17"]),
                statements.join(",")
            )
        } else if round % 3 == 0 {
            let mut text = random_json(&mut rng, 0);
            if rng.below(3) == 0 {
                text = format!(r#"{{"Version":"2012-10-17","Statement":{text}}}"#);
            }
            text
        } else {
            // Mutate a real document: cut it, or splice random bytes or grammar into it.
            let mut bytes = seeds[rng.below(seeds.len())].as_bytes().to_vec();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(bytes.len() + 1);
                match rng.below(3) {
                    0 => bytes.truncate(at),
                    1 => bytes.insert(at, rng.next() as u8),
                    _ => bytes.splice(at..at, random_json(&mut rng, 3).into_bytes()).for_each(drop),
                }
            }
            String::from_utf8_lossy(&bytes).into_owned()
        };
        for kind in [PolicyKind::Identity, PolicyKind::Resource] {
            let Ok(policy) = Policy::parse(&text, kind, SizeLimit::REPOSITORY_POLICY) else { continue };
            parsed += 1;
            let named = [NamedPolicy::new("fuzz", Arc::new(policy))];
            for resource in &resources {
                for action in ["ecr:PutImage", "", "*", "ECR:BATCHGETIMAGE", "x:y:z"] {
                    let request = AuthzRequest { action, resource, keys: &keys };
                    let set = PolicySet { identity: &named, repository: Some(&named[0]), registry: None };
                    let decision = evaluate(&request, &set);
                    let _ = (decision.to_string(), decision.denial_message(&request));
                }
            }
        }
    }
    assert!(parsed > 100, "the generator reaches valid policies too ({parsed})");
}

// ---------------------------------------------------------------------------------------------
// Principals bound to users

#[test]
fn a_forgotten_user_is_named_by_no_principal() {
    let text = format!(
        r#"{{"Version":"2012-10-17","Statement":[
            {{"Effect":"Allow","Principal":{{"AWS":["arn:aws:iam::{ACCOUNT}:user/ghost","arn:aws:iam::{ACCOUNT}:user/ci"]}},"Action":"ecr:BatchGetImage"}},
            {{"Effect":"Deny","NotPrincipal":{{"AWS":"arn:aws:iam::{ACCOUNT}:user/ghost"}},"Action":"ecr:PutImage"}},
            {{"Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::999999999999:user/other"}},"Action":"ecr:*"}}]}}"#
    );
    let policy = Policy::parse_resource(&text, SizeLimit::REPOSITORY_POLICY).unwrap();
    assert_eq!(policy.named_users(ACCOUNT), ["ci", "ghost"], "users of this account, each once");
    let push_everyone = allow(r#""ecr:PutImage""#, r#""*""#);
    let decide_for = |who: &str, action: &str, policy: &Policy| {
        let named = NamedPolicy::new("repository/app", Arc::new(policy.clone()));
        let identity = [push_everyone.clone()];
        let set = PolicySet { identity: &identity, repository: Some(&named), registry: None };
        decide(&user(who), action, &repo("app"), &set).is_allowed()
    };
    assert!(decide_for("ghost", "ecr:BatchGetImage", &policy));
    assert!(decide_for("ghost", "ecr:PutImage", &policy), "NotPrincipal exempts ghost from the Deny");
    let forgotten = policy.forgetting_user(ACCOUNT, "ghost");
    assert!(!decide_for("ghost", "ecr:BatchGetImage", &forgotten), "the grant named the old ghost");
    assert!(!decide_for("ghost", "ecr:PutImage", &forgotten), "nor is the new ghost exempt from the Deny");
    assert!(decide_for("ci", "ecr:BatchGetImage", &forgotten), "other principals are untouched");
    assert_eq!(forgotten.named_users(ACCOUNT), ["ci"]);
}

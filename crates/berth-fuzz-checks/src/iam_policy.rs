//! IAM policies (`berth-iam`): the grammar of identity and resource (repository, registry)
//! policies, and the evaluator every authorization decision goes through.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use berth_iam::{
    AuthzRequest, ConditionKeys, CredentialKind, Effect, Identity, NamedPolicy, Outcome, Policy, PolicyKind, PolicySet,
    RequestContext, SizeLimit, Tag, actions, arn, evaluate,
};

const ACCOUNT: &str = "000000000000";
const REGION: &str = "us-east-1";
const ALLOW_ALL: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;
const DENY_ALL: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"*","Resource":"*"}]}"#;
const ACTIONS: [&str; 6] = [
    actions::BATCH_GET_IMAGE,
    actions::PUT_IMAGE,
    actions::SET_REPOSITORY_POLICY,
    actions::GET_AUTHORIZATION_TOKEN,
    "ECR:batchdeleteimage",
    "s3:GetObject",
];

struct RepositoryTag(&'static str, &'static str);

impl Tag for RepositoryTag {
    fn key(&self) -> &str {
        self.0
    }

    fn value(&self) -> &str {
        self.1
    }
}

fn context(identity: Identity, secure: bool) -> RequestContext {
    RequestContext {
        request_id: "fuzz".into(),
        received_at: UNIX_EPOCH + Duration::from_secs(1_767_225_600),
        source_ip: secure.then_some(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3))),
        secure_transport: secure,
        user_agent: Some("aws-cli/2".into()),
        identity,
    }
}

/// The input as a policy text, parsed as an identity policy and as a repository policy. Of what
/// parses, every decision is deterministic and consistent (an explicit deny names only `Deny`
/// statements, an allow only `Allow`s, an implicit deny none); the root and the server are
/// always allowed; no policy turns another's `Deny` into an allow; and a repository policy next
/// to an identity policy that allows everything can only allow or explicitly deny.
pub fn iam_policy(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let allow_all =
        NamedPolicy::new("allow-all", Arc::new(Policy::parse_identity(ALLOW_ALL, SizeLimit::MANAGED_POLICY).unwrap()));
    let deny_all =
        NamedPolicy::new("deny-all", Arc::new(Policy::parse_identity(DENY_ALL, SizeLimit::MANAGED_POLICY).unwrap()));
    let tags = vec![RepositoryTag("team", "web")];
    let identities = [
        Identity::Anonymous,
        Identity::User { name: "alice".into(), access_key_id: "AKIAALICE".into(), via: CredentialKind::SigV4 },
        Identity::Root { access_key_id: "AKIAROOT".into(), via: CredentialKind::AccessKey },
        Identity::Server { task: "lifecycle".into() },
    ];
    let resources = [arn::repository_arn(REGION, ACCOUNT, "team/app"), arn::all_repositories_arn(REGION, ACCOUNT)];

    for (kind, limit) in
        [(PolicyKind::Identity, SizeLimit::MANAGED_POLICY), (PolicyKind::Resource, SizeLimit::REPOSITORY_POLICY)]
    {
        let Ok(policy) = Policy::parse(text, kind, limit) else { continue };
        let fuzzed = NamedPolicy::new("fuzzed", Arc::new(policy));
        let identity_only = [fuzzed.clone()];
        let with_deny = [fuzzed.clone(), deny_all.clone()];
        let beside_allow_all = [allow_all.clone()];
        for identity in &identities {
            for secure in [false, true] {
                let ctx = context(identity.clone(), secure);
                let keys = ConditionKeys::new(&ctx, ACCOUNT).requested_region(REGION).resource_tags(&tags);
                for action in ACTIONS {
                    for resource in &resources {
                        let request = AuthzRequest { action, resource, keys: &keys };
                        let alone = match kind {
                            PolicyKind::Identity => PolicySet { identity: &identity_only, ..PolicySet::default() },
                            PolicyKind::Resource => PolicySet { repository: Some(&fuzzed), ..PolicySet::default() },
                        };
                        let decision = evaluate(&request, &alone);
                        assert_eq!(decision, evaluate(&request, &alone), "evaluation is not deterministic");
                        assert_eq!(decision.denial_message(&request).is_some(), !decision.is_allowed());
                        let effects: Vec<Effect> = decision.statements().iter().map(|s| s.effect).collect();
                        match decision.outcome {
                            Outcome::ExplicitDeny => {
                                assert!(!effects.is_empty() && effects.iter().all(|e| *e == Effect::Deny))
                            }
                            Outcome::Allowed if identity.is_root() => assert!(effects.is_empty()),
                            Outcome::Allowed => {
                                assert!(!effects.is_empty() && effects.iter().all(|e| *e == Effect::Allow))
                            }
                            Outcome::ImplicitDeny => assert!(effects.is_empty()),
                        }
                        if identity.is_root() {
                            // Only a resource policy's Deny refuses the root, nothing implicitly; the
                            // server nothing at all.
                            let refused = matches!(identity, Identity::Root { .. })
                                && kind == PolicyKind::Resource
                                && decision.outcome == Outcome::ExplicitDeny;
                            assert!(decision.is_allowed() || refused, "the root was refused {action}: {decision}");
                            continue;
                        }
                        let denied =
                            PolicySet { identity: &with_deny, repository: alone.repository, ..PolicySet::default() };
                        assert_eq!(evaluate(&request, &denied).outcome, Outcome::ExplicitDeny, "a Deny was overridden");
                        if kind == PolicyKind::Resource {
                            let both = PolicySet {
                                identity: &beside_allow_all,
                                repository: Some(&fuzzed),
                                ..PolicySet::default()
                            };
                            assert_ne!(evaluate(&request, &both).outcome, Outcome::ImplicitDeny);
                        }
                    }
                }
            }
        }
    }
}

//! What one authorization decision costs, for the lead's quiet-machine measurements (not run by
//! the tests): `cargo run --release -p berth-iam --example evaluate_cost`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use berth_iam::*;

fn named(name: &str, policy: Policy) -> NamedPolicy {
    NamedPolicy::new(name, Arc::new(policy))
}

fn main() {
    let read_only =
        Policy::parse_identity(managed::by_name(managed::READ_ONLY).unwrap(), SizeLimit::MANAGED_POLICY).unwrap();
    let team = Policy::parse_identity(
        r#"{"Version":"2012-10-17","Statement":[
            {"Sid":"Push","Effect":"Allow","Action":["ecr:PutImage","ecr:InitiateLayerUpload","ecr:UploadLayerPart","ecr:CompleteLayerUpload"],
             "Resource":"arn:aws:ecr:*:*:repository/${aws:username}/*"},
            {"Sid":"Office","Effect":"Deny","Action":"ecr:*","Resource":"*","Condition":{"NotIpAddress":{"aws:SourceIp":["10.0.0.0/8","192.168.0.0/16"]}}}]}"#,
        SizeLimit::MANAGED_POLICY,
    )
    .unwrap();
    let repository = Policy::parse_resource(
        r#"{"Statement":{"Sid":"Freeze","Effect":"Deny","Principal":{"AWS":"arn:aws:iam::123456789012:user/intern"},"Action":"ecr:Delete*"}}"#,
        SizeLimit::REPOSITORY_POLICY,
    )
    .unwrap();
    let identity = [named(managed::READ_ONLY, read_only), named("user/ci/team", team)];
    let repository = named("repository/ci/app", repository);
    let policies = PolicySet { identity: &identity, repository: Some(&repository), registry: None };

    let context = RequestContext {
        request_id: "bench".into(),
        received_at: SystemTime::now(),
        source_ip: Some("10.1.2.3".parse().unwrap()),
        secure_transport: true,
        user_agent: None,
        identity: Identity::User { name: "ci".into(), access_key_id: "AKIA".into(), via: CredentialKind::Token },
    };
    let keys = ConditionKeys::new(&context, "123456789012");
    let resource = arn::repository_arn("us-east-1", "123456789012", "ci/app");
    for action in [actions::BATCH_GET_IMAGE, actions::PUT_IMAGE, actions::DELETE_REPOSITORY] {
        let request = AuthzRequest { action, resource: &resource, keys: &keys };
        let rounds = 1_000_000;
        let started = Instant::now();
        for _ in 0..rounds {
            black_box(evaluate(black_box(&request), black_box(&policies)));
        }
        let per = started.elapsed().as_nanos() as f64 / f64::from(rounds);
        println!("{action:<24} {:?} in {per:.0} ns", evaluate(&request, &policies).outcome);
    }
}

//! `berth serve` as a replication destination: Basic with an access key, `AWS` + registry
//! token, refusals, mounts; and over TLS with a private CA.

mod common;

use berth_remote::{Client, ClientConfig, Credentials, Endpoint, Error, Mount, TrustRoots};
use common::image::{Blob, multiarch, pseudo_random, pull_and_check, push_blob, push_index};
use common::{ROOT_KEY_ID, ROOT_SECRET, berth, berth_binary, berth_token, name, remote};

#[tokio::test]
async fn access_keys_and_registry_tokens_push_and_pull() {
    let Some(binary) = berth_binary("access_keys_and_registry_tokens_push_and_pull") else { return };
    let server = berth(&binary, &[]);
    let repo = name("prod/web");
    let image = multiarch("berth-destination", 2_200_000);

    let by_key = remote(&server.url, Credentials::basic(ROOT_KEY_ID, ROOT_SECRET));
    by_key.ping().await.expect("ping with an access key");
    push_index(&by_key, &repo, &image, "v1").await.expect("push with an access key");
    pull_and_check(&by_key, &repo, &image, "v1").await.expect("pull with an access key");

    let by_token = remote(&server.url, Credentials::basic("AWS", berth_token(&binary, &server)));
    push_index(&by_token, &name("prod/web-copy"), &image, "v1").await.expect("push as AWS + token");
    pull_and_check(&by_token, &repo, &image, "v1").await.expect("pull as AWS + token");

    // A blob the destination has in another repository is mounted, not sent again.
    let layer = &image.children[0].layers[0];
    let mounted = by_token.mount_blob(&name("prod/other"), &layer.digest, &repo).await.expect("mount");
    assert!(matches!(mounted, Mount::Mounted), "{mounted:?}");
    assert_eq!(by_token.head_blob(&name("prod/other"), &layer.digest).await.unwrap(), Some(2_200_000));

    for (user, password) in [(ROOT_KEY_ID, "wrong-secret-value"), ("AWS", "not.a.token")] {
        let refused = remote(&server.url, Credentials::basic(user, password));
        let error = refused.ping().await.unwrap_err();
        assert!(matches!(error, Error::Unauthorized { .. }), "{user}: {error:?}");
        assert!(!error.to_string().contains(password));
        let blob = Blob::new(pseudo_random("refused", 10));
        assert!(matches!(push_blob(&refused, &repo, &blob).await, Err(Error::Unauthorized { .. })));
    }
    let anonymous = remote(&server.url, Credentials::Anonymous);
    assert!(matches!(anonymous.head_manifest(&repo, &common::image::tag("v1")).await, Err(Error::Unauthorized { .. })));
}

/// A CA and a certificate it signed for 127.0.0.1, as PEM: (ca, cert, key).
fn private_ca() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "berth-remote test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    (ca_pem, cert.signed_by(&key, &issuer).unwrap().pem(), key.serialize_pem())
}

#[tokio::test]
async fn https_with_a_private_ca() {
    let Some(binary) = berth_binary("https_with_a_private_ca") else { return };
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = private_ca();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert).unwrap();
    std::fs::write(&key_path, key).unwrap();
    let server = berth(&binary, &["--tls-cert", cert_path.to_str().unwrap(), "--tls-key", key_path.to_str().unwrap()]);
    // A bare host[:port] means https.
    let endpoint = Endpoint::parse(&format!("127.0.0.1:{}", server.port)).unwrap();
    assert!(endpoint.is_https());
    let credentials = Credentials::basic(ROOT_KEY_ID, ROOT_SECRET);

    for trust in [TrustRoots::OnlyPem(ca.clone().into_bytes()), TrustRoots::SystemAndPem(ca.clone().into_bytes())] {
        let client = Client::new(ClientConfig { trust: trust.clone(), ..ClientConfig::default() }).unwrap();
        let remote = client.remote(endpoint.clone(), credentials.clone());
        remote.ping().await.unwrap_or_else(|e| panic!("{trust:?}: {e}"));
        let image = multiarch("tls", 100_000);
        push_index(&remote, &name("tls/app"), &image, "v1").await.unwrap();
        pull_and_check(&remote, &name("tls/app"), &image, "v1").await.unwrap();
    }

    // The system store alone does not know the private CA.
    let system = Client::new(ClientConfig::default()).unwrap().remote(endpoint, credentials);
    let error = system.ping().await.unwrap_err();
    assert!(matches!(error, Error::Transport(ref m) if m.to_lowercase().contains("certificate")), "{error:?}");
}

//! Cluster key safety: a server whose master key is not the one the store's access keys were
//! sealed with refuses to start (instead of disabling every key), and `--master-key-file` lets
//! servers share one key.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;

const ROOT_ID: &str = "AKIAMASTERKEYTEST001";
const ROOT_SECRET: &str = "master-key-test-secret-0000000000000000";

fn write_private(path: &std::path::Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[tokio::test]
async fn a_different_master_key_is_refused_and_a_shared_key_file_is_used() {
    let mut srv = Launch::new().root_keys(ROOT_ID, ROOT_SECRET).start();
    let user = srv.cli(&["user", "add", "ci"]);
    assert!(user.contains("accessKeyId"), "{user}");
    assert!(srv.stop().success());

    // Keep the original key outside the data dir, as a shared key file, and give the data dir
    // another one: the store's secrets no longer open with it.
    let shared = tempfile::tempdir().unwrap();
    let shared_key = shared.path().join("master.key");
    let own_key = srv.data_dir().join("keys").join("master.key");
    std::fs::copy(&own_key, &shared_key).unwrap();
    std::fs::set_permissions(&shared_key, std::fs::Permissions::from_mode(0o600)).unwrap();
    write_private(&own_key, &[7u8; 32]);

    let out = Launch::new().root_keys(ROOT_ID, ROOT_SECRET).start_refused(srv.data_dir());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a server with another master key started:\n{stderr}");
    assert!(
        stderr.contains("sealed with another master key") && stderr.contains("--master-key-file"),
        "the refusal does not say what is wrong and how to fix it:\n{stderr}"
    );
    assert!(stderr.contains("ci"), "the refusal names the keys it cannot open:\n{stderr}");
    assert!(!stderr.contains(ROOT_SECRET), "the refusal shows a secret:\n{stderr}");

    // A key file that does not exist is refused too (Berth never invents a shared key).
    let missing = shared.path().join("absent.key");
    let out = Launch::new().args(&["--master-key-file", missing.to_str().unwrap()]).start_refused(srv.data_dir());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("does not exist"), "{stderr}");

    // The shared file (flag or environment) is the key: the server starts and the keys work.
    let root = anonymous_with(&basic(ROOT_ID, ROOT_SECRET));
    for launch in [
        Launch::new().args(&["--master-key-file", shared_key.to_str().unwrap()]),
        Launch::new().env("BERTH_MASTER_KEY_FILE", shared_key.to_str().unwrap()),
    ] {
        srv.start_again_with(launch.root_keys(ROOT_ID, ROOT_SECRET));
        send(root.get(srv.url("/v2/"))).await.expect_status(200);
        // The CLI reads the same variable: its tokens are signed with the shared key.
        let token = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(["token", "--data-dir"])
            .arg(srv.data_dir())
            .env("BERTH_MASTER_KEY_FILE", &shared_key)
            .output()
            .unwrap();
        assert!(token.status.success(), "{}", String::from_utf8_lossy(&token.stderr));
        let token = String::from_utf8(token.stdout).unwrap();
        send(anonymous_with(&basic("AWS", token.trim())).get(srv.url("/v2/"))).await.expect_status(200);
        assert!(srv.stop().success());
    }
}

fn anonymous_with(authorization: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .default_headers([(reqwest::header::AUTHORIZATION, authorization.parse().unwrap())].into_iter().collect())
        .build()
        .unwrap()
}

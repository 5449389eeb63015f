//! What the integration tests run against: Debian's `docker-registry` (with and without
//! htpasswd), `berth serve`, a small Bearer token service in front of either, and the content
//! of a multi-arch image built here.

#![allow(dead_code)] // each test binary uses a different subset

pub mod image;
pub mod token_server;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_remote::{Client, ClientConfig, Credentials, Endpoint, Remote};
use berth_spec::RepositoryName;
use bytes::Bytes;
use futures::Stream;

pub const DOCKER_REGISTRY: &str = "/usr/bin/docker-registry";

/// Tests build reqwest clients of their own (the token service's proxy); the crate under test
/// does not need a process-wide TLS provider, reqwest's builder does.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub fn name(text: &str) -> RepositoryName {
    text.parse().expect("valid repository name")
}

/// A client with small upload chunks, so multi-MiB blobs go through the chunked path.
pub fn client_with_chunks(chunk: u64) -> Client {
    Client::new(ClientConfig { upload_chunk_size: chunk, ..ClientConfig::default() }).expect("client")
}

pub fn remote(url: &str, credentials: Credentials) -> Remote {
    client_with_chunks(1024 * 1024).remote(Endpoint::parse(url).expect("endpoint"), credentials)
}

/// `bytes` as a stream of `piece`-sized pieces, as a file or object store would yield them.
pub fn stream_of(bytes: Bytes, piece: usize) -> impl Stream<Item = Result<Bytes, std::convert::Infallible>> + Send {
    let pieces: Vec<_> =
        (0..bytes.len()).step_by(piece.max(1)).map(|i| Ok(bytes.slice(i..(i + piece).min(bytes.len())))).collect();
    futures::stream::iter(pieces)
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn wait_for_port(port: u16, child: &mut Child, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited ({status}): {}", std::fs::read_to_string(log).unwrap_or_default());
        }
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A child process killed when dropped, with its scratch directory.
pub struct Process {
    child: Child,
    pub dir: tempfile::TempDir,
    /// `http://127.0.0.1:<port>`
    pub url: String,
    pub port: u16,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `true` if `tool` exists; else prints the `SKIPPED:` line the test reports with.
pub fn have(tool: &str, test: &str) -> bool {
    let found = Path::new(tool).exists() || which(tool).is_some();
    if !found {
        println!("SKIPPED: {test}: {tool} is not installed (scripts/lib.sh install_test_tools installs it)");
    }
    found
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|dir| Path::new(dir).join(tool)).find(|p| p.is_file())
}

/// Debian's `docker-registry` on a loopback port, with htpasswd Basic auth for `user` if given.
/// `None` (after a `SKIPPED:` line) when the registry or `htpasswd` is not installed.
pub fn docker_registry(user: Option<(&str, &str)>, test: &str) -> Option<Process> {
    if !have(DOCKER_REGISTRY, test) || (user.is_some() && !have("htpasswd", test)) {
        return None;
    }
    let dir = tempfile::Builder::new().prefix("berth-remote-registry-").tempdir().expect("temp dir");
    let port = free_port();
    let auth = match user {
        Some((username, password)) => {
            let htpasswd = dir.path().join("htpasswd");
            let output = Command::new("htpasswd").args(["-Bbn", username, password]).output().expect("run htpasswd");
            assert!(output.status.success(), "htpasswd failed");
            std::fs::write(&htpasswd, output.stdout).expect("write htpasswd");
            format!("auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n", htpasswd.display())
        }
        None => String::new(),
    };
    let config = format!(
        "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{auth}",
        dir.path().join("data").display()
    );
    let config_path = dir.path().join("config.yml");
    std::fs::write(&config_path, config).expect("write config");
    let log = dir.path().join("registry.log");
    let mut child = Command::new(DOCKER_REGISTRY)
        .arg("serve")
        .arg(&config_path)
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::fs::File::create(&log).expect("log")))
        .stderr(Stdio::from(std::fs::File::create(dir.path().join("registry.err")).expect("log")))
        .spawn()
        .expect("spawn docker-registry");
    wait_for_port(port, &mut child, "docker-registry", &dir.path().join("registry.err"));
    Some(Process { child, dir, url: format!("http://127.0.0.1:{port}"), port })
}

/// The `berth` binary of this workspace: `BERTH_BIN`, else the target directory of this test
/// binary's profile, else the release one (`scripts/test` builds it), else the debug one
/// (`cargo test --workspace` builds it for berth's own tests).
pub fn berth_binary(test: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("BERTH_BIN") {
        return Some(PathBuf::from(path));
    }
    let exe = std::env::current_exe().ok()?;
    let profile_dir = exe.parent()?.parent()?.to_path_buf();
    let target_dir = profile_dir.parent()?.to_path_buf();
    let candidates = [profile_dir.join("berth"), target_dir.join("release/berth"), target_dir.join("debug/berth")];
    let found = candidates.into_iter().find(|p| p.is_file());
    if found.is_none() {
        println!("SKIPPED: {test}: no berth binary in {} (cargo build --release -p berth)", target_dir.display());
    }
    found
}

pub const ROOT_KEY_ID: &str = "AKIAREMOTETEST000001";
pub const ROOT_SECRET: &str = "remote-test-secret-0123456789abcdefghijkl";

/// `berth serve` on a loopback port with known root keys; `extra` are more flags.
pub fn berth(binary: &Path, extra: &[&str]) -> Process {
    let dir = tempfile::Builder::new().prefix("berth-remote-berth-").tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let log = dir.path().join("berth.log");
    let mut child = Command::new(binary)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .args(extra)
        .env("BERTH_ROOT_ACCESS_KEY_ID", ROOT_KEY_ID)
        .env("BERTH_ROOT_SECRET_ACCESS_KEY", ROOT_SECRET)
        .env_remove("BERTH_LISTEN")
        .env_remove("BERTH_DATA_DIR")
        .env_remove("BERTH_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(std::fs::File::create(&log).expect("log")))
        .spawn()
        .expect("spawn berth");
    let stdout = child.stdout.take().expect("stdout");
    let (ready, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("berth listening on ") {
                let _ = ready.send(url.trim().to_owned());
            }
        }
    });
    let url = ready_rx
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| panic!("berth did not start: {}", std::fs::read_to_string(&log).unwrap_or_default()));
    let port = url.rsplit(':').next().and_then(|p| p.trim_end_matches('/').parse().ok()).expect("port in ready line");
    Process { child, dir, url: format!("http://127.0.0.1:{port}"), port }
}

/// `berth token` for root: the `AWS` password of a docker login.
pub fn berth_token(binary: &Path, server: &Process) -> String {
    let output = Command::new(binary)
        .args(["token", "--data-dir"])
        .arg(server.dir.path().join("data"))
        .env("BERTH_ROOT_ACCESS_KEY_ID", ROOT_KEY_ID)
        .env("BERTH_ROOT_SECRET_ACCESS_KEY", ROOT_SECRET)
        .output()
        .expect("run berth token");
    assert!(output.status.success(), "berth token: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("utf-8").trim().to_owned()
}

/// The process's peak resident memory so far (Linux `VmHWM`), in bytes.
pub fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM");
    let kib: u64 = line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("VmHWM value");
    kib * 1024
}

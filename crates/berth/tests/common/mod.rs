//! Harness for the integration tests: runs the real `berth` binary on a loopback port with a
//! private data directory and drives it over HTTP with plain reqwest.
//!
//! [`Server::start`] and friends run with `--no-auth`, so the registry tests need no credentials;
//! [`Launch`] starts it the way production does (auth on, optional TLS, extra flags and env).
//!
//! Every response that goes through [`send`] is checked for a 5xx: bad input must never make the
//! server fail, so any test that triggers one fails right there, naming the request.

#![allow(dead_code)] // each test binary uses a different subset of the helpers

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder, StatusCode, Url};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256, Sha512};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ND: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const DOCKER_FOREIGN_LAYER: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
pub const OCTET_STREAM: &str = "application/octet-stream";

const READY_PREFIX: &str = "berth listening on ";
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Variables `berth serve` reads that must not leak in from the environment running the tests.
const SERVE_ENV: &[&str] = &[
    "BERTH_LISTEN",
    "BERTH_DATA_DIR",
    "BERTH_CONFIG",
    "BERTH_ROOT_ACCESS_KEY_ID",
    "BERTH_ROOT_SECRET_ACCESS_KEY",
    "BERTH_ANONYMOUS_PULL",
    "BERTH_TOKEN_LIFETIME_SECS",
    "BERTH_TLS_CERT",
    "BERTH_TLS_KEY",
    "BERTH_MASTER_KEY_FILE",
];

/// A running `berth serve` with its own temporary data directory. Dropping it kills the process.
pub struct Server {
    child: Option<Child>,
    /// Holds `data/` and `server.log`; removed when the server is dropped.
    root: tempfile::TempDir,
    data_dir: PathBuf,
    launch: Launch,
    base: String,
    /// `https://127.0.0.1:<port>` when the server serves TLS.
    https_base: Option<String>,
    /// Everything the current process printed on stdout so far.
    stdout: Arc<Mutex<Vec<String>>>,
    /// Authenticated as root (a registry token) when auth is on; plain otherwise.
    pub client: reqwest::Client,
}

/// How to start `berth serve` with authentication on (the default): listen address, extra
/// flags and environment. `Server::start*` are the `--no-auth` shorthands.
#[derive(Clone, Debug)]
pub struct Launch {
    listen: String,
    auth: bool,
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// Run under `prlimit --nofile=N:N`.
    open_files: Option<u64>,
}

impl Default for Launch {
    fn default() -> Self {
        Launch { listen: "127.0.0.1:0".into(), auth: true, args: Vec::new(), env: Vec::new(), open_files: None }
    }
}

impl Launch {
    pub fn new() -> Launch {
        Launch::default()
    }

    pub fn listen(mut self, addr: &str) -> Launch {
        self.listen = addr.into();
        self
    }

    pub fn args(mut self, args: &[&str]) -> Launch {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    pub fn env(mut self, name: &str, value: &str) -> Launch {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Authentication off (`--no-auth`), as the `Server::start*` shorthands run.
    pub fn no_auth(mut self) -> Launch {
        self.auth = false;
        self
    }

    /// At most `files` open files (soft and hard limit), as with a low `ulimit -n`.
    pub fn open_file_limit(mut self, files: u64) -> Launch {
        self.open_files = Some(files);
        self
    }

    /// Root keys from the environment, so the test knows them.
    pub fn root_keys(self, access_key_id: &str, secret: &str) -> Launch {
        self.env("BERTH_ROOT_ACCESS_KEY_ID", access_key_id).env("BERTH_ROOT_SECRET_ACCESS_KEY", secret)
    }

    fn serves_tls(&self) -> bool {
        self.args.iter().any(|a| a == "--tls-self-signed" || a == "--tls-cert")
    }

    fn serves_plain_http(&self) -> bool {
        let loopback = self.listen.parse::<SocketAddr>().is_ok_and(|a| a.ip().is_loopback());
        loopback || self.args.iter().any(|a| a == "--insecure-http")
    }

    fn command(&self, data_dir: &Path) -> Command {
        let mut command = match self.open_files {
            // prlimit sets the limit and execs berth: the child is still berth itself.
            Some(files) => {
                let mut command = Command::new("prlimit");
                command.arg(format!("--nofile={files}:{files}")).arg(env!("CARGO_BIN_EXE_berth"));
                command
            }
            None => Command::new(env!("CARGO_BIN_EXE_berth")),
        };
        command.arg("serve").args(["--listen", &self.listen, "--data-dir"]).arg(data_dir);
        if !self.auth {
            command.arg("--no-auth");
        }
        command.args(&self.args);
        for name in SERVE_ENV {
            command.env_remove(name);
        }
        command.envs(self.env.iter().map(|(k, v)| (k, v))).stdin(Stdio::null());
        command
    }

    /// Starts the server on a fresh data directory and waits until it listens. With auth on,
    /// `client` carries a root registry token from `berth token`.
    pub fn start(self) -> Server {
        let root = tempfile::Builder::new().prefix("berth-test-").tempdir().expect("temp dir");
        let data_dir = root.path().join("data");
        std::fs::create_dir_all(&data_dir).expect("create data dir");
        Server::start_in(root, data_dir, self)
    }

    /// Starts the server on `data_dir` expecting it to refuse to start: returns its output
    /// after it exited, or fails the test if it is still running after a few seconds.
    pub fn start_refused(self, data_dir: &Path) -> Output {
        let mut child =
            self.command(data_dir).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn berth");
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait().expect("wait berth").is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let output = child.wait_with_output().expect("reap berth");
                panic!(
                    "berth serve {self:?} kept running instead of refusing to start; stdout:\n{}\nstderr:\n{}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait_with_output().expect("collect berth output")
    }
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    /// Starts (auth off) with extra `berth serve` arguments appended after the standard ones.
    pub fn start_with(args: &[&str]) -> Server {
        Launch { auth: false, ..Launch::default() }.args(args).start()
    }

    /// Starts on a data directory path that does not exist yet (the server must create it).
    pub fn start_with_missing_data_dir() -> Server {
        let root = tempfile::Builder::new().prefix("berth-test-").tempdir().expect("temp dir");
        let data_dir = root.path().join("not").join("yet").join("there");
        Server::start_in(root, data_dir, Launch { auth: false, ..Launch::default() })
    }

    fn start_in(root: tempfile::TempDir, data_dir: PathBuf, launch: Launch) -> Server {
        let mut server = Server {
            child: None,
            root,
            data_dir,
            launch,
            base: String::new(),
            https_base: None,
            stdout: Arc::default(),
            client: http_client(None),
        };
        server.spawn();
        server.log_in_as_root();
        server
    }

    /// With auth on, points `client` at a fresh root registry token from `berth token`.
    fn log_in_as_root(&mut self) {
        if self.launch.auth {
            let token = self.cli(&["token"]);
            self.client = http_client(Some(&basic("AWS", token.trim())));
        }
    }

    /// Graceful stop, then a start on the same data directory with another launch (flags, env).
    pub fn restart_with(&mut self, launch: Launch) {
        let status = self.stop();
        assert!(status.success(), "berth exited with {status} on SIGTERM; log:\n{}", self.log_tail());
        self.launch = launch;
        self.spawn();
        self.log_in_as_root();
    }

    /// Runs `berth <args> --data-dir <this server's data dir>` as a separate process (as an
    /// operator would while the server runs), asserts it succeeded and returns its stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let output = self.cli_output(args);
        assert!(
            output.status.success(),
            "berth {args:?} failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("berth printed UTF-8")
    }

    /// Like [`cli`](Self::cli) without the success check.
    pub fn cli_output(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(args)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .env_remove("BERTH_DATA_DIR")
            .stdin(Stdio::null())
            .output()
            .expect("run berth")
    }

    /// What the server printed on stdout since it last started.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    /// `https://127.0.0.1:<port>` when the server serves TLS.
    pub fn https_base(&self) -> &str {
        self.https_base.as_deref().expect("the server does not serve TLS")
    }

    /// The bound port (the same for plain HTTP and TLS).
    pub fn port(&self) -> u16 {
        Url::parse(&self.base).expect("base url").port().expect("base url has a port")
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    fn log_path(&self) -> PathBuf {
        self.root.path().join("server.log")
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path()).expect("open server log");
        let mut child = self
            .launch
            .command(&self.data_dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn berth");
        let stdout = child.stdout.take().expect("child stdout");
        let (ready_tx, ready_rx) = mpsc::channel::<String>();
        let printed = Arc::new(Mutex::new(Vec::new()));
        self.stdout = printed.clone();
        // Keeps draining stdout after the ready lines so the child never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                printed.lock().unwrap().push(line.clone());
                if let Some(url) = line.strip_prefix(READY_PREFIX) {
                    let _ = ready_tx.send(url.trim().to_string());
                }
            }
        });
        // One ready line per scheme served; wait for all of them.
        let (want_http, want_https) = (self.launch.serves_plain_http(), self.launch.serves_tls());
        let (mut http, mut https) = (None, None);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if (http.is_some() || !want_http) && (https.is_some() || !want_https) {
                break;
            }
            match ready_rx.recv_timeout(Duration::from_millis(100)) {
                Ok(url) if url.starts_with("http://") => http = Some(loopback_url(&url)),
                Ok(url) if url.starts_with("https://") => https = Some(loopback_url(&url)),
                Ok(url) => panic!("unexpected ready line url {url:?}"),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = child.wait().ok();
                    panic!("berth exited before it was ready ({status:?}); log:\n{}", self.log_tail());
                }
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("berth exited before it was ready ({status}); log:\n{}", self.log_tail());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("berth did not print its ready line within {READY_TIMEOUT:?}; log:\n{}", self.log_tail());
            }
        }
        let base = http.or(https.clone()).expect("berth serves at least one scheme");
        assert!(base.contains("://127.0.0.1:"), "unexpected ready line url {base:?}");
        self.base = base;
        self.https_base = https;
        self.child = Some(child);
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server not running").id()
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// `path` may be a path (`/v2/...`) or an absolute URL, e.g. a `Location` header value.
    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{}", self.base, path)
        }
    }

    /// Resolves a `Location` header value, relative or absolute, against this server.
    pub fn resolve(&self, location: &str) -> Url {
        Url::parse(&self.base)
            .expect("base url")
            .join(location)
            .unwrap_or_else(|e| panic!("unparsable Location {location:?}: {e}"))
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.url(path))
    }
    pub fn get(&self, path: &str) -> RequestBuilder {
        self.request(Method::GET, path)
    }
    pub fn head(&self, path: &str) -> RequestBuilder {
        self.request(Method::HEAD, path)
    }
    pub fn post(&self, path: &str) -> RequestBuilder {
        self.request(Method::POST, path)
    }
    pub fn put(&self, path: &str) -> RequestBuilder {
        self.request(Method::PUT, path)
    }
    pub fn patch(&self, path: &str) -> RequestBuilder {
        self.request(Method::PATCH, path)
    }
    pub fn delete(&self, path: &str) -> RequestBuilder {
        self.request(Method::DELETE, path)
    }

    /// SIGKILL, as a crash: no shutdown code runs.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill -9 berth");
            child.wait().expect("reap berth");
        }
    }

    /// SIGKILL through `&self`, so it works while pushers share the server; the process is
    /// reaped by the next [`start_again`] (or drop).
    pub fn crash(&self) {
        let pid = self.pid().to_string();
        let status = Command::new("kill").args(["-KILL", &pid]).status().expect("run kill -KILL");
        assert!(status.success(), "kill -KILL {pid} failed");
    }

    /// SIGTERM and wait for a clean exit; returns the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("server not running");
        let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("run kill -TERM");
        assert!(status.success(), "kill -TERM failed");
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().expect("wait berth") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("berth did not exit within {STOP_TIMEOUT:?} of SIGTERM; log:\n{}", self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts the server again on the same data directory (after [`kill9`] or [`stop`]).
    /// The port changes.
    pub fn start_again(&mut self) {
        if let Some(mut old) = self.child.take() {
            let _ = old.kill();
            let _ = old.wait();
        }
        self.spawn();
    }

    /// Starts a stopped server again on the same data directory with another launch; `client`
    /// is left as it was.
    pub fn start_again_with(&mut self, launch: Launch) {
        assert!(self.child.is_none(), "the server is still running");
        self.launch = launch;
        self.spawn();
    }

    /// Graceful stop (asserting a clean exit) followed by a start on the same data directory.
    pub fn restart(&mut self) {
        let status = self.stop();
        assert!(status.success(), "berth exited with {status} on SIGTERM; log:\n{}", self.log_tail());
        self.spawn();
    }

    /// Peak resident set size of the server process in KiB (`VmHWM` in /proc/<pid>/status).
    pub fn vm_hwm_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("read /proc/<pid>/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/<pid>/status")
    }

    /// The whole server log (stderr) so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn log_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(self.log_path()) {
            let _ = f.read_to_string(&mut text);
        }
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- berth server log (tail) ----\n{}\n---- end ----", self.log_tail());
        }
    }
}

/// The ready line's URL without a trailing slash, with "all interfaces" replaced by the loopback
/// address clients on this machine use.
fn loopback_url(url: &str) -> String {
    let mut url = Url::parse(url).unwrap_or_else(|e| panic!("unparsable ready line url {url:?}: {e}"));
    if url.host_str() == Some("0.0.0.0") {
        url.set_host(Some("127.0.0.1")).expect("loopback host");
    }
    url.as_str().trim_end_matches('/').to_string()
}

/// A reqwest client (no proxy) that sends `authorization` as the `Authorization` header of
/// every request, or none.
pub fn http_client(authorization: Option<&str>) -> reqwest::Client {
    let mut headers = HeaderMap::new();
    if let Some(value) = authorization {
        let mut value = reqwest::header::HeaderValue::from_str(value).expect("valid header value");
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(32)
        .default_headers(headers)
        .build()
        .expect("reqwest client")
}

/// An HTTP Basic `Authorization` value.
pub fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", base64(format!("{user}:{password}").as_bytes()))
}

/// Standard base64 with padding (RFC 4648), for Basic credentials.
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let bits = chunk.iter().enumerate().fold(0u32, |acc, (i, &b)| acc | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(bits >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A fully read response.
#[derive(Debug)]
pub struct Resp {
    pub method: Method,
    pub url: String,
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn status(&self) -> u16 {
        self.status.as_u16()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().expect("header is not ascii"))
    }

    /// The header value, panicking with the whole response when absent.
    pub fn must_header(&self, name: &str) -> &str {
        self.header(name)
            .unwrap_or_else(|| panic!("{} {}: no {name} header in\n{}", self.method, self.url, self.describe()))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{} {}: body is not JSON ({e}):\n{}", self.method, self.url, self.describe()))
    }

    pub fn describe(&self) -> String {
        let mut s = format!("{} {} -> {}\n", self.method, self.url, self.status);
        for (k, v) in &self.headers {
            s.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or("<binary>")));
        }
        let body = self.text();
        let body: String = body.chars().take(2000).collect();
        s.push_str(&body);
        s
    }

    #[track_caller]
    pub fn expect_status(&self, status: u16) -> &Self {
        assert_eq!(self.status(), status, "unexpected status:\n{}", self.describe());
        self
    }

    #[track_caller]
    pub fn expect_4xx(&self) -> &Self {
        assert!(self.status.is_client_error(), "expected a 4xx:\n{}", self.describe());
        self
    }

    /// The `code`s of a spec error body `{"errors":[{"code":..,"message":..}]}`.
    pub fn error_codes(&self) -> Vec<String> {
        let v: Value = match serde_json::from_slice(&self.body) {
            Ok(v) => v,
            Err(_) => return Vec::new(),
        };
        v["errors"]
            .as_array()
            .map(|errs| errs.iter().filter_map(|e| e["code"].as_str().map(String::from)).collect())
            .unwrap_or_default()
    }

    /// Asserts the status and that the body is a spec error document carrying `code`.
    #[track_caller]
    pub fn expect_error(&self, status: u16, code: &str) -> &Self {
        self.expect_status(status);
        self.expect_error_code_in(&[code])
    }

    /// Asserts the body is a spec error document whose codes include one of `codes`.
    #[track_caller]
    pub fn expect_error_code_in(&self, codes: &[&str]) -> &Self {
        let found = self.error_codes();
        assert!(
            found.iter().any(|c| codes.contains(&c.as_str())),
            "expected an error code in {codes:?}, got {found:?}:\n{}",
            self.describe()
        );
        let v = self.json();
        for e in v["errors"].as_array().unwrap() {
            assert!(e["message"].is_string() || e["message"].is_null(), "error message must be a string: {e}");
        }
        self
    }

    /// The path (and query) of the `Location` header resolved against `srv`.
    pub fn location_path(&self, srv: &Server) -> String {
        let url = srv.resolve(self.must_header("location"));
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        }
    }

    /// The `Location` header resolved to an absolute URL against `srv`.
    pub fn location(&self, srv: &Server) -> Url {
        srv.resolve(self.must_header("location"))
    }
}

/// Sends a request, reads the whole body and fails the test on any 5xx.
pub async fn send(rb: RequestBuilder) -> Resp {
    match try_send(rb).await {
        Ok(r) => r,
        Err(e) => panic!("request failed: {e:?}"),
    }
}

/// Like [`send`] but returns transport errors (for requests that race a crash); a 5xx response
/// still fails the test.
pub async fn try_send(rb: RequestBuilder) -> Result<Resp, reqwest::Error> {
    let (client, req) = rb.build_split();
    let req = req?;
    let method = req.method().clone();
    let url = req.url().to_string();
    let resp = client.execute(req).await?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.bytes().await?.to_vec();
    let resp = Resp { method, url, status, headers, body };
    assert!(!status.is_server_error(), "server error:\n{}", resp.describe());
    Ok(resp)
}

/// Sends a raw HTTP/1.1 request line (no client-side path normalisation, unlike `Url`) and
/// returns the response status code.
pub async fn raw_status(srv: &Server, method: &str, target: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = srv.base().trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.expect("connect");
    let req = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.expect("write request");
    let mut buf = Vec::new();
    let _ = stream.read_to_end(&mut buf).await;
    let head = String::from_utf8_lossy(&buf);
    let status_line = head.lines().next().unwrap_or_default().to_string();
    let code: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("{method} {target}: no HTTP status in response {head:?}"));
    assert!(code < 500, "{method} {target}: server error\n{head}");
    code
}

/// The records of an audit log (`--audit-log`) written so far. A line the writer is still
/// appending (a record that crosses a page can be seen half-written) is left for the next read,
/// as `tail -f` would.
pub fn audit_records(path: &Path) -> Vec<Value> {
    let bytes = std::fs::read(path).unwrap_or_default();
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(&[][..], |end| &bytes[..end]);
    complete
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| serde_json::from_slice(line).expect("each audit line is one JSON object"))
        .collect()
}

/// Waits until the audit log's writer thread has written a record `wanted` matches (it writes
/// after the answer went out); returns every record written by then. Fails after 10 s.
pub async fn audit_until(path: &Path, wanted: impl Fn(&Value) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let records = audit_records(path);
        if records.iter().any(&wanted) {
            return records;
        }
        assert!(Instant::now() < deadline, "the awaited audit record never came: {records:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

pub fn sha512_digest(data: &[u8]) -> String {
    format!("sha512:{}", hex::encode(Sha512::digest(data)))
}

/// Pseudo-random bytes, different on every call in the process (xorshift seeded from a counter
/// and the clock); deterministic content is not needed, only distinct blobs.
pub fn random_bytes(len: usize) -> Vec<u8> {
    static COUNTER: AtomicU64 = AtomicU64::new(1);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
    let mut state = nanos
        ^ COUNTER.fetch_add(1, Ordering::Relaxed).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (std::process::id() as u64) << 32;
    if state == 0 {
        state = 1;
    }
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A random lowercase token usable in tags and repository names.
pub fn random_token() -> String {
    hex::encode(random_bytes(6))
}

/// Appends a query parameter, keeping any query the URL already has (upload Locations may
/// carry state in their query).
pub fn with_query(url: &Url, key: &str, value: &str) -> Url {
    let mut url = url.clone();
    url.query_pairs_mut().append_pair(key, value);
    url
}

/// A descriptor for `data` with its sha256 digest.
pub fn descriptor(media_type: &str, data: &[u8]) -> Value {
    json!({"mediaType": media_type, "digest": sha256_digest(data), "size": data.len()})
}

/// A small image config (OCI and Docker share the shape) made unique by `nonce`.
pub fn config_json(arch: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "architecture": arch,
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "rootfs": {"type": "layers", "diff_ids": [sha256_digest(&random_bytes(16))]},
        "config": {"Env": [format!("NONCE={}", random_token())]}
    }))
    .unwrap()
}

pub fn oci_manifest(config: &Value, layers: &[Value]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config,
        "layers": layers,
    }))
    .unwrap()
}

pub fn index_json(media_type: &str, manifests: &[Value]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": manifests,
    }))
    .unwrap()
}

/// A descriptor for a manifest entry of an index, with a platform.
pub fn platform_entry(media_type: &str, manifest: &[u8], arch: &str) -> Value {
    let mut d = descriptor(media_type, manifest);
    d["platform"] = json!({"architecture": arch, "os": "linux"});
    d
}

/// POST an upload session: 202 with a `Location` under `/v2/<repo>/blobs/uploads/`.
/// Returns the resolved upload URL.
pub async fn start_upload(srv: &Server, repo: &str) -> Url {
    let r = send(srv.post(&format!("/v2/{repo}/blobs/uploads/"))).await;
    r.expect_status(202);
    let path = r.location_path(srv);
    assert!(
        path.starts_with(&format!("/v2/{repo}/blobs/uploads/")),
        "upload Location {path:?} is not under /v2/{repo}/blobs/uploads/"
    );
    r.location(srv)
}

/// Checks a 201 blob-upload answer: Location `/v2/<repo>/blobs/<digest>` and Docker-Content-Digest.
#[track_caller]
pub fn expect_blob_created(srv: &Server, r: &Resp, repo: &str, digest: &str) {
    r.expect_status(201);
    assert_eq!(r.location_path(srv), format!("/v2/{repo}/blobs/{digest}"), "{}", r.describe());
    assert_eq!(r.header("docker-content-digest"), Some(digest), "{}", r.describe());
}

/// Monolithic push (POST, then PUT `?digest=` with the whole body). Returns the sha256 digest.
pub async fn push_blob(srv: &Server, repo: &str, data: &[u8]) -> String {
    let digest = sha256_digest(data);
    push_blob_as(srv, repo, data, &digest).await;
    digest
}

/// Monolithic push finished with the given digest (any algorithm).
pub async fn push_blob_as(srv: &Server, repo: &str, data: &[u8], digest: &str) {
    let upload = start_upload(srv, repo).await;
    let r = send(
        srv.client.put(with_query(&upload, "digest", digest)).header("content-type", OCTET_STREAM).body(data.to_vec()),
    )
    .await;
    expect_blob_created(srv, &r, repo, digest);
}

/// GET a blob, asserting 200 and that the body is `expected`.
pub async fn expect_blob(srv: &Server, repo: &str, digest: &str, expected: &[u8]) {
    let r = send(srv.get(&format!("/v2/{repo}/blobs/{digest}"))).await;
    r.expect_status(200);
    assert_eq!(r.body.len(), expected.len(), "blob {digest} length");
    assert!(r.body == expected, "blob {digest} content differs");
    assert_eq!(r.header("docker-content-digest"), Some(digest));
}

pub async fn put_manifest(srv: &Server, repo: &str, reference: &str, media_type: &str, body: &[u8]) -> Resp {
    send(srv.put(&format!("/v2/{repo}/manifests/{reference}")).header("content-type", media_type).body(body.to_vec()))
        .await
}

/// PUT a manifest expecting 201 with the right Docker-Content-Digest and a Location that serves
/// the same bytes. Returns the sha256 digest.
pub async fn push_manifest(srv: &Server, repo: &str, reference: &str, media_type: &str, body: &[u8]) -> String {
    let digest = if reference.starts_with("sha512:") { sha512_digest(body) } else { sha256_digest(body) };
    let r = put_manifest(srv, repo, reference, media_type, body).await;
    r.expect_status(201);
    assert_eq!(r.header("docker-content-digest"), Some(digest.as_str()), "{}", r.describe());
    let loc = r.location(srv);
    let got = send(srv.client.get(loc).header("accept", ALL_MANIFEST_TYPES)).await;
    got.expect_status(200);
    assert!(got.body == body, "manifest Location does not serve the pushed bytes");
    digest
}

pub const ALL_MANIFEST_TYPES: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// GET (and HEAD) a manifest and assert the exact bytes and headers.
pub async fn expect_manifest(srv: &Server, repo: &str, reference: &str, media_type: &str, body: &[u8], digest: &str) {
    let path = format!("/v2/{repo}/manifests/{reference}");
    let r = send(srv.get(&path).header("accept", ALL_MANIFEST_TYPES)).await;
    r.expect_status(200);
    assert!(r.body == body, "GET {path}: bytes differ:\n{}", r.describe());
    assert_eq!(r.header("content-type"), Some(media_type), "GET {path}");
    assert_eq!(r.header("content-length"), Some(body.len().to_string().as_str()), "GET {path}");
    assert_eq!(r.header("docker-content-digest"), Some(digest), "GET {path}");
    let h = send(srv.head(&path).header("accept", ALL_MANIFEST_TYPES)).await;
    h.expect_status(200);
    assert!(h.body.is_empty(), "HEAD {path} returned a body");
    assert_eq!(h.header("content-type"), Some(media_type), "HEAD {path}");
    assert_eq!(h.header("content-length"), Some(body.len().to_string().as_str()), "HEAD {path}");
    assert_eq!(h.header("docker-content-digest"), Some(digest), "HEAD {path}");
}

/// Pushes an amd64 and an arm64 image by digest and an OCI index of both under `tag`: the two
/// images, the index's bytes and its digest.
pub async fn push_two_platform_index(srv: &Server, repo: &str, tag: &str) -> (Image, Image, Vec<u8>, String) {
    let amd = push_image_arch(srv, repo, None, "amd64").await;
    let arm = push_image_arch(srv, repo, None, "arm64").await;
    let index = index_json(
        OCI_INDEX,
        &[platform_entry(OCI_MANIFEST, &amd.manifest, "amd64"), platform_entry(OCI_MANIFEST, &arm.manifest, "arm64")],
    );
    let digest = push_manifest(srv, repo, tag, OCI_INDEX, &index).await;
    (amd, arm, index, digest)
}

/// An image pushed to a repository: its blobs and manifest.
pub struct Image {
    pub config: Vec<u8>,
    pub layers: Vec<Vec<u8>>,
    pub manifest: Vec<u8>,
    pub digest: String,
}

impl Image {
    pub fn descriptor(&self) -> Value {
        descriptor(OCI_MANIFEST, &self.manifest)
    }
}

/// Pushes a one-layer OCI image (config + layer blobs, then the manifest under `reference`,
/// a tag or its digest when `None`).
pub async fn push_image(srv: &Server, repo: &str, reference: Option<&str>) -> Image {
    push_image_arch(srv, repo, reference, "amd64").await
}

pub async fn push_image_arch(srv: &Server, repo: &str, reference: Option<&str>, arch: &str) -> Image {
    let config = config_json(arch);
    let layer = random_bytes(1024);
    push_blob(srv, repo, &config).await;
    push_blob(srv, repo, &layer).await;
    let manifest = oci_manifest(&descriptor(OCI_CONFIG, &config), &[descriptor(OCI_LAYER, &layer)]);
    let digest = sha256_digest(&manifest);
    let reference = reference.unwrap_or(&digest).to_string();
    push_manifest(srv, repo, &reference, OCI_MANIFEST, &manifest).await;
    Image { config, layers: vec![layer], manifest, digest }
}

/// Writes `len` generated bytes into a FIFO from a thread and returns the FIFO opened for
/// reading (a streamed body of unknown length: reqwest sends it with chunked encoding) plus the
/// thread that yields the data's sha256 digest.
pub async fn generated_stream(dir: &Path, len: u64, seed: u64) -> (tokio::fs::File, std::thread::JoinHandle<String>) {
    let fifo = dir.join(format!("stream-{seed}-{}", random_token()));
    let status = Command::new("mkfifo").arg(&fifo).status().expect("run mkfifo");
    assert!(status.success(), "mkfifo failed");
    let writer_path = fifo.clone();
    let writer = std::thread::spawn(move || {
        let mut out = std::fs::OpenOptions::new().write(true).open(&writer_path).expect("open fifo for writing");
        let mut hasher = Sha256::new();
        let mut generator = Generator::new(seed);
        let mut buf = vec![0u8; 1 << 20];
        let mut left = len;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            generator.fill(&mut buf[..n]);
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n]).expect("write fifo");
            left -= n as u64;
        }
        format!("sha256:{}", hex::encode(hasher.finalize()))
    });
    let file = tokio::fs::File::open(&fifo).await.expect("open fifo for reading");
    (file, writer)
}

/// A body of unknown length (sent with `Transfer-Encoding: chunked`) carrying `data`.
pub async fn chunked_body(dir: &Path, data: &[u8]) -> reqwest::Body {
    let path = dir.join(format!("body-{}", random_token()));
    std::fs::write(&path, data).expect("write body file");
    let file = tokio::fs::File::open(&path).await.expect("open body file");
    reqwest::Body::from(file)
}

/// Fast deterministic byte generator (xorshift64*) for large streamed bodies.
pub struct Generator(u64);

impl Generator {
    pub fn new(seed: u64) -> Generator {
        Generator(seed | 1)
    }
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let v = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// One ECR JSON 1.1 call, SigV4-signed (service `ecr`, region us-east-1) as the AWS SDKs do.
pub async fn ecr_call(srv: &Server, access_key_id: &str, secret: &str, operation: &str, body: &str) -> Resp {
    send(ecr_request(srv, access_key_id, secret, operation, body, true)).await
}

/// An ECR call for `operation`, SigV4-signed by the given key; with `sign_target` false the
/// signature leaves `X-Amz-Target` out, as in a captured request someone retargets.
pub fn ecr_request(
    srv: &Server,
    access_key_id: &str,
    secret: &str,
    operation: &str,
    body: &str,
    sign_target: bool,
) -> RequestBuilder {
    let host = srv.base().trim_start_matches("http://").to_string();
    let amz_date = amz_date(SystemTime::now());
    let date = &amz_date[..8];
    let target = format!("AmazonEC2ContainerRegistry_V20150921.{operation}");
    let content_type = "application/x-amz-json-1.1";
    let (signed_headers, target_line) = if sign_target {
        ("content-type;host;x-amz-date;x-amz-target", format!("x-amz-target:{target}\n"))
    } else {
        ("content-type;host;x-amz-date", String::new())
    };
    let canonical = format!(
        "POST\n/\n\ncontent-type:{content_type}\nhost:{host}\nx-amz-date:{amz_date}\n{target_line}\n{signed_headers}\n{}",
        hex::encode(Sha256::digest(body.as_bytes()))
    );
    let scope = format!("{date}/us-east-1/ecr/aws4_request");
    let string_to_sign =
        format!("AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}", hex::encode(Sha256::digest(canonical.as_bytes())));
    let mut key = hmac_sha256(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    for part in ["us-east-1", "ecr", "aws4_request"] {
        key = hmac_sha256(&key, part.as_bytes());
    }
    let signature = hex::encode(hmac_sha256(&key, string_to_sign.as_bytes()));
    let authorization = format!(
        "AWS4-HMAC-SHA256 Credential={access_key_id}/{scope}, SignedHeaders={signed_headers}, Signature={signature}"
    );
    http_client(None)
        .post(srv.url("/"))
        .header("content-type", content_type)
        .header("x-amz-date", &amz_date)
        .header("x-amz-target", target)
        .header("authorization", authorization)
        .body(body.to_string())
}

/// HMAC-SHA256 (RFC 2104), small enough to spell out rather than add a dev-dependency.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new().chain_update(pad(0x36)).chain_update(message).finalize();
    Sha256::new().chain_update(pad(0x5c)).chain_update(inner).finalize().to_vec()
}

/// `YYYYMMDD'T'HHMMSS'Z'` in UTC (civil-from-days, Howard Hinnant's algorithm).
pub fn amz_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

//! The registries under test: started here from a binary, or already running at a URL.

use std::fs::File;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use hyper::Method;

use crate::client::Client;
use crate::payload::Body;

/// What `--a` / `--b` name.
#[derive(Clone, Debug)]
pub enum Spec {
    /// Berth without authentication (`--no-auth`): the data plane's own cost.
    Berth,
    /// Berth with every request signed in as the root user (HTTP Basic with the root keys).
    BerthRoot,
    /// Berth with every request signed in as a user whose own least-privilege policy allows the
    /// bench's repositories: the cost of evaluating identity policies on each request.
    BerthUser,
    DockerRegistry,
    /// `http://host:port` of a registry someone else runs.
    Url(String),
}

impl FromStr for Spec {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        match value {
            "berth" => Ok(Spec::Berth),
            "berth-root" => Ok(Spec::BerthRoot),
            "berth-user" => Ok(Spec::BerthUser),
            "docker-registry" => Ok(Spec::DockerRegistry),
            url if url.starts_with("http://") => Ok(Spec::Url(url.trim_end_matches('/').to_owned())),
            url if url.starts_with("https://") => {
                Err("the benchmark client speaks plain HTTP only; give an http:// URL".into())
            }
            other => Err(format!(
                "expected `berth`, `berth-root`, `berth-user`, `docker-registry` or an http:// URL, got {other:?}"
            )),
        }
    }
}

/// The root keys berth is started with for `berth-root` and `berth-user`.
const ROOT_KEY: (&str, &str) = ("AKIABERTHBENCHROOT01", "berth-bench-root-secret-0123456789abcdef");

/// What a CI job that builds and pushes images is given: push and pull on the bench's
/// repositories (created on push) and nothing else, with a Deny the evaluator must also check.
const BENCH_USER_POLICY: &str = r#"{"Version": "2012-10-17", "Statement": [
  {"Sid": "Login", "Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
  {"Sid": "PushPull", "Effect": "Allow", "Action": ["ecr:CreateRepository", "ecr:BatchCheckLayerAvailability",
    "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage", "ecr:DescribeImages", "ecr:ListImages",
    "ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload", "ecr:PutImage"],
   "Resource": "arn:aws:ecr:*:*:repository/bench-*"},
  {"Sid": "NoDeletes", "Effect": "Deny", "Action": ["ecr:BatchDeleteImage", "ecr:DeleteRepository"], "Resource": "*"}]}"#;

pub(crate) fn berth_data_dir(work_dir: &Path, label: &str) -> PathBuf {
    work_dir.join(format!("{}-berth", label.to_lowercase()))
}

/// Adds the bench's user with `berth user add --policy` and returns its keys.
fn add_policy_user(berth: &Path, data: &Path, work_dir: &Path) -> anyhow::Result<(String, String)> {
    let policy = work_dir.join("bench-user-policy.json");
    std::fs::write(&policy, BENCH_USER_POLICY)?;
    let output = Command::new(berth)
        .args(["user", "add", "bench-ci", "--policy"])
        .arg(&policy)
        .arg("--data-dir")
        .arg(data)
        .output()
        .context("running berth user add")?;
    ensure!(output.status.success(), "berth user add failed: {}", String::from_utf8_lossy(&output.stderr).trim());
    let keys: serde_json::Value = serde_json::from_slice(&output.stdout).context("berth user add printed no JSON")?;
    let field = |name: &str| keys[name].as_str().map(str::to_owned).with_context(|| format!("no {name} in {keys}"));
    Ok((field("accessKeyId")?, field("secretAccessKey")?))
}

impl Spec {
    fn berth_name(&self) -> &'static str {
        match self {
            Spec::BerthRoot => "berth (root)",
            Spec::BerthUser => "berth (policy user)",
            _ => "berth",
        }
    }
}

/// Where to find the binaries for registries started by the bench.
pub struct Binaries {
    pub berth: PathBuf,
    pub docker_registry: PathBuf,
}

pub struct Target {
    /// "A" or "B".
    pub label: &'static str,
    /// What runs there, for the report: "docker-registry", "berth" or the URL.
    pub name: String,
    pub version: Option<String>,
    /// `host:port` to connect to.
    pub authority: String,
    /// Access key id and secret every request signs in with (HTTP Basic); none for anonymous.
    pub credentials: Option<(String, String)>,
    /// Present when /proc can be read for it (started here, or `--a-pid` / `--b-pid`).
    pub pid: Option<u32>,
    /// Server output, kept for diagnosing a failed start.
    log: Option<PathBuf>,
    child: Option<Child>,
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Target {
    /// Starts (or attaches to) a registry and waits until `GET /v2/` answers.
    pub async fn start(
        label: &'static str,
        spec: &Spec,
        pid: Option<u32>,
        binaries: &Binaries,
        work_dir: &Path,
    ) -> anyhow::Result<Self> {
        Self::start_with_args(label, spec, pid, binaries, work_dir, &[]).await
    }

    /// [`Target::start`], with `berth_args` added to a started Berth's `serve` command line.
    pub async fn start_with_args(
        label: &'static str,
        spec: &Spec,
        pid: Option<u32>,
        binaries: &Binaries,
        work_dir: &Path,
        berth_args: &[String],
    ) -> anyhow::Result<Self> {
        let mut target = match spec {
            Spec::Url(url) => {
                let authority = url.trim_start_matches("http://");
                let authority = authority.split('/').next().unwrap_or_default().to_owned();
                ensure!(!authority.is_empty(), "no host in {url}");
                Target {
                    label,
                    name: url.clone(),
                    version: None,
                    authority,
                    credentials: None,
                    pid,
                    log: None,
                    child: None,
                }
            }
            Spec::Berth | Spec::BerthRoot | Spec::BerthUser => {
                let data = berth_data_dir(work_dir, label);
                std::fs::create_dir_all(&data)?;
                let port = free_port()?;
                let mut command = Command::new(&binaries.berth);
                command.arg("serve").arg("--listen").arg(format!("127.0.0.1:{port}")).arg("--data-dir").arg(&data);
                command.args(berth_args);
                match spec {
                    Spec::Berth => {
                        command.arg("--no-auth");
                    }
                    _ => {
                        command
                            .env("BERTH_ROOT_ACCESS_KEY_ID", ROOT_KEY.0)
                            .env("BERTH_ROOT_SECRET_ACCESS_KEY", ROOT_KEY.1);
                    }
                }
                Self::spawn(label, spec.berth_name(), &binaries.berth, command, port, work_dir)?
            }
            Spec::DockerRegistry => {
                let data = work_dir.join(format!("{}-docker-registry", label.to_lowercase()));
                std::fs::create_dir_all(&data)?;
                let port = free_port()?;
                let config = work_dir.join(format!("{}-docker-registry.yml", label.to_lowercase()));
                std::fs::write(&config, docker_registry_config(&data, port))?;
                let mut command = Command::new(&binaries.docker_registry);
                command.arg("serve").arg(&config);
                Self::spawn(label, "docker-registry", &binaries.docker_registry, command, port, work_dir)?
            }
        };
        target.wait_ready().await?;
        target.credentials = match spec {
            Spec::BerthRoot => Some((ROOT_KEY.0.to_owned(), ROOT_KEY.1.to_owned())),
            Spec::BerthUser => Some(add_policy_user(&binaries.berth, &berth_data_dir(work_dir, label), work_dir)?),
            _ => None,
        };
        if target.credentials.is_some() {
            // `berth user add` writes to the store the server reads; wait until the key works.
            target.wait_signed_in().await?;
        }
        Ok(target)
    }

    /// A client for this target, signed in when the target has credentials.
    pub fn client(&self) -> Client {
        Client::new(&self.authority, self.credentials.as_ref().map(|(id, secret)| (id.as_str(), secret.as_str())))
    }

    async fn wait_signed_in(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (response, _) = self.client().fetch(Method::GET, "/v2/", &[], Body::Empty).await?;
            if response.status().is_success() {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "{}: the bench's credentials were refused ({})",
                self.name,
                response.status()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn spawn(
        label: &'static str,
        name: &str,
        binary: &Path,
        mut command: Command,
        port: u16,
        work_dir: &Path,
    ) -> anyhow::Result<Self> {
        ensure!(
            binary.is_file(),
            "{name} binary not found at {} (build or install it, pass its path, or give a running registry's URL)",
            binary.display()
        );
        let version = Command::new(binary)
            .arg("--version")
            .output()
            .ok()
            .filter(|out| out.status.success())
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|text| text.lines().next().map(str::to_owned));
        let log = work_dir.join(format!("{}-{name}.log", label.to_lowercase()));
        let out = File::create(&log)?;
        command.stdin(Stdio::null()).stdout(out.try_clone()?).stderr(out);
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            command.pre_exec(|| {
                // A killed bench must not leave registries running; the kernel ends them with it.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().with_context(|| format!("starting {}", binary.display()))?;
        Ok(Target {
            label,
            name: name.to_owned(),
            version,
            authority: format!("127.0.0.1:{port}"),
            credentials: None,
            pid: Some(child.id()),
            log: Some(log),
            child: Some(child),
        })
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        // A registry started here may take a while; one that is supposedly running should answer.
        let patience = Duration::from_secs(if self.child.is_some() { 30 } else { 5 });
        let deadline = Instant::now() + patience;
        let mut last_error = None;
        while Instant::now() < deadline {
            if let Some(child) = &mut self.child
                && let Some(status) = child.try_wait()?
            {
                bail!("{} exited during startup ({status}){}", self.name, self.log_tail());
            }
            let mut client = Client::new(&self.authority, None);
            match client.fetch(Method::GET, "/v2/", &[], Body::Empty).await {
                // 401 is a live registry that wants credentials; the phases will say so clearly.
                Ok((response, _)) if response.status().as_u16() == 200 || response.status().as_u16() == 401 => {
                    return Ok(());
                }
                Ok((response, _)) => {
                    bail!(
                        "{} at {}: GET /v2/ answered {}, not a registry?",
                        self.name,
                        self.authority,
                        response.status()
                    )
                }
                Err(error) => last_error = Some(format!("{error:#}")),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!(
            "{} at {} not ready after {patience:?}: {}{}",
            self.name,
            self.authority,
            last_error.unwrap_or_default(),
            self.log_tail()
        )
    }

    /// The last lines the server wrote, for error reports (empty when it was not started here).
    pub fn log_tail(&self) -> String {
        let Some(text) = self.log.as_ref().and_then(|log| std::fs::read_to_string(log).ok()) else {
            return String::new();
        };
        let lines: Vec<&str> = text.lines().collect();
        format!("\n--- last lines of its log ---\n{}", lines[lines.len().saturating_sub(15)..].join("\n"))
    }

    /// Server CPU seconds (user + system, all threads) so far.
    pub fn cpu_seconds(&self) -> Option<f64> {
        self.pid.and_then(|pid| cpu_seconds(&format!("/proc/{pid}/stat"), false).ok())
    }

    /// (current RSS, peak RSS) in MiB.
    pub fn memory_mib(&self) -> Option<(f64, f64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid?)).ok()?;
        let field = |name: &str| -> Option<f64> {
            let line = status.lines().find(|line| line.starts_with(name))?;
            let kib: f64 = line[name.len()..].trim().trim_end_matches("kB").trim().parse().ok()?;
            Some(kib / 1024.0)
        };
        Some((field("VmRSS:")?, field("VmHWM:")?))
    }

    /// Restarts the peak-RSS count so it covers the benchmark only (matters for `--a-pid`).
    pub fn reset_peak_memory(&self) -> bool {
        self.pid.is_some_and(|pid| std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok())
    }

    pub fn describe(&self) -> String {
        let mut text = format!("{} = {}", self.label, self.name);
        if let Some(version) = &self.version {
            text += &format!(" ({version})");
        }
        match self.pid {
            Some(pid) => text += &format!(" at {}, pid {pid}", self.authority),
            None => text += &format!(" at {}, no pid: CPU and memory not measured", self.authority),
        }
        text
    }
}

/// CPU seconds of a process: utime + stime, plus those of its waited-for children if asked.
fn cpu_seconds(stat_path: &str, with_children: bool) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(stat_path)?;
    // The command name may contain spaces and parentheses; fields resume after the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')').context("malformed stat")?.1.split_whitespace().collect();
    // utime, stime, cutime, cstime are fields 14 to 17 of stat(5), 11 to 14 after the name.
    let last = if with_children { 14 } else { 12 };
    let mut ticks = 0.0;
    for index in 11..=last {
        ticks += fields.get(index).context("short stat line")?.parse::<f64>()?;
    }
    Ok(ticks / clock_ticks_per_second())
}

/// The benchmark's own CPU, including finished children such as a skopeo run.
fn client_cpu_seconds() -> Option<f64> {
    cpu_seconds("/proc/self/stat", true).ok()
}

/// Wall time and both sides' CPU time over one measured window.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub elapsed: Duration,
    pub server_cpu: Option<f64>,
    pub client_cpu: Option<f64>,
}

/// Clock readings at the start of a window.
pub struct Clocks {
    start: Instant,
    server: Option<f64>,
    client: Option<f64>,
}

impl Clocks {
    pub fn start(target: &Target) -> Self {
        Self { server: target.cpu_seconds(), client: client_cpu_seconds(), start: Instant::now() }
    }

    pub fn stop(self, target: &Target) -> Window {
        let elapsed = self.start.elapsed();
        let delta = |before: Option<f64>, after: Option<f64>| before.zip(after).map(|(b, a)| a - b);
        Window {
            elapsed,
            server_cpu: delta(self.server, target.cpu_seconds()),
            client_cpu: delta(self.client, client_cpu_seconds()),
        }
    }
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// A loopback port free right now; the registry binds it moments later.
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Filesystem storage, loopback only, no access log, no redis or notifications, no health poller:
/// the reference registry doing the same work as the one under test and nothing else.
fn docker_registry_config(data: &Path, port: u16) -> String {
    format!(
        "version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: '{}'
  cache:
    blobdescriptor: inmemory
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
health:
  storagedriver:
    enabled: false
",
        data.display().to_string().replace('\'', "''")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_parses_names_and_http_urls_only() {
        assert!(matches!("berth".parse::<Spec>(), Ok(Spec::Berth)));
        assert!(matches!("docker-registry".parse::<Spec>(), Ok(Spec::DockerRegistry)));
        assert!(matches!("http://127.0.0.1:5000/".parse::<Spec>(), Ok(Spec::Url(u)) if u == "http://127.0.0.1:5000"));
        assert!("https://example.com".parse::<Spec>().is_err());
        assert!("quay".parse::<Spec>().is_err());
    }

    #[test]
    fn own_cpu_time_is_readable_and_grows() {
        let before = client_cpu_seconds().unwrap();
        let spin = Instant::now();
        let mut x = 0u64;
        while spin.elapsed() < Duration::from_millis(60) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        assert!(client_cpu_seconds().unwrap() > before);
    }
}

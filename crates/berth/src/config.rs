//! Server configuration: command-line flags, then environment, then an optional TOML file, then
//! defaults — the first that sets a value wins.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use ipnet::IpNet;
use serde::Deserialize;

pub use crate::listener::Limits;

/// The header size limit's bounds: hyper needs at least 8 KiB of buffer, and 1 MiB is far above
/// any real client's headers (Go's servers default to it).
const MIN_HEADER_BYTES: usize = 8 * 1024;
const MAX_HEADER_BYTES: usize = 1024 * 1024;
/// Enough for a person mistyping and for a CI fleet behind one NAT address with a stale secret,
/// far too few to guess a 40-character secret.
const DEFAULT_AUTH_FAILURES_PER_MINUTE: u32 = 30;
/// Far above what one process's file descriptors allow anyway.
const MAX_CONNECTIONS: usize = 1_000_000;

#[derive(clap::Args, Debug, Default)]
pub struct ServeArgs {
    /// Address to listen on; repeat (or separate with commas) for several, e.g. ports 443 and 80
    /// [default: 127.0.0.1:5000]
    #[arg(long, env = "BERTH_LISTEN", value_delimiter = ',')]
    listen: Vec<SocketAddr>,
    /// Directory for metadata and blobs [default: ./berth-data]
    #[arg(long, env = "BERTH_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// PostgreSQL URL for shared metadata (several servers, one database); default: embedded SQLite in the data dir.
    #[arg(long, env = "BERTH_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Keep blobs in this S3 bucket (shared by several servers) instead of the data dir.
    #[arg(long, env = "BERTH_S3_BUCKET")]
    s3_bucket: Option<String>,
    /// URL of an S3-compatible server (MinIO, Ceph, ...) [default: AWS S3]
    #[arg(long, env = "BERTH_S3_ENDPOINT")]
    s3_endpoint: Option<String>,
    /// The bucket's region [default: AWS_REGION / AWS_DEFAULT_REGION, else us-east-1]
    #[arg(long, env = "BERTH_S3_REGION")]
    s3_region: Option<String>,
    /// Key prefix for Berth's objects, so one bucket can serve several registries.
    #[arg(long, env = "BERTH_S3_PREFIX")]
    s3_prefix: Option<String>,
    /// Allow an http:// S3 endpoint.
    #[arg(long, env = "BERTH_S3_ALLOW_HTTP")]
    s3_allow_http: bool,
    /// TOML file with any of the settings below (flags and environment override it).
    #[arg(long, env = "BERTH_CONFIG")]
    config: Option<PathBuf>,
    /// Turn authentication off entirely (refused unless listening on loopback only).
    #[arg(long)]
    pub no_auth: bool,
    /// Serve HTTPS with this PEM certificate chain (needs --tls-key).
    #[arg(long, env = "BERTH_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "BERTH_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve HTTPS with a self-signed certificate generated for the listen host (kept under the data dir).
    #[arg(long, conflicts_with = "tls_cert")]
    tls_self_signed: bool,
    /// Allow plain HTTP on a non-loopback address (credentials then cross the network in clear).
    #[arg(long)]
    insecure_http: bool,
    /// Let anyone pull without credentials (pushes and deletes still need them).
    #[arg(long, env = "BERTH_ANONYMOUS_PULL")]
    anonymous_pull: bool,
    /// Lifetime of registry tokens (docker login passwords) in seconds [default: 43200, ECR's 12 hours]
    #[arg(long, env = "BERTH_TOKEN_LIFETIME_SECS")]
    token_lifetime_secs: Option<u64>,
    /// Refuse pushes to repositories that do not exist yet (create them through the ECR API),
    /// except where a CREATE_ON_PUSH creation template covers the name, as on ECR.
    #[arg(long)]
    no_create_on_push: bool,
    /// Hours after which an untouched upload session is removed [default: 24]
    #[arg(long, env = "BERTH_UPLOAD_EXPIRY_HOURS")]
    upload_expiry_hours: Option<f64>,
    /// Seconds between lifecycle-policy runs, checked at the 10-second maintenance tick (so at least 10); they also run right after a policy is put [default: 3600]
    #[arg(long, env = "BERTH_LIFECYCLE_INTERVAL_SECS")]
    lifecycle_interval_secs: Option<u64>,
    /// Seconds a pull-through cache serves a cached tag before checking the upstream (a HEAD)
    /// whether it moved [default: 86400, as on ECR]
    #[arg(long, env = "BERTH_CACHE_TAG_RECHECK_SECS")]
    cache_tag_recheck_secs: Option<u64>,
    /// Seconds between garbage-collection passes; 0 turns them off (`berth gc` still works) [default: 3600]
    #[arg(long, env = "BERTH_GC_INTERVAL_SECS")]
    gc_interval_secs: Option<u64>,
    /// Seconds a blob link or blob must stay unused before GC removes it; longer than any push
    /// takes from uploading a layer to pushing its manifest (clients may skip a layer they saw
    /// hours ago), and than clock skew between servers [default: 86400]
    #[arg(long, env = "BERTH_GC_GRACE_SECS")]
    gc_grace_secs: Option<u64>,
    /// The 12-digit account id the ECR API answers as (ARNs, registryId) [default: the account
    /// of an ECR registry name (ACCOUNT.dkr.ecr.REGION.amazonaws.com) in --tls-cert, else
    /// 000000000000]
    #[arg(long, env = "BERTH_REGISTRY_ID")]
    registry_id: Option<String>,
    /// The region in repository ARNs [default: the region of an ECR registry name in --tls-cert,
    /// else us-east-1]
    #[arg(long, env = "BERTH_REGION")]
    region: Option<String>,
    /// URL clients reach this server at: repository URIs, the docker login endpoint, layer
    /// download URLs [default: https://ACCOUNT.dkr.ecr.REGION.amazonaws.com[:port] when --tls-cert
    /// names it, else http://<listen address> (https:// when serving TLS only)]
    #[arg(long, env = "BERTH_PUBLIC_URL")]
    public_url: Option<String>,
    /// A reverse proxy (address or CIDR block) whose X-Forwarded-For names the client; repeat for
    /// several. Requests from anywhere else are attributed to their TCP peer. [default: none]
    #[arg(long = "trusted-proxy", value_name = "CIDR", env = "BERTH_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_cidr)]
    trusted_proxies: Vec<IpNet>,
    /// Connections served at once; more wait until one closes. Lowered to fit the open-file
    /// limit [default: 4096]
    #[arg(long, env = "BERTH_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Seconds a new connection has to send its first byte, and then to finish a TLS handshake [default: 10]
    #[arg(long, env = "BERTH_HANDSHAKE_TIMEOUT_SECS")]
    handshake_timeout_secs: Option<u64>,
    /// Seconds a client has to send a complete request header [default: 30]
    #[arg(long, env = "BERTH_HEADER_TIMEOUT_SECS")]
    header_timeout_secs: Option<u64>,
    /// Seconds a connection with no request in flight stays open [default: 120]
    #[arg(long, env = "BERTH_IDLE_TIMEOUT_SECS")]
    idle_timeout_secs: Option<u64>,
    /// Seconds in which a request body must bring at least 1 KiB, and a response body send at
    /// least 1 KiB (else its connection is closed: the client stopped reading, or gives an
    /// HTTP/2 stream no window) [default: 60]
    #[arg(long, env = "BERTH_BODY_TIMEOUT_SECS")]
    body_timeout_secs: Option<u64>,
    /// Failed sign-ins (wrong key, secret, token or signature) a client address may make in a
    /// burst and regains per minute; after that its credentialed requests get 429
    /// TOOMANYREQUESTS / ThrottlingException until one is regained. 0 turns throttling off [default: 30]
    #[arg(long, env = "BERTH_AUTH_FAILURES_PER_MINUTE")]
    auth_failures_per_minute: Option<u32>,
    /// Accept manifests the repository does not hold everything of: indexes without some
    /// children (mirroring a subset of platforms under the original digest), image manifests
    /// without their blobs; a repository's `berth:sparse-indexes` tag overrides it. Off by
    /// default, as on ECR.
    #[arg(long, env = "BERTH_SPARSE_INDEXES")]
    sparse_indexes: bool,
    /// A 32-byte key file every server sharing one database uses to seal access keys and sign
    /// tokens [default: <data-dir>/keys/master.key, created on first start]
    #[arg(long, env = "BERTH_MASTER_KEY_FILE")]
    master_key_file: Option<PathBuf>,
    /// Largest request header in bytes (HTTP/1 request line and headers; HTTP/2 header list) [default: 16384]
    #[arg(long, env = "BERTH_MAX_HEADER_BYTES")]
    max_header_bytes: Option<usize>,
    /// Also serve /metrics here, without authentication (e.g. 127.0.0.1:9100) [default: off]
    #[arg(long, env = "BERTH_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Write the audit trail (CloudTrail-shaped JSON lines) to this file, or `-` for stdout [default: off]
    #[arg(long, env = "BERTH_AUDIT_LOG")]
    audit_log: Option<PathBuf>,
    /// Rotate the audit file when it would pass this many bytes; 5 rotated files are kept [default: 104857600]
    #[arg(long, env = "BERTH_AUDIT_LOG_MAX_BYTES")]
    audit_log_max_bytes: Option<u64>,
    /// Log line format: `text` (for people) or `json` (one object per line) [default: text]
    #[arg(long, env = "BERTH_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormat>,
}

#[derive(clap::ValueEnum, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `http(s)://host[:port]` without a path, as ECR shows URIs: a trailing `/` and the scheme's
/// default port are dropped (`https://host:443` → `https://host`), so repository URIs, the login
/// endpoint and what docker stores after `docker login` agree.
fn normalise_public_url(url: &str) -> anyhow::Result<String> {
    let url = url.trim_end_matches('/');
    let (scheme, host) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
        (Some(host), _) => ("https", host),
        (None, Some(host)) => ("http", host),
        (None, None) => ("", ""),
    };
    anyhow::ensure!(
        !host.is_empty() && !host.contains(['/', '?', '#', '@']) && !host.contains(char::is_whitespace),
        "the public URL must be http(s)://host[:port] without a path, not {url:?}"
    );
    let default_port = if scheme == "https" { ":443" } else { ":80" };
    // `[::1]:443` ends with the port too; a bare IPv6 literal is bracketed, so a trailing `:443`
    // after `]` or a host name is always a port.
    let host = host.strip_suffix(default_port).unwrap_or(host);
    Ok(format!("{scheme}://{host}"))
}

/// A CIDR block, or one address (a /32 or /128).
fn parse_cidr(text: &str) -> Result<IpNet, String> {
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{text:?} is neither an IP address nor a CIDR block like 10.0.0.0/8"))
}

/// The TOML file's keys, all optional.
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<OneOrMore<SocketAddr>>,
    data_dir: Option<PathBuf>,
    create_on_push: Option<bool>,
    upload_expiry_hours: Option<f64>,
    lifecycle_interval_secs: Option<u64>,
    cache_tag_recheck_secs: Option<u64>,
    gc_interval_secs: Option<u64>,
    gc_grace_secs: Option<u64>,
    anonymous_pull: Option<bool>,
    token_lifetime_secs: Option<u64>,
    registry_id: Option<String>,
    region: Option<String>,
    public_url: Option<String>,
    database_url: Option<String>,
    s3_bucket: Option<String>,
    s3_endpoint: Option<String>,
    s3_region: Option<String>,
    s3_prefix: Option<String>,
    s3_allow_http: Option<bool>,
    /// Explicit S3 credentials; otherwise the standard AWS environment variables (kept out of
    /// flags so they never show in a process listing).
    s3_access_key_id: Option<String>,
    s3_secret_access_key: Option<String>,
    trusted_proxies: Option<Vec<String>>,
    max_connections: Option<usize>,
    handshake_timeout_secs: Option<u64>,
    header_timeout_secs: Option<u64>,
    idle_timeout_secs: Option<u64>,
    body_timeout_secs: Option<u64>,
    max_header_bytes: Option<usize>,
    master_key_file: Option<PathBuf>,
    sparse_indexes: Option<bool>,
    auth_failures_per_minute: Option<u32>,
    replication: Option<ReplicationFile>,
    #[serde(default)]
    webhooks: Vec<WebhookFile>,
    metrics_listen: Option<SocketAddr>,
    audit_log: Option<PathBuf>,
    audit_log_max_bytes: Option<u64>,
    log_format: Option<LogFormat>,
}

/// `[replication]`: where the destinations a replication configuration may name are.
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct ReplicationFile {
    #[serde(default)]
    destinations: Vec<ReplicationDestination>,
}

/// One `[[replication.destinations]]`: the (region, registry id) ECR's rules name, mapped to a
/// registry URL (another Berth, or any OCI registry) and the access key pushed with (sent as
/// HTTP Basic credentials: a Berth access key id and secret, or a registry's user and password).
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct ReplicationDestination {
    pub region: String,
    pub registry_id: String,
    pub url: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for ReplicationDestination {
    /// Without the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicationDestination")
            .field("region", &self.region)
            .field("registry_id", &self.registry_id)
            .field("url", &self.url)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// One `[[webhooks]]`: where image events go (README, "Webhooks").
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookFile {
    /// Names its position in the event log: renaming a webhook starts it afresh.
    name: String,
    url: String,
    secret: String,
    #[serde(default)]
    repository_prefixes: Vec<String>,
    /// `PUSH` and/or `DELETE`; all when absent.
    #[serde(default)]
    actions: Vec<String>,
    timeout_secs: Option<u64>,
}

impl std::fmt::Debug for WebhookFile {
    /// Without the secret or the URL (which may hold a token).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookFile").field("name", &self.name).finish_non_exhaustive()
    }
}

/// How long a webhook delivery may take unless its `timeout_secs` says otherwise.
const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

fn webhook(i: usize, file: WebhookFile) -> anyhow::Result<berth_registry::webhooks::Webhook> {
    use berth_registry::webhooks::{ImageAction, Webhook, parse_url};
    let valid_name =
        |n: &str| (1..=64).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    anyhow::ensure!(
        valid_name(&file.name),
        "webhook {i}: the name must be 1 to 64 letters, digits, '-', '_' or '.', not {:?}",
        file.name
    );
    let url = parse_url(&file.url).map_err(|e| anyhow::anyhow!("webhook {}: {e}", file.name))?;
    anyhow::ensure!(!file.secret.is_empty(), "webhook {}: the secret must not be empty", file.name);
    let actions = file
        .actions
        .iter()
        .map(|a| {
            ImageAction::parse(a)
                .ok_or_else(|| anyhow::anyhow!("webhook {}: action {a:?} is not PUSH or DELETE", file.name))
        })
        .collect::<anyhow::Result<_>>()?;
    let timeout = file.timeout_secs.map_or(DEFAULT_WEBHOOK_TIMEOUT, Duration::from_secs);
    anyhow::ensure!(!timeout.is_zero(), "webhook {}: the timeout must be at least 1 second", file.name);
    Ok(Webhook {
        name: file.name,
        url,
        secret: file.secret,
        repository_prefixes: file.repository_prefixes,
        actions,
        timeout,
    })
}

/// ECR's placeholder account id, when neither a flag nor the TLS certificate names one.
pub(crate) const DEFAULT_REGISTRY_ID: &str = "000000000000";

#[derive(Debug, Clone)]
pub enum Tls {
    Off,
    Files { cert: PathBuf, key: PathBuf },
    SelfSigned,
}

/// A TOML value that may be one item or a list of them.
#[derive(Deserialize, Debug)]
#[serde(untagged)]
enum OneOrMore<T> {
    One(T),
    More(Vec<T>),
}

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub tls: Tls,
    /// Plain HTTP is served on non-loopback addresses too (see [`ServeConfig::plain_http`]).
    pub insecure_http: bool,
    pub no_auth: bool,
    pub anonymous_pull: bool,
    pub token_lifetime: Duration,
    /// `None`: SQLite in the data directory.
    pub database_url: Option<String>,
    /// `None`: blobs on the filesystem under the data directory.
    pub s3: Option<berth_storage::S3Config>,
    /// At least one address, none twice; the first one stands for the server in URLs.
    pub listen: Vec<SocketAddr>,
    pub data_dir: PathBuf,
    pub create_on_push: bool,
    pub registry_id: String,
    /// The accounts whose ECR registry names reach this server: when the registry id was given
    /// (flag or file) or read from the certificate's registry name, it and those the
    /// certificate or the public URL names; a `Host` naming another account's registry is then
    /// refused. Empty (nothing refused) while the account is ECR's placeholder.
    pub ecr_accounts: Vec<String>,
    pub region: String,
    /// `None`: `ecr_host`'s, else derived from the address actually bound.
    pub public_url: Option<String>,
    /// The ECR registry name the TLS certificate holds for `registry_id` in `region`, if any.
    pub ecr_host: Option<String>,
    pub upload_expiry: Duration,
    pub lifecycle_interval: Duration,
    /// How long a cached tag is served before the upstream is asked whether it moved.
    pub cache_tag_recheck: Duration,
    /// `None`: no automatic garbage collection.
    pub gc_interval: Option<Duration>,
    pub gc_grace: Duration,
    /// Peers whose X-Forwarded-For is believed.
    pub trusted_proxies: Vec<IpNet>,
    pub limits: Limits,
    /// `None`: the data dir's own key.
    pub master_key_file: Option<PathBuf>,
    pub sparse_indexes: bool,
    /// 0: failed sign-ins are not throttled.
    pub auth_failures_per_minute: u32,
    /// `[[replication.destinations]]`, each checked: region and registry id in ECR's form, a
    /// registry URL that is https or loopback, no destination twice.
    pub replication_destinations: Vec<ReplicationDestination>,
    /// `[[webhooks]]`, each checked, no name twice.
    pub webhooks: Vec<berth_registry::webhooks::Webhook>,
    /// The anonymous metrics listener, if any.
    pub metrics_listen: Option<SocketAddr>,
    pub audit: Option<crate::audit::AuditTarget>,
    pub log_format: LogFormat,
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
}

impl ServeConfig {
    /// Whether `addr` serves plain HTTP besides TLS: loopback always (the docker CLI speaks plain
    /// HTTP to loopback registries), elsewhere only with --insecure-http.
    pub fn plain_http(&self, addr: SocketAddr) -> bool {
        addr.ip().is_loopback() || self.insecure_http
    }
}

impl ServeArgs {
    fn limits(&self, file: &FileConfig) -> anyhow::Result<Limits> {
        let defaults = Limits::default();
        let secs = |flag: Option<u64>, key: Option<u64>, default: Duration, what: &str| {
            let secs = flag.or(key).unwrap_or(default.as_secs());
            anyhow::ensure!(secs > 0, "the {what} must be at least 1 second");
            Ok(Duration::from_secs(secs))
        };
        let limits = Limits {
            max_connections: self.max_connections.or(file.max_connections).unwrap_or(defaults.max_connections),
            handshake_timeout: secs(
                self.handshake_timeout_secs,
                file.handshake_timeout_secs,
                defaults.handshake_timeout,
                "handshake timeout",
            )?,
            header_timeout: secs(
                self.header_timeout_secs,
                file.header_timeout_secs,
                defaults.header_timeout,
                "header timeout",
            )?,
            idle_timeout: secs(self.idle_timeout_secs, file.idle_timeout_secs, defaults.idle_timeout, "idle timeout")?,
            body_timeout: secs(self.body_timeout_secs, file.body_timeout_secs, defaults.body_timeout, "body timeout")?,
            max_header_bytes: self.max_header_bytes.or(file.max_header_bytes).unwrap_or(defaults.max_header_bytes),
        };
        anyhow::ensure!(
            (1..=MAX_CONNECTIONS).contains(&limits.max_connections),
            "the connection limit must be between 1 and {MAX_CONNECTIONS}"
        );
        anyhow::ensure!(
            (MIN_HEADER_BYTES..=MAX_HEADER_BYTES).contains(&limits.max_header_bytes),
            "the header size limit must be between {MIN_HEADER_BYTES} and {MAX_HEADER_BYTES} bytes"
        );
        Ok(limits)
    }

    pub fn resolve(self) -> anyhow::Result<ServeConfig> {
        let file = match &self.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let limits = self.limits(&file)?;
        let hours = self.upload_expiry_hours.or(file.upload_expiry_hours).unwrap_or(24.0);
        // At most ten years: more would overflow the timers that count it.
        anyhow::ensure!(
            hours.is_finite() && hours > 0.0 && hours <= 87_600.0,
            "upload expiry must be a positive number of hours, at most 87600 (ten years)"
        );
        let lifecycle_interval_secs = self.lifecycle_interval_secs.or(file.lifecycle_interval_secs).unwrap_or(3600);
        anyhow::ensure!(lifecycle_interval_secs > 0, "the lifecycle interval must be at least 1 second");
        let cache_tag_recheck_secs = self.cache_tag_recheck_secs.or(file.cache_tag_recheck_secs).unwrap_or(24 * 3600);
        let gc_interval_secs = self.gc_interval_secs.or(file.gc_interval_secs).unwrap_or(3600);
        let gc_grace_secs = self.gc_grace_secs.or(file.gc_grace_secs).unwrap_or(24 * 3600);
        // A push relies on the grace period between ending a blob's candidacy and linking it.
        anyhow::ensure!(gc_grace_secs > 0, "the GC grace period must be at least 1 second");
        let listen = match (self.listen, file.listen) {
            (flags, _) if !flags.is_empty() => flags,
            (_, Some(OneOrMore::One(addr))) => vec![addr],
            (_, Some(OneOrMore::More(addrs))) => addrs,
            (_, None) => vec!["127.0.0.1:5000".parse().expect("valid")],
        };
        anyhow::ensure!(!listen.is_empty(), "the listen list is empty");
        for (i, addr) in listen.iter().enumerate() {
            anyhow::ensure!(!listen[..i].contains(addr), "{addr} is listed twice to listen on");
        }
        let exposed = listen.iter().find(|addr| !addr.ip().is_loopback());
        if let Some(addr) = exposed {
            anyhow::ensure!(
                !self.no_auth,
                "--no-auth is only allowed when listening on loopback addresses, not {addr}"
            );
        }
        let tls = match (self.tls_cert, self.tls_key, self.tls_self_signed) {
            (Some(cert), Some(key), _) => Tls::Files { cert, key },
            (_, _, true) => Tls::SelfSigned,
            _ => Tls::Off,
        };
        if let Some(addr) = exposed.filter(|_| !self.insecure_http && matches!(tls, Tls::Off)) {
            anyhow::bail!(
                "refusing plain HTTP on {addr}: configure TLS (--tls-cert/--tls-key or --tls-self-signed) or pass --insecure-http"
            );
        }
        let (registry_id, region) = (self.registry_id.or(file.registry_id), self.region.or(file.region));
        // A certificate for an ECR registry name stands for its account and region. One whose
        // names cannot be read names nothing here: loading it for TLS reports what is wrong.
        let certificate_names = match &tls {
            Tls::Files { cert, .. } => crate::ecr_names::certificate_dns_names(cert).unwrap_or_default(),
            _ => Vec::new(),
        };
        let ecr_identity = crate::ecr_names::identity(
            certificate_names.iter().map(String::as_str),
            registry_id.as_deref(),
            region.as_deref(),
        );
        let registry_id_stated =
            registry_id.is_some() || ecr_identity.as_ref().is_some_and(|found| found.named_account);
        let registry_id = registry_id
            .or_else(|| ecr_identity.as_ref().map(|found| found.registry_id.clone()))
            .unwrap_or_else(|| DEFAULT_REGISTRY_ID.into());
        anyhow::ensure!(
            berth_ecr::validate::is_account_id(&registry_id),
            "the registry id must be 12 digits (an AWS account id), not {registry_id:?}"
        );
        let region = region
            .or_else(|| ecr_identity.as_ref().map(|found| found.region.clone()))
            .unwrap_or_else(|| "us-east-1".into());
        anyhow::ensure!(
            berth_ecr::names::is_region(&region),
            "the region must be lowercase letters, digits and '-' (like us-east-1), not {region:?}"
        );
        let public_url = self.public_url.or(file.public_url).map(|url| normalise_public_url(&url)).transpose()?;
        // Once the account is stated, the registry names this server answers to: its own, and
        // any the certificate or the public URL holds (flags that disagree with those win for
        // ARNs, but the names still reach this server).
        let mut ecr_accounts = Vec::new();
        if registry_id_stated {
            let public_host = public_url.as_deref().and_then(|url| url.split_once("://")).map(|(_, host)| host);
            let named = certificate_names.iter().map(String::as_str).chain(public_host);
            ecr_accounts =
                std::iter::once(registry_id.clone()).chain(named.filter_map(berth_ecr::names::host_account)).collect();
            ecr_accounts.sort();
            ecr_accounts.dedup();
        }
        let audit = match self.audit_log.or(file.audit_log) {
            None => None,
            // `/dev/stdout` too: a file of that name would rotate stdout away.
            Some(path) if path.as_os_str() == "-" || path == Path::new("/dev/stdout") => {
                Some(crate::audit::AuditTarget::Stdout)
            }
            Some(path) => {
                let max_bytes = self.audit_log_max_bytes.or(file.audit_log_max_bytes).unwrap_or(100 * 1024 * 1024);
                anyhow::ensure!(max_bytes >= 4096, "the audit log size limit must be at least 4096 bytes");
                Some(crate::audit::AuditTarget::File { path, max_bytes })
            }
        };
        let s3 = match self.s3_bucket.or(file.s3_bucket) {
            Some(bucket) => Some(berth_storage::S3Config {
                bucket,
                endpoint: self.s3_endpoint.or(file.s3_endpoint),
                region: self.s3_region.or(file.s3_region),
                prefix: self.s3_prefix.or(file.s3_prefix),
                allow_http: self.s3_allow_http || file.s3_allow_http.unwrap_or(false),
                access_key_id: file.s3_access_key_id,
                secret_access_key: file.s3_secret_access_key,
            }),
            None => {
                let s3_flags = self.s3_endpoint.is_some()
                    || self.s3_region.is_some()
                    || self.s3_prefix.is_some()
                    || self.s3_allow_http;
                anyhow::ensure!(
                    !s3_flags,
                    "the S3 settings need a bucket: --s3-bucket (or BERTH_S3_BUCKET, s3_bucket)"
                );
                None
            }
        };
        let trusted_proxies = if self.trusted_proxies.is_empty() {
            let listed = file.trusted_proxies.unwrap_or_default();
            listed.iter().map(|cidr| parse_cidr(cidr)).collect::<Result<_, _>>().map_err(anyhow::Error::msg)?
        } else {
            self.trusted_proxies
        };
        let replication_destinations = file.replication.map(|r| r.destinations).unwrap_or_default();
        for (i, d) in replication_destinations.iter().enumerate() {
            anyhow::ensure!(
                berth_ecr::names::is_region(&d.region),
                "replication destination {i}: the region {:?} is not like us-east-1",
                d.region
            );
            anyhow::ensure!(
                berth_ecr::validate::is_account_id(&d.registry_id),
                "replication destination {i}: the registry id must be 12 digits, not {:?}",
                d.registry_id
            );
            let endpoint = berth_remote::Endpoint::parse(&d.url)
                .map_err(|e| anyhow::anyhow!("replication destination {i}: {e}"))?;
            endpoint.require_tls_unless_loopback().map_err(|e| anyhow::anyhow!("replication destination {i}: {e}"))?;
            anyhow::ensure!(
                !replication_destinations[..i].iter().any(|o| o.region == d.region && o.registry_id == d.registry_id),
                "replication destination {}/{} is listed twice",
                d.region,
                d.registry_id
            );
        }
        let webhooks =
            file.webhooks.into_iter().enumerate().map(|(i, w)| webhook(i, w)).collect::<anyhow::Result<Vec<_>>>()?;
        for (i, w) in webhooks.iter().enumerate() {
            anyhow::ensure!(!webhooks[..i].iter().any(|o| o.name == w.name), "webhook {} is listed twice", w.name);
        }
        Ok(ServeConfig {
            webhooks,
            master_key_file: self.master_key_file.or(file.master_key_file),
            sparse_indexes: self.sparse_indexes || file.sparse_indexes.unwrap_or(false),
            auth_failures_per_minute: self
                .auth_failures_per_minute
                .or(file.auth_failures_per_minute)
                .unwrap_or(DEFAULT_AUTH_FAILURES_PER_MINUTE),
            replication_destinations,
            metrics_listen: self.metrics_listen.or(file.metrics_listen),
            audit,
            log_format: self.log_format.or(file.log_format).unwrap_or_default(),
            trusted_proxies,
            limits,
            tls,
            insecure_http: self.insecure_http,
            no_auth: self.no_auth,
            anonymous_pull: self.anonymous_pull || file.anonymous_pull.unwrap_or(false),
            database_url: self.database_url.or(file.database_url),
            s3,
            token_lifetime: Duration::from_secs(
                self.token_lifetime_secs
                    .or(file.token_lifetime_secs)
                    .unwrap_or(berth_auth::DEFAULT_TOKEN_LIFETIME.as_secs()),
            ),
            listen,
            data_dir: self.data_dir.or(file.data_dir).unwrap_or_else(|| PathBuf::from("berth-data")),
            create_on_push: !self.no_create_on_push && file.create_on_push.unwrap_or(true),
            upload_expiry: Duration::from_secs_f64(hours * 3600.0),
            lifecycle_interval: Duration::from_secs(lifecycle_interval_secs),
            cache_tag_recheck: Duration::from_secs(cache_tag_recheck_secs),
            gc_interval: (gc_interval_secs > 0).then(|| Duration::from_secs(gc_interval_secs)),
            gc_grace: Duration::from_secs(gc_grace_secs),
            registry_id,
            ecr_accounts,
            region,
            public_url,
            ecr_host: ecr_identity.map(|found| found.host),
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn resolve(args: &[&str]) -> anyhow::Result<ServeConfig> {
        Cli::try_parse_from(std::iter::once("berth").chain(args.iter().copied()))?.serve.resolve()
    }

    #[test]
    fn public_urls_drop_default_ports_and_trailing_slashes() {
        let url = |u: &str| resolve(&["--public-url", u]).map(|c| c.public_url.unwrap());
        assert_eq!(url("https://registry.example.com:443").unwrap(), "https://registry.example.com");
        assert_eq!(url("http://registry.example.com:80/").unwrap(), "http://registry.example.com");
        assert_eq!(url("https://[2001:db8::1]:443").unwrap(), "https://[2001:db8::1]");
        assert_eq!(url("https://registry.example.com:8443").unwrap(), "https://registry.example.com:8443");
        assert_eq!(url("http://127.0.0.1:443").unwrap(), "http://127.0.0.1:443", "443 is not http's default");
        assert_eq!(url("https://host:4430").unwrap(), "https://host:4430");
        for bad in ["registry.example.com", "https://host/path", "https://", "https://user@host"] {
            assert!(url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn trusted_proxies_come_from_flags_or_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("berth.toml");
        std::fs::write(&file, "trusted_proxies = [\"10.0.0.0/8\", \"192.0.2.7\", \"fd00::/8\"]\n").unwrap();
        let config = file.to_str().unwrap();
        let nets: Vec<IpNet> = ["10.0.0.0/8", "192.0.2.7/32", "fd00::/8"].iter().map(|n| n.parse().unwrap()).collect();
        assert_eq!(resolve(&["--config", config]).unwrap().trusted_proxies, nets);
        // Flags replace the file's list; a bare address is one host.
        let flags = resolve(&["--config", config, "--trusted-proxy", "127.0.0.1", "--trusted-proxy", "::1"]).unwrap();
        let hosts: Vec<IpNet> = ["127.0.0.1/32", "::1/128"].iter().map(|n| n.parse().unwrap()).collect();
        assert_eq!(flags.trusted_proxies, hosts);
        assert!(resolve(&[]).unwrap().trusted_proxies.is_empty());
        let err = resolve(&["--trusted-proxy", "10.0.0.0/33"]).err().unwrap().to_string();
        assert!(err.contains("neither an IP address nor a CIDR block"), "{err}");
        std::fs::write(&file, "trusted_proxies = [\"proxy.internal\"]\n").unwrap();
        let err = resolve(&["--config", config]).err().unwrap().to_string();
        assert!(err.contains("\"proxy.internal\""), "{err}");
    }

    #[test]
    fn the_upload_expiry_is_bounded() {
        assert_eq!(resolve(&["--upload-expiry-hours", "87600"]).unwrap().upload_expiry.as_secs(), 87_600 * 3600);
        for bad in ["0", "87601", "18446744073709551615", "NaN", "inf"] {
            let err = resolve(&["--upload-expiry-hours", bad]).err().unwrap().to_string();
            assert!(err.contains("upload expiry must be"), "{bad}: {err}");
        }
    }

    #[test]
    fn several_listen_addresses_each_serve_plain_http_only_on_loopback() {
        let addrs = |list: &[&str]| list.iter().map(|a| a.parse().unwrap()).collect::<Vec<SocketAddr>>();
        let config = resolve(&["--listen", "127.0.0.1:443", "--listen", "[::1]:80", "--tls-self-signed"]).unwrap();
        assert_eq!(config.listen, addrs(&["127.0.0.1:443", "[::1]:80"]));
        let config = resolve(&["--listen", "127.0.0.1:443,0.0.0.0:8443", "--tls-self-signed"]).unwrap();
        assert_eq!(config.listen, addrs(&["127.0.0.1:443", "0.0.0.0:8443"]));
        assert!(config.plain_http(config.listen[0]) && !config.plain_http(config.listen[1]));
        let err = |args: &[&str]| resolve(args).err().unwrap().to_string();
        assert!(err(&["--listen", "127.0.0.1:80,127.0.0.1:80"]).contains("listed twice"));
        assert!(err(&["--listen", "127.0.0.1:80,0.0.0.0:80"]).contains("refusing plain HTTP on 0.0.0.0:80"));
        let no_auth = err(&["--listen", "127.0.0.1:80,0.0.0.0:443", "--tls-self-signed", "--no-auth"]);
        assert!(no_auth.contains("--no-auth is only allowed"), "{no_auth}");
        // The file takes one address or a list.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("berth.toml");
        let path = file.to_str().unwrap();
        std::fs::write(&file, "listen = [\"127.0.0.1:5001\", \"127.0.0.1:5002\"]\n").unwrap();
        assert_eq!(resolve(&["--config", path]).unwrap().listen, addrs(&["127.0.0.1:5001", "127.0.0.1:5002"]));
        std::fs::write(&file, "listen = \"127.0.0.1:5001\"\n").unwrap();
        assert_eq!(resolve(&["--config", path]).unwrap().listen, addrs(&["127.0.0.1:5001"]));
        assert_eq!(resolve(&[]).unwrap().listen, addrs(&["127.0.0.1:5000"]));
    }

    #[test]
    fn a_certificate_for_an_ecr_registry_name_sets_account_region_and_host() {
        let dir = tempfile::tempdir().unwrap();
        let name = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";
        let generated = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert, generated.cert.pem()).unwrap();
        std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
        let tls = ["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()];
        let config = resolve(&tls).unwrap();
        assert_eq!((config.registry_id.as_str(), config.region.as_str()), ("123456789012", "eu-west-1"));
        assert_eq!(config.ecr_host.as_deref(), Some(name));
        assert_eq!(config.ecr_accounts, ["123456789012"]);
        // A flag that disagrees wins, and the name then says nothing — but still reaches here.
        let config = resolve(&[&tls[..], &["--registry-id", "111111111111"]].concat()).unwrap();
        assert_eq!((config.registry_id.as_str(), config.region.as_str()), ("111111111111", "us-east-1"));
        assert_eq!(config.ecr_host, None);
        assert_eq!(config.ecr_accounts, ["111111111111", "123456789012"]);
        assert_eq!(resolve(&["--tls-self-signed"]).unwrap().ecr_host, None);
    }

    #[test]
    fn foreign_registry_names_are_refused_only_once_the_account_is_stated() {
        assert!(resolve(&[]).unwrap().ecr_accounts.is_empty(), "ECR's placeholder account refuses nothing");
        let public = "--public-url=https://222222222222.dkr.ecr.us-east-1.amazonaws.com";
        assert!(resolve(&[public]).unwrap().ecr_accounts.is_empty());
        let config = resolve(&["--registry-id", "111111111111", public]).unwrap();
        assert_eq!(config.ecr_accounts, ["111111111111", "222222222222"], "the public URL's name reaches here");
    }
}

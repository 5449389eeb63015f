//! The pull-through cache's configuration: rules (`<prefix>/…` in Berth caches
//! `<upstream>/<upstream prefix>/…`) and the upstream credentials they name.
//!
//! A rule is a JSON document in the metadata store (like repository settings: the store does not
//! parse it). Credentials are sealed by the auth layer, which alone holds the master key; the
//! service reads the sealed bytes and asks a [`SecretOpener`] to open them, so no plaintext secret
//! is ever stored, logged or returned.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_iam::{Identity, RequestContext};
use berth_meta::{CacheRuleRecord, MetaError, Millis};
use berth_remote::{Credentials, Endpoint};
use berth_spec::RepositoryName;
use serde::{Deserialize, Serialize};

use crate::{Registry, RegistryError, Result, now_millis};

/// The `ecrRepositoryPrefix` that makes a rule serve every repository.
pub const ROOT_PREFIX: &str = "ROOT";
/// The ARN prefix a `credentialArn` must start with after `…:secret:` (ECR's own rule).
const SECRET_NAME_PREFIX: &str = "ecr-pullthroughcache/";

/// Opens sealed upstream credentials: implemented by the auth layer over the master key.
pub trait SecretOpener: Send + Sync {
    /// The login sealed under `name`, or `None` if the bytes were not sealed for that name with
    /// this master key.
    fn open(&self, name: &str, sealed: &[u8]) -> Option<UpstreamLogin>;
}

/// A user name and password (or access token) for an upstream registry.
pub struct UpstreamLogin {
    pub username: String,
    pub password: String,
    /// The upstream registry URL the login was stored for; `None`: stored without one.
    pub upstream: Option<String>,
}

/// The registry's [`SecretOpener`], if the server has a master key.
#[derive(Clone, Default)]
pub struct Secrets(pub Option<Arc<dyn SecretOpener>>);

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Secrets(..)" } else { "Secrets(none)" })
    }
}

/// Why a pull-through cache request failed; each plane maps it once.
#[derive(Debug, thiserror::Error)]
pub enum PullThroughError {
    #[error("A pull through cache rule with the ecrRepositoryPrefix '{0}' already exists")]
    RuleExists(String),
    #[error("The pull through cache rule with the ecrRepositoryPrefix '{0}' does not exist")]
    RuleNotFound(String),
    #[error(
        "The number of pull through cache rules in the registry would exceed the limit of {MAX_RULES}; \
         delete one first"
    )]
    TooManyRules,
    #[error("The secret {0} does not exist; store it with `berth secret put`")]
    SecretNotFound(String),
    #[error("{0}")]
    SecretInaccessible(String),
    #[error("The secret {0} cannot be decrypted with this server's master key")]
    SecretUndecryptable(String),
    #[error("{0}")]
    UpstreamUnsupported(String),
    /// A push into a repository a rule covers: its images come from the upstream only.
    #[error(
        "The repository {repository} is under the pull through cache rule with the ecrRepositoryPrefix '{prefix}': \
         its images are pulled from the upstream registry, pushing into it is not allowed"
    )]
    PushIntoCache { repository: String, prefix: String },
    /// A manifest neither cached nor obtainable from the upstream now (down, refusing, absent).
    #[error("{message}")]
    ManifestNotCached { trouble: UpstreamTrouble, message: String },
    /// A blob neither cached nor obtainable from the upstream now.
    #[error("{0}")]
    BlobNotCached(String),
}

/// Why the upstream could not provide an image, as ECR's image failure codes name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamTrouble {
    /// The rule's credentials are missing, unusable or refused.
    AccessDenied,
    TooManyRequests,
    /// Unreachable, failing, or answering what cannot be cached.
    Unavailable,
}

/// A rule as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheRule {
    /// `ROOT` or a repository-name prefix without its trailing `/`.
    pub ecr_repository_prefix: String,
    pub upstream: UpstreamSettings,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// What a rule says about its upstream: the stored document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpstreamSettings {
    /// As given: a bare host (https) or a URL with its scheme.
    pub upstream_registry_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_registry: Option<String>,
    /// `ROOT` or a prefix of the upstream's repository names that replaces the rule's prefix.
    pub upstream_repository_prefix: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_role_arn: Option<String>,
}

/// The outcome of `ValidatePullThroughCacheRule`.
#[derive(Debug, Clone)]
pub struct RuleValidation {
    pub rule: CacheRule,
    /// Why the upstream could not be used with the rule's credentials, if it could not.
    pub failure: Option<String>,
}

/// The rule a repository is under: the longest prefix it starts with (`prefix/...`), else a
/// `ROOT` rule.
pub fn rule_for<'a>(rules: &'a [CacheRule], repository: &str) -> Option<&'a CacheRule> {
    let under = |rule: &&CacheRule| {
        repository.strip_prefix(rule.ecr_repository_prefix.as_str()).is_some_and(|rest| rest.starts_with('/'))
    };
    rules
        .iter()
        .filter(under)
        .max_by_key(|rule| rule.ecr_repository_prefix.len())
        .or_else(|| rules.iter().find(|rule| rule.ecr_repository_prefix == ROOT_PREFIX))
}

/// A prefix without its optional trailing `/` (ECR accepts both spellings for one rule).
pub fn normalize_prefix(prefix: &str) -> &str {
    if prefix == ROOT_PREFIX { prefix } else { prefix.strip_suffix('/').unwrap_or(prefix) }
}

pub(crate) fn rule_from_record(record: CacheRuleRecord) -> Result<CacheRule> {
    let upstream = serde_json::from_str(&record.document).map_err(|e| {
        RegistryError::Internal(format!("the pull-through cache rule {} does not parse: {e}", record.prefix))
    })?;
    Ok(CacheRule {
        ecr_repository_prefix: record.prefix,
        upstream,
        created_at: record.created_at,
        updated_at: record.updated_at,
    })
}

fn meta_error(e: MetaError) -> RegistryError {
    match e {
        MetaError::CacheRuleExists(p) => PullThroughError::RuleExists(p).into(),
        MetaError::CacheRuleNotFound(p) => PullThroughError::RuleNotFound(p).into(),
        other => other.into(),
    }
}

/// ECR's quota of pull through cache rules per registry (not adjustable).
pub const MAX_RULES: usize = 50;

/// How long the rules read from the store are used before they are read again (other servers
/// may have changed them; this process drops them at once when it changes one).
const RULES_TTL: Duration = Duration::from_secs(1);

/// A rule's upstream client and what it was made from: the rule's version and its sealed secret.
struct RuleRemote {
    rule_updated_at: Millis,
    sealed_secret: Option<Vec<u8>>,
    remote: berth_remote::Remote,
}

/// The cache's in-memory side: the rules, a client per upstream (it keeps that upstream's
/// tokens), fills in progress, when each cached tag was last checked upstream, and counters.
#[derive(Default)]
pub(crate) struct CacheState {
    rules: Mutex<Option<(Instant, Arc<Vec<CacheRule>>)>>,
    remotes: Mutex<HashMap<String, RuleRemote>>,
    pub(crate) fills: crate::fills::Fills,
    pub(crate) stats: crate::cache_stats::CacheStats,
}

/// The rule covering a repository and the name the repository has upstream.
#[derive(Debug, Clone)]
pub(crate) struct CachedRepository {
    pub rule: CacheRule,
    pub upstream_name: RepositoryName,
}

/// The rule with the longest prefix covering `name` (`ROOT` covers all), and `name` upstream:
/// the rule's prefix replaced by its upstream prefix (dropped for `ROOT`). None for a name no
/// repository is created under (`MIN_NEW_NAME_LEN`, which only `ROOT` could cover): it is not
/// asked of the upstream at all.
fn covering_rule(rules: &[CacheRule], name: &RepositoryName) -> Option<CachedRepository> {
    if name.as_str().len() < berth_spec::name::MIN_NEW_NAME_LEN {
        return None;
    }
    let rule = rule_for(rules, name.as_str())?;
    let path = match rule.ecr_repository_prefix.as_str() {
        ROOT_PREFIX => name.as_str().to_owned(),
        prefix => name.as_str().strip_prefix(prefix)?.strip_prefix('/')?.to_owned(),
    };
    let upstream = match rule.upstream.upstream_repository_prefix.as_str() {
        ROOT_PREFIX => path,
        prefix => format!("{}/{path}", prefix.trim_end_matches('/')),
    };
    Some(CachedRepository { rule: rule.clone(), upstream_name: upstream.parse().ok()? })
}

/// The upstream a URL names, if Berth may use it: https, or http only on loopback.
pub fn upstream_endpoint(url: &str) -> Result<Endpoint> {
    let unsupported = |reason: String| PullThroughError::UpstreamUnsupported(reason);
    // The errors quote the URL with any `user:password@` redacted, never the raw input: error
    // messages reach the audit trail and the log.
    let endpoint =
        Endpoint::parse(url).map_err(|e| unsupported(format!("The upstream registry URL is not valid: {e}")))?;
    endpoint
        .require_tls_unless_loopback()
        .map_err(|e| unsupported(format!("The upstream registry URL {endpoint}: {e}")))?;
    Ok(endpoint)
}

impl Registry {
    /// The secret name a `credentialArn` of this registry's account and region names.
    fn secret_name<'a>(&self, arn: &'a str) -> Result<&'a str> {
        let expected = format!(
            "arn:aws:secretsmanager:{}:{}:secret:{SECRET_NAME_PREFIX}",
            self.config.region, self.config.account_id
        );
        arn.strip_prefix(&expected).filter(|name| !name.is_empty()).ok_or_else(|| {
            PullThroughError::SecretInaccessible(format!(
                "Unable to access the secret {arn}: Berth keeps secrets for its own account and region only, \
                 named {expected}<name>"
            ))
            .into()
        })
    }

    /// The sealed secret a `credentialArn` names.
    async fn sealed_secret(&self, arn: &str) -> Result<Vec<u8>> {
        let name = self.secret_name(arn)?;
        Ok(self.meta.upstream_secret(name).await?.ok_or_else(|| PullThroughError::SecretNotFound(arn.to_owned()))?)
    }

    /// The login a rule's `credentialArn` names (`None` without one) for a rule of the upstream
    /// `endpoint`. A login stored for another upstream is refused: its password goes only to
    /// the registry it was stored for.
    async fn upstream_login(&self, credential_arn: Option<&str>, endpoint: &Endpoint) -> Result<Option<UpstreamLogin>> {
        let Some(arn) = credential_arn else {
            return Ok(None);
        };
        let (name, sealed) = (self.secret_name(arn)?, self.sealed_secret(arn).await?);
        let opener =
            self.config.secrets.0.as_ref().ok_or_else(|| PullThroughError::SecretUndecryptable(arn.to_owned()))?;
        let login = opener.open(name, &sealed).ok_or_else(|| PullThroughError::SecretUndecryptable(arn.to_owned()))?;
        if let Some(stored_for) = &login.upstream
            && !upstream_endpoint(stored_for).is_ok_and(|stored| stored.same_registry(endpoint))
        {
            return Err(PullThroughError::SecretInaccessible(format!(
                "Unable to access the secret {arn}: it is stored for the upstream registry {stored_for}, not {endpoint}"
            ))
            .into());
        }
        Ok(Some(login))
    }

    /// The credentials a rule's `credentialArn` names for its upstream (anonymous without one).
    async fn upstream_credentials(&self, credential_arn: Option<&str>, endpoint: &Endpoint) -> Result<Credentials> {
        Ok(match self.upstream_login(credential_arn, endpoint).await? {
            Some(login) => Credentials::basic(login.username, login.password),
            None => Credentials::Anonymous,
        })
    }

    /// Whether `ctx` may give a rule of the upstream `upstream_url` the secret `credential_arn`
    /// names. A secret stored without `--upstream` goes to whichever upstream a rule names, so
    /// only the root (or, under `--no-auth`, anyone) may name it: otherwise a user allowed
    /// `ecr:CreatePullThroughCacheRule` could send it to a server of their own and read it.
    /// `kept`: the rule names it already (an update of its role only), its maker's choice.
    async fn check_rule_credentials(
        &self,
        ctx: &RequestContext,
        upstream_url: &str,
        credential_arn: Option<&str>,
        kept: bool,
    ) -> Result<()> {
        let endpoint = upstream_endpoint(upstream_url)?;
        let login = self.upstream_login(credential_arn, &endpoint).await?;
        let trusted = matches!(ctx.identity, Identity::Root { .. } | Identity::Anonymous | Identity::Server { .. });
        match (login, credential_arn) {
            (Some(login), Some(arn)) if login.upstream.is_none() && !trusted && !kept => {
                Err(PullThroughError::SecretInaccessible(format!(
                    "Unable to access the secret {arn}: it was stored without an upstream registry, so only the root \
                     user may name it in a rule; store it again with `berth secret put --upstream {endpoint}`"
                ))
                .into())
            }
            _ => Ok(()),
        }
    }

    /// `CreatePullThroughCacheRule`: the upstream URL must be usable and the secret must exist,
    /// open and be the caller's to give to that upstream; the upstream itself is not contacted
    /// (`ValidatePullThroughCacheRule` does).
    pub async fn create_cache_rule(
        &self,
        ctx: &RequestContext,
        prefix: &str,
        upstream: UpstreamSettings,
    ) -> Result<CacheRule> {
        self.check_rule_credentials(ctx, &upstream.upstream_registry_url, upstream.credential_arn.as_deref(), false)
            .await?;
        // Counted before the insert: two creations racing at the limit may both pass it.
        if self.meta.cache_rules().await?.len() >= MAX_RULES {
            return Err(PullThroughError::TooManyRules.into());
        }
        let document = serde_json::to_string(&upstream).expect("settings serialize");
        let record =
            self.meta.create_cache_rule(normalize_prefix(prefix), &document, now_millis()).await.map_err(meta_error);
        self.forget_cache_rules();
        rule_from_record(record?)
    }

    /// Every rule, sorted by prefix.
    pub async fn cache_rules(&self) -> Result<Vec<CacheRule>> {
        self.meta.cache_rules().await?.into_iter().map(rule_from_record).collect()
    }

    /// The rule for exactly `prefix`.
    pub async fn cache_rule(&self, prefix: &str) -> Result<CacheRule> {
        let prefix = normalize_prefix(prefix);
        self.cache_rules()
            .await?
            .into_iter()
            .find(|r| r.ecr_repository_prefix == prefix)
            .ok_or_else(|| PullThroughError::RuleNotFound(prefix.to_owned()).into())
    }

    /// `UpdatePullThroughCacheRule`: replaces the credentials (and role) of a rule, checked as
    /// on creation.
    pub async fn update_cache_rule(
        &self,
        ctx: &RequestContext,
        prefix: &str,
        credential_arn: Option<String>,
        custom_role_arn: Option<String>,
    ) -> Result<CacheRule> {
        let mut rule = self.cache_rule(prefix).await?;
        let kept = credential_arn == rule.upstream.credential_arn;
        self.check_rule_credentials(ctx, &rule.upstream.upstream_registry_url, credential_arn.as_deref(), kept).await?;
        rule.upstream.credential_arn = credential_arn;
        rule.upstream.custom_role_arn = custom_role_arn;
        let document = serde_json::to_string(&rule.upstream).expect("settings serialize");
        let record =
            self.meta.update_cache_rule(&rule.ecr_repository_prefix, &document, now_millis()).await.map_err(meta_error);
        self.forget_cache_rules();
        rule_from_record(record?)
    }

    /// `DeletePullThroughCacheRule`: the rule goes; what it cached stays, as on ECR.
    pub async fn delete_cache_rule(&self, prefix: &str) -> Result<CacheRule> {
        let record = self.meta.delete_cache_rule(normalize_prefix(prefix)).await.map_err(meta_error);
        self.forget_cache_rules();
        rule_from_record(record?)
    }

    /// `ValidatePullThroughCacheRule`: asks the upstream's `/v2/` with the rule's credentials
    /// (for Bearer registries that includes getting a token) and says why that failed, if it did.
    pub async fn validate_cache_rule(&self, _ctx: &RequestContext, prefix: &str) -> Result<RuleValidation> {
        let rule = self.cache_rule(prefix).await?;
        let failure = match self.upstream_remote(&rule.upstream).await {
            Err(RegistryError::PullThrough(e)) => Some(e.to_string()),
            Err(other) => return Err(other),
            Ok(remote) => remote.ping().await.err().map(|e| {
                tracing::info!(prefix = rule.ecr_repository_prefix, error = %e, "pull-through cache rule failed validation");
                format!("The upstream registry {} did not accept the rule: {e}", rule.upstream.upstream_registry_url)
            }),
        };
        Ok(RuleValidation { rule, failure })
    }

    fn forget_cache_rules(&self) {
        *self.pull_through.rules.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// The rules, from memory when read less than [`RULES_TTL`] ago (a pull asks on every miss).
    async fn current_cache_rules(&self) -> Result<Arc<Vec<CacheRule>>> {
        if let Some((at, rules)) = &*self.pull_through.rules.lock().unwrap_or_else(|e| e.into_inner())
            && at.elapsed() < RULES_TTL
        {
            return Ok(rules.clone());
        }
        let rules = Arc::new(self.cache_rules().await?);
        *self.pull_through.rules.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), rules.clone()));
        Ok(rules)
    }

    /// The rule covering `name`, if any, with `name` upstream.
    pub(crate) async fn cached_repository(&self, name: &RepositoryName) -> Result<Option<CachedRepository>> {
        Ok(covering_rule(&self.current_cache_rules().await?, name))
    }

    /// Refuses a push into a repository a cache rule covers (ECR does too).
    pub(crate) async fn refuse_push_into_cache(&self, name: &RepositoryName) -> Result<()> {
        match self.cached_repository(name).await? {
            Some(cached) => Err(PullThroughError::PushIntoCache {
                repository: name.to_string(),
                prefix: cached.rule.ecr_repository_prefix,
            }
            .into()),
            None => Ok(()),
        }
    }

    /// The client of a rule's upstream, kept per rule (with its tokens) until the rule or its
    /// secret changes. The secret is read on every use: `berth secret put` (another process, or
    /// another server) rotates it without touching the rule, as Secrets Manager does on AWS.
    pub(crate) async fn rule_remote(&self, rule: &CacheRule) -> Result<berth_remote::Remote> {
        let key = &rule.ecr_repository_prefix;
        let sealed_secret = match &rule.upstream.credential_arn {
            Some(arn) => Some(self.sealed_secret(arn).await?),
            None => None,
        };
        if let Some(kept) = self.pull_through.remotes.lock().unwrap_or_else(|e| e.into_inner()).get(key)
            && kept.rule_updated_at == rule.updated_at
            && kept.sealed_secret == sealed_secret
        {
            return Ok(kept.remote.clone());
        }
        let remote = self.upstream_remote(&rule.upstream).await?;
        let kept = RuleRemote { rule_updated_at: rule.updated_at, sealed_secret, remote: remote.clone() };
        self.pull_through.remotes.lock().unwrap_or_else(|e| e.into_inner()).insert(key.clone(), kept);
        Ok(remote)
    }

    /// A client of the rule's upstream with the rule's credentials.
    async fn upstream_remote(&self, upstream: &UpstreamSettings) -> Result<berth_remote::Remote> {
        let endpoint = upstream_endpoint(&upstream.upstream_registry_url)?;
        let credentials = self.upstream_credentials(upstream.credential_arn.as_deref(), &endpoint).await?;
        Ok(self.remote_client()?.remote(endpoint, credentials))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_kept_without_their_trailing_slash() {
        assert_eq!(normalize_prefix("docker-hub/"), "docker-hub");
        assert_eq!(normalize_prefix("quay"), "quay");
        assert_eq!(normalize_prefix("ROOT"), "ROOT");
    }

    fn rule(prefix: &str, upstream_prefix: &str) -> CacheRule {
        CacheRule {
            ecr_repository_prefix: prefix.into(),
            upstream: UpstreamSettings {
                upstream_registry_url: "quay.io".into(),
                upstream_registry: None,
                upstream_repository_prefix: upstream_prefix.into(),
                credential_arn: None,
                custom_role_arn: None,
            },
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn the_longest_prefix_covers_a_repository_and_maps_it_upstream() {
        let rules = [rule("ROOT", "ROOT"), rule("hub", "library"), rule("hub/team", "ROOT")];
        let covered = |name: &str| {
            covering_rule(&rules, &name.parse().unwrap())
                .map(|c| (c.rule.ecr_repository_prefix, c.upstream_name.to_string()))
        };
        assert_eq!(covered("hub/nginx"), Some(("hub".into(), "library/nginx".into())));
        assert_eq!(covered("hub/team/app"), Some(("hub/team".into(), "app".into())));
        assert_eq!(covered("hubx/app"), Some(("ROOT".into(), "hubx/app".into())));
        assert_eq!(covered("hub"), Some(("ROOT".into(), "hub".into())));
        assert_eq!(covered("h"), None, "no repository can be made under a 1-character name");
        assert_eq!(covering_rule(&rules[1..], &"hub".parse().unwrap()).map(|c| c.upstream_name), None);
    }

    #[test]
    fn a_repository_is_under_its_longest_prefix_rule_else_root() {
        let rule = |prefix: &str| CacheRule {
            ecr_repository_prefix: prefix.into(),
            upstream: UpstreamSettings {
                upstream_registry_url: format!("{prefix}.example"),
                upstream_registry: None,
                upstream_repository_prefix: ROOT_PREFIX.into(),
                credential_arn: None,
                custom_role_arn: None,
            },
            created_at: 0,
            updated_at: 0,
        };
        let rules = [rule("hub"), rule("hub/library"), rule("ROOT")];
        let prefix = |repo| rule_for(&rules, repo).map(|r| r.ecr_repository_prefix.as_str());
        assert_eq!(prefix("hub/library/alpine"), Some("hub/library"));
        assert_eq!(prefix("hub/nginx"), Some("hub"));
        assert_eq!(prefix("hubble/app"), Some("ROOT"), "a prefix is a whole path component");
        assert_eq!(rule_for(&rules[..2], "team/app"), None);
    }

    #[test]
    fn upstreams_are_https_or_loopback_http() {
        assert!(upstream_endpoint("registry-1.docker.io").is_ok());
        assert!(upstream_endpoint("http://127.0.0.1:5001").is_ok());
        let err = upstream_endpoint("http://registry.example.com").unwrap_err();
        assert!(matches!(err, RegistryError::PullThrough(PullThroughError::UpstreamUnsupported(_))), "{err}");
        for url in [
            "https://bob:S3cret@registry.example.com",
            "bob:S3cret@registry.example.com",
            "ftp://bob:S3cret@registry.example.com",
            "https://bob:S3cret@registry.example.com:99999",
        ] {
            let err = upstream_endpoint(url).unwrap_err().to_string();
            assert!(!err.contains("S3cret"), "{err}");
        }
    }
}

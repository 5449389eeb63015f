//! The one authorization decision: may this request's identity perform these ECR actions on
//! this resource? Both planes ask it once per request, before dispatch, with the actions their
//! endpoint declares ([`Authorizer::authorize`]); the service asks it for the decisions only it
//! can make (a mount's source repository); listings ask it per repository to show only what the
//! caller may see. Repository policies are read through a small cache, so a repository without
//! one costs a map lookup, not a database read.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_iam::{Identity, RequestContext};
use berth_meta::MetadataStore;
use berth_spec::RepositoryName;

use crate::repository_policy::{self, Decision, RepositoryPolicy, actions};
use crate::{Registry, RegistryConfig, RegistryError, RepositoryInfo, RepositorySettings, Result};

/// With shared metadata another server may change a policy unseen: its entries are re-read
/// after this long, so a change there takes effect here within this time.
const SHARED_POLICY_TTL: Duration = Duration::from_secs(5);

/// What a stored policy that no longer parses (say, a `Deny` with a `Condition` set by an
/// older version) is enforced as: everything denied, except the root's repair of the policy.
const UNREADABLE_POLICY: &str = r#"{"Statement":[{"Effect":"Deny","Principal":"*","Action":"*"}]}"#;

/// What callers without credentials may do, besides what repository policies grant or deny them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AnonymousAccess {
    /// Nothing (the default: every request needs credentials).
    #[default]
    Nothing,
    /// Pull from any repository: what `--anonymous-pull` grants.
    Pull,
    /// Everything: what `--no-auth` grants.
    Everything,
}

/// The actions a pull performs on `/v2/` (manifests and referrers, blobs, blob checks, tag lists).
const PULL_ACTIONS: [&str; 4] = [
    actions::BATCH_GET_IMAGE,
    actions::GET_DOWNLOAD_URL_FOR_LAYER,
    actions::BATCH_CHECK_LAYER_AVAILABILITY,
    actions::LIST_IMAGES,
];

/// What a request touches, as IAM names resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource<'a> {
    /// Registry-wide calls (`GetAuthorizationToken`, `DescribeRegistry`): IAM's `*`.
    Registry,
    /// Listings over every repository (`_catalog`, `DescribeRepositories` without names):
    /// `arn:aws:ecr:<region>:<account>:repository/*`.
    AllRepositories,
    /// One repository, named as the request spells it: it need not exist (its policy then is
    /// none) nor be a valid name (the operation reports that after authorization).
    Repository(&'a str),
}

pub struct Authorizer {
    meta: Arc<dyn MetadataStore>,
    account: String,
    region: String,
    anonymous: AnonymousAccess,
    policies: PolicyCache,
}

impl Authorizer {
    pub(crate) fn new(meta: Arc<dyn MetadataStore>, config: &RegistryConfig) -> Authorizer {
        Authorizer {
            meta,
            account: config.account_id.clone(),
            region: config.region.clone(),
            anonymous: config.anonymous_access,
            policies: PolicyCache::new(config.shared_metadata),
        }
    }

    /// The resource's ARN, as access-denied messages and policies name it.
    pub fn arn(&self, resource: Resource<'_>) -> String {
        match resource {
            Resource::Registry => "*".to_owned(),
            Resource::AllRepositories => self.repository_arn("*"),
            Resource::Repository(name) => self.repository_arn(name),
        }
    }

    fn repository_arn(&self, name: &str) -> String {
        format!("arn:aws:ecr:{}:{}:repository/{name}", self.region, self.account)
    }

    /// `AccessDenied` (with IAM's message) unless the caller may perform every one of `actions`
    /// (`ecr:<Operation>` names) on `resource`.
    pub async fn authorize(&self, ctx: &RequestContext, actions: &[&str], resource: Resource<'_>) -> Result<()> {
        let policy = match resource {
            Resource::Repository(name) => match name.parse::<RepositoryName>() {
                Ok(repo) => self.policy(&repo, None).await?,
                Err(_) => None,
            },
            Resource::Registry | Resource::AllRepositories => None,
        };
        for action in actions {
            self.decide(ctx, action, resource, policy.as_deref())?;
        }
        Ok(())
    }

    /// Whether the caller may perform `action` on a repository just listed: the listing's copy
    /// of its settings stands in for a read of them.
    pub(crate) async fn allows_listed(&self, ctx: &RequestContext, action: &str, info: &RepositoryInfo) -> bool {
        let policy = self.policy(&info.name, Some(&info.settings)).await.ok().flatten();
        self.decide(ctx, action, Resource::Repository(info.name.as_str()), policy.as_deref()).is_ok()
    }

    /// Today's rules: users and the root may do everything (they hold every permission),
    /// anonymous callers what the server grants them; an explicit `Deny` in the repository policy
    /// overrides both, except the root's access to the policy itself.
    fn decide(
        &self,
        ctx: &RequestContext,
        action: &str,
        resource: Resource<'_>,
        policy: Option<&RepositoryPolicy>,
    ) -> Result<()> {
        let identity = &ctx.identity;
        let granted = match (identity, self.anonymous) {
            (Identity::Anonymous, AnonymousAccess::Everything) => true,
            (Identity::Anonymous, AnonymousAccess::Pull) => {
                matches!(resource, Resource::Repository(_))
                    && PULL_ACTIONS.iter().any(|a| a.eq_ignore_ascii_case(action))
            }
            (Identity::Anonymous, AnonymousAccess::Nothing) => false,
            _ => true,
        };
        let denied_by = match policy.map(|policy| repository_policy::decide(policy, identity, &self.account, action)) {
            Some(Decision::Deny { sid }) => Some(sid),
            _ => None,
        };
        if granted && denied_by.is_none() {
            return Ok(());
        }
        let caller = identity.arn(&self.account);
        let resource = self.arn(resource);
        let reason = match &denied_by {
            Some(_) => "with an explicit deny in a resource-based policy".to_owned(),
            None => format!("because no identity-based policy allows the {action} action"),
        };
        tracing::debug!(
            request_id = ctx.request_id,
            caller,
            action,
            resource,
            explicit_deny = denied_by.is_some(),
            sid = denied_by.as_ref().and_then(Option::as_deref),
            "access denied"
        );
        Err(RegistryError::AccessDenied {
            message: format!("User: {caller} is not authorized to perform: {action} on resource: {resource} {reason}"),
            explicit: denied_by.is_some(),
        })
    }

    /// The enforced policy of `repo` (`None`: none that denies anything), from the cache or the
    /// settings: `listed` if the caller just read them, else the store's.
    async fn policy(
        &self,
        repo: &RepositoryName,
        listed: Option<&RepositorySettings>,
    ) -> Result<Option<Arc<RepositoryPolicy>>> {
        let (cached, generation) = self.policies.get(repo);
        if let Some(policy) = cached {
            return Ok(policy);
        }
        let policy = match listed {
            Some(settings) => enforced_policy(repo, settings),
            None => match self.meta.get_repository(repo).await? {
                Some(repository) => enforced_policy(repo, &RepositorySettings::from_json(&repository.settings)),
                // A repository that does not exist has no policy: the operation itself then
                // reports it missing (or creates it on push).
                None => return Ok(None),
            },
        };
        self.policies.fill(repo, policy.clone(), generation);
        Ok(policy)
    }

    /// Forgets what is cached about `repo`; every write of its settings calls it.
    pub(crate) fn invalidate(&self, repo: &RepositoryName) {
        self.policies.invalidate(repo);
    }
}

/// The policy a settings document enforces.
fn enforced_policy(repo: &RepositoryName, settings: &RepositorySettings) -> Option<Arc<RepositoryPolicy>> {
    let text = settings.repository_policy.as_deref()?;
    let policy = RepositoryPolicy::parse(text).unwrap_or_else(|e| {
        tracing::warn!(repository = %repo, error = %e, "stored repository policy is not enforceable; denying all but its repair");
        RepositoryPolicy::parse(UNREADABLE_POLICY).expect("the fallback policy parses")
    });
    (!policy.is_permissive()).then(|| Arc::new(policy))
}

struct PolicyCache {
    /// `None`: entries hold until invalidated (this process makes every settings write).
    ttl: Option<Duration>,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Bumped by every invalidation, so a read that raced with a write never plants its result.
    generation: u64,
    /// Each existing repository's enforced policy; `None` when it has none that denies anything.
    entries: HashMap<RepositoryName, (Option<Arc<RepositoryPolicy>>, Instant)>,
}

impl PolicyCache {
    fn new(shared_metadata: bool) -> PolicyCache {
        PolicyCache { ttl: shared_metadata.then_some(SHARED_POLICY_TTL), inner: Mutex::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached policy (outer `None`: not cached or stale) and the generation to fill with.
    fn get(&self, repo: &RepositoryName) -> (Option<Option<Arc<RepositoryPolicy>>>, u64) {
        let inner = self.lock();
        let fresh = inner
            .entries
            .get(repo)
            .filter(|(_, loaded)| self.ttl.is_none_or(|ttl| loaded.elapsed() < ttl))
            .map(|(policy, _)| policy.clone());
        (fresh, inner.generation)
    }

    fn fill(&self, repo: &RepositoryName, policy: Option<Arc<RepositoryPolicy>>, generation: u64) {
        let mut inner = self.lock();
        if inner.generation == generation {
            inner.entries.insert(repo.clone(), (policy, Instant::now()));
        }
    }

    fn invalidate(&self, repo: &RepositoryName) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.entries.remove(repo);
    }
}

impl Registry {
    /// The decision both planes ask before dispatch.
    pub fn authorizer(&self) -> &Authorizer {
        &self.authorizer
    }

    /// The service's own hook, for decisions only it can make (a mount's source repository):
    /// `AccessDenied` unless the caller may perform every one of `actions` on `repo`.
    pub async fn authorize(&self, ctx: &RequestContext, repo: &RepositoryName, actions: &[&str]) -> Result<()> {
        self.authorizer.authorize(ctx, actions, Resource::Repository(repo.as_str())).await
    }

    /// A page of the repositories the caller may perform `action` on (`ecr:DescribeRepositories`
    /// for `_catalog` and `DescribeRepositories`), sorted by name, strictly after `after`, at most
    /// `limit` (and whether more remain). Pages skip what the caller may not see, so a page may
    /// take several reads of the store; each repository's decision uses the listing's settings.
    pub async fn list_repositories_for(
        &self,
        ctx: &RequestContext,
        action: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<RepositoryInfo>, bool)> {
        // One visible repository beyond the page says whether more remain.
        let wanted = limit.saturating_add(1);
        let mut visible = Vec::new();
        let mut cursor = after.map(str::to_owned);
        loop {
            let (page, more) = self.list_repositories(cursor.as_deref(), wanted - visible.len()).await?;
            cursor = page.last().map(|info| info.name.to_string());
            for info in page {
                if self.authorizer.allows_listed(ctx, action, &info).await {
                    visible.push(info);
                    if visible.len() == wanted {
                        break;
                    }
                }
            }
            if visible.len() == wanted || !more {
                break;
            }
        }
        let more = visible.len() > limit;
        visible.truncate(limit);
        Ok((visible, more))
    }
}

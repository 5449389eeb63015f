//! Enforcing repository policies: both planes ask [`Registry::authorize`] before an operation on
//! a repository, naming the caller and the ECR actions the request performs. Policies are read
//! through a small cache, so a repository without one costs a map lookup, not a database read.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_spec::RepositoryName;

use berth_iam::RequestContext;

use crate::repository_policy::{self, Decision, RepositoryPolicy};
use crate::{Registry, RegistryError, Result, settings};

/// With shared metadata another server may change a policy unseen: its entries are re-read
/// after this long, so a change there takes effect here within this time.
const SHARED_POLICY_TTL: Duration = Duration::from_secs(5);

/// What a stored policy that no longer parses (say, a `Deny` with a `Condition` set by an
/// older version) is enforced as: everything denied, except the root's repair of the policy.
const UNREADABLE_POLICY: &str = r#"{"Statement":[{"Effect":"Deny","Principal":"*","Action":"*"}]}"#;

pub(crate) struct PolicyCache {
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
    pub(crate) fn new(shared_metadata: bool) -> PolicyCache {
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

    pub(crate) fn invalidate(&self, repo: &RepositoryName) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.entries.remove(repo);
    }
}

/// The policy a stored settings document enforces; one that cannot be read enforces as an
/// unenforceable policy.
fn enforced_policy(repo: &RepositoryName, document: &str) -> Option<Arc<RepositoryPolicy>> {
    let text = settings::repository_policy_in_force(document).unwrap_or_else(|e| {
        tracing::warn!(repository = %repo, error = %e, "repository settings are unreadable; denying all but the root's repair");
        Some(UNREADABLE_POLICY.to_owned())
    })?;
    let policy = RepositoryPolicy::parse(&text).unwrap_or_else(|e| {
        tracing::warn!(repository = %repo, error = %e, "stored repository policy is not enforceable; denying all but its repair");
        RepositoryPolicy::parse(UNREADABLE_POLICY).expect("the fallback policy parses")
    });
    (!policy.is_permissive()).then(|| Arc::new(policy))
}

impl Registry {
    /// `AccessDenied` if `repo`'s policy explicitly denies the caller any of `actions`
    /// (`ecr:<Operation>` names). A repository that does not exist has no policy: the operation
    /// itself then reports it missing (or creates it on push).
    pub async fn authorize(&self, ctx: &RequestContext, repo: &RepositoryName, actions: &[&str]) -> Result<()> {
        let caller = &ctx.identity;
        let (cached, generation) = self.policies.get(repo);
        let policy = match cached {
            Some(policy) => policy,
            None => {
                let Some(repository) = self.meta.get_repository(repo).await? else { return Ok(()) };
                let policy = enforced_policy(repo, &repository.settings);
                self.policies.fill(repo, policy.clone(), generation);
                policy
            }
        };
        let Some(policy) = policy else { return Ok(()) };
        let account = &self.config.account_id;
        for action in actions {
            if let Decision::Deny { sid } = repository_policy::decide(&policy, caller, account, action) {
                tracing::info!(repository = %repo, caller = %caller.arn(account), action, sid, "denied by the repository policy");
                return Err(RegistryError::AccessDenied {
                    caller: caller.arn(account),
                    action: (*action).to_owned(),
                    repository: repo.to_string(),
                });
            }
        }
        Ok(())
    }
}

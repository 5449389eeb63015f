//! The one authorization decision: may this request's identity perform these ECR actions on
//! this resource? Both planes ask it once per request, before dispatch, with the actions their
//! endpoint declares ([`Authorizer::authorize`]); the service asks it for the decisions only it
//! can make (a mount's source repository); listings ask it per repository to show only what the
//! caller may see. The decision is berth-iam's `evaluate`, IAM's rules, over:
//! - the caller's identity policies: a user's own, as stored with it (none: nothing is allowed);
//!   anonymous callers what the server grants them (nothing, Berth's pull policy with
//!   `--anonymous-pull`, everything with `--no-auth`);
//! - the repository's policy as the resource policy.
//!
//! Users' policies are read as one snapshot, compared with the store's credentials generation at
//! most once a second (so a change by `berth user policy`, or by another server on shared
//! PostgreSQL, applies within a second). Repository policies are read through a cache per
//! repository (invalidated by every settings write; with shared metadata re-read after a few
//! seconds), and allowed decisions are kept in it per caller, users' generation and action unless
//! a policy in force reads per-request keys, so a repeated request costs a few map lookups.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use berth_iam::{
    AuthzRequest, ConditionKeys, Decision, Identity, NamedPolicy, Outcome, Policy, PolicySet, RequestContext,
    SizeLimit, Tags, arn, evaluate, managed,
};
use berth_meta::{MetadataStore, Millis};
use berth_spec::RepositoryName;

use berth_meta::Repository;

use crate::principals::{self, PrincipalBindings};
use crate::registry_settings::{self, AccountSetting, RegistrySettings};
use crate::{Registry, RegistryConfig, RegistryError, RepositorySettings, Result};

/// With shared metadata another server may change a policy unseen: its entries are re-read
/// after this long, so a change there takes effect here within this time.
const SHARED_POLICY_TTL: Duration = Duration::from_secs(1);

/// What a stored policy that no longer parses, or a settings document that cannot be read, is
/// enforced as: everything denied to everyone but the root.
const UNREADABLE_POLICY: &str = r#"{"Statement":[{"Effect":"Deny","Principal":"*","Action":"*"}]}"#;

/// What a user's stored policy that no longer parses (or names no managed policy) is enforced
/// as: everything denied to that user.
const UNREADABLE_USER_POLICY: &str = r#"{"Statement":[{"Effect":"Deny","Action":"*","Resource":"*"}]}"#;

/// How often the users' policies are compared with the store: a change made by another process
/// takes effect here within this time.
const USER_POLICIES_REVALIDATE: Duration = Duration::from_secs(1);

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
    /// The identity policies of every user and the registry's settings.
    users: SnapshotCache,
    /// What the server grants callers without credentials.
    anonymous: Box<[NamedPolicy]>,
    repositories: RepositoryCache,
}

impl Authorizer {
    /// The authorizer the registry over `meta` uses (also for offline decisions: `berth policy simulate`).
    pub fn new(meta: Arc<dyn MetadataStore>, config: &RegistryConfig) -> Authorizer {
        let anonymous = match config.anonymous_access {
            AnonymousAccess::Nothing => vec![],
            AnonymousAccess::Pull => vec![NamedPolicy::new("BerthAnonymousPull", Arc::new(managed::anonymous_pull()))],
            AnonymousAccess::Everything => vec![NamedPolicy::new("BerthNoAuth", Arc::new(managed::no_auth()))],
        };
        Authorizer {
            meta,
            account: config.account_id.clone(),
            region: config.region.clone(),
            users: SnapshotCache::default(),
            anonymous: anonymous.into_boxed_slice(),
            repositories: RepositoryCache::new(config.shared_metadata),
        }
    }

    /// The resource's ARN, as policies and access-denied messages name it.
    pub fn arn(&self, resource: Resource<'_>) -> String {
        match resource {
            Resource::Registry => arn::ANY_RESOURCE.to_owned(),
            Resource::AllRepositories => arn::all_repositories_arn(&self.region, &self.account),
            Resource::Repository(name) => arn::repository_arn(&self.region, &self.account, name),
        }
    }

    /// `AccessDenied` (with IAM's message) unless the caller may perform every one of `actions`
    /// (`ecr:<Operation>` names) on `resource`.
    pub async fn authorize(
        &self,
        ctx: &RequestContext,
        actions: &[&'static str],
        resource: Resource<'_>,
    ) -> Result<()> {
        self.authorize_with(ctx, actions, resource, None).await
    }

    /// [`Authorizer::authorize`] for a request that sets tags (`CreateRepository`,
    /// `TagResource`, `UntagResource`): policies see them as `aws:RequestTag/<key>` and
    /// `aws:TagKeys`.
    pub async fn authorize_with(
        &self,
        ctx: &RequestContext,
        actions: &[&'static str],
        resource: Resource<'_>,
        request_tags: Option<&(dyn Tags + Sync)>,
    ) -> Result<()> {
        if is_always_allowed(ctx) {
            return Ok(());
        }
        let users = self.users.snapshot_for(&*self.meta, &ctx.identity).await?;
        let repository = self.repository_of(resource).await?;
        for action in actions {
            self.decide(ctx, &users, action, resource, repository.as_deref(), request_tags)?;
        }
        Ok(())
    }

    /// The decision on `action` with the statements that made it, as [`Authorizer::authorize`]
    /// would enforce it, uncached: what `berth policy simulate` and the console's permissions page
    /// show.
    pub async fn explain(&self, ctx: &RequestContext, action: &str, resource: Resource<'_>) -> Result<Explanation> {
        let users = self.users.snapshot_for(&*self.meta, &ctx.identity).await?;
        let repository = self.repository_of(resource).await?;
        let (decision, message, _) = self.evaluate(ctx, &users, action, resource, repository.as_deref(), None);
        Ok(Explanation { decision, message })
    }

    /// Whether the caller may perform `action` on a repository just listed: the listing's copy
    /// of its settings stands in for a read of them.
    pub(crate) async fn allows_listed(&self, ctx: &RequestContext, action: &'static str, listed: &Repository) -> bool {
        if is_always_allowed(ctx) {
            return true;
        }
        let Ok(name) = listed.name.parse::<RepositoryName>() else { return false };
        let Ok(users) = self.users.snapshot_for(&*self.meta, &ctx.identity).await else { return false };
        match self.repository(&name, Some(&listed.settings)).await {
            Ok(repository) => {
                self.decide(ctx, &users, action, Resource::Repository(&listed.name), Some(&repository), None).is_ok()
            }
            Err(_) => false,
        }
    }

    /// Whether the caller could perform `action` on `repo` were its settings `proposed` rather
    /// than the stored ones: `SetRepositoryPolicy`'s lock-out check.
    pub(crate) async fn allows_with_settings(
        &self,
        ctx: &RequestContext,
        action: &'static str,
        repo: &RepositoryName,
        proposed: &RepositorySettings,
    ) -> Result<bool> {
        if is_always_allowed(ctx) {
            return Ok(true);
        }
        let users = self.users.snapshot_for(&*self.meta, &ctx.identity).await?;
        let access = RepositoryAccess::new(repo, proposed);
        let resource = Resource::Repository(repo.as_str());
        Ok(self.evaluate(ctx, &users, action, resource, Some(&access), None).0.is_allowed())
    }

    async fn repository_of(&self, resource: Resource<'_>) -> Result<Option<Arc<RepositoryAccess>>> {
        Ok(match resource {
            Resource::Repository(name) => match name.parse::<RepositoryName>() {
                Ok(repo) => Some(self.repository(&repo, None).await?),
                Err(_) => None,
            },
            Resource::Registry | Resource::AllRepositories => None,
        })
    }

    fn decide(
        &self,
        ctx: &RequestContext,
        users: &AccessSnapshot,
        action: &'static str,
        resource: Resource<'_>,
        repository: Option<&RepositoryAccess>,
        request_tags: Option<&(dyn Tags + Sync)>,
    ) -> Result<()> {
        let caller = caller_key(ctx);
        if repository.is_some_and(|r| r.allowed(caller, users.generation, action)) {
            return Ok(());
        }
        let (decision, message, varies) = self.evaluate(ctx, users, action, resource, repository, request_tags);
        if decision.is_allowed() {
            if let Some(repository) = repository.filter(|_| !varies) {
                repository.remember(caller, users.generation, action);
            }
            return Ok(());
        }
        let message = message.unwrap_or_default();
        tracing::debug!(request_id = ctx.request_id, "{message}: {decision}");
        Err(RegistryError::AccessDenied { message, explicit: decision.outcome == Outcome::ExplicitDeny })
    }

    /// IAM's decision, its denial message, and whether the policies read per-request keys.
    fn evaluate(
        &self,
        ctx: &RequestContext,
        users: &AccessSnapshot,
        action: &str,
        resource: Resource<'_>,
        repository: Option<&RepositoryAccess>,
        request_tags: Option<&(dyn Tags + Sync)>,
    ) -> (Decision, Option<String>, bool) {
        let identity: &[NamedPolicy] = match &ctx.identity {
            Identity::Anonymous => &self.anonymous,
            Identity::User { name, .. } => users.of(name),
            Identity::Root { .. } | Identity::Server { .. } => &[],
        };
        let repository_policy = repository.and_then(|r| Some((r.policy.as_ref()?, &r.policy_principals)));
        let registry_policy = users.registry_policy_for(action).map(|p| (p, &users.registry_policy_principals));
        // A principal bound to an earlier user of the caller's name names nobody (`principals`).
        let for_caller = |policy: Option<(&NamedPolicy, &PrincipalBindings)>| {
            let Identity::User { name, .. } = &ctx.identity else { return None };
            let (policy, bindings) = policy?;
            principals::for_caller(policy, bindings, &self.account, name, users.created(name))
        };
        let (repository_now, registry_now) = (for_caller(repository_policy), for_caller(registry_policy));
        let policies = PolicySet {
            identity,
            repository: repository_now.as_ref().or(repository_policy.map(|(p, _)| p)),
            registry: registry_now.as_ref().or(registry_policy.map(|(p, _)| p)),
        };
        let resource_arn = self.arn(resource);
        let mut keys = ConditionKeys::new(ctx, &self.account).requested_region(&self.region);
        if let Some(tags) = repository.map(|r| &r.tags).filter(|tags| !tags.is_empty()) {
            keys = keys.resource_tags(tags);
        }
        if let Some(tags) = request_tags {
            keys = keys.request_tags(tags);
        }
        let request = AuthzRequest { action, resource: &resource_arn, keys: &keys };
        let mut decision = evaluate(&request, &policies);
        let identity_only = registry_settings::IDENTITY_POLICY_ACTIONS.iter().any(|a| a.eq_ignore_ascii_case(action));
        if identity_only && decision.is_allowed() && matches!(ctx.identity, Identity::User { .. }) {
            decision = evaluate(&request, &PolicySet { identity, repository: None, registry: None });
        }
        let message = decision.denial_message(&request);
        (decision, message, policies.varies_per_request())
    }

    /// What is known about `repo`'s access, from the cache or its settings: `listed` if the
    /// caller just read them, else the store's. A repository that does not exist has no policy:
    /// the operation itself then reports it missing (or creates it on push). Only the store's
    /// settings, read after the cache's generation was, fill the cache: a listing read before
    /// it may hold settings a write has replaced since, and would keep a revoked grant cached.
    async fn repository(&self, repo: &RepositoryName, listed: Option<&str>) -> Result<Arc<RepositoryAccess>> {
        let (cached, generation) = self.repositories.get(repo);
        if let Some(access) = cached {
            return Ok(access);
        }
        let document = match listed {
            Some(document) => document.to_owned(),
            None => match self.meta.get_repository(repo).await? {
                Some(repository) => repository.settings,
                // Not cached: creating a repository writes no settings, so nothing would
                // invalidate the entry.
                None => return Ok(Arc::default()),
            },
        };
        let access = Arc::new(match RepositorySettings::from_json(&document) {
            Ok(settings) => RepositoryAccess::new(repo, &settings),
            Err(e) => {
                tracing::warn!(repository = %repo, error = %e, "repository settings are unreadable; denying all but the root");
                RepositoryAccess::unreadable(repo)
            }
        });
        if listed.is_none() {
            self.repositories.fill(repo, access.clone(), generation);
        }
        Ok(access)
    }

    /// Whether `/v2/` cross-repository mounts may link blobs (`BLOB_MOUNTING`).
    pub(crate) async fn blob_mounting(&self) -> Result<bool> {
        Ok(self.users.snapshot(&*self.meta).await?.blob_mounting)
    }

    /// Re-reads the users' policies and the registry's settings on the next request: every
    /// write of the registry's settings by this process calls it.
    pub(crate) async fn invalidate_registry(&self) {
        self.users.invalidate().await;
    }

    /// Forgets what is cached about `repo`; every write of its settings calls it.
    pub(crate) fn invalidate(&self, repo: &RepositoryName) {
        self.repositories.invalidate(repo);
    }
}

/// A decision with the statements that made it ([`Authorizer::explain`]).
#[derive(Debug, Clone)]
pub struct Explanation {
    pub decision: Decision,
    /// The access-denied message the APIs would answer; `None` when allowed.
    pub message: Option<String>,
}

/// The server's own work (GC, lifecycle, replication, fills) is always allowed.
fn is_always_allowed(ctx: &RequestContext) -> bool {
    matches!(ctx.identity, Identity::Server { .. })
}

/// What a resource policy that cannot be read is enforced as (see [`NamedPolicy::fail_closed`]).
fn deny_all_but_the_root(limit: SizeLimit) -> Arc<Policy> {
    Arc::new(Policy::parse_resource(UNREADABLE_POLICY, limit).expect("the fallback policy parses"))
}

/// Whose decisions a cache entry holds: a user's name, `":root"` for the root (no user name has
/// a colon), `""` for anonymous callers.
fn caller_key(ctx: &RequestContext) -> &str {
    match &ctx.identity {
        Identity::User { name, .. } => name,
        Identity::Root { .. } => ":root",
        _ => "",
    }
}

/// What decisions read besides a repository's own policy: every user's compiled identity
/// policies and the registry's settings, as of one credentials and one registry-settings
/// generation.
#[derive(Default)]
struct AccessSnapshot {
    /// The store's (credentials, registry settings) generations they were read at (`None`: never).
    generation: Option<(i64, i64)>,
    users: HashMap<String, Box<[NamedPolicy]>>,
    /// Every user's name, with policies or without, and when it was created: a caller not
    /// among them was added since.
    known_users: HashMap<String, Millis>,
    /// The registry policy, as a resource policy.
    registry_policy: Option<NamedPolicy>,
    registry_policy_principals: PrincipalBindings,
    /// `REGISTRY_POLICY_SCOPE` is V2 (the registry policy governs every action), not V1
    /// (replication and pull-through-cache actions only).
    registry_policy_everywhere: bool,
    /// `BLOB_MOUNTING` is ENABLED.
    blob_mounting: bool,
}

impl AccessSnapshot {
    fn of(&self, user: &str) -> &[NamedPolicy] {
        self.users.get(user).map_or(&[], |policies| policies)
    }

    /// When the user now named `user` was created; `None` if there is none.
    fn created(&self, user: &str) -> Option<Millis> {
        self.known_users.get(user).copied()
    }

    /// Whether the registry policy takes part in decisions on `action`.
    fn registry_policy_for(&self, action: &str) -> Option<&NamedPolicy> {
        let applies = self.registry_policy_everywhere
            || registry_settings::V1_SCOPE_ACTIONS.iter().any(|a| a.eq_ignore_ascii_case(action));
        self.registry_policy.as_ref().filter(|_| applies)
    }

    async fn load(meta: &dyn MetadataStore, generation: (i64, i64)) -> Result<AccessSnapshot> {
        let mut users: HashMap<String, Vec<NamedPolicy>> = HashMap::new();
        for (user, stored) in meta.list_user_policies().await? {
            let text = match &stored.document {
                Some(document) => Some(document.as_str()),
                None => managed::by_name(&stored.name),
            };
            let parsed = match text {
                Some(text) => Policy::parse_identity(text, SizeLimit::MANAGED_POLICY).map_err(|e| e.to_string()),
                None => Err("no managed policy has this name".to_owned()),
            };
            let policy = parsed.unwrap_or_else(|e| {
                tracing::warn!(
                    user,
                    policy = stored.name,
                    error = e,
                    "stored user policy is unusable; denying the user everything"
                );
                Policy::parse_identity(UNREADABLE_USER_POLICY, SizeLimit::MANAGED_POLICY)
                    .expect("the fallback policy parses")
            });
            users.entry(user).or_default().push(NamedPolicy::new(&stored.name, Arc::new(policy)));
        }
        let users = users.into_iter().map(|(user, policies)| (user, policies.into_boxed_slice())).collect();
        let settings = RegistrySettings::from_store(meta.registry_settings().await?);
        let registry_policy =
            settings.policy.as_deref().map(|text| match Policy::parse_resource(text, SizeLimit::REGISTRY_POLICY) {
                Ok(policy) => NamedPolicy::new("registry", Arc::new(policy)),
                Err(e) => {
                    tracing::warn!(error = %e, "the stored registry policy does not parse; denying all but the root");
                    NamedPolicy::fail_closed("registry", deny_all_but_the_root(SizeLimit::REGISTRY_POLICY))
                }
            });
        let known_users = meta.list_users().await?.into_iter().map(|user| (user.name, user.created_at)).collect();
        Ok(AccessSnapshot {
            generation: Some(generation),
            users,
            known_users,
            registry_policy,
            registry_policy_everywhere: settings.value(AccountSetting::RegistryPolicyScope) == "V2",
            blob_mounting: settings.value(AccountSetting::BlobMounting) == "ENABLED",
            registry_policy_principals: settings.policy_principals,
        })
    }
}

#[derive(Default)]
struct SnapshotCache {
    /// The snapshot and when its generation was last compared with the store's.
    current: RwLock<(Arc<AccessSnapshot>, Option<Instant>)>,
    /// Held while revalidating, so concurrent requests wait for one reload instead of each doing one.
    refresh: tokio::sync::Mutex<()>,
}

impl SnapshotCache {
    fn fresh(&self) -> Option<Arc<AccessSnapshot>> {
        let current = self.current.read().unwrap_or_else(|e| e.into_inner());
        let fresh = current.1.is_some_and(|checked| checked.elapsed() < USER_POLICIES_REVALIDATE);
        fresh.then(|| current.0.clone())
    }

    async fn snapshot(&self, meta: &dyn MetadataStore) -> Result<Arc<AccessSnapshot>> {
        if let Some(snapshot) = self.fresh() {
            return Ok(snapshot);
        }
        self.revalidated(meta, |checked| checked.elapsed() < USER_POLICIES_REVALIDATE).await
    }

    /// The snapshot for `identity`'s request. A user the snapshot does not know was added since
    /// (by another process: `berth user add`, whose key authentication accepts at once), so its
    /// policies are read at once too rather than up to a second later.
    async fn snapshot_for(&self, meta: &dyn MetadataStore, identity: &Identity) -> Result<Arc<AccessSnapshot>> {
        let asked_at = Instant::now();
        let snapshot = self.snapshot(meta).await?;
        match identity {
            Identity::User { name, .. } if !snapshot.known_users.contains_key(name) => {
                self.revalidated(meta, |checked| checked > asked_at).await
            }
            _ => Ok(snapshot),
        }
    }

    /// The snapshot, compared with the store's generations now unless the last comparison (perhaps
    /// by another caller that held the refresh lock meanwhile) is `recent_enough`.
    async fn revalidated(
        &self,
        meta: &dyn MetadataStore,
        recent_enough: impl Fn(Instant) -> bool,
    ) -> Result<Arc<AccessSnapshot>> {
        let _refreshing = self.refresh.lock().await;
        {
            let current = self.current.read().unwrap_or_else(|e| e.into_inner());
            if current.1.is_some_and(&recent_enough) {
                return Ok(current.0.clone());
            }
        }
        // The generations are read before the policies, so a change in between is seen again on
        // the next check, never missed.
        // Stamped before the store is asked: what it answers is at least this recent.
        let checked_at = Instant::now();
        let generation = (meta.credentials_generation().await?, meta.registry_settings_generation().await?);
        let current = self.current.read().unwrap_or_else(|e| e.into_inner()).0.clone();
        let snapshot = if current.generation == Some(generation) {
            current
        } else {
            Arc::new(AccessSnapshot::load(meta, generation).await?)
        };
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = (snapshot.clone(), Some(checked_at));
        Ok(snapshot)
    }

    /// Makes the next request re-read the store: this process changed it. Waits for a reload in
    /// progress, which may have read the store before the change.
    async fn invalidate(&self) {
        let _refreshing = self.refresh.lock().await;
        self.current.write().unwrap_or_else(|e| e.into_inner()).1 = None;
    }
}

/// A repository's part in decisions, and the decisions made under it.
#[derive(Default)]
struct RepositoryAccess {
    /// Its policy, the resource policy of requests about it.
    policy: Option<NamedPolicy>,
    policy_principals: PrincipalBindings,
    /// Its resource tags (`ecr:ResourceTag/<key>`).
    tags: Vec<(String, String)>,
    /// The actions each caller (user name; `":root"` for the root, `""` for anonymous callers)
    /// was allowed under the users' policies of one generation, while no policy in force reads
    /// per-request keys.
    allowed: Mutex<AllowedActions>,
}

/// Per caller: the (users, registry settings) generations the actions were allowed under, and
/// the actions.
type AllowedActions = HashMap<String, (Option<(i64, i64)>, Vec<&'static str>)>;

impl RepositoryAccess {
    fn new(repo: &RepositoryName, settings: &RepositorySettings) -> RepositoryAccess {
        let name = format!("repository/{repo}");
        let policy = settings.repository_policy.as_deref().map(|text| {
            match Policy::parse_resource(text, SizeLimit::REPOSITORY_POLICY) {
                Ok(policy) => NamedPolicy::new(&name, Arc::new(policy)),
                Err(e) => {
                    tracing::warn!(repository = %repo, error = %e, "stored repository policy does not parse; denying all but the root");
                    NamedPolicy::fail_closed(&name, deny_all_but_the_root(SizeLimit::REPOSITORY_POLICY))
                }
            }
        });
        let tags = settings.resource_tags.iter().map(|t| (t.key.clone(), t.value.clone())).collect();
        let policy_principals = settings.repository_policy_principals.clone();
        RepositoryAccess { policy, policy_principals, tags, allowed: Mutex::default() }
    }

    /// A repository whose settings document cannot be read: fail closed, as for a policy that
    /// does not parse.
    fn unreadable(repo: &RepositoryName) -> RepositoryAccess {
        let policy = NamedPolicy::fail_closed(
            &format!("repository/{repo}"),
            deny_all_but_the_root(SizeLimit::REPOSITORY_POLICY),
        );
        RepositoryAccess { policy: Some(policy), ..RepositoryAccess::default() }
    }

    fn lock(&self) -> MutexGuard<'_, AllowedActions> {
        self.allowed.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn allowed(&self, caller: &str, generation: Option<(i64, i64)>, action: &str) -> bool {
        self.lock().get(caller).is_some_and(|(at, actions)| *at == generation && actions.contains(&action))
    }

    fn remember(&self, caller: &str, generation: Option<(i64, i64)>, action: &'static str) {
        let mut allowed = self.lock();
        let (at, actions) = allowed.entry(caller.to_owned()).or_default();
        if *at != generation {
            *at = generation;
            actions.clear();
        }
        actions.push(action);
    }
}

struct RepositoryCache {
    /// `None`: entries hold until invalidated (this process makes every settings write).
    ttl: Option<Duration>,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Bumped by every invalidation, so a read that raced with a write never plants its result.
    generation: u64,
    entries: HashMap<RepositoryName, (Arc<RepositoryAccess>, Instant)>,
}

impl RepositoryCache {
    fn new(shared_metadata: bool) -> RepositoryCache {
        RepositoryCache { ttl: shared_metadata.then_some(SHARED_POLICY_TTL), inner: Mutex::default() }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached entry (`None`: not cached or stale) and the generation to fill with.
    fn get(&self, repo: &RepositoryName) -> (Option<Arc<RepositoryAccess>>, u64) {
        let inner = self.lock();
        let fresh = inner
            .entries
            .get(repo)
            .filter(|(_, loaded)| self.ttl.is_none_or(|ttl| loaded.elapsed() < ttl))
            .map(|(access, _)| access.clone());
        (fresh, inner.generation)
    }

    fn fill(&self, repo: &RepositoryName, access: Arc<RepositoryAccess>, generation: u64) {
        let mut inner = self.lock();
        if inner.generation == generation {
            inner.entries.insert(repo.clone(), (access, Instant::now()));
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
    pub async fn authorize(&self, ctx: &RequestContext, repo: &RepositoryName, actions: &[&'static str]) -> Result<()> {
        self.authorizer.authorize(ctx, actions, Resource::Repository(repo.as_str())).await
    }

    /// A page of the repositories the caller may perform `action` on (`ecr:DescribeRepositories`
    /// for `_catalog` and `DescribeRepositories`), sorted by name, strictly after `after`, at most
    /// `limit` (and whether more remain). Pages skip what the caller may not see, so a page may
    /// take several reads of the store; each repository's decision uses the listing's settings.
    /// Records come as stored: one whose settings cannot be read is listed (to the root) all the
    /// same, and the caller decides what showing it needs.
    pub async fn list_repositories_for(
        &self,
        ctx: &RequestContext,
        action: &'static str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Repository>, bool)> {
        // One visible repository beyond the page says whether more remain.
        let wanted = limit.saturating_add(1);
        let mut visible = Vec::new();
        let mut cursor = after.map(str::to_owned);
        loop {
            let asked = wanted - visible.len();
            let page = self.meta.list_repositories(cursor.as_deref(), asked).await?;
            let more = page.len() == asked;
            cursor = page.last().map(|listed| listed.name.clone());
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

#[cfg(test)]
mod tests {
    use berth_iam::CredentialKind;
    use berth_meta::{AccessKeyStatus, CredentialStore, SqliteStore, UserRecord};
    use berth_storage::FsBlobStore;

    use super::*;

    /// A listing read before a policy write is judged by the settings it read, but must not plant
    /// them in the cache afterwards: the write's revocation would then not hold until the next.
    #[tokio::test]
    async fn a_listing_older_than_a_policy_write_is_not_cached() {
        let dir = tempfile::tempdir().unwrap();
        let meta = SqliteStore::open(&dir.path().join("metadata.db")).await.unwrap();
        let record = UserRecord {
            name: "eve".into(),
            access_key_id: "AKIAEVE".into(),
            secret_ciphertext: vec![],
            created_at: 1,
            key_status: AccessKeyStatus::Active,
        };
        meta.create_user(&record, &[]).await.unwrap();
        let blobs = FsBlobStore::open(dir.path()).await.unwrap();
        let registry = Registry::new(Arc::new(blobs), Arc::new(meta), RegistryConfig::default());
        let root = RequestContext {
            identity: Identity::Root { access_key_id: "AKIAROOT".into(), via: CredentialKind::SigV4 },
            ..RequestContext::server("test", "test-request".into())
        };
        let eve = RequestContext {
            identity: Identity::User {
                name: "eve".into(),
                access_key_id: "AKIAEVE".into(),
                via: CredentialKind::SigV4,
            },
            ..root.clone()
        };
        let repo: RepositoryName = "team-b/app".parse().unwrap();
        registry.create_repository(&root, &repo, &RepositorySettings::default()).await.unwrap();
        let grant = |effect: &str| {
            format!(
                r#"{{"Statement":[{{"Effect":"{effect}","Principal":{{"AWS":"arn:aws:iam::000000000000:user/eve"}},"Action":"ecr:BatchGetImage"}}]}}"#
            )
        };
        registry.set_repository_policy(&root, &repo, &grant("Allow"), false).await.unwrap();
        let listed = registry.metadata().list_repositories(None, 10).await.unwrap().remove(0);
        registry.set_repository_policy(&root, &repo, &grant("Deny"), false).await.unwrap();

        assert!(registry.authorizer().allows_listed(&eve, "ecr:BatchGetImage", &listed).await, "judged as listed");
        let err = registry.authorize(&eve, &repo, &["ecr:BatchGetImage"]).await.unwrap_err();
        assert!(matches!(err, RegistryError::AccessDenied { explicit: true, .. }), "{err:?}");
    }
}

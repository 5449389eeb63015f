//! ECR's per-repository policies as service operations: lifecycle policies (put, get, delete,
//! preview, and their periodic execution) and repository policies (stored; enforced in `access.rs`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use berth_iam::RequestContext;
use berth_meta::{ImageRecord, MetaError, Millis, StorageClass};
use berth_spec::{Digest, Manifest, ManifestKind, RepositoryName};

use crate::error::PolicyKind;
use crate::lifecycle::{self, LifecycleImage, LifecyclePolicy, PolicyError, RuleAction};
use crate::settings::LifecyclePreview;
use crate::{Registry, RegistryError, RepositoryInfo, Result, images::SCAN_BATCH, now_millis};

/// A repository's lifecycle policy and when it last ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecyclePolicyInfo {
    pub text: String,
    pub last_evaluated_at: Option<Millis>,
}

/// One image a lifecycle preview expires or archives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviewResult {
    pub digest: Digest,
    pub tags: Vec<String>,
    pub pushed_at: Millis,
    /// The image's storage class now.
    pub storage_class: StorageClass,
    pub action: RuleAction,
    pub rule_priority: u32,
}

/// A preview's policy and every image it expires or archives, sorted by digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecyclePreviewOutcome {
    pub policy_text: String,
    pub results: Vec<PreviewResult>,
}

/// A repository's lifecycle policy judged over all its images at `evaluated_at`: what a run
/// would expire now, and why the rest stays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleExplanation {
    pub policy: LifecyclePolicyInfo,
    pub evaluated_at: Millis,
    pub evaluation: lifecycle::Evaluation,
}

/// When lifecycle policies run: every `interval`, and at the next maintenance after a policy is put.
#[derive(Debug, Default)]
pub(crate) struct LifecycleSchedule {
    pub(crate) requested: AtomicBool,
    last_run: Mutex<Option<Instant>>,
}

/// The results of the last previews read on this server, so each page of
/// `GetLifecyclePolicyPreview` slices the evaluation its first read made instead of judging the
/// whole repository again (n/100 pages × n images). As on ECR, a preview's results are then a
/// snapshot of when it was first read; another Start (a new start time) judges afresh.
#[derive(Debug, Default)]
pub(crate) struct PreviewCache(Mutex<VecDeque<CachedPreview>>);

#[derive(Debug)]
struct CachedPreview {
    repo: RepositoryName,
    started_at: Millis,
    outcome: Arc<LifecyclePreviewOutcome>,
}

/// Results kept across all cached previews (each about 250 bytes); the newest preview stays
/// whatever its size.
const PREVIEW_RESULTS_CACHED: usize = 100_000;

impl PreviewCache {
    fn get(&self, repo: &RepositoryName, preview: &LifecyclePreview) -> Option<Arc<LifecyclePreviewOutcome>> {
        let cached = self.0.lock().unwrap_or_else(|e| e.into_inner());
        cached
            .iter()
            .find(|c| {
                &c.repo == repo && c.started_at == preview.started_at && c.outcome.policy_text == preview.policy_text
            })
            .map(|c| c.outcome.clone())
    }

    /// Drops the repository's preview: a start within the same millisecond as the last one
    /// must not find it (on other servers the start time alone tells them apart).
    fn forget(&self, repo: &RepositoryName) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).retain(|c| &c.repo != repo);
    }

    fn put(&self, repo: &RepositoryName, started_at: Millis, outcome: Arc<LifecyclePreviewOutcome>) {
        let mut cached = self.0.lock().unwrap_or_else(|e| e.into_inner());
        cached.retain(|c| &c.repo != repo);
        cached.push_front(CachedPreview { repo: repo.clone(), started_at, outcome });
        while cached.len() > 1 && cached.iter().map(|c| c.outcome.results.len()).sum::<usize>() > PREVIEW_RESULTS_CACHED
        {
            cached.pop_back();
        }
    }
}

fn invalid(kind: PolicyKind) -> impl Fn(PolicyError) -> RegistryError {
    move |e| RegistryError::PolicyInvalid { kind, reason: e.0 }
}

impl Registry {
    /// Sets the lifecycle policy (validated as ECR does); it first runs at the next maintenance.
    pub async fn put_lifecycle_policy(&self, ctx: &RequestContext, repo: &RepositoryName, text: &str) -> Result<()> {
        LifecyclePolicy::parse(text).map_err(invalid(PolicyKind::Lifecycle))?;
        self.update_settings(ctx, repo, |settings| {
            settings.lifecycle_policy = Some(text.to_owned());
            settings.lifecycle_evaluated_at = None;
            Ok(())
        })
        .await?;
        self.lifecycle.requested.store(true, Ordering::Relaxed);
        Ok(())
    }

    pub async fn lifecycle_policy(&self, repo: &RepositoryName) -> Result<LifecyclePolicyInfo> {
        let settings = self.describe_repository(repo).await?.settings;
        match settings.lifecycle_policy {
            Some(text) => Ok(LifecyclePolicyInfo { text, last_evaluated_at: settings.lifecycle_evaluated_at }),
            None => Err(RegistryError::PolicyNotFound(PolicyKind::Lifecycle)),
        }
    }

    /// Removes the lifecycle policy, returning it.
    pub async fn delete_lifecycle_policy(
        &self,
        ctx: &RequestContext,
        repo: &RepositoryName,
    ) -> Result<LifecyclePolicyInfo> {
        let mut removed = None;
        self.update_settings(ctx, repo, |settings| {
            let text = settings.lifecycle_policy.take().ok_or(RegistryError::PolicyNotFound(PolicyKind::Lifecycle))?;
            removed = Some(LifecyclePolicyInfo { text, last_evaluated_at: settings.lifecycle_evaluated_at.take() });
            Ok(())
        })
        .await?;
        removed.ok_or_else(|| RegistryError::Internal("the removed lifecycle policy went missing".into()))
    }

    /// Starts a preview of lifecycle policy `text` on the repository (the caller passes the
    /// stored policy to preview that). Complete at once: its results are evaluated when read.
    pub async fn start_lifecycle_preview(&self, ctx: &RequestContext, repo: &RepositoryName, text: &str) -> Result<()> {
        LifecyclePolicy::parse(text).map_err(invalid(PolicyKind::Lifecycle))?;
        self.update_settings(ctx, repo, |settings| {
            settings.lifecycle_preview =
                Some(LifecyclePreview { policy_text: text.to_owned(), started_at: now_millis() });
            Ok(())
        })
        .await?;
        self.previews.forget(repo);
        Ok(())
    }

    /// The last preview's policy and the images it expires or archives: the images that were
    /// pushed when it started and existed when it was first read, judged at its start time.
    pub async fn lifecycle_preview(&self, repo: &RepositoryName) -> Result<Arc<LifecyclePreviewOutcome>> {
        let preview = self.last_preview(repo).await?;
        if let Some(outcome) = self.previews.get(repo, &preview) {
            return Ok(outcome);
        }
        let started_at = preview.started_at;
        let (explanation, images) = self.evaluate_preview(repo, preview).await?;
        let by_digest: HashMap<&Digest, &LifecycleImage> = images.iter().map(|i| (&i.digest, i)).collect();
        let mut results: Vec<PreviewResult> = explanation
            .evaluation
            .into_actions()
            .filter_map(|(verdict, action)| {
                let image = by_digest.get(&verdict.digest)?;
                Some(PreviewResult {
                    digest: verdict.digest,
                    tags: image.tags.clone(),
                    pushed_at: image.pushed_at,
                    storage_class: if image.archived { StorageClass::Archive } else { StorageClass::Standard },
                    action,
                    rule_priority: verdict.rule_priority,
                })
            })
            .collect();
        results.sort_by(|a, b| a.digest.cmp(&b.digest));
        let outcome = Arc::new(LifecyclePreviewOutcome { policy_text: explanation.policy.text, results });
        self.previews.put(repo, started_at, outcome.clone());
        Ok(outcome)
    }

    /// The last preview with the reason each image stays: what the console draws for
    /// `GetLifecyclePolicyPreview`, from the same evaluation.
    pub async fn explain_lifecycle_preview(&self, repo: &RepositoryName) -> Result<LifecycleExplanation> {
        let preview = self.last_preview(repo).await?;
        Ok(self.evaluate_preview(repo, preview).await?.0)
    }

    async fn last_preview(&self, repo: &RepositoryName) -> Result<LifecyclePreview> {
        self.describe_repository(repo)
            .await?
            .settings
            .lifecycle_preview
            .ok_or(RegistryError::PolicyNotFound(PolicyKind::LifecyclePreview))
    }

    async fn evaluate_preview(
        &self,
        repo: &RepositoryName,
        preview: LifecyclePreview,
    ) -> Result<(LifecycleExplanation, Vec<LifecycleImage>)> {
        let policy = LifecyclePolicy::parse(&preview.policy_text).map_err(invalid(PolicyKind::Lifecycle))?;
        let images = self.lifecycle_images(repo, Some(preview.started_at)).await?;
        let evaluation = lifecycle::explain(&policy, &images, preview.started_at);
        let policy = LifecyclePolicyInfo { text: preview.policy_text, last_evaluated_at: None };
        Ok((LifecycleExplanation { policy, evaluated_at: preview.started_at, evaluation }, images))
    }

    /// What the repository's lifecycle policy would do if it ran now (read-only: the console's
    /// preview, judged by the same evaluator as expiry and `GetLifecyclePolicyPreview`).
    pub async fn explain_lifecycle_policy(&self, repo: &RepositoryName) -> Result<LifecycleExplanation> {
        let policy = self.lifecycle_policy(repo).await?;
        let parsed = LifecyclePolicy::parse(&policy.text).map_err(invalid(PolicyKind::Lifecycle))?;
        let images = self.lifecycle_images(repo, None).await?;
        let evaluated_at = now_millis();
        let evaluation = lifecycle::explain(&parsed, &images, evaluated_at);
        Ok(LifecycleExplanation { policy, evaluated_at, evaluation })
    }

    /// The repository's images as the lifecycle evaluator sees them, only those pushed at or
    /// before `pushed_by` if given.
    async fn lifecycle_images(&self, repo: &RepositoryName, pushed_by: Option<Millis>) -> Result<Vec<LifecycleImage>> {
        self.repository(repo).await?;
        let mut images = Vec::new();
        self.scan_images(repo, None, SCAN_BATCH, |image| {
            if pushed_by.is_none_or(|limit| image.manifest.pushed_at <= limit) {
                images.push(lifecycle_image(image));
            }
            true
        })
        .await?;
        Ok(images)
    }

    /// Runs every repository's lifecycle policy if one is due: at the first maintenance, after
    /// a policy was put, and every `lifecycle_interval`.
    pub(crate) async fn lifecycle_if_due(&self) {
        let requested = self.lifecycle.requested.swap(false, Ordering::Relaxed);
        {
            let mut last_run = self.lifecycle.last_run.lock().unwrap_or_else(|e| e.into_inner());
            let due = requested || last_run.is_none_or(|at| at.elapsed() >= self.config.lifecycle_interval);
            if !due {
                return;
            }
            *last_run = Some(Instant::now());
        }
        let started = Instant::now();
        let outcome = self.run_lifecycle_policies().await;
        crate::status::record_run("lifecycle", started, &outcome, |expired| *expired as u64);
        if let Err(e) = &outcome {
            tracing::warn!(error = %e, "running lifecycle policies failed");
        }
        self.status.record(|status| status.last_lifecycle_run = Some(crate::status::finished(&outcome)));
    }

    /// Applies every repository's lifecycle policy now; returns how many images it expired or
    /// archived. A repository whose run fails does not stop the others, but the run as a whole
    /// then fails naming the first such repository (each is logged), so the run's metrics and
    /// status say it failed. A repository deleted meanwhile is no failure.
    pub async fn run_lifecycle_policies(&self) -> Result<usize> {
        let ctx = RequestContext::server("lifecycle", uuid::Uuid::new_v4().to_string());
        let mut expired = 0;
        let mut first_failure = None;
        let mut after: Option<String> = None;
        loop {
            let page = self.meta.list_repositories(after.as_deref(), SCAN_BATCH).await?;
            for repository in &page {
                let name = repository.name.clone();
                // One repository's unreadable settings stop only its own policy.
                let info = match RepositoryInfo::try_from(repository.clone()) {
                    Ok(info) => info,
                    Err(e) => {
                        tracing::warn!(repository = name, error = %e, "lifecycle policy not run");
                        continue;
                    }
                };
                let Some(text) = &info.settings.lifecycle_policy else { continue };
                match self.apply_lifecycle_policy(&ctx, &info.name, text).await {
                    Ok(n) => expired += n,
                    Err(RegistryError::NameUnknown(_)) => {}
                    Err(e) => {
                        tracing::warn!(repository = name, error = %e, "lifecycle policy run failed");
                        first_failure.get_or_insert_with(|| {
                            RegistryError::Internal(format!("the lifecycle policy of {name} failed: {e}"))
                        });
                    }
                }
            }
            match page.last() {
                Some(last) if page.len() == SCAN_BATCH => after = Some(last.name.clone()),
                _ => return first_failure.map_or(Ok(expired), Err),
            }
        }
    }

    /// Expires what `text` selects in `repo` through the ordinary manifest delete (an index
    /// before what it lists), then archives what it transitions as `UpdateImageStorageClass`
    /// does, and records the run. An image whose tags or storage class changed since it was
    /// judged is left for the next run.
    async fn apply_lifecycle_policy(&self, ctx: &RequestContext, repo: &RepositoryName, text: &str) -> Result<usize> {
        let policy = LifecyclePolicy::parse(text).map_err(invalid(PolicyKind::Lifecycle))?;
        let origin = self.origin(ctx);
        let images = self.lifecycle_images(repo, None).await?;
        let by_digest: HashMap<&Digest, &LifecycleImage> = images.iter().map(|i| (&i.digest, i)).collect();
        let now = now_millis();
        let mut applied = 0;
        for (verdict, action) in lifecycle::explain(&policy, &images, now).into_actions() {
            let Some(judged) = by_digest.get(&verdict.digest) else { continue };
            let Some(current) = self.meta.get_image(repo, &verdict.digest).await? else { continue };
            let archived_now = current.manifest.storage_class == StorageClass::Archive;
            if action == RuleAction::Transition && archived_now {
                continue; // an untagged child that went along with its index, counted there
            }
            let tags = |list: &[String]| list.iter().cloned().collect::<HashSet<_>>();
            if tags(&current.tags) != tags(&judged.tags) || archived_now != judged.archived {
                tracing::info!(repository = %repo, digest = %verdict.digest, "lifecycle: image changed since evaluation; left for the next run");
                continue;
            }
            let outcome = match action {
                RuleAction::Expire => self.meta.delete_manifest(&origin, repo, &verdict.digest).await.map(|()| 1),
                // An index takes its untagged children along: they count too.
                RuleAction::Transition => self
                    .meta
                    .update_storage_class(&origin, repo, &verdict.digest, StorageClass::Archive, now_millis())
                    .await
                    .map(|changes| changes.len()),
            };
            match outcome {
                Ok(count) => {
                    applied += count;
                    let done = if action == RuleAction::Expire { "expired" } else { "archived" };
                    tracing::info!(repository = %repo, digest = %verdict.digest, tags = ?judged.tags, rule = verdict.rule_priority, "lifecycle: image {done}");
                }
                // Deleted meanwhile, or an index listing it was pushed meanwhile: it stays.
                Err(MetaError::ManifestUnknown(_) | MetaError::ManifestReferenced { .. }) => {}
                Err(e) => {
                    self.manifests.invalidate_repo(repo);
                    return Err(e.into());
                }
            }
        }
        self.manifests.invalidate_repo(repo);
        self.update_settings(ctx, repo, |settings| {
            if settings.lifecycle_policy.as_deref() == Some(text) {
                settings.lifecycle_evaluated_at = Some(now);
            }
            Ok(())
        })
        .await?;
        Ok(applied)
    }

    /// Sets the repository policy once it parses as an IAM resource policy Berth can evaluate
    /// (conditions included) and names no `Resource`, as ECR requires. Unless `force`, one that
    /// would deny the caller `ecr:SetRepositoryPolicy` on the repository is refused, as ECR
    /// refuses a lock-out.
    pub async fn set_repository_policy(
        &self,
        ctx: &RequestContext,
        repo: &RepositoryName,
        text: &str,
        force: bool,
    ) -> Result<()> {
        let policy = berth_iam::Policy::parse_repository(text)
            .map_err(|e| RegistryError::PolicyInvalid { kind: PolicyKind::Repository, reason: e.to_string() })?;
        self.refuse_unknown_users(&policy, PolicyKind::Repository).await?;
        let principals = self.principal_bindings(&policy).await?;
        if !force {
            let mut proposed = self.describe_repository(repo).await?.settings;
            proposed.repository_policy = Some(text.to_owned());
            proposed.repository_policy_principals = principals.clone();
            let action = berth_iam::actions::SET_REPOSITORY_POLICY;
            if !self.authorizer.allows_with_settings(ctx, action, repo, &proposed).await? {
                // Not `PolicyInvalid`: tools retry "Invalid repository policy provided" for a
                // while (IAM propagation), and this answer will not change.
                return Err(RegistryError::SettingInvalid {
                    member: "force",
                    reason: "the policy would deny you ecr:SetRepositoryPolicy on this repository, so you could \
                             not change it again; set force to set it anyway"
                        .into(),
                });
            }
        }
        self.update_settings(ctx, repo, |settings| {
            settings.repository_policy = Some(text.to_owned());
            settings.repository_policy_principals = principals.clone();
            Ok(())
        })
        .await
        .map(|_| ())
    }

    pub async fn repository_policy(&self, repo: &RepositoryName) -> Result<String> {
        self.describe_repository(repo)
            .await?
            .settings
            .repository_policy
            .ok_or(RegistryError::PolicyNotFound(PolicyKind::Repository))
    }

    /// Removes the repository policy, returning it.
    pub async fn delete_repository_policy(&self, ctx: &RequestContext, repo: &RepositoryName) -> Result<String> {
        let mut removed = None;
        self.update_settings(ctx, repo, |settings| {
            removed =
                Some(settings.repository_policy.take().ok_or(RegistryError::PolicyNotFound(PolicyKind::Repository))?);
            settings.repository_policy_principals.clear();
            Ok(())
        })
        .await?;
        removed.ok_or_else(|| RegistryError::Internal("the removed repository policy went missing".into()))
    }
}

/// An image's facts for the evaluator; an index's children come from its stored bytes.
fn lifecycle_image(image: ImageRecord) -> LifecycleImage {
    let manifest = image.manifest;
    let children = match Manifest::parse(&manifest.content, Some(&manifest.media_type)) {
        Ok(parsed) if parsed.kind == ManifestKind::Index => parsed.manifests.into_iter().map(|d| d.digest).collect(),
        _ => vec![],
    };
    LifecycleImage {
        digest: manifest.digest,
        tags: image.tags,
        pushed_at: manifest.pushed_at,
        children,
        subject: manifest.subject,
        last_pulled_at: manifest.last_pulled_at,
        archived: manifest.storage_class == StorageClass::Archive,
        last_archived_at: manifest.last_archived_at,
        last_activated_at: manifest.last_activated_at,
    }
}

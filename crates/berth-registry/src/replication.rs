//! Replication to other registries (ARCHITECTURE.md, "Replication").
//!
//! The registry's replication configuration (ECR's rules: destinations by region and registry id,
//! repository filters by prefix) is one document in the metadata store. The server's
//! configuration file maps each destination to a registry URL and an access key
//! ([`Destination`]). A configuration may name a destination the server has no mapping for, as
//! ECR accepts any region and registry (infrastructure code applies the same rules everywhere);
//! nothing is sent there, and every image a rule sends there reads FAILED for it, saying why.
//!
//! The work comes from the event log: each destination is a consumer of its own
//! (`replication/<region>/<registry id>`), so a destination that is down or refuses holds up only
//! itself, and servers sharing PostgreSQL never send the same event twice at once. A
//! [`Replicator`] claims a destination's events and, for every `manifest.pushed` and `tag.set` in
//! a repository a rule sends there, pushes the image in a pullable order: a referrer's subject
//! first, an index's children first, a manifest's blobs first (skipped when the destination has
//! them: HEAD, else a cross-repository mount from a repository replicated there too), then the
//! manifest itself, by its tag if the event sets one (one push at the destination, as ECR's
//! replicas record), else by digest. Everything is keyed by digest, so a repeated delivery
//! (after a crash or an expired lease) changes nothing at the destination. A failed event is
//! released with the later events of its repository and retried with exponential backoff; the
//! image's status at the destination reads FAILED with the reason until a retry succeeds. A tag
//! the destination holds immutable on another image is left out, as on ECR: the image is
//! replicated without it (COMPLETE). One the destination keeps refusing for what it is (a
//! manifest it does not accept) is given up after [`REFUSED_ATTEMPTS`]: it stays FAILED, as on
//! ECR, and the later events of its repository go on. Deletes are not replicated, as on ECR.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use berth_meta::{Millis, ReplicationStatusRecord};
use berth_spec::{Descriptor, Digest, Manifest, Reference, RepositoryName, Tag};
use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::events::{ClaimedEvent, EventKind, EventLog, tagged_by_same_push};
use crate::{Registry, RegistryError, Result, now_millis};

/// The `User-Agent` of replication pushes. A destination Berth treats a push that sends it as
/// replication: it must be allowed `ecr:ReplicateImage` as well, and a repository it creates gets
/// the REPLICATION creation template (see `Registry::push_purpose`).
pub const REPLICATION_USER_AGENT: &str = concat!("berth-replication/", env!("CARGO_PKG_VERSION"));

/// Whether a request says it is another Berth's replication.
pub fn is_replication(ctx: &berth_iam::RequestContext) -> bool {
    ctx.user_agent.as_deref().is_some_and(|agent| agent.starts_with("berth-replication/"))
}

/// ECR's limits: rules per configuration, destinations per rule, unique destinations in all,
/// filters per rule.
const MAX_RULES: usize = 10;
const MAX_DESTINATIONS_PER_RULE: usize = 100;
const MAX_UNIQUE_DESTINATIONS: usize = 25;
const MAX_FILTERS_PER_RULE: usize = 100;

/// Events claimed at once per destination, and how long a claim may take before another
/// server presumes this one dead and sends them again (harmless: pushes are idempotent).
/// A server that crashes holds its claim until the lease ends; one that stops gives it back.
const CLAIM_BATCH: usize = 8;
const LEASE: Duration = Duration::from_secs(120);
/// How often an idle destination looks for new events.
const POLL: Duration = Duration::from_millis(500);
/// Retry backoff: doubles from the first to the cap.
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(30);
/// Subject and index nesting followed at most (a subject's subject, an index of indexes).
const MAX_DEPTH: usize = 8;

/// A destination as ECR names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DestinationId {
    pub region: String,
    pub registry_id: String,
}

impl std::fmt::Display for DestinationId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.region, self.registry_id)
    }
}

/// The registry's replication configuration, as stored (ECR's JSON shape, camelCase).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationConfiguration {
    pub rules: Vec<ReplicationRule>,
    /// The rule sets this one replaced, oldest first (the last [`SUPERSEDED_MAX`]): an image is
    /// replicated by the rules in force when it was pushed (ECR applies a configuration to pushes
    /// after it), not by those in force when its event is sent — a destination may be down for
    /// days meanwhile.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub superseded: Vec<SupersededRules>,
}

/// Rules a later configuration replaced, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SupersededRules {
    /// When these rules stopped applying (milliseconds since the epoch).
    pub until: Millis,
    pub rules: Vec<ReplicationRule>,
}

/// Rule sets kept besides the current one at most (older ones go first).
const SUPERSEDED_MAX: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationRule {
    pub destinations: Vec<DestinationId>,
    /// Repository name prefixes (ECR's `PREFIX_MATCH`, its only filter type); none = every
    /// repository.
    #[serde(default)]
    pub repository_prefixes: Vec<String>,
}

impl ReplicationRule {
    pub fn matches(&self, repository: &str) -> bool {
        self.repository_prefixes.is_empty() || self.repository_prefixes.iter().any(|p| repository.starts_with(p))
    }
}

impl ReplicationConfiguration {
    /// Where images of `repository` go: every destination of every rule that matches it.
    pub fn destinations_for(&self, repository: &str) -> BTreeSet<&DestinationId> {
        Self::matching(&self.rules, repository)
    }

    /// Where an image of `repository` pushed at `at` goes: by the rules in force then.
    pub fn destinations_at(&self, repository: &str, at: Millis) -> BTreeSet<&DestinationId> {
        let rules = self.superseded.iter().find(|s| at < s.until).map_or(&self.rules, |s| &s.rules);
        Self::matching(rules, repository)
    }

    fn matching<'a>(rules: &'a [ReplicationRule], repository: &str) -> BTreeSet<&'a DestinationId> {
        rules.iter().filter(|r| r.matches(repository)).flat_map(|r| &r.destinations).collect()
    }

    /// `rules` in force from `now` on, after this configuration's, whose rules join the history.
    /// (An event older than the oldest rule set kept is judged by that one.)
    fn followed_by(self, rules: Vec<ReplicationRule>, now: Millis) -> ReplicationConfiguration {
        let mut superseded = self.superseded;
        superseded.push(SupersededRules { until: now, rules: self.rules });
        let excess = superseded.len().saturating_sub(SUPERSEDED_MAX);
        superseded.drain(..excess);
        ReplicationConfiguration { rules, superseded }
    }

    /// ECR's rules beyond the model's member constraints: at most 10 rules, 100 destinations per
    /// rule and 25 unique destinations, 1 to 100 filters when given, no destination that is this
    /// registry itself.
    fn validate(&self, this: &DestinationId) -> Result<()> {
        let invalid = |reason: String| Err(RegistryError::ReplicationConfigurationInvalid(reason));
        if self.rules.len() > MAX_RULES {
            return invalid(format!("a replication configuration has at most {MAX_RULES} rules"));
        }
        let mut unique = HashSet::new();
        for rule in &self.rules {
            if rule.destinations.len() > MAX_DESTINATIONS_PER_RULE {
                return invalid(format!("a rule has at most {MAX_DESTINATIONS_PER_RULE} destinations"));
            }
            if rule.repository_prefixes.len() > MAX_FILTERS_PER_RULE {
                return invalid(format!("a rule has at most {MAX_FILTERS_PER_RULE} repository filters"));
            }
            for destination in &rule.destinations {
                if destination == this {
                    return invalid(format!(
                        "destination {destination} is this registry itself: replication needs another region or \
                         registry"
                    ));
                }
                unique.insert(destination);
            }
        }
        if unique.len() > MAX_UNIQUE_DESTINATIONS {
            return invalid(format!("a replication configuration has at most {MAX_UNIQUE_DESTINATIONS} destinations"));
        }
        Ok(())
    }
}

/// Where an image stands at a destination (ECR's `ReplicationStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicationState {
    InProgress,
    Complete,
    Failed,
}

impl ReplicationState {
    pub fn as_str(self) -> &'static str {
        match self {
            ReplicationState::InProgress => "IN_PROGRESS",
            ReplicationState::Complete => "COMPLETE",
            ReplicationState::Failed => "FAILED",
        }
    }
}

impl Registry {
    /// The stored configuration, or no rules (a fresh ECR registry's).
    pub async fn replication_configuration(&self) -> Result<ReplicationConfiguration> {
        match self.meta.replication_configuration().await? {
            None => Ok(ReplicationConfiguration::default()),
            Some(document) => serde_json::from_str(&document).map_err(|e| {
                RegistryError::Internal(format!("the stored replication configuration does not parse: {e}"))
            }),
        }
    }

    /// Validates and stores `configuration` (replacing the previous one); images pushed from now
    /// on are replicated by it.
    pub async fn put_replication_configuration(
        &self,
        configuration: ReplicationConfiguration,
    ) -> Result<ReplicationConfiguration> {
        let this = DestinationId { region: self.config.region.clone(), registry_id: self.config.account_id.clone() };
        configuration.validate(&this)?;
        let named: BTreeSet<&DestinationId> = configuration.rules.iter().flat_map(|r| &r.destinations).collect();
        for unknown in named.into_iter().filter(|d| !self.maps(d)) {
            tracing::warn!(
                destination = %unknown,
                "the replication configuration names a destination this server has no [[replication.destinations]] \
                 entry for: nothing is sent there"
            );
        }
        let now = now_millis();
        let stored = self.replication_configuration().await?.followed_by(configuration.rules, now);
        let document = serde_json::to_string(&stored)
            .map_err(|e| RegistryError::Internal(format!("encoding the replication configuration: {e}")))?;
        self.meta.put_replication_configuration(&document, now).await?;
        Ok(stored)
    }

    /// Where `digest` of `repository` stands at each destination it was sent to, IN_PROGRESS at
    /// each one whose replicator has yet to take its push (from the outbox), and FAILED at each
    /// destination a rule sends it to that this server cannot reach.
    pub async fn replication_statuses(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<Vec<ReplicationStatusRecord>> {
        // By the rules in force when the image was pushed, as its event is judged.
        let by_digest = Reference::Digest(digest.clone());
        let pushed_at = self.meta.get_manifest(repository, &by_digest).await?.map_or_else(now_millis, |m| m.pushed_at);
        let (repo, digest) = (repository.as_str(), digest.as_str());
        let mut statuses = self.meta.replication_statuses(repo, digest).await?;
        let configuration = self.replication_configuration().await?;
        let destinations = configuration.destinations_at(repo, pushed_at);
        let reported = |d: &DestinationId, statuses: &[ReplicationStatusRecord]| {
            statuses.iter().any(|s| s.region == d.region && s.registry_id == d.registry_id)
        };
        for destination in destinations {
            // What the destination's replicator recorded stands, mapped or not any more.
            if reported(destination, &statuses) {
                continue;
            }
            let (status, failure_code) = if !self.maps(destination) {
                let failure = format!(
                    "DESTINATION_NOT_CONFIGURED: this server has no registry URL and credentials for \
                     {destination} (a [[replication.destinations]] entry in its configuration file)"
                );
                (ReplicationState::Failed, Some(failure))
            } else if self.meta.awaits_delivery(&Replicator::consumer(destination), repo, digest).await? {
                (ReplicationState::InProgress, None)
            } else {
                continue;
            };
            statuses.push(ReplicationStatusRecord {
                region: destination.region.clone(),
                registry_id: destination.registry_id.clone(),
                status: status.as_str().to_owned(),
                failure_code,
                updated_at: now_millis(),
            });
        }
        statuses.sort_by(|a, b| (&a.region, &a.registry_id).cmp(&(&b.region, &b.registry_id)));
        Ok(statuses)
    }

    /// Whether the server's configuration file maps `destination` to a registry.
    fn maps(&self, destination: &DestinationId) -> bool {
        self.config.replication_destinations.contains(destination)
    }
}

/// A destination registry: its ECR name and a client for it.
#[derive(Debug, Clone)]
pub struct Destination {
    pub id: DestinationId,
    pub remote: berth_remote::Remote,
}

/// What an event asks to send to a destination: an image, and maybe a tag on it.
struct Target {
    repository: RepositoryName,
    digest: Digest,
    tag: Option<Tag>,
}

impl Target {
    /// `None` when the event sends nothing there: deletes, settings and archiving (not
    /// replicated, as on ECR) and repositories no rule sends to the destination. A restored
    /// image is replicated like a pushed one, as ECR does.
    fn of(
        configuration: &ReplicationConfiguration,
        destination: &Destination,
        claimed: &ClaimedEvent,
    ) -> Option<Target> {
        let event = &claimed.event;
        // An image arrives by replication once per push, never onward (as on ECR).
        if event.by_replication {
            return None;
        }
        let tag = match event.kind {
            EventKind::ManifestPushed | EventKind::ImageRestored => None,
            EventKind::TagSet => Some(event.tag.as_deref()?.parse::<Tag>().ok()?),
            _ => return None,
        };
        if !configuration.destinations_at(&event.repository, event.occurred_at).contains(&destination.id) {
            return None;
        }
        Some(Target { repository: event.repository.parse().ok()?, digest: event.digest.clone()?, tag })
    }
}

/// Sends events to destinations in the background (see the module's documentation).
pub struct Replicator {
    registry: Arc<Registry>,
    log: EventLog,
}

/// Attempts at an event the destination refuses for what it is before it is given up. Only such
/// refusals end: a destination that is down, throttles or turns the credentials away holds its
/// events until it takes them, and so does an error here.
const REFUSED_ATTEMPTS: u32 = 5;

/// Why an attempt failed: a short code and the detail, as `failureCode` shows them, and whether
/// the destination refused the content itself (`DESTINATION_REFUSED`, see [`REFUSED_ATTEMPTS`]).
struct Failure {
    reason: String,
    refused: bool,
}

impl Failure {
    fn source(detail: impl std::fmt::Display) -> Failure {
        Failure { reason: format!("SOURCE_ERROR: {detail}"), refused: false }
    }
}

impl From<RegistryError> for Failure {
    fn from(e: RegistryError) -> Self {
        Failure::source(e)
    }
}

impl From<berth_remote::Error> for Failure {
    fn from(e: berth_remote::Error) -> Self {
        use berth_remote::Error::*;
        let code = match &e {
            Unauthorized { .. } => "DESTINATION_UNAUTHORIZED",
            Denied { .. } => "DESTINATION_ACCESS_DENIED",
            TooManyRequests { .. } => "DESTINATION_THROTTLED",
            // The destination has no such repository and creates none on push: its setup to
            // mend (a creation template, create-on-push), like its keys, so retried meanwhile.
            NotFound { code: Some(code), .. } if code == "NAME_UNKNOWN" => "DESTINATION_REPOSITORY_NOT_FOUND",
            e if e.is_unavailable() => "DESTINATION_UNAVAILABLE",
            _ => "DESTINATION_REFUSED",
        };
        Failure { reason: format!("{code}: {e}"), refused: code == "DESTINATION_REFUSED" }
    }
}

impl Replicator {
    pub fn new(registry: Arc<Registry>) -> Replicator {
        let log = EventLog::new(registry.meta.clone());
        Replicator { registry, log }
    }

    /// The replicator reads as the server: through the pull-through cache, unrestricted.
    fn ctx(&self) -> berth_iam::RequestContext {
        berth_iam::RequestContext::server("replication", uuid::Uuid::new_v4().to_string())
    }

    /// The event-log consumer that feeds `destination`.
    pub fn consumer(destination: &DestinationId) -> String {
        format!("replication/{}/{}", destination.region, destination.registry_id)
    }

    /// Registers each destination's consumer (so nothing committed from now on is missed) and
    /// then replicates to every destination, each on a task of its own, until `stop` is
    /// cancelled: then each task gives back what it had claimed and ends.
    pub async fn start(
        self,
        destinations: Vec<Destination>,
        stop: CancellationToken,
    ) -> Result<Vec<tokio::task::JoinHandle<()>>> {
        for destination in &destinations {
            self.log.register(&Self::consumer(&destination.id)).await?;
        }
        let this = Arc::new(self);
        Ok(destinations
            .into_iter()
            .map(|destination| {
                let (this, stop) = (this.clone(), stop.clone());
                tokio::spawn(async move { this.serve(destination, stop).await })
            })
            .collect())
    }

    async fn serve(&self, destination: Destination, stop: CancellationToken) {
        let consumer = Self::consumer(&destination.id);
        while !stop.is_cancelled() {
            let pause = match self.round(&consumer, &destination, &stop).await {
                Ok(true) => continue,
                Ok(false) => POLL,
                Err(e) => {
                    tracing::warn!(destination = %destination.id, error = %e, "replication round failed");
                    MAX_RETRY
                }
            };
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Claims and handles one batch; false when there was nothing to do.
    async fn round(&self, consumer: &str, destination: &Destination, stop: &CancellationToken) -> Result<bool> {
        let claim = self.log.claim(consumer, CLAIM_BATCH, LEASE).await?;
        if claim.events.is_empty() {
            return Ok(false);
        }
        let configuration = self.registry.replication_configuration().await?;
        let mut delivered = Vec::new();
        let mut retry = Vec::new();
        let mut stopped: HashSet<String> = HashSet::new();
        let mut backoff = Duration::ZERO;
        for (i, claimed) in claim.events.iter().enumerate() {
            let event = &claimed.event;
            let Some(target) = Target::of(&configuration, destination, claimed) else {
                delivered.push(event.id);
                continue;
            };
            // A push by tag is sent once, with its tag: its manifest's arrival (committed with
            // the tag event, just before it) goes with that event. One that ends a full claim
            // goes back once, to come first in the next claim beside its tag event.
            let later = &claim.events[i + 1..];
            let ends_full_claim = later.is_empty() && claim.events.len() == CLAIM_BATCH;
            let awaits_tag = claimed.attempt == 1 && event.kind == EventKind::ManifestPushed && ends_full_claim;
            if tagged_by_same_push(event, later) && !stopped.contains(&event.repository) {
                delivered.push(event.id);
                continue;
            }
            // A repository's later events wait behind its failed one, in order.
            if awaits_tag || stopped.contains(&event.repository) || stop.is_cancelled() {
                if claimed.attempt == 1 {
                    self.set_status(&target, &destination.id, ReplicationState::InProgress, None).await;
                }
                retry.push(event.id);
                continue;
            }
            let outcome = tokio::select! {
                outcome = self.handle(destination, claimed.attempt, &target) => Some(outcome),
                _ = stop.cancelled() => None,
            };
            match outcome {
                Some(Ok(())) => delivered.push(event.id),
                Some(Err(Failure { reason, refused: true })) if claimed.attempt >= REFUSED_ATTEMPTS => {
                    tracing::warn!(destination = %destination.id, repository = %event.repository, event = event.id,
                        attempt = claimed.attempt, %reason, "replication refused again; the image stays FAILED there");
                    delivered.push(event.id);
                }
                Some(Err(Failure { reason, .. })) => {
                    tracing::info!(destination = %destination.id, repository = %event.repository, event = event.id,
                        attempt = claimed.attempt, %reason, "replication failed; will retry");
                    stopped.insert(event.repository.clone());
                    retry.push(event.id);
                    backoff = backoff.max(retry_delay(claimed.attempt));
                }
                // Stopping: given back at once, for the next server or start.
                None => retry.push(event.id),
            }
        }
        if !delivered.is_empty() {
            self.log.ack(&claim, &delivered).await?;
        }
        if !retry.is_empty() {
            self.log.release(&claim, &retry, backoff).await?;
        }
        Ok(true)
    }

    /// Sends what one event asks for, recording the image's status at the destination.
    async fn handle(&self, destination: &Destination, attempt: u32, target: &Target) -> Result<(), Failure> {
        if attempt == 1 {
            self.set_status(target, &destination.id, ReplicationState::InProgress, None).await;
        }
        let outcome = self.send(destination, &target.repository, &target.digest, target.tag.as_ref()).await;
        match &outcome {
            Ok(()) => self.set_status(target, &destination.id, ReplicationState::Complete, None).await,
            Err(Failure { reason, .. }) => {
                self.set_status(target, &destination.id, ReplicationState::Failed, Some(reason)).await
            }
        }
        outcome
    }

    async fn send(
        &self,
        destination: &Destination,
        repository: &RepositoryName,
        digest: &Digest,
        tag: Option<&Tag>,
    ) -> Result<(), Failure> {
        // Where the tag pointed then, unless it has moved on since here: its later event sets it
        // (an event sent again after a crash must not move the destination's tag back).
        let tag = match tag {
            Some(tag) => {
                let now = self.registry.stored_manifest(repository, &Reference::Tag(tag.clone())).await?;
                now.is_none_or(|now| now.digest == *digest).then_some(tag)
            }
            None => None,
        };
        // Deleted here since (`false`): nothing left to send, as deletes are not replicated.
        self.push_manifest(destination, repository, digest, tag, 0).await?;
        Ok(())
    }

    /// Makes `digest` (with everything it needs) exist at the destination, under `tag` too if
    /// given; `false` if this registry no longer has it. A new tagged image arrives in one
    /// manifest push, by tag, so the destination records one push of it (as ECR's replicas do).
    fn push_manifest<'a>(
        &'a self,
        destination: &'a Destination,
        repository: &'a RepositoryName,
        digest: &'a Digest,
        tag: Option<&'a Tag>,
        depth: usize,
    ) -> BoxFuture<'a, Result<bool, Failure>> {
        async move {
            let reference = Reference::Digest(digest.clone());
            let record = match self.registry.pull_manifest_of_any_class(&self.ctx(), repository, &reference).await {
                Ok(record) => record,
                Err(RegistryError::ManifestUnknown(_) | RegistryError::NameUnknown(_)) => return Ok(false),
                Err(e) => return Err(e.into()),
            };
            let bytes = Bytes::copy_from_slice(&record.content);
            let media_type = record.media_type.as_str();
            // Present there: by the destination's own invariants, so is everything it needs.
            if destination.remote.head_manifest(repository, &reference).await.is_ok() {
                if let Some(tag) = tag {
                    self.put_tagged(destination, repository, tag, media_type, bytes, None).await?;
                }
                return Ok(true);
            }
            if depth > MAX_DEPTH {
                return Err(Failure::source(format!("manifests nest deeper than {MAX_DEPTH} levels")));
            }
            let manifest = Manifest::parse(&record.content, Some(&record.media_type))
                .map_err(|e| Failure::source(format!("stored manifest {digest} does not parse: {e}")))?;
            if let Some(subject) = &manifest.subject {
                // A referrer after its subject (which may have been deleted here: then it goes alone).
                self.push_manifest(destination, repository, &subject.digest, None, depth + 1).await?;
            }
            for child in &manifest.manifests {
                self.push_manifest(destination, repository, &child.digest, None, depth + 1).await?;
            }
            for blob in manifest.required_blobs() {
                self.push_blob(destination, repository, blob).await?;
            }
            // A non-distributable layer goes along if it was pushed here, as it would be kept here.
            for layer in manifest.foreign_layers() {
                if self
                    .registry
                    .meta
                    .linked_blob(repository, &layer.digest)
                    .await
                    .map_err(RegistryError::from)?
                    .is_some()
                {
                    self.push_blob(destination, repository, layer).await?;
                }
            }
            match tag {
                Some(tag) => self.put_tagged(destination, repository, tag, media_type, bytes, Some(digest)).await?,
                None => {
                    destination.remote.put_manifest(repository, &reference, media_type, bytes).await?;
                }
            }
            Ok(true)
        }
        .boxed()
    }

    /// Puts the manifest at the destination by `tag`. Where an immutable tag there names another
    /// image, the image is replicated without it, as on ECR: by digest (`or_by_digest`, when it is
    /// not there yet); a tag refused otherwise still leaves the image there by digest, and fails.
    async fn put_tagged(
        &self,
        destination: &Destination,
        repository: &RepositoryName,
        tag: &Tag,
        media_type: &str,
        bytes: Bytes,
        or_by_digest: Option<&Digest>,
    ) -> Result<(), Failure> {
        let by_tag = Reference::Tag(tag.clone());
        let refused = match destination.remote.put_manifest(repository, &by_tag, media_type, bytes.clone()).await {
            Ok(_) => return Ok(()),
            Err(berth_remote::Error::Upstream { status: 400, code: Some(code), message }) if code == "TAG_INVALID" => {
                tracing::info!(destination = %destination.id, %repository, %tag, %message,
                    "replicated without the tag, which the destination holds immutable");
                None
            }
            // Refused for the tag or otherwise: the image itself still goes by digest (as it
            // did before the tag), and the event fails on the tag's refusal, to be retried.
            Err(e @ berth_remote::Error::Upstream { status: 400..=499, .. }) => Some(e),
            Err(e) => return Err(e.into()),
        };
        if let Some(digest) = or_by_digest {
            let by_digest = Reference::Digest(digest.clone());
            destination.remote.put_manifest(repository, &by_digest, media_type, bytes).await?;
        }
        refused.map_or(Ok(()), |e| Err(e.into()))
    }

    /// Makes the blob exist in `repository` at the destination: already there, mounted from
    /// another repository replicated to the same destination, or uploaded.
    async fn push_blob(
        &self,
        destination: &Destination,
        repository: &RepositoryName,
        blob: &Descriptor,
    ) -> Result<(), Failure> {
        let remote = &destination.remote;
        if remote.head_blob(repository, &blob.digest).await?.is_some() {
            return Ok(());
        }
        let mut session = None;
        let configuration = self.registry.replication_configuration().await?;
        let sources = self.registry.meta.repositories_with_blob(&blob.digest).await.map_err(RegistryError::from)?;
        let other = sources
            .iter()
            .filter(|name| name.as_str() != repository.as_str())
            .find(|name| configuration.destinations_for(name).contains(&destination.id));
        if let Some(from) = other.and_then(|name| name.parse::<RepositoryName>().ok()) {
            match remote.mount_blob(repository, &blob.digest, &from).await? {
                berth_remote::Mount::Mounted => return Ok(()),
                berth_remote::Mount::Upload(opened) => session = Some(opened),
            }
        }
        // Through the cache, like the manifests: a blob a cache repository never served is fetched.
        let body = self.registry.pull_blob(&self.ctx(), repository, &blob.digest, None).await?;
        remote.push_blob(repository, &blob.digest, body.size, body.stream, session).await?;
        Ok(())
    }

    /// Records the image's status; a failure to record is logged, not fatal (the next attempt
    /// records again).
    async fn set_status(
        &self,
        target: &Target,
        destination: &DestinationId,
        state: ReplicationState,
        failure: Option<&str>,
    ) {
        let (repository, digest) = (&target.repository, &target.digest);
        let record = ReplicationStatusRecord {
            region: destination.region.clone(),
            registry_id: destination.registry_id.clone(),
            status: state.as_str().to_owned(),
            failure_code: failure.map(str::to_owned),
            updated_at: now_millis(),
        };
        if let Err(e) = self.registry.meta.set_replication_status(repository.as_str(), digest.as_str(), &record).await {
            tracing::warn!(error = %e, %destination, "recording a replication status failed");
        }
    }
}

/// The wait before attempt `attempt + 1`: 1 s, 2 s, 4 s, ... up to 30 s.
fn retry_delay(attempt: u32) -> Duration {
    let doublings = attempt.saturating_sub(1).min(16);
    FIRST_RETRY.saturating_mul(1 << doublings).min(MAX_RETRY)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only what the destination refuses for the content itself ends the retries: a repository
    /// it lacks is its setup to mend, as its keys are.
    #[test]
    fn a_missing_destination_repository_is_retried_a_refused_manifest_is_not() {
        let missing = berth_remote::Error::NotFound { code: Some("NAME_UNKNOWN".into()), message: "no repo".into() };
        let failure = Failure::from(missing);
        assert!(
            failure.reason.starts_with("DESTINATION_REPOSITORY_NOT_FOUND: ") && !failure.refused,
            "{}",
            failure.reason
        );
        let refused = berth_remote::Error::Upstream {
            status: 400,
            code: Some("MANIFEST_BLOB_UNKNOWN".into()),
            message: "blob unknown".into(),
        };
        assert!(Failure::from(refused).refused);
    }

    fn dest(region: &str, id: &str) -> DestinationId {
        DestinationId { region: region.into(), registry_id: id.into() }
    }

    fn configuration(rules: Vec<ReplicationRule>) -> ReplicationConfiguration {
        ReplicationConfiguration { rules, superseded: vec![] }
    }

    fn rule(destinations: &[DestinationId], prefixes: &[&str]) -> ReplicationRule {
        ReplicationRule {
            destinations: destinations.to_vec(),
            repository_prefixes: prefixes.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn prefix_filters_choose_destinations() {
        let (b, c) = (dest("eu-west-1", "111111111111"), dest("eu-west-2", "222222222222"));
        let config = configuration(vec![
            rule(std::slice::from_ref(&b), &["prod/"]),
            rule(&[b.clone(), c.clone()], &["prod/web"]),
        ]);
        assert_eq!(config.destinations_for("prod/api").into_iter().collect::<Vec<_>>(), vec![&b]);
        assert_eq!(config.destinations_for("prod/web").into_iter().collect::<Vec<_>>(), vec![&b, &c]);
        assert!(config.destinations_for("dev/web").is_empty());
        let everything = configuration(vec![rule(std::slice::from_ref(&c), &[])]);
        assert_eq!(everything.destinations_for("dev/web").len(), 1);
    }

    /// An image goes by the rules in force when it was pushed: none before the first
    /// configuration, the old ones until a new one is put, the new ones after.
    #[test]
    fn events_are_judged_by_the_rules_of_their_time() {
        let (b, c) = (dest("eu-west-1", "111111111111"), dest("eu-west-2", "222222222222"));
        let first = ReplicationConfiguration::default().followed_by(vec![rule(std::slice::from_ref(&b), &[])], 1_000);
        let second = first.followed_by(vec![rule(std::slice::from_ref(&c), &[])], 2_000);
        let at = |t| second.destinations_at("prod/app", t).into_iter().cloned().collect::<Vec<_>>();
        assert_eq!(at(999), vec![], "pushed before any configuration");
        assert_eq!(at(1_000), vec![b.clone()]);
        assert_eq!(at(1_999), vec![b.clone()], "pushed while the first applied, sent after it changed");
        assert_eq!(at(2_000), vec![c.clone()]);
        assert_eq!(second.destinations_for("prod/app").into_iter().collect::<Vec<_>>(), vec![&c]);
        let mut many = ReplicationConfiguration::default();
        for t in 0..100 {
            many = many.followed_by(vec![], t);
        }
        assert_eq!(many.superseded.len(), SUPERSEDED_MAX);
        assert_eq!(many.superseded[0].until, 100 - SUPERSEDED_MAX as Millis, "the oldest go first");
    }

    #[test]
    fn validation_follows_ecr() {
        let this = dest("us-east-1", "000000000000");
        let b = dest("eu-west-1", "111111111111");
        let ok = configuration(vec![rule(std::slice::from_ref(&b), &["prod"])]);
        assert!(ok.validate(&this).is_ok());
        assert!(ReplicationConfiguration::default().validate(&this).is_ok());
        // Another region of this registry is a destination like any other.
        let other_region = configuration(vec![rule(&[dest("us-west-2", "000000000000")], &[])]);
        assert!(other_region.validate(&this).is_ok());
        let to_self = configuration(vec![rule(std::slice::from_ref(&this), &[])]);
        let too_many_rules = configuration(vec![rule(std::slice::from_ref(&b), &[]); 11]);
        let many: Vec<DestinationId> = (0..26).map(|i| dest("eu-west-1", &format!("{i:012}"))).collect();
        let too_many_destinations = configuration(vec![rule(&many, &[])]);
        for bad in [to_self, too_many_rules, too_many_destinations] {
            let err = bad.validate(&this).unwrap_err();
            assert!(matches!(err, RegistryError::ReplicationConfigurationInvalid(_)), "{err:?}");
        }
    }

    #[test]
    fn retries_back_off_exponentially_to_a_cap() {
        assert_eq!(retry_delay(1), Duration::from_secs(1));
        assert_eq!(retry_delay(2), Duration::from_secs(2));
        assert_eq!(retry_delay(4), Duration::from_secs(8));
        assert_eq!(retry_delay(10), MAX_RETRY);
        assert_eq!(retry_delay(u32::MAX), MAX_RETRY);
    }
}

//! The registry's own settings, as ECR has them: the registry policy (`PutRegistryPolicy`, a
//! resource policy over every repository of the registry) and the account settings
//! `REGISTRY_POLICY_SCOPE`, `BLOB_MOUNTING` and `BASIC_SCAN_TYPE_VERSION`. They live in the
//! metadata store by name; the authorizer reads them with the users' policies (`access.rs`).

use berth_iam::{Policy, actions};

use crate::principals::PrincipalBindings;
use crate::{PolicyKind, Registry, RegistryError, Result};

/// The registry policy's name in the store.
const REGISTRY_POLICY: &str = "registryPolicy";
/// The registry policy's [`PrincipalBindings`], as JSON; written before the policy it belongs to.
const REGISTRY_POLICY_PRINCIPALS: &str = "registryPolicyPrincipals";
/// The BASIC scanning rules (`PutRegistryScanningConfiguration`), as JSON.
const SCANNING_RULES: &str = "registryScanningRules";

/// A BASIC registry scanning rule: which repositories (wildcard filters on their names) scan on
/// push or manually. Stored and reported as ECR does; Berth itself scans nothing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScanningRule {
    /// SCAN_ON_PUSH; else MANUAL.
    pub scan_on_push: bool,
    pub filters: Vec<String>,
}

impl ScanningRule {
    /// The rule that decides `repository`'s frequency once any rule is set: a matching
    /// SCAN_ON_PUSH rule before a matching MANUAL one; `None`: MANUAL without filters.
    pub fn applying<'a>(rules: &'a [ScanningRule], repository: &str) -> Option<&'a ScanningRule> {
        let matches =
            |rule: &&ScanningRule| rule.filters.iter().any(|f| crate::settings::wildcard_match(f, repository));
        rules.iter().filter(matches).min_by_key(|rule| !rule.scan_on_push)
    }
}

/// What a V1-scoped registry policy governs (ECR: replication and pull through cache); a V2 one
/// governs every action.
pub(crate) const V1_SCOPE_ACTIONS: &[&str] =
    &[actions::CREATE_REPOSITORY, actions::REPLICATE_IMAGE, actions::BATCH_IMPORT_UPSTREAM_IMAGE];

/// Actions only a user's own (identity) policies grant, as AWS documents them: no repository or
/// registry policy's Allow is enough (their Deny still binds).
pub(crate) const IDENTITY_POLICY_ACTIONS: &[&str] =
    &[actions::GET_AUTHORIZATION_TOKEN, actions::CREATE_PULL_THROUGH_CACHE_RULE];

/// ECR's account settings that Berth keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountSetting {
    /// `V1` or `V2` (default): which actions the registry policy governs.
    RegistryPolicyScope,
    /// `ENABLED` (default, Berth's behaviour before the setting existed) or `DISABLED`: whether
    /// `/v2/` cross-repository mounts link blobs or open an upload instead.
    BlobMounting,
    /// `AWS_NATIVE` (default) or `CLAIR`: stored and echoed (Berth does not scan).
    BasicScanTypeVersion,
}

impl AccountSetting {
    const ALL: [AccountSetting; 3] =
        [AccountSetting::BasicScanTypeVersion, AccountSetting::RegistryPolicyScope, AccountSetting::BlobMounting];

    pub fn name(self) -> &'static str {
        match self {
            AccountSetting::RegistryPolicyScope => "REGISTRY_POLICY_SCOPE",
            AccountSetting::BlobMounting => "BLOB_MOUNTING",
            AccountSetting::BasicScanTypeVersion => "BASIC_SCAN_TYPE_VERSION",
        }
    }

    fn values(self) -> &'static [&'static str] {
        match self {
            AccountSetting::RegistryPolicyScope => &["V2", "V1"],
            AccountSetting::BlobMounting => &["ENABLED", "DISABLED"],
            AccountSetting::BasicScanTypeVersion => &["AWS_NATIVE", "CLAIR"],
        }
    }

    /// What a registry that never set it answers.
    pub fn default_value(self) -> &'static str {
        self.values()[0]
    }

    /// `SettingInvalid` for a name ECR does not know.
    pub fn parse(name: &str) -> Result<AccountSetting> {
        Self::ALL.into_iter().find(|s| s.name() == name).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|s| s.name()).collect();
            RegistryError::SettingInvalid {
                member: "name",
                reason: format!("Member must satisfy enum value set: [{}]", names.join(", ")),
            }
        })
    }
}

/// The settings as stored, with the defaults for what was never set.
pub(crate) struct RegistrySettings {
    pub(crate) policy: Option<String>,
    pub(crate) policy_principals: PrincipalBindings,
    stored: Vec<(String, String)>,
}

impl RegistrySettings {
    pub(crate) fn from_store(mut stored: Vec<(String, String)>) -> RegistrySettings {
        let mut take = |key: &str| stored.iter().position(|(name, _)| name == key).map(|i| stored.remove(i).1);
        let policy = take(REGISTRY_POLICY);
        let policy_principals = take(REGISTRY_POLICY_PRINCIPALS)
            .and_then(|json| {
                serde_json::from_str(&json)
                    .inspect_err(|e| tracing::warn!(error = %e, "the registry policy's principal bindings do not parse; its principals are matched by name"))
                    .ok()
            })
            .unwrap_or_default();
        RegistrySettings { policy, policy_principals, stored }
    }

    pub(crate) fn value(&self, setting: AccountSetting) -> &str {
        self.stored
            .iter()
            .find(|(name, _)| name == setting.name())
            .map_or(setting.default_value(), |(_, value)| value.as_str())
    }
}

impl Registry {
    /// `PutRegistryPolicy`: checks the text as IAM would (a resource policy, at most 10,240
    /// characters), stores it and returns it. It applies at once on this server, within a second
    /// on others.
    pub async fn put_registry_policy(&self, text: &str) -> Result<String> {
        let policy = Policy::parse_registry(text)
            .map_err(|e| RegistryError::PolicyInvalid { kind: PolicyKind::Registry, reason: e.to_string() })?;
        self.refuse_unknown_users(&policy, PolicyKind::Registry).await?;
        let principals = serde_json::to_string(&self.principal_bindings(&policy).await?).expect("bindings serialize");
        self.meta.put_registry_setting(REGISTRY_POLICY_PRINCIPALS, Some(&principals)).await?;
        self.meta.put_registry_setting(REGISTRY_POLICY, Some(text)).await?;
        self.authorizer.invalidate_registry().await;
        Ok(text.to_owned())
    }

    /// `GetRegistryPolicy`: the text, or `PolicyNotFound`.
    pub async fn registry_policy(&self) -> Result<String> {
        let settings = RegistrySettings::from_store(self.meta.registry_settings().await?);
        settings.policy.ok_or(RegistryError::PolicyNotFound(PolicyKind::Registry))
    }

    /// `DeleteRegistryPolicy`: the deleted text, or `PolicyNotFound`.
    pub async fn delete_registry_policy(&self) -> Result<String> {
        let deleted = self.meta.put_registry_setting(REGISTRY_POLICY, None).await?;
        self.meta.put_registry_setting(REGISTRY_POLICY_PRINCIPALS, None).await?;
        self.authorizer.invalidate_registry().await;
        deleted.ok_or(RegistryError::PolicyNotFound(PolicyKind::Registry))
    }

    /// The registry's BASIC scanning rules (none until put).
    pub async fn scanning_rules(&self) -> Result<Vec<ScanningRule>> {
        let stored = self.meta.registry_settings().await?;
        let Some((_, json)) = stored.iter().find(|(name, _)| name == SCANNING_RULES) else { return Ok(vec![]) };
        serde_json::from_str(json)
            .map_err(|e| RegistryError::Internal(format!("the stored registry scanning rules do not parse: {e}")))
    }

    /// `PutRegistryScanningConfiguration` with BASIC scanning: replaces the rules (none removes them).
    pub async fn put_scanning_rules(&self, rules: Vec<ScanningRule>) -> Result<Vec<ScanningRule>> {
        let json = serde_json::to_string(&rules).expect("rules serialize");
        self.meta.put_registry_setting(SCANNING_RULES, (!rules.is_empty()).then_some(json.as_str())).await?;
        Ok(rules)
    }

    /// `GetAccountSetting`: the setting's value (its default if never set).
    pub async fn account_setting(&self, name: &str) -> Result<(AccountSetting, String)> {
        let setting = AccountSetting::parse(name)?;
        let settings = RegistrySettings::from_store(self.meta.registry_settings().await?);
        Ok((setting, settings.value(setting).to_owned()))
    }

    /// `PutAccountSetting`: one of the setting's values, or `SettingInvalid`.
    pub async fn put_account_setting(&self, name: &str, value: &str) -> Result<(AccountSetting, String)> {
        let setting = AccountSetting::parse(name)?;
        if !setting.values().contains(&value) {
            return Err(RegistryError::SettingInvalid {
                member: "value",
                reason: format!("Member must satisfy enum value set: [{}]", setting.values().join(", ")),
            });
        }
        self.meta.put_registry_setting(setting.name(), Some(value)).await?;
        self.authorizer.invalidate_registry().await;
        Ok((setting, value.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_settings_read_as_their_defaults() {
        let settings = RegistrySettings::from_store(vec![
            ("BLOB_MOUNTING".into(), "DISABLED".into()),
            (REGISTRY_POLICY.into(), "{}".into()),
        ]);
        assert_eq!(settings.policy.as_deref(), Some("{}"));
        assert_eq!(settings.value(AccountSetting::BlobMounting), "DISABLED");
        assert_eq!(settings.value(AccountSetting::RegistryPolicyScope), "V2");
        assert_eq!(settings.value(AccountSetting::BasicScanTypeVersion), "AWS_NATIVE");
        assert!(matches!(
            AccountSetting::parse("PULL_THROUGH"),
            Err(RegistryError::SettingInvalid { member: "name", .. })
        ));
    }

    #[test]
    fn a_scan_on_push_rule_applies_before_a_manual_one() {
        let rule = |scan_on_push: bool, filters: &[&str]| ScanningRule {
            scan_on_push,
            filters: filters.iter().map(|f| f.to_string()).collect(),
        };
        let rules = [rule(false, &["*"]), rule(true, &["prod/*", "web"])];
        assert_eq!(ScanningRule::applying(&rules, "prod/api"), Some(&rules[1]));
        assert_eq!(ScanningRule::applying(&rules, "web"), Some(&rules[1]));
        assert_eq!(ScanningRule::applying(&rules, "dev/api"), Some(&rules[0]));
        assert_eq!(ScanningRule::applying(&rules[1..], "dev/api"), None);
    }
}

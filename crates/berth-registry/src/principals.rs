//! IAM binds a resource policy's user principal to the user, not to its name: when the policy
//! is saved, `arn:aws:iam::<account>:user/<name>` is tied to that user's unique ID, so a user
//! deleted and created again under the same name is not the principal any more (IAM's guard
//! against regaining rights by re-creating a user). Berth stores, with each repository and
//! registry policy, the creation time of every user the policy names as it is set, and
//! authorization forgets a principal whose user has since been re-created or removed. A
//! repository or registry policy naming no existing user is refused, as IAM refuses it
//! ("Principal not found"); a creation template's policy may name a user created later, since
//! it applies only to repositories created later.

use std::collections::BTreeMap;

use berth_iam::{NamedPolicy, Policy};
use berth_meta::Millis;

use crate::error::PolicyKind;
use crate::{Registry, RegistryError, Result};

/// User name → creation time of the user the name meant when the policy was set.
pub type PrincipalBindings = BTreeMap<String, Millis>;

impl Registry {
    /// The users `policy` names that exist now, bound to their creation times.
    pub(crate) async fn principal_bindings(&self, policy: &Policy) -> Result<PrincipalBindings> {
        let mut bindings = PrincipalBindings::new();
        for name in policy.named_users(&self.config.account_id) {
            if let Some(user) = self.meta.user_by_name(name).await? {
                bindings.insert(name.to_owned(), user.created_at);
            }
        }
        Ok(bindings)
    }

    /// Refuses a repository or registry policy being set that names a user of this registry
    /// who does not exist (see the module's doc).
    pub(crate) async fn refuse_unknown_users(&self, policy: &Policy, kind: PolicyKind) -> Result<()> {
        self.refuse_named_users(policy, kind, true).await
    }

    /// Refuses a policy being set that names `user/FA` while the user is `fa`: ARNs name users
    /// exactly and names are unique whatever their case, so such a principal could never match
    /// anyone — a Deny that silently never applies.
    pub(crate) async fn refuse_miscased_users(&self, policy: &Policy, kind: PolicyKind) -> Result<()> {
        self.refuse_named_users(policy, kind, false).await
    }

    async fn refuse_named_users(&self, policy: &Policy, kind: PolicyKind, unknown_too: bool) -> Result<()> {
        let named = policy.named_users(&self.config.account_id);
        if named.is_empty() {
            return Ok(());
        }
        let users = self.meta.list_users().await?;
        for name in named {
            if users.iter().any(|u| u.name == name) {
                continue;
            }
            if let Some(user) = users.iter().find(|u| u.name.eq_ignore_ascii_case(name)) {
                return Err(RegistryError::PolicyInvalid {
                    kind,
                    reason: format!(
                        "Invalid principal in policy: user/{name} matches no user; the user is named {:?} \
                         (ARNs name users exactly)",
                        user.name
                    ),
                });
            }
            if unknown_too {
                return Err(RegistryError::PrincipalNotFound { kind, user: name.to_owned() });
            }
        }
        Ok(())
    }
}

/// `policy` as it applies to a request of `user`, whose current record was created at
/// `created` (`None`: no such user now): without the principals that named an earlier user of
/// that name. `None` when the policy applies as written.
pub(crate) fn for_caller(
    policy: &NamedPolicy,
    bindings: &PrincipalBindings,
    account: &str,
    user: &str,
    created: Option<Millis>,
) -> Option<NamedPolicy> {
    let bound = bindings.get(user)?;
    (created != Some(*bound)).then(|| policy.forgetting_user(account, user))
}

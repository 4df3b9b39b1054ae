//! Each tenant's rules as activated in the service: the policy component
//! and the configuration text, kept so a restart serves the same rules.

use serde::{Deserialize, Serialize};

use super::StoreError;

/// One activation of a tenant's rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StoredRules {
    /// The tenant.
    pub tenant: String,
    /// 1 for the first activation, then counting up.
    pub version: u64,
    /// The policy: the `sha256:` digest of an uploaded component, or the
    /// name of a bundled policy.
    pub policy: String,
    /// The tenant configuration, as TOML text.
    pub config: String,
    /// When it was activated.
    pub activated_ms: u64,
    /// Who activated it.
    pub actor: String,
}

/// Where uploaded policies and activated rules are kept.
pub trait RulesStore: Send + Sync {
    /// Keeps a policy component under its digest (storing it again is a no-op).
    fn put_policy(&self, digest: &str, component: &[u8], now_ms: u64) -> Result<(), StoreError>;

    /// An uploaded policy component.
    fn policy_component(&self, digest: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Records an activation as the tenant's next version and returns it.
    fn put_rules(
        &self,
        tenant: &str,
        policy: &str,
        config: &str,
        actor: &str,
        now_ms: u64,
    ) -> Result<StoredRules, StoreError>;

    /// The latest rules of every tenant, by tenant.
    fn active_rules(&self) -> Result<Vec<StoredRules>, StoreError>;
}

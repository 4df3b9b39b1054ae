//! Each tenant's rules as activated in the service: the policy component
//! and the configuration text, kept so a restart serves the same rules.
//! Uploaded components belong to the tenant that uploaded them.

use serde::{Deserialize, Serialize};

use super::StoreError;

/// One activation of a tenant's rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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

/// A policy component a tenant uploaded, as it lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UploadedPolicy {
    /// `sha256:` of the component.
    pub digest: String,
    /// The name its `info` gave (absent for uploads kept from before
    /// uploads were listed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The version its `info` gave.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The component's size.
    pub bytes: u64,
    /// When it was uploaded.
    pub uploaded_ms: u64,
}

/// How much a tenant may keep uploaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadQuota {
    /// Components, counted once each however often uploaded.
    pub count: usize,
    /// Their bytes together.
    pub bytes: u64,
}

/// What became of an upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutPolicy {
    /// Kept now.
    Stored,
    /// The tenant had uploaded the same component before; nothing changed.
    AlreadyStored,
    /// The tenant has `limit` uploads already.
    OverCount {
        /// The most it may keep.
        limit: usize,
    },
    /// The upload would take the tenant's uploads over `limit` bytes.
    OverBytes {
        /// The most it may keep.
        limit: u64,
        /// What it keeps now.
        used: u64,
    },
}

/// What became of deleting an upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeletedPolicy {
    /// Deleted.
    Deleted,
    /// The tenant's rules in force name it: kept.
    InUse,
    /// The tenant has no such upload.
    NotFound,
}

/// Where uploaded policies and activated rules are kept.
pub trait RulesStore: Send + Sync {
    /// Keeps `tenant`'s upload of a component under its digest, within
    /// `quota` when given (the operator's own files have none). Uploading
    /// the same component again changes nothing.
    fn put_policy(
        &self,
        tenant: &str,
        policy: &UploadedPolicy,
        component: &[u8],
        quota: Option<UploadQuota>,
    ) -> Result<PutPolicy, StoreError>;

    /// A component `tenant` uploaded; another tenant's is not found.
    fn policy_component(&self, tenant: &str, digest: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// `tenant`'s uploads, oldest first.
    fn policies(&self, tenant: &str) -> Result<Vec<UploadedPolicy>, StoreError>;

    /// Deletes `tenant`'s upload, unless its latest rules name it.
    fn delete_policy(&self, tenant: &str, digest: &str) -> Result<DeletedPolicy, StoreError>;

    /// Records an activation as the tenant's next version and returns it.
    fn put_rules(
        &self,
        tenant: &str,
        policy: &str,
        config: &str,
        actor: &str,
        now_ms: u64,
    ) -> Result<StoredRules, StoreError> {
        self.put_rules_after(tenant, None, policy, config, actor, now_ms)?
            .ok_or_else(|| StoreError::unusable("rules were kept without a version to follow"))
    }

    /// [`put_rules`](Self::put_rules); with `after`, only while that is
    /// still the tenant's latest version: `None`, and nothing kept, when
    /// another activation came first. For an edit made to the rules of
    /// `after`.
    fn put_rules_after(
        &self,
        tenant: &str,
        after: Option<u64>,
        policy: &str,
        config: &str,
        actor: &str,
        now_ms: u64,
    ) -> Result<Option<StoredRules>, StoreError>;

    /// The latest rules of every tenant, by tenant.
    fn active_rules(&self) -> Result<Vec<StoredRules>, StoreError>;

    /// [`active_rules`](Self::active_rules) of every tenant whose rules
    /// can be read now: for following changes, where a part of the store
    /// that is down must not hold up the tenants of the rest.
    fn readable_rules(&self) -> Result<Vec<StoredRules>, StoreError> {
        self.active_rules()
    }

    /// The latest rules of `tenant`, if it has any.
    fn rules_of(&self, tenant: &str) -> Result<Option<StoredRules>, StoreError> {
        Ok(self
            .active_rules()?
            .into_iter()
            .find(|r| r.tenant == tenant))
    }
}

/// Whether one more upload of `size` bytes fits a tenant that keeps `count`
/// uploads of `used` bytes: `None` when it does, else the refusal.
pub fn quota_outcome(
    quota: UploadQuota,
    count: usize,
    used: u64,
    size: usize,
) -> Option<PutPolicy> {
    if count >= quota.count {
        Some(PutPolicy::OverCount { limit: quota.count })
    } else if used.saturating_add(size as u64) > quota.bytes {
        Some(PutPolicy::OverBytes {
            limit: quota.bytes,
            used,
        })
    } else {
        None
    }
}

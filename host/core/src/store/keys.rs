//! Stored API keys: who may call the service, for which tenant, in which role.

use serde::{Deserialize, Serialize};

use super::StoreError;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Authorize payments as the one agent it is bound to, and read the
    /// ones it submitted.
    Agent,
    /// Authorize payments as any of the tenant's agents (a platform that
    /// runs them), and read the ones it submitted.
    Platform,
    /// Decide the tenant's held payments (never one its subject requested).
    Approver,
    /// Read the audit trail and reports.
    Auditor,
    /// Upload, check and activate the tenant's policy and configuration.
    Admin,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 5] = [
        Role::Agent,
        Role::Platform,
        Role::Approver,
        Role::Auditor,
        Role::Admin,
    ];

    /// Whether the key asks to pay rather than governs: it sees only what
    /// it submitted, and nothing tenant-wide.
    pub fn requests_payments(self) -> bool {
        matches!(self, Role::Agent | Role::Platform)
    }

    /// The role's name as stored and written.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Platform => "platform",
            Role::Approver => "approver",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                format!("unknown role `{s}`: expected agent, platform, approver, auditor or admin")
            })
    }
}

/// A stored key. The secret itself is never stored, only its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    /// The public part of the key, which logs and records may name.
    pub key_id: String,
    /// The tenant it belongs to; it sees nothing of any other.
    pub tenant: String,
    /// What it may do.
    pub role: Role,
    /// Whom it speaks for: the agent of an agent key, the owner identity
    /// of an approver key, a name for the others.
    pub subject: String,
    /// `sha256:` of the secret.
    pub secret_hash: String,
    /// When it was created.
    pub created_ms: u64,
    /// When it was revoked, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_ms: Option<u64>,
}

/// Where keys are kept.
pub trait KeyStore: Send + Sync {
    /// Stores a new key; a key id already stored is an error.
    fn insert_key(&self, key: &ApiKey) -> Result<(), StoreError>;

    /// The key with this id, revoked or not.
    fn key(&self, key_id: &str) -> Result<Option<ApiKey>, StoreError>;

    /// Revokes a key of the tenant. Returns false when it has no such key;
    /// revoking twice keeps the first time.
    fn revoke_key(&self, tenant: &str, key_id: &str, now_ms: u64) -> Result<bool, StoreError>;

    /// The tenant's keys, oldest first.
    fn keys(&self, tenant: &str) -> Result<Vec<ApiKey>, StoreError>;
}

//! What the governance pipeline refuses, each case its own variant so
//! callers (CLI, HTTP) can branch on it.

use super::{Act, ConfigError, Status};
use crate::store::StoreError;
use tiergate_runtime::model::transaction::InvalidTransaction;
use tiergate_runtime::{ClassifyError, LoadError};

/// Why an authorization, approval or deadline run was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GovernError {
    /// No tenant of that id is configured.
    #[error("unknown tenant `{0}`: load its configuration first")]
    UnknownTenant(String),
    /// The tenant's stored rules could not be loaded: it fails closed on
    /// its own while every other tenant is served.
    #[error(
        "tenant {tenant}'s rules cannot be loaded, so none of its payments is decided: {reason}; its admin can activate rules that load (POST /v1/rules)"
    )]
    RulesUnavailable {
        /// The tenant.
        tenant: String,
        /// Why its rules do not load.
        reason: String,
    },
    /// The transaction failed its checks.
    #[error(transparent)]
    InvalidTransaction(#[from] InvalidTransaction),
    /// The transaction is in another currency than the tenant's thresholds.
    #[error(
        "transaction {tx_id} is in {got}, but tenant {tenant}'s thresholds are in {expected}; tiergate never converts currencies"
    )]
    CurrencyMismatch {
        /// The tenant.
        tenant: String,
        /// The transaction.
        tx_id: String,
        /// The tenant's currency.
        expected: String,
        /// The transaction's.
        got: String,
    },
    /// The id was used before for a different request.
    #[error(
        "transaction id {tx_id} was already used for a different request (stored {stored}, now {sent}); use a new id"
    )]
    Conflict {
        /// The transaction id.
        tx_id: String,
        /// The stored request's content hash.
        stored: String,
        /// This request's content hash.
        sent: String,
    },
    /// No such transaction.
    #[error("tenant {tenant} has no transaction {tx_id}")]
    NotFound {
        /// The tenant.
        tenant: String,
        /// The transaction id.
        tx_id: String,
    },
    /// The actor is not one of the tenant's budget owners.
    #[error("{actor} is not a budget owner of tenant {tenant} and may not approve, reject or veto")]
    NotAnOwner {
        /// Who tried.
        actor: String,
        /// The tenant.
        tenant: String,
    },
    /// A correction names a record the transaction does not have.
    #[error(
        "transaction {tx_id} has no audit event {seq} to correct; `tiergate audit show` lists its events"
    )]
    NoSuchRecord {
        /// The transaction id.
        tx_id: String,
        /// The sequence number named.
        seq: u64,
    },
    /// An owner's reason or note holds a character that would act on the
    /// screen showing it or reorder what it shows; nothing was recorded.
    #[error("the {field} {refused}; write it without")]
    InvalidText {
        /// What was written: `reason` or `note`.
        field: &'static str,
        /// The character refused, and why.
        refused: tiergate_runtime::model::text::Refused,
    },
    /// A correction without a note saying what was wrong.
    #[error("a correction must say what was wrong and what is right: the note is empty")]
    EmptyCorrection,
    /// The requesting agent tried to decide its own payment.
    #[error("{actor} requested transaction {tx_id} and may not decide it (separation of duties)")]
    OwnPayment {
        /// Who tried.
        actor: String,
        /// The transaction.
        tx_id: String,
    },
    /// The approval names another request than the stored one.
    #[error(
        "the verdict names request {sent}, but transaction {tx_id} is request {stored}; look at the request again"
    )]
    HashMismatch {
        /// The transaction.
        tx_id: String,
        /// The stored content hash.
        stored: String,
        /// The hash the verdict names.
        sent: String,
    },
    /// The act does not apply in the payment's status.
    #[error("transaction {tx_id} is {}, so it cannot be {}", .status.as_str(), act_past(*.act))]
    WrongStatus {
        /// The transaction.
        tx_id: String,
        /// Its status.
        status: Status,
        /// The refused act.
        act: Act,
    },
    /// The owner already gave a verdict on this payment.
    #[error("{actor} already decided transaction {tx_id}; each owner decides once")]
    AlreadyDecided {
        /// Who.
        actor: String,
        /// The transaction.
        tx_id: String,
    },
    /// The veto window or approval timeout has passed.
    #[error("the deadline of transaction {tx_id} passed at {deadline_ms} (now {now_ms}); it can no longer be {}", act_past(*.act))]
    DeadlinePassed {
        /// The transaction.
        tx_id: String,
        /// The act.
        act: Act,
        /// The deadline.
        deadline_ms: u64,
        /// Now.
        now_ms: u64,
    },
    /// A deadline run found the payment no longer due (another runner took it).
    #[error("transaction {0} is no longer waiting on its deadline")]
    NotDue(String),
    /// The tenant's configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The tenant's policy could not be loaded.
    #[error("cannot load the policy of tenant {tenant}: {source}")]
    Policy {
        /// The tenant.
        tenant: String,
        /// Why.
        source: LoadError,
    },
    /// A guardrail or tier setting contradicts the policy (for example a failure tier).
    #[error("tenant {tenant}: {message}")]
    Setup {
        /// The tenant.
        tenant: String,
        /// What is wrong.
        message: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Every policy sandbox stayed busy for the whole wait: nothing was
    /// decided or recorded, and the same request may be sent again.
    #[error(
        "every policy sandbox stayed busy for {} ms, so nothing was decided or recorded; retry shortly with the same request",
        .waited.as_millis()
    )]
    SandboxBusy {
        /// How long the request waited for a sandbox.
        waited: std::time::Duration,
    },
    /// Classification could not run (not a policy failure: those yield the failure tier).
    #[error("cannot classify: {0}")]
    Classify(#[source] ClassifyError),
    /// The blocking task that ran the request ended without an answer (it
    /// panicked or the runtime is shutting down); whether it was recorded is
    /// what `GET` of the payment says.
    #[error("the governance task did not finish: {0}")]
    TaskFailed(#[source] tokio::task::JoinError),
}

impl From<ClassifyError> for GovernError {
    fn from(e: ClassifyError) -> Self {
        match e {
            // No sandbox came free in time: nothing decided, nothing
            // recorded; the caller may send it again.
            ClassifyError::SandboxBusy { waited } => GovernError::SandboxBusy { waited },
            e => GovernError::Classify(e),
        }
    }
}

fn act_past(act: Act) -> &'static str {
    match act {
        Act::Approve => "approved",
        Act::Reject => "rejected",
        Act::Veto => "vetoed",
    }
}

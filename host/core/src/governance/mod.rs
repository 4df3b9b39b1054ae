//! The trusted governance pipeline: authorize → tier → approval workflow →
//! execution, every step durable before anyone hears of it.
//!
//! The policy only classifies. Everything here is the host's: guardrails
//! that can only make a tier stricter, budgets checked and reserved
//! atomically, owners' verdicts bound to the exact request, deadlines that
//! survive restarts, an executor called once per payment, and an audit
//! event for every step.

mod breaker;
mod clock;
mod config;
mod error;
mod executor;
pub(crate) mod history;
mod limits;
mod observer;
mod plan;
mod registry;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};

pub use crate::record::{Act, Authorization, Escalation, Provenance, Source, Status, Verdict};
pub use breaker::BreakerSettings;
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{
    ApprovalMode, AuditDepth, ComplianceLevel, ConfigError, Guardrails, Limit,
    MAX_APPROVAL_TIMEOUT, MAX_VETO_WINDOW, PolicySection, Team, TenantConfig, TierRule, TierTable,
    WEBHOOKS_MOVED, Webhook, X402Asset, X402Section, evm_chain_id, is_evm_address, toml_to_json,
};
pub use error::GovernError;
pub use executor::{LedgerExecutor, PaymentExecutor};
pub use limits::{Headroom, SpendingLimits, TierMeaning};
pub use observer::Observer;
pub use registry::{
    Agent, JurisdictionFloor, Recipient, TrustSettings, TrustSource, UnlistedAgents,
    normalize_recipient,
};

use crate::store::{Change, NewEntry, Recorded, Snapshot, Store, StoreError};
use tiergate_runtime::model::decision::{Decision, FailureKind};
use tiergate_runtime::model::transaction::Transaction;
use tiergate_runtime::{CompiledPolicy, Runtime, TenantPolicy};

/// How far back the policy's context can see an agent's payments: the
/// longest window the contract serves.
const CONTEXT_HORIZON_MS: u64 = tiergate_runtime::model::context::MAX_WINDOW_MS;
/// Budgets are rolling days.
const BUDGET_WINDOW_MS: u64 = 86_400_000;

/// Says, loudly, when a tenant's rules let the requester choose its own
/// tier: kept only while a tenant migrates to the registry.
fn warn_if_declared(config: &TenantConfig) {
    if config.trust.source == TrustSource::Caller {
        tracing::warn!(tenant = %config.tenant,
            "recipient trust and jurisdiction are taken from the request (`[trust] source = \"caller\"`): an agent can lower its own tier by declaring its recipient verified; list the tenant's recipients in `[[recipients]]` and remove the setting");
    }
    if config.trust.unlisted_agents == UnlistedAgents::Allow {
        tracing::warn!(tenant = %config.tenant,
            "payments by agents the tenant does not list are served (`unlisted_agents = \"allow\"`): a new agent name starts with fresh budgets and caps; list the tenant's agents in `[[agents]]` and remove the setting");
    }
}

/// What the policy would see of `declared` (the host's trust and
/// jurisdiction, for a recipient never paid) and the tiers the registry
/// demands of it: for `tiergate check`'s probes.
pub(crate) fn resolve_for_probe(
    config: &TenantConfig,
    declared: &Transaction,
) -> (Transaction, Vec<tiergate_policy::Tier>) {
    let never_paid = || Ok::<_, std::convert::Infallible>(0);
    let Ok(resolved) = registry::resolve(config, declared, never_paid);
    (
        resolved.tx,
        resolved.floors.into_iter().map(|f| f.tier).collect(),
    )
}

/// The governance pipeline over a store, for any number of tenants.
/// Cheap to clone; share one per process.
#[derive(Clone)]
pub struct Governor {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    executor: Arc<dyn PaymentExecutor>,
    clock: Arc<dyn Clock>,
    observer: Arc<dyn Observer>,
    breakers: breaker::Breakers,
    // Swapped whole on activation; a request holds its tenant's Arc, so it
    // finishes on the rules it started with.
    tenants: RwLock<BTreeMap<String, Arc<Tenant>>>,
    // Tenants whose rules could not be loaded, and why: they fail closed on
    // their own until rules that load are activated.
    unavailable: RwLock<BTreeMap<String, String>>,
    named: NamedPolicies,
}

struct Tenant {
    config: TenantConfig,
    policy: TenantPolicy,
}

/// A decision made before the write lock, and what it was made on.
struct Early {
    decision: Decision,
    took: std::time::Duration,
    /// The transaction as the policy saw it (the host's attributes); none
    /// for a failure found without running the policy.
    seen: Option<Transaction>,
}

/// What a decision under the write lock is about.
struct Locked<'a> {
    tenant: &'a Tenant,
    tx: &'a Transaction,
    hash: &'a str,
    caller: Option<&'a str>,
    now_ms: u64,
}

/// The alert when a tenant's policy has failed often enough to be suspended.
fn tripped(tenant: &Tenant, tx: &Transaction, failures: u32, until_ms: u64) -> String {
    let info = tenant.policy.info();
    format!(
        "the policy of tenant {} ({} {}) failed {failures} times in a row; it is not run until {} UTC, and its failure tier, {}, applies to every payment meanwhile",
        tx.tenant,
        info.name,
        info.version,
        crate::utc::time(until_ms),
        tenant.policy.failure_tier()
    )
}

/// The alert when a tenant's policy has spent its CPU budget.
fn budget_spent(tenant: &Tenant, tx: &Transaction) -> String {
    format!(
        "the policy of tenant {} used all the CPU time its budget allows; until the budget refills it is not run, and its failure tier, {}, applies to every payment meanwhile",
        tx.tenant,
        tenant.policy.failure_tier()
    )
}

/// Assembles a [`Governor`].
pub struct GovernorBuilder {
    runtime: Runtime,
    store: Arc<dyn Store>,
    executor: Option<Arc<dyn PaymentExecutor>>,
    clock: Arc<dyn Clock>,
    tenants: BTreeMap<String, Arc<Tenant>>,
    activated_by: Option<String>,
    observer: Arc<dyn Observer>,
    unavailable: BTreeMap<String, String>,
    breaker: BreakerSettings,
    named: NamedPolicies,
}

impl GovernorBuilder {
    /// Policies a tenant's `policy.path` may name instead of a file (none
    /// unless set). Set it before adding tenants.
    pub fn named_policies(mut self, named: NamedPolicies) -> Self {
        self.named = named;
        self
    }

    /// When a tenant's failing policy is suspended, and for how long
    /// ([`BreakerSettings::default`] unless set).
    pub fn breaker(mut self, settings: BreakerSettings) -> Self {
        self.breaker = settings;
        self
    }

    /// Adds a tenant whose rules could not be loaded: its requests are
    /// refused with [`GovernError::RulesUnavailable`] naming `reason`, and
    /// every other tenant is served, until rules that load are activated.
    pub fn unavailable(mut self, tenant: &str, reason: impl Into<String>) -> Self {
        self.unavailable.insert(tenant.to_string(), reason.into());
        self
    }

    /// [`tenant_with_policy`](Self::tenant_with_policy), or, when the rules
    /// do not bind, the tenant [`unavailable`](Self::unavailable) with why.
    pub fn tenant_or_unavailable(self, config: TenantConfig, compiled: &CompiledPolicy) -> Self {
        match bind(&config, compiled) {
            Ok(policy) if !self.tenants.contains_key(&config.tenant) => {
                let mut this = self;
                this.tenants
                    .insert(config.tenant.clone(), Arc::new(Tenant { config, policy }));
                this
            }
            Ok(_) => {
                let tenant = config.tenant.clone();
                self.unavailable(&tenant, "configured twice")
            }
            Err(e) => {
                let tenant = config.tenant.clone();
                tracing::error!(%tenant, error = %e,
                    "the tenant's rules do not bind its policy; its requests are refused until rules that load are activated");
                self.unavailable(&tenant, e.to_string())
            }
        }
    }

    /// Who the tenants' policy activations are recorded as made by (the
    /// operator starting the host); unnamed by default.
    pub fn activated_by(mut self, actor: impl Into<String>) -> Self {
        self.activated_by = Some(actor.into());
        self
    }

    /// Uses `clock` for request times and deadlines (the system clock by default).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Tells `observer` of every classification and new authorization.
    pub fn observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = observer;
        self
    }

    /// Uses `executor` to move money (the store's ledger by default).
    pub fn executor(mut self, executor: Arc<dyn PaymentExecutor>) -> Self {
        self.executor = Some(executor);
        self
    }

    /// Adds a tenant, loading its policy from the path in its configuration
    /// (a `.wasm` file, or one of the [named policies](Self::named_policies)).
    pub fn tenant(self, config: TenantConfig) -> Result<Self, GovernError> {
        let policy = compile_tenant_policy(&self.runtime, &config, &self.named)?;
        self.insert(config, policy)
    }

    /// Adds a tenant served by an already compiled policy.
    pub fn tenant_with_policy(
        self,
        config: TenantConfig,
        compiled: &CompiledPolicy,
    ) -> Result<Self, GovernError> {
        let policy = bind(&config, compiled)?;
        self.insert(config, policy)
    }

    fn insert(mut self, config: TenantConfig, policy: TenantPolicy) -> Result<Self, GovernError> {
        let tenant = config.tenant.clone();
        if self.tenants.contains_key(&tenant) {
            return Err(GovernError::Setup {
                tenant,
                message: "configured twice".into(),
            });
        }
        warn_if_declared(&config);
        self.tenants
            .insert(tenant, Arc::new(Tenant { config, policy }));
        Ok(self)
    }

    /// Adds a tenant from its configuration file.
    pub fn tenant_file(self, path: &Path) -> Result<Self, GovernError> {
        let config = TenantConfig::load(path)?;
        self.tenant(config)
    }

    /// The governor. Each tenant whose policy or configuration differs from
    /// the one last recorded gets a `policy_activated` audit event first.
    pub fn build(self) -> Result<Governor, GovernError> {
        let now_ms = self.clock.now_ms();
        for tenant in self.tenants.values() {
            record_activation(
                self.store.as_ref(),
                tenant,
                self.activated_by.as_deref(),
                now_ms,
            )?;
        }
        let executor = self.executor.unwrap_or_else(|| {
            Arc::new(LedgerExecutor::new(self.store.clone(), self.clock.clone()))
        });
        Ok(Governor {
            inner: Arc::new(Inner {
                store: self.store,
                executor,
                clock: self.clock,
                observer: self.observer,
                breakers: breaker::Breakers::new(self.breaker),
                tenants: RwLock::new(self.tenants),
                unavailable: RwLock::new(self.unavailable),
                named: self.named,
            }),
        })
    }
}

/// Appends a `policy_activated` event naming the tenant's policy and
/// configuration, unless the latest one already names the same.
fn record_activation(
    store: &dyn Store,
    tenant: &Tenant,
    actor: Option<&str>,
    now_ms: u64,
) -> Result<Option<String>, GovernError> {
    let info = tenant.policy.info();
    let event = crate::store::EventDraft {
        kind: "policy_activated".into(),
        actor: actor.map(str::to_string),
        detail: serde_json::json!({
            "policy": {
                "name": info.name, "version": info.version,
                "digest": info.digest, "contract": info.contract,
                "toolchain": info.toolchain, "limits": info.limits,
            },
            "policy_config_digest": tenant.policy.config_digest(),
            "tenant_config_digest": tenant.config.digest,
            "failure_tier": tenant.config.failure_tier,
        }),
    };
    // The actor is not part of what is compared: the same rules activated
    // again by someone else change nothing.
    let audit_id = store.record_tenant_event(
        &tenant.config.tenant,
        now_ms,
        tenant.config.retention_years,
        &event,
    )?;
    if let Some(id) = &audit_id {
        tracing::info!(tenant = %tenant.config.tenant, policy = %info.name, version = %info.version,
            digest = %info.digest, audit_id = %id, "policy activated");
    }
    Ok(audit_id)
}

/// Compiles a tenant's policy (a `.wasm` file, or one of `named`) and binds
/// the tenant's policy configuration and failure tier.
pub fn compile_tenant_policy(
    runtime: &Runtime,
    config: &TenantConfig,
    named: &NamedPolicies,
) -> Result<TenantPolicy, GovernError> {
    let location = config.policy_location();
    let compiled = if location.exists() {
        runtime.compile_file(&location)
    } else {
        match named.get(&config.policy.path) {
            Some(bytes) => runtime.compile(bytes),
            None => {
                return Err(GovernError::Setup {
                    tenant: config.tenant.clone(),
                    message: format!(
                        "policy.path {:?} is neither a file nor a named policy",
                        config.policy.path
                    ),
                });
            }
        }
    };
    let compiled = compiled.map_err(|source| GovernError::Policy {
        tenant: config.tenant.clone(),
        source,
    })?;
    bind(config, &compiled)
}

fn bind(config: &TenantConfig, compiled: &CompiledPolicy) -> Result<TenantPolicy, GovernError> {
    let document = config
        .policy_config_json()
        .map_err(|message| GovernError::Setup {
            tenant: config.tenant.clone(),
            message,
        })?;
    compiled
        .configure(&document)
        .and_then(|p| p.with_failure_tier(config.failure_tier))
        .map_err(|source| GovernError::Policy {
            tenant: config.tenant.clone(),
            source,
        })
}

/// Policies a tenant may name instead of a `.wasm` file in `policy.path`:
/// the platform's own builds, or the example policies the `tiergate`
/// command bundles. Empty unless the embedder supplies some.
#[derive(Debug, Clone, Copy, Default)]
pub struct NamedPolicies(&'static [(&'static str, &'static [u8])]);

impl NamedPolicies {
    /// Policies by name: each a name and its component's bytes.
    pub const fn new(policies: &'static [(&'static str, &'static [u8])]) -> Self {
        NamedPolicies(policies)
    }

    /// The component of the policy called `name`.
    pub fn get(&self, name: &str) -> Option<&'static [u8]> {
        self.0
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, bytes)| *bytes)
    }

    /// The names, in order.
    pub fn names(&self) -> impl Iterator<Item = &'static str> {
        self.0.iter().map(|(n, _)| *n)
    }
}

/// An owner's free text (a verdict's reason, a correction's note) as it is
/// kept: in NFC, or refused naming `field` when it holds a character that
/// would act on a screen or reorder what the inbox and exports show.
fn owners_text(field: &'static str, text: &str) -> Result<String, GovernError> {
    tiergate_runtime::model::text::check_free_text(text)
        .map_err(|refused| GovernError::InvalidText { field, refused })?;
    let mut text = text.to_string();
    tiergate_runtime::model::text::nfc(&mut text);
    Ok(text)
}

/// `sha256:` of a request's content: the transaction without the host's
/// request time, so a retry of the same request hashes the same.
#[allow(
    clippy::expect_used,
    reason = "a transaction has text keys and no floats, so it serializes"
)]
pub fn content_hash(tx: &Transaction) -> String {
    let mut unstamped = tx.clone();
    unstamped.requested_at_ms = 0;
    let text = serde_json::to_string(&unstamped).expect("a transaction serializes");
    tiergate_runtime::model::digest::sha256(text.as_bytes())
}

impl Governor {
    /// Starts a governor over `store`, running policies on `runtime`.
    pub fn builder(runtime: Runtime, store: Arc<dyn Store>) -> GovernorBuilder {
        GovernorBuilder {
            runtime,
            store,
            executor: None,
            clock: Arc::new(SystemClock),
            tenants: BTreeMap::new(),
            activated_by: None,
            observer: Arc::new(observer::Nobody),
            unavailable: BTreeMap::new(),
            breaker: BreakerSettings::default(),
            named: NamedPolicies::default(),
        }
    }

    /// The policies a tenant's rules may name instead of a file.
    pub fn named_policies(&self) -> NamedPolicies {
        self.inner.named
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// A configured tenant's settings, as currently active.
    pub fn tenant_config(&self, tenant: &str) -> Result<TenantConfig, GovernError> {
        self.tenant(tenant).map(|t| t.config.clone())
    }

    /// The ids of the tenants served, sorted.
    pub fn tenant_ids(&self) -> Vec<String> {
        self.tenants().keys().cloned().collect()
    }

    /// The policy currently classifying a tenant's payments.
    pub fn tenant_policy(&self, tenant: &str) -> Result<TenantPolicy, GovernError> {
        self.tenant(tenant).map(|t| t.policy.clone())
    }

    fn tenant(&self, tenant: &str) -> Result<Arc<Tenant>, GovernError> {
        if let Some(t) = self.tenants().get(tenant) {
            return Ok(t.clone());
        }
        Err(match self.unavailable_reason(tenant) {
            Some(reason) => GovernError::RulesUnavailable {
                tenant: tenant.to_string(),
                reason,
            },
            None => GovernError::UnknownTenant(tenant.to_string()),
        })
    }

    /// Says why an unavailable tenant is refused from now on; a tenant being
    /// served is left as it is.
    pub fn explain_unavailable(&self, tenant: &str, reason: impl Into<String>) {
        let mut unavailable = self
            .inner
            .unavailable
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(why) = unavailable.get_mut(tenant) {
            *why = reason.into();
        }
    }

    /// Why a tenant's rules could not be loaded, when they could not: its
    /// requests fail closed until rules that load are activated.
    pub fn unavailable_reason(&self, tenant: &str) -> Option<String> {
        self.inner
            .unavailable
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(tenant)
            .cloned()
    }

    /// Checks that [`activate`](Self::activate) would take these rules:
    /// the tenant is one this governor serves (or could not load), and the
    /// policy binds its configuration. Nothing changes.
    pub fn check_activation(
        &self,
        config: &TenantConfig,
        compiled: &CompiledPolicy,
    ) -> Result<(), GovernError> {
        self.known(&config.tenant)?;
        bind(config, compiled).map(|_| ())
    }

    /// Refuses a tenant this governor neither serves nor could not load.
    fn known(&self, tenant: &str) -> Result<(), GovernError> {
        if self.tenants().contains_key(tenant) || self.unavailable_reason(tenant).is_some() {
            Ok(())
        } else {
            Err(GovernError::UnknownTenant(tenant.to_string()))
        }
    }

    fn tenants(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Tenant>>> {
        self.inner
            .tenants
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Activates new rules for a tenant already served: `config` (for the
    /// same tenant id) with `compiled` as its policy. The policy is bound and
    /// checked first, so a rejected activation changes nothing; then a
    /// `policy_activated` event naming `actor` is recorded and the rules are
    /// swapped in. Requests already running finish on the old rules.
    /// Returns the activation's audit id (`None` when nothing changed).
    pub fn activate(
        &self,
        config: TenantConfig,
        compiled: &CompiledPolicy,
        actor: &str,
    ) -> Result<Option<String>, GovernError> {
        self.known(&config.tenant)?;
        let policy = bind(&config, compiled)?;
        warn_if_declared(&config);
        let tenant = Arc::new(Tenant { config, policy });
        // Recorded and swapped under the write lock, so two activations
        // cannot be recorded in one order and applied in the other.
        let mut tenants = self
            .inner
            .tenants
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let audit_id = record_activation(
            self.inner.store.as_ref(),
            &tenant,
            Some(actor),
            self.inner.clock.now_ms(),
        )?;
        self.inner
            .unavailable
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&tenant.config.tenant);
        // New rules start with a clean slate: the old policy's failures
        // say nothing about the new one.
        self.inner.breakers.reset(&tenant.config.tenant);
        tenants.insert(tenant.config.tenant.clone(), tenant);
        Ok(audit_id)
    }

    /// Authorizes a payment: classifies it, applies guardrails and budgets,
    /// records it and starts its workflow. Autonomous payments are executed
    /// before this returns; the record is durable before the answer.
    ///
    /// The host stamps `requested_at_ms` with its clock, whatever the request
    /// says. The transaction id is the idempotency key: the same request again
    /// returns the stored authorization; a different one with the same id is
    /// a [`GovernError::Conflict`].
    pub async fn authorize(&self, tx: Transaction) -> Result<Authorization, GovernError> {
        let this = self.clone();
        blocking(move || this.authorize_blocking(tx)).await
    }

    /// [`authorize`](Self::authorize), recording `caller` (the API key or
    /// other credential that submitted the request) as the originator's key.
    /// Also says whether this request recorded the payment or found it
    /// recorded by an earlier one with the same id.
    pub async fn authorize_from(
        &self,
        tx: Transaction,
        caller: String,
    ) -> Result<Answered, GovernError> {
        let this = self.clone();
        blocking(move || this.answer(tx, Some(&caller))).await
    }

    /// [`authorize`](Self::authorize) on the calling thread.
    pub fn authorize_blocking(&self, tx: Transaction) -> Result<Authorization, GovernError> {
        self.authorize_blocking_from(tx, None)
    }

    /// [`authorize_from`](Self::authorize_from) on the calling thread.
    pub fn authorize_blocking_from(
        &self,
        tx: Transaction,
        caller: Option<&str>,
    ) -> Result<Authorization, GovernError> {
        Ok(self.answer(tx, caller)?.authorization)
    }

    fn answer(&self, tx: Transaction, caller: Option<&str>) -> Result<Answered, GovernError> {
        let tenant = self.tenant(&tx.tenant)?;
        let tx = self.admit(&tenant, tx)?;
        let hash = content_hash(&tx);
        // A retry is answered by `record`, which finds the stored id before
        // anything is classified inside; SQLite's `peek` finds it too, so the
        // policy does not run for it beforehand either.
        let entry = NewEntry {
            tenant: &tx.tenant,
            tx_id: &tx.id,
            agent: &tx.agent,
            recipient: &tx.recipient,
            history_since_ms: tx.requested_at_ms.saturating_sub(CONTEXT_HORIZON_MS),
            team: tenant.config.team_of(&tx.agent).map(|t| t.name.as_str()),
            currency: &tenant.config.currency,
            window_start_ms: tx.requested_at_ms.saturating_sub(BUDGET_WINDOW_MS),
            now_ms: self.inner.clock.now_ms(),
            asked: &[],
        };
        let mut early = self.classify_early(&tenant, &tx, &entry)?;
        // Its questions are asked again under the lock: the store may read
        // their answers with the snapshot.
        let asked = early
            .as_ref()
            .map(|e| history::questions(&e.decision.context_reads, tx.requested_at_ms))
            .unwrap_or_default();
        let entry = NewEntry {
            asked: &asked,
            ..entry
        };
        let mut decide = |snapshot: &Snapshot, audit_id: &str| {
            let locked = Locked {
                tenant: &tenant,
                tx: &tx,
                hash: &hash,
                caller,
                now_ms: entry.now_ms,
            };
            self.decide_locked(&locked, early.take(), snapshot, audit_id)
        };
        let recorded = record_governed(self.inner.store.as_ref(), &entry, &mut decide);
        self.inner
            .breakers
            .recorded(&tx.tenant, &tx.id, matches!(recorded, Ok(Recorded::New(_))));
        let auth = match recorded? {
            // An earlier request with this id, or another one that won the race.
            Recorded::Existing(existing) => {
                return Ok(Answered {
                    authorization: same_request(existing, &hash)?,
                    new: false,
                });
            }
            Recorded::New(auth) if auth.status == Status::Executing => self.execute(auth)?,
            Recorded::New(auth) => auth,
        };
        self.inner.observer.recorded(&auth);
        Ok(Answered {
            authorization: auth,
            new: true,
        })
    }

    /// The request as the host takes it: stamped with the host's time (an
    /// agent that dated its own request could slip out of its budget and
    /// velocity windows), normalized, checked, in the tenant's currency and
    /// under its `max_amount`.
    fn admit(&self, tenant: &Tenant, mut tx: Transaction) -> Result<Transaction, GovernError> {
        tx.requested_at_ms = self.inner.clock.now_ms();
        tx.normalize()?;
        tx.validate()?;
        if tx.currency != tenant.config.currency {
            return Err(GovernError::CurrencyMismatch {
                tenant: tx.tenant.clone(),
                tx_id: tx.id.clone(),
                expected: tenant.config.currency.clone(),
                got: tx.currency.clone(),
            });
        }
        if let Some(max) = tenant.config.max_amount {
            tx.amount_at_most(max, &format!("tenant {}'s `max_amount`", tx.tenant))?;
        }
        Ok(tx)
    }

    /// Classifies before the store's write lock, on the last committed
    /// history, so writers do not wait on the sandbox. Inside, that decision
    /// stands only if the exact snapshot answers every context question the
    /// policy asked the same way: a policy sees nothing else, so it would
    /// decide the same again. Otherwise it runs again on the exact snapshot,
    /// and velocity counts stay as exact as budgets.
    ///
    /// A failed classification stands whatever the answers: it is the
    /// failure tier, which lands with a human and is never looser than what
    /// the policy could have said, and running a failing policy again under
    /// the write lock would let one tenant's broken policy hold up every
    /// writer. Its context reads say what it saw, so it replays.
    fn classify_early(
        &self,
        tenant: &Tenant,
        tx: &Transaction,
        entry: &NewEntry<'_>,
    ) -> Result<Option<Early>, GovernError> {
        if let breaker::Admission::Suspended { failures, until_ms } =
            self.inner.breakers.admit(&tx.tenant, entry.now_ms)
        {
            let decision = tenant.policy.failed_without_running(
                FailureKind::PolicySuspended,
                format!(
                    "it failed {failures} times in a row, so it is not run until {} UTC",
                    crate::utc::time(until_ms)
                ),
            );
            return Ok(Some(Early {
                decision,
                took: std::time::Duration::ZERO,
                seen: None,
            }));
        }
        let peeked = self.inner.store.peek(entry).unwrap_or_else(|e| {
            // Only a head start is lost: the policy runs inside instead.
            tracing::warn!(tenant = %tx.tenant, "cannot read the history before the write lock: {e}");
            None
        });
        let Some(reads) = peeked else {
            return Ok(None);
        };
        // The attributes the host vouches for, on the same history.
        let paid = || reads.recipient().map(|r| r.payment_count);
        let resolved = match registry::resolve(&tenant.config, tx, paid) {
            Ok(resolved) => resolved,
            Err(e) => {
                tracing::warn!(tenant = %tx.tenant, "cannot read the recipient's history before the write lock: {e}");
                return Ok(None);
            }
        };
        let started = std::time::Instant::now();
        let context = Arc::new(history::ReadsContext::new(
            reads,
            tx.requested_at_ms,
            &tx.currency,
        ));
        self.inner.observer.policy_ran(&tx.tenant, false);
        let decision = tenant
            .policy
            .classify_blocking(&resolved.tx, context.clone())?;
        // A history that could not be read answers nothing: such a decision
        // is made again inside.
        let early = (!context.failed()).then(|| Early {
            decision,
            took: started.elapsed(),
            seen: Some(resolved.tx),
        });
        // Its reader goes back to the pool before the write lock.
        drop(context);
        Ok(early)
    }

    /// Under the tenant's write lock, on the exact snapshot: the attributes
    /// the host vouches for, the decision (the early one if it still holds,
    /// else a new one), the breaker's count, and the planned change.
    fn decide_locked(
        &self,
        locked: &Locked<'_>,
        early: Option<Early>,
        snapshot: &Snapshot,
        audit_id: &str,
    ) -> Result<Change, GovernError> {
        let (tenant, tx) = (locked.tenant, locked.tx);
        let paid = || snapshot.history.recipient().map(|r| r.payment_count);
        let resolved = registry::resolve(&tenant.config, tx, paid)?;
        let (decision, took) = match self.early_still_holds(tx, early, &resolved.tx, snapshot)? {
            Some(held) => held,
            None => {
                let context = Arc::new(history::HistoryContext {
                    history: snapshot.history.all()?,
                    at_ms: tx.requested_at_ms,
                    currency: tx.currency.clone(),
                });
                let started = std::time::Instant::now();
                self.inner.observer.policy_ran(&tx.tenant, true);
                let decision = tenant.policy.classify_first(&resolved.tx, context)?;
                (decision, started.elapsed())
            }
        };
        self.inner.observer.classified(&tx.tenant, &decision, took);
        // Under the tenant's write lock: counted in the order recorded.
        let alert = self.inner.breakers.count(
            &tx.tenant,
            &tx.id,
            &decision,
            locked.now_ms,
            |failures, until_ms| tripped(tenant, tx, failures, until_ms),
            || budget_spent(tenant, tx),
        );
        let request = plan::Request {
            config: &tenant.config,
            tx: &resolved.tx,
            content_hash: locked.hash,
            decision: &decision,
            policy: tenant.policy.info(),
            config_digest: tenant.policy.config_digest(),
            caller: locked.caller,
            now_ms: locked.now_ms,
            alert: alert.as_deref(),
            provenance: &resolved.provenance,
            floors: &resolved.floors,
        };
        self.settled_in_ledger(plan::authorize(&request, &snapshot.holdings, audit_id))
    }

    /// The early decision and its time, if it stands on the exact snapshot:
    /// a failure always does; another only if the policy saw the same
    /// attributes and the snapshot answers its context questions the same.
    fn early_still_holds(
        &self,
        tx: &Transaction,
        early: Option<Early>,
        resolved: &Transaction,
        snapshot: &Snapshot,
    ) -> Result<Option<(Decision, std::time::Duration)>, GovernError> {
        let Some(early) = early else {
            return Ok(None);
        };
        if early.decision.failure.is_some() {
            return Ok(Some((early.decision, early.took)));
        }
        let kept = early.seen.as_ref() == Some(resolved)
            && history::same_answers(
                snapshot.history,
                tx.requested_at_ms,
                &tx.currency,
                &early.decision.context_reads,
            )?;
        self.inner.observer.early_decision(&tx.tenant, kept);
        Ok(kept.then_some((early.decision, early.took)))
    }

    /// An owner's verdict on a held payment: approve or reject one awaiting
    /// approval, veto one inside its veto window. `content_hash` must be the
    /// request's (as listed), so a verdict cannot land on another request.
    /// When the last required approval arrives the payment executes before
    /// this returns.
    pub async fn decide(
        &self,
        tenant: &str,
        tx_id: &str,
        act: Act,
        actor: &str,
        reason: &str,
        content_hash: &str,
    ) -> Result<Authorization, GovernError> {
        let (this, tenant, tx_id, actor, reason, hash) = (
            self.clone(),
            tenant.to_string(),
            tx_id.to_string(),
            actor.to_string(),
            reason.to_string(),
            content_hash.to_string(),
        );
        blocking(move || this.decide_blocking(&tenant, &tx_id, act, &actor, &reason, &hash)).await
    }

    /// Refuses `actor` unless it is one of the tenant's budget owners (as
    /// the configuration spells it, in NFC).
    fn require_owner(&self, tenant: &str, actor: &str) -> Result<(), GovernError> {
        let mut actor_nfc = actor.to_string();
        tiergate_runtime::model::text::nfc(&mut actor_nfc);
        if self.tenant(tenant)?.config.owners.contains(&actor_nfc) {
            Ok(())
        } else {
            Err(GovernError::NotAnOwner {
                actor: actor.to_string(),
                tenant: tenant.to_string(),
            })
        }
    }

    /// [`decide`](Self::decide) for a verdict that came with an API key:
    /// the key's id is recorded beside the owner, on the verdict and its
    /// audit event.
    #[allow(clippy::too_many_arguments)]
    pub async fn decide_with_key(
        &self,
        tenant: &str,
        tx_id: &str,
        act: Act,
        actor: &str,
        key_id: &str,
        reason: &str,
        content_hash: &str,
    ) -> Result<Authorization, GovernError> {
        let (this, tenant, tx_id, actor, key_id, reason, hash) = (
            self.clone(),
            tenant.to_string(),
            tx_id.to_string(),
            actor.to_string(),
            key_id.to_string(),
            reason.to_string(),
            content_hash.to_string(),
        );
        blocking(move || this.rule(&tenant, &tx_id, act, &actor, Some(&key_id), &reason, &hash))
            .await
    }

    /// [`decide`](Self::decide) on the calling thread.
    pub fn decide_blocking(
        &self,
        tenant: &str,
        tx_id: &str,
        act: Act,
        actor: &str,
        reason: &str,
        content_hash: &str,
    ) -> Result<Authorization, GovernError> {
        self.rule(tenant, tx_id, act, actor, None, reason, content_hash)
    }

    #[allow(clippy::too_many_arguments)]
    fn rule(
        &self,
        tenant: &str,
        tx_id: &str,
        act: Act,
        actor: &str,
        key_id: Option<&str>,
        reason: &str,
        content_hash: &str,
    ) -> Result<Authorization, GovernError> {
        self.require_owner(tenant, actor)?;
        let reason = &owners_text("reason", reason)?;
        let ruling = plan::Ruling {
            act,
            actor,
            key_id,
            reason,
            content_hash,
            now_ms: self.inner.clock.now_ms(),
        };
        let auth = update_governed(
            self.inner.store.as_ref(),
            tenant,
            tx_id,
            ruling.now_ms,
            &mut |current| {
                if current.transaction.agent == actor {
                    return Err(GovernError::OwnPayment {
                        actor: actor.to_string(),
                        tx_id: tx_id.to_string(),
                    });
                }
                self.settled_in_ledger(plan::rule_on(current, &ruling)?)
            },
        )?;
        if auth.status == Status::Executing {
            self.execute(auth)
        } else {
            Ok(auth)
        }
    }

    /// Processes every deadline that has passed: closed veto windows execute,
    /// unanswered approvals expire. Each is processed exactly once, even with
    /// several runners or after a restart. Returns the payments it moved.
    ///
    /// A payment that cannot be processed (its row unreadable, the store
    /// refusing its write, the executor's result unrecordable) is logged,
    /// counted ([`Observer::deadline_failed`]) and left due for the next
    /// pass: it never holds up the payments due after it. Only a failure to
    /// read what is due fails the pass.
    pub async fn run_deadlines(&self) -> Result<Vec<Authorization>, GovernError> {
        let this = self.clone();
        blocking(move || this.run_deadlines_blocking()).await
    }

    /// [`run_deadlines`](Self::run_deadlines) on the calling thread.
    pub fn run_deadlines_blocking(&self) -> Result<Vec<Authorization>, GovernError> {
        let now_ms = self.inner.clock.now_ms();
        let mut moved = Vec::new();
        let due = self.inner.store.due(now_ms)?;
        // A governor moves only its own tenants' payments.
        for (tenant, tx_id) in due
            .into_iter()
            .filter(|(t, _)| self.tenants().contains_key(t))
        {
            let processed = update_governed(
                self.inner.store.as_ref(),
                &tenant,
                &tx_id,
                now_ms,
                &mut |current| self.settled_in_ledger(plan::on_deadline(current, now_ms)?),
            )
            .and_then(|auth| {
                if auth.status == Status::Executing {
                    self.execute(auth)
                } else {
                    Ok(auth)
                }
            });
            match processed {
                Ok(auth) => {
                    self.inner.observer.deadline_processed(&auth);
                    moved.push(auth);
                }
                // Another runner took it first.
                Err(GovernError::NotDue(_)) => {}
                Err(e) => {
                    tracing::error!(%tenant, %tx_id, "cannot process a passed deadline; it stays due and is tried again on the next pass: {e}");
                    self.inner.observer.deadline_failed(&tenant, &tx_id);
                }
            }
        }
        Ok(moved)
    }

    /// Corrects a payment's audit record without altering it: appends a
    /// `correction` event that names the corrected event (its sequence
    /// number, kind and hash), who corrects it, and the note saying what
    /// was wrong and what is right. Only the tenant's budget owners may.
    pub fn correct(
        &self,
        tenant: &str,
        tx_id: &str,
        seq: u64,
        actor: &str,
        note: &str,
    ) -> Result<Authorization, GovernError> {
        self.require_owner(tenant, actor)?;
        if note.trim().is_empty() {
            return Err(GovernError::EmptyCorrection);
        }
        let note = &owners_text("note", note)?;
        let store = &self.inner.store;
        let corrected = store
            .events(tenant, Some(tx_id))?
            .into_iter()
            .find(|e| e.seq == seq)
            .ok_or_else(|| GovernError::NoSuchRecord {
                tx_id: tx_id.to_string(),
                seq,
            })?;
        let event = crate::store::EventDraft {
            kind: "correction".into(),
            actor: Some(actor.to_string()),
            detail: serde_json::json!({
                "corrects": { "seq": corrected.seq, "kind": corrected.event.kind, "hash": corrected.hash },
                "note": note,
            }),
        };
        update_governed(
            store.as_ref(),
            tenant,
            tx_id,
            self.inner.clock.now_ms(),
            &mut |current| {
                Ok(crate::store::Change {
                    authorization: current.clone(),
                    events: vec![event.clone()],
                    notices: Vec::new(),
                    ledger: false,
                })
            },
        )
    }

    /// One page of a tenant's payments (see [`Listing`](crate::store::Listing)).
    pub fn list(
        &self,
        tenant: &str,
        listing: &crate::store::Listing<'_>,
    ) -> Result<Vec<Authorization>, GovernError> {
        self.tenant(tenant)?;
        Ok(self.inner.store.list(tenant, listing)?)
    }

    /// What `agent` may still spend before each of its tenant's limits
    /// escalates a payment, and what each tier means.
    pub fn spending_limits(
        &self,
        tenant: &str,
        agent: &str,
    ) -> Result<SpendingLimits, GovernError> {
        let rules = self.tenant(tenant)?;
        let config = &rules.config;
        let now_ms = self.inner.clock.now_ms();
        let entry = NewEntry {
            tenant,
            tx_id: "",
            agent,
            recipient: "",
            history_since_ms: now_ms,
            team: config.team_of(agent).map(|t| t.name.as_str()),
            currency: &config.currency,
            window_start_ms: now_ms.saturating_sub(BUDGET_WINDOW_MS),
            now_ms,
            asked: &[],
        };
        let committed = self.inner.store.committed(&entry)?;
        Ok(limits::of(config, agent, &committed))
    }

    /// One payment's current state.
    pub fn get(&self, tenant: &str, tx_id: &str) -> Result<Authorization, GovernError> {
        self.tenant(tenant)?;
        self.inner
            .store
            .get(tenant, tx_id)?
            .ok_or_else(|| GovernError::NotFound {
                tenant: tenant.to_string(),
                tx_id: tx_id.to_string(),
            })
    }

    /// With the built-in ledger as executor, a change that makes a payment
    /// `executing` also writes it to the ledger and records it `executed`, in
    /// the same transaction: one commit, so no crash can leave it executing.
    fn settled_in_ledger(
        &self,
        change: crate::store::Change,
    ) -> Result<crate::store::Change, GovernError> {
        if change.authorization.status == Status::Executing
            && self.inner.executor.in_ledger(&change.authorization)
        {
            plan::executed_in_ledger(change)
        } else {
            Ok(change)
        }
    }

    /// Hands an executing payment to the executor, once, and records the result.
    fn execute(&self, auth: Authorization) -> Result<Authorization, GovernError> {
        // The rules in force now: an executor that needs the tenant's
        // settings (an x402 signer, its assets) reads today's.
        let rules = self.tenants().get(&auth.transaction.tenant).cloned();
        let result = self
            .inner
            .executor
            .execute(&auth, rules.as_ref().map(|t| &t.config));
        let t = &auth.transaction;
        update_governed(
            self.inner.store.as_ref(),
            &t.tenant,
            &t.id,
            self.inner.clock.now_ms(),
            &mut |current| plan::on_executed(current, &result),
        )
    }
}

/// [`Store::record`] with a plan that refuses with a governance error: the
/// refusal comes back as the plan gave it.
fn record_governed(
    store: &dyn Store,
    entry: &NewEntry<'_>,
    plan: &mut (dyn FnMut(&Snapshot, &str) -> Result<Change, GovernError> + Send),
) -> Result<Recorded, GovernError> {
    let mut refusal = None;
    let recorded = store.record(entry, &mut |snapshot, audit_id| {
        plan(snapshot, audit_id).map_err(|e| {
            refusal = Some(e);
            StoreError::Refused
        })
    });
    recorded.map_err(|e| governed(e, refusal))
}

/// [`Store::update`] with a decision that refuses with a governance error.
fn update_governed(
    store: &dyn Store,
    tenant: &str,
    tx_id: &str,
    now_ms: u64,
    decide: &mut (dyn FnMut(&Authorization) -> Result<Change, GovernError> + Send),
) -> Result<Authorization, GovernError> {
    let mut refusal = None;
    let updated = store.update(tenant, tx_id, now_ms, &mut |current| {
        decide(current).map_err(|e| {
            refusal = Some(e);
            StoreError::Refused
        })
    });
    updated.map_err(|e| governed(e, refusal))
}

/// A store's error as the pipeline reports it: the caller's own refusal as
/// it was, a missing payment as such, anything else as the store's failure.
fn governed(error: StoreError, refusal: Option<GovernError>) -> GovernError {
    match (error, refusal) {
        (StoreError::Refused, Some(refusal)) => refusal,
        (StoreError::NotFound { tenant, tx_id }, _) => GovernError::NotFound { tenant, tx_id },
        (error, _) => GovernError::Store(error),
    }
}

/// An authorization's answer, and whether this request recorded it.
#[derive(Debug, Clone)]
pub struct Answered {
    /// The payment's state.
    pub authorization: Authorization,
    /// Recorded by this request; false when an earlier request with the same
    /// id (a retry) had recorded it.
    pub new: bool,
}

fn same_request(existing: Authorization, hash: &str) -> Result<Authorization, GovernError> {
    if existing.content_hash == hash {
        Ok(existing)
    } else {
        Err(GovernError::Conflict {
            tx_id: existing.transaction.id.clone(),
            stored: existing.content_hash,
            sent: hash.to_string(),
        })
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, GovernError> + Send + 'static,
) -> Result<T, GovernError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(GovernError::TaskFailed(e)))
}

//! Compiled policies, their per-tenant configuration, and classification:
//! one fresh sandbox per call, every failure turned into the failure tier.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tiergate_policy::Tier;
use wasmtime::component::{Instance, InstancePre};
use wasmtime::{Store, Trap, UpdateDeadline};

use super::budget::{CpuBudget, thread_cpu_time};
use super::contract::{Answer, Exports, OversizedQuestion, TooManyReads, WitTransaction, prefix};
use super::limits::{HANDLES, TRANSFER_BYTES, decision as bounds};
use super::needs::{self, PolicyLimits, Toolchain};
use super::prepared::{Make, Shelf};
use super::sandbox::Sandbox;
use super::slots::{Share, Waited};
use super::{ClassifyError, EPOCH_TICK, LoadError, Runtime, SandboxLimits, compile, inspect};
use crate::model::context::{ContextRead, ContextSource, StaticContext};
use crate::model::decision::{Decision, FailureKind, PolicyFailure, Reason};
use crate::model::digest::sha256;
use crate::model::text::{code_point, escaped, first_unprintable};
use crate::model::transaction::Transaction;

/// What a policy says about itself, plus what the host knows of it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PolicyInfo {
    /// The policy's name.
    pub name: String,
    /// The policy's own version.
    pub version: String,
    /// The tiers it declares it can return.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<crate::model::schema::TierName>))]
    pub tiers: Vec<Tier>,
    /// The contract version it implements, such as `0.1.0`.
    pub contract: String,
    /// `sha256:` digest of the component's bytes: which code decided.
    pub digest: String,
    /// The language and toolchain the component records, when it does.
    #[serde(default)]
    pub toolchain: Option<Toolchain>,
    /// The bounds each call of this policy runs under.
    pub limits: PolicyLimits,
}

/// A checked, compiled policy component, ready to be configured for tenants.
/// Cheap to clone; one compiled policy serves any number of tenants.
#[derive(Clone)]
pub struct CompiledPolicy(Arc<Compiled>);

struct Compiled {
    runtime: Runtime,
    /// The runtime's limits with this policy's own memory, fuel and CPU
    /// allowance.
    limits: SandboxLimits,
    pre: InstancePre<Sandbox>,
    /// The exports of its contract version, type-checked once.
    exports: Exports,
    info: PolicyInfo,
}

impl fmt::Debug for CompiledPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CompiledPolicy").field(&self.0.info).finish()
    }
}

/// What a call is: it decides the wall-clock deadline and whose line the
/// call waits in for an instance slot.
#[derive(Clone, Copy)]
enum Call {
    /// A tenant's classification: the configured timeout, the tenant's share.
    Classify(Share),
    /// The same, inside the store's write transaction: every other writer
    /// waits on it, so it takes the next free slot before anyone else.
    ClassifyFirst(Share),
    /// `info` or `check-config`, once per load: the first call into a fresh
    /// component can be slow on a busy machine, and nothing waits on it, so
    /// it gets at least [`LOAD_TIMEOUT`]. Fuel still bounds it.
    Load,
}

/// The least wall-clock deadline of load-time calls.
const LOAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// The result of one sandboxed call: its value or the failure, and what it
/// read and spent along the way.
struct Run<R> {
    result: Result<R, PolicyFailure>,
    reads: Vec<ContextRead>,
    fuel_used: u64,
    cost: Cost,
}

/// What a call cost, to charge to its tenant's CPU budget.
#[derive(Clone, Copy, Default)]
struct Cost {
    /// The calling thread's CPU time when the call started.
    cpu_start: Duration,
    /// Wall time from then until the sandbox was torn down or handed on.
    wall: Duration,
    /// CPU time spent for the tenant outside the call: making its sandbox
    /// ahead, tearing down earlier ones.
    spent_behind: Duration,
}

impl Cost {
    /// What is charged beyond `free`. The thread's CPU clock is read (a
    /// system call) only when the call may have cost more than `free`: a
    /// thread cannot have run longer than the wall time that passed. Called
    /// on the thread that made the call.
    fn beyond(&self, free: Duration) -> Duration {
        if self.wall + self.spent_behind <= free {
            return Duration::ZERO;
        }
        let used = thread_cpu_time().saturating_sub(self.cpu_start) + self.spent_behind;
        used.saturating_sub(free)
    }
}

impl CompiledPolicy {
    pub(super) fn compile(runtime: Runtime, bytes: &[u8]) -> Result<Self, LoadError> {
        let limits = &runtime.inner.limits;
        inspect::check_format(bytes, limits.maxima.component_bytes)?;
        compile::check_bounds(bytes, &limits.compile)?;
        let declared = needs::declared(bytes)?;
        let policy_limits = declared.limits(limits)?;
        let engine = &runtime.inner.engine;
        let digest = sha256(bytes);
        let compile = || compile::compile(engine, limits, bytes);
        let component = match runtime.inner.compiled_cache.get() {
            Some(cache) => cache.component(engine, &digest, compile)?,
            None => compile()?,
        };
        let contract = inspect::check_interface(engine, &component, bytes)?;
        let link = |e: wasmtime::Error| LoadError::Link(format!("{e:#}"));
        let pre = runtime
            .inner
            .linker
            .instantiate_pre(&component)
            .map_err(link)?;
        let exports = Exports::find(&component, contract).ok_or_else(|| {
            LoadError::Link(format!(
                "the policy interface of contract {contract} lacks one of {}",
                Exports::required(contract)
            ))
        })?;
        let mut compiled = Compiled {
            limits: policy_limits.applied_to(&runtime.inner.limits),
            runtime,
            pre,
            exports,
            info: PolicyInfo {
                name: String::new(),
                version: String::new(),
                tiers: Vec::new(),
                contract: contract.to_string(),
                digest,
                toolchain: declared.toolchain,
                limits: policy_limits,
            },
        };
        let answer = compiled
            .run(
                Arc::new(StaticContext::default()),
                Call::Load,
                None,
                |store, instance, _| {
                    // Every export's type, before anything calls one: the
                    // exports are called unchecked from then on.
                    if let Some(mistyped) = compiled.exports.mistyped(store, &instance) {
                        return Ok(Err(mistyped));
                    }
                    compiled.exports.info(store, &instance).map(Ok)
                },
            )
            .map_err(LoadError::from)?
            .result
            .map_err(|f| {
                LoadError::BadMetadata(format!("`info` failed ({}): {}", f.kind.code(), f.detail))
            })?
            .map_err(|(export, detail)| LoadError::MistypedExport {
                export: export.to_string(),
                contract: contract.to_string(),
                detail,
            })?;
        for (what, text) in [("name", &answer.name), ("version", &answer.version)] {
            let problem = if text.is_empty() || text.len() > bounds::MAX_NAME_BYTES {
                Some(format!(
                    "must be 1 to {} bytes, not {}",
                    bounds::MAX_NAME_BYTES,
                    text.len()
                ))
            } else {
                first_unprintable(text).map(|c| {
                    format!(
                        "must be printable text, but holds {}, a control or format character",
                        code_point(c)
                    )
                })
            };
            if let Some(problem) = problem {
                // Quoted cut and escaped: it is the policy's text, not ours.
                return Err(LoadError::BadMetadata(format!(
                    "the policy's {what} {problem}: \"{}\"",
                    prefix(&escaped(text), QUOTED_BYTES)
                )));
            }
        }
        let mut tiers = answer.tiers;
        tiers.sort();
        tiers.dedup();
        if tiers.is_empty() {
            return Err(LoadError::BadMetadata(
                "the policy declares no tier it can return".into(),
            ));
        }
        compiled.info.name = answer.name;
        compiled.info.version = answer.version;
        compiled.info.tiers = tiers;
        tracing::info!(
            policy = %compiled.info.name,
            version = %compiled.info.version,
            digest = %compiled.info.digest,
            contract = contract,
            "policy compiled"
        );
        Ok(CompiledPolicy(Arc::new(compiled)))
    }

    /// The policy's name, version, declared tiers, contract and digest.
    pub fn info(&self) -> &PolicyInfo {
        &self.0.info
    }

    /// Binds a tenant's configuration document, which the policy checks in
    /// the sandbox. The failure tier starts as collaborative.
    pub fn configure(&self, config: &str) -> Result<TenantPolicy, LoadError> {
        let run = self.0.run(
            Arc::new(StaticContext::default()),
            Call::Load,
            None,
            |store, instance, _| self.0.exports.check_config(store, &instance, config),
        )?;
        let config: Arc<str> = config.into();
        match run.result {
            Ok(Ok(())) => Ok(TenantPolicy {
                compiled: self.clone(),
                shelf: self
                    .0
                    .runtime
                    .inner
                    .preparer
                    .shelf(self.0.maker(config.clone())),
                share: Share::new(),
                budget: Arc::new(CpuBudget::new(
                    self.0.runtime.inner.limits.cpu_per_second,
                    self.0.runtime.inner.limits.cpu_burst,
                    Instant::now(),
                )),
                config_digest: sha256(config.as_bytes()),
                config,
                failure_tier: Tier::Collaborative,
            }),
            Ok(Err(message)) => Err(LoadError::InvalidConfig(bounded(&message))),
            Err(failure) => Err(LoadError::ConfigCheckFailed(failure)),
        }
    }
}

impl Compiled {
    /// Runs `call` in a fresh store and instance under every limit: one
    /// made ahead from `shelf` when one is ready (`call`'s third argument
    /// says so: it has been configured), otherwise one made now.
    fn run<R>(
        &self,
        context: Arc<dyn ContextSource>,
        kind: Call,
        shelf: Option<&Arc<Shelf>>,
        call: impl FnOnce(&mut Store<Sandbox>, Instance, bool) -> wasmtime::Result<R>,
    ) -> Result<Run<R>, Waited> {
        let inner = &self.runtime.inner;
        let limits = &self.limits;
        let wait = limits.slot_wait;
        let _slot = match kind {
            Call::Classify(share) => inner.slots.take(share, wait),
            Call::ClassifyFirst(share) => inner.slots.take_first(share, wait),
            Call::Load => inner.slots.take(Share::LOADING, wait),
        }?;
        let (cpu_start, started) = (thread_cpu_time(), Instant::now());
        let timeout = match kind {
            Call::Classify(_) | Call::ClassifyFirst(_) => limits.timeout,
            Call::Load => limits.timeout.max(LOAD_TIMEOUT),
        };
        let prepared = shelf.and_then(|shelf| inner.preparer.take(shelf));
        // CPU time spent for this tenant outside the call: making the
        // sandbox ahead, tearing down earlier ones.
        let mut spent_behind = shelf.map_or(Duration::ZERO, |shelf| shelf.owed_cpu());
        let made_ahead = prepared.is_some();
        let (mut store, instance) = match prepared {
            Some(prepared) => {
                spent_behind += prepared.cpu;
                let mut store = prepared.store;
                store.data_mut().context = Some(context);
                // The fuel stays as instantiating left it, as in a sandbox
                // made now; only the deadline starts with the call.
                set_deadline(&mut store, timeout, cpu_start);
                (store, Ok(prepared.instance))
            }
            None => {
                let mut store = new_store(&self.runtime, limits, Some(context));
                let instance = arm(&mut store, limits, timeout, cpu_start)
                    .and_then(|()| self.pre.instantiate(&mut store));
                (store, instance)
            }
        };
        let result = instance.and_then(|instance| call(&mut store, instance, made_ahead));
        let mut run = outcome(&mut store, result, limits, timeout);
        // Tearing the sandbox down is part of the call's cost, here or
        // behind it.
        match shelf {
            Some(shelf) => {
                store.data_mut().release_context();
                inner.preparer.tear_down(shelf, store, made_ahead);
            }
            None => drop(store),
        }
        run.cost = Cost {
            cpu_start,
            wall: started.elapsed(),
            spent_behind,
        };
        Ok(run)
    }

    /// Makes sandboxes of this policy ahead of their calls: what
    /// [`run`](Self::run) would make, instantiating (and, for a contract
    /// that reads its configuration before `classify`, configuring with
    /// `config`) under load-time bounds.
    fn maker(self: &Arc<Self>, config: Arc<str>) -> Make {
        let compiled = Arc::downgrade(self);
        Box::new(move || {
            let compiled = compiled
                .upgrade()
                .ok_or_else(|| wasmtime::Error::msg("the policy has been unloaded"))?;
            let limits = &compiled.limits;
            let mut store = new_store(&compiled.runtime, limits, None);
            let timeout = limits.timeout.max(LOAD_TIMEOUT);
            arm(&mut store, limits, timeout, thread_cpu_time())?;
            let instance = compiled.pre.instantiate(&mut store)?;
            if let Err(refused) = compiled.exports.configure(&mut store, &instance, &config)? {
                // Made at the call instead, which fails closed naming it.
                return Err(wasmtime::Error::msg(format!(
                    "`configure` refused the configuration it accepted when loaded: {refused}"
                )));
            }
            Ok((store, instance))
        })
    }
}

/// A compiled policy bound to one tenant's configuration and failure tier.
#[derive(Clone)]
pub struct TenantPolicy {
    compiled: CompiledPolicy,
    /// Its sandboxes made ahead, when preparation is on.
    shelf: Option<Arc<Shelf>>,
    /// Whose line its calls wait in for a slot: one per configuration, and
    /// so one per tenant.
    share: Share,
    /// The CPU time its calls may use: one per configuration, shared by
    /// its clones.
    budget: Arc<CpuBudget>,
    config: Arc<str>,
    config_digest: String,
    failure_tier: Tier,
}

impl fmt::Debug for TenantPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantPolicy")
            .field("policy", &self.compiled.0.info)
            .field("config_digest", &self.config_digest)
            .field("failure_tier", &self.failure_tier)
            .finish()
    }
}

impl TenantPolicy {
    /// Sets the tier applied when the policy fails. It may only be
    /// collaborative or prohibited: a failing policy never lets a payment
    /// through on its own.
    pub fn with_failure_tier(mut self, tier: Tier) -> Result<Self, LoadError> {
        if tier < Tier::Collaborative {
            return Err(LoadError::FailureTierTooLoose(tier));
        }
        self.failure_tier = tier;
        Ok(self)
    }

    /// The tier applied when the policy fails.
    pub fn failure_tier(&self) -> Tier {
        self.failure_tier
    }

    /// The compiled policy's metadata.
    pub fn info(&self) -> &PolicyInfo {
        self.compiled.info()
    }

    /// `sha256:` digest of the configuration document.
    pub fn config_digest(&self) -> &str {
        &self.config_digest
    }

    /// Classifies a transaction on a blocking thread pool; many tasks may
    /// call this at once (the instance pool bounds how many run together).
    #[cfg(feature = "tokio")]
    pub async fn classify(
        &self,
        tx: Transaction,
        context: Arc<dyn ContextSource>,
    ) -> Result<Decision, ClassifyError> {
        let this = self.clone();
        match tokio::task::spawn_blocking(move || this.classify_blocking(&tx, context)).await {
            Ok(result) => result,
            Err(e) => Ok(self.fail_closed(
                PolicyFailure {
                    kind: FailureKind::Host,
                    detail: format!("the classification task did not finish: {e}"),
                },
                None,
                Vec::new(),
                0,
            )),
        }
    }

    /// Classifies a transaction on the calling thread.
    ///
    /// An invalid transaction is an error and no policy runs. Anything the
    /// policy does wrong yields a decision with the failure tier (or the
    /// stricter tier the policy asked for) and the failure kept on it.
    pub fn classify_blocking(
        &self,
        tx: &Transaction,
        context: Arc<dyn ContextSource>,
    ) -> Result<Decision, ClassifyError> {
        self.classify_as(Call::Classify(self.share), tx, context)
    }

    /// [`classify_blocking`](Self::classify_blocking) for a caller holding the
    /// store's write transaction: it waits for no other classification, so
    /// another caller of the same tenant cannot hold up every writer.
    pub fn classify_first(
        &self,
        tx: &Transaction,
        context: Arc<dyn ContextSource>,
    ) -> Result<Decision, ClassifyError> {
        self.classify_as(Call::ClassifyFirst(self.share), tx, context)
    }

    fn classify_as(
        &self,
        call: Call,
        tx: &Transaction,
        context: Arc<dyn ContextSource>,
    ) -> Result<Decision, ClassifyError> {
        tx.validate()?;
        if let Err(spent) = self.budget.admit(Instant::now()) {
            return Ok(self.failed_without_running(
                FailureKind::CpuBudgetExhausted,
                format!(
                    "its tenant's policy used all the CPU time its budget allows ({}); it is not run until the budget refills, in about {} ms",
                    self.budget.describe(),
                    spent.refills_in.as_millis().max(1)
                ),
            ));
        }
        let wit_tx = WitTransaction::new(tx);
        let compiled = &self.compiled.0;
        let run = compiled.run(
            context,
            call,
            self.shelf.as_ref(),
            |store, instance, configured| {
                compiled
                    .exports
                    .classify(store, &instance, &self.config, configured, &wit_tx)
            },
        )?;
        let cost = run.cost;
        let decision = self.decision_from(run);
        // The allowance is for answers: a call that failed (looped until its
        // fuel or deadline ran out, say) is charged whole.
        let free = match decision.failure {
            None => compiled.limits.cpu_free_per_call,
            Some(_) => Duration::ZERO,
        };
        let charge = cost.beyond(free);
        self.budget.charge(charge, Instant::now());
        Ok(decision)
    }

    /// One instance kept across calls, under the same limits, for measuring
    /// what a fresh instance per call costs. The host never classifies this
    /// way: whatever one call leaves in memory would reach the next.
    #[cfg(feature = "bench")]
    pub fn reused_instance(&self) -> Result<ReusedInstance, LoadError> {
        let limits = &self.compiled.0.limits;
        let mut store = new_store(
            &self.compiled.0.runtime,
            limits,
            Some(Arc::new(StaticContext::default())),
        );
        let compiled = &self.compiled.0;
        let instance = arm(&mut store, limits, LOAD_TIMEOUT, thread_cpu_time())
            .and_then(|()| compiled.pre.instantiate(&mut store))
            .and_then(|instance| {
                let configured = compiled
                    .exports
                    .configure(&mut store, &instance, &self.config)?;
                configured.map_err(wasmtime::Error::msg)?;
                Ok(instance)
            })
            .map_err(|e| LoadError::Link(format!("cannot instantiate: {e:#}")))?;
        Ok(ReusedInstance {
            policy: self.clone(),
            store,
            instance,
        })
    }

    /// The decision for a sandboxed call's result: the policy's answer if it
    /// keeps the contract, otherwise the failure tier.
    fn decision_from(&self, run: Run<Answer>) -> Decision {
        let outcome = match run.result {
            Ok(Answer::Decided {
                tier,
                reasons,
                suggestion,
            }) => self.check_answer(tier, reasons, suggestion),
            Ok(Answer::Oversized { tier, detail }) => Err((
                PolicyFailure {
                    kind: FailureKind::DecisionOversized,
                    detail,
                },
                Some(tier),
            )),
            Ok(Answer::Error(message)) => Err((
                PolicyFailure {
                    kind: FailureKind::PolicyError,
                    detail: bounded(&message),
                },
                None,
            )),
            Err(failure) => Err((failure, None)),
        };
        match outcome {
            Ok((tier, reasons, suggestion)) => Decision {
                tier,
                reasons,
                suggestion,
                failure: None,
                context_reads: run.reads,
                fuel_used: run.fuel_used,
            },
            Err((failure, asked)) => self.fail_closed(failure, asked, run.reads, run.fuel_used),
        }
    }

    /// Checks a decision, read within the contract's sizes, against the
    /// rest of the contract and the declared tiers. On failure, also returns
    /// the tier the policy asked for, so a broken answer can still make the
    /// result stricter.
    #[allow(clippy::type_complexity)]
    fn check_answer(
        &self,
        tier: Tier,
        reasons: Vec<Reason>,
        suggestion: Option<String>,
    ) -> Result<(Tier, Vec<Reason>, Option<String>), (PolicyFailure, Option<Tier>)> {
        let fail = |kind, detail: String| {
            let detail = bounded(&detail);
            Err((PolicyFailure { kind, detail }, Some(tier)))
        };
        if !self.info().tiers.contains(&tier) {
            let declared: Vec<&str> = self.info().tiers.iter().map(|t| t.as_str()).collect();
            return fail(
                FailureKind::UndeclaredTier,
                format!("returned {tier}, but declares only {}", declared.join(", ")),
            );
        }
        if reasons.is_empty() {
            return fail(
                FailureKind::DecisionMalformed,
                "the decision has no reason".into(),
            );
        }
        for (i, r) in reasons.iter().enumerate() {
            let code_ok = r
                .code
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if r.code.is_empty() || !code_ok {
                return fail(
                    FailureKind::DecisionMalformed,
                    format!(
                        "reason code \"{}\" is not snake_case",
                        escaped(&quoted_code(&r.code))
                    ),
                );
            }
            if r.message.trim().is_empty() {
                return fail(
                    FailureKind::DecisionMalformed,
                    format!("reason {i} ({}) has an empty message", r.code),
                );
            }
            if let Some(c) = first_unprintable(&r.message) {
                return fail(
                    FailureKind::DecisionMalformed,
                    format!(
                        "reason {i} ({})'s message holds {}, a control or format character",
                        r.code,
                        code_point(c)
                    ),
                );
            }
        }
        if let Some(c) = suggestion.as_deref().and_then(first_unprintable) {
            return fail(
                FailureKind::DecisionMalformed,
                format!(
                    "the suggestion holds {}, a control or format character",
                    code_point(c)
                ),
            );
        }
        Ok((tier, reasons, suggestion))
    }

    /// The failure tier for a failure the host found without running the
    /// policy (suspended, out of CPU budget): no reads, no fuel.
    pub fn failed_without_running(&self, kind: FailureKind, detail: String) -> Decision {
        self.fail_closed(PolicyFailure { kind, detail }, None, Vec::new(), 0)
    }

    fn fail_closed(
        &self,
        failure: PolicyFailure,
        asked: Option<Tier>,
        reads: Vec<ContextRead>,
        fuel_used: u64,
    ) -> Decision {
        let tier = asked.map_or(self.failure_tier, |t| t.max(self.failure_tier));
        // A tenant out of CPU budget is refused at once on every call: one
        // line each would flood the log (the owners are alerted instead).
        if failure.kind != FailureKind::CpuBudgetExhausted {
            tracing::warn!(
                policy = %self.info().name,
                digest = %self.info().digest,
                failure = failure.kind.code(),
                detail = %failure.detail,
                %tier,
                "policy failed; failure tier applied"
            );
        }
        let reason = Reason::new(
            failure.kind.code(),
            format!(
                "the policy failed, so the failure tier applies: {}",
                failure.detail
            ),
        );
        Decision {
            tier,
            reasons: vec![reason],
            suggestion: None,
            failure: Some(failure),
            context_reads: reads,
            fuel_used,
        }
    }
}

/// A policy instance reused across classifications; see
/// [`TenantPolicy::reused_instance`].
#[cfg(feature = "bench")]
pub struct ReusedInstance {
    policy: TenantPolicy,
    store: Store<Sandbox>,
    instance: Instance,
}

#[cfg(feature = "bench")]
impl ReusedInstance {
    /// Classifies `tx` in the kept instance, with fresh fuel and deadline.
    pub fn classify(
        &mut self,
        tx: &Transaction,
        context: Arc<dyn ContextSource>,
    ) -> Result<Decision, ClassifyError> {
        tx.validate()?;
        let limits = &self.policy.compiled.0.limits;
        let wit_tx = WitTransaction::new(tx);
        let data = self.store.data_mut();
        data.context = Some(context);
        data.reads.clear();
        let exports = &self.policy.compiled.0.exports;
        let result =
            arm(&mut self.store, limits, limits.timeout, thread_cpu_time()).and_then(|()| {
                exports.classify(
                    &mut self.store,
                    &self.instance,
                    &self.policy.config,
                    true,
                    &wit_tx,
                )
            });
        let run = outcome(&mut self.store, result, limits, limits.timeout);
        Ok(self.policy.decision_from(run))
    }
}

/// How many times its deadline a call may last in wall time while its
/// thread waits for a core (or for a host call) rather than working.
pub(crate) const WALL_SLACK: u32 = 4;

/// Sets a call's deadline: the call is stopped once its thread has spent
/// `timeout` of CPU time in it (counted from `cpu_start`), or after [`WALL_SLACK`] times `timeout` of
/// wall time whatever it spent. Counting the call's own CPU time keeps a
/// sound policy from failing closed because the machine ran other threads
/// (a looping neighbour's, say) while it waited to be scheduled; a policy
/// that loops is stopped as soon as it has looped for `timeout`. The epoch
/// ticks only tell when to look.
fn set_deadline(store: &mut Store<Sandbox>, timeout: Duration, cpu_start: Duration) {
    let ticks = |d: Duration| d.as_millis().div_ceil(EPOCH_TICK.as_millis()) as u64 + 1;
    let wall_end = Instant::now() + timeout * WALL_SLACK;
    store.set_epoch_deadline(ticks(timeout));
    // The callback runs on the thread running the policy, whose CPU time
    // `thread_cpu_time` reads.
    store.epoch_deadline_callback(move |_| {
        let spent = thread_cpu_time().saturating_sub(cpu_start);
        if spent >= timeout || Instant::now() >= wall_end {
            Ok(UpdateDeadline::Interrupt)
        } else {
            Ok(UpdateDeadline::Continue(ticks(timeout - spent)))
        }
    });
}

/// Gives a store one call's deadline and fuel; `cpu_start` is the calling
/// thread's CPU time when the call started.
fn arm(
    store: &mut Store<Sandbox>,
    limits: &SandboxLimits,
    timeout: Duration,
    cpu_start: Duration,
) -> wasmtime::Result<()> {
    set_deadline(store, timeout, cpu_start);
    store.set_fuel(limits.fuel)
}

/// What a call left in its store: its result (a failure named), the context
/// questions it asked, the fuel it used. The CPU time is the caller's to
/// fill in.
fn outcome<R>(
    store: &mut Store<Sandbox>,
    result: wasmtime::Result<R>,
    limits: &SandboxLimits,
    timeout: Duration,
) -> Run<R> {
    let fuel_used = limits.fuel.saturating_sub(store.get_fuel().unwrap_or(0));
    let result = result.map_err(|e| failure_from_error(&e, store.data(), limits, timeout));
    Run {
        result,
        reads: std::mem::take(&mut store.data_mut().reads),
        fuel_used,
        cost: Cost::default(),
    }
}

/// A fresh store for one call, with every bound that is not per call: the
/// memory limiter, and how much the policy may hand the host at once.
fn new_store(
    runtime: &Runtime,
    limits: &SandboxLimits,
    context: Option<Arc<dyn ContextSource>>,
) -> Store<Sandbox> {
    let inner = &runtime.inner;
    let sandbox = Sandbox::new(context, limits.memory_bytes, limits.max_context_reads);
    let mut store = Store::new(&inner.engine, sandbox);
    store.limiter(|s| &mut s.memory);
    store.set_hostcall_fuel(TRANSFER_BYTES);
    store.set_max_component_handles(HANDLES);
    store
}

/// Names what went wrong in a sandboxed call.
fn failure_from_error(
    error: &wasmtime::Error,
    sandbox: &Sandbox,
    limits: &super::SandboxLimits,
    timeout: std::time::Duration,
) -> PolicyFailure {
    let printed = sandbox.stderr_text();
    let with_output = |detail: String| {
        if printed.is_empty() {
            bounded(&detail)
        } else {
            bounded(&format!("{detail}; it printed: {printed}"))
        }
    };
    if let Some(too_many) = error.downcast_ref::<TooManyReads>() {
        return PolicyFailure {
            kind: FailureKind::TooManyContextReads,
            detail: too_many.to_string(),
        };
    }
    if let Some(unanswerable) = error.downcast_ref::<crate::model::context::ContextError>() {
        let kind = match unanswerable {
            crate::model::context::ContextError::WindowTooLong { .. } => {
                FailureKind::ContextWindowTooLong
            }
            crate::model::context::ContextError::TotalTooLarge { .. } => {
                FailureKind::ContextAnswerTooLarge
            }
        };
        return PolicyFailure {
            kind,
            detail: bounded(&unanswerable.to_string()),
        };
    }
    if let Some(oversized) = error.downcast_ref::<OversizedQuestion>() {
        return PolicyFailure {
            kind: FailureKind::ContextQuestionOversized,
            detail: oversized.to_string(),
        };
    }
    if is_transfer_exhausted(error) {
        return PolicyFailure {
            kind: FailureKind::TransferOversized,
            detail: with_output(format!(
                "handed the host more than {TRANSFER_BYTES} bytes at once (one host call's arguments, or its answer)"
            )),
        };
    }
    let trap = error.downcast_ref::<Trap>();
    let (kind, detail) = match (trap, sandbox.memory.refused) {
        (Some(Trap::OutOfFuel), _) => (
            FailureKind::FuelExhausted,
            format!("used all {} units of fuel", limits.fuel),
        ),
        (Some(Trap::Interrupt), _) => (
            FailureKind::Timeout,
            format!("ran past its {} ms deadline", timeout.as_millis()),
        ),
        (Some(Trap::StackOverflow), _) => (
            FailureKind::StackOverflow,
            format!("overflowed its {} KiB stack", limits.stack_bytes >> 10),
        ),
        (_, Some(wanted)) => (
            FailureKind::MemoryLimit,
            format!(
                "tried to grow its memory to {wanted} bytes in all; the limit is {}",
                limits.memory_bytes
            ),
        ),
        (Some(trap), None) => (FailureKind::Trap, format!("trapped: {trap}")),
        (None, None) => (
            FailureKind::Trap,
            format!("stopped: {}", root_message(error)),
        ),
    };
    PolicyFailure {
        kind,
        detail: with_output(detail),
    }
}

/// Whether the policy handed the host more than its host-call fuel allows
/// at once. wasmtime's own error for it is private; its message marks it.
pub(super) fn is_transfer_exhausted(error: &wasmtime::Error) -> bool {
    root_message(error).contains("fuel allocated for hostcalls has been exhausted")
}

/// The innermost message of an error chain, without wasm backtraces.
fn root_message(error: &wasmtime::Error) -> String {
    error
        .chain()
        .last()
        .map(|e| e.to_string())
        .unwrap_or_default()
}

/// A reason code as quoted in a failure detail: at most the contract's code
/// size, so the sentence around it survives the detail's bound.
fn quoted_code(code: &str) -> String {
    let mut end = code.len().min(bounds::MAX_CODE_BYTES);
    while !code.is_char_boundary(end) {
        end -= 1;
    }
    if end < code.len() {
        format!("{}…", &code[..end])
    } else {
        code.to_string()
    }
}

/// Text coming out of a policy as the host keeps it: control and format
/// characters escaped, cut at the contract's message size.
fn bounded(text: &str) -> String {
    prefix(&escaped(text), bounds::MAX_TEXT_BYTES)
}

/// Bytes of a policy's name or version quoted in a load error.
const QUOTED_BYTES: usize = 40;

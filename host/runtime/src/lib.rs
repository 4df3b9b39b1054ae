//! The tiergate sandbox: runs untrusted tenant policies and the plain data
//! they speak.
//!
//! A policy is a WebAssembly component written against the `tiergate:policy`
//! WIT contract. This crate is the only place that touches wasmtime. It owns
//! the engine configuration (pooling allocator, fuel, epoch ticker, limits),
//! checks every component before it runs, and turns whatever a policy does
//! (answer, trap, loop, overgrow) into a [`Decision`] that never loosens the
//! tenant's failure tier. It knows nothing of stores, services or approvals:
//! a platform that only wants tiers embeds this crate alone.
//!
//! ```no_run
//! use std::sync::Arc;
//! use tiergate_runtime::{Runtime, StaticContext, Tier, Transaction};
//!
//! # fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let runtime = Runtime::new()?;
//! let policy = runtime
//!     .compile_file("seed_tiers.wasm".as_ref())?
//!     .configure(r#"{"sanctioned_jurisdictions": ["KP"]}"#)?
//!     .with_failure_tier(Tier::Collaborative)?;
//! let tx = Transaction::from_json(
//!     r#"{"id": "tx-89", "tenant": "acme", "agent": "procurement-agent-prod",
//!         "amount": "89.00", "currency": "USDC", "category": "agent_hire",
//!         "recipient": "analysis-agent-beta.example", "recipient_trust": "known"}"#,
//!     1_782_518_400_000,
//! )?;
//! let decision = policy.classify_blocking(&tx, Arc::new(StaticContext::default()))?;
//! assert_eq!(decision.tier, Tier::Collaborative);
//! # Ok(()) }
//! ```
//!
//! Features: `tokio` (an async `classify` on tokio's blocking pool),
//! `openapi` (utoipa schemas of the data types), `bench` (an instance reused
//! across calls, for comparisons only).
#![deny(missing_docs)]

pub mod model;

mod budget;
mod cache;
mod compile;
mod contract;
mod error;
mod inspect;
mod limits;
mod needs;
mod policy;
mod prepared;
mod sandbox;
mod slots;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use wasmtime::component::Linker;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

pub use compile::{COMPILE_SUBCOMMAND, CompileLimits, compile_child_main};
pub use error::{ClassifyError, LoadError, RuntimeError};
pub use limits::{PolicyMaxima, SandboxLimits};
pub use needs::{PolicyLimits, Toolchain};
#[cfg(feature = "bench")]
pub use policy::ReusedInstance;
pub use policy::{CompiledPolicy, PolicyInfo, TenantPolicy};
pub use prepared::{PreparedCounts, run_only_when_idle};

pub use model::context::{
    Activity, ActivityAnswer, ActivityFilter, ActivityResult, ContextError, ContextRead,
    ContextSource, MAX_WINDOW_MS, RecipientHistory, StaticContext,
};
pub use model::decision::{Decision, FailureKind, PolicyFailure, Reason};
pub use model::money::{DecimalError, ExactSum, MAX_AMOUNT, parse_decimal};
pub use model::text::{escaped, escaped_json};
pub use model::transaction::{InvalidTransaction, Transaction, limits as transaction_limits};
pub use tiergate_policy::{RecipientTrust, Tier, Window};

/// Money is `rust_decimal`'s exact decimal, re-exported for convenience.
pub use rust_decimal::Decimal;

use prepared::Preparer;
use sandbox::Sandbox;
use slots::Slots;

/// How often the epoch ticker advances; the wall-clock deadline's resolution.
const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Compiles policies and runs them, each call in a fresh sandbox.
///
/// Create one per process and share it (it is cheap to clone); it owns a
/// background thread that drives the wall-clock deadlines.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    linker: Linker<Sandbox>,
    limits: SandboxLimits,
    slots: Slots,
    preparer: Preparer,
    ticker_stop: Arc<AtomicBool>,
    compiled_cache: std::sync::OnceLock<cache::CompiledCache>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

impl Runtime {
    /// A runtime with the default [`SandboxLimits`].
    pub fn new() -> Result<Self, RuntimeError> {
        Self::with_limits(SandboxLimits::default())
    }

    /// A runtime enforcing `limits` on every policy call.
    pub fn with_limits(limits: SandboxLimits) -> Result<Self, RuntimeError> {
        let engine = Engine::new(&engine_config(&limits))
            .map_err(|e| RuntimeError::caused("cannot configure the engine", e))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| RuntimeError::caused("cannot link WASI", e))?;
        sandbox::refuse_waiting(&mut linker)
            .map_err(|e| RuntimeError::caused("cannot link WASI", e))?;
        contract::add_to_linker(&mut linker)
            .map_err(|e| RuntimeError::caused("cannot link the policy contract", e))?;

        let ticker_stop = Arc::new(AtomicBool::new(false));
        let (engine_for_ticker, stop) = (engine.clone(), ticker_stop.clone());
        thread::Builder::new()
            .name("tiergate-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    thread::sleep(EPOCH_TICK);
                    engine_for_ticker.increment_epoch();
                }
            })
            .map_err(|e| RuntimeError::caused("cannot start the epoch ticker thread", e))?;

        let preparer = Preparer::start(&limits)
            .map_err(|e| RuntimeError::caused("cannot start the sandbox preparing thread", e))?;
        Ok(Runtime {
            inner: Arc::new(Inner {
                slots: Slots::new(limits.instance_slots, limits.slots_per_tenant),
                preparer,
                engine,
                linker,
                limits,
                ticker_stop,
                compiled_cache: std::sync::OnceLock::new(),
            }),
        })
    }

    /// Keeps the machine code of compiled policies in `dir`, so the next
    /// process loads a policy it has seen in about a millisecond instead of
    /// compiling it again. The files are native code, so each carries a MAC
    /// under a key kept beside the directory, in `<dir>.key` (made on first
    /// use, mode 0600): a file changed, cut or swapped for another's is
    /// compiled again, never run. Keep the key where whoever can write `dir`
    /// cannot read it; whoever can read it can forge files. Set once; later
    /// calls are refused.
    pub fn cache_compiled_in(&self, dir: &Path) -> Result<(), RuntimeError> {
        if self.inner.compiled_cache.get().is_some() {
            return Err(RuntimeError::new(
                "this runtime already has a compiled-policy cache",
            ));
        }
        let cache = cache::CompiledCache::open(dir, &self.inner.engine)?;
        self.inner
            .compiled_cache
            .set(cache)
            .map_err(|_| RuntimeError::new("this runtime already has a compiled-policy cache"))
    }

    /// The limits every call runs under.
    pub fn limits(&self) -> &SandboxLimits {
        &self.inner.limits
    }

    /// How calls got their sandboxes: made ahead, or at the call.
    pub fn prepared_counts(&self) -> PreparedCounts {
        self.inner.preparer.counts()
    }

    /// Checks and compiles a policy component.
    ///
    /// Refuses, before running anything, bytes that are not a binary
    /// component, a precompiled native artifact, a component past a bound on
    /// what compiling it may cost ([`CompileLimits`], checked before the
    /// compiler sees it), a component of another contract version or world,
    /// and a component importing anything outside the sandbox's allow-list.
    /// Compiles in the child process `compile.child` names, when it names
    /// one, under its memory and time limits. Then asks the policy for its
    /// metadata.
    pub fn compile(&self, bytes: &[u8]) -> Result<CompiledPolicy, LoadError> {
        CompiledPolicy::compile(self.clone(), bytes)
    }

    /// Whether [`compile`](Self::compile) would load these bytes' machine
    /// code from the compiled-policy cache instead of compiling them (which
    /// takes seconds for an interpreted policy). False without a cache.
    pub fn is_compiled(&self, bytes: &[u8]) -> bool {
        self.inner
            .compiled_cache
            .get()
            .is_some_and(|cache| cache.holds(&model::digest::sha256(bytes)))
    }

    /// [`compile`](Self::compile) for a file.
    pub fn compile_file(&self, path: &Path) -> Result<CompiledPolicy, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        self.compile(&bytes)
    }
}

/// The largest memory any policy may have: the default, or a declared need
/// up to the maxima.
fn pool_memory_bytes(limits: &SandboxLimits) -> usize {
    limits.memory_bytes.max(limits.maxima.memory_bytes)
}

fn engine_config(limits: &SandboxLimits) -> Config {
    let mut config = Config::new();
    config
        .consume_fuel(true)
        .epoch_interruption(true)
        .max_wasm_stack(limits.stack_bytes)
        // Policies are synchronous; the async task machinery doubles call cost.
        .concurrency_support(false)
        // Reservations sized to the largest memory any policy may have, not
        // 4 GiB each, so a pool sized for real concurrency fits comfortably;
        // each policy's own bound is its store's limiter.
        .memory_reservation(pool_memory_bytes(limits) as u64)
        .memory_guard_size(64 << 10)
        // A failure's detail names the trap, never where in the policy it
        // happened: capturing that on every trap, keeping each policy's map
        // from machine code back to wasm (about a tenth of its compiled
        // size) and the native unwind tables only profilers read bought
        // nothing.
        .wasm_backtrace_max_frames(None)
        .generate_address_map(false)
        .native_unwind_info(false);

    // Sandboxes running, plus those made ahead and those waiting to be torn
    // down (only with preparation on).
    let ahead = match limits.prepared_instances {
        0 => 0,
        n => n + prepared::TEARDOWN_QUEUE,
    };
    let slots = limits.instance_slots + ahead;
    let mut pool = PoolingAllocationConfig::default();
    // A componentize-py policy is 38 core instances (CPython, its libc and
    // adapters linked at instantiation), componentize-js's fewer; Rust's 3.
    pool.total_component_instances(slots)
        .total_core_instances(slots * 48)
        .max_core_instances_per_component(64)
        .total_memories(slots * 2)
        .max_memories_per_component(2)
        .total_tables(slots * 8)
        .max_tables_per_component(8)
        .max_memory_size(pool_memory_bytes(limits))
        .table_elements(20_000)
        .total_stacks(0)
        // Pages kept resident are zeroed in place on reuse instead of
        // faulted in again. Measured per decision with seed-tiers: 64 KiB
        // 35.8 µs, 128 KiB 15.6 µs, 256 KiB 13.1 µs, 512 KiB 13.7 µs.
        .linear_memory_keep_resident(256 << 10)
        .table_keep_resident(128 << 10);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}

//! The state of one sandbox: a fresh one per call, so nothing a policy does
//! survives it or reaches another tenant.
//!
//! The Rust standard library in a guest imports a dozen WASI interfaces even
//! when the policy does no I/O. They are served closed down, so a policy sees
//! nothing of the machine and runs the same everywhere:
//!
//! | WASI | what the policy gets |
//! |---|---|
//! | environment, arguments | none |
//! | stdin | closed |
//! | stdout | discarded |
//! | stderr | kept (up to 8 KiB) for the failure detail, so a panic message reaches the author |
//! | filesystem | no preopened directories: nothing to open |
//! | wall and monotonic clocks | frozen at 0: use the transaction's `requested-at-ms` |
//! | random, insecure random | a fixed-seed generator: the same bytes every call, at most 4 KiB a call |
//! | sleeping, waiting on a timer | a trap: time does not pass in the sandbox, and a thread blocked in the host would outlive every deadline |
//! | sockets, HTTP | not importable: the component is refused at load |

use std::sync::Arc;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use wasmtime::ResourceLimiter;
use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource, ResourceTable};
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{
    HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView,
};

use super::limits::{HANDLES, RANDOM_BYTES, STDERR_BYTES};
use crate::model::context::{ContextRead, ContextSource};

/// Everything a store holds while one policy call runs.
pub(crate) struct Sandbox {
    /// Built on the first WASI call: a policy that never prints, reads the
    /// clock or asks for randomness never pays for it.
    wasi: Option<WasiCtx>,
    table: ResourceTable,
    stderr: MemoryOutputPipe,
    pub(crate) memory: MemoryLimiter,
    /// The call's context: none in a sandbox made ahead until a call takes
    /// it, and none once the call has answered.
    pub(crate) context: Option<Arc<dyn ContextSource>>,
    pub(crate) reads: Vec<ContextRead>,
    pub(crate) max_reads: usize,
    /// Set while the policy reads its configuration, when the context
    /// refuses every question.
    pub(crate) configuring: bool,
}

impl Sandbox {
    pub(crate) fn new(
        context: Option<Arc<dyn ContextSource>>,
        memory_bytes: usize,
        max_reads: usize,
    ) -> Self {
        let mut table = ResourceTable::new();
        table.set_max_capacity(HANDLES);
        Sandbox {
            wasi: None,
            table,
            stderr: MemoryOutputPipe::new(STDERR_BYTES),
            memory: MemoryLimiter {
                max_bytes: memory_bytes,
                total: 0,
                refused: None,
            },
            context,
            reads: Vec::new(),
            max_reads,
            configuring: false,
        }
    }

    /// Lets go of the call's context once the call has answered. The context
    /// is the caller's and may hold what other calls wait for (a governor's
    /// holds a pooled reader of the tenant's history), while the store may
    /// wait for its teardown a while longer.
    pub(crate) fn release_context(&mut self) {
        self.context = None;
    }

    /// What the policy wrote to stderr (a panic message, usually), trimmed.
    pub(crate) fn stderr_text(&self) -> String {
        let bytes = self.stderr.contents();
        String::from_utf8_lossy(&bytes).trim().to_string()
    }
}

impl WasiView for Sandbox {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let stderr = &self.stderr;
        let ctx = self.wasi.get_or_insert_with(|| {
            WasiCtxBuilder::new()
                .stderr(stderr.clone())
                .wall_clock(FrozenClock)
                .monotonic_clock(FrozenClock)
                .secure_random(StdRng::seed_from_u64(0))
                .insecure_random(StdRng::seed_from_u64(0))
                .insecure_random_seed(0)
                .max_random_size(RANDOM_BYTES)
                .allow_tcp(false)
                .allow_udp(false)
                .allow_ip_name_lookup(false)
                .build()
        });
        WasiCtxView {
            ctx,
            table: &mut self.table,
        }
    }
}

/// Caps the linear memory of the whole instance, all its memories together
/// (a component may have more than one), and remembers a refusal, so the
/// resulting trap (the guest's allocator aborts) can be reported as a
/// memory limit.
pub(crate) struct MemoryLimiter {
    max_bytes: usize,
    /// Bytes of every memory of the instance so far.
    total: usize,
    pub(crate) refused: Option<usize>,
}

impl MemoryLimiter {
    /// Bytes of every memory of the instance now.
    pub(crate) fn total(&self) -> usize {
        self.total
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // A new memory grows from 0; a grow that fails after this approved
        // it stays counted, which only makes the cap stricter.
        let total = (self.total - current.min(self.total)).saturating_add(desired);
        if total > self.max_bytes {
            self.refused = Some(total);
            return Ok(false);
        }
        self.total = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// The monotonic clock's timers block the calling thread in the host, where
/// neither fuel nor the epoch deadline reaches; a policy asking for one traps.
pub(crate) fn refuse_waiting(linker: &mut Linker<Sandbox>) -> wasmtime::Result<()> {
    const REFUSAL: &str = "the policy tried to wait on a timer (a sleep); time does not pass in the sandbox, so policies may not wait";
    linker.allow_shadowing(true);
    let mut clock = linker.instance("wasi:clocks/monotonic-clock@0.2.12")?;
    for timer in ["subscribe-duration", "subscribe-instant"] {
        clock.func_wrap(
            timer,
            |_: StoreContextMut<'_, Sandbox>,
             (_,): (u64,)|
             -> wasmtime::Result<(Resource<DynPollable>,)> {
                Err(wasmtime::Error::msg(REFUSAL))
            },
        )?;
    }
    linker.allow_shadowing(false);
    Ok(())
}

/// A clock that always reads the Unix epoch.
struct FrozenClock;

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

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
//! | random, insecure random | a fixed-seed generator: the same bytes every call |
//! | sockets, HTTP | not importable: the component is refused at load |

use std::sync::Arc;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{
    HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView,
};

use super::limits::STDERR_BYTES;
use crate::model::context::{ContextRead, ContextSource};

/// Everything a store holds while one policy call runs.
pub(crate) struct Sandbox {
    wasi: WasiCtx,
    table: ResourceTable,
    stderr: MemoryOutputPipe,
    pub(crate) memory: MemoryLimiter,
    pub(crate) context: Arc<dyn ContextSource>,
    pub(crate) reads: Vec<ContextRead>,
    pub(crate) max_reads: usize,
}

impl Sandbox {
    pub(crate) fn new(
        context: Arc<dyn ContextSource>,
        memory_bytes: usize,
        max_reads: usize,
    ) -> Self {
        let stderr = MemoryOutputPipe::new(STDERR_BYTES);
        let wasi = WasiCtxBuilder::new()
            .stderr(stderr.clone())
            .wall_clock(FrozenClock)
            .monotonic_clock(FrozenClock)
            .secure_random(StdRng::seed_from_u64(0))
            .insecure_random(StdRng::seed_from_u64(0))
            .insecure_random_seed(0)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        Sandbox {
            wasi,
            table: ResourceTable::new(),
            stderr,
            memory: MemoryLimiter {
                max_bytes: memory_bytes,
                refused: None,
            },
            context,
            reads: Vec::new(),
            max_reads,
        }
    }

    /// What the policy wrote to stderr (a panic message, usually), trimmed.
    pub(crate) fn stderr_text(&self) -> String {
        let bytes = self.stderr.contents();
        String::from_utf8_lossy(&bytes).trim().to_string()
    }
}

impl WasiView for Sandbox {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Caps linear memory and remembers a refusal, so the resulting trap (the
/// guest's allocator aborts) can be reported as a memory limit.
pub(crate) struct MemoryLimiter {
    max_bytes: usize,
    pub(crate) refused: Option<usize>,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.refused = Some(desired);
            return Ok(false);
        }
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

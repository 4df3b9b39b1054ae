//! Every bound the sandbox enforces, as one plain-data table of knobs.

use std::time::Duration;

/// The bounds every policy runs under. One `SandboxLimits` configures a
/// [`Runtime`](super::Runtime); the defaults suit tier policies, which decide
/// in microseconds.
///
/// | knob | default | what happens when a policy hits it |
/// |---|---|---|
/// | `fuel` | 2,000,000 | `policy_fuel_exhausted`: deterministic, same every run |
/// | `timeout` | 50 ms | `policy_timeout`: the call's own CPU time, and at most 4 times it in wall time (host calls and scheduler delays included) |
/// | `memory_bytes` | 16 MiB, all of an instance's memories together | `policy_memory_limit` |
///
/// `memory_bytes`, `fuel` and `cpu_free_per_call` are what a policy gets
/// unless it declares it needs more (an interpreter's heap and the
/// instructions it runs: Python and TypeScript policies do); a declared need
/// raises that policy's own bound, up to `maxima`.
///
/// | `stack_bytes` | 512 KiB | `policy_stack_overflow` |
/// | `max_context_reads` | 64 | `policy_too_many_context_reads` |
/// | `instance_slots` | 64 | callers wait for a free slot, at most `slot_wait` |
/// | `slots_per_tenant` | the cores, at least 2 | the tenant's further callers wait in its own line |
/// | `cpu_per_second`, `cpu_burst`, `cpu_free_per_call` | 50 ms a second, 250 ms at once, per tenant, of CPU beyond 500 µs a call that answers (a failed call is charged whole) | `policy_cpu_budget_exhausted`, without running, until the budget refills |
/// | `compile` | see [`CompileLimits`](super::CompileLimits) | `LoadError::OverCompileBound` (naming the bound) before compiling; `LoadError::CompileFailed` when the child compiling runs out of memory or time |
/// | `maxima` | see [`PolicyMaxima`] | `LoadError::OverHostMaximum` when a policy declares it needs more |
/// | `slot_wait` | 2 s | no decision: `ClassifyError::SandboxBusy` (the service answers 503 with `Retry-After`, nothing recorded) |
/// | `prepared_instances`, `prepared_per_tenant`, `prepared_memory_bytes` | 0 (off), 2 per tenant, 64 MiB of their memories in all | nothing the policy can see: a call that finds none prepared makes its sandbox itself (see below) |
///
/// With `prepared_instances` above zero, sandboxes are made before the
/// payment arrives and torn down after its answer has gone, on a thread
/// that runs only when a core is idle, so at low load only the call is on a
/// decision's path. Each is still made for one call and never reused. On a
/// 2-core virtual machine it took two fifths off a decision at low load,
/// and stayed within 2% at saturation and in durable authorizations (see
/// `docs/benchmarks.md`). Off by default until the service's other recorded
/// figures have been measured with it.
///
/// Fixed bounds, the same for every runtime: 256 KiB handed to the host at
/// once (one host call's arguments, or an answer's top level;
/// `policy_transfer_oversized`), 4 KiB per `wasi:random` call and 1,000
/// resource handles (`policy_trap`), 8 KiB of stderr kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxLimits {
    /// Fuel per call (about one unit per wasm instruction). The deterministic
    /// CPU bound: the same policy and inputs use the same fuel every time.
    pub fuel: u64,
    /// Deadline per call: the call is stopped once its thread has spent
    /// this much CPU time in it, or after 4 times this of wall time whatever
    /// it spent (checked at 1 ms epoch ticks). Fuel is the deterministic CPU
    /// bound (the default is about 1 to 2 ms of work); this backstop counts
    /// the call's own CPU time because on a busy machine a thread can wait
    /// for a core for milliseconds, and a sound policy must not fail closed
    /// for that. Calls made once at load (`info`, `check-config`) get at
    /// least 1 s.
    pub timeout: Duration,
    /// Largest linear memory a policy instance may grow to, all its
    /// memories together.
    pub memory_bytes: usize,
    /// Largest native stack a policy may use.
    pub stack_bytes: usize,
    /// Most context questions one classification may ask.
    pub max_context_reads: usize,
    /// Sandboxes that may run at once; further callers wait for a slot.
    pub instance_slots: u32,
    /// Sandboxes one configured policy (one tenant) may run at once. Policies
    /// are CPU-bound, so more than one per core only takes CPU from other
    /// tenants; this is what keeps a tenant whose policy loops from crowding
    /// out the rest. A freed slot goes to the waiting tenant holding fewest.
    pub slots_per_tenant: u32,
    /// Longest a call waits for a sandbox slot. Past it the call ends
    /// without running the policy: `ClassifyError::SandboxBusy` (and
    /// `LoadError::SandboxBusy` for a load), an error, not a decision, so
    /// nothing is recorded and the same request can be sent again. A bound,
    /// so a burst of callers cannot hold every blocking thread waiting.
    pub slot_wait: Duration,
    /// Sandboxes kept made ahead of their call, across every tenant. Zero
    /// (the default) makes every sandbox at its call, as the call's own work.
    pub prepared_instances: u32,
    /// Sandboxes kept made ahead for one configured policy (one tenant).
    pub prepared_per_tenant: u32,
    /// Linear memory of the sandboxes kept made ahead, and of those waiting
    /// to be torn down, all together: an interpreter's sandbox holds
    /// megabytes from the moment it is made.
    pub prepared_memory_bytes: usize,
    /// CPU time one configured policy (one tenant) may spend per second of
    /// wall time beyond `cpu_free_per_call` in each call, measured as the
    /// thread CPU time of its sandbox calls, with fuel or without. A tenant
    /// past its budget gets its failure tier at once, without running
    /// (`policy_cpu_budget_exhausted`), until the budget refills. Zero turns
    /// the budget off.
    pub cpu_per_second: Duration,
    /// CPU time a tenant may spend at once before its budget runs out: what
    /// an idle tenant has saved up.
    pub cpu_burst: Duration,
    /// CPU time of each call that answers that is not charged to the
    /// budget. A decision of the example policies takes 10 to 20 µs, so a
    /// tenant however busy is never charged; a call that fails (a policy
    /// looping until its fuel or deadline runs out) is charged whole, and
    /// such a tenant soon runs out of budget.
    pub cpu_free_per_call: Duration,
    /// Bounds on compiling a policy: checked before the compiler sees it,
    /// and the memory and time of the child process that compiles it.
    pub compile: super::CompileLimits,
    /// The most any policy may declare it needs, and the largest component.
    pub maxima: PolicyMaxima,
}

/// The host's ceilings on what one policy may need. A policy written in an
/// interpreted language declares, in its component, the memory, fuel and CPU
/// per call its runtime needs (see the SDKs); each raises that policy's own
/// bound above [`SandboxLimits`]' default, never past these. A policy asking
/// for more is refused at load, naming the ceiling.
///
/// | knob | default | why |
/// |---|---|---|
/// | `component_bytes` | 32 MiB | a Python policy is about 19 MB (CPython and its standard library), a TypeScript one about 12 MB (StarlingMonkey), a Rust one about 180 KB |
/// | `memory_bytes` | 128 MiB | the Python and TypeScript SDKs ask for 32 MiB; their `seed-tiers` start in 12.8 and 9.1 MiB and stay under 16 |
/// | `fuel` | 100,000,000 | the SDKs ask for 25,000,000; their `seed-tiers` use about 5,000,000 a decision (the Rust one about 26,000) |
/// | `cpu_free_per_call` | 25 ms | a fresh-sandbox decision of the Python `seed-tiers` takes 6 to 7 ms of CPU at the median and up to 27 ms with 16 callers on 2 cores, TypeScript's 2.5 to 3 ms and up to 13 ms; the Python SDK asks for 20 ms, the TypeScript SDK for 12 ms |
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyMaxima {
    /// Largest component accepted, checked before anything else reads it.
    pub component_bytes: usize,
    /// Most linear memory a policy may declare it needs.
    pub memory_bytes: usize,
    /// Most fuel per call a policy may declare it needs.
    pub fuel: u64,
    /// Most CPU per answered call a policy may have left out of its
    /// tenant's budget.
    pub cpu_free_per_call: Duration,
}

impl Default for PolicyMaxima {
    fn default() -> Self {
        PolicyMaxima {
            component_bytes: 32 << 20,
            memory_bytes: 128 << 20,
            fuel: 100_000_000,
            cpu_free_per_call: Duration::from_millis(25),
        }
    }
}

impl Default for SandboxLimits {
    fn default() -> Self {
        SandboxLimits {
            fuel: 2_000_000,
            timeout: Duration::from_millis(50),
            memory_bytes: 16 << 20,
            stack_bytes: 512 << 10,
            max_context_reads: 64,
            instance_slots: 64,
            slots_per_tenant: std::thread::available_parallelism()
                .map_or(2, |n| n.get() as u32)
                .max(2),
            slot_wait: Duration::from_secs(2),
            prepared_instances: 0,
            prepared_per_tenant: 2,
            prepared_memory_bytes: 64 << 20,
            cpu_per_second: Duration::from_millis(50),
            cpu_burst: Duration::from_millis(250),
            cpu_free_per_call: Duration::from_micros(500),
            compile: super::CompileLimits::default(),
            maxima: PolicyMaxima::default(),
        }
    }
}

/// Bounds on a policy's answer, from the WIT contract.
pub(crate) mod decision {
    pub const MAX_REASONS: usize = 16;
    pub const MAX_CODE_BYTES: usize = 64;
    pub const MAX_TEXT_BYTES: usize = 1024;
    pub const MAX_NAME_BYTES: usize = 64;
}

/// Bytes of a policy's stderr kept for the failure detail (panic messages).
pub(crate) const STDERR_BYTES: usize = 8 << 10;

/// Most bytes one `wasi:random` call makes. The host makes them in its own
/// memory, outside the policy's cap, in a call neither fuel nor the deadline
/// interrupts; wasmtime-wasi's own bound is 64 MiB.
pub(crate) const RANDOM_BYTES: u64 = 4 << 10;

/// Most bytes a policy may hand the host at once: the arguments of one host
/// call (a stream write, a context question), or the top level of one
/// answer. Copying out of the sandbox happens outside its memory cap and
/// after its deadline; wasmtime's own bound is 128 MiB. A stream write of
/// the 64 KiB the sandbox's stdout accepts at once fits.
pub(crate) const TRANSFER_BYTES: usize = 256 << 10;

/// Most resource handles (streams, pollables) a policy may hold at once;
/// each is an entry in host memory. The standard library holds a few.
pub(crate) const HANDLES: usize = 1_000;

//! Threads that yield the cores: listings, scrapes and the metrics address
//! run on them, so a payment never waits behind a read nobody is waiting
//! on as urgently.

/// Makes the calling thread run only when nothing else wants its core
/// (`SCHED_IDLE` on Linux), as the sandbox runtime's own preparing thread does.
pub(super) fn lowest() {
    tiergate_runtime::run_only_when_idle();
}

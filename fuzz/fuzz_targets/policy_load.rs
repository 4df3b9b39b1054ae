//! Policy components: format checks, validation, compilation, interface
//! checks, the policy's own metadata call, and one classification.
#![no_main]

use std::sync::LazyLock;

use tiergate_runtime::Runtime;

// One runtime for the whole run, as a server keeps one: it owns the engine,
// the instance pool and the epoch thread.
static RUNTIME: LazyLock<Runtime> = LazyLock::new(tiergate_fuzz::runtime);

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    tiergate_fuzz::policy_load(&RUNTIME, bytes);
});

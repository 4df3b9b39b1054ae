//! A corpus of hostile policies, each shown to be contained: the
//! classification ends within the sandbox's deadline (plus a margin for a
//! busy machine) on the tenant's failure tier, with a reason naming what
//! happened and a detail saying why, and a good policy still classifies
//! afterwards. Bad artifacts are refused at load, by name, and an upload of
//! one to the service changes nothing.
//!
//! Rust-built cases come from the `misbehave` fixture; the rest are
//! components written by hand in the component text format ([`Wat`]), which
//! can do what no Rust compiler would emit: answer an enum value that does
//! not exist, point a list past the end of memory, fill all of memory in
//! one instruction.
//!
//! Every measured classification prints one line (run with
//! `-- --nocapture`): kind, variant, wall time, outcome. docs/reliability.md
//! quotes them.

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::json;
use tiergate_e2e::fixtures;
use tiergate_runtime::{
    ActivityFilter, CompileLimits, CompiledPolicy, ContextRead, Decision, FailureKind, LoadError,
    Runtime, SandboxLimits, TenantPolicy, Tier,
};

use crate::{classify, seed_tiers, tx};

/// How far past its deadline a classification may end and still count as
/// contained. Generous on purpose: the suite shares two cores, and this is
/// not a timing test.
const MARGIN: Duration = Duration::from_secs(2);

/// The sandboxes the cases run in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Limits {
    /// The suite's runtime: default limits, a 2 s deadline.
    Suite = 0,
    /// `SandboxLimits::default()` exactly: 2,000,000 fuel, a 50 ms deadline.
    Defaults = 1,
    /// Fuel without end, a 100 ms deadline: only the clock stops a loop.
    DeadlineOnly = 2,
}

const ALL_LIMITS: [Limits; 3] = [Limits::Suite, Limits::Defaults, Limits::DeadlineOnly];

fn sandbox(limits: Limits) -> &'static Runtime {
    static DEFAULTS: OnceLock<Runtime> = OnceLock::new();
    static DEADLINE_ONLY: OnceLock<Runtime> = OnceLock::new();
    match limits {
        Limits::Suite => crate::runtime(),
        Limits::Defaults => DEFAULTS.get_or_init(|| Runtime::new().expect("runtime starts")),
        Limits::DeadlineOnly => DEADLINE_ONLY.get_or_init(|| {
            Runtime::with_limits(SandboxLimits {
                fuel: u64::MAX / 2,
                timeout: Duration::from_millis(100),
                ..SandboxLimits::default()
            })
            .expect("runtime starts")
        }),
    }
}

/// The `misbehave` fixture, compiled once per sandbox.
fn misbehave_compiled(limits: Limits) -> CompiledPolicy {
    static COMPILED: [OnceLock<CompiledPolicy>; 3] = [const { OnceLock::new() }; 3];
    COMPILED[limits as usize]
        .get_or_init(|| {
            sandbox(limits)
                .compile_file(fixtures::MISBEHAVE.as_ref())
                .expect("fixture compiles")
        })
        .clone()
}

/// `misbehave` configured with `config` (its `mode` and options).
fn misbehave(limits: Limits, config: serde_json::Value) -> TenantPolicy {
    misbehave_compiled(limits)
        .configure(&config.to_string())
        .unwrap_or_else(|e| panic!("{config} configures: {e}"))
}

/// The bundled seed-tiers policy, compiled once per sandbox: the good
/// policy that must still classify after each hostile one.
fn good(limits: Limits) -> TenantPolicy {
    static COMPILED: [OnceLock<CompiledPolicy>; 3] = [const { OnceLock::new() }; 3];
    if limits == Limits::Suite {
        return seed_tiers();
    }
    COMPILED[limits as usize]
        .get_or_init(|| {
            let bytes = tiergate_cli::bundled::get("seed-tiers").expect("seed-tiers is bundled");
            sandbox(limits).compile(bytes).expect("seed-tiers compiles")
        })
        .configure("")
        .expect("defaults are valid")
}

/// The host carries on: a good policy still gets its answer in each sandbox.
/// The default 50 ms deadline can catch even a good policy when the machine
/// is busy, so a timeout is tried again, twice at most.
fn host_is_up() {
    for limits in ALL_LIMITS {
        let mut tries = 0;
        let d = loop {
            tries += 1;
            let d = classify(&good(limits), &tx("0.02", "embeddings", "verified"));
            match &d.failure {
                Some(f) if f.kind == FailureKind::Timeout && tries < 3 => continue,
                _ => break d,
            }
        };
        assert_eq!(d.tier, Tier::Autonomous, "{limits:?}: {d:?}");
        assert!(d.failure.is_none(), "{limits:?}: {d:?}");
    }
    print_worst();
}

/// The slowest classification seen in this run, with its deadline.
static WORST: Mutex<Option<(Duration, Duration, String)>> = Mutex::new(None);

/// Prints one measurement; `deadline` is `None` for a load, which only
/// classifications' figures are compared with.
fn measured(
    kind: &str,
    variant: &str,
    elapsed: Duration,
    outcome: &str,
    deadline: Option<Duration>,
) {
    let limit = deadline.map_or(String::new(), |d| {
        format!(" (deadline {} ms)", d.as_millis())
    });
    eprintln!(
        "hostile | {kind:<14} | {variant:<56} | {:>8.1} ms | {outcome}{limit}",
        elapsed.as_secs_f64() * 1e3,
    );
    if let Some(deadline) = deadline {
        let mut worst = WORST.lock().unwrap_or_else(|e| e.into_inner());
        if worst.as_ref().is_none_or(|(w, _, _)| elapsed > *w) {
            *worst = Some((elapsed, deadline, format!("{kind} / {variant}")));
        }
    }
}

/// Prints the slowest classification so far; the last such line of a run
/// is the run's worst.
fn print_worst() {
    let worst = WORST.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((elapsed, deadline, what)) = worst.as_ref() {
        eprintln!(
            "hostile | worst so far: {:.1} ms against a {} ms deadline ({what})",
            elapsed.as_secs_f64() * 1e3,
            deadline.as_millis()
        );
    }
}

/// Classifies with `policy`, timed, and checks the failure is contained:
/// the expected kind and its reason code, a detail, the expected tier, and
/// an end within the sandbox's deadline plus [`MARGIN`].
fn contained(
    (kind, variant): (&str, &str),
    limits: Limits,
    policy: &TenantPolicy,
    expected: FailureKind,
    tier: Tier,
) -> Decision {
    let t = tx("0.02", "embeddings", "verified");
    let deadline = sandbox(limits).limits().timeout;
    let start = Instant::now();
    let d = classify(policy, &t);
    let elapsed = start.elapsed();
    let failure = d
        .failure
        .as_ref()
        .unwrap_or_else(|| panic!("{kind} / {variant}: no failure in {d:?}"));
    assert_eq!(
        failure.kind, expected,
        "{kind} / {variant}: {}",
        failure.detail
    );
    assert_eq!(d.tier, tier, "{kind} / {variant}: {d:?}");
    assert_eq!(d.reasons.len(), 1, "{kind} / {variant}: {d:?}");
    assert_eq!(d.reasons[0].code, expected.code(), "{kind} / {variant}");
    assert!(
        !failure.detail.is_empty() && d.reasons[0].message.contains(&failure.detail),
        "{kind} / {variant}: the failure says why: {d:?}"
    );
    assert!(
        elapsed <= deadline + MARGIN,
        "{kind} / {variant}: took {elapsed:?}, deadline {deadline:?}"
    );
    measured(kind, variant, elapsed, expected.code(), Some(deadline));
    d
}

// ---------------------------------------------------------------------------
// Hand-written components.

/// A host interface a [`Wat`] policy imports: the component-level import
/// with its `canon lower`, how the lowered function is handed to the core
/// module, and how the core module imports it.
#[derive(Clone, Copy)]
pub(crate) struct Import {
    component: &'static str,
    core_export: &'static str,
    core_import: &'static str,
}

/// `wasi:clocks/monotonic-clock.now`.
pub(crate) const CLOCK: Import = Import {
    component: r#"(import "wasi:clocks/monotonic-clock@0.2.0" (instance $clock
      (export "now" (func (result u64)))))
    (core func $now (canon lower (func $clock "now")))"#,
    core_export: r#"(export "now" (func $now))"#,
    core_import: r#"(import "host" "now" (func $now (result i64)))"#,
};

/// `wasi:random/random.get-random-u64`.
const RANDOM: Import = Import {
    component: r#"(import "wasi:random/random@0.2.0" (instance $random
      (export "get-random-u64" (func (result u64)))))
    (core func $random (canon lower (func $random "get-random-u64")))"#,
    core_export: r#"(export "random" (func $random))"#,
    core_import: r#"(import "host" "random" (func $random (result i64)))"#,
};

/// `wasi:random/random.get-random-bytes` and its insecure twin: the host
/// makes the bytes, then copies them into the policy's memory.
const RANDOM_BYTES: Import = Import {
    component: r#"(import "wasi:random/random@0.2.0" (instance $random_bytes
      (export "get-random-bytes" (func (param "len" u64) (result (list u8))))))
    (core func $random_bytes (canon lower (func $random_bytes "get-random-bytes")
      (memory $mi "memory") (realloc (func $mi "realloc"))))
    (import "wasi:random/insecure@0.2.0" (instance $insecure_bytes
      (export "get-insecure-random-bytes" (func (param "len" u64) (result (list u8))))))
    (core func $insecure_bytes (canon lower (func $insecure_bytes "get-insecure-random-bytes")
      (memory $mi "memory") (realloc (func $mi "realloc"))))"#,
    core_export: r#"(export "random_bytes" (func $random_bytes))
      (export "insecure_bytes" (func $insecure_bytes))"#,
    core_import: r#"(import "host" "random_bytes" (func $random_bytes (param i64 i32)))
    (import "host" "insecure_bytes" (func $insecure_bytes (param i64 i32)))"#,
};

/// The contract's `context` interface: `recipient` and `agent-activity`.
const CONTEXT: Import = Import {
    component: r#"(import "tiergate:policy/context@0.1.0" (instance $ctx
      (alias outer 1 $tier (type $t))
      (type $f (variant (case "all") (case "category" string) (case "tier" $t)))
      (export "activity-filter" (type $af (eq $f)))
      (type $a (record (field "count" u64) (field "total" string)))
      (export "activity" (type $ac (eq $a)))
      (export "agent-activity" (func (param "window-ms" u64) (param "filter" $af) (result $ac)))
      (type $h (record (field "first-seen-ms" (option u64)) (field "payment-count" u64)))
      (export "recipient-history" (type $rh (eq $h)))
      (export "recipient" (func (result $rh)))))
    (core func $recipient (canon lower (func $ctx "recipient") (memory $mi "memory")))
    (core func $activity (canon lower (func $ctx "agent-activity") (memory $mi "memory")
      (realloc (func $mi "realloc")) string-encoding=utf8))"#,
    core_export: r#"(export "recipient" (func $recipient)) (export "activity" (func $activity))"#,
    core_import: r#"(import "host" "recipient" (func $recipient (param i32)))
    (import "host" "activity" (func $activity (param i64 i32 i32 i32 i32)))"#,
};

/// A tier policy written in the component text format. Its core module
/// answers from fixed places in memory:
///
/// | address | what |
/// |---|---|
/// | `0x100` | `info`: name `hostile`, version `0.1.0`, the declared tiers at `0x160` |
/// | `0x200` | `check-config`: `ok` |
/// | `0x300` | `classify`: `ok(decision)`; the tier byte at `0x304`, the reasons list at `0x308` (pointer) and `0x30c` (length), the suggestion's option byte at `0x310`, its pointer and length at `0x314` and `0x318` |
/// | `0x340` | the one reason: code pointer and length, message pointer and length |
/// | `0x380`, `0x3a0` | the code `answered`, the message `wat` |
///
/// `body` runs first and may change any of it, or never finish.
#[derive(Clone)]
pub(crate) struct Wat {
    /// The linear memory's limits in 64 KiB pages: `1`, or `1 4`.
    memory: &'static str,
    /// The tiers `info` declares, as discriminants.
    declares: &'static [u8],
    /// The tier discriminant of the answer; anything above 3 is no tier.
    answer: u8,
    imports: Vec<Import>,
    /// More core module fields: functions, tables, globals.
    extra: &'static str,
    /// Locals of the core `classify` function.
    locals: &'static str,
    /// Instructions `classify` runs before it answers.
    body: String,
    /// The name of the policy export.
    export: &'static str,
}

impl Wat {
    pub(crate) fn new(body: impl Into<String>) -> Wat {
        Wat {
            memory: "1",
            declares: &[0, 1, 2],
            answer: 0,
            imports: Vec::new(),
            extra: "",
            locals: "",
            body: body.into(),
            export: "tiergate:policy/policy@0.1.0",
        }
    }

    fn memory(mut self, memory: &'static str) -> Wat {
        self.memory = memory;
        self
    }

    fn declares(mut self, tiers: &'static [u8]) -> Wat {
        self.declares = tiers;
        self
    }

    fn answer(mut self, tier: u8) -> Wat {
        self.answer = tier;
        self
    }

    pub(crate) fn import(mut self, import: Import) -> Wat {
        self.imports.push(import);
        self
    }

    fn extra(mut self, extra: &'static str) -> Wat {
        self.extra = extra;
        self
    }

    fn locals(mut self, locals: &'static str) -> Wat {
        self.locals = locals;
        self
    }

    fn export(mut self, name: &'static str) -> Wat {
        self.export = name;
        self
    }

    fn text(&self) -> String {
        let join = |part: fn(&Import) -> &'static str| {
            self.imports
                .iter()
                .map(part)
                .collect::<Vec<_>>()
                .join("\n    ")
        };
        let (imports, core_exports, core_imports) = (
            join(|i| i.component),
            join(|i| i.core_export),
            join(|i| i.core_import),
        );
        let tiers: String = self.declares.iter().map(|t| format!("\\{t:02x}")).collect();
        let (memory, extra, locals, body, export) = (
            self.memory,
            self.extra,
            self.locals,
            &self.body,
            self.export,
        );
        let (ntiers, answer) = (self.declares.len(), self.answer);
        format!(
            r#"(component
  (import "tiergate:policy/types@0.1.0" (instance $types
    (type $t0 (enum "autonomous" "supervised" "collaborative" "prohibited"))
    (export "tier" (type $tier (eq $t0)))
    (type $tr0 (enum "verified" "known" "unknown"))
    (export "recipient-trust" (type $trust (eq $tr0)))
    (type $r0 (record (field "code" string) (field "message" string)))
    (export "reason" (type $reason (eq $r0)))
    (type $d0 (record (field "tier" $tier) (field "reasons" (list $reason)) (field "suggestion" (option string))))
    (export "decision" (type (eq $d0)))
    (type $i0 (record (field "name" string) (field "version" string) (field "tiers" (list $tier))))
    (export "policy-info" (type (eq $i0)))
    (type $tx0 (record (field "id" string) (field "tenant" string) (field "agent" string) (field "amount" string)
      (field "currency" string) (field "category" string) (field "recipient" string) (field "recipient-trust" $trust)
      (field "jurisdiction" (option string)) (field "justification" (option string)) (field "network" (option string))
      (field "metadata" (list (tuple string string))) (field "requested-at-ms" u64)))
    (export "transaction" (type (eq $tx0)))))
  (alias export $types "tier" (type $tier))
  (alias export $types "decision" (type $decision))
  (alias export $types "policy-info" (type $info))
  (alias export $types "transaction" (type $tx))
  (core module $mem
    (memory (export "memory") {memory})
    (global $bump (mut i32) (i32.const 0x1000))
    (func (export "realloc") (param i32 i32 i32 i32) (result i32)
      (local $p i32)
      (local.set $p (i32.and (i32.add (global.get $bump) (i32.sub (local.get 2) (i32.const 1)))
                             (i32.sub (i32.const 0) (local.get 2))))
      (global.set $bump (i32.add (local.get $p) (local.get 3)))
      (local.get $p)))
  (core instance $mi (instantiate $mem))
    {imports}
  (core instance $host {core_exports})
  (core module $m
    (import "env" "memory" (memory 0))
    {core_imports}
    {extra}
    (func (export "info") (result i32) (i32.const 0x100))
    (func (export "check-config") (param i32 i32) (result i32) (i32.const 0x200))
    (func (export "classify") (param $args i32) (result i32) {locals}
      {body}
      (i32.const 0x300))
    (data (i32.const 0x100) "\40\01\00\00\07\00\00\00\50\01\00\00\05\00\00\00\60\01\00\00\{ntiers:02x}\00\00\00")
    (data (i32.const 0x140) "hostile")
    (data (i32.const 0x150) "0.1.0")
    (data (i32.const 0x160) "{tiers}")
    (data (i32.const 0x200) "\00")
    (data (i32.const 0x300) "\00\00\00\00\{answer:02x}\00\00\00\40\03\00\00\01\00\00\00\00\00\00\00\00\00\00\00")
    (data (i32.const 0x340) "\80\03\00\00\08\00\00\00\a0\03\00\00\03\00\00\00")
    (data (i32.const 0x380) "answered")
    (data (i32.const 0x3a0) "wat"))
  (core instance $i (instantiate $m (with "env" (instance $mi)) (with "host" (instance $host))))
  (func $info (result $info) (canon lift (core func $i "info") (memory $mi "memory")))
  (func $check (param "config" string) (result (result (error string)))
    (canon lift (core func $i "check-config") (memory $mi "memory") (realloc (func $mi "realloc"))))
  (func $classify (param "config" string) (param "tx" $tx) (result (result $decision (error string)))
    (canon lift (core func $i "classify") (memory $mi "memory") (realloc (func $mi "realloc"))))
  (instance $p
    (export "info" (func $info))
    (export "check-config" (func $check))
    (export "classify" (func $classify)))
  (export "{export}" (instance $p)))"#
        )
    }

    pub(crate) fn bytes(&self) -> Vec<u8> {
        wat::parse_str(self.text()).unwrap_or_else(|e| panic!("{e}\n{}", self.text()))
    }

    fn compile(&self, limits: Limits) -> Result<CompiledPolicy, LoadError> {
        sandbox(limits).compile(&self.bytes())
    }

    fn policy(&self, limits: Limits) -> TenantPolicy {
        self.compile(limits)
            .unwrap_or_else(|e| panic!("{e}\n{}", self.text()))
            .configure("")
            .expect("a wat policy takes any configuration")
    }
}

/// A function counting to 100.
const SPIN: &str = "(func $spin (local $i i32)
      (loop $l
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $l (i32.lt_u (local.get $i) (i32.const 100)))))";

/// A table of three slots, the first holding `$f`, the second empty.
const TABLE: &str = r#"(type $v (func))
    (type $r (func (result i32)))
    (table 3 funcref)
    (elem (i32.const 0) $f)
    (func $f)"#;

#[test]
fn a_hand_written_component_answers_like_a_policy() {
    // The template itself keeps the contract, so every failure below is the
    // body's doing.
    let d = classify(
        &Wat::new("").policy(Limits::Suite),
        &tx("0.02", "embeddings", "verified"),
    );
    assert!(d.failure.is_none(), "{d:?}");
    assert_eq!(d.tier, Tier::Autonomous);
    assert_eq!(
        (d.reasons[0].code.as_str(), d.reasons[0].message.as_str()),
        ("answered", "wat")
    );
    let d = classify(
        &Wat::new("")
            .import(CONTEXT)
            .import(CLOCK)
            .import(RANDOM)
            .policy(Limits::Suite),
        &tx("0.02", "embeddings", "verified"),
    );
    assert!(d.failure.is_none(), "{d:?}");
}

#[test]
fn an_export_of_another_type_is_refused_at_load_and_named() {
    // The host calls `classify` on every payment without checking its type
    // again, so a policy whose exports differ from the contract must never
    // load. Each case answers another record than the contract's.
    let right = Wat::new("").text();
    for (export, contract_type, other) in [
        (
            "classify",
            "(result (result $decision (error string)))",
            "(result (result $info (error string)))",
        ),
        (
            "info",
            "(func $info (result $info)",
            "(func $info (result $decision)",
        ),
    ] {
        let wrong = right.replace(contract_type, other);
        assert_ne!(right, wrong, "the template's `{export}` type changed");
        let bytes = wat::parse_str(&wrong).expect("a valid component");
        let err = sandbox(Limits::Suite)
            .compile(&bytes)
            .expect_err("a mistyped export must not load");
        let text = err.to_string();
        assert!(
            matches!(&err, LoadError::MistypedExport { export: e, .. } if e == export),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "`{export}` does not have the type contract tiergate:policy@0.1.0 gives it"
            )),
            "{text}"
        );
    }
}

// ---------------------------------------------------------------------------
// 1. Infinite loops.

#[test]
fn infinite_loops_run_out_of_fuel_or_time() {
    let kind = "loop";
    let rust = [
        ("rust: plain loop", json!({"mode": "loop"})),
        (
            "rust: loop reading the clock",
            json!({"mode": "loop_clock"}),
        ),
        (
            "rust: loop after taking 12 MiB",
            json!({"mode": "allocate_then_loop"}),
        ),
    ];
    // Host calls cost the host far more time than their fuel: a bare loop of
    // clock calls needs about a second to use 2,000,000 fuel. Counting to
    // 100 between calls keeps fuel, not the clock, the bound here; the bare
    // floods are below.
    let wat = [
        ("wat: plain loop", Wat::new("(loop $l (br $l))")),
        (
            "wat: loop calling the clock",
            Wat::new("(loop $l (drop (call $now)) (call $spin) (br $l))")
                .import(CLOCK)
                .extra(SPIN),
        ),
        (
            "wat: loop calling random",
            Wat::new("(loop $l (drop (call $random)) (call $spin) (br $l))")
                .import(RANDOM)
                .extra(SPIN),
        ),
        (
            "wat: loop after growing to 12 MiB",
            Wat::new(
                "(drop (memory.grow (i32.const 191)))
                 (i32.store (i32.const 0xbffffc) (i32.const 7))
                 (loop $l (br $l))",
            ),
        ),
        (
            "wat: loop in a function called from a loop",
            Wat::new("(loop $l (call $spin) (br $l))").extra(SPIN),
        ),
    ];
    // Under the default fuel, fuel ends them, the same every run; with fuel
    // to spare, the wall-clock deadline does.
    for (limits, expected) in [
        (Limits::Suite, FailureKind::FuelExhausted),
        (Limits::DeadlineOnly, FailureKind::Timeout),
    ] {
        for (variant, config) in &rust {
            let variant = format!("{variant} ({limits:?})");
            let d = contained(
                (kind, &variant),
                limits,
                &misbehave(limits, config.clone()),
                expected,
                Tier::Collaborative,
            );
            if expected == FailureKind::FuelExhausted {
                assert_eq!(d.fuel_used, sandbox(limits).limits().fuel, "{variant}");
            }
        }
        for (variant, wat) in &wat {
            let variant = format!("{variant} ({limits:?})");
            contained(
                (kind, &variant),
                limits,
                &wat.policy(limits),
                expected,
                Tier::Collaborative,
            );
        }
    }
    // Bare floods of host calls: under the default limits, the 50 ms
    // deadline ends them long before their fuel runs out.
    for (variant, wat) in [
        (
            "wat: bare loop of clock calls (Defaults)",
            Wat::new("(loop $l (drop (call $now)) (br $l))").import(CLOCK),
        ),
        (
            "wat: bare loop of random calls (Defaults)",
            Wat::new("(loop $l (drop (call $random)) (br $l))").import(RANDOM),
        ),
    ] {
        contained(
            (kind, variant),
            Limits::Defaults,
            &wat.policy(Limits::Defaults),
            FailureKind::Timeout,
            Tier::Collaborative,
        );
    }
    // A prohibited failure tier is honoured.
    contained(
        (kind, "rust: plain loop, failure tier prohibited"),
        Limits::Suite,
        &misbehave(Limits::Suite, json!({"mode": "loop"}))
            .with_failure_tier(Tier::Prohibited)
            .unwrap(),
        FailureKind::FuelExhausted,
        Tier::Prohibited,
    );
    host_is_up();
}

// ---------------------------------------------------------------------------
// 2. Deep recursion.

#[test]
fn deep_recursion_is_stopped() {
    let kind = "recursion";
    // The Rust guest's own stack lives in its linear memory (64 KiB): deep
    // recursion runs off its bottom and traps as an out-of-bounds access.
    for (variant, mode) in [
        ("rust: small frames", "recurse"),
        ("rust: 8 KiB frames", "recurse_wide"),
    ] {
        let d = contained(
            (kind, variant),
            Limits::Suite,
            &misbehave(Limits::Suite, json!({"mode": mode})),
            FailureKind::Trap,
            Tier::Collaborative,
        );
        let detail = &d.failure.unwrap().detail;
        assert!(detail.contains("out of bounds memory access"), "{detail}");
    }
    // Plain wasm recursion uses only the native stack, which is bounded.
    let wat = [
        ("wat: a function calling itself", Wat::new("(call $r)").extra("(func $r (call $r))")),
        (
            "wat: eight i64 parameters a frame",
            Wat::new("(call $r (i64.const 1) (i64.const 2) (i64.const 3) (i64.const 4) (i64.const 5) (i64.const 6) (i64.const 7) (i64.const 8))")
                .extra("(func $r (param i64 i64 i64 i64 i64 i64 i64 i64)
                          (call $r (local.get 1) (local.get 2) (local.get 3) (local.get 4)
                                   (local.get 5) (local.get 6) (local.get 7) (local.get 0)))"),
        ),
        (
            "wat: mutual recursion",
            Wat::new("(call $a)").extra("(func $a (call $b)) (func $b (call $a))"),
        ),
        (
            "wat: recursion through call_indirect",
            Wat::new("(call $f)").extra(
                "(type $v (func)) (table 1 funcref) (elem (i32.const 0) $f)
                 (func $f (call_indirect (type $v) (i32.const 0)))",
            ),
        ),
    ];
    for (variant, wat) in &wat {
        let d = contained(
            (kind, variant),
            Limits::Suite,
            &wat.policy(Limits::Suite),
            FailureKind::StackOverflow,
            Tier::Collaborative,
        );
        assert!(d.failure.unwrap().detail.contains("KiB stack"));
    }
    contained(
        (
            kind,
            "wat: a function calling itself, failure tier prohibited",
        ),
        Limits::Suite,
        &wat[0]
            .1
            .policy(Limits::Suite)
            .with_failure_tier(Tier::Prohibited)
            .unwrap(),
        FailureKind::StackOverflow,
        Tier::Prohibited,
    );
    host_is_up();
}

// ---------------------------------------------------------------------------
// 3. Memory growth.

#[test]
fn memory_growth_stops_at_the_cap() {
    let kind = "memory";
    let cap = sandbox(Limits::Suite).limits().memory_bytes;
    for (variant, mode) in [
        ("rust: 1 MiB reservations until refused", "allocate"),
        ("rust: one 64 MiB allocation", "allocate_once"),
        ("rust: 4 KiB blocks until refused", "allocate_small"),
    ] {
        let d = contained(
            (kind, variant),
            Limits::Suite,
            &misbehave(Limits::Suite, json!({"mode": mode})),
            FailureKind::MemoryLimit,
            Tier::Collaborative,
        );
        let detail = d.failure.unwrap().detail;
        assert!(detail.contains(&format!("the limit is {cap}")), "{detail}");
    }
    let refused = "(then unreachable)";
    let wat = [
        (
            "wat: one grow by 64 MiB",
            Wat::new(format!(
                "(if (i32.eq (memory.grow (i32.const 1024)) (i32.const -1)) {refused})"
            )),
        ),
        (
            "wat: one grow to 4 GiB",
            Wat::new(format!(
                "(if (i32.eq (memory.grow (i32.const 65535)) (i32.const -1)) {refused})"
            )),
        ),
        (
            "wat: one page at a time until refused",
            Wat::new(
                "(loop $l (br_if $l (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
                 unreachable",
            ),
        ),
        (
            "wat: grow 1 MiB and write its first 4 KiB, in a loop",
            Wat::new(
                "(loop $l
                   (local.set $old (memory.grow (i32.const 16)))
                   (if (i32.eq (local.get $old) (i32.const -1)) (then unreachable))
                   (memory.fill (i32.shl (local.get $old) (i32.const 16)) (i32.const 0x55) (i32.const 4096))
                   (br $l))",
            )
            .locals("(local $old i32)"),
        ),
    ];
    for (variant, wat) in &wat {
        contained(
            (kind, variant),
            Limits::Suite,
            &wat.policy(Limits::Suite),
            FailureKind::MemoryLimit,
            Tier::Collaborative,
        );
    }
    contained(
        (kind, "wat: one page at a time, failure tier prohibited"),
        Limits::Suite,
        &wat[2]
            .1
            .policy(Limits::Suite)
            .with_failure_tier(Tier::Prohibited)
            .unwrap(),
        FailureKind::MemoryLimit,
        Tier::Prohibited,
    );

    // A refused grow is visible to the policy (memory.grow answers -1); one
    // that carries on within its memory answers normally, and never got more.
    let carries_on = Wat::new(
        "(if (i32.eq (memory.grow (i32.const 1024)) (i32.const -1))
           (then (i32.store8 (i32.const 0x304) (i32.const 1))))",
    );
    let d = classify(
        &carries_on.policy(Limits::Suite),
        &tx("0.02", "embeddings", "verified"),
    );
    assert_eq!(
        (d.tier, d.failure),
        (Tier::Supervised, None),
        "the grow was refused"
    );

    // A memory declared larger than the cap never gets instantiated.
    let start = Instant::now();
    let err = Wat::new("")
        .memory("300")
        .compile(Limits::Suite)
        .expect_err("a 300-page memory is over the 256-page cap");
    measured(
        kind,
        "wat: memory declared at 300 pages (a load)",
        start.elapsed(),
        &format!("refused: {}", load_kind(&err)),
        None,
    );
    eprintln!("hostile |   refused at load: {err}");
    host_is_up();
}

// ---------------------------------------------------------------------------
// 4. Bulk memory.

#[test]
fn bulk_memory_over_all_of_memory_is_stopped() {
    let kind = "bulk memory";
    // wasmtime charges memory.fill and memory.copy fuel by the byte, and
    // checks fuel and the deadline between chunks of a long one: under the
    // default fuel these end at once, the same every run; with fuel to spare
    // the deadline ends them.
    let whole = "(drop (memory.grow (i32.const 255)))";
    let repeated = [
        (
            "wat: memory.fill of all 16 MiB, repeated",
            format!(
                "{whole} (loop $l (memory.fill (i32.const 0) (i32.const 0xab) (i32.shl (memory.size) (i32.const 16))) (br $l))"
            ),
        ),
        (
            "wat: memory.copy of 8 MiB each way, repeated",
            format!(
                "{whole} (loop $l
                   (memory.copy (i32.const 0) (i32.const 0x800000) (i32.const 0x800000))
                   (memory.copy (i32.const 0x800000) (i32.const 0) (i32.const 0x800000))
                   (br $l))"
            ),
        ),
        (
            "wat: overlapping memory.copy of 16 MiB, repeated",
            format!(
                "{whole} (loop $l
                   (memory.copy (i32.const 1) (i32.const 0) (i32.sub (i32.shl (memory.size) (i32.const 16)) (i32.const 1)))
                   (br $l))"
            ),
        ),
        (
            "wat: memory.fill of 64 KiB, endlessly",
            "(drop (memory.grow (i32.const 1)))
             (loop $l (memory.fill (i32.const 0x10000) (i32.const 1) (i32.const 0x10000)) (br $l))"
                .to_string(),
        ),
    ];
    for (limits, expected) in [
        (Limits::Suite, FailureKind::FuelExhausted),
        (Limits::DeadlineOnly, FailureKind::Timeout),
    ] {
        for (variant, body) in &repeated {
            contained(
                (kind, &format!("{variant} ({limits:?})")),
                limits,
                &Wat::new(body.as_str())
                    .locals("(local $i i32)")
                    .policy(limits),
                expected,
                Tier::Collaborative,
            );
        }
    }
    // Past the end of memory, bulk operations trap before writing anything
    // (given the fuel to try).
    let traps = [
        (
            "wat: memory.fill of 2 GiB",
            "(memory.fill (i32.const 0) (i32.const 0) (i32.const 0x7fffffff))",
        ),
        (
            "wat: memory.copy from past the end",
            "(memory.copy (i32.const 0) (i32.const 0xfff0) (i32.const 0x20))",
        ),
        (
            "wat: memory.copy of 4 GiB - 1",
            "(memory.copy (i32.const 0) (i32.const 0) (i32.const -1))",
        ),
    ];
    for (variant, body) in traps {
        let d = contained(
            (kind, &format!("{variant} (DeadlineOnly)")),
            Limits::DeadlineOnly,
            &Wat::new(body).policy(Limits::DeadlineOnly),
            FailureKind::Trap,
            Tier::Collaborative,
        );
        assert!(
            d.failure
                .unwrap()
                .detail
                .contains("out of bounds memory access")
        );
    }
    contained(
        (kind, "wat: memory.fill repeated, failure tier prohibited"),
        Limits::DeadlineOnly,
        &Wat::new(repeated[0].1.as_str())
            .policy(Limits::DeadlineOnly)
            .with_failure_tier(Tier::Prohibited)
            .unwrap(),
        FailureKind::Timeout,
        Tier::Prohibited,
    );
    host_is_up();
}

// ---------------------------------------------------------------------------
// 5. Traps.

#[test]
fn every_trap_fails_closed_with_the_trap_named() {
    let kind = "trap";
    let zero = "(i32.load (i32.const 0x800))"; // memory there is zero
    let cases: Vec<(&str, Wat, FailureKind, &str)> = vec![
        (
            "wat: unreachable",
            Wat::new("unreachable"),
            FailureKind::Trap,
            "unreachable",
        ),
        (
            "wat: i32.div_u by zero",
            Wat::new(format!("(drop (i32.div_u (i32.const 7) {zero}))")),
            FailureKind::Trap,
            "integer divide by zero",
        ),
        (
            "wat: i64.rem_s by zero",
            Wat::new(format!(
                "(drop (i64.rem_s (i64.const 7) (i64.extend_i32_u {zero})))"
            )),
            FailureKind::Trap,
            "integer divide by zero",
        ),
        (
            "wat: i32.div_s of MIN by -1",
            Wat::new(format!(
                "(drop (i32.div_s (i32.const 0x80000000) (i32.sub {zero} (i32.const 1))))"
            )),
            FailureKind::Trap,
            "integer overflow",
        ),
        (
            "wat: i64.div_s of MIN by -1",
            Wat::new(format!(
                "(drop (i64.div_s (i64.const 0x8000000000000000) (i64.sub (i64.extend_i32_u {zero}) (i64.const 1))))"
            )),
            FailureKind::Trap,
            "integer overflow",
        ),
        (
            "wat: i32.trunc_f32_s of NaN",
            Wat::new(format!(
                "(drop (i32.trunc_f32_s (f32.div (f32.convert_i32_u {zero}) (f32.const 0))))"
            )),
            FailureKind::Trap,
            "invalid conversion to integer",
        ),
        (
            "wat: i32.trunc_f64_u of 1e20",
            Wat::new(format!(
                "(drop (i32.trunc_f64_u (f64.add (f64.convert_i32_u {zero}) (f64.const 1e20))))"
            )),
            FailureKind::Trap,
            "integer overflow",
        ),
        (
            "wat: load at 2 GiB",
            Wat::new("(drop (i32.load (i32.const 0x7ffffff0)))"),
            FailureKind::Trap,
            "out of bounds memory access",
        ),
        (
            "wat: store at 4 GiB - 1",
            Wat::new("(i32.store (i32.const -1) (i32.const 1))"),
            FailureKind::Trap,
            "out of bounds memory access",
        ),
        (
            "wat: i64 load straddling the end of memory",
            Wat::new(
                "(drop (i64.load (i32.sub (i32.shl (memory.size) (i32.const 16)) (i32.const 4))))",
            ),
            FailureKind::Trap,
            "out of bounds memory access",
        ),
        (
            "wat: call_indirect of a null entry",
            Wat::new("(call_indirect (type $v) (i32.const 1))").extra(TABLE),
            FailureKind::Trap,
            "uninitialized element",
        ),
        (
            "wat: call_indirect with the wrong signature",
            Wat::new("(drop (call_indirect (type $r) (i32.const 0)))").extra(TABLE),
            FailureKind::Trap,
            "indirect call type mismatch",
        ),
        (
            "wat: call_indirect past the table",
            Wat::new("(call_indirect (type $v) (i32.const 7))").extra(TABLE),
            FailureKind::Trap,
            "out of bounds table access",
        ),
        (
            "wat: stack overflow",
            Wat::new("(call $r)").extra("(func $r (call $r))"),
            FailureKind::StackOverflow,
            "stack",
        ),
    ];
    for (variant, wat, expected, says) in &cases {
        let d = contained(
            (kind, variant),
            Limits::Suite,
            &wat.policy(Limits::Suite),
            *expected,
            Tier::Collaborative,
        );
        let detail = d.failure.unwrap().detail;
        assert!(detail.contains(says), "{variant}: {detail}");
    }
    let rust = [
        (
            "rust: Option::unwrap on None",
            json!({"mode": "unwrap"}),
            "called `Option::unwrap()` on a `None` value",
        ),
        (
            "rust: index out of bounds",
            json!({"mode": "index", "count": 7}),
            "index out of bounds: the len is 3 but the index is 7",
        ),
        (
            "rust: divide by zero",
            json!({"mode": "divide"}),
            "attempt to divide by zero",
        ),
        (
            "rust: process::abort",
            json!({"mode": "abort"}),
            "unreachable",
        ),
        (
            "rust: process::exit(0)",
            json!({"mode": "exit", "count": 0}),
            "exit",
        ),
        (
            "rust: process::exit(3)",
            json!({"mode": "exit", "count": 3}),
            "exit",
        ),
        (
            "rust: stderr flood",
            json!({"mode": "stderr_flood"}),
            "flooding stderr",
        ),
    ];
    for (variant, config, says) in rust {
        let d = contained(
            (kind, variant),
            Limits::Suite,
            &misbehave(Limits::Suite, config),
            FailureKind::Trap,
            Tier::Collaborative,
        );
        let detail = d.failure.unwrap().detail;
        assert!(detail.contains(says), "{variant}: {detail}");
    }
    contained(
        (kind, "wat: unreachable, failure tier prohibited"),
        Limits::Suite,
        &cases[0]
            .1
            .policy(Limits::Suite)
            .with_failure_tier(Tier::Prohibited)
            .unwrap(),
        FailureKind::Trap,
        Tier::Prohibited,
    );
    host_is_up();
}

// ---------------------------------------------------------------------------
// 6. Floods of context questions.

#[test]
fn a_flood_of_context_questions_is_cut_off() {
    let kind = "context flood";
    let max = sandbox(Limits::Suite).limits().max_context_reads;
    // Up to the limit is fine; one more is a failure.
    let d = classify(
        &misbehave(
            Limits::Suite,
            json!({"mode": "flood_context", "count": max}),
        ),
        &tx("0.02", "embeddings", "verified"),
    );
    assert!(d.failure.is_none(), "{d:?}");
    assert_eq!(d.context_reads.len(), max);
    let cases = [
        (
            "rust: agent activity, limit + 1",
            json!({"mode": "flood_context", "count": max + 1}),
        ),
        (
            "rust: agent activity x 1000",
            json!({"mode": "flood_context", "count": 1000}),
        ),
        (
            "rust: recipient x 1,000,000",
            json!({"mode": "flood_recipient", "count": 1_000_000}),
        ),
    ];
    for (variant, config) in cases {
        let d = contained(
            (kind, variant),
            Limits::Suite,
            &misbehave(Limits::Suite, config),
            FailureKind::TooManyContextReads,
            Tier::Collaborative,
        );
        assert_eq!(
            d.context_reads.len(),
            max,
            "{variant}: the reads are kept up to the limit"
        );
    }
    let wat = [
        (
            "wat: recipient in an endless loop",
            Wat::new("(loop $l (call $recipient (i32.const 0x900)) (br $l))"),
        ),
        (
            "wat: agent activity in an endless loop",
            Wat::new(
                "(loop $l (call $activity (i64.const 3600000) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0x900)) (br $l))",
            ),
        ),
    ];
    for (variant, wat) in &wat {
        contained(
            (kind, variant),
            Limits::Suite,
            &wat.clone().import(CONTEXT).policy(Limits::Suite),
            FailureKind::TooManyContextReads,
            Tier::Collaborative,
        );
    }
    contained(
        (kind, "wat: recipient loop, failure tier prohibited"),
        Limits::Suite,
        &wat[0]
            .1
            .clone()
            .import(CONTEXT)
            .policy(Limits::Suite)
            .with_failure_tier(Tier::Prohibited)
            .unwrap(),
        FailureKind::TooManyContextReads,
        Tier::Prohibited,
    );

    // A question longer than any real category is refused at once: the
    // host would otherwise keep it on the decision (and so in the audit
    // record). One longer than the host takes from a policy at once is
    // refused before it is even copied out of the sandbox.
    for (variant, len, expected) in [
        (
            "wat: agent activity, 1 KiB category each",
            1 << 10,
            FailureKind::ContextQuestionOversized,
        ),
        (
            "wat: agent activity, 1 MiB category each",
            1 << 20,
            FailureKind::TransferOversized,
        ),
    ] {
        let d = contained(
            (kind, variant),
            Limits::Suite,
            &category_flood(len).policy(Limits::Suite),
            expected,
            Tier::Collaborative,
        );
        assert_eq!(
            kept_category_bytes(&d),
            0,
            "{variant}: nothing of the question is kept"
        );
    }
    let d = classify(
        &category_flood(1 << 20).policy(Limits::Suite),
        &tx("0.02", "embeddings", "verified"),
    );
    let detail = &d.failure.as_ref().unwrap().detail;
    assert!(detail.contains("262144 bytes"), "{detail}");
    eprintln!(
        "hostile |   the decision keeps {} bytes of category text from a {} byte sandbox",
        kept_category_bytes(&d),
        sandbox(Limits::Suite).limits().memory_bytes
    );
    host_is_up();
}

/// A policy asking about a category of `len` zero bytes, in an endless
/// loop. Nothing is written, so it costs no fuel to make.
fn category_flood(len: u32) -> Wat {
    let pages = (0x10000 + len).div_ceil(0x10000);
    Wat::new(format!(
        "(drop (memory.grow (i32.const {pages})))
         (loop $l
           (call $activity (i64.const 3600000) (i32.const 1) (i32.const 0x10000) (i32.const {len}) (i32.const 0x900))
           (br $l))"
    ))
    .import(CONTEXT)
}

fn kept_category_bytes(d: &Decision) -> usize {
    d.context_reads
        .iter()
        .map(|r| match r {
            ContextRead::AgentActivity {
                filter: ActivityFilter::Category(c),
                ..
            } => c.len(),
            _ => 0,
        })
        .sum()
}

// ---------------------------------------------------------------------------
// 7. Panics.

#[test]
fn a_panic_message_reaches_the_detail() {
    let kind = "panic";
    let long = "the policy says this at length. ".repeat(3000);
    let messages = [
        (
            "rust: the fixture's own message",
            None,
            "policy bug: amount 0.02 unexpected",
        ),
        (
            "rust: plain text",
            Some("ceiling misconfigured"),
            "ceiling misconfigured",
        ),
        (
            "rust: non-ASCII text",
            Some("Zahlung verweigert: 💥 ünïcödé ✓"),
            "Zahlung verweigert: 💥 ünïcödé ✓",
        ),
        (
            // Kept, but on one line: a newline cannot start a forged one.
            "rust: quotes, newlines and JSON",
            Some("line one\nline \"two\"\t{\"tier\": \"autonomous\"}"),
            r#"line one\nline "two"\t{"tier": "autonomous"}"#,
        ),
        (
            "rust: 96 KB of text",
            Some(long.as_str()),
            "the policy says this at length.",
        ),
    ];
    for (variant, message, says) in messages {
        let config = match message {
            None => json!({"mode": "panic"}),
            Some(m) => json!({"mode": "panic", "message": m}),
        };
        let d = contained(
            (kind, variant),
            Limits::Suite,
            &misbehave(Limits::Suite, config),
            FailureKind::Trap,
            Tier::Collaborative,
        );
        let detail = d.failure.unwrap().detail;
        assert!(detail.contains(says), "{variant}: {detail}");
        // The detail is cut at 1024 bytes (plus the ellipsis), however long
        // the message.
        assert!(
            detail.len() <= 1024 + '…'.len_utf8(),
            "{variant}: {} bytes",
            detail.len()
        );
    }
    let d = contained(
        (kind, "rust: plain text, failure tier prohibited"),
        Limits::Suite,
        &misbehave(Limits::Suite, json!({"mode": "panic", "message": "no"}))
            .with_failure_tier(Tier::Prohibited)
            .unwrap(),
        FailureKind::Trap,
        Tier::Prohibited,
    );
    assert!(d.failure.unwrap().detail.contains("panicked"));
    host_is_up();
}

/// A policy built without `std` has the SDK's panic handler instead of the
/// standard library's: the message must reach the detail all the same.
#[test]
fn a_panic_message_without_std_reaches_the_detail() {
    let compiled = sandbox(Limits::Suite)
        .compile_file(fixtures::PANIC_NOSTD.as_ref())
        .expect("fixture compiles");
    let configured = |config: serde_json::Value| {
        compiled
            .configure(&config.to_string())
            .unwrap_or_else(|e| panic!("{config} configures: {e}"))
    };
    for (variant, message) in [
        ("no_std: plain text", "ceiling misconfigured"),
        ("no_std: non-ASCII text", "Zahlung verweigert: 💥 ünïcödé ✓"),
    ] {
        let d = contained(
            ("panic", variant),
            Limits::Suite,
            &configured(json!({"panic": message, "limit": "1.00"})),
            FailureKind::Trap,
            Tier::Collaborative,
        );
        let detail = d.failure.unwrap().detail;
        assert!(detail.contains("panicked at"), "{variant}: {detail}");
        assert!(detail.contains(message), "{variant}: {detail}");
    }
    // The same component decides when it does not panic, and reads a
    // configured number exactly (past what a binary float holds).
    let exact = compiled
        .configure(r#"{"panic": null, "limit": 0.0200000000000000001}"#)
        .expect("a number configures");
    assert_eq!(
        classify(&exact, &tx("0.02", "embeddings", "verified")).tier,
        Tier::Autonomous
    );
    assert_eq!(
        classify(
            &exact,
            &tx("0.0200000000000000002", "embeddings", "verified")
        )
        .tier,
        Tier::Collaborative
    );
    host_is_up();
}

// ---------------------------------------------------------------------------
// 8. Answers that break the contract.

#[test]
fn answers_outside_the_contract_fail_closed() {
    let kind = "answer";
    let big = 0xc0_0000; // 12 MiB, in a 200-page (12.5 MiB) memory
    let cases: Vec<(&str, Wat, FailureKind, Tier, String)> = vec![
        (
            "wat: tier discriminant 4",
            Wat::new("").answer(4),
            FailureKind::Trap,
            Tier::Collaborative,
            "unexpected discriminant: 4".into(),
        ),
        (
            "wat: tier discriminant 255",
            Wat::new("").answer(255),
            FailureKind::Trap,
            Tier::Collaborative,
            "unexpected discriminant: 255".into(),
        ),
        (
            "wat: supervised, declaring only autonomous",
            Wat::new("").declares(&[0]).answer(1),
            FailureKind::UndeclaredTier,
            Tier::Collaborative,
            "returned supervised, but declares only autonomous".into(),
        ),
        (
            // Empty code and message each: all of memory is zero.
            "wat: 1,044,480 empty reasons (all of memory)",
            Wat::new(
                "(i32.store (i32.const 0x308) (i32.const 0x10000))
                 (i32.store (i32.const 0x30c) (i32.const 1044480))",
            )
            .memory("256"),
            FailureKind::TransferOversized,
            Tier::Collaborative,
            "more than 262144 bytes".into(),
        ),
        (
            // Copying the answer out stops at the transfer bound, long
            // before the message's 12 MiB.
            "wat: a 12 MiB message",
            Wat::new(format!(
                "(i32.store (i32.const 0x348) (i32.const 0x10000)) (i32.store (i32.const 0x34c) (i32.const {big}))"
            ))
            .memory("200"),
            FailureKind::TransferOversized,
            Tier::Collaborative,
            "more than 262144 bytes".into(),
        ),
        (
            "wat: a 12 MiB suggestion",
            Wat::new(format!(
                "(i32.store8 (i32.const 0x310) (i32.const 1))
                 (i32.store (i32.const 0x314) (i32.const 0x10000)) (i32.store (i32.const 0x318) (i32.const {big}))"
            ))
            .memory("200"),
            FailureKind::TransferOversized,
            Tier::Collaborative,
            "more than 262144 bytes".into(),
        ),
        (
            "wat: a 100 KiB reason code",
            Wat::new(
                "(memory.fill (i32.const 0x1000) (i32.const 0x61) (i32.const 102400))
                 (i32.store (i32.const 0x340) (i32.const 0x1000)) (i32.store (i32.const 0x344) (i32.const 102400))",
            )
            .memory("3"),
            FailureKind::DecisionOversized,
            Tier::Collaborative,
            "exceeds".into(),
        ),
        (
            "wat: a 12 MiB error",
            Wat::new(format!(
                "(memory.fill (i32.const 0x10000) (i32.const 0x65) (i32.const 64))
                 (i32.store8 (i32.const 0x300) (i32.const 1))
                 (i32.store (i32.const 0x304) (i32.const 0x10000)) (i32.store (i32.const 0x308) (i32.const {big}))"
            ))
            .memory("200"),
            FailureKind::TransferOversized,
            Tier::Collaborative,
            "more than 262144 bytes".into(),
        ),
        (
            "wat: a 64 KiB error",
            Wat::new(
                "(memory.fill (i32.const 0x10000) (i32.const 0x65) (i32.const 0x10000))
                 (i32.store8 (i32.const 0x300) (i32.const 1))
                 (i32.store (i32.const 0x304) (i32.const 0x10000)) (i32.store (i32.const 0x308) (i32.const 0x10000))",
            )
            .memory("3"),
            FailureKind::PolicyError,
            Tier::Collaborative,
            "eeee".into(),
        ),
        (
            "wat: a 2 KiB suggestion",
            Wat::new(
                "(memory.fill (i32.const 0x10000) (i32.const 0x73) (i32.const 2048))
                 (i32.store8 (i32.const 0x310) (i32.const 1))
                 (i32.store (i32.const 0x314) (i32.const 0x10000)) (i32.store (i32.const 0x318) (i32.const 2048))",
            )
            .memory("2"),
            FailureKind::DecisionOversized,
            Tier::Collaborative,
            "suggestion".into(),
        ),
        (
            "wat: 17 reasons (one past the bound)",
            aliased_reasons(17, 64, "2"),
            FailureKind::DecisionOversized,
            Tier::Collaborative,
            "17 reasons".into(),
        ),
        (
            "wat: a reasons list claiming 4 GiB",
            Wat::new("(i32.store (i32.const 0x30c) (i32.const 0x10000000))"),
            FailureKind::Trap,
            Tier::Collaborative,
            "out of bounds".into(),
        ),
        (
            "wat: a message that is not UTF-8",
            Wat::new("(i32.store8 (i32.const 0x3a1) (i32.const 0xff))"),
            FailureKind::Trap,
            Tier::Collaborative,
            "utf-8".into(),
        ),
        (
            "wat: option discriminant 7",
            Wat::new("(i32.store8 (i32.const 0x310) (i32.const 7))"),
            FailureKind::Trap,
            Tier::Collaborative,
            "discriminant".into(),
        ),
        (
            "wat: result discriminant 9",
            Wat::new("(i32.store8 (i32.const 0x300) (i32.const 9))"),
            FailureKind::Trap,
            Tier::Collaborative,
            "discriminant".into(),
        ),
        (
            "wat: the answer's address past the end of memory",
            Wat::new("(return (i32.const 0x7ffffff0))"),
            FailureKind::Trap,
            Tier::Collaborative,
            "out of bounds".into(),
        ),
        (
            "wat: the answer's address misaligned",
            Wat::new("(return (i32.const 0x301))"),
            FailureKind::Trap,
            Tier::Collaborative,
            "align".into(),
        ),
    ];
    for (variant, wat, expected, tier, says) in &cases {
        let d = contained(
            (kind, variant),
            Limits::Suite,
            &wat.policy(Limits::Suite),
            *expected,
            *tier,
        );
        let detail = d.failure.unwrap().detail;
        assert!(
            detail.to_lowercase().contains(says.as_str()),
            "{variant}: {detail}"
        );
        // Bounded at the documented 1024 bytes whatever the answer's size.
        assert!(
            detail.len() <= 1024 + '…'.len_utf8(),
            "{variant}: {} bytes",
            detail.len()
        );
    }
    let rust = [
        (
            "rust: prohibited, undeclared (the stricter tier stays)",
            json!({"mode": "answer", "tier": "prohibited"}),
            FailureKind::UndeclaredTier,
            Tier::Prohibited,
        ),
        (
            "rust: 200 reasons",
            json!({"mode": "many_reasons", "count": 200}),
            FailureKind::DecisionOversized,
            Tier::Collaborative,
        ),
        (
            "rust: a 1 MiB message",
            json!({"mode": "huge_message", "count": 1 << 20}),
            FailureKind::TransferOversized,
            Tier::Collaborative,
        ),
        (
            "rust: a 2 KiB message",
            json!({"mode": "huge_message", "count": 2048}),
            FailureKind::DecisionOversized,
            Tier::Collaborative,
        ),
        (
            "rust: a code that is not snake_case",
            json!({"mode": "bad_code"}),
            FailureKind::DecisionMalformed,
            Tier::Collaborative,
        ),
        (
            "rust: no reason",
            json!({"mode": "no_reason"}),
            FailureKind::DecisionMalformed,
            Tier::Collaborative,
        ),
    ];
    for (variant, config, expected, tier) in rust {
        contained(
            (kind, variant),
            Limits::Suite,
            &misbehave(Limits::Suite, config),
            expected,
            tier,
        );
    }
    contained(
        (kind, "wat: tier discriminant 4, failure tier prohibited"),
        Limits::Suite,
        &cases[0]
            .1
            .policy(Limits::Suite)
            .with_failure_tier(Tier::Prohibited)
            .unwrap(),
        FailureKind::Trap,
        Tier::Prohibited,
    );
    host_is_up();
}

// ---------------------------------------------------------------------------
// What a policy says reaches terminals: bounded and printable.

/// Characters a terminal acts on or that reorder what it shows: C0 and C1
/// controls, bidi and other format characters, line separators.
fn unprintable(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{ad}' | '\u{61c}' | '\u{180e}' | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{206f}' | '\u{feff}'
            | '\u{fff9}'..='\u{fffb}' | '\u{e0001}' | '\u{e0020}'..='\u{e007f}')
}

fn printable(what: &str, text: &str) {
    assert!(
        !text.chars().any(unprintable),
        "{what} holds an unprintable character: {text:?}"
    );
}

#[test]
fn control_and_bidi_characters_in_an_answer_fail_closed() {
    let kind = "answer text";
    // The answer's message is `wat` at 0x3a0; each case writes other bytes there.
    let at = |bytes: &[u8]| -> String {
        bytes
            .iter()
            .enumerate()
            .map(|(i, b)| format!("(i32.store8 (i32.const {}) (i32.const {b}))", 0x3a0 + i))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let cases = [
        ("wat: ESC in the message", at(b"w\x1bt")),
        ("wat: BEL in the message", at(b"w\x07t")),
        ("wat: NUL in the message", at(b"w\x00t")),
        ("wat: CR in the message", at(b"w\rt")),
        ("wat: LF in the message", at(b"w\nt")),
        ("wat: DEL in the message", at(b"w\x7ft")),
        ("wat: a C1 CSI in the message", at("\u{9b}t".as_bytes())),
        ("wat: RLO (U+202E) as the message", at("\u{202e}".as_bytes())),
        ("wat: a zero-width space as the message", at("\u{200b}".as_bytes())),
        ("wat: a byte-order mark as the message", at("\u{feff}".as_bytes())),
        ("wat: a line separator as the message", at("\u{2028}".as_bytes())),
        (
            "wat: an empty message",
            "(i32.store (i32.const 0x34c) (i32.const 0))".into(),
        ),
        (
            "wat: a suggestion clearing the screen",
            "(i32.store (i32.const 0x3c0) (i32.const 0x4a325b1b))
             (i32.store8 (i32.const 0x310) (i32.const 1))
             (i32.store (i32.const 0x314) (i32.const 0x3c0)) (i32.store (i32.const 0x318) (i32.const 4))"
                .into(),
        ),
    ];
    for (variant, body) in &cases {
        let d = contained(
            (kind, variant),
            Limits::Suite,
            &Wat::new(body.as_str()).policy(Limits::Suite),
            FailureKind::DecisionMalformed,
            Tier::Collaborative,
        );
        printable(variant, &d.failure.as_ref().unwrap().detail);
        printable(variant, &d.reasons[0].message);
    }
    // Text that is only unusual is an answer.
    let d = classify(
        &Wat::new(at("éx".as_bytes()).as_str()).policy(Limits::Suite),
        &tx("0.02", "embeddings", "verified"),
    );
    assert!(d.failure.is_none(), "{d:?}");
    host_is_up();
}

/// A wat policy whose `info` names itself with `name`, placed at 64 KiB.
fn named(name: &[u8]) -> Vec<u8> {
    let pages = (0x10000 + name.len()).div_ceil(0x10000);
    let text = Wat::new("").text();
    let escaped: String = name.iter().map(|b| format!("\\{b:02x}")).collect();
    let len: String = (name.len() as u32)
        .to_le_bytes()
        .iter()
        .map(|b| format!("\\{b:02x}"))
        .collect();
    let text = text
        .replace(
            r#"(data (i32.const 0x100) "\40\01\00\00\07\00\00\00"#,
            &format!(r#"(data (i32.const 0x100) "\00\00\01\00{len}"#),
        )
        .replace(
            r#"(data (i32.const 0x140) "hostile")"#,
            &format!(r#"(data (i32.const 0x10000) "{escaped}")"#),
        )
        .replace(
            r#"(memory (export "memory") 1)"#,
            &format!(r#"(memory (export "memory") {pages})"#),
        );
    wat::parse_str(&text).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn a_policys_name_is_bounded_and_printable_before_it_is_quoted() {
    let kind = "metadata";
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("wat: a name clearing the screen", named(b"host\x1b[2Jile")),
        (
            "wat: a name with RLO",
            named("hostile\u{202e}elitsoh".as_bytes()),
        ),
        (
            "wat: a name with a newline",
            named(b"hostile\ntier=autonomous"),
        ),
        ("wat: a 200 KiB name", named(&[b'n'; 200 << 10])),
        ("wat: a 200 KiB name of NULs", named(&[0; 200 << 10])),
    ];
    for (variant, bytes) in cases {
        let start = Instant::now();
        let err = sandbox(Limits::Suite)
            .compile(&bytes)
            .expect_err("the name is refused");
        measured(
            kind,
            variant,
            start.elapsed(),
            &format!("refused: {}", load_kind(&err)),
            None,
        );
        assert!(matches!(err, LoadError::BadMetadata(_)), "{variant}: {err}");
        let text = err.to_string();
        printable(variant, &text);
        assert!(
            text.len() <= 400,
            "{variant}: {} bytes: {text:.400}",
            text.len()
        );
    }
    // What a policy says in its configuration errors is kept printable too.
    let err = misbehave_compiled(Limits::Suite)
        .configure(&json!({"mode": "\u{1b}[2J\u{202e}"}).to_string())
        .unwrap_err()
        .to_string();
    printable("a configuration error", &err);
    assert!(err.contains("unknown variant"), "{err}");
}

#[test]
fn a_panic_message_reaches_the_detail_escaped() {
    let d = contained(
        (
            "panic",
            "rust: a message clearing the screen and reversing text",
        ),
        Limits::Suite,
        &misbehave(
            Limits::Suite,
            json!({"mode": "panic", "message": "\u{1b}[2J\u{7}\u{202e}evil\ntier=autonomous"}),
        ),
        FailureKind::Trap,
        Tier::Collaborative,
    );
    let detail = d.failure.unwrap().detail;
    printable("the detail", &detail);
    assert!(
        detail.contains(r"\u{1b}[2J\u{7}\u{202e}evil\ntier=autonomous"),
        "{detail}"
    );
}

#[test]
fn the_command_line_escapes_what_it_did_not_write() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("tiergate.db");
    let acme = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/tenants/acme.toml"
    );
    // An agent's justification may hold a newline (and, stored by an
    // earlier version, anything else; a bidi control is refused now); an
    // owner's note newlines and invisible characters, though no control
    // that acts on a terminal.
    let forged = "for the team\n  tier autonomous (policy: autonomous), status executed";
    let payment = json!({
        "id": "tx-1", "tenant": "acme", "agent": "procurement-agent-prod", "amount": "89.00",
        "currency": "USDC", "category": "agent_hire", "recipient": "vendor.example",
        "recipient_trust": "known", "justification": forged,
    });
    let input = dir.path().join("tx.json");
    std::fs::write(&input, payment.to_string()).unwrap();
    let run = |args: &[&str]| {
        let out = crate::tiergate_command().args(args).output().unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{args:?}: {stderr}");
        (stdout, stderr)
    };
    let store_arg = store.to_str().unwrap();
    let (authorized, _) = run(&[
        "authorize",
        "--tenant",
        acme,
        "--store",
        store_arg,
        input.to_str().unwrap(),
    ]);
    let audit_id =
        serde_json::from_str::<serde_json::Value>(authorized.trim()).unwrap()["audit_id"]
            .as_str()
            .unwrap()
            .to_string();
    let (before, _) = run(&[
        "audit", "show", "--store", store_arg, "--tenant", "acme", &audit_id,
    ]);
    let seq = before
        .split('#')
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no event listed: {before}"))
        .to_string();
    let correct = |note: &str| {
        crate::tiergate_command()
            .args(["audit", "correct", "--store", store_arg, "--config", acme])
            .args(["--tx", "tx-1", "--seq", &seq, "--as", "alice@acme.example"])
            .args(["--note", note])
            .output()
            .unwrap()
    };
    // A note that would clear the screen is refused, naming what it holds.
    let refused = correct("\u{1b}[2J\u{7}cleared");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("U+001B"), "{stderr}");
    printable("the refusal", &stderr.replace('\n', " "));
    let kept = correct("cleared\n  tier autonomous\u{200b}");
    assert!(
        kept.status.success(),
        "{}",
        String::from_utf8_lossy(&kept.stderr)
    );
    let (shown, _) = run(&[
        "audit", "show", "--store", store_arg, "--tenant", "acme", &audit_id,
    ]);
    printable("audit show", &shown.replace('\n', " "));
    assert!(
        !shown.lines().any(|l| l.starts_with("  tier autonomous")),
        "a forged line: {shown}"
    );
    assert!(
        shown.contains(r"for the team\n  tier autonomous"),
        "{shown}"
    );
    assert!(
        shown.contains(r"cleared\n  tier autonomous\u{200b}"),
        "{shown}"
    );
}

// ---------------------------------------------------------------------------
// Limits that add up.

#[test]
fn the_memory_cap_holds_for_all_of_an_instances_memories_together() {
    let kind = "memory";
    let cap = sandbox(Limits::Suite).limits().memory_bytes;
    // Two memories of 12 MiB each: each under the 16 MiB cap, together over.
    let two = Wat::new(
        "(if (i32.eq (memory.grow (i32.const 191)) (i32.const -1)) (then unreachable))
         (if (i32.eq (memory.grow $two (i32.const 191)) (i32.const -1)) (then unreachable))",
    )
    .extra("(memory $two 1)");
    let d = contained(
        (kind, "wat: two memories of 12 MiB each"),
        Limits::Suite,
        &two.policy(Limits::Suite),
        FailureKind::MemoryLimit,
        Tier::Collaborative,
    );
    let detail = d.failure.unwrap().detail;
    assert!(detail.contains(&format!("the limit is {cap}")), "{detail}");
    // Two of 4 MiB each fit.
    let small = Wat::new(
        "(if (i32.eq (memory.grow (i32.const 63)) (i32.const -1)) (then unreachable))
         (if (i32.eq (memory.grow $two (i32.const 63)) (i32.const -1)) (then unreachable))",
    )
    .extra("(memory $two 1)");
    let d = classify(
        &small.policy(Limits::Suite),
        &tx("0.02", "embeddings", "verified"),
    );
    assert!(d.failure.is_none(), "{d:?}");
    host_is_up();
}

/// An answer of `count` reasons, all with the code `answered` and one
/// message: `message_len` bytes at 64 KiB, in a memory of `pages` pages.
fn aliased_reasons(count: u32, message_len: u32, pages: &'static str) -> Wat {
    // Letters up to the size allowed, zeros after: filling megabytes would
    // take more fuel than a policy has.
    let filled = message_len.min(1024);
    Wat::new(format!(
        "(local.set $i (i32.const 0))
         (loop $l
           (local.set $at (i32.add (i32.const 0x4000) (i32.shl (local.get $i) (i32.const 4))))
           (i32.store (local.get $at) (i32.const 0x380))
           (i32.store offset=4 (local.get $at) (i32.const 8))
           (i32.store offset=8 (local.get $at) (i32.const 0x10000))
           (i32.store offset=12 (local.get $at) (i32.const {message_len}))
           (local.set $i (i32.add (local.get $i) (i32.const 1)))
           (br_if $l (i32.lt_u (local.get $i) (i32.const {count}))))
         (memory.fill (i32.const 0x10000) (i32.const 0x61) (i32.const {filled}))
         (i32.store (i32.const 0x308) (i32.const 0x4000))
         (i32.store (i32.const 0x30c) (i32.const {count}))"
    ))
    .locals("(local $i i32) (local $at i32)")
    .memory(pages)
}

#[test]
fn reading_an_answer_costs_no_more_than_the_contract_allows() {
    let kind = "answer";
    // Sixteen reasons (as many as allowed) all pointing at one 12 MiB
    // message: copied out whole, that would be 192 MiB of host memory. The
    // copy stops at the transfer bound.
    let d = contained(
        (kind, "wat: 16 reasons sharing one 12 MiB message"),
        Limits::Suite,
        &aliased_reasons(16, 0xc0_0000, "200").policy(Limits::Suite),
        FailureKind::TransferOversized,
        Tier::Collaborative,
    );
    let detail = d.failure.unwrap().detail;
    assert!(detail.contains("more than 262144 bytes"), "{detail}");
    // 2,000 reasons sharing one message of the largest size allowed: 2 MB
    // copied out, past the same bound.
    let d = contained(
        (kind, "wat: 2,000 reasons sharing one 1 KiB message"),
        Limits::Suite,
        &aliased_reasons(2000, 1024, "2").policy(Limits::Suite),
        FailureKind::TransferOversized,
        Tier::Collaborative,
    );
    let detail = d.failure.unwrap().detail;
    assert!(detail.contains("more than 262144 bytes"), "{detail}");
    // 200 of them fit the bound, and are more than the contract allows.
    let d = contained(
        (kind, "wat: 200 reasons sharing one 1 KiB message"),
        Limits::Suite,
        &aliased_reasons(200, 1024, "2").policy(Limits::Suite),
        FailureKind::DecisionOversized,
        Tier::Collaborative,
    );
    let detail = d.failure.unwrap().detail;
    assert!(detail.contains("200 reasons"), "{detail}");
    // Sixteen of them are a proper answer.
    let d = classify(
        &aliased_reasons(16, 1024, "2").policy(Limits::Suite),
        &tx("0.02", "embeddings", "verified"),
    );
    assert!(d.failure.is_none(), "{d:?}");
    assert_eq!(d.reasons.len(), 16);
    assert!(d.reasons.iter().all(|r| r.message.len() == 1024));
    host_is_up();
}

// ---------------------------------------------------------------------------
// 9. Different answers for the same input.

#[test]
fn the_same_input_always_gets_the_same_answer() {
    let kind = "determinism";
    let t = tx("0.02", "embeddings", "verified");
    let same = |variant: &str, policy: &TenantPolicy| -> Decision {
        let start = Instant::now();
        let first = classify(policy, &t);
        for _ in 0..5 {
            assert_eq!(classify(policy, &t), first, "{variant}");
        }
        // Another thread, another moment: still the same.
        let other = std::thread::scope(|s| s.spawn(|| classify(policy, &t)).join().unwrap());
        assert_eq!(other, first, "{variant}");
        measured(
            kind,
            variant,
            start.elapsed() / 7,
            "same decision x7",
            Some(sandbox(Limits::Suite).limits().timeout),
        );
        first
    };
    // Clocks, environment, arguments, files and hash seeds through WASI.
    let observed = same(
        "rust: reads clock, env, args, files, hash seed",
        &misbehave(Limits::Suite, json!({"mode": "observe"})),
    );
    assert_eq!(
        observed.reasons[0].message,
        "clock_ms=0 env=0 args=0 files=denied"
    );
    // State kept in a `static` starts again with every fresh instance.
    let counted = same(
        "rust: counts calls in a static",
        &misbehave(Limits::Suite, json!({"mode": "static_counter"})),
    );
    assert_eq!(counted.reasons[0].message, "call number 1");
    // The same by hand: a global, memory, the clock, random numbers.
    let wat = [
        (
            "wat: answers a call counter kept in a global",
            Wat::new(
                "(global.set $calls (i32.add (global.get $calls) (i32.const 1)))
                 (i32.store8 (i32.const 0x304) (i32.sub (global.get $calls) (i32.const 1)))",
            )
            .extra("(global $calls (mut i32) (i32.const 0))"),
            Tier::Autonomous,
        ),
        (
            "wat: answers a call counter kept in memory",
            Wat::new(
                "(i32.store (i32.const 0x900) (i32.add (i32.load (i32.const 0x900)) (i32.const 1)))
                 (i32.store8 (i32.const 0x304) (i32.sub (i32.load (i32.const 0x900)) (i32.const 1)))",
            ),
            Tier::Autonomous,
        ),
        (
            "wat: supervised once the clock has moved",
            Wat::new(
                "(if (i64.ne (call $now) (i64.const 0)) (then (i32.store8 (i32.const 0x304) (i32.const 1))))",
            )
            .import(CLOCK),
            Tier::Autonomous,
        ),
        (
            "wat: tier from the low bits of a random number",
            Wat::new(
                "(i32.store8 (i32.const 0x304) (i32.wrap_i64 (i64.rem_u (call $random) (i64.const 3))))",
            )
            .import(RANDOM),
            // Whatever the fixed seed gives, the same each time.
            Tier::Autonomous,
        ),
    ];
    for (variant, wat, tier) in &wat {
        let d = same(variant, &wat.policy(Limits::Suite));
        assert!(d.failure.is_none(), "{variant}: {d:?}");
        if !variant.contains("random") {
            assert_eq!(d.tier, *tier, "{variant}");
        }
    }
    host_is_up();
}

// ---------------------------------------------------------------------------
// 10. Bad artifacts.

/// The name of a load error's kind, for the report.
fn load_kind(e: &LoadError) -> &'static str {
    match e {
        LoadError::Io { .. } => "Io",
        LoadError::NotWasm { .. } => "NotWasm",
        LoadError::TooLarge { .. } => "TooLarge",
        LoadError::CoreModule => "CoreModule",
        LoadError::Precompiled { .. } => "Precompiled",
        LoadError::Invalid(_) => "Invalid",
        LoadError::UnsupportedContract { .. } => "UnsupportedContract",
        LoadError::MissingExport { .. } => "MissingExport",
        LoadError::ForbiddenImport { .. } => "ForbiddenImport",
        LoadError::Link(_) => "Link",
        LoadError::BadMetadata(_) => "BadMetadata",
        LoadError::InvalidConfig(_) => "InvalidConfig",
        LoadError::ConfigCheckFailed(_) => "ConfigCheckFailed",
        LoadError::FailureTierTooLoose(_) => "FailureTierTooLoose",
        LoadError::OverCompileBound { .. } => "OverCompileBound",
        LoadError::CompileFailed(_) => "CompileFailed",
        LoadError::SandboxBusy { .. } => "SandboxBusy",
        _ => "other",
    }
}

/// A bad artifact: what it is, its bytes, and the load error kinds it may
/// get (none listed: a bit flip, which may leave a loadable component).
type Artifact = (String, Vec<u8>, &'static [&'static str]);

/// Bad artifacts, built once.
fn bad_artifacts() -> &'static Vec<Artifact> {
    static ARTIFACTS: OnceLock<Vec<Artifact>> = OnceLock::new();
    ARTIFACTS.get_or_init(|| {
        let seed = tiergate_cli::bundled::get("seed-tiers").unwrap();
        let good_wat = Wat::new("").bytes();
        let mut out: Vec<Artifact> = vec![
            (
                "another world (exports `run`)".into(),
                wat::parse_str(
                    r#"(component
                         (core module $m (func (export "run")))
                         (core instance $i (instantiate $m))
                         (func (export "run") (canon lift (core func $i "run"))))"#,
                )
                .unwrap(),
                &["MissingExport"],
            ),
            (
                "a working policy of contract 0.1.0 exported as contract 0.2.0".into(),
                Wat::new("").export("tiergate:policy/policy@0.2.0").bytes(),
                &["ForbiddenImport"],
            ),
            (
                "a working policy exported as contract 0.3.0".into(),
                Wat::new("").export("tiergate:policy/policy@0.3.0").bytes(),
                &["UnsupportedContract"],
            ),
            (
                "a working policy exported as contract 1.0.0".into(),
                Wat::new("").export("tiergate:policy/policy@1.0.0").bytes(),
                &["UnsupportedContract"],
            ),
            (
                "a core module".into(),
                wat::parse_str(r#"(module (func (export "classify")))"#).unwrap(),
                &["CoreModule"],
            ),
            (
                "a bare core module header".into(),
                b"\0asm\x01\0\0\0".to_vec(),
                &["CoreModule"],
            ),
        ];
        for cut in [
            0,
            3,
            7,
            8,
            9,
            100,
            seed.len() / 4,
            seed.len() / 2,
            seed.len() - 1,
        ] {
            out.push((
                format!("seed-tiers cut to {cut} of {} bytes", seed.len()),
                seed[..cut].to_vec(),
                &["NotWasm", "Invalid", "MissingExport"],
            ));
        }
        // Bit flips at fixed positions spread over the file; a flip that
        // leaves a valid component (in a name or a data byte) is loaded and
        // must still run contained, see `bit_flipped_artifacts_...`.
        for (name, bytes) in [("seed-tiers", seed), ("a wat policy", good_wat.as_slice())] {
            for i in 0..12usize {
                let pos = 8 + (i * 7919 + 104_729) % (bytes.len() - 8);
                let bit = (i * 3) % 8;
                let mut flipped = bytes.to_vec();
                flipped[pos] ^= 1 << bit;
                out.push((
                    format!("{name} with bit {bit} of byte {pos} flipped"),
                    flipped,
                    &[],
                ));
            }
        }
        let engine = wasmtime::Engine::default();
        out.push((
            "a precompiled component (ELF)".into(),
            engine.precompile_component(&good_wat).unwrap(),
            &["Precompiled"],
        ));
        out.push((
            "a precompiled core module (ELF)".into(),
            engine
                .precompile_module(&wat::parse_str("(module)").unwrap())
                .unwrap(),
            &["Precompiled"],
        ));
        out.push((
            "a Mach-O header".into(),
            vec![0xcf, 0xfa, 0xed, 0xfe, 7, 0, 0, 1],
            &["Precompiled"],
        ));
        out.push((
            "a PE header".into(),
            b"MZ\x90\0\x03\0\0\0".to_vec(),
            &["Precompiled"],
        ));
        for import in [
            "wasi:sockets/tcp@0.2.0",
            "wasi:sockets/udp@0.2.0",
            "wasi:sockets/ip-name-lookup@0.2.0",
            "wasi:http/outgoing-handler@0.2.0",
            "wasi:http/types@0.2.0",
            "wasi:cli/run@0.2.0",
            "wasi:filesystem/types@9.9.9",
        ] {
            out.push((
                format!("a policy importing {import}"),
                wat::parse_str(format!(
                    r#"(component
                         (import "{import}" (instance))
                         (instance $p)
                         (export "tiergate:policy/policy@0.1.0" (instance $p)))"#
                ))
                .unwrap(),
                &["ForbiddenImport"],
            ));
        }
        out.push((
            "a policy importing a bare function `evil`".into(),
            wat::parse_str(
                r#"(component
                     (import "evil" (func))
                     (instance $p)
                     (export "tiergate:policy/policy@0.1.0" (instance $p)))"#,
            )
            .unwrap(),
            &["ForbiddenImport"],
        ));
        // 40 MiB of zeros: not wasm at all, and over the size bound.
        out.push(("40 MiB of zeros".into(), vec![0; 40 << 20], &["TooLarge"]));
        out
    })
}

#[test]
fn bad_artifacts_are_refused_at_load_by_name() {
    let kind = "artifact";
    let mut loaded_after_flip = 0;
    for (variant, bytes, kinds) in bad_artifacts() {
        let start = Instant::now();
        let result = sandbox(Limits::Suite).compile(bytes);
        let elapsed = start.elapsed();
        match result {
            Err(e) => {
                let name = load_kind(&e);
                assert!(
                    kinds.is_empty() || kinds.contains(&name),
                    "{variant}: refused as {name}, expected one of {kinds:?}: {e}"
                );
                assert!(!e.to_string().is_empty());
                measured(kind, variant, elapsed, &format!("refused: {name}"), None);
            }
            Ok(compiled) => {
                // Only a bit flip may leave a loadable component, and it runs
                // in the sandbox like any other.
                assert!(kinds.is_empty(), "{variant}: loaded");
                loaded_after_flip += 1;
                let configured = compiled.configure("");
                let outcome = match configured {
                    Err(e) => format!("loaded, configuration refused: {}", load_kind(&e)),
                    Ok(p) => {
                        let d = classify(&p, &tx("0.02", "embeddings", "verified"));
                        format!(
                            "loaded, classified {} ({})",
                            d.tier,
                            d.failure.map_or("no failure", |f| f.kind.code())
                        )
                    }
                };
                measured(kind, variant, elapsed, &outcome, None);
            }
        }
    }
    eprintln!("hostile |   {loaded_after_flip} bit-flipped artifacts still loaded");
    host_is_up();
}

#[test]
fn the_runtime_refuses_a_component_over_its_size_limit() {
    // A valid policy padded with a 40 MiB custom section is over the 32 MiB
    // bound, and is refused before it is compiled.
    let seed = tiergate_cli::bundled::get("seed-tiers").unwrap();
    let mut padded = seed.to_vec();
    let pad = 40usize << 20;
    padded.push(0); // a custom section
    let name = b"padding";
    let mut size = leb128(name.len() + 1 + pad);
    padded.append(&mut size);
    padded.extend(leb128(name.len()));
    padded.extend(name);
    padded.extend(std::iter::repeat_n(0u8, pad));
    let start = Instant::now();
    let loaded = sandbox(Limits::Suite).compile(&padded);
    let elapsed = start.elapsed();
    let outcome = match &loaded {
        Ok(p) => format!(
            "loaded ({} bytes, digest {})",
            padded.len(),
            &p.info().digest[..15]
        ),
        Err(e) => format!("refused: {} ({e})", load_kind(e)),
    };
    measured(
        "artifact",
        "seed-tiers with a 40 MiB custom section, Runtime::compile",
        elapsed,
        &outcome,
        None,
    );
    assert!(
        matches!(loaded, Err(LoadError::TooLarge { .. })),
        "{outcome}"
    );
}

fn leb128(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_uploads_leave_the_active_policy_unchanged() {
    use crate::service::{Served, get, payment, post, try_call};
    let dir = tempfile::tempdir().unwrap();
    let s = Served::start(dir.path(), &[]);
    let admin = s.key("admin");
    let agent = s.key("agent");
    let before = get(&s, "/v1/rules", &admin).await;
    assert_eq!(before.status, 200, "{}", before.text);
    let url = format!("{}/v1/policies", s.base);
    let upload = |bytes: Vec<u8>| {
        let (url, admin) = (url.clone(), admin.clone());
        async move { try_call("POST", &url, Some(&admin), Some("application/wasm"), bytes).await }
    };
    let payment_before = post(
        &s,
        "/v1/authorizations",
        &agent,
        &payment("demo", "before-uploads", "0.02", "embeddings", "verified"),
    )
    .await;
    assert_eq!(payment_before.status, 201, "{}", payment_before.text);
    let (mut invalid, mut too_large) = (0, 0);
    let mut oversize = Vec::new();
    // Just over the 32 MiB limit, and a valid policy padded past it.
    for size in [(32 << 20) + 1, 33 << 20] {
        let mut padded = tiergate_cli::bundled::get("seed-tiers").unwrap().to_vec();
        padded.resize(size, 0);
        oversize.push((format!("seed-tiers padded to {size} bytes"), padded));
    }
    let uploads = bad_artifacts()
        .iter()
        // A bit flip may leave a loadable component.
        .filter(|(_, _, kinds)| !kinds.is_empty())
        .map(|(variant, bytes, _)| (variant.clone(), bytes.clone()))
        .chain(oversize);
    for (variant, bytes) in uploads {
        let r = match upload(bytes.clone()).await {
            Ok(r) => r,
            // Refused by its declared length before it was read: the
            // service may close the connection while the body is still sent.
            Err(e) if bytes.len() > 32 << 20 && e.is_request() => {
                too_large += 1;
                continue;
            }
            Err(e) => panic!("{variant}: the service did not answer: {e}"),
        };
        let code = r.body["error"]["code"].as_str().unwrap_or("");
        let expected = if bytes.len() > 32 << 20 {
            too_large += 1;
            (413, "body_too_large")
        } else {
            invalid += 1;
            (422, "invalid_policy")
        };
        assert_eq!((r.status, code), expected, "{variant}: {}", r.text);
    }
    eprintln!(
        "hostile | artifact       | uploads refused by the service: {invalid} with 422 invalid_policy, {too_large} as too large (413 body_too_large, or closed before the body was read)"
    );
    assert_eq!(
        get(&s, "/v1/rules", &admin).await.body,
        before.body,
        "the rules are unchanged"
    );
    let r = post(
        &s,
        "/v1/authorizations",
        &agent,
        &payment("demo", "after-uploads", "0.02", "embeddings", "verified"),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["tier"], "autonomous", "{}", r.text);
    assert_eq!(
        (&r.body["tier"], &r.body["reasons"]),
        (
            &payment_before.body["tier"],
            &payment_before.body["reasons"]
        ),
        "the same policy decides as before"
    );
}

// ---------------------------------------------------------------------------
// Waiting and oversized questions: both once let a policy reach past its
// limits, through the host.

#[test]
fn a_policy_cannot_make_the_host_generate_megabytes_of_randomness() {
    // wasmtime-wasi would make any length up to 64 MiB in host memory,
    // outside the sandbox's memory cap, in one call neither fuel nor the
    // deadline interrupts; the host serves at most 4 KiB a call.
    let kind = "host call";
    for (variant, call) in [
        ("wat: get-random-bytes of 64 MiB", "$random_bytes"),
        (
            "wat: get-insecure-random-bytes of 64 MiB",
            "$insecure_bytes",
        ),
    ] {
        let d = contained(
            (kind, variant),
            Limits::Defaults,
            &Wat::new(format!(
                "(call {call} (i64.const 0x4000000) (i32.const 0x900))"
            ))
            .import(RANDOM_BYTES)
            .policy(Limits::Defaults),
            FailureKind::Trap,
            Tier::Collaborative,
        );
        let detail = d.failure.unwrap().detail;
        assert!(
            detail.contains("67108864") && detail.contains("4096"),
            "{variant}: the host refused the length before making the bytes: {detail}"
        );
    }
    // Up to the bound a policy gets its bytes, the same every call.
    let d = classify(
        &Wat::new(
            "(call $random_bytes (i64.const 4096) (i32.const 0x900))
             (if (i32.ne (i32.load (i32.const 0x904)) (i32.const 4096)) (then unreachable))",
        )
        .import(RANDOM_BYTES)
        .policy(Limits::Suite),
        &tx("0.02", "embeddings", "verified"),
    );
    assert!(d.failure.is_none(), "{d:?}");
    host_is_up();
}

#[test]
fn a_policy_cannot_sleep_in_a_host_call() {
    // `std::thread::sleep` becomes wasi:clocks `subscribe-duration` plus
    // `pollable.block`; served for real, it would hold the thread and its
    // pool slot past every deadline, where neither fuel nor the epoch reaches.
    let limits = Limits::Defaults;
    let deadline = sandbox(limits).limits().timeout;
    let policy = sandbox(limits)
        .compile_file(fixtures::MISBEHAVE.as_ref())
        .unwrap()
        .configure(&json!({"mode": "sleep", "count": 10_000}).to_string())
        .unwrap();
    let start = Instant::now();
    let d = classify(&policy, &tx("0.02", "embeddings", "verified"));
    let elapsed = start.elapsed();
    measured(
        "host call",
        "rust: thread::sleep(10 s)",
        elapsed,
        &format!("ended: {:?}", d.failure.as_ref().map(|f| f.kind)),
        Some(deadline),
    );
    let failure = d.failure.as_ref().expect("the sleep fails the policy");
    assert_eq!(failure.kind, FailureKind::Trap, "{}", failure.detail);
    assert!(failure.detail.contains("wait"), "{}", failure.detail);
    assert_eq!(d.tier, Tier::Collaborative);
    assert!(elapsed < deadline + MARGIN, "ended after {elapsed:?}");
    host_is_up();
}

#[test]
fn context_questions_cannot_make_the_host_keep_more_than_a_category() {
    let d = contained(
        ("context flood", "wat: agent activity, 15 MiB category each"),
        Limits::Suite,
        &category_flood(15 << 20).policy(Limits::Suite),
        FailureKind::TransferOversized,
        Tier::Collaborative,
    );
    assert_eq!(kept_category_bytes(&d), 0);

    // Through the pipeline, a collaborative payment's enhanced audit record
    // keeps the questions: an oversized one must not reach the store.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tiergate.db");
    let config = tiergate_core::governance::TenantConfig::parse(
        include_str!("../../examples/tenants/acme.toml"),
        std::path::Path::new("acme.toml"),
    )
    .unwrap();
    let governor = tiergate_core::governance::Governor::builder(
        crate::runtime().clone(),
        std::sync::Arc::new(tiergate_sqlite::SqliteStore::open(&db).unwrap()),
    )
    .tenant_with_policy(
        config,
        &category_flood(256 << 10).compile(Limits::Suite).unwrap(),
    )
    .unwrap()
    .build()
    .unwrap();
    let size = || -> u64 {
        std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum()
    };
    let before = size();
    let a = governor
        .authorize_blocking(tx("0.02", "embeddings", "verified"))
        .unwrap();
    let grown = size() - before;
    eprintln!(
        "hostile |   one {} payment, asking about a 256 KiB category, grew the store by {grown} bytes",
        a.tier
    );
    assert_eq!(a.tier, Tier::Collaborative);
    assert!(grown < 256 << 10, "the store grew by {grown} bytes");
}

// ---------------------------------------------------------------------------
// A looping neighbour: each tenant's CPU budget.

#[test]
fn a_tenant_past_its_cpu_budget_gets_its_failure_tier_without_running() {
    // A budget that barely refills: 5 ms of CPU at once, then 1 µs a
    // second. Fuel without end, so the loop burns CPU until its 100 ms
    // deadline, far past the 5 ms.
    let runtime = Runtime::with_limits(SandboxLimits {
        fuel: u64::MAX / 2,
        timeout: Duration::from_millis(100),
        cpu_burst: Duration::from_millis(5),
        cpu_per_second: Duration::from_micros(1),
        ..SandboxLimits::default()
    })
    .unwrap();
    let looping = runtime
        .compile_file(fixtures::MISBEHAVE.as_ref())
        .unwrap()
        .configure(&json!({"mode": "loop"}).to_string())
        .unwrap();
    let healthy = runtime
        .compile(tiergate_cli::bundled::get("seed-tiers").unwrap())
        .unwrap()
        .configure("")
        .unwrap();
    let t = tx("0.02", "embeddings", "verified");
    let first = classify(&looping, &t);
    assert_eq!(first.failure.unwrap().kind, FailureKind::Timeout);
    for _ in 0..3 {
        let d = contained(
            ("cpu budget", "rust: loop, after spending its budget"),
            Limits::Suite,
            &looping,
            FailureKind::CpuBudgetExhausted,
            Tier::Collaborative,
        );
        assert_eq!(d.fuel_used, 0, "it did not run");
        assert!(d.context_reads.is_empty());
        let detail = d.failure.unwrap().detail;
        assert!(detail.contains("5 ms at once"), "{detail}");
    }
    // Another tenant's budget is its own.
    for _ in 0..3 {
        let d = classify(&healthy, &t);
        assert_eq!((d.tier, d.failure), (Tier::Autonomous, None));
    }
    // A budget of zero is no budget.
    let unbounded = Runtime::with_limits(SandboxLimits {
        fuel: u64::MAX / 2,
        timeout: Duration::from_millis(20),
        cpu_per_second: Duration::ZERO,
        cpu_burst: Duration::ZERO,
        ..SandboxLimits::default()
    })
    .unwrap()
    .compile_file(fixtures::MISBEHAVE.as_ref())
    .unwrap()
    .configure(&json!({"mode": "loop"}).to_string())
    .unwrap();
    for _ in 0..2 {
        assert_eq!(
            classify(&unbounded, &t).failure.unwrap().kind,
            FailureKind::Timeout
        );
    }
}

// ---------------------------------------------------------------------------
// Compile bombs: whatever a tenant uploads, the host survives compiling it.

/// One function with `locals` locals, all read and written across
/// `blocks` blocks: what makes a compiler's register allocation blow up.
fn locals_bomb(locals: usize, blocks: usize) -> Wat {
    let mut body = String::with_capacity(blocks * 64);
    for b in 0..blocks {
        let (x, y, z) = (b % locals, (b * 7 + 1) % locals, (b * 13 + 2) % locals);
        body.push_str(&format!(
            "(block (local.set {x} (i64.add (local.get {y}) (local.get {z}))))\n"
        ));
    }
    let locals = "i64 ".repeat(locals);
    let extra = format!("(func $bomb (local {locals}) {body})");
    Wat::new("").extra(Box::leak(extra.into_boxed_str()))
}

/// `count` small functions.
fn functions_bomb(count: usize) -> Wat {
    Wat::new("").extra(Box::leak("(func)\n".repeat(count).into_boxed_str()))
}

/// The two compile bombs, each with the setting of the bound it breaks.
fn compile_bombs() -> &'static [(&'static str, Vec<u8>, &'static str)] {
    static BOMBS: OnceLock<Vec<(&'static str, Vec<u8>, &'static str)>> = OnceLock::new();
    BOMBS.get_or_init(|| {
        vec![
            (
                "one function, 4,000 locals across 20,000 blocks",
                locals_bomb(4_000, 20_000).bytes(),
                "max_locals_blocks",
            ),
            (
                "200,000 small functions",
                functions_bomb(200_000).bytes(),
                "max_functions",
            ),
        ]
    })
}

#[test]
fn a_compile_bomb_is_refused_before_it_is_compiled_naming_the_bound() {
    for (variant, bytes, bound) in compile_bombs() {
        let start = Instant::now();
        let err = sandbox(Limits::Suite)
            .compile(bytes)
            .expect_err("a compile bomb is refused");
        measured(
            "compile bomb",
            variant,
            start.elapsed(),
            &format!("refused: {}", load_kind(&err)),
            None,
        );
        let text = err.to_string();
        assert!(
            matches!(err, LoadError::OverCompileBound { .. }),
            "{variant}: {text}"
        );
        assert!(text.contains(bound), "{variant}: {text}");
    }
    // Within the bounds, the same shapes compile.
    sandbox(Limits::Suite)
        .compile(&locals_bomb(100, 1_000).bytes())
        .expect("a small function with many locals compiles");
    host_is_up();
}

#[test]
fn a_compile_bomb_as_a_tenants_policy_is_refused_naming_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    for (variant, bytes, bound) in compile_bombs() {
        let wasm = dir.path().join("bomb.wasm");
        std::fs::write(&wasm, bytes).unwrap();
        let config = tiergate_core::governance::TenantConfig::parse(
            &crate::pipeline::ACME.replace(
                r#"path = "seed-tiers""#,
                &format!("path = {:?}", wasm.display().to_string()),
            ),
            std::path::Path::new("acme.toml"),
        )
        .unwrap();
        let err = tiergate_core::governance::Governor::builder(
            crate::runtime().clone(),
            std::sync::Arc::new(
                tiergate_sqlite::SqliteStore::open(&dir.path().join("t.db")).unwrap(),
            ),
        )
        .named_policies(tiergate_cli::named_policies())
        .tenant(config)
        .err()
        .unwrap_or_else(|| panic!("{variant}: the tenant was set up"))
        .to_string();
        assert!(err.contains(bound), "{variant}: {err}");
        // The command line says the same and exits 2 (a refused policy),
        // not a crash.
        let out = crate::tiergate_command()
            .args(["eval", "--policy"])
            .arg(&wasm)
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../examples/article-day.jsonl"
            ))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{variant}: {stderr}");
        assert!(stderr.contains(bound), "{variant}: {stderr}");
    }
}

#[test]
fn compiling_in_a_child_process_is_bounded_in_memory_and_time() {
    let child = |compile: CompileLimits| {
        Runtime::with_limits(SandboxLimits {
            compile: CompileLimits {
                child: Some(env!("CARGO_BIN_EXE_tiergate").into()),
                ..compile
            },
            ..SandboxLimits::default()
        })
        .unwrap()
    };
    let seed = tiergate_cli::bundled::get("seed-tiers").unwrap();
    // Compiled by the child, the policy decides as one compiled here.
    let compiled = child(CompileLimits::default())
        .compile(seed)
        .expect("the child compiles seed-tiers");
    let d = classify(
        &compiled.configure("").unwrap(),
        &tx("89.00", "agent_hire", "known"),
    );
    assert_eq!((d.tier, d.failure), (Tier::Collaborative, None));
    // A child out of memory or time fails the load, naming the bound; the
    // host carries on.
    for (variant, limits, says) in [
        (
            "compiling seed-tiers in 32 MiB",
            CompileLimits {
                memory_bytes: 32 << 20,
                ..CompileLimits::default()
            },
            "memory_bytes",
        ),
        (
            "compiling seed-tiers in 1 ms",
            CompileLimits {
                time: Duration::from_millis(1),
                ..CompileLimits::default()
            },
            "1 ms",
        ),
    ] {
        let start = Instant::now();
        let err = child(limits).compile(seed).expect_err(variant).to_string();
        measured("compile bomb", variant, start.elapsed(), "refused", None);
        eprintln!("hostile |   {err}");
        assert!(err.contains(says), "{variant}: {err}");
    }
    // A bomb the static bounds let through (here raised out of its way)
    // ends its child, not the host.
    let (variant, bomb, _) = &compile_bombs()[1];
    let start = Instant::now();
    let err = child(CompileLimits {
        max_functions: u32::MAX,
        time: Duration::from_secs(2),
        ..CompileLimits::default()
    })
    .compile(bomb)
    .expect_err("the child runs out of time")
    .to_string();
    measured(
        "compile bomb",
        &format!("{variant}, past raised static bounds, in a child"),
        start.elapsed(),
        "refused",
        None,
    );
    assert!(err.contains("`compile.time`"), "{err}");
    host_is_up();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uploaded_compile_bomb_is_refused_and_the_service_keeps_answering() {
    use crate::service::{Served, get, payment, post, try_call};
    let dir = tempfile::tempdir().unwrap();
    let s = Served::start(dir.path(), &[]);
    let (admin, agent) = (s.key("admin"), s.key("agent"));
    let url = format!("{}/v1/policies", s.base);
    for (variant, bytes, bound) in compile_bombs() {
        let r = try_call(
            "POST",
            &url,
            Some(&admin),
            Some("application/wasm"),
            bytes.clone(),
        )
        .await
        .unwrap_or_else(|e| panic!("{variant}: the service did not answer: {e}"));
        assert_eq!(r.status, 422, "{variant}: {}", r.text);
        assert!(r.text.contains(bound), "{variant}: {}", r.text);
        let r = post(
            &s,
            "/v1/authorizations",
            &agent,
            &payment(
                "demo",
                &format!("after-{bound}"),
                "0.02",
                "embeddings",
                "verified",
            ),
        )
        .await;
        assert_eq!(
            (r.status, &r.body["tier"]),
            (201, &json!("autonomous")),
            "{}",
            r.text
        );
    }
    assert_eq!(get(&s, "/v1/rules", &admin).await.status, 200);
}

//! One policy in three languages: `seed-tiers` in Rust, Python and
//! TypeScript, each run in the real sandbox, must decide every payment
//! alike, pass the same cases through `tiergate test`, and be as
//! deterministic as the Rust one.
//!
//! The Python and TypeScript components are built by `cargo xtask test`
//! (with componentize-py and componentize-js) into the directory it names
//! in `TIERGATE_GUEST_POLICIES`.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use tiergate_runtime::{
    CompiledPolicy, Decision, Runtime, SandboxLimits, StaticContext, TenantPolicy, Tier,
    Transaction,
};

use crate::{bundled, tiergate_command, with_tier_count};

/// Where `cargo xtask test` built the Python and TypeScript policies.
fn guest_policies() -> PathBuf {
    let dir = std::env::var_os("TIERGATE_GUEST_POLICIES").unwrap_or_else(|| {
        panic!(
            "TIERGATE_GUEST_POLICIES is not set: run the suite with `cargo xtask test`, which builds the Python and TypeScript policies these tests run"
        )
    });
    PathBuf::from(dir)
}

pub(crate) fn component(name: &str) -> PathBuf {
    let path = guest_policies().join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: `cargo xtask test` builds it",
        path.display()
    );
    path
}

/// The default sandbox, with compiled code kept beside the components so a
/// second run loads them in milliseconds.
fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        let runtime = Runtime::with_limits(SandboxLimits {
            // The suite shares two cores between many tests: the wall-clock
            // backstop must not mistake a preempted call for a slow one, and
            // hundreds of decisions in a row in an unoptimized build are not
            // what the per-tenant CPU budget is for.
            timeout: std::time::Duration::from_secs(2),
            cpu_per_second: std::time::Duration::ZERO,
            ..SandboxLimits::default()
        })
        .expect("runtime starts");
        runtime
            .cache_compiled_in(&guest_policies().join("compiled"))
            .expect("cache opens");
        runtime
    })
}

/// `seed-tiers` in each language, compiled once per run.
fn policies() -> &'static [(&'static str, CompiledPolicy); 3] {
    static POLICIES: OnceLock<[(&str, CompiledPolicy); 3]> = OnceLock::new();
    POLICIES.get_or_init(|| {
        let load = |name: &str| {
            runtime()
                .compile_file(&component(name))
                .unwrap_or_else(|e| panic!("{name} loads: {e}"))
        };
        [
            ("rust", bundled("seed-tiers")),
            ("python", load("seed-tiers-py")),
            ("typescript", load("seed-tiers-ts")),
        ]
    })
}

fn configured(config: &str) -> Vec<(&'static str, TenantPolicy)> {
    policies()
        .iter()
        .map(|(language, p)| {
            let tenant = p
                .configure(config)
                .unwrap_or_else(|e| panic!("{language} takes {config}: {e}"));
            (*language, tenant)
        })
        .collect()
}

fn decide(policy: &TenantPolicy, tx: &Transaction, ctx: &StaticContext) -> Decision {
    policy
        .classify_blocking(tx, Arc::new(ctx.clone()))
        .expect("transaction is valid")
}

/// What a decision says, without what names the code that said it.
fn said(d: &Decision) -> (Tier, Vec<(String, String)>, Option<String>) {
    (
        d.tier,
        d.reasons
            .iter()
            .map(|r| (r.code.clone(), r.message.clone()))
            .collect(),
        d.suggestion.clone(),
    )
}

/// A small deterministic generator: the same transactions every run.
struct Lcg(u64);

impl Lcg {
    fn pick<'a, T>(&mut self, from: &'a [T]) -> &'a T {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        &from[(self.0 >> 33) as usize % from.len()]
    }
}

/// The article's day, then `count` payments around every boundary the
/// policy has, each with a context that puts it under or at a cap.
fn transactions(count: usize) -> Vec<(Transaction, StaticContext)> {
    let mut out: Vec<(Transaction, StaticContext)> =
        include_str!("../../examples/article-day.jsonl")
            .lines()
            .map(|line| {
                let tx = Transaction::from_json(line, 1_782_518_400_000).unwrap();
                (tx, StaticContext::default())
            })
            .collect();
    let amounts = [
        "0.01",
        "0.02",
        "0.999",
        "1",
        "1.00",
        "1.001",
        "1.01",
        "4.99",
        "47.00",
        "49.99",
        "50",
        "50.00",
        "50.01",
        "89.00",
        "999.999999",
        "4999.99",
        "5000.00",
        "5000.0000001",
        "5000.01",
        "12000",
    ];
    let categories = [
        "embeddings",
        "search",
        "api_calls",
        "compute",
        "data_access",
        "saas_tools",
        "agent_hire",
        "service_procurement",
        "gambling",
        "unverified_agents",
        "mystery",
    ];
    let trusts = ["verified", "known", "unknown"];
    let jurisdictions = [
        None,
        None,
        None,
        Some("DE"),
        Some("KP"),
        Some("IR"),
        Some("US"),
    ];
    let counts = [
        None,
        Some(("1h", Tier::Autonomous, 999)),
        Some(("1h", Tier::Autonomous, 1000)),
        Some(("1h", Tier::Supervised, 19)),
        Some(("1h", Tier::Supervised, 20)),
        Some(("24h", Tier::Collaborative, 4)),
        Some(("24h", Tier::Collaborative, 5)),
    ];
    let mut rng = Lcg(0x7469_6572_6761_7465);
    for i in 0..count {
        let mut fields = serde_json::json!({
            "id": format!("gen-{i}"), "tenant": "acme", "agent": "procurement-agent-prod",
            "amount": rng.pick(&amounts), "currency": "USDC", "category": rng.pick(&categories),
            "recipient": "vendor.example", "recipient_trust": rng.pick(&trusts),
        });
        if let Some(j) = rng.pick(&jurisdictions) {
            fields["jurisdiction"] = (*j).into();
        }
        let tx = Transaction::from_json(&fields.to_string(), 1_782_518_400_000).unwrap();
        let ctx = match rng.pick(&counts) {
            None => StaticContext::default(),
            Some((window, tier, n)) => with_tier_count(window, *tier, *n),
        };
        out.push((tx, ctx));
    }
    out
}

#[test]
fn seed_tiers_decides_alike_in_rust_python_and_typescript() {
    // The article's configuration, and a tenant's own thresholds and lists.
    let own = r#"{
        "sanctioned_jurisdictions": ["DE"],
        "prohibited_categories": ["mystery"],
        "supervised": {"max_amount": "89.00", "categories": ["agent_hire"],
                       "min_trust": "known", "max_per_window": 20, "window": "1h"}
    }"#;
    // Both served contracts: Rust reads its configuration once per sandbox
    // (0.2.0), Python and TypeScript with every call (0.1.0).
    let contracts: Vec<&str> = policies()
        .iter()
        .map(|(_, p)| p.info().contract.as_str())
        .collect();
    assert_eq!(contracts, ["0.2.0", "0.1.0", "0.1.0"]);
    for config in ["{}", own] {
        let policies = configured(config);
        let mut tiers = std::collections::BTreeMap::new();
        for (tx, ctx) in transactions(300) {
            let (_, rust) = &policies[0];
            let expected = decide(rust, &tx, &ctx);
            assert!(expected.failure.is_none(), "rust: {expected:?}");
            *tiers.entry(expected.tier).or_insert(0) += 1;
            for (language, policy) in &policies[1..] {
                let got = decide(policy, &tx, &ctx);
                assert!(
                    got.failure.is_none(),
                    "{language} failed on {}: {got:?}",
                    tx.id
                );
                assert_eq!(
                    said(&got),
                    said(&expected),
                    "{language} and rust differ on {} under {config}",
                    tx.id
                );
            }
        }
        // The generated payments reach every tier, so the agreement covers all four.
        assert_eq!(tiers.len(), 4, "{tiers:?}");
    }
}

#[test]
fn a_configuration_is_refused_alike_in_every_language() {
    for bad in [
        r#"{"autonomous": {"max_amount": "2.00"}}"#,
        r#"{"sanctioned_jurisdictions": ["fr"]}"#,
        r#"{"sanctioned_jurisdiction": ["FR"]}"#,
        r#"{"collaborative": {"max_amount": 1, "min_trust": "known", "max_per_window": 1, "window": "60d"}}"#,
        r#"{"supervised": {"max_amount": 0, "min_trust": "known", "max_per_window": 1, "window": "1h"}}"#,
        "[1, 2]",
    ] {
        for (language, policy) in policies() {
            let err = policy
                .configure(bad)
                .map(|_| ())
                .expect_err(&format!("{language} takes {bad}"));
            assert!(
                err.to_string().contains("invalid policy configuration"),
                "{language}: {err}"
            );
        }
    }
}

/// The `tiergate` binary, loading the policies from the suite's compiled
/// cache: compiling a Python policy takes tens of seconds in an unoptimized
/// build on a busy machine, past the binary's compile bound.
fn cli_with_compiled_cache() -> std::process::Command {
    policies();
    let mut command = tiergate_command();
    command.env("TIERGATE_COMPILED_CACHE", guest_policies().join("compiled"));
    command
}

#[test]
fn python_and_typescript_pass_the_seed_tiers_cases_through_tiergate_test() {
    let cases = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/seed-tiers-cases.toml"
    );
    for name in ["seed-tiers-py", "seed-tiers-ts"] {
        let out = cli_with_compiled_cache()
            .args(["test", "--policy"])
            .arg(component(name))
            .arg(cases)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{name}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("15 passed, 0 failed"), "{name}: {stdout}");
    }
}

#[test]
fn the_same_input_gets_byte_identical_decisions_across_calls_and_restarts() {
    let tx = Transaction::from_json(
        include_str!("../../examples/article-day.jsonl")
            .lines()
            .nth(4)
            .unwrap(),
        1_782_518_400_000,
    )
    .unwrap();
    for name in ["seed-tiers-py", "seed-tiers-ts"] {
        let bytes = std::fs::read(component(name)).unwrap();
        let json = |runtime: &Runtime| {
            let policy = runtime.compile(&bytes).unwrap().configure("{}").unwrap();
            let ctx = StaticContext::default();
            let first = serde_json::to_string(&decide(&policy, &tx, &ctx)).unwrap();
            let second = serde_json::to_string(&decide(&policy, &tx, &ctx)).unwrap();
            assert_eq!(first, second, "{name}: two calls");
            first
        };
        let before = json(runtime());
        // A restart: another runtime, loading the compiled code from the cache.
        let after = json(&{
            let fresh = Runtime::with_limits(runtime().limits().clone()).unwrap();
            fresh
                .cache_compiled_in(&guest_policies().join("compiled"))
                .unwrap();
            fresh
        });
        assert_eq!(before, after, "{name}: across a restart");
        assert!(before.contains("collaborative_conditions_met"), "{before}");
    }
}

#[test]
fn inspect_names_each_policys_language_toolchain_and_limits() {
    let [(_, rust), (_, python), (_, typescript)] = policies();
    let rust = rust.info();
    assert_eq!(rust.toolchain.as_ref().unwrap().language, "rust");
    assert!(rust.toolchain.as_ref().unwrap().name.starts_with("rustc "));
    assert_eq!(rust.limits.memory_bytes, 16 << 20);
    for (info, language, tool) in [
        (python.info(), "python", "componentize-py 0.25.1"),
        (typescript.info(), "typescript", "componentize-js 0.23.0"),
    ] {
        let toolchain = info.toolchain.as_ref().unwrap();
        assert_eq!(toolchain.language, language);
        assert!(toolchain.name.starts_with(tool), "{toolchain:?}");
        // Raised to what the SDK asks for, within the host's maxima.
        assert_eq!(info.limits.memory_bytes, 32 << 20, "{language}");
        assert_eq!(info.limits.fuel, 25_000_000, "{language}");
    }
    let out = cli_with_compiled_cache()
        .args(["inspect", "--policy"])
        .arg(component("seed-tiers-py"))
        .output()
        .unwrap();
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["toolchain"]["language"], "python", "{shown}");
}

/// The misbehaving fixture in `language`, configured with `mode`.
fn misbehaving(name: &str, mode: &str) -> TenantPolicy {
    static COMPILED: OnceLock<std::sync::Mutex<Vec<(String, CompiledPolicy)>>> = OnceLock::new();
    let compiled = {
        let mut cache = COMPILED.get_or_init(Default::default).lock().unwrap();
        match cache.iter().find(|(n, _)| n == name) {
            Some((_, p)) => p.clone(),
            None => {
                let p = runtime()
                    .compile_file(&component(name))
                    .unwrap_or_else(|e| panic!("{name} loads: {e}"));
                cache.push((name.to_string(), p.clone()));
                p
            }
        }
    };
    compiled
        .configure(&format!(r#"{{"mode": "{mode}"}}"#))
        .unwrap_or_else(|e| panic!("{name} takes mode {mode}: {e}"))
}

fn payment() -> Transaction {
    crate::tx("0.02", "embeddings", "verified")
}

#[test]
fn misbehaving_python_and_typescript_policies_fail_closed() {
    use tiergate_runtime::FailureKind::{
        FuelExhausted, MemoryLimit, PolicyError, TransferOversized, Trap, UndeclaredTier,
    };
    // (fixture, mode, the failure, words its detail holds)
    let cases = [
        ("misbehave-py", "loop", FuelExhausted, "25000000 units"),
        ("misbehave-ts", "loop", FuelExhausted, "25000000 units"),
        ("misbehave-py", "memory_bomb", MemoryLimit, "33554432"),
        (
            "misbehave-py",
            "exception",
            PolicyError,
            "RuntimeError: policy bug: amount 0.02 unexpected",
        ),
        (
            "misbehave-ts",
            "exception",
            PolicyError,
            "Error: policy bug: amount 0.02 unexpected",
        ),
        ("misbehave-py", "recursion", PolicyError, "RecursionError"),
        ("misbehave-py", "float_money", PolicyError, "Inexact"),
        (
            "misbehave-py",
            "huge_message",
            TransferOversized,
            "262144 bytes",
        ),
        // CPython has no clock, file system or entropy at all in the
        // sandbox: asking for one stops the policy.
        ("misbehave-py", "time", Trap, "unreachable"),
        ("misbehave-py", "random", Trap, "unreachable"),
        ("misbehave-py", "files", Trap, "unreachable"),
    ];
    for (name, mode, kind, words) in cases {
        let d = decide(
            &misbehaving(name, mode),
            &payment(),
            &StaticContext::default(),
        );
        let failure = d
            .failure
            .as_ref()
            .unwrap_or_else(|| panic!("{name} / {mode}: no failure in {d:?}"));
        assert_eq!(failure.kind, kind, "{name} / {mode}: {}", failure.detail);
        assert!(
            failure.detail.contains(words),
            "{name} / {mode}: {}",
            failure.detail
        );
        assert_eq!(
            d.tier,
            Tier::Collaborative,
            "{name} / {mode}: the failure tier"
        );
    }
    // An undeclared tier keeps the stricter of the two.
    for name in ["misbehave-py", "misbehave-ts"] {
        let d = decide(
            &misbehaving(name, "undeclared_tier"),
            &payment(),
            &StaticContext::default(),
        );
        assert_eq!(d.failure.unwrap().kind, UndeclaredTier, "{name}");
        assert_eq!(d.tier, Tier::Prohibited, "{name}");
    }
    // StarlingMonkey zeroes what it allocates, and wasmtime charges that
    // fuel by the byte: a TypeScript policy building a huge string or
    // hoarding memory runs out of fuel before it can pass its 32 MiB.
    for mode in ["huge_message", "memory_bomb"] {
        let d = decide(
            &misbehaving("misbehave-ts", mode),
            &payment(),
            &StaticContext::default(),
        );
        let kind = d.failure.as_ref().map(|f| f.kind);
        assert!(
            matches!(kind, Some(FuelExhausted | MemoryLimit)),
            "{mode}: {d:?}"
        );
        assert_eq!(d.tier, Tier::Collaborative);
    }
}

#[test]
fn time_randomness_and_environment_are_the_same_every_call() {
    // TypeScript reads the host's frozen clock; its randomness is seeded
    // when the component is built; Python's environment is empty.
    for (name, mode, expected) in [
        ("misbehave-ts", "time", Some("0 0")),
        ("misbehave-ts", "random", None),
        ("misbehave-py", "environment", Some("[] /")),
    ] {
        let policy = misbehaving(name, mode);
        let first = decide(&policy, &payment(), &StaticContext::default());
        assert!(first.failure.is_none(), "{name} / {mode}: {first:?}");
        if let Some(expected) = expected {
            assert_eq!(first.reasons[0].message, expected, "{name} / {mode}");
        }
        let mut later = payment();
        later.requested_at_ms += 86_400_000;
        for tx in [payment(), later] {
            let again = decide(&policy, &tx, &StaticContext::default());
            assert_eq!(
                again.reasons[0].message, first.reasons[0].message,
                "{name} / {mode}: another call"
            );
        }
    }
}

/// A restart on a host that has not compiled a tenant's Python policy (a
/// new replica, a cleared cache) serves at once: that tenant is refused
/// with why while its policy compiles in the background, every other
/// tenant is served, and then the tenant is served on the rules it had,
/// with nothing recorded anew.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_compiling_after_a_restart_holds_up_no_one() {
    use crate::service::{Served, create_key, get, payment, post, tenant_file};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let acme = tenant_file(dir.path(), "acme", &[]);
    let args = ["--tenant", acme.to_str().unwrap()];
    let s = Served::start(&data, &args);
    let admin = s.key("admin");
    let wasm = std::fs::read(component("seed-tiers-py")).unwrap();
    let r = crate::service::call(
        "POST",
        &format!("{}/v1/policies", s.base),
        Some(&admin),
        Some("application/wasm"),
        wasm,
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let digest = r.body["digest"].as_str().unwrap().to_string();
    let demo = include_str!("../../host/server/src/demo-tenant.toml");
    let r = post(
        &s,
        "/v1/rules",
        &admin,
        &serde_json::json!({"policy": digest, "config": demo}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let version = r.body["rules"]["version"].clone();
    let hire = |id: &str| payment("demo", id, "89.00", "agent_hire", "known");
    let r = post(&s, "/v1/authorizations", &s.key("agent"), &hire("before")).await;
    assert_eq!(r.body["tier"], "collaborative", "{}", r.text);
    assert!(s.terminate().success());

    // The Python policy's machine code is gone from this host; acme's is kept.
    let hex = digest.trim_start_matches("sha256:");
    let mut removed = 0;
    for file in std::fs::read_dir(data.join("compiled")).unwrap() {
        let path = file.unwrap().path();
        if path.file_name().unwrap().to_str().unwrap().starts_with(hex) {
            std::fs::remove_file(path).unwrap();
            removed += 1;
        }
    }
    assert_eq!(removed, 1);

    let s = Served::start(&data, &args);
    let acme_agent = create_key(&data, "acme", "agent", None);
    let r = post(&s, "/v1/authorizations", &s.key("agent"), &hire("early")).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (503, Some("rules_unavailable")),
        "{}",
        r.text
    );
    assert!(r.text.contains("still being compiled"), "{}", r.text);
    let r = post(
        &s,
        "/v1/authorizations",
        &acme_agent,
        &payment("acme", "meanwhile", "0.02", "embeddings", "verified"),
    )
    .await;
    assert_eq!(
        (r.status, r.body["tier"].as_str()),
        (201, Some("autonomous")),
        "{}",
        r.text
    );

    // Served once compiled, on the same rules.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    let served = loop {
        let r = post(&s, "/v1/authorizations", &s.key("agent"), &hire("after")).await;
        if r.status != 503 {
            break r;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still refused: {}",
            r.text
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    };
    assert_eq!(
        (served.status, served.body["tier"].as_str()),
        (201, Some("collaborative")),
        "{}",
        served.text
    );
    let rules = get(&s, "/v1/rules", &admin).await;
    assert_eq!(rules.body["rules"]["version"], version, "{}", rules.text);
    let verified = get(&s, "/v1/audit/verify", &s.key("auditor")).await;
    assert_eq!(verified.body["ok"], true, "{}", verified.text);
}

//! The properties the fuzz targets check, one function per target. The
//! end-to-end suite includes this file too (`tests/all/fuzz_corpus.rs`) and
//! replays the committed corpus through it, so an input the fuzzer once
//! found keeps failing `cargo test` if the bug comes back.
//!
//! Each function takes raw bytes, panics when a property breaks, and says
//! whether the input was accepted (the replay uses that to check that the
//! corpus reaches past the refusals). An input being refused is never a
//! failure, only how it is refused.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::value::RawValue;
use tiergate_core::governance::{ApprovalMode, TenantConfig};
use tiergate_runtime::{Decimal, Runtime, SandboxLimits, StaticContext, Tier, Transaction};

/// The CLI's reader of JSON documents, JSON Lines and arrays (a private
/// module of the binary), taken as it is so the fuzzer drives the real code.
#[allow(dead_code)]
#[path = "../../host/cli/src/cli/input.rs"]
mod cli_input;

/// The host's clock for transactions without `requested_at_ms`.
pub const NOW_MS: u64 = 1_782_518_400_000;

/// The name configuration errors must carry.
const CONFIG_PATH: &str = "fuzz/tenant.toml";

/// A payment body, as the service reads it (the whole body) and as the CLI
/// reads a file (each JSON value in it). Either way: a transaction or an
/// error, an accepted amount read exactly, and an accepted transaction
/// written out and read back unchanged.
pub fn transaction(bytes: &[u8]) -> bool {
    // Both the service and the CLI refuse text that is not UTF-8 before
    // parsing; there is nothing more to check for such bytes.
    let Ok(text) = std::str::from_utf8(bytes) else {
        return false;
    };
    let mut accepted = one_transaction(text);
    for value in cli_input::json_values(text) {
        match value {
            Ok((line, raw)) => {
                assert!(line >= 1 && line <= text.lines().count().max(1));
                accepted |= one_transaction(raw);
            }
            Err(message) => assert!(
                message.starts_with("malformed JSON") || message.starts_with("line "),
                "{message}"
            ),
        }
    }
    accepted
}

fn one_transaction(text: &str) -> bool {
    let tx = match Transaction::from_json(text, NOW_MS) {
        Ok(tx) => tx,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            let not_json = serde_json::from_str::<serde_json::Value>(text).is_err();
            assert_eq!(
                e.is_syntax(),
                not_json,
                "a syntax error is exactly a text that is not JSON: {e}"
            );
            return false;
        }
    };
    assert!(tx.amount > Decimal::ZERO, "accepted amount {}", tx.amount);
    assert_eq!(tx.validate(), Ok(()));

    // The amount is what was written, digits and scale, never a float's
    // approximation of it.
    let members: BTreeMap<String, &RawValue> =
        serde_json::from_str(text).expect("an accepted transaction is a JSON object");
    let raw = members["amount"].get();
    let written = match serde_json::from_str::<String>(raw) {
        Ok(quoted) => quoted,
        Err(_) => raw.to_string(),
    };
    let exact = tiergate_runtime::parse_decimal(&written)
        .unwrap_or_else(|e| panic!("accepted amount {raw} is not in the grammar: {e}"));
    assert_eq!(exact, tx.amount, "amount {raw}");
    assert_eq!(exact.scale(), tx.amount.scale(), "scale of amount {raw}");

    // Written out and read back: the same transaction, the same amount text.
    let json = serde_json::to_string(&tx).expect("an accepted transaction serializes");
    let again = Transaction::from_json(&json, 0)
        .unwrap_or_else(|e| panic!("{json} was written by tiergate but is refused: {e}"));
    assert_eq!(again, tx);
    assert_eq!(again.amount.to_string(), tx.amount.to_string());
    assert_eq!(again.currency, tx.currency);
    true
}

/// A tenant configuration file: refused with an error naming the file, or
/// accepted with every guarantee the governor relies on, and read the same
/// after a trip through TOML's data model.
pub fn tenant_config(bytes: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return false;
    };
    let path = Path::new(CONFIG_PATH);
    let config = match TenantConfig::parse(text, path) {
        Ok(config) => config,
        Err(e) => {
            assert!(e.to_string().contains(CONFIG_PATH), "{e}");
            return false;
        }
    };
    accepted_config_holds(&config);

    let table: toml::Table = toml::from_str(text).expect("an accepted configuration is TOML");
    let rewritten = toml::to_string(&table).expect("a TOML table serializes");
    let again = TenantConfig::parse(&rewritten, path)
        .unwrap_or_else(|e| panic!("rewritten as\n{rewritten}\nit is refused: {e}"));
    assert_eq!(without_digest(&again), without_digest(&config));
    true
}

fn accepted_config_holds(config: &TenantConfig) {
    assert!(config.digest.starts_with("sha256:"), "{}", config.digest);
    assert!(!config.owners.is_empty());
    assert!((5..=10).contains(&config.retention_years));
    assert!(config.failure_tier >= Tier::Collaborative);
    assert!(!config.policy.path.is_empty());
    let policy_config = config
        .policy_config_json()
        .expect("an accepted policy configuration converts to JSON");
    if !policy_config.is_empty() {
        let value: serde_json::Value =
            serde_json::from_str(&policy_config).expect("the policy's configuration is JSON");
        assert!(value.is_object());
    }
    for tier in Tier::ALL {
        let rule = config.tiers.rule(tier);
        assert_eq!(
            rule.approval == ApprovalMode::Blocked,
            tier == Tier::Prohibited,
            "{tier} is approved by {:?}",
            rule.approval
        );
        if rule.approval == ApprovalMode::ExplicitHuman {
            assert!(rule.timeout.is_some_and(|t| t.as_millis() > 0));
            let needed = rule
                .approvers
                .unwrap_or(1)
                .max(if rule.four_eyes_above.is_some() { 2 } else { 1 });
            assert!(needed as usize <= config.owners.len());
        }
    }
    let g = &config.guardrails;
    let teams = config.teams.iter().map(|t| &t.daily_budget);
    for limit in [
        &g.max_per_transaction,
        &g.agent_daily_budget,
        &g.tenant_daily_budget,
    ]
    .into_iter()
    .flatten()
    .chain(teams)
    {
        assert!(limit.limit > Decimal::ZERO);
        assert!(limit.escalate_to > Tier::Autonomous);
    }
}

fn without_digest(config: &TenantConfig) -> String {
    let mut config = config.clone();
    config.digest.clear();
    format!("{config:?}")
}

/// The runtime the policy target compiles with: the default limits, but a
/// wall-clock backstop long enough that a busy machine does not turn a
/// slow compile into a different outcome. Fuel bounds the policy itself.
pub fn runtime() -> Runtime {
    Runtime::with_limits(SandboxLimits {
        timeout: Duration::from_secs(5),
        ..SandboxLimits::default()
    })
    .expect("the runtime starts")
}

/// Policy bytes: refused with a typed error, or loaded with sane metadata;
/// a loaded policy that takes an empty configuration classifies a valid
/// payment to a declared tier, or fails closed to the failure tier.
pub fn policy_load(runtime: &Runtime, bytes: &[u8]) -> bool {
    let policy = match runtime.compile(bytes) {
        Ok(policy) => policy,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return false;
        }
    };
    let info = policy.info();
    assert!(!info.name.is_empty() && !info.version.is_empty());
    assert!(!info.tiers.is_empty());
    assert!(
        info.tiers.windows(2).all(|w| w[0] < w[1]),
        "{:?}",
        info.tiers
    );
    assert!(info.digest.starts_with("sha256:"));

    let Ok(tenant) = policy.configure("") else {
        return true;
    };
    let decision = tenant
        .classify_blocking(&payment(), Arc::new(StaticContext::default()))
        .expect("a valid transaction is classified");
    match &decision.failure {
        None => assert!(
            info.tiers.contains(&decision.tier),
            "{} is not declared",
            decision.tier
        ),
        Some(failure) => {
            assert!(decision.tier >= tenant.failure_tier(), "{failure:?}");
            assert!(decision.reasons[0].code.starts_with("policy_"));
        }
    }
    true
}

fn payment() -> Transaction {
    Transaction::from_json(
        r#"{"id": "tx-1", "tenant": "acme", "agent": "procurement-agent-prod",
            "amount": "89.00", "currency": "USDC", "category": "agent_hire",
            "recipient": "vendor.example", "recipient_trust": "known"}"#,
        NOW_MS,
    )
    .expect("the sample payment is valid")
}

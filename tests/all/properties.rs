//! Properties over generated input: whatever an agent or a tenant sends,
//! the host answers with a value or a clear error, never a panic, and what
//! it accepts it reads exactly.

use std::path::Path;

use proptest::prelude::*;
use tiergate_core::governance::TenantConfig;
use tiergate_runtime::Transaction;

const NOW: u64 = 1_782_518_400_000;

/// A decimal amount as an agent might write it: digits, maybe a point and
/// up to 8 decimals; below 1; or up to the 28 digits a decimal holds.
fn amount() -> impl Strategy<Value = String> {
    prop_oneof![
        (1u64..10_000_000_000, 0u32..9).prop_map(|(n, scale)| {
            let digits = n.to_string();
            if scale == 0 || (scale as usize) >= digits.len() {
                digits
            } else {
                let (int, frac) = digits.split_at(digits.len() - scale as usize);
                format!("{int}.{frac}")
            }
        }),
        "0\\.[0-9]{0,26}[1-9]",
        "[1-9][0-9]{0,14}\\.[0-9]{1,13}",
    ]
}

fn word() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_.-]{0,20}"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Any text at all: a transaction or an error, never a panic.
    #[test]
    fn any_text_is_a_transaction_or_a_clear_error(text in ".{0,300}") {
        if let Err(e) = Transaction::from_json(&text, NOW) {
            prop_assert!(!e.to_string().is_empty());
        }
    }

    /// A valid transaction with members dropped, replaced by plausible or
    /// implausible values, or added: either a transaction whose every field
    /// is what was sent, or an error naming one of the members touched.
    #[test]
    fn any_json_object_is_a_transaction_or_an_error_naming_what_is_wrong(
        dropped in proptest::collection::btree_set(0..PAYMENT_FIELDS.len(), 0..3),
        changed in proptest::collection::btree_map(
            prop_oneof![
                (0..PAYMENT_FIELDS.len()).prop_map(|i| PAYMENT_FIELDS[i].to_string()),
                "[a-z]{1,8}",
            ],
            prop_oneof![
                any::<i64>().prop_map(|n| serde_json::json!(n)),
                any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| serde_json::json!(f)),
                ".{0,40}".prop_map(|s| serde_json::json!(s)),
                word().prop_map(|s| serde_json::json!(s)),
                amount().prop_map(|s| serde_json::json!(s)),
                Just(serde_json::json!(null)),
                Just(serde_json::json!({"k": "v"})),
                Just(serde_json::json!(["x"])),
            ],
            0..4,
        )
    ) {
        let mut members = serde_json::json!({
            "id": "tx-1", "tenant": "acme", "agent": "procurement-agent", "amount": "89.00",
            "currency": "USDC", "category": "agent_hire", "recipient": "analysis-agent.example",
            "recipient_trust": "known", "justification": "a report",
        });
        let object = members.as_object_mut().unwrap();
        let mut touched: Vec<String> = Vec::new();
        for i in &dropped {
            let name = PAYMENT_FIELDS[*i];
            if object.remove(name).is_some() {
                touched.push(name.to_string());
            }
        }
        for (name, value) in &changed {
            object.insert(name.clone(), value.clone());
            touched.push(name.clone());
        }
        let text = serde_json::to_string(&members).unwrap();
        match Transaction::from_json(&text, NOW) {
            Ok(tx) => {
                prop_assert!(tx.amount > rust_decimal::Decimal::ZERO);
                // What was accepted is what was sent.
                let back = serde_json::to_value(&tx).unwrap();
                use unicode_normalization::UnicodeNormalization;
                for name in ["id", "tenant", "agent", "currency", "category", "recipient"] {
                    let sent: Option<String> = members[name].as_str().map(|s| s.nfc().collect());
                    prop_assert_eq!(back[name].as_str(), sent.as_deref(), "{}: {}", name, text);
                }
                if let Some(amount) = members["amount"].as_str() {
                    prop_assert_eq!(back["amount"].as_str(), Some(amount));
                }
            }
            Err(e) => {
                prop_assert!(!touched.is_empty(), "the untouched transaction is valid: {}", e);
                let field = e.field.clone().unwrap_or_default();
                let root = field.split(['.', '[']).next().unwrap_or_default();
                prop_assert!(
                    touched.iter().any(|t| t == root) || (root == "metadata key" && touched.contains(&"metadata".to_string())),
                    "{} names `{}`, not one of {:?}: {}", e, field, touched, text
                );
            }
        }
    }

    /// A valid transaction, its amount written as a string or as a bare JSON
    /// number, reads to the same exact decimal and round-trips.
    #[test]
    fn valid_transactions_are_read_exactly_and_round_trip(
        id in "[a-z0-9-]{1,30}", agent in word(), category in word(), recipient in word(),
        amount in amount(), trust in prop_oneof![Just("verified"), Just("known"), Just("unknown")],
        as_number in any::<bool>(),
    ) {
        let written = if as_number { amount.clone() } else { format!("\"{amount}\"") };
        let text = format!(
            r#"{{"id":"{id}","tenant":"acme","agent":"{agent}","amount":{written},"currency":"USDC","category":"{category}","recipient":"{recipient}","recipient_trust":"{trust}"}}"#
        );
        let tx = Transaction::from_json(&text, NOW).unwrap();
        prop_assert_eq!(tx.amount.to_string(), amount);
        prop_assert_eq!(tx.requested_at_ms, NOW);
        let again = Transaction::from_json(&serde_json::to_string(&tx).unwrap(), 0).unwrap();
        prop_assert_eq!(again, tx);
    }

    /// Any text as a tenant configuration: parsed, or refused with a message
    /// naming the file; never a panic.
    #[test]
    fn any_text_is_a_tenant_configuration_or_a_clear_error(text in ".{0,400}") {
        if let Err(e) = TenantConfig::parse(&text, Path::new("tenant.toml")) {
            prop_assert!(e.to_string().contains("tenant.toml"), "{}", e);
        }
    }

    /// The example configuration with one value replaced by generated text.
    #[test]
    fn a_mangled_example_configuration_is_refused_by_name_or_read(
        key in prop_oneof![
            Just("currency"), Just("failure_tier"), Just("veto_window"), Just("timeout"),
            Just("four_eyes_above"), Just("approval"), Just("audit"),
        ],
        value in "[ -~]{0,12}",
    ) {
        let example = include_str!("../../examples/tenants/acme.toml");
        let mangled: String = example
            .lines()
            .map(|l| {
                if l.trim_start().starts_with(&format!("{key} =")) {
                    format!("{key} = {:?}", value)
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        if let Err(e) = TenantConfig::parse(&mangled, Path::new("acme.toml")) {
            prop_assert!(e.to_string().contains("acme.toml"), "{}", e);
        }
    }
}

/// A JSON value an agent might put in a field: right, wrong or absurd. Raw
/// number text stays raw, so exponents and 30-digit decimals reach the parser.
#[derive(Debug, Clone)]
enum Field {
    Missing,
    Json(serde_json::Value),
    RawNumber(String),
}

fn field() -> impl Strategy<Value = Field> {
    use serde_json::{Value, json};
    prop_oneof![
        Just(Field::Missing),
        Just(Field::Json(Value::Null)),
        any::<bool>().prop_map(|b| Field::Json(b.into())),
        any::<i64>().prop_map(|n| Field::Json(n.into())),
        "-?[0-9]{1,30}(\\.[0-9]{1,30})?([eE]-?[0-9]{1,3})?".prop_map(Field::RawNumber),
        amount().prop_map(|a| Field::Json(a.into())),
        ".{0,80}".prop_map(|s| Field::Json(s.into())),
        "x{60,80}".prop_map(|s| Field::Json(s.into())),
        Just(Field::Json(json!([]))),
        Just(Field::Json(json!({"nested": {"deep": [1, "two"]}}))),
        Just(Field::Json(json!({"k": "v", "a": "b"}))),
    ]
}

const PAYMENT_FIELDS: &[&str] = &[
    "id",
    "tenant",
    "agent",
    "amount",
    "currency",
    "category",
    "recipient",
    "recipient_trust",
    "justification",
    "jurisdiction",
    "network",
    "metadata",
    "self_hosted_wallet",
    "requested_at_ms",
    "an_unknown_field",
];

/// Whatever body an agent posts to the service, the answer is a recorded
/// decision or a JSON error with a code and a message (never a server
/// error), and an amount the service accepts is stored exactly as sent.
#[test]
fn any_payment_body_gets_a_decision_or_a_clear_error() {
    use crate::service::{Served, call, payment};

    let dir = tempfile::tempdir().unwrap();
    let s = Served::start(dir.path(), &[]);
    let agent = s.key("agent");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cases = (
        "[a-z0-9]{1,10}",
        amount(),
        prop::collection::vec((0..PAYMENT_FIELDS.len(), field()), 0..3),
        prop::option::weighted(0.1, ".{0,200}"),
    );
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(150));
    runner
        .run(&cases, |(id, amount, mutations, raw_text)| {
            let mut body = payment(
                "demo",
                &format!("p-{id}"),
                &amount,
                "embeddings",
                "verified",
            );
            let mut raw = Vec::new();
            for (i, (index, value)) in mutations.iter().enumerate() {
                let name = PAYMENT_FIELDS[*index];
                match value {
                    Field::Missing => {
                        body.as_object_mut().unwrap().remove(name);
                    }
                    Field::Json(v) => body[name] = v.clone(),
                    Field::RawNumber(text) => {
                        let marker = format!("__raw_{i}__");
                        body[name] = marker.clone().into();
                        raw.push((format!("\"{marker}\""), text.clone()));
                    }
                }
            }
            let mut text = body.to_string();
            for (marker, number) in &raw {
                text = text.replace(marker, number);
            }
            let text = raw_text.unwrap_or(text);
            let r = runtime.block_on(call(
                "POST",
                &format!("{}/v1/authorizations", s.base),
                Some(&agent),
                Some("application/json"),
                text.clone(),
            ));
            match r.status {
                200 | 201 => {
                    prop_assert!(r.body["tier"].is_string(), "{text} -> {}", r.text);
                    // An untouched string amount comes back exactly as sent.
                    let sent = serde_json::from_str::<serde_json::Value>(&text)
                        .ok()
                        .and_then(|v| v["amount"].as_str().map(str::to_string));
                    if let (201, Some(sent)) = (r.status, sent) {
                        prop_assert_eq!(
                            r.body["transaction"]["amount"].as_str(),
                            Some(sent.as_str()),
                            "{}",
                            r.text
                        );
                    }
                }
                400 | 403 | 409 | 413 | 415 | 422 => {
                    let error = &r.body["error"];
                    prop_assert!(
                        error["code"].as_str().is_some_and(|c| !c.is_empty())
                            && error["message"].as_str().is_some_and(|m| !m.is_empty()),
                        "{text} -> {} {}",
                        r.status,
                        r.text
                    );
                }
                other => prop_assert!(false, "{text} -> {other} {}", r.text),
            }
            Ok(())
        })
        .unwrap();
}

/// Amounts at the edges: the smallest, ones needing every digit, the
/// largest allowed, just over it, and the largest a decimal holds.
fn extreme_amount() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("0.0000000000000000000000000001".to_string()),
        Just("0.0000000001".to_string()),
        Just("999999999999999.9999999999999".to_string()),
        Just("1000000000000000".to_string()),
        Just("1000000000000000.0000000000001".to_string()),
        Just("79228162514264337593543950335".to_string()),
        "[1-9][0-9]{0,14}\\.[0-9]{1,13}",
        "0\\.[0-9]{0,27}[1-9]",
        amount(),
    ]
}

/// The exact sum of non-negative decimal texts, with as many decimals as
/// the longest, schoolbook style: the reference the report is checked
/// against.
fn exact_sum<'a>(amounts: impl IntoIterator<Item = &'a str>) -> String {
    let amounts: Vec<(&str, &str)> = amounts
        .into_iter()
        .map(|a| a.split_once('.').unwrap_or((a, "")))
        .collect();
    let scale = amounts.iter().map(|(_, f)| f.len()).max().unwrap_or(0);
    let width = amounts.iter().map(|(w, _)| w.len()).max().unwrap_or(1) + 4;
    let mut digits = vec![0u32; width + scale];
    for (whole, fraction) in amounts {
        let text = format!("{whole:0>width$}{fraction:0<scale$}");
        let mut carry = 0;
        for (d, c) in digits.iter_mut().rev().zip(text.bytes().rev()) {
            let sum = *d + u32::from(c - b'0') + carry;
            *d = sum % 10;
            carry = sum / 10;
        }
        assert_eq!(carry, 0);
    }
    let text: String = digits.iter().map(|d| char::from(b'0' + *d as u8)).collect();
    let (whole, fraction) = text.split_at(width);
    let whole = whole.trim_start_matches('0');
    let whole = if whole.is_empty() { "0" } else { whole };
    if scale == 0 {
        whole.to_string()
    } else {
        format!("{whole}.{fraction}")
    }
}

/// The largest amount a payment may have.
const MAX_AMOUNT: &str = "1000000000000000";

/// Extreme amounts through authorize, the daily report, the export and a
/// simulation, on both stores: each amount is refused naming the field and
/// the bound, or decided; the report's totals add up to the exact sum of
/// what was accepted; every row exports as stored; nothing fails or panics.
fn extreme_amounts_are_decided_reported_exported_and_simulated_exactly(kind: crate::stores::Kind) {
    use crate::pipeline::{ACME, World};

    let bound = tiergate_runtime::parse_decimal(MAX_AMOUNT).unwrap();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(6));
    runner
        .run(
            &proptest::collection::vec(extreme_amount(), 1..6),
            |amounts| {
                let w = World::on(kind, ACME);
                let mut accepted = Vec::new();
                for (i, amount) in amounts.iter().enumerate() {
                    let mut tx = w.tx(&format!("x{i}"), "1.00", "compute", "known");
                    tx.amount = tiergate_runtime::parse_decimal(amount).unwrap();
                    let over = tx.amount > bound;
                    match w.governor().authorize_blocking(tx) {
                        Ok(a) => {
                            prop_assert!(!over, "{amount} was accepted: {a:?}");
                            prop_assert_eq!(a.transaction.amount.to_string(), amount.clone());
                            accepted.push(amount.as_str());
                        }
                        Err(e) => {
                            let message = e.to_string();
                            prop_assert!(over, "{amount}: {message}");
                            prop_assert!(
                                message.contains("`amount`") && message.contains(MAX_AMOUNT),
                                "{message}"
                            );
                        }
                    }
                }
                let store = w.store().as_ref();
                let report = tiergate_core::audit::daily_report(store, "acme", NOW).unwrap();
                let totals: Vec<String> = report
                    .by_tier
                    .values()
                    .map(|t| t.total.to_string())
                    .collect();
                let reported = exact_sum(totals.iter().map(String::as_str));
                let expected = exact_sum(accepted.iter().copied());
                let trim = |s: &str| {
                    if s.contains('.') {
                        s.trim_end_matches('0').trim_end_matches('.').to_string()
                    } else {
                        s.to_string()
                    }
                };
                prop_assert_eq!(trim(&reported), trim(&expected));
                let count: u64 = report.by_tier.values().map(|t| t.count).sum();
                prop_assert_eq!(count, accepted.len() as u64);
                let mut exported: Vec<String> =
                    tiergate_core::audit::matching(store, "acme", &Default::default())
                        .map(|a| tiergate_core::audit::ExportRow::from(&a.unwrap()).amount)
                        .collect();
                exported.sort();
                let mut stored: Vec<String> = accepted.iter().map(|a| a.to_string()).collect();
                stored.sort();
                prop_assert_eq!(exported, stored);
                let simulated = tiergate_core::audit::simulate(
                    store,
                    "acme",
                    &crate::seed_tiers(),
                    0,
                    u64::MAX,
                )
                .unwrap();
                prop_assert_eq!(simulated.payments, accepted.len() as u64);
                Ok(())
            },
        )
        .unwrap();
}

crate::stores::on_both_stores!(extreme_amounts_are_decided_reported_exported_and_simulated_exactly);

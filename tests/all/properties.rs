//! Properties over generated input: whatever an agent or a tenant sends,
//! the host answers with a value or a clear error, never a panic, and what
//! it accepts it reads exactly.

use std::path::Path;

use proptest::prelude::*;
use tiergate::Transaction;
use tiergate::governance::TenantConfig;

const NOW: u64 = 1_782_518_400_000;

/// A decimal amount as an agent might write it: digits, maybe a point and
/// up to 8 decimals.
fn amount() -> impl Strategy<Value = String> {
    (1u64..10_000_000_000, 0u32..9).prop_map(|(n, scale)| {
        let digits = n.to_string();
        if scale == 0 || (scale as usize) >= digits.len() {
            digits
        } else {
            let (int, frac) = digits.split_at(digits.len() - scale as usize);
            format!("{int}.{frac}")
        }
    })
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

    /// JSON objects with plausible and implausible members.
    #[test]
    fn any_json_object_is_a_transaction_or_an_error_naming_what_is_wrong(
        members in proptest::collection::btree_map(
            prop_oneof![
                Just("id".to_string()), Just("tenant".to_string()), Just("agent".to_string()),
                Just("amount".to_string()), Just("currency".to_string()), Just("category".to_string()),
                Just("recipient".to_string()), Just("recipient_trust".to_string()),
                Just("jurisdiction".to_string()), Just("metadata".to_string()), "[a-z]{1,8}",
            ],
            prop_oneof![
                any::<i64>().prop_map(|n| serde_json::json!(n)),
                any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| serde_json::json!(f)),
                ".{0,40}".prop_map(|s| serde_json::json!(s)),
                Just(serde_json::json!(null)),
                Just(serde_json::json!({"k": "v"})),
                Just(serde_json::json!(["x"])),
            ],
            0..12,
        )
    ) {
        let text = serde_json::to_string(&members).unwrap();
        match Transaction::from_json(&text, NOW) {
            Ok(tx) => prop_assert!(tx.amount > rust_decimal::Decimal::ZERO),
            Err(e) => prop_assert!(!e.to_string().is_empty()),
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

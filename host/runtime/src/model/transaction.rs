//! The payment an agent asks to make, and the checks it must pass before any
//! policy sees it.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tiergate_policy::RecipientTrust;

use super::money;
use super::text::{is_bidi_control, is_format, nfc};

/// A payment an agent asks to make.
///
/// Read it from JSON with [`Transaction::from_json`], which checks every
/// field; amounts may be JSON strings (`"89.00"`) or numbers (`89.00`), both
/// read exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Transaction {
    /// Unique per tenant; the idempotency key of the request.
    pub id: String,
    /// The tenant whose agent asks.
    pub tenant: String,
    /// The agent asking to pay.
    pub agent: String,
    /// Strictly positive amount in `currency`.
    #[serde(with = "money::exact")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "89.00"))]
    pub amount: Decimal,
    /// Currency or token code: `USD`, `EURC`, `USDC`.
    pub currency: String,
    /// What the payment is for: `embeddings`, `agent_hire`.
    pub category: String,
    /// Who receives the payment.
    pub recipient: String,
    /// How much the tenant trusts the recipient.
    #[cfg_attr(feature = "openapi", schema(value_type = super::schema::TrustName))]
    pub recipient_trust: RecipientTrust,
    /// ISO 3166-1 alpha-2 country code of the recipient.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jurisdiction: Option<String>,
    /// Why the agent wants to pay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub justification: Option<String>,
    /// Settlement network, such as `base-mainnet`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// Whether the recipient's wallet is self-hosted (not held by a
    /// custodian), which travel-rule reviews treat differently; when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_hosted_wallet: Option<bool>,
    /// Free key/value pairs from the platform.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// When the agent asked, in milliseconds since the Unix epoch, stamped by
    /// the host.
    pub requested_at_ms: u64,
}

/// A transaction field that is missing, malformed or out of bounds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid transaction: {message}")]
pub struct InvalidTransaction {
    /// The offending field (`amount`, `metadata.key`, ...), when one is to blame.
    pub field: Option<String>,
    message: String,
    syntax: bool,
}

impl InvalidTransaction {
    /// Whether the text was not JSON at all (rather than a bad transaction).
    pub fn is_syntax(&self) -> bool {
        self.syntax
    }

    fn field(field: &str, problem: impl std::fmt::Display) -> Self {
        InvalidTransaction {
            field: Some(field.to_string()),
            message: format!("`{field}` {problem}"),
            syntax: false,
        }
    }
}

/// Bounds on text fields, in bytes. They keep records and policy inputs small
/// and stop a runaway agent from filling the audit log.
pub mod limits {
    /// `id`, `agent`.
    pub const ID: usize = 128;
    /// `tenant`, `category`, `network`.
    pub const NAME: usize = 64;
    /// `recipient`.
    pub const RECIPIENT: usize = 256;
    /// `currency`.
    pub const CURRENCY: usize = 16;
    /// `justification`.
    pub const JUSTIFICATION: usize = 4096;
    /// Number of `metadata` entries.
    pub const METADATA_ENTRIES: usize = 32;
    /// Each `metadata` key.
    pub const METADATA_KEY: usize = 64;
    /// Each `metadata` value.
    pub const METADATA_VALUE: usize = 1024;
}

impl Transaction {
    /// Reads a transaction from JSON text and checks it. When the object has
    /// no `requested_at_ms`, the host stamps it with `now_ms`.
    ///
    /// The text is parsed directly (not through `serde_json::Value`), so a
    /// number such as `89.00` reaches the amount as written, never as `f64`.
    pub fn from_json(text: &str, now_ms: u64) -> Result<Self, InvalidTransaction> {
        let shape: serde_json::Value =
            serde_json::from_str(text).map_err(|e| InvalidTransaction {
                field: None,
                message: format!("not valid JSON: {}", without_position(&e)),
                syntax: true,
            })?;
        let Some(object) = shape.as_object() else {
            return Err(InvalidTransaction {
                field: None,
                message: "expected a JSON object".into(),
                syntax: false,
            });
        };
        // Read with the path kept, so an error names the field at fault.
        let read = |text: &str| {
            let de = &mut serde_json::Deserializer::from_str(text);
            serde_path_to_error::deserialize::<_, Transaction>(de).map_err(|e| {
                let path = e.path().to_string();
                let inner = e.into_inner();
                let message = without_position(&inner);
                let named = ["unknown field `", "missing field `"]
                    .iter()
                    .find_map(|p| message.strip_prefix(p))
                    .and_then(|rest| rest.split('`').next())
                    .map(str::to_string);
                InvalidTransaction {
                    field: named.or((path != ".").then_some(path)),
                    message,
                    syntax: false,
                }
            })
        };
        let tx: Transaction = if object.contains_key("requested_at_ms") {
            read(text)?
        } else {
            // Splice the stamp in as the first member; the rest stays byte for byte.
            let body = text.trim_start().strip_prefix('{').unwrap_or_default();
            let separator = if object.is_empty() { "" } else { "," };
            read(&format!("{{\"requested_at_ms\":{now_ms}{separator}{body}"))?
        };
        let mut tx = tx;
        tx.normalize()?;
        tx.validate()?;
        Ok(tx)
    }

    /// Writes every text field in Unicode's composed form (NFC), so two
    /// spellings of one name (`é` as one code point or as `e` and a combining
    /// accent) are one name, and one request: the id and the content hash
    /// are taken of this form. Refuses metadata whose keys become the same.
    pub fn normalize(&mut self) -> Result<(), InvalidTransaction> {
        for field in [
            &mut self.id,
            &mut self.tenant,
            &mut self.agent,
            &mut self.currency,
            &mut self.category,
            &mut self.recipient,
        ] {
            nfc(field);
        }
        for field in [
            &mut self.jurisdiction,
            &mut self.justification,
            &mut self.network,
        ]
        .into_iter()
        .flatten()
        {
            nfc(field);
        }
        if self
            .metadata
            .iter()
            .any(|(k, v)| !unicode_normalization::is_nfc(k) || !unicode_normalization::is_nfc(v))
        {
            let mut normalized = BTreeMap::new();
            for (mut k, mut v) in std::mem::take(&mut self.metadata) {
                nfc(&mut k);
                nfc(&mut v);
                if normalized.contains_key(&k) {
                    return Err(InvalidTransaction::field(
                        "metadata",
                        format!("has the key {k:?} twice, spelled two ways that are the same text"),
                    ));
                }
                normalized.insert(k, v);
            }
            self.metadata = normalized;
        }
        Ok(())
    }

    /// Refuses an amount over `max`, which `what` names (a tenant's own
    /// `max_amount`, say).
    pub fn amount_at_most(&self, max: Decimal, what: &str) -> Result<(), InvalidTransaction> {
        if self.amount > max {
            return Err(InvalidTransaction::field(
                "amount",
                format!("is {}, more than {what}, {max}", self.amount),
            ));
        }
        Ok(())
    }

    /// Checks every field's bounds and format.
    pub fn validate(&self) -> Result<(), InvalidTransaction> {
        text("id", &self.id, limits::ID)?;
        text("tenant", &self.tenant, limits::NAME)?;
        text("agent", &self.agent, limits::ID)?;
        text("category", &self.category, limits::NAME)?;
        text("recipient", &self.recipient, limits::RECIPIENT)?;
        if self.amount <= Decimal::ZERO {
            return Err(InvalidTransaction::field(
                "amount",
                format!("must be greater than zero, not {}", self.amount),
            ));
        }
        self.amount_at_most(money::MAX_AMOUNT, "the largest amount a payment may have")?;
        let c = &self.currency;
        if c.is_empty()
            || c.len() > limits::CURRENCY
            || !c.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(InvalidTransaction::field(
                "currency",
                format!(
                    "must be a code of 1 to {} ASCII letters and digits, such as USD or EURC, not {c:?}",
                    limits::CURRENCY
                ),
            ));
        }
        if let Some(j) = &self.jurisdiction
            && (j.len() != 2 || !j.bytes().all(|b| b.is_ascii_uppercase()))
        {
            return Err(InvalidTransaction::field(
                "jurisdiction",
                format!("must be an ISO 3166-1 alpha-2 code in capitals, such as DE, not {j:?}"),
            ));
        }
        if let Some(n) = &self.network {
            text("network", n, limits::NAME)?;
        }
        if let Some(j) = &self.justification {
            bounded("justification", j, limits::JUSTIFICATION)?;
        }
        if self.metadata.len() > limits::METADATA_ENTRIES {
            return Err(InvalidTransaction::field(
                "metadata",
                format!(
                    "has {} entries; at most {} are allowed",
                    self.metadata.len(),
                    limits::METADATA_ENTRIES
                ),
            ));
        }
        for (k, v) in &self.metadata {
            text("metadata key", k, limits::METADATA_KEY)?;
            bounded(&format!("metadata.{k}"), v, limits::METADATA_VALUE)?;
        }
        Ok(())
    }
}

/// serde_json's message without "at line 1 column 57", which would point
/// into the stamped text rather than the caller's.
fn without_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// A non-empty single-line identifier of at most `max` bytes, without
/// invisible format characters.
fn text(field: &str, value: &str, max: usize) -> Result<(), InvalidTransaction> {
    if value.is_empty() {
        return Err(InvalidTransaction::field(field, "must not be empty"));
    }
    // Printable ASCII, the common case, needs no decoding.
    let printable = |b: u8| (b'!'..=b'~').contains(&b);
    if !value.bytes().all(printable) {
        if value.chars().any(char::is_whitespace) {
            return Err(InvalidTransaction::field(
                field,
                format!("must not contain whitespace: {value:?}"),
            ));
        }
        // Zero-width spaces and joiners, byte-order marks, bidi controls and
        // tag characters show nothing, so `agent\u{200b}` looks like `agent`.
        if let Some(c) = value.chars().find(|&c| is_format(c)) {
            return Err(InvalidTransaction::field(
                field,
                format!(
                    "must not contain U+{:04X}, an invisible format character (Unicode category Cf): it would make a name that looks like another",
                    u32::from(c)
                ),
            ));
        }
    }
    bounded(field, value, max)
}

/// Free text of at most `max` bytes without control characters other than newlines.
fn bounded(field: &str, value: &str, max: usize) -> Result<(), InvalidTransaction> {
    if value.len() > max {
        return Err(InvalidTransaction::field(
            field,
            format!("is {} bytes long; at most {max} are allowed", value.len()),
        ));
    }
    let plain = |b: u8| (b' '..=b'~').contains(&b) || b == b'\n' || b == b'\t';
    if value.bytes().all(plain) {
        return Ok(());
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(InvalidTransaction::field(
            field,
            "must not contain control characters",
        ));
    }
    if let Some(c) = value.chars().find(|c| is_bidi_control(*c)) {
        return Err(InvalidTransaction::field(
            field,
            format!(
                "must not contain U+{:04X}, a bidirectional control: it reorders the text shown around it",
                u32::from(c)
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: serde_json::Value, now_ms: u64) -> Result<Transaction, InvalidTransaction> {
        Transaction::from_json(&v.to_string(), now_ms)
    }

    fn base() -> serde_json::Value {
        json!({
            "id": "tx-1", "tenant": "acme", "agent": "procurement-agent", "amount": "89.00",
            "currency": "USDC", "category": "agent_hire", "recipient": "analysis-agent-beta.example",
            "recipient_trust": "known"
        })
    }

    fn error_with(field: &str, value: serde_json::Value) -> String {
        let mut v = base();
        v[field] = value;
        parse(v, 0).unwrap_err().to_string()
    }

    #[test]
    fn the_host_stamps_a_missing_request_time() {
        let tx = parse(base(), 1_782_518_400_000).unwrap();
        assert_eq!(tx.requested_at_ms, 1_782_518_400_000);
        let mut v = base();
        v["requested_at_ms"] = json!(5);
        assert_eq!(parse(v, 9).unwrap().requested_at_ms, 5);
    }

    #[test]
    fn json_numbers_reach_the_amount_as_written() {
        let text = r#"{"id":"t","tenant":"a","agent":"b","amount":1.01,"currency":"USD","category":"c","recipient":"r","recipient_trust":"known"}"#;
        assert_eq!(
            Transaction::from_json(text, 0).unwrap().amount.to_string(),
            "1.01"
        );
        let text = text.replace("1.01", "0.30000000000000000004");
        assert_eq!(
            Transaction::from_json(&text, 0).unwrap().amount.to_string(),
            "0.30000000000000000004"
        );
        let dup = text.replace(r#""id":"t""#, r#""id":"t","id":"u""#);
        assert!(
            Transaction::from_json(&dup, 0)
                .unwrap_err()
                .to_string()
                .contains("duplicate field `id`")
        );
    }

    #[test]
    fn names_refuse_any_whitespace_and_free_text_any_control_character() {
        for space in ["a b", "a\tb", "a\u{b}b", "a\u{a0}b", "caf\u{e9}\u{2003}"] {
            assert!(
                error_with("category", json!(space)).contains("must not contain whitespace"),
                "{space:?}"
            );
        }
        for control in ["a\u{7}b", "a\u{7f}b", "caf\u{e9}\u{85}", "a\rb"] {
            assert!(
                error_with("justification", json!(control)).contains("control characters"),
                "{control:?}"
            );
        }
        for fine in ["two lines\nand a\ttab", "caf\u{e9} for the team", "~!"] {
            let mut v = base();
            v["justification"] = json!(fine);
            assert!(parse(v, 0).is_ok(), "{fine:?}");
        }
        let mut v = base();
        v["category"] = json!("caf\u{e9}");
        assert!(parse(v, 0).is_ok());
    }

    #[test]
    fn each_bad_field_is_named() {
        assert!(error_with("amount", json!("0")).contains("`amount` must be greater than zero"));
        assert!(
            error_with("amount", json!("-1.00")).contains("`amount` must be greater than zero")
        );
        let exponent = base().to_string().replace(r#""89.00""#, "1.5e3");
        let err = Transaction::from_json(&exponent, 0)
            .unwrap_err()
            .to_string();
        assert!(err.contains("is not an exact decimal"), "{err}");
        let err = Transaction::from_json("[1]", 0).unwrap_err().to_string();
        assert!(err.contains("expected a JSON object"), "{err}");
        assert!(error_with("currency", json!("US D")).contains("`currency`"));
        assert!(error_with("jurisdiction", json!("de")).contains("`jurisdiction`"));
        assert!(
            error_with("category", json!("x".repeat(65))).contains("`category` is 65 bytes long")
        );
        assert!(
            error_with("justification", json!("y".repeat(5000)))
                .contains("`justification` is 5000 bytes")
        );
        assert!(
            error_with("recipient_trust", json!("trusted")).contains("unknown variant `trusted`")
        );
        assert!(error_with("agent", json!("")).contains("`agent` must not be empty"));
        let mut v = base();
        v["amout"] = json!("1");
        assert!(
            parse(v, 0)
                .unwrap_err()
                .to_string()
                .contains("unknown field `amout`")
        );
        let mut v = base();
        v.as_object_mut().unwrap().remove("category");
        assert!(
            parse(v, 0)
                .unwrap_err()
                .to_string()
                .contains("missing field `category`")
        );
    }
}

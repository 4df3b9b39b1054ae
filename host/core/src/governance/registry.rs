//! Where the attributes a tier rests on come from: the tenant's registry of
//! recipients and agents, its own history, and (only to make a tier
//! stricter) what the request declares.
//!
//! A caller could otherwise buy a cheaper tier by saying so: a `verified`
//! recipient, no jurisdiction, a harmless category, a fresh agent name. So
//! the host decides recipient trust and jurisdiction, the policy sees the
//! host's values, and every contradiction between the request and the
//! registry escalates. Pure: no I/O; the pipeline hands in the recipient's
//! history.

use crate::record::{Provenance, Source};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tiergate_policy::{RecipientTrust, Tier};

use super::Escalation;
use super::config::{Limit, TenantConfig};
use tiergate_runtime::model::transaction::Transaction;

/// `[trust]`: where recipient trust, jurisdiction and agents come from,
/// and how strict the host is when it cannot vouch for them.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TrustSettings {
    /// Who decides a recipient's trust and jurisdiction.
    #[serde(default)]
    pub source: TrustSource,
    /// Executed payments to a recipient the registry does not list before
    /// the host counts it as `known` (3 unless set; at least 1).
    #[serde(default = "three")]
    pub known_after: u64,
    /// The least tier of a payment that contradicts the registry: a
    /// category the registry does not list for its recipient, or a
    /// jurisdiction other than the registry's.
    #[serde(default = "collaborative")]
    pub mismatch: Tier,
    /// The least tier of a payment whose recipient's jurisdiction the host
    /// does not know, above an amount.
    #[serde(default)]
    pub without_jurisdiction: JurisdictionFloor,
    /// What happens to a payment by an agent the tenant does not list.
    #[serde(default)]
    pub unlisted_agents: UnlistedAgents,
}

impl Default for TrustSettings {
    fn default() -> Self {
        TrustSettings {
            source: TrustSource::default(),
            known_after: three(),
            mismatch: collaborative(),
            without_jurisdiction: JurisdictionFloor::default(),
            unlisted_agents: UnlistedAgents::default(),
        }
    }
}

fn three() -> u64 {
    3
}

fn collaborative() -> Tier {
    Tier::Collaborative
}

/// Who decides a recipient's trust and jurisdiction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TrustSource {
    /// The registry and the tenant's history; a declaration may only make
    /// the tier stricter.
    #[default]
    Host,
    /// The request, as before the registry existed. Only to migrate: a
    /// caller can then lower its own tier. Warned about at start and
    /// refused by `tiergate check`.
    Caller,
}

/// The least tier of a payment above `above` whose recipient's jurisdiction
/// the host does not know (the registry does not give one).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JurisdictionFloor {
    /// Payments above this amount get the floor (100.00 unless set; 0 for
    /// every payment).
    #[serde(with = "tiergate_runtime::model::money::exact", default = "hundred")]
    pub above: Decimal,
    /// The floor (collaborative unless set).
    #[serde(default = "collaborative")]
    pub tier: Tier,
}

impl Default for JurisdictionFloor {
    fn default() -> Self {
        JurisdictionFloor {
            above: hundred(),
            tier: collaborative(),
        }
    }
}

fn hundred() -> Decimal {
    Decimal::new(10_000, 2)
}

/// What happens to a payment by an agent the tenant does not list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnlistedAgents {
    /// Served like a listed agent. Only to migrate: a caller can then
    /// dodge per-agent budgets by rotating names.
    Allow,
    /// The payment gets at least this tier; `prohibited` refuses it (the
    /// attempt is recorded).
    AtLeast(Tier),
}

impl Default for UnlistedAgents {
    fn default() -> Self {
        UnlistedAgents::AtLeast(Tier::Collaborative)
    }
}

impl Serialize for UnlistedAgents {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            UnlistedAgents::Allow => s.serialize_str("allow"),
            UnlistedAgents::AtLeast(tier) => s.serialize_str(tier.as_str()),
        }
    }
}

impl<'de> Deserialize<'de> for UnlistedAgents {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        match text.as_str() {
            "allow" => Ok(UnlistedAgents::Allow),
            "supervised" => Ok(UnlistedAgents::AtLeast(Tier::Supervised)),
            "collaborative" => Ok(UnlistedAgents::AtLeast(Tier::Collaborative)),
            "prohibited" => Ok(UnlistedAgents::AtLeast(Tier::Prohibited)),
            other => Err(serde::de::Error::custom(format!(
                "`{other}` is not a choice: write \"prohibited\" (refuse, recording the attempt), \"collaborative\" or \"supervised\" (escalate), or \"allow\""
            ))),
        }
    }
}

/// `[[recipients]]`: one recipient the tenant knows.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Recipient {
    /// Its identifier as payments name it: an address on a network, a
    /// domain, a merchant id. Matched after [`normalize_recipient`].
    pub id: String,
    /// How much the tenant trusts it. `verified` is granted only here.
    pub trust: RecipientTrust,
    /// Its ISO 3166-1 alpha-2 country code, when the tenant knows it.
    #[serde(default)]
    pub jurisdiction: Option<String>,
    /// The categories it may be paid for; any when absent.
    #[serde(default)]
    pub categories: Option<Vec<String>>,
    /// The most one payment to it may be, and the tier of one over it.
    #[serde(default)]
    pub max_per_payment: Option<Limit>,
}

/// `[[agents]]`: one agent the tenant knows.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Agent {
    /// The agent's name, as payments and keys name it.
    pub name: String,
    /// The team it belongs to, if any (a `[[teams]]` name).
    #[serde(default)]
    pub team: Option<String>,
    /// Who answers for it.
    #[serde(default)]
    pub owner: Option<String>,
}

/// The identifier a recipient is matched by:
/// - an EVM address (`0x` and 40 hex digits), alone or as a CAIP-10
///   account (`eip155:<chain>:0x…`), in lower case (EIP-55 capitals only
///   encode a checksum);
/// - a domain name (ASCII letters, digits, `-` and `.`, with at least one
///   `.`) in lower case, without a final `.`;
/// - anything else exactly as written (in NFC): base58 addresses and
///   merchant ids are case-sensitive.
pub fn normalize_recipient(id: &str) -> String {
    let is_evm = |s: &str| {
        s.strip_prefix("0x")
            .or_else(|| s.strip_prefix("0X"))
            .is_some_and(|hex| hex.len() == 40 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    let caip_evm = id
        .split_once(':')
        .filter(|(namespace, _)| namespace.eq_ignore_ascii_case("eip155"))
        .and_then(|(_, rest)| rest.split_once(':'))
        .is_some_and(|(chain, address)| {
            !chain.is_empty() && chain.bytes().all(|b| b.is_ascii_digit()) && is_evm(address)
        });
    if is_evm(id) || caip_evm {
        return id.to_ascii_lowercase();
    }
    let domain = id.contains('.')
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if domain {
        return id.strip_suffix('.').unwrap_or(id).to_ascii_lowercase();
    }
    let mut exact = id.to_string();
    tiergate_runtime::model::text::nfc(&mut exact);
    exact
}

/// A request as the host governs it: the transaction the policy sees, where
/// its attributes came from, and the tiers the registry demands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resolved {
    /// The transaction with the host's trust and jurisdiction.
    pub tx: Transaction,
    /// What was declared, and where the values came from.
    pub provenance: Provenance,
    /// Escalations the registry and the trust settings demand.
    pub floors: Vec<Escalation>,
}

/// Decides the attributes of `declared` the host vouches for.
/// `recipient_payments` reads how many of the tenant's payments to the
/// recipient executed (as the store counts them); it is called only when
/// the registry does not list the recipient, so a registered recipient
/// costs no read under the write lock.
pub(crate) fn resolve<E>(
    config: &TenantConfig,
    declared: &Transaction,
    recipient_payments: impl FnOnce() -> Result<u64, E>,
) -> Result<Resolved, E> {
    let settings = &config.trust;
    let agent_listed = config.agent_listed(&declared.agent);
    let mut floors = Vec::new();
    if !agent_listed && let UnlistedAgents::AtLeast(tier) = settings.unlisted_agents {
        floors.push(Escalation {
            guardrail: "unlisted_agent".into(),
            tier,
            detail: format!(
                "agent {} is not one the tenant lists in `[[agents]]` or a team",
                declared.agent
            ),
        });
    }
    let mut tx = declared.clone();
    if settings.source == TrustSource::Caller {
        let provenance = Provenance {
            trust_from: Source::Caller,
            jurisdiction_from: if declared.jurisdiction.is_some() {
                Source::Caller
            } else {
                Source::None
            },
            declared_trust: declared.recipient_trust,
            declared_jurisdiction: declared.jurisdiction.clone(),
            claimed_looser: false,
            agent_listed,
        };
        return Ok(Resolved {
            tx,
            provenance,
            floors,
        });
    }
    let listed = config.recipient(&declared.recipient);
    let (host_trust, trust_from) = match listed {
        Some(r) => (r.trust, Source::Registry),
        None if recipient_payments()? >= settings.known_after => {
            (RecipientTrust::Known, Source::History)
        }
        None => (RecipientTrust::Unknown, Source::None),
    };
    // The declaration may only lower the trust.
    tx.recipient_trust = host_trust.min(declared.recipient_trust);
    let trust_from = if tx.recipient_trust < host_trust {
        Source::Caller
    } else {
        trust_from
    };
    let registered = listed.and_then(|r| r.jurisdiction.clone());
    let jurisdiction_from = match (&registered, &declared.jurisdiction) {
        (Some(_), _) => Source::Registry,
        (None, Some(_)) => Source::Caller,
        (None, None) => Source::None,
    };
    floors.extend(jurisdiction_floors(
        settings,
        declared,
        registered.as_deref(),
    ));
    if let Some(j) = registered {
        tx.jurisdiction = Some(j);
    }
    if let Some(r) = listed {
        floors.extend(registry_floors(settings, r, declared));
    }
    let provenance = Provenance {
        trust_from,
        jurisdiction_from,
        declared_trust: declared.recipient_trust,
        declared_jurisdiction: declared.jurisdiction.clone(),
        claimed_looser: declared.recipient_trust > host_trust,
        agent_listed,
    };
    Ok(Resolved {
        tx,
        provenance,
        floors,
    })
}

/// What the jurisdiction makes the tier at least: the registry's value
/// contradicted by the request, or none registered above the tenant's
/// amount. A declared jurisdiction reaches the policy (it may make the
/// tier stricter), but the host does not vouch for it.
fn jurisdiction_floors(
    settings: &TrustSettings,
    declared: &Transaction,
    registered: Option<&str>,
) -> Vec<Escalation> {
    let mut floors = Vec::new();
    if let Some(j) = registered
        && let Some(claimed) = declared.jurisdiction.as_ref().filter(|c| *c != j)
    {
        floors.push(Escalation {
            guardrail: "jurisdiction_mismatch".into(),
            tier: settings.mismatch,
            detail: format!(
                "the request says the recipient is in {claimed}; the tenant's registry says {j}"
            ),
        });
    }
    let floor = &settings.without_jurisdiction;
    if registered.is_none() && declared.amount > floor.above && floor.tier > Tier::Autonomous {
        floors.push(Escalation {
            guardrail: "without_jurisdiction".into(),
            tier: floor.tier,
            detail: format!(
                "the tenant's registry gives no jurisdiction for {}, and {} is over {}",
                declared.recipient, declared.amount, floor.above
            ),
        });
    }
    floors
}

/// What a listed recipient's entry makes the tier at least: a category it
/// is not listed for, an amount over its limit per payment.
fn registry_floors(
    settings: &TrustSettings,
    listed: &Recipient,
    declared: &Transaction,
) -> Vec<Escalation> {
    let mut floors = Vec::new();
    if let Some(categories) = &listed.categories
        && !categories.contains(&declared.category)
    {
        floors.push(Escalation {
            guardrail: "category_mismatch".into(),
            tier: settings.mismatch,
            detail: format!(
                "the tenant's registry lists {} for {}, not {}",
                categories.join(", "),
                declared.recipient,
                declared.category
            ),
        });
    }
    if let Some(limit) = &listed.max_per_payment
        && declared.amount > limit.limit
    {
        floors.push(Escalation {
            guardrail: "recipient_max_per_payment".into(),
            tier: limit.escalate_to,
            detail: format!(
                "{} is over the limit of {} per payment to {}",
                declared.amount, limit.limit, declared.recipient
            ),
        });
    }
    floors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_match_as_their_kind_is_written() {
        let evm = "0xAbC0000000000000000000000000000000000001";
        assert_eq!(normalize_recipient(evm), evm.to_ascii_lowercase());
        assert_eq!(
            normalize_recipient(&format!("EIP155:8453:{evm}")),
            format!("eip155:8453:{}", evm.to_ascii_lowercase())
        );
        assert_eq!(
            normalize_recipient("Cloud.Vendor.Example."),
            "cloud.vendor.example"
        );
        // Case carries meaning in base58 and merchant ids.
        let base58 = "7EcDhSYGxXyscszYEp35KHN8vvw3svAuLKTzXwCFLtV";
        assert_eq!(normalize_recipient(base58), base58);
        assert_eq!(normalize_recipient("MID-0042"), "MID-0042");
        // Composed and decomposed accents are one id.
        assert_eq!(normalize_recipient("cafe\u{301}"), "caf\u{e9}");
        // Not quite an address: kept as written.
        assert_eq!(normalize_recipient("0xABC"), "0xABC");
    }

    #[test]
    fn a_declaration_only_ever_lowers_the_hosts_trust() {
        use RecipientTrust::{Known, Unknown, Verified};
        let config = crate::governance::TenantConfig::parse(
            &format!(
                "{}\n[[recipients]]\nid = \"known.example\"\ntrust = \"known\"\n",
                include_str!("../../../../examples/tenants/acme.toml")
            ),
            std::path::Path::new("acme.toml"),
        )
        .unwrap();
        let tx = |recipient: &str, trust: RecipientTrust| {
            let mut t = tiergate_runtime::model::transaction::Transaction::from_json(
                r#"{"id":"t","tenant":"acme","agent":"procurement-agent-prod","amount":"1.00",
                    "currency":"USDC","category":"embeddings","recipient":"x","recipient_trust":"unknown"}"#,
                0,
            )
            .unwrap();
            t.recipient = recipient.into();
            t.recipient_trust = trust;
            t
        };
        // (recipient, its executed payments, declared) → seen, from, claimed looser
        let cases = [
            (
                "embeddings.vendor.example",
                0,
                Verified,
                Verified,
                Source::Registry,
                false,
            ),
            (
                "embeddings.vendor.example",
                0,
                Known,
                Known,
                Source::Caller,
                false,
            ),
            ("known.example", 0, Verified, Known, Source::Registry, true),
            ("stranger.example", 2, Verified, Unknown, Source::None, true),
            (
                "stranger.example",
                3,
                Verified,
                Known,
                Source::History,
                true,
            ),
            (
                "stranger.example",
                3,
                Unknown,
                Unknown,
                Source::Caller,
                false,
            ),
        ];
        for (recipient, paid, declared, seen, from, looser) in cases {
            let r = resolve(&config, &tx(recipient, declared), || {
                Ok::<_, std::convert::Infallible>(paid)
            })
            .unwrap();
            assert_eq!(
                (
                    r.tx.recipient_trust,
                    r.provenance.trust_from,
                    r.provenance.claimed_looser
                ),
                (seen, from, looser),
                "{recipient}, {paid} paid, declared {declared}"
            );
        }
    }
}

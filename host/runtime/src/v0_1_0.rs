//! Contract `tiergate:policy@0.1.0`: its generated bindings, the host side of
//! its `context` interface, and conversions to and from the host's types.
//! A later contract gets a sibling module that converts into the same types.

use tiergate_policy::{RecipientTrust, Tier, Window};

use wasmtime::Store;
use wasmtime::component::{Component, ComponentExportIndex, Instance, TypedFunc};

use super::limits::decision as bounds;
use super::sandbox::Sandbox;
use crate::model::context::{ActivityFilter, ContextRead};
use crate::model::decision::Reason;
use crate::model::transaction::Transaction;

wasmtime::component::bindgen!({
    path: "../../wit/v0.1.0",
    world: "tier-policy",
    imports: { default: trappable },
    ownership: Borrowing { duplicate_if_necessary: true },
});

use self::tiergate::policy::{context, types};

/// The policy interface's exports, found once per compiled policy. The
/// generated `load` looks up and type-checks all three on every instance,
/// which was about a twentieth of a fresh decision; `classify`, the one
/// called per payment, is called through [`call_classify`](Self::call_classify)
/// instead.
pub(crate) struct PolicyExports {
    info: ComponentExportIndex,
    check_config: ComponentExportIndex,
    classify: ComponentExportIndex,
}

type ClassifyFunc<'a> =
    TypedFunc<(&'a str, &'a types::Transaction<'a>), (Result<types::Decision, String>,)>;

/// What `classify` answered, read out of the sandbox within the contract's
/// sizes: nothing past a size the contract allows is copied.
pub(crate) enum Answer {
    /// A decision whose every text is within the contract's sizes.
    Decided {
        tier: Tier,
        reasons: Vec<Reason>,
        suggestion: Option<String>,
    },
    /// A decision over a size the contract allows, and which.
    Oversized { tier: Tier, detail: String },
    /// `classify` returned an error: its text, cut at the contract's size.
    Error(String),
}

impl PolicyExports {
    /// `None` when an export is missing (the load has refused such a
    /// component already).
    pub(crate) fn find(component: &Component) -> Option<Self> {
        let (_, interface) = component.get_export(None, "tiergate:policy/policy@0.1.0")?;
        let index = |name| component.get_export(Some(&interface), name).map(|(_, i)| i);
        Some(PolicyExports {
            info: index("info")?,
            check_config: index("check-config")?,
            classify: index("classify")?,
        })
    }

    /// The first export whose type is not the contract's, and how it differs.
    pub(crate) fn mistyped(
        &self,
        store: &mut Store<Sandbox>,
        instance: &Instance,
    ) -> Option<(&'static str, String)> {
        let mut func = |index| instance.get_func(&mut *store, index);
        let (info, check, classify) = (
            func(self.info)?,
            func(self.check_config)?,
            func(self.classify)?,
        );
        let differs = |e: wasmtime::Error| format!("{e:#}");
        if let Err(e) = info.typed::<(), (types::PolicyInfo,)>(&*store) {
            return Some(("info", differs(e)));
        }
        if let Err(e) = check.typed::<(&str,), (Result<(), String>,)>(&*store) {
            return Some(("check-config", differs(e)));
        }
        if let Err(e) = classify
            .typed::<(&str, &types::Transaction<'_>), (Result<types::Decision, String>,)>(&*store)
        {
            return Some(("classify", differs(e)));
        }
        None
    }

    /// Calls `classify` on an instance of the component the exports were
    /// found in, once [`mistyped`](Self::mistyped) has passed them, and reads
    /// its answer out of the sandbox.
    pub(crate) fn call_classify(
        &self,
        store: &mut Store<Sandbox>,
        instance: &Instance,
        config: &str,
        tx: &types::Transaction,
    ) -> wasmtime::Result<Answer> {
        let func = instance
            .get_func(&mut *store, self.classify)
            .ok_or_else(|| wasmtime::Error::msg("the instance has no `classify` export"))?;
        // SAFETY: the instance comes from the same component, whose
        // `classify` the load type-checked against exactly these parameter
        // and result types (the generated bindings' own call makes the same
        // promise after their `load`).
        let classify: ClassifyFunc<'_> = unsafe { TypedFunc::new_unchecked(func) };
        let (answer,) = classify.call(&mut *store, (config, tx))?;
        Ok(read_answer(answer))
    }
}

/// Checks an answer against the contract's sizes.
///
/// The answer is copied out whole as the call returns: wasmtime runs the
/// policy's post-return (which frees the answer's memory, and an interpreter
/// may reuse it at once) as part of the call, so nothing can be read out of
/// the sandbox afterwards. The copy is bounded by the host-call fuel
/// ([`TRANSFER_BYTES`](super::limits::TRANSFER_BYTES) in all, past which the
/// call fails as `policy_transfer_oversized`); the contract's sizes are
/// checked here.
fn read_answer(answer: Result<types::Decision, String>) -> Answer {
    let decision = match answer {
        Ok(decision) => decision,
        Err(message) => return Answer::Error(prefix(&message, bounds::MAX_TEXT_BYTES)),
    };
    let tier = tier_from_wit(decision.tier);
    let oversized = |detail: String| Answer::Oversized { tier, detail };
    if decision.reasons.len() > bounds::MAX_REASONS {
        return oversized(format!(
            "{} reasons; at most {} are allowed",
            decision.reasons.len(),
            bounds::MAX_REASONS
        ));
    }
    if decision
        .suggestion
        .as_ref()
        .is_some_and(|s| s.len() > bounds::MAX_TEXT_BYTES)
    {
        return oversized(format!(
            "the suggestion exceeds {} bytes",
            bounds::MAX_TEXT_BYTES
        ));
    }
    let mut reasons = Vec::with_capacity(decision.reasons.len());
    for (i, reason) in decision.reasons.into_iter().enumerate() {
        if reason.code.len() > bounds::MAX_CODE_BYTES
            || reason.message.len() > bounds::MAX_TEXT_BYTES
        {
            return oversized(format!(
                "reason {i} exceeds {} bytes of code or {} bytes of message",
                bounds::MAX_CODE_BYTES,
                bounds::MAX_TEXT_BYTES
            ));
        }
        reasons.push(Reason::new(reason.code, reason.message));
    }
    Answer::Decided {
        tier,
        reasons,
        suggestion: decision.suggestion,
    }
}

/// At most `max` bytes of `text`, cut at a character boundary, with an
/// ellipsis when cut.
pub(crate) fn prefix(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// A policy asked the context more questions than the limit allows.
#[derive(Debug, thiserror::Error)]
#[error("the policy asked more than {0} context questions in one classification")]
pub(crate) struct TooManyReads(pub usize);

/// A policy asked a context question too large to be a real one.
#[derive(Debug, thiserror::Error)]
#[error("the policy asked about a category of {0} bytes; categories are at most {max} bytes", max = crate::model::transaction::limits::NAME)]
pub(crate) struct OversizedQuestion(pub usize);

impl Sandbox {
    fn record(&mut self, read: ContextRead) -> wasmtime::Result<()> {
        if self.reads.len() >= self.max_reads {
            return Err(wasmtime::Error::new(TooManyReads(self.max_reads)));
        }
        self.reads.push(read);
        Ok(())
    }
}

impl types::Host for Sandbox {}

impl context::Host for Sandbox {
    fn agent_activity(
        &mut self,
        window_ms: u64,
        filter: context::ActivityFilter,
    ) -> wasmtime::Result<context::Activity> {
        let filter = match filter {
            context::ActivityFilter::All => ActivityFilter::All,
            // No transaction has a longer category, and the question is kept
            // with the decision: a policy must not make the host store its memory.
            context::ActivityFilter::Category(c)
                if c.len() > crate::model::transaction::limits::NAME =>
            {
                return Err(wasmtime::Error::new(OversizedQuestion(c.len())));
            }
            context::ActivityFilter::Category(c) => ActivityFilter::Category(c),
            context::ActivityFilter::Tier(t) => ActivityFilter::Tier(tier_from_wit(t)),
        };
        // A question the host cannot answer exactly fails the policy closed.
        let answer = self
            .context
            .agent_activity(window_ms, &filter)
            .map_err(wasmtime::Error::new)?;
        self.record(ContextRead::AgentActivity {
            window: Window::millis(window_ms),
            filter,
            answer,
        })?;
        Ok(context::Activity {
            count: answer.count,
            total: answer.total.to_string(),
        })
    }

    fn recipient(&mut self) -> wasmtime::Result<context::RecipientHistory> {
        let answer = self.context.recipient();
        self.record(ContextRead::Recipient { answer })?;
        Ok(context::RecipientHistory {
            first_seen_ms: answer.first_seen_ms,
            payment_count: answer.payment_count,
        })
    }
}

/// A transaction as the contract passes it, borrowing the host's text
/// rather than copying every field for each call.
pub(crate) struct WitTransaction<'a> {
    tx: &'a Transaction,
    amount: String,
    metadata: Vec<(&'a str, &'a str)>,
}

impl<'a> WitTransaction<'a> {
    pub(crate) fn new(tx: &'a Transaction) -> Self {
        WitTransaction {
            tx,
            amount: tx.amount.to_string(),
            metadata: tx
                .metadata
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
        }
    }

    pub(crate) fn get(&self) -> types::Transaction<'_> {
        let tx = self.tx;
        types::Transaction {
            id: &tx.id,
            tenant: &tx.tenant,
            agent: &tx.agent,
            amount: &self.amount,
            currency: &tx.currency,
            category: &tx.category,
            recipient: &tx.recipient,
            recipient_trust: match tx.recipient_trust {
                RecipientTrust::Verified => types::RecipientTrust::Verified,
                RecipientTrust::Known => types::RecipientTrust::Known,
                RecipientTrust::Unknown => types::RecipientTrust::Unknown,
            },
            jurisdiction: tx.jurisdiction.as_deref(),
            justification: tx.justification.as_deref(),
            network: tx.network.as_deref(),
            metadata: &self.metadata,
            requested_at_ms: tx.requested_at_ms,
        }
    }
}

pub(crate) fn tier_from_wit(t: types::Tier) -> Tier {
    match t {
        types::Tier::Autonomous => Tier::Autonomous,
        types::Tier::Supervised => Tier::Supervised,
        types::Tier::Collaborative => Tier::Collaborative,
        types::Tier::Prohibited => Tier::Prohibited,
    }
}

//! The versions of the `tiergate:policy` contract this host serves, one
//! module each: its generated bindings, the host side of its `context`, and
//! conversions to and from the host's types. The rest of the runtime calls a
//! policy through [`Exports`], whatever its version.
//!
//! | version | configuration |
//! |---|---|
//! | `0.1.0` | handed to every `classify` call, which reads it again |
//! | `0.2.0` | handed once to `configure`, before `classify`, so an instance made ahead of its payment has read it already |

pub(crate) mod v0_1_0;
pub(crate) mod v0_2_0;

use tiergate_policy::{Tier, Window};
use wasmtime::Store;
use wasmtime::component::{
    Component, ComponentExportIndex, ComponentNamedList, HasSelf, Instance, Lift, Linker, Lower,
    TypedFunc,
};

use super::limits::decision as bounds;
use super::sandbox::Sandbox;
use crate::model::context::{
    Activity, ActivityFilter, ContextRead, ContextSource, RecipientHistory,
};
use crate::model::decision::Reason;
use crate::model::transaction::Transaction;

/// Links the `context` of every served version.
pub(crate) fn add_to_linker(linker: &mut Linker<Sandbox>) -> wasmtime::Result<()> {
    v0_1_0::TierPolicy::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?;
    v0_2_0::TierPolicy::add_to_linker::<_, HasSelf<_>>(linker, |s| s)
}

/// A policy's exports, found and type-checked once per compiled policy.
pub(crate) enum Exports {
    V0_1_0(v0_1_0::PolicyExports),
    V0_2_0(v0_2_0::PolicyExports),
}

/// What `info` answered.
pub(crate) struct Described {
    pub(crate) name: String,
    pub(crate) version: String,
    pub(crate) tiers: Vec<Tier>,
}

impl Exports {
    /// The exports of `contract` (a version from
    /// [`SERVED_CONTRACTS`](super::inspect::SERVED_CONTRACTS)), or `None`
    /// when one is missing.
    pub(crate) fn find(component: &Component, contract: &str) -> Option<Self> {
        match contract {
            "0.1.0" => v0_1_0::PolicyExports::find(component).map(Exports::V0_1_0),
            "0.2.0" => v0_2_0::PolicyExports::find(component).map(Exports::V0_2_0),
            _ => None,
        }
    }

    /// The names of the exports the contract requires, for a refusal.
    pub(crate) fn required(contract: &str) -> &'static str {
        match contract {
            "0.1.0" => "`info`, `check-config` and `classify`",
            _ => "`info`, `configure` and `classify`",
        }
    }

    /// The first export whose type is not the contract's, and how it differs.
    pub(crate) fn mistyped(
        &self,
        store: &mut Store<Sandbox>,
        instance: &Instance,
    ) -> Option<(&'static str, String)> {
        match self {
            Exports::V0_1_0(e) => e.mistyped(store, instance),
            Exports::V0_2_0(e) => e.mistyped(store, instance),
        }
    }

    /// Calls `info`, once [`mistyped`](Self::mistyped) has passed.
    pub(crate) fn info(
        &self,
        store: &mut Store<Sandbox>,
        instance: &Instance,
    ) -> wasmtime::Result<Described> {
        match self {
            Exports::V0_1_0(e) => e.call_info(store, instance),
            Exports::V0_2_0(e) => e.call_info(store, instance),
        }
    }

    /// Checks a tenant's configuration in a fresh instance: `check-config`
    /// or `configure`.
    pub(crate) fn check_config(
        &self,
        store: &mut Store<Sandbox>,
        instance: &Instance,
        config: &str,
    ) -> wasmtime::Result<Result<(), String>> {
        match self {
            Exports::V0_1_0(e) => e.call_check_config(store, instance, config),
            Exports::V0_2_0(e) => e.call_configure(store, instance, config),
        }
    }

    /// Hands a fresh instance its configuration, when its contract reads it
    /// before `classify`; otherwise does nothing.
    pub(crate) fn configure(
        &self,
        store: &mut Store<Sandbox>,
        instance: &Instance,
        config: &str,
    ) -> wasmtime::Result<Result<(), String>> {
        match self {
            Exports::V0_1_0(_) => Ok(Ok(())),
            Exports::V0_2_0(e) => e.call_configure(store, instance, config),
        }
    }

    /// Classifies `tx` in an instance of the policy. `configured` says
    /// whether [`configure`](Self::configure) has been called on it already
    /// (ahead of the payment); if not, it is called first, in this call.
    pub(crate) fn classify(
        &self,
        store: &mut Store<Sandbox>,
        instance: &Instance,
        config: &str,
        configured: bool,
        tx: &WitTransaction,
    ) -> wasmtime::Result<Answer> {
        if !configured && let Err(refused) = self.configure(store, instance, config)? {
            // The load accepted this document: a policy that now refuses it
            // does not decide the same way twice.
            return Ok(Answer::Error(prefix(
                &format!(
                    "`configure` refused the configuration it accepted when loaded: {refused}"
                ),
                bounds::MAX_TEXT_BYTES,
            )));
        }
        match self {
            Exports::V0_1_0(e) => e.call_classify(store, instance, config, tx),
            Exports::V0_2_0(e) => e.call_classify(store, instance, tx),
        }
    }
}

/// The indices of `names` in a component's `interface` export, or `None`
/// when one is missing.
fn export_indices<const N: usize>(
    component: &Component,
    interface: &str,
    names: [&str; N],
) -> Option<[ComponentExportIndex; N]> {
    let (_, interface) = component.get_export(None, interface)?;
    let found: Vec<ComponentExportIndex> = names
        .iter()
        .map(|name| component.get_export(Some(&interface), name).map(|(_, i)| i))
        .collect::<Option<_>>()?;
    found.try_into().ok()
}

/// A function of an instance by its export index, once the exports' types
/// have been checked ([`Exports::mistyped`]) on an instance of the same
/// component.
fn func<P, R>(
    store: &mut Store<Sandbox>,
    instance: &Instance,
    index: ComponentExportIndex,
) -> wasmtime::Result<TypedFunc<P, R>>
where
    P: ComponentNamedList + Lower,
    R: ComponentNamedList + Lift,
{
    let func = instance
        .get_func(&mut *store, index)
        .ok_or_else(|| wasmtime::Error::msg("the instance lacks an export its component has"))?;
    // SAFETY: the instance comes from the component whose exports the load
    // type-checked against exactly the types each caller names (the
    // generated bindings' own calls make the same promise after `load`).
    Ok(unsafe { TypedFunc::new_unchecked(func) })
}

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

/// A decision as every version's bindings lift it, before its sizes are
/// checked.
pub(crate) struct Lifted {
    tier: Tier,
    reasons: Vec<Reason>,
    suggestion: Option<String>,
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
fn read_answer(answer: Result<Lifted, String>) -> Answer {
    let decision = match answer {
        Ok(decision) => decision,
        Err(message) => return Answer::Error(prefix(&message, bounds::MAX_TEXT_BYTES)),
    };
    let tier = decision.tier;
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
    let too_long = decision.reasons.iter().position(|r| {
        r.code.len() > bounds::MAX_CODE_BYTES || r.message.len() > bounds::MAX_TEXT_BYTES
    });
    if let Some(i) = too_long {
        return oversized(format!(
            "reason {i} exceeds {} bytes of code or {} bytes of message",
            bounds::MAX_CODE_BYTES,
            bounds::MAX_TEXT_BYTES
        ));
    }
    Answer::Decided {
        tier,
        reasons: decision.reasons,
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

/// A policy asked the context from `configure`, before any transaction.
#[derive(Debug, thiserror::Error)]
#[error(
    "the policy asked the context while reading its configuration; a configuration cannot depend on the past: ask from `classify`"
)]
pub(crate) struct AskedWhileConfiguring;

/// The context's answers, whatever the version asking: each is checked,
/// answered from the call's snapshot and recorded for replay.
impl Sandbox {
    fn answer_activity(
        &mut self,
        window_ms: u64,
        filter: ActivityFilter,
    ) -> wasmtime::Result<Activity> {
        if let ActivityFilter::Category(c) = &filter
            && c.len() > crate::model::transaction::limits::NAME
        {
            // No transaction has a longer category, and the question is kept
            // with the decision: a policy must not make the host store its memory.
            return Err(wasmtime::Error::new(OversizedQuestion(c.len())));
        }
        // A question the host cannot answer exactly fails the policy closed.
        let answer = self
            .context()?
            .agent_activity(window_ms, &filter)
            .map_err(wasmtime::Error::new)?;
        self.record(ContextRead::AgentActivity {
            window: Window::millis(window_ms),
            filter,
            answer,
        })?;
        Ok(answer)
    }

    fn answer_recipient(&mut self) -> wasmtime::Result<RecipientHistory> {
        let answer = self.context()?.recipient();
        self.record(ContextRead::Recipient { answer })?;
        Ok(answer)
    }

    /// The call's context, unless the policy is reading its configuration
    /// (a sandbox made ahead has no context yet).
    fn context(&self) -> wasmtime::Result<&dyn ContextSource> {
        match &self.context {
            Some(context) if !self.configuring => Ok(context.as_ref()),
            _ => Err(wasmtime::Error::new(AskedWhileConfiguring)),
        }
    }

    fn record(&mut self, read: ContextRead) -> wasmtime::Result<()> {
        if self.reads.len() >= self.max_reads {
            return Err(wasmtime::Error::new(TooManyReads(self.max_reads)));
        }
        self.reads.push(read);
        Ok(())
    }
}

/// A transaction as the contracts pass it, borrowing the host's text rather
/// than copying every field for each call.
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
}

/// What every version's bindings share, compiled against each: their types
/// have the same names and shapes but are distinct Rust types. Expanded
/// inside a version's module, after its `bindgen!`.
macro_rules! shared_by_every_version {
    () => {
        use tiergate_policy::{RecipientTrust, Tier};

        use self::tiergate::policy::{context, types};
        use super::{Lifted, WitTransaction};
        use crate::model::context::ActivityFilter;
        use crate::sandbox::Sandbox;

        impl types::Host for Sandbox {}

        impl context::Host for Sandbox {
            fn agent_activity(
                &mut self,
                window_ms: u64,
                filter: context::ActivityFilter,
            ) -> wasmtime::Result<context::Activity> {
                let filter = match filter {
                    context::ActivityFilter::All => ActivityFilter::All,
                    context::ActivityFilter::Category(c) => ActivityFilter::Category(c),
                    context::ActivityFilter::Tier(t) => ActivityFilter::Tier(tier_from_wit(t)),
                };
                let answer = self.answer_activity(window_ms, filter)?;
                Ok(context::Activity {
                    count: answer.count,
                    total: answer.total.to_string(),
                })
            }

            fn recipient(&mut self) -> wasmtime::Result<context::RecipientHistory> {
                let answer = self.answer_recipient()?;
                Ok(context::RecipientHistory {
                    first_seen_ms: answer.first_seen_ms,
                    payment_count: answer.payment_count,
                })
            }
        }

        /// The transaction as this version's types borrow it.
        fn transaction<'a>(w: &'a WitTransaction<'_>) -> types::Transaction<'a> {
            let tx = w.tx;
            types::Transaction {
                id: &tx.id,
                tenant: &tx.tenant,
                agent: &tx.agent,
                amount: &w.amount,
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
                metadata: &w.metadata,
                requested_at_ms: tx.requested_at_ms,
            }
        }

        fn lifted(answer: Result<types::Decision, String>) -> Result<Lifted, String> {
            answer.map(|d| Lifted {
                tier: tier_from_wit(d.tier),
                reasons: d
                    .reasons
                    .into_iter()
                    .map(|r| crate::model::decision::Reason::new(r.code, r.message))
                    .collect(),
                suggestion: d.suggestion,
            })
        }

        fn described(info: types::PolicyInfo) -> super::Described {
            super::Described {
                name: info.name,
                version: info.version,
                tiers: info.tiers.into_iter().map(tier_from_wit).collect(),
            }
        }

        fn tier_from_wit(t: types::Tier) -> Tier {
            match t {
                types::Tier::Autonomous => Tier::Autonomous,
                types::Tier::Supervised => Tier::Supervised,
                types::Tier::Collaborative => Tier::Collaborative,
                types::Tier::Prohibited => Tier::Prohibited,
            }
        }
    };
}
use shared_by_every_version;

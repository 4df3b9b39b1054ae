//! Tier ladders: the first tier whose rule holds, and why the looser ones
//! did not.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer};

use crate::{
    ActivityFilter, Context, Decision, PositiveAmount, Reason, RecipientTrust, Tier, Transaction,
    Window,
};

/// The conditions a payment must meet for one tier: at most `max_amount`, in
/// one of `categories` (empty means any), to a recipient trusted at least
/// `min_trust`, and fewer than `max_per_window` earlier payments of this
/// tier within `window`.
///
/// In configuration it is an object with exactly these keys; `categories`
/// may be left out (any category), the others are required:
///
/// ```json
/// {"max_amount": "50.00", "categories": ["compute", "data_access"],
///  "min_trust": "known", "max_per_window": 20, "window": "1h"}
/// ```
///
/// `max_amount` is a [`PositiveAmount`]: zero or a negative amount is
/// refused when the configuration is read. A rule built in code may leave
/// out the ceiling ([`PositiveAmount::MAX`]) or the rate cap (`None`), as
/// [`Rule::any`] does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The largest amount allowed, inclusive.
    pub max_amount: PositiveAmount,
    /// The categories allowed; empty means any. In a [`Ladder`] that
    /// accumulates categories, the categories of the rules below count too.
    pub categories: Vec<String>,
    /// The least recipient trust allowed; [`RecipientTrust::Unknown`] means any.
    pub min_trust: RecipientTrust,
    /// How often this tier may be given; `None` means no cap, and the
    /// context is never asked.
    pub rate_cap: Option<RateCap>,
}

/// At most `max_per_window` payments of a tier within `window`: the next one
/// is refused the tier once `max_per_window` earlier payments received it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RateCap {
    /// How many earlier payments of the tier the window may hold.
    pub max_per_window: u64,
    /// How far back to count, at most [`Window::LONGEST`].
    pub window: Window,
}

impl Rule {
    /// A rule every payment meets: no ceiling, any category, any recipient,
    /// no rate cap. Narrow it with the fields:
    ///
    /// ```
    /// use tiergate_policy::{RateCap, RecipientTrust, Rule, Window};
    /// let rule = Rule {
    ///     min_trust: RecipientTrust::Known,
    ///     rate_cap: Some(RateCap { max_per_window: 20, window: Window::hours(1) }),
    ///     ..Rule::any()
    /// };
    /// assert!(rule.categories.is_empty());
    /// ```
    pub fn any() -> Rule {
        Rule {
            max_amount: PositiveAmount::MAX,
            categories: Vec::new(),
            min_trust: RecipientTrust::Unknown,
            rate_cap: None,
        }
    }

    /// Checks what reading cannot: that the window is one the host answers
    /// for ([`Window::within_host_limit`]). `key` names the rule in the
    /// error, such as `collaborative` for
    /// `collaborative.window is 60d, longer than the 31d the host answers for`.
    pub fn validate(&self, key: &str) -> Result<(), String> {
        match &self.rate_cap {
            Some(cap) => cap.window.within_host_limit(&format!("{key}.window")),
            None => Ok(()),
        }
    }

    /// The first condition `tx` fails for `tier`, in the order ceiling,
    /// category, trust, rate cap; `None` when every one holds. The context is
    /// asked only when the other conditions hold. `listed` says whether the
    /// category is allowed when this rule lists some (a [`Ladder`] passes
    /// whether it or a rule below lists it).
    fn unmet(
        &self,
        tier: Tier,
        tx: &Transaction,
        ctx: &dyn Context,
        listed: impl FnOnce() -> bool,
    ) -> Option<Unmet> {
        if tx.amount > self.max_amount.get() {
            return Some(Unmet::Amount {
                amount: tx.amount,
                max: self.max_amount.get(),
            });
        }
        if !self.categories.is_empty() && !listed() {
            return Some(Unmet::Category {
                category: tx.category.clone(),
            });
        }
        if tx.recipient_trust < self.min_trust {
            return Some(Unmet::Trust {
                trust: tx.recipient_trust,
                min: self.min_trust,
            });
        }
        if let Some(cap) = self.rate_cap {
            let count = ctx.activity(cap.window, ActivityFilter::Tier(tier)).count;
            if count >= cap.max_per_window {
                return Some(Unmet::Rate {
                    count,
                    max: cap.max_per_window,
                    window: cap.window,
                });
            }
        }
        None
    }
}

/// How a rule is written in configuration.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleDoc {
    max_amount: PositiveAmount,
    #[serde(default)]
    categories: Vec<String>,
    min_trust: RecipientTrust,
    max_per_window: u64,
    window: Window,
}

impl<'de> Deserialize<'de> for Rule {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let doc = RuleDoc::deserialize(deserializer)?;
        Ok(Rule {
            max_amount: doc.max_amount,
            categories: doc.categories,
            min_trust: doc.min_trust,
            rate_cap: Some(RateCap {
                max_per_window: doc.max_per_window,
                window: doc.window,
            }),
        })
    }
}

/// Which condition of a [`Rule`] a payment failed, with what it was
/// compared against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unmet {
    /// The amount is over the ceiling.
    Amount {
        /// The payment's amount.
        amount: Decimal,
        /// The rule's `max_amount`.
        max: Decimal,
    },
    /// The category is not one the rule allows.
    Category {
        /// The payment's category.
        category: String,
    },
    /// The recipient is trusted less than the rule asks.
    Trust {
        /// The recipient's trust.
        trust: RecipientTrust,
        /// The rule's `min_trust`.
        min: RecipientTrust,
    },
    /// The tier's rate cap is reached.
    Rate {
        /// Earlier payments of the tier in the window, as the context said.
        count: u64,
        /// The rule's `max_per_window`.
        max: u64,
        /// The rule's `window`.
        window: Window,
    },
}

/// A tier a [`Ladder`] passed over, and the first condition of its rule that
/// failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passed {
    /// The tier passed over.
    pub tier: Tier,
    /// Why.
    pub unmet: Unmet,
}

impl Passed {
    /// The reason code: `not_` and the tier, such as `not_autonomous`.
    pub fn code(&self) -> String {
        format!("not_{}", self.tier)
    }

    /// One sentence on the failed condition, such as
    /// `89.00 is over the supervised limit of 50.00`,
    /// `category mystery is not a supervised category`,
    /// `recipient trust known is below verified` or
    /// `20 supervised payments in the last 1h reach the cap of 20`.
    pub fn message(&self) -> String {
        format!("{self}")
    }

    /// [`code`](Self::code) and [`message`](Self::message) as a [`Reason`].
    pub fn reason(&self) -> Reason {
        Reason {
            code: self.code(),
            message: self.message(),
        }
    }
}

impl fmt::Display for Passed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tier = self.tier;
        match &self.unmet {
            Unmet::Amount { amount, max } => {
                write!(f, "{amount} is over the {tier} limit of {max}")
            }
            Unmet::Category { category } => {
                write!(f, "category {category} is not a {tier} category")
            }
            Unmet::Trust { trust, min } => write!(f, "recipient trust {trust} is below {min}"),
            Unmet::Rate { count, max, window } => write!(
                f,
                "{count} {tier} payments in the last {window} reach the cap of {max}"
            ),
        }
    }
}

/// Tiers tried in order, each with its [`Rule`]: a payment gets the first
/// tier whose rule holds.
///
/// Put the tiers from least to most oversight. With categories accumulating
/// (the default), a rule that lists categories also allows those of the
/// rules before it: an autonomous category over the autonomous limit may
/// still be supervised. A reached rate cap fails its rule, so the payment
/// moves on to the next tier.
///
/// ```
/// use tiergate_policy::testing::{TestContext, transaction};
/// use tiergate_policy::{Ladder, PositiveAmount, RecipientTrust, Rule, Tier};
///
/// let small = Rule {
///     max_amount: "1.00".parse().unwrap(),
///     categories: vec!["embeddings".into()],
///     min_trust: RecipientTrust::Verified,
///     ..Rule::any()
/// };
/// let large = Rule { max_amount: "50.00".parse().unwrap(), ..Rule::any() };
/// let ladder = Ladder::new([(Tier::Autonomous, &small), (Tier::Supervised, &large)]);
///
/// let tx = transaction("2.00", "embeddings").trust(RecipientTrust::Verified).build();
/// let d = ladder.decide(&tx, &TestContext::new(), Tier::Prohibited);
/// assert_eq!(d.tier, Tier::Supervised);
/// assert_eq!(d.reasons[0].code, "supervised_conditions_met");
/// assert_eq!(d.reasons[1].code, "not_autonomous");
/// assert_eq!(d.reasons[1].message, "2.00 is over the autonomous limit of 1.00");
///
/// let tx = transaction("80.00", "embeddings").build();
/// let d = ladder.decide(&tx, &TestContext::new(), Tier::Prohibited);
/// assert_eq!(d.tier, Tier::Prohibited);
/// assert_eq!(d.reasons[0].code, "amount_over_ceiling");
/// ```
#[derive(Debug, Clone)]
pub struct Ladder<'r> {
    steps: Vec<(Tier, &'r Rule)>,
    accumulate: bool,
}

impl<'r> Ladder<'r> {
    /// A ladder of `steps`, tried in this order, with categories
    /// accumulating upward.
    pub fn new(steps: impl IntoIterator<Item = (Tier, &'r Rule)>) -> Self {
        Ladder {
            steps: steps.into_iter().collect(),
            accumulate: true,
        }
    }

    /// Whether a rule's categories also allow those of the rules before it
    /// (the default), or only its own.
    #[must_use]
    pub fn accumulate_categories(mut self, accumulate: bool) -> Self {
        self.accumulate = accumulate;
        self
    }

    /// The steps, in order.
    pub fn steps(&self) -> &[(Tier, &'r Rule)] {
        &self.steps
    }

    /// Tries each step in turn: the first whose rule `tx` meets, and every
    /// step passed over on the way with the condition that failed.
    pub fn climb(&self, tx: &Transaction, ctx: &dyn Context) -> Climb {
        let mut passed = Vec::new();
        for (i, &(tier, rule)) in self.steps.iter().enumerate() {
            let below = if self.accumulate {
                &self.steps[..=i]
            } else {
                &self.steps[i..=i]
            };
            let listed = || {
                below
                    .iter()
                    .any(|(_, r)| r.categories.contains(&tx.category))
            };
            match rule.unmet(tier, tx, ctx, listed) {
                None => {
                    return Climb {
                        tier: Some(tier),
                        passed,
                    };
                }
                Some(unmet) => passed.push(Passed { tier, unmet }),
            }
        }
        Climb { tier: None, passed }
    }

    /// [`climb`](Self::climb), then [`Climb::decide`]: the first tier whose
    /// rule holds, or `beyond` when none does.
    pub fn decide(&self, tx: &Transaction, ctx: &dyn Context, beyond: Tier) -> Decision {
        self.climb(tx, ctx).decide(tx, beyond)
    }
}

/// Where a payment landed on a [`Ladder`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Climb {
    /// The first tier whose rule holds; `None` when none does.
    pub tier: Option<Tier>,
    /// The tiers passed over, in order, each with the condition that failed.
    pub passed: Vec<Passed>,
}

impl Climb {
    /// The decision a ladder gives:
    ///
    /// - when a rule holds, its tier, with the reason
    ///   `<tier>_conditions_met` (`89.00 USD agent_hire meets every
    ///   collaborative condition`) and then one `not_<tier>` reason per tier
    ///   passed over ([`Passed::reason`]);
    /// - when none holds, [`escalate`](Self::escalate) to `beyond`.
    pub fn decide(self, tx: &Transaction, beyond: Tier) -> Decision {
        match self.tier {
            Some(tier) => self.explain(Decision::new(
                tier,
                format!("{tier}_conditions_met"),
                format!(
                    "{} {} {} meets every {tier} condition",
                    tx.amount, tx.currency, tx.category
                ),
            )),
            None => self.escalate(beyond),
        }
    }

    /// `decision` with one reason added per tier passed over, in order:
    /// `not_<tier>` and the condition that failed.
    pub fn explain(&self, decision: Decision) -> Decision {
        self.explain_with(decision, Passed::message)
    }

    /// Like [`explain`](Self::explain), with the policy's own wording for
    /// each condition.
    pub fn explain_with(
        &self,
        decision: Decision,
        message: impl Fn(&Passed) -> String,
    ) -> Decision {
        self.passed
            .iter()
            .fold(decision, |d, p| d.because(p.code(), message(p)))
    }

    /// The decision when no rule holds, said by the last (strictest) tier's
    /// failed condition: `tier`, with a first reason naming that condition,
    /// a suggestion, and `not_<last tier>`:
    ///
    /// | condition | first code | suggestion |
    /// |---|---|---|
    /// | amount | `amount_over_ceiling` | agents may ask for at most the ceiling |
    /// | category | `category_not_allowed` | no tier allows the category |
    /// | trust | `recipient_trust_too_low` | pay a recipient trusted at least the minimum |
    /// | rate cap | `<last tier>_rate_exceeded` | wait until the window holds fewer |
    ///
    /// An empty ladder gives `no_tier_matched`.
    pub fn escalate(mut self, tier: Tier) -> Decision {
        let Some(last) = self.passed.pop() else {
            return Decision::new(tier, "no_tier_matched", "the ladder has no tiers");
        };
        let top = last.tier;
        let (code, suggestion) = match &last.unmet {
            Unmet::Amount { max, .. } => (
                String::from("amount_over_ceiling"),
                format!(
                    "agents may ask for at most {max}; a larger payment must be made by a human"
                ),
            ),
            Unmet::Category { category } => (
                String::from("category_not_allowed"),
                format!("no tier allows category {category}; a human must make this payment"),
            ),
            Unmet::Trust { min, .. } => (
                String::from("recipient_trust_too_low"),
                format!(
                    "pay a recipient trusted at least {min}, or ask the owner to verify this one"
                ),
            ),
            Unmet::Rate { max, window, .. } => (
                format!("{top}_rate_exceeded"),
                format!(
                    "wait until fewer than {max} {top} payments fall in the last {window}, or ask a human"
                ),
            ),
        };
        Decision::new(tier, code, last.message())
            .suggest(suggestion)
            .because(last.code(), "no tier's conditions hold")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{TestContext, transaction};
    use RecipientTrust::{Known, Unknown, Verified};

    fn rule(
        max: &str,
        categories: &[&str],
        min_trust: RecipientTrust,
        cap: u64,
        window: Window,
    ) -> Rule {
        Rule {
            max_amount: max.parse().unwrap(),
            categories: categories.iter().map(|c| String::from(*c)).collect(),
            min_trust,
            rate_cap: Some(RateCap {
                max_per_window: cap,
                window,
            }),
        }
    }

    /// The reference article's three allowing tiers.
    fn article() -> [Rule; 3] {
        [
            rule(
                "1.00",
                &["api_calls", "embeddings"],
                Verified,
                1000,
                Window::hours(1),
            ),
            rule("50.00", &["compute"], Known, 20, Window::hours(1)),
            rule("5000.00", &[], Unknown, 5, Window::hours(24)),
        ]
    }

    fn ladder(rules: &[Rule; 3]) -> Ladder<'_> {
        Ladder::new([
            (Tier::Autonomous, &rules[0]),
            (Tier::Supervised, &rules[1]),
            (Tier::Collaborative, &rules[2]),
        ])
    }

    fn codes(d: &Decision) -> Vec<&str> {
        d.reasons.iter().map(|r| r.code.as_str()).collect()
    }

    #[test]
    fn the_first_tier_whose_rule_holds_wins() {
        let rules = article();
        let none = TestContext::new();
        let at = |amount: &str, category: &str, trust| {
            let tx = transaction(amount, category).trust(trust).build();
            ladder(&rules).climb(&tx, &none).tier
        };
        assert_eq!(at("1.00", "embeddings", Verified), Some(Tier::Autonomous));
        assert_eq!(at("1.01", "embeddings", Verified), Some(Tier::Supervised));
        assert_eq!(at("50.00", "compute", Known), Some(Tier::Supervised));
        assert_eq!(at("50.01", "compute", Known), Some(Tier::Collaborative));
        assert_eq!(at("5000.00", "compute", Known), Some(Tier::Collaborative));
        assert_eq!(at("5000.01", "compute", Known), None);
    }

    #[test]
    fn reasons_name_the_condition_each_passed_tier_failed() {
        let rules = article();
        let none = TestContext::new();
        let tx = transaction("89.00", "agent_hire").build();
        let climb = ladder(&rules).climb(&tx, &none);
        assert_eq!(climb.tier, Some(Tier::Collaborative));
        assert_eq!(
            climb.passed,
            [
                Passed {
                    tier: Tier::Autonomous,
                    unmet: Unmet::Amount {
                        amount: tx.amount,
                        max: Decimal::new(100, 2)
                    }
                },
                Passed {
                    tier: Tier::Supervised,
                    unmet: Unmet::Amount {
                        amount: tx.amount,
                        max: Decimal::new(5000, 2)
                    }
                },
            ]
        );
        let d = climb.decide(&tx, Tier::Prohibited);
        assert_eq!(d.tier, Tier::Collaborative);
        assert_eq!(
            codes(&d),
            [
                "collaborative_conditions_met",
                "not_autonomous",
                "not_supervised"
            ]
        );
        assert_eq!(
            d.reasons[0].message,
            "89.00 USD agent_hire meets every collaborative condition"
        );
        assert_eq!(
            d.reasons[1].message,
            "89.00 is over the autonomous limit of 1.00"
        );
        assert_eq!(
            d.reasons[2].message,
            "89.00 is over the supervised limit of 50.00"
        );
        assert_eq!(d.suggestion, None);

        // Category, then trust, in that order of checking.
        let tx = transaction("0.50", "compute").trust(Verified).build();
        let d = ladder(&rules).decide(&tx, &none, Tier::Prohibited);
        assert_eq!(d.tier, Tier::Supervised);
        assert_eq!(
            d.reasons[1].message,
            "category compute is not a autonomous category"
        );
        let tx = transaction("0.50", "embeddings").trust(Known).build();
        let d = ladder(&rules).decide(&tx, &none, Tier::Prohibited);
        assert_eq!(d.tier, Tier::Supervised);
        assert_eq!(
            d.reasons[1].message,
            "recipient trust known is below verified"
        );
    }

    #[test]
    fn a_reached_rate_cap_escalates_to_the_next_tier() {
        let rules = article();
        let tx = transaction("0.02", "embeddings").trust(Verified).build();
        let hour = Window::hours(1);
        let under = TestContext::new().with_tier_count(hour, Tier::Autonomous, 999);
        assert_eq!(
            ladder(&rules).climb(&tx, &under).tier,
            Some(Tier::Autonomous)
        );
        let busy = TestContext::new().with_tier_count(hour, Tier::Autonomous, 1000);
        let d = ladder(&rules).decide(&tx, &busy, Tier::Prohibited);
        assert_eq!(d.tier, Tier::Supervised);
        assert_eq!(d.reasons[1].code, "not_autonomous");
        assert_eq!(
            d.reasons[1].message,
            "1000 autonomous payments in the last 1h reach the cap of 1000"
        );
        // Only payments of the tier itself count, in its own window.
        let other = TestContext::new()
            .with_tier_count(hour, Tier::Supervised, 1000)
            .with_tier_count(Window::hours(24), Tier::Autonomous, 1000);
        assert_eq!(
            ladder(&rules).climb(&tx, &other).tier,
            Some(Tier::Autonomous)
        );

        // Past the top tier's cap, the payment escalates beyond the ladder.
        let hire = transaction("89.00", "agent_hire").build();
        let full = TestContext::new().with_tier_count(Window::hours(24), Tier::Collaborative, 5);
        let d = ladder(&rules).decide(&hire, &full, Tier::Prohibited);
        assert_eq!(d.tier, Tier::Prohibited);
        assert_eq!(
            codes(&d),
            ["collaborative_rate_exceeded", "not_collaborative"]
        );
        assert_eq!(
            d.reasons[0].message,
            "5 collaborative payments in the last 1d reach the cap of 5"
        );
        assert_eq!(d.reasons[1].message, "no tier's conditions hold");
        assert_eq!(
            d.suggestion.as_deref(),
            Some(
                "wait until fewer than 5 collaborative payments fall in the last 1d, or ask a human"
            )
        );
    }

    /// A context that counts the questions it is asked.
    #[derive(Default)]
    struct Counting(core::cell::Cell<u32>);

    impl Context for Counting {
        fn activity(&self, _: Window, _: ActivityFilter) -> crate::Activity {
            self.0.set(self.0.get() + 1);
            crate::Activity::default()
        }
        fn recipient_history(&self) -> crate::RecipientHistory {
            crate::RecipientHistory::default()
        }
    }

    #[test]
    fn the_context_is_asked_only_when_the_rate_decides() {
        let rules = article();
        let ctx = Counting::default();
        // Fails autonomous on its amount, supervised on its amount: the one
        // question is the collaborative cap's.
        let tx = transaction("89.00", "compute").build();
        let _ = ladder(&rules).climb(&tx, &ctx);
        assert_eq!(ctx.0.get(), 1);
        // A rule without a cap never asks.
        let open = Rule::any();
        let ctx = Counting::default();
        let climb = Ladder::new([(Tier::Autonomous, &open)]).climb(&tx, &ctx);
        assert_eq!(climb.tier, Some(Tier::Autonomous));
        assert_eq!(ctx.0.get(), 0);
    }

    #[test]
    fn categories_accumulate_upward_unless_turned_off() {
        let rules = article();
        let none = TestContext::new();
        let search = transaction("10.00", "embeddings").trust(Verified).build();
        assert_eq!(
            ladder(&rules).climb(&search, &none).tier,
            Some(Tier::Supervised)
        );
        let own_only = ladder(&rules).accumulate_categories(false);
        let climb = own_only.climb(&search, &none);
        assert_eq!(climb.tier, Some(Tier::Collaborative));
        assert_eq!(
            climb.passed[1].message(),
            "category embeddings is not a supervised category"
        );
        // A category no rule lists only meets a rule that allows any.
        let mystery = transaction("0.50", "mystery").trust(Verified).build();
        assert_eq!(
            ladder(&rules).climb(&mystery, &none).tier,
            Some(Tier::Collaborative)
        );
    }

    #[test]
    fn escalation_names_the_top_tiers_failed_condition() {
        let [a, s, _] = article();
        let listed = rule("5000.00", &["agent_hire"], Verified, 5, Window::hours(24));
        let rules = [a, s, listed];
        let none = TestContext::new();
        let beyond = |amount: &str, category: &str, trust| {
            let tx = transaction(amount, category).trust(trust).build();
            ladder(&rules).decide(&tx, &none, Tier::Prohibited)
        };
        let d = beyond("5000.01", "agent_hire", Verified);
        assert_eq!(codes(&d), ["amount_over_ceiling", "not_collaborative"]);
        assert_eq!(
            d.reasons[0].message,
            "5000.01 is over the collaborative limit of 5000.00"
        );
        assert!(
            d.suggestion.as_deref().unwrap().contains("at most 5000.00"),
            "{d:?}"
        );
        let d = beyond("3.00", "mystery", Verified);
        assert_eq!(codes(&d), ["category_not_allowed", "not_collaborative"]);
        assert!(
            d.suggestion
                .as_deref()
                .unwrap()
                .contains("category mystery"),
            "{d:?}"
        );
        let d = beyond("3.00", "agent_hire", Known);
        assert_eq!(codes(&d), ["recipient_trust_too_low", "not_collaborative"]);
        assert!(
            d.suggestion
                .as_deref()
                .unwrap()
                .contains("at least verified"),
            "{d:?}"
        );
        // Any tier may be the one beyond the ladder.
        let tx = transaction("5000.01", "agent_hire").build();
        assert_eq!(
            ladder(&rules).decide(&tx, &none, Tier::Collaborative).tier,
            Tier::Collaborative
        );
        let empty = Ladder::new([]).decide(&tx, &none, Tier::Prohibited);
        assert_eq!(codes(&empty), ["no_tier_matched"]);
    }

    #[test]
    fn explain_adds_the_passed_tiers_in_the_policys_words() {
        let rules = article();
        let tx = transaction("5000.01", "compute").build();
        let climb = ladder(&rules).climb(&tx, &TestContext::new());
        assert_eq!(climb.tier, None);
        let d = climb.explain_with(
            Decision::new(Tier::Prohibited, "no_row_matched", "no row matches"),
            |p| match &p.unmet {
                Unmet::Amount { amount, max } => format!("{amount} is over {max}"),
                _ => p.message(),
            },
        );
        assert_eq!(
            codes(&d),
            [
                "no_row_matched",
                "not_autonomous",
                "not_supervised",
                "not_collaborative"
            ]
        );
        assert_eq!(d.reasons[3].message, "5000.01 is over 5000.00");
    }

    #[test]
    fn a_rule_reads_whole_from_configuration() {
        let read = |text: &str| crate::config::read_json::<Rule>(text);
        let r = read(
            r#"{"max_amount": "50.00", "categories": ["compute"], "min_trust": "known",
                "max_per_window": 20, "window": "1h"}"#,
        )
        .unwrap();
        assert_eq!(r, rule("50.00", &["compute"], Known, 20, Window::hours(1)));
        // Categories may be left out: any category.
        let r = read(
            r#"{"max_amount": 5, "min_trust": "unknown", "max_per_window": 1, "window": "1d"}"#,
        )
        .unwrap();
        assert!(r.categories.is_empty());
        let err = read(r#"{"max_amount": "5.00", "min_trust": "known", "max_per_window": 1}"#)
            .unwrap_err();
        assert!(err.contains("missing field `window`"), "{err}");
        let err = read(
            r#"{"max_amout": "5.00", "min_trust": "known", "max_per_window": 1, "window": "1h"}"#,
        )
        .unwrap_err();
        assert!(err.contains("unknown field `max_amout`"), "{err}");
        let err = read(
            r#"{"max_amount": "0", "min_trust": "known", "max_per_window": 1, "window": "1h"}"#,
        )
        .unwrap_err();
        assert!(err.contains("must be positive, not 0"), "{err}");
    }

    #[test]
    fn a_window_the_host_does_not_answer_for_is_refused_by_name() {
        let long = rule("1.00", &[], Unknown, 1, Window::days(60));
        assert_eq!(
            long.validate("collaborative").unwrap_err(),
            "collaborative.window is 60d, longer than the 31d the host answers for"
        );
        assert!(article()[2].validate("collaborative").is_ok());
        assert!(Rule::any().validate("any").is_ok());
    }
}

"""The four autonomy tiers of the reference article, as a tiergate policy in
Python: the same rules, configuration keys and reason codes as the Rust
`seed-tiers`.

Prohibited first (a prohibited category, a sanctioned jurisdiction, an
unknown recipient); then the first of autonomous, supervised and
collaborative whose every condition holds. Categories accumulate upward, a
frequency cap that is reached escalates to the next tier, and a category
nobody listed lands with a human. Over the collaborative ceiling, or past its
frequency cap, the payment is prohibited. Every threshold, list and window
comes from the tenant's configuration, merged over `defaults.json`; a tier's
rule is given whole or not at all.
"""

from __future__ import annotations

from dataclasses import dataclass

from tiergate_policy import (
    Context,
    Decision,
    Jurisdiction,
    Ladder,
    Policy,
    RecipientTrust,
    Rule,
    Tier,
    Transaction,
    load_defaults,
)


@dataclass
class SeedTiers(Policy):
    prohibited_categories: list[str]
    sanctioned_jurisdictions: list[Jurisdiction]
    autonomous: Rule
    supervised: Rule
    collaborative: Rule

    DEFAULTS = load_defaults(__file__)
    REPLACE_WHOLE = ("autonomous", "supervised", "collaborative")

    def validate(self) -> None:
        self.autonomous.validate("autonomous")
        self.supervised.validate("supervised")
        self.collaborative.validate("collaborative")

    def classify(self, tx: Transaction, ctx: Context) -> Decision:
        category, recipient = tx.category, tx.recipient
        if category in self.prohibited_categories:
            return Decision.of(
                Tier.PROHIBITED, "category_prohibited", f"category {category} is prohibited"
            )
        if tx.jurisdiction is not None and tx.jurisdiction in self.sanctioned_jurisdictions:
            return Decision.of(
                Tier.PROHIBITED,
                "jurisdiction_sanctioned",
                f"jurisdiction {tx.jurisdiction} is on the sanctions list",
            )
        if tx.recipient_trust == RecipientTrust.UNKNOWN:
            return Decision.of(
                Tier.PROHIBITED, "recipient_unknown", f"recipient {recipient} is unknown"
            ).suggest("pay a known or verified recipient, or ask the owner to verify this one")
        d = Ladder(
            [
                (Tier.AUTONOMOUS, self.autonomous),
                (Tier.SUPERVISED, self.supervised),
                (Tier.COLLABORATIVE, self.collaborative),
            ]
        ).decide(tx, ctx, Tier.PROHIBITED)
        if d.tier != Tier.COLLABORATIVE:
            return d
        listed = ", ".join(self.autonomous.categories + self.supervised.categories)
        return d.suggest(
            f"a budget owner must approve; {listed} at most "
            f"{self.supervised.max_amount} to a known recipient only needs a veto window"
        )

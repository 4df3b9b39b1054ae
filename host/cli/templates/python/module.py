"""{{name}}: a tiergate policy. It returns a tier for each payment; the host
applies that tier's approval and audit, which no policy can skip.

Build: `tiergate build`. Test natively: `pytest`. Test in the sandbox:
`tiergate test --policy target/{{name}}.wasm cases.toml`.
"""

from __future__ import annotations

from dataclasses import dataclass

from tiergate_policy import Context, Decision, Policy, PositiveAmount, Tier, Transaction


@dataclass
class {{class}}(Policy):
    """The tenant's configuration (JSON) is this class's fields, such as
    `{"autonomous_up_to": "25.00"}`. A key left out keeps its default; an
    unknown key is refused. Amounts are `decimal.Decimal`, never float."""

    # The largest payment that needs nobody's attention.
    autonomous_up_to: PositiveAmount

    DEFAULTS = {"autonomous_up_to": "10.00"}
    # Any other tier returned would be a malformed answer.
    TIERS = (Tier.AUTONOMOUS, Tier.SUPERVISED)

    def classify(self, tx: Transaction, ctx: Context) -> Decision:
        limit = self.autonomous_up_to
        if tx.amount <= limit:
            return Decision.of(
                Tier.AUTONOMOUS,
                "within_autonomous_limit",
                f"{tx.amount} is within the autonomous limit of {limit}",
            )
        return Decision.of(
            Tier.SUPERVISED,
            "over_autonomous_limit",
            f"{tx.amount} is over the autonomous limit of {limit}",
        )

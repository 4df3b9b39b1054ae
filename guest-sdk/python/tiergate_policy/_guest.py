"""The bridge between the generated WIT bindings and a `Policy`.

Not part of the public API: `python -m tiergate_policy.build` writes the
entry module that calls `export`, and authors never see the bindings (the
`wit_world` package componentize-py generates when it builds the component).
"""

from __future__ import annotations

from decimal import localcontext
from typing import Any

from .config import ConfigError
from .model import (
    Activity,
    ActivityFilter,
    Decision,
    RecipientHistory,
    RecipientTrust,
    Tier,
    Transaction,
    Window,
)
from .money import MONEY, parse_decimal
from .policy import Policy

def export(policy: type[Policy], name: str, version: str) -> type:
    """The class componentize-py exports as the contract's `policy` interface."""
    from componentize_py_types import Err
    from wit_world.imports import context as wit_context
    from wit_world.imports import types as wit

    def to_wit_tier(tier: Tier) -> Any:
        return getattr(wit.Tier, tier.name)

    class HostContext:
        def activity(self, window: Window, filter: ActivityFilter) -> Activity:
            if filter.category is not None:
                wit_filter: Any = wit_context.ActivityFilter_Category(filter.category)
            elif filter.tier is not None:
                wit_filter = wit_context.ActivityFilter_Tier(to_wit_tier(filter.tier))
            else:
                wit_filter = wit_context.ActivityFilter_All()
            answer = wit_context.agent_activity(window.millis, wit_filter)
            # The host only sends well-formed decimals; an unreadable one is a
            # host bug, and raising makes the host apply the failure tier.
            return Activity(answer.count, parse_decimal(answer.total))

        def recipient_history(self) -> RecipientHistory:
            h = wit_context.recipient()
            return RecipientHistory(h.first_seen_ms, h.payment_count)

    def configure(text: str) -> Policy:
        try:
            return policy.configure(text)
        except ConfigError as e:
            raise Err(str(e)) from None

    class Export:
        def info(self) -> Any:
            return wit.PolicyInfo(name, version, [to_wit_tier(t) for t in policy.TIERS])

        def check_config(self, config: str) -> None:
            configure(config)

        def classify(self, config: str, tx: Any) -> Any:
            configured = configure(config)
            try:
                amount = parse_decimal(tx.amount)
            except ValueError as e:
                raise Err(f"the host sent an unreadable amount: {e}") from None
            ours = Transaction(
                id=tx.id,
                tenant=tx.tenant,
                agent=tx.agent,
                amount=amount,
                currency=tx.currency,
                category=tx.category,
                recipient=tx.recipient,
                recipient_trust=RecipientTrust[tx.recipient_trust.name],
                jurisdiction=tx.jurisdiction,
                justification=tx.justification,
                network=tx.network,
                metadata=tuple(tx.metadata),
                requested_at_ms=tx.requested_at_ms,
            )
            try:
                with localcontext(MONEY):
                    decision = configured.classify(ours, HostContext())
            except MemoryError:
                # Out of memory is the sandbox's bound, not the policy's
                # error: the trap lets the host name the limit it hit.
                raise
            except Exception as e:
                # An exception is the policy's failure, said in its words: the
                # host applies the failure tier and records the text.
                raise Err(f"classify raised {type(e).__name__}: {e}") from None
            if not isinstance(decision, Decision):
                raise Err(
                    f"classify returned {type(decision).__name__}, not a tiergate_policy.Decision"
                )
            return wit.Decision(
                to_wit_tier(decision.tier),
                [wit.Reason(r.code, r.message) for r in decision.reasons],
                decision.suggestion,
            )

    return Export

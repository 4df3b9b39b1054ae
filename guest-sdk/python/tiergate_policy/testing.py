"""Test policies natively with plain pytest on the host's Python: build
transactions, set what the context answers, and classify through the same
configuration reading the sandbox uses.

```python
from tiergate_policy import RecipientTrust, Tier, Window
from tiergate_policy.testing import TestContext, classify, transaction

tx = transaction("89.00", "agent_hire").trust(RecipientTrust.KNOWN).build()
ctx = TestContext().with_tier_count(Window.hours(24), Tier.COLLABORATIVE, 4)
decision = classify(MyPolicy, "{}", tx, ctx)
```
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal, localcontext

from .model import (
    Activity,
    ActivityFilter,
    Decision,
    LONGEST_WINDOW,
    RecipientHistory,
    RecipientTrust,
    Tier,
    Transaction,
    Window,
)
from .money import MONEY, parse_decimal
from .policy import Policy

__all__ = ["TestContext", "TransactionBuilder", "classify", "transaction"]


def classify(
    policy: type[Policy], config: str, tx: Transaction, ctx: TestContext | None = None
) -> Decision:
    """`policy` configured with `config`, classifying `tx` (raises
    `ConfigError` for a configuration the sandbox would refuse)."""
    configured = policy.configure(config)
    with localcontext(MONEY):
        return configured.classify(tx, ctx if ctx is not None else TestContext())


def transaction(amount: str, category: str) -> TransactionBuilder:
    """A transaction of `amount` (exact, as text) in `category`, to a known
    recipient; the builder sets the rest."""
    return TransactionBuilder(
        Transaction(
            id="tx-test",
            tenant="test-tenant",
            agent="test-agent",
            amount=parse_decimal(amount),
            currency="USD",
            category=category,
            recipient="recipient.example",
            recipient_trust=RecipientTrust.KNOWN,
            requested_at_ms=1_782_518_400_000,
        )
    )


class TransactionBuilder:
    def __init__(self, tx: Transaction) -> None:
        self._tx = tx

    def _with(self, **changes: object) -> TransactionBuilder:
        return TransactionBuilder(dataclasses.replace(self._tx, **changes))

    def id(self, id: str) -> TransactionBuilder:
        return self._with(id=id)

    def tenant(self, tenant: str) -> TransactionBuilder:
        return self._with(tenant=tenant)

    def agent(self, agent: str) -> TransactionBuilder:
        return self._with(agent=agent)

    def currency(self, currency: str) -> TransactionBuilder:
        return self._with(currency=currency)

    def recipient(self, recipient: str) -> TransactionBuilder:
        return self._with(recipient=recipient)

    def trust(self, trust: RecipientTrust) -> TransactionBuilder:
        return self._with(recipient_trust=trust)

    def jurisdiction(self, code: str) -> TransactionBuilder:
        return self._with(jurisdiction=code)

    def justification(self, text: str) -> TransactionBuilder:
        return self._with(justification=text)

    def network(self, network: str) -> TransactionBuilder:
        return self._with(network=network)

    def meta(self, key: str, value: str) -> TransactionBuilder:
        return self._with(metadata=tuple(sorted((*self._tx.metadata, (key, value)))))

    def requested_at_ms(self, ms: int) -> TransactionBuilder:
        return self._with(requested_at_ms=ms)

    def build(self) -> Transaction:
        return self._tx


class TestContext:
    """A context whose answers the test sets; anything not set is answered
    with no activity and a recipient never paid. Asking about a window
    longer than the host answers for raises, as the sandbox fails closed."""

    __test__ = False  # not a pytest test class

    def __init__(self) -> None:
        self._activity: dict[tuple[Window, ActivityFilter], Activity] = {}
        self._recipient = RecipientHistory()
        self.asked: list[tuple[Window, ActivityFilter]] = []

    def with_activity(
        self, window: Window, filter: ActivityFilter, count: int, total: str = "0"
    ) -> TestContext:
        self._activity[(window, filter)] = Activity(count, parse_decimal(total))
        return self

    def with_tier_count(self, window: Window, tier: Tier, count: int) -> TestContext:
        return self.with_activity(window, ActivityFilter.of_tier(tier), count)

    def with_recipient(self, first_seen_ms: int | None, payment_count: int) -> TestContext:
        self._recipient = RecipientHistory(first_seen_ms, payment_count)
        return self

    def activity(self, window: Window, filter: ActivityFilter) -> Activity:
        if window > LONGEST_WINDOW:
            raise ValueError(
                f"asked about {window}, longer than the {LONGEST_WINDOW} the host answers for"
            )
        self.asked.append((window, filter))
        return self._activity.get((window, filter), Activity(0, Decimal(0)))

    def recipient_history(self) -> RecipientHistory:
        return self._recipient

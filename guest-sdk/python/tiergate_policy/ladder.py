"""Tier ladders: the first tier whose rule holds, and why the looser ones did not.

The same rules, reason codes and messages as the Rust SDK's `Ladder`, so a
policy written with either gives the same decision.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable, Iterable

from .config import ConfigError, _read
from .model import ActivityFilter, Context, Decision, RecipientTrust, Tier, Transaction, Window
from .money import PositiveAmount

__all__ = ["Climb", "Ladder", "Passed", "RateCap", "Rule", "Unmet"]


@dataclass(frozen=True)
class RateCap:
    """At most `max_per_window` earlier payments of a tier within `window`."""

    max_per_window: int
    window: Window


@dataclass
class Rule:
    """The conditions of one tier: at most `max_amount`, in one of
    `categories` (empty means any), to a recipient trusted at least
    `min_trust`, and fewer than the rate cap's earlier payments of the tier.

    In configuration an object with exactly the keys `max_amount`,
    `categories` (may be left out: any), `min_trust`, `max_per_window` and
    `window`.
    """

    max_amount: Decimal | None = None
    categories: list[str] = field(default_factory=list)
    min_trust: RecipientTrust = RecipientTrust.UNKNOWN
    rate_cap: RateCap | None = None

    _KEYS = ("max_amount", "categories", "min_trust", "max_per_window", "window")

    @classmethod
    def from_config(cls, value: Any, path: str) -> Rule:
        where = path or "the configuration"
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected an object with the keys of a rule")
        for key in value:
            if key not in cls._KEYS:
                expected = ", ".join(f"`{k}`" for k in cls._KEYS)
                raise ConfigError(f"{where}: unknown field `{key}`, expected one of {expected}")
        for key in ("max_amount", "min_trust", "max_per_window", "window"):
            if key not in value:
                raise ConfigError(f"{where}: missing field `{key}`")

        def at(key: str) -> str:
            return f"{path}.{key}" if path else key

        return cls(
            max_amount=_read(PositiveAmount, value["max_amount"], at("max_amount")),
            categories=_read(list[str], value.get("categories", []), at("categories")),
            min_trust=_read(RecipientTrust, value["min_trust"], at("min_trust")),
            rate_cap=RateCap(
                max_per_window=_read(int, value["max_per_window"], at("max_per_window")),
                window=_read(Window, value["window"], at("window")),
            ),
        )

    def validate(self, key: str) -> None:
        """Refuses a window longer than the host answers for, naming it."""
        if self.rate_cap is not None:
            self.rate_cap.window.within_host_limit(f"{key}.window")

    def unmet(
        self, tier: Tier, tx: Transaction, ctx: Context, listed: Callable[[], bool]
    ) -> Unmet | None:
        """The first condition `tx` fails for `tier`: ceiling, category,
        trust, then rate cap (the context is asked only if the rest hold)."""
        if self.max_amount is not None and tx.amount > self.max_amount:
            return Unmet.amount(tx.amount, self.max_amount)
        if self.categories and not listed():
            return Unmet.category(tx.category)
        if tx.recipient_trust < self.min_trust:
            return Unmet.trust(tx.recipient_trust, self.min_trust)
        if self.rate_cap is not None:
            cap = self.rate_cap
            count = ctx.activity(cap.window, ActivityFilter.of_tier(tier)).count
            if count >= cap.max_per_window:
                return Unmet.rate(count, cap.max_per_window, cap.window)
        return None


@dataclass(frozen=True)
class Unmet:
    """Which condition of a rule a payment failed, with what it was compared to."""

    kind: str  # "amount", "category", "trust" or "rate"
    found: Any
    limit: Any = None
    window: Window | None = None

    @classmethod
    def amount(cls, amount: Decimal, max_amount: Decimal) -> Unmet:
        return cls("amount", amount, max_amount)

    @classmethod
    def category(cls, category: str) -> Unmet:
        return cls("category", category)

    @classmethod
    def trust(cls, trust: RecipientTrust, min_trust: RecipientTrust) -> Unmet:
        return cls("trust", trust, min_trust)

    @classmethod
    def rate(cls, count: int, max_per_window: int, window: Window) -> Unmet:
        return cls("rate", count, max_per_window, window)


@dataclass(frozen=True)
class Passed:
    """A tier a ladder passed over, and the condition of its rule that failed."""

    tier: Tier
    unmet: Unmet

    @property
    def code(self) -> str:
        return f"not_{self.tier}"

    @property
    def message(self) -> str:
        u, tier = self.unmet, self.tier
        if u.kind == "amount":
            return f"{u.found} is over the {tier} limit of {u.limit}"
        if u.kind == "category":
            return f"category {u.found} is not a {tier} category"
        if u.kind == "trust":
            return f"recipient trust {u.found} is below {u.limit}"
        return f"{u.found} {tier} payments in the last {u.window} reach the cap of {u.limit}"


@dataclass
class Climb:
    """Where a payment landed on a ladder: the first tier whose rule holds
    (None when none does) and the tiers passed over on the way."""

    tier: Tier | None
    passed: list[Passed]

    def decide(self, tx: Transaction, beyond: Tier) -> Decision:
        """The tier reached, with `<tier>_conditions_met` and a `not_<tier>`
        reason per tier passed over; or, when none holds, `escalate(beyond)`."""
        if self.tier is None:
            return self.escalate(beyond)
        tier = self.tier
        return self.explain(
            Decision.of(
                tier,
                f"{tier}_conditions_met",
                f"{tx.amount} {tx.currency} {tx.category} meets every {tier} condition",
            )
        )

    def explain(
        self, decision: Decision, message: Callable[[Passed], str] | None = None
    ) -> Decision:
        """`decision` with one `not_<tier>` reason per tier passed over."""
        for p in self.passed:
            decision.because(p.code, message(p) if message else p.message)
        return decision

    def escalate(self, tier: Tier) -> Decision:
        """The decision when no rule holds, said by the strictest tier's
        failed condition (`amount_over_ceiling`, `category_not_allowed`,
        `recipient_trust_too_low` or `<tier>_rate_exceeded`)."""
        if not self.passed:
            return Decision.of(tier, "no_tier_matched", "the ladder has no tiers")
        last = self.passed[-1]
        top, u = last.tier, last.unmet
        if u.kind == "amount":
            code = "amount_over_ceiling"
            suggestion = (
                f"agents may ask for at most {u.limit}; a larger payment must be made by a human"
            )
        elif u.kind == "category":
            code = "category_not_allowed"
            suggestion = f"no tier allows category {u.found}; a human must make this payment"
        elif u.kind == "trust":
            code = "recipient_trust_too_low"
            suggestion = (
                f"pay a recipient trusted at least {u.limit}, or ask the owner to verify this one"
            )
        else:
            code = f"{top}_rate_exceeded"
            suggestion = (
                f"wait until fewer than {u.limit} {top} payments fall in the last "
                f"{u.window}, or ask a human"
            )
        return (
            Decision.of(tier, code, last.message)
            .suggest(suggestion)
            .because(last.code, "no tier's conditions hold")
        )


class Ladder:
    """Tiers tried in order, each with its rule: a payment gets the first
    tier whose rule holds. With categories accumulating (the default), a rule
    that lists categories also allows those of the rules before it."""

    def __init__(
        self, steps: Iterable[tuple[Tier, Rule]], *, accumulate_categories: bool = True
    ) -> None:
        self.steps = list(steps)
        self.accumulate = accumulate_categories

    def climb(self, tx: Transaction, ctx: Context) -> Climb:
        passed: list[Passed] = []
        for i, (tier, rule) in enumerate(self.steps):
            below = self.steps[: i + 1] if self.accumulate else self.steps[i : i + 1]

            def listed(below: list[tuple[Tier, Rule]] = below) -> bool:
                return any(tx.category in r.categories for _, r in below)

            unmet = rule.unmet(tier, tx, ctx, listed)
            if unmet is None:
                return Climb(tier, passed)
            passed.append(Passed(tier, unmet))
        return Climb(None, passed)

    def decide(self, tx: Transaction, ctx: Context, beyond: Tier) -> Decision:
        return self.climb(tx, ctx).decide(tx, beyond)



"""The contract's types under Python names: what a policy reads and returns."""

from __future__ import annotations

import enum
import functools
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

__all__ = [
    "Activity",
    "ActivityFilter",
    "Context",
    "Decision",
    "Jurisdiction",
    "Reason",
    "RecipientHistory",
    "RecipientTrust",
    "Tier",
    "Transaction",
    "Window",
]


@functools.total_ordering
class _Ordered(enum.Enum):
    """An enum ordered by declaration, written in lower case."""

    def _rank(self) -> int:
        return list(type(self)).index(self)

    def __lt__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._rank() < other._rank()  # type: ignore[attr-defined]

    def __str__(self) -> str:
        return str(self.value)

    @classmethod
    def parse(cls, text: object) -> _Ordered:
        for member in cls:
            if member.value == text:
                return member
        names = ", ".join(m.value for m in cls)
        raise ValueError(f"unknown {cls._label()} {text!r}: expected one of {names}")

    @classmethod
    def _label(cls) -> str:
        return cls.__name__.lower()


class Tier(_Ordered):
    """Autonomy tiers, from least to most human oversight."""

    AUTONOMOUS = "autonomous"
    SUPERVISED = "supervised"
    COLLABORATIVE = "collaborative"
    PROHIBITED = "prohibited"


class RecipientTrust(_Ordered):
    """How much the host trusts a recipient, from least to most."""

    UNKNOWN = "unknown"
    KNOWN = "known"
    VERIFIED = "verified"

    @classmethod
    def _label(cls) -> str:
        return "recipient trust"


@dataclass(frozen=True)
class Reason:
    """Why a policy chose a tier: a stable `snake_case` code and a sentence."""

    code: str
    message: str


@dataclass
class Decision:
    """A policy's answer: a tier, at least one reason, maybe a suggestion."""

    tier: Tier
    reasons: list[Reason]
    suggestion: str | None = None

    @classmethod
    def of(cls, tier: Tier, code: str, message: str) -> Decision:
        """A decision with one reason."""
        return cls(tier, [Reason(code, message)])

    def because(self, code: str, message: str) -> Decision:
        """This decision with one more reason."""
        self.reasons.append(Reason(code, message))
        return self

    def suggest(self, suggestion: str) -> Decision:
        """This decision with an alternative path for the agent."""
        self.suggestion = suggestion
        return self

    def has_reason(self, code: str) -> bool:
        return any(r.code == code for r in self.reasons)

    @property
    def codes(self) -> list[str]:
        return [r.code for r in self.reasons]


@dataclass(frozen=True)
class Transaction:
    """A payment an agent asks to make. `amount` is exact."""

    id: str
    tenant: str
    agent: str
    amount: Decimal
    currency: str
    category: str
    recipient: str
    recipient_trust: RecipientTrust
    jurisdiction: str | None = None
    justification: str | None = None
    network: str | None = None
    metadata: tuple[tuple[str, str], ...] = field(default=())
    requested_at_ms: int = 0


_UNITS = (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1))
_WINDOW = re.compile(r"([0-9]+)([a-z]+)")


@dataclass(frozen=True, order=True)
class Window:
    """A look-back window, written `500ms`, `30s`, `15m`, `1h` or `7d`."""

    millis: int

    @classmethod
    def seconds(cls, n: int) -> Window:
        return cls(n * 1_000)

    @classmethod
    def minutes(cls, n: int) -> Window:
        return cls(n * 60_000)

    @classmethod
    def hours(cls, n: int) -> Window:
        return cls(n * 3_600_000)

    @classmethod
    def days(cls, n: int) -> Window:
        return cls(n * 86_400_000)

    @classmethod
    def parse(cls, text: object) -> Window:
        bad = (
            f"invalid window {text!r}: write a whole number and a unit, such as "
            "500ms, 30s, 15m, 1h or 7d"
        )
        match = _WINDOW.fullmatch(text) if isinstance(text, str) else None
        if match is None:
            raise ValueError(bad)
        per = dict(_UNITS).get(match.group(2))
        if per is None:
            raise ValueError(bad)
        millis = int(match.group(1)) * per
        if millis >= 1 << 64:
            raise ValueError(f"invalid window {text!r}: too long")
        return cls(millis)

    def within_host_limit(self, key: str) -> None:
        """Refuses a window longer than the host answers for (31 days)."""
        if self > LONGEST_WINDOW:
            raise ValueError(
                f"{key} is {self}, longer than the {LONGEST_WINDOW} the host answers for"
            )

    def __str__(self) -> str:
        for unit, per in _UNITS:
            if self.millis != 0 and self.millis % per == 0:
                return f"{self.millis // per}{unit}"
        return f"{self.millis}ms"


LONGEST_WINDOW = Window.days(31)


class Jurisdiction(str):
    """An ISO 3166-1 alpha-2 country code: two capital letters."""

    __slots__ = ()

    def __new__(cls, code: object) -> Jurisdiction:
        if (
            not isinstance(code, str)
            or len(code) != 2
            or not all("A" <= c <= "Z" for c in code)
        ):
            raise ValueError(
                f"{code!r} is not a jurisdiction code: write an ISO 3166-1 alpha-2 "
                'code, two capital letters such as "KP"'
            )
        return super().__new__(cls, code)


class ActivityFilter:
    """Which of the agent's earlier transactions to count."""

    __slots__ = ("category", "tier")

    def __init__(self, *, category: str | None = None, tier: Tier | None = None) -> None:
        if category is not None and tier is not None:
            raise ValueError("filter by a category or by a tier, not both")
        self.category = category
        self.tier = tier

    @classmethod
    def all(cls) -> ActivityFilter:
        return cls()

    @classmethod
    def of_category(cls, category: str) -> ActivityFilter:
        return cls(category=category)

    @classmethod
    def of_tier(cls, tier: Tier) -> ActivityFilter:
        return cls(tier=tier)

    def _key(self) -> tuple[str | None, Tier | None]:
        return (self.category, self.tier)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ActivityFilter) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        if self.category is not None:
            return f"ActivityFilter.of_category({self.category!r})"
        if self.tier is not None:
            return f"ActivityFilter.of_tier({self.tier})"
        return "ActivityFilter.all()"


@dataclass(frozen=True)
class Activity:
    """How many transactions matched, and their exact total."""

    count: int = 0
    total: Decimal = Decimal(0)


@dataclass(frozen=True)
class RecipientHistory:
    """What the host knows about the recipient, within the tenant."""

    first_seen_ms: int | None = None
    payment_count: int = 0


class Context(Protocol):
    """Read-only questions about the past, answered from one snapshot.

    Inside the sandbox this calls the host; in native tests use
    `tiergate_policy.testing.TestContext`.
    """

    def activity(self, window: Window, filter: ActivityFilter) -> Activity:
        """The agent's earlier transactions matching `filter` in `window`
        (at most 31 days: a longer one fails the classification closed)."""
        ...

    def recipient_history(self) -> RecipientHistory:
        """History of the transaction's recipient."""
        ...

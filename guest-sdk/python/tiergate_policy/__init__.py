"""Write tiergate tier policies in Python.

A policy is a `Policy` dataclass (its fields are the tenant's configuration)
with a `classify` that answers one question: which autonomy tier does this
payment belong to? `python -m tiergate_policy.build` turns it into a
WebAssembly component the tiergate host runs in its sandbox;
`tiergate_policy.testing` runs it natively under pytest.

Amounts are `decimal.Decimal`, exact as the host sent them; arithmetic in a
policy runs in a context where any rounding raises, so money is never
approximated.
"""

from .config import ConfigError
from .ladder import Climb, Ladder, Passed, RateCap, Rule, Unmet
from .model import (
    Activity,
    ActivityFilter,
    Context,
    Decision,
    Jurisdiction,
    Reason,
    RecipientHistory,
    RecipientTrust,
    Tier,
    Transaction,
    Window,
)
from .money import PositiveAmount, parse_decimal
from .policy import Policy, load_defaults

CONTRACT_VERSION = "0.1.0"

__all__ = [
    "CONTRACT_VERSION",
    "Activity",
    "ActivityFilter",
    "Climb",
    "ConfigError",
    "Context",
    "Decision",
    "Jurisdiction",
    "Ladder",
    "Passed",
    "Policy",
    "PositiveAmount",
    "RateCap",
    "Reason",
    "RecipientHistory",
    "RecipientTrust",
    "Rule",
    "Tier",
    "Transaction",
    "Unmet",
    "Window",
    "load_defaults",
    "parse_decimal",
]

"""The `Policy` base class: a tenant's configuration and its `classify`."""

from __future__ import annotations

import dataclasses
from decimal import localcontext
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from . import config
from .model import Context, Decision, Tier, Transaction
from .money import MONEY

__all__ = ["Policy", "load_defaults"]

P = TypeVar("P", bound="Policy")


class Policy:
    """A tier policy. Subclass it as a dataclass whose fields are the
    tenant's configuration, and write `classify`:

    ```python
    @dataclass
    class SmallSpends(Policy):
        ceiling: PositiveAmount

        DEFAULTS = {"ceiling": "1.00"}

        def classify(self, tx, ctx):
            if tx.amount <= self.ceiling:
                return Decision.of(Tier.AUTONOMOUS, "small", f"{tx.amount} is small")
            return Decision.of(Tier.COLLABORATIVE, "large", f"{tx.amount} is over {self.ceiling}")
    ```

    - `DEFAULTS`: the configuration's default document, merged under the
      tenant's (objects key by key, except the paths in `REPLACE_WHOLE`,
      which the tenant gives whole or not at all; anything else the tenant
      gives replaces the default).
    - `TIERS`: the tiers `classify` can return; any other is a malformed
      answer, which the host treats as a failure.
    - `validate`: checks what the types cannot; raise `ValueError`.

    A policy sees only the transaction, its configuration and the context:
    inside the sandbox there is no clock, randomness, file or network.
    """

    TIERS: ClassVar[tuple[Tier, ...]] = tuple(Tier)
    DEFAULTS: ClassVar[dict[str, Any]] = {}
    REPLACE_WHOLE: ClassVar[tuple[str, ...]] = ()

    def validate(self) -> None:
        """Checks the configuration beyond its types; raise ValueError."""

    def classify(self, tx: Transaction, ctx: Context) -> Decision:
        raise NotImplementedError(f"{type(self).__name__} must define classify")

    @classmethod
    def configure(cls: type[P], text: str) -> P:
        """The policy read from the tenant's document over the defaults, or
        `config.ConfigError` saying what is wrong and where."""
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"{cls.__name__} must be a @dataclass: its fields are its configuration")
        try:
            doc = config.parse_json(text)
            merged = config.merge(cls.DEFAULTS, doc, frozenset(cls.REPLACE_WHOLE))
            with localcontext(MONEY):
                policy = config.read(cls, merged)
                policy.validate()
        except ValueError as e:
            raise config.ConfigError(f"invalid policy configuration: {e}") from None
        return policy


def load_defaults(module_file: str, name: str = "defaults.json") -> dict[str, Any]:
    """A JSON document beside the policy's module, read once when the module
    is imported (for a component: when it is built, so nothing is read in
    the sandbox)."""
    path = Path(module_file).with_name(name)
    return config.parse_json(path.read_text(encoding="utf-8"))

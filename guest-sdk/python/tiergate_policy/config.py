"""Reading a tenant's configuration document into the policy's own type.

The document is JSON, merged over the policy's defaults, then read into the
policy's dataclass field by field with its type hints: numbers are exact
(`Decimal`, never float), unknown keys and duplicate keys are refused, and
every error names where in the document it is.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from decimal import Decimal
from typing import Any, Union

from .model import Jurisdiction, RecipientTrust, Tier, Window
from .money import parse_decimal

__all__ = ["ConfigError", "merge", "parse_json", "read"]

_U64 = (1 << 64) - 1


class ConfigError(ValueError):
    """A configuration document the policy cannot read, with where."""


def parse_json(text: str) -> dict[str, Any]:
    """The document as a dict; an empty document is `{}`.

    Fractions read as `Decimal` (exactly as written), so `1.0000000000000001`
    stays itself; `NaN` and `Infinity` are refused, as is a key given twice in
    one object.
    """
    if not text.strip():
        return {}

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in items:
            if key in out:
                raise ConfigError(f"duplicate field `{key}`")
            out[key] = value
        return out

    def constant(name: str) -> Any:
        raise ConfigError(f"{name} is not a number a configuration may hold")

    def fraction(number: str) -> Decimal:
        if "e" in number or "E" in number:
            raise ConfigError(f"{number}: write numbers without an exponent")
        return Decimal(number)

    try:
        doc = json.loads(
            text, parse_float=fraction, object_pairs_hook=pairs, parse_constant=constant
        )
    except json.JSONDecodeError as e:
        raise ConfigError(f"{e.msg} at line {e.lineno} column {e.colno}") from None
    if not isinstance(doc, dict):
        raise ConfigError("the configuration must be a JSON object")
    return doc


def merge(defaults: Any, doc: Any, replace_whole: frozenset[str] = frozenset(), path: str = "") -> Any:
    """`doc` over `defaults`: objects merge key by key at every depth, except
    at the dotted paths in `replace_whole`; anything else the tenant gives
    replaces the default whole (a tenant's list is the whole list)."""
    if not (isinstance(defaults, dict) and isinstance(doc, dict)) or path in replace_whole:
        return doc
    out = dict(defaults)
    for key, value in doc.items():
        inner = f"{path}.{key}" if path else key
        out[key] = merge(defaults[key], value, replace_whole, inner) if key in defaults else value
    return out


def read(cls: type, value: Any) -> Any:
    """`value` (parsed JSON) read as `cls`, a dataclass of the types below."""
    return _read(cls, value, "")


def _where(path: str) -> str:
    return path if path else "the configuration"


def _read(hint: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        inner = [o for o in options if o is not type(None)]
        if len(inner) != 1:
            raise TypeError(f"{path}: only `T | None` unions can be read")
        return _read(inner[0], value, path)
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise ConfigError(f"{_where(path)}: expected a list, found {_kind(value)}")
        return [_read(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        key_type, item = typing.get_args(hint)
        if key_type is not str:
            raise TypeError(f"{path}: only dicts with str keys can be read")
        if not isinstance(value, dict):
            raise ConfigError(f"{_where(path)}: expected an object, found {_kind(value)}")
        return {k: _read(item, v, f"{path}.{k}" if path else k) for k, v in value.items()}
    if hasattr(hint, "from_config"):
        try:
            return hint.from_config(value, path)
        except ConfigError:
            raise
        except ValueError as e:
            raise ConfigError(f"{_where(path)}: {e}") from None
    if dataclasses.is_dataclass(hint) and hint is not Window:
        return _read_dataclass(hint, value, path)
    return _read_scalar(hint, value, path)


def _read_dataclass(cls: type, value: Any, path: str) -> Any:
    if not isinstance(value, dict):
        raise ConfigError(f"{_where(path)}: expected an object, found {_kind(value)}")
    hints = typing.get_type_hints(cls)
    fields = [f for f in dataclasses.fields(cls) if f.init]
    names = [f.name for f in fields]
    for key in value:
        if key not in names:
            expected = ", ".join(f"`{n}`" for n in names)
            raise ConfigError(
                f"{_where(path)}: unknown field `{key}`, expected one of {expected}"
            )
    args = {}
    for f in fields:
        inner = f"{path}.{f.name}" if path else f.name
        if f.name in value:
            args[f.name] = _read(hints[f.name], value[f.name], inner)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{_where(path)}: missing field `{f.name}`")
    return cls(**args)


def _read_scalar(hint: Any, value: Any, path: str) -> Any:
    where = _where(path)
    try:
        if hint is str:
            if isinstance(value, str):
                return value
        elif hint is bool:
            if isinstance(value, bool):
                return value
        elif hint is int:
            # Counts and caps: whole, not negative, within 64 bits.
            if isinstance(value, int) and not isinstance(value, bool):
                if 0 <= value <= _U64:
                    return value
                raise ConfigError(f"{where}: {value} is out of range (0 to {_U64})")
        elif isinstance(hint, type) and issubclass(hint, Decimal):
            # Decimal and PositiveAmount: a string or an exact number.
            if isinstance(value, (str, int, Decimal)) and not isinstance(value, bool):
                return hint(value) if hint is not Decimal else _decimal(value)
        elif hint in (Tier, RecipientTrust):
            return hint.parse(value)
        elif hint is Window:
            return Window.parse(value)
        elif hint is Jurisdiction:
            return Jurisdiction(value)
        else:
            raise TypeError(f"{where}: the SDK cannot read a {hint!r} from configuration")
    except ValueError as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"{where}: {e}") from None
    raise ConfigError(f"{where}: expected {_name(hint)}, found {_kind(value)}")


def _decimal(value: str | int | Decimal) -> Decimal:
    return parse_decimal(value) if isinstance(value, str) else Decimal(value)


def _name(hint: Any) -> str:
    return {str: "a string", bool: "true or false", int: "a whole number"}.get(
        hint, "a decimal string or number"
    )


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, (int, Decimal)):
        return f"the number {value}"
    if isinstance(value, list):
        return "a list"
    return "an object"

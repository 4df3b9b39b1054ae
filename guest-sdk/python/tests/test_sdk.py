"""The Python SDK natively: exact money, configuration reading, windows and
the ladder's reasons, as the Rust SDK gives them."""

from dataclasses import dataclass, field
from decimal import Decimal, Inexact, localcontext

import pytest

from tiergate_policy import (
    ConfigError,
    Decision,
    Ladder,
    Policy,
    PositiveAmount,
    RateCap,
    RecipientTrust,
    Rule,
    Tier,
    Window,
    parse_decimal,
)
from tiergate_policy.money import MONEY
from tiergate_policy.testing import TestContext, classify, transaction


def test_amounts_are_exact_and_keep_their_scale():
    assert str(parse_decimal("89.00")) == "89.00"
    assert parse_decimal("50.00") == parse_decimal("50")
    assert parse_decimal("0.0000000000000000000000000001") > 0
    for bad in ["1e3", "+1", " 1", "1.", ".5", "NaN", "1_000", "0x10", "1" * 30]:
        with pytest.raises(ValueError):
            parse_decimal(bad)
    with pytest.raises(ValueError, match="more than 28 digits after the point"):
        parse_decimal("0." + "1" * 29)


def test_positive_amounts_refuse_zero_negatives_and_floats():
    assert str(PositiveAmount("50.00")) == "50.00"
    assert PositiveAmount(7) == Decimal(7)
    for bad in ["0", "0.00", "-1", -5]:
        with pytest.raises(ValueError, match="must be positive"):
            PositiveAmount(bad)
    with pytest.raises(ValueError):
        PositiveAmount(0.1)  # a float is never money
    with pytest.raises(ValueError):
        PositiveAmount(True)


def test_arithmetic_that_would_round_raises_instead():
    with localcontext(MONEY):
        assert Decimal("0.1") + Decimal("0.2") == Decimal("0.3")
        with pytest.raises(Inexact):
            Decimal(1) / Decimal(3)


def test_windows_read_and_print_like_the_rust_sdk():
    assert Window.parse("1h") == Window.hours(1)
    assert Window.hours(24).millis == 86_400_000
    assert str(Window.minutes(90)) == "90m"
    assert str(Window.days(31)) == "31d"
    for bad in ["1", "h", "1y", "-1h", "1.5h", ""]:
        with pytest.raises(ValueError, match="invalid window"):
            Window.parse(bad)
    Window.days(31).within_host_limit("w")
    with pytest.raises(ValueError, match="longer than the 31d"):
        Window.days(32).within_host_limit("w")


def test_tiers_and_trust_are_ordered():
    assert Tier.AUTONOMOUS < Tier.SUPERVISED < Tier.COLLABORATIVE < Tier.PROHIBITED
    assert RecipientTrust.UNKNOWN < RecipientTrust.KNOWN < RecipientTrust.VERIFIED
    assert str(Tier.COLLABORATIVE) == "collaborative"
    with pytest.raises(ValueError, match="unknown tier"):
        Tier.parse("maybe")


@dataclass
class Limits(Policy):
    ceiling: PositiveAmount
    blocked: list[str]
    daily: Rule
    note: str = "none"
    counts: dict[str, int] = field(default_factory=dict)

    DEFAULTS = {
        "ceiling": "100.00",
        "blocked": ["gambling"],
        "daily": {"max_amount": "10", "min_trust": "known", "max_per_window": 3, "window": "24h"},
    }

    def classify(self, tx, ctx):
        if tx.category in self.blocked:
            return Decision.of(Tier.PROHIBITED, "blocked", f"{tx.category} is blocked")
        return Decision.of(Tier.AUTONOMOUS, "ok", f"{tx.amount} is fine")


def test_configuration_merges_over_the_defaults():
    mine = Limits.configure('{"ceiling": 250, "daily": {"window": "1h"}}')
    assert mine.ceiling == Decimal(250)
    assert mine.blocked == ["gambling"]
    # Objects merge key by key unless replaced whole.
    assert mine.daily.rate_cap == RateCap(3, Window.hours(1))
    assert Limits.configure("").note == "none"
    assert Limits.configure('{"blocked": []}').blocked == []


@pytest.mark.parametrize(
    "config, says",
    [
        ('{"ceiling": 0}', "ceiling: an amount here must be positive, not 0"),
        ('{"ceiling": 1.5e3}', "1.5e3: write numbers without an exponent"),
        ('{"ceiling": true}', "ceiling: expected a decimal string or number, found a boolean"),
        ('{"blocked": "gambling"}', "blocked: expected a list"),
        ('{"blocked": [1]}', "blocked[0]: expected a string, found the number 1"),
        ('{"counts": {"a": -1}}', "counts.a: -1 is out of range"),
        ('{"daily": {"max_per_window": 1.5}}', "daily.max_per_window: expected a whole number"),
        ('{"ceilng": 1}', "unknown field `ceilng`"),
        ('{"ceiling": NaN}', "NaN is not a number a configuration may hold"),
        ('{"ceiling": 1', "at line 1 column"),
    ],
)
def test_configuration_errors_say_what_and_where(config, says):
    with pytest.raises(ConfigError) as e:
        Limits.configure(config)
    assert says in str(e.value), str(e.value)


def test_fractions_in_configuration_are_read_exactly():
    exact = Limits.configure('{"ceiling": 1.0000000000000001}')
    assert exact.ceiling == Decimal("1.0000000000000001")


def test_the_ladder_gives_the_rust_sdks_reasons():
    small = Rule(PositiveAmount("1.00"), ["embeddings"], RecipientTrust.VERIFIED)
    large = Rule(PositiveAmount("50.00"))
    ladder = Ladder([(Tier.AUTONOMOUS, small), (Tier.SUPERVISED, large)])
    tx = transaction("2.00", "embeddings").trust(RecipientTrust.VERIFIED).build()
    d = ladder.decide(tx, TestContext(), Tier.PROHIBITED)
    assert d.tier == Tier.SUPERVISED
    assert d.codes == ["supervised_conditions_met", "not_autonomous"]
    assert d.reasons[1].message == "2.00 is over the autonomous limit of 1.00"
    d = ladder.decide(transaction("80.00", "embeddings").build(), TestContext(), Tier.PROHIBITED)
    assert d.tier == Tier.PROHIBITED
    assert d.codes == ["amount_over_ceiling", "not_supervised"]
    assert d.suggestion == "agents may ask for at most 50.00; a larger payment must be made by a human"


def test_the_context_is_asked_only_when_the_rest_holds_and_windows_are_bounded():
    capped = Rule(rate_cap=RateCap(5, Window.hours(1)))
    ctx = TestContext()
    Ladder([(Tier.AUTONOMOUS, Rule(PositiveAmount("1"), rate_cap=RateCap(5, Window.hours(1))))]).climb(
        transaction("2.00", "x").build(), ctx
    )
    assert ctx.asked == []
    Ladder([(Tier.AUTONOMOUS, capped)]).climb(transaction("2.00", "x").build(), ctx)
    assert len(ctx.asked) == 1
    with pytest.raises(ValueError, match="longer than the 31d"):
        TestContext().activity(Window.days(32), ctx.asked[0][1])


def test_classify_through_the_testing_harness():
    d = classify(Limits, "{}", transaction("1.00", "gambling").build())
    assert d.codes == ["blocked"]

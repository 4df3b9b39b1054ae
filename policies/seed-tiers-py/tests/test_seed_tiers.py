"""seed-tiers in Python, natively under pytest: the article's tiers, its
boundaries, and configuration read exactly as the sandbox reads it."""

import json
from decimal import Decimal
from pathlib import Path

import pytest
from seed_tiers import SeedTiers

from tiergate_policy import ConfigError, RecipientTrust, Tier, Window
from tiergate_policy.testing import TestContext, classify, transaction

VERIFIED, KNOWN, UNKNOWN = RecipientTrust.VERIFIED, RecipientTrust.KNOWN, RecipientTrust.UNKNOWN


def decide(amount, category, trust, config="{}", ctx=None):
    return classify(SeedTiers, config, transaction(amount, category).trust(trust).build(), ctx)


def tier(amount, category, trust, config="{}"):
    return decide(amount, category, trust, config).tier


def test_the_articles_day_gets_its_tiers():
    assert tier("0.02", "embeddings", VERIFIED) == Tier.AUTONOMOUS
    assert tier("0.50", "search", VERIFIED) == Tier.AUTONOMOUS
    assert tier("4.99", "data_access", KNOWN) == Tier.SUPERVISED
    assert tier("47.00", "compute", KNOWN) == Tier.SUPERVISED
    assert tier("89.00", "agent_hire", KNOWN) == Tier.COLLABORATIVE
    assert tier("1.00", "gambling", VERIFIED) == Tier.PROHIBITED


def test_the_boundaries_are_inclusive():
    d = decide("1.00", "embeddings", VERIFIED)
    assert d.codes == ["autonomous_conditions_met"] and d.suggestion is None
    d = decide("1.01", "embeddings", VERIFIED)
    assert d.codes == ["supervised_conditions_met", "not_autonomous"]
    assert d.reasons[1].message == "1.01 is over the autonomous limit of 1.00"
    assert tier("50.00", "compute", KNOWN) == Tier.SUPERVISED
    assert tier("50.01", "compute", KNOWN) == Tier.COLLABORATIVE
    assert tier("5000.00", "compute", KNOWN) == Tier.COLLABORATIVE
    d = decide("5000.01", "compute", KNOWN)
    assert d.tier == Tier.PROHIBITED and d.codes[0] == "amount_over_ceiling"
    assert "5000.00" in d.suggestion


def test_prohibited_categories_jurisdictions_and_unknown_recipients():
    for category in ["gambling", "unverified_agents", "sanctioned_jurisdictions"]:
        d = decide("0.01", category, VERIFIED)
        assert d.tier == Tier.PROHIBITED and d.codes == ["category_prohibited"]
    for code in ["KP", "IR", "SY"]:
        tx = transaction("0.02", "embeddings").trust(VERIFIED).jurisdiction(code).build()
        assert classify(SeedTiers, "{}", tx).codes == ["jurisdiction_sanctioned"]
    d = decide("0.02", "embeddings", UNKNOWN)
    assert d.codes == ["recipient_unknown"] and "verify" in d.suggestion


def test_the_agent_hire_explains_itself():
    d = decide("89.00", "agent_hire", KNOWN)
    assert d.codes == ["collaborative_conditions_met", "not_autonomous", "not_supervised"]
    assert d.reasons[0].message == "89.00 USD agent_hire meets every collaborative condition"
    assert d.suggestion == (
        "a budget owner must approve; api_calls, embeddings, search, compute, data_access, "
        "saas_tools at most 50.00 to a known recipient only needs a veto window"
    )


def test_frequency_caps_escalate():
    tx = transaction("0.02", "embeddings").trust(VERIFIED).build()
    hour = Window.hours(1)
    under = TestContext().with_tier_count(hour, Tier.AUTONOMOUS, 999)
    assert classify(SeedTiers, "{}", tx, under).tier == Tier.AUTONOMOUS
    at_cap = TestContext().with_tier_count(hour, Tier.AUTONOMOUS, 1000)
    d = classify(SeedTiers, "{}", tx, at_cap)
    assert d.tier == Tier.SUPERVISED
    assert d.reasons[1].message == "1000 autonomous payments in the last 1h reach the cap of 1000"
    hire = transaction("89.00", "agent_hire").build()
    full = TestContext().with_tier_count(Window.hours(24), Tier.COLLABORATIVE, 5)
    d = classify(SeedTiers, "{}", hire, full)
    assert d.tier == Tier.PROHIBITED and d.codes[0] == "collaborative_rate_exceeded"


def test_a_tenants_thresholds_and_lists_replace_the_defaults():
    config = json.dumps(
        {
            "sanctioned_jurisdictions": ["FR"],
            "autonomous": {
                "max_amount": 5,
                "categories": ["embeddings"],
                "min_trust": "verified",
                "max_per_window": 10,
                "window": "1h",
            },
        }
    )
    assert tier("5.00", "embeddings", VERIFIED, config) == Tier.AUTONOMOUS
    # The tenant's rule is whole: search is listed nowhere now, so a human decides.
    assert tier("0.50", "search", VERIFIED, config) == Tier.COLLABORATIVE
    fr = transaction("0.02", "embeddings").trust(VERIFIED).jurisdiction("FR").build()
    kp = transaction("0.02", "embeddings").trust(VERIFIED).jurisdiction("KP").build()
    assert classify(SeedTiers, config, fr).tier == Tier.PROHIBITED
    assert classify(SeedTiers, config, kp).tier == Tier.AUTONOMOUS


def test_configuration_amounts_are_exact():
    rule = '{"max_amount": %s, "min_trust": "verified", "max_per_window": 1000, "window": "1h", "categories": ["embeddings"]}'
    config = '{"autonomous": %s}' % (rule % "1.0000000000000001")
    assert tier("1.0000000000000001", "embeddings", VERIFIED, config) == Tier.AUTONOMOUS
    assert tier("1.0000000000000002", "embeddings", VERIFIED, config) == Tier.SUPERVISED
    policy = SeedTiers.configure(config)
    assert policy.autonomous.max_amount == Decimal("1.0000000000000001")


@pytest.mark.parametrize(
    "config, says",
    [
        ('{"autonomous": {"max_amount": "2.00"}}', "missing field `min_trust`"),
        ('{"sanctioned_jurisdiction": ["FR"]}', "`sanctioned_jurisdiction`"),
        ('{"sanctioned_jurisdictions": ["fr"]}', "'fr' is not a jurisdiction code"),
        ('{"supervised": {"max_amount": 0, "min_trust": "known", "max_per_window": 1, "window": "1h"}}', "must be positive, not 0"),
        ('{"supervised": {"max_amount": 1, "min_trust": "trusted", "max_per_window": 1, "window": "1h"}}', "'trusted'"),
        ('{"collaborative": {"max_amount": 1, "min_trust": "known", "max_per_window": 1, "window": "60d"}}', "collaborative.window is 60d, longer than the 31d"),
        ('{"autonomous": 1, "autonomous": 2}', "duplicate field `autonomous`"),
        ('[1, 2]', "must be a JSON object"),
    ],
)
def test_a_bad_configuration_is_refused_saying_what_is_wrong(config, says):
    with pytest.raises(ConfigError) as e:
        SeedTiers.configure(config)
    assert str(e.value).startswith("invalid policy configuration: ")
    assert says in str(e.value)


def test_every_decision_is_well_formed():
    categories = ["embeddings", "search", "compute", "agent_hire", "mystery", "gambling"]
    for amount in ["0.01", "1.00", "1.01", "49.99", "50.00", "50.01", "4999.99", "5000.01"]:
        for category in categories:
            for trust in RecipientTrust:
                d = decide(amount, category, trust)
                assert d.tier in SeedTiers.TIERS
                assert 1 <= len(d.reasons) <= 16
                for r in d.reasons:
                    assert 0 < len(r.code.encode()) <= 64 and 0 < len(r.message.encode()) <= 1024
                if d.tier == Tier.COLLABORATIVE:
                    assert d.suggestion


def test_the_defaults_are_the_rust_policys():
    here = Path(__file__).resolve().parents[1]
    rust = here.parent / "seed-tiers" / "defaults.json"
    assert json.loads((here / "defaults.json").read_text()) == json.loads(rust.read_text())

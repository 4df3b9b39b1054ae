"""{{name}} natively, under pytest: the same configuration reading and
decisions as in the sandbox."""

import pytest
from {{module}} import {{class}}

from tiergate_policy import ConfigError, Tier
from tiergate_policy.testing import classify, transaction


def tier(config, amount):
    return classify({{class}}, config, transaction(amount, "compute").build()).tier


def test_up_to_the_limit_is_autonomous_and_above_it_supervised():
    assert tier("{}", "10.00") == Tier.AUTONOMOUS
    assert tier("{}", "10.01") == Tier.SUPERVISED
    assert tier('{"autonomous_up_to": "25.00"}', "10.01") == Tier.AUTONOMOUS


def test_a_limit_of_zero_is_refused():
    with pytest.raises(ConfigError, match="autonomous_up_to"):
        tier('{"autonomous_up_to": "0"}', "1.00")

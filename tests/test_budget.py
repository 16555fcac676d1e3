import math

import pytest

from bench.train.budget import parse_budget
from bench.errors import ConfigError
from bench.train.pretrain import steps_for_budget


@pytest.mark.parametrize("budget,per_step,steps", [(100.0, 10.0, 10), (101.0, 10.0, 11), (99.0, 10.0, 10),
                                                   (1.0, 10.0, 1), (3e13, 4.7e10, 639)])
def test_steps_for_budget_is_fewest_steps_reaching_it(budget, per_step, steps):
    n = steps_for_budget(budget, per_step)
    assert n == steps
    assert n * per_step >= budget - 1e-6 and (n - 1) * per_step < budget  # within one step of the budget


def test_parse_budget_forms():
    assert parse_budget("2e14").value == 2e14 and parse_budget(3e13).kind == "flops"
    t = parse_budget("20min")
    assert t.is_time and t.value == 1200
    assert parse_budget("90s").value == 90 and parse_budget("2h").value == 7200
    with pytest.raises(ConfigError, match="cannot read budget"):
        parse_budget("soon")
    with pytest.raises(ConfigError, match="unknown reference run 'electra-huge'"):
        parse_budget("electra-huge@5%")


def test_budget_as_share_of_paper_run():
    full = parse_budget("electra-small@100%").value
    assert math.isclose(parse_budget("electra-small@6.25%").value, full * 0.0625)
    # The authors' flops_computation.py gives 1.29e18 for ELECTRA-Small (paper Table 1 prints 1.4e18;
    # the script's own `electra_small` entry is what a faithful port reproduces, see README).
    assert f"{full:.3g}" == "1.29e+18"

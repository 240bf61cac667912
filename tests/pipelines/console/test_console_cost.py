"""The cost calculator: the guide's numbers, the 12 M calls/year break-even, capacity and the cumulative series."""

from __future__ import annotations

import pytest

from pipelines.console.cost import (
    GUIDE, CostInputs, break_even_calls, cloud_cost, compare_costs, cost_svg, cumulative_costs, local_cost,
)


def test_default_price_reproduces_the_guides_twelve_million_break_even_over_three_years():
    inputs = CostInputs()
    assert inputs.price_per_call == 0.0115 and inputs.years == 3
    be = break_even_calls(inputs)
    # (280,000 + 3 x 45,000) / (0.0115 x 3) = 415,000 / 0.0345
    assert be == pytest.approx(415_000 / 0.0345)
    assert round(be / 1e6) == GUIDE["break_even_calls_per_year"] / 1e6 == 12


def test_the_guides_three_year_totals():
    # The guide's cloud line ($120,000 a year) is 10.43 M calls a year at the default price.
    inputs = CostInputs(calls_per_year=120_000 / 0.0115)
    assert cloud_cost(inputs) == pytest.approx(GUIDE["cloud"]["three_years"])
    assert local_cost(inputs) == GUIDE["local"]["three_years"] == 415_000
    assert compare_costs(inputs).cheaper == "cloud"
    assert compare_costs(CostInputs(calls_per_year=13_000_000)).cheaper == "local"


def test_cumulative_series_starts_at_the_investment_and_grows_by_the_yearly_cost():
    inputs = CostInputs(calls_per_year=10_000_000, years=3)
    assert cumulative_costs(inputs) == [(0, 0.0, 280_000), (1, 115_000.0, 325_000), (2, 230_000.0, 370_000),
                                        (3, pytest.approx(345_000.0), 415_000)]


def test_volume_above_one_deployments_capacity_needs_more_deployments():
    # 14.62 req/s x 31,536,000 s x 0.5 = 230.5 M calls a year per deployment
    inputs = CostInputs(calls_per_year=500_000_000)
    assert inputs.capacity_per_deployment == pytest.approx(14.62 * 31_536_000 * 0.5)
    assert inputs.deployments == 3
    assert local_cost(inputs) == 3 * 415_000


def test_free_cloud_has_no_break_even_and_bad_inputs_fail_with_the_field_named():
    assert break_even_calls(CostInputs(price_per_call=0)) is None
    for kwargs, words in (({"price_per_call": -1}, "price_per_call"), ({"years": 0}, "years"),
                          ({"utilisation": 1.5}, "utilisation"), ({"requests_per_second": 0}, "requests_per_second")):
        with pytest.raises(ValueError, match=words):
            CostInputs(**kwargs)


def test_svg_has_both_series_and_one_point_per_year():
    svg = cost_svg(compare_costs(CostInputs(years=5)))
    assert svg.startswith("<svg") and svg.count("<polyline") == 2
    assert svg.count("year ") == 6

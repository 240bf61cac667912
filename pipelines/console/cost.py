"""The deployment cost comparison (cloud API vs local serving) as a calculator: pure arithmetic, no I/O.

The guide's table: cloud $0 up front and $120,000 a year, local $280,000 up front and $45,000 a year, so
$360,000 vs $415,000 over three years, and local pays off above about 12 million calls a year. Here cloud cost
is price per call x calls (the default $0.0115 a call reproduces the 12 M/year break-even over three years) and
local cost is investment + yearly operations; the local capacity comes from the measured serving throughput
(benchmarks/README.md) and a volume above it needs more local deployments.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from html import escape

SECONDS_PER_YEAR = 365 * 24 * 3600
# benchmarks/README.md: the continuous-batching engine served 14.62 requests/s on one H200 (Qwen2 ~1B).
MEASURED_REQUESTS_PER_SECOND = 14.62
GUIDE = {"cloud": {"investment": 0, "yearly": 120_000, "three_years": 360_000},
         "local": {"investment": 280_000, "yearly": 45_000, "three_years": 415_000},
         "break_even_calls_per_year": 12_000_000}


@dataclass(frozen=True)
class CostInputs:
    """What the user edits on the cost page.

    Attributes:
        price_per_call: cloud API price of one call (USD).
        calls_per_year: expected calls a year.
        years: the horizon the totals and the break-even are computed over.
        local_investment: local hardware and setup, paid once per deployment (USD).
        local_yearly: local operations a year per deployment (power, staff, maintenance; USD).
        requests_per_second: measured throughput of one local deployment.
        utilisation: the share of the year a deployment serves at that throughput (peaks, maintenance).
    """

    price_per_call: float = 0.0115
    calls_per_year: float = 12_000_000
    years: int = 3
    local_investment: float = 280_000
    local_yearly: float = 45_000
    requests_per_second: float = MEASURED_REQUESTS_PER_SECOND
    utilisation: float = 0.5

    def __post_init__(self) -> None:
        for name in ("price_per_call", "local_investment", "local_yearly"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name}={value!r}: use a number >= 0 (USD)")
        if not isinstance(self.calls_per_year, (int, float)) or not math.isfinite(self.calls_per_year) \
                or self.calls_per_year < 0:
            raise ValueError(f"calls_per_year={self.calls_per_year!r}: use a number of calls >= 0")
        if isinstance(self.years, bool) or not isinstance(self.years, int) or not 1 <= self.years <= 30:
            raise ValueError(f"years={self.years!r}: use a whole number of years from 1 to 30")
        if not isinstance(self.requests_per_second, (int, float)) or not self.requests_per_second > 0:
            raise ValueError(f"requests_per_second={self.requests_per_second!r}: use the measured throughput (> 0)")
        if not isinstance(self.utilisation, (int, float)) or not 0 < self.utilisation <= 1:
            raise ValueError(f"utilisation={self.utilisation!r}: use a fraction in (0, 1], e.g. 0.5")

    @property
    def capacity_per_deployment(self) -> float:
        """Calls a year one local deployment serves."""
        return self.requests_per_second * SECONDS_PER_YEAR * self.utilisation

    @property
    def deployments(self) -> int:
        """Local deployments the volume needs (at least one)."""
        return max(1, math.ceil(self.calls_per_year / self.capacity_per_deployment))


def cloud_cost(inputs: CostInputs, *, years: float | None = None) -> float:
    """Cloud cost after ``years`` (default: the horizon): price per call x calls a year x years."""
    return inputs.price_per_call * inputs.calls_per_year * (inputs.years if years is None else years)


def local_cost(inputs: CostInputs, *, years: float | None = None) -> float:
    """Local cost after ``years``: (investment + yearly operations x years) per deployment needed."""
    span = inputs.years if years is None else years
    return inputs.deployments * (inputs.local_investment + inputs.local_yearly * span)


def break_even_calls(inputs: CostInputs) -> float | None:
    """Calls a year above which local is cheaper over the horizon (one deployment), or None at a price of 0.

    ``price x V x years = investment + yearly x years``, so ``V = (investment + yearly x years) / (price x years)``.
    """
    if inputs.price_per_call == 0:
        return None
    return (inputs.local_investment + inputs.local_yearly * inputs.years) / (inputs.price_per_call * inputs.years)


def cumulative_costs(inputs: CostInputs) -> list[tuple[int, float, float]]:
    """``(year, cloud, local)`` cumulative cost at the end of each year, year 0 (the investment) first."""
    return [(y, cloud_cost(inputs, years=y), local_cost(inputs, years=y)) for y in range(inputs.years + 1)]


@dataclass(frozen=True)
class CostComparison:
    """The calculator's answer for one set of inputs."""

    inputs: CostInputs
    cloud_total: float
    local_total: float
    cheaper: str
    break_even_calls_per_year: float | None
    deployments: int
    capacity_per_deployment: float
    series: tuple[tuple[int, float, float], ...]

    def to_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["series"] = [{"year": y, "cloud": c, "local": lo} for y, c, lo in self.series]
        return out


def compare_costs(inputs: CostInputs = CostInputs()) -> CostComparison:
    """Totals over the horizon, which is cheaper, the break-even volume and the cumulative series."""
    cloud, local = cloud_cost(inputs), local_cost(inputs)
    return CostComparison(inputs=inputs, cloud_total=cloud, local_total=local,
                          cheaper="local" if local < cloud else "cloud" if cloud < local else "equal",
                          break_even_calls_per_year=break_even_calls(inputs), deployments=inputs.deployments,
                          capacity_per_deployment=inputs.capacity_per_deployment,
                          series=tuple(cumulative_costs(inputs)))


def cost_svg(comparison: CostComparison, *, width: int = 640, height: int = 300) -> str:
    """An SVG line plot of cumulative cloud and local cost per year."""
    left, right, top, bottom = 80, 20, 30, 40
    series = comparison.series
    top_value = max(max(c, lo) for _y, c, lo in series) or 1.0
    years = max(series[-1][0], 1)

    def x(year: float) -> float:
        return left + (width - left - right) * year / years

    def y(value: float) -> float:
        return top + (height - top - bottom) * (1 - value / top_value)

    def line(index: int, colour: str, name: str) -> str:
        points = " ".join(f"{x(row[0]):.1f},{y(row[index]):.1f}" for row in series)
        return (f'<polyline fill="none" stroke="{colour}" stroke-width="2.5" points="{points}">'
                f"<title>{escape(name)}</title></polyline>")

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" font-family="sans-serif" font-size="12">',
             "<title>Cumulative cost: cloud vs local</title>",
             f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" stroke="#555"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="#555"/>',
             f'<text x="{left - 6}" y="{top + 4}" text-anchor="end">${top_value:,.0f}</text>',
             f'<text x="{left - 6}" y="{height - bottom}" text-anchor="end">$0</text>']
    for year, _c, _l in series:
        parts.append(f'<text x="{x(year):.1f}" y="{height - bottom + 16}" text-anchor="middle">year {year}</text>')
    parts += [line(1, "#1f77b4", "cloud"), line(2, "#d62728", "local"),
              f'<text x="{width - right - 120}" y="{top + 4}" fill="#1f77b4">cloud</text>',
              f'<text x="{width - right - 60}" y="{top + 4}" fill="#d62728">local</text>', "</svg>"]
    return "".join(parts)

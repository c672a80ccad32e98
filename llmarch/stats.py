"""Summary statistics over repeated measurements.

Percentiles use linear interpolation between closest ranks (Hyndman and Fan
type 7, numpy's default ``method="linear"``): for ``n`` sorted values
``x[0] <= ... <= x[n-1]`` the ``p``-th percentile is at rank ``h = (n - 1) * p / 100``
and equals ``x[floor(h)] + (h - floor(h)) * (x[floor(h) + 1] - x[floor(h)])``.
The standard deviation is the sample one (divides by ``n - 1``) and is absent
when there is a single value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

STAT_NAMES = ("mean", "median", "std", "min", "max", "p90", "p99")


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0-100) of ``values`` by linear interpolation."""
    if not values:
        raise ValueError("percentile of an empty sample")
    if not 0 <= p <= 100:
        raise ValueError(f"percentile must lie in [0, 100], got {p}")
    xs = sorted(values)
    h = (len(xs) - 1) * p / 100
    lo = math.floor(h)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (h - lo) * (xs[hi] - xs[lo])


@dataclass(frozen=True)
class Summary:
    """Mean, median, sample standard deviation, extremes and p90/p99 of a sample."""

    n: int
    mean: float
    median: float
    std: float | None
    min: float
    max: float
    p90: float
    p99: float

    def as_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


def summarize(values: Sequence[float]) -> Summary | None:
    """Summarise ``values``; ``None`` for an empty sample."""
    xs = [float(v) for v in values if v is not None and not math.isnan(v)]
    if not xs:
        return None
    n = len(xs)
    mean = math.fsum(xs) / n
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1)) if n > 1 else None
    return Summary(
        n=n,
        mean=mean,
        median=percentile(xs, 50),
        std=std,
        min=min(xs),
        max=max(xs),
        p90=percentile(xs, 90),
        p99=percentile(xs, 99),
    )

"""Percentiles and summaries against values worked out by hand."""

import math

import numpy as np
import pytest

from llmarch.stats import percentile, summarize


def test_percentile_hand_worked_odd_sample():
    xs = [50, 15, 40, 20, 35]  # sorted: 15 20 35 40 50
    # p90: rank (5-1)*0.9 = 3.6 -> 40 + 0.6*(50-40) = 46
    assert percentile(xs, 90) == pytest.approx(46.0)
    # p99: rank 3.96 -> 40 + 0.96*10 = 49.6
    assert percentile(xs, 99) == pytest.approx(49.6)
    # p50: rank 2 -> exactly the middle value
    assert percentile(xs, 50) == 35
    # p25: rank 1 -> 20; p0 and p100 are the extremes
    assert percentile(xs, 25) == 20
    assert percentile(xs, 0) == 15
    assert percentile(xs, 100) == 50


def test_percentile_even_sample_interpolates():
    # rank (4-1)*0.5 = 1.5 -> halfway between 2 and 3
    assert percentile([4, 1, 3, 2], 50) == pytest.approx(2.5)
    # rank 3*0.9 = 2.7 -> 3 + 0.7*(4-3)
    assert percentile([4, 1, 3, 2], 90) == pytest.approx(3.7)


def test_percentile_single_value_and_errors():
    assert percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_percentile_agrees_with_numpy_linear():
    rng = np.random.default_rng(1)
    xs = list(rng.exponential(size=37))
    for p in (1, 10, 50, 90, 99):
        assert percentile(xs, p) == pytest.approx(np.percentile(xs, p, method="linear"))


def test_summary_hand_worked():
    s = summarize([2, 4, 4, 4, 5, 5, 7, 9])
    assert s is not None
    assert s.n == 8
    assert s.mean == 5
    assert s.median == 4.5
    # squared deviations sum to 32; sample variance 32/7
    assert s.std == pytest.approx(math.sqrt(32 / 7))
    assert (s.min, s.max) == (2, 9)
    # p90: rank 7*0.9 = 6.3 -> 7 + 0.3*(9-7) = 7.6
    assert s.p90 == pytest.approx(7.6)


def test_summary_single_value_has_no_std_and_empty_is_none():
    s = summarize([3.0])
    assert s is not None and s.std is None and s.p99 == 3.0
    assert summarize([]) is None

"""Quantiles from Envoy's cumulative buckets, interpolated the way Prometheus does."""

from __future__ import annotations

import pytest

from control_plane.metrics.histogram import Histogram, merge, quantile


def h(bounds: tuple[float, ...], per_bucket: tuple[int, ...], overflow: int = 0) -> Histogram:
    cumulative, running = [], 0
    for n in per_bucket:
        running += n
        cumulative.append(running)
    return Histogram(bounds, tuple(cumulative), running + overflow)


def test_interpolates_inside_the_bucket() -> None:
    hist = h((10, 20, 40), (50, 30, 20))
    assert quantile(hist, 0.5) == pytest.approx(10.0)  # exactly the first bucket's top
    assert quantile(hist, 0.65) == pytest.approx(15.0)  # halfway through (10, 20]
    assert quantile(hist, 0.99) == pytest.approx(20 + 20 * 19 / 20)
    assert quantile(hist, 0.25) == pytest.approx(5.0)  # first bucket starts at 0


def test_skips_empty_buckets() -> None:
    hist = h((1, 5, 10, 50), (0, 0, 10, 0))
    assert quantile(hist, 0.5) == pytest.approx(7.5)
    assert quantile(hist, 0.0) == pytest.approx(5.0)


def test_overflow_answers_the_last_bound() -> None:
    assert quantile(h((10, 20), (98, 0), overflow=2), 0.99) == 20


def test_no_samples_is_none() -> None:
    assert quantile(Histogram(), 0.99) is None
    assert quantile(h((10,), (0,)), 0.5) is None
    with pytest.raises(ValueError):
        quantile(h((10,), (1,)), 1.5)


def test_merge_sums_by_bound_even_with_different_layouts() -> None:
    merged = merge([h((10, 20), (1, 2)), h((10, 20), (3, 4)), h((5, 20), (1, 1), overflow=1)])
    assert merged.bounds == (5, 10, 20)
    assert merged.per_bucket() == {5: 1, 10: 4, 20: 7}
    assert merged.count == 13  # one overflow sample stays above the last bound


def test_merge_of_nothing_is_empty() -> None:
    assert merge([]) == Histogram()


def test_matches_numpy_percentiles_on_fine_buckets() -> None:
    import numpy as np

    rng = np.random.default_rng(7)
    samples = rng.lognormal(mean=5, sigma=0.6, size=20_000)  # ms, around 150
    bounds = tuple(float(b) for b in range(5, 5000, 5))
    counts = tuple(int(((samples > b - 5) & (samples <= b)).sum()) for b in bounds)
    hist = h(bounds, counts, overflow=int((samples > bounds[-1]).sum()))
    for q in (0.5, 0.95, 0.99):
        assert quantile(hist, q) == pytest.approx(float(np.quantile(samples, q)), rel=0.02)

"""SimClock never goes backwards; latency histograms keep fixed memory and honest percentiles."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.clock import SimClock
from simulator.errors import InvariantViolation
from simulator.metrics import N_BUCKETS, LatencyHistogram, bucket_index, bucket_upper


def test_sim_clock_follows_event_time_and_allows_equal_times():
    clock = SimClock()
    clock.advance_to(10)
    clock.advance_to(10)
    clock.advance_to(25)
    assert clock.now() == 25


def test_sim_clock_rejects_time_going_backwards():
    clock = SimClock(100)
    with pytest.raises(InvariantViolation, match=r"time went backwards \(99 < 100\)"):
        clock.advance_to(99)


def test_every_value_falls_in_a_bucket_whose_upper_edge_is_within_4_percent():
    values = np.unique(
        np.concatenate([np.arange(0, 5000), np.geomspace(1, 2**50, 5000).astype(np.int64)])
    )
    index = bucket_index(values)
    upper = bucket_upper(index)
    assert (upper >= values).all()
    assert (bucket_upper(index - 1)[values > 0] < values[values > 0]).all()
    assert (upper[values >= 64] <= values[values >= 64] * 1.04).all()
    assert index.max() < N_BUCKETS


def test_percentiles_and_counts_from_chunks_equal_one_pass():
    rng = np.random.default_rng(3)
    samples = rng.lognormal(8, 1.5, 100_000).astype(np.int64)
    whole, chunked = LatencyHistogram("a"), LatencyHistogram("b")
    whole.add_samples(samples)
    for part in np.array_split(samples, 7):
        chunked.add_samples(np.concatenate([part, [-1, -1]]))  # -1: stage did not run
    assert whole.summary() == {**chunked.summary()}
    assert whole.count == 100_000
    exact = np.percentile(samples, 99, method="inverted_cdf")
    assert exact <= whole.percentile(99) <= exact * 1.04
    assert whole.percentile(100) == samples.max() == whole.max_ns

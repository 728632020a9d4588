"""SimClock never goes backwards; latency histograms keep fixed memory and honest percentiles."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.clock import SimClock
from simulator.errors import InvariantViolation
from simulator.metrics import N_BUCKETS, LatencyHistogram, StageBinner, bucket_index, bucket_upper


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


def test_the_stage_binner_equals_add_samples_row_by_row():
    rng = np.random.default_rng(5)
    rows, capacity = 5, 1000
    histograms = [LatencyHistogram(str(k)) for k in range(rows)]
    expected = [LatencyHistogram(str(k)) for k in range(rows)]
    binner = StageBinner(histograms, capacity)
    for width in (capacity, 999, 1, capacity):  # a full block, part blocks (strided views)
        block = np.full((rows, capacity), -1, np.int64)
        block[0] = rng.lognormal(8, 2, capacity).astype(np.int64)
        block[1, ::3] = rng.integers(0, 2**63 - 1, len(block[1, ::3]), dtype=np.int64)
        block[2, :70] = np.arange(70)  # exact buckets, 0 and the edges around 64
        block[4, 7] = 2**53 + 1  # rounds as a float: the same bucket as bucket_index's
        part = block[:, :width]  # row 3 never ran
        binner.add(part)
        for k in range(rows):
            expected[k].add_samples(part[k])
    for got, want in zip(histograms, expected, strict=True):
        assert (got.count, got.total_ns, got.max_ns) == (want.count, want.total_ns, want.max_ns)
        np.testing.assert_array_equal(got.counts, want.counts)
    assert histograms[3].count == 0
    assert histograms[1].count > 0

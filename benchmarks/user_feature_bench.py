"""What a user feature in plain Python costs the feature stage (a benchmark, never a test).

Per event of the GOOG day (book + trades, as obi_mlp consumes it), three variants:
  builtin  the built-in buffer over obi_mlp's 16 features (what runs without plug-ins)
  mixed    the same 16 features plus one user feature (SpreadBps below), via MixedFeatures
  own      the user feature's own code alone: its on_quote/on_trade and write per event,
           called the way the stage calls it (a book event as a quote of level 0)
overhead = mixed - builtin - own: what the mixing adds (target: about 0.3 µs per event or less).
Rounds interleave the variants so that load on a shared host hits them alike; the figure per
variant is the median round.
Usage: python benchmarks/user_feature_bench.py [--events N] [--rounds R]
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Callable
from pathlib import Path
from time import perf_counter_ns
from typing import Any

import numpy as np
import polars as pl

from simulator.features import FeatureBuffer, FeatureConfig, session_events
from simulator.features.batch import frame_book_columns
from simulator.features.user import MixedFeatures
from simulator.protocols import UserFeature
from simulator.session import resolve_session

DATA = Path(__file__).resolve().parent.parent / "data"
OBI_MLP = ("spread", "microprice", "l1_imbalance", "book_imbalance", "vol_ewma", "rsi",
           "macd_hist", "bollinger_b", "spread_z", "vol_z", "trade_flow", "time_since_trade",
           "ret_1", "ret_10", "ret_100", "macd")  # fmt: skip


class SpreadBps:
    """A typical small user feature: the spread in basis points of the mid."""

    names = ("spread_bps",)
    warmup = 1

    def __init__(self) -> None:
        self.value = float("nan")

    def on_quote(
        self, ts_recv: int, bid_px: float, bid_sz: float, ask_px: float, ask_sz: float
    ) -> None:
        self.value = (ask_px - bid_px) / (ask_px + bid_px) * 2e4

    def write(self, out: Any, at: int) -> None:  # noqa: ANN401
        out[at] = self.value

    def reset(self) -> None:
        self.value = float("nan")


def _walk(stage: Any, events: pl.DataFrame) -> int:  # noqa: ANN401
    """ns for driving `stage` (on_* then compute) over `events`, as the engine does."""
    book = frame_book_columns(events, 5)
    rows = events.select("kind", "ts_recv", "bid_px", "bid_sz", "ask_px", "ask_sz", "px", "sz",
                         "side").fill_null(0).rows()  # fmt: skip
    on_quote, on_trade, on_book, compute = (
        stage.on_quote,
        stage.on_trade,
        stage.on_book,
        stage.compute,
    )
    started = perf_counter_ns()
    for i, (kind, ts, bid, bid_sz, ask, ask_sz, px, sz, side) in enumerate(rows):
        if kind == 1:
            on_trade(ts, px, sz, side)
        elif kind == 2:
            on_book(ts, book, i)
        else:
            on_quote(ts, bid, bid_sz, ask, ask_sz)
        compute()
    return perf_counter_ns() - started


def _own(feature: UserFeature, events: pl.DataFrame) -> int:
    """ns for the user feature's own calls: a quote per mid update (level 0 of a book event,
    read the way the stage's adapter reads it), write per event."""
    book = frame_book_columns(events, 5)
    bid_px, bid_sz, ask_px, ask_sz = book.bid_px[0], book.bid_sz[0], book.ask_px[0], book.ask_sz[0]
    rows = events.select("kind", "ts_recv").rows()
    out = np.full(1, np.nan)
    on_quote, write = feature.on_quote, feature.write
    started = perf_counter_ns()
    for i, (kind, ts) in enumerate(rows):
        if kind != 1:
            on_quote(ts, bid_px[i], bid_sz[i], ask_px[i], ask_sz[i])
        write(out, 0)
    return perf_counter_ns() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    session = resolve_session("nasdaq/GOOG/2012-06-21", DATA)
    events = session_events(session, kinds=("book", "trades"), levels=5).head(args.events)
    config = FeatureConfig(features=OBI_MLP)
    builtin = FeatureBuffer(config)
    feature = SpreadBps()
    mixed = MixedFeatures(FeatureBuffer(config), [(feature, 16)], (*OBI_MLP, "spread_bps"))
    variants: dict[str, Callable[[], int]] = {
        "builtin": lambda: _walk(builtin, events),
        "mixed": lambda: _walk(mixed, events),
        "own": lambda: _own(SpreadBps(), events),
    }
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        builtin.reset()
        mixed.reset()
        for name, run in variants.items():
            samples[name].append(run() / events.height)
    ns = {name: statistics.median(values) for name, values in samples.items()}
    ns["overhead"] = ns["mixed"] - ns["builtin"] - ns["own"]
    print(json.dumps({"events": events.height, "kernel": builtin.kernel,
                      "ns_per_event": {k: round(v, 1) for k, v in ns.items()}}))  # fmt: skip


if __name__ == "__main__":
    main()

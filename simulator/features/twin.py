"""A user feature's vectorised twin against its incremental code: `user_frame` (the twin
when the feature has one, its incremental code otherwise: what `train` uses) and
`assert_twin_matches`, the check users call in their own tests.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import polars as pl

from simulator.errors import ConfigError
from simulator.features.batch import frame_book_columns
from simulator.features.buffer import BookColumns
from simulator.features.events import BOOK, TRADE
from simulator.protocols import UserFeature
from simulator.types import book_levels

FloatArray = npt.NDArray[np.float64]
Quote = Callable[[int, float, float, float, float], None]


def quote_of_book(on_quote: Quote) -> Callable[[int, BookColumns, int], None]:
    """A book handler passing level 0 on as a quote (features without on_book)."""

    def on_book(ts_recv: int, levels: BookColumns, row: int) -> None:
        on_quote(ts_recv, levels.bid_px[0][row], levels.bid_sz[0][row], levels.ask_px[0][row],
                 levels.ask_sz[0][row])  # fmt: skip

    return on_book


def user_frame(feature: UserFeature, events: pl.DataFrame) -> FloatArray:
    """One user feature over an event table: its `batch` twin when it has one."""
    batch = getattr(feature, "batch", None)
    if batch is None:
        return incremental_user_frame(feature, events)
    values = np.asarray(batch(events), dtype=np.float64)
    expected = (events.height, len(feature.names))
    if values.shape != expected:
        raise ConfigError(
            f"{type(feature).__name__}.batch returned shape {values.shape}; expected {expected} "
            "(one row per event, one column per name)"
        )
    return values


def incremental_user_frame(feature: UserFeature, events: pl.DataFrame) -> FloatArray:
    """Drive `feature` (after a reset) over `events` event by event, writing after each;
    values before its warm-up (mid updates and trades) are NaN, as in the engine."""
    feature.reset()
    width = len(feature.names)
    out = np.full((events.height, width), np.nan, dtype=np.float64)
    row_values = np.full(width, np.nan, dtype=np.float64)
    on_trade = getattr(feature, "on_trade", None)
    on_book = getattr(feature, "on_book", None) or quote_of_book(feature.on_quote)
    need_mid, need_trades = int(feature.warmup), int(getattr(feature, "warmup_trades", 0))
    book = frame_book_columns(events, max(1, book_levels(events.columns)))
    columns = ("bid_px", "bid_sz", "ask_px", "ask_sz", "px", "sz")
    bid, bid_sz, ask, ask_sz, px, sz = (
        np.asarray(events[c].to_numpy(), dtype=np.float64).tolist() for c in columns
    )
    kind, ts = events["kind"].to_list(), events["ts_recv"].to_list()
    side = events["side"].fill_null(0).to_list()
    n_mid = n_trades = 0
    for i, k in enumerate(kind):
        if k == TRADE:
            n_trades += 1
            if on_trade is not None:
                on_trade(ts[i], px[i], sz[i], side[i])
        else:
            n_mid += 1
            if k == BOOK:
                on_book(ts[i], book, i)
            else:
                feature.on_quote(ts[i], bid[i], bid_sz[i], ask[i], ask_sz[i])
        if n_mid >= need_mid and n_trades >= need_trades:
            feature.write(row_values, 0)
            out[i] = row_values
    return out


def assert_twin_matches(
    feature: UserFeature,
    events: pl.DataFrame | str,
    *,
    data_dir: Path | str = "data",
    kinds: Sequence[str] = ("book", "trades"),
    rtol: float = 1e-9,
    atol: float = 0.0,
) -> None:
    """For the user's tests: `feature.batch(events)` equals the incremental feature on every
    event after its warm-up (NaN where both are NaN). Raises AssertionError naming the first
    row and value that differ. `events`: a `session_events` table, or a session
    (venue/symbol/date or a path) read from `data_dir` with `kinds`."""
    if isinstance(events, str):
        from simulator.features.events import session_events
        from simulator.session import resolve_session

        session = resolve_session(events, Path(data_dir))
        present = tuple(k for k in kinds if k in session.files)
        events = session_events(session, kinds=present, levels=5)
    if getattr(feature, "batch", None) is None:
        raise AssertionError(f"{type(feature).__name__} has no batch(events) twin to check")
    incremental = incremental_user_frame(feature, events)
    vectorised = user_frame(feature, events)
    # rows before the warm-up are not compared
    ready = np.asarray(~np.isnan(incremental).all(axis=1), dtype=np.bool_).reshape(-1, 1)
    close = np.isclose(vectorised, incremental, rtol=rtol, atol=atol, equal_nan=True)
    bad = np.argwhere(~close & ready)
    if len(bad):
        row, col = (int(v) for v in bad[0])
        name = feature.names[col]
        raise AssertionError(
            f"{type(feature).__name__}: '{name}' differs at event {row} "
            f"(ts_recv {events['ts_recv'][row]}): batch {vectorised[row, col]!r}, "
            f"incremental {incremental[row, col]!r}; {len(bad)} value(s) differ in all"
        )

"""The user's own features, mixed with the built-in catalog in one vector.

A user feature is a small class (see `UserFeature`): it gets the same calls as the built-in
buffer (`on_quote`, and when it defines them `on_trade`, `on_book` and `on_status`; a feature
without `on_book` sees a book event as a quote of its level 0), counts its warm-up in mid
updates (and `warmup_trades` in trades), and writes its values into its own slots of the shared
vector.
`MixedFeatures` composes the built-in `FeatureBuffer` (unchanged, compiled kernel and all)
with the user's features: one vector in the order `features.names` lists them. A user feature
may have a vectorised twin `batch(events)` (used by `train`); `assert_twin_matches` checks the
twin against the incremental feature on a session, for the user's own tests.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import polars as pl

from simulator.errors import ConfigError
from simulator.features.batch import features_frame
from simulator.features.buffer import BookColumns, FeatureBuffer
from simulator.features.config import FeatureConfig
from simulator.features.twin import assert_twin_matches, quote_of_book, user_frame
from simulator.plugins import PluginSpec, Requirement, build, load_class
from simulator.protocols import UserFeature

FloatArray = npt.NDArray[np.float64]
Quote = Callable[[int, float, float, float, float], None]
Trade = Callable[[int, float, float, int], None]
Book = Callable[[int, BookColumns, int], None]
Status = Callable[[int, int], None]


REQUIRED_METHODS = ("on_quote", "write", "reset")
REQUIRED_ATTRIBUTES = ("names", "warmup")


def _book_and_quote(on_book: Book, on_quote: Quote) -> Book:
    """The built-in book handler, then a quote-only user feature on the book's level 0."""

    def book(ts: int, levels: BookColumns, row: int) -> None:
        on_book(ts, levels, row)
        on_quote(ts, levels.bid_px[0][row], levels.bid_sz[0][row], levels.ask_px[0][row],
                 levels.ask_sz[0][row])  # fmt: skip

    return book


def _quotes(calls: Sequence[Quote]) -> Quote:
    """One quote handler calling each of `calls` (explicit arguments: no *args packing)."""
    if len(calls) == 2:
        first, second = calls

        def both(ts: int, bid_px: float, bid_sz: float, ask_px: float, ask_sz: float) -> None:
            first(ts, bid_px, bid_sz, ask_px, ask_sz)
            second(ts, bid_px, bid_sz, ask_px, ask_sz)

        return both

    def each(ts: int, bid_px: float, bid_sz: float, ask_px: float, ask_sz: float) -> None:
        for call in calls:
            call(ts, bid_px, bid_sz, ask_px, ask_sz)

    return each


def _trades(calls: Sequence[Trade]) -> Trade:
    if len(calls) == 1:
        return calls[0]
    if len(calls) == 2:
        first, second = calls

        def both(ts: int, px: float, sz: float, side: int) -> None:
            first(ts, px, sz, side)
            second(ts, px, sz, side)

        return both

    def each(ts: int, px: float, sz: float, side: int) -> None:
        for call in calls:
            call(ts, px, sz, side)

    return each


def _books(calls: Sequence[Book]) -> Book:
    if len(calls) == 2:
        first, second = calls

        def both(ts: int, levels: BookColumns, row: int) -> None:
            first(ts, levels, row)
            second(ts, levels, row)

        return both

    def each(ts: int, levels: BookColumns, row: int) -> None:
        for call in calls:
            call(ts, levels, row)

    return each


def _statuses(calls: Sequence[Status]) -> Status | None:
    """One feed-status handler calling each of `calls`; None when there are none."""
    if len(calls) <= 1:
        return calls[0] if calls else None

    def each(ts: int, code: int) -> None:
        for call in calls:
            call(ts, code)

    return each


class MixedFeatures:
    """The built-in buffer plus the user's features, as one feature stage.

    `layout` gives, per user feature, its first slot in `names`; the built-in values go to the
    slots of their names. Everything is bound once here; per event the cost is the user's own
    code plus one call frame per event kind (`_fan_out`)."""

    __slots__ = (
        "_builtin_at", "_need_mid", "_need_trades", "builtin", "compute", "features", "names",
        "on_book", "on_quote", "on_status", "on_trade", "vector",
    )  # fmt: skip

    def __init__(
        self,
        builtin: FeatureBuffer,
        features: Sequence[tuple[UserFeature, int]],
        names: Sequence[str],
        builtin_used: bool = True,
    ) -> None:
        self.builtin = builtin
        self.features = tuple(features)
        self.names = tuple(names)
        # the built-in buffer's dtype: what the model runners take
        self.vector: npt.NDArray[Any] = np.full(len(self.names), np.nan, dtype=builtin.vector.dtype)
        self._builtin_at = tuple(self.names.index(n) for n in builtin.names) if builtin_used else ()
        self._need_mid = max(int(f.warmup) for f, _ in self.features)
        self._need_trades = max(int(getattr(f, "warmup_trades", 0)) for f, _ in self.features)
        users = [f for f, _ in self.features]
        self.on_quote = _quotes([builtin.on_quote, *(f.on_quote for f in users)])
        self.on_trade = _trades(
            [builtin.on_trade, *(f.on_trade for f in users if hasattr(f, "on_trade"))]
        )
        quote_only = [f.on_quote for f in users if not hasattr(f, "on_book")]
        if len(users) == 1 and quote_only:  # the common case, in one frame
            self.on_book = _book_and_quote(builtin.on_book, quote_only[0])
        else:
            self.on_book = _books(
                [builtin.on_book]
                + [f.on_book if hasattr(f, "on_book") else quote_of_book(f.on_quote) for f in users]
            )
        self.compute = self._compiled_compute()
        # None when no user feature defines it: the engine then skips the call altogether
        self.on_status = _statuses([f.on_status for f in users if hasattr(f, "on_status")])

    def _compiled_compute(self) -> Callable[[], npt.NDArray[Any]]:
        """compute(): the built-in values copied into their slots (one memoryview copy when
        they are one block in order, the common case), then each user feature writes."""
        vector, builtin_compute = self.vector, self.builtin.compute
        writes = tuple((f.write, at) for f, at in self.features)
        at = self._builtin_at
        start, size = (at[0] if at else 0), vector.itemsize
        if at == tuple(range(start, start + len(at))):
            source = self.builtin.vector.data.cast("B")[: len(at) * size]
            target = vector.data.cast("B")[start * size : (start + len(at)) * size]
            gather: tuple[tuple[int, int], ...] = ()
        else:  # scattered: value by value
            source = target = memoryview(bytearray())
            gather = tuple(enumerate(at))
        values = cast("memoryview[float]", self.builtin.vector.data)
        out = cast("memoryview[float]", vector.data)
        if len(writes) == 1 and not gather:
            ((write, offset),) = writes

            def compute_one() -> npt.NDArray[Any]:
                builtin_compute()
                target[:] = source
                write(vector, offset)
                return vector

            return compute_one

        def compute() -> npt.NDArray[Any]:
            builtin_compute()
            target[:] = source
            for i, j in gather:
                out[j] = values[i]
            for write_one, slot in writes:
                write_one(vector, slot)
            return vector

        return compute

    @property
    def ready(self) -> bool:
        builtin = self.builtin
        return (
            builtin.ready
            and builtin.n_mid_updates >= self._need_mid
            and builtin.n_trades >= self._need_trades
        )

    @property
    def config(self) -> FeatureConfig:
        return self.builtin.config

    @property
    def kernel(self) -> str:
        return self.builtin.kernel

    @property
    def ts_recv(self) -> int:
        return self.builtin.ts_recv

    @property
    def n_mid_updates(self) -> int:
        return self.builtin.n_mid_updates

    @property
    def n_trades(self) -> int:
        return self.builtin.n_trades

    def book_columns(self, batch: Any) -> BookColumns:  # noqa: ANN401 - an EventBatch
        return self.builtin.book_columns(batch)

    def reset(self) -> None:
        self.builtin.reset()
        self.vector.fill(np.nan)
        for feature, _ in self.features:
            feature.reset()

    def frame(self, events: pl.DataFrame) -> npt.NDArray[Any]:
        """The vectorised twin of the whole stage: row i = the vector after event i (the user
        features' `batch` where they have one, else their incremental code)."""
        out = np.full((events.height, len(self.names)), np.nan, dtype=self.vector.dtype)
        if self._builtin_at:
            out[:, list(self._builtin_at)] = features_frame(events, self.builtin.config)
        for feature, at in self.features:
            width = len(feature.names)
            out[:, at : at + width] = user_frame(feature, events)
        return out


def build_feature_stage(
    names: Sequence[str], plugins: Sequence[PluginSpec], *, base: Path, levels: int
) -> FeatureBuffer | MixedFeatures:
    """The feature stage of `features.names` (built-ins and the names of the user features
    `features.plugins` loads, relative to `base`). Without user features: the built-in buffer
    alone, exactly as before."""
    known = FeatureConfig().all_names
    users: list[tuple[UserFeature, str]] = []
    for i, spec in enumerate(plugins):
        key = f"features.plugins[{i}]"
        cls = load_class(spec.ref, key=key, base=base, needs=NEEDS)
        feature = build(cls, spec.params, key=key, needs=NEEDS)
        users.append((cast("UserFeature", feature), key))
    provided = _user_names(users, known)
    for name in names:
        if name not in known and name not in provided:
            choices = [*known, *provided]
            close = difflib.get_close_matches(name, choices, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; known: {', '.join(choices)}"
            raise ConfigError(f"features.names: unknown feature '{name}'{hint}")
    builtin_names = tuple(n for n in names if n in known)
    if not users:
        return FeatureBuffer(FeatureConfig(levels=levels, features=builtin_names or None))
    # a selection of only user features still runs a one-feature buffer: it counts the mid
    # updates and trades that warm-ups are measured in
    builtin = FeatureBuffer(FeatureConfig(levels=levels, features=builtin_names or ("mid",)))
    placed = [(feature, _slot(feature, key, names)) for feature, key in users]
    return MixedFeatures(builtin, placed, names, builtin_used=bool(builtin_names))


NEEDS = Requirement(stage="feature", methods=REQUIRED_METHODS, attributes=REQUIRED_ATTRIBUTES)


def _user_names(users: Sequence[tuple[UserFeature, str]], known: Sequence[str]) -> set[str]:
    provided: set[str] = set()
    for feature, key in users:
        names = getattr(feature, "names", None)
        if not isinstance(names, Sequence) or isinstance(names, str) or not names:
            raise ConfigError(f"{key}: names must be a non-empty tuple of strings; found {names!r}")
        warm = getattr(feature, "warmup", None)
        if not isinstance(warm, int) or isinstance(warm, bool) or warm < 0:
            raise ConfigError(f"{key}: warmup must be an integer >= 0; found {warm!r}")
        for name in names:
            if name in known or name in provided:
                raise ConfigError(
                    f"{key}: feature name '{name}' is already taken (by the built-in catalog "
                    "or another plug-in); rename it"
                )
            provided.add(name)
    return provided


def _slot(feature: UserFeature, key: str, names: Sequence[str]) -> int:
    """Where `feature` writes: its names must appear in features.names together, in order."""
    own = tuple(feature.names)
    missing = [n for n in own if n not in names]
    if missing:
        raise ConfigError(
            f"{key}: {type(feature).__name__} computes {', '.join(missing)}, which "
            "features.names does not list; add it there (the vector holds what names lists)"
        )
    at = list(names).index(own[0])
    if tuple(names[at : at + len(own)]) != own:
        raise ConfigError(
            f"features.names must list {type(feature).__name__}'s names together and in its "
            f"order ({', '.join(own)})"
        )
    return at


__all__ = ["MixedFeatures", "assert_twin_matches", "build_feature_stage", "user_frame"]

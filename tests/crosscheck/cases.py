"""Cross-check cases: an L2 tape and a scripted strategy, for both hftbacktest and ticktape.

A case is a list of messages (all rows sharing one timestamp). Each message has its trades
(price, size, aggressor), then its book rows (one per changed level: deletions first, so no
row ever leaves the book crossed), and the book after it (best first per side). Prices are
whole ticks and sizes whole lots here; `px(ticks)` / `qty(lots)` turn them into the floats
both simulators see, computed the same way for the tape and the orders.

Actions are decided in advance from the tape alone, after a message (never after the last):
post a post-only limit order, or cancel an earlier order if it is still open (each simulator
checks that in its own view, so a wrong fill shows up as a different cancel too).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

# hftbacktest 2.4.4's event row (hftbacktest/types.py) and flags; the reference checks the dtype
EVENT_DTYPE = np.dtype(
    [
        ("ev", "u8"),
        ("exch_ts", "i8"),
        ("local_ts", "i8"),
        ("px", "f8"),
        ("qty", "f8"),
        ("order_id", "u8"),
        ("ival", "i8"),
        ("fval", "f8"),
    ],
    align=True,
)
EXCH_EVENT, LOCAL_EVENT, BUY_EVENT, SELL_EVENT = 1 << 31, 1 << 30, 1 << 29, 1 << 28
DEPTH_EVENT, TRADE_EVENT = 1, 2
ACTION_DTYPE = np.dtype(
    [("ts", "i8"), ("kind", "i1"), ("order_id", "u8"), ("side", "i1"), ("price", "f8"),
     ("qty", "f8")]
)  # fmt: skip
POST, CANCEL = 0, 1
BUY, SELL = 1, -1


@dataclass(slots=True)
class Message:
    ts: int
    trades: list[tuple[int, int, int]] = field(default_factory=list)  # ticks, lots, aggressor
    rows: list[tuple[int, int, int]] = field(default_factory=list)  # side, ticks, lots (0: gone)
    bids: list[tuple[int, int]] = field(default_factory=list)  # book after: best first
    asks: list[tuple[int, int]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Action:
    ts: int  # after the message with this timestamp
    kind: int  # POST or CANCEL
    order_id: int
    side: int = 0
    ticks: int = 0
    lots: int = 0


@dataclass(slots=True)
class Case:
    name: str
    tick: float
    lot: float
    levels: int  # the most levels either side ever shows
    messages: list[Message]
    actions: list[Action]

    def px(self, ticks: int) -> float:
        return ticks * self.tick

    def qty(self, lots: int) -> float:
        return lots * self.lot

    def events(self) -> np.ndarray:
        """hftbacktest's rows: per message its trades, then its book rows, in file order."""
        rows = []
        flags = EXCH_EVENT | LOCAL_EVENT
        for msg in self.messages:
            for ticks, lots, aggressor in msg.trades:
                side = BUY_EVENT if aggressor > 0 else SELL_EVENT
                rows.append((TRADE_EVENT | side | flags, msg.ts, msg.ts, self.px(ticks),
                             self.qty(lots), 0, 0, 0.0))  # fmt: skip
            for book_side, ticks, lots in msg.rows:
                side = BUY_EVENT if book_side > 0 else SELL_EVENT
                rows.append((DEPTH_EVENT | side | flags, msg.ts, msg.ts, self.px(ticks),
                             self.qty(lots), 0, 0, 0.0))  # fmt: skip
        return np.array(rows, dtype=EVENT_DTYPE)

    def action_array(self) -> np.ndarray:
        return np.array(
            [(a.ts, a.kind, a.order_id, a.side, self.px(a.ticks), self.qty(a.lots))
             for a in self.actions],
            dtype=ACTION_DTYPE,
        )  # fmt: skip

    def save(self, path: str, queue: str = "risk_averse", power: float = 3.0) -> None:
        np.savez(path, events=self.events(), actions=self.action_array(), tick=self.tick,
                 lot=self.lot, queue=queue, power=power)  # fmt: skip


class Book:
    """Levels in ticks -> lots, and the rows that change them."""

    def __init__(self) -> None:
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}

    def side(self, side: int) -> dict[int, int]:
        return self.bids if side > 0 else self.asks

    def best(self, side: int) -> int | None:
        levels = self.side(side)
        if not levels:
            return None
        return max(levels) if side > 0 else min(levels)

    def sorted(self, side: int) -> list[tuple[int, int]]:
        return sorted(self.side(side).items(), reverse=side > 0)


class Builder:
    """Writes a case message by message: trades and level changes, then the decision."""

    def __init__(self, name: str, *, tick: float = 0.01, lot: float = 1.0) -> None:
        self.name, self.tick, self.lot = name, tick, lot
        self.book = Book()
        self.messages: list[Message] = []
        self.actions: list[Action] = []
        self.levels = 1
        self._ts = 1_000_000_000
        self._next_id = 1
        self._trades: list[tuple[int, int, int]] = []
        self._changes: dict[tuple[int, int], int] = {}  # (side, ticks) -> new lots

    # -- one message: trades, then level changes, then `end()` --------------------------------

    def trade(self, ticks: int, lots: int, aggressor: int) -> Builder:
        self._trades.append((ticks, lots, aggressor))
        return self

    def level(self, side: int, ticks: int, lots: int) -> Builder:
        """Set a level's size (0 deletes it) as of the end of this message."""
        self._changes[(side, ticks)] = lots
        return self

    def end(self, gap_ns: int = 1_000, *, deletions_first: bool = True) -> Builder:
        """Close the message: book rows (deletions first, so the book is never crossed, unless
        `deletions_first` is False: additions first, as some feeds send them). A message that
        changes nothing is dropped (the data would have no row for it)."""
        rows = []
        for (side, ticks), lots in self._changes.items():
            current = self.book.side(side).get(ticks, 0)
            if lots != current:
                rows.append((side, ticks, lots))
        if not rows and not self._trades:
            self._changes = {}
            return self
        self._ts += gap_ns
        rows.sort(key=lambda r: (r[2] != 0) == deletions_first)  # stable otherwise
        for side, ticks, lots in rows:
            if lots:
                self.book.side(side)[ticks] = lots
            else:
                del self.book.side(side)[ticks]
        bid, ask = self.book.best(BUY), self.book.best(SELL)
        if bid is not None and ask is not None and bid >= ask:
            raise ValueError(f"{self.name}: message {len(self.messages)} crosses the book")
        self.levels = max(self.levels, len(self.book.bids), len(self.book.asks))
        self.messages.append(
            Message(self._ts, self._trades, rows, self.book.sorted(BUY), self.book.sorted(SELL))
        )
        self._trades, self._changes = [], {}
        return self

    def view(self, side: int) -> dict[int, int]:
        """A side as of the end of this message (the changes so far applied)."""
        levels = dict(self.book.side(side))
        for (s, ticks), lots in self._changes.items():
            if s == side:
                if lots:
                    levels[ticks] = lots
                else:
                    levels.pop(ticks, None)
        return levels

    # -- the decision after the message just ended --------------------------------------------

    def post(self, side: int, ticks: int, lots: int = 1) -> int:
        order_id, self._next_id = self._next_id, self._next_id + 1
        self.actions.append(Action(self._ts, POST, order_id, side, ticks, lots))
        return order_id

    def cancel(self, order_id: int) -> None:
        self.actions.append(Action(self._ts, CANCEL, order_id))

    def case(self) -> Case:
        if self.actions and self.actions[-1].ts == self._ts:
            raise ValueError(f"{self.name}: no decision follows the last message")
        return Case(self.name, self.tick, self.lot, self.levels, self.messages, self.actions)


# -- seeded random tapes ---------------------------------------------------------------------


class RandomTape:
    """A random walk of an L2 book (at most `depth` levels a side, never crossed) with trades
    that mostly hit the best and sometimes sweep, trade through, or meet an equal-size
    level; and a scripted strategy posting at, behind and inside the best and cancelling."""

    # op weights: "walk" moves the book a lot; "calm" keeps its best levels, changing their size
    # (queues then wait long at their price: where the probabilistic models differ)
    KINDS: ClassVar = (
        "hit",
        "through",
        "resize",
        "shrink",
        "join",
        "delete",
        "add",
        "collapse",
        "wipe",
    )
    WEIGHTS: ClassVar = {
        "walk": (30, 5, 20, 15, 0, 8, 18, 8, 1),
        "calm": (25, 0, 5, 25, 30, 3, 10, 1, 0),
    }

    def __init__(
        self, seed: int, *, tick: float, lot: float, lot_scale: int, profile: str = "walk"
    ) -> None:
        self.rng = random.Random(seed)
        self.b = Builder(f"{profile}{seed}-tick{tick}-lot{lot}", tick=tick, lot=lot)
        self.weights = self.WEIGHTS[profile]
        self.sweeps = profile == "walk"
        self.scale = lot_scale  # sizes are multiples of this many lots
        self.depth = 5
        self.posted: list[int] = []

    def size(self, low: int = 1, high: int = 40) -> int:
        return self.rng.randint(low, high) * self.scale

    def build(self, n_messages: int) -> Case:
        b, rng = self.b, self.rng
        mid = 10_000
        for k in range(self.depth):
            b.level(BUY, mid - 1 - k, self.size()).level(SELL, mid + 1 + k, self.size())
        b.end()
        for i in range(n_messages):
            for _ in range(rng.choice((1, 1, 1, 2, 3))):
                self.step()
            self.refill()
            b.end(gap_ns=rng.randint(1, 5_000))
            if i < n_messages - 1 and rng.random() < 0.35:
                self.decide()
        # a last message after the last decision: the worst level of a side grows
        side = BUY if b.book.bids else SELL
        worst = min(b.book.bids) if side > 0 else max(b.book.asks, default=10_010)
        b.level(side, worst, b.book.side(side).get(worst, 0) + self.scale).end()
        return b.case()

    def view(self, side: int) -> dict[int, int]:
        return self.b.view(side)

    def best(self, side: int) -> int | None:
        levels = self.view(side)
        if not levels:
            return None
        return max(levels) if side > 0 else min(levels)

    def step(self) -> None:
        rng = self.rng
        kind = rng.choices(self.KINDS, weights=self.weights)[0]
        side = rng.choice((BUY, SELL))  # the book side acted on (a hit: the side traded at)
        getattr(self, kind)(side)

    def hit(self, side: int) -> None:
        """An aggressor trades at the best of `side`: part of it, all of it, or a sweep."""
        levels = sorted(self.view(side).items(), reverse=side > 0)
        if not levels:
            return
        aggressor = -side
        mode = self.rng.choice(("part", "part", "equal", "sweep" if self.sweeps else "part"))
        if mode == "part":
            ticks, lots = levels[0]
            traded = self.rng.randint(1, max(1, lots // self.scale)) * self.scale
            self.b.trade(ticks, traded, aggressor)
            if self.rng.random() < 0.8:  # the book mostly shows the trade; sometimes a refill
                self.b.level(side, ticks, max(0, lots - traded))
            return
        if mode == "equal":
            ticks, lots = levels[0]
            self.b.trade(ticks, lots, aggressor)
            if self.rng.random() < 0.8:
                self.b.level(side, ticks, 0)
            return
        for ticks, lots in levels[: self.rng.randint(2, 3)]:  # sweep: print level by level
            traded = lots if self.rng.random() < 0.7 else self.size(1, max(1, lots // self.scale))
            self.b.trade(ticks, min(traded, lots), aggressor)
            self.b.level(side, ticks, lots - min(traded, lots))

    def through(self, side: int) -> None:
        """A print beyond the best of `side` (no trade at the best before it)."""
        best = self.best(side)
        if best is not None:
            self.b.trade(best - side * self.rng.randint(1, 3), self.size(1, 5), -side)

    def resize(self, side: int) -> None:
        levels = list(self.view(side))
        if levels:
            self.b.level(side, self.rng.choice(levels), self.size())

    def shrink(self, side: int) -> None:
        """Cancels at one of the two best levels (where our orders mostly wait)."""
        levels = sorted(self.view(side).items(), reverse=side > 0)[:2]
        if levels:
            ticks, lots = self.rng.choice(levels)
            self.b.level(side, ticks, self.rng.randint(1, max(1, lots // self.scale)) * self.scale)

    def join(self, side: int) -> None:
        """Orders join one of the two best levels (behind ours)."""
        levels = sorted(self.view(side).items(), reverse=side > 0)[:2]
        if levels:
            ticks, lots = self.rng.choice(levels)
            self.b.level(side, ticks, lots + self.size(1, 20))

    def delete(self, side: int) -> None:
        levels = list(self.view(side))
        if levels:
            self.b.level(side, self.rng.choice(levels), 0)

    def add(self, side: int) -> None:
        """A new level: inside the spread, in a gap, or behind the worst."""
        best, other = self.best(side), self.best(-side)
        if best is None:
            return  # refill() repopulates an empty side
        choice = self.rng.random()
        if choice < 0.3 and other is not None and abs(other - best) > 1:
            ticks = best + side  # one tick better than the best, still not crossing
        elif choice < 0.7:
            ticks = best - side * self.rng.randint(1, 4)
        else:
            worst = min(self.view(side)) if side > 0 else max(self.view(side))
            ticks = worst - side * self.rng.randint(1, 2)
        if ticks not in self.view(side):
            self.b.level(side, ticks, self.size())

    def collapse(self, side: int) -> None:
        """The best of `side` goes and the other side moves onto (or past) its price."""
        best = self.best(side)
        if best is None:
            return
        self.b.level(side, best, 0)
        onto = best - side * self.rng.randint(0, 1)  # onto the old best, or one tick past it
        others = self.view(side)
        if all((t < onto) if side > 0 else (t > onto) for t in others):
            self.b.level(-side, onto, self.size())

    def wipe(self, side: int) -> None:
        for ticks in self.view(side):
            self.b.level(side, ticks, 0)

    def refill(self) -> None:
        """Keep each side non-empty most of the time and at most `depth` levels deep."""
        for side in (BUY, SELL):
            levels = self.view(side)
            other = self.best(-side)
            if not levels and self.rng.random() < 0.5:
                anchor = other if other is not None else 10_000 + side
                self.b.level(side, anchor - side * self.rng.randint(1, 3), self.size())
            ordered = sorted(self.view(side), reverse=side > 0)
            for ticks in ordered[self.depth :]:
                self.b.level(side, ticks, 0)

    def decide(self) -> None:
        rng = self.rng
        for _ in range(rng.choice((1, 1, 2))):
            if self.posted and rng.random() < 0.3:
                self.b.cancel(rng.choice(self.posted))
                continue
            side = rng.choice((BUY, SELL))
            ticks = self.price(side)
            if ticks is not None:
                self.posted.append(self.b.post(side, ticks, rng.randint(1, 5) * self.scale))

    def price(self, side: int) -> int | None:
        best, other = self.b.book.best(side), self.b.book.best(-side)
        if best is None:
            return None if other is None else other - side * self.rng.randint(1, 3)
        choice = self.rng.random()
        if choice < 0.45:
            return best  # join the best
        if choice < 0.75:
            return best - side * self.rng.randint(1, 3)  # behind it (maybe in a gap)
        if choice < 0.9 and other is not None and abs(other - best) > 1:
            return best + side  # inside the spread: at the front
        if choice < 0.95 and other is not None:
            return other  # at the other side's best: a post-only order expires
        return best - side * self.rng.randint(4, 8)  # deep, often below what is shown


def random_case(
    seed: int, *, tick: float, lot: float, lot_scale: int = 1, profile: str = "walk", n: int = 600
) -> Case:
    return RandomTape(seed, tick=tick, lot=lot, lot_scale=lot_scale, profile=profile).build(n)

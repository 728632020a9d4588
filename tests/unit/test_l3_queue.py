"""The exact L3 FIFO queue (`venue.queue = "l3_fifo"`): hand-written order events, then a slice
of the bundled GOOG LOBSTER day against an independent recomputation with an explicit FIFO."""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow.parquet as pq

from simulator.execution.l3 import CANCEL, DELETE, EXECUTE, NEW
from simulator.types import Side
from tests.conftest import REPO
from tests.unit.test_queue_venue import Tape

GOOG = REPO / "data" / "nasdaq" / "GOOG" / "2012-06-21"


class L3Tape(Tape):
    """The queue tapes' venue with `l3_fifo`, plus order-level events."""

    def __init__(self) -> None:
        super().__init__("l3_fifo")

    def book(self, bid_px: float, bid_sz: float, ask_px: float, ask_sz: float) -> L3Tape:
        super().book(bid_px, bid_sz, ask_px, ask_sz)
        return self

    def event(self, event: int, order_id: int, size: float, px: float, side: int) -> L3Tape:
        self.ts += 1
        m = self.market
        m.order_event, m.order_id, m.order_sz, m.order_px, m.order_side = (
            event,
            order_id,
            size,
            px,
            side,
        )
        m.order_ts = self.ts
        m.n_order_events += 1
        self.venue.on_market(m, self.fills)
        return self


def test_orders_behind_us_do_not_count_and_executing_them_fills_us_partly():
    tape = L3Tape().book(100.0, 300.0, 101.0, 50.0)
    ours = tape.post(Side.BUY, 100.0, qty=100.0)  # 300 visible in front
    tape.event(NEW, 77, 200.0, 100.0, +1)  # behind us
    tape.event(DELETE, 5, 100.0, 100.0, +1)  # an older order in front leaves: 200 ahead
    tape.event(CANCEL, 77, 50.0, 100.0, +1)  # behind us: nothing changes
    tape.event(EXECUTE, 6, 200.0, 100.0, +1)  # the rest in front executes: we are first
    assert tape.filled() == []
    tape.event(EXECUTE, 77, 60.0, 100.0, +1)  # behind us executed: the aggressor passed us
    assert tape.filled() == [(ours, 100.0, 60.0)]
    tape.event(EXECUTE, 77, 90.0, 100.0, +1)
    assert tape.filled()[-1] == (ours, 100.0, 40.0)  # capped at what was left of ours
    assert tape.venue.n_resting == 0


def test_one_event_is_shared_by_our_orders_in_arrival_order():
    tape = L3Tape().book(100.0, 10.0, 101.0, 50.0)
    a = tape.post(Side.SELL, 101.0, qty=30.0)  # behind the 50 asks
    b = tape.post(Side.SELL, 101.0, qty=30.0)
    tape.event(EXECUTE, 9, 40.0, 102.0, -1)  # bought through 101: 40 reached our level
    assert tape.filled() == [(a, 101.0, 30.0), (b, 101.0, 10.0)]


def test_a_crossing_new_order_fills_us_and_a_cancel_after_the_fill_is_too_late():
    tape = L3Tape().book(100.0, 10.0, 101.0, 50.0)
    ours = tape.post(Side.BUY, 100.0, qty=5.0)
    tape.event(NEW, 3, 8.0, 100.0, -1)  # a sell limit at our buy price: matched us first
    assert tape.filled() == [(ours, 100.0, 5.0)]
    assert not tape.venue.cancel(ours)


@dataclass
class _Fifo:
    """Independent recomputation: the level as an explicit FIFO list of [id, size] with our
    order in it; orders older than the session (unknown ids) are one block at the front."""

    ours: float
    queue: list[list[float]] = field(default_factory=list)

    def fill(self, event: int, order_id: int, size: float, px: float, side: int, price: float):
        mine = side == +1  # we rest a buy
        if mine and px == price:
            ids = [int(e[0]) for e in self.queue]
            if event == NEW:
                self.queue.append([order_id, size])
                return 0.0
            if order_id in ids:
                i = ids.index(order_id)
                position = i < ids.index(-1)  # in front of us?
                if event == EXECUTE and not position:
                    return size
                self.queue[i][1] -= size
                if event == DELETE or self.queue[i][1] <= 0:
                    del self.queue[i]
                return 0.0
            self.queue[0][1] = max(self.queue[0][1] - size, 0.0)  # an order older than us
            return 0.0
        if mine and event == EXECUTE and px < price:
            return size
        if not mine and event == NEW and px <= price:
            return size
        return 0.0


def test_l3_fifo_on_a_goog_slice_matches_an_explicit_fifo():
    orders = pq.read_table(GOOG / "orders.parquet").slice(2_000, 6_000).to_pylist()
    book = pq.read_table(GOOG / "book.parquet", columns=["seq", "bid_px_0", "bid_sz_0"])
    seqs = book.column("seq").to_pylist()
    start = seqs.index(orders[0]["seq"] - 1)
    bid_px, bid_sz = book.column("bid_px_0")[start].as_py(), book.column("bid_sz_0")[start].as_py()

    tape = L3Tape().book(bid_px, bid_sz, bid_px + 10.0, 1.0)
    ours = tape.post(Side.BUY, bid_px, qty=500.0)
    fifo = _Fifo(ours=500.0, queue=[[-2, bid_sz], [-1, 500.0]])  # -2: older orders, -1: ours
    expected: list[float] = []
    left = 500.0
    for row in orders:
        args = (row["event_type"], row["order_id"], row["sz"], row["px"], row["side"])
        tape.event(*args)
        if left > 0:
            take = min(fifo.fill(*args, price=bid_px), left)
            if take > 0:
                expected.append(take)
                left -= take
    got = [qty for order_id, px, qty in tape.filled() if order_id == ours]
    assert got == expected
    assert sum(got) > 0, "the slice should reach our place in the queue"

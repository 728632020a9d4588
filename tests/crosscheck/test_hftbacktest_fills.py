"""ticktape's venue queue models against the real hftbacktest 2.4.4, fill for fill.

Both simulators get the same tapes (tests/crosscheck/cases.py: seeded random L2 walks plus
hand-written tapes for trade-through, level deletion, the other side moving onto our price,
equal-size trades, an empty opposite side, fractional lots, rows crossing for a moment) and
the same scripted strategy (post-only limit orders and cancels at fixed decision points, once
per timestamp after all its rows). hftbacktest (hbt_reference.py, in a subprocess) runs
NoPartialFillExchange with zero order latency and RiskAdverseQueueModel (what `venue.queue =
"risk_averse"` must reproduce exactly), or ProbQueueModel with PowerProbQueueFunc(2), (3) or
LogProbQueueFunc (`prob_power` with queue_power 2, 3; `prob_log`). ticktape's
SimVenue(queue=..., partial_fills=False) is driven here the way the engine drives it: within a
message the trades first, then the book; the decision's orders meet the venue at once (zero
latency). Every order must end the same way in both: filled (same price, quantity and
timestamp), expired (a post-only order that would have crossed), cancelled, or still open.

The reference needs an interpreter with hftbacktest: `make crosscheck` builds `.venv-crosscheck`
(hftbacktest pins numpy<2.3, so it lives apart from the project's venv) and runs these tests;
`TICKTAPE_HFTBACKTEST_PYTHON` names another one. Marked slow (not in the default run); without
the reference they skip. The checks that the tapes really exercise every rule run by default.

Tape conventions that keep the comparison exact (the rules: simulator/execution/resting.py):
the tape always shows every level it has (ticktape's book gets one column more than the deepest
side, so no level is "beyond the recorded depth"), book rows of a message mostly put deletions
first (hftbacktest applies rows one by one; `crossing_rows` shows a transiently crossed book
ends the same), and prices are whole ticks computed the same way for tape and orders.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import math
import os
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from simulator.execution import SimVenue, ZeroLatency
from simulator.execution.sim_venue import NoteKind
from simulator.intents import OrderStatus
from simulator.market import MarketState
from simulator.types import CancelRequest, Fill, Nanos, OrderRequest, OrderType, Side
from tests.conftest import REPO
from tests.crosscheck.cases import BUY, POST, SELL, Builder, Case, random_case

SEEDS = (1, 2, 3, 4, 5, 6, 7, 8)
# queue models compared: ticktape's venue.queue (+ queue_power) = hftbacktest's queue model
MODELS = {
    "risk_averse": ("risk_averse", 3.0),  # RiskAdverseQueueModel: the one the issue requires
    "prob_power2": ("prob_power", 2.0),  # ProbQueueModel(PowerProbQueueFunc(2))
    "prob_power3": ("prob_power", 3.0),
    "prob_log": ("prob_log", 3.0),  # ProbQueueModel(LogProbQueueFunc)
}
BUYER, SELLER = 1, -1


@dataclass(frozen=True, slots=True)
class Outcome:
    status: str  # filled | expired | cancelled | open
    price_tick: int = 0  # filled only: the fill's price in ticks
    qty: float = 0.0
    ts: int = 0


# -- the tapes ---------------------------------------------------------------------------


def random_cases() -> list[Case]:
    """Seeded walks: tick 0.01 with whole lots; tick 0.5 with sizes in 0.001 lots (float sizes
    leave rounding crumbs in the queue, decided by the lot rounding); and calm books whose best
    levels stay while others join and cancel (where the queue models differ)."""
    cases = [random_case(seed, tick=0.01, lot=1.0) for seed in SEEDS]
    cases += [random_case(100 + seed, tick=0.5, lot=0.001, lot_scale=100) for seed in SEEDS[:4]]
    cases += [random_case(200 + seed, tick=0.01, lot=1.0, profile="calm") for seed in SEEDS[:4]]
    return cases


def equal_size_trades() -> Case:
    b = Builder("equal-size-trades")
    b.level(BUY, 10_000, 30).level(SELL, 10_002, 5).end()
    first = b.post(BUY, 10_000)  # behind 30
    b.trade(10_000, 10, SELLER).end().trade(10_000, 20, SELLER).end()  # 30 traded: the front
    b.level(BUY, 10_000, 12).end()  # the level shrinks: ahead stays 0
    b.trade(10_000, 1, SELLER).end()  # any size now fills
    second = b.post(BUY, 10_000, 3)  # behind 12
    b.trade(10_000, 12, SELLER).level(BUY, 10_000, 0).end()  # equal to the level, then gone
    b.level(BUY, 10_000, 7).end()  # back: we stay at the front
    b.trade(10_000, 1, SELLER).end()
    b.post(SELL, 10_002, 2)  # behind 5; one trade of exactly 5: front, unfilled
    b.trade(10_002, 5, BUYER).end()
    b.level(BUY, 9_999, 4).end()
    assert (first, second) == (1, 2)
    return b.case()


def trade_through() -> Case:
    b = Builder("trade-through")
    b.level(BUY, 10_000, 500).level(BUY, 9_999, 50).level(SELL, 10_001, 500)
    b.level(SELL, 10_002, 50).end()
    b.post(BUY, 10_000)  # behind 500
    b.post(SELL, 10_001)
    b.post(BUY, 9_999)  # behind 50; the print at 9_999 is at its price, not through
    b.trade(9_999, 1, SELLER).end()  # below our buy at 10_000: filled whatever is ahead
    b.trade(10_003, 1, BUYER).end()  # above our sell
    b.trade(9_998, 2, BUYER).end()  # a buyer's print never fills our buys
    b.level(BUY, 9_999, 60).end()
    return b.case()


def level_deletion() -> Case:
    b = Builder("level-deletion")
    b.level(BUY, 10_000, 30).level(BUY, 9_998, 10).level(SELL, 10_003, 5).end()
    b.post(BUY, 10_000)
    b.post(BUY, 9_998, 2)
    b.level(BUY, 10_000, 0).end()  # our level deleted: the front
    b.level(BUY, 10_000, 80).level(BUY, 9_998, 0).level(BUY, 9_997, 4).end()
    b.trade(10_000, 1, SELLER).end()  # fills the first buy
    b.level(BUY, 9_998, 40).end()  # the deeper level comes back larger: still at the front
    b.trade(9_998, 1, SELLER).end()
    b.level(SELL, 10_002, 1).end()
    return b.case()


def other_side_moves_onto_us() -> Case:
    b = Builder("other-side-moves")
    b.level(BUY, 10_000, 30).level(BUY, 9_999, 10).level(SELL, 10_004, 5).end()
    onto = b.post(BUY, 10_000)
    inside = b.post(SELL, 10_002)  # inside the spread: the front
    b.level(BUY, 10_000, 0).end()  # our buy's level goes
    b.level(SELL, 10_004, 0).level(SELL, 10_000, 7).end()  # the ask falls onto our buy
    b.level(BUY, 9_999, 0).level(BUY, 9_998, 3).end()  # the bid moves away: nothing
    b.level(SELL, 10_000, 0).level(SELL, 10_005, 2).end()
    b.level(BUY, 10_003, 4).end()  # the bid rises past our sell: filled at our price
    b.post(SELL, 10_004)  # at the front, inside
    b.level(SELL, 10_005, 0).level(SELL, 10_004, 9).end()  # the ask side moves, not the bid
    b.level(BUY, 10_002, 1).end()
    assert (onto, inside) == (1, 2)
    return b.case()


def empty_opposite_side() -> Case:
    b = Builder("empty-opposite-side")
    b.level(BUY, 10_000, 30).level(SELL, 10_002, 5).level(SELL, 10_003, 5).end()
    b.post(BUY, 10_001)
    b.level(SELL, 10_002, 0).level(SELL, 10_003, 0).end()  # no asks at all
    b.post(BUY, 10_005)  # nothing to cross: it rests, at the front
    b.post(SELL, 10_000)  # at the best bid: expires
    b.level(BUY, 9_999, 3).end()
    b.level(SELL, 10_004, 2).end()  # an ask appears below our 10_005 buy: filled
    b.level(SELL, 10_001, 2).end()  # falls onto the 10_001 buy
    b.level(BUY, 9_998, 1).end()
    return b.case()


def cancels() -> Case:
    b = Builder("cancels")
    b.level(BUY, 10_000, 30).level(SELL, 10_001, 5).end()
    first = b.post(BUY, 10_000)
    b.trade(10_000, 30, SELLER).end()  # at the front
    b.cancel(first)
    b.trade(10_000, 5, SELLER).end()  # cancelled: no fill
    again = b.post(BUY, 10_000)  # queues behind what is shown again
    b.level(BUY, 10_000, 40).end()
    b.trade(10_000, 1, SELLER).end()
    b.cancel(again)  # still open: cancelled
    third = b.post(SELL, 10_001)
    b.trade(10_001, 6, BUYER).end()  # 5 ahead: filled
    b.cancel(third)  # too late: filled already
    b.level(BUY, 9_999, 1).end()
    return b.case()


def fractional_lots() -> Case:
    b = Builder("fractional-lots", tick=0.5, lot=0.001)
    b.level(BUY, 200, 300).level(SELL, 202, 700).end()  # 0.3 and 0.7
    b.post(BUY, 200, 5)
    b.post(SELL, 202, 5)
    b.trade(200, 100, SELLER).trade(200, 200, SELLER).end()  # 0.1 + 0.2 vs 0.3: a crumb
    b.trade(202, 300, BUYER).trade(202, 400, BUYER).end()  # 0.3 + 0.4 vs 0.7
    b.trade(200, 1, SELLER).end()  # 0.001 more: filled
    # 0.7 (700 * 0.001 = 0.7000000000000001) - 0.3 - 0.4 leaves 5.6e-17 ahead; one more lot
    # makes ahead / lot = -0.99999...: filled (hftbacktest fills once it rounds below 0, though
    # floor() gives 0 whole lots; ticktape filled one trade later before the cross-check)
    b.trade(202, 1, BUYER).end()
    b.trade(202, 1, BUYER).end()
    b.level(BUY, 199, 2).end()
    return b.case()


def crossing_rows() -> Case:
    # additions before deletions: hftbacktest applies row by row and sees a crossed book for a
    # moment (it moves the other best past it); ticktape sees the message's end. Same fills.
    b = Builder("crossing-rows")
    b.level(BUY, 10_000, 10).level(BUY, 9_999, 5).level(SELL, 10_001, 5)
    b.level(SELL, 10_002, 5).end()
    b.post(SELL, 10_002)  # behind 5
    b.post(BUY, 9_999)  # behind 5
    b.post(SELL, 10_004)
    b.trade(10_001, 5, BUYER).level(BUY, 10_001, 3).level(SELL, 10_001, 0)
    b.end(deletions_first=False)  # the bid joins 10_001 before the ask there is deleted
    b.level(BUY, 10_002, 4).level(SELL, 10_002, 0).level(SELL, 10_003, 2)
    b.end(deletions_first=False)  # the bid rises onto our sell at 10_002: filled
    b.level(SELL, 10_001, 1).level(BUY, 10_002, 0).level(BUY, 10_001, 0).level(BUY, 10_000, 0)
    b.end(deletions_first=False)  # the ask falls to 10_001, above our 9_999 buy: open
    b.level(SELL, 9_999, 2).level(BUY, 9_999, 0).end(deletions_first=False)  # onto the buy
    b.level(BUY, 9_990, 1).end()
    return b.case()


DIRECTED = (
    equal_size_trades,
    trade_through,
    level_deletion,
    other_side_moves_onto_us,
    empty_opposite_side,
    cancels,
    fractional_lots,
    crossing_rows,
)


@functools.cache
def all_cases() -> tuple[Case, ...]:
    return (*(make() for make in DIRECTED), *random_cases())


# -- ticktape ------------------------------------------------------------------------------


Columns = tuple[tuple[memoryview, memoryview, memoryview, memoryview], ...]


def book_columns(case: Case) -> Columns:
    """One book row per message; one column more than the deepest side ever shows."""
    n, width = len(case.messages), case.levels + 1
    cols = np.full((4, width, n), math.nan)
    for row, msg in enumerate(case.messages):
        for k, (ticks, lots) in enumerate(msg.bids):
            cols[0, k, row], cols[1, k, row] = case.px(ticks), case.qty(lots)
        for k, (ticks, lots) in enumerate(msg.asks):
            cols[2, k, row], cols[3, k, row] = case.px(ticks), case.qty(lots)
    return tuple((col(cols[0, k]), col(cols[1, k]), col(cols[2, k]), col(cols[3, k]))
                 for k in range(width))  # fmt: skip


def col(values: np.ndarray) -> memoryview:
    return np.ascontiguousarray(values).data


def run_ticktape(
    case: Case, queue: str = "risk_averse", power: float = 3.0
) -> tuple[dict[int, Outcome], Counter[str]]:
    """Every order's outcome, and what caused the fills (trade at / through our price, the
    other side's book moving onto us)."""
    venue = SimVenue(
        latency=ZeroLatency(),
        depth="l2",
        queue=queue,
        queue_power=power,
        lot_size=case.lot,
        partial_fills=False,
    )
    market = MarketState(case.levels + 1)
    market.book_columns = book_columns(case)
    fills: list[Fill] = []
    causes: Counter[str] = Counter()
    limits: dict[int, float] = {}
    by_ts: dict[int, list[int]] = {}
    for i, action in enumerate(case.actions):
        by_ts.setdefault(action.ts, []).append(i)
    for row, msg in enumerate(case.messages):
        market.ts_recv = market.ts_event = Nanos(msg.ts)
        for ticks, lots, aggressor in msg.trades:
            market.last_trade_px, market.last_trade_sz = case.px(ticks), case.qty(lots)
            market.last_trade_side, market.last_trade_ts = aggressor, msg.ts
            market.n_trades += 1
            n = venue.on_market(market, fills)
            for fill in fills[len(fills) - n :]:
                at = fill.px == limits[fill.order_id] == market.last_trade_px
                causes["trade at our price" if at else "trade through our price"] += 1
        if msg.rows:
            market.book_row = row
            market.bid_px, market.bid_sz = _best(case, msg.bids)
            market.ask_px, market.ask_sz = _best(case, msg.asks)
            causes["the other side moved onto us"] += venue.on_market(market, fills)
        for i in by_ts.get(msg.ts, ()):
            _act(case, i, venue, limits)
        venue.process_due(msg.ts, market, fills)
    return _outcomes(case, venue, fills), causes


def _best(case: Case, levels: list[tuple[int, int]]) -> tuple[float, float]:
    if not levels:
        return math.nan, math.nan
    return case.px(levels[0][0]), case.qty(levels[0][1])


def _act(case: Case, i: int, venue: SimVenue, limits: dict[int, float]) -> None:
    action = case.actions[i]
    ts = Nanos(action.ts)
    if action.kind == POST:
        limits[action.order_id] = case.px(action.ticks)
        venue.submit(
            OrderRequest(
                order_id=action.order_id,
                ts_decision=ts,
                side=Side(action.side),
                qty=case.qty(action.lots),
                order_type=OrderType.LIMIT,
                limit_px=case.px(action.ticks),
                post_only=True,
            )
        )
        return
    resting = {o.order_id for o in venue.open_order_list() if o.status == OrderStatus.RESTING}
    if action.order_id in resting:  # the strategy cancels only what it sees open
        venue.submit_cancel(CancelRequest(order_id=action.order_id, ts_decision=ts))


def _outcomes(case: Case, venue: SimVenue, fills: list[Fill]) -> dict[int, Outcome]:
    out = {a.order_id: Outcome("open") for a in case.actions if a.kind == POST}
    for note in venue.notes:
        if note.kind == NoteKind.POST_ONLY_REJECTED:
            out[note.order_id] = Outcome("expired")
        elif note.kind == NoteKind.CANCELLED:
            out[note.order_id] = Outcome("cancelled")
    for fill in fills:
        if out[fill.order_id].status != "open":
            raise AssertionError(f"{case.name}: order {fill.order_id} filled twice or after end")
        out[fill.order_id] = Outcome("filled", round(fill.px / case.tick), fill.qty, fill.ts_event)
    return out


# -- hftbacktest -----------------------------------------------------------------------------


def reference_python() -> str | None:
    """An interpreter with hftbacktest: $TICKTAPE_HFTBACKTEST_PYTHON, the project's
    .venv-crosscheck, or this one if hftbacktest is installed here."""
    named = os.environ.get("TICKTAPE_HFTBACKTEST_PYTHON")
    if named:
        return named
    local = REPO / ".venv-crosscheck" / "bin" / "python"
    if local.exists():
        return str(local)
    if importlib.util.find_spec("hftbacktest") is not None:
        return sys.executable
    return None


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[int, Outcome]]:
    """hftbacktest's outcome of every order of every case (one subprocess for all)."""
    python = reference_python()
    if python is None:
        pytest.skip("no hftbacktest: `make crosscheck` (or TICKTAPE_HFTBACKTEST_PYTHON=...)")
    folder = tmp_path_factory.mktemp("crosscheck")
    paths = []
    for case in all_cases():
        for model, (queue, power) in MODELS.items():
            path = folder / f"{case.name}~{model}.npz"
            case.save(str(path), queue, power)
            paths.append(str(path))
    script = Path(__file__).with_name("hbt_reference.py")
    done = subprocess.run(
        [python, str(script), *paths], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, f"hftbacktest reference failed:\n{done.stderr[-3000:]}"
    result: dict[str, dict[int, Outcome]] = {}
    for file_name, run in json.loads(done.stdout).items():
        result[file_name.removesuffix(".npz")] = {
            int(order_id): _reference_outcome(o) for order_id, o in run["orders"].items()
        }
    return result


def _reference_outcome(order: dict[str, object]) -> Outcome:
    status = str(order["status"])
    if status != "filled":
        return Outcome(status)
    price_tick, qty, ts = order["price_tick"], order["qty"], order["ts"]
    assert isinstance(price_tick, int)
    assert isinstance(qty, float)
    assert isinstance(ts, int)
    return Outcome(status, price_tick, qty, ts)


CASE_NAMES = [case.name for case in all_cases()]


@pytest.mark.slow
@pytest.mark.parametrize("model", list(MODELS))
@pytest.mark.parametrize("name", CASE_NAMES)
def test_ticktape_fills_equal_hftbacktest(
    name: str, model: str, reference: dict[str, dict[int, Outcome]]
):
    case = next(c for c in all_cases() if c.name == name)
    ours, _ = run_ticktape(case, *MODELS[model])
    theirs = reference[f"{name}~{model}"]
    assert set(ours) == set(theirs)
    diff = [(oid, ours[oid], theirs[oid]) for oid in sorted(ours) if ours[oid] != theirs[oid]]
    assert not diff, f"{name}: {len(diff)} orders differ (ticktape, hftbacktest): {diff[:5]}"


# -- the tapes are worth comparing (default run, no reference needed) -------------------------


def test_random_tapes_exercise_every_rule():
    statuses: Counter[str] = Counter()
    causes: Counter[str] = Counter()
    for case in random_cases():
        outcomes, case_causes = run_ticktape(case)
        statuses.update(o.status for o in outcomes.values())
        causes.update(case_causes)
    assert min(statuses[s] for s in ("filled", "expired", "cancelled", "open")) >= 5, statuses
    assert len(causes) == 3, causes
    assert min(causes.values()) >= 5, causes


def test_calm_tapes_tell_the_queue_models_apart():
    # so that matching hftbacktest with each model says something about that model
    calm = [case for case in random_cases() if case.name.startswith("calm")]
    baseline = [run_ticktape(case)[0] for case in calm]
    for model in ("prob_power2", "prob_log"):
        ends = [run_ticktape(case, *MODELS[model])[0] for case in calm]
        differ = sum(a[k] != b[k] for a, b in zip(ends, baseline, strict=True) for k in a)
        assert differ >= 20, (model, differ)


def test_directed_tapes_end_as_the_rules_say():
    expected = {
        "equal-size-trades": {1: ("filled", 10_000), 2: ("filled", 10_000), 3: ("open", 0)},
        "trade-through": {1: ("filled", 10_000), 2: ("filled", 10_001), 3: ("open", 0)},
        "level-deletion": {1: ("filled", 10_000), 2: ("filled", 9_998)},
        "other-side-moves": {1: ("filled", 10_000), 2: ("filled", 10_002), 3: ("open", 0)},
        "empty-opposite-side": {1: ("filled", 10_001), 2: ("filled", 10_005), 3: ("expired", 0)},
        "cancels": {1: ("cancelled", 0), 2: ("cancelled", 0), 3: ("filled", 10_001)},
        "fractional-lots": {1: ("filled", 200), 2: ("filled", 202)},
        "crossing-rows": {1: ("filled", 10_002), 2: ("filled", 9_999), 3: ("open", 0)},
    }
    for make in DIRECTED:
        case = make()
        outcomes, _ = run_ticktape(case)
        got = {oid: (o.status, o.price_tick) for oid, o in outcomes.items()}
        assert got == expected[case.name], case.name

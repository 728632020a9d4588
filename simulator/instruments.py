"""Instruments: tick size, lot size and minimum notional of one symbol.

A live run reads its instrument from the venue (`from_exchange_info`: a Binance
/api/v3/exchangeInfo answer; `from_coinbase_product`: a Coinbase product; what the venues and
`ticktape feed serve` serve) and its recording keeps it in meta.json (`from_meta`), so the
replay sizes orders the same way (digest parity). Other sessions, and a live run whose venue
did not answer, take the bundled table below, keyed by (venue, symbol): a symbol it does not
know gets its venue's default; an unknown venue gets whole units, any price and no minimum
(the simulator's behaviour before instruments).
"""

from __future__ import annotations

import decimal
import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from simulator.errors import ConfigError

# Absorbs binary rounding before the floor, so 0.3 / 0.1 (= 2.9999999999999996) counts as 3.
_EPSILON = 1e-9


@dataclass(frozen=True, slots=True)
class Instrument:
    """`tick`: price increment (0 = any price); `lot`: quantity increment (> 0);
    `min_notional`: the smallest qty x price the venue accepts, in quote currency (0 = none)."""

    symbol: str
    tick: float
    lot: float
    min_notional: float

    def __post_init__(self) -> None:
        for name, value, ok in (
            ("tick", self.tick, 0.0 <= self.tick < math.inf),
            ("lot", self.lot, 0.0 < self.lot < math.inf),
            ("min_notional", self.min_notional, 0.0 <= self.min_notional < math.inf),
        ):
            if not ok:
                raise ConfigError(f"instrument {self.symbol}: bad {name} {value!r}")

    def as_meta(self, source: str) -> dict[str, object]:
        """The session meta entry a recording keeps, so that its replay sizes alike."""
        return {"tick": self.tick, "lot": self.lot, "min_notional": self.min_notional,
                "source": source}  # fmt: skip

    def round_qty(self, qty: float) -> float:
        """`qty` rounded DOWN to a whole number of lots (never more than asked for)."""
        return math.floor(qty / self.lot + _EPSILON) * self.lot

    def round_price(self, price: float, *, up: bool) -> float:
        """`price` on the tick grid: up (a sell's limit) or down (a buy's), never through it.

        The answer is the float nearest the grid price written with the tick's decimals
        (61837.63, not 61837.630000000005): a price read from the venue's decimals comes
        back bit for bit, and one within float rounding of the grid is not moved a tick."""
        tick = self.tick
        if tick == 0.0:
            return price
        ticks = price / tick
        # float rounding of the division grows with the number of ticks: tolerate it
        slack = max(_EPSILON, abs(ticks) * 1e-14)
        whole = math.ceil(ticks - slack) if up else math.floor(ticks + slack)
        scale, units = _grid(tick)
        return whole * units / scale  # integers divided: the float nearest the decimal

    def limit_price(self, price: float, side: int) -> float:
        """A limit order's price on the tick, never more aggressive than asked (a buy's
        rounded down, a sell's up); NaN when it is not a finite price > 0 (or a buy's
        rounds to 0): the engine rejects that order as BAD_PRICE."""
        if not 0.0 < price < math.inf:  # also NaN
            return math.nan
        rounded = self.round_price(price, up=side < 0)
        return rounded if rounded > 0.0 else math.nan


@functools.lru_cache(maxsize=64)
def _grid(tick: float) -> tuple[float, int]:
    """(10**d, tick * 10**d) for the d decimal places of `tick` as written (0.01: (100.0, 1),
    0.25: (100.0, 25), 1e-08: (1e8, 1), 5.0: (1.0, 5)): a grid price is units / 10**d."""
    exponent = decimal.Decimal(repr(tick)).normalize().as_tuple().exponent
    places = max(0, -exponent) if isinstance(exponent, int) else 0
    scale = 10.0**places  # exact up to 10**22
    return scale, round(tick * scale)


# (tick, lot, min_notional) per venue default and per (venue, SYMBOL); Binance spot values
# as exchangeInfo gives them for the bundled pairs
_VENUE_DEFAULTS: Mapping[str, tuple[float, float, float]] = {
    "nasdaq": (0.01, 1.0, 0.0),  # equities: cent ticks, whole shares
    "binance": (0.01, 0.00001, 5.0),
    "coinbase": (0.01, 0.00000001, 1.0),
}
_TABLE: Mapping[tuple[str, str], tuple[float, float, float]] = {
    ("binance", "BTCUSDT"): (0.01, 0.00001, 5.0),
    ("binance", "ETHUSDT"): (0.01, 0.0001, 5.0),
    ("coinbase", "BTC-USD"): (0.01, 0.00000001, 1.0),
}
_WHOLE_UNITS = (0.0, 1.0, 0.0)
WHOLE_UNITS: Final = Instrument("", *_WHOLE_UNITS)
"""Whole units, any price, no minimum: a run whose symbol is not known."""


def bundled(venue: str, symbol: str) -> Instrument:
    """The bundled table's instrument for `symbol` on `venue` (see the module docstring)."""
    venue, symbol = venue.lower(), symbol.upper()
    tick, lot, min_notional = _TABLE.get((venue, symbol), _VENUE_DEFAULTS.get(venue, _WHOLE_UNITS))
    return Instrument(symbol, tick, lot, min_notional)


def from_session_name(name: str) -> Instrument:
    """The instrument of a session named venue/SYMBOL/date (whole units for other names)."""
    parts = name.strip("/").split("/")
    if len(parts) < 3:
        return Instrument(name, *_WHOLE_UNITS)
    return bundled(parts[-3], parts[-2])


def from_meta(meta: Mapping[str, object], name: str) -> Instrument:
    """The instrument a recording kept in its meta (a live session: from the venue), else
    the bundled table's for the session's name."""
    kept = meta.get("instrument")
    if not isinstance(kept, Mapping):
        return from_session_name(name)
    try:
        values = [float(kept[k]) for k in ("tick", "lot", "min_notional")]
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"{name}: meta.json 'instrument' is bad ({e!r})") from None
    return Instrument(name.strip("/").split("/")[-2] if "/" in name else name, *values)


def from_exchange_info(info: Mapping[str, Any], symbol: str) -> Instrument:
    """`symbol`'s PRICE_FILTER tickSize, LOT_SIZE stepSize and (MIN_)NOTIONAL minNotional."""
    for entry in info.get("symbols", ()):
        if str(entry.get("symbol", "")).upper() != symbol.upper():
            continue
        filters = {f.get("filterType"): f for f in entry.get("filters", ())}
        try:
            tick = float(filters.get("PRICE_FILTER", {}).get("tickSize", 0.0))
            lot = float(filters["LOT_SIZE"]["stepSize"])
            notional = filters.get("NOTIONAL") or filters.get("MIN_NOTIONAL") or {}
            min_notional = float(notional.get("minNotional", 0.0))
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"exchangeInfo {symbol}: bad or missing filter ({e})") from None
        return Instrument(symbol.upper(), tick, lot, min_notional)
    raise ConfigError(f"exchangeInfo has no symbol {symbol.upper()}")


def from_coinbase_product(product: Mapping[str, Any], product_id: str) -> Instrument:
    """A Coinbase product: Advanced Trade's GET /api/v3/brokerage/market/products/<id>
    (`price_increment`, `base_increment`, `quote_min_size`) or the Exchange API's GET
    /products/<id> (`quote_increment` is its price tick, `min_market_funds`)."""
    wanted = product_id.upper()
    named = product.get("product_id", product.get("id"))
    if str(named).upper() != wanted:
        raise ConfigError(f"Coinbase product answer names {named!r}, not {wanted}")
    try:
        tick = float(product.get("price_increment") or product["quote_increment"])
        lot = float(product["base_increment"])
        minimum = product.get("quote_min_size") or product.get("min_market_funds") or 0.0
        return Instrument(wanted, tick, lot, float(minimum))
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"Coinbase product {wanted}: bad or missing field ({e!r})") from None

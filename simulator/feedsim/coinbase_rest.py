"""The Coinbase feed server's REST side: Advanced Trade's public product endpoint,
GET /api/v3/brokerage/market/products/<product_id>, for the products the recording holds.

Increments are read off the recording's own decimals (the finest level2 price and quantity
written for the product: BTC-USD 0.01 and 0.00000001, as Coinbase states them); the minimum
order value is Coinbase's 1 USD (`quote_min_size`). Field names and the string-encoded numbers
follow the Advanced Trade reference; fields a simulator cannot know (24 h volume, the price
change) are left out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

import orjson

from simulator.feedsim.coinbase_tape import CoinbaseRecord
from simulator.feedsim.rest import HttpReply

PRODUCTS_PATH: Final = "/api/v3/brokerage/market/products/"
QUOTE_MIN_SIZE: Final = "1"  # Coinbase's minimum order value, in the quote currency
_MAX_PLACES: Final = 8


def _places(texts: Iterable[str]) -> int:
    """Decimal places of the finest number among `texts` ("1921.3", "0.001" -> 3)."""
    return max((len(t.partition(".")[2].rstrip("0")) for t in texts), default=_MAX_PLACES)


def _increment(places: int) -> str:
    """Coinbase writes an increment as a plain decimal: 2 -> "0.01", 0 -> "1"."""
    places = min(places, _MAX_PLACES)
    return "1" if places == 0 else f"{10.0**-places:.{places}f}"


def product_json(product_id: str, prices: Iterable[str], sizes: Iterable[str]) -> dict[str, object]:
    """The product as Advanced Trade describes it, increments from the given decimals."""
    base, _, quote = product_id.partition("-")
    tick = _increment(_places(prices))
    lot = _increment(_places(sizes))
    return {
        "product_id": product_id,
        "base_increment": lot,
        "quote_increment": tick,
        "price_increment": tick,
        "quote_min_size": QUOTE_MIN_SIZE,
        "quote_max_size": "150000000",
        "base_min_size": lot,
        "base_max_size": "3400",
        "base_currency_id": base,
        "quote_currency_id": quote,
        "base_display_symbol": base,
        "quote_display_symbol": quote,
        "status": "online",
        "is_disabled": False,
        "cancel_only": False,
        "limit_only": False,
        "post_only": False,
        "trading_disabled": False,
        "auction_mode": False,
        "product_type": "SPOT",
        "view_only": False,
    }


class ProductsApi:
    """The product answers of the recording's products (built once, at start)."""

    __slots__ = ("_bodies",)

    def __init__(self, records: Sequence[CoinbaseRecord]) -> None:
        prices: dict[str, set[str]] = {}
        sizes: dict[str, set[str]] = {}
        for record in records:
            for event in record.l2:
                held_prices = prices.setdefault(event.product, set())
                held_sizes = sizes.setdefault(event.product, set())
                for _, price, size in event.levels:
                    held_prices.add(price)
                    held_sizes.add(size)
        self._bodies = {
            product: orjson.dumps(product_json(product, prices[product], sizes[product]))
            for product in sorted(prices)
        }

    @property
    def products(self) -> list[str]:
        return list(self._bodies)

    def answer(self, path: str) -> HttpReply:
        if not path.startswith(PRODUCTS_PATH):
            return _error(
                404, "NOT_FOUND", f"no route {path}; this feed serves {PRODUCTS_PATH}<id>"
            )
        product = path[len(PRODUCTS_PATH) :].upper()
        body = self._bodies.get(product)
        if body is None:
            served = ", ".join(self._bodies) or "none"
            return _error(404, "NOT_FOUND", f"ProductID {product} not found (served: {served})")
        return HttpReply(200, body)


def _error(status: int, error: str, message: str) -> HttpReply:
    """Advanced Trade's error body."""
    return HttpReply(
        status, orjson.dumps({"error": error, "error_details": message, "message": message})
    )

"""One adapter module per venue: its connection profile, subscriptions and pure normaliser.

`adapter(feed, ...)` picks one by name; the live client sees only `VenueAdapter`.
To add a venue: a module here with an `adapter(kinds, url, rest_url)` and a line in ADAPTERS.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

from simulator.errors import ConfigError
from simulator.live.adapter import VenueAdapter
from simulator.live.venues import binance, coinbase

ADAPTERS: Final[dict[str, Callable[[Sequence[str], str | None, str | None], VenueAdapter]]] = {
    "binance": binance.adapter,
    "coinbase": coinbase.adapter,
}


def adapter(
    feed: str, kinds: Sequence[str], *, url: str | None = None, rest_url: str | None = None
) -> VenueAdapter:
    """The adapter of venue `feed` subscribed to `kinds`; the default URLs unless given."""
    make = ADAPTERS.get(feed)
    if make is None:
        raise ConfigError(f"--feed {feed!r} unknown; expected one of {', '.join(ADAPTERS)}")
    return make(kinds, url, rest_url)


__all__ = ["ADAPTERS", "adapter"]

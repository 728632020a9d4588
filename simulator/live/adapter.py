"""What the live client needs from a venue, and what a venue adapter gives it.

One module per venue under `simulator.live.venues` builds a `VenueAdapter`: the connection
profile (URLs, subscriptions, stream names), the pure normaliser of one symbol, which
streams may conflate, and how a symbol's stream names start (for routing frames). The
client (`run`, `connection`) knows these protocols only, never a venue by name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from simulator.instruments import Instrument
from simulator.live.consumed import Consumed
from simulator.live.frames import Frame

LIVE_KINDS: Final = ("quotes", "trades", "book")
"""The consumed kinds a live feed can subscribe (a strategy's other kinds are ignored)."""


class VenueProfile(Protocol):
    """What differs between venues; the connection manager does the rest."""

    @property
    def name(self) -> str: ...

    @property
    def needs_client_ping(self) -> bool:
        """True when the venue wants client pings; False when the server pings (Binance)."""
        ...

    def stream_url(self, base_url: str, symbols: Sequence[str]) -> str:
        """The websocket URL to open for `symbols`."""
        ...

    def subscribe_messages(self, symbols: Sequence[str]) -> list[bytes]:
        """Text messages to send after each connect, in order ([] if the URL names the streams)."""
        ...

    def stream_of(self, payload: bytes) -> str:
        """The stream a received message belongs to; cheap (runs on every message)."""
        ...

    def is_data(self, stream: str) -> bool:
        """Market data: resets the idle timer and completes a rollover switch."""
        ...

    def snapshot_url(self, rest_base: str, symbol: str) -> str | None:
        """The REST book snapshot URL, or None when the feed brings its own snapshot."""
        ...

    def is_shutdown_notice(self, stream: str) -> bool:
        """The server is about to close this connection: roll over now."""
        ...

    @property
    def refusal_hint(self) -> str:
        """What to suggest when the venue refuses this location (HTTP 451)."""
        ...


class FeedActions(Protocol):
    """What a normaliser may ask of the network (LiveNetwork); thread-safe."""

    def request_snapshot(self, symbol: str) -> None: ...

    def send(self, messages: Sequence[bytes]) -> None: ...


class Normalizer(Protocol):
    """Frames of one symbol -> consumed events (BinanceNormalizer, CoinbaseNormalizer)."""

    def on_frame(self, frame: Frame, out: Consumed) -> None: ...

    def act(self, feed: FeedActions) -> None:
        """Ask `feed` for what the book needs now (a REST snapshot, a resubscribe), once."""
        ...


@dataclass(frozen=True, slots=True)
class InstrumentSource:
    """Where a venue states a symbol's tick, lot and minimum notional (read once at start):
    GET `url(rest_base, symbol)`, then `read(answer, symbol)` on the JSON object it answers
    (ConfigError when that does not describe the symbol)."""

    name: str  # the session meta's `instrument.source`: "exchangeInfo", "products"
    url: Callable[[str, str], str]
    read: Callable[[Mapping[str, Any], str], Instrument]


@dataclass(frozen=True, slots=True)
class VenueAdapter:
    """A venue as the live client sees it (built by `simulator.live.venues.adapter`)."""

    name: str
    profile: VenueProfile
    url: str
    rest_url: str
    max_size: int  # largest websocket message, bytes
    conflatable: Callable[[str], bool]  # streams whose waiting frame a newer one replaces
    normalizer: Callable[[str], Normalizer]  # one per symbol
    prefix: Callable[[str], str]  # a symbol's stream-name prefix, for routing frames
    instrument: InstrumentSource | None = None  # None: the bundled instruments table


__all__ = [
    "LIVE_KINDS",
    "FeedActions",
    "InstrumentSource",
    "Normalizer",
    "VenueAdapter",
    "VenueProfile",
]

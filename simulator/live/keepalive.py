"""Keeping a feed connection alive: its settings, reconnect backoff, connect rate limit and
the counters the dashboard reads (LIVE.md 1.2, 4, 6a). Used by `connection`."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol

import numpy as np

from simulator.errors import ConfigError

_POSITIVE: Final = (
    "backoff_initial_s",
    "backoff_cap_s",
    "connect_interval_s",
    "open_timeout_s",
    "close_timeout_s",
    "dead_peer_timeout_s",
    "idle_timeout_s",
    "max_lifetime_s",
    "rollover_timeout_s",
    "client_ping_interval_s",
    "max_queue",
    "max_size",
    "rest_timeout_s",
    "snapshot_tries",
    "snapshot_backoff_initial_s",
    "snapshot_backoff_cap_s",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionConfig:
    """Connection settings. Durations are float seconds: they are socket and timer settings at
    the network edge, handed to asyncio as they are, and never reach the pipeline."""

    url: str  # websocket base, e.g. BINANCE_WS_URL
    rest_url: str  # REST base, e.g. BINANCE_REST_URL
    symbols: tuple[str, ...]
    seed: int = 0  # backoff jitter
    backoff_initial_s: float = 0.5
    backoff_factor: float = 2.0
    backoff_cap_s: float = 30.0
    backoff_jitter: float = 0.25  # ± fraction
    stable_after_s: float = 10.0  # a connection this old resets the backoff
    connect_interval_s: float = 1.0  # Binance: 300 attempts / 5 min / IP
    open_timeout_s: float = 10.0
    close_timeout_s: float = 2.0
    dead_peer_timeout_s: float = 60.0  # no bytes at all, pings included
    idle_timeout_s: float = 10.0  # no data frame
    max_lifetime_s: float = 23 * 3600 + 50 * 60  # Binance closes at 24 h
    rollover_timeout_s: float = 30.0  # the new connection must deliver data within this
    subscribe_interval_s: float = 0.2  # between subscribe messages (Binance: 5 msgs/s)
    client_ping_interval_s: float = 20.0  # only for profiles that need client pings
    max_queue: int = 256  # websockets' receive buffer, in messages; then TCP pushes back
    max_size: int = 2**22  # largest message, bytes
    rest_timeout_s: float = 10.0
    snapshot_tries: int = 5
    snapshot_backoff_initial_s: float = 0.25
    snapshot_backoff_cap_s: float = 3.0
    rest_max_wait_s: float = 60.0  # a longer Retry-After (a 418 ban) fails the snapshot

    def __post_init__(self) -> None:
        if not self.url.startswith(("ws://", "wss://")):
            raise ConfigError(f"url must start with ws:// or wss://, was {self.url!r}")
        if not self.rest_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"rest_url must start with http:// or https://, was {self.rest_url!r}"
            )
        if not self.symbols:
            raise ConfigError("symbols is empty; name at least one, e.g. ('BTCUSDT',)")
        for name in _POSITIVE:
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0, was {getattr(self, name)}")
        if self.backoff_factor < 1 or not 0 <= self.backoff_jitter < 1:
            raise ConfigError("backoff_factor must be >= 1 and backoff_jitter in [0, 1)")


class Backoff:
    """Reconnect delays: `initial * factor**n`, capped, times a seeded uniform draw from
    [1 - jitter, 1 + jitter], and never above the cap (a hard ceiling a user can rely on)."""

    __slots__ = ("_base", "_cap", "_factor", "_initial", "_jitter", "_rng", "attempts")

    def __init__(
        self, initial_s: float, factor: float, cap_s: float, jitter: float, rng: np.random.Generator
    ) -> None:
        self._initial, self._factor, self._cap, self._jitter = initial_s, factor, cap_s, jitter
        self._rng = rng
        self._base = min(cap_s, initial_s)
        self.attempts = 0

    def next_delay(self) -> float:
        spread = float(self._rng.uniform(-self._jitter, self._jitter))
        delay = min(self._cap, self._base * (1.0 + spread))
        self._base = min(self._cap, self._base * self._factor)  # no overflow however long
        self.attempts += 1
        return delay

    def reset(self) -> None:
        self._base = min(self._cap, self._initial)
        self.attempts = 0


class ConnectLimiter:
    """At most one connect attempt per `interval_s`, whatever asks (reconnects, rollovers)."""

    __slots__ = ("_interval", "_next", "_now")

    def __init__(self, interval_s: float, now: Callable[[], float] = time.monotonic) -> None:
        self._interval = interval_s
        self._now = now
        self._next = -float("inf")

    def reserve(self) -> float:
        """Take the next slot; returns how long to wait for it (seconds, >= 0)."""
        now = self._now()
        at = max(now, self._next)
        self._next = at + self._interval
        return at - now


class Backpressure(Protocol):
    """What the reader asks after each message (the inbox is one): `full` is read without a
    lock on the hot path; `wait_for_room()` returns once the consumer has drained it."""

    @property
    def full(self) -> bool: ...

    async def wait_for_room(self) -> None: ...


@dataclass(slots=True)
class ConnectionStats:
    """Counters for a dashboard on another thread: plain numbers, written only by the loop."""

    connects: int = 0  # connections opened, rollover ones included
    reconnects: int = 0  # connections that replaced a lost one (a hole is possible)
    rollovers: int = 0  # make-before-break switches (no hole)
    connect_failures: int = 0
    frames: int = 0  # messages received, every connection
    bytes_in: int = 0
    data_frames: int = 0
    overlap_dropped: int = 0  # an old connection's messages after the switch
    idle_timeouts: int = 0
    dead_peer_timeouts: int = 0
    shutdown_notices: int = 0
    last_frame_wall_ns: int = 0
    conn_id: int = 0  # the connection handed on; 0: none
    last_close_code: int = 0
    last_close_reason: str = ""
    last_error: str = ""
    last_error_wall_ns: int = 0
    backoff_s: float = 0.0  # the backoff being waited now
    rest_requests: int = 0
    rest_429: int = 0  # 429 and 418 answers
    snapshots: int = 0
    snapshot_failures: int = 0
    snapshots_superseded: int = 0


__all__ = ["Backoff", "Backpressure", "ConnectLimiter", "ConnectionConfig", "ConnectionStats"]

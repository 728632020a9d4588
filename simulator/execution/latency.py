"""Order-leg latency models (after hftbacktest's entry/response latency traits).

`entry_ns(ts)`: how long an order sent at `ts` takes to reach the venue.
`response_ns(ts)`: how long a venue report produced at `ts` takes to reach the pipeline.
Models take the time as an argument and never read a clock, so a model is reproducible
whenever its own inputs are (calibrated models will draw from a seeded Generator).
"""

from __future__ import annotations

from typing import Protocol

from simulator.errors import ConfigError


class LatencyModel(Protocol):
    def entry_ns(self, ts: int) -> int: ...
    def response_ns(self, ts: int) -> int: ...


class ZeroLatency:
    """Orders reach the venue, and reports reach us, at the same nanosecond."""

    __slots__ = ()

    def entry_ns(self, ts: int) -> int:
        return 0

    def response_ns(self, ts: int) -> int:
        return 0

    def __repr__(self) -> str:
        return "ZeroLatency()"


class FixedLatency:
    """Constant entry and response latencies, in nanoseconds."""

    __slots__ = ("_entry_ns", "_response_ns")

    def __init__(self, entry_ns: int, response_ns: int) -> None:
        for name, value in (("entry_ns", entry_ns), ("response_ns", response_ns)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(
                    f"FixedLatency: '{name}' must be an integer number of nanoseconds >= 0; "
                    f"found {value!r} (convert microseconds with int(us * 1000))"
                )
        self._entry_ns = entry_ns
        self._response_ns = response_ns

    def entry_ns(self, ts: int) -> int:
        return self._entry_ns

    def response_ns(self, ts: int) -> int:
        return self._response_ns

    def __repr__(self) -> str:
        return f"FixedLatency(entry_ns={self._entry_ns}, response_ns={self._response_ns})"

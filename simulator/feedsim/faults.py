"""Seeded fault injection for the feed server: the schedule (a TOML file) and the injection log.

```toml
seed = 7
[[fault]]
kind = "disconnect"   # fires before served message `at` (0-based) is sent
at = 1200
mode = "abrupt"       # "clean": close 1001; "abrupt": transport.abort(), the client sees 1006
[[fault]]
kind = "random"       # `count` faults of `kinds` at seeded positions in [from, to)
kinds = ["duplicate", "reorder", "delay"]
count = 10
```

Stream faults fire when the tape reaches `at`: disconnect, gap (the next `count` diff-depth
messages of `symbol` are not sent; the server's own book still applies them), delay (stall
`ms`; the frames due meanwhile then go out in a burst), silent (no data for `ms`, pings still
answered; the schedule shifts, nothing is lost), duplicate, reorder (message `at` goes out
right after the next one), shutdown_notice (the serverShutdown event, then close 1001 after
`ms`). Connection faults: dead_peer (every connection goes dead: no data, no pings, its
client's frames unread, for `ms`, then the socket is dropped), reject_subscribe (the next
`count` subscriptions, URL upgrades or SUBSCRIBE messages, are refused with Binance's error),
slow_consumer (connections with at least `bytes` waiting in the server's send buffer are
closed 1008 as a venue kicks a slow consumer; 0: all), lifetime (from then on a connection
lives at most `ms`, the 24 h cutoff compressed: closed 1001 at its age). REST faults are armed
at `at` and hit the next requests: stale_snapshot (a depth answer older than every diff sent),
http_429 / http_418 (`count` depth requests answered 429, or 418 "banned", with Retry-After),
http_451 (depth requests and websocket upgrades answered 451; `count` of them, default all).

`at` counts served messages (0 = the first one after any --start). Defaults: ms 500 (delay),
2000 (silent), 1000 (shutdown_notice), 5000 (dead_peer), 2000 (lifetime); gap count 1,
symbol: that of the next diff-depth message. A random table may also set ms, mode and
retry_after for the kinds it draws; its gaps skip one message. The same seed and tape always
give the same faults.
"""

from __future__ import annotations

import random
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Final

import orjson

from simulator.errors import ConfigError, did_you_mean
from simulator.feedsim.tape import FeedTape, is_diff_depth, symbol_of

STREAM_KINDS: Final = (
    "disconnect",
    "gap",
    "delay",
    "silent",
    "duplicate",
    "reorder",
    "shutdown_notice",
    "dead_peer",
    "reject_subscribe",
    "slow_consumer",
    "lifetime",
)
HTTP_KINDS: Final = ("stale_snapshot", "http_429", "http_418", "http_451")
KINDS: Final = STREAM_KINDS + HTTP_KINDS
_KEYS: Final[dict[str, frozenset[str]]] = {
    "disconnect": frozenset({"mode"}),
    "gap": frozenset({"count", "symbol"}),
    "delay": frozenset({"ms"}),
    "silent": frozenset({"ms"}),
    "duplicate": frozenset(),
    "reorder": frozenset(),
    "shutdown_notice": frozenset({"ms"}),
    "dead_peer": frozenset({"ms"}),
    "reject_subscribe": frozenset({"count"}),
    "slow_consumer": frozenset({"bytes"}),
    "lifetime": frozenset({"ms"}),
    "stale_snapshot": frozenset(),
    "http_429": frozenset({"count", "retry_after"}),
    "http_418": frozenset({"count", "retry_after"}),
    "http_451": frozenset({"count"}),
    "random": frozenset({"kinds", "count", "from", "to", "ms", "mode", "retry_after"}),
}
_DEFAULT_MS: Final = {
    "delay": 500,
    "silent": 2000,
    "shutdown_notice": 1000,
    "dead_peer": 5000,
    "lifetime": 2000,
}
MODES: Final = ("clean", "abrupt")


@dataclass(frozen=True, slots=True, kw_only=True)
class Fault:
    """One fault at served message `at`. `number` is its 1-based [[fault]] table."""

    kind: str
    at: int = 0
    number: int = 0
    mode: str = "clean"
    ms: int = 0
    count: int | None = 1  # gap: messages skipped; http_429/451: requests hit (None: all)
    symbol: str | None = None
    retry_after: int = 1
    buffered: int = 0  # slow_consumer: bytes waiting in the send buffer that get one kicked
    skip: tuple[int, ...] = ()  # gap: the served indices it skips (filled by `plan`)


@dataclass(frozen=True, slots=True, kw_only=True)
class RandomFaults:
    """`count` faults of `kinds` at seeded positions in [start, stop); stop None: tape end."""

    kinds: tuple[str, ...]
    count: int
    start: int = 0
    stop: int | None = None
    number: int = 0
    ms: int | None = None
    mode: str = "clean"
    retry_after: int = 1


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """A schedule bound to one tape: faults by served index, random ones drawn."""

    by_index: dict[int, tuple[Fault, ...]]
    skipped: frozenset[int]  # served indices a gap keeps from the clients

    def at(self, index: int) -> tuple[Fault, ...]:
        return self.by_index.get(index, ())


@dataclass(frozen=True, slots=True)
class FaultSchedule:
    seed: int = 0
    faults: tuple[Fault, ...] = ()
    randoms: tuple[RandomFaults, ...] = ()
    where: str = "faults"  # the file, for messages

    def plan(self, tape: FeedTape) -> FaultPlan:
        """Draw the random faults and resolve gaps on `tape`; ConfigError if one cannot fire."""
        rng = random.Random(self.seed)
        faults = [self._check(f, tape) for f in self.faults]
        for spec in self.randoms:
            faults += [self._check(f, tape) for f in self._draw(spec, rng, len(tape))]
        faults.sort(key=lambda f: f.at)  # stable: file order at one index
        by_index: dict[int, list[Fault]] = {}
        for fault in faults:
            by_index.setdefault(fault.at, []).append(fault)
        skipped = frozenset(i for f in faults for i in f.skip)
        return FaultPlan({i: tuple(fs) for i, fs in by_index.items()}, skipped)

    def _draw(self, spec: RandomFaults, rng: random.Random, length: int) -> list[Fault]:
        stop = length if spec.stop is None else spec.stop
        if stop > length or spec.start >= stop:
            raise ConfigError(
                f"{self.where}: [[fault]] #{spec.number} (random): needs 0 <= from < to <= "
                f"{length} (the tape length); found from = {spec.start}, to = {stop}"
            )
        drawn = []
        for _ in range(spec.count):
            kind = rng.choice(spec.kinds)
            ms = _DEFAULT_MS.get(kind, 0) if spec.ms is None else spec.ms
            at = rng.randrange(spec.start, stop)
            drawn.append(
                Fault(
                    kind=kind,
                    at=at,
                    number=spec.number,
                    mode=spec.mode,
                    ms=ms,
                    retry_after=spec.retry_after,
                )
            )
        return drawn

    def _check(self, fault: Fault, tape: FeedTape) -> Fault:
        where = f"{self.where}: [[fault]] #{fault.number} ({fault.kind})"
        if fault.at >= len(tape) and not (fault.at == 0 and fault.kind in HTTP_KINDS):
            raise ConfigError(
                f"{where}: at = {fault.at} is past the end of the tape ({len(tape)} messages)"
            )
        if fault.symbol is not None and fault.symbol not in tape.symbols:
            raise ConfigError(
                f"{where}: symbol '{fault.symbol}' is not served; the tape has "
                f"{', '.join(tape.symbols)}{did_you_mean(fault.symbol, tape.symbols)}"
            )
        if fault.kind != "gap":
            return fault
        return _resolve_gap(fault, tape, where)


def _resolve_gap(fault: Fault, tape: FeedTape, where: str) -> Fault:
    """The served indices of the next `count` diff-depth messages of the gap's symbol."""
    symbol = fault.symbol
    skip: list[int] = []
    for i in range(fault.at, len(tape)):
        stream = tape.streams[tape.start + i]
        if not is_diff_depth(stream) or (symbol is not None and symbol_of(stream) != symbol):
            continue
        symbol = symbol_of(stream)
        skip.append(i)
        if len(skip) == fault.count:
            break
    if not skip:
        raise ConfigError(f"{where}: no diff-depth message at or after at = {fault.at}")
    return replace(fault, symbol=symbol, skip=tuple(skip))


def load_faults(path: Path) -> FaultSchedule:
    """Read and validate a fault file; ConfigError names the file, the fault and the key."""
    try:
        data = tomllib.loads(path.read_text())
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the fault file ({e.strerror})") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from e
    return parse_faults(data, str(path))


def parse_faults(data: dict[str, object], where: str = "faults") -> FaultSchedule:
    """A schedule from parsed TOML (`where` names the file in messages)."""
    for key in data:
        if key not in ("seed", "fault"):
            raise ConfigError(
                f"{where}: unknown top-level key '{key}'"
                f"{did_you_mean(key, ('seed', 'fault'))}; expected seed and [[fault]] tables"
            )
    seed = _int(data.get("seed", 0), f"{where}: seed", minimum=None)
    tables = data.get("fault", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ConfigError(f"{where}: 'fault' must be [[fault]] tables")
    faults: list[Fault] = []
    randoms: list[RandomFaults] = []
    for number, table in enumerate(tables, 1):
        parsed = _parse_fault(table, number, where)
        if isinstance(parsed, RandomFaults):
            randoms.append(parsed)
        else:
            faults.append(parsed)
    return FaultSchedule(seed, tuple(faults), tuple(randoms), where)


def _parse_fault(table: dict[str, object], number: int, where: str) -> Fault | RandomFaults:
    kind = table.get("kind")
    here = f"{where}: [[fault]] #{number}"
    if not isinstance(kind, str) or kind not in _KEYS:
        raise ConfigError(
            f"{here}: kind = {kind!r} is not a fault kind{did_you_mean(str(kind), _KEYS)}; "
            f"expected one of {', '.join(_KEYS)}"
        )
    here = f"{here} ({kind})"
    allowed = _KEYS[kind] | ({"kind"} if kind == "random" else {"kind", "at"})
    for key in table:
        if key not in allowed:
            raise ConfigError(
                f"{here}: unknown key '{key}'{did_you_mean(key, allowed)}; "
                f"{kind} takes {', '.join(sorted(allowed))}"
            )
    mode = table.get("mode", "clean")
    if mode not in MODES:
        raise ConfigError(f"{here}: mode = {mode!r}; expected 'clean' or 'abrupt'")
    ms = _int(table["ms"], f"{here}: ms") if "ms" in table else None
    retry_after = _int(table.get("retry_after", 1), f"{here}: retry_after")
    if kind == "random":
        return _parse_random(table, number, here, str(mode), ms, retry_after)
    count = _int(table["count"], f"{here}: count", minimum=1) if "count" in table else None
    symbol = table.get("symbol")
    if symbol is not None and not isinstance(symbol, str):
        raise ConfigError(f"{here}: symbol must be a string like 'BTCUSDT', found {symbol!r}")
    return Fault(
        kind=kind,
        at=_int(table.get("at", 0), f"{here}: at"),
        number=number,
        mode=str(mode),
        ms=_DEFAULT_MS.get(kind, 0) if ms is None else ms,
        count=count if count is not None or kind == "http_451" else 1,
        symbol=None if symbol is None else symbol.upper(),
        retry_after=retry_after,
        buffered=_int(table.get("bytes", 0), f"{here}: bytes"),
    )


def _parse_random(
    table: dict[str, object], number: int, here: str, mode: str, ms: int | None, retry: int
) -> RandomFaults:
    kinds = table.get("kinds")
    if not isinstance(kinds, list) or not kinds or not all(k in KINDS for k in kinds):
        bad = [k for k in kinds if k not in KINDS] if isinstance(kinds, list) else kinds
        hint = did_you_mean(str(bad[0]), KINDS) if isinstance(bad, list) and bad else ""
        raise ConfigError(
            f"{here}: kinds must be a non-empty list of fault kinds, found {bad!r}{hint}; "
            f"expected some of {', '.join(KINDS)}"
        )
    stop = _int(table["to"], f"{here}: to") if "to" in table else None
    return RandomFaults(
        kinds=tuple(str(k) for k in kinds),
        count=_int(table.get("count"), f"{here}: count", 1),
        start=_int(table.get("from", 0), f"{here}: from"),
        stop=stop,
        number=number,
        ms=ms,
        mode=mode,
        retry_after=retry,
    )


def _int(value: object, what: str, minimum: int | None = 0) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(f"{what} must be an integer, found {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{what} must be >= {minimum}, found {value}")
    return value


@dataclass(frozen=True, slots=True)
class InjectedFault:
    """One fault as it fired: served tape index, its recorded receive time, kind, details."""

    index: int
    ts_recv: int
    kind: str
    details: dict[str, object] = field(default_factory=dict)

    def to_json(self) -> bytes:
        head = {"index": self.index, "ts_recv": self.ts_recv, "kind": self.kind}
        return orjson.dumps(head | self.details)


class FaultLog:
    """Injected faults in memory (`entries`) and, if a path is given, as JSON lines."""

    __slots__ = ("_file", "entries")

    def __init__(self, path: Path | None) -> None:
        self.entries: list[InjectedFault] = []
        self._file: IO[bytes] | None = None
        if path is not None:
            try:
                self._file = path.open("wb")
            except OSError as e:
                raise ConfigError(f"{path}: cannot write the fault log ({e.strerror})") from e

    def record(self, index: int, ts_recv: int, kind: str, **details: object) -> InjectedFault:
        entry = InjectedFault(index, ts_recv, kind, details)
        self.entries.append(entry)
        if self._file is not None:
            self._file.write(entry.to_json() + b"\n")
            self._file.flush()  # a test reads it while the server runs
        return entry

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

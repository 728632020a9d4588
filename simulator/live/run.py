"""`ticktape live`: a websocket feed through the replay pipeline, paper fills, all recorded.

Threads: the network loop (connection.py) stamps frames and hands them to `sink`, which
spools them for the raw recording and hands them on (handoff.py): run at once on the network
thread while the pipeline keeps up, else queued in the bounded inbox; an optional timer thread
stamps timer ticks into the inbox; this (the caller's) thread runs what was queued (normalise,
check, record, run the engine of each symbol), watches the stop conditions and reports to
`on_view`.
Stopping (duration, idle feed, `stop` set by a signal handler) drains what has arrived,
flushes every recorder, consolidates each session and writes each run's manifest.
"""

from __future__ import annotations

import gc
import resource
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Final

import orjson

from simulator import instruments
from simulator.clock import WallClock
from simulator.errors import ConfigError
from simulator.instruments import Instrument
from simulator.live.adapter import LIVE_KINDS, VenueAdapter
from simulator.live.frames import Direction, Frame, Stamper, raw_table
from simulator.live.handoff import Handoff
from simulator.live.inbox import Inbox, Overflow
from simulator.live.keepalive import ConnectionConfig
from simulator.live.loop_base import _http_get
from simulator.live.memory import (
    Releases,
    huge_pages_off,
    release_free_memory,
)
from simulator.live.network import LiveNetwork
from simulator.live.parts import PARTS_DIR, Checkpoint, consolidate
from simulator.live.session import SymbolRun, session_key
from simulator.live.venues import adapter
from simulator.protocols import ModelRunner
from simulator.runtime import RunOutcome, versions, write_run
from simulator.session import SessionRef, resolve_session
from simulator.settings import Settings
from simulator.store import META_FILE

VIEW_EVERY_S: Final = 0.25
RAW_FLUSH_S: Final = 0.1
_WIND_DOWN_S: Final = 5.0  # at most this long draining while the sockets close
SWITCH_INTERVAL_S: Final = 0.0005
"""The GIL switch interval while a live run runs (CPython's default is 5 ms): a thread that
holds the GIL without blocking (the recorder's table building, ~1 ms per flush at 20x) keeps
the reader, which stamps and runs the frames, waiting at most this long, not 5 ms, while the
socket fills (at 20x, 5 ms is 64+ bookTicker frames: the inbox conflated quotes)."""
KEEP_WARM_S: Final = 0.001
"""With `keep_warm`, the dry pass runs once the feed has been idle this long, and about this
often while it stays idle (a pass costs tens of µs: a few % of one core at most)."""
KEEP_WARM_BUSY_S: Final = 0.00025
"""The same with `busy_poll`: the core is spent anyway, and passes 4x as often keep the path
warmer (obi_mlp 1x p50 median 0.131 -> 0.121 ms over 7 interleaved pairs, shared host)."""
_INSTRUMENT_TIMEOUT_S: Final = 5.0  # once per symbol at start; the bundled table if it fails


@dataclass(frozen=True, slots=True)
class LiveOptions:
    symbols: tuple[str, ...]
    data_dir: Path
    out_root: Path
    feed: str = "binance"
    url: str | None = None
    rest_url: str | None = None
    duration_s: float | None = None
    until_idle_s: float | None = None  # stop once no market data has come for this long
    inbox_capacity: int = 10_000
    inbox_overflow: Overflow = "pause"  # full inbox: pause reading (TCP flow control) or drop
    # quotes conflate (a newer one replaces the waiting one) once the frames waiting would
    # take the pipeline this long to run, or once this many wait (at most half the inbox)
    conflate_after_ms: float | None = 2.0
    conflate_backlog: int = 5_000
    levels: int = 20
    seed: int = 0
    roll_seconds: float = 30.0
    backoff_initial_s: float = 0.5
    backoff_cap_s: float = 30.0
    dead_peer_timeout_s: float = 60.0  # no bytes at all (pings included): reconnect
    idle_timeout_s: float = 10.0  # no data frame: reconnect
    wrap_model: Callable[[ModelRunner], ModelRunner] | None = None  # tests: a slow model
    warm_from: str | None = None  # a SESSION, or "auto": the symbol's newest recorded session
    keep_warm: bool = True  # dry passes over the model while the feed is idle (handoff.py)
    busy_poll: bool = False  # the network thread never sleeps: one core at 100% (network.py)
    prewake: bool = True  # awake around a periodic stream's next frame (live/prewake.py)


@dataclass(slots=True)
class LiveView:
    """What the dashboard shows, refreshed every VIEW_EVERY_S."""

    elapsed_s: float
    runs: list[SymbolRun]
    network: LiveNetwork
    inbox: Inbox


@dataclass(slots=True)
class LiveResult:
    sessions: dict[str, Path]
    run_dirs: dict[str, Path]
    digests: dict[str, str]
    summaries: dict[str, dict[str, object]] = field(default_factory=dict)
    live_facts: dict[str, dict[str, object]] = field(default_factory=dict)


def route(frames: list[Frame], prefixes: Iterable[str]) -> dict[str, list[Frame]]:
    """Frames by symbol stream prefix ("btcusdt@"); a frame of no symbol (connect, close,
    subscription, timer tick, a multi-product envelope) goes to every symbol."""
    routed: dict[str, list[Frame]] = {prefix: [] for prefix in prefixes}
    for frame in frames:
        selected = routed.get(frame.stream[: frame.stream.find("@") + 1])
        if selected is not None:
            selected.append(frame)
        else:
            for shared in routed.values():
                shared.append(frame)
    return routed


class _RawSpool:
    """Frames waiting to be written to the raw parts: the network thread appends (a deque
    append is atomic), a flusher thread writes them to every session they belong to, and
    the consumed rows and outputs each run's spool holds."""

    def __init__(self, runs: list[SymbolRun], checkpoint_s: float = 30.0) -> None:
        self._checkpoint_s = checkpoint_s
        self._checkpointed = time.monotonic()
        self._frames: deque[Frame] = deque()
        self._runs = {run.prefix: run for run in runs}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="ticktape-raw", daemon=True)
        self._error: BaseException | None = None
        # a checkpoint whose rows are being written: (prefix, mark, rows appended per table)
        self._due: list[tuple[str, Checkpoint, dict[str, int]]] | None = None
        self.releases = Releases()  # memory handed back at the checkpoints (live/memory.py)

    def append(self, frame: Frame) -> None:
        self._frames.append(frame)

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        try:
            while not self._stop.wait(RAW_FLUSH_S):
                self.flush()
        except BaseException as e:  # re-raised by close() in the caller's thread
            self._error = e

    def flush(self) -> None:
        due = self._due is None and time.monotonic() - self._checkpointed >= self._checkpoint_s
        marks = {prefix: run.spool.take_mark() for prefix, run in self._runs.items()} if due else {}
        frames: list[Frame] = []
        while self._frames:
            frames.append(self._frames.popleft())
        for prefix, selected in route(frames, self._runs).items() if frames else ():
            if selected:
                self._runs[prefix].parts.append("raw", raw_table(selected))
        for run in self._runs.values():  # the consumed rows and outputs, off the path
            run.spool.flush()
        if due:  # every row up to the marks (taken before the rows were) is appended now
            self._due = [
                (prefix, mark, self._runs[prefix].parts.request_flush())
                for prefix, mark in marks.items()
                if mark is not None
            ]
        if self._due is not None and all(
            self._runs[prefix].parts.flushed(rows) for prefix, _, rows in self._due
        ):
            self._checkpoint(self._due)
            self._due = None

    def _checkpoint(self, due: list[tuple[str, Checkpoint, dict[str, int]]]) -> None:
        """The rows up to the marks are in finished parts: the marks into meta.json, where
        `data recover` cuts a killed session.

        The thread goes on taking rows while the writers write them. It used to wait for
        them, and meanwhile the consumer's row tuples piled up in Python's heap, whose arenas
        then stayed (pymalloc's arenas at the floor: 42 -> 57 over 5 minutes, now 44 -> 48).
        """
        for prefix, mark, _ in due:
            self._runs[prefix].parts.update_meta(checkpoint=mark.as_meta())
        release_free_memory(self.releases)  # RSS stays flat over a long run
        self._checkpointed = time.monotonic()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.flush()
        if self._error is not None:
            raise self._error


def _timer_thread(
    interval_ms: float, stamper: Stamper, spool: _RawSpool, handoff: Handoff, stop: threading.Event
) -> threading.Thread:
    def stamp() -> Frame:
        frame = stamper.stamp(0, Direction.TIMER, "", b"")
        spool.append(frame)
        return frame

    def tick() -> None:
        while not stop.wait(interval_ms / 1000.0):
            handoff.tick(stamp)

    return threading.Thread(target=tick, name="ticktape-timer", daemon=True)


def _kinds(config: Settings) -> list[str]:
    """The strategy's kinds, and only those are subscribed: the session must hold exactly
    what the pipeline consumed, so that its replay consumes the same."""
    kinds = [k for k in config.strategy.kinds if k in LIVE_KINDS]
    if "quotes" not in kinds and "book" not in kinds:
        raise ConfigError(
            f"strategy '{config.strategy.name}' consumes {kinds}; live mode needs quotes "
            "or book among strategy.kinds"
        )
    return kinds


def _warm_session(options: LiveOptions, venue: str, symbol: str) -> SessionRef | None:
    """--warm-from: the named session, or (auto) the symbol's newest consolidated one."""
    spec = options.warm_from
    if spec is None or spec != "auto":
        return None if spec is None else resolve_session(spec, options.data_dir)
    folder = options.data_dir / venue / symbol.upper()
    done = sorted(
        p.name
        for p in (folder.iterdir() if folder.is_dir() else ())
        if (p / META_FILE).exists() and not (p / PARTS_DIR).exists()
    )
    if not done:
        raise ConfigError(
            f"--warm-from auto: no recorded session of {venue}/{symbol.upper()} under "
            f"{options.data_dir}; record one first or name a SESSION"
        )
    return resolve_session(f"{venue}/{symbol.upper()}/{done[-1]}", options.data_dir)


def _instrument(venue: VenueAdapter, symbol: str) -> tuple[Instrument, str]:
    """The symbol's instrument as the venue states it (Binance exchangeInfo, Coinbase
    products), else the bundled table's; the second item says which, and why the venue's was
    not used (kept in the session meta and the run's live facts)."""
    source = venue.instrument
    if source is None or not venue.rest_url:
        return instruments.bundled(venue.name, symbol), "bundled"
    url = source.url(venue.rest_url, symbol)
    status, _, body = _http_get(url, _INSTRUMENT_TIMEOUT_S)
    if status == 200:
        try:
            answer = orjson.loads(body)
            if isinstance(answer, dict):
                return source.read(answer, symbol), source.name
            why = f"not a JSON object ({url})"
        except (orjson.JSONDecodeError, ConfigError) as e:
            why = f"{e} ({url})"
    else:
        why = f"HTTP {status} ({url})" if status else body.decode(errors="replace")
    return instruments.bundled(venue.name, symbol), f"bundled ({source.name}: {why})"


def run_live(
    config: Settings,
    options: LiveOptions,
    *,
    stop: threading.Event,
    on_view: Callable[[LiveView], None] | None = None,
) -> LiveResult:
    """Run live until `stop` is set, the duration passes or the feed has gone idle."""
    if not options.symbols:
        raise ConfigError("give at least one --symbol (e.g. --symbol btcusdt)")
    runs: list[SymbolRun] = []
    try:
        # no huge pages that fill in what the allocators freed (live/memory.py); the
        # process's setting is back once the run is over
        with huge_pages_off():
            return _run(config, options, runs, stop, on_view)
    except BaseException as e:  # failed or interrupted: no thread outlives the run, and what
        reason = f"{type(e).__name__}: {e}"  # was recorded stays on disk for `data recover`
        for run in runs:
            run.abort(reason)
            e.add_note(
                f"the recording of {run.key} up to the failure is kept in {run.session_dir}; "
                f"`ticktape data recover {run.key}` turns it into a session"
            )
        raise


def _run(
    config: Settings,
    options: LiveOptions,
    runs: list[SymbolRun],
    stop: threading.Event,
    on_view: Callable[[LiveView], None] | None,
) -> LiveResult:
    """run_live's body; `runs` fills as each symbol's pipeline is built (for the abort)."""
    kinds = _kinds(config)
    venue = adapter(options.feed, kinds, url=options.url, rest_url=options.rest_url)
    levels = options.levels if "book" in kinds else 1
    meta: dict[str, object] = {
        "venue": venue.name,
        "url": venue.url,
        "rest_url": venue.rest_url,
        "kinds": kinds,
        "strategy": config.strategy.name,
        "config": config.as_dict(),
        "versions": versions(),
    }
    wall = WallClock.wall_ns
    started_ns = wall()
    for symbol in options.symbols:
        key = session_key(venue.name, symbol, started_ns, options.data_dir)
        run_dir = options.out_root / f"live--{config.strategy.name}--{key.symbol}--{key.date}"
        runs.append(
            SymbolRun(
                key=key,
                prefix=venue.prefix(symbol),
                normalizer=venue.normalizer(symbol),
                config=config,
                levels=levels,
                data_dir=options.data_dir,
                run_dir=run_dir,
                meta=meta,
                roll_seconds=options.roll_seconds,
                wrap_model=options.wrap_model,
                warm_from=_warm_session(options, venue.name, symbol),
                instrument=_instrument(venue, symbol),
            )
        )
    by_prefix = {run.prefix: run for run in runs}
    profile = venue.profile
    inbox = Inbox(
        options.inbox_capacity,
        conflatable=venue.conflatable,
        backlog=options.conflate_backlog,
        conflate_after_ns=_ns(options.conflate_after_ms),
        overflow=options.inbox_overflow,
    )
    spool = _RawSpool(runs, checkpoint_s=options.roll_seconds)
    stamper = Stamper(wall)

    warm_every_s = KEEP_WARM_BUSY_S if options.busy_poll else KEEP_WARM_S
    handoff = Handoff(
        inbox,
        lambda frames: _dispatch(frames, runs, by_prefix, network),
        dry_pass=(lambda: _dry_passes(runs)) if options.keep_warm else None,
        warm_after_s=warm_every_s,
    )

    def sink(frame: Frame) -> None:
        spool.append(frame)
        handoff.offer(frame)

    network = LiveNetwork(
        profile,
        ConnectionConfig(url=venue.url, rest_url=venue.rest_url, symbols=options.symbols,
                         seed=options.seed, backoff_initial_s=options.backoff_initial_s,
                         backoff_cap_s=options.backoff_cap_s, max_size=venue.max_size,
                         dead_peer_timeout_s=options.dead_peer_timeout_s,
                         idle_timeout_s=options.idle_timeout_s),
        stamper,
        sink,
        wall,
        backpressure=inbox,
        on_idle=handoff.keep_warm if options.keep_warm else None,
        idle_every_s=warm_every_s,
        busy_poll=options.busy_poll,
        prewake=(lambda: handoff.arrivals.due) if options.prewake else None,
    )  # fmt: skip
    handoff.pending = network.connection.pending  # per frame: one call, not two
    timer_stop = threading.Event()
    timer = None
    if config.strategy.timer_ms > 0:
        timer = _timer_thread(config.strategy.timer_ms, stamper, spool, handoff, timer_stop)
    # everything built so far (modules, model, pipeline) lives for the whole run: out of the
    # collector's sight, a full collection no longer walks it (pauses of ~10 ms otherwise)
    gc.freeze()
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    spool.start()
    network.start()
    if timer is not None:
        timer.start()
    t_start = time.monotonic()
    consumed = False
    try:
        _consume(options, runs, network, handoff, stop, on_view)
        consumed = True
    finally:
        try:
            timer_stop.set()
            if consumed:  # what arrives until the sockets have closed is processed
                _wind_down(network, handoff)
            inbox.close()  # releases a reader paused on it
            network.stop(5.0)
            if consumed:  # a failed pipeline runs nothing more (its recording ends there)
                # the feed has stopped: nothing to ask it for (a request now raises FeedError)
                _dispatch(inbox.drain(0.0), runs, by_prefix, None)
            spool.close()
        finally:
            sys.setswitchinterval(switch_interval)
            gc.unfreeze()
    handoff.check()
    elapsed_s = time.monotonic() - t_start
    return _finish(runs, options, config, elapsed_s, network, handoff, spool.releases)


def _consume(
    options: LiveOptions,
    runs: list[SymbolRun],
    network: LiveNetwork,
    handoff: Handoff,
    stop: threading.Event,
    on_view: Callable[[LiveView], None] | None,
) -> None:
    """The consumer thread's loop: run what the network thread queued (frames it did not run
    itself), check the stop conditions, report."""
    t_start = next_view = time.monotonic()
    while not stop.is_set():
        handoff.consume(0.05)
        now = time.monotonic()
        handoff.check()
        network.check()
        if options.duration_s is not None and now - t_start >= options.duration_s:
            return
        if options.until_idle_s is not None and now - handoff.last_data >= options.until_idle_s:
            return
        if on_view is not None and now >= next_view:
            with handoff.pipeline:  # the view reads the pipeline's state
                on_view(LiveView(now - t_start, runs, network, handoff.inbox))
            next_view = now + VIEW_EVERY_S


def _dry_passes(runs: list[SymbolRun]) -> bool:
    """Every symbol's dry pass (keep_warm); True if any ran."""
    ran = False
    for run in runs:
        ran = run.dry_pass() or ran
    return ran


def _wind_down(network: LiveNetwork, handoff: Handoff) -> None:
    """Close the sockets while still running what arrives: a reader paused on the inbox
    (flow control) reads on to the close handshake instead of overflowing it."""
    network.request_stop()
    deadline = time.monotonic() + _WIND_DOWN_S
    while network.running and time.monotonic() < deadline:
        handoff.consume(0.05)


def _dispatch(
    frames: list[Frame],
    runs: list[SymbolRun],
    by_prefix: dict[str, SymbolRun],
    network: LiveNetwork | None,
) -> None:
    """Hand each frame to its symbol's run (shared frames to all), then act on the
    normalisers' requests (none once the network has stopped: `network` None)."""
    if len(runs) == 1:
        runs[0].process(frames)
    else:
        for prefix, chosen in route(frames, by_prefix).items():
            if chosen:
                by_prefix[prefix].process(chosen)
    if network is not None:
        for run in runs:
            run.normalizer.act(network)  # a snapshot or a resubscribe the book needs


def _finish(
    runs: list[SymbolRun],
    options: LiveOptions,
    config: Settings,
    elapsed_s: float,
    network: LiveNetwork,
    handoff: Handoff,
    releases: Releases,
) -> LiveResult:
    inbox = handoff.inbox
    result = LiveResult(sessions={}, run_dirs={}, digests={})
    for run in runs:
        state = run.engine.end()
        run.record_outputs()
        run.spool.flush()
        run.spool.raise_if_failed()
        digest = run.recorder.close()
        normalizer_stats = getattr(run.normalizer, "stats", None)
        live_facts: dict[str, object] = {
            "elapsed_s": elapsed_s,
            "normalizer": _as_dict(normalizer_stats),
            "contract_drops": run.contract_drops,
            "status_events": state.n_status,
            "recv_to_done_us": run.engine.recv_to_done.summary(),
            "inbox": {
                **_as_dict(inbox.stats),
                "capacity": inbox.capacity,
                "cost_us": round(inbox.cost_ns / 1e3, 3),  # per frame, for conflation
                "overflow": inbox.overflow,
                **_as_dict(handoff.stats),
            },
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "memory_released": releases.as_dict(),
            "network": _as_dict(network.stats),
            "network_thread": network.times.as_dict(),
            **({} if network.prewake is None else {"prewake": network.prewake.stats.as_dict()}),
            "instrument": run.instrument,
        }
        run.parts.close({"live": live_facts, "digest": digest})
        consolidate(run.session_dir)
        summary, _ = write_run(
            RunOutcome(
                out_dir=run.run_dir,
                session=str(run.key),
                config=config,
                seed=options.seed,
                state=state,
                recorder=run.recorder,
                portfolio=run.portfolio,
                breaker=run.staged.breaker,
                digest=digest,
                latency_model="live",
                timings={"run_s": elapsed_s},
            ),
            manifest_extra={"mode": "live", "live": live_facts},
        )
        name = str(run.key)
        result.sessions[name] = run.session_dir
        result.run_dirs[name] = run.run_dir
        result.digests[name] = digest
        result.summaries[name] = summary
        result.live_facts[name] = live_facts
    return result


def _ns(ms: float | None) -> float | None:
    """Milliseconds as nanoseconds; None (like infinity): no limit."""
    return None if ms is None else ms * 1e6


def _as_dict(stats: object) -> dict[str, object]:
    """A stats dataclass as a plain dict (for the manifests); {} for anything else."""
    if not is_dataclass(stats) or isinstance(stats, type):
        return {}
    return {f.name: getattr(stats, f.name) for f in fields(stats)}

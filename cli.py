"""ticktape command line: parse, call the simulator library, print. No logic of its own.

Every SimulatorError becomes one red line and exit code 1 (a traceback only with --debug);
usage errors exit 2 (click).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast
from zoneinfo import ZoneInfo

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from simulator.errors import OutputError, SimulatorError

if TYPE_CHECKING:
    import pyarrow as pa

    from simulator.importers.common import ImportResult
    from simulator.session import SessionRef
    from simulator.settings import Settings
    from simulator.sources.recorded import Repair
    from simulator.sources.schema import CheckReport

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

DATA_DIR_OPTION = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="TICKTAPE_DATA",
    default=Path("data"),
    show_default=True,
    help="Root of the recorded sessions (also $TICKTAPE_DATA).",
)


def _interrupted(signum: int, frame: object) -> None:
    # a second Ctrl-C must not cut short the clean-up that the first one started
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


@contextmanager
def _one_interrupt() -> Iterator[None]:
    """Ctrl-C raises KeyboardInterrupt once; later ones are ignored while it unwinds."""
    main_thread = threading.current_thread() is threading.main_thread()
    if not main_thread or signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        yield  # a background job ignores Ctrl-C: keep it so
        return
    previous = signal.signal(signal.SIGINT, _interrupted)
    try:
        yield
    finally:  # after a Ctrl-C it stays ignored until the process has exited with 130
        if signal.getsignal(signal.SIGINT) is _interrupted:
            signal.signal(signal.SIGINT, previous)


class _ErrorMappingGroup(click.Group):
    """Maps library errors (and files that cannot be written) to one red line and exit code 1;
    --debug, anywhere on the line, shows the traceback. Subgroups are of this class too."""

    group_class = type

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if ctx.parent is None and "--debug" in args:  # `ticktape replay ... --debug` works too
            cut = args.index("--") if "--" in args else len(args)
            args = ["--debug", *(a for a in args[:cut] if a != "--debug"), *args[cut:]]
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:  # noqa: ANN401 - click's own signature
        try:
            with _one_interrupt():
                return super().invoke(ctx)
        except (SimulatorError, OSError) as e:
            if ctx.meta.get("ticktape.debug") or not _is_user_error(e):
                raise
            err_console.print(f"[red]{type(e).__name__}[/red]: {escape(_one_line(e))}")
            for note in getattr(e, "__notes__", ()):  # e.g. where a failed run's data was kept
                err_console.print(f"  {escape(str(note))}")
            ctx.exit(1)
        except KeyboardInterrupt:  # Ctrl-C: the run's threads are stopped, its output removed
            err_console.print("[red]Interrupted[/red]: stopped by Ctrl-C; nothing unfinished kept")
            ctx.exit(130)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Each command's first sentence in full (click cuts it with "..."), wrapped."""
        rows = [
            (name, command.get_short_help_str(limit=10_000))
            for name in self.list_commands(ctx)
            if (command := self.get_command(ctx, name)) is not None and not command.hidden
        ]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _check_writable(path: Path, option: str, *, directory: bool) -> None:
    """Refuse an output `path` that cannot be written (under a regular file, in a directory
    without write permission, a directory where a file is wanted or the reverse)."""
    if path.exists():
        if path.is_dir() != directory:
            found = "a directory" if path.is_dir() else "a file"
            raise OutputError(
                f"{option} {path}: is {found}; expected {'a directory' if directory else 'a file'}"
            )
        if not os.access(path, os.W_OK | (os.X_OK if directory else 0)):
            raise OutputError(f"{option} {path}: not writable (permission denied)")
        if not directory and not os.access(path.parent, os.W_OK | os.X_OK):
            raise OutputError(f"{option} {path}: {path.parent} is not writable (permission denied)")
        return
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(
            f"{option} {path}: cannot be created, {parent} is a file, not a directory"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(
            f"{option} {path}: cannot be created, {parent} is not writable (permission denied)"
        )


def _is_user_error(e: Exception) -> bool:
    """Library errors, and OS errors about a path the user named (a read-only --out, a
    directory under a file): both are the user's to fix, not tracebacks."""
    return isinstance(e, SimulatorError) or getattr(e, "filename", None) is not None


def _one_line(e: Exception) -> str:
    if isinstance(e, OSError) and e.filename is not None:
        return f"{e.filename}: {e.strerror or e}"
    return str(e)


@click.group(cls=_ErrorMappingGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--debug", is_flag=True, help="Show full tracebacks on errors (anywhere on the line)."
)
@click.version_option(package_name="ticktape")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """ticktape: replay recorded ticks through an ML trading pipeline and see it in time."""
    ctx.meta["ticktape.debug"] = debug


@main.group()
def data() -> None:
    """Import, list, inspect and validate recorded sessions."""


@data.group(name="import")
def import_() -> None:
    """Import real venue recordings into the data directory (atomic, idempotent)."""


@contextmanager
def _progress(label: str) -> Iterator[Callable[[int, int], None]]:
    if not err_console.is_terminal:  # piped: no bar, and no stray blank line on stderr
        yield lambda done, total: None
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console, transient=True) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _print_imports(results: Sequence[ImportResult], data_dir: Path) -> None:
    from simulator.catalog import Catalog

    for result in results:
        rows = ", ".join(f"{kind} {n:,}" for kind, n in result.rows.items())
        console.print(f"[green]imported[/green] {result.key} ({rows}) -> {result.path}")
        for name, value in result.facts.items():
            console.print(f"  [dim]{name}[/dim] = {value}")
    Catalog(data_dir).close()  # refresh the catalog now rather than at the next read


@import_.command(name="lobster")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@DATA_DIR_OPTION
def import_lobster_command(paths: tuple[Path, ...], data_dir: Path) -> None:
    """LOBSTER zips or message + orderbook CSV pairs (any level count)."""
    from simulator.importers.lobster import import_lobster

    data_dir.mkdir(parents=True, exist_ok=True)
    with _progress("importing LOBSTER") as progress:
        results = import_lobster(list(paths), data_dir, progress=progress)
    _print_imports(results, data_dir)


@import_.command(name="binance")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--levels", default=20, show_default=True, help="Book levels kept per side.")
@click.option(
    "--raw-level", default=9, show_default=True, help="zstd level of the kept raw messages."
)
@DATA_DIR_OPTION
def import_binance_command(
    paths: tuple[Path, ...], levels: int, raw_level: int, data_dir: Path
) -> None:
    """Binance combined-stream recordings (`<recv ns> <json>` lines; gzip, zstd or plain)."""
    from simulator.importers.binance import import_binance

    data_dir.mkdir(parents=True, exist_ok=True)
    with _progress("importing Binance") as progress:
        results = import_binance(
            list(paths), data_dir, levels=levels, raw_level=raw_level, progress=progress
        )
    _print_imports(results, data_dir)


@import_.command(name="coinbase")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--levels", default=20, show_default=True, help="Book levels kept per side.")
@DATA_DIR_OPTION
def import_coinbase_command(paths: tuple[Path, ...], levels: int, data_dir: Path) -> None:
    """Coinbase Advanced Trade recordings (JSON lines, zstd or plain)."""
    from simulator.importers.coinbase import import_coinbase

    data_dir.mkdir(parents=True, exist_ok=True)
    with _progress("importing Coinbase") as progress:
        results = import_coinbase(list(paths), data_dir, levels=levels, progress=progress)
    _print_imports(results, data_dir)


def _utc(ts: int) -> str:
    return datetime.fromtimestamp(ts / 1e9, tz=UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _span(start: int, end: int) -> str:
    first, last = _utc(start), _utc(end)
    if first[:10] == last[:10]:
        return f"{first[11:]} ->\n{last[11:]}"
    return f"{first} ->\n{last}"


def _local(ts: int, zone: str) -> str:
    return datetime.fromtimestamp(ts / 1e9, tz=ZoneInfo(zone)).strftime("%H:%M:%S %Z")


@data.command(name="ls")
@DATA_DIR_OPTION
@click.option("--json", "as_json", is_flag=True, help="One JSON array, for scripts.")
def data_ls(data_dir: Path, as_json: bool) -> None:
    """List the sessions in the data directory."""
    from simulator.catalog import Catalog

    catalog = Catalog(data_dir)
    sessions = catalog.sessions()
    catalog.close()
    if as_json:
        click.echo(json.dumps([s.as_json() for s in sessions], indent=2))
        return
    table = Table(title=f"sessions in {data_dir}")
    table.add_column("session", no_wrap=True)
    table.add_column("rows", justify="right", no_wrap=True)
    table.add_column("span (UTC)")
    table.add_column("levels", justify="right")
    for s in sessions:
        rows = "\n".join(f"{kind} {n:,}" for kind, n in s.rows.items())
        table.add_row(str(s.key), rows, _span(s.ts_start, s.ts_end), str(s.levels or "-"))
    console.print(table)
    if not sessions:
        console.print("no sessions yet: import one with `ticktape data import lobster|binance ...`")


def _one_session(spec: str, data_dir: Path) -> str:
    """A command that takes one SESSION accepts a pattern matching exactly one."""
    from simulator.selection import expand_sessions, is_pattern

    if not is_pattern(spec):
        return spec
    found = expand_sessions([spec], data_dir)
    if len(found) > 1:
        shown = ", ".join(found[:5]) + (", ..." if len(found) > 5 else "")
        raise click.UsageError(
            f"SESSION '{spec}' matches {len(found)} sessions ({shown}); this command takes one "
            "(replay, sweep and data show take several)"
        )
    return found[0]


@data.command(name="show")
@click.argument("sessions", metavar="SESSION...", nargs=-1, required=True)
@DATA_DIR_OPTION
@click.option("--rows", "n_rows", default=5, show_default=True, type=click.IntRange(min=0),
              help="First rows shown per kind.")  # fmt: skip
def data_show(sessions: tuple[str, ...], data_dir: Path, n_rows: int) -> None:
    """Summary statistics and first rows of SESSION (venue/symbol/date, a pattern such as
    'nasdaq/*/2012-06-21', or a Parquet path); several are shown one after the other."""
    from simulator.selection import expand_sessions
    from simulator.session import resolve_session

    for name in expand_sessions(sessions, data_dir):
        _show_session(resolve_session(name, data_dir), n_rows)


def _show_session(ref: SessionRef, n_rows: int) -> None:
    from simulator.inspect import summarize

    console.print(f"[bold]{ref.name}[/bold]  (exchange time zone {ref.time_zone})")
    for kind, path in ref.files.items():
        summary = summarize(path, kind, first_rows=n_rows)
        span = f"{_utc(summary.ts_start)} -> {_utc(summary.ts_end)} UTC"
        local = (
            f"{_local(summary.ts_start, ref.time_zone)} -> {_local(summary.ts_end, ref.time_zone)}"
        )
        console.print(f"\n[bold]{kind}[/bold]: {summary.rows:,} rows, {span} ({local})")
        for name, value in summary.stats.items():
            console.print(f"  {name}: {value}")
        console.print(_arrow_table(summary.head))


def _arrow_table(head: pa.Table) -> Table:
    """A rich table of the rows; ts_* columns shown as UTC times. Values are never cut: as
    many whole columns as the console's width holds are shown, the rest counted."""
    cells = {
        name: [_fmt(name, value) for value in head.column(name).to_pylist()]
        for name in head.column_names
    }
    widths = {name: max(map(len, [name, *column])) for name, column in cells.items()}
    shown: list[str] = []
    used = 0
    for name in head.column_names:  # a column takes its width, 2 of padding and 1 rule
        if shown and used + widths[name] + 3 > console.width:
            break
        shown.append(name)
        used += widths[name] + 3
    table = Table(show_edge=False)
    for name in shown:
        table.add_column(name, justify="right", no_wrap=True, min_width=widths[name])
    for i in range(head.num_rows):
        table.add_row(*(cells[name][i] for name in shown))
    if len(shown) < head.num_columns:
        table.caption = f"{head.num_columns - len(shown)} more column(s) not shown"
    return table


def _fmt(name: str, value: object) -> str:
    if value is None:
        return ""
    if name.startswith("ts_") and isinstance(value, int):
        return datetime.fromtimestamp(value // 10**9, tz=UTC).strftime("%H:%M:%S.") + (
            f"{value % 10**9:09d}"
        )
    if isinstance(value, float):
        return f"{value:.10g}"
    return str(value)


@data.command(name="check")
@click.argument("session", metavar="SESSION|PATH")
@DATA_DIR_OPTION
@click.option(
    "--repair",
    type=click.Choice(["drop", "sort"]),
    multiple=True,
    help="Repair instead of only reporting: drop bad rows and/or sort by ts_recv (counted).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="With --repair: write repaired files here (a file for a Parquet path, else a dir).",
)
def data_check(session: str, data_dir: Path, repair: tuple[str, ...], out: Path | None) -> None:
    """Validate every file of SESSION|PATH (venue/symbol/date, a session directory or a Parquet
    file); exit 1 when a problem is found (or left unrepaired)."""
    from simulator.session import resolve_session
    from simulator.sources.recorded import check_file

    ref = resolve_session(_one_session(session, data_dir), data_dir)
    if out is not None and not repair:
        raise click.UsageError("--out needs --repair drop and/or --repair sort")
    if out is not None:
        single = len(ref.files) == 1 and out.suffix == ".parquet"
        _check_writable(out, "--out", directory=not single)
    reports = {kind: check_file(path, kind=kind) for kind, path in ref.files.items()}
    for kind, report in reports.items():
        _print_report(kind, ref.files[kind], report)
    bad = [kind for kind, report in reports.items() if not report.ok]
    if not bad:
        return
    if not repair:
        sys.exit(1)
    policy = cast("tuple[Repair, ...]", repair)
    if out is None:
        for kind in bad:
            _try_repair(ref, kind, policy)
        console.print(
            "[yellow]nothing was written[/yellow]: pass --out DIR to write the repaired session"
        )
        sys.exit(1)
    _write_repaired(ref, policy, out)


def _print_report(kind: str, path: Path, report: CheckReport) -> None:
    verdict = "[green]OK[/green]" if report.ok else f"[red]{report.summary()}[/red]"
    console.print(f"[bold]{kind}[/bold] {path}: {report.rows:,} rows checked: {verdict}")
    for problem in sorted(report.examples, key=lambda p: p.row):
        console.print(f"  row {problem.row}: {escape(problem.message)}")


def _repaired(report: CheckReport) -> str:
    return ", ".join(f"{n:,} rows {what}" for what, n in sorted(report.repaired.items()))


def _try_repair(ref: SessionRef, kind: str, repair: tuple[Repair, ...]) -> None:
    """Say what the repair would do to one file, writing nothing."""
    source = ref.source(kind, repair=repair)
    try:
        for _ in source.batches():
            pass
    except SimulatorError as e:
        console.print(f"  {kind}: [red]repair not enough[/red]: {escape(str(e))}")
        return
    console.print(f"  {kind}: [yellow]would repair[/yellow] {_repaired(source.report)}")


def _write_repaired(ref: SessionRef, repair: tuple[Repair, ...], out: Path) -> None:
    """The whole session, repaired, at `out` (all of it or nothing)."""
    from simulator.repair import repair_session

    copy = repair_session(ref, repair, out)
    for kind, report in copy.reports.items():
        if report.repaired:
            console.print(f"  {kind}: [yellow]repaired[/yellow] {_repaired(report)}")
    what = ", ".join(sorted(copy.reports))
    console.print(f"[green]repaired session written[/green] to {out} ({what})")


@data.command(name="recover")
@click.argument("session")
@DATA_DIR_OPTION
def data_recover(session: str, data_dir: Path) -> None:
    """Consolidate a live SESSION's Parquet parts into session files; a killed session's
    tables are cut at its last checkpoint (rows cut are counted per table)."""
    from simulator.live.parts import consolidate
    from simulator.session import session_directory
    from simulator.store import read_meta

    directory = session_directory(_one_session(session, data_dir), data_dir)
    rows = consolidate(directory)
    meta = read_meta(directory)
    found = meta.get("cut")
    cut: dict[str, int] | None = found if isinstance(found, dict) else None
    if meta.get("recovered") is not True:
        console.print(f"[green]consolidated[/green] {directory}")
    elif cut is not None:
        console.print(
            f"[yellow]recovered[/yellow] {directory} (the recorder did not close it): every "
            "table cut at its last checkpoint, the last point all of them hold"
        )
    else:
        console.print(
            f"[yellow]recovered[/yellow] {directory} (the recorder did not close it): no "
            "checkpoint was recorded, tables kept whole; a --latency recorded replay may differ"
        )
    for name, n in sorted(rows.items()):
        dropped = f", {cut[name]:,} cut" if cut is not None and cut.get(name) else ""
        console.print(f"  {name} {n:,} rows{dropped}")


@data.command(name="sql")
@click.argument("query")
@DATA_DIR_OPTION
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=0),
              help="Rows printed.")  # fmt: skip
def data_sql(query: str, data_dir: Path, limit: int) -> None:
    """Run one read-only SQL query over the catalog (sessions table; views quotes, trades,
    book). Statements that would change anything (DROP, INSERT, COPY, ...) are refused."""
    from simulator.catalog import Catalog

    catalog = Catalog(data_dir)
    try:
        result = catalog.query(query)
    finally:
        catalog.close()
    console.print(_arrow_table(result.slice(0, limit)))
    console.print(f"[dim]{result.num_rows:,} row(s)[/dim]")


def _load_config(strategy: str, config_file: Path | None, sets: tuple[str, ...]) -> Settings:
    from simulator.config import apply_overrides, load_strategy

    config = apply_overrides(load_strategy(strategy), file=config_file, sets=sets)
    _warn_without_effect(config, sets)
    return config


_ZERO_VENUE_LATENCY = (
    lambda c: c.venue.latency == "zero",
    "venue.latency is 'zero' (add --set venue.latency=fixed)",
)
_BREAKER_OFF = (lambda c: not c.breaker.enabled, "breaker.enabled is false")
WITHOUT_EFFECT: dict[str, tuple[Callable[[Settings], bool], str]] = {
    "venue.entry_us": _ZERO_VENUE_LATENCY,
    "venue.response_us": _ZERO_VENUE_LATENCY,
    "breaker.latency_budget_us": _BREAKER_OFF,
    "breaker.max_violations": _BREAKER_OFF,
    "breaker.cooldown_ms": _BREAKER_OFF,
    "breaker.fallback": _BREAKER_OFF,
}
"""--set key -> (is the setting ignored under this config?, why): warned, not refused."""


def _warn_without_effect(config: Settings, sets: tuple[str, ...]) -> None:
    for item in sets:
        key = item.partition("=")[0].strip()
        if key in WITHOUT_EFFECT and WITHOUT_EFFECT[key][0](config):
            err_console.print(
                f"[yellow]warning[/yellow]: --set {escape(item)} has no effect while "
                f"{WITHOUT_EFFECT[key][1]}"
            )


LATENCY_OPTION = click.option(
    "--latency", metavar="MODEL",
    help="Pipeline service times: zero | fixed:STAGE=US,... | measured | calibrated:FILE | "
         "recorded (a `ticktape live` session's own decision times; overrides latency.model; "
         "queueing is simulated unless zero).",
)  # fmt: skip
JSON_OPTION = click.option(
    "--json", "as_json", is_flag=True,
    help="Print one JSON object (summary, paths, digest; several sessions: the aggregate) "
         "instead of the tables, for scripts.",
)  # fmt: skip


def _with_latency(config: Settings, latency: str | None) -> Settings:
    from simulator.config import apply_values

    if latency is None:
        return config
    return apply_values(config, {"latency.model": latency}, where="--latency")


STRATEGY_OPTIONS = (
    click.option("--strategy", required=True,
                 help="A shipped strategy (ticktape strategies), a strategy TOML or its folder."),
    click.option("--config", "config_file", type=click.Path(exists=True, path_type=Path),
                 help="TOML file overriding the strategy's defaults."),
    click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
                 help="Override one setting, e.g. --set policy.threshold=0.3 (repeatable)."),
)  # fmt: skip


FORCE_OPTION = click.option(
    "--force", is_flag=True,
    help="Clear a non-empty --out that does not hold a run of this kind (else refused).",
)  # fmt: skip


def _strategy_options(command: Callable[..., None]) -> Callable[..., None]:
    for option in reversed(STRATEGY_OPTIONS):
        command = option(command)
    return command


@main.command()
@click.argument("sessions", metavar="SESSION...", nargs=-1, required=True)
@_strategy_options
@click.option("--seed", default=0, show_default=True, help="Seed of every random generator.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Run directory (default: reports/<run-id>/); with several sessions, the "
                   "directory of their run directories and summary.json. A previous replay "
                   "there is replaced.")  # fmt: skip
@FORCE_OPTION
@click.option("--report/--no-report", "with_report", default=True, show_default=True,
              help="Write the run's HTML report (report.html) into the run directory.")  # fmt: skip
@LATENCY_OPTION
@JSON_OPTION
@DATA_DIR_OPTION
def replay(
    sessions: tuple[str, ...],
    strategy: str,
    config_file: Path | None,
    sets: tuple[str, ...],
    seed: int,
    out: Path | None,
    force: bool,
    with_report: bool,
    latency: str | None,
    as_json: bool,
    data_dir: Path,
) -> None:
    """Replay SESSION (venue/symbol/date, a pattern such as 'nasdaq/GOOG/*', or a Parquet
    path) through a strategy's pipeline. Several sessions (patterns or arguments) are replayed
    independently, one run directory each, with an aggregate summary."""
    from simulator import runtime
    from simulator.rundir import check_target, staged
    from simulator.selection import expand_sessions
    from simulator.session import resolve_session

    refs = [resolve_session(name, data_dir) for name in expand_sessions(sessions, data_dir)]
    config = _with_latency(_load_config(strategy, config_file, sets), latency)
    if len(refs) > 1:
        out_root = out or runtime.unique_dir(Path("reports"), batch_name(config, refs, seed))
        check_target(out_root, "replay", force=force)
        _replay_many(refs, config, seed=seed, out=out_root, with_report=with_report,
                     as_json=as_json)  # fmt: skip
        return
    ref = refs[0]
    out_dir = out or runtime.unique_dir(Path("reports"), runtime.run_id(config, ref, seed))
    check_target(out_dir, "replay", force=force)
    _check_writable(out_dir, "--out", directory=True)
    with staged(out_dir) as staging, _progress(f"replaying {ref.name}") as progress:
        result = runtime.replay(ref, config, out_dir=staging, seed=seed, progress=progress)
    report_path = None
    if with_report:
        from simulator.report import write_report

        report_path = write_report(out_dir)
    paths = {"run_dir": out_dir, "manifest": out_dir / "manifest.json", "report": report_path}
    if as_json:
        _echo_json(
            summary=result.manifest["summary"], paths=paths, digest=result.manifest["digest"]
        )
        return
    _print_run(result.manifest, out_dir)
    if report_path is not None:
        console.print(f"  report {report_path}")


def batch_name(config: Settings, refs: Sequence[SessionRef], seed: int) -> str:
    return f"{config.strategy.name}--{len(refs)}-sessions--seed{seed}"


def _echo_json(**fields: object) -> None:
    """One JSON object on stdout (paths as strings), nothing else."""
    click.echo(json.dumps(fields, default=lambda v: str(v) if isinstance(v, Path) else repr(v)))


def _replay_many(
    refs: Sequence[SessionRef],
    config: Settings,
    *,
    seed: int,
    out: Path | None,
    with_report: bool,
    as_json: bool,
) -> None:
    """Each session on its own (nothing carries over), then the per-session table + totals."""
    import shutil

    from simulator import batch, runtime
    from simulator.rundir import clear_directory

    out_root = out or runtime.unique_dir(Path("reports"), batch_name(config, refs, seed))
    _check_writable(out_root, "--out", directory=True)
    clear_directory(out_root)  # checked by the caller: empty, a previous replay, or --force
    created = [p for p in (out_root, *out_root.parents) if not p.exists()]
    out_root.mkdir(parents=True, exist_ok=True)
    if not as_json:
        console.print(f"{len(refs)} sessions: {batch.INDEPENDENCE}")
    rows = []
    try:  # all or nothing, like one session's run: a failure or Ctrl-C removes it
        for i, ref in enumerate(refs, 1):
            with _progress(f"replaying {ref.name} ({i}/{len(refs)})") as progress:
                run = batch.replay_into(ref, config, out_root, seed=seed, progress=progress)
            if with_report:
                from simulator.report import write_report

                write_report(run.run_dir)
            rows.append(batch.session_row(run))
        summary = batch.aggregate(rows, strategy=config.strategy.name, seed=seed)
        path = batch.write_summary(out_root, summary)
    except BaseException:
        shutil.rmtree(out_root, ignore_errors=True)
        for parent in created[1:]:  # e.g. reports/, when this run made it
            with suppress(OSError):
                parent.rmdir()
        raise
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    _print_sessions(rows, batch.totals(rows))
    console.print(f"  summary written to {path}")


def _print_sessions(rows: Sequence[dict[str, Any]], totals: dict[str, Any]) -> None:
    table = Table(title="sessions, replayed independently", show_edge=False)
    for head in ("session", "events", "fills", "PnL", "max DD", "digest"):
        left = head in ("session", "digest")
        table.add_column(head, justify="left" if left else "right", no_wrap=True)

    def cells(r: dict[str, Any]) -> list[str]:
        return [f"{r['n_events']:,}", f"{r['n_fills']:,}", f"{r['net_pnl']:,.2f}",
                f"{r['max_drawdown']:,.2f}"]  # fmt: skip

    for r in rows:
        table.add_row(r["session"], *cells(r), r["digest"][:8])
    table.add_row(f"total ({totals['sessions']})", *cells(totals), "", style="bold")
    console.print(table)
    console.print(
        f"  orders {totals['n_orders']:,}  fees {totals['fees']:,.4f}  rejections "
        f"{totals['n_rejections']:,}\n  PnL: after fees (realised + unrealised - fees); "
        "total max DD: the worst session's"
    )


@main.command()
@click.option(
    "--feed",
    type=click.Choice(["binance", "coinbase"]),
    default="binance",
    show_default=True,
    help="Venue of the websocket feed.",
)
@click.option(
    "--symbol",
    "symbols",
    multiple=True,
    required=True,
    help="Symbol to trade, e.g. btcusdt (repeatable: one pipeline and session each).",
)
@_strategy_options
@click.option(
    "--url",
    help="Websocket base URL (default: the venue's public endpoint; "
    "binance.us: wss://stream.binance.us:9443; `ticktape feed serve` prints one).",
)
@click.option(
    "--rest-url",
    help="REST base URL for depth snapshots and the symbol's tick, lot and minimum "
    "(Binance exchangeInfo, Coinbase products; default: the venue's; "
    "binance.us: https://api.binance.us).",
)
@click.option("--duration", type=float, metavar="SECONDS", help="Stop after this long.")
@click.option(
    "--until-idle",
    type=float,
    metavar="SECONDS",
    help="Stop once no market data has arrived for this long (e.g. a feed server's "
    "recording has ended).",
)
@click.option(
    "--inbox",
    "inbox_capacity",
    default=10_000,
    show_default=True,
    help="Frames that may wait for the pipeline; past a backlog, quotes conflate.",
)
@click.option("--conflate-after", "conflate_after_ms", default=2.0, show_default=True,
              type=click.FloatRange(min=0.0), metavar="MS",
              help="Quotes conflate (a newer one replaces the one still waiting) only once "
                   "the frames waiting would take the pipeline longer than this to run (their "
                   "number times its recent time per frame; inf: never), or once "
                   "--conflate-backlog frames wait: a burst it runs within this loses no "
                   "quote.")  # fmt: skip
@click.option("--conflate-backlog", default=5_000, show_default=True,
              type=click.IntRange(min=0), metavar="FRAMES",
              help="Quotes conflate once this many frames wait, however briefly (at most "
                   "half the inbox).")  # fmt: skip
@click.option(
    "--inbox-overflow",
    type=click.Choice(["pause", "drop"]),
    default="pause",
    show_default=True,
    help="A full inbox: pause reading the socket (TCP slows the feed; nothing dropped) or "
    "drop trades/depth and declare a gap (the book resyncs).",
)
@click.option("--checkpoint", "checkpoint_s", default=30.0, show_default=True,
              type=click.FloatRange(min=0.01), metavar="SECONDS",
              help="How often the recording is flushed and checkpointed: a killed session "
                   "loses at most about this much (`data recover` cuts it there).")  # fmt: skip
@click.option("--warm-from", "warm_from", metavar="SESSION|auto",
              help="Fill the feature buffers (and a stateful model) from this recorded "
                   "session before the first live event; auto: the symbol's newest "
                   "recorded session.")  # fmt: skip
@click.option("--keep-warm/--no-keep-warm", "keep_warm", default=True, show_default=True,
              help="While the feed is idle (1 ms and more), run the hot path dry every ms "
                   "(last frame parsed again, last book re-checked, the engine walked over it "
                   "on a scratch copy, a stateless model on a copy of the features; answers "
                   "discarded, nothing decided or recorded changes) so the next frame finds "
                   "it in the caches.",
              )  # fmt: skip
@click.option("--busy-poll", "busy_poll", is_flag=True, default=False,
              help="The network thread polls the sockets without ever sleeping (one core at "
                   "100% for the whole run): a frame that comes after an idle gap finds the "
                   "thread awake, and keep-warm runs every 0.25 ms (obi_mlp 1x receive->done "
                   "p50 ~0.145 -> ~0.12 ms on a shared host).",
              )  # fmt: skip
@click.option("--prewake/--no-prewake", "prewake", default=True, show_default=True,
              help="Poll without sleeping from 3 ms before to 4 ms after the next frame of a "
                   "steady stream with a period of 70 ms or more (Binance depth@100ms at 1x), "
                   "so that frame finds the network thread awake (a few % of a core).",
              )  # fmt: skip
@click.option("--seed", default=0, show_default=True, help="Seed of every random generator.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("reports"),
    show_default=True,
    help="Where run directories go.",
)
@click.option(
    "--dashboard/--no-dashboard",
    default=None,
    help="Live dashboard (default: on when the terminal is interactive).",
)
@DATA_DIR_OPTION
def live(
    feed: str,
    symbols: tuple[str, ...],
    strategy: str,
    config_file: Path | None,
    sets: tuple[str, ...],
    url: str | None,
    rest_url: str | None,
    duration: float | None,
    until_idle: float | None,
    inbox_capacity: int,
    conflate_after_ms: float,
    conflate_backlog: int,
    inbox_overflow: Literal["pause", "drop"],
    checkpoint_s: float,
    warm_from: str | None,
    keep_warm: bool,
    busy_poll: bool,
    prewake: bool,
    seed: int,
    out: Path,
    dashboard: bool | None,
    data_dir: Path,
) -> None:
    """Paper-trade a strategy on a live websocket feed; record the session; Ctrl-C stops.

    Every symbol's session is recorded under the data directory and is a normal session for
    replay, stress and report; `ticktape replay SESSION --strategy NAME --latency recorded`
    reproduces the digest printed at the end.
    """
    # first, before pyarrow loads: Arrow's allocators hand freed pages back at once (RSS
    # stays flat at max speed; simulator/live/memory.py)
    from simulator.live.memory import fix_mmap_threshold, prompt_arrow_pool, set_allocator_options

    set_allocator_options()
    import signal
    import threading

    from rich.live import Live

    from simulator.live.run import LiveOptions, LiveView, run_live

    fix_mmap_threshold()  # this process is the run: large blocks in their own mappings
    prompt_arrow_pool()  # and Arrow's freed pages go back at once

    config = _load_config(strategy, config_file, sets)
    options = LiveOptions(
        symbols=symbols, data_dir=data_dir, out_root=out, feed=feed, url=url, rest_url=rest_url,
        duration_s=duration, until_idle_s=until_idle, inbox_capacity=inbox_capacity, seed=seed,
        roll_seconds=checkpoint_s, warm_from=warm_from, inbox_overflow=inbox_overflow,
        keep_warm=keep_warm, busy_poll=busy_poll, prewake=prewake,
        conflate_after_ms=conflate_after_ms, conflate_backlog=conflate_backlog,
    )  # fmt: skip
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    show = console.is_terminal if dashboard is None else dashboard
    if show:
        from simulator.live.dashboard import render

        with Live(console=console, refresh_per_second=4, transient=False) as screen:

            def on_view(view: LiveView) -> None:
                screen.update(render(view))

            result = run_live(config, options, stop=stop, on_view=on_view)
    else:
        result = run_live(config, options, stop=stop)
    for name, digest in result.digests.items():
        s = result.summaries[name]
        console.print(
            f"[bold]{name}[/bold]: {s['n_events']:,} events, {s['n_orders']} orders, "
            f"{s['n_fills']} fills, {s['n_rejections']} rejections; run {result.run_dirs[name]}"
        )
        got = result.live_facts[name].get("instrument")
        if isinstance(got, dict):  # where tick, lot and minimum came from: the venue or not
            console.print(
                f"  instrument: tick {got['tick']:g}, lot {got['lot']:g}, minimum notional "
                f"{got['min_notional']:g} from {escape(str(got['source']))}"
            )
        inbox: Any = result.live_facts[name]["inbox"]
        console.print(
            f"  inbox: {inbox['received']:,} frames queued ({inbox['inline']:,} of "
            f"{inbox['frames']:,} run by the reader itself), most waiting {inbox['high_water']:,} "
            f"of {inbox['capacity']:,}, reading paused {inbox['pauses']:,} times for "
            f"{inbox['paused_s']:,.1f} s, overflow {inbox['overflowed']:,} (declared gaps), "
            f"conflated quotes {inbox['conflated']:,}"
        )
        print(f"session {name} digest {digest}", flush=True)


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path),
              help="HTML file to write (default: RUN_DIR/report.html).")  # fmt: skip
def report(run_dir: Path, out: Path | None) -> None:
    """Write the self-contained HTML report of RUN_DIR (a `ticktape replay` output)."""
    from simulator.report import write_report

    _check_writable(
        out or run_dir / "report.html", "-o/--out" if out else "RUN_DIR", directory=False
    )
    path = write_report(run_dir, out)
    console.print(f"report written to {path} ({path.stat().st_size / 1e6:.1f} MB)")


def _print_run(manifest: dict[str, Any], out_dir: Path) -> None:
    s = manifest["summary"]
    timings = manifest["timings"]
    console.print(
        f"[bold]{manifest['strategy']}[/bold] on {manifest['session']}: "
        f"{s['n_events']:,} events in {timings['run_s']:.2f} s "
        f"({timings['events_per_s']:,.0f} events/s)"
    )
    console.print(
        f"  PnL {s['net_pnl']:,.4f} after fees (realised {s['realized_pnl']:,.4f}, "
        f"unrealised {s['unrealized_pnl']:,.4f}, fees {s['fees']:,.4f})"
    )
    console.print(
        f"  orders {s['n_orders']:,}  fills {s['n_fills']:,}  rejections {s['n_rejections']:,}  "
        f"position {s['final_position']:g}  max drawdown {s['max_drawdown']:,.4f}"
    )
    by_reason = s.get("rejections_by_reason") or {}
    if by_reason:
        console.print("  rejected: " + ", ".join(f"{k} {n:,}" for k, n in by_reason.items()))
    if s.get("n_under_minimum"):
        console.print(f"  not sent, under the minimum notional: {s['n_under_minimum']:,}")
    table = Table(title="stage latency (µs)", show_edge=False)
    for name in ("stage", "count", "p50", "p99", "p99.9", "max"):
        table.add_column(name, justify="right")
    for stage, h in manifest["latency_us"].items():
        table.add_row(
            stage, f"{h['count']:,.0f}", f"{h['p50_us']:.2f}", f"{h['p99_us']:.2f}",
            f"{h['p99.9_us']:.2f}", f"{h['max_us']:.2f}",
        )  # fmt: skip
    console.print(table)
    console.print(f"  digest {s['digest']}\n  run written to {out_dir}")


@main.command()
@click.argument("session")
@_strategy_options
@click.option("--scenario", "scenarios", multiple=True, required=True, metavar="FILE|NAME",
              help="A scenario TOML file or a name in scenarios/ (repeatable).")  # fmt: skip
@click.option("--workers", type=click.IntRange(min=1),
              help="Worker processes (default: one per core).")  # fmt: skip
@click.option("--report/--no-report", "with_report", default=True, show_default=True,
              help="Write each run's report.html (the baseline's: the comparison).")  # fmt: skip
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Output directory (default: reports/stress--<run>/); a previous stress run "
                   "there is replaced.")  # fmt: skip
@FORCE_OPTION
@LATENCY_OPTION
@JSON_OPTION
@DATA_DIR_OPTION
def stress(
    session: str,
    strategy: str,
    config_file: Path | None,
    sets: tuple[str, ...],
    scenarios: tuple[str, ...],
    workers: int | None,
    with_report: bool,
    out: Path | None,
    force: bool,
    latency: str | None,
    as_json: bool,
    data_dir: Path,
) -> None:
    """Run the baseline (calm) and each scenario on SESSION; print and save the comparison.

    Exit 1 when a scenario failed (every run is still compared and written)."""
    from simulator import runtime
    from simulator.rundir import check_target, staged
    from simulator.session import resolve_session
    from simulator.stress.run import BASELINE, run_stress, slug
    from simulator.stress.scenario import load_scenario

    session = _one_session(session, data_dir)
    ref = resolve_session(session, data_dir)
    config = _with_latency(_load_config(strategy, config_file, sets), latency)
    name = f"stress--{runtime.run_id(config, ref, 0).removesuffix('--seed0')}"
    out_dir = out or runtime.unique_dir(Path("reports"), name)
    check_target(out_dir, "stress", force=force)
    _check_writable(out_dir, "--out", directory=True)
    total = len({BASELINE, *(load_scenario(path).name for path in scenarios)})
    done: list[str] = []
    with staged(out_dir) as staging, _progress("stress: baseline and scenarios") as progress:

        def on_done(name: str) -> None:
            done.append(name)
            progress(len(done), total)

        table = run_stress(
            session, data_dir, config, list(scenarios), staging, workers=workers,
            on_done=on_done, keep_latency_model=latency is not None,
        )  # fmt: skip
    rows = table.to_pylist()
    runs = sorted(p.parent for p in out_dir.glob("*/manifest.json"))
    if with_report:
        from simulator.report import write_report

        for run in runs:
            write_report(run)
    baseline = out_dir / slug(BASELINE)
    paths = {
        "out_dir": out_dir,
        "comparison": out_dir / "comparison.parquet",
        "baseline_report": baseline / "report.html" if with_report and baseline in runs else None,
        "runs": {str(r["scenario"]): str(out_dir / slug(str(r["scenario"]))) for r in rows},
    }
    if as_json:
        _echo_json(summary=rows, paths=paths, digest=rows[0].get("digest"))
    else:
        _print_stress(rows, paths, len(runs) if with_report else 0)
    if any(str(r.get("status", "")).startswith("failed") for r in rows):
        sys.exit(1)


def _print_stress(rows: list[dict[str, Any]], paths: dict[str, Any], n_reports: int) -> None:
    _print_comparison(rows)
    console.print(f"  comparison written to {paths['comparison']}")
    if n_reports:
        console.print(f"  reports written in {n_reports} run directories under {paths['out_dir']}")
    if paths["baseline_report"] is not None:
        console.print(f"  baseline report (with the comparison) {paths['baseline_report']}")


def _print_comparison(rows: list[dict[str, Any]]) -> None:
    table = Table(title="stress comparison (PnL after fees; p99 latency in µs)", show_edge=False)
    heads = ("scenario", "fills", "PnL", "ΔPnL", "rej", "trips", "skip", "infer", "queue")
    for head in heads:
        table.add_column(head, justify="left" if head == "scenario" else "right", no_wrap=True)
    notes = []
    for r in rows:
        if r.get("status") != "ok":
            notes.append(f"  {r['scenario']}: {r['status']}")
            continue
        delta = r.get("pnl_vs_baseline")
        table.add_row(
            r["scenario"], f"{r['n_fills']:,}", f"{r['pnl']:,.0f}",
            "" if delta is None else f"{delta:+,.0f}", f"{r['n_rejections']:,}",
            str(r["breaker_trips"]), f"{r['n_skipped'] + r['n_dropped']:,}",
            f"{r['inference_p99_us']:.1f}", f"{r['queue_p99_us']:.1f}",
        )  # fmt: skip
        dropped = _dropped(r)
        if dropped:
            notes.append(f"  {r['scenario']}: bad rows dropped by the checks ({dropped})")
    console.print(table)
    for note in notes:
        console.print(note)


def _dropped(row: dict[str, Any]) -> str:
    """`quotes 12, trades 3`: rows the drop repair took out of each stream of a stress run."""
    injected = json.loads(row.get("injected") or "{}")
    counts = {key.split(":")[0]: n for key, n in injected.items() if key.endswith("checks.dropped")}
    return ", ".join(f"{kind} {n:,}" for kind, n in sorted(counts.items()) if n)


def _parsed(parse: Callable[[str], Any]) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """A click callback: the library's parser, its ConfigError a usage error (exit 2)."""

    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:  # noqa: ANN401
        try:
            if isinstance(value, tuple):
                return tuple(parse(v) for v in value)
            return None if value is None else parse(value)
        except SimulatorError as e:
            raise click.BadParameter(str(e)) from e

    return callback


def _grid_parser(text: str) -> Any:  # noqa: ANN401 - a GridAxis, imported late
    from simulator.sweep import parse_grid

    return parse_grid(text)


def _scales_parser(text: str) -> Any:  # noqa: ANN401 - a tuple of floats
    from simulator.sweep import parse_scales

    return parse_scales(text)


@main.command()
@click.argument("sessions", metavar="SESSION...", nargs=-1, required=True)
@_strategy_options
@click.option("--grid", "axes", multiple=True, metavar="KEY=V1,V2,...",
              callback=_parsed(_grid_parser),
              help="A setting and its values, e.g. policy.threshold=0.2,0.3 (repeatable: "
                   "cells are the product).")  # fmt: skip
@click.option("--latency-scale", "scales", metavar="F1,F2,...", callback=_parsed(_scales_parser),
              help="Also run each cell with every stage, feed and order latency times each "
                   "factor, e.g. 0.5,1,2,4 (needs a non-zero latency model).")  # fmt: skip
@click.option("--seed", default=0, show_default=True, help="Seed of every random generator.")
@click.option("--workers", type=click.IntRange(min=1),
              help="Local worker processes (default: one per core; 1: this process).")  # fmt: skip
@click.option("--ray", "ray_address", metavar="ADDRESS",
              help="Run cells on Ray: local (start one), auto or ray://host:10001.")  # fmt: skip
@click.option("--reports", is_flag=True, help="Write each cell's report.html too.")
@click.option("--force", is_flag=True, help="Rerun cells already done (default: skip them).")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Sweep directory: cells/, results.parquet, sweep.html.")  # fmt: skip
@LATENCY_OPTION
@DATA_DIR_OPTION
def sweep(
    sessions: tuple[str, ...], strategy: str, config_file: Path | None, sets: tuple[str, ...],
    axes: tuple[Any, ...], scales: tuple[float, ...] | None, seed: int, workers: int | None,
    ray_address: str | None, reports: bool, force: bool, out: Path, latency: str | None,
    data_dir: Path,
) -> None:  # fmt: skip
    """Replay SESSIONs x the product of the grids x latency scales as independent cells, on
    local processes or Ray; resumable (cells already done are skipped). Writes OUT/cells/,
    OUT/results.parquet (one row per cell) and OUT/sweep.html. Exit 1 if any cell failed."""
    from simulator.selection import expand_sessions
    from simulator.sweep import Sweep, SweepSpec
    from simulator.sweep.executors import executor_for

    if ray_address is not None and workers is not None and ray_address != "local":
        raise click.UsageError("--workers applies to local processes or --ray local only")
    spec = SweepSpec(
        sessions=tuple(expand_sessions(sessions, data_dir)), data_dir=data_dir,
        config=_with_latency(_load_config(strategy, config_file, sets), latency),
        axes=axes, scales=scales or (), seed=seed, reports=reports, force=force,
    )  # fmt: skip
    _check_writable(out, "--out", directory=True)
    plan = Sweep(spec, out)
    executor = executor_for(workers, ray_address)
    try:
        outcome = _run_sweep(plan, executor)
    except KeyboardInterrupt:
        err_console.print(
            f"[yellow]interrupted[/yellow]: workers stopped; {plan.n_done} of {len(plan.cells)} "
            f"cells done, kept under {out / 'cells'} and in {out / 'results.parquet'}; "
            "run the same command to resume"
        )
        sys.exit(130)
    _print_sweep(outcome, out)
    if outcome.n_failed:
        err_console.print(
            f"[red]SweepError[/red]: {outcome.n_failed} of {outcome.n_cells} cells failed "
            f"(their status is in {outcome.results})"
        )
        sys.exit(1)


def _run_sweep(plan: Any, executor: Any) -> Any:  # noqa: ANN401 - Sweep, Executor, Outcome
    from rich.progress import MofNCompleteColumn, TimeRemainingColumn

    from simulator.report.sweep import write_sweep_report

    todo = plan.pending()
    if len(todo) < len(plan.cells):
        done = len(plan.cells) - len(todo)
        console.print(f"resuming: {done} of {len(plan.cells)} cells already done")
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"),
               TimeRemainingColumn())  # fmt: skip
    failed = 0
    with Progress(*columns, console=err_console, transient=True) as bar:
        label = f"sweep on {executor.name}"
        task = bar.add_task(label, total=len(todo), rate="")

        def on_row(row: dict[str, Any]) -> None:
            nonlocal failed
            failed += row["status"] != "ok"
            speed = bar.tasks[task].speed
            rate = "" if speed is None else f"{speed:.2f} cells/s"
            note = f" ({failed} failed)" if failed else ""
            bar.update(task, advance=1, rate=rate, description=f"{label}{note}")

        try:
            outcome = plan.run(executor, on_row)
        finally:
            write_sweep_report(plan.out_dir)
    return outcome


def _print_sweep(outcome: Any, out: Path) -> None:  # noqa: ANN401 - a SweepOutcome
    import pyarrow.parquet as pq

    console.print(
        f"{outcome.n_cells} cells: {outcome.n_run} run, {outcome.n_resumed} resumed, "
        f"{outcome.n_failed} failed"
    )
    table = pq.read_table(outcome.results, columns=["cell", "status", "net_pnl"])
    ok = [r for r in table.to_pylist() if r["status"] == "ok"]
    if ok:
        best = max(ok, key=lambda r: r["net_pnl"])
        console.print(f"  best net PnL {best['net_pnl']:,.4f}: cell {best['cell']}")
    for row in outcome.failures:
        console.print(f"  [red]{escape(row['cell'])}[/red]: {escape(row['status'])}")
    if outcome.n_failed > len(outcome.failures):
        console.print(f"  ... and {outcome.n_failed - len(outcome.failures)} more failed cells")
    console.print(f"  results {outcome.results}\n  report {out / 'sweep.html'}")


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Calibration file to write (Parquet).")  # fmt: skip
def calibrate(run_dir: Path, out: Path) -> None:
    """Write a calibrated latency model from RUN_DIR's measured stage times; replay or stress
    with --latency calibrated:FILE to sample them reproducibly."""
    from simulator.timing import calibrate as write_calibration

    _check_writable(out, "-o/--out", directory=False)
    path = write_calibration(run_dir, out)
    console.print(f"calibrated latency model written to {path}; use --latency calibrated:{path}")


@main.command()
@click.option(
    "--dir",
    "local",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Also list the strategy folders here (DIR/*/strategy.toml, DIR/*/*/strategy.toml).",
)
@click.option("--defaults", is_flag=True,
              help="Print the defaults every strategy TOML starts from, as TOML.")  # fmt: skip
def strategies(local: Path, defaults: bool) -> None:
    """List the shipped and local strategies with their descriptions."""
    from simulator.config import strategy_catalog, to_toml
    from simulator.settings import default_dict

    if defaults:
        click.echo(to_toml(default_dict()), nl=False)
        return
    table = Table(box=None)
    for column in ("strategy", "where", "description"):
        table.add_column(column)
    for entry in strategy_catalog(local):
        where = "shipped" if entry.shipped else str(entry.path.parent)
        table.add_row(escape(entry.name), escape(where), escape(entry.description))
    console.print(table)
    console.print(
        "[dim]use one with --strategy NAME (shipped) or --strategy DIR/strategy.toml[/dim]"
    )


@main.group()
def new() -> None:
    """Start something of your own from a runnable template."""


@new.command(name="strategy")
@click.argument("name")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              default=Path("."), show_default=True,
              help="Where the folder NAME/ is written.")  # fmt: skip
def new_strategy(name: str, directory: Path) -> None:
    """Write DIR/NAME/: strategy.toml, features.py, policy.py, model.onnx and a README; it
    replays as written (ticktape replay SESSION --strategy DIR/NAME/strategy.toml)."""
    from simulator.scaffold import new_strategy as write

    folder = write(name, directory)
    console.print(f"wrote {escape(str(folder))}/: strategy.toml, features.py, policy.py, "
                  "model.onnx, README.md")  # fmt: skip
    toml = escape(str(folder / "strategy.toml"))
    console.print(f"try: ticktape replay nasdaq/GOOG/2012-06-21 --strategy {toml}")


@main.command()
def scenarios() -> None:
    """List the stress scenarios (scenarios/*.toml) with their descriptions."""
    from simulator.stress.scenario import load_scenario, scenario_names

    table = Table(box=None)
    for column in ("scenario", "seed", "description"):
        table.add_column(column)
    for name in scenario_names():
        scenario = load_scenario(name)
        table.add_row(escape(name), str(scenario.seed), escape(scenario.description))
    console.print(table)
    console.print("[dim]use one with stress --scenario NAME (or a path to a scenario TOML)[/dim]")


@main.command()
@click.argument("session")
@_strategy_options
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the model files and train.json (default: a new "
                   "reports/train--<run>/); name the strategy's folder to replace its "
                   "shipped model.")  # fmt: skip
@FORCE_OPTION
@DATA_DIR_OPTION
def train(
    session: str,
    strategy: str,
    config_file: Path | None,
    sets: tuple[str, ...],
    out: Path | None,
    force: bool,
    data_dir: Path,
) -> None:
    """Train a strategy's model on SESSION (seeded: same data, host and library versions =>
    same bytes) and export ONNX + TorchScript into a new folder (or --out)."""
    from simulator import runtime
    from simulator.rundir import check_target, run_kind, staged
    from simulator.session import resolve_session
    from simulator.trainer import train_strategy

    ref = resolve_session(_one_session(session, data_dir), data_dir)
    config = _load_config(strategy, config_file, sets)
    name = f"train--{runtime.run_id(config, ref, config.train.seed)}"
    out_dir = out or runtime.unique_dir(Path("reports"), name)
    check_target(out_dir, "train", force=force)
    merge = out_dir.is_dir() and run_kind(out_dir) == "train"  # keep the folder's other models
    with staged(out_dir, merge=merge) as staging, console.status("training") as status:
        report = train_strategy(
            ref, config, out_dir=staging, progress=lambda text: status.update(text)
        )
    console.print(
        f"[bold]{report.strategy}[/bold] trained on {report.session}: {report.n_samples:,} "
        f"samples of {report.n_events:,} events ({report.n_unlabelled:,} without a label), "
        f"horizon {report.horizon} mid updates, seed {report.seed}"
    )
    for name, split in (("train", report.train), ("validation", report.val)):
        console.print(
            f"  {name:>10}: n {split.n:,}  base rate {split.base_rate:.3f}  loss {split.loss:.4f}"
            f"  accuracy {split.accuracy:.3f}  AUC {split.auc:.3f}"
        )
    written = [*report.files, f"{report.strategy}.train.json"]
    console.print(f"  wrote {', '.join(written)} in {out_dir}")
    model = (out_dir / Path(config.model.path).name).resolve()
    console.print(f"  replay with it: --set model.path={model}")


@main.command()
@click.option("--data", "datasets", multiple=True,
              help="SESSION or Parquet path (repeatable). Default: the GOOG day and a "
                   "generated L1 session of --size quotes (and a trade per ~10).")  # fmt: skip
@click.option(
    "--strategy",
    "strategies",
    multiple=True,
    help="Strategy of the pipeline cases (repeatable). Default: obi_rule, obi_mlp.",
)
@click.option("--size", default=1_000_000, show_default=True, type=click.IntRange(min=1),
              help="Quotes in the generated file.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="One JSON object per case.")
@click.option(
    "--kernel",
    type=click.Choice(["native", "python"]),
    default=None,
    help="Feature kernel: the compiled one or the Python path (same results). "
    "Default: native when built, or $TICKTAPE_FEATURES.",
)
@DATA_DIR_OPTION
def bench(
    datasets: tuple[str, ...],
    strategies: tuple[str, ...],
    size: int,
    as_json: bool,
    kernel: str | None,
    data_dir: Path,
) -> None:
    """Measure events/s and per-stage latency: data only, +features, full pipelines."""
    import tempfile

    from simulator import bench as benchmark
    from simulator.config import load_strategy, strategy_names
    from simulator.session import resolve_session
    from simulator.sources.synthetic import write_synthetic_session

    chosen = list(strategies) or [s for s in ("obi_rule", "obi_mlp") if s in strategy_names()]
    for name in chosen:  # named errors here, before any case subprocess starts
        load_strategy(name)
    for spec in datasets:
        resolve_session(spec, data_dir)
    with tempfile.TemporaryDirectory() as tmp:
        data = list(datasets)
        if not data:
            synthetic = write_synthetic_session(Path(tmp) / "synthetic", size)
            data = ["nasdaq/GOOG/2012-06-21", str(synthetic)]
        with _progress("benchmarking"):
            results = benchmark.run_all(data, chosen, data_dir, kernel=kernel)
    if as_json:
        for result in results:
            click.echo(json.dumps(result))
        return
    _print_bench(results)


def _print_bench(results: list[dict[str, Any]]) -> None:
    table = Table(title="ticktape bench (run phase; load apart)", show_edge=False)
    columns = ("case", "strategy", "data", "kernel", "events", "events/s", "load s", "peak RSS MB")
    rows = [
        (
            r["case"],
            r["strategy"],
            Path(r["data"]).name if "/" in r["data"] else r["data"],
            r.get("feature_kernel") or "-",
            f"{r['n_events']:,}",
            f"{r['events_per_s']:,.0f}",
            f"{r['load_s']:.2f}",
            f"{r['peak_rss_mb']:.0f}",
        )
        for r in results
    ]
    for i, name in enumerate(columns):
        width = max([len(row[i]) for row in rows], default=0)
        if name in ("case", "strategy", "data", "kernel"):  # long names may wrap, numbers never
            table.add_column(name, overflow="fold", min_width=max(len(name), min(width, 10)))
        else:
            table.add_column(name, justify="right", no_wrap=True, min_width=width)
    for row in rows:
        table.add_row(*row)
    console.print(table)
    for r in results:
        for stage, h in r["stages"].items():
            if h["count"]:
                console.print(
                    f"  {r['strategy']:>10} {Path(r['data']).name:>24} {stage:>13}: "
                    f"p50 {h['p50_us']:.2f} µs  p99 {h['p99_us']:.2f} µs  max {h['max_us']:.1f} µs"
                )


@main.group()
def feed() -> None:
    """Serve recorded sessions on 127.0.0.1 in a venue's wire format (offline live tests)."""


FEED_SERVERS = {
    "binance": "simulator.feedsim.server",
    "coinbase": "simulator.feedsim.coinbase_server",
}
"""venue -> module with `serve_sessions(sessions, data_dir, FeedOptions, on_started)`."""


@feed.command(name="serve")
@click.argument("sessions", nargs=-1)
@click.option("--speed", default="1", show_default=True,
              help="1 (recorded pace), N (N times faster) or max (no sleeps).")  # fmt: skip
@click.option("--port", default=0, show_default=True, type=click.IntRange(0, 65535),
              help="Port on 127.0.0.1 (0: any free port).")  # fmt: skip
@click.option("--faults", type=click.Path(dir_okay=False, path_type=Path),
              help="Seeded fault schedule (TOML).")  # fmt: skip
@click.option("--fault-log", type=click.Path(dir_okay=False, path_type=Path),
              help="Write each injected fault here as a JSON line.")  # fmt: skip
@click.option("--ping-interval", default=20.0, show_default=True,
              type=click.FloatRange(min=0.01), help="Seconds between server pings.")  # fmt: skip
@click.option("--start", default=0, show_default=True, type=click.IntRange(min=0),
              help="First message to serve (tape index; earlier ones move the book).")  # fmt: skip
@click.option("--limit", type=click.IntRange(min=0), help="Serve at most this many messages.")
@click.option(
    "--synthetic",
    type=click.IntRange(min=1),
    metavar="N",
    help="Serve N messages of a seeded synthetic BTCUSDT book instead of SESSIONs "
    "(1,000 messages per tape second; binance only).",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of --synthetic.")
@click.option("--venue", type=click.Choice(sorted(FEED_SERVERS)), default="binance",
              show_default=True, help="Wire format to serve.")  # fmt: skip
@DATA_DIR_OPTION
def feed_serve(
    sessions: tuple[str, ...], speed: str, port: int, faults: Path | None,
    fault_log: Path | None, ping_interval: float, start: int, limit: int | None,
    synthetic: int | None, seed: int, venue: str, data_dir: Path,
) -> None:  # fmt: skip
    """Serve SESSIONs (default binance/BTCUSDT/2024-08-08), merged by receive time, until the
    recording ends or Ctrl-C. The first line is `feed: <ws url>/stream  rest: <rest url>`."""
    import importlib

    from simulator.errors import ConfigError
    from simulator.feedsim.server import FeedOptions, parse_speed

    try:
        server = importlib.import_module(FEED_SERVERS[venue])
    except ModuleNotFoundError as e:
        if e.name != FEED_SERVERS[venue]:
            raise
        raise ConfigError(f"{venue} feed serving is not available") from e
    if not hasattr(server, "serve_sessions"):
        raise ConfigError(
            f"{venue} feed serving is not available: {FEED_SERVERS[venue]} has no "
            "serve_sessions(sessions, data_dir, FeedOptions, on_started)"
        )
    options = FeedOptions(
        speed=parse_speed(speed), port=port, faults=faults, fault_log=fault_log,
        ping_interval=ping_interval, start=start, limit=limit, synthetic=synthetic, seed=seed,
    )  # fmt: skip

    def on_started(ws_url: str, rest_url: str) -> None:
        click.echo(f"feed: {ws_url}/stream  rest: {rest_url}")
        sys.stdout.flush()  # a test or script waits for this line

    from simulator.selection import expand_sessions

    chosen = expand_sessions(sessions, data_dir) if synthetic is None else list(sessions)
    summary = server.serve_sessions(chosen, data_dir, options, on_started)
    console.print(
        f"feed done ({summary.ended}): {summary.messages:,} messages, "
        f"{summary.frames_sent:,} frames sent, {summary.connections:,} connections, "
        f"{summary.faults_injected:,} faults injected"
    )


if __name__ == "__main__":
    main()

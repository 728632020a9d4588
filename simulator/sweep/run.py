"""`ticktape sweep`: sessions x grid values x latency scales as independent, resumable cells.

Each cell is a normal replay (runtime.replay) into `<out>/cells/<session>--<key>/`. A cell's
content key hashes what decides its result: the session files' sha256, the effective
configuration, the seed, the model or calibration files it reads and the ticktape version.
Running the same sweep again skips every cell already done with the same key (`force`
reruns them); a cell whose key changed, that failed or that was interrupted runs again.
A failing cell is a row with status `failed: ...`; the sweep goes on. `results.parquet`
holds one row per cell, in cell order, and is written also when the sweep is interrupted.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Final

import pyarrow.parquet as pq

from simulator.errors import ConfigError
from simulator.session import SessionRef, resolve_session
from simulator.settings import Settings
from simulator.store import file_sha256
from simulator.sweep.cell import (
    CELL_FILE,
    OK,
    CellJob,
    Row,
    finished_row,
    read_cell_file,
    write_cell_file,
)
from simulator.sweep.executors import Executor
from simulator.sweep.grid import GridAxis, cell_config, check_axes, require_scalable, setting
from simulator.sweep.results import RESULTS_FILE, write_results

CELLS_DIR: Final = "cells"
NOT_RUN: Final = "not run"
RESULTS_CHUNK: Final = 4096
FAILURES_KEPT: Final = 20
META_FILE: Final = "sweep.json"
PLUGIN_FILE: Final = re.compile(r"[^:]+\.py:[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, slots=True)
class SweepSpec:
    """A sweep as the user asked for it (validated by `plan`)."""

    sessions: tuple[str, ...]
    data_dir: Path
    config: Settings
    axes: tuple[GridAxis, ...] = ()
    scales: tuple[float, ...] = ()
    seed: int = 0
    reports: bool = False
    force: bool = False


@dataclass(frozen=True, slots=True)
class Cell:
    index: int
    session: int  # index into the plan's sessions
    params: tuple[tuple[str, str], ...]
    scale: float | None


@dataclass(slots=True)
class SweepOutcome:
    """Counts and a few rows; every cell's row is in `results` (read by `rows`)."""

    results: Path
    n_cells: int
    n_run: int
    n_resumed: int
    n_failed: int = 0
    failures: list[Row] = field(default_factory=list)  # the first FAILURES_KEPT

    @property
    def rows(self) -> list[Row]:
        """Every cell's row, read back from results.parquet (for small sweeps and tests)."""
        rows: list[Row] = pq.read_table(self.results).to_pylist()
        return rows

    def add(self, row: Row) -> None:
        if row["status"] != OK:
            self.n_failed += 1
            if len(self.failures) < FAILURES_KEPT:
                self.failures.append(row)


Progress = Callable[[Row], None]


class Sweep:
    """A planned sweep: its cells, their configurations and content keys, and the run."""

    def __init__(self, spec: SweepSpec, out_dir: Path) -> None:
        self.spec, self.out_dir = spec, out_dir
        self.refs: list[SessionRef] = [resolve_session(s, spec.data_dir) for s in spec.sessions]
        check_axes(spec.config, spec.axes)
        self.cells = list(_cells(len(self.refs), spec.axes, spec.scales))
        _require_sweep_dir(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        self._write_meta()
        if spec.scales:
            for combo in _combos(spec.axes):  # before any cell runs: one error, not N
                require_scalable(cell_config(spec.config, combo, None, out_dir))
        self._session_keys = [_files_digest(ref.files.values()) for ref in self.refs]
        self._version = metadata.version("ticktape")
        self._hashes: dict[Path, str] = {}  # model and calibration files, hashed once
        self.n_done = 0  # cells with a result, once run() has returned or been interrupted
        self._keys: list[str | None] = [None] * len(self.cells)
        self._typed: dict[tuple[str, str], object] = {}
        self._pending: list[Cell] | None = None

    def _write_meta(self) -> None:
        """sweep.json: what the sweep varies (the report's header and chart axes)."""
        meta = {
            "strategy": self.spec.config.strategy.name,
            "sessions": [ref.name for ref in self.refs],
            "grid": {axis.key: list(axis.values) for axis in self.spec.axes},
            "latency_scale": list(self.spec.scales),
            "seed": self.spec.seed,
            "cells": len(self.cells),
        }
        (self.out_dir / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")

    def config(self, cell: Cell) -> Settings:
        return cell_config(self.spec.config, cell.params, cell.scale, self.out_dir)

    def key(self, cell: Cell, config: Settings) -> str:
        """sha256 over what decides the cell's result (see the module docstring)."""
        content = {
            "session_files": self._session_keys[cell.session],
            "config": config.as_dict(),
            "files": self._config_files(config),
            "seed": self.spec.seed,
            "ticktape": self._version,
        }
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()

    def _config_files(self, config: Settings) -> dict[str, str]:
        """sha256 of the files the configuration reads (model, calibration, the user's
        `file.py:Class` plug-ins): retraining a model, recalibrating or editing a plug-in
        changes the key even though the paths stay the same."""
        strategy_dir = Path(config.strategy.dir)
        files: dict[str, Path] = {}
        if config.model.path:
            files["model"] = strategy_dir / config.model.path
        kind, _, rest = config.latency.model.partition(":")
        if kind == "calibrated":
            files["calibration"] = Path(rest)
        for ref in _plugin_files(config.as_dict()):  # wherever the TOML names one
            files[ref] = strategy_dir / ref
        out = {}
        for name, path in files.items():
            if path.is_file():
                if path not in self._hashes:
                    self._hashes[path] = file_sha256(path)
                out[name] = self._hashes[path]
        return out

    def cell_dir(self, cell: Cell, key: str) -> Path:
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.refs[cell.session].name.strip("/"))[-60:]
        return self.out_dir / CELLS_DIR / f"{name}--{key[:16]}"

    def labels(self, cell: Cell, config: Settings) -> Row:
        """session, each grid key's effective value (typed), latency_scale."""
        row: Row = {"session": self.refs[cell.session].name}
        row.update({axis.key: setting(config, axis.key) for axis in self.spec.axes})
        row["latency_scale"] = 1.0 if cell.scale is None else cell.scale
        return row

    def job(self, cell: Cell) -> CellJob:
        config = self.config(cell)
        key = self.key(cell, config)
        return CellJob(
            index=cell.index, session=self.refs[cell.session].name,
            data_dir=str(self.spec.data_dir), config=config, seed=self.spec.seed,
            out_dir=str(self.cell_dir(cell, key)), key=key, reports=self.spec.reports,
            labels=self.labels(cell, config),
        )  # fmt: skip

    def pending(self) -> list[Cell]:
        """The cells left to run: all with `force`, else those not done with their key."""
        if self._pending is None:
            self._pending = [
                cell
                for cell in self.cells
                if self.spec.force or finished_row(self._dir(cell), self._key(cell)) is None
            ]
        return self._pending

    def run(self, executor: Executor, on_row: Progress | None = None) -> SweepOutcome:
        """Run every cell not done yet; write results.parquet (also when interrupted)."""
        todo = self.pending()
        outcome = SweepOutcome(self.out_dir / RESULTS_FILE, len(self.cells), len(todo),
                               len(self.cells) - len(todo))  # fmt: skip
        try:
            for row in executor.results(self.job(cell) for cell in todo):
                _keep_cell_file(self.out_dir / CELLS_DIR / str(row["cell"]), row)
                outcome.add(row)
                if on_row is not None:
                    on_row(row)
        finally:
            outcome.results = self._write_results()
        return outcome

    def _key(self, cell: Cell) -> str:
        if self._keys[cell.index] is None:
            self._keys[cell.index] = self.key(cell, self.config(cell))
        return str(self._keys[cell.index])

    def _dir(self, cell: Cell) -> Path:
        return self.cell_dir(cell, self._key(cell))

    def _row(self, cell: Cell) -> Row:
        """The cell's row from its cell.json (any status), or `not run`."""
        row = read_cell_file(self._dir(cell), self._key(cell))
        return {**(row or {"status": NOT_RUN}), **self._labels(cell)}

    def _labels(self, cell: Cell) -> Row:
        """labels() without building the cell's whole configuration (typed values cached)."""
        row: Row = {"session": self.refs[cell.session].name}
        for key, text in cell.params:
            if (key, text) not in self._typed:
                self._typed[key, text] = setting(cell_config(self.spec.config, [(key, text)],
                                                             None, self.out_dir), key)  # fmt: skip
            row[key] = self._typed[key, text]
        row["latency_scale"] = 1.0 if cell.scale is None else cell.scale
        return row

    def _write_results(self) -> Path:
        """results.parquet from every cell's cell.json, in cell order, a chunk at a time: the
        sweep's memory does not grow with the number of cells."""
        self.n_done = 0

        def chunks() -> Iterator[list[Row]]:
            for start in range(0, len(self.cells), RESULTS_CHUNK):
                rows = [self._row(cell) for cell in self.cells[start : start + RESULTS_CHUNK]]
                self.n_done += sum(1 for row in rows if row["status"] != NOT_RUN)
                yield rows

        return write_results(self.out_dir, chunks(), self.spec.axes)


def _keep_cell_file(out_dir: Path, row: Row) -> None:
    """A row whose worker died has no cell.json yet: write it, so results show the failure."""
    if not (out_dir / CELL_FILE).exists():
        out_dir.mkdir(parents=True, exist_ok=True)
        write_cell_file(out_dir, row)


def _plugin_files(node: object) -> Iterator[str]:
    """Every `file.py` named by a `file.py:Class` reference anywhere in the configuration."""
    if isinstance(node, dict):
        for value in node.values():
            yield from _plugin_files(value)
    elif isinstance(node, list):
        for value in node:
            yield from _plugin_files(value)
    elif isinstance(node, str) and PLUGIN_FILE.fullmatch(node):
        yield node.rpartition(":")[0]


def _require_sweep_dir(out_dir: Path) -> None:
    """A sweep writes into a new or empty directory or one of its own earlier runs (which it
    resumes), never over something else."""
    if out_dir.is_dir() and not (out_dir / META_FILE).exists() and any(out_dir.iterdir()):
        raise ConfigError(
            f"--out {out_dir} is not empty and holds no sweep ({META_FILE}); choose a new "
            "directory (a sweep's own directory is resumed)"
        )


def _cells(n_sessions: int, axes: Sequence[GridAxis], scales: Sequence[float]) -> Iterator[Cell]:
    levels: Sequence[float | None] = tuple(scales) or (None,)
    product = itertools.product(range(n_sessions), _combos(axes), levels)
    for index, (session, params, scale) in enumerate(product):
        yield Cell(index, session, params, scale)


def _combos(axes: Sequence[GridAxis]) -> list[tuple[tuple[str, str], ...]]:
    values = [[(axis.key, v) for v in axis.values] for axis in axes]
    return [tuple(combo) for combo in itertools.product(*values)]


def _files_digest(paths: Iterable[Path]) -> dict[str, str]:
    return {path.name: file_sha256(path) for path in sorted(paths)}

"""The Python API for notebooks: replay a strategy and get the run's tables as polars frames.

    from simulator import api
    run = api.replay("nasdaq/GOOG/2012-06-21", "obi_mlp", overrides={"venue.taker_fee_bps": 1.0})
    run.summary["final_equity"], run.fills.head(), run.report()
    again = api.load_run(run.path)

The same composition as `ticktape replay` (the same runtime, digest and run directory); only
the way in and out differs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from simulator import runtime
from simulator.config import apply_overrides, apply_values, load_strategy
from simulator.errors import DataError
from simulator.session import SessionRef, resolve_session
from simulator.settings import Settings

STAGE_COLUMNS = ("features_ns", "inference_ns", "decision_ns", "risk_ns", "order_ns",
                 "tick_to_trade_ns", "queue_ns")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Run:
    """A finished run directory: its manifest and its tables, read when first asked for."""

    path: Path
    manifest: dict[str, Any]
    _tables: dict[str, pl.DataFrame] = field(default_factory=dict, repr=False, compare=False)

    @property
    def summary(self) -> dict[str, Any]:
        """Events, orders, fills, rejections, PnL, fees, position, equity, drawdown, digest."""
        return dict(self.manifest["summary"])

    @property
    def digest(self) -> str:
        return str(self.manifest["digest"])

    @property
    def config(self) -> dict[str, Any]:
        """The whole configuration the run used (defaults, strategy and overrides merged)."""
        return dict(self.manifest["config"])

    def table(self, name: str) -> pl.DataFrame:
        """Any Parquet table of the run directory by name (e.g. "risk_rejections")."""
        if name not in self._tables:
            path = self.path / f"{name}.parquet"
            if not path.exists():
                have = sorted(p.stem for p in self.path.glob("*.parquet"))
                raise DataError(f"{self.path}: no table '{name}' (it has {', '.join(have)})")
            self._tables[name] = pl.read_parquet(path)
        return self._tables[name]

    @property
    def decisions(self) -> pl.DataFrame:
        """One row per decision: event, time, model output, target, position, equity, order."""
        return self.table("decisions")

    @property
    def orders(self) -> pl.DataFrame:
        return self.table("orders")

    @property
    def fills(self) -> pl.DataFrame:
        return self.table("fills")

    @property
    def equity(self) -> pl.DataFrame:
        """Position and equity (marked to mid) over the run."""
        return self.table("equity")

    @property
    def latency(self) -> pl.DataFrame:
        """Per decision, each stage's time in ns (features ... tick_to_trade, queueing)."""
        present = [c for c in STAGE_COLUMNS if c in self.decisions.columns]
        return self.decisions.select("event_index", "ts_recv", *present)

    @property
    def rejections(self) -> pl.DataFrame:
        return self.table("risk_rejections")

    def report(self, out: Path | str | None = None) -> Path:
        """Write the run's self-contained HTML report (default: report.html in the run)."""
        from simulator.report import write_report

        return write_report(self.path, None if out is None else Path(out))


def replay(
    session: str | SessionRef,
    strategy: str | Path = "obi_rule",
    *,
    overrides: Mapping[str, object] | None = None,
    config_file: Path | str | None = None,
    latency: str | None = None,
    seed: int = 0,
    out: Path | str | None = None,
    data_dir: Path | str = "data",
) -> Run:
    """Replay `session` (venue/symbol/date or a Parquet path) through `strategy` (a shipped
    name, a strategy TOML or a strategy folder) and return the Run.

    `overrides` are settings as `{"section.key": value}` (or nested dicts), checked like
    `--set`; `latency` is what `--latency` takes; `out` defaults to reports/<run-id>/."""
    ref = session if isinstance(session, SessionRef) else resolve_session(session, Path(data_dir))
    config = strategy_config(strategy, overrides=overrides, config_file=config_file)
    if latency is not None:
        config = apply_values(config, {"latency.model": latency}, where="latency")
    out_dir = (
        Path(out)
        if out is not None
        else runtime.unique_dir(Path("reports"), runtime.run_id(config, ref, seed))
    )
    result = runtime.replay(ref, config, out_dir=out_dir, seed=seed)
    return Run(path=out_dir, manifest=result.manifest)


def strategy_config(
    strategy: str | Path,
    *,
    overrides: Mapping[str, object] | None = None,
    config_file: Path | str | None = None,
) -> Settings:
    """A strategy's whole configuration, typed and validated, as `replay` uses it
    (`.as_dict()` for its plain TOML-shaped view)."""
    config = apply_overrides(
        load_strategy(str(strategy)), file=None if config_file is None else Path(config_file)
    )
    return config if not overrides else apply_values(config, overrides, where="overrides")


def load_run(path: Path | str) -> Run:
    """A run directory written earlier (by `replay`, the CLI, `stress` or `live`)."""
    directory = Path(path)
    manifest_path = directory / "manifest.json"
    if not manifest_path.is_file():
        raise DataError(f"{directory}: not a run directory (no manifest.json)")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{manifest_path}: not valid JSON ({e})") from e
    return Run(path=directory, manifest=manifest)

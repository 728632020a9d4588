"""`ticktape train`: fit a strategy's model on a recorded session, deterministically.

Samples are the mid updates (quote/book events) where the strategy's features are ready; the
label is the sign of the mid move over the next `horizon` mid updates (moves of exactly zero
and the last `horizon` updates carry no label and are left out, counted). A stateful model
(gru) sees the stream as it will in replay, every mid update in order: there an unchanged mid
counts as "not up" instead of being left out. Features come from
the vectorised twin of the feature buffer, so training sees exactly what replay computes.
The split is chronological (the validation part is the end of the session).
"""

from __future__ import annotations

import json
import platform
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import numpy.typing as npt

from simulator.errors import ConfigError, DataError
from simulator.features import features_frame, session_events, warmup
from simulator.features.user import MixedFeatures
from simulator.models import export_gru, export_mlp, train_gru, train_mlp
from simulator.models.train import SplitMetrics, torch_cpu_capability
from simulator.runtime import build_features, session_sources
from simulator.session import SessionRef
from simulator.settings import Settings


@dataclass(frozen=True, slots=True)
class TrainReport:
    strategy: str
    session: str
    n_events: int
    n_samples: int
    n_unlabelled: int
    features: tuple[str, ...]
    horizon: int
    seed: int
    train: SplitMetrics
    val: SplitMetrics
    files: tuple[str, ...]
    versions: dict[str, str]


def make_labels(mid: npt.NDArray[np.float64], horizon: int) -> npt.NDArray[np.int8]:
    """+1 up / 0 down over the next `horizon` mids; -1 where unknown or unchanged."""
    labels = np.full(len(mid), -1, dtype=np.int8)
    if len(mid) > horizon:
        move = mid[horizon:] - mid[:-horizon]
        labels[:-horizon] = np.where(move > 0, 1, np.where(move < 0, 0, -1))
    return labels


def training_set(
    session: SessionRef, config: Settings, horizon: int, *, ties_down: bool = False
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], int, int, tuple[str, ...]]:
    """(X, y, events, unlabelled, feature names) over the mid updates with ready features."""
    sources, levels = session_sources(session, config)
    features = build_features(config, levels)
    feature_config = features.config
    kinds = tuple(s.kind for s in sources)
    events = session_events(session, kinds=kinds, levels=levels)
    # The models take float32: the same cast the runners make before every prediction.
    if isinstance(features, MixedFeatures):  # the user's features: their twins, or incremental
        x = np.asarray(features.frame(events), dtype=np.float32)
    else:
        x = features_frame(events, feature_config).astype(np.float32)
    kind = events["kind"].to_numpy()
    is_mid = kind != 1
    mid = ((events["bid_px"] + events["ask_px"]) / 2).to_numpy()[is_mid]
    labels = make_labels(mid, horizon)
    if ties_down:
        unchanged = np.zeros(len(mid), dtype=bool)
        unchanged[: max(len(mid) - horizon, 0)] = True
        labels[(labels < 0) & unchanged] = 0
    mid_updates_needed, trades_needed = warmup(feature_config)
    ready = (np.cumsum(is_mid) >= mid_updates_needed) & (np.cumsum(kind == 1) >= trades_needed)
    ready_mid = ready[is_mid] & np.isfinite(x[is_mid]).all(axis=1)
    keep = ready_mid & (labels >= 0)
    return (
        x[is_mid][keep],
        labels[keep].astype(np.float32),
        events.height,
        int(np.count_nonzero(ready_mid & (labels < 0))),
        features.names,
    )


def train_strategy(
    session: SessionRef,
    config: Settings,
    *,
    out_dir: Path,
    progress: Callable[[str], None] = lambda _: None,
) -> TrainReport:
    """Train, export `<model>.onnx` and `<model>.pt` into `out_dir` (created) and write
    `<strategy>.train.json` there (metrics, the library versions that made the bytes)."""
    if config.model.kind not in ("onnx", "torch", "gru"):
        raise ConfigError(f"strategy '{config.strategy.name}' has no model to train")
    progress("computing features")
    ties_down = config.model.kind == "gru"
    x, y, n_events, unlabelled, names = training_set(
        session, config, config.train.horizon, ties_down=ties_down
    )
    if len(y) < 100:
        raise DataError(f"session {session.name}: only {len(y)} labelled samples; need >= 100")
    progress(f"training on {len(y):,} samples")
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / Path(config.model.path).with_suffix("").name
    fitted = _fit_and_export(x, y, config, stem)
    return _report(config, session, n_events, len(y), unlabelled, names, fitted, out_dir)


def _fit_and_export(
    x: npt.NDArray[np.float32], y: npt.NDArray[np.float32], typed: Settings, stem: Path
) -> tuple[tuple[str, ...], SplitMetrics, SplitMetrics]:
    section = typed.train
    n = x.shape[1]
    onnx_path, ts_path = stem.with_suffix(".onnx"), stem.with_suffix(".pt")
    files = (onnx_path.name, ts_path.name)
    if typed.model.kind == "gru":
        hidden = typed.model.hidden_size
        gru = train_gru(x, y, hidden_size=hidden, seq_len=section.seq_len,
                        epochs=section.epochs, lr=section.lr, seed=section.seed)  # fmt: skip
        export_gru(gru.model, n, ts_path, onnx_path)
        return files, gru.train, gru.val
    mlp = train_mlp(x, y, hidden=section.hidden, epochs=section.epochs, lr=section.lr,
                    seed=section.seed)  # fmt: skip
    export_mlp(mlp.model, n, onnx_path, ts_path)
    return files, mlp.train, mlp.val


def _report(
    typed: Settings,
    session: SessionRef,
    n_events: int,
    n_samples: int,
    unlabelled: int,
    names: tuple[str, ...],
    fitted: tuple[tuple[str, ...], SplitMetrics, SplitMetrics],
    out_dir: Path,
) -> TrainReport:
    files, train, val = fitted
    report = TrainReport(
        strategy=typed.strategy.name,
        session=session.name,
        n_events=n_events,
        n_samples=n_samples,
        n_unlabelled=unlabelled,
        features=names,
        horizon=typed.train.horizon,
        seed=typed.train.seed,
        train=train,
        val=val,
        files=files,
        versions=training_versions(),
    )
    path = out_dir / f"{typed.strategy.name}.train.json"
    path.write_text(json.dumps(asdict(report), indent=2, sort_keys=True) + "\n")
    return report


def training_versions() -> dict[str, str]:
    """What the model bytes depend on besides data, config and seed: the same values give
    the same bytes (float results of torch's CPU kernels and the exporters' output can
    change between versions and CPU instruction sets)."""
    found = {"python": platform.python_version(), "machine": platform.machine()}
    for name in ("torch", "numpy", "onnx", "onnxruntime"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    found["torch_cpu_capability"] = torch_cpu_capability()
    return found

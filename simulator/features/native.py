"""The compiled twin of the feature path, and the choice between the two.

`_native` is a C extension that setup.py builds when it can (a C compiler and the Python
headers); it does the arithmetic of `history.on_quote`, `FeatureBuffer`'s light mode,
`_book`, `_trade` and `compute` in the same order, so both give the same bits (tests prove it
on real and generated streams). When it is missing, the Python path runs: same results, slower.

`TICKTAPE_FEATURES=python` forces the Python path (to compare speeds); `=native` makes a
missing build an error instead of a silent fallback.
"""

from __future__ import annotations

import os
from typing import Final

import numpy as np
import numpy.typing as npt

from simulator.errors import ConfigError, InvariantViolation
from simulator.features.config import (
    MID_FEATURES,
    SOURCE_FLOW,
    SOURCE_SINCE,
    FeatureConfig,
    Smoothing,
    vector_sources,
)

try:
    from simulator.features import _native
    from simulator.features._native import FeatureState
except ImportError:  # not built: the Python path runs
    FeatureState = None  # type: ignore[assignment,misc]
else:
    built = (_native.N_MID, _native.SOURCE_FLOW, _native.SOURCE_SINCE)
    if built != (len(MID_FEATURES), SOURCE_FLOW, SOURCE_SINCE):
        raise InvariantViolation(
            f"the compiled feature kernel's layout {built} differs from config.py's: "
            "rebuild it with `pip install -e .`"
        )

KERNELS: Final = ("native", "python")
ENVIRONMENT: Final = "TICKTAPE_FEATURES"


def available() -> bool:
    """True when the compiled kernel was built and imports."""
    return FeatureState is not None


def choose(kernel: str | None) -> str:
    """The kernel to run: `kernel` if given, else $TICKTAPE_FEATURES, else native when built."""
    wanted = kernel if kernel is not None else os.environ.get(ENVIRONMENT) or None
    if wanted is None:
        return "native" if available() else "python"
    if wanted not in KERNELS:
        raise ConfigError(f"feature kernel {wanted!r} is unknown; expected one of {KERNELS}")
    if wanted == "native" and not available():
        raise ConfigError(
            "the native feature kernel is not built (it needs a C compiler and the Python "
            "headers at install time: reinstall with `pip install -e .`), or set "
            f"{ENVIRONMENT}=python"
        )
    return wanted


def build(config: FeatureConfig, vector: npt.NDArray[np.float64], *, light: bool) -> FeatureState:
    """A compiled feature state writing `vector` (requires `available()`); `light` for a
    selection of only LIGHT_FEATURES (no history kept, as FeatureBuffer's light mode)."""
    if FeatureState is None:
        raise ConfigError("the native feature kernel is not built")
    a = Smoothing.of(config)
    return FeatureState(
        vector,
        vector_sources(config),
        config.horizons,
        config.bollinger_window,
        2.0 * config.bollinger_k,
        a.vol,
        a.rsi,
        a.norm,
        a.fast,
        a.slow,
        a.signal,
        a.flow,
        light,
    )


__all__ = ["KERNELS", "available", "build", "choose"]

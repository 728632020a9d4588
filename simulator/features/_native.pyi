# Types of the compiled feature kernel (_native.c); see native.py.
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

N_MID: int
SOURCE_FLOW: int
SOURCE_SINCE: int

class FeatureState:
    ts_recv: int
    n_mid_updates: int
    n_trades: int
    def __init__(
        self,
        vector: npt.NDArray[np.float64],
        source: Sequence[int],
        horizons: Sequence[int],
        window: int,
        bollinger_k2: float,
        vol: float,
        rsi: float,
        norm: float,
        fast: float,
        slow: float,
        signal: float,
        flow: float,
        light: bool = False,
    ) -> None: ...
    def on_quote(
        self, ts_recv: int, bid_px: float, bid_sz: float, ask_px: float, ask_sz: float
    ) -> None: ...
    def on_book(self, ts_recv: int, levels: tuple[object, ...], row: int) -> None: ...
    def on_trade(self, ts_recv: int, px: float, sz: float, side: int) -> None: ...
    def compute(self) -> npt.NDArray[np.float64]: ...
    def reset(self) -> None: ...

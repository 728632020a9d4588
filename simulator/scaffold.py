"""`ticktape new strategy NAME`: a runnable strategy folder to start from.

The folder holds strategy.toml (only what differs from the defaults), features.py (a feature in
plain Python with its vectorised twin), policy.py (a policy returning order intents), model.onnx
(a logistic model over the three features, trained on the bundled GOOG day; retrain it with
`ticktape train`) and a README. It replays as written, from any directory.
"""

from __future__ import annotations

import re
from pathlib import Path

from simulator.errors import ConfigError
from simulator.models.tiny import write_logistic

# `ticktape train nasdaq/GOOG/2012-06-21` on this template (train.hidden = [], seed 7, AUC 0.615
# on the held-out fifth), its normalisation folded into the weights.
WEIGHTS = (0.5254588, -0.5990903, 0.00225673)
BIAS = -0.13580221
NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")

STRATEGY_TOML = """\
# {name}: written by `ticktape new strategy {name}`. Replay it with
#   ticktape replay nasdaq/GOOG/2012-06-21 --strategy {toml}
# Only what differs from the defaults is here (`ticktape strategies --defaults` lists them all).

[strategy]
description = "{name}: imbalances + spread_bps (features.py) -> logistic (ONNX) -> policy.py"
kinds = ["book", "trades"]

[features]
names = ["l1_imbalance", "book_imbalance", "spread_bps"]   # built-ins and yours, in this order
plugins = ["features.py:SpreadBps"]

[model]
kind = "onnx"
path = "model.onnx"            # features [1, 3] -> p_up [1, 1]

[policy]
class = "policy.py:EdgePolicy"
edge = 0.06                    # trade when P(up) is this far from 0.5
notional = 1000.0              # quote currency per buy, in the instrument's lots: 1 GOOG share

[train]                        # ticktape train nasdaq/GOOG/2012-06-21 --strategy {toml}
hidden = []                    # no hidden layer: a logistic model (written to a new folder)
epochs = 3
lr = 0.01
"""

FEATURES_PY = '''\
"""{name}'s own feature: the quoted spread in basis points of the mid."""

from __future__ import annotations

import numpy as np
import polars as pl


class SpreadBps:
    """Listed in features.names as "spread_bps"; O(1) per quote, no allocation."""

    names = ("spread_bps",)  # the slots it writes, in order
    warmup = 1  # mid updates (quote or book events) before its value is defined

    def __init__(self) -> None:
        self.value = float("nan")

    def on_quote(self, ts_recv: int, bid_px: float, bid_sz: float, ask_px: float,
                 ask_sz: float) -> None:
        self.value = (ask_px - bid_px) / (ask_px + bid_px) * 2e4

    def write(self, out: np.ndarray, at: int) -> None:
        out[at] = self.value

    def reset(self) -> None:
        self.value = float("nan")

    def batch(self, events: pl.DataFrame) -> np.ndarray:
        """The vectorised twin (`ticktape train` uses it): row i = the value after event i."""
        bid, ask = events["bid_px"].to_numpy(), events["ask_px"].to_numpy()
        value = pl.Series((ask - bid) / (ask + bid) * 2e4)  # NaN on trades: carry the last quote
        carried = value.fill_nan(None).forward_fill().fill_null(float("nan"))
        return carried.to_numpy().reshape(-1, 1)
'''

POLICY_PY = '''\
"""{name}'s decision policy: model outputs + a read-only view -> order intents."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from simulator.intents import NO_INTENTS, Intent, MarketOrder
from simulator.protocols import StrategyView
from simulator.types import Side


class EdgePolicy:
    """Long-only: buy `notional` (quote currency) at market when P(up) > 0.5 + edge and flat,
    sell to flat when P(up) < 0.5 - edge. The size is notional / mid rounded down to the
    instrument's lot (view.instrument: whole shares of a stock, 0.00001 BTC on Binance), so
    the same file trades GOOG and BTCUSDT. Deciding allocates nothing unless it sends."""

    def __init__(self, edge: float = 0.06, notional: float = 1000.0) -> None:
        if not 0.0 < edge < 0.5:
            raise ValueError(f"edge must be in (0, 0.5); found {{edge}}")
        if not notional > 0.0:
            raise ValueError(f"notional must be > 0; found {{notional}}")
        self.edge, self.notional = edge, notional

    def decide(self, outputs: np.ndarray, view: StrategyView) -> Sequence[Intent]:
        if view.order_in_flight:
            return NO_INTENTS
        p_up, position, mid = outputs[0], view.position, view.mid
        if p_up > 0.5 + self.edge and position <= 0 and mid > 0.0:  # NaN mid: nothing to size
            qty = view.instrument.round_qty(self.notional / mid)
            return (MarketOrder(Side.BUY, qty),) if qty > 0.0 else NO_INTENTS
        if p_up < 0.5 - self.edge and position > 0:
            return (MarketOrder(Side.SELL, position),)
        return NO_INTENTS

    def reset(self) -> None:
        """Nothing carried between sessions."""
'''

README_MD = """\
# {name}

Written by `ticktape new strategy {name}`: a strategy of your own, ready to change.

| file | what |
|---|---|
| `strategy.toml` | the pipeline: features, model, policy (only what differs from the defaults) |
| `features.py` | `SpreadBps`, a feature in plain Python, with its vectorised twin `batch` |
| `policy.py` | `EdgePolicy`: P(up) -> market orders of 1000 (quote currency) / mid in lots |
| `model.onnx` | logistic, features [1, 3] -> p_up [1, 1], trained on nasdaq/GOOG/2012-06-21 |

```
ticktape replay nasdaq/GOOG/2012-06-21 --strategy {toml}
ticktape train nasdaq/GOOG/2012-06-21 --strategy {toml}    # retrain (into a new folder)
ticktape stress nasdaq/GOOG/2012-06-21 --strategy {toml} --scenario flash_crash
```

`train` writes model.onnx into a new reports/train--... folder and prints the `--set model.path=`
that replays with it; copy it over this folder's model.onnx to keep it.

From Python: `from simulator import api; run = api.replay("nasdaq/GOOG/2012-06-21", "{toml}")`.
Check the feature's twin in your tests with `simulator.features.user.assert_twin_matches`.
The README of ticktape ("Your own pipeline") describes every plug-in and its checks.
"""


def new_strategy(name: str, directory: Path) -> Path:
    """Write `directory/name/` and return it; refuses a name that is not a plain word and a
    folder that exists and is not empty."""
    if not NAME.match(name):
        raise ConfigError(
            f"strategy name '{name}': use letters, digits, '_' or '-', starting with a letter"
        )
    folder = directory / name
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ConfigError(f"{folder} already exists and is not empty; pick another name or --dir")
    folder.mkdir(parents=True, exist_ok=True)
    toml = folder / "strategy.toml"
    shown = str(toml)
    values = {"name": name, "toml": shown}
    toml.write_text(STRATEGY_TOML.format(**values))
    (folder / "features.py").write_text(FEATURES_PY.format(**values))
    (folder / "policy.py").write_text(POLICY_PY.format(**values))
    (folder / "README.md").write_text(README_MD.format(**values))
    write_logistic(folder / "model.onnx", WEIGHTS, BIAS, ("p_up",))
    return folder

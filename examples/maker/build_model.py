"""Writes model.onnx: a logistic model over the three features with two outputs, p_up and
p_down (= 1 - p_up). The weights come from `ticktape train nasdaq/GOOG/2012-06-21` on these
features (train.hidden = [], seed 7; validation AUC 0.616), normalisation folded in.

    python examples/maker/build_model.py      # same bytes every time
"""

from __future__ import annotations

import sys
from pathlib import Path

from simulator.models.tiny import write_logistic

WEIGHTS = (0.508432149887085, -0.5902864933013916, 0.0007286393083631992)
BIAS = -0.12435927987098694

if __name__ == "__main__":
    path = write_logistic(Path(__file__).with_name("model.onnx"), WEIGHTS, BIAS, ("p_up", "p_down"))
    sys.stdout.write(f"wrote {path}\n")

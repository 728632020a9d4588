"""A live run whose pipeline fails: the error reaches the caller, no thread of the run outlives
it, and what was recorded up to the failure stays on disk for `data recover`."""

from __future__ import annotations

import json
import threading

import pytest

from simulator.errors import InvariantViolation
from simulator.feedsim.server import serving
from simulator.live.parts import consolidate
from simulator.runtime import replay
from simulator.session import resolve_session
from tests.live.test_parity import _config, _live, _SlowModel

_FAIL_AFTER = 100  # of ~145 model calls over the tape
_RUN_THREADS = ("ticktape-recorder", "ticktape-raw", "parts-")


class _FailingModel(_SlowModel):
    """The primary model, failing at its 100th call with an error the breaker does not
    absorb (it falls back on model exceptions; an invariant violation stops the run)."""

    calls = 0

    def predict(self, features, event_index: int):
        type(self).calls += 1
        if type(self).calls == _FAIL_AFTER:
            raise InvariantViolation("model exploded")
        return self._inner.predict(features, event_index)


def _run_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(_RUN_THREADS)]


def test_a_failing_pipeline_stops_every_thread_and_keeps_the_recording(tmp_path, tape):
    assert _run_threads() == []
    config = _config()
    _FailingModel.calls = 0
    with serving(tape, speed=None) as server, pytest.raises(InvariantViolation) as failed:
        _live(tmp_path, server, config, wrap_model=_FailingModel, roll_seconds=0.05)
    assert "model exploded" in str(failed.value)
    assert _FailingModel.calls == _FAIL_AFTER  # nothing ran through the pipeline after it
    assert _run_threads() == []
    (directory,) = [p.parent for p in (tmp_path / "data").rglob("meta.json")]
    meta = json.loads((directory / "meta.json").read_text())
    assert meta["closed"] is False
    assert meta["failed"] == "InvariantViolation: model exploded"
    (note,) = failed.value.__notes__
    assert str(directory) in note
    assert "ticktape data recover binance/BTCUSDT/" in note

    rows = consolidate(directory)  # what `data recover` does
    meta = json.loads((directory / "meta.json").read_text())
    assert meta["recovered"] is True
    assert rows["raw"] > 0
    assert rows["book"] > 0
    # the cut recording replays like any session, to its last checkpoint's event count
    ref = resolve_session(str(directory), tmp_path / "data")
    result = replay(ref, config, out_dir=tmp_path / "replayed")
    events = result.summary["n_events"]
    assert isinstance(events, int)
    assert 0 < events < 2_925  # the whole tape's events
    if "checkpoint" in meta:
        assert events == meta["checkpoint"]["events"]

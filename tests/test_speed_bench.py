"""The training section of ``benchmarks/speed.py``: its runs take turns step by step (so a machine
whose speed drifts slows both alike), a run that fails does not leave the other waiting, and a
real pareco/slim pair yields the rows the README table reads."""
from __future__ import annotations

import importlib.util
import math
import sys
import threading
from pathlib import Path

import pytest
import torch

_BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
_SPEC = importlib.util.spec_from_file_location("speed_bench", _BENCH / "speed.py")
speed = importlib.util.module_from_spec(_SPEC)  # type: ignore[arg-type]
sys.modules.setdefault("speed_bench", speed)  # dataclasses look their module up there
_SPEC.loader.exec_module(speed)  # type: ignore[union-attr]


def _fake_training(clock, steps: int, events: list[str]) -> None:
    """What the trainer does with its progress bars: start, then one ``advance`` per step."""
    clock.start_training(steps, 0)
    for _ in range(steps):
        events.append(clock.name)  # the step's work, done while the run has the turn
        clock.advance(1, 1, 0.0, torch.zeros(0))


def test_runs_alternate_step_by_step_and_their_steps_never_overlap():
    baton = speed._Baton(("a", "b"))
    clocks = {name: speed._StepClock(baton, name) for name in ("a", "b")}
    events: list[str] = []
    speed._run_in_turns(baton, {"a": lambda: _fake_training(clocks["a"], 5, events),
                                "b": lambda: _fake_training(clocks["b"], 3, events)})

    assert events == ["a", "b", "a", "b", "a", "b", "a", "a"]  # b's end leaves a alone
    intervals = sorted((s, e) for c in clocks.values() for s, e in zip(c.starts, c.stamps))
    assert all(end <= next_start for (_, end), (next_start, _) in zip(intervals, intervals[1:]))
    assert [len(c.step_s) for c in clocks.values()] == [5, 3]


def test_a_run_that_fails_before_training_does_not_leave_the_other_waiting():
    baton = speed._Baton(("a", "b"))
    clock = speed._StepClock(baton, "b")

    def fail():
        raise RuntimeError("setup failed")

    done = threading.Event()

    def run():
        with pytest.raises(RuntimeError, match="setup failed"):  # the first error, not b's broken barrier
            speed._run_in_turns(baton, {"a": fail, "b": lambda: _fake_training(clock, 3, [])})
        done.set()

    threading.Thread(target=run, daemon=True).start()
    assert done.wait(timeout=30), "a run is still waiting for its turn"
    assert clock.stamps == []


def test_interleaved_pareco_and_slim_rows():
    rows = speed._train_interleaved(("pareco", "slim"), 6)
    pareco, slim = rows["pareco"], rows["slim"]
    assert pareco["steps"] == slim["steps"] == 6
    # 6 steps, M = 2 and 50 width vectors give a period of 1: a re-score before every step but the first
    assert pareco["period"] == 1 and pareco["rescores"] == 5 and slim["rescores"] == 0
    assert pareco["history_size"] == 12 and pareco["searches"] == 0  # all 20 priors not yet used up
    for row in rows.values():
        assert math.isclose(row["train_s"], row["mean_step_s"] * 6)
        assert 0 <= row["sampler_s"] <= row["train_s"]

"""``benchmarks/analysis_ab.py``: the best time of each version per stage, and a timed child that
refuses to report a pareco_fx other than the one it was meant to time."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_SPEC = importlib.util.spec_from_file_location(
    "analysis_ab", Path(__file__).resolve().parent.parent / "benchmarks" / "analysis_ab.py")
ab = importlib.util.module_from_spec(_SPEC)  # type: ignore[arg-type]
sys.modules.setdefault("analysis_ab", ab)
_SPEC.loader.exec_module(ab)  # type: ignore[union-attr]


def _run(scale: float) -> dict[str, dict[str, float]]:
    return {"m": {stage: scale * (i + 1) for i, stage in enumerate(ab.STAGES)}}


def test_each_version_keeps_its_best_time_per_stage_and_the_ratio_is_here_over_base():
    rows = ab.best_of([_run(2.0), _run(1.0), _run(3.0)], [_run(0.5), _run(4.0)], ["m"])
    assert rows["m"]["base_s"] == _run(1.0)["m"] and rows["m"]["here_s"] == _run(0.5)["m"]
    assert rows["m"]["ratio"] == {stage: 0.5 for stage in ab.STAGES}


def test_the_child_times_this_checkout_and_refuses_another_source(tmp_path: Path):
    times = ab._child(["resnet18"], 1, None)
    assert set(times) == {"resnet18"} and set(times["resnet18"]) == set(ab.STAGES)
    assert 0 < times["resnet18"]["groups_s"] < times["resnet18"]["ours_s"]
    with pytest.raises(RuntimeError, match="came from"):  # nothing installed there: this checkout's is timed
        ab._child(["resnet18"], 1, tmp_path)

"""``benchmarks/off_front.py`` on a tiny kept ``quality.py`` cell: every probe stays within its
budget or band, the shrunk vectors lie on the segment from the smallest network and fit their
budget as tightly as the bisection allows, and the report names what it measured."""
from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
import torch

_BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture(scope="module")
def kept_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(_BENCH))
        quality = importlib.import_module("quality")
        root = tmp_path_factory.mktemp("off_front")
        quality.main(["--model", "fashion_resnet", "--cost", "memory", "--method", "pareco", "--seed", "0",
                      "--epochs", "1", "--train-size", "512", "--val-size", "128", "--test-size", "128",
                      "--data", "embedded", "--width-vectors", "6", "--eval-points", "3",
                      "--out", str(root / "q.json"), "--keep-runs", str(root / "runs")])
    return root / "runs" / "fashion_resnet-memory-pareco-seed0"


def test_the_probes_respect_their_budgets_and_band(kept_run: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(_BENCH))
    off_front = importlib.import_module("off_front")
    out = tmp_path / "probe.json"
    off_front.main([str(kept_run), "--budgets", "0.5,0.3", "--band", "0.2,0.4", "--samples", "20",
                    "--data", "embedded", "--out", str(out)])
    report = json.loads(out.read_text())
    smallest = report["smallest"]["cost_ratio"]
    assert len(report["groups"]) == 12 and all(r["cost_ratio"] > smallest for r in report["groups"])
    front = json.loads((kept_run / "front.json").read_text())["points"]
    assert len(report["shrink"]) == sum(p["cost_ratio"] > b for b in (0.5, 0.3) for p in front) > 0
    for r in report["shrink"]:
        assert r["cost_ratio"] <= r["budget"] < r["from_cost_ratio"]
        assert 0.0 <= r["val_acc"] <= 1.0
    best = report["band"]["best"]
    assert 0 < len(best) <= off_front.KEEP
    assert all(0.2 <= r["cost_ratio"] <= 0.4 for r in best)
    assert [r["train_loss"] for r in best] == sorted(r["train_loss"] for r in best)


def test_shrinking_stops_on_the_budget_along_the_segment(kept_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(_BENCH))
    off_front = importlib.import_module("off_front")
    probe = off_front.Probe(kept_run, 1.0, "embedded")
    small, full = probe.space.smallest(), probe.space.full()
    for budget in (0.3, 0.6, 0.9):
        shrunk = off_front.shrink_to(probe, full, budget)
        t = float((shrunk - small).max() / (full - small).max())
        assert torch.allclose(shrunk, small + t * (full - small))
        assert float(probe.ratio(shrunk[None])[0]) <= budget
        assert float(probe.ratio((small + (t + 1e-3) * (full - small))[None])[0]) > budget


def test_a_run_of_another_width_multiplier_is_refused(kept_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(_BENCH))
    off_front = importlib.import_module("off_front")
    with pytest.raises(SystemExit, match="--width-mult"):
        off_front.Probe(kept_run, 2.0, "embedded")

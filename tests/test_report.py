"""Reports: channel-report JSON and tables, cost shares, fronts, budgets, plots and atomic writes."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from pareco_fx.errors import CheckpointError
from pareco_fx.ir import ChannelGroup
from pareco_fx.optim.front import FrontPoint
from pareco_fx.report import (
    ChannelReport,
    RunFront,
    atomic_write,
    best_under,
    budget_json,
    cost_summary,
    front_table,
    load_front,
    plot_front,
    plot_widths,
    shorten_members,
    summarize,
)

GROUPS = (
    ChannelGroup(0, 8, True, None, ("conv1", "bn1")),
    ChannelGroup(1, 16, True, None, ("conv2", "bn2", "layer1.conv", "layer1.bn", "add")),
    ChannelGroup(2, 10, False, "model output (node fc)", ("fc",)),
    ChannelGroup(3, 32, True, None, ("gconv",), quantum=4),
)


def test_summarize_counts_groups_and_channels() -> None:
    assert summarize(GROUPS, 0.875) == {"groups": 4, "slimmable_groups": 3, "frozen_groups": 1,
                                        "channels": 66, "slimmable_share": 0.875}


def test_to_json_has_exactly_the_documented_keys() -> None:
    report = ChannelReport("tiny", GROUPS, summarize(GROUPS, 0.875))
    out = report.to_json()
    assert out == {
        "model": "tiny",
        "groups": [
            {"id": 0, "channels": 8, "slimmable": True, "reason": None, "members": ["conv1", "bn1"]},
            {"id": 1, "channels": 16, "slimmable": True, "reason": None,
             "members": ["conv2", "bn2", "layer1.conv", "layer1.bn", "add"]},
            {"id": 2, "channels": 10, "slimmable": False, "reason": "model output (node fc)", "members": ["fc"]},
            {"id": 3, "channels": 32, "slimmable": True, "reason": None, "members": ["gconv"]},
        ],
        "summary": summarize(GROUPS, 0.875),
    }
    assert json.loads(json.dumps(out)) == out
    costs = {"flops": {"unit": "MACs", "full": 10.0, "smallest": 4.0, "group_share": [0.1, 0.2, 0.0, 0.3]}}
    assert ChannelReport("tiny", GROUPS, {}, costs).to_json()["costs"] == costs


@pytest.mark.parametrize("members, text", [
    ((), ""),
    (("a",), "a"),
    (("a", "b", "c"), "a, b, c"),
    (("a", "b", "c", "d"), "a, b, … (+2)"),
    (tuple("abcdefghij"), "a, b, … (+8)"),
])
def test_shorten_members(members: tuple[str, ...], text: str) -> None:
    assert shorten_members(members) == text


def test_table_and_summary_line() -> None:
    report = ChannelReport("tiny", GROUPS, summarize(GROUPS, 0.875))
    assert report.summary_line() == ("4 groups: 3 slimmable, 1 frozen; 66 channels; 87.5% of conv/linear output "
                                     "channels slimmable")
    text = str(report)
    rows = [[c.strip() for c in line.strip("│").split("│")] for line in text.splitlines() if line.startswith("│")]
    assert rows == [
        ["0", "8", "slimmable", "conv1, bn1"],
        ["1", "16", "slimmable", "conv2, bn2, … (+3)"],
        ["2", "10", "model output (node fc)", "fc"],
        ["3", "32 (step 4)", "slimmable", "gconv"],
    ]
    assert text.rstrip().endswith(report.summary_line())


class LinearCostSlim:
    """A stand-in with a cost linear in the active channels: cost = sum_g a_g * floor(w_g * C_g)."""

    groups = GROUPS
    min_width = 0.5

    def __init__(self, peak: bool) -> None:
        self.a = torch.tensor([1.0, 2.0, 3.0, 0.5], dtype=torch.float64)
        if peak:
            self.cost_peak = lambda name, w: ["conv1"] if w == 1.0 else ["conv2"]

    def _active(self, W: torch.Tensor) -> torch.Tensor:
        frozen = torch.tensor([not g.slimmable for g in GROUPS])
        W = torch.where(frozen, torch.ones_like(W), W)
        return torch.floor(W * torch.tensor([g.channels for g in GROUPS], dtype=torch.float64))

    def cost_batch(self, name: str, W: torch.Tensor) -> torch.Tensor:
        return self._active(W.double()) @ self.a

    def cost(self, name: str, w: float) -> float:
        return float(self.cost_batch(name, torch.full((1, len(GROUPS)), w))[0])


def test_cost_summary_shares_and_totals() -> None:
    costs = cost_summary(LinearCostSlim(peak=False), ["flops", "mine"])
    full = 8 * 1 + 16 * 2 + 10 * 3 + 32 * 0.5  # 86
    smallest = 4 * 1 + 8 * 2 + 10 * 3 + 16 * 0.5  # 58
    assert costs["flops"] == {"unit": "MACs", "full": full, "smallest": smallest,
                              "group_share": [4 / full, 16 / full, 0.0, 8 / full]}
    assert costs["mine"]["unit"] is None
    peaked = cost_summary(LinearCostSlim(peak=True), ["memory"])["memory"]
    assert peaked["peak_node"] == {"full": "conv1", "smallest": "conv2"}
    report = ChannelReport("tiny", GROUPS, summarize(GROUPS, 0.875), peaked and {"memory": peaked})
    assert report.cost_lines() == ["memory: 86 elements at full width, 58 elements at the smallest (0.67x); "
                                   "peak at node conv1 (full) / conv2 (smallest)"]


def point(ratio: float, val: float, test: float | None, widths: tuple[float, ...] = (0.5, 0.5, 1.0, 0.5)) -> FrontPoint:
    channels = tuple(int(w * g.channels) for w, g in zip(widths, GROUPS))
    return FrontPoint(widths, channels, 100.0 * ratio, ratio, 1.0 - val, val, test)


FRONT = (point(0.3, 0.70, 0.69), point(0.55, 0.80, 0.83, (0.9, 0.5, 1.0, 0.5)), point(1.0, 0.90, 0.88, (1.0,) * 4))
UNIFORM = (point(0.3, 0.65, 0.66), point(0.6, 0.78, 0.77, (0.75,) * 4), point(1.0, 0.89, 0.88, (1.0,) * 4))


def write_run(run: Path, points=FRONT, uniform=UNIFORM) -> Path:
    run.mkdir(parents=True, exist_ok=True)
    (run / "front.json").write_text(json.dumps({
        "model": "tiny", "cost": "memory", "method": "pareco", "cost_full": 100.0, "cost_min": 30.0,
        "min_width": 0.5, "divisor": 1,
        "groups": [{"id": g.id, "channels": g.channels, "slimmable": g.slimmable} for g in GROUPS],
        "points": [p.to_dict() for p in reversed(points)], "uniform": [p.to_dict() for p in uniform],
    }))
    return run


def test_load_front_reads_sorts_and_labels(tmp_path: Path) -> None:
    front = load_front(write_run(tmp_path / "runs" / "a"))
    assert front == RunFront(run=os.path.normpath(tmp_path / "runs" / "a"), model="tiny", cost="memory",
                             method="pareco", cost_full=100.0, channels=(8, 16, 10, 32),
                             slimmable=(True, True, False, True),
                             points=FRONT, uniform=UNIFORM)
    assert json.loads(json.dumps(front.to_json()))["points"][1] == FRONT[1].to_dict()


@pytest.mark.parametrize("text", ["", "{", '{"model": "m"}', '{"model": "m", "cost": "x", "method": "y", '
                                  '"cost_full": 1, "groups": [], "points": [{"widths": 1}], "uniform": []}'])
def test_load_front_rejects_corrupted_files(tmp_path: Path, text: str) -> None:
    (tmp_path / "front.json").write_text(text)
    with pytest.raises(CheckpointError, match="corrupted"):
        load_front(tmp_path)


def test_load_front_without_a_run(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_front(tmp_path / "missing")
    with pytest.raises(CheckpointError, match="has not finished"):
        load_front(tmp_path)


def test_best_under_selects_on_validation_never_test() -> None:
    a = point(0.4, 0.80, 0.60)
    b = point(0.5, 0.79, 0.95)  # better test accuracy, worse validation: not chosen
    c = point(0.45, 0.80, 0.70)  # same validation as a, dearer: a wins the tie
    assert best_under([a, b, c], 0.5) is a
    assert best_under([a, b, c], 0.39) is None
    assert best_under([b], 0.5) is b  # the budget is inclusive


def test_budget_json_and_table(tmp_path: Path) -> None:
    fronts = [load_front(write_run(tmp_path / "a")), load_front(write_run(tmp_path / "b", FRONT[1:]))]
    out = budget_json(fronts, [0.25, 0.6, 1.0])
    a, b = fronts[0].run, fronts[1].run
    assert out == [
        {"budget": 0.25, "best": {a: None, b: None}},
        {"budget": 0.6, "best": {a: FRONT[1].to_dict(), b: FRONT[1].to_dict()}},
        {"budget": 1.0, "best": {a: FRONT[2].to_dict(), b: FRONT[2].to_dict()}},
    ]
    from rich.console import Console

    console = Console(width=200, color_system=None)
    with console.capture() as cap:
        console.print(front_table(fronts[0]))
    rows = [[c.strip() for c in line.strip("│").split("│")] for line in cap.get().splitlines() if line.startswith("│")]
    # widths summary over the slimmable groups (0, 1, 3) only
    assert rows[1] == ["1", "0.550", "55", "80.00%", "83.00%", "0.2000", "0.50/0.63/0.90"]
    assert len(rows) == 3


def is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plots_are_written_atomically(tmp_path: Path) -> None:
    fronts = [load_front(write_run(tmp_path / "a")), load_front(write_run(tmp_path / "b", FRONT[1:]))]
    out = tmp_path / "plots"
    assert plot_front(fronts, out / "front.png") == out / "front.png"
    plot_widths(fronts[0], out / "widths.png")
    assert is_png(out / "front.png") and is_png(out / "widths.png")
    assert sorted(os.listdir(out)) == ["front.png", "widths.png"]  # no temporary files left
    from matplotlib.image import imread

    h, w, _ = imread(out / "widths.png").shape
    assert h > 2 * 0.6 * 120  # three budget rows (0.2, 0.5, 0.8 of the cost range pick distinct points)


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "sub.pt"
    target.write_text("old")

    def fail(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, fail)
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["sub.pt"]
    atomic_write(target, lambda tmp: tmp.write_text("new"))
    assert target.read_text() == "new" and os.listdir(tmp_path) == ["sub.pt"]

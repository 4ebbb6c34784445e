"""`pareco-fx slim | front | export` end to end on a tiny model with tiny data (1 epoch)."""
from __future__ import annotations

import importlib.util
import json
import re
import shutil
import textwrap
from pathlib import Path

import pytest
import torch

import pareco_fx
from cli_helpers import assert_one_line_error, invoke, state
from pareco_fx import modelfile
from pareco_fx.cli.export import _recal_batches
from pareco_fx.optim import TrainConfig, load_weights, recalibrate_bn
from pareco_fx.report import best_under, load_front

# Four classes, each brightening one quadrant of an 8x8 image: learnable in a few steps.
TINY_TASK = """
import torch
from torch import nn
from torch.utils.data import TensorDataset


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1, stride=2)
        self.bn2 = nn.BatchNorm2d(16)
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean((2, 3)))


def model():
    return Net()


def example_inputs():
    return (torch.randn(2, 1, 8, 8),)


def _data(n, seed):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=g)
    x = 0.5 * torch.randn(n, 1, 8, 8, generator=g)
    for k in range(4):
        r, c = divmod(k, 2)
        x[y == k, :, 4 * r:4 * r + 4, 4 * c:4 * c + 4] += 1.0
    return TensorDataset(x, y)


def datasets():
    return _data(192, 0), _data(64, 1), _data(64, 2)
"""

RUN_FILES = {"config.json", "checkpoint.pt", "history.json", "front.json", "front.csv", "front.png", "widths.png",
             "source.json"}
SLIM_ARGS = ("--epochs", "1", "--batch-size", "64", "--no-progress")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """One pareco run and one slim run of the tiny task, shared by the tests of this module."""
    root = tmp_path_factory.mktemp("cli_train")
    model = root / "tiny_task.py"
    model.write_text(textwrap.dedent(TINY_TASK))
    runs = {"model": model, "root": root}
    for method in ("pareco", "slim"):
        out = root / f"run-{method}"
        sampler = ("--width-vectors", "7", "--pareto-aware", "--rescore-every", "2") if method == "pareco" else ()
        result = invoke("slim", str(model), "--method", method, "--cost", "flops", "--out", str(out), "--json",
                        "--device", "cpu", *SLIM_ARGS, *sampler)
        assert result.exit_code == 0, result.stderr
        runs[method] = out
        runs[f"{method}-json"] = json.loads(result.stdout)
    return runs


def test_slim_writes_the_run_directory(trained) -> None:
    run = trained["pareco"]
    assert RUN_FILES <= {p.name for p in run.iterdir()}
    stored = json.loads((run / "front.json").read_text())
    out = trained["pareco-json"]
    assert out["run_dir"] == str(run)
    assert sorted(out["points"], key=lambda p: p["cost_ratio"]) == sorted(stored["points"], key=lambda p: p["cost_ratio"])
    assert out["model"] == "tiny_task" and out["method"] == "pareco" and out["cost"] == "flops"
    assert json.loads((run / "source.json").read_text()) == {
        "model": str(trained["model"].resolve()), "input_shape": None, "data": "model", "min_width": 0.42,
        "divisor": 1}
    config = TrainConfig.from_dict(json.loads((run / "config.json").read_text()))
    assert (config.method, config.cost, config.epochs, config.batch_size) == ("pareco", "flops", 1, 64)
    assert (config.num_width_vectors, config.pareto_aware, config.rescore_every) == (7, True, 2)
    assert json.loads((trained["slim"] / "config.json").read_text())["method"] == "slim"
    for png in ("front.png", "widths.png"):
        assert (run / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the front starts at the smallest network and is non-dominated: accuracy grows with cost
    points = sorted(out["points"], key=lambda p: p["cost_ratio"])
    assert points[0]["cost_ratio"] == pytest.approx(stored["cost_min"] / stored["cost_full"])
    assert all(a["val_acc"] <= b["val_acc"] for a, b in zip(points, points[1:]))


def test_slim_prints_the_front_table(trained, tmp_path: Path) -> None:
    shutil.copytree(trained["pareco"], tmp_path / "copy")
    result = invoke("slim", str(trained["model"]), "--out", str(tmp_path / "copy"), "--resume", "--no-progress")
    assert result.exit_code == 0, result.stderr
    front = load_front(tmp_path / "copy")
    rows = [line for line in result.stdout.splitlines() if line.startswith("│")]
    assert len(rows) == len(front.points)
    assert f"{front.points[0].cost_ratio:.3f}" in rows[0]
    assert re.search(r"^time: train \d+ s, re-score \d+ s, front \d+ s, test \d+ s$", result.stderr, re.M)


def test_existing_run_is_not_overwritten(trained) -> None:
    before = state(trained["pareco"])
    result = invoke("slim", str(trained["model"]), "--out", str(trained["pareco"]), *SLIM_ARGS)
    assert_one_line_error(result, "already holds a training run")
    assert state(trained["pareco"]) == before


@pytest.mark.parametrize("args, message", [
    (("--epochs", "3"), "epochs=3 (run has 1)"),
    (("--min-width", "0.5"), "min_width=0.5 (run has 0.42)"),
    (("--width-vectors", "9"), "num_width_vectors=9 (run has 7)"),
    (("--no-pareto-aware",), "pareto_aware=False (run has True)"),
    (("--rescore-every", "3"), "rescore_every=3 (run has 2)"),
])
def test_resume_with_other_options_is_refused(trained, args, message) -> None:
    before = state(trained["pareco"])
    result = invoke("slim", str(trained["model"]), "--out", str(trained["pareco"]), "--resume", "--no-progress", *args)
    assert_one_line_error(result, message)
    assert state(trained["pareco"]) == before


@pytest.mark.parametrize("name, damage, message", [
    ("checkpoint.pt", lambda data: data[: len(data) // 2], "truncated or not a pareco-fx checkpoint"),
    ("config.json", lambda data: data[:10], "config.json is missing or corrupted"),
    ("source.json", lambda data: b"[]", "source.json is corrupted"),
])
def test_resume_of_a_corrupted_run_directory(trained, tmp_path: Path, name, damage, message) -> None:
    run = tmp_path / "copy"
    shutil.copytree(trained["pareco"], run)
    (run / name).write_bytes(damage((run / name).read_bytes()))
    before = state(tmp_path)
    result = invoke("slim", str(trained["model"]), "--out", str(run), "--resume", "--no-progress")
    assert_one_line_error(result, message)
    assert state(tmp_path) == before


def test_front_reports_best_under_each_budget(trained, tmp_path: Path) -> None:
    plot = tmp_path / "compare.png"
    result = invoke("front", str(trained["pareco"]), "--compare", str(trained["slim"]), "--budgets", "0.3,0.6,1",
                    "--json", "--plot", str(plot))
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    fronts = [load_front(trained["pareco"]), load_front(trained["slim"])]
    assert [r["run"] for r in out["runs"]] == [f.run for f in fronts]
    for entry, budget in zip(out["budgets"], (0.3, 0.6, 1.0)):
        assert entry["budget"] == budget
        for f in fronts:
            best = best_under(f.points, budget)
            assert entry["best"][f.run] == (best.to_dict() if best else None)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = invoke("front", str(trained["pareco"]), "--compare", str(trained["slim"]))
    assert table.exit_code == 0 and "best sub-network under each budget" in table.stdout


def rebuild(trained, widths) -> tuple[torch.nn.Module, TrainConfig]:
    """The run's slimmable model at ``widths``, recalibrated as export does it."""
    run = trained["pareco"]
    loaded = modelfile.load(str(trained["model"]))
    slim = pareco_fx.make_slimmable(loaded.model, loaded.example_inputs)
    config = load_weights(slim, run)
    slim.set_widths(list(widths))
    recalibrate_bn(slim, _recal_batches(loaded.load_datasets()[0], config))
    return slim.eval(), config


def test_export_equals_the_slimmable_model(trained, tmp_path: Path) -> None:
    front = load_front(trained["pareco"])
    budget = front.points[len(front.points) // 2].cost_ratio
    out = tmp_path / "sub.pt"
    result = invoke("export", str(trained["pareco"]), "--budget", f"{budget}", "--out", str(out), "--onnx",
                    str(tmp_path / "sub.onnx"))
    assert result.exit_code == 0, result.stderr
    chosen = best_under(front.points, budget)
    record = json.loads((tmp_path / "sub.widths.json").read_text())
    assert record["cost_model"] == "flops"
    assert tuple(record["widths"]) == chosen.widths and tuple(record["channels"]) == chosen.channels
    assert record["cost_ratio"] == chosen.cost_ratio <= budget
    sub = torch.load(out, weights_only=False)
    assert isinstance(sub, torch.fx.GraphModule)
    slim, _ = rebuild(trained, chosen.widths)
    x = trained_inputs(trained)
    with torch.no_grad():
        torch.testing.assert_close(sub(x), slim(x), rtol=1e-4, atol=1e-5)
    assert sum(p.numel() for p in sub.parameters()) == slim.cost("params", list(chosen.widths))
    assert sum(p.numel() for p in sub.parameters()) < sum(p.numel() for p in slim.parameters())
    if not (tmp_path / "sub.onnx").exists():  # onnx not installed: skipped with a message
        assert "skipping --onnx" in result.stderr


def trained_inputs(trained) -> torch.Tensor:
    test = modelfile.load(str(trained["model"])).load_datasets()[2]
    return torch.stack([test[i][0] for i in range(16)])


def test_export_below_the_cheapest_point(trained, tmp_path: Path) -> None:
    cheapest = load_front(trained["pareco"]).points[0].cost_ratio
    result = invoke("export", str(trained["pareco"]), "--budget", "0.05", "--out", str(tmp_path / "sub.pt"))
    assert_one_line_error(result, f"the cheapest has cost ratio {cheapest:.4f}")
    assert list(tmp_path.iterdir()) == []


def test_export_of_a_corrupted_checkpoint(trained, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained["pareco"], run)
    data = (run / "checkpoint.pt").read_bytes()
    (run / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    before = state(tmp_path)
    result = invoke("export", str(run), "--budget", "1.0", "--out", str(tmp_path / "sub.pt"))
    assert_one_line_error(result, "truncated")
    assert state(tmp_path) == before


def test_search_pool_replay_of_a_run(trained) -> None:
    # benchmarks/search_pool.py refits a run's history and searches with each candidate pool (the
    # tiny task has two slimmable groups, so clamping at the box's corners can make box proposals
    # uniform too: the strict properties are tested on ResNet-20 in tests/optim/test_search.py).
    spec = importlib.util.spec_from_file_location(
        "search_pool", Path(__file__).resolve().parents[2] / "benchmarks" / "search_pool.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    report = module.replay(trained["pareco"], proposals=6, seed=0)
    assert set(report) == {"mixed", "box"}
    assert report["box"]["median_spread"] > 0
    assert all(0 <= row["uniform"] <= 6 and 0 <= row["repeats"] <= 6 for row in report.values())

"""Multi-process training: two CPU processes over ``gloo``, as ``torchrun`` launches them.

The CLI tests run ``torchrun --nproc_per_node=2 -m pareco_fx slim`` exactly as a user does; a
``sitecustomize`` module on the children's path (test-only) records, on each rank, the width
vectors rank 0 decided and a hash of the weights after every step. The Python API is tested
in a process group of two ``torch.multiprocessing`` workers.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from click.testing import CliRunner
from torch.utils.data import Dataset

OPTIM_TESTS = Path(__file__).resolve().parent / "optim"
sys.path.insert(0, str(OPTIM_TESTS))  # optim_helpers, also for the spawned workers

from optim_helpers import TINY_CONFIG, TinyNet, tiny_data, tiny_slim  # noqa: E402
from torchrun_cmd import free_port, torchrun_two  # noqa: E402

import pareco_fx  # noqa: E402
from pareco_fx.cli.main import cli  # noqa: E402
from pareco_fx.errors import UserInputError  # noqa: E402
from pareco_fx.optim import NonFiniteLossError, load_checkpoint, load_weights, recalibrate_bn, train  # noqa: E402
from pareco_fx.optim.distributed import Comm  # noqa: E402
from pareco_fx.optim.evaluate import accuracy  # noqa: E402

MODEL_FILE = """
import os
import sys
sys.path.insert(0, {helpers!r})
import torch
from optim_helpers import SlowData, TinyNet, quadrants


def model():
    return TinyNet()


def example_inputs():
    return (torch.randn(2, 1, 8, 8),)


def datasets():
    train = quadrants(192, 0)
    if os.environ.get("SLOW_DATA"):  # the same examples, slowly: time to interrupt the run
        train = SlowData(train, float(os.environ["SLOW_DATA"]))
    return train, quadrants(64, 1), quadrants(64, 2)
"""

# Loaded by every Python process whose path holds it; only torchrun's workers record.
RECORDER = """
import os

if "LOCAL_RANK" in os.environ and os.environ.get("PARECO_RECORD"):
    import hashlib, json

    from pareco_fx.optim import trainer
    from pareco_fx.optim.distributed import Comm

    _out = open(os.path.join(os.environ["PARECO_RECORD"], f"rank{os.environ['RANK']}.jsonl"), "w")
    _lead, _step = Comm.lead, trainer._Trainer.train_step

    def _record(**entry):
        _out.write(json.dumps(entry) + "\\n")
        _out.flush()

    def lead(self, decide, score_local):
        result = _lead(self, decide, score_local)
        _record(kind="lead", widths=result.tolist())
        return result

    def train_step(self, x, y):
        result = _step(self, x, y)
        weights = b"".join(p.detach().numpy().tobytes() for p in self.slim.parameters())
        _record(kind="step", step=self.step + 1, weights=hashlib.sha256(weights).hexdigest(),
                batch=hashlib.sha256(x.numpy().tobytes()).hexdigest(), size=len(y))
        return result

    Comm.lead, trainer._Trainer.train_step = lead, train_step
"""

STEPS = 12  # 2 epochs of 192 // 32 batches; the default pareco sampler searches from step 10 on
FILL = 3  # width vectors of the front fill, searched after training
RUN_FILES = {"config.json", "checkpoint.pt", "history.json", "front.json", "front.csv", "front.png", "widths.png",
             "source.json"}


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _weights_hash(tensors: list[torch.Tensor]) -> str:
    return hashlib.sha256(b"".join(t.numpy().tobytes() for t in tensors)).hexdigest()


def _torchrun_slim(root: Path, out: Path, *extra: str) -> list[str]:
    """``torchrun --nproc_per_node=2 -m pareco_fx slim`` of the tiny model, as a user runs it."""
    return torchrun_two("-m", "pareco_fx", "slim", str(root / "tiny_model.py"), "--epochs", "2", "--batch-size", "32",
                        "--front-fill", str(FILL), "--no-progress", "--out", str(out), *extra)


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", **extra}


@pytest.fixture(scope="module")
def torchrun_run(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("torchrun")
    (root / "tiny_model.py").write_text(textwrap.dedent(MODEL_FILE.format(helpers=str(OPTIM_TESTS))))
    (root / "site").mkdir()
    (root / "site" / "sitecustomize.py").write_text(textwrap.dedent(RECORDER))
    record = root / "record"
    record.mkdir()
    env = _env(PARECO_RECORD=str(record),
               PYTHONPATH=os.pathsep.join([str(root / "site"), os.environ.get("PYTHONPATH", "")]))
    out = root / "run"
    proc = subprocess.run(_torchrun_slim(root, out, "--json"), env=env, capture_output=True, text=True,
                          timeout=300, cwd=root)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return {"root": root, "run": out, "record": record, "stdout": proc.stdout}  # type: ignore[dict-item]


def test_torchrun_ranks_train_the_same_widths_and_weights(torchrun_run) -> None:
    ranks = [_read(torchrun_run["record"] / f"rank{r}.jsonl") for r in (0, 1)]
    steps = [[e for e in rank if e["kind"] == "step"] for rank in ranks]
    leads = [[e["widths"] for e in rank if e["kind"] == "lead"] for rank in ranks]
    assert [e["step"] for e in steps[0]] == [e["step"] for e in steps[1]] == list(range(1, STEPS + 1))
    # one decision per step, then the final re-score of the history and the front fill; identical on both ranks
    assert len(leads[0]) == STEPS + 1 and leads[0] == leads[1]
    # the weights agree after every step, while each rank saw its own half of the global batch
    for a, b in zip(*steps):
        assert a["weights"] == b["weights"] and a["size"] == b["size"] == 16 and a["batch"] != b["batch"]
    assert len({e["weights"] for e in steps[0]}) == STEPS  # they changed at every step
    trained = torch.tensor([row for widths in leads[0][:STEPS] for row in widths], dtype=torch.float64)
    assert (trained[:20, 0] == trained[:20, 1]).all()  # the prior: uniform multipliers
    assert (trained[21:, 0] != trained[21:, 1]).all()  # then the GP-guided search (per-group widths)
    # the run's history is what the ranks trained, with the losses re-scored across ranks, then the
    # front fill's vectors, proposed after the last step and scored across ranks too
    history = json.loads((torchrun_run["run"] / "history.json").read_text())
    widths = torch.tensor([e["widths"] for e in history["entries"]], dtype=torch.float64)
    assert len(widths) == len(trained) + FILL and torch.equal(widths[: len(trained)], trained)
    assert [e["step"] for e in history["entries"][len(trained):]] == [STEPS] * FILL
    final = torch.tensor(leads[0][STEPS], dtype=torch.float64)
    assert torch.equal(final[:, :-3], widths)
    assert [e["loss"] for e in history["entries"]] == final[:, -2].tolist()
    assert all(math.isfinite(e["loss"]) for e in history["entries"])


def test_torchrun_run_directory_is_complete_and_loadable(torchrun_run) -> None:
    run = torchrun_run["run"]
    assert {p.name for p in run.iterdir()} == RUN_FILES  # written once, by rank 0
    checkpoint = load_checkpoint(run / "checkpoint.pt")
    assert checkpoint["step"] == STEPS
    slim = pareco_fx.make_slimmable(TinyNet(), (torch.randn(2, 1, 8, 8),))
    load_weights(slim, run)
    last = [e for e in _read(torchrun_run["record"] / "rank1.jsonl") if e["kind"] == "step"][-1]
    assert _weights_hash([p.detach() for p in slim.parameters()]) == last["weights"]
    printed = json.loads(torchrun_run["stdout"])  # only rank 0 printed
    shown = CliRunner().invoke(cli, ["front", str(run), "--json"], catch_exceptions=False)
    assert shown.exit_code == 0
    stored = json.loads((run / "front.json").read_text())
    assert json.loads(shown.stdout)["runs"][0]["points"] == printed["points"]
    assert [p["widths"] for p in printed["points"]] == [p["widths"] for p in stored["points"]]


@pytest.mark.slow
def test_torchrun_interrupt_then_resume_matches_uninterrupted_run(torchrun_run) -> None:
    root, out = torchrun_run["root"], torchrun_run["root"] / "interrupted"
    checkpoint = out / "checkpoint.pt"
    agent = subprocess.Popen(_torchrun_slim(root, out), env=_env(SLOW_DATA="0.03"), cwd=root,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not checkpoint.exists() and agent.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        agent.send_signal(signal.SIGINT)  # torchrun forwards it to both workers
        _, stderr = agent.communicate(timeout=120)
    finally:
        agent.kill()
    step = load_checkpoint(checkpoint)["step"]
    assert 6 < step < STEPS, stderr[-3000:]  # past the epoch-end checkpoint: written at the step boundary
    assert "interrupted: the last checkpoint is in" in stderr and not (out / "front.json").exists(), stderr
    resumed = subprocess.run(_torchrun_slim(root, out, "--resume"), env=_env(), cwd=root, capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    reference = torchrun_run["run"]
    for name in ("history.json", "front.json", "front.csv"):
        assert (out / name).read_text() == (reference / name).read_text(), name
    ours, theirs = load_checkpoint(checkpoint), load_checkpoint(reference / "checkpoint.pt")
    assert ours["model"].keys() == theirs["model"].keys()
    for key, tensor in theirs["model"].items():
        assert torch.equal(ours["model"][key], tensor), key


class _PoisonedOnRank(Dataset):
    """NaN inputs from the third training step on (16 examples per step), on one rank only."""

    def __init__(self, base: Dataset, poison: bool) -> None:
        self.base, self.poison, self.calls = base, poison, 0

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int):
        x, y = self.base[index]
        self.calls += 1
        return (torch.full_like(x, float("nan")) if self.poison and self.calls > 32 else x), y


def _sharded_evaluation(rank: int) -> dict[str, float]:
    """BN recalibration and accuracy on this rank's half of the data against one process on all
    of it. The first BN's averaged running mean is the one-process mean (deeper ones see inputs
    normalised by shard statistics), and the reduced accuracy is the one-process accuracy."""
    train_set, val_set, _ = tiny_data()
    x, y = train_set.tensors  # type: ignore[attr-defined]
    batches = [(x[i: i + 32], y[i: i + 32]) for i in (0, 32)]
    sharded, single = tiny_slim(), tiny_slim()
    for slim in (sharded, single):
        slim.set_widths(0.6)
    comm = Comm.current()
    recalibrate_bn(sharded, [(bx[rank::2], by[rank::2]) for bx, by in batches], comm=comm)
    recalibrate_bn(single, batches)
    first, first_single = (next(m for m in slim.modules() if isinstance(m, torch.nn.BatchNorm2d))
                           for slim in (sharded, single))
    mean_error = float((first.running_mean - first_single.running_mean).abs().max())
    vx, vy = val_set.tensors  # type: ignore[attr-defined]
    single.load_state_dict(sharded.state_dict())
    return {"mean_error": mean_error, "acc": accuracy(sharded, [(vx[rank::2], vy[rank::2])], comm),
            "acc_single": accuracy(single, [(vx, vy)])}


def _worker(rank: int, port: int, tmp: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    outcomes: dict = {}
    try:
        outcomes["evaluation"] = _sharded_evaluation(rank)
        train_set, val_set, _ = tiny_data()
        held = Path(tmp) / "held"
        try:  # rank 0 finds a run there; every rank must refuse, none may wait for the others
            train(tiny_slim(), train_set, val_set, None, TINY_CONFIG, run_dir=held, progress=False)
        except UserInputError as exc:
            outcomes["held"] = str(exc)
        try:
            train(tiny_slim(), train_set, val_set, None, TINY_CONFIG.replace(batch_size=31), progress=False)
        except UserInputError as exc:
            outcomes["batch"] = str(exc)
        try:
            train(tiny_slim(), _PoisonedOnRank(train_set, rank == 1), val_set, None, TINY_CONFIG, progress=False)
        except NonFiniteLossError as exc:
            outcomes["nan"] = str(exc)
    finally:
        dist.destroy_process_group()
    (Path(tmp) / f"rank{rank}.json").write_text(json.dumps(outcomes))


def test_sharded_evaluation_and_errors_that_stop_every_rank(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "held").mkdir()
    (tmp_path / "held" / "checkpoint.pt").write_bytes(b"a run")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    mp.spawn(_worker, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    outcomes = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert outcomes[0] == outcomes[1]
    evaluation = outcomes[0]["evaluation"]
    assert evaluation["mean_error"] < 1e-6 and evaluation["acc"] == evaluation["acc_single"]
    assert "already holds a training run" in outcomes[0]["held"]
    assert "batch size 31 (the global batch) does not divide among 2 processes" in outcomes[0]["batch"]
    assert "non-finite loss (nan) at step 2 (epoch 1, batch 3) with widths [1.000, 1.000" in outcomes[0]["nan"]
    assert (tmp_path / "held" / "checkpoint.pt").read_bytes() == b"a run"

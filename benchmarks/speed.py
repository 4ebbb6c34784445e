"""Speed and scale of pareco-fx next to the tools people use today, side by side, as ratios.

Sections (``--only`` picks some; all run by default), every ratio is ours / theirs (lower is better):

* ``analysis``: ``make_slimmable`` (trace + channel groups + slimmable rewrite, each stage also
  timed alone) plus compiling the flops and memory cost programs, against Torch-Pruning's
  ``tp.DependencyGraph().build_dependency(model, example_inputs)``; 224x224, batch 1.
* ``cost``: ``slim.cost_batch("flops", W)`` on B random width vectors, per vector, against what a
  user does without it per configuration: extract the sub-network and count it with
  ``thop.profile`` or ``torch.utils.flop_counter.FlopCounterMode``.
* ``forward``: the slimmable model at full width, and sub-networks extracted at uniform widths
  giving 75/50/25 % of the FLOPs, against the original model (CPU, eval, no_grad, batch 1 and 32).
* ``train``: training-step time of the ``pareco`` sampler (re-scoring, GP fit and lambda search included)
  against ``slim`` on examples/fashion_resnet.py with the embedded Fashion-MNIST subset; the two runs take
  turns step by step.
* ``rss``: peak resident memory of a short ``pareco-fx slim`` run (a child process).

Timings: ``time.perf_counter``, 2 torch threads, warm-ups, medians; contenders take turns in every
round so that a changing load on a shared machine hits them alike.

usage (from the checkout)::

    .venv/bin/python benchmarks/speed.py                # everything, ~20 min on 2 idle cores
    .venv/bin/python benchmarks/speed.py --quick        # small settings, a few minutes
    .venv/bin/python benchmarks/speed.py --only forward --models resnet50
    .venv/bin/python benchmarks/speed.py --show         # print the stored results

Results merge into ``benchmarks/results/speed.json``: rows keyed by section and model, each naming
the run (machine, versions, load, settings) that produced it.
"""
from __future__ import annotations

import argparse
import functools
import importlib
import json
import math
import statistics
import subprocess
import sys
import signal
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any
from unittest import mock

import torch
import torchvision
from rich.console import Console
from rich.table import Table
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import LOADED, interleaved, load_average, machine_info, timed  # noqa: E402

import pareco_fx  # noqa: E402
from pareco_fx import modelfile, pipeline  # noqa: E402
from pareco_fx.data import load_fashion_mnist  # noqa: E402
from pareco_fx.optim import ParecoSampler, SlimSampler, TrainConfig, train  # noqa: E402
from pareco_fx.optim.progress import TrainProgress  # noqa: E402
from pareco_fx.passes import channel_groups, slimmify  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "speed.json"
EXAMPLE = ROOT / "examples" / "fashion_resnet.py"
SECTIONS = ("analysis", "cost", "forward", "train", "rss")
FLOPS_SHARES = (0.75, 0.5, 0.25)
THREADS = 2
TRAIN_TARGET, FORWARD_TARGET = 1.15, 1.10
SAMPLERS = {"pareco": ParecoSampler, "slim": SlimSampler}  # the train section's contenders


@dataclass(frozen=True)
class Settings:
    """How much of each section a run measures.

    Attributes:
        models: torchvision models of the analysis and cost sections.
        forward_models: torchvision models of the forward section.
        analysis_repeats: timed rounds of the analysis (median reported).
        cost_batch: B, width vectors per ``cost_batch`` call.
        cost_configs: configurations extracted and counted by the peers (per-config time).
        cost_repeats: timed ``cost_batch`` calls.
        forward_batches: batch sizes of the forward section.
        forward_repeats: timed rounds per batch size (same order as ``forward_batches``).
        train_steps: training steps per method (rounded up to whole epochs of equal length).
        rss_epochs: epochs of the ``pareco-fx slim`` run whose memory is measured.
        rss_stop_after: seconds after which that run is interrupted (Ctrl-C); None: it completes.
    """

    models: tuple[str, ...] = ("resnet50", "mobilenet_v2", "densenet121", "efficientnet_b0", "vit_b_16")
    forward_models: tuple[str, ...] = ("resnet50", "mobilenet_v2", "densenet121", "efficientnet_b0", "vit_b_16")
    analysis_repeats: int = 3
    cost_batch: int = 4096
    cost_configs: int = 3
    cost_repeats: int = 7
    forward_batches: tuple[int, ...] = (1, 32)
    forward_repeats: tuple[int, ...] = (15, 3)
    train_steps: int = 420  # the CLI's default run (see bench_train)
    rss_epochs: int = 1
    rss_stop_after: float | None = None


FULL = Settings()
QUICK = Settings(models=("mobilenet_v2",), forward_models=("mobilenet_v2",), analysis_repeats=1, cost_configs=1,
                 cost_repeats=3, forward_repeats=(5, 2), train_steps=8,
                 rss_stop_after=120.0)


# --- helpers ----------------------------------------------------------------------------------
def _median_dict(rows: Sequence[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(row[key] for row in rows) for key in rows[0]}


def _ratio(ours: float, theirs: float) -> float:
    return ours / theirs if theirs > 0 else math.inf


def _torchvision(name: str) -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.get_model(name, weights=None).eval()


def _image(batch: int = 1) -> torch.Tensor:
    return torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(batch))


@dataclass
class _Clock:
    seconds: float = 0.0
    calls: int = 0


@contextmanager
def _clocked(*targets: tuple[str, object, str]) -> Iterator[dict[str, _Clock]]:
    """Seconds spent inside functions and their calls, per name, read by wrapping ``owner.attr``
    for each ``(name, owner, attr)`` while the context is open (the code under test runs unchanged)."""
    clocks = {name: _Clock() for name, _, _ in targets}

    def wrap(clock: _Clock, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                clock.seconds += time.perf_counter() - t0
                clock.calls += 1
        return wrapper

    with ExitStack() as stack:
        for name, owner, attr in targets:
            stack.enter_context(mock.patch.object(owner, attr, wrap(clocks[name], getattr(owner, attr))))
        yield clocks


def _uniform_width_for(slim: Any, share: float, iterations: int = 40) -> float:
    """The largest uniform width whose FLOPs are at most ``share`` of the full model's (bisection:
    FLOPs grow with the width); the smallest width tried when even that costs more."""
    full = slim.cost("flops", 1.0)
    lo, hi = 1e-4, 1.0
    if slim.cost("flops", lo) / full > share:
        return lo
    for _ in range(iterations):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if slim.cost("flops", mid) / full <= share else (lo, mid)
    return lo


def _fcm_macs(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> float:
    """FlopCounterMode's multiply-accumulates of one forward (grad enabled, as DESIGN.md counts)."""
    with torch.enable_grad(), FlopCounterMode(display=False) as counter:
        module(*inputs)
    return counter.get_total_flops() / 2


def _thop_macs(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> float:
    import thop

    macs, _ = thop.profile(module, inputs=inputs, verbose=False)
    return float(macs)


def _build_dependency(model: nn.Module, x: torch.Tensor) -> object:
    import torch_pruning as tp

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ViT: "unwrapped parameters detected"
        return tp.DependencyGraph().build_dependency(model, example_inputs=x)


# --- sections on torchvision models -------------------------------------------------------
def _analysis_once(model: nn.Module, x: torch.Tensor) -> tuple[Any, dict[str, float]]:
    with _clocked(("trace_s", pipeline, "trace"), ("groups_s", channel_groups, "run"),
                  ("rewrite_s", slimmify, "run")) as clocks:
        total, slim = timed(lambda: pareco_fx.make_slimmable(model, (x,)))
    stages = {name: clock.seconds for name, clock in clocks.items()}
    costs, _ = timed(lambda: (slim.cost("flops"), slim.cost("memory")))  # compiles both programs
    return slim, {"make_slimmable_s": total, **stages, "cost_compile_s": costs, "ours_s": total + costs}


def warm_up_analysis() -> None:
    """One untimed run of both tools on a small model: imports and lazy registries load here."""
    model, x = _torchvision("resnet18"), _image()
    _analysis_once(model, x)
    _build_dependency(model, x)


def bench_analysis(model: nn.Module, repeats: int) -> tuple[Any, dict[str, Any]]:
    """Median analysis times of pareco-fx and Torch-Pruning, in alternating rounds."""
    x = _image()
    rounds, slim = [], None
    for _ in range(repeats):
        slim, row = _analysis_once(model, x)
        row["torch_pruning_s"], _ = timed(lambda: _build_dependency(model, x))
        rounds.append(row)
    row = _median_dict(rounds)
    row.update(repeats=repeats, groups=len(slim.groups), slimmable_groups=sum(g.slimmable for g in slim.groups),
               ratio=_ratio(row["ours_s"], row["torch_pruning_s"]),
               ratio_without_costs=_ratio(row["make_slimmable_s"], row["torch_pruning_s"]))
    return slim, row


def bench_cost(slim: Any, batch: int, configs: int, repeats: int) -> dict[str, Any]:
    """Per-configuration seconds of ``cost_batch`` against extract + thop / FlopCounterMode."""
    G, x = len(slim.groups), (_image(),)
    W = torch.rand(batch, G, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    W = W * (1 - slim.min_width) + slim.min_width
    ours = interleaved({"ours": lambda: slim.cost_batch("flops", W)}, repeats)["ours"]
    ours_macs = slim.cost_batch("flops", W[:configs]).tolist()
    _thop_macs(slim.extract(W[0]), x)  # warm-up: thop's and FlopCounterMode's first calls
    _fcm_macs(slim.extract(W[0]), x)
    extract_s, thop_s, fcm_s, fcm_gap = [], [], [], []
    for w, macs in zip(W[:configs], ours_macs):
        seconds, sub = timed(lambda: slim.extract(w))
        extract_s.append(seconds)
        seconds, _ = timed(lambda: _thop_macs(sub, x))
        thop_s.append(seconds)
        seconds, counted = timed(lambda: _fcm_macs(sub, x))  # thop.profile removed its hooks and buffers
        fcm_s.append(seconds)
        fcm_gap.append(abs(macs - counted) / counted)
    per_config = ours.median_s / batch
    extract, thop, fcm = (statistics.median(s) for s in (extract_s, thop_s, fcm_s))
    return {
        "batch": batch, "configs": configs, "ours_per_config_s": per_config, "ours_vectors_per_s": 1 / per_config,
        "extract_s": extract, "thop_s": thop, "fcm_s": fcm,
        "ratio_thop": _ratio(per_config, extract + thop), "ratio_fcm": _ratio(per_config, extract + fcm),
        "ratio_thop_count_only": _ratio(per_config, thop), "ratio_fcm_count_only": _ratio(per_config, fcm),
        "max_rel_gap_to_fcm": max(fcm_gap),
    }


def bench_forward(model: nn.Module, slim: Any, batches: Sequence[int], repeats: Sequence[int]) -> dict[str, Any]:
    """Median forward times of the slimmable model at full width and of extracted sub-networks,
    over the original model's."""
    slim.eval()
    slim.set_widths(1.0)
    full = slim.cost("flops", 1.0)
    contenders: dict[str, nn.Module] = {"original": model, "slim_full": slim}
    subs: dict[str, dict[str, float]] = {}
    for share in FLOPS_SHARES:
        key = f"sub_{round(share * 100)}"
        width = _uniform_width_for(slim, share)
        contenders[key] = slim.extract(width).eval()
        subs[key] = {"width": width, "flops_share": slim.cost("flops", width) / full}
    row: dict[str, Any] = {"subnetworks": subs, "batches": {}}
    for batch, rounds in zip(batches, repeats):
        x = _image(batch)
        with torch.no_grad():
            gap = (slim(x) - model(x)).abs().max().item()
            times = interleaved({k: (lambda m=m: m(x)) for k, m in contenders.items()}, rounds)
        base = times["original"].median_s
        row["batches"][str(batch)] = {
            "repeats": rounds, "full_width_max_abs_diff": gap,
            "ms": {k: t.median_s * 1e3 for k, t in times.items()},
            "ratio": {k: _ratio(t.median_s, base) for k, t in times.items() if k != "original"},
        }
    return row


# --- training and memory ----------------------------------------------------------------------
class _TrainingDone(Exception):
    """Raised by :class:`_StepClock` when training ends: the front evaluation after it is no step."""


class _Baton:
    """Training runs in threads take turns step by step: one computes while the others wait.

    This machine's speed drifts by up to a fifth between minutes, which alone moved the ratio of
    two runs made one after the other by more than the overhead it measures; runs that alternate
    step by step see the same machine. Every run is set up before the first step is taken.
    """

    def __init__(self, names: Sequence[str]) -> None:
        self._turn = threading.Condition()
        self._queue = list(names)  # the head has the turn
        self._ready = threading.Barrier(len(names))

    def start(self, name: str) -> None:
        """Wait until every run is ready to train, then for ``name``'s turn."""
        self._ready.wait()
        self.take(name)

    def take(self, name: str) -> None:
        with self._turn:
            self._turn.wait_for(lambda: self._queue[0] == name)

    def hand_on(self, name: str) -> None:
        """``name`` (which has the turn) passes it to the next run and queues up again."""
        with self._turn:
            assert self._queue[0] == name, f"{name} handed on a turn it did not have"
            self._queue.append(self._queue.pop(0))
            self._turn.notify_all()

    def leave(self, name: str) -> None:
        """``name`` takes no more turns (its training ended, or it failed)."""
        self._ready.abort()  # a run that failed before the first step must not hold the others
        with self._turn:
            self._queue.remove(name)
            self._turn.notify_all()


def _run_in_turns(baton: _Baton, bodies: dict[str, Callable[[], object]]) -> None:
    """Run each body in a thread of its own name on ``baton``; it leaves the baton however it ends.
    Raises the first error of any body once all have ended."""
    errors: list[BaseException] = []

    def run(name: str, body: Callable[[], object]) -> None:
        try:
            body()
        except BaseException as error:  # re-raised by the calling thread
            errors.append(error)
        finally:
            baton.leave(name)

    threads = [threading.Thread(target=run, args=item, name=f"turns-{item[0]}") for item in bodies.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


class _StepClock(TrainProgress):
    """Training progress that times every step while its run holds the baton, and stops the run
    when the next phase begins (the last step keeps the turn until then, so that nothing after
    training runs beside the other run's steps)."""

    def __init__(self, baton: _Baton, name: str) -> None:
        super().__init__(False)
        self.baton, self.name, self.total = baton, name, 0
        self.starts: list[float] = []
        self.stamps: list[float] = []

    def start_training(self, total_steps: int, done: int) -> None:
        self.total = total_steps
        self.baton.start(self.name)
        self.starts.append(time.perf_counter())
        super().start_training(total_steps, done)

    @property
    def finished(self) -> bool:
        """Whether every training step has ended (what follows belongs to the front)."""
        return len(self.stamps) >= self.total

    @property
    def step_s(self) -> list[float]:
        return [b - a for a, b in zip(self.starts, self.stamps)]

    def start(self, description: str, total: int, completed: int = 0) -> None:
        if description != "train":
            raise _TrainingDone
        super().start(description, total, completed)

    def advance(self, epoch: int, epochs: int, loss: float, ratios: torch.Tensor) -> None:
        self.stamps.append(time.perf_counter())
        super().advance(epoch, epochs, loss, ratios)
        if not self.finished:
            self.baton.hand_on(self.name)
            self.baton.take(self.name)
            self.starts.append(time.perf_counter())


@dataclass
class _TrainRun:
    """What one method's run records: its clock, its sampler and the re-scores during training."""

    clock: _StepClock
    sampler: Any = None
    rescored: list[int] = field(default_factory=list)  # vectors per re-score (not the final one)


def _train_setup(method: str, steps: int) -> tuple[nn.Module, Any, Any, TrainConfig]:
    """The slimmable example, the embedded data and the CLI's default options for ``steps`` steps."""
    torch.manual_seed(0)
    loaded = modelfile.load(str(EXAMPLE))
    slim = pareco_fx.make_slimmable(loaded.model, loaded.example_inputs)
    train_set, val_set, _ = load_fashion_mnist("embedded", seed=0)
    config = TrainConfig(method=method)
    epochs = math.ceil(steps / (len(train_set) // config.batch_size))
    return slim, train_set, val_set, config.replace(epochs=epochs, max_train_batches=math.ceil(steps / epochs))


def _train_interleaved(methods: Sequence[str], steps: int) -> dict[str, dict[str, Any]]:
    """One run per method, each in a thread, taking turns step by step (:class:`_Baton`); returns
    each run's step times (the front evaluation after training is cut off) and its shape: the
    period, how many width vectors it re-scored, how many searches ran."""
    baton = _Baton(methods)
    runs = {method: _TrainRun(_StepClock(baton, method)) for method in methods}
    local = threading.local()  # which run the calling thread trains
    trainer = importlib.import_module("pareco_fx.optim.trainer")
    sampler_module = importlib.import_module("pareco_fx.optim.samplers")
    make_sampler, score_widths = trainer.make_sampler, trainer.score_widths
    setups = {method: _train_setup(method, steps) for method in methods}  # tracing is not thread-safe

    def recording_sampler(*args: Any) -> Any:
        local.run.sampler = make_sampler(*args)
        return local.run.sampler

    def counting_score(slim: nn.Module, W: torch.Tensor, *args: Any) -> torch.Tensor:
        if not local.run.clock.finished:
            local.run.rescored.append(len(W))
        return score_widths(slim, W, *args)

    def train_one(method: str) -> None:
        local.run = runs[method]
        slim, train_set, val_set, config = setups[method]
        with suppress(_TrainingDone):
            train(slim, train_set, val_set, None, config, progress=False)

    clocked = [(f"{m}_sampler", SAMPLERS[m], "propose") for m in methods]
    with mock.patch.object(trainer, "TrainProgress", lambda enabled: local.run.clock), mock.patch.object(
            trainer, "make_sampler", recording_sampler), mock.patch.object(
            trainer, "score_widths", counting_score), _clocked(
            *clocked, ("search", sampler_module, "propose_by_search")) as spent:
        _run_in_turns(baton, {m: functools.partial(train_one, m) for m in methods})
    rows = {}
    for method, run in runs.items():
        config, step_s, sampler = setups[method][3], run.clock.step_s, run.sampler
        train_s, sampler_s = sum(step_s), spent[f"{method}_sampler"].seconds
        search = spent["search"] if method == "pareco" else _Clock()
        rows[method] = {
            "steps": len(step_s), "epochs": config.epochs, "batch_size": config.batch_size,
            "num_sampled": config.num_sampled, "cost": config.cost, "num_width_vectors": config.num_width_vectors,
            "period": getattr(sampler, "period", 1), "history_size": len(sampler.history),
            "rescores": len(run.rescored), "rescored_vectors": sum(run.rescored),
            "rescored_per_step": sum(run.rescored) / len(step_s),
            "train_s": train_s, "mean_step_s": train_s / len(step_s), "median_step_s": statistics.median(step_s),
            "max_step_s": max(step_s), "sampler_s": sampler_s, "searches": search.calls,
            "search_s": search.seconds, "rescore_s": sampler_s - search.seconds,
            "steps_without_sampler_s": train_s - sampler_s,
        }
    return rows


def bench_train(steps: int) -> dict[str, Any]:
    """Per-step time of ``pareco`` and ``slim`` with identical data, batch size, M and steps,
    the two runs taking turns step by step.

    The default is one complete run of the CLI's defaults (``pareco-fx slim
    examples/fashion_resnet.py``: 12 epochs of the embedded set's 35 batches = 420 steps, 50
    width vectors, so a period of 17 steps). Its overhead is that of a real run, not of a window:
    PareCO re-scores the whole history every period, so the re-scoring per step grows with
    ``num_width_vectors ** 2 / steps`` (1.43 vectors per step here; 1.21 in a 5-epoch quality
    benchmark run with 100 vectors; 2.12 in the 306-step, 50-vector run measured before, which
    squeezed the demo's 50 vectors into 9 epochs). Each row records that shape (period, history
    size reached, vectors re-scored, searches) next to the times, and the time of pareco's steps
    without its sampler (its wider sampled networks cost a few percent on their own).
    """
    runs = _train_interleaved(("pareco", "slim"), steps)
    ratio = _ratio(runs["pareco"]["mean_step_s"], runs["slim"]["mean_step_s"])
    ratio_steps = _ratio(runs["pareco"]["steps_without_sampler_s"], runs["slim"]["steps_without_sampler_s"])
    return {**runs, "interleaved": True, "ratio": ratio,
            "ratio_without_sampler": ratio_steps, "target": TRAIN_TARGET, "meets_target": ratio <= TRAIN_TARGET}


# Runs argv[2:] as its child and prints that child's peak RSS (KiB) and exit code. The measured
# process must be a grandchild of this big benchmark process: Linux carries a process's RSS
# high-water mark across fork and exec, so a direct child would report at least our own RSS.
_RSS_LAUNCHER = """
import resource, signal, subprocess, sys
proc = subprocess.Popen(sys.argv[2:], stdout=subprocess.DEVNULL)
try:
    proc.wait(timeout=float(sys.argv[1]) or None)
except subprocess.TimeoutExpired:
    proc.send_signal(signal.SIGINT)
    proc.wait()
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, proc.returncode)
"""


def _peak_rss(command: Sequence[str], stop_after: float | None = None) -> tuple[float, float, int]:
    """(peak RSS in MiB, wall seconds, exit code) of ``command``, from
    ``getrusage(RUSAGE_CHILDREN)`` in a small launcher process (see ``_RSS_LAUNCHER``).

    ``stop_after``: seconds after which the command gets SIGINT (``pareco-fx slim`` then stops at
    the next step boundary, exit code 130).
    """
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _RSS_LAUNCHER, str(stop_after or 0), *command], cwd=ROOT,
                          capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    kib, code = (int(v) for v in done.stdout.split())
    if code not in (0, -signal.SIGINT, 128 + signal.SIGINT):
        sys.stderr.write(done.stderr[-3000:])
    return kib / 1024, wall, code


def bench_rss(epochs: int, stop_after: float | None) -> dict[str, Any]:
    """Peak RSS of ``pareco-fx slim examples/fashion_resnet.py`` and of importing the package."""
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "pareco_fx", "slim", str(EXAMPLE.relative_to(ROOT)), "--epochs",
                   str(epochs), "--no-progress", "--force", "--out", out]
        rss, wall, code = _peak_rss(command, stop_after)
    base, _, _ = _peak_rss([sys.executable, "-c", "import torch, pareco_fx, pareco_fx.optim"])
    shown = " ".join(["pareco-fx", *command[3:-1], "<tmp>"])
    return {"command": shown, "exit_code": code, "completed": code == 0, "stop_after_s": stop_after,
            "peak_rss_mib": rss, "wall_s": wall, "import_only_rss_mib": base}


# --- results ---------------------------------------------------------------------------------
def merge(path: Path, run_id: str, run: dict[str, Any], rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Add this run's rows to the stored results (same section and key: replaced) and drop runs
    no row refers to any more."""
    data = json.loads(path.read_text()) if path.exists() else {"runs": {}, "sections": {}}
    data["runs"][run_id] = run
    for section, section_rows in rows.items():
        for key, row in section_rows.items():
            data["sections"].setdefault(section, {})[key] = {**row, "run": run_id}
    used = {row["run"] for section_rows in data["sections"].values() for row in section_rows.values()}
    data["runs"] = {k: v for k, v in data["runs"].items() if k in used}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    return data


def _flag(data: dict[str, Any], row: dict[str, Any]) -> str:
    run = data["runs"][row["run"]]
    marks = ["quick"] if run["quick"] else []
    if run["loaded"]:
        marks.append(f"load {run['load_max']:.0f}")
    return ", ".join(marks)


def _x(value: float) -> str:
    return f"{value:.3g}x"


def _table_analysis(data: dict[str, Any], rows: dict[str, Any]) -> Table:
    table = Table(title="Analysis: make_slimmable + cost compile vs Torch-Pruning build_dependency (s)")
    for col in ("model", "groups", "trace", "groups pass", "rewrite", "make_slimmable", "cost compile", "ours",
                "Torch-Pruning", "ours/TP", "make_slimmable/TP", "run"):
        table.add_column(col, justify="left" if col in ("model", "run") else "right")
    for name, r in rows.items():
        table.add_row(name, str(r["groups"]), *(f"{r[k]:.2f}" for k in (
            "trace_s", "groups_s", "rewrite_s", "make_slimmable_s", "cost_compile_s", "ours_s", "torch_pruning_s")),
            _x(r["ratio"]), _x(r["ratio_without_costs"]), _flag(data, r))
    return table


def _table_cost(data: dict[str, Any], rows: dict[str, Any]) -> Table:
    table = Table(title="Cost evaluation per configuration: cost_batch vs extract + thop / FlopCounterMode")
    for col in ("model", "ours (µs)", "ours vectors/s", "extract (s)", "thop (s)", "FCM (s)", "ours/thop",
                "ours/FCM", "gap to FCM", "run"):
        table.add_column(col, justify="left" if col in ("model", "run") else "right")
    for name, r in rows.items():
        table.add_row(name, f"{r['ours_per_config_s'] * 1e6:.1f}", f"{r['ours_vectors_per_s']:,.0f}",
                      f"{r['extract_s']:.2f}", f"{r['thop_s']:.2f}", f"{r['fcm_s']:.2f}", f"{r['ratio_thop']:.1e}",
                      f"{r['ratio_fcm']:.1e}", f"{r['max_rel_gap_to_fcm']:.1e}", _flag(data, r))
    return table


def _table_forward(data: dict[str, Any], rows: dict[str, Any]) -> Table:
    table = Table(title=f"Forward (CPU, eval, no_grad): time / original model's (target full width <= {FORWARD_TARGET}x)")
    for col in ("model", "batch", "original (ms)", "full width",
                *(f"{round(s * 100)}% FLOPs (width: share)" for s in FLOPS_SHARES), "run"):
        table.add_column(col, justify="left" if col in ("model", "run") else "right")
    for name, r in rows.items():
        for batch, b in r["batches"].items():
            shares = [f"{b['ratio'][k]:.2f}x (w {s['width']:.2f}: {s['flops_share']:.0%})"
                      for k, s in r["subnetworks"].items()]
            table.add_row(name, batch, f"{b['ms']['original']:.1f}", _x(b["ratio"]["slim_full"]), *shares,
                          _flag(data, r))
    return table


def _table_train(data: dict[str, Any], rows: dict[str, Any]) -> Table:
    table = Table(title=f"Training step, pareco vs slim sampler (target <= {TRAIN_TARGET}x)")
    for col in ("model", "method", "steps", "period", "re-scored / step", "searches", "mean step (s)",
                "median (s)", "max (s)", "re-score share", "GP search share", "ratio", "without sampler", "run"):
        table.add_column(col, justify="left" if col in ("model", "method", "run") else "right")
    for name, r in rows.items():
        for method in ("pareco", "slim"):
            m, pareco = r[method], method == "pareco"
            per_step = m.get("rescored_per_step")
            table.add_row(name, method, str(m["steps"]), str(m.get("period", "")),
                          "" if per_step is None else f"{per_step:.2f}", str(m["searches"]),
                          f"{m['mean_step_s']:.3f}", f"{m['median_step_s']:.3f}", f"{m['max_step_s']:.2f}",
                          f"{m['rescore_s'] / m['train_s']:.1%}", f"{m['search_s'] / m['train_s']:.1%}",
                          _x(r["ratio"]) if pareco else "",
                          _x(r["ratio_without_sampler"]) if pareco and "ratio_without_sampler" in r else "",
                          _flag(data, r))
    return table


def _table_rss(data: dict[str, Any], rows: dict[str, Any]) -> Table:
    table = Table(title="Peak RSS of a pareco-fx slim run (MiB)")
    for col in ("run of", "command", "peak RSS", "import only", "wall (s)", "completed", "run"):
        table.add_column(col, justify="left" if col in ("run of", "command", "run") else "right")
    for name, r in rows.items():
        table.add_row(name, r["command"], f"{r['peak_rss_mib']:.0f}", f"{r['import_only_rss_mib']:.0f}",
                      f"{r['wall_s']:.0f}", "yes" if r["completed"] else f"stopped at {r['stop_after_s']:.0f} s",
                      _flag(data, r))
    return table


TABLES = {"analysis": _table_analysis, "cost": _table_cost, "forward": _table_forward, "train": _table_train,
          "rss": _table_rss}


def show(data: dict[str, Any], sections: Sequence[str], console: Console) -> None:
    """Print the stored rows of ``sections`` as tables."""
    for section in sections:
        rows = data["sections"].get(section)
        if rows:
            console.print(TABLES[section](data, rows))


# --- driver ----------------------------------------------------------------------------------
def _stamped(row: dict[str, Any], load_before: float) -> dict[str, Any]:
    """``row`` with the 1-minute load average before and after it was measured."""
    return {**row, "load_average": [load_before, load_average()]}


def run(settings: Settings, sections: Sequence[str], log: Console) -> dict[str, dict[str, Any]]:
    """Measure ``sections``; model sections run model by model so each model is analysed once."""
    rows: dict[str, dict[str, Any]] = {section: {} for section in sections}
    model_sections = [s for s in ("analysis", "cost", "forward") if s in sections]
    names = list(dict.fromkeys([*settings.models, *settings.forward_models])) if model_sections else []
    if "analysis" in sections:
        warm_up_analysis()
    for name in names:
        wanted = [s for s in model_sections if name in (settings.forward_models if s == "forward" else settings.models)]
        if not wanted:
            continue
        log.log(f"{name}: {', '.join(wanted)}")
        model, load = _torchvision(name), load_average()
        if "analysis" in wanted:
            slim, row = bench_analysis(model, settings.analysis_repeats)
            rows["analysis"][name], load = _stamped(row, load), load_average()
        else:
            slim = pareco_fx.make_slimmable(model, (_image(),))
        if "cost" in wanted:
            row = bench_cost(slim, settings.cost_batch, settings.cost_configs, settings.cost_repeats)
            rows["cost"][name], load = _stamped(row, load), load_average()
        if "forward" in wanted:
            row = bench_forward(model, slim, settings.forward_batches, settings.forward_repeats)
            rows["forward"][name] = _stamped(row, load)
        del model, slim
    if "train" in sections:
        log.log(f"train: pareco and slim, {settings.train_steps} steps each")
        load = load_average()
        rows["train"]["fashion_resnet"] = _stamped(bench_train(settings.train_steps), load)
    if "rss" in sections:
        log.log("rss: pareco-fx slim")
        load = load_average()
        rows["rss"]["fashion_resnet"] = _stamped(bench_rss(settings.rss_epochs, settings.rss_stop_after), load)
    return rows


def _max_load(rows: dict[str, dict[str, Any]]) -> float:
    """The highest 1-minute load average recorded around any row."""
    return max((max(row["load_average"]) for section in rows.values() for row in section.values()), default=0.0)


def _names(text: str, allowed: Sequence[str] | None = None) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    bad = [n for n in names if allowed is not None and n not in allowed]
    if bad:
        raise SystemExit(f"unknown section(s) {', '.join(bad)}; choose from {', '.join(allowed or ())}")
    return names


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small settings (mobilenet_v2 only, fewer repeats)")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections: {', '.join(SECTIONS)}")
    parser.add_argument("--models", help="comma-separated torchvision models for analysis, cost and forward")
    parser.add_argument("--repeats", type=int, help="timed rounds of the analysis")
    parser.add_argument("--train-steps", type=int, help="training steps per method")
    parser.add_argument("--out", type=Path, default=OUT, help="results JSON (merged)")
    parser.add_argument("--show", action="store_true", help="print the stored results and exit")
    args = parser.parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 200)  # files and pipes get whole rows
    log = Console(stderr=True)
    sections = _names(args.only, SECTIONS)
    if args.show:
        show(json.loads(args.out.read_text()), sections, console)
        return
    settings = QUICK if args.quick else FULL
    if args.models:
        models = _names(args.models)
        settings = replace(settings, models=models, forward_models=models)
    if args.repeats:
        settings = replace(settings, analysis_repeats=args.repeats)
    if args.train_steps:
        settings = replace(settings, train_steps=args.train_steps)
    torch.set_num_threads(THREADS)
    info, load_before, t0 = machine_info(), load_average(), time.perf_counter()
    rows = run(settings, sections, log)
    load_after = load_average()
    run_info = {**info, "quick": args.quick, "settings": asdict(settings), "command": " ".join(sys.argv),
                "wall_s": round(time.perf_counter() - t0, 1), "load_before": load_before, "load_after": load_after,
                "load_max": max(load_before, load_after, _max_load(rows))}
    run_info["loaded"] = run_info["load_max"] >= LOADED
    data = merge(args.out, str(info["date"]), run_info, rows)
    show({**data, "sections": {s: {k: data["sections"][s][k] for k in r} for s, r in rows.items()}}, sections, console)
    log.print(f"wrote {args.out} ({run_info['wall_s']:.0f} s; 1-min load {load_before} -> {load_after})")


if __name__ == "__main__":
    main()

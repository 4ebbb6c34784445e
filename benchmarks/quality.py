"""Quality benchmark: PareCO against uniform slimming (slim) and two-stage search on Fashion-MNIST.

usage (from the checkout):
    .venv/bin/python benchmarks/quality.py --model fashion_resnet,fashion_mobilenet --cost flops,memory \\
        --method pareco,slim,twostage --seed 0,1,2 [--epochs E] [--train-size N] [--width-mult M] \\
        [--min-width W] [--data DIR] [--jobs J --threads 1] [--device cuda]

Every cell of the (model x cost x method x seed) product is trained with the same epochs, batch
size, learning-rate schedule and number of sub-networks per step (only the width sampling
differs), and its front (selected on the validation split, carved out of the training images;
test accuracy reported only) is merged into ``benchmarks/results/quality.json`` under a file lock
with an atomic write, so the matrix can be completed over several runs and processes. ``--jobs``
trains that many cells at once in worker processes, seed by seed (all settings of seed 0 first), so
an interrupted sweep leaves whole seeds behind. Under ``torchrun`` (``torchrun --standalone
--nproc_per_node 2 benchmarks/quality.py ...``) every cell trains data-parallel on all the
processes (the README's multi-process training; the global batch is split between them) and
rank 0 merges it: the way to use both cores of a 2-core machine for one cell, as torch's
intra-op threads barely speed up these small convolutions. A run with
the same (model, cost, method, seed, epochs, train size) replaces the stored one; each run keeps
its wall time per phase (``phases_s``: train, re-score or search, front, test) and, next to its
front, the uniform widths it evaluated (``uniform``: the same multipliers for every method, so two
methods' weights can be compared on the same sub-networks). The aggregate
per setting (budgets, hypervolume, ties) is recomputed on every write; render the README with
``benchmarks/quality_report.py``.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import fcntl
import functools
import importlib.util
import itertools
import json
import multiprocessing
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn
from torch.utils.data import Subset

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import pareco_fx  # noqa: E402
from pareco_fx.data import load_fashion_mnist, stratified_indices  # noqa: E402
from pareco_fx.optim import METHODS, TrainConfig, train  # noqa: E402
from pareco_fx.optim.config import SEARCH_POOLS  # noqa: E402
from pareco_fx.optim.checkpoint import CHECKPOINT_FILE, write_json  # noqa: E402
from pareco_fx.optim.distributed import Comm, distributed_from_env  # noqa: E402
from _timing import machine_info  # noqa: E402
from quality_report import RESULTS, ROOT, aggregate, run_key, with_width_mult  # noqa: E402

KEPT_RECORD = "quality_run.json"  # a finished cell's record, in its kept run directory

MODELS = ("fashion_resnet", "fashion_mobilenet")
COSTS = ("flops", "memory")
SPLIT_SEED = 0  # validation split and training subset: identical for every cell


def _load_example(name: str) -> ModuleType:
    """A private copy of ``examples/<name>.py`` (its module globals may be changed safely)."""
    spec = importlib.util.spec_from_file_location(f"_quality_{name}", ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _scaled(channels: int, mult: float) -> int:
    return max(1, int(round(channels * mult)))


def build_model(name: str, width_mult: float) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """The example network with every channel count scaled by ``width_mult``, and example inputs."""
    module = _load_example(name)
    if name == "fashion_resnet":
        model = module.FashionResNet(widths=tuple(_scaled(c, width_mult) for c in (16, 32, 64)))
    elif name == "fashion_mobilenet":
        # The stage table is a module global of the example; this copy of the module is ours.
        module.SETTINGS = tuple((t, _scaled(c, width_mult), n, s) for t, c, n, s in module.SETTINGS)
        model = module.FashionMobileNet(stem=_scaled(16, width_mult), head=_scaled(256, width_mult))
    else:
        raise SystemExit(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    return model, module.example_inputs()


@functools.lru_cache(maxsize=1)  # every cell of a process trains on the same splits
def load_data(source: str, train_size: int | None, val_size: int | None,
              test_size: int | None) -> tuple[Any, Any, Any]:
    """Full Fashion-MNIST (10 % of each training class held out for validation), optionally
    stratified subsets of the three splits (smaller validation and test sets: smoke runs only)."""
    train_set, val_set, test_set = load_fashion_mnist(source, val_fraction=0.1, seed=SPLIT_SEED)

    def subset(data: Any, size: int | None) -> Any:
        if size is None or size >= len(data):
            return data
        _, taken = stratified_indices(data.labels.numpy(), size / len(data), SPLIT_SEED)
        return Subset(data, taken.tolist())

    return subset(train_set, train_size), subset(val_set, val_size), subset(test_set, test_size)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def merge(path: Path, run: dict[str, Any], settings: dict[str, Any]) -> None:
    """Add ``run`` to the JSON at ``path`` (replacing a run with the same key), recompute the
    aggregate, and write atomically under an exclusive lock."""
    with _locked(path):
        data = json.loads(path.read_text()) if path.exists() else {"runs": [], "settings": {}}
        runs = [r for r in data["runs"] if run_key(r) != run_key(run)] + [run]
        runs.sort(key=run_key)
        data["runs"] = runs
        data.setdefault("settings", {})["/".join(map(str, run_key(run)))] = settings
        data["aggregate"] = aggregate(with_width_mult(data))
        write_json(path, data)


def run_cell(args: argparse.Namespace, model_name: str, cost: str, method: str, seed: int,
             data: tuple[Any, Any, Any], comm: Comm = Comm()) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train one cell; returns the run record (issue schema) and its settings."""
    torch.manual_seed(seed)  # the initial weights depend on the seed only, not on the method
    model, inputs = build_model(model_name, args.width_mult)
    slim = pareco_fx.make_slimmable(model, inputs, min_width=args.min_width)
    slim.to(args.device)
    config = TrainConfig(
        method=method, cost=cost, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        weight_decay=5e-4, warmup_epochs=min(1.0, args.epochs / 5), schedule="linear", num_sampled=2,
        seed=seed, num_width_vectors=args.width_vectors, rescore_every=args.rescore_every,
        recal_batches=args.recal_batches,
        slim_eval_points=args.eval_points, twostage_evals=args.twostage_evals, search_pool=args.search_pool,
        pareto_aware=args.pareto_aware, front_fill=args.front_fill if method == "pareco" else 0,
    )
    train_set, val_set, test_set = data
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    run_dir = None if args.keep_runs is None else args.keep_runs / f"{model_name}-{cost}-{method}-seed{seed}"
    kept = _kept_record(run_dir)
    # A kept run directory is resumed: an interrupted cell goes on, a finished one only rebuilds its
    # front (with the current code) from its final weights and history.
    result = train(slim, train_set, val_set, test_set, config, run_dir=run_dir, resume=run_dir is not None,
                   progress=args.progress)
    wall = time.perf_counter() - t0
    phases = {phase: round(seconds, 1) for phase, seconds in result.seconds.items()}
    if kept is not None:  # this call trained nothing: the training time is the first call's
        wall += kept["phases_s"]["train"] - phases["train"]
        phases["train"] = kept["phases_s"]["train"]
    run = {
        "model": model_name, "cost": cost, "method": method, "seed": seed, "epochs": args.epochs,
        "train_size": len(train_set), "wall_s": round(wall, 1), "device": _device_name(args.device),
        "phases_s": phases,
        "front": [_point(p) for p in result.front],
        # the same uniform multipliers for every method: their weights compared shape for shape
        "uniform": [_point(p) for p in result.uniform],
    }
    settings = {
        "width_mult": args.width_mult, "min_width": args.min_width, "data": str(args.data),
        "val_size": len(val_set), "test_size": len(test_set), "groups": len(slim.groups),
        "cost_min_ratio": min(p.cost_ratio for p in result.uniform),
        "load_average": [load_before, os.getloadavg()[0]], "threads": torch.get_num_threads(),
        "jobs": args.jobs, "ranks": comm.world_size,
        # the CPU, cores and versions a wall time was measured on (the load is the entry above)
        "machine": {key: value for key, value in machine_info().items()
                    if key not in ("load_average", "torch_threads")},
        "config": config.to_dict(),
    }
    if kept is not None:
        settings["front_rebuilt_from"] = str(run_dir)
    if run_dir is not None and comm.is_main:
        write_json(run_dir / KEPT_RECORD, run)
    return run, settings


def _point(p: Any) -> dict[str, Any]:
    return {"cost_ratio": p.cost_ratio, "val_acc": p.val_acc, "test_acc": p.test_acc, "widths": list(p.widths)}


def _kept_record(run_dir: Path | None) -> dict[str, Any] | None:
    """The record a finished earlier call left in ``run_dir`` (``None`` when it did not finish, or
    when its checkpoint is gone and the cell trains again)."""
    if run_dir is None or not (run_dir / KEPT_RECORD).is_file() or not (run_dir / CHECKPOINT_FILE).is_file():
        return None
    return json.loads((run_dir / KEPT_RECORD).read_text())


def cell_order(models: Sequence[str], costs: Sequence[str], methods: Sequence[str],
               seeds: Sequence[int]) -> list[tuple[str, str, str, int]]:
    """(model, cost, method, seed) cells, seed-major: an interrupted sweep leaves every setting with
    the same seeds done."""
    return [(m, c, k, s) for s, m, c, k in itertools.product(seeds, models, costs, methods)]


def _device_name(device: str) -> str:
    return torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu"


def train_and_merge(args: argparse.Namespace, cell: tuple[str, str, str, int], comm: Comm = Comm()) -> str:
    """Train one cell, merge it into ``args.out`` (rank 0 only) and return a one-line summary
    (runs in a worker process under ``--jobs``)."""
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    model_name, cost, method, seed = cell
    data = load_data(args.data, args.train_size, args.val_size, args.test_size)
    run, settings = run_cell(args, model_name, cost, method, seed, data, comm)
    if comm.is_main:
        merge(args.out, run, settings)
    best = max(run["front"], key=lambda p: p["val_acc"])
    return (f"{model_name} {cost} {method} seed {seed}: {len(run['front'])} front points, "
            f"full-front best test {100 * best['test_acc']:.2f} %, smallest "
            f"{100 * run['front'][0]['test_acc']:.2f} % at {run['front'][0]['cost_ratio']:.3f}, "
            f"{run['wall_s']:.0f} s")


def _csv(kind: type, choices: Sequence[str] | None = None) -> Any:
    def parse(text: str) -> list[Any]:
        values = [kind(v) for v in text.split(",") if v]
        bad = [v for v in values if choices is not None and v not in choices]
        if bad or not values:
            hint = f"choose from {', '.join(choices)}" if choices else f"give {kind.__name__} values"
            raise argparse.ArgumentTypeError(f"{text!r}: {hint}, comma-separated")
        return values
    return parse


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=_csv(str, MODELS), required=True)
    parser.add_argument("--cost", type=_csv(str, COSTS), required=True)
    parser.add_argument("--method", type=_csv(str, METHODS), required=True)
    parser.add_argument("--seed", type=_csv(int), required=True)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--train-size", type=int, default=None, help="default: all 54,000")
    parser.add_argument("--val-size", type=int, default=None, help="default: all 6,000 (smaller: smoke runs only)")
    parser.add_argument("--test-size", type=int, default=None, help="default: all 10,000 (smaller: smoke runs only)")
    parser.add_argument("--width-mult", type=float, default=1.0)
    parser.add_argument("--min-width", type=float, default=0.25)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--width-vectors", type=int, default=100, help="width vectors pareco visits")
    parser.add_argument("--recal-batches", type=int, default=8)
    parser.add_argument("--eval-points", type=int, default=30, help="uniform multipliers evaluated")
    parser.add_argument("--twostage-evals", type=int, default=500)
    parser.add_argument("--rescore-every", type=int, default=1,
                        help="pareco re-scores its history every K-th period only (TrainConfig.rescore_every)")
    parser.add_argument("--pareto-aware", action="store_true",
                        help="pareco draws target costs where the front has gaps (the paper's --pas)")
    parser.add_argument("--front-fill", type=int, default=0,
                        help="pareco: width vectors a search on the trained weights adds where the front has gaps")
    parser.add_argument("--search-pool", default="mixed", choices=SEARCH_POOLS,
                        help="candidates of the GP search (TrainConfig.search_pool)")
    parser.add_argument("--data", default="fashion-mnist", help="IDX directory, 'fashion-mnist' or 'embedded'")
    parser.add_argument("--out", type=Path, default=RESULTS / "quality.json")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads; 1 is far faster on an oversubscribed machine")
    parser.add_argument("--jobs", type=int, default=1, help="cells trained at once (worker processes)")
    parser.add_argument("--device", default="cpu", help="torch device of the training, e.g. cuda")
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--keep-runs", type=Path, default=None,
                        help="keep each cell's run directory (checkpoint, history.json, front) under this folder; "
                             "a cell whose directory is there is resumed, and a finished one only rebuilds its front")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    cells = cell_order(args.model, args.cost, args.method, args.seed)
    with distributed_from_env() as comm:
        if comm.active and args.jobs != 1:
            parser.error("under torchrun every cell trains on all the processes; leave --jobs at 1")
        if args.jobs == 1:
            for cell in cells:
                summary = train_and_merge(args, cell, comm)
                if comm.is_main:
                    print(summary, flush=True)
            return
    # spawn, not fork: CUDA cannot be re-initialised in a forked child.
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
        futures = {pool.submit(train_and_merge, args, cell): cell for cell in cells}
        failed = []
        for future in concurrent.futures.as_completed(futures):
            try:
                print(future.result(), flush=True)
            except Exception as error:  # the other cells go on; the sweep still fails at the end
                failed.append(futures[future])
                print(f"{' '.join(map(str, futures[future]))} failed: {error!r}", file=sys.stderr, flush=True)
    if failed:
        raise SystemExit(f"{len(failed)} of {len(cells)} cells failed")


if __name__ == "__main__":
    main()

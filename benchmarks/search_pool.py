"""What the GP search proposes from a run's history, under each candidate pool.

usage (from the checkout): .venv/bin/python benchmarks/search_pool.py RUN_DIR [--proposals N] [--seed S]

RUN_DIR is a ``pareco-fx slim`` run of the ``pareco`` method. Its history (visited width vectors
with their last re-scored losses) is fitted exactly as the sampler fits it, then N target costs
are searched with each ``TrainConfig.search_pool``; the script prints how many proposals are
uniform multipliers, how many repeat a visited vector, and how far apart their per-group widths
are. It explains a front made mostly of the uniform prior vectors (README, quality reading).
"""
from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Sequence
from pathlib import Path

import torch

import pareco_fx
from pareco_fx import modelfile
from pareco_fx.cli.slim import read_source
from pareco_fx.optim import History, TrainConfig, WidthSpace
from pareco_fx.optim.config import SEARCH_POOLS
from pareco_fx.optim.search import propose_by_search


def replay(run_dir: Path, proposals: int, seed: int) -> dict[str, dict[str, float]]:
    """Per pool: proposals that are uniform, that repeat the history, and their median spread."""
    config = TrainConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    entries = json.loads((run_dir / "history.json").read_text())["entries"]
    src = read_source(run_dir)
    loaded = modelfile.load(src["model"], src["input_shape"])
    slim = pareco_fx.make_slimmable(loaded.model, loaded.example_inputs, min_width=src["min_width"],
                                    divisor=src["divisor"])
    space = WidthSpace.from_slim(slim, config.cost)
    scored = [e for e in entries if e["loss"] is not None]
    history = History(space.num_groups)
    W = torch.tensor([e["widths"] for e in scored], dtype=torch.float64)
    history.append(W, space.ratio(W), 0)
    history.losses = torch.tensor([e["loss"] for e in scored], dtype=torch.float64)
    report = {}
    for pool in SEARCH_POOLS:
        P = propose_by_search(space, history, config.replace(search_pool=pool), torch.Generator().manual_seed(seed),
                              proposals)
        x = space.project(P)
        spread = (x.max(dim=1).values - x.min(dim=1).values).tolist()
        report[pool] = {
            "uniform": sum(s < 1e-9 for s in spread),
            "repeats": sum(bool(torch.all(W == p, dim=1).any()) for p in P),
            "median_spread": statistics.median(spread),
        }
    return report


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--proposals", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for pool, row in replay(args.run_dir, args.proposals, args.seed).items():
        print(f"{pool:6s} {args.proposals} proposals: {row['uniform']} uniform multipliers, {row['repeats']} repeat a "
              f"visited vector, median spread of per-group widths {row['median_spread']:.3f}")


if __name__ == "__main__":
    main()

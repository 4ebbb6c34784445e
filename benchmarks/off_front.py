"""How good are a PareCO run's weights away from the width vectors it trained?

usage (from the checkout): .venv/bin/python benchmarks/off_front.py RUN_DIR [--budgets 0.25,0.22]
       [--band 0.20,0.25] [--samples 400] [--width-mult 1.0] [--out FILE]

RUN_DIR is a cell kept by ``quality.py --keep-runs`` (``MODEL-COST-METHOD-seedS``; pass the run's
``--width-mult``; its ``min_width`` comes from the run's ``front.json``). Three probes on its final
weights; every sub-network is scored as the front's candidates are (``evaluate_widths``: BatchNorm
recalibrated on 8 training batches, then the whole validation split):

1. ``groups``: each slimmable group alone at full width, the others at the minimum — which groups
   set the cost.
2. ``shrink``: each front point costlier than a budget, moved along the straight line towards the
   smallest network until it fits the budget (bisection on the exact cost).
3. ``band``: random vectors (random sub-boxes of the width space) whose cost ratio lies in the
   band; the ``KEEP`` with the lowest training loss on the recalibration batches.

It explains why a search on trained weights (``--front-fill``) cannot fill a gap below the
cheapest non-uniform vector PareCO trained (``benchmarks/QUALITY.md``, *The front fill*).
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader

import pareco_fx
from pareco_fx.optim import WidthSpace
from pareco_fx.optim.evaluate import score_widths, smoothed_ce
from pareco_fx.optim.front import evaluate_widths
from pareco_fx.optim.search import random_boxes
from pareco_fx.report import atomic_write
from quality import build_model, load_data

KEEP = 12  # band vectors evaluated on validation
RECAL_BATCHES, BATCH = 8, 128


class Probe:
    """A kept run's final weights with the data to score sub-networks on."""

    def __init__(self, run_dir: Path, width_mult: float, data: str) -> None:
        model_name, cost = run_dir.name.split("-")[:2]
        front = json.loads((run_dir / "front.json").read_text())
        model, inputs = build_model(model_name, width_mult)
        self.slim = pareco_fx.make_slimmable(model, inputs, min_width=front["min_width"])
        self.space = WidthSpace.from_slim(self.slim, cost)
        if abs(self.space.cost_full - front["cost_full"]) > 1e-6 * front["cost_full"]:
            raise SystemExit(f"{run_dir} was trained with another --width-mult (full {cost} {front['cost_full']:g}, "
                             f"here {self.space.cost_full:g}); pass the run's --width-mult")
        self.slim.load_state_dict(torch.load(run_dir / "checkpoint.pt", weights_only=True)["model"])
        train, val, _ = load_data(data, None, None, None)
        shuffled = DataLoader(train, batch_size=BATCH, shuffle=True, generator=torch.Generator().manual_seed(0))
        self.recal = [batch for _, batch in zip(range(RECAL_BATCHES), shuffled)]
        self.val = list(DataLoader(val, batch_size=500))
        self.front = front["points"]
        self.smoothing = float(json.loads((run_dir / "config.json").read_text())["label_smoothing"])

    def ratio(self, W: Tensor) -> Tensor:
        return self.space.ratio(W.double())

    def row(self, widths: Tensor, **extra: Any) -> dict[str, Any]:
        """``extra`` with the cost ratio and validation accuracy of ``widths`` ``[G]``."""
        (point,) = evaluate_widths(self.slim, widths[None].double(), self.space, self.recal, self.val, None,
                                   lambda logits, y: smoothed_ce(logits, y, self.smoothing))
        return {**extra, "cost_ratio": round(point.cost_ratio, 4), "val_acc": round(point.val_acc, 4),
                "widths": [round(float(w), 3) for w in widths]}


def probe_groups(probe: Probe) -> list[dict[str, Any]]:
    """Cost ratio of the smallest network with one slimmable group (full-vector index) at full width."""
    space, rows = probe.space, []
    for index in torch.nonzero(space.slimmable).flatten().tolist():
        W = space.smallest()[None].clone()
        W[0, index] = 1.0
        rows.append({"group_index": index, "cost_ratio": round(float(probe.ratio(W)[0]), 4)})
    return rows


def shrink_to(probe: Probe, widths: Tensor, budget: float, steps: int = 30) -> Tensor:
    """The point of the segment from the smallest network to ``widths`` furthest along it whose
    cost ratio is within ``budget`` (the cost grows along it: every width does)."""
    small = probe.space.smallest()
    lo, hi = 0.0, 1.0
    for _ in range(steps):
        mid = (lo + hi) / 2
        if float(probe.ratio((small + mid * (widths - small))[None])[0]) <= budget:
            lo = mid
        else:
            hi = mid
    return small + lo * (widths - small)


def probe_shrink(probe: Probe, budgets: Sequence[float]) -> list[dict[str, Any]]:
    rows = []
    for budget in budgets:
        for point in probe.front:
            if point["cost_ratio"] <= budget:
                continue
            widths = shrink_to(probe, torch.tensor(point["widths"], dtype=torch.float64), budget)
            rows.append(probe.row(widths, budget=budget, from_cost_ratio=round(point["cost_ratio"], 4),
                                  from_val_acc=round(point["val_acc"], 4)))
    return rows


def probe_band(probe: Probe, band: tuple[float, float], samples: int) -> list[dict[str, Any]]:
    space, generator = probe.space, torch.Generator().manual_seed(1)
    found = []
    while sum(len(W) for W in found) < samples:
        W = space.embed(space.from_unit(random_boxes(20 * samples, space.dim, generator)))
        ratio = probe.ratio(W)
        inside = W[(ratio >= band[0]) & (ratio <= band[1])]
        if not len(inside) and not found:
            raise SystemExit(f"no random vector has a cost ratio in {band}; widen --band")
        found.append(inside)
    W = torch.cat(found)[:samples]
    loss = score_widths(probe.slim, W, probe.recal, probe.smoothing)
    return [probe.row(W[i], train_loss=round(float(loss[i]), 4)) for i in torch.argsort(loss)[:KEEP].tolist()]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--budgets", default="0.25,0.22", help="comma-separated cost ratios")
    parser.add_argument("--band", default="0.20,0.25", help="lowest,highest cost ratio of the random vectors")
    parser.add_argument("--samples", type=int, default=400, help="random vectors in the band, scored by loss")
    parser.add_argument("--width-mult", type=float, default=1.0)
    parser.add_argument("--data", default="fashion-mnist", help="as quality.py's --data")
    parser.add_argument("--out", type=Path, help="write the JSON report here too")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    band = tuple(float(b) for b in args.band.split(","))
    probe = Probe(args.run_dir, args.width_mult, args.data)
    smallest = probe.row(probe.space.smallest())
    report = {"run_dir": str(args.run_dir), "smallest": smallest, "groups": probe_groups(probe),
              "shrink": probe_shrink(probe, [float(b) for b in args.budgets.split(",")]),
              "band": {"band": band, "samples": args.samples, "best": probe_band(probe, band, args.samples)}}
    print(f"smallest network: cost ratio {smallest['cost_ratio']:.3f}, validation {100 * smallest['val_acc']:.2f} %")
    print("one group at full width:", ", ".join(f"#{r['group_index']} {r['cost_ratio']:.3f}" for r in report["groups"]))
    for r in report["shrink"]:
        print(f"shrunk to {r['budget']}: from {r['from_cost_ratio']:.3f} ({100 * r['from_val_acc']:.1f} %) to "
              f"{r['cost_ratio']:.3f}: {100 * r['val_acc']:.2f} %")
    for r in report["band"]["best"]:
        print(f"band {band}: {r['cost_ratio']:.3f}, loss {r['train_loss']:.4f}: {100 * r['val_acc']:.2f} %")
    if args.out is not None:
        atomic_write(args.out, lambda tmp: tmp.write_text(json.dumps(report, indent=1) + "\n"))


if __name__ == "__main__":
    main()

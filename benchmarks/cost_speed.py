"""How fast the compiled cost programs evaluate width vectors, next to the reference way.

For resnet50 and mobilenet_v2 (224×224 inputs), ``slim.cost_batch(name, W)`` on B = 4096 random
width vectors in [min_width, 1], for ``flops``, ``params`` and ``memory``: width vectors per
second (median of several runs), end to end (width validation + features + program) and for the
program alone, with 2 CPU threads (the target's setting) and with 1 (on a shared machine, two
threads contending with other jobs can be slower than one; the load average is recorded). Side by side, what reference implementations do per candidate: extract the
sub-network and run ``thop.profile`` on it; the ratio is ours (flops) over thop.

Targets (issue 3): ≥ 1e6 vectors/s for flops and params, ≥ 2e5/s for memory.

Run: ``.venv/bin/python benchmarks/cost_speed.py [--batch 4096] [--thop-candidates 3]``
Writes ``benchmarks/results/cost_speed.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

import torch
import torchvision

import pareco_fx
from pareco_fx import cost_models

COSTS = {"flops": 1e6, "params": 1e6, "memory": 2e5}  # name -> target vectors/s
THREADS = (2, 1)  # the target's 2 threads; 1 thread for comparison on a shared, loaded machine
MODELS = ("resnet50", "mobilenet_v2")
OUT = Path(__file__).parent / "results" / "cost_speed.json"


def _median_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm up (compiles on first use)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _thop_per_second(slim, W: torch.Tensor, x1: tuple[torch.Tensor, ...], candidates: int) -> tuple[float, list]:
    import thop

    t0 = time.perf_counter()
    counted = []
    for w in W[:candidates].tolist():
        sub = slim.extract(w)
        macs, _ = thop.profile(sub, inputs=x1, verbose=False)
        counted.append(float(macs))
    return candidates / (time.perf_counter() - t0), counted


def bench_model(name: str, batch: int, repeats: int, thop_candidates: int) -> dict:
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None).eval()
    x = (torch.randn(2, 3, 224, 224),)
    t0 = time.perf_counter()
    slim = pareco_fx.make_slimmable(model, x)
    analyse_s = time.perf_counter() - t0
    G = len(slim.groups)
    W = torch.rand(batch, G, generator=torch.Generator().manual_seed(1)) * (1 - slim.min_width) + slim.min_width
    feats = slim.analysis.features(W)
    row: dict = {"groups": G, "features": slim.analysis.num_features, "analyse_s": round(analyse_s, 2), "costs": {}}
    for cost, target in COSTS.items():
        t0 = time.perf_counter()
        program = cost_models.compile(cost, slim.analysis)
        entry = row["costs"][cost] = {"compile_s": round(time.perf_counter() - t0, 3), "program": repr(program),
                                      "target_vectors_per_s": target}
        for threads in THREADS:
            torch.set_num_threads(threads)
            end_to_end = batch / _median_seconds(lambda: slim.cost_batch(cost, W), repeats)
            program_only = batch / _median_seconds(lambda: program(feats), repeats)
            entry[f"threads_{threads}"] = {
                "vectors_per_s": round(end_to_end), "program_only_vectors_per_s": round(program_only),
                "meets_target": end_to_end >= target,
            }
        torch.set_num_threads(THREADS[0])
    x1 = tuple(t[:1] for t in x)
    thop_rate, thop_macs = _thop_per_second(slim, W, x1, thop_candidates)
    ours = slim.cost_batch("flops", W[:thop_candidates]).tolist()
    row["thop"] = {
        "candidates": thop_candidates, "vectors_per_s": round(thop_rate, 3),
        "speedup_flops_vs_thop": round(row["costs"]["flops"]["threads_2"]["vectors_per_s"] / thop_rate),
        "macs_thop": thop_macs, "macs_ours": ours,
    }
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--thop-candidates", type=int, default=3)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    torch.set_num_threads(THREADS[0])
    result = {
        "batch": args.batch, "threads": list(THREADS), "torch": torch.__version__,
        "machine": f"{platform.machine()} {platform.processor() or platform.platform()}, {os.cpu_count()} cores",
        "load_average_before": os.getloadavg(), "models": {},
    }
    for name in MODELS:
        result["models"][name] = row = bench_model(name, args.batch, args.repeats, args.thop_candidates)
        for threads in THREADS:
            costs = ", ".join(f"{c} {v[f'threads_{threads}']['vectors_per_s']:,.0f}/s" for c, v in row["costs"].items())
            print(f"{name} ({threads} threads): {costs}", flush=True)
        print(f"{name}: thop {row['thop']['vectors_per_s']:.2f}/s; flops program "
              f"{row['thop']['speedup_flops_vs_thop']:,}x faster", flush=True)
    result["load_average_after"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

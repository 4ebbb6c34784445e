"""Fuzz the invariants of DESIGN.md on >= 1,000 random architectures (``tests/archgen.py``).

usage (from the checkout): .venv/bin/python benchmarks/fuzz.py [--models 1000] [--start 0] [--jobs 2]

Architecture ``i`` is ``archgen.from_seed(start + i)``; each is checked by
``invariants.check_invariants`` at the smallest, a random and the largest widths. Prints one line
per failure and a summary, and writes ``benchmarks/results/fuzz.json``: models tried, passed,
failures (seed, error, architecture), wall time. Exit status 1 when any model fails.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

import archgen  # noqa: E402
from invariants import check_invariants  # noqa: E402


def code_version() -> str:
    """The checkout the results belong to (``git describe --always --dirty``)."""
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_one(seed: int, max_ops: int) -> dict | None:
    """Check architecture ``seed``; None when it passes, else a failure record."""
    torch.set_num_threads(1)
    arch = archgen.from_seed(seed, max_ops=max_ops)
    try:
        check_invariants(archgen.build(arch, seed), arch.example_inputs(seed=seed), seed=seed)
        return None
    except Exception as e:  # noqa: BLE001 - every failure is a finding to report
        return {"seed": seed, "error": f"{type(e).__name__}: {str(e).strip()[:400]}",
                "where": traceback.format_exc().strip().splitlines()[-3][:300], "arch": repr(arch)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=1000)
    ap.add_argument("--start", type=int, default=0, help="first seed")
    ap.add_argument("--max-ops", type=int, default=12)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "fuzz.json"))
    args = ap.parse_args()
    seeds = range(args.start, args.start + args.models)
    t0 = time.time()
    failures = []
    with ProcessPoolExecutor(args.jobs) as pool:
        for res in pool.map(run_one, seeds, [args.max_ops] * len(seeds), chunksize=8):
            if res is not None:
                failures.append(res)
                print(f"FAIL seed {res['seed']}: {res['error'][:200]}", flush=True)
    wall = time.time() - t0
    result = {
        "models": len(seeds), "passed": len(seeds) - len(failures), "failed": len(failures),
        "seeds": [seeds.start, seeds.stop - 1], "max_ops": args.max_ops, "seconds": round(wall, 1),
        "torch": torch.__version__, "python": platform.python_version(), "code": code_version(),
        "failures": failures,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"fuzz: {result['passed']}/{result['models']} architectures pass the invariants "
          f"({wall:.0f} s, {args.jobs} jobs) -> {os.path.relpath(args.out, ROOT)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

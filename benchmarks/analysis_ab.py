"""The analysis's time against another revision of pareco-fx, on this machine, in alternating runs.

usage (from the checkout)::

    .venv/bin/python benchmarks/analysis_ab.py REV [--rounds 3] [--repeats 7] [--models a,b]

Installs revision ``REV`` (``git worktree`` + ``pip install --target``, no dependencies) into a
temporary folder, then times the analysis of ``speed.py`` (``make_slimmable`` stage by stage plus the
flops and memory cost compiles, 224x224, batch 1) for ``REV`` and for this checkout in turns, each
round in a fresh interpreter per version, so that the machine's drift hits both alike. Per model
and stage it keeps the best time over all rounds and repeats, and the ratio this checkout / ``REV``.
The ratio against Torch-Pruning moves by much more between runs on a shared VM than a change of
our own code does; this is how such a change is measured. Results: ``results/analysis_ab.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))  # speed.py, _timing.py
OUT = ROOT / "benchmarks" / "results" / "analysis_ab.json"
MODELS = ("resnet50", "mobilenet_v2", "densenet121", "efficientnet_b0", "vit_b_16")
STAGES = ("trace_s", "groups_s", "rewrite_s", "cost_compile_s", "ours_s")


def time_here(models: list[str], repeats: int) -> dict[str, Any]:
    """Best stage times of the pareco_fx this interpreter imports (the child's side), and where
    that pareco_fx lives."""
    import speed  # imports pareco_fx: the revision on PYTHONPATH, else this checkout

    best: dict[str, Any] = {"pareco_fx": str(Path(speed.pareco_fx.__file__).resolve())}
    speed._analysis_once(speed._torchvision("resnet18"), speed._image())  # imports, lazy registries
    for name in models:
        model, x = speed._torchvision(name), speed._image()
        rows = [speed._analysis_once(model, x)[1] for _ in range(repeats)]
        best[name] = {stage: min(row[stage] for row in rows) for stage in STAGES}
    return best


def _install(rev: str, into: Path) -> Path:
    """``rev`` checked out and installed, without dependencies, under ``into``; its site folder."""
    tree, site = into / "tree", into / "site"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), rev], check=True,
                   capture_output=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(tree)], check=True, capture_output=True)
    return site


def _child(models: list[str], repeats: int, site: Path | None) -> dict[str, dict[str, float]]:
    env = {**os.environ, "PYTHONPATH": str(site)} if site is not None else dict(os.environ)
    # run from outside the checkout, so that only PYTHONPATH (or the editable install) decides
    proc = subprocess.run([sys.executable, __file__, "--child", "--models", ",".join(models), "--repeats",
                           str(repeats)], cwd=tempfile.gettempdir(), env=env, check=True, capture_output=True,
                          text=True)
    times = json.loads(proc.stdout.strip().splitlines()[-1])
    source = Path(times.pop("pareco_fx"))
    expected = site.resolve() if site is not None else ROOT
    if expected not in source.parents:
        raise RuntimeError(f"the timed pareco_fx came from {source}, not from {expected}")
    return times


def compare(rev: str, models: list[str], rounds: int, repeats: int) -> dict[str, Any]:
    from _timing import machine_info

    with tempfile.TemporaryDirectory() as tmp:
        site = _install(rev, Path(tmp))
        try:
            runs = {"base": [], "here": []}
            for _ in range(rounds):
                runs["base"].append(_child(models, repeats, site))
                runs["here"].append(_child(models, repeats, None))
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(Path(tmp) / "tree")],
                           capture_output=True)
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    return {"base": rev, "here": head, "rounds": rounds, "repeats": repeats, "machine": machine_info(),
            "models": best_of(runs["base"], runs["here"], models)}


def best_of(base_runs: list[dict], here_runs: list[dict], models: list[str]) -> dict[str, dict[str, Any]]:
    """Per model: each version's best time per stage over its runs, and the ratio here / base."""
    rows = {}
    for name in models:
        base = {s: min(run[name][s] for run in base_runs) for s in STAGES}
        here = {s: min(run[name][s] for run in here_runs) for s in STAGES}
        rows[name] = {"base_s": base, "here_s": here, "ratio": {s: here[s] / base[s] for s in STAGES}}
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("rev", nargs="?", help="git revision to compare against")
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs of each version")
    parser.add_argument("--repeats", type=int, default=7, help="analyses per model in each run")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated torchvision models")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    models = args.models.split(",")
    if args.child:
        print(json.dumps(time_here(models, args.repeats)))
        return
    if args.rev is None:
        parser.error("name the revision to compare against (e.g. a commit or tag)")
    result = compare(args.rev, models, args.rounds, args.repeats)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    for name, row in result["models"].items():
        print(f"{name:16s} " + "  ".join(f"{s[:-2]} {row['ratio'][s]:.2f}x" for s in STAGES))
    print(f"wrote {args.out} (this checkout / {args.rev}; best of {args.rounds} x {args.repeats})")


if __name__ == "__main__":
    main()

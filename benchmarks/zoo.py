"""The whole torchvision zoo sweep, written up as ``benchmarks/results/zoo.md`` (and ``zoo.json``).

usage (from the checkout): .venv/bin/python benchmarks/zoo.py [NAME ...] [--jobs 1]
(all models, cheapest first, when no NAME is given)

Per classification model of ``torchvision.models.list_models``: the invariant checks of
``tests/test_zoo.py`` (min/random/max widths, backward, share target) on small inputs; then, at
the resolution of its smallest torchvision weights and batch 1, the analysis time
(``make_slimmable``: trace + groups + costs + rewrite) and ``slim.cost("flops")`` at full width
next to the weights' ``_ops`` metadata (GFLOPS in torchvision's tables, which count
multiply-accumulates). Each model runs in its own interpreter, so a crash or an out-of-memory
kill costs only its row; the tables are rewritten after every model.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import subprocess
from concurrent.futures import ThreadPoolExecutor

import torch
import torchvision

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import pareco_fx  # noqa: E402
from fuzz import code_version  # noqa: E402
from test_zoo import ALL, check_zoo_model, input_size, min_share, zoo_inputs, zoo_model  # noqa: E402


def native(name: str) -> tuple[int, float | None]:
    """(crop size, GMACs) of the torchvision weights of ``name`` with the smallest crop."""
    best: tuple[int, float | None] = (224, None)
    for w in torchvision.models.get_model_weights(name):
        crop = w.transforms.keywords.get("crop_size", 224)
        if best[1] is None or crop < best[0]:
            best = (crop, w.meta.get("_ops"))
    return best


def sweep_one(name: str) -> dict:
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("ZOO_JOBS", "1"))))
    row: dict = {"model": name, "input": zoo_inputs(name)[0].shape[-1], "min_share": min_share(name)}
    t0 = time.perf_counter()
    try:
        checked = check_zoo_model(name)
        row["status"] = "ok"
    except Exception as e:  # noqa: BLE001 - the sweep reports every failure
        row["status"] = f"FAIL {type(e).__name__}: {str(e).strip().splitlines()[0][:200] if str(e).strip() else ''}"
        checked = None
    row["check_s"] = round(time.perf_counter() - t0, 1)
    if checked is not None:
        groups = checked.slim.groups
        row.update(groups=len(groups), slimmable=sum(g.slimmable for g in groups), share=round(checked.share, 3),
                   frozen=[{"channels": g.channels, "reason": g.reason} for g in groups if not g.slimmable])
        del checked
    size, ops = native(name)
    row.update(native_input=size, tv_gmacs=ops)
    try:
        model = zoo_model(name)
        x = zoo_inputs(name, batch=1, size=size)
        t0 = time.perf_counter()
        slim = pareco_fx.make_slimmable(model, x)
        row["analysis_s"] = round(time.perf_counter() - t0, 2)
        row["gmacs"] = round(slim.cost("flops", 1.0) / 1e9, 3)
    except Exception as e:  # noqa: BLE001
        row["analysis_error"] = f"{type(e).__name__}: {str(e).strip()[:200]}"
    return row


def _reasons(frozen: list[dict]) -> str:
    counts: dict[str, int] = {}
    for f in frozen:
        r = (f["reason"] or "").split(";")[0][:70]
        counts[r] = counts.get(r, 0) + 1
    return "; ".join(f"{n}x {r}" if n > 1 else r for r, n in sorted(counts.items(), key=lambda kv: -kv[1]))


def write_markdown(rows: list[dict], path: str, wall: float, load: float) -> None:
    ok = sum(r["status"] == "ok" for r in rows)
    target = [r for r in rows if r["min_share"] > 0]
    share_ok = sum(r.get("share", 0) >= r["min_share"] for r in target)
    lines = [
        "# torchvision zoo sweep",
        "",
        f"`benchmarks/zoo.py` at `{code_version()}` on torch {torch.__version__}, torchvision {torchvision.__version__}, "
        f"{os.cpu_count()} CPU cores (load average {load:.1f} at the start: times are wall-clock on a "
        f"shared machine), {wall / 60:.0f} min. Invariants 1, 2 and 4 at min/random/max widths plus "
        "a backward pass on small inputs (`input`); analysis time and full-width MACs at batch 1 and the "
        "input of the model's smallest torchvision weights (`native`).",
        "",
        f"**{ok}/{len(rows)} models pass**; slimmable share >= 0.9 on {share_ok}/{len(target)} models of the "
        "ResNet/MobileNet/EfficientNet/RegNet/DenseNet/ShuffleNet/ConvNeXt families.",
        "",
        "| model | status | input | groups | slimmable | share | native | analysis s | GMACs | tv _ops | ratio | frozen groups (why) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: r["model"]):
        ratio = f"{r['gmacs'] / r['tv_gmacs']:.3f}" if r.get("gmacs") and r.get("tv_gmacs") else ""
        lines.append("| " + " | ".join(str(v) for v in (
            r["model"], r["status"].replace("|", "/"), r["input"], r.get("groups", ""), r.get("slimmable", ""),
            r.get("share", ""), r["native_input"], r.get("analysis_s", r.get("analysis_error", "")),
            r.get("gmacs", ""), r.get("tv_gmacs", ""), ratio, _reasons(r.get("frozen", [])).replace("|", "/"),
        )) + " |")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def _in_subprocess(name: str) -> dict:
    """``sweep_one(name)`` in a fresh interpreter: a crash or an out-of-memory kill costs one row."""
    proc = subprocess.run([sys.executable, __file__, "--one", name], capture_output=True, text=True)
    last = proc.stdout.strip().splitlines()[-1:] if proc.stdout.strip() else []
    if proc.returncode == 0 and last and last[0].startswith("{"):
        return json.loads(last[0])
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1][:200]
    return {"model": name, "input": input_size(name), "min_share": min_share(name), "native_input": "",
            "status": f"FAIL process exit {proc.returncode}: {tail}"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="models (default: all)")
    ap.add_argument("--jobs", type=int, default=1, help="models in parallel (memory: the largest take ~15 GB)")
    ap.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "zoo"))
    ap.add_argument("--resume", action="store_true", help="keep the rows already in OUT.json, sweep the rest")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: sweep one model, print its row as JSON
    args = ap.parse_args()
    if args.one:
        print(json.dumps(sweep_one(args.one)))
        return 0
    names = args.names or sorted(ALL, key=lambda n: native(n)[1] or 0.0)  # cheapest first
    os.environ["ZOO_JOBS"] = str(args.jobs)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    t0, load = time.time(), os.getloadavg()[0]
    rows: list[dict] = []
    if args.resume and os.path.exists(args.out + ".json"):
        with open(args.out + ".json") as f:
            rows = [r for r in json.load(f)["models"] if r["model"] in names]
        names = [n for n in names if n not in {r["model"] for r in rows}]
        write(rows, args.out, 0.0, load)
    with ThreadPoolExecutor(args.jobs) as pool:
        for row in pool.map(_in_subprocess, names):
            rows.append(row)
            print(f"{row['model']}: {row['status']} groups={row.get('groups')} share={row.get('share')} "
                  f"analysis={row.get('analysis_s')}s gmacs={row.get('gmacs')} tv={row.get('tv_gmacs')}", flush=True)
            write(rows, args.out, time.time() - t0, load)  # after every model: a long sweep keeps its rows
    failed = [r["model"] for r in rows if r["status"] != "ok"]
    print(f"zoo: {len(rows) - len(failed)}/{len(rows)} pass{'; failed: ' + ', '.join(failed) if failed else ''}")
    return 1 if failed else 0


def write(rows: list[dict], out: str, wall: float, load: float) -> None:
    with open(out + ".json", "w") as f:
        json.dump({"torch": torch.__version__, "torchvision": torchvision.__version__, "code": code_version(),
                   "python": platform.python_version(), "seconds": round(wall), "load_at_start": load,
                   "models": rows}, f, indent=1)
    write_markdown(rows, out + ".md", wall, load)


if __name__ == "__main__":
    sys.exit(main())

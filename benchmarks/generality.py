"""Generality against Torch-Pruning: which models each tool handles, and which it gets silently wrong.

usage (from the checkout): .venv/bin/python benchmarks/generality.py [NAME ...] [--out FILE]
(every scenario of ``tests/scenarios.py`` and the torchvision models of ``TORCHVISION`` when no
NAME is given; needs the ``bench`` extra for torch-pruning)

Per model:
- pareco-fx: ``tests/invariants.check_invariants`` (full width equals the original, every extracted
  sub-network equals the slimmable forward at the smallest, a random and the largest widths,
  gradients, save/load) — ``ok`` or the failure.
- Torch-Pruning: a *dead-channel* check. Its ``MetaPruner`` (``GroupMagnitudeImportance``, pruning
  ratio 0.5, the output layers ignored, as its users must) chooses the channels of every group and
  prunes them group by group, as in its own examples. Before each group is pruned, its channels
  are made dead: in every layer of the group that TP prunes on the output side their weights,
  biases and norm affine parameters are zeroed, so these channels are exactly zero wherever they
  flow (zero survives ReLU, SiLU, adds, concats, shuffles, and a gate multiplies it). Removing
  exactly those channels, with the consumers' input channels re-indexed correctly, then leaves
  the output unchanged (checked after every group); any index mix-up (a shuffle read as
  element-wise, a wrong concat offset) removes live channels and changes it. So TP either raises
  (``error``), changes the output (``wrong``: a silently wrong model) or keeps it (``ok``). Norms
  over channels (LayerNorm, GroupNorm) and attention change legitimately when channels go (the
  statistics and the head scale depend on the count), so models holding them are only run
  (``ran``), not judged.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from pareco_fx.report import atomic_write  # noqa: E402
from invariants import RTOL, check_invariants, error_and_scale, tensors  # noqa: E402
from scenarios import SCENARIOS  # noqa: E402
from test_zoo import check_zoo_model, zoo_inputs, zoo_model  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
# the families whose channel patterns differ: residuals, depthwise + SE, concats, shuffles, groups
TORCHVISION = ("resnet18", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0", "densenet121", "googlenet",
               "regnet_x_400mf", "resnext50_32x4d", "squeezenet1_0", "shufflenet_v2_x0_5", "convnext_tiny",
               "swin_t", "vit_b_16")
# layers whose output changes legitimately when dead channels are removed
UNJUDGEABLE = (nn.LayerNorm, nn.GroupNorm, nn.MultiheadAttention)


def _message(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0][:160] if str(e).strip() else ""
    return f"{type(e).__name__}: {text}"


def _plain(idxs: Any) -> list[int]:
    return [int(getattr(i, "idx", i)) for i in idxs]


def _kill(module: nn.Module, idxs: list[int]) -> None:
    """Zero what makes output channels ``idxs`` of ``module`` non-zero (weights, biases, affine)."""
    transposed = isinstance(module, nn.modules.conv._ConvTransposeNd)  # weight: (in, out / groups, ...)
    with torch.no_grad():
        for name in ("weight", "bias"):
            t = getattr(module, name, None)
            if isinstance(t, torch.Tensor) and t.dim() >= 1:
                if transposed and name == "weight":
                    t[:, idxs] = 0
                else:
                    t[idxs] = 0


def _output_layers(model: nn.Module, slim: Any) -> list[nn.Module]:
    """The conv / linear layers that write the model's outputs (from pareco-fx's frozen output
    groups; else the last such layer): the classes must not be pruned."""
    weighted = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
    modules = dict(model.named_modules())
    layers = [modules[m] for g in (slim.groups if slim is not None else ()) if not g.slimmable
              and "output" in (g.reason or "") for m in g.members if isinstance(modules.get(m), weighted)]
    return layers or [m for m in model.modules() if isinstance(m, weighted)][-1:]


def _relative_error(actual: list[torch.Tensor], expected: list[torch.Tensor]) -> float:
    """The invariant tests' measure (``RTOL`` judges it); infinite where the shapes differ."""
    if [a.shape for a in actual] != [e.shape for e in expected]:
        return float("inf")
    return max(err / scale for err, scale in (error_and_scale(a, e) for a, e in zip(actual, expected)))


def torch_pruning_check(model: nn.Module, inputs: tuple[torch.Tensor, ...], ignored: list[nn.Module]) -> dict[str, Any]:
    """The dead-channel check of the module docstring on ``model`` (changed in place), group by
    group in TP's own loop: each group's channels are made dead, then pruned, and the output must
    not move."""
    import torch_pruning as tp

    model.eval()
    judged = not any(isinstance(m, UNJUDGEABLE) for m in model.modules())
    err, groups, first_bad = 0.0, 0, None
    try:
        pruner = tp.pruner.MetaPruner(model, inputs, importance=tp.importance.GroupMagnitudeImportance(p=2),
                                      pruning_ratio=0.5, ignored_layers=ignored)
        for group in pruner.step(interactive=True):  # TP's own choice of channels, group by group
            for dep, idxs in group:
                if pruner.DG.is_out_channel_pruning_fn(dep.handler) and len(idxs):
                    _kill(dep.target.module, _plain(idxs))
            with torch.no_grad():
                before = [t.clone() for t in tensors(model(*inputs))]
                group.prune()
                step = _relative_error(tensors(model(*inputs)), before)
            groups += 1
            if step > RTOL and first_bad is None:
                first_bad = f"group {groups}, rooted at {type(group[0].dep.target.module).__name__}"
            err = max(err, step)
    except Exception as e:  # noqa: BLE001 - the benchmark reports every failure
        return {"status": "error", "error": _message(e), "groups": groups}
    if not groups:
        return {"status": "nothing pruned", "groups": 0}
    status = ("ok" if err <= RTOL else "wrong") if judged else "ran"
    return {"status": status, "groups": groups, "max_rel_err": err,
            **({"first_wrong": first_bad} if status == "wrong" else {})}


def pareco_check(check: Callable[[], Any]) -> tuple[dict, Any]:
    try:
        checked = check()
    except Exception as e:  # noqa: BLE001
        return {"status": "FAIL", "error": _message(e)}, None
    groups = checked.slim.groups
    return {"status": "ok", "groups": len(groups), "slimmable": sum(g.slimmable for g in groups)}, checked.slim


Case = tuple[Callable[[], nn.Module], Callable[[], tuple], Callable[[], Any]]


def cases() -> dict[str, Case]:
    """name -> (model factory, inputs factory, the pareco-fx check: the scenario and zoo tests' own)."""
    out: dict[str, Case] = {
        f"scenario:{name}": (s.factory, s.inputs, lambda s=s: check_invariants(s.factory(), s.inputs()))
        for name, s in SCENARIOS.items()}
    for name in TORCHVISION:
        out[f"torchvision:{name}"] = (lambda n=name: zoo_model(n), lambda n=name: zoo_inputs(n),
                                      lambda n=name: check_zoo_model(n))
    return out


def run_one(name: str) -> None:
    """Check ``name`` with both tools, printing each tool's result as one JSON line when done."""
    build, make_inputs, check = cases()[name]
    t0 = time.perf_counter()
    ours, slim = pareco_check(check)
    print(json.dumps({**ours, "s": round(time.perf_counter() - t0, 2)}), flush=True)
    t0 = time.perf_counter()
    model = build()
    theirs = torch_pruning_check(model, make_inputs(), _output_layers(model, slim))
    print(json.dumps({**theirs, "s": round(time.perf_counter() - t0, 2)}), flush=True)


def in_subprocess(name: str, limit_s: float) -> dict:
    """``run_one`` in a fresh interpreter, stopped after ``limit_s``: a hang or crash costs one row."""
    try:
        proc = subprocess.run([sys.executable, __file__, "--one", name], capture_output=True, text=True,
                              timeout=limit_s)
        out, err = proc.stdout, proc.stderr
        missing = {"status": "error", "error": f"process exit {proc.returncode}"}
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        err, missing = "", {"status": "timeout", "error": f"still running after {limit_s:.0f} s"}
    results = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    if err.strip():
        missing["error"] += ": " + err.strip().splitlines()[-1][:160]
    results += [missing] * (2 - len(results))
    return {"model": name, "pareco_fx": results[0], "torch_pruning": results[1]}


def write_markdown(rows: list[dict], path: Path) -> None:
    def cell(r: dict) -> str:
        extra = r.get("error") or (f"rel. error {r['max_rel_err']:.1e}" if r["status"] in ("wrong", "ran") else "")
        return f"{r['status']}" + (f" ({extra})" if extra else "")

    lines = ["| model | pareco-fx: invariants | slimmable groups | Torch-Pruning: dead-channel check | TP groups |",
             "|---|---|---|---|---|"]
    for row in rows:
        ours, theirs = row["pareco_fx"], row["torch_pruning"]
        lines.append(f"| {row['model']} | {cell(ours)} | {ours.get('slimmable', '—')} of {ours.get('groups', '—')} "
                     f"| {cell(theirs)} | {theirs.get('groups', '—')} |")
    atomic_write(path, lambda tmp: tmp.write_text("\n".join(lines) + "\n"))


def summary(rows: list[dict]) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {"pareco_fx": {}, "torch_pruning": {}}
    for row in rows:
        for tool in counts:
            status = row[tool]["status"]
            counts[tool][status] = counts[tool].get(status, 0) + 1
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="scenario:NAME or torchvision:NAME (default: all)")
    parser.add_argument("--out", type=Path, default=RESULTS / "generality.json")
    parser.add_argument("--limit", type=float, default=240.0, help="seconds a model may take, both tools together")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: check one model, print JSON lines
    args = parser.parse_args(argv)
    torch.set_num_threads(os.cpu_count() or 1)
    every = cases()
    unknown = [n for n in args.names + ([args.one] if args.one else []) if n not in every]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(every)}")
    if args.one:
        run_one(args.one)
        return 0
    rows = []
    for name in args.names or list(every):
        row = in_subprocess(name, args.limit)
        print(f"{name}: pareco-fx {row['pareco_fx']['status']}, Torch-Pruning {row['torch_pruning']['status']}",
              flush=True)
        rows.append(row)
    import torch_pruning

    data = {"machine": {"python": platform.python_version(), "torch": torch.__version__,
                        "torch_pruning": torch_pruning.__version__},
            "summary": summary(rows), "rows": rows}
    atomic_write(args.out, lambda tmp: tmp.write_text(json.dumps(data, indent=1) + "\n"))
    write_markdown(rows, args.out.with_suffix(".md"))
    print(json.dumps(data["summary"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``pareco-fx export RUN --budget B --out sub.pt``: the best sub-network under a cost budget.

The slimmable model is rebuilt from the run's ``source.json`` and checkpoint (``weights_only``
load), set to the chosen widths, BatchNorm-recalibrated on training batches, extracted, and the
extracted model is checked against the slimmable one (eval mode) before anything is written.
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
import sys
import math
from pathlib import Path
from typing import Any

import click

from pareco_fx.cli.context import AppContext, debug_option, emit_json, pass_app
from pareco_fx.errors import CheckpointError, ParecoError, UserInputError

__all__ = ["export_cmd", "widths_path"]

TOLERANCE = 1e-4  # relative to the output's magnitude, as DESIGN.md's invariant checks use


def widths_path(out: Path) -> Path:
    """``sub.pt`` -> ``sub.widths.json``."""
    return out.with_name(out.stem + ".widths.json")


@click.command("export")
@click.argument("run", metavar="RUN")
@click.option("--budget", type=float, required=True, help="Largest cost ratio (cost / full-width cost).")
@click.option("--out", "out_path", required=True, metavar="PT",
              help="Where to write the extracted torch.fx.GraphModule (torch.save).")
@click.option("--onnx", "onnx_path", metavar="ONNX", help="Also export to ONNX (needs the onnx package).")
@click.option("--json", "as_json", is_flag=True, help="Print the exported point as one JSON object.")
@debug_option
@pass_app
def export_cmd(app: AppContext, run: str, budget: float, out_path: str, onnx_path: str | None,
               as_json: bool) -> None:
    """Extract the sub-network of RUN with the best validation accuracy whose cost ratio is at
    most --budget."""
    import torch

    import pareco_fx
    from pareco_fx import modelfile
    from pareco_fx.cli.slim import load_data, read_source
    from pareco_fx.optim import load_weights, recalibrate_bn
    from pareco_fx.report import atomic_write, best_under, load_front

    run_dir, out = Path(run), Path(out_path)
    front = load_front(run_dir)
    if not math.isfinite(budget):
        raise UserInputError(f"--budget must be a number, got {budget}")
    point = best_under(front.points, budget)
    if point is None:
        cheapest = min(p.cost_ratio for p in front.points) if front.points else float("nan")
        raise UserInputError(
            f"no sub-network of {front.run} costs at most {budget:g} of the full {front.cost}; the cheapest "
            f"has cost ratio {cheapest:.4f}: give --budget {math.ceil(cheapest * 1000) / 1000:.3f} or more")
    src = read_source(run_dir)

    with app.err.status(f"rebuilding {front.model} at cost ratio {point.cost_ratio:.3f} ..."):
        loaded = modelfile.load(src["model"], src["input_shape"])
        slim = pareco_fx.make_slimmable(loaded.model, loaded.example_inputs, min_width=src["min_width"],
                                        divisor=src["divisor"])
        config = load_weights(slim, run_dir)
        slim.set_widths(list(point.widths))
        channels = slim.channels()
        if tuple(channels[g.id] for g in slim.groups) != tuple(point.channels):
            raise CheckpointError(f"the rebuilt model's channels {tuple(channels.values())} differ from "
                                  f"the run's {point.channels}: {src['model']} changed since training")
        train_set = load_data(loaded, src["data"], config.seed)[0]
        batches = _recal_batches(train_set, config)
        recalibrate_bn(slim, batches)
        slim.eval()
        sub = slim.extract(list(point.widths))
        sub.eval()
        x = batches[0][0]
        with torch.no_grad():
            error, scale = _max_error(sub(x), slim(x))
        if error > TOLERANCE * scale:
            raise ParecoError(f"the extracted sub-network differs from the slimmable model (max error {error:.3g} "
                              f"at output scale {scale:.3g}); nothing written. Please report this model.")

    atomic_write(out, lambda tmp: torch.save(sub, tmp))
    record = {"run": str(run_dir), "model": front.model, "source": src["model"], "cost_model": front.cost,
              "budget": budget, "check_max_error": error, "file": str(out), **point.to_dict(),
              "groups": [{"id": g.id, "channels": g.channels, "slimmable": g.slimmable} for g in slim.groups]}
    atomic_write(widths_path(out), lambda tmp: tmp.write_text(json.dumps(record, indent=2) + "\n"))
    if onnx_path:
        record["onnx"] = _export_onnx(app, sub, x[:1], Path(onnx_path))
    if as_json:
        emit_json(record)
        return
    acc = point.test_acc if point.test_acc is not None else point.val_acc
    app.out.print(f"exported {front.model} at {point.cost_ratio:.3f} of the full {front.cost} "
                  f"({100 * acc:.2f}% {'test' if point.test_acc is not None else 'validation'} accuracy) "
                  f"to {out} and {widths_path(out)}; load it with torch.load({str(out)!r}, weights_only=False)")


def _recal_batches(data: Any, config: Any) -> list[Any]:
    """The first ``config.recal_batches`` batches of a seeded shuffle of the training set."""
    import torch
    from torch.utils.data import DataLoader

    loader = DataLoader(data, batch_size=config.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(config.seed))
    batches = []
    for batch in loader:
        batches.append(batch)
        if len(batches) == config.recal_batches:
            break
    return batches


def _max_error(a: Any, b: Any) -> tuple[float, float]:
    """Max absolute difference and magnitude over the tensors of two (nested) outputs."""
    from torch.utils._pytree import tree_leaves

    error, scale = 0.0, 1.0
    for u, v in zip(tree_leaves(a), tree_leaves(b), strict=True):
        if u.shape != v.shape:
            return math.inf, 1.0
        error = max(error, float((u - v).abs().max()))
        scale = max(scale, float(v.abs().max()))
    return error, scale


def _export_onnx(app: AppContext, sub: Any, x: Any, path: Path) -> str | None:
    """ONNX with the weights inside the one file, for inputs of ``x``'s shape."""
    import torch

    from pareco_fx.report import atomic_write

    if importlib.util.find_spec("onnx") is None or importlib.util.find_spec("onnxscript") is None:
        app.err.print("skipping --onnx: the onnx and onnxscript packages are not installed "
                      "(pip install onnx onnxscript)", style="yellow")
        return None

    def write(tmp: Path) -> None:
        import onnx

        with contextlib.redirect_stdout(sys.stderr):  # the exporter chats on stdout; keep --json clean
            torch.onnx.export(sub, (x,), str(tmp), external_data=False)
        onnx.checker.check_model(str(tmp))

    try:
        atomic_write(path, write)
    except Exception as e:  # the exporter raises many types; any of them means "not exportable"
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise UserInputError(f"ONNX export failed ({type(e).__name__}: {first}); {path} not written "
                             "(the .pt export is done)") from e
    app.err.print(f"ONNX written to {path} (input shape {tuple(x.shape)})")
    return str(path)

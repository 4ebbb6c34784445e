"""``pareco-fx export RUN --budget B --out sub.pt``: the best sub-network under a cost budget."""
from __future__ import annotations

import click

from pareco_fx.cli.context import AppContext, debug_option, pass_app

__all__ = ["export_cmd"]


@click.command("export")
@click.argument("run", metavar="RUN")
@click.option("--budget", type=float, required=True, help="Largest cost ratio (cost / full-width cost).")
@click.option("--out", "out_path", required=True, metavar="PT", help="Where to write the extracted GraphModule.")
@click.option("--onnx", "onnx_path", metavar="ONNX", help="Also export to ONNX (needs the onnx package).")
@debug_option
@pass_app
def export_cmd(app: AppContext, run: str, budget: float, out_path: str, onnx_path: str | None) -> None:
    """Extract the best sub-network of RUN whose cost ratio is at most --budget."""
    raise NotImplementedError

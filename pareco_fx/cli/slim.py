"""``pareco-fx slim MODEL``: train a slimmable network with PareCO and report its Pareto front."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from pareco_fx.cli.context import AppContext, check_names, debug_option, emit_json, pass_app

__all__ = ["slim_cmd", "METHODS", "load_data"]

METHODS = ("pareco", "slim", "twostage")


def load_data(loaded: Any, source: str, seed: int) -> tuple[Any, Any, Any]:
    """(train, val, test) of a run: the model file's ``datasets()`` when ``source`` is ``"model"``,
    else Fashion-MNIST from ``source`` (``embedded``, ``fashion-mnist`` or a directory)."""
    if source == "model":
        return loaded.load_datasets()
    from pareco_fx.data import load_fashion_mnist

    return load_fashion_mnist(source, seed=seed)


@click.command("slim")
@click.argument("model_spec", metavar="MODEL")
@click.option("--cost", help="Cost model to trade accuracy against (flops, memory, params or a registered one).")
@click.option("--method", help="Sampler: pareco (default), slim (uniform widths) or twostage.")
@click.option("--epochs", type=click.IntRange(min=1), help="Training epochs.")
@click.option("--batch-size", type=click.IntRange(min=1), help="Training batch size.")
@click.option("--lr", type=click.FloatRange(0.0, min_open=True), help="Learning rate (for batch size 128).")
@click.option("--min-width", type=click.FloatRange(0.0, 1.0, min_open=True), default=0.42, show_default=True,
              help="Smallest width of a channel group.")
@click.option("--divisor", type=click.IntRange(min=1), default=1, show_default=True,
              help="Channel counts are multiples of this.")
@click.option("--data", help="embedded, fashion-mnist or a directory of Fashion-MNIST IDX files "
                             "[default: the model file's datasets(), else embedded].")
@click.option("--input-shape", metavar="SHAPE", help="Shape of a random example input, e.g. 1,3,64,64.")
@click.option("--out", "out_dir", metavar="DIR", help="Run directory [default: runs/<model>-<method>-<cost>].")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of weights, data order and sampler.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@click.option("--force", is_flag=True, help="Overwrite an existing run in --out.")
@click.option("--json", "as_json", is_flag=True, help="Print the front as one JSON object.")
@debug_option
@pass_app
def slim_cmd(app: AppContext, model_spec: str, cost: str | None, method: str | None, epochs: int | None,
             batch_size: int | None, lr: float | None, min_width: float, divisor: int, data: str | None,
             input_shape: str | None, out_dir: str | None, seed: int, resume: bool, force: bool,
             as_json: bool) -> None:
    """Train MODEL's channel widths and weights with PareCO; write the front to the run directory."""
    raise NotImplementedError

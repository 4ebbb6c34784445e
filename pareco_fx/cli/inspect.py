"""``pareco-fx inspect MODEL``: the channel groups of a model, and optionally their cost shares."""
from __future__ import annotations

import dataclasses

import click

from pareco_fx.cli.context import AppContext, check_names, debug_option, emit_json, pass_app

__all__ = ["inspect_cmd"]


@click.command("inspect")
@click.argument("model_spec", metavar="MODEL")
@click.option("--input-shape", metavar="SHAPE",
              help="Shape of a random example input, e.g. 1,3,64,64 (overrides example_inputs()).")
@click.option("--cost", "costs", metavar="NAMES",
              help="Comma-separated cost models (e.g. flops,memory,params): totals and each group's share.")
@click.option("--min-width", type=click.FloatRange(0.0, 1.0, min_open=True), default=0.42, show_default=True,
              help="Smallest width, for the cost shares.")
@click.option("--divisor", type=click.IntRange(min=1), default=1, show_default=True,
              help="Channel counts are multiples of this.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
@debug_option
@pass_app
def inspect_cmd(app: AppContext, model_spec: str, input_shape: str | None, costs: str | None,
                min_width: float, divisor: int, as_json: bool) -> None:
    """Show the channel groups of MODEL: channels, slimmable or why frozen, member layers."""
    import pareco_fx
    from pareco_fx import cost_models, modelfile
    from pareco_fx.report import cost_summary

    names = [n.strip() for n in costs.split(",") if n.strip()] if costs else []
    check_names(names, sorted(cost_models.available()), "cost model")
    loaded = modelfile.load(model_spec, input_shape)
    with app.err.status(f"analysing {loaded.name} ..."):
        slim = pareco_fx.make_slimmable(loaded.model, loaded.example_inputs, min_width=min_width, divisor=divisor)
        report = pareco_fx.analyze(loaded.model, loaded.example_inputs, name=loaded.name, slim=slim)
        if names:
            report = dataclasses.replace(report, costs=cost_summary(slim, names))
    if as_json:
        emit_json(report.to_json())
    else:
        app.out.print(report)

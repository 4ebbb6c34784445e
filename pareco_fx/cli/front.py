"""``pareco-fx front RUN``: re-print a run's front, compare runs, best accuracy per budget."""
from __future__ import annotations

import click

from pareco_fx.cli.context import AppContext, debug_option, emit_json, parse_floats, pass_app

__all__ = ["front_cmd"]


@click.command("front")
@click.argument("run", metavar="RUN")
@click.option("--compare", multiple=True, metavar="RUN", help="Another run to overlay (repeatable).")
@click.option("--budgets", default="0.25,0.5,0.75,1.0", show_default=True,
              help="Cost ratios under which to report the best sub-network.")
@click.option("--plot", "plot_path", metavar="PNG", help="Write the (overlaid) front plot here.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
@debug_option
@pass_app
def front_cmd(app: AppContext, run: str, compare: tuple[str, ...], budgets: str, plot_path: str | None,
              as_json: bool) -> None:
    """Re-print the Pareto front of RUN (a `pareco-fx slim --out` directory)."""
    from pareco_fx.report import budget_json, budget_table, front_table, load_front, plot_front

    ratios = parse_floats(budgets, "--budgets")
    fronts = [load_front(r) for r in (run, *compare)]
    if len({f.run for f in fronts}) < len(fronts):
        raise click.UsageError("the same run is given twice")
    if plot_path:
        plot_front(fronts, plot_path)
    if as_json:
        emit_json({"runs": [f.to_json() for f in fronts], "budgets": budget_json(fronts, ratios),
                   "plot": plot_path})
        return
    for f in fronts:
        app.out.print(front_table(f))
    app.out.print(budget_table(fronts, ratios))
    if plot_path:
        app.err.print(f"plot written to {plot_path}")

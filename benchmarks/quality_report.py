"""Aggregate ``benchmarks/results/quality.json`` and render its README tables and plots.

usage (from the checkout): .venv/bin/python benchmarks/quality_report.py [--json PATH ...] [--doc FILE.md]
       [--section NAME [--variant PATH ...]]

Per (model, base-width multiplier, cost, method, epochs, train size) the runs of all seeds are
summarised: at each budget the sub-network with the best *validation* accuracy whose cost ratio is
within the budget, reported by its *test* accuracy (mean and sample standard deviation over seeds),
and the hypervolume of the (test error, cost ratio) front against the reference point (1, 1). PareCO is
compared with each baseline per budget; a difference below two standard deviations (the larger
of the two methods') is a tie. The allocation check says where per-group widths pay: how much of
PareCO's front is uniform, and how its non-uniform points compare with the same seed's slim front
at the same cost. The README section between the ``quality:begin`` and
``quality:end`` markers is regenerated; the plots go next to the JSON. ``--variant`` takes a
file of ``pareco`` runs of another configuration (say ``--search-pool box``) and tabulates them in
place of the main file's ``pareco`` runs, against the same baselines, for the settings the variant
covers, between the ``quality-NAME:begin`` and ``quality-NAME:end`` markers; ``--section`` alone
tabulates the runs of ``--json`` there (a separate sweep, say a longer one). A section lives in
the README or in ``benchmarks/QUALITY.md`` (the runs beyond the matrix); the file holding its
markers is found, ``--doc`` names another. Several ``--json`` (or ``--variant``) files are read as
one: a run (model, cost, method, seed, epochs, train size) held by more than one is taken from the
first that holds it, so a configuration's own files, listed first, shadow the runs of a file listed
after them for its missing cells.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pareco_fx.report import atomic_write

__all__ = [
    "BUDGETS",
    "METHODS",
    "Summary",
    "aggregate",
    "allocation_check",
    "best_under_budget",
    "compare",
    "find_doc",
    "hypervolume",
    "image_link",
    "load_runs",
    "render_tables",
    "run_key",
    "summarise",
    "update_readme",
]

BUDGETS = (0.25, 0.35, 0.5, 0.75, 1.0)
METHODS = ("pareco", "slim", "twostage")
BASELINES = ("slim", "twostage")
BEGIN, END = "<!-- quality:begin -->", "<!-- quality:end -->"
_EPS = 1e-9  # cost ratios are floats; a point exactly at the budget counts as within it
ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DOCS = (ROOT / "README.md", ROOT / "benchmarks" / "QUALITY.md")


@dataclass(frozen=True)
class Summary:
    """Mean and spread of one figure over seeds.

    Attributes:
        mean: mean over the seeds that have a value.
        std: sample standard deviation (``None`` with fewer than two values).
        n: number of seeds with a value.
    """

    mean: float | None
    std: float | None
    n: int

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std, "n": self.n}


def summarise(values: Iterable[float | None]) -> Summary:
    """Mean and sample standard deviation of the values that are not ``None``."""
    present = [float(v) for v in values if v is not None]
    if not present:
        return Summary(None, None, 0)
    std = statistics.stdev(present) if len(present) > 1 else None
    return Summary(statistics.fmean(present), std, len(present))


def best_under_budget(front: Sequence[Mapping[str, Any]], budget: float) -> float | None:
    """Test accuracy of the point with the best validation accuracy among those within ``budget``.

    Selection is on validation data so that no reported number is picked on the test set; a
    validation tie goes to the cheaper point. ``None`` when no point fits the budget.
    """
    fitting = [p for p in front if p["cost_ratio"] <= budget + _EPS]
    if not fitting:
        return None
    best = max(fitting, key=lambda p: (p["val_acc"], -p["cost_ratio"]))
    return float(best["test_acc"])


def hypervolume(front: Sequence[Mapping[str, Any]], reference: tuple[float, float] = (1.0, 1.0)) -> float:
    """Area dominated by the (test error, cost ratio) points, both minimised, up to ``reference``.

    Dominated points and points beyond the reference contribute nothing.
    """
    ref_err, ref_cost = reference
    points = sorted((p["cost_ratio"], 1.0 - p["test_acc"]) for p in front)
    points = [(c, e) for c, e in points if c < ref_cost and e < ref_err]
    area, best_err = 0.0, ref_err
    for i, (cost, err) in enumerate(points):
        best_err = min(best_err, err)
        next_cost = points[i + 1][0] if i + 1 < len(points) else ref_cost
        area += (next_cost - cost) * (ref_err - best_err)
    return area


def compare(ours: Summary, theirs: Summary) -> str:
    """``"win"``, ``"loss"`` or ``"tie"`` of ``ours`` against ``theirs`` (higher is better).

    A difference below two standard deviations (the larger of the two) is a tie. ``"n/a"`` when
    either side lacks a value or has fewer than two seeds (no spread, so no verdict).
    """
    if ours.mean is None or theirs.mean is None or ours.std is None or theirs.std is None:
        return "n/a"
    diff = ours.mean - theirs.mean
    if abs(diff) < 2.0 * max(ours.std, theirs.std):
        return "tie"
    return "win" if diff > 0 else "loss"


def allocation_check(pareco: Sequence[Mapping[str, Any]], slim: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Where PareCO's per-group widths pay, from runs of one setting.

    ``uniform_share``: the share of PareCO's front points whose slimmed groups share one width
    (its uniform prior points). ``gain``: over PareCO's other points, test accuracy minus that of
    the same seed's slim front at the same cost (its best-validation point within that cost);
    ``better``: how many of them beat it, out of ``n``.
    """
    slim_by_seed = {r["seed"]: r["front"] for r in slim}
    points = [p for r in pareco for p in r["front"]]
    # Frozen groups read 1.0 everywhere, the smallest networks included; they say nothing.
    every = points + [p for r in slim for p in r["front"]]
    slimmed = [g for g in range(len(points[0]["widths"]) if points else 0)
               if any(p["widths"][g] < 1.0 - _EPS for p in every)]

    def is_uniform(point: Mapping[str, Any]) -> bool:
        return len({point["widths"][g] for g in slimmed}) <= 1

    gains = []
    for run in pareco:
        for point in run["front"]:
            if is_uniform(point) or run["seed"] not in slim_by_seed:
                continue
            theirs = best_under_budget(slim_by_seed[run["seed"]], point["cost_ratio"])
            if theirs is not None:
                gains.append(float(point["test_acc"]) - theirs)
    return {"uniform_share": sum(map(is_uniform, points)) / len(points) if points else None,
            "gain": summarise(gains).to_dict(), "better": sum(g > 0 for g in gains), "n": len(gains)}


def weights_check(pareco: Sequence[Mapping[str, Any]], slim: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """PareCO's shared weights against slim's on the same sub-networks: the uniform widths every
    run evaluates (``uniform`` in runs that record it). ``gap``: per seed run by both methods, the
    mean over those widths of PareCO's test accuracy minus slim's; summarised over the seeds.
    """
    slim_by_seed = {r["seed"]: r["uniform"] for r in slim if r.get("uniform")}
    gaps, counts = [], []
    for run in pareco:
        theirs = {tuple(p["widths"]): float(p["test_acc"]) for p in slim_by_seed.get(run["seed"], ())}
        diffs = [float(p["test_acc"]) - theirs[tuple(p["widths"])]
                 for p in run.get("uniform", ()) if tuple(p["widths"]) in theirs]
        if diffs:
            gaps.append(statistics.fmean(diffs))
            counts.append(len(diffs))
    return {"gap": summarise(gaps).to_dict(), "widths": sorted(set(counts))}


def run_key(run: Mapping[str, Any]) -> tuple[Any, ...]:
    """What identifies a run within a results file: one per (model, cost, method, seed, epochs, size)."""
    return run["model"], run["cost"], run["method"], run["seed"], run["epochs"], run["train_size"]


def with_width_mult(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The runs of a results file, each with the base-width multiplier its ``settings`` record
    (1.0 where none is recorded): ResNet at 12/24/48 is another network than at 16/32/64."""
    settings = data.get("settings", {})
    return [{**run, "width_mult": float(settings.get("/".join(map(str, run_key(run))), {}).get("width_mult", 1.0))}
            for run in data["runs"]]


def load_runs(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """The runs of the results files ``paths``, each naming its file in ``source``; a run
    (``run_key``) held by several comes from the first of them."""
    runs: dict[tuple[Any, ...], dict[str, Any]] = {}
    for path in paths:
        for run in with_width_mult(json.loads(path.read_text())):
            runs.setdefault(run_key(run), {**run, "source": path.name})
    return list(runs.values())


def provenance(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Per file, model, cost and method, the seeds taken from it: what a mix of files tabulates."""
    seeds: dict[tuple[str, str, str, str], list[int]] = {}
    for run in runs:
        seeds.setdefault((run["source"], run["model"], run["cost"], run["method"]), []).append(run["seed"])
    return [f"{source}: {model} {cost} {method} seeds {sorted(taken)}"
            for (source, model, cost, method), taken in sorted(seeds.items())]


def _setting(run: Mapping[str, Any]) -> tuple[str, float, str, int, int]:
    return run["model"], float(run.get("width_mult", 1.0)), run["cost"], int(run["epochs"]), int(run["train_size"])


def aggregate(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One entry per (model, base-width multiplier, cost, epochs, train size): per method the budget
    accuracies and the hypervolume over seeds, and PareCO's verdict against each baseline per budget
    and on hypervolume.

    Runs of different networks, epochs or training-set sizes are never mixed.
    """
    settings: dict[tuple[str, float, str, int, int], dict[str, list[Mapping[str, Any]]]] = {}
    for run in runs:
        settings.setdefault(_setting(run), {}).setdefault(run["method"], []).append(run)
    entries = []
    for (model, width_mult, cost, epochs, train_size), by_method in sorted(settings.items()):
        methods: dict[str, dict[str, Any]] = {}
        summaries: dict[str, dict[str, Summary]] = {}
        for method in sorted(by_method, key=lambda m: (METHODS + (m,)).index(m)):
            cell = sorted(by_method[method], key=lambda r: r["seed"])
            stats = {f"{b:g}": summarise(best_under_budget(r["front"], b) for r in cell) for b in BUDGETS}
            stats["hypervolume"] = summarise(hypervolume(r["front"]) for r in cell)
            summaries[method] = stats
            devices = sorted({r.get("device", "unrecorded") for r in cell})
            methods[method] = {
                "seeds": [r["seed"] for r in cell],
                "wall_s": summarise(r["wall_s"] for r in cell).to_dict(),
                "wall_s_by_device": {d: summarise(r["wall_s"] for r in cell if r.get("device", "unrecorded") == d)
                                     .to_dict() for d in devices},
                "budgets": {key: s.to_dict() for key, s in stats.items() if key != "hypervolume"},
                "hypervolume": stats["hypervolume"].to_dict(),
            }
        verdicts = {}
        if "pareco" in summaries:
            for base in BASELINES:
                if base in summaries:
                    verdicts[base] = {key: compare(summaries["pareco"][key], s) for key, s in summaries[base].items()}
        entry = {"model": model, "width_mult": width_mult, "cost": cost, "epochs": epochs,
                 "train_size": train_size, "methods": methods, "pareco_vs": verdicts}
        if "pareco" in by_method and "slim" in by_method:
            entry["allocation"] = allocation_check(by_method["pareco"], by_method["slim"])
            entry["weights"] = weights_check(by_method["pareco"], by_method["slim"])
        entries.append(entry)
    return entries


# -- rendering ---------------------------------------------------------------------------------
def _cell(stat: Mapping[str, Any], scale: float = 100.0, digits: int = 1) -> str:
    if stat["mean"] is None:
        return "—"
    text = f"{stat['mean'] * scale:.{digits}f}"
    if stat["std"] is not None:
        text += f" ± {stat['std'] * scale:.{digits}f}"
    return text


def render_tables(entries: Sequence[Mapping[str, Any]]) -> str:
    """Markdown: per cost, per (model, setting) a table of test accuracy (%) at each budget."""
    lines: list[str] = []
    for cost in sorted({e["cost"] for e in entries}):
        lines.append(f"#### Cost: {cost}")
        lines.append("")
        for entry in (e for e in entries if e["cost"] == cost):
            methods = entry["methods"]
            seeds = ", ".join(f"{m} {len(methods[m]['seeds'])}" for m in methods)
            epochs = f"{entry['epochs']} epoch" + ("s" if entry["epochs"] != 1 else "")
            lines.append(f"**{entry['model']}**{_network(entry['width_mult'])}, {epochs}, "
                         f"{entry['train_size']} training images (seeds: {seeds})")
            lines.append("")
            bases = [b for b in BASELINES if b in entry["pareco_vs"]]
            header = ["budget", *methods, *(f"PareCO vs {b}" for b in bases)]
            lines.append("| " + " | ".join(header) + " |")
            lines.append("|" + "---|" * len(header))
            keys = [f"{b:g}" for b in BUDGETS]
            for key in keys:
                row = [f"≤ {key}", *(_cell(methods[m]["budgets"][key]) for m in methods),
                       *(entry["pareco_vs"][b][key] for b in bases)]
                lines.append("| " + " | ".join(row) + " |")
            row = ["hypervolume", *(_cell(methods[m]["hypervolume"], 1.0, 4) for m in methods),
                   *(entry["pareco_vs"][b]["hypervolume"] for b in bases)]
            lines.append("| " + " | ".join(row) + " |")
            lines.append("")
            lines.append(f"Wall time per run: {_walls(methods)}.")
            if "allocation" in entry:
                lines.append(_allocation_line(entry["allocation"]))
            if entry.get("weights", {}).get("gap", {}).get("n"):
                lines.append(_weights_line(entry["weights"]))
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _network(width_mult: float) -> str:
    return "" if width_mult == 1.0 else f" at base widths × {width_mult:g}"


def _walls(methods: Mapping[str, Mapping[str, Any]]) -> str:
    devices = sorted({d for m in methods.values() for d in m["wall_s_by_device"]})
    return "; ".join(
        f"{device}: " + ", ".join(f"{m} {_cell(methods[m]['wall_s_by_device'][device], 1.0, 0)} s"
                                  for m in methods if device in methods[m]["wall_s_by_device"])
        for device in devices)


def _allocation_line(check: Mapping[str, Any]) -> str:
    if check["uniform_share"] is None:
        return ""
    text = f"Allocation check: {100 * check['uniform_share']:.0f} % of PareCO's front points are uniform"
    if check["n"]:
        gain = check["gain"]
        spread = f" ± {100 * gain['std']:.1f}" if gain["std"] is not None else ""
        text += (f"; its {check['n']} non-uniform points against the same seed's slim front at the same "
                 f"cost: {100 * gain['mean']:+.1f}{spread} points, better in {check['better']} of {check['n']}")
    return text + "."


def _weights_line(check: Mapping[str, Any]) -> str:
    gap = check["gap"]
    spread = f" ± {100 * gap['std']:.2f}" if gap["std"] is not None else ""  # gaps of tenths of a point
    seeds = f"{gap['n']} seed" + ("s" if gap["n"] != 1 else "")
    fewest, most = check["widths"][0], check["widths"][-1]
    widths = str(fewest) if fewest == most else f"{fewest}–{most}"
    return (f"Weights check: on the same {widths} uniform widths, PareCO's weights score "
            f"{100 * gap['mean']:+.2f}{spread} points against slim's ({seeds} run by both).")


def _series(runs: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Runs per plot panel: one per setting (model, width multiplier, cost, epochs, training-set size)."""
    panels: dict[tuple[str, float, str, int, int], list[Mapping[str, Any]]] = {}
    for run in runs:
        panels.setdefault(_setting(run), []).append(run)
    return {f"{model}{_network(width)} / {cost}\n{epochs} ep, {size} images": cell
            for (model, width, cost, epochs, size), cell in sorted(panels.items())}


def plot_fronts(runs: Sequence[Mapping[str, Any]], path: Path) -> None:
    """Test accuracy against cost ratio, one panel per (model, cost), one line per run (seed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = _series(runs)
    cols = min(2, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.0 * cols, 4.2 * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    colours = {"pareco": "tab:red", "slim": "tab:blue", "twostage": "tab:green"}
    for ax, (title, cell) in zip(axes.flat, panels.items()):
        labelled: set[str] = set()
        for run in sorted(cell, key=lambda r: (r["method"], r["seed"])):
            pts = sorted(run["front"], key=lambda p: p["cost_ratio"])
            label = None if run["method"] in labelled else run["method"]
            labelled.add(run["method"])
            ax.step([p["cost_ratio"] for p in pts], [100 * p["test_acc"] for p in pts], where="post",
                    color=colours.get(run["method"]), alpha=0.7, lw=1.0, label=label, marker=".", ms=4)
        for budget in BUDGETS[:-1]:
            ax.axvline(budget, color="grey", lw=0.5, ls=":")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(f"{cell[0]['cost']} ratio")
        ax.set_ylabel("test accuracy (%)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110))
    plt.close(fig)


def plot_widths(runs: Sequence[Mapping[str, Any]], path: Path) -> None:
    """Per-group widths PareCO chose at each budget (seed with the lowest number) against the
    uniform multiplier of the slim run's point at that budget."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = {key: cell for key, cell in _series(runs).items()
              if any(r["method"] == "pareco" for r in cell)}
    if not panels:
        return
    budgets = BUDGETS[:-1]
    fig, axes = plt.subplots(len(panels), len(budgets), figsize=(3.2 * len(budgets), 2.6 * len(panels)),
                             squeeze=False)
    for row, (title, cell) in zip(axes, panels.items()):
        pareco = min((r for r in cell if r["method"] == "pareco"), key=lambda r: r["seed"])
        slim = min((r for r in cell if r["method"] == "slim"), key=lambda r: r["seed"], default=None)
        for ax, budget in zip(row, budgets):
            ax.set_title(f"{title}, ≤ {budget:g}", fontsize=7)  # two lines: one is too wide for a panel
            ax.set_ylim(0, 1.05)
            ax.set_xlabel("group", fontsize=7)
            chosen = _chosen(pareco["front"], budget)
            if chosen is None:
                ax.text(0.5, 0.5, "unreachable", ha="center", transform=ax.transAxes)
                continue
            ax.bar(range(len(chosen["widths"])), chosen["widths"], color="tab:red", alpha=0.7,
                   label=f"PareCO ({chosen['cost_ratio']:.2f})")
            uniform = _chosen(slim["front"], budget) if slim is not None else None
            if uniform is not None:
                ax.axhline(min(uniform["widths"]), color="tab:blue",
                           label=f"uniform ({uniform['cost_ratio']:.2f})")
            ax.legend(fontsize=6)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110))
    plt.close(fig)


def _chosen(front: Sequence[Mapping[str, Any]], budget: float) -> Mapping[str, Any] | None:
    fitting = [p for p in front if p["cost_ratio"] <= budget + _EPS]
    return max(fitting, key=lambda p: (p["val_acc"], -p["cost_ratio"])) if fitting else None


def with_variant(runs: Sequence[Mapping[str, Any]], variant: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The baselines of ``runs`` for the settings ``variant`` covers, with ``variant``'s ``pareco``
    runs in place of their own."""
    covered = {_setting(r) for r in variant}
    return [r for r in runs if _setting(r) in covered and r["method"] != "pareco"] + [
        r for r in variant if r["method"] == "pareco"]


def markers(section: str | None) -> tuple[str, str]:
    """The README markers of the main tables (``None``) or of a named variant section."""
    if section is None:
        return BEGIN, END
    return f"<!-- quality-{section}:begin -->", f"<!-- quality-{section}:end -->"


def update_readme(readme: str, body: str, section: str | None = None) -> str:
    """``readme`` with the text between the quality markers (of ``section``) replaced by ``body``.

    Raises:
        ValueError: the markers are missing (add them to the README's quality section).
    """
    begin, end_marker = markers(section)
    start, end = readme.find(begin), readme.find(end_marker)
    if start < 0 or end < start:
        raise ValueError(f"README lacks the markers {begin} ... {end_marker}; add them to the quality section")
    return readme[: start + len(begin)] + "\n" + body + readme[end:]


def image_link(png: Path, doc: Path) -> str:
    """The link to ``png`` from ``doc``: Markdown resolves it against the document's own folder."""
    return Path(os.path.relpath(png.resolve(), doc.resolve().parent)).as_posix()


def find_doc(section: str | None, docs: Sequence[Path] = DOCS) -> Path:
    """The first of ``docs`` that holds the begin marker of ``section``.

    Raises:
        ValueError: no document has it (add the markers where the section's tables belong).
    """
    begin, end_marker = markers(section)
    for doc in docs:
        if doc.exists() and begin in doc.read_text():
            return doc
    raise ValueError(f"none of {', '.join(str(d) for d in docs)} has the marker {begin}; add {begin} ... "
                     f"{end_marker} where the tables belong, or name the file with --doc")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, nargs="+", default=[RESULTS / "quality.json"],
                        help="results files; a run held by several comes from the first")
    parser.add_argument("--doc", type=Path, help="Markdown file holding the section's markers; default: "
                        "README.md or benchmarks/QUALITY.md, whichever has them")
    parser.add_argument("--variant", type=Path, nargs="+", help="pareco runs of another configuration")
    parser.add_argument("--section", help="section to regenerate (its marker name); default: the main "
                        "tables. With --json alone, a section of that file's own runs")
    args = parser.parse_args(argv)
    if args.variant is not None and args.section is None:
        parser.error("--variant needs --section (the section its tables go to)")
    try:
        doc = args.doc if args.doc is not None else find_doc(args.section)
        text = doc.read_text()
        update_readme(text, "", args.section)  # the markers are there, before any plotting
    except (OSError, ValueError) as exc:
        parser.error(str(exc))
    runs = load_runs(args.json)
    stem = "quality" if args.section is None else f"quality_{args.section}"
    if args.variant is not None:
        runs = with_variant(runs, load_runs(args.variant))
    fronts, widths = RESULTS / f"{stem}_fronts.png", RESULTS / f"{stem}_widths.png"
    plot_fronts(runs, fronts)
    plot_widths(runs, widths)
    body = render_tables(aggregate(runs)) + (f"\n![fronts]({image_link(fronts, doc)})\n\n"
                                             f"![widths PareCO chose against uniform]({image_link(widths, doc)})\n")
    text = update_readme(text, body, args.section)
    atomic_write(doc, lambda tmp: tmp.write_text(text))
    print(f"{doc.name}: {stem} tables regenerated from {len(runs)} runs")
    if len(args.json) + len(args.variant or ()) > 1:
        print("\n".join(provenance(runs)))


if __name__ == "__main__":
    main()

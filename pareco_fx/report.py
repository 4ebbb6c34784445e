"""Results as rich tables, JSON and plots: channel reports, cost shares and Pareto fronts.

Plots use matplotlib's object API on an Agg canvas (no pyplot, no global backend change) and are
written atomically: to a temporary file in the target directory, then ``os.replace``.
"""
from __future__ import annotations

import json
import math
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import torch
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from pareco_fx.errors import CheckpointError, ParecoError
from pareco_fx.ir import ChannelGroup

if TYPE_CHECKING:
    from pareco_fx.optim.front import FrontPoint

__all__ = [
    "ChannelReport",
    "RunFront",
    "summarize",
    "cost_summary",
    "load_front",
    "best_under",
    "front_table",
    "budget_table",
    "budget_json",
    "point_json",
    "plot_front",
    "plot_widths",
    "atomic_write",
    "COST_UNITS",
]

# Units of the built-in cost models (DESIGN.md, "Cost models"); user models print unit-less.
COST_UNITS = {"flops": "MACs", "memory": "elements", "params": "params"}


def summarize(groups: Sequence[ChannelGroup], slimmable_share: float) -> dict:
    """The summary dict of a :class:`ChannelReport`.

    Args:
        groups: the channel groups.
        slimmable_share: share of the conv/linear output channels that are slimmable.
    """
    slimmable = sum(g.slimmable for g in groups)
    return {
        "groups": len(groups),
        "slimmable_groups": slimmable,
        "frozen_groups": len(groups) - slimmable,
        "channels": sum(g.channels for g in groups),
        "slimmable_share": float(slimmable_share),
    }


@dataclass(frozen=True)
class ChannelReport:
    """The channel groups of a model, as ``pareco_fx.analyze`` returns them.

    Attributes:
        model: model name.
        groups: the channel groups, in ``slim.groups`` order.
        summary: ``groups``, ``slimmable_groups``, ``frozen_groups``, ``channels`` and
            ``slimmable_share`` (share of conv/linear output channels that are slimmable).
        costs: optional, from :func:`cost_summary`: per cost name, totals at full and smallest
            width, each group's share and (for max-type costs such as memory) the peak node.
    """

    model: str
    groups: tuple[ChannelGroup, ...]
    summary: dict
    costs: dict | None = None

    def to_json(self) -> dict:
        """``{"model", "groups": [{"id","channels","slimmable","reason","members"}], "summary"}``
        plus ``"costs"`` when present."""
        out: dict[str, Any] = {
            "model": self.model,
            "groups": [
                {"id": g.id, "channels": g.channels, "slimmable": g.slimmable, "reason": g.reason,
                 "members": list(g.members)}
                for g in self.groups
            ],
            "summary": dict(self.summary),
        }
        if self.costs is not None:
            out["costs"] = self.costs
        return out

    def table(self) -> Table:
        """One row per group: id, channels, slimmable or the frozen reason, members, cost shares."""
        table = Table(title=f"channel groups of {self.model}", title_justify="left")
        table.add_column("id", justify="right", no_wrap=True)
        table.add_column("channels", justify="right", no_wrap=True)
        table.add_column("status (why frozen)", min_width=9)
        table.add_column("members", min_width=12)
        costs = self.costs or {}
        for name in costs:  # the share of each cost the group controls
            table.add_column(f"{name} %", justify="right", no_wrap=True)
        for g in self.groups:
            status = Text("slimmable", style="green") if g.slimmable else Text(g.reason or "frozen", style="yellow")
            channels = f"{g.channels}" if g.quantum == 1 else f"{g.channels} (step {g.quantum})"
            shares = [f"{100 * c['group_share'][g.id]:.1f}%" for c in costs.values()]
            table.add_row(str(g.id), channels, status, shorten_members(g.members), *shares)
        return table

    def summary_line(self) -> str:
        """e.g. ``12 groups: 10 slimmable, 2 frozen; 448 channels; 93.1% of conv/linear output
        channels slimmable``."""
        s = self.summary
        return (f"{s.get('groups', len(self.groups))} groups: {s.get('slimmable_groups', '?')} slimmable, "
                f"{s.get('frozen_groups', '?')} frozen; {s.get('channels', '?')} channels; "
                f"{100 * float(s.get('slimmable_share', float('nan'))):.1f}% of conv/linear output "
                "channels slimmable")

    def cost_lines(self) -> list[str]:
        """One line per cost: totals at full and smallest width, and the peak node if known."""
        lines = []
        for name, c in (self.costs or {}).items():
            unit = f" {c['unit']}" if c.get("unit") else ""
            ratio = c["smallest"] / c["full"] if c["full"] else float("nan")
            line = (f"{name}: {human(c['full'])}{unit} at full width, {human(c['smallest'])}{unit} at "
                    f"the smallest ({ratio:.2f}x)")
            peak = c.get("peak_node")
            if peak:
                line += f"; peak at node {peak['full']} (full) / {peak['smallest']} (smallest)"
            lines.append(line)
        return lines

    def __rich__(self) -> Group:
        return Group(self.table(), *(Text(line) for line in [self.summary_line(), *self.cost_lines()]))

    def __str__(self) -> str:
        console = Console(width=120, color_system=None)
        with console.capture() as capture:
            console.print(self)
        return capture.get()


def shorten_members(members: Sequence[str], keep: int = 2) -> str:
    """``a, b, c`` for up to ``keep + 1`` names, else ``a, b, … (+N)``."""
    if len(members) <= keep + 1:
        return ", ".join(members)
    return ", ".join(members[:keep]) + f", … (+{len(members) - keep})"


def human(x: float) -> str:
    """1234567 -> ``1.23 M``."""
    for factor, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(x) >= factor:
            return f"{x / factor:.2f} {suffix}"
    return f"{x:.0f}" if float(x).is_integer() else f"{x:.3g}"


def cost_summary(slim: Any, names: Iterable[str]) -> dict:
    """Totals and per-group shares of each cost on a slimmable model.

    A group's share of a cost is the cost saved when only that group goes to ``slim.min_width``
    (every other group at 1.0), relative to the full-width cost; frozen groups save nothing.

    Args:
        slim: a :class:`~pareco_fx.SlimmableModel`.
        names: cost model names.

    Returns:
        ``{name: {"unit", "full", "smallest", "group_share": [per group id], "peak_node"?}}``;
        ``peak_node`` (``{"full": node, "smallest": node}``) appears for costs whose model reports
        where its peak sits (``slim.cost_peak``), such as memory.
    """
    groups = slim.groups
    rows = [g.id for g in groups if g.slimmable]
    W = torch.ones(len(rows), len(groups), dtype=torch.float64)
    for r, gid in enumerate(rows):
        W[r, gid] = slim.min_width
    out = {}
    for name in names:
        full, smallest = float(slim.cost(name, 1.0)), float(slim.cost(name, slim.min_width))
        share = [0.0] * len(groups)
        if rows:
            for gid, c in zip(rows, slim.cost_batch(name, W).tolist()):
                share[gid] = (full - c) / full if full else 0.0
        entry: dict[str, Any] = {"unit": COST_UNITS.get(name), "full": full, "smallest": smallest,
                                 "group_share": share}
        peaks = {"full": _peak_node(slim, name, 1.0), "smallest": _peak_node(slim, name, slim.min_width)}
        if all(peaks.values()):
            entry["peak_node"] = peaks
        out[name] = entry
    return out


def _peak_node(slim: Any, name: str, w: float) -> str | None:
    """The node where a max-type cost peaks, or None when the cost model does not say."""
    cost_peak = getattr(slim, "cost_peak", None)
    if cost_peak is None:
        return None
    try:
        node = cost_peak(name, w)
    except (ParecoError, NotImplementedError):
        return None
    if isinstance(node, (list, tuple)):
        node = node[0] if node else None
    return str(node) if node else None


# ---------------------------------------------------------------------------------------------
# Fronts


@dataclass(frozen=True)
class RunFront:
    """A run's Pareto front, read back from its ``front.json``.

    Attributes:
        run: label of the run (its directory name).
        model: model name.
        cost: cost model name.
        method: sampler (pareco, slim, twostage).
        cost_full: cost of the full-width network.
        channels: per group, its full channel count.
        slimmable: per group, whether it is slimmable (frozen groups are left out of width plots).
        points: the front's ``FrontPoint``s, cheapest first.
        uniform: the uniform-width comparison points, cheapest first.
    """

    run: str
    model: str
    cost: str
    method: str
    cost_full: float
    channels: tuple[int, ...]
    slimmable: tuple[bool, ...]
    points: tuple[FrontPoint, ...]
    uniform: tuple[FrontPoint, ...]

    def to_json(self) -> dict:
        return {"run": self.run, "model": self.model, "cost": self.cost, "method": self.method,
                "cost_full": self.cost_full, "channels": list(self.channels), "slimmable": list(self.slimmable),
                "points": [point_json(p) for p in self.points],
                "uniform": [point_json(p) for p in self.uniform]}


def load_front(run_dir: str | os.PathLike) -> RunFront:
    """Read ``RUN/front.json``; the front is labelled with the run directory as given.

    Raises:
        CheckpointError: the directory or its front.json is missing or unreadable.
    """
    from pareco_fx.optim.front import FrontPoint  # noqa: F811 - the runtime import

    path = Path(run_dir) / "front.json"
    if not Path(run_dir).is_dir():
        raise CheckpointError(f"run directory {str(run_dir)!r} not found; give the --out of a `pareco-fx slim` run")
    if not path.is_file():
        raise CheckpointError(f"{path} not found: the run has not finished; finish it with `pareco-fx slim ... --resume`")
    try:
        data = json.loads(path.read_text())

        def points(key: str) -> tuple[FrontPoint, ...]:
            return tuple(sorted((FrontPoint.from_dict(d) for d in data[key]), key=lambda p: p.cost_ratio))

        return RunFront(run=os.path.normpath(run_dir), model=str(data["model"]), cost=str(data["cost"]),
                        method=str(data["method"]), cost_full=float(data["cost_full"]),
                        channels=tuple(int(g["channels"]) for g in data["groups"]),
                        slimmable=tuple(bool(g["slimmable"]) for g in data["groups"]),
                        points=points("points"), uniform=points("uniform"))
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path} is corrupted ({type(e).__name__}: {e}); re-run `pareco-fx slim`") from e


def point_json(p: FrontPoint) -> dict:
    """A FrontPoint as a JSON-ready dict."""
    return p.to_dict()


def accuracy(p: FrontPoint) -> float:
    """The accuracy a front reports: test accuracy when measured, else validation accuracy."""
    return p.test_acc if p.test_acc is not None else p.val_acc


def accuracy_kind(points: Sequence[FrontPoint]) -> str:
    """Which accuracy :func:`accuracy` reports for these points: ``test`` or ``validation``."""
    return "test" if points and all(p.test_acc is not None for p in points) else "validation"


def best_under(points: Sequence[FrontPoint], budget: float) -> FrontPoint | None:
    """The point with the best *validation* accuracy among those with ``cost_ratio <= budget``.

    Selection never looks at test accuracy; ties go to the cheaper point.
    """
    fit = [p for p in points if p.cost_ratio <= budget + 1e-9]
    return max(fit, key=lambda p: (p.val_acc, -p.cost_ratio)) if fit else None


def _slimmed(front: RunFront) -> list[int]:
    return [i for i, s in enumerate(front.slimmable) if s]


def _widths_text(p: FrontPoint, idx: Sequence[int]) -> str:
    ws = [p.widths[i] for i in idx] or [1.0]
    return f"{min(ws):.2f}/{sum(ws) / len(ws):.2f}/{max(ws):.2f}"


def _pct(x: float | None) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.2f}%"


def front_table(front: RunFront) -> Table:
    """The front as a table: cost ratio, cost, accuracies, train loss, widths min/mean/max."""
    unit = COST_UNITS.get(front.cost, "")
    table = Table(title=f"{front.run}: {front.method} front of {front.model} by {front.cost}", title_justify="left")
    for col in ("#", "cost ratio", f"{front.cost} ({unit})" if unit else front.cost, "val acc", "test acc",
                "train loss", "widths min/mean/max"):
        table.add_column(col, justify="right")
    idx = _slimmed(front)
    for i, p in enumerate(front.points):
        table.add_row(str(i), f"{p.cost_ratio:.3f}", human(p.cost), _pct(p.val_acc), _pct(p.test_acc),
                      f"{p.train_loss:.4f}", _widths_text(p, idx))
    return table


def budget_json(fronts: Sequence[RunFront], budgets: Sequence[float]) -> list[dict]:
    """Per budget, each run's best point under it (None when its cheapest point costs more)."""
    out = []
    for b in budgets:
        best = {f.run: best_under(f.points, b) for f in fronts}
        out.append({"budget": b, "best": {r: (point_json(p) if p else None) for r, p in best.items()}})
    return out


def budget_table(fronts: Sequence[RunFront], budgets: Sequence[float]) -> Table:
    """Best accuracy (chosen on validation) of each run under each cost budget."""
    table = Table(title="best sub-network under each budget (chosen on validation accuracy)", title_justify="left")
    table.add_column("budget", justify="right")
    for f in fronts:
        table.add_column(f"{f.run}\n{accuracy_kind(f.points)} acc (cost ratio)", justify="right")
    for b in budgets:
        cells = []
        for f in fronts:
            p = best_under(f.points, b)
            cells.append("–" if p is None else f"{_pct(accuracy(p))} ({p.cost_ratio:.3f})")
        table.add_row(f"{b:.2f}", *cells)
    return table


# ---------------------------------------------------------------------------------------------
# Plots


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file next to ``path``, then rename it to ``path``.

    The temporary file keeps the suffix of ``path`` (writers that infer formats from it work) and
    is removed if ``write`` fails, so ``path`` is either the old file or the complete new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The writer creates the file itself, so it gets the usual permissions (umask), not mkstemp's 0600.
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:12]}.tmp{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _save(fig: Any, path: str | os.PathLike) -> Path:
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight"))


def plot_front(fronts: Sequence[RunFront], path: str | os.PathLike) -> Path:
    """Accuracy against cost ratio: each run's front (solid) and its uniform-width points (dashed)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    for i, f in enumerate(fronts):
        color = f"C{i % 10}"
        label = f.run if len(fronts) > 1 else f.method
        for pts, style, name in ((f.points, "o-", label), (f.uniform, "s--", f"{label} uniform width")):
            if pts:
                ax.plot([p.cost_ratio for p in pts], [100 * accuracy(p) for p in pts], style, color=color,
                        alpha=1.0 if style == "o-" else 0.55, label=name, markersize=4)
    first = fronts[0]
    ax.set_xlabel(f"{first.cost} / full-width {first.cost}")
    ax.set_ylabel(f"{accuracy_kind(first.points)} accuracy (%)")
    ax.set_title(f"{first.model}: accuracy vs {first.cost}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_widths(front: RunFront, path: str | os.PathLike, quantiles: Sequence[float] = (0.2, 0.5, 0.8)) -> Path:
    """Channels per slimmed group of front points at a few budgets, beside the uniform-width point
    of about the same cost: where the optimiser spends its budget."""
    from matplotlib.figure import Figure

    idx = _slimmed(front)
    picks = _width_picks(front, quantiles)
    fig = Figure(figsize=(max(6.0, 0.18 * len(idx) + 2), 2.4 * max(1, len(picks)) + 0.6))
    x = list(range(len(idx)))
    for row, (p, u) in enumerate(picks):
        ax = fig.add_subplot(len(picks), 1, row + 1)
        ax.bar(x, [front.channels[g] for g in idx], width=0.9, color="0.88", label="full width")
        ax.bar([i - 0.2 for i in x], [p.channels[g] for g in idx], width=0.4, color="C0",
               label=f"{front.method}: cost {p.cost_ratio:.2f}, acc {_pct(accuracy(p))}")
        if u is not None:
            ax.bar([i + 0.2 for i in x], [u.channels[g] for g in idx], width=0.4, color="C1",
                   label=f"uniform: cost {u.cost_ratio:.2f}, acc {_pct(accuracy(u))}")
        ax.set_ylabel("channels")
        ax.set_xticks(x, [str(g) for g in idx], fontsize=8 if len(idx) <= 30 else 5)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    if picks:
        fig.axes[-1].set_xlabel("channel group")
        fig.axes[0].set_title(f"{front.model}: channels per group on the {front.cost} front")
    return _save(fig, path)


def _width_picks(front: RunFront, quantiles: Sequence[float]) -> list[tuple[FrontPoint, FrontPoint | None]]:
    """Front points nearest to the given quantiles of its cost range, each with the uniform point
    nearest in cost (duplicates dropped)."""
    pts = front.points
    if not pts:
        return []
    lo, hi = pts[0].cost_ratio, pts[-1].cost_ratio
    chosen: list[FrontPoint] = []
    for q in quantiles:
        target = lo + q * (hi - lo)
        p = min(pts, key=lambda p: abs(p.cost_ratio - target))
        if all(p is not c for c in chosen):
            chosen.append(p)
    return [(p, _nearest(front.uniform, p.cost_ratio)) for p in chosen]


def _nearest(points: Sequence[FrontPoint], ratio: float) -> FrontPoint | None:
    return min(points, key=lambda u: abs(u.cost_ratio - ratio)) if points else None

"""Non-dominated sorting for minimisation problems."""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["non_dominated", "pareto_layers", "peel_until_coverage"]


def non_dominated(points: Tensor) -> Tensor:
    """Bool mask of the rows of ``points`` ``[N, k]`` that no other row dominates (all minimised).

    A row dominates another when it is no worse in every objective and better in one. Duplicate
    rows do not dominate each other, so both are kept.
    """
    if len(points) == 0:
        return torch.zeros(0, dtype=torch.bool)
    a, b = points.unsqueeze(1), points.unsqueeze(0)  # a[i] vs b[j]
    dominated_by = (b <= a).all(-1) & (b < a).any(-1)  # [i, j]: j dominates i
    return ~dominated_by.any(1)


def pareto_layers(points: Tensor) -> list[Tensor]:
    """Successive non-dominated layers of ``points`` ``[N, k]``, as index tensors (best first)."""
    remaining = torch.arange(len(points))
    layers = []
    while len(remaining):
        mask = non_dominated(points[remaining])
        layers.append(remaining[mask])
        remaining = remaining[~mask]
    return layers


def peel_until_coverage(losses: Tensor, costs: Tensor, coverage: float) -> Tensor:
    """Indices of the union of the first non-dominated layers of (loss, cost) that cover
    ``coverage`` of the cost range of all points.

    Coverage of a set is the span (max - min) of its costs over the span of every point's cost;
    when every point has the same cost one layer suffices.
    """
    points = torch.stack([losses.double(), costs.double()], dim=1)
    span = float(costs.max() - costs.min()) if len(costs) else 0.0
    chosen: list[Tensor] = []
    for layer in pareto_layers(points):
        chosen.append(layer)
        union = costs[torch.cat(chosen)]
        if span <= 0 or float(union.max() - union.min()) >= coverage * span - 1e-12:
            break
    return torch.sort(torch.cat(chosen)).values if chosen else torch.zeros(0, dtype=torch.long)

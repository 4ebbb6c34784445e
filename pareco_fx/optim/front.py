"""The final front: candidates from the history, BN recalibration, selection on validation data.

Candidates are the first non-dominated layers of the history by (training loss, cost)
until they cover ``front_coverage`` of the cost range, plus the full and smallest networks (and,
for ``pareco``, every vector of the front fill: see the trainer). Each
is BN-recalibrated on training batches and scored on the validation split; the non-dominated ones
by (validation accuracy, cost) form the front. Test accuracy is reported, never used to select, so
only the selected candidates are tested.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from pareco_fx.optim.bn import recalibrate_bn
from pareco_fx.optim.distributed import Comm
from pareco_fx.optim.evaluate import accuracy, set_widths
from pareco_fx.optim.history import History
from pareco_fx.optim.pareto import non_dominated, peel_until_coverage
from pareco_fx.optim.space import WidthSpace

__all__ = ["FrontPoint", "add_test_accuracy", "distinct_widths", "evaluate_widths", "front_candidates", "select_front",
           "uniform_widths"]

Batches = Sequence[tuple[Tensor, Tensor]]


@dataclass(frozen=True)
class FrontPoint:
    """One evaluated sub-network.

    Attributes:
        widths: one width per group (``slim.groups`` order).
        channels: active channels per group, same order.
        cost: absolute cost under the run's cost model.
        cost_ratio: cost relative to the full network.
        train_loss: label-smoothed loss on the BN-recalibration (training) batches.
        val_acc: top-1 accuracy on the validation split (used for selection).
        test_acc: top-1 accuracy on the test split (reported only), ``None`` without test data.
    """

    widths: tuple[float, ...]
    channels: tuple[int, ...]
    cost: float
    cost_ratio: float
    train_loss: float
    val_acc: float
    test_acc: float | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"widths": list(self.widths), "channels": list(self.channels), "cost": self.cost,
                "cost_ratio": self.cost_ratio, "train_loss": self.train_loss, "val_acc": self.val_acc,
                "test_acc": self.test_acc}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FrontPoint:
        """Inverse of :meth:`to_dict`."""
        return cls(tuple(float(w) for w in data["widths"]), tuple(int(c) for c in data["channels"]),
                   float(data["cost"]), float(data["cost_ratio"]), float(data["train_loss"]),
                   float(data["val_acc"]), None if data["test_acc"] is None else float(data["test_acc"]))


def front_candidates(history: History, space: WidthSpace, coverage: float) -> Tensor:
    """Width vectors ``[K, G]`` to evaluate: peeled layers of the scored history by
    (loss, cost ratio) until ``coverage`` of the cost range, then the full and smallest networks."""
    scored = torch.nonzero(history.scored()).flatten()
    picked = scored[peel_until_coverage(history.losses[scored], history.ratios[scored], coverage)]
    ends = torch.stack([space.full(), space.smallest()])
    return torch.cat([history.widths[picked], ends])


def uniform_widths(space: WidthSpace, count: int, grid: int = 2001) -> Tensor:
    """``count`` uniform-multiplier vectors ``[K, G]`` spaced evenly in cost ratio from the
    smallest to the full network (the multiplier of each comes from a fine grid; repeats dropped)."""
    f = torch.linspace(space.min_width, 1.0, grid, dtype=torch.float64)
    ratios = space.ratio(space.uniform(f))
    targets = torch.linspace(space.ratio_min, 1.0, count, dtype=torch.float64)
    picks = torch.unique(torch.argmin((ratios[None, :] - targets[:, None]).abs(), dim=1))
    return space.uniform(f[picks])


def distinct_widths(slim: nn.Module, W: Tensor) -> Tensor:
    """The rows of ``W`` ``[K, G]`` that give distinct channel counts (first occurrence kept)."""
    seen: set[tuple[int, ...]] = set()
    keep = []
    for i, widths in enumerate(W):
        channels = set_widths(slim, widths)
        if channels not in seen:
            seen.add(channels)
            keep.append(i)
    return W[keep]


def evaluate_widths(
    slim: nn.Module,
    W: Tensor,
    space: WidthSpace,
    recal_batches: Batches,
    val_batches: Batches,
    test_batches: Batches | None,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    on_point: Callable[[], None] | None = None,
    comm: Comm = Comm(),
) -> list[FrontPoint]:
    """Recalibrate BN and score every width vector of ``W`` (in order).

    Args:
        slim: the slimmable model (its BN statistics are overwritten).
        W: full width vectors ``[K, G]``.
        space: gives exact costs.
        recal_batches: training batches for BN recalibration (and the reported training loss).
        val_batches: validation batches (selection).
        test_batches: test batches (report only) or ``None``.
        loss_fn: loss of ``(logits, labels)`` reported as ``train_loss``.
        on_point: called after each point (progress).
        comm: under ``torch.distributed``, the batches are this rank's shards; BN statistics,
            losses and accuracies are reduced over ranks.
    """
    ratios = space.ratio(W) if len(W) else torch.zeros(0)
    points = []
    for widths, ratio in zip(W, ratios):
        channels = set_widths(slim, widths)
        train_loss = recalibrate_bn(slim, recal_batches, loss_fn, comm)
        val_acc = accuracy(slim, val_batches, comm)
        test_acc = accuracy(slim, test_batches, comm) if test_batches is not None else None
        points.append(FrontPoint(tuple(widths.tolist()), channels, float(ratio) * space.cost_full, float(ratio),
                                 float(train_loss), val_acc, test_acc))  # type: ignore[arg-type]
        if on_point is not None:
            on_point()
    return points


def add_test_accuracy(
    slim: nn.Module,
    points: Sequence[FrontPoint],
    recal_batches: Batches,
    test_batches: Batches | None,
    on_point: Callable[[], None] | None = None,
    comm: Comm = Comm(),
) -> tuple[FrontPoint, ...]:
    """``points`` (evaluated without test data) with their test accuracy, in order.

    Each point's BatchNorm statistics are recalibrated again on the same batches, which gives
    the statistics it was selected with; candidates that did not make the front are never
    tested, since their test accuracy would not be reported.
    """
    if test_batches is None:
        return tuple(points)
    tested = []
    for point in points:
        slim.set_widths(list(point.widths))  # type: ignore[operator]
        recalibrate_bn(slim, recal_batches, comm=comm)
        tested.append(dataclasses.replace(point, test_acc=accuracy(slim, test_batches, comm)))
        if on_point is not None:
            on_point()
    return tuple(tested)


def select_front(points: Sequence[FrontPoint]) -> tuple[FrontPoint, ...]:
    """The points no other point beats on both validation accuracy and cost, by cost."""
    if not points:
        return ()
    objectives = torch.tensor([[-p.val_acc, p.cost_ratio] for p in points], dtype=torch.float64)
    mask = non_dominated(objectives)
    return tuple(sorted((p for p, keep in zip(points, mask) if keep), key=lambda p: (p.cost_ratio, -p.val_acc)))

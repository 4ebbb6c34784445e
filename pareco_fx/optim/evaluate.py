"""Losses of the sandwich and the scoring of width vectors."""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pareco_fx.optim.distributed import Comm

__all__ = ["accuracy", "score_widths", "smoothed_ce", "soft_ce"]


def smoothed_ce(logits: Tensor, labels: Tensor, smoothing: float) -> Tensor:
    """Label-smoothed cross entropy (the full network's loss)."""
    return F.cross_entropy(logits, labels, label_smoothing=smoothing)


def soft_ce(logits: Tensor, target_probs: Tensor) -> Tensor:
    """Cross entropy against soft targets (inplace distillation, temperature 1)."""
    return -(target_probs * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def score_widths(
    slim: nn.Module, W: Tensor, batches: Sequence[tuple[Tensor, Tensor]], smoothing: float
) -> Tensor:
    """Label-smoothed loss of each width vector of ``W`` ``[B, G]`` on ``batches``.

    Train-mode BatchNorm (batch statistics), no gradients: the re-scoring of PareCO's history.
    The running statistics this touches are recalibrated before any evaluation.
    """
    losses = torch.empty(len(W), dtype=torch.float64)
    slim.train()
    with torch.no_grad():
        for i, widths in enumerate(W):
            slim.set_widths(widths.tolist())  # type: ignore[operator]
            total = sum(float(smoothed_ce(slim(x), y, smoothing)) * len(y) for x, y in batches)
            losses[i] = total / sum(len(y) for _, y in batches)
    return losses


def accuracy(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], comm: Comm = Comm()) -> float:
    """Top-1 accuracy in eval mode (over the batches of every rank under ``torch.distributed``)."""
    correct, count = 0, 0
    model.eval()
    with torch.no_grad():
        for x, y in batches:
            correct += int((model(x).argmax(dim=1) == y).sum())
            count += len(y)
    correct, count = (int(v) for v in comm.sum(torch.tensor([correct, count], dtype=torch.int64)).tolist())
    return correct / max(count, 1)

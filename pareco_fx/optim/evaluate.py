"""Losses of the sandwich and the scoring of width vectors."""
from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from pareco_fx.optim.distributed import Comm

__all__ = ["accuracy", "score_widths", "set_widths", "smoothed_ce", "soft_ce"]


def smoothed_ce(logits: Tensor, labels: Tensor, smoothing: float) -> Tensor:
    """Label-smoothed cross entropy (the full network's loss)."""
    return F.cross_entropy(logits, labels, label_smoothing=smoothing)


def soft_ce(logits: Tensor, target_probs: Tensor) -> Tensor:
    """Cross entropy against soft targets (inplace distillation, temperature 1)."""
    return -(target_probs * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def set_widths(slim: nn.Module, widths: Tensor) -> tuple[int, ...]:
    """Put ``widths`` in force; returns the active channels per group (``slim.groups`` order),
    which identify the sub-network: vectors that round to the same channels are the same one."""
    slim.set_widths(widths.tolist())  # type: ignore[operator]
    counts = slim.channels()  # type: ignore[operator]
    return tuple(int(counts[group.id]) for group in slim.groups)  # type: ignore[attr-defined]


def score_widths(
    slim: nn.Module, W: Tensor, batches: Sequence[tuple[Tensor, Tensor]], smoothing: float
) -> Tensor:
    """Label-smoothed loss of each width vector of ``W`` ``[B, G]`` on ``batches``.

    Train-mode BatchNorm (batch statistics), no gradients: the re-scoring of PareCO's history.
    The BatchNorm running statistics are left as they are: train-mode outputs never read them,
    and every evaluation recalibrates them first, so updating them here would be wasted work.
    Vectors that round to the same channel counts are the same network: each is scored once
    (histories hold such repeats: multipliers less than a channel apart, a proposal made twice).
    """
    losses = torch.empty(len(W), dtype=torch.float64)
    count = sum(len(y) for _, y in batches)
    scored: dict[tuple[int, ...], Tensor] = {}
    slim.train()
    with torch.inference_mode(), _batch_statistics_only(slim):
        for i, widths in enumerate(W):
            key = set_widths(slim, widths)
            if key not in scored:
                scored[key] = sum(smoothed_ce(slim(x), y, smoothing).double() * len(y) for x, y in batches) / count
            losses[i] = scored[key]
    return losses


@contextlib.contextmanager
def _batch_statistics_only(model: nn.Module) -> Iterator[None]:
    """Train-mode BatchNorm layers normalise with batch statistics without updating (or
    counting into) their running statistics while the context is open."""
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    for m in norms:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m in norms:
            m.track_running_stats = True


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

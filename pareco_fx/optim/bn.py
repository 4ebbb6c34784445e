"""BatchNorm recalibration: re-estimate running statistics for the widths in force."""
from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.dropout import _DropoutNd

from pareco_fx.optim.distributed import Comm

__all__ = ["recalibrate_bn"]


def recalibrate_bn(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
    comm: Comm = Comm(),
) -> float | None:
    """Reset every BatchNorm's statistics and re-estimate them as a cumulative average.

    The model runs in train mode without gradients over ``batches``, with ``momentum=None`` so
    that each batch counts equally; momenta and the model's mode are restored afterwards.
    Dropout layers stay off meanwhile: the statistics are then those of the activations the
    network sees at inference (dropout would inflate their variance), and recalibrating again
    on the same batches gives the same statistics.

    Args:
        model: any module (for a slimmable model, call after ``set_widths``).
        batches: ``(inputs, labels)`` pairs, usually training batches.
        loss_fn: when given, the mean of ``loss_fn(logits, labels)`` over the batches is returned
            (weighted by batch size).
        comm: under ``torch.distributed``, each rank passes its shard of the batches; the
            running means and variances are then averaged over ranks and the loss over all
            examples.

    Returns:
        The mean loss, or ``None`` without ``loss_fn``.
    """
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    momenta = [m.momentum for m in norms]
    was_training = model.training
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    total, count = 0.0, 0
    model.train()
    for m in model.modules():
        if isinstance(m, _DropoutNd):
            m.eval()
    try:
        with torch.no_grad():
            for inputs, labels in batches:
                logits = model(inputs)
                if loss_fn is not None:
                    total += float(loss_fn(logits, labels)) * len(labels)
                    count += len(labels)
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.train(was_training)
    comm.average_bn_stats(model)
    if loss_fn is None:
        return None
    total, count = comm.sum(torch.tensor([total, count], dtype=torch.float64)).tolist()
    return total / count if count else None

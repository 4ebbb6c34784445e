"""The one linear pipeline: trace → channel groups → slimmable rewrite (costs compile lazily)."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from pareco_fx.errors import UserInputError
from pareco_fx.passes import channel_groups, slimmify
from pareco_fx.slimmable import SlimmableModel
from pareco_fx.trace import batch_one, trace

__all__ = ["make_slimmable", "analyze"]


def _inputs(example_inputs: Any) -> tuple:
    if isinstance(example_inputs, torch.Tensor):
        return (example_inputs,)
    if isinstance(example_inputs, (tuple, list)):
        return tuple(example_inputs)
    raise UserInputError(
        f"example_inputs must be a tensor or a tuple of the model's positional inputs, got "
        f"{type(example_inputs).__name__}")


def make_slimmable(model: nn.Module, example_inputs: Any, min_width: float = 0.42,
                   divisor: int = 1) -> SlimmableModel:
    """Trace ``model`` and rewrite it into a :class:`SlimmableModel` with per-group widths.

    Args:
        model: any ``nn.Module``; it is deep-copied, the original is left untouched.
        example_inputs: a tensor or tuple of the forward's positional inputs (any batch size).
        min_width: smallest width the optimiser samples (``slim.min_width``).
        divisor: channel counts are rounded down to multiples of it (never below it).

    Returns:
        The slimmable model, at full width.

    Raises:
        TraceError: the model cannot be traced; the message names the line and the fix.
    """
    if not isinstance(model, nn.Module):
        raise UserInputError(f"expected a torch.nn.Module, got {type(model).__name__}")
    if not 0.0 < float(min_width) <= 1.0:
        raise UserInputError(f"min_width must be in (0, 1], got {min_width}")
    if int(divisor) != divisor or divisor < 1:
        raise UserInputError(f"divisor must be a positive integer, got {divisor}")
    inputs = _inputs(example_inputs)
    gm = trace(model, inputs)
    analysis = channel_groups.run(gm, batch_one(inputs), int(divisor))
    analysis.min_width = float(min_width)  # lets the memory program skip nodes that never peak
    slim_gm, state = slimmify.run(analysis)
    slim = SlimmableModel(slim_gm, state, analysis, float(min_width), int(divisor))
    slim.train(model.training)
    return slim


def analyze(model: nn.Module, example_inputs: Any, name: str | None = None,
            slim: SlimmableModel | None = None) -> "Any":
    """The channel groups of ``model`` as a printable :class:`~pareco_fx.report.ChannelReport`.

    Pass ``slim`` (from :func:`make_slimmable` on the same model) to reuse an analysis.
    """
    from pareco_fx.report import ChannelReport, summarize

    slim = slim if slim is not None else make_slimmable(model, example_inputs)
    groups = tuple(slim.groups)
    return ChannelReport(model=name or type(model).__name__, groups=groups,
                         summary=summarize(groups, round(slim.slimmable_share(), 4)))

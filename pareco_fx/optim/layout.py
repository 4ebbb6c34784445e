"""The memory layout a run trains in: channels-last where it pays off.

On the CPU, oneDNN runs depthwise and grouped 2-D convolutions 1.4-1.7x faster on channels-last
tensors (fashion_mobilenet's training step: 0.67 -> 0.48 s on two cores), while dense ones at
small widths gain nothing or lose a little; CUDA was not measured. So auto
(``TrainConfig.channels_last=None``) means: channels-last on the CPU for a model with a grouped
2-D convolution. Only the 4-D weights are converted; the convolutions then produce channels-last
activations themselves. The layout changes strides, never values: a ``.view`` that the new
strides cannot serve raises, so auto first runs the model once and keeps the default layout
where that fails.
"""
from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import torch
from torch import Tensor, nn

__all__ = ["training_layout", "wants_channels_last"]

CL = torch.channels_last


def wants_channels_last(model: nn.Module, device: torch.device, setting: bool | None) -> bool:
    """Whether to train in channels-last: ``setting``, or for ``None`` (auto) a CPU run of a
    model with a grouped (e.g. depthwise) 2-D convolution."""
    if setting is not None:
        return setting
    return device.type == "cpu" and any(
        isinstance(m, nn.Conv2d) and m.groups > 1 for m in model.modules())


def _runs(model: nn.Module, example: Tensor) -> Exception | None:
    """The error of one eval-mode forward of ``example`` (no state changes), or ``None``."""
    training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            model(example)
    except RuntimeError as error:
        return error
    finally:
        model.train(training)
    return None


@contextlib.contextmanager
def training_layout(model: nn.Module, channels_last: bool, example: Tensor | None) -> Iterator[bool]:
    """Hold ``model``'s 4-D parameters channels-last while the context is open (when
    ``channels_last``) and give the converted ones their layout back after; yields whether the
    model trains channels-last. With an ``example`` input (the auto setting), a model that fails
    to run channels-last keeps its layout, with a warning."""
    if not channels_last:
        yield False
        return
    converted = [p for p in model.parameters() if p.dim() == 4 and not p.is_contiguous(memory_format=CL)]
    _set_layout(converted, CL)
    if example is not None and (error := _runs(model, example)) is not None:
        _set_layout(converted, torch.contiguous_format)
        warnings.warn(f"training in the default memory layout: the model does not run channels-last "
                      f"({type(error).__name__}: {str(error).splitlines()[0]})", stacklevel=3)
        yield False
        return
    try:
        yield True
    finally:
        _set_layout(converted, torch.contiguous_format)


def _set_layout(params: list[nn.Parameter], layout: torch.memory_format) -> None:
    # In place under the same Parameter objects, as Module.to does: optimisers keep their references.
    for p in params:
        p.data = p.data.contiguous(memory_format=layout)

"""pareco-fx: make any PyTorch model slimmable with per-group widths, trained by PareCO.

Public API (see DESIGN.md, "The public contract")::

    report = pareco_fx.analyze(model, example_inputs)
    slim = pareco_fx.make_slimmable(model, example_inputs, min_width=0.42, divisor=1)
    result = pareco_fx.train(slim, train_data, val_data, test_data, config=TrainConfig(...))
"""
from __future__ import annotations

from pareco_fx.errors import ParecoError
from pareco_fx.ir import ChannelGroup
from pareco_fx.passes.rules import register_rule
from pareco_fx.pipeline import analyze, make_slimmable
from pareco_fx.slimmable import SlimmableModel
from pareco_fx.trace import register_leaf


def train(*args, **kwargs):  # noqa: D103 - documented in pareco_fx.optim.train
    from pareco_fx.optim import train as _train

    return _train(*args, **kwargs)


train.__doc__ = "Train a SlimmableModel with PareCO or a baseline; see :func:`pareco_fx.optim.train`."

__all__ = [
    "analyze", "make_slimmable", "train", "SlimmableModel", "ChannelGroup", "ParecoError",
    "register_rule", "register_leaf",
]
__version__ = "0.1.0"

"""pareco-fx: make any PyTorch model slimmable with per-group widths, trained by PareCO.

Public API (see DESIGN.md, "The public contract")::

    report = pareco_fx.analyze(model, example_inputs)
    slim = pareco_fx.make_slimmable(model, example_inputs, min_width=0.42, divisor=1)
"""
from __future__ import annotations

from pareco_fx.errors import ParecoError
from pareco_fx.ir import ChannelGroup
from pareco_fx.pipeline import analyze, make_slimmable
from pareco_fx.slimmable import SlimmableModel

__all__ = ["analyze", "make_slimmable", "SlimmableModel", "ChannelGroup", "ParecoError"]
__version__ = "0.1.0"

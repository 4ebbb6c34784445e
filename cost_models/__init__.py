"""Cost models: ``flops``, ``memory``, ``params`` and any a user registers.

Each compiles a channel analysis into a vectorised :class:`CostProgram` over the feature
matrix of a batch of width vectors (``analysis.features(W)``)::

    program = pareco_fx.cost_models.compile("flops", slim.analysis)
    macs = program(slim.analysis.features(W))           # Tensor[B]

    pareco_fx.cost_models.register("my_cost", lambda analysis: some_poly)
"""
from __future__ import annotations

from pareco_fx.cost_models.base import (
    CostModel,
    OpRegistry,
    OpShapes,
    available,
    compile,
    get,
    register,
)
from pareco_fx.cost_models.flops import Flops, flop_formula
from pareco_fx.cost_models.memory import Memory, NodeMemory, liveness, width_box
from pareco_fx.cost_models.params import Params
from pareco_fx.cost_models.program import CostProgram

__all__ = [
    "CostModel",
    "CostProgram",
    "OpRegistry",
    "OpShapes",
    "NodeMemory",
    "register",
    "get",
    "available",
    "compile",
    "flop_formula",
    "liveness",
    "width_box",
]

register("flops", Flops)
register("memory", Memory)
register("params", Params)

"""Invariant 3 of DESIGN.md and the memory definition, on every scenario fixture and on
torchvision models, at the smallest, a random and the largest widths.

For each width vector ``w`` and ``sub = slim.extract(w)`` at batch size 1:
* ``flops`` == FlopCounterMode MACs of ``sub`` + the SDPA products it misses on the CPU (exact);
* ``params`` == ``sum(p.numel() for p in sub.parameters())`` (exact);
* ``memory`` == ``memory_oracle.peak_memory(sub)`` (exact, where the oracle is available), ==
  the memory of ``sub`` re-analysed at full width, and bracketed by the eager storage peaks
  (``cost_measure.assert_memory_bracketed`` gives the reasoning); models whose leaves run
  several aten ops (attention, untraceable submodules) skip that bracket;
* ``cost_batch`` equals ``cost`` row by row; bad names and widths are rejected.
"""
from __future__ import annotations

from typing import Sequence

import pytest
import torch
import torch.nn as nn
import torchvision

import pareco_fx
from pareco_fx.errors import CostModelError, WidthError
from cost_measure import ORACLE, assert_memory_bracketed, counted_macs
from invariants import trial_widths
from scenarios import SCENARIOS

COSTS = ("flops", "params", "memory")
MULTI_OP_LEAVES = {"mha_mlp", "untraceable_submodule"}  # scenarios: no eager bracket (see above)
ATTENTION = ("vit", "swin", "maxvit")
FAST_ZOO = ("resnet18", "mobilenet_v2", "squeezenet1_1", "mnasnet0_5")


def check_costs(model: nn.Module, inputs: Sequence[torch.Tensor], *, eager: bool = True, seed: int = 0,
                min_width: float = 0.42) -> None:
    """Assert every cost against its independent measurement at min/random/max widths."""
    torch.manual_seed(seed)
    slim = pareco_fx.make_slimmable(model.eval(), inputs, min_width=min_width)
    x1 = tuple(t[:1].clone() for t in inputs)  # batch 1 in its own storage
    widths = trial_widths(len(slim.groups), ("min", "random", "max"), min_width, seed)
    for w in widths:
        sub = slim.extract(w).eval()
        counted, missed = counted_macs(sub, x1)
        assert slim.cost("flops", w) == pytest.approx(counted + missed, rel=1e-9), f"flops at {w}"
        assert slim.cost("params", w) == sum(p.numel() for p in sub.parameters()), f"params at {w}"
        memory = slim.cost("memory", w)
        if ORACLE is not None:
            assert memory == pytest.approx(ORACLE(sub, x1)[0], rel=1e-9), f"memory vs oracle at {w}"
        again = pareco_fx.make_slimmable(sub, inputs, min_width=min_width)
        assert again.cost("memory", 1.0) == pytest.approx(memory, rel=1e-9), f"memory vs re-analysed extract at {w}"
        if eager:
            assert_memory_bracketed(memory, sub, x1)
    W = torch.tensor(widths, dtype=torch.float64)  # float32 widths round 0.42·C down differently
    for name in COSTS:  # equal up to float64 rounding (BLAS sums in a shape-dependent order)
        batch = slim.cost_batch(name, W).tolist()
        assert batch == pytest.approx([slim.cost(name, w) for w in widths], rel=1e-12), f"cost_batch {name}"


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_costs_on_scenario(name: str) -> None:
    scenario = SCENARIOS[name]
    check_costs(scenario.factory(), scenario.inputs(), eager=name not in MULTI_OP_LEAVES, seed=len(name))


def _zoo_case(name: str) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    size = 299 if name == "inception_v3" else 224 if name.startswith(ATTENTION) else 64
    torch.manual_seed(0)
    return torchvision.models.get_model(name, weights=None), (torch.randn(2, 3, size, size),)


@pytest.mark.parametrize("name", FAST_ZOO)
def test_costs_on_torchvision_subset(name: str) -> None:
    model, inputs = _zoo_case(name)
    check_costs(model, inputs)


@pytest.mark.zoo
@pytest.mark.parametrize("name", torchvision.models.list_models(module=torchvision.models))
def test_costs_on_torchvision_zoo(name: str) -> None:
    model, inputs = _zoo_case(name)
    check_costs(model, inputs, eager=not name.startswith(ATTENTION))


def test_cost_rejects_bad_input() -> None:
    scenario = SCENARIOS["residual_add"]
    slim = pareco_fx.make_slimmable(scenario.factory().eval(), scenario.inputs())
    G = len(slim.groups)
    with pytest.raises(CostModelError, match="available: .*flops, memory, params"):
        slim.cost("latency", 1.0)
    with pytest.raises(WidthError, match=f"{G}"):
        slim.cost_batch("flops", torch.ones(3, G + 1))
    for bad in (float("nan"), 1.5, -0.2):
        W = torch.ones(2, G)
        W[1, 0] = bad
        with pytest.raises(WidthError, match="group 0"):
            slim.cost_batch("memory", W)

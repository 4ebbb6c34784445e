"""Register your own cost models and use them like the built-in ones.

Two examples, both compiled from the channel analysis into vectorised programs:

* ``sram_int8``: peak on-chip SRAM, in bytes, of a microcontroller deployment that keeps int8
  activations in SRAM and the weights in flash (MCUNet's budget): the peak over the graph of the
  live activation elements, parameters left out. A peak-type cost (max over nodes), built on the
  same liveness analysis as ``memory``.
* ``latency_ms``: a per-layer latency table (milliseconds per million MACs, by layer kind, as one
  would measure once on the target device) applied to each layer's symbolic MACs. A sum-type cost:
  the model returns a Poly.

Run: ``python examples/custom_cost.py``
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torchvision

import pareco_fx
from pareco_fx import cost_models
from pareco_fx.cost_models import CostProgram, liveness
from pareco_fx.cost_models.flops import node_macs
from pareco_fx.cost_models.memory import width_box
from pareco_fx.ir import Poly

INT8_BYTES = 1


def sram_int8(analysis) -> CostProgram:
    """Peak int8 activation bytes over the execution order (weights stay in flash)."""
    terms = liveness(analysis)
    return CostProgram([t.activations * INT8_BYTES for t in terms], num_features=analysis.num_features,
                       reduce="max", names=[t.node for t in terms], box=width_box(analysis))


# Milliseconds per million MACs on the target, by layer kind (made-up numbers for the example:
# depthwise convs are memory bound, hence slower per MAC).
MS_PER_MMAC = {"conv": 0.010, "depthwise": 0.060, "linear": 0.015}


def _kind(module: nn.Module | None) -> str | None:
    if isinstance(module, nn.Conv2d):
        return "depthwise" if module.groups > 1 and module.groups == module.in_channels else "conv"
    if isinstance(module, nn.Linear):
        return "linear"
    return None


def latency_ms(analysis) -> Poly:
    """Sum over layers of (MACs / 1e6) · table[layer kind]."""
    gm = analysis.gm
    kinds = {n.name: _kind(gm.get_submodule(n.target)) for n in gm.graph.nodes if n.op == "call_module"}
    total = Poly()
    for name, macs in node_macs(analysis).items():
        kind = kinds.get(name)
        if kind is not None:
            total = total + macs * (MS_PER_MMAC[kind] / 1e6)
    return total


def main() -> None:
    cost_models.register("sram_int8", sram_int8, overwrite=True)
    cost_models.register("latency_ms", latency_ms, overwrite=True)

    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v2(weights=None).eval()
    x = (torch.randn(2, 3, 96, 96),)
    slim = pareco_fx.make_slimmable(model, x, min_width=0.42)
    print(f"{len(slim.groups)} groups; registered costs: {', '.join(cost_models.available())}")
    for w in (1.0, 0.75, 0.42):
        costs = {name: slim.cost(name, w) for name in ("flops", "memory", "sram_int8", "latency_ms")}
        print(f"width {w:4.2f}: " + ", ".join(f"{k} {v:,.4g}" for k, v in costs.items()))

    # Thousands of candidates at once, the way the optimiser asks.
    W = torch.rand(4096, len(slim.groups)) * (1 - slim.min_width) + slim.min_width
    sram = slim.cost_batch("sram_int8", W)
    best = int(sram.argmin())
    program = cost_models.compile("sram_int8", slim.analysis)
    where = program.peak_node(slim.analysis.features(W[best:best + 1]))[0]
    print(f"4096 random candidates: SRAM {sram.min():,.0f} .. {sram.max():,.0f} bytes; "
          f"the smallest peaks at node {where!r}")


if __name__ == "__main__":
    main()

"""``memory``: PareCO's memory footprint, in elements at batch size 1 (DESIGN.md).

The peak, over the graph's execution order, of the elements of every activation storage alive
at a node (produced at or before it, used at or after it) plus the parameter elements of the
layer executing there — what ``memory_oracle.py`` measures from real storages. Aliasing comes
from the analysis: values with the same ``SymTensor.storage`` id (views, in-place results,
split/chunk pieces) share one storage, whose active size is the symbolic size of the value
that fills it. The inputs count; ``get_attr`` values are parameters or buffers, not
activations; the output node adds nothing. Each node's footprint is a Poly of the features,
and the program takes the maximum over nodes per row, so the peak may move with the widths.
Nodes that can never hold the peak while the widths stay in ``[min_width, 1]`` are skipped for
such batches (see :mod:`~pareco_fx.cost_models.program`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx as fx

from pareco_fx.ir import META_PARAM_NUMEL, META_SYM, Poly, SymTensor
from pareco_fx.cost_models.base import CostProgram, sym_tensors

__all__ = ["NodeMemory", "liveness", "width_box", "Memory"]

_NOT_ACTIVATIONS = ("get_attr", "output")


@dataclass(frozen=True)
class NodeMemory:
    """The footprint terms at one node.

    Attributes:
        node: the node's name.
        activations: elements of the activation storages alive at the node.
        params: parameter elements of the layer executing at the node.
    """

    node: str
    activations: Poly
    params: Poly

    @property
    def total(self) -> Poly:
        return self.activations + self.params


def _storage_size(full: int, values: list[SymTensor]) -> Poly:
    """Active elements of a storage: the symbolic size of a value spanning all of it (its base:
    the producer of a view, the input of a split). Without one (a storage filled outside the
    graph), the largest value scaled up, which is exact when the storage shrinks with it."""
    for t in values:
        if _full_numel(t) == full:
            return t.numel
    widest = max(values, key=_full_numel)
    return widest.numel * (full / max(1, _full_numel(widest)))


def _full_numel(t: SymTensor) -> int:
    return math.prod(t.shape)


def liveness(analysis: Any) -> list[NodeMemory]:
    """Per node (placeholders and calls, in execution order), the live activations and the
    executing layer's parameters, as Polys of the features."""
    nodes: list[fx.Node] = list(analysis.gm.graph.nodes)
    held: dict[fx.Node, set[int]] = {}
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    values: dict[int, list[SymTensor]] = {}
    full: dict[int, int] = {}
    for i, n in enumerate(nodes):
        if n.op not in _NOT_ACTIVATIONS:
            keys = held[n] = set()
            for t in sym_tensors(n.meta.get(META_SYM)):
                keys.add(t.storage)
                values.setdefault(t.storage, []).append(t)
                full[t.storage] = max(full.get(t.storage, 0), t.storage_numel)
                first.setdefault(t.storage, i)
                last[t.storage] = i
        for a in n.all_input_nodes:
            for k in held.get(a, ()):
                last[k] = max(last[k], i)
    size = {k: _storage_size(full[k], vs) for k, vs in values.items()}
    for n in nodes:
        if n.op == "placeholder":
            # A model input is its own tensor at batch size 1, even when the example is a slice
            # of a larger batch (whose storage the model does not hold).
            for t in sym_tensors(n.meta.get(META_SYM)):
                size[t.storage] = t.numel
    starts: dict[int, list[int]] = {}
    for k, i in first.items():
        starts.setdefault(i, []).append(k)
    live: set[int] = set()
    out: list[NodeMemory] = []
    for i, n in enumerate(nodes):
        live.update(starts.get(i, ()))
        live = {k for k in live if last[k] >= i}
        if n.op in _NOT_ACTIVATIONS:
            continue
        acts = sum((size[k] for k in sorted(live)), Poly())
        out.append(NodeMemory(n.name, acts, Poly.lift(n.meta.get(META_PARAM_NUMEL, 0))))
    return out


def width_box(analysis: Any, min_width: float | None = None) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Features of the smallest (every group at ``min_width``, by default
    ``analysis.min_width``) and the full widths: the box the optimiser samples in, or None
    when no min width is known."""
    min_width = getattr(analysis, "min_width", None) if min_width is None else min_width
    if min_width is None:
        return None
    G = len(analysis.groups)
    lo, hi = analysis.features(torch.tensor([[float(min_width)] * G, [1.0] * G], dtype=torch.float64))
    return lo, hi


class Memory:
    """The ``memory`` cost model: max over nodes of :func:`liveness` totals."""

    def compile(self, analysis: Any) -> CostProgram:
        terms = liveness(analysis)
        return CostProgram([t.total for t in terms], num_features=analysis.num_features, reduce="max",
                           names=[t.node for t in terms], box=width_box(analysis))

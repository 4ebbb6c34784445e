"""SlimmableModel: one set of weights, a width per channel group, switchable at run time."""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn

from pareco_fx.errors import WidthError
from pareco_fx.ir import ChannelGroup
from pareco_fx.passes.channel_groups import META_LAYER

__all__ = ["SlimmableModel", "Widths"]

Widths = float | Sequence[float] | Mapping[int, float] | torch.Tensor


class SlimmableModel(nn.Module):
    """A model whose channel groups run at widths set by :meth:`set_widths`.

    Built by :func:`pareco_fx.make_slimmable`. Index ``i`` of every width vector is
    ``slim.groups[i]``; frozen groups always run at full width.
    """

    def __init__(self, gm: fx.GraphModule, state: Any, analysis: Any, min_width: float, divisor: int):
        super().__init__()
        self.gm = gm
        self.analysis = analysis
        self.min_width = min_width
        self.divisor = divisor
        self._state = state
        self._programs: dict[str, Any] = {}
        self._widths = tuple(1.0 for _ in analysis.groups)

    # --- widths ---------------------------------------------------------------------------
    @property
    def groups(self) -> list[ChannelGroup]:
        return self.analysis.groups

    @property
    def widths(self) -> tuple[float, ...]:
        return self._widths

    def _vector(self, w: Widths | None) -> tuple[float, ...]:
        """A full width vector from any accepted form, validated; frozen groups read 1.0."""
        G = len(self.groups)
        if w is None:
            return self._widths
        if isinstance(w, torch.Tensor):
            w = w.item() if w.dim() == 0 else w.tolist()
        if isinstance(w, (int, float)):
            vec = [float(w)] * G
        elif isinstance(w, Mapping):
            vec = list(self._widths)
            for k, v in w.items():
                if not (isinstance(k, int) and 0 <= k < G):
                    raise WidthError(f"no group with id {k!r}: ids run from 0 to {G - 1}")
                vec[k] = float(v)
        else:
            vec = [float(v) for v in w]
            if len(vec) != G:
                raise WidthError(f"expected {G} widths (one per group in slim.groups), got {len(vec)}")
        for g, v in zip(self.groups, vec):
            if g.slimmable and (math.isnan(v) or not 0.0 < v <= 1.0):
                raise WidthError(f"width {v} of group {g.id} ({g.channels} channels, e.g. "
                                 f"{', '.join(g.members[:2])}) is outside (0, 1]")
        return tuple(v if g.slimmable else 1.0 for g, v in zip(self.groups, vec))

    def set_widths(self, w: Widths) -> None:
        """Set the widths in force: a float (all slimmable groups), a sequence, or {group id: width}."""
        vec = self._vector(w)
        units = self.analysis.units(torch.tensor([vec], dtype=torch.float64))[0]
        self._state.set_units(units.numpy().astype(np.int64))
        self._widths = vec

    def channels(self) -> dict[int, int]:
        """Active channel count of every group."""
        return {g.id: int(u) * g.quantum for g, u in zip(self.groups, self._state.units)}

    def smallest(self) -> tuple[float, ...]:
        """The width vector of the smallest sub-network (every slimmable group at min_width)."""
        return tuple(self.min_width if g.slimmable else 1.0 for g in self.groups)

    # --- running --------------------------------------------------------------------------
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.gm(*args, **kwargs)

    def extract(self, w: Widths | None = None) -> fx.GraphModule:
        """A plain GraphModule with physically smaller layers, at ``w`` (None: widths in force)."""
        from pareco_fx.passes import extract

        if w is None:
            return extract.run(self.gm, self._state)
        before = self._widths
        self.set_widths(w)
        try:
            return extract.run(self.gm, self._state)
        finally:
            self.set_widths(before)

    # --- costs ----------------------------------------------------------------------------
    def _program(self, name: str) -> Any:
        if name not in self._programs:
            from pareco_fx import cost_models

            self._programs[name] = cost_models.compile(name, self.analysis)
        return self._programs[name]

    def _batch(self, W: torch.Tensor) -> torch.Tensor:
        """``W`` validated (slimmable entries in (0, 1], NaN rejected), frozen entries read 1.0."""
        G = len(self.groups)
        W = torch.as_tensor(W, dtype=torch.float64)
        if W.dim() != 2 or W.shape[1] != G:
            raise WidthError(f"cost_batch expects a tensor of shape [B, {G}], got {tuple(W.shape)}")
        if not len(W):
            return W
        slim = torch.tensor([g.slimmable for g in self.groups])
        # Column extremes first (NaN propagates through them): one pass over W instead of four.
        low, high = torch.aminmax(W, dim=0)
        if not bool(((low > 0) & (high <= 1) | ~slim).all()):
            bad = ~((W > 0) & (W <= 1)) & slim
            row, col = [int(i) for i in bad.nonzero()[0]]
            raise WidthError(f"width {W[row, col].item()} of group {col} (row {row}) is outside (0, 1]")
        if bool(((low == 1) & (high == 1) | slim).all()):
            return W
        return torch.where(slim, W, torch.ones_like(W))

    def cost_batch(self, name: str, W: torch.Tensor) -> torch.Tensor:
        """Cost ``name`` of every row of ``W`` (``[B, len(groups)]``) → ``[B]`` (float64)."""
        return self._program(name)(self.analysis.features(self._batch(W)))

    def cost(self, name: str, w: Widths | None = None) -> float:
        """Cost ``name`` ("flops", "memory", "params", or a registered one) at ``w``."""
        W = torch.tensor([self._vector(w)], dtype=torch.float64)
        return float(self.cost_batch(name, W)[0])

    def cost_peak(self, name: str, w: Widths | None = None) -> list[str] | None:
        """For a max-type cost (memory): the node(s) where the peak sits at ``w``."""
        W = torch.tensor([self._vector(w)], dtype=torch.float64)
        return self._program(name).peak_node(self.analysis.features(W))

    # --- reporting ------------------------------------------------------------------------
    def slimmable_share(self) -> float:
        """Share of conv/linear output channels that belong to slimmable groups."""
        total = slimmable = 0
        seen = set()
        for node in self.analysis.gm.graph.nodes:
            layer = node.meta.get(META_LAYER)
            if node.op != "call_module" or not layer or "out" not in layer or node.target in seen:
                continue
            seen.add(node.target)
            gid, _ = self.analysis.resolve(layer["out"])
            total += len(gid)
            slimmable += sum(1 for g in gid if g >= 0 and self.groups[g].slimmable)
        return slimmable / total if total else 0.0

    def extra_repr(self) -> str:
        n = sum(g.slimmable for g in self.groups)
        return f"groups={len(self.groups)}, slimmable={n}, min_width={self.min_width}, divisor={self.divisor}"


"""Reductions (mean, sum, amax, …): the channel axis survives unless it is reduced away."""
from __future__ import annotations

from typing import Any

import torch

from pareco_fx.passes.labels import Layout
from pareco_fx.passes.rules import register_rule
from pareco_fx.passes.rules.pointwise import broadcast

__all__ = ["reduction"]


def reduction(ctx) -> Any:
    lay = ctx.layout(ctx.arg(0))
    out = ctx.out_shape()
    if not isinstance(lay, Layout):
        return None
    second = ctx.arg(1, "dim")
    if ctx.is_tensor(second):  # torch.max(x, y) and friends are element-wise
        return broadcast(ctx)
    dims = ctx.value(second)
    keepdim = bool(ctx.value(ctx.arg(2, "keepdim", False)))
    if lay.raw is not None:
        ctx.freeze(lay, f"boundary: per-element labels reach {ctx.where}")
        return _like(out, None)
    if lay.axis is None or dims is None:
        return _like(out, None)
    dims = [d % lay.ndim for d in (dims if isinstance(dims, (tuple, list)) else [dims])]
    if lay.axis in dims:
        return _like(out, None)
    axis = lay.axis if keepdim else lay.axis - sum(d < lay.axis for d in dims)
    return _like(out, (axis, lay.vec))


def _like(out: Any, labels: tuple | None) -> Any:
    """One layout per output tensor (max/min with a dim return values and indices)."""
    if isinstance(out, tuple) and all(isinstance(s, int) for s in out):
        return Layout.along(out, *labels) if labels else Layout.fixed(out)
    if isinstance(out, (tuple, list)):
        return type(out)(*(_like(o, labels) for o in out)) if hasattr(out, "_fields") else \
            type(out)(_like(o, labels) for o in out)
    return None


register_rule(
    torch.mean, torch.sum, torch.amax, torch.amin, torch.max, torch.min, torch.std, torch.var,
    torch.prod, torch.norm, torch.logsumexp, torch.argmax, torch.argmin, torch.all, torch.any,
    torch.nansum, torch.nanmean, torch.median, torch.count_nonzero,
    "mean", "sum", "amax", "amin", "max", "min", "std", "var", "prod", "norm", "logsumexp",
    "argmax", "argmin", "all", "any", "nansum", "nanmean", "median", "count_nonzero",
    kind="reduction",
)(reduction)

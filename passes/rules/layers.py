"""Layers with parameters: channel creators (conv, linear, embedding) and per-channel norms.

A creator gives its output channels fresh labels and records, in ``node.meta["pareco.layer"]``,
the label vectors its weights are sliced by (``inp``, ``out``); a norm records ``vec``. Grouped
convolutions and GroupNorm tie each block of channels into one unit, so blocks stay whole.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from pareco_fx.passes.labels import FIXED, LABEL_DTYPE, Layout
from pareco_fx.passes.rules import register_rule

__all__ = ["tie_blocks"]


def _input_vec(ctx, lay: Layout | None, axis: int, size: int) -> torch.Tensor:
    """Labels of the axis a layer reads; anything else freezes (the layer reads a fixed size)."""
    if isinstance(lay, Layout) and lay.axis == axis % lay.ndim:
        return lay.vec
    if isinstance(lay, Layout) and lay.labeled:
        ctx.freeze(lay, f"boundary: {ctx.where} reads channels along another axis")
    return torch.full((size,), FIXED, dtype=LABEL_DTYPE)


def tie_blocks(ctx, vecs: list[torch.Tensor], groups: int, why: str) -> None:
    """Tie block g of every vector into one unit (grouped conv, GroupNorm)."""
    if groups <= 1:
        return
    ref = vecs[-1].view(groups, -1)[:, :1]
    for v in vecs:
        blocks = v.view(groups, -1)
        ctx.union(blocks, ref.expand_as(blocks), why)


def _conv(ctx) -> Layout | None:
    m = ctx.module
    lay = ctx.layout(ctx.arg(0))
    out_shape = ctx.out_shape()
    spatial = len(m.kernel_size)
    cax = 1 if lay.ndim == spatial + 2 else 0
    inp = ctx.shared_vec(_input_vec(ctx, lay, cax, m.in_channels), "in")
    out = ctx.module_atom(m.out_channels)
    tie_blocks(ctx, [inp, out], m.groups, "grouped convolution")
    ctx.set_layer(inp=inp, out=out)
    return Layout.along(out_shape, cax, out)


def _linear(ctx) -> Layout | None:
    m = ctx.module
    lay = ctx.layout(ctx.arg(0))
    out_shape = ctx.out_shape()
    if isinstance(lay, Layout) and lay.axis is not None and lay.axis != lay.ndim - 1:
        # a linear over a non-channel axis: its features stay fixed, the channels pass through
        ctx.set_layer(inp=torch.full((m.in_features,), FIXED, dtype=LABEL_DTYPE),
                      out=torch.full((m.out_features,), FIXED, dtype=LABEL_DTYPE))
        return Layout.along(out_shape, lay.axis, lay.vec)
    inp = ctx.shared_vec(_input_vec(ctx, lay, -1, m.in_features), "in")
    out = ctx.module_atom(m.out_features)
    ctx.set_layer(inp=inp, out=out)
    return Layout.along(out_shape, len(out_shape) - 1, out)


def _embedding(ctx) -> Layout | None:
    out = ctx.module_atom(ctx.module.embedding_dim)
    ctx.set_layer(out=out)
    shape = ctx.out_shape()
    return Layout.along(shape, len(shape) - 1, out)


def _norm(ctx) -> Layout | None:
    """BatchNorm/InstanceNorm/GroupNorm/PReLU: per-channel parameters along axis 1."""
    m = ctx.module
    lay = ctx.layout(ctx.arg(0))
    if not isinstance(lay, Layout):
        return None
    num = getattr(m, "num_features", None) or getattr(m, "num_channels", None) or getattr(m, "num_parameters", 1)
    if num <= 1:
        return lay
    cax = 1 if lay.ndim > 1 else 0
    if isinstance(m, nn.modules.instancenorm._InstanceNorm) and lay.ndim == int(type(m).__name__[-2]) + 1:
        cax = 0  # unbatched input
    vec = ctx.shared_vec(_input_vec(ctx, lay, cax, num), "vec")
    if isinstance(m, nn.GroupNorm):
        tie_blocks(ctx, [vec], m.num_groups, "GroupNorm groups")
    ctx.set_layer(vec=vec)
    return lay


def _layer_norm(ctx) -> Layout | None:
    m = ctx.module
    lay = ctx.layout(ctx.arg(0))
    if not isinstance(lay, Layout):
        return None
    first = lay.ndim - len(m.normalized_shape)
    if lay.axis is not None and lay.axis >= first:
        ctx.set_layer(vec=ctx.shared_vec(lay.vec, "vec"), axis=lay.axis - first)
    return lay


register_rule(nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
              nn.ConvTranspose3d, kind="layer")(_conv)
register_rule(nn.Linear, kind="layer")(_linear)
register_rule(nn.Embedding, kind="layer")(_embedding)
register_rule(nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.InstanceNorm1d,
              nn.InstanceNorm2d, nn.InstanceNorm3d, nn.GroupNorm, nn.PReLU, kind="layer")(_norm)
register_rule(nn.LayerNorm, kind="layer")(_layer_norm)


# --- functional forms: their parameters come through get_attr and are sliced there -----------

def _tie_param(ctx, param, vec: torch.Tensor) -> None:
    lay = ctx.layout(param)
    if isinstance(lay, Layout) and lay.labeled:
        if lay.materialize().numel() == vec.numel():
            ctx.union(lay.materialize().reshape(-1), vec, "per-channel parameter")
        else:
            ctx.freeze(lay, f"parameter of unexpected shape at {ctx.where}")


def _f_norm(ctx, param_args: tuple[tuple[int, str], ...], groups_arg: tuple[int, str] | None = None):
    lay = ctx.layout(ctx.arg(0))
    if not isinstance(lay, Layout):
        return None
    if lay.axis != (1 if lay.ndim > 1 else 0) and ctx.node.target is not F.layer_norm:
        ctx.freeze_inputs(f"boundary: {ctx.where} reads channels along another axis")
        return lay
    if ctx.node.target is F.layer_norm:
        shape = ctx.value(ctx.arg(1, "normalized_shape"))
        if lay.axis is None or lay.axis < lay.ndim - len(shape):
            return lay
        if len(shape) != 1:
            ctx.freeze_inputs(f"boundary: layer norm over several axes at {ctx.where}")
            return lay
    if groups_arg is not None and lay.axis is not None:
        tie_blocks(ctx, [lay.vec], int(ctx.value(ctx.arg(*groups_arg))), "GroupNorm groups")
    if lay.axis is not None:
        for i, name in param_args:
            p = ctx.arg(i, name)
            if p is not None:
                _tie_param(ctx, p, lay.vec)
    return lay


register_rule(F.batch_norm, kind="layer")(
    lambda ctx: _f_norm(ctx, ((1, "running_mean"), (2, "running_var"), (3, "weight"), (4, "bias"))))
register_rule(F.instance_norm, kind="layer")(
    lambda ctx: _f_norm(ctx, ((1, "running_mean"), (2, "running_var"), (3, "weight"), (4, "bias"))))
register_rule(F.layer_norm, kind="layer")(lambda ctx: _f_norm(ctx, ((2, "weight"), (3, "bias"))))
register_rule(F.group_norm, kind="layer")(
    lambda ctx: _f_norm(ctx, ((2, "weight"), (3, "bias")), groups_arg=(1, "num_groups")))
register_rule(F.prelu, kind="layer")(lambda ctx: _f_norm(ctx, ((1, "weight"),)))


def _f_creator(ctx, channel_axis_of_output: int, weight_in_axis: int):
    """F.linear / F.conv*d with a weight read through get_attr (groups == 1)."""
    x, w = ctx.arg(0, "input"), ctx.arg(1, "weight")
    lay, wl = ctx.layout(x), ctx.layout(w)
    out_shape = ctx.out_shape()
    groups = int(ctx.value(ctx.arg(6, "groups", 1))) if ctx.node.target is not F.linear else 1
    if not isinstance(wl, Layout) or groups != 1 or not (isinstance(w, type(ctx.node)) and w.op == "get_attr"):
        ctx.freeze_inputs(f"boundary: {ctx.where} with a computed or grouped weight")
        return Layout.fixed(out_shape)
    cout, cin = wl.shape[0], wl.shape[weight_in_axis]
    cax = channel_axis_of_output % len(out_shape)
    inp = _input_vec(ctx, lay, cax if ctx.node.target is not F.linear else -1, cin)
    out = ctx.new_atom(cout)
    ctx.set_param_axes(w, {0: out, weight_in_axis: inp})
    b = ctx.arg(2, "bias")
    if b is not None:
        _tie_param(ctx, b, out)
    return Layout.along(out_shape, cax, out)


register_rule(F.linear, kind="layer")(lambda ctx: _f_creator(ctx, -1, 1))
register_rule(F.conv1d, F.conv2d, F.conv3d, kind="layer")(lambda ctx: _f_creator(ctx, 1, 1))

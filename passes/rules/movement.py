"""Data-movement ops, handled generically: the op itself runs on tensors of channel labels.

view/reshape/flatten/permute/cat/split/chunk/pixel_shuffle/channel shuffles … need no rule of
their own: wherever a label lands is where its channel went. Ops that only resample space
(pooling, interpolation, spatial padding) keep the channel axis as it is.
"""
from __future__ import annotations

import operator
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from pareco_fx.passes.labels import LABEL_DTYPE, Layout
from pareco_fx.passes.rules import register_rule

__all__ = ["movement", "channelwise", "getitem"]


def _labels_of(ctx, a: Any) -> Any:
    if isinstance(a, fx.Node):
        lay = ctx.layout(a)
        if isinstance(lay, Layout):
            return lay.materialize().contiguous()
        if isinstance(lay, (tuple, list)):
            return type(lay)(x.materialize().contiguous() if isinstance(x, Layout) else x for x in lay)
        return ctx.value(a)
    return a


def movement(ctx) -> Any:
    """Run the op on label tensors and read where each label went."""
    node = ctx.node
    args = fx.node.map_aggregate(node.args, lambda a: _labels_of(ctx, a))
    kwargs = fx.node.map_aggregate(node.kwargs, lambda a: _labels_of(ctx, a))
    try:
        if node.op == "call_function":
            out = node.target(*args, **kwargs)
        elif node.op == "call_method":
            out = getattr(args[0], node.target)(*args[1:], **kwargs)
        else:
            out = ctx.module(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - the op refuses integer labels: be safe, freeze
        ctx.freeze_inputs(f"boundary: {ctx.where} could not be followed on channel labels ({type(e).__name__})")
        ctx.kind = "boundary"
        return None

    def factor(t: Any) -> Any:
        if isinstance(t, torch.Tensor):
            return ctx.factor(t, tie=False) if t.dtype == LABEL_DTYPE else Layout.fixed(tuple(t.shape))
        return t

    return fx.node.map_aggregate(out, factor)


def getitem(ctx) -> Any:
    """``x[idx]`` on a tensor is movement; on a tuple/list of layouts it picks one."""
    src = ctx.arg(0)
    lay = ctx.layout(src)
    if isinstance(lay, Layout):
        found: list[fx.Node] = []
        fx.node.map_arg(ctx.arg(1), lambda n: found.append(n) or n)
        tensor_index = any(isinstance(ctx.layout(n), Layout) for n in found)
        if tensor_index:
            ctx.freeze_inputs(f"boundary: indexing with a tensor at {ctx.where}")
            ctx.kind = "boundary"
            return None
        return movement(ctx)
    if isinstance(lay, (tuple, list)):
        return lay[ctx.value(ctx.arg(1))]
    if isinstance(lay, dict):
        return lay.get(ctx.value(ctx.arg(1)))
    return None


register_rule(operator.getitem, kind="movement")(getitem)

_MOVEMENT_FUNCS = [
    torch.reshape, torch.flatten, torch.unflatten, torch.permute, torch.transpose, torch.swapaxes,
    torch.swapdims, torch.movedim, torch.moveaxis, torch.squeeze, torch.unsqueeze, torch.cat,
    torch.concat, torch.concatenate, torch.stack, torch.hstack, torch.vstack, torch.chunk,
    torch.split, torch.tensor_split, torch.unbind, torch.narrow, torch.roll, torch.flip,
    torch.t, torch.tile, torch.repeat_interleave, torch.channel_shuffle, torch.pixel_shuffle,
    torch.pixel_unshuffle, F.pixel_shuffle, F.pixel_unshuffle, torch.select, torch.diagonal,
    torch.broadcast_to, torch.atleast_2d, torch.atleast_3d, torch.rot90, torch.clone, torch.detach,
]
_MOVEMENT_METHODS = [
    "view", "reshape", "flatten", "unflatten", "permute", "transpose", "swapaxes", "movedim",
    "squeeze", "squeeze_", "unsqueeze", "unsqueeze_", "expand", "expand_as", "repeat", "chunk",
    "split", "tensor_split", "unbind", "narrow", "roll", "flip", "t", "select", "view_as",
    "reshape_as", "repeat_interleave", "tile", "unfold", "diagonal", "mT", "T", "contiguous",
    "clone", "detach",
]
register_rule(
    *_MOVEMENT_FUNCS, *_MOVEMENT_METHODS, nn.Flatten, nn.Unflatten, nn.PixelShuffle,
    nn.PixelUnshuffle, nn.ChannelShuffle, kind="movement",
)(movement)

try:  # torchvision's wrapped helper of Swin's patch merging: pure data movement
    from torchvision.models.swin_transformer import _patch_merging_pad

    register_rule(_patch_merging_pad, kind="movement")(movement)
except ImportError:  # pragma: no cover
    pass


def _spatial_dims(ctx) -> int:
    m = ctx.module
    name = type(m).__name__ if m is not None else getattr(ctx.node.target, "__name__", "")
    for n in (1, 2, 3):
        if name.endswith(f"{n}d"):
            return n
    lay = ctx.layout(ctx.arg(0))
    return max(1, lay.ndim - 2) if isinstance(lay, Layout) else 1


def channelwise(ctx) -> Layout | None:
    """Pooling, interpolation, spatial padding: the channel axis passes through unchanged."""
    lay = ctx.layout(ctx.arg(0))
    out = ctx.out_shape()
    if not isinstance(lay, Layout) or not isinstance(out, tuple):
        return None
    if lay.raw is not None:
        ctx.freeze(lay, f"boundary: per-element labels reach {ctx.where}")
        return Layout.fixed(out)
    if lay.axis is None:
        return Layout.fixed(out)
    first_spatial = lay.ndim - _spatial_dims(ctx)
    if ctx.node.target in (F.pad,) or isinstance(ctx.module, nn.modules.padding._ReflectionPadNd | nn.modules.padding._ReplicationPadNd | nn.modules.padding._ConstantPadNd | nn.ZeroPad2d):
        pad = ctx.value(ctx.arg(1, "pad")) if ctx.module is None else ctx.module.padding
        first_spatial = lay.ndim - len(pad) // 2
        touched = [lay.ndim - 1 - i // 2 for i, p in enumerate(pad) if p]
        if lay.axis in touched:
            ctx.freeze(lay, f"boundary: padding of the channel axis at {ctx.where}")
            return Layout.fixed(out)
        return Layout.along(out, lay.axis, lay.vec)
    if lay.axis >= first_spatial:
        ctx.freeze(lay, f"boundary: {ctx.where} works over the channel axis")
        return Layout.fixed(out)
    return Layout.along(out, lay.axis, lay.vec)


_POOL_MODULES = [
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d, nn.LPPool1d, nn.LPPool2d, nn.Upsample,
    nn.UpsamplingNearest2d, nn.UpsamplingBilinear2d, nn.ZeroPad2d, nn.ConstantPad1d,
    nn.ConstantPad2d, nn.ConstantPad3d, nn.ReflectionPad1d, nn.ReflectionPad2d, nn.ReflectionPad3d,
    nn.ReplicationPad1d, nn.ReplicationPad2d, nn.ReplicationPad3d,
]
_POOL_FUNCS = [
    F.max_pool1d, F.max_pool2d, F.max_pool3d, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d,
    F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d, F.adaptive_max_pool1d,
    F.adaptive_max_pool2d, F.adaptive_max_pool3d, F.lp_pool1d, F.lp_pool2d, F.interpolate,
    F.upsample, F.upsample_nearest, F.upsample_bilinear, F.pad, torch.max_pool1d,
    torch.max_pool2d, torch.avg_pool1d, torch.adaptive_avg_pool1d,
]
register_rule(*_POOL_MODULES, *_POOL_FUNCS, kind="channelwise")(channelwise)

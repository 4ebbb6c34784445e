"""Element-wise ops: activations, arithmetic with broadcasting, dropout, casts.

Operands that meet position by position tie their channels; an operand broadcast along the
channel axis (size 1 there) ties nothing; a fixed-size operand freezes the channels it meets.
"""
from __future__ import annotations

import operator

import torch
import torch.nn as nn
import torch.nn.functional as F

from pareco_fx.passes.labels import Layout
from pareco_fx.passes.rules import register_rule

__all__ = ["broadcast", "same_layout", "ACTIVATION_MODULES"]


def same_layout(ctx) -> Layout | None:
    """Output has the layout of the first tensor argument (unary ops, casts, softmax)."""
    shape = ctx.out_shape()
    for a in ctx.node.all_input_nodes:
        lay = ctx.layout(a)
        if isinstance(lay, Layout):
            if isinstance(shape, tuple) and tuple(lay.shape) == shape:
                return lay
            break
    return broadcast(ctx)


def broadcast(ctx) -> Layout | None:
    """n-ary element-wise op with numpy broadcasting."""
    out_shape = ctx.out_shape()
    if not isinstance(out_shape, tuple):
        return None
    nd = len(out_shape)
    ops = []
    for a in ctx.node.all_input_nodes:
        lay = ctx.layout(a)
        if isinstance(lay, Layout):
            ops.append((a, lay, nd - lay.ndim))
    factored = [(a, lay, off) for a, lay, off in ops if lay.axis is not None]
    if not factored:
        raws = [lay for _, lay, _ in ops if lay.raw is not None]
        if not raws:
            return Layout.fixed(out_shape)
        first = raws[0].materialize().expand(out_shape)
        for r in raws[1:]:
            ctx.union(first, r.materialize().expand(out_shape), "element-wise op")
        return ctx.factor(first.contiguous())
    ref_node, ref, ref_off = max(factored, key=lambda t: t[1].shape[t[1].axis])
    axis = ref.axis + ref_off

    def size_along(lay: Layout, off: int, d: int) -> int:
        return lay.shape[d - off] if d - off >= 0 else 1

    for a, lay, off in ops:
        if lay is ref or size_along(lay, off, axis) == 1:
            continue
        if lay.axis is not None:
            if lay.axis + off == axis:
                ctx.union(ref.vec, lay.vec, "element-wise op")
            else:  # two channel axes would cross: keep it simple and safe
                reason = f"boundary: two channel axes meet at {ctx.where}"
                ctx.freeze(ref, reason)
                ctx.freeze(lay, reason)
                return Layout.fixed(out_shape)
        elif lay.raw is not None:
            ctx.union(ref.materialize().expand(out_shape) if ref_off == 0 else
                      ref.materialize().reshape((1,) * ref_off + ref.shape).expand(out_shape),
                      lay.materialize().reshape((1,) * off + lay.shape).expand(out_shape),
                      "element-wise op")
        else:
            what = f"model input '{a.name}'" if a.op == "placeholder" else f"fixed-size operand '{a.name}'"
            ctx.freeze(ref, f"meets {what} at {ctx.where}")
    return Layout.along(out_shape, axis, ref.vec)


ACTIVATION_MODULES = tuple(
    cls for name in dir(nn.modules.activation)
    if isinstance(cls := getattr(nn.modules.activation, name), type) and issubclass(cls, nn.Module)
    and cls not in (nn.Module, nn.MultiheadAttention, nn.GLU, nn.PReLU)
)

register_rule(
    *ACTIVATION_MODULES, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
    nn.AlphaDropout, nn.FeatureAlphaDropout, kind="pointwise",
)(same_layout)

try:
    from torchvision.ops import StochasticDepth

    register_rule(StochasticDepth, kind="pointwise")(same_layout)
except ImportError:  # pragma: no cover
    pass

_UNARY_FUNCS = [
    F.relu, F.relu_, F.relu6, F.elu, F.elu_, F.selu, F.celu, F.leaky_relu, F.leaky_relu_, F.gelu,
    F.silu, F.mish, F.hardswish, F.hardsigmoid, F.hardtanh, F.hardtanh_, F.sigmoid, F.tanh,
    F.softplus, F.softsign, F.tanhshrink, F.hardshrink, F.softshrink, F.logsigmoid, F.threshold,
    F.rrelu, F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout,
    F.feature_alpha_dropout, F.softmax, F.log_softmax, F.softmin, F.normalize,
    torch.relu, torch.relu_, torch.sigmoid, torch.tanh, torch.exp, torch.log, torch.sqrt,
    torch.rsqrt, torch.abs, torch.neg, torch.sin, torch.cos, torch.erf, torch.softmax,
    torch.log_softmax, torch.square, torch.reciprocal, torch.sign, torch.floor, torch.ceil,
    torch.round, torch.nan_to_num, torch.zeros_like, torch.ones_like, torch.empty_like,
    torch.full_like, torch.rand_like, torch.randn_like,
]
_UNARY_METHODS = [
    "relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "exp", "exp_", "log", "sqrt",
    "rsqrt", "abs", "neg", "sin", "cos", "erf", "softmax", "log_softmax", "square", "reciprocal",
    "sign", "floor", "ceil", "round", "float", "half", "double", "bfloat16",
    "to", "type", "type_as", "requires_grad_", "zero_", "fill_", "normal_",
    "uniform_", "bernoulli_", "clamp", "clamp_", "clip", "clip_", "pow", "pow_", "nan_to_num",
    "hardtanh_", "cpu", "cuda",
]
_BINARY_FUNCS = [
    operator.add, operator.sub, operator.mul, operator.truediv, operator.floordiv, operator.pow,
    operator.iadd, operator.isub, operator.imul, operator.itruediv, operator.neg, operator.gt,
    operator.lt, operator.ge, operator.le, operator.eq, operator.ne, operator.and_, operator.or_,
    torch.add, torch.sub, torch.subtract, torch.mul, torch.multiply, torch.div, torch.divide,
    torch.true_divide, torch.maximum, torch.minimum, torch.where, torch.clamp, torch.clip,
    torch.pow, torch.lerp, torch.addcmul, torch.addcdiv, torch.gt, torch.lt, torch.ge, torch.le,
    torch.eq, torch.ne, torch.logical_and, torch.logical_or, torch.fmod, torch.remainder,
    torch.atan2, torch.hypot,
]
_BINARY_METHODS = [
    "add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_", "true_divide", "maximum",
    "minimum", "masked_fill", "masked_fill_", "lerp", "addcmul", "addcdiv", "addcmul_", "gt",
    "lt", "ge", "le", "eq", "ne", "where", "copy_",
]
register_rule(*_UNARY_FUNCS, *_UNARY_METHODS, kind="pointwise")(same_layout)
register_rule(*_BINARY_FUNCS, *_BINARY_METHODS, kind="pointwise")(broadcast)

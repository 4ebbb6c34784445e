"""Channel-mixing products: matmul, bmm, einsum, scaled_dot_product_attention.

All are read as einsum: operand axes that share a letter tie their channels (a contracted axis
must keep the same channels on both sides); the output's axes take the labels of their letters.
"""
from __future__ import annotations

import operator
import string
from typing import Any

import torch
import torch.nn.functional as F

from pareco_fx.passes.labels import Layout
from pareco_fx.passes.rules import register_rule

__all__ = ["einsum_layout"]


def einsum_layout(ctx, specs: list[str], out_spec: str, operands: list[Any]) -> Layout | None:
    out_shape = ctx.out_shape()
    by_letter: dict[str, list[tuple[torch.Tensor | None, int, Any]]] = {}
    for spec, a in zip(specs, operands):
        lay = ctx.layout(a)
        if not isinstance(lay, Layout):
            continue
        if lay.raw is not None:
            ctx.freeze_inputs(f"boundary: per-element labels reach {ctx.where}")
            return Layout.fixed(out_shape)
        for d, letter in enumerate(spec):
            vec = lay.vec if lay.axis == d else None
            by_letter.setdefault(letter, []).append((vec, lay.shape[d], a))
    labeled_out = []
    for letter, entries in by_letter.items():
        vecs = [v for v, size, _ in entries if v is not None and size > 1]
        fixed = [a for v, size, a in entries if v is None and size > 1]
        if not vecs:
            continue
        if fixed:
            for v in vecs:
                ctx.freeze(v, f"meets fixed-size operand '{fixed[0].name}' at {ctx.where}")
        for v in vecs[1:]:
            ctx.union(vecs[0], v, "product over shared axis")
        if letter in out_spec:
            labeled_out.append((out_spec.index(letter), vecs[0]))
    if len(labeled_out) > 1:
        for _, v in labeled_out:
            ctx.freeze(v, f"boundary: two channel axes meet at {ctx.where}")
        return Layout.fixed(out_shape)
    if labeled_out:
        return Layout.along(out_shape, *labeled_out[0])
    return Layout.fixed(out_shape)


def _batch_letters(n: int) -> str:
    return string.ascii_uppercase[:n]


def _matmul(ctx) -> Layout | None:
    a, b = ctx.arg(0), ctx.arg(1)
    la, lb = ctx.layout(a), ctx.layout(b)
    if not (isinstance(la, Layout) and isinstance(lb, Layout)) or la.ndim < 1 or lb.ndim < 1:
        return None
    if la.ndim == 1 or lb.ndim == 1:
        sa = "m" if la.ndim == 1 else _batch_letters(la.ndim - 2) + "nm"
        sb = "m" if lb.ndim == 1 else _batch_letters(lb.ndim - 2) + "mp"
        out = (sa[:-1] if la.ndim > 1 else "") + (sb[-1] if lb.ndim > 1 else "")
        if lb.ndim > 2:
            return None
        return einsum_layout(ctx, [sa, sb], out, [a, b])
    nb = max(la.ndim, lb.ndim) - 2
    batch = _batch_letters(nb)
    sa = batch[nb - (la.ndim - 2):] + "nm"
    sb = batch[nb - (lb.ndim - 2):] + "mp"
    return einsum_layout(ctx, [sa, sb], batch + "np", [a, b])


def _einsum(ctx) -> Layout | None:
    eq = ctx.value(ctx.arg(0)).replace(" ", "")
    ops = list(ctx.args[1:])
    if len(ops) == 1 and isinstance(ops[0], (list, tuple)):
        ops = list(ops[0])
    lhs, _, out = eq.partition("->")
    specs = lhs.split(",")
    if "..." in eq:
        n = max(ctx.layout(o).ndim - (len(s) - 3) for s, o in zip(specs, ops) if "..." in s)
        ell = _batch_letters(n)
        specs = [s.replace("...", ell[n - (ctx.layout(o).ndim - (len(s) - 3)):]) for s, o in zip(specs, ops)]
        out = out.replace("...", ell)
    if not out and "->" not in eq:
        letters = "".join(specs)
        out = "".join(sorted(c for c in set(letters) if letters.count(c) == 1))
    return einsum_layout(ctx, specs, out, ops)


def _sdpa(ctx) -> Layout | None:
    q, k, v = ctx.arg(0, "query"), ctx.arg(1, "key"), ctx.arg(2, "value")
    mask = ctx.arg(3, "attn_mask")
    if isinstance(ctx.layout(mask), Layout):
        ctx.freeze(ctx.layout(mask), f"attention mask at {ctx.where}")
    nd = ctx.layout(q).ndim
    batch = _batch_letters(nd - 2)
    return einsum_layout(ctx, [batch + "le", batch + "se", batch + "sv"], batch + "lv", [q, k, v])


register_rule(torch.matmul, operator.matmul, torch.bmm, torch.mm, "matmul", "bmm", "mm",
              kind="contraction")(_matmul)
register_rule(torch.einsum, kind="contraction")(_einsum)
register_rule(F.scaled_dot_product_attention, kind="contraction")(_sdpa)

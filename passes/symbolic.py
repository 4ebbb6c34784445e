"""Symbolic sizes: every tensor axis and parameter as a polynomial of the active units.

Writes ``pareco.sym`` (SymTensor pytrees), ``pareco.params`` and ``pareco.param_numel`` to
``node.meta`` and fills ``ChannelAnalysis.param_syms``, ``tables`` and group ``members``: all a
cost model needs (see ``cost_models``).
"""
from __future__ import annotations

from typing import Any

import dataclasses
import math

import numpy as np
import torch

from pareco_fx.ir import META_PARAM_NUMEL, META_PARAMS, META_SYM, Poly, SymTensor, prod
from pareco_fx.passes.grouping import present_groups
from pareco_fx.passes.labels import META_LAYER, Layout, leaves, map_layouts, varying_axes
from pareco_fx.trace import META_STORAGE, modules_by_name

__all__ = ["annotate", "param_axes"]


class _SymBuilder:
    def __init__(self, an: Any):
        self.an = an
        self.cache: dict[int, tuple[torch.Tensor, Poly]] = {}
        self.table_index: dict[tuple, int] = {}

    def count(self, vec: torch.Tensor) -> Poly:
        """Active positions of a label vector as a Poly of the features."""
        hit = self.cache.get(id(vec))
        if hit is not None and hit[0] is vec:
            return hit[1]
        gid, rank = self.an.resolve(vec)
        poly = Poly.const(int((gid < 0).sum()))
        for g in present_groups(gid):
            U = self.an.groups[g].units
            per_unit = np.bincount(rank[gid == g], minlength=U)[:U]  # positions of each unit
            table = np.concatenate(([0], np.cumsum(per_unit)))  # positions with rank < u
            m = table[1] if U >= 1 else 0
            if (per_unit == m).all():
                poly = poly + Poly.var(g, float(m))
            else:
                key = (g, tuple(table.tolist()))
                if key not in self.table_index:
                    self.table_index[key] = len(self.an.groups) + len(self.an.tables)
                    self.an.tables.append((g, torch.tensor(table, dtype=torch.float64)))
                poly = poly + Poly.var(self.table_index[key])
        self.cache[id(vec)] = (vec, poly)
        return poly

    def shape(self, lay: Layout) -> tuple[Poly, ...]:
        if lay.raw is not None:  # mid-shuffle: only the element count is meaningful
            return (self.count(lay.raw.reshape(-1)),) + tuple(Poly.const(1) for _ in lay.shape[1:])
        dims = [Poly.const(s) for s in lay.shape]
        if lay.axis is not None:
            dims[lay.axis] = self.count(lay.vec)
        return tuple(dims)

    def param_shape(self, shape: tuple[int, ...], axes: dict[int, torch.Tensor]) -> tuple[Poly, ...]:
        dims = [Poly.const(s) for s in shape]
        for a, v in axes.items():
            dims[a] = self.count(v)
        return tuple(dims)


def param_axes(an: Any, lay: Layout) -> dict[int, torch.Tensor]:
    """Channel axes of a parameter read through get_attr: axis -> label vector."""
    if lay is None or not lay.labeled:
        return {}
    if lay.axis is not None:
        return {lay.axis: lay.vec}
    raw = lay.raw
    gid, rank = an.resolve(raw)
    key = torch.from_numpy(np.where(gid < 0, -1, gid * (1 << 20) + rank)).view(raw.shape)
    axes = varying_axes(key)
    if not axes:
        return {}
    if len(axes) > 1:
        return {a: None for a in axes}  # inconsistent: the caller freezes it
    a = axes[0]
    idx = tuple(slice(None) if d == a else 0 for d in range(raw.dim()))
    return {a: raw[idx].clone()}


def _annotate(an: Any, prop: Any) -> None:
    sb = _SymBuilder(an)
    gm = an.gm
    modules = modules_by_name(gm)
    an.param_syms = {name: tuple(Poly.const(s) for s in p.shape) for name, p in gm.named_parameters()}
    for node in gm.graph.nodes:
        lay = prop.env.get(node)
        storages = node.meta.get(META_STORAGE, [])
        if node.op == "get_attr" and isinstance(lay, Layout):
            axes = prop.param_override.get(node) or param_axes(an, lay)
            if any(v is None for v in axes.values()):
                prop_freeze_layout(an, lay, f"parameter '{node.target}' is used along several channel axes")
                axes = {}
            node.meta["pareco.param_axes"] = axes
            sym = sb.param_shape(lay.shape, axes)
            st = storages[0] if storages else (id(node), int(np.prod(lay.shape)))
            node.meta[META_SYM] = SymTensor(lay.shape, sym, st[0], st[1])
            if node.target in an.param_syms:
                an.param_syms[node.target] = sym
            continue
        if lay is None:
            continue
        flat = [x for x in leaves(lay)]
        it = iter(storages)

        def to_sym(x: Layout) -> SymTensor:
            st = next(it, None)
            if st is None:
                st = (id(x), math.prod(x.shape))
            return SymTensor(x.shape, sb.shape(x), st[0], st[1])

        node.meta[META_SYM] = map_layouts(lay, to_sym) if flat else None
        layer = node.meta.get(META_LAYER)
        if node.op == "call_module" and layer is not None:
            from pareco_fx.layers import param_shapes  # the layer runtime knows its parameter axes

            mod = modules[node.target]
            shapes = param_shapes(mod, layer, sb.count)
            node.meta[META_PARAMS] = shapes
            for pname, s in shapes.items():
                an.param_syms[f"{node.target}.{pname}"] = s
    for node in gm.graph.nodes:
        total = Poly()
        if node.op == "call_module":
            mod = modules[node.target]
            shapes = node.meta.get(META_PARAMS, {})
            for pname, p in mod.named_parameters():
                total = total + prod(shapes.get(pname, tuple(Poly.const(s) for s in p.shape)))
        elif node.op in ("call_function", "call_method"):
            seen = set()
            for a in node.all_input_nodes:
                if a.op == "get_attr" and a.target in an.param_syms and a.target not in seen:
                    seen.add(a.target)
                    total = total + prod(an.param_syms[a.target])
        if total.terms:
            node.meta[META_PARAM_NUMEL] = total


def prop_freeze_layout(an: Any, lay: Layout, reason: str) -> None:
    gid, _ = an.resolve(lay.materialize())
    an.freeze_groups(present_groups(gid), reason)


def _members(an: Any, prop: Any) -> None:
    members: list[dict[str, None]] = [dict() for _ in an.groups]
    groups_of: dict[int, tuple[torch.Tensor, list[int]]] = {}
    for node in an.gm.graph.nodes:
        name = node.target if node.op in ("call_module", "get_attr") else node.name
        vecs = []
        for lay in leaves(prop.env.get(node)):
            if isinstance(lay, Layout) and lay.labeled:
                vecs.append(lay.vec if lay.axis is not None else lay.raw)
        for v in (node.meta.get(META_LAYER) or {}).values():
            if isinstance(v, torch.Tensor):
                vecs.append(v)
        for v in vecs:
            hit = groups_of.get(id(v))
            if hit is None or hit[0] is not v:  # most vectors are shared by several nodes
                hit = groups_of[id(v)] = (v, present_groups(an.resolve(v)[0]))
            for g in hit[1]:
                members[g][name] = None
    an.groups = [dataclasses.replace(g, members=tuple(m)) for g, m in zip(an.groups, members)]


def annotate(an: Any, prop: Any) -> None:
    _annotate(an, prop)
    _members(an, prop)

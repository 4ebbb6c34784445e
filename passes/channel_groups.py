"""Channel-group analysis: channel-label propagation and union-find.

``run(gm, divisor)`` walks a traced graph (``pareco_fx.trace.trace``) in execution order. Layers
that create channels give them fresh labels; every other op moves, ties or drops labels by the
rule registered for it (``passes/rules``); ops without a rule are boundaries whose channels are
frozen. Ties are collected as pairs of channel ids; their connected components are the units of
slimming, and units that always appear side by side in the same order form a group (a group is
cut wherever two units meet in one tensor but not in another: concat offsets, splits).

Results go to ``node.meta`` (``pareco.layout``, ``pareco.layer``, ``pareco.sym`` …) and to the
returned :class:`ChannelAnalysis`.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterable

import numpy as np
import torch
import torch.fx as fx

from pareco_fx.errors import AnalysisError
from pareco_fx.ir import META_LAYOUT, META_VALUE, ChannelGroup, Poly
from pareco_fx.passes.grouping import units_and_groups
from pareco_fx.passes.labels import (
    FIXED, LABEL_DTYPE, META_GATHER, META_KIND, META_LAYER, Layout, leaves, map_layouts, varying_axes,
)
from pareco_fx.passes.rules import KIND, rule_for
from pareco_fx.passes.symbolic import annotate
from pareco_fx.trace import modules_by_name

__all__ = ["run", "ChannelAnalysis", "Ctx", "META_LAYER", "META_KIND", "META_GATHER", "leaves", "map_layouts"]


def _meta_shapes(node: fx.Node) -> Any:
    """Pytree of output shapes (tuples) mirroring the value; None for non-tensors."""
    tm = node.meta.get("tensor_meta")

    def conv(m: Any) -> Any:
        if hasattr(m, "shape") and hasattr(m, "dtype"):
            return tuple(m.shape)
        if isinstance(m, (tuple, list)):
            return type(m)(conv(x) for x in m) if not hasattr(m, "_fields") else type(m)(*(conv(x) for x in m))
        if isinstance(m, dict):
            return {k: conv(v) for k, v in m.items()}
        return None

    return conv(tm) if tm is not None else None


def _describe(node: fx.Node) -> str:
    if node.op == "call_module":
        return f"module '{node.target}'"
    if node.op == "call_method":
        return f"method '.{node.target}()' at node '{node.name}'"
    if node.op == "call_function":
        name = getattr(node.target, "__name__", str(node.target))
        return f"function '{name}' at node '{node.name}'"
    return f"node '{node.name}'"


class Ctx:
    """What a rule sees of one node, and the actions it may take."""

    def __init__(self, prop: "_Propagator", node: fx.Node, kind: str = "custom"):
        self.prop = prop
        self.node = node
        self.kind = kind
        self.module = prop.modules[node.target] if node.op == "call_module" else None
        self.where = _describe(node)

    # --- reading -------------------------------------------------------------------------
    @property
    def args(self) -> tuple:
        return self.node.args

    @property
    def kwargs(self) -> dict:
        return self.node.kwargs

    def arg(self, i: int, name: str | None = None, default: Any = None) -> Any:
        """The i-th positional argument, or the keyword ``name``, or ``default``."""
        if i < len(self.node.args):
            return self.node.args[i]
        if name is not None and name in self.node.kwargs:
            return self.node.kwargs[name]
        return default

    def layout(self, a: Any) -> Any:
        """Layout of an argument. Only data movement may read an activation with interleaved
        channel axes; any other op ties it to one channel axis first."""
        if not isinstance(a, fx.Node):
            return None
        lay = self.prop.env.get(a)
        if self.kind != "movement" and _interleaved(a, lay):
            lay = self.prop.tie(a)
        return lay

    def value(self, a: Any) -> Any:
        """Concrete value of a non-tensor argument (sizes recorded at batch size 1)."""
        return fx.node.map_aggregate(a, lambda x: x.meta.get(META_VALUE) if isinstance(x, fx.Node) else x)

    def is_tensor(self, a: Any) -> bool:
        return isinstance(a, fx.Node) and isinstance(self.prop.env.get(a), Layout)

    def tensor_inputs(self) -> list[fx.Node]:
        return [a for a in self.node.all_input_nodes if self.prop.env.get(a) is not None]

    def out_shape(self) -> Any:
        return _meta_shapes(self.node)

    # --- acting --------------------------------------------------------------------------
    def new_atom(self, n: int, real: bool = True) -> torch.Tensor:
        return self.prop.new_atom(n, self.node, real)

    def module_atom(self, n: int) -> torch.Tensor:
        """Output labels of this module; a module called twice reuses its labels (shared weights)."""
        key = self.node.target
        if key not in self.prop.module_atoms:
            self.prop.module_atoms[key] = self.new_atom(n)
        return self.prop.module_atoms[key]

    def union(self, a: torch.Tensor, b: torch.Tensor, why: str) -> None:
        self.prop.union(a, b, f"{why} at {self.where}")

    def freeze(self, labels: torch.Tensor | Layout | None, reason: str) -> None:
        if isinstance(labels, Layout):
            labels = labels.materialize() if labels.labeled else None
        if labels is not None:
            self.prop.freeze(labels, reason)

    def freeze_inputs(self, reason: str) -> None:
        for a in self.tensor_inputs():
            for lay in leaves(self.prop.env[a]):
                if isinstance(lay, Layout):
                    self.freeze(lay, reason)

    def factor(self, raw: torch.Tensor, tie: bool = True) -> Layout:
        """Layout of a per-element label tensor; ties labels until one channel axis is left
        (with ``tie=False``, interleaved channel axes stay raw: data movement may undo them)."""
        shape = tuple(raw.shape)
        axes = varying_axes(raw)
        if not axes:  # one label everywhere (a one-channel tensor): its size never changes
            label = int(raw.reshape(-1)[0]) if raw.numel() else FIXED
            if label != FIXED:
                self.prop.constants.append(raw.reshape(-1)[:1].clone())
            return Layout(shape, const=label)
        if len(axes) > 1 and not tie:
            return Layout(shape, raw=raw)
        if len(axes) == 1:
            a = axes[0]
            idx = [0] * raw.dim()
            idx[a] = slice(None)
            return Layout.along(shape, a, raw[tuple(idx)].clone())

        def distinct(a: int) -> int:
            idx = [0] * raw.dim()
            idx[a] = slice(None)
            return int(torch.unique(raw[tuple(idx)]).numel())

        keep = max(axes, key=lambda a: (distinct(a), a))
        idx = [slice(0, 1)] * raw.dim()
        idx[keep] = slice(None)
        ref = raw[tuple(idx)].expand(shape)
        self.union(raw.reshape(-1), ref.reshape(-1), f"channels interleaved along axes {axes}")
        vec = raw[tuple(0 if d != keep else slice(None) for d in range(raw.dim()))].clone()
        return Layout.along(shape, keep, vec)

    def set_param_axes(self, param: Any, axes: dict[int, torch.Tensor]) -> bool:
        """Declare the channel axes of a parameter read through get_attr (weights of F.linear …)."""
        if not (isinstance(param, fx.Node) and param.op == "get_attr"):
            return False
        self.prop.param_override[param] = axes
        return True

    def set_layer(self, **vectors: Any) -> None:
        self.node.meta[META_LAYER] = vectors

    def shared_vec(self, vec: torch.Tensor, role: str = "in") -> torch.Tensor:
        """For a module called more than once: tie this call's vector to the first call's."""
        key = (role, self.node.target)
        first = self.prop.module_atoms.setdefault(key, vec)
        if first is not vec and first.numel() == vec.numel():
            self.union(first, vec, "module called twice")
        return first


class _Propagator:
    def __init__(self, gm: fx.GraphModule):
        self.gm = gm
        self.modules = modules_by_name(gm)
        self.env: dict[fx.Node, Any] = {}
        self.next_id = 1
        self.atoms: list[tuple[int, int, str, bool]] = []  # start, size, node name, real
        self.pairs: list[np.ndarray] = []
        self.frozen: list[tuple[np.ndarray, str]] = []
        self.module_atoms: dict[Any, torch.Tensor] = {}
        self.param_override: dict[fx.Node, dict[int, torch.Tensor]] = {}
        self.fused: set[fx.Node] = set()
        self.constants: list[torch.Tensor] = []  # labels of one-channel tensors (must stay active)

    def new_atom(self, n: int, node: fx.Node, real: bool) -> torch.Tensor:
        ids = torch.arange(self.next_id, self.next_id + n, dtype=LABEL_DTYPE)
        self.atoms.append((self.next_id, n, node.target if node.op == "call_module" else node.name, real))
        self.next_id += n
        return ids

    def union(self, a: torch.Tensor, b: torch.Tensor, why: str) -> None:
        a, b = a.reshape(-1), b.reshape(-1)
        fa, fb = a == FIXED, b == FIXED
        both = ~fa & ~fb & (a != b)  # a channel tied to itself adds nothing
        if bool(both.any()):
            # repeats are left in: the connected components do not see them, and removing them
            # takes a sort per tie (most of the ties' time on vit_b_16, whose position embedding
            # ties hundreds of thousands of element labels)
            self.pairs.append(torch.stack([a[both], b[both]], 1).numpy())
        one = fa ^ fb
        if bool(one.any()):
            self.freeze(torch.where(fa, b, a)[one], f"tied to a fixed-size tensor ({why})")

    def tie(self, node: fx.Node) -> Layout:
        """Give an interleaved activation one channel axis by tying the others."""
        lay = Ctx(self, node).factor(self.env[node].raw, tie=True)
        self.env[node] = lay
        node.meta[META_LAYOUT] = lay
        return lay

    def fuse_or_tie(self, node: fx.Node) -> None:
        """``node`` ends a chain of data movement through interleaved layouts (a channel
        shuffle): if the chain only permutes the channels of one source, the runtime gathers them
        in one step; otherwise the interleaved intermediates are tied."""
        chain, sources, stack = [], [], [node]
        while stack:
            n = stack.pop()
            for a in n.all_input_nodes:
                if _interleaved(a, self.env.get(a)):
                    if a not in chain:
                        chain.append(a)
                        stack.append(a)
                elif isinstance(self.env.get(a), Layout) and a not in sources:
                    sources.append(a)
        perm = _channel_permutation(self, node, chain, sources) if len(sources) == 1 else None
        if perm is None:
            for a in chain:
                self.tie(a)
            return
        node.meta[META_GATHER] = (sources[0], self.env[sources[0]].axis, perm)
        self.fused.update(chain)

    def tie_leftovers(self) -> None:
        for node in self.gm.graph.nodes:
            if _interleaved(node, self.env.get(node)) and not (
                    node in self.fused and all(u in self.fused or META_GATHER in u.meta for u in node.users)):
                self.tie(node)

    def freeze(self, labels: torch.Tensor, reason: str) -> None:
        ids = torch.unique(labels.reshape(-1))
        ids = ids[ids != FIXED]
        if ids.numel():
            self.frozen.append((ids.numpy(), reason))

    def run(self) -> None:
        fallbacks = self.gm.meta.get("pareco.fallback_leaves", {})
        for node in self.gm.graph.nodes:
            ctx = Ctx(self, node)
            fn = rule_for(node, ctx.module)
            ctx.kind = KIND.get(fn, "custom")
            shapes = _meta_shapes(node)
            if node.op == "placeholder":
                self.env[node] = _fixed_tree(shapes)
            elif node.op == "get_attr":
                self.env[node] = self._get_attr(ctx, shapes)
            elif node.op == "output":
                for a in node.all_input_nodes:
                    for lay in leaves(self.env.get(a)):
                        if isinstance(lay, Layout):
                            ctx.freeze(lay, f"model output (kept at full size, via node '{a.name}')")
                continue
            elif shapes is None:
                self.env[node] = None  # sizes, ints: the runtime recomputes them from compact tensors
            else:
                if fn is None:
                    extra = f" — it could not be traced ({fallbacks[node.target]})" if node.target in fallbacks else ""
                    reason = (f"boundary: {ctx.where} has no channel rule{extra}; register one with "
                              "pareco_fx.register_rule(...)")
                    ctx.freeze_inputs(reason)
                    self.env[node] = _fixed_tree(shapes)
                    node.meta[META_KIND] = "boundary"
                else:
                    out = fn(ctx)
                    self.env[node] = out if out is not None else _fixed_tree(shapes)
                    node.meta[META_KIND] = ctx.kind  # a rule may demote its node to "boundary"
                    if ctx.kind == "movement" and isinstance(out, Layout) and out.axis is not None and any(
                            _interleaved(a, self.env.get(a)) for a in node.all_input_nodes):
                        self.fuse_or_tie(node)
            node.meta[META_LAYOUT] = self.env[node]
        self.tie_leftovers()

    def _get_attr(self, ctx: Ctx, shapes: Any) -> Any:
        if not isinstance(shapes, tuple):
            return None
        numel = int(np.prod(shapes)) if shapes else 1
        big = [d for d, s in enumerate(shapes) if s > 1]
        if len(big) == 1:  # layer scale, bias-like vectors, class tokens
            return Layout.along(shapes, big[0], ctx.new_atom(shapes[big[0]], real=False))
        if numel > 1:      # position embeddings, weights: one label per element until tied
            return Layout(shapes, raw=ctx.new_atom(numel, real=False).view(shapes))
        return Layout.fixed(shapes)


def _interleaved(node: Any, lay: Any) -> bool:
    """An activation whose channels run along several axes (mid-way through a shuffle)."""
    return isinstance(lay, Layout) and lay.raw is not None and node.op != "get_attr"


def _channel_permutation(prop: "_Propagator", out: fx.Node, chain: list[fx.Node], src: list[fx.Node]):
    """If the chain from ``src`` to ``out`` permutes channels along one axis and nothing else,
    the permutation (output channel -> source channel); else None. Checked on position ids."""
    s_lay, o_lay = prop.env[src[0]], prop.env[out]
    if s_lay.axis is None or s_lay.shape != o_lay.shape or s_lay.axis != o_lay.axis:
        return None
    pos = {src[0]: torch.arange(int(np.prod(s_lay.shape))).view(s_lay.shape)}
    order = [n for n in prop.gm.graph.nodes if n in chain or n is out]
    try:
        for n in order:
            args = fx.node.map_arg(n.args, lambda a: pos[a] if a in pos else a.meta.get(META_VALUE))
            kwargs = fx.node.map_arg(n.kwargs, lambda a: pos[a] if a in pos else a.meta.get(META_VALUE))
            if n.op == "call_function":
                pos[n] = n.target(*args, **kwargs)
            elif n.op == "call_method":
                pos[n] = getattr(args[0], n.target)(*args[1:], **kwargs)
            else:
                pos[n] = prop.modules[n.target](*args, **kwargs)
    except Exception:  # noqa: BLE001 - not a plain permutation
        return None
    got, axis = pos[out], s_lay.axis
    if not isinstance(got, torch.Tensor) or tuple(got.shape) != s_lay.shape:
        return None
    stride = int(np.prod(s_lay.shape[axis + 1:]))
    first = got[tuple(slice(None) if d == axis else 0 for d in range(got.dim()))]
    perm = (first // stride) % s_lay.shape[axis]
    if not torch.equal(got, pos[src[0]].index_select(axis, perm)):
        return None
    return perm.numpy()


def _fixed_tree(shapes: Any) -> Any:
    if shapes is None:
        return None
    if isinstance(shapes, tuple) and all(isinstance(s, int) for s in shapes):
        return Layout.fixed(shapes)
    if isinstance(shapes, (tuple, list)):
        return type(shapes)(_fixed_tree(s) for s in shapes)
    if isinstance(shapes, dict):
        return {k: _fixed_tree(v) for k, v in shapes.items()}
    return None


# ---------------------------------------------------------------------------------------------
# Groups from the ties
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass
class ChannelAnalysis:
    """Result of the channel-group pass.

    Attributes:
        gm: the traced model, its nodes annotated (batch size 1).
        groups: the channel groups, index i is entry i of a width vector.
        divisor: channel counts are rounded to multiples of it.
        comp: unit (connected component) of every channel id.
        unit_group / unit_rank: group and position in the group of every unit (-1: fixed).
        tables: look-up features (group, table over active units) beyond the G unit counts.
        param_syms: symbolic shape of every distinct parameter.
        example_inputs: the batch-1 example inputs.
    """

    gm: fx.GraphModule
    groups: list[ChannelGroup]
    divisor: int
    comp: np.ndarray
    unit_group: np.ndarray
    unit_rank: np.ndarray
    tables: list[tuple[int, torch.Tensor]]
    param_syms: dict[str, tuple[Poly, ...]]
    example_inputs: tuple
    pairs: np.ndarray
    atoms: list[tuple[int, int, str, bool]]
    frozen_units: dict[int, str]  # unit made by a layer -> why it is frozen

    @property
    def num_features(self) -> int:
        return len(self.groups) + len(self.tables)

    def resolve(self, labels: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Group (-1: fixed) and rank of every label."""
        u = self.comp[labels.reshape(-1).numpy()]
        return self.unit_group[u], self.unit_rank[u]

    def _unit_constants(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None, bool]:
        """(channels C, quantum q, units U, frozen mask or None, all q == 1), cached: the cost
        optimiser calls :meth:`units` thousands of times per decision."""
        key = (id(self.groups), tuple(g.slimmable for g in self.groups))
        cached = self.__dict__.get("_unit_cache")
        if cached is None or cached[0] != key:
            C = torch.tensor([g.channels for g in self.groups], dtype=torch.float64)
            q = torch.tensor([g.quantum for g in self.groups], dtype=torch.float64)
            frozen = torch.tensor([not g.slimmable for g in self.groups])
            cached = (key, (C, q, C / q, frozen if bool(frozen.any()) else None, bool((q == 1).all())))
            self.__dict__["_unit_cache"] = cached
        return cached[1]

    def units(self, W: torch.Tensor) -> torch.Tensor:
        """Active units per group for a batch of widths ``[B, G]`` (frozen groups: all)."""
        C, q, U, frozen, unit_quanta = self._unit_constants()
        k = torch.floor(W.to(torch.float64) * C + 1e-4).clamp_(min=1)  # float32 widths: 0.42 -> 0.41999998
        if self.divisor > 1:
            k = torch.floor(k / self.divisor).mul_(self.divisor).clamp_(min=self.divisor)
        u = k if unit_quanta else torch.floor(k / q + 1e-9).clamp_(min=1)
        u = torch.minimum(u, U, out=u)
        return u if frozen is None else torch.where(frozen, U, u)

    def features(self, W: torch.Tensor) -> torch.Tensor:
        """Feature matrix ``[B, F]`` (float64) every symbolic size is a polynomial of."""
        u = self.units(W)
        if not self.tables:
            return u
        return torch.cat([u, *(table[u[:, g].long()].unsqueeze(1) for g, table in self.tables)], 1)

    @property
    def graph(self) -> "Any":
        """Couplings as a networkx graph: channel pieces are nodes, ties are edges."""
        import networkx as nx

        G = nx.Graph()
        piece_of = np.zeros(len(self.comp), dtype=np.int64) - 1
        pieces = []
        for start, size, name, real in self.atoms:
            if not real:
                continue
            gids, _ = self.resolve(torch.arange(start, start + size))
            cuts = np.flatnonzero(np.r_[True, gids[1:] != gids[:-1]])
            for a, b in zip(cuts, list(cuts[1:]) + [size]):
                pid = len(pieces)
                pieces.append((name, int(a), int(b), int(gids[a])))
                piece_of[start + a:start + b] = pid
                G.add_node(pid, module=name, start=int(a), stop=int(b), group=int(gids[a]))
        units = {}
        for ch in range(1, len(self.comp)):
            if piece_of[ch] >= 0:
                units.setdefault(self.comp[ch], []).append(piece_of[ch])
        for ps in units.values():
            for p in ps[1:]:
                if p != ps[0]:
                    G.add_edge(ps[0], p)
        return G

    def freeze_groups(self, gids: Iterable[int], reason: str) -> None:
        for g in gids:
            grp = self.groups[g]
            if grp.slimmable:
                self.groups[g] = dataclasses.replace(grp, slimmable=False, reason=reason)


def run(gm: fx.GraphModule, example_inputs: tuple, divisor: int = 1) -> ChannelAnalysis:
    """Analyse a traced graph (shapes recorded at batch size 1) into channel groups."""
    if divisor < 1:
        raise AnalysisError(f"divisor must be >= 1, got {divisor}")
    prop = _Propagator(gm)
    prop.run()
    comp, unit_group, unit_rank, groups, frozen_units, pairs = units_and_groups(prop)
    an = ChannelAnalysis(gm, groups, divisor, comp, unit_group, unit_rank, [], {}, example_inputs,
                         pairs, prop.atoms, frozen_units)
    annotate(an, prop)
    return an

"""Rewrite an analysed graph into the slimmable runtime, then prove its data movement right.

- layers with a channel rule become their slimmable class (``pareco_fx.layers``);
- parameters read through get_attr become :class:`~pareco_fx.layers.SlicedTensor` calls;
- ops whose arguments hold channel counts (``x.view(-1, 512)``, ``split``, ``chunk``, ``narrow``,
  ``x[:, :256]``, ``F.layer_norm``'s shape …) become :class:`SlimCall`, whose arguments follow the
  widths (rewrites registered by decorator, keyed by op target).

Every data-movement node is then *checked* on label tensors at several width vectors: running it on
the compact inputs must give exactly the compact output the analysis predicts. A node that fails
freezes the groups it touches, with the reason; the model is never silently wrong.
"""
from __future__ import annotations

import dataclasses
import operator
from typing import Any, Callable

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from pareco_fx.errors import AnalysisError
from pareco_fx.ir import META_LAYOUT, META_VALUE
from pareco_fx.layers import ChannelGather, SlicedTensor, WidthState, active_positions, make_slim, take
from pareco_fx.passes.channel_groups import (
    META_GATHER, META_KIND, META_LAYER, ChannelAnalysis, leaves, map_layouts,
)
from pareco_fx.passes.grouping import present_groups
from pareco_fx.passes.labels import Layout
from pareco_fx.trace import LazyGraphModule, modules_by_name

__all__ = ["run", "SlimCall", "ArgSpec", "register_rewrite", "REWRITES"]

Item = tuple[str, Any]  # ("k", state key) | ("c", constant)


@dataclasses.dataclass
class Fill:
    path: tuple           # ("args", i[, j]) or ("kwargs", name[, j])
    build: str            # int | list | tuple | slice | div
    items: tuple[Item, ...]


@dataclasses.dataclass
class ArgSpec:
    """How to recompute an op's channel-count arguments from the widths in force."""

    fills: list[Fill]
    target: Any = None              # replacement op (None: keep the node's)
    op: str | None = None           # "call_function" | "call_method" when target is replaced
    args: tuple | None = None       # replacement argument template


def _value(item: Item, state: WidthState) -> Any:
    kind, v = item
    return state.count[v] if kind == "k" else v


def _build(fill: Fill, state: WidthState) -> Any:
    vals = [_value(i, state) for i in fill.items]
    if fill.build == "int":
        return vals[0]
    if fill.build == "list":
        return list(vals)
    if fill.build == "tuple":
        return tuple(vals)
    if fill.build == "slice":
        return slice(vals[0], vals[1], None)
    if fill.build == "div":
        return vals[0] // vals[1]
    raise AssertionError(fill.build)


def _set_path(container: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(container, dict):
        out = dict(container)
        out[head] = _set_path(container[head], rest, value)
        return out
    out = list(container)
    out[head] = _set_path(container[head], rest, value)
    return type(container)(out) if isinstance(container, tuple) else out


def apply_spec(spec: ArgSpec, args: tuple, kwargs: dict, state: WidthState) -> tuple[tuple, dict]:
    for f in spec.fills:
        if f.path[0] == "args":
            args = _set_path(args, f.path[1:], _build(f, state))
        else:
            kwargs = _set_path(kwargs, f.path[1:], _build(f, state))
    return args, kwargs


class SlimCall(nn.Module):
    """An op whose channel-count arguments are recomputed from the widths on every call."""

    def __init__(self, op: str, target: Any, spec: ArgSpec, state: WidthState):
        super().__init__()
        self.op, self.target, self.spec, self._pareco = op, target, spec, state

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        args, kwargs = apply_spec(self.spec, args, kwargs, self._pareco)
        if self.op == "call_method":
            return getattr(args[0], self.target)(*args[1:], **kwargs)
        return self.target(*args, **kwargs)


# ---------------------------------------------------------------------------------------------
# Argument rewrites, one per op family
# ---------------------------------------------------------------------------------------------

REWRITES: dict[Any, Callable[[fx.Node, WidthState], ArgSpec | None]] = {}


def register_rewrite(*targets: Any) -> Callable:
    """Register how an op's channel-count arguments follow the widths (duplicates rejected)."""

    def deco(fn: Callable) -> Callable:
        for t in targets:
            if t in REWRITES:
                raise ValueError(f"an argument rewrite for {t!r} is already registered")
            REWRITES[t] = fn
        return fn

    return deco


def _lay(node: Any) -> Any:
    return node.meta.get(META_LAYOUT) if isinstance(node, fx.Node) else None


def _arg(node: fx.Node, i: int, name: str, default: Any = None) -> tuple[Any, tuple]:
    if i < len(node.args):
        return node.args[i], ("args", i)
    if name in node.kwargs:
        return node.kwargs[name], ("kwargs", name)
    return default, ()


@register_rewrite("view", "reshape", "expand", torch.reshape)
def _shape_args(node: fx.Node, state: WidthState) -> ArgSpec | None:
    out = _lay(node)
    if not isinstance(out, Layout) or out.axis is None:
        return None
    if len(node.args) == 2 and isinstance(node.args[1], (tuple, list)):
        shape, path = node.args[1], ("args", 1, out.axis)
    elif "shape" in node.kwargs or "size" in node.kwargs:
        key = "shape" if "shape" in node.kwargs else "size"
        shape, path = node.kwargs[key], ("kwargs", key, out.axis)
    else:
        shape, path = node.args[1:], ("args", 1 + out.axis)
    entry = shape[out.axis] if out.axis < len(shape) else None
    if isinstance(entry, int) and entry != -1:
        return ArgSpec([Fill(path, "int", (("k", state.key(out.vec)),))])
    return None


@register_rewrite("unflatten", torch.unflatten)
def _unflatten(node: fx.Node, state: WidthState) -> ArgSpec | None:
    out = _lay(node)
    dim, _ = _arg(node, 1, "dim")
    sizes, path = _arg(node, 2, "sizes")
    if not isinstance(out, Layout) or out.axis is None or not path:
        return None
    dim = dim % (out.ndim - len(sizes) + 1)
    j = out.axis - dim
    if 0 <= j < len(sizes) and isinstance(sizes[j], int) and sizes[j] != -1:
        return ArgSpec([Fill(path + (j,), "int", (("k", state.key(out.vec)),))])
    return None


def _sections(node: fx.Node, state: WidthState, dim: int) -> tuple[Item, ...] | None:
    outs = _lay(node)
    src = _lay(node.args[0])
    if not isinstance(src, Layout) or src.axis != dim % src.ndim or not isinstance(outs, (tuple, list)):
        return None
    return tuple(("k", state.key(o.vec)) if o.axis == src.axis else ("c", o.shape[src.axis]) for o in outs)


@register_rewrite("split", torch.split)
def _split(node: fx.Node, state: WidthState) -> ArgSpec | None:
    dim, _ = _arg(node, 2, "dim", 0)
    items = _sections(node, state, dim)
    if items is None:
        return None
    _, path = _arg(node, 1, "split_size_or_sections")
    if not path:
        _, path = _arg(node, 1, "split_size")
    return ArgSpec([Fill(path, "list", items)])


@register_rewrite("chunk", torch.chunk)
def _chunk(node: fx.Node, state: WidthState) -> ArgSpec | None:
    dim, _ = _arg(node, 2, "dim", 0)
    items = _sections(node, state, dim)
    if items is None:
        return None
    return ArgSpec([Fill(("args", 1), "list", items)], target=torch.split, op="call_function",
                   args=(node.args[0], None, dim))


def _prefix(vec: torch.Tensor, stop: Any, state: WidthState) -> Item:
    if stop is None:
        return ("c", None)
    return ("k", state.key(vec[:stop].clone()))


@register_rewrite("narrow", torch.narrow)
def _narrow(node: fx.Node, state: WidthState) -> ArgSpec | None:
    src, out = _lay(node.args[0]), _lay(node)
    dim, _ = _arg(node, 1, "dim")
    start, p_start = _arg(node, 2, "start")
    _, p_len = _arg(node, 3, "length")
    if not isinstance(src, Layout) or src.axis != dim % src.ndim or not isinstance(start, int):
        return None
    length = (("k", state.key(out.vec)),) if out.axis is not None else (("c", out.shape[dim]),)
    return ArgSpec([Fill(p_start, "int", (_prefix(src.vec, start, state),)), Fill(p_len, "int", length)])


@register_rewrite(operator.getitem)
def _getitem(node: fx.Node, state: WidthState) -> ArgSpec | None:
    src = _lay(node.args[0])
    if not isinstance(src, Layout) or src.axis is None:
        return None
    idx = node.args[1] if isinstance(node.args[1], tuple) else (node.args[1],)
    if any(i is None for i in idx):
        return None
    if Ellipsis in idx:
        e = idx.index(Ellipsis)
        dims = list(range(e)) + list(range(src.ndim - (len(idx) - e - 1), src.ndim))
        entries = [i for i in idx if i is not Ellipsis]
    else:
        dims, entries = list(range(len(idx))), list(idx)
    for pos, (d, entry) in enumerate(zip(dims, entries)):
        if d != src.axis or not isinstance(entry, slice) or entry == slice(None):
            continue
        if entry.step not in (None, 1) or not all(isinstance(v, (int, type(None))) for v in (entry.start, entry.stop)):
            return None
        n = src.vec.numel()
        a = None if entry.start is None else entry.start % n if entry.start < 0 else entry.start
        b = None if entry.stop is None else entry.stop % n if entry.stop < 0 else entry.stop
        at = idx.index(entry) if isinstance(node.args[1], tuple) else None
        path = ("args", 1, at) if at is not None else ("args", 1)
        return ArgSpec([Fill(path, "slice", (_prefix(src.vec, a, state) if a else ("c", None),
                                             _prefix(src.vec, b, state)))])
    return None


@register_rewrite(F.layer_norm)
def _layer_norm(node: fx.Node, state: WidthState) -> ArgSpec | None:
    src = _lay(node.args[0])
    shape, path = _arg(node, 1, "normalized_shape")
    if not isinstance(src, Layout) or src.axis != src.ndim - 1 or len(shape) != 1:
        return None
    return ArgSpec([Fill(path, "tuple", (("k", state.key(src.vec)),))])


@register_rewrite(F.group_norm)
def _group_norm(node: fx.Node, state: WidthState) -> ArgSpec | None:
    src = _lay(node.args[0])
    groups, path = _arg(node, 1, "num_groups")
    if not isinstance(src, Layout) or src.axis is None:
        return None
    per = src.shape[src.axis] // groups
    return ArgSpec([Fill(path, "div", (("k", state.key(src.vec)), ("c", per)))])


# ---------------------------------------------------------------------------------------------
# The rewrite
# ---------------------------------------------------------------------------------------------

def _rewrite_key(node: fx.Node) -> Any:
    return node.target if node.op in ("call_function", "call_method") else None


def _replace(gm: fx.GraphModule, node: fx.Node, name: str, module: nn.Module, args: tuple, kwargs: dict) -> fx.Node:
    gm.add_submodule(name, module)
    with gm.graph.inserting_before(node):
        new = gm.graph.call_module(name, args, kwargs)
    new.meta = dict(node.meta)
    new.meta["pareco.replaces"] = (node.op, node.target)
    node.replace_all_uses_with(new)
    gm.graph.erase_node(node)
    return new


def _unique(gm: fx.GraphModule, base: str) -> str:
    name = "_pareco_" + base.replace(".", "_")
    i = 0
    while hasattr(gm, name + (f"_{i}" if i else "")):
        i += 1
    return name + (f"_{i}" if i else "")


def build(an: ChannelAnalysis) -> tuple[fx.GraphModule, WidthState]:
    """The slimmable GraphModule (sharing the analysed model's parameters) and its width state."""
    state = WidthState(an)
    graph = fx.Graph()
    val_map: dict[fx.Node, fx.Node] = {}
    out = graph.graph_copy(an.gm.graph, val_map)
    graph.output(out)
    gm = LazyGraphModule(an.gm, graph, an.gm.__class__.__name__)  # no code generated until the end
    done: set[str] = set()
    replaced: dict[fx.Node, fx.Node] = {}

    def current(n: fx.Node) -> fx.Node:
        n = val_map[n]
        while n in replaced:
            n = replaced[n]
        return n

    for node in list(gm.graph.nodes):
        layer = node.meta.get(META_LAYER)
        if node.op == "call_module" and layer is not None and node.target not in done:
            make_slim(gm.get_submodule(node.target), state, layer)
            done.add(node.target)
        elif META_GATHER in node.meta:
            src, axis, perm = node.meta[META_GATHER]
            replaced[node] = _replace(gm, node, _unique(gm, "gather"),
                                      ChannelGather(state, src.meta[META_LAYOUT].vec, perm, axis), (current(src),), {})
        elif node.op == "get_attr" and node.meta.get("pareco.param_axes"):
            replaced[node] = _replace(gm, node, _unique(gm, node.target),
                     SlicedTensor(gm, node.target, state, node.meta["pareco.param_axes"]), (), {})
        else:
            fn = REWRITES.get(_rewrite_key(node)) if _rewrite_key(node) is not None else None
            spec = fn(node, state) if fn is not None else None
            if spec is not None:
                op = spec.op or node.op
                target = spec.target or node.target
                args = spec.args if spec.args is not None else node.args
                replaced[node] = _replace(gm, node, _unique(gm, str(getattr(node.target, "__name__", node.target))),
                         SlimCall(op, target, spec, state), args, dict(node.kwargs) if spec.args is None else {})
    for node in reversed(list(gm.graph.nodes)):  # the shuffles' intermediates are gone now
        if not node.users and isinstance(node.meta.get(META_LAYOUT), Layout) and node.meta[META_LAYOUT].raw is not None \
                and node.op != "get_attr":
            gm.graph.erase_node(node)
    gm.real_recompile()  # its code, generated once for the finished graph, now rather than on the first call
    return gm, state


# ---------------------------------------------------------------------------------------------
# Proof on labels
# ---------------------------------------------------------------------------------------------

class _Checker:
    """Runs the data-movement nodes of the slimmable graph on compact label tensors."""

    def __init__(self, an: ChannelAnalysis, gm: fx.GraphModule, state: WidthState):
        self.an, self.gm, self.state = an, gm, state
        self.modules = modules_by_name(gm)

    def _index(self, vec: torch.Tensor) -> torch.Tensor:
        gid, rank = self.an.resolve(vec)
        return torch.from_numpy(active_positions(gid, rank, self.state.units))

    def compact(self, lay: Layout) -> torch.Tensor:
        t = lay.materialize()
        return t.index_select(lay.axis, self._index(lay.vec)) if lay.axis is not None else t.contiguous()

    def canon(self, t: torch.Tensor) -> np.ndarray:
        gid, rank = self.an.resolve(t)
        return np.where(gid < 0, -1, gid * (1 << 24) + rank).reshape(tuple(t.shape))

    def same(self, got: Any, want: Any) -> bool:
        g, w = leaves(got), leaves(want)
        if len(g) != len(w):
            return False
        for a, b in zip(g, w):
            if isinstance(b, torch.Tensor):
                if not isinstance(a, torch.Tensor) or a.shape != b.shape:
                    return False
                # equal labels are equal channels; only differing ones need resolving
                if not torch.equal(a, b) and not np.array_equal(self.canon(a), self.canon(b)):
                    return False
        return True

    def run(self) -> list[tuple[fx.Node, str]]:
        env: dict[fx.Node, Any] = {}
        failures = []

        def labels(n: fx.Node) -> Any:
            if n not in env:
                lay = n.meta.get(META_LAYOUT)
                mod = self.modules[n.target] if n.op == "call_module" else None
                if isinstance(mod, SlicedTensor):
                    t = lay.materialize()
                    for a, k in mod._axes.items():
                        t = take(t, a, self.state.index[k])
                    env[n] = t
                elif lay is None:
                    env[n] = n.meta.get(META_VALUE)
                else:
                    env[n] = map_layouts(lay, self.compact)
            return env[n]

        for node in self.gm.graph.nodes:
            if node.op in ("placeholder", "get_attr", "output"):
                continue
            lay = node.meta.get(META_LAYOUT)
            movement = node.meta.get(META_KIND) == "movement"
            if lay is not None and not movement:
                continue
            args = fx.node.map_arg(node.args, labels)
            kwargs = fx.node.map_arg(node.kwargs, labels)
            try:
                if node.op == "call_module":
                    got = self.modules[node.target](*args, **kwargs)
                elif node.op == "call_method":
                    got = getattr(args[0], node.target)(*args[1:], **kwargs)
                else:
                    got = node.target(*args, **kwargs)
            except Exception as e:  # noqa: BLE001
                if movement:
                    failures.append((node, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"))
                continue
            if movement:
                if not self.same(got, labels(node)):
                    failures.append((node, "moves channels differently once the widths change"))
            else:
                env[node] = got
        return failures


def _touched_groups(an: ChannelAnalysis, node: fx.Node) -> set[int]:
    """Groups of a node's tensors, and of the tensors its size arguments were read from."""
    gids: set[int] = set()
    seen, stack, tensors = set(), list(node.all_input_nodes), [node]
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        tensors.append(n)
        if n.meta.get(META_LAYOUT) is None:  # x.size(), x.shape[i], arithmetic: follow to the tensor
            stack.extend(n.all_input_nodes)
    for n in tensors:
        for lay in leaves(n.meta.get(META_LAYOUT)):
            if isinstance(lay, Layout) and lay.labeled:
                g, _ = an.resolve(lay.vec if lay.axis is not None else lay.raw)
                gids.update(present_groups(g))
    return gids


def _frozen(an: ChannelAnalysis) -> set[int]:
    return {g.id for g in an.groups if not g.slimmable}


def _test_units(an: ChannelAnalysis, seed: int = 0) -> list[np.ndarray]:
    U = np.array([g.units for g in an.groups], dtype=np.int64)
    slim = np.array([g.slimmable for g in an.groups], dtype=bool)
    rng = np.random.default_rng(seed)
    cands = [np.ones_like(U), rng.integers(1, U + 1), np.maximum(1, U // 2)]
    return [np.where(slim, c, U) for c in cands]


def run(an: ChannelAnalysis) -> tuple[fx.GraphModule, WidthState]:
    """Build the slimmable graph and check it; freeze what cannot follow the widths."""
    gm, state = build(an)
    for _ in range(64):  # each round freezes what failed; the number of groups bounds the rounds
        failures = []
        for units in _test_units(an):
            state.set_units(units)
            failures = _Checker(an, gm, state).run()
            if failures:
                break
        if not failures:
            break
        if not any(_touched_groups(an, n) - _frozen(an) for n, _ in failures):
            raise AnalysisError(f"slimmify: '{failures[0][0].name}' fails the data-movement check "
                                f"({failures[0][1]}) with no slimmable group left to freeze; please report this model")
        for node, why in failures:
            origin = node.meta.get("pareco.replaces", (node.op, node.target))[1]
            name = getattr(origin, "__name__", origin)
            an.freeze_groups(_touched_groups(an, node),
                             f"boundary: '{name}' at node '{node.name}' cannot follow the widths ({why})")
    else:
        raise AnalysisError("slimmify: the data-movement check did not settle; please report this model")
    state.set_units(np.array([g.units for g in an.groups], dtype=np.int64))
    return gm, state

"""Tracing: torch.fx with a leaf policy, a fallback for untraceable submodules, and concrete values.

``trace(model, example_inputs)`` returns a GraphModule whose nodes carry ``tensor_meta`` and, for
non-tensor values (sizes, ints), ``node.meta[META_VALUE]``; it is run at batch size 1 so every
recorded size is per example. A submodule that fx cannot trace becomes a leaf and is listed in
``gm.meta["pareco.fallback_leaves"]`` (name → error), so the analysis can freeze its channels.
"""
from __future__ import annotations

import collections
import copy
import copyreg
import itertools
import linecache
import traceback
from typing import Any, Callable, Iterable

import torch
import torch.fx as fx
import torch.nn as nn
# generates the graph's Python code only when it is first called: the passes never call it
from torch.fx._lazy_graph_module import _LazyGraphModule as LazyGraphModule
from torch.fx.passes.shape_prop import _extract_tensor_metadata

from pareco_fx.errors import TraceError
from pareco_fx.ir import META_VALUE

__all__ = ["register_leaf", "is_registered_leaf", "trace", "batch_one", "modules_by_name", "LazyGraphModule",
           "META_STORAGE"]

META_STORAGE = "pareco.storage"  # per tensor leaf of the output: (storage id, storage elements)

_LEAVES: list[type] = []


def register_leaf(*module_types: type) -> None:
    """Make modules of these types leaves: traced as one call, never looked into.

    Use it for modules fx cannot trace, or whose channels you want handled by a rule of your own.
    """
    for t in module_types:
        if t not in _LEAVES:
            _LEAVES.append(t)


def is_registered_leaf(m: nn.Module) -> bool:
    return isinstance(m, tuple(_LEAVES))


def _register_builtin_leaves() -> None:
    try:  # StochasticDepth branches on self.training: as a leaf it keeps working in both modes
        from torchvision.ops import StochasticDepth

        register_leaf(StochasticDepth)
    except ImportError:  # pragma: no cover - torchvision is a dependency
        pass
    register_leaf(nn.MultiheadAttention)


_register_builtin_leaves()


class _Tracer(fx.Tracer):
    """fx tracer: registered leaves + torch.nn layers are leaves; untraceable submodules fall back."""

    def __init__(self) -> None:
        super().__init__()
        self.fallbacks: dict[str, str] = {}

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return is_registered_leaf(m) or qualname in self.fallbacks or super().is_leaf_module(m, qualname)

    def call_module(self, m: nn.Module, forward: Callable, args: tuple, kwargs: dict) -> Any:
        qualname = self.path_of_module(m)
        if self.is_leaf_module(m, qualname):
            return super().call_module(m, forward, args, kwargs)
        last = next(iter(reversed(self.graph.nodes)), None)  # nodes are appended: the call's come after it
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception as e:  # noqa: BLE001 - any failure inside makes the submodule a leaf
            for n in list(reversed(self.graph.nodes)):
                if n is last:
                    break
                self.graph.erase_node(n)
            self.fallbacks[qualname] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            return self.create_proxy("call_module", qualname, args, kwargs)


def _user_frame(exc: BaseException) -> str:
    """The innermost frame of the traceback outside torch: the user's failing line."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "/torch/" not in f.filename]
    if not frames:
        return "unknown location"
    f = frames[-1]
    line = (f.line or linecache.getline(f.filename, f.lineno)).strip()
    return f"{f.filename}:{f.lineno} in {f.name}: `{line}`"


def batch_one(inputs: Iterable[Any]) -> tuple:
    """The first example of every batched tensor input."""
    return tuple(t[:1] if isinstance(t, torch.Tensor) and t.dim() > 0 else t for t in inputs)


def _lazy_copy(t: torch.Tensor) -> torch.Tensor | None:
    """A copy-on-write clone of a plain dense tensor (None where torch has none for it)."""
    if not hasattr(torch, "_lazy_clone") or type(t) not in (torch.Tensor, nn.Parameter) \
            or t.layout != torch.strided or t.device.type not in ("cpu", "cuda"):
        return None
    data = torch._lazy_clone(t.detach())
    return nn.Parameter(data, t.requires_grad) if isinstance(t, nn.Parameter) else data


def private_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` whose parameters and buffers are copied on first write.

    The copy never aliases the user's weights (a write on either side copies the tensor first),
    yet costs no memory or time until then: most of the time of a plain deep copy of a large
    model is spent copying weights that are never written during the analysis.
    """
    tensors = {id(t): t for t in itertools.chain(model.parameters(), model.buffers())}
    storage = {key: t.untyped_storage()._cdata for key, t in tensors.items()}
    owners = collections.Counter(storage.values())
    memo: dict[int, Any] = {}
    for key, t in tensors.items():
        # tensors that share a storage (views of each other) keep deepcopy's shared copy
        lazy = _lazy_copy(t) if owners[storage[key]] == 1 else None
        if lazy is not None:
            memo[key] = lazy
    return _copy_module(model, memo)


_PLAIN = (int, float, bool, str, type(None), torch.dtype, torch.device)


def _plain_pickling(cls: type) -> bool:
    """Whether ``copy.deepcopy`` copies a ``cls`` as ``cls.__new__(cls)`` plus ``__setstate__`` of its
    deep-copied ``__getstate__()`` (true of nn.Module and of almost every subclass)."""
    return (cls.__reduce_ex__ is object.__reduce_ex__ and cls.__reduce__ is object.__reduce__
            and not any(hasattr(cls, name) for name in ("__deepcopy__", "__getnewargs__", "__getnewargs_ex__"))
            and cls not in copyreg.dispatch_table)


def _copy_module(module: nn.Module, memo: dict[int, Any]) -> nn.Module:
    """``copy.deepcopy(module, memo)``, with a short path for what every module holds.

    A plain deep copy walks each module's twenty-odd bookkeeping attributes (hook dictionaries,
    flags) one call at a time, most of the copy's time on a small model. Here values that need no
    copy (numbers, strings, empty containers) are taken as they are, submodules recurse, and
    anything else goes to ``copy.deepcopy`` with the same ``memo``, so sharing is kept.
    Modules that define their own pickling or copying are left to ``copy.deepcopy`` whole.
    """
    if id(module) in memo:
        return memo[id(module)]
    cls = type(module)
    if not _plain_pickling(cls):
        return copy.deepcopy(module, memo)
    original = module.__getstate__()
    if type(original) is not dict:
        return copy.deepcopy(module, memo)
    new = cls.__new__(cls)
    memo[id(module)] = new
    state: dict[str, Any] = {}
    for key, value in original.items():
        kind = type(value)
        if kind in _PLAIN:
            state[key] = value
        elif key == "_modules" and kind is dict:
            state[key] = {name: None if m is None else _copy_module(m, memo) for name, m in value.items()}
        elif kind in (dict, collections.OrderedDict, set) and not value:
            state[key] = kind()
        else:
            state[key] = copy.deepcopy(value, memo)
    new.__setstate__(state)
    return new


def modules_by_name(gm: nn.Module) -> dict[str, nn.Module]:
    """Every submodule under each qualified name it has, for passes that look up every node's
    module (``get_submodule`` walks the dotted path on each call)."""
    return dict(gm.named_modules(remove_duplicate=False))


def trace(model: nn.Module, example_inputs: tuple) -> fx.GraphModule:
    """Trace a private copy of ``model`` and record shapes, values and storages at batch size 1."""
    model = private_copy(model)
    tracer = _Tracer()
    try:
        graph = tracer.trace(model)
    except Exception as e:  # noqa: BLE001
        raise TraceError(
            f"torch.fx cannot trace {type(model).__name__} at {_user_frame(e)} ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}). Fix: move data-dependent control flow into a "
            "submodule and mark it a leaf with pareco_fx.register_leaf(ModuleType), or make it static."
        ) from e
    gm = LazyGraphModule(tracer.root, graph, type(model).__name__)
    gm.meta["pareco.fallback_leaves"] = dict(tracer.fallbacks)
    record_values(gm, batch_one(example_inputs))
    return gm


class _Recorder(fx.Interpreter):
    def run_node(self, n: fx.Node) -> Any:
        value = super().run_node(n)
        storages = []

        def visit(v: Any) -> Any:
            if isinstance(v, torch.Tensor):
                # the storage's address, not its data pointer: reading that would copy a lazy copy
                s = v.untyped_storage()
                storages.append((s._cdata, s.nbytes() // max(1, v.element_size())))
                return _extract_tensor_metadata(v, include_contiguity=False)
            return v

        meta = fx.node.map_aggregate(value, visit)
        if storages:
            n.meta["tensor_meta"] = meta
            n.meta[META_STORAGE] = storages
        else:
            n.meta[META_VALUE] = value
        return value


def record_values(gm: fx.GraphModule, inputs: tuple) -> None:
    """Run ``gm`` once (eval mode, no grad) keeping every value alive, so storage ids are unique."""
    was_training = gm.training
    gm.eval()
    try:
        with torch.no_grad():
            _Recorder(gm, garbage_collect_values=False).run(*inputs)
    except Exception as e:  # noqa: BLE001
        raise TraceError(
            f"running the traced model on the example inputs failed at {_user_frame(e)}: "
            f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}. Fix: check that "
            "example_inputs() matches what the model's forward expects (shapes, number of inputs)."
        ) from e
    finally:
        gm.train(was_training)

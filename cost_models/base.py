"""The cost-model interface: registry, per-op formula registries and the compiled program.

A cost model turns a :class:`~pareco_fx.passes.channel_groups.ChannelAnalysis` into a
:class:`~pareco_fx.cost_models.program.CostProgram`: a vectorised function from the feature
matrix ``[B, F]`` (see ``ChannelAnalysis.features``) to one cost per row. Costs are
polynomials of the features, so every program is a list of :class:`~pareco_fx.ir.Poly` plus a
reduction (``sum`` of all terms, or ``max`` over nodes for peak-type costs such as memory).
"""
from __future__ import annotations

import inspect
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Protocol, runtime_checkable

import torch.fx as fx
import torch.nn as nn

from pareco_fx.errors import CostModelError
from pareco_fx.ir import META_PARAMS, META_SYM, META_VALUE, Poly, SymTensor
from pareco_fx.cost_models.program import CostProgram

__all__ = [
    "CostModel",
    "CostProgram",
    "OpRegistry",
    "OpShapes",
    "register",
    "get",
    "available",
    "compile",
    "sym_tensors",
    "target_name",
]


@runtime_checkable
class CostModel(Protocol):
    """What :func:`register` accepts besides a plain function: an object with ``compile``."""

    def compile(self, analysis: Any) -> CostProgram | Poly:
        """Build the program (or, for a sum-type cost, the Poly) from a channel analysis."""


def _as_program(result: CostProgram | Poly, analysis: Any, name: str) -> CostProgram:
    if isinstance(result, CostProgram):
        return result
    if isinstance(result, Poly):
        return CostProgram([result], num_features=analysis.num_features)
    raise CostModelError(
        f"cost model {name!r} returned {type(result).__name__}; return a CostProgram or a Poly")


class _FunctionModel:
    """Adapts a plain ``fn(analysis) -> CostProgram | Poly`` to :class:`CostModel`."""

    def __init__(self, fn: Callable[[Any], CostProgram | Poly]):
        self.fn = fn

    def compile(self, analysis: Any) -> CostProgram | Poly:
        return self.fn(analysis)


_MODELS: dict[str, CostModel] = {}
# Compiled programs per analysis object (weakly held) and cost name.
_CACHE: dict[int, tuple[Callable[[], Any], dict[str, CostProgram]]] = {}


def register(name: str, model: CostModel | type | Callable[[Any], CostProgram | Poly], *,
             overwrite: bool = False) -> Any:
    """Register a cost model under ``name``; it then works everywhere a cost name is accepted.

    Args:
        name: the cost's name (``slim.cost(name, w)``).
        model: a function ``analysis -> CostProgram | Poly``, an object with such a ``compile``
            method, or a class whose no-argument instance is one. A returned Poly is a sum-type
            cost; return ``CostProgram(polys, num_features=..., reduce="max", names=...)`` for
            a peak-type cost.
        overwrite: replace an existing model of that name (otherwise a duplicate is an error).

    Returns:
        ``model`` unchanged, so ``register`` also works as a decorator via ``functools.partial``.

    Raises:
        CostModelError: the name is taken (and ``overwrite`` is False) or ``model`` is not usable.
    """
    if not isinstance(name, str) or not name:
        raise CostModelError(f"a cost model name must be a non-empty string, not {name!r}")
    if name in _MODELS and not overwrite:
        raise CostModelError(f"cost model {name!r} is already registered; pass overwrite=True to replace it")
    if inspect.isclass(model):
        impl = model()
    elif isinstance(model, CostModel):
        impl = model
    elif callable(model):
        impl = _FunctionModel(model)
    else:
        raise CostModelError(f"cost model {name!r}: expected a function, a class or an object with compile()")
    if not isinstance(impl, CostModel):
        raise CostModelError(f"cost model {name!r}: {type(impl).__name__} has no compile(analysis) method")
    _MODELS[name] = impl
    for programs in _live_caches():
        programs.pop(name, None)
    return model


def available() -> tuple[str, ...]:
    """Names of the registered cost models, sorted."""
    return tuple(sorted(_MODELS))


def get(name: str) -> CostModel:
    """The cost model registered under ``name``.

    Raises:
        CostModelError: unknown name (the message lists the available ones).
    """
    try:
        return _MODELS[name]
    except (KeyError, TypeError):
        raise CostModelError(
            f"unknown cost model {name!r}; available: {', '.join(available())} "
            "(register your own with pareco_fx.cost_models.register(name, fn))") from None


def compile(name: str, analysis: Any) -> CostProgram:  # noqa: A001 - the public verb
    """The program of cost ``name`` for ``analysis``, compiled once and cached per analysis."""
    model = get(name)
    key = id(analysis)
    entry = _CACHE.get(key)
    if entry is None or entry[0]() is not analysis:
        try:
            ref = weakref.ref(analysis, lambda _, k=key: _CACHE.pop(k, None))
        except TypeError:  # not weak-referenceable: hold it (and its programs) for good
            ref = lambda a=analysis: a  # noqa: E731
        entry = _CACHE[key] = (ref, {})
    programs = entry[1]
    if name not in programs:
        programs[name] = _as_program(model.compile(analysis), analysis, name)
    return programs[name]


def _live_caches() -> Iterator[dict[str, CostProgram]]:
    for ref, programs in list(_CACHE.values()):
        if ref() is not None:
            yield programs


# ---------------------------------------------------------------------------------------------
# Per-op formulas


def sym_tensors(value: Any) -> Iterator[SymTensor]:
    """The SymTensors of a META_SYM pytree, depth first."""
    if isinstance(value, SymTensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from sym_tensors(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from sym_tensors(v)


def _node_value(a: fx.Node) -> Any:
    sym = a.meta.get(META_SYM)
    return sym if sym is not None else a.meta.get(META_VALUE)


@dataclass(frozen=True)
class OpShapes:
    """What a per-op formula sees: symbolic shapes only, no tensors.

    Attributes:
        node: the graph node (for error messages).
        args, kwargs: the node's arguments, every graph node replaced by its SymTensor pytree
            (or, for non-tensor values, its concrete batch-1 value).
        out: the node's own SymTensor pytree.
        params: for ``call_module``, ``{local parameter name: symbolic shape}`` of the layer.
        module: for ``call_module``, the module (for its configuration, e.g. ``batch_first``).
    """

    node: fx.Node
    args: tuple
    kwargs: Mapping[str, Any]
    out: Any
    params: Mapping[str, tuple[Poly, ...]] = field(default_factory=dict)
    module: nn.Module | None = None

    @staticmethod
    def of(node: fx.Node, module: nn.Module | None = None) -> "OpShapes":
        params: dict[str, tuple[Poly, ...]] = {}
        if module is not None:  # a parameter without symbolic shape (a frozen layer) is full size
            sym = node.meta.get(META_PARAMS) or {}
            params = {name: sym.get(name, tuple(Poly.const(d) for d in p.shape))
                      for name, p in module.named_parameters()}
        return OpShapes(node=node, args=fx.node.map_arg(node.args, _node_value),
                        kwargs=fx.node.map_arg(node.kwargs, _node_value), out=node.meta.get(META_SYM),
                        params=params, module=module)

    def arg(self, index: int, name: str, default: Any = None) -> Any:
        """Argument by position or keyword (for ``call_method``, index 0 is ``self``)."""
        if index < len(self.args):
            return self.args[index]
        return self.kwargs.get(name, default)


Formula = Callable[[OpShapes], Poly]
Target = type | Callable | str


class OpRegistry:
    """Per-op formulas keyed by module type (matched along the MRO), function target or method
    name; registering a target twice is an error unless ``overwrite`` is set."""

    def __init__(self, what: str):
        self.what = what
        self._table: dict[Target, Formula] = {}

    def register(self, *targets: Target, overwrite: bool = False) -> Callable[[Formula], Formula]:
        """Decorator: ``@registry.register(nn.Conv2d, F.conv2d, "conv2d")``."""
        unique = list(dict.fromkeys(targets))

        def deco(fn: Formula) -> Formula:
            taken = [t for t in unique if t in self._table and not overwrite]
            if taken:
                raise CostModelError(
                    f"{self.what} for {', '.join(map(target_name, taken))} is already registered; "
                    "pass overwrite=True to replace it")
            for t in unique:
                self._table[t] = fn
            return fn

        return deco

    def lookup(self, node: fx.Node, module: nn.Module | None = None) -> Formula | None:
        """The formula for ``node`` (``module``: the submodule of a ``call_module`` node)."""
        if node.op == "call_module":
            return next((self._table[c] for c in type(module).__mro__ if c in self._table), None)
        if node.op in ("call_function", "call_method"):
            try:
                return self._table.get(node.target)
            except TypeError:  # unhashable target
                return None
        return None


def target_name(t: Target) -> str:
    """How to write a registry key in code: ``torch.conv2d``, ``operator.matmul``, ``'matmul'``."""
    if isinstance(t, str):
        return repr(t)
    module = getattr(t, "__module__", None) or ""
    module = "operator" if module == "_operator" else module
    name = getattr(t, "__qualname__" if isinstance(t, type) else "__name__", None) or repr(t)
    return f"{module}.{name}" if module else name

"""Per-op channel rules, registered by decorator and keyed by op target.

A rule is ``fn(ctx) -> output layout`` (a :class:`~pareco_fx.passes.channel_groups.Layout`, a
pytree of them, or None); ``ctx`` is the pass's view of one node (see ``channel_groups.Ctx``).
Keys are module classes (matched along the MRO, so subclasses inherit a rule), functions, or
Tensor method names. Rules live in one module per family: ``layers``, ``pointwise``, ``movement``,
``contraction``, ``reduction``.
"""
from __future__ import annotations

from typing import Any, Callable

import torch.fx as fx
import torch.nn as nn

__all__ = ["register_rule", "rule_for", "RULES", "KIND"]

RULES: dict[Any, Callable] = {}
KIND: dict[Callable, str] = {}  # rule function -> family name (the runtime treats "movement" apart)


def register_rule(*targets: Any, kind: str = "custom", overwrite: bool = False) -> Callable:
    """Register ``fn`` as the channel rule of each target (module class, function or method name).

    Raises:
        ValueError: a target already has a rule and ``overwrite`` is False.
    """

    def deco(fn: Callable) -> Callable:
        for t in dict.fromkeys(targets):  # aliases (F.pixel_shuffle is torch.pixel_shuffle) once
            if t in RULES and not overwrite:
                raise ValueError(f"a channel rule for {t!r} is already registered ({RULES[t].__name__})")
            RULES[t] = fn
        KIND[fn] = kind
        return fn

    return deco


def rule_for(node: fx.Node, module: nn.Module | None) -> Callable | None:
    """The rule of a node, or None (the node is then a boundary)."""
    if node.op == "call_module":
        assert module is not None
        for cls in type(module).__mro__:
            if cls in RULES:
                return RULES[cls]
        return None
    if node.op in ("call_function", "call_method"):
        try:
            return RULES.get(node.target)
        except TypeError:  # unhashable target
            return None
    return None


def _load_builtin_rules() -> None:
    from pareco_fx.passes.rules import contraction, layers, movement, pointwise, reduction  # noqa: F401


_load_builtin_rules()

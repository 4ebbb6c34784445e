"""The intermediate representation shared by the passes, the cost models and the runtime.

Channel groups, symbolic sizes (polynomials of the active channel counts) and the keys under
which passes store their results in ``node.meta``.

A symbolic size is a :class:`Poly` over *features*. Feature ``g`` (``0 <= g < G``) is the number
of active units of group ``g``; further features are table look-ups (``table[units_g]``) for
tensor axes that hold an irregular subset of a group. ``ChannelAnalysis.features(W)`` turns a
batch of width vectors into the feature matrix every Poly is evaluated on.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

import torch

__all__ = [
    "ChannelGroup",
    "Poly",
    "SymTensor",
    "META_LAYOUT",
    "META_SYM",
    "META_PARAMS",
    "META_PARAM_NUMEL",
    "META_VALUE",
]

# node.meta keys written by the passes (one writer each).
META_VALUE = "pareco.value"          # trace.py: concrete non-tensor output (ints, sizes) at batch 1
META_LAYOUT = "pareco.layout"        # channel_groups.py: channel labels of the output (pytree)
META_SYM = "pareco.sym"              # channel_groups.py: SymTensor pytree of the output
META_PARAMS = "pareco.params"        # channel_groups.py: {param name: symbolic shape} of a layer
META_PARAM_NUMEL = "pareco.param_numel"  # channel_groups.py: Poly, parameter elements used here


@dataclass(frozen=True)
class ChannelGroup:
    """A set of coupled channels that is slimmed as one.

    Attributes:
        id: index of the group in ``slim.groups`` (and in every width vector).
        channels: full channel count.
        slimmable: False when the group must keep all its channels.
        reason: why a group is frozen (None when slimmable).
        members: qualified names of the layers and nodes whose channels the group holds.
        quantum: channels move in steps of this size (grouped convs, GroupNorm, ties).
    """

    id: int
    channels: int
    slimmable: bool
    reason: str | None
    members: tuple[str, ...]
    quantum: int = 1

    @property
    def units(self) -> int:
        return self.channels // self.quantum


Monomial = tuple[int, ...]  # sorted feature indices, repeated for powers; () is the constant


class Poly:
    """A polynomial with float coefficients over feature columns; immutable."""

    __slots__ = ("terms",)

    def __init__(self, terms: Mapping[Monomial, float] | None = None):
        self.terms: dict[Monomial, float] = {m: c for m, c in (terms or {}).items() if c != 0}

    @classmethod
    def _of(cls, terms: dict[Monomial, float]) -> "Poly":
        """A Poly owning ``terms``, which hold no zero coefficient (skips the filter: the
        analysis builds tens of thousands of these)."""
        poly = cls.__new__(cls)
        poly.terms = terms
        return poly

    @staticmethod
    def const(c: float) -> "Poly":
        return Poly._of({(): float(c)} if c != 0 else {})

    @staticmethod
    def var(feature: int, coef: float = 1.0) -> "Poly":
        return Poly._of({(feature,): float(coef)} if coef != 0 else {})

    @staticmethod
    def lift(x: "Poly | int | float") -> "Poly":
        return x if isinstance(x, Poly) else Poly.const(x)

    def __add__(self, other: "Poly | int | float") -> "Poly":
        other = Poly.lift(other)
        if not other.terms:
            return self
        if not self.terms:
            return other
        out = dict(self.terms)
        for m, c in other.terms.items():
            s = out.get(m, 0.0) + c
            if s != 0:
                out[m] = s
            else:
                out.pop(m, None)
        return Poly._of(out)

    __radd__ = __add__

    def __mul__(self, other: "Poly | int | float") -> "Poly":
        other = Poly.lift(other)
        a, b = self.terms, other.terms
        if len(b) == 1 and () in b:  # by a constant, as most sizes are: no monomial to merge
            return self._scaled(b[()])
        if len(a) == 1 and () in a:
            return other._scaled(a[()])
        out: dict[Monomial, float] = {}
        for m1, c1 in a.items():
            for m2, c2 in b.items():
                m = tuple(sorted(m1 + m2))
                out[m] = out.get(m, 0.0) + c1 * c2
        return Poly(out)

    def _scaled(self, k: float) -> "Poly":
        return Poly({m: c * k for m, c in self.terms.items()})

    __rmul__ = __mul__

    def __floordiv__(self, k: int) -> "Poly":
        """Exact division by a constant (used for the per-group share of grouped convs)."""
        return Poly({m: c / k for m, c in self.terms.items()})

    @property
    def degree(self) -> int:
        return max((len(m) for m in self.terms), default=0)

    @property
    def is_const(self) -> bool:
        return self.degree == 0

    def value_const(self) -> float:
        return self.terms.get((), 0.0)

    def features(self) -> set[int]:
        return {f for m in self.terms for f in m}

    def evaluate(self, feats: torch.Tensor) -> torch.Tensor:
        """Evaluate on a feature matrix ``[B, F]`` → ``[B]`` (float64 recommended)."""
        out = torch.zeros(feats.shape[0], dtype=feats.dtype, device=feats.device)
        for m, c in self.terms.items():
            term = torch.full_like(out, c)
            for f in m:
                term = term * feats[:, f]
            out = out + term
        return out

    def __repr__(self) -> str:
        if not self.terms:
            return "0"
        parts = []
        for m, c in sorted(self.terms.items()):
            parts.append(f"{c:g}" + "".join(f"*f{f}" for f in m))
        return " + ".join(parts)


def prod(dims: Iterable["Poly | int"]) -> Poly:
    out = Poly.const(1)
    for d in dims:
        out = out * d
    return out


@dataclass(frozen=True)
class SymTensor:
    """A tensor value of the analysed graph at batch size 1.

    Attributes:
        shape: full (concrete) shape.
        sym_shape: per axis, the active size as a Poly of the features.
        storage: id of the storage the value lives in during the example run; values that share
            an id alias each other (views, in-place results, pieces of split/chunk).
        storage_numel: elements of that storage at full width.
    """

    shape: tuple[int, ...]
    sym_shape: tuple[Poly, ...]
    storage: int
    storage_numel: int
    dtype: torch.dtype = field(default=torch.float32)

    @property
    def numel(self) -> Poly:
        return prod(self.sym_shape)

"""The compiled, vectorised form of a cost: polynomials of the features as dense tensors.

Every monomial of degree >= 2 becomes a product column of the features, so all polynomials of
a program evaluate in one matrix product ``[B, F + U] @ [F + U, N]``; a sum's degree-2 part is
instead a quadratic form ``rowsum((feats @ Q) * feats)``, which touches only ``[B, F]``
tensors. A ``max`` program (memory: one polynomial per graph node) drops every polynomial that
another one is never below:

* coefficient by coefficient, which holds for any features (they are counts, never negative);
* over a box of features (``box=(lo, hi)``, e.g. the features of the smallest and the largest
  width vectors the optimiser samples), decided by interval arithmetic: usually far fewer
  columns. That set is used for batches whose rows all lie in the box (checked per call) and
  the first one otherwise, so the result is exact for every input.
"""
from __future__ import annotations

from typing import Callable, Literal, Sequence

import torch

from pareco_fx.errors import CostModelError
from pareco_fx.ir import Monomial, Poly

__all__ = ["CostProgram"]

Reduce = Literal["sum", "max"]


class _Columns:
    """A set of polynomials compiled to tensors: ``feats [B, F] -> [B, N]``."""

    def __init__(self, polys: Sequence[Poly], num_features: int, quadratic_form: bool):
        quadratic = quadratic_form and any(len(m) == 2 for p in polys for m in p.terms)
        products = sorted({m for p in polys for m in p.terms if len(m) > 2 or len(m) == 2 and not quadratic},
                          key=lambda m: (len(m), m))
        depth = max((len(m) for m in products), default=0)
        # One index column per factor position; lower degrees point at an extra ones column.
        padded = [m + (num_features,) * (depth - len(m)) for m in products]
        self.factors = [torch.tensor(col, dtype=torch.long) for col in zip(*padded)]
        self.mixed = len({len(m) for m in products}) > 1
        self.num_features = num_features
        row = {(f,): f for f in range(num_features)}
        row.update({m: num_features + i for i, m in enumerate(products)})
        # Gathered in Python and written once: element-wise tensor writes cost microseconds each.
        const = [0.0] * len(polys)
        rows, cols, values = [], [], []
        square: dict[Monomial, float] = {}
        for col, p in enumerate(polys):
            for mono, c in p.terms.items():
                if not mono:
                    const[col] = c
                elif mono in row:  # a poly holds each monomial once: one entry per (row, col)
                    rows.append(row[mono])
                    cols.append(col)
                    values.append(c)
                else:
                    square[mono] = square.get(mono, 0.0) + c
        self.const = torch.tensor(const, dtype=torch.float64)
        self.weights = torch.zeros(num_features + len(products), len(polys), dtype=torch.float64)
        if values:
            self.weights[rows, cols] = torch.tensor(values, dtype=torch.float64)
        self.quadratic = torch.zeros(num_features, num_features, dtype=torch.float64) if quadratic else None
        if square:
            ij = torch.tensor(list(square), dtype=torch.long)
            self.quadratic[ij[:, 0], ij[:, 1]] = torch.tensor(list(square.values()), dtype=torch.float64)

    def __call__(self, feats: torch.Tensor) -> torch.Tensor:
        weights = self.weights.to(feats)
        out = torch.addmm(self.const.to(feats), feats, weights[:self.num_features])
        if self.factors:
            base = torch.cat([feats, feats.new_ones(len(feats), 1)], 1) if self.mixed else feats
            prod = base.index_select(1, self.factors[0].to(feats.device))
            for idx in self.factors[1:]:
                prod = prod * base.index_select(1, idx.to(feats.device))
            out.addmm_(prod, weights[self.num_features:])
        if self.quadratic is not None:
            out += (feats @ self.quadratic.to(feats) * feats).sum(dim=1, keepdim=True)
        return out


class CostProgram:
    """A compiled cost: ``program(feats) -> Tensor[B]``.

    Args:
        polys: the polynomials, one per column.
        num_features: F, the width of the feature matrices the program is evaluated on.
        reduce: ``"sum"`` adds all polys into one; ``"max"`` takes the maximum over columns.
        names: for ``max`` programs, the name of each column (a graph node), reported by
            :meth:`peak_node`.
        box: for ``max`` programs, ``(lo, hi)`` feature vectors ``[F]`` bounding the usual
            inputs; columns never above another inside the box are skipped for such inputs.
    """

    __slots__ = ("reduce", "names", "polys", "num_features", "_kept", "_columns", "_box", "_box_kept",
                 "_box_columns")

    def __init__(self, polys: Sequence[Poly], *, num_features: int, reduce: Reduce = "sum",
                 names: Sequence[str] | None = None,
                 box: tuple[torch.Tensor, torch.Tensor] | None = None):
        if reduce not in ("sum", "max"):
            raise CostModelError(f"reduce must be 'sum' or 'max', not {reduce!r}")
        if reduce == "sum":
            polys, names = [sum(polys, Poly())], None
        elif names is None or len(names) != len(polys):
            raise CostModelError("a 'max' program needs one name per polynomial (the node it measures)")
        used = max((f for p in polys for f in p.features()), default=-1)
        if used >= num_features:
            raise CostModelError(f"a polynomial uses feature {used} but the analysis has {num_features}")
        self.reduce: Reduce = reduce
        self.names: tuple[str, ...] | None = tuple(names) if names is not None else None
        self.polys: tuple[Poly, ...] = tuple(polys)
        self.num_features = num_features
        self._kept = _undominated(self.polys) if reduce == "max" else [0]
        self._columns = _Columns([self.polys[i] for i in self._kept], num_features, reduce == "sum")
        self._box = None
        if box is not None and reduce == "max":
            lo, hi = (torch.as_tensor(b, dtype=torch.float64).reshape(num_features) for b in box)
            self._box = (torch.minimum(lo, hi), torch.maximum(lo, hi))
            self._box_kept = [self._kept[i] for i in _undominated([self.polys[i] for i in self._kept], self._box)]
            self._box_columns = _Columns([self.polys[i] for i in self._box_kept], num_features, False)

    def _evaluate(self, feats: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
        """(values of the columns that matter for these rows ``[B, n]``, their indices)."""
        if feats.dim() != 2 or feats.shape[1] != self.num_features:
            raise CostModelError(
                f"expected a feature matrix [B, {self.num_features}], got {tuple(feats.shape)}; "
                "pass analysis.features(W)")
        if self._box is not None:
            lo, hi = (b.to(feats) for b in self._box)
            if bool(((feats >= lo) & (feats <= hi)).all()):
                return self._box_columns(feats), self._box_kept
        return self._columns(feats), self._kept

    def __call__(self, feats: torch.Tensor) -> torch.Tensor:
        """The cost of every row of the feature matrix: ``[B, F] -> [B]``."""
        cols, _ = self._evaluate(feats)
        if self.reduce == "sum":
            return cols[:, 0]
        return cols.amax(dim=1) if cols.shape[1] else cols.new_zeros(len(cols))

    def peak_node(self, feats: torch.Tensor) -> list[str] | None:
        """For ``max`` programs, the node where each row's maximum sits (the first of the
        columns evaluated on ties); None for ``sum`` programs."""
        if self.reduce == "sum" or self.names is None:
            return None
        cols, kept = self._evaluate(feats)
        if cols.shape[1] == 0:
            return [""] * len(cols)
        return [self.names[kept[i]] for i in cols.argmax(dim=1).tolist()]

    def __repr__(self) -> str:
        boxed = f", in box {len(self._box_kept)}" if self._box is not None else ""
        return (f"CostProgram(reduce={self.reduce!r}, columns={len(self._kept)}/{len(self.polys)}{boxed}, "
                f"features={self.num_features})")


_FIRST_RIVALS = 4  # rivals tested first: they settle most polynomials
_CHUNK = 1 << 22  # most rival x term entries tested at once (32 MiB of float64)


def _monomial_values(monos: list[Monomial], feats: torch.Tensor) -> torch.Tensor:
    out = feats.new_ones(len(monos))
    for degree in {len(m) for m in monos} - {0}:  # one product per degree, not per monomial
        at = [i for i, m in enumerate(monos) if len(m) == degree]
        out[at] = feats[torch.tensor([monos[i] for i in at])].prod(dim=1)
    return out


class _Terms:
    """The coefficient matrix ``[P, M]`` of P polynomials over M monomials, and the pairwise
    tests ``[k, j]: k - j >= 0``. Polynomials have few terms, so each test looks at ``j``'s
    terms only; off them ``d = c_k - c_j`` is ``k``'s own coefficient, summed once per ``k``."""

    def __init__(self, polys: Sequence[Poly], monos: list[Monomial]):
        at = {m: i for i, m in enumerate(monos)}
        rows, cols, values = zip(*[(j, at[m], c) for j, p in enumerate(polys) for m, c in p.terms.items()])
        self.coef = torch.zeros(len(polys), len(monos), dtype=torch.float64)
        self.coef[list(rows), list(cols)] = torch.tensor(values, dtype=torch.float64)
        self.owner, self.term = torch.nonzero(self.coef != 0, as_tuple=True)
        self.terms_of = torch.bincount(self.owner, minlength=len(polys))

    def _of(self, ks: torch.Tensor, js: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """For every term of ``js``: its column in ``[k, j]``, monomial, c_k ``[K, n]`` and c_j ``[n]``."""
        at = torch.isin(self.owner, js)
        jj, mm = self.owner[at], self.term[at]
        column = torch.empty(len(self.coef), dtype=torch.long)
        column[js] = torch.arange(len(js))
        return column[jj], mm, self.coef[ks][:, mm], self.coef[jj, mm]

    def never_below_everywhere(self, ks: torch.Tensor, js: torch.Tensor) -> torch.Tensor:
        """Every coefficient of ``k - j`` is >= 0: ``k`` is never below ``j`` for features >= 0."""
        column, _, ck, cj = self._of(ks, js)
        fails = torch.zeros(len(ks), len(js), dtype=torch.float64).index_add_(1, column, (~(ck - cj >= 0)).double())
        negative = ~(self.coef[ks] >= 0)
        if bool(negative.any()):  # k's negative terms off j's terms
            fails += negative.double() @ (self.coef[js] == 0).double().T
        return fails == 0

    def box_test(self, low: torch.Tensor, high: torch.Tensor) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """``(ks, js) -> [k, j]``: ``k - j >= 0`` for all features in a box whose monomials range
        over ``[low, high]`` (interval arithmetic: the lower bound of ``k - j`` is
        ``sum_m d_m * low_m + min(d_m, 0) * (high_m - low_m)``)."""
        span = high - low
        at_low, negative = self.coef @ low, self.coef.clamp(max=0) @ span

        def never_below(ks: torch.Tensor, js: torch.Tensor) -> torch.Tensor:
            column, mm, ck, cj = self._of(ks, js)
            on_j = ((ck - cj).clamp(max=0) - ck.clamp(max=0)) * span[mm]  # j's terms, less k's own there
            bound = torch.zeros(len(ks), len(js), dtype=torch.float64).index_add_(1, column, on_j)
            return bound + negative[ks, None] + (at_low[ks, None] - at_low[None, js]) >= 0

        return never_below


def _undominated(polys: Sequence[Poly], box: tuple[torch.Tensor, torch.Tensor] | None = None) -> list[int]:
    """Indices, in order, of the polynomials no other one beats: ``k`` beats ``j`` if
    ``k - j >= 0`` for all non-negative features (every coefficient >= 0) or, with a box, for
    all features in it (interval lower bound >= 0); of equal polynomials the first one stays."""
    monos = sorted({m for p in polys for m in p.terms})
    if not polys or not monos:
        return list(range(min(1, len(polys))))
    terms = _Terms(polys, monos)
    # k beats j: never below it, and either somewhere above it or equal and earlier. This
    # is a strict order (the interval test is transitive), so every dropped polynomial is
    # beaten by a kept one. "j never below k" tests j - k, the exact negation of k - j.
    if box is None:
        every = torch.arange(len(polys))
        above = terms.never_below_everywhere(every, every)
        beaten = (above & (~above.T | (every[:, None] < every))).any(dim=0)
        return torch.nonzero(~beaten).flatten().tolist()

    low, high = (_monomial_values(monos, b) for b in box)
    never_below = terms.box_test(low, high)
    # Rivals, the likeliest winners (highest at the top of the box) first: the first few beat
    # most polynomials, so the others are only tested against the few left.
    rivals = torch.argsort(terms.coef @ high, descending=True)
    beaten = torch.zeros(len(polys), dtype=torch.bool)
    done, size = 0, _FIRST_RIVALS
    while done < len(rivals):
        end = done + size
        js, ks = torch.nonzero(~beaten).flatten(), rivals[done:end]
        above, below = never_below(ks, js), never_below(js, ks).T
        beaten[js[(above & (~below | (ks[:, None] < js))).any(dim=0)]] = True
        done += len(ks)
        size = max(_FIRST_RIVALS, _CHUNK // max(1, int(terms.terms_of[~beaten].sum())))
    return torch.nonzero(~beaten).flatten().tolist()

"""The search space of width vectors and its exact, normalised cost."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["WidthSpace"]

CostFn = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class WidthSpace:
    """Width vectors over all groups, searched over the slimmable ones only.

    A full vector has one entry per group of the slimmable model (frozen groups always 1.0); the
    search works on the ``dim`` slimmable entries, each in ``[min_width, 1]``.

    Attributes:
        slimmable: bool tensor ``[G]``, which groups may change width.
        min_width: the lower bound of every slimmable width.
        cost_batch: absolute cost of a batch of full vectors ``[B, G] -> [B]``.
        cost_full: cost of the full network.
        cost_min: cost of the smallest network (every slimmable group at ``min_width``).
    """

    slimmable: Tensor
    min_width: float
    cost_batch: CostFn
    cost_full: float
    cost_min: float

    @classmethod
    def build(cls, slimmable: Tensor, min_width: float, cost_batch: CostFn) -> WidthSpace:
        """Measure the full and smallest costs of ``cost_batch`` and make the space."""
        mask = slimmable.bool()
        ends = torch.ones(2, len(mask), dtype=torch.float64)
        ends[1, mask] = min_width
        costs = cost_batch(ends).double()
        if not costs[0] > 0:
            raise ValueError(f"the full network's cost is {float(costs[0])}; a cost must be positive")
        return cls(mask, float(min_width), cost_batch, float(costs[0]), float(costs[1]))

    @classmethod
    def from_slim(cls, slim: object, cost: str) -> WidthSpace:
        """The space of a ``SlimmableModel`` under the cost model named ``cost``."""
        mask = torch.tensor([group.slimmable for group in slim.groups], dtype=torch.bool)  # type: ignore[attr-defined]
        return cls.build(mask, slim.min_width, lambda W: slim.cost_batch(cost, W))  # type: ignore[attr-defined]

    @property
    def num_groups(self) -> int:
        """G, the length of a full width vector."""
        return len(self.slimmable)

    @property
    def dim(self) -> int:
        """d, the number of slimmable groups."""
        return int(self.slimmable.sum())

    @property
    def ratio_min(self) -> float:
        """Cost ratio of the smallest network."""
        return self.cost_min / self.cost_full

    def embed(self, x: Tensor) -> Tensor:
        """Slimmable widths ``[B, d]`` to full vectors ``[B, G]`` (frozen groups at 1.0)."""
        W = torch.ones(x.shape[0], self.num_groups, dtype=torch.float64)
        W[:, self.slimmable] = x.double()
        return W

    def project(self, W: Tensor) -> Tensor:
        """Full vectors ``[B, G]`` to their slimmable widths ``[B, d]``."""
        return W[:, self.slimmable].double()

    def to_unit(self, x: Tensor) -> Tensor:
        """Slimmable widths to the unit cube (GP inputs)."""
        return (x - self.min_width) / (1.0 - self.min_width)

    def from_unit(self, u: Tensor) -> Tensor:
        """Unit-cube points back to slimmable widths."""
        return self.min_width + u.clamp(0.0, 1.0) * (1.0 - self.min_width)

    def uniform(self, f: Tensor) -> Tensor:
        """Full vectors of uniform multipliers ``f`` ``[B]`` (every slimmable group at f)."""
        return self.embed(f.double().view(-1, 1).expand(-1, self.dim))

    def full(self) -> Tensor:
        """The full network, ``[G]``."""
        return torch.ones(self.num_groups, dtype=torch.float64)

    def smallest(self) -> Tensor:
        """The smallest network, ``[G]``."""
        return self.uniform(torch.tensor([self.min_width], dtype=torch.float64))[0]

    def random(self, count: int, generator: torch.Generator) -> Tensor:
        """``count`` full vectors of i.i.d. uniform widths in ``[min_width, 1]``."""
        return self.embed(self.from_unit(torch.rand(count, self.dim, generator=generator, dtype=torch.float64)))

    def random_uniform(self, count: int, generator: torch.Generator) -> Tensor:
        """``count`` full vectors of uniform multipliers f ~ U(min_width, 1)."""
        return self.uniform(self.from_unit(torch.rand(count, generator=generator, dtype=torch.float64)))

    def ratio(self, W: Tensor) -> Tensor:
        """Exact cost ratios ``C(W) / C(full)`` of full vectors ``[B, G]``."""
        return self.cost_batch(W.double()).double() / self.cost_full

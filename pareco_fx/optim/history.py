"""The history of visited width vectors with their cost ratios and latest losses."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = ["History", "HistoryEntry"]


@dataclass(frozen=True)
class HistoryEntry:
    """One visited width vector.

    Attributes:
        widths: one width per group.
        cost_ratio: exact cost relative to the full network.
        loss: the latest re-scored loss (``None`` until scored).
        step: the training step (or search evaluation) at which it was proposed.
    """

    widths: tuple[float, ...]
    cost_ratio: float
    loss: float | None
    step: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"widths": list(self.widths), "cost_ratio": self.cost_ratio, "loss": self.loss, "step": self.step}


class History:
    """Width vectors ``[N, G]``, cost ratios ``[N]``, losses ``[N]`` (NaN: not scored yet), steps."""

    def __init__(self, num_groups: int) -> None:
        self.widths = torch.zeros(0, num_groups, dtype=torch.float64)
        self.ratios = torch.zeros(0, dtype=torch.float64)
        self.losses = torch.zeros(0, dtype=torch.float64)
        self.steps = torch.zeros(0, dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.ratios)

    def append(self, W: Tensor, ratios: Tensor, step: int) -> None:
        """Add vectors ``[B, G]`` with their cost ratios; their losses stay unknown."""
        self.widths = torch.cat([self.widths, W.double()])
        self.ratios = torch.cat([self.ratios, ratios.double()])
        self.losses = torch.cat([self.losses, torch.full((len(W),), float("nan"), dtype=torch.float64)])
        self.steps = torch.cat([self.steps, torch.full((len(W),), step, dtype=torch.int64)])

    def select(self, mask: Tensor) -> History:
        """A new history of the entries where the bool ``mask`` ``[N]`` is true."""
        picked = History(self.widths.shape[1])
        picked.widths, picked.ratios = self.widths[mask], self.ratios[mask]
        picked.losses, picked.steps = self.losses[mask], self.steps[mask]
        return picked

    def scored(self) -> Tensor:
        """Bool mask of the entries with a finite loss."""
        return torch.isfinite(self.losses)

    def entries(self) -> tuple[HistoryEntry, ...]:
        """Immutable copy for results and JSON."""
        return tuple(
            HistoryEntry(
                tuple(w.tolist()), float(r), float(l) if torch.isfinite(l) else None, int(s)
            )
            for w, r, l, s in zip(self.widths, self.ratios, self.losses, self.steps)
        )

    def state_dict(self) -> dict[str, Tensor]:
        """Tensors only (``torch.load(weights_only=True)``-safe)."""
        return {"widths": self.widths.clone(), "ratios": self.ratios.clone(),
                "losses": self.losses.clone(), "steps": self.steps.clone()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore :meth:`state_dict`."""
        self.widths, self.ratios = state["widths"].double(), state["ratios"].double()
        self.losses, self.steps = state["losses"].double(), state["steps"].long()

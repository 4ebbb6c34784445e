"""Width samplers: which M width vectors the sandwich trains at each step.

All samplers share one interface: ``propose(step, score)`` returns the ``[M, G]`` vectors to
train at ``step`` (the trainer adds the full and the smallest networks); ``score`` gives the loss
of any batch of width vectors on the current training batch, for samplers that learn from it.
Their state is tensors and primitives only, so checkpoints load with ``weights_only=True``.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from pareco_fx.optim.config import TrainConfig
from pareco_fx.optim.history import History
from pareco_fx.optim.search import propose_by_search
from pareco_fx.optim.space import WidthSpace

__all__ = ["ParecoSampler", "Sampler", "ScoreFn", "SlimSampler", "TwoStageSampler", "make_sampler"]

ScoreFn = Callable[[Tensor], Tensor]


class Sampler(ABC):
    """Proposes the width vectors of each training step.

    Args:
        space: the width space.
        config: the training configuration (M, seed and sampler options).
    """

    def __init__(self, space: WidthSpace, config: TrainConfig) -> None:
        self.space, self.config = space, config
        self.generator = torch.Generator().manual_seed(config.seed)
        self.history = History(space.num_groups)

    @abstractmethod
    def propose(self, step: int, score: ScoreFn) -> Tensor:
        """The ``[M, G]`` width vectors to train at ``step``."""

    def state_dict(self) -> dict[str, Any]:
        """Generator state and history (tensors only)."""
        return {"generator": self.generator.get_state(), "history": self.history.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.generator.set_state(state["generator"])
        self.history.load_state_dict(state["history"])


class SlimSampler(Sampler):
    """US-Nets baseline: M uniform multipliers f ~ U(min_width, 1) every step."""

    def propose(self, step: int, score: ScoreFn) -> Tensor:
        return self.space.random_uniform(self.config.num_sampled, self.generator)


class TwoStageSampler(Sampler):
    """Two-stage baseline, stage 1: M vectors of i.i.d. per-group widths every step."""

    def propose(self, step: int, score: ScoreFn) -> Tensor:
        return self.space.random(self.config.num_sampled, self.generator)


class ParecoSampler(Sampler):
    """PareCO: every ``period`` steps, re-score the history (every ``rescore_every``-th period
    only, if set), then search M new vectors.

    The first ``prior_points`` vectors are uniform multipliers, the next one the full network,
    the rest come from the GP-guided lambda search (:func:`~pareco_fx.optim.search.propose_by_search`).
    Proposed vectors join the history; their losses come with the next re-score.

    Args:
        space: the width space.
        config: the training configuration.
        total_steps: the run's length, which with ``num_width_vectors`` sets the period.
    """

    def __init__(self, space: WidthSpace, config: TrainConfig, total_steps: int) -> None:
        super().__init__(space, config)
        self.period = max(1, round(total_steps * config.num_sampled / config.num_width_vectors))
        self.current = torch.zeros(0, space.num_groups, dtype=torch.float64)

    def propose(self, step: int, score: ScoreFn) -> Tensor:
        if step % self.period == 0 or len(self.current) != self.config.num_sampled:
            if (step // self.period) % self.config.rescore_every == 0:
                self._rescore(score)
            self.current = self._sample(step)
        return self.current

    def _rescore(self, score: ScoreFn) -> None:
        start = self._rescore_start()
        if start < len(self.history):
            losses = self.history.losses.clone()
            losses[start:] = score(self.history.widths[start:]).double()
            self.history.losses = losses

    def _rescore_start(self) -> int:
        """First history entry whose loss the next search reads.

        The GP sees only the ``gp_max_points`` most recent vectors, so older ones are re-scored
        only when the Pareto-aware targets read every loss; otherwise they keep their last loss
        until the re-score after training. The proposals are the same as with a full re-score,
        and a paper-scale history (~1,000 vectors) costs under half the forward passes.
        """
        if self.config.pareto_aware:
            return 0
        return max(0, len(self.history) - self.config.gp_max_points)

    def _sample(self, step: int) -> Tensor:
        count = self.config.num_sampled
        seen = len(self.history)
        prior = max(0, min(count, self.config.prior_points - seen))
        parts = [self.space.random_uniform(prior, self.generator)]
        if prior < count and seen + prior == self.config.prior_points:
            parts.append(self.space.full()[None])
        rest = count - sum(len(p) for p in parts)
        if rest > 0:
            if int(self.history.scored().sum()) >= 2:
                parts.append(propose_by_search(self.space, self.history, self.config, self.generator, rest))
            else:  # nothing to learn from yet (prior_points < 2)
                parts.append(self.space.random_uniform(rest, self.generator))
        W = torch.cat(parts)
        self.history.append(W, self.space.ratio(W), step)
        return W

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "current": self.current.clone(), "period": self.period}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.current, self.period = state["current"].double(), int(state["period"])


def make_sampler(space: WidthSpace, config: TrainConfig, total_steps: int) -> Sampler:
    """The sampler of ``config.method``."""
    if config.method == "pareco":
        return ParecoSampler(space, config, total_steps)
    return {"slim": SlimSampler, "twostage": TwoStageSampler}[config.method](space, config)

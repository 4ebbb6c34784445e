"""Training configuration: one frozen dataclass, serialisable to primitives."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from pareco_fx.errors import UserInputError

__all__ = ["METHODS", "SCHEDULES", "TrainConfig"]

METHODS = ("pareco", "slim", "twostage")
SCHEDULES = ("linear", "cosine")
SEARCH_POOLS = ("mixed", "box")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run (with the model, the data and the seed).

    The defaults are sized for ``make demo``: a ResNet-20-style net on the embedded 4,500-image
    Fashion-MNIST training split in a few minutes on two CPU cores.

    Attributes:
        method: ``"pareco"`` (GP-guided widths), ``"slim"`` (uniform multipliers, US-Nets) or
            ``"twostage"`` (i.i.d. per-group widths, then a Bayesian search on frozen weights).
        cost: name of the cost model (``"flops"``, ``"memory"``, ``"params"`` or a registered one).
        epochs: passes over the training set.
        batch_size: training batch size.
        lr: peak learning rate for batch size 128 (scaled linearly with ``batch_size``).
        momentum: SGD momentum.
        nesterov: Nesterov momentum.
        weight_decay: L2 on weights of conv/linear layers (never on BatchNorm or bias parameters).
        warmup_epochs: linear warm-up length (may be fractional).
        schedule: decay after warm-up, per iteration: ``"linear"`` or ``"cosine"``, down to 0.
        num_sampled: M, width vectors trained per step besides the full and smallest networks.
        label_smoothing: epsilon of the full network's cross entropy.
        seed: seeds weights-independent randomness: data order, sampling, search.
        num_width_vectors: about how many width vectors ``pareco`` visits over the run; sets the
            re-sampling period n = steps * num_sampled / num_width_vectors. Every period re-scores
            the whole history (see ``rescore_every``), so the overhead grows with its square over
            the steps: the paper's ~1000 suits long runs (hundreds of thousands of steps); 50
            suits the demo's 420.
        rescore_every: re-score the history every k-th period only (1, the paper's: every
            period); the vectors proposed in between are searched on the last re-score's losses.
            In a short run with many width vectors the re-scoring is nearly all of PareCO's
            overhead (the search takes a few percent), and k cuts it k-fold.
        prior_points: the first width vectors are uniform multipliers, then the full network.
        ucb_beta: UCB of the loss is mu + sqrt(beta) * sigma.
        rho: weight of the linear term of the augmented Chebyshev scalarisation.
        z: reference point of the scalarisation (in standardised units).
        lambda_tolerance: the lambda search stops when the cost ratio is this close to the target.
        lambda_halvings: most bisection steps of the lambda search.
        pareto_aware: draw target costs weighted by the gaps of the current front instead of
            uniformly.
        gp_max_points: the GP is fitted on at most this many (most recent) history points, so the
            fit stays well below the cost of a training step; unless ``pareto_aware``, only these
            are re-scored every period (the older ones are re-scored once, after training).
        search_candidates: random candidates of the vectorised acquisition search.
        search_pool: where those candidates come from. ``mixed``: uniform multipliers (one in
            eight), i.i.d. per-group widths and the scored history. ``box``: per candidate a random
            centre and spread in the width box, per-group widths uniform within it (i.i.d. widths
            are the widest spread), and no history point: the pessimistic UCB cannot re-propose
            the uniform priors it knows best, and uniform vectors arise only where clamping sends
            every group to a bound of the box; the centres keep the ends of the cost range
            reachable.
        recal_batches: training batches that re-estimate BatchNorm statistics of each evaluated
            width vector; ``pareco`` also re-scores its history on them after training, to rank
            the front's candidates.
        front_coverage: history layers are peeled until they cover this share of the cost range.
        front_fill: ``pareco`` only: width vectors a search on the trained weights adds to the
            re-scored history before the front is built, aimed where the front has gaps
            (Pareto-aware targets), so a budget between visited vectors has candidates just
            under it (not below the cheapest trained vector: the weights are good only near
            the widths they were trained at); 0 keeps the paper's front, drawn from the
            training history alone.
        twostage_evals: width vectors the post-training search of ``twostage`` evaluates.
        slim_eval_points: uniform multipliers, evenly spaced in cost, that make the ``slim`` front
            and the uniform comparison points of every method.
        num_workers: DataLoader workers.
        max_train_batches: optional cap on batches per epoch (tests, smoke runs).
    """

    method: str = "pareco"
    cost: str = "flops"
    epochs: int = 12
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0
    schedule: str = "linear"
    num_sampled: int = 2
    label_smoothing: float = 0.1
    seed: int = 0
    num_width_vectors: int = 50
    rescore_every: int = 1
    prior_points: int = 20
    ucb_beta: float = 0.1
    rho: float = 1e-6
    z: float = -3.0
    lambda_tolerance: float = 0.02
    lambda_halvings: int = 10
    pareto_aware: bool = False
    gp_max_points: int = 300
    search_candidates: int = 2048
    search_pool: str = "mixed"
    recal_batches: int = 4
    front_coverage: float = 0.9
    front_fill: int = 0
    twostage_evals: int = 1000
    slim_eval_points: int = 40
    num_workers: int = 0
    max_train_batches: int | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise UserInputError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.search_pool not in SEARCH_POOLS:
            raise UserInputError(f"unknown search_pool {self.search_pool!r}; choose one of {', '.join(SEARCH_POOLS)}")
        if self.schedule not in SCHEDULES:
            raise UserInputError(f"unknown schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}")
        positive = ("epochs", "batch_size", "num_width_vectors", "rescore_every", "recal_batches", "slim_eval_points",
                    "lambda_halvings", "gp_max_points", "search_candidates", "twostage_evals")
        for name in positive:
            if getattr(self, name) < 1:
                raise UserInputError(f"{name} must be at least 1, got {getattr(self, name)}")
        if min(self.num_sampled, self.prior_points, self.num_workers, self.front_fill) < 0:
            raise UserInputError("num_sampled, prior_points, num_workers and front_fill must not be negative")
        if self.front_fill and self.method != "pareco":
            raise UserInputError(f"front_fill applies to pareco only (its front comes from the training history); "
                                 f"drop it for {self.method}")
        if self.max_train_batches is not None and self.max_train_batches < 1:
            raise UserInputError(f"max_train_batches must be at least 1, got {self.max_train_batches}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise UserInputError(f"lr must be a positive number, got {self.lr}")
        if not 0.0 < self.front_coverage <= 1.0:
            raise UserInputError(f"front_coverage must lie in (0, 1], got {self.front_coverage}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise UserInputError(f"label_smoothing must lie in [0, 1), got {self.label_smoothing}")

    def to_dict(self) -> dict[str, Any]:
        """The configuration as a dict of primitives (JSON- and ``weights_only``-safe)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error (a foreign or newer file)."""
        names = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise UserInputError(f"unknown training options {', '.join(unknown)}; is this a pareco-fx config?")
        return cls(**data)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

"""The PareCO search step: a GP of loss over widths, target costs, and the lambda search.

The loss is modelled by a BoTorch ``SingleTaskGP`` (Matern-5/2 with ARD, standardised outcomes,
inputs in the unit cube); the cost is never modelled: the exact normalised cost of every
candidate comes from the compiled cost program (``slim.cost_batch``). For a target cost c*, a
bisection on the preference lambda of the augmented Chebyshev scalarisation

    T = max((1-lam)(UCB - z), lam(cost - z)) + rho((1-lam)(UCB - z) + lam(cost - z))

finds the width vector whose cost lies within the tolerance of c*; each argmin is a vectorised
search over random candidates (uniform multipliers, i.i.d. per-group widths, the history) refined
by local perturbations of the best one.
"""
from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from pareco_fx.optim.config import TrainConfig
from pareco_fx.optim.history import History
from pareco_fx.optim.pareto import non_dominated
from pareco_fx.optim.space import WidthSpace

__all__ = [
    "ChebyshevSearch", "LossModel", "SearchResult", "bayesian_search", "draw_targets", "extend_search",
    "propose_by_search", "single_thread", "target_weights",
]

TARGET_BINS = 50
# Share of the Pareto-aware target distribution spread uniformly, so no budget is ever starved.
UNIFORM_FLOOR = 0.1
REFINE_SCALES = (0.1, 0.03)  # std of the local perturbations, in unit-cube coordinates
REFINE_SAMPLES = 128
# L-BFGS iterations of the GP hyper-parameter fit: converged to ~1e-2 in log-likelihood, and
# 5-10x faster than running to tolerance at a few hundred points.
FIT_MAXITER = 50


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run small-tensor work (GP, cost programs) on one thread: OpenMP hand-offs would cost more
    than the work, and far more on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _standardise(values: Tensor) -> tuple[Tensor, float, float]:
    mean = float(values.mean())
    std = float(values.std()) if len(values) > 1 else 0.0
    std = std if std > 1e-12 else 1.0
    return (values - mean) / std, mean, std


class LossModel:
    """GP of the (standardised) loss over unit-cube widths, queried as UCB mu + sqrt(beta)*sigma.

    Args:
        space: the width space.
        history: scored points; only the ``max_points`` most recent finite ones are used.
        beta: the UCB beta.
        max_points: cap on GP training points (an exact GP is cubic in them).
        seed: seeds the (rare) random restarts of the hyper-parameter fit.
    """

    def __init__(self, space: WidthSpace, history: History, beta: float, max_points: int, seed: int) -> None:
        # BoTorch takes seconds to import; only the search needs it.
        from botorch.exceptions import ModelFittingError
        from botorch.fit import fit_gpytorch_mll
        from botorch.models import SingleTaskGP
        from gpytorch.kernels import MaternKernel, ScaleKernel
        from gpytorch.mlls import ExactMarginalLogLikelihood
        from gpytorch.priors import GammaPrior
        from gpytorch.utils.errors import NotPSDError

        scored = torch.nonzero(history.scored()).flatten()[-max_points:]
        if len(scored) < 2:
            raise ValueError("a loss model needs at least two scored width vectors")
        self.space, self.beta = space, beta
        x = space.to_unit(space.project(history.widths[scored]))
        y, _, _ = _standardise(history.losses[scored])
        covar = ScaleKernel(
            MaternKernel(nu=2.5, ard_num_dims=space.dim, lengthscale_prior=GammaPrior(3.0, 6.0)),
            outputscale_prior=GammaPrior(2.0, 0.15),
        )
        self.gp = SingleTaskGP(x, y.unsqueeze(-1), covar_module=covar, outcome_transform=None)
        mll = ExactMarginalLogLikelihood(self.gp.likelihood, self.gp)
        with torch.random.fork_rng(), warnings.catch_warnings(), single_thread():
            torch.manual_seed(seed)
            warnings.simplefilter("ignore")
            try:
                fit_gpytorch_mll(mll, optimizer_kwargs={"options": {"maxiter": FIT_MAXITER}})
            except (ModelFittingError, NotPSDError):
                pass  # the GP keeps its initial hyper-parameters: still a usable guide
        self.gp.eval()
        self._predictor = _Posterior(self.gp, x, y)

    def ucb(self, x: Tensor) -> Tensor:
        """UCB of the standardised loss at slimmable widths ``[B, d]`` (higher = worse)."""
        with single_thread():
            mean, variance = self._predictor(self.space.to_unit(x.double()))
        return mean + math.sqrt(self.beta) * variance.clamp_min(0.0).sqrt()


class _Posterior:
    """The exact posterior of a fitted ``SingleTaskGP`` (constant mean, scaled Matern-5/2 ARD,
    Gaussian noise) in closed form, from one Cholesky factor of the training covariance.

    It computes what ``gp.posterior(x)`` gives (latent mean and variance, agreeing to rounding)
    without GPyTorch's lazy-tensor machinery, whose per-call overhead was most of the search's
    time: the lambda search asks for the UCB of a few hundred points dozens of times per fit.
    """

    def __init__(self, gp: Any, x: Tensor, y: Tensor) -> None:
        with torch.no_grad():
            self.lengthscale = gp.covar_module.base_kernel.lengthscale.detach().reshape(1, -1).double()
            self.outputscale = float(gp.covar_module.outputscale)
            self.mean = float(gp.mean_module.constant)
            noise = float(gp.likelihood.noise.reshape(-1)[0])
            self.x = x / self.lengthscale
            covar = self._kernel(self.x) + noise * torch.eye(len(x), dtype=torch.float64)
            self.chol = _cholesky(covar)
            self.weights = torch.cholesky_solve((y - self.mean).unsqueeze(-1), self.chol).squeeze(-1)

    def _kernel(self, scaled: Tensor) -> Tensor:
        r = torch.cdist(scaled, self.x).clamp_min(0.0)
        root5r = math.sqrt(5.0) * r
        return self.outputscale * (1.0 + root5r + root5r.square() / 3.0) * torch.exp(-root5r)

    def __call__(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior mean and variance ``[B]`` at unit-cube points ``[B, d]``."""
        with torch.no_grad():
            cross = self._kernel(x / self.lengthscale)
            mean = self.mean + cross @ self.weights
            half = torch.linalg.solve_triangular(self.chol, cross.T, upper=False)
            return mean, self.outputscale - half.square().sum(dim=0)


def _cholesky(covar: Tensor) -> Tensor:
    """Lower Cholesky factor, with GPyTorch's escalating diagonal jitter if it is not quite PD."""
    jitter = 0.0
    for attempt in range(4):
        factor, info = torch.linalg.cholesky_ex(covar + jitter * torch.eye(len(covar), dtype=covar.dtype))
        if int(info) == 0:
            return factor
        jitter = 1e-8 * 10**attempt
    raise ValueError("the GP's training covariance is not positive definite")


@dataclass(frozen=True)
class SearchResult:
    """Outcome of one lambda search.

    Attributes:
        widths: the chosen full width vector ``[G]``.
        ratio: its exact cost ratio.
        target: the target cost ratio.
        lam: the last lambda tried.
        converged: whether the ratio lies within the tolerance of the target.
    """

    widths: Tensor
    ratio: float
    target: float
    lam: float
    converged: bool


class ChebyshevSearch:
    """Bisection on lambda so that the scalarisation's argmin hits a target cost.

    Args:
        space: the width space (its exact cost is used, never a surrogate).
        model: the loss model (UCB, standardised units).
        config: z, rho, tolerance, halvings and the candidate count.
        generator: random candidates and perturbations.
        extra: further slimmable-width candidates ``[B, d]`` (e.g. the history); the ``mixed``
            pool only.
        cost_scale: (mean, std) that standardise cost ratios like the loss; defaults to the
            candidates' own.
    """

    def __init__(
        self,
        space: WidthSpace,
        model: LossModel,
        config: TrainConfig,
        generator: torch.Generator,
        extra: Tensor | None = None,
        cost_scale: tuple[float, float] | None = None,
    ) -> None:
        self.space, self.model, self.config, self.generator = space, model, config, generator
        count = config.search_candidates
        if config.search_pool == "box":
            x = space.from_unit(random_boxes(count, space.dim, generator))
        else:
            uniform = space.project(space.random_uniform(max(1, count // 8), generator))
            iid = space.project(space.random(count - len(uniform), generator))
            x = torch.cat([uniform, iid] + ([extra.double()] if extra is not None and len(extra) else []))
        with single_thread():
            ratio = space.ratio(space.embed(x))
        if cost_scale is None:
            _, mean, std = _standardise(ratio)
            cost_scale = (mean, std)
        self.cost_scale = cost_scale
        self.x, self.loss, self.ratio = x, model.ucb(x), ratio

    def _evaluate(self, x: Tensor) -> tuple[Tensor, Tensor]:
        with single_thread():
            ratio = self.space.ratio(self.space.embed(x))
        return self.model.ucb(x), ratio

    def scalarise(self, loss: Tensor, ratio: Tensor, lam: float) -> Tensor:
        """Augmented Chebyshev scalarisation of (standardised UCB loss, exact cost ratio)."""
        cost = (ratio - self.cost_scale[0]) / self.cost_scale[1]
        a, b = (1.0 - lam) * (loss - self.config.z), lam * (cost - self.config.z)
        return torch.maximum(a, b) + self.config.rho * (a + b)

    def argmin(self, lam: float) -> tuple[Tensor, float, float]:
        """Best slimmable widths ``[d]`` for ``lam``, with their UCB loss and cost ratio.

        Random candidates first, then local Gaussian perturbations of the incumbent at shrinking
        scales; every evaluated point joins the candidate pool.
        """
        scores = self.scalarise(self.loss, self.ratio, lam)
        best = int(torch.argmin(scores))
        for scale in REFINE_SCALES:
            centre = self.space.to_unit(self.x[best])
            noise = torch.randn(REFINE_SAMPLES, self.space.dim, generator=self.generator, dtype=torch.float64)
            local = self.space.from_unit(centre + scale * noise)
            loss, ratio = self._evaluate(local)
            self.x = torch.cat([self.x, local])
            self.loss, self.ratio = torch.cat([self.loss, loss]), torch.cat([self.ratio, ratio])
            scores = torch.cat([scores, self.scalarise(loss, ratio, lam)])
            best = int(torch.argmin(scores))
        return self.x[best], float(self.loss[best]), float(self.ratio[best])

    def solve(self, target: float) -> SearchResult:
        """Bisect lambda (start 0.5, at most ``lambda_halvings`` steps) until the argmin's cost
        ratio is within ``lambda_tolerance`` of ``target``.

        A cost below the target lowers lambda (less weight on cost), above raises it. If the
        bisection does not converge, the candidate of lowest UCB loss within the tolerance is
        taken, or else the one closest to the target.
        """
        tol = self.config.lambda_tolerance
        lam, lo, hi = 0.5, 0.0, 1.0
        for _ in range(self.config.lambda_halvings):
            x, _, ratio = self.argmin(lam)
            if abs(ratio - target) <= tol:
                return SearchResult(self.space.embed(x[None])[0], ratio, target, lam, True)
            if ratio < target:
                hi, lam = lam, (lam + lo) / 2
            else:
                lo, lam = lam, (lam + hi) / 2
        near = (self.ratio - target).abs() <= tol
        if near.any():
            index = torch.nonzero(near).flatten()[torch.argmin(self.loss[near])]
        else:
            index = torch.argmin((self.ratio - target).abs())
        ratio = float(self.ratio[index])
        return SearchResult(self.space.embed(self.x[index][None])[0], ratio, target, lam, abs(ratio - target) <= tol)


def random_boxes(count: int, dim: int, generator: torch.Generator) -> Tensor:
    """``count`` points of the unit cube ``[count, dim]``, each drawn uniformly from its own random
    sub-box (centre c ~ U(0, 1), half-width s ~ U(0, 1/2), clipped to the cube): near-uniform and
    spread-out vectors at every cost level; uniform ones only where the clipping sends every
    coordinate to the same face."""
    centre = torch.rand(count, 1, generator=generator, dtype=torch.float64)
    spread = 0.5 * torch.rand(count, 1, generator=generator, dtype=torch.float64)
    noise = 2.0 * torch.rand(count, dim, generator=generator, dtype=torch.float64) - 1.0
    return (centre + spread * noise).clamp(0.0, 1.0)


def target_weights(ratios: Tensor, losses: Tensor, ratio_min: float, bins: int = TARGET_BINS) -> Tensor:
    """Pareto-aware weights of ``bins`` equal cost bins over ``[ratio_min, 1]``.

    The staircase front of the scored points (anchored at ``(ratio_min, worst loss)``) is cut
    into rectangles between consecutive front points, of area (cost gap) x (loss drop); each
    bin gets the area of the rectangles over it, so targets go where the front has its largest
    gaps. A uniform floor of ``UNIFORM_FLOOR`` keeps every budget possible.
    """
    edges = torch.linspace(ratio_min, 1.0, bins + 1, dtype=torch.float64)
    weights = torch.zeros(bins, dtype=torch.float64)
    ok = torch.isfinite(losses)
    if ok.sum() >= 1:
        r, l = ratios[ok].double(), losses[ok].double()
        front = non_dominated(torch.stack([l, r], dim=1))
        order = torch.argsort(r[front])
        fr, fl = r[front][order], l[front][order]
        xs = torch.cat([torch.tensor([ratio_min], dtype=torch.float64), fr])
        ys = torch.cat([l.max().view(1), fl])
        for i in range(len(fr)):
            left, right = float(xs[i]), float(xs[i + 1])
            area = (right - left) * float(ys[i] - ys[i + 1])
            if right <= left or area <= 0:
                continue
            overlap = (edges[1:].clamp(max=right) - edges[:-1].clamp(min=left)).clamp_min(0)
            weights += area * overlap / (right - left)
    total = float(weights.sum())
    uniform = torch.full((bins,), 1.0 / bins, dtype=torch.float64)
    return uniform if total <= 0 else (1 - UNIFORM_FLOOR) * weights / total + UNIFORM_FLOOR * uniform


def draw_targets(
    count: int, space: WidthSpace, history: History, pareto_aware: bool, generator: torch.Generator
) -> Tensor:
    """Target cost ratios: U(ratio_min, 1), or Pareto-aware bins (see :func:`target_weights`)."""
    lo = space.ratio_min
    u = torch.rand(count, generator=generator, dtype=torch.float64)
    if not pareto_aware:
        return lo + u * (1.0 - lo)
    weights = target_weights(history.ratios, history.losses, lo)
    bins = torch.multinomial(weights, count, replacement=True, generator=generator)
    return lo + (bins.double() + u) * (1.0 - lo) / len(weights)


def propose_by_search(
    space: WidthSpace, history: History, config: TrainConfig, generator: torch.Generator, count: int
) -> Tensor:
    """``count`` full width vectors ``[count, G]``: fit the loss GP on ``history``, draw targets,
    and run one lambda search per target."""
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    model = LossModel(space, history, config.ucb_beta, config.gp_max_points, seed)
    scored = history.scored()
    _, mean, std = _standardise(history.ratios[scored])
    search = ChebyshevSearch(space, model, config, generator, extra=space.project(history.widths[scored]),
                             cost_scale=(mean, std))
    targets = draw_targets(count, space, history, config.pareto_aware, generator)
    return torch.stack([search.solve(float(t)).widths for t in targets])


def bayesian_search(
    space: WidthSpace,
    score: Callable[[Tensor], Tensor],
    config: TrainConfig,
    generator: torch.Generator,
    evals: int,
    batch: int = 20,
    on_batch: Callable[[int], None] | None = None,
) -> History:
    """Multi-objective Bayesian search on frozen weights (the second stage of ``twostage``).

    First ``prior_points`` uniform multipliers plus the full and smallest networks, then rounds of
    ``batch`` lambda searches on a GP refitted to everything scored so far, until ``evals``
    width vectors are scored.

    Args:
        space: the width space.
        score: loss of each full width vector of a batch ``[B, G] -> [B]``.
        config: search settings.
        generator: all randomness.
        evals: total width vectors to score.
        batch: vectors proposed per GP fit.
        on_batch: called with the number scored so far (progress).
    """
    history = History(space.num_groups)
    prior = space.random_uniform(max(0, min(config.prior_points, evals - 2)), generator)
    first = torch.cat([space.full()[None], space.smallest()[None], prior])[:evals]
    history.append(first, space.ratio(first), 0)
    history.losses = score(first).double()
    extend_search(space, history, score, config, generator, evals - len(first), batch, on_batch)
    return history


def extend_search(space: WidthSpace, history: History, score: Callable[[Tensor], Tensor], config: TrainConfig,
                  generator: torch.Generator, count: int, batch: int = 20,
                  on_batch: Callable[[int], None] | None = None, step: int | None = None) -> None:
    """Propose, score and append ``count`` more width vectors to the scored ``history``, in rounds
    of ``batch`` lambda searches on a GP refitted to everything scored so far.

    ``step`` is recorded with every new vector (default: its index in the history, the search's
    evaluation count); ``on_batch`` gets the history's length after each round.
    """
    goal = len(history) + max(0, count)
    while len(history) < goal:
        size = min(batch, goal - len(history))
        W = propose_by_search(space, history, config, generator, size)
        history.append(W, space.ratio(W), len(history) if step is None else step)
        history.losses[-size:] = score(W).double()
        if on_batch is not None:
            on_batch(len(history))

"""The lambda search and the GP sampler on the ResNet-20 example's real cost programs."""
from __future__ import annotations

import pytest
import torch

from optim_helpers import resnet_slim
from pareco_fx.optim import ChebyshevSearch, History, LossModel, ParecoSampler, TrainConfig, WidthSpace

CONFIG = TrainConfig(search_candidates=512, gp_max_points=60)


@pytest.fixture(scope="module")
def slim():
    return resnet_slim()


def synthetic_loss(space: WidthSpace, W: torch.Tensor) -> torch.Tensor:
    """Loss that punishes narrow early groups much more than narrow late ones."""
    x = space.project(W)
    weights = torch.linspace(3.0, 0.1, space.dim, dtype=torch.float64)
    return ((1.0 - x) ** 2 * weights).sum(dim=1)


def scored_history(space: WidthSpace, count: int, seed: int) -> History:
    history = History(space.num_groups)
    W = space.random(count, torch.Generator().manual_seed(seed))
    history.append(W, space.ratio(W), step=0)
    history.losses = synthetic_loss(space, W)
    return history


@pytest.mark.parametrize("pool", ["mixed", "box"])
@pytest.mark.parametrize("cost", ["memory", "flops"])
def test_lambda_search_hits_target_cost(slim, cost: str, pool: str) -> None:
    space = WidthSpace.from_slim(slim, cost)
    history = scored_history(space, 40, seed=1)
    config = CONFIG.replace(search_pool=pool)
    model = LossModel(space, history, config.ucb_beta, config.gp_max_points, seed=0)
    search = ChebyshevSearch(space, model, config, torch.Generator().manual_seed(2),
                             extra=space.project(history.widths))
    targets = [0.3, 0.5, 0.7, 0.9]
    if pool == "box":  # its centres reach the ends of the cost range too
        targets += [space.ratio_min + config.lambda_tolerance, 1.0 - config.lambda_tolerance]
    for target in targets:
        result = search.solve(target)
        assert result.converged
        assert abs(result.ratio - target) <= CONFIG.lambda_tolerance
        # The ratio reported is the exact cost of the widths returned.
        assert float(space.ratio(result.widths[None])[0]) == pytest.approx(result.ratio, abs=1e-12)
        # Frozen groups stay at full width; slimmable ones inside the box.
        x = space.project(result.widths[None])
        assert torch.all(result.widths[~space.slimmable] == 1.0)
        assert torch.all((x >= space.min_width) & (x <= 1.0))
        if pool == "box":  # a new vector, not a history point, not a uniform multiplier
            assert not torch.any(torch.all(history.widths == result.widths, dim=1))
            assert len(set(x[0].tolist())) > 1


def test_lambda_trades_cost_against_loss(slim) -> None:
    space = WidthSpace.from_slim(slim, "memory")
    model = LossModel(space, scored_history(space, 40, seed=3), CONFIG.ucb_beta, CONFIG.gp_max_points, seed=0)
    search = ChebyshevSearch(space, model, CONFIG, torch.Generator().manual_seed(4))
    ratios = [search.argmin(lam)[2] for lam in (0.05, 0.5, 0.95)]
    assert ratios[0] > ratios[1] > ratios[2]


@pytest.mark.parametrize("pool", ["mixed", "box"])
def test_search_beats_uniform_width_at_equal_cost(slim, pool: str) -> None:
    # The synthetic loss wants wide early groups, so at a given memory the search must find lower
    # (true) loss than shrinking every group alike.
    space = WidthSpace.from_slim(slim, "memory")
    config = CONFIG.replace(search_pool=pool)
    model = LossModel(space, scored_history(space, 60, seed=5), config.ucb_beta, config.gp_max_points, seed=0)
    search = ChebyshevSearch(space, model, config, torch.Generator().manual_seed(6))
    f = torch.linspace(space.min_width, 1.0, 2001, dtype=torch.float64)
    uniform_ratio = space.ratio(space.uniform(f))
    for target in (0.4, 0.6):
        result = search.solve(target)
        same_cost = space.uniform(f[torch.argmin((uniform_ratio - result.ratio).abs())][None])
        assert synthetic_loss(space, result.widths[None])[0] < synthetic_loss(space, same_cost)[0]


def test_pareco_sampler_spreads_costs_over_the_range(slim) -> None:
    space = WidthSpace.from_slim(slim, "memory")
    config = TrainConfig(num_width_vectors=22, prior_points=6, search_candidates=512, gp_max_points=60)
    sampler = ParecoSampler(space, config, total_steps=11)  # period 1: a new pair every step
    assert sampler.period == 1
    proposed = [sampler.propose(step, lambda W: synthetic_loss(space, W)) for step in range(11)]
    W = torch.cat(proposed)
    assert torch.allclose(sampler.history.widths, W)
    # The first prior_points are uniform multipliers, the next one the full network.
    x = space.project(W)
    assert torch.all(x[:6] == x[:6, :1])
    assert torch.all(W[6] == 1.0)
    searched = sampler.history.ratios[7:]
    lo = space.ratio_min
    assert torch.all((searched >= lo - 1e-9) & (searched <= 1.0 + 1e-9))
    quarters = torch.floor((searched - lo) / (1 - lo) * 4).clamp(0, 3).long()
    assert len(set(quarters.tolist())) >= 3, searched
    assert float(searched.max() - searched.min()) >= 0.5 * (1 - lo)
    # Every history entry but the newest pair has been re-scored with the score function.
    scored = sampler.history.scored()
    assert scored[:-2].all() and not scored[-2:].any()
    assert torch.allclose(sampler.history.losses[:-2], synthetic_loss(space, sampler.history.widths[:-2]))


@pytest.mark.parametrize("count", [30, 120])
def test_closed_form_ucb_equals_the_gp_posterior(slim, count: int) -> None:
    # The search's own posterior must give what BoTorch's ``gp.posterior`` gives, to rounding.
    space = WidthSpace.from_slim(slim, "flops")
    model = LossModel(space, scored_history(space, count, seed=7), CONFIG.ucb_beta, 300, seed=0)
    x = space.project(space.random(500, torch.Generator().manual_seed(8)))
    with torch.no_grad():
        posterior = model.gp.posterior(space.to_unit(x))
        expected = posterior.mean.squeeze(-1) + CONFIG.ucb_beta**0.5 * posterior.variance.squeeze(-1).sqrt()
    assert torch.allclose(model.ucb(x), expected, rtol=0.0, atol=1e-10)

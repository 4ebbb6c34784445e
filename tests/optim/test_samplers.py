"""Samplers: ranges, the prior/full/search schedule, period, and exact state round trips."""
from __future__ import annotations

import io

import pytest
import torch

from pareco_fx.optim import ParecoSampler, SlimSampler, TrainConfig, TwoStageSampler, WidthSpace, make_sampler


def _space() -> WidthSpace:
    # Three groups, the middle one frozen; cost = sum of squared widths (a stand-in program).
    return WidthSpace.build(torch.tensor([True, False, True]), 0.42, lambda W: (W**2).sum(dim=1))


def _loss(W: torch.Tensor) -> torch.Tensor:
    return (1.0 - W).abs().sum(dim=1)


def test_space_ends_and_ratio() -> None:
    space = _space()
    assert space.dim == 2 and space.num_groups == 3
    assert torch.equal(space.smallest(), torch.tensor([0.42, 1.0, 0.42], dtype=torch.float64))
    assert space.ratio_min == pytest.approx((2 * 0.42**2 + 1) / 3)
    x = torch.tensor([[0.5, 0.9]], dtype=torch.float64)
    assert torch.equal(space.project(space.embed(x)), x)


def test_slim_sampler_draws_uniform_multipliers() -> None:
    space = _space()
    sampler = SlimSampler(space, TrainConfig(num_sampled=3))
    W = torch.cat([sampler.propose(step, _loss) for step in range(20)])
    assert W.shape == (60, 3)
    assert torch.equal(W[:, 0], W[:, 2]) and torch.all(W[:, 1] == 1.0)
    assert torch.all((W >= 0.42) & (W <= 1.0))
    assert len(sampler.history) == 0


def test_twostage_sampler_draws_iid_widths() -> None:
    space = _space()
    sampler = TwoStageSampler(space, TrainConfig())
    W = torch.cat([sampler.propose(step, _loss) for step in range(50)])
    assert torch.all(W[:, 1] == 1.0) and torch.all((W >= 0.42) & (W <= 1.0))
    assert not torch.equal(W[:, 0], W[:, 2])


def test_pareco_sampler_keeps_widths_for_a_period() -> None:
    space = _space()
    config = TrainConfig(num_width_vectors=8, prior_points=4, search_candidates=128)
    sampler = make_sampler(space, config, total_steps=20)  # 20 steps * 2 / 8 vectors: period 5
    assert isinstance(sampler, ParecoSampler) and sampler.period == 5
    calls = []

    def score(W: torch.Tensor) -> torch.Tensor:
        calls.append(len(W))
        return _loss(W)

    proposals = [sampler.propose(step, score) for step in range(20)]
    for start in range(0, 20, 5):
        assert all(torch.equal(proposals[start], p) for p in proposals[start: start + 5])
    assert calls == [2, 4, 6]  # the history is re-scored at every period but the first
    W = sampler.history.widths
    assert torch.equal(W[:4, 0], W[:4, 2])  # prior points: uniform multipliers
    assert torch.all(W[4] == 1.0)  # then the full network


def test_pareco_sampler_rescores_every_kth_period_only() -> None:
    space = _space()
    config = TrainConfig(num_width_vectors=12, prior_points=4, search_candidates=128, rescore_every=2)
    sampler = make_sampler(space, config, total_steps=30)  # period 5: proposals at 0, 5, ..., 25
    calls = []

    def score(W: torch.Tensor) -> torch.Tensor:
        calls.append(len(W))
        return _loss(W)

    losses = {}
    for step in range(30):
        sampler.propose(step, score)
        losses[step] = sampler.history.losses.clone()
    assert calls == [4, 8]  # at steps 10 and 20 (step 0's history is empty)
    assert len(sampler.history) == 12
    # a period without re-score searches on the last losses; its vectors wait for the next re-score
    assert torch.equal(losses[15][:4], losses[10][:4]) and losses[15][4:].isnan().all()
    assert sampler.history.scored().tolist() == [True] * 8 + [False] * 4


def _round_trip(state: dict) -> dict:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("method", ["pareco", "slim", "twostage"])
def test_sampler_state_round_trip_continues_identically(method: str) -> None:
    space = _space()
    config = TrainConfig(method=method, num_width_vectors=10, prior_points=3, search_candidates=128)
    first = make_sampler(space, config, total_steps=10)
    for step in range(5):
        first.propose(step, _loss)
    second = make_sampler(space, config, total_steps=10)
    second.load_state_dict(_round_trip(first.state_dict()))
    for step in range(5, 10):
        assert torch.equal(first.propose(step, _loss), second.propose(step, _loss))
    assert torch.equal(first.history.widths, second.history.widths)
    assert torch.allclose(first.history.losses, second.history.losses, equal_nan=True)


@pytest.mark.parametrize("pareto_aware", [False, True])
def test_pareco_sampler_rescores_what_the_search_reads(pareto_aware: bool) -> None:
    # With gp_max_points=5 the GP reads only the 5 newest losses: older vectors are re-scored only
    # for Pareto-aware targets, and the proposals equal those of a full re-score.
    space = _space()
    config = TrainConfig(num_width_vectors=16, prior_points=4, search_candidates=128, gp_max_points=5,
                         pareto_aware=pareto_aware)
    capped, full = make_sampler(space, config, total_steps=8), make_sampler(space, config, total_steps=8)
    full._rescore_start = lambda: 0  # type: ignore[method-assign]  # the reference: every vector
    calls: list[int] = []

    def score(W: torch.Tensor) -> torch.Tensor:
        calls.append(len(W))
        return _loss(W)

    for step in range(8):
        assert torch.equal(capped.propose(step, score), full.propose(step, _loss))
    sizes = [2, 4, 6, 8, 10, 12, 14]
    assert calls == (sizes if pareto_aware else [min(n, 5) for n in sizes])
    scored = full.history.scored()
    assert torch.equal(capped.history.losses[-7:-2], full.history.losses[-7:-2])
    assert torch.equal(capped.history.scored(), scored)

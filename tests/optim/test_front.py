"""Front extraction on hand-made histories and points: layers, coverage, selection, targets."""
from __future__ import annotations

import pytest
import torch

from optim_helpers import tiny_data, tiny_slim
from pareco_fx.optim import FrontPoint, History, WidthSpace, select_front
from pareco_fx.optim import front as front_module
from pareco_fx.optim.front import front_candidates, uniform_widths
from pareco_fx.optim.pareto import non_dominated, pareto_layers, peel_until_coverage
from pareco_fx.optim.search import draw_targets, target_weights

# (loss, cost ratio): layer 1 = {0} (dominates all), layer 2 = {1, 2}, layer 3 = {3, 4}.
LOSSES = torch.tensor([0.1, 0.5, 0.3, 0.6, 0.4], dtype=torch.float64)
RATIOS = torch.tensor([0.2, 0.3, 0.6, 0.7, 1.0], dtype=torch.float64)


def test_non_dominated_keeps_ties_and_drops_dominated() -> None:
    points = torch.tensor([[1.0, 1.0], [1.0, 1.0], [2.0, 2.0], [0.5, 3.0], [2.0, 1.0]])
    assert non_dominated(points).tolist() == [True, True, False, True, False]


def test_pareto_layers_peel_in_order() -> None:
    layers = pareto_layers(torch.stack([LOSSES, RATIOS], dim=1))
    assert [sorted(layer.tolist()) for layer in layers] == [[0], [1, 2], [3, 4]]


@pytest.mark.parametrize(("coverage", "expected"), [(0.3, [0, 1, 2]), (0.5, [0, 1, 2]), (0.9, [0, 1, 2, 3, 4])])
def test_peel_until_coverage(coverage: float, expected: list[int]) -> None:
    # Of the 0.8 cost range, layer 1 spans 0 %, layers 1-2 span 0.4 (50 %), all three 100 %.
    assert peel_until_coverage(LOSSES, RATIOS, coverage).tolist() == expected


def _space(groups: int = 2) -> WidthSpace:
    # Cost = mean width: ratio of the smallest network = min width.
    return WidthSpace.build(torch.ones(groups, dtype=torch.bool), 0.4, lambda W: W.mean(dim=1))


def test_front_candidates_skip_unscored_and_add_ends() -> None:
    space = _space()
    history = History(2)
    widths = torch.tensor([[0.5, 0.5], [0.7, 0.7], [0.45, 0.45], [0.6, 0.6], [1.0, 1.0], [0.9, 0.9]],
                          dtype=torch.float64)
    history.append(widths, torch.cat([RATIOS, torch.tensor([0.9])]), step=0)
    history.losses = torch.cat([LOSSES, torch.tensor([float("nan")])])  # the last one is not scored yet
    W = front_candidates(history, space, coverage=0.5)
    expected = torch.cat([widths[:3], torch.tensor([[1.0, 1.0], [0.4, 0.4]], dtype=torch.float64)])
    assert torch.equal(W, expected)


def _point(ratio: float, val: float, test: float = 0.0) -> FrontPoint:
    return FrontPoint((ratio,), (1,), ratio * 100, ratio, 1.0 - val, val, test)


def test_select_front_uses_validation_accuracy_only() -> None:
    points = [_point(0.3, 0.70, test=0.99), _point(0.5, 0.80), _point(0.6, 0.78, test=1.0),
              _point(1.0, 0.85), _point(0.9, 0.85)]
    front = select_front(points)
    # (0.6, 0.78) is dominated by (0.5, 0.80) whatever its test accuracy; (1.0, 0.85) by (0.9, 0.85).
    assert [(p.cost_ratio, p.val_acc) for p in front] == [(0.3, 0.70), (0.5, 0.80), (0.9, 0.85)]


def test_front_point_round_trips_through_dict() -> None:
    point = FrontPoint((1.0, 0.5), (16, 8), 1234.0, 0.62, 0.9, 0.8, None)
    assert FrontPoint.from_dict(point.to_dict()) == point


def test_target_weights_follow_front_gaps() -> None:
    # Front (0.5, loss 1.0) -> (1.0, loss 0.0): one rectangle of area 0.5 over cost [0.5, 1].
    weights = target_weights(torch.tensor([0.5, 1.0]), torch.tensor([1.0, 0.0]), ratio_min=0.0, bins=4)
    expected = 0.9 * torch.tensor([0.0, 0.0, 0.5, 0.5]) + 0.1 * 0.25
    assert torch.allclose(weights, expected.double())


def test_pareto_aware_targets_follow_the_weights() -> None:
    space = _space()  # ratio_min 0.4
    history = History(2)
    history.append(torch.tensor([[0.7, 0.7], [1.0, 1.0]]), torch.tensor([0.7, 1.0]), step=0)
    history.losses = torch.tensor([1.0, 0.0], dtype=torch.float64)
    targets = draw_targets(2000, space, history, True, torch.Generator().manual_seed(0))
    assert torch.all((targets >= 0.4) & (targets <= 1.0))
    share = float((targets >= 0.7).double().mean())  # expected 0.9 + 0.1 * 0.5
    assert share == pytest.approx(0.95, abs=0.02)
    uniform = draw_targets(2000, space, history, False, torch.Generator().manual_seed(0))
    assert float((uniform >= 0.7).double().mean()) == pytest.approx(0.5, abs=0.04)


def test_target_weights_uniform_without_scores() -> None:
    weights = target_weights(torch.tensor([0.5]), torch.tensor([float("nan")]), ratio_min=0.2, bins=5)
    assert torch.allclose(weights, torch.full((5,), 0.2, dtype=torch.float64))


def test_uniform_widths_even_in_cost() -> None:
    space = _space()
    W = uniform_widths(space, 7)
    ratios = space.ratio(W)
    assert torch.allclose(ratios, torch.linspace(0.4, 1.0, 7, dtype=torch.float64), atol=1e-3)
    assert torch.all(W[:, 0] == W[:, 1])


def test_only_the_selected_candidates_are_tested_with_the_same_result(monkeypatch: pytest.MonkeyPatch) -> None:
    slim = tiny_slim()
    space = WidthSpace.from_slim(slim, "flops")
    train_set, val_set, test_set = tiny_data(train=128, val=64, test=64)

    def batches(data, size: int = 32):
        return [tuple(torch.stack(items) for items in zip(*(data[j] for j in range(i, i + size))))
                for i in range(0, len(data), size)]

    recal, val, test = batches(train_set), batches(val_set), batches(test_set)
    W = space.random(12, torch.Generator().manual_seed(0))
    loss = torch.nn.functional.cross_entropy
    everything = select_front(front_module.evaluate_widths(slim, W, space, recal, val, test, loss))
    tested: list[object] = []  # the batches every accuracy call reads
    accuracy = front_module.accuracy

    def counted(model, batches, comm):
        tested.append(batches)
        return accuracy(model, batches, comm)

    monkeypatch.setattr(front_module, "accuracy", counted)
    selected = select_front(front_module.evaluate_widths(slim, W, space, recal, val, None, loss))
    lazy = front_module.add_test_accuracy(slim, selected, recal, test)
    # the same points, losses and accuracies, to the bit (recalibration is deterministic, even with
    # the tiny net's dropout)
    assert lazy == everything
    assert sum(b is test for b in tested) == len(lazy) < len(W)

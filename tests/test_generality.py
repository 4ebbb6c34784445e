"""The generality benchmark's harness (benchmarks/generality.py): its dead channels are exactly
zero, its output layers are the classifier, a hung model costs one row, and (with the bench extra)
a correct pruning keeps the output while an index mix-up is caught."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import generality  # noqa: E402
from invariants import randomize_norms  # noqa: E402
from scenarios import SCENARIOS  # noqa: E402


def test_killed_channels_are_exactly_zero_after_conv_norm_and_activation() -> None:
    torch.manual_seed(0)
    block = randomize_norms(nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.SiLU())).eval()
    generality._kill(block[0], [1, 4])
    generality._kill(block[1], [1, 4])
    y = block(torch.randn(2, 3, 5, 5))
    assert torch.count_nonzero(y[:, [1, 4]]) == 0
    assert torch.count_nonzero(y[:, [0, 2, 3, 5]]) == y[:, [0, 2, 3, 5]].numel()


def test_killed_channels_of_a_transposed_conv_are_its_outputs() -> None:
    torch.manual_seed(0)
    up = nn.ConvTranspose2d(4, 6, 2, stride=2)
    generality._kill(up, [0, 5])
    y = up(torch.randn(2, 4, 3, 3))
    assert torch.count_nonzero(y[:, [0, 5]]) == 0
    assert torch.count_nonzero(y[:, 1:5]) == y[:, 1:5].numel()


def test_removing_the_dead_channels_keeps_the_output_and_removing_live_ones_does_not() -> None:
    """The check's premise, by hand: conv → BN → ReLU → conv, channels 0 and 3 of 4 made dead."""
    torch.manual_seed(0)
    net = randomize_norms(nn.Sequential(nn.Conv2d(2, 4, 1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 3, 1))).eval()
    for layer in net[:2]:
        generality._kill(layer, [0, 3])
    x = torch.randn(2, 2, 4, 4)
    reference = net(x)

    def pruned(keep: list[int]) -> torch.Tensor:
        h = net[2](net[1](net[0](x)))[:, keep]
        return nn.functional.conv2d(h, net[3].weight[:, keep], net[3].bias)

    torch.testing.assert_close(pruned([1, 2]), reference)
    assert not torch.allclose(pruned([0, 1]), reference, atol=1e-3)


def test_output_layers_are_the_classifier_pareco_fx_froze() -> None:
    import pareco_fx

    scenario = SCENARIOS["residual_add"]
    model = scenario.factory()
    slim = pareco_fx.make_slimmable(model, scenario.inputs())
    assert generality._output_layers(model, slim) == [model.head.fc]
    # without an analysis (it failed): the last conv or linear layer
    assert generality._output_layers(model, None) == [model.head.fc]


def test_a_model_that_outlives_its_limit_costs_one_row() -> None:
    row = generality.in_subprocess("scenario:residual_add", limit_s=0.05)
    assert row["model"] == "scenario:residual_add"
    assert row["pareco_fx"]["status"] == row["torch_pruning"]["status"] == "timeout"
    assert "0 s" in row["torch_pruning"]["error"]


@pytest.mark.parametrize("name, expected", [("residual_add", "ok"), ("unknown_op_fft", "wrong")])
def test_torch_pruning_check_tells_a_correct_pruning_from_a_wrong_one(name: str, expected: str) -> None:
    pytest.importorskip("torch_pruning")
    import pareco_fx

    scenario = SCENARIOS[name]
    model = scenario.factory()
    ignored = generality._output_layers(model, pareco_fx.make_slimmable(scenario.factory(), scenario.inputs()))
    assert generality.torch_pruning_check(model, scenario.inputs(), ignored)["status"] == expected

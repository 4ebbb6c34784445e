"""Channels-last training: chosen where it pays off, same values as the default layout, the
model's own layout given back, and a model that cannot run channels-last kept as it is."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import pareco_fx
from optim_helpers import TINY_CONFIG, tiny_data
from pareco_fx.optim import train
from pareco_fx.optim import trainer as trainer_module
from pareco_fx.optim.layout import wants_channels_last

CL = torch.channels_last


class DepthwiseNet(nn.Module):
    """Conv-BN-ReLU, a depthwise and a dense 3x3 conv, then ``flatten`` (or a ``.view`` that
    channels-last activations cannot serve) into a linear head."""

    def __init__(self, use_view: bool = False) -> None:
        super().__init__()
        self.use_view = use_view
        self.conv = nn.Conv2d(1, 8, 3, 2, 1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 8, 3, 2, 1, groups=8, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.dense = nn.Conv2d(8, 8, 3, 1, 1)  # the one weight whose layouts differ (C_in, k > 1)
        self.fc = nn.Linear(8 * 2 * 2, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.conv(x)))
        x = self.dense(torch.relu(self.bn2(self.dw(x))))
        x = x.view(x.size(0), -1) if self.use_view else torch.flatten(x, 1)
        return self.fc(x)


def _slim(use_view: bool = False) -> nn.Module:
    torch.manual_seed(0)
    return pareco_fx.make_slimmable(DepthwiseNet(use_view), (torch.randn(2, 1, 8, 8),))


def _train(slim: nn.Module, channels_last: bool | None, seen: list[bool] | None = None):
    train_set, val_set, _ = tiny_data()
    step = trainer_module._Trainer.train_step

    def spy(self, x, y):  # records the layout of the dense conv's weight at every step
        if seen is not None:
            seen.append(self.slim.gm.dense.weight.is_contiguous(memory_format=CL))
        return step(self, x, y)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trainer_module._Trainer, "train_step", spy)
        return train(slim, train_set, val_set, None, TINY_CONFIG.replace(channels_last=channels_last),
                     progress=False)


def test_auto_is_channels_last_on_the_cpu_for_grouped_convolutions_only() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    grouped, dense = DepthwiseNet(), nn.Sequential(nn.Conv2d(1, 8, 3), nn.Conv2d(8, 8, 3))
    assert wants_channels_last(grouped, cpu, None) is True
    assert wants_channels_last(dense, cpu, None) is False
    assert wants_channels_last(grouped, cuda, None) is False
    assert wants_channels_last(dense, cuda, True) is True and wants_channels_last(grouped, cpu, False) is False


def test_channels_last_trains_the_same_values_and_gives_the_layout_back() -> None:
    seen: list[bool] = []
    ours, theirs = _slim(), _slim()
    result = _train(ours, None, seen)
    reference = _train(theirs, False)
    assert seen and all(seen)  # auto chose channels-last for every step
    # the same training up to rounding: weights, and the evaluated fronts
    for (name, a), b in zip(ours.state_dict().items(), theirs.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)
    assert [p.cost_ratio for p in result.front] == [p.cost_ratio for p in reference.front]
    assert [p.val_acc for p in result.front] == pytest.approx([p.val_acc for p in reference.front], abs=1 / 64)
    # the model comes back in the layout it was given
    assert all(p.is_contiguous() for p in ours.parameters())
    assert not ours.gm.dense.weight.is_contiguous(memory_format=CL)


def test_a_model_that_cannot_run_channels_last_keeps_its_layout() -> None:
    seen: list[bool] = []
    with pytest.warns(UserWarning, match="does not run channels-last.*view"):
        result = _train(_slim(use_view=True), None, seen)
    assert seen and not any(seen)
    reference = _train(_slim(use_view=True), False)
    assert [p.val_acc for p in result.front] == [p.val_acc for p in reference.front]
    # asked for explicitly, the layout is not second-guessed: the model's own error surfaces
    with pytest.raises(RuntimeError, match="view"):
        _train(_slim(use_view=True), True)

"""The slimmable runtime: widths, BatchNorm statistics, gradients, weight sharing, extraction."""
from __future__ import annotations

import io
import math

import pytest
import torch
import torch.nn as nn

import pareco_fx
from pareco_fx.errors import WidthError


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(32)
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean((2, 3)))


@pytest.fixture()
def slim() -> pareco_fx.SlimmableModel:
    torch.manual_seed(0)
    return pareco_fx.make_slimmable(Net(), (torch.randn(2, 3, 8, 8),))


def group_of(slim, member: str) -> int:
    return next(g.id for g in slim.groups if member in g.members)


def test_groups_and_channels(slim):
    assert [g.channels for g in slim.groups] == [16, 32, 10]
    assert [g.slimmable for g in slim.groups] == [True, True, False]
    assert "model output" in slim.groups[2].reason
    slim.set_widths([0.5, 0.25, 1.0])
    assert slim.channels() == {0: 8, 1: 8, 2: 10}
    assert slim.widths == (0.5, 0.25, 1.0)


def test_width_to_channels_rounding():
    torch.manual_seed(0)
    s = pareco_fx.make_slimmable(Net(), (torch.randn(2, 3, 8, 8),), divisor=4)
    s.set_widths(0.42)  # floor(0.42*16)=6 -> 4; floor(0.42*32)=13 -> 12
    assert s.channels()[0] == 4 and s.channels()[1] == 12
    s.set_widths(0.01)  # never below one step of the divisor
    assert s.channels()[0] == 4 and s.channels()[1] == 4


def test_width_forms_and_frozen_entries(slim):
    slim.set_widths({1: 0.5})
    assert slim.widths == (1.0, 0.5, 1.0)
    slim.set_widths([0.5, 0.5, 0.3])  # the frozen group's entry is ignored
    assert slim.widths[2] == 1.0 and slim.channels()[2] == 10


@pytest.mark.parametrize("bad, match", [
    ([0.5, 0.5], "expected 3 widths"),
    ([math.nan, 0.5, 1.0], "group 0"),
    ([0.5, 1.5, 1.0], "group 1"),
    ({7: 0.5}, "no group with id 7"),
])
def test_bad_widths_name_the_problem(slim, bad, match):
    with pytest.raises(WidthError, match=match):
        slim.set_widths(bad)


def test_switching_widths_copies_no_weights(slim):
    ptrs = [p.data_ptr() for p in slim.parameters()]
    slim.set_widths(0.5)
    slim(torch.randn(2, 3, 8, 8))
    assert [p.data_ptr() for p in slim.parameters()] == ptrs


def test_batchnorm_updates_only_active_channels_in_place(slim):
    slim.train()
    bn = slim.gm.bn1
    before = bn.running_mean.clone()
    slim.set_widths([0.5, 1.0, 1.0])
    slim(torch.randn(4, 3, 8, 8) + 3)
    assert not torch.equal(bn.running_mean[:8], before[:8])
    assert torch.equal(bn.running_mean[8:], before[8:])
    assert isinstance(bn, nn.BatchNorm2d)


def test_backward_reaches_exactly_the_active_slices(slim):
    slim.train()
    slim.set_widths([0.5, 0.25, 1.0])
    slim(torch.randn(4, 3, 8, 8)).sum().backward()
    w2 = slim.gm.conv2.weight.grad
    assert w2[:8, :8].abs().sum() > 0
    assert w2[8:].abs().sum() == 0 and w2[:, 8:].abs().sum() == 0


def test_full_width_equals_original_and_extract_equals_slim(slim):
    torch.manual_seed(1)
    model = Net().eval()
    x = torch.randn(3, 3, 8, 8)
    s = pareco_fx.make_slimmable(model, (x,)).eval()
    with torch.no_grad():
        assert torch.allclose(s(x), model(x), atol=1e-6)
        s.set_widths([0.5, 0.25, 1.0])
        sub = s.extract()
        assert torch.allclose(sub(x), s(x), atol=1e-6)
    assert sub.conv2.weight.shape == (8, 8, 3, 3) and type(sub.conv2) is nn.Conv2d
    buf = io.BytesIO()
    torch.save(sub, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    with torch.no_grad():
        assert torch.allclose(loaded(x), s(x), atol=1e-6)


def test_extract_at_given_widths_restores_widths_in_force(slim):
    slim.set_widths(0.5)
    sub = slim.extract(0.25)
    assert slim.widths[:2] == (0.5, 0.5)
    assert sub.conv1.out_channels == 4


def test_original_model_is_untouched():
    model = Net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    s = pareco_fx.make_slimmable(model, (torch.randn(2, 3, 8, 8),))
    s.train()
    s.set_widths(0.5)
    s(torch.randn(4, 3, 8, 8)).sum().backward()
    assert type(model.conv1) is nn.Conv2d
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_weights_are_private_both_ways():
    """The slimmable model's weights start as lazy copies: a write on either side never shows
    on the other (an optimiser step on the slim model, an in-place edit of the user's model)."""
    model = Net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    s = pareco_fx.make_slimmable(model, (torch.randn(2, 3, 8, 8),))
    opt = torch.optim.SGD(s.parameters(), lr=0.5)
    s.train()
    s(torch.randn(4, 3, 8, 8)).sum().backward()
    opt.step()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    slim_before = {k: v.clone() for k, v in s.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
    assert all(torch.equal(slim_before[k], v) for k, v in s.state_dict().items())

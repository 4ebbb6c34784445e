"""The ``memory`` cost: exact hand-computed values, the moving peak, and independent measurements.

Units: elements at batch size 1. At a node: the activation storages alive there (produced at or
before it, used at or after it; views and in-place results share their base's storage) plus the
parameter elements of the layer executing there. In the comments, ``u`` (or ``a``, ``b``, ``p``,
``q``) is a group's active channel count and HW the spatial size.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import pareco_fx
from pareco_fx import cost_models
from pareco_fx.cost_models import CostProgram, liveness, width_box
from cost_measure import assert_memory_bracketed, oracle_peak


class Chain(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 16, 3, padding=1)
        self.relu = nn.ReLU()
        self.c2 = nn.Conv2d(16, 8, 3, padding=1)

    def forward(self, x):
        return self.c2(self.relu(self.c1(x)))


class Residual(nn.Module):
    """In-place ReLU and in-place add: both alias their input's storage."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.conv_b = nn.Conv2d(16, 16, 3, padding=1)
        self.head = nn.Conv2d(16, 4, 3, padding=1)

    def forward(self, x):
        a = self.relu(self.stem(x))
        b = self.conv_b(a)
        b.add_(a)
        return self.head(b)


class Concat(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Conv2d(16, 4, 3, padding=1)

    def forward(self, x):
        return self.head(torch.cat([self.c1(x), self.c2(x)], dim=1))


class Split(nn.Module):
    """The split pieces are views of c1's output: one storage, alive until its last piece's use."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 16, 3, padding=1)
        self.conv_a = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 4, 3, padding=1)

    def forward(self, x):
        a, b = torch.split(self.c1(x), 8, dim=1)
        return self.head(self.conv_a(a) + b)


class MovingPeak(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 16, 3, padding=1)
        self.c2 = nn.Conv2d(16, 32, 1, stride=2)
        self.head = nn.Conv2d(32, 2, 1)

    def forward(self, x):
        return self.head(self.c2(self.c1(x)))


def _image(s: int) -> tuple[torch.Tensor, ...]:
    return (torch.randn(2, 3, s, s, generator=torch.Generator().manual_seed(0)),)


def _image1(s: int) -> tuple[torch.Tensor, ...]:
    """Batch 1, own storage (a ``[:1]`` slice would keep the whole batch's storage alive)."""
    return tuple(t[:1].clone() for t in _image(s))


def _widths(slim, model: nn.Module, at: float | dict[str, float]) -> float | list[float]:
    """``at[layer]`` for the group of that layer's output channels, 1.0 elsewhere."""
    if isinstance(at, float):
        return at
    w = [1.0] * len(slim.groups)
    for layer, value in at.items():
        out = model.get_submodule(layer).out_channels
        (group,) = [g for g in slim.groups if layer in g.members and g.channels == out]
        w[group.id] = value
    return w


def _slim(model: nn.Module, s: int):
    torch.manual_seed(0)
    return pareco_fx.make_slimmable(model.eval(), _image(s), min_width=0.25)


def _peak(slim, w) -> tuple[float, str]:
    W = torch.tensor([w if isinstance(w, list) else [w] * len(slim.groups)], dtype=torch.float64)
    program = cost_models.compile("memory", slim.analysis)
    return slim.cost("memory", w), program.peak_node(slim.analysis.features(W))[0]


# (model, spatial size, {member: width} or a float, expected memory, expected peak node)
HAND = {
    # x: 3·8·8 = 192. c1: x + 64u + (27u + u) params = 192 + 92u; relu: c1 out + relu out = 128u
    # (x dead); c2: relu out + 8·64 + (72u + 8) = 136u + 520.
    # u = 16: 192, 1664, 2048, 2696 -> 2696 at c2.   u = 8: 192, 928, 1024, 1608 -> 1608 at c2.
    "chain_full": (Chain, 8, 1.0, 2696, "c2"),
    "chain_half": (Chain, 8, 0.5, 1608, "c2"),
    # HW = 16, x = 48; storages A (stem = relu, in place) and B (conv_b = add_, in place).
    # stem: 48 + 16u + 28u = 48 + 44u; relu: A = 16u; conv_b: A + B + (9u² + u) = 33u + 9u²;
    # add_: A + B = 32u; head: B + 4·16 + (36u + 4) = 52u + 68.
    # u = 16: 752, 256, 2832, 512, 900 -> 2832 at conv_b.   u = 8: 400, 128, 840, 256, 484 -> 840.
    "residual_full": (Residual, 4, 1.0, 2832, "conv_b"),
    "residual_half": (Residual, 4, 0.5, 840, "conv_b"),
    # HW = 16, x = 48. c1: 48 + 16a + 28a; c2: 48 + 16a + 16b + 28b; cat: 2·16(a + b);
    # head: 16(a + b) + 64 + 36(a + b) + 4 = 52(a + b) + 68.
    # a = b = 8: 400, 528, 512, 900 -> 900 at head.  a = 4, b = 6: 224, 376, 320, 588 -> 588 at head.
    "concat_full": (Concat, 4, 1.0, 900, "head"),
    "concat_mixed": (Concat, 4, {"c1": 0.5, "c2": 0.75}, 588, "head"),
    # HW = 16, x = 48; pieces p (channels 0..7 of c1) and q (8..15, tied to conv_a's output).
    # c1: 48 + 16(p + q) + 28(p + q); split/getitems: Y = 16(p + q);
    # conv_a: Y + Z + (9pq + q) = 16p + 33q + 9pq; add: Y + Z + S = 16p + 48q;
    # head: S + 64 + (36q + 4) = 52q + 68.
    # p = q = 8: 752, 256, 968, 512, 484 -> 968 at conv_a.   p = q = 4: 400, 128, 340, 256, 276 -> 400 at c1.
    "split_full": (Split, 4, 1.0, 968, "conv_a"),
    "split_half": (Split, 4, 0.5, 400, "c1"),
    # x: 3·64 = 192; c1: 192 + 64u0 + 28u0 = 192 + 92u0; c2 (1x1, stride 2): 64u0 + 16u1 + (u0u1 + u1);
    # head: 16u1 + 2·16 + (2u1 + 2) = 18u1 + 34.
    # (16, 32): 192, 1664, 2080, 610 -> 2080 at c2.   (16, 16): 192, 1664, 1552, 322 -> 1664 at c1.
    "moving_peak_c2": (MovingPeak, 8, 1.0, 2080, "c2"),
    "moving_peak_c1": (MovingPeak, 8, {"c2": 0.5}, 1664, "c1"),
}


@pytest.mark.parametrize("case", sorted(HAND))
def test_memory_equals_hand_computed_value(case):
    factory, size, at, expect, node = HAND[case]
    model = factory()
    slim = _slim(model, size)
    assert _peak(slim, _widths(slim, model, at)) == (expect, node)


@pytest.mark.parametrize("case", sorted(HAND))
def test_memory_oracle_agrees_with_hand_computed_value(case):
    factory, size, at, expect, node = HAND[case]
    model = factory()
    slim = _slim(model, size)
    sub = slim.extract(_widths(slim, model, at)).eval()
    assert oracle_peak(sub, _image1(size)) == (expect, node)


def test_peak_moves_with_the_widths_in_one_batch():
    model = MovingPeak()
    slim = _slim(model, 8)
    W = torch.tensor([_widths(slim, model, {}), _widths(slim, model, {"c2": 0.5})])
    assert slim.cost_batch("memory", W).tolist() == [2080, 1664]
    program = cost_models.compile("memory", slim.analysis)
    assert program.peak_node(slim.analysis.features(W)) == ["c2", "c1"]


@pytest.mark.parametrize("factory, size", [(Chain, 8), (Residual, 4), (Concat, 4), (Split, 4), (MovingPeak, 8)])
@pytest.mark.parametrize("w", [1.0, 0.5, 0.3])
def test_eager_storage_peak_brackets_the_cost(factory, size, w):
    # Running extract(w) eagerly under a storage-tracking dispatch mode: see
    # cost_measure.assert_memory_bracketed for why lean - inputs <= memory <= full.
    slim = _slim(factory(), size)
    assert_memory_bracketed(slim.cost("memory", w), slim.extract(w).eval(), _image1(size))


def test_memory_of_extract_reanalysed_at_full_width_is_the_same():
    slim = _slim(Split(), 4)
    for w in (1.0, 0.5, 0.3):
        sub = slim.extract(w)
        again = pareco_fx.make_slimmable(sub, _image(4), min_width=0.25)
        assert again.cost("memory", 1.0) == slim.cost("memory", w)


def test_width_box_pruning_keeps_memory_exact_on_a_real_graph():
    # The program evaluates only the nodes that can hold the peak for widths in
    # [min_width, 1]; rows outside that box fall back to every undominated node.
    import torchvision

    torch.manual_seed(0)
    slim = pareco_fx.make_slimmable(torchvision.models.mobilenet_v2().eval(), (torch.randn(2, 3, 32, 32),))
    terms = liveness(slim.analysis)
    polys, names = [t.total for t in terms], [t.node for t in terms]
    F = slim.analysis.num_features
    boxed = CostProgram(polys, num_features=F, reduce="max", names=names, box=width_box(slim.analysis, 0.42))
    plain = CostProgram(polys, num_features=F, reduce="max", names=names)
    assert len(boxed._box_kept) < len(plain._kept)  # fewer nodes to evaluate inside the box
    gen = torch.Generator().manual_seed(0)
    G = len(slim.groups)
    for low in (0.42, 0.05):  # inside the box, then partly below it
        feats = slim.analysis.features(low + (1 - low) * torch.rand(64, G, generator=gen, dtype=torch.float64))
        every = torch.stack([p.evaluate(feats) for p in polys], dim=1)
        assert torch.equal(boxed(feats), every.max(dim=1).values)
        assert torch.equal(plain(feats), every.max(dim=1).values)
        assert boxed.peak_node(feats) == plain.peak_node(feats)

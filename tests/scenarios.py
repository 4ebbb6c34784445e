"""Fixture models, one per graph pattern, with the channel groups each must produce.

``SCENARIOS[name] = Scenario(factory, inputs, expect)``: ``factory()`` builds the model,
``inputs()`` its example inputs (batch 2, seeded), ``expect`` what the analysis must find.

Groups are named by their members: a norm, an activation module or a functional node that
sees one group's channels only (a conv or linear may also be listed as a reader of its input
group, so expectations name the layer after it). ``Expect`` states only what is certain; every
scenario also passes ``invariants.check_invariants``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

from invariants import randomize_norms

__all__ = ["Expect", "Scenario", "SCENARIOS", "widths_for"]


@dataclass(frozen=True)
class Expect:
    """The certain facts about a scenario's groups.

    Attributes:
        slimmable_groups: exact number of slimmable groups.
        together: each tuple of members shares one group.
        apart: no group holds both members of a pair.
        slimmable: every group holding one of these members is slimmable.
        frozen: member -> text the reason must contain (case-insensitive); some group holding the
            member is frozen with such a reason.
        channels: member -> full channel count of its (only) group.
        quantum: member -> quantum of its (only) group.
        pieces: member -> sorted channel counts of the groups holding it (a group split in pieces).
        check: further assertions on the slimmable model.
    """

    slimmable_groups: int | None = None
    together: tuple[tuple[str, ...], ...] = ()
    apart: tuple[tuple[str, str], ...] = ()
    slimmable: tuple[str, ...] = ()
    frozen: Mapping[str, str] = field(default_factory=dict)
    channels: Mapping[str, int] = field(default_factory=dict)
    quantum: Mapping[str, int] = field(default_factory=dict)
    pieces: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    check: Callable[[Any], None] | None = None


@dataclass(frozen=True)
class Scenario:
    """A fixture: model factory, example-input factory and expected groups."""

    factory: Callable[[], nn.Module]
    inputs: Callable[[], tuple[torch.Tensor, ...]]
    expect: Expect


def _image(c: int = 3, s: int = 8) -> Callable[[], tuple[torch.Tensor, ...]]:
    return lambda: (torch.randn(2, c, s, s, generator=torch.Generator().manual_seed(1)),)


def _tokens(t: int = 5, d: int = 8) -> Callable[[], tuple[torch.Tensor, ...]]:
    return lambda: (torch.randn(2, t, d, generator=torch.Generator().manual_seed(1)),)


def _fixture(factory: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
    """Seeded construction, norms randomised so that a mis-sliced norm changes the output."""
    def build() -> nn.Module:
        torch.manual_seed(0)
        return randomize_norms(factory())
    return build


def widths_for(slim: Any, at: Mapping[str, float], default: float = 1.0) -> list[float]:
    """A width vector: ``at[member]`` for the group holding that member, ``default`` elsewhere."""
    w = [default] * len(slim.groups)
    for member, value in at.items():
        for g in slim.groups:
            if member in g.members:
                w[g.id] = value
    return w


class _Head(nn.Module):
    """Global average pool, flatten, linear classifier: the model output."""

    def __init__(self, c: int, n: int = 10):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(x), 1))


class _ConvBN(nn.Module):
    """conv -> bn -> relu, with the bn named so that a test can find the conv's group."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1, act: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = nn.ReLU() if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


# --- residuals -------------------------------------------------------------------------------

class ResidualBlock(nn.Module):
    def __init__(self, c: int, hidden: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c, hidden, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.conv2 = nn.Conv2d(hidden, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(x + self.bn2(self.conv2(y)))


class ResidualAdd(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = _ConvBN(3, 8)
        self.block = ResidualBlock(8, 6)
        self.head = _Head(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(self.stem(x)))


class StageResidual(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = _ConvBN(3, 8)
        self.blocks = nn.Sequential(ResidualBlock(8, 4), ResidualBlock(8, 6), ResidualBlock(8, 5))
        self.head = _Head(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


class ConcatPlusConv(nn.Module):
    """cat([a, b]) + d: d's channels split into two pieces, one joining a's group, one b's."""

    def __init__(self):
        super().__init__()
        self.a = _ConvBN(3, 6)
        self.b = _ConvBN(3, 4)
        self.d = _ConvBN(3, 10, act=False)
        self.e = _ConvBN(10, 8)
        self.head = _Head(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.e(torch.cat([self.a(x), self.b(x)], 1) + self.d(x)))


# --- concat / split --------------------------------------------------------------------------

class ConcatOffsets(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = _ConvBN(3, 8)
        self.b = _ConvBN(3, 4)
        self.c = _ConvBN(12, 16)
        self.head = _Head(16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.c(torch.cat([self.a(x), self.b(x)], 1)))


def _check_concat_offsets(slim: Any) -> None:
    # a at half width (4 of 8), b full: the reading conv takes 4 + 4 input channels
    w = widths_for(slim, {"a.bn": 0.5})
    sub = slim.extract(w)
    assert sub.get_submodule("c.conv").in_channels == 8
    assert sub.get_submodule("a.conv").out_channels == 4


class DenseLayer(nn.Module):
    def __init__(self, cin: int, growth: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(cin)
        self.conv = nn.Conv2d(cin, growth, 3, padding=1, bias=False)
        self.act = nn.ReLU()  # the only reader of this layer's new channels alone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.act(self.conv(F.relu(self.bn(x))))], 1)


class CascadedConcat(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = _ConvBN(3, 6)
        self.layers = nn.Sequential(DenseLayer(6, 4), DenseLayer(10, 4), DenseLayer(14, 3))
        self.trans = _ConvBN(17, 8, k=1)
        self.head = _Head(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trans(self.layers(self.stem(x))))


def _check_cascaded_concat(slim: Any) -> None:
    w = widths_for(slim, {"stem.bn": 0.5, "layers.1.act": 0.5})  # 3 of 6, 2 of 4
    sub = slim.extract(w)
    assert sub.get_submodule("layers.2.conv").in_channels == 3 + 4 + 2
    assert sub.get_submodule("trans.conv").in_channels == 3 + 4 + 2 + 3


class SplitConcat(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = _ConvBN(3, 10)
        self.branch = _ConvBN(6, 6)
        self.mix = _ConvBN(10, 8)
        self.head = _Head(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = torch.split(self.stem(x), [4, 6], dim=1)
        return self.head(self.mix(torch.cat([a, self.branch(b)], 1)))


class Chunk(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = _ConvBN(3, 12, act=False)
        self.branch = _ConvBN(4, 4)
        self.mix = _ConvBN(12, 8)
        self.head = _Head(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b, c = self.stem(x).chunk(3, dim=1)
        return self.head(self.mix(torch.cat([F.relu(a), self.branch(b), c * 2.0], 1)))


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNetV2's shuffle: view (B, g, C/g, H, W), transpose, flatten back."""
    b, c, h, w = x.size()
    x = x.view(b, groups, c // groups, h, w)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(b, -1, h, w)


class ShuffleBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        half = c // 2
        self.pw1 = _ConvBN(half, half, k=1)
        self.dw = _ConvBN(half, half, groups=half, act=False)
        self.pw2 = _ConvBN(half, half, k=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = x.chunk(2, dim=1)
        return channel_shuffle(torch.cat([x1, self.pw2(self.dw(self.pw1(x2)))], 1), 2)


class ChannelShuffle(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = _ConvBN(3, 16)
        self.block1 = ShuffleBlock(16)
        self.block2 = ShuffleBlock(16)
        self.last = _ConvBN(16, 12, k=1)
        self.head = _Head(12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.last(self.block2(self.block1(self.stem(x)))))


# --- depthwise / grouped / multiplier / GroupNorm --------------------------------------------

class Depthwise(nn.Module):
    def __init__(self, mult: int = 1):
        super().__init__()
        self.stem = _ConvBN(3, 8)
        self.dw = _ConvBN(8, 8 * mult, groups=8)
        self.pw = _ConvBN(8 * mult, 12, k=1)
        self.head = _Head(12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pw(self.dw(self.stem(x))))


def _check_depthwise_multiplier(slim: Any) -> None:
    w = widths_for(slim, {"stem.bn": 0.5})  # 4 of 8 units, each held twice by dw
    sub = slim.extract(w)
    dw = sub.get_submodule("dw.conv")
    assert (dw.in_channels, dw.out_channels, dw.groups) == (4, 8, 4)
    assert sub.get_submodule("pw.conv").in_channels == 8


class GroupedConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = _ConvBN(3, 16)
        self.g1 = _ConvBN(16, 16, groups=4)
        self.g2 = _ConvBN(16, 32, groups=4)
        self.pw = _ConvBN(32, 8, k=1)
        self.head = _Head(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pw(self.g2(self.g1(self.stem(x)))))


def _check_grouped_conv(slim: Any) -> None:
    # 8 of 16 channels: a prefix, so whole conv groups go (2 of 4 stay), each keeping its width
    w = widths_for(slim, {"stem.bn": 0.5})
    sub = slim.extract(w)
    g1, g2 = sub.get_submodule("g1.conv"), sub.get_submodule("g2.conv")
    assert (g1.in_channels, g1.out_channels, g1.groups) == (8, 8, 2)
    assert (g2.in_channels, g2.out_channels, g2.groups) == (8, 16, 2)
    assert sub.get_submodule("pw.conv").in_channels == 16


class GroupNormNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 24, 3, padding=1)
        self.gn = nn.GroupNorm(4, 24)
        self.out = _ConvBN(24, 8)
        self.head = _Head(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.out(F.relu(self.gn(self.conv(x)))))


def _check_groupnorm(slim: Any) -> None:
    w = widths_for(slim, {"gn": 0.5})  # 12 of 24 = two GroupNorm groups of 6
    sub = slim.extract(w)
    gn = sub.get_submodule("gn")
    assert (gn.num_groups, gn.num_channels) == (2, 12)


# --- gates, classifiers, flatten -------------------------------------------------------------

class SEGate(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = _ConvBN(3, 16)
        self.se_pool = nn.AdaptiveAvgPool2d(1)
        self.se_fc1 = nn.Conv2d(16, 4, 1)
        self.se_act = nn.ReLU()
        self.se_fc2 = nn.Conv2d(4, 16, 1)
        self.se_gate = nn.Sigmoid()
        self.out = _ConvBN(16, 8)
        self.head = _Head(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        s = self.se_gate(self.se_fc2(self.se_act(self.se_fc1(self.se_pool(x)))))
        return self.head(self.out(x * s))


class FlattenLinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = _ConvBN(3, 8)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(8 * 4 * 4, 32)
        self.fc1_act = nn.ReLU()
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.pool(self.features(x)), 1)
        return self.fc2(self.fc1_act(self.fc1(x)))


def _check_flatten_linear(slim: Any) -> None:
    w = widths_for(slim, {"features.bn": 0.5})  # 4 of 8 channels, 16 positions each
    assert slim.extract(w).get_submodule("fc1").in_features == 4 * 16


class ConvClassifier(nn.Module):
    """SqueezeNet's head: a 1x1 conv makes the class scores, pooled and flattened."""

    def __init__(self):
        super().__init__()
        self.features = _ConvBN(3, 16)
        self.classifier = nn.Conv2d(16, 10, 1)
        self.cls_act = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.cls_act(self.classifier(self.features(x)))), 1)


class ViewConstant(nn.Module):
    """``x.view(-1, 512)``: the constant holds the channel count (32 x 4 x 4)."""

    def __init__(self):
        super().__init__()
        self.features = _ConvBN(3, 32)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(512, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).view(-1, 512))


# --- channels-last, transformers -------------------------------------------------------------

class ConvNeXtBlock(nn.Module):
    def __init__(self, c: int, layer_scale: bool):
        super().__init__()
        self.dwconv = nn.Conv2d(c, c, 3, padding=1, groups=c)
        self.norm = nn.LayerNorm(c)
        self.pw1 = nn.Linear(c, 4 * c)
        self.act = nn.GELU()
        self.pw2 = nn.Linear(4 * c, c)
        self.gamma = nn.Parameter(torch.full((c,), 0.5)) if layer_scale else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.pw2(self.act(self.pw1(self.norm(y))))
        if self.gamma is not None:
            y = self.gamma * y
        return x + y.permute(0, 3, 1, 2)


class PermuteLayerNormLinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = _ConvBN(3, 16, act=False)
        self.block = ConvNeXtBlock(16, layer_scale=False)
        self.head = _Head(16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(self.stem(x)))


class LayerScale(nn.Module):
    """Per-channel scale parameters read through ``get_attr``: (C,1,1) and channels-last (C,)."""

    def __init__(self):
        super().__init__()
        self.stem = _ConvBN(3, 8)
        self.conv = nn.Conv2d(8, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.scale = nn.Parameter(torch.linspace(0.1, 0.8, 8).view(8, 1, 1))
        self.block = ConvNeXtBlock(8, layer_scale=True)
        self.head = _Head(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = x + self.scale * self.bn(self.conv(x))
        return self.head(self.block(x))


def _check_layer_scale(slim: Any) -> None:
    w = widths_for(slim, {"stem.bn": 0.5})
    sub = slim.extract(w)
    assert sub.get_parameter("scale").shape == (4, 1, 1)
    assert sub.get_parameter("block.gamma").shape == (4,)


class TinyViT(nn.Module):
    def __init__(self):
        super().__init__()
        self.patch = nn.Conv2d(3, 16, 4, stride=4)
        self.cls_token = nn.Parameter(torch.randn(1, 1, 16) * 0.1)
        self.pos_embedding = nn.Parameter(torch.randn(1, 5, 16) * 0.1)
        self.norm1 = nn.LayerNorm(16)
        self.fc1 = nn.Linear(16, 32)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(32, 16)
        self.norm2 = nn.LayerNorm(16)
        self.head = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embedding
        x = x + self.fc2(self.act(self.fc1(self.norm1(x))))
        return self.head(self.norm2(x)[:, 0])


def _check_class_token(slim: Any) -> None:
    w = widths_for(slim, {"norm1": 0.5})
    sub = slim.extract(w)
    assert sub.get_parameter("cls_token").shape == (1, 1, 8)
    assert sub.get_parameter("pos_embedding").shape == (1, 5, 8)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = (f(x).reshape(b, t, self.heads, self.head_dim).transpose(1, 2) for f in (self.q, self.k, self.v))
        y = F.scaled_dot_product_attention(q, k, v)
        return self.proj(y.transpose(1, 2).reshape(b, t, self.heads * self.head_dim))


class AttentionBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(8, 16)
        self.norm1 = nn.LayerNorm(16)
        self.attn = Attention(16, 2)
        self.norm2 = nn.LayerNorm(16)
        self.head = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x)
        x = x + self.attn(self.norm1(x))
        return self.head(self.norm2(x).mean(1))


class MHAMLP(nn.Module):
    """nn.MultiheadAttention, then an MLP: the MLP's hidden width must stay slimmable."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(8, 16)
        self.norm1 = nn.LayerNorm(16)
        self.attn = nn.MultiheadAttention(16, 2, batch_first=True)
        self.norm2 = nn.LayerNorm(16)
        self.fc1 = nn.Linear(16, 32)
        self.mlp_act = nn.GELU()
        self.fc2 = nn.Linear(32, 16)
        self.head = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x)
        y = self.norm1(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        x = x + self.fc2(self.mlp_act(self.fc1(self.norm2(x))))
        return self.head(x.mean(1))


# --- spatial rearrangements, decoders ----------------------------------------------------------

class PixelShuffleNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = _ConvBN(3, 8)
        self.up = nn.Conv2d(8, 16, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)
        self.bn = nn.BatchNorm2d(4)
        self.out = _ConvBN(4, 8)
        self.head = _Head(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.out(F.relu(self.bn(self.shuffle(self.up(self.stem(x)))))))


class UNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc1 = _ConvBN(3, 8)
        self.pool = nn.MaxPool2d(2)
        self.enc2 = _ConvBN(8, 16)
        self.up = nn.ConvTranspose2d(16, 8, 2, stride=2)
        self.up_bn = nn.BatchNorm2d(8)
        self.dec = _ConvBN(16, 8)
        self.out = nn.Conv2d(8, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        u = F.relu(self.up_bn(self.up(self.enc2(self.pool(e1)))))
        return self.out(self.dec(torch.cat([u, e1], 1)))


def _check_unet(slim: Any) -> None:
    w = widths_for(slim, {"enc1.bn": 0.5, "up_bn": 0.75, "enc2.bn": 0.5})
    sub = slim.extract(w)
    up = sub.get_submodule("up")
    assert (up.in_channels, up.out_channels) == (8, 6)
    assert sub.get_submodule("dec.conv").in_channels == 6 + 4


# --- reuse, outputs --------------------------------------------------------------------------

class ModuleReused(nn.Module):
    """One conv applied twice: its input and output channels become one group."""

    def __init__(self):
        super().__init__()
        self.stem = _ConvBN(3, 8)
        self.shared = nn.Conv2d(8, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.head = _Head(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        return self.head(self.bn(self.shared(F.relu(self.shared(x)))))


class TupleOutput(nn.Module):
    """Returns (logits, features): the features' group is a model output, hence frozen."""

    def __init__(self):
        super().__init__()
        self.stem = _ConvBN(3, 8)
        self.body = _ConvBN(8, 12)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(12, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feat = torch.flatten(self.pool(self.body(self.stem(x))), 1)
        return self.fc(feat), feat


class DictOutput(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = _ConvBN(3, 8)
        self.body = _ConvBN(8, 12)
        self.head = _Head(12)
        self.aux = _Head(8, 3)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        s = self.stem(x)
        return {"logits": self.head(self.body(s)), "aux": self.aux(s)}


# --- boundaries ------------------------------------------------------------------------------

class UnknownSort(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = _ConvBN(3, 8)
        self.b = _ConvBN(8, 12)
        self.head = _Head(12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.b(torch.sort(self.a(x), dim=1).values))


class UnknownFFT(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = _ConvBN(3, 8)
        self.b = _ConvBN(8, 12)
        self.head = _Head(12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.b(torch.fft.fft(self.a(x), dim=1).abs()))


class DataDependentGate(nn.Module):
    """Branches on a tensor value: torch.fx cannot trace this."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.mean() > 0:
            return x * 2.0
        return x - 1.0


class UntraceableSubmodule(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = _ConvBN(3, 8)
        self.gate = DataDependentGate()
        self.b = _ConvBN(8, 12)
        self.head = _Head(12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.b(self.gate(self.a(x))))


# --- other ranks, functional forms -----------------------------------------------------------

class Conv1dNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv1d(3, 8, 3, padding=1)
        self.stem_bn = nn.BatchNorm1d(8)
        self.conv1 = nn.Conv1d(8, 6, 3, padding=1)
        self.bn1 = nn.BatchNorm1d(6)
        self.conv2 = nn.Conv1d(6, 8, 3, padding=1)
        self.bn2 = nn.BatchNorm1d(8)
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem_bn(self.stem(x)))
        x = F.relu(x + self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))
        return self.fc(self.pool(x).flatten(1))


class Conv3dNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv3d(2, 8, 3, padding=1)
        self.stem_bn = nn.BatchNorm3d(8)
        self.conv1 = nn.Conv3d(8, 6, 3, padding=1)
        self.bn1 = nn.BatchNorm3d(6)
        self.conv2 = nn.Conv3d(6, 8, 1)
        self.bn2 = nn.BatchNorm3d(8)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem_bn(self.stem(x)))
        x = F.relu(x + self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))
        return self.fc(self.pool(x).flatten(1))


class FunctionalForms(nn.Module):
    """F.conv2d on bare parameters, F.relu, torch.add, ``x += y`` and ``x.relu_()``."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w1 = nn.Parameter(torch.randn(8, 3, 3, 3, generator=g) * 0.2)
        self.b1 = nn.Parameter(torch.randn(8, generator=g) * 0.1)
        self.w2 = nn.Parameter(torch.randn(8, 8, 3, 3, generator=g) * 0.1)
        self.w3 = nn.Parameter(torch.randn(6, 8, 1, 1, generator=g) * 0.2)
        self.fc = nn.Linear(6, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(F.conv2d(x, self.w1, self.b1, padding=1))
        y = torch.add(F.conv2d(x, self.w2, padding=1), x)
        y += x
        y.relu_()
        z = torch.sigmoid(F.conv2d(y, self.w3))
        return self.fc(z.mean((2, 3)))


def _check_functional(slim: Any) -> None:
    w = widths_for(slim, {"relu": 0.5})
    sub = slim.extract(w)
    assert sub.get_parameter("w1").shape == (4, 3, 3, 3)
    assert sub.get_parameter("b1").shape == (4,)
    assert sub.get_parameter("w2").shape == (4, 4, 3, 3)
    assert sub.get_parameter("w3").shape == (6, 4, 1, 1)


# --- the registry ------------------------------------------------------------------------------

OUT = "output"

SCENARIOS: dict[str, Scenario] = {
    "residual_add": Scenario(_fixture(ResidualAdd), _image(), Expect(
        slimmable_groups=2, together=(("stem.bn", "block.bn2"),), apart=(("stem.bn", "block.bn1"),),
        slimmable=("stem.bn", "block.bn1"), frozen={"head.fc": OUT},
        channels={"stem.bn": 8, "block.bn1": 6})),
    "stage_residual": Scenario(_fixture(StageResidual), _image(), Expect(
        slimmable_groups=4, together=(("stem.bn", "blocks.0.bn2", "blocks.1.bn2", "blocks.2.bn2"),),
        apart=(("blocks.0.bn1", "blocks.1.bn1"), ("blocks.1.bn1", "blocks.2.bn1"), ("stem.bn", "blocks.2.bn1")),
        slimmable=("stem.bn", "blocks.0.bn1", "blocks.1.bn1", "blocks.2.bn1"),
        channels={"stem.bn": 8, "blocks.0.bn1": 4, "blocks.1.bn1": 6, "blocks.2.bn1": 5})),
    "concat_offsets": Scenario(_fixture(ConcatOffsets), _image(), Expect(
        slimmable_groups=3, apart=(("a.bn", "b.bn"),), slimmable=("a.bn", "b.bn", "c.bn"),
        channels={"a.bn": 8, "b.bn": 4, "c.bn": 16}, check=_check_concat_offsets)),
    "concat_plus_conv": Scenario(_fixture(ConcatPlusConv), _image(), Expect(
        slimmable_groups=3, together=(("a.bn", "d.bn"), ("b.bn", "d.bn")), apart=(("a.bn", "b.bn"),),
        slimmable=("a.bn", "b.bn", "d.bn", "e.bn"), pieces={"d.bn": (4, 6)},
        channels={"a.bn": 6, "b.bn": 4})),
    "cascaded_concat": Scenario(_fixture(CascadedConcat), _image(), Expect(
        slimmable_groups=5,
        apart=(("stem.bn", "layers.0.act"), ("layers.0.act", "layers.1.act"), ("layers.1.act", "layers.2.act")),
        slimmable=("stem.bn", "layers.0.act", "layers.1.act", "layers.2.act", "trans.bn"),
        channels={"stem.bn": 6, "layers.0.act": 4, "layers.2.act": 3}, check=_check_cascaded_concat)),
    "split_concat": Scenario(_fixture(SplitConcat), _image(), Expect(
        slimmable_groups=4, slimmable=("stem.bn", "branch.bn", "mix.bn"), pieces={"stem.bn": (4, 6)},
        apart=(("stem.bn", "branch.bn"),))),
    "chunk": Scenario(_fixture(Chunk), _image(), Expect(
        slimmable_groups=5, slimmable=("stem.bn", "branch.bn", "mix.bn"), pieces={"stem.bn": (4, 4, 4)})),
    "channel_shuffle": Scenario(_fixture(ChannelShuffle), _image(), Expect(
        # block2's chunk halves the shuffled tensor, so block1's output comes in two pieces; the
        # shuffle itself may tie x1 to the branch or (gathering) leave them apart
        together=(("block1.pw1.bn", "block1.dw.bn"),), pieces={"block1.pw2.bn": (4, 4)},
        apart=(("block1.pw1.bn", "block1.pw2.bn"), ("block2.pw1.bn", "block2.pw2.bn")),
        slimmable=("block1.pw1.bn", "block1.pw2.bn", "block2.pw1.bn", "last.bn"))),
    "depthwise": Scenario(_fixture(Depthwise), _image(), Expect(
        slimmable_groups=2, together=(("stem.bn", "dw.bn"),), apart=(("dw.bn", "pw.bn"),),
        channels={"dw.bn": 8}, quantum={"dw.bn": 1})),
    "depthwise_multiplier": Scenario(_fixture(lambda: Depthwise(mult=2)), _image(), Expect(
        slimmable_groups=2, together=(("stem.bn", "dw.bn"),), apart=(("dw.bn", "pw.bn"),),
        channels={"stem.bn": 8}, quantum={"stem.bn": 1}, check=_check_depthwise_multiplier)),
    "grouped_conv": Scenario(_fixture(GroupedConv), _image(), Expect(
        slimmable_groups=2, together=(("stem.bn", "g1.bn", "g2.bn"),), apart=(("g2.bn", "pw.bn"),),
        channels={"stem.bn": 16}, quantum={"stem.bn": 4}, check=_check_grouped_conv)),
    "groupnorm": Scenario(_fixture(GroupNormNet), _image(), Expect(
        slimmable_groups=2, slimmable=("gn",), channels={"gn": 24}, quantum={"gn": 6}, check=_check_groupnorm)),
    "se_gate": Scenario(_fixture(SEGate), _image(), Expect(
        slimmable_groups=3, together=(("stem.bn", "se_gate"),), apart=(("se_act", "stem.bn"),),
        slimmable=("stem.bn", "se_act", "out.bn"), channels={"se_act": 4, "stem.bn": 16})),
    "flatten_linear": Scenario(_fixture(FlattenLinear), _image(), Expect(
        slimmable_groups=2, slimmable=("features.bn", "fc1_act"), frozen={"fc2": OUT},
        channels={"features.bn": 8, "fc1_act": 32}, check=_check_flatten_linear)),
    "conv_classifier": Scenario(_fixture(ConvClassifier), _image(), Expect(
        slimmable_groups=1, slimmable=("features.bn",), frozen={"cls_act": OUT})),
    "view_constant": Scenario(_fixture(ViewConstant), _image(), Expect(frozen={"fc": OUT})),
    "permute_layernorm_linear": Scenario(_fixture(PermuteLayerNormLinear), _image(), Expect(
        slimmable_groups=2, together=(("stem.bn", "block.norm"),), apart=(("block.act", "block.norm"),),
        slimmable=("block.norm", "block.act"), channels={"block.act": 64, "block.norm": 16})),
    "layer_scale": Scenario(_fixture(LayerScale), _image(), Expect(
        slimmable_groups=2, together=(("stem.bn", "bn", "block.norm"),), slimmable=("stem.bn", "block.act"),
        check=_check_layer_scale)),
    "class_token_pos_embedding": Scenario(_fixture(TinyViT), _image(), Expect(
        slimmable_groups=2, together=(("norm1", "norm2"),), apart=(("norm1", "act"),),
        slimmable=("norm1", "act"), channels={"norm1": 16, "act": 32}, frozen={"head": OUT},
        check=_check_class_token)),
    "attention_block": Scenario(_fixture(AttentionBlock), _tokens(), Expect(
        together=(("norm1", "norm2"),), slimmable=("norm1",), frozen={"head": OUT})),
    "mha_mlp": Scenario(_fixture(MHAMLP), _tokens(), Expect(
        together=(("norm1", "norm2"),), apart=(("mlp_act", "norm2"),), slimmable=("mlp_act",),
        channels={"mlp_act": 32}, frozen={"head": OUT})),
    "pixel_shuffle": Scenario(_fixture(PixelShuffleNet), _image(), Expect(
        apart=(("stem.bn", "bn"), ("bn", "out.bn")), slimmable=("stem.bn", "out.bn"))),
    "unet_transposed_skip": Scenario(_fixture(UNet), _image(), Expect(
        slimmable_groups=4, apart=(("enc1.bn", "up_bn"),), slimmable=("enc1.bn", "enc2.bn", "up_bn", "dec.bn"),
        frozen={"out": OUT}, check=_check_unet)),
    "module_reused": Scenario(_fixture(ModuleReused), _image(), Expect(
        slimmable_groups=1, together=(("stem.bn", "bn"),), slimmable=("stem.bn",), channels={"bn": 8})),
    "tuple_output": Scenario(_fixture(TupleOutput), _image(), Expect(
        slimmable_groups=1, slimmable=("stem.bn",), frozen={"body.bn": OUT, "fc": OUT})),
    "dict_output": Scenario(_fixture(DictOutput), _image(), Expect(
        slimmable_groups=2, slimmable=("stem.bn", "body.bn"), frozen={"head.fc": OUT, "aux.fc": OUT})),
    "unknown_op_sort": Scenario(_fixture(UnknownSort), _image(), Expect(
        slimmable_groups=1, slimmable=("b.bn",), frozen={"a.bn": "sort"})),
    "unknown_op_fft": Scenario(_fixture(UnknownFFT), _image(), Expect(
        slimmable_groups=1, slimmable=("b.bn",), frozen={"a.bn": "fft"})),
    "untraceable_submodule": Scenario(_fixture(UntraceableSubmodule), _image(), Expect(
        slimmable_groups=1, slimmable=("b.bn",), frozen={"a.bn": "gate"})),
    "conv1d": Scenario(_fixture(Conv1dNet), lambda: (torch.randn(2, 3, 16, generator=torch.Generator().manual_seed(1)),),
                       Expect(slimmable_groups=2, together=(("stem_bn", "bn2"),), apart=(("stem_bn", "bn1"),),
                              slimmable=("stem_bn", "bn1"), frozen={"fc": OUT})),
    "conv3d": Scenario(_fixture(Conv3dNet), lambda: (torch.randn(2, 2, 4, 6, 6, generator=torch.Generator().manual_seed(1)),),
                       Expect(slimmable_groups=2, together=(("stem_bn", "bn2"),), apart=(("stem_bn", "bn1"),),
                              slimmable=("stem_bn", "bn1"), frozen={"fc": OUT})),
    "functional_forms": Scenario(_fixture(FunctionalForms), _image(), Expect(
        slimmable_groups=2, together=(("relu", "add", "relu_"),), slimmable=("relu",), channels={"relu": 8},
        check=_check_functional)),
}

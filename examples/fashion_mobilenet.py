"""A small MobileNetV2-style network for 1x28x28 Fashion-MNIST (inverted residual blocks).

``pareco-fx slim examples/fashion_mobilenet.py --cost flops``
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["InvertedResidual", "FashionMobileNet", "model", "example_inputs"]

# (expansion t, output channels c, blocks n, first stride s), as in MobileNetV2's table.
SETTINGS = ((1, 16, 1, 1), (4, 24, 2, 2), (4, 32, 2, 1), (4, 64, 2, 2))


def conv_bn(
    in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True
) -> nn.Sequential:
    """Conv (no bias), BatchNorm and an optional ReLU6."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_channels),
    ]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """1x1 expansion, 3x3 depthwise, linear 1x1 projection; residual when shapes agree."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_channels * expansion
        layers: list[nn.Module] = [conv_bn(in_channels, hidden, 1)] if expansion != 1 else []
        layers += [conv_bn(hidden, hidden, 3, stride, groups=hidden), conv_bn(hidden, out_channels, 1, act=False)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.residual else out


class FashionMobileNet(nn.Module):
    """MobileNetV2 layout scaled down for 28x28 grey-scale images."""

    def __init__(self, num_classes: int = 10, stem: int = 16, head: int = 256) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_bn(1, stem, 3, 2)]
        in_channels = stem
        for expansion, channels, blocks, stride in SETTINGS:
            for block in range(blocks):
                layers.append(InvertedResidual(in_channels, channels, stride if block == 0 else 1, expansion))
                in_channels = channels
        layers.append(conv_bn(in_channels, head, 1))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(head, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def model() -> nn.Module:
    """The network to slim."""
    return FashionMobileNet()


def example_inputs() -> tuple[torch.Tensor]:
    """A batch of two Fashion-MNIST-shaped images."""
    return (torch.randn(2, 1, 28, 28),)

"""A ResNet-20-style network for 1x28x28 Fashion-MNIST: 3 stages of 3 basic blocks, 16/32/64 channels.

Used by ``make demo``: ``pareco-fx slim examples/fashion_resnet.py --cost memory``. The stem has
stride 2 (stages run at 14x14, 7x7, 4x4) so that a PareCO run fits a few minutes on two CPU cores;
shortcuts that change shape are 1x1 convolutions with BatchNorm.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["BasicBlock", "FashionResNet", "model", "example_inputs"]


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with a residual connection."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class FashionResNet(nn.Module):
    """ResNet-20 layout (3 stages x 3 blocks) for single-channel 28x28 images."""

    def __init__(
        self, num_classes: int = 10, widths: tuple[int, int, int] = (16, 32, 64), blocks: int = 3
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, widths[0], 3, 2, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)
        )
        stages = []
        in_channels = widths[0]
        for index, channels in enumerate(widths):
            for block in range(blocks):
                stride = 2 if index > 0 and block == 0 else 1
                stages.append(BasicBlock(in_channels, channels, stride))
                in_channels = channels
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.stages(self.stem(x)))
        return self.fc(torch.flatten(x, 1))


def model() -> nn.Module:
    """The network to slim."""
    return FashionResNet()


def example_inputs() -> tuple[torch.Tensor]:
    """A batch of two Fashion-MNIST-shaped images."""
    return (torch.randn(2, 1, 28, 28),)

"""A tiny slimmable CNN and small Fashion-MNIST slices for fast trainer tests."""
from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset, Subset

import pareco_fx
from pareco_fx.data import load_fashion_mnist
from pareco_fx.optim import TrainConfig

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


class TinyNet(nn.Module):
    """Two strided conv-BN-ReLU layers, global pooling, a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, 2, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean((2, 3)))


def tiny_slim(seed: int = 0) -> nn.Module:
    """The tiny CNN, made slimmable, with weights that depend only on ``seed``."""
    torch.manual_seed(seed)
    return pareco_fx.make_slimmable(TinyNet(), (torch.randn(2, 1, 28, 28),))


def resnet_slim() -> nn.Module:
    """The ResNet-20-style example, made slimmable (a real cost program with 12 slimmable groups)."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        import fashion_resnet
    finally:
        sys.path.remove(str(EXAMPLES))
    torch.manual_seed(0)
    return pareco_fx.make_slimmable(fashion_resnet.model(), fashion_resnet.example_inputs())


def tiny_data(train: int = 256, val: int = 64, test: int = 64) -> tuple[Dataset, Dataset, Dataset]:
    """The first examples of each split of the embedded subset."""
    tr, va, te = load_fashion_mnist("embedded")
    return Subset(tr, range(train)), Subset(va, range(val)), Subset(te, range(test))


TINY_CONFIG = TrainConfig(
    cost="flops", epochs=3, batch_size=32, lr=0.2, warmup_epochs=0.5, max_train_batches=4,
    num_width_vectors=12, prior_points=3, recal_batches=2, slim_eval_points=4, twostage_evals=12,
    search_candidates=256, gp_max_points=50,
)

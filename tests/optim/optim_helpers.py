"""A tiny slimmable CNN and a tiny learnable task for fast trainer tests."""
from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

import pareco_fx
from pareco_fx.optim import TrainConfig

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


class TinyNet(nn.Module):
    """Two strided conv-BN-ReLU layers, global pooling, dropout (global RNG use), a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, 2, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.drop = nn.Dropout(0.1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(self.drop(x.mean((2, 3))))


def tiny_slim(seed: int = 0) -> nn.Module:
    """The tiny CNN, made slimmable, with weights that depend only on ``seed``."""
    torch.manual_seed(seed)
    return pareco_fx.make_slimmable(TinyNet(), (torch.randn(2, 1, 8, 8),))


def resnet_slim() -> nn.Module:
    """The ResNet-20-style example, made slimmable (a real cost program with 12 slimmable groups)."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        import fashion_resnet
    finally:
        sys.path.remove(str(EXAMPLES))
    torch.manual_seed(0)
    return pareco_fx.make_slimmable(fashion_resnet.model(), fashion_resnet.example_inputs())


def quadrants(n: int, seed: int) -> TensorDataset:
    """Four classes of noisy 8x8 images, each brightening one quadrant: learnable in a few steps."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=g)
    x = 0.5 * torch.randn(n, 1, 8, 8, generator=g)
    for k in range(4):
        r, c = divmod(k, 2)
        x[y == k, :, 4 * r: 4 * r + 4, 4 * c: 4 * c + 4] += 1.0
    return TensorDataset(x, y)


def tiny_data(train: int = 256, val: int = 64, test: int = 64) -> tuple[Dataset, Dataset, Dataset]:
    """(train, val, test) splits of the quadrant task."""
    return quadrants(train, 0), quadrants(val, 1), quadrants(test, 2)


TINY_CONFIG = TrainConfig(
    cost="flops", epochs=3, batch_size=32, lr=0.2, warmup_epochs=0.5, max_train_batches=4,
    num_width_vectors=12, prior_points=3, recal_batches=2, slim_eval_points=4, twostage_evals=12,
    search_candidates=256, gp_max_points=50,
)


class SlowData(Dataset):
    """A dataset that sleeps on every item, so that a run can be killed part-way."""

    def __init__(self, base: Dataset, delay: float) -> None:
        self.base, self.delay = base, delay

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int):
        import time

        time.sleep(self.delay)
        return self.base[index]

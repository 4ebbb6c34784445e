"""Slim a torchvision model on your own data: MobileNetV3-Small on 3x32x32 images.

A model file for ``pareco-fx slim`` may define ``datasets()``; its (train, validation, test)
``torch.utils.data.Dataset``s of ``(image tensor, int label)`` then replace Fashion-MNIST. Here
the "user data" is the embedded Fashion-MNIST subset turned into 3x32x32 colour-shaped images, as
a stand-in for any folder of images you would wrap in a Dataset.

``pareco-fx slim examples/torchvision_custom_data.py --cost flops --epochs 2``
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset
from torchvision.models import mobilenet_v3_small

from pareco_fx.data import MEAN, STD, load_fashion_mnist

__all__ = ["RGB32", "model", "example_inputs", "datasets"]


class RGB32(Dataset):
    """Pad 1x28x28 images to 32x32 with background and repeat them over three channels."""

    def __init__(self, base: Dataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image, label = self.base[index]
        return F.pad(image, (2, 2, 2, 2), value=-MEAN / STD).expand(3, -1, -1).contiguous(), label


def model() -> nn.Module:
    """torchvision's MobileNetV3-Small with a 10-class head."""
    return mobilenet_v3_small(num_classes=10)


def example_inputs() -> tuple[torch.Tensor]:
    """A batch of two 3x32x32 images."""
    return (torch.randn(2, 3, 32, 32),)


def datasets() -> tuple[Dataset, Dataset, Dataset]:
    """The (train, validation, test) datasets to train and select on."""
    train, val, test = load_fashion_mnist("embedded", val_fraction=0.1, seed=0)
    return RGB32(train), RGB32(val), RGB32(test)

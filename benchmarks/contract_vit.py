"""The torchvision ViTs for ``../shared/contract_check.py``, without two artefacts of its
torchvision suite (see benchmarks/README.md):

- torchvision zero-initialises a ViT's classification head, so the output is 0 for every input and
  the checker's loss, the mean of its squares, has a zero gradient everywhere (for the original
  model too): the head is re-initialised at random here;
- the checker measures memory on ``x[:1]``, and the oracle counts the whole storage of that view
  (the batch of 2): the example input here is a batch of 1, so the slice is the whole tensor.

usage: .venv/bin/python ../shared/contract_check.py benchmarks/contract_vit.py
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torchvision


def _vit(name: str):
    def build() -> nn.Module:
        torch.manual_seed(0)
        model = torchvision.models.get_model(name)
        nn.init.normal_(model.heads.head.weight, std=0.02)
        return model
    return build


def _image() -> tuple[torch.Tensor]:
    return (torch.randn(1, 3, 224, 224),)


MODELS = {name: (_vit(name), _image, 0.5)  # the torchvision suite's share for attention models
          for name in ("vit_b_16", "vit_b_32", "vit_l_16", "vit_l_32", "vit_h_14")}

"""The torchvision zoo sweep: every classification model passes the invariants of DESIGN.md.

Each model (random weights, randomised norm statistics) is checked at the smallest, a random
and the largest widths, with a backward pass (``invariants.check_invariants``); the groups,
frozen groups with their reasons and the slimmable share are recorded as test properties.
``FAST`` runs in the default suite; the rest is behind the ``zoo`` marker (``make zoo``).
``benchmarks/zoo.py`` writes the whole sweep up.
"""
from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn as nn
import torchvision

from invariants import Checked, check_invariants, groups_holding, randomize_norms

__all__ = ["ALL", "FAST", "input_size", "zoo_model", "zoo_inputs", "min_share", "check_zoo_model"]

ALL = tuple(torchvision.models.list_models(module=torchvision.models))
FAST = (
    "resnet18", "resnext50_32x4d", "wide_resnet50_2", "mobilenet_v2", "mobilenet_v3_small",
    "efficientnet_b0", "densenet121", "shufflenet_v2_x0_5", "regnet_y_400mf", "convnext_tiny",
    "squeezenet1_0", "inception_v3", "googlenet", "vit_b_16", "swin_t", "mnasnet0_5", "alexnet", "vgg11",
)
# families whose conv/linear outputs must be >= 90 % slimmable (issue 2's target)
CNN_FAMILIES = ("resnet", "resnext", "wide_resnet", "mobilenet", "efficientnet", "regnet", "densenet",
                "shufflenet", "convnext")
TRANSFORMERS = ("vit_", "swin", "maxvit")
CLASSES = 1000  # the classifier's outputs, left out of the share


def input_size(name: str) -> int:
    """Small inputs keep the sweep fast; transformers need their patch grid, Inception 299."""
    if name == "inception_v3":
        return 299
    return 224 if name.startswith(TRANSFORMERS) else 64


def min_share(name: str) -> float:
    """The least slimmable share a sound analysis leaves on ``name`` (0: no target)."""
    return 0.9 if name.startswith(CNN_FAMILIES) else 0.0


def zoo_model(name: str, seed: int = 0) -> nn.Module:
    """``name`` with random weights and randomised norm statistics, in eval mode."""
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # googlenet/inception: "default weight init will change"
        model = torchvision.models.get_model(name, weights=None)
    return randomize_norms(model, seed).eval()


def zoo_inputs(name: str, batch: int = 2, size: int | None = None) -> tuple[torch.Tensor, ...]:
    s = size or input_size(name)
    return (torch.randn(batch, 3, s, s, generator=torch.Generator().manual_seed(0)),)


def check_zoo_model(name: str) -> Checked:
    """Invariants at min/random/max widths + backward, the share target, slimmable MLPs."""
    model = zoo_model(name)
    checked = check_invariants(model, zoo_inputs(name), seed=len(name), share_skip=CLASSES)
    assert checked.share + 1e-9 >= min_share(name), (
        f"{name}: slimmable share {checked.share:.3f} < {min_share(name)}; frozen: "
        f"{[(g.channels, g.reason) for g in checked.slim.groups if not g.slimmable]}")
    if name.startswith(("vit_", "swin")):
        mlps = [n for n, m in model.named_modules() if n.endswith("mlp.1") and isinstance(m, nn.GELU)]
        assert mlps, f"{name}: no MLP activations found"
        for n in mlps:
            held = groups_holding(checked.slim, n)
            assert held and all(g.slimmable for g in held), f"{name}: MLP hidden width at {n} is not slimmable: {held}"
    return checked


@pytest.mark.parametrize("name", [n if n in FAST else pytest.param(n, marks=pytest.mark.zoo) for n in ALL])
def test_zoo_model(name: str, record_property) -> None:
    checked = check_zoo_model(name)
    groups = checked.slim.groups
    frozen = [f"{g.id}({g.channels}): {g.reason}" for g in groups if not g.slimmable]
    record_property("groups", len(groups))
    record_property("frozen", frozen)
    record_property("share", round(checked.share, 4))
    print(f"{name}: {len(groups)} groups, {len(frozen)} frozen, share {checked.share:.3f}; {frozen}")


def test_fast_subset_covers_the_families() -> None:
    families = ("resnet", "resnext", "mobilenet_v2", "mobilenet_v3", "efficientnet", "densenet", "shufflenet",
                "regnet", "convnext", "squeezenet", "inception", "googlenet", "vit", "swin")
    assert len(FAST) >= 15 and set(FAST) <= set(ALL)
    assert all(any(n.startswith(f) for n in FAST) for f in families)

"""BN recalibration as a cumulative average; checkpoints and RNG states load with weights_only."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

from pareco_fx.errors import CheckpointError
from pareco_fx.optim import load_checkpoint, recalibrate_bn
from pareco_fx.optim.checkpoint import capture_rng, restore_rng, save_checkpoint


def test_recalibration_is_a_cumulative_average_and_restores_state() -> None:
    model = nn.Sequential(nn.BatchNorm1d(3, momentum=0.3))
    model.eval()
    model[0].running_mean.fill_(7.0)
    batches = [(torch.randn(8, 3) + shift, torch.zeros(8, dtype=torch.long)) for shift in (0.0, 1.0, 5.0)]
    loss = recalibrate_bn(model, batches, lambda out, y: out.pow(2).mean())
    expected_mean = torch.stack([x.mean(0) for x, _ in batches]).mean(0)
    expected_var = torch.stack([x.var(0) for x, _ in batches]).mean(0)  # unbiased per batch
    assert torch.allclose(model[0].running_mean, expected_mean, atol=1e-6)
    assert torch.allclose(model[0].running_var, expected_var, atol=1e-5)
    assert model[0].momentum == 0.3 and not model.training
    # Train-mode outputs are normalised per batch: mean of squares = 1 - eps effects.
    assert loss == pytest.approx(1.0, abs=1e-3)


def test_recalibration_sees_the_inference_activations_without_dropout() -> None:
    model = nn.Sequential(nn.Dropout(0.5), nn.BatchNorm1d(3))
    batches = [(torch.randn(64, 3) * 2.0, torch.zeros(64, dtype=torch.long))]
    recalibrate_bn(model, batches)
    first = model[1].running_var.clone()
    recalibrate_bn(model, batches)
    x = batches[0][0]
    torch.testing.assert_close(model[1].running_mean, x.mean(0))
    torch.testing.assert_close(model[1].running_var, x.var(0))  # dropout's rescaling would double it
    assert torch.equal(model[1].running_var, first)  # the same statistics every time
    assert model.training and model[0].training  # modes restored


def test_checkpoint_round_trip_with_rng_states(tmp_path) -> None:
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    state = capture_rng()
    expected = (random.random(), np.random.rand(), torch.rand(1))
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"rng": state, "weights": {"w": torch.arange(3.0)}, "step": 5})
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary file was renamed
    payload = load_checkpoint(path)  # weights_only=True inside
    assert payload["step"] == 5 and torch.equal(payload["weights"]["w"], torch.arange(3.0))
    random.random(), np.random.rand(), torch.rand(1)
    restore_rng(payload["rng"])
    assert (random.random(), np.random.rand()) == expected[:2] and torch.equal(torch.rand(1), expected[2])


def test_missing_checkpoint(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "checkpoint.pt")

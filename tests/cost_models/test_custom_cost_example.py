"""examples/custom_cost.py: user cost models registered by name work through ``slim.cost``."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

import pareco_fx
from pareco_fx import cost_models
from test_cost_memory import Chain

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "custom_cost.py"


@pytest.fixture
def example():
    spec = importlib.util.spec_from_file_location("custom_cost", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cost_models.register("sram_int8", module.sram_int8, overwrite=True)
    cost_models.register("latency_ms", module.latency_ms, overwrite=True)
    yield module
    for name in ("sram_int8", "latency_ms"):
        cost_models.base._MODELS.pop(name, None)


def test_custom_costs_by_hand(example):
    torch.manual_seed(0)
    slim = pareco_fx.make_slimmable(Chain().eval(), (torch.randn(2, 3, 8, 8),), min_width=0.25)
    # Activations only (x: 192; c1 out, relu out: 64u each; c2 out: 512), int8 = 1 byte each:
    # x 192; c1 192 + 64u; relu 128u; c2 64u + 512 -> u = 16: 2048 at relu; u = 8: 1024 at c2
    # (64·8 + 512 = 1024 ties relu's 128·8 = 1024; the first node wins the tie).
    assert slim.cost("sram_int8", 1.0) == 2048
    assert slim.cost("sram_int8", 0.5) == 1024
    # latency: conv MACs c1 = u·27·64, c2 = 8·9u·64, at 0.010 ms per million MACs
    for w, u in ((1.0, 16), (0.5, 8)):
        assert slim.cost("latency_ms", w) == pytest.approx((u * 27 * 64 + 8 * 9 * u * 64) / 1e6 * 0.010, rel=1e-12)
    W = torch.tensor([[1.0] * len(slim.groups), [0.5] * len(slim.groups)])
    assert slim.cost_batch("sram_int8", W).tolist() == [2048, 1024]

"""The ``flops`` cost against thop, torchvision's published operation counts and FlopCounterMode.

thop counts MACs of the layers it has hooks for. Besides MACs it adds element-wise work for
norms and average pools, and it misses (counts 0 for) everything that is not a module call it
knows: functional ``F.conv2d``/``F.linear``/``torch.matmul``/``@``/``einsum``,
``F.scaled_dot_product_attention`` and ``nn.MultiheadAttention`` (no hook). For transposed convs
it multiplies by the *output* positions, overcounting by stride^d.
"""
from __future__ import annotations

import pytest
import thop
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

import pareco_fx
from pareco_fx.cost_models import flops
from pareco_fx.errors import CostModelError
from cost_measure import counted_macs


def _no_ops(module, x, y):
    module.total_ops += torch.zeros(1, dtype=torch.float64)


# thop's hooks for work that is not multiply-accumulate (norm and pooling arithmetic).
THOP_NOT_MACS = {cls: _no_ops for cls in (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm, nn.AvgPool2d,
                                           nn.AdaptiveAvgPool2d, nn.Softmax)}


def _thop(model: nn.Module, x: torch.Tensor, custom_ops=None) -> float:
    macs, _ = thop.profile(model, inputs=(x,), custom_ops=custom_ops, verbose=False)
    return float(macs)


def _full_flops(model: nn.Module, x: torch.Tensor) -> float:
    return pareco_fx.make_slimmable(model, (x.expand(2, *x.shape[1:]),)).cost("flops", 1.0)


@pytest.mark.parametrize("name", ["resnet18", "vgg11", "alexnet", "squeezenet1_1", "googlenet"])
def test_full_width_flops_within_one_percent_of_thop(name):
    # Built from layers thop counts; its extra norm/pool arithmetic stays below 1 % on these.
    torch.manual_seed(0)
    x = torch.randn(1, 3, 64, 64)
    ours = _full_flops(torchvision.models.get_model(name).eval(), x)
    assert _thop(torchvision.models.get_model(name).eval(), x) == pytest.approx(ours, rel=0.01)


@pytest.mark.parametrize("name", ["mobilenet_v2", "resnet18", "mnasnet0_5"])
def test_full_width_flops_equal_thop_macs_exactly(name):
    # With thop's non-MAC hooks set to zero, thop counts exactly the conv/linear MACs (on
    # mobilenet_v2 its BatchNorm arithmetic alone is +8.5 %).
    torch.manual_seed(0)
    x = torch.randn(1, 3, 64, 64)
    ours = _full_flops(torchvision.models.get_model(name).eval(), x)
    assert _thop(torchvision.models.get_model(name).eval(), x, THOP_NOT_MACS) == ours


class ThopBlindSpots(nn.Module):
    """Work thop does not see: a functional conv, a matmul, SDPA, nn.MultiheadAttention, and a
    stride-2 transposed conv it overcounts."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(8, 3, 3, 3) * 0.1)
        self.up = nn.ConvTranspose2d(8, 8, 2, stride=2)
        self.mix = nn.Parameter(torch.randn(8, 8) * 0.1)
        self.mha = nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        h = F.relu(F.conv2d(x, self.weight, padding=1))       # (1, 8, 4, 4)
        h = self.up(h)                                         # (1, 8, 8, 8)
        t = h.flatten(2).transpose(1, 2) @ self.mix            # (1, 64, 8)
        q = t.unflatten(-1, (2, 4)).transpose(1, 2)            # (1, 2, 64, 4)
        a = F.scaled_dot_product_attention(q, q, q).transpose(1, 2).flatten(2)
        m, _ = self.mha(a, a, a)
        return self.head(m.mean(1))


def test_flops_count_what_thop_misses():
    torch.manual_seed(0)
    model = ThopBlindSpots().eval()
    x = torch.randn(1, 3, 4, 4)
    ours = _full_flops(model, x)
    counted, missed = counted_macs(model, (x,))
    # by hand: conv 8·27·16 = 3456; transposed 8·8·4·16 = 4096; matmul 64·8·8 = 4096;
    # SDPA 2 heads · 64 · 64 · (4 + 4) = 65536; MHA in-proj 3·64·8·8 = 12288, products
    # 2·64·64·8 = 65536, out-proj 64·64 = 4096; head 8·4 = 32
    assert ours == 3456 + 4096 + 4096 + 65536 + 12288 + 65536 + 4096 + 32
    assert ours == counted + missed and missed == 65536
    # thop sees the transposed conv (at output positions: 8·8·4·64 = 16384), the MHA out-proj
    # linear is invisible to it as part of the MHA, and the head: nothing else.
    assert _thop(model, x) == 16384 + 32


class TensorDotNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.proj = nn.Parameter(torch.randn(8, 5))
        self.head = nn.Linear(5, 2)

    def forward(self, x):
        t = torch.tensordot(torch.relu(self.conv(x)), self.proj, dims=([1], [0]))
        return self.head(t.mean((1, 2)))


def test_unknown_op_on_frozen_channels_is_measured_once():
    torch.manual_seed(0)
    slim = pareco_fx.make_slimmable(TensorDotNet().eval(), (torch.randn(2, 3, 8, 8),))
    assert not any(g.slimmable for g in slim.groups)  # tensordot has no channel rule: boundary
    full = slim.analysis.features(torch.ones(1, len(slim.groups)))
    macs = {name: poly.evaluate(full).item() for name, poly in flops.node_macs(slim.analysis).items()}
    # conv 8·27·64 = 13824, tensordot (measured) 64·8·5 = 2560, head 5·2 = 10
    assert macs == {"conv": 13824, "tensordot": 2560, "head": 10}
    # Compiled after the weights moved (to the meta device here, a GPU in use): the measuring run
    # follows the weights instead of failing on the CPU example inputs.
    moved = pareco_fx.make_slimmable(TensorDotNet().eval(), (torch.randn(2, 3, 8, 8),)).to("meta")
    assert moved.cost("flops") == slim.cost("flops") == 13824 + 2560 + 10


def test_unknown_ops_are_measured_alone_or_in_one_run_when_they_read_values(monkeypatch):
    class ValueReader(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.proj = nn.Parameter(torch.randn(8, 5))

        def forward(self, x):
            t = torch.tensordot(torch.relu(self.conv(x)), self.proj, dims=([1], [0]))
            g = t.flatten(1)
            # fails on the zero tensors of a node run alone (0 is not positive definite)
            return t.mean((1, 2)) * torch.linalg.cholesky(g @ g.T).diagonal()[:, None]

    torch.manual_seed(0)
    slim = pareco_fx.make_slimmable(ValueReader().eval(), (torch.randn(2, 3, 8, 8),))
    runs = []
    whole = flops._counted_in_run
    monkeypatch.setattr(flops, "_counted_in_run", lambda *a: runs.append(a) or whole(*a))
    full = slim.analysis.features(torch.ones(1, len(slim.groups)))
    macs = {name: poly.evaluate(full).item() for name, poly in flops.node_macs(slim.analysis).items()}
    assert len(runs) == 1  # the cholesky failed alone: one run of the whole graph measured both
    assert macs["tensordot"] == 64 * 8 * 5 and macs["conv"] == 8 * 27 * 64
    runs.clear()
    alone = pareco_fx.make_slimmable(TensorDotNet().eval(), (torch.randn(2, 3, 8, 8),))
    full = alone.analysis.features(torch.ones(1, len(alone.groups)))
    assert flops.node_macs(alone.analysis)["tensordot"].evaluate(full).item() == 64 * 8 * 5
    assert runs == []  # the unknown op ran alone


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_models_of_known_ops_compile_without_a_measuring_run(name, monkeypatch):
    # Norms, activations, adds, pooling and flatten count no MACs by rule, so compiling the
    # program needs no forward pass; the count still equals the per-node measurement.
    torch.manual_seed(0)
    slim = pareco_fx.make_slimmable(getattr(torchvision.models, name)().eval(), (torch.randn(1, 3, 64, 64),))
    measured = flops._measure(slim.analysis, [n for n in slim.analysis.gm.graph.nodes if n.op != "output"])
    ran = []
    monkeypatch.setattr(flops, "_measure", lambda analysis, nodes: ran.append(nodes) or {})
    full = slim.analysis.features(torch.ones(1, len(slim.groups)))
    macs = {node: poly.evaluate(full).item() for node, poly in flops.node_macs(slim.analysis).items()}
    assert ran == []
    assert sum(macs.values()) == sum(measured.values())
    assert {n.name: m for n, m in measured.items() if m} == {node: m for node, m in macs.items() if m}


def test_missing_formula_on_slimmable_shapes_names_the_node(monkeypatch):
    class FunctionalConv(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 8, 3, padding=1)
            self.weight = nn.Parameter(torch.randn(8, 8, 3, 3))
            self.head = nn.Conv2d(8, 2, 1)

        def forward(self, x):
            return self.head(F.conv2d(torch.relu(self.stem(x)), self.weight, padding=1))

    torch.manual_seed(0)
    slim = pareco_fx.make_slimmable(FunctionalConv().eval(), (torch.randn(2, 3, 8, 8),))
    assert any(g.slimmable for g in slim.groups)
    table = dict(flops.FLOP_FORMULAS._table)
    table.pop(F.conv2d)
    monkeypatch.setattr(flops.FLOP_FORMULAS, "_table", table)
    with pytest.raises(CostModelError, match=r"no FLOP formula for %conv2d.*36864 MACs.*flop_formula\(torch\.conv2d\)"):
        flops.node_macs(slim.analysis)


def test_duplicate_formula_is_rejected():
    with pytest.raises(CostModelError, match="already registered"):
        flops.flop_formula(nn.Conv2d)(lambda op: op)


def _ops_cases(names):
    for name in names:
        weights = torchvision.models.get_model_weights(name).DEFAULT
        if "_ops" in weights.meta:
            yield pytest.param(name, id=name)


def _check_published_ops(name: str) -> None:
    weights = torchvision.models.get_model_weights(name).DEFAULT
    size = weights.transforms().crop_size[0]
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None, **({"image_size": size} if name.startswith("vit") else {}))
    slim = pareco_fx.make_slimmable(model.eval(), (torch.randn(2, 3, size, size),))
    # _ops is published in GFLOPs to three decimals (shufflenet_v2_x0_5: 0.04 for 0.0405)
    assert slim.cost("flops", 1.0) / 1e9 == pytest.approx(weights.meta["_ops"], rel=0.01, abs=0.0005)
    # inception_v3's published count includes its auxiliary classifier, which eval mode never runs
    aux = sum(p.numel() for n, p in model.named_parameters() if n.startswith(UNUSED_IN_EVAL.get(name, "\0")))
    assert slim.cost("params", 1.0) == weights.meta["num_params"] - aux


UNUSED_IN_EVAL = {"inception_v3": "AuxLogits."}


@pytest.mark.parametrize("name", list(_ops_cases(["resnet18", "mobilenet_v2"])))
def test_full_width_flops_match_torchvision_ops(name):
    _check_published_ops(name)


@pytest.mark.zoo
@pytest.mark.parametrize("name", list(_ops_cases(torchvision.models.list_models(module=torchvision.models))))
def test_full_width_flops_match_torchvision_ops_zoo(name):
    _check_published_ops(name)

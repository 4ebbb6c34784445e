"""Tracing: leaf policy, fallback leaves for untraceable submodules, clear errors."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import pareco_fx
from pareco_fx.errors import TraceError
from pareco_fx.ir import META_VALUE
from pareco_fx.trace import private_copy, trace


class Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # data-dependent control flow
            return self.conv(x)
        return x


class WithUntraceablePart(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3)
        self.b = Untraceable()
        self.c = nn.Conv2d(8, 16, 3)
        self.d = nn.Conv2d(16, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.d(torch.relu(self.c(self.b(self.a(x)))))


def test_untraceable_submodule_becomes_a_frozen_leaf():
    model = WithUntraceablePart().eval()
    x = torch.randn(2, 3, 12, 12)
    slim = pareco_fx.make_slimmable(model, (x,))
    frozen = [g for g in slim.groups if "a" in g.members]
    assert frozen and not frozen[0].slimmable and "could not be traced" in frozen[0].reason
    c = next(g for g in slim.groups if "c" in g.members)
    assert c.slimmable
    slim.eval()
    slim.set_widths(0.5)
    with torch.no_grad():
        assert torch.allclose(slim.extract()(x), slim(x), atol=1e-5)


def test_trace_needs_only_an_iterable_from_reversed_nodes(monkeypatch):
    """torch 2.11's ``reversed(graph.nodes)`` is an iterable, not an iterator (2.14's is one); the
    tracer once called ``next`` on it and failed on every model there."""
    from torch.fx.graph import _node_list

    reverse = _node_list.__reversed__

    class Reversed:  # iterable only
        def __init__(self, nodes: _node_list) -> None:
            self.nodes = nodes

        def __iter__(self):
            return iter(reverse(self.nodes))

    monkeypatch.setattr(_node_list, "__reversed__", lambda self: Reversed(self))
    model = WithUntraceablePart().eval()
    gm = trace(model, (torch.randn(2, 3, 12, 12),))
    assert gm.meta["pareco.fallback_leaves"].keys() == {"b"}
    assert [n.target for n in gm.graph.nodes if n.op == "call_module"] == ["a", "b", "c", "d"]


def test_untraceable_model_names_the_line():
    with pytest.raises(TraceError, match=r"test_trace.py:\d+ in forward: `if x.sum\(\) > 0:.*register_leaf"):
        trace(Untraceable(), (torch.randn(1, 8, 4, 4),))


def test_registered_leaf_is_not_traced_into():
    class Block(nn.Module):
        def forward(self, x):
            return x * 2

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.block = Block()

        def forward(self, x):
            return self.block(x)

    pareco_fx.trace.register_leaf(Block)
    gm = trace(M(), (torch.randn(1, 2),))
    assert [n.op for n in gm.graph.nodes] == ["placeholder", "call_module", "output"]


def test_values_and_shapes_at_batch_one():
    class M(nn.Module):
        def forward(self, x):
            return x.view(x.size(0), -1)

    gm = trace(M(), (torch.randn(5, 2, 3),))
    size = next(n for n in gm.graph.nodes if n.target == "size")
    assert size.meta[META_VALUE] == 1
    out = next(n for n in gm.graph.nodes if n.target == "view")
    assert tuple(out.meta["tensor_meta"].shape) == (1, 6)


class Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4)
        self.b.weight = self.a.weight
        self.register_buffer("table", torch.arange(8.0))
        self.register_buffer("head", self.table[:4])  # a view of another buffer


def test_private_copy_keeps_sharing_and_never_aliases():
    model = Tied()
    copy = private_copy(model)
    assert copy.a.weight is copy.b.weight and copy.a.weight is not model.a.weight
    copy.table.add_(1)  # the view follows its base in the copy, the original stays
    assert torch.equal(copy.head, torch.arange(1.0, 5.0))
    assert torch.equal(model.table, torch.arange(8.0))
    with torch.no_grad():
        model.a.weight.zero_()
    assert copy.a.weight.abs().sum() > 0


class OwnCopy(nn.Linear):
    copies = 0

    def __deepcopy__(self, memo: dict) -> "OwnCopy":
        OwnCopy.copies += 1
        new = OwnCopy(self.in_features, self.out_features)
        new.load_state_dict(self.state_dict())
        return new


class Assorted(nn.Module):
    """What a model may hold besides parameters: a module used twice, a hook, containers, a plain
    tensor attribute, a module that copies itself its own way."""

    def __init__(self) -> None:
        super().__init__()
        self.shared = nn.Conv2d(3, 3, 1)
        self.path = nn.Sequential(self.shared, nn.ReLU(), self.shared)
        self.own = OwnCopy(3, 2)
        self.sizes, self.scale, self.table = [1, 2, [3]], torch.tensor(2.0), {"k": (4, 5)}
        self.shared.register_forward_hook(_double)


def _double(module: nn.Module, args: tuple, out: torch.Tensor) -> torch.Tensor:
    return out * 2


def test_private_copy_matches_deepcopy():
    model = Assorted()
    before = OwnCopy.copies
    copy = private_copy(model)
    assert OwnCopy.copies == before + 1  # its own __deepcopy__ was honoured
    assert copy.path[0] is copy.path[2] is copy.shared is not model.shared
    assert copy.sizes == model.sizes and copy.sizes is not model.sizes and copy.sizes[2] is not model.sizes[2]
    assert copy.table == model.table and copy.table is not model.table
    assert torch.equal(copy.scale, model.scale) and copy.scale is not model.scale
    assert [type(m) for m in copy.modules()] == [type(m) for m in model.modules()]
    assert copy.state_dict().keys() == model.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(copy.state_dict().values(), model.state_dict().values()))
    x = torch.randn(1, 3, 4, 4)
    assert torch.equal(copy.path(x), model.path(x))  # the hook came along
    copy.sizes[2].append(9)
    assert model.sizes == [1, 2, [3]]

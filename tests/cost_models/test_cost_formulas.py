"""The shape-only FLOP formulas against FlopCounterMode on concrete tensors.

Each formula is fed SymTensors with constant sizes (what the analysis gives at full width) and
must give FlopCounterMode's MACs of the same call, except where FlopCounterMode is known to
miss work (named in the tests below): ``torch.mv``/``dot`` reached through ``matmul`` with a
1-D operand, and ``scaled_dot_product_attention`` on the CPU.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from pareco_fx.cost_models.flops import _einsum_macs, _matmul_macs
from pareco_fx.ir import Poly, SymTensor


def _sym(t: torch.Tensor) -> SymTensor:
    return SymTensor(tuple(t.shape), tuple(Poly.const(d) for d in t.shape), 0, t.numel())


def _counted(fn, *args) -> float:
    with torch.enable_grad(), FlopCounterMode(display=False) as counter:
        fn(*args)
    return counter.get_total_flops() / 2


@pytest.mark.parametrize("a, b", [
    ((4, 5), (5, 6)),
    ((5,), (5, 6)),
    ((2, 4, 5), (5, 6)),
    ((2, 1, 4, 5), (3, 5, 6)),     # broadcast batch axes
    ((7, 4, 5), (7, 5, 2)),
    ((1, 3, 4, 5), (2, 1, 5, 6)),  # both sides broadcast
])
def test_matmul_formula_equals_flop_counter(a, b):
    x, y = torch.randn(a), torch.randn(b)
    assert _matmul_macs(_sym(x), _sym(y)).value_const() == _counted(torch.matmul, x, y)


@pytest.mark.parametrize("a, b, macs", [((3,), (3,), 3), ((4, 5), (5,), 20), ((2, 4, 5), (5,), 40)])
def test_matmul_with_a_vector_counts_what_flop_counter_misses(a, b, macs):
    # FlopCounterMode has no formula for aten.mv / aten.dot: it counts 0 where 4·5 MACs are done.
    x, y = torch.randn(a), torch.randn(b)
    assert _counted(torch.matmul, x, y) == 0
    assert _matmul_macs(_sym(x), _sym(y)).value_const() == macs


@pytest.mark.parametrize("equation, shapes", [
    ("ij,jk->ik", [(3, 4), (4, 5)]),
    ("ij,jk", [(3, 4), (4, 5)]),                                # implicit output
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
    ("bhqd,bhkd->bhqk", [(1, 2, 5, 4), (1, 2, 6, 4)]),
    ("bhqk,bhkd->bhqd", [(1, 2, 5, 6), (1, 2, 6, 4)]),
    ("ij,ij->ij", [(3, 4), (3, 4)]),                            # element-wise: a "batched" product
    ("ij,kl->ijkl", [(2, 3), (4, 5)]),                          # outer product
    ("ijk,jl->il", [(2, 3, 4), (3, 5)]),                        # k summed out first: no MACs for it
    ("...ij,...jk->...ik", [(2, 3, 4, 5), (5, 6)]),             # ellipsis, broadcast
    ("b...d,bd->b...", [(2, 3, 4, 6), (2, 6)]),
    ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 5)]),                 # left to right: (ij,jk)->ik then (ik,kl)
    ("bn,anm,bm->ba", [(2, 3), (4, 3, 5), (2, 5)]),             # bilinear form
    ("ii->i", [(3, 3)]),                                        # one operand: no product
])
def test_einsum_formula_equals_flop_counter(equation, shapes):
    ops = [torch.randn(s) for s in shapes]
    expect = _counted(lambda *t: torch.einsum(equation, *t), *ops)
    assert _einsum_macs(equation, [_sym(t) for t in ops]).value_const() == expect


def test_einsum_formula_is_symbolic_in_the_contracted_sizes():
    # q (1, heads, L, d) · k (1, heads, S, d): L·S·heads·d MACs, d = 4·f0 active channels
    d = 4 * Poly.var(0)
    q = SymTensor((1, 2, 5, 8), (Poly.const(1), Poly.const(2), Poly.const(5), d), 0, 80)
    k = SymTensor((1, 2, 6, 8), (Poly.const(1), Poly.const(2), Poly.const(6), d), 1, 96)
    macs = _einsum_macs("bhqd,bhkd->bhqk", [q, k])
    assert macs.terms == {(0,): 2 * 5 * 6 * 4}


def test_sdpa_is_missed_by_flop_counter_on_cpu():
    # Why the flops cost adds attention products itself: on the CPU, SDPA dispatches to
    # aten._scaled_dot_product_flash_attention_for_cpu, which FlopCounterMode does not count.
    q = torch.randn(1, 2, 5, 4, requires_grad=True)
    assert _counted(F.scaled_dot_product_attention, q, q, q) == 0

"""CostProgram evaluation and the cost-model registry, on hand-built polynomials."""
from __future__ import annotations

import gc

import pytest
import torch

from pareco_fx import cost_models
from pareco_fx.cost_models import CostProgram, program
from pareco_fx.errors import CostModelError
from pareco_fx.ir import Poly

x0, x1, x2 = Poly.var(0), Poly.var(1), Poly.var(2)


def _feats(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


def test_sum_program_adds_every_degree():
    # 5 + 2·x0 + 3·x0·x1 + x1² + 0.5·x0·x1·x2
    polys = [Poly.const(5) + 2 * x0, 3 * x0 * x1, x1 * x1 + 0.5 * x0 * x1 * x2]
    prog = CostProgram(polys, num_features=3)
    F = _feats([[1, 2, 3], [4, 0, 7], [0.5, 8, 2]])
    expect = [5 + 2 + 3 * 2 + 4 + 0.5 * 6, 5 + 8 + 0 + 0 + 0, 5 + 1 + 3 * 4 + 64 + 0.5 * 8]
    assert prog(F).tolist() == expect
    assert prog.peak_node(F) is None
    assert sum(polys, Poly()).evaluate(F).tolist() == expect


def test_max_program_takes_max_per_row_and_names_the_peak():
    # a = 10·x0 (large when x0 is large), b = x1·x2 + 1, c = 7 (a floor)
    prog = CostProgram([10 * x0, x1 * x2 + 1, Poly.const(7)], num_features=3, reduce="max", names=["a", "b", "c"])
    F = _feats([[1, 2, 3], [0.1, 1, 1], [0.1, 3, 3], [0.5, 2, 2]])
    assert prog(F).tolist() == [10, 7, 10, 7]
    assert prog.peak_node(F) == ["a", "c", "b", "c"]


def test_max_program_ties_resolve_to_the_first_node():
    prog = CostProgram([x0, x0, x1], num_features=2, reduce="max", names=["first", "second", "third"])
    assert prog.peak_node(_feats([[2, 1]])) == ["first"]


def test_programs_match_poly_evaluate_on_random_features():
    gen = torch.Generator().manual_seed(0)
    polys = [Poly.const(float(i)) + (i + 1) * x0 * x1 + x2 * (i % 3) + x0 * x1 * x2 + (i % 5) * x2 * x2
             for i in range(40)]
    F = torch.rand(64, 3, generator=gen, dtype=torch.float64) * 100
    every = torch.stack([p.evaluate(F) for p in polys], dim=1)
    peak = CostProgram(polys, num_features=3, reduce="max", names=[str(i) for i in range(40)])
    torch.testing.assert_close(peak(F), every.max(dim=1).values, rtol=1e-12, atol=0)
    assert peak.peak_node(F) == [str(i) for i in every.argmax(dim=1).tolist()]
    total = CostProgram(polys, num_features=3)
    torch.testing.assert_close(total(F), every.sum(dim=1), rtol=1e-12, atol=0)


def test_max_program_drops_dominated_columns_only():
    # b <= a coefficient-wise (dropped), c ties a (dropped: a comes first), d is largest only
    # when x1 is large (kept).
    a, b, c, d = 2 * x0 + 3, x0 + 3, 2 * x0 + 3, 10 * x1
    prog = CostProgram([a, b, c, d], num_features=2, reduce="max", names=["a", "b", "c", "d"])
    assert "columns=2/4" in repr(prog)
    F = _feats([[5, 0], [1, 3]])
    assert prog(F).tolist() == [13, 30] and prog.peak_node(F) == ["a", "d"]


def test_box_pruned_columns_give_the_exact_peak_inside_and_outside_the_box():
    # a = 10·x0 + x1, b = x0·x1, c = 50 each can be the peak in the box x0, x1 in [4, 8]
    # (a in [44, 88], b in [16, 64]).
    gen = torch.Generator().manual_seed(1)
    polys = [10 * x0 + x1, x0 * x1, Poly.const(50), x0 + x1, 2 * x0 + 5 + 0 * x1]
    names = ["a", "b", "c", "d", "e"]
    box = (torch.tensor([4.0, 4.0]), torch.tensor([8.0, 8.0]))
    prog = CostProgram(polys, num_features=2, reduce="max", names=names, box=box)
    # d = x0 + x1 <= a everywhere (coefficients); e = 2·x0 + 5 <= a = 10·x0 + x1 inside the box
    # (interval bound of a - e: 8·4 + 4 - 5 >= 0) but not for all features: dropped only there.
    assert "columns=4/5, in box 3" in repr(prog)
    inside = torch.rand(256, 2, generator=gen, dtype=torch.float64) * 4 + 4
    outside = torch.rand(256, 2, generator=gen, dtype=torch.float64) * 20
    for F in (inside, outside):
        every = torch.stack([p.evaluate(F) for p in polys], dim=1)
        assert torch.equal(prog(F), every.max(dim=1).values)
        assert prog.peak_node(F) == [names[i] for i in every.argmax(dim=1).tolist()]


def _dominance_reference(polys: list[Poly], box: tuple[torch.Tensor, torch.Tensor] | None) -> list[int]:
    """The undominated polynomials by the definition, every pair over every monomial."""
    monos = sorted({m for p in polys for m in p.terms})
    coef = torch.tensor([[p.terms.get(m, 0.0) for m in monos] for p in polys], dtype=torch.float64)
    diff = coef[:, None] - coef[None, :]  # [k, j, monomial]
    if box is None:
        never_below = (diff >= 0).all(dim=2)
    else:
        low, high = ([float(Poly._of({m: 1.0}).evaluate(b[None])[0]) if m else 1.0 for m in monos] for b in box)
        low, high = torch.tensor(low, dtype=torch.float64), torch.tensor(high, dtype=torch.float64)
        never_below = torch.where(diff > 0, diff * low, diff * high).sum(dim=2) >= 0
    order = torch.arange(len(polys))
    beaten = (never_below & (~never_below.T | (order[:, None] < order))).any(dim=0)
    return torch.nonzero(~beaten).flatten().tolist()


@pytest.mark.parametrize("seed", range(6))
def test_dominance_pruning_keeps_exactly_the_polynomials_no_other_beats(seed):
    # Small integer coefficients (some negative) and an integer box: every sum is exact, so the
    # pruning's sparse pair test must agree with the dense definition pair for pair.
    gen = torch.Generator().manual_seed(seed)
    monos = [(), (0,), (1,), (2,), (0, 1), (1, 2), (0, 0)]
    polys = []
    for _ in range(60):
        chosen = torch.randperm(len(monos), generator=gen)[: int(torch.randint(1, 4, (1,), generator=gen))]
        values = torch.randint(-2, 9, (len(chosen),), generator=gen).tolist()
        polys.append(Poly({monos[i]: float(v) for i, v in zip(chosen.tolist(), values)}))
    box = (torch.tensor([1.0, 2.0, 0.0], dtype=torch.float64), torch.tensor([3.0, 5.0, 4.0], dtype=torch.float64))
    kept = program._undominated(polys)
    assert kept == _dominance_reference(polys, None)
    boxed = [kept[i] for i in program._undominated([polys[i] for i in kept], box)]
    assert boxed == [kept[i] for i in _dominance_reference([polys[i] for i in kept], box)]
    assert len(boxed) < len(kept) < len(polys)  # both tests drop something here


def test_program_keeps_float32_inputs_in_their_dtype():
    prog = CostProgram([3 * x0 * x1], num_features=2)
    out = prog(torch.tensor([[2.0, 5.0]]))
    assert out.dtype == torch.float32 and out.tolist() == [30.0]


def test_program_rejects_bad_shapes_and_arguments():
    prog = CostProgram([x0], num_features=2)
    with pytest.raises(CostModelError, match=r"\[B, 2\]"):
        prog(torch.ones(4, 3, dtype=torch.float64))
    with pytest.raises(CostModelError, match="feature 2"):
        CostProgram([x2], num_features=2)
    with pytest.raises(CostModelError, match="one name per"):
        CostProgram([x0, x1], num_features=2, reduce="max")
    with pytest.raises(CostModelError, match="'sum' or 'max'"):
        CostProgram([x0], num_features=2, reduce="mean")  # type: ignore[arg-type]


class _Analysis:
    """The least an analysis must offer a user cost model here: its feature count."""

    num_features = 2


@pytest.fixture
def scratch_name():
    name = "test_scratch_cost"
    yield name
    cost_models.base._MODELS.pop(name, None)


def test_builtin_models_are_registered():
    assert {"flops", "memory", "params"} <= set(cost_models.available())


def test_unknown_name_lists_the_available_ones():
    with pytest.raises(CostModelError) as info:
        cost_models.get("latency_on_the_moon")
    msg = str(info.value)
    assert "latency_on_the_moon" in msg and "flops, memory, params" in msg and "register" in msg
    with pytest.raises(CostModelError, match="unknown cost model"):
        cost_models.compile("nope", _Analysis())


def test_register_rejects_duplicates_unless_overwrite(scratch_name):
    cost_models.register(scratch_name, lambda a: 2 * x0)
    with pytest.raises(CostModelError, match="already registered"):
        cost_models.register(scratch_name, lambda a: 3 * x0)
    with pytest.raises(CostModelError, match="already registered"):
        cost_models.register("flops", lambda a: x0)
    analysis = _Analysis()
    F = _feats([[4, 0]])
    assert cost_models.compile(scratch_name, analysis)(F).tolist() == [8]
    cost_models.register(scratch_name, lambda a: 3 * x0, overwrite=True)
    # the cached program of the old model is dropped on overwrite
    assert cost_models.compile(scratch_name, analysis)(F).tolist() == [12]


def test_register_accepts_functions_classes_and_objects(scratch_name):
    class PeakOfTwo:
        def compile(self, analysis):
            return CostProgram([x0, x1], num_features=analysis.num_features, reduce="max", names=["u", "v"])

    F = _feats([[1, 5], [7, 2]])
    for model in (PeakOfTwo, PeakOfTwo(), lambda a: PeakOfTwo().compile(a)):
        cost_models.register(scratch_name, model, overwrite=True)
        prog = cost_models.compile(scratch_name, _Analysis())
        assert prog(F).tolist() == [5, 7] and prog.peak_node(F) == ["v", "u"]


def test_register_rejects_unusable_models(scratch_name):
    with pytest.raises(CostModelError, match="compile"):
        cost_models.register(scratch_name, 42)  # type: ignore[arg-type]

    class NoCompile:
        pass

    with pytest.raises(CostModelError, match="no compile"):
        cost_models.register(scratch_name, NoCompile)
    with pytest.raises(CostModelError, match="non-empty string"):
        cost_models.register("", lambda a: x0)
    cost_models.register(scratch_name, lambda a: "not a cost")
    with pytest.raises(CostModelError, match="return a CostProgram or a Poly"):
        cost_models.compile(scratch_name, _Analysis())


def test_compile_caches_per_analysis(scratch_name):
    calls = []

    def model(analysis):
        calls.append(analysis)
        return x0 + x1

    cost_models.register(scratch_name, model)
    a, b = _Analysis(), _Analysis()
    assert cost_models.compile(scratch_name, a) is cost_models.compile(scratch_name, a)
    assert cost_models.compile(scratch_name, b) is not cost_models.compile(scratch_name, a)
    assert len(calls) == 2
    key = id(a)
    del a, calls[:]
    gc.collect()
    assert key not in cost_models.base._CACHE  # a dead analysis frees its programs

"""Property test: on random architectures (``tests/archgen.py``) the invariants of DESIGN.md hold.

Hypothesis draws the architectures (seeded, ``derandomize=True``: the same 50 every run); each
is checked at the smallest, a random and the largest widths. ``benchmarks/fuzz.py`` runs the
same check on >= 1,000 seeded architectures; every failure either ever finds is kept below as a
named regression.
"""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from archgen import Arch, Op, architectures, build
from invariants import check_invariants

# name -> architecture that once broke an invariant (from fuzz.json or a hypothesis report)
REGRESSIONS: dict[str, Arch] = {
    # fuzz seed 96, shrunk: a one-channel tensor flattened into the head ("did not settle")
    "one_channel_flatten": Arch(3, 4, (Op("conv", (0,), (1, 1, 1)),), True, 0, 3),
    # fuzz seeds 23/36, shrunk: a split into one-channel pieces ("did not settle")
    "split_off_one_channel": Arch(3, 4, (Op("conv", (0,), (2, 3, 1)), Op("split", (1,), (1,))), False, 0, 10),
    # fuzz seed 13, shrunk: a shuffle of a shuffle read an erased node (UnboundLocalError)
    "double_shuffle": Arch(3, 8, (Op("conv", (0,), (12, 1, 1)), Op("shuffle", (1,), (3,)),
                                  Op("shuffle", (2,), (3,))), False, 0, 10),
    # the input chain of a ShuffleNet unit: split, branch, cat, shuffle, then split again
    "split_cat_shuffle_split": Arch(3, 8, (
        Op("conv", (0,), (8, 3, 1)), Op("split", (1,), (4,)), Op("conv", (3,), (4, 1, 1)),
        Op("cat", (2, 4)), Op("shuffle", (5,), (2,)), Op("chunk", (6,), (2,)), Op("dw", (8,), (1,)),
        Op("cat", (7, 9)),
    ), False, 0, 10),
}


@settings(max_examples=50, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(arch=architectures(max_ops=10, max_channels=16))
def test_random_architecture_keeps_invariants(arch: Arch) -> None:
    checked = check_invariants(build(arch), arch.example_inputs(), trials=("min", "random", "max"))
    assert len(checked.widths) == 3  # every trial ran (the invariants are asserted inside)


@pytest.mark.parametrize("name", sorted(REGRESSIONS))
def test_regression(name: str) -> None:
    arch = REGRESSIONS[name]
    checked = check_invariants(build(arch), arch.example_inputs(), trials=("min", "random", "max"))
    assert len(checked.widths) == 3  # every trial ran (the invariants are asserted inside)

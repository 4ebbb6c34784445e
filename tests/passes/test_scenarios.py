"""Scenario tests: one fixture per graph pattern (``tests/scenarios.py``), each checked for the
invariants of DESIGN.md and for the exact groups its pattern must produce."""
from __future__ import annotations

import pytest
import torch

from invariants import check_expect, check_invariants
from scenarios import SCENARIOS


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario(name: str) -> None:
    scenario = SCENARIOS[name]
    torch.manual_seed(0)
    checked = check_invariants(scenario.factory(), scenario.inputs(), seed=len(name))
    check_expect(checked.slim, scenario.expect)
    assert all(g.reason for g in checked.slim.groups if not g.slimmable)

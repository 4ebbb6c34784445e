"""Helpers of the CLI tests: run `pareco-fx` in-process with click's CliRunner."""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Callable

import pytest
from click.testing import CliRunner, Result

from pareco_fx.cli.main import cli

# A small CNN whose groups and costs are easy to compute by hand.
TINY_CNN = """
import torch
from torch import nn


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3)
        self.conv2 = nn.Conv2d(8, 16, 3)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        return self.fc(torch.flatten(self.pool(x), 1))


def model():
    return Tiny()


def example_inputs():
    return (torch.randn(2, 3, 12, 12),)
"""


def invoke(*args: str) -> Result:
    """Run the CLI; wide columns so that rich does not wrap lines."""
    return CliRunner().invoke(cli, list(args), env={"COLUMNS": "250"}, catch_exceptions=False)


@pytest.fixture
def run_cli() -> Callable[..., Result]:
    return invoke


@pytest.fixture
def model_file(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write a model file into tmp_path and return its path."""

    def write(text: str = TINY_CNN, name: str = "tiny.py") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path

    return write

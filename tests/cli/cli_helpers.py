"""Helpers shared by the CLI tests: run `pareco-fx` in-process, snapshot files, check errors."""
from __future__ import annotations

from pathlib import Path

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


def state(tmp_path: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under tmp_path with its bytes and modification time."""
    return {str(p): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(tmp_path.rglob("*")) if p.is_file()}


def assert_one_line_error(result, message: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert message in lines[0], lines[0]
    assert "Traceback" not in result.stderr and result.stdout == ""

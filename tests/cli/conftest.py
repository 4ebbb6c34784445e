"""Fixtures of the CLI tests."""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Callable

import pytest
from click.testing import Result

from cli_helpers import TINY_CNN, invoke


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

"""Test set-up: the helper modules in tests/ import by name from every sub-folder, and each
pytest-xdist worker keeps to one thread so that workers do not oversubscribe the cores."""
from __future__ import annotations

import os
import sys

import torch

sys.path.append(os.path.dirname(os.path.abspath(__file__)))

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)

"""``python -m pareco_fx`` (also what ``torchrun -m pareco_fx`` runs): the pareco-fx CLI."""
from __future__ import annotations

from pareco_fx.cli.main import cli

if __name__ == "__main__":
    cli(prog_name="pareco-fx")

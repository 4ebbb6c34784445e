"""The error tree of pareco-fx.

Every error names what went wrong, where (the node or file) and what to do about it, so the CLI
can print it as one line.
"""
from __future__ import annotations

__all__ = [
    "ParecoError",
    "TraceError",
    "AnalysisError",
    "WidthError",
    "CostModelError",
    "UserInputError",
    "CheckpointError",
]


class ParecoError(Exception):
    """Base class of every error pareco-fx raises on purpose."""


class TraceError(ParecoError):
    """The model cannot be traced by torch.fx, not even with leaf fallbacks."""


class AnalysisError(ParecoError):
    """A pass met a graph it cannot handle (the message names the node, the pass and the fix)."""


class WidthError(ParecoError, ValueError):
    """A width vector is malformed: wrong length, NaN, or out of range."""


class CostModelError(ParecoError, KeyError):
    """An unknown or invalid cost model."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0]) if self.args else ""


class UserInputError(ParecoError):
    """Bad user input: model file, data directory, options."""


class CheckpointError(ParecoError):
    """A checkpoint or run directory is missing, truncated or foreign."""

"""``params``: parameter elements of the extracted model (``nn.Parameter``s; buffers excluded).

Every distinct parameter once (``analysis.param_syms``: a module used twice appears once), at
its active shape.
"""
from __future__ import annotations

from typing import Any

from pareco_fx.ir import Poly, prod

__all__ = ["param_numel", "Params"]


def param_numel(analysis: Any) -> Poly:
    """Active parameter elements as a Poly of the features."""
    return sum((prod(shape) for shape in analysis.param_syms.values()), Poly())


class Params:
    """The ``params`` cost model."""

    def compile(self, analysis: Any) -> Poly:
        return param_numel(analysis)

"""Channel labels of tensor values.

Every channel the model creates gets a global integer id (>= 1); ``FIXED`` (0) marks a position
whose size never changes (model inputs, constants, padding). A tensor's :class:`Layout` holds its
labels either *factored* — one channel axis and the label of each index along it, every other
axis unlabeled — or *raw*, one label per element (parameters used directly, before their channel
axes are known). Activations are always factored: the pass ties labels until they are.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

__all__ = ["FIXED", "LABEL_DTYPE", "Layout", "varying_axes", "leaves", "map_layouts", "META_LAYER", "META_KIND", "META_GATHER"]

FIXED = 0
LABEL_DTYPE = torch.int32  # half the memory traffic of int64 on large activations

META_LAYER = "pareco.layer"    # dict of label vectors a layer slices its parameters by
META_KIND = "pareco.kind"      # the rule family that handled the node ("movement", "layer", …)
META_GATHER = "pareco.gather"  # (source node, axis, permutation): a channel shuffle done as one gather


@dataclass(frozen=True)
class Layout:
    """Labels of one tensor value (shape at batch size 1)."""

    shape: tuple[int, ...]
    axis: int | None = None           # factored channel axis (non-negative)
    vec: torch.Tensor | None = None   # labels along ``axis``
    raw: torch.Tensor | None = None   # per-element labels (when not factored)
    const: int = FIXED                # the one label of every element of an unfactored tensor

    @staticmethod
    def fixed(shape: tuple[int, ...]) -> "Layout":
        return Layout(tuple(shape))

    @staticmethod
    def along(shape: tuple[int, ...], axis: int, vec: torch.Tensor) -> "Layout":
        axis = axis % len(shape)
        assert vec.numel() == shape[axis], (shape, axis, vec.numel())
        if not bool((vec != FIXED).any()):
            return Layout(tuple(shape))
        return Layout(tuple(shape), axis, vec)

    @property
    def labeled(self) -> bool:
        return self.axis is not None or self.raw is not None

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def materialize(self) -> torch.Tensor:
        """Per-element labels (an expanded view where possible)."""
        if self.raw is not None:
            return self.raw
        if self.axis is None:
            return torch.full(self.shape, self.const, dtype=LABEL_DTYPE)
        view = [1] * len(self.shape)
        view[self.axis] = -1
        return self.vec.view(view).expand(self.shape)

    def with_shape(self, shape: tuple[int, ...], axis: int | None) -> "Layout":
        """Same labels moved to another axis of a tensor of ``shape`` (same size along it)."""
        if self.axis is None or axis is None:
            return Layout.fixed(shape)
        return Layout.along(shape, axis, self.vec)


def varying_axes(t: torch.Tensor) -> list[int]:
    """Axes along which the labels of ``t`` change."""
    # an expanded axis (stride 0) repeats one slice: no need to compare it
    return [d for d in range(t.dim()) if t.shape[d] > 1 and t.stride(d) != 0
            and not torch.equal(t, t.narrow(d, 0, 1).expand_as(t))]


def leaves(tree: Any) -> list:
    """Leaves of a tuple/list/dict pytree, in fx's map_aggregate order."""
    if isinstance(tree, (tuple, list)):
        return [x for t in tree for x in leaves(t)]
    if isinstance(tree, dict):
        return [x for t in tree.values() for x in leaves(t)]
    return [tree]


def map_layouts(tree: Any, fn: Callable[[Layout], Any]) -> Any:
    if isinstance(tree, Layout):
        return fn(tree)
    if isinstance(tree, (tuple, list)):
        return type(tree)(map_layouts(t, fn) for t in tree) if not hasattr(tree, "_fields") else \
            type(tree)(*(map_layouts(t, fn) for t in tree))
    if isinstance(tree, dict):
        return {k: map_layouts(v, fn) for k, v in tree.items()}
    return tree

"""The slimmable runtime: width state and slimmable layers.

Each layer keeps its full parameters and, on every call, reads the active channels of its input
and output from the :class:`WidthState` — a slice (a view, no copy) where the active channels are
a contiguous range, a gather otherwise. Slimmable layers are the original classes with the
forward swapped (``SlimConv2d`` is an ``nn.Conv2d``), so parameter names, ``isinstance`` checks
and BatchNorm recalibration code keep working.
"""
from __future__ import annotations

import copy
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from pareco_fx.ir import Poly

__all__ = [
    "WidthState", "active_positions", "take", "make_slim", "SlicedTensor", "ChannelGather", "param_shapes",
    "extract_module", "SLIM_CLASSES",
]

Index = slice | torch.Tensor


def active_positions(gid: np.ndarray, rank: np.ndarray, units: np.ndarray) -> np.ndarray:
    """Positions of a label vector whose unit is active (fixed positions always are)."""
    fixed = gid < 0
    return np.flatnonzero(fixed | (rank < units[np.where(fixed, 0, gid)]))


def _as_index(pos: np.ndarray, n: int) -> Index:
    if len(pos) and pos[-1] - pos[0] + 1 == len(pos):
        return slice(int(pos[0]), int(pos[-1]) + 1)
    if not len(pos):
        return slice(0, 0)
    return torch.from_numpy(pos.astype(np.int64))


def take(t: torch.Tensor, dim: int, ix: Index) -> torch.Tensor:
    """``t`` restricted to positions ``ix`` along ``dim``: a view for slices, a gather otherwise."""
    if isinstance(ix, slice):
        if ix.start == 0 and ix.stop == t.shape[dim]:
            return t
        return t.narrow(dim, ix.start, ix.stop - ix.start)
    return t.index_select(dim, ix.to(t.device))


class WidthState:
    """Active positions of every registered label vector at the widths in force."""

    def __init__(self, analysis: Any):
        self.analysis = analysis
        self._vecs: list[Any] = []
        self._resolved: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]] = []
        self._key: dict[int, int] = {}
        self.index: list[Index] = []
        self.count: list[int] = []
        self.units = np.array([g.units for g in analysis.groups], dtype=np.int64)

    def key(self, vec: torch.Tensor) -> int:
        """Register a label vector (idempotent); its index and count follow the widths."""
        k = self._key.get(id(vec))
        if k is not None and self._vecs[k] is vec:
            return k
        self._key[id(vec)] = len(self._vecs)
        return self._add(vec, *self.analysis.resolve(vec), None)

    def gather_key(self, src: torch.Tensor, perm: np.ndarray) -> int:
        """Register a channel permutation of ``src``: its index maps the permuted active
        channels to positions in the *compact* source (a channel shuffle as one gather)."""
        return self._add((src, perm), *self.analysis.resolve(src), np.asarray(perm))

    def _add(self, obj: Any, gid: np.ndarray, rank: np.ndarray, perm: np.ndarray | None) -> int:
        k = len(self._vecs)
        self._vecs.append(obj)
        self._resolved.append((gid, rank, perm))
        self.index.append(slice(0, 0))
        self.count.append(0)
        self._update(k)
        return k

    def _update(self, k: int) -> None:
        gid, rank, perm = self._resolved[k]
        pos = active_positions(gid, rank, self.units)
        if perm is not None:
            compact = np.full(len(gid), -1, dtype=np.int64)
            compact[pos] = np.arange(len(pos))
            pos = compact[perm][compact[perm] >= 0]
            self.index[k] = torch.from_numpy(pos)
        else:
            self.index[k] = _as_index(pos, len(gid))
        self.count[k] = len(pos)

    def set_units(self, units: np.ndarray) -> None:
        self.units = np.asarray(units, dtype=np.int64)
        for k in range(len(self._vecs)):
            self._update(k)


# --------------------------------------------------------------------------------------------
# Slimmable layers
# --------------------------------------------------------------------------------------------

class _Slim:
    """Mixin: a layer that slices its parameters by label vectors registered in a WidthState."""

    _pareco: WidthState
    _pareco_keys: dict[str, int]
    _pareco_layer: dict[str, Any]
    _pareco_base: type

    def _ix(self, role: str) -> Index:
        return self._pareco.index[self._pareco_keys[role]]

    def _n(self, role: str) -> int:
        return self._pareco.count[self._pareco_keys[role]]

    def _has(self, role: str) -> bool:
        return role in self._pareco_keys

    def _sliced(self) -> dict[str, torch.Tensor | None]:
        """Active parameters and buffers by name (views where possible)."""
        raise NotImplementedError

    def _attrs(self) -> dict[str, Any]:
        """Constructor-level attributes of the physically smaller layer."""
        return {}


class _SlimConv(_Slim):
    def _sliced(self) -> dict:
        w, b = self.weight, self.bias
        transposed = isinstance(self, nn.modules.conv._ConvTransposeNd)
        o_dim, i_dim = (1, 0) if transposed else (0, 1)
        if self.groups == 1:
            w = take(take(w, o_dim, self._ix("out")), i_dim, self._ix("inp"))
        else:  # whole conv groups: slice along the dim that holds all groups
            w = take(w, i_dim if transposed else o_dim, self._ix("inp" if transposed else "out"))
        return {"weight": w, "bias": None if b is None else take(b, 0, self._ix("out"))}

    def _attrs(self) -> dict:
        cin, cout = self._n("inp"), self._n("out")
        groups = self.groups if self.groups == 1 else cin // (self.in_channels // self.groups)
        return {"in_channels": cin, "out_channels": cout, "groups": groups}

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        p = self._sliced()
        groups = self._attrs()["groups"]
        nd = len(self.kernel_size)
        if isinstance(self, nn.modules.conv._ConvTransposeNd):
            op = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[nd - 1]
            out_pad = self._output_padding(x, output_size, self.stride, self.padding, self.kernel_size,
                                           nd, self.dilation) if output_size is not None else self.output_padding
            return op(x, p["weight"], p["bias"], self.stride, self.padding, out_pad, groups, self.dilation)
        op = (F.conv1d, F.conv2d, F.conv3d)[nd - 1]
        if self.padding_mode != "zeros":
            x = F.pad(x, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            return op(x, p["weight"], p["bias"], self.stride, 0, self.dilation, groups)
        return op(x, p["weight"], p["bias"], self.stride, self.padding, self.dilation, groups)


class _SlimLinear(_Slim):
    def _sliced(self) -> dict:
        w = take(take(self.weight, 0, self._ix("out")), 1, self._ix("inp"))
        b = None if self.bias is None else take(self.bias, 0, self._ix("out"))
        return {"weight": w, "bias": b}

    def _attrs(self) -> dict:
        return {"in_features": self._n("inp"), "out_features": self._n("out")}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self._sliced()
        return F.linear(x, p["weight"], p["bias"])


class _SlimEmbedding(_Slim):
    def _sliced(self) -> dict:
        return {"weight": take(self.weight, 1, self._ix("out"))}

    def _attrs(self) -> dict:
        return {"embedding_dim": self._n("out")}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.embedding(x, self._sliced()["weight"], self.padding_idx, self.max_norm, self.norm_type,
                           self.scale_grad_by_freq, self.sparse)


class _SlimPerChannel(_Slim):
    """Norms and PReLU: every parameter and buffer of size C is sliced by one vector."""

    def _sliced(self) -> dict:
        out: dict[str, torch.Tensor | None] = {}
        ix = self._ix("vec") if self._has("vec") else None
        axis = self._pareco_layer.get("axis", 0)
        for name, t in list(self._parameters.items()) + list(self._buffers.items()):
            if t is None or ix is None or t.dim() == 0 or t.numel() == 1:
                out[name] = t
            else:
                out[name] = take(t, axis, ix)
        return out

    def _attrs(self) -> dict:
        if not self._has("vec"):
            return {}
        n = self._n("vec")
        if isinstance(self, nn.GroupNorm):
            return {"num_channels": n, "num_groups": n // (self.num_channels // self.num_groups)}
        if isinstance(self, nn.LayerNorm):
            shape = list(self.normalized_shape)
            shape[self._pareco_layer.get("axis", 0)] = n
            return {"normalized_shape": tuple(shape)}
        if isinstance(self, nn.PReLU):
            return {"num_parameters": n}
        return {"num_features": n}


class _SlimBatchNorm(_SlimPerChannel):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        p = self._sliced()
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        use_batch = self.training or (self.running_mean is None and self.running_var is None)
        rm, rv = p["running_mean"], p["running_var"]
        track = self.training and self.track_running_stats and rm is not None
        gathered = track and isinstance(self._ix("vec") if self._has("vec") else None, torch.Tensor)
        if gathered:  # a gather copies: update the copy, then write it back in place
            rm, rv = rm.clone(), rv.clone()
        y = F.batch_norm(x, rm if not self.training or self.track_running_stats else None,
                         rv if not self.training or self.track_running_stats else None,
                         p["weight"], p["bias"], use_batch, factor, self.eps)
        if gathered:
            with torch.no_grad():
                ix = self._ix("vec").to(rm.device)
                self.running_mean.index_copy_(0, ix, rm)
                self.running_var.index_copy_(0, ix, rv)
        return y


class _SlimInstanceNorm(_SlimPerChannel):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self._sliced()
        unbatched = x.dim() == self._get_no_batch_dim()
        if unbatched:
            x = x.unsqueeze(0)
        y = F.instance_norm(x, p.get("running_mean"), p.get("running_var"), p.get("weight"), p.get("bias"),
                            self.training or not self.track_running_stats, self.momentum or 0.0, self.eps)
        return y.squeeze(0) if unbatched else y


class _SlimGroupNorm(_SlimPerChannel):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self._sliced()
        return F.group_norm(x, self._attrs().get("num_groups", self.num_groups), p["weight"], p["bias"], self.eps)


class _SlimLayerNorm(_SlimPerChannel):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self._sliced()
        shape = tuple(x.shape[x.dim() - len(self.normalized_shape):])
        return F.layer_norm(x, shape, p.get("weight"), p.get("bias"), self.eps)


class _SlimPReLU(_SlimPerChannel):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.prelu(x, self._sliced()["weight"])


def _cls(name: str, mixin: type, base: type) -> type:
    return type(name, (mixin, base), {"__module__": __name__})


SLIM_CLASSES: dict[type, type] = {}
for _base, _mixin in [
    (nn.Conv1d, _SlimConv), (nn.Conv2d, _SlimConv), (nn.Conv3d, _SlimConv),
    (nn.ConvTranspose1d, _SlimConv), (nn.ConvTranspose2d, _SlimConv), (nn.ConvTranspose3d, _SlimConv),
    (nn.Linear, _SlimLinear), (nn.Embedding, _SlimEmbedding),
    (nn.BatchNorm1d, _SlimBatchNorm), (nn.BatchNorm2d, _SlimBatchNorm), (nn.BatchNorm3d, _SlimBatchNorm),
    (nn.SyncBatchNorm, _SlimBatchNorm), (nn.InstanceNorm1d, _SlimInstanceNorm),
    (nn.InstanceNorm2d, _SlimInstanceNorm), (nn.InstanceNorm3d, _SlimInstanceNorm),
    (nn.GroupNorm, _SlimGroupNorm), (nn.LayerNorm, _SlimLayerNorm), (nn.PReLU, _SlimPReLU),
]:
    SLIM_CLASSES[_base] = _cls("Slim" + _base.__name__, _mixin, _base)
    globals()["Slim" + _base.__name__] = SLIM_CLASSES[_base]  # importable by name: picklable


def _slim_class(cls: type) -> type | None:
    if cls in SLIM_CLASSES:
        return SLIM_CLASSES[cls]
    for base in cls.__mro__[1:]:
        if base in SLIM_CLASSES:  # a user subclass: derive once, keeping its own methods
            SLIM_CLASSES[cls] = _cls("Slim" + cls.__name__, SLIM_CLASSES[base].__mro__[1], cls)
            return SLIM_CLASSES[cls]
    return None


def make_slim(module: nn.Module, state: WidthState, layer: dict[str, Any]) -> bool:
    """Turn ``module`` into its slimmable class in place; False if it has none."""
    cls = _slim_class(type(module))
    if cls is None:
        return False
    base = type(module)
    module.__class__ = cls
    module._pareco = state
    module._pareco_base = base
    module._pareco_layer = {k: v for k, v in layer.items() if not isinstance(v, torch.Tensor)}
    module._pareco_keys = {k: state.key(v) for k, v in layer.items() if isinstance(v, torch.Tensor)}
    return True


def param_shapes(module: nn.Module, layer: dict[str, Any], count: Callable[[torch.Tensor], Poly]) -> dict:
    """Symbolic shapes of a layer's parameters from its label vectors (for the cost models)."""
    shapes: dict[str, tuple[Poly, ...]] = {}
    cnt = {k: count(v) for k, v in layer.items() if isinstance(v, torch.Tensor)}
    for name, p in module.named_parameters(recurse=False):
        dims: list[Poly] = [Poly.const(s) for s in p.shape]
        if isinstance(module, nn.modules.conv._ConvNd):
            transposed = isinstance(module, nn.modules.conv._ConvTransposeNd)
            o_dim, i_dim = (1, 0) if transposed else (0, 1)
            if name == "weight":
                if module.groups == 1:
                    dims[o_dim], dims[i_dim] = cnt["out"], cnt["inp"]
                else:
                    dims[i_dim if transposed else o_dim] = cnt["inp" if transposed else "out"]
            else:
                dims[0] = cnt["out"]
        elif isinstance(module, nn.Linear):
            dims = [cnt["out"], cnt["inp"]] if name == "weight" else [cnt["out"]]
        elif isinstance(module, nn.Embedding):
            dims[1] = cnt["out"]
        elif "vec" in cnt and p.numel() > 1:
            dims[layer.get("axis", 0)] = cnt["vec"]
        shapes[name] = tuple(dims)
    return shapes


def extract_module(module: nn.Module) -> nn.Module:
    """A plain, physically smaller copy of a slimmable layer at the widths in force."""
    sliced = {k: (None if v is None else v.detach().clone()) for k, v in module._sliced().items()}
    new = copy.copy(module)
    new.__class__ = module._pareco_base
    for attr in ("_pareco", "_pareco_keys", "_pareco_layer", "_pareco_base"):
        new.__dict__.pop(attr, None)
    new._parameters = {k: (None if sliced.get(k) is None else nn.Parameter(sliced[k], p.requires_grad))
                       for k, p in module._parameters.items()}
    new._buffers = {k: sliced[k] if k in sliced else (None if b is None else b.detach().clone())
                    for k, b in module._buffers.items()}
    new._modules = {}
    for k, v in module._attrs().items():
        setattr(new, k, v)
    return new


class ChannelGather(nn.Module):
    """A channel permutation (e.g. a channel shuffle) of the compact input, in one gather."""

    def __init__(self, state: WidthState, src: torch.Tensor, perm: np.ndarray, axis: int):
        super().__init__()
        self._pareco = state
        self._key = state.gather_key(src, perm)
        self.axis = axis

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.index_select(self.axis, self._pareco.index[self._key].to(x.device))


class SlicedTensor(nn.Module):
    """A parameter or buffer read through get_attr, restricted to its active channels."""

    def __init__(self, owner: nn.Module, name: str, state: WidthState, axes: dict[int, torch.Tensor]):
        super().__init__()
        self._owner_name = name
        self._pareco = state
        self._axes = {a: state.key(v) for a, v in axes.items()}
        self.owner = [owner]  # not a submodule: keeps the tensor where the user's names put it

    @property
    def full(self) -> torch.Tensor:
        obj = self.owner[0]
        for part in self._owner_name.split("."):
            obj = getattr(obj, part)
        return obj

    def forward(self) -> torch.Tensor:
        t = self.full
        for a, k in self._axes.items():
            t = take(t, a, self._pareco.index[k])
        return t

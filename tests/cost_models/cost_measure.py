"""Independent measurements the cost models are checked against (no pareco_fx code inside).

* :func:`counted_macs`: FlopCounterMode's MACs (FLOPs / 2, grad enabled, batch 1) plus the
  attention products it misses on the CPU, read from the shapes of the SDPA kernel calls.
* :func:`eager_peaks`: the peak of live activation storage while a module runs eagerly, watched by
  a TorchDispatchMode that tracks every storage an op returns until the last tensor on it dies;
  :func:`assert_memory_bracketed` checks the memory cost against it.
* :func:`oracle_peak`: the project's reference ``memory_oracle.peak_memory`` (it lives in the
  ``shared/`` folder beside the checkout, or where ``PARECO_SHARED`` points); the tests that use
  it are skipped where it is not available.
"""
from __future__ import annotations

import importlib.util
import math
import os
import weakref
from collections import Counter
from pathlib import Path
from typing import Callable, Sequence

import pytest

import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["ORACLE", "assert_memory_bracketed", "counted_macs", "eager_peaks", "oracle_peak", "StoragePeak"]

# CPU SDPA kernels FlopCounterMode has no formula for (its formulas cover CUDA kernels only).
_UNCOUNTED_SDPA = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu.default}


class _MissedAttention(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.macs = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in _UNCOUNTED_SDPA:
            q, k, v = args[:3]  # (..., L, E), (..., S, E), (..., S, Ev)
            self.macs += math.prod(q.shape[:-1]) * k.shape[-2] * (q.shape[-1] + v.shape[-1])
        return func(*args, **(kwargs or {}))


def counted_macs(module: nn.Module, inputs: Sequence[torch.Tensor]) -> tuple[float, float]:
    """(FlopCounterMode MACs, attention MACs it missed) of one forward of ``module``."""
    missed = _MissedAttention()
    with torch.enable_grad(), FlopCounterMode(display=False) as counter, missed:
        module(*inputs)
    return counter.get_total_flops() / 2, float(missed.macs)


def _key(t: torch.Tensor) -> int:
    return t.untyped_storage().data_ptr()


class StoragePeak(TorchDispatchMode):
    """Peaks over aten ops of (live activation storage elements + parameter elements the op reads).

    A storage is live from the op that returns it until the last tensor viewing it is freed
    (weakref finalizers on the tensors). Parameter and buffer storages are not activations.
    Each op's live set is recorded and the peaks are read after the run, two ways: ``full``
    counts every output of every op, ``lean`` leaves out outputs freed before the next op
    starts (the mean/rstd a norm kernel returns beside its result, an unused sort index).
    """

    def __init__(self, module: nn.Module):
        super().__init__()
        self.params = {_key(p): p.numel() for p in module.parameters()}
        self.fixed = set(self.params) | {_key(b) for b in module.buffers()}
        self.refs: Counter[int] = Counter()   # storage address -> tensors alive on it
        self.life: dict[int, int] = {}        # storage address -> id of its current incarnation
        self.size: dict[int, int] = {}        # incarnation -> elements
        self.freed_at: dict[int, int] = {}    # incarnation -> ops completed when it was freed
        self.ops: list[tuple[set[int], set[int], int]] = []  # (live before, new outputs, params read)

    def track(self, t: torch.Tensor) -> int | None:
        k = _key(t)
        if k in self.fixed:
            return None
        if self.refs[k] == 0:
            self.life[k] = len(self.size)
            self.size[self.life[k]] = t.untyped_storage().nbytes() // t.element_size()
        self.refs[k] += 1
        weakref.finalize(t, self._release, k)
        return self.life[k]

    def _release(self, k: int) -> None:
        self.refs[k] -= 1
        if self.refs[k] == 0:
            self.freed_at[self.life[k]] = len(self.ops)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        live = {self.life[k] for k, n in self.refs.items() if n > 0}
        out = func(*args, **(kwargs or {}))
        made = {self.track(t) for t in tree_leaves(out) if isinstance(t, torch.Tensor)} - {None}
        read = {_key(t) for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        self.ops.append((live, made - live, sum(self.params.get(k, 0) for k in read)))
        return out

    def peaks(self) -> tuple[int, int]:
        """(lean, full) peaks; read them while the module's outputs are still held."""
        lean = full = 0
        for i, (live, made, params) in enumerate(self.ops):
            kept = {m for m in made if self.freed_at.get(m, len(self.ops) + 1) > i + 1}
            lean = max(lean, sum(self.size[k] for k in live | kept) + params)
            full = max(full, sum(self.size[k] for k in live | made) + params)
        return lean, full


def eager_peaks(module: nn.Module, inputs: Sequence[torch.Tensor]) -> tuple[int, int]:
    """(lean, full) peak live activation + executing-parameter elements of one eager forward."""
    mode = StoragePeak(module)
    with torch.no_grad(), mode:
        for t in inputs:
            mode.track(t)
        out = module(*inputs)
    peaks = mode.peaks()  # while the outputs are held, as a caller holds them
    del out
    return peaks


def assert_memory_bracketed(memory: float, module: nn.Module, inputs: Sequence[torch.Tensor]) -> None:
    """``lean - input elements <= memory <= full`` for the eager peaks of ``module``.

    The generated fx code frees each value right after its last use, as the memory cost assumes,
    so at the op producing a node's value every storage the cost holds there is alive, plus the
    inputs (the caller holds them throughout): memory <= full. Conversely every storage alive
    in eager is a graph value the cost holds, an input, or an op output nothing reads:
    lean - inputs <= memory. Exact for graphs whose leaves run one aten op each; a leaf running
    several (nn.MultiheadAttention, Swin's window attention, an untraceable submodule) holds
    temporaries and reads its parameters op by op, so it is out of scope.
    """
    lean, full = eager_peaks(module, inputs)
    slack = sum(t.numel() for t in inputs)
    assert lean - slack <= memory <= full, f"memory {memory} outside eager [{lean} - {slack}, {full}]"


def _load_oracle() -> Callable | None:
    here = Path(__file__).resolve()
    for folder in (os.environ.get("PARECO_SHARED"), here.parents[3] / "shared", here.parents[2] / "shared"):
        path = Path(folder or "") / "memory_oracle.py"
        if folder and path.is_file():
            spec = importlib.util.spec_from_file_location("memory_oracle", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module.peak_memory
    return None


ORACLE = _load_oracle()


def oracle_peak(module: nn.Module, inputs: Sequence[torch.Tensor]) -> tuple[float, str]:
    """``memory_oracle.peak_memory`` (peak, node); skips the calling test without the oracle."""
    if ORACLE is None:
        pytest.skip("memory_oracle.py not found (set PARECO_SHARED to its folder)")
    return ORACLE(module, inputs)

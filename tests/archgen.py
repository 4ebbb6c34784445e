"""A generator of random CNN architectures for property tests and fuzzing.

An architecture is a plain, printable ``Arch`` (a DAG of ``Op``s over numbered tensors; tensor 0
is the input), so a failing case can be pasted into a regression test. The same ``generate``
drives both a hypothesis strategy (``architectures()``, shrinkable) and a seeded
``random.Random`` (``from_seed``, for ``benchmarks/fuzz.py``).

Ops: conv, depthwise conv (multiplier 1 or 2), grouped conv, BatchNorm, activations, add (with a
1x1 projection when no tensor of the same shape exists), SE-style gate, cat, split, chunk,
channel shuffle, max/avg pooling; the head pools (or flattens) every tensor no op consumed,
concatenates them and ends in one or two linear layers.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from invariants import randomize_norms

__all__ = ["Op", "Arch", "ArchNet", "KINDS", "generate", "from_seed", "build", "architectures", "shrink"]

KINDS = ("conv", "dw", "gconv", "bn", "act", "add", "gate", "cat", "split", "chunk", "shuffle", "pool")
ACTS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU, "gelu": nn.GELU, "sigmoid": nn.Sigmoid, "hardswish": nn.Hardswish,
    "silu": nn.SiLU, "tanh": nn.Tanh, "relu6": nn.ReLU6,
}


@dataclass(frozen=True)
class Op:
    """One node: ``kind`` applied to earlier tensors ``inputs``, with kind-specific ``args``.

    Args per kind: conv (out, k, stride); dw (mult,); gconv (groups, out); act (name,);
    add (project,); gate (hidden,); split (offset,); chunk (n,); shuffle (groups,);
    pool (is_max,). A split or chunk adds one tensor per piece, any other op one tensor.
    """

    kind: str
    inputs: tuple[int, ...]
    args: tuple = ()


@dataclass(frozen=True)
class Arch:
    """A random architecture: input (channels, size), ops, head (flatten?, hidden, classes)."""

    in_channels: int
    size: int
    ops: tuple[Op, ...]
    flatten: bool
    hidden: int
    classes: int

    def example_inputs(self, batch: int = 2, seed: int = 0) -> tuple[torch.Tensor, ...]:
        g = torch.Generator().manual_seed(seed)
        return (torch.randn(batch, self.in_channels, self.size, self.size, generator=g),)


class Chooser(Protocol):
    def integers(self, lo: int, hi: int) -> int: ...


def _choice(ch: Chooser, seq: Sequence):
    return seq[ch.integers(0, len(seq) - 1)]


def _divisors(c: int) -> list[int]:
    return [d for d in range(2, c) if c % d == 0]


def generate(ch: Chooser, max_ops: int = 10, max_channels: int = 16) -> Arch:
    """Draw an architecture; every decision goes through ``ch.integers`` (so hypothesis can shrink)."""
    in_c, size = _choice(ch, (1, 3)), _choice(ch, (4, 8))
    shapes: list[tuple[int, int]] = [(in_c, size)]  # (channels, spatial size) of every tensor
    ops = [Op("conv", (0,), (ch.integers(2, max_channels), _choice(ch, (1, 3)), 1))]
    shapes.append((ops[0].args[0], size))
    for _ in range(ch.integers(0, max_ops - 1)):
        src = len(shapes) - 1 - ch.integers(0, min(3, len(shapes) - 2))  # mostly recent, never the input
        kind = _choice(ch, KINDS)
        op = _draw_op(ch, kind, src, shapes, max_channels)
        ops.append(op)
        shapes.extend(_out_shapes(op, shapes))
    flatten = ch.integers(0, 1) == 1
    hidden = _choice(ch, (0, 0, 8, 12))
    return Arch(in_c, size, tuple(ops), flatten, hidden, _choice(ch, (3, 10)))


def _draw_op(ch: Chooser, kind: str, src: int, shapes: list[tuple[int, int]], max_c: int) -> Op:
    c, s = shapes[src]
    same_size = [i for i in range(1, len(shapes)) if shapes[i][1] == s and i != src]
    if kind == "dw":
        return Op("dw", (src,), (_choice(ch, (1, 2)),))
    if kind == "gconv" and _divisors(c):
        g = _choice(ch, _divisors(c))
        return Op("gconv", (src,), (g, g * ch.integers(1, max(1, max_c // g))))
    if kind == "bn":
        return Op("bn", (src,))
    if kind == "act":
        return Op("act", (src,), (_choice(ch, tuple(ACTS)),))
    if kind == "add" and same_size:
        other = _choice(ch, same_size)
        return Op("add", (src, other), (shapes[other][0] != c,))
    if kind == "gate":
        return Op("gate", (src,), (ch.integers(1, max(1, c // 2)),))
    if kind == "cat" and same_size:
        others = [_choice(ch, same_size) for _ in range(ch.integers(1, 2))]
        return Op("cat", (src, *others))
    if kind == "split" and c >= 2:
        return Op("split", (src,), (ch.integers(1, c - 1),))
    if kind == "chunk" and [n for n in (2, 3) if c % n == 0]:
        return Op("chunk", (src,), (_choice(ch, [n for n in (2, 3) if c % n == 0]),))
    if kind == "shuffle" and _divisors(c):
        return Op("shuffle", (src,), (_choice(ch, _divisors(c)),))
    if kind == "pool" and s >= 2:
        return Op("pool", (src,), (ch.integers(0, 1) == 1,))
    stride = 2 if s >= 2 and ch.integers(0, 3) == 0 else 1
    return Op("conv", (src,), (ch.integers(1, max_c), _choice(ch, (1, 3)), stride))


def _out_shapes(op: Op, shapes: list[tuple[int, int]]) -> list[tuple[int, int]]:
    c, s = shapes[op.inputs[0]]
    if op.kind == "conv":
        out, k, stride = op.args
        return [(out, (s + 2 * (k // 2) - k) // stride + 1)]
    if op.kind == "dw":
        return [(c * op.args[0], s)]
    if op.kind == "gconv":
        return [(op.args[1], s)]
    if op.kind == "cat":
        return [(sum(shapes[i][0] for i in op.inputs), s)]
    if op.kind == "split":
        return [(op.args[0], s), (c - op.args[0], s)]
    if op.kind == "chunk":
        return [(c // op.args[0], s)] * op.args[0]
    if op.kind == "pool":
        return [(c, s // 2)]
    return [(c, s)]  # bn, act, add, gate, shuffle


class _Random:
    def __init__(self, seed: int):
        self.rng = random.Random(seed)

    def integers(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)


def from_seed(seed: int, max_ops: int = 10, max_channels: int = 16) -> Arch:
    """The architecture of a seed (what ``benchmarks/fuzz.py`` reports for a failure)."""
    return generate(_Random(seed), max_ops, max_channels)


class ArchNet(nn.Module):
    """The model of an ``Arch``: layers in ``self.layers["op{i}"]``, forward walks the DAG."""

    def __init__(self, arch: Arch):
        super().__init__()
        self.arch = arch
        self.layers = nn.ModuleDict()
        shapes = [(arch.in_channels, arch.size)]
        for i, op in enumerate(arch.ops):
            layer = self._layer(op, shapes)
            if layer is not None:
                self.layers[f"op{i}"] = layer
            shapes.extend(_out_shapes(op, shapes))
        used = {j for op in arch.ops for j in op.inputs}
        self.dangling = tuple(i for i in range(1, len(shapes)) if i not in used)
        width = sum(shapes[i][0] * (shapes[i][1] ** 2 if arch.flatten else 1) for i in self.dangling)
        head: list[nn.Module] = [nn.Linear(width, arch.hidden), nn.ReLU()] if arch.hidden else []
        self.head = nn.Sequential(*head, nn.Linear(arch.hidden or width, arch.classes))

    @staticmethod
    def _layer(op: Op, shapes: list[tuple[int, int]]) -> nn.Module | None:
        c, _ = shapes[op.inputs[0]]
        if op.kind == "conv":
            out, k, stride = op.args
            return nn.Conv2d(c, out, k, stride, k // 2)
        if op.kind == "dw":
            return nn.Conv2d(c, c * op.args[0], 3, 1, 1, groups=c, bias=False)
        if op.kind == "gconv":
            return nn.Conv2d(c, op.args[1], 3, 1, 1, groups=op.args[0])
        if op.kind == "bn":
            return nn.BatchNorm2d(c)
        if op.kind == "act":
            return ACTS[op.args[0]]()
        if op.kind == "add" and op.args[0]:
            return nn.Conv2d(shapes[op.inputs[1]][0], c, 1)
        if op.kind == "gate":
            return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, op.args[0], 1), nn.ReLU(),
                                 nn.Conv2d(op.args[0], c, 1), nn.Sigmoid())
        return None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ts = [x]
        for i, op in enumerate(self.arch.ops):
            ts.extend(self._run(f"op{i}", op, [ts[j] for j in op.inputs]))
        if self.arch.flatten:
            feats = [torch.flatten(ts[i], 1) for i in self.dangling]
        else:
            feats = [F.adaptive_avg_pool2d(ts[i], 1).flatten(1) for i in self.dangling]
        return self.head(torch.cat(feats, 1) if len(feats) > 1 else feats[0])

    def _run(self, name: str, op: Op, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        x = xs[0]
        if op.kind in ("conv", "dw", "gconv", "bn", "act"):
            return [self.layers[name](x)]
        if op.kind == "add":
            other = self.layers[name](xs[1]) if op.args[0] else xs[1]
            return [x + other]
        if op.kind == "gate":
            return [x * self.layers[name](x)]
        if op.kind == "cat":
            return [torch.cat(xs, 1)]
        if op.kind == "split":
            parts = torch.split(x, [op.args[0], x.shape[1] - op.args[0]], dim=1)
            return [parts[0], parts[1]]
        if op.kind == "chunk":
            parts = x.chunk(op.args[0], dim=1)
            return [parts[i] for i in range(op.args[0])]
        if op.kind == "shuffle":
            b, c, h, w = x.size()
            g = op.args[0]
            return [x.view(b, g, c // g, h, w).transpose(1, 2).reshape(b, c, h, w)]
        if op.kind == "pool":
            return [F.max_pool2d(x, 2) if op.args[0] else F.avg_pool2d(x, 2)]
        raise ValueError(f"unknown op kind {op.kind!r}")


def _without(arch: Arch, k: int) -> Arch | None:
    """``arch`` less op ``k``, when no later op reads its outputs (else None)."""
    first = 1 + sum(_n_out(o) for o in arch.ops[:k])  # index of op k's first output tensor
    n = _n_out(arch.ops[k])
    gone = range(first, first + n)
    later = arch.ops[k + 1:]
    if k == 0 or any(j in gone for op in later for j in op.inputs):
        return None
    shift = lambda j: j - n if j >= first + n else j  # noqa: E731
    ops = arch.ops[:k] + tuple(Op(op.kind, tuple(shift(j) for j in op.inputs), op.args) for op in later)
    return Arch(arch.in_channels, arch.size, ops, arch.flatten, arch.hidden, arch.classes)


def _n_out(op: Op) -> int:
    return 2 if op.kind == "split" else op.args[0] if op.kind == "chunk" else 1


def shrink(arch: Arch, fails: Callable[[Arch], bool]) -> Arch:
    """A smaller architecture that still ``fails``: drops unread ops, simplifies the head."""
    changed = True
    while changed:
        changed = False
        candidates = [_without(arch, k) for k in reversed(range(len(arch.ops)))]
        candidates += [Arch(arch.in_channels, arch.size, arch.ops, False, arch.hidden, arch.classes),
                       Arch(arch.in_channels, arch.size, arch.ops, arch.flatten, 0, arch.classes)]
        for cand in candidates:
            if cand is not None and cand != arch and fails(cand):
                arch, changed = cand, True
                break
    return arch


def build(arch: Arch, seed: int = 0) -> ArchNet:
    """A seeded model of ``arch`` with randomised norm statistics, in eval mode."""
    torch.manual_seed(seed)
    return randomize_norms(ArchNet(arch), seed).eval()


def architectures(max_ops: int = 10, max_channels: int = 16):
    """A hypothesis strategy of ``Arch`` (imported lazily: the fuzz benchmark needs no hypothesis)."""
    from hypothesis import strategies as st

    class _Draw:
        def __init__(self, draw):
            self.draw = draw

        def integers(self, lo: int, hi: int) -> int:
            return self.draw(st.integers(lo, hi))

    return st.composite(lambda draw: generate(_Draw(draw), max_ops, max_channels))()

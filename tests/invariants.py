"""Assertion helpers for DESIGN.md's invariants, shared by the scenario, property and zoo tests.

``check_invariants`` builds a slimmable model and asserts, at the smallest, a random and the
largest widths: full width equals the original (invariant 1), the extracted sub-network equals the
slimmable forward (invariant 2) also after a ``torch.save``/``torch.load`` round trip, frozen groups
carry a reason and the model's input/output sizes are kept (invariant 4), the active channel
counts follow the width rule, the ``params`` cost equals the extract's parameter count, backward
gives the extract's gradients, and train mode runs forward and backward at the smallest widths.
"""
from __future__ import annotations

import io
import math
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import torch
import torch.nn as nn

if TYPE_CHECKING:
    from pareco_fx.ir import ChannelGroup

__all__ = [
    "RTOL",
    "Checked",
    "tensors",
    "error_and_scale",
    "assert_close",
    "expected_channels",
    "trial_widths",
    "groups_holding",
    "group_of",
    "slimmable_share",
    "check_invariants",
    "check_expect",
    "randomize_norms",
]

RTOL = 1e-4  # relative to max(1, |reference|): float32 slicing reorders no sums, gathers may


@dataclass(frozen=True)
class Checked:
    """What ``check_invariants`` measured on one model.

    Attributes:
        slim: the slimmable model (eval mode, widths at 1.0).
        widths: the width vectors tried, in order.
        share: slimmable share of conv/linear output channels (see ``slimmable_share``).
    """

    slim: Any
    widths: tuple[tuple[float, ...], ...]
    share: float


def tensors(y: Any) -> list[torch.Tensor]:
    """Flatten a model output (tensor, tuple, list, dict, namedtuple) into its tensors."""
    if isinstance(y, torch.Tensor):
        return [y]
    if isinstance(y, dict):
        return [t for k in sorted(y) for t in tensors(y[k])]
    if isinstance(y, (list, tuple)):
        return [t for v in y for t in tensors(v)]
    return []


def error_and_scale(a: torch.Tensor, e: torch.Tensor) -> tuple[float, float]:
    """The largest absolute difference of two same-shaped tensors, and the scale it is judged
    against: max(1, |expected|'s largest value)."""
    if not e.numel():
        return 0.0, 1.0
    return (a.detach() - e.detach()).abs().max().item(), max(1.0, e.detach().abs().max().item())


def assert_close(actual: Any, expected: Any, what: str, rtol: float = RTOL) -> None:
    """Assert two model outputs have the same structure, shapes and values (relative ``rtol``)."""
    ta, te = tensors(actual), tensors(expected)
    assert ta and len(ta) == len(te), f"{what}: {len(ta)} vs {len(te)} output tensors"
    for i, (a, e) in enumerate(zip(ta, te)):
        assert a.shape == e.shape, f"{what}: output {i} shape {tuple(a.shape)} vs {tuple(e.shape)}"
        err, scale = error_and_scale(a, e)
        assert err <= rtol * scale, f"{what}: output {i} max error {err:.3g} (scale {scale:.3g})"


def expected_channels(group: ChannelGroup, w: float, divisor: int = 1) -> int:
    """Active channels of ``group`` at width ``w`` by DESIGN.md's rule.

    ``k = max(1, floor(w * C))`` rounded down to a multiple of the group's step (its quantum, and
    the divisor), never below one step, never above C.
    """
    if not group.slimmable:
        return group.channels
    step = math.lcm(group.quantum, divisor)
    k = max(1, math.floor(w * group.channels))
    return min(group.channels, max(step, k // step * step))


def trial_widths(n_groups: int, trials: Sequence[str], min_width: float, seed: int) -> list[list[float]]:
    """Width vectors for the named trials: "min", "max" or "random" (uniform in [min_width, 1])."""
    rng = random.Random(seed)
    table = {"min": lambda: [min_width] * n_groups, "max": lambda: [1.0] * n_groups,
             "random": lambda: [rng.uniform(min_width, 1.0) for _ in range(n_groups)]}
    return [table[t]() for t in trials]


def groups_holding(slim: Any, member: str) -> list[ChannelGroup]:
    """Every group whose members include ``member`` (a module name or a node name)."""
    return [g for g in slim.groups if member in g.members]


def group_of(slim: Any, member: str) -> ChannelGroup:
    """The one group holding ``member``; fails when none or several hold it."""
    found = groups_holding(slim, member)
    assert len(found) == 1, (
        f"{member!r} is held by {len(found)} groups "
        f"{[(g.id, g.channels) for g in found]}; members: {[g.members for g in slim.groups]}")
    return found[0]


def _out_channels(model: nn.Module, skip: int | None) -> int:
    total = 0
    for mod in model.modules():
        if isinstance(mod, nn.modules.conv._ConvNd):
            n = mod.out_channels
        elif isinstance(mod, nn.Linear):
            n = mod.out_features
        else:
            continue
        total += 0 if n == skip else n
    return total


def slimmable_share(model: nn.Module, sub_at_min: nn.Module, min_width: float, skip: int | None = None) -> float:
    """Share of conv/linear output channels that shrink, as ``contract_check.py`` measures it.

    ``(full - at_min) / (full * (1 - min_width))``: 1.0 when every channel shrinks to
    ``min_width``; layers with ``skip`` outputs (a 1000-way classifier) are left out.
    """
    full = _out_channels(model, skip)
    return (full - _out_channels(sub_at_min, skip)) / (full * (1 - min_width)) if full else 0.0


_NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


def randomize_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every norm layer random affine parameters and running statistics, in place.

    Freshly built norms are the identity in eval mode (mean 0, var 1, weight 1, bias 0), which
    would hide a norm sliced at the wrong channels.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in model.modules():
            for name in ("weight", "bias", "running_mean", "running_var"):
                t = getattr(mod, name, None) if isinstance(mod, _NORMS) else None
                if isinstance(t, torch.Tensor) and t.is_floating_point():
                    r = torch.rand(t.shape, generator=g)
                    t.copy_(0.5 + r if name in ("weight", "running_var") else r - 0.5)
    return model


def _roundtrip(module: nn.Module) -> nn.Module:
    buf = io.BytesIO()
    torch.save(module, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=False)


def _grad_sq(module: nn.Module) -> float:
    return sum(float(p.grad.double().pow(2).sum()) for p in module.parameters() if p.grad is not None)


def _loss(y: Any) -> torch.Tensor:
    """A fixed random projection of the outputs: its gradient never vanishes (unlike ``y**2`` on
    zero-initialised heads such as ViT's)."""
    g = torch.Generator().manual_seed(0)
    return sum((t.float() * torch.randn(t.shape, generator=g)).mean() for t in tensors(y) if t.is_floating_point())


def check_invariants(
    model: nn.Module,
    inputs: Sequence[torch.Tensor],
    trials: Sequence[str] = ("min", "random", "max"),
    seed: int = 0,
    min_width: float = 0.42,
    share_skip: int | None = None,
    slim: Any = None,
) -> Checked:
    """Build ``make_slimmable(model, inputs)`` and assert DESIGN.md's invariants 1, 2 and 4.

    Args:
        model: the original model (put in eval mode here).
        inputs: example inputs, batch >= 2 so that train-mode BatchNorm works.
        trials: the width vectors to check, by name ("min", "random", "max").
        seed: seeds the random widths and the parameters' RNG.
        min_width: the slimmable model's smallest width.
        share_skip: output size of layers the slimmable share leaves out (classifier).
        slim: an already built slimmable model of ``model`` (built here when None).

    Returns:
        The slimmable model, the widths tried and the slimmable share at ``min_width``.
    """
    inputs = tuple(inputs)
    model.eval()
    with torch.no_grad():
        ref = model(*inputs)
    if slim is None:
        import pareco_fx  # here, so that the fixtures load without the core

        slim = pareco_fx.make_slimmable(model, inputs, min_width=min_width)
    slim.eval()
    groups = list(slim.groups)
    assert [g.id for g in groups] == list(range(len(groups))), "group ids are not their positions"
    for g in groups:
        assert g.slimmable or g.reason, f"group {g.id} {g.members} is frozen without a reason"
        assert g.channels % g.quantum == 0, f"group {g.id}: {g.channels} channels, quantum {g.quantum}"
        assert g.members, f"group {g.id} has no members"

    with torch.no_grad():
        slim.set_widths(1.0)
        assert_close(slim(*inputs), ref, "full width vs original")
        widths = trial_widths(len(groups), trials, min_width, seed)
        probe = "random" if "random" in trials else trials[0]  # the trial also checked deeper
        share, probe_sub, probe_w = 0.0, None, widths[0]
        for name, w in zip(trials, widths):
            slim.set_widths(w)
            assert len(slim.widths) == len(groups)
            active = slim.channels()
            for g, wg in zip(groups, w):
                assert active[g.id] == expected_channels(g, wg), (
                    f"{name}: group {g.id} ({g.channels} ch, quantum {g.quantum}, "
                    f"{'slimmable' if g.slimmable else 'frozen'}) has {active[g.id]} active at "
                    f"w={wg:.4f}, expected {expected_channels(g, wg)}")
                assert g.slimmable or slim.widths[g.id] == 1.0, f"frozen group {g.id} reports width {slim.widths[g.id]}"
            ys = slim(*inputs)
            # invariant 4: the model's outputs keep their sizes at any widths
            assert [t.shape for t in tensors(ys)] == [t.shape for t in tensors(ref)], (
                f"{name}: output shapes changed: {[tuple(t.shape) for t in tensors(ys)]}")
            sub = slim.extract(w)
            assert isinstance(sub, torch.fx.GraphModule), f"extract returned {type(sub).__name__}"
            sub.eval()
            assert_close(sub(*inputs), ys, f"{name}: extract vs slim")
            if name == probe:
                assert_close(_roundtrip(sub)(*inputs), ys, f"{name}: extract after save/load vs slim")
                probe_sub, probe_w = sub, w
            n_params = sum(p.numel() for p in sub.parameters())
            cost = slim.cost("params", list(w))
            assert cost == n_params, f"{name}: params cost {cost} vs extract {n_params}"
            if name == "min":
                share = slimmable_share(model, sub, min_width, share_skip)

    _check_gradients(slim, probe_sub, inputs, probe_w, seed)
    # train mode updates running statistics: restore them, the caller may still compare outputs
    saved = [b.clone() for b in slim.buffers()]
    _check_train_forward(slim, inputs, [min_width] * len(groups), ref)
    with torch.no_grad():
        for b, v in zip(slim.buffers(), saved):
            b.copy_(v)
    slim.eval()
    slim.set_widths(1.0)
    return Checked(slim, tuple(tuple(w) for w in widths), share)


def _check_gradients(slim: Any, sub: nn.Module, inputs: tuple[torch.Tensor, ...], w: Sequence[float],
                     seed: int) -> None:
    """Backward at ``w`` reaches the weights, exactly as much as it reaches the extract ``sub``'s.

    Eval mode keeps the two deterministic (no dropout, BatchNorm on running statistics): the
    active slices of the full weights must receive the extract's gradients and nothing else.
    """
    slim.set_widths(list(w))
    slim.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    _loss(slim(*inputs)).backward()
    got = _grad_sq(slim)
    slim.zero_grad(set_to_none=True)  # an extract may share the untouched layers' parameters
    sub.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    _loss(sub(*inputs)).backward()
    want = _grad_sq(sub)
    assert want > 0, "the extract's parameters receive no gradient"
    assert math.isfinite(got) and abs(got - want) <= 1e-3 * want, (
        f"gradient energy {got:.6g} on the slimmable model vs {want:.6g} on the extract")
    slim.zero_grad(set_to_none=True)
    sub.zero_grad(set_to_none=True)


def _check_train_forward(slim: Any, inputs: tuple[torch.Tensor, ...], w: Sequence[float], ref: Any) -> None:
    """Train mode at ``w``: forward keeps the output sizes, backward gives finite gradients."""
    slim.train()
    slim.set_widths(list(w))
    y = slim(*inputs)
    assert [t.shape for t in tensors(y)] == [t.shape for t in tensors(ref)], "train-mode output shapes changed"
    loss = _loss(y)
    assert torch.isfinite(loss), f"train-mode loss {loss} at min width"
    loss.backward()
    grads = [p.grad for p in slim.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads), "train-mode backward gave no or non-finite gradients"
    assert any(g.abs().sum() > 0 for g in grads), "train-mode backward left every gradient zero"
    slim.zero_grad(set_to_none=True)


def check_expect(slim: Any, expect: Any) -> None:
    """Assert a scenario's ``Expect`` (see ``scenarios.Expect``) on a slimmable model's groups."""
    groups = list(slim.groups)
    where = f"groups: {[(g.id, g.channels, g.slimmable, g.members) for g in groups]}"
    if expect.slimmable_groups is not None:
        n = sum(g.slimmable for g in groups)
        assert n == expect.slimmable_groups, f"{n} slimmable groups, expected {expect.slimmable_groups}; {where}"
    for names in expect.together:
        assert any(all(m in g.members for m in names) for g in groups), f"no group holds all of {names}; {where}"
    for a, b in expect.apart:
        assert groups_holding(slim, a) and groups_holding(slim, b), f"{a!r} or {b!r} is in no group; {where}"
        assert not any(a in g.members and b in g.members for g in groups), f"{a!r} and {b!r} share a group; {where}"
    for m in expect.slimmable:
        held = groups_holding(slim, m)
        assert held and all(g.slimmable for g in held), (
            f"{m!r} should be slimmable: {[(g.id, g.reason) for g in held]}; {where}")
    for m, text in expect.frozen.items():
        reasons = [g.reason or "" for g in groups_holding(slim, m) if not g.slimmable]
        assert any(text.lower() in r.lower() for r in reasons), (
            f"no frozen group of {m!r} has a reason with {text!r}: {reasons}; {where}")
    for m, c in expect.channels.items():
        assert group_of(slim, m).channels == c, f"{m!r}: {group_of(slim, m).channels} channels, expected {c}"
    for m, q in expect.quantum.items():
        assert group_of(slim, m).quantum == q, f"{m!r}: quantum {group_of(slim, m).quantum}, expected {q}"
    for m, sizes in expect.pieces.items():
        got = tuple(sorted(g.channels for g in groups_holding(slim, m)))
        assert got == tuple(sorted(sizes)), f"{m!r} is held by groups of {got} channels, expected {sizes}; {where}"
    if expect.check is not None:
        expect.check(slim)

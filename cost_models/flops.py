"""``flops``: multiply-accumulates per example (batch size 1), as DESIGN.md defines them.

Per-op formulas are registered with :func:`flop_formula` (keyed by module type, function
target or method name, like ``torch.utils.flop_counter``) and see symbolic shapes only
(:class:`~pareco_fx.cost_models.base.OpShapes`). Conv (all kinds), linear, matmul/mm/bmm/
addmm/baddbmm/einsum, ``F.scaled_dot_product_attention``, ``nn.MultiheadAttention`` and
torchvision's Swin ``shifted_window_attention`` have formulas; attention products are counted
even where ``FlopCounterMode`` misses them (SDPA on the CPU). Normalisation layers and the
element-wise, data-movement, pooling and reduction families count no MACs. Any other node is
measured once with ``FlopCounterMode`` at batch size 1 and counted as a constant, which is
exact because such a node's shapes do not depend on the widths (the channel analysis freezes
what it has no rule for); a node whose shapes do depend on them and that does count MACs is
an error naming the node and how to add its formula.
"""
from __future__ import annotations

import itertools

import math
import operator
from typing import Any, Sequence

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F
from torch.fx.passes.shape_prop import TensorMetadata
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models.swin_transformer import shifted_window_attention

from pareco_fx.errors import CostModelError
from pareco_fx.ir import META_PARAMS, META_SYM, META_VALUE, Poly, SymTensor, prod
from pareco_fx.cost_models.base import CostProgram, OpRegistry, OpShapes, sym_tensors, target_name
from pareco_fx.passes.labels import META_KIND
from pareco_fx.trace import modules_by_name

__all__ = ["FLOP_FORMULAS", "flop_formula", "node_macs", "Flops"]

FLOP_FORMULAS = OpRegistry("FLOP formula")
flop_formula = FLOP_FORMULAS.register

_CALLS = ("call_module", "call_function", "call_method")
# Channel-rule families whose ops FlopCounterMode counts no MACs for (it counts products:
# matmul, conv, attention); their nodes need neither a formula nor a measuring run.
_NO_MAC_KINDS = ("pointwise", "movement", "channelwise", "reduction")
_ONE = Poly.const(1)


def _rows(t: SymTensor) -> Poly:
    """Elements per feature vector at batch size 1: the product of all axes but the last."""
    return prod(t.sym_shape[:-1])


def _dims(t: SymTensor) -> list[tuple[int, Poly]]:
    return list(zip(t.shape, t.sym_shape))


def _broadcast(x: Sequence[tuple[int, Poly]], y: Sequence[tuple[int, Poly]]) -> list[Poly]:
    """Symbolic sizes of the broadcast of two batch shapes (a size-1 axis takes the other's)."""
    n = max(len(x), len(y))
    x = [(1, _ONE)] * (n - len(x)) + list(x)
    y = [(1, _ONE)] * (n - len(y)) + list(y)
    return [b[1] if a[0] == 1 and b[0] != 1 else a[1] for a, b in zip(x, y)]


def _matmul_macs(a: SymTensor, b: SymTensor) -> Poly:
    """torch.matmul semantics: 1-D operands are promoted, batch axes broadcast."""
    da, db = _dims(a), _dims(b)
    if len(da) == 1:
        da = [(1, _ONE)] + da
    if len(db) == 1:
        db = db + [(1, _ONE)]
    return prod(_broadcast(da[:-2], db[:-2])) * da[-2][1] * da[-1][1] * db[-1][1]


def _conv_macs(weight: Sequence[Poly], spatial_from: SymTensor) -> Poly:
    # weight (Cout, Cin/groups, *kernel) for conv, (Cin, Cout/groups, *kernel) transposed: either
    # way, MACs = prod(weight) * the spatial size the kernel slides over (out for conv, in for
    # transposed), which covers grouped and depthwise convs.
    spatial = len(weight) - 2
    return prod(weight) * prod(spatial_from.sym_shape[len(spatial_from.sym_shape) - spatial:])


@flop_formula(nn.Conv1d, nn.Conv2d, nn.Conv3d)
def _conv_module(op: OpShapes) -> Poly:
    return _conv_macs(op.params["weight"], op.out)


@flop_formula(nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
def _conv_transpose_module(op: OpShapes) -> Poly:
    return _conv_macs(op.params["weight"], op.arg(0, "input"))


@flop_formula(F.conv1d, F.conv2d, F.conv3d, torch.conv1d, torch.conv2d, torch.conv3d)
def _conv_function(op: OpShapes) -> Poly:
    return _conv_macs(op.arg(1, "weight").sym_shape, op.out)


@flop_formula(F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d,
              torch.conv_transpose1d, torch.conv_transpose2d, torch.conv_transpose3d)
def _conv_transpose_function(op: OpShapes) -> Poly:
    return _conv_macs(op.arg(1, "weight").sym_shape, op.arg(0, "input"))


@flop_formula(nn.Linear)
def _linear_module(op: OpShapes) -> Poly:
    return _rows(op.arg(0, "input")) * prod(op.params["weight"])


@flop_formula(F.linear)
def _linear_function(op: OpShapes) -> Poly:
    return _rows(op.arg(0, "input")) * prod(op.arg(1, "weight").sym_shape)


@flop_formula(torch.matmul, operator.matmul, torch.mm, torch.bmm, "matmul", "mm", "bmm", "__matmul__")
def _matmul(op: OpShapes) -> Poly:
    return _matmul_macs(op.arg(0, "input"), op.arg(1, "other", op.kwargs.get("mat2")))


@flop_formula(torch.addmm, torch.baddbmm, "addmm", "baddbmm")
def _addmm(op: OpShapes) -> Poly:
    # (input, mat1, mat2) for addmm, (input, batch1, batch2) for baddbmm; self is input for methods.
    first, second = ("mat1", "mat2") if op.node.target in (torch.addmm, "addmm") else ("batch1", "batch2")
    return _matmul_macs(op.arg(1, first), op.arg(2, second))


@flop_formula(torch.einsum)
def _einsum(op: OpShapes) -> Poly:
    equation, operands = op.args[0], list(op.args[1:])
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = list(operands[0])
    return _einsum_macs(equation, operands)


def _einsum_macs(equation: str, operands: Sequence[SymTensor]) -> Poly:
    """MACs of torch.einsum without opt_einsum: operands contracted left to right; an index
    that only one side holds and nothing later needs is summed out first (no MACs), and a pair
    with no index to contract is an element-wise product (no MACs either)."""
    equation = equation.replace(" ", "")
    lhs, arrow, rhs = equation.partition("->")
    specs = lhs.split(",")
    ell_rank = max((len(t.shape) - len(s.replace("...", "")) for s, t in zip(specs, operands) if "..." in s),
                   default=0)
    ell = [f"\0{i}" for i in range(ell_rank)]  # ellipsis axes as pseudo-indices

    def expand(spec: str, rank: int) -> list[str]:
        if "..." not in spec:
            return list(spec)
        head, tail = spec.split("...")
        return list(head) + ell[ell_rank - (rank - len(head) - len(tail)):] + list(tail)

    subs = [expand(s, len(t.shape)) for s, t in zip(specs, operands)]
    sizes: dict[str, tuple[int, Poly]] = {}
    for sub, t in zip(subs, operands):
        for idx, dim in zip(sub, _dims(t)):
            if idx not in sizes or sizes[idx][0] == 1:
                sizes[idx] = dim
    if arrow:
        out = expand(rhs, len(ell) + len(rhs.replace("...", "")))
    else:
        counts = [i for sub in subs for i in sub]
        out = [i for i in ell if i in counts] + sorted(i for i in set(counts) if i not in ell and counts.count(i) == 1)
    macs = Poly()
    current = set(subs[0])
    for j in range(1, len(subs)):
        later = set(out).union(*subs[j + 1:])
        other = set(subs[j])
        if (current & other) - later:  # no contracted index: torch multiplies element-wise
            keep = (current & other) | ((current | other) & later)
            macs = macs + prod(sizes[i][1] for i in sorted(keep))
        current = (current | other) & later
    return macs


@flop_formula(F.scaled_dot_product_attention)
def _sdpa(op: OpShapes) -> Poly:
    q, k, v = op.arg(0, "query"), op.arg(1, "key"), op.arg(2, "value")
    heads_and_batch = prod(q.sym_shape[:-2])
    return heads_and_batch * q.sym_shape[-2] * k.sym_shape[-2] * (q.sym_shape[-1] + v.sym_shape[-1])


@flop_formula(nn.MultiheadAttention)
def _multihead_attention(op: OpShapes) -> Poly:
    q, k, v = op.arg(0, "query"), op.arg(1, "key"), op.arg(2, "value")
    lq, lk, lv = _rows(q), _rows(k), _rows(v)  # sequence lengths (batch size 1)
    p = op.params
    if "in_proj_weight" in p:
        w = p["in_proj_weight"]          # (3E, E) packed q/k/v projection
        embed = w[0] // 3
        proj = (lq + lk + lv) * embed * w[1]
    else:
        embed = p["q_proj_weight"][0]
        proj = lq * prod(p["q_proj_weight"]) + lk * prod(p["k_proj_weight"]) + lv * prod(p["v_proj_weight"])
    extra_keys = int(op.module.bias_k is not None) + int(op.module.add_zero_attn)
    products = 2 * lq * (lk + extra_keys) * embed  # q·kᵀ and attn·v, summed over heads
    return proj + products + lq * prod(p["out_proj.weight"])


@flop_formula(shifted_window_attention)
def _shifted_window_attention(op: OpShapes) -> Poly:
    # torchvision Swin (v1 and v2): x (B, H, W, C) padded to whole windows of N = ws0·ws1 tokens;
    # qkv and proj linears over all T padded tokens, and per window q·kᵀ and attn·v over N tokens.
    x, qkv_w, proj_w = op.arg(0, "input"), op.arg(1, "qkv_weight").sym_shape, op.arg(2, "proj_weight").sym_shape
    window = op.arg(4, "window_size")
    tokens = math.prod(-(-size // ws) * ws for size, ws in zip(x.shape[-3:-1], window))
    return tokens * (prod(qkv_w) + 2 * math.prod(window) * (qkv_w[0] // 3) + prod(proj_w))


@flop_formula(nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm,
              F.batch_norm, F.layer_norm, F.group_norm, F.instance_norm, F.local_response_norm)
def _normalisation(op: OpShapes) -> Poly:
    return Poly()  # element-wise work only: no multiply-accumulates (FlopCounterMode agrees)


def _counts_nothing(node: fx.Node) -> bool:
    """Whether ``node`` surely does no MACs: a data-movement, element-wise, pooling or reduction
    op (by its channel rule), or an op with no tensor among its inputs and outputs."""
    if node.meta.get(META_KIND) in _NO_MAC_KINDS:
        return True
    values = [node.meta.get(META_SYM)] + [a.meta.get(META_SYM) for a in node.all_input_nodes]
    return not any(True for v in values for _ in sym_tensors(v))


# ---------------------------------------------------------------------------------------------


def _depends_on_widths(node: fx.Node, probe: torch.Tensor) -> bool:
    """Whether any size at ``node`` differs between the full and the smallest widths (``probe``:
    their two feature rows); frozen groups keep their features at full size in both."""
    values = [node.meta.get(META_SYM)] + [a.meta.get(META_SYM) for a in node.all_input_nodes]
    sizes = [t.numel for v in values for t in sym_tensors(v)]
    sizes += [prod(s) for s in (node.meta.get(META_PARAMS) or {}).values()]
    return any(bool(v[0] != v[1]) for v in (p.evaluate(probe) for p in sizes))


class _NodeCounter(fx.Interpreter):
    """Runs the graph once, counting with FlopCounterMode at the nodes asked for."""

    def __init__(self, gm: fx.GraphModule, nodes: set[fx.Node]):
        super().__init__(gm)
        self.wanted = nodes
        self.macs: dict[fx.Node, float] = {}

    def run_node(self, n: fx.Node) -> Any:
        if n not in self.wanted:
            return super().run_node(n)
        with FlopCounterMode(display=False) as counter:
            out = super().run_node(n)
        self.macs[n] = counter.get_total_flops() / 2
        return out


class _Counting(nn.Module):
    """The counting run as a module, so that ``torch.func.functional_call`` can swap gm's weights."""

    def __init__(self, gm: fx.GraphModule, nodes: set[fx.Node]):
        super().__init__()
        self.gm, self.nodes = gm, nodes

    def forward(self, *inputs: Any) -> dict[fx.Node, float]:
        counter = _NodeCounter(self.gm, self.nodes)
        counter.run(*inputs)
        return counter.macs


def _measure(analysis: Any, nodes: list[fx.Node]) -> dict[fx.Node, float]:
    """FlopCounterMode MACs of ``nodes`` at batch size 1 (eval mode, grad enabled: the counter's
    own convention, see DESIGN.md invariant 3).

    Each node runs alone on zero tensors of its inputs' recorded shapes, on the weights' device
    (MACs depend on shapes only), so a model with one unknown op costs one op, not a forward pass
    of the whole model. Where that fails (an op that reads values) the whole graph runs once.
    """
    gm = analysis.gm
    modes = [(m, m.training) for m in gm.modules()]
    device = next(itertools.chain(gm.parameters(), gm.buffers()), torch.empty(0)).device
    gm.eval()
    try:
        with torch.enable_grad():
            try:
                return {n: _counted_alone(gm, n, device) for n in nodes}
            except Exception:  # noqa: BLE001 - any failure: the whole run below decides
                return _counted_in_run(analysis, nodes)
    finally:
        for m, training in modes:
            m.training = training


def _counted_alone(gm: fx.GraphModule, node: fx.Node, device: torch.device) -> float:
    """MACs of ``node`` run on its own, inputs made from the recorded shapes and values."""
    if node.op not in _CALLS:
        return 0.0

    def value(a: fx.Node) -> Any:
        if a.op == "get_attr":
            return operator.attrgetter(str(a.target))(gm)
        meta = a.meta.get("tensor_meta")
        return _zeros_like_meta(meta, device) if meta is not None else a.meta[META_VALUE]

    args, kwargs = fx.node.map_arg(node.args, value), fx.node.map_arg(node.kwargs, value)
    with FlopCounterMode(display=False) as counter:
        if node.op == "call_module":
            gm.get_submodule(node.target)(*args, **kwargs)
        elif node.op == "call_method":
            getattr(args[0], node.target)(*args[1:], **kwargs)
        else:
            node.target(*args, **kwargs)
    return counter.get_total_flops() / 2


def _zeros_like_meta(meta: Any, device: torch.device) -> Any:
    """Zero tensors in the structure of a recorded ``tensor_meta`` (a pytree of TensorMetadata)."""
    if isinstance(meta, TensorMetadata):
        return torch.zeros(meta.shape, dtype=meta.dtype, device=device)
    if isinstance(meta, (tuple, list)):
        return type(meta)(_zeros_like_meta(m, device) for m in meta)
    if isinstance(meta, dict):
        return {k: _zeros_like_meta(v, device) for k, v in meta.items()}
    return meta


def _counted_in_run(analysis: Any, nodes: list[fx.Node]) -> dict[fx.Node, float]:
    """MACs of ``nodes`` in one run of the whole graph on the example inputs. The slimmable model
    shares weights with ``analysis.gm`` and may have moved them (to a GPU, say) before this first
    compile; the run then goes on meta copies of the weights and inputs."""
    gm = analysis.gm
    tensors = dict(itertools.chain(gm.named_parameters(remove_duplicate=False),
                                   gm.named_buffers(remove_duplicate=False)))
    inputs = analysis.example_inputs
    run = _Counting(gm, set(nodes))
    if all(t.device.type == "cpu" for t in tensors.values()):
        return run(*inputs)
    meta = {f"gm.{name}": torch.empty_like(t, device="meta") for name, t in tensors.items()}
    inputs = tuple(x.to("meta") if isinstance(x, torch.Tensor) else x for x in inputs)
    return torch.func.functional_call(run, meta, inputs)


def node_macs(analysis: Any) -> dict[str, Poly]:
    """MACs of every node that does any, as Polys of the features, in execution order."""
    gm: fx.GraphModule = analysis.gm
    macs: dict[str, Poly] = {}
    unknown: list[fx.Node] = []
    modules = modules_by_name(gm)
    for n in gm.graph.nodes:
        if n.op not in _CALLS:
            continue
        module = modules[n.target] if n.op == "call_module" else None
        formula = FLOP_FORMULAS.lookup(n, module)
        if formula is None:
            if not _counts_nothing(n):
                unknown.append(n)
            continue
        try:
            macs[n.name] = formula(OpShapes.of(n, module))
        except (AttributeError, IndexError, KeyError, TypeError) as e:
            raise CostModelError(
                f"FLOP formula for {n.format_node()} failed ({type(e).__name__}: {e}); the node's "
                f"{META_SYM!r}/{META_PARAMS!r} meta is missing or malformed (pass channel_groups)") from e
    measured = _measure(analysis, unknown) if unknown else {}
    if any(measured.values()):
        G = len(analysis.groups)
        probe = analysis.features(torch.tensor([[1.0] * G, [0.0] * G], dtype=torch.float64))
    for n, counted in measured.items():
        if counted == 0:
            continue
        if _depends_on_widths(n, probe):
            target = type(modules[n.target]) if n.op == "call_module" else n.target
            raise CostModelError(
                f"cost 'flops': no FLOP formula for {n.format_node()}, which does {counted:g} MACs at full "
                "width on shapes that depend on the widths; register one with "
                f"@pareco_fx.cost_models.flop_formula({target_name(target)})")
        macs[n.name] = Poly.const(counted)
    order = {n.name: i for i, n in enumerate(gm.graph.nodes)}
    return dict(sorted(macs.items(), key=lambda kv: order[kv[0]]))


class Flops:
    """The ``flops`` cost model: sum of :func:`node_macs`."""

    def compile(self, analysis: Any) -> CostProgram:
        return CostProgram(list(node_macs(analysis).values()), num_features=analysis.num_features)

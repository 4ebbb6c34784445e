"""Physical extraction: the slimmable graph at the widths in force, as plain, smaller layers.

The result is a ``torch.fx.GraphModule`` with one node per node of the original trace, standard
``torch.nn`` layers holding copies of the active weights, and constant shape arguments: it runs
without pareco-fx's runtime and survives ``torch.save``/``torch.load``.
"""
from __future__ import annotations

import copy
import operator
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn

from pareco_fx.layers import ChannelGather, SlicedTensor, WidthState, _Slim, extract_module
from pareco_fx.passes.slimmify import SlimCall, apply_spec

__all__ = ["run"]


def _copy_tensor(t: Any) -> Any:
    if isinstance(t, nn.Parameter):
        return nn.Parameter(t.detach().clone(), t.requires_grad)
    return t.detach().clone() if isinstance(t, torch.Tensor) else copy.deepcopy(t)


def run(gm: fx.GraphModule, state: WidthState) -> fx.GraphModule:
    """Extract the sub-network of ``gm`` (a slimmable graph) at the widths of ``state``."""
    graph = fx.Graph()
    val_map: dict[fx.Node, fx.Node] = {}
    graph.output(graph.graph_copy(gm.graph, val_map))
    root: dict[str, Any] = {}
    done: dict[str, Any] = {}
    for node in list(graph.nodes):
        if node.op == "get_attr":
            root[node.target] = _copy_tensor(operator.attrgetter(node.target)(gm))
        if node.op != "call_module":
            continue
        mod = gm.get_submodule(node.target)
        if isinstance(mod, SlicedTensor):
            name = node.meta["pareco.replaces"][1]
            value = mod().detach().clone()
            root[name] = nn.Parameter(value, mod.full.requires_grad) if isinstance(mod.full, nn.Parameter) else value
            with graph.inserting_before(node):
                new = graph.get_attr(name)
        elif isinstance(mod, ChannelGather):
            name = node.target + "_index"
            root[name] = mod._pareco.index[mod._key].clone()
            with graph.inserting_before(node):
                new = graph.call_function(torch.index_select, (node.args[0], mod.axis, graph.get_attr(name)))
        elif isinstance(mod, SlimCall):
            args, kwargs = apply_spec(mod.spec, node.args, node.kwargs, state)
            with graph.inserting_before(node):
                new = graph.create_node(mod.op, mod.target, args, kwargs)
        else:
            if node.target not in done:
                done[node.target] = extract_module(mod) if isinstance(mod, _Slim) else copy.deepcopy(mod)
            root[node.target] = done[node.target]
            continue
        new.meta = node.meta
        node.replace_all_uses_with(new)
        graph.erase_node(node)
    graph.lint()
    out = fx.GraphModule(root, graph, gm.__class__.__name__)
    out.train(gm.training)
    return out

"""Units and groups from the ties collected by the channel-label propagation.

Connected components of the ties are *units* (channels that are on or off together). Units that
always follow each other in the same order, in every tensor a layer creates, form a *group*; a
group is cut wherever some tensor holds only part of it, so every tensor holds a prefix of each of
its groups (a split or chunk makes pieces; no tensor can shrink to zero channels).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import connected_components

from pareco_fx.ir import ChannelGroup
from pareco_fx.passes.labels import META_LAYER, Layout, leaves

__all__ = ["units_and_groups"]


def _groups_from_ties(prop: Any) -> tuple:
    N = prop.next_id
    pairs = np.concatenate(prop.pairs) if prop.pairs else np.zeros((0, 2), dtype=np.int64)
    adj = sp.coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(N, N))
    _, comp = connected_components(adj, directed=False)
    ncomp = int(comp.max()) + 1
    frozen_units: dict[int, str] = {}
    for ids, reason in prop.frozen:
        for c in np.unique(comp[ids]):
            frozen_units.setdefault(int(c), reason)

    # first_real: the earliest channel of each unit created by a layer (not a parameter element)
    first_real = np.full(ncomp, N, dtype=np.int64)
    real_atoms = [(start, size) for start, size, _, real in prop.atoms if real]
    for start, size in real_atoms:
        np.minimum.at(first_real, comp[start:start + size], np.arange(start, start + size))
    real_unit = first_real < N
    succ: dict[int, set] = {}
    pred: dict[int, set] = {}
    START, END = -1, -2
    for start, size in real_atoms:
        s = comp[start:start + size]
        if (first_real[s] < start).all():
            continue  # every unit existed before (depthwise conv, residual branch): no new order
        s = s[np.r_[True, s[1:] != s[:-1]]]
        pred.setdefault(int(s[0]), set()).add(START)
        succ.setdefault(int(s[-1]), set()).add(END)
        for a, b in zip(s[:-1].tolist(), s[1:].tolist()):
            succ.setdefault(a, set()).add(b)
            pred.setdefault(b, set()).add(a)
    nxt = {}
    for a, ss in succ.items():
        if len(ss) == 1:
            b = next(iter(ss))
            if b != END and len(pred[b]) == 1:
                nxt[a] = b
    has_prev = set(nxt.values())
    min_id = first_real
    heads = sorted((u for u in np.flatnonzero(real_unit).tolist() if u not in has_prev), key=lambda u: min_id[u])
    unit_group = np.full(ncomp, -1, dtype=np.int64)
    unit_rank = np.full(ncomp, -1, dtype=np.int64)
    chains = []
    for h in heads:
        chain = [h]
        while chain[-1] in nxt:
            chain.append(nxt[chain[-1]])
        gid = len(chains)
        unit_group[chain] = gid
        unit_rank[chain] = np.arange(len(chain))
        chains.append(chain)
    unit_group[comp[0]] = -1  # FIXED is never part of a group
    chains = _split_for_prefixes(chains, comp, unit_group, unit_rank, _vectors(prop))
    chains.sort(key=lambda c: min_id[c[0]])
    for gid, chain in enumerate(chains):
        unit_group[chain] = gid
        unit_rank[chain] = np.arange(len(chain))
    return comp, unit_group, unit_rank, chains, frozen_units, pairs, min_id


def _vectors(prop: Any) -> list[torch.Tensor]:
    """Every channel vector a tensor or layer holds (interleaved intermediates aside)."""
    out = list(prop.constants)
    for node in prop.gm.graph.nodes:
        for lay in leaves(prop.env.get(node)):
            if isinstance(lay, Layout) and lay.axis is not None:
                out.append(lay.vec)
        out.extend(v for v in (node.meta.get(META_LAYER) or {}).values() if isinstance(v, torch.Tensor))
    return out


def _split_for_prefixes(chains: list[list[int]], comp: np.ndarray, unit_group: np.ndarray,
                        unit_rank: np.ndarray, vecs: list[torch.Tensor]) -> list[list[int]]:
    """Cut groups so that every tensor holding part of a group holds its first unit: a slice of
    a group (split, chunk, narrow) becomes a group of its own, and no tensor can shrink to zero
    channels."""
    units = [np.unique(comp[v.numpy()]) for v in vecs]
    changed = True
    while changed:
        changed = False
        for u in units:
            g = unit_group[u]
            u, g = u[g >= 0], g[g >= 0]
            r = unit_rank[u]
            for gid in np.unique(g).tolist():
                first = int(r[g == gid].min())
                if first > 0:
                    tail = chains[gid][first:]
                    chains[gid] = chains[gid][:first]
                    new = len(chains)
                    chains.append(tail)
                    unit_group[tail] = new
                    unit_rank[tail] = np.arange(len(tail))
                    changed = True
    return chains


def _atom_of(prop: Any, ch: int) -> tuple[int, int, str, bool]:
    for atom in prop.atoms:
        if atom[0] <= ch < atom[0] + atom[1]:
            return atom
    raise AssertionError(ch)


def _build_groups(prop: Any, comp, chains, frozen_units, min_id) -> list[ChannelGroup]:
    groups = []
    for gid, chain in enumerate(chains):
        start, size, _, _ = _atom_of(prop, int(min_id[chain[0]]))
        mult = np.bincount(comp[start:start + size], minlength=int(comp.max()) + 1)[chain]
        q = int(mult[0]) if (mult == mult[0]).all() and mult[0] > 0 else 1
        channels = len(chain) * q
        reason = next((frozen_units[u] for u in chain if u in frozen_units), None)
        if reason is None and len(chain) == 1:
            reason = f"a single unit of {q} channel(s): nothing to slim"
        groups.append(ChannelGroup(gid, channels, reason is None, reason, (), q))
    return groups


# ---------------------------------------------------------------------------------------------


def units_and_groups(prop: Any) -> tuple:
    """(comp, unit_group, unit_rank, groups, frozen_units, pairs) of a finished propagation."""
    comp, unit_group, unit_rank, chains, frozen_units, pairs, first = _groups_from_ties(prop)
    return comp, unit_group, unit_rank, _build_groups(prop, comp, chains, frozen_units, first), frozen_units, pairs

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

__all__ = ["present_groups", "units_and_groups"]


def _groups_from_ties(prop: Any) -> tuple:
    N = prop.next_id
    pairs = np.concatenate(prop.pairs) if prop.pairs else np.zeros((0, 2), dtype=np.int64)
    adj = sp.coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(N, N))
    _, comp = connected_components(adj, directed=False)
    ncomp = int(comp.max()) + 1

    # Every channel created by a layer (not a parameter element), atom by atom, and its atom.
    real_atoms = [(start, size) for start, size, _, real in prop.atoms if real]
    sizes = np.array([size for _, size in real_atoms], dtype=np.int64)
    atom = np.repeat(np.arange(len(real_atoms)), sizes)
    ch = np.concatenate([np.arange(start, start + size) for start, size in real_atoms]
                        or [np.zeros(0, dtype=np.int64)])
    unit = comp[ch].astype(np.int64)
    # first_real: the earliest channel of each unit created by a layer
    first_real = np.full(ncomp, N, dtype=np.int64)
    np.minimum.at(first_real, unit, ch)
    real_unit = first_real < N
    frozen_units = _frozen_units(prop.frozen, comp, real_unit)
    # An atom whose units all existed before (depthwise conv, residual branch) adds no order.
    starts = np.array([start for start, _ in real_atoms], dtype=np.int64)
    new_atom = np.zeros(len(real_atoms), dtype=bool)
    new_atom[atom[first_real[unit] >= starts[atom]]] = True
    seq, atom = unit[new_atom[atom]], atom[new_atom[atom]]
    # The order of units along each atom: runs of one unit count once.
    run = (np.diff(seq, prepend=-1) != 0) | (np.diff(atom, prepend=-1) != 0)
    seq, atom = seq[run], atom[run]
    cont = atom[1:] == atom[:-1]  # seq[i] -> seq[i + 1] inside one atom
    a, b = seq[:-1][cont], seq[1:][cont]
    first, last = seq[np.diff(atom, prepend=-1) != 0], seq[np.diff(atom, append=-1) != 0]
    # Distinct successors (END counts) and predecessors (START counts) of every unit; a unit
    # follows another in a group when each is the other's only one.
    K = ncomp + 1  # pair key a * K + b; ncomp stands for START / END
    out_deg = np.bincount(_distinct(np.r_[a * K + b, last * K + ncomp]) // K, minlength=ncomp)
    in_deg = np.bincount(_distinct(np.r_[b * K + a, first * K + ncomp]) // K, minlength=ncomp)
    link = (out_deg[a] == 1) & (in_deg[b] == 1)
    nxt = np.full(ncomp, -1, dtype=np.int64)
    nxt[a[link]] = b[link]
    has_prev = np.zeros(ncomp, dtype=bool)
    has_prev[b[link]] = True
    min_id = first_real
    heads = np.flatnonzero(real_unit & ~has_prev)
    heads = heads[np.argsort(min_id[heads], kind="stable")]
    nxt = nxt.tolist()
    chains = []
    for h in heads.tolist():
        chain = [h]
        while nxt[chain[-1]] >= 0:
            chain.append(nxt[chain[-1]])
        chains.append(chain)
    unit_group = np.full(ncomp, -1, dtype=np.int64)
    unit_rank = np.full(ncomp, -1, dtype=np.int64)
    _number(chains, unit_group, unit_rank)
    unit_group[comp[0]] = -1  # FIXED is never part of a group
    chains = _split_for_prefixes(chains, comp, unit_group, unit_rank, _vectors(prop))
    chains.sort(key=lambda c: min_id[c[0]])
    _number(chains, unit_group, unit_rank)
    return comp, unit_group, unit_rank, chains, frozen_units, pairs, min_id


def _frozen_units(frozen: list[tuple[np.ndarray, str]], comp: np.ndarray, real_unit: np.ndarray) -> dict[int, str]:
    """{unit: reason of the first entry freezing it} for the units layers create (those groups
    are made of; parameter elements, millions in swin_t, are left out), in the order a loop over
    the entries (each unit by unit) would meet them."""
    if not frozen:
        return {}
    entry = np.full(len(real_unit), len(frozen), dtype=np.int64)
    np.minimum.at(entry, comp[np.concatenate([ids for ids, _ in frozen])],
                  np.repeat(np.arange(len(frozen)), [len(ids) for ids, _ in frozen]))
    units = np.flatnonzero((entry < len(frozen)) & real_unit)
    units = units[np.argsort(entry[units], kind="stable")]
    reasons = np.array([reason for _, reason in frozen], dtype=object)
    return dict(zip(units.tolist(), reasons[entry[units]].tolist()))


def present_groups(gid: np.ndarray) -> list[int]:
    """The distinct group ids (>= 0) in ``gid``, sorted: ``np.unique`` by counting, many times
    faster on the small id range of groups."""
    return np.flatnonzero(np.bincount(gid[gid >= 0])).tolist() if gid.size else []


def _distinct(x: np.ndarray) -> np.ndarray:
    """``np.unique`` of non-negative ints by sorting: many times faster than its hash table."""
    x = np.sort(x)
    return x[np.diff(x, prepend=-1) != 0]


def _number(chains: list[list[int]], unit_group: np.ndarray, unit_rank: np.ndarray) -> None:
    """Set the group (index in ``chains``) and rank of every unit of ``chains``."""
    if not chains:
        return
    sizes = np.array([len(c) for c in chains], dtype=np.int64)
    flat = np.concatenate(chains)
    unit_group[flat] = np.repeat(np.arange(len(chains)), sizes)
    unit_rank[flat] = np.arange(len(flat)) - np.repeat(np.cumsum(sizes) - sizes, sizes)


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
    if not chains:
        return chains
    # The chains end to end; a cut marks the first unit of each group. Cuts only add up and a
    # cut stays needed once made, so cutting at every tensor's first unit in each group, round
    # after round, reaches the same groups as cutting one at a time.
    order = np.concatenate(chains)
    cut = np.zeros(len(order), dtype=bool)
    cut[np.cumsum([0] + [len(c) for c in chains[:-1]])] = True
    pos = np.full(len(unit_group), -1, dtype=np.int64)
    pos[order] = np.arange(len(order))
    pos[unit_group < 0] = -1  # FIXED cuts nothing
    # (tensor, position) of every grouped unit a tensor holds, sorted (repeats do no harm): the
    # first of each (tensor, group) run is the earliest unit of that group the tensor holds.
    labels = np.concatenate([v.reshape(-1).numpy() for v in vecs] or [np.zeros(0, dtype=np.int64)])
    held = pos[comp[labels]]
    vec = np.repeat(np.arange(len(vecs)), [v.numel() for v in vecs])[held >= 0]
    key = np.sort(vec * len(order) + held[held >= 0])
    vec, held = key // len(order), key % len(order)
    while True:
        group = np.cumsum(cut)[held]
        earliest = held[(np.diff(vec, prepend=-1) != 0) | (np.diff(group, prepend=-1) != 0)]
        earliest = earliest[~cut[earliest]]
        if not len(earliest):
            break
        cut[earliest] = True
    chains = [c.tolist() for c in np.split(order, np.flatnonzero(cut)[1:])]
    _number(chains, unit_group, unit_rank)
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

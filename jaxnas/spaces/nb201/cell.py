"""The NAS-Bench-201 cell (Dong & Yang, ICLR 2020) encoded as arrays: strings, indices, sampling.

A cell has 4 nodes and 6 edges j -> i (j < i); each edge carries one of 5 ops. An architecture is
`int32[6]` op ids in the edge order of the NB201 string `|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`,
i.e. edges (1<-0), (2<-0), (2<-1), (3<-0), (3<-1), (3<-2) -- the same order as xautodl's sorted
`edge2index`. The equivalent one-hot mask is `float[6, 5]`. Batches carry a leading axis.
"""
from __future__ import annotations

import functools
import os
import re

import jax
import jax.numpy as jnp
import numpy as np

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
NONE, SKIP, CONV1, CONV3, POOL = range(5)
NUM_OPS = len(OPS)
EDGES = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))  # (to_node, from_node), string order
NUM_EDGES = len(EDGES)
NUM_NODES = 4
NUM_ARCHS = NUM_OPS**NUM_EDGES  # 15,625
INDEX_FILE = os.path.join(os.path.dirname(__file__), "index.npy")
# The cell plan every walk of the cell shares: node i's incoming edges (e, source node) and
# node j's outgoing edges (e, target node), in edge order.
NODE_INPUTS = {i: tuple((e, j) for e, (to, j) in enumerate(EDGES) if to == i) for i in range(1, NUM_NODES)}
NODE_OUTPUTS = {j: tuple((e, to) for e,
                         (to, src) in enumerate(EDGES) if src == j) for j in range(NUM_NODES - 1)}

_TOKEN = re.compile(r"^([a-z0-9_]+)~(\d+)$")


def validate(arch) -> np.ndarray:
    """Return `arch` as int32[..., 6] or raise ValueError saying what is wrong."""
    a = np.asarray(arch)
    if a.ndim == 0 or a.shape[-1] != NUM_EDGES:
        raise ValueError(f"NB201 architecture must have shape [..., {NUM_EDGES}], got {a.shape}")
    if not np.issubdtype(a.dtype, np.integer) and not np.all(np.equal(np.mod(a, 1), 0)):
        raise ValueError(f"NB201 op ids must be integers, got dtype {a.dtype}")
    if a.size and (a.min() < 0 or a.max() >= NUM_OPS):
        bad = a[(a < 0) | (a >= NUM_OPS)]
        raise ValueError(f"NB201 op ids must be in [0, {NUM_OPS}), got {bad.ravel()[:5].tolist()}")
    return a.astype(np.int32)


def to_string(arch) -> str:
    """int32[6] -> `|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`."""
    a = validate(arch)
    if a.ndim != 1:
        raise ValueError(f"to_string takes one architecture of shape [6], got {a.shape}")
    nodes = []
    for i in range(1, NUM_NODES):
        toks = [f"{OPS[a[e]]}~{j}" for e, j in NODE_INPUTS[i]]
        nodes.append("|" + "|".join(toks) + "|")
    return "+".join(nodes)


def from_string(s: str) -> np.ndarray:
    """NB201 string -> int32[6]; ValueError naming the offending part."""
    if not isinstance(s, str):
        raise ValueError(f"NB201 string expected, got {type(s).__name__}")
    parts = s.strip().split("+")
    if len(parts) != NUM_NODES - 1:
        raise ValueError(f"NB201 string must have {NUM_NODES - 1} '+'-separated nodes, got {len(parts)}: "
                         f"{s!r}")
    arch = np.zeros(NUM_EDGES, np.int32)
    for i, part in enumerate(parts, start=1):
        if not (part.startswith("|") and part.endswith("|")):
            raise ValueError(f"node {i} of {s!r} must be enclosed in '|': {part!r}")
        toks = part[1:-1].split("|")
        if len(toks) != i:
            raise ValueError(f"node {i} of {s!r} must have {i} inputs, got {len(toks)}: {part!r}")
        for j, tok in enumerate(toks):
            m = _TOKEN.match(tok)
            if not m:
                raise ValueError(f"malformed edge {tok!r} in {s!r}; expected 'op~j'")
            op, src = m.group(1), int(m.group(2))
            if op not in OPS:
                raise ValueError(f"unknown op {op!r} in {s!r}; ops are {', '.join(OPS)}")
            if src != j:
                raise ValueError(f"edge {tok!r} of node {i} in {s!r} must come from node {j}")
            arch[EDGES.index((i, j))] = OPS.index(op)
    return arch


def to_mask(arch) -> jnp.ndarray:
    """int32[..., 6] -> one-hot float32[..., 6, 5] (works on traced arrays too)."""
    if not isinstance(arch, jax.Array):
        arch = validate(arch)
    return jax.nn.one_hot(arch, NUM_OPS, dtype=jnp.float32)


def from_mask(mask) -> np.ndarray:
    """One-hot [..., 6, 5] -> int32[..., 6]; each edge must have exactly one op."""
    m = np.asarray(mask)
    if m.ndim < 2 or m.shape[-2:] != (NUM_EDGES, NUM_OPS):
        raise ValueError(f"NB201 mask must have shape [..., {NUM_EDGES}, {NUM_OPS}], got {m.shape}")
    if not np.all((m == 0) | (m == 1)) or not np.all(m.sum(-1) == 1):
        raise ValueError("NB201 mask must be one-hot along its last axis (exactly one op per edge)")
    return m.argmax(-1).astype(np.int32)


def encode(arch) -> np.ndarray:
    """Base-5 code sum_e op_e * 5**e (a dense id in [0, 15625), not the NB201 index)."""
    a = validate(arch).astype(np.int64)
    return (a * NUM_OPS ** np.arange(NUM_EDGES)).sum(-1)


def decode(code) -> np.ndarray:
    """Inverse of `encode`."""
    c = np.asarray(code, np.int64)
    if c.size and (c.min() < 0 or c.max() >= NUM_ARCHS):
        raise ValueError(f"code must be in [0, {NUM_ARCHS})")
    return ((c[..., None] // NUM_OPS ** np.arange(NUM_EDGES)) % NUM_OPS).astype(np.int32)


@functools.cache
def _index_tables():
    codes = np.load(INDEX_FILE).astype(np.int64)  # NB201 index -> code
    inverse = np.empty(NUM_ARCHS, np.int64)
    inverse[codes] = np.arange(NUM_ARCHS)
    return codes, inverse


def to_index(arch) -> np.ndarray:
    """NB201 benchmark index (row of the NB201 tables) of one or many architectures."""
    return _index_tables()[1][encode(arch)]


def from_index(index) -> np.ndarray:
    """Architecture(s) with the given NB201 index (0..15624)."""
    i = np.asarray(index, np.int64)
    if i.size and (i.min() < 0 or i.max() >= NUM_ARCHS):
        raise ValueError(f"NB201 index must be in [0, {NUM_ARCHS}), got {i.ravel()[:5].tolist()}")
    return decode(_index_tables()[0][i])


def enumerate_all() -> np.ndarray:
    """All 15,625 architectures as int32[15625, 6], row k = NB201 index k."""
    return from_index(np.arange(NUM_ARCHS))


def sample(key, k: int, allowed=None) -> jnp.ndarray:
    """K architectures drawn uniformly (each edge's op independently), int32[k, 6].

    `allowed` (bool[6, 5] or None): the ops each edge may take (a shrunk space); each edge's op is
    uniform over its allowed ones. The draw is the r-th allowed op for r ~ randint(0, count), so a
    full mask draws exactly what `allowed=None` draws. Traceable."""
    if allowed is None:
        return jax.random.randint(key, (k, NUM_EDGES), 0, NUM_OPS, dtype=jnp.int32)
    allowed = jnp.asarray(allowed, bool)
    count = allowed.sum(-1).astype(jnp.int32)
    r = jax.random.randint(key, (k, NUM_EDGES), 0, count, dtype=jnp.int32)
    position = jnp.cumsum(allowed, -1, dtype=jnp.int32)  # [6, 5]: allowed ops up to and including op
    return jnp.argmax((position[None] > r[..., None]) & allowed[None], -1).astype(jnp.int32)


def count_ops(arch) -> np.ndarray:
    """Per-op counts, int[..., 5]."""
    a = validate(arch)
    return np.stack([(a == o).sum(-1) for o in range(NUM_OPS)], -1)


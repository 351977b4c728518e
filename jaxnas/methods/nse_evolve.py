"""NSE's evolving search space as fixed-shape, traceable rules (Ci et al., ICCV 2021; orashi/NSE_NAS@939edf2
utils/supernet_utils.py su:850-880, 936-1117, 1260-1295; docs/nse-reference.md sections 2, 4, 5, 8).

Per cell (or NB201 edge) c over a pool of P operators, the evolution state is:
    active  bool[C, P]   S_c, the operators the round trains and searches (at most K)
    perm    int32[C, P]  the cell's refill order: a permutation of the pool drawn once
    next    int32[C]     how much of `perm` has been handed out (pending_c = perm[c, next_c:])
    kept    bool[C, P]   the operators of the last Pareto front (cleaning never drops them)
S_c starts as the first K of `perm`. Dropped operators are gone for good (never back in pending).

The architecture law is the product of independent gates with p = sigmoid(alpha) 0.999 + 5e-4 over
the active operators, listed in K fixed slots (`slots`); patterns that leave a cell that must run an
operator empty have probability 0 (`jaxnas.search.pairs`). With `single` (the NB201 variant: one
operator per edge, so every architecture is a genotype) it is a categorical, softmax(alpha) over the
active operators, and a pattern is one slot.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxnas import search
from jaxnas.search import pairs


def initial(key, cells: int, pool: int, k: int) -> dict:
    """The first round's state: a random refill order per cell, S_c its first k operators."""
    keys = jax.random.split(key, cells)
    perm = jax.vmap(lambda kk: jax.random.permutation(kk, pool))(keys).astype(jnp.int32)
    active = jnp.zeros((cells, pool), bool).at[jnp.arange(cells)[:, None], perm[:, :k]].set(True)
    return {"active": active, "perm": perm, "next": jnp.full((cells,), min(k, pool), jnp.int32),
            "kept": jnp.zeros((cells, pool), bool)}


def probabilities(alpha):
    """p = sigmoid(alpha) 0.999 + 5e-4 (su:963, 1028, 1109): never exactly 0 or 1."""
    return jax.nn.sigmoid(alpha) * 0.999 + 5e-4


def clean(alpha, active, kept, identity, threshold: float, preserve: bool = True):
    """Cleaning (su:1279-1295): operator i of S_c stays iff alpha >= threshold, or the cell is not an
    identity cell and holds exactly 2, or (with `preserve`) the last front kept it. Guard (D8): a
    non-identity cell that would lose every operator keeps its highest-alpha one (ties: lowest id);
    the reference then crashes."""
    count = active.sum(-1, keepdims=True)
    stay = active & ((alpha >= threshold) | ((~identity)[:, None] & (count == 2)) | (preserve & kept))
    emptied = (~identity) & active.any(-1) & ~stay.any(-1)
    best = jnp.argmax(jnp.where(active, alpha, -jnp.inf), -1)
    rescue = emptied[:, None] & (jnp.arange(active.shape[-1]) == best[:, None])
    return stay | rescue


def refill(kept, perm, next_, k: int):
    """The next round's subset (update_space, su:1270-1277): S_c = kept_c plus the first
    min(k - |kept_c|, |pending_c|) operators of pending_c; returns (active, next)."""
    pool = perm.shape[-1]
    need = jnp.maximum(k - kept.sum(-1), 0)
    take = jnp.minimum(need, pool - next_)
    pos = jnp.arange(pool)
    handed = (pos[None] >= next_[:, None]) & (pos[None] < (next_ + take)[:, None])
    new = jnp.zeros_like(kept).at[jnp.arange(perm.shape[0])[:, None], perm].set(handed)  # perm: each id once
    return kept | new, next_ + take


def front_ops(front, valid):
    """kept: per cell the union of the operators of the front's architectures (`front` bool[F, C, P],
    `valid` bool[F] marks the rows in use)."""
    return (front & valid[:, None, None]).any(0)


def slots(active, k: int):
    """(int32[C, k] the active operators in pool order, then distinct inactive ones; bool[C, k] which
    slots hold an active one)."""
    order = jnp.argsort(~active, axis=-1, stable=True)[:, :k].astype(jnp.int32)
    return order, jnp.take_along_axis(active, order, -1)


def pattern_table(k: int, single: bool = False) -> np.ndarray:
    """bool[patterns, k]: the slot patterns of the law (every subset; one slot each when `single`)."""
    return np.eye(k, dtype=bool) if single else pairs.patterns(k)


def pattern_gates(ids, held, pattern_index, pool: int, single: bool = False):
    """bool[C, P]: the gates of pattern `pattern_index[c]` over cell c's slots."""
    bits = jnp.asarray(pattern_table(ids.shape[-1], single))[pattern_index] & held
    return jnp.zeros(ids.shape[:-1] + (pool,), bool).at[jnp.arange(ids.shape[0])[:, None], ids].set(bits)


def log_probs(alpha, active, identity, k: int, single: bool = False):
    """(float[C, patterns] each slot pattern's log-probability, slot ids, slot validity)."""
    ids, held = slots(active, k)
    if single:  # a categorical over the cell's active operators (an edge always holds one)
        logits = jnp.where(held, jnp.take_along_axis(alpha, ids, -1), -jnp.inf)
        return jax.nn.log_softmax(logits, -1), ids, held
    p = jnp.take_along_axis(probabilities(alpha), ids, -1)
    return pairs.pattern_log_probs(p, held, ~identity & active.any(-1)), ids, held


def pair(key, alpha, active, identity, k: int, cost_table, single: bool = False):
    """The architecture step's draw (su:1010-1117): per cell two distinct patterns s, u and their
    pair-renormalised probabilities. Returns ({"s", "u"} bool[C, P] gates, q float[C, 2], the
    expected cost sum_c cost(s_c) q_s + cost(u_c) q_u over `cost_table` [C, P]), differentiable in
    alpha through q. A cell with one valid pattern (a single operator it must run, or an empty
    identity cell) gets q = (1, 0)."""
    logp, ids, held = log_probs(alpha, active, identity, k, single)
    draw = pairs.sample_pair(key, jax.lax.stop_gradient(logp))
    q_s, q_u = pairs.pair_weights(logp, draw)
    one = jnp.isinf(jnp.take_along_axis(logp, draw[:, 1:], -1))[:, 0]
    q_s, q_u = jnp.where(one, 1.0, q_s), jnp.where(one, 0.0, q_u)
    pool = active.shape[-1]
    s, u = (pattern_gates(ids, held, draw[:, i], pool, single) for i in (0, 1))
    cost_s, cost_u = (jnp.where(g, cost_table, 0).sum(-1) for g in (s, u))
    expected = jnp.sum(cost_s * q_s + cost_u * q_u)
    return {"s": s, "u": u}, jnp.stack([q_s, q_u], -1), expected


def penalty(expected, back, target: float, weight: float, power: float):
    """mac_alpha (E + back - target)^mac_beta (main.py:606-607, 625-627)."""
    return weight * (expected + back - target) ** power


def sample(key, alpha, active, identity, k: int, n: int, single: bool = False):
    """bool[n, C, P]: n architectures, each cell one draw of a pattern from the trained law (su:962-984)."""
    logp, ids, held = log_probs(alpha, active, identity, k, single)
    idx = jax.random.categorical(key, logp, axis=-1, shape=(n, logp.shape[0]))
    return jax.vmap(lambda i: pattern_gates(ids, held, i, active.shape[-1], single))(idx)


# --- the round end on the host (main.py:396-479) ---------------------------------------------------

SAMPLE, EXTRA, OLD = 0, 1, 2  # a round-end candidate's origin, in the order they are listed


def next_front(cost, acc, origin) -> np.ndarray:
    """Indices of the new Pareto front over (cost, accuracy) (main.py:244-255, 422-443; D10, D11):
    candidates listed as the new samples, the extras, then the previous front (`origin`); the
    previous front's accuracies count 1e-10 lower, so they lose ties to new samples; weak dominance,
    the first of identical rows kept (`search.pareto_front(duplicates="first")`); the extras may
    eliminate samples and are then dropped (should they eliminate all, the front is taken without
    them). The front: surviving samples, then old members, each in their listed order."""
    origin = np.asarray(origin)
    acc = np.asarray(acc, np.float64) - 1e-10 * (origin == OLD)
    objectives = np.stack([np.asarray(cost, np.float64), acc], 1)
    idx = search.pareto_front(objectives, [False, True], duplicates="first")
    idx = idx[origin[idx] != EXTRA]
    if len(idx) or not (origin != EXTRA).any():
        return idx
    # guard: extras dominated every other candidate (likely when accuracies tie, e.g. at chance): the
    # reference would go on with an empty front and nothing kept; here the front without the extras
    rest = np.flatnonzero(origin != EXTRA)
    return rest[search.pareto_front(objectives[rest], [False, True], duplicates="first")]


def window_sample(draw, cost, n: int, lo: float, hi: float, n_extra: int, extra_lo: float, exclude=(),
                  max_tries: int | None = None):
    """The round end's candidates (su:1139-1180): `n` distinct architectures with lo < cost < hi, then
    `n_extra` more with extra_lo < cost <= lo, in the order `draw(i)` (the i-th batch, host bool
    [B, ...]) yields them; `cost(batch)` gives their costs. Architectures in `exclude` (the current
    front, D12) are not drawn again. The reference loops until both are full (D13); here drawing
    stops after `max_tries` (default 100 n) architectures with what was found, and an empty window
    is an error. Returns (samples, extras, architectures drawn)."""
    max_tries = 100 * max(n, 1) if max_tries is None else max_tries
    seen = {np.asarray(a, bool).tobytes() for a in exclude}
    found, extra, tried, i = [], [], 0, 0
    while (len(found) < n or len(extra) < n_extra) and tried < max_tries:
        batch = np.asarray(draw(i), bool)
        costs = np.asarray(cost(batch), np.float64)
        i, tried = i + 1, tried + len(batch)
        for arch, c in zip(batch, costs):
            key = arch.tobytes()
            if key in seen:
                continue
            if lo < c < hi and len(found) < n:
                found.append(arch)
            elif extra_lo < c <= lo and len(extra) < n_extra:
                extra.append(arch)
            else:
                continue
            seen.add(key)
    if not found:
        raise ValueError(f"no architecture in the cost window ({lo:g}, {hi:g}) among {tried} drawn: "
                         "the subset or the trained probabilities cannot reach it; widen nse.window")
    extras = np.stack(extra) if extra else np.zeros((0, *found[0].shape), bool)
    return np.stack(found), extras, tried

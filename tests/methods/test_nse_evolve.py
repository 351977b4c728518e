"""NSE's space-evolution rules (`methods/nse_evolve.py`) against direct loops written from the
reference's rules (docs/nse-reference.md sections 4-5, D8): cleaning, refill, the front's kept
operators, the first round's subset, the pair draw's gates, probabilities and expected cost, and the
round-end sampler's law."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnas.methods import nse_evolve as ev

C, P, K = 6, 9, 4


def random_case(seed):
    rng = np.random.default_rng(seed)
    active = np.zeros((C, P), bool)
    for c in range(C):
        active[c, rng.choice(P, rng.integers(0, K + 1), replace=False)] = True
    kept = active & (rng.random((C, P)) < 0.3)
    alpha = rng.normal(-1.5, 1.5, (C, P)).round(1)  # ties on purpose
    identity = rng.random(C) < 0.4
    return alpha, active, kept, identity


def clean_loop(alpha, active, kept, identity, threshold, preserve=True):
    out = np.zeros_like(active)
    for c in range(C):
        members = [i for i in range(P) if active[c, i]]
        for i in members:
            out[c, i] = (alpha[c, i] >= threshold or (not identity[c] and len(members) == 2)
                         or (preserve and kept[c, i]))
        if members and not identity[c] and not out[c].any():  # D8: the highest alpha, lowest id on ties
            best = max(members, key=lambda i: (alpha[c, i], -i))
            out[c, best] = True
    return out


def test_cleaning_follows_the_rule_and_the_empty_cell_guard():
    guarded = 0
    for seed in range(40):
        alpha, active, kept, identity = random_case(seed)
        for preserve in (True, False):
            got = np.asarray(ev.clean(jnp.asarray(alpha), jnp.asarray(active), jnp.asarray(kept),
                                      jnp.asarray(identity), -2.0, preserve))
            np.testing.assert_array_equal(got, clean_loop(alpha, active, kept, identity, -2.0, preserve))
            plain = active & ((alpha >= -2) | (preserve & kept))
            guarded += int(((~identity) & active.any(-1) & ~plain.any(-1) & (active.sum(-1) != 2)).sum())
    assert guarded > 0  # the guard was exercised


def test_refill_hands_out_the_pending_queue_in_order():
    rng = np.random.default_rng(0)
    for _ in range(20):
        perm = np.stack([rng.permutation(P) for _ in range(C)]).astype(np.int32)
        nxt = rng.integers(0, P + 1, C).astype(np.int32)
        kept = np.zeros((C, P), bool)
        for c in range(C):  # kept ops come from those already handed out
            handed_out = perm[c, :nxt[c]]
            if len(handed_out):
                kept[c, rng.choice(handed_out, rng.integers(0, min(len(handed_out), K + 1) + 1),
                                   replace=False)] = True
        active, new_next = ev.refill(jnp.asarray(kept), jnp.asarray(perm), jnp.asarray(nxt), K)
        for c in range(C):
            want, pending = set(np.flatnonzero(kept[c])), list(perm[c, nxt[c]:])
            while len(want) < K and pending:
                want.add(pending.pop(0))
            assert set(np.flatnonzero(np.asarray(active[c]))) == want
            assert int(new_next[c]) == P - len(pending)


def test_first_round_front_ops_and_slots():
    state = ev.initial(jax.random.key(0), C, P, K)
    perm = np.asarray(state["perm"])
    assert all(sorted(row) == list(range(P)) for row in perm)
    for c in range(C):
        assert set(np.flatnonzero(np.asarray(state["active"][c]))) == set(perm[c, :K])
    front = np.random.default_rng(1).random((5, C, P)) < 0.3
    valid = np.array([True, False, True, True, False])
    np.testing.assert_array_equal(np.asarray(ev.front_ops(jnp.asarray(front), jnp.asarray(valid))),
                                  front[valid].any(0))
    alpha, active, _, _ = random_case(3)
    ids, held = ev.slots(jnp.asarray(active), K)
    for c in range(C):
        members = list(np.flatnonzero(active[c]))
        assert list(np.asarray(ids[c])[np.asarray(held[c])]) == members
        assert len(set(np.asarray(ids[c]).tolist())) == K


def law(alpha, active, identity, c, single=False):
    """Cell c's valid gate subsets and their product-Bernoulli probabilities, normalised (a loop);
    `single`: one operator each, with softmax probabilities over the cell's active ones."""
    members = list(np.flatnonzero(active[c]))
    if single:
        w = {i: np.exp(alpha[c, i]) for i in members}
        return {frozenset([i]): w[i] / sum(w.values()) for i in members}
    p = {i: 1 / (1 + np.exp(-alpha[c, i])) * 0.999 + 5e-4 for i in members}
    out = {}
    for bits in itertools.product((0, 1), repeat=len(members)):
        on = frozenset(i for i, b in zip(members, bits) if b)
        if not on and members and not identity[c]:
            continue
        out[on] = np.prod([p[i] if b else 1 - p[i] for i, b in zip(members, bits)])
    total = sum(out.values())
    return {k: v / total for k, v in out.items()}


def single_case(seed):
    """random_case with 2 to K operators in every cell and no identity cell (NB201 edges)."""
    alpha, active, kept, identity = random_case(seed)
    rng = np.random.default_rng(seed + 100)
    for c in range(C):
        if active[c].sum() < 2:
            active[c, rng.choice(P, 2, replace=False)] = True
    return alpha, active, kept, np.zeros(C, bool)


@pytest.mark.parametrize("single", [False, True], ids=["multi-branch", "single"])
def test_pair_draw_weights_cost_and_gradient_zeros(single):
    alpha, active, _, identity = (single_case if single else random_case)(5)
    table = np.random.default_rng(2).integers(1, 100, (C, P)).astype(np.float64)
    args = (jnp.asarray(active), jnp.asarray(identity), K, jnp.asarray(table, jnp.float32), single)
    for seed in range(5):
        key = jax.random.key(seed)
        gates, q, expected = ev.pair(key, jnp.asarray(alpha, jnp.float32), *args)
        s, u, q = np.asarray(gates["s"]), np.asarray(gates["u"]), np.asarray(q, np.float64)
        want = 0.0
        for c in range(C):
            dist = law(alpha, active, identity, c, single)
            s_c, u_c = frozenset(np.flatnonzero(s[c])), frozenset(np.flatnonzero(u[c]))
            assert s_c in dist and s_c <= set(np.flatnonzero(active[c]))
            if len(dist) == 1:
                assert tuple(q[c]) == (1.0, 0.0)
            else:
                assert u_c in dist and u_c != s_c
                np.testing.assert_allclose(q[c, 0], dist[s_c] / (dist[s_c] + dist[u_c]), rtol=1e-5)
            want += table[c, list(s_c)].sum() * q[c, 0] + table[c, list(u_c)].sum() * q[c, 1]
        np.testing.assert_allclose(float(expected), want, rtol=1e-5)
        grad = np.asarray(jax.grad(lambda a, k=key: ev.pair(k, a, *args)[2])(jnp.asarray(alpha, jnp.float32)))
        assert np.isfinite(grad).all()
        # gated alike in s and u (or outside S_c): no gradient (the pair's renormaliser cancels it;
        # float32 leaves its rounding)
        assert np.abs(grad[s == u]).max() <= 1e-5 * np.abs(grad).max()
        assert (np.abs(grad[s != u]) > 1e-3 * np.abs(grad).max()).any()


@pytest.mark.parametrize("single", [False, True], ids=["multi-branch", "single"])
def test_round_end_sampler_follows_the_law(single):
    alpha, active, _, identity = (single_case if single else random_case)(7)
    n = 20000
    draws = np.asarray(ev.sample(jax.random.key(0), jnp.asarray(alpha, jnp.float32), jnp.asarray(active),
                                 jnp.asarray(identity), K, n, single))
    for c in range(C):
        dist = law(alpha, active, identity, c, single)
        counts = {}
        for row in draws[:, c]:
            key = frozenset(np.flatnonzero(row))
            counts[key] = counts.get(key, 0) + 1
        assert set(counts) <= set(dist)
        for subset, prob in dist.items():
            assert abs(counts.get(subset, 0) / n - prob) < 4 * np.sqrt(prob * (1 - prob) / n) + 1e-3


def front_loop(cost, acc, origin):
    """main.py:244-255 and 422-443 as written: old members' accuracy - 1e-10, a row goes when another
    matches or beats it in both costs (weak dominance), the first of identical rows stays; extras out."""
    rows = [(float(c), -(float(a) - (1e-10 if o == ev.OLD else 0.0))) for c, a, o in zip(cost, acc, origin)]
    keep = []
    for i, r in enumerate(rows):
        beaten = any(j != i and s[0] <= r[0] and s[1] <= r[1] and (s != r or j < i)
                     for j, s in enumerate(rows))
        if not beaten:
            keep.append(i)
    return [i for i in keep if origin[i] != ev.EXTRA]


def test_next_front_follows_the_reference_tie_rules():
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(1, 30))
        cost = rng.integers(0, 8, n).astype(float)     # coarse values: many ties
        acc = rng.integers(0, 6, n).astype(float) * 10
        origin = np.sort(rng.integers(0, 3, n))        # samples, then extras, then the old front
        want = front_loop(cost, acc, origin)
        if not want and (origin != ev.EXTRA).any():  # the guard: extras dominated everything else
            rest = np.flatnonzero(origin != ev.EXTRA)
            want = [int(rest[i]) for i in front_loop(cost[rest], acc[rest], origin[rest])]
        assert list(ev.next_front(cost, acc, origin)) == want
    # an extra removes what it dominates and never stays itself; an old member tied with a new sample loses
    got = ev.next_front([1.0, 2.0, 1.0, 3.0], [50.0, 40.0, 60.0, 70.0],
                        [ev.SAMPLE, ev.SAMPLE, ev.EXTRA, ev.OLD])
    assert list(got) == [3]
    got = ev.next_front([2.0, 3.0, 1.0], [10.0, 10.0, 10.0], [ev.SAMPLE, ev.SAMPLE, ev.EXTRA])
    assert list(got) == [0]  # every sample dominated by the extra: the front without it
    assert list(ev.next_front([1.0, 1.0], [50.0, 50.0], [ev.SAMPLE, ev.OLD])) == [0]


def test_window_sample_fills_both_windows_in_draw_order():
    rng = np.random.default_rng(0)
    batches = [rng.random((16, 3, 4)) < 0.5 for _ in range(200)]
    cost = lambda b: b.reshape(len(b), -1).sum(-1)  # noqa: E731
    exclude = [batches[0][0]]
    samples, extras, tried = ev.window_sample(lambda i: batches[i], cost, 10, 5, 8, 4, 3, exclude)
    drawn = [a for b in batches for a in b]
    want_s, want_e, seen = [], [], {exclude[0].tobytes()}
    for a in drawn:
        c = a.sum()
        if a.tobytes() in seen:
            continue
        if 5 < c < 8 and len(want_s) < 10:
            want_s.append(a)
        elif 3 < c <= 5 and len(want_e) < 4:
            want_e.append(a)
        else:
            continue
        seen.add(a.tobytes())
        if len(want_s) == 10 and len(want_e) == 4:
            break
    np.testing.assert_array_equal(samples, np.stack(want_s))
    np.testing.assert_array_equal(extras, np.stack(want_e))
    assert tried % 16 == 0 and tried <= 16 * 200
    # the cap: a window nothing reaches is an error after max_tries draws; a thin one comes back short
    with pytest.raises(ValueError, match="no architecture in the cost window"):
        ev.window_sample(lambda i: batches[i], cost, 5, 100, 200, 0, 0, max_tries=64)
    few, _, tried = ev.window_sample(lambda i: batches[i], cost, 10_000, 10, 13, 0, 0, max_tries=160)
    assert 0 < len(few) < 10_000 and tried == 160

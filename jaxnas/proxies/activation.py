"""NASWOT and DAS: scores from the binary activation codes of an untrained network.

NASWOT (Mellor et al., "Neural Architecture Search without Training", ICML 2021, Sec. 3; reference
code BayesWatch/nas-without-training, `score_networks.py`, hook_logdet): every ReLU's *input* is
turned into a binary code per image (unit > 0); over a batch of B images the kernel
K_H[i, j] = N_A - Hamming(c_i, c_j) is summed over all ReLUs, and the score is log|K_H|.

Which activations: the inputs of every ReLU module of the NB201 network, as the reference hooks
them -- one per nor_conv_1x1 / nor_conv_3x3 edge (its ReLUConvBN reads the edge's source node, so
a node read by k conv edges counts k times), two per ResNet reduction block (conv_a and conv_b) and
the one after the head's BatchNorm. skip, avg_pool and none apply no ReLU. BatchNorm uses batch
statistics (the reference scores networks in training mode).

DAS (Liu, Li, Sun & Liu, "DAS: Neural Architecture Search via Distinguishing Activation Score",
arXiv 2212.12132) decouples the NASWOT score into two atomic metrics. With N_A the number of
activation units (NAU, summed over ReLUs, per image) and S = K_H / N_A the normalised kernel (unit
diagonal, entries = fraction of units on which two images agree),

    log|K_H| = B * log N_A + log|S|          (det(c A) = c^B det A),

so NASWOT = B * log(NAU) + DA, where DA = log|S| <= 0 (Hadamard) is the distinguishing ability:
it is 0 only when the codes of different images share nothing beyond chance and falls as they
coincide. DAS recombines the two: DAS = DA + das_weight * B * log(NAU); das_weight = 1 is NASWOT.

The paper's own definition and combination rule could not be read here (no stored copy of its
text), so both are choices made on a calibration set (experiments/proxy_fidelity), offered as
`das_da`:
  - "logdet" (default): DA = log|S| as above, the reading the decoupling itself gives;
    das_weight 1.75. On NB201 it is not meaningfully above NASWOT.
  - "min_dist": DA = B * log(min over pairs i != j of the normalised Hamming distance 1 - S_ij),
    how far apart the codes of the two images the network confuses most are (B * so that the
    weight keeps its meaning); das_weight 1.33. Chosen among six DA readings on the calibration set
    (da_variants.py there), it ranks NB201 better than NASWOT (Kendall +0.015 on NASLib's 724).
Both DAs are returned ("da", "da_min") whichever `das_da` is.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxnas.nn import functional
from jaxnas.spaces.arch import Choice, wrap


def code_kernel(graphdef, params, stats, arch, images, impl=None, prune=True):
    """(S, N_A): the normalised activation-code kernel [B, B] of `arch` and its activation units.
    `arch`: op ids (a `Choice`) or a mixed cell (`Gates`: each conv op a kept gate holds has its ReLU).

    K_H = sum over ReLUs of (c c^T + (1-c)(1-c)^T) = sum of (d - Hamming(c_i, c_j)) for codes of d
    units: exact integers. A node no conv edge reads (count 0) contributes nothing and is skipped.
    `prune` as NB201SuperNet's: ops whose output nothing uses never change the codes; "zero" also
    skips convs of all-zero nodes, exact for fresh weights (zero BN bias), not after training.
    """
    b = images.shape[0]

    def tap(x, count):
        d = x.size // b

        def agree():
            return agreement_matrix(x.reshape(b, -1) > 0)

        if isinstance(count, (int, float)):  # known at trace time (standalone network)
            kern = count * agree() if count else jnp.zeros((b, b), jnp.float32)
        else:  # traced: a real branch under lax.map / scan (a select under vmap)
            kern = jax.lax.cond(count > 0, lambda: count * agree(), lambda: jnp.zeros((b, b), jnp.float32))
        return kern, count * jnp.float32(d)

    arch = wrap(arch)
    if not isinstance(arch, Choice):  # a mixed cell (pruning search): every kept op runs
        impl, prune = None, False
    (_, (kernel, units)), _ = functional.apply(graphdef, params, stats, images, arch, train=True, tap=tap,
                                               forward_only=True, single_path_impl=impl, prune=prune)
    return kernel / units, units


def agreement_matrix(bits, method=None):
    """float32 [B, B]: on how many of the d units codes i and j agree (d - Hamming), exact integers.

    method "popcount" (the CPU default): packed XOR + popcount, 2.6x faster than a float matmul on
    XLA:CPU. "matmul" (default elsewhere): 2 s s^T - |s_i| - |s_j| + d with s in bfloat16 (0/1 are
    exact) and float32 accumulation, exact while d < 2**24; the popcount's row loop is a while
    loop, which on a GPU waits for the host at every row (BENCHMARKS.md section 8).
    """
    d = bits.shape[1]
    method = method or ("popcount" if jax.default_backend() == "cpu" else "matmul")
    if method == "popcount":
        return (d - hamming_matrix(pack_codes(bits))).astype(jnp.float32)
    if method != "matmul":
        raise ValueError(f"method must be popcount or matmul, got {method!r}")
    if d >= 2 ** 24:
        raise ValueError(f"the matmul agreement count is exact below 2**24 units, got {d}")
    s = bits.astype(jnp.bfloat16)
    ones = jnp.dot(s, s.T, preferred_element_type=jnp.float32, precision=jax.lax.Precision.HIGHEST)
    r = bits.sum(-1, dtype=jnp.float32)
    return 2 * ones - r[:, None] - r[None, :] + d


def pack_codes(bits):
    """bool [B, d] -> uint32 [B, ceil(d / 32)], 32 activation codes per word (zero-padded)."""
    b, d = bits.shape
    bits = jnp.pad(bits, ((0, 0), (0, (-d) % 32))).reshape(b, -1, 32).astype(jnp.uint32)
    return (bits << jnp.arange(32, dtype=jnp.uint32)).sum(-1, dtype=jnp.uint32)


OFFSETS_PER_STEP = 8  # offsets counted per step of the loop: 1.1-1.4x faster than one at a time (B=128)


def hamming_matrix(words):
    """int32 [B, B] Hamming distances between the packed codes `words` [B, W].

    The matrix is symmetric, so only the pairs (i, i + k mod B) for offsets k = 1 .. B // 2 are
    counted (each unordered pair once, the last offset twice when B is even): XOR + popcount of
    the codes against the codes rolled by k, a few offsets per loop step (no [B, B, W]
    intermediate), the popcounts summed by a dot with ones (exact: at most 32 W < 2**24). On
    XLA:CPU, B=128, d=16384: 4.0 ms for the earlier row-by-row loop, 1.5 ms
    (benchmarks/BENCHMARKS.md, section 5).
    """
    b, half = words.shape[0], words.shape[0] // 2
    if half == 0:
        return jnp.zeros((b, b), jnp.int32)
    per_step = min(OFFSETS_PER_STEP, half)
    steps = -(-half // per_step)
    ones = jnp.ones((words.shape[1],), jnp.float32)

    def offsets(ks):  # [per_step, B]: distance between code i and code (i + k) mod B
        rolled = jax.vmap(lambda k: jnp.roll(words, -k, axis=0))(ks)
        pairs = jax.lax.population_count(words[None] ^ rolled).astype(jnp.float32)
        return jnp.dot(pairs, ones, precision=jax.lax.Precision.HIGHEST)

    counted = jax.lax.map(offsets, jnp.arange(1, steps * per_step + 1).reshape(steps, per_step))
    # [half + 1, B]
    by_offset = jnp.concatenate([jnp.zeros((1, b), jnp.float32), counted.reshape(-1, b)[:half]])
    i, j = jnp.arange(b)[:, None], jnp.arange(b)[None, :]
    k = (j - i) % b  # (i, j) is pair (i, i + k); for k > B // 2 it is pair (j, j + B - k)
    dist = jnp.where(k <= half, by_offset[jnp.minimum(k, half), i], by_offset[jnp.minimum(b - k, half), j])
    return dist.astype(jnp.int32)


DAS_DA = ("logdet", "min_dist")
DAS_WEIGHTS = {"logdet": 1.75, "min_dist": 1.33}  # each DA's weight chosen on the calibration set


def activation_scores(graphdef, params, stats, arch, images, labels, *, das_weight: float = 1.0,
                      das_da: str = "logdet", impl=None, prune=True):
    """NASWOT, DAS and their atomic metrics for one architecture (float32, vmappable).
    `das_da` picks DAS's distinguishing ability (module docstring); `impl` overrides the supernet's
    single-path formulation (forward only: `switch` is fastest); `prune` as in `code_kernel`."""
    del labels
    if das_da not in DAS_DA:
        raise ValueError(f"das_da must be one of {DAS_DA}, got {das_da!r}")
    s, units = code_kernel(graphdef, params, stats, arch, images, impl, prune)
    b = images.shape[0]
    _, da = jnp.linalg.slogdet(s)
    # 2 on the diagonal: never the minimum
    da_min = b * jnp.log(jnp.min(1.0 - s + 2.0 * jnp.eye(b, dtype=s.dtype)))
    log_nau = jnp.log(units)
    das = (da if das_da == "logdet" else da_min) + das_weight * b * log_nau
    return {"naswot": b * log_nau + da, "das": das, "da": da, "da_min": da_min, "log_nau": log_nau}

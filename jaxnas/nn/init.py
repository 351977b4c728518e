"""Fresh weights for a params tree of `jaxnas.nn.ops` modules, distributed as PyTorch's defaults:
conv and linear kernels and linear biases ~ U(+-1/sqrt(fan_in)); everything else (BatchNorm's
scale and bias) keeps its constant value.

Used where every candidate needs its own freshly initialised network inside one program (the
reference procedures of training-free proxies build a new PyTorch network per architecture). One
uniform draw for the whole tree, cut into leaves: building the modules under jit would emit one
RNG op per leaf, which XLA:CPU compiles slowly (minutes per program). With `used` (a bool tree,
e.g. a space's `used_params` of one architecture) only the leaves in use are drawn, the others
are zeros, each with the value the whole draw gives it (`uniform_slice`).
"""
from __future__ import annotations

import functools

import jax
import jax.extend.random
import jax.numpy as jnp
import numpy as np


def init_bound(path, x, params):
    """1/sqrt(fan_in) for a leaf PyTorch initialises uniformly, None for a constant one: kernels
    (HWIO conv or [in, out] linear: fan_in = all but the last axis) and the bias beside a kernel
    (a linear layer's). A Python float (weakly typed): weights stay float32 under x64."""
    names = [getattr(k, "key", None) for k in path]
    if names[-1] == "kernel":
        return float(1.0 / np.sqrt(np.prod(x.shape[:-1])))
    if names[-1] == "bias":
        parent = functools.reduce(lambda t, k: t[k], names[:-1], params)
        if "kernel" in parent:
            return float(1.0 / np.sqrt(np.prod(parent["kernel"].shape[:-1])))
    return None


def uniform_slice(key, start: int, size: int):
    """jax.random.uniform(key, (n,), float32, -1, 1)[start:start + size] for any n > start + size,
    without drawing the rest. Threefry is counter-based: with jax_threefry_partitionable (JAX's
    default) element i is threefry2x32(key, (0, i)) with its two words xor-ed, turned into a float
    as jax.random.uniform does (23 random mantissa bits in [1, 2), minus 1, scaled). Exactly equal
    (tests/methods/test_proxies.py); `slices_match_uniform` checks it at run time too."""
    k1, k2 = jax.random.key_data(key)
    count = jnp.arange(start, start + size, dtype=jnp.uint32)
    b1, b2 = jax.extend.random.threefry2x32_p.bind(k1, k2, jnp.zeros_like(count), count)
    mantissa = jax.lax.shift_right_logical(b1 ^ b2, jnp.uint32(9)) | jnp.uint32(0x3F800000)
    unit = jax.lax.bitcast_convert_type(mantissa, jnp.float32) - 1.0
    return jnp.maximum(-1.0, unit * 2.0 + -1.0)


@functools.lru_cache(maxsize=1)
def slices_match_uniform() -> bool:
    """Whether `uniform_slice` reproduces this JAX's jax.random.uniform (else draw everything)."""
    with jax.ensure_compile_time_eval():  # also when first called while a program is being traced
        key = jax.random.key(7)
        whole = np.asarray(jax.random.uniform(key, (300,), jnp.float32, -1.0, 1.0))
        return bool(np.array_equal(np.asarray(uniform_slice(key, 123, 77)), whole[123:200]))


def fresh_params(key, params, used=None):
    """A params tree like `params`, freshly drawn from `key` (see the module doc). `used`: a bool
    tree like `params` (leaves may be traced); unused leaves are zeros and are not drawn."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    total = sum(x.size for _, x in leaves)
    sliced = used is not None and slices_match_uniform()
    in_use = jax.tree.leaves(used) if sliced else [True] * len(leaves)
    u = None if sliced else jax.random.uniform(key, (total,), jnp.float32, -1.0, 1.0)
    out, at = [], 0
    for (path, x), use in zip(leaves, in_use):
        bound = init_bound(path, x, params)
        if bound is None:
            out.append(x)  # BN scale / bias: constants
            continue
        if not sliced:
            out.append(u[at:at + x.size].reshape(x.shape) * bound)
        else:
            draw = functools.partial(uniform_slice, key, at, x.size)
            zeros = functools.partial(jnp.zeros, (x.size,), jnp.float32)
            if isinstance(use, jax.core.Tracer):  # e.g. an edge's conv: drawn only if the arch uses it
                vals = jax.lax.cond(use, draw, zeros)
            else:
                vals = draw() if use else zeros()
            out.append(vals.reshape(x.shape) * bound)
        at += x.size
    return jax.tree_util.tree_unflatten(treedef, out)


def _orthogonal_np(seed, rows: int, cols: int, gain: float) -> np.ndarray:
    """torch.nn.init.orthogonal_ on a (rows, cols) matrix, in float64 from a numpy generator."""
    a = np.random.default_rng(np.asarray(seed).ravel().tolist()).standard_normal((rows, cols))
    if rows < cols:
        a = a.T
    q, r = np.linalg.qr(a)
    q = q * np.sign(np.diag(r))  # the sign fix: Q unique, Haar-distributed
    if rows < cols:
        q = q.T
    return (gain * q).astype(np.float32)


def orthogonal(key, shape, gain: float = 1.0, dtype=jnp.float32):
    """A (semi-)orthogonal weight, torch.nn.init.orthogonal_(w, gain) (Saxe et al., ICLR 2014)
    in this library's layouts: output axis last (HWIO conv kernels, [in, out] dense kernels).

    PyTorch flattens its weight to a (rows, cols) matrix with rows = the output axis (dim 0 of OIHW
    or of [out, in]) and cols = the rest in (I, H, W) order, fills it from the QR decomposition of
    a standard normal matrix (R's diagonal signs folded into Q), and scales by `gain`. Here the same
    matrix M (O, I*kh*kw) is reshaped to (O, I, kh, kw) and transposed to HWIO by (2, 3, 1, 0); for
    a dense [in, out] kernel, M (out, in) is transposed. So `w.reshape(-1, O)` (this layout,
    flattened) has orthonormal columns times `gain` when O <= the rest (W^T W = gain^2 I), else
    orthonormal rows (W W^T = gain^2 I). 1-D shapes are refused, as in PyTorch.

    The normal draw comes from numpy seeded by the key's bits (as `jaxnas.nn.ops.uniform` does):
    jax.random plus jnp.linalg.qr would compile once per shape, about 0.5 s each on XLA:CPU. Under
    tracing (jit, vmap) the same numpy computation runs as a host callback, so a key gives the same
    weights traced or not. Deterministic for a key; not PyTorch's random stream.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) < 2:
        raise ValueError(f"orthogonal needs at least 2 dimensions, got shape {shape}")
    rows = shape[-1]
    cols = int(np.prod(shape[:-1]))
    torch_shape = (rows, shape[-2], *shape[:-2])  # (O, I, kh, kw) / (out, in)
    to_ours = (*range(2, len(shape)), 1, 0)  # OIHW -> HWIO; (out, in) -> (in, out)

    def host(seed):
        m = _orthogonal_np(seed, rows, cols, gain)
        return np.ascontiguousarray(m.reshape(torch_shape).transpose(to_ours))

    seed = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    if isinstance(seed, jax.core.Tracer):
        out = jax.pure_callback(host, jax.ShapeDtypeStruct(shape, jnp.float32), seed,
                                vmap_method="sequential")
    else:
        out = jnp.asarray(host(np.asarray(seed)))
    return out.astype(dtype)

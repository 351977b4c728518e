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
    (tests/test_proxies.py); `slices_match_uniform` checks it at run time too."""
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

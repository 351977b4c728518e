"""cpu_kernels.jit: YNNPACK on CPU gives XLA's values, falls back when YNNPACK fails, stays out of
traced calls, and can be switched off; the chunked convolution kernel gradient equals XLA's."""
from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxnas import cpu_kernels
from jaxnas.nn import ops, split
from jaxnas.proxies import activation
from jaxnas.spaces.nb201.networks import NB201SuperNet


def _conv_loss(x, w):
    return jnp.sum(jnp.tanh(ops.conv2d(jax.nn.relu(x), w, 1, 1)) ** 2)


def test_ynn_jit_equals_jax_jit_and_is_on_for_this_cpu():
    assert cpu_kernels.ynn_enabled()  # CPU, jaxlib >= 0.10: the CI machine runs the YNNPACK kernels
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((16, 12, 12, 8)), jnp.float32)
    w = jnp.asarray(0.2 * rng.standard_normal((3, 3, 8, 8)), jnp.float32)
    grad = jax.value_and_grad(_conv_loss, argnums=(0, 1))
    want = jax.jit(grad)(x, w)
    fast = cpu_kernels.jit(grad)
    got = fast(x, w)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    fast(x, w)
    assert fast.cache_size() == 1  # one program, compiled once
    # traced arguments (under an outer jit or jax.grad) go to the plain jit: JAX rejects compiler
    # options on nested programs
    outer = jax.jit(lambda x, w: fast(x, w)[0])(x, w)
    np.testing.assert_allclose(outer, want[0], rtol=1e-5)


def test_ynn_failure_falls_back_to_xla_with_a_warning():
    """The elementwise YNNPACK fusions fail on the NASWOT code kernel at batch 128 (an error that
    only shows when the program runs); the wrapper recompiles without them and warns."""
    graphdef, params, stats = split(NB201SuperNet(4, 1, 10, affine=True, track_running_stats=True,
                                                  single_path_impl="switch", rngs=nnx.Rngs(0)))
    images = jnp.asarray(np.random.default_rng(0).standard_normal((128, 16, 16, 3)), jnp.float32)
    arch = jnp.asarray([3, 2, 4, 1, 3, 2])

    def naswot(p, s, a, x):
        return activation.activation_scores(graphdef, p, s, a, x, None, impl="switch")["naswot"]

    fast = cpu_kernels.jit(naswot, fusions=cpu_kernels.ALL_FUSIONS)
    with pytest.warns(RuntimeWarning, match="YNNPACK failed"):
        got = fast(params, stats, arch, images)
    np.testing.assert_allclose(got, jax.jit(naswot)(params, stats, arch, images), rtol=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the fallback is remembered: no second warning
        fast(params, stats, arch, images)


def test_ynn_can_be_switched_off(monkeypatch):
    monkeypatch.setenv("JAXNAS_YNN", "0")
    assert not cpu_kernels.ynn_enabled()
    f = cpu_kernels.jit(jnp.sin)
    np.testing.assert_allclose(f(jnp.ones(3)), np.sin(np.ones(3)), rtol=1e-6)


@pytest.mark.parametrize("stride,padding,k", [(1, 1, 3), (1, 0, 1), (2, 1, 3)])
def test_chunked_kernel_gradient_equals_xla(stride, padding, k):
    """On CPU the kernel gradient of a convolution on 32x32 inputs is summed over 8-example chunks."""
    assert ops.wgrad_chunks(32, 1024) == 4
    assert ops.wgrad_chunks(12, 1024) == ops.wgrad_chunks(8, 1024) == ops.wgrad_chunks(32, 256) == 1
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((32, 32, 32, 3)), jnp.float32)
    w = jnp.asarray(0.3 * rng.standard_normal((k, k, 3, 4)), jnp.float32)
    g = jnp.asarray(rng.standard_normal((32, 32 // stride, 32 // stride, 4)), jnp.float32)

    def xla(x, w):
        return jax.lax.conv_general_dilated(x, w, (stride, stride), ((padding, padding),) * 2,
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))

    want_y, pull = jax.vjp(xla, x, w)
    got_y, pull_chunked = jax.vjp(lambda a, b: ops.conv2d(a, b, stride, padding), x, w)
    np.testing.assert_array_equal(got_y, want_y)
    for got, want in zip(jax.jit(pull_chunked)(g), jax.jit(pull)(g)):  # float32 sums of 32768 terms
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * float(np.abs(want).max()))


def test_programs_over_several_cpu_devices_return_finished():
    """cpu_kernels.jit waits for a result that spans several CPU devices (XLA:CPU deadlocked with
    many such programs queued, see `_wait_if_multi_device`): the call returns a ready array."""
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("data",))
    x = jax.device_put(jnp.ones((8 * 128, 1024), jnp.float32), jax.NamedSharding(mesh, jax.P("data")))
    w = jnp.full((1024, 1024), 1e-3, jnp.float32)
    heavy = cpu_kernels.jit(lambda x, w: jnp.tanh(jnp.tanh(x @ w) @ w).sum(0))  # ~4 GFLOP and an all-reduce
    heavy(x, w).block_until_ready()  # compile outside the check
    out = heavy(x, w)
    assert len(out.sharding.device_set) == 8 and out.is_ready()
    np.testing.assert_allclose(out[:3], np.full(3, 1024 * np.tanh(1.024 * np.tanh(1.024))), rtol=1e-5)

"""Generic convolution (`ops.conv`) against torch.nn.functional.conv2d over a grid of strides,
paddings, dilations, groups and non-square kernels (forward and both gradients); weight
normalisation against torch's weight_norm; orthogonal initialisation's defining property."""
from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxnas.nn import init, ops

KERNELS = [(3, 3), (1, 3), (3, 1), (5, 3), (2, 4)]  # (2, 4): even, so "same" pads asymmetrically
DILATIONS = [1, 2]


def _grid(groups):
    for stride, dilation, g, k in itertools.product([1, 2], DILATIONS, groups, KERNELS):
        for padding in [0, 1, (1, 2)] + (["same"] if stride == 1 else []):
            yield {"stride": stride, "padding": padding, "dilation": dilation, "groups": g}, k


def _to_torch_kernel(k):
    return torch.tensor(np.ascontiguousarray(np.transpose(k, (3, 2, 0, 1))))  # HWIO -> OIHW


# (N, H, W, C_in, C_out, groups): groups == C_in is depthwise (multiplier 2, then 1); at 12 channels
# the depthwise conv runs on CPU as taps for kernels of fewer than 12 taps, dense for the 5x3
SHAPES = [(2, 10, 8, 4, 8, (1, 2, 4)), (1, 9, 9, 12, 12, (12,))]


@pytest.fixture
def torch_one_thread():
    """Tiny torch convolutions: with several threads on a busy 2-core machine each forward and
    backward took 5-25 ms, 0.1-0.2 ms on one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")  # torch's note on a copy
@pytest.mark.parametrize("shape", SHAPES, ids=["c4-8", "depthwise-c12"])
def test_conv_matches_torch_over_grid(shape, torch_one_thread):
    n, h, w, c_in, c_out, groups = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, h, w, c_in)).astype(np.float32)
    grid = list(_grid(groups))
    kernels, cotangents, expected = [], [], []
    for opts, (kh, kw) in grid:
        k = rng.standard_normal((kh, kw, c_in // opts["groups"], c_out)).astype(np.float32)
        xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
        kt = _to_torch_kernel(k).requires_grad_(True)
        out = torch.nn.functional.conv2d(xt, kt, **opts)
        ct = rng.standard_normal(out.shape).astype(np.float32)
        (out * torch.tensor(ct)).sum().backward()
        kernels.append(k)
        cotangents.append(ct.transpose(0, 2, 3, 1))
        expected.append((out.detach().numpy().transpose(0, 2, 3, 1), xt.grad.numpy().transpose(0, 2, 3, 1),
                         kt.grad.numpy().transpose(2, 3, 1, 0)))

    @jax.jit
    def every_conv(x, kernels, cotangents):  # the whole grid in one program: one compilation per shape
        out = []
        for (opts, _), k, ct in zip(grid, kernels, cotangents):
            y, vjp = jax.vjp(lambda a, b, opts=opts: ops.conv(a, b, **opts), x, k)
            out.append((y, *vjp(ct)))
        return out

    got = every_conv(jnp.asarray(x), kernels, cotangents)
    for (opts, k), want, have in zip(grid, expected, got):
        for name, a, b in zip(("out", "grad_x", "grad_kernel"), have, want):
            np.testing.assert_allclose(np.asarray(a), b, rtol=1e-5, atol=2e-5,
                                       err_msg=f"{name} {opts} kernel {k}")


def test_depthwise_forms_on_cpu():
    """Both CPU forms of a depthwise conv are chosen where `depthwise_form` says (the grid above
    checks their values and gradients)."""
    if jax.default_backend() == "cpu":
        assert ops.depthwise_form(12, 3, 3) == "taps" and ops.depthwise_form(12, 5, 3) == "dense"


def test_conv_simple_case_is_conv2d():
    """Equal strides, symmetric equal padding, no dilation or groups: `conv2d` itself (forward and
    its chunked CPU kernel gradient bit for bit), and the same forward as the general path."""
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((16, 32, 32, 3)).astype(np.float32))  # chunked on CPU
    k = jnp.asarray(rng.standard_normal((3, 3, 3, 4)).astype(np.float32))
    assert ops.wgrad_chunks(16, 32 * 32) > 1 or jax.default_backend() != "cpu"

    def loss(f):
        return jax.jit(jax.value_and_grad(lambda a, b: jnp.sum(jnp.sin(f(a, b))), argnums=(0, 1)))

    a = loss(lambda a, b: ops.conv(a, b, stride=(2, 2), padding=(1, 1)))(x, k)
    b = loss(lambda a, b: ops.conv2d(a, b, 2, 1))(x, k)
    jax.tree.map(lambda u, v: np.testing.assert_array_equal(np.asarray(u), np.asarray(v)), a, b)
    general = jax.lax.conv_general_dilated(x, k, (2, 2), ((1, 1), (1, 1)),
                                           dimension_numbers=("NHWC", "HWIO", "NHWC"))
    np.testing.assert_array_equal(np.asarray(ops.conv(x, k, stride=2, padding=1)), np.asarray(general))


def test_conv_refuses_bad_arguments():
    x, k = jnp.zeros((1, 5, 5, 4)), jnp.zeros((3, 3, 2, 4))
    with pytest.raises(ValueError, match="groups"):
        ops.conv(x, k, groups=1)
    with pytest.raises(ValueError, match="same"):
        ops.conv(x, k, stride=2, padding="same", groups=2)
    with pytest.raises(ValueError, match="stride"):
        ops.conv(x, k, stride=(1, 2, 3), groups=2)


@pytest.mark.parametrize("shape", [(3, 3, 4, 6), (1, 1, 8, 5), (5, 3, 2, 7), (6, 4)], ids=str)
def test_weight_norm_matches_torch(shape):
    """torch.nn.utils.parametrizations.weight_norm (dim=0, and dim=None: the whole tensor) on the
    same v, g after the layout change (HWIO -> OIHW, [in, out] -> [out, in])."""
    rng = np.random.default_rng(2)
    v = rng.standard_normal(shape).astype(np.float32)
    g = rng.uniform(0.5, 2.0, shape[-1]).astype(np.float32)
    perm = (3, 2, 0, 1) if len(shape) == 4 else (1, 0)
    back = tuple(np.argsort(perm))
    if len(shape) == 4:
        module = torch.nn.Conv2d(shape[2], shape[3], shape[:2], bias=False)
    else:
        module = torch.nn.Linear(shape[0], shape[1], bias=False)
    for dim, gg in ((0, g), (None, np.float32(1.7))):
        m = torch.nn.utils.parametrizations.weight_norm(module, dim=dim)
        with torch.no_grad():
            m.parametrizations.weight.original1.copy_(torch.tensor(np.ascontiguousarray(v.transpose(perm))))
            m.parametrizations.weight.original0.copy_(torch.tensor(gg).reshape(m.parametrizations.weight.original0.shape))
            want = m.weight.numpy().transpose(back)
        torch.nn.utils.parametrize.remove_parametrizations(m, "weight")
        have = np.asarray(ops.weight_norm(jnp.asarray(v), jnp.asarray(gg), axis=-1 if dim == 0 else None))
        np.testing.assert_allclose(have, want, rtol=1e-6, atol=1e-7)
    # torch's initial g makes w == v; the output columns have norm g
    np.testing.assert_allclose(np.asarray(ops.weight_norm(v, ops.weight_norm_g(v), -1)), v, rtol=1e-6,
                               atol=1e-7)
    w = np.asarray(ops.weight_norm(jnp.asarray(v), jnp.asarray(g)))
    np.testing.assert_allclose(np.linalg.norm(w.reshape(-1, shape[-1]), axis=0), g, rtol=1e-6)


@pytest.mark.parametrize("shape", [(3, 3, 4, 8), (3, 3, 16, 8), (1, 1, 8, 8), (7, 7, 3, 64), (6, 4), (4, 6)],
                         ids=str)
def test_orthogonal(shape):
    """Flattened as PyTorch flattens (rows: the output axis), W W^T = gain^2 I when the output axis
    is the shorter, else W^T W = gain^2 I; deterministic for a key, the same under jit."""
    gain = 1.5
    w = np.asarray(init.orthogonal(jax.random.key(3), shape, gain), np.float64)
    assert w.shape == shape and init.orthogonal(jax.random.key(3), shape).dtype == jnp.float32
    rows = w.reshape(-1, shape[-1]).T  # (out, rest) up to a permutation of the rest
    gram = rows @ rows.T if rows.shape[0] <= rows.shape[1] else rows.T @ rows
    np.testing.assert_allclose(gram, gain ** 2 * np.eye(len(gram)), atol=1e-5)
    # the documented layout: in PyTorch's OIHW / [out, in], rows flattened over (I, H, W), it is
    # the (out, rest) matrix of orthogonal_'s construction
    torch_rows = w.transpose((3, 2, 0, 1) if len(shape) == 4 else (1, 0)).reshape(shape[-1], -1)
    matrix = init._orthogonal_np(jax.random.key_data(jax.random.key(3)), shape[-1], torch_rows.shape[1], gain)
    np.testing.assert_array_equal(torch_rows.astype(np.float32), matrix)
    np.testing.assert_array_equal(np.asarray(init.orthogonal(jax.random.key(3), shape, gain)),
                                  w.astype(np.float32))
    np.testing.assert_array_equal(np.asarray(jax.jit(lambda k: init.orthogonal(k, shape,
                                                                               gain))(jax.random.key(3))),
                                  w.astype(np.float32))
    assert not np.allclose(np.asarray(init.orthogonal(jax.random.key(4), shape, gain)), w)
    with pytest.raises(ValueError, match="2 dimensions"):
        init.orthogonal(jax.random.key(0), (5,))

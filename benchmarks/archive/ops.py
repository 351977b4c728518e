"""NB201 single-path stage formulations (JAX, NHWC). Exploration only."""
import numpy as np
import jax, jax.numpy as jnp
from jax import lax

EDGES = [(1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2)]
DN = ("NHWC", "HWIO", "NHWC")
EPS = 1e-5


# ---------------------------------------------------------------- primitives
def conv_xla(x, w, stride=1):
    k = w.shape[0]
    p = (k - 1) // 2
    return lax.conv_general_dilated(x, w, (stride, stride), ((p, p), (p, p)), dimension_numbers=DN)


def bn(y):  # batch stats, affine=False, biased var (torch training mode)
    m = jnp.mean(y, axis=(0, 1, 2))
    c = y - m
    v = jnp.mean(c * c, axis=(0, 1, 2))
    return c * lax.rsqrt(v + EPS)


def _pool_counts(H, W):
    o = np.ones((H, W), np.float32)
    o = np.pad(o, 1)
    c = sum(o[i:i + H, j:j + W] for i in range(3) for j in range(3))
    return c


def avgpool3_rw(x):  # count_include_pad=False
    s = lax.reduce_window(x, 0.0, lax.add, (1, 3, 3, 1), (1, 1, 1, 1), ((0, 0), (1, 1), (1, 1), (0, 0)))
    cnt = _pool_counts(x.shape[1], x.shape[2])
    return s * jnp.asarray(1.0 / cnt)[None, :, :, None]


def avgpool3_shift(x):  # same thing via 9 shifted slices
    H, W = x.shape[1], x.shape[2]
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    s = sum(xp[:, i:i + H, j:j + W, :] for i in range(3) for j in range(3))
    cnt = _pool_counts(H, W)
    return s * jnp.asarray(1.0 / cnt)[None, :, :, None]


avgpool3 = avgpool3_rw


# --- custom_vjp conv: backward written with forward-style convs (stride 1, SAME)
def _dw_conv(x, g, k):
    p = (k - 1) // 2
    # treat x channel as batch, x batch as feature; g batch as input-feature
    return lax.conv_general_dilated(x, g, (1, 1), ((p, p), (p, p)),
                                    dimension_numbers=("CHWN", "IHWO", "HWNC"))


@jax.custom_vjp
def conv_cvjp(x, w):
    return conv_xla(x, w)


def _cv_fwd(x, w):
    return conv_xla(x, w), (x, w)


def _cv_bwd(res, g):
    x, w = res
    k = w.shape[0]
    wt = jnp.flip(w, (0, 1)).transpose(0, 1, 3, 2)  # HWOI -> used as HWIO on g
    dx = conv_xla(g, wt)
    dw = _dw_conv(x, g, k)
    return dx, dw


conv_cvjp.defvjp(_cv_fwd, _cv_bwd)


# --- custom_vjp conv with im2col dot_general weight grad
def _im2col(x, k):
    if k == 1:
        return x
    H, W = x.shape[1], x.shape[2]
    p = (k - 1) // 2
    xp = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    return jnp.concatenate([xp[:, i:i + H, j:j + W, :] for i in range(k) for j in range(k)], axis=-1)


@jax.custom_vjp
def conv_cvjp2(x, w):
    return conv_xla(x, w)


def _cv2_bwd(res, g):
    x, w = res
    k, _, ci, co = w.shape
    wt = jnp.flip(w, (0, 1)).transpose(0, 1, 3, 2)
    dx = conv_xla(g, wt)
    P = _im2col(x, k)
    dw = lax.dot_general(P, g, (((0, 1, 2), (0, 1, 2)), ((), ()))).reshape(k, k, ci, co)
    return dx, dw


conv_cvjp2.defvjp(_cv_fwd, _cv2_bwd)


# --- plain im2col + matmul conv (autodiff through slices + dot)
def conv_im2col(x, w):
    k, _, ci, co = w.shape
    P = _im2col(x, k)
    return lax.dot_general(P, w.reshape(k * k * ci, co), (((3,), (0,)), ((), ())))


# ---------------------------------------------------------------- edge ops
def op_fixed(op, w1, w3, x, conv=conv_xla):
    if op == 1:
        return x
    if op == 2:
        return bn(conv(jax.nn.relu(x), w1))
    if op == 3:
        return bn(conv(jax.nn.relu(x), w3))
    if op == 4:
        return avgpool3(x)
    raise ValueError(op)


def cell_fixed(p, x, arch, conv=conv_xla):
    nodes = [x]
    for i in range(1, 4):
        acc = None
        for e, (ii, j) in enumerate(EDGES):
            if ii != i or arch[e] == 0:
                continue
            y = op_fixed(arch[e], p["w1"][e], p["w3"][e], nodes[j], conv)
            acc = y if acc is None else acc + y
        nodes.append(acc if acc is not None else jnp.zeros_like(x))
    return nodes[3]


def cell_generic(edge_fn):
    def cell(p, x, arch):
        nodes = [x]
        for i in range(1, 4):
            acc = None
            for e, (ii, j) in enumerate(EDGES):
                if ii != i:
                    continue
                y = edge_fn(arch[e], p["w1"][e], p["w3"][e], nodes[j])
                acc = y if acc is None else acc + y
            nodes.append(acc)
        return nodes[3]
    return cell


def edge_switch(op, w1, w3, x, conv=conv_xla):
    br = [lambda w1, w3, x: jnp.zeros_like(x),
          lambda w1, w3, x: x,
          lambda w1, w3, x: bn(conv(jax.nn.relu(x), w1)),
          lambda w1, w3, x: bn(conv(jax.nn.relu(x), w3)),
          lambda w1, w3, x: avgpool3(x)]
    return lax.switch(op, br, w1, w3, x)


def edge_mask(op, w1, w3, x, conv=conv_xla):
    m = jax.nn.one_hot(op, 5, dtype=x.dtype)
    r = jax.nn.relu(x)
    return (m[1] * x + m[2] * bn(conv(r, w1)) + m[3] * bn(conv(r, w3)) + m[4] * avgpool3(x))


def merged_w(op, w1, w3):
    return jnp.where(op == 3, w3, jnp.pad(w1, ((1, 1), (1, 1), (0, 0), (0, 0))))


def edge_merged(op, w1, w3, x, conv=conv_xla):
    y = bn(conv(jax.nn.relu(x), merged_w(op, w1, w3)))
    isconv = (op == 2) | (op == 3)
    return (jnp.where(isconv, y, 0.0) + jnp.where(op == 1, x, 0.0)
            + jnp.where(op == 4, avgpool3(x), 0.0))


def edge_merged_cond(op, w1, w3, x, conv=conv_xla):
    """merged kernel but conv skipped with lax.cond when op is not a conv."""
    isconv = (op == 2) | (op == 3)
    y = lax.cond(isconv, lambda w1, w3, x: bn(conv(jax.nn.relu(x), merged_w(op, w1, w3))),
                 lambda w1, w3, x: jnp.zeros_like(x), w1, w3, x)
    return y + jnp.where(op == 1, x, 0.0) + jnp.where(op == 4, avgpool3(x), 0.0)


# group of edges sharing an input node: node0 -> e0,e1,e3 ; node1 -> e2,e4 ; node2 -> e5
OUT_EDGES = {0: [0, 1, 3], 1: [2, 4], 2: [5]}


def cell_batched(p, x, arch, conv=conv_xla, pool=None):
    pool = pool or avgpool3
    C = x.shape[-1]
    ys = {}
    nodes = [x]
    for j in range(3):
        xj = nodes[j]
        es = OUT_EDGES[j]
        W = jnp.concatenate([merged_w(arch[e], p["w1"][e], p["w3"][e]) for e in es], axis=-1)
        y = bn(conv(jax.nn.relu(xj), W))
        pj = pool(xj)
        for k, e in enumerate(es):
            op = arch[e]
            ye = y[..., k * C:(k + 1) * C]
            ys[e] = (jnp.where((op == 2) | (op == 3), ye, 0.0) + jnp.where(op == 1, xj, 0.0)
                     + jnp.where(op == 4, pj, 0.0))
        # node j+1 is complete now
        i = j + 1
        nodes.append(sum(ys[e] for e, (ii, jj) in enumerate(EDGES) if ii == i))
    return nodes[3]


def cell_batched_scale(p, x, arch, conv=conv_xla, pool=None):
    """batched, but masks applied as per-channel scale vectors (one fused mul-add)."""
    pool = pool or avgpool3
    C = x.shape[-1]
    nodes = [x]
    ys = {}
    for j in range(3):
        xj = nodes[j]
        es = OUT_EDGES[j]
        ops = jnp.stack([arch[e] for e in es])
        W = jnp.concatenate([merged_w(arch[e], p["w1"][e], p["w3"][e]) for e in es], axis=-1)
        y = bn(conv(jax.nn.relu(xj), W))
        pj = pool(xj)
        n = len(es)
        sc = jnp.repeat(((ops == 2) | (ops == 3)).astype(x.dtype), C)
        y = y * sc
        sk = (ops == 1).astype(x.dtype)
        sp = (ops == 4).astype(x.dtype)
        for k, e in enumerate(es):
            ys[e] = y[..., k * C:(k + 1) * C] + sk[k] * xj + sp[k] * pj
        i = j + 1
        nodes.append(sum(ys[e] for e, (ii, jj) in enumerate(EDGES) if ii == i))
    return nodes[3]


def stage(cell_fn, params, x, archs):
    for c in range(len(params)):
        x = cell_fn(params[c], x, archs[c])
    return x


def init_stage(key, ncell=5, C=16):
    ps = []
    for c in range(ncell):
        k1, k2, key = jax.random.split(key, 3)
        ps.append({"w1": jax.random.normal(k1, (6, 1, 1, C, C)) * (1.0 / np.sqrt(C)),
                   "w3": jax.random.normal(k2, (6, 3, 3, C, C)) * (1.0 / np.sqrt(9 * C))})
    return ps

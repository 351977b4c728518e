"""Prototype behind jaxnas.spaces.nb201.eager (2026-11-23): single-path fwd+bwd at C=16, N=5, batch 64 three ways.

  eager:     its own pure-function network, one jitted kernel per op, Python control flow on a concrete arch;
  torch:     xautodl TinyNetworkSETN, dynamic mode;
  fixed-jit: the standalone NB201Network of that architecture, the whole fwd+bwd jitted (compiles per arch).

Usage: python benchmarks/archive/eager_prototype.py [N] [num_archs] [skip-fixed]
"""
import sys, time, jax, jax.numpy as jnp, numpy as np, torch
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
from jaxnas.nn.ops import conv2d, avg_pool_3x3, avg_pool_2x2
from jaxnas.spaces import nb201
from jaxnas.nn import split, apply
from jaxnas.spaces.nb201.networks import NB201Network
from jaxnas.nn import loss_and_accuracy
from flax import nnx
C, N, B = 16, int(sys.argv[1]) if len(sys.argv) > 1 else 5, 64
EPS = 1e-5
def bn(y, s=None, b=None):
    m = y.mean((0, 1, 2)); v = jnp.square(y - m).mean((0, 1, 2))
    y = (y - m) * jax.lax.rsqrt(v + EPS)
    return y if s is None else y * s + b
@jax.jit
def rcb(x, k):
    return bn(conv2d(jax.nn.relu(x), k, 1, k.shape[0] // 2))
pool = jax.jit(avg_pool_3x3)
@jax.jit
def stem(p, x):
    return bn(conv2d(x, p["k"], 1, 1), p["s"], p["b"])
@jax.jit
def resblock(p, x):
    h = bn(conv2d(jax.nn.relu(x), p["ka"], 2, 1), p["sa"], p["ba"])
    h = bn(conv2d(jax.nn.relu(h), p["kb"], 1, 1), p["sb"], p["bb"])
    return conv2d(avg_pool_2x2(x), p["ks"], 1, 0) + h
@jax.jit
def head(p, x, y):
    h = jax.nn.relu(bn(x, p["s"], p["b"])).mean((1, 2))
    return loss_and_accuracy(h @ p["w"] + p["bias"], y)[0]
rng = np.random.default_rng(0)
f = lambda *s: jnp.asarray(rng.standard_normal(s).astype(np.float32) * 0.1)
params = {"stem": {"k": f(3, 3, 3, C), "s": f(C) + 1, "b": f(C)}, "cells": [], "res": []}
c = C
for stage in range(3):
    if stage:
        params["res"].append({"ka": f(3, 3, c, 2 * c), "sa": f(2 * c) + 1, "ba": f(2 * c), "kb": f(3, 3, 2 * c, 2 * c),
                              "sb": f(2 * c) + 1, "bb": f(2 * c), "ks": f(1, 1, c, 2 * c)})
        c *= 2
    params["cells"].append([[{"k1": f(1, 1, c, c), "k3": f(3, 3, c, c)} for _ in range(6)] for _ in range(N)])
params["head"] = {"s": f(c) + 1, "b": f(c), "w": f(c, 10), "bias": f(10)}
def cell(p, x, arch):
    nodes = [x]
    for i in range(1, 4):
        acc = None
        for e, (to, j) in enumerate(nb201.EDGES):
            if to != i: continue
            op = int(arch[e])
            if op == nb201.NONE: continue
            t = nodes[j] if op == nb201.SKIP else pool(nodes[j]) if op == nb201.POOL else rcb(nodes[j], p[e]["k1" if op == nb201.CONV1 else "k3"])
            acc = t if acc is None else acc + t
        nodes.append(jnp.zeros_like(x) if acc is None else acc)
    return nodes[-1]
def loss(params, arch, x, y):
    h = stem(params["stem"], x)
    for s in range(3):
        if s: h = resblock(params["res"][s - 1], h)
        for n in range(N): h = cell(params["cells"][s][n], h, arch)
    return head(params["head"], h, y)
grad_eager = jax.value_and_grad(loss)
for a in ([3,2,4,1,0,3],[2,3,1,4,3,0]): jax.block_until_ready(grad_eager(params, np.array(a), jnp.zeros((B,32,32,3)), jnp.zeros((B,),jnp.int32)))
x = jnp.asarray(rng.standard_normal((B, 32, 32, 3)).astype(np.float32)); y = jnp.asarray(rng.integers(0, 10, B).astype(np.int32))
archs = rng.integers(0, 5, (int(sys.argv[2]) if len(sys.argv) > 2 else 8, 6))
# fixed-arch jitted standalone
def fixed_fn(arch):
    g, p, st = split(NB201Network(arch, C, N, 10, rngs=nnx.Rngs(0)))
    fn = jax.jit(jax.grad(lambda p: loss_and_accuracy(apply(g, p, st, x, True)[0][0] if False else apply(g, p, st, x, True)[0], y)[0]))
    return fn, p
from xautodl.models.cell_searchs.search_model_setn import TinyNetworkSETN
from xautodl.models.cell_searchs.genotypes import Structure
net = TinyNetworkSETN(C, N, 4, 10, list(nb201.OPS), False, False)
xt, yt = torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy()), torch.from_numpy(np.asarray(y)).long()
def torch_fb(arch):
    net.set_cal_mode("dynamic", Structure.str2structure(nb201.to_string(arch)))
    net.zero_grad(); torch.nn.functional.cross_entropy(net(xt)[1], yt).backward()
t0 = time.perf_counter(); jax.block_until_ready(grad_eager(params, archs[0], x, y)); print("eager first call", round(time.perf_counter() - t0, 1), "s", flush=True)
torch_fb(archs[0])
for arch in archs[1:]:
    t0 = time.perf_counter(); jax.block_until_ready(grad_eager(params, arch, x, y)); te = time.perf_counter() - t0
    t0 = time.perf_counter(); torch_fb(arch); tt = time.perf_counter() - t0
    tf = tc = 0.0
    if len(sys.argv) <= 3:
        fn, p = fixed_fn(arch)
        t0 = time.perf_counter(); jax.block_until_ready(fn(p)); tc = time.perf_counter() - t0
        t0 = time.perf_counter(); jax.block_until_ready(fn(p)); tf = time.perf_counter() - t0
    print(nb201.to_string(arch), f"eager {te*1e3:.0f} ms | torch {tt*1e3:.0f} ms | fixed-jit {tf*1e3:.0f} ms (compile {tc:.1f} s)", flush=True)

"""Full NB201 network (C=16, N=5) fwd + CE loss + bwd: JAX formulations vs xautodl TinyNetworkSETN (dynamic).
usage: python full_net.py REPS cand1,cand2,... [out.jsonl]
"""
import os, sys, time, json
import numpy as np
import jax, jax.numpy as jnp
from jax import lax
sys.path.insert(0, os.path.dirname(__file__))
import ops as O
from bench_stage import CANDS, ARCHS

OPN = ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]

def init(key, C=16, N=5):
    ks = iter(jax.random.split(key, 64))
    p = {"stem": jax.random.normal(next(ks), (3, 3, 3, C)) * 0.2, "stem_g": jnp.ones(C), "stem_b": jnp.zeros(C),
         "cells": [], "res": []}
    for s, Cs in enumerate([C, 2 * C, 4 * C]):
        if s > 0:
            Ci = Cs // 2
            p["res"].append({"wa": jax.random.normal(next(ks), (3, 3, Ci, Cs)) / np.sqrt(9 * Ci),
                             "wb": jax.random.normal(next(ks), (3, 3, Cs, Cs)) / np.sqrt(9 * Cs),
                             "wd": jax.random.normal(next(ks), (1, 1, Ci, Cs)) / np.sqrt(Ci)})
        p["cells"].append(O.init_stage(next(ks), N, Cs))
    p["last_g"] = jnp.ones(4 * C); p["last_b"] = jnp.zeros(4 * C)
    p["fc_w"] = jax.random.normal(next(ks), (4 * C, 10)) * 0.1; p["fc_b"] = jnp.zeros(10)
    return p

def avgpool2(x):
    n, h, w, c = x.shape
    return x.reshape(n, h // 2, 2, w // 2, 2, c).mean((2, 4))

def net(p, x, arch, cell_fn, conv=O.conv_xla):
    h = O.bn(O.conv_xla(x, p["stem"])) * p["stem_g"] + p["stem_b"]
    for s in range(3):
        if s > 0:
            r = p["res"][s - 1]
            a = O.bn(O.conv_xla(jax.nn.relu(h), r["wa"], stride=2))
            b = O.bn(conv(jax.nn.relu(a), r["wb"]))
            h = b + O.conv_xla(avgpool2(h), r["wd"])
        for c in range(len(p["cells"][s])):
            h = cell_fn(p["cells"][s][c], h, arch)
    h = jax.nn.relu(O.bn(h) * p["last_g"] + p["last_b"])
    return h.mean((1, 2)) @ p["fc_w"] + p["fc_b"]

def make(cand, arch):
    fn, traced = CANDS[cand]
    conv = O.conv_cvjp if "cvjp" in cand else O.conv_xla
    def loss(p, x, y, a):
        lg = net(p, x, a if traced else arch, fn, conv)
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(lg), y[:, None], 1))
    return jax.jit(jax.value_and_grad(loss))

def torch_model(arch):
    import torch
    from xautodl.models.cell_searchs.search_model_setn import TinyNetworkSETN
    from xautodl.models.cell_searchs.genotypes import Structure
    m = TinyNetworkSETN(C=16, N=5, max_nodes=4, num_classes=10, search_space=OPN, affine=False, track_running_stats=False)
    a = [OPN[o] for o in arch]
    s = "|{}~0|+|{}~0|{}~1|+|{}~0|{}~1|{}~2|".format(*a)
    m.set_cal_mode("dynamic", Structure.str2structure(s))
    m.train()
    return m

def main():
    import torch
    torch.set_num_threads(2)
    reps = int(sys.argv[1]); cands = sys.argv[2].split(","); out = sys.argv[3] if len(sys.argv) > 3 else ""
    archs = sys.argv[4].split(",") if len(sys.argv) > 4 else list(ARCHS)
    p = init(jax.random.PRNGKey(0))
    x = jax.random.normal(jax.random.PRNGKey(1), (64, 32, 32, 3))
    y = jax.random.randint(jax.random.PRNGKey(2), (64,), 0, 10)
    xt = torch.randn(64, 3, 32, 32); yt = torch.randint(0, 10, (64,))
    runs, ctime = {}, {}
    for c in cands:
        for an in archs:
            a = jnp.asarray(ARCHS[an], jnp.int32)
            if CANDS[c][1] and an != archs[0]:
                runs[(c, an)] = runs[(c, archs[0])]; ctime[(c, an)] = ctime[(c, archs[0])]; continue
            t = time.perf_counter()
            f = make(c, ARCHS[an]).lower(p, x, y, a).compile()
            ctime[(c, an)] = time.perf_counter() - t
            runs[(c, an)] = f
    # exactness vs fixed
    errs = {}
    for an in archs:
        a = jnp.asarray(ARCHS[an], jnp.int32)
        ref = jax.tree.leaves(make("a_fixed", ARCHS[an])(p, x, y, a))
        for c in cands:
            o = jax.tree.leaves(runs[(c, an)](p, x, y, a))
            errs[(c, an)] = max(float(jnp.max(jnp.abs(u - v)) / (jnp.max(jnp.abs(v)) + 1e-12)) for u, v in zip(o, ref))
    calls = {}
    for k, f in runs.items():
        a = jnp.asarray(ARCHS[k[1]], jnp.int32)
        calls[k] = (lambda f=f, a=a: jax.block_until_ready(f(p, x, y, a)))
    for an in archs:
        m = torch_model(ARCHS[an])
        def st(m=m):
            m.zero_grad(set_to_none=True)
            _, lg = m(xt)
            torch.nn.functional.cross_entropy(lg, yt).backward()
        calls[("xautodl_SETN_dynamic", an)] = st; ctime[("xautodl_SETN_dynamic", an)] = 0.0
    for k, f in calls.items(): f(); f()
    T = {k: [] for k in calls}
    keys = list(calls)
    for i in range(reps):
        for j in np.random.default_rng(i).permutation(len(keys)):
            k = keys[j]; t = time.perf_counter(); calls[k](); T[k].append(time.perf_counter() - t)
    res = []
    for k, v in T.items():
        print(f"FULL {k[0]:24s} {k[1]:9s} median {np.median(v)*1e3:8.1f} ms  min {min(v)*1e3:8.1f}  compile {ctime[k]:6.2f}s  relerr {errs.get(k)}", flush=True)
        res.append(dict(net="full", cand=k[0], arch=k[1], ms=float(np.median(v)) * 1e3, min_ms=min(v) * 1e3,
                        compile_s=ctime[k], relerr=errs.get(k)))
    if out:
        with open(out, "a") as fh:
            for d in res: fh.write(json.dumps(d) + "\n")

if __name__ == "__main__":
    main()

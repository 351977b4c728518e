"""Benchmark fwd+bwd of a 5-cell NB201 stage (C=16, 32x32, batch 64, NHWC).
usage: python bench_stage.py [--reps N] [--cands a,b,...] [--archs ...] [--tag T]
"""
import os, sys, time, json, argparse
import numpy as np
import jax, jax.numpy as jnp
sys.path.insert(0, os.path.dirname(__file__))
import ops as O

ARCHS = {"conv3": (3, 3, 3, 3, 3, 3), "mixed": (3, 3, 4, 1, 3, 2), "skipnone": (1, 0, 1, 0, 1, 0)}

def P(f, **kw):
    return lambda p, x, a: f(p, x, a, **kw)

CANDS = {
    # name: (cell_fn, traced?)
    "a_fixed": (O.cell_fixed, False),
    "a_fixed_im2col": (P(O.cell_fixed, conv=O.conv_im2col), False),
    "a_fixed_cvjp": (P(O.cell_fixed, conv=O.conv_cvjp), False),
    "b_switch": (O.cell_generic(O.edge_switch), True),
    "c_mask": (O.cell_generic(O.edge_mask), True),
    "d_merged": (O.cell_generic(O.edge_merged), True),
    "d_merged_cond": (O.cell_generic(O.edge_merged_cond), True),
    "e_batched": (O.cell_batched, True),
    "e_batched_scale": (O.cell_batched_scale, True),
    "e_batched_shiftpool": (P(O.cell_batched, pool=O.avgpool3_shift), True),
    "f_merged_cvjp": (O.cell_generic(lambda o, a, b, x: O.edge_merged(o, a, b, x, conv=O.conv_cvjp)), True),
    "f_batched_cvjp": (P(O.cell_batched, conv=O.conv_cvjp), True),
    "f_batched_cvjp2": (P(O.cell_batched, conv=O.conv_cvjp2), True),
    "g_merged_im2col": (O.cell_generic(lambda o, a, b, x: O.edge_merged(o, a, b, x, conv=O.conv_im2col)), True),
    "g_batched_im2col": (P(O.cell_batched, conv=O.conv_im2col), True),
    "g_mask_im2col": (O.cell_generic(lambda o, a, b, x: O.edge_mask(o, a, b, x, conv=O.conv_im2col)), True),
}


def make(cell_fn, traced, arch, ncell):
    def loss(params, x, a, r):
        archs = [a] * ncell
        return jnp.sum(O.stage(cell_fn, params, x, archs) * r)
    g = jax.value_and_grad(loss, argnums=(0, 1))
    if traced:
        return jax.jit(g)
    return jax.jit(lambda p, x, a, r: g(p, x, arch, r))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--cands", default=",".join(CANDS))
    ap.add_argument("--archs", default=",".join(ARCHS))
    ap.add_argument("--ncell", type=int, default=5)
    ap.add_argument("--tag", default=os.environ.get("XLA_FLAGS", ""))
    ap.add_argument("--out", default="")
    ap.add_argument("--nocheck", action="store_true")
    args = ap.parse_args()
    cands = args.cands.split(","); archs = args.archs.split(",")
    key = jax.random.PRNGKey(0)
    params = O.init_stage(key, args.ncell)
    x = jax.random.normal(jax.random.PRNGKey(1), (64, 32, 32, 16))
    r = jax.random.normal(jax.random.PRNGKey(2), (64, 32, 32, 16))
    compiled, ctime, errs = {}, {}, {}
    for c in cands:
        fn, traced = CANDS[c]
        for an in archs:
            a = jnp.asarray(ARCHS[an], jnp.int32)
            if traced and (c, archs[0]) in compiled and an != archs[0]:
                compiled[(c, an)] = compiled[(c, archs[0])]; ctime[(c, an)] = ctime[(c, archs[0])]
                continue
            t = time.perf_counter()
            f = make(fn, traced, ARCHS[an], args.ncell).lower(params, x, a, r).compile()
            ctime[(c, an)] = time.perf_counter() - t
            compiled[(c, an)] = f
    # correctness vs a_fixed
    if not args.nocheck:
        for an in archs:
            a = jnp.asarray(ARCHS[an], jnp.int32)
            ref = make(O.cell_fixed, False, ARCHS[an], args.ncell)(params, x, a, r)
            rl, rg = jax.tree.leaves(ref), None
            for c in cands:
                out = compiled[(c, an)](params, x, a, r)
                ol = jax.tree.leaves(out)
                e = max(float(jnp.max(jnp.abs(u - v)) / (jnp.max(jnp.abs(v)) + 1e-12)) for u, v in zip(ol, rl))
                errs[(c, an)] = e
    # warmup
    for k, f in compiled.items():
        a = jnp.asarray(ARCHS[k[1]], jnp.int32)
        jax.block_until_ready(f(params, x, a, r))
    times = {k: [] for k in compiled}
    for rep in range(args.reps):
        keys = list(compiled)
        np.random.default_rng(rep).shuffle(keys)
        for k in keys:
            a = jnp.asarray(ARCHS[k[1]], jnp.int32)
            t = time.perf_counter()
            jax.block_until_ready(compiled[k](params, x, a, r))
            times[k].append(time.perf_counter() - t)
    res = []
    for k in compiled:
        m = float(np.median(times[k])) * 1e3
        res.append(dict(cand=k[0], arch=k[1], ms=m, min_ms=min(times[k]) * 1e3, compile_s=ctime[k],
                        relerr=errs.get(k), tag=args.tag))
        print(f"{k[0]:24s} {k[1]:9s} median {m:8.1f} ms  min {min(times[k])*1e3:8.1f}  compile {ctime[k]:6.2f}s  relerr {errs.get(k)}", flush=True)
    if args.out:
        with open(args.out, "a") as fh:
            for d in res:
                fh.write(json.dumps(d) + "\n")

if __name__ == "__main__":
    main()

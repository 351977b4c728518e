"""SETN: final selection and one search iteration, jaxnas vs xautodl's TinyNetworkSETN, same run.

selection: K candidates (default 100) ranked on one validation batch of 512 images with the
           shared weights. jaxnas: `SETN.pick_best` (one jitted call, `jaxnas.evaluate`); peer:
           xautodl's loop, `set_cal_mode('dynamic', arch)` and a no-grad forward per candidate
           (exps/NAS-Bench-201-algos/SETN.py, `get_best_arch`), BN with batch statistics in both.
iteration: one SETN step at batch 64: a uniformly sampled architecture's SGD weight step (dynamic
           mode) then one Adam step of alpha on the architecture batch (joint mode). jaxnas:
           `SETN.train_step` (on CPU the eager path, jaxnas.spaces.nb201.eager; else jitted); peer: SETN.py's
           `search_func` body.
Both at C=16, N=5 (NB201's search network), CIFAR-10 shapes; medians; jaxnas compile reported apart.

Usage: python benchmarks/bench_setn.py [--cands 100] [--reps 5] [--chunk 0] [--torch-device cuda] \
       [--out FILE.json]
"""
from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch
from common import machine_info, timed

from jaxnas.config import PRESETS
from jaxnas.evaluate import Evaluator
from jaxnas.methods.setn import SETN
from jaxnas.spaces import nb201


def torch_setn(C, N, device="cpu"):
    from xautodl.models.cell_searchs.search_model_setn import TinyNetworkSETN
    net = TinyNetworkSETN(C, N, 4, 10, list(nb201.OPS), False, False).to(device)
    w_opt = torch.optim.SGD(net.get_weights(), lr=0.025, momentum=0.9, nesterov=True, weight_decay=5e-4)
    a_opt = torch.optim.Adam(net.get_alphas(), lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3)
    return net, w_opt, a_opt


def structure(arch):
    from xautodl.models.cell_searchs.genotypes import Structure
    return Structure.str2structure(nb201.to_string(arch))


def torch_select(net, archs, x, y):
    net.train()  # SETN searches with track_running_stats=False: BN uses batch statistics anyway
    accs = []
    with torch.no_grad():
        for arch in archs:
            net.set_cal_mode("dynamic", structure(arch))
            _, logits = net(x)
            accs.append(float((logits.argmax(-1) == y).float().mean()))
    return int(np.argmax(accs))


def torch_iteration(net, w_opt, a_opt, arch, wx, wy, ax, ay):
    net.train()
    net.set_cal_mode("dynamic", structure(arch))
    w_opt.zero_grad()
    _, logits = net(wx)
    torch.nn.functional.cross_entropy(logits, wy).backward()
    torch.nn.utils.clip_grad_norm_(net.get_weights(), 5)
    w_opt.step()
    net.set_cal_mode("joint")
    a_opt.zero_grad()
    _, logits = net(ax)
    torch.nn.functional.cross_entropy(logits, ay).backward()
    a_opt.step()
    if ax.is_cuda:
        torch.cuda.synchronize()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cands", type=int, default=100)
    ap.add_argument("--eval-batch", type=int, default=512)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--C", type=int, default=16)
    ap.add_argument("--N", type=int, default=5)
    ap.add_argument("--skip", default="", help="selection or iteration, to skip one")
    ap.add_argument("--chunk", type=int, default=0,
                    help="candidates per vmapped chunk (0: the backend's default)")
    ap.add_argument("--torch-device", default="cpu", help="cpu, or cuda for the GPU peer")
    ap.add_argument("--out")
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    cfg = PRESETS["paper"].replace(method="setn").set({"nb201.C": a.C, "nb201.N": a.N,
                                                       "eval.select_num": a.cands,
                                                       "eval.batch_size": a.eval_batch,
                                                       "eval.chunk_size": a.chunk})
    method = SETN(cfg, nb201.SPACE, 10)
    state = method.init()
    dev = a.torch_device
    net, w_opt, a_opt = torch_setn(a.C, a.N, dev)
    res = dict(machine_info(), C=a.C, N=a.N, torch_device=dev, chunk=a.chunk)

    if a.skip != "selection":
        archs = nb201.from_index(rng.choice(nb201.NUM_ARCHS, a.cands, replace=False))
        x = rng.standard_normal((a.eval_batch, 32, 32, 3)).astype(np.float32)
        y = rng.integers(0, 10, a.eval_batch).astype(np.int32)
        ctx = Evaluator(jnp.asarray(x), jnp.asarray(y))
        xt, yt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).to(dev), torch.from_numpy(y).long().to(dev)
        t_compile = timed(lambda: method.pick_best(state, archs[:2], ctx))  # compile (K=2 program)
        method.pick_best(state, archs, ctx)  # compile the K program, warm-up
        tj = [timed(lambda: method.pick_best(state, archs, ctx)) for _ in range(max(1, a.reps // 5))]
        tt = [timed(lambda: torch_select(net, archs, xt, yt)) for _ in range(max(1, a.reps // 5))]
        res["selection"] = {"candidates": a.cands, "images": a.eval_batch, "jax_s": float(np.median(tj)),
                            "torch_s": float(np.median(tt)), "speedup": float(np.median(tt) / np.median(tj)),
                            "jax_compile_small_s": t_compile}
        print("selection", json.dumps(res["selection"]), flush=True)

    if a.skip != "iteration":
        b = 64
        step = lambda st, wb, ab: method.train_step(st, wb, ab, 0.025)[0]  # noqa: E731
        if not method.host_step:  # the CPU default (eager) runs outside jit, its pieces compiled
            step = jax.jit(step, donate_argnums=0)
        batches = [(rng.standard_normal((b, 32, 32, 3)).astype(np.float32),
                    rng.integers(0, 10, b).astype(np.int32))
                   for _ in range(2)]
        wb, ab = [(jnp.asarray(x), jnp.asarray(y)) for x, y in batches]
        tb = [(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).to(dev), torch.from_numpy(y).long().to(dev))
              for x, y in batches]
        t0 = time.perf_counter()
        state = jax.block_until_ready(step(state, wb, ab))
        compile_s = time.perf_counter() - t0
        archs = nb201.from_index(rng.choice(nb201.NUM_ARCHS, a.reps + 1, replace=False))
        torch_iteration(net, w_opt, a_opt, archs[0], *tb[0], *tb[1])  # warm-up
        tj, tt = [], []
        for arch in archs[1:]:  # the noqa: B023 lambdas run inside their own iteration
            holder = {}
            tj.append(timed(lambda: holder.update(s=jax.block_until_ready(step(state, wb, ab)))))  # noqa: B023
            state = holder["s"]
            tt.append(timed(lambda: torch_iteration(net, w_opt, a_opt, arch, *tb[0], *tb[1])))  # noqa: B023
        res["iteration"] = {"batch": b, "reps": a.reps, "jax_ms": float(np.median(tj) * 1e3),
                            "torch_ms": float(np.median(tt) * 1e3),
                            "speedup": float(np.median(tt) / np.median(tj)),
                            "jax_compile_s": compile_s}
        print("iteration", json.dumps(res["iteration"]), flush=True)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()

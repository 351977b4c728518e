"""NASWOT throughput: architectures scored per second, jaxnas vs the reference procedure in PyTorch.

Peer (BayesWatch/nas-without-training, score_networks.py): for every architecture build xautodl's
TinyNetwork (C=16, N=5, fresh PyTorch init), hook every nn.ReLU, one training-mode forward of a
batch of 128 images under no_grad, K_H summed in numpy, slogdet.
jaxnas: `ProxyScorer("naswot")` -- per-architecture init, forward, kernel and slogdet for a block
of architectures in one jitted call (lax.map, `--chunk` candidates vmapped at a time).
The two alternate block by block on the same architectures so machine load hits both alike.
jaxnas compile time is reported apart (paid once per run, not per architecture).

Usage: python benchmarks/bench_naswot.py [--archs 64] [--block 16] [--chunk 1] [--torch-device cuda] \
       [--out FILE.json]
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from common import machine_info

from jaxnas.proxies import ProxyScorer
from jaxnas.spaces import nb201


def torch_naswot(arch, x):
    """The reference procedure on x's device (score_networks.py moves each ReLU's K to the host)."""
    from xautodl.models.cell_infers.tiny_network import TinyNetwork
    from xautodl.models.cell_searchs.genotypes import Structure
    net = TinyNetwork(16, 5, Structure.str2structure(nb201.to_string(arch)), 10).to(x.device)
    b = x.shape[0]
    k = np.zeros((b, b))

    def hook(module, inp, out):
        c = (inp[0].reshape(b, -1) > 0).float()
        k[:] += (c @ c.t() + (1 - c) @ (1 - c.t())).cpu().numpy()

    for m in net.modules():
        if isinstance(m, torch.nn.ReLU):
            m.register_forward_hook(hook)
    net.train()
    with torch.no_grad():
        net(x)
    return np.linalg.slogdet(k)[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--archs", type=int, default=64)
    ap.add_argument("--block", type=int, default=16)
    ap.add_argument("--chunk", type=int, default=1)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--torch-device", default="cpu", help="cpu, or cuda for the GPU peer")
    ap.add_argument("--out")
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    archs = nb201.from_index(rng.choice(nb201.NUM_ARCHS, a.archs + a.block, replace=False))
    x = rng.standard_normal((a.batch, 32, 32, 3)).astype(np.float32)
    y = rng.integers(0, 10, a.batch).astype(np.int32)
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).to(a.torch_device)
    scorer = ProxyScorer("naswot", C=16, N=5, seed=0, chunk_size=a.chunk)  # NASWOT's forward uses `switch`

    t0 = time.perf_counter()
    scorer(archs[:a.block], x, y)  # compile + one warm-up block (not timed below)
    compile_s = time.perf_counter() - t0
    torch_naswot(archs[0], xt)  # warm-up
    tj = tt = 0.0
    jax_scores, torch_scores = [], []
    for start in range(a.block, a.block + a.archs, a.block):
        block = archs[start:start + a.block]
        t = time.perf_counter()
        jax_scores.extend(scorer(block, x, y)["naswot"])
        tj += time.perf_counter() - t
        t = time.perf_counter()
        torch_scores.extend(torch_naswot(arch, xt) for arch in block)
        tt += time.perf_counter() - t
    res = {**machine_info(), "torch_device": a.torch_device, "archs": a.archs, "block": a.block,
           "chunk": a.chunk,
           "batch": a.batch, "jax_compile_and_first_block_s": compile_s,
           "jax_archs_per_s": a.archs / tj, "torch_archs_per_s": a.archs / tt, "speedup": tt / tj,
           "jax_score_range": [float(np.min(jax_scores)), float(np.max(jax_scores))],
           "torch_score_range": [float(np.min(torch_scores)), float(np.max(torch_scores))]}
    print(json.dumps(res, indent=2))
    if a.out:
        with open(a.out, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()

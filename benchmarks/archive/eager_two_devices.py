"""Eager weight step (C=16, N=5, batch 64) on 1 vs 2 emulated CPU devices, batch sharded (2026-11-23).

Found (quiet VM): median step 1.82-1.92 s on one device, 1.50-1.60 s with the batch split over two XLA:CPU
devices (each device computes on its own thread; BN statistics are all-reduced). But one run that went
1 -> 2 -> 1 -> 2 devices in the same process aborted in round 4: an XLA:CPU all-reduce rendezvous waited
40 s for the second participant ("cross_module all reduce ... only 1 of them arrived"). Runs with only
2-device rounds (3 rounds) and an 8/1/8/2/8-device SETN loop at C=4, N=1 did not hang. Not adopted.

Usage: python benchmarks/archive/eager_two_devices.py
"""
import os
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
import time, jax, jax.numpy as jnp, numpy as np
from flax import nnx
from jaxnas.config import Config
from jaxnas.nn import split
from jaxnas.spaces.nb201.networks import NB201SuperNet, used_params
from jaxnas.train import state as state_lib, steps, sharding
cfg = Config().set({"nb201.C": 16, "nb201.N": 5})
g, p, s = split(NB201SuperNet(16, 5, 10, affine=False, track_running_stats=False, rngs=nnx.Rngs(0)))
rng = np.random.default_rng(0)
X = rng.standard_normal((64, 32, 32, 3)).astype(np.float32); Y = rng.integers(0, 10, 64).astype(np.int32)
archs = rng.integers(0, 5, (9, 6)); archs[0] = [2, 3, 4, 1, 0, 3]
res = {}
for n in (1, 2, 1, 2):
    mesh = sharding.make_mesh(n)
    st = jax.device_put(jax.device_get(state_lib.create(p, s, 0)), sharding.replicated(mesh))
    x = jax.device_put(X, sharding.data_sharded(mesh)); y = jax.device_put(Y, sharding.data_sharded(mesh))
    go = lambda st, a: steps.eager_weight_step(cfg, g, st, x, y, 0.025, a, used=used_params(st.params, a))[0]
    for a in archs[:2]: st = jax.block_until_ready(go(st, a))
    ts = []
    for a in archs[2:]:
        t = time.perf_counter(); st = jax.block_until_ready(go(st, a)); ts.append(time.perf_counter() - t)
    res.setdefault(n, []).append(float(np.median(ts)))
    print(n, "devices: median step", round(np.median(ts), 3), [round(t, 2) for t in ts], flush=True)

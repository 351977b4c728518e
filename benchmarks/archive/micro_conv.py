"""fwd+bwd of ONE relu->conv3x3(16->16)->BN, batch 64 32x32, various conv impls + torch."""
import os, sys, time
import numpy as np
import jax, jax.numpy as jnp
from jax import lax
sys.path.insert(0, os.path.dirname(__file__))
import ops as O

def conv_nchw(x, w):  # x NHWC in, transposed inside
    xt = x.transpose(0, 3, 1, 2); wt = w.transpose(3, 2, 0, 1)
    y = lax.conv_general_dilated(xt, wt, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NCHW", "OIHW", "NCHW"))
    return y.transpose(0, 2, 3, 1)

_all = {"xla_nhwc": O.conv_xla, "xla_nchw_in": conv_nchw, "cvjp": O.conv_cvjp, "cvjp2_dot": O.conv_cvjp2,
         "im2col": O.conv_im2col}
impls = {k: v for k, v in _all.items() if k in os.environ.get("IMPLS", ",".join(_all)).split(",")}
NOTORCH = bool(os.environ.get("NOTORCH"))
C = int(os.environ.get("C", 16)); CO = int(os.environ.get("CO", C))
x = jax.random.normal(jax.random.PRNGKey(0), (64, 32, 32, C))
w = jax.random.normal(jax.random.PRNGKey(1), (3, 3, C, CO)) * 0.1
r = jax.random.normal(jax.random.PRNGKey(2), (64, 32, 32, CO))
fs = {}
for k, cv in impls.items():
    f = jax.jit(jax.grad(lambda w, x, cv=cv: jnp.sum(O.bn(cv(jax.nn.relu(x), w)) * r), argnums=(0, 1)))
    jax.block_until_ready(f(w, x)); fs[k] = f
ref = fs["xla_nhwc"](w, x)
T = {k: [] for k in fs}
import torch
torch.set_num_threads(2)
xt = torch.randn(64, C, 32, 32, requires_grad=True); wt = torch.randn(CO, C, 3, 3, requires_grad=True)
rt = torch.randn(64, CO, 32, 32)
def tstep(cl):
    xx = xt.contiguous(memory_format=torch.channels_last) if cl else xt
    y = torch.nn.functional.conv2d(torch.relu(xx), wt, padding=1)
    y = torch.nn.functional.batch_norm(y, None, None, training=True)
    (y * rt).sum().backward()
if not NOTORCH:
    T["torch"] = []; T["torch_cl"] = []
    for _ in range(2): tstep(False); tstep(True)
for i in range(15):
    for k, f in fs.items():
        t = time.perf_counter(); jax.block_until_ready(f(w, x)); T[k].append(time.perf_counter() - t)
    if NOTORCH: continue
    t = time.perf_counter(); tstep(False); T["torch"].append(time.perf_counter() - t)
    t = time.perf_counter(); tstep(True); T["torch_cl"].append(time.perf_counter() - t)
for k, v in T.items():
    err = ""
    if k in fs:
        o = fs[k](w, x); err = max(float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b))) for a, b in zip(o, ref))
    print(os.environ.get("XLA_FLAGS",""), f"{k:12s} median {np.median(v)*1e3:7.2f} ms  min {min(v)*1e3:7.2f}  relerr {err}")

"""Data parallelism: one RSPS step on 1 and 8 devices agrees, and two processes training together
over jax.distributed end with the same (correct) weights."""
from __future__ import annotations

import pathlib
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from jaxnas.config import Config
from jaxnas.methods import RSPS
from jaxnas.spaces import nb201
from jaxnas.train import sharding

HERE = pathlib.Path(__file__).resolve().parent
# test-only speed-up: XLA:CPU compiles several times faster at LLVM -O0; semantics are unchanged
FAST_COMPILE = {"xla_backend_optimization_level": 0}


def test_mesh_helpers():
    mesh = sharding.make_mesh()
    assert mesh.axis_names == ("data",) and mesh.devices.size == jax.device_count() == 8
    assert sharding.make_mesh(2).devices.size == 2
    with pytest.raises(ValueError, match="only 8 available"):
        sharding.make_mesh(9)
    sharding.check_divisible(16, mesh)
    with pytest.raises(ValueError, match="batch_size=12 must be divisible by the number of devices"):
        sharding.check_divisible(12, mesh)


@pytest.mark.parametrize("impl", ["eager", "merged"])
def test_rsps_step_same_on_1_and_8_devices(impl):
    """Traced (`merged`, one jitted step) and host-side (`eager`, CPU default) weight steps."""
    cfg = Config().set({"nb201.C": 4, "nb201.N": 1, "train.batch_size": 16, "nb201.single_path_impl": impl})
    method = RSPS(cfg, nb201.SPACE, 10)
    state = method.init()
    rng = np.random.default_rng(0)
    images = rng.standard_normal((16, 16, 16, 3)).astype(np.float32)
    labels = (np.arange(16) % 10).astype(np.int32)
    # state.step=5 so the sampled architecture is a fixed function of (seed, step)
    state = state.replace(step=np.int32(5))

    def step(s, x, y):
        return method.train_step(s, (x, y), None, 0.05)

    if not method.host_step:
        step = jax.jit(step, compiler_options=FAST_COMPILE)
    outs = {}
    for n in (1, 8):
        mesh = sharding.make_mesh(n)
        # fresh buffers: the step donates
        s = jax.device_put(jax.device_get(state), sharding.replicated(mesh))
        x = jax.device_put(images, sharding.data_sharded(mesh))
        y = jax.device_put(labels, sharding.data_sharded(mesh))
        assert len(x.sharding.device_set) == n and x.addressable_shards[0].data.shape[0] == 16 // n
        new, metrics = step(s, x, y)
        assert new.params["stem"]["conv"]["kernel"].sharding.is_fully_replicated
        assert len(new.params["stem"]["conv"]["kernel"].sharding.device_set) == n
        outs[n] = jax.device_get((new, metrics))
    (new1, m1), (new8, m8) = outs[1], outs[8]
    for a, b in zip(jax.tree.leaves((new1.params, new1.stats, new1.opt_state)),
                    jax.tree.leaves((new8.params, new8.stats, new8.opt_state))):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    for k in ("loss", "acc", "grad_norm"):
        np.testing.assert_allclose(m1[k], m8[k], rtol=1e-5, atol=1e-6)
    # the step did train, and BatchNorm statistics were updated (track_running_stats in stem/head)
    init = jax.device_get(state)
    assert not np.allclose(new8.params["stem"]["conv"]["kernel"], init.params["stem"]["conv"]["kernel"])
    assert not np.allclose(new8.stats["stem"]["bn"]["mean"], init.stats["stem"]["bn"]["mean"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _reference_weights():
    """The same SGD steps on the full global batch, in NumPy (float64)."""
    sys.path.insert(0, str(HERE))
    try:
        import _distributed_worker as w
    finally:
        sys.path.remove(str(HERE))
    xs, ts = zip(*(w.local_data(i) for i in range(2)))
    x, t = np.concatenate(xs).astype(np.float64), np.concatenate(ts).astype(np.float64)
    p = {k: v.astype(np.float64) for k, v in w.init_params().items()}
    buf = {k: np.zeros_like(v) for k, v in p.items()}
    for _ in range(w.STEPS):
        r = x @ p["w"] + p["b"] - t
        grads = {"w": 2 * x.T @ r / len(x), "b": 2 * r.sum(0) / len(x)}
        for k, value in p.items():
            d = grads[k] + w.WD * value
            buf[k] = w.MU * buf[k] + d
            p[k] = value - w.LR * (d + w.MU * buf[k])
    return p


def test_two_processes_train_data_parallel(tmp_path):
    coordinator = f"127.0.0.1:{_free_port()}"
    procs = [subprocess.Popen([sys.executable, str(HERE / "_distributed_worker.py"), coordinator, str(i),
                               str(tmp_path / f"out{i}.npz")], cwd=HERE.parent,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(2)]
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=180)[0])
    except subprocess.TimeoutExpired:
        pytest.fail("distributed workers hung for 180 s")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for i, p in enumerate(procs):
        assert p.returncode == 0, f"worker {i} failed:\n{logs[i][-3000:] if i < len(logs) else ''}"
    out = [dict(np.load(tmp_path / f"out{i}.npz")) for i in range(2)]
    for o in out:
        assert int(o["process_count"]) == 2 and int(o["device_count"]) == 4
        assert int(o["local_device_count"]) == 2 and int(o["global_batch"]) == 16
    assert np.array_equal(out[0]["w"], out[1]["w"]) and np.array_equal(out[0]["b"], out[1]["b"])
    want = _reference_weights()  # a run on either shard alone would end elsewhere
    np.testing.assert_allclose(out[0]["w"], want["w"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out[0]["b"], want["b"], rtol=1e-5, atol=1e-6)

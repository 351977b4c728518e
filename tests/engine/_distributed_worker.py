"""One process of the two-process data-parallel test (tests/test_sharding.py starts two of these).

Usage: python _distributed_worker.py <coordinator host:port> <process_id> <out.npz>

Each process owns 2 CPU devices and its own shard of the data (seeded by process id); the global
mesh spans all 4 devices of both processes. A few SGD steps (jaxnas.train.optim.sgd) of a linear
least-squares model run under jax.jit with the batch sharded over `data` and the weights
replicated, so the gradient mean is a cross-process all-reduce. The final weights go to out.npz.
"""
import os
import sys

import numpy as np

LOCAL_BATCH, DIM, OUT, STEPS, LR = 8, 6, 3, 3, 0.1
MU, WD = 0.9, 5e-4


def local_data(process_id: int):
    """This process's shard of the global batch (the test rebuilds it to check the result)."""
    rng = np.random.default_rng(100 + process_id)
    x = rng.standard_normal((LOCAL_BATCH, DIM)).astype(np.float32)
    t = rng.standard_normal((LOCAL_BATCH, OUT)).astype(np.float32)
    return x, t


def init_params():
    rng = np.random.default_rng(7)
    return {"w": (0.1 * rng.standard_normal((DIM, OUT))).astype(np.float32), "b": np.zeros(OUT, np.float32)}


def main(coordinator: str, process_id: int, out: str) -> None:
    os.environ["JAX_PLATFORMS"] = "cpu"
    import jax

    jax.config.update("jax_num_cpu_devices", 2)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=2, process_id=process_id,
                               initialization_timeout=120)
    import jax.numpy as jnp
    import optax
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    from jaxnas.train import optim

    mesh = jax.make_mesh((jax.device_count(),), ("data",), devices=jax.devices())
    data_sh, rep = NamedSharding(mesh, P("data")), NamedSharding(mesh, P())
    x_local, t_local = local_data(process_id)
    x = jax.make_array_from_process_local_data(data_sh, x_local)
    t = jax.make_array_from_process_local_data(data_sh, t_local)
    params = jax.device_put(init_params(), rep)
    tx = optim.sgd(LR, MU, True, WD)
    momentum = jax.device_put(tx.init(init_params()), rep)  # the optimizer state: momentum buffers

    @jax.jit
    def step(params, momentum, x, t):
        def loss_fn(p):
            return jnp.mean(jnp.sum((x @ p["w"] + p["b"] - t) ** 2, axis=-1))

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, momentum = tx.update(grads, momentum, params)
        params = optax.apply_updates(params, updates)
        return params, momentum, loss

    for _ in range(STEPS):
        params, momentum, loss = step(params, momentum, x, t)
    local = {k: np.asarray(v.addressable_data(0)) for k, v in params.items()}
    np.savez(out, process_count=jax.process_count(), device_count=jax.device_count(),
             local_device_count=jax.local_device_count(), global_batch=x.shape[0],
             loss=float(np.asarray(loss.addressable_data(0))), **local)
    jax.distributed.shutdown()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])

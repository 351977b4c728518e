"""NB201 as a `Space` object: the cell encoding (`cell`), its networks, its CPU host passes and
its cost model, behind the interface every space implements (`jaxnas.spaces.base`)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxnas import backend
from jaxnas.spaces.base import Space
from jaxnas.spaces.nb201 import angle, cell, cost, eager, hyper, networks


class NB201Space(Space):
    """An architecture is `int32[6]`, its hash the NB201 index, its relaxed form `float[6, 5]` op
    weights. The space state is `{"ops": bool[6, 5]}`, the ops each edge may still take (all at
    first; ABS shrinks it)."""

    name = "nb201"
    proxy_scoring = True
    zero_op = cell.NONE
    size = cell.NUM_ARCHS
    relaxed_spec = jax.ShapeDtypeStruct((cell.NUM_EDGES, cell.NUM_OPS), jnp.float32)
    host_passes = eager  # capability: single-path / weighted passes on the host tape (jaxnas.nn.tape)

    @property
    def spec(self):
        return jax.ShapeDtypeStruct((cell.NUM_EDGES,), jnp.int32)

    def sample(self, key, k, state=None):
        return cell.sample(key, k, None if state is None else state["ops"])

    def validate(self, arch):
        return cell.validate(arch)

    def to_string(self, arch):
        return cell.to_string(arch)

    def from_string(self, text):
        return cell.from_string(text)

    def hash(self, arch):
        return cell.to_index(arch)

    def enumerate(self):
        return cell.enumerate_all()

    def bench_index(self, arch):
        return cell.to_index(arch)

    def init_state(self):
        return {"ops": jnp.ones((cell.NUM_EDGES, cell.NUM_OPS), bool)}

    def allows(self, arch, state) -> np.ndarray:
        """bool[...]: whether each architecture uses only ops `state` allows."""
        a = cell.validate(arch)
        ok = np.take_along_axis(np.asarray(state["ops"])[None], a.reshape(-1, cell.NUM_EDGES)[..., None], -1)
        return ok[..., 0].all(-1).reshape(a.shape[:-1])

    def cost(self, arch, C: int = 16, N: int = 5, num_classes: int = 10, image_size: int = 32) -> dict:
        """Traceable {"params", "flops"} of the standalone network of `arch` (NB201's table conventions)."""
        return {"params": cost.params(arch, C, N, num_classes),
                "flops": cost.flops(arch, C, N, num_classes, image_size)}

    def angles(self, params0, params, archs):
        """ABS's weight angle of each architecture int32[K, 6] between the supernet's weights
        `params0` and `params` (`angle`: AngleNAS's NB201 construction, vectorised)."""
        return angle.arch_angles(params0, params, archs)

    # --- the `nb201` config section -----------------------------------------------------------
    def check_config(self, cfg) -> None:
        if cfg.eval.bn == "running" and not cfg.nb201.track_running_stats:
            raise ValueError("eval.bn=running needs nb201.track_running_stats=true")

    def relative_cost(self, cfg) -> float:
        """Cells x channels², relative to C=16, N=5 (BENCHMARKS.md's eager step)."""
        return (cfg.nb201.N / 5) * (cfg.nb201.C / 16) ** 2

    def host_path(self, cfg) -> bool:
        return backend.host_path(cfg.nb201.single_path_impl)

    def network_kwargs(self, cfg) -> dict:
        return {"C": cfg.nb201.C, "N": cfg.nb201.N, "single_path_impl": cfg.nb201.single_path_impl}

    # --- networks ----------------------------------------------------------------------------
    def build_supernet(self, section, num_classes, *, seed):
        """The weight-sharing supernet of an `nb201` config section, initialised from `seed`."""
        return self.supernet(section.C, section.N, num_classes, affine=section.affine,
                             track_running_stats=section.track_running_stats,
                             single_path_impl=section.single_path_impl, rngs=nnx.Rngs(seed))

    def build_network(self, arch, section, num_classes, *, seed):
        """The standalone network of `arch` at an `nb201` section's size, initialised from `seed`
        (`jaxnas train`)."""
        return self.network(arch, section.C, section.N, num_classes, rngs=nnx.Rngs(seed))

    def build_hypernet(self, section, num_classes, *, seed):
        """The supernet whose cell convolutions a HyperNet generates (`hyper.HyperNB201`: SMASH on
        NB201); its forward reads the candidates `with_noise` makes."""
        return hyper.HyperNB201(section.C, section.N, num_classes, affine=section.affine,
                                track_running_stats=section.track_running_stats,
                                single_path_impl=section.single_path_impl, rngs=nnx.Rngs(seed))

    def with_noise(self, key, archs, state=None):
        """`build_hypernet`'s candidates: `archs` int32[K, 6], each with its own noise."""
        return hyper.with_noise(key, archs)

    def perturb(self, key, archs, p: float = 0.05):
        """Each edge of each of `archs` int32[K, 6] redrawn with probability p (`hyper.perturb`)."""
        return hyper.perturb(key, archs, p)

    def supernet(self, C, N, num_classes, **kw):
        """The weight-sharing supernet (`networks.NB201SuperNet`)."""
        return networks.NB201SuperNet(C, N, num_classes, **kw)

    def network(self, arch, C, N, num_classes, **kw):
        """The standalone network of one architecture (`networks.NB201Network`)."""
        return networks.NB201Network(arch, C, N, num_classes, **kw)

    def used_params(self, params, arch):
        """Bool tree: the supernet parameters a single-path `arch` uses."""
        return networks.used_params(params, arch)


SPACE = NB201Space()

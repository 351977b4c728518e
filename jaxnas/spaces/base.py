"""The search-space interface every space implements.

An architecture is a pytree of fixed-shape arrays (NB201: `int32[6]`); a batch of K candidates has
a leading K axis on every leaf, so `vmap`, `lax.map` and candidate evaluation work unchanged for
every space. A space that shrinks or evolves during a run (ABS, NSE) keeps that in a *space state*:
fixed-shape masks over a pool, never arrays that change shape, so checkpoints restore against the
initial template and compiled steps stay valid.

Required: `spec` (shapes and dtypes of one architecture), `sample`, `validate`, `to_string` /
`from_string` and `hash`. Optional capabilities, which callers check with `has(space, name)`:
`size` / `enumerate` (a finite space listed in full), `bench_index` (row of a ground-truth table),
`relaxed_spec` (a continuous form, e.g. NB201's `[6, 5]` op weights), `encode` (the float features
a hypernetwork reads), `cost` (traceable FLOPs / parameters), `init_state` (a space state),
`allows` (which architectures a space state still holds), `angles` (ABS's angle between an
architecture's initial and current supernet weights) and `host_passes` (the CPU host path: an
object, e.g. a module, whose `value_and_grad` / `weights_value_and_grad` (the weight and relaxed
steps, `jaxnas.train.steps`), `forward`, `summed_logits_grad` and `block_pullbacks` (the eager
proxies) run the supernet for a concrete host architecture on `jaxnas.nn.tape`; NB201:
`jaxnas.spaces.nb201.eager`).

Spaces that train networks also give the network half: `build_supernet(section, num_classes, *,
seed)` (the weight-sharing network the supernet methods train; its call follows
`jaxnas.nn.supernet.Supernet`) and `build_network(arch, section, num_classes, *, seed)` (one
architecture's standalone network, `jaxnas train`), sized by the space's own config section
(`section(cfg)`), and `used_params` (the supernet weights a single path uses). `configure(cfg)`
returns the space for a config (a space whose architecture shape depends on sizes, e.g. `hybrid`).
What generic code needs from the space's section it asks through `check_config`,
`relative_cost`, `host_path` and `network_kwargs`: no module outside a space's package reads it.

A space SMASH searches (`--method smash`) gives `build_hypernet(section, num_classes, *, seed)` (a
network whose weights a HyperNet generates from each candidate; its call follows the same
protocol), `with_noise(key, archs, state)` (the candidates it reads: the architectures with their
noise z) and `perturb(key, archs, p)` (each decision redrawn with probability p).
"""
from __future__ import annotations

import abc
import hashlib

import jax
import jax.numpy as jnp

CAPABILITIES = ("size", "enumerate", "bench_index", "relaxed_spec", "encode", "cost", "init_state", "allows",
                "angles", "host_passes")
_ATTRIBUTES = ("size", "relaxed_spec", "host_passes")  # capabilities that are values, not methods


class Space(abc.ABC):
    """Abstract: a family of architectures, each a pytree of fixed-shape arrays."""

    name: str = ""          # also the name of its config section (`section`), if it has one
    arch_fields: tuple = ()  # fields of that section an architecture's shape depends on (`configure`);
                             # `jaxnas train --arch-from` copies them from the search run
    zero_op: int | None = None  # the op of a relaxed cell (`relaxed_spec`'s last axis) that outputs zeros
                                # (NB201: none), which pruning drops first
    proxy_scoring: bool = False  # the training-free proxies (`jaxnas.proxies.ProxyScorer`) build and read
                                 # its networks (`network_kwargs`, `cost`, the supernet's `tap`)

    @property
    @abc.abstractmethod
    def spec(self):
        """One architecture's pytree of jax.ShapeDtypeStruct."""

    @abc.abstractmethod
    def sample(self, key: jax.Array, k: int, state=None):
        """K architectures (leading K axis on every leaf), drawn from what `state` allows (every
        architecture when None). Traceable."""

    @abc.abstractmethod
    def validate(self, arch):
        """`arch` (one, or a batch) as host arrays of the spec's dtypes, or ValueError naming the fault."""

    @abc.abstractmethod
    def to_string(self, arch) -> str:
        """One architecture as a readable string that `from_string` turns back into it."""

    @abc.abstractmethod
    def from_string(self, text: str):
        """Inverse of `to_string`; ValueError naming the offending part."""

    def configure(self, cfg) -> Space:
        """The space sized by `cfg` (this one, unless the architecture shape depends on the config)."""
        return self

    # --- what generic code asks of a space's config section (only the space reads its section) ----
    def section(self, cfg):
        """The space's own config section of `cfg` (its `config.py`: `jaxnas.registry`), or None."""
        return getattr(cfg, self.name, None)

    def check_config(self, cfg) -> None:  # noqa: B027 -- optional: most spaces have no such rule
        """ValueError for a config this space cannot run (rules across its section and others)."""
        return None

    def relative_cost(self, cfg) -> float:
        """The cost of the config's supernet relative to the space's `paper` size (the estimate's
        scale: 1.0 is a step at the benchmarked size)."""
        return 1.0

    def host_path(self, cfg) -> bool:
        """Whether weight steps of the config run the space's host passes (`host_passes`) on this
        backend instead of one traced program."""
        return False

    def network_kwargs(self, cfg) -> dict:
        """The size and formulation keywords of the config's networks (what a scorer builds)."""
        return {}

    @abc.abstractmethod
    def hash(self, arch):
        """A stable integer identity of each architecture (host int64, batch shape): seeds that
        belong to an architecture (per-candidate initialisation) are derived from it."""


def count_dtype(largest: int):
    """The dtype of a traced parameter / FLOP count whose largest possible value is `largest`:
    int32 where it fits, else int64 under x64, else float32 (exact to 24 bits)."""
    if largest <= 2**31 - 1:
        return jnp.int32
    return jnp.int64 if jax.config.jax_enable_x64 else jnp.float32


def digest(prefix: str, data: bytes) -> int:
    """A stable non-negative int64 identity of `data` under `prefix` (a space's sizes): what `hash`
    returns for a space whose architectures have no index (blake2b, 63 bits)."""
    return int.from_bytes(hashlib.blake2b(prefix.encode() + data, digest_size=8).digest(), "little") >> 1


def has(space: Space, capability: str) -> bool:
    """Whether `space` offers an optional capability (one of CAPABILITIES)."""
    if capability not in CAPABILITIES:
        raise ValueError(f"unknown capability {capability!r}; capabilities: {', '.join(CAPABILITIES)}")
    return callable(getattr(space, capability, None)) or (
        capability in _ATTRIBUTES and getattr(space, capability, None) is not None)

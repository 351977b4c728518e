"""The method contract, and what every supernet method shares.

A method is driven by the one loop (`jaxnas.train.loop`):

    state = restore(run_dir) or method.init()
    for round:                          # NSE evolves its space between rounds; others have one
        for epoch:
            for step: state, m = method.train_step(state, wbatch, abatch, lr)   # pure
            state, m = method.epoch_end(state, evaluator)     # may change the state (ABS shrinks)
        state, m = method.round_end(state, evaluator, last)   # may change the state (NSE evolves)
    result = method.select(state, evaluator)                  # {"arch": ..., "candidates": [...], ...}

`train_step` is jitted by the loop with the state donated, unless `host_step` (the network's host
passes on CPU; see `jaxnas.backend`), in which case it runs outside jit and jits its own pieces.
A method file holds only what is particular to that method.
"""
from __future__ import annotations

import abc

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxnas import estimate, search
from jaxnas.config import Config
from jaxnas.evaluate import Evaluator
from jaxnas.nn import split
from jaxnas.spaces.arch import KINDS, Choice
from jaxnas.spaces.base import Space, has
from jaxnas.train import optim, steps
from jaxnas.train import state as state_lib


class Method(abc.ABC):
    """Abstract: what the loop calls. `split`: "search" trains on the weights half of the training
    set (the other half feeds architecture steps and ranking), "full" on all of it."""

    name = ""
    split = "search"
    uses_arch_batch = False  # does train_step take a batch from the architecture half?
    host_step = False        # does train_step run outside jit?
    trains = True            # False: no training steps, the loop goes straight to `select`
    needs_dataset = False    # True: the constructor also takes `dataset=` (the loaded Dataset)
    reads_rule = False       # True: the method ranks by `proxy.rule`
    progress = False         # show progress bars in long hooks (set by the loop from --no-progress)
    total_steps = 0          # the run's weight steps (set by the loop; schedules a method keeps itself)

    def __init__(self, cfg: Config, space: Space, num_classes: int):
        self.cfg, self.space, self.num_classes = cfg, space, num_classes

    @classmethod
    def check(cls, cfg: Config, space: Space) -> None:
        """ValueError, before any data is read or any step runs, for a config this method on
        `space` would silently ignore or fail on later. Subclasses add their own rules."""
        name = cfg.method
        space.check_config(cfg)
        if cfg.proxy.rule and not cls.reads_rule:
            raise ValueError(f"proxy.rule={cfg.proxy.rule} is read by --method rule and --method prune (and "
                             f"`jaxnas score`); --method {name} would ignore it: drop it or use --method "
                             "rule")
        probe = cfg.eval.rank_probe
        if probe:
            if not (cls.trains and cls.split == "search" and hasattr(cls, "rank")):
                raise ValueError("eval.rank_probe ranks fixed architectures with a search's trained "
                                 f"weights; --method {name} trains none: leave eval.rank_probe at 0")
            if not has(space, "enumerate"):
                raise ValueError(f"eval.rank_probe draws architectures from a space that lists them; space "
                                 f"{space.name!r} does not: leave eval.rank_probe at 0")
            if probe > space.size:
                raise ValueError(f"eval.rank_probe={probe} exceeds the {space.size} architectures of space "
                                 f"{space.name!r}")

    @classmethod
    def estimate_seconds(cls, cfg: Config, n_train: int) -> float:
        """Seconds of the run on 2 CPU cores (`jaxnas.estimate`'s cost model): its weight steps and
        one ranking of the candidates. A method whose run costs otherwise gives its own."""
        return estimate.supernet_seconds(cfg, n_train, cls.split)

    @abc.abstractmethod
    def init(self) -> state_lib.SearchState:
        """The state at step 0 (weights, optimizer, method and space state)."""

    @abc.abstractmethod
    def train_step(self, state, wbatch, abatch, lr):
        """One step: (new state, metrics). Leaves `step` alone (the loop counts)."""

    def epoch_end(self, state, evaluator: Evaluator):
        """(state, metrics) at the end of each epoch."""
        return state, {}

    def space_state(self, state):
        """The space's state (`Space.init_state`'s form) the run has left: the architectures still
        allowed (result.json's `space_bench`). A method keeping more in `state.space` says which."""
        return state.space

    def round_end(self, state, evaluator: Evaluator, last: bool = False):
        """(state, metrics) at the end of each round; `last`: the final round, whose end `select`
        follows at once (a method that re-initialises per round must not do it then)."""
        return state, {}

    @abc.abstractmethod
    def select(self, state, evaluator: Evaluator) -> dict:
        """The result: {"arch": one architecture, ...extras written to result.json}."""


class SupernetMethod(Method):
    """Base of the methods that train a weight-sharing supernet with SGD (RSPS, SETN, ...)."""

    @classmethod
    def check(cls, cfg: Config, space: Space) -> None:
        super().check(cfg, space)
        if not callable(getattr(space, "build_supernet", None)):
            hint = "; its weights come from a HyperNet: --method smash" if callable(
                getattr(space, "build_hypernet", None)) else ""
            raise ValueError(f"--method {cfg.method} trains a supernet; space {space.name!r} builds none "
                             f"(`build_supernet`){hint}")

    def __init__(self, cfg: Config, space: Space, num_classes: int):
        super().__init__(cfg, space, num_classes)
        self.host = space.host_passes if has(space, "host_passes") and space.host_path(cfg) else None
        self.host_step = self.host is not None
        self.graphdef, self._params, self._stats = split(self.build_model(num_classes))
        self.tx = optim.sgd(cfg.train.lr, cfg.train.momentum, cfg.train.nesterov, cfg.train.weight_decay)

    def build_model(self, num_classes: int) -> nnx.Module:
        return self.space.build_supernet(self.space.section(self.cfg), num_classes, seed=self.cfg.seed)

    def init(self) -> state_lib.SearchState:
        return state_lib.create(self._params, self._stats, self.cfg.seed, self.tx.init(self._params),
                                space=self.space.init_state())

    # --- shared pure pieces -------------------------------------------------------------
    def weight_step(self, state, images, labels, arch, lr):
        """One step of the shared weights for `arch` (a container; a space's plain architecture is
        read as a `Choice`); with a `Choice`, parameters of unsampled ops are skipped unless
        `decay_unsampled`."""
        arch = arch if isinstance(arch, KINDS) else Choice(arch)
        single = isinstance(arch, Choice)
        host = self.host if single else None
        if host is not None:
            arch = Choice(np.asarray(arch.value))
        skips_unsampled = single and not self.cfg.train.decay_unsampled
        used = self.space.used_params(state.params, arch.value) if skips_unsampled else None
        return steps.weight_step(self.tx, self.cfg.train.grad_clip, self.graphdef, state, images, labels, lr,
                                 arch, used=used, host=host)

    def rank(self, state, archs, evaluator: Evaluator):
        """Validation metrics of candidates `archs` (a container batch; plain architectures, an
        array or a pytree of arrays, are read as `Choice`) with the shared weights (one jitted call)."""
        archs = archs if isinstance(archs, KINDS) else Choice(jax.tree.map(jnp.asarray, archs))
        return evaluator(self.graphdef, state.params, state.stats, archs)

    def pick_best(self, state, archs, evaluator: Evaluator) -> dict:
        """Evaluate `archs` (an array or a pytree of arrays, leading K axis) and return the best by
        `jaxnas.search.best` (most accurate; ties: lower loss, then first), as host arrays; accuracies
        in percent, as everywhere jaxnas writes them."""
        res = jax.device_get(self.rank(state, jax.tree.map(jnp.asarray, archs), evaluator))
        acc, loss = 100 * np.asarray(res["acc"], np.float64), np.asarray(res["loss"])
        archs, i = jax.device_get(archs), search.best(acc, loss)  # host arrays, indexed once each
        return {"arch": search.take(archs, i), "valid_acc": float(acc[i]), "valid_loss": float(loss[i]),
                "candidates": [{"arch": self.space.to_string(search.take(archs, j)), "valid_acc": float(c),
                                "valid_loss": float(v)} for j, (c, v) in enumerate(zip(acc, loss))]}

"""SMASH: one-shot architecture search through a HyperNet (Brock, Lim, Ritchie, Weston, ICLR 2018;
ajbrock/SMASH train.py, evaluate.py, SMASH.py).

Training (train.py `train_fn`, SMASH.py `update_lr`): every step draws a new architecture and a
new noise z; the HyperNet generates the architecture's 1x1 weights from its encoding and z; the
main network runs with them; the cross-entropy trains the HyperNet and the main network's own
weights together. Adam (betas `smash_search.b1`, `b2`, eps `eps`) with L2 weight decay on the main
network only, the learning rate the loop's per-step cosine. The sampler's bounds are annealed over
the first half of training (the space's `annealed_state`, kept in the search state's space part).

Selection (evaluate.py): the SMASH score of a candidate is its error on the held-out images with
generated weights, one z per candidate, BN's running statistics (`eval.bn=running` in the
presets). `random` sampled architectures; then `perturbed` perturbations of the best of them; then
a chain of `markov` perturbations from the best so far, each accepted when it scores strictly
better. result.json lists every candidate, ranked, with its score, phase and cost.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from jaxnas import estimate, search, spaces
from jaxnas.methods.base import Method
from jaxnas.nn import split
from jaxnas.nn.functional import loss_and_accuracy
from jaxnas.spaces.arch import Choice
from jaxnas.spaces.base import has
from jaxnas.train import optim, steps
from jaxnas.train import state as state_lib
from jaxnas.train.state import KEY_METHOD, KEY_SAMPLE, select_key, step_key

RANK_NOISE_SEED = 0  # the z of `rank`'s candidates
# 2-core CPU, batch 50, the smash space's tiny preset (BENCHMARKS.md 15b, 15c). Traced: one step of
# the memory-bank network, one candidate scored on 300 images. Host path (`smash.impl`): the same,
# compiled, and the compile of one kernel signature met in training (forward + pullback) or scoring
# (forward); the signatures n sampled architectures bring, counted from the sampler at the final
# bounds (the tiny preset's; other sizes are scaled by work only). A space whose supernet's weights
# the HyperNet generates (NB201's adapter) costs HYPER_SUPERNET_FACTOR single-path steps of the same
# size (0.18 s against the engine's 0.047 s model at C=8, N=1).
MEMBANK_STEP_S, MEMBANK_CANDIDATE_S, HYPER_SUPERNET_FACTOR = 4.3, 11.4, 3.8
HOST_STEP_S, HOST_CANDIDATE_S, HOST_KERNEL_S, HOST_FORWARD_KERNEL_S = 0.2, 0.61, 0.46, 0.125
SIGNATURES = ((1, 40), (10, 175), (30, 361), (100, 670), (300, 934), (1000, 1188), (2000, 1373))


def signatures(n: int) -> float:
    """Kernel signatures n architectures bring (`SIGNATURES`, interpolated in log n; beyond 2,000 at
    the last decade's rate)."""
    if n <= 0:
        return 0.0
    ns, ks = np.log([a for a, _ in SIGNATURES]), [k for _, k in SIGNATURES]
    slope = (ks[-1] - ks[-2]) / (ns[-1] - ns[-2])
    return float(np.interp(np.log(n), ns, ks) + max(0.0, np.log(n) - ns[-1]) * slope)


class SMASH(Method):
    name = "smash"

    @classmethod
    def check(cls, cfg, space) -> None:
        super().check(cfg, space)
        needs = ("build_hypernet", "with_noise", "perturb")
        missing = [c for c in needs if not callable(getattr(space, c, None))]
        if missing:
            raise ValueError(f"--method smash generates each candidate's weights with a HyperNet; space "
                             f"{space.name!r} has no {', '.join(missing)}")

    @classmethod
    def estimate_seconds(cls, cfg, n_train: int) -> float:
        """Training steps and the selection's candidates: at the measured costs of the memory-bank
        network (traced, or on the host path with its compiles) scaled by the space's
        `relative_cost`, or as the engine's single-path model of the space's supernet times the
        HyperNet's factor."""
        s = cfg.smash_search
        candidates = s.random + s.perturbed + s.markov
        space = spaces.get(cfg.space, cfg)
        if callable(getattr(space, "build_supernet", None)):
            return HYPER_SUPERNET_FACTOR * estimate.supernet_seconds(
                cfg.set({"eval.select_num": candidates}), n_train, cls.split)
        steps = estimate.search_steps(cfg, n_train, cls.split)
        batch, images, work = cfg.train.batch_size / 50, cfg.eval.batch_size / 300, space.relative_cost(cfg)
        if space.host_path(cfg):  # exact shapes: compiles per signature, then the architectures' work
            return (work * (steps * HOST_STEP_S * batch + candidates * HOST_CANDIDATE_S * images)
                    + HOST_KERNEL_S * signatures(steps) + HOST_FORWARD_KERNEL_S * signatures(candidates))
        return work * (steps * MEMBANK_STEP_S * batch + candidates * MEMBANK_CANDIDATE_S * images)

    def __init__(self, cfg, space, num_classes):
        super().__init__(cfg, space, num_classes)
        self.section = cfg.smash_search
        self.graphdef, self._params, self._stats = split(
            space.build_hypernet(space.section(cfg), num_classes, seed=cfg.seed))
        # weight decay on the main network only (SMASH.py: two Adam parameter groups)
        mask = jax.tree_util.tree_map_with_path(lambda path, _: getattr(path[0], "key", None) != "hypernet",
                                                self._params)
        # one compiled program each for the selection's draws (eager calls would retrace every time)
        self._sample = jax.jit(space.sample, static_argnums=1)
        self._perturb = jax.jit(space.perturb, static_argnums=2)
        self.tx = optim.make("adam", cfg.train.lr, weight_decay=cfg.train.weight_decay, decay_mask=mask,
                             betas=(self.section.b1, self.section.b2), eps=self.section.eps)
        # the space's host passes run the HyperNet network with exact shapes (the memory-bank space on
        # CPU: `smash.impl`); a space with a supernet has host passes for that supernet, not this one
        self.host = space.host_passes if (has(space, "host_passes") and space.host_path(cfg) and not callable(
            getattr(space, "build_supernet", None))) else None
        self.host_step = self.host is not None
        self._draw = jax.jit(self._draw_fn)
        self._metrics = jax.jit(loss_and_accuracy)

    def init(self):
        return state_lib.create(self._params, self._stats, self.cfg.seed, self.tx.init(self._params),
                                space=self.space.init_state())

    def bounds(self, step):
        """The sampler's bounds at `step` (the space state): annealed over the run's `total_steps`
        (set by the loop) where the space anneals (`annealed_state`), else the final ones."""
        if not (self.section.anneal and self.total_steps and hasattr(self.space, "annealed_state")):
            return self.space.init_state()
        return self.space.annealed_state(jnp.asarray(step, jnp.float32) / self.total_steps)

    def _draw_fn(self, state):
        """The step's sampler bounds and its candidate (an architecture with its z)."""
        bounds = self.bounds(state.step)
        arch = self.space.sample(step_key(state, KEY_SAMPLE), 1, bounds)
        cand = self.space.with_noise(step_key(state, KEY_METHOD), arch, bounds)
        return bounds, jax.tree.map(lambda v: v[0], cand)

    def train_step(self, state, wbatch, abatch, lr):
        """Outside jit with host passes (`host_step`): the candidate is drawn by one jitted call and
        the network runs on the host at its exact shapes."""
        bounds, cand = self._draw(state) if self.host_step else self._draw_fn(state)
        one = Choice(jax.device_get(cand) if self.host_step else cand)
        images, labels = wbatch
        state, metrics = steps.weight_step(self.tx, self.cfg.train.grad_clip, self.graphdef, state, images,
                                           labels, lr, one, host=self.host)
        return state.replace(space=bounds), metrics

    # --- selection (evaluate.py) ---------------------------------------------------------------
    def score(self, state, archs, key, evaluator):
        """(accuracy %, loss) of each candidate (leading K axis) with its own z drawn from `key`."""
        cand = self.space.with_noise(key, archs, self.space.init_state())
        res = jax.device_get(self._evaluate(state, cand, evaluator))
        return 100 * np.asarray(res["acc"], np.float64), np.asarray(res["loss"], np.float64)

    def rank(self, state, archs, evaluator):
        """Validation metrics of `archs` (leading K axis) with generated weights, each with its own z
        from one fixed key (`eval.rank_probe`: the same noise for the same set in every run)."""
        cand = self.space.with_noise(jax.random.key(RANK_NOISE_SEED), archs, self.space.init_state())
        return self._evaluate(state, cand, evaluator)

    def _evaluate(self, state, cand, evaluator):
        """{"loss", "acc"} of candidates `cand` (leading K axis): the evaluator's vmapped program, or
        with host passes one candidate at a time at its exact shapes (BN: running statistics, or the
        batch's with eval.bn=batch; recalibration runs traced)."""
        if self.host is None or evaluator.bn == "recal":
            return evaluator(self.graphdef, state.params, state.stats, Choice(cand))
        cand = jax.device_get(cand)
        k = len(next(iter(cand.values())))
        loss, acc = np.zeros(k, np.float32), np.zeros(k, np.float32)
        for i in tqdm(range(k), desc=evaluator.desc, unit="cand", dynamic_ncols=True,
                      disable=not (evaluator.progress and evaluator.block_size)):
            logits, _ = self.host.forward(self.graphdef, state.params, state.stats, evaluator.images,
                                          Choice(jax.tree.map(lambda v, i=i: v[i], cand)),
                                          train=evaluator.bn == "batch")
            loss[i], acc[i] = jax.device_get(self._metrics(logits, evaluator.labels))
        return {"loss": jnp.asarray(loss), "acc": jnp.asarray(acc)}

    def select(self, state, evaluator):
        s = self.section
        keys = jax.random.split(select_key(state), 5)
        found = []  # (host archs with a leading axis, accuracy %, loss, phase) of every phase so far

        def best():
            archs, acc, loss, _ = _concat(found)
            i = search.best(acc, loss)
            return search.take(archs, [i]), acc[i]

        archs = jax.device_get(self._sample(keys[0], s.random, self.space.init_state()))
        found.append((archs, *self.score(state, archs, keys[1], evaluator.in_blocks("random", 64)), "random"))
        if s.perturbed:  # perturbations of the best random architecture (evaluate.py: base fixed)
            many = jax.tree.map(lambda v: np.repeat(v, s.perturbed, 0), best()[0])
            archs = jax.device_get(self._perturb(keys[2], many, s.perturb_p))
            found.append((archs, *self.score(state, archs, keys[3], evaluator), "perturbed"))
        if s.markov:  # a chain from the best so far: a perturbation replaces it when strictly better
            base, current = best()
            for t in range(s.markov):
                k_arch, k_z = jax.random.split(jax.random.fold_in(keys[4], t))
                arch = jax.device_get(self._perturb(k_arch, base, s.perturb_p))
                acc, loss = self.score(state, arch, k_z, evaluator)
                found.append((arch, acc, loss, "markov"))
                if acc[0] > current:
                    base, current = arch, acc[0]
        return self._result(*_concat(found))

    def _result(self, archs, acc, loss, phase):
        costs = jax.device_get(jax.vmap(self.space.cost)(archs)) if has(self.space, "cost") else {}
        rank = search.order(acc, loss)
        cands = []
        for r, j in enumerate(rank):
            row = {"rank": r + 1, "arch": self.space.to_string(search.take(archs, j)), "phase": phase[j],
                   "smash_error": float(100 - acc[j]), "valid_acc": float(acc[j]),
                   "valid_loss": float(loss[j])}
            row.update({k: v[j].item() for k, v in costs.items()})
            cands.append(row)
        i = int(rank[0])
        return {"arch": search.take(archs, i), "valid_acc": float(acc[i]), "valid_loss": float(loss[i]),
                "smash_error": float(100 - acc[i]), "candidates": cands}


def _concat(found):
    """The phases' candidates as one batch: (archs, accuracy, loss, phase per candidate)."""
    archs = jax.tree.map(lambda *v: np.concatenate(v), *[f[0] for f in found])
    phase = [name for f in found for name in [f[3]] * len(f[1])]
    return archs, np.concatenate([f[1] for f in found]), np.concatenate([f[2] for f in found]), phase

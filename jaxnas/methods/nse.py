"""NSE: neural search-space evolution (Ci et al., "Evolving Search Space for Neural Architecture
Search", ICCV 2021; orashi/NSE_NAS@939edf2 main.py, utils/supernet_utils.py; the port's decisions:
docs/nse-reference.md, section 8 numbers them D1-D20).

Each cell trains and searches a subset S_c of K operators of the pool (`nse_evolve`). A round:
    every step      a weight step of the supernet with each operator of S_c gated by an
                    independent Bernoulli(1/2), an empty non-identity cell redrawn (su:994-1000);
    every 2nd step  an architecture step on a held-out batch: per cell two distinct gate patterns
                    from the law p = sigmoid(alpha) 0.999 + 5e-4, the pair estimator's straight-through
                    forward (`search.pairs`), loss = CE + mac_alpha (E[MACs] + back - target)^mac_beta,
                    Adam on alpha; then cleaning (alpha below the threshold dropped, D7, D8);
    round end       sample_num unique architectures from the trained law in the MAC window and
                    extra_num just below it, plus the previous front, each scored after BN
                    recalibration; the Pareto front over (MACs, accuracy) (D10-D12); its operators
                    are kept and S_c refilled from the cell's pending queue; the weights (fc and BN
                    statistics included, D9), alpha and both optimisers restart (not after the last).
The search's result is the last front (result.json) and its most accurate member under `nse.budget`.

The round's operator set is static: one compiled program per round (`MobileSupernet.with_ops`), so
`train_step` runs outside jit (`host_step`) and calls the round's jitted steps. Where the space has
host passes (CPU: `mobile.impl`, `nb201.single_path_impl`), the weight step draws its architecture
in a jitted call and runs only the drawn operators on the host tape (`spaces/mobile/eager.py`); the
architecture step and the round end's scoring stay traced.

On NB201 (the check against ground truth; issue 32 item 3) an edge's pool is its 5 operations and
the law a categorical over its subset (softmax(alpha)): the weight step trains one uniformly drawn
path of the subsets, the pair is two distinct operations with their pair-renormalised probabilities
(the straight-through weights on the relaxed supernet), every candidate is a genotype and the cost
axis is NB201's FLOPs. `nse.mac_target=0` (the default) sets no target: no penalty, no window.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxnas import estimate, search, spaces
from jaxnas.config import preset
from jaxnas.methods import nse_evolve as ev
from jaxnas.methods.base import Method
from jaxnas.nn import split
from jaxnas.nn.functional import apply, loss_and_accuracy
from jaxnas.spaces.arch import Choice, Gates, Weights
from jaxnas.spaces.base import has
from jaxnas.train import optim, steps
from jaxnas.train import state as state_lib
from jaxnas.train.state import KEY_METHOD, KEY_SAMPLE, step_key

ROUND_SEED = 10_007  # round r's weights are drawn from seed + r ROUND_SEED
# Seconds on 2 CPU cores (`estimate_seconds`): the tiny mobile preset's host weight step, architecture
# step, candidate (2 recalibration batches + 256 images) and compiles a round (BENCHMARKS.md 16c); on
# NB201 a step cost 4x RSPS's at C=8, N=1 (experiments/nse: 168 s against 41 s for 390 steps)
MOBILE_S = {"weight": 2.75, "arch": 5.2, "candidate": 4.8, "round_compile": 600.0}
NB201_STEP_FACTOR = 4.0


class MobileLaw:
    """NSE on the mobile space (the paper's): multi-branch cells, an architecture is its gates."""
    single = False

    def __init__(self, space, cfg, num_classes):
        self.space, self.num_classes, self.section = space, num_classes, space.section(cfg)
        self.shape, self.identity = space.shape, np.asarray(space.identity)
        macs, _ = space.layout.tables
        self.table = macs / 1e6                                     # M MACs per (cell, operator)
        self.back = space.layout.back(num_classes)[0] / 1e6
        self._model = None
        self._graphdefs = {}

    def build(self, seed):
        self._model = self.space.build_supernet(self.section, self.num_classes, seed=seed)
        return self._model

    def graph(self, active):
        """The round's graph: the supernet with this round's operators as its static set."""
        key = active.tobytes()
        if key not in self._graphdefs:
            self._graphdefs[key] = split(self._model.with_ops([np.flatnonzero(row) for row in active]))[0]
        return self._graphdefs[key]

    def weight_arch(self, key, active):
        return Gates(self.space.sample(key, 1, {"active": active})[0])

    def pair_arch(self, gates, q):
        return Gates({**gates, "q": q})

    def arch(self, gates):
        return Gates(gates)

    def to_space(self, gates):
        return np.asarray(gates, bool)

    def space_state(self, active):
        return {"active": active}

    def costs(self, archs) -> dict:
        return jax.device_get(jax.vmap(lambda a: self.space.cost(a, self.num_classes))(jnp.asarray(archs)))


class NB201Law:
    """NSE's check on NB201: one operation per edge (a categorical over the edge's subset); an
    architecture is the one-hot of its genotype, scored on the supernet's single path."""
    single = True

    def __init__(self, space, cfg, num_classes):
        self.space, self.num_classes, self.section = space, num_classes, space.section(cfg)
        # (CIFAR-10's 10 classes when not known: `NSE.check` runs before the data is read)
        self.sizes = {"C": self.section.C, "N": self.section.N, "num_classes": num_classes or 10}
        edges, ops = space.relaxed_spec.shape
        self.shape, self.identity = (edges, ops), np.zeros(edges, bool)
        none = np.full(edges, space.zero_op, np.int32)
        archs = np.repeat(none[None], edges * ops, 0)
        archs[np.arange(edges * ops), np.repeat(np.arange(edges), ops)] = np.tile(np.arange(ops), edges)
        flops = np.asarray(space.cost(archs, **self.sizes)["flops"], np.float64) / 1e6
        self.back = float(np.asarray(space.cost(none, **self.sizes)["flops"])) / 1e6
        self.table = (flops - self.back).reshape(edges, ops)      # M FLOPs per (edge, operation): additive
        self._graphdef = None

    def build(self, seed):
        model = self.space.build_supernet(self.section, self.num_classes, seed=seed)
        self._graphdef = split(model)[0]
        return model

    def graph(self, active):
        del active  # every operation is in the one graph
        return self._graphdef

    def weight_arch(self, key, active):
        return Choice(self.space.sample(key, 1, {"ops": active})[0])

    def pair_arch(self, gates, q):
        """The straight-through weights: value 1 on s and 0 on u, gradient through q (`search.pairs`)."""
        sg = jax.lax.stop_gradient
        w_s, w_u = (q[:, 0] + 1 - sg(q[:, 0]))[:, None], (q[:, 1] - sg(q[:, 1]))[:, None]
        return Weights(jnp.where(gates["s"], w_s, 0.0) + jnp.where(gates["u"] & ~gates["s"], w_u, 0.0))

    def arch(self, gates):
        return Choice(jnp.argmax(gates, -1).astype(jnp.int32))

    def to_space(self, gates):
        return np.argmax(np.asarray(gates), -1).astype(np.int32)

    def space_state(self, active):
        return {"ops": active}

    def costs(self, archs) -> dict:
        return jax.device_get(self.space.cost(self.to_space(archs), **self.sizes))


LAWS = {"mobile": MobileLaw, "nb201": NB201Law}


class NSE(Method):
    name = "nse"
    uses_arch_batch = True
    host_step = True

    @classmethod
    def check(cls, cfg, space) -> None:
        super().check(cfg, space)
        if space.name not in LAWS:
            raise ValueError(f"--method nse evolves an operator pool per cell or edge; space {space.name!r} "
                             f"has none: --space {' or '.join(LAWS)}")
        if space.name == "mobile" and not cfg.train.decay_unsampled:
            raise ValueError("--method nse on the mobile space decays the weights of operators a step did "
                             "not gate on, as the reference's zero_grad does: set train.decay_unsampled=true")
        s = cfg.nse
        law = LAWS[space.name](space, cfg, None)
        pool = law.shape[1]
        if s.k > pool:
            raise ValueError(f"nse.k={s.k} exceeds the pool's {pool} operators")
        cheapest = law.back + np.where(law.identity, 0, law.table.min(-1)).sum()
        if s.budget and s.budget < cheapest:
            raise ValueError(f"nse.budget={s.budget:g} M MACs is below the cheapest architecture's "
                             f"{cheapest:.3f} M")
        if s.mac_target:
            dearest = law.back + np.sort(law.table, -1)[:, -(1 if law.single else s.k):].sum()
            lo, hi = (w * s.mac_target for w in s.window)
            if not (lo < dearest and hi > cheapest):
                raise ValueError(f"nse.mac_target={s.mac_target:g}: the window ({lo:g}, {hi:g}) M MACs "
                                 f"holds no architecture of space {space.name!r} ({cheapest:.3f} to "
                                 f"{dearest:.3f} M); set nse.mac_target inside that range, or 0 for none")

    @classmethod
    def estimate_seconds(cls, cfg, n_train: int) -> float:
        """The weight and architecture steps, each round end's scoring and (mobile) compiles, scaled
        from the measured sizes by the pool's multiply-adds (mobile) or `supernet_seconds` (NB201)."""
        s, t = cfg.nse, cfg.train
        scored = s.sample_num + s.extra_num
        if cfg.space != "mobile":
            ranked = cfg.set({"eval.select_num": scored})  # each round end scores its samples
            return NB201_STEP_FACTOR * estimate.supernet_seconds(ranked, n_train, cls.split,
                                                                 rankings=t.rounds)
        tiny = preset("tiny", "nse", "mobile")
        macs = [spaces.get("mobile", c).layout.tables[0].sum() for c in (cfg, tiny)]
        size = macs[0] / macs[1]
        steps_s = estimate.search_steps(cfg, n_train, cls.split) * (
            MOBILE_S["weight"] + MOBILE_S["arch"] / s.arch_every) * size * t.batch_size / 64
        images = cfg.eval.batch_size + cfg.eval.recal_batches * t.batch_size
        scoring_s = scored * MOBILE_S["candidate"] * size * images / 384
        return steps_s + t.rounds * (MOBILE_S["round_compile"] + scoring_s)

    def __init__(self, cfg, space, num_classes):
        super().__init__(cfg, space, num_classes)
        self.s = cfg.nse
        self.law = LAWS[space.name](space, cfg, num_classes)
        # the weight step on the host where the space has host passes (CPU): only the drawn operators run
        self.host = space.host_passes if has(space, "host_passes") and space.host_path(cfg) else None
        _, self._params, self._stats = split(self.law.build(cfg.seed))
        t = cfg.train
        self.tx = optim.make("sgd", t.lr, weight_decay=t.weight_decay, momentum=t.momentum,
                             nesterov=t.nesterov, decay_mask=optim.no_decay_on_bn_and_bias)
        self.arch_tx = optim.make("adam", self.s.arch_lr, betas=(self.s.arch_b1, self.s.arch_b2), eps=1e-8)
        self.table = jnp.asarray(self.law.table, jnp.float32)
        self.identity = jnp.asarray(self.law.identity)
        self.front_size = 2 * self.s.sample_num                      # a front never holds more
        self._weight = jax.jit(self._weight_fn, static_argnums=0, donate_argnums=1)
        self._weight_arch = jax.jit(self._weight_arch_fn)
        self._arch = jax.jit(self._arch_fn, static_argnums=0, donate_argnums=1)
        self._draw = jax.jit(lambda key, alpha, active, n: ev.sample(key, alpha, active, self.identity,
                                                                     self.s.k, n, self.law.single),
                             static_argnums=3)

    # --- state -----------------------------------------------------------------------------------
    def init(self):
        cells, pool = self.law.shape
        evo = ev.initial(jax.random.key(self.cfg.seed + 1), cells, pool, self.s.k)
        f = self.front_size
        space = {**evo, "round_active": jnp.array(evo["active"], copy=True),  # a buffer of its own (donated)
                 "front": jnp.zeros((f, cells, pool), bool), "front_valid": jnp.zeros((f,), bool),
                 "front_cost": jnp.zeros((f,), jnp.float32), "front_acc": jnp.zeros((f,), jnp.float32)}
        return state_lib.create(self._params, self._stats, self.cfg.seed, self.tx.init(self._params),
                                method=self._arch_init(), space=space)

    def _arch_init(self):
        alpha = jnp.zeros(self.law.shape, jnp.float32)
        log = {k: jnp.float32(0) for k in ("arch_acc", "mac_penalty", "expected_macs", "active_ops")}
        return {"alpha": alpha, "alpha_opt": self.arch_tx.init(alpha), "log": log}

    def _graph(self, state):
        return self.law.graph(np.asarray(jax.device_get(state.space["round_active"])))

    # --- steps -----------------------------------------------------------------------------------
    def train_step(self, state, wbatch, abatch, lr):
        arch_step = int(jax.device_get(state.epoch_step)) % self.s.arch_every == 0
        state, metrics = self.weight_step(state, wbatch, lr)
        if arch_step:  # after the weight step (main.py:513-647: i % Aiter == 0, i within the epoch)
            state = self._arch(self._graph(state), state, abatch)
        # the last architecture step's, every step (copies: the next step donates the state)
        return state, {**metrics, **jax.tree.map(jnp.copy, state.method["log"])}

    def weight_step(self, state, wbatch, lr):
        """One step of the weights: the round's jitted program, or (`host`) the same draw with only
        its operators run on the host."""
        graphdef = self._graph(state)
        if self.host is None:
            return self._weight(graphdef, state, wbatch, lr)
        arch = jax.device_get(self._weight_arch(state))
        return steps.weight_step(self.tx, self.cfg.train.grad_clip, graphdef, state, *wbatch, lr, arch,
                                 used=self._used(state, arch), host=self.host)

    def _weight_arch_fn(self, state):
        """The weight step's architecture: each subset operator gated by a Bernoulli(1/2) (mobile), or
        one uniform operation of each edge's subset (NB201)."""
        return self.law.weight_arch(step_key(state, KEY_SAMPLE), state.space["active"])

    def _used(self, state, arch):
        """Parameters of the operations a single path skipped, left alone (NB201 without
        `train.decay_unsampled`); None: every weight decays (the reference's zero_grad)."""
        if isinstance(arch, Choice) and not self.cfg.train.decay_unsampled:
            return self.space.used_params(state.params, arch.value)
        return None

    def _weight_fn(self, graphdef, state, wbatch, lr):
        arch = self._weight_arch_fn(state)
        images, labels = wbatch
        return steps.weight_step(self.tx, self.cfg.train.grad_clip, graphdef, state, images, labels, lr, arch,
                                 used=self._used(state, arch))

    def _penalty(self, expected):
        s = self.s
        if not s.mac_target:
            return jnp.float32(0)
        return ev.penalty(expected, self.law.back, s.mac_target, s.mac_alpha, s.mac_beta)

    def _arch_fn(self, graphdef, state, abatch):
        images, labels = abatch
        key = step_key(state, KEY_METHOD)
        active = state.space["active"]

        def loss(alpha):
            gates, q, expected = ev.pair(key, alpha, active, self.identity, self.s.k, self.table,
                                         self.law.single)
            logits, new = apply(graphdef, state.params, state.stats, images, self.law.pair_arch(gates, q),
                                train=True)
            ce, acc = loss_and_accuracy(logits, labels)
            penalty = self._penalty(expected)
            return ce + penalty, (new, acc, penalty, expected + self.law.back)

        alpha, opt = state.method["alpha"], state.method["alpha_opt"]
        grads, (stats, acc, penalty, macs) = jax.grad(loss, has_aux=True)(alpha)
        updates, opt = self.arch_tx.update(grads, optim.with_learning_rate(opt, self.s.arch_lr), alpha)
        alpha = alpha + updates
        active = ev.clean(alpha, active, state.space["kept"], self.identity, self.s.drop_threshold,
                          self.s.preserve)
        log = {"arch_acc": acc, "mac_penalty": penalty, "expected_macs": macs,
               "active_ops": active.sum().astype(jnp.float32)}
        return state.replace(stats=stats, method={"alpha": alpha, "alpha_opt": opt, "log": log},
                             space={**state.space, "active": active})

    def space_state(self, state):
        """The last round's operator subsets as the space's state: NB201's `ops` per edge."""
        return self.law.space_state(state.space["active"])

    def epoch_end(self, state, evaluator):
        """alpha and each cell's subset size at the epoch's end (metrics.jsonl: alpha's trajectory)."""
        del evaluator
        alpha, active = jax.device_get((state.method["alpha"], state.space["active"]))
        return state, {"alpha": np.round(np.asarray(alpha, np.float64), 5).tolist(),
                       "subset_sizes": np.asarray(active).sum(-1).tolist()}

    # --- round end -------------------------------------------------------------------------------
    def _costs(self, gates):
        """M MACs of host architectures [n, cells, pool]."""
        return self.law.back + (np.asarray(gates, bool) * self.law.table).sum((-2, -1))

    def _window(self):
        """(lo, hi, extra_lo, extras): the round end's cost window and its extras (none without a target)."""
        s = self.s
        if not s.mac_target:
            return -np.inf, np.inf, -np.inf, 0
        lo, hi = (w * s.mac_target for w in s.window)
        return lo, hi, lo - s.extra_width * s.mac_target, s.extra_num

    def round_end(self, state, evaluator, last: bool = False):
        s, sp = self.s, jax.device_get(state.space)
        alpha = state.method["alpha"]
        key = jax.random.fold_in(step_key(state, KEY_SAMPLE), 1)
        batch = max(64, s.sample_num // 4)
        old = sp["front"][sp["front_valid"]]
        lo, hi, extra_lo, n_extra = self._window()

        def draw(i):
            return jax.device_get(self._draw(jax.random.fold_in(key, i), alpha, state.space["active"], batch))

        samples, extras, tried = ev.window_sample(draw, self._costs, s.sample_num, lo, hi, n_extra, extra_lo,
                                                  exclude=old)
        cands = np.concatenate([samples, extras, old])
        origin = np.repeat([ev.SAMPLE, ev.EXTRA, ev.OLD], [len(samples), len(extras), len(old)])
        res = jax.device_get(evaluator.in_blocks(f"round {int(state.round) + 1} candidates", 64)(
            self._graph(state), state.params, state.stats, self.law.arch(jnp.asarray(cands))))
        acc, cost = 100 * np.asarray(res["acc"], np.float64), self._costs(cands)
        idx = ev.next_front(cost, acc, origin)[: self.front_size]
        space = self._front_state(sp, cands[idx], cost[idx], acc[idx])
        metrics = {"front_size": len(idx), "front_best_acc": float(acc[idx].max()),
                   "front_macs_min": float(cost[idx].min()), "front_macs_max": float(cost[idx].max()),
                   "window_samples": len(samples), "window_extras": len(extras), "drawn": tried,
                   # every scored candidate and the front (`jaxnas plot`: fronts.png)
                   "scored_macs": cost.round(4).tolist(), "scored_acc": acc.round(3).tolist(),
                   "front_macs": cost[idx].round(4).tolist(), "front_acc": acc[idx].round(3).tolist()}
        if last:
            return state.replace(space=jax.tree.map(jnp.asarray, space)), metrics
        # the next round: the front's operators and the pending queue's next ones; nothing else carries over
        space["active"], space["next"] = ev.refill(space["kept"], space["perm"], space["next"], s.k)
        space["round_active"] = np.array(space["active"])  # a buffer of its own (the state is donated)
        _, params, stats = split(self.law.build(self.cfg.seed + ROUND_SEED * (int(state.round) + 1)))
        state = state.replace(params=params, stats=stats, opt_state=self.tx.init(params),
                              method=self._arch_init(), space=jax.tree.map(jnp.asarray, space))
        return state, metrics

    def _front_state(self, sp, front, cost, acc):
        """The space state holding `front` (padded to the fixed front size) and its kept operators."""
        f, n = self.front_size, len(front)
        out = dict(sp)
        out["front"] = np.zeros_like(sp["front"])
        out["front"][:n] = front
        out["front_valid"] = np.arange(f) < n
        out["front_cost"] = np.zeros(f, np.float32)
        out["front_cost"][:n] = cost
        out["front_acc"] = np.zeros(f, np.float32)
        out["front_acc"][:n] = acc
        out["kept"] = np.asarray(ev.front_ops(jnp.asarray(out["front"]), jnp.asarray(out["front_valid"])))
        return out

    # --- result ------------------------------------------------------------------------------------
    def select(self, state, evaluator):
        """The last round's front (its scores from the round end) and its most accurate member under
        `nse.budget` (D18: the reference leaves the pick to hand)."""
        del evaluator  # nothing is drawn or scored again
        sp = jax.device_get(state.space)
        valid = np.asarray(sp["front_valid"])
        front, cost, acc = sp["front"][valid], sp["front_cost"][valid], sp["front_acc"][valid]
        if not len(front):
            raise ValueError("the search ended with an empty Pareto front")
        i = (search.best_under_budget(cost, acc, self.s.budget) if self.s.budget
             else int(np.argmax(acc)))
        costs = self.law.costs(front)
        archs = self.law.to_space(front)
        rows = [{"arch": self.space.to_string(archs[j]), "valid_acc": float(acc[j]), "macs_m": float(cost[j]),
                 **{k: np.asarray(v)[j].item() for k, v in costs.items()}} for j in range(len(front))]
        return {"arch": archs[i], "valid_acc": float(acc[i]), "macs_m": float(cost[i]), "front": rows,
                "candidates": rows}

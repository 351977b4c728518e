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
`train_step` runs outside jit (`host_step`) and calls the round's jitted steps.

In progress (issue 32): not registered yet. A smoke run of the tiny preset on a cut-down skeleton
(registered at run time) went through both rounds, a resume, the round ends and the selection on 2
CPU cores; the method contract's tests, the NB201 variant and the benchmark are still to come. On XLA:CPU the
MBConv's depthwise convolutions are the bottleneck (BENCHMARKS.md 16).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxnas import search
from jaxnas.methods import nse_evolve as ev
from jaxnas.methods.base import Method
from jaxnas.nn import split
from jaxnas.nn.functional import apply, loss_and_accuracy
from jaxnas.spaces.arch import Gates
from jaxnas.train import optim, steps
from jaxnas.train import state as state_lib
from jaxnas.train.state import KEY_METHOD, KEY_SAMPLE, step_key

ROUND_SEED = 10_007  # round r's weights are drawn from seed + r ROUND_SEED


class NSE(Method):
    name = "nse"
    uses_arch_batch = True
    host_step = True

    @classmethod
    def check(cls, cfg, space) -> None:
        super().check(cfg, space)
        if space.name != "mobile":
            raise ValueError(f"--method nse evolves the mobile space's operator pool; space {space.name!r} "
                             "has none (the NB201 variant is not built yet): --space mobile")
        s, pool = cfg.nse, space.shape[1]
        if s.k > pool:
            raise ValueError(f"nse.k={s.k} exceeds the pool's {pool} operators")
        if s.budget:
            cheapest = space.configure(cfg).cheapest_flops() / 1e6
            if s.budget < cheapest:
                raise ValueError(f"nse.budget={s.budget:g} M MACs is below the cheapest architecture's "
                                 f"{cheapest:.3f} M")

    def __init__(self, cfg, space, num_classes):
        super().__init__(cfg, space, num_classes)
        self.s = cfg.nse
        self.section = space.section(cfg)
        self.layout = space.layout
        model = space.build_supernet(self.section, num_classes, seed=cfg.seed)
        _, self._params, self._stats = split(model)
        self._model = model  # its graph, with each round's operators (`_graph`)
        t = cfg.train
        self.tx = optim.make("sgd", t.lr, weight_decay=t.weight_decay, momentum=t.momentum,
                             nesterov=t.nesterov, decay_mask=optim.no_decay_on_bn_and_bias)
        self.arch_tx = optim.make("adam", self.s.arch_lr, betas=(self.s.arch_b1, self.s.arch_b2), eps=1e-8)
        macs, _ = self.layout.tables
        self.table = jnp.asarray(macs / 1e6, jnp.float32)            # M MACs per (cell, operator)
        self.back = self.layout.back(num_classes)[0] / 1e6
        self.identity = jnp.asarray(space.identity)
        self.front_size = 2 * self.s.sample_num                      # a front never holds more
        self._graphdefs = {}
        self._weight = jax.jit(self._weight_fn, static_argnums=0, donate_argnums=1)
        self._arch = jax.jit(self._arch_fn, static_argnums=0, donate_argnums=1)
        self._draw = jax.jit(lambda key, alpha, active, n: ev.sample(key, alpha, active, self.identity,
                                                                     self.s.k, n), static_argnums=3)

    # --- state -----------------------------------------------------------------------------------
    def init(self):
        cells, pool = self.space.shape
        evo = ev.initial(jax.random.key(self.cfg.seed + 1), cells, pool, self.s.k)
        f = self.front_size
        space = {**evo, "round_active": jnp.array(evo["active"], copy=True),  # a buffer of its own (donated)
                 "front": jnp.zeros((f, cells, pool), bool), "front_valid": jnp.zeros((f,), bool),
                 "front_cost": jnp.zeros((f,), jnp.float32), "front_acc": jnp.zeros((f,), jnp.float32)}
        return state_lib.create(self._params, self._stats, self.cfg.seed, self.tx.init(self._params),
                                method=self._arch_init(), space=space)

    def _arch_init(self):
        alpha = jnp.zeros(self.space.shape, jnp.float32)
        log = {k: jnp.float32(0) for k in ("arch_acc", "mac_penalty", "expected_macs", "active_ops")}
        return {"alpha": alpha, "alpha_opt": self.arch_tx.init(alpha), "log": log}

    def _graph(self, state):
        """The round's graph: the supernet with this round's operators as its static set."""
        active = np.asarray(jax.device_get(state.space["round_active"]))
        key = active.tobytes()
        if key not in self._graphdefs:
            ops = [np.flatnonzero(row) for row in active]
            self._graphdefs[key] = split(self._model.with_ops(ops))[0]
        return self._graphdefs[key]

    # --- steps -----------------------------------------------------------------------------------
    def train_step(self, state, wbatch, abatch, lr):
        graphdef = self._graph(state)
        arch_step = int(jax.device_get(state.epoch_step)) % self.s.arch_every == 0
        state, metrics = self._weight(graphdef, state, wbatch, lr)
        if arch_step:  # after the weight step (main.py:513-647: i % Aiter == 0, i within the epoch)
            state = self._arch(graphdef, state, abatch)
        # the last architecture step's, every step (copies: the next step donates the state)
        return state, {**metrics, **jax.tree.map(jnp.copy, state.method["log"])}

    def _weight_fn(self, graphdef, state, wbatch, lr):
        gates = self.space.sample(step_key(state, KEY_SAMPLE), 1, {"active": state.space["active"]})[0]
        images, labels = wbatch
        return steps.weight_step(self.tx, self.cfg.train.grad_clip, graphdef, state, images, labels, lr,
                                 Gates(gates))

    def _arch_fn(self, graphdef, state, abatch):
        images, labels = abatch
        key = step_key(state, KEY_METHOD)
        active = state.space["active"]

        def loss(alpha):
            gates, q, expected = ev.pair(key, alpha, active, self.identity, self.s.k, self.table)
            logits, new = apply(graphdef, state.params, state.stats, images, Gates({**gates, "q": q}),
                                train=True)
            ce, acc = loss_and_accuracy(logits, labels)
            penalty = ev.penalty(expected, self.back, self.s.mac_target, self.s.mac_alpha, self.s.mac_beta)
            return ce + penalty, (new, acc, penalty, expected + self.back)

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

    # --- round end -------------------------------------------------------------------------------
    def _costs(self, gates):
        """M MACs of host architectures [n, cells, pool]."""
        return self.back + (np.asarray(gates, bool) * np.asarray(self.table)).sum((-2, -1))

    def round_end(self, state, evaluator, last: bool = False):
        s, sp = self.s, jax.device_get(state.space)
        alpha = state.method["alpha"]
        key = jax.random.fold_in(step_key(state, KEY_SAMPLE), 1)
        batch = max(64, s.sample_num // 4)
        old = sp["front"][sp["front_valid"]]
        lo, hi = (w * s.mac_target for w in s.window)
        def draw(i):
            return jax.device_get(self._draw(jax.random.fold_in(key, i), alpha, state.space["active"], batch))
        extra_lo = lo - s.extra_width * s.mac_target
        samples, extras, tried = ev.window_sample(draw, self._costs, s.sample_num, lo, hi, s.extra_num,
                                                  extra_lo, exclude=old)
        cands = np.concatenate([samples, extras, old])
        origin = np.repeat([ev.SAMPLE, ev.EXTRA, ev.OLD], [len(samples), len(extras), len(old)])
        res = jax.device_get(evaluator.in_blocks(f"round {int(state.round) + 1} candidates", 64)(
            self._graph(state), state.params, state.stats, Gates(jnp.asarray(cands))))
        acc, cost = 100 * np.asarray(res["acc"], np.float64), self._costs(cands)
        idx = ev.next_front(cost, acc, origin)[: self.front_size]
        space = self._front_state(sp, cands[idx], cost[idx], acc[idx])
        metrics = {"front_size": len(idx), "front_best_acc": float(acc[idx].max()),
                   "front_macs_min": float(cost[idx].min()), "front_macs_max": float(cost[idx].max()),
                   "window_samples": len(samples), "window_extras": len(extras), "drawn": tried}
        if last:
            return state.replace(space=jax.tree.map(jnp.asarray, space)), metrics
        # the next round: the front's operators and the pending queue's next ones; nothing else carries over
        space["active"], space["next"] = ev.refill(space["kept"], space["perm"], space["next"], s.k)
        space["round_active"] = np.array(space["active"])  # a buffer of its own (the state is donated)
        fresh = self.space.build_supernet(self.section, self.num_classes,
                                          seed=self.cfg.seed + ROUND_SEED * (int(state.round) + 1))
        _, params, stats = split(fresh)
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
        costs = jax.device_get(jax.vmap(self.space.cost)(jnp.asarray(front)))
        rows = [{"arch": self.space.to_string(front[j]), "valid_acc": float(acc[j]), "macs_m": float(cost[j]),
                 **{k: v[j].item() for k, v in costs.items()}} for j in range(len(front))]
        return {"arch": front[i], "valid_acc": float(acc[i]), "macs_m": float(cost[i]), "front": rows,
                "candidates": rows}

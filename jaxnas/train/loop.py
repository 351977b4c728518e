"""The one search loop every method runs in.

Epochs over the training split in a seeded order; each step is one jitted, state-donating call that
gathers, augments and normalises its batch on device, shards it over the `data` mesh axis and runs
the method's `train_step`. Metrics go to metrics.jsonl and a progress bar; the whole state is
checkpointed at every epoch end (and every `checkpoint_every_steps`), on SIGINT/SIGTERM, and the
same command on the same run directory resumes exactly where it stopped. A NaN loss stops the run
and keeps the last good checkpoint.
"""
from __future__ import annotations

import functools
import json
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from jaxnas import backend, checkpoint, spaces
from jaxnas import data as data_lib
from jaxnas.bench import dataset_column, rank_summary
from jaxnas.config import Config
from jaxnas.evaluate import Evaluator
from jaxnas.report import jsonable, progress_bar, write_result
from jaxnas.rundir import (
    Interrupted,
    RunError,
    append_text,
    check_run_dir,
    prepare_run_dir,
    release_run_dir,
    stop_on_signals,
    truncate_jsonl,
)
from jaxnas.spaces.base import has
from jaxnas.train import sharding
from jaxnas.train.state import KEY_AUGMENT_A, KEY_AUGMENT_W, step_key
from jaxnas.train.steps import scheduled_lr

RANK_PROBE_SEED = 2019  # the rank probe's architectures: one fixed set for every run


class SearchRun:
    """One search (or training) run: data, method, mesh, state, checkpoints; `run()` to the end."""

    def __init__(self, cfg: Config, run_dir, *, method_cls, overwrite=False, num_devices=None,
                 progress=True, bench_table=None, dataset=None):
        self.cfg, self.progress, self.bench_table = cfg, progress, bench_table
        run = check_run_dir(run_dir, cfg, overwrite)
        self.mesh = sharding.make_mesh(num_devices)
        sharding.check_divisible(cfg.train.batch_size, self.mesh)
        self.space = spaces.get(cfg.space, cfg)
        method_cls.check(cfg, self.space)  # what the config alone shows, before the data is read
        ds = dataset or data_lib.load(cfg.data, max_per_class=cfg.max_per_class)
        self.dataset = ds
        self.method = method_cls(cfg, self.space, ds.num_classes,
                                 **({"dataset": ds} if method_cls.needs_dataset else {}))
        self.method.progress = progress
        rep = sharding.replicated(self.mesh)
        if self.method.split == "search":
            w_idx, a_idx = data_lib.search_split(len(ds.train_labels), cfg.seed, cfg.train.held_out,
                                                 ds.train_labels, cfg.train.held_out_from)
        else:
            w_idx = a_idx = np.arange(len(ds.train_labels))
        self.wdata = data_lib.DeviceData.put(ds.train_images[w_idx], ds.train_labels[w_idx], rep)
        self.adata = data_lib.DeviceData.put(ds.train_images[a_idx], ds.train_labels[a_idx], rep)
        self.steps_per_epoch = len(w_idx) // cfg.train.batch_size
        if self.steps_per_epoch == 0 and self.method.trains:
            raise RunError(f"batch_size={cfg.train.batch_size} exceeds the {len(w_idx)} training images")
        if cfg.train.steps_per_epoch and self.method.trains:
            if cfg.train.steps_per_epoch > self.steps_per_epoch:
                raise RunError(f"train.steps_per_epoch={cfg.train.steps_per_epoch} exceeds an epoch's "
                               f"{self.steps_per_epoch} steps ({len(w_idx)} images / batch "
                               f"{cfg.train.batch_size}); set at most {self.steps_per_epoch}, or leave it "
                               "out for whole epochs")
            self.steps_per_epoch = cfg.train.steps_per_epoch
        self.epochs = cfg.train.epochs * cfg.train.rounds if self.method.trains else 0
        self.total_steps = self.steps_per_epoch * self.epochs
        self.method.total_steps = self.total_steps
        self.warmup_steps = round(cfg.train.warmup_epochs * self.steps_per_epoch)
        if self.method.trains and self.warmup_steps >= self.steps_per_epoch * cfg.train.epochs:
            raise RunError(f"train.warmup_epochs={cfg.train.warmup_epochs} leaves no step of the "
                           f"{cfg.train.epochs}-epoch {'round' if cfg.train.rounds > 1 else 'run'} for the "
                           "cosine")
        self.evaluator = self._evaluator(ds, a_idx)
        self.run_dir = prepare_run_dir(run, cfg, overwrite)  # only now that everything is valid
        self.ckpt = checkpoint.Checkpointer(self.run_dir / "checkpoints", keep=cfg.run.keep_checkpoints)
        self.resumed_from = None  # the checkpoint step this process resumed from
        if self.method.host_step:  # train_step runs outside jit (eager single path); batches and lr inside
            self._step = functools.partial(self._step_fn, prepare=jax.jit(self._prepare_fn))
        else:
            self._step = jax.jit(self._step_fn, donate_argnums=0)

    # --- pieces -----------------------------------------------------------------------------
    def _evaluator(self, ds, a_idx) -> Evaluator:
        """Candidate evaluation on a fixed validation batch: from the arch half of the search split,
        or the test set when the method trains on the full training set."""
        rng = np.random.default_rng(self.cfg.seed + 1)
        if self.method.split == "search":
            images, labels = ds.train_images[a_idx], ds.train_labels[a_idx]
        else:
            images, labels = ds.test_images, ds.test_labels
        # the search ranks on one fixed batch; single-architecture training reports the whole test set
        pick = rng.permutation(len(labels))
        pick = pick[: self.cfg.eval.batch_size] if self.method.split == "search" else np.sort(pick)
        x = data_lib.normalize(images[pick], ds.mean, ds.std)
        recal = None
        if self.cfg.eval.bn == "recal":
            n = self.cfg.eval.recal_batches
            if n * self.cfg.train.batch_size > len(self.wdata):
                raise RunError(f"eval.recal_batches={n} batches of {self.cfg.train.batch_size} exceed the "
                               f"{len(self.wdata)} training images; lower eval.recal_batches")
            r = rng.permutation(len(self.wdata))[: n * self.cfg.train.batch_size]
            recal = data_lib.normalize(np.asarray(self.wdata.images)[r], ds.mean, ds.std)
            recal = recal.reshape(n, self.cfg.train.batch_size, *recal.shape[1:])
        return Evaluator(x, jnp.asarray(labels[pick]), recal, bn=self.cfg.eval.bn,
                         chunk_size=backend.eval_chunk_size(self.cfg.eval.chunk_size), progress=self.progress)

    def _batch(self, state, data, idx, tag):
        x, y = jax.lax.with_sharding_constraint(data.batch(idx), sharding.data_sharded(self.mesh))
        if self.cfg.train.augment:
            x = data_lib.augment(step_key(state, tag), x)
        return data_lib.normalize(x, self.dataset.mean, self.dataset.std), y

    def _prepare_fn(self, state, wdata, adata, w_idx, a_idx):
        """The step's learning rate and (augmented, normalised, sharded) batches."""
        t = self.cfg.train
        lr = scheduled_lr(state.step, self.steps_per_epoch * t.epochs, t.rounds, self.warmup_steps, t.lr,
                          t.lr_min, t.schedule == "cosine_per_round")
        wbatch = self._batch(state, wdata, w_idx, KEY_AUGMENT_W)
        abatch = self._batch(state, adata, a_idx, KEY_AUGMENT_A) if self.method.uses_arch_batch else None
        return lr, wbatch, abatch

    def _step_fn(self, state, wdata, adata, w_idx, a_idx, prepare=None):
        """One step; `prepare` (a jitted `_prepare_fn`) when `train_step` runs outside jit."""
        lr, wbatch, abatch = (prepare or self._prepare_fn)(state, wdata, adata, w_idx, a_idx)
        return _advance(*self.method.train_step(state, wbatch, abatch, lr), lr)

    def _orders(self, state, epoch):
        key = jax.random.fold_in(jax.random.wrap_key_data(state.key), epoch)
        w = np.asarray(data_lib.epoch_order(key, len(self.wdata), self.cfg.train.batch_size))
        if not self.method.uses_arch_batch:  # no batch is read from the held-out part, however small it is
            return w, np.zeros_like(w[:1])
        a = data_lib.epoch_order(jax.random.fold_in(key, 1), len(self.adata), self.cfg.train.batch_size)
        return w, np.asarray(a)

    def _save(self, state, elapsed):
        if not _all_finite(state):  # restores reject a state with non-finite floats, so never save one
            raise RunError(f"the state holds NaN/inf at step {int(state.step)} (the loss was still finite); "
                           f"not saved. {self._stopped_note()}; lower lr=")
        state = self._place(state.replace(elapsed=jnp.float32(elapsed)))
        self.ckpt.save(int(state.step), state)
        return state

    def _place(self, state):
        """Put a state edited outside jit back on the mesh, so the step never sees a new layout."""
        return jax.device_put(state, sharding.replicated(self.mesh))

    def _log(self, row: dict) -> None:
        append_text(self.run_dir / "metrics.jsonl", json.dumps(row) + "\n")

    # --- the loop -----------------------------------------------------------------------------
    def restore_or_init(self):
        """The newest checkpoint that verifies, else a fresh state; metrics.jsonl cut to match."""
        state = self.method.init()
        saved = self.ckpt.steps()
        restored = self.ckpt.restore_latest(state)
        self.resumed_from = self.ckpt.restored_step if restored is not None else None
        if restored is not None:
            state = restored
        elif saved:
            warnings.warn(f"NONE of the {len(saved)} checkpoints in {self.ckpt.directory} (steps {saved}) "
                          "could be restored: the run starts again from step 0 and metrics.jsonl is reset",
                          stacklevel=2)
        truncate_jsonl(self.run_dir / "metrics.jsonl", int(state.step))
        return self._place(state)

    def _stopped_note(self) -> str:
        """What a NaN stop leaves behind: the checkpoint kept, and the one this process resumed from."""
        steps = self.ckpt.steps()
        note = (f"The last good checkpoint (step {steps[-1]}) in {self.ckpt.directory} is kept"
                if steps else "No checkpoint had been written yet")
        if self.resumed_from is not None:
            note += (f"; this run resumed from checkpoint {self.resumed_from}: if every rerun stops here, "
                     f"remove {self.ckpt.directory / str(self.resumed_from)} to fall back to an earlier one")
        return note

    def run(self) -> dict:
        try:
            return self._run()
        finally:
            release_run_dir(self.run_dir)

    def _run(self) -> dict:
        cfg = self.cfg
        state = self.restore_or_init()
        t0, elapsed0 = time.time(), float(state.elapsed)
        resumed_at = int(state.step)
        bar = progress_bar(self.total_steps, resumed_at, self.progress,
                           f"{self.method.name} {self.run_dir.name}")
        data_sh = sharding.data_sharded(self.mesh)
        with stop_on_signals() as stop:
            while int(state.epoch) < self.epochs:
                epoch, round_ = int(state.epoch), int(state.round)
                where = {"epoch": epoch} if cfg.train.rounds == 1 else {"round": round_, "epoch": epoch}
                w_order, a_order = self._orders(state, epoch)
                window, t_win, n_win = [], time.time(), 0
                while int(state.epoch_step) < self.steps_per_epoch:
                    i = int(state.epoch_step)
                    w_idx = jax.device_put(w_order[i], data_sh)
                    a_idx = jax.device_put(a_order[i % len(a_order)], data_sh)
                    state, metrics = self._step(state, self.wdata, self.adata, w_idx, a_idx)
                    window.append(metrics)
                    n_win += cfg.train.batch_size
                    last = int(state.epoch_step) == self.steps_per_epoch
                    stopping = stop["stop"]
                    due = (bool(cfg.run.checkpoint_every_steps) and not last
                           and int(state.step) % cfg.run.checkpoint_every_steps == 0)
                    # check the loss of every step before a checkpoint is written, so no save holds
                    # a state from after a NaN (NaN checks are otherwise every log_every steps)
                    if len(window) >= cfg.run.log_every or last or due or stopping:
                        row = _mean_metrics(window)
                        if not np.isfinite(row["loss"]):
                            bar.close()
                            raise RunError(
                                f"loss became {row['loss']} at epoch {epoch} step {int(state.step)}; "
                                f"stopped. {self._stopped_note()}; lower lr= or check the data")
                        row["images_per_s"] = n_win / max(time.time() - t_win, 1e-9)
                        bar.update(len(window))
                        bar.set_postfix(epoch=epoch, loss=f"{row['loss']:.3f}", acc=f"{row['acc']:.3f}",
                                        img_s=f"{row['images_per_s']:.0f}")
                        self._log(dict(row, **where, step=int(state.step)))
                        window, t_win, n_win = [], time.time(), 0
                    if stopping:
                        state = self._save(state, elapsed0 + time.time() - t0)
                        bar.close()
                        raise Interrupted(f"{stopping} at epoch {epoch} step {int(state.step)}; "
                                          f"state saved in {self.ckpt.directory}; run the same command to "
                                          "resume")
                    if due:
                        state = self._save(state, elapsed0 + time.time() - t0)
                state, extra = self.method.epoch_end(state, self.evaluator)
                state = self._place(state.replace(epoch=state.epoch + 1, epoch_step=jnp.int32(0)))
                if extra:
                    self._log(dict(jsonable(extra), **where, step=int(state.step), kind="epoch_end"))
                if int(state.epoch) % cfg.train.epochs == 0:  # the round's last epoch
                    last = int(state.epoch) == self.epochs
                    state, extra = self.method.round_end(state, self.evaluator, last=last)
                    state = self._place(state.replace(round=state.round + 1))
                    if extra:
                        self._log(dict(jsonable(extra), round=round_, step=int(state.step), kind="round_end"))
                state = self._save(state, elapsed0 + time.time() - t0)
        bar.close()
        self.state = state  # the final state, for callers that go on from it (notebooks)
        result = self.method.select(state, self.evaluator)
        if cfg.eval.rank_probe and self.method.split == "search" and hasattr(self.method, "rank"):
            result["rank_probe"] = self._rank_probe(state)
        return self._write_result(state, result, elapsed0 + time.time() - t0)

    def _rank_probe(self, state) -> dict:
        """How well the shared weights rank a fixed set of architectures (one validation batch);
        `Method.check` refused a space that does not list them before the run began."""
        idx = np.sort(np.random.default_rng(RANK_PROBE_SEED).choice(self.space.size, self.cfg.eval.rank_probe,
                                                                     replace=False))
        archs = jax.tree.map(lambda a: a[idx], self.space.enumerate())
        res = jax.device_get(self.method.rank(state, jax.tree.map(jnp.asarray, archs), self.evaluator))
        out = {"index": idx.tolist(), "valid_acc": (100 * np.asarray(res["acc"])).tolist()}  # percent
        column = dataset_column(self.dataset.num_classes)
        if self.bench_table is not None and column:
            out.update(rank_summary(res["acc"], self.bench_table.values(archs, column)), column=column)
        return out

    def _space_bench(self, state) -> dict | None:
        """For a space the run shrank (a space state that rules architectures out) and a benchmark
        table: its size, the best benchmark accuracy left in it and whether the space's optimum
        survived."""
        column = dataset_column(self.dataset.num_classes)
        view = self.method.space_state(state)
        if (self.bench_table is None or not column or not view or not has(self.space, "allows")
                or not has(self.space, "enumerate")):
            return None
        every = self.space.enumerate()
        keep = np.asarray(self.space.allows(every, jax.device_get(view)))
        if keep.all():
            return None
        acc = self.bench_table.values(every, column)
        return {"column": column, "size": int(keep.sum()), "best_acc": float(acc[keep].max()),
                "optimum_acc": float(acc.max()), "optimum_kept": bool(keep[int(np.argmax(acc))])}

    def _write_result(self, state, result: dict, wall: float) -> dict:
        space_bench = self._space_bench(state)
        if space_bench:
            result["space_bench"] = space_bench
        out = write_result(self.run_dir, self.cfg, self.space, result.pop("arch"), result, wall,
                           self.bench_table, steps=int(state.step), dataset=self.dataset)
        self.ckpt.close()
        return out


def _advance(new, metrics, lr):
    """Count a finished step (train_step leaves `step` alone; its input state may be donated)."""
    return new.replace(step=new.step + 1, epoch_step=new.epoch_step + 1), dict(metrics, lr=lr)


def _all_finite(tree) -> bool:
    return all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(tree))


def _mean_metrics(window) -> dict:
    """Means over the logging window; accuracies (fractions inside the steps) written in percent."""
    host = jax.device_get(window)
    return {k: float(np.mean([m[k] for m in host])) * (100 if k.endswith("acc") else 1) for k in host[0]}

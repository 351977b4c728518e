"""The shared search loop end to end: run directory, determinism, kill/resume, corrupt checkpoints,
NaN stops, and the CLI's one-line errors.

Cost control (XLA:CPU compiles take tens of seconds): every supernet run here uses one config
(RSPS, C=4, N=1, batch 16 on 8 devices), so the training step compiles once. The CLI subprocesses
share conftest's persistent XLA compilation cache (JAXNAS_XLA_CACHE), so they load the step compiled
in-process instead of compiling it again; the uninterrupted in-process run is then also the
bit-for-bit reference for the killed/resumed CLI run.
"""
from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import time
import types
import warnings

import jax
import numpy as np
import pytest
from helpers import main_in_process

from jaxnas.bench import load_table
from jaxnas.checkpoint import Checkpointer
from jaxnas.config import Config
from jaxnas.methods import RSPS, TrainArch
from jaxnas.spaces import nb201
from jaxnas.train.loop import RunError, SearchRun

REPO = pathlib.Path(__file__).resolve().parents[2]
NUM_CLASSES = 10
# the one supernet config of this module (everything else at the `paper` preset's defaults)
SEARCH = {"nb201.C": 4, "nb201.N": 1, "train.batch_size": 16, "train.epochs": 2, "eval.select_num": 4,
          "eval.batch_size": 16}
TRAIN_ARCH = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|"
SUBPROCESS_TIMEOUT = 300


# ------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module", autouse=True)
def data_cache(tmp_path_factory):
    """Decoded datasets cached in a tmp folder (also for the CLI subprocesses, which inherit the
    environment, including conftest's JAXNAS_XLA_CACHE so they reuse the programs compiled here)."""
    mp = pytest.MonkeyPatch()
    folder = tmp_path_factory.mktemp("data-cache")
    mp.setenv("JAXNAS_CACHE", str(folder))
    mp.delenv("JAXNAS_DEBUG", raising=False)
    yield folder
    mp.undo()


@pytest.fixture(scope="module")
def search_cfg(image_folder):
    return Config(data=str(image_folder)).set(SEARCH)


_TEMPLATES = {}


def restore_state(run_dir, cfg, method_cls=RSPS):
    """The newest checkpoint of a run, restored with a template from the method's init_state."""
    if cfg not in _TEMPLATES:
        _TEMPLATES[cfg] = method_cls(cfg, nb201.SPACE, NUM_CLASSES).init()
    ckpt = Checkpointer(pathlib.Path(run_dir) / "checkpoints")
    try:
        state = ckpt.restore_latest(_TEMPLATES[cfg])
    finally:
        ckpt.close()
    assert state is not None, f"no checkpoint in {run_dir}"
    return jax.device_get(state)


def assert_states_equal(a, b):
    """Bit-for-bit equality of two search states (all but the wall-clock `elapsed`)."""
    assert_trees_equal(a.replace(elapsed=0), b.replace(elapsed=0))


def assert_trees_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b)):
        assert np.array_equal(np.asarray(x), np.asarray(y)), f"differs at {jax.tree_util.keystr(path)}"


@pytest.fixture(scope="module")
def ref_run(search_cfg, tmp_path_factory, nb201_table_path):
    """One uninterrupted in-process search (with a bench table): the reference for the others."""
    run_dir = tmp_path_factory.mktemp("ref") / "run"
    table = load_table(nb201_table_path)
    result = SearchRun(search_cfg, run_dir, method_cls=RSPS, progress=False, bench_table=table).run()
    return types.SimpleNamespace(dir=run_dir, result=result, state=restore_state(run_dir, search_cfg),
                                 table=table)


# ----------------------------------------------------------------------------------- in-process runs


def test_search_run_writes_run_directory(ref_run, search_cfg):
    run = ref_run.dir
    record = json.loads((run / "config.json").read_text())
    assert record["config"] == json.loads(search_cfg.to_json())
    assert {"jaxnas", "jax", "flax", "orbax", "python"} <= set(record["versions"])
    assert record["versions"]["jax"] == jax.__version__ and record["versions"]["devices"] == 8

    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in rows]
    assert steps == sorted(set(steps)) and steps[-1] == 6  # 2 epochs x (60 weight images // 16)
    assert all(np.isfinite(r["loss"]) and r["lr"] > 0 for r in rows)

    ckpt = Checkpointer(run / "checkpoints")
    assert ckpt.steps() == [3, 6]  # epoch ends; keep_checkpoints=2
    ckpt.close()
    assert int(ref_run.state.step) == 6 and int(ref_run.state.epoch) == 2
    init = RSPS(search_cfg, nb201.SPACE, NUM_CLASSES).init()
    assert not np.array_equal(ref_run.state.params["head"]["classifier"]["kernel"],
                              init.params["head"]["classifier"]["kernel"])

    result = json.loads((run / "result.json").read_text())
    assert result == json.loads(json.dumps(ref_run.result))
    assert result["method"] == "rsps" and result["seed"] == 0 and result["steps"] == 6
    assert result["wall_time_s"] > 0
    arch = nb201.from_string(result["arch"])
    assert int(nb201.to_index(arch)) == result["index"]
    assert len(result["candidates"]) == search_cfg.eval.select_num
    best = max(c["valid_acc"] for c in result["candidates"])
    assert result["valid_acc"] == best and result["arch"] in [c["arch"] for c in result["candidates"]]
    # ground truth of the found architecture from the real NB201 table
    assert result["bench"] == ref_run.table.lookup(result["arch"])
    assert result["bench"] and all(isinstance(v, float) for v in result["bench"].values())


def test_same_seed_same_result(ref_run, search_cfg, tmp_path):
    result = SearchRun(search_cfg, tmp_path / "run", method_cls=RSPS, progress=False).run()
    assert result["arch"] == ref_run.result["arch"]
    assert result["candidates"] == ref_run.result["candidates"]
    assert_states_equal(restore_state(tmp_path / "run", search_cfg), ref_run.state)


def test_corrupt_latest_checkpoint_falls_back_and_finishes(ref_run, search_cfg, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(ref_run.dir, run)
    (run / "result.json").unlink()  # an unfinished run whose newest checkpoint (step 6) is damaged
    damaged = 0
    for f in (run / "checkpoints" / "6").rglob("*"):
        if f.is_file() and f.stat().st_size > 0 and f.name != "_CHECKPOINT_METADATA":
            f.write_bytes(b"\0garbage" * 3)
            damaged += 1
    assert damaged > 0
    with pytest.warns(UserWarning, match="checkpoint 6 .* could not be restored"):
        result = SearchRun(search_cfg, run, method_cls=RSPS, progress=False).run()
    # resumed from step 3 (the epoch-1 checkpoint), reran epoch 2 and landed on the same result
    assert result["arch"] == ref_run.result["arch"] and result["steps"] == 6
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the final checkpoint is readable again, no fallback
        state = restore_state(run, search_cfg)
    assert_states_equal(state, ref_run.state)


def test_nan_loss_stops_and_keeps_a_good_checkpoint(image_folder, tmp_path):
    # lr=1e30: step 1 is fine, its update blows the weights up, and step 2's loss is NaN.
    # Checkpoints every step but NaN checks only every log_every=10 steps: nothing non-finite may
    # be saved in between.
    cfg = Config(data=str(image_folder), method="train", arch=TRAIN_ARCH).set({
        "nb201.C": 4, "nb201.N": 1, "train.batch_size": 16, "train.epochs": 1, "train.lr": 1e30,
        "nb201.affine": True,
        "nb201.track_running_stats": True, "run.checkpoint_every_steps": 1, "run.log_every": 10,
        "eval.batch_size": 16})
    run = SearchRun(cfg, tmp_path / "run", method_cls=TrainArch, progress=False)
    with pytest.raises(RunError, match=r"(?i)loss became (nan|-?inf)") as err:
        run.run()
    bad_step = int(re.search(r"step (\d+)", str(err.value)).group(1))
    assert not (tmp_path / "run" / "result.json").exists()
    state = restore_state(tmp_path / "run", cfg, TrainArch)
    assert 1 <= int(state.step) < bad_step
    leaves = jax.tree.leaves((state.params, state.stats, state.opt_state))
    assert all(np.isfinite(x).all() for x in leaves), "the kept checkpoint holds non-finite values"
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["loss"]) for r in rows)


# ------------------------------------------------------------------------------------------------ CLI


def cli_env():
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES="8")
    env.pop("JAXNAS_DEBUG", None)
    return env


def start_cli(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "jaxnas", *map(str, args)], cwd=REPO, env=cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout=SUBPROCESS_TIMEOUT):
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"CLI hung for {timeout}s:\n{err[-3000:]}")
    return proc.returncode, out, err


def run_cli(*args, timeout=SUBPROCESS_TIMEOUT):
    return finish(start_cli(*args), timeout)


def search_args(folder, out, *extra):
    return ["search", "--preset", "paper", "--data", folder, "--out", out, "--no-progress",
            *[f"{k}={v}" for k, v in SEARCH.items()], *extra]


def wait_for_checkpoint(proc, ckpt_dir: pathlib.Path, above: int, timeout=SUBPROCESS_TIMEOUT) -> int:
    """Poll until a checkpoint newer than step `above` is on disk; return its step."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            _, err = proc.communicate()
            pytest.fail(f"run ended (rc {proc.returncode}) before a checkpoint past step "
                        f"{above}:\n{err[-3000:]}")
        steps = [int(p.name) for p in ckpt_dir.iterdir() if p.name.isdigit()] if ckpt_dir.exists() else []
        if steps and max(steps) > above:
            return max(steps)
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"no checkpoint past step {above} within {timeout}s")


def test_cli_kill_sigint_resume_matches_uninterrupted_run(ref_run, image_folder, tmp_path):
    out = tmp_path / "run"
    args = search_args(image_folder, out, "run.checkpoint_every_steps=1")
    ckpts = out / "checkpoints"

    proc = start_cli(*args)  # 1) SIGKILL mid-epoch once a checkpoint shows progress
    wait_for_checkpoint(proc, ckpts, above=0)
    proc.send_signal(signal.SIGKILL)
    finish(proc)
    killed_at = max(int(p.name) for p in ckpts.iterdir() if p.name.isdigit())
    assert killed_at < 6 and not (out / "result.json").exists()

    proc = start_cli(*args)  # 2) resume, then SIGINT: saves, exits 130 with a message
    wait_for_checkpoint(proc, ckpts, above=killed_at)
    proc.send_signal(signal.SIGINT)
    rc, _, err = finish(proc)
    assert rc == 130, err[-3000:]
    assert "jaxnas: interrupted: SIGINT" in err and "resume" in err and "Traceback" not in err
    assert not (out / "result.json").exists()

    rc, stdout, err = run_cli(*args)  # 3) resume to the end
    assert rc == 0, err[-3000:]
    result = json.loads((out / "result.json").read_text())
    assert json.loads(stdout)["arch"] == result["arch"] == ref_run.result["arch"]
    assert result["candidates"] == ref_run.result["candidates"]
    state = restore_state(out, Config(data=str(image_folder)).set(SEARCH))
    assert int(state.step) == 6
    assert_states_equal(state, ref_run.state)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in rows if r.get("kind") != "epoch_end"]
    assert steps == sorted(set(steps)) and steps[-1] == 6  # rows of the killed run were dropped


def test_cli_usage_errors_are_one_line(image_folder, tmp_path, capsys):
    base = ["search", "--data", image_folder, "--no-progress"]
    # one real process (the whole path, imports included, must print nothing else) ...
    proc = start_cli("search", "--data", tmp_path / "no-such-folder", "--out", tmp_path / "e", "nb201.C=4")
    cases = {"missing data": finish(proc, timeout=120)}
    expected = {"missing data": "no such path"}
    # ... and the other cases through cli.main in this process (same code, no interpreter start-up)
    for name, args, message in [
        ("unknown field", [*base, "--out", tmp_path / "a", "bogus_field=1"],
         "unknown config field 'bogus_field'"),
        ("bad value", [*base, "--out", tmp_path / "b", "nb201.C=four"],
         "nb201.C takes an integer, got 'four'"),
        ("bad choice", [*base, "--out", tmp_path / "f", "proxy.das_da=median"],
         "proxy.das_da must be one of logdet, min_dist"),
        ("unknown method", [*base, "--out", tmp_path / "c", "--method", "nope"], "unknown method 'nope'"),
        ("bad flag", [*base, "--out", tmp_path / "d", "--frobnicate"],
         "unrecognized arguments: --frobnicate"),
    ]:
        cases[name], expected[name] = main_in_process(args, capsys), message
    for name, (rc, out, err) in cases.items():
        lines = err.strip().splitlines()
        assert rc == 2, (name, err)
        assert len(lines) == 1 and lines[0].startswith("jaxnas: error: "), (name, err)
        assert expected[name] in lines[0], (name, err)
        assert out == ""
    for d in "abcde":  # nothing was created for a run that never started
        assert not (tmp_path / d).exists()


def test_cli_train_writes_test_acc_and_overwrite(image_folder, tmp_path, capsys):
    """In process (the CLI's subprocess behaviour is covered by the kill/resume test): the three
    runs share compiled kernels, which a subprocess each would compile again."""
    out = tmp_path / "train"
    args = ["train", "--arch", TRAIN_ARCH, "--data", image_folder, "--out", out, "--preset", "tiny",
            "--no-progress", "nb201.C=4", "nb201.N=1", "train.epochs=1", "train.batch_size=16",
            "max_per_class=None"]

    def run_cli(*argv):
        return main_in_process(argv, capsys)

    rc, stdout, err = run_cli(*args)
    assert rc == 0, err[-3000:]
    result = json.loads((out / "result.json").read_text())
    assert result["arch"] == TRAIN_ARCH and result["method"] == "train" and result["steps"] == 7  # 120 // 16
    assert 0.0 <= result["test_acc"] <= 100.0 and json.loads(stdout)["test_acc"] == result["test_acc"]
    saved = json.loads((out / "config.json").read_text())["config"]
    assert (saved["nb201"]["C"], saved["nb201"]["N"], saved["train"]["epochs"], saved["max_per_class"],
            saved["train"]["lr"]) == (4, 1, 1, None, 0.1)

    rc, _, err = run_cli(*args)  # finished run directory: refused, untouched
    assert rc == 2 and err.strip().splitlines() == [err.strip()]
    assert (err.startswith("jaxnas: error: ") and "already holds a finished run" in err
            and "--overwrite" in err)
    assert json.loads((out / "result.json").read_text()) == result

    (out / "marker").write_text("a file jaxnas did not write")
    with pytest.warns(UserWarning, match="kept 1 entries .* marker"):
        rc, stdout, err = run_cli(*args, "--overwrite")  # replaced by a fresh, identical run
    assert rc == 0, err[-3000:]
    assert (out / "marker").read_text() == "a file jaxnas did not write"  # never deleted
    again = json.loads((out / "result.json").read_text())
    assert again["test_acc"] == result["test_acc"] and again["arch"] == TRAIN_ARCH


def test_recal_batches_held_out_fraction_and_warmup_reach_the_run(search_cfg, tmp_path):
    """eval.recal_batches sizes the BN recalibration batches, train.held_out the search split, and
    a warmup that leaves no cosine step is refused before the run directory is written."""
    cfg = search_cfg.set({"eval.bn": "recal", "eval.recal_batches": 2, "train.held_out": 0.25})
    run = SearchRun(cfg, tmp_path / "a", method_cls=RSPS, progress=False)
    assert run.evaluator.recal_images.shape[:2] == (2, 16)
    assert (len(run.wdata), len(run.adata)) == (90, 30)  # 120 images, a quarter held out
    with pytest.raises(RunError, match="eval.recal_batches=9 batches of 16 exceed"):
        SearchRun(cfg.set({"eval.recal_batches": 9}), tmp_path / "b", method_cls=RSPS, progress=False)
    with pytest.raises(RunError, match="train.warmup_epochs=2.0 leaves no step"):
        SearchRun(search_cfg.set({"train.warmup_epochs": 2.0}), tmp_path / "c", method_cls=RSPS,
                  progress=False)
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()
    # a method that reads no held-out batch runs with fewer held-out images than a batch (SMASH's 10 %)
    small = SearchRun(search_cfg.set({"train.held_out": 0.1}), tmp_path / "d", method_cls=RSPS,
                      progress=False)
    assert len(small.adata) < search_cfg.train.batch_size
    w_order, a_order = small._orders(small.method.init(), 0)
    assert w_order.shape[0] == small.steps_per_epoch and a_order.shape[1] == search_cfg.train.batch_size

"""What a new user's mistakes and a machine's faults must not do: delete files jaxnas did not
write, end in a traceback, restore corrupt checkpoints silently, glue torn rows, or start a long
run with a late error (issue 17: each finding has a test here).

Cost control: nothing here compiles a training step. CLI cases fail before any training, the
score runs use a stand-in scorer, and checkpoints hold small pytrees.
"""
from __future__ import annotations

import csv
import json
import os
import pathlib
import signal
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import main_in_process

from jaxnas import cli, rundir
from jaxnas.checkpoint import Checkpointer, CorruptCheckpoint, _check_contents
from jaxnas.config import Config
from jaxnas.rundir import RunError
from jaxnas.spaces import nb201

ARCH = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|"


def run_cli(capsys, *argv):
    """`jaxnas ...` in process: (returncode, stdout, stderr)."""
    return main_in_process(argv, capsys)


def one_line_error(rc, err, *, code=2):
    lines = err.strip().splitlines()
    assert rc == code and len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def fake_run(folder: pathlib.Path, finished=True) -> pathlib.Path:
    """A run directory as jaxnas leaves it (its config.json marker, a result, checkpoints)."""
    rundir.prepare_run_dir(folder, Config(), overwrite=False)
    rundir.release_run_dir(folder)  # a finished run no longer holds its directory
    (folder / "checkpoints").mkdir()
    (folder / "checkpoints" / "3").mkdir()
    (folder / "metrics.jsonl").write_text('{"step": 1, "loss": 2.0}\n')
    if finished:
        (folder / "result.json").write_text(json.dumps({"arch": ARCH}))
    return folder


# ---------------------------------------------------------------------------------- 1. data loss


def test_overwrite_refuses_a_folder_jaxnas_did_not_write(tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("my notes")
    rc, _, err = run_cli(capsys, "search", "--preset", "tiny", "--out", folder, "--overwrite")
    assert "holds no jaxnas run" in one_line_error(rc, err)
    assert (folder / "notes.txt").read_text() == "my notes"


def test_overwrite_refuses_a_parent_of_runs(tmp_path, capsys):
    parent = tmp_path / "runs"
    a, b = fake_run(parent / "a"), fake_run(parent / "b")
    rc, _, err = run_cli(capsys, "search", "--preset", "tiny", "--out", parent, "--overwrite")
    one_line_error(rc, err)
    assert (a / "result.json").exists() and (b / "result.json").exists()


@pytest.mark.parametrize("out, reason", [("", "--out is empty"), (".", "it is the working directory"),
                                         ("..", "it contains the working directory"),
                                         ("~", "it is the home folder"),
                                         ("/", "it is the file-system root")])
def test_overwrite_refuses_cwd_ancestors_home_root_and_empty(tmp_path, monkeypatch, capsys, out, reason):
    home = fake_run(tmp_path / "home")  # marked as jaxnas runs: only the location protects them
    work = fake_run(fake_run(home / "a") / "work")
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(home))
    rc, _, err = run_cli(capsys, "search", "--preset", "tiny", "--out", os.path.expanduser(out),
                         "--overwrite")
    assert reason in one_line_error(rc, err)
    assert all((d / "result.json").exists() for d in (work, work.parent, home))


def test_overwrite_removes_only_what_jaxnas_wrote(tmp_path):
    run = fake_run(tmp_path / "run")
    (run / "notes.txt").write_text("mine")
    with pytest.warns(UserWarning, match="kept 1 entries .* notes.txt"):
        rundir.remove_run(run)
    assert sorted(p.name for p in run.iterdir()) == [rundir.LOCK, "notes.txt"]  # the lock file stays


def test_demo_replaces_only_its_own_folder(tmp_path, monkeypatch, capsys):
    folder = fake_run(tmp_path / "mine")  # a finished jaxnas run the user keeps
    rc, _, err = run_cli(capsys, "demo", "--out", folder)
    assert "already holds a finished jaxnas run" in one_line_error(rc, err)
    assert (folder / "result.json").exists()
    # the demo's two runs go into <out>/training-free and <out>/rsps; its own default folder is
    # replaced (but only runs in it, as any --overwrite), another folder only with --overwrite
    seen = []
    monkeypatch.setattr(cli, "_run", lambda ns: seen.append((pathlib.Path(ns.out).name, ns.overwrite))
                        or {"arch": ARCH})
    monkeypatch.chdir(tmp_path)
    for argv in (["demo"], ["demo", "--out", cli.DEMO_OUT], ["demo", "--out", tmp_path / "new"],
                 ["demo", "--out", folder, "--overwrite"]):
        assert run_cli(capsys, *argv)[0] == 0
    assert seen == [("training-free", True), ("rsps", True)] * 2 + [("training-free", False),
                                                                    ("rsps", False)] \
        + [("training-free", True), ("rsps", True)]
    assert not (folder / "result.json").exists() and not (folder / "config.json").exists()  # --overwrite
    # the demo's own overrides are valid config (the mocked _run above does not parse them)
    from jaxnas import registry
    from jaxnas.config import PRESETS, apply_overrides
    for _, method, _, overrides in cli.DEMO_RUNS:
        assert apply_overrides(PRESETS["tiny"].replace(method=method), overrides).method in registry.METHODS


# ---------------------------------------------------------------------------------- 2. tracebacks


def test_out_a_file_or_unwritable_is_one_line(tmp_path, monkeypatch, capsys):
    f = tmp_path / "file.txt"
    f.write_text("x")
    for out, message in ((f, "is a file"), (f / "run", "is a file")):
        rc, _, err = run_cli(capsys, "search", "--preset", "tiny", "--out", out)
        assert message in one_line_error(rc, err)
    monkeypatch.setattr(os, "access", lambda *a, **k: False)  # as a non-root user in a read-only folder
    rc, _, err = run_cli(capsys, "search", "--preset", "tiny", "--out", tmp_path / "ro" / "run")
    assert "no permission to write" in one_line_error(rc, err)


def test_os_errors_while_creating_the_run_are_one_line(tmp_path, monkeypatch):
    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied", str(tmp_path / "run"))
    monkeypatch.setattr(pathlib.Path, "mkdir", refuse)
    with pytest.raises(RunError, match="cannot write the run directory .*Permission denied"):
        rundir.prepare_run_dir(tmp_path / "run", Config(), overwrite=False)


@pytest.mark.parametrize("value", ["-1", "0", "two"])
def test_device_counts_are_checked(tmp_path, capsys, value):
    rc, _, err = run_cli(capsys, "search", "--out", tmp_path / "r", "--devices", value)
    assert "argument --devices" in one_line_error(rc, err)


def test_score_rejects_devices(image_folder, tmp_path, capsys):
    rc, _, err = run_cli(capsys, "score", "--archs", "3", "--data", image_folder, "--out", tmp_path / "s",
                         "--devices", "2")
    assert "--devices: training-free scoring runs on one device" in one_line_error(rc, err)
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("how", ["KeyboardInterrupt", "SIGTERM"])
def test_ctrl_c_or_sigterm_anywhere_exits_130(tmp_path, monkeypatch, capsys, how):
    def interrupted(args):  # e.g. during data loading or compilation, before any loop handler
        if how == "SIGTERM":
            os.kill(os.getpid(), signal.SIGTERM)
        raise KeyboardInterrupt
    monkeypatch.setattr(cli, "_run", interrupted)
    before = signal.getsignal(signal.SIGTERM)
    rc, _, err = run_cli(capsys, "search", "--out", tmp_path / "r")
    assert "interrupted; rerun the same command to resume" in one_line_error(rc, err, code=130)
    assert signal.getsignal(signal.SIGTERM) == before  # the previous handler is back


class StandInScorer:
    """Scores = NB201 index / 1000; sends itself `signum` during the first block when asked."""
    host = False

    def __init__(self, signum=None):
        self.signum, self.calls = signum, 0

    def __call__(self, archs, *batches):
        self.calls += 1
        if self.signum and self.calls == 1:
            os.kill(os.getpid(), self.signum)
        s = np.asarray(nb201.to_index(archs), np.float64) / 1000
        return {"naswot": s, "da": s + 1}


def score_run(monkeypatch, scorer, image_folder, out, n=20, block_size=8):
    from jaxnas.proxies import run as proxy_run
    monkeypatch.setattr(proxy_run, "make_scorer", lambda *a, **k: scorer)
    cfg = Config(method="score", data=str(image_folder)).set({"proxy.archs": str(n), "proxy.batch_size": 8})
    return proxy_run.score(cfg, out, progress=False, block_size=block_size)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_score_stops_between_blocks_on_a_signal_and_resumes(image_folder, tmp_path, monkeypatch, signum):
    out = tmp_path / "s"
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    name = signal.Signals(signum).name
    with pytest.raises(rundir.Interrupted, match=f"{name} after 8 of 20"):
        score_run(monkeypatch, StandInScorer(signum), image_folder, out)
    assert {s: signal.getsignal(s) for s in before} == before
    with open(out / "scores.csv") as f:
        assert len(list(csv.DictReader(f))) == 8
    summary = score_run(monkeypatch, StandInScorer(), image_folder, out)
    assert summary["n"] == 20


def test_a_second_signal_stops_at_once():
    with rundir.stop_on_signals() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop["stop"] == "SIGINT"
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)


# -------------------------------------------------------------------------- 3. corrupt checkpoints


def _small_state(step: int):
    w = np.random.default_rng(step).normal(size=4096).astype(np.float32)
    return {"w": jnp.asarray(w), "step": jnp.int32(step)}


def test_flipped_checkpoint_bytes_fall_back_with_a_warning(tmp_path):
    ckpt = Checkpointer(tmp_path / "ck")
    ckpt.save(3, _small_state(3))
    ckpt.save(6, _small_state(6))
    ckpt.close()
    # flip one byte in the middle of the newest checkpoint's array data: Orbax restores it silently
    data = max((f for f in (tmp_path / "ck" / "6").rglob("*") if f.is_file()), key=lambda f: f.stat().st_size)
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0x10
    data.write_bytes(bytes(raw))
    ckpt = Checkpointer(tmp_path / "ck")
    with pytest.warns(UserWarning, match="checkpoint 6 .* could not be restored .*SHA-256"):
        state = ckpt.restore_latest(jax.tree.map(jnp.zeros_like, _small_state(0)))
    assert ckpt.restored_step == 3 and int(state["step"]) == 3
    np.testing.assert_array_equal(state["w"], _small_state(3)["w"])
    ckpt.close()


def test_non_finite_contents_are_corrupt():
    with pytest.raises(CorruptCheckpoint, match=r"non-finite values in \['w'\]"):
        _check_contents({"w": np.array([1.0, np.nan], np.float32), "step": np.int32(1)}, None)
    _check_contents({"w": np.ones(2, np.float32), "key": np.uint32([1, 2])}, None)


@pytest.fixture
def small_search_run(image_folder, tmp_path):
    from jaxnas.methods import RSPS
    from jaxnas.train.loop import SearchRun
    cfg = Config(data=str(image_folder)).set({"nb201.C": 4, "nb201.N": 1, "train.batch_size": 16,
                                              "train.epochs": 2,
                                              "eval.select_num": 4, "eval.batch_size": 16})
    run = SearchRun(cfg, tmp_path / "run", method_cls=RSPS, progress=False)
    yield run
    run.ckpt.close()


def test_no_restorable_checkpoint_is_loud_and_resets_metrics(small_search_run):
    run = small_search_run
    state = run.method.init()
    run.ckpt.save(3, state.replace(step=jnp.int32(3)))
    run.ckpt.save(6, state.replace(step=jnp.int32(6)))
    for f in run.ckpt.directory.rglob("*"):
        if f.is_file() and f.name != "digests.json" and f.parent.name != "checkpoints":
            f.write_bytes(b"\0garbage")
    (run.run_dir / "metrics.jsonl").write_text("".join(json.dumps({"step": s,
                                                                   "loss": 1.0}) + "\n" for s in (2, 4, 6)))
    with pytest.warns(UserWarning, match="NONE of the 2 checkpoints .* starts again from step 0"):
        restored = run.restore_or_init()
    assert int(restored.step) == 0 and run.resumed_from is None
    assert (run.run_dir / "metrics.jsonl").read_text() == ""


def test_nan_stop_names_the_checkpoint_it_resumed_from(small_search_run):
    run = small_search_run
    assert "No checkpoint had been written yet" in run._stopped_note()
    run.ckpt.save(3, run.method.init().replace(step=jnp.int32(3)))
    run.restore_or_init()
    assert run.resumed_from == 3
    note = run._stopped_note()
    assert "last good checkpoint (step 3)" in note and "resumed from checkpoint 3" in note


# -------------------------------------------------------------------------------- 4. torn writes


def test_torn_scores_row_is_recomputed_not_glued(image_folder, tmp_path, monkeypatch):
    out = tmp_path / "s"
    score_run(monkeypatch, StandInScorer(), image_folder, out)
    whole = (out / "scores.csv").read_text()
    lines = whole.splitlines(keepends=True)
    # killed mid-write of row 10: the arch is complete, the number is half-written, no newline
    (out / "scores.csv").write_text("".join(lines[:10]) + lines[10][: len(lines[10]) - 6])
    (out / "summary.json").unlink()
    with pytest.warns(UserWarning, match=r"scores.csv:11: dropped a torn last row"):
        score_run(monkeypatch, StandInScorer(), image_folder, out)
    assert (out / "scores.csv").read_text() == whole


def test_malformed_scores_row_in_the_middle_names_the_line(tmp_path):
    from jaxnas.rundir import read_scores
    f = tmp_path / "scores.csv"
    f.write_text("index,arch,naswot\n1,a,0.5\n2,b,zz\n3,c,0.1\n")
    with pytest.raises(RunError, match=r"scores.csv:3: malformed row"):
        read_scores(f)


def test_torn_metrics_line_is_dropped_with_the_file_named(tmp_path):
    f = tmp_path / "metrics.jsonl"
    f.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.9}\n{"step": 3, "lo')
    with pytest.warns(UserWarning, match=r"metrics.jsonl:3: dropped a torn last line"):
        rundir.truncate_jsonl(f, 10)
    assert [json.loads(x)["step"] for x in f.read_text().splitlines()] == [1, 2]
    f.write_text('{"step": 1}\n{"ste\n{"step": 3}\n')
    with pytest.raises(RunError, match=r"metrics.jsonl:2: not a JSON row"):
        rundir.read_jsonl(f)


# ------------------------------------------------------------------------- 5. early validation


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_floats_are_rejected(tmp_path, capsys, value):
    rc, _, err = run_cli(capsys, "search", "--out", tmp_path / "r", f"train.lr={value}")
    assert "lr must be a finite number" in one_line_error(rc, err)


def test_seed_must_be_non_negative(tmp_path, capsys):
    rc, _, err = run_cli(capsys, "search", "--out", tmp_path / "r", "--seed", "-1")
    assert "argument --seed: must be >= 0" in one_line_error(rc, err)


def test_bench_table_coverage_is_checked_before_any_work(image_folder, tmp_path, capsys):
    table = tmp_path / "partial.csv"
    table.write_text(f"arch,acc\n{ARCH},91.0\n")
    out = tmp_path / "r"
    rc, _, err = run_cli(capsys, "search", "--preset", "tiny", "--data", image_folder, "--out", out,
                         "--bench-table", table)
    assert "lacks 15624 of 15625 architectures of the nb201 space" in one_line_error(rc, err)
    assert not out.exists()
    rc, _, err = run_cli(capsys, "score", "--archs", "5", "--data", image_folder, "--out", out,
                         "--bench-table", table)
    assert "architectures to score" in one_line_error(rc, err)


def test_dropped_table_column_is_warned(tmp_path):
    from jaxnas.bench import load_table
    table = tmp_path / "t.csv"
    other = nb201.to_string(nb201.from_index(7))
    table.write_text(f"arch,acc,test_acc,note\n{ARCH},91.0,90.5,x\n{other},88.0,87.1x,y\n")
    with pytest.warns(UserWarning, match=r"column 'test_acc' dropped: line 3 holds '87.1x'"):
        t = load_table(table)
    assert t.columns == ("acc",)  # 'note' is text: ignored without a warning


def test_archs_file_with_bom_directory_or_binary(tmp_path):
    from jaxnas.proxies.run import select_archs
    f = tmp_path / "archs.txt"
    f.write_bytes(b"\xef\xbb\xbf" + ARCH.encode() + b"\n")
    np.testing.assert_array_equal(select_archs(str(f), 0), nb201.from_string(ARCH)[None])
    with pytest.raises(ValueError, match="is a directory"):
        select_archs(str(tmp_path), 0)
    f.write_bytes(bytes(range(256)))
    with pytest.raises(ValueError, match="not a UTF-8 text file"):
        select_archs(str(f), 0)


# ---------------------------------------------------------------------------------- 6. the CLI


def test_version(capsys):
    rc, out, _ = run_cli(capsys, "--version")
    assert rc == 0 and out.strip() == f"jaxnas {__import__('jaxnas').__version__}"


def test_search_help_lists_every_method(capsys):
    from jaxnas import registry
    assert set(registry.search_methods()) == set(registry.METHODS) - {"train"}
    rc, out, _ = run_cli(capsys, "search", "--help")
    assert rc == 0 and all(f"  {m} " in out for m in registry.search_methods())


def test_list_names_every_space_method_proxy_and_preset_in_one_line_each(capsys):
    from jaxnas import registry
    from jaxnas.config import PRESETS
    from jaxnas.proxies import PROXIES
    assert list(PROXIES) == list(registry.PROXIES)  # the functions and their help lines
    rc, out, _ = run_cli(capsys, "list")
    assert rc == 0
    lines = out.splitlines()
    # search methods: `train` is a command
    for name in [*registry.SPACES, *registry.search_methods(), *PROXIES, *PRESETS]:
        hits = [ln for ln in lines if ln.startswith(f"  {name} ")]
        assert hits and all(len(h.split(maxsplit=1)) == 2 for h in hits), name  # a name and its line


def test_print_config_with_overrides_anywhere(image_folder, tmp_path, capsys):
    out = tmp_path / "r"
    rc, stdout, err = run_cli(capsys, "search", "nb201.C=4", "--preset", "tiny", "--data", image_folder,
                              "nb201.N=2",
                              "--out", out, "--print-config", "train.epochs=2")
    assert rc == 0, err
    shown = json.loads(stdout)
    config = shown["config"]
    assert (config["nb201"]["C"], config["nb201"]["N"], config["train"]["epochs"]) == (4, 2, 2)
    # the image folder has 12 train images per class: 60 weight images, batch 64 -> 0 steps per epoch
    assert shown["estimate"]["train_images"] == 120 and shown["estimate"]["steps"] == 0
    assert not out.exists()
    rc, _, err = run_cli(capsys, "search", "--out", out, "--frobnicate", "nb201.C=4")
    assert "unrecognized arguments: --frobnicate" in one_line_error(rc, err)


def test_train_takes_the_architecture_a_search_found(tmp_path, capsys):
    run = fake_run(tmp_path / "search")
    for flag, value in (("--arch-from", run), ("--arch", run / "result.json"), ("--arch", ARCH)):
        rc, stdout, err = run_cli(capsys, "train", flag, value, "--out", tmp_path / "t", "--print-config")
        assert rc == 0, err
        assert json.loads(stdout)["config"]["arch"] == ARCH
    rc, _, err = run_cli(capsys, "train", "--arch-from", tmp_path, "--out", tmp_path / "t")
    assert "no " in one_line_error(rc, err) and "result.json" in err
    rc, _, err = run_cli(capsys, "train", "--arch", ARCH, "--out", tmp_path / "t", "method=rsps")
    assert "method= and arch= overrides do not apply" in one_line_error(rc, err)


def test_long_cpu_runs_print_an_estimate_first(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("JAXNAS_DATA", str(tmp_path / "no-data"))  # stop at data loading, after the note
    rc, _, err = run_cli(capsys, "search", "--out", tmp_path / "a")
    note, error = err.strip().splitlines()
    assert "97500 steps, estimated" in note and "days" in note and "--preset tiny" in note
    assert rc == 2 and "JAXNAS_DATA" in error
    rc, _, err = run_cli(capsys, "score", "--out", tmp_path / "b")
    assert "15625 architectures, estimated" in err.strip().splitlines()[0]


def test_plot_command_writes_pngs(tmp_path, capsys):
    run = fake_run(tmp_path / "run", finished=False)
    (run / "metrics.jsonl").write_text("".join(
        json.dumps({"loss": 2.3 - s / 10, "acc": 10.0 + s, "lr": 0.1, "epoch": 0, "step": s}) + "\n"
        for s in range(1, 6)))
    rc, stdout, err = run_cli(capsys, "plot", run)
    assert rc == 0, err
    plots = json.loads(stdout)["plots"]
    assert plots and all(pathlib.Path(p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in plots)
    rc, _, err = run_cli(capsys, "plot", tmp_path / "nothing")
    one_line_error(rc, err)


def test_license_file_matches_the_package_metadata():
    root = pathlib.Path(__file__).resolve().parents[2]
    assert "Apache License" in (root / "LICENSE").read_text()
    assert 'license = "Apache-2.0"' in (root / "pyproject.toml").read_text()


def test_warnings_module_is_quiet_for_good_runs(tmp_path):
    """A clean run directory: overwrite removes everything without warnings."""
    run = fake_run(tmp_path / "run")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rundir.remove_run(run)
    assert [p.name for p in run.iterdir()] == [rundir.LOCK]


def test_a_run_directory_written_by_another_process_is_refused(tmp_path):
    """Two processes on one run directory would interleave rows and checkpoints: the second is
    refused with the first one's pid, and the directory is free again once the first releases it."""
    import fcntl
    import os

    from jaxnas.config import Config
    from jaxnas.rundir import LOCK, RunError, prepare_run_dir, release_run_dir
    run = tmp_path / "run"
    run.mkdir()
    with open(run / LOCK, "a+") as other:  # another process's lock (a second open file description)
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        other.write("4242")
        other.flush()
        with pytest.raises(RunError, match=r"another jaxnas process \(pid 4242\)"):
            prepare_run_dir(run, Config(), overwrite=False)
    prepare_run_dir(run, Config(), overwrite=False)  # free now; held by this process, re-entrant
    prepare_run_dir(run, Config(), overwrite=True)
    assert (run / LOCK).read_text() == str(os.getpid()) and (run / "config.json").exists()
    release_run_dir(run)

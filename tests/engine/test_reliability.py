"""Every option either works or is refused up front (issue 29): each finding of the issue has a test
here that failed before the fix. Cost control: nothing here trains; CLI cases fail before any data
is read or any program is compiled, or run a training-free search on cost proxies only.
"""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import time

import pytest

from jaxnas import cli, rundir
from jaxnas.config import Config
from jaxnas.plot import PlotError, plot_run
from jaxnas.rundir import RunError

ARCH = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|"


def cli_error(capsys, *argv) -> str:
    """The one line `jaxnas ...` (in this process) prints when it refuses, with exit code 2."""
    try:
        rc = cli.main([str(a) for a in argv])
    except SystemExit as exit_:
        rc = exit_.code
    _, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def jaxnas_run(folder: pathlib.Path, cfg: Config | None = None, **files) -> pathlib.Path:
    """A run directory as jaxnas leaves it (config.json) with `files` ({name: text}) added."""
    rundir.prepare_run_dir(folder, cfg or Config(), overwrite=False)
    rundir.release_run_dir(folder)
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


# ----------------------------------------------------------------------------------- data loss


def test_overwrite_keeps_a_user_file_inside_plots_and_checkpoints(tmp_path):
    run = jaxnas_run(tmp_path / "run",
                     **{"result.json": "{}", "plots/curves.png": "png", "plots/mine.txt": "x",
                                          "checkpoints/3/state": "s", "checkpoints/digests.json": "{}",
                                          "checkpoints/notes.md": "y"})
    with pytest.warns(UserWarning, match="kept 2 entries .*plots/mine.txt"):
        rundir.remove_run(run)
    left = sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file())
    assert left == [rundir.LOCK, "checkpoints/notes.md", "plots/mine.txt"]
    run2 = jaxnas_run(tmp_path / "run2", **{"plots/curves.png": "png", "checkpoints/3/state": "s"})
    rundir.remove_run(run2)  # nothing of the user's: the folders go too
    assert sorted(p.name for p in run2.iterdir()) == [rundir.LOCK]


# ------------------------------------------------------------ options that would do nothing


@pytest.mark.parametrize("argv, message", [
    (["--method", "abs", "abs.drop_num=100"], "abs.drop_num=100 exceeds the 24 droppable operators"),
    (["--method", "abs", "abs.shrink_after=4"], "abs.shrink_after=4 is beyond the run's 3 epochs"),
    (["--method", "naswot", "proxy.rule=aznas"], "--method naswot would ignore it"),
    (["--method", "aznas", "proxy.rule=naswot_params"], "--method aznas would ignore it"),
    (["--method", "rsps", "--space", "hybrid", "eval.rank_probe=5"], "space 'hybrid' does not"),
    (["--method", "naswot", "eval.rank_probe=5"], "--method naswot trains none"),
    (["eval.rank_probe=20000"], "exceeds the 15625 architectures"),
    (["eval.bn=running"], "eval.bn=running needs nb201.track_running_stats=true"),  # the space's rule
])
def test_search_refuses_options_it_would_ignore_before_anything_runs(tmp_path, capsys, argv, message):
    out = tmp_path / "run"
    for extra in ([], ["--print-config"]):  # --print-config refuses too
        assert message in cli_error(capsys, "search", "--preset", "tiny", "--out", out, *argv, *extra)
    assert not out.exists()


@pytest.mark.parametrize("rule, message", [
    ({"kind": "logrank", "metrics": ["naswot"], "weights": [float("nan")]}, "must be finite"),
    ({"kind": "logrank", "metrics": ["naswot"], "weights": [float("inf")]}, "must be finite"),
    ({"kind": "logrank", "metrics": ["naswot", "params"], "weights": [0, 0]}, "needs a non-zero weight"),
    ({"kind": "logrank", "metrics": "naswot", "weights": [1]}, "'metrics' must be a list"),
    ({"kind": "logrank", "metrics": ["naswot"]}, "keys kind, metrics and weights"),
])
def test_rule_files_with_useless_weights_or_wrong_shapes_are_refused(tmp_path, capsys, rule, message):
    path = tmp_path / "rule.json"
    path.write_text(json.dumps(rule))  # json writes NaN / Infinity, which json.loads reads back
    assert message in cli_error(capsys, "search", "--method", "rule", "--preset", "tiny", "--out",
                                tmp_path / "r",
                                f"proxy.rule={path}")
    (tmp_path / "x.json").mkdir()
    assert "x.json is a folder" in cli_error(capsys, "search", "--method", "rule", "--preset", "tiny",
                                             "--out",
                                             tmp_path / "r", f"proxy.rule={tmp_path / 'x.json'}")


def test_steps_per_epoch_beyond_an_epoch_is_refused_before_the_run_directory(image_folder, tmp_path, capsys):
    out = tmp_path / "run"  # 120 images, search split: 60 for the weights, 7 batches of 8
    line = cli_error(capsys, "search", "--preset", "tiny", "--data", image_folder, "--out", out, "nb201.C=4",
                     "train.batch_size=8", "train.steps_per_epoch=8")
    assert "train.steps_per_epoch=8 exceeds an epoch's 7 steps" in line
    assert not out.exists()


# --------------------------------------------------------------------------- resume by spelling


def test_resume_accepts_the_same_data_spelled_differently(image_folder, tmp_path, monkeypatch):
    monkeypatch.chdir(image_folder.parent)
    run = jaxnas_run(tmp_path / "run", Config(data=image_folder.name))
    rundir.check_run_dir(run, Config(data=str(image_folder)), overwrite=False)  # absolute: the same
    rundir.check_run_dir(run, Config(data=f"./{image_folder.name}/../{image_folder.name}"), overwrite=False)
    with pytest.raises(RunError, match="different config"):
        rundir.check_run_dir(run, Config(data="cifar10"), overwrite=False)


# ---------------------------------------------------------------------------- messages


def test_plot_says_why_a_run_has_nothing_to_plot(tmp_path):
    finished = jaxnas_run(tmp_path / "tf", **{"result.json": json.dumps({"arch": ARCH})})
    with pytest.raises(PlotError, match="trained nothing"):
        plot_run(finished)
    with pytest.raises(PlotError, match="written no metrics yet"):
        plot_run(jaxnas_run(tmp_path / "started"))
    with pytest.raises(PlotError, match="folder of runs; plot one of them: .*tf"):
        plot_run(tmp_path)
    logged = jaxnas_run(tmp_path / "logged", **{"metrics.jsonl": '{"step": 1, "loss": 2.0, "acc": 0.1}\n',
                                                 "plots": "a file"})
    with pytest.raises(PlotError, match="plots is a file"):
        plot_run(logged)


def test_lock_that_is_a_folder_is_named(tmp_path):
    (tmp_path / "run" / rundir.LOCK).mkdir(parents=True)
    with pytest.raises(RunError, match=r"\.lock is not a file"):
        rundir.lock_run_dir(tmp_path / "run")


def test_train_arch_messages(tmp_path, capsys):
    base = ["train", "--preset", "tiny", "--out", tmp_path / "t", "--print-config"]
    assert "--arch is empty" in cli_error(capsys, *base, "--arch", "")
    assert "in [0, 15624]" in cli_error(capsys, *base, "--arch", "15625")
    try:  # an NB201 index is accepted and read in the benchmark's order
        cli.main([str(a) for a in [*base, "--arch", "0"]])
    finally:
        printed = json.loads(capsys.readouterr().out)
    from jaxnas.spaces import nb201
    assert printed["config"]["arch"] == nb201.to_string(nb201.from_index(0))
    score = jaxnas_run(tmp_path / "score", **{"summary.json": "{}",
                                              "scores.csv": f"index,arch,naswot\n1,{ARCH},3.5\n2,x,1.0\n"})
    line = cli_error(capsys, *base, "--arch-from", score)
    assert "is a `jaxnas score` run" in line and f"its best by naswot: {ARCH}" in line
    hybrid = jaxnas_run(tmp_path / "hybrid", Config(space="hybrid"),
                        **{"result.json": json.dumps({"arch": "x"})})
    assert "the run searched space 'hybrid'" in cli_error(capsys, *base, "--arch-from", hybrid, "--space",
                                                          "nb201")


def test_score_archs_messages(tmp_path, capsys):
    base = ["score", "--out", tmp_path / "s", "--print-config"]
    assert "--archs N must be in [1, 15625], got -5" in cli_error(capsys, *base, "--archs", "-5")
    assert "no such file" in cli_error(capsys, *base, "--archs", tmp_path / "nope.txt")


def test_print_config_refuses_a_missing_bench_table(tmp_path, capsys):
    line = cli_error(capsys, "search", "--preset", "tiny", "--out", tmp_path / "r", "--print-config",
                     "--bench-table", tmp_path / "nope.csv")
    assert "--bench-table" in line and "no such file" in line


def test_bench_table_names_a_stray_text_column(tmp_path):
    from jaxnas.bench import load_table
    path = tmp_path / "t.csv"
    path.write_text(f"ArchitectureString,acc,UniqueString,notes\n{ARCH},91.5,u,good\n")
    with pytest.warns(UserWarning, match="column 'notes' ignored: it holds text") as seen:
        assert load_table(path).columns == ("acc",)
    assert not any("UniqueString" in str(w.message) for w in seen)


def test_tfds_fails_fast_offline(tmp_path, monkeypatch):
    import socket

    import tensorflow_datasets as tfds

    from jaxnas.data import DataError, sources

    def refuse(*a, **k):
        raise OSError("network unreachable")

    monkeypatch.setattr(socket, "create_connection", refuse)
    assert not sources._online()

    class Unprepared:
        def is_prepared(self):
            return False

    monkeypatch.setattr(tfds, "builder", lambda name: Unprepared())
    monkeypatch.setattr(tfds, "load", lambda *a, **k: pytest.fail("tfds.load must not run offline"))
    t0 = time.time()
    with pytest.raises(DataError, match="not prepared .* no download host answers"):
        sources.load("cifar100", cache_dir=tmp_path)
    assert time.time() - t0 < 10


def test_distributed_without_its_environment_names_the_variables(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES",
                                                            "JAX_PROCESS_ID")}
    proc = subprocess.run([sys.executable, "-m", "jaxnas", "search", "--preset", "tiny", "--out",
                           str(tmp_path / "d"),
                           "--distributed"], capture_output=True, text=True, env=env, timeout=120,
                          check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "JAX_COORDINATOR_ADDRESS" in proc.stderr and "JAX_NUM_PROCESSES" in proc.stderr


# ----------------------------------------------------------------------------- text


def test_help_and_list_match_what_runs(capsys):
    help_text = " ".join(cli.build_parser().format_help().split())
    assert "(training-free pruning, then RSPS)" in help_text  # it said DAS
    assert "\n  train " not in cli.listing().split("proxies")[0]  # `train` is a command, not a method
    assert Config().pgnas.genotype == "ranked"
    from jaxnas.config import PRESET_HELP, PRESETS
    tiny = PRESETS["tiny"]
    share = 100 * tiny.max_per_class * 10 / 50000
    assert f"{share:.0f}% of CIFAR-10" in PRESET_HELP["tiny"]


def test_stdout_summarises_long_result_lists():
    short = cli._brief({"arch": ARCH, "rounds": [{"candidates": list(range(100))}] * 3,
                        "bench": {"acc": 91.0},
                        "hist": {"values": list(range(500)), "mean": 1.0}})
    assert short["arch"] == ARCH and short["bench"] == {"acc": 91.0} and short["hist"]["mean"] == 1.0
    assert short["rounds"].startswith("(3 entries") and short["hist"]["values"].startswith("(500 entries")


def test_estimate_counts_rounds_and_the_held_out_fraction():
    from jaxnas.estimate import search_steps
    cfg = Config(max_per_class=300).set({"train.batch_size": 64, "train.epochs": 3})
    assert search_steps(cfg, 3000) == 23 * 3  # 1,500 weight images / 64
    assert search_steps(cfg.set({"train.rounds": 2}), 3000) == 23 * 3 * 2
    assert search_steps(cfg.set({"train.held_out": 0.1}), 3000) == 42 * 3  # 2,700 / 64

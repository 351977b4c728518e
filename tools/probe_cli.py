"""Probe the `jaxnas` command line as a new user would: bad inputs and faults, each in a fresh
process. Prints one row per probe (exit code, last stderr line) and fails when a probe prints a
traceback or loses a file it must keep. Nothing here trains: every probe stops before the first step.

Usage: python tools/probe_cli.py [--keep DIR]   (about 30 seconds on 2 CPU cores)
"""
from __future__ import annotations

import argparse
import os
import pathlib
import subprocess
import sys
import tempfile

ARCH = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|"


def probes(d: pathlib.Path):
    """(name, argv, files that must survive)."""
    notes = d / "mine" / "notes.txt"
    runs = d / "runs"
    kept_runs = [runs / "a" / "config.json", runs / "b" / "config.json"]
    f = d / "file.txt"
    yield "overwrite a user's folder", ["search", "--preset", "tiny", "--out", notes.parent, "--overwrite"], [notes]
    yield "overwrite a parent of runs", ["search", "--preset", "tiny", "--out", runs, "--overwrite"], kept_runs
    yield "overwrite --out ''", ["search", "--out", "", "--overwrite"], [notes]
    yield "overwrite --out .", ["search", "--out", ".", "--overwrite"], [notes]
    yield "demo into a user's folder", ["demo", "--out", notes.parent], [notes]
    yield "--out a regular file", ["search", "--out", f], [f]
    yield "--out under a regular file", ["search", "--out", f / "run"], [f]
    yield "--devices -1", ["search", "--out", d / "r1", "--devices", "-1"], []
    yield "--devices 0", ["search", "--out", d / "r2", "--devices", "0"], []
    yield "score --devices 2", ["score", "--archs", "3", "--out", d / "r3", "--devices", "2"], []
    yield "train.lr=nan", ["search", "--out", d / "r4", "train.lr=nan"], []
    yield "train.lr=inf", ["search", "--out", d / "r5", "train.lr=inf"], []
    yield "--seed -1", ["search", "--out", d / "r6", "--seed", "-1"], []
    yield "unknown field", ["search", "--out", d / "r7", "train.lrr=0.1"], []
    yield "renamed field", ["search", "--out", d / "r7b", "lr=0.1"], []
    yield "partial bench table", ["search", "--preset", "tiny", "--out", d / "r8", "--bench-table", d / "t.csv"], []
    yield "--archs a directory", ["score", "--archs", d, "--out", d / "r9"], []
    yield "--archs a binary file", ["score", "--archs", d / "bin", "--out", d / "r10"], []
    yield "train method=rsps", ["train", "--arch", ARCH, "--out", d / "r11", "method=rsps"], []
    yield "train --arch-from unfinished", ["train", "--arch-from", d / "mine", "--out", d / "r12"], []
    yield "overrides split by a flag", ["search", "--preset", "tiny", "nb201.C=4", "--out", d / "r13", "nb201.N=2",
                                        "--print-config"], []
    yield "--version", ["--version"], []
    yield "plot a missing run", ["plot", d / "nothing"], []


def setup(d: pathlib.Path) -> None:
    (d / "mine").mkdir()
    (d / "mine" / "notes.txt").write_text("my notes")
    for r in ("a", "b"):
        marker = ("import pathlib, sys; from jaxnas import rundir; from jaxnas.config import Config; "
                  "rundir.prepare_run_dir(pathlib.Path(sys.argv[1]), Config(), False)")
        subprocess.run([sys.executable, "-c", marker, d / "runs" / r], check=True)
    (d / "file.txt").write_text("x")
    (d / "t.csv").write_text(f"arch,acc\n{ARCH},91.0\n")
    (d / "bin").write_bytes(bytes(range(256)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", help="probe in this (new) folder and keep it")
    a = ap.parse_args()
    d = pathlib.Path(a.keep or tempfile.mkdtemp(prefix="jaxnas-probe-"))
    d.mkdir(parents=True, exist_ok=True)
    setup(d)
    env = dict(os.environ, JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"))
    env.pop("JAXNAS_DEBUG", None)
    bad = 0
    for name, argv, must_keep in probes(d):
        p = subprocess.run([sys.executable, "-m", "jaxnas", *map(str, argv)], cwd=d, env=env,
                           capture_output=True, text=True, timeout=600, check=False)
        lines = (p.stderr.strip() or p.stdout.strip()).splitlines()
        lost = [str(f) for f in must_keep if not f.exists()]
        ok = "Traceback" not in p.stderr + p.stdout and not lost
        bad += not ok
        print(f"{'ok ' if ok else 'BAD'} rc={p.returncode:<3} {name:30s} {lines[-1][:150] if lines else ''}"
              + (f"  LOST {lost}" if lost else ""), flush=True)
    print(f"{bad} bad of {sum(1 for _ in probes(d))} probes (folder {d})")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

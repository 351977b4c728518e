"""Run directories: what jaxnas writes into `--out`, and the rules that keep a user's files safe.

- A run directory is marked as jaxnas's by the `config.json` jaxnas writes first (it records the
  jaxnas version); `--overwrite` replaces only a marked directory, only the entries jaxnas writes
  (`OWNED`, and inside its folders only what `OWNED_INSIDE` names: a user's file in `plots/` is
  kept like one at the top level), and never the working directory, one of its ancestors, the
  home folder or `/`.
- Appended files survive a crash mid-write: a torn last line of `metrics.jsonl` is dropped with a
  warning naming the file; appends are written in one call and flushed to disk.
"""
from __future__ import annotations

import atexit
import contextlib
import csv
import json
import os
import pathlib
import platform
import re
import shutil
import signal
import sys
import threading
import warnings

import jaxnas
from jaxnas.config import Config, flat, from_json

try:
    import fcntl
except ImportError:  # not POSIX: no run-directory lock
    fcntl = None

# Everything jaxnas may write into a run directory; --overwrite removes only these.
OWNED = ("config.json", "metrics.jsonl", "result.json", "checkpoints", "scores.csv", "progress.json",
         "summary.json", "aggregate.csv", "plots")
# What jaxnas writes inside the folders it owns (plot names: `jaxnas.plot`; checkpoint steps,
# Orbax's temporary step folders and the digests file: `jaxnas.checkpoint`).
PLOT_FILES = ("curves.png", "epoch_metrics.png", "fronts.png", "scores.png", "candidates.png")
OWNED_INSIDE = {"plots": re.compile("|".join(re.escape(f) for f in PLOT_FILES)),
                "checkpoints": re.compile(r"\d+(\.orbax-checkpoint-tmp.*)?|digests\.json(\.tmp)?")}
MARKER = "config.json"
LOCK = ".lock"  # held (flock) by the process writing the run directory; never removed
_HELD: dict = {}  # resolved run directory -> the open lock file this process holds
atexit.register(lambda: [f.close() for f in _HELD.values()])


class RunError(RuntimeError):
    """A run cannot start or continue (bad run directory, NaN loss); the message says why."""


class Interrupted(RuntimeError):
    """SIGINT/SIGTERM (or Ctrl-C) arrived; whatever was saved can be resumed by rerunning."""


def versions() -> dict:
    import flax
    import jax
    import optax
    import orbax.checkpoint as ocp
    return {"jaxnas": jaxnas.__version__, "jax": jax.__version__, "flax": flax.__version__,
            "optax": optax.__version__, "orbax": ocp.__version__, "python": platform.python_version(),
            "backend": jax.default_backend(), "devices": jax.device_count()}


def atomic_write(path: pathlib.Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def append_text(path: pathlib.Path, text: str) -> None:
    """Append in one write and flush it to disk, so a crash tears at most the text being written."""
    with open(path, "a", newline="") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def is_jaxnas_run(path: pathlib.Path) -> bool:
    """Whether `path` holds the config.json jaxnas writes first into every run directory."""
    try:
        record = json.loads((path / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return (isinstance(record, dict) and isinstance(record.get("config"), dict)
            and isinstance(record.get("versions"), dict) and "jaxnas" in record["versions"])


def _protected(path: pathlib.Path) -> str | None:
    """Why `path` may never be removed (None when it may)."""
    p, cwd = path.resolve(), pathlib.Path.cwd().resolve()
    if p == pathlib.Path(p.anchor):
        return "it is the file-system root"
    if p == pathlib.Path.home().resolve():
        return "it is the home folder"
    if p == cwd:
        return "it is the working directory"
    if cwd.is_relative_to(p):
        return "it contains the working directory"
    return None


def check_out(run_dir) -> pathlib.Path:
    """`--out` must name a directory jaxnas can create or write; RunError saying why not."""
    if not os.fspath(run_dir).strip():
        raise RunError("--out is empty; name a run directory, e.g. --out runs/search0")
    run = pathlib.Path(run_dir)
    if run.exists() and not run.is_dir():
        raise RunError(f"--out {run} is a file, not a directory; choose another --out")
    existing = run
    while not existing.exists():  # the nearest ancestor that exists must be a writable folder
        existing = existing.parent
    if not existing.is_dir():
        raise RunError(f"--out {run}: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise RunError(f"--out {run}: no permission to write in {existing}")
    return run


def check_run_dir(run_dir, cfg: Config, overwrite: bool, finished_file: str = "result.json") -> pathlib.Path:
    """Refuse to clobber a finished run, mix configs or (with `overwrite`) remove what jaxnas did not
    write; writes nothing."""
    run = check_out(run_dir)
    if overwrite:
        _check_removable(run)
        return run
    if (run / finished_file).exists():
        raise RunError(f"{run} already holds a finished run ({finished_file}); pass --overwrite to "
                       "replace it")
    cfg_file = run / MARKER
    if cfg_file.exists():
        saved = _saved_config(cfg_file)
        if same_data(saved.data, cfg.data):  # the same dataset however it is spelled
            saved = saved.replace(data=cfg.data)
        if saved != cfg:
            old, new = flat(saved), flat(cfg)
            diff = {k: (old[k], new[k]) for k in new if old[k] != new[k]}
            raise RunError(f"{run} holds a run with a different config {diff} (saved, now); "
                           "use another --out or --overwrite")
    elif run.exists() and _entries(run):
        raise RunError(f"{run} exists, is not empty and holds no jaxnas run; choose another --out")
    return run


def same_data(a: str, b: str) -> bool:
    """Whether two `--data` values name the same dataset: equal names, or paths that resolve to the
    same file or folder (a relative and an absolute spelling, `~`, symlinks)."""
    if a == b:
        return True
    pa, pb = pathlib.Path(a).expanduser(), pathlib.Path(b).expanduser()
    return pa.exists() and pb.exists() and pa.resolve() == pb.resolve()


def _saved_config(cfg_file: pathlib.Path) -> Config:
    try:
        return from_json(json.dumps(json.loads(cfg_file.read_text())["config"]))
    except (ValueError, KeyError, TypeError) as err:
        raise RunError(f"{cfg_file} is not a jaxnas config.json ({err}); choose another --out") from None


def _check_removable(run: pathlib.Path) -> None:
    if not run.exists():
        return
    why = _protected(run)
    if why:
        raise RunError(f"refusing to --overwrite {run}: {why}")
    if _entries(run) and not is_jaxnas_run(run):
        raise RunError(f"refusing to --overwrite {run}: it holds no jaxnas run (no {MARKER} written by "
                       "jaxnas); remove it yourself or choose another --out")


def remove_run(run: pathlib.Path) -> None:
    """Remove what jaxnas wrote into the run directory `run`; keep (and name) anything else, at
    any depth (a folder jaxnas owns that holds a user's file is kept with that file only)."""
    _check_removable(run)
    if not run.exists():
        return
    kept = []
    # the marker goes last: a kill midway leaves a folder that is still recognisably jaxnas's
    for entry in sorted(_entries(run), key=lambda e: e.name == MARKER):
        name = entry.name.removesuffix(".tmp")
        if name not in OWNED:
            kept.append(entry.name)
        elif name in OWNED_INSIDE and entry.is_dir() and not entry.is_symlink():
            kept += _remove_owned_inside(entry, OWNED_INSIDE[name])
        else:
            _remove(entry)
    if kept:
        warnings.warn(f"--overwrite kept {len(kept)} entries of {run} that jaxnas did not write: "
                      f"{', '.join(kept[:5])}{' ...' if len(kept) > 5 else ''}", stacklevel=2)


def _remove_owned_inside(folder: pathlib.Path, pattern: re.Pattern) -> list[str]:
    """Remove the entries of `folder` whose names `pattern` matches, and the folder once empty;
    the names (relative to the run directory) of the entries kept."""
    kept = []
    for entry in folder.iterdir():
        if pattern.fullmatch(entry.name):
            _remove(entry)
        else:
            kept.append(f"{folder.name}/{entry.name}")
    if not kept:
        folder.rmdir()
    return kept


def _remove(entry: pathlib.Path) -> None:
    """Remove a file, a link (not what it points to) or a folder with its contents."""
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry)
    else:
        entry.unlink()


def _entries(run: pathlib.Path) -> list[pathlib.Path]:
    """What a run directory holds, its lock file aside."""
    return [e for e in run.iterdir() if e.name != LOCK]


def lock_run_dir(run: pathlib.Path) -> None:
    """Hold an exclusive lock on `run` until `release_run_dir` (or this process ends): a second
    jaxnas process on the same run directory is refused, since two writers would interleave their
    score rows and checkpoints. Re-entrant within a process."""
    key = run.resolve()
    if key in _HELD or fcntl is None:
        return
    run.mkdir(parents=True, exist_ok=True)
    if (run / LOCK).exists() and not (run / LOCK).is_file():
        raise RunError(f"{run / LOCK} is not a file (jaxnas keeps its run-directory lock there); "
                       "remove it, then rerun")
    f = open(run / LOCK, "a+")  # noqa: SIM115 -- held open while the run lasts
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        pid = f.read().strip()
        f.close()
        raise RunError(f"{run} is being written by another jaxnas process{f' (pid {pid})' if pid else ''}; "
                       "wait for it or stop it, then rerun") from None
    f.seek(0)
    f.truncate()
    f.write(str(os.getpid()))
    f.flush()
    _HELD[key] = f


def release_run_dir(run: pathlib.Path) -> None:
    f = _HELD.pop(pathlib.Path(run).resolve(), None)
    if f is not None:
        f.close()  # closing the file releases the flock


def prepare_run_dir(run: pathlib.Path, cfg: Config, overwrite: bool) -> pathlib.Path:
    """Lock (`lock_run_dir`), create (or, with `overwrite`, clear) the run directory and record config
    and versions."""
    try:
        if overwrite:
            _check_removable(run)
        lock_run_dir(run)
        if overwrite:
            remove_run(run)
        run.mkdir(parents=True, exist_ok=True)
        cfg_file = run / MARKER
        if not cfg_file.exists():
            record = {"config": json.loads(cfg.to_json()), "versions": versions(), "argv": sys.argv}
            atomic_write(cfg_file, json.dumps(record, indent=2))
    except OSError as err:
        raise RunError(f"cannot write the run directory {run}: {err.strerror or err}") from None
    return run


def read_jsonl(path: pathlib.Path) -> list[dict]:
    """The rows of a JSON-lines file; a torn (unparsable) last line is dropped with a warning, an
    unparsable line before it is an error naming `file:line`."""
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    rows = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except ValueError:
            if i == len(lines):
                warnings.warn(f"{path}:{i}: dropped a torn last line (the run was killed mid-write)",
                              stacklevel=2)
                break
            raise RunError(f"{path}:{i}: not a JSON row; the file is damaged (remove the line to "
                           "resume)") from None
    return rows


def truncate_jsonl(path: pathlib.Path, step: int) -> None:
    """Keep only the rows of `path` at or before `step` (rows written after the checkpoint resumed)."""
    if path.exists():
        rows = [r for r in read_jsonl(path) if r.get("step", 0) <= step]
        atomic_write(path, "".join(json.dumps(r) + "\n" for r in rows))


def read_scores(path: pathlib.Path, repair: bool = False) -> tuple[list[str], list[dict]]:
    """(header, complete rows) of scores.csv (`index,arch,<one column per output>`); ([], []) while
    it has no whole header. A last row torn by a kill mid-write (no newline, missing fields or a
    half-written number) is skipped with a warning and, with `repair`, cut from the file so it is
    computed again; a malformed row before it is an error naming `file:line`."""
    if not path.exists():
        return [], []
    text = path.read_text()
    lines = text.splitlines(keepends=True)
    if not text or (len(lines) == 1 and not text.endswith("\n")):  # killed before the header was whole
        if repair and text:
            atomic_write(path, "")
        return [], []
    header = next(csv.reader(lines[:1]), [])
    rows, good_end = [], len(lines[0])
    for i, line in enumerate(lines[1:], 2):
        fields = next(csv.reader([line]), [])
        if line.endswith("\n") and _row_ok(fields, header):
            rows.append(dict(zip(header, fields)))
            good_end += len(line)
        elif i == len(lines):
            warnings.warn(f"{path}:{i}: dropped a torn last row (the run was killed mid-write)"
                          + ("; it is computed again" if repair else ""), stacklevel=2)
            if repair:
                atomic_write(path, text[:good_end])
        else:
            raise RunError(f"{path}:{i}: malformed row; the file is damaged (remove the row to resume)")
    return header, rows


def _row_ok(fields: list[str], header: list[str]) -> bool:
    if len(fields) != len(header) or not fields[0].isdigit():
        return False
    try:
        [float(v) for v in fields[2:]]
    except ValueError:
        return False
    return True


@contextlib.contextmanager
def stop_on_signals():
    """Turn SIGINT/SIGTERM into a flag a loop checks between steps or blocks (so saves are consistent);
    a second signal raises KeyboardInterrupt at once."""
    flag = {"stop": None}
    if threading_main():
        def handler(signum, _):
            if flag["stop"]:  # asked twice (the current step or block is slow): stop now
                raise KeyboardInterrupt
            flag["stop"] = signal.Signals(signum).name
        old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        if threading_main():
            for s, h in old.items():
                signal.signal(s, h)


def threading_main() -> bool:
    return threading.current_thread() is threading.main_thread()

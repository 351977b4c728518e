"""`jaxnas score`: training-free scores of many architectures, resumable.

Scoring writes RUN/scores.csv block by block (a block = `block_size` candidates, one jitted call),
so a killed run loses at most one block: the same command resumes after the last complete row (a
row torn by a kill mid-write is dropped and computed again). SIGINT/SIGTERM stop the run between
blocks. With `proxy.rule`, RUN/aggregate.csv holds the rule's aggregate of every architecture (ranks
are over all scored architectures, so it is written at the end). With a benchmark table,
RUN/summary.json gives each output's Kendall tau / Spearman against it.
"""
from __future__ import annotations

import csv
import io
import json
import pathlib
import time

import numpy as np

from jaxnas import data as data_lib
from jaxnas import registry, search, spaces
from jaxnas.bench import dataset_column, rank_summary
from jaxnas.config import Config
from jaxnas.proxies.combine import load_rule
from jaxnas.proxies.scoring import PROXIES, make_scorer, parse_proxies, proxy_batches
from jaxnas.report import normalization, progress_bar
from jaxnas.rundir import (
    Interrupted,
    RunError,
    append_text,
    atomic_write,
    check_run_dir,
    prepare_run_dir,
    read_scores,
    release_run_dir,
    stop_on_signals,
)
from jaxnas.spaces import has

HOST_BLOCK = 8  # candidates per written block when gradients run on the host (seconds each)


def select_archs(spec: str, seed: int, space=None) -> np.ndarray:
    """Candidates of `space` (default: the registry's default space) for `jaxnas score --archs`:
    "all" (enumeration order), N (a seeded sample of N distinct architectures, in that order) or a
    file with one architecture string per line."""
    space = space or spaces.get(registry.DEFAULT_SPACE)
    spec = str(spec).strip()
    per_line = "a file with one architecture string per line"
    if spec == "all" or spec.lstrip("+-").isdigit():
        if not has(space, "enumerate"):
            raise ValueError(f"--archs {spec}: space {space.name!r} does not list its architectures; give "
                             f"{per_line}")
        if spec == "all":
            return np.asarray(space.enumerate())
        n = int(spec)
        if not 1 <= n <= space.size:
            raise ValueError(f"--archs N must be in [1, {space.size}], got {spec}")
        idx = np.sort(np.random.default_rng(seed).choice(space.size, n, replace=False))
        return np.asarray(search.take(space.enumerate(), idx))
    if not spec:
        raise ValueError(f"--archs is empty; give all, a number N, or {per_line}")
    path = pathlib.Path(spec).expanduser()
    if path.is_dir():
        raise ValueError(f"--archs {spec} is a directory; expected {per_line}")
    if not path.is_file():
        raise ValueError(f"--archs {spec}: no such file (--archs takes all, a number N, or {per_line})")
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: a byte-order mark is not part of line 1
    except UnicodeDecodeError:
        raise ValueError(f"--archs {spec} is not a UTF-8 text file; expected one architecture string per "
                         "line") from None
    archs = []
    for i, line in enumerate(text.splitlines(), 1):
        if line.strip() and not line.lstrip().startswith("#"):
            try:
                archs.append(space.from_string(line.strip()))
            except ValueError as err:
                raise ValueError(f"{path}:{i}: {err}") from None
    if not archs:
        raise ValueError(f"{path} holds no architecture strings")
    return np.stack(archs)


def score_proxies(cfg: Config, rule=None) -> list[str]:
    """The proxies `jaxnas score` computes: `proxy.names`, then the metrics of `proxy.rule` (`rule`
    when already loaded), each once."""
    rule = rule or (load_rule(cfg.proxy.rule) if cfg.proxy.rule else None)
    return list(dict.fromkeys(parse_proxies(",".join([cfg.proxy.names, *(rule.metrics if rule else ())]))))


def score(cfg: Config, run_dir, *, overwrite=False, bench_table=None, progress=True, block_size=64,
          dataset=None) -> dict:
    """Score the architectures `cfg.proxy.archs` with the proxies `cfg.proxy.names` (and the metrics
    of `cfg.proxy.rule`, whose aggregate over all of them goes to aggregate.csv); resumable."""
    rule = load_rule(cfg.proxy.rule) if cfg.proxy.rule else None
    proxies = score_proxies(cfg, rule)
    archs = select_archs(cfg.proxy.archs, cfg.seed, spaces.get(cfg.space, cfg))
    run = check_run_dir(run_dir, cfg, overwrite, finished_file="summary.json")
    ds = dataset or data_lib.load(cfg.data, max_per_class=cfg.max_per_class)
    (x, y), train = proxy_batches(ds, cfg)
    scorer = make_scorer(cfg, proxies, ds.num_classes)
    run = prepare_run_dir(run, cfg, overwrite)
    try:
        return _score(cfg, run, archs, proxies, rule, scorer, ds, x, y, train, bench_table, progress,
                      block_size)
    finally:
        release_run_dir(run)


def _score(cfg, run, archs, proxies, rule, scorer, ds, x, y, train, bench_table, progress,
           block_size) -> dict:
    out_csv = run / "scores.csv"
    found, done = read_scores(out_csv, repair=True)
    space = spaces.get(cfg.space, cfg)
    strings = [space.to_string(a) for a in archs]
    indices = np.asarray(space.hash(archs))  # NB201: the benchmark index
    if [r["arch"] for r in done] != strings[:len(done)]:
        raise RunError(f"{out_csv} does not match the candidates of this config; use --overwrite")
    t0, bar = time.time(), progress_bar(len(archs), len(done), progress, f"score {cfg.proxy.names}",
                                        unit="arch")
    columns = None
    prev = json.loads((run / "progress.json").read_text()) if (run / "progress.json").exists() else {}
    elapsed0 = float(prev.get("elapsed_s", 0.0)) if done else 0.0
    if scorer.host:  # one candidate at a time anyway: small blocks, nothing padded
        block_size = min(block_size, HOST_BLOCK)
    with stop_on_signals() as stop:
        for start in range(len(done), len(archs), block_size):
            block = archs[start:start + block_size]
            # a fixed block shape: one compilation for every block (host fast training: one candidate a
            # program)
            pad = 0 if scorer.host else block_size - len(block)
            padded = np.concatenate([block, np.repeat(block[-1:], pad, 0)]) if pad else block
            res = scorer(padded, x, y, *train)
            if columns is None:  # the first block: rows already written must have these columns
                columns = _columns(proxies, res)
                header = ["index", "arch"] + columns
                if found and found != header:
                    raise RunError(f"{out_csv} has columns {found}, this version writes {header}; "
                                   "use --overwrite (or a new --out)")
                if not found:
                    append_text(out_csv, _csv_line(header))
            append_text(out_csv, "".join(_csv_line([int(indices[i]), strings[i]]
                                                   + [repr(float(res[c][i - start])) for c in columns])
                                         for i in range(start, start + len(block))))
            atomic_write(run / "progress.json", json.dumps({"elapsed_s": elapsed0 + time.time() - t0}))
            bar.update(len(block))
            bar.set_postfix(arch_s=f"{(start + len(block) - len(done)) / max(time.time() - t0, 1e-9):.2f}")
            if stop["stop"] and start + block_size < len(archs):
                bar.close()
                raise Interrupted(f"{stop['stop']} after {start + len(block)} of {len(archs)} architectures; "
                                  f"scores so far are in {out_csv}; run the same command to resume")
    bar.close()
    _, rows = read_scores(out_csv)
    wall = elapsed0 + time.time() - t0
    summary = {"n": len(rows), "proxies": proxies, "wall_time_s": round(wall, 2),
               "archs_per_s": round(len(rows) / max(wall, 1e-9), 3), "data": data_lib.resolve(cfg.data),
               "normalization": normalization(ds), "seed": cfg.seed}
    columns = {k: np.array([float(r[k]) for r in rows]) for k in rows[0] if k not in ("index", "arch")}
    if rule is not None:
        aggregate = rule({m: columns[PROXIES[m][1]] for m in rule.metrics})
        atomic_write(run / "aggregate.csv", "".join(
            _csv_line(f) for f in [["index", "arch", "aggregate"]] + [[r["index"], r["arch"], repr(float(v))]
                                                                      for r, v in zip(rows, aggregate)]))
        best = int(np.argmax(aggregate))
        summary["rule"] = {**rule.to_json(), "spec": cfg.proxy.rule,
                           "best": {"arch": rows[best]["arch"], "aggregate": float(aggregate[best])}}
        columns["aggregate"] = aggregate
    if bench_table is not None:
        column = dataset_column(ds.num_classes) or cfg.data
        truth = bench_table.values([r["arch"] for r in rows], column)
        summary["bench"] = {"table": str(bench_table.path), "column": bench_table.resolve(column),
                            "correlation": {}}
        for c, values in columns.items():
            summary["bench"]["correlation"][c] = rank_summary(values, truth)
    atomic_write(run / "summary.json", json.dumps(summary, indent=2))
    return summary


def _columns(proxies, res) -> list[str]:
    """Output columns, each named after its output: the requested proxies first, then any other
    outputs computed on the way (DAS's atomic metrics)."""
    keys = [PROXIES[p][1] for p in proxies]
    return keys + sorted(k for k in res if k not in keys)


def _csv_line(fields) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(fields)
    return buf.getvalue()

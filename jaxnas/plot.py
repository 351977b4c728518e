"""`jaxnas plot RUN`: PNG figures of a run directory, written to RUN/plots/.

A search/train run (metrics.jsonl) gives curves.png (loss, accuracy, learning rate vs step) and,
when the method logs per-epoch numbers, epoch_metrics.png. A score run (scores.csv) gives
scores.png: each proxy against a benchmark table's test accuracy, or each proxy's histogram
without a table. A result holding candidate accuracy histograms (PGNAS) gives candidates.png. Runs may still
be going or may have crashed, so a torn last line is skipped. Figures are drawn on `matplotlib.figure.Figure`,
never pyplot, so importing this module leaves a notebook's backend alone.
"""
from __future__ import annotations

import json
import math
import os
import pathlib

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from jaxnas import rundir
from jaxnas.bench import kendall_tau
from jaxnas.rundir import RunError, read_jsonl

# Short data names whose NB201 table column differs from the default cifar10.
_DATASETS = ("cifar10", "cifar100", "imagenet16-120")


class PlotError(ValueError):
    """A run directory cannot be plotted; the message names the file or folder at fault."""


def plot_run(run_dir, bench_table=None) -> list[pathlib.Path]:
    """Write PNGs into RUN/plots/ and return their paths.

    `bench_table` (from `jaxnas.bench.load_table`) turns a score run's histograms into score vs
    test-accuracy scatters; a search run ignores it.
    """
    run = pathlib.Path(run_dir)
    if not run.is_dir():
        raise PlotError(f"{run} is not a folder" if run.exists() else f"{run} does not exist")
    metrics, scores, result = run / "metrics.jsonl", run / "scores.csv", run / "result.json"
    if not metrics.is_file() and not scores.is_file():
        raise PlotError(_nothing_to_plot(run))
    out = run / "plots"
    if out.exists() and not out.is_dir():
        raise PlotError(f"{out} is a file; jaxnas plot writes its PNGs into that folder: move the file away")
    paths = []
    if metrics.is_file():
        paths += _plot_metrics(metrics, out)
    if scores.is_file():
        paths += _plot_scores(scores, out, bench_table, _data_name(run))
    if result.is_file():
        paths += _plot_histograms(result, out)
    if not paths:
        raise PlotError(_nothing_to_plot(run))
    return paths


def _nothing_to_plot(run: pathlib.Path) -> str:
    """Why a folder gives no figure: not a run, a run that has not logged yet, or a run with no
    curves (a training-free search writes one result.json)."""
    if not rundir.is_jaxnas_run(run):
        inner = sorted(str(d) for d in run.iterdir() if d.is_dir() and rundir.is_jaxnas_run(d))
        if inner:  # e.g. the demo's folder of two runs
            return f"{run} is a folder of runs; plot one of them: {', '.join(inner[:4])}"
        return f"{run} holds no jaxnas run (no config.json written by jaxnas, no metrics.jsonl or scores.csv)"
    if (run / "result.json").is_file():
        return (f"{run} is a finished run with nothing to plot: it trained nothing (a training-free search "
                "writes its scores into result.json, no curves); `jaxnas score` runs give score plots")
    return f"{run} is a jaxnas run that has written no metrics yet; plot it once its first steps are logged"


def _plot_histograms(path: pathlib.Path, out: pathlib.Path) -> list[pathlib.Path]:
    """candidates.png from a result's accuracy histograms (entries holding "histogram" and "bins",
    e.g. PGNAS's sampled candidates and its fixed-rate baseline); nothing if it has none."""
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    hists = {k: v for k, v in result.items() if isinstance(v, dict) and {"histogram", "bins"} <= set(v)}
    if not hists:
        return []
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    for name, h in hists.items():
        label = (f"{name}: mean {h['mean']:.2f}, std {h['std']:.2f}, max {h['max']:.2f}" if "mean" in h
                 else name)
        ax.stairs(h["histogram"], h["bins"], label=label)
    ax.set(xlabel="validation accuracy (%)", ylabel="candidates", title="candidate accuracies")
    ax.legend(fontsize=8)
    return [_save(fig, out / "candidates.png")]


# --- search / train runs --------------------------------------------------------------------------

def read_metrics(path: pathlib.Path) -> list[dict]:
    """The rows of metrics.jsonl (`rundir.read_jsonl`: a torn last line is dropped)."""
    try:
        rows = read_jsonl(path)
    except RunError as err:
        raise PlotError(str(err)) from None
    bad = next((i for i, r in enumerate(rows, 1) if not isinstance(r, dict)), None)
    if bad is not None:
        raise PlotError(f"{path}: row {bad} is not a JSON object")
    return rows


def _plot_metrics(path: pathlib.Path, out: pathlib.Path) -> list[pathlib.Path]:
    rows = read_metrics(path)
    train = [r for r in rows if "kind" not in r]
    if not train:
        raise PlotError(f"{path} has no training rows yet; nothing to plot yet")
    fig = Figure(figsize=(15, 4), layout="constrained")
    panels = (("loss", "training loss"), ("acc", "training accuracy (%)"), ("lr", "learning rate"))
    for ax, (key, label) in zip(fig.subplots(1, 3), panels):
        steps, values = _series(train, "step", key)
        ax.plot(steps, values, lw=1)
        ax.set(xlabel="step", ylabel=label, title=label if steps else f"{label}: not logged")
        ax.grid(alpha=0.3)
    fig.suptitle(path.parent.name)
    paths = [_save(fig, out / "curves.png")]

    ends = [r for r in rows if r.get("kind") == "epoch_end"]
    keys = sorted({k for r in ends for k, v in r.items() if k not in ("epoch", "step") and _is_number(v)})
    if keys:
        fig = _grid(len(keys), size=(5, 3.5))
        for ax, key in zip(fig.axes, keys):
            epochs, values = _series(ends, "epoch", key)
            ax.plot(epochs, values, marker="o", ms=3, lw=1)
            ax.set(xlabel="epoch", title=key)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
        fig.suptitle(f"{path.parent.name}: per-epoch metrics")
        paths.append(_save(fig, out / "epoch_metrics.png"))
    fronts = [r for r in rows if r.get("kind") == "round_end" and r.get("front_acc")]
    if fronts:
        paths.append(_plot_fronts(fronts, path.parent.name, out / "fronts.png"))
    return paths


def _plot_fronts(rows: list[dict], name: str, path: pathlib.Path) -> pathlib.Path:
    """Each round end's scored candidates and its Pareto front over (cost, accuracy) (NSE)."""
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    for r in rows:
        color = f"C{int(r.get('round', 0)) % 10}"
        ax.scatter(r.get("scored_macs", []), r.get("scored_acc", []), s=8, alpha=0.35, color=color)
        order = np.argsort(r["front_macs"])
        ax.plot(np.asarray(r["front_macs"])[order], np.asarray(r["front_acc"])[order], marker="o", ms=4,
                color=color, label=f"round {int(r.get('round', 0)) + 1}: front of {len(order)}")
    ax.set(xlabel="cost (M MACs / FLOPs)", ylabel="held-out accuracy (%)", title=f"{name}: Pareto fronts")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _series(rows: list[dict], x: str, y: str) -> tuple[list, list]:
    """(x, y) over the rows where both are numbers."""
    pairs = [(r[x], r[y]) for r in rows if _is_number(r.get(x)) and _is_number(r.get(y))]
    return [p[0] for p in pairs], [p[1] for p in pairs]


# --- score runs -----------------------------------------------------------------------------------

def read_scores(path: pathlib.Path) -> tuple[list[str], list[str], np.ndarray]:
    """(proxy columns, NB201 strings, float64[rows, columns]) of scores.csv (`rundir.read_scores`:
    a torn last row is skipped, the file is left as it is)."""
    try:
        header, rows = rundir.read_scores(path)
    except RunError as err:
        raise PlotError(str(err)) from None
    if header[:2] != ["index", "arch"] or len(header) < 3:
        raise PlotError(f"{path}: expected a header index,arch,<proxy columns...>")
    if not rows:
        raise PlotError(f"{path} has no scored architectures yet; nothing to plot yet")
    values = np.array([[float(r[c]) for c in header[2:]] for r in rows], np.float64)
    return header[2:], [r["arch"] for r in rows], values


def _data_name(run: pathlib.Path) -> str:
    """The table column the run was judged against: summary.json's (written by `jaxnas score` with a
    table), else the NB201 alias of the dataset named in config.json, else cifar10."""
    try:
        return json.loads((run / "summary.json").read_text())["bench"]["column"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    config = run / "config.json"
    if not config.is_file():
        return "cifar10"
    try:
        data = str(json.loads(config.read_text())["config"].get("data", ""))
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
        raise PlotError(f"{config} is not a jaxnas config.json") from None
    name = os.path.basename(data.rstrip("/")).lower()
    return name if name in _DATASETS else "cifar10"


def _plot_scores(path: pathlib.Path, out: pathlib.Path, table, data: str) -> list[pathlib.Path]:
    columns, archs, values = read_scores(path)
    fig = _grid(len(columns), size=(5, 4))
    if table is None:
        for ax, name, s in zip(fig.axes, columns, values.T):
            finite = s[np.isfinite(s)]
            if finite.size:
                ax.hist(finite, bins=50)
            else:
                _no_values(ax)
            ax.set(xlabel=name, ylabel="architectures", title=_count_title(name, finite.size, s.size))
        fig.suptitle(f"{path.parent.name}: {len(archs)} architectures (no benchmark table)")
        return [_save(fig, out / "scores.png")]

    try:
        column = table.resolve(data)
    except ValueError:
        column = table.columns[0]  # a custom table without the NB201 alias columns
    try:
        truth = table.values(archs, column)
    except ValueError as err:
        raise PlotError(f"{path}: {err}") from None
    for ax, name, s in zip(fig.axes, columns, values.T):
        finite = np.isfinite(s)
        ax.scatter(s[finite], truth[finite], s=4, alpha=0.4, linewidths=0, rasterized=True)
        if not finite.any():
            _no_values(ax)
        tau = kendall_tau(s, truth)  # as summary.json: all non-NaN rows, -inf ranked last
        ax.set(xlabel=name, ylabel=f"{column} (%)",
               title=f"{_count_title(name, int(finite.sum()), s.size)}  Kendall τ = {tau:.3f}")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{path.parent.name}: {len(archs)} architectures vs {os.path.basename(str(table.path))}")
    return [_save(fig, out / "scores.png")]


def _no_values(ax) -> None:
    ax.text(0.5, 0.5, "no finite values", ha="center", transform=ax.transAxes)


def _count_title(name: str, shown: int, total: int) -> str:
    return name if shown == total else f"{name} ({total - shown} non-finite not shown)"


# --- figures --------------------------------------------------------------------------------------

def _grid(n: int, size: tuple[float, float]) -> Figure:
    """A figure with `n` panels, at most 3 a row (unused grid cells removed)."""
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(size[0] * cols, size[1] * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[n:]:
        fig.delaxes(ax)
    return fig


def _save(fig: Figure, path: pathlib.Path) -> pathlib.Path:
    assert path.name in rundir.PLOT_FILES, path  # --overwrite removes only the plots it knows
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path

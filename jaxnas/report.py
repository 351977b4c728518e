"""What a run writes and shows: result.json, the record of the images' normalisation, JSON-safe
values, progress bars. Shared by the search loop and the scoring driver."""
from __future__ import annotations

import json
import pathlib

import jax
import numpy as np
from tqdm import tqdm

from jaxnas import data as data_lib
from jaxnas.rundir import atomic_write
from jaxnas.spaces.base import has


def write_result(run_dir, cfg, space, arch, extra: dict, wall: float, bench_table=None, steps: int = 0,
                 dataset=None) -> dict:
    """result.json of any search: the architecture (`space.to_string`), its benchmark index when
    the space has one, run facts (the data and its normalisation), method extras and, with a
    benchmark table, the table's values for the architecture."""
    arch = jax.tree.map(np.asarray, arch)
    out = {"arch": space.to_string(arch)}
    if has(space, "bench_index"):
        out["index"] = int(space.bench_index(arch))
    out.update({"method": cfg.method, "seed": cfg.seed, "wall_time_s": round(wall, 2), "steps": steps,
                "data": data_lib.resolve(cfg.data)})
    if dataset is not None:
        out["normalization"] = normalization(dataset)
    out.update(jsonable(extra))
    if bench_table is not None:
        out["bench"] = bench_table.lookup(out["arch"])
    atomic_write(pathlib.Path(run_dir) / "result.json", json.dumps(out, indent=2))
    return out


def normalization(dataset) -> dict:
    """How the images were normalised: per-channel mean/std in [0, 1] units and where they came from."""
    return {"mean": np.round(np.asarray(dataset.mean, np.float64), 6).tolist(),
            "std": np.round(np.asarray(dataset.std, np.float64), 6).tolist(), "source": dataset.norm_source}


def jsonable(obj):
    """Arrays and numpy scalars as plain lists / numbers, recursively."""
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (np.ndarray, jax.Array)):
        a = np.asarray(obj)
        return a.item() if a.ndim == 0 else a.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


class _NoBar:
    def update(self, n):
        pass

    def set_postfix(self, **kw):
        pass

    def close(self):
        pass


def progress_bar(total, initial, enabled, desc, unit="step"):
    """A tqdm bar, or a silent stand-in when progress is off."""
    if not enabled:
        return _NoBar()
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True)

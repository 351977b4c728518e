"""Rough size and duration of a run before it starts (`--print-config`, and the warning a long
CPU run prints): steps from the dataset's size, seconds from a per-step cost model.

The cost model is fitted to 2-core CPU measurements (benchmarks/BENCHMARKS.md: the eager weight
step at C=16, N=5, batch 64; NASWOT at 128 images; candidate ranking) and scales with the space's
`relative_cost` (NB201: cells x channels²) and the batch; it is meant to tell minutes from days,
not to time a run. There is no GPU model. A training run's seconds come from its method's class,
`estimate_seconds(cfg, n_train)` (`Method`'s default: `supernet_seconds`, weight steps and one
ranking; SETN, PGNAS and `train` give their own), so this module names no method or space.
"""
from __future__ import annotations

import os
import pathlib
import tarfile
import zlib

from jaxnas import spaces
from jaxnas.config import Config
from jaxnas.data.pipeline import weights_size
from jaxnas.data.sources import IMAGE_SUFFIXES

# (training images, classes) of the named datasets
KNOWN_SIZES = {"cifar10": (50000, 10), "cifar100": (50000, 100), "imagenet16-120": (151700, 120)}
# 2-core CPU, C=16, N=5 (BENCHMARKS.md sections 1, 3, 5, 6)
WEIGHT_STEP_S = 1.2        # one eager single-path weight step, batch 64
CANDIDATE_S = 1.2          # ranking one candidate on 512 validation images
FORWARD_PROXY_S = 0.25     # NASWOT / DAS, one candidate, 128 images
GRADIENT_PROXY_S = 1.5     # synflow / snip / grad_norm / jacov through the eager kernels
AZ_S = {False: 0.25, True: 1.5}  # AZ-NAS's components: traced forward (BENCHMARKS.md section 12) /
                                 # with trainability's eager pullbacks
ZICO_S = 3.0               # ZiCo: two half-batch loss gradients
COST_PROXIES = ("params", "flops", "layers")  # from the cost model: no forward pass
FAST_TRAIN_STEP_S = 0.6    # one fast-training step of one candidate, batch 64
MAX_LISTED_ARCHIVE = 1 << 30  # list archives up to 1 GiB to count their images


def train_images(cfg: Config) -> int | None:
    """Training images the run will load (None when that needs decoding the data first)."""
    spec = os.fspath(cfg.data)
    if spec in KNOWN_SIZES:
        n, classes = KNOWN_SIZES[spec]
        return n if cfg.max_per_class is None else min(n, cfg.max_per_class * classes)
    per_class = _count_per_class(pathlib.Path(spec).expanduser())
    if per_class is None:
        return None
    return sum(c if cfg.max_per_class is None else min(c, cfg.max_per_class) for c in per_class.values())


def _count_per_class(path: pathlib.Path) -> dict | None:
    counts = {}
    if path.is_dir():
        for cls in (path / "train").glob("*"):
            if cls.is_dir():
                counts[cls.name] = sum(1 for f in cls.iterdir() if f.name.lower().endswith(IMAGE_SUFFIXES))
        return counts or None
    if path.is_file() and path.stat().st_size <= MAX_LISTED_ARCHIVE:
        try:
            with tarfile.open(path) as tf:
                for m in tf:
                    parts = [p for p in m.name.split("/") if p not in ("", ".")]
                    if "train" in parts[:-2] and m.isfile() and m.name.lower().endswith(IMAGE_SUFFIXES):
                        cls = parts[parts.index("train") + 1]
                        counts[cls] = counts.get(cls, 0) + 1
        except (OSError, EOFError, tarfile.TarError, zlib.error):  # the loader reports damage
            return None
        return counts or None
    return None


def _size(cfg: Config) -> float:
    """Cost of a network relative to the space's benchmarked size (with a floor for per-call
    overhead)."""
    return max(0.05, spaces.get(cfg.space, cfg).relative_cost(cfg))


def search_steps(cfg: Config, n_train: int, split: str = "search") -> int:
    """Training steps of the whole run: every round's epochs over the weights' part of the search
    split (`split="full"`: over every training image, `jaxnas train`)."""
    weights = n_train if split == "full" else weights_size(n_train, cfg.train.held_out)
    per_epoch = weights // cfg.train.batch_size
    if cfg.train.steps_per_epoch:
        per_epoch = min(per_epoch, cfg.train.steps_per_epoch)
    return per_epoch * cfg.train.epochs * cfg.train.rounds


def supernet_seconds(cfg: Config, n_train: int, split: str = "search", extra_step_s: float = 0.0,
                     rankings: int = 1) -> float:
    """Seconds of a run of single-path weight steps (each with `extra_step_s` more at the benchmarked
    size, e.g. an architecture step) and `rankings` rankings of `eval.select_num` candidates."""
    per_step = (WEIGHT_STEP_S + extra_step_s) * _size(cfg) * cfg.train.batch_size / 64
    ranking = cfg.eval.select_num * CANDIDATE_S * _size(cfg) * cfg.eval.batch_size / 512
    return search_steps(cfg, n_train, split) * per_step + rankings * ranking


def estimate(cfg: Config, proxies: list[str] | None = None, n_archs: int | None = None, method=None) -> dict:
    """Size and seconds of a run: a training run of `method` (its class: `steps`, and seconds from
    its `estimate_seconds(cfg, n_train)`), or with `proxies` the training-free scoring of `n_archs`
    candidates (`architectures`); `seconds` None where the size is unknown."""
    if proxies is not None:
        names = set(proxies)
        az = {n for n in names if n.startswith("az_")}
        per = FORWARD_PROXY_S if {"naswot", "das"} & names else 0.0
        per += AZ_S["az_trainability" in az] if az else 0.0
        per += ZICO_S if "zico" in names else 0.0
        per += GRADIENT_PROXY_S * len(names - {"naswot", "das", "zico", *az, *COST_PROXIES})
        per += FAST_TRAIN_STEP_S * cfg.proxy.fast_train_steps * cfg.proxy.fast_train_batch_size / 64
        per *= _size(cfg) * cfg.proxy.batch_size / 128
        fine = 0.0 if cfg.method == "score" else (  # a search's fine-ranking
            cfg.proxy.fine_rank_top * cfg.proxy.fine_rank_steps * FAST_TRAIN_STEP_S * _size(cfg)
            * cfg.proxy.fast_train_batch_size / 64)
        return {"architectures": n_archs, "seconds": n_archs * per + fine, "basis": "per candidate"}
    n_train = train_images(cfg)
    if n_train is None:
        return {"steps": None, "seconds": None, "basis": "the dataset's size is known once it is decoded"}
    return {"steps": search_steps(cfg, n_train, method.split), "train_images": n_train,
            "seconds": method.estimate_seconds(cfg, n_train), "basis": "per step"}


def describe(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"~{seconds / size:.1f} {unit}"
    return f"~{seconds:.0f} s"

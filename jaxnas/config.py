"""Run configuration in sections: what to run (top level), then one frozen dataclass per concern,
each validating its own fields. Presets are named after the protocol they reproduce.

    space, method, data, max_per_class, seed, arch   what to run
    nb201   the NB201 networks: width, depth, BatchNorm, single-path formulation
    hybrid  PGNAS's hybrid multi-kernel ResNet (`--space hybrid`): width, blocks per stage
    train   weight training: epochs, rounds, batch, SGD, augmentation
    eval    candidate evaluation: how many, on which batch, BatchNorm mode, rank probe
    setn    SETN's evaluator (Adam on alpha) and its candidates
    abs     ABS's search-space shrinking around a base method (`--method abs`)
    pgnas   PGNAS's concrete-dropout gates, their regulariser and candidate sampling
    proxy   training-free scores (`jaxnas score`, `jaxnas search --method naswot|das|...`)
    run     bookkeeping: checkpoints, logging

Overrides are dotted, `section.field=value` (`train.epochs=20`, `setn.select=sample`), or
`field=value` for the top level. An unknown or renamed field is a one-line error naming the right
one. `paper` presets follow the NB201 benchmark protocol (Dong & Yang, ICLR 2020, and xautodl's
exps/NAS-Bench-201-algos scripts); `tiny` presets are CPU-sized variants that finish in minutes on
2 cores.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import math
import typing

IMPLS = ("auto", "eager", "merged", "switch", "mask")  # single-path formulations (jaxnas.backend)


def _check_positive(section, names):
    for name in names:
        if getattr(section, name) < 1:
            raise ValueError(f"{section.NAME}.{name} must be >= 1, got {getattr(section, name)}")


def _check_choice(section, name, choices):
    if getattr(section, name) not in choices:
        raise ValueError(f"{section.NAME}.{name} must be one of {', '.join(choices)}, got "
                         f"{getattr(section, name)!r}")


@dataclasses.dataclass(frozen=True)
class NB201:
    NAME = "nb201"
    C: int = 16                        # channels of the first stage
    N: int = 5                         # cells per stage
    affine: bool = False               # affine BN in the search cells (reference: off)
    track_running_stats: bool = False  # running BN statistics in the search cells (NB201 scripts: BN=0)
    single_path_impl: str = "auto"     # eager | merged | switch | mask | auto (fastest exact one per backend)

    def check(self):
        _check_positive(self, ("C", "N"))
        _check_choice(self, "single_path_impl", IMPLS)


@dataclasses.dataclass(frozen=True)
class Hybrid:
    NAME = "hybrid"
    C: int = 16                        # channels of the first stage (a multiple of the 4 kernel branches)
    blocks: int = 4                    # residual blocks per stage (the supplement's SupNet-M: 4)

    def check(self):
        _check_positive(self, ("C", "blocks"))
        if self.C % 4:
            raise ValueError("hybrid.C divides its channels among 4 kernel branches: a multiple of 4, got "
                             f"{self.C}")


@dataclasses.dataclass(frozen=True)
class Train:
    NAME = "train"
    epochs: int = 250                  # passes over the weights half of the search split (per round)
    rounds: int = 1                    # rounds of `epochs` epochs (methods that evolve their space per round)
    batch_size: int = 64               # global batch, sharded over devices
    lr: float = 0.025                  # peak SGD learning rate (cosine schedule per step)
    lr_min: float = 0.001              # final learning rate
    momentum: float = 0.9              # SGD momentum
    nesterov: bool = True              # Nesterov momentum
    weight_decay: float = 5e-4         # L2 weight decay (PyTorch SGD style, added to the gradient)
    grad_clip: float = 5.0             # global gradient-norm clip (reference: clip_grad_norm_ 5); 0 = off
    decay_unsampled: bool = False      # momentum+decay for ops not sampled this step (PyTorch<2.0 zero_grad)
    augment: bool = True               # pad-4 random crop + horizontal flip
    steps_per_epoch: int | None = None  # cap on steps per epoch (None: the whole weights half)
    schedule: str = "cosine"           # learning rate: cosine (one cosine over every round, per step) |
                                       # cosine_per_round (restarts each round, NSE)
    warmup_epochs: float = 0.0         # linear warmup at the start of the schedule (of each round with
                                       # cosine_per_round), then the cosine over the remaining steps
    held_out: float = 0.5              # search split: the fraction of the training set held out from the
                                       # weights for architecture steps and ranking (NB201: half; SMASH: 0.1)

    def check(self):
        _check_positive(self, ("epochs", "rounds", "batch_size"))
        _check_choice(self, "schedule", ("cosine", "cosine_per_round"))
        if self.warmup_epochs < 0:
            raise ValueError(f"train.warmup_epochs must be >= 0, got {self.warmup_epochs}")
        if not 0 < self.held_out < 1:
            raise ValueError(f"train.held_out is a fraction in (0, 1), got {self.held_out}")
        if self.lr <= 0 or self.lr_min < 0:
            raise ValueError("train.lr must be > 0 and train.lr_min >= 0")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise ValueError(f"train.steps_per_epoch must be >= 1, got {self.steps_per_epoch}")


@dataclasses.dataclass(frozen=True)
class Eval:
    NAME = "eval"
    select_num: int = 100              # candidates evaluated at the end
    batch_size: int = 512              # images in the validation batch candidates are ranked on
    chunk_size: int = 0                # candidates vmapped at once (bounds memory); 0: 1 for candidate
                                       # evaluation; for proxies 1 on CPU, 16 on GPU (backend.eval_chunk_size)
    bn: str = "batch"                  # BN during evaluation: batch | running | recal
    recal_batches: int = 4             # eval.bn=recal: training batches BN statistics are recomputed on
    rank_probe: int = 0                # at the end, rank this many fixed architectures (same set for every
                                       # seed and method) with the shared weights; result.json reports their
                                       # accuracies and, with a bench table, Kendall tau / Spearman

    def check(self):
        _check_positive(self, ("select_num", "batch_size", "recal_batches"))
        _check_choice(self, "bn", ("batch", "running", "recal"))
        if self.chunk_size < 0:
            raise ValueError(f"eval.chunk_size must be >= 0 (0: automatic), got {self.chunk_size}")
        if self.rank_probe < 0:  # its upper bound is the space's size (Method.check)
            raise ValueError(f"eval.rank_probe must be >= 0, got {self.rank_probe}")


@dataclasses.dataclass(frozen=True)
class SETN:
    NAME = "setn"
    select: str = "topk"               # candidates: topk (highest log-probability) | sample (from alpha)
    arch_lr: float = 3e-4              # Adam learning rate of alpha
    arch_beta1: float = 0.5            # Adam beta1
    arch_beta2: float = 0.999          # Adam beta2
    arch_weight_decay: float = 1e-3    # Adam L2 weight decay

    def check(self):
        _check_choice(self, "select", ("topk", "sample"))


@dataclasses.dataclass(frozen=True)
class ABS:
    NAME = "abs"
    base: str = "rsps"                 # the supernet method ABS wraps: rsps | setn
    metric: str = "angle"              # operator score: angle (the paper) | acc | magnitude (SETN's alpha)
    # oneshot (NB201 study: drop drop_num once) | progressive (ImageNet code)
    schedule: str = "oneshot"
    shrink_after: int = 0              # epochs before the (first) shrink; 0: half of the run's epochs
    drop_num: int = 20                 # oneshot: operators dropped (NB201: 20 of 30)
    per_stage: int = 5                 # progressive: operators dropped per stage
    stage_epochs: int = 1              # progressive: epochs between stages
    min_size: int = 16                 # progressive: stop once the space has <= this many architectures
    # progressive: replace theta0 once more than this many are dropped (0: never)
    reset_after: int = 0
    acc_archs: int = 300               # metric=acc: seeded architectures evaluated with the shared weights

    def check(self):
        _check_choice(self, "base", ("rsps", "setn"))
        _check_choice(self, "metric", ("angle", "acc", "magnitude"))
        _check_choice(self, "schedule", ("oneshot", "progressive"))
        _check_positive(self, ("drop_num", "per_stage", "stage_epochs", "min_size", "acc_archs"))
        if self.shrink_after < 0 or self.reset_after < 0:
            raise ValueError("abs.shrink_after and abs.reset_after must be >= 0")
        if self.metric == "magnitude" and self.base != "setn":
            raise ValueError("abs.metric=magnitude scores operators by SETN's alpha: set abs.base=setn")


@dataclasses.dataclass(frozen=True)
class PGNAS:
    NAME = "pgnas"
    length_scale_sq: float = 50.0      # l^2 of the weight prior (supplement, SupNet-M on CIFAR-10: 50)
    n_train: float = 0.0               # effective training-set size N; 0: 10x the training images (the
                                       # supplement's 5e5 for CIFAR-10's 5e4, "because of augmentation")
    tau: float = 0.2                   # concrete temperature (supplement)
    p_init: float = 0.1                # initial drop probability (supplement)
    rescale: bool = False              # Gal's 1/(1-p) rescaling of gated inputs (the reference has none)
    per_cell: bool = False             # NB201: one drop probability per (cell, edge, op) instead of per
                                       # (edge, op) shared by the cells
    candidates: int = 1500             # (architecture, weights) pairs sampled at selection (paper, CIFAR-10)
    genotype: str = "ranked"           # candidate -> NB201 genotype (the paper defines none): ranked (kept
                                       # single paths ranked with the shared weights; the default: it picks
                                       # best, experiments/pgnas/seeds.py) | projection (per edge the kept op
                                       # of highest keep probability; favours parameter-free cells) |
                                       # rejection (one-op-per-edge candidates drawn from the conditioned
                                       # posterior: one more evaluation pass)

    def check(self):
        _check_positive(self, ("candidates",))
        _check_choice(self, "genotype", ("projection", "rejection", "ranked"))
        if not (self.length_scale_sq >= 0 and self.n_train >= 0 and self.tau > 0 and 0 < self.p_init < 1):
            raise ValueError("pgnas needs length_scale_sq >= 0, n_train >= 0, tau > 0 and 0 < p_init < 1")


@dataclasses.dataclass(frozen=True)
class Proxy:
    NAME = "proxy"
    names: str = "naswot"              # proxies to compute, comma-separated (`jaxnas score`); the first ranks
    batch_size: int = 128              # images the proxies see (NASWOT paper: 128)
    init: str = "per_arch"             # per_arch: a fresh network per candidate (reference) | shared
    das_da: str = "logdet"             # DAS's distinguishing ability: logdet (log|S|) | min_dist (the
                                       # closest pair of images' codes; ranks NB201 better,
                                       # experiments/proxy_fidelity)
    das_weight: float | None = None  # DAS = DA + das_weight * B * log(NAU); 1.0 with logdet is NASWOT.
                                       # None: the DA's weight chosen on a 200-arch calibration set
                                       # (logdet 1.75, min_dist 1.33; experiments/proxy_fidelity)
    az_spectrum: str = "reference"     # AZ-NAS expressivity's covariance spectrum: reference (float32 as it
                                       # comes; rounding makes ~6% of NB201 cells -inf) | psd (negative
                                       # eigenvalues clamped to 0; jaxnas.proxies.aznas)
    fast_train_steps: int = 0          # DAS fast training: SGD steps per candidate before scoring
    fast_train_lr: float = 0.1         # its learning rate
    fast_train_batch_size: int = 64    # its batch size
    archs: str = "all"                 # `jaxnas score`: all | N (seeded sample) | file of NB201 strings
    rule: str = ""                     # combination rule of metrics (jaxnas.proxies.combine): a named rule
                                       # (aznas, naswot_params) or a rule .json; `jaxnas score` adds its
                                       # aggregate (aggregate.csv), `jaxnas search --method rule` ranks by it
    fine_rank_top: int = 0             # training-free search: train the top k candidates fine_rank_steps SGD
                                       # steps (fast_train_lr / _batch_size) and pick the most accurate on the
                                       # validation batch (0: off, the best score wins)
    fine_rank_steps: int = 50          # those steps, on the weights half of the search split

    def check(self):
        _check_positive(self, ("batch_size", "fast_train_batch_size"))
        _check_choice(self, "init", ("per_arch", "shared"))
        _check_choice(self, "das_da", ("logdet", "min_dist"))
        _check_choice(self, "az_spectrum", ("reference", "psd"))
        if self.fast_train_steps < 0 or self.fast_train_lr <= 0:
            raise ValueError("proxy.fast_train_steps must be >= 0 and proxy.fast_train_lr > 0")
        if self.fine_rank_top < 0 or self.fine_rank_steps < 1:
            raise ValueError("proxy.fine_rank_top must be >= 0 and proxy.fine_rank_steps >= 1")


@dataclasses.dataclass(frozen=True)
class Run:
    NAME = "run"
    checkpoint_every_steps: int = 0    # also checkpoint mid-epoch every n steps (0: epoch ends only)
    keep_checkpoints: int = 2          # checkpoints kept on disk (>= 2 so a corrupt one has a fallback)
    log_every: int = 10                # steps between progress-bar / NaN checks

    def check(self):
        _check_positive(self, ("log_every",))
        if self.keep_checkpoints < 2:
            raise ValueError("run.keep_checkpoints must be >= 2 so a corrupt checkpoint has a fallback")
        if self.checkpoint_every_steps < 0:
            raise ValueError(f"run.checkpoint_every_steps must be >= 0, got {self.checkpoint_every_steps}")


SECTIONS = {s.NAME: s for s in (NB201, Hybrid, Train, Eval, SETN, ABS, PGNAS, Proxy, Run)}


@dataclasses.dataclass(frozen=True)
class Config:
    space: str = "nb201"               # search space
    method: str = "rsps"               # search method (rsps, setn, train, naswot, ...: `jaxnas list`)
    data: str = "cifar10"              # TFDS name, image folder or .tar.gz of one
    max_per_class: int | None = None  # keep only the first n images per class (CPU-sized runs)
    seed: int = 0                      # the only source of randomness
    arch: str = ""                     # `jaxnas train`: the architecture string to train
    nb201: NB201 = NB201()
    hybrid: Hybrid = Hybrid()
    train: Train = Train()
    eval: Eval = Eval()
    setn: SETN = SETN()
    abs: ABS = ABS()
    pgnas: PGNAS = PGNAS()
    proxy: Proxy = Proxy()
    run: Run = Run()

    def replace(self, **kw) -> Config:
        return dataclasses.replace(self, **kw)

    def set(self, values: dict) -> Config:
        """A copy with `{"section.field" or "field": value}` applied, validated (ValueError naming
        the field)."""
        top, sections = {}, {}
        for key, value in values.items():
            section, name = _resolve(key)
            if section is None:
                top[name] = value
            else:
                sections.setdefault(section, {})[name] = value
        for section, kw in sections.items():
            top[section] = dataclasses.replace(getattr(self, section), **kw)
        return validate(dataclasses.replace(self, **top))

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)


TOP_LEVEL = tuple(f.name for f in dataclasses.fields(Config) if f.name not in SECTIONS)

# Fields of the flat config before sections (jaxnas 0.1), by their new names.
RENAMED = {
    **{name: f"nb201.{name}" for name in ("C", "N", "affine", "track_running_stats", "single_path_impl")},
    **{name: f"train.{name}" for name in ("epochs", "batch_size", "lr", "lr_min", "momentum", "nesterov",
                                          "weight_decay", "grad_clip", "decay_unsampled", "augment",
                                          "steps_per_epoch")},
    **{name: f"setn.{name}" for name in ("arch_lr", "arch_beta1", "arch_beta2", "arch_weight_decay")},
    "setn_select": "setn.select", "select_num": "eval.select_num", "eval_batch_size": "eval.batch_size",
    "eval_chunk_size": "eval.chunk_size", "eval_bn": "eval.bn", "rank_probe": "eval.rank_probe",
    "proxy": "proxy.names", "proxy_batch_size": "proxy.batch_size", "proxy_init": "proxy.init",
    "das_da": "proxy.das_da", "das_weight": "proxy.das_weight", "fast_train_steps": "proxy.fast_train_steps",
    "fast_train_lr": "proxy.fast_train_lr", "fast_train_batch_size": "proxy.fast_train_batch_size",
    "score_archs": "proxy.archs",
    **{name: f"run.{name}" for name in ("checkpoint_every_steps", "keep_checkpoints", "log_every")},
}


def all_fields() -> list[str]:
    """Every overridable name: top-level fields and `section.field`."""
    return list(TOP_LEVEL) + [f"{s}.{f.name}" for s, cls in SECTIONS.items() for f in dataclasses.fields(cls)]


def _resolve(key: str):
    """(section or None, field) of an override key, or ValueError naming the right one."""
    if "." in key:
        section, name = key.split(".", 1)
        cls = SECTIONS.get(section)
        if cls is not None and name in {f.name for f in dataclasses.fields(cls)}:
            return section, name
    elif key in TOP_LEVEL:
        return None, key
    if key in RENAMED:
        raise ValueError(f"config field {key!r} is now {RENAMED[key]!r} (fields are grouped in sections "
                         f"since jaxnas 0.2); use {RENAMED[key]}=...")
    close = difflib.get_close_matches(key, all_fields(), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ValueError(f"unknown config field {key!r}; {hint}fields are `jaxnas search --print-config`'s, "
                     "e.g. train.lr=0.1 (jaxnas/config.py)")


def _field_type(key: str) -> str:
    section, name = _resolve(key)
    cls = Config if section is None else SECTIONS[section]
    hints = typing.get_type_hints(cls)
    return str(hints[name])


def _parse_value(key: str, text: str):
    kind = _field_type(key)
    if text.lower() in ("none", "null") and ("Optional" in kind or "None" in kind):
        return None
    if "bool" in kind:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{key} takes true/false, got {text!r}")
    try:
        if "int" in kind:
            return int(text)
        if "float" in kind:
            return float(text)  # validate() rejects nan / inf
    except ValueError:
        raise ValueError(f"{key} takes {'an integer' if 'int' in kind else 'a number'}, "
                         f"got {text!r}") from None
    return text


def apply_overrides(cfg: Config, overrides) -> Config:
    """Apply `section.field=value` / `field=value` strings; unknown fields and bad values raise ValueError."""
    values = {}
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"expected section.field=value, got {item!r}")
        key, text = item.split("=", 1)
        values[key] = _parse_value(key, text)
    return cfg.set(values)


def validate(cfg: Config) -> Config:
    """Check every section's value ranges and the rules across sections; ValueError naming the field."""
    for key, value in flat(cfg).items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{key} must be a finite number, got {value}")
    if cfg.seed < 0:
        raise ValueError(f"seed must be >= 0, got {cfg.seed}")
    if cfg.max_per_class is not None and cfg.max_per_class < 2:
        raise ValueError(f"max_per_class must be >= 2, got {cfg.max_per_class}")
    for section in SECTIONS:
        getattr(cfg, section).check()
    return cfg


def from_json(text: str) -> Config:
    """The Config of a config.json's text; ValueError if it is not one (e.g. written before sections)."""
    raw = json.loads(text)
    if not isinstance(raw, dict):
        raise ValueError("not a JSON object")
    unknown = set(raw) - set(TOP_LEVEL) - set(SECTIONS)
    if unknown:
        raise ValueError(f"unknown fields {sorted(unknown)[:5]} (written by an older jaxnas?)")
    sections = {k: SECTIONS[k](**v) for k, v in raw.items() if k in SECTIONS}
    return Config(**{k: v for k, v in raw.items() if k in TOP_LEVEL}, **sections)


def flat(cfg: Config) -> dict:
    """{"field" or "section.field": value} of every field, in declaration order."""
    out = {}
    for key in all_fields():
        section, name = _resolve(key)
        out[key] = getattr(cfg if section is None else getattr(cfg, section), name)
    return out


PRESETS = {
    # NB201 search protocol: 250 epochs, batch 64, SGD Nesterov 0.9, lr 0.025 -> 0.001, wd 5e-4.
    "paper": Config(),
    # CPU variant: 6% of CIFAR-10 (300 images per class), a narrow and shallow supernet, a few short epochs.
    "tiny": Config(max_per_class=300).set({"nb201.C": 8, "nb201.N": 1, "train.epochs": 3,
                                           "train.batch_size": 64,
                                           "train.lr": 0.05, "eval.select_num": 30, "eval.batch_size": 256}),
    # NB201 training recipe for one architecture (`jaxnas train`): 200 epochs, batch 256, lr 0.1.
    "train-paper": Config(method="train").set({
        "train.epochs": 200, "train.batch_size": 256, "train.lr": 0.1, "train.lr_min": 0.0,
        "train.weight_decay": 5e-4, "train.grad_clip": 0.0, "nb201.affine": True,
        "nb201.track_running_stats": True}),
    "train-tiny": Config(method="train", max_per_class=500).set({
        "nb201.C": 8, "nb201.N": 1, "train.epochs": 3, "train.batch_size": 128, "train.lr": 0.1,
        "train.lr_min": 0.0, "train.grad_clip": 0.0, "nb201.affine": True,
        "nb201.track_running_stats": True}),
}
# What a preset changes for one method: the protocol of that method's paper (`paper`) and its
# CPU-sized variant (`tiny`), applied on top of the preset by `preset()`.
METHOD_PRESETS = {
    # PGNAS supplement 1.1, SupNet-M on CIFAR-10: lr 0.01 cosine, 1,800 epochs, batch 128, no weight
    # decay (the l^2 term replaces it), l^2 = 50, tau 0.2, p_init 0.1, N = 5e5. Not reproduced: cutout
    # 16 (no cutout in jaxnas.data) and the shake-shake base network (the hybrid network is a plain
    # post-activation ResNet, 4 blocks per stage, width hybrid.C=16: jaxnas's choice).
    "pgnas": {
        "paper": {"train.epochs": 1800, "train.batch_size": 128, "train.lr": 0.01, "train.lr_min": 0.0,
                  "train.weight_decay": 0.0, "pgnas.n_train": 5e5, "hybrid.C": 16, "hybrid.blocks": 4},
        "tiny": {"hybrid.C": 8, "hybrid.blocks": 1, "train.epochs": 10, "pgnas.candidates": 100},
    },
}


def preset(name: str, method: str | None = None, space: str | None = None) -> Config:
    """PRESETS[name] for `method` on `space`, with the method's own protocol (METHOD_PRESETS)."""
    cfg = PRESETS[name]
    cfg = cfg.replace(**{k: v for k, v in (("method", method), ("space", space)) if v is not None})
    return cfg.set(METHOD_PRESETS.get(cfg.method, {}).get(name, {}))


# One line per preset for `jaxnas list`.
PRESET_HELP = {
    "paper": "the NB201 search protocol (250 epochs, C=16, N=5): days on a CPU; --method pgnas: its "
             "supplement's",
    "tiny": "CPU-sized search: 6% of CIFAR-10 (300 per class), C=8, N=1, 3 epochs (minutes on 2 cores)",
    "train-paper": "jaxnas train: NB201's 200-epoch training recipe for one architecture",
    "train-tiny": "jaxnas train: 3 epochs at C=8, N=1 on 500 images per class",
}

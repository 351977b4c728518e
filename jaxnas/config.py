"""Run configuration in sections: what to run (top level), then one frozen dataclass per concern,
each validating its own fields. Presets are named after the protocol they reproduce.

    space, method, data, max_per_class, seed, arch   what to run
    <space>  each registered space's own section (nb201: width, depth, BN, formulation; hybrid: ...)
    train    weight training: epochs, rounds, batch, optimizer, schedule, augmentation, search split
    eval     candidate evaluation: how many, on which batch, BatchNorm mode, rank probe
    <method> each registered method's own section (setn, abs, pgnas; proxy: the training-free ones)
    run      bookkeeping: checkpoints, logging

This module is the mechanism only: the engine's sections (train, eval, run), dotted overrides,
renames, presets and validation. A space's or a method's section, its preset values and its renamed
fields live in that component's JAX-free config module, which `jaxnas.registry` names (e.g.
`jaxnas/spaces/nb201/config.py`; `jaxnas.sections` says what such a module holds); `Config` is
assembled from them here.

Overrides are dotted, `section.field=value` (`train.epochs=20`, `setn.select=sample`), or
`field=value` for the top level. An unknown or renamed field is a one-line error naming the right
one. `paper` presets follow the NB201 benchmark protocol (Dong & Yang, ICLR 2020, and xautodl's
exps/NAS-Bench-201-algos scripts); `tiny` presets are CPU-sized variants that finish in minutes on
2 cores.
"""
from __future__ import annotations

import dataclasses
import difflib
import importlib
import json
import math
import typing

from jaxnas import registry
from jaxnas.sections import check_choice, check_positive


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
    held_out_from: str = "random"      # which examples are held out: random (seeded) | end (the last of each
                                       # class, in file order: SMASH holds out the file's last 5,000)

    def check(self):
        check_positive(self, ("epochs", "rounds", "batch_size"))
        check_choice(self, "schedule", ("cosine", "cosine_per_round"))
        check_choice(self, "held_out_from", ("random", "end"))
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
        check_positive(self, ("select_num", "batch_size", "recal_batches"))
        check_choice(self, "bn", ("batch", "running", "recal"))
        if self.chunk_size < 0:
            raise ValueError(f"eval.chunk_size must be >= 0 (0: automatic), got {self.chunk_size}")
        if self.rank_probe < 0:  # its upper bound is the space's size (Method.check)
            raise ValueError(f"eval.rank_probe must be >= 0, got {self.rank_probe}")


@dataclasses.dataclass(frozen=True)
class Run:
    NAME = "run"
    checkpoint_every_steps: int = 0    # also checkpoint mid-epoch every n steps (0: epoch ends only)
    keep_checkpoints: int = 2          # checkpoints kept on disk (>= 2 so a corrupt one has a fallback)
    log_every: int = 10                # steps between progress-bar / NaN checks

    def check(self):
        check_positive(self, ("log_every",))
        if self.keep_checkpoints < 2:
            raise ValueError("run.keep_checkpoints must be >= 2 so a corrupt checkpoint has a fallback")
        if self.checkpoint_every_steps < 0:
            raise ValueError(f"run.checkpoint_every_steps must be >= 0, got {self.checkpoint_every_steps}")


_SPACE_MODULES, _METHOD_MODULES = (
    [importlib.import_module(m) for m in modules] for modules in registry.config_modules())
_COMPONENTS = _SPACE_MODULES + _METHOD_MODULES
SECTIONS = {s.NAME: s for s in (*[m.SECTION for m in _SPACE_MODULES if hasattr(m, "SECTION")], Train, Eval,
                                *[m.SECTION for m in _METHOD_MODULES if hasattr(m, "SECTION")], Run)}


@dataclasses.dataclass(frozen=True)
class _Run:
    """What to run; `Config` adds one field per section (SECTIONS)."""
    space: str = registry.DEFAULT_SPACE   # search space (`jaxnas list`)
    method: str = registry.DEFAULT_METHOD  # search method (rsps, setn, train, naswot, ...: `jaxnas list`)
    data: str = "cifar10"              # TFDS name, image folder or .tar.gz of one
    max_per_class: int | None = None  # keep only the first n images per class (CPU-sized runs)
    seed: int = 0                      # the only source of randomness
    arch: str = ""                     # `jaxnas train`: the architecture string to train

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


Config = dataclasses.make_dataclass(
    "Config", [(name, cls, dataclasses.field(default_factory=cls)) for name, cls in SECTIONS.items()],
    bases=(_Run,), frozen=True)
Config.__module__ = __name__
Config.__doc__ = "A run's whole configuration: the top-level fields and one section each (SECTIONS)."


TOP_LEVEL = tuple(f.name for f in dataclasses.fields(Config) if f.name not in SECTIONS)

# Fields of the flat config before sections (jaxnas 0.1), by their new names (the components' own
# in their config modules).
RENAMED = {
    **{name: f"train.{name}" for name in ("epochs", "batch_size", "lr", "lr_min", "momentum", "nesterov",
                                          "weight_decay", "grad_clip", "decay_unsampled", "augment",
                                          "steps_per_epoch")},
    "select_num": "eval.select_num", "eval_batch_size": "eval.batch_size",
    "eval_chunk_size": "eval.chunk_size", "eval_bn": "eval.bn", "rank_probe": "eval.rank_probe",
    **{name: f"run.{name}" for name in ("checkpoint_every_steps", "keep_checkpoints", "log_every")},
    **{old: new for m in _COMPONENTS for old, new in getattr(m, "RENAMED", {}).items()},
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
    if "tuple[str" in kind:  # comma-separated names: mobile.ops=mb3t3,mb5t6
        return tuple(v.strip() for v in text.strip("()").split(",") if v.strip())
    if "tuple" in kind:  # comma-separated numbers: mobile.alloc=1,3,3,3,3,3
        try:
            parts = text.strip("()").split(",")
            return tuple(int(v) if v.strip().lstrip("-").isdigit() else float(v) for v in parts)
        except ValueError:
            raise ValueError(f"{key} takes comma-separated numbers, got {text!r}") from None
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
    # JSON has no tuples: a tuple field comes back as a list
    sections = {k: SECTIONS[k](**{f: tuple(x) if isinstance(x, list) else x for f, x in v.items()})
                for k, v in raw.items() if k in SECTIONS}
    return Config(**{k: v for k, v in raw.items() if k in TOP_LEVEL}, **sections)


def flat(cfg: Config) -> dict:
    """{"field" or "section.field": value} of every field, in declaration order."""
    out = {}
    for key in all_fields():
        section, name = _resolve(key)
        out[key] = getattr(cfg if section is None else getattr(cfg, section), name)
    return out


# The engine's part of each preset (top-level, train and eval fields); every space's config module
# adds its own (its PRESETS: e.g. `tiny` makes each space's networks small), a method's config module
# what its paper's protocol changes (`preset()`).
_ENGINE_PRESETS = {
    # NB201 search protocol: 250 epochs, batch 64, SGD Nesterov 0.9, lr 0.025 -> 0.001, wd 5e-4.
    "paper": {},
    # CPU variant: 6% of CIFAR-10 (300 images per class), a few short epochs.
    "tiny": {"max_per_class": 300, "train.epochs": 3, "train.batch_size": 64, "train.lr": 0.05,
             "eval.select_num": 30, "eval.batch_size": 256},
    # NB201 training recipe for one architecture (`jaxnas train`): 200 epochs, batch 256, lr 0.1.
    "train-paper": {"method": "train", "train.epochs": 200, "train.batch_size": 256, "train.lr": 0.1,
                    "train.lr_min": 0.0, "train.weight_decay": 5e-4, "train.grad_clip": 0.0},
    "train-tiny": {"method": "train", "max_per_class": 500, "train.epochs": 3, "train.batch_size": 128,
                   "train.lr": 0.1, "train.lr_min": 0.0, "train.grad_clip": 0.0},
}
PRESETS = {name: Config().set({**engine, **{k: v for m in _SPACE_MODULES
                                            for k, v in getattr(m, "PRESETS", {}).get(name, {}).items()}})
           for name, engine in _ENGINE_PRESETS.items()}


def preset(name: str, method: str | None = None, space: str | None = None) -> Config:
    """PRESETS[name] for `method` on `space`, with what the space's config module's SPACE_PRESETS
    change for runs on that space only (e.g. its training recipe), then what the method's config
    module's PRESETS change (its `name` entry, then its `name/<space>` entry where the space needs
    its own)."""
    cfg = PRESETS[name]
    cfg = cfg.replace(**{k: v for k, v in (("method", method), ("space", space)) if v is not None})
    for entry, attribute in ((registry.SPACES.get(cfg.space), "SPACE_PRESETS"),
                             (registry.METHODS.get(cfg.method), "PRESETS")):
        own = getattr(importlib.import_module(entry.config), attribute, {}) if entry and entry.config else {}
        cfg = cfg.set({**own.get(name, {}), **own.get(f"{name}/{cfg.space}", {})})
    return cfg


# One line per preset for `jaxnas list`.
PRESET_HELP = {
    "paper": "the NB201 search protocol (250 epochs, C=16, N=5): days on a CPU; --method pgnas: its "
             "supplement's",
    "tiny": "CPU-sized search: 6% of CIFAR-10 (300 per class), C=8, N=1, 3 epochs (minutes on 2 cores)",
    "train-paper": "jaxnas train: NB201's 200-epoch training recipe for one architecture",
    "train-tiny": "jaxnas train: 3 epochs at C=8, N=1 on 500 images per class",
}

"""Run configuration: one frozen dataclass, presets named after the protocol they reproduce.

Every field can be overridden from the CLI as `field=value`. `paper` presets follow the NB201
benchmark protocol (Dong & Yang, ICLR 2020, and xautodl's exps/NAS-Bench-201-algos scripts);
`tiny` presets are CPU-sized variants that finish in minutes on 2 cores.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import math
from typing import Optional


@dataclasses.dataclass(frozen=True)
class Config:
    # --- what to run
    space: str = "nb201"               # search space
    method: str = "rsps"               # search method (rsps, setn, train, ...)
    data: str = "cifar10"              # TFDS name, image folder or .tar.gz of one
    max_per_class: Optional[int] = None  # keep only the first n images per class (CPU-sized runs)
    seed: int = 0                      # the only source of randomness
    # --- network
    C: int = 16                        # channels of the first stage
    N: int = 5                         # cells per stage
    affine: bool = False               # affine BN in the search cells (reference: off)
    track_running_stats: bool = False  # running BN statistics in the search cells (NB201 scripts: BN=0)
    single_path_impl: str = "auto"     # eager | merged | switch | mask | auto (fastest exact one per backend)
    # --- weight training
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
    steps_per_epoch: Optional[int] = None  # cap on steps per epoch (None: the whole weights half)
    # --- architecture parameters (methods that learn them)
    arch_lr: float = 3e-4              # Adam learning rate
    arch_beta1: float = 0.5            # Adam beta1
    arch_beta2: float = 0.999          # Adam beta2
    arch_weight_decay: float = 1e-3    # Adam L2 weight decay
    # --- candidate selection
    select_num: int = 100              # candidates evaluated at the end
    eval_batch_size: int = 512         # images in the validation batch candidates are ranked on
    eval_chunk_size: int = 0           # candidates vmapped at once (bounds memory); 0: 1 for candidate
                                       # evaluation; for proxies 1 on CPU, 16 on GPU (methods.base.eval_chunk_size)
    eval_bn: str = "batch"             # BN during evaluation: batch | running | recal
    setn_select: str = "topk"          # SETN candidates: topk (highest log-probability) | sample (from alpha)
    rank_probe: int = 0                # at the end, rank this many fixed architectures (same set for every
                                       # seed and method) with the shared weights; result.json reports their
                                       # accuracies and, with a bench table, Kendall tau / Spearman
    # --- training-free proxies (`jaxnas score`, `jaxnas search --method naswot|das|...`)
    proxy: str = "naswot"              # proxies to compute, comma-separated (score); the first ranks
    proxy_batch_size: int = 128        # images the proxies see (NASWOT paper: 128)
    proxy_init: str = "per_arch"       # per_arch: a fresh network per candidate (reference) | shared
    das_da: str = "logdet"             # DAS's distinguishing ability: logdet (log|S|) | min_dist (the closest
                                       # pair of images' codes; ranks NB201 better, experiments/proxy_fidelity)
    das_weight: Optional[float] = None  # DAS = DA + das_weight * B * log(NAU); 1.0 with logdet is NASWOT.
                                       # None: the DA's weight chosen on a 200-arch calibration set
                                       # (logdet 1.75, min_dist 1.33; experiments/proxy_fidelity)
    fast_train_steps: int = 0          # DAS fast training: SGD steps per candidate before scoring
    fast_train_lr: float = 0.1         # its learning rate
    fast_train_batch_size: int = 64    # its batch size
    score_archs: str = "all"           # `jaxnas score`: all | N (seeded sample) | file of NB201 strings
    # --- run bookkeeping
    checkpoint_every_steps: int = 0    # also checkpoint mid-epoch every n steps (0: epoch ends only)
    keep_checkpoints: int = 2          # checkpoints kept on disk (>= 2 so a corrupt one has a fallback)
    log_every: int = 10                # steps between progress-bar / NaN checks
    # --- single-architecture training (`jaxnas train`)
    arch: str = ""                     # NB201 string of the architecture to train

    def replace(self, **kw) -> "Config":
        return dataclasses.replace(self, **kw)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)


PRESETS = {
    # NB201 search protocol: 250 epochs, batch 64, SGD Nesterov 0.9, lr 0.025 -> 0.001, wd 5e-4.
    "paper": Config(),
    # CPU variant: 10% of CIFAR-10, a narrow and shallow supernet, a few short epochs.
    "tiny": Config(C=8, N=1, epochs=3, max_per_class=300, batch_size=64, select_num=30,
                   eval_batch_size=256, lr=0.05),
    # NB201 training recipe for one architecture (`jaxnas train`): 200 epochs, batch 256, lr 0.1.
    "train-paper": Config(method="train", epochs=200, batch_size=256, lr=0.1, lr_min=0.0,
                          weight_decay=5e-4, grad_clip=0.0, affine=True, track_running_stats=True),
    "train-tiny": Config(method="train", C=8, N=1, epochs=3, max_per_class=500, batch_size=128, lr=0.1,
                         lr_min=0.0, grad_clip=0.0, affine=True, track_running_stats=True),
}
# One line per preset for `jaxnas list`.
PRESET_HELP = {
    "paper": "the NB201 search protocol (250 epochs, C=16, N=5): days on a CPU",
    "tiny": "CPU-sized search: 10% of CIFAR-10, C=8, N=1, 3 epochs (minutes on 2 cores)",
    "train-paper": "jaxnas train: NB201's 200-epoch training recipe for one architecture",
    "train-tiny": "jaxnas train: 3 epochs at C=8, N=1 on 500 images per class",
}


def _parse_value(field: dataclasses.Field, text: str):
    kind = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", str(field.type))
    if text.lower() in ("none", "null") and "Optional" in kind:
        return None
    if "bool" in kind:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{field.name} takes true/false, got {text!r}")
    try:
        if "int" in kind:
            return int(text)
        if "float" in kind:
            return float(text)  # validate() rejects nan / inf
    except ValueError:
        raise ValueError(f"{field.name} takes {'an integer' if 'int' in kind else 'a number'}, got {text!r}") from None
    return text


def apply_overrides(cfg: Config, overrides) -> Config:
    """Apply `field=value` strings; unknown fields and bad values raise ValueError."""
    fields = {f.name: f for f in dataclasses.fields(Config)}
    kw = {}
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"expected field=value, got {item!r}")
        name, text = item.split("=", 1)
        if name not in fields:
            close = difflib.get_close_matches(name, fields, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ValueError(f"unknown config field {name!r}; {hint}fields: {', '.join(sorted(fields))}")
        kw[name] = _parse_value(fields[name], text)
    return validate(cfg.replace(**kw))


def validate(cfg: Config) -> Config:
    """Check value ranges; raise ValueError naming the field."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{f.name} must be a finite number, got {value}")
    if cfg.seed < 0:
        raise ValueError(f"seed must be >= 0, got {cfg.seed}")
    positive = ("C", "N", "epochs", "rounds", "batch_size", "select_num", "eval_batch_size", "log_every", "keep_checkpoints",
                "proxy_batch_size", "fast_train_batch_size")
    for name in positive:
        if getattr(cfg, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(cfg, name)}")
    if not 0 <= cfg.rank_probe <= 15625:
        raise ValueError(f"rank_probe must be in [0, 15625], got {cfg.rank_probe}")
    if cfg.eval_chunk_size < 0:
        raise ValueError(f"eval_chunk_size must be >= 0 (0: automatic), got {cfg.eval_chunk_size}")
    if cfg.lr <= 0 or cfg.lr_min < 0:
        raise ValueError("lr must be > 0 and lr_min >= 0")
    if cfg.max_per_class is not None and cfg.max_per_class < 2:
        raise ValueError(f"max_per_class must be >= 2, got {cfg.max_per_class}")
    if cfg.steps_per_epoch is not None and cfg.steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be >= 1, got {cfg.steps_per_epoch}")
    if cfg.eval_bn not in ("batch", "running", "recal"):
        raise ValueError(f"eval_bn must be batch, running or recal, got {cfg.eval_bn!r}")
    if cfg.setn_select not in ("topk", "sample"):
        raise ValueError(f"setn_select must be topk or sample, got {cfg.setn_select!r}")
    if cfg.single_path_impl not in ("auto", "eager", "merged", "switch", "mask"):
        raise ValueError(f"single_path_impl must be auto, eager, merged, switch or mask, got {cfg.single_path_impl!r}")
    if cfg.eval_bn == "running" and not cfg.track_running_stats:
        raise ValueError("eval_bn=running needs track_running_stats=true")
    if cfg.proxy_init not in ("per_arch", "shared"):
        raise ValueError(f"proxy_init must be per_arch or shared, got {cfg.proxy_init!r}")
    if cfg.das_da not in ("logdet", "min_dist"):
        raise ValueError(f"das_da must be logdet or min_dist, got {cfg.das_da!r}")
    if cfg.fast_train_steps < 0 or cfg.fast_train_lr <= 0:
        raise ValueError("fast_train_steps must be >= 0 and fast_train_lr > 0")
    if cfg.keep_checkpoints < 2:
        raise ValueError("keep_checkpoints must be >= 2 so a corrupt checkpoint has a fallback")
    return cfg


def from_json(text: str) -> Config:
    return Config(**json.loads(text))

"""Every space, method and proxy by name: where its code lives, its config module and one help
line. It imports only the standard library (no JAX), so `jaxnas --help`, `jaxnas list`, the
`--space` / `--method` choices and `jaxnas.config`'s sections come from here at once; a
component's code is imported on first use (`Entry.load`).

A new space is its package (`jaxnas/spaces/<name>/`, with `space.py` and, if it has options,
`config.py`) and one line in SPACES; a new method is its module (and a JAX-free `<name>_config.py`
if it has options or presets) and one line in METHODS. `jaxnas.sections` says what a config module
holds.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib


@dataclasses.dataclass(frozen=True)
class Entry:
    target: str              # "module:attribute": the Space object, the Method class, or a factory of one
    help: str                # one line for `jaxnas list` and `--help`
    config: str = ""         # its JAX-free config module (SECTION, PRESETS, RENAMED), if any
    arg: str | None = None   # the factory's argument (a training-free method's proxy or rule)
    search: bool = True      # a method `jaxnas search --method` offers (False: `jaxnas train`'s)

    def load(self):
        """The space object or method class (imported now; the same object on every call)."""
        return _load(self.target, self.arg)


@functools.cache
def _load(target: str, arg: str | None):
    module, _, path = target.partition(":")
    obj = importlib.import_module(module)
    for attr in path.split("."):
        obj = getattr(obj, attr)
    return obj if arg is None else obj(arg)


SPACES = {
    "nb201": Entry("jaxnas.spaces.nb201.space:SPACE", "NAS-Bench-201 cell: 6 edges x 5 ops, 15,625 "
                   "architectures, ground truth for all", "jaxnas.spaces.nb201.config"),
    "hybrid": Entry("jaxnas.spaces.hybrid.space:SPACE", "PGNAS's hybrid ResNet: each conv is {1x1, 3x3, 3x3 "
                    "d2, 5x5 d2} branches, an architecture keeps input channels per branch (--method pgnas "
                    "or rsps)", "jaxnas.spaces.hybrid.config"),
    "smash": Entry("jaxnas.spaces.smash.space:SPACE", "SMASH's memory-bank network: per block a bank "
                   "size, per layer read / write banks, units, kernel, dilation, groups (--method smash)",
                   "jaxnas.spaces.smash.config"),
    "mobile": Entry("jaxnas.spaces.mobile.space:SPACE", "NSE's MobileNetV2-like skeleton: per cell any "
                    "subset of 27 MBConv / Rec operators, averaged (--method nse)",
                    "jaxnas.spaces.mobile.config"),
}
DEFAULT_SPACE = "nb201"

_PROXY = "jaxnas.methods.training_free:TrainingFree.for_proxy"
_RULE = "jaxnas.methods.training_free:TrainingFree.for_rule"
_PROXY_CONFIG = "jaxnas.proxies.config"
METHODS = {
    "rsps": Entry("jaxnas.methods.rsps:RSPS", "random sampling with parameter sharing: train a supernet on "
                  "random paths, rank candidates"),
    "setn": Entry("jaxnas.methods.setn:SETN", "SETN: template network + learned evaluator; top-K candidates, "
                  "best on a validation batch", "jaxnas.methods.setn_config"),
    "abs": Entry("jaxnas.methods.abs:ABS", "ABS: shrink the space by weight angles around a base method "
                 "(abs.base=rsps|setn)", "jaxnas.methods.abs_config"),
    "pgnas": Entry("jaxnas.methods.pgnas:PGNAS", "PGNAS: concrete-dropout gates on every op; best of sampled "
                   "(architecture, weights) pairs", "jaxnas.methods.pgnas_config"),
    "smash": Entry("jaxnas.methods.smash:SMASH", "SMASH: a HyperNet generates each sampled architecture's "
                   "weights; best of random + perturbed + Markov candidates by held-out error",
                   "jaxnas.methods.smash_config"),
    "nse": Entry("jaxnas.methods.nse:NSE", "NSE: evolve each cell's operator subset round by round; the "
                 "Pareto front over (MACs, accuracy), its best under nse.budget",
                 "jaxnas.methods.nse_config"),
    "train": Entry("jaxnas.methods.train_arch:TrainArch", "jaxnas train: one architecture from scratch",
                   search=False),
    "naswot": Entry(_PROXY, "training-free: best of select_num random candidates by the NASWOT score",
                    _PROXY_CONFIG, "naswot"),
    "das": Entry(_PROXY, "training-free: best by DAS (distinguishing ability + log NAU; "
                 "das_da=logdet|min_dist)", _PROXY_CONFIG, "das"),
    "synflow": Entry(_PROXY, "training-free: best by synflow", _PROXY_CONFIG, "synflow"),
    "snip": Entry(_PROXY, "training-free: best by snip", _PROXY_CONFIG, "snip"),
    "grad_norm": Entry(_PROXY, "training-free: best by the gradient norm", _PROXY_CONFIG, "grad_norm"),
    "jacov": Entry(_PROXY, "training-free: best by the Jacobian covariance score", _PROXY_CONFIG, "jacov"),
    "zico": Entry(_PROXY, "training-free: best by ZiCo (gradient mean / std across batches)", _PROXY_CONFIG,
                  "zico"),
    "az_expressivity": Entry(_PROXY, "training-free: best by AZ-NAS expressivity", _PROXY_CONFIG,
                             "az_expressivity"),
    "az_progressivity": Entry(_PROXY, "training-free: best by AZ-NAS progressivity", _PROXY_CONFIG,
                              "az_progressivity"),
    "az_trainability": Entry(_PROXY, "training-free: best by AZ-NAS trainability", _PROXY_CONFIG,
                             "az_trainability"),
    "params": Entry(_PROXY, "training-free: the largest network by parameter count", _PROXY_CONFIG, "params"),
    "flops": Entry(_PROXY, "training-free: the largest network by FLOPs", _PROXY_CONFIG, "flops"),
    "layers": Entry(_PROXY, "training-free: the network with the most conv + linear layers", _PROXY_CONFIG,
                    "layers"),
    "aznas": Entry(_RULE, "training-free: best by AZ-NAS's rule (log-rank sum of its 3 components and FLOPs)",
                   _PROXY_CONFIG, "aznas"),
    "naswot_params": Entry(_RULE, "training-free: best by the log-rank sum of NASWOT and the parameter count",
                           _PROXY_CONFIG, "naswot_params"),
    "rule": Entry(_RULE, "training-free: best by proxy.rule (a named rule or a calibrated rule .json)",
                  _PROXY_CONFIG, "rule"),
    "prune": Entry("jaxnas.methods.prune:Prune", "training-free, TE-NAS: prune the whole cell op by op by "
                   "proxy.rule (default naswot_params)", _PROXY_CONFIG),
}
DEFAULT_METHOD = "rsps"

# `jaxnas score --proxy`: the proxy functions are `jaxnas.proxies.scoring.PROXIES`
PROXIES = {
    "naswot": "log|K_H| of the ReLU activation codes of a batch (Mellor et al., ICML 2021)",
    "das": "DAS: distinguishing ability + weighted log NAU (arXiv 2212.12132); das_da=logdet|min_dist",
    "grad_norm": "norm of the loss gradient w.r.t. the weights",
    "snip": "SNIP saliency: sum |w * dL/dw| (Lee et al., ICLR 2019)",
    "synflow": "synaptic flow of the all-ones input through |w| (Tanaka et al., NeurIPS 2020)",
    "jacov": "Jacobian covariance of the inputs' gradients (Mellor et al., 2020 version)",
    "zico": "ZiCo: sum over layers of log sum mean|g|/std(g), loss gradients of 2 half-batches (ICLR 2023)",
    "az_expressivity": "AZ-NAS: entropy of each block's feature covariance spectrum, summed (CVPR 2024)",
    "az_progressivity": "AZ-NAS: smallest increase of expressivity from one block to the next",
    "az_trainability": "AZ-NAS: mean over blocks of 2 - s - 1/s, s the spectral norm of a block's Jacobian",
    "params": "trainable parameters of the standalone network (the space's cost model)",
    "flops": "multiply-accumulates of one image's forward pass (the space's cost model)",
    "layers": "conv + linear layers of the standalone network",
}


def search_methods() -> list[str]:
    """The methods `jaxnas search --method` offers, in registry order."""
    return [name for name, entry in METHODS.items() if entry.search]


def config_modules() -> tuple[list[str], list[str]]:
    """Every component's config module, once each, in registry order: (the spaces', the methods')
    (`jaxnas.config` puts the engine's sections between them)."""
    spaces = [e.config for e in SPACES.values() if e.config]
    methods = [e.config for e in METHODS.values() if e.config]
    return list(dict.fromkeys(spaces)), [m for m in dict.fromkeys(methods) if m not in spaces]


def lazy_exports(package: str, exports: dict[str, str]):
    """(`__getattr__`, `__dir__`) for a package's `__init__` whose names are imported on first use
    (PEP 562): `exports` maps a name to the module defining it; a submodule is imported when asked
    for. So a JAX-free module inside the package (its config) imports without the package's JAX."""
    def __getattr__(name):
        if name in exports:
            value = getattr(importlib.import_module(exports[name]), name)
        else:
            try:
                value = importlib.import_module(f"{package}.{name}")
            except ModuleNotFoundError as err:
                if err.name != f"{package}.{name}":
                    raise
                raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        setattr(importlib.import_module(package), name, value)
        return value

    def __dir__():
        return sorted(exports)

    return __getattr__, __dir__

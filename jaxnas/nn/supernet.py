"""The supernet call protocol: what the loop's steps, the candidate evaluator and the methods call
on every space's weight-sharing network (`Space.build_supernet`), written down once.

    logits = supernet(x, arch, train, forward_only=False)

`x`: images [B, H, W, C]; `arch`: an architecture container (`jaxnas.spaces.arch`: `Choice` of
one architecture, or the relaxed forms a space offers, `Weights`, `Gates`, `InputGates`); `train`:
BatchNorm in training mode; `forward_only`: no gradient will be taken through this pass (a space
may then pick a cheaper formulation, e.g. NB201's switch; others ignore it). Extra keywords a
space's own code passes (NB201: `tap`, `single_path_impl`) must have defaults.
"""
from __future__ import annotations

import inspect
from typing import Protocol, runtime_checkable


@runtime_checkable
class Supernet(Protocol):
    def __call__(self, x, arch, train: bool = True, *, forward_only: bool = False): ...


def follows_protocol(module) -> bool:
    """Whether `module`'s `__call__` takes (x, arch, train) positionally and `forward_only` by
    keyword, every other parameter with a default."""
    params = list(inspect.signature(type(module).__call__).parameters.values())[1:]
    positional = [p.name for p in params[:3]]
    rest = {p.name: p for p in params[3:]}
    return (isinstance(module, Supernet) and positional == ["x", "arch", "train"]
            and "forward_only" in rest
            and all(p.default is not inspect.Parameter.empty or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
                    for p in rest.values()))

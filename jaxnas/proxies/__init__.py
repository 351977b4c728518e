"""Training-free proxies: score architectures from an untrained (or briefly trained) network.

`ProxyScorer` runs any set of proxies over thousands of candidates in one jitted, chunked program;
the proxy functions themselves (`activation`, `gradient`, `aznas`, `cost`) are pure and vmappable.
Names are imported on first use, so the `proxy` config section (`config`) imports without JAX.
"""
from jaxnas import registry

_FROM = {"activation": ("activation_scores", "code_kernel"), "aznas": ("az_scores",),
         "cost": ("cost_scores",),
         "gradient": ("jacov", "loss_gradient_scores", "synflow", "zico"),
         "scoring": ("PROXIES", "ProxyScorer", "parse_proxies")}
__getattr__, __dir__ = registry.lazy_exports(
    __name__, {name: f"jaxnas.proxies.{module}" for module, names in _FROM.items() for name in names})
__all__ = sorted(name for names in _FROM.values() for name in names)

"""Training-free proxies: score architectures from an untrained (or briefly trained) network.

`ProxyScorer` runs any set of proxies over thousands of NB201 candidates in one jitted, chunked
program; the proxy functions themselves (`activation`, `gradient`, `aznas`, `cost`) are pure and vmappable.
"""
from jaxnas.proxies.activation import activation_scores, code_kernel
from jaxnas.proxies.aznas import az_scores
from jaxnas.proxies.cost import cost_scores
from jaxnas.proxies.gradient import jacov, loss_gradient_scores, synflow, zico
from jaxnas.proxies.scoring import PROXIES, ProxyScorer, parse_proxies

__all__ = ["PROXIES", "ProxyScorer", "activation_scores", "az_scores", "code_kernel", "cost_scores", "jacov",
           "loss_gradient_scores", "parse_proxies", "synflow", "zico"]

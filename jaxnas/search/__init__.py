"""Shared search logic: distributions over architectures (`distributions`: categorical;
`concrete`: concrete-dropout gates and their Bernoulli keep-masks) and selection among candidates.

Sits below evaluate / train / proxies / methods and above nn / spaces; it names no space and reads
no config section.
"""
from jaxnas.search.distributions import categorical_log_prob, categorical_sample, categorical_top_k
from jaxnas.search.select import (
    best,
    best_by_score,
    best_under_budget,
    dedup,
    order,
    order_by_score,
    pareto_front,
    take,
    top_k,
)

__all__ = ["best", "best_by_score", "best_under_budget", "categorical_log_prob", "categorical_sample",
           "categorical_top_k", "dedup", "order", "order_by_score", "pareto_front", "take", "top_k"]

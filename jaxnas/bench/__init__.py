"""Ground-truth benchmark tables and the ranking metrics that score search methods against them."""
from jaxnas.bench.ranking import kendall_tau, rank_summary, spearman, top_k_overlap
from jaxnas.bench.table import ALIASES, ARCH_COLUMNS, BenchTable, load_table

__all__ = [
    "ALIASES",
    "ARCH_COLUMNS",
    "BenchTable",
    "kendall_tau",
    "load_table",
    "rank_summary",
    "spearman",
    "top_k_overlap",
]

"""Ground-truth benchmark tables and the ranking metrics that score search methods against them."""
from jaxnas.bench.ranking import kendall_tau, rank_summary, spearman, top_k_overlap
from jaxnas.spaces.nb201.table import ALIASES, ARCH_COLUMNS, BenchTable, dataset_column, load_table

__all__ = [
    "ALIASES",
    "ARCH_COLUMNS",
    "BenchTable",
    "dataset_column",
    "kendall_tau",
    "load_table",
    "rank_summary",
    "spearman",
    "top_k_overlap",
]

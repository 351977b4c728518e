"""Networks: NB201 ops, the standalone network of one architecture, and the supernet."""
from jaxnas.nn.functional import apply, count_params, split
from jaxnas.nn.nb201 import MODES, SINGLE_PATH_IMPLS, NB201Network, NB201SuperNet, extract, used_params

__all__ = ["apply", "count_params", "split", "MODES", "SINGLE_PATH_IMPLS", "NB201Network", "NB201SuperNet", "extract", "used_params"]

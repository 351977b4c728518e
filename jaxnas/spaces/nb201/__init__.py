"""NAS-Bench-201: the cell encoding (`cell`), its networks (`networks`), the CPU eager passes
(`eager`), the cost model (`cost`), the ground-truth table reader (`table`), and all of them
behind the `Space` interface (`space.SPACE`); its config section in `config`.

`from jaxnas.spaces import nb201` gives the space's functions (`nb201.to_string`, `nb201.sample`,
...) and `nb201.SPACE`, the `Space` object; the networks are in `jaxnas.spaces.nb201.networks`.
Names are imported on first use, so `jaxnas.spaces.nb201.config` imports without JAX.
"""
from jaxnas import registry

__all__ = ["CONV1", "CONV3", "EDGES", "INDEX_FILE", "NODE_INPUTS", "NODE_OUTPUTS", "NONE", "NUM_ARCHS",
           "NUM_EDGES", "NUM_NODES", "NUM_OPS", "OPS", "POOL", "SKIP", "SPACE", "NB201Space", "count_ops",
           "decode", "encode", "enumerate_all", "from_index", "from_mask", "from_string", "sample",
           "to_index", "to_mask", "to_string", "validate"]
__getattr__, __dir__ = registry.lazy_exports(__name__, {
    name: f"{__name__}.{'space' if name in ('SPACE', 'NB201Space') else 'cell'}" for name in __all__})

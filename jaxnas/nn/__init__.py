"""Generic network pieces: PyTorch-exact layers (`ops`) and the functional split/apply of NNX modules.
Networks of a particular space live with the space (e.g. `jaxnas.spaces.nb201.networks`)."""
from jaxnas.nn.functional import apply, count_params, loss_and_accuracy, split

__all__ = ["apply", "count_params", "loss_and_accuracy", "split"]

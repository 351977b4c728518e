"""Generic network pieces: PyTorch-exact layers (`ops`) and the functional split/apply of NNX modules.
Networks of a particular space live with the space (e.g. `jaxnas.spaces.nb201.networks`).

Re-exported: `conv` (torch.nn.functional.conv2d with stride, padding, dilation, groups and
non-square kernels; NHWC / HWIO), `weight_norm` (torch.nn.utils.weight_norm), `orthogonal`
(torch.nn.init.orthogonal_ in the output-axis-last layouts), `Tape` / `Plan` (`tape`: the
reverse-mode tape of compiled module kernels a space's host passes run on), `Supernet` (the
call every space's supernet follows)."""
from jaxnas.nn.functional import apply, count_params, loss_and_accuracy, split
from jaxnas.nn.init import orthogonal
from jaxnas.nn.ops import conv, weight_norm
from jaxnas.nn.supernet import Supernet
from jaxnas.nn.tape import Plan, Tape

__all__ = ["Plan", "Supernet", "Tape", "apply", "conv", "count_params", "loss_and_accuracy", "orthogonal",
           "split",
           "weight_norm"]

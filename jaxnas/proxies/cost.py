"""Cost proxies: the size of the standalone network of an architecture, no forward pass.

  - params: trainable parameters (BatchNorm scale and bias included, running statistics not),
            from the space's cost model (`space.cost`; NB201: `jaxnas.spaces.nb201.cost`, which
            reproduces the NB201 table's counts), not from a benchmark table;
  - flops:  multiply-accumulates of one image's forward pass at the scoring batch's image size,
            from the same cost model (NB201's convention: conv and linear layers only);
  - layers: how many conv and linear layers the standalone network has (kernels the architecture
            uses, `space.used_params`). NB201: 8 + 3N x (conv edges of the cell) -- the stem,
            3 per ResNet block, the classifier, and one per conv edge of each of the 3N cells. A
            count of trainable layers (with the BatchNorms) would rank exactly as this one (it is
            also an increasing affine function of the conv edges), so it is not offered.
Integers, as int32 (or what `space.cost` gives); the scorer returns them as float64.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxnas import registry, spaces

OUTPUTS = ("params", "flops", "layers")


def cost_scores(graphdef, params, stats, arch, images, labels, *, space=None, C=None, N=None,
                num_classes=None):
    """{"params", "flops", "layers"} of one architecture (vmappable). C, N and num_classes default
    to the network's own; the image size is the batch's (square images)."""
    del labels
    space = space or spaces.get(registry.DEFAULT_SPACE)
    if None in (C, N, num_classes):
        net = nnx.merge(graphdef, params, stats, copy=True)
        C, N, num_classes = (net.C if C is None else C, net.N if N is None else N,
                             net.num_classes if num_classes is None else num_classes)
    cost = space.cost(arch, C, N, num_classes, image_size=int(images.shape[1]))
    used = jax.tree_util.tree_leaves_with_path(space.used_params(params, arch))
    layers = sum(jnp.asarray(u, jnp.int32) for path, u in used if getattr(path[-1], "key", None) == "kernel")
    return {"params": cost["params"], "flops": cost["flops"], "layers": layers}

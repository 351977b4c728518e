"""Helpers shared by several test modules (test modules do not import each other).

torch and xautodl are imported inside the helpers that use them, so modules that need only `build`
or `main_in_process` do not load PyTorch.
"""
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxnas.nn.ops import ResNetBlock
from jaxnas.spaces import nb201
from jaxnas.spaces.nb201.networks import InferCell, SearchCell, extract

# NSE on the smallest mobile skeleton (the method contract's nse@mobile case and test_nse.py): one
# reduction cell a stage and an identity cell, 4 channels, 32 pixels, a pool of 3 operators of which
# a cell searches 2 (the whole pool's 27: 5x the time, mostly tracing)
NSE_MOBILE = {"space": "mobile", "mobile.alloc": (1, 0, 0, 0, 0, 0), "mobile.resolution": 32,
              "mobile.channels": (4,) * 7, "mobile.head": 8, "mobile.ops": ("mb3t3", "mb5t1", "rec5t1"),
              "nse.k": 2, "train.decay_unsampled": True}

C, N = 4, 1  # the proxy tests' network (torch_twin builds xautodl's TinyNetwork(C, N))
# node 1 all-zero (1<-0 none), so its conv into node 3 outputs BN(0)
ZERO_FED = nb201.from_string("|none~0|+|skip_connect~0|nor_conv_3x3~1|+"
                             "|avg_pool_3x3~0|nor_conv_1x1~1|none~2|")


def main_in_process(argv, capsys):
    """`jaxnas ...` through cli.main in this process: (returncode, stdout, stderr)."""
    from jaxnas import cli

    try:
        rc = cli.main([str(a) for a in argv])
    except SystemExit as exit_:  # argparse errors
        rc = exit_.code
    out, err = capsys.readouterr()
    return rc, out, err


def build(ctor, seed=0):
    """Build a module abstractly and fill every variable from numpy: no XLA compiles for PRNG init.

    Kernels ~ U(+-1/sqrt(fan_in)); BN scale and running variance ~ U(0.5, 1.5); biases and running
    means ~ N(0, 0.2): random statistics make eval mode differ from train mode.
    """
    graphdef, state = nnx.split(nnx.eval_shape(ctor))
    rng = np.random.default_rng(seed)

    def fill(path, s):
        name = path[-2].key
        if name == "kernel":
            v = rng.uniform(-1, 1, s.shape) / np.sqrt(np.prod(s.shape[:-1]))
        elif name in ("scale", "var"):
            v = rng.uniform(0.5, 1.5, s.shape)
        else:
            assert name in ("bias", "mean"), path
            v = rng.normal(0, 0.2, s.shape)
        return jnp.asarray(v, jnp.float32)

    return nnx.merge(graphdef, jax.tree_util.tree_map_with_path(fill, state))


def module_pairs(tnet, net):
    """(kind, torch module, our module) for every weight-carrying layer, matched by structure."""
    import torch
    from xautodl.models.cell_infers.cells import InferCell as TInferCell
    from xautodl.models.cell_operations import POOLING, Identity, ResNetBasicblock, Zero
    from xautodl.models.cell_operations import ReLUConvBN as TReLUConvBN
    from xautodl.models.cell_searchs.search_cells import NAS201SearchCell

    yield "conv", tnet.stem[0], net.stem.conv
    yield "bn", tnet.stem[1], net.stem.bn
    assert len(tnet.cells) == len(net.cells)
    for tcell, cell in zip(tnet.cells, net.cells):
        if isinstance(tcell, ResNetBasicblock):
            assert isinstance(cell, ResNetBlock)
            for a in ("conv_a", "conv_b"):
                yield "conv", getattr(tcell, a).op[1], getattr(cell, a).conv
                yield "bn", getattr(tcell, a).op[2], getattr(cell, a).bn
            assert isinstance(tcell.downsample[0], torch.nn.AvgPool2d)
            yield "conv", tcell.downsample[1], cell.shortcut
        elif isinstance(tcell, TInferCell):
            assert isinstance(cell, InferCell)
            # xautodl's layers follow the genotype: node 1 <- 0; node 2 <- 0, 1; node 3 <- 0, 1, 2,
            # i.e. layer e is edge e of our string order.
            assert [j for node in tcell.node_IN for j in node] == [j for _, j in nb201.EDGES]
            assert [k for node in tcell.node_IX for k in node] == list(range(nb201.NUM_EDGES))
            kinds = {nb201.NONE: Zero, nb201.SKIP: Identity, nb201.CONV1: TReLUConvBN,
                     nb201.CONV3: TReLUConvBN, nb201.POOL: POOLING}
            conv_edges = []
            for e, layer in enumerate(tcell.layers):
                assert isinstance(layer, kinds[cell.arch[e]]), (e, layer)
                if isinstance(layer, TReLUConvBN):
                    conv_edges.append(str(e))
                    yield "conv", layer.op[1], cell.convs[str(e)].conv
                    yield "bn", layer.op[2], cell.convs[str(e)].bn
            assert sorted(cell.convs.keys()) == conv_edges
        else:
            assert isinstance(tcell, NAS201SearchCell) and isinstance(cell, SearchCell)
            for e, (i, j) in enumerate(nb201.EDGES):
                key = f"{i}<-{j}"
                assert tcell.edge2index[key] == e
                tops = tcell.edges[key]
                assert [type(o) for o in tops] == [Zero, Identity, TReLUConvBN, TReLUConvBN, POOLING]
                for k, name in ((nb201.CONV1, "conv1"), (nb201.CONV3, "conv3")):
                    yield "conv", tops[k].op[1], getattr(cell.edges[e], name).conv
                    yield "bn", tops[k].op[2], getattr(cell.edges[e], name).bn
    yield "bn", tnet.lastact[0], net.head.bn
    yield "linear", tnet.classifier, net.head.classifier


def candidate_params(scorer, arch):
    """The weights the scorer gives `arch` (drawn from fold_in(seed, NB201 index))."""
    key = jax.random.fold_in(jax.random.key(scorer.seed), int(nb201.to_index(arch)))
    return scorer.init_params(key)


def torch_twin(scorer, arch, params=None, stats=None):
    """xautodl's TinyNetwork for `arch` carrying the scorer's weights for it."""
    import torch
    from xautodl.models.cell_infers.tiny_network import TinyNetwork
    from xautodl.models.cell_searchs.genotypes import Structure

    params = candidate_params(scorer, arch) if params is None else params
    supernet = nnx.merge(scorer.graphdef, params, scorer.stats if stats is None else stats)
    net = extract(supernet, arch)
    tnet = TinyNetwork(C, N, Structure.str2structure(nb201.to_string(arch)), 10)
    with torch.no_grad():
        for kind, t, o in module_pairs(tnet, net):
            if kind == "conv":
                t.weight.copy_(torch.from_numpy(np.array(o.kernel[...]).transpose(3, 2, 0, 1).copy()))
            elif kind == "bn":
                t.weight.copy_(torch.from_numpy(np.array(o.scale[...])))
                t.bias.copy_(torch.from_numpy(np.array(o.bias[...])))
                t.running_mean.copy_(torch.from_numpy(np.array(o.mean[...])))
                t.running_var.copy_(torch.from_numpy(np.array(o.var[...])))
            else:
                t.weight.copy_(torch.from_numpy(np.array(o.kernel[...]).T.copy()))
                t.bias.copy_(torch.from_numpy(np.array(o.bias[...])))
    return tnet


def nchw(x):
    import torch

    return torch.from_numpy(np.ascontiguousarray(np.asarray(x).transpose(0, 3, 1, 2)))

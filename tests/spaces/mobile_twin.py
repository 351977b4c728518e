"""NSE's mobile network in PyTorch, written from the reference's layers (orashi/NSE_NAS
utils/supernet_utils.py `LinearBottleneck`, `Rec`, the cell mean and `ValImageNet`'s stem and head;
docs/nse-reference.md 1-3): the tests' oracle (tests/spaces/test_mobile_network.py) and the
benchmark's peer (benchmarks/bench_nse.py). Parameters are jaxnas's tree as torch tensors (HWIO
kernels), NCHW activations."""
import numpy as np
import torch
import torch.nn.functional as tf


def torch_tree(tree, dtype=np.float64):
    """jaxnas's parameter tree as leaf tensors that take gradients (lists stay indexable by position)."""
    if hasattr(tree, "items"):
        return {k: torch_tree(v, dtype) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [torch_tree(v, dtype) for v in tree]
    return torch.from_numpy(np.asarray(tree, dtype).copy()).requires_grad_(True)


def conv_bn(x, p, stride=1, padding=0, dilation=1, groups=1, relu=True, stats=None, train=True):
    w = p["kernel"].permute(3, 2, 0, 1)  # HWIO -> OIHW
    y = tf.conv2d(x, w, stride=stride, padding=padding, dilation=dilation, groups=groups)
    mean, var = (None, None) if stats is None else (stats["mean"], stats["var"])
    y = tf.batch_norm(y, mean, var, p["bn"]["scale"], p["bn"]["bias"], training=train, eps=1e-5)
    return torch.relu(y) if relu else y


def twin(layout, selected, p, s, x, train=True, by_id=False):
    """The reference's forward: stem, each cell the mean of its ops (+ the input in N cells), head.
    `selected`: per cell the pool ids it runs; `p["cells"][c]` lists the standalone network's ops in
    that order, or (`by_id`) the supernet's whole pool."""
    st = (lambda *path: None) if train else (lambda *path: _get(s, path, x.dtype))
    h = conv_bn(x, p["stem"], layout.stem_stride, 1, stats=st("stem", "bn"), train=train)
    for c, (cell, ops_) in enumerate(zip(layout.cells, selected)):
        outs = []
        for j, i in enumerate(ops_):
            kind, k, t, d = layout.pool[i]
            q, path = p["cells"][c][i if by_id else j], ("cells", c, i if by_id else j)
            e = cell.cin * t
            y = conv_bn(h, q["expand"], stats=st(*path, "expand", "bn"), train=train)
            if kind == "mb":
                y = conv_bn(y, q["depthwise"], cell.stride, (k + 2 * (d - 1)) // 2, d, e,
                            stats=st(*path, "depthwise", "bn"), train=train)
            else:
                y = conv_bn(y, q["wide"], (1, cell.stride), (0, k // 2), stats=st(*path, "wide", "bn"),
                            train=train)
                y = conv_bn(y, q["tall"], (cell.stride, 1), (k // 2, 0), stats=st(*path, "tall", "bn"),
                            train=train)
            outs.append(conv_bn(y, q["project"], relu=False, stats=st(*path, "project", "bn"), train=train))
        if cell.identity:
            h = (h + sum(outs)) / (len(outs) + 1)
        else:
            h = sum(outs) / len(outs)
    h = torch.relu(tf.conv2d(h, p["head"]["kernel"].permute(3, 2, 0, 1))).mean((2, 3))
    return h @ p["head"]["classifier"]["kernel"] + p["head"]["classifier"]["bias"]


def _get(tree, path, dtype):
    """The BN statistics at `path` of a numpy tree, as tensors of `dtype`."""
    for k in path:
        tree = tree[k]
    return {k: torch.from_numpy(np.asarray(v).copy()).to(dtype) for k, v in tree.items()}

"""Parameter and FLOP counts of the standalone NB201 network of an architecture, traceable.

The network is xautodl's TinyNetwork (`jaxnas.spaces.nb201.networks.NB201Network`): a stem
Conv3x3(3 -> C, no bias) + BN; three stages of N cells at C, 2C, 4C channels with a ResNet basic
block between stages (ReLU-Conv3x3/2-BN, ReLU-Conv3x3-BN, shortcut AvgPool2x2 + Conv1x1 without
bias or BN); BN + ReLU, global average pooling and Linear(4C -> classes) with bias. Each conv edge
of a cell is ReLU -> Conv(no bias) -> BN(affine); skip, pooling and none hold no parameters.

Both counts are a constant (stem, ResNet blocks, head) plus, for every edge, the cost of its op
summed over the 3N cells, so they are cheap jnp expressions of the op ids: `arch` may be a traced
int32[..., 6] with leading batch axes (jit, vmap, grad-free search loops). A mixed cell, `Gates`
(mask [..., 6, 5]; TE-NAS-style pruning), costs what all the ops it keeps cost: every op with a
non-zero gate holds its own weights and runs. C, N, num_classes and image_size are static Python
ints.

Conventions are those of the NAS-Bench-201 tables (xautodl `utils/flop_benchmark.py`,
`get_model_infos`), and reproduce them exactly: the CIFAR-10 parameter counts of all architectures
but 204 whose table entry is a seed-averaging artefact (D-X-Y/NATS-Bench#36), and e.g. 7.78305 /
220.11969 MFLOPs for the cheapest / costliest cell on CIFAR-10 (220.12554 on CIFAR-100).
  - params: every trainable tensor, BatchNorm scale and bias included (PyTorch `parameters()`),
    running statistics excluded. The tables report params / 1e6 ("MB").
  - flops: multiply-accumulates of one image's forward pass, counted for Conv2d layers
    (k*k*C_in*C_out per output pixel; NB201's convs have no bias) and the Linear layer
    (C_in*C_out plus one per output for its bias). BatchNorm, ReLU, pooling (xautodl hooks
    AvgPool2d but leaves it out of the sum), the global average pool and the additions of node
    sums and shortcuts are not counted. The tables report flops / 1e6 ("MFLOPs").
Results are int32 when the largest value the configuration can reach fits in it; otherwise int64
with jax_enable_x64, else float32 (exact below 2**24, relative error <= 6e-8 above).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxnas.spaces.arch import Gates
from jaxnas.spaces.base import count_dtype
from jaxnas.spaces.nb201 import cell as nb


def _as_arch(arch):
    """Concrete inputs are validated (range, shape); jax arrays and tracers pass as they are. A
    `Gates` mask stays a `Gates` of a jnp array (its shape checked)."""
    if isinstance(arch, Gates):
        mask = jnp.asarray(arch.value)
        if mask.shape[-2:] != (nb.NUM_EDGES, nb.NUM_OPS):
            raise ValueError(f"an NB201 mask must have shape [..., {nb.NUM_EDGES}, {nb.NUM_OPS}], got "
                             f"{mask.shape}")
        return Gates(mask)
    if not isinstance(arch, jax.Array):
        arch = nb.validate(arch)
    elif arch.ndim == 0 or arch.shape[-1] != nb.NUM_EDGES:
        raise ValueError(f"NB201 architecture must have shape [..., {nb.NUM_EDGES}], got {arch.shape}")
    return jnp.asarray(arch)


def _check_config(C, N, num_classes, image_size=None):
    for name, v in (("C", C), ("N", N), ("num_classes", num_classes)):
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if image_size is not None and (not isinstance(image_size, (int, np.integer)) or image_size < 4
                                   or image_size % 4):
        # two stride-2 reductions whose conv and AvgPool2x2 shortcut must agree in size
        raise ValueError(f"image_size must be a positive multiple of 4, got {image_size!r}")


def _total(fixed: int, per_op: tuple[int, ...], arch):
    """fixed + sum over edges of per_op[op id], as jnp on `arch` (int32[..., 6]), or of per_op[k]
    for every op k a `Gates` mask keeps."""
    biggest = fixed + nb.NUM_EDGES * (sum(per_op) if isinstance(arch, Gates) else max(per_op))
    dtype = count_dtype(biggest)
    kept = arch.value.astype(bool) if isinstance(arch, Gates) else None
    out = jnp.full(arch.value.shape[:-2] if kept is not None else arch.shape[:-1], fixed, dtype)
    for op, cost in enumerate(per_op):
        if cost:
            count = kept[..., op] if kept is not None else (arch == op)
            out = out + count.sum(-1).astype(dtype) * jnp.asarray(cost, dtype)
    return out


def _cell_op_params(c: int) -> tuple[int, ...]:
    """Parameters of each op (indexed by op id) on one edge of a cell with c channels."""
    costs = [0] * nb.NUM_OPS
    costs[nb.CONV1] = c * c + 2 * c  # 1x1 kernel + BN scale, bias
    costs[nb.CONV3] = 9 * c * c + 2 * c
    return tuple(costs)


def _cell_op_flops(c: int, hw: int) -> tuple[int, ...]:
    """MACs of each op (indexed by op id) on one edge of a cell with c channels and hw pixels."""
    costs = [0] * nb.NUM_OPS
    costs[nb.CONV1] = c * c * hw
    costs[nb.CONV3] = 9 * c * c * hw
    return tuple(costs)


def _sum_ops(tables) -> tuple[int, ...]:
    return tuple(sum(t[o] for t in tables) for o in range(nb.NUM_OPS))


def params(arch, C: int = 16, N: int = 5, num_classes: int = 10):
    """Trainable parameters of the standalone network of `arch` (int32[..., 6]) -> [...] array.

    BatchNorm scale and bias count, running statistics do not (module docstring). With the
    defaults this is NB201's CIFAR-10 `params` times 1e6."""
    _check_config(C, N, num_classes)
    arch = _as_arch(arch)
    fixed = 27 * C + 2 * C  # stem conv 3x3x3xC, BN
    for c in (C, 2 * C):  # ResNet blocks c -> 2c
        fixed += 9 * c * 2 * c + 2 * 2 * c  # conv_a 3x3/2 + BN
        fixed += 9 * 2 * c * 2 * c + 2 * 2 * c  # conv_b 3x3 + BN
        fixed += c * 2 * c  # shortcut conv 1x1
    fixed += 2 * 4 * C + 4 * C * num_classes + num_classes  # head BN, linear + bias
    per_op = _sum_ops([_cell_op_params(c) for c in (C, 2 * C, 4 * C)] * N)  # 3N cells
    return _total(fixed, per_op, arch)


def flops(arch, C: int = 16, N: int = 5, num_classes: int = 10, image_size: int = 32):
    """Multiply-accumulates of one image's forward pass through the network of `arch`.

    Counts Conv2d and Linear MACs (plus the linear bias), not BatchNorm, ReLU, pooling or additions:
    NB201's convention (xautodl `get_model_infos`, module docstring). With the defaults this is
    NB201's CIFAR-10 `flops` times 1e6; (num_classes=120, image_size=16) is ImageNet16-120."""
    _check_config(C, N, num_classes, image_size)
    arch = _as_arch(arch)
    hw = image_size * image_size
    fixed = 27 * C * hw  # stem conv 3x3, 3 -> C
    tables = []
    for stage, c in enumerate((C, 2 * C, 4 * C)):
        pixels = hw >> (2 * stage)
        if stage:  # ResNet block c/2 -> c, output at `pixels`
            fixed += (9 * (c // 2) * c + 9 * c * c + (c // 2) * c) * pixels  # conv_a, conv_b, shortcut
        tables += [_cell_op_flops(c, pixels)] * N
    fixed += 4 * C * num_classes + num_classes  # linear + bias
    return _total(fixed, _sum_ops(tables), arch)

"""PGNAS's hybrid multi-kernel network as a `Space` (`--space hybrid`): an architecture is a keep-mask
over the input channels of every kernel branch (`network` explains the network and the encoding).

Sizes come from the config's `hybrid` section (`configure`); the registered instance has the defaults.
"""
from __future__ import annotations

import string

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxnas.spaces.base import Space, count_dtype, digest
from jaxnas.spaces.hybrid import network
from jaxnas.spaces.hybrid.network import KERNELS, NUM_KERNELS


class HybridSpace(Space):
    """Architectures bool[L, S, 4C] (see `network`); `sample` keeps each real channel with
    probability 1/2 (every mask equally likely)."""

    name = "hybrid"
    arch_fields = ("C", "blocks")

    def __init__(self, C: int = 16, blocks: int = 4):
        if C < NUM_KERNELS or C % NUM_KERNELS or blocks < 1:
            raise ValueError(f"hybrid needs C a positive multiple of {NUM_KERNELS} and blocks >= 1, got "
                             f"C={C}, blocks={blocks}")
        self.C, self.blocks = C, blocks
        self.layers = network.layers(C, blocks)
        self.valid = network.channel_valid(C, blocks)

    def configure(self, cfg) -> HybridSpace:
        """The space of the config's sizes (`hybrid.C`, `hybrid.blocks`)."""
        return self if (cfg.hybrid.C, cfg.hybrid.blocks) == (self.C, self.blocks) else HybridSpace(
            cfg.hybrid.C, cfg.hybrid.blocks)

    def relative_cost(self, cfg) -> float:
        """Blocks x channels², relative to the paper's C=16, 4 blocks per stage."""
        return (cfg.hybrid.blocks / 4) * (cfg.hybrid.C / 16) ** 2

    @property
    def spec(self):
        return jax.ShapeDtypeStruct(self.valid.shape, jnp.bool_)

    def sample(self, key, k, state=None):
        return jax.random.bernoulli(key, 0.5, (k, *self.valid.shape)) & jnp.asarray(self.valid)

    def validate(self, arch):
        a = np.asarray(arch)
        if a.shape[-3:] != self.valid.shape:
            raise ValueError(f"a hybrid architecture (C={self.C}, blocks={self.blocks}) has shape "
                             f"{self.valid.shape}, got {a.shape}")
        if a.dtype != bool and not np.isin(a, (0, 1)).all():
            raise ValueError("a hybrid architecture is a keep-mask of 0/1 (bool) values")
        a = a.astype(bool)
        if (a & ~self.valid).any():
            raise ValueError("a hybrid architecture keeps a padding channel (beyond a layer's input "
                             "channels)")
        return a

    def _prefix(self):
        return f"hybrid-C{self.C}-b{self.blocks}:"

    def to_string(self, arch):
        """'hybrid-C8-b1:' then per layer '/'-separated, per branch ','-separated hex of the kept
        channels' bits (channel 0 = lowest bit)."""
        a = self.validate(arch)
        parts = []
        for layer, (cin, _, _) in enumerate(self.layers):
            width = -(-cin // 4)
            parts.append(",".join(format(sum(1 << int(i) for i in np.flatnonzero(a[layer, s, :cin])),
                                         f"0{width}x")
                                  for s in range(NUM_KERNELS)))
        return self._prefix() + "/".join(parts)

    def from_string(self, text):
        text = text.strip()
        if not text.startswith(self._prefix()):
            raise ValueError(f"a hybrid architecture string of this space starts with {self._prefix()!r}, "
                             f"got {text[:24]!r} (set hybrid.C / hybrid.blocks to the string's sizes)")
        layers = text[len(self._prefix()):].split("/")
        if len(layers) != len(self.layers):
            raise ValueError(f"expected {len(self.layers)} '/'-separated layers, got {len(layers)}")
        a = np.zeros(self.valid.shape, bool)
        for layer, (part, (cin, _, _)) in enumerate(zip(layers, self.layers)):
            branches = part.split(",")
            if len(branches) != NUM_KERNELS:
                raise ValueError(f"layer {layer}: expected {NUM_KERNELS} ','-separated branches, "
                                 f"got {part!r}")
            for s, h in enumerate(branches):
                if not h or h.strip(string.hexdigits):
                    raise ValueError(f"layer {layer}, branch {KERNELS[s][0]}: {h!r} is not hex")
                bits = int(h, 16)
                if bits >> cin:
                    raise ValueError(f"layer {layer}, branch {KERNELS[s][0]}: {h!r} keeps channels beyond "
                                     f"{cin}")
                a[layer, s, :cin] = [(bits >> i) & 1 for i in range(cin)]
        return a

    def hash(self, arch):
        a = self.validate(arch)
        flat = a.reshape(-1, self.valid.size)
        out = [digest(self._prefix(), np.packbits(row).tobytes()) for row in flat]
        return np.asarray(out, np.int64).reshape(a.shape[:-3])

    def init_state(self):
        return {}

    def cost(self, arch, num_classes: int = 10, image_size: int = 32) -> dict:
        """Traceable {"params", "flops"} of the pruned network of `arch` (leading batch axes allowed).
        NB201's conventions (`jaxnas.spaces.nb201.cost`): params count every trainable tensor, BN
        scale and bias included; flops are multiply-accumulates of one image, convs and the linear
        layer (its bias included), nothing else; in `count_dtype` of the full network's counts."""
        C = self.C
        kept = jnp.asarray(arch).sum(-1)  # [..., L, S] kept input channels per branch
        ksq = np.array([k * k for _, k, _ in KERNELS])
        out = np.array([c_out // NUM_KERNELS for _, c_out, _ in self.layers])
        size = [image_size]
        for _, _, stride in self.layers:
            size.append(size[-1] // stride)
        pixels = np.array([s * s for s in size[1:]])
        params_const, flops_const = 27 * C + 2 * C, 27 * C * image_size ** 2
        for layer, (cin, cout, stride) in enumerate(self.layers):
            params_const += 2 * cout  # the BatchNorm after the hybrid conv
            if layer % 2 == 0 and (stride != 1 or cin != cout):  # the block's shortcut conv + BN
                params_const += cin * cout + 2 * cout
                flops_const += cin * cout * pixels[layer]
        params_const += 4 * C * num_classes + num_classes
        flops_const += 4 * C * num_classes + num_classes
        per_channel_params = out[:, None] * ksq[None, :]  # [L, S]
        per_channel_flops = per_channel_params * pixels[:, None]
        full_kept = self.valid.sum(-1)
        dtype = count_dtype(max(params_const + (per_channel_params * full_kept).sum(),
                                flops_const + (per_channel_flops * full_kept).sum()))
        kept = kept.astype(dtype)
        return {"params": params_const + (kept * per_channel_params.astype(dtype)).sum((-2, -1)),
                "flops": flops_const + (kept * per_channel_flops.astype(dtype)).sum((-2, -1))}

    def sparsity(self, arch) -> dict:
        """Fraction of real input channels dropped, per kernel branch and overall (paper Table 7)."""
        a = self.validate(arch)
        dropped = (self.valid & ~a).sum((-3, -1)) / self.valid.sum((-3, -1))
        return {**{name: float(np.mean(d)) for (name, _, _), d in zip(KERNELS, np.moveaxis(dropped, -1, 0))},
                "all": float(np.mean((self.valid & ~a).sum((-3, -2, -1)) / self.valid.sum()))}

    # --- networks ----------------------------------------------------------------------------
    def supernet(self, num_classes: int = 10, *, seed: int = 0):
        return network.HybridSuperNet(self.C, self.blocks, num_classes, rngs=nnx.Rngs(seed))

    def network(self, arch, num_classes: int = 10, *, seed: int = 0):
        """The pruned standalone network of `arch`, freshly initialised (`jaxnas train`)."""
        return network.HybridNetwork(self.validate(arch), self.C, self.blocks, num_classes,
                                     rngs=nnx.Rngs(seed))

    def build_supernet(self, section, num_classes, *, seed):
        """The supernet at this space's sizes (`configure` made them the section's)."""
        return self.supernet(num_classes, seed=seed)

    def build_network(self, arch, section, num_classes, *, seed):
        return self.network(arch, num_classes, seed=seed)

    def used_params(self, params, arch):
        """Every parameter: a dropped channel's kernel slice gets a zero gradient through the mask
        (weight decay still reaches it)."""
        return jax.tree.map(lambda _: True, params)


SPACE = HybridSpace()

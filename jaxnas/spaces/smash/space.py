"""SMASH's memory-bank space as a `Space` (`--space smash`; Brock et al., ICLR 2018, section 3.1).

An architecture is a dict of fixed-shape arrays (L = `smash.max_layers`, B = the widest block's
banks of N channels, 3 blocks; padding layers and banks are zeros):

    bank_size int32[3]         bs: a block's banks have bs * N channels
    layers    int32[3]         how many of the L layer slots the block uses
    read      bool[3, L, B]    the banks a layer reads (concatenated in bank order)
    write     bool[3, L, B]    the banks it adds its output into (write j gets output slice j mod G/bs)
    G         int32[3, L]      its output units in N's (a multiple of bs, at most N_max / N)
    op        int32[3, L]      its op configuration (`layout.OPTIONS`: which of its 4 convs run)
    kernel    int32[3, L, 4, 2]  each conv's kernel height and width, from {3, 5, 7}
    dilation  int32[3, L, 4, 2]  each conv's dilation per axis
    groups    int32[3, L, 4]   each conv's groups (divisors of N up to max_groups)

The convs an op configuration leaves inactive carry canonical values (3x3, dilation 1, 1 group), so
one network has one array form. `sample` is the reference's `sample_architecture` written as a
traceable loop over the layer slots and `perturb` its `perturb_architecture` (the `sampler` module);
`encode` lays out the HyperNet's input (`encoding`); `to_reference` / `from_reference` convert to
and from the reference's ragged 10-tuple.

The space state anneals the sampler during training as SMASH.py `update_lr` does:
{"max_budget": float32, "max_kernel": int32}. The stateless draw, and `init_state()`, are the final
values (budget up to 1.0, kernels up to `smash.max_kernel`): the distribution the search ranks.
"""
from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxnas import backend
from jaxnas.spaces.base import Space, digest
from jaxnas.spaces.smash import derived, eager, encoding, network, sampler
from jaxnas.spaces.smash.config import PRESETS as config_presets
from jaxnas.spaces.smash.config import Smash
from jaxnas.spaces.smash.layout import BLOCKS, CONVS, OPTIONS, Layout

_FIELDS = sampler.FIELDS
_TINY = {k.split(".")[1]: v for k, v in config_presets["tiny"].items()}


def _program_size(lay: Layout) -> float:
    """Multiply-adds of the fixed-shape program's convs per image, up to a constant."""
    return sum(lay.layer_slots(b) * (32 / 2 ** b) ** 2 for b in range(BLOCKS)) * (lay.N_max * lay.extent) ** 2


def _exact_size(lay: Layout) -> float:
    """Multiply-adds of a sampled architecture's convs per image, up to a constant: the blocks' read
    budgets at their resolutions x N_max units x the largest kernel's taps."""
    pixels = sum(c * (32 / 2 ** b) ** 2 for b, c in enumerate(lay.budget_channels))
    return pixels * lay.N_max * lay.max_kernel ** 2


class SmashSpace(Space):
    """Memory-bank architectures of one `smash` configuration (see the module docstring)."""

    name = "smash"
    arch_fields = ("depth", "width", "N", "N_max", "bottleneck", "max_bottleneck", "depth_compression",
                   "max_kernel", "max_groups", "ops", "max_layers")

    host_passes = eager  # capability: the HyperNet network with exact shapes on the host tape

    def __init__(self, section: Smash | None = None):
        self.config = section or Smash()
        self.config.check()
        self.layout = Layout.of(self.config)

    def configure(self, cfg) -> SmashSpace:
        """The space of the config's `smash` sizes."""
        return self if cfg.smash == self.config else SmashSpace(cfg.smash)

    def host_path(self, cfg) -> bool:
        """`smash.impl`: eager, or auto on CPU (BENCHMARKS.md 15c: exact shapes on the host against
        the traced program's widest shapes)."""
        return backend.host_path(cfg.smash.impl)

    def relative_cost(self, cfg) -> float:
        """The network's convolution work relative to the `tiny` preset's (BENCHMARKS.md 15b, 15c):
        the traced program's (every layer slot at the largest extent over N_max units, `MainNet`),
        or on the host path the architectures' own (their read budget x N_max units x the largest
        kernel's taps, per pixel)."""
        size = _exact_size if self.host_path(cfg) else _program_size
        return size(self.configure(cfg).layout) / size(Layout.of(Smash(**_TINY)))

    @property
    def spec(self):
        return {k: jax.ShapeDtypeStruct(shape, dtype)
                for k, (shape, dtype) in sampler.shapes(self.layout).items()}

    # --- the space state: SMASH.py update_lr's annealing ----------------------------------------
    def init_state(self):
        return {"max_budget": jnp.float32(1.0), "max_kernel": jnp.int32(self.layout.max_kernel)}

    def annealed_state(self, progress):
        """The state at `progress` = step / total steps of training (SMASH.py `update_lr`): the budget
        bound rises linearly from 0.5 to 1 over the first half, the kernel bound from 3 in steps
        (3 + int((K - 3) // 2 * f * 2): kernels {3} below 1/8 of training, {3, 5} below 3/8 at K=7)."""
        f = jnp.minimum(jnp.asarray(progress, jnp.float32) / 0.5, 1.0)
        return {"max_budget": (0.5 + 0.5 * f).astype(jnp.float32),
                "max_kernel": (3 + jnp.floor((self.layout.max_kernel - 3) // 2 * f * 2)).astype(jnp.int32)}

    def sample(self, key, k, state=None):
        state = self.init_state() if state is None else state
        return jax.vmap(lambda kk: sampler.sample_one(self.layout, kk, state))(jax.random.split(key, k))

    def encode(self, arch, state=None):
        """The HyperNet's encoding c of one architecture, float32 [C_c, k, S_pad] (`encoding.encode`;
        vmap for a batch), by `smash.encoding`; `state` gives the annealed kernel bound the
        reference's field widths follow. `encoding.column_mask` says which columns are in use."""
        reference = self.config.encoding == "reference"
        max_kernel = None if state is None else state["max_kernel"]
        return encoding.encode(self.layout, arch, max_kernel, reference)

    def with_noise(self, key, archs, state=None):
        """The candidates the network reads (`network.with_noise`): `archs` (leading K axis) each with
        its own z ~ N(0, I) from `key` and, for the reference encoding, the state's kernel bound."""
        k = archs["bank_size"].shape[0]
        z = network.noise(key, self.layout, k)
        bound = None
        if self.config.encoding == "reference":
            state = self.init_state() if state is None else state
            bound = jnp.broadcast_to(state["max_kernel"], (k,))
        return network.with_noise(archs, z, bound)

    def perturb(self, key, archs, p: float = 0.05):
        """A perturbation of each of `archs` (leading K axis): every draw of every layer redone
        with probability p (`sampler.perturb_one`; the selection's perturb and Markov steps).
        Traceable."""
        k = archs["bank_size"].shape[0]
        return jax.vmap(lambda kk, a: sampler.perturb_one(self.layout, kk, a, p))(jax.random.split(key, k),
                                                                                   archs)

    # --- host forms ---------------------------------------------------------------------------
    def validate(self, arch):
        if not isinstance(arch, dict) or set(arch) != set(_FIELDS):
            raise ValueError(f"a smash architecture is a dict of the arrays {', '.join(_FIELDS)}")
        spec = self.spec
        a = {k: np.asarray(arch[k]) for k in _FIELDS}
        batch = a["bank_size"].shape[:-1]
        for k in _FIELDS:
            if a[k].shape != (*batch, *spec[k].shape):
                raise ValueError(f"smash field {k!r} has shape {a[k].shape}, expected "
                                 f"{(*batch, *spec[k].shape)} (smash.max_layers={self.layout.max_layers})")
            if spec[k].dtype == jnp.bool_:
                if a[k].dtype != bool and not np.isin(a[k], (0, 1)).all():
                    raise ValueError(f"smash field {k!r} must be 0/1")
                a[k] = a[k].astype(bool)
            else:
                if not np.issubdtype(a[k].dtype, np.integer):
                    raise ValueError(f"smash field {k!r} must hold integers, got {a[k].dtype}")
                a[k] = a[k].astype(np.int32)
        for index in np.ndindex(*batch):
            sampler.check_one(self.layout, {k: v[index] for k, v in a.items()})
        return a

    def _prefix(self):
        c = self.config
        return (f"smash-d{c.depth}w{c.width}N{c.N}M{c.N_max}b{c.bottleneck}m{c.max_bottleneck}"
                f"c{c.depth_compression}L{c.max_layers}:")

    def to_string(self, arch):
        """'<sizes>:' then per block 'bs<bank size>' and its layers, ';'-separated:
        'r<reads>w<writes>G<units>o<op>k<h>x<w>d<h>x<w>g<groups>', banks '+'-joined, one k..g group
        per active conv ','-joined; blocks '/'-separated. E.g. 'bs1=r0+3w3+8G2o0k3x5d1x2g4;...'."""
        a = self.validate(arch)
        blocks = []
        for b in range(BLOCKS):
            layers = []
            for i in range(a["layers"][b]):
                convs = [f"k{a['kernel'][b, i, j, 0]}x{a['kernel'][b, i, j, 1]}d{a['dilation'][b, i, j, 0]}x"
                         f"{a['dilation'][b, i, j, 1]}g{a['groups'][b, i, j]}"
                         for j in range(CONVS) if OPTIONS[a["op"][b, i]][j]]
                layers.append(f"r{'+'.join(map(str, np.flatnonzero(a['read'][b, i])))}"
                              f"w{'+'.join(map(str, np.flatnonzero(a['write'][b, i])))}"
                              f"G{a['G'][b, i]}o{a['op'][b, i]}{','.join(convs)}")
            blocks.append(f"bs{a['bank_size'][b]}=" + ";".join(layers))
        return self._prefix() + "/".join(blocks)

    _LAYER = re.compile(r"r(\d+(?:\+\d+)*)w(\d+(?:\+\d+)*)G(\d+)o(\d+)((?:k\d+x\d+d\d+x\d+g\d+,?)+)")
    _CONV = re.compile(r"k(\d+)x(\d+)d(\d+)x(\d+)g(\d+)")

    def from_string(self, text):
        text = text.strip()
        if not text.startswith(self._prefix()):
            raise ValueError(f"a smash architecture string of this space starts with {self._prefix()!r}, "
                             f"got {text[:32]!r} (set the smash section's sizes to the string's)")
        parts = text[len(self._prefix()):].split("/")
        if len(parts) != BLOCKS:
            raise ValueError(f"expected {BLOCKS} '/'-separated blocks, got {len(parts)}")
        a = sampler.empty(self.layout)
        for b, part in enumerate(parts):
            head, eq, body = part.partition("=")
            if not eq or not re.fullmatch(r"bs\d+", head):
                raise ValueError(f"block {b}: expected 'bs<bank size>=<layers>', got {part[:24]!r}")
            a["bank_size"][b] = int(head[2:])
            layers = body.split(";") if body else []
            if len(layers) > self.layout.max_layers:
                raise ValueError(f"block {b}: {len(layers)} layers, more than smash.max_layers="
                                 f"{self.layout.max_layers}")
            a["layers"][b] = len(layers)
            for i, layer in enumerate(layers):
                m = self._LAYER.fullmatch(layer)
                if not m:
                    raise ValueError(f"block {b}, layer {i}: {layer[:40]!r} is not "
                                     "'r<banks>w<banks>G<n>o<n>k<h>x<w>d<h>x<w>g<n>'")
                reads, writes = ([int(x) for x in g.split("+")] for g in m.group(1, 2))
                if max(reads + writes) >= self.layout.max_banks:
                    raise ValueError(f"block {b}, layer {i}: bank {max(reads + writes)} is beyond the "
                                     f"{self.layout.max_banks} banks of this space")
                a["read"][b, i, reads] = True
                a["write"][b, i, writes] = True
                a["G"][b, i], a["op"][b, i] = int(m.group(3)), int(m.group(4))
                if a["op"][b, i] >= len(OPTIONS):
                    raise ValueError(f"block {b}, layer {i}: op {a['op'][b, i]} is not one of "
                                     f"0..{len(OPTIONS) - 1}")
                convs = [c for c in m.group(5).split(",") if c]
                active = [j for j in range(CONVS) if OPTIONS[a["op"][b, i]][j]]
                if len(convs) != len(active):
                    raise ValueError(f"block {b}, layer {i}: op {a['op'][b, i]} has {len(active)} convs, "
                                     f"the string gives {len(convs)}")
                for j, conv in zip(active, convs):
                    kh, kw, dh, dw, g = map(int, self._CONV.fullmatch(conv).groups())
                    a["kernel"][b, i, j], a["dilation"][b, i, j], a["groups"][b, i, j] = (kh, kw), (dh, dw), g
        sampler.canonicalise(a)
        return self.validate(a)

    def hash(self, arch):
        a = self.validate(arch)
        batch = a["bank_size"].shape[:-1]
        out = np.empty(batch, np.int64)
        for index in np.ndindex(*batch):
            out[index] = digest(self._prefix(), b"".join(np.ascontiguousarray(a[k][index]).tobytes()
                                                         for k in _FIELDS))
        return out

    def cost(self, arch, num_classes: int = 10, image_size: int = 32) -> dict:
        """Traceable {"params": int32, "flops": float32} of the network SMASH trains from scratch
        (leading batch axes allowed), by the reference's counters (ajbrock/SMASH utils.py
        `count_params` / `count_flops`, so numbers compare with the paper's): per layer the 1x1
        conv and its input BN, each active conv (bottleneck n_b uncapped, as MainNet builds it)
        and its BN; per block the transition (the last block's: the classifier). Like the
        reference they leave out the stem, the second BN and biases, and count flops as
        multiply-accumulates of one image's layers only; num_classes replaces its hard-coded 100."""
        lay = self.layout
        a = {k: jnp.asarray(v) for k, v in arch.items()}
        bs = a["bank_size"][..., :, None]                                    # [..., 3, 1]
        live = jnp.arange(lay.max_layers) < a["layers"][..., :, None]        # [..., 3, L]
        n_in = bs * a["read"].sum(-1) * lay.N                                 # [..., 3, L]
        units = a["G"] * lay.N
        n_b = network.bottleneck(lay, n_in, units)
        active = jnp.asarray(OPTIONS, bool)[a["op"]] & live[..., None]       # [..., 3, L, 4]
        c_in = jnp.where(jnp.arange(CONVS) % 2 == 1, units[..., None], n_b[..., None])
        conv = c_in * units[..., None] * a["kernel"][..., 0] * a["kernel"][..., 1] // a["groups"].clip(1)
        params = (jnp.where(live, n_in + n_in * n_b, 0).sum(-1)
                  + jnp.where(active, c_in + conv, 0).sum((-2, -1)))
        n_t = network.used_channels(lay, a)                                   # [..., 3]
        params = params + n_t + n_t * jnp.asarray([*lay.in_channels[1:], num_classes])
        pixels = jnp.asarray([(image_size // 2 ** b) ** 2 for b in range(BLOCKS)], jnp.float32)
        flops = (jnp.where(live, n_in * n_b, 0).sum(-1).astype(jnp.float32)
                 + jnp.where(active, conv, 0).sum((-2, -1)).astype(jnp.float32)) * pixels
        return {"params": params.sum(-1).astype(jnp.int32), "flops": flops.sum(-1)}

    # --- the network half ------------------------------------------------------------------------
    def build_hypernet(self, section, num_classes, *, seed):
        """The HyperNet and the memory-bank main network (`network.SmashNet`) at this space's sizes
        (`configure` made them the section's); its forward reads the candidates `with_noise` makes."""
        return network.SmashNet(self.layout, num_classes, self.config.encoding == "reference",
                                rngs=nnx.Rngs(seed))

    def build_network(self, arch, section, num_classes, *, seed):
        """The network SMASH trains from scratch for `arch` (`derived.SmashNetwork`: the reference's
        MainNet, exact shapes), at this space's sizes (`jaxnas train`)."""
        return derived.SmashNetwork(self.validate(arch), self.layout, num_classes, rngs=nnx.Rngs(seed))

    def used_params(self, params, arch):
        """Every parameter: a layer reads slices of its block's shared kernels, and what it leaves
        gets a zero gradient (the reference's dense gradients; weight decay still reaches it)."""
        return jax.tree.map(lambda _: True, params)

    # --- the reference's form --------------------------------------------------------------------
    def to_reference(self, arch) -> tuple:
        """The reference's ragged 10-tuple (incoming, outgoing, G, ops, gate, dilation, activation,
        bank_sizes, kernel_sizes, groups) of one architecture, Python ints (SMASH.py
        `sample_architecture`'s return value; gates and activations are the defaults, 0)."""
        a = self.validate(arch)
        if a["bank_size"].ndim != 1:
            raise ValueError("to_reference converts one architecture")
        out = tuple([[] for _ in range(BLOCKS)] for _ in range(7))
        incoming, outgoing, G, ops, gate, dilation, activation = out
        kernels, groups = [[] for _ in range(BLOCKS)], [[] for _ in range(BLOCKS)]
        for b in range(BLOCKS):
            for i in range(a["layers"][b]):
                incoming[b].append([int(x) for x in np.flatnonzero(a["read"][b, i])])
                outgoing[b].append([int(x) for x in np.flatnonzero(a["write"][b, i])])
                G[b].append(int(a["G"][b, i]))
                ops[b].append(list(OPTIONS[a["op"][b, i]]))
                gate[b].append([0, 0])
                dilation[b].append(a["dilation"][b, i].tolist())
                activation[b].append([0] * CONVS)
                kernels[b].append(a["kernel"][b, i].tolist())
                groups[b].append(a["groups"][b, i].tolist())
        return (incoming, outgoing, G, ops, gate, dilation, activation,
                [int(x) for x in a["bank_size"]], kernels, groups)

    def from_reference(self, arch: tuple):
        """Inverse of `to_reference` (a tuple the reference sampled or saved, its first 10 entries).
        Writes must be ascending (as the reference's sampler makes them): the arrays keep only which
        banks are written, in bank order. The inactive convs' values become the canonical ones."""
        if len(arch) < 10:
            raise ValueError(f"a reference SMASH architecture is a 10-tuple, got {len(arch)} entries")
        incoming, outgoing, G, ops, gate, dilation, activation, bank_sizes, kernels, groups = arch[:10]
        a = sampler.empty(self.layout)
        a["bank_size"][:] = [int(x) for x in bank_sizes]
        for b in range(BLOCKS):
            n = len(incoming[b])
            if n > self.layout.max_layers:
                raise ValueError(f"block {b}: {n} layers, more than smash.max_layers="
                                 f"{self.layout.max_layers}")
            a["layers"][b] = n
            for i in range(n):
                writes = [int(x) for x in outgoing[b][i]]
                if writes != sorted(set(writes)):
                    raise ValueError(f"block {b}, layer {i}: writes {writes} are not ascending and distinct")
                if any(gate[b][i]) or any(activation[b][i]):
                    raise ValueError(f"block {b}, layer {i}: gates and activations other than ReLU are "
                                     "not supported (the reference marks gates broken)")
                if tuple(int(x) for x in ops[b][i]) not in OPTIONS:
                    raise ValueError(f"block {b}, layer {i}: op {list(ops[b][i])} is not a reference option")
                if max([int(x) for x in incoming[b][i]] + writes) >= self.layout.max_banks:
                    raise ValueError(f"block {b}, layer {i}: a bank beyond the {self.layout.max_banks} "
                                     "banks of this space")
                a["read"][b, i, [int(x) for x in incoming[b][i]]] = True
                a["write"][b, i, writes] = True
                a["G"][b, i] = int(G[b][i])
                a["op"][b, i] = OPTIONS.index(tuple(int(x) for x in ops[b][i]))
                a["kernel"][b, i] = np.asarray(kernels[b][i], np.int32)
                a["dilation"][b, i] = np.asarray(dilation[b][i], np.int32)
                a["groups"][b, i] = np.asarray(groups[b][i], np.int32)
        sampler.canonicalise(a)
        return self.validate(a)


SPACE = SmashSpace()

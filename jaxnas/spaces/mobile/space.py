"""NSE's mobile space as a `Space`: an architecture is `bool[cells, pool]`, the operators each cell
runs (a multi-branch cell averages them; docs/nse-reference.md section 3). An identity cell (N) may
select none (it is skipped); a reduction or expansion cell (R, E) selects at least one.

The space state is `{"active": bool[cells, pool]}`, the operators a cell may draw from (NSE's
evolving subset; `None` or the initial state: the whole pool). `sample` draws each active operator
with probability 1/2, redrawing a non-identity cell that got none (the reference's `balance`
sampler, su:994-1000: the whole draw is redrawn; cells are independent, so redrawing only the
empty ones gives the same law).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxnas import backend
from jaxnas.spaces.base import Space, count_dtype, digest
from jaxnas.spaces.mobile import eager
from jaxnas.spaces.mobile.config import Mobile
from jaxnas.spaces.mobile.layout import NAMES, Layout, op_name  # noqa: F401  (NAMES: the whole pool)
from jaxnas.spaces.mobile.network import MobileNetwork
from jaxnas.spaces.mobile.supernet import MobileSupernet


class MobileSpace(Space):
    name = "mobile"
    # `jaxnas train --arch-from`: a found architecture is retrained on the skeleton it was searched on
    # (the cells and pool fix its shape; widths and resolution are the network it was scored in;
    # override them on the command line to rescale, as the paper's 1.04x)
    arch_fields = ("alloc", "ops", "channels", "scale", "head", "resolution")
    host_passes = eager  # capability: the gated-on operators only, on the host tape (CPU)

    def __init__(self, section: Mobile | None = None):
        section = section or Mobile()
        section.check()
        self.config, self.layout = section, Layout.of(section)
        self.identity = self.layout.identity
        self.names = tuple(op_name(op) for op in self.layout.pool)  # this space's pool (`mobile.ops`)
        self.shape = (len(self.layout.cells), len(self.names))

    def host_path(self, cfg) -> bool:
        return backend.host_path(cfg.mobile.impl)

    def configure(self, cfg) -> MobileSpace:
        return self if cfg.mobile == self.config else MobileSpace(cfg.mobile)

    @property
    def spec(self):
        return jax.ShapeDtypeStruct(self.shape, jnp.bool_)

    def init_state(self):
        return {"active": jnp.ones(self.shape, jnp.bool_)}

    def sample(self, key, k, state=None):
        active = jnp.ones(self.shape, jnp.bool_) if state is None else jnp.asarray(state["active"])
        must = jnp.asarray(~self.identity) & active.any(-1)  # cells that must select an op (and can)

        def empty(g):
            return must & ~g.any(-1)

        def redraw(carry):
            g, key = carry
            key, sub = jax.random.split(key)
            fresh = jax.random.bernoulli(sub, 0.5, g.shape) & active
            return jnp.where(empty(g)[..., None], fresh, g), key

        k0, k1 = jax.random.split(key)
        first = jax.random.bernoulli(k0, 0.5, (k, *self.shape)) & active
        return jax.lax.while_loop(lambda c: empty(c[0]).any(), redraw, (first, k1))[0]

    def validate(self, arch):
        a = np.asarray(arch)
        if a.shape[-2:] != self.shape:
            raise ValueError(f"a mobile architecture of this space (mobile.alloc={self.config.alloc}) has "
                             f"shape {self.shape} (cells, pool), got {a.shape}")
        if a.dtype != bool and not np.isin(a, (0, 1)).all():
            raise ValueError("a mobile architecture is a bool[cells, pool] gate array of 0/1 values")
        a = a.astype(bool)
        none = ~a.any(-1) & ~self.identity
        if none.any():
            c = int(np.argwhere(none)[0][-1])
            cell = self.layout.cells[c]
            raise ValueError(f"cell {c} ({cell.kind}, {cell.cin}->{cell.cout} channels) selects no operator; "
                             "only identity cells (N) may be empty")
        return a

    def _prefix(self):
        return "mobile-a" + "".join(str(n) for n in self.config.alloc) + ":"

    def to_string(self, arch):
        """'mobile-a133333:' then per cell '|'-separated, its operators '+'-separated ('-': none)."""
        a = self.validate(arch)
        cells = ("+".join(self.names[i] for i in np.flatnonzero(row)) or "-" for row in a)
        return self._prefix() + "|".join(cells)

    def from_string(self, text):
        text = text.strip()
        if not text.startswith(self._prefix()):
            raise ValueError(f"a mobile architecture string of this space starts with {self._prefix()!r}, "
                             f"got {text[:24]!r} (set mobile.alloc to the string's cell counts)")
        cells = text[len(self._prefix()):].split("|")
        if len(cells) != self.shape[0]:
            raise ValueError(f"expected {self.shape[0]} '|'-separated cells, got {len(cells)}")
        a = np.zeros(self.shape, bool)
        for c, part in enumerate(cells):
            for name in ([] if part == "-" else part.split("+")):
                if name not in self.names:
                    raise ValueError(f"cell {c}: unknown operator {name!r}; the pool: "
                                     f"{', '.join(self.names)}")
                a[c, self.names.index(name)] = True
        return self.validate(a)

    def hash(self, arch):
        a = self.validate(arch)
        flat = a.reshape(-1, a.shape[-2] * a.shape[-1])
        return np.asarray([digest(self._prefix(), np.packbits(row).tobytes()) for row in flat],
                          np.int64).reshape(a.shape[:-2])

    def cost(self, arch, num_classes: int | None = None) -> dict:
        """Traceable {"params", "flops"} of the standalone network of `arch` (leading batch axes
        allowed): the stem, head and classifier (`num_classes`: 1000 at 224 pixels, 10 at 32) plus
        the selected operators (`Layout.tables`; flops are multiply-adds of one image, as the
        reference counts MACs), in `count_dtype` of the whole pool's counts."""
        macs, params = self.layout.tables
        back_m, back_p = self.layout.back(num_classes)
        out = {}
        for key, table, back in (("params", params, back_p), ("flops", macs, back_m)):
            dtype = count_dtype(back + table.sum())
            gates = jnp.asarray(arch).astype(dtype)
            out[key] = back + (gates * jnp.asarray(table, dtype)).sum((-2, -1))
        return out

    def cheapest_flops(self, num_classes: int | None = None) -> int:
        """Multiply-adds of the cheapest architecture: identity cells empty, every other cell its
        cheapest operator."""
        macs, _ = self.layout.tables
        return int(self.layout.back(num_classes)[0] + np.where(self.identity, 0, macs.min(-1)).sum())

    # --- networks ----------------------------------------------------------------------------
    def build_supernet(self, section, num_classes, *, seed):
        """NSE's supernet of a `mobile` config section: every pool operator of every cell."""
        return MobileSupernet(Layout.of(section), num_classes, rngs=nnx.Rngs(seed))

    def build_network(self, arch, section, num_classes, *, seed):
        """The standalone network of one architecture (`jaxnas train`)."""
        return MobileNetwork(Layout.of(section), self.validate(arch), num_classes, rngs=nnx.Rngs(seed))


SPACE = MobileSpace()

"""Device-side data pipeline: search splits, epoch batch orders, augmentation, normalisation.

Whole splits live on the device as uint8 and every step gathers, augments and normalises its batch
inside jit, so the host never touches images in the training loop and every step has fixed shapes
(partial batches are dropped), which keeps one compiled program for the whole search.
"""
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np


def weights_size(num_train: int, held_out: float) -> int:
    """How many of `num_train` training examples the search split leaves for the weights."""
    return int(num_train * (1.0 - held_out))


def search_split(num_train: int, seed: int, held_out: float = 0.5, labels=None,
                 held_out_from: str = "random") -> tuple[np.ndarray, np.ndarray]:
    """(weights, held-out) indices, each sorted: a seeded random `held_out` fraction of the training
    set is held out for architecture steps and ranking (NB201's search split: half; SMASH: 5k of 50k).

    `held_out_from="end"` (`train.held_out_from`) holds out instead the last `held_out` fraction of
    each class of `labels` in dataset order (SMASH holds out the last 5,000 images of CIFAR's
    training file, utils.py `get_data_loader`; the JPEG copy of CIFAR keeps only each class's file
    order, so the last images of each class stand in for the file's last ones); `seed` is unused."""
    if num_train < 2:
        raise ValueError(f"search_split needs at least 2 training examples, got {num_train}")
    n_weights = weights_size(num_train, held_out)
    if not 0 < n_weights < num_train:
        raise ValueError(f"held_out={held_out} leaves {n_weights} of {num_train} examples for the weights")
    if held_out_from == "end":
        labels = np.asarray(labels)
        tail = []
        for c in np.unique(labels):
            members = np.flatnonzero(labels == c)
            tail.append(members[weights_size(len(members), held_out):])
        held = np.sort(np.concatenate(tail)).astype(np.int32)
        return np.setdiff1d(np.arange(num_train, dtype=np.int32), held), held
    perm = np.random.default_rng(seed).permutation(num_train).astype(np.int32)
    return np.sort(perm[:n_weights]), np.sort(perm[n_weights:])


def epoch_order(key: jax.Array, n: int, batch_size: int) -> jax.Array:
    """A random permutation of range(n) cut into int32[n // batch_size, batch_size] full batches."""
    if not 0 < batch_size <= n:
        raise ValueError(f"batch_size must be in [1, n={n}], got {batch_size}")
    num_batches = n // batch_size
    perm = jax.random.permutation(key, n)[: num_batches * batch_size]
    return perm.reshape(num_batches, batch_size).astype(jnp.int32)


def normalize(images: jax.Array, mean, std) -> jax.Array:
    """uint8 NHWC images to float32 standardised per channel (mean/std in [0, 1] units)."""
    x = jnp.asarray(images, jnp.float32) / 255.0
    return (x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)


@functools.partial(jax.jit, static_argnames="pad")
def augment(key: jax.Array, images: jax.Array, pad: int = 4) -> jax.Array:
    """Zero-pad by `pad`, random HxW crop and random horizontal flip, independently per image."""
    n, h, w, c = images.shape
    # One 32-bit draw per image gives its row shift, column shift and flip (bias < 1e-7); a single
    # `bits` call compiles several times faster on XLA:CPU than randint + bernoulli.
    span = 2 * pad + 1
    bits = jax.random.bits(key, (n,))
    dy, dx, flips = bits % span, bits // span % span, bits // (span * span) % 2 == 1
    padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))

    def one(image, y, x, flip):
        crop = jax.lax.dynamic_slice(image, (y, x, jnp.uint32(0)), (h, w, c))
        return jnp.where(flip, crop[:, ::-1], crop)

    return jax.vmap(one)(padded, dy, dx, flips)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class DeviceData:
    """One split's images (uint8 NHWC) and labels (int32) as device arrays; a pytree, so jit-able."""

    images: jax.Array
    labels: jax.Array

    @classmethod
    def put(cls, images, labels, sharding: jax.sharding.Sharding | None = None) -> DeviceData:
        """Copy host arrays to the device (or lay them out with `sharding`)."""
        return cls(jax.device_put(np.asarray(images, np.uint8), sharding),
                   jax.device_put(np.asarray(labels, np.int32), sharding))

    def __len__(self) -> int:
        return self.labels.shape[0]

    def batch(self, indices: jax.Array, out_sharding=None) -> tuple[jax.Array, jax.Array]:
        """Gather (images, labels) at `indices` on device, inside or outside jit.

        On a mesh pass `out_sharding` (e.g. NamedSharding(mesh, P('data'))), which explicit sharding
        requires; with replicated data and data-sharded indices each device gathers its rows locally.
        """
        return (self.images.at[indices].get(out_sharding=out_sharding),
                self.labels.at[indices].get(out_sharding=out_sharding))

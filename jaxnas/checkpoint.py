"""Orbax checkpointing of the whole search state (the only module that talks to Orbax).

Saves are synchronous and atomic (Orbax writes a temporary directory and renames it when done),
so a kill during a save leaves the previous checkpoint intact. Orbax checks a checkpoint's layout,
not its bytes: each save also records a SHA-256 of the state (`digests.json`), and a restored
state must match it and hold only finite floats. A checkpoint that cannot be restored or fails
that check is skipped with a warning and the previous one is used.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import pathlib
import warnings

import jax
import numpy as np
import orbax.checkpoint as ocp

logging.getLogger("absl").setLevel(logging.ERROR)


DIGESTS = "digests.json"


class CorruptCheckpoint(ValueError):
    """A checkpoint restored, but its contents are not what was saved."""


def state_digest(host_state) -> str:
    """SHA-256 over every leaf's dtype, shape and bytes, in tree order."""
    h = hashlib.sha256()
    for leaf in jax.tree.leaves(host_state):
        a = np.ascontiguousarray(np.asarray(leaf))
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _check_contents(host_state, expected: str | None) -> None:
    for path, leaf in jax.tree_util.tree_leaves_with_path(host_state):
        a = np.asarray(leaf)
        if np.issubdtype(a.dtype, np.floating) and not np.all(np.isfinite(a)):
            raise CorruptCheckpoint(f"non-finite values in {jax.tree_util.keystr(path)}")
    if expected is not None and state_digest(host_state) != expected:
        raise CorruptCheckpoint("its bytes differ from the SHA-256 recorded when it was saved")


class Checkpointer:
    """Save / restore `SearchState` pytrees under `directory`, keeping the newest `keep`."""

    def __init__(self, directory, keep: int = 2):
        self.directory = pathlib.Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=False,
                                               create=True)
        self._manager = ocp.CheckpointManager(self.directory, options=options)
        self.restored_step = None  # the step restore_latest returned

    def steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def _digests(self) -> dict:
        try:
            return json.loads((self.directory / DIGESTS).read_text())
        except (OSError, ValueError):
            return {}

    def _write_digests(self, digests: dict) -> None:
        tmp = self.directory / (DIGESTS + ".tmp")
        tmp.write_text(json.dumps(digests, indent=1, sort_keys=True))
        os.replace(tmp, self.directory / DIGESTS)

    def save(self, step: int, state) -> None:
        verify = jax.process_count() == 1  # a multi-host state is not addressable from one process
        if step in self._manager.all_steps():
            # Replace it: it may be one restore_latest skipped as unreadable (keeping it would leave
            # the run's newest state unsaved), or an older save of this step (e.g. before epoch end).
            self._manager.delete(step)
        if verify:
            # Save host copies: from arrays replicated over several local devices Orbax slices every
            # array once per device (thousands of small dispatches, seconds per save on CPU).
            # Restores are unchanged: arrays are laid out as the template asks.
            state = jax.device_get(state)
            # the digest goes first: a kill before Orbax finishes leaves a digest without a checkpoint
            self._write_digests({**self._digests(), str(step): state_digest(state)})
        self._manager.save(step, args=ocp.args.StandardSave(state), force=True)
        self._manager.wait_until_finished()
        if verify:  # forget the digests of checkpoints Orbax rotated out
            kept = {str(s) for s in self._manager.all_steps()}
            self._write_digests({k: v for k, v in self._digests().items() if k in kept})

    def restore_latest(self, template):
        """Restore the newest checkpoint shaped like `template` whose contents verify; None if none does."""
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
        digests = self._digests()
        for step in reversed(self.steps()):
            try:
                state = self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
                if jax.process_count() == 1:
                    _check_contents(jax.device_get(state), digests.get(str(step)))
                self.restored_step = step
                return state
            except Exception as err:  # corrupt or partial: fall back to the previous one
                warnings.warn(f"checkpoint {step} in {self.directory} could not be restored "
                              f"({type(err).__name__}: {str(err)[:200]}); trying the previous one",
                              stacklevel=2)
        return None

    def close(self) -> None:
        self._manager.close()

"""Orbax checkpointing of the whole search state (the only module that talks to Orbax).

Saves are synchronous and atomic (Orbax writes a temporary directory and renames it when done),
so a kill during a save leaves the previous checkpoint intact. If the newest checkpoint cannot be
restored (corrupt or partial), the previous one is used with a warning.
"""
from __future__ import annotations

import logging
import pathlib
import warnings

import jax
import orbax.checkpoint as ocp

logging.getLogger("absl").setLevel(logging.ERROR)


class Checkpointer:
    """Save / restore `SearchState` pytrees under `directory`, keeping the newest `keep`."""

    def __init__(self, directory, keep: int = 2):
        self.directory = pathlib.Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=False,
                                               create=True)
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def save(self, step: int, state) -> None:
        if step in self._manager.all_steps():
            # Replace it: it may be one restore_latest skipped as unreadable (keeping it would leave
            # the run's newest state unsaved), or an older save of this step (e.g. before epoch end).
            self._manager.delete(step)
        if jax.process_count() == 1:
            # Save host copies: from arrays replicated over several local devices Orbax slices every
            # array once per device (thousands of small dispatches, seconds per save on CPU).
            # Restores are unchanged: arrays are laid out as the template asks.
            state = jax.device_get(state)
        self._manager.save(step, args=ocp.args.StandardSave(state), force=True)
        self._manager.wait_until_finished()

    def restore_latest(self, template):
        """Restore the newest readable checkpoint shaped like `template`; None if there is none."""
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
        for step in reversed(self.steps()):
            try:
                return self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
            except Exception as err:  # corrupt or partial: fall back to the previous one
                warnings.warn(f"checkpoint {step} in {self.directory} could not be restored "
                              f"({type(err).__name__}: {str(err)[:200]}); trying the previous one")
        return None

    def close(self) -> None:
        self._manager.close()

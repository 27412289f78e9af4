"""Orbax checkpoints of everything the learner needs to resume exactly: state, replay memory, counters, config.

Saves are atomic (orbax writes a temporary folder and renames it when complete) and the last
`KEEP` are kept, so a truncated or corrupt newest checkpoint is reported and the previous good
one is used instead.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

KEEP = 3
log = logging.getLogger("tmrlx.learner")


class Checkpoints:
    """The checkpoints of one run under `checkpoints_dir()/RUN_NAME`."""

    def __init__(self, directory: Path):
        self.directory = Path(directory).absolute()
        self.manager = ocp.CheckpointManager(
            self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=KEEP, create=True))

    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps(), reverse=True)

    def save(self, step: int, arrays: Any, meta: dict) -> None:
        """Write `arrays` (a pytree of device arrays) and `meta` (JSON) as checkpoint `step`, and wait for it."""
        if step in self.manager.all_steps():
            self.manager.delete(step)
        self.manager.save(step, args=ocp.args.Composite(arrays=ocp.args.StandardSave(arrays), meta=ocp.args.JsonSave(meta)))
        self.manager.wait_until_finished()

    def read_meta(self, step: int) -> dict:
        return dict(self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"])

    def restore(self, like: Any) -> tuple[int, Any, dict] | None:
        """The newest readable checkpoint as (step, arrays shaped like `like`, meta), or None when there is none.

        A checkpoint that fails to load is reported (logged) and the previous one is tried.
        """
        target = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        for step in self.steps():
            try:
                out = self.manager.restore(step, args=ocp.args.Composite(
                    arrays=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
                return step, out["arrays"], dict(out["meta"])
            except Exception as e:  # orbax/tensorstore raise many types for truncated or corrupt files
                first_line = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
                log.warning("checkpoint %s is unreadable (%s); trying the previous one", self.directory / str(step), first_line)
        return None

    def close(self) -> None:
        self.manager.close()

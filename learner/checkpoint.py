"""Orbax checkpoints of everything the learner needs to resume exactly: state, replay memory, counters, config.

Saves are atomic (orbax writes `<step>.orbax-checkpoint-tmp-*` and renames it when complete) and the
last `KEEP` are kept, so a truncated or corrupt newest checkpoint (arrays or meta) is reported and the
previous good one is used instead; the temporary folder of a save that was killed is removed at start.
The last published weights version and the rows ingested by then are kept beside them, written at
every publication: versions published after the last save must not repeat after a kill, and what a
kill lost (rows ingested after the last save) is reported on resume.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

KEEP = 3
UNFINISHED = "*.orbax-checkpoint-tmp*"  # orbax's temporary step folders (its TMP_DIR_SUFFIX)
PUBLISHED = "published.json"
log = logging.getLogger("tmrlx.learner")


class Checkpoints:
    """The checkpoints of one run under `checkpoints_dir()/RUN_NAME`."""

    def __init__(self, directory: Path):
        self.directory = Path(directory).absolute()
        self.manager = ocp.CheckpointManager(
            self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=KEEP, create=True),
            item_handlers={"arrays": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()})  # `layout` reads
        # the arrays' metadata before anything was restored: orbax must know their handler from the start

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

    def layout(self, step: int) -> Any:
        """The arrays checkpoint `step` holds, as a tree of `jax.ShapeDtypeStruct` (nested dicts), read from its metadata."""
        tree = self.manager.item_metadata(step)["arrays"].tree
        return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), tree)

    def restore(self, target: Callable[[dict, Any], Any]) -> tuple[int, Any, dict] | None:
        """The newest readable checkpoint as (step, arrays, meta), or None when there is none.

        `target(meta, layout)` says what to restore (a tree of arrays or shape-dtype structs; it may raise to refuse
        the checkpoint). A checkpoint whose meta, metadata or arrays fail to load is reported (logged) and the
        previous one is tried.
        """
        for step in self.steps():
            try:
                meta, layout = self.read_meta(step), self.layout(step)
            except Exception as e:  # orbax/tensorstore raise many types for truncated or corrupt files
                self._unreadable(step, e)
                continue
            like = jax.tree.map(ocp.utils.to_shape_dtype_struct, target(meta, layout))
            try:
                arrays = self.manager.restore(step, args=ocp.args.Composite(arrays=ocp.args.StandardRestore(like)))["arrays"]
                return step, arrays, meta
            except Exception as e:
                self._unreadable(step, e)
        return None

    def _unreadable(self, step: int, e: Exception) -> None:
        first_line = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        log.warning("checkpoint %s is unreadable (%s); trying the previous one", self.directory / str(step), first_line)

    def remove_unfinished(self) -> None:
        """Remove the temporary folders of saves that never completed (the learner was killed while saving)."""
        for folder in sorted(self.directory.glob(UNFINISHED)):
            log.warning("removing %s: a checkpoint save that never completed (the learner was stopped while saving)", folder)
            shutil.rmtree(folder, ignore_errors=True)

    def record_published(self, version: int, ingested: int) -> None:
        """Remember the newest published weights version and the rows ingested then (atomically: a kill leaves the
        old record or the new one)."""
        tmp = self.directory / f"{PUBLISHED}.tmp"
        tmp.write_text(json.dumps({"version": version, "ingested": ingested}))
        os.replace(tmp, self.directory / PUBLISHED)

    def last_published(self) -> tuple[int, int]:
        """The newest weights version ever published for this run and the rows ingested then ((0, 0): none, or the
        record is unreadable)."""
        try:
            record = json.loads((self.directory / PUBLISHED).read_text())
            return int(record["version"]), int(record.get("ingested", 0))
        except FileNotFoundError:
            return 0, 0
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            log.warning("%s is unreadable (%s): weights versions go on from the last checkpoint's",
                        self.directory / PUBLISHED, e)
            return 0, 0

    def close(self) -> None:
        self.manager.close()


def fits(layout: Any, like: Any) -> bool:
    """Whether a saved `layout` (from `Checkpoints.layout`) holds exactly the arrays of `like`: same names, shapes and
    dtypes, and the same empty nodes (optax's `EmptyState`: adam and adamw differ only in those)."""
    saved = ocp.tree.to_flat_dict(layout, keep_empty_nodes=True)
    mine = ocp.tree.to_flat_dict(jax.tree.map(ocp.utils.to_shape_dtype_struct, like), keep_empty_nodes=True)
    return saved.keys() == mine.keys() and all(_shape(saved[k]) == _shape(mine[k]) for k in mine)


def _shape(leaf: Any) -> tuple:
    return getattr(leaf, "shape", None), getattr(leaf, "dtype", None)

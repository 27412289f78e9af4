"""The sample-chunk contract (actor -> broker -> learner), derived once from the observation spec.

A chunk holds T consecutive rows of one actor stream, one array per field (docs/architecture.md,
"Samples on the wire"). The actor's writer allocates with `ChunkSchema.empty`, the broker checks a
chunk's declarations with `check_layout` before forwarding it unopened, the learner checks the arrays
with `check` and stores `replay_fields`; test sources build chunks with `empty` too. The header of a
chunk is `META` (the stream's counters, stamped by one `StreamCounter` per actor process).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from tmrlx.common.fields import COUNT, IDENT, VERSION, Field, problems
from tmrlx.common.specs import ObsSpec

FLAGS = ("terminated", "truncated", "first")
MAX_ROWS = 2048  # rows in one chunk at most (actors send <= 256): bounds the largest legal SAMPLES message
# dropped: rows of this stream its actor dropped before sending, so far (a gap in step0 they explain is no loss in transit)
META: dict[str, Field] = {"session": IDENT, "seq": COUNT, "step0": COUNT, "policy_version": VERSION,
                          "dropped": COUNT.optional()}
Column = tuple[np.dtype, tuple[int, ...]]  # dtype, per-row shape


class ChunkError(ValueError):
    """A chunk that does not match the observation spec; the message says what is wrong."""


@dataclass(frozen=True)
class ChunkSchema:
    """Field name -> (dtype, per-row shape) of a chunk: `obs.<component>`, `action`, `reward` and the flags."""

    fields: Mapping[str, Column]
    act_dim: int

    @staticmethod
    def of(spec: ObsSpec) -> ChunkSchema:
        return _schema(spec)

    def empty(self, rows: int) -> dict[str, np.ndarray]:
        """Zeroed columns for `rows` rows."""
        return {name: np.zeros((rows, *shape), dtype) for name, (dtype, shape) in self.fields.items()}

    def replay_fields(self) -> dict[str, Column]:
        """What the replay memory stores per row: the chunk's fields but `truncated`, plus `prev` (docs/architecture.md)."""
        out = {k: v for k, v in self.fields.items() if k != "truncated"}
        out["prev"] = (np.dtype("int32"), ())
        return out

    def check_layout(self, layout: Mapping[str, Column]) -> int:
        """The row count T of a chunk given each array's (dtype, full shape); raises ChunkError.

        The broker calls it on a decoded message's declarations, without building arrays.
        """
        missing, extra = sorted(set(self.fields) - set(layout)), sorted(set(layout) - set(self.fields))
        if missing or extra:
            raise ChunkError(f"chunk fields differ from the observation spec: missing {missing}, unexpected {extra}")
        rows = {name: shape[0] if shape else -1 for name, (_, shape) in layout.items()}
        for name, (dtype, shape) in self.fields.items():
            got_dtype, got_shape = layout[name]
            if got_dtype != dtype or got_shape[1:] != shape or len(got_shape) != len(shape) + 1:
                raise ChunkError(f"chunk field {name!r} is {got_dtype}{list(got_shape)}, expected {dtype}[T, *{list(shape)}]")
        counts = set(rows.values())
        if len(counts) != 1:
            raise ChunkError(f"chunk fields have different row counts: {rows}")
        t = counts.pop()
        if t <= 0:
            raise ChunkError("chunk has no rows (T must be > 0)")
        if t > MAX_ROWS:
            raise ChunkError(f"chunk has {t} rows: at most {MAX_ROWS}")
        return t

    @property
    def row_bytes(self) -> int:
        return sum(dtype.itemsize * int(np.prod(shape)) for dtype, shape in self.fields.values())

    def check(self, meta: Mapping[str, Any], arrays: Mapping[str, Any]) -> int:
        """`check_layout` on the arrays themselves, plus finite floats and the header's counters; the row count."""
        who = f"chunk {meta.get('seq', '?')!r:.20} of session {meta.get('session', '?')!r:.70}"
        problem = problems(META, meta)
        if problem:
            raise ChunkError(f"{who}: header {problem}")
        values = {name: np.asarray(a) for name, a in arrays.items()}
        try:
            t = self.check_layout({name: (v.dtype, v.shape) for name, v in values.items()})
        except ChunkError as e:
            raise ChunkError(f"{who}: {e}") from None
        for name, v in values.items():
            if v.dtype.kind == "f" and not np.isfinite(v).all():
                raise ChunkError(f"{who}: field {name!r} holds NaN or infinite values")
        return t


@lru_cache(maxsize=16)
def _schema(spec: ObsSpec) -> ChunkSchema:
    fields: dict[str, Column] = {f"obs.{c.name}": (np.dtype(c.dtype), tuple(c.shape)) for c in spec.components}
    fields["action"] = (np.dtype("float32"), (spec.act_dim,))
    fields["reward"] = (np.dtype("float32"), ())
    for flag in FLAGS:
        fields[flag] = (np.dtype("bool"), ())
    return ChunkSchema(fields, spec.act_dim)


class StreamCounter:
    """The counters of one actor stream: `session` (random per process), `seq` (chunk number, for exactly-once
    delivery to the broker) and `step0` (the stream's row index of a chunk's first row, for the learner)."""

    def __init__(self, session: str | None = None):
        self.session = session or secrets.token_hex(8)
        self.seq = 0
        self.rows = 0

    def stamp(self, rows: int, policy_version: int, dropped: int = 0) -> dict[str, Any]:
        """The header of the next chunk of `rows` rows; `dropped`: rows of this stream dropped so far."""
        meta = {"session": self.session, "seq": self.seq, "step0": self.rows, "policy_version": int(policy_version),
                "dropped": int(dropped)}
        self.seq += 1
        self.rows += rows
        return meta

"""Columnar sample chunks (docs/architecture.md, "Samples on the wire") -> replay rows with `prev` links.

Chunks of several actor sessions arrive interleaved. Per session we remember the absolute replay
index of its last row and the actor's next expected row (`step0`), so a duplicated chunk is
dropped (exactly-once) and a gap (a lost chunk, or a learner restart) starts a new chain instead of
linking two rows that were never consecutive. Gaps are counted: the rows an actor says it dropped
(its queue was full) explain part of them; the rest were lost on the way (`accounts`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from tmrlx.common.chunks import ChunkSchema
from tmrlx.common.specs import ObsSpec


class Ingest:
    """Host-side bookkeeping of the streams feeding the replay memory."""

    def __init__(self, spec: ObsSpec):
        self.spec = spec
        self.schema = ChunkSchema.of(spec)
        self.stored = tuple(k for k in self.schema.replay_fields() if k not in ("first", "prev"))
        self.rows = 0  # absolute index of the next replay row
        # session -> [next step0, absolute index of its last row, rows its actor said it dropped so far]
        self.sessions: dict[str, list[int]] = {}
        self.counts = dict.fromkeys(("duplicate_rows", "gap_rows", "actor_dropped_rows"), 0)

    def state(self) -> dict:
        """JSON-able bookkeeping for checkpoints."""
        return {"rows": self.rows, "sessions": self.sessions, "counts": self.counts}

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.rows = int(state["rows"])
        self.sessions = {str(k): [int(x) for x in (*v, 0)[:3]] for k, v in state["sessions"].items()}
        self.counts.update({k: int(v) for k, v in state.get("counts", {}).items() if k in self.counts})

    def accounts(self) -> dict[str, int]:
        """Rows ingested, dropped as duplicates, dropped by actors (queue full), and lost on the way (a gap no actor
        explains: e.g. rows a killed learner had ingested after its last checkpoint). Every row a stream produced up to
        its last chunk here is one of: ingested, or in a gap (dropped or lost)."""
        c = self.counts
        return {"ingested_rows": self.rows, "duplicate_rows": c["duplicate_rows"],
                "actor_dropped_rows": c["actor_dropped_rows"], "lost_rows": max(0, c["gap_rows"] - c["actor_dropped_rows"])}

    def rows_of(self, meta: Mapping[str, Any], arrays: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Replay rows of one chunk (possibly empty when it is a duplicate); advances the bookkeeping."""
        t = self.schema.check(meta, arrays)
        session, step0 = str(meta["session"]), int(meta["step0"])
        known = self.sessions.get(session)
        skip = 0 if known is None else min(max(known[0] - step0, 0), t)
        self.counts["duplicate_rows"] += skip
        first = np.asarray(arrays["first"], bool)[skip:].copy()
        n = t - skip
        if n == 0:
            return {}
        dropped = int(meta.get("dropped", 0))  # a stream first seen past its row 0 lost those rows too: they went to a
        self.counts["gap_rows"] += max(0, step0 - (known[0] if known else 0))  # learner that died, or were dropped
        self.counts["actor_dropped_rows"] += max(0, dropped - (known[2] if known else 0))
        linked = known is not None and known[0] == step0 + skip
        if not linked:
            first[0] = True  # no known predecessor: start a new chain, drop this row's transition
        absolute = self.rows + np.arange(n, dtype=np.int64)
        prev = np.where(first, absolute, absolute - 1)
        if known is not None and linked and not first[0]:
            prev[0] = known[1]
        out = {k: np.asarray(arrays[k])[skip:] for k in self.stored}
        out.update(first=first, prev=prev.astype(np.int32))
        self.sessions[session] = [step0 + t, int(absolute[-1]), max(dropped, known[2] if known else 0)]
        self.rows += n
        return out


def concat_rows(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Several chunks' rows as one insert."""
    parts = [p for p in parts if p]
    if not parts:
        return {}
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

"""The learner's end of the wire: chunks arrive in order into a local inbox, on credit the learner grants.

The inbox holds at most `window` chunks: credit goes back as the trainer takes them, so a slow learner
leaves the backlog with the broker. Only the newest unsent weights version ever travels.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping
from typing import Any

import numpy as np
import zmq
from tmrlx.common import episodes
from tmrlx.common.config import Config
from tmrlx.common.specs import ObsSpec
from tmrlx.common.wire.link import Frames, Link
from tmrlx.common.wire.liveness import Liveness
from tmrlx.common.wire.protocol import MsgType, make


class LearnerClient(Link):
    """The learner's link: chunks arrive in order into a local inbox of at most `window` chunks."""

    role = "learner"
    gather_s = 0.001  # the Trainer pulls every UPDATE_BUFFER_INTERVAL updates: 1 ms more latency costs it nothing,
    # while a loop turn per chunk (poll, credit, weights, heartbeat) was ~15 us of this thread's per-chunk time

    def __init__(self, cfg: Config, spec: ObsSpec, session: str | None = None, *, window: int = 64, **kwargs: Any):
        self._inbox: deque[tuple[dict, dict[str, np.ndarray]]] = deque()
        self._episodes: deque[dict] = deque(maxlen=10000)
        self._cond = threading.Condition()
        self._window = window
        self._credit_batch = max(1, window // 4)  # credit goes back in batches; the broker keeps >= 3/4 of the window
        self._owed = 0
        self._arrived = False
        self._weights: tuple[int, Frames] | None = None
        self._weights_sent = -1
        self._received = self._rows = 0
        super().__init__(cfg, spec, session, **kwargs)

    def poll_samples(self, max_chunks: int | None = None, timeout: float = 0.0) -> list[tuple[dict, dict[str, np.ndarray]]]:
        """(meta, arrays) chunks in arrival order, waiting up to `timeout` s for the first one. Arrays are read-only."""
        with self._cond:
            if not self._inbox and timeout > 0:
                self._cond.wait_for(lambda: bool(self._inbox), timeout)
            n = len(self._inbox) if max_chunks is None else min(max_chunks, len(self._inbox))
            out = [self._inbox.popleft() for _ in range(n)]
            due = self._owed < self._credit_batch <= self._owed + n
            self._owed += n
        if due:
            self._wake()
        return out

    def poll_episodes(self) -> list[dict]:
        """Episode statistics forwarded from actors since the last call (each has its actor's `session`)."""
        with self._cond:
            out = list(self._episodes)
            self._episodes.clear()
        return out

    def publish_weights(self, version: int, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> None:
        """Replace the weights to publish (copied); only the newest unsent version ever travels."""
        frames = make(MsgType.WEIGHTS, {"version": int(version), "meta": dict(meta)},
                      {k: np.asarray(v, dtype=np.float32) for k, v in arrays.items()})  # encode copies
        with self._lock:
            self._weights = (int(version), frames)
        self._wake()

    def stats(self) -> dict[str, Any]:
        with self._cond:
            return {**self._stats(), "inbox": len(self._inbox), "received": self._received, "rows_received": self._rows,
                    "weights_sent": self._weights_sent}

    def _on_welcome(self, sock: zmq.Socket, live: Liveness, header: dict) -> None:
        with self._cond:
            self._owed = 0
            credit = max(0, self._window - len(self._inbox))
        self._send(sock, live, make(MsgType.CREDIT, {"n": credit}))
        self._weights_sent = -1  # a restarted broker has no weights: give it ours again

    def _on_message(self, mtype: MsgType, header: dict, arrays: dict) -> None:
        if mtype is MsgType.SAMPLES:
            with self._cond:
                self._arrived |= not self._inbox  # waiters wait for an empty inbox to fill; woken in _pump
                self._inbox.append((header, arrays))
                self._received += 1
                self._rows += len(arrays["reward"]) if "reward" in arrays else 0
        elif mtype is MsgType.EPISODE:
            try:  # the broker checked them too: a bug, not a peer, would get here
                stats = episodes.check(header["stats"])
            except episodes.EpisodeError as e:
                self._counts["rejected"] += 1
                self.log.warning("ignored %s", e)
                return
            with self._cond:
                self._episodes.append({**stats, "session": header.get("session")})

    def _pump(self, sock: zmq.Socket, live: Liveness) -> None:
        with self._cond:
            if self._arrived:  # once per batch of messages received, not per chunk (a waiter woken per chunk
                self._arrived = False  # trades the GIL with this thread per chunk)
                self._cond.notify_all()
            owed = self._owed if self._owed >= self._credit_batch else 0
            self._owed -= owed
        if owed and not self._send(sock, live, make(MsgType.CREDIT, {"n": owed})):
            with self._cond:
                self._owed += owed
        with self._lock:
            weights = self._weights
        if weights is not None and weights[0] != self._weights_sent and self._send(sock, live, weights[1]):
            self._weights_sent = weights[0]

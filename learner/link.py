"""The learner's end of the wire: chunks arrive in order into a local inbox, on credit the learner grants.

The inbox holds at most `window` chunks: credit goes back as the trainer takes them, so a slow learner
leaves the backlog with the broker. What the trainer took is acknowledged (ACK: per actor session,
the highest seq) at its next poll, once those rows are in the replay memory; the ACK also carries how
many rows this connection may receive in total (`allow`), from the trainer's `demand`: the broker
turns it into step credit for paced actors. Only the newest unsent weights version ever travels, in parts when
large (`common.wire.parts`), and only once the broker said it has the last one (HEARTBEAT `version`): a learner on a
slow link never queues version after version behind each other.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Mapping
from typing import Any

import numpy as np
import zmq
from tmrlx.common import episodes
from tmrlx.common.config import Config
from tmrlx.common.specs import ObsSpec
from tmrlx.common.wire import parts
from tmrlx.common.wire.link import Frames, Link
from tmrlx.common.wire.liveness import Liveness
from tmrlx.common.wire.protocol import MsgType, make


class LearnerClient(Link):
    """The learner's link: chunks arrive in order into a local inbox of at most `window` chunks."""

    role = "learner"
    gather_s = 0.001  # the Trainer pulls every UPDATE_BUFFER_INTERVAL updates: 1 ms more latency costs it nothing,
    # while a loop turn per chunk (poll, credit, weights, heartbeat) was ~15 us of this thread's per-chunk time

    def __init__(self, cfg: Config, spec: ObsSpec, session: str | None = None, *, window: int = 64,
                 demand: float = math.inf, **kwargs: Any):
        self._inbox: deque[tuple[dict, dict[str, np.ndarray]]] = deque()
        self._episodes: deque[dict] = deque(maxlen=10000)
        self._cond = threading.Condition()
        self._window = window
        self._credit_batch = max(1, window // 4)  # credit goes back in batches; the broker keeps >= 3/4 of the window
        self._owed = 0
        self._arrived = False
        self._weights: tuple[int, list[Frames]] | None = None  # version, its messages: one, or its WEIGHTS_PARTs
        self._weights_sent = -1
        self._weights_unacked = False  # sent, and the broker has not said it has them: no newer ones until it does
        self._received = self._rows = 0
        self._taken: dict[str, int] = {}  # session -> highest seq taken by the last poll (ingested by the next)
        self._acks: dict[str, int] = {}  # session -> highest seq ingested, not yet told
        self._want = _count(demand)  # rows the trainer wants beyond what it ingested (see `demand`)
        self._conn_rows = 0  # rows received over this connection
        self._unseen = 0  # rows received that the trainer's last `demand` did not count yet (in the inbox, or taken since)
        self._taken_rows = 0  # rows taken since the last `demand`
        self._allow_sent = -1
        super().__init__(cfg, spec, session, **kwargs)

    def poll_samples(self, max_chunks: int | None = None, timeout: float = 0.0) -> list[tuple[dict, dict[str, np.ndarray]]]:
        """(meta, arrays) chunks in arrival order, waiting up to `timeout` s for the first one. Arrays are read-only."""
        with self._cond:
            _merge(self._acks, self._taken)  # the caller ingested what the previous poll returned
            self._taken = {}
            if not self._inbox and timeout > 0:
                self._cond.wait_for(lambda: bool(self._inbox), timeout)
            n = len(self._inbox) if max_chunks is None else min(max_chunks, len(self._inbox))
            out = [self._inbox.popleft() for _ in range(n)]
            for meta, arrays in out:
                self._taken[meta["session"]] = meta["seq"]
                self._taken_rows += _rows(arrays)
            due = self._owed < self._credit_batch <= self._owed + n or bool(self._acks)
            self._owed += n
        if due:
            self._wake()
        return out

    def demand(self, rows: float) -> None:
        """How many rows the trainer wants beyond those it ingested, counting every chunk polled so far as ingested
        (its rate limiter); inf: no limit."""
        with self._cond:
            self._want = _count(rows)
            self._unseen -= self._taken_rows
            self._taken_rows = 0
        self._wake()

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
        messages = parts.messages(frames, int(version))
        with self._lock:
            self._weights = (int(version), messages)
        self._wake()

    def stats(self) -> dict[str, Any]:
        with self._cond:
            return {**self._stats(), "inbox": len(self._inbox), "received": self._received, "rows_received": self._rows,
                    "weights_sent": self._weights_sent}

    def _on_welcome(self, sock: zmq.Socket, live: Liveness, header: dict) -> None:
        with self._cond:
            self._owed = 0
            self._conn_rows, self._allow_sent = 0, -1
            credit = max(0, self._window - len(self._inbox))
        self._send(sock, live, make(MsgType.CREDIT, {"n": credit}))
        self._weights_sent = -1  # a restarted broker has no weights: give it ours again
        self._weights_unacked = False

    def _on_message(self, mtype: MsgType, header: dict, arrays: dict) -> None:
        if mtype is MsgType.HEARTBEAT:
            if header.get("version") == self._weights_sent:  # the broker has (or refused) what we sent last
                self._weights_unacked = False
        elif mtype is MsgType.SAMPLES:
            with self._cond:
                self._arrived |= not self._inbox  # waiters wait for an empty inbox to fill; woken in _pump
                self._inbox.append((header, arrays))
                self._received += 1
                rows = _rows(arrays)
                self._rows += rows
                self._conn_rows += rows
                self._unseen += rows
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
            acks, self._acks = self._acks, {}
            allow = min(self._conn_rows + max(0, self._want - self._unseen), 2**62)
        if owed and not self._send(sock, live, make(MsgType.CREDIT, {"n": owed})):
            with self._cond:
                self._owed += owed
        if (acks or allow != self._allow_sent) and self._send(sock, live, make(MsgType.ACK, {"acks": acks, "allow": allow})):
            self._allow_sent = allow
        elif acks:
            with self._cond:
                _merge(self._acks, acks)
        with self._lock:
            weights = self._weights
        if (weights is not None and weights[0] != self._weights_sent and not self._weights_unacked
                and all(self._send(sock, live, frames) for frames in weights[1])):  # a full queue: all again later
            self._weights_sent, self._weights_unacked = weights[0], True


def _rows(arrays: Mapping[str, Any]) -> int:
    return len(arrays["reward"]) if "reward" in arrays else 0


def _count(rows: float) -> int:
    return 2**62 if math.isinf(rows) else max(0, math.ceil(rows))


def _merge(acks: dict[str, int], more: Mapping[str, int]) -> None:
    """Per session, the highest seq of both."""
    for session, seq in more.items():
        acks[session] = max(seq, acks.get(session, -1))

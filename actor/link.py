"""The actor's end of the wire: chunks go out on the broker's credit and stay ours until the learner has them.

`send_samples` never blocks: it stamps the chunk's counters (`StreamCounter`), copies it into a
message and queues it; when the queue is full the oldest unsent chunk is dropped and counted (the
headers of chunks stamped after it carry the count, so the learner tells a drop from a loss). A
sent chunk is held until the learner acknowledges it (relayed by the broker), at most `max_held`
chunks and `max_held_bytes`; what is held goes back to the front of the queue (which keeps its
bound) after a reconnect and is sent again (the learner drops duplicates by `step0`); what the broker
forwarded to a learner that went, the broker itself gives the next one. A paced actor (a lockstep environment, which
can wait) takes steps only on the step credit the learner allows (`acquire_steps`), so it never
outruns the learner.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

import numpy as np
import zmq
from tmrlx.common.chunks import StreamCounter
from tmrlx.common.config import Config
from tmrlx.common.specs import ObsSpec
from tmrlx.common.wire.codec import ProtocolError
from tmrlx.common.wire.link import Frames, Link
from tmrlx.common.wire.liveness import Liveness
from tmrlx.common.wire.parts import Assembly
from tmrlx.common.wire.protocol import MsgType, make

MAX_SPARE = 32  # acked chunk bodies kept for reuse: about a credit window plus a queue's worth (8 missed ~40 %)
MAX_HELD = 512  # chunks sent and not yet acknowledged by the learner, at most (then they wait in the queue)
MAX_HELD_BYTES = 256 * 2**20


class ActorClient(Link):
    """An actor's link: `send_samples` never blocks; the newest weights wait in `latest_weights`."""

    role = "actor"
    gather_s = 0.001  # chunks leave every CHUNK_SECONDS: 1 ms later costs nothing, and chunks queued meanwhile
    # need no wake-up each (a wake-up and a loop turn per chunk were ~20 us between the two threads)

    def __init__(self, cfg: Config, spec: ObsSpec, session: str | None = None, *, max_queue: int = 256,
                 max_held: int = MAX_HELD, max_held_bytes: int = MAX_HELD_BYTES, max_episodes: int = 1000,
                 paced: bool = False, **kwargs: Any):
        self._queue: deque[tuple[int, Frames, int, int]] = deque()  # seq, frames, rows, bytes
        self._held: deque[tuple[int, Frames, int, int]] = deque()  # sent, not yet acknowledged by the learner
        self._held_bytes = 0
        self._spare: list[bytearray] = []  # bodies of acked chunks, reused by the next ones (see codec.encode)
        self._episodes: deque[Frames] = deque(maxlen=max_episodes)
        self._max_queue, self._max_held, self._max_held_bytes = max_queue, max_held, max_held_bytes
        self.paced = paced
        self._credit = 0
        self._steps = 0  # paced: rows the learner allows us to produce now
        self._steps_cond = threading.Condition()
        self._weights: tuple[int, dict[str, np.ndarray], dict] | None = None
        self._version = -1
        self._weights_ack = -1  # the version of weights received and not yet acknowledged (-1: none)
        self._sent = self._dropped = self._dropped_rows = self._rows_sent = self._acked = self._resent = 0
        self._parts = Assembly(cfg.BUFFER_SIZE)  # weights too large for a heartbeat arrive in parts (a part 0 restarts it)
        super().__init__(cfg, spec, session, **kwargs)
        self._stream = StreamCounter(self.session)

    def send_samples(self, arrays: Mapping[str, np.ndarray], policy_version: int | None = None) -> dict[str, Any]:
        """Queue one columnar chunk (copied), stamped with this stream's counters (the header, returned);
        `policy_version` defaults to the newest weights received. When the queue is full the oldest chunk is dropped
        and counted."""
        rows = len(next(iter(arrays.values()))) if arrays else 0
        with self._lock:
            version = self._version if policy_version is None else policy_version
            header = self._stream.stamp(rows, version, self._dropped_rows)
            spare, self._spare = self._spare, []
        frames = make(MsgType.SAMPLES, header, arrays, spare)  # the body is a copy: the caller may reuse its arrays
        size = sum(memoryview(f).nbytes for f in frames)
        with self._lock:
            self._spare.extend(spare[:MAX_SPARE - len(self._spare)])
            if size > self.settings.max_bytes:
                self._drop(rows)
                self.log.error("dropped a chunk of %d bytes: over BUFFER_SIZE=%d", size, self.settings.max_bytes)
                return header
            idle = not self._queue  # the link thread drains a non-empty queue by itself (or on the next CREDIT)
            self._queue.append((header["seq"], frames, rows, size))
            self._trim()
        if idle:
            self._wake()
        return header

    def acquire_steps(self, stop: threading.Event, poll_s: float = 0.1) -> int:
        """Paced actors: wait until the learner allows more rows, and take them all (0 when stopped or refused)."""
        with self._steps_cond:
            while not self._steps and not stop.is_set() and not self.error and not self._stop.is_set():
                self._steps_cond.wait(poll_s)
            steps, self._steps = self._steps, 0
        return steps

    def _drop(self, rows: int) -> None:
        self._dropped += 1
        self._dropped_rows += rows

    def _trim(self) -> None:
        """Under the lock: drop the oldest queued chunks beyond `max_queue`."""
        while len(self._queue) > self._max_queue:
            self._drop(self._queue.popleft()[2])

    def send_episode(self, stats: Mapping[str, Any]) -> None:
        """Queue the statistics of a finished episode (a small msgpack-able dict) for the learner."""
        frames = make(MsgType.EPISODE, {"stats": dict(stats), "session": self.session})
        with self._lock:
            self._episodes.append(frames)
        self._wake()

    def latest_weights(self) -> tuple[int, dict[str, np.ndarray], dict] | None:
        """(version, read-only arrays, meta) of the newest weights received since the last call, else None."""
        with self._lock:
            weights, self._weights = self._weights, None
        return weights

    def flush(self, timeout: float, acknowledged: bool = False) -> bool:
        """Wait until every queued chunk and episode was handed to the broker (and, with `acknowledged`, every chunk
        ingested by the learner); False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._queue and not self._episodes and not (acknowledged and self._held):
                    return True
            time.sleep(0.01)
        return False

    @property
    def queued(self) -> int:
        """Chunks waiting for credit (cheap: no lock, no dict; `stats()` has the rest)."""
        return len(self._queue)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {**self._stats(), "queued": len(self._queue), "held": len(self._held), "held_bytes": self._held_bytes,
                    "produced_rows": self._stream.rows, "dropped": self._dropped, "dropped_rows": self._dropped_rows,
                    "sent": self._sent,
                    "resent": self._resent, "acked": self._acked, "rows_sent": self._rows_sent,
                    "policy_version": self._version}

    def _policy_version(self) -> int:
        return self._version

    def _hello_extra(self) -> dict[str, Any]:
        return {"paced": self.paced}

    def _on_welcome(self, sock: zmq.Socket, live: Liveness, header: dict) -> None:
        self._credit = header["credit"]
        with self._steps_cond:
            self._steps = 0  # step credit is the broker's to give: a restarted one starts from nothing

    def _on_disconnect(self) -> None:
        """Every held chunk goes out again, before anything newer (the learner drops duplicates); the queue keeps its
        bound, dropping the oldest."""
        with self._lock:
            self._resent += len(self._held)
            self._queue.extendleft(reversed(self._held))
            self._held, self._held_bytes = deque(), 0
            self._trim()
        self._credit = 0

    def _on_message(self, mtype: MsgType, header: dict, arrays: dict) -> None:
        if mtype is MsgType.CREDIT:
            self._credit += header["n"]
            ack = header.get("ack")
            if ack is not None:
                self._release(ack)
            if header.get("steps"):
                with self._steps_cond:
                    self._steps += header["steps"]
                    self._steps_cond.notify_all()
        elif mtype is MsgType.WEIGHTS:
            self._weights_ack = header["version"]
            with self._lock:
                self._version = header["version"]
                self._weights = (header["version"], arrays, header["meta"])
        elif mtype is MsgType.WEIGHTS_PART:
            try:
                msg = self._parts.weights(header, arrays)
            except ProtocolError as e:
                self._counts["rejected"] += 1
                self.log.warning("ignored weights from the broker: %s", e.reason)
                return
            if msg is not None:
                self._on_message(MsgType.WEIGHTS, msg.header, msg.arrays)

    def _release(self, ack: int) -> None:
        """The learner has every chunk up to seq `ack`: they are no longer ours to keep."""
        with self._lock:
            while self._held and self._held[0][0] <= ack:
                _, frames, _, size = self._held.popleft()
                self._held_bytes -= size
                self._acked += 1
                body = frames[-1]  # libzmq is done with it: the learner got it through the broker
                if len(self._spare) < MAX_SPARE and isinstance(body, bytearray):
                    self._spare.append(body)

    def _pump(self, sock: zmq.Socket, live: Liveness) -> None:
        if self._weights_ack >= 0 and self._send(sock, live, make(MsgType.HEARTBEAT, {"version": self._weights_ack})):
            self._weights_ack = -1  # the broker sends newer weights only after this
        while self._credit > 0:
            with self._lock:
                if not self._queue or len(self._held) >= self._max_held or self._held_bytes >= self._max_held_bytes:
                    break
                item = self._queue.popleft()
            if not self._send(sock, live, item[1]):
                with self._lock:
                    self._queue.appendleft(item)
                break
            self._credit -= 1
            with self._lock:
                self._held.append(item)
                self._held_bytes += item[3]
                self._sent += 1
                self._rows_sent += item[2]
        while True:
            with self._lock:
                if not self._episodes:
                    break
                frames = self._episodes.popleft()
            if not self._send(sock, live, frames):
                with self._lock:
                    self._episodes.appendleft(frames)
                break



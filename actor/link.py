"""The actor's end of the wire: chunks go out on the broker's credit and stay ours until acknowledged.

`send_samples` never blocks: it stamps the chunk's counters (`StreamCounter`), copies it into a
message and queues it; when the queue is full the oldest chunk is dropped and counted. Chunks sent
but not yet acknowledged are sent again after a reconnect (the broker drops duplicates by `seq`).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping
from typing import Any

import numpy as np
import zmq
from tmrlx.common.chunks import StreamCounter
from tmrlx.common.config import Config
from tmrlx.common.specs import ObsSpec
from tmrlx.common.wire.link import Frames, Link
from tmrlx.common.wire.liveness import Liveness
from tmrlx.common.wire.protocol import MsgType, make

MAX_SPARE = 32  # acked chunk bodies kept for reuse: about a credit window plus a queue's worth (8 missed ~40 %)


class ActorClient(Link):
    """An actor's link: `send_samples` never blocks; the newest weights wait in `latest_weights`."""

    role = "actor"
    gather_s = 0.001  # chunks leave every CHUNK_SECONDS: 1 ms later costs nothing, and chunks queued meanwhile
    # need no wake-up each (a wake-up and a loop turn per chunk were ~20 us between the two threads)

    def __init__(self, cfg: Config, spec: ObsSpec, session: str | None = None, *, max_queue: int = 256,
                 max_episodes: int = 1000, **kwargs: Any):
        self._queue: deque[tuple[int, Frames, int]] = deque()
        self._inflight: deque[tuple[int, Frames, int]] = deque()
        self._spare: list[bytearray] = []  # bodies of acked chunks, reused by the next ones (see codec.encode)
        self._episodes: deque[Frames] = deque(maxlen=max_episodes)
        self._max_queue = max_queue
        self._credit = 0
        self._weights: tuple[int, dict[str, np.ndarray], dict] | None = None
        self._version = -1
        self._sent = self._dropped = self._rows_sent = 0
        super().__init__(cfg, spec, session, **kwargs)
        self._stream = StreamCounter(self.session)

    def send_samples(self, arrays: Mapping[str, np.ndarray], policy_version: int | None = None) -> dict[str, Any]:
        """Queue one columnar chunk (copied), stamped with this stream's counters (the header, returned);
        `policy_version` defaults to the newest weights received. When the queue is full the oldest chunk is dropped
        and counted."""
        rows = len(next(iter(arrays.values()))) if arrays else 0
        with self._lock:
            header = self._stream.stamp(rows, self._version if policy_version is None else policy_version)
            spare, self._spare = self._spare, []
        frames = make(MsgType.SAMPLES, header, arrays, spare)  # the body is a copy: the caller may reuse its arrays
        size = sum(memoryview(f).nbytes for f in frames)
        with self._lock:
            self._spare.extend(spare[:MAX_SPARE - len(self._spare)])
            if size > self.settings.max_bytes:
                self._dropped += 1
                self.log.error("dropped a chunk of %d bytes: over BUFFER_SIZE=%d", size, self.settings.max_bytes)
                return header
            idle = not self._queue  # the link thread drains a non-empty queue by itself (or on the next CREDIT)
            self._queue.append((header["seq"], frames, rows))
            if len(self._queue) > self._max_queue:
                self._queue.popleft()
                self._dropped += 1
        if idle:
            self._wake()
        return header

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

    def flush(self, timeout: float) -> bool:
        """Wait until every queued chunk and episode was handed to the broker; False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._queue and not self._inflight and not self._episodes:
                    return True
            time.sleep(0.01)
        return False

    @property
    def queued(self) -> int:
        """Chunks waiting for credit (cheap: no lock, no dict; `stats()` has the rest)."""
        return len(self._queue)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {**self._stats(), "queued": len(self._queue), "inflight": len(self._inflight), "dropped": self._dropped,
                    "sent": self._sent, "rows_sent": self._rows_sent, "policy_version": self._version}

    def _policy_version(self) -> int:
        return self._version

    def _on_welcome(self, sock: zmq.Socket, live: Liveness, header: dict) -> None:
        self._credit = header["credit"]

    def _on_disconnect(self) -> None:
        with self._lock:  # the broker may not have them: send again (it drops duplicates by seq)
            self._queue.extendleft(reversed(self._inflight))
            self._inflight.clear()
            while len(self._queue) > self._max_queue:
                self._queue.popleft()
                self._dropped += 1
        self._credit = 0

    def _on_message(self, mtype: MsgType, header: dict, arrays: dict) -> None:
        if mtype is MsgType.CREDIT:
            self._credit += header["n"]
            ack = header.get("ack")
            with self._lock:
                while self._inflight and isinstance(ack, int) and self._inflight[0][0] <= ack:
                    body = self._inflight.popleft()[1][-1]  # the broker has it all: libzmq is done with it
                    if len(self._spare) < MAX_SPARE and isinstance(body, bytearray):
                        self._spare.append(body)
        elif mtype is MsgType.WEIGHTS:
            with self._lock:
                self._version = header["version"]
                self._weights = (header["version"], arrays, header["meta"])

    def _pump(self, sock: zmq.Socket, live: Liveness) -> None:
        while self._credit > 0:
            with self._lock:
                if not self._queue:
                    break
                item = self._queue.popleft()
            if not self._send(sock, live, item[1]):
                with self._lock:
                    self._queue.appendleft(item)
                break
            self._credit -= 1
            with self._lock:
                self._inflight.append(item)
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



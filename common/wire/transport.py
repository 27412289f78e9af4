"""Client side of the wire, for actors and the learner.

A daemon thread owns the ZeroMQ socket and does the handshake, heartbeats, credit and reconnects;
the caller's thread only touches bounded queues under a lock, so an actor's real-time loop never
waits on the network. A fatal refusal (wrong PASSWORD, other layout, NB_WORKERS reached) sets
`.error`, is logged once and stops the client.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

import numpy as np
import zmq
from tmrlx.common.config import Config
from tmrlx.common.specs import ObsSpec
from tmrlx.common.wire import frames as wire
from tmrlx.common.wire import security
from tmrlx.common.wire.codec import ProtocolError
from tmrlx.common.wire.liveness import HEARTBEAT_S, MISSES, Backoff, Clock, Liveness
from tmrlx.common.wire.protocol import MsgType, make, parse
from zmq.utils.monitor import recv_monitor_message

log = logging.getLogger("tmrlx.transport")
HANDSHAKE_FAILED = zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
HANDSHAKE_TRIES = 3  # a broker dying mid-handshake fails one too: only repeated failures mean other keys
Frames = list[Any]
MAX_SPARE = 32  # acked chunk bodies kept for reuse: about a credit window plus a queue's worth (8 missed ~40 %)


def broker_address(cfg: Config, role: str) -> str:
    """127.0.0.1 when LOCALHOST_WORKER / LOCALHOST_TRAINER says so, else PUBLIC_IP_SERVER."""
    local = cfg.LOCALHOST_WORKER if role == "actor" else cfg.LOCALHOST_TRAINER
    return f"tcp://{'127.0.0.1' if local else cfg.PUBLIC_IP_SERVER}:{cfg.PORT}"


class _Link:
    """One logical connection to the broker; subclasses add what they send and receive."""

    role = ""
    gather_s = 0.0  # after a loop turn that had work, wait this long before polling again (see the subclasses)

    def __init__(self, cfg: Config, spec: ObsSpec, session: str | None = None, *, heartbeat_s: float = HEARTBEAT_S,
                 backoff: tuple[float, float] = (1.0, 32.0), clock: Clock = time.monotonic):
        self.cfg = cfg
        self.session = session or secrets.token_hex(8)
        self.address = broker_address(cfg, self.role)
        self.error: str | None = None
        self._spec_hash = spec.hash()
        self._key = security.auth_key(cfg.PASSWORD)
        self._curve = security.curve_keys(cfg, server=False) if cfg.TLS else None
        self._hb, self._clock, self._backoff = heartbeat_s, clock, Backoff(*backoff)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._counts = {"reconnects": 0, "rejected": 0}
        self._hs_failures = 0
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._ctx = zmq.Context()
        self._thread = threading.Thread(target=self._main, name=f"tmrlx-{self.role}-link", daemon=True)
        self._thread.start()

    # ---- caller side
    @property
    def connected(self) -> bool:
        return self._ready.is_set()

    def wait_connected(self, timeout: float) -> bool:
        """Block until the handshake succeeded (tests, start-up); False on timeout or refusal."""
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.05):
            if self.error or time.monotonic() > deadline:
                return False
        return True

    def close(self) -> None:
        """Say BYE and stop the link thread, which closes its socket and context itself.

        Only the link thread ever touches its ZeroMQ objects: closing a socket from another thread while
        it polls is what aborts libzmq (e.g. `fq.cpp` assertions), so a thread that does not stop in time
        is left to finish on its own rather than pulled from under.
        """
        self._stop.set()
        self._wake()
        self._thread.join(timeout=5.0)
        if self._thread.is_alive():
            log.warning("tmrlx %s: the transport thread did not stop within 5 s; it will close its socket itself", self.role)
            return
        self._wake_r.close()
        self._wake_w.close()

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):  # a wake-up is already pending, or we are closing
            self._wake_w.send(b"\0")

    def _stats(self) -> dict[str, Any]:
        return {**self._counts, "connected": self.connected, "error": self.error}

    # ---- link thread
    def _main(self) -> None:
        try:
            while not self._stop.is_set() and self._connection() == "lost":
                self._counts["reconnects"] += 1
                self._stop.wait(self._backoff.next())
        except Exception as e:  # the thread must never die silently
            self._fail(f"transport thread crashed: {type(e).__name__}: {e}")
            log.exception("tmrlx %s transport thread crashed", self.role)
        finally:
            self._ctx.term()  # every socket of this context was closed by _connection, in this thread

    def _fail(self, reason: str) -> None:
        self.error = reason
        self._ready.clear()
        log.error("tmrlx %s: %s", self.role, reason)

    def _open(self) -> tuple[zmq.Socket, zmq.Socket | None]:
        sock = self._ctx.socket(zmq.DEALER)
        sock.linger = 0  # no IMMEDIATE: with it libzmq can abort (session_base.cpp) when a reconnect races a pipe
        # activation; chunks need no such guard: they go out only on credit and stay ours until acked
        sock.maxmsgsize = self.cfg.BUFFER_SIZE
        monitor = None
        if self._curve is not None:
            security.secure_client(sock, self._curve)
            monitor = sock.get_monitor_socket(HANDSHAKE_FAILED | zmq.EVENT_HANDSHAKE_SUCCEEDED)
        sock.connect(self.address)
        return sock, monitor

    def _connection(self) -> str:
        """Run one connection until it is lost ('lost'), refused ('fatal') or closed ('stop')."""
        sock, monitor = self._open()
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        if monitor is not None:
            poller.register(monitor, zmq.POLLIN)
        live = Liveness(self._hb, MISSES, self._clock)
        self._state, self._hello_sent, self._cn, self._sn = "hello", False, security.nonce(), b""
        outcome = "stop"
        try:
            while not self._stop.is_set():
                if self._state == "hello" and not self._hello_sent:
                    self._hello_sent = self._send(sock, live, make(MsgType.HELLO, {
                        "role": self.role, "session": self.session, "spec_hash": self._spec_hash,
                        "nonce": self._cn, "policy_version": self._policy_version()}))
                ready = self._state == "ready"
                timeout = min(live.until_heartbeat(), 0.2 if ready else 0.05)
                events = dict(poller.poll(timeout * 1000))
                if self._wake_r in events or self._wake_r.fileno() in events:
                    self._drain_wake()
                if monitor is not None and monitor in events and self._handshake_failed(monitor):
                    return (outcome := "fatal")
                if sock in events:
                    result = self._receive(sock, live)
                    if result:
                        return (outcome := result)
                if live.silent():
                    log.warning("tmrlx %s: no answer from the broker at %s for %.0f s; reconnecting%s", self.role,
                                self.address, live.interval * live.misses,
                                "" if self._state == "ready" else " (is it running? same PASSWORD, TLS and PORT?)")
                    return (outcome := "lost")
                if self._state == "ready":
                    self._pump(sock, live)
                if self._state == "ready" and live.heartbeat_due():  # a handshake has its own timeout
                    self._send(sock, live, make(MsgType.HEARTBEAT))
                if self.gather_s and events and self._state == "ready":
                    self._stop.wait(self.gather_s)  # let a burst gather: one loop turn then serves several messages
            return outcome
        finally:
            self._ready.clear()
            self._on_disconnect()
            if outcome == "stop" and self._state == "ready":
                sock.linger = 1000  # let queued chunks and BYE reach the broker
                self._send(sock, live, make(MsgType.BYE))
            if monitor is not None:
                sock.disable_monitor()
                monitor.close(linger=0)
            sock.close()

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _handshake_failed(self, monitor: zmq.Socket) -> bool:
        event = recv_monitor_message(monitor)
        self._hs_failures = self._hs_failures + 1 if event["event"] & HANDSHAKE_FAILED else 0
        if self._hs_failures >= HANDSHAKE_TRIES:
            self._fail(f"CurveZMQ handshake with the broker at {self.address} failed: its keys differ from ours "
                       "(PASSWORD or TLS_CREDENTIALS_DIRECTORY must match on every machine)")
            return True
        return False

    def _send(self, sock: zmq.Socket, live: Liveness, frames: Frames) -> bool:
        try:
            wire.send(sock, frames)
        except zmq.Again:
            return False
        live.sent()
        return True

    def _receive(self, sock: zmq.Socket, live: Liveness) -> str | None:
        for frames in itertools.islice(wire.waiting(sock), 256):  # then let the loop send
            live.received()
            try:
                mtype, msg = parse(frames, self.cfg.BUFFER_SIZE)
            except ProtocolError as e:
                self._counts["rejected"] += 1
                log.warning("tmrlx %s: ignored a bad message from the broker: %s", self.role, e.reason)
                if e.fatal:
                    self._fail(e.reason)
                    return "fatal"
                continue
            result = self._dispatch(sock, live, mtype, msg.header, msg.arrays)
            if result:
                return result
        return None

    def _dispatch(self, sock: zmq.Socket, live: Liveness, mtype: MsgType, header: dict, arrays: dict) -> str | None:
        if mtype is MsgType.ERROR:
            if header["fatal"]:
                self._fail(f"the broker at {self.address} refused this {self.role}: {header['reason']}")
                return "fatal"
            if header.get("retry"):  # the broker restarted and forgot us: handshake again on this socket
                self._state, self._hello_sent, self._cn = "hello", False, security.nonce()
                self._ready.clear()
                self._on_disconnect()
                self._counts["reconnects"] += 1
            else:
                self._counts["rejected"] += 1
                log.warning("tmrlx %s: the broker rejected a message: %s", self.role, header["reason"])
        elif mtype is MsgType.CHALLENGE and self._state == "hello" and header["echo"] == self._cn:
            self._sn = header["nonce"]
            proof = security.mac(self._key, "client", self._cn, self._sn, self.session, self.role)
            self._send(sock, live, make(MsgType.AUTH, {"mac": proof}))
            self._state = "auth"
        elif mtype is MsgType.WELCOME and self._state == "auth":
            if not security.verify(self._key, header["mac"], "broker", self._cn, self._sn, self.session):
                self._fail(f"the broker at {self.address} does not know our PASSWORD (it must match on every machine)")
                return "fatal"
            hb = header.get("heartbeat_s")
            live.interval = float(hb) if isinstance(hb, (int, float)) and 0 < hb <= 60 else self._hb
            self._state = "ready"
            self._backoff.reset()
            self._on_welcome(sock, live, header)
            self._ready.set()
        elif self._state == "ready":
            self._on_message(mtype, header, arrays)
        return None

    # ---- hooks
    def _policy_version(self) -> int:
        return -1

    def _on_welcome(self, sock: zmq.Socket, live: Liveness, header: dict) -> None:
        """Right after the handshake."""

    def _on_disconnect(self) -> None:
        """The connection is gone: what was in flight is ours again."""

    def _on_message(self, mtype: MsgType, header: dict, arrays: dict) -> None:
        """A message after the handshake."""

    def _pump(self, sock: zmq.Socket, live: Liveness) -> None:
        """Send what is due."""


class ActorClient(_Link):
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
        self._seq = self._rows = 0
        self._weights: tuple[int, dict[str, np.ndarray], dict] | None = None
        self._version = -1
        self._sent = self._dropped = self._rows_sent = 0
        super().__init__(cfg, spec, session, **kwargs)

    def send_samples(self, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any] | None = None) -> None:
        """Queue one columnar chunk (copied); when the queue is full the oldest chunk is dropped and counted.

        `meta` may carry `step0` and `policy_version`; `session` and `seq` are filled in here.
        """
        rows = len(next(iter(arrays.values()))) if arrays else 0
        with self._lock:
            seq, self._seq = self._seq, self._seq + 1
            header = {"step0": self._rows, "policy_version": self._version, **(meta or {}),
                      "session": self.session, "seq": seq}
            self._rows += rows
            spare, self._spare = self._spare, []
        frames = make(MsgType.SAMPLES, header, arrays, spare)  # the body is a copy: the caller may reuse its arrays
        size = sum(memoryview(f).nbytes for f in frames)
        with self._lock:
            self._spare.extend(spare[:MAX_SPARE - len(self._spare)])
            if size > self.cfg.BUFFER_SIZE:
                self._dropped += 1
                log.error("tmrlx actor: dropped a chunk of %d bytes: over BUFFER_SIZE=%d", size, self.cfg.BUFFER_SIZE)
                return
            idle = not self._queue  # the link thread drains a non-empty queue by itself (or on the next CREDIT)
            self._queue.append((seq, frames, rows))
            if len(self._queue) > self._max_queue:
                self._queue.popleft()
                self._dropped += 1
        if idle:
            self._wake()

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


class LearnerClient(_Link):
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
            with self._cond:
                self._episodes.append({**header["stats"], "session": header.get("session")})

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

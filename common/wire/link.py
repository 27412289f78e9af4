"""The client end of the wire, shared by the actor's and the learner's links.

A daemon thread owns the ZeroMQ socket and does the handshake, heartbeats, credit and reconnects;
the caller's thread only touches bounded queues under a lock, so an actor's real-time loop never
waits on the network. A fatal refusal (wrong PASSWORD, other layout) sets `.error`, is logged once
and stops the client; a refusal for now (NB_WORKERS actors or a learner already connected) is logged
and the client tries again with its reconnect backoff. The config is resolved once into
`LinkSettings`: nothing on the per-message path reads it.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import zmq
from tmrlx.common.config import Config
from tmrlx.common.specs import ObsSpec
from tmrlx.common.wire import frames as wire
from tmrlx.common.wire import security
from tmrlx.common.wire.codec import ProtocolError
from tmrlx.common.wire.handshake import ClientHandshake
from tmrlx.common.wire.liveness import HEARTBEAT_S, MISSES, Backoff, Clock, Liveness
from tmrlx.common.wire.protocol import MsgType, make, parse
from zmq.utils.monitor import recv_monitor_message

HANDSHAKE_FAILED = zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
HANDSHAKE_TRIES = 3  # a broker dying mid-handshake fails one too: only repeated failures mean other keys
# Connecting takes ~7 round trips with TLS (TCP, ZMTP greeting, CurveZMQ, then HELLO/CHALLENGE/AUTH/WELCOME): reaching
# each stage the first time restarts the silence clock, or a 400 ms round trip plus one lost SYN never fits in MISSES
# heartbeats (a peer that accepts and drops the TCP connection again and again still times out)
PROGRESS: dict[int, int] = {zmq.EVENT_CONNECTED: 1, zmq.EVENT_HANDSHAKE_SUCCEEDED: 2}  # monitor event -> stage
Frames = list[Any]


@dataclass(frozen=True)
class LinkSettings:
    """What a link needs from the config, resolved once."""

    address: str
    auth_key: bytes
    curve: security.CurveKeys | None
    max_bytes: int

    @classmethod
    def from_config(cls, cfg: Config, role: str) -> LinkSettings:
        """127.0.0.1 when LOCALHOST_WORKER / LOCALHOST_TRAINER says so, else PUBLIC_IP_SERVER; keys from PASSWORD / TLS."""
        local = cfg.LOCALHOST_WORKER if role == "actor" else cfg.LOCALHOST_TRAINER
        address = f"tcp://{'127.0.0.1' if local else cfg.PUBLIC_IP_SERVER}:{cfg.PORT}"
        curve = security.curve_keys(cfg, server=False) if cfg.TLS else None
        return cls(address, security.auth_key(cfg.PASSWORD), curve, cfg.BUFFER_SIZE)


class Link:
    """One logical connection to the broker; the actor's and the learner's links add what they send and receive."""

    role = ""
    gather_s = 0.0  # after a loop turn that had work, wait this long before polling again (see the subclasses)

    def __init__(self, cfg: Config, spec: ObsSpec, session: str | None = None, *, heartbeat_s: float = HEARTBEAT_S,
                 backoff: tuple[float, float] = (1.0, 32.0), clock: Clock = time.monotonic):
        self.settings = LinkSettings.from_config(cfg, self.role)
        self.session = session or secrets.token_hex(8)
        self.address = self.settings.address
        self.error: str | None = None
        self.log = logging.getLogger(f"tmrlx.{self.role}")
        self._spec_hash = spec.hash()
        self._hs = self._handshake()
        self._hb, self._clock, self._backoff = heartbeat_s, clock, Backoff(*backoff)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._counts = {"reconnects": 0, "rejected": 0, "heartbeats": 0}
        self._refusal = ""  # why the broker turned the last handshake away for now
        self._hs_failures = 0
        self._stage = 0  # of connecting reached by the current connection (PROGRESS)
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
            self.log.warning("the link thread did not stop within 5 s; it will close its socket itself")
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
            while not self._stop.is_set() and (outcome := self._connection()) in ("lost", "refused"):
                self._counts["reconnects"] += 1
                delay = self._backoff.next()
                if outcome == "refused":
                    self.log.warning("the broker at %s turned this %s away for now: %s; trying again in %.1f s",
                                     self.address, self.role, self._refusal, delay)
                self._stop.wait(delay)
        except Exception as e:  # the thread must never die silently
            self._fail(f"link thread crashed: {type(e).__name__}: {e}")
            self.log.exception("link thread crashed")
        finally:
            self._ctx.term()  # every socket of this context was closed by _connection, in this thread

    def _fail(self, reason: str) -> None:
        self.error = reason
        self._ready.clear()
        self.log.error("%s", reason)

    def _open(self) -> tuple[zmq.Socket, zmq.Socket]:
        sock = self._ctx.socket(zmq.DEALER)
        sock.linger = 0  # no IMMEDIATE: with it libzmq can abort (session_base.cpp) when a reconnect races a pipe
        # activation; chunks need no such guard: they go out only on credit and stay ours until acked
        sock.maxmsgsize = self.settings.max_bytes
        failures = 0
        if self.settings.curve is not None:
            security.secure_client(sock, self.settings.curve)
            failures = HANDSHAKE_FAILED
        monitor = sock.get_monitor_socket(sum(PROGRESS) | failures)
        sock.connect(self.address)
        return sock, monitor

    def _connection(self) -> str:
        """Run one connection until it is lost ('lost'), refused for now ('refused') or for good ('fatal'), or closed ('stop')."""
        sock, monitor = self._open()
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        poller.register(monitor, zmq.POLLIN)
        live = Liveness(self._hb, MISSES, self._clock)
        self._hs = self._handshake()
        self._stage = 0
        outcome = "stop"
        try:
            while not self._stop.is_set():
                if self._hs.state == "hello" and not self._hs.hello_sent:
                    self._hs.hello_sent = self._send(sock, live, self._hs.hello(self._policy_version(), **self._hello_extra()))
                ready = self._hs.ready
                timeout = min(live.until_heartbeat(), 0.2 if ready else 0.05)
                events = dict(poller.poll(math.ceil(timeout * 1000)))
                if self._wake_r in events or self._wake_r.fileno() in events:
                    self._drain_wake()
                if monitor in events and self._transport_event(monitor, live):
                    return (outcome := "fatal")
                if sock in events:
                    result = self._receive(sock, live)
                    if result:
                        return (outcome := result)
                if live.silent():
                    self.log.warning("no answer from the broker at %s for %.0f s; reconnecting%s", self.address,
                                     live.interval * live.misses,
                                     "" if self._hs.ready else " (is it running? same PASSWORD, TLS and PORT?)")
                    return (outcome := "lost")
                if self._hs.ready:
                    self._pump(sock, live)
                if self._hs.ready and live.heartbeat_due() and self._send(sock, live, make(MsgType.HEARTBEAT)):
                    self._counts["heartbeats"] += 1  # (a handshake has its own timeout)
                if self.gather_s and events and self._hs.ready:
                    self._stop.wait(self.gather_s)  # let a burst gather: one loop turn then serves several messages
            return outcome
        finally:
            self._ready.clear()
            self._on_disconnect()
            if outcome == "stop" and self._hs.ready:
                sock.linger = 1000  # let queued chunks and BYE reach the broker
                self._send(sock, live, make(MsgType.BYE))
            sock.disable_monitor()
            monitor.close(linger=0)
            sock.close()

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _transport_event(self, monitor: zmq.Socket, live: Liveness) -> bool:
        """A new stage of connecting restarts the silence clock (once ready, only the broker's messages do); True when
        repeated CurveZMQ failures mean other keys."""
        event = recv_monitor_message(monitor)["event"]
        if not event & HANDSHAKE_FAILED:
            if PROGRESS.get(event, 0) > self._stage and not self._hs.ready:
                self._stage = PROGRESS[event]
                live.received()
            if event & zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._hs_failures = 0
            return False
        self._hs_failures += 1
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
                mtype, msg = parse(frames, self.settings.max_bytes)
            except ProtocolError as e:
                self._counts["rejected"] += 1
                self.log.warning("ignored a bad message from the broker: %s", e.reason)
                if e.fatal:
                    self._fail(e.reason)
                    return "fatal"
                continue
            result = self._dispatch(sock, live, mtype, msg.header, msg.arrays)
            if result:
                return result
        return None

    def _handshake(self) -> ClientHandshake:
        return ClientHandshake(self.settings.auth_key, self.role, self.session, self._spec_hash)

    def _dispatch(self, sock: zmq.Socket, live: Liveness, mtype: MsgType, header: dict, arrays: dict) -> str | None:
        if mtype is MsgType.ERROR:
            if header["fatal"]:
                self._fail(f"the broker at {self.address} refused this {self.role}: {header['reason']}")
                return "fatal"
            if header.get("retry"):  # the broker restarted and forgot us: handshake again on this socket
                self._hs = self._handshake()
                self._ready.clear()
                self._on_disconnect()
                self._counts["reconnects"] += 1
            elif not self._hs.ready:  # the handshake was turned away for now (a slot is taken): back off and retry
                self._refusal = header["reason"]
                return "refused"
            else:
                self._counts["rejected"] += 1
                self.log.warning("the broker rejected a message: %s", header["reason"])
        elif mtype is MsgType.CHALLENGE:
            auth = self._hs.on_challenge(header)
            if auth is not None:
                self._send(sock, live, auth)
        elif mtype is MsgType.WELCOME:
            accepted = self._hs.on_welcome(header)
            if accepted is False:
                self._fail(f"the broker at {self.address} does not know our PASSWORD (it must match on every machine)")
                return "fatal"
            if accepted:
                hb = header.get("heartbeat_s")
                live.interval = float(hb) if isinstance(hb, (int, float)) and 0 < hb <= 60 else self._hb
                self._backoff.reset()
                self._on_welcome(sock, live, header)
                self._ready.set()
        elif self._hs.ready:
            self._on_message(mtype, header, arrays)
        return None

    # ---- hooks
    def _policy_version(self) -> int:
        return -1

    def _hello_extra(self) -> dict[str, Any]:
        """More HELLO fields of this role."""
        return {}

    def _on_welcome(self, sock: zmq.Socket, live: Liveness, header: dict) -> None:
        """Right after the handshake."""

    def _on_disconnect(self) -> None:
        """The connection is gone: what was in flight is ours again."""

    def _on_message(self, mtype: MsgType, header: dict, arrays: dict) -> None:
        """A message after the handshake."""

    def _pump(self, sock: zmq.Socket, live: Liveness) -> None:
        """Send what is due."""



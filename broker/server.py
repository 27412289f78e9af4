"""The broker (TMRL's `Server`): one ROUTER socket routes samples actor -> learner and weights back.

Samples wait in a FIFO and go to the learner as it grants credit. Actors get their chunk credit back
in batches of a quarter window (or within heartbeat/4 when fewer are owed) while the FIFO holds fewer
than BUFFERS_MAXLEN rows, so it holds at most that plus one window per actor and never drops: an
actor keeps every chunk until the learner acknowledges it (relayed here by session) and sends again
what was not acknowledged when it reconnects; the broker keeps what it forwarded until the learner
acknowledges it, and puts it back at the head of the FIFO when the learner goes, so the next one gets
every stream whole and in order. Paced actors (lockstep environments) also get
step credit, from the rows the learner allows (docs/protocol.md, "Flow control"). The latest weights
sit in one slot and reach every actor on connect and on change. Every send is non-blocking: a slow
or dead peer never stalls the loop.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zmq
from tmrlx.broker.status import Status
from tmrlx.common import episodes, weights
from tmrlx.common.chunks import MAX_ROWS, ChunkError, ChunkSchema
from tmrlx.common.config import Config
from tmrlx.common.errors import ConfigError
from tmrlx.common.kinds import spec_from_config
from tmrlx.common.specs import ObsSpec
from tmrlx.common.weights import Arch, actor_shapes
from tmrlx.common.wire import frames as wire
from tmrlx.common.wire import parts, security
from tmrlx.common.wire.codec import ALIGN, MAX_ARRAYS, MAX_HEADER_BYTES, MAX_LAYOUTS, PREFIX, Decoded, ProtocolError
from tmrlx.common.wire.handshake import ROLES, ServerHandshake
from tmrlx.common.wire.liveness import HEARTBEAT_S, MISSES, Clock, Liveness
from tmrlx.common.wire.protocol import MAX_LISTED, PROBLEM_TEXT, MsgType, error, make, parse
from zmq.utils.monitor import recv_monitor_message

log = logging.getLogger("tmrlx.broker")
Frames = list[Any]
Chunk = tuple[int, Frames, int, str, int]  # rows, frames, bytes, session, seq
LOOPBACK = ("127.0.0.1", "localhost", "::1")
MAX_PENDING = 1024
MAX_GRANT = 256  # rows of step credit a paced actor holds at most (one full chunk)


@dataclass(frozen=True)
class BrokerSettings:
    """What the broker needs from the config, resolved once (nothing on the per-message path reads the config)."""

    host: str  # 127.0.0.1 when every role is on this machine (both LOCALHOST keys true), else 0.0.0.0
    auth_key: bytes
    weak_password: str | None  # why PASSWORD must not guard a public bind (None: it may)
    curve: security.CurveKeys | None
    max_bytes: int  # the largest legal message: libzmq refuses bigger ones before anything is buffered for good
    max_buffered: int
    max_actors: int  # -1: no cap
    port: int
    schema: ChunkSchema
    spec_hash: str

    @classmethod
    def from_config(cls, cfg: Config) -> BrokerSettings:
        spec = spec_from_config(cfg)
        curve = security.curve_keys(cfg, server=True) if cfg.TLS else None
        host = "127.0.0.1" if cfg.LOCALHOST_WORKER and cfg.LOCALHOST_TRAINER else "0.0.0.0"
        schema = ChunkSchema.of(spec)
        return cls(host, security.auth_key(cfg.PASSWORD), security.weak_password(cfg.PASSWORD), curve,
                   min(cfg.BUFFER_SIZE, largest_message(schema, spec)), cfg.BUFFERS_MAXLEN, cfg.NB_WORKERS, cfg.PORT,
                   schema, spec.hash())


def largest_message(schema: ChunkSchema, spec: ObsSpec) -> int:
    """Bytes of the largest message a broker can legally receive: a chunk of MAX_ROWS rows, or the actor's weights."""
    weights = sum(4 * math.prod(shape) for shape in actor_shapes(spec, Arch.for_spec(spec)).values())
    arrays = max(MAX_ROWS * schema.row_bytes, weights) + ALIGN * MAX_ARRAYS  # + padding between arrays
    return arrays + MAX_HEADER_BYTES + PREFIX


@dataclass
class Peer:
    """An authenticated actor or learner."""

    role: str
    session: str
    address: str
    live: Liveness
    policy_version: int = -1  # actor: the weights version it holds (or is being sent)
    weights_unacked: bool = False  # actor: weights sent and not yet acknowledged: no newer ones until they are
    credit: int = 0  # learner: chunks it can still take; actor: chunks it may still send
    owed: int = 0  # actor: chunks received since its last CREDIT
    acked: int = -1  # actor: highest seq of its chunks the learner ingested
    ack_sent: int = -1  # actor: the highest `acked` told to it
    paced: bool = False  # actor: waits for step credit
    steps: int = 0  # paced actor: rows granted and not yet received
    steps_due: int = 0  # paced actor: rows granted and not yet told
    assembly: parts.Assembly | None = None  # learner: the weights message its WEIGHTS_PARTs are building
    rows: int = 0  # actor: rows received over this connection
    info: dict = field(default_factory=dict)
    since: float = 0.0  # when it connected (the broker's clock)


class Broker:
    """Run in-process with `serve_forever()` (stop with `stop()`), or from the CLI with `run`."""

    def __init__(self, cfg: Config, *, host: str | None = None, port: int | None = None, heartbeat_s: float = HEARTBEAT_S,
                 actor_window: int = 16, clock: Clock = time.monotonic):
        self.settings = settings = BrokerSettings.from_config(cfg)
        host = settings.host if host is None else host
        if host not in LOOPBACK and settings.weak_password:
            raise ConfigError(f"PASSWORD {settings.weak_password}: a broker listening on {host} would let anyone who guesses it "
                              "in. Set the same long random PASSWORD on every machine, e.g. "
                              "--password \"$(python -c 'import secrets; print(secrets.token_urlsafe(18))')\", "
                              "or keep every role on this machine (LOCALHOST_WORKER and LOCALHOST_TRAINER true)")
        self._hb, self._clock, self._window = heartbeat_s, clock, actor_window
        self._credit_batch = max(1, actor_window // 4)  # CREDIT per chunk cost a message each way per chunk
        self._ctx = zmq.Context()
        self._zap: security.ZapHandler | None = None
        self._monitor: zmq.Socket | None = None
        self.sock = self._ctx.socket(zmq.ROUTER)
        self.sock.router_mandatory = 1
        self.sock.linger = 0
        self.sock.maxmsgsize = settings.max_bytes
        if settings.curve is not None:
            self._zap = security.ZapHandler(self._ctx, settings.curve.allowed)
            security.secure_server(self.sock, settings.curve)
            self._monitor = self.sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_AUTH)
        port = settings.port if port is None else port
        self.sock.bind(f"tcp://{host}:{port or '*'}")
        self.host, self.port = host, int(self.sock.getsockopt_string(zmq.LAST_ENDPOINT).rsplit(":", 1)[1])
        self.peers: dict[bytes, Peer] = {}
        self._pending: OrderedDict[bytes, ServerHandshake] = OrderedDict()
        self._learner: bytes | None = None
        self._buffer: deque[Chunk] = deque()
        self._unacked: dict[str, deque[Chunk]] = {}  # actor session -> chunks forwarded, not yet acknowledged
        self._unacked_rows = 0  # at most max_buffered: a learner that acknowledges nothing gets nothing more
        self._buffered = 0
        self._weights: tuple[int, list[Frames]] | None = None  # version, its messages: one, or its WEIGHTS_PARTs
        self._episodes: deque[Frames] = deque(maxlen=1000)
        self._checked: dict[bytes, int] = {}  # chunk declarations -> rows, for those that passed the check
        self._sessions: dict[str, bytes] = {}  # actor session -> its connection, to relay the learner's acks
        self._urgent: set[bytes] = set()  # actors owed a batch of credit or steps (the rest waits for chores)
        self._paced: set[bytes] = set()
        self._allow = self._forwarded = self._granted = 0  # rows: the learner allows, got, paced actors may still make
        self.counts = dict.fromkeys(("samples_in", "bytes_in", "samples_out", "bytes_out", "chunks_in", "chunks_out",
                                     "weights_in", "weights_out", "rejected", "refused"), 0)
        self._stop = threading.Event()
        self._serving = False
        self._warned: dict[str, float] = {}
        self._problems: dict[str, tuple[float, str]] = {}  # kind -> (when, what) of the latest refusal or rejection
        if settings.curve is None and host not in LOOPBACK:
            log.warning("TLS is false on %s:%d: samples and weights travel in clear, and anyone who reaches the port can make "
                        "the broker buffer up to %.1f MiB per connection before the password is checked. TLS is the "
                        "protection: set TLS true (CurveZMQ) on every machine", host, self.port, settings.max_bytes / 2**20)

    # ---- public
    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        """Free the sockets; only once `serve_forever` returned (a ZeroMQ socket is used by one thread at a time)."""
        if self._serving:
            raise RuntimeError("Broker.close() while serve_forever() runs: stop() it and wait for it to return first")
        if self._zap is not None:
            self._zap.close()
        if self._monitor is not None:
            self.sock.disable_monitor()
            self._monitor.close(linger=0)
        self.sock.close(linger=0)
        self._ctx.term()

    def stats(self) -> dict[str, Any]:
        """Counters plus connected actors, learner presence, buffered rows and the weights version."""
        return {**self.counts, "actors": self._actors(), "learner": self._learner is not None, "buffered": self._buffered,
                "paced": len(self._paced), "steps_granted": self._granted,
                "weights_version": self._weights[0] if self._weights else None}

    def state(self) -> dict[str, Any]:
        """What `tmrlx status` shows (a STATE header): the counters, the learner and the first actors (MAX_LISTED in all),
        and the latest refusal or rejection of each kind with its reason."""
        now = self._clock()
        learner = [self.peers[self._learner]] if self._learner is not None else []
        actors = (p for p in self.peers.values() if p.role == "actor")
        peers = [{"role": p.role, "session": p.session, "address": str(p.address)[:64], "samples": p.rows,
                  "connected_s": max(0.0, now - p.since), "seen_s": max(0.0, now - p.live.last_recv),
                  "policy_version": p.policy_version} for p in itertools.islice(itertools.chain(learner, actors), MAX_LISTED)]
        problems = [{"kind": kind, "ago_s": max(0.0, now - t), "reason": "".join(c if c.isprintable() else "?" for c in what)}
                    for kind, (t, what) in self._problems.items()]
        return {"counts": {k: v for k, v in self.stats().items() if type(v) is int},
                "weights_version": self._weights[0] if self._weights else -1, "peers": peers, "problems": problems}

    def serve_forever(self, stop_event: threading.Event | None = None, on_status: Any = None,
                      status_every: float = 1.0) -> None:
        """Serve until `stop()` (or `stop_event`); `on_status(line)` gets the live one-line status."""
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        if self._zap is not None and self._monitor is not None:
            poller.register(self._zap.socket, zmq.POLLIN)
            poller.register(self._monitor, zmq.POLLIN)
        status = Status(self.stats, self._clock)
        next_chores = next_status = self._clock()
        self._serving = True
        try:
            while not (self._stop.is_set() or (stop_event is not None and stop_event.is_set())):
                events = dict(poller.poll(math.ceil(min(100.0, self._hb * 250))))
                if self._zap is not None and self._zap.socket in events:
                    self._authenticate(self._zap)
                if self._monitor is not None and self._monitor in events:
                    self._handshake_failed(self._monitor)
                if self.sock in events:
                    self._receive()
                self._flush()
                now = self._clock()
                if now >= next_chores:
                    self._chores()
                    next_chores = now + self._hb / 4
                if on_status is not None and now >= next_status:
                    on_status(status.line())
                    next_status = now + status_every
        finally:
            self._serving = False

    # ---- receiving
    def _authenticate(self, zap: security.ZapHandler) -> None:
        ok, address = zap.handle()
        if not ok:
            self.counts["refused"] += 1
            self._warn("zap", f"refused a CurveZMQ connection from {address}: its key is not allowed "
                              "(wrong PASSWORD or TLS_CREDENTIALS_DIRECTORY)")

    def _handshake_failed(self, monitor: zmq.Socket) -> None:
        recv_monitor_message(monitor)
        self.counts["refused"] += 1
        self._warn("curve", "a client's CurveZMQ handshake failed: it uses other keys (wrong PASSWORD or "
                            "TLS_CREDENTIALS_DIRECTORY)")

    def _receive(self) -> None:
        for ident, *frames in itertools.islice(wire.waiting(self.sock), 1000):  # then send and do chores
            self._handle(ident.bytes, frames)

    def _handle(self, ident: bytes, frames: Frames) -> None:
        peer = self.peers.get(ident)
        if peer is not None:
            peer.live.received()
        try:
            mtype, msg = parse(frames, self.settings.max_bytes)
        except ProtocolError as e:
            self._reject(ident, peer, e.reason, fatal=e.fatal)
            return
        if mtype is MsgType.HELLO:
            self._hello(ident, frames[0], msg.header)
        elif mtype is MsgType.AUTH:
            self._auth(ident, msg.header)
        elif peer is None:
            self._send(ident, error("unknown peer (did the broker restart?): say HELLO first", retry=True))
        elif mtype is MsgType.SAMPLES and peer.role == "actor":
            self._samples(ident, peer, msg)
        elif mtype is MsgType.EPISODE and peer.role == "actor":
            self._episode(ident, peer, msg)
        elif mtype is MsgType.CREDIT and peer.role == "learner":
            peer.credit += msg.header["n"]
        elif mtype is MsgType.ACK and peer.role == "learner":
            self._ack(msg.header)
        elif mtype is MsgType.WEIGHTS and peer.role == "learner":
            self._store_weights(ident, peer, msg)
        elif mtype is MsgType.WEIGHTS_PART and peer.role == "learner":
            self._weights_part(ident, peer, msg)
        elif mtype is MsgType.STATUS and peer.role == "status":
            self._send(ident, make(MsgType.STATE, self.state()))
        elif mtype is MsgType.BYE:
            self._forget(ident, "left")
        elif mtype is MsgType.HEARTBEAT:
            if peer.role == "actor" and msg.header.get("version") == peer.policy_version:
                peer.weights_unacked = False
                self._give_weights(ident, peer)
        else:
            self._reject(ident, peer, f"{mtype.name} is not expected from a {peer.role}")

    def _reject(self, ident: bytes, peer: Peer | None, reason: str, fatal: bool = False) -> None:
        self.counts["rejected"] += 1
        who = f"{peer.role} {peer.session}" if peer else "an unknown peer"
        self._warn("reject", f"rejected a message from {who}: {reason}")
        self._send(ident, error(reason, fatal=fatal))

    def _hello(self, ident: bytes, first: Any, h: dict) -> None:
        address = _peer_address(first)
        if h["role"] not in ROLES:
            return self._refuse(ident, address, h, f"role {h['role']!r} is not one of {ROLES}")
        mine = self.settings.spec_hash
        if h["spec_hash"] != mine:
            return self._refuse(ident, address, h, f"its observation layout (spec {h['spec_hash']}) differs from the "
                                                   f"broker's ({mine}): ENV settings must match on every machine")
        while len(self._pending) >= MAX_PENDING:
            self._pending.popitem(last=False)
        hs = ServerHandshake.from_hello(h, address, self._clock())
        self._pending[ident] = hs
        self._send(ident, hs.challenge())

    def _refuse(self, ident: bytes, address: str, h: dict, reason: str, fatal: bool = True) -> None:
        self.counts["refused"] += 1  # role and session passed the protocol's identifier check: safe to print
        self._warn("refuse", f"refused {h.get('role')} {h.get('session')} from {address}: {reason}")
        self._send(ident, error(reason, fatal=fatal))

    def _auth(self, ident: bytes, h: dict) -> None:
        hs = self._pending.pop(ident, None)
        if hs is None:
            self._send(ident, error("AUTH without HELLO: say HELLO first", retry=True))
            return
        hd = {"role": hs.role, "session": hs.session}
        if not hs.verify(self.settings.auth_key, h):
            return self._refuse(ident, hs.address, hd, "wrong PASSWORD (it must match on every machine)")
        for old, p in list(self.peers.items()):
            if p.session == hs.session:
                self._forget(old, None)
        if hs.role == "learner" and self._learner is not None:
            other = self.peers[self._learner].session
            return self._refuse(ident, hs.address, hd, f"another learner ({other}) is connected", fatal=False)
        if hs.role == "actor" and not self._actor_slot_free():
            cap = self.settings.max_actors
            return self._refuse(ident, hs.address, hd, f"NB_WORKERS={cap} actors are already connected", fatal=False)
        credit = self._window if hs.role == "actor" else 0
        peer = Peer(hs.role, hs.session, hs.address, Liveness(self._hb, MISSES, self._clock), hs.policy_version,
                    credit=credit, paced=hs.paced and hs.role == "actor", since=self._clock())
        self.peers[ident] = peer
        self._send(ident, hs.welcome(self.settings.auth_key, credit, self._hb))
        log.info("%s %s connected from %s%s", hs.role, hs.session, hs.address, " (paced)" if peer.paced else "")
        if hs.role == "learner":
            self._learner = ident
        elif hs.role == "actor":
            self._sessions[hs.session] = ident
            if peer.paced:
                self._paced.add(ident)
                self._grant()
            self._give_weights(ident, peer)

    def _actor_slot_free(self) -> bool:
        """Whether NB_WORKERS leaves room for one more actor.

        A restarted actor process has a new session, and its dead predecessor would hold a slot until it went silent
        (3 heartbeats). So at the cap every counted actor is probed first: a HEARTBEAT to one whose connection is gone
        (its process was killed) fails at once and forgets it. One whose connection merely hangs (a machine lost
        power) is forgotten when silent; meanwhile the refusal is not fatal and the newcomer retries with its backoff.
        """
        cap = self.settings.max_actors
        if cap == -1 or self._actors() < cap:
            return True
        for ident, peer in list(self.peers.items()):
            if peer.role == "actor":
                self._send(ident, make(MsgType.HEARTBEAT))
        return self._actors() < cap

    def _actors(self) -> int:
        return sum(p.role == "actor" for p in self.peers.values())

    def _samples(self, ident: bytes, peer: Peer, msg: Decoded) -> None:
        h = msg.header
        if peer.credit <= 0:
            return self._reject(ident, peer, "SAMPLES without credit: wait for CREDIT")
        peer.credit -= 1
        peer.owed += 1  # given back even for a rejected chunk: the actor will not send that one again
        if peer.owed >= self._credit_batch:
            self._urgent.add(ident)
        if h["session"] != peer.session:
            self.counts["rejected"] += 1
            self._warn("session", f"rejected a chunk of actor {peer.session} claiming session {h['session']!r}")
            return
        try:
            rows = self._checked.get(msg.decl) or self._check(msg)
        except ChunkError as e:
            self.counts["rejected"] += 1
            self._warn("chunk", f"rejected a chunk of actor {peer.session}: {e}")
            self._send(ident, error(str(e)))
            return
        self._buffer.append((rows, msg.frames, msg.nbytes, peer.session, h["seq"]))
        self._buffered += rows
        peer.rows += rows
        if peer.steps:
            used = min(rows, peer.steps)
            peer.steps -= used
            self._granted -= used
        self.counts["samples_in"] += rows
        self.counts["bytes_in"] += msg.nbytes
        self.counts["chunks_in"] += 1

    def _ack(self, h: dict) -> None:
        """The learner ingested these chunks (per session, the highest seq) and allows this many rows in total."""
        for session, seq in h["acks"].items():
            ident = self._sessions.get(session)
            peer = self.peers.get(ident) if ident is not None else None
            if peer is not None and seq > peer.acked:
                peer.acked = seq  # told with the next credit, or within a heartbeat
            unacked = self._unacked.get(session)
            while unacked and unacked[0][4] <= seq:
                self._unacked_rows -= unacked.popleft()[0]
            if not unacked:
                self._unacked.pop(session, None)
        if "allow" in h:
            self._allow = h["allow"]
            self._grant()

    def _grant(self) -> None:
        """Share the rows the learner allows, less those on their way (here, sent, or granted), among paced actors."""
        if not self._paced:
            return
        free = self._allow - self._forwarded - self._buffered - self._granted
        share = max(1, min(MAX_GRANT, (free + self._granted) // len(self._paced)))
        for ident in sorted(self._paced, key=lambda i: self.peers[i].steps):
            if free <= 0:
                break
            peer = self.peers[ident]
            k = min(share - peer.steps, free)
            if k > 0:
                peer.steps += k
                peer.steps_due += k
                self._granted += k
                free -= k
                self._urgent.add(ident)

    def _check(self, msg: Decoded) -> int:
        """Rows of a chunk held to the spec; remembered per distinct declarations (a stream repeats them)."""
        rows = self.settings.schema.check_layout(msg.layout)
        if len(self._checked) >= MAX_LAYOUTS:
            self._checked.clear()
        self._checked[msg.decl] = rows
        return rows

    def _episode(self, ident: bytes, peer: Peer, msg: Decoded) -> None:
        try:
            episodes.check(msg.header["stats"])
        except episodes.EpisodeError as e:
            return self._reject(ident, peer, str(e))
        self._episodes.append(msg.frames)

    def _weights_part(self, ident: bytes, peer: Peer, msg: Decoded) -> None:
        """A slice of the learner's next weights (common.wire.parts); the whole is stored once its last part is in."""
        if peer.assembly is None:
            peer.assembly = parts.Assembly(self.settings.max_bytes)
        try:
            full = peer.assembly.weights(msg.header, msg.arrays)
        except ProtocolError as e:
            return self._reject(ident, peer, f"weights refused: {e.reason}")
        if full is not None:
            self._store_weights(ident, peer, full)

    def _store_weights(self, ident: bytes, peer: Peer, msg: Decoded) -> None:
        # stored or refused, the learner may send its next version: one weights message in flight from it too
        self._send(ident, make(MsgType.HEARTBEAT, {"version": msg.header["version"]}))
        problem = self._weights_problem(msg)
        if problem:
            return self._reject(ident, peer, f"weights refused: {problem}")
        version = msg.header["version"]
        self._weights = (version, parts.messages(msg.frames, version))
        self.counts["weights_in"] += 1
        for i, p in list(self.peers.items()):
            if p.role == "actor":
                self._give_weights(i, p)

    def _weights_problem(self, msg: Decoded) -> str | None:
        """What makes a WEIGHTS message unfit for actors: another layout, other arrays than its arch has, non-finite values."""
        try:
            arch, spec = weights.parse_meta(msg.header["meta"])
        except weights.WeightsError as e:
            return str(e)
        if spec.hash() != self.settings.spec_hash:
            return f"they are for layout {spec.hash()}, this broker serves {self.settings.spec_hash}"
        expected = weights.actor_shapes(spec, arch)
        got = {name: shape for name, (_, shape) in msg.layout.items()}
        if got != expected:
            return f"arrays {sorted(got.items())!s:.200} differ from what arch {arch.type} needs"
        bad = [k for k, (dtype, _) in msg.layout.items() if dtype != np.float32]
        if bad:
            return f"weights must be float32 arrays; {bad} are not"
        if not all(np.isfinite(a).all() for a in msg.arrays.values()):
            return "they hold NaN or infinite values"
        return None

    # ---- sending
    def _send(self, ident: bytes, frames: Frames) -> bool:
        """Non-blocking; False when the peer's queue is full; a vanished peer is forgotten."""
        try:
            wire.send(self.sock, [ident, *frames])
        except zmq.Again:
            return False
        except zmq.ZMQError as e:
            if e.errno != zmq.EHOSTUNREACH:
                raise
            self._forget(ident, "is unreachable")
            return False
        peer = self.peers.get(ident)
        if peer is not None:
            peer.live.sent()
        return True

    def _give_weights(self, ident: bytes, peer: Peer) -> None:
        """The newest weights, unless the actor holds them or has not acknowledged the last ones yet: one weights message
        in flight per actor (a slow or mute one would otherwise pile up every version in its send queue)."""
        if (self._weights is not None and peer.policy_version != self._weights[0] and not peer.weights_unacked
                and all(self._send(ident, frames) for frames in self._weights[1])):  # a full queue: all again later
            peer.policy_version = self._weights[0]
            peer.weights_unacked = True
            self.counts["weights_out"] += 1

    def _flush(self) -> None:
        """Forward what the learner has credit for; tell actors what cannot wait for their next heartbeat: credit once a
        batch of chunks is owed (and the FIFO has room), and steps."""
        urgent, self._urgent = self._urgent, set()
        for ident in urgent:  # one that found its queue full is told at its next heartbeat
            peer = self.peers.get(ident)  # (a send may find a peer gone and forget it)
            if peer is not None:
                self._tell(ident, peer, self._credit_batch)
        to = self._learner
        learner = self.peers.get(to) if to is not None else None
        while to is not None and learner is not None and learner.credit > 0 and self._buffer:
            if self._unacked_rows >= self.settings.max_buffered:
                self._warn("unacked", f"the learner acknowledged none of the last {self._unacked_rows} rows it got: "
                                      "nothing more until it does")
                break
            rows, frames, nbytes, session, _ = self._buffer[0]
            if not self._send(to, frames):
                break
            self._unacked.setdefault(session, deque()).append(self._buffer.popleft())
            self._unacked_rows += rows
            self._buffered -= rows
            learner.credit -= 1
            self._forwarded += rows
            self.counts["samples_out"] += rows
            self.counts["chunks_out"] += 1
            self.counts["bytes_out"] += nbytes
        while self._learner is not None and self._episodes and self._send(self._learner, self._episodes[0]):
            self._episodes.popleft()

    def _tell(self, ident: bytes, peer: Peer, batch: int) -> bool:
        """Send an actor what is due in one CREDIT: credit when `batch` chunks are owed and the FIFO has room, the
        learner's newest ack, steps. Whether something was sent."""
        room = self._buffered < self.settings.max_buffered
        h: dict[str, Any] = {"n": peer.owed if room and peer.owed >= batch else 0}
        if peer.acked > peer.ack_sent:
            h["ack"] = peer.acked
        if peer.steps_due:
            h["steps"] = peer.steps_due
        sent = (len(h) > 1 or h["n"] > 0) and self._send(ident, make(MsgType.CREDIT, h))
        if sent:
            peer.owed -= h["n"]
            peer.credit += h["n"]
            peer.ack_sent = h.get("ack", peer.ack_sent)
            peer.steps_due = 0
        return sent

    def _chores(self) -> None:
        """Forget silent peers and stale handshakes, retry weights that found a full queue, and send each peer that
        heard nothing for a heartbeat what is due to it (credit for fewer chunks than a batch, acks), or a HEARTBEAT:
        a slow actor's chunks are acknowledged within a heartbeat, at one message a heartbeat."""
        for ident, peer in list(self.peers.items()):
            if peer.live.silent():
                self._forget(ident, f"went silent for {peer.live.interval * peer.live.misses:.0f} s")
            elif peer.live.heartbeat_due() and not self._tell(ident, peer, 1):
                self._send(ident, make(MsgType.HEARTBEAT))
            if ident in self.peers and peer.role == "actor":
                self._give_weights(ident, peer)
        expired = [i for i, hs in self._pending.items() if self._clock() - hs.started > self._hb * MISSES]
        for ident in expired:
            del self._pending[ident]

    def _forget(self, ident: bytes, why: str | None) -> None:
        peer = self.peers.pop(ident, None)
        if peer is None:
            return
        if ident == self._learner:
            self._learner = None
            self._allow = self._forwarded = 0
            self._take_back()
        elif self._sessions.get(peer.session) == ident:
            del self._sessions[peer.session]
        self._urgent.discard(ident)
        if ident in self._paced:
            self._paced.discard(ident)
            self._granted -= peer.steps
            self._grant()
        if why:
            log.info("%s %s %s", peer.role, peer.session, why)

    def _take_back(self) -> None:
        """The chunks a learner that went did not acknowledge go back to the head of the FIFO, in the order they left:
        the next learner gets every stream in order (its ingest drops rows the last one had checkpointed)."""
        back = [chunk for unacked in self._unacked.values() for chunk in unacked]
        self._unacked.clear()
        self._buffer.extendleft(reversed(back))
        self._buffered += self._unacked_rows
        self._unacked_rows = 0

    def _warn(self, key: str, message: str, every: float = 5.0) -> None:
        """Log a warning, at most once per `every` seconds per kind (a flood must not flood the terminal)."""
        now = self._clock()
        self._problems[key] = (now, message[:PROBLEM_TEXT])
        if now - self._warned.get(key, -every) >= every:
            self._warned[key] = now
            log.warning("%s", message)


def _peer_address(frame: Any) -> str:
    try:
        return frame.get("Peer-Address")
    except (AttributeError, zmq.ZMQError):
        return "?"

"""Load generation against one broker: many simulated actors per process, an ingest-only learner stand-in.

Used by `bench/load.py` (`just bench load`) and `tests/test_load.py`. Every process sends only to
127.0.0.1. One level (`run_level`) runs:

- the broker in its own process (`Broker` + `serve_forever`, as `tmrlx broker` runs it), pinned to one core
  when asked (the other processes are then pinned to the other cores), reporting its counters at the end;
- an ingest-only learner stand-in: a real `LearnerClient` that polls chunks and timestamps them, no training;
- `generators` processes of simulated actors. A simulated actor is one DEALER socket speaking the real
  protocol (the `ClientHandshake`, SAMPLES frames from `protocol.make` with headers from a `StreamCounter`,
  chunks only on the broker's CREDIT, kept until acknowledged, heartbeats when idle) driven, with
  thousands of others, from one epoll loop per process: the real `ActorClient` is a thread and a ZeroMQ
  context each, too heavy for thousands. Each actor stands for a 20 Hz SIMLIDAR stream and sends what a
  real actor sends: a chunk of 10 rows every 0.5 s (`actor/rollout.py` CHUNK_SECONDS), the streams'
  phases spread over the period. The rows are not computed step by step (that would be the generator's
  CPU, not the broker's); the chunk's `reward` column carries its send time (seconds since the level's
  epoch, on the system-wide monotonic clock), from which the learner stand-in measures actor -> learner
  latency.

Counting: a chunk is *offered* when created with a send time inside the measured window, *delivered*
when it reached the learner stand-in (within a drain period after the window). Generators stop creating
chunks at the window's end and keep serving credit during the drain.
"""

from __future__ import annotations

import heapq
import itertools
import math
import multiprocessing as mp
import os
import select
import time
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.sharedctypes import RawArray
from typing import Any

import numpy as np
import zmq

from tmrlx.broker.main import raise_open_files
from tmrlx.common.chunks import ChunkSchema, StreamCounter
from tmrlx.common.config import Config, load_config
from tmrlx.common.kinds import spec_from_config
from tmrlx.common.wire import frames as wire
from tmrlx.common.wire.codec import ProtocolError
from tmrlx.common.wire.handshake import ClientHandshake
from tmrlx.common.wire.link import LinkSettings
from tmrlx.common.wire.protocol import MsgType, make, parse

PERIOD_S = 0.5  # a chunk every CHUNK_SECONDS ...
ROWS = 10  # ... of 10 rows: a 20 Hz stream
HANDSHAKES_IN_FLIGHT = 128  # per generator process: far below the broker's MAX_PENDING (1024)
HANDSHAKE_TIMEOUT_S = 5.0
IDLE_HEARTBEAT_S = 1.0
MAX_QUEUE = 256  # chunks an actor keeps waiting for credit (ActorClient's max_queue); the oldest is dropped
ACTORS_PER_GENERATOR = 4000  # two file descriptors per DEALER (TCP + mailbox): keeps each process far from the limit


def load_cfg(port: int, **overrides: Any) -> Config:
    """The config of a load level: SIMLIDAR, loopback only, no actor cap."""
    return load_config(overrides={"ENV": {"RTGYM_INTERFACE": "SIMLIDAR"}, "PORT": port, "PASSWORD": "load",
                                  "LOCALHOST_WORKER": True, "LOCALHOST_TRAINER": True, "NB_WORKERS": -1, **overrides})


# ---------------------------------------------------------------- simulated actors
class SimActor:
    """One simulated actor: a DEALER socket, its handshake, credit, queue and in-flight chunks."""

    __slots__ = ("swarm", "index", "session", "sock", "fd", "hs", "counter", "credit", "queue", "inflight", "ready",
                 "hs_started", "last_send", "failed")

    def __init__(self, swarm: Swarm, index: int, session: str):
        self.swarm, self.index, self.session = swarm, index, session
        self.sock = swarm.ctx.socket(zmq.DEALER)
        self.sock.linger = 0
        self.sock.maxmsgsize = swarm.settings.max_bytes
        self.sock.connect(swarm.settings.address)
        self.fd: int = self.sock.getsockopt(zmq.FD)
        self.counter = StreamCounter(session)
        self.credit = 0
        self.queue: deque[tuple[int, list, int]] = deque()  # seq, frames, rows
        self.inflight: deque[tuple[int, list, int]] = deque()
        self.ready = False
        self.failed: str | None = None
        self.last_send = time.monotonic()
        self.hello()
        self.service()  # after any operation on a socket its FD may not wake us again for what is waiting: look now

    def hello(self) -> None:
        self.hs = ClientHandshake(self.swarm.settings.auth_key, "actor", self.session, self.swarm.spec_hash)
        self.hs_started = time.monotonic()
        self.hs.hello_sent = self.send(self.hs.hello(-1))

    def send(self, frames: list) -> bool:
        try:
            wire.send(self.sock, frames)
        except zmq.Again:
            return False
        self.last_send = time.monotonic()
        return True

    def offer(self, frames: list, seq: int, rows: int) -> None:
        self.queue.append((seq, frames, rows))
        if len(self.queue) > MAX_QUEUE:
            self.queue.popleft()
            self.swarm.queue_dropped += 1
        self.pump()

    def pump(self) -> None:
        sent = False
        while self.credit > 0 and self.queue and self.ready:
            item = self.queue[0]
            if not self.send(item[1]):
                break
            self.queue.popleft()
            self.inflight.append(item)
            self.credit -= 1
            sent = True
        if sent:  # a send may consume the mailbox's signal (ZMQ_FD is edge-like): look for what arrived
            self.service()

    def service(self) -> None:
        """Handle what arrived (ZMQ_EVENTS says; the socket's FD only wakes the loop)."""
        for frames in itertools.islice(wire.waiting(self.sock), 64):
            try:
                mtype, msg = parse(frames, self.swarm.settings.max_bytes)
            except ProtocolError as e:
                self.swarm.bad += 1
                self.failed = e.reason
                continue
            h = msg.header
            if mtype is MsgType.CREDIT:
                self.credit += h["n"]
                ack = h.get("ack")
                while self.inflight and isinstance(ack, int) and self.inflight[0][0] <= ack:
                    body = self.inflight.popleft()[1][-1]
                    if len(self.swarm.spare) < 256 and isinstance(body, bytearray):
                        self.swarm.spare.append(body)
            elif mtype is MsgType.CHALLENGE:
                auth = self.hs.on_challenge(h)
                if auth is not None:
                    self.send(auth)
            elif mtype is MsgType.WELCOME:
                if self.hs.on_welcome(h):
                    self.credit, self.ready = h["credit"], True
                    self.swarm.on_ready(self)
                else:
                    self.failed = "the broker's proof is wrong"
            elif mtype is MsgType.ERROR:
                if h.get("retry"):  # the broker forgot us (e.g. our HELLO was evicted): handshake again
                    self.swarm.retries += 1
                    self.reset()
                elif h["fatal"]:
                    self.failed = h["reason"]
                    self.swarm.refused += 1
                else:
                    self.swarm.rejected += 1
        if self.ready and self.credit and self.queue:
            self.pump()

    def reset(self) -> None:
        """Handshake again; what was in flight goes out again (the learner drops duplicates)."""
        if self.ready:
            self.swarm.ready -= 1
        self.ready, self.credit = False, 0
        self.queue.extendleft(reversed(self.inflight))
        self.inflight.clear()
        self.hello()


@dataclass
class Swarm:
    """Many simulated actors in one process, driven by one epoll loop over their sockets' FDs."""

    cfg: Config
    prefix: str
    n: int
    epoch: float
    window: Any  # RawArray('d', 2): measured window [start, end) in seconds since epoch (inf: not yet set)
    record: bool = False
    window_drain: float = 2.0  # seconds after the window's end: credit still served, nothing new offered
    ctx: Any = None
    actors: list[SimActor] = field(default_factory=list)
    by_fd: dict[int, SimActor] = field(default_factory=dict)
    due: list[tuple[float, int]] = field(default_factory=list)
    spare: list[bytearray] = field(default_factory=list)
    ready: int = 0
    queue_dropped: int = 0
    retries: int = 0
    refused: int = 0
    rejected: int = 0
    bad: int = 0

    def __post_init__(self) -> None:
        spec = spec_from_config(self.cfg)
        self.settings = LinkSettings.from_config(self.cfg, "actor")  # what a real actor's link resolves
        self.spec_hash = spec.hash()
        self.chunk = ChunkSchema.of(spec).empty(ROWS)
        self.chunk["obs.lidar"][:] = 1.0
        self.rng = np.random.default_rng(abs(hash(self.prefix)) % 2**32)
        self.ctx = zmq.Context(io_threads=1)
        self.ctx.set(zmq.MAX_SOCKETS, self.n + 64)
        self.epoll = select.epoll()

    def on_ready(self, actor: SimActor) -> None:
        self.ready += 1
        heapq.heappush(self.due, (time.monotonic() + self.rng.uniform(0, PERIOD_S), actor.index))

    def run(self, stop_at: float, connect_timeout: float, on_connected: Any) -> dict[str, Any]:
        """Connect every actor (a bounded number of handshakes at once), stream until the window closes,
        serve credit until `stop_at` (or a window end + drain), then report."""
        offered: list[tuple[str, int]] = []
        offered_chunks = offered_rows = 0
        lateness: list[float] = []
        cpu0 = cpu1 = None
        connect_deadline = time.monotonic() + connect_timeout
        announced = False
        lo, hi = math.inf, math.inf
        drain = stop_at
        while True:
            now = time.monotonic()
            lo, hi = self.window[0], self.window[1]
            if hi != math.inf:
                drain = self.epoch + hi + self.window_drain
            if now >= min(stop_at, drain):
                break
            # connect more, a bounded number of handshakes at once
            pending = len(self.actors) - self.ready
            while len(self.actors) < self.n and pending < HANDSHAKES_IN_FLIGHT:
                a = SimActor(self, len(self.actors), f"{self.prefix}{len(self.actors)}")
                self.actors.append(a)
                self.by_fd[a.fd] = a
                self.epoll.register(a.fd, select.EPOLLIN)
                pending += 1
            if not announced and (self.ready == self.n or now > connect_deadline):
                announced = True
                on_connected(self.ready)
            rel = now - self.epoch
            if cpu0 is None and rel >= lo:
                cpu0 = time.process_time()
            if cpu1 is None and rel >= hi:
                cpu1 = time.process_time()
            # chunks due
            while self.due and self.due[0][0] <= now:
                when, i = heapq.heappop(self.due)
                a = self.actors[i]
                if not a.ready:
                    continue
                stamp = time.monotonic() - self.epoch
                if stamp < hi:
                    header = a.counter.stamp(ROWS, -1)
                    self.chunk["reward"][:] = stamp
                    a.offer(make(MsgType.SAMPLES, header, self.chunk, self.spare), header["seq"], ROWS)
                    if lo <= stamp:
                        offered_chunks += 1
                        offered_rows += ROWS
                        lateness.append(now - when)
                        if self.record:
                            offered.append((a.session, header["seq"]))
                if time.monotonic() - a.last_send >= IDLE_HEARTBEAT_S:  # no credit: the broker must still hear us
                    a.send(make(MsgType.HEARTBEAT))
                    a.service()
                heapq.heappush(self.due, (when + PERIOD_S, i))
            # handshakes that got no answer
            if pending and int(now * 4) != int((now - 0.001) * 4):
                for a in self.actors:
                    if not a.ready and a.failed is None and now - a.hs_started > HANDSHAKE_TIMEOUT_S:
                        self.retries += 1
                        a.hello()
                        a.service()
            timeout = 0.02 if not self.due else max(0.0, min(0.02, self.due[0][0] - time.monotonic()))
            for fd, _ in self.epoll.poll(timeout):
                self.by_fd[fd].service()
        end = time.process_time()
        failed = sum(a.failed is not None for a in self.actors)
        queued = sum(len(a.queue) for a in self.actors)
        for a in self.actors:
            self.epoll.unregister(a.fd)
            a.sock.close(linger=0)
        self.ctx.term()
        lat = np.asarray(lateness) if lateness else np.zeros(1)
        return {"actors": self.n, "connected": self.ready, "failed": failed, "offered_chunks": offered_chunks,
                "offered_rows": offered_rows, "queue_dropped": self.queue_dropped, "left_queued": queued,
                "handshake_retries": self.retries, "refused": self.refused, "rejected": self.rejected,
                "cpu_s": (cpu1 if cpu1 is not None else end) - (cpu0 if cpu0 is not None else end),
                "late_p99_ms": float(np.percentile(lat, 99) * 1e3), "offered": offered}


def _pin(cores: set[int] | None) -> None:
    if cores:
        os.sched_setaffinity(0, cores)


def generator_proc(cfg_dict: dict, prefix: str, n: int, epoch: float, window: Any, drain: float, stop_at: float,
                   connect_timeout: float, conn: Any, record: bool, cores: set[int] | None = None) -> None:
    """Child process: `n` simulated actors; sends ('connected', k) once all are (or the timeout passed), then the report."""
    raise_open_files()
    _pin(cores)
    swarm = Swarm(Config.from_dict(cfg_dict), prefix, n, epoch, window, record, drain)
    report = swarm.run(stop_at, connect_timeout, lambda k: conn.send(("connected", k)))
    conn.send(("report", report))


# ---------------------------------------------------------------- the learner stand-in
def ingest_proc(cfg_dict: dict, epoch: float, window: Any, drain: float, stop_at: float, conn: Any, record: bool,
                credit_window: int = 64, cores: set[int] | None = None) -> None:
    """Child process: a real LearnerClient that polls chunks and timestamps them (no training)."""
    from tmrlx.learner.link import LearnerClient

    _pin(cores)
    cfg = Config.from_dict(cfg_dict)
    learner = LearnerClient(cfg, spec_from_config(cfg), window=credit_window)
    try:
        if not learner.wait_connected(30):
            conn.send(("error", f"learner not connected: {learner.error}"))
            return
        conn.send(("connected", 1))
        latencies: list[float] = []
        ids: list[tuple[str, int]] = []
        chunks = rows = early = 0
        cpu0 = cpu1 = None
        while True:
            now = time.monotonic()
            lo, hi = window[0], window[1]
            rel = now - epoch
            if cpu0 is None and rel >= lo:
                cpu0 = time.process_time()
            if cpu1 is None and rel >= hi:
                cpu1 = time.process_time()
            if now >= min(stop_at, epoch + hi + drain):
                break
            got = learner.poll_samples(timeout=0.005)
            arrived = time.monotonic() - epoch
            for meta, arrays in got:
                stamp = float(arrays["reward"][0])
                if lo <= stamp < hi:
                    latencies.append(arrived - stamp)
                    chunks += 1
                    rows += len(arrays["reward"])
                    if record:
                        ids.append((meta["session"], meta["seq"]))
                else:
                    early += 1
        end = time.process_time()
        conn.send(("report", {"chunks": chunks, "rows": rows, "outside_window": early, "latencies": np.asarray(latencies),
                              "cpu_s": (cpu1 if cpu1 is not None else end) - (cpu0 if cpu0 is not None else end),
                              "ids": ids, "link": learner.stats()}))
    finally:
        learner.close()


# ---------------------------------------------------------------- the broker
def broker_proc(cfg_dict: dict, core: int | None, stop: Any, conn: Any) -> None:
    """Child process: the broker as `tmrlx broker` runs it (open-files limit raised, 127.0.0.1 since both LOCALHOST
    keys are true), pinned to `core`; reports its counters once stopped."""
    from tmrlx.broker.server import Broker

    raise_open_files()
    if core is not None:
        os.sched_setaffinity(0, {core})
    broker = Broker(Config.from_dict(cfg_dict))
    conn.send(("ready", broker.port))
    try:
        broker.serve_forever(stop_event=stop)
        conn.send(("stats", broker.stats()))
    finally:
        broker.close()


def _proc_cpu_s(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _proc_mib(pid: int, key: str) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return math.nan


# ---------------------------------------------------------------- one level
def _recv(conn: Any, kind: str, timeout: float, who: str, proc: Any) -> Any:
    deadline = time.monotonic() + timeout
    while not conn.poll(0.1):
        if not proc.is_alive():
            raise RuntimeError(f"{who} exited (code {proc.exitcode}) before sending {kind!r}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{who}: no {kind!r} within {timeout:.0f} s")
    got, value = conn.recv()
    if got != kind:
        raise RuntimeError(f"{who}: expected {kind!r}, got {got!r}: {value}")
    return value


def run_level(actors: int, seconds: float = 20.0, warmup: float = 3.0, drain: float = 2.0, *, generators: int | None = None,
              broker_core: int | None = None, connect_timeout: float | None = None, record: bool = False,
              learner_window: int = 64,
              **cfg_overrides: Any) -> dict[str, Any]:
    """Run `actors` simulated actors against a fresh broker and learner stand-in; the figures of the window.

    Bounded: every process stops by itself at the latest `connect_timeout + warmup + seconds + drain + 30` s.
    """
    from tmrlx.testing import free_port

    others = set(range(os.cpu_count() or 1)) - {broker_core} if broker_core is not None else None
    others = others or None  # one core: share it
    generators = generators or (1 if actors < 200 else max(2, math.ceil(actors / ACTORS_PER_GENERATOR)))
    connect_timeout = connect_timeout or 10.0 + actors / 200
    cfg = load_cfg(free_port(), **cfg_overrides)
    ctx = mp.get_context("spawn")
    epoch = time.monotonic()
    stop_at = epoch + 20 + connect_timeout + warmup + seconds + drain + 30  # hard bound for every child
    window = RawArray("d", [math.inf, math.inf])
    stop = ctx.Event()
    procs: list[Any] = []
    try:
        b_conn, b_child = ctx.Pipe(duplex=False)
        broker = ctx.Process(target=broker_proc, args=(cfg.to_dict(), broker_core, stop, b_child), daemon=True)
        broker.start()
        procs.append(broker)
        _recv(b_conn, "ready", 30, "broker", broker)
        pid: int = broker.pid  # type: ignore[assignment]  # started
        l_conn, l_child = ctx.Pipe(duplex=False)
        learner = ctx.Process(target=ingest_proc, args=(cfg.to_dict(), epoch, window, drain, stop_at, l_child, record,
                                                                      learner_window, others),
                              daemon=True)
        learner.start()
        procs.append(learner)
        _recv(l_conn, "connected", 40, "learner stand-in", learner)
        g_conns = []
        for g in range(generators):
            n = actors // generators + (g < actors % generators)
            conn, child = ctx.Pipe(duplex=False)
            p = ctx.Process(target=generator_proc, args=(cfg.to_dict(), f"g{g}a", n, epoch, window, drain, stop_at,
                                                         connect_timeout, child, record, others), daemon=True)
            p.start()
            procs.append(p)
            g_conns.append((conn, p))
        t_connect = time.monotonic()
        connected = sum(_recv(c, "connected", connect_timeout + 30, "generator", p) for c, p in g_conns)
        connect_s = time.monotonic() - t_connect
        start = time.monotonic() + warmup
        window[0], window[1] = start - epoch, start + seconds - epoch
        while time.monotonic() < start:
            time.sleep(0.05)
        cpu0, peak = _proc_cpu_s(pid), _proc_mib(pid, "VmRSS")
        while time.monotonic() < start + seconds:
            time.sleep(0.25)
            peak = max(peak, _proc_mib(pid, "VmRSS"))
        broker_cpu = (_proc_cpu_s(pid) - cpu0) / seconds
        reports = [_recv(c, "report", drain + 60, "generator", p) for c, p in g_conns]
        ingest = _recv(l_conn, "report", drain + 60, "learner stand-in", learner)
        hwm = _proc_mib(pid, "VmHWM")
        stop.set()
        bstats = _recv(b_conn, "stats", 10, "broker", broker)
    finally:
        stop.set()
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join(5)
    offered_chunks = sum(r["offered_chunks"] for r in reports)
    offered_rows = sum(r["offered_rows"] for r in reports)
    lat = ingest["latencies"] if len(ingest["latencies"]) else np.full(1, 1e6)  # nothing arrived: 1,000 s
    out = {
        "actors": actors, "connected": connected, "connect_s": round(connect_s, 2), "seconds": seconds,
        "offered_samples": offered_rows, "delivered_samples": ingest["rows"],
        "delivered_fraction": round(ingest["rows"] / offered_rows, 4) if offered_rows else 0.0,
        "samples_per_s": round(ingest["rows"] / seconds), "offered_per_s": round(offered_rows / seconds),
        "nominal_per_s": actors * ROWS / PERIOD_S,
        "latency_p50_ms": round(float(np.percentile(lat, 50)) * 1e3, 1),
        "latency_p99_ms": round(float(np.percentile(lat, 99)) * 1e3, 1),
        "latency_max_ms": round(float(lat.max()) * 1e3, 1),
        "drops": ROWS * sum(r["queue_dropped"] for r in reports),  # the broker never drops: actors do, counted
        "broker_rejected": int(bstats["rejected"]), "broker_refused": int(bstats["refused"]),
        "undelivered_samples": offered_rows - ingest["rows"],
        "broker_cpu_percent": round(100 * broker_cpu, 1),
        "broker_rss_mib": round(max(peak, hwm), 1),
        "generator_cpu_percent": round(100 * sum(r["cpu_s"] for r in reports) / seconds, 1),
        "learner_cpu_percent": round(100 * ingest["cpu_s"] / seconds, 1),
        "generator_late_p99_ms": round(max(r["late_p99_ms"] for r in reports), 1),
        "generators": generators, "handshake_retries": sum(r["handshake_retries"] for r in reports),
        "failed_actors": sum(r["failed"] for r in reports), "offered_chunks": offered_chunks,
    }
    if record:
        out["offered_ids"] = [i for r in reports for i in r["offered"]]
        out["delivered_ids"] = ingest["ids"]
    return out


def passes(level: dict[str, Any], min_fraction: float = 0.95, max_p99_ms: float = 1000.0, max_rss_mib: float = 1024.0) -> bool:
    """The load standard: every actor connected, >= 95 % delivered, p99 < 1 s, broker RSS < 1 GiB."""
    return (level["connected"] == level["actors"] and level["delivered_fraction"] >= min_fraction
            and level["latency_p99_ms"] < max_p99_ms and level["broker_rss_mib"] < max_rss_mib)

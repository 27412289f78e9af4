"""Several hosts on one Linux machine, for tests: network namespaces joined through a switch that can impair links.

Each host is a network namespace holding one interface, `eth0`, with a 10.x address that exists only inside it;
its cable is a veth pair whose other end sits in a switch namespace, where `python -m tmrlx.netns switch` forwards
frames between the ports (a learning switch) and delays, drops or cuts what crosses a port on demand. The switch
is a Python process rather than a kernel bridge with `tc netem` because many kernels are built without sch_netem
(the VM this was written on among them): this needs only namespaces and veth pairs. The hosts' interfaces send one
TCP segment per frame (`gso_max_segs 1`), so a loss rate drops segments as a lossy link does, not 64 KiB bursts.
`python -m tmrlx.netns capture` records every frame seen on one interface through a raw socket.

Everything is named after one random prefix (parallel or leftover runs never collide) and torn down by
`Network.close`. Linux and root only: `privileged()` says why a machine cannot.
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import itertools
import logging
import os
import random
import secrets
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

log = logging.getLogger("tmrlx")
ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_VNET_HDR = 15  # frames carry virtio_net_hdr: a forwarded frame keeps its checksum-offload state intact
RECORD = struct.Struct("<dI")  # a captured frame: time.monotonic(), length, then the frame
SNAP = 65536 + 14
VNET_HDR = 10  # bytes of struct virtio_net_hdr before each frame on a PACKET_VNET_HDR socket


def privileged() -> str | None:
    """Why this machine cannot build a `Network` (a test's skip reason), or None when it can."""
    if not sys.platform.startswith("linux"):
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "network namespaces and veth pairs need root"
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    probe = f"tmrlx-probe-{secrets.token_hex(3)}"
    steps = [["ip", "netns", "add", probe],
             ["ip", "link", "add", "eth0", "netns", probe, "type", "veth", "peer", "name", "p0", "netns", probe]]
    try:
        for argv in steps:
            r = subprocess.run(argv, capture_output=True, text=True)
            if r.returncode:
                return f"`{' '.join(argv)}` failed: {r.stderr.strip()}"
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@dataclass
class Network:
    """Hosts named `names`, host i at 10.<subnet>.(i+1)/24 on switch port `p<i>`; a context manager."""

    names: Sequence[str]
    prefix: str = field(default_factory=lambda: f"tmrlx-{secrets.token_hex(3)}")
    subnet: str = "10.77.0"
    switch: subprocess.Popen | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if len(set(self.names)) != len(self.names) or not self.names:
            raise ValueError(f"host names must be distinct and at least one: {list(self.names)}")

    def ns(self, host: str) -> str:
        return f"{self.prefix}-{host}"

    def addr(self, host: str) -> str:
        return f"{self.subnet}.{self.names.index(host) + 1}"

    def port(self, host: str) -> str:
        return f"p{self.names.index(host)}"

    def command(self, host: str, argv: Sequence[str]) -> list[str]:
        """`argv` run inside `host`."""
        return ["ip", "netns", "exec", self.ns(host), *argv]

    def __enter__(self) -> Network:
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _build(self) -> None:
        sw = self.ns("switch")
        for name in (*self.names, "switch"):
            _ip("netns", "add", self.ns(name))
            _ip("-n", self.ns(name), "link", "set", "lo", "up")
        for host in self.names:
            ns, port = self.ns(host), self.port(host)
            _ip("link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", port, "netns", sw)
            _ip("-n", ns, "link", "set", "eth0", "gso_max_segs", "1", "up")
            _ip("-n", ns, "addr", "add", f"{self.addr(host)}/24", "dev", "eth0")
            _ip("-n", sw, "link", "set", port, "up")
        ports = [self.port(h) for h in self.names]
        self.switch = subprocess.Popen(["ip", "netns", "exec", sw, sys.executable, "-m", "tmrlx.netns", "switch", *ports],
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.switch.stdout is not None
        if self.switch.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the switch in {sw} did not start (exit code {self.switch.wait()})")

    def impair(self, host: str, delay_s: float = 0.0, loss: float = 0.0, rate_bps: float = 0.0) -> None:
        """Every frame into or out of `host` waits `delay_s` and is lost with probability `loss` (1: cut off); with
        `rate_bps`, `host`'s cable carries that many bits per second each way (frames queue behind each other)."""
        if self.switch is None or self.switch.stdin is None:
            raise RuntimeError("the network is not built")
        self.switch.stdin.write(f"{self.port(host)} {delay_s} {loss} {rate_bps}\n")
        self.switch.stdin.flush()

    def capture(self, host: str, path: Path) -> Capture:
        """Record every frame on `host`'s eth0 (both ways) into `path` until `Capture.stop`."""
        proc = subprocess.Popen(self.command(host, [sys.executable, "-m", "tmrlx.netns", "capture", "eth0", str(path)]),
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the capture on {host} did not start (exit code {proc.wait()})")
        return Capture(proc, path)

    def close(self) -> None:
        """Stop what still runs inside the namespaces (this run's, by their ids) and delete them with their veths."""
        if self.switch is not None:
            _end(self.switch)
        for name in (*self.names, "switch"):
            ns = self.ns(name)
            if not Path("/run/netns", ns).exists():
                continue
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
            for pid in pids:
                log.warning("killing process %s left in namespace %s", pid, ns)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def _end(proc: subprocess.Popen, timeout: float = 5.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            stream.close()


@dataclass
class Frame:
    t: float  # time.monotonic() when captured (the same clock in every namespace)
    data: bytes

    def tcp(self) -> tuple[str, str, int] | None:
        """(source address, destination address, TCP payload bytes) of an IPv4 TCP frame, else None."""
        d = self.data
        if len(d) < 34 or d[12:14] != b"\x08\x00" or d[23] != 6:
            return None
        ihl = (d[14] & 0x0F) * 4
        total = int.from_bytes(d[16:18], "big")
        if len(d) < 14 + ihl + 13:
            return None
        doff = (d[14 + ihl + 12] >> 4) * 4
        return socket.inet_ntoa(d[26:30]), socket.inet_ntoa(d[30:34]), total - ihl - doff


@dataclass
class Capture:
    """Frames recorded by a capture process; `poll` reads what was written since the last call."""

    proc: subprocess.Popen
    path: Path
    frames: list[Frame] = field(default_factory=list)
    _offset: int = 0

    def poll(self) -> list[Frame]:
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            data = f.read()
        pos = 0
        while pos + RECORD.size <= len(data):
            t, n = RECORD.unpack_from(data, pos)
            if pos + RECORD.size + n > len(data):
                break
            self.frames.append(Frame(t, data[pos + RECORD.size:pos + RECORD.size + n]))
            pos += RECORD.size + n
        self._offset += pos
        return self.frames

    def stop(self) -> list[Frame]:
        _end(self.proc)
        return self.poll()

    def payload(self) -> bytes:
        """Every captured frame, concatenated (what an eavesdropper on this interface read)."""
        return b"".join(f.data for f in self.frames)


# ---- the processes that run inside the namespaces

def _raw(iface: str, vnet: bool) -> socket.socket:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    if vnet:
        s.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
    s.bind((iface, 0))
    s.setblocking(False)
    return s


def _frames(s: socket.socket) -> Iterator[tuple[bytes, int]]:
    """(frame, packet type) of every frame waiting on a raw socket."""
    while True:
        try:
            data, addr = s.recvfrom(SNAP + VNET_HDR)
        except BlockingIOError:
            return
        yield data, addr[2]


def run_switch(ports: Sequence[str], control: IO[str]) -> None:
    """Forward frames between `ports` (learning MAC addresses) until `control` closes; each of its lines,
    `PORT DELAY_S LOSS RATE_BPS`, sets that port's impairment, applied to frames both into and out of it: a frame
    crosses the sender's cable then the receiver's, each a queue of RATE_BPS bits per second (0: no limit)."""
    socks = [_raw(p, vnet=True) for p in ports]
    by_fd = {s.fileno(): i for i, s in enumerate(socks)}
    delay, loss, rate = [0.0] * len(ports), [0.0] * len(ports), [0.0] * len(ports)
    free_in, free_out = [0.0] * len(ports), [0.0] * len(ports)  # when each cable's queue, each way, is empty
    where: dict[bytes, int] = {}  # MAC -> port
    queue: list[tuple[float, int, int, bytes]] = []  # (due, order, port, frame)
    order = itertools.count()
    poller = select.poll()
    for s in socks:
        poller.register(s, select.POLLIN)
    poller.register(control, select.POLLIN)
    pending = b""
    print("ready", flush=True)
    while True:
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            _, _, j, data = heapq.heappop(queue)
            with contextlib.suppress(OSError):  # a full or vanished port loses the frame, as a switch would
                socks[j].send(data)
        wait = 1000 if not queue else max(0, int((queue[0][0] - now) * 1000))
        for fd, _ in poller.poll(wait):
            if fd == control.fileno():
                got = os.read(fd, 4096)
                if not got:
                    return
                *lines, pending = (pending + got).split(b"\n")
                for line in lines:
                    port, d, p, r = line.decode().split()
                    k = ports.index(port)
                    delay[k], loss[k], rate[k] = float(d), float(p), float(r)
                continue
            i = by_fd[fd]
            for data, kind in _frames(socks[i]):
                if kind == socket.PACKET_OUTGOING:
                    continue
                frame = data[VNET_HDR:]
                where[frame[6:12]] = i
                to = where.get(frame[:6]) if not frame[0] & 1 else None
                for j in [to] if to is not None else range(len(socks)):
                    if j == i or random.random() < 1 - (1 - loss[i]) * (1 - loss[j]):
                        continue
                    due = time.monotonic()
                    if rate[i]:
                        due = free_in[i] = max(due, free_in[i]) + 8 * len(frame) / rate[i]
                    if rate[j]:
                        due = free_out[j] = max(due, free_out[j]) + 8 * len(frame) / rate[j]
                    heapq.heappush(queue, (due + delay[i] + delay[j], next(order), j, data))


def run_capture(iface: str, out: Path) -> None:
    """Append every frame seen on `iface` (both ways) to `out` as RECORDs until SIGTERM."""
    s = _raw(iface, vnet=False)
    stop: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.append(signum))
    with open(out, "wb") as f:
        print("ready", flush=True)
        while not stop:
            ready, _, _ = select.select([s], [], [], 0.1)
            for data, _ in _frames(s) if ready else ():
                f.write(RECORD.pack(time.monotonic(), len(data)) + data)
            f.flush()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tmrlx.netns", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    sub.add_parser("switch", help="forward frames between ports, impairments read from stdin").add_argument("ports", nargs="+")
    cap = sub.add_parser("capture", help="record every frame on an interface until SIGTERM")
    cap.add_argument("iface")
    cap.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    if args.what == "switch":
        run_switch(args.ports, sys.stdin)
    else:
        run_capture(args.iface, args.out)


if __name__ == "__main__":
    main()

"""The OpenPlanet plugin's stream (TMRL's TMRL_GrabData, or tmrlx's TmrlxGrabData): 11 little-endian float32
per frame over TCP (127.0.0.1:9000).

`GameDataClient` is the TrackMania game-data backend (and what the simulator's TCP server is tested
with). Unlike TMRL it reconnects by itself and, when no data comes, says what to do instead of
asserting after 10 s.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time

import numpy as np

FIELDS = ("speed", "distance", "x", "y", "z", "steer", "gas", "brake", "finished", "gear", "rpm")
SPEED, DISTANCE, X, Y, Z, STEER, GAS, BRAKE, FINISHED, GEAR, RPM = range(len(FIELDS))
RECORD = np.dtype("<f4")
RECORD_BYTES = RECORD.itemsize * len(FIELDS)  # 44

log = logging.getLogger(__name__)

ADVICE = ("no data from the OpenPlanet plugin on {host}:{port}. Is TrackMania running, with OpenPlanet "
          "installed, tmrlx's TmrlxGrabData plugin (`tmrlx install` copies it; it needs OpenPlanet's Developer "
          "signature mode) or TMRL's TMRL_GrabData loaded (OpenPlanet menu > Developer > Load plugin) and a map "
          "started (the plugin only sends while driving)? tmrlx keeps trying to reconnect.")


def pack(record: np.ndarray) -> bytes:
    return np.asarray(record, RECORD).tobytes()


def unpack(payload: bytes) -> np.ndarray:
    if len(payload) != RECORD_BYTES:
        raise ValueError(f"a game-data record is {RECORD_BYTES} bytes, got {len(payload)}")
    return np.frombuffer(payload, RECORD).astype(np.float32)


class NoGameData(TimeoutError):
    """No record arrived in time; the message says what to check."""


class GameDataClient:
    """Keeps the latest record from the plugin in a background thread, reconnecting as needed."""

    def __init__(self, host: str = "127.0.0.1", port: int = 9000, retry: float = 0.5):
        self.address = (host, port)
        self.retry = retry
        self._latest: np.ndarray | None = None
        self._count = 0
        self._returned = 0
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._thread = threading.Thread(target=self._run, name="tmrlx-gamedata", daemon=True)
        self._thread.start()

    @property
    def received(self) -> int:
        """Records received so far (all connections)."""
        return self._count

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with socket.create_connection(self.address, timeout=self.retry) as sock:
                    self._sock = sock
                    sock.settimeout(None)
                    self._read(sock)
            except OSError:
                pass
            self._sock = None
            self._stop.wait(self.retry)

    def _read(self, sock: socket.socket) -> None:
        buf = b""
        while not self._stop.is_set():
            chunk = sock.recv(65536)
            if not chunk:
                return  # the server closed: reconnect
            buf += chunk
            n = len(buf) // RECORD_BYTES
            if n:
                rec = unpack(buf[(n - 1) * RECORD_BYTES: n * RECORD_BYTES])
                buf = buf[n * RECORD_BYTES:]
                with self._cond:
                    self._latest, self._count = rec, self._count + n
                    self._cond.notify_all()

    def retrieve(self, timeout: float = 10.0) -> np.ndarray:
        """The latest record, newer than the one returned last time (never a stale one); waits up to
        `timeout` seconds, logging advice every 5 s, then raises NoGameData with the same advice."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._count <= self._returned:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise NoGameData(ADVICE.format(host=self.address[0], port=self.address[1]))
                if not self._cond.wait(min(left, 5.0)) and left > 5.0:
                    log.warning(ADVICE.format(host=self.address[0], port=self.address[1]))
            self._returned = self._count
            assert self._latest is not None  # _count > 0 means a record arrived
            return self._latest.copy()

    def close(self) -> None:
        self._stop.set()
        sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=2.0)

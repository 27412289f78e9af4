"""The simulator's stand-in for TMRL's OpenPlanet plugin: a real TCP server writing 44-byte records.

Like the plugin it accepts clients on a port and writes the car's record to each about every
`period` seconds (a game frame), so the real `GameDataClient` and `tmrlx record-reward` run against
it. `stop()` and `start()` let tests check that clients reconnect; `drop()` closes the connections but
keeps listening; `live()` (when given) says whether the game is sending now (the plugin is silent while
the game is paused, loading or in menus).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable

from tmrlx.actor.envs.backends.gamedata import pack
from tmrlx.actor.envs.sim.world import SimWorld


class GameDataServer:
    def __init__(self, world: SimWorld, host: str = "127.0.0.1", port: int = 0, period: float = 0.01,
                 live: Callable[[], bool] | None = None):
        self.world = world
        self.host, self.port, self.period = host, port, period
        self.live = live
        self._conns: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> GameDataServer:
        """Listen (on the same port as before after a stop; port 0 picks a free one the first time)."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen()
        listener.settimeout(0.1)
        self.port = listener.getsockname()[1]
        self._listener, self._stop = listener, threading.Event()
        self._threads = [threading.Thread(target=self._accept, args=(listener, self._stop), daemon=True)]
        self._threads[0].start()
        return self

    def _accept(self, listener: socket.socket, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(conn, stop), daemon=True)
            t.start()
            self._threads.append(t)
        listener.close()

    def _serve(self, conn: socket.socket, stop: threading.Event) -> None:
        self._conns.add(conn)
        with conn:
            while not stop.is_set():
                try:
                    if self.live is None or self.live():
                        conn.sendall(pack(self.world.record()))
                except OSError:
                    break  # the client went away, or drop()
                stop.wait(self.period)
        self._conns.discard(conn)

    def drop(self) -> None:
        """Close every client connection (they reconnect); keep listening."""
        for conn in list(self._conns):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        """Stop listening and drop every client (the game closing or the map unloading)."""
        self._stop.set()
        for t in self._threads:
            t.join(timeout=2.0)
        self._threads = []

    close = stop

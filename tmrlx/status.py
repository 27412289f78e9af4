"""`tmrlx status [--json] [--watch]`: ask a running broker for its live state.

The status client handshakes like every client (PASSWORD, TLS when on) under its own role, so it never
takes an actor slot (NB_WORKERS) nor the learner's, and the broker sends it neither samples nor weights:
only a STATE answer to each STATUS it asks. It connects as the learner does (127.0.0.1 when
LOCALHOST_TRAINER is true, else PUBLIC_IP_SERVER).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from typing import Any, TextIO

import zmq

from tmrlx.common.config import Config
from tmrlx.common.kinds import spec_from_config
from tmrlx.common.wire.link import Link
from tmrlx.common.wire.liveness import Liveness
from tmrlx.common.wire.protocol import MsgType, make

log = logging.getLogger("tmrlx.status")
CONNECT_TIMEOUT_S = 10.0


class StatusClient(Link):
    """A link that asks the broker for its state (`ask`) and does nothing else."""

    role = "status"

    def __init__(self, cfg: Config, **kwargs: Any):
        self._asking = False  # a STATUS is wanted and not yet answered
        self._sent = False  # ... and it left on the current connection
        self._state: dict | None = None
        self._answered = threading.Event()
        super().__init__(cfg, spec_from_config(cfg), **kwargs)

    def ask(self, timeout: float) -> dict | None:
        """The broker's state now, or None when it did not answer within `timeout` (or refused us: see `.error`)."""
        with self._lock:
            self._asking, self._sent = True, False
            self._answered.clear()
        self._wake()
        deadline = time.monotonic() + timeout
        while not self._answered.wait(0.05):
            if self.error or time.monotonic() > deadline:
                return None
        with self._lock:
            return self._state

    def _pump(self, sock: zmq.Socket, live: Liveness) -> None:
        with self._lock:
            due = self._asking and not self._sent
        if due and self._send(sock, live, make(MsgType.STATUS)):
            with self._lock:
                self._sent = True

    def _on_message(self, mtype: MsgType, header: dict, arrays: dict) -> None:
        if mtype is MsgType.STATE:
            with self._lock:
                self._state, self._asking = header, False
                self._answered.set()

    def _on_disconnect(self) -> None:
        with self._lock:
            self._sent = False  # ask again on the next connection


def with_rates(state: dict, before: dict | None, dt: float) -> dict:
    """`state` with each peer's `samples_per_s`: over the last `dt` seconds when `before` (the previous state) lists the
    same session, else averaged since it connected."""
    seen = {p["session"]: p["samples"] for p in (before or {}).get("peers", ())}
    peers = []
    for p in state["peers"]:
        if p["session"] in seen and dt > 0 and p["samples"] >= seen[p["session"]]:
            rate = (p["samples"] - seen[p["session"]]) / dt
        else:
            rate = p["samples"] / p["connected_s"] if p["connected_s"] > 0 else 0.0
        peers.append({**p, "samples_per_s": rate})
    return {**state, "peers": peers}


def _ago(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.1f}s"


def render(state: dict, address: str) -> str:
    """The state as a few lines of text for a terminal."""
    c = state["counts"]
    version = "-" if state["weights_version"] < 0 else f"v{state['weights_version']}"
    lines = [f"broker {address} | weights {version} | buffered {c.get('buffered', 0)} rows | "
             f"samples in {c.get('samples_in', 0)} out {c.get('samples_out', 0)}",
             f"dropped {c.get('dropped', 0)} rows{' (over BUFFERS_MAXLEN: the learner fell behind)' if c.get('dropped') else ''}"
             f" | duplicates {c.get('duplicates', 0)} | rejected {c.get('rejected', 0)} | refused {c.get('refused', 0)}"]
    learners = [p for p in state["peers"] if p["role"] == "learner"]
    actors = [p for p in state["peers"] if p["role"] == "actor"]
    if learners:
        p = learners[0]
        lines.append(f"learner {p['session']} from {p['address']}, connected {_ago(p['connected_s'])}, "
                     f"last seen {_ago(p['seen_s'])} ago")
    else:
        lines.append("learner: none connected")
    shown = f" ({len(actors)} listed)" if len(actors) < c.get("actors", 0) else ""
    lines.append(f"actors {c.get('actors', len(actors))}{shown}")
    if actors:
        lines.append(f"  {'session':<18} {'address':<22} {'samples/s':>10} {'samples':>10} {'seen':>7} {'policy':>7}")
    for p in actors:
        policy = "-" if p["policy_version"] < 0 else f"v{p['policy_version']}"
        lines.append(f"  {p['session']:<18} {p['address']:<22} {p.get('samples_per_s', 0.0):>10.1f} {p['samples']:>10} "
                     f"{_ago(p['seen_s']):>7} {policy:>7}")
    for problem in sorted(state["problems"], key=lambda q: q["ago_s"]):
        lines.append(f"latest {problem['kind']} ({_ago(problem['ago_s'])} ago): {problem['reason']}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object (with --watch: one per line)")
    parser.add_argument("--watch", action="store_true", help="refresh every second until Ctrl+C")
    parser.add_argument("--timeout", type=float, default=CONNECT_TIMEOUT_S,
                        help=f"seconds to wait for the broker's answer (default {CONNECT_TIMEOUT_S:g})")


def run(cfg: Config, args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    client = StatusClient(cfg)
    as_json, watch = getattr(args, "json", False), getattr(args, "watch", False)
    timeout = getattr(args, "timeout", CONNECT_TIMEOUT_S)
    before: dict | None = None
    t_before = 0.0
    try:
        while True:
            state = client.ask(timeout if before is None else min(timeout, 2.0))
            now = time.monotonic()
            clear = "\033[H\033[2J" if watch and not as_json and out.isatty() else ""
            if state is None:
                if client.error or not watch:
                    log.error("%s", client.error or f"no answer from the broker at {client.address} within {timeout:g} s: "
                                                    "is it running? (same PORT, PASSWORD and TLS on every machine)")
                    return 1
                log.warning("no answer from the broker at %s: reconnecting", client.address)
            else:
                state = with_rates(state, before, now - t_before)
                before, t_before = state, now
                text = json.dumps({"broker": client.address, **state}) if as_json else render(state, client.address)
                out.write(clear + text + "\n")
                out.flush()
            if not watch:
                return 0
            time.sleep(max(0.0, 1.0 - (time.monotonic() - now)))
    except KeyboardInterrupt:
        return 0
    finally:
        client.close()

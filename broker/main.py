"""`tmrlx broker` (alias `server`): serve on 0.0.0.0:PORT with a live one-line status until Ctrl+C or SIGTERM."""

from __future__ import annotations

import argparse
import contextlib
import logging
import resource
import signal
import sys
import time

from tmrlx.broker.server import LOOPBACK, Broker
from tmrlx.common.config import Config

log = logging.getLogger("tmrlx.broker")
STATUS_EVERY_S = 10.0  # without a terminal, the status line goes to the log this often


def raise_open_files() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit: every actor is one TCP connection, i.e. one file descriptor,
    and a soft limit of 1024 (a common default) would cap the broker at about a thousand actors. The new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def run(cfg: Config, args: argparse.Namespace) -> int:
    tty = sys.stderr.isatty()
    files = raise_open_files()
    broker = Broker(cfg)
    for sig in (signal.SIGINT, signal.SIGTERM):  # SIGINT too: a process started in the background inherits it ignored
        signal.signal(sig, lambda *_: broker.stop())
    log.info("listening on %s:%d (TLS %s, up to ~%d actors: open-files limit %d)", broker.host, broker.port,
             "on" if cfg.TLS else "off", max(0, files - 64), files)
    if broker.host in LOOPBACK:
        log.info("only this machine can connect (LOCALHOST_WORKER and LOCALHOST_TRAINER are true): to accept actors or a "
                 "learner from other machines set either to false, with the same long PASSWORD everywhere and TLS true")
    last = [0.0]

    def show(line: str) -> None:
        if tty:  # one line rewritten in place; log records clear it first (see tmrlx.log)
            sys.stderr.write("\r\033[K" + line)
            sys.stderr.flush()
        elif time.monotonic() - last[0] >= STATUS_EVERY_S:
            last[0] = time.monotonic()
            log.info("%s", line)

    try:
        broker.serve_forever(on_status=show)
    except KeyboardInterrupt:
        pass
    finally:
        broker.close()
        if tty:
            sys.stderr.write("\n")
    return 0

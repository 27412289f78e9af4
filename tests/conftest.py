"""Suite-wide hygiene: no test leaves a child process behind.

A test that times out (`communicate(timeout=...)` raising) or fails between starting a `tmrlx` subprocess and stopping
it would otherwise leave that process running through the rest of the suite, taking CPU from the tests after it and
holding its ports. After each test, children of this process started during the test that still run get SIGTERM, then
SIGKILL, and the test gets a warning naming them. Linux only (it reads /proc); elsewhere a no-op.
"""

from __future__ import annotations

import os
import signal
import time
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

PROC = Path("/proc")
# started once by the standard library and kept for the interpreter's life, not by a test
HELPERS = ("multiprocessing.resource_tracker", "multiprocessing.forkserver")


def _running_children() -> dict[int, str]:
    """{pid: command line} of this process's children that have not exited (zombies excluded)."""
    out = {}
    for stat in PROC.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, ...
            if int(fields[1]) == os.getpid() and fields[0] != "Z":
                cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
                out[int(stat.parent.name)] = cmdline
        except (OSError, IndexError, ValueError):  # gone meanwhile
            continue
    return out


@pytest.fixture(autouse=True)
def _no_child_process_outlives_its_test() -> Iterator[None]:
    if not PROC.is_dir():
        yield
        return
    before = set(_running_children())
    yield
    left = {pid: cmd for pid, cmd in _running_children().items()
            if pid not in before and not any(helper in cmd for helper in HELPERS)}
    if not left:
        return
    stop(left)
    warnings.warn(f"the test left child processes running, now stopped: {sorted(left.values())}", stacklevel=1)


def stop(pids: Iterable[int]) -> None:
    """SIGTERM to each of `pids`, SIGKILL to those still running 5 s later (their parents reap them)."""
    wanted = set(pids)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in wanted & set(_running_children()):
            os.kill(pid, sig)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and wanted & set(_running_children()):
            time.sleep(0.05)

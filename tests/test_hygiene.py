"""The suite's own hygiene (tests/conftest.py): a child process a test leaves running is stopped after it."""

from __future__ import annotations

import signal
import subprocess
import sys
from multiprocessing import resource_tracker
from pathlib import Path

import pytest
from conftest import HELPERS, _running_children, stop  # tests/conftest.py, which pytest has imported by that name


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
def test_a_child_left_running_is_found_and_stopped_and_one_that_ignores_sigterm_is_killed():
    polite = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    stubborn = subprocess.Popen([sys.executable, "-c", "import signal, sys, time\n"
                                 "signal.signal(signal.SIGTERM, signal.SIG_IGN); print(flush=True); time.sleep(60)"],
                                stdout=subprocess.PIPE)
    try:
        stubborn.stdout.readline()  # its SIGTERM handler is in place
        assert {polite.pid, stubborn.pid} <= set(_running_children())
        stop([polite.pid, stubborn.pid])
        assert polite.wait(timeout=1) == -signal.SIGTERM
        assert stubborn.wait(timeout=1) == -signal.SIGKILL
        assert not {polite.pid, stubborn.pid} & set(_running_children())
    finally:
        for proc in (polite, stubborn):
            proc.kill()
            proc.wait()


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
def test_the_standard_librarys_resource_tracker_is_not_a_leak():
    """multiprocessing starts its resource tracker once and keeps it: the test that first used it did not leave it."""
    resource_tracker.ensure_running()
    tracker = [cmd for cmd in _running_children().values() if "resource_tracker" in cmd]
    assert tracker and all(any(helper in cmd for helper in HELPERS) for cmd in tracker)

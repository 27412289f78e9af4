"""check-environment's live window on a display (a virtual one: Xvfb), while the PNG strip stays for headless runs."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tmrlx.testing import wait_for

ROOT = Path(__file__).resolve().parents[1]


def _valid(display: str) -> bool:
    """Whether matplotlib would open a Tk window on `display` (what it asks before it does)."""
    check = "from matplotlib import _c_internal_utils as u; raise SystemExit(0 if u.display_is_valid() else 1)"
    return subprocess.run([sys.executable, "-c", check], env={**os.environ, "DISPLAY": display}).returncode == 0


@pytest.fixture
def display():
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb not found (apt-get install xvfb; .ci/run installs it): the live view needs a display")
    rng = random.Random()
    for _ in range(5):  # a random display number: another X server may hold a low one (even in another container)
        name = f":{rng.randrange(100, 30000)}"
        xvfb = subprocess.Popen(["Xvfb", name, "-screen", "0", "1280x720x24", "-nolisten", "tcp"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if wait_for(lambda x=xvfb, n=name: x.poll() is not None or _valid(n), 10.0, 0.2) and xvfb.poll() is None:
            break
        xvfb.kill()
        xvfb.wait()
    else:
        pytest.fail("Xvfb did not start on any of 5 display numbers")
    try:
        yield name
    finally:
        xvfb.terminate()
        xvfb.wait(timeout=10)


def test_check_environment_shows_the_view_live_on_a_display(display, tmp_path):
    env = {**os.environ, "DISPLAY": display, "TMRLX_DATA": str(tmp_path)}
    r = subprocess.run([sys.executable, "-m", "tmrlx", "check-environment", "--env.rtgym-interface", "SIMLIDAR",
                        "--steps", "30", "--output", str(tmp_path / "strip.png")], capture_output=True, text=True,
                       cwd=ROOT, env=env, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "live view: 30 frames" in r.stdout and (tmp_path / "strip.png").exists()
    headless = {**env, "DISPLAY": ""}
    r = subprocess.run([sys.executable, "-m", "tmrlx", "check-environment", "--env.rtgym-interface", "SIMLIDAR",
                        "--steps", "10", "--output", str(tmp_path / "s2.png")], capture_output=True, text=True,
                       cwd=ROOT, env=headless, timeout=120)
    assert r.returncode == 0 and "live view" not in r.stdout and (tmp_path / "s2.png").exists()

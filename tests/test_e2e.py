"""The main job end to end: `tmrlx demo` runs broker, learner and actors as processes on loopback.

Samples must cross, weights must come back to the actors (their version goes up), a checkpoint
must be written, a learning curve drawn, and a second run must resume from the checkpoint.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from tmrlx.common.config import load_config

from tmrlx.testing import free_port, wait_for

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "tmrlx" / "resources" / "config_demo.json"


def _env(data: Path) -> dict:
    return {**os.environ, "TMRLX_DATA": str(data), "JAX_PLATFORMS": "cpu"}


def _argv(cfg_file: Path, minutes: float) -> list[str]:
    return [sys.executable, "-m", "tmrlx", "demo", "--config-file", str(cfg_file), "--minutes", str(minutes),
            "--until-solved", "0", "--actors", "2"]


def _rounds(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    rounds = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return rounds or [{"updates": 0}]


@pytest.mark.slow
def test_demo_trains_publishes_checkpoints_and_resumes(tmp_path):
    cfg = load_config(DEMO).replace({
        "RUN_NAME": "e2e", "PORT": free_port(), "MEMORY_SIZE": 20000, "ENVIRONMENT_STEPS_BEFORE_TRAINING": 300,
        "ROUNDS_PER_EPOCH": 2, "TRAINING_STEPS_PER_ROUND": 40, "UPDATE_MODEL_INTERVAL": 20, "UPDATE_BUFFER_INTERVAL": 20,
        "BATCH_SIZE": 64, "MAX_TRAINING_STEPS_PER_ENVIRONMENT_STEP": 1.0})
    cfg_file = tmp_path / "e2e.json"
    cfg_file.write_text(cfg.to_json())
    data = tmp_path / "data"

    first = subprocess.run(_argv(cfg_file, minutes=0.75), capture_output=True, text=True, cwd=ROOT, env=_env(data),
                           timeout=600)
    assert first.returncode == 0, first.stdout + first.stderr
    run_dir = data / "logs" / "e2e"
    rounds = _rounds(run_dir)
    assert rounds[-1]["samples"] >= 300 and rounds[-1]["updates"] > 0  # samples crossed, training ran
    versions = [int(v) for log in run_dir.glob("actor*.log") for v in re.findall(r"policy v(\d+)", log.read_text())]
    assert versions and max(versions) > 0, "actors never received trained weights"
    assert any((data / "checkpoints" / "e2e").iterdir()), "no checkpoint written"
    assert (run_dir / "learning_curve.png").stat().st_size > 1000
    updates_before = rounds[-1]["updates"]

    # Second run, stopped like a user does (Ctrl+C = SIGINT to the demo) once training went on.
    proc = subprocess.Popen(_argv(cfg_file, minutes=5), cwd=ROOT, env=_env(data), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    wait_for(lambda: proc.poll() is not None or _rounds(run_dir)[-1]["updates"] > updates_before, 300, 1.0)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    learner_log = (run_dir / "learner.log").read_text()
    assert "resuming from checkpoint" in learner_log
    assert "stopped, checkpoint saved" in learner_log.split("resuming from checkpoint")[-1], learner_log[-500:]
    assert _rounds(run_dir)[-1]["updates"] > updates_before  # training went on from where it stopped


@pytest.mark.slow
def test_demo_reports_a_dead_child_and_stops_the_others(tmp_path):
    cfg = load_config(DEMO).replace({"RUN_NAME": "e2e_dead", "PORT": free_port(), "MEMORY_SIZE": 1000,
                                     "ENV": {"RTGYM_INTERFACE": "TM20LIDAR"}})  # no game here: actors die
    cfg_file = tmp_path / "dead.json"
    cfg_file.write_text(cfg.to_json())
    r = subprocess.run(_argv(cfg_file, minutes=2), capture_output=True, text=True, cwd=ROOT, env=_env(tmp_path / "d"),
                       timeout=300)
    assert r.returncode == 1
    assert re.search(r"actor\d exited with code", r.stderr) and "TrackMania" in r.stderr, r.stderr[-2000:]  # either dies first
    assert "learner exited" not in r.stderr and "broker exited" not in r.stderr  # those were stopped, not dead


@pytest.mark.slow
def test_demo_stopped_by_sigterm_stops_its_children_in_order(tmp_path):
    port = free_port()
    cfg = load_config(DEMO).replace({
        "RUN_NAME": "e2e_term", "PORT": port, "MEMORY_SIZE": 5000, "ENVIRONMENT_STEPS_BEFORE_TRAINING": 200,
        "TRAINING_STEPS_PER_ROUND": 20, "UPDATE_BUFFER_INTERVAL": 10, "BATCH_SIZE": 32})
    cfg_file = tmp_path / "term.json"
    cfg_file.write_text(cfg.to_json())
    data = tmp_path / "data"
    run_dir = data / "logs" / "e2e_term"
    proc = subprocess.Popen(_argv(cfg_file, minutes=5), cwd=ROOT, env=_env(data), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    wait_for(lambda: proc.poll() is not None or _rounds(run_dir)[-1]["updates"] > 0, 300, 1.0)
    proc.terminate()  # SIGTERM, as a service manager or `timeout` sends it
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 143, out
    assert "stopped, checkpoint saved" in (run_dir / "learner.log").read_text()  # stopped in order, not orphaned
    with socket.socket() as s:  # the broker is gone too: its port is free again
        s.bind(("0.0.0.0", port))

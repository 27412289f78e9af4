"""The main job end to end: `tmrlx demo` runs broker, learner and actors as processes on loopback.

Samples must cross, weights must come back to the actors (their version goes up), a checkpoint
must be written, a learning curve drawn, and a second run must resume from the checkpoint.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from common.config import load_config

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "common" / "resources" / "config_demo.json"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _demo(data: Path, cfg_file: Path, minutes: float) -> subprocess.CompletedProcess:
    env = {**os.environ, "TMRLX_DATA": str(data), "JAX_PLATFORMS": "cpu"}
    return subprocess.run([sys.executable, "-m", "common.cli", "demo", "--config-file", str(cfg_file), "--minutes",
                           str(minutes), "--until-solved", "0", "--actors", "2"],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)


@pytest.mark.slow
def test_demo_trains_publishes_checkpoints_and_resumes(tmp_path):
    cfg = load_config(DEMO).replace({
        "RUN_NAME": "e2e", "PORT": _free_port(), "MEMORY_SIZE": 20000, "ENVIRONMENT_STEPS_BEFORE_TRAINING": 300,
        "ROUNDS_PER_EPOCH": 2, "TRAINING_STEPS_PER_ROUND": 40, "UPDATE_MODEL_INTERVAL": 20, "UPDATE_BUFFER_INTERVAL": 20,
        "BATCH_SIZE": 64, "MAX_TRAINING_STEPS_PER_ENVIRONMENT_STEP": 1.0})
    cfg_file = tmp_path / "e2e.json"
    cfg_file.write_text(cfg.to_json())
    data = tmp_path / "data"

    first = _demo(data, cfg_file, minutes=0.75)
    assert first.returncode == 0, first.stdout + first.stderr
    run_dir = data / "logs" / "e2e"
    rounds = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert rounds and rounds[-1]["samples"] >= 300 and rounds[-1]["updates"] > 0  # samples crossed, training ran
    versions = [int(v) for log in run_dir.glob("actor*.log") for v in re.findall(r"policy v(\d+)", log.read_text())]
    assert versions and max(versions) > 0, "actors never received trained weights"
    assert any((data / "checkpoints" / "e2e").iterdir()), "no checkpoint written"
    assert (run_dir / "learning_curve.png").stat().st_size > 1000
    updates_before = rounds[-1]["updates"]

    second = _demo(data, cfg_file, minutes=0.5)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "resuming from checkpoint" in (run_dir / "learner.log").read_text()
    rounds = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert rounds[-1]["updates"] > updates_before  # training went on from where it stopped

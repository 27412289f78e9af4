"""Checkpoints: SIGTERM saves, SIGKILL resumes from the last one, RESET_TRAINING keeps the memory, corruption falls back."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from tmrlx.common.config import load_config
from tmrlx.common.kinds import spec_from_config
from tmrlx.common.weights import Arch
from tmrlx.learner.checkpoint import Checkpoints
from tmrlx.learner.source import GymSource
from tmrlx.learner.train import Trainer

TINY = {"ENV": {"RTGYM_INTERFACE": "GYM:Pendulum-v1", "RTGYM_CONFIG": {"act_buf_len": 0}}, "CUDA_TRAINING": False,
        "MEMORY_SIZE": 3000, "BATCH_SIZE": 32, "ENVIRONMENT_STEPS_BEFORE_TRAINING": 100, "TRAINING_STEPS_PER_ROUND": 20,
        "ROUNDS_PER_EPOCH": 2, "MAX_EPOCHS": 2, "UPDATE_BUFFER_INTERVAL": 20, "UPDATE_MODEL_INTERVAL": 20}
ROOT = Path(__file__).resolve().parents[1]


def _trainer(cfg, directory: Path) -> Trainer:
    spec = spec_from_config(cfg)
    return Trainer(cfg, spec, GymSource("Pendulum-v1", spec, steps_per_poll=20), arch=Arch.for_spec(spec, hidden=(16, 16)),
                   checkpoints=Checkpoints(directory))


def test_corrupt_checkpoint_falls_back_and_reset_training_keeps_memory(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("TMRLX_DATA", str(tmp_path))
    cfg = load_config(overrides={**TINY, "RUN_NAME": "ck"})
    first = _trainer(cfg, tmp_path / "ck")
    first.run()  # two epochs: checkpoints 1 and 2
    assert first.checkpoints.steps() == [2, 1]
    one = first.checkpoints.read_meta(1)["counters"]
    for f in (tmp_path / "ck" / "2" / "arrays").rglob("*"):
        if f.is_file():
            f.write_bytes(b"\0garbage")
    first.checkpoints.close()

    again = _trainer(cfg, tmp_path / "ck")
    assert again.resume() == one
    assert any("unreadable" in r.getMessage() for r in caplog.records if r.name == "tmrlx.learner")
    assert again.counters.updates == one["updates"] > 0 and int(again.replay.count) == one["samples"]

    reset = _trainer(cfg.replace({"RESET_TRAINING": True}), tmp_path / "ck")
    reset.resume()
    assert reset.counters.updates == 0 and reset.counters.epoch == 0
    assert reset.counters.samples == one["samples"] == int(reset.replay.count)
    np.testing.assert_array_equal(reset.replay.data["obs.obs"], again.replay.data["obs.obs"])
    fresh = jax.tree.leaves(reset.state.actor)[0]
    assert not np.allclose(fresh, jax.tree.leaves(again.state.actor)[0])  # the model restarted, the memory did not


def _learner(tmp_path: Path, overrides: dict) -> subprocess.Popen:
    env = {**os.environ, "TMRLX_DATA": str(tmp_path), "JAX_PLATFORMS": "cpu"}
    cmd = [sys.executable, "-m", "tmrlx", "learner", "--local-source", "--quiet", "--config", json.dumps(overrides)]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)


def _wait_for(pred, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = pred()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_sigkill_resumes_from_last_checkpoint_and_sigterm_saves(tmp_path):
    overrides = {**TINY, "RUN_NAME": "kill", "MAX_EPOCHS": 10_000, "ROUNDS_PER_EPOCH": 5}
    directory = tmp_path / "checkpoints" / "kill"
    proc = _learner(tmp_path, overrides)
    try:
        _wait_for(lambda: directory.exists() and Checkpoints(directory).steps(), 120, "the first checkpoint")
        time.sleep(0.5)  # mid-epoch
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        proc.kill()
    checkpoints = Checkpoints(directory)
    meta = checkpoints.read_meta(checkpoints.steps()[0])
    checkpoints.close()

    proc = _learner(tmp_path, overrides)
    try:
        line = _wait_for(lambda: proc.stderr.readline(), 120, "the resume message")
        assert "resuming from checkpoint" in line, line
        resumed = json.loads(line.split("checkpoint ", 1)[1])
        assert resumed["counters"] == meta["counters"]
        assert resumed["memory"] == meta["counters"]["samples"] > 0
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "checkpoint saved" in err
    checkpoints = Checkpoints(directory)
    last = checkpoints.read_meta(checkpoints.steps()[0])["counters"]
    checkpoints.close()
    assert last["saves"] == meta["counters"]["saves"] + 1 and last["updates"] >= meta["counters"]["updates"]

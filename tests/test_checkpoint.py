"""Checkpoints: SIGTERM saves, SIGKILL resumes from the last one, RESET_TRAINING keeps the memory, corruption falls back."""

import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pytest
from tmrlx.common.config import load_config
from tmrlx.common.errors import ConfigError
from tmrlx.common.kinds import spec_from_config
from tmrlx.common.weights import Arch
from tmrlx.learner.checkpoint import UNFINISHED, Checkpoints
from tmrlx.learner.source import GymSource
from tmrlx.learner.train import Trainer

from tmrlx.testing import wait_for

TINY = {"ENV": {"RTGYM_INTERFACE": "GYM:Pendulum-v1", "RTGYM_CONFIG": {"act_buf_len": 0}}, "CUDA_TRAINING": False,
        "MEMORY_SIZE": 3000, "BATCH_SIZE": 32, "ENVIRONMENT_STEPS_BEFORE_TRAINING": 100, "TRAINING_STEPS_PER_ROUND": 20,
        "ROUNDS_PER_EPOCH": 2, "MAX_EPOCHS": 2, "UPDATE_BUFFER_INTERVAL": 20, "UPDATE_MODEL_INTERVAL": 20}
ROOT = Path(__file__).resolve().parents[1]


class Recording(GymSource):
    """A gymnasium source that remembers every weights version published to it."""

    def __init__(self, spec):
        super().__init__("Pendulum-v1", spec, steps_per_poll=20)
        self.versions: list[int] = []

    def publish_weights(self, version, arrays, meta):
        self.versions.append(version)
        super().publish_weights(version, arrays, meta)


def _trainer(cfg, directory: Path) -> Trainer:
    spec = spec_from_config(cfg)
    return Trainer(cfg, spec, Recording(spec), arch=Arch.for_spec(spec, hidden=(16, 16)), checkpoints=Checkpoints(directory))


def _corrupt(folder: Path) -> None:
    for f in folder.rglob("*"):
        if f.is_file():
            f.write_bytes(b"\0garbage")


@dataclass
class Run:
    """A finished run of two epochs (checkpoints 1 and 2) that each test copies: one training for the whole module."""

    cfg: Any
    directory: Path
    metas: dict[int, dict]
    obs: np.ndarray  # the replay memory's observations, as checkpoint 2 holds them
    versions: list[int]

    def copy(self, tmp_path: Path, monkeypatch) -> Path:
        monkeypatch.setenv("TMRLX_DATA", str(tmp_path))
        return Path(shutil.copytree(self.directory, tmp_path / "ck"))


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Run:
    data = tmp_path_factory.mktemp("run")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TMRLX_DATA", str(data))
        cfg = load_config(overrides={**TINY, "RUN_NAME": "ck"})
        first = _trainer(cfg, data / "ck")
        first.run()
        assert first.checkpoints.steps() == [2, 1]
        metas = {step: first.checkpoints.read_meta(step) for step in (1, 2)}
        first.checkpoints.close()
    return Run(cfg, data / "ck", metas, np.array(first.replay.data["obs.obs"]), first.source.versions)


def test_corrupt_checkpoint_falls_back_and_reset_training_keeps_memory(run, tmp_path, monkeypatch, caplog):
    directory = run.copy(tmp_path, monkeypatch)
    _corrupt(directory / "2" / "arrays")
    one = run.metas[1]["counters"]

    again = _trainer(run.cfg, directory)
    assert again.resume() == one
    assert any("unreadable" in r.getMessage() for r in caplog.records if r.name == "tmrlx.learner")
    assert again.counters.updates == one["updates"] > 0 and int(again.replay.count) == one["samples"]

    reset = _trainer(run.cfg.replace({"RESET_TRAINING": True}), directory)
    reset.resume()
    assert reset.counters.updates == 0 and reset.counters.epoch == 0 and reset.model_restarted == "RESET_TRAINING is true"
    assert reset.counters.samples == one["samples"] == int(reset.replay.count)
    np.testing.assert_array_equal(reset.replay.data["obs.obs"], again.replay.data["obs.obs"])
    fresh = jax.tree.leaves(reset.state.actor)[0]
    assert not np.allclose(fresh, jax.tree.leaves(again.state.actor)[0])  # the model restarted, the memory did not


def test_corrupt_meta_falls_back_like_corrupt_arrays(run, tmp_path, monkeypatch, caplog):
    directory = run.copy(tmp_path, monkeypatch)
    _corrupt(directory / "2" / "meta")
    again = _trainer(run.cfg, directory)
    assert again.resume() == run.metas[1]["counters"]
    assert any(f"{directory / '2'} is unreadable" in r.getMessage() and "trying the previous one" in r.getMessage()
               for r in caplog.records if r.name == "tmrlx.learner")


@pytest.mark.slow  # trains an epoch
def test_published_versions_only_grow_across_kills_and_resets_and_a_resumed_learner_publishes_at_once(run, tmp_path,
                                                                                                     monkeypatch):
    directory = run.copy(tmp_path, monkeypatch)
    killed = _trainer(run.cfg, directory)
    killed.resume()
    killed.publish()
    killed.publish()  # published after the last save, then killed

    again = _trainer(run.cfg, directory)
    again.resume()
    again.run()
    assert len(again.source.versions) == 1  # republished at once, though MAX_EPOCHS leaves nothing to train

    reset = _trainer(run.cfg.replace({"RESET_TRAINING": True, "MAX_EPOCHS": 1}), directory)
    reset.resume()
    reset.run()
    versions = run.versions + killed.source.versions + again.source.versions + reset.source.versions
    assert len(reset.source.versions) > 1 and versions == sorted(set(versions)), versions


@pytest.mark.parametrize("change", [{"ALGORITHM": "REDQSAC"}, pytest.param({"OPTIMIZER_CRITIC": "adamw"}, marks=pytest.mark.slow),
                                    pytest.param({"L2_ACTOR": 0.01}, marks=pytest.mark.slow)])
def test_a_changed_algorithm_or_optimizer_restarts_the_model_keeps_the_memory_and_says_why(run, tmp_path, monkeypatch,
                                                                                        caplog, change):
    directory = run.copy(tmp_path, monkeypatch)
    saved = run.metas[2]["counters"]
    key, value = next(iter(change.items()))
    other = _trainer(run.cfg.replace({"ALG": change}), directory)
    assert other.resume() == saved
    assert other.model_restarted and other.counters.updates == 0 and other.counters.epoch == 0
    assert other.counters.samples == saved["samples"] == int(other.replay.count) > 0
    np.testing.assert_array_equal(other.replay.data["obs.obs"], run.obs)
    assert any(f"ALG.{key}" in r.getMessage() and repr(value) in r.getMessage() and "keeping the replay memory" in r.getMessage()
               for r in caplog.records if r.name == "tmrlx.learner")


def test_a_changed_memory_size_is_still_refused(run, tmp_path, monkeypatch):
    directory = run.copy(tmp_path, monkeypatch)
    with pytest.raises(ConfigError, match="memory_size"):
        _trainer(run.cfg.replace({"MEMORY_SIZE": 4000}), directory).resume()


def _learner(tmp_path: Path, overrides: dict) -> subprocess.Popen:
    env = {**os.environ, "TMRLX_DATA": str(tmp_path), "JAX_PLATFORMS": "cpu"}
    cmd = [sys.executable, "-m", "tmrlx", "learner", "--local-source", "--quiet", "--config", json.dumps(overrides)]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)


def _kill_while_saving(proc: subprocess.Popen, directory: Path) -> Path:
    """SIGKILL the learner in the middle of a save; returns the temporary folder it leaves. The learner is frozen
    (SIGSTOP) as soon as one shows: still there, the save is unfinished and it is killed; gone, it is let go until
    the next save."""
    while True:
        unfinished = wait_for(lambda: next(directory.glob(UNFINISHED), None), 120, interval=0.001)
        assert unfinished, "no checkpoint save started"
        proc.send_signal(signal.SIGSTOP)
        if unfinished.exists():
            proc.kill()
            proc.wait(30)
            return unfinished
        proc.send_signal(signal.SIGCONT)


def _lines_until(proc: subprocess.Popen, text: str) -> list[str]:
    """The learner's stderr lines up to the first holding `text` (readline blocks: the test's timeout bounds it)."""
    lines = [proc.stderr.readline()]
    while text not in lines[-1]:
        assert lines[-1], f"the learner exited before saying {text!r}: {lines}"
        lines.append(proc.stderr.readline())
    return lines


@pytest.mark.slow
def test_a_learner_killed_while_saving_resumes_from_the_previous_checkpoint_and_sigterm_saves(tmp_path):
    overrides = {**TINY, "RUN_NAME": "kill", "MAX_EPOCHS": 10_000, "ROUNDS_PER_EPOCH": 1, "MEMORY_SIZE": 100_000}
    directory = tmp_path / "checkpoints" / "kill"
    proc = _learner(tmp_path, overrides)  # an epoch per round: a save every 20 updates
    try:
        assert wait_for(lambda: (directory / "1").is_dir(), 120), "no first checkpoint"  # a save to fall back to
        unfinished = _kill_while_saving(proc, directory)
    finally:
        proc.kill()
    checkpoints = Checkpoints(directory)
    meta = checkpoints.read_meta(checkpoints.steps()[0])
    checkpoints.close()
    assert meta["counters"]["saves"] == int(unfinished.name.split(".")[0]) - 1  # the one before the killed save

    metrics = tmp_path / "logs" / "kill" / "metrics.jsonl"
    rounds = len(metrics.read_text().splitlines())
    proc = _learner(tmp_path, {**overrides, "ROUNDS_PER_EPOCH": 10_000})  # no epoch ends: only SIGTERM saves
    try:
        lines = _lines_until(proc, "from checkpoint")
        assert any("removing" in line and unfinished.name in line for line in lines), lines
        assert not unfinished.exists()
        assert "resuming from checkpoint" in lines[-1], lines
        resumed = json.loads(lines[-1].split("checkpoint ", 1)[1])
        assert resumed["counters"] == meta["counters"]
        assert resumed["memory"] == meta["counters"]["samples"] > 0
        assert wait_for(lambda: len(metrics.read_text().splitlines()) > rounds, 120)  # training again: a round done
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "checkpoint saved" in err
    checkpoints = Checkpoints(directory)
    last = checkpoints.read_meta(checkpoints.steps()[0])["counters"]
    checkpoints.close()
    assert last["saves"] == meta["counters"]["saves"] + 1 and last["updates"] > meta["counters"]["updates"]


@pytest.mark.slow
def test_a_learner_stopped_while_starting_stops_and_saves(tmp_path):
    """SIGINT while the learner builds its model (before the training loop) is kept and honoured once the loop starts:
    raised as KeyboardInterrupt at that moment it could be swallowed (in a garbage-collection callback) or stop the
    learner without a checkpoint."""
    proc = _learner(tmp_path, {**TINY, "RUN_NAME": "early", "MAX_EPOCHS": 10_000})
    try:
        _lines_until(proc, "training on")  # logged while the trainer is built
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "stopped, checkpoint saved" in err, err
    assert (tmp_path / "checkpoints" / "early").is_dir()

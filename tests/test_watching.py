"""Watching training: TensorBoard event files read back by TensorBoard's own reader, wandb offline (no secrets in the
run's files), and the learner continuing the same wandb run when it resumes its model."""

import argparse
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from tmrlx.common.config import load_config
from tmrlx.common.metrics import TensorBoardSink, TerminalSink, WandbSink
from tmrlx.learner import main as learner_main

from tmrlx.testing import wait_for

SECRET, KEY = "a-secret-password-123", "wandb-secret-key-456"
TINY = {"ENV": {"RTGYM_INTERFACE": "GYM:Pendulum-v1", "RTGYM_CONFIG": {"act_buf_len": 0}}, "CUDA_TRAINING": False,
        "MEMORY_SIZE": 3000, "BATCH_SIZE": 32, "ENVIRONMENT_STEPS_BEFORE_TRAINING": 100, "TRAINING_STEPS_PER_ROUND": 20,
        "ROUNDS_PER_EPOCH": 2, "MAX_EPOCHS": 1, "UPDATE_BUFFER_INTERVAL": 20, "UPDATE_MODEL_INTERVAL": 20,
        "RUN_NAME": "watched", "PASSWORD": SECRET, "WANDB_KEY": KEY}


def scalars(folder: Path) -> dict[str, dict[int, float]]:
    """tag -> {step: value}, as TensorBoard shows them (orphaned steps purged)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]}


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch) -> Iterator[Path]:
    """wandb writes its runs under tmp_path/wandb and never reaches the network; HOME is a fresh folder (no ~/.netrc)."""
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    yield tmp_path / "wandb"
    wandb.teardown()  # wandb keeps its settings (WANDB_DIR) process-wide until then


def offline_runs(folder: Path, run_id: str) -> list[Path]:
    return sorted(folder.glob(f"offline-run-*-{run_id}*"))


def test_tensorboard_scalars_read_back_and_a_resumed_run_hides_the_rounds_it_lost(tmp_path):
    sink = TensorBoardSink(tmp_path)
    for step, loss in ((20, 3.0), (40, 2.0), (60, 1.0)):
        sink.write({"updates": step, "loss_critic": loss, "return": float("nan") if step == 40 else -step, "episodes": 1})
    sink.close()
    got = scalars(tmp_path)
    assert got["loss_critic"] == {20: 3.0, 40: 2.0, 60: 1.0}
    assert got["return"] == {20: -20.0, 60: -60.0}  # a non-finite value leaves a gap
    assert got["updates"][60] == 60 and got["episodes"] == {20: 1, 40: 1, 60: 1}
    # a learner killed after logging step 60 resumes from a checkpoint at step 40 and trains step 60 again
    resumed = TensorBoardSink(tmp_path, purge_step=41)
    resumed.write({"updates": 60, "loss_critic": 0.5})
    resumed.close()
    assert scalars(tmp_path)["loss_critic"] == {20: 3.0, 40: 2.0, 60: 0.5}


def test_wandb_offline_run_gets_the_config_without_secrets_and_every_record(offline_wandb):
    cfg = load_config(overrides=TINY)
    sink = WandbSink("proj", "team", cfg.WANDB_KEY, cfg.RUN_NAME, "abc123", cfg.without_secrets())
    sink.write({"updates": 20, "loss_critic": 1.25, "return": float("nan")})
    sink.write({"updates": 40, "loss_critic": 0.75})
    sink.close()
    [run] = offline_runs(offline_wandb, "abc123")
    # wandb's service process writes the run file: under load it may still be writing after finish() returned
    assert wait_for(lambda: b"loss_critic" in (run / "run-abc123.wandb").read_bytes(), 30)
    stored = b"".join(p.read_bytes() for p in offline_wandb.parent.rglob("*") if p.is_file())
    assert SECRET.encode() not in stored and KEY.encode() not in stored
    log = (run / "run-abc123.wandb").read_bytes()
    assert b"BATCH_SIZE" in log and b"watched" in log  # metrics, config and name


@pytest.mark.slow
def test_the_learner_writes_tensorboard_and_continues_its_wandb_run_only_when_it_resumes_its_model(
        tmp_path, monkeypatch, offline_wandb):
    monkeypatch.setenv("TMRLX_DATA", str(tmp_path / "data"))
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    args = argparse.Namespace(wandb=True, local_source=True, seed=0, quiet=True)
    logs = tmp_path / "data" / "logs" / "watched"

    def train(**overrides) -> set[str]:
        before = {p.name for p in offline_wandb.glob("offline-run-*")}
        try:
            assert learner_main.run(load_config(overrides={**TINY, **overrides}), args) == 0
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
        return {p.name.split("-")[3] for p in offline_wandb.glob("offline-run-*") if p.name not in before}  # its run id

    [first] = train()
    assert set(scalars(logs)["loss_critic"]) == {20, 40}  # a scalar per round, at its update count
    assert train(MAX_EPOCHS=2) == {first}  # resumed from the checkpoint: the same wandb run goes on
    assert set(scalars(logs)["loss_critic"]) == {20, 40, 60, 80}
    [reset] = train(RESET_TRAINING=True)
    assert reset != first  # a restarted model starts a new wandb run
    assert set(scalars(logs)["loss_critic"]) == {20, 40}  # and TensorBoard shows its own curve
    stored = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    assert SECRET.encode() not in stored and KEY.encode() not in stored


def test_tensorboard_can_be_turned_off(tmp_path, monkeypatch):
    monkeypatch.setenv("TMRLX_DATA", str(tmp_path))
    cfg = load_config(overrides={**TINY, "TENSORBOARD": False})

    class Fresh:
        counters = argparse.Namespace(updates=0)
        run_ids: dict = {}

    sinks = learner_main.open_sinks(cfg, argparse.Namespace(quiet=True), Fresh())
    assert [type(s).__name__ for s in sinks] == ["JsonlSink"]
    sinks[0].close()
    assert not list((tmp_path / "logs" / "watched").glob("events.out.tfevents.*"))


def test_the_terminal_bar_is_one_line_per_epoch_where_the_output_is_not_a_terminal():
    import io

    out = io.StringIO()  # a log file or a pipe: no bar redraws
    sink = TerminalSink(keys=("return", "return_test", "updates_per_s"), file=out)
    for epoch in range(2):
        sink.start_epoch(epoch, rounds=10)
        for r in range(10):
            sink.write({"return": float(r), "updates_per_s": 100.0 + r, **({"return_test": 5.0} if r == 3 else {})})
    sink.close()
    assert out.getvalue().splitlines() == [f"epoch {e}: 10 rounds, return=9, updates_per_s=109, return_test=5"
                                           for e in range(2)]

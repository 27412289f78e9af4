"""The real TM20 interfaces over the emulated TrackMania in real time, on rtgym's own thread (slow).

Laps on every layout and both branches (a ~97 m track: ~6 s a lap), the plugin's faults ridden out,
record-reward, check-environment and a short training run with broker, learner and `tmrlx actor`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from emulated_game import make_sprint, tm_config
from tmrlx.actor.envs import make_env
from tmrlx.actor.envs.realtime import Stopped
from tmrlx.actor.envs.sim.driver import scripted_action
from tmrlx.common.config import load_config

from tmrlx.cli import main
from tmrlx.testing import free_port, wait_for

ROOT = Path(__file__).resolve().parents[1]
LAP_STEPS = 400  # the sprint lap is ~130 steps of 50 ms


@pytest.fixture(scope="module")
def sprint(tmp_path_factory) -> Path:
    return make_sprint(tmp_path_factory.mktemp("track"))


def drive_to_finish(env, game) -> tuple[int, dict]:
    for step in range(1, LAP_STEPS + 1):
        _, _, terminated, truncated, info = env.step(np.array(scripted_action(game.world), np.float32))
        if terminated or truncated:
            return step, info
    return LAP_STEPS, info


@pytest.mark.slow
@pytest.mark.parametrize("interface,platform,gamepad", [("TM20LIDAR", "windows", True), ("TM20FULL", "linux", True),
                                                        ("TM20LIDARPROGRESS", "windows", False), ("TM20LIDAR", "linux", False)])
def test_a_scripted_driver_finishes_laps_and_the_next_episode_starts_clean(interface, platform, gamepad, sprint):
    env = make_env(tm_config(interface, platform, sprint, gamepad))
    game = env.interface.backends.game
    try:
        obs, info = env.reset()
        assert info["progress"] == 0.0 and game.respawns == 1
        steps, info = drive_to_finish(env, game)
        assert info["finished"] and steps < LAP_STEPS  # terminated at the line; wait() respawned and closed the pop-up
        assert wait_for(lambda: not game.popup, 5.0)  # rtgym runs wait() on its thread after the last step
        obs, info = env.reset()
        assert game.respawns == 2 and info["progress"] == 0.0 and not info["finished"]
        assert game.world.distance < 5.0  # back at the start line
    finally:
        env.close()


@pytest.mark.slow
def test_plugin_outage_stall_and_dropped_connection_are_ridden_out(sprint):
    env = make_env(tm_config("TM20LIDAR", "windows", sprint))
    game, iface = env.interface.backends.game, env.interface
    try:
        env.reset()
        for _ in range(5):
            env.step(np.zeros(3, np.float32))
        received = iface.backends.gamedata.received
        game.drop()  # the plugin closes the connection: the client reconnects, the episode goes on
        for _ in range(30):
            *_, terminated, truncated, _ = env.step(np.zeros(3, np.float32))
            assert not (terminated or truncated)
        assert iface.backends.gamedata.received > received
        game.stall(1.0)  # a short silence: a late step, nothing more
        for _ in range(30):
            *_, terminated, truncated, _ = env.step(np.zeros(3, np.float32))
            assert not (terminated or truncated)
        game.outage(15.0)  # the plugin gone for 15 s (TMRL's worker dies after 10 s)
        t0 = time.monotonic()
        for _ in range(200):
            *_, terminated, truncated, info = env.step(np.zeros(3, np.float32))
            if terminated or truncated:
                break
        assert truncated and not terminated and info.get("end_episode") and time.monotonic() - t0 < 10
        obs, info = env.reset()  # waits until the plugin is back, then respawns
        assert time.monotonic() - t0 >= 14.0 and info["progress"] == 0.0
        env.step(np.zeros(3, np.float32))

        game.outage(60.0)  # a stop request ends a wait for data: no hang
        threading.Timer(1.0, iface.stop.set).start()
        t1 = time.monotonic()
        with pytest.raises(Stopped):
            env.reset()
        assert time.monotonic() - t1 < 8.0
    finally:
        env.close()


@pytest.mark.slow
def test_record_reward_and_check_environment_run_against_the_emulated_game(sprint, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TMRLX_DATA", str(tmp_path))
    kwargs = {"emulate": "linux", "track": str(sprint)}
    cfg = ["--env.rtgym-interface", "TM20LIDAR", "--config", repr({"ENV": {"RTGYM_CONFIG": {"interface_kwargs": kwargs}}})]
    out = tmp_path / "lap.npy"
    assert main(["record-reward", *cfg, "--output", str(out)]) == 0
    recorded, shipped = np.load(out), np.load(sprint.with_suffix(".npy"))
    assert abs(len(recorded) - len(shipped)) < 30 and np.linalg.norm(recorded[-1] - shipped[-1]) < 3.0
    check = ["check-environment", *cfg, "--driver", "scripted", "--no-window", "--output", str(tmp_path / "c.png")]
    assert main([*check, "--steps", "250"]) == 0
    assert "finished True" in capsys.readouterr().out
    assert main([*check, "--steps", "20"]) == 1  # no lap within 20 steps: the rehearsal fails
    assert "no lap finished within 20 steps" in capsys.readouterr().out


@pytest.mark.slow
def test_broker_learner_and_actor_train_tm20lidar_over_the_emulated_game(sprint, tmp_path):
    cfg = load_config(ROOT / "tmrlx" / "resources" / "config_demo.json").replace({
        "RUN_NAME": "emulated", "PORT": free_port(), "MEMORY_SIZE": 5000, "ENVIRONMENT_STEPS_BEFORE_TRAINING": 100,
        "TRAINING_STEPS_PER_ROUND": 20, "UPDATE_MODEL_INTERVAL": 20, "UPDATE_BUFFER_INTERVAL": 10, "BATCH_SIZE": 32,
        "ENV": {"RTGYM_INTERFACE": "TM20LIDAR",
                "RTGYM_CONFIG": {"interface_kwargs": {"emulate": "windows", "track": str(sprint)}}}})
    cfg_file = tmp_path / "emulated.json"
    cfg_file.write_text(cfg.to_json())
    data = tmp_path / "data"
    env = {**os.environ, "TMRLX_DATA": str(data), "JAX_PLATFORMS": "cpu"}
    argv = [sys.executable, "-m", "tmrlx", "demo", "--config-file", str(cfg_file), "--minutes", "0.75",
            "--until-solved", "0", "--actors", "1"]
    r = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=env, timeout=400)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    run_dir = data / "logs" / "emulated"
    rounds = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert rounds and rounds[-1]["samples"] >= 100 and rounds[-1]["updates"] > 0  # samples flowed, rounds ran
    actor_log = (run_dir / "actor0.log").read_text()
    assert "episode return" in actor_log and "Traceback" not in actor_log

"""`tmrlx check-environment` and `tmrlx benchmark` on the simulator, headless."""

from __future__ import annotations

import json

import cv2

from common.cli import main


def test_check_environment_writes_a_strip_and_prints_rewards(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TMRLX_DATA", str(tmp_path))
    out = tmp_path / "strip.png"
    assert main(["check-environment", "--env.rtgym-interface", "SIMLIDAR", "--steps", "40", "--every", "10",
                 "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    rewards = [float(line.split()[3]) for line in printed.splitlines() if line.startswith("step")]
    assert len(rewards) == 40 and sum(rewards) > 0.5  # the scripted driver makes progress
    img = cv2.imread(str(out))
    assert img.shape == (128, 256 * 5, 3)  # 4 views in one row of 5
    assert (img[..., 0] == 255).any()  # the blue lidar beams are drawn


def test_benchmark_prints_rtgym_statistics(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TMRLX_DATA", str(tmp_path))
    assert main(["benchmark", "--env.rtgym-interface", "SIMFULL", "--steps", "50"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert {"time_step_duration", "step_duration", "get_obs_duration", "inference_duration"} <= set(stats)
    assert 0 < stats["step_duration"]["mean_s"] < 0.05  # lockstep: far faster than the 50 ms real time step

"""`tmrlx check-environment` and `tmrlx benchmark` on the simulator, headless."""

from __future__ import annotations

import json

import cv2

from tmrlx.cli import main


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


def test_check_environment_scales_its_strip_by_img_scale_check_env(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TMRLX_DATA", str(tmp_path))
    out = tmp_path / "strip.png"
    assert main(["check-environment", "--env.rtgym-interface", "SIMLIDAR", "--steps", "10", "--every", "10",
                 "--env.img-scale-check-env", "0.5", "--output", str(out)]) == 0
    assert cv2.imread(str(out)).shape == (64, 128 * 5, 3)  # TMRL's display scale, applied to the picture


def test_benchmark_summarises_a_trace(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TMRLX_DATA", str(tmp_path))
    assert main(["benchmark", "--env.rtgym-interface", "SIMLIDAR", "--steps", "30",
                 "--env.rtgym-config.benchmark-type", "trace"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert {"time_step_duration", "step_duration", "get_obs_duration"} <= set(stats)
    assert 0 < stats["step_duration"]["mean_s"] < 0.05 and stats["step_duration"]["avg_dev_s"] >= 0


def test_check_environment_drives_with_the_current_policy(tmp_path, capsys, monkeypatch):
    import jax
    import numpy as np
    from tmrlx.common import weights as contract
    from tmrlx.common.config import load_config
    from tmrlx.common.kinds import spec_from_config
    from tmrlx.common.weights import Arch
    from tmrlx.learner.networks import Actor, dummy_inputs
    from tmrlx.learner.publish import actor_weights

    monkeypatch.setenv("TMRLX_DATA", str(tmp_path))
    cfg = load_config(overrides={"RUN_NAME": "drv", "ENV": {"RTGYM_INTERFACE": "SIMLIDAR"}})
    spec = spec_from_config(cfg)
    arch = Arch.for_spec(spec)
    weights = actor_weights(Actor(spec, arch).init(jax.random.PRNGKey(0), dummy_inputs(spec)))
    weights["mu/kernel"] = np.zeros_like(weights["mu/kernel"])
    weights["mu/bias"] = np.array([3.0, -3.0, 0.0], np.float32)  # full gas, no brake, straight
    (tmp_path / "weights").mkdir()
    contract.save(tmp_path / "weights" / "drv.npz", 7, weights, contract.meta(spec, arch))
    assert main(["check-environment", "--run-name", "drv", "--env.rtgym-interface", "SIMLIDAR", "--driver", "policy",
                 "--steps", "30", "--every", "10", "--output", str(tmp_path / "p.png")]) == 0
    printed = capsys.readouterr().out
    assert "version 7" in printed
    speeds = [line for line in printed.splitlines() if line.startswith("step")]
    assert len(speeds) == 30 and sum(float(line.split()[3]) for line in speeds) > 0.3  # the policy drives forward
    assert main(["check-environment", "--run-name", "none", "--env.rtgym-interface", "SIMLIDAR", "--driver", "policy"]) == 2

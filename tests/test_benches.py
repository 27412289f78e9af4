"""The benchmarks run without torch: TMRL's figures are left out with the install hint, tmrlx's are measured."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCK_TORCH = """
import runpy, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "torch":
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
sys.argv = [{module!r}, *{args!r}]
runpy.run_module({module!r}, run_name="__main__")
"""


def _run_without_torch(module: str, *args: str) -> subprocess.CompletedProcess:
    code = textwrap.dedent(BLOCK_TORCH.format(module=module, args=list(args)))
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("installed", [True, False])
def test_every_bench_module_imports_without_torch(installed):
    """From the repository root, with the editable install's finder or without it (a source tree, or a regular
    install the root's tmrlx/ folder shadows)."""
    block = textwrap.dedent(BLOCK_TORCH.split("sys.argv")[0])
    if not installed:
        block += "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f).lower()]\n"
    modules = sorted(f"bench.{p.stem}" for p in (ROOT / "bench").glob("*.py") if p.stem != "__init__")
    code = block + "".join(f"import {m}\n" for m in modules)
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr


@pytest.mark.slow
def test_the_actor_bench_runs_without_torch_and_omits_tmrl():
    r = _run_without_torch("bench.actor", "--rounds", "1", "--calls", "20")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "torch is not installed" in r.stdout
    figures = json.loads(r.stdout.strip().splitlines()[-1])
    assert figures["mlp_p50_us"] > 0 and not any(k.startswith("tmrl_") for k in figures)


def test_the_learner_bench_fills_its_replay_memory_through_legal_chunks():
    from tmrlx.common.chunks import MAX_ROWS
    from tmrlx.common.config import load_config
    from tmrlx.common.kinds import spec_from_config
    from tmrlx.learner.replay import size

    from bench.learner import filled_replay

    spec = spec_from_config(load_config(overrides={"ENV": {"RTGYM_INTERFACE": "TM20LIDAR"}}))
    assert size(filled_replay(spec, 2 * MAX_ROWS + 5)) == 2 * MAX_ROWS + 5


def test_the_learning_bench_measures_test_episodes_and_the_scripted_lap():
    from tmrlx.common.config import load_config

    from bench.learning import gym_figures, scripted_lap_steps, summarise
    from tmrlx.install import RESOURCES

    def ep(minute, mode="test", finished=False, length=900):
        return {"t": 1000.0 + 60 * minute, "mode": mode, "finished": finished, "length": length, "samples": 100 * minute}

    log = [ep(1, "actor", True, 300), ep(2, finished=True, length=420), ep(3), ep(4, finished=True, length=400),
           ep(5, "actor"), ep(6, finished=True, length=380), ep(7), ep(8)]
    figures = summarise(log, start=1000.0, minutes=10)
    assert figures["first_solved_min"] == 6.0  # the 3rd finish among the last 5 test episodes; training laps don't count
    assert figures["test_finish_rate_last_half"] == round(1 / 3, 3) and figures["test_episodes_last_half"] == 3
    assert figures["best_test_lap_steps"] == 380 and figures["test_episodes"] == 6 and figures["train_episodes"] == 2
    assert figures["median_test_lap_last_half"] == 380.0  # the one finished lap of minutes 5-10
    assert figures["finish_rate_by_window"] == [None, None, 1.0, 0.0, 1.0, None, 1.0, 0.0, 0.0, None]  # per minute
    assert summarise([ep(1, "actor", True)], 1000.0, 10) | {"samples": 0} == {
        "first_solved_min": None, "test_finish_rate_last_half": None, "best_test_lap_steps": None, "test_episodes": 0,
        "median_test_lap_last_half": None, "finish_rate_by_window": [None] * 10,
        "test_episodes_last_half": 0, "train_episodes": 1, "samples": 0}
    cfg = load_config(RESOURCES / "config_demo.json")
    assert 300 < scripted_lap_steps(cfg) < cfg.RW_MAX_SAMPLES_PER_EPISODE  # the easy track: 354 steps when measured

    gym = [{"return": r, "samples": 200 * (i + 1), "mode": "actor"} for i, r in enumerate([-900, -300, -100, -120])]
    gym.insert(2, {"return": -5000, "samples": 500, "mode": "test"})  # test episodes don't count
    assert gym_figures(gym, -200.0, window=2) == {"samples_to_target": 600, "best_mean_return": -110.0, "train_episodes": 4}
    assert gym_figures(gym[:2], -200.0, window=2)["samples_to_target"] is None


def test_the_profile_counts_the_flops_of_dots_and_convolutions_as_xla_does():
    import jax
    import jax.numpy as jnp

    from bench.profile import hlo_ops

    x, k, w = jnp.ones((8, 16, 16, 4)), jnp.ones((4, 4, 4, 6)), jnp.ones((6 * 7 * 7, 5))

    def f(x, k, w):
        h = jax.lax.conv_general_dilated(x, k, (2, 2), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return h.reshape(8, -1) @ w

    compiled = jax.jit(f).lower(x, k, w).compile()
    expected = 2 * 8 * 7 * 7 * 6 * (4 * 4 * 4) + 2 * 8 * 5 * (6 * 7 * 7)
    assert sum(flops for flops, _ in hlo_ops(compiled.as_text()).values()) == expected


def test_playback_drives_each_weights_copy_and_names_the_first_crash_after_a_finish(tmp_path):
    """Three copies of constant policies on the easy track: full gas straight on (scrapes round both bends and
    finishes) between two at full left lock (never finishes)."""
    from tmrlx.common import weights
    from tmrlx.common.config import load_config
    from tmrlx.common.kinds import spec_from_config

    from tmrlx.install import RESOURCES

    cfg = load_config(RESOURCES / "config_demo.json")
    spec = spec_from_config(cfg)
    (tmp_path / "config.json").write_text(json.dumps(cfg.to_dict()))
    (tmp_path / "weights").mkdir()
    fan_in = sum(int(np.prod(c.obs_shape)) for c in spec.components) + spec.act_buf_len * spec.act_dim
    for copy, steer in ((10, -1.0), (20, 0.0), (30, -1.0)):
        arrays = {"hidden_0/kernel": np.zeros((fan_in, 4)), "hidden_0/bias": np.zeros(4),
                  "hidden_1/kernel": np.zeros((4, 4)), "hidden_1/bias": np.zeros(4),
                  "mu/kernel": np.zeros((4, 3)), "mu/bias": np.arctanh([0.9, -0.9, 0.999 * steer]),
                  "log_std/kernel": np.zeros((4, 3)), "log_std/bias": np.zeros(3)}
        meta = {"arch": {"type": "mlp", "hidden": [4, 4], "convs": [], "log_std_min": -20.0, "log_std_max": 2.0},
                "spec": spec.to_dict()}
        weights.save(tmp_path / "weights" / f"run_{copy}.npz", copy, arrays, meta)
    r = subprocess.run([sys.executable, "-m", "bench.playback", str(tmp_path), "--first", "3", "--episodes", "2"],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.strip().splitlines()
    assert lines[0].startswith("copy    10: 0/2 finished") and lines[0].endswith("-1.0 -1.0 -1.0")
    assert lines[1].startswith("copy    20: 2/2 finished") and lines[1].endswith("+0.0 +0.0 +0.0")
    figures = json.loads(lines[-1])
    assert figures["copies"] == 3 and figures["episodes"] == 6 and figures["finished"] == 2
    assert figures["first_failed_after_finishing"] == 30
    assert 354 < figures["best_lap_steps"] <= figures["median_lap_steps"] < cfg.RW_MAX_SAMPLES_PER_EPISODE


def test_the_dots_alone_program_holds_every_matmul_of_the_update():
    """`dots_alone_ms` times the update's own matmuls: their FLOPs are the update's but for its elementwise work."""
    import jax
    from tmrlx.common.config import load_config
    from tmrlx.common.kinds import spec_from_config
    from tmrlx.common.weights import Arch
    from tmrlx.learner.devices import Devices

    from bench.learner import dots_of, flops, fused_setup, loop_free

    cfg = load_config(overrides={"BATCH_SIZE": 64, "CUDA_TRAINING": False, "ENV": {"RTGYM_INTERFACE": "TM20LIDAR"}})
    spec = spec_from_config(cfg)
    sac, state, replay = fused_setup(cfg, spec, Arch.for_spec(spec), 1, Devices(jax.devices()[:1]))
    _, full, noise = loop_free(sac, state, replay)
    dots = dots_of(jax.make_jaxpr(full)(state, replay, noise).jaxpr, [])

    def dot_flops(lhs, rhs, dimension_numbers):
        (lc, rc), (lb, rb) = dimension_numbers
        free = [n for i, n in enumerate(lhs) if i not in lc] + [n for i, n in enumerate(rhs) if i not in rc + rb]
        return 2 * np.prod(free) * np.prod([lhs[i] for i in lc])

    matmul = sum(dot_flops(*d) for d in dots)
    # forward, input and kernel gradients of both critics twice and of the actor: 30-odd dots
    assert len(dots) > 25
    assert 0.9 < matmul / flops(jax.jit(full).lower(state, replay, noise).compile()) <= 1.0

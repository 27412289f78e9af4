"""Simulator speed per layout, lockstep and real time (`just bench sim`).

Lockstep: median over blocks of the per-step wall time of `env.step` driven by the scripted driver
(resets included in the steps/s figure, excluded from the per-step median), pinned to one core with
OpenCV single-threaded, as the issue's targets are per core: < 2 ms (lidar), < 0.5 ms (image).
Real time: 100 steps at the config's 50 ms time step; the reference is 1 / time_step_duration and
rtgym's own time-step statistic. Ends with one JSON line.
"""

from __future__ import annotations

import json
import os
import time
import warnings

import cv2
import numpy as np
from tmrlx.actor.envs import make_env
from tmrlx.actor.envs.sim.driver import scripted_action
from tmrlx.common.config import load_config

TARGET_MS = {"lidar": 2.0, "lidarprogress": 2.0, "full": 0.5}
BLOCKS, STEPS = 5, 400


def lockstep(layout: str) -> dict:
    env = make_env(load_config(overrides={"ENV": {"RTGYM_INTERFACE": "SIM" + layout.upper()}}))
    world = env.interface.backends.controller.world
    env.reset()
    rates, step_ms = [], []
    for _ in range(BLOCKS):
        times = []
        start = time.perf_counter()
        for _ in range(STEPS):
            action = np.array(scripted_action(world), np.float32)
            t = time.perf_counter()
            *_, term, trunc, _ = env.step(action)
            times.append(time.perf_counter() - t)
            if term or trunc:
                env.reset()
        rates.append(STEPS / (time.perf_counter() - start))
        step_ms.append(float(np.median(times)) * 1e3)
    return {"steps_per_s": float(np.median(rates)), "step_ms_median": float(np.median(step_ms))}


def real_time(steps: int = 100) -> dict:
    cfg = load_config(overrides={"ENV": {"RTGYM_INTERFACE": "SIMLIDAR", "SLEEP_TIME_AT_RESET": 0.1,
                                         "RTGYM_CONFIG": {"interface_kwargs": {"lockstep": False}, "benchmark": True}}})
    env = make_env(cfg)
    env.reset()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        for _ in range(steps):
            env.step(np.array([0.5, 0.0, 0.0], np.float32))
        elapsed = time.perf_counter() - start
    bench = env.benchmarks()
    return {"steps_per_s": steps / elapsed, "late_steps": sum("timed out" in str(w.message) for w in caught),
            "rtgym_time_step_s": bench["time_step_duration"][0], "rtgym_get_obs_s": bench["get_obs_duration"][0],
            "target_steps_per_s": 1.0 / cfg.ENV.RTGYM_CONFIG.time_step_duration}


def main() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    cv2.setNumThreads(1)
    out: dict = {}
    print(f"{'layout':<15}{'steps/s':>10}{'ms/step (median)':>18}{'target ms':>11}")
    for layout in ("lidar", "lidarprogress", "full"):
        r = lockstep(layout)
        print(f"{layout:<15}{r['steps_per_s']:>10.0f}{r['step_ms_median']:>18.3f}{TARGET_MS[layout]:>11.1f}")
        out[f"{layout}_lockstep_steps_per_s"] = round(r["steps_per_s"], 1)
        out[f"{layout}_step_ms_median"] = round(r["step_ms_median"], 4)
        out[f"{layout}_target_ms"] = TARGET_MS[layout]
    rt = real_time()
    print(f"real time (lidar): {rt['steps_per_s']:.2f} steps/s (reference {rt['target_steps_per_s']:.0f}), "
          f"{rt['late_steps']} late steps, rtgym time step {rt['rtgym_time_step_s'] * 1e3:.2f} ms, "
          f"get_obs {rt['rtgym_get_obs_s'] * 1e3:.3f} ms")
    out.update({"lidar_realtime_steps_per_s": round(rt["steps_per_s"], 2),
                "realtime_reference_steps_per_s": rt["target_steps_per_s"], "realtime_late_steps": rt["late_steps"],
                "realtime_rtgym_time_step_ms": round(rt["rtgym_time_step_s"] * 1e3, 3)})
    print(json.dumps(out))


if __name__ == "__main__":
    main()

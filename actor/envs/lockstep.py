"""rtgym's semantics without its threads, on an injected clock: the lockstep environment.

`reset()` and `step(a)` behave exactly like rtgym's `RealTimeEnv`: the observation returned by
`step(a)` was captured during the time step that applied the previous action, `a` is applied
during the next one, the last `act_buf_len` actions are appended to every observation,
`ep_max_length` truncates, `wait_on_done` calls the interface's `wait()`; `reset()` refills the action
buffer with default actions, or with `reset_act_buf` false keeps it and applies its last action (the
default action unless `last_act_on_reset`), as rtgym does. Each time step sleeps
`start_obs_capture`, captures, then sleeps the rest of `time_step_duration`, all on the clock:
with a `VirtualClock` no time passes for real and runs are deterministic. `benchmarks()` gives
rtgym's time-step statistics (wall-clock durations of the same phases; running averages, or
the timing histories with `benchmark_type` 'trace').
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces
from rtgym.envs.utils.benchmark import Benchmark, TraceBenchmark
from tmrlx.actor.envs.clock import Clock


class LockstepEnv(gymnasium.Env):
    def __init__(self, interface: Any, config: dict, clock: Clock, steps_per_s: float | None = None):
        self.interface = interface
        # Optional wall-clock pacing: lockstep actors otherwise take every CPU cycle from a learner on
        # the same machine; the simulated time step stays `time_step_duration` either way.
        self.pace = 1.0 / steps_per_s if steps_per_s else 0.0
        self._next_wall = 0.0
        self.clock = clock
        self.duration = float(config["time_step_duration"])
        self.capture = min(float(config["start_obs_capture"]), self.duration)
        self.ep_max_length = config["ep_max_length"]
        self.wait_on_done = bool(config["wait_on_done"])
        self.act_buf_len = int(config["act_buf_len"])
        self.reset_act_buf = bool(config["reset_act_buf"])
        self.last_act_on_reset = bool(config["last_act_on_reset"])
        self.benchmark = bool(config["benchmark"])
        bench_cls = TraceBenchmark if config["benchmark_type"] == "trace" else Benchmark
        self.bench = bench_cls(run_avg_factor=config["benchmark_polyak"])
        self.action_space = interface.get_action_space()
        obs_space = interface.get_observation_space()
        self.observation_space = spaces.Tuple((*obs_space.spaces, *(self.action_space,) * self.act_buf_len))
        self.default_action = interface.get_default_action()
        # filled once here as rtgym does, so that a first reset() that keeps the buffer finds default actions
        self.act_buf: deque[np.ndarray] = deque([self.default_action] * self.act_buf_len, maxlen=self.act_buf_len)
        self.current_step = 0
        self.running = False
        self._result: tuple[Any, float, bool, dict] | None = None

    def _time_step(self, action: np.ndarray) -> None:
        if self.benchmark:
            self.bench.start_send_control_time()
        self.interface.send_control(action)
        if self.benchmark:
            self.bench.end_send_control_time()
        self.clock.sleep(self.capture)
        if self.benchmark:
            self.bench.start_get_obs_time()
        self._result = self.interface.get_obs_rew_terminated_info()
        if self.benchmark:
            self.bench.end_get_obs_time()
        self.clock.sleep(self.duration - self.capture)

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[tuple, dict]:
        if self.benchmark:
            self.bench.start_reset_time()
            self.bench.end_reset_join_time()
        super().reset(seed=seed)
        self.current_step = 0
        if self.reset_act_buf:
            self.act_buf.extend([self.default_action] * self.act_buf_len)
        elif self.act_buf and not self.last_act_on_reset:
            self.act_buf[-1] = self.default_action  # the episode's last action was never applied: reset applies this
        obs, info = self.interface.reset(seed=seed, options=options)
        obs = (*obs, *self.act_buf)
        self.running = True
        self._time_step(self.act_buf[-1] if self.act_buf else self.default_action)
        if self.benchmark:
            self.bench.end_reset_time()
        return obs, info

    def step(self, action: np.ndarray) -> tuple[tuple, float, bool, bool, dict]:
        if self.benchmark:
            self.bench.start_step_time()
            self.bench.end_step_join_time()
        if not self.running:
            raise RuntimeError("The episode is terminated or truncated. Call reset before step.")
        self.current_step += 1
        self.act_buf.append(action)
        if self.pace:
            self._wait_pace()
        assert self._result is not None, "reset() captured the first time step"
        obs, reward, terminated, info = self._result
        truncated = (self.current_step >= self.ep_max_length) if not terminated else False
        if terminated or truncated:
            self.running = False
            if self.wait_on_done:
                self.interface.wait()
        else:
            self._time_step(action)
        if self.benchmark:
            self.bench.end_step_time()
        return (*obs, *self.act_buf), reward, terminated, truncated, info

    def _wait_pace(self) -> None:
        now = time.perf_counter()
        if self._next_wall > now:
            time.sleep(self._next_wall - now)
        self._next_wall = max(now, self._next_wall) + self.pace

    def wait(self) -> None:
        self.interface.wait()

    def benchmarks(self) -> dict:
        if not self.benchmark:
            raise RuntimeError("benchmarks need ENV.RTGYM_CONFIG.benchmark = true")
        return self.bench.get_benchmark_dict()

    def render(self) -> Any:
        return self.interface.render()

    def close(self) -> None:
        close = getattr(self.interface, "close", None)
        if close is not None:
            close()

"""rtgym's real-time environment, made safe for a process that must never hang.

`RealTimeEnvTS` runs the interface's reset, wait, send_control and get_obs on one background thread and
makes the main thread wait for it without a timeout: an exception there kills the thread and leaves the
actor waiting forever. `Guard` catches every exception on that thread, lets rtgym finish its step with a
placeholder, and `RealTimeEnv` re-raises it on the main thread after the step or reset. An interface may
also end an episode early by putting `END_EPISODE: True` in its info (a game-data gap): the step then
returns truncated, as when `ep_max_length` is reached.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from rtgym.envs.real_time_env import RealTimeEnvTS

END_EPISODE = "end_episode"
log = logging.getLogger("tmrlx.actor")


class Stopped(Exception):
    """The actor was asked to stop while the environment was waiting (for the game's data)."""


class Guard:
    """Wraps an rtgym interface: exceptions on rtgym's thread are kept for the main thread, never fatal there."""

    def __init__(self, interface: Any):
        self.interface = interface
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self._last_obs: list = []

    def _keep(self, e: BaseException) -> None:
        with self._lock:
            if self.error is None:
                self.error = e
                if not isinstance(e, Stopped):
                    log.error("the environment failed on rtgym's thread (%s: %s)", type(e).__name__, e)

    def raise_pending(self) -> None:
        with self._lock:
            error, self.error = self.error, None
        if error is not None:
            raise error

    def __getattr__(self, name: str) -> Any:  # spaces, default action, render
        return getattr(self.interface, name)

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[list, dict]:
        try:
            obs, info = self.interface.reset(seed=seed, options=options)
        except Exception as e:
            self._keep(e)
            return list(self._last_obs), {}
        self._last_obs = list(obs)
        return obs, info

    def get_obs_rew_terminated_info(self) -> tuple[list, float, bool, dict]:
        try:
            obs, reward, terminated, info = self.interface.get_obs_rew_terminated_info()
        except Exception as e:
            self._keep(e)
            return list(self._last_obs), 0.0, False, {END_EPISODE: True}
        self._last_obs = list(obs)
        return obs, reward, terminated, info

    def send_control(self, control: Any) -> None:
        try:
            self.interface.send_control(control)
        except Exception as e:
            self._keep(e)

    def wait(self) -> None:
        try:
            self.interface.wait()
        except Exception as e:
            self._keep(e)


class RealTimeEnv(RealTimeEnvTS):
    """rtgym's one-thread real-time env over a `Guard`; `interface` is the unguarded interface."""

    def __init__(self, config: dict, interface: Any):
        self.guard = Guard(interface)
        self.interface = interface
        super().__init__({**config, "interface": lambda: self.guard})

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[tuple, dict]:
        result = super().reset(seed=seed, options=options)
        self.guard.raise_pending()
        return result

    def step(self, action: Any) -> tuple[tuple, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = super().step(action)
        if info.get(END_EPISODE) and not (terminated or truncated):
            self._wait_thread()  # the time step rtgym started with this action
            self.running, truncated = False, True
            if self.wait_on_done:
                self.wait()
        self.guard.raise_pending()
        return obs, reward, terminated, truncated, info

    def close(self) -> None:
        self._wait_thread()
        self.interface.close()

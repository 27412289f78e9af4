"""TMRL's TrackMania rtgym interfaces (FULL, LIDAR, LIDARPROGRESS), written once over injected backends.

The same code drives the game (mss screen, plugin TCP client, gamepad/keyboard, wall clock) and the
built-in simulator (renderer, in-process or TCP game data, simulated car, wall or lockstep clock).
Spaces follow `common.specs.spec_from_config` with TMRL's bounds; actions are [gas, brake, steer]
in [-1, 1]. Rewards follow REWARD_CONFIG (see `reward.py`).

Game-data gaps never raise out of rtgym's thread (TMRL's client asserts after 10 s and its worker
dies): a step without data for GAP_S ends the episode (truncated, with advice in the log) while the
client keeps reconnecting, and reset waits for data, repeating the advice, until it flows again or
`stop` is set.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

import cv2
import numpy as np
from gymnasium import spaces
from rtgym import RealTimeGymInterface
from tmrlx.actor.envs.backends import Backends
from tmrlx.actor.envs.backends.gamedata import FINISHED, GEAR, RPM, SPEED, NoGameData, X, Z
from tmrlx.actor.envs.lidar import Lidar
from tmrlx.actor.envs.realtime import END_EPISODE, Stopped
from tmrlx.actor.envs.reward import RewardFunction
from tmrlx.common.config import Config
from tmrlx.common.kinds import spec_from_config

BOUNDS = {"speed": (0.0, 1000.0), "gear": (0.0, 6.0), "rpm": (0.0, np.inf), "images": (0, 255),
          "lidar": (0.0, np.inf), "progress": (0.0, 1.0)}
WAIT_SLEEP = 0.5  # s after respawning at the end of an episode (TMRL's wait())
GAP_S = 2.0  # s without game data before a step ends the episode
POLL_S = 0.5  # s between checks of `stop` while reset waits for data
ADVICE_EVERY_S = 5.0
log = logging.getLogger("tmrlx.actor")


class TrackInterface(RealTimeGymInterface):
    def __init__(self, cfg: Config, backends: Backends, reward: RewardFunction):
        env = cfg.ENV
        self.spec = spec_from_config(cfg)
        self.names = [c.name for c in self.spec.components]
        self.backends = backends
        self.reward = reward
        self.hist = env.IMG_HIST_LEN
        self.img_size = (env.IMG_WIDTH, env.IMG_HEIGHT)
        self.grayscale = env.IMG_GRAYSCALE
        self.sleep_at_reset = env.SLEEP_TIME_AT_RESET
        self.finish_reward = env.REWARD_CONFIG.END_OF_TRACK
        self.constant_penalty = env.REWARD_CONFIG.CONSTANT_PENALTY
        self.lidar = Lidar(env.WINDOW_HEIGHT, env.WINDOW_WIDTH) if "lidar" in self.names else None
        self.history: deque = deque(maxlen=self.hist)
        self.last_frame: np.ndarray | None = None
        self.last_obs: list | None = None
        self.stop = threading.Event()  # make_env shares the actor's: a wait for data gives up when it is set

    # spaces ----------------------------------------------------------------------------------
    def get_observation_space(self) -> spaces.Tuple:
        return spaces.Tuple(tuple(spaces.Box(*BOUNDS[c.name], c.obs_shape, np.dtype(c.dtype))
                                  for c in self.spec.components))

    def get_action_space(self) -> spaces.Box:
        return spaces.Box(-1.0, 1.0, (self.spec.act_dim,), np.float32)

    def get_default_action(self) -> np.ndarray:
        return np.zeros(self.spec.act_dim, np.float32)

    # observation -----------------------------------------------------------------------------
    def _frame(self, shot: np.ndarray) -> np.ndarray:
        """One history entry: the lidar scan, or the resized (grayscale) image."""
        if self.lidar is not None:
            return self.lidar(shot)
        img = cv2.resize(shot, self.img_size)  # bilinear, as TMRL
        return cv2.cvtColor(img, cv2.COLOR_BGRA2GRAY) if self.grayscale else cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)

    def _grab(self, data: np.ndarray) -> np.ndarray:
        shot = self.backends.screen.grab()
        self.last_frame = shot
        return self._frame(shot)

    def _wait_for_data(self) -> np.ndarray:
        """The next record, however long the game takes to send one (advice every ADVICE_EVERY_S)."""
        since = last_advice = time.monotonic()
        while True:
            try:
                return self.backends.gamedata.retrieve(timeout=POLL_S)
            except NoGameData as e:
                if self.stop.is_set():
                    raise Stopped("stopped while waiting for the game's data") from None
                if time.monotonic() - last_advice >= ADVICE_EVERY_S:
                    last_advice = time.monotonic()
                    log.warning("waiting for game data for %.0f s: %s", last_advice - since, e)

    def _obs(self, data: np.ndarray) -> list:
        stack = np.stack(self.history) if self.hist > 1 else self.history[-1]
        parts = {"speed": data[SPEED:SPEED + 1], "gear": data[GEAR:GEAR + 1], "rpm": data[RPM:RPM + 1],
                 "progress": np.array([self.reward.cur_idx / max(len(self.reward.data) - 1, 1)], np.float32),
                 "images": stack, "lidar": stack}
        return [parts[n] for n in self.names]

    def _info(self, data: np.ndarray) -> dict:
        return {"progress": self.reward.progress, "finished": bool(data[FINISHED])}

    # rtgym -----------------------------------------------------------------------------------
    def send_control(self, control: np.ndarray | None) -> None:
        if control is not None:
            self.backends.controller.apply(float(control[0]), float(control[1]), float(control[2]))

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[list, dict]:
        self.backends.controller.apply(0.0, 0.0, 0.0)
        self._wait_for_data()  # after a gap: the game is back before we respawn in it
        self.backends.controller.respawn()
        self.backends.clock.sleep(self.sleep_at_reset)
        data = self._wait_for_data()
        frame = self._grab(data)
        self.history.clear()
        self.history.extend([frame] * self.hist)
        self.reward.reset()
        self.last_obs = self._obs(data)
        return self.last_obs, self._info(data)

    def wait(self) -> None:
        """TMRL's end of episode: respawn (ignored while the finish pop-up is up), then close the pop-up."""
        self.backends.controller.apply(0.0, 0.0, 0.0)
        self.backends.controller.respawn()
        self.backends.clock.sleep(WAIT_SLEEP)
        self.backends.controller.close_popup()

    def get_obs_rew_terminated_info(self) -> tuple[list, float, bool, dict]:
        try:
            data = self.backends.gamedata.retrieve(timeout=GAP_S)
        except NoGameData as e:
            log.warning("no game data for %.0f s: ending the episode (the client keeps reconnecting). %s", GAP_S, e)
            assert self.last_obs is not None  # reset() came first
            return self.last_obs, 0.0, False, {END_EPISODE: True, "progress": self.reward.progress, "finished": False}
        frame = self._grab(data)
        reward, terminated = self.reward.compute_reward(data[X:Z + 1])
        self.history.append(frame)
        if data[FINISHED]:
            terminated = True
            reward += self.finish_reward
        reward += self.constant_penalty
        self.last_obs = self._obs(data)
        return self.last_obs, float(reward), bool(terminated), self._info(data)

    def render(self) -> np.ndarray | None:
        """The last screenshot (BGRA)."""
        return self.last_frame

    def close(self) -> None:
        self.backends.close()

"""TMRL's TrackMania rtgym interfaces (FULL, LIDAR, LIDARPROGRESS), written once over injected backends.

The same code drives the game (mss screen, plugin TCP client, gamepad/keyboard, wall clock) and the
built-in simulator (renderer, in-process or TCP game data, simulated car, wall or lockstep clock).
Spaces follow `common.specs.spec_from_config` with TMRL's bounds; actions are [gas, brake, steer]
in [-1, 1]. Rewards follow REWARD_CONFIG (see `reward.py`).
"""

from __future__ import annotations

from collections import deque

import cv2
import numpy as np
from gymnasium import spaces
from rtgym import RealTimeGymInterface
from tmrlx.actor.envs.backends import Backends
from tmrlx.actor.envs.backends.gamedata import FINISHED, GEAR, RPM, SPEED, X, Z
from tmrlx.actor.envs.lidar import Lidar
from tmrlx.actor.envs.reward import RewardFunction
from tmrlx.common.config import Config
from tmrlx.common.kinds import spec_from_config

BOUNDS = {"speed": (0.0, 1000.0), "gear": (0.0, 6.0), "rpm": (0.0, np.inf), "images": (0, 255),
          "lidar": (0.0, np.inf), "progress": (0.0, 1.0)}
WAIT_SLEEP = 0.5  # s after respawning at the end of an episode (TMRL's wait())


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

    def _grab(self) -> tuple[np.ndarray, np.ndarray]:
        data = self.backends.gamedata.retrieve()
        shot = self.backends.screen.grab()
        self.last_frame = shot
        return data, self._frame(shot)

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
        self.backends.controller.respawn()
        self.backends.clock.sleep(self.sleep_at_reset)
        data, frame = self._grab()
        self.history.clear()
        self.history.extend([frame] * self.hist)
        self.reward.reset()
        return self._obs(data), self._info(data)

    def wait(self) -> None:
        self.backends.controller.apply(0.0, 0.0, 0.0)
        self.backends.controller.respawn()
        self.backends.clock.sleep(WAIT_SLEEP)

    def get_obs_rew_terminated_info(self) -> tuple[list, float, bool, dict]:
        data, frame = self._grab()
        reward, terminated = self.reward.compute_reward(data[X:Z + 1])
        self.history.append(frame)
        if data[FINISHED]:
            terminated = True
            reward += self.finish_reward
        reward += self.constant_penalty
        return self._obs(data), float(reward), bool(terminated), self._info(data)

    def render(self) -> np.ndarray | None:
        """The last screenshot (BGRA)."""
        return self.last_frame

    def close(self) -> None:
        self.backends.close()

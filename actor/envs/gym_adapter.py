"""Any Gymnasium environment as an rtgym interface (`GYM:<id>`), with actions in [-1, 1].

`send_control(a)` steps the wrapped env with `a` rescaled to its Box bounds; the captured
observation is that step's result, so through rtgym an action shows up one step later, as in
every real-time environment. The wrapped env's own time limit is lifted (rtgym's `ep_max_length`
truncates instead); an inner termination ends the episode. Non-uint8 observations are float32.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces
from rtgym import RealTimeGymInterface
from tmrlx.common.errors import ConfigError


def _box(space: spaces.Box) -> spaces.Box:
    dtype = np.uint8 if space.dtype == np.uint8 else np.float32
    return spaces.Box(space.low.astype(dtype), space.high.astype(dtype), space.shape, dtype)


class GymInterface(RealTimeGymInterface):
    def __init__(self, env_id: str, max_steps: int):
        try:
            self.env = gymnasium.make(env_id, max_episode_steps=max_steps + 1)
        except Exception as e:  # gymnasium raises several types for unknown or broken ids
            raise ConfigError(f"config key 'ENV.RTGYM_INTERFACE' has value 'GYM:{env_id}': {e}") from None
        act = self.env.action_space
        if not isinstance(act, spaces.Box) or len(act.shape) != 1:
            raise ConfigError(f"GYM:{env_id} has action space {act}: only 1-D Box (continuous) actions are supported")
        if not isinstance(self.env.observation_space, spaces.Box):
            raise ConfigError(f"GYM:{env_id} has observation space {self.env.observation_space}: only a Box is supported")
        self.obs_space = _box(self.env.observation_space)
        self.low, self.high = act.low.astype(np.float64), act.high.astype(np.float64)
        self.act_dim = act.shape[0]
        self._result: tuple[Any, float, bool, dict] | None = None
        self._seed: int | None = None

    def _obs(self, o: Any) -> list:
        return [np.asarray(o, self.obs_space.dtype)]

    def get_observation_space(self) -> spaces.Tuple:
        return spaces.Tuple((self.obs_space,))

    def get_action_space(self) -> spaces.Box:
        return spaces.Box(-1.0, 1.0, (self.act_dim,), np.float32)

    def get_default_action(self) -> np.ndarray:
        return np.zeros(self.act_dim, np.float32)

    def send_control(self, control: np.ndarray | None) -> None:
        if control is None:
            return
        a = np.clip(np.asarray(control, np.float64), -1.0, 1.0)
        scaled = (self.low + (a + 1.0) * 0.5 * (self.high - self.low)).astype(self.env.action_space.dtype)
        o, r, terminated, _, info = self.env.step(scaled)
        self._result = (self._obs(o), float(r), bool(terminated), dict(info))

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[list, dict]:
        o, info = self.env.reset(seed=seed, options=options)
        return self._obs(o), dict(info)

    def get_obs_rew_terminated_info(self) -> tuple[list, float, bool, dict]:
        assert self._result is not None, "rtgym always sends a control before capturing"
        return self._result

    def render(self) -> Any:
        return self.env.render()

    def close(self) -> None:
        self.env.close()

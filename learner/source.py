"""Where samples come from and weights go: the broker's `LearnerClient`, or an in-process gymnasium actor.

`GymSource` is a real (non-real-time) actor without a network: it steps a gymnasium environment
with the newest published weights and emits chunks in the wire format, so the whole learner can
be run and tested on one machine (`tmrlx learner --local-source`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Protocol, cast

import jax
import numpy as np
from tmrlx.common.chunks import ChunkSchema, StreamCounter
from tmrlx.common.specs import ObsSpec
from tmrlx.common.weights import Arch
from tmrlx.learner.networks import Actor, squashed_sample
from tmrlx.learner.publish import params_from_weights


class Source(Protocol):
    """The three calls the training loop makes (`tmrlx.learner.link.LearnerClient` provides them)."""

    def poll_samples(self, max_chunks: int | None = None, timeout: float = 0.0) -> list[tuple[dict, dict]]: ...
    def poll_episodes(self) -> list[dict]: ...
    def demand(self, rows: float) -> None: ...
    def publish_weights(self, version: int, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> None: ...


class GymSource:
    """Steps `env_id` with the latest policy (stochastic) and returns `steps_per_poll` rows per poll."""

    def __init__(self, env_id: str, spec: ObsSpec, seed: int = 0, steps_per_poll: int = 50):
        import gymnasium

        self.env = gymnasium.make(env_id)
        self.spec, self.steps_per_poll = spec, steps_per_poll
        self.rng = np.random.default_rng(seed)
        self.schema, self.stream, self.step = ChunkSchema.of(spec), StreamCounter(), 0
        box = self.env.action_space
        assert isinstance(box, gymnasium.spaces.Box), "the spec checked the action space is a Box"
        self.low, self.high = box.low, box.high
        self.policy: Callable[[Any, Any, Any], Any] | None = None
        self.params: dict[str, Any] | None = None
        self.version = 0
        self.episodes: list[dict] = []
        self.returns: list[float] = []  # every finished episode's return, for tests and logs
        self._seed = seed
        self._reset()

    def _reset(self) -> None:
        obs, _ = self.env.reset(seed=self._seed if self.step == 0 else None)
        comps = enumerate(self.spec.components)
        self.hist = {c.name: deque([self._part(obs, i)] * c.history, maxlen=c.history) for i, c in comps}
        self.acts = deque([np.zeros(self.spec.act_dim, np.float32)] * self.spec.act_buf_len, maxlen=self.spec.act_buf_len)
        self.ep_return, self.ep_len, self.pending_first = 0.0, 0, True

    def _part(self, obs: Any, i: int) -> np.ndarray:
        raw = obs[i] if len(self.spec.components) > 1 else obs
        return np.asarray(raw, self.spec.components[i].dtype)

    def publish_weights(self, version: int, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> None:
        if self.policy is None:
            actor = Actor(self.spec, Arch.from_dict(meta["arch"]))
            heads = lambda p, x: cast(tuple[jax.Array, jax.Array], actor.apply(p, x))  # noqa: E731 (mu, log_std)
            self.policy = jax.jit(lambda p, x, eps: squashed_sample(*heads(p, x), eps)[0])
        self.params, self.version = params_from_weights(arrays), version

    def _act(self) -> np.ndarray:
        if self.params is None or self.policy is None:
            return self.rng.uniform(-1, 1, self.spec.act_dim).astype(np.float32)
        parts = {c.name: np.stack(self.hist[c.name])[None] if c.history > 1 else self.hist[c.name][-1][None]
                 for c in self.spec.components}
        parts["act_buf"] = np.stack(self.acts)[None] if self.spec.act_buf_len else np.zeros((1, 0, self.spec.act_dim), np.float32)
        eps = self.rng.standard_normal((1, self.spec.act_dim)).astype(np.float32)
        return np.asarray(self.policy(self.params, self.spec.normalise(parts), eps))[0]

    def poll_samples(self, max_chunks: int | None = None, timeout: float = 0.0) -> list[tuple[dict, dict]]:
        chunk = self.schema.empty(self.steps_per_poll)
        for k in range(self.steps_per_poll):
            if self.pending_first:
                chunk["first"][k] = True
                self.pending_first = False
                term = trunc = False
            else:
                act = self._act()
                obs, rew, term, trunc, _ = self.env.step(self.low + (act + 1.0) * 0.5 * (self.high - self.low))
                for i, c in enumerate(self.spec.components):
                    self.hist[c.name].append(self._part(obs, i))
                if self.spec.act_buf_len:
                    self.acts.append(act)
                chunk["action"][k], chunk["reward"][k], chunk["terminated"][k], chunk["truncated"][k] = act, rew, term, trunc
                self.ep_return += float(rew)
                self.ep_len += 1
            for c in self.spec.components:
                chunk[f"obs.{c.name}"][k] = self.hist[c.name][-1]
            self.step += 1
            if term or trunc:
                self.episodes.append({"return": self.ep_return, "length": self.ep_len})
                self.returns.append(self.ep_return)
                self._reset()
        return [(self.stream.stamp(self.steps_per_poll, self.version), chunk)]

    def poll_episodes(self) -> list[dict]:
        out, self.episodes = self.episodes, []
        return out

    def demand(self, rows: float) -> None:
        """Nothing to pace: this source steps only when polled."""

    def close(self) -> None:
        self.env.close()

"""The real-time loop: what it sends (every row once, in order), weight swaps, modes, truncation, timing stats."""

from __future__ import annotations

import time
from collections import deque

import gymnasium
import numpy as np
import pytest
from gymnasium import spaces
from rtgym import DEFAULT_CONFIG_DICT, RealTimeGymInterface
from tmrlx.actor.policy import Policy
from tmrlx.actor.rollout import ChunkWriter, NoiseBlock, Rollout
from tmrlx.common.chunks import StreamCounter
from tmrlx.common.specs import Component, ObsSpec

SPEC = ObsSpec((Component("pos", (2,), history=3), Component("cam", (4, 5), "uint8", scale=1 / 256)), act_dim=2,
               act_buf_len=2)
MLP_SPEC = ObsSpec((Component("pos", (2,), history=3),), act_dim=2, act_buf_len=2)


class CounterEnv:
    """rtgym-style observations `(pos history, cam, *last actions)`; pos = [episode, t]; reward rewards action ~ 0.5."""

    def __init__(self, spec: ObsSpec = SPEC, length: int = 7, delay: float = 0.0):
        self.spec, self.length, self.episode, self.t, self.delay = spec, length, -1, 0, delay
        self.actions: list[np.ndarray] = []

    def _obs(self) -> tuple:
        frame = np.array([self.episode, self.t], np.float32)
        self.hist = np.concatenate([self.hist[1:], frame[None]]) if self.t else np.repeat(frame[None], 3, 0)
        parts = [self.hist.copy()]
        if len(self.spec.components) > 1:
            parts.append(np.full((4, 5), self.t % 256, np.uint8))
        return (*parts, *self.act_buf)

    def reset(self, seed=None, options=None):
        self.episode, self.t = self.episode + 1, 0
        self.act_buf = deque([np.zeros(2, np.float32)] * 2, maxlen=2)
        return self._obs(), {}

    def step(self, action):
        action = np.asarray(action, np.float32)
        time.sleep(self.delay)
        assert action.shape == (2,) and np.all(np.abs(action) <= 1.0)
        self.actions.append(action)
        self.act_buf.append(action)
        self.t += 1
        reward = float(self.t) - float(np.abs(action - 0.5).sum())
        done = self.t >= self.length
        return self._obs(), reward, done, False, {"progress": self.t / self.length, "finished": done}


class FakeClient:
    """Records what the loop sends; hands out queued weights messages at chosen calls of `latest_weights`."""

    def __init__(self, weights_at: dict[int, tuple] | None = None):
        self.chunks: list[tuple[dict, dict]] = []
        self.stream = StreamCounter("fake")
        self.episodes: list[dict] = []
        self.weights_at = dict(weights_at or {})
        self.calls = 0

    def send_samples(self, arrays, policy_version=-1):
        meta = self.stream.stamp(len(arrays["reward"]), policy_version)  # as the real link stamps them
        self.chunks.append((meta, {k: np.array(v) for k, v in arrays.items()}))

    def send_episode(self, stats):
        self.episodes.append(dict(stats))

    def latest_weights(self):
        self.calls += 1
        return self.weights_at.pop(self.calls, None)


def mlp_weights(spec: ObsSpec, seed: int, hidden: int = 16) -> tuple[dict, dict]:
    """Weights of a small actor MLP for `spec` (no image), and their meta."""
    rng = np.random.default_rng(seed)
    fan_in = sum(int(np.prod(c.obs_shape)) for c in spec.components) + spec.act_buf_len * spec.act_dim
    shapes = {"hidden_0": (fan_in, hidden), "hidden_1": (hidden, hidden), "mu": (hidden, 2), "log_std": (hidden, 2)}
    weights = {}
    for name, shape in shapes.items():
        weights[f"{name}/kernel"] = rng.normal(0, 0.5, shape).astype(np.float32)
        weights[f"{name}/bias"] = rng.normal(0, 0.1, shape[1]).astype(np.float32)
    meta = {"arch": {"type": "mlp", "hidden": [hidden, hidden], "convs": [], "log_std_min": -20.0, "log_std_max": 2.0},
            "spec": spec.to_dict()}
    return weights, meta


def all_rows(chunks: list[tuple[dict, dict]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([a[k] for _, a in chunks]) for k in chunks[0][1]}


def test_every_row_is_sent_once_in_order_with_newest_frames_only() -> None:
    client = FakeClient()
    env = CounterEnv(length=7)
    rollout = Rollout(env, SPEC, client, seed=0, chunk_rows=4, chunk_seconds=60.0)
    stats = rollout.run(episodes=3)
    metas = [m for m, _ in client.chunks]
    assert [m["seq"] for m in metas] == list(range(len(metas)))
    sizes = [len(a["reward"]) for _, a in client.chunks]
    assert [m["step0"] for m in metas] == list(np.cumsum([0, *sizes[:-1]]))
    assert all(m["policy_version"] == -1 for m in metas)
    rows = all_rows(client.chunks)
    assert rows["obs.pos"].shape == (3 * 8, 2) and rows["obs.cam"].shape == (24, 4, 5) and rows["obs.cam"].dtype == np.uint8
    expected = np.array([[e, t] for e in range(3) for t in range(8)], np.float32)
    np.testing.assert_array_equal(rows["obs.pos"], expected)  # newest frame only, each row once, in order
    np.testing.assert_array_equal(rows["obs.cam"][:, 0, 0], expected[:, 1])
    np.testing.assert_array_equal(rows["first"], expected[:, 1] == 0)
    np.testing.assert_array_equal(rows["terminated"], expected[:, 1] == 7)
    assert not rows["truncated"].any()
    acts = rows["action"][~rows["first"]]
    np.testing.assert_array_equal(acts, np.stack(env.actions))
    assert not rows["action"][rows["first"]].any() and not rows["reward"][rows["first"]].any()
    np.testing.assert_allclose(rows["reward"][~rows["first"]], np.tile(np.arange(1, 8), 3) - np.abs(acts - 0.5).sum(1))
    # episodes end on a chunk boundary, stats reach the client
    assert [int(a["first"][0]) for _, a in client.chunks if a["first"].any()] == [1, 1, 1]
    assert client.episodes == stats and [s["length"] for s in stats] == [7, 7, 7]
    assert stats[0]["progress"] == 1.0 and stats[0]["finished"] is True
    np.testing.assert_allclose(stats[1]["return"], rows["reward"][8:16].sum(), rtol=1e-5)
    for key in ("mean_step_s", "max_step_s", "late_steps", "inference_p50_ms", "inference_max_ms", "policy_version"):
        assert key in stats[0]


def test_episodes_are_truncated_at_the_sample_limit() -> None:
    client = FakeClient()
    stats = Rollout(CounterEnv(length=100), SPEC, client, max_steps=5).run(episodes=2)
    rows = all_rows(client.chunks)
    assert [s["length"] for s in stats] == [5, 5] and len(rows["first"]) == 12
    np.testing.assert_array_equal(np.flatnonzero(rows["truncated"]), [5, 11])
    assert not rows["terminated"].any()


class PacedClient(FakeClient):
    """Grants `grants` steps in turn; records how many rows had been sent each time the loop asked for more."""

    def __init__(self, grants: list[int]):
        super().__init__()
        self.grants, self.rows_when_asked = list(grants), []

    def acquire_steps(self, stop):
        self.rows_when_asked.append(sum(len(a["reward"]) for _, a in self.chunks))
        if not self.grants:
            stop.set()
            return 0
        return self.grants.pop(0)


def test_a_paced_loop_takes_exactly_the_steps_granted_and_sends_its_rows_before_waiting() -> None:
    client = PacedClient([3, 4, 2])
    env = CounterEnv(length=100)
    stats = Rollout(env, SPEC, client, paced=True, chunk_seconds=60.0).run(episodes=5)
    assert stats == []  # 9 rows: one reset and 8 steps, then no more credit: the episode never ended
    assert len(env.actions) == 8 and len(all_rows(client.chunks)["reward"]) == 9
    assert client.rows_when_asked == [0, 3, 7, 9]  # every granted row left before the loop waited for more


def test_chunks_are_cut_by_time_and_by_size() -> None:
    writer = ChunkWriter(MLP_SPEC, max_rows=3)
    obs = (np.zeros((3, 2)), np.zeros(2), np.zeros(2))
    assert writer.flush() is None
    assert [writer.add(obs, None if i == 0 else np.ones(2), 1.0, False, False, 5) for i in range(3)] == [False, False, True]
    arrays, version = writer.flush()
    assert version == 5 and len(arrays["reward"]) == 3
    client = FakeClient()
    Rollout(CounterEnv(length=3), SPEC, client, chunk_seconds=0.0).run(episodes=1)
    assert [len(a["reward"]) for _, a in client.chunks] == [1, 1, 1, 1]  # a time limit of 0: one row per chunk


def test_weights_swap_between_steps_and_bad_weights_are_skipped(caplog) -> None:
    good, meta = mlp_weights(MLP_SPEC, seed=1)
    bad = {**good, "mu/kernel": good["mu/kernel"][:3]}
    malformed = {**meta, "arch": {**meta["arch"], "hidden": None}}
    client = FakeClient({3: (5, good, meta), 12: (6, bad, meta), 20: (7, good, malformed), 28: ("v8", good, meta)})
    env = CounterEnv(MLP_SPEC, length=40, delay=0.002)  # time for the helper thread to build each policy
    rollout = Rollout(env, MLP_SPEC, client, deterministic=True, chunk_rows=2, chunk_seconds=60.0)
    (stats,) = rollout.run(episodes=1)
    versions = [m["policy_version"] for m, _ in client.chunks]
    assert versions[0] == -1 and versions[-1] == 5 and versions == sorted(versions)
    assert stats["policy_version"] == 5
    logs = [r.getMessage() for r in caplog.records if r.name == "tmrlx.actor"]
    assert any("ignoring weights" in line and "mu/kernel" in line for line in logs)
    assert any("ignoring weights: weights meta 'arch.hidden' is None" in line for line in logs)
    assert any("ignoring malformed weights (ValueError" in line for line in logs)
    # once swapped in, the actions are the new policy's deterministic ones
    policy = Policy(good, meta, MLP_SPEC)
    rows = all_rows(client.chunks)
    swapped = np.flatnonzero(np.repeat(versions, 2) == 5)[0]
    env2 = CounterEnv(MLP_SPEC, length=40)
    obs, _ = env2.reset()
    for k in range(1, 41):
        a = policy.act(obs)
        if k > swapped:
            np.testing.assert_allclose(rows["action"][k], a, atol=1e-6)
        obs = env2.step(rows["action"][k])[0]


def test_test_mode_is_deterministic_and_sends_nothing() -> None:
    weights, meta = mlp_weights(MLP_SPEC, seed=2)
    returns = []
    for seed in (0, 1):
        client = FakeClient()
        policy = Policy(weights, meta, MLP_SPEC, version=9)
        stats = Rollout(CounterEnv(MLP_SPEC, 6), MLP_SPEC, client, mode="test", policy=policy, seed=seed).run(episodes=2)
        assert client.chunks == [] and client.episodes == []
        returns.append([s["return"] for s in stats])
        assert stats[0]["policy_version"] == 9 and stats[0]["mode"] == "test"
    assert returns[0] == returns[1]


def test_an_actor_runs_a_deterministic_test_episode_after_every_k_training_episodes_and_sends_only_its_stats() -> None:
    """TMRL's test_episode_interval: tanh(mu) of one policy version, reported as mode "test", its rows never sent
    (so they never train; see actor.rollout)."""
    weights, meta = mlp_weights(MLP_SPEC, seed=7)
    weights = {k: v * 0.2 for k, v in weights.items()}  # small mu: tanh does not saturate, noise always shows
    policy = Policy(weights, meta, MLP_SPEC, version=3)
    client, env = FakeClient(), CounterEnv(MLP_SPEC, length=5)
    calls: list[int] = []  # the client's latest_weights calls when each episode ended
    stats = Rollout(env, MLP_SPEC, client, policy=policy, seed=0, test_interval=2, chunk_rows=4, chunk_seconds=60.0).run(
        episodes=7, on_episode=lambda s: calls.append(client.calls))
    modes = [s["mode"] for s in stats]
    assert modes == ["actor", "actor", "test", "actor", "actor", "test", "actor"]
    assert client.episodes == stats  # test episodes are reported, beside the training ones
    # weights are looked at once before a test episode, never during it (one policy version per test episode)
    assert np.diff([0, *calls]).tolist() == [5, 5, 1, 5, 5, 1, 5]
    rows = all_rows(client.chunks)
    assert len(rows["reward"]) == 5 * 6  # the rows of the 5 training episodes only: reset + 5 steps each
    np.testing.assert_array_equal(np.unique(rows["obs.pos"][:, 0]), [0, 1, 3, 4, 6])  # env episodes 2 and 5 were tests
    assert [int(a["first"][0]) for _, a in client.chunks if a["first"].any()] == [1] * 5
    # test episodes act with tanh(mu), training episodes with noise: replay each episode's actions on a fresh env
    for episode, s in enumerate(stats):
        replay = CounterEnv(MLP_SPEC, length=5)
        replay.episode = episode - 1
        obs, _ = replay.reset()
        actions = env.actions[5 * episode: 5 * episode + 5]
        deterministic = []
        for a in actions:
            mu, _ = policy.heads({k: v[None] for k, v in MLP_SPEC.split(obs).items()})
            deterministic.append(np.allclose(a, np.tanh(mu[0]), atol=1e-6))
            obs = replay.step(a)[0]
        assert all(deterministic) if s["mode"] == "test" else not any(deterministic)
        assert s["policy_version"] == 3 and s["length"] == 5


def test_test_episodes_wait_for_a_policy_and_take_no_step_credit() -> None:
    # before the first weights there is nothing to test: the actor keeps to training episodes
    stats = Rollout(CounterEnv(MLP_SPEC, 3), MLP_SPEC, FakeClient(), test_interval=1).run(episodes=3)
    assert [s["mode"] for s in stats] == ["actor"] * 3
    # paced: step credit is granted per sample, so a test episode (no samples) takes none
    weights, meta = mlp_weights(MLP_SPEC, seed=8)
    client = PacedClient([6, 6])  # exactly the two training episodes' rows: reset + 5 steps each
    stats = Rollout(CounterEnv(MLP_SPEC, 5), MLP_SPEC, client, policy=Policy(weights, meta, MLP_SPEC), paced=True,
                    test_interval=1, chunk_seconds=60.0).run(episodes=4)
    assert [s["mode"] for s in stats] == ["actor", "test", "actor", "test"]
    assert client.rows_when_asked == [0, 6] and len(all_rows(client.chunks)["reward"]) == 12
    for bad, match in ((-1, "expected an integer >= 0"), (1.5, "expected an integer >= 0"), (True, "expected an integer")):
        with pytest.raises(ValueError, match=match):
            Rollout(CounterEnv(MLP_SPEC), MLP_SPEC, None, test_interval=bad)
    with pytest.raises(ValueError, match="test episodes are for actors, not expert mode"):
        Rollout(CounterEnv(MLP_SPEC), MLP_SPEC, None, mode="expert", policy=Policy(weights, meta, MLP_SPEC), test_interval=2)


def test_expert_mode_sends_samples_and_ignores_weight_updates() -> None:
    weights, meta = mlp_weights(MLP_SPEC, seed=3)
    other, _ = mlp_weights(MLP_SPEC, seed=4)
    client = FakeClient({k: (50 + k, other, meta) for k in range(1, 20)})
    expert = Policy(weights, meta, MLP_SPEC, version=11)
    stats = Rollout(CounterEnv(MLP_SPEC, 8), MLP_SPEC, client, mode="expert", policy=expert).run(episodes=2)
    assert client.calls == 0 and {m["policy_version"] for m, _ in client.chunks} == {11}
    assert len(all_rows(client.chunks)["first"]) == 18 and [s["policy_version"] for s in client.episodes] == [11, 11]
    assert stats[0]["mode"] == "expert"
    with pytest.raises(ValueError, match="expert mode needs"):
        Rollout(CounterEnv(MLP_SPEC), MLP_SPEC, client, mode="expert")


def test_slow_inference_is_reported(caplog) -> None:
    weights, meta = mlp_weights(MLP_SPEC, seed=5)

    class SlowPolicy(Policy):
        def act(self, obs, eps=None):
            time.sleep(0.003)
            return super().act(obs, eps)

    stats = Rollout(CounterEnv(MLP_SPEC, 4), MLP_SPEC, None, mode="test", policy=SlowPolicy(weights, meta),
                    time_step=0.004).run(episodes=1)
    assert stats[0]["inference_p50_ms"] >= 3.0
    assert any("more than a quarter of the 4 ms time step" in r.getMessage() for r in caplog.records if r.name == "tmrlx.actor")


class TickInterface(RealTimeGymInterface):
    """A real-time rtgym interface whose observation is a step counter."""

    def __init__(self):
        self.t = 0

    def get_observation_space(self):
        return spaces.Tuple((spaces.Box(-np.inf, np.inf, (2,), np.float32),))

    def get_action_space(self):
        return spaces.Box(-1.0, 1.0, (2,), np.float32)

    def get_default_action(self):
        return np.zeros(2, np.float32)

    def send_control(self, control):
        pass

    def reset(self, seed=None, options=None):
        self.t = 0
        return [np.zeros(2, np.float32)], {}

    def get_obs_rew_terminated_info(self):
        self.t += 1
        return [np.array([0, self.t], np.float32)], 1.0, self.t >= 40, {}


@pytest.mark.slow
def test_weights_arriving_mid_episode_cause_no_late_time_step() -> None:
    """20 Hz rtgym clock; a 1024-wide policy is built and swapped in while stepping: no step overruns."""
    spec = ObsSpec((Component("obs0", (2,)),), act_dim=2, act_buf_len=2)
    weights, meta = mlp_weights(spec, seed=6, hidden=1024)
    client = FakeClient({10: (1, weights, meta), 20: (2, weights, meta)})
    config = {**DEFAULT_CONFIG_DICT, "interface": TickInterface, "time_step_duration": 0.05, "start_obs_capture": 0.05,
              "act_buf_len": 2, "ep_max_length": 1000}
    env = gymnasium.make("real-time-gym-v1", config=config, disable_env_checker=True)
    try:
        (stats,) = Rollout(env, spec, client, time_step=0.05, chunk_seconds=0.25).run(episodes=1)
    finally:
        env.unwrapped.wait()
        env.close()
    assert stats["policy_version"] == 2 and stats["length"] == 40
    assert stats["late_steps"] == 0, stats
    assert 0.04 <= stats["mean_step_s"] <= 0.06


def test_action_noise_is_the_generator_stream_drawn_in_blocks() -> None:
    noise = NoiseBlock(np.random.default_rng(4), act_dim=2, size=3)
    drawn = np.stack([noise.next().copy() for _ in range(7)])
    expected = np.random.default_rng(4).standard_normal((9, 2), dtype=np.float32)[:7]
    np.testing.assert_array_equal(drawn, expected)

"""The real-time loop (TMRL's `RolloutWorker`): act, step, send only what is new, swap weights between steps.

Nothing on the per-step path may wait on the network: `client.send_samples` only enqueues (the
link's background thread sends, with a bounded queue), new weights are turned into a
`Policy` on a helper thread and swapped in between two steps, and a chunk of rows is handed
over every `CHUNK_SECONDS` (10 steps at TMRL's 20 Hz; 0.5 s keeps the learner fed without
per-step messages) or `CHUNK_MAX_ROWS` rows (a lockstep simulator runs faster than real time),
and at every episode end. A paced loop (a lockstep environment, which can wait) takes each step on
the learner's sample credit (`acquire_steps`), sending its partial chunk before it waits.

Test episodes (TMRL's `test_episode_interval`): an actor runs one after every `test_interval` training
episodes, with the deterministic action `tanh(mu)` of one policy version (weights are swapped in only
before it starts), and reports it with `mode: "test"`. As in TMRL's `RolloutWorker.run_episode`
(`collect_samples=False`), its rows are not sent, so they never train: the replay memory holds only
what the exploring policy did, the learner's sample counts and update-per-sample ratio stay those of
training, and a paced loop takes no step credit for them (credit is what the learner grants per sample).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

import numpy as np
from threadpoolctl import threadpool_limits
from tmrlx.actor.envs.realtime import Stopped
from tmrlx.actor.policy import Policy, prime_blas
from tmrlx.common.chunks import ChunkSchema
from tmrlx.common.specs import ObsSpec
from tmrlx.common.weights import WeightsError

CHUNK_SECONDS = 0.5
CHUNK_MAX_ROWS = 256
LATE_TOLERANCE = 0.5  # a step is late when it lasts more than 1.5 time steps (rtgym then breaks its elastic clock)
INFERENCE_BUDGET = 0.25  # warn when inference takes more than this fraction of a time step
log = logging.getLogger("tmrlx.actor")


class ActorLink(Protocol):
    """What the loop needs from `tmrlx.actor.link.ActorClient` (a fake one in tests)."""

    def send_samples(self, arrays: dict[str, np.ndarray], policy_version: int = -1) -> object: ...

    def send_episode(self, stats: dict) -> None: ...

    def latest_weights(self) -> tuple[int, dict[str, np.ndarray], dict] | None: ...

    def acquire_steps(self, stop: threading.Event) -> int: ...


class ChunkWriter:
    """Columnar rows of one actor stream (the `ChunkSchema`), cut into chunks; the link stamps their counters."""

    def __init__(self, spec: ObsSpec, max_rows: int = CHUNK_MAX_ROWS):
        self.spec, self.schema, self.max_rows = spec, ChunkSchema.of(spec), max_rows
        self.version = -1
        self._new()

    def _new(self) -> None:
        self.cols = self.schema.empty(self.max_rows)
        self.n = 0

    def add(self, obs: Any, action: np.ndarray | None, reward: float, terminated: bool, truncated: bool,
            version: int) -> bool:
        """One row (`action is None`: the observation `reset()` returned); True when the chunk is full."""
        if self.n == 0:
            self.version = version
        k = self.n
        for name, frame in self.spec.newest(obs).items():
            self.cols[f"obs.{name}"][k] = frame
        if action is not None:
            self.cols["action"][k] = action
        self.cols["reward"][k] = reward
        self.cols["terminated"][k] = terminated
        self.cols["truncated"][k] = truncated
        self.cols["first"][k] = action is None
        self.n += 1
        return self.n >= self.max_rows

    def flush(self) -> tuple[dict[str, np.ndarray], int] | None:
        """The pending rows and the policy version of their first row, or None; the arrays are handed over."""
        if self.n == 0:
            return None
        arrays = {k: v[:self.n] for k, v in self.cols.items()}
        self._new()
        return arrays, self.version


class NoiseBlock:
    """N(0, 1) action noise drawn a block at a time: one generator call per `size` steps, not per step."""

    def __init__(self, rng: np.random.Generator, act_dim: int, size: int = 1024):
        self.rng, self.shape = rng, (size, act_dim)
        self.i = size
        self.block = np.empty(self.shape, np.float32)

    def next(self) -> np.ndarray:
        if self.i == self.shape[0]:
            self.rng.standard_normal(self.shape, dtype=np.float32, out=self.block)
            self.i = 0
        self.i += 1
        return self.block[self.i - 1]


class WeightsFollower:
    """Builds a `Policy` from each weights message on a helper thread; `ready()` hands it over between steps."""

    def __init__(self, spec: ObsSpec, threads: int | None = None):
        self.spec, self.threads = spec, threads
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="tmrlx-weights")
        self._pending: Future | None = None
        self._queued: tuple[int, dict, dict] | None = None

    def offer(self, message: tuple[int, dict, dict] | None) -> None:
        if message is not None:
            self._queued = message  # a newer message replaces one not yet started
        if self._queued is not None and self._pending is None:
            version, arrays, meta = self._queued
            self._queued = None
            self._pending = self._pool.submit(Policy, arrays, meta, self.spec, version, self.threads)

    def ready(self) -> Policy | None:
        """The newly built policy if one finished since the last call (bad weights are reported and skipped)."""
        fut = self._pending
        if fut is None or not fut.done():
            return None
        self._pending = None
        try:
            return fut.result()
        except WeightsError as e:
            log.warning("ignoring weights: %s", e)
        except Exception as e:  # a malformed message off the network must never stop the real-time loop
            log.warning("ignoring malformed weights (%s: %s)", type(e).__name__, e)
        return None

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class Rollout:
    """Runs episodes of `env` with the current policy; what it sends and follows depends on the mode.

    - actor: stochastic policy (`deterministic`: tanh(mu)), follows the broker's weights, sends samples and
      episode stats; with `test_interval` K > 0, a test episode after every K training episodes (once a policy
      exists: before the first weights there is nothing to test);
    - expert: a fixed `policy` (weights updates ignored), sends samples and episode stats;
    - test: every episode is a test episode; follows weights (between episodes) when `client` is given, sends
      nothing.
    Until a policy exists (an actor before the first weights) actions are uniform in [-1, 1].
    """

    def __init__(self, env: Any, spec: ObsSpec, client: ActorLink | None, *, mode: str = "actor",
                 policy: Policy | None = None, max_steps: int = 1000, time_step: float = 0.05,
                 deterministic: bool = False, seed: int | None = None, session: str | None = None,
                 chunk_seconds: float = CHUNK_SECONDS, chunk_rows: int = CHUNK_MAX_ROWS, policy_threads: int | None = None,
                 paced: bool = False, test_interval: int = 0):
        if mode not in ("actor", "expert", "test"):
            raise ValueError(f"mode is {mode!r}: expected 'actor', 'expert' or 'test'")
        if mode == "expert" and policy is None:
            raise ValueError("expert mode needs a fixed policy (weights file)")
        if isinstance(test_interval, bool) or not isinstance(test_interval, int) or test_interval < 0:
            raise ValueError(f"test_interval is {test_interval!r}: expected an integer >= 0 (0: no test episodes)")
        if test_interval and mode != "actor":
            raise ValueError(f"test episodes are for actors, not {mode} mode (as in TMRL, experts run none)")
        self.env, self.spec, self.client, self.mode = env, spec, client, mode
        self.policy = policy
        self.max_steps, self.time_step = int(max_steps), float(time_step)
        self.deterministic = deterministic
        self.sender = client if mode != "test" else None  # where samples and episode statistics go
        self.paced = paced and self.sender is not None
        self.test_interval = test_interval
        self._since_test = 0  # training episodes since the last test episode
        self._collecting = False  # this episode's rows are sent (and, paced, take step credit)
        self._budget = 0  # steps the learner allowed and this loop has not taken yet
        self.rng = np.random.default_rng(seed)
        self.noise = NoiseBlock(self.rng, spec.act_dim)
        self.seed = seed
        self.session = session or secrets.token_hex(8)
        self.writer = ChunkWriter(spec, chunk_rows)
        self.chunk_seconds = chunk_seconds
        follow = mode != "expert" and client is not None
        self.follower = WeightsFollower(spec, policy_threads) if follow else None
        self.episodes = 0
        self._chunk_t0 = 0.0

    @property
    def version(self) -> int:
        return self.policy.version if self.policy is not None else -1

    def run(self, episodes: int | None = None, stop: threading.Event | None = None,
            on_episode: Callable[[dict], None] | None = None) -> list[dict]:
        """Episodes until `episodes` are done or `stop` is set (then the partial chunk is still sent)."""
        stop = stop or threading.Event()
        results: list[dict] = []
        # one BLAS thread: an OpenBLAS thread that spins for work steals the CPU from rtgym's time-step
        # thread and from the game (measured: late steps with 2 BLAS threads on a loaded 2-core box);
        # the CNN policy uses a second core its own way (see actor.policy)
        prime_blas()
        limits = threadpool_limits(1, user_api="blas")
        try:
            while (episodes is None or len(results) < episodes) and not stop.is_set():
                test = self._test_due()
                stats = self.episode(stop, test)
                if stats is None and self.paced and not test and not stop.is_set():
                    break  # no step credit will come: the link was refused for good or closed
                if stats is not None:
                    self._since_test = 0 if test else self._since_test + 1
                    results.append(stats)
                    if on_episode is not None:
                        on_episode(stats)
        finally:
            limits.restore_original_limits()
            self._flush()
            if self.follower is not None:
                self.follower.close()
        return results

    def wait_for_policy(self, stop: threading.Event, poll_s: float = 0.05) -> bool:
        """Block until the first weights are in (test mode without a weights file); False if stopped or refused."""
        while self.policy is None and not stop.is_set() and not getattr(self.client, "error", None):
            self._swap_weights()
            stop.wait(poll_s)
        return self.policy is not None

    def _test_due(self) -> bool:
        """A test episode next: every episode in test mode, an actor's after `test_interval` training episodes."""
        if self.mode != "test" and not (self.test_interval and self._since_test >= self.test_interval):
            return False
        self._swap_weights()  # a test episode runs the newest policy built so far, unchanged to its end
        return self.mode == "test" or self.policy is not None

    def episode(self, stop: threading.Event | None = None, test: bool | None = None) -> dict | None:
        """One episode (a test episode: `test`, default in test mode only); its statistics (None when `stop` cut it
        short). A test episode acts with tanh(mu) of the policy it starts with and sends only its statistics."""
        test = self.mode == "test" if test is None else test
        clock = time.perf_counter
        seed = None if self.seed is None or self.episodes else self.seed
        stop = stop or threading.Event()
        self._collecting = self.sender is not None and not test
        if not self._take_step(stop):
            return None
        try:
            obs, info = self.env.reset(seed=seed)
        except Stopped:  # stopped while the env waited for the game
            return None
        self._add(obs, None, 0.0, False, False)
        steps, inference, total = [], [], 0.0
        terminated = truncated = False
        last = clock()
        while not (terminated or truncated):
            if stop.is_set() or not self._take_step(stop):
                return None
            if not test:
                self._swap_weights()
            t0 = clock()
            action = self._act(obs, test or self.deterministic)
            inference.append(clock() - t0)
            obs, reward, terminated, truncated, info = self.env.step(action)
            now = clock()
            steps.append(now - last)
            last = now
            total += float(reward)
            truncated = bool(truncated) or (not terminated and len(steps) >= self.max_steps)
            self._add(obs, action, float(reward), bool(terminated), truncated)
        self._flush()
        self.episodes += 1
        stats = self._stats(total, steps, inference, info, "test" if test else self.mode)
        if self.sender is not None:
            self.sender.send_episode(stats)
        return stats

    def _take_step(self, stop: threading.Event) -> bool:
        """Paced: one step of the learner's credit, waiting for more when none is left; False when stopped."""
        if not self.paced or not self._collecting or self.sender is None:
            return True
        if self._budget == 0:
            self._flush()  # the learner may be waiting for exactly these rows
            self._budget = self.sender.acquire_steps(stop)
            if self._budget == 0:
                return False
        self._budget -= 1
        return True

    def _act(self, obs: Any, deterministic: bool) -> np.ndarray:
        if self.policy is None:
            return self.rng.uniform(-1.0, 1.0, self.spec.act_dim).astype(np.float32)
        return self.policy.act(obs, None if deterministic else self.noise.next())

    def _swap_weights(self) -> None:
        if self.follower is None or self.client is None:
            return
        self.follower.offer(self.client.latest_weights())
        new = self.follower.ready()
        if new is not None:
            if self.policy is None:
                log.info("first weights received (version %d, %s)", new.version, new.arch.type)
            self.policy = new

    def _add(self, obs: Any, action: np.ndarray | None, reward: float, terminated: bool, truncated: bool) -> None:
        if not self._collecting:
            return
        if self.writer.n == 0:
            self._chunk_t0 = time.perf_counter()
        full = self.writer.add(obs, action, reward, terminated, truncated, self.version)
        if full or time.perf_counter() - self._chunk_t0 >= self.chunk_seconds:
            self._flush()

    def _flush(self) -> None:
        if self.sender is not None and (chunk := self.writer.flush()) is not None:
            self.sender.send_samples(*chunk)

    def _stats(self, total: float, steps: list[float], inference: list[float], info: Mapping, mode: str) -> dict:
        dt = np.asarray(steps) if steps else np.zeros(1)
        inf_ms = np.asarray(inference) * 1e3 if inference else np.zeros(1)
        stats: dict[str, Any] = {
            "return": total, "length": len(steps), "mean_step_s": float(dt.mean()), "max_step_s": float(dt.max()),
            "late_steps": int((dt > self.time_step * (1.0 + LATE_TOLERANCE)).sum()),
            "inference_p50_ms": float(np.median(inf_ms)), "inference_max_ms": float(inf_ms.max()),
            "policy_version": self.version, "mode": mode, "session": self.session,
        }
        for key in ("progress", "finished"):
            if key in info:
                stats[key] = float(info[key]) if key == "progress" else bool(info[key])
        budget_ms = self.time_step * INFERENCE_BUDGET * 1e3
        if stats["inference_p50_ms"] > budget_ms:
            log.warning("inference takes %.2f ms per step (median), more than a quarter of the %.0f ms time step: "
                        "expect late time steps", stats["inference_p50_ms"], self.time_step * 1e3)
        return stats

"""Actor inference latency at batch 1: the NumPy policy against the learner's jitted Flax actor on CPU.

Both run the same weights (the learner's initialised actor, exported as it publishes them) on the
same raw observations, sampling an action as the training worker does (`tanh(mu + std * eps)`).
NumPy calls `Policy.act(obs, eps)` on an rtgym tuple with BLAS pinned to one thread, as the actor
loop does, with the policy's default threading (the CNN's big convs split over two threads when the
machine has 4+ cores; both settings are also reported for the CNN); JAX calls one jitted function
(normalise + actor + sample) on its default CPU thread pool and waits for the result; `tmrl_*` is
TMRL's worker (`actor.act_(obs)`, PyTorch, no_grad, torch's default threads) from `bench.tmrl_reference`,
when torch is installed. They are measured in alternating rounds so machine load hits all alike.
Medians and p99 in microseconds.

    python -m bench.actor [--rounds 5] [--calls 400]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable

import jax
import numpy as np
from threadpoolctl import threadpool_limits
from tmrlx.actor.policy import Policy, prime_blas
from tmrlx.actor.rollout import NoiseBlock, Rollout
from tmrlx.common import weights as contract
from tmrlx.common.config import Config
from tmrlx.common.kinds import spec_from_config
from tmrlx.common.specs import ObsSpec
from tmrlx.common.weights import Arch
from tmrlx.learner.networks import Actor, dummy_inputs, squashed_sample
from tmrlx.learner.publish import actor_weights

from bench import tmrl_reference as tmrl

CASES = {"mlp": "TM20LIDAR", "cnn": "TM20FULL"}


def observation(spec: ObsSpec, rng: np.random.Generator) -> tuple:
    """A raw rtgym observation: images uint8, other components at their natural magnitudes."""
    parts = []
    for c in spec.components:
        if c.dtype == "uint8":
            parts.append(rng.integers(0, 256, c.obs_shape, dtype=np.uint8))
        else:
            parts.append((rng.normal(0, 1, c.obs_shape) / c.scale).astype(np.float32))
    return (*parts, *rng.uniform(-1, 1, (spec.act_buf_len, spec.act_dim)).astype(np.float32))


def timed(fn: Callable[[], object], calls: int) -> list[float]:
    out = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def bench_case(name: str, rounds: int, calls: int) -> dict[str, float]:
    spec = spec_from_config(Config.from_dict({"ENV": {"RTGYM_INTERFACE": CASES[name]}}))
    arch = Arch.for_spec(spec)
    actor = Actor(spec, arch)
    params = jax.jit(actor.init)(jax.random.key(0), dummy_inputs(spec))
    weights, meta = actor_weights(params), contract.meta(spec, arch)
    t0 = time.perf_counter()
    policy = Policy(weights, meta, spec)
    build_ms = (time.perf_counter() - t0) * 1e3
    variants = {"serial": Policy(weights, meta, spec, threads=1), "split": Policy(weights, meta, spec, threads=2)}
    rng = np.random.default_rng(0)
    obs = observation(spec, rng)

    @jax.jit
    def jax_act(params, parts, key):
        mu, log_std = actor.apply(params, spec.normalise(parts))
        return squashed_sample(mu, log_std, jax.random.normal(key, mu.shape))[0]

    key = jax.random.key(1)

    def jax_call() -> None:
        nonlocal key
        key, sub = jax.random.split(key)
        parts = spec.split(obs)  # what a JAX worker would do per step: tuple -> batched arrays -> device
        batched = {k: v[None] for k, v in parts.items()}
        np.asarray(jax_act(params, batched, sub))

    noise = NoiseBlock(rng, spec.act_dim)
    numpy_call = lambda: policy.act(obs, noise.next())  # noqa: E731

    jax_call()  # compile
    numpy_call()
    tmrl_call = tmrl.worker_act(name == "cnn") if tmrl.available() else None
    np_t, jax_t, tmrl_t = [], [], []
    extra: dict[str, list[float]] = {k: [] for k in variants} if name == "cnn" else {}
    for _ in range(rounds):
        with threadpool_limits(1, user_api="blas"):  # as the actor loop runs it
            np_t += timed(numpy_call, calls)
            for k in extra:
                extra[k] += timed(lambda p=variants[k]: p.act(obs, noise.next()), calls)
        jax_t += timed(jax_call, calls)
        if tmrl_call is not None:
            tmrl_t += timed(tmrl_call, calls)
    us = lambda ts, q: float(np.percentile(ts, q) * 1e6)  # noqa: E731
    return {f"{name}_p50_us": us(np_t, 50), f"{name}_p99_us": us(np_t, 99),
            **{f"{name}_{k}_p50_us": us(ts, 50) for k, ts in extra.items()},
            **{f"{name}_{k}_p99_us": us(ts, 99) for k, ts in extra.items()},
            f"jax_{name}_p50_us": us(jax_t, 50), f"jax_{name}_p99_us": us(jax_t, 99), f"{name}_build_ms": build_ms,
            f"{name}_loop_step_us": loop_step_us(policy, obs, 4 * calls),
            **({f"tmrl_{name}_p50_us": us(tmrl_t, 50), f"tmrl_{name}_p99_us": us(tmrl_t, 99)} if tmrl_t else {})}


class StaticEnv:
    """An environment that costs nothing: what remains of a step is the actor loop and the policy."""

    def __init__(self, obs: tuple):
        self.obs = obs

    def reset(self, seed=None, options=None):
        return self.obs, {}

    def step(self, action):
        return self.obs, 0.0, False, False, {}


class NullLink:
    def send_samples(self, arrays, policy_version=-1):
        pass

    def send_episode(self, stats):
        pass

    def latest_weights(self):
        return None


def loop_step_us(policy: Policy, obs: tuple, steps: int = 2000) -> float:
    """Mean wall time of one actor-loop step (newest-frame extraction, chunking, weights poll, policy)."""
    rollout = Rollout(StaticEnv(obs), policy.spec, NullLink(), policy=policy, max_steps=steps)
    return rollout.run(episodes=1)[0]["mean_step_s"] * 1e6


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{model}, {os.cpu_count()} CPUs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=400)
    args = parser.parse_args()
    jax.config.update("jax_platforms", "cpu")
    prime_blas()  # as the actor loop does
    result: dict[str, object] = {"machine": machine(), "jax_device": str(jax.devices("cpu")[0])}
    if tmrl.available():
        result["tmrl_torch_threads"] = tmrl.threads()
    else:
        print(tmrl.INSTALL_HINT)
    for name in CASES:
        calls = args.calls if name == "mlp" else max(args.calls // 4, 20)
        r = bench_case(name, args.rounds, calls)
        split = "".join(f", {k} p50 {r[f'{name}_{k}_p50_us']:.1f}" for k in ("serial", "split") if f"{name}_{k}_p50_us" in r)
        print(f"{name}: numpy p50 {r[f'{name}_p50_us']:.1f} us, p99 {r[f'{name}_p99_us']:.1f} us{split} | "
              f"jax jit p50 {r[f'jax_{name}_p50_us']:.1f} us, p99 {r[f'jax_{name}_p99_us']:.1f} us | "
              f"policy build {r[f'{name}_build_ms']:.2f} ms | whole loop step {r[f'{name}_loop_step_us']:.1f} us"
              + (f" | TMRL torch p50 {r[f'tmrl_{name}_p50_us']:.1f} us" if tmrl.available() else ""), flush=True)
        result.update(r)
    print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in result.items()}))


if __name__ == "__main__":
    main()

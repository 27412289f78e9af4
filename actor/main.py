"""`tmrlx actor` (alias `worker`), `tmrlx test` and `tmrlx expert`: one process, one environment, one policy.

- `actor`: follows the broker's weights (uniform random actions until the first ones arrive),
  sends samples and episode statistics; `--test-episode-interval K` (TMRL's `test_episode_interval`,
  default 0: none) adds a deterministic test episode after every K training episodes, reported as
  `mode: "test"`, its samples not sent (see `actor.rollout`);
- `expert`: a fixed policy from `--weights` (or the newest `RUN_NAME.npz` / `RUN_NAME_<version>.npz`
  in the data folder's `weights/`), sends samples, ignores weight updates;
- `test`: the deterministic policy (from `--weights`/`weights/`, else the broker's latest, taken
  between episodes), sends nothing, prints each episode's return.

Actors are ZeroMQ clients that only connect out to the broker's `PORT`: they bind no port, so
any number of them share a machine and `LOCAL_PORT_WORKER` is unused. The loop pins BLAS to one
thread (see `actor.rollout.Rollout.run`).
`CUDA_INFERENCE` is accepted and ignored (the NumPy policy runs on the CPU).
"""

from __future__ import annotations

import argparse
import logging
import secrets
import signal
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from tmrlx.common import paths
from tmrlx.common.config import Config
from tmrlx.common.errors import ConfigError
from tmrlx.common.kinds import kind_of, spec_from_config

log = logging.getLogger("tmrlx.actor")
FLUSH_S = 5.0  # at exit, how long to wait for queued samples to reach the broker


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("--episodes", type=int, default=None, metavar="N",
                        help="stop after N episodes, test episodes included (default: run until interrupted)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the first reset and of the action noise")
    if command in ("test", "expert"):
        parser.add_argument("--weights", type=Path, default=None, metavar="PATH",
                            help="weights file (.npz) or folder holding them (default: the newest RUN_NAME.npz or "
                                 "RUN_NAME_<version>.npz in the data folder's weights/)")
    parser.add_argument("--policy-threads", type=int, default=None, choices=(1, 2),
                        help="threads for the CNN policy's convolutions (default: 2 with 4+ cores, else 1)")
    if command != "test":
        parser.add_argument("--deterministic", action="store_true", help="act with tanh(mu) instead of sampling")
    if command == "actor":
        parser.add_argument("--test-episode-interval", type=non_negative, default=0, metavar="K",
                            help="after every K training episodes, run one test episode: tanh(mu), reported as a "
                                 "test episode, its samples not sent (default 0: none, as in TMRL)")


def non_negative(text: str) -> int:
    """An integer >= 0 (argparse type)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative: expected an integer >= 0")
    return value


def policy_from_file(cfg: Config, args: argparse.Namespace, spec: Any) -> Any:
    """`--weights` (or the data folder's newest) as a Policy; None in `test` mode when there is none."""
    from tmrlx.actor.policy import load_policy
    from tmrlx.common.weights import find as find_weights

    path = find_weights(cfg.RUN_NAME, paths.weights_dir(), getattr(args, "weights", None))
    if path is None:
        if args.command == "expert":
            raise ConfigError(f"expert mode needs weights: pass --weights PATH or put {cfg.RUN_NAME}.npz "
                              f"in {paths.weights_dir()}")
        return None
    policy = load_policy(path, spec, args.policy_threads)
    log.info("policy from %s (version %d, %s)", path, policy.version, policy.arch.type)
    return policy


def _format(stats: dict) -> str:
    extra = "".join(f", {k} {stats[k]}" for k in ("progress", "finished") if k in stats)
    return (f"episode return {stats['return']:.3f}, length {stats['length']}, step mean {stats['mean_step_s'] * 1e3:.1f} ms"
            f" max {stats['max_step_s'] * 1e3:.1f} ms, late {stats['late_steps']}, inference p50 "
            f"{stats['inference_p50_ms']:.3f} ms, policy v{stats['policy_version']}{extra}")


def run(cfg: Config, args: argparse.Namespace) -> int:
    from tmrlx.actor.envs import make_env
    from tmrlx.actor.rollout import Rollout

    mode = args.command if args.command in ("test", "expert") else "actor"
    spec = spec_from_config(cfg)
    policy = policy_from_file(cfg, args, spec) if mode in ("test", "expert") else None
    if cfg.CUDA_INFERENCE:
        log.info("CUDA_INFERENCE is ignored: the NumPy policy runs on the CPU")
    session = secrets.token_hex(8)
    stop = threading.Event()
    # a lockstep environment can wait: it steps on the learner's sample credit (MAX_TRAINING_STEPS_PER_ENVIRONMENT_STEP)
    paced = mode != "test" and kind_of(cfg.ENV.RTGYM_INTERFACE).timing(cfg.ENV.RTGYM_CONFIG.interface_kwargs).lockstep
    with ExitStack() as stack:
        client = None
        if mode != "test" or policy is None:
            from tmrlx.actor.link import ActorClient

            client = ActorClient(cfg, spec, session=session, paced=paced)
            stack.callback(client.close)
            stack.callback(_flush, client, mode)
        env = make_env(cfg, stop)  # a wait for the game's data inside the env ends when `stop` is set
        stack.callback(env.close)
        stack.enter_context(_stop_on_signals(stop))
        rollout = Rollout(env, spec, client, mode=mode, policy=policy, max_steps=cfg.RW_MAX_SAMPLES_PER_EPISODE,
                          time_step=cfg.ENV.RTGYM_CONFIG.time_step_duration, seed=args.seed, session=session,
                          policy_threads=args.policy_threads, paced=paced,
                          deterministic=mode != "test" and args.deterministic,
                          test_interval=getattr(args, "test_episode_interval", 0))
        if policy is None and mode == "test":
            log.info("no weights file: waiting for the learner's weights from the broker")
            rollout.wait_for_policy(stop)

        def on_episode(stats: dict) -> None:
            test = "test " if mode == "actor" and stats["mode"] == "test" else ""
            print(f"tmrlx {mode}: {test}{_format(stats)}", flush=True)
            if client is not None and client.error:  # refused for good (password, layout)
                stop.set()

        done = rollout.run(args.episodes, stop, on_episode)
        if client is not None and client.error:
            log.error("the broker refused this actor: %s", client.error)
            return 1
        log.info("%d episodes%s", len(done), ", stopped by a signal" if stop.is_set() else "")
    return 0


def _flush(client: Any, mode: str, timeout: float = FLUSH_S) -> None:
    """Give the last chunks a moment to reach the learner (and the episode statistics the broker) before closing."""
    done = client.flush(timeout, acknowledged=True)
    stats = client.stats()
    if not done:
        log.warning("closing with %d chunks the learner has not acknowledged: lost with this process",
                    stats["queued"] + stats["held"])
    log.info("stream %s: rows produced %d, dropped before sending %d (queue full), chunks acknowledged by the learner "
             "%d, not acknowledged %d", client.session, stats["produced_rows"], stats["dropped_rows"], stats["acked"],
             stats["queued"] + stats["held"])


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT/SIGTERM set `stop` (the loop ends between two steps and sends its last chunk); a second SIGINT aborts."""
    def handle(signum: int, frame: Any) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()

    saved = {}
    if threading.current_thread() is threading.main_thread():
        saved = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)

"""How fast the demo learns (`just bench learning [--track T] [--minutes M]`): test episodes against the scripted driver.

Trains with the demo config (SAC, SIMLIDAR lockstep, 2 actors, each running a deterministic test episode
after every `tmrlx.demo.TEST_EPISODE_INTERVAL` training episodes) on track T (default easy) for M minutes
(default 20), in a temporary data folder, then reads the learner's episode log. The reference is the
scripted driver (`actor/envs/sim/driver.py`), driven in lockstep on the same track and config in this run:
its lap length in steps. Ends with one JSON line: track, minutes, first_solved_min (when the demo's "solved"
first held: 3 of the last 5 test episodes finished; null: never), test_finish_rate_last_half (finished /
test episodes over the second half of the run), best_test_lap_steps (the shortest finished test episode),
scripted_lap_steps, and the counts behind them.

`--env GYM:<id>` trains a Gymnasium env through the same pipeline instead (the demo's learner settings with
the changes in `GYM`) until the mean return of 10 training episodes reaches `--target-return`
(-150) or the learner holds `--samples` (8000): samples_to_target (null: not reached), best_mean_return.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from tmrlx.actor.envs import make_env
from tmrlx.actor.envs.sim.driver import scripted_action
from tmrlx.actor.envs.sim.track import track_names
from tmrlx.common.config import Config
from tmrlx.common.metrics import read_jsonl

from bench.roles import role_run
from tmrlx.demo import SOLVED_FINISHES, TEST_EPISODE_INTERVAL, actor_role, finishes


def scripted_lap_steps(cfg: Config) -> int | None:
    """Steps the scripted driver takes from reset to the finish line in this config's environment (None: it did not
    finish within the episode limit)."""
    env = make_env(cfg)
    try:
        world = env.interface.backends.controller.world
        env.reset()
        steps, done, info = 0, False, {"finished": False}
        while not done:
            _, _, terminated, truncated, info = env.step(np.array(scripted_action(world), np.float32))
            steps += 1
            done = terminated or truncated or steps >= cfg.RW_MAX_SAMPLES_PER_EPISODE
        return steps if info.get("finished") else None
    finally:
        env.close()


def finish_rates(tests: list[dict], start: float, minutes: float, windows: int = 10) -> list[float | None]:
    """Finished / test episodes in each tenth of the run (None: no test episode in it): does the policy hold?"""
    width = 60.0 * minutes / windows
    bins: list[list[bool]] = [[] for _ in range(windows)]
    for e in tests:
        bins[min(max(int((e["t"] - start) // width), 0), windows - 1)].append(bool(e.get("finished")))
    return [round(sum(b) / len(b), 2) if b else None for b in bins]


def summarise(episodes: list[dict], start: float, minutes: float) -> dict[str, Any]:
    """The figures of a run from the learner's episode log (`t`: when the learner received each episode)."""
    tests = [e for e in episodes if e.get("mode") == "test"]
    solved = next((e["t"] for i, e in enumerate(tests) if finishes(tests[:i + 1]) >= SOLVED_FINISHES), None)
    late = [e for e in tests if e["t"] >= start + 30.0 * minutes]
    laps = [e["length"] for e in tests if e.get("finished")]
    late_laps = [e["length"] for e in late if e.get("finished")]
    return {"first_solved_min": None if solved is None else round((solved - start) / 60.0, 2),
            "test_finish_rate_last_half": round(sum(bool(e.get("finished")) for e in late) / len(late), 3) if late else None,
            "best_test_lap_steps": min(laps) if laps else None,
            "median_test_lap_last_half": float(np.median(late_laps)) if late_laps else None,
            "finish_rate_by_window": finish_rates(tests, start, minutes), "test_episodes": len(tests),
            "test_episodes_last_half": len(late), "train_episodes": len(episodes) - len(tests),
            "samples": max((e["samples"] for e in episodes), default=0)}


def merge(a: dict, b: dict) -> dict:
    """`a` with `b`'s keys set, nested dicts merged."""
    out = dict(a)
    for k, v in b.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def last_round(rounds: list[dict]) -> dict[str, float]:
    """The learner's state at the end (Q, losses, entropy coefficient): what an experiment changed."""
    last = rounds[-1] if rounds else {}
    return {f"final_{k}": round(float(last[k]), 4) for k in ("alpha", "q", "loss_critic", "loss_actor") if k in last}


# For Gymnasium control tasks: CleanRL's SAC learning rates (policy 3e-4, Q 1e-3) and target entropy (-act_dim), 2
# updates per sample (TMRL's key; the limiter holds it with lockstep actors) after 500 samples; the rest (batch 256,
# gamma 0.99, polyak 0.995, the critics' LayerNorm) as in the demo config. docs/benchmarks.md has what each changed.
GYM = {"ALG": {"LR_ACTOR": 3e-4, "LR_CRITIC": 1e-3, "TARGET_ENTROPY": None},
       "MAX_TRAINING_STEPS_PER_ENVIRONMENT_STEP": 2.0, "ENVIRONMENT_STEPS_BEFORE_TRAINING": 500}


def gym_figures(episodes: list[dict], target: float, window: int = 10) -> dict[str, Any]:
    """When the mean return of the last `window` training episodes first reached `target` (samples then; None:
    never), and the best such mean."""
    returns, reached, best = [], None, -np.inf
    for e in (e for e in episodes if e.get("mode") != "test"):
        returns.append(e["return"])
        if len(returns) >= window:
            mean = float(np.mean(returns[-window:]))
            best = max(best, mean)
            if reached is None and mean >= target:
                reached = e["samples"]
    return {"samples_to_target": reached, "best_mean_return": round(best, 1) if returns[window - 1:] else None,
            "train_episodes": len(returns)}


def run_gym(args: argparse.Namespace) -> dict[str, Any]:
    """A Gymnasium env through the whole pipeline (broker, learner, actors) with the demo's learner settings: run
    until the learner has `--samples` samples, or the target return is reached, or `--minutes` pass."""
    env = {"RTGYM_INTERFACE": args.env, "RTGYM_CONFIG": {"ep_max_length": args.episode_steps,
                                                         "interface_kwargs": {"lockstep": True}}}
    overrides = merge(merge(GYM, {"ENV": env, "RW_MAX_SAMPLES_PER_EPISODE": args.episode_steps}), args.config)
    with role_run("learning", overrides, args.actors) as run:
        log = run.run_dir / "episodes.jsonl"

        def done() -> bool:
            episodes = read_jsonl(log) if log.exists() else []
            return (gym_figures(episodes, args.target_return)["samples_to_target"] is not None
                    or max((e["samples"] for e in episodes), default=0) >= args.samples)

        run.wait(60.0 * args.minutes, until=done)
        dead = run.stop()
        episodes = read_jsonl(log)
        if args.keep:
            run.keep(args.keep)
    if dead:
        raise SystemExit("children failed:\n" + "\n".join(dead))
    return {"env": args.env, "target_return": args.target_return, "max_samples": args.samples,
            **gym_figures(episodes, args.target_return), "samples": max((e["samples"] for e in episodes), default=0),
            "actors": args.actors, "config": args.config}


def run_track(args: argparse.Namespace) -> dict[str, Any]:
    overrides = merge(args.config, {"ENV": {"RTGYM_CONFIG": {"interface_kwargs": {"track": args.track}}}})
    with role_run("learning", overrides, args.actors, actor_role(TEST_EPISODE_INTERVAL)) as run:
        start = time.time()
        scripted = scripted_lap_steps(run.cfg)
        run.wait(60.0 * args.minutes - (time.time() - start))
        dead = run.stop()
        episodes = read_jsonl(run.run_dir / "episodes.jsonl")
        rounds = read_jsonl(run.run_dir / "metrics.jsonl")
        if args.keep:
            run.keep(args.keep)
    if dead:
        raise SystemExit("children failed:\n" + "\n".join(dead))
    out = {"track": args.track, "minutes": args.minutes, **summarise(episodes, start, args.minutes),
           "scripted_lap_steps": scripted, "updates": rounds[-1]["updates"] if rounds else 0, "actors": args.actors,
           "test_episode_interval": TEST_EPISODE_INTERVAL, "config": args.config, **last_round(rounds)}
    print(f"{out['test_episodes']} test and {out['train_episodes']} training episodes, {out['samples']} samples, "
          f"{out['updates']} updates in {args.minutes:g} min")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--track", default="easy", choices=track_names())
    parser.add_argument("--minutes", type=float, default=20.0, help="training time (with --env: at most)")
    parser.add_argument("--actors", type=int, default=2, help="actor processes (the demo's 2 by default)")
    parser.add_argument("--config", type=json.loads, default={}, metavar="JSON",
                        help='overrides of the demo config, e.g. \'{"ALG": {"TARGET_ENTROPY": -6}}\' (experiments)')
    parser.add_argument("--keep", type=Path, metavar="DIR", help="copy the run's logs, metrics and weights there (the "
                        "data folder is temporary)")
    parser.add_argument("--env", metavar="GYM:ID", help="a Gymnasium env instead of the simulator, e.g. GYM:Pendulum-v1")
    parser.add_argument("--target-return", type=float, default=-150.0, help="with --env: the mean return to reach")
    parser.add_argument("--samples", type=int, default=8000, help="with --env: the most samples to reach it in")
    parser.add_argument("--episode-steps", type=int, default=200, help="with --env: episode length (Pendulum's 200)")
    args = parser.parse_args()
    if args.env and not args.env.startswith("GYM:"):
        parser.error(f"--env {args.env}: expected GYM:<id>, e.g. GYM:Pendulum-v1")
    print(json.dumps(run_gym(args) if args.env else run_track(args)))


if __name__ == "__main__":
    main()

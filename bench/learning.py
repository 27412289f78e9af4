"""How fast the demo learns (`just bench learning [--track T] [--minutes M]`): test episodes against the scripted driver.

Trains with the demo config (SAC, SIMLIDAR lockstep, 2 actors, each running a deterministic test episode
after every `tmrlx.demo.TEST_EPISODE_INTERVAL` training episodes) on track T (default easy) for M minutes
(default 20), in a temporary data folder, then reads the learner's episode log. The reference is the
scripted driver (`actor/envs/sim/driver.py`), driven in lockstep on the same track and config in this run:
its lap length in steps. Ends with one JSON line: track, minutes, first_solved_min (when the demo's "solved"
first held: 3 of the last 5 test episodes finished; null: never), test_finish_rate_last_half (finished /
test episodes over the second half of the run), best_test_lap_steps (the shortest finished test episode),
scripted_lap_steps, and the counts behind them.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
from tmrlx.actor.envs import make_env
from tmrlx.actor.envs.sim.driver import scripted_action
from tmrlx.actor.envs.sim.track import track_names
from tmrlx.common.config import Config, load_config
from tmrlx.common.metrics import read_jsonl

from bench.roles import role_run
from tmrlx.demo import DEMO_CONFIG, SOLVED_FINISHES, TEST_EPISODE_INTERVAL, actor_role, finishes
from tmrlx.install import RESOURCES


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


def summarise(episodes: list[dict], start: float, minutes: float) -> dict[str, Any]:
    """The figures of a run from the learner's episode log (`t`: when the learner received each episode)."""
    tests = [e for e in episodes if e.get("mode") == "test"]
    solved = next((e["t"] for i, e in enumerate(tests) if finishes(tests[:i + 1]) >= SOLVED_FINISHES), None)
    late = [e for e in tests if e["t"] >= start + 30.0 * minutes]
    laps = [e["length"] for e in tests if e.get("finished")]
    return {"first_solved_min": None if solved is None else round((solved - start) / 60.0, 2),
            "test_finish_rate_last_half": round(sum(bool(e.get("finished")) for e in late) / len(late), 3) if late else None,
            "best_test_lap_steps": min(laps) if laps else None, "test_episodes": len(tests),
            "test_episodes_last_half": len(late), "train_episodes": len(episodes) - len(tests),
            "samples": max((e["samples"] for e in episodes), default=0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--track", default="easy", choices=track_names())
    parser.add_argument("--minutes", type=float, default=20.0, help="training time")
    parser.add_argument("--actors", type=int, default=2, help="actor processes (the demo's 2 by default)")
    args = parser.parse_args()
    kwargs = load_config(RESOURCES / DEMO_CONFIG).ENV.RTGYM_CONFIG.interface_kwargs  # replaced whole by an override
    overrides = {"ENV": {"RTGYM_CONFIG": {"interface_kwargs": {**kwargs, "track": args.track}}}}
    with role_run("learning", overrides, args.actors, actor_role(TEST_EPISODE_INTERVAL)) as run:
        start = time.time()
        scripted = scripted_lap_steps(run.cfg)
        run.wait(60.0 * args.minutes - (time.time() - start))
        dead = run.stop()
        episodes = read_jsonl(run.run_dir / "episodes.jsonl")
        rounds = read_jsonl(run.run_dir / "metrics.jsonl")
    if dead:
        raise SystemExit(f"children failed: {dead}")
    out = {"track": args.track, "minutes": args.minutes, **summarise(episodes, start, args.minutes),
           "scripted_lap_steps": scripted, "updates": rounds[-1]["updates"] if rounds else 0, "actors": args.actors,
           "test_episode_interval": TEST_EPISODE_INTERVAL}
    print(f"{out['test_episodes']} test and {out['train_episodes']} training episodes, {out['samples']} samples, "
          f"{out['updates']} updates in {args.minutes:g} min")
    print(json.dumps(out))


if __name__ == "__main__":
    main()

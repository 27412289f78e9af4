"""Play a kept run's weights back copy by copy (`just bench playback DIR [--every K] [--episodes E] [--first N]`):
when did the deterministic policy finish, and how did it leave the start line?

DIR is what `bench learning --keep DIR` kept (its `config.json` and `weights/`; run it with `SAVE_MODEL_EVERY`
to have a copy every so many rounds). Each copy drives E deterministic episodes (`tanh(mu)`, as test episodes)
in a fresh environment of the run's config, in lockstep on a simulator track, so every copy meets the same E
start poses (a seeded simulator jitters each respawn): the episodes' steps, whether they finished, and the
first N steering actions of the first (how a start-line swerve shows). Ends with one JSON line: copies,
episodes, finished (episodes that finished), best_lap_steps, median_lap_steps, first_failed_after_finishing
(the first copy that failed an episode after one had finished all of its own; null: none).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
from tmrlx.actor.envs import make_env
from tmrlx.actor.policy import Policy, load_policy
from tmrlx.common.config import Config


def copies(run: Path) -> list[tuple[int, Path]]:
    """(copy number, file) of the `SAVE_MODEL_EVERY` copies in `run/weights`, oldest first."""
    found = ((re.search(r"_(\d+)\.npz$", f.name), f) for f in (run / "weights").glob("*.npz"))
    return sorted((int(m.group(1)), f) for m, f in found if m)


def episode(env: Any, policy: Policy, cfg: Config, first: int) -> dict[str, Any]:
    """One deterministic episode of `policy`."""
    obs, _ = env.reset()
    steer, steps, done, ret, info = [], 0, False, 0.0, {}
    while not done:
        action = policy.act(obs)
        if steps < first:
            steer.append(float(action[-1]))
        obs, reward, terminated, truncated, info = env.step(action)
        ret += float(reward)
        steps += 1
        done = terminated or truncated or steps >= cfg.RW_MAX_SAMPLES_PER_EPISODE
    return {"steps": steps, "finished": bool(info.get("finished")), "return": round(ret, 2), "steer": steer}


def play(cfg: Config, weights: Path, episodes: int, first: int) -> list[dict[str, Any]]:
    """`episodes` deterministic episodes of the policy in `weights`, from a fresh environment's first start poses."""
    policy, env = load_policy(weights), make_env(cfg)
    try:
        return [episode(env, policy, cfg, first) for _ in range(episodes)]
    finally:
        env.close()


def summary(results: list[tuple[int, list[dict[str, Any]]]]) -> dict[str, Any]:
    laps = [r["steps"] for _, rs in results for r in rs if r["finished"]]
    held = [v for v, rs in results if all(r["finished"] for r in rs)]
    failed = next((v for v, _ in results if held and v > held[0] and v not in held), None)
    return {"copies": len(results), "episodes": sum(len(rs) for _, rs in results), "finished": len(laps),
            "best_lap_steps": min(laps) if laps else None, "median_lap_steps": float(np.median(laps)) if laps else None,
            "first_failed_after_finishing": failed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a folder kept by `bench learning --keep`")
    parser.add_argument("--every", type=int, default=1, metavar="K", help="play every K-th copy (default: all)")
    parser.add_argument("--episodes", type=int, default=1, metavar="E", help="episodes per copy (default 1)")
    parser.add_argument("--first", type=int, default=20, metavar="N", help="steering actions to show (default 20)")
    args = parser.parse_args()
    cfg = Config.from_dict(json.loads((args.run / "config.json").read_text()))
    found = copies(args.run)[::max(args.every, 1)]
    if not found:
        raise SystemExit(f"no weights copies in {args.run / 'weights'}: train with SAVE_MODEL_EVERY > 0 and --keep")
    results = []
    for version, path in found:
        rs = play(cfg, path, max(args.episodes, 1), args.first)
        results.append((version, rs))
        ends = " ".join(f"{r['steps']}{'' if r['finished'] else 'x'}" for r in rs)
        print(f"copy {version:5d}: {sum(r['finished'] for r in rs)}/{len(rs)} finished, steps {ends} (x: failed), "
              f"steering {' '.join(f'{s:+.1f}' for s in rs[0]['steer'])}", flush=True)
    print(json.dumps({"run": str(args.run), **summary(results)}))


if __name__ == "__main__":
    main()

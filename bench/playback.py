"""Play a kept run's weights back copy by copy (`just bench playback DIR [--every K] [--first N]`): when did the
deterministic policy finish, and how did it leave the start line?

DIR is what `bench learning --keep DIR` kept (its `config.json` and `weights/`; run it with `SAVE_MODEL_EVERY`
to have a copy every so many rounds). Each copy drives one deterministic episode (`tanh(mu)`, as a test episode)
in the run's environment, in lockstep on a simulator track: the episode's steps, whether it finished, and the
first N steering actions (how a start-line swerve shows). Ends with one JSON line: copies, finished (how many
finished), best_lap_steps, median_lap_steps, first_failed_after_finishing (the first copy that crashed after
one had finished; null: none).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
from tmrlx.actor.envs import make_env
from tmrlx.actor.policy import load_policy
from tmrlx.common.config import Config


def copies(run: Path) -> list[tuple[int, Path]]:
    """(copy number, file) of the `SAVE_MODEL_EVERY` copies in `run/weights`, oldest first."""
    found = ((re.search(r"_(\d+)\.npz$", f.name), f) for f in (run / "weights").glob("*.npz"))
    return sorted((int(m.group(1)), f) for m, f in found if m)


def episode(env: Any, weights: Path, cfg: Config, first: int) -> dict[str, Any]:
    """One deterministic episode of the policy in `weights`."""
    policy = load_policy(weights)
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


def summary(results: list[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
    laps = [r["steps"] for _, r in results if r["finished"]]
    first_finish = next((v for v, r in results if r["finished"]), None)
    failed = next((v for v, r in results if first_finish is not None and v > first_finish and not r["finished"]), None)
    return {"copies": len(results), "finished": len(laps), "best_lap_steps": min(laps) if laps else None,
            "median_lap_steps": float(np.median(laps)) if laps else None, "first_failed_after_finishing": failed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a folder kept by `bench learning --keep`")
    parser.add_argument("--every", type=int, default=1, metavar="K", help="play every K-th copy (default: all)")
    parser.add_argument("--first", type=int, default=20, metavar="N", help="steering actions to show (default 20)")
    args = parser.parse_args()
    cfg = Config.from_dict(json.loads((args.run / "config.json").read_text()))
    found = copies(args.run)[::max(args.every, 1)]
    if not found:
        raise SystemExit(f"no weights copies in {args.run / 'weights'}: train with SAVE_MODEL_EVERY > 0 and --keep")
    env = make_env(cfg)
    results = []
    try:
        for version, path in found:
            r = episode(env, path, cfg, args.first)
            results.append((version, r))
            print(f"copy {version:5d}: {r['steps']:4d} steps, {'finished' if r['finished'] else 'crashed '}, "
                  f"steering {' '.join(f'{s:+.1f}' for s in r['steer'])}", flush=True)
    finally:
        env.close()
    print(json.dumps({"run": str(args.run), **summary(results)}))


if __name__ == "__main__":
    main()

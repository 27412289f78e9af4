"""Updates per sample with lockstep actors (`just bench ratio [--actors N] [--seconds S] [--ratio R]`).

Runs the real roles as processes (broker, learner, N lockstep simulator actors; REDQ-SAC N10 M2 G20
on SIMLIDAR by default) with `MAX_TRAINING_STEPS_PER_ENVIRONMENT_STEP` R, and measures the ratio the
rate limiter achieves over the second half of the run: critic updates / samples between two round
records (as tmrlx counts updates). The reference is R itself: the target is R +- 10 %. Ends with one
JSON line: target_ratio, achieved_ratio, actors, samples_per_s, updates_per_s.
"""

from __future__ import annotations

import argparse
import json

from tmrlx.common.metrics import read_jsonl

from bench.roles import role_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=150.0, help="wall time of the whole run")
    parser.add_argument("--ratio", type=float, default=20.0, help="MAX_TRAINING_STEPS_PER_ENVIRONMENT_STEP")
    parser.add_argument("--algorithm", default="REDQSAC", choices=("SAC", "REDQSAC"))
    args = parser.parse_args()
    overrides = {"MAX_EPOCHS": 10_000, "MAX_TRAINING_STEPS_PER_ENVIRONMENT_STEP": args.ratio,
                 "ENVIRONMENT_STEPS_BEFORE_TRAINING": 256, "ROUNDS_PER_EPOCH": 10, "TRAINING_STEPS_PER_ROUND": 400,
                 "UPDATE_BUFFER_INTERVAL": 20, "UPDATE_MODEL_INTERVAL": 200, "ALG": {"ALGORITHM": args.algorithm}}
    with role_run("ratio", overrides, args.actors) as run:
        run.wait(args.seconds)
        dead = run.stop()
        rounds = [r for r in read_jsonl(run.run_dir / "metrics.jsonl") if r.get("updates")]
    if len(rounds) < 4:
        failed = "\n".join(dead) or "none"
        raise SystemExit(f"only {len(rounds)} training rounds in {args.seconds:g} s: give it more --seconds "
                         f"(children failed: {failed})")
    first, last = rounds[len(rounds) // 2], rounds[-1]
    du, ds, dt = last["updates"] - first["updates"], last["samples"] - first["samples"], last["t"] - first["t"]
    print(f"{len(rounds)} rounds; second half: {du} updates, {ds} samples in {dt:.1f} s")
    print(json.dumps({"target_ratio": args.ratio, "achieved_ratio": round(du / ds, 3) if ds else None,
                      "actors": args.actors, "algorithm": args.algorithm, "samples_per_s": round(ds / dt, 1),
                      "updates_per_s": round(du / dt, 1), "rounds_measured": len(rounds) - len(rounds) // 2}))


if __name__ == "__main__":
    main()

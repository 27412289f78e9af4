"""`tmrlx check-environment` and `tmrlx benchmark`: drive the configured environment and look at it.

check-environment steps the env with a driver (`scripted`: the simulator's scripted driver, also in the
emulated TrackMania, where it must finish a lap within `--steps` for the command to succeed;
`keyboard`: the arrow keys, TMRL style; `policy`: the current policy's deterministic action, from the data
folder's newest weights or `--weights`; `zero`/`random`), prints each step's reward, shows what the
model sees live in a window when a display is available (the lidar beams drawn on the screenshot, or the
image history; `view.LiveView`) and writes the same views as a PNG strip.
benchmark runs the same loop with rtgym's `benchmark` on and prints its time-step statistics.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from tmrlx.actor.envs import make_env
from tmrlx.actor.envs.interface import TrackInterface
from tmrlx.actor.envs.kinds import Driver, env_kind
from tmrlx.common import paths
from tmrlx.common.config import Config
from tmrlx.common.errors import ConfigError

DRIVERS = ("scripted", "keyboard", "policy", "zero", "random")


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("--driver", choices=DRIVERS, default=None,
                        help="who drives (default: scripted on a SIM interface, keyboard otherwise)")
    parser.add_argument("--steps", type=int, default=200 if command == "check-environment" else 1000,
                        help="time steps to run")
    parser.add_argument("--weights", type=Path, default=None, metavar="PATH",
                        help="with --driver policy: weights file or folder (default: newest RUN_NAME*.npz in weights/)")
    if command == "check-environment":
        parser.add_argument("--output", type=Path, default=None,
                            help="PNG strip to write (default: the data folder's logs/check-environment.png)")
        parser.add_argument("--every", type=int, default=10, help="put every N-th step in the strip")
        parser.add_argument("--no-window", action="store_true", help="no live window, even with a display")


def policy_driver(cfg: Config, weights: Path | None) -> Driver:
    """The deterministic policy (NumPy) from a weights file, as `tmrlx test` runs it."""
    from tmrlx.actor.policy import load_policy
    from tmrlx.common.kinds import spec_from_config
    from tmrlx.common.weights import find as find_weights

    path = find_weights(cfg.RUN_NAME, paths.weights_dir(), weights)
    if path is None:
        raise ConfigError(f"--driver policy needs weights: pass --weights PATH or train {cfg.RUN_NAME!r} first "
                          f"(looked for {cfg.RUN_NAME}*.npz in {paths.weights_dir()})")
    policy = load_policy(path, spec_from_config(cfg))
    print(f"driving with the policy from {path} (version {policy.version})")
    return policy.act


def make_driver(name: str, env, cfg: Config, weights: Path | None = None) -> Driver:
    dim = env.action_space.shape[0]
    if name == "zero":
        return lambda obs: np.zeros(dim, np.float32)
    if name == "random":
        rng = np.random.default_rng(0)
        return lambda obs: rng.uniform(-1, 1, dim).astype(np.float32)
    if name == "policy":
        return policy_driver(cfg, weights)
    if name == "scripted":
        scripted = env_kind(cfg).scripted
        if scripted is None or not hasattr(env, "interface"):
            raise ConfigError("--driver scripted needs a SIM* interface or an emulated TM20* one (it reads the simulated car)")
        return scripted(env)
    try:
        import keyboard
    except ImportError:
        raise ConfigError("--driver keyboard needs the 'keyboard' package (pip install 'tmrlx[tm]')") from None
    return lambda obs: np.array([keyboard.is_pressed("up"), keyboard.is_pressed("down"),
                             float(keyboard.is_pressed("right")) - float(keyboard.is_pressed("left"))], np.float32)


def view(env, obs: tuple) -> np.ndarray | None:
    """What the model sees at this step, as one BGR picture (None for non-track environments)."""
    iface = getattr(env, "interface", None)
    if not isinstance(iface, TrackInterface) or iface.last_frame is None:
        return None
    if iface.lidar is not None:
        img = np.ascontiguousarray(iface.last_frame[..., :3])
        scan = obs[iface.names.index("lidar")]
        for end in iface.lidar.endpoints(scan[-1] if scan.ndim == 2 else scan):
            cv2.line(img, iface.lidar.origin[::-1], end, (255, 0, 0), 1)
        return img
    images = obs[iface.names.index("images")]
    hist = images if iface.hist > 1 else images[None]
    return np.concatenate([cv2.cvtColor(t, cv2.COLOR_GRAY2BGR) if t.ndim == 2 else t for t in hist], axis=1)


def drive(env, driver: Driver, steps: int, on_step: Callable | None = None) -> list[float]:
    """Run `steps` time steps (resetting at episode ends); returns the episode returns."""
    obs, _ = env.reset()
    returns, total = [], 0.0
    for t in range(steps):
        obs, r, term, trunc, info = env.step(driver(obs))
        total += r
        if on_step is not None:
            on_step(t, obs, r, term, trunc, info)
        if term or trunc:
            returns.append(total)
            total = 0.0
            obs, _ = env.reset()
    return returns


def check_environment(cfg: Config, args: argparse.Namespace) -> int:
    from tmrlx.actor.envs.view import can_show, open_view

    env = make_env(cfg)
    kind = env_kind(cfg)
    driver_name = args.driver or kind.check_driver
    driver = make_driver(driver_name, env, cfg, getattr(args, "weights", None))
    frames: list[np.ndarray] = []
    live = open_view(f"tmrlx check-environment: {cfg.ENV.RTGYM_INTERFACE}") if can_show() and not args.no_window else None
    laps = 0

    def show(t, obs, r, term, trunc, info):
        nonlocal laps
        laps += bool(info.get("finished"))
        print(f"step {t:5d}  reward {r:+8.3f}  " + "  ".join(f"{k} {v}" for k, v in info.items())
              + ("  terminated" if term else "") + ("  truncated" if trunc else ""))
        picture = view(env, obs) if live is not None or t % args.every == 0 else None
        if picture is not None and live is not None:
            live.show(picture)
        if picture is not None and t % args.every == 0:
            frames.append(picture)

    try:
        returns = drive(env, driver, args.steps, show)
    finally:
        if live is not None:
            live.close()
    print(f"episode returns: {[round(x, 2) for x in returns]}" + (f", live view: {live.shown} frames" if live else ""))
    if frames:
        rows = [np.concatenate(frames[i:i + 5] + [np.zeros_like(frames[0])] * (5 - len(frames[i:i + 5])), axis=1)
                for i in range(0, len(frames), 5)]
        strip = np.concatenate(rows, axis=0)
        scale = cfg.ENV.IMG_SCALE_CHECK_ENV  # TMRL scales its display window by it; here the picture
        size = (max(1, round(strip.shape[1] * scale)), max(1, round(strip.shape[0] * scale)))
        out = args.output or paths.logs_dir() / "check-environment.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(out), cv2.resize(strip, size, interpolation=cv2.INTER_NEAREST) if scale != 1.0 else strip)
        print(f"wrote {len(frames)} views to {out}")
    env.close()
    if kind.lap_check and driver_name == "scripted" and not laps:
        print(f"no lap finished within {args.steps} steps: the rehearsal of the game path failed")
        return 1
    return 0


def summary(bench: dict) -> dict:
    """{phase: mean and average deviation (s)}: rtgym's running averages, or the same computed from a 'trace'."""
    if "clock" not in bench:  # benchmark_type 'polyak': (average, average deviation) per phase
        return {k: {"mean_s": v[0], "avg_dev_s": v[1]} for k, v in bench.items()}
    return {k: {"mean_s": float(np.mean(v)), "avg_dev_s": float(np.mean(np.abs(v - np.mean(v))))}
            for k, v in bench.get("deltas", {}).items() if len(v)}


def benchmark(cfg: Config, args: argparse.Namespace) -> int:
    cfg = cfg.replace({"ENV": {"RTGYM_CONFIG": {"benchmark": True}}})
    env = make_env(cfg)
    driver = make_driver(args.driver or ("scripted" if env_kind(cfg).scripted else "zero"), env, cfg,
                         getattr(args, "weights", None))
    drive(env, driver, args.steps)
    print(json.dumps(summary(env.benchmarks()), indent=2))
    env.close()
    return 0


def run(cfg: Config, args: argparse.Namespace) -> int:
    return benchmark(cfg, args) if args.command == "benchmark" else check_environment(cfg, args)

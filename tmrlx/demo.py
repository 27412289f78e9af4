"""`tmrlx demo`: a broker, a learner and two actors as separate processes on this machine.

Trains on the built-in simulator with the demo config (`resources/config_demo.json` of the data
folder), shows one live status line, stops when the agent finishes the track in 3 of the last 5
test episodes (the deterministic policy, one after every `--test-episode-interval` training episodes of
each actor; or after `--minutes`), and writes the learning curve PNG. Ctrl+C stops every process
cleanly (the learner checkpoints); running it again resumes. A child that dies is reported with
the end of its log and the others are stopped.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from tmrlx.actor.main import non_negative
from tmrlx.common import paths
from tmrlx.common.config import Config, load_config
from tmrlx.common.errors import ConfigError
from tmrlx.common.metrics import follow_jsonl, read_jsonl
from tmrlx.install import install

DEMO_CONFIG = "config_demo.json"
TEST_EPISODE_INTERVAL = 3  # the demo's actors: a test episode after every 3 training episodes
SOLVED_WINDOW = 5  # "solved": SOLVED_FINISHES of the last 5 test episodes crossed the finish line
SOLVED_FINISHES = 3
log = logging.getLogger("tmrlx")


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("--minutes", type=float, default=20.0, help="stop after this many minutes of training")
    parser.add_argument("--actors", type=int, default=2, help="number of actor processes")
    parser.add_argument("--until-solved", type=int, default=SOLVED_FINISHES, metavar="K",
                        help=f"stop once K of the last {SOLVED_WINDOW} test episodes crossed the finish line (0: never)")
    parser.add_argument("--test-episode-interval", type=non_negative, default=TEST_EPISODE_INTERVAL, metavar="K",
                        help="each actor runs a test episode (deterministic, not trained on) after every K training "
                             f"episodes (default {TEST_EPISODE_INTERVAL}; 0: none, then --until-solved must be 0)")


@dataclass
class Child:
    """One role process and the log file it writes to."""

    name: str
    proc: subprocess.Popen
    log_path: Path
    log: IO = field(repr=False)

    def tail(self, lines: int = 15) -> str:
        text = self.log_path.read_text(errors="replace").strip().splitlines()
        return "\n".join("    " + line for line in text[-lines:])


def demo_config(args: argparse.Namespace) -> Config:
    """The demo file (unless --config-file is given), then --config and individual flags on top."""
    from tmrlx.cli import config_from_args

    if args.config_file is None:
        install(quiet=True)
        args.config_file = paths.data_dir() / "resources" / DEMO_CONFIG
    cfg = config_from_args(args)
    if getattr(args, "key:PASSWORD", None) is None:  # never TMRL's well-known default, even on loopback
        cfg = cfg.replace({"PASSWORD": secrets.token_urlsafe(16)})
    return cfg


def role_argv(role: list[str], cfg_file: Path) -> list[str]:
    """The command line of one role process reading `cfg_file`."""
    return [sys.executable, "-m", "tmrlx", *role, "--config-file", str(cfg_file)]


def spawn(name: str, argv: list[str], run_dir: Path) -> Child:
    """Start `argv` in a session of its own, its output in `run_dir/<name>.log`."""
    log_path = run_dir / f"{name}.log"
    log = open(log_path, "a")  # noqa: SIM115 (closed by stop_in_order when the child is gone)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                            start_new_session=True)
    return Child(name, proc, log_path, log)


def stop_in_order(children: list[Child], timeout: float = 60.0) -> None:
    """SIGINT actors first, then the learner (it checkpoints), then the broker; kill stragglers."""
    for group in (("actor",), ("learner",), ("broker",)):
        batch = [c for c in children if c.name.startswith(group) and c.proc.poll() is None]
        for c in batch:
            c.proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + timeout
        for c in batch:
            try:
                c.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in %.0f s: killing it", c.name, timeout)
                c.proc.kill()
                c.proc.wait()
    for c in children:
        c.log.close()


def actor_role(test_interval: int) -> list[str]:
    """The command line of a demo actor."""
    return ["actor", "--test-episode-interval", str(test_interval)]


def finishes(episodes: list[dict], last: int = SOLVED_WINDOW) -> int:
    """How many of the `last` test episodes among `episodes` crossed the finish line."""
    tests = [e for e in episodes if e.get("mode") == "test"]
    return sum(bool(e.get("finished")) for e in tests[-last:])


class Progress:
    """Follows the learner's round metrics and episode log (training and test episodes); one status line."""

    def __init__(self, run_dir: Path):
        self.rounds_path = run_dir / "metrics.jsonl"
        self.episodes_path = run_dir / "episodes.jsonl"
        # Only this run's episodes count towards "solved" (a resumed run appends to the same log).
        self.offsets = [0, self.episodes_path.stat().st_size if self.episodes_path.exists() else 0]
        self.rounds: list[dict] = []
        self.episodes: list[dict] = []  # training episodes
        self.tests: list[dict] = []

    def poll(self) -> None:
        rounds, self.offsets[0] = follow_jsonl(self.rounds_path, self.offsets[0])
        self.rounds = (self.rounds + rounds)[-2:]
        eps, self.offsets[1] = follow_jsonl(self.episodes_path, self.offsets[1])
        for e in eps:
            (self.tests if e.get("mode") == "test" else self.episodes).append(e)

    def finishes(self) -> int:
        """How many of the last test episodes crossed the finish line (what "solved" counts)."""
        return finishes(self.tests)

    def line(self, elapsed: float) -> str:
        m = self.rounds[-1] if self.rounds else {}
        steps = max([m.get("samples", 0)] + [e["samples"] for e in self.episodes[-1:] + self.tests[-1:]])
        rate = 0.0
        if len(self.rounds) == 2 and self.rounds[1]["t"] > self.rounds[0]["t"]:
            rate = (self.rounds[1]["samples"] - self.rounds[0]["samples"]) / (self.rounds[1]["t"] - self.rounds[0]["t"])
        recent, tests = self.episodes[-10:], self.tests[-SOLVED_WINDOW:]
        ret = sum(e["return"] for e in recent) / len(recent) if recent else float("nan")
        ret_test = sum(e["return"] for e in tests) / len(tests) if tests else float("nan")
        prog = max((e.get("progress", 0.0) for e in recent), default=0.0)
        prog_test = max((e.get("progress", 0.0) for e in tests), default=0.0)
        ratio = m.get("updates_per_sample") or float("nan")
        return (f"{elapsed / 60:5.1f} min | env steps {steps:>7} ({rate:5.0f}/s) | updates {m.get('updates', 0):>6} "
                f"({m.get('updates_per_s', 0):5.1f}/s, {ratio:4.2f}/step) | episodes {len(self.episodes):>4} "
                f"test {len(self.tests):>3} | return(10) {ret:6.1f} test({SOLVED_WINDOW}) {ret_test:6.1f} | "
                f"track {100 * prog:5.1f}% test {100 * prog_test:5.1f}% | test finished {self.finishes()}/{SOLVED_WINDOW}")


def _plot(run_name: str, run_dir: Path) -> None:
    from tmrlx.plot import DEFAULT_KEYS, plot

    rounds = read_jsonl(run_dir / "metrics.jsonl")
    if not rounds:
        log.warning("no training round finished: no learning curve to draw")
        return
    png = plot({run_name: rounds}, list(DEFAULT_KEYS), "samples", run_dir / "learning_curve.png")
    print(f"learning curve: {png}")


class Terminated(Exception):
    """SIGTERM reached the demo."""


def _terminated(signum: int, frame: object) -> None:
    raise Terminated


def run(cfg: Config, args: argparse.Namespace) -> int:
    if not 0 <= args.until_solved <= SOLVED_WINDOW:
        raise ConfigError(f"--until-solved is {args.until_solved}: expected 0 to {SOLVED_WINDOW}")
    if args.until_solved and not args.test_episode_interval:
        raise ConfigError("--until-solved counts test episodes: give --test-episode-interval K > 0, or --until-solved 0")
    cfg = demo_config(args)
    run_dir = paths.logs_dir() / cfg.RUN_NAME
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg_file = run_dir / "demo-config.json"
    cfg_file.touch(mode=0o600)
    cfg_file.chmod(0o600)  # it holds the password
    cfg_file.write_text(cfg.to_json())
    load_config(cfg_file)  # what the children will read must validate
    print(f"tmrlx demo: run {cfg.RUN_NAME!r} on {cfg.ENV.RTGYM_INTERFACE}, logs in {run_dir}")
    children = [spawn("broker", role_argv(["broker"], cfg_file), run_dir)]
    time.sleep(0.5)
    children.append(spawn("learner", role_argv(["learner"], cfg_file), run_dir))
    children += [spawn(f"actor{i}", role_argv(actor_role(args.test_episode_interval), cfg_file), run_dir)
                 for i in range(args.actors)]
    progress, start, status = Progress(run_dir), time.monotonic(), 0
    # The children run in sessions of their own (a terminal's Ctrl+C reaches only the demo, which stops
    # them in order): a SIGTERM to the demo must stop them the same way, not leave them orphaned.
    signal.signal(signal.SIGTERM, _terminated)
    try:
        while True:
            time.sleep(1.0)
            progress.poll()
            elapsed = time.monotonic() - start
            print("\r" + progress.line(elapsed), end="", flush=True)
            dead = [c for c in children if c.proc.poll() is not None]
            if dead:
                for c in dead:
                    log.error("%s exited with code %d; end of %s:\n%s", c.name, c.proc.returncode, c.log_path, c.tail())
                status = 1
                break
            if args.until_solved and progress.finishes() >= args.until_solved:
                print(f"\nsolved: the car finished the track in {progress.finishes()} of the last {SOLVED_WINDOW} "
                      "test episodes")
                break
            if elapsed > 60 * args.minutes:
                print(f"\nstopping after {args.minutes:g} minutes")
                break
    except KeyboardInterrupt:
        print("\nstopping (Ctrl+C): the learner saves a checkpoint; run the demo again to resume")
        status = 130
    except Terminated:
        print("\nstopping (SIGTERM): the learner saves a checkpoint; run the demo again to resume")
        status = 143
    finally:
        stop_in_order(children)
    _plot(cfg.RUN_NAME, run_dir)
    return status

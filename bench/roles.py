"""The roles as processes on a temporary data folder, for the benches that train (`ratio`, `learning`).

A broker, a learner and N actors started as `tmrlx.demo` starts them, from the demo config with the
bench's overrides, in a data folder of their own (nothing of the run lands in the user's data): the
children inherit `TMRLX_DATA`, which is restored when the run ends.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tmrlx.common import paths
from tmrlx.common.config import Config, load_config

from tmrlx.demo import DEMO_CONFIG, Child, role_argv, spawn, stop_in_order
from tmrlx.install import install


@dataclass
class RoleRun:
    """A running broker, learner and actors; `run_dir` holds their logs and the learner's metrics."""

    cfg: Config
    run_dir: Path
    children: list[Child]

    def wait(self, seconds: float, until: Callable[[], bool] = lambda: False) -> None:
        """Let them run for `seconds`, or until a child exits or `until()` holds (asked every second)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and all(c.proc.poll() is None for c in self.children) and not until():
            time.sleep(1.0)

    def stop(self) -> list[str]:
        """Stop them (actors, learner, broker, as the demo does); those that had died before, each with the end of its
        log (the data folder goes when the run ends). One that had to be killed at the stop is only logged: the run's
        figures stand."""
        dead = [f"{c.name} (exit code {c.proc.returncode}):\n{c.tail()}" for c in self.children
                if c.proc.poll() is not None]
        stop_in_order(self.children)
        return dead

    def keep(self, dest: Path) -> None:
        """Copy the logs, the metrics and the weights (the last, and the `SAVE_MODEL_EVERY` copies that let a run be
        played back) to `dest`: the data folder is removed when the run ends."""
        shutil.copytree(self.run_dir, dest, dirs_exist_ok=True)
        if paths.weights_dir().is_dir():
            shutil.copytree(paths.weights_dir(), dest / "weights", dirs_exist_ok=True)


def bench_config(data: Path, name: str, overrides: Mapping) -> Config:
    """The demo config of a fresh data folder with a random RUN_NAME and PASSWORD, then `overrides`."""
    cfg = load_config(data / "resources" / DEMO_CONFIG,
                      overrides={"RUN_NAME": f"{name}-{secrets.token_hex(3)}", "PASSWORD": secrets.token_urlsafe(16)})
    return cfg.replace(overrides)


@contextmanager
def role_run(name: str, overrides: Mapping, actors: int, actor_role: list[str] | None = None) -> Iterator[RoleRun]:
    """Broker, learner and `actors` actors (`actor_role`: their command line, default `["actor"]`) on the demo config
    with `overrides`; they are stopped on leaving, and the data folder removed."""
    saved = os.environ.get("TMRLX_DATA")
    with tempfile.TemporaryDirectory(prefix=f"tmrlx-{name}-") as tmp:
        os.environ["TMRLX_DATA"] = tmp
        try:
            install(quiet=True)
            cfg = bench_config(Path(tmp), name, overrides)
            run_dir = Path(tmp) / "logs" / cfg.RUN_NAME
            run_dir.mkdir(parents=True, exist_ok=True)
            cfg_file = run_dir / "config.json"
            cfg_file.write_text(cfg.to_json())
            children: list[Child] = []
            try:
                children += [spawn(role, role_argv([role], cfg_file), run_dir) for role in ("broker", "learner")]
                children += [spawn(f"actor{i}", role_argv(actor_role or ["actor"], cfg_file), run_dir) for i in range(actors)]
                yield RoleRun(cfg, run_dir, children)
            finally:
                stop_in_order([c for c in children if not c.log.closed])  # those `RoleRun.stop` has not stopped
        finally:
            if saved is None:
                os.environ.pop("TMRLX_DATA", None)
            else:
                os.environ["TMRLX_DATA"] = saved

"""`tmrlx import-tmrl [DIR]`: take over a TMRL user's files from their TmrlData folder (default `~/TmrlData`).

- `config/config.json` becomes tmrlx's config, byte for byte, once it validates: tmrlx reads TMRL's keys.
- `reward/reward.pkl` (a pickled (N, 3) array) becomes tmrlx's reward trajectory (`reward/reward.npy`),
  read by a loader that accepts a plain numeric array and nothing else (`tmrlx.tmrl_reward`).
- `.tmod` / `.tcpt` files are left where they are: torch pickles of another framework's networks.

An existing tmrlx file is kept unless `--force`.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from tmrlx.actor.envs.reward import MissingRewardError, default_reward_path, load_trajectory
from tmrlx.common import paths
from tmrlx.common.config import load_config
from tmrlx.common.errors import ConfigError
from tmrlx.tmrl_reward import RefusedPickle, load_positions

log = logging.getLogger("tmrlx")

TORCH_FILES = ("*.tmod", "*.tcpt")
TORCH_REASON = ("TMRL's .tmod weights and .tcpt checkpoints are torch pickles (loading one can run code) holding "
                "PyTorch networks, which tmrlx (JAX) does not use: tmrlx trains its own from scratch")


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("tmrl_dir", nargs="?", type=Path, default=Path("~/TmrlData"), metavar="DIR",
                        help="TMRL's data folder (default: ~/TmrlData)")
    parser.add_argument("--force", action="store_true", help="overwrite tmrlx's config.json and reward file if present")


def _blocked(dst: Path, force: bool) -> str | None:
    """Why `dst` must not be written, or None."""
    return f"{dst} exists (--force to overwrite)" if dst.exists() and not force else None


def import_config(src: Path, force: bool) -> tuple[str, bool]:
    """Copy TMRL's config.json into tmrlx's data folder once it validates: (what happened, ok)."""
    dst = paths.config_path()
    if not src.exists():
        return f"skipped config: no {src}", True
    if dst.exists() and dst.read_bytes() == src.read_bytes():
        return f"config: {dst} already holds {src}", True
    try:
        load_config(src)
    except ConfigError as e:
        return f"refused config {src}: it does not validate as a tmrlx config: {e}", False
    if (why := _blocked(dst, force)) is not None:
        return f"skipped config: {why}", True
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(src.read_bytes())
    return f"imported config {src} -> {dst}", True


def _same_trajectory(path: Path, positions: np.ndarray) -> bool:
    try:
        return bool(np.array_equal(load_trajectory(path), positions))
    except MissingRewardError:
        return False


def import_reward(src: Path, force: bool) -> tuple[str, bool]:
    """Convert TMRL's reward.pkl into tmrlx's reward.npy: (what happened, ok)."""
    dst = default_reward_path()
    if not src.exists():
        return f"skipped reward: no {src}", True
    try:
        positions = load_positions(src)
    except RefusedPickle as e:
        return f"refused reward: {e}", False
    if _same_trajectory(dst, positions):
        return f"reward: {dst} already holds {src}", True
    if (why := _blocked(dst, force)) is not None:
        return f"skipped reward: {why}", True
    dst.parent.mkdir(parents=True, exist_ok=True)
    np.save(dst, positions)
    load_trajectory(dst)  # check that the environments read it back
    return f"imported reward {src} -> {dst} ({len(positions)} points, {0.1 * (len(positions) - 1):.0f} m)", True


def run(args: argparse.Namespace) -> int:
    src: Path = args.tmrl_dir.expanduser()
    if not src.is_dir():
        log.error("no TMRL data folder at %s: pass the folder TMRL created (its config/ and reward/ are read)", src)
        return 1
    print(f"importing TMRL's files from {src} into {paths.data_dir()}")
    ok = True
    for line, fine in (import_config(src / "config" / "config.json", args.force),
                       import_reward(src / "reward" / "reward.pkl", args.force)):
        if fine:
            print(f"  {line}")
        else:
            log.error("%s", line)
            ok = False
    torch = sorted(p for pattern in TORCH_FILES for p in src.rglob(pattern))
    if torch:
        print(f"  not imported: {', '.join(str(p.relative_to(src)) for p in torch)}: {TORCH_REASON}")
    return 0 if ok else 1

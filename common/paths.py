"""The data folder (`~/TmrlxData`, or `$TMRLX_DATA`): config, weights, checkpoints, rewards, logs."""

from __future__ import annotations

import os
from pathlib import Path

SUBFOLDERS = ("config", "weights", "checkpoints", "reward", "dataset", "resources", "logs")


def data_dir() -> Path:
    """Where tmrlx keeps its files; `TMRLX_DATA` overrides the default `~/TmrlxData`."""
    return Path(os.environ.get("TMRLX_DATA") or Path.home() / "TmrlxData").expanduser()


def config_path() -> Path:
    return data_dir() / "config" / "config.json"


def weights_dir() -> Path:
    return data_dir() / "weights"


def checkpoints_dir() -> Path:
    return data_dir() / "checkpoints"


def reward_dir() -> Path:
    return data_dir() / "reward"


def logs_dir() -> Path:
    return data_dir() / "logs"

"""The data folder (`~/TmrlxData`, or `$TMRLX_DATA`): config, weights, checkpoints, rewards, logs."""

from __future__ import annotations

import json
import os
from pathlib import Path

from common.config import defaults

SUBFOLDERS = ("config", "weights", "checkpoints", "reward", "dataset", "resources", "logs")
RESOURCES = Path(__file__).with_name("resources")


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


def resource_configs() -> dict[str, dict]:
    """Example configs shipped with tmrlx: TMRL's defaults plus the files in common/resources/."""
    lidar = defaults()
    lidar["RUN_NAME"], lidar["ENV"]["RTGYM_INTERFACE"] = "SAC_lidar", "TM20LIDAR"
    out = {"config_tmrl_default.json": defaults(), "config_tm20lidar.json": lidar}
    for f in sorted(RESOURCES.glob("*.json")):
        out[f.name] = json.loads(f.read_text())
    return out


def install(quiet: bool = False) -> Path:
    """Create the data folder; refresh resources/, never touch an existing config.json."""
    root = data_dir()
    for sub in SUBFOLDERS:
        (root / sub).mkdir(parents=True, exist_ok=True)
    for name, content in resource_configs().items():
        (root / "resources" / name).write_text(json.dumps(content, indent=2) + "\n")
    cfg = config_path()
    created = not cfg.exists()
    if created:
        cfg.write_text(json.dumps(defaults(), indent=2) + "\n")
    if not quiet:
        print(f"tmrlx data folder: {root}")
        print(f"  config: {cfg} ({'created' if created else 'kept as it was'})")
        print(f"  example configs to restore from: {root / 'resources'}")
    return root

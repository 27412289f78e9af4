"""`tmrlx install`: the data folder, its default config.json and the example configs to restore from."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from tmrlx.common import paths
from tmrlx.common.config import defaults

RESOURCES = Path(__file__).with_name("resources")
log = logging.getLogger("tmrlx")


def resource_configs() -> dict[str, dict]:
    """Example configs shipped with tmrlx: TMRL's defaults plus the files in tmrlx/resources/."""
    lidar = defaults()
    lidar["RUN_NAME"], lidar["ENV"]["RTGYM_INTERFACE"] = "SAC_lidar", "TM20LIDAR"
    out = {"config_tmrl_default.json": defaults(), "config_tm20lidar.json": lidar}
    for f in sorted(RESOURCES.glob("*.json")):
        out[f.name] = json.loads(f.read_text())
    return out


def install(quiet: bool = False) -> Path:
    """Create the data folder; refresh resources/, never touch an existing config.json."""
    root = paths.data_dir()
    for sub in paths.SUBFOLDERS:
        (root / sub).mkdir(parents=True, exist_ok=True)
    for name, content in resource_configs().items():
        (root / "resources" / name).write_text(json.dumps(content, indent=2) + "\n")
    cfg = paths.config_path()
    created = not cfg.exists()
    if created:  # it will hold the PASSWORD: readable by its owner only
        cfg.touch(mode=0o600)
        cfg.write_text(json.dumps(defaults(), indent=2) + "\n")
    if not quiet:
        print(f"tmrlx data folder: {root}")
        print(f"  config: {cfg} ({'created' if created else 'kept as it was'})")
        print(f"  example configs to restore from: {root / 'resources'}")
    return root

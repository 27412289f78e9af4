"""`tmrlx install`: the data folder, its default config.json, the example configs and the OpenPlanet plugin."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from tmrlx import openplanet
from tmrlx.common import paths
from tmrlx.common.config import defaults

RESOURCES = Path(__file__).with_name("resources")
log = logging.getLogger("tmrlx")

UNSIGNED = ("The plugin is not signed by OpenPlanet: it loads only in OpenPlanet's Developer signature mode "
            "(Openplanet menu > Signature Mode > Developer, which also turns on School Mode). "
            "It loads when the game starts; after a copy while the game runs: Openplanet menu > Developer > "
            "Load plugin > TmrlxGrabData.")


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("--openplanet-dir", type=Path, default=None, metavar="PATH",
                        help="an OpenplanetNext folder (or its Plugins folder) to copy the plugin into")
    parser.add_argument("--proton-prefix", type=Path, default=None, metavar="PATH",
                        help="the game's Proton prefix (steamapps/compatdata/2225070) or a Wine prefix: "
                             "copy the plugin into the OpenplanetNext folder inside it")


def run(args: argparse.Namespace) -> int:
    install(openplanet_dir=args.openplanet_dir, proton_prefix=args.proton_prefix)
    return 0


def resource_configs() -> dict[str, dict]:
    """Example configs shipped with tmrlx: TMRL's defaults plus the files in tmrlx/resources/."""
    lidar = defaults()
    lidar["RUN_NAME"], lidar["ENV"]["RTGYM_INTERFACE"] = "SAC_lidar", "TM20LIDAR"
    out = {"config_tmrl_default.json": defaults(), "config_tm20lidar.json": lidar}
    for f in sorted(RESOURCES.glob("*.json")):
        out[f.name] = json.loads(f.read_text())
    return out


def install_plugin(resources: Path, openplanet_dir: Path | None = None,
                   proton_prefix: Path | None = None) -> tuple[Path, list[Path], list[str]]:
    """Write the packed plugin into `resources` and copy it into every OpenPlanet Plugins folder found.

    Returns the packed file, the copies, and why a folder the user named was not used.
    """
    op = openplanet.pack()
    packed = resources / f"{openplanet.PLUGIN}.op"
    packed.write_bytes(op)
    targets, misses = openplanet.plugin_dirs(openplanet_dir, proton_prefix)
    copies = []
    for plugins in targets:
        plugins.mkdir(parents=True, exist_ok=True)
        (plugins / packed.name).write_bytes(op)
        copies.append(plugins / packed.name)
    return packed, copies, misses


def install(quiet: bool = False, openplanet_dir: Path | None = None, proton_prefix: Path | None = None) -> Path:
    """Create the data folder; refresh resources/ and the plugin, never touch an existing config.json."""
    root = paths.data_dir()
    for sub in paths.SUBFOLDERS:
        (root / sub).mkdir(parents=True, exist_ok=True)
    for name, content in resource_configs().items():
        (root / "resources" / name).write_text(json.dumps(content, indent=2) + "\n")
    packed, copies, misses = install_plugin(root / "resources", openplanet_dir, proton_prefix)
    cfg = paths.config_path()
    created = not cfg.exists()
    if created:  # it will hold the PASSWORD: readable by its owner only
        cfg.touch(mode=0o600)
        cfg.write_text(json.dumps(defaults(), indent=2) + "\n")
    for miss in misses:
        log.warning("%s", miss)
    if not quiet:
        print(f"tmrlx data folder: {root}")
        print(f"  config: {cfg} ({'created' if created else 'kept as it was'})")
        print(f"  example configs to restore from: {root / 'resources'}")
        print(f"  OpenPlanet plugin (TrackMania's game data on 127.0.0.1:9000): {packed}")
        for copy in copies:
            print(f"    copied to {copy}")
        if not copies:
            print("    no OpenplanetNext folder found: copy it into OpenplanetNext/Plugins yourself (Windows: "
                  "C:\\Users\\<you>\\OpenplanetNext\\Plugins; Proton: <steam>/steamapps/compatdata/2225070/pfx/"
                  "drive_c/users/steamuser/OpenplanetNext/Plugins), or run `tmrlx install --openplanet-dir PATH` "
                  "or `--proton-prefix PATH`")
        print(f"    {UNSIGNED}")
    return root

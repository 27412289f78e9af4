"""tmrlx's OpenPlanet plugin: pack its sources into an `.op` and find the folders OpenPlanet loads plugins from.

An `.op` is a zip of `info.toml` and the `.as` sources; OpenPlanet names a plugin after its file, so
`TmrlxGrabData.op` is the plugin `TmrlxGrabData`. OpenPlanet keeps its user folder in the Windows
profile (`~/OpenplanetNext`); under Proton or Wine that profile lives inside the prefix
(`<steam>/steamapps/compatdata/2225070/pfx/drive_c/users/steamuser/OpenplanetNext` for Steam's TrackMania).
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

PLUGIN = "TmrlxGrabData"
SOURCE = Path(__file__).with_name("resources") / "openplanet" / PLUGIN
STEAM_APP_ID = "2225070"  # Trackmania (2020) on Steam: Proton keeps its prefix in compatdata/2225070
STEAM_ROOTS = (".steam/steam", ".local/share/Steam")  # Steam's usual homes on Linux
_EPOCH = (1980, 1, 1, 0, 0, 0)  # fixed timestamps: the same sources pack to the same bytes


def plugin_files() -> list[Path]:
    """The plugin's `info.toml` and `.as` sources, in packing order."""
    return [SOURCE / "info.toml", *sorted(SOURCE.glob("*.as"))]


def pack() -> bytes:
    """The `.op` archive: the plugin's files at the root of a zip, byte-identical for identical sources."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for f in plugin_files():
            info = zipfile.ZipInfo(f.name, _EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, f.read_bytes())
    return out.getvalue()


def _in_prefix(prefix: Path) -> list[Path]:
    """OpenplanetNext folders of the users of a Wine prefix, or of a Proton compatdata folder (which holds `pfx/`)."""
    root = prefix / "pfx" if (prefix / "pfx" / "drive_c").is_dir() else prefix
    return sorted(p for p in (root / "drive_c" / "users").glob("*/OpenplanetNext") if p.is_dir())


def plugin_dirs(openplanet_dir: Path | None = None, proton_prefix: Path | None = None) -> tuple[list[Path], list[str]]:
    """The `Plugins` folders to copy the plugin into, and why a folder the user named holds none.

    Always looked at: `~/OpenplanetNext` (Windows) and Steam's TrackMania prefix under `~/.steam/steam`
    or `~/.local/share/Steam` (Linux, Proton). `openplanet_dir` may name an OpenplanetNext folder or
    its Plugins folder; `proton_prefix` a Proton compatdata folder or any Wine prefix.
    """
    found: list[Path] = []
    misses: list[str] = []
    home = Path.home()
    found += [d for d in [home / "OpenplanetNext"] if d.is_dir()]
    for steam in STEAM_ROOTS:
        found += _in_prefix(home / steam / "steamapps" / "compatdata" / STEAM_APP_ID)
    if openplanet_dir is not None:
        openplanet_dir = openplanet_dir.expanduser()
        if openplanet_dir.is_dir():
            found.append(openplanet_dir.parent if openplanet_dir.name == "Plugins" else openplanet_dir)
        else:
            misses.append(f"--openplanet-dir {openplanet_dir}: no such folder")
    if proton_prefix is not None:
        inside = _in_prefix(proton_prefix.expanduser())
        found += inside
        if not inside:
            misses.append(f"--proton-prefix {proton_prefix}: no drive_c/users/*/OpenplanetNext inside (start the game "
                          "once with OpenPlanet installed in that prefix)")
    unique: dict[Path, None] = {}
    for d in found:
        unique.setdefault(d.resolve() / "Plugins", None)
    return list(unique), misses

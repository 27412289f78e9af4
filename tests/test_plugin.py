"""tmrlx's OpenPlanet plugin: its record matches gamedata.FIELDS, it ships in the wheel's resources, it packs into a
valid .op, and `tmrlx install` writes it to the data folder and to every OpenplanetNext/Plugins folder it finds."""

from __future__ import annotations

import fnmatch
import io
import re
import zipfile
from pathlib import Path

import pytest
from tmrlx.actor.envs.backends.gamedata import FIELDS

from tmrlx import openplanet
from tmrlx.cli import main
from tmrlx.install import install_plugin

tomllib = pytest.importorskip("tomllib")  # Python 3.11+
ROOT = Path(__file__).resolve().parents[1]

# What each field reads from the game, written out independently of the plugin.
SOURCES = {"speed": "car.Speed", "distance": "car.Distance", "x": "car.Position.x", "y": "car.Position.y",
           "z": "car.Position.z", "steer": "car.InputSteer", "gas": "car.InputGasPedal", "brake": "car.InputIsBraking",
           "finished": "finished", "gear": "car.EngineCurGear", "rpm": "car.EngineRpm"}


def _function_body(source: str, name: str) -> str:
    """The text between the braces of the AngelScript function `name` (no nested braces in it)."""
    match = re.search(rf"\bvoid\s+{name}\s*\([^)]*\)\s*\{{(.*?)\n\}}", source, re.S)
    assert match, f"no function {name} in the plugin"
    return match.group(1)


def _writes(source: str) -> list[tuple[str, str]]:
    """(expression, label) of every Write call in WriteRecord, in order: `out.Write(expr);  // label`."""
    body = _function_body(source, "WriteRecord")
    calls = re.findall(r"\.Write\(", body)
    writes = re.findall(r"^\s*\w+\.Write\((.+)\);\s*//\s*(\w+)\s*$", body, re.M)
    assert len(writes) == len(calls), "every Write in WriteRecord sits on its own line with its field's name"
    return writes


def test_plugin_writes_the_fields_in_gamedata_order():
    source = (openplanet.SOURCE / "GrabData.as").read_text()
    writes = _writes(source)
    assert tuple(label for _, label in writes) == FIELDS
    for expr, label in writes:
        assert SOURCES[label] in expr, f"field {label} is written from {expr!r}, expected {SOURCES[label]}"
        # float32 on the wire: an int (the gear) or a bool written as such would not be 4-byte float
        assert re.fullmatch(r"float\(.+\)|.+\? 1\.0f : 0\.0f", expr), f"{label} is not written as a float: {expr}"
    assert "SendFrame" in _function_body(source, "Main") and "WriteRecord(" in _function_body(source, "SendFrame")


def test_plugin_listens_where_the_client_connects_and_says_what_it_uses():
    source = (openplanet.SOURCE / "GrabData.as").read_text()
    assert 'HOST = "127.0.0.1"' in source and "PORT = 9000" in source
    header = source.split("*/")[0]
    for api in ("Net::Socket", "MemoryBuffer", "GetApp", "CSmScriptPlayer", "IsInGameMenuDisplayed", "unsigned"):
        assert api in header


def test_info_toml_is_valid_and_blocks_tmrls_plugin():
    info = tomllib.loads((openplanet.SOURCE / "info.toml").read_text())
    assert re.fullmatch(r"\d+(\.\d+)*", info["meta"]["version"]) and info["meta"]["name"]
    assert info["meta"]["blocks"] == ["TMRL_GrabData"]  # both serve 127.0.0.1:9000


def test_plugin_sources_are_in_the_wheel_data():
    """Each source file sits in a listed package folder and matches that package's package-data patterns."""
    tomllib = pytest.importorskip("tomllib")
    setup = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {pkg: ROOT / setup["package-dir"]["tmrlx"] / Path(*pkg.split(".")[1:]) for pkg in setup["packages"]
               if pkg.startswith("tmrlx.resources")}
    for f in openplanet.plugin_files():
        owner = next((pkg for pkg, folder in folders.items() if folder == f.parent), None)
        assert owner is not None, f"{f} is in no listed package folder"
        assert any(fnmatch.fnmatch(f.name, p) for p in setup["package-data"][owner]), f"{f.name} is not in {owner}'s data"


def test_pack_is_a_valid_op_and_deterministic():
    op = openplanet.pack()
    assert op == openplanet.pack()
    with zipfile.ZipFile(io.BytesIO(op)) as z:
        assert z.testzip() is None
        names = z.namelist()
        assert names[0] == "info.toml" and "GrabData.as" in names and all("/" not in n for n in names)
        assert z.read("GrabData.as") == (openplanet.SOURCE / "GrabData.as").read_bytes()
        tomllib.loads(z.read("info.toml").decode())


@pytest.fixture
def home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("USERPROFILE", str(home))
    monkeypatch.setenv("TMRLX_DATA", str(tmp_path / "data"))
    return home


def test_install_writes_the_plugin_to_the_data_folder_and_openplanet(home, tmp_path, capsys):
    (home / "OpenplanetNext").mkdir()
    assert main(["install"]) == 0
    out = capsys.readouterr().out
    packed = tmp_path / "data" / "resources" / "TmrlxGrabData.op"
    copy = home / "OpenplanetNext" / "Plugins" / "TmrlxGrabData.op"
    assert packed.read_bytes() == copy.read_bytes() == openplanet.pack()
    assert str(packed) in out and f"copied to {copy}" in out and "Developer" in out
    assert main(["install"]) == 0  # idempotent
    assert copy.read_bytes() == openplanet.pack()


def test_install_says_where_to_put_the_plugin_when_no_openplanet_folder(home, capsys):
    assert main(["install"]) == 0
    out = capsys.readouterr().out
    assert "no OpenplanetNext folder found" in out and "OpenplanetNext\\Plugins" in out and "--proton-prefix" in out
    assert not (home / "OpenplanetNext").exists()


def test_install_into_a_proton_prefix_and_a_named_folder(home, tmp_path, capsys):
    prefix = tmp_path / "compatdata" / "2225070"
    (prefix / "pfx" / "drive_c" / "users" / "steamuser" / "OpenplanetNext").mkdir(parents=True)
    named = tmp_path / "elsewhere" / "OpenplanetNext" / "Plugins"
    named.mkdir(parents=True)
    assert main(["install", "--proton-prefix", str(prefix), "--openplanet-dir", str(named)]) == 0
    out = capsys.readouterr().out
    in_prefix = prefix / "pfx" / "drive_c" / "users" / "steamuser" / "OpenplanetNext" / "Plugins" / "TmrlxGrabData.op"
    for copy in (in_prefix, named / "TmrlxGrabData.op"):
        assert copy.read_bytes() == openplanet.pack() and f"copied to {copy}" in out


def test_steams_default_prefix_is_found(home, tmp_path):
    openplanet_next = (home / ".local/share/Steam/steamapps/compatdata/2225070/pfx/drive_c/users/steamuser/OpenplanetNext")
    openplanet_next.mkdir(parents=True)
    _, copies, misses = install_plugin(tmp_path)
    assert copies == [openplanet_next.resolve() / "Plugins" / "TmrlxGrabData.op"] and not misses


def test_named_folders_without_openplanet_are_reported(home, tmp_path):
    _, copies, misses = install_plugin(tmp_path, openplanet_dir=tmp_path / "missing", proton_prefix=tmp_path)
    assert not copies
    assert any("--openplanet-dir" in m and "no such folder" in m for m in misses)
    assert any("--proton-prefix" in m and "OpenplanetNext" in m for m in misses)

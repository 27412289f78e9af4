"""`tmrlx import-tmrl`: TMRL's config.json and reward.pkl taken over, never overwriting without --force, and
reward.pkl read by a loader that builds a plain numeric array or refuses (a malicious pickle never runs)."""

from __future__ import annotations

import json
import logging
import os
import pickle
import re
import struct
from pathlib import Path

import numpy as np
import pytest
from tmrlx.actor.envs.reward import default_reward_path, load_trajectory
from tmrlx.common import paths
from tmrlx.common.config import defaults, load_config

from tmrlx.cli import main
from tmrlx.tmrl_reward import RefusedPickle, load_positions

SHARED = Path(__file__).resolve().parents[2] / "shared" / "tmrl-config.json"
LAP = np.cumsum(np.random.default_rng(0).normal(0.0, 0.06, (200, 3)), axis=0)  # float64, as TMRL records it


def _tmrl_config_text() -> str:
    return SHARED.read_text() if SHARED.exists() else json.dumps(defaults(), indent=2)


@pytest.fixture
def tmrl(tmp_path, monkeypatch) -> Path:
    """A TMRL user's ~/TmrlData (config, reward.pkl, torch weights and checkpoint) and an empty tmrlx data folder."""
    monkeypatch.setenv("TMRLX_DATA", str(tmp_path / "data"))
    root = tmp_path / "TmrlData"
    for sub in ("config", "reward", "weights", "checkpoints"):
        (root / sub).mkdir(parents=True)
    (root / "config" / "config.json").write_text(_tmrl_config_text())
    with open(root / "reward" / "reward.pkl", "wb") as f:
        pickle.dump(LAP, f)
    (root / "weights" / "SAC_4_imgs_pretrained.tmod").write_bytes(b"torch")
    (root / "checkpoints" / "SAC_4_imgs_pretrained_t.tcpt").write_bytes(b"torch")
    return root


def test_imports_config_and_reward(tmrl, capsys):
    assert main(["import-tmrl", str(tmrl)]) == 0
    out = capsys.readouterr().out
    assert paths.config_path().read_text() == _tmrl_config_text()
    assert load_config(paths.config_path()).to_dict() == json.loads(_tmrl_config_text())
    np.testing.assert_allclose(load_trajectory(default_reward_path()), LAP, rtol=1e-6)
    assert "imported config" in out and "imported reward" in out
    assert "SAC_4_imgs_pretrained.tmod" in out and ".tcpt" in out and "torch pickles" in out and "PyTorch" in out
    assert main(["import-tmrl", str(tmrl)]) == 0  # a second run finds it all in place
    assert capsys.readouterr().out.count("already holds") == 2


def test_default_folder_is_home_tmrldata(tmrl, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmrl.parent))
    monkeypatch.setenv("USERPROFILE", str(tmrl.parent))
    assert main(["import-tmrl"]) == 0
    assert "imported config" in capsys.readouterr().out


def test_never_overwrites_without_force(tmrl, capsys):
    mine = {**defaults(), "BATCH_SIZE": 7}
    paths.config_path().parent.mkdir(parents=True)
    paths.config_path().write_text(json.dumps(mine))
    default_reward_path().parent.mkdir(parents=True)
    np.save(default_reward_path(), np.zeros((5, 3), np.float32))
    assert main(["import-tmrl", str(tmrl)]) == 0
    out = capsys.readouterr().out
    assert json.loads(paths.config_path().read_text()) == mine
    assert load_trajectory(default_reward_path()).shape == (5, 3)
    assert out.count("exists (--force to overwrite)") == 2
    assert main(["import-tmrl", str(tmrl), "--force"]) == 0
    assert paths.config_path().read_text() == _tmrl_config_text()
    assert load_trajectory(default_reward_path()).shape == LAP.shape


def test_invalid_config_is_refused_with_the_reason(tmrl, caplog):
    (tmrl / "config" / "config.json").write_text(json.dumps({**defaults(), "BATCH_SIZ": 3}))
    with caplog.at_level(logging.ERROR, logger="tmrlx"):
        assert main(["import-tmrl", str(tmrl)]) == 1
    assert "refused config" in caplog.text and "BATCH_SIZ" in caplog.text
    assert not paths.config_path().exists()
    assert default_reward_path().exists()  # the reward is imported all the same


def test_missing_folder_and_files(tmp_path, monkeypatch, capsys, caplog):
    monkeypatch.setenv("TMRLX_DATA", str(tmp_path / "data"))
    assert main(["import-tmrl", str(tmp_path / "nowhere")]) == 1
    assert "no TMRL data folder" in caplog.text
    (tmp_path / "empty").mkdir()
    assert main(["import-tmrl", str(tmp_path / "empty")]) == 0
    assert capsys.readouterr().out.count("skipped") == 2


class Evil:
    def __init__(self, marker: Path):
        self.command = f"echo pwned > {marker}"

    def __reduce__(self):
        return os.system, (self.command,)


def test_malicious_pickle_never_runs(tmrl, tmp_path, caplog):
    marker = tmp_path / "pwned"
    (tmrl / "reward" / "reward.pkl").write_bytes(pickle.dumps(Evil(marker)))
    with pytest.raises(RefusedPickle, match=r"system.*could run code"):
        load_positions(tmrl / "reward" / "reward.pkl")
    assert main(["import-tmrl", str(tmrl)]) == 1
    assert "refused reward" in caplog.text and not default_reward_path().exists()
    assert not marker.exists()


@pytest.mark.parametrize("content, message", [
    ([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]], "holds a list, not a NumPy array"),
    (np.array([[0, 0, 0], [1, 0, "x"]], dtype=object), "dtype object"),
    (np.zeros((10, 2)), r"shape \(10, 2\): expected \(N >= 2, 3\)"),
    (np.zeros(30), r"shape \(30,\)"),
    (np.zeros((1, 3)), r"shape \(1, 3\)"),
    (np.array([[0.0, 0.0, np.nan], [1.0, 0.0, 0.0]]), "not finite"),
    (np.array([["a", "b", "c"], ["d", "e", "f"]]), "dtype <U1"),
    (np.float64(3.0), "multiarray.scalar"),
])
def test_anything_but_numeric_positions_is_refused(tmp_path, content, message):
    f = tmp_path / "reward.pkl"
    f.write_bytes(pickle.dumps(content))
    with pytest.raises(RefusedPickle, match=message):
        load_positions(f)


def test_garbage_is_refused(tmp_path):
    f = tmp_path / "reward.pkl"
    f.write_bytes(b"not a pickle at all")
    with pytest.raises(RefusedPickle, match="not a readable pickle"):
        load_positions(f)


def _respell(data: bytes, old: str, new: str) -> bytes:
    """`data` with module `old` renamed `new`, as the other NumPy major version writes it.

    Protocols 0 to 3 name globals as text lines; protocols 4 and 5 as length-prefixed strings
    (SHORT_BINUNICODE) inside one length-prefixed frame, so both lengths are adjusted.
    """
    if data[1] < 4:
        return data.replace(f"c{old}".encode(), f"c{new}".encode())
    count = 0

    def rename(m: re.Match) -> bytes:
        nonlocal count
        count += 1
        name = m.group(2).decode().replace(old, new, 1).encode()
        return b"\x8c" + bytes([len(name)]) + name

    body = re.sub(rb"\x8c(.)(" + re.escape(old.encode()) + rb"\.\w+)", rename, data[11:], flags=re.S)
    assert data[2:3] == b"\x95" and count, "expected one frame naming the module"
    (frame,) = struct.unpack("<Q", data[3:11])
    return data[:3] + struct.pack("<Q", frame + count * (len(new) - len(old))) + body


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
@pytest.mark.parametrize("core", ["numpy.core", "numpy._core"])
def test_numpy_1_and_2_spellings_load(tmp_path, protocol, core):
    data = pickle.dumps(LAP, protocol=protocol)
    written = "numpy._core" if b"numpy._core" in data else "numpy.core"  # what this NumPy writes
    data = _respell(data, written, core)
    assert core.encode() + b"." in data and (core == written or written.encode() + b"." not in data)
    f = tmp_path / "reward.pkl"
    f.write_bytes(data)
    np.testing.assert_allclose(load_positions(f), LAP, rtol=1e-6)

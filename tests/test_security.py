"""Security helpers: password proofs, derived CurveZMQ keys, the key folder and `tmrlx keys`."""

import argparse

import pytest
import zmq
from tmrlx.common.config import load_config
from tmrlx.common.errors import ConfigError
from tmrlx.common.wire import security

from tmrlx import keys


def test_mac_binds_every_part_and_its_boundaries():
    key = security.auth_key("pw")
    proof = security.mac(key, "client", b"ab", b"c")
    assert security.verify(key, proof, "client", b"ab", b"c")
    assert not security.verify(key, proof, "client", b"a", b"bc")
    assert not security.verify(security.auth_key("pw2"), proof, "client", b"ab", b"c")


def test_derived_keys_are_stable_valid_and_differ_per_password_and_role():
    pub, sec = security.derive_pair("pw", "server")
    assert (pub, sec) == security.derive_pair("pw", "server")
    assert zmq.curve_public(sec) == pub and len(pub) == 40
    assert security.derive_pair("pw2", "server")[0] != pub
    assert security.derive_pair("pw", "client")[0] != pub


def test_broker_and_clients_agree_on_derived_keys():
    cfg = load_config(overrides={"TLS": True, "PASSWORD": "pw"})
    server, client = security.curve_keys(cfg, server=True), security.curve_keys(cfg, server=False)
    assert client.server_public == server.public
    assert client.public in server.allowed


def test_keys_command_writes_a_folder_both_sides_can_use(tmp_path, capsys):
    folder = tmp_path / "k"
    assert keys.run(load_config(), argparse.Namespace(out=folder)) == 0
    assert "server.key_secret" in capsys.readouterr().out
    cfg = load_config(overrides={"TLS": True, "TLS_CREDENTIALS_DIRECTORY": str(folder)})
    server, client = security.curve_keys(cfg, server=True), security.curve_keys(cfg, server=False)
    assert client.server_public == server.public and server.allowed == {client.public}
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        security.generate(folder)


def test_missing_key_file_is_a_clear_config_error(tmp_path):
    cfg = load_config(overrides={"TLS": True, "TLS_CREDENTIALS_DIRECTORY": str(tmp_path)})
    with pytest.raises(ConfigError, match="server.key_secret is missing"):
        security.curve_keys(cfg, server=True)

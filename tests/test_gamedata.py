"""The plugin's byte stream: the real client against the simulator's real TCP server, including restarts."""

from __future__ import annotations

import socket

import numpy as np
import pytest
from tmrlx.actor.envs.backends.gamedata import RECORD_BYTES, GameDataClient, NoGameData, pack, unpack
from tmrlx.actor.envs.clock import VirtualClock
from tmrlx.actor.envs.sim.server import GameDataServer
from tmrlx.actor.envs.sim.track import load_track
from tmrlx.actor.envs.sim.world import SimWorld


def test_record_is_44_little_endian_floats():
    rec = np.arange(11, dtype=np.float32)
    raw = pack(rec)
    assert len(raw) == RECORD_BYTES == 44 and raw[:8] == b"\x00\x00\x00\x00\x00\x00\x80?"
    np.testing.assert_array_equal(unpack(raw), rec)
    with pytest.raises(ValueError, match="44 bytes"):
        unpack(raw[:40])


def test_client_reads_the_server_and_reconnects_after_it_comes_back():
    clock = VirtualClock()
    world = SimWorld(load_track("easy"), clock)
    server = GameDataServer(world, period=0.005).start()
    client = GameDataClient("127.0.0.1", server.port, retry=0.05)
    try:
        first = client.retrieve(timeout=5.0)
        np.testing.assert_allclose(first[2:5], world.record()[2:5])
        world.control(1.0, 0.0, 0.0)
        clock.sleep(2.0)  # the car moves; the stream follows
        moved = client.retrieve(timeout=5.0)
        assert moved[0] > 20.0 and moved[6] == 1.0
        server.stop()  # the game goes away: no fresh record comes
        with pytest.raises(NoGameData, match="TMRL_GrabData"):
            client.retrieve(timeout=0.3)
        server.start()  # same port
        again = client.retrieve(timeout=5.0)
        np.testing.assert_allclose(again[2:5], world.record()[2:5])
    finally:
        client.close()
        server.stop()


def test_no_server_explains_what_to_do():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # a port nobody listens on once closed
    client = GameDataClient("127.0.0.1", port, retry=0.05)
    try:
        with pytest.raises(NoGameData, match=f"127.0.0.1:{port}.*OpenPlanet"):
            client.retrieve(timeout=0.3)
    finally:
        client.close()

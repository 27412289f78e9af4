"""The TM20 backends (the code that runs on Windows and under Proton) against the emulated TrackMania: fast checks.

Window placement, per-thread capture, held inputs, the finish pop-up and the errors of missing pieces, on
both branches of the seam. The real-time runs (laps, faults, commands, training) are in
test_emulated_realtime.py.
"""

from __future__ import annotations

import ctypes
import subprocess
import threading

import numpy as np
import pytest
from emulated_game import tm_config
from tmrlx.actor.envs.backends import sendinput
from tmrlx.actor.envs.backends.controls import GamepadController, SendInputKeyboard, XdotoolKeyboard
from tmrlx.actor.envs.backends.tm import MssScreen, tm_backends
from tmrlx.actor.envs.backends.window import place_win32, place_xdotool
from tmrlx.actor.envs.clock import WallClock
from tmrlx.actor.envs.emulated import EmulatedGame
from tmrlx.actor.envs.emulated.desktop import DESKTOP, TITLE_BAR
from tmrlx.actor.envs.interface import TrackInterface
from tmrlx.actor.envs.reward import RewardFunction, load_trajectory
from tmrlx.actor.envs.sim.render import Renderer
from tmrlx.actor.envs.sim.track import load_track, trajectory_path
from tmrlx.common.errors import ConfigError

from tmrlx.testing import wait_for

CLOCK = WallClock()


@pytest.fixture(params=["windows", "linux"])
def game(request):
    g = EmulatedGame(load_track("easy"), request.param)
    yield g
    g.close()


def frames_later(game: EmulatedGame, n: int = 3) -> bool:
    start = game.frame
    return bool(wait_for(lambda: game.frame >= start + n, 5.0, 0.005))


def place(game: EmulatedGame, w: int, h: int):
    s = game.system
    if s.platform == "windows":
        return place_win32(s.win32gui, w, h)
    return place_xdotool(s.xdotool, CLOCK, w, h, 64, 70)


def test_the_window_is_found_placed_and_its_client_area_captured_exactly(game):
    grab = MssScreen(game.system.mss, {"left": 100, "top": 60, "width": 256, "height": 128})  # a fixed rectangle
    before = grab.grab()
    assert (before == TITLE_BAR).all(-1).any() and (before == DESKTOP).all(-1).any()  # title bar and wallpaper in it
    placement = place(game, 256, 128)
    expected = {"windows": (0, 0), "linux": (64, 70)}[game.platform]
    assert (placement.region["left"], placement.region["top"]) == expected
    assert (game.window.w, game.window.h) == (256, 128)
    screen = MssScreen(game.system.mss, placement.region)
    with game.lock:  # the frame on screen and the state it shows, together
        shot, state = screen.grab(), game._shown
    np.testing.assert_array_equal(shot, Renderer(game.world.track, 256, 128).render(state))  # the simulator's own image
    screen.close()


def test_capture_objects_belong_to_the_thread_that_made_them(game):
    sct = game.system.mss()
    errors = []
    t = threading.Thread(target=lambda: errors.append(pytest.raises(AttributeError, sct.grab, (0, 0, 8, 8))))
    t.start()
    t.join()
    assert "_thread._local" in str(errors[0].value)  # mss 9's failure on rtgym's thread
    screen = MssScreen(game.system.mss, {"left": 0, "top": 0, "width": 8, "height": 8})
    shots = []
    for _ in range(2):  # the backend makes one per grabbing thread
        t = threading.Thread(target=lambda: shots.append(screen.grab().shape))
        t.start()
        t.join()
    assert shots == [(8, 8, 4)] * 2 and len(screen._made) == 2
    screen.close()


def test_a_press_within_one_frame_is_never_seen_a_held_one_respawns_once(game):
    vg = game.system.vgamepad()
    pad = vg.VX360Gamepad()
    pad.press_button(button=vg.XUSB_BUTTON.XUSB_GAMEPAD_B)
    pad.update()
    pad.release_button(button=vg.XUSB_BUTTON.XUSB_GAMEPAD_B)
    pad.update()  # the old backend's respawn: pressed and released in the same instant
    assert frames_later(game) and game.respawns == 0
    GamepadController(game.system.vgamepad, CLOCK, game.platform).respawn()  # held 0.1 s: six frames
    assert frames_later(game) and game.respawns == 1


@pytest.mark.parametrize("keys", [False, True])
def test_the_finish_pop_up_blocks_respawn_until_closed(game, keys):
    placement = place(game, 256, 128)
    if not keys:
        controller = GamepadController(game.system.vgamepad, CLOCK, game.platform)
    elif game.platform == "windows":
        controller = SendInputKeyboard(game.system.user32, CLOCK, placement.popup_point)
    else:
        controller = XdotoolKeyboard(game.system.xdotool, CLOCK, placement.popup_point)
    with game.lock:
        game.world.finished = True  # the car crossed the line
    assert wait_for(lambda: game.popup, 5.0)
    popup_shot = MssScreen(game.system.mss, placement.region).grab()
    assert (popup_shot == (40, 200, 240, 255)).all(-1).any()  # the pop-up is drawn over the game image
    controller.respawn()
    assert frames_later(game) and game.respawns == 0 and game.popup  # respawn does nothing while it is up
    controller.close_popup()
    assert wait_for(lambda: not game.popup, 5.0)
    controller.respawn()
    assert frames_later(game) and game.respawns == 1 and not game.world.finished


def test_keys_drive_only_the_focused_window_and_the_pad_presses_pedals_past_the_threshold(game):
    if game.platform == "windows":
        sendinput.send(game.system.user32, [sendinput.key_event(0x11, up=False)])  # W before the window has focus
    else:
        game.system.xdotool(["keydown", "Up"])
    assert frames_later(game) and game.world.controls[0] == 0.0
    place(game, 256, 128)  # focuses the window, as TMRL does
    keyboard = (SendInputKeyboard(game.system.user32, CLOCK, (0, 0)) if game.platform == "windows"
                else XdotoolKeyboard(game.system.xdotool, CLOCK, (0, 0)))
    keyboard.apply(1.0, 0.0, -0.6)
    assert wait_for(lambda: game.world.controls == (1.0, 0.0, -1.0), 5.0)
    keyboard.close()
    pad = GamepadController(game.system.vgamepad, CLOCK, game.platform)
    game.world.respawn()
    pad.apply(0.4, 0.0, 0.25)
    assert wait_for(lambda: np.allclose(game.world.controls, (0.4, 0.0, 0.25)), 5.0)
    assert frames_later(game, 10) and game.world.state().forward_speed == 0.0  # a light trigger is no gas
    pad.apply(0.8, 0.0, 0.0)
    assert wait_for(lambda: game.world.state().forward_speed > 1.0, 5.0)


def test_sendinput_structures_have_windows_layout():
    assert ctypes.sizeof(sendinput.INPUT) == (40 if ctypes.sizeof(ctypes.c_void_p) == 8 else 28)
    assert ctypes.sizeof(sendinput.KEYBDINPUT) == (24 if ctypes.sizeof(ctypes.c_void_p) == 8 else 16)


@pytest.mark.parametrize("platform,advice", [("windows", "github.com/nefarius/ViGEmBus/releases"),
                                             ("linux", "/dev/uinput")])
def test_missing_gamepad_driver_says_where_to_get_it(platform, advice):
    game = EmulatedGame(load_track("easy"), platform, gamepad_driver=False)
    try:
        with pytest.raises((OSError, Exception), match="VIGEM_ERROR_BUS_NOT_FOUND|Permission denied"):  # what vgamepad raises
            game.system.vgamepad().VX360Gamepad()
        with pytest.raises(ConfigError, match=advice):
            tm_backends(tm_config("TM20LIDAR", platform), game.system, CLOCK, "127.0.0.1", game.port)
    finally:
        game.close()


@pytest.mark.parametrize("platform", ["windows", "linux"])
def test_no_game_window_says_start_the_game_windowed(platform):
    game = EmulatedGame(load_track("easy"), platform, window=False)
    try:
        if platform == "windows":
            assert game.system.win32gui.FindWindow(None, "Trackmania") == 0  # pywin32 returns 0, no exception
        else:
            with pytest.raises(subprocess.CalledProcessError) as e:
                game.system.xdotool(["search", "--name", "Trackmania"])
            assert e.value.returncode == 1
        with pytest.raises(ConfigError, match="start TrackMania 2020 in windowed mode"):
            tm_backends(tm_config("TM20LIDAR", platform), game.system, CLOCK, "127.0.0.1", game.port)
    finally:
        game.close()


@pytest.mark.parametrize("interface", ["TM20LIDAR", "TM20FULL"])
def test_observations_equal_the_simulators_for_the_same_state(interface, game):
    cfg = tm_config(interface, game.platform, WINDOW_WIDTH=320, WINDOW_HEIGHT=160)
    backends = tm_backends(cfg, game.system, CLOCK, "127.0.0.1", game.port)
    iface = TrackInterface(cfg, backends, RewardFunction(load_trajectory(trajectory_path("easy")), cfg.ENV.REWARD_CONFIG))
    try:
        with game.lock:
            shot, state = backends.screen.grab(), game._shown
        own = Renderer(game.world.track, 320, 160).render(state)
        np.testing.assert_array_equal(iface._frame(shot), iface._frame(own))
    finally:
        iface.close()

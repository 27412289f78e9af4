"""Shared helpers of the emulated-TrackMania tests: a short track (with its recorded trajectory) and configs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tmrlx.actor.envs.record import record_sim
from tmrlx.actor.envs.reward import resample
from tmrlx.common.config import Config, load_config

SPRINT = {"name": "sprint", "width": 22.0, "wall": 1.5, "segments": [["straight", 30], ["arc", 40, 60], ["straight", 25]]}


def make_sprint(folder: Path) -> Path:
    """A ~97 m track (a lap is ~6 s of real time) and its trajectory `sprint.npy`, recorded in lockstep."""
    track = folder / "sprint.json"
    track.write_text(json.dumps(SPRINT))
    lap = record_sim(load_config(overrides={"ENV": {"RTGYM_INTERFACE": "SIMLIDAR",
                                                    "RTGYM_CONFIG": {"interface_kwargs": {"track": str(track)}}}}))
    np.save(track.with_suffix(".npy"), resample(lap))
    return track


def tm_config(interface: str, emulate: str, track: Path | str = "easy", gamepad: bool = True, **env) -> Config:
    return load_config(overrides={"VIRTUAL_GAMEPAD": gamepad, "ENV": {
        "RTGYM_INTERFACE": interface, **env,
        "RTGYM_CONFIG": {"ep_max_length": 1000, "interface_kwargs": {"emulate": emulate, "track": str(track)}}}})

"""The registry of environment kinds: every accepted name has exactly one kind, the light half stays
light (no environment imported to check a name or build a track layout), the actor's half covers it."""

from __future__ import annotations

import subprocess
import sys

import pytest
from tmrlx.actor.envs.kinds import ENV_KINDS, EnvKind, Lazy
from tmrlx.common.config import Config
from tmrlx.common.errors import ConfigError
from tmrlx.common.kinds import REGISTRY, interface_problem, kind_of, spec_from_config
from tmrlx.common.kinds.track import LAYOUTS, SIM_PREFIX, TM_PREFIX

TRACK_NAMES = [p + layout for p in (TM_PREFIX, SIM_PREFIX) for layout in LAYOUTS]
ACCEPTED = {**{n: "trackmania" for n in TRACK_NAMES[:3]}, **{n: "simulator" for n in TRACK_NAMES[3:]},
            "TM20IMAGES": "trackmania", "TM2020": "trackmania", "TM20_MYLIDAR": "trackmania",
            "GYM:Pendulum-v1": "gym", "GYM:CartPole": "gym", "GYM:ALE/Pong-v5": "gym",
            "mypkg.drone:DroneInterface": "custom", "tests.test_env:CountingInterface": "custom", "m:C": "custom"}
REJECTED = ["TM19FULL", "TM20-FULL", "SIMFULLX", "SIMIMAGES", "GYM:", "tm20full", "mypkg.drone", "mypkg:Drone-v1", ""]


@pytest.mark.parametrize(("name", "kind"), ACCEPTED.items())
def test_every_accepted_name_has_exactly_one_kind(name, kind):
    assert [k.name for k in REGISTRY if k.matches(name)] == [kind]
    assert kind_of(name).name == kind and interface_problem(name) is None
    Config.from_dict({"ENV": {"RTGYM_INTERFACE": name}})  # the schema's check accepts it


@pytest.mark.parametrize("name", REJECTED)
def test_an_unknown_name_lists_every_accepted_form(name):
    assert not any(k.matches(name) for k in REGISTRY)
    with pytest.raises(ConfigError) as err:
        kind_of(name)
    msg = str(err.value)
    assert "ENV.RTGYM_INTERFACE" in msg and repr(name) in msg
    for n in TRACK_NAMES:
        assert n in msg
    assert "'GYM:<gymnasium id>'" in msg and "'package.module:InterfaceClass'" in msg
    assert "any other TM20* name, e.g. TM20IMAGES, is the FULL layout" in msg
    assert interface_problem(name) in msg


@pytest.mark.parametrize(("name", "same_as"), [("TM20IMAGES", "TM20FULL"), ("TM2020", "TM20FULL"),
                                               ("TM20_MYLIDAR", "TM20LIDAR"), ("TM20XLIDARPROGRESS", "TM20LIDARPROGRESS")])
def test_trackmania_names_follow_tmrls_rule(name, same_as):
    """TMRL: a name ending in LIDARPROGRESS or LIDAR is that layout, any other is the full (images) layout."""
    layout = lambda n: spec_from_config(Config.from_dict({"ENV": {"RTGYM_INTERFACE": n}}))  # noqa: E731
    assert layout(name) == layout(same_as)


def test_kind_names_are_unique():
    assert len({k.name for k in REGISTRY}) == len(REGISTRY)


def test_clocks_and_options():
    sim, tm, gym, custom = (kind_of(n) for n in ("SIMLIDAR", "TM20LIDAR", "GYM:Pendulum-v1", "m:C"))
    assert sim.timing({}).lockstep and not sim.timing({"lockstep": False}).lockstep
    assert gym.timing({"steps_per_s": 50}) == (True, 50)
    assert not tm.timing({}).lockstep and not custom.timing({"lockstep": True}).lockstep  # real time, fixed
    assert sim.interface_options({"track": "hard"})["track"] == "hard"
    assert custom.interface_options({"anything": 1}) == {"anything": 1}  # the user's class checks its own
    with pytest.raises(ConfigError, match="unknown TrackMania option.*'lockstep'"):
        tm.interface_options({"lockstep": True})
    with pytest.raises(ConfigError, match="unknown GYM: environment option.*'track'"):
        gym.interface_options({"track": "easy"})
    with pytest.raises(ConfigError, match="'tcp' streams in real time"):
        sim.interface_options({"gamedata": "tcp"})
    with pytest.raises(ConfigError, match="steps_per_s"):
        gym.timing({"steps_per_s": True})


LIGHT = """
import sys
from tmrlx.common.config import load_config
from tmrlx.common.kinds import spec_from_config
for name in {names!r}:
    spec_from_config(load_config(overrides={{"ENV": {{"RTGYM_INTERFACE": name}}}}))
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("rtgym", "cv2", "gymnasium") or m.startswith("tmrlx.actor"))
print(heavy)
"""


def test_the_light_half_imports_no_environment():
    out = subprocess.run([sys.executable, "-c", LIGHT.format(names=TRACK_NAMES)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_checking_a_name_imports_no_numpy():
    code = "import sys; from tmrlx.common.config import Config; Config.from_dict({}); print('numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_actor_half_has_an_entry_for_every_kind():
    assert set(ENV_KINDS) == {k.name for k in REGISTRY}
    for entry in ENV_KINDS.values():
        assert isinstance(entry, EnvKind)
        for part in (entry.interface, entry.record, entry.scripted):
            if isinstance(part, Lazy):
                assert callable(part.load()), part.target  # every deferred import resolves
    assert ENV_KINDS["trackmania"].record and ENV_KINDS["simulator"].record and ENV_KINDS["simulator"].scripted

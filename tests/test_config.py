"""Config schema, TMRL compatibility, validation messages, CLI flags and precedence, install."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from tmrlx.common import paths
from tmrlx.common.config import SCHEMA, Config, defaults, load_config
from tmrlx.common.errors import ConfigError

from tmrlx.cli import main

SHARED = Path(__file__).resolve().parents[2] / "shared" / "tmrl-config.json"
ROOT = Path(__file__).resolve().parents[1]

# The reference table of TMRL's defaults (tmrl-config.md), written out independently of the schema.
REFERENCE = {
    "RUN_NAME": "SAC_4_imgs_pretrained", "RESET_TRAINING": False, "BUFFERS_MAXLEN": 500000,
    "RW_MAX_SAMPLES_PER_EPISODE": 1000, "CUDA_TRAINING": True, "CUDA_INFERENCE": False, "VIRTUAL_GAMEPAD": True,
    "LOCALHOST_WORKER": True, "LOCALHOST_TRAINER": True, "PUBLIC_IP_SERVER": "0.0.0.0",
    "PASSWORD": "YourRandomPasswordHere", "TLS": False, "TLS_HOSTNAME": "default", "TLS_CREDENTIALS_DIRECTORY": "",
    "NB_WORKERS": -1, "WANDB_PROJECT": "tmrl", "WANDB_ENTITY": "tmrl", "WANDB_KEY": "YourWandbApiKey", "PORT": 55555,
    "LOCAL_PORT_SERVER": 55556, "LOCAL_PORT_TRAINER": 55557, "LOCAL_PORT_WORKER": 55558, "BUFFER_SIZE": 536870912,
    "HEADER_SIZE": 12, "MAX_EPOCHS": 10000, "ROUNDS_PER_EPOCH": 100, "TRAINING_STEPS_PER_ROUND": 200,
    "MAX_TRAINING_STEPS_PER_ENVIRONMENT_STEP": 4.0, "ENVIRONMENT_STEPS_BEFORE_TRAINING": 1000,
    "UPDATE_MODEL_INTERVAL": 200, "UPDATE_BUFFER_INTERVAL": 200, "SAVE_MODEL_EVERY": 0, "MEMORY_SIZE": 1000000,
    "BATCH_SIZE": 256,
    "ALG": {"ALGORITHM": "SAC", "LEARN_ENTROPY_COEF": False, "LR_ACTOR": 0.00001, "LR_CRITIC": 0.00005,
            "LR_ENTROPY": 0.0003, "GAMMA": 0.995, "POLYAK": 0.995, "TARGET_ENTROPY": -0.5, "ALPHA": 0.01,
            "REDQ_N": 10, "REDQ_M": 2, "REDQ_Q_UPDATES_PER_POLICY_UPDATE": 20, "OPTIMIZER_ACTOR": "adam",
            "OPTIMIZER_CRITIC": "adam", "BETAS_ACTOR": [0.997, 0.997], "BETAS_CRITIC": [0.997, 0.997],
            "L2_ACTOR": 0.0, "L2_CRITIC": 0.0},
    "ENV": {"RTGYM_INTERFACE": "TM20FULL", "WINDOW_WIDTH": 256, "WINDOW_HEIGHT": 128, "IMG_WIDTH": 64,
            "IMG_HEIGHT": 64, "IMG_GRAYSCALE": True, "SLEEP_TIME_AT_RESET": 1.5, "IMG_HIST_LEN": 4,
            "RTGYM_CONFIG": {"time_step_duration": 0.05, "start_obs_capture": 0.04, "time_step_timeout_factor": 1.0,
                             "act_buf_len": 2, "benchmark": False, "wait_on_done": True, "ep_max_length": 1000,
                             "interface_kwargs": {"save_replays": False}},
            "REWARD_CONFIG": {"END_OF_TRACK": 100.0, "CONSTANT_PENALTY": 0.0, "CHECK_FORWARD": 500,
                              "CHECK_BACKWARD": 10, "FAILURE_COUNTDOWN": 10, "MIN_STEPS": 70, "MAX_STRAY": 100.0}},
    "__VERSION__": "0.6.0",
}


def test_defaults_equal_reference_table():
    assert defaults() == REFERENCE
    assert Config.from_dict({}).to_dict() == REFERENCE


def test_tmrl_config_json_loads_unchanged(tmp_path):
    src = SHARED if SHARED.exists() else None
    text = src.read_text() if src else json.dumps(REFERENCE)
    f = tmp_path / "config.json"
    f.write_text(text)
    cfg = load_config(f)
    assert cfg.to_dict() == json.loads(text)
    assert cfg.ALG.BETAS_ACTOR == (0.997, 0.997)
    assert cfg.ENV.RTGYM_CONFIG.time_step_duration == 0.05


# A TMRL config.json as users have it: TMRL's optional keys, an images interface under another name, TMRL's
# default target entropy, and rtgym keys TMRL passes through to rtgym.
WILD = {**REFERENCE, "DEBUG_MODE": True,
        "ALG": {**REFERENCE["ALG"], "TARGET_ENTROPY": None},
        "ENV": {**REFERENCE["ENV"], "RTGYM_INTERFACE": "TM20IMAGES", "LINUX_X_OFFSET": 10, "LINUX_Y_OFFSET": 30,
                "IMG_SCALE_CHECK_ENV": 2,
                "RTGYM_CONFIG": {**REFERENCE["ENV"]["RTGYM_CONFIG"], "reset_act_buf": False, "last_act_on_reset": True,
                                 "benchmark_polyak": 0.2, "benchmark_type": "trace", "act_in_obs": True,
                                 "interface": None, "interface_args": []}}}
OPTIONAL = ["DEBUG_MODE", "TENSORBOARD", "TRAINING_DEVICES", "ENV.LINUX_X_OFFSET", "ENV.LINUX_Y_OFFSET",
            "ENV.IMG_SCALE_CHECK_ENV", "ALG.CRITIC_LAYER_NORM",
            "ENV.RTGYM_CONFIG.benchmark_polyak", "ENV.RTGYM_CONFIG.benchmark_type", "ENV.RTGYM_CONFIG.reset_act_buf",
            "ENV.RTGYM_CONFIG.last_act_on_reset", "ENV.RTGYM_CONFIG.act_in_obs", "ENV.RTGYM_CONFIG.interface",
            "ENV.RTGYM_CONFIG.interface_args"]


def test_a_tmrl_config_from_the_wild_loads_with_tmrls_meanings(tmp_path):
    from tmrlx.common.kinds import spec_from_config

    cfg = load_config(_write(tmp_path / "config.json", WILD))
    assert cfg.to_dict() == json.loads(json.dumps(WILD))  # round-trips: the optional keys given are kept
    assert cfg.DEBUG_MODE is True and cfg.ALG.TARGET_ENTROPY is None
    assert (cfg.ENV.LINUX_X_OFFSET, cfg.ENV.LINUX_Y_OFFSET, cfg.ENV.IMG_SCALE_CHECK_ENV) == (10, 30, 2.0)
    rt = cfg.ENV.RTGYM_CONFIG
    assert (rt.reset_act_buf, rt.last_act_on_reset, rt.benchmark_polyak, rt.benchmark_type) == (False, True, 0.2, "trace")
    assert spec_from_config(cfg) == spec_from_config(cfg.replace({"ENV": {"RTGYM_INTERFACE": "TM20FULL"}}))


def test_optional_keys_read_with_tmrls_defaults_but_stay_out_of_a_fresh_file():
    cfg = Config.from_dict({})
    assert {k.path for k in SCHEMA if k.optional} == set(OPTIONAL)
    assert not any(_has(defaults(), path) for path in OPTIONAL) and set(OPTIONAL) <= set(cfg.flat())
    assert cfg.TENSORBOARD is True
    assert (cfg.DEBUG_MODE, cfg.ENV.LINUX_X_OFFSET, cfg.ENV.LINUX_Y_OFFSET, cfg.ENV.IMG_SCALE_CHECK_ENV) == (False, 64, 70, 1.0)
    rt = cfg.ENV.RTGYM_CONFIG
    assert (rt.reset_act_buf, rt.last_act_on_reset, rt.act_in_obs, rt.benchmark_polyak, rt.benchmark_type,
            rt.interface, rt.interface_args) == (True, False, True, 0.1, "polyak", None, ())  # rtgym's defaults
    assert "DEBUG_MODE" in cfg.replace({"DEBUG_MODE": False}).replace({"BATCH_SIZE": 2}).to_dict()  # given: kept


def test_debug_mode_logs_at_debug_level(tmp_path, capsys, monkeypatch):
    import logging

    monkeypatch.setenv("TMRLX_DATA", str(tmp_path))
    assert main(["config", "show", "--debug-mode"]) == 0
    assert logging.getLogger("tmrlx").level == logging.DEBUG and json.loads(capsys.readouterr().out)["DEBUG_MODE"]
    assert main(["config", "show"]) == 0
    assert logging.getLogger("tmrlx").level == logging.INFO


def _has(tree: dict, path: str) -> bool:
    *parents, leaf = path.split(".")
    for p in parents:
        tree = tree[p]
    return leaf in tree


def test_config_is_immutable():
    cfg = Config.from_dict({})
    with pytest.raises(AttributeError):
        cfg.BATCH_SIZE = 3
    with pytest.raises(TypeError):
        cfg.ENV.RTGYM_CONFIG.interface_kwargs["x"] = 1
    assert cfg.replace({"BATCH_SIZE": 3}).BATCH_SIZE == 3 and cfg.BATCH_SIZE == 256


@pytest.mark.parametrize("tree, words", [
    ({"BATCH_SIZE": "big"}, ["BATCH_SIZE", "'big'", "int"]),
    ({"BATCH_SIZE": True}, ["BATCH_SIZE", "True", "int"]),
    ({"ALG": {"GAMMA": 1.5}}, ["ALG.GAMMA", "1.5", "<= 1.0"]),
    ({"PORT": 0}, ["PORT", "0", "port"]),
    ({"BATCH_SIZ": 3}, ["BATCH_SIZ", "Did you mean 'BATCH_SIZE'"]),
    ({"ALG": {"ALGORITM": "SAC"}}, ["ALG.ALGORITM", "Did you mean 'ALGORITHM'"]),
    ({"ALG": {"ALGORITHM": "PPO"}}, ["ALG.ALGORITHM", "'PPO'", "'SAC'", "'REDQSAC'"]),
    ({"ALG": {"OPTIMIZER_ACTOR": "rmsprop"}}, ["ALG.OPTIMIZER_ACTOR", "adamw"]),
    ({"ENV": {"RTGYM_INTERFACE": "TM19FULL"}}, ["ENV.RTGYM_INTERFACE", "TM20LIDAR", "TM20IMAGES", "GYM:"]),
    ({"ALG": {"TARGET_ENTROPY": "auto"}}, ["ALG.TARGET_ENTROPY", "'auto'", "number or null"]),
    ({"ENV": {"RTGYM_CONFIG": {"act_in_obs": False}}}, ["ENV.RTGYM_CONFIG.act_in_obs", "False", "expected true",
                                                       "always end with the act_buf_len last actions"]),
    ({"ENV": {"RTGYM_CONFIG": {"interface_args": [1]}}}, ["interface_args", "[1]", "expected []", "interface_kwargs"]),
    ({"ENV": {"RTGYM_CONFIG": {"interface": "mypkg:Iface"}}}, ["RTGYM_CONFIG.interface", "expected null",
                                                              "ENV.RTGYM_INTERFACE"]),
    ({"ENV": {"RTGYM_CONFIG": {"benchmark_polyak": 0}}}, ["benchmark_polyak", "> 0.0"]),
    ({"ENV": {"RTGYM_CONFIG": {"reset_act_bufs": False}}}, ["reset_act_bufs", "Did you mean 'reset_act_buf'"]),
    ({"ALG": {"BETAS_ACTOR": [0.9]}}, ["ALG.BETAS_ACTOR", "two numbers"]),
    ({"ENV": 3}, ["ENV", "section"]),
    ({"__VERSION__": "0.4.0"}, ["__VERSION__", "'0.4.0'", "0.6.0"]),
])
def test_bad_values_name_key_value_and_expectation(tree, words):
    with pytest.raises(ConfigError) as e:
        Config.from_dict(tree)
    for w in words:
        assert w in str(e.value)


def test_every_key_has_a_flag_and_help():
    flags = [k.flag for k in SCHEMA]
    assert len(set(flags)) == len(flags)
    assert "--batch-size" in flags and "--alg.algorithm" in flags
    assert "--env.rtgym-config.time-step-duration" in flags


def _write(path: Path, tree: dict) -> Path:
    path.write_text(json.dumps(tree))
    return path


def test_precedence_defaults_file_literal_flags(tmp_path, capsys):
    f = _write(tmp_path / "c.json", {**REFERENCE, "BATCH_SIZE": 64, "MEMORY_SIZE": 5, "ALG": {"GAMMA": 0.9}})
    assert main(["config", "show", "--config-file", str(f)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["BATCH_SIZE"], shown["MEMORY_SIZE"], shown["ALG"]["GAMMA"]) == (64, 5, 0.9)
    assert shown["ALG"]["LR_ACTOR"] == 0.00001  # a partial section keeps the other defaults

    argv = ["config", "show", "--config-file", str(f), "--config", "{'BATCH_SIZE': 128, 'ALG': {'ALGORITHM': 'REDQSAC'}}",
            "--batch-size", "512", "--env.rtgym-config.time-step-duration", "0.02", "--tls", "--alg.betas-actor",
            "0.9", "0.99"]
    assert main(argv) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["BATCH_SIZE"] == 512 and shown["MEMORY_SIZE"] == 5
    assert shown["ALG"]["ALGORITHM"] == "REDQSAC" and shown["ALG"]["BETAS_ACTOR"] == [0.9, 0.99]
    assert shown["ENV"]["RTGYM_CONFIG"]["time_step_duration"] == 0.02 and shown["TLS"] is True


def test_config_literal_is_never_evaluated(tmp_path, capsys):
    marker = tmp_path / "pwned"
    code = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    assert main(["config", "show", "--config", code]) == 2
    assert not marker.exists()
    assert "--config" in capsys.readouterr().err


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tmrlx", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **(env or {})}, timeout=120)


@pytest.mark.parametrize("content, words", [
    ('{"BATCH_SIZE": 256,, }', ["not valid JSON", "line 1"]),
    (json.dumps({**REFERENCE, "__VERSION__": "0.3.0"}), ["__VERSION__", "0.3.0"]),
    (json.dumps({k: v for k, v in REFERENCE.items() if k != "__VERSION__"}), ["__VERSION__", "missing"]),
    (json.dumps({**REFERENCE, "MEMORY_SIZE": -1}), ["MEMORY_SIZE", "-1", ">= 1"]),
    (json.dumps({**REFERENCE, "EPOCHS": 3}), ["EPOCHS", "Did you mean"]),
    (json.dumps({**WILD, "ENV": {**WILD["ENV"], "RTGYM_CONFIG": {"act_in_obs": False}}}),
     ["ENV.RTGYM_CONFIG.act_in_obs", "False", "expected true", "the layout actors, broker and learner share"]),
])
def test_bad_config_file_exits_nonzero_without_traceback(tmp_path, content, words):
    f = tmp_path / "config.json"
    f.write_text(content)
    r = _cli("config", "show", "--config-file", str(f))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    for w in words:
        assert w in r.stderr


def test_bad_flag_value_names_the_key():
    r = _cli("config", "show", "--alg.algorithm", "PPO", env={"TMRLX_DATA": "/nonexistent-tmrlx"})
    assert r.returncode == 2 and "ALG.ALGORITHM" in r.stderr and "Traceback" not in r.stderr


def test_help_lists_commands_and_flags():
    r = _cli("--help")
    assert r.returncode == 0 and "learner" in r.stdout and "broker" in r.stdout and "actor" in r.stdout
    r = _cli("install", "--help")
    assert r.returncode == 0 and "--batch-size" in r.stdout and "--alg.lr-actor" in r.stdout


def test_install_is_idempotent_and_keeps_user_config(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TMRLX_DATA", str(tmp_path / "data"))
    for home in ("HOME", "USERPROFILE"):  # install also copies its plugin into ~/OpenplanetNext when it exists
        monkeypatch.setenv(home, str(tmp_path))
    assert main(["install"]) == 0
    assert str(tmp_path / "data") in capsys.readouterr().out
    for sub in ("config", "weights", "checkpoints", "reward", "dataset", "resources"):
        assert (tmp_path / "data" / sub).is_dir()
    cfg = paths.config_path()
    assert json.loads(cfg.read_text()) == REFERENCE
    edited = {**REFERENCE, "BATCH_SIZE": 7}
    cfg.write_text(json.dumps(edited))
    assert main(["install"]) == 0
    assert json.loads(cfg.read_text()) == edited
    for f in (tmp_path / "data" / "resources").glob("*.json"):
        load_config(f)  # every example config is valid
    capsys.readouterr()
    assert main(["config", "show"]) == 0  # the data folder's config is the default config file
    assert json.loads(capsys.readouterr().out)["BATCH_SIZE"] == 7


def test_docs_config_table_is_current(capsys):
    assert main(["config", "table"]) == 0
    table = capsys.readouterr().out.strip()
    assert table in (ROOT / "docs" / "config.md").read_text(), "regenerate docs/config.md with `tmrlx config table`"


@pytest.mark.parametrize("flag, command", [("--server", "broker"), ("--trainer", "learner"), ("--worker", "actor"),
                                           ("--install", "install"), ("--check-environment", "check-environment")])
def test_tmrl_invocations_run_the_matching_command(flag, command):
    from tmrlx.cli import from_tmrl

    assert from_tmrl([flag, "--wandb"]) == ([command, "--wandb"], flag)
    assert from_tmrl(["learner", "--batch-size", "8"]) == (["learner", "--batch-size", "8"], None)  # tmrlx's own: unchanged


def test_python_m_tmrlx_takes_tmrls_flags_and_says_the_tmrlx_name():
    r = _cli("--server", "--help")
    assert r.returncode == 0 and "route samples" in r.stdout, r.stderr


def test_the_justfile_runs_under_powershell_too():
    """PowerShell cannot run here: read the justfile for a Windows shell and recipe lines free of sh-only syntax."""
    text = (ROOT / "justfile").read_text()
    assert re.search(r"^set windows-shell := \[\"powershell", text, re.M)
    recipe_lines = [line for line in text.splitlines() if line.startswith("    ")]
    sh_only = [line for line in recipe_lines if re.search(r'"\$@"|\$\{|\bshift\b|\$\(|&&|\|\||;\s', line)]
    assert recipe_lines and not sh_only, sh_only
    assert "positional-arguments" not in text


def test_interface_kwargs_overrides_merge_for_the_same_interface_and_replace_for_a_new_one():
    cfg = load_config(overrides={"ENV": {"RTGYM_INTERFACE": "SIMLIDAR",
                                         "RTGYM_CONFIG": {"interface_kwargs": {"lockstep": True, "track": "easy"}}}})
    assert cfg.ENV.RTGYM_CONFIG.interface_kwargs == {"lockstep": True, "track": "easy"}  # a new interface: replaced
    medium = cfg.replace({"ENV": {"RTGYM_CONFIG": {"interface_kwargs": {"track": "medium"}}}})
    assert medium.ENV.RTGYM_CONFIG.interface_kwargs == {"lockstep": True, "track": "medium"}
    same = cfg.replace({"ENV": {"RTGYM_INTERFACE": "SIMLIDAR", "RTGYM_CONFIG": {"interface_kwargs": {"seed": 1}}}})
    assert same.ENV.RTGYM_CONFIG.interface_kwargs == {"lockstep": True, "track": "easy", "seed": 1}
    gym = cfg.replace({"ENV": {"RTGYM_INTERFACE": "GYM:Pendulum-v1", "RTGYM_CONFIG": {"interface_kwargs": {"lockstep": True}}}})
    assert gym.ENV.RTGYM_CONFIG.interface_kwargs == {"lockstep": True}
    assert cfg.ENV.RTGYM_CONFIG.interface_kwargs == {"lockstep": True, "track": "easy"}  # the base is unchanged

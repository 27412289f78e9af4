"""The `config.json` schema: TMRL's keys, their defaults, validation and immutable access.

A TMRL 0.6.x `config.json` loads unchanged. Every error names the key, the value and what was
expected, so a user never has to read a traceback to fix their file.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from tmrlx.common.errors import ConfigError
from tmrlx.common.kinds import interface_problem

SUPPORTED_VERSIONS = re.compile(r"^0\.(6|7)\.\d+$")
CURRENT_VERSION = "0.6.0"

ALGORITHMS = ("SAC", "REDQSAC")
SECRET_KEYS = ("PASSWORD", "WANDB_KEY")  # never written to checkpoints, logs, metrics or wandb
REDACTED = "<redacted>"
OPTIMIZERS = ("adam", "adamw", "sgd")


@dataclass(frozen=True)
class Key:
    """One leaf of the schema: its dotted path, type, default, check and meaning."""

    path: str
    type: type | tuple[type, ...]
    default: Any
    help: str
    check: Callable[[Any], str | None] | None = None
    optional: bool = False  # not in TMRL's default file: `defaults()` omits it, loading accepts it

    @property
    def flag(self) -> str:
        """Command-line flag: `ALG.LR_ACTOR` -> `--alg.lr-actor`."""
        return "--" + self.path.lower().replace("_", "-")


def _range(lo: float | None = None, hi: float | None = None, lo_open: bool = False) -> Callable:
    def check(v: Any) -> str | None:
        if lo is not None and (v <= lo if lo_open else v < lo):
            return f"a number {'>' if lo_open else '>='} {lo}" + (f" and <= {hi}" if hi is not None else "")
        if hi is not None and v > hi:
            return f"a number <= {hi}" + (f" and >= {lo}" if lo is not None else "")
        return None

    return check


def _enum(*choices: str) -> Callable:
    def check(v: Any) -> str | None:
        return None if v in choices else "one of " + ", ".join(repr(c) for c in choices)

    return check


def _port(v: int) -> str | None:
    return None if 1 <= v <= 65535 else "a TCP port in 1..65535"


def _pair_of_betas(v: Any) -> str | None:
    ok = isinstance(v, (list, tuple)) and len(v) == 2 and all(
        isinstance(b, (int, float)) and not isinstance(b, bool) and 0.0 <= b < 1.0 for b in v
    )
    return None if ok else "a list of two numbers in [0, 1)"


def _devices(v: Any) -> str | None:
    return None if v == "auto" or (isinstance(v, int) and v >= 1) else "'auto' or a number of devices >= 1"


def _dict(v: Any) -> str | None:
    return None if isinstance(v, dict) else "a JSON object"


def _layout_kept(reason: str) -> Callable:
    """rtgym keys whose other value would change the observation layout all roles share: only rtgym's default."""
    def check(v: Any) -> str | None:
        return None if v is True else f"true ({reason})"

    return check


def _placeholder(empty: Any, reason: str) -> Callable:
    """rtgym keys tmrlx fills itself: their empty value is accepted, anything else is refused with the reason."""
    def check(v: Any) -> str | None:
        return None if v == empty else f"{json.dumps(empty)} ({reason})"

    return check


NUM = (int, float)
NULL = type(None)
SCHEMA: tuple[Key, ...] = (
    Key("RUN_NAME", str, "SAC_4_imgs_pretrained", "experiment name (names checkpoints, weights and logs)",
        lambda v: None if re.fullmatch(r"[\w.\-]+", v) else "letters, digits, '_', '-' or '.' only"),
    Key("RESET_TRAINING", bool, False, "restart the model from scratch, keeping the replay memory"),
    Key("BUFFERS_MAXLEN", int, 500000, "samples the broker holds for the learner before actors get no more credit",
        _range(1)),
    Key("RW_MAX_SAMPLES_PER_EPISODE", int, 1000, "actors truncate episodes longer than this", _range(1)),
    Key("CUDA_TRAINING", bool, True, "train on the GPU when one is present"),
    Key("TRAINING_DEVICES", (str, int), "auto", "devices the learner trains on in data parallel (each batch split "
        "across them): 'auto' (every GPU; one device on the CPU) or a number", _devices, optional=True),
    Key("CUDA_INFERENCE", bool, False, "accepted for TMRL compatibility: actors run NumPy on the CPU"),
    Key("VIRTUAL_GAMEPAD", bool, True, "TrackMania: drive with vgamepad (else the keyboard)"),
    Key("LOCALHOST_WORKER", bool, True, "actors connect to 127.0.0.1 (else to PUBLIC_IP_SERVER)"),
    Key("LOCALHOST_TRAINER", bool, True, "the learner connects to 127.0.0.1 (else to PUBLIC_IP_SERVER)"),
    Key("PUBLIC_IP_SERVER", str, "0.0.0.0", "address of the broker when it is not on this machine"),
    Key("PASSWORD", str, "YourRandomPasswordHere", "shared secret: must match on every machine",
        lambda v: None if v else "a non-empty string"),
    Key("TLS", bool, False, "encrypt and authenticate every connection with CurveZMQ"),
    Key("TLS_HOSTNAME", str, "default", "accepted for TMRL compatibility (CurveZMQ needs no hostname)"),
    Key("TLS_CREDENTIALS_DIRECTORY", str, "", "folder of CurveZMQ keys from `tmrlx keys` (empty: derive from PASSWORD)"),
    Key("NB_WORKERS", int, -1, "most actors connected at once (-1: no cap)",
        lambda v: None if v == -1 or v >= 1 else "-1 (no cap) or a number >= 1"),
    Key("WANDB_PROJECT", str, "tmrl", "wandb project (with --wandb)"),
    Key("WANDB_ENTITY", str, "tmrl", "wandb entity (with --wandb)"),
    Key("WANDB_KEY", str, "YourWandbApiKey", "wandb API key (with --wandb)"),
    Key("TENSORBOARD", bool, True, "the learner also writes TensorBoard event files beside its metrics "
        "(logs/RUN_NAME/ in the data folder)", optional=True),
    Key("PORT", int, 55555, "the broker's port", _port),
    Key("LOCAL_PORT_SERVER", int, 55556, "accepted for TMRL compatibility (unused: one port serves all)", _port),
    Key("LOCAL_PORT_TRAINER", int, 55557, "accepted for TMRL compatibility (unused: clients need no port)", _port),
    Key("LOCAL_PORT_WORKER", int, 55558, "accepted for TMRL compatibility (unused: many actors share a machine freely)", _port),
    Key("BUFFER_SIZE", int, 536870912, "largest message accepted, in bytes", _range(1024)),
    Key("HEADER_SIZE", int, 12, "accepted for TMRL compatibility (framing is ZeroMQ's)", _range(1)),
    Key("MAX_EPOCHS", int, 10000, "training epochs (checkpoint after each)", _range(1)),
    Key("ROUNDS_PER_EPOCH", int, 100, "rounds per epoch (metrics after each)", _range(1)),
    Key("TRAINING_STEPS_PER_ROUND", int, 200, "training steps per round", _range(1)),
    Key("MAX_TRAINING_STEPS_PER_ENVIRONMENT_STEP", NUM, 4.0, "pause training above this many updates per sample",
        _range(0.0, lo_open=True)),
    Key("ENVIRONMENT_STEPS_BEFORE_TRAINING", int, 1000, "samples to collect before training starts", _range(0)),
    Key("UPDATE_MODEL_INTERVAL", int, 200, "publish weights every this many training steps", _range(1)),
    Key("UPDATE_BUFFER_INTERVAL", int, 200, "pull new samples every this many training steps", _range(1)),
    Key("SAVE_MODEL_EVERY", int, 0, "keep a copy of the weights every this many publications (0: none)", _range(0)),
    Key("MEMORY_SIZE", int, 1000000, "replay memory capacity (samples)", _range(1)),
    Key("BATCH_SIZE", int, 256, "training batch size", _range(1)),
    Key("DEBUG_MODE", bool, False, "log at debug level (TMRL: print debug information)", optional=True),
    Key("ALG.ALGORITHM", str, "SAC", "training algorithm", _enum(*ALGORITHMS)),
    Key("ALG.LEARN_ENTROPY_COEF", bool, False, "learn the entropy coefficient (SACv2)"),
    Key("ALG.LR_ACTOR", NUM, 0.00001, "actor learning rate", _range(0.0, lo_open=True)),
    Key("ALG.LR_CRITIC", NUM, 0.00005, "critic learning rate", _range(0.0, lo_open=True)),
    Key("ALG.LR_ENTROPY", NUM, 0.0003, "entropy coefficient learning rate (SACv2)", _range(0.0, lo_open=True)),
    Key("ALG.GAMMA", NUM, 0.995, "discount factor", _range(0.0, 1.0)),
    Key("ALG.POLYAK", NUM, 0.995, "target critic averaging factor", _range(0.0, 1.0)),
    Key("ALG.TARGET_ENTROPY", (int, float, NULL), -0.5, "target entropy (SACv2); null: TMRL's default, minus the "
        "action dimension (-3 for TrackMania)"),
    Key("ALG.ALPHA", NUM, 0.01, "entropy coefficient (constant, or initial for SACv2)", _range(0.0, lo_open=True)),
    Key("ALG.REDQ_N", int, 10, "number of critics (REDQSAC)", _range(2)),
    Key("ALG.REDQ_M", int, 2, "critics in the random target subset (REDQSAC)", _range(1)),
    Key("ALG.REDQ_Q_UPDATES_PER_POLICY_UPDATE", int, 20, "critic updates per policy update (REDQSAC)", _range(1)),
    Key("ALG.OPTIMIZER_ACTOR", str, "adam", "actor optimizer", _enum(*OPTIMIZERS)),
    Key("ALG.OPTIMIZER_CRITIC", str, "adam", "critic optimizer", _enum(*OPTIMIZERS)),
    Key("ALG.BETAS_ACTOR", list, [0.997, 0.997], "actor Adam betas", _pair_of_betas),
    Key("ALG.BETAS_CRITIC", list, [0.997, 0.997], "critic Adam betas", _pair_of_betas),
    Key("ALG.L2_ACTOR", NUM, 0.0, "actor weight decay", _range(0.0)),
    Key("ALG.L2_CRITIC", NUM, 0.0, "critic weight decay", _range(0.0)),
    Key("ALG.CRITIC_LAYER_NORM", bool, False, "tmrlx: LayerNorm after each hidden layer of the critics (steadier "
        "Q values late in training; TMRL's critics have none)", optional=True),
    Key("ENV.RTGYM_INTERFACE", str, "TM20FULL", "environment", interface_problem),
    Key("ENV.WINDOW_WIDTH", int, 256, "game window width (px)", _range(16)),
    Key("ENV.WINDOW_HEIGHT", int, 128, "game window height (px)", _range(16)),
    Key("ENV.IMG_WIDTH", int, 64, "model image width (px)", _range(8)),
    Key("ENV.IMG_HEIGHT", int, 64, "model image height (px)", _range(8)),
    Key("ENV.IMG_GRAYSCALE", bool, True, "grayscale images"),
    Key("ENV.SLEEP_TIME_AT_RESET", NUM, 1.5, "seconds to wait for the green light after respawn", _range(0.0)),
    Key("ENV.IMG_HIST_LEN", int, 4, "length of the image/lidar history fed to the model", _range(1)),
    Key("ENV.LINUX_X_OFFSET", int, 64, "Linux (Proton): horizontal window decoration offset of the screen grab (px)",
        _range(0), optional=True),
    Key("ENV.LINUX_Y_OFFSET", int, 70, "Linux (Proton): vertical window decoration offset of the screen grab (px)",
        _range(0), optional=True),
    Key("ENV.IMG_SCALE_CHECK_ENV", NUM, 1.0, "scale of the picture check-environment writes (TMRL: of its display "
        "window)", _range(0.0, lo_open=True), optional=True),
    Key("ENV.RTGYM_CONFIG.time_step_duration", NUM, 0.05, "real-time step duration (s)", _range(0.0, lo_open=True)),
    Key("ENV.RTGYM_CONFIG.start_obs_capture", NUM, 0.04, "observation capture starts this long into a step (s)",
        _range(0.0)),
    Key("ENV.RTGYM_CONFIG.time_step_timeout_factor", NUM, 1.0, "allowed elasticity of a time step", _range(1.0)),
    Key("ENV.RTGYM_CONFIG.act_buf_len", int, 2, "past actions appended to each observation", _range(0)),
    Key("ENV.RTGYM_CONFIG.benchmark", bool, False, "collect rtgym time-step statistics"),
    Key("ENV.RTGYM_CONFIG.benchmark_polyak", NUM, 0.1, "rtgym: running-average factor of the benchmark statistics",
        _range(0.0, 1.0, lo_open=True), optional=True),
    Key("ENV.RTGYM_CONFIG.benchmark_type", str, "polyak", "rtgym: 'polyak' (running averages) or 'trace' (timing "
        "histories, summarised by `tmrlx benchmark`)", _enum("polyak", "trace"), optional=True),
    Key("ENV.RTGYM_CONFIG.wait_on_done", bool, True, "call the interface's wait() at the end of an episode"),
    Key("ENV.RTGYM_CONFIG.ep_max_length", int, 1000, "rtgym truncates episodes after this many steps", _range(1)),
    Key("ENV.RTGYM_CONFIG.reset_act_buf", bool, True, "rtgym: reset() refills the action buffer with default actions "
        "(false: it keeps the previous episode's actions)", optional=True),
    Key("ENV.RTGYM_CONFIG.last_act_on_reset", bool, False, "rtgym, with reset_act_buf false: reset() applies the "
        "episode's last (never applied) action instead of the default action", optional=True),
    Key("ENV.RTGYM_CONFIG.act_in_obs", bool, True, "rtgym: append the action buffer to observations (must stay true)",
        _layout_kept("tmrlx observations always end with the act_buf_len last actions: the layout actors, broker "
                     "and learner share"), optional=True),
    Key("ENV.RTGYM_CONFIG.interface", (str, NULL), None, "rtgym's interface class: null only (tmrlx builds the "
        "interface from ENV.RTGYM_INTERFACE)", _placeholder(None, "tmrlx builds the interface from "
                                                             "ENV.RTGYM_INTERFACE: name it there"), optional=True),
    Key("ENV.RTGYM_CONFIG.interface_args", list, [], "rtgym's positional interface arguments: [] only (tmrlx passes "
        "interface_kwargs)", _placeholder([], "tmrlx passes no positional arguments to interfaces: use "
                                              "interface_kwargs"), optional=True),
    Key("ENV.RTGYM_CONFIG.interface_kwargs", dict, {"save_replays": False},
        "extra arguments of the interface (e.g. lockstep, track for the simulator)", _dict),
    Key("ENV.REWARD_CONFIG.END_OF_TRACK", NUM, 100.0, "reward for crossing the finish line"),
    Key("ENV.REWARD_CONFIG.CONSTANT_PENALTY", NUM, 0.0, "reward added every step"),
    Key("ENV.REWARD_CONFIG.CHECK_FORWARD", int, 500, "trajectory points searched ahead", _range(1)),
    Key("ENV.REWARD_CONFIG.CHECK_BACKWARD", int, 10, "trajectory points searched behind", _range(0)),
    Key("ENV.REWARD_CONFIG.FAILURE_COUNTDOWN", int, 10, "steps without progress before termination", _range(1)),
    Key("ENV.REWARD_CONFIG.MIN_STEPS", int, 70, "steps before an episode may be terminated", _range(0)),
    Key("ENV.REWARD_CONFIG.MAX_STRAY", NUM, 100.0, "distance from the trajectory that ends an episode (m)",
        _range(0.0, lo_open=True)),
    Key("__VERSION__", str, CURRENT_VERSION, "TMRL config version (compatibility check, do not modify)",
        lambda v: None if SUPPORTED_VERSIONS.match(v) else "a TMRL 0.6.x or 0.7.x config version such as '0.6.0'"),
)
KEYS: Mapping[str, Key] = MappingProxyType({k.path: k for k in SCHEMA})
SECTIONS = ("ALG", "ENV", "ENV.RTGYM_CONFIG", "ENV.REWARD_CONFIG")


def defaults() -> dict:
    """A fresh nested dict of TMRL's defaults (what `tmrlx install` writes): the keys of TMRL's own file."""
    out: dict = {}
    for key in SCHEMA:
        if not key.optional:
            _set(out, key.path, json.loads(json.dumps(key.default)))
    return out


def _set(tree: dict, path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    for p in parents:
        tree = tree.setdefault(p, {})
    tree[leaf] = value


def _unknown(path: str, known: list[str]) -> ConfigError:
    leaf = path.rsplit(".", 1)[-1]
    hint = difflib.get_close_matches(leaf, known, n=1, cutoff=0.6)
    suggestion = f" Did you mean {hint[0]!r}?" if hint else ""
    return ConfigError(f"unknown config key {path!r}.{suggestion}")


def _flatten(tree: Mapping, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Yield (dotted path, value) for every leaf; sections are walked, unknown keys raise."""
    for name, value in tree.items():
        path = f"{prefix}{name}"
        if path in SECTIONS:
            if not isinstance(value, Mapping):
                raise ConfigError(f"config key {path!r} has value {value!r}: expected a JSON object (section)")
            yield from _flatten(value, path + ".")
        elif path in KEYS:
            yield path, value
        else:
            siblings = [k.path[len(prefix):] for k in SCHEMA if k.path.startswith(prefix) and "." not in
                        k.path[len(prefix):]] + [s[len(prefix):] for s in SECTIONS if s.startswith(prefix)]
            raise _unknown(path, siblings)


def _coerce(key: Key, value: Any) -> Any:
    """Check a value's type (ints are accepted for floats, bools are never numbers, null only where typed so)."""
    expected = key.type if isinstance(key.type, tuple) else (key.type,)
    ok = isinstance(value, expected) and not (isinstance(value, bool) and bool not in expected)
    if key.type is list and isinstance(value, tuple):
        value, ok = list(value), True
    if not ok:
        names = " or ".join({float: "number", NULL: "null"}.get(t, t.__name__) for t in expected
                            if t is not int or float not in expected)
        raise ConfigError(f"config key {key.path!r} has value {value!r}: expected a {names}")
    if float in expected and isinstance(value, int):
        value = float(value)
    problem = key.check(value) if key.check else None
    if problem:
        raise ConfigError(f"config key {key.path!r} has value {value!r}: expected {problem}")
    return value


class Section(Mapping):
    """A read-only view of one level of the config: `cfg.ALG.LR_ACTOR` or `cfg["ALG"]["LR_ACTOR"]`."""

    def __init__(self, data: Mapping[str, Any]):
        object.__setattr__(self, "_data", MappingProxyType(dict(data)))

    def __getattr__(self, name: str) -> Any:
        try:
            return self._data[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("the config is immutable once loaded; use Config.replace()")

    def __getitem__(self, name: str) -> Any:
        return self._data[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.to_dict()!r})"

    def to_dict(self) -> dict:
        """A plain, mutable, JSON-serialisable copy."""
        return {k: (v.to_dict() if isinstance(v, Section) else _thaw(v)) for k, v in self._data.items()}


def _thaw(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_thaw(x) for x in v]
    if isinstance(v, Mapping):
        return {k: _thaw(x) for k, x in v.items()}
    return v


def _freeze(v: Any) -> Any:
    if isinstance(v, list):
        return tuple(_freeze(x) for x in v)
    if isinstance(v, dict):
        return MappingProxyType({k: _freeze(x) for k, x in v.items()})
    return v


class Config(Section):
    """The validated, immutable configuration every role runs with.

    Every key reads as an attribute, optional ones included (their default unless given); `to_dict()` holds
    TMRL's keys plus the optional keys that were given, so a TMRL file round-trips unchanged.
    """

    _given: frozenset[str] = frozenset()  # optional keys set by a file, --config or a flag

    @classmethod
    def from_dict(cls, tree: Mapping, base: Config | None = None, require_version: bool = False) -> Config:
        """Validate `tree` (full or partial) on top of `base` (defaults when None). On a base, `interface_kwargs` given
        for the same interface are merged into the base's (overriding `track` keeps `lockstep`); with a new
        RTGYM_INTERFACE they replace them (the old interface's options would not fit)."""
        if not isinstance(tree, Mapping):
            raise ConfigError(f"the config must be a JSON object, got {type(tree).__name__}")
        if require_version and "__VERSION__" not in tree:
            raise ConfigError("config key '__VERSION__' is missing: expected a TMRL config version such as '0.6.0'")
        flat = dict(base.flat() if base is not None else ((k.path, k.default) for k in SCHEMA))
        given = set(base._given if base is not None else ())
        items = dict(_flatten(tree))
        interface = "ENV.RTGYM_INTERFACE"
        same_interface = base is not None and items.get(interface, flat[interface]) == flat[interface]
        for path, value in items.items():
            if same_interface and KEYS[path].type is dict and isinstance(value, Mapping):
                value = {**flat[path], **value}
            flat[path] = _coerce(KEYS[path], value)
            if KEYS[path].optional:
                given.add(path)
        nested: dict = {}
        for path, value in flat.items():
            _set(nested, path, _freeze(value))
        return cls._build(nested, frozenset(given))

    @classmethod
    def _build(cls, nested: dict, given: frozenset[str]) -> Config:
        def section(d: dict, kind: type) -> Section:
            return kind({k: section(v, Section) if isinstance(v, dict) else v for k, v in d.items()})

        built = section(nested, cls)
        assert isinstance(built, Config)
        object.__setattr__(built, "_given", given)
        return built

    def flat(self) -> dict[str, Any]:
        """{dotted path: value} for every key."""
        out = {}
        for key in SCHEMA:
            node: Any = self
            for part in key.path.split("."):
                node = node[part]
            out[key.path] = _thaw(node)
        return out

    def to_dict(self) -> dict:
        """A plain, mutable, JSON-serialisable copy: TMRL's keys and the optional keys given."""
        out: dict = {}
        for path, value in self.flat().items():
            if not KEYS[path].optional or path in self._given:
                _set(out, path, value)
        return out

    def replace(self, overrides: Mapping) -> Config:
        """A new config with a (partial, nested) dict of overrides applied and validated."""
        return Config.from_dict(overrides, base=self)

    def without_secrets(self) -> dict:
        """`to_dict()` with every secret replaced by a marker: what may reach checkpoints, logs, metrics or wandb."""
        out = self.to_dict()
        for key in SECRET_KEYS:
            out[key] = REDACTED
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def parse_json_file(path: Path) -> dict:
    """Read a JSON file, turning syntax errors into a message with the line and column."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise ConfigError(f"cannot read config file {str(path)!r}: {e.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}"
                          " (config.json allows no comments; restore it from the resources/ folder)") from None


def load_config(path: Path | None = None, overrides: Mapping | None = None) -> Config:
    """Defaults < config.json at `path` (if given) < `overrides`."""
    cfg = Config.from_dict({})
    if path is not None:
        cfg = Config.from_dict(parse_json_file(path), require_version=True)
    if overrides:
        cfg = cfg.replace(overrides)
    return cfg

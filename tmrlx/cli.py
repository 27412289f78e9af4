"""`tmrlx`: one entry point, one subcommand per role; every config key is a flag on every subcommand.

Precedence: defaults < config.json < --config='{...}' < individual flags. Role modules are imported
only when their subcommand runs, so `tmrlx actor` never imports JAX.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tmrlx.common import paths
from tmrlx.common.config import NULL, SCHEMA, Config, Key, load_config
from tmrlx.common.errors import ConfigError
from tmrlx.log import setup as setup_logging

log = logging.getLogger("tmrlx")


@dataclass(frozen=True)
class Command:
    """A subcommand: the module whose `run(cfg, args)` it calls (and `add_arguments(parser)` if any).

    A command that works on files before any config exists (`needs_config` false: install, import-tmrl)
    is called as `run(args)`, so a missing or broken config.json never stops it.
    """

    module: str
    help: str
    aliases: tuple[str, ...] = ()
    needs_config: bool = True


COMMANDS: dict[str, Command] = {
    "broker": Command("tmrlx.broker.main", "route samples from actors to the learner and weights back", ("server",)),
    "learner": Command("tmrlx.learner.main", "train SAC / REDQ-SAC on the samples the broker forwards", ("trainer",)),
    "actor": Command("tmrlx.actor.main", "step the environment with the latest policy and send samples", ("worker",)),
    "test": Command("tmrlx.actor.main", "run the deterministic policy and print episode returns (sends nothing)"),
    "expert": Command("tmrlx.actor.main", "send samples from a fixed policy, ignoring weight updates"),
    "install": Command("tmrlx.install", "create the data folder, its default config.json and the OpenPlanet plugin",
                       needs_config=False),
    "import-tmrl": Command("tmrlx.import_tmrl", "take over a TMRL user's config.json and reward.pkl (from ~/TmrlData)",
                           needs_config=False),
    "config": Command("tmrlx.cli", "print the effective config (`tmrlx config show`)"),
    "keys": Command("tmrlx.keys", "generate CurveZMQ key pairs into a credentials folder"),
    "record-reward": Command("tmrlx.actor.envs.record", "record one lap and save it as the reward trajectory"),
    "check-environment": Command("tmrlx.actor.envs.check", "drive and show what the model sees, with rewards"),
    "benchmark": Command("tmrlx.actor.envs.check", "run the environment with rtgym's benchmark and print timings"),
    "demo": Command("tmrlx.demo", "broker + learner + 2 actors on this machine, training on the simulator"),
    "plot": Command("tmrlx.plot", "draw the learning curves of one or more runs to a PNG"),
    "status": Command("tmrlx.status", "ask a running broker for its live state: actors, learner, queue, drops, refusals"),
}
ALIASES = {alias: name for name, c in COMMANDS.items() for alias in c.aliases}


def parse_value(text: str) -> Any:
    """A JSON or Python literal (never evaluated as code); anything else is a plain string."""
    for parse in (json.loads, ast.literal_eval):
        try:
            return parse(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
    return text


def _flag_value(key: Key, raw: Any) -> Any:
    if key.type is str:
        return raw
    if key.type is list:
        return [parse_value(x) for x in raw]
    if key.type is bool and isinstance(raw, str) and raw.lower() in ("yes", "no", "on", "off"):
        return raw.lower() in ("yes", "on")
    value = parse_value(raw) if isinstance(raw, str) else raw
    return value


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per schema key, generated, never written by hand."""
    group = parser.add_argument_group("config keys (override config.json)")
    group.add_argument("--config-file", type=Path, default=None,
                       help="config.json to read (default: the data folder's config/config.json)")
    group.add_argument("--config", dest="config_literal", default=None, metavar="'{...}'",
                       help="overrides as a JSON or Python dict literal, e.g. '{\"ALG\": {\"ALGORITHM\": \"REDQSAC\"}}'")
    for key in SCHEMA:
        if key.path == "__VERSION__":
            continue
        kwargs: dict[str, Any] = {"dest": "key:" + key.path, "default": None,
                                  "help": f"{key.help} (default: {json.dumps(key.default)})"}
        if key.type is bool:
            kwargs.update(nargs="?", const="true", metavar="BOOL")
        elif key.type is list:  # a pair (the betas) takes two values; rtgym's interface_args any number
            pair = len(key.default) == 2
            kwargs.update(nargs=2 if pair else "*", metavar=("B1", "B2") if pair else "VALUE")
        else:
            names: dict[type | tuple[type, ...], str] = {str: "TEXT", int: "INT", dict: "JSON", (str, NULL): "TEXT",
                                                         (str, int): "TEXT|INT"}
            kwargs["metavar"] = names.get(key.type, "NUM")
        flags = [key.flag]
        if "." in key.path:
            flags.append("--" + key.path.lower())
        group.add_argument(*flags, **kwargs)


def config_from_args(args: argparse.Namespace) -> Config:
    """Defaults < config.json < --config < individual flags, each layer validated."""
    path = args.config_file
    if path is None and paths.config_path().exists():
        path = paths.config_path()
    cfg = load_config(path)
    if args.config_literal:
        literal = parse_value(args.config_literal)
        if not isinstance(literal, dict):
            raise ConfigError(f"--config has value {args.config_literal!r}: expected a dict literal such as "
                              "'{\"BATCH_SIZE\": 256}'")
        cfg = cfg.replace(literal)
    flags: dict = {}
    for key in SCHEMA:
        raw = getattr(args, "key:" + key.path, None)
        if raw is not None:
            node = flags
            *parents, leaf = key.path.split(".")
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = _flag_value(key, raw)
    return cfg.replace(flags) if flags else cfg


def config_table() -> str:
    """Markdown table of every key, its flag, default and meaning (docs/config.md is this output)."""
    rows = ["| key | flag | default | meaning in tmrlx |", "|---|---|---|---|"]
    for key in SCHEMA:
        flag = "" if key.path == "__VERSION__" else f"`{key.flag}`"
        optional = " *(optional: not in a fresh config.json)*" if key.optional else ""
        rows.append(f"| `{key.path}` | {flag} | `{json.dumps(key.default)}` | {key.help}{optional} |")
    return "\n".join(rows)


def build_parser(selected: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tmrlx", description="Distributed real-time reinforcement learning (TMRL on JAX + ZeroMQ).",
        epilog="Every config.json key is a flag on every subcommand: `tmrlx learner --help` lists them.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, command in COMMANDS.items():
        p = sub.add_parser(name, aliases=list(command.aliases), help=command.help, description=command.help)
        if name == "config":
            p.add_argument("action", choices=["show", "table"],
                           help="show: print the effective config; table: print every key as a Markdown table")
        add_config_flags(p)
        if name == selected and command.module != __name__:
            module = importlib.import_module(command.module)
            if hasattr(module, "add_arguments"):
                module.add_arguments(p, name)
    return parser


def _selected(argv: Sequence[str]) -> str | None:
    for token in argv:
        if not token.startswith("-"):
            return ALIASES.get(token, token) if ALIASES.get(token, token) in COMMANDS else None
    return None


# TMRL's command line (`python -m tmrl --server`, ...) -> the tmrlx command that does the same
TMRL_FLAGS = {"--server": "broker", "--trainer": "learner", "--worker": "actor", "--test": "test", "--expert": "expert",
              "--benchmark": "benchmark", "--record-reward": "record-reward", "--check-environment": "check-environment",
              "--install": "install"}


def from_tmrl(argv: list[str]) -> tuple[list[str], str | None]:
    """A TMRL invocation as tmrlx's (`--trainer --wandb` -> `learner --wandb`) and TMRL's flag, else `argv` unchanged."""
    if _selected(argv) is not None:
        return argv, None
    flag = next((a for a in argv if a in TMRL_FLAGS), None)
    if flag is None:
        return argv, None
    rest = list(argv)
    rest.remove(flag)
    return [TMRL_FLAGS[flag], *rest], flag


def main(argv: Sequence[str] | None = None) -> int:
    program = argv is None  # run as a program, not called in-process (tests)
    argv, tmrl_flag = from_tmrl(list(sys.argv[1:] if argv is None else argv))
    selected = _selected(argv)
    if program and selected == "learner":
        from tmrlx.learner.allocator import reexec_with_tuned_malloc

        reexec_with_tuned_malloc()
    try:
        args = build_parser(selected).parse_args(argv)
        args.command = ALIASES.get(args.command, args.command)
        setup_logging(args.command)
        if tmrl_flag is not None:
            log.info("%s is TMRL's name for `tmrlx %s`", tmrl_flag, TMRL_FLAGS[tmrl_flag])
        command = COMMANDS[args.command]
        if not command.needs_config:
            return int(importlib.import_module(command.module).run(args) or 0)
        cfg = config_from_args(args)
        if cfg.DEBUG_MODE:
            logging.getLogger("tmrlx").setLevel(logging.DEBUG)
        if args.command == "config":
            print(cfg.to_json() if args.action == "show" else config_table())
            return 0
        module = importlib.import_module(command.module)
        return int(module.run(cfg, args) or 0)
    except ConfigError as e:
        log.error("config error: %s", e)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

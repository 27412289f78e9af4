"""The import rules of docs/architecture.md, read from the source: layers only import downwards.

    tmrlx (app: cli, demo, plot, ...)  ->  actor, broker, learner (roles)  ->  common (contracts, wire, config)

The roles never import each other, `common` imports no role and no app module, nothing imports JAX but
the learner, and every import uses the one name `tmrlx.…` (no bare `common`, `actor`, ...). The
runtime check that an actor really starts with JAX blocked is in test_policy.py.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {"common": "common", "actor": "actor", "broker": "broker", "learner": "learner", "tmrlx": "app"}
ROLES = ("actor", "broker", "learner")
JAX = ("jax", "jaxlib", "flax", "optax", "orbax")
BARE = ("common", "actor", "broker", "learner")


def _modules() -> list[tuple[str, Path]]:
    return [(layer, p) for folder, layer in LAYERS.items() for p in sorted((ROOT / folder).rglob("*.py"))]


def _imports(path: Path) -> list[str]:
    """Every absolute module a file imports, at module level or inside functions."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append(node.module)
            if node.module == "tmrlx":  # `from tmrlx import x` names a module of the app layer
                out += [f"tmrlx.{a.name}" for a in node.names]
    return out


def _layer_of(module: str) -> str | None:
    """The layer a `tmrlx.…` module belongs to (None for third-party modules)."""
    parts = module.split(".")
    if parts[0] != "tmrlx":
        return None
    return parts[1] if len(parts) > 1 and parts[1] in ("common", *ROLES) else "app"


def _allowed(layer: str, target: str) -> bool:
    if layer == "app":
        return True
    if layer == "common":
        return target == "common"
    return target in ("common", layer)  # a role: itself and the library below it


@pytest.mark.parametrize("layer, path", _modules(), ids=lambda v: str(v.relative_to(ROOT)) if isinstance(v, Path) else v)
def test_imports_follow_the_layers(layer: str, path: Path) -> None:
    imports = _imports(path)
    bare = [m for m in imports if m.split(".")[0] in BARE]
    assert not bare, f"{path.name} imports {bare}: use the one import name tmrlx.…"
    wrong = [m for m in imports if (t := _layer_of(m)) is not None and not _allowed(layer, t)]
    assert not wrong, f"{path.relative_to(ROOT)} ({layer}) may not import {wrong}"
    if layer != "learner":
        jax = [m for m in imports if m.split(".")[0] in JAX]
        assert not jax, f"{path.relative_to(ROOT)} imports {jax}: only the learner runs JAX"


def test_the_rules_see_every_layer() -> None:
    """The walk is not vacuous: each layer has modules and the app imports every role."""
    layers = {layer for layer, _ in _modules()}
    assert layers == set(LAYERS.values())
    app = {_layer_of(m) for layer, p in _modules() if layer == "app" for m in _imports(p)}
    assert {"common", *ROLES} <= app


def test_the_distribution_installs_one_top_level_package() -> None:
    """Every package of the tree is listed under `tmrlx` (a missing one would be absent from a wheel)."""
    tomllib = pytest.importorskip("tomllib")
    setup = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages, dirs = set(setup["packages"]), setup["package-dir"]
    assert {p.split(".")[0] for p in packages} == {"tmrlx"}
    assert {dirs[f"tmrlx.{folder}" if folder != "tmrlx" else "tmrlx"] for folder in LAYERS} == set(LAYERS)
    found = set()
    for folder in LAYERS:
        base = "tmrlx" if folder == "tmrlx" else f"tmrlx.{folder}"
        for init in (ROOT / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((base, *parts)))
    assert found <= packages, f"packages missing from pyproject.toml: {sorted(found - packages)}"

"""Flax actor variables <-> the flat NumPy weight map the actors run directly (the names: `common.weights`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from tmrlx.common.weights import SEP


def actor_weights(params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Flax actor variables (`{"params": {...}}` or the inner dict) -> {"hidden_0/kernel": float32 array, ...}."""
    tree = params.get("params", params)
    out = {}
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        name = SEP.join(str(k.key) for k in path)
        out[name] = np.asarray(jax.device_get(leaf), dtype=np.float32)
    return out


def params_from_weights(weights: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """The inverse of `actor_weights`: a flat map back to Flax variables `{"params": {...}}`."""
    tree: dict[str, Any] = {}
    for name, value in weights.items():
        node = tree
        *parents, leaf = name.split(SEP)
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = np.asarray(value, np.float32)
    return {"params": tree}

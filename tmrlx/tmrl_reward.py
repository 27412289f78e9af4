"""TMRL's `reward.pkl` (a pickled (N, 3) NumPy array of positions), read without trusting the pickle.

Unpickling calls whatever globals the file names, so a general `pickle.load` of a file from elsewhere
can run any code. `ArrayUnpickler` resolves only the few NumPy globals that rebuild a plain array,
in both module spellings (`numpy.core` as NumPy 1 writes it, `numpy._core` as NumPy 2 does): an
array's `_reconstruct` with `ndarray` as its argument (protocols 2 to 4), `_frombuffer` (protocol 5),
and `dtype`, limited to booleans and real numbers so that no object array is ever built, plus
`_codecs.encode` for latin1 only (how protocols 0 to 2 carry the array's bytes). Anything else is
refused before it is resolved.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

NUMERIC_KINDS = "biuf"


class RefusedPickle(ValueError):
    """The file is not a plain numeric array of positions; the message says what it holds instead."""


def _numeric_dtype(spec: Any, align: bool = False, copy: bool = True) -> np.dtype:
    """`numpy.dtype` as a pickle calls it, for plain numbers only, and always a copy (`copy` is ignored):
    the pickle's state is then set on the copy, never on NumPy's shared descriptors."""
    dtype = np.dtype(spec, align, True)
    if dtype.kind not in NUMERIC_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise RefusedPickle(f"the pickle asks for dtype {dtype}: only plain numeric arrays are accepted")
    return dtype


class _Name:
    """A global that the pickle may name but never call."""

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return self.name


_NDARRAY = _Name("numpy.ndarray")  # what `numpy.ndarray` resolves to: only `_reconstruct`'s first argument


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    """NumPy's `_reconstruct` for a plain ndarray: an empty array that the pickle's state then fills."""
    if subtype is not _NDARRAY:
        raise RefusedPickle(f"the pickle rebuilds a {subtype!r}: only a plain numpy.ndarray is accepted")
    return np.ndarray(shape, _numeric_dtype(dtype))


def _frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    """NumPy's protocol-5 `_frombuffer`: an array over the pickled bytes."""
    return np.frombuffer(buf, dtype=_numeric_dtype(dtype)).reshape(shape, order=order)


def _latin1(text: Any, encoding: str) -> bytes:
    """`_codecs.encode` as protocols 0 to 2 use it to carry bytes (the array's data), and nothing more."""
    if not isinstance(text, str) or encoding != "latin1":
        raise RefusedPickle(f"the pickle encodes {type(text).__name__} with {encoding!r}: only latin1 bytes are accepted")
    return text.encode("latin1")


ALLOWED: dict[tuple[str, str], Any] = {("numpy", "ndarray"): _NDARRAY, ("numpy", "dtype"): _numeric_dtype,
                                       ("_codecs", "encode"): _latin1}
for _core in ("numpy.core", "numpy._core"):  # NumPy 1 and NumPy 2 spell the same functions
    ALLOWED[(f"{_core}.multiarray", "_reconstruct")] = _reconstruct
    ALLOWED[(f"{_core}.numeric", "_frombuffer")] = _frombuffer


class ArrayUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the NumPy globals of a plain numeric array."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED[(module, name)]
        except KeyError:
            raise RefusedPickle(f"the pickle refers to {module}.{name}: a reward file holds only a NumPy array, "
                                "and nothing else in it is loaded (it could run code)") from None


def load_array(path: Path) -> np.ndarray:
    """The plain numeric NumPy array pickled in `path`; RefusedPickle for anything else."""
    try:
        with open(path, "rb") as f:
            data = ArrayUnpickler(f).load()
    except RefusedPickle as e:
        raise RefusedPickle(f"{path}: {e}") from None
    except Exception as e:  # whatever fails while decoding, the file is not a plain array
        raise RefusedPickle(f"{path} is not a readable pickle of a NumPy array: {type(e).__name__}: {e}") from None
    if type(data) is not np.ndarray:
        raise RefusedPickle(f"{path} holds a {type(data).__name__}, not a NumPy array")
    if data.dtype.kind not in NUMERIC_KINDS or data.dtype.hasobject:
        raise RefusedPickle(f"{path} holds an array of dtype {data.dtype}: expected numbers")
    return data


def load_positions(path: Path) -> np.ndarray:
    """TMRL's recorded trajectory as (N >= 2, 3) float32 positions; RefusedPickle with the reason otherwise."""
    data = load_array(path)
    if data.ndim != 2 or data.shape[1] != 3 or len(data) < 2:
        raise RefusedPickle(f"{path} holds an array of shape {data.shape}: expected (N >= 2, 3) positions x, y, z")
    if not np.isfinite(data).all():
        raise RefusedPickle(f"{path} holds positions that are not finite (NaN or infinity)")
    return data.astype(np.float32)

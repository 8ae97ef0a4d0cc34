"""Utilities: seeding and small helpers shared by the package."""

from __future__ import annotations

import os
import random

import numpy as np

__all__ = ["set_random_seed", "to_categorical"]

# Every model draws its seed (weights, shuffling) from this generator when it is built, so one
# call to ``set_random_seed`` makes a whole script reproducible.
_generator = random.Random(int.from_bytes(os.urandom(8), "little"))


def set_random_seed(seed: int) -> None:
    """Seed ferronet, Python's ``random`` and numpy's global generator, as Keras does.

    With the same seed and the same thread count, building and fitting the same model gives
    bit-identical weights.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an integer; got {type(seed).__name__}")
    seed = int(seed)
    if seed < 0:
        raise ValueError(f"seed must be non-negative; got {seed}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    _generator.seed(seed)


def next_seed() -> int:
    """A 64-bit seed for the next model or layer, from the global generator."""
    return _generator.getrandbits(64)


def to_categorical(y, num_classes: int | None = None) -> np.ndarray:
    """One-hot encode integer class labels into a float32 matrix (Keras' ``to_categorical``)."""
    y = np.asarray(y)
    if y.ndim > 1 and y.shape[-1] == 1:
        y = y.reshape(y.shape[:-1])
    if y.size and (not np.all(np.isfinite(y)) or np.any(y < 0) or np.any(y != np.round(y))):
        raise ValueError("to_categorical: labels must be non-negative integers")
    y = y.astype(np.int64)
    if num_classes is None:
        num_classes = int(y.max()) + 1 if y.size else 0
    if y.size and y.max() >= num_classes:
        raise ValueError(f"to_categorical: label {int(y.max())} is out of range for {num_classes} classes")
    out = np.zeros(y.shape + (num_classes,), dtype=np.float32)
    np.put_along_axis(out, y[..., None], 1.0, axis=-1)
    return out

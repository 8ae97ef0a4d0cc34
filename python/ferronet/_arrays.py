"""Turning user data into what the engine reads."""

from __future__ import annotations

import numpy as np


def as_float32(name: str, a) -> np.ndarray:
    """``a`` as a C-contiguous float32 array; a float32 C-contiguous ndarray is not copied."""
    if isinstance(a, np.ndarray):
        arr = a
    else:
        try:
            arr = np.asarray(a)
        except (TypeError, ValueError) as e:
            raise TypeError(f"{name} must be a numeric array: {e}") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold numbers; got an array of dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.float32)

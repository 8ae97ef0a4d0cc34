"""Automatic object names (``dense``, ``dense_1``, ...) as Keras gives them."""

from __future__ import annotations

import re
from collections import defaultdict

_counts: dict[str, int] = defaultdict(int)


def snake_case(name: str) -> str:
    """``BatchNormalization`` -> ``batch_normalization``."""
    s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", s).lower()


def unique_name(prefix: str) -> str:
    """``prefix`` the first time, then ``prefix_1``, ``prefix_2``..."""
    n = _counts[prefix]
    _counts[prefix] += 1
    return prefix if n == 0 else f"{prefix}_{n}"

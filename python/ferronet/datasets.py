"""Bundled data sets.

``digits``: the "Optical Recognition of Handwritten Digits" data (E. Alpaydin, C. Kaynak; UCI
Machine Learning Repository, licence CC BY 4.0), in the 1,797-sample 8x8 form: ``x`` uint8
``(1797, 64)`` with pixel intensities 0..16, ``y`` uint8 ``(1797,)`` with labels 0..9.
"""

from __future__ import annotations

from importlib import resources

import numpy as np

__all__ = ["load_digits"]


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """Returns ``(x, y)`` of the bundled 8x8 digits data set."""
    with resources.files("ferronet").joinpath("data/digits.npz").open("rb") as f, np.load(f) as d:
        return d["x"].copy(), d["y"].copy()

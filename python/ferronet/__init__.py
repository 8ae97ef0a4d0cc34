"""ferronet: Keras-style deep learning with a Rust engine.

>>> import ferronet as keras
>>> model = keras.Sequential([keras.Input(shape=(64,)), keras.layers.Dense(10, activation="softmax")])
"""

from __future__ import annotations

import warnings
from importlib.metadata import PackageNotFoundError, version

from . import (
    activations,
    callbacks,
    datasets,
    initializers,
    layers,
    losses,
    metrics,
    mixed_precision,
    models,
    optimizers,
    regularizers,
    saving,
    testing,
    utils,
)
from ._core import FerronetError, get_num_threads, num_threads_warning, set_num_threads, wait_policy_warning
from .layers import Input
from .models import Model, Sequential

for _problem in (num_threads_warning(), wait_policy_warning()):
    if _problem is not None:
        warnings.warn(_problem, RuntimeWarning, stacklevel=2)

try:
    __version__ = version("ferronet")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "FerronetError",
    "Input",
    "Model",
    "Sequential",
    "activations",
    "callbacks",
    "datasets",
    "get_num_threads",
    "initializers",
    "layers",
    "losses",
    "metrics",
    "mixed_precision",
    "models",
    "optimizers",
    "regularizers",
    "saving",
    "set_num_threads",
    "testing",
    "utils",
]

"""Activation functions, by name or as numpy functions (numpy in, numpy out).

The engine applies them in Rust; these numpy versions give the same values for inspection and
plotting. Formulas from note 000 "Funciones de activación":

- ``sigmoid(z) = 1 / (1 + exp(-z))``
- ``tanh(z)``
- ``relu(z) = max(0, z)``
- ``softmax(z)_i = exp(z_i) / sum_j exp(z_j)`` (over ``axis``)
- ``linear(z) = z``
"""

from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = ["linear", "relu", "sigmoid", "tanh", "softmax", "get", "serialize"]


def linear(x):
    """Identity: ``f(z) = z``."""
    return np.asarray(x, dtype=np.float32)


def relu(x):
    """Rectified linear unit: ``max(0, z)``."""
    return np.maximum(np.asarray(x, dtype=np.float32), 0.0)


def sigmoid(x):
    """Logistic function ``1 / (1 + exp(-z))``, evaluated without overflow."""
    z = np.asarray(x, dtype=np.float32)
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(np.float32)


def tanh(x):
    """Hyperbolic tangent."""
    return np.tanh(np.asarray(x, dtype=np.float32))


def softmax(x, axis: int = -1):
    """``exp(z_i - max z) / sum_j exp(z_j - max z)`` along ``axis`` (shifted: no overflow)."""
    z = np.asarray(x, dtype=np.float32)
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


_BY_NAME: dict[str, Callable] = {
    "linear": linear,
    "relu": relu,
    "sigmoid": sigmoid,
    "tanh": tanh,
    "softmax": softmax,
}


def get(identifier: str | Callable | None) -> str:
    """The engine name of an activation given as a name, one of the functions above, or None."""
    if identifier is None:
        return "linear"
    if callable(identifier):
        for name, fn in _BY_NAME.items():
            if fn is identifier:
                return name
        raise ValueError(
            f"Unsupported activation function {identifier!r}: pass one of "
            f"{sorted(_BY_NAME)} by name or from ferronet.activations"
        )
    if isinstance(identifier, str):
        if identifier in _BY_NAME:
            return identifier
        raise ValueError(f"Unknown activation: '{identifier}'. Known activations: {sorted(_BY_NAME)}")
    raise TypeError(f"activation must be a string, a function or None; got {type(identifier).__name__}")


def serialize(identifier) -> str:
    """Name of an activation (Keras' ``activations.serialize``)."""
    return get(identifier)

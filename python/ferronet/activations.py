"""Activation functions: by name in layers, or called on numpy arrays (numpy in, float32 out).

The functions run the engine's own implementation, so they return exactly what a layer computes.
Formulas (note 000 "Funciones de activación", note 001 "Escalón", note 002 appendix B):

- ``step(z) = 1 if z > 0 else 0`` (Heaviside; zero gradient, so a layer using it cannot learn)
- ``sigmoid(z) = 1 / (1 + exp(-z))``, ``tanh(z)``, ``relu(z) = max(0, z)``
- ``leaky_relu(z) = z if z > 0 else negative_slope * z``, slope 0.01 as the notes use
  (Keras' default is 0.2)
- ``gelu(z) = z * Phi(z) = z/2 (1 + erf(z / sqrt 2))``; ``approximate=True`` gives the tanh form
  of note 000, ``z/2 (1 + tanh(sqrt(2/pi) (z + 0.044715 z^3)))``
- ``swish(z) = silu(z) = z * sigmoid(z)`` (note 002)
- ``softmax(z)_i = exp(z_i / T) / sum_j exp(z_j / T)`` with temperature ``T`` (note 002
  appendix B: ``T = 1/c``; small ``T`` sharpens towards argmax, large ``T`` flattens)
- ``elu(z) = z if z > 0 else alpha (exp(z) - 1)``; ``selu = 1.0507 * elu(z, alpha=1.6733)``
- ``softplus(z) = log(1 + exp(z))``, ``softsign(z) = z / (1 + |z|)``,
  ``hard_sigmoid(z) = clip(z/6 + 1/2, 0, 1)`` (Keras 3), ``mish(z) = z tanh(softplus(z))``,
  ``log_softmax(z) = z - logsumexp(z)``

All are evaluated in numerically stable forms (finite for ``|z|`` up to 1e4).
"""

from __future__ import annotations

import json
from typing import Any, Callable

import numpy as np

from . import _core

__all__ = [
    "linear", "step", "sigmoid", "tanh", "relu", "leaky_relu", "gelu", "swish", "silu",
    "softmax", "elu", "selu", "softplus", "softsign", "hard_sigmoid", "mish", "log_softmax",
    "get", "serialize",
]  # fmt: skip


def _apply(spec: dict[str, Any], x, axis: int = -1) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"activations take numeric arrays; got dtype {arr.dtype}")
    arr = np.atleast_1d(np.asarray(arr, dtype=np.float32))
    moved = axis not in (-1, arr.ndim - 1)
    if moved:
        arr = np.moveaxis(arr, axis, -1)
    out = _core.activation_forward(json.dumps(spec), np.ascontiguousarray(arr))
    return np.moveaxis(out, -1, axis) if moved else out


def linear(x):
    """Identity ``z``."""
    return _apply({"name": "linear"}, x)


def step(x):
    """Heaviside step: 1 where ``z > 0``, else 0 (note 001)."""
    return _apply({"name": "step"}, x)


def sigmoid(x):
    """``1 / (1 + exp(-z))``."""
    return _apply({"name": "sigmoid"}, x)


def tanh(x):
    """Hyperbolic tangent."""
    return _apply({"name": "tanh"}, x)


def relu(x):
    """``max(0, z)``."""
    return _apply({"name": "relu"}, x)


def leaky_relu(x, negative_slope: float = 0.01):
    """``z`` for ``z > 0``, else ``negative_slope * z``."""
    return _apply({"name": "leaky_relu", "negative_slope": float(negative_slope)}, x)


def gelu(x, approximate: bool = False):
    """Gaussian error linear unit; exact (erf) or the tanh approximation of note 000."""
    return _apply({"name": "gelu", "approximate": bool(approximate)}, x)


def swish(x):
    """``z * sigmoid(z)`` (also called SiLU)."""
    return _apply({"name": "swish"}, x)


silu = swish


def softmax(x, axis: int = -1, temperature: float = 1.0):
    """``exp(z_i / T) / sum_j exp(z_j / T)`` along ``axis``."""
    if not temperature > 0:
        raise ValueError(f"softmax temperature must be positive; got {temperature}")
    return _apply({"name": "softmax", "temperature": float(temperature)}, x, axis)


def elu(x, alpha: float = 1.0):
    """``z`` for ``z > 0``, else ``alpha (exp(z) - 1)``."""
    return _apply({"name": "elu", "alpha": float(alpha)}, x)


def selu(x):
    """Scaled ELU: ``1.0507 * elu(z, alpha=1.67326)``."""
    return _apply({"name": "selu"}, x)


def softplus(x):
    """``log(1 + exp(z))``."""
    return _apply({"name": "softplus"}, x)


def softsign(x):
    """``z / (1 + |z|)``."""
    return _apply({"name": "softsign"}, x)


def hard_sigmoid(x):
    """``clip(z / 6 + 1/2, 0, 1)``."""
    return _apply({"name": "hard_sigmoid"}, x)


def mish(x):
    """``z * tanh(softplus(z))``."""
    return _apply({"name": "mish"}, x)


def log_softmax(x, axis: int = -1):
    """``z - logsumexp(z)`` along ``axis``."""
    return _apply({"name": "log_softmax"}, x, axis)


_BY_NAME: dict[str, Callable] = {
    f.__name__: f
    for f in (linear, step, sigmoid, tanh, relu, leaky_relu, gelu, swish, softmax, elu, selu,
              softplus, softsign, hard_sigmoid, mish, log_softmax)
}  # fmt: skip
_BY_NAME["silu"] = swish


def get(identifier: str | Callable | dict | None) -> dict[str, Any]:
    """The engine spec (``{"name": ...}``) of an activation given by name, function or None."""
    if identifier is None:
        return {"name": "linear"}
    if isinstance(identifier, dict):
        get(identifier.get("name"))
        return dict(identifier)
    if callable(identifier):
        for name, fn in _BY_NAME.items():
            if fn is identifier:
                return {"name": "swish" if name == "silu" else name}
        raise ValueError(
            f"Unsupported activation function {identifier!r}: pass a name or a function of "
            f"ferronet.activations ({sorted(_BY_NAME)})"
        )
    if isinstance(identifier, str):
        if identifier in _BY_NAME:
            return {"name": "swish" if identifier == "silu" else identifier}
        raise ValueError(f"Unknown activation: '{identifier}'. Known activations: {sorted(_BY_NAME)}")
    raise TypeError(f"activation must be a string, a function or None; got {type(identifier).__name__}")


def serialize(identifier) -> str:
    """Name of an activation (Keras' ``activations.serialize``)."""
    return get(identifier)["name"]

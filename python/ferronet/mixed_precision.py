"""Mixed precision (``keras.mixed_precision``): the dtype policies of layers.

Two policies exist, ``"float32"`` (the default) and ``"mixed_bfloat16"``. Under
``"mixed_bfloat16"`` weights stay float32, and ``Dense`` and ``Conv2D`` layers run their three
matrix products on operands rounded to bfloat16 (8 significant bits) with float32 sums::

    Z = bf16(X) @ bf16(W) + b      dW = bf16(X)^T @ bf16(dZ)      dX = bf16(dZ) @ bf16(W)^T

(for a convolution ``X`` is its patch matrix; a stride-1 convolution on fewer than 8 input
channels, a first layer, keeps a float32 weight gradient, and on 1 channel a float32 forward
product).

On CPUs with bf16 instructions (AVX512_BF16: AMD Zen 4, Intel Cooper Lake, Sapphire Rapids and
later) one instruction does twice the multiply-adds of a float32 one. Elsewhere the policy falls
back to float32, with a warning. Biases, activations, other layers, the loss and the optimizer
compute in float32, as under PyTorch's CPU autocast.

>>> import ferronet as keras
>>> keras.mixed_precision.set_global_policy("mixed_bfloat16")
>>> keras.layers.Dense(10).compute_dtype
'bfloat16'
"""

from __future__ import annotations

import warnings
from typing import Any

from . import _core

__all__ = ["DTypePolicy", "Policy", "global_policy", "set_global_policy"]

_COMPUTE_DTYPES = {"float32": "float32", "mixed_bfloat16": "bfloat16"}


class DTypePolicy:
    """A layer's dtype policy: the dtype its weights are stored in (``variable_dtype``, always
    float32) and the one it computes in (``compute_dtype``)."""

    def __init__(self, name: str = "float32"):
        if isinstance(name, DTypePolicy):
            name = name.name
        if name not in _COMPUTE_DTYPES:
            raise ValueError(
                f"unsupported dtype policy {name!r}: ferronet supports 'float32' and 'mixed_bfloat16' "
                "(float16 and float64 have no fast path on CPUs)"
            )
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    @property
    def compute_dtype(self) -> str:
        return _COMPUTE_DTYPES[self._name]

    @property
    def variable_dtype(self) -> str:
        return "float32"

    def get_config(self) -> dict[str, Any]:
        return {"name": self._name}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> DTypePolicy:
        return cls(**config)

    def __eq__(self, other) -> bool:
        return isinstance(other, DTypePolicy) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self._name)

    def __repr__(self) -> str:
        return f'<DTypePolicy "{self._name}">'


#: Keras' older name.
Policy = DTypePolicy

_global = DTypePolicy("float32")
_warned = False


def as_policy(value) -> DTypePolicy:
    """A layer's ``dtype`` argument as a policy: ``None`` is the global policy; a policy, its
    name, or the dtype ``float32`` (a string or a numpy dtype) are accepted."""
    if value is None:
        return _global
    if isinstance(value, DTypePolicy):
        policy = value
    elif isinstance(value, dict) and "config" in value:  # a serialized Keras DTypePolicy
        policy = DTypePolicy(**value["config"])
    else:
        name = getattr(value, "__name__", None) or str(value)
        policy = DTypePolicy(name)
    warn_if_unsupported(policy)
    return policy


def warn_if_unsupported(policy: DTypePolicy) -> None:
    """Warns once per process when bf16 compute falls back to float32 on this CPU."""
    global _warned
    if policy.name == "mixed_bfloat16" and not _warned and not _core.cpu_info()["bf16"]:
        _warned = True
        warnings.warn(
            "mixed_bfloat16: this CPU has no bf16 instructions (AVX512_BF16), or FERRONET_GEMM "
            "forces another kernel; layers compute in float32",
            RuntimeWarning,
            stacklevel=3,
        )


def set_global_policy(policy) -> None:
    """Sets the policy of layers created from now on: ``"float32"`` or ``"mixed_bfloat16"``
    (a name or a ``DTypePolicy``; ``None`` restores float32)."""
    global _global
    _global = DTypePolicy("float32") if policy is None else as_policy(policy)


def global_policy() -> DTypePolicy:
    """The policy layers created now get."""
    return _global

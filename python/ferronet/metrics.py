"""Metrics, computed streaming inside the engine's loop (exact per-epoch values, as Keras).

``"accuracy"`` picks its variant from the model, as Keras does: binary accuracy for a
one-unit output, sparse categorical accuracy with integer labels (sparse loss), categorical
accuracy otherwise.
"""

from __future__ import annotations

from typing import Any

__all__ = ["resolve"]

_KNOWN = (
    "accuracy",
    "acc",
    "binary_accuracy",
    "categorical_accuracy",
    "sparse_categorical_accuracy",
)


def resolve(identifier, output_width: int, sparse_targets: bool) -> dict[str, Any]:
    """The engine spec of a metric given by name, for a model of ``output_width`` outputs."""
    if not isinstance(identifier, str):
        raise TypeError(f"metrics must be given by name; got {type(identifier).__name__}")
    if identifier not in _KNOWN:
        raise ValueError(f"Unknown metric: '{identifier}'. Known metrics: {list(_KNOWN)}")
    name = "accuracy" if identifier == "acc" else identifier
    if name == "accuracy":
        if output_width == 1:
            kind = "binary_accuracy"
        elif sparse_targets:
            kind = "sparse_categorical_accuracy"
        else:
            kind = "categorical_accuracy"
    else:
        kind = name
    spec: dict[str, Any] = {"name": name, "kind": kind}
    if kind == "binary_accuracy":
        spec["threshold"] = 0.5
    return spec


def validate(identifier) -> None:
    """Raises at compile time for an unknown metric name."""
    resolve(identifier, 2, False)

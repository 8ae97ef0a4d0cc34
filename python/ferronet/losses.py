"""Loss functions, by class or by name. Each is the batch mean of a per-sample loss.

Formulas (note 000 "Funciones de pérdida", note 002 appendix B):

- ``MeanSquaredError``: ``mean_j (y_j - a_j)^2``
- ``CategoricalCrossentropy``: ``-sum_j y_j log p_j`` with one-hot ``y``
- ``SparseCategoricalCrossentropy``: ``-log p_c`` with an integer class ``c``

With ``from_logits=False`` the output is taken as probabilities (normalised to sum 1 and clipped
to ``[1e-7, 1 - 1e-7]`` as in Keras); with ``from_logits=True`` a stable log-softmax is applied.
A softmax output layer and a cross entropy are fused in training: the output delta is ``a - y``
(note 002), exact and cheap.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _core

__all__ = [
    "Loss",
    "MeanSquaredError",
    "CategoricalCrossentropy",
    "SparseCategoricalCrossentropy",
    "get",
]


class Loss:
    """Base class: a loss has an engine name, a Keras name and its options."""

    engine_name = ""

    def __init__(self, name: str | None = None):
        self.name = name or _snake(type(self).__name__)

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Loss:
        return cls(**config)

    def _spec(self) -> dict[str, Any]:
        return {"name": self.engine_name}

    @property
    def is_sparse(self) -> bool:
        return False

    def __call__(self, y_true, y_pred) -> float:
        """The mean loss over the samples (axis 0) of ``y_pred``, like ``keras.losses.Loss``."""
        import json

        y_pred = np.ascontiguousarray(y_pred, dtype=np.float32)
        if y_pred.ndim == 1:
            y_pred = y_pred.reshape(-1, 1)
        y_true = np.ascontiguousarray(y_true, dtype=np.float32)
        return float(_core.loss_value(json.dumps(self._spec()), y_true, y_pred))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "name")
        return f"{type(self).__name__}({args})"


def _snake(name: str) -> str:
    from ._naming import snake_case

    return snake_case(name)


class MeanSquaredError(Loss):
    """``mean_j (y_j - a_j)^2`` per sample; the regression loss."""

    engine_name = "mean_squared_error"


class CategoricalCrossentropy(Loss):
    """``-sum_j y_j log p_j`` with one-hot targets."""

    engine_name = "categorical_crossentropy"

    def __init__(self, from_logits: bool = False, name: str | None = None):
        super().__init__(name)
        self.from_logits = bool(from_logits)

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "from_logits": self.from_logits}

    def _spec(self) -> dict[str, Any]:
        return {"name": self.engine_name, "from_logits": self.from_logits}


class SparseCategoricalCrossentropy(CategoricalCrossentropy):
    """``-log p_c`` with integer class labels ``c`` in ``[0, classes)``."""

    engine_name = "sparse_categorical_crossentropy"

    @property
    def is_sparse(self) -> bool:
        return True


_ALIASES = {
    "mse": MeanSquaredError,
    "mean_squared_error": MeanSquaredError,
    "MeanSquaredError": MeanSquaredError,
    "categorical_crossentropy": CategoricalCrossentropy,
    "CategoricalCrossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "SparseCategoricalCrossentropy": SparseCategoricalCrossentropy,
}


def get(identifier) -> Loss:
    """A loss from a name (``"mse"``, ``"categorical_crossentropy"``...), a class or an instance."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Loss):
        return identifier()
    if isinstance(identifier, str):
        if identifier in _ALIASES:
            loss = _ALIASES[identifier]()
            loss.name = identifier if identifier.islower() else loss.name
            return loss
        raise ValueError(
            f"Unknown loss: '{identifier}'. Known losses: {sorted(k for k in _ALIASES if k.islower())}"
        )
    raise TypeError(f"loss must be a string or a ferronet.losses.Loss; got {type(identifier).__name__}")

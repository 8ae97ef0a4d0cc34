"""Loss functions, by class or by name. Each is the batch mean of a per-sample loss (with
``sample_weight``: ``sum_i w_i l_i / n``, Keras' reduction).

Per-sample formulas, ``k`` outputs (note 000 "Funciones de pérdida", note 002 appendix B):

- ``MeanSquaredError`` (``"mse"``): ``mean_j (y_j - a_j)^2``; ``MeanAbsoluteError`` (``"mae"``)
- ``Huber(delta)``: ``r^2/2`` for ``|r| <= delta``, else ``delta (|r| - delta/2)``, averaged
- ``BinaryCrossentropy``: ``mean_j -(y_j log p_j + (1-y_j) log(1-p_j))`` (binary, multi-label)
- ``CategoricalCrossentropy``: ``-sum_j y_j log p_j``; ``SparseCategoricalCrossentropy``: ``-log p_c``
- ``KLDivergence``: ``sum_j y_j log(y_j / p_j)``; ``Hellinger``: ``||sqrt(p) - sqrt(y)|| / sqrt(2)``

With ``from_logits=False`` outputs are probabilities, clipped to ``[1e-7, 1 - 1e-7]`` (and, for
the categorical loss, normalised to sum 1) as in Keras; with ``from_logits=True`` stable
log-sum-exp / softplus forms are used. A softmax output with a cross entropy, or a sigmoid output
with binary cross entropy, is fused so the output delta is ``a - y`` (note 002).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _core

__all__ = [
    "Loss",
    "MeanSquaredError",
    "MeanAbsoluteError",
    "Huber",
    "BinaryCrossentropy",
    "CategoricalCrossentropy",
    "KLDivergence",
    "Hellinger",
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

    @property
    def is_binary(self) -> bool:
        return self.engine_name == "binary_crossentropy"

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


class MeanAbsoluteError(Loss):
    """``mean_j |y_j - a_j|`` per sample; less sensitive to outliers than MSE."""

    engine_name = "mean_absolute_error"


class Huber(Loss):
    """``mean_j h(a_j - y_j)``, ``h(r) = r^2 / 2`` for ``|r| <= delta``, else
    ``delta (|r| - delta / 2)``: quadratic near zero, linear (robust) for outliers."""

    engine_name = "huber"

    def __init__(self, delta: float = 1.0, name: str | None = None):
        super().__init__(name or "huber_loss")
        if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not delta > 0:
            raise ValueError(f"Huber: delta must be positive; got {delta!r}")
        self.delta = float(delta)

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "delta": self.delta}

    def _spec(self) -> dict[str, Any]:
        return {"name": self.engine_name, "delta": self.delta}


def _smoothing(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"label_smoothing must be in [0, 1]; got {value!r}")
    return float(value)


class BinaryCrossentropy(Loss):
    """``mean_j -(y_j log p_j + (1 - y_j) log(1 - p_j))``: binary and multi-label
    classification, one sigmoid per output (the notes' "cross entropy variation").

    With a sigmoid output layer the gradient is fused to ``a - y`` (note 002). Label smoothing
    follows note 004: targets become ``1 - eps`` and ``eps`` (Keras: ``1 - eps/2`` and ``eps/2``).
    """

    engine_name = "binary_crossentropy"

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0, name: str | None = None):
        super().__init__(name)
        self.from_logits = bool(from_logits)
        self.label_smoothing = _smoothing(label_smoothing)

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "from_logits": self.from_logits, "label_smoothing": self.label_smoothing}

    def _spec(self) -> dict[str, Any]:
        return {
            "name": self.engine_name,
            "from_logits": self.from_logits,
            "label_smoothing": self.label_smoothing,
        }


class CategoricalCrossentropy(BinaryCrossentropy):
    """``-sum_j y_j log p_j`` with one-hot targets.

    Label smoothing follows note 004: with ``k`` classes ones become ``1 - eps`` and zeros
    ``eps / (k - 1)`` (``k = 5, eps = 0.01``: ``[0.0025, 0.0025, 0.99, 0.0025, 0.0025]``).
    Keras uses ``y (1 - eps) + eps / k`` instead.
    """

    engine_name = "categorical_crossentropy"


class SparseCategoricalCrossentropy(Loss):
    """``-log p_c`` with integer class labels ``c`` in ``[0, classes)``."""

    engine_name = "sparse_categorical_crossentropy"

    def __init__(self, from_logits: bool = False, name: str | None = None):
        super().__init__(name)
        self.from_logits = bool(from_logits)

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "from_logits": self.from_logits}

    def _spec(self) -> dict[str, Any]:
        return {"name": self.engine_name, "from_logits": self.from_logits}

    @property
    def is_sparse(self) -> bool:
        return True


class KLDivergence(Loss):
    """Kullback-Leibler divergence ``sum_j y_j log(y_j / p_j)`` (note 002 B.2.2), both clipped
    to ``[1e-7, 1]`` as in Keras."""

    engine_name = "kl_divergence"

    def __init__(self, name: str | None = None):
        super().__init__(name or "kl_divergence")


class Hellinger(Loss):
    """Hellinger distance ``||sqrt(p) - sqrt(y)||_2 / sqrt(2)`` between the output and target
    distributions (note 002 B.2.2; not in Keras). Outputs must be non-negative, e.g. softmax."""

    engine_name = "hellinger"


_ALIASES = {
    "mse": MeanSquaredError,
    "mae": MeanAbsoluteError,
    "mean_absolute_error": MeanAbsoluteError,
    "MeanAbsoluteError": MeanAbsoluteError,
    "huber": Huber,
    "huber_loss": Huber,
    "Huber": Huber,
    "binary_crossentropy": BinaryCrossentropy,
    "BinaryCrossentropy": BinaryCrossentropy,
    "kl_divergence": KLDivergence,
    "kld": KLDivergence,
    "kullback_leibler_divergence": KLDivergence,
    "KLDivergence": KLDivergence,
    "hellinger": Hellinger,
    "Hellinger": Hellinger,
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

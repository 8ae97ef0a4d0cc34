"""Metrics, computed streaming inside the engine's loop: each epoch value is exact over the whole
epoch (Keras' semantics), not a mean of per-batch values.

By name in ``compile(metrics=[...])`` or as objects:

- ``"accuracy"`` picks its variant as Keras does: binary accuracy for a one-unit output or a
  binary cross entropy loss, sparse categorical accuracy with integer labels, categorical
  accuracy otherwise
- ``BinaryAccuracy(threshold=0.5)``: ``(pred > t) == (y > t)`` over every output value
- ``CategoricalAccuracy``, ``SparseCategoricalAccuracy``: ``argmax(pred) == argmax(y)`` / ``== y``
- ``TopKCategoricalAccuracy(k=5)``, ``SparseTopKCategoricalAccuracy(k=5)``: true class among
  the ``k`` largest predictions
- ``MeanSquaredError`` (``"mse"``), ``MeanAbsoluteError`` (``"mae"``): over every output value
- ``Precision(thresholds=0.5)``: ``TP / (TP + FP)``; ``Recall``: ``TP / (TP + FN)``, with
  ``pred > threshold`` and ``y != 0``
- ``AUC(num_thresholds=200)``: ROC area, trapezoid rule over evenly spaced thresholds (Keras'
  default ``summation_method="interpolation"``)
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "Metric", "BinaryAccuracy", "CategoricalAccuracy", "SparseCategoricalAccuracy",
    "TopKCategoricalAccuracy", "SparseTopKCategoricalAccuracy", "MeanSquaredError",
    "MeanAbsoluteError", "Precision", "Recall", "AUC", "get", "resolve",
]  # fmt: skip


class Metric:
    """Base class: an engine kind, a reported name and options."""

    kind = ""
    default_name = ""
    sparse = False

    def __init__(self, name: str | None = None):
        self.name = name or self.default_name

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Metric:
        return cls(**config)

    def _spec(self) -> dict[str, Any]:
        cfg = self.get_config()
        cfg.pop("name")
        return {"name": self.name, "kind": self.kind, **cfg}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def _threshold(t) -> float:
    if isinstance(t, (list, tuple)):
        if len(t) != 1:
            raise ValueError("only a single threshold is supported")
        t = t[0]
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 <= t <= 1:
        raise ValueError(f"threshold must be in [0, 1]; got {t!r}")
    return float(t)


def _k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer; got {k!r}")
    return k


class BinaryAccuracy(Metric):
    kind, default_name = "binary_accuracy", "binary_accuracy"

    def __init__(self, name: str | None = None, threshold: float = 0.5):
        super().__init__(name)
        self.threshold = _threshold(threshold)

    def get_config(self):
        return {"name": self.name, "threshold": self.threshold}


class CategoricalAccuracy(Metric):
    kind, default_name = "categorical_accuracy", "categorical_accuracy"


class SparseCategoricalAccuracy(Metric):
    kind, default_name, sparse = "sparse_categorical_accuracy", "sparse_categorical_accuracy", True


class TopKCategoricalAccuracy(Metric):
    kind, default_name = "top_k_categorical_accuracy", "top_k_categorical_accuracy"

    def __init__(self, k: int = 5, name: str | None = None):
        super().__init__(name)
        self.k = _k(k)

    def get_config(self):
        return {"name": self.name, "k": self.k}


class SparseTopKCategoricalAccuracy(TopKCategoricalAccuracy):
    kind, default_name, sparse = (
        "sparse_top_k_categorical_accuracy",
        "sparse_top_k_categorical_accuracy",
        True,
    )


class MeanSquaredError(Metric):
    kind, default_name = "mean_squared_error", "mean_squared_error"


class MeanAbsoluteError(Metric):
    kind, default_name = "mean_absolute_error", "mean_absolute_error"


class Precision(Metric):
    kind, default_name = "precision", "precision"

    def __init__(self, thresholds=None, name: str | None = None):
        super().__init__(name)
        self.threshold = 0.5 if thresholds is None else _threshold(thresholds)

    def get_config(self):
        return {"name": self.name, "threshold": self.threshold}

    @classmethod
    def from_config(cls, config):
        return cls(thresholds=config.get("threshold"), name=config.get("name"))


class Recall(Precision):
    kind, default_name = "recall", "recall"


class AUC(Metric):
    kind, default_name = "auc", "auc"

    def __init__(self, num_thresholds: int = 200, name: str | None = None):
        super().__init__(name)
        if isinstance(num_thresholds, bool) or not isinstance(num_thresholds, int) or num_thresholds < 2:
            raise ValueError(f"AUC: num_thresholds must be an integer > 1; got {num_thresholds!r}")
        self.num_thresholds = num_thresholds

    def get_config(self):
        return {"name": self.name, "num_thresholds": self.num_thresholds}


_BY_NAME: dict[str, type] = {
    "binary_accuracy": BinaryAccuracy,
    "categorical_accuracy": CategoricalAccuracy,
    "sparse_categorical_accuracy": SparseCategoricalAccuracy,
    "top_k_categorical_accuracy": TopKCategoricalAccuracy,
    "sparse_top_k_categorical_accuracy": SparseTopKCategoricalAccuracy,
    "mse": MeanSquaredError,
    "mean_squared_error": MeanSquaredError,
    "mae": MeanAbsoluteError,
    "mean_absolute_error": MeanAbsoluteError,
    "precision": Precision,
    "recall": Recall,
    "auc": AUC,
}
_ACCURACY = ("accuracy", "acc")


def get(identifier) -> Metric | str:
    """A metric from a name or an instance; ``"accuracy"`` stays a name until the model is known."""
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Metric):
        return identifier()
    if isinstance(identifier, str):
        if identifier in _ACCURACY:
            return "accuracy"
        if identifier in _BY_NAME:
            return _BY_NAME[identifier](name=identifier)
        raise ValueError(f"Unknown metric: '{identifier}'. Known metrics: {['accuracy', *_BY_NAME]}")
    raise TypeError(f"metrics must be names or ferronet.metrics.Metric objects; got {identifier!r}")


def resolve(metric: Metric | str, output_width: int, loss) -> Metric:
    """The concrete metric for a model with ``output_width`` outputs trained with ``loss``."""
    if metric != "accuracy":
        return metric
    if output_width == 1 or loss.is_binary:
        return BinaryAccuracy(name="accuracy")
    if loss.is_sparse:
        return SparseCategoricalAccuracy(name="accuracy")
    return CategoricalAccuracy(name="accuracy")

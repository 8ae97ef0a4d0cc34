"""Optimizers, by class or by name. The state (moments, step count) lives in the engine.

Update rules, as Keras 3 writes them (note 001, note 002 §4.4, note 004):

- ``SGD``: ``w <- w - lr g``; with momentum ``v <- mu v - lr g``, ``w <- w + v``;
  Nesterov ``w <- w + mu v - lr g``.
- ``Adam``: ``m <- b1 m + (1-b1) g``, ``v <- b2 v + (1-b2) g^2``,
  ``w <- w - lr sqrt(1-b2^t)/(1-b1^t) m / (sqrt(v) + eps)``. Note 002 writes
  ``sqrt(v_hat + eps)``; the published form, with ``eps`` outside the root, is used.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["Optimizer", "SGD", "Adam", "get"]


def _check_rate(name: str, value, lo: float = 0.0, hi: float | None = None, hi_open=False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number; got {type(value).__name__}")
    v = float(value)
    bad = math.isnan(v) or v < lo or (hi is not None and (v >= hi if hi_open else v > hi))
    if bad:
        rng = f"[{lo}, {hi}{')' if hi_open else ']'}" if hi is not None else f">= {lo}"
        raise ValueError(f"{name} must be {rng}; got {value}")
    return v


class Optimizer:
    """Base class. Once a model is compiled with it, reads and writes go to the engine."""

    engine_name = ""

    def __init__(self, learning_rate: float, name: str | None = None):
        self._learning_rate = _check_rate("learning_rate", learning_rate)
        self.name = name or type(self).__name__
        self._core = None

    @property
    def learning_rate(self) -> float:
        if self._core is not None:
            return float(self._core.learning_rate)
        return self._learning_rate

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        self._learning_rate = _check_rate("learning_rate", value)
        if self._core is not None:
            self._core.learning_rate = self._learning_rate

    @property
    def iterations(self) -> int:
        """Number of update steps taken since the model was compiled."""
        return int(self._core.iterations) if self._core is not None else 0

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "learning_rate": self.learning_rate}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Optimizer:
        return cls(**config)

    def _spec(self) -> dict[str, Any]:
        cfg = self.get_config()
        cfg.pop("name")
        return {"name": self.engine_name, **cfg}

    def _attach(self, core) -> None:
        self._core = core

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "name")
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Gradient descent with optional classical or Nesterov momentum.

    The batch size chooses the flavour (note 001): ``batch_size=None`` in ``fit`` is full-batch
    gradient descent, ``1`` per-sample SGD, anything between mini-batch.
    """

    engine_name = "sgd"

    def __init__(
        self,
        learning_rate: float = 0.01,
        momentum: float = 0.0,
        nesterov: bool = False,
        name: str | None = None,
    ):
        super().__init__(learning_rate, name)
        self.momentum = _check_rate("momentum", momentum, 0.0, 1.0)
        self.nesterov = bool(nesterov)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


class Adam(Optimizer):
    """Adam with Keras' defaults (``epsilon=1e-7``)."""

    engine_name = "adam"

    def __init__(
        self,
        learning_rate: float = 0.001,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
        name: str | None = None,
    ):
        super().__init__(learning_rate, name)
        self.beta_1 = _check_rate("beta_1", beta_1, 0.0, 1.0, hi_open=True)
        self.beta_2 = _check_rate("beta_2", beta_2, 0.0, 1.0, hi_open=True)
        self.epsilon = _check_rate("epsilon", epsilon)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "beta_1": self.beta_1,
            "beta_2": self.beta_2,
            "epsilon": self.epsilon,
        }


_BY_NAME = {"sgd": SGD, "adam": Adam, "SGD": SGD, "Adam": Adam}


def get(identifier) -> Optimizer:
    """An optimizer from a name (``"sgd"``, ``"adam"``), a class or an instance."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Optimizer):
        return identifier()
    if isinstance(identifier, str):
        if identifier in _BY_NAME:
            return _BY_NAME[identifier]()
        raise ValueError(
            f"Unknown optimizer: '{identifier}'. Known optimizers: "
            f"{sorted(k for k in _BY_NAME if k.islower())}"
        )
    raise TypeError(
        f"optimizer must be a string or a ferronet.optimizers.Optimizer; got {type(identifier).__name__}"
    )

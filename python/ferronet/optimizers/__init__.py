"""Optimizers, by class or by name. Their state (moments, step count) lives in the engine,
persists across ``fit`` calls and starts afresh when the model is compiled again.

Update rules, as Keras 3 writes them (note 001, note 002 §4.4, note 004):

- ``SGD``: ``w -= lr g``; momentum ``v = mu v - lr g; w += v``; Nesterov ``w += mu v - lr g``.
  The batch size picks the flavour (note 001): ``fit(batch_size=None)`` is full-batch gradient
  descent, ``1`` per-sample SGD, anything between mini-batch.
- ``Adagrad``: ``a += g^2; w -= lr g / sqrt(a + eps)``
- ``RMSprop``: ``s = rho s + (1-rho) g^2``; ``w -= lr g / sqrt(s + eps)`` (centered: ``s - a^2``
  with ``a`` the mean gradient; optional momentum on the increment)
- ``Adam``: ``m = b1 m + (1-b1) g``, ``v = b2 v + (1-b2) g^2``,
  ``w -= lr sqrt(1-b2^t)/(1-b1^t) m / (sqrt(v) + eps)`` (``amsgrad``: ``max`` of past ``v``).
  Note 002 writes ``sqrt(v_hat + eps)``; the published form, with ``eps`` outside, is used.
- ``AdamW``: Adam with decoupled weight decay (default 0.004), which note 000 contrasts with an
  L2 penalty: the decay does not pass through the adaptive denominator.
- ``Adamax``: ``u = max(b2 u, |g|)``, ``w -= lr/(1-b1^t) m / (u + eps)``
- ``Nadam``: Adam with Nesterov momentum (Dozat 2016)

Every optimizer takes ``weight_decay`` (decoupled: ``w -= lr * wd * w`` on kernels only, not on
biases, note 002), ``clipnorm`` (per tensor), ``clipvalue``, ``global_clipnorm`` (note 004:
gradient clipping) and a schedule from ``ferronet.optimizers.schedules`` as ``learning_rate``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import schedules
from .schedules import LearningRateSchedule

__all__ = [
    "Optimizer", "SGD", "Adam", "AdamW", "Adagrad", "RMSprop", "Adamax", "Nadam", "LBFGS", "get",
    "schedules",
]  # fmt: skip


def _number(name: str, value, lo: float = 0.0, hi: float | None = None, hi_open=False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a number; got {type(value).__name__}")
    v = float(value)
    bad = not math.isfinite(v) or v < lo or (hi is not None and (v >= hi if hi_open else v > hi))
    if bad:
        rng = f"in [{lo}, {hi}{')' if hi_open else ']'}" if hi is not None else f">= {lo}"
        raise ValueError(f"{name} must be a finite number {rng}; got {value}")
    return v


def _optional_positive(name: str, value) -> float | None:
    if value is None:
        return None
    v = _number(name, value)
    if v <= 0:
        raise ValueError(f"{name} must be positive; got {value}")
    return v


class Optimizer:
    """Base class: rule hyper-parameters plus the options every optimizer shares."""

    engine_name = ""

    def __init__(
        self,
        learning_rate,
        weight_decay=None,
        clipnorm=None,
        clipvalue=None,
        global_clipnorm=None,
        name: str | None = None,
    ):
        self._set_rate(learning_rate)
        self.weight_decay = 0.0 if weight_decay is None else _number("weight_decay", weight_decay)
        self.clipnorm = _optional_positive("clipnorm", clipnorm)
        self.clipvalue = _optional_positive("clipvalue", clipvalue)
        self.global_clipnorm = _optional_positive("global_clipnorm", global_clipnorm)
        if sum(c is not None for c in (self.clipnorm, self.clipvalue, self.global_clipnorm)) > 1:
            raise ValueError("only one of clipnorm, clipvalue and global_clipnorm may be set")
        self.name = name or type(self).__name__
        self._core = None

    def _set_rate(self, value) -> None:
        if isinstance(value, LearningRateSchedule):
            self._learning_rate = value
        else:
            self._learning_rate = _number("learning_rate", value)

    @property
    def learning_rate(self) -> float:
        """The rate the next update uses (a schedule's current value)."""
        if self._core is not None:
            return float(self._core.learning_rate)
        if isinstance(self._learning_rate, LearningRateSchedule):
            return self._learning_rate(0)
        return self._learning_rate

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        """Sets a constant rate (replacing any schedule), effective from the next update."""
        self._learning_rate = _number("learning_rate", value)
        if self._core is not None:
            self._core.learning_rate = self._learning_rate

    @property
    def iterations(self) -> int:
        """Number of updates since the model was compiled."""
        return int(self._core.iterations) if self._core is not None else 0

    @property
    def variables(self) -> list[np.ndarray]:
        """The optimizer state: ``[iterations, *slots]``, each slot a flat float32 array over
        every weight in ``get_weights()`` order (e.g. Adam's ``m`` then ``v``)."""
        if self._core is None:
            return []
        return [np.array(self.iterations, dtype=np.int64), *(a for _, a in self._core.optimizer_slots())]

    def _rule_config(self) -> dict[str, Any]:
        return {}

    def get_config(self) -> dict[str, Any]:
        lr = self._learning_rate
        if isinstance(lr, LearningRateSchedule):
            lr = {"class_name": type(lr).__name__, "config": lr.get_config()}
        return {
            "name": self.name,
            "learning_rate": lr,
            **self._rule_config(),
            "weight_decay": self.weight_decay,
            "clipnorm": self.clipnorm,
            "clipvalue": self.clipvalue,
            "global_clipnorm": self.global_clipnorm,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Optimizer:
        config = dict(config)
        lr = config.get("learning_rate")
        if isinstance(lr, dict):
            config["learning_rate"] = getattr(schedules, lr["class_name"]).from_config(lr["config"])
        return cls(**config)

    def _spec(self) -> dict[str, Any]:
        lr = self._learning_rate
        return {
            "name": self.engine_name,
            **self._rule_config(),
            "learning_rate": lr._spec() if isinstance(lr, LearningRateSchedule) else lr,
            "weight_decay": self.weight_decay,
            "clipnorm": self.clipnorm,
            "clipvalue": self.clipvalue,
            "global_clipnorm": self.global_clipnorm,
        }

    def _attach(self, core) -> None:
        self._core = core

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "name" and v)
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Gradient descent with optional classical or Nesterov momentum."""

    engine_name = "sgd"

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.momentum = _number("momentum", momentum, 0.0, 1.0)
        self.nesterov = bool(nesterov)

    def _rule_config(self):
        return {"momentum": self.momentum, "nesterov": self.nesterov}


class Adam(Optimizer):
    """Adam with Keras' defaults (``epsilon=1e-7``); ``amsgrad`` keeps the maximum of ``v``."""

    engine_name = "adam"

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.beta_1 = _number("beta_1", beta_1, 0.0, 1.0, hi_open=True)
        self.beta_2 = _number("beta_2", beta_2, 0.0, 1.0, hi_open=True)
        self.epsilon = _number("epsilon", epsilon)
        self.amsgrad = bool(amsgrad)

    def _rule_config(self):
        return {
            "beta_1": self.beta_1,
            "beta_2": self.beta_2,
            "epsilon": self.epsilon,
            "amsgrad": self.amsgrad,
        }


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov and Hutter 2019; note 000, note 002)."""

    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False, **kwargs):  # fmt: skip
        super().__init__(learning_rate, beta_1, beta_2, epsilon, amsgrad, weight_decay=weight_decay, **kwargs)


class Adagrad(Optimizer):
    """Per-parameter rates shrinking with the accumulated squared gradient (note 001)."""

    engine_name = "adagrad"

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.initial_accumulator_value = _number("initial_accumulator_value", initial_accumulator_value)
        self.epsilon = _number("epsilon", epsilon)

    def _rule_config(self):
        return {"initial_accumulator_value": self.initial_accumulator_value, "epsilon": self.epsilon}


class RMSprop(Optimizer):
    """Rates scaled by a moving average of squared gradients (note 001, note 004)."""

    engine_name = "rmsprop"

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.rho = _number("rho", rho, 0.0, 1.0, hi_open=True)
        self.momentum = _number("momentum", momentum, 0.0, 1.0, hi_open=True)
        self.epsilon = _number("epsilon", epsilon)
        self.centered = bool(centered)

    def _rule_config(self):
        return {
            "rho": self.rho,
            "momentum": self.momentum,
            "epsilon": self.epsilon,
            "centered": self.centered,
        }


class Adamax(Optimizer):
    """Adam with the infinity norm in the denominator."""

    engine_name = "adamax"

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.beta_1 = _number("beta_1", beta_1, 0.0, 1.0, hi_open=True)
        self.beta_2 = _number("beta_2", beta_2, 0.0, 1.0, hi_open=True)
        self.epsilon = _number("epsilon", epsilon)

    def _rule_config(self):
        return {"beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon}


class Nadam(Adamax):
    """Adam with Nesterov momentum (Dozat 2016)."""

    engine_name = "nadam"


class LBFGS(Optimizer):
    """Limited-memory BFGS (the quasi-Newton family of note 001), full batch, for small networks.

    Each epoch of ``fit`` is one call of up to ``max_iter`` iterations over the whole training set
    (``batch_size`` is ignored): direction ``-H g`` from the last ``history_size`` curvature pairs,
    step from ``learning_rate`` halved until Armijo's sufficient-decrease condition holds; it stops
    early when ``max|g| <= tolerance_grad`` or the loss changes by less than ``tolerance_change``.
    """

    engine_name = "lbfgs"

    def __init__(self, learning_rate=1.0, max_iter=20, history_size=10, tolerance_grad=1e-7,
                 tolerance_change=1e-9, name=None):  # fmt: skip
        super().__init__(learning_rate, name=name)
        for what, v in (("max_iter", max_iter), ("history_size", history_size)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"LBFGS: {what} must be a positive integer; got {v!r}")
        self.max_iter, self.history_size = max_iter, history_size
        self.tolerance_grad = _number("tolerance_grad", tolerance_grad)
        self.tolerance_change = _number("tolerance_change", tolerance_change)

    def _rule_config(self):
        return {
            "max_iter": self.max_iter,
            "history_size": self.history_size,
            "tolerance_grad": self.tolerance_grad,
            "tolerance_change": self.tolerance_change,
        }

    def get_config(self):
        return {"name": self.name, "learning_rate": self._learning_rate, **self._rule_config()}


_CLASSES = (SGD, Adam, AdamW, Adagrad, RMSprop, Adamax, Nadam, LBFGS)
_BY_NAME: dict[str, type] = {c.__name__.lower(): c for c in _CLASSES}
_BY_NAME.update({c.__name__: c for c in _CLASSES})


def get(identifier) -> Optimizer:
    """An optimizer from a name (``"sgd"``, ``"adam"``, ``"rmsprop"``...), a class or an instance."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Optimizer):
        return identifier()
    if isinstance(identifier, str):
        if identifier in _BY_NAME:
            return _BY_NAME[identifier]()
        raise ValueError(
            f"Unknown optimizer: '{identifier}'. "
            f"Known optimizers: {sorted(k for k in _BY_NAME if k.islower())}"
        )
    raise TypeError(
        f"optimizer must be a string or a ferronet.optimizers.Optimizer; got {type(identifier).__name__}"
    )

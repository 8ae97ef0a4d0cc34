"""Weight penalties for ``kernel_regularizer`` / ``bias_regularizer`` (note 002
"Regularización", note 004). Keras' semantics: the penalty is added to the reported loss and
its gradient to the weight gradient.

- ``L1(l1)``: ``l1 * sum(|w|)``; ``L2(l2)``: ``l2 * sum(w^2)`` (gradient ``2 l2 w``)
- ``L1L2(l1, l2)``: both
- ``Lp(p, factor)``: the notes' "Lm" penalty, ``factor / p * sum(|w|^p)`` with gradient
  ``factor * sign(w) * |w|^(p-1)`` (note 002); ``p = 2`` is half of ``L2(factor)``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Regularizer", "L1", "L2", "L1L2", "Lp", "get"]


def _factor(name: str, v) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
        raise ValueError(f"{name} must be a non-negative number; got {v!r}")
    return float(v)


class Regularizer:
    """Base class."""

    def get_config(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Regularizer:
        return cls(**config)

    def _spec(self) -> dict[str, Any]:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class L1(Regularizer):
    """``l1 * sum(|w|)``."""

    def __init__(self, l1: float = 0.01):
        self.l1 = _factor("l1", l1)

    def get_config(self):
        return {"l1": self.l1}

    def _spec(self):
        return {"name": "l1", "l1": self.l1}


class L2(Regularizer):
    """``l2 * sum(w^2)``."""

    def __init__(self, l2: float = 0.01):
        self.l2 = _factor("l2", l2)

    def get_config(self):
        return {"l2": self.l2}

    def _spec(self):
        return {"name": "l2", "l2": self.l2}


class L1L2(Regularizer):
    """``l1 * sum(|w|) + l2 * sum(w^2)``."""

    def __init__(self, l1: float = 0.0, l2: float = 0.0):
        self.l1, self.l2 = _factor("l1", l1), _factor("l2", l2)

    def get_config(self):
        return {"l1": self.l1, "l2": self.l2}

    def _spec(self):
        return {"name": "l1l2", "l1": self.l1, "l2": self.l2}


class Lp(Regularizer):
    """``factor / p * sum(|w|^p)``, the "Lm" penalty of note 002 (``p >= 1``)."""

    def __init__(self, p: float = 2.0, factor: float = 0.01):
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not p >= 1:
            raise ValueError(f"Lp: p must be >= 1; got {p!r}")
        self.p, self.factor = float(p), _factor("factor", factor)

    def get_config(self):
        return {"p": self.p, "factor": self.factor}

    def _spec(self):
        return {"name": "lp", "p": self.p, "factor": self.factor}


_BY_NAME = {"l1": L1, "l2": L2, "l1_l2": L1L2, "L1": L1, "L2": L2, "L1L2": L1L2, "Lp": Lp}


def get(identifier) -> Regularizer | None:
    """A regularizer from a name (``"l1"``, ``"l2"``, ``"l1_l2"``), an instance, or None."""
    if identifier is None or isinstance(identifier, Regularizer):
        return identifier
    if isinstance(identifier, dict) and identifier.get("class_name") in ("L1", "L2", "L1L2", "Lp"):
        return globals()[identifier["class_name"]](**identifier.get("config", {}))
    if isinstance(identifier, str):
        if identifier in _BY_NAME:
            return _BY_NAME[identifier]()
        raise ValueError(f"Unknown regularizer: '{identifier}'. Known regularizers: ['l1', 'l2', 'l1_l2']")
    raise TypeError(f"regularizer must be a string or a Regularizer; got {type(identifier).__name__}")

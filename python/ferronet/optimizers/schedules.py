"""Learning-rate schedules (note 004 "Learning rate schedules", note 002 §4.5 warm-up).

Pass one as ``learning_rate`` to any optimizer: the engine evaluates it at every update
(``step`` = updates already taken). Call ``schedule(step)`` to get the rate, e.g. for a plot.

- ``ExponentialDecay``: ``lr0 * decay_rate ** (step / decay_steps)`` (floored with ``staircase``)
- ``PiecewiseConstantDecay``: ``values[i]`` while ``step <= boundaries[i]``
- ``PolynomialDecay``: ``(lr0 - end) * (1 - step / decay_steps) ** power + end``
- ``CosineDecay``: ``lr0 * ((1 - alpha) * (1 + cos(pi * t)) / 2 + alpha)``, ``t = step /
  decay_steps``, after an optional linear warm-up to ``warmup_target`` over ``warmup_steps``
- ``CosineDecayRestarts``: cosine periods growing by ``t_mul``, peaks scaled by ``m_mul`` (SGDR)
- ``CyclicalLearningRate``: triangular cycles between ``initial_learning_rate`` and
  ``maximal_learning_rate``, half-period ``step_size`` (Smith 2017)
- ``LinearWarmup(after, warmup_epochs)``: note 002 §4.5, rate ``i * lr / n`` in epoch ``i`` of
  ``n``, with ``lr`` the wrapped schedule's initial rate; then the wrapped schedule from its start
"""

from __future__ import annotations

import json
from typing import Any

from .. import _core

__all__ = [
    "LearningRateSchedule", "ExponentialDecay", "PiecewiseConstantDecay", "PolynomialDecay",
    "CosineDecay", "CosineDecayRestarts", "CyclicalLearningRate", "LinearWarmup",
]  # fmt: skip


def _positive(name: str, v) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < float("inf"):
        raise ValueError(f"{name} must be a positive finite number; got {v!r}")
    return float(v)


def _rate(name: str, v) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < float("inf"):
        raise ValueError(f"{name} must be a non-negative finite number; got {v!r}")
    return float(v)


class LearningRateSchedule:
    """Base class: a schedule is its engine name and arguments."""

    engine_name = ""

    def get_config(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> LearningRateSchedule:
        return cls(**config)

    def _spec(self) -> dict[str, Any]:
        cfg = dict(self.get_config())
        cfg.pop("name", None)
        return {"name": self.engine_name, **cfg}

    def __call__(self, step: int, steps_per_epoch: int = 1) -> float:
        """The learning rate at update ``step`` (0-based)."""
        if isinstance(step, bool) or int(step) != step or step < 0:
            raise ValueError(f"step must be a non-negative integer; got {step!r}")
        return _core.schedule_value(json.dumps(self._spec()), int(step), int(steps_per_epoch))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class ExponentialDecay(LearningRateSchedule):
    engine_name = "exponential_decay"

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False, name=None):
        self.initial_learning_rate = _rate("initial_learning_rate", initial_learning_rate)
        self.decay_steps = _positive("decay_steps", decay_steps)
        self.decay_rate = _rate("decay_rate", decay_rate)
        self.staircase = bool(staircase)

    def get_config(self):
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "decay_rate": self.decay_rate,
            "staircase": self.staircase,
        }


class PiecewiseConstantDecay(LearningRateSchedule):
    engine_name = "piecewise_constant_decay"

    def __init__(self, boundaries, values, name=None):
        self.boundaries = [float(b) for b in boundaries]
        self.values = [_rate("values", v) for v in values]
        if len(self.values) != len(self.boundaries) + 1:
            raise ValueError("PiecewiseConstantDecay: values must have one more entry than boundaries")
        if any(a > b for a, b in zip(self.boundaries, self.boundaries[1:])):
            raise ValueError("PiecewiseConstantDecay: boundaries must be increasing")

    def get_config(self):
        return {"boundaries": self.boundaries, "values": self.values}


class PolynomialDecay(LearningRateSchedule):
    engine_name = "polynomial_decay"

    def __init__(self, initial_learning_rate, decay_steps, end_learning_rate=0.0001, power=1.0,
                 cycle=False, name=None):  # fmt: skip
        self.initial_learning_rate = _rate("initial_learning_rate", initial_learning_rate)
        self.decay_steps = _positive("decay_steps", decay_steps)
        self.end_learning_rate = _rate("end_learning_rate", end_learning_rate)
        self.power = float(power)
        self.cycle = bool(cycle)

    def get_config(self):
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "end_learning_rate": self.end_learning_rate,
            "power": self.power,
            "cycle": self.cycle,
        }


class CosineDecay(LearningRateSchedule):
    engine_name = "cosine_decay"

    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0, name=None, warmup_target=None,
                 warmup_steps=0):  # fmt: skip
        self.initial_learning_rate = _rate("initial_learning_rate", initial_learning_rate)
        self.decay_steps = _positive("decay_steps", decay_steps)
        self.alpha = _rate("alpha", alpha)
        self.warmup_target = None if warmup_target is None else _rate("warmup_target", warmup_target)
        self.warmup_steps = _rate("warmup_steps", warmup_steps)

    def get_config(self):
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "alpha": self.alpha,
            "warmup_target": self.warmup_target,
            "warmup_steps": self.warmup_steps,
        }


class CosineDecayRestarts(LearningRateSchedule):
    engine_name = "cosine_decay_restarts"

    def __init__(self, initial_learning_rate, first_decay_steps, t_mul=2.0, m_mul=1.0, alpha=0.0, name=None):
        self.initial_learning_rate = _rate("initial_learning_rate", initial_learning_rate)
        self.first_decay_steps = _positive("first_decay_steps", first_decay_steps)
        self.t_mul = _positive("t_mul", t_mul)
        self.m_mul = _rate("m_mul", m_mul)
        self.alpha = _rate("alpha", alpha)

    def get_config(self):
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "first_decay_steps": self.first_decay_steps,
            "t_mul": self.t_mul,
            "m_mul": self.m_mul,
            "alpha": self.alpha,
        }


class CyclicalLearningRate(LearningRateSchedule):
    """Triangular cyclical learning rate (Smith 2017; note 004 "cyclic")."""

    engine_name = "cyclical_learning_rate"

    def __init__(self, initial_learning_rate, maximal_learning_rate, step_size, name=None):
        self.initial_learning_rate = _rate("initial_learning_rate", initial_learning_rate)
        self.maximal_learning_rate = _rate("maximal_learning_rate", maximal_learning_rate)
        self.step_size = _positive("step_size", step_size)

    def get_config(self):
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "maximal_learning_rate": self.maximal_learning_rate,
            "step_size": self.step_size,
        }


class LinearWarmup(LearningRateSchedule):
    """Linear warm-up over ``warmup_epochs`` epochs (note 002 §4.5), then ``after`` (a number or
    a schedule, restarted at step 0 when the warm-up ends)."""

    engine_name = "linear_warmup"

    def __init__(self, after, warmup_epochs: int = 1, name=None):
        if isinstance(warmup_epochs, bool) or not isinstance(warmup_epochs, int) or warmup_epochs < 1:
            raise ValueError(f"warmup_epochs must be a positive integer; got {warmup_epochs!r}")
        if not isinstance(after, LearningRateSchedule):
            after = _rate("after", after)
        self.after, self.warmup_epochs = after, warmup_epochs

    def get_config(self):
        after = self.after
        if isinstance(after, LearningRateSchedule):
            after = {"class_name": type(after).__name__, "config": after.get_config()}
        return {"after": after, "warmup_epochs": self.warmup_epochs}

    @classmethod
    def from_config(cls, config):
        after = config["after"]
        if isinstance(after, dict):
            after = globals()[after["class_name"]].from_config(after["config"])
        return cls(after, config["warmup_epochs"])

    def _spec(self):
        after = self.after._spec() if isinstance(self.after, LearningRateSchedule) else self.after
        return {"name": self.engine_name, "warmup_epochs": self.warmup_epochs, "after": after}

"""Weight initializers (note 004 "Inicialización": Glorot and Bengio 2010, He et al. 2015).

Keras' definitions, with ``fan_in``/``fan_out`` the input/output sizes (times the receptive
field for convolution kernels ``(kh, kw, in, out)``):

- ``GlorotUniform``: ``U(-l, l)``, ``l = sqrt(6 / (fan_in + fan_out))`` (the Dense default)
- ``GlorotNormal``: truncated normal, ``stddev = sqrt(2 / (fan_in + fan_out))``
- ``HeUniform``: ``l = sqrt(6 / fan_in)``; ``HeNormal``: ``stddev = sqrt(2 / fan_in)``
- ``LecunUniform``: ``l = sqrt(3 / fan_in)``; ``LecunNormal``: ``stddev = sqrt(1 / fan_in)``
- ``RandomNormal(mean, stddev)``, ``RandomUniform(minval, maxval)``, ``Zeros``, ``Ones``,
  ``Constant(value)``

"Truncated normal" draws within two standard deviations and rescales so the variance is the
stated one. An initializer given a ``seed`` draws the same values each time it is used.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "Initializer", "GlorotUniform", "GlorotNormal", "HeUniform", "HeNormal", "LecunUniform",
    "LecunNormal", "RandomNormal", "RandomUniform", "Zeros", "Ones", "Constant", "get",
]  # fmt: skip


class Initializer:
    """Base class: an initializer is a name, its arguments and an optional seed."""

    name = ""

    def __init__(self, seed: int | None = None):
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise ValueError(f"seed must be a non-negative integer or None; got {seed!r}")
        self.seed = seed

    def get_config(self) -> dict[str, Any]:
        return {"seed": self.seed}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Initializer:
        return cls(**config)

    def _spec(self) -> dict[str, Any]:
        cfg = self.get_config()
        seed = cfg.pop("seed", None)
        spec = {"name": self.name, **cfg}
        if seed is not None:
            spec["seed"] = seed
        return spec

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class GlorotUniform(Initializer):
    """``U(-l, l)``, ``l = sqrt(6 / (fan_in + fan_out))``."""

    name = "glorot_uniform"


class GlorotNormal(Initializer):
    """Truncated normal, ``stddev = sqrt(2 / (fan_in + fan_out))``."""

    name = "glorot_normal"


class HeUniform(Initializer):
    """``U(-l, l)``, ``l = sqrt(6 / fan_in)`` (for ReLU layers)."""

    name = "he_uniform"


class HeNormal(Initializer):
    """Truncated normal, ``stddev = sqrt(2 / fan_in)`` (for ReLU layers)."""

    name = "he_normal"


class LecunUniform(Initializer):
    """``U(-l, l)``, ``l = sqrt(3 / fan_in)``."""

    name = "lecun_uniform"


class LecunNormal(Initializer):
    """Truncated normal, ``stddev = sqrt(1 / fan_in)`` (for SELU networks)."""

    name = "lecun_normal"


class RandomNormal(Initializer):
    """Normal with the given ``mean`` and ``stddev``."""

    name = "random_normal"

    def __init__(self, mean: float = 0.0, stddev: float = 0.05, seed: int | None = None):
        super().__init__(seed)
        if not stddev >= 0:
            raise ValueError(f"RandomNormal: stddev must be >= 0; got {stddev}")
        self.mean, self.stddev = float(mean), float(stddev)

    def get_config(self) -> dict[str, Any]:
        return {"mean": self.mean, "stddev": self.stddev, "seed": self.seed}


class RandomUniform(Initializer):
    """Uniform in ``[minval, maxval)``."""

    name = "random_uniform"

    def __init__(self, minval: float = -0.05, maxval: float = 0.05, seed: int | None = None):
        super().__init__(seed)
        if not maxval >= minval:
            raise ValueError(f"RandomUniform: need minval <= maxval; got {minval}, {maxval}")
        self.minval, self.maxval = float(minval), float(maxval)

    def get_config(self) -> dict[str, Any]:
        return {"minval": self.minval, "maxval": self.maxval, "seed": self.seed}


class Zeros(Initializer):
    """All zeros (the bias default)."""

    name = "zeros"


class Ones(Initializer):
    """All ones."""

    name = "ones"


class Constant(Initializer):
    """Every value equal to ``value``."""

    name = "constant"

    def __init__(self, value: float = 0.0, seed: int | None = None):
        super().__init__(seed)
        self.value = float(value)

    def get_config(self) -> dict[str, Any]:
        return {"value": self.value, "seed": self.seed}


_CLASSES = (GlorotUniform, GlorotNormal, HeUniform, HeNormal, LecunUniform, LecunNormal,
            RandomNormal, RandomUniform, Zeros, Ones, Constant)  # fmt: skip
_BY_NAME: dict[str, type] = {c.name: c for c in _CLASSES}
_BY_NAME.update({c.__name__: c for c in _CLASSES})


def get(identifier) -> Initializer:
    """An initializer from a name (``"he_normal"``), a class or an instance."""
    if isinstance(identifier, Initializer):
        return identifier
    if isinstance(identifier, dict) and identifier.get("name") in _BY_NAME:
        # An engine spec, as get_config of some layers writes it: {"name": ..., **arguments}.
        args = {k: v for k, v in identifier.items() if k != "name"}
        return _BY_NAME[identifier["name"]](**args)
    if isinstance(identifier, type) and issubclass(identifier, Initializer):
        return identifier()
    if isinstance(identifier, str):
        if identifier in _BY_NAME:
            return _BY_NAME[identifier]()
        raise ValueError(
            f"Unknown initializer: '{identifier}'. Known initializers: {sorted(c.name for c in _CLASSES)}"
        )
    raise TypeError(f"initializer must be a string or an Initializer; got {type(identifier).__name__}")

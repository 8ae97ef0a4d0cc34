"""Weight initializers (note 004 "Inicialización").

``GlorotUniform`` draws from ``U(-l, l)`` with ``l = sqrt(6 / (fan_in + fan_out))`` (Glorot and
Bengio 2010), the Keras default for kernels; ``Zeros`` is the default for biases.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Initializer", "GlorotUniform", "Zeros", "get"]


class Initializer:
    """Base class: an initializer is described by a name and its arguments."""

    name = ""

    def get_config(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Initializer:
        return cls(**config)

    def _spec(self) -> dict[str, Any]:
        return {"name": self.name, **self.get_config()}

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class GlorotUniform(Initializer):
    """Uniform in ``[-l, l]``, ``l = sqrt(6 / (fan_in + fan_out))``."""

    name = "glorot_uniform"


class Zeros(Initializer):
    """All zeros."""

    name = "zeros"


_BY_NAME = {"glorot_uniform": GlorotUniform, "zeros": Zeros}
_BY_NAME.update({cls.__name__: cls for cls in (GlorotUniform, Zeros)})


def get(identifier) -> Initializer:
    """An initializer from a name, a class or an instance."""
    if isinstance(identifier, Initializer):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Initializer):
        return identifier()
    if isinstance(identifier, str):
        if identifier in _BY_NAME:
            return _BY_NAME[identifier]()
        raise ValueError(
            f"Unknown initializer: '{identifier}'. Known initializers: "
            f"{sorted(k for k in _BY_NAME if k.islower())}"
        )
    raise TypeError(f"initializer must be a string or an Initializer; got {type(identifier).__name__}")

"""Layers and models by class name: Keras' ``{"class_name": ..., "config": ...}`` form.

Every public layer and model class of ferronet registers itself here when it is defined
(``Layer.__init_subclass__``), so turning a config back into an object is a dictionary lookup:
no class is imported or executed from the data, and modules that hold layers inside them
(``Residual``, the models) need not import one another.
"""

from __future__ import annotations

from typing import Any

_LAYER_CLASSES: dict[str, type] = {}


def register_layer_class(cls: type) -> None:
    """Called for each subclass of ``Layer``: ferronet's own public classes become loadable."""
    if cls.__module__.startswith("ferronet.") and not cls.__name__.startswith("_"):
        _LAYER_CLASSES[cls.__name__] = cls


def layer_class(name: str) -> type:
    """The registered class called ``name``."""
    return _LAYER_CLASSES[name]


def serialize(obj) -> dict[str, Any]:
    """``{"class_name": ..., "config": obj.get_config()}``."""
    return {"class_name": type(obj).__name__, "config": obj.get_config()}


def deserialize_layer(entry: dict[str, Any]):
    """A layer (or a nested model) from its ``{"class_name", "config"}`` dict (ferronet's own
    classes only); a malformed entry raises ``ValueError``."""
    if not isinstance(entry, dict) or "class_name" not in entry:
        raise ValueError(f"corrupted model file: bad layer entry {entry!r}")
    name = entry["class_name"]
    if not isinstance(name, str) or name not in _LAYER_CLASSES:
        raise ValueError(f"corrupted model file: unknown layer class {name!r}")
    config = entry.get("config", {})
    if not isinstance(config, dict):
        raise ValueError(f"corrupted model file: bad config of a '{name}' layer")
    return _LAYER_CLASSES[name].from_config(config)

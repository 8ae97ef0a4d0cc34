"""Whole-model files: ``model.save(path)`` and ``ferronet.models.load_model(path)``.

One safetensors file holds the weights (including preprocessing statistics and normalization
moving averages), optionally the optimizer state, and as metadata the architecture and the
compile settings as JSON (Keras-style ``{"class_name", "config"}`` dicts). Loading only reads
data: classes are looked up by name among ferronet's own, never imported or executed from the
file. The write is atomic (temporary file, then rename).
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from . import _core, losses, optimizers
from . import layers as layers_module
from . import metrics as metrics_module

FORMAT = "ferronet-model"
VERSION = "1"


def _serialize(obj) -> dict[str, Any]:
    return {"class_name": type(obj).__name__, "config": obj.get_config()}


def _deserialize_from(module, names: list[str], entry: dict[str, Any], kind: str):
    if not isinstance(entry, dict) or "class_name" not in entry:
        raise ValueError(f"corrupted model file: bad {kind} entry {entry!r}")
    name = entry["class_name"]
    if name not in names:
        raise ValueError(f"corrupted model file: unknown {kind} class '{name}'")
    return getattr(module, name).from_config(entry.get("config", {}))


def deserialize_layer(entry: dict[str, Any]):
    """A layer from its ``{"class_name", "config"}`` dict (ferronet's layer classes only)."""
    return _deserialize_from(layers_module, layers_module.__all__, entry, "layer")


def _compile_config(model) -> dict[str, Any] | None:
    if not model._compiled or model.loss is None:
        return None
    return {
        "optimizer": _serialize(model.optimizer),
        "loss": _serialize(model.loss),
        "metrics": [m if isinstance(m, str) else _serialize(m) for m in model._metric_ids],
    }


def save_model(model, filepath, overwrite: bool = True, include_optimizer: bool = True) -> None:
    model._require_built("save")
    path = os.fspath(filepath)
    if not overwrite and os.path.exists(path):
        raise FileExistsError(f"save: {path} exists and overwrite=False")
    core = model._core
    names = list(core.weight_names)
    tensors = list(zip(names, core.get_weights()))
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "model_config": json.dumps(model.get_config()),
        "weight_order": json.dumps(names),
        "rng_state": core.rng_state,
    }
    compile_config = _compile_config(model)
    if compile_config is not None:
        meta["compile_config"] = json.dumps(compile_config)
        if include_optimizer:
            slots = core.optimizer_slots()
            tensors += [(f"optimizer/{n}", a) for n, a in slots]
            meta["optimizer_iterations"] = str(core.iterations)
            meta["optimizer_slots"] = json.dumps([n for n, _ in slots])
    _core.write_tensor_file(path, [(n, np.ascontiguousarray(a, dtype=np.float32)) for n, a in tensors], meta)


def load_model(filepath, compile: bool = True):
    """Rebuilds a model saved by ``model.save``: architecture, weights and, with ``compile``, the
    optimizer, loss, metrics and optimizer state (training resumes where it stopped)."""
    from .models import Sequential

    path = os.fspath(filepath)
    tensors, meta = _core.read_tensor_file(path)
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not a ferronet model file (a weights file loads with load_weights)")
    try:
        config = json.loads(meta["model_config"])
        order = json.loads(meta["weight_order"])
    except (KeyError, ValueError) as e:
        raise ValueError(f"{path}: corrupted model metadata ({e})") from None
    model = Sequential.from_config(config)
    model.build()
    if list(model._core.weight_shapes) != [list(tensors[n].shape) for n in order if n in tensors] or any(
        n not in tensors for n in order
    ):
        raise ValueError(f"{path}: the weights do not match the saved architecture")
    model.set_weights([tensors[n] for n in order])
    if "rng_state" in meta:
        model._core.rng_state = meta["rng_state"]
    if compile and "compile_config" in meta:
        cc = json.loads(meta["compile_config"])
        model.compile(
            optimizer=_deserialize_from(optimizers, optimizers.__all__, cc["optimizer"], "optimizer"),
            loss=_deserialize_from(losses, losses.__all__, cc["loss"], "loss"),
            metrics=[
                m
                if isinstance(m, str)
                else _deserialize_from(metrics_module, metrics_module.__all__, m, "metric")
                for m in cc["metrics"]
            ],
        )
        if "optimizer_iterations" in meta:
            slot_names = json.loads(meta["optimizer_slots"])
            state = [(n, tensors[f"optimizer/{n}"]) for n in slot_names]
            model._core.set_optimizer_state(int(meta["optimizer_iterations"]), state)
    return model

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
import re
from typing import Any

import numpy as np

from . import _core, losses, optimizers
from . import metrics as metrics_module
from ._serialization import deserialize_layer, layer_class
from ._serialization import serialize as _serialize

__all__ = ["save_model", "load_model", "deserialize_layer"]

FORMAT = "ferronet-model"
VERSION = "1"


def _deserialize_from(module, names: list[str], entry: dict[str, Any], kind: str):
    if not isinstance(entry, dict) or "class_name" not in entry:
        raise ValueError(f"corrupted model file: bad {kind} entry {entry!r}")
    name = entry["class_name"]
    if name not in names or not isinstance(getattr(module, name), type):
        raise ValueError(f"corrupted model file: unknown {kind} class '{name}'")
    return getattr(module, name).from_config(entry.get("config", {}))


def _serialize_tree(obj):
    """Losses and metrics as given to ``compile``: one, a list, a dict, nested, or names."""
    if obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, dict):
        return {"__dict__": {k: _serialize_tree(v) for k, v in obj.items()}}
    if isinstance(obj, (list, tuple)):
        return [_serialize_tree(v) for v in obj]
    return _serialize(obj)


def _deserialize_tree(obj, module, kind: str):
    if obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, list):
        return [_deserialize_tree(v, module, kind) for v in obj]
    if isinstance(obj, dict) and "__dict__" in obj:
        return {k: _deserialize_tree(v, module, kind) for k, v in obj["__dict__"].items()}
    return _deserialize_from(module, module.__all__, obj, kind)


def _compile_config(model) -> dict[str, Any] | None:
    if not model._compiled:
        return None
    cfg = model._compile_config()
    return {
        "optimizer": _serialize(model.optimizer),
        "loss": _serialize_tree(cfg["loss"]),
        "loss_weights": cfg["loss_weights"],
        "metrics": _serialize_tree(cfg["metrics"]),
    }


def save_model(model, filepath, overwrite: bool = True, include_optimizer: bool = True) -> None:
    model._require_built("save")
    path = os.fsdecode(filepath)
    if not overwrite and os.path.exists(path):
        raise FileExistsError(f"save: {path} exists and overwrite=False")
    core = model._core
    names = list(core.weight_names)
    # One consistent moment, even while another thread trains the model.
    weights, rng_state, slots, iterations = core.state(include_optimizer and model._compiled)
    tensors = list(zip(names, weights))
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "model_class": type(model).__name__,
        "model_config": json.dumps(model.get_config()),
        "weight_order": json.dumps(names),
        "rng_state": rng_state,
    }
    compile_config = _compile_config(model)
    if compile_config is not None:
        meta["compile_config"] = json.dumps(compile_config)
        if include_optimizer:
            tensors += [(f"optimizer/{n}", a) for n, a in slots]
            meta["optimizer_iterations"] = str(iterations)
            meta["optimizer_slots"] = json.dumps([n for n, _ in slots])
    _core.write_tensor_file(path, [(n, np.ascontiguousarray(a, dtype=np.float32)) for n, a in tensors], meta)


# Deepest nesting of JSON a model file may hold (a model nested in another adds about ten).
MAX_JSON_DEPTH = 100


def _json_entry(meta: dict[str, str], field: str):
    """Metadata entry ``field`` parsed as JSON, refused past ``MAX_JSON_DEPTH`` levels before
    the parser recurses."""
    text = meta[field]
    depth = deepest = 0
    for bracket in re.findall(r"[][{}]", re.sub(r'"(?:[^"\\]|\\.)*"', "", text)):
        depth += 1 if bracket in "[{" else -1
        deepest = max(deepest, depth)
    if deepest > MAX_JSON_DEPTH:
        raise ValueError(f"JSON nested {deepest} levels deep (at most {MAX_JSON_DEPTH})")
    return json.loads(text)


def load_model(filepath, compile: bool = True):
    """Rebuilds a model saved by ``model.save``: architecture, weights and, with ``compile``, the
    optimizer, loss, metrics and optimizer state (training resumes where it stopped).

    Any malformed content raises ``ValueError`` naming the file and the metadata entry."""
    path = os.fsdecode(filepath)
    tensors, meta = _core.read_tensor_file(path)
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not a ferronet model file (a weights file loads with load_weights)")
    field = ["model_config"]  # the entry being read, for the message
    try:
        return _rebuild(path, tensors, meta, compile, field)
    except MemoryError:
        raise
    except Exception as e:  # any failure here comes from the file's content
        if isinstance(e, ValueError) and str(path) in str(e):
            raise
        raise ValueError(
            f"{path}: corrupted model file: bad '{field[0]}' ({type(e).__name__}: {e})"
        ) from None


def _rebuild(path, tensors, meta, compile: bool, field: list):
    config = _json_entry(meta, "model_config")
    field[0] = "weight_order"
    order = _json_entry(meta, "weight_order")
    if not isinstance(order, list) or not all(isinstance(n, str) for n in order):
        raise ValueError("expected a list of tensor names")
    field[0] = "model_class"
    model_class = meta.get("model_class", "Sequential")
    cls = layer_class(model_class) if model_class in ("Sequential", "Functional") else None
    if cls is None:
        raise ValueError(
            f"{path}: corrupted model metadata (unknown model class {meta.get('model_class')!r})"
        )
    field[0] = "model_config"
    # The architecture may ask for no more weights than the file holds: a hostile size is
    # refused before the engine allocates anything.
    stored = sum(int(a.size) for n, a in tensors.items() if not n.startswith("optimizer/"))
    previous = _core.set_weight_budget(stored)
    try:
        model = cls.from_config(config)
        if not model.built:
            model.build()
    finally:
        _core.set_weight_budget(previous)
    if list(model._core.weight_shapes) != [list(tensors[n].shape) for n in order if n in tensors] or any(
        n not in tensors for n in order
    ):
        raise ValueError(f"{path}: the weights do not match the saved architecture")
    model._claim()
    model._core.set_weights(
        list(range(len(order))), [np.ascontiguousarray(tensors[n], np.float32) for n in order]
    )
    field[0] = "rng_state"
    if "rng_state" in meta:
        model._core.rng_state = meta["rng_state"]
    if compile and "compile_config" in meta:
        field[0] = "compile_config"
        cc = _json_entry(meta, "compile_config")
        model.compile(
            optimizer=_deserialize_from(optimizers, optimizers.__all__, cc["optimizer"], "optimizer"),
            loss=_deserialize_tree(cc["loss"], losses, "loss"),
            loss_weights=cc.get("loss_weights"),
            metrics=_deserialize_tree(cc["metrics"], metrics_module, "metric"),
        )
        if "optimizer_iterations" in meta:
            field[0] = "optimizer_iterations"
            iterations = int(meta["optimizer_iterations"])
            field[0] = "optimizer_slots"
            slot_names = _json_entry(meta, "optimizer_slots")
            state = [(n, tensors[f"optimizer/{n}"]) for n in slot_names]
            model._core.set_optimizer_state(iterations, state)
    return model

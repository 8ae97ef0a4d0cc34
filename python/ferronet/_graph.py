"""Symbolic tensors and the graph they record, and its translation to the engine's graph.

Calling a layer on ``KerasTensor`` objects records a ``Node`` (the layer, its input tensors, its
output tensors) and returns new symbolic tensors whose shapes the engine infers. A model is a
set of input tensors and output tensors; walking the nodes between them gives the layers and the
calls the engine runs. Models called inside other models stay one node in the Python graph
(``model.layers``, ``summary``) and are inlined, layer by layer, into the engine's flat graph.
"""

from __future__ import annotations

import json
from typing import Any

from ._naming import unique_name


def shapes_fit(declared, given) -> bool:
    """Whether a per-sample shape ``given`` fits ``declared``, where ``None`` (a dimension each
    call's data sets) matches any size."""
    declared, given = tuple(declared), tuple(given)
    return len(declared) == len(given) and all(
        d is None or g is None or d == g for d, g in zip(declared, given)
    )


def known_width(shape) -> int | None:
    """Values per sample of a per-sample shape, or ``None`` when a dimension is unknown."""
    width = 1
    for d in shape:
        if d is None:
            return None
        width *= int(d)
    return width


class KerasTensor:
    """A symbolic tensor: the shape (batch axis first, ``None`` when unknown), the dtype, and
    the call that produced it (``_history = (layer, node_index, tensor_index)``)."""

    def __init__(self, shape, dtype: str = "float32", name: str | None = None, history=None):
        self.shape = tuple(shape)
        self.dtype = dtype
        self.name = name or unique_name("keras_tensor")
        self._history = history

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __repr__(self) -> str:
        return (
            f"<KerasTensor shape={self.shape}, dtype={self.dtype}, sparse=False, ragged=False, "
            f"name={self.name}>"
        )

    def __array__(self, *args, **kwargs):
        raise TypeError(
            "a symbolic tensor (KerasTensor) has no values: build a keras.Model(inputs, outputs) and call "
            "predict, or call the layer on a numpy array"
        )


class Node:
    """One call of a layer (or a model) on symbolic tensors."""

    def __init__(self, layer, inputs: list[KerasTensor], outputs: list[KerasTensor], as_list: bool):
        self.layer = layer
        self.inputs = inputs
        self.outputs = outputs
        # The layer was called on a list (merge layers) rather than on one tensor.
        self.as_list = as_list


def flatten_structure(obj, what: str) -> tuple[list, Any]:
    """The tensors of ``obj`` (one, a list/tuple, or a dict) and a description of its structure:
    ``None`` for one tensor, ``"list"``, or the dict's keys in order."""
    if isinstance(obj, dict):
        keys = list(obj)
        return [obj[k] for k in keys], keys
    if isinstance(obj, (list, tuple)):
        return list(obj), "list"
    return [obj], None


def topological_nodes(inputs: list[KerasTensor], outputs: list[KerasTensor]) -> list[Node]:
    """Every node between ``inputs`` and ``outputs``, each after the nodes it reads from. Raises
    when an output depends on a symbolic input not among ``inputs``."""
    input_ids = {id(t) for t in inputs}
    order: list[Node] = []
    seen: set[int] = set()
    visiting: set[int] = set()

    def visit(t: KerasTensor, path: str) -> None:
        if id(t) in input_ids:
            return
        if t._history is None:
            raise ValueError(f"Output with path `{path}` is not connected to `inputs`: it depends on {t!r}")
        node = t._history[0]._inbound_nodes[t._history[1]]
        if id(node) in seen:
            return
        if getattr(node.layer, "_is_input_layer", False):
            raise ValueError(
                f"Output with path `{path}` is not connected to `inputs`: it depends on the Input "
                f"'{node.layer.name}', which is not among the model's inputs"
            )
        if id(node) in visiting:
            raise ValueError("the layer graph has a cycle")
        visiting.add(id(node))
        for i in node.inputs:
            visit(i, path)
        visiting.discard(id(node))
        seen.add(id(node))
        order.append(node)

    for k, t in enumerate(outputs):
        visit(t, str(k) if len(outputs) > 1 else "")
    return order


class EngineGraph:
    """Accumulates the engine's flat graph: distinct layers, their calls, tensor references."""

    def __init__(self):
        self.inputs: list[dict[str, Any]] = []
        self.layers: list = []  # the Python layer objects, engine order
        self._layer_index: dict[int, int] = {}
        self.nodes: list[dict[str, Any]] = []
        self.outputs: list[dict[str, int]] = []

    def add_input(self, name: str, shape) -> dict[str, int]:
        self.inputs.append({"name": name, "shape": list(shape)})
        return {"input": len(self.inputs) - 1}

    def call(self, layer, refs: list[dict[str, int]]) -> dict[str, int]:
        """A call of an engine layer on tensor references; returns its output reference."""
        if id(layer) not in self._layer_index:
            self._layer_index[id(layer)] = len(self.layers)
            self.layers.append(layer)
        self.nodes.append({"layer": self._layer_index[id(layer)], "inputs": refs})
        return {"node": len(self.nodes) - 1}

    def expand(self, layer, refs: list[dict[str, int]]) -> list[dict[str, int]]:
        """Calls ``layer`` on ``refs``: a model is inlined, anything else is one engine node."""
        expand = getattr(layer, "_expand_into", None)
        if expand is not None:
            return expand(self, refs)
        return [self.call(layer, refs)]

    def spec(self) -> dict[str, Any]:
        return {
            "inputs": self.inputs,
            "layers": [la._spec() for la in self.layers],
            "nodes": self.nodes,
            "outputs": self.outputs,
        }

    def json(self) -> str:
        return json.dumps(self.spec())

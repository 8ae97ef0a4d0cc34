"""Models: ``Model`` (the training API), ``Sequential`` (a line of layers) and ``Functional``
(``keras.Model(inputs, outputs)``, a graph of layer calls).

A model is built into one engine object (``_core.Model``) holding every weight, buffer and the
optimizer state; its graph is the flat graph of every layer call, nested models inlined. A
layer's weights live in the engine of the model that last used it: a model *claims* its layers'
weights before it runs, so models that share layers (feature extraction, nesting) see one set
of weights. ``fit`` hands the engine whole slices of an epoch with the GIL released and comes
back about ten times a second for the progress bar and Ctrl-C, never once per batch.
"""

from __future__ import annotations

import json
import os
import warnings
from typing import Any

import numpy as np

from . import _core, losses, optimizers
from . import metrics as _metrics
from ._arrays import as_float32
from ._graph import (
    EngineGraph,
    KerasTensor,
    Node,
    flatten_structure,
    known_width,
    shapes_fit,
    topological_nodes,
)
from ._naming import unique_name
from ._serialization import deserialize_layer
from .callbacks import Callback, CallbackList, History
from .layers import Input, InputLayer, Layer, Variable, _shape_tuple
from .progbar import Progbar
from .saving import load_model, save_model
from .utils import next_seed

__all__ = ["Model", "Sequential", "Functional", "load_model"]

# How long one engine call trains before handing control back (progress, Ctrl-C).
_SLICE_SECONDS = 0.1


def _metric_width(shape) -> int:
    """The output width that decides which accuracy a metric name means (1: binary): the
    values per sample, or the last dimension when another one is unknown."""
    width = known_width(shape)
    if width is not None:
        return width
    return shape[-1] if shape and shape[-1] is not None else 2


def _check_labels(labels: np.ndarray, classes: int, label: str, what: str) -> None:
    """Class labels checked as given, before float32 (exact for integers up to 2**24 only) can
    change the one a message would show."""
    flat = labels.reshape(-1)
    if flat.dtype.kind not in "iuf" or flat.size == 0:
        return
    bad = (flat < 0) | (flat >= classes)
    if flat.dtype.kind == "f":
        bad |= flat != np.floor(flat)
    if bad.any():
        found = flat[np.argmax(bad)].item()
        raise ValueError(
            f"{what}: labels{label} must be integers in [0, {classes}) for an output of {classes} units; "
            f"found {found!r}"
        )


def _verbosity(verbose) -> int:
    if verbose == "auto":
        return 1
    if verbose in (0, 1, 2) and not isinstance(verbose, float):
        return int(verbose)
    raise ValueError(f"verbose must be 'auto', 0, 1 or 2; got {verbose!r}")


def _batch_size(batch_size, n: int) -> int:
    if batch_size is None:
        return max(n, 1)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer or None; got {batch_size!r}")
    return int(batch_size)


def _walk(layer: Layer):
    """The layer and every layer nested in it."""
    yield layer
    for child in layer._children():
        yield from _walk(child)


class EagerArray(np.ndarray):
    """The result of calling a layer or a model on data: a numpy array that also answers
    ``.numpy()``, as Keras scripts expect of tensors."""

    def numpy(self) -> np.ndarray:
        return np.asarray(self).copy()


def _eager(a: np.ndarray) -> EagerArray:
    return a.view(EagerArray)


def _structure_out(values: list, structure, names: list[str]):
    """``values`` in the structure the model's outputs were given in."""
    if structure is None:
        return values[0]
    if structure == "list":
        return list(values)
    return dict(zip(structure, values))


def _per_output(arg, names: list[str], what: str, allow_single: bool = True) -> list:
    """``arg`` (one value, a list in output order, or a dict keyed by output name) as one entry
    per output; dict keys must name outputs."""
    n = len(names)
    if isinstance(arg, dict):
        unknown = [k for k in arg if k not in names]
        if unknown:
            raise ValueError(f"Expected keys {names} in {what} dict, but found {what}.keys()={list(arg)}")
        return [arg.get(k) for k in names]
    if isinstance(arg, (list, tuple)):
        if len(arg) == 1 and n > 1 and allow_single:
            return [arg[0]] * n
        if len(arg) != n:
            raise ValueError(f"{what}: the model has {n} output(s) {names}; got a list of {len(arg)}")
        return list(arg)
    return [arg] * n


def _by_name(data, names: list[str], what: str, arg: str, role: str) -> list:
    """``data`` (one array, a list in order, or a dict keyed by name) as one entry per model
    input or output (``role``). Every input needs data; an output may lack targets (``None``),
    which only an output without a loss accepts (checked by the caller)."""
    n = len(names)
    if isinstance(data, dict):
        unknown = [k for k in data if k not in names]
        missing = [k for k in names if k not in data] if role == "input" else []
        if unknown or missing:
            raise ValueError(
                f"{what}: {arg} is a dict with keys {list(data)}; the model's {role}s are {names}"
                + (f" (no {role} named {unknown})" if unknown else "")
                + (f" (missing data for {missing})" if missing else "")
            )
        return [data.get(k) for k in names]
    if n == 1:
        return [data]
    if not isinstance(data, (list, tuple)):
        raise ValueError(
            f"{what}: the model has {n} {role}s {names}; pass {arg} as a list or a dict of arrays"
        )
    if len(data) != n:
        raise ValueError(
            f"{what}: the model expects {n} {role}(s) with names {names}, but it received {len(data)} "
            f"arrays. Pass a list of {n} arrays or a dict keyed by {role} name."
        )
    return list(data)


class Model(Layer):
    """The Keras model API: ``compile``, ``fit``, ``evaluate``, ``predict``, weights, saving.

    ``keras.Model(inputs=..., outputs=...)`` builds a ``Functional`` model; ``Sequential`` is the
    line of layers. A model called on symbolic tensors is a layer of a bigger model.
    """

    def __new__(cls, *args, **kwargs):
        if cls is Model:
            return super().__new__(Functional)
        return super().__new__(cls)

    def _init_model(self, name: str | None, prefix: str) -> None:
        Layer.__init__(self, name=name or unique_name(prefix))
        self._core = None
        self._engine_layers: list[Layer] = []
        self._slots: dict[int, list[int]] = {}
        self.optimizer: optimizers.Optimizer | None = None
        self.loss = None
        self._loss_arg = None
        self._loss_weights = None
        self._metrics_arg = None
        self._head_losses: list = []
        self._head_metrics: list[list] = []
        self._metric_ids: list = []
        self._compiled = False
        self.stop_training = False
        self.history: History | None = None

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Model:
        """``keras.Model.from_config``: a Functional model's config (``get_config``'s form)
        rebuilds a Functional model; a subclass is called with the config as arguments."""
        if cls is Model:
            return Functional.from_config(config)
        return super().from_config(config)

    # -- structure (subclasses say what the graph is) ----------------------------------------
    @property
    def layers(self) -> list[Layer]:
        raise NotImplementedError

    def _children(self) -> list[Layer]:
        return [la for la in self.layers if not isinstance(la, InputLayer)]

    @property
    def output_names(self) -> list[str]:
        return list(self._output_names())

    def _input_names(self) -> list[str]:
        raise NotImplementedError

    def _input_shapes(self) -> list[tuple] | None:
        raise NotImplementedError

    def _output_names(self) -> list[str]:
        raise NotImplementedError

    def _output_structure(self):
        return None

    def _engine_graph(self) -> EngineGraph:
        raise NotImplementedError

    @property
    def built(self) -> bool:
        return self._core is not None

    def get_layer(self, name: str | None = None, index: int | None = None) -> Layer:
        """The layer called ``name``, or at position ``index`` of ``layers``."""
        if index is not None:
            if name is not None:
                raise ValueError("Provide only a layer name or a layer index, not both")
            if not -len(self.layers) <= index < len(self.layers):
                raise ValueError(
                    f"Was asked to retrieve layer at index {index} but model only has "
                    f"{len(self.layers)} layers."
                )
            return self.layers[index]
        for la in self.layers:
            if la.name == name:
                return la
        raise ValueError(f"No such layer: {name}. Existing layers are: {[la.name for la in self.layers]}.")

    # -- the engine ---------------------------------------------------------------------------
    def _make_core(self) -> None:
        """Builds the engine model for the current graph and claims every layer's weights."""
        eg = self._engine_graph()
        core = _core.Model(eg.json(), next_seed())
        self._core = core
        self._engine_layers = eg.layers
        self._slots = {id(la): idx for la, idx in zip(eg.layers, core.layer_weight_indices)}
        self._claim()
        if self._compiled:
            self._compile_engine()

    def _claim(self) -> None:
        """Copies into this model's engine the weights of every layer that another model (or
        nothing yet) holds, so shared layers have one set of weights."""
        for la in self._engine_layers:
            if la._home is self:
                continue
            current = la.get_weights()
            idx = self._slots[id(la)]
            shapes = [tuple(self._core.weight_shapes[i]) for i in idx]
            if current and [w.shape for w in current] == shapes:
                self._core.set_weights(idx, [as_float32("weights", w) for w in current])
            la._home, la._pending = self, None
            for inner in _walk(la):
                adapted = getattr(inner, "_adapted", None)
                if adapted is not None and not current:
                    self._set_layer_weights(inner, adapted)

    def _release(self) -> None:
        """Drops the engine, keeping the weights of the layers it held for the next build."""
        if self._core is None:
            return
        for la in self._engine_layers:
            if la._home is self:
                la._pending, la._home = self._layer_weights(la), None
        self._core = None
        self._engine_layers, self._slots = [], {}

    def _ready(self, what: str) -> None:
        """Before the engine runs: it exists, holds every layer's weights, knows what is frozen."""
        self._require_built(what)
        self._claim()
        self._core.set_frozen([not la.trainable for la in self._engine_layers])

    # -- compile -----------------------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, loss_weights=None, metrics=None) -> None:
        """Chooses the optimizer, the loss of each output and the metrics; resets the optimizer.

        ``loss``: one loss for every output, a list in output order, or a dict keyed by output
        name (``None`` for an output that is not trained). ``loss_weights`` (list or dict): the
        total loss is ``sum_k w_k loss_k``. ``metrics``: a list (one output), a list of lists,
        or a dict keyed by output name."""
        opt = optimizers.get(optimizer)
        previous = (self.optimizer, self._loss_arg, self._loss_weights, self._metrics_arg, self._compiled,
                    self.loss, self._head_losses, self._head_metrics, self._metric_ids)  # fmt: skip
        self._resolve_heads(loss, loss_weights, metrics)
        self.optimizer, self._loss_arg, self._loss_weights, self._metrics_arg = (
            opt,
            loss,
            loss_weights,
            metrics,
        )
        self._compiled = True
        if self.built:
            try:
                self._compile_engine()
            except Exception:
                (self.optimizer, self._loss_arg, self._loss_weights, self._metrics_arg, self._compiled,
                 self.loss, self._head_losses, self._head_metrics, self._metric_ids) = previous  # fmt: skip
                raise
        self._warn_untrainable()

    def _resolve_heads(self, loss, loss_weights, metrics) -> None:
        names = self._output_names()
        losses_ = [losses.get(lo) if lo is not None else None for lo in _per_output(loss, names, "loss")]
        if loss_weights is None:
            weights = [1.0] * len(names)
        else:
            weights = _per_output(loss_weights, names, "loss_weights", allow_single=False)
            weights = [1.0 if w is None else float(w) for w in weights]
        if metrics is None:
            per = [[] for _ in names]
        elif isinstance(metrics, dict):
            per = [[m] if isinstance(m, (str, _metrics.Metric)) else list(m or []) for m in
                   _per_output(metrics, names, "metrics")]  # fmt: skip
        elif isinstance(metrics, (str, _metrics.Metric)):
            per = [[metrics]] + [[] for _ in names[1:]] if len(names) == 1 else None
            if per is None:
                raise ValueError(f"metrics: the model has outputs {names}; pass a dict or a list of lists")
        elif isinstance(metrics, (list, tuple)):
            if len(names) > 1 and all(isinstance(m, (list, tuple)) or m is None for m in metrics):
                per = [
                    list(m or []) for m in _per_output(list(metrics), names, "metrics", allow_single=False)
                ]
            elif len(names) == 1:
                per = [list(metrics)]
            else:
                raise ValueError(
                    f"Invalid `metrics`: the model has outputs {names}; pass a dict keyed by output name "
                    f"or a list of lists. Received: metrics={metrics!r}"
                )
        else:
            raise TypeError(
                f"metrics must be a list of names or Metric objects; got {type(metrics).__name__}"
            )
        for lo, ms, name in zip(losses_, per, names):
            if lo is None and ms:
                raise ValueError(f"output '{name}' has metrics but no loss")
        if all(lo is None for lo in losses_):
            raise ValueError("compile needs a loss: every output's loss is None")
        self._head_losses = losses_
        self._head_weights = weights
        self._head_metrics = [[_metrics.get(m) for m in ms] for ms in per]
        self._metric_ids = [m for ms in self._head_metrics for m in ms]
        self.loss = losses_[0] if len(losses_) == 1 else losses_

    def _warn_untrainable(self) -> None:
        """The step activation has a zero derivative (note 001): layers before it cannot learn."""
        for layer in self._children():
            act = getattr(layer, "activation", None)
            if isinstance(act, dict) and act.get("name") == "step":
                warnings.warn(
                    f"layer '{layer.name}' uses the step activation, whose gradient is zero everywhere: "
                    "it and the layers before it will not learn",
                    stacklevel=3,
                )

    def _compile_engine(self) -> None:
        names = self._output_names()
        heads = []
        for k, (lo, w, ms) in enumerate(zip(self._head_losses, self._head_weights, self._head_metrics)):
            width = _metric_width(self._core.output_shapes[k])
            specs = []
            if lo is not None:
                for m in (_metrics.resolve(m, width, lo) for m in ms):
                    if m.sparse != lo.is_sparse:
                        want = "integer labels" if lo.is_sparse else "targets shaped like the output"
                        raise ValueError(
                            f"metric '{m.name}' does not fit the loss '{lo.name}', whose targets are {want}"
                        )
                    specs.append(m._spec())
            heads.append(
                {"name": names[k], "loss": None if lo is None else lo._spec(), "weight": w, "metrics": specs}
            )
        self._core.compile(json.dumps({"heads": heads, "optimizer": self.optimizer._spec()}))
        self.optimizer._attach(self._core)

    def _require_compiled(self, what: str) -> None:
        if not self._compiled:
            raise ValueError(f"You must call compile() before {what}()")

    @property
    def metrics_names(self) -> list[str]:
        names = self._output_names()
        out = ["loss"]
        with_loss = [n for n, lo in zip(names, self._head_losses) if lo is not None]
        if len(with_loss) > 1:
            out += [f"{n}_loss" for n in with_loss]
        for n, ms in zip(names, self._head_metrics):
            for m in ms:
                mname = m if isinstance(m, str) else m.name
                out.append(f"{n}_{mname}" if len(names) > 1 else mname)
        return out

    # -- data --------------------------------------------------------------------------------
    def _ensure_built(self, xs: list[np.ndarray]) -> None:
        if not self.built:
            self.build()

    def _prepare_x(self, x, what: str) -> list[np.ndarray]:
        if x is None:
            raise ValueError(f"{what}: x is required")
        names = self._input_names()
        arrays = _by_name(x, names, what, "x", "input")
        xs = [as_float32("x", a) for a in arrays]
        self._ensure_built(xs)
        shapes = self._input_shapes()
        n = xs[0].shape[0] if xs[0].ndim else 0
        for k, (a, shape) in enumerate(zip(xs, shapes)):
            label = f" (input '{names[k]}')" if len(names) > 1 else ""
            if a.ndim < 1 or a.shape[0] == 0:
                raise ValueError(f"{what}: x{label} is empty (0 samples)")
            if not shapes_fit(shape, a.shape[1:]):
                raise ValueError(
                    f"{what}: the model expects input{label} of shape (None, {', '.join(map(str, shape))}) "
                    f"but x has shape {a.shape}"
                )
            if a.shape[0] != n:
                raise ValueError(
                    f"{what}: every input must have the same number of samples; "
                    f"got {[b.shape[0] for b in xs]}"
                )
        return xs

    def _prepare_y(self, y, n: int, what: str) -> list[np.ndarray]:
        if y is None:
            raise ValueError(f"{what}: y is required")
        names = self._output_names()
        arrays = _by_name(y, names, what, "y", "output")
        out = []
        for k, (a, lo) in enumerate(zip(arrays, self._head_losses)):
            if lo is None:
                out.append(np.zeros(0, dtype=np.float32))
                continue
            label = f" for output '{names[k]}'" if len(names) > 1 else ""
            if a is None:
                raise ValueError(f"{what}: y{label} is required (the output has a loss)")
            y = as_float32("y", a)
            width = known_width(self._core.output_shapes[k])
            if lo.is_sparse and width is not None:
                _check_labels(np.asarray(a), width, label, what)
            out.append(self._prepare_target(y, n, k, lo, label, what))
        return out

    def _prepare_target(self, y: np.ndarray, n: int, k: int, lo, label: str, what: str) -> np.ndarray:
        if y.ndim == 0 or y.shape[0] != n:
            got = y.shape[0] if y.ndim else "a scalar"
            raise ValueError(
                f"{what}: x and y{label} must have the same number of samples; got x: {n}, y: {got}"
            )
        width = known_width(self._core.output_shapes[k])
        if lo.is_sparse:
            if not (y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1)):
                raise ValueError(
                    f"{what}: {lo.name} expects integer class labels of shape ({n},){label}; got y of "
                    f"shape {y.shape} (for one-hot targets use categorical_crossentropy)"
                )
            return y.reshape(n, 1)
        y = y.reshape(n, -1)
        # With unknown output dimensions the engine checks the width, once it knows the data's.
        if width is not None and y.shape[1] != width:
            hint = ""
            if y.shape[1] == 1 and width > 1:
                hint = " (for integer labels use sparse_categorical_crossentropy)"
            raise ValueError(
                f"{what}: the model outputs {width} value(s) per sample{label} but y has {y.shape[1]}{hint}"
            )
        return y

    def _sample_weights(self, sample_weight, class_weight, ys: list[np.ndarray], what: str) -> list:
        """Per output, per-sample loss weights: ``sample_weight`` times the weight of each
        sample's class."""
        names = self._output_names()
        n = max(y.shape[0] for y in ys)
        if sample_weight is None:
            sws = [None] * len(names)
        elif isinstance(sample_weight, (dict, list, tuple)) and len(names) > 1:
            sws = _per_output(sample_weight, names, "sample_weight", allow_single=False)
        else:
            sws = [sample_weight] * len(names)
        out = []
        for sw, y in zip(sws, ys):
            w = None
            if sw is not None:
                w = as_float32("sample_weight", sw)
                if w.ndim != 1 or w.shape[0] != n:
                    raise ValueError(f"{what}: sample_weight must have shape ({n},); got {w.shape}")
            if class_weight is not None and y.size:
                if len(names) > 1:
                    raise ValueError(f"{what}: class_weight is only supported for models with one output")
                w = self._class_weights(class_weight, y, w, what)
            out.append(None if w is None else np.ascontiguousarray(w, dtype=np.float32))
        return out

    @staticmethod
    def _class_weights(class_weight, y: np.ndarray, w, what: str):
        if not isinstance(class_weight, dict):
            raise TypeError(f"{what}: class_weight must be a dict {{class: weight}}")
        for c, v in class_weight.items():
            if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or c < 0:
                raise ValueError(f"{what}: class_weight keys must be class indices; got {c!r}")
            if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) or not 0 <= v < np.inf:
                raise ValueError(f"{what}: class_weight values must be finite and >= 0; got {v!r} ({c})")
        # Binary or sparse targets name the class directly; one-hot targets by their argmax.
        classes = np.rint(y[:, 0]) if y.shape[1] == 1 else y.argmax(axis=1)
        # One weight per class present (at most one per sample): memory never depends on the
        # size of a class index, and labels out of range are left to the label check.
        present, inverse = np.unique(classes, return_inverse=True)
        table = [class_weight.get(int(c), 1.0) if np.isfinite(c) else 1.0 for c in present]
        cw = np.asarray(table, dtype=np.float32)[inverse.reshape(-1)]
        return cw if w is None else w * cw

    def _prepare_xy(self, x, y, what: str, sample_weight=None, class_weight=None):
        self._require_compiled(what)
        xs = self._prepare_x(x, what)
        ys = self._prepare_y(y, xs[0].shape[0], what)
        ws = self._sample_weights(sample_weight, class_weight, ys, what)
        self._ready(what)
        self._core.validate(xs, ys, ws, what)
        return xs, ys, ws

    def _validation_set(self, validation_data, validation_split, x, y, w):
        """``(train, val)`` data: ``validation_data`` as given, or the last fraction of the samples
        before shuffling (Keras' ``validation_split``)."""
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
                raise ValueError(
                    "validation_data must be a tuple (x_val, y_val) or (x_val, y_val, sample_weight)"
                )
            vw = validation_data[2] if len(validation_data) == 3 else None
            return (x, y, w), self._prepare_xy(*validation_data[:2], "fit (validation_data)", vw)
        if validation_split > 0.0:
            n = x[0].shape[0]
            split = int(np.ceil(n * (1.0 - validation_split)))
            if split <= 0 or split >= n:
                raise ValueError(
                    f"validation_split={validation_split} leaves no training or no validation samples "
                    f"out of {n}"
                )

            def cut(arrays, s):
                return [None if a is None else (a if a.size == 0 else a[s]) for a in arrays]

            head, tail = slice(None, split), slice(split, None)
            return (cut(x, head), cut(y, head), cut(w, head)), (cut(x, tail), cut(y, tail), cut(w, tail))
        return (x, y, w), None

    # -- training ----------------------------------------------------------------------------
    def fit(
        self,
        x=None,
        y=None,
        batch_size=32,
        epochs: int = 1,
        verbose="auto",
        callbacks=None,
        validation_split: float = 0.0,
        validation_data=None,
        shuffle: bool = True,
        class_weight=None,
        sample_weight=None,
        initial_epoch: int = 0,
        validation_freq: int = 1,
    ) -> History:
        """Trains for ``epochs`` epochs; returns a ``History``.

        ``x`` and ``y`` are arrays, lists (in input/output order) or dicts keyed by input/output
        name. ``batch_size=None`` trains full-batch. ``validation_split`` holds out the *last*
        fraction of the samples, before shuffling, as Keras does. ``class_weight`` ({class:
        weight}) and ``sample_weight`` scale each sample's loss: the batch loss of an output is
        ``sum_i w_i l_i / batch_size`` (Keras' reduction).
        """
        verbose = _verbosity(verbose)
        self._require_compiled("fit")
        if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 0:
            raise ValueError(f"epochs must be a non-negative integer; got {epochs!r}")
        if not (isinstance(validation_split, (int, float)) and 0.0 <= validation_split < 1.0):
            raise ValueError(f"validation_split must be in [0, 1); got {validation_split!r}")
        if isinstance(validation_freq, bool) or not isinstance(validation_freq, int) or validation_freq < 1:
            raise ValueError(f"validation_freq must be a positive integer; got {validation_freq!r}")
        x, y, w = self._prepare_xy(x, y, "fit", sample_weight, class_weight)
        (x, y, w), val = self._validation_set(validation_data, validation_split, x, y, w)
        n = x[0].shape[0]
        bs = _batch_size(batch_size, n)
        steps = -(-n // bs)

        history = History()
        user = list(callbacks or [])
        if any(not isinstance(cb, Callback) for cb in user):
            raise TypeError("callbacks must be ferronet.callbacks.Callback instances")
        params = {"verbose": verbose, "epochs": int(epochs), "steps": steps}
        cbs = CallbackList([history, *user], self, params)
        # One trainer per model: other threads may predict, evaluate or save meanwhile.
        core = self._core
        core.begin_fit()
        try:
            return self._fit_epochs(cbs, history, (x, y, w), val, bs, shuffle, initial_epoch, validation_freq)
        finally:
            core.end_fit()

    def _fit_epochs(self, cbs, history, data, val, bs, shuffle, initial_epoch, validation_freq) -> History:
        x, y, w = data
        n = x[0].shape[0]
        verbose, epochs, steps = (history.params[k] for k in ("verbose", "epochs", "steps"))
        self.stop_training = False
        self._core.stop_on_nan = cbs.stops_on_nan
        self._core.grad_monitor = cbs.monitors_gradients
        # A per-batch hook means one step per engine call; otherwise whole slices of the epoch.
        max_steps = 1 if cbs.wants_batches else 2**62
        cbs.on_train_begin()
        logs: dict[str, float] = {}
        for epoch in range(int(initial_epoch), int(epochs)):
            cbs.on_epoch_begin(epoch)
            if verbose:
                print(f"Epoch {epoch + 1}/{epochs}", flush=True)
            bar = Progbar(steps, verbose)
            self._ready("fit")
            self._core.begin_epoch(n, bs, bool(shuffle))
            try:
                done = False
                while not done:
                    if cbs.wants_batches:
                        cbs.on_train_batch_begin(self._core.steps_done)
                    done = self._core.train_steps(x, y, w, _SLICE_SECONDS, max_steps)
                    running = dict(self._core.epoch_logs())
                    if cbs.wants_batches and self._core.nan_at is None:
                        cbs.on_train_batch_end(self._core.steps_done - 1, running)
                    if not done:
                        bar.update(self._core.steps_done, running)
                    if self.stop_training:
                        break
            except KeyboardInterrupt:
                if bar.dynamic and verbose == 1:
                    print(flush=True)
                raise
            logs = dict(self._core.epoch_logs())
            if self._core.nan_at is not None:
                # TerminateOnNaN: the offending batch was not applied; report it and stop.
                logs["loss"] = float("nan")
                print(f"Batch {self._core.nan_at}: Invalid loss, terminating training", flush=True)
                self.stop_training = True
            if val is not None and (epoch + 1) % validation_freq == 0:
                vlogs = self._core.evaluate(val[0], val[1], val[2], bs)
                logs.update({f"val_{k}": v for k, v in vlogs})
            logs["learning_rate"] = float(self._core.last_learning_rate)
            if cbs.monitors_gradients:
                logs.update({f"grad_norm/{name}": v for name, v in self._core.take_grad_norms()})
            bar.update(self._core.steps_done, logs, final=True)
            cbs.on_epoch_end(epoch, logs)
            if self.stop_training:
                break
        cbs.on_train_end(logs)
        history.model = self
        self.history = history
        return history

    def train_on_batch(self, x, y, sample_weight=None, class_weight=None, return_dict: bool = False):
        """One optimizer step on this batch; returns its loss (and metrics)."""
        x, y, w = self._prepare_xy(x, y, "train_on_batch", sample_weight, class_weight)
        return self._format_logs(self._core.train_on_batch(x, y, w), return_dict)

    # -- inference ---------------------------------------------------------------------------
    def evaluate(
        self, x=None, y=None, batch_size=32, verbose="auto", sample_weight=None, return_dict: bool = False
    ):
        """Loss and metrics in inference mode: a scalar loss, or ``[loss, *metrics]``."""
        verbose = _verbosity(verbose)
        x, y, w = self._prepare_xy(x, y, "evaluate", sample_weight)
        bs = _batch_size(batch_size, x[0].shape[0])
        bar = Progbar(-(-x[0].shape[0] // bs), verbose)
        logs = self._core.evaluate(x, y, w, bs)
        bar.update(bar.target, dict(logs), final=True)
        return self._format_logs(logs, return_dict)

    def test_on_batch(self, x, y, sample_weight=None, return_dict: bool = False):
        """Loss and metrics of one batch in inference mode."""
        x, y, w = self._prepare_xy(x, y, "test_on_batch", sample_weight)
        return self._format_logs(self._core.evaluate(x, y, w, x[0].shape[0]), return_dict)

    def _run(self, x, batch_size: int | None, training: bool, what: str) -> list[np.ndarray]:
        xs = self._prepare_x(x, what)
        self._ready(what)
        bs = _batch_size(batch_size, xs[0].shape[0])
        return self._core.predict(xs, bs, bool(training))

    def predict(self, x, batch_size=32, verbose="auto"):
        """Outputs for ``x``: one float32 array ``(samples, *output_shape)`` per output, in the
        structure the outputs were given in (one array, a list or a dict)."""
        verbose = _verbosity(verbose)
        outs = self._run(x, batch_size, False, "predict")
        bar = Progbar(1, verbose)
        bar.update(1, final=True)
        return _structure_out(outs, self._output_structure(), self._output_names())

    def predict_on_batch(self, x):
        return _structure_out(self._run(x, None, False, "predict_on_batch"), self._output_structure(),
                              self._output_names())  # fmt: skip

    def __call__(self, inputs, training=None, **kwargs):
        """On symbolic tensors: this model as a layer of a bigger one. On data: the outputs for
        ``inputs`` as one batch (``training=True`` shows training behaviour: dropout masks, batch
        statistics, which also updates BatchNormalization's moving averages)."""
        flat, _ = flatten_structure(inputs, "inputs")
        if flat and all(isinstance(t, KerasTensor) for t in flat):
            return self._symbolic_model_call(inputs)
        outs = [_eager(o) for o in self._run(inputs, None, bool(training), "call")]
        return _structure_out(outs, self._output_structure(), self._output_names())

    def _symbolic_model_call(self, inputs):
        flat, _ = flatten_structure(inputs, "inputs")
        if len(flat) != len(self._input_names()):
            raise ValueError(
                f"model '{self.name}' expects {len(self._input_names())} input(s); got {len(flat)}"
            )
        shapes = self._input_shapes()
        if shapes is None:
            self._adopt_input_shapes([tuple(t.shape[1:]) for t in flat])
            shapes = self._input_shapes()
        given = [tuple(t.shape[1:]) for t in flat]
        if len(given) != len(shapes) or not all(map(shapes_fit, shapes, given)):
            raise ValueError(
                f"Input 0 of layer '{self.name}' is incompatible with the layer: expected shape(s) "
                f"{[(None, *s) for s in shapes]}, found {[(None, *s) for s in given]}"
            )
        batch = flat[0].shape[0]
        node_index = len(self._inbound_nodes)
        outs = [
            KerasTensor((batch, *s), history=(self, node_index, k))
            for k, s in enumerate(self._output_shapes())
        ]
        self._inbound_nodes.append(Node(self, flat, outs, len(flat) > 1))
        self._built_shapes = given
        return _structure_out(outs, self._output_structure(), self._output_names())

    def _adopt_input_shapes(self, shapes: list[tuple]) -> None:
        raise ValueError(f"model '{self.name}' has no known input shape")

    def _output_shapes(self) -> list[tuple]:
        self._require_built("call")
        return [tuple(s) for s in self._core.output_shapes]

    @staticmethod
    def _format_logs(logs, return_dict: bool):
        d = dict(logs)
        if return_dict:
            return d
        values = [v for _, v in logs]
        return values[0] if len(values) == 1 else values

    # -- weights -----------------------------------------------------------------------------
    def _require_built(self, what: str) -> None:
        if not self.built:
            raise ValueError(
                f"{what}: the model is not built yet; give it an input shape (Input or input_shape=) "
                "or call fit/predict first"
            )

    def _all_layers(self) -> list[Layer]:
        """Every engine layer, in the order of ``layers`` (nested models expanded)."""
        out = []
        for la in self.layers:
            if isinstance(la, Model):
                out += la._all_layers()
            elif not isinstance(la, InputLayer):
                out.append(la)
        return out

    def get_weights(self) -> list[np.ndarray]:
        """Copies of every weight, in Keras order (layer by layer; per layer kernel, then bias)."""
        if self.built:
            self._claim()
        return [w for la in self._all_layers() for w in la.get_weights()]

    def set_weights(self, weights) -> None:
        """Replaces every weight; ``weights`` is a list like ``get_weights()`` returns. Atomic:
        a wrong count or shape raises before anything changes."""
        self._require_built("set_weights")
        self._claim()
        weights = [as_float32("weights", w) for w in weights]
        targets = [(la, len(la.get_weights())) for la in self._all_layers()]
        total = sum(n for _, n in targets)
        if len(weights) != total:
            raise ValueError(f"set_weights: the model has {total} weight arrays; got {len(weights)}")
        current = self.get_weights()
        for k, (w, c) in enumerate(zip(weights, current)):
            if w.shape != c.shape:
                raise ValueError(
                    f"set_weights: weight #{k} has shape {c.shape}; got an array of shape {w.shape}"
                )
        # One engine call: no other thread sees some layers updated and others not.
        self._core.set_weights([i for la, _ in targets for i in self._layer_indices(la)], weights)

    def _layer_indices(self, layer: Layer) -> list[int]:
        idx = self._slots.get(id(layer))
        if idx is not None:
            return list(idx)
        prefixes = tuple(layer._weight_prefixes())
        return [i for i, n in enumerate(self._core.weight_names) if n.startswith(prefixes)]

    def _layer_weights(self, layer: Layer) -> list[np.ndarray]:
        if isinstance(layer, Model) and layer is not self:
            return [w for la in layer._all_layers() for w in la.get_weights()]
        all_w = self._core.get_weights()
        return [all_w[i] for i in self._layer_indices(layer)]

    def _layer_variables(self, layer: Layer) -> list[Variable]:
        if layer is self or isinstance(layer, Model):
            return [v for la in layer._all_layers() for v in la._weight_variables()]
        all_w = self._core.get_weights()
        names, roles = self._core.weight_names, self._core.weight_trainable
        return [
            Variable(names[i], all_w[i], roles[i] and layer.trainable) for i in self._layer_indices(layer)
        ]

    def _set_layer_weights(self, layer: Layer, weights) -> None:
        idx = self._layer_indices(layer)
        weights = [as_float32("weights", w) for w in weights]
        if len(weights) != len(idx):
            raise ValueError(
                f"You called `set_weights(weights)` on layer '{layer.name}' with a weight list of length "
                f"{len(weights)}, but the layer was expecting {len(idx)} weights."
            )
        shapes = self._core.weight_shapes
        for i, w in zip(idx, weights):
            if tuple(w.shape) != tuple(shapes[i]):
                raise ValueError(
                    f"Layer {layer.name} weight shape {tuple(shapes[i])} is not compatible with "
                    f"provided weight shape {w.shape}."
                )
        self._core.set_weights(idx, weights)

    def _weight_home(self):
        return self

    def save_weights(self, filepath, overwrite: bool = True) -> None:
        """Writes every weight to ``filepath`` in the safetensors format (any file name works).

        The file is written next to its destination and renamed into place, so an interrupted
        save never destroys a previous file."""
        self._require_built("save_weights")
        self._claim()
        path = os.fsdecode(filepath)
        if not overwrite and os.path.exists(path):
            raise FileExistsError(f"save_weights: {path} exists and overwrite=False")
        self._core.save_weights(path, {"format": "ferronet-weights", "version": "1"})

    def load_weights(self, filepath) -> None:
        """Reads weights written by ``save_weights``. Names and shapes must match the model;
        a missing, truncated or foreign file raises and leaves the weights unchanged."""
        self._require_built("load_weights")
        self._claim()
        self._core.load_weights(os.fsdecode(filepath))

    def count_params(self) -> int:
        """Total number of weights."""
        if not self.built and not self._all_layers():
            self._require_built("count_params")
        return int(sum(w.size for w in self.get_weights()))

    def _param_counts(self) -> tuple[int, int]:
        """(trainable, non-trainable) weight counts, Keras' rule: frozen layers and statistics
        count as non-trainable."""
        trainable = non = 0
        for la in self._all_layers():
            for v in la._weight_variables():
                size = int(np.prod(v.shape))
                if v.trainable:
                    trainable += size
                else:
                    non += size
        return trainable, non

    # -- summary -----------------------------------------------------------------------------
    def _summary_rows(self) -> tuple[list[str], list[tuple]]:
        header = ["Layer (type)", "Output Shape", "Param #"]
        rows = []
        for la in self.layers:
            if isinstance(la, InputLayer) and not isinstance(self, Functional):
                continue
            shape = str(la.output_shape) if self.built else "?"
            count = str(la.count_params()) if self.built else "?"
            rows.append((f"{la.name} ({type(la).__name__})", shape, count))
        return header, rows

    def summary(self, print_fn=print) -> None:
        """Prints a Keras-style table: layer, output shape, parameter count (and, for a
        Functional model, the tensors each layer is connected to), then the totals."""
        header, rows = self._summary_rows()
        table = [tuple(header), *rows]
        widths = [max(len(r[i]) for r in table) + 2 for i in range(len(header))]
        line = "─" * sum(widths)
        out = [f'Model: "{self.name}"', line]
        for k, r in enumerate(table):
            out.append("".join(c.ljust(w) for c, w in zip(r, widths)))
            out.append(line if k == 0 or k == len(table) - 1 else "")
        if self.built:
            self._claim()
            trainable, non = self._param_counts()
            total = trainable + non
            out.append(f" Total params: {total:,} ({_bytes(total)})")
            out.append(f" Trainable params: {trainable:,} ({_bytes(trainable)})")
            out.append(f" Non-trainable params: {non:,} ({_bytes(non)})")
        for text in out:
            print_fn(text)

    # -- saving ------------------------------------------------------------------------------
    def save(self, filepath, overwrite: bool = True, include_optimizer: bool = True) -> None:
        """Saves architecture, weights, compile settings and optimizer state to one file (any
        name; ``.ferronet`` by convention). ``ferronet.models.load_model`` reads it back."""
        self._require_built("save")
        self._claim()
        save_model(self, filepath, overwrite=overwrite, include_optimizer=include_optimizer)

    def _compile_config(self):
        return {"loss": self._loss_arg, "loss_weights": self._loss_weights, "metrics": self._metrics_arg}


def _bytes(count: int) -> str:
    b = 4.0 * count
    for unit in ("B", "KB", "MB", "GB"):
        if b < 1024 or unit == "GB":
            return f"{b:.2f} {unit}"
        b /= 1024
    return f"{b:.2f} GB"


class Sequential(Model):
    """A linear stack of layers, trained with ``compile`` and ``fit`` as in Keras."""

    def __init__(self, layers=None, name: str | None = None, trainable: bool = True):
        self._init_model(name, "sequential")
        self._layers: list[Layer] = []
        self._input_shape: tuple[int, ...] | None = None
        self._input_name = None
        for layer in layers or []:
            self.add(layer)
        if not trainable:
            self.trainable = False

    @property
    def layers(self) -> list[Layer]:
        return list(self._layers)

    def _input_names(self) -> list[str]:
        return [self._input_name or f"{self.name}_input"]

    def _input_shapes(self):
        return None if self._input_shape is None else [self._input_shape]

    def _adopt_input_shapes(self, shapes):
        self.build((None, *shapes[0]))

    def _output_names(self) -> list[str]:
        return [self._layers[-1].name] if self._layers else ["output"]

    @property
    def input_shape(self) -> tuple | None:
        return None if self._input_shape is None else (None, *self._input_shape)

    @property
    def output_shape(self) -> tuple | None:
        if not self.built:
            return None
        return (None, *self._core.output_shapes[0])

    @output_shape.setter
    def output_shape(self, value) -> None:
        pass

    def add(self, layer) -> None:
        """Appends a layer (or, first, an ``Input``)."""
        if isinstance(layer, KerasTensor):
            layer = layer._history[0] if layer._history is not None else None
        if isinstance(layer, InputLayer):
            if self._layers:
                raise ValueError("Input must be the first entry of a Sequential model")
            self._input_shape = tuple(layer.shape)
            self._input_name = layer.name
            return
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add expects a ferronet layer; got {type(layer).__name__}")
        taken = {la.name for existing in self._layers for la in _walk(existing)}
        clash = [la.name for la in _walk(layer) if la.name in taken]
        if clash:
            raise ValueError(f"a layer named '{clash[0]}' is already in the model; names must be unique")
        if not self._layers and self._input_shape is None:
            declared = layer._input_shape
            if declared is None and isinstance(layer, Model) and layer._input_shapes():
                declared = tuple(layer._input_shapes()[0])
            if declared is not None:
                self._input_shape = declared
        self._release()
        self._layers.append(layer)
        if self._input_shape is not None:
            # Known input shape: build now, as Keras does, so weights exist right away.
            try:
                self.build()
            except (ValueError, MemoryError):
                self._layers.pop()
                if self._layers:
                    self.build()
                raise

    def pop(self) -> Layer:
        """Removes and returns the last layer."""
        if not self._layers:
            raise ValueError("pop: the model has no layers")
        self._release()
        layer = self._layers.pop()
        if self._layers and self._input_shape is not None:
            self.build()
        return layer

    def build(self, input_shape=None) -> None:
        """Builds the weights for ``input_shape`` (with or without the leading batch axis)."""
        if input_shape is not None:
            shape = tuple(input_shape)
            if shape and shape[0] is None:
                shape = shape[1:]
            shape = _shape_tuple(shape, "input_shape", allow_none=True)
            if self._input_shape is not None and shape != self._input_shape:
                raise ValueError(f"build: input shape {shape} differs from the declared {self._input_shape}")
            self._input_shape = shape
        if self._input_shape is None:
            raise ValueError("build: the input shape is unknown; pass input_shape or add an Input layer")
        if not self._layers:
            raise ValueError("the model has no layers; add at least one before building it")
        if self.built:
            return
        self._make_core()
        shape = tuple(self._input_shape)
        node_shapes = self._core.node_output_shapes
        # Each top-level layer's input and output shapes: around its engine nodes.
        pos = 0
        for layer, count in zip(self._layers, self._node_counts()):
            pos += count
            if not isinstance(layer, Model):
                layer._built_shapes = [shape]
            if count:
                shape = tuple(node_shapes[pos - 1])
            if not isinstance(layer, Model):
                layer.output_shape = (None, *shape)
        self._built_shapes = [self._input_shape]

    def _node_counts(self) -> list[int]:
        return [la._engine_node_count() if isinstance(la, Model) else 1 for la in self._layers]

    def _engine_node_count(self) -> int:
        return sum(self._node_counts())

    def _ensure_built(self, xs: list[np.ndarray]) -> None:
        if self.built:
            return
        if self._input_shape is None:
            if xs[0].ndim < 2:
                raise ValueError(f"x must have shape (samples, features...); got shape {xs[0].shape}")
            self._input_shape = tuple(int(d) for d in xs[0].shape[1:])
        self.build()

    def _engine_graph(self) -> EngineGraph:
        eg = EngineGraph()
        ref = eg.add_input(self._input_names()[0], self._input_shape)
        outs = self._expand_into(eg, [ref])
        eg.outputs = outs
        return eg

    def _expand_into(self, eg: EngineGraph, refs: list) -> list:
        for la in self._layers:
            refs = eg.expand(la, refs)
        return refs

    def get_config(self) -> dict[str, Any]:
        layers = [{"class_name": type(la).__name__, "config": la.get_config()} for la in self._layers]
        shape = None if self._input_shape is None else list(self._input_shape)
        cfg = {"name": self.name, "input_shape": shape, "layers": layers}
        if not self.trainable:
            cfg["trainable"] = False
        return cfg

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Sequential:
        """A new (untrained) model with the architecture of ``config``."""
        model = cls(name=config.get("name"))
        if config.get("input_shape") is not None:
            model._input_shape = tuple(None if d is None else int(d) for d in config["input_shape"])
        for entry in config.get("layers", []):
            model.add(deserialize_layer(entry))
        if config.get("trainable") is False:
            model.trainable = False
        return model

    def __repr__(self) -> str:
        return f"<Sequential name={self.name} layers={len(self._layers)} built={self.built}>"


class Functional(Model):
    """A model defined by its input and output tensors (``keras.Model(inputs, outputs)``): the
    graph of every layer call between them. Layers may be shared, models nested."""

    def __init__(self, inputs=None, outputs=None, name: str | None = None, trainable: bool = True):
        self._init_model(name, "functional")
        ins, self._in_structure = flatten_structure(inputs, "inputs")
        outs, self._out_structure = flatten_structure(outputs, "outputs")
        if not ins or any(not isinstance(t, KerasTensor) for t in ins):
            raise ValueError(
                f"`inputs` argument cannot be empty and must hold Input tensors. Received:\ninputs={inputs}"
            )
        if not outs or any(not isinstance(t, KerasTensor) for t in outs):
            raise ValueError(
                f"`outputs` must be symbolic tensors (from layers called on Inputs); got {outputs!r}"
            )
        for t in ins:
            if t._history is None or not isinstance(t._history[0], InputLayer):
                raise ValueError(f"model inputs must come from keras.Input; got {t!r}")
        self._inputs_list, self._outputs_list = ins, outs
        self._nodes = topological_nodes(ins, outs)
        self._check_unique_names()
        self._make_core()
        if not trainable:
            self.trainable = False

    @classmethod
    def _from_layer_call(cls, layer: Layer, inputs: list[KerasTensor], list_call: bool) -> Functional:
        """A model computing ``layer`` on fresh inputs (how a layer runs on data)."""
        fresh = [Input(shape=t.shape[1:]) for t in inputs]
        out = layer(fresh if list_call else fresh[0])
        return cls(fresh if list_call else fresh[0], out, name=unique_name(f"{layer.name}_call"))

    def _check_unique_names(self) -> None:
        seen: dict[str, int] = {}
        for la in self.layers:
            seen[la.name] = seen.get(la.name, 0) + 1
        dups = [n for n, c in seen.items() if c > 1]
        if dups:
            raise ValueError(
                f'The name "{dups[0]}" is used {seen[dups[0]]} times in the model. '
                "All operation names should be unique."
            )

    @property
    def inputs(self) -> list[KerasTensor]:
        return list(self._inputs_list)

    @property
    def input_shape(self):
        shapes = [t.shape for t in self._inputs_list]
        return shapes[0] if len(shapes) == 1 else shapes

    @property
    def output_shape(self):
        shapes = [o.shape for o in self._outputs_list]
        return shapes[0] if len(shapes) == 1 else shapes

    @output_shape.setter
    def output_shape(self, value) -> None:
        pass

    @property
    def outputs(self) -> list[KerasTensor]:
        return list(self._outputs_list)

    @property
    def input(self):
        return self._inputs_list if len(self._inputs_list) > 1 else self._inputs_list[0]

    @property
    def output(self):
        return self._outputs_list if len(self._outputs_list) > 1 else self._outputs_list[0]

    @property
    def layers(self) -> list[Layer]:
        """Every layer of the graph (``InputLayer``s included, nested models as one), each once, in
        the order they are first reached."""
        out: list[Layer] = []
        seen: set[int] = set()

        def take(la):
            if id(la) not in seen:
                seen.add(id(la))
                out.append(la)

        for t in self._inputs_list:
            take(t._history[0])
        for node in self._nodes:
            for t in node.inputs:
                if t._history is not None and isinstance(t._history[0], InputLayer):
                    take(t._history[0])
            take(node.layer)
        return out

    def _input_names(self) -> list[str]:
        if isinstance(self._in_structure, list) and self._in_structure != "list":
            return list(self._in_structure)
        return [t._history[0].name for t in self._inputs_list]

    def _input_shapes(self):
        return [tuple(t.shape[1:]) for t in self._inputs_list]

    def _output_names(self) -> list[str]:
        if isinstance(self._out_structure, list) and self._out_structure != "list":
            return list(self._out_structure)
        return [t._history[0].name for t in self._outputs_list]

    def _output_structure(self):
        return self._out_structure

    def _engine_graph(self) -> EngineGraph:
        eg = EngineGraph()
        refs = [eg.add_input(name, t.shape[1:]) for name, t in zip(self._input_names(), self._inputs_list)]
        eg.outputs = self._expand_into(eg, refs)
        return eg

    def _expand_into(self, eg: EngineGraph, refs: list) -> list:
        """Inlines this model's graph, its inputs bound to ``refs``; returns its output refs."""
        where = {id(t): r for t, r in zip(self._inputs_list, refs)}
        for node in self._nodes:
            ins = [where[id(t)] for t in node.inputs]
            outs = eg.expand(node.layer, ins)
            for t, r in zip(node.outputs, outs):
                where[id(t)] = r
        return [where[id(t)] for t in self._outputs_list]

    def _engine_node_count(self) -> int:
        return sum(
            la._engine_node_count() if isinstance(la, Model) else 1 for la in (n.layer for n in self._nodes)
        )

    def _summary_rows(self):
        header = ["Layer (type)", "Output Shape", "Param #", "Connected to"]
        rows = []
        for la in self.layers:
            if isinstance(la, InputLayer):
                rows.append((f"{la.name} (InputLayer)", str(la.output_shape), "0", "-"))
                continue
            nodes = [n for n in self._nodes if n.layer is la]
            conn = ", ".join(
                f"{t._history[0].name}[{t._history[1]}][{t._history[2]}]" for n in nodes for t in n.inputs
            )
            shape = (
                nodes[0].outputs[0].shape
                if len(nodes[0].outputs) == 1
                else [o.shape for o in nodes[0].outputs]
            )
            rows.append((f"{la.name} ({type(la).__name__})", str(shape), str(la.count_params()), conn))
        return header, rows

    # -- config ------------------------------------------------------------------------------
    def _node_key(self, t: KerasTensor) -> list:
        """``[layer_name, node_index, tensor_index]`` with node indices counted within this model."""
        layer, node_index, k = t._history
        if isinstance(layer, InputLayer):
            return [layer.name, 0, 0]
        mine = [n for n in layer._inbound_nodes if any(n is m for m in self._nodes)]
        node = layer._inbound_nodes[node_index]
        return [layer.name, next(i for i, n in enumerate(mine) if n is node), k]

    def get_config(self) -> dict[str, Any]:
        def ref(t):
            config = {"shape": list(t.shape), "dtype": t.dtype, "keras_history": self._node_key(t)}
            return {"class_name": "__keras_tensor__", "config": config}

        layers = []
        for la in self.layers:
            nodes = [n for n in self._nodes if n.layer is la]
            inbound = [
                {"args": [[ref(t) for t in n.inputs]] if n.as_list else [ref(n.inputs[0])], "kwargs": {}}
                for n in nodes
            ]
            layers.append({"class_name": type(la).__name__, "config": la.get_config(), "name": la.name,
                           "inbound_nodes": inbound})  # fmt: skip

        def io(tensors, structure):
            keys = [self._node_key(t) for t in tensors]
            if isinstance(structure, list) and structure != "list":
                return dict(zip(structure, keys))
            return keys[0] if structure is None else keys

        cfg = {"name": self.name, "trainable": self.trainable, "layers": layers,
               "input_layers": io(self._inputs_list, self._in_structure),
               "output_layers": io(self._outputs_list, self._out_structure)}  # fmt: skip
        return cfg

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Functional:
        """A new (untrained) model with the architecture of ``config`` (``get_config``'s form)."""
        try:
            entries = list(config["layers"])
            made: dict[str, Any] = {}
            tensors: dict[tuple, KerasTensor] = {}
            pending = list(entries)
            for entry in entries:
                layer = deserialize_layer(entry)
                made[entry.get("name", layer.name)] = (layer, entry)
            # Replay the calls in an order where every input exists (layers as listed, nodes in
            # order; a call waits until its inputs were made).
            progress = True
            next_node = {name: 0 for name in made}
            while progress:
                progress = False
                for entry in pending:
                    name = entry.get("name") or entry["config"]["name"]
                    layer, _ = made[name]
                    if isinstance(layer, InputLayer):
                        if (name, 0, 0) not in tensors:
                            tensors[(name, 0, 0)] = layer.output
                            progress = True
                        continue
                    nodes = entry.get("inbound_nodes", [])
                    while next_node[name] < len(nodes):
                        args = nodes[next_node[name]]["args"]
                        arg = args[0]
                        keys = [
                            tuple(a["config"]["keras_history"])
                            for a in (arg if isinstance(arg, list) else [arg])
                        ]
                        if any(k not in tensors for k in keys):
                            break
                        ins = [tensors[k] for k in keys]
                        out = layer(ins if isinstance(arg, list) else ins[0])
                        outs, _ = flatten_structure(out, "outputs")
                        for j, o in enumerate(outs):
                            tensors[(name, next_node[name], j)] = o
                        next_node[name] += 1
                        progress = True

            def io(spec):
                if isinstance(spec, dict):
                    return {k: tensors[tuple(v)] for k, v in spec.items()}
                if spec and isinstance(spec[0], list):
                    return [tensors[tuple(v)] for v in spec]
                return tensors[tuple(spec)]

            model = cls(io(config["input_layers"]), io(config["output_layers"]), name=config.get("name"))
        except (KeyError, TypeError, IndexError) as e:
            raise ValueError(f"invalid Functional model config: {e!r}") from None
        if config.get("trainable") is False:
            model.trainable = False
        return model

    def __repr__(self) -> str:
        return f"<Functional name={self.name}, built=True>"

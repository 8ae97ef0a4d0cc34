"""``Sequential``: the Keras model API over the Rust engine.

The model is a list of layer descriptions until it knows its input shape; it is then *built*
into one engine object (``_core.Model``) holding every weight, buffer and the optimizer state.
``fit`` hands the engine whole slices of an epoch with the GIL released and comes back about ten
times a second for the progress bar and Ctrl-C, never once per batch.
"""

from __future__ import annotations

import json
import os
import warnings
from typing import Any

import numpy as np

from . import _core, losses, optimizers
from . import metrics as _metrics
from ._naming import unique_name
from .callbacks import Callback, CallbackList, History
from .layers import InputLayer, Layer
from .progbar import Progbar
from .utils import next_seed

__all__ = ["Sequential", "load_model"]

# How long one engine call trains before handing control back (progress, Ctrl-C).
_SLICE_SECONDS = 0.1


def _as_float32(name: str, a) -> np.ndarray:
    """``a`` as a C-contiguous float32 array; a float32 C-contiguous ndarray is not copied."""
    if isinstance(a, np.ndarray):
        arr = a
    else:
        try:
            arr = np.asarray(a)
        except (TypeError, ValueError) as e:
            raise TypeError(f"{name} must be a numeric array: {e}") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold numbers; got an array of dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.float32)


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


class Sequential:
    """A linear stack of layers, trained with ``compile`` and ``fit`` as in Keras."""

    def __init__(self, layers=None, name: str | None = None):
        self.name = name or unique_name("sequential")
        self._layers: list[Layer] = []
        self._input_shape: tuple[int, ...] | None = None
        self._core = None
        self._saved_weights: dict[str, list[np.ndarray]] = {}
        self.optimizer: optimizers.Optimizer | None = None
        self.loss: losses.Loss | None = None
        self._metric_ids: list = []
        self._compiled = False
        self.stop_training = False
        self.history: History | None = None
        for layer in layers or []:
            self.add(layer)

    # -- structure ---------------------------------------------------------------------------
    @property
    def layers(self) -> list[Layer]:
        return list(self._layers)

    @property
    def built(self) -> bool:
        return self._core is not None

    @property
    def input_shape(self) -> tuple | None:
        return None if self._input_shape is None else (None, *self._input_shape)

    @property
    def output_shape(self) -> tuple | None:
        return self._layers[-1].output_shape if self.built else None

    def add(self, layer: Layer) -> None:
        """Appends a layer (or, first, an ``Input``)."""
        if isinstance(layer, InputLayer):
            if self._layers:
                raise ValueError("Input must be the first entry of a Sequential model")
            self._input_shape = layer.shape
            return
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add expects a ferronet layer; got {type(layer).__name__}")
        taken = {la.name for existing in self._layers for la in _walk(existing)}
        clash = [la.name for la in _walk(layer) if la.name in taken]
        if clash:
            raise ValueError(f"a layer named '{clash[0]}' is already in the model; names must be unique")
        if not self._layers and self._input_shape is None and layer._input_shape is not None:
            self._input_shape = layer._input_shape
        self._unbuild()
        layer._model = self
        self._layers.append(layer)
        if self._input_shape is not None:
            # Known input shape: build now, as Keras does, so weights exist right away.
            try:
                self.build()
            except ValueError:
                self._layers.pop()
                layer._model = None
                if self._layers:
                    self.build()
                raise

    def pop(self) -> Layer:
        """Removes and returns the last layer."""
        if not self._layers:
            raise ValueError("pop: the model has no layers")
        self._unbuild()
        layer = self._layers.pop()
        layer._model = None
        self._saved_weights.pop(layer.name, None)
        if self._layers and self._input_shape is not None:
            self.build()
        return layer

    def _unbuild(self) -> None:
        """Drops the engine model, keeping every layer's weights for the rebuild."""
        if self._core is not None:
            for layer in self._layers:
                self._saved_weights[layer.name] = self._layer_weights(layer)
            self._core = None

    def build(self, input_shape=None) -> None:
        """Builds the weights for ``input_shape`` (with or without the leading batch axis)."""
        if input_shape is not None:
            shape = tuple(input_shape)
            if shape and shape[0] is None:
                shape = shape[1:]
            from .layers import _shape_tuple

            shape = _shape_tuple(shape, "input_shape")
            if self._input_shape is not None and shape != self._input_shape:
                raise ValueError(f"build: input shape {shape} differs from the declared {self._input_shape}")
            self._input_shape = shape
        if self._input_shape is None:
            raise ValueError("build: the input shape is unknown; pass input_shape or add an Input layer")
        if not self._layers:
            raise ValueError("the model has no layers; add at least one before building it")
        if self.built:
            return
        spec = {
            "input_shape": list(self._input_shape),
            "layers": [la._spec() for la in self._layers],
        }
        self._core = _core.Model(json.dumps(spec), next_seed())
        for layer, shape in zip(self._layers, self._core.layer_output_shapes):
            layer.output_shape = (None, *shape)
        saved, self._saved_weights = self._saved_weights, {}
        for layer in self._layers:
            old = saved.get(layer.name)
            if old and [w.shape for w in old] == [w.shape for w in self._layer_weights(layer)]:
                self._set_layer_weights(layer, old)
            for inner in _walk(layer):
                adapted = getattr(inner, "_adapted", None)
                if adapted is not None and not old:
                    self._set_layer_weights(inner, adapted)
        if self._compiled:
            self._compile_engine()

    def _ensure_built(self, x: np.ndarray) -> None:
        if self.built:
            return
        if self._input_shape is None:
            if x.ndim < 2:
                raise ValueError(f"x must have shape (samples, features...); got shape {x.shape}")
            self._input_shape = tuple(int(d) for d in x.shape[1:])
        self.build()

    # -- compile -----------------------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, metrics=None) -> None:
        """Chooses the optimizer, the loss and the metrics; resets the optimizer state."""
        opt = optimizers.get(optimizer)
        loss_obj = losses.get(loss) if loss is not None else None
        if metrics is None:
            metric_list: list = []
        elif isinstance(metrics, (str, _metrics.Metric)):
            metric_list = [metrics]
        elif isinstance(metrics, (list, tuple)):
            metric_list = list(metrics)
        else:
            raise TypeError(
                f"metrics must be a list of names or Metric objects; got {type(metrics).__name__}"
            )
        metric_objs = [_metrics.get(m) for m in metric_list]
        previous = (self.optimizer, self.loss, self._metric_ids, self._compiled)
        self.optimizer, self.loss, self._metric_ids, self._compiled = opt, loss_obj, metric_objs, True
        if self.built:
            try:
                self._compile_engine()
            except Exception:
                self.optimizer, self.loss, self._metric_ids, self._compiled = previous
                raise
        self._warn_untrainable()

    def _warn_untrainable(self) -> None:
        """The step activation has a zero derivative (note 001): layers before it cannot learn."""
        for layer in self._layers:
            act = getattr(layer, "activation", None)
            if isinstance(act, dict) and act.get("name") == "step":
                warnings.warn(
                    f"layer '{layer.name}' uses the step activation, whose gradient is zero everywhere: "
                    "it and the layers before it will not learn",
                    stacklevel=3,
                )

    def _compile_engine(self) -> None:
        if self.loss is None:
            return
        width = int(np.prod(self._core.layer_output_shapes[-1]))
        resolved = [_metrics.resolve(m, width, self.loss) for m in self._metric_ids]
        for m in resolved:
            if m.sparse != self.loss.is_sparse:
                want = "integer labels" if self.loss.is_sparse else "targets shaped like the output"
                raise ValueError(
                    f"metric '{m.name}' does not fit the loss '{self.loss.name}', whose targets are {want}"
                )
        specs = [m._spec() for m in resolved]
        spec = {"loss": self.loss._spec(), "optimizer": self.optimizer._spec(), "metrics": specs}
        self._core.compile(json.dumps(spec))
        self.optimizer._attach(self._core)

    def _require_compiled(self, what: str) -> None:
        if not self._compiled:
            raise ValueError(f"You must call compile() before {what}()")
        if self.loss is None:
            raise ValueError(f"{what}() needs a loss: call compile(loss=...) first")

    @property
    def metrics_names(self) -> list[str]:
        return ["loss", *(m if isinstance(m, str) else m.name for m in self._metric_ids)]

    # -- data --------------------------------------------------------------------------------
    def _prepare_x(self, x, what: str) -> np.ndarray:
        if x is None:
            raise ValueError(f"{what}: x is required")
        x = _as_float32("x", x)
        self._ensure_built(x)
        if x.ndim < 1 or x.shape[0] == 0:
            raise ValueError(f"{what}: x is empty (0 samples)")
        if tuple(x.shape[1:]) != self._input_shape:
            raise ValueError(
                f"{what}: the model expects input of shape (None, {', '.join(map(str, self._input_shape))}) "
                f"but x has shape {x.shape}"
            )
        return x

    def _prepare_y(self, y, n: int, what: str) -> np.ndarray:
        if y is None:
            raise ValueError(f"{what}: y is required")
        y = _as_float32("y", y)
        if y.ndim == 0 or y.shape[0] != n:
            got = y.shape[0] if y.ndim else "a scalar"
            raise ValueError(f"{what}: x and y must have the same number of samples; got x: {n}, y: {got}")
        width = int(np.prod(self._core.layer_output_shapes[-1]))
        if self.loss.is_sparse:
            if not (y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1)):
                raise ValueError(
                    f"{what}: {self.loss.name} expects integer class labels of shape ({n},); got y of "
                    f"shape {y.shape} (for one-hot targets use categorical_crossentropy)"
                )
            return y.reshape(n, 1)
        y = y.reshape(n, -1)
        if y.shape[1] != width:
            hint = ""
            if y.shape[1] == 1 and width > 1:
                hint = " (for integer labels use sparse_categorical_crossentropy)"
            raise ValueError(
                f"{what}: the model outputs {width} value(s) per sample but y has {y.shape[1]}{hint}"
            )
        return y

    def _sample_weights(self, sample_weight, class_weight, y: np.ndarray, what: str) -> np.ndarray | None:
        """Per-sample loss weights: ``sample_weight`` times the weight of each sample's class."""
        n = y.shape[0]
        w = None
        if sample_weight is not None:
            w = _as_float32("sample_weight", sample_weight)
            if w.ndim != 1 or w.shape[0] != n:
                raise ValueError(f"{what}: sample_weight must have shape ({n},); got {w.shape}")
        if class_weight is not None:
            if not isinstance(class_weight, dict):
                raise TypeError(f"{what}: class_weight must be a dict {{class: weight}}")
            # Binary or sparse targets name the class directly; one-hot targets by their argmax.
            classes = np.rint(y[:, 0]).astype(np.int64) if y.shape[1] == 1 else y.argmax(axis=1)
            size = max(int(classes.max()) + 1, *(int(c) + 1 for c in class_weight)) if n else 1
            lookup = np.ones(size, dtype=np.float32)
            for c, v in class_weight.items():
                if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or c < 0:
                    raise ValueError(f"{what}: class_weight keys must be class indices; got {c!r}")
                lookup[int(c)] = float(v)
            cw = lookup[np.clip(classes, 0, size - 1)]
            w = cw if w is None else w * cw
        return None if w is None else np.ascontiguousarray(w, dtype=np.float32)

    def _prepare_xy(self, x, y, what: str, sample_weight=None, class_weight=None):
        self._require_compiled(what)
        x = self._prepare_x(x, what)
        y = self._prepare_y(y, x.shape[0], what)
        w = self._sample_weights(sample_weight, class_weight, y, what)
        self._core.validate(x, y, w, what)
        return x, y, w

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
            split = int(np.ceil(x.shape[0] * (1.0 - validation_split)))
            if split <= 0 or split >= x.shape[0]:
                raise ValueError(
                    f"validation_split={validation_split} leaves no training or no validation samples "
                    f"out of {x.shape[0]}"
                )
            cut = lambda a, s: None if a is None else a[s]  # noqa: E731
            train = (x[:split], y[:split], cut(w, slice(None, split)))
            return train, (x[split:], y[split:], cut(w, slice(split, None)))
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

        ``batch_size=None`` trains full-batch (gradient descent on the whole set each step).
        ``validation_split`` holds out the *last* fraction of the samples, before shuffling, as
        Keras does. ``class_weight`` ({class: weight}) and ``sample_weight`` scale each sample's
        loss: the batch loss is ``sum_i w_i l_i / batch_size`` (Keras' reduction).
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
        n = x.shape[0]
        bs = _batch_size(batch_size, n)
        steps = -(-n // bs)

        history = History()
        user = list(callbacks or [])
        if any(not isinstance(cb, Callback) for cb in user):
            raise TypeError("callbacks must be ferronet.callbacks.Callback instances")
        params = {"verbose": verbose, "epochs": int(epochs), "steps": steps}
        cbs = CallbackList([history, *user], self, params)
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
        bs = _batch_size(batch_size, x.shape[0])
        bar = Progbar(-(-x.shape[0] // bs), verbose)
        logs = self._core.evaluate(x, y, w, bs)
        bar.update(bar.target, dict(logs), final=True)
        return self._format_logs(logs, return_dict)

    def test_on_batch(self, x, y, sample_weight=None, return_dict: bool = False):
        """Loss and metrics of one batch in inference mode."""
        x, y, w = self._prepare_xy(x, y, "test_on_batch", sample_weight)
        return self._format_logs(self._core.evaluate(x, y, w, x.shape[0]), return_dict)

    def predict(self, x, batch_size=32, verbose="auto") -> np.ndarray:
        """Outputs for ``x`` as a float32 array of shape ``(samples, *output_shape)``."""
        verbose = _verbosity(verbose)
        x = self._prepare_x(x, "predict")
        bs = _batch_size(batch_size, x.shape[0])
        bar = Progbar(-(-x.shape[0] // bs), verbose)
        out = self._core.predict(x, bs)
        bar.update(bar.target, final=True)
        return out

    def predict_on_batch(self, x) -> np.ndarray:
        x = self._prepare_x(x, "predict_on_batch")
        return self._core.predict(x, x.shape[0])

    def __call__(self, x, training: bool = False) -> np.ndarray:
        """The outputs for ``x`` as one batch; ``training=True`` shows training behaviour
        (dropout masks, batch statistics, which also updates BatchNormalization's moving averages)."""
        x = self._prepare_x(x, "call")
        return self._core.predict(x, max(x.shape[0], 1), bool(training))

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

    def get_weights(self) -> list[np.ndarray]:
        """Copies of every weight, in Keras order (per layer: kernel, then bias)."""
        return list(self._core.get_weights()) if self.built else []

    def set_weights(self, weights) -> None:
        """Replaces every weight; ``weights`` is a list like ``get_weights()`` returns."""
        self._require_built("set_weights")
        weights = list(weights)
        shapes = self._core.weight_shapes
        if len(weights) != len(shapes):
            raise ValueError(f"set_weights: the model has {len(shapes)} weight arrays; got {len(weights)}")
        arrays = [_as_float32("weights", w) for w in weights]
        for i, w in enumerate(arrays):
            self._core.set_weight(i, w)

    def _layer_indices(self, layer: Layer) -> list[int]:
        prefixes = tuple(layer._weight_prefixes())
        return [i for i, n in enumerate(self._core.weight_names) if n.startswith(prefixes)]

    def _layer_weights(self, layer: Layer) -> list[np.ndarray]:
        all_w = self._core.get_weights()
        return [all_w[i] for i in self._layer_indices(layer)]

    def _set_layer_weights(self, layer: Layer, weights) -> None:
        idx = self._layer_indices(layer)
        weights = list(weights)
        if len(weights) != len(idx):
            raise ValueError(f"layer '{layer.name}' has {len(idx)} weight arrays; got {len(weights)}")
        for i, w in zip(idx, weights):
            self._core.set_weight(i, _as_float32("weights", w))

    def save_weights(self, filepath, overwrite: bool = True) -> None:
        """Writes every weight to ``filepath`` in the safetensors format (any file name works).

        The file is written next to its destination and renamed into place, so an interrupted
        save never destroys a previous file."""
        self._require_built("save_weights")
        path = os.fspath(filepath)
        if not overwrite and os.path.exists(path):
            raise FileExistsError(f"save_weights: {path} exists and overwrite=False")
        self._core.save_weights(path, {"format": "ferronet-weights", "version": "1"})

    def load_weights(self, filepath) -> None:
        """Reads weights written by ``save_weights``. Names and shapes must match the model;
        a missing, truncated or foreign file raises and leaves the weights unchanged."""
        self._require_built("load_weights")
        self._core.load_weights(os.fspath(filepath))

    def count_params(self) -> int:
        """Total number of weights."""
        self._require_built("count_params")
        return int(sum(int(np.prod(s)) for s in self._core.weight_shapes))

    def summary(self, print_fn=print) -> None:
        """Prints a Keras-style table: layer, output shape, parameter count, and the total."""
        rows = [("Layer (type)", "Output Shape", "Param #")]
        for layer in self._layers:
            shape = str(layer.output_shape) if self.built else "?"
            count = str(layer.count_params()) if self.built else "?"
            rows.append((f"{layer.name} ({type(layer).__name__})", shape, count))
        widths = [max(len(r[i]) for r in rows) + 2 for i in range(3)]
        line = "─" * sum(widths)
        print_fn(f'Model: "{self.name}"')
        print_fn(line)
        for k, r in enumerate(rows):
            print_fn("".join(c.ljust(w) for c, w in zip(r, widths)))
            print_fn(line if k == 0 or k == len(rows) - 1 else "")
        if self.built:
            print_fn(f" Total params: {self.count_params():,}")

    def get_config(self) -> dict[str, Any]:
        layers = [{"class_name": type(la).__name__, "config": la.get_config()} for la in self._layers]
        shape = None if self._input_shape is None else list(self._input_shape)
        return {"name": self.name, "input_shape": shape, "layers": layers}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Sequential:
        """A new (untrained) model with the architecture of ``config``."""
        from .saving import deserialize_layer

        model = cls(name=config.get("name"))
        if config.get("input_shape") is not None:
            model._input_shape = tuple(int(d) for d in config["input_shape"])
        for entry in config.get("layers", []):
            model.add(deserialize_layer(entry))
        return model

    def save(self, filepath, overwrite: bool = True, include_optimizer: bool = True) -> None:
        """Saves architecture, weights, compile settings and optimizer state to one file (any
        name; ``.ferronet`` by convention). ``ferronet.models.load_model`` reads it back."""
        from .saving import save_model

        save_model(self, filepath, overwrite=overwrite, include_optimizer=include_optimizer)

    def __repr__(self) -> str:
        return f"<Sequential name={self.name} layers={len(self._layers)} built={self.built}>"


def load_model(filepath, compile: bool = True) -> Sequential:
    """Reads a model written by ``Sequential.save`` (see ``ferronet.saving``)."""
    from .saving import load_model as _load

    return _load(filepath, compile=compile)

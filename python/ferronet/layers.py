"""Layers (Keras 3 names, arguments and weight shapes).

A layer here is a description: its arguments (``get_config``) and, once built, a window onto its
weights. The engine's spec of a layer is its ``get_config`` plus the ``engine_type`` it is
registered under in the engine (``rust/core/src/layers/registry.rs``); the engine is the one
authority on the arguments: it validates them when the layer is created and fills Keras'
defaults.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import numpy as np

from . import _core, activations, initializers, mixed_precision, regularizers
from ._arrays import as_float32
from ._graph import KerasTensor, Node, shapes_fit
from ._naming import snake_case, unique_name
from ._serialization import deserialize_layer, layer_class, register_layer_class

__all__ = [
    "Layer", "InputLayer", "Input", "Variable", "Identity", "Add", "Subtract", "Multiply", "Average",
    "Maximum", "Minimum", "Concatenate", "Dot", "add", "subtract", "multiply", "average", "maximum",
    "minimum", "concatenate", "dot", "Dense", "Activation", "ReLU", "LeakyReLU", "Softmax", "PReLU",
    "Conv2D", "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D", "GlobalMaxPooling2D",
    "Flatten", "Reshape", "Dropout", "SpatialDropout2D", "GaussianNoise", "BatchNormalization",
    "LayerNormalization", "Residual", "GroupNormalization", "Rescaling", "Normalization",
    "MinMaxNormalization", "RandomFlip", "RandomTranslation", "RandomRotation", "RandomZoom",
]  # fmt: skip


def _shape_tuple(shape, what: str, allow_none: bool = False) -> tuple:
    """A per-sample shape as a tuple of positive ints (``None`` allowed for unknown sizes when
    ``allow_none``)."""
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    try:
        shape = tuple(shape)
    except TypeError:
        raise TypeError(f"{what} must be a tuple of positive integers; got {shape!r}") from None

    def ok(d):
        if d is None:
            return allow_none
        return not isinstance(d, bool) and isinstance(d, (int, np.integer)) and d > 0

    if not shape or not all(ok(d) for d in shape):
        raise ValueError(f"{what} must be a non-empty tuple of positive integers; got {shape!r}")
    return tuple(None if d is None else int(d) for d in shape)


class Layer:
    """Base class of every layer.

    A layer is a description (its arguments, ``get_config``) plus, once built, weights that live
    in the engine of the model that last used it (``_home``): calling a layer on symbolic
    tensors records a node of a model's graph; calling it on arrays runs it on its own.
    """

    def __init__(
        self, name: str | None = None, input_shape=None, trainable: bool = True, dtype=None, **kwargs
    ):
        if kwargs:
            raise TypeError(f"{type(self).__name__}: unexpected argument(s) {sorted(kwargs)}")
        self.name = name or unique_name(snake_case(type(self).__name__))
        self._input_shape = None if input_shape is None else _shape_tuple(input_shape, "input_shape")
        self.output_shape: tuple | None = None
        self._trainable = bool(trainable)
        self._dtype_policy = mixed_precision.as_policy(dtype)
        self._inbound_nodes: list = []
        # Per-sample input shapes the layer was built for (None until its first call or build).
        self._built_shapes: list[tuple] | None = None
        # The model whose engine holds this layer's weights, or None; weights waiting for an
        # engine (set before the layer was built, or kept across a rebuild).
        self._home = None
        self._pending: list[np.ndarray] | None = None
        self._parent: Layer | None = None
        self._standalone = None

    # -- description -------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {"name": self.name}
        if not self._trainable:
            cfg["trainable"] = False
        if self._dtype_policy.name != "float32":
            cfg["dtype"] = self._dtype_policy.name
        return cfg

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Layer:
        return cls(**config)

    #: The type the engine registers this layer's configuration under ("" for layers the engine
    #: does not run, such as ``InputLayer``).
    engine_type = ""

    def _spec(self) -> dict[str, Any]:
        """The engine's spec: the layer's config, tagged with its engine type."""
        return {"type": self.engine_type, **self.get_config()}

    def __init_subclass__(cls, **kwargs):
        """Wraps each subclass ``__init__`` so that, once the outermost one has run, the engine
        validates the arguments (Keras raises for bad arguments at construction too)."""
        super().__init_subclass__(**kwargs)
        register_layer_class(cls)
        init = cls.__dict__.get("__init__")
        if init is None:
            return

        @functools.wraps(init)
        def validated_init(self, *args, **kw):
            depth = self.__dict__.get("_init_depth", 0)
            self._init_depth = depth + 1
            try:
                init(self, *args, **kw)
            finally:
                self._init_depth = depth
            if depth == 0 and self.engine_type:
                _core.Model.validate_layer(json.dumps(self._spec()))

        cls.__init__ = validated_init

    # -- freezing ----------------------------------------------------------------------------
    @property
    def trainable(self) -> bool:
        """``False`` freezes the layer: its weights do not change in ``fit``, and a
        BatchNormalization runs in inference mode (Keras 3 semantics). Setting it on a layer
        that holds others (a model, a ``Residual``) sets it on every one of them."""
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        self._trainable = bool(value)
        for child in self._children():
            child.trainable = value

    # -- precision ---------------------------------------------------------------------------
    @property
    def dtype_policy(self) -> mixed_precision.DTypePolicy:
        """The layer's policy (``ferronet.mixed_precision``): the global policy when the layer
        was created, unless its ``dtype`` argument named another."""
        return self._dtype_policy

    @property
    def compute_dtype(self) -> str:
        return self._dtype_policy.compute_dtype

    @property
    def dtype(self) -> str:
        """The dtype of the layer's weights: ``variable_dtype``, as in Keras."""
        return self._dtype_policy.variable_dtype

    @property
    def variable_dtype(self) -> str:
        return self._dtype_policy.variable_dtype

    # -- calls -------------------------------------------------------------------------------
    @property
    def built(self) -> bool:
        return self._built_shapes is not None

    def __call__(self, inputs, training=None, **kwargs):
        if kwargs:
            raise TypeError(f"{self.name}: unexpected call argument(s) {sorted(kwargs)}")
        flat = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        symbolic = [isinstance(t, KerasTensor) for t in flat]
        if flat and all(symbolic):
            return self._symbolic_call(inputs)
        if any(symbolic):
            raise TypeError(f"layer '{self.name}': cannot mix symbolic tensors and arrays in one call")
        return self._eager_call(inputs, training)

    def _check_input_shapes(self, shapes: list[tuple]) -> None:
        built = self._built_shapes
        if built is not None and (len(shapes) != len(built) or not all(map(shapes_fit, built, shapes))):

            def show(ss):
                return ", ".join(str((None, *s)) for s in ss)

            raise ValueError(
                f"Input 0 of layer '{self.name}' is incompatible with the layer: it was built for input "
                f"shape {show(self._built_shapes)} and received {show(shapes)}"
            )

    def _output_shape_for(self, shapes: list[tuple]) -> tuple:
        """Per-sample output shape for per-sample input ``shapes`` (``None``: a size each call's
        data sets): the engine's inference, which also validates the layer's arguments against
        the shapes."""
        out = _core.Model.layer_output_shape(json.dumps(self._spec()), [list(s) for s in shapes])
        return tuple(None if d is None else int(d) for d in out)

    def _symbolic_call(self, inputs):
        as_list = isinstance(inputs, (list, tuple))
        tensors = list(inputs) if as_list else [inputs]
        shapes = [tuple(t.shape[1:]) for t in tensors]
        self._check_input_shapes(shapes)
        out_shape = self._output_shape_for(shapes)
        if self._built_shapes is None:
            # Built for these shapes; a layer built for unknown (None) dimensions keeps
            # accepting any size there.
            self._built_shapes = shapes
        batch = tensors[0].shape[0]
        out = KerasTensor((batch, *out_shape), history=(self, len(self._inbound_nodes), 0))
        self._inbound_nodes.append(Node(self, tensors, [out], as_list))
        if self.output_shape is None:
            self.output_shape = out.shape
        return out

    def _standalone_model(self, shapes: list[tuple]):
        """A one-layer model over inputs of per-sample ``shapes`` (how a layer runs on data). The
        ``Functional`` class comes from the class registry: models are layers, so ``models.py``
        imports this module and not the other way round."""
        self._check_input_shapes(shapes)
        # A layer built for unknown dimensions runs every size through one engine.
        shapes = self._built_shapes or shapes
        if self._standalone is None or self._standalone[0] != shapes:
            inputs = [KerasTensor((None, *s)) for s in shapes]
            for t in inputs:
                t._history = None
            model = layer_class("Functional")._from_layer_call(self, inputs, list_call=len(shapes) > 1)
            self._standalone = (shapes, model)
        return self._standalone[1]

    def _eager_call(self, inputs, training):
        as_list = isinstance(inputs, (list, tuple))
        arrays = [as_float32("inputs", a) for a in (inputs if as_list else [inputs])]
        if any(a.ndim < 2 for a in arrays):
            raise ValueError(
                f"layer '{self.name}': inputs must have a batch axis; got shapes {[a.shape for a in arrays]}"
            )
        model = self._standalone_model([tuple(a.shape[1:]) for a in arrays])
        return model(arrays if as_list else arrays[0], training=bool(training))

    def build(self, input_shape) -> None:
        """Creates the weights for inputs of ``input_shape`` (batch axis first, may be ``None``)."""
        many = (
            isinstance(input_shape, (list, tuple))
            and input_shape
            and isinstance(input_shape[0], (list, tuple))
        )
        shapes = [tuple(s)[1:] for s in input_shape] if many else [tuple(input_shape)[1:]]
        if self.built and shapes == self._built_shapes:
            return
        self._standalone_model([tuple(int(d) for d in s) for s in shapes])._claim()
        self._built_shapes = shapes

    @property
    def input(self):
        """The input tensor(s) of the layer's first call."""
        if not self._inbound_nodes:
            raise AttributeError(f"layer '{self.name}' has never been called and thus has no defined input")
        node = self._inbound_nodes[0]
        return node.inputs if node.as_list else node.inputs[0]

    @property
    def output(self):
        """The output tensor of the layer's first call."""
        if not self._inbound_nodes:
            raise AttributeError(f"layer '{self.name}' has never been called and thus has no defined output")
        return self._inbound_nodes[0].outputs[0]

    # -- weights -----------------------------------------------------------------------------
    def _weight_home(self):
        if self._parent is not None:
            return self._parent._weight_home()
        return self._home

    def get_weights(self) -> list[np.ndarray]:
        """Copies of this layer's weights (Dense: kernel ``(in, units)``, then bias)."""
        home = self._weight_home()
        if home is not None:
            return home._layer_weights(self)
        return [w.copy() for w in self._pending] if self._pending else []

    def set_weights(self, weights) -> None:
        """Replaces this layer's weights; shapes must match ``get_weights()``. Atomic: on a
        mismatch nothing changes."""
        home = self._weight_home()
        if home is None:
            raise ValueError(
                f"layer '{self.name}' is not built yet: call it on data, build it or fit its model first"
            )
        home._set_layer_weights(self, weights)

    def _weight_variables(self) -> list:
        home = self._weight_home()
        return home._layer_variables(self) if home is not None else []

    @property
    def weights(self) -> list:
        """The layer's weights as variables (``.numpy()``, ``.path``, ``.shape``), Keras order."""
        return self._weight_variables()

    @property
    def trainable_weights(self) -> list:
        return [v for v in self._weight_variables() if v.trainable]

    @property
    def non_trainable_weights(self) -> list:
        return [v for v in self._weight_variables() if not v.trainable]

    def _weight_prefixes(self) -> list[str]:
        """Name prefixes of this layer's tensors in the engine (``name/kernel``...)."""
        return [self.name + "/"]

    def _children(self) -> list[Layer]:
        """Layers nested inside this one."""
        return []

    def count_params(self) -> int:
        return int(sum(w.size for w in self.get_weights()))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name}>"


class Variable:
    """A light view of one weight: ``numpy()`` gives a copy of its values (as Keras variables)."""

    def __init__(self, path: str, value: np.ndarray, trainable: bool):
        self.path = path
        self.name = path.rsplit("/", 1)[-1]
        self._value = value
        self.trainable = trainable

    @property
    def shape(self) -> tuple:
        return tuple(self._value.shape)

    @property
    def dtype(self) -> str:
        return "float32"

    def numpy(self) -> np.ndarray:
        return self._value.copy()

    def __array__(self, dtype=None, copy=None):
        return self._value.astype(dtype) if dtype is not None else self._value.copy()

    def __repr__(self) -> str:
        return f"<Variable path={self.path}, shape={self.shape}, dtype=float32>"


class InputLayer(Layer):
    """The layer behind ``keras.Input``: declares a model input (no computation)."""

    _is_input_layer = True

    def __init__(self, shape=None, batch_size=None, dtype=None, name: str | None = None, **kwargs):
        if shape is None and "input_shape" in kwargs:
            shape = kwargs.pop("input_shape")
        if shape is None and "batch_shape" in kwargs:
            batch_shape = kwargs.pop("batch_shape")
            batch_size, shape = batch_shape[0], batch_shape[1:]
        kwargs.pop("sparse", None)
        kwargs.pop("ragged", None)
        kwargs.pop("optional", None)
        if shape is None:
            raise ValueError("Input requires a shape, e.g. Input(shape=(784,))")
        super().__init__(name=name or unique_name("input_layer"), **kwargs)
        self.shape = _input_shape_tuple(shape)
        self.batch_size = batch_size
        self._input_dtype = "float32" if dtype is None else str(np.dtype(dtype))
        self._input_shape = self.shape
        self.output_shape = (batch_size, *self.shape)
        tensor = KerasTensor((batch_size, *self.shape), dtype=self.dtype, name=name, history=(self, 0, 0))
        self._inbound_nodes.append(Node(self, [], [tensor], False))
        self._built_shapes = [self.shape]

    @property
    def output(self):
        return self._inbound_nodes[0].outputs[0]

    @property
    def dtype(self) -> str:
        """The dtype of the input it declares."""
        return self._input_dtype

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


def _input_shape_tuple(shape) -> tuple:
    """An Input's per-sample shape: positive integers, or ``None`` for a dimension known only
    per batch."""
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        raise ValueError(f"Cannot convert '{shape}' to a shape; pass a tuple, e.g. shape=({shape},)")
    try:
        dims = tuple(shape)
    except TypeError:
        raise TypeError(f"shape must be a tuple of positive integers; got {shape!r}") from None
    if not dims or any(
        d is not None and (isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d <= 0)
        for d in dims
    ):
        raise ValueError(f"shape must be a non-empty tuple of positive integers (or None); got {shape!r}")
    return tuple(None if d is None else int(d) for d in dims)


def Input(shape=None, batch_size=None, dtype=None, name: str | None = None, batch_shape=None):
    """``keras.Input``: a symbolic tensor to call layers on (Functional API), also accepted as the
    first entry of ``Sequential``."""
    if shape is None and batch_shape is not None:
        batch_size, shape = batch_shape[0], tuple(batch_shape[1:])
    return InputLayer(shape=shape, batch_size=batch_size, dtype=dtype, name=name).output


def _activation_config(spec: dict[str, Any]):
    """A plain name when the activation has no options, else its full spec."""
    return spec["name"] if len(spec) == 1 else dict(spec)


def _reg_config(r):
    return None if r is None else {"class_name": type(r).__name__, "config": r.get_config()}


class _KernelLayer(Layer):
    """Shared arguments of the layers with a kernel and a bias (Dense, Conv2D): activation,
    ``use_bias``, initializers and regularizers."""

    def _set_kernel_args(self, activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
                         bias_regularizer) -> None:  # fmt: skip
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)

    def _kernel_args(self) -> dict[str, Any]:
        return {
            "activation": _activation_config(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": self.kernel_initializer._spec(),
            "bias_initializer": self.bias_initializer._spec(),
            "kernel_regularizer": _reg_config(self.kernel_regularizer),
            "bias_regularizer": _reg_config(self.bias_regularizer),
        }


class Dense(_KernelLayer):
    """Fully connected layer: ``output = activation(x @ kernel + bias)``.

    The kernel has shape ``(in, units)`` and comes first in ``get_weights()``, the bias
    ``(units,)`` second, as in Keras. Backward (note 002, matrix form): ``dZ = dA * act'(Z)``,
    ``dW = X^T dZ``, ``db = sum(dZ)``, ``dX = dZ W^T``. Regularizer penalties (note 002) are
    added to the loss and their gradients to ``dW``/``db``.
    """

    engine_type = "dense"

    def __init__(
        self,
        units: int,
        activation=None,
        use_bias: bool = True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        name: str | None = None,
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        if isinstance(units, bool) or not isinstance(units, (int, np.integer)):
            raise ValueError(f"Dense: units must be a positive integer; got {units!r}")
        self.units = int(units)
        self._set_kernel_args(activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
                              bias_regularizer)  # fmt: skip

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "units": self.units, **self._kernel_args()}

    def __repr__(self) -> str:
        return f"<Dense name={self.name} units={self.units} activation={self.activation['name']}>"


class Activation(Layer):
    """Applies an activation function (``"relu"``, ``"softmax"``...) to its input."""

    engine_type = "activation"

    def __init__(self, activation, name: str | None = None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.activation = activations.get(activation)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "activation": _activation_config(self.activation)}


class ReLU(Activation):
    """``max(0, z)``; with ``negative_slope`` it is a leaky ReLU."""

    engine_type = "relu"

    def __init__(self, negative_slope: float = 0.0, name: str | None = None, **kwargs):
        for unsupported in ("max_value", "threshold"):
            if kwargs.get(unsupported) not in (None, 0, 0.0):
                raise ValueError(f"ReLU: {unsupported} is not supported")
            kwargs.pop(unsupported, None)
        self.negative_slope = float(negative_slope)
        act = {"name": "relu"} if self.negative_slope == 0 else {
            "name": "leaky_relu", "negative_slope": self.negative_slope}  # fmt: skip
        super().__init__(act, name=name, **kwargs)

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "negative_slope": self.negative_slope}


class LeakyReLU(Activation):
    """``z`` for ``z > 0``, else ``negative_slope * z``. Default slope 0.01 as the notes use
    (Keras' default is 0.3)."""

    engine_type = "leaky_relu"

    def __init__(self, negative_slope: float = 0.01, name: str | None = None, **kwargs):
        self.negative_slope = float(negative_slope)
        super().__init__({"name": "leaky_relu", "negative_slope": self.negative_slope}, name=name, **kwargs)

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "negative_slope": self.negative_slope}


class Softmax(Activation):
    """Softmax over the last axis, with an optional ``temperature`` (note 002 appendix B)."""

    engine_type = "softmax"

    def __init__(self, axis: int = -1, temperature: float = 1.0, name: str | None = None, **kwargs):
        self.axis, self.temperature = axis, float(temperature)
        super().__init__({"name": "softmax", "temperature": self.temperature}, name=name, **kwargs)

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "axis": self.axis, "temperature": self.temperature}


class PReLU(Layer):
    """Parametric ReLU (He et al. 2015, note 000): ``z`` for ``z > 0``, else ``alpha * z`` with a
    learnable ``alpha`` per unit, shared along ``shared_axes`` (1-based, as in Keras). ``alpha``
    starts at 0.25 as in the paper and PyTorch (Keras starts at 0) and is a trained weight in
    ``get_weights()``."""

    engine_type = "prelu"

    def __init__(
        self,
        alpha_initializer=None,
        alpha_regularizer=None,
        shared_axes=None,
        name: str | None = None,
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        self.alpha_initializer = initializers.get(
            initializers.Constant(0.25) if alpha_initializer is None else alpha_initializer
        )
        self.alpha_regularizer = regularizers.get(alpha_regularizer)
        if shared_axes is None:
            shared_axes = []
        elif isinstance(shared_axes, int):
            shared_axes = [shared_axes]
        self.shared_axes = [int(a) for a in shared_axes]

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "alpha_initializer": self.alpha_initializer._spec(),
            "alpha_regularizer": _reg_config(self.alpha_regularizer),
            "shared_axes": self.shared_axes or None,
        }


def _pair(name: str, v) -> list[int]:
    """An int or a pair of ints, as Keras accepts for sizes and strides."""
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        v = (v, v)
    try:
        a, b = v
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an int or a pair of ints; got {v!r}") from None
    if any(isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1 for d in (a, b)):
        raise ValueError(f"{name} must hold positive integers; got {v!r}")
    return [int(a), int(b)]


def _padding(p) -> str:
    if not isinstance(p, str) or p.lower() not in ("valid", "same"):
        raise ValueError(f"padding must be 'valid' or 'same'; got {p!r}")
    return p.lower()


def _channels_last(data_format) -> None:
    if data_format not in (None, "channels_last"):
        raise ValueError("only data_format='channels_last' (NHWC, Keras' default) is supported")


class Conv2D(_KernelLayer):
    """2-D convolution over ``(height, width, channels)`` inputs (note 002 §6).

    Kernel ``(kh, kw, in_channels, filters)`` then bias ``(filters,)`` in ``get_weights()``.
    Output size per axis (note 002 §6.4): ``valid``: ``(n - f) / s + 1`` (floored), ``same``:
    ``ceil(n / s)`` with zero padding; ``dilation_rate`` spreads the kernel taps ``d`` apart.
    Computed as an implicit matrix product on a zero-bordered copy of each sample (stride 1, on
    AVX-512 machines) or as one matrix product over im2col patches, multithreaded.
    """

    engine_type = "conv2d"

    def __init__(
        self,
        filters: int,
        kernel_size,
        strides=(1, 1),
        padding="valid",
        data_format=None,
        dilation_rate=(1, 1),
        activation=None,
        use_bias: bool = True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        name: str | None = None,
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        _channels_last(data_format)
        if isinstance(filters, bool) or not isinstance(filters, (int, np.integer)):
            raise ValueError(f"Conv2D: filters must be a positive integer; got {filters!r}")
        self.filters = int(filters)
        self.kernel_size = _pair("kernel_size", kernel_size)
        self.strides = _pair("strides", strides)
        self.padding = _padding(padding)
        self.dilation_rate = _pair("dilation_rate", dilation_rate)
        self._set_kernel_args(activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
                              bias_regularizer)  # fmt: skip

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": tuple(self.kernel_size),
            "strides": tuple(self.strides),
            "padding": self.padding,
            "dilation_rate": tuple(self.dilation_rate),
            **self._kernel_args(),
        }


class _Pooling2D(Layer):
    def __init__(
        self, pool_size=(2, 2), strides=None, padding="valid", data_format=None, name=None, **kwargs
    ):
        super().__init__(name=name, **kwargs)
        _channels_last(data_format)
        self.pool_size = _pair("pool_size", pool_size)
        self.strides = None if strides is None else _pair("strides", strides)
        self.padding = _padding(padding)

    def get_config(self) -> dict[str, Any]:
        strides = None if self.strides is None else tuple(self.strides)
        return {**super().get_config(), "pool_size": tuple(self.pool_size), "strides": strides,
                "padding": self.padding}  # fmt: skip


class MaxPooling2D(_Pooling2D):
    """Maximum over each ``pool_size`` window (strides default to the pool size)."""

    engine_type = "max_pooling2d"


class AveragePooling2D(_Pooling2D):
    """Mean over each window; with ``same`` padding, over the cells inside the input only."""

    engine_type = "average_pooling2d"


class _ImageToFlat(Layer):
    """A parameterless layer of channels-last images."""

    def __init__(self, data_format=None, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        _channels_last(data_format)


class GlobalAveragePooling2D(_ImageToFlat):
    """Mean over height and width: ``(H, W, C) -> (C,)``."""

    engine_type = "global_average_pooling2d"


class GlobalMaxPooling2D(_ImageToFlat):
    """Maximum over height and width: ``(H, W, C) -> (C,)``."""

    engine_type = "global_max_pooling2d"


class Flatten(_ImageToFlat):
    """``(H, W, C) -> (H * W * C,)``, in row-major (NHWC) order."""

    engine_type = "flatten"


class Reshape(Layer):
    """Reshapes each sample to ``target_shape`` (one entry may be -1)."""

    engine_type = "reshape"

    def __init__(self, target_shape, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        try:
            dims = tuple(target_shape)
        except TypeError:
            raise TypeError(
                f"Reshape: target_shape must be a tuple of integers; got {target_shape!r}"
            ) from None
        if (
            not dims
            or any(
                isinstance(d, bool) or not isinstance(d, (int, np.integer)) or (d <= 0 and d != -1)
                for d in dims
            )
            or dims.count(-1) > 1
        ):
            raise ValueError(
                f"Reshape: target_shape must be positive integers (one may be -1); got {target_shape!r}"
            )
        self.target_shape = tuple(int(d) for d in dims)

    def get_config(self):
        return {**super().get_config(), "target_shape": self.target_shape}


def _rate(name: str, rate) -> float:
    if isinstance(rate, bool) or not isinstance(rate, (int, float)):
        raise ValueError(f"{name}: rate must be a number in [0, 1); got {rate!r}")
    return float(rate)


class Dropout(Layer):
    """Inverted dropout (note 002, note 004): in training each value is zeroed with probability
    ``rate`` and the rest scaled by ``1 / (1 - rate)``; in inference, the identity. (The original
    form scales at inference by ``1 - rate`` instead; the expected activations are the same.)"""

    engine_type = "dropout"

    def __init__(self, rate: float, noise_shape=None, seed=None, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        if noise_shape is not None:
            raise ValueError("Dropout: noise_shape is not supported (use SpatialDropout2D for channels)")
        self.rate = _rate("Dropout", rate)

    def get_config(self):
        return {**super().get_config(), "rate": self.rate}


class SpatialDropout2D(Dropout):
    """Drops whole channels of a ``(H, W, C)`` map (one draw per sample and channel)."""

    engine_type = "spatial_dropout2d"

    def __init__(self, rate: float, data_format=None, name=None, **kwargs):
        _channels_last(data_format)
        super().__init__(rate, name=name, **kwargs)


class GaussianNoise(Layer):
    """Adds ``N(0, stddev^2)`` noise in training only (note 004, noise as regularization)."""

    engine_type = "gaussian_noise"

    def __init__(self, stddev: float, seed=None, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        if isinstance(stddev, bool) or not isinstance(stddev, (int, float)):
            raise ValueError(f"GaussianNoise: stddev must be a number >= 0; got {stddev!r}")
        self.stddev = float(stddev)

    def get_config(self):
        return {**super().get_config(), "stddev": self.stddev}


class BatchNormalization(Layer):
    """Batch normalization (note 000, note 004), per channel of the last axis: in training
    ``(x - mean_batch) / sqrt(var_batch + epsilon) * gamma + beta``, with moving averages
    ``m = momentum * m + (1 - momentum) * batch_stat`` used in inference. Weights: gamma, beta,
    moving_mean, moving_variance (Keras order; the last two are not trained)."""

    engine_type = "batch_normalization"

    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.axis, self.momentum, self.epsilon = axis, float(momentum), float(epsilon)
        self.center, self.scale = bool(center), bool(scale)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "momentum": self.momentum, "epsilon": self.epsilon,
                "center": self.center, "scale": self.scale}  # fmt: skip


class LayerNormalization(Layer):
    """Layer normalization (note 004): per sample over the last axis, the same in training and
    inference; gamma and beta per feature."""

    engine_type = "layer_normalization"

    def __init__(self, axis=-1, epsilon=1e-3, center=True, scale=True, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.axis, self.epsilon, self.center, self.scale = axis, float(epsilon), bool(center), bool(scale)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "epsilon": self.epsilon, "center": self.center,
                "scale": self.scale}  # fmt: skip


class Residual(Layer):
    """Residual block (note 004): ``output = block(x) + shortcut(x)``, with ``block`` a list of
    layers and ``shortcut`` the identity (``None``) or a layer projecting ``x`` to the block's
    output shape (e.g. ``Conv2D(filters, 1)`` when the channels change). Usable inside
    ``Sequential``; its weights are those of its layers, block first."""

    engine_type = "residual"

    def __init__(self, layers, shortcut=None, name: str | None = None, **kwargs):
        super().__init__(name=name, **kwargs)
        layers = list(layers) if isinstance(layers, (list, tuple)) else [layers]
        if not layers or any(not isinstance(la, Layer) or isinstance(la, InputLayer) for la in layers):
            raise TypeError("Residual: layers must be a non-empty list of ferronet layers")
        if shortcut is not None and not isinstance(shortcut, Layer):
            raise TypeError("Residual: shortcut must be a ferronet layer or None")
        self.block, self.shortcut = layers, shortcut
        for child in self._children():
            child._parent = self

    def _children(self) -> list[Layer]:
        return [*self.block, *([self.shortcut] if self.shortcut is not None else [])]

    def _weight_prefixes(self) -> list[str]:
        return [p for child in self._children() for p in child._weight_prefixes()]

    def get_config(self):
        def cfg(la):
            return {"class_name": type(la).__name__, "config": la.get_config()}

        return {**super().get_config(), "layers": [cfg(la) for la in self.block],
                "shortcut": None if self.shortcut is None else cfg(self.shortcut)}  # fmt: skip

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        block = [deserialize_layer(e) for e in config.pop("layers")]
        short = config.pop("shortcut", None)
        return cls(block, shortcut=None if short is None else deserialize_layer(short), **config)

    def _spec(self):
        # The block's layers go to the engine as their own specs (the config holds them in
        # Keras' serialized form).
        return {
            **super()._spec(),
            "layers": [la._spec() for la in self.block],
            "shortcut": None if self.shortcut is None else self.shortcut._spec(),
        }


class GroupNormalization(Layer):
    """Group normalization (Wu and He 2018; the small-batch alternative of note 000): per sample,
    over groups of ``channels / groups`` consecutive channels and every position; the same in
    training and inference. gamma and beta per channel."""

    engine_type = "group_normalization"

    def __init__(self, groups=32, axis=-1, epsilon=1e-3, center=True, scale=True, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.groups, self.axis, self.epsilon = groups, axis, float(epsilon)
        self.center, self.scale = bool(center), bool(scale)

    def get_config(self):
        return {**super().get_config(), "groups": self.groups, "axis": self.axis, "epsilon": self.epsilon,
                "center": self.center, "scale": self.scale}  # fmt: skip


class Rescaling(Layer):
    """``y = x * scale + offset`` (e.g. ``Rescaling(1/255)`` for 8-bit images, note 000)."""

    engine_type = "rescaling"

    def __init__(self, scale, offset=0.0, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.scale, self.offset = float(scale), float(offset)

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "offset": self.offset}


class _Adaptive(Layer):
    """A preprocessing layer whose statistics come from ``adapt(data)``, computed per feature of
    the last axis (per channel for images) over the training data only (note 000), and stored as
    non-trained weights so they are saved with the model."""

    def __init__(self, axis=-1, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.axis = axis
        self._adapted: list[np.ndarray] | None = None

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}

    def _statistics(self, data: np.ndarray) -> list[np.ndarray]:
        raise NotImplementedError

    def adapt(self, data) -> None:
        """Computes the statistics from ``data`` (samples on axis 0)."""
        arr = np.asarray(data)
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"{type(self).__name__}.adapt: data must be numeric; got dtype {arr.dtype}")
        arr = arr.astype(np.float64)
        if arr.ndim < 2 or arr.shape[0] == 0:
            raise ValueError(
                f"{type(self).__name__}.adapt: data must have shape (samples, ...); got {arr.shape}"
            )
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{type(self).__name__}.adapt: data contains NaN or Inf")
        flat = arr.reshape(-1, arr.shape[-1])
        self._adapted = [s.astype(np.float32) for s in self._statistics(flat)]
        if self._weight_home() is not None:
            self.set_weights(self._adapted)
        else:
            self._pending = [a.copy() for a in self._adapted]


class Normalization(_Adaptive):
    """z-score per feature: ``(x - mean) / sqrt(variance)``; weights ``[mean, variance]``."""

    engine_type = "normalization"

    def _statistics(self, flat):
        return [flat.mean(axis=0), flat.var(axis=0)]


class MinMaxNormalization(_Adaptive):
    """Maps each feature to ``[0, 1]`` with the training minimum and maximum (not in Keras; same
    style as ``Normalization``); weights ``[min, max]``."""

    engine_type = "min_max_normalization"

    def _statistics(self, flat):
        return [flat.min(axis=0), flat.max(axis=0)]


def _factor_range(name: str, factor) -> list[float]:
    """Keras' factor convention: ``f`` means ``[-f, f]``; a pair is ``[lo, hi]`` (the engine
    checks the range)."""
    if isinstance(factor, (int, float)) and not isinstance(factor, bool):
        return [-abs(float(factor)), abs(float(factor))]
    try:
        lo, hi = (float(v) for v in factor)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: factor must be a number or a pair (lo, hi); got {factor!r}") from None
    return [lo, hi]


class _RandomTransform(Layer):
    """Image augmentation in training only (note 002 §4.1, note 004), one random transform per
    sample, bilinear sampling with zeros outside the image (Keras' default fill is reflection)."""


class RandomFlip(_RandomTransform):
    """Flips each image left-right and/or up-down with probability 1/2 each."""

    engine_type = "random_flip"

    def __init__(self, mode="horizontal_and_vertical", seed=None, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.mode = mode

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


class RandomTranslation(_RandomTransform):
    """Shifts each image by a random fraction of its height and width."""

    engine_type = "random_translation"

    def __init__(self, height_factor, width_factor, fill_mode="constant", seed=None, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        if fill_mode != "constant":
            raise ValueError("RandomTranslation: only fill_mode='constant' (zeros) is supported")
        self.height_factor = _factor_range("RandomTranslation", height_factor)
        self.width_factor = _factor_range("RandomTranslation", width_factor)

    def get_config(self):
        return {
            **super().get_config(),
            "height_factor": self.height_factor,
            "width_factor": self.width_factor,
        }


class RandomRotation(_RandomTransform):
    """Rotates each image by a random angle, ``factor`` being a fraction of a full turn."""

    engine_type = "random_rotation"

    def __init__(self, factor, fill_mode="constant", seed=None, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        if fill_mode != "constant":
            raise ValueError("RandomRotation: only fill_mode='constant' (zeros) is supported")
        self.factor = _factor_range("RandomRotation", factor)

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


class RandomZoom(_RandomTransform):
    """Zooms each image by a random factor (positive zooms out, as in Keras); ``width_factor=None``
    keeps the aspect ratio."""

    engine_type = "random_zoom"

    def __init__(
        self, height_factor, width_factor=None, fill_mode="constant", seed=None, name=None, **kwargs
    ):
        super().__init__(name=name, **kwargs)
        if fill_mode != "constant":
            raise ValueError("RandomZoom: only fill_mode='constant' (zeros) is supported")
        self.height_factor = _factor_range("RandomZoom", height_factor)
        self.width_factor = None if width_factor is None else _factor_range("RandomZoom", width_factor)

    def get_config(self):
        return {
            **super().get_config(),
            "height_factor": self.height_factor,
            "width_factor": self.width_factor,
        }


class Identity(Layer):
    """Returns its input unchanged (``keras.layers.Identity``)."""

    engine_type = "identity"


class _Merge(Layer):
    """Base of the layers called on a list of tensors. Elementwise merges broadcast as Keras:
    shapes align on the right and size-1 dimensions stretch (``(3, 1)`` with ``(3, 4)``)."""

    def __call__(self, inputs, training=None, **kwargs):
        if not isinstance(inputs, (list, tuple)):
            shape = getattr(inputs, "shape", None)
            raise ValueError(
                "A merge layer should be called on a list of inputs. "
                f"Received: input_shape={shape} (not a list of shapes)"
            )
        return super().__call__(list(inputs), training=training, **kwargs)


class Add(_Merge):
    """Elementwise sum of its inputs."""

    engine_type = "add"


class Subtract(_Merge):
    """``inputs[0] - inputs[1]`` (exactly two inputs)."""

    engine_type = "subtract"


class Multiply(_Merge):
    """Elementwise product of its inputs."""

    engine_type = "multiply"


class Average(_Merge):
    """Elementwise mean of its inputs."""

    engine_type = "average"


class Maximum(_Merge):
    """Elementwise maximum (the gradient goes to the largest input; ties to the first)."""

    engine_type = "maximum"


class Minimum(_Merge):
    """Elementwise minimum (the gradient goes to the smallest input; ties to the first)."""

    engine_type = "minimum"


class Concatenate(_Merge):
    """Joins its inputs along ``axis`` (counted with the batch axis, as Keras; default last)."""

    engine_type = "concatenate"

    def __init__(self, axis: int = -1, name: str | None = None, **kwargs):
        super().__init__(name=name, **kwargs)
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise TypeError(f"Concatenate: axis must be an integer; got {axis!r}")
        self.axis = int(axis)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


class Dot(_Merge):
    """Batched dot product of two inputs along ``axes`` (an int or a pair, counted with the batch
    axis): ``out[b] = sum_k x[b, ..., k] y[b, ..., k]``. With ``normalize``, each input is first
    L2-normalized along its axis, so the result is the cosine similarity."""

    engine_type = "dot"

    def __init__(self, axes, normalize: bool = False, name: str | None = None, **kwargs):
        super().__init__(name=name, **kwargs)
        pair = list(axes) if isinstance(axes, (list, tuple)) else [axes, axes]
        if len(pair) != 2 or any(isinstance(a, bool) or not isinstance(a, (int, np.integer)) for a in pair):
            raise TypeError(f"Dot: axes must be an integer or a pair of integers; got {axes!r}")
        self.axes = axes if isinstance(axes, int) else [int(a) for a in pair]
        self.normalize = bool(normalize)

    def get_config(self):
        return {**super().get_config(), "axes": self.axes, "normalize": self.normalize}


def add(inputs, **kwargs):
    """Functional form of ``Add``."""
    return Add(**kwargs)(inputs)


def subtract(inputs, **kwargs):
    """Functional form of ``Subtract``."""
    return Subtract(**kwargs)(inputs)


def multiply(inputs, **kwargs):
    """Functional form of ``Multiply``."""
    return Multiply(**kwargs)(inputs)


def average(inputs, **kwargs):
    """Functional form of ``Average``."""
    return Average(**kwargs)(inputs)


def maximum(inputs, **kwargs):
    """Functional form of ``Maximum``."""
    return Maximum(**kwargs)(inputs)


def minimum(inputs, **kwargs):
    """Functional form of ``Minimum``."""
    return Minimum(**kwargs)(inputs)


def concatenate(inputs, axis: int = -1, **kwargs):
    """Functional form of ``Concatenate``."""
    return Concatenate(axis=axis, **kwargs)(inputs)


def dot(inputs, axes, normalize: bool = False, **kwargs):
    """Functional form of ``Dot``."""
    return Dot(axes=axes, normalize=normalize, **kwargs)(inputs)

"""`ferronet.mixed_precision`: the dtype policies, and Dense's bf16 products under
``mixed_bfloat16`` against numpy references on bf16-rounded operands."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest

import ferronet as keras
from ferronet import _core

native = pytest.mark.skipif(not _core.cpu_info()["bf16"], reason="this CPU has no bf16 instructions")


@pytest.fixture(autouse=True)
def float32_after():
    yield
    keras.mixed_precision.set_global_policy("float32")


def bf16(a) -> np.ndarray:
    """Rounds float32 values to the nearest bfloat16 (ties to even), kept as float32."""
    u = np.asarray(a, np.float32).view(np.uint32).astype(np.uint64)
    return (((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16).astype(np.uint32).view(np.float32)


def test_policies_name_their_dtypes_and_reject_the_unsupported():
    p = keras.mixed_precision.DTypePolicy("mixed_bfloat16")
    assert (p.name, p.compute_dtype, p.variable_dtype) == ("mixed_bfloat16", "bfloat16", "float32")
    assert repr(p) == '<DTypePolicy "mixed_bfloat16">'
    assert keras.mixed_precision.Policy is keras.mixed_precision.DTypePolicy
    assert keras.mixed_precision.global_policy() == keras.mixed_precision.DTypePolicy("float32")
    for name in ("mixed_float16", "float16", "float64", "bfloat16x"):
        with pytest.raises(ValueError, match="supports 'float32' and 'mixed_bfloat16'"):
            keras.mixed_precision.set_global_policy(name)
        with pytest.raises(ValueError, match="unsupported dtype policy"):
            keras.layers.Dense(3, dtype=name)


def test_layers_take_the_global_policy_when_created_and_keep_it_in_their_config():
    before = keras.layers.Dense(3)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    after = keras.layers.Dense(3)
    override = keras.layers.Dense(3, dtype="float32")
    keras.mixed_precision.set_global_policy(None)
    assert (before.compute_dtype, after.compute_dtype, override.compute_dtype) == (
        "float32",
        "bfloat16",
        "float32",
    )
    assert after.dtype == after.variable_dtype == "float32"  # Keras: `dtype` is the weights' dtype
    assert keras.layers.InputLayer(shape=(3,), dtype="int32").dtype == "int32"
    assert after.get_config()["dtype"] == "mixed_bfloat16" and "dtype" not in before.get_config()
    clone = keras.layers.Dense.from_config(after.get_config())
    assert clone.dtype_policy.name == "mixed_bfloat16"
    assert keras.layers.Dense(3, dtype=np.float32).dtype_policy.name == "float32"
    serialized = {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "mixed_bfloat16"}}
    assert keras.layers.Dense(3, dtype=serialized).compute_dtype == "bfloat16"


def dense_model(policy: str, units=(37, 21, 5)):
    keras.mixed_precision.set_global_policy(policy)
    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [keras.Input((units[0],)), keras.layers.Dense(units[1]), keras.layers.Dense(units[2])]
    )
    keras.mixed_precision.set_global_policy("float32")
    return model


@native
def test_dense_forward_is_the_product_of_bf16_operands():
    model = dense_model("mixed_bfloat16")
    x = np.random.default_rng(0).normal(size=(9, 37)).astype(np.float32)
    w1, b1, w2, b2 = model.get_weights()
    h = bf16(x).astype(np.float64) @ bf16(w1) + b1
    want = bf16(h.astype(np.float32)).astype(np.float64) @ bf16(w2) + b2
    got = model.predict(x, verbose=0)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    as_float32 = (x.astype(np.float64) @ w1 + b1) @ w2 + b2
    assert np.abs(got - as_float32).max() > 1e-3  # the rounding is visible: bf16 really ran


@native
def test_dense_gradients_are_products_of_bf16_operands():
    # One SGD step (learning rate 1) on a mean squared error: W <- W - dW.
    model = dense_model("mixed_bfloat16")
    rng = np.random.default_rng(1)
    x = rng.normal(size=(16, 37)).astype(np.float32)
    y = rng.normal(size=(16, 5)).astype(np.float32)
    w1, b1, w2, b2 = model.get_weights()
    h = (bf16(x).astype(np.float64) @ bf16(w1) + b1).astype(np.float32)
    out = (bf16(h).astype(np.float64) @ bf16(w2) + b2).astype(np.float32)
    dz2 = (2 * (out - y) / out.size).astype(np.float32)
    dw2 = bf16(h).T.astype(np.float64) @ bf16(dz2)
    dh = (bf16(dz2).astype(np.float64) @ bf16(w2).T).astype(np.float32)
    dw1 = bf16(x).T.astype(np.float64) @ bf16(dh)
    model.compile(optimizer=keras.optimizers.SGD(1.0), loss="mse")
    model.train_on_batch(x, y)
    n1, nb1, n2, nb2 = model.get_weights()
    np.testing.assert_allclose(w2 - n2, dw2, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(b2 - nb2, dz2.sum(0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(w1 - n1, dw1, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(b1 - nb1, dh.sum(0), rtol=1e-4, atol=1e-6)


def fit_digits(model, x, y, learning_rate: float, epochs: int) -> dict:
    """Trains a digits classifier with Adam on logits; returns its history."""
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model.fit(x, y, batch_size=64, epochs=epochs, verbose=0).history


@native
def test_digits_train_as_well_under_mixed_bfloat16_as_under_float32(digits):
    x, y = digits[0], digits[1]
    losses = {}
    for policy in ("float32", "mixed_bfloat16"):
        history = fit_digits(dense_model(policy, units=(64, 64, 10)), x, y, 1e-2, epochs=8)
        losses[policy] = history["loss"]
        assert history["accuracy"][-1] > 0.95, policy
    # The curves agree to within bf16's noise, epoch by epoch.
    np.testing.assert_allclose(losses["mixed_bfloat16"], losses["float32"], rtol=0.15, atol=0.01)
    assert losses["mixed_bfloat16"] != losses["float32"]


def test_without_bf16_instructions_the_policy_warns_and_computes_in_float32():
    # FERRONET_GEMM forces another kernel family, and with it the float32 fallback.
    script = """
import warnings, numpy as np, ferronet as keras
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
assert any("compute in float32" in str(w.message) for w in caught), caught
results = []
for policy in ("mixed_bfloat16", "float32"):
    keras.mixed_precision.set_global_policy(policy)
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((37,)), keras.layers.Dense(5)])
    x = np.random.default_rng(0).normal(size=(9, 37)).astype(np.float32)
    results.append(m.predict(x, verbose=0))
assert np.array_equal(results[0], results[1])
print("ok")
"""
    env_run = subprocess.run(
        [sys.executable, "-c", script],
        env={**__import__("os").environ, "FERRONET_GEMM": "matrixmultiply"},
        capture_output=True,
        text=True,
    )
    assert env_run.returncode == 0 and env_run.stdout.strip() == "ok", env_run.stderr


def test_the_warning_is_silent_where_bf16_runs():
    if not _core.cpu_info()["bf16"]:
        pytest.skip("this CPU has no bf16 instructions")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        keras.mixed_precision.set_global_policy("mixed_bfloat16")


@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_a_saved_model_keeps_its_layers_policies(tmp_path, kind):
    if kind == "dense":
        model = dense_model("mixed_bfloat16")
        x = np.random.default_rng(2).normal(size=(4, 37)).astype(np.float32)
    else:
        model = conv_model("mixed_bfloat16", 6, [(7, 3, 1, "same"), (4, 2, 1, "valid")])
        x = np.random.default_rng(2).normal(size=(4, 9, 10, 6)).astype(np.float32)
    model.save(tmp_path / "bf16.ferronet")
    loaded = keras.models.load_model(tmp_path / "bf16.ferronet")
    assert [layer.dtype_policy.name for layer in loaded.layers] == ["mixed_bfloat16", "mixed_bfloat16"]
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def patches(x: np.ndarray, k: int, stride: int = 1, pad: int = 0) -> np.ndarray:
    """im2col of NHWC images: row ``(n, oy, ox)`` holds the ``k x k x C`` inputs under the kernel
    in Keras' kernel order ``(ky, kx, c)``; ``pad`` zeros on every side."""
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    oh, ow = (xp.shape[1] - k) // stride + 1, (xp.shape[2] - k) // stride + 1
    cells = [
        xp[:, ky : ky + stride * (oh - 1) + 1 : stride, kx : kx + stride * (ow - 1) + 1 : stride]
        for ky in range(k)
        for kx in range(k)
    ]
    return np.stack(cells, axis=3).reshape(x.shape[0], oh, ow, -1)


def col2im(dp: np.ndarray, shape, k: int, stride: int = 1, pad: int = 0) -> np.ndarray:
    """The adjoint of `patches`: adds each patch row's gradient back onto its inputs."""
    n, h, w, c = shape
    dx = np.zeros((n, h + 2 * pad, w + 2 * pad, c))
    oh, ow = dp.shape[1:3]
    dp = dp.reshape(n, oh, ow, k, k, c)
    for ky in range(k):
        for kx in range(k):
            rows = slice(ky, ky + stride * (oh - 1) + 1, stride)
            cols = slice(kx, kx + stride * (ow - 1) + 1, stride)
            dx[:, rows, cols] += dp[:, :, :, ky, kx]
    return dx[:, pad : pad + h, pad : pad + w]


# (filters, kernel, stride, padding) of stacked convolutions on `channels` inputs: odd channel
# counts (the pairs take a zero channel), a partial 32-wide panel of filters, `same` padding, a
# strided first layer (the im2col path), 8 or more channels with an odd output width (the weight
# gradient pairs output columns; the last pair takes a zero), a 1x1 and a 5x5 kernel, and a
# single filter in the middle (its input gradient's grid has one channel, and stays float32).
CONV_CASES = [
    (1, [(5, 3, 1, "valid"), (33, 3, 1, "same")]),
    (6, [(7, 3, 1, "same"), (4, 2, 1, "valid")]),
    (3, [(8, 3, 2, "valid"), (5, 3, 1, "same")]),
    (10, [(33, 2, 1, "valid"), (6, 3, 1, "same")]),
    (8, [(6, 1, 1, "valid"), (1, 3, 1, "same"), (9, 5, 1, "same")]),
]


def conv_model(policy: str, channels: int, layers):
    keras.mixed_precision.set_global_policy(policy)
    keras.utils.set_random_seed(5)
    model = keras.Sequential(
        [keras.Input((9, 10, channels))]
        + [
            keras.layers.Conv2D(f, k, strides=s, padding=p, bias_initializer="glorot_uniform")
            for f, k, s, p in layers
        ]
    )
    keras.mixed_precision.set_global_policy("float32")
    return model


@native
@pytest.mark.parametrize("channels,layers", CONV_CASES)
def test_conv_forward_and_gradients_are_products_of_bf16_operands(channels, layers):
    # One SGD step (learning rate 1) on a mean squared error: W <- W - dW. The forward products
    # and the input gradients take bf16 operands, and so do the weight gradients, but for a
    # stride-1 layer on fewer than 8 channels (a first layer), whose weight gradient stays float32,
    # and a stride-1 layer's product over a grid of 1 channel (the input of its forward pass, or
    # its output gradient's for its input gradient), which does too (its pairs would be half
    # zeros).
    model = conv_model("mixed_bfloat16", channels, layers)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3, 9, 10, channels)).astype(np.float32)
    weights = model.get_weights()
    inputs, outputs = [x], []
    for (f, k, s, p), w, b in zip(layers, weights[::2], weights[1::2]):
        pad = (k - 1) // 2 if p == "same" else 0
        cols, kernel = patches(inputs[-1], k, s, pad), w.reshape(-1, f)
        if s > 1 or inputs[-1].shape[-1] > 1:
            cols, kernel = bf16(cols), bf16(kernel)
        z = (cols.astype(np.float64) @ kernel + b).astype(np.float32)
        outputs.append(z)
        inputs.append(z)
    got = model.predict(x, verbose=0)
    np.testing.assert_allclose(got, outputs[-1], rtol=1e-4, atol=1e-4)
    as_float32 = conv_model("float32", channels, layers).predict(x, verbose=0)
    assert np.abs(got - as_float32).max() > 1e-3  # the rounding is visible: bf16 really ran

    y = rng.normal(size=got.shape).astype(np.float32)
    dz = (2 * (outputs[-1] - y) / y.size).astype(np.float32)
    want = []
    for (f, k, s, p), w, layer_input in reversed(list(zip(layers, weights[::2], inputs))):
        pad = (k - 1) // 2 if p == "same" else 0
        cols = patches(layer_input, k, s, pad).reshape(-1, k * k * layer_input.shape[-1])
        dz_rows = dz.reshape(-1, f)
        rounded = s > 1 or layer_input.shape[-1] >= 8
        dw = (bf16(cols) if rounded else cols).T.astype(np.float64) @ (bf16(dz_rows) if rounded else dz_rows)
        want = [dw.reshape(w.shape), dz_rows.sum(0)] + want
        kernel = w.reshape(-1, f)
        if s > 1 or f > 1:
            dz_rows, kernel = bf16(dz_rows), bf16(kernel)
        dp = dz_rows.astype(np.float64) @ kernel.T
        dz = col2im(dp.reshape(*dz.shape[:3], -1), layer_input.shape, k, s, pad).astype(np.float32)
    model.compile(optimizer=keras.optimizers.SGD(1.0), loss="mse")
    model.train_on_batch(x, y)
    for before, after, grad in zip(weights, model.get_weights(), want):
        np.testing.assert_allclose(before - after, grad, rtol=1e-3, atol=1e-6)


@native
def test_a_digits_cnn_trains_as_well_under_mixed_bfloat16_as_under_float32(digits):
    x, y = digits[0].reshape(-1, 8, 8, 1), digits[1]
    losses = {}
    for policy in ("float32", "mixed_bfloat16"):
        keras.mixed_precision.set_global_policy(policy)
        keras.utils.set_random_seed(7)
        model = keras.Sequential(
            [
                keras.Input((8, 8, 1)),
                keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
                keras.layers.Conv2D(32, 3, activation="relu"),
                keras.layers.MaxPooling2D(),
                keras.layers.Flatten(),
                keras.layers.Dense(10),
            ]
        )
        keras.mixed_precision.set_global_policy("float32")
        history = fit_digits(model, x, y, 3e-3, epochs=6)
        losses[policy] = history["loss"]
        assert history["accuracy"][-1] > 0.95, policy
    # The curves agree to within bf16's noise, epoch by epoch.
    np.testing.assert_allclose(losses["mixed_bfloat16"], losses["float32"], rtol=0.15, atol=0.01)
    assert losses["mixed_bfloat16"] != losses["float32"]


@native
def test_bf16_convolution_predictions_do_not_depend_on_batch_size_or_threads():
    # Inference shares each padded grid between samples and writes its bf16 copy in place; the
    # sums of one sample never depend on its neighbours, nor on how many threads share them.
    threads_before = keras.get_num_threads()
    try:
        for channels, layers in CONV_CASES:
            model = conv_model("mixed_bfloat16", channels, layers)
            x = np.random.default_rng(9).normal(size=(53, 9, 10, channels)).astype(np.float32)
            want = None
            for threads in (1, 2, 3):
                keras.set_num_threads(threads)
                for batch_size in (7, 32, 53):
                    got = model.predict(x, batch_size=batch_size, verbose=0)
                    want = got if want is None else want
                    np.testing.assert_array_equal(got, want)
            np.testing.assert_array_equal(model.predict(x[13:14], verbose=0), want[13:14])
    finally:
        keras.set_num_threads(threads_before)

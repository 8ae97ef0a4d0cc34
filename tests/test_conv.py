"""Convolutional networks, normalization and dropout from Python: output shapes against note
002's formula, forward values against numpy, BatchNorm statistics, dropout scale, and a CNN on
the digits."""

import itertools
import math

import numpy as np
import pytest

import ferronet as fn
from ferronet import layers

rng = np.random.default_rng(0)


def out_size(n, f, s, d, padding):
    """Note 002 §6.4: (n + 2p - f)/s + 1 for 'valid' (p = 0, f dilated); Keras' 'same': ceil(n/s)."""
    span = d * (f - 1) + 1
    return (n - span) // s + 1 if padding == "valid" else math.ceil(n / s)


@pytest.mark.parametrize("k, s, padding", list(itertools.product([1, 2, 3, 5], [1, 2, 3], ["valid", "same"])))
def test_conv_output_shapes_match_the_formula(k, s, padding):
    model = fn.Sequential([layers.Input((11, 9, 2)), layers.Conv2D(4, k, strides=s, padding=padding)])
    assert model.output_shape == (None, out_size(11, k, s, 1, padding), out_size(9, k, s, 1, padding), 4)
    assert [w.shape for w in model.get_weights()] == [(k, k, 2, 4), (4,)]
    out = model.predict(rng.normal(size=(3, 11, 9, 2)), verbose=0)
    assert out.shape == (3, *model.output_shape[1:])


def test_dilation_and_pool_shapes():
    model = fn.Sequential([
        layers.Input((12, 12, 1)),
        layers.Conv2D(2, 3, dilation_rate=2),
        layers.MaxPooling2D(),
        layers.AveragePooling2D(pool_size=3, strides=2, padding="same"),
        layers.Conv2D(3, (2, 1)),
    ])  # fmt: skip
    shapes = [la.output_shape for la in model.layers]
    assert shapes == [(None, 8, 8, 2), (None, 4, 4, 2), (None, 2, 2, 2), (None, 1, 2, 3)]


def test_conv_forward_equals_numpy_correlation():
    model = fn.Sequential([layers.Input((6, 5, 3)), layers.Conv2D(2, 3, padding="same", activation="relu")])
    k, b = model.get_weights()
    x = rng.normal(size=(2, 6, 5, 3)).astype(np.float32)
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0))).astype(np.float64)
    want = np.zeros((2, 6, 5, 2))
    for i in range(6):
        for j in range(5):
            want[:, i, j, :] = np.einsum("nhwc,hwcf->nf", xp[:, i : i + 3, j : j + 3, :], k) + b
    np.testing.assert_allclose(model.predict(x, verbose=0), np.maximum(want, 0), rtol=1e-4, atol=1e-5)


def test_pooling_flatten_and_global_pools_match_numpy():
    x = rng.normal(size=(2, 4, 4, 3)).astype(np.float32)
    cases = [
        (layers.MaxPooling2D(2), x.reshape(2, 2, 2, 2, 2, 3).max(axis=(2, 4))),
        (layers.AveragePooling2D(2), x.reshape(2, 2, 2, 2, 2, 3).mean(axis=(2, 4))),
        (layers.GlobalAveragePooling2D(), x.mean(axis=(1, 2))),
        (layers.GlobalMaxPooling2D(), x.max(axis=(1, 2))),
        (layers.Flatten(), x.reshape(2, -1)),
        (layers.Reshape((8, 6)), x.reshape(2, 8, 6)),
    ]
    for layer, want in cases:
        model = fn.Sequential([layers.Input((4, 4, 3)), layer])
        np.testing.assert_allclose(model.predict(x, verbose=0), want, rtol=1e-6, err_msg=type(layer).__name__)


def test_batch_norm_moving_statistics_converge_to_the_data_statistics():
    x = (rng.normal(size=(512, 3)) * [2.0, 0.5, 1.0] + [1.0, -3.0, 0.0]).astype(np.float32)
    model = fn.Sequential([layers.Input((3,)), layers.BatchNormalization(momentum=0.9)])
    model.compile(optimizer="sgd", loss="mse")
    model.fit(x, np.zeros_like(x), batch_size=64, epochs=20, verbose=0)
    gamma, beta, mean, var = model.get_weights()
    np.testing.assert_allclose(mean, x.mean(0), atol=0.15)
    np.testing.assert_allclose(var, x.var(0), rtol=0.15)
    # Inference normalises with them.
    want = (x[:5] - mean) / np.sqrt(var + 1e-3) * gamma + beta
    np.testing.assert_allclose(model.predict(x[:5], verbose=0), want, rtol=1e-4, atol=1e-5)
    # Training mode normalises with the batch's own statistics.
    batch = model(x[:64], training=True)
    np.testing.assert_allclose(batch.mean(0), beta, atol=1e-4)


def test_dropout_keeps_the_expected_activation_scale():
    model = fn.Sequential([layers.Input((1000,)), layers.Dropout(0.3)])
    x = np.ones((50, 1000), dtype=np.float32)
    train = model(x, training=True)
    assert abs(train.mean() - 1.0) < 0.02
    assert abs((train == 0).mean() - 0.3) < 0.02
    np.testing.assert_array_equal(model(x), x)
    spatial = fn.Sequential([layers.Input((5, 5, 40)), layers.SpatialDropout2D(0.5)])
    out = spatial(np.ones((4, 5, 5, 40), dtype=np.float32), training=True)
    per_channel = out.reshape(4, 25, 40)
    assert np.all(per_channel.min(axis=1) == per_channel.max(axis=1))  # whole channels dropped
    noisy = fn.Sequential([layers.Input((1000,)), layers.GaussianNoise(0.5)])(x, training=True)
    assert abs((noisy - 1).std() - 0.5) < 0.02


def test_layer_normalization_matches_numpy():
    x = rng.normal(size=(4, 6)).astype(np.float32) * 3 + 1
    model = fn.Sequential([layers.Input((6,)), layers.LayerNormalization()])
    want = (x - x.mean(1, keepdims=True)) / np.sqrt(x.var(1, keepdims=True) + 1e-3)
    np.testing.assert_allclose(model.predict(x, verbose=0), want, rtol=1e-4, atol=1e-5)


def test_small_cnn_on_digits_beats_the_mlp(digits):
    x_train, y_train, x_test, y_test = digits
    fn.utils.set_random_seed(1)
    mlp = fn.Sequential([layers.Input((64,)), layers.Dense(32, activation="relu"),
                         layers.Dense(10, activation="softmax")])  # fmt: skip
    mlp.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    mlp.fit(x_train, y_train, epochs=15, verbose=0)
    cnn = fn.Sequential([
        layers.Input((8, 8, 1)),
        layers.Conv2D(32, 3, padding="same", activation="relu"),
        layers.Conv2D(32, 3, padding="same", activation="relu"),
        layers.MaxPooling2D(),
        layers.Flatten(),
        layers.Dense(64, activation="relu"),
        layers.Dense(10, activation="softmax"),
    ])  # fmt: skip
    cnn.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    cnn.fit(x_train.reshape(-1, 8, 8, 1), y_train, epochs=15, verbose=0)
    mlp_acc = mlp.evaluate(x_test, y_test, verbose=0)[1]
    cnn_acc = cnn.evaluate(x_test.reshape(-1, 8, 8, 1), y_test, verbose=0)[1]
    assert cnn_acc > mlp_acc, (cnn_acc, mlp_acc)


def test_bad_image_shapes_are_reported():
    with pytest.raises(ValueError, match="height, width, channels"):
        fn.Sequential([layers.Input((64,)), layers.Conv2D(4, 3)])
    model = fn.Sequential([layers.Input((8, 8, 1)), layers.Conv2D(4, 3)])
    with pytest.raises(ValueError, match=r"\(None, 8, 8, 1\)"):
        model.predict(np.zeros((2, 8, 8, 3)), verbose=0)
    with pytest.raises(ValueError, match="padding"):
        layers.Conv2D(4, 3, padding="full")
    with pytest.raises(ValueError, match="rate"):
        layers.Dropout(1.0)


def test_residual_block_weights_and_forward():
    inner = layers.Dense(4, activation="tanh")
    model = fn.Sequential([layers.Input((4,)), layers.Residual([inner, layers.Dense(4)])])
    res = model.layers[0]
    assert [w.shape for w in res.get_weights()] == [(4, 4), (4,), (4, 4), (4,)]
    w1, b1, w2, b2 = model.get_weights()
    x = rng.normal(size=(5, 4)).astype(np.float32)
    want = np.tanh(x @ w1 + b1) @ w2 + b2 + x
    np.testing.assert_allclose(model.predict(x, verbose=0), want, rtol=1e-5, atol=1e-6)
    proj = fn.Sequential([layers.Input((6, 6, 2)), layers.Residual([layers.Conv2D(4, 3, padding="same")],
                                                                  shortcut=layers.Conv2D(4, 1))])  # fmt: skip
    assert proj.output_shape == (None, 6, 6, 4)
    with pytest.raises(ValueError, match="shortcut"):
        fn.Sequential([layers.Input((4,)), layers.Residual([layers.Dense(3)])])


def test_deep_sigmoid_mlp_trains_far_worse_than_relu_batchnorm_residual(digits):
    """Notes 000, 002 and 004: the gradient of a deep sigmoid stack vanishes; ReLU, BatchNorm and
    residual connections keep a 20-layer network trainable."""
    x_train, y_train, x_test, y_test = digits
    fn.utils.set_random_seed(0)
    plain = fn.Sequential([layers.Input((64,))])
    for _ in range(20):
        plain.add(layers.Dense(32, activation="sigmoid"))
    plain.add(layers.Dense(10, activation="softmax"))
    deep = fn.Sequential([layers.Input((64,)), layers.Dense(32)])
    for _ in range(10):
        deep.add(layers.Residual([layers.BatchNormalization(), layers.ReLU(), layers.Dense(32),
                                  layers.BatchNormalization(), layers.ReLU(), layers.Dense(32)]))  # fmt: skip
    deep.add(layers.Dense(10, activation="softmax"))
    accs = []
    for model in (plain, deep):
        model.compile(optimizer=fn.optimizers.SGD(0.05, momentum=0.9), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])  # fmt: skip
        model.fit(x_train, y_train, epochs=10, verbose=0)
        accs.append(model.evaluate(x_test, y_test, verbose=0)[1])
    assert accs[0] < 0.5 and accs[1] > 0.9, accs


def test_group_normalization_matches_numpy():
    x = rng.normal(size=(3, 4, 4, 6)).astype(np.float32) * 2 + 1
    model = fn.Sequential([layers.Input((4, 4, 6)), layers.GroupNormalization(groups=3)])
    g = x.reshape(3, 16, 3, 2).astype(np.float64)
    mean, var = g.mean(axis=(1, 3), keepdims=True), g.var(axis=(1, 3), keepdims=True)
    want = ((g - mean) / np.sqrt(var + 1e-3)).reshape(x.shape)
    np.testing.assert_allclose(model.predict(x, verbose=0), want, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="divide"):
        fn.Sequential([layers.Input((4, 4, 6)), layers.GroupNormalization(groups=4)])


def test_preprocessing_layers_use_training_statistics_and_travel_with_the_weights():
    train = (rng.normal(size=(200, 8, 8, 3)) * [1.0, 5.0, 0.2] + [0.0, 10.0, -2.0]).astype(np.float32)
    norm = layers.Normalization()
    norm.adapt(train)  # before the model exists
    model = fn.Sequential([layers.Input((8, 8, 3)), norm])
    mean, var = model.get_weights()
    np.testing.assert_allclose(mean, train.reshape(-1, 3).mean(0), rtol=1e-5, atol=1e-5)
    out = model.predict(train, verbose=0).reshape(-1, 3)
    np.testing.assert_allclose(out.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(out.std(0), 1, rtol=1e-3)
    mm = layers.MinMaxNormalization()
    mm_model = fn.Sequential([layers.Input((3,)), mm])
    mm.adapt(np.array([[0, 10, -1], [4, 20, 1]], dtype=np.float32))  # after: updates the model
    np.testing.assert_allclose(mm_model.predict(np.array([[2, 15, 0]]), verbose=0), [[0.5, 0.5, 0.5]])
    resc = fn.Sequential([layers.Input((2,)), layers.Rescaling(1 / 255, offset=-0.5)])
    np.testing.assert_allclose(resc.predict(np.array([[0, 255]]), verbose=0), [[-0.5, 0.5]], rtol=1e-6)


def test_augmentation_is_random_in_training_and_the_identity_in_inference():
    x = rng.normal(size=(16, 6, 6, 2)).astype(np.float32)
    for layer in [layers.RandomFlip(), layers.RandomTranslation(0.2, 0.2), layers.RandomRotation(0.1),
                  layers.RandomZoom(0.2)]:  # fmt: skip
        model = fn.Sequential([layers.Input((6, 6, 2)), layer])
        np.testing.assert_array_equal(model.predict(x, verbose=0), x)
        assert not np.allclose(model(x, training=True), x), type(layer).__name__
    flip = fn.Sequential([layers.Input((6, 6, 2)), layers.RandomFlip("horizontal")])
    out = flip(x, training=True)
    mirrored = [np.array_equal(o, s[:, ::-1]) for o, s in zip(out, x)]
    same = [np.array_equal(o, s) for o, s in zip(out, x)]
    assert all(m or s for m, s in zip(mirrored, same)) and any(mirrored) and any(same)


def test_augmented_cnn_trains(digits):
    x_train, y_train, x_test, y_test = digits
    model = fn.Sequential([
        layers.Input((8, 8, 1)),
        layers.RandomTranslation(0.1, 0.1),
        layers.Conv2D(16, 3, padding="same", activation="relu"),
        layers.GroupNormalization(groups=4),
        layers.GlobalAveragePooling2D(),
        layers.Dense(10, activation="softmax"),
    ])  # fmt: skip
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    hist = model.fit(x_train.reshape(-1, 8, 8, 1), y_train, epochs=5, verbose=0)
    assert hist.history["loss"][-1] < hist.history["loss"][0]


@pytest.mark.parametrize("channels", [1, 3])
def test_first_layer_weight_gradient_equals_numpy(channels):
    """A first layer on 1 or 3 channels (the implicit path's kernel-row blocks, summed over sample
    groups: 37 samples do not divide evenly), with an even kernel and Keras' uneven 'same' padding:
    one SGD step of rate 1 subtracts exactly the gradient of the mean squared error."""
    n, h, w, f = 37, 7, 6, 4
    model = fn.Sequential([layers.Input((h, w, channels)), layers.Conv2D(f, (2, 3), padding="same")])
    model.compile(optimizer=fn.optimizers.SGD(learning_rate=1.0), loss="mse")
    k0, b0 = [v.astype(np.float64) for v in model.get_weights()]
    x = rng.normal(size=(n, h, w, channels)).astype(np.float32)
    y = rng.normal(size=(n, h, w, f)).astype(np.float32)
    # 'same' for a (2, 3) kernel pads 0 rows above, 1 below, 1 column each side.
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 1), (1, 1), (0, 0)))
    patches = np.stack([xp[:, u : u + h, v : v + w, :] for u in range(2) for v in range(3)], axis=3)
    z = np.einsum("nijkc,kcf->nijf", patches, k0.reshape(6, channels, f)) + b0
    dz = 2 * (z - y) / z.size
    dk = np.einsum("nijkc,nijf->kcf", patches, dz).reshape(k0.shape)
    model.train_on_batch(x, y)
    k1, b1 = model.get_weights()
    np.testing.assert_allclose(k0 - k1, dk, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(b0 - b1, dz.sum(axis=(0, 1, 2)), rtol=1e-4, atol=1e-6)

"""The Keras-style model API: construction, build, weights, fit/evaluate/predict and friends."""

import numpy as np
import pytest

import ferronet as fn
from ferronet import layers


def small_model(**compile_kw):
    model = fn.Sequential(
        [
            layers.Input(shape=(4,)),
            layers.Dense(5, activation="relu"),
            layers.Dense(3, activation="softmax"),
        ]
    )
    model.compile(
        **{
            "optimizer": "adam",
            "loss": "sparse_categorical_crossentropy",
            "metrics": ["accuracy"],
            **compile_kw,
        }
    )
    return model


def toy_data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 1).astype(np.int64)
    return x, y


def test_input_layer_builds_the_model_with_keras_weight_shapes_and_order():
    model = small_model()
    assert model.built
    shapes = [w.shape for w in model.get_weights()]
    assert shapes == [(4, 5), (5,), (5, 3), (3,)]
    assert all(w.dtype == np.float32 for w in model.get_weights())
    assert model.count_params() == 4 * 5 + 5 + 5 * 3 + 3
    assert model.layers[0].output_shape == (None, 5)
    assert model.output_shape == (None, 3)


def test_biases_start_at_zero_and_kernels_are_glorot_uniform():
    model = fn.Sequential([layers.Dense(200, input_shape=(300,))])
    model.build()
    kernel, bias = model.get_weights()
    limit = np.sqrt(6 / (300 + 200))
    assert np.all(bias == 0)
    assert np.abs(kernel).max() <= limit
    assert abs(kernel.var() - limit**2 / 3) < 0.05 * limit**2 / 3


def test_input_shape_keyword_and_add():
    model = fn.Sequential()
    model.add(layers.Dense(8, activation="tanh", input_shape=(4,)))
    model.add(layers.Dense(1))
    model.compile(optimizer="sgd", loss="mse")
    assert model.input_shape == (None, 4)
    assert [w.shape for w in model.get_weights()] == [(4, 8), (8,), (8, 1), (1,)]


def test_model_without_input_shape_builds_on_first_fit():
    model = fn.Sequential([layers.Dense(3, activation="softmax")])
    model.compile(loss="sparse_categorical_crossentropy")
    assert not model.built and model.get_weights() == []
    x, y = toy_data()
    model.fit(x, y, epochs=1, verbose=0)
    assert model.built and model.get_weights()[0].shape == (4, 3)


def test_add_after_build_keeps_trained_weights_of_existing_layers():
    model = small_model()
    before = model.get_weights()
    model.pop()
    model.add(layers.Dense(2, activation="softmax"))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.build()
    after = model.get_weights()
    np.testing.assert_array_equal(before[0], after[0])
    assert after[2].shape == (5, 2)


def test_get_set_weights_round_trip_and_predict_uses_them():
    model = small_model()
    weights = [np.random.default_rng(i).normal(size=w.shape) for i, w in enumerate(model.get_weights())]
    model.set_weights(weights)  # float64 accepted and converted once
    for got, want in zip(model.get_weights(), weights):
        np.testing.assert_allclose(got, want.astype(np.float32))
    x, _ = toy_data(7)
    h = np.maximum(x @ weights[0] + weights[1], 0)
    z = h @ weights[2] + weights[3]
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    np.testing.assert_allclose(model.predict(x, verbose=0), p, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(model(x), p, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(model.predict_on_batch(x), p, rtol=1e-4, atol=1e-6)


def test_layer_get_set_weights():
    model = small_model()
    dense = model.layers[0]
    kernel, bias = dense.get_weights()
    dense.set_weights([np.ones_like(kernel), np.full_like(bias, 2.0)])
    np.testing.assert_array_equal(model.get_weights()[0], 1.0)
    np.testing.assert_array_equal(model.get_weights()[1], 2.0)
    with pytest.raises(ValueError, match="shape"):
        dense.set_weights([np.ones((3, 3)), bias])


def test_predict_returns_float32_of_output_shape():
    model = small_model()
    x, _ = toy_data(50)
    out = model.predict(x, batch_size=7, verbose=0)
    assert out.shape == (50, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out.sum(1), 1.0, rtol=1e-5)


def test_fit_returns_history_with_loss_metrics_and_validation():
    model = small_model()
    x, y = toy_data(100)
    history = model.fit(x, y, epochs=3, batch_size=16, validation_split=0.2, verbose=0)
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"}
    assert all(len(v) == 3 for v in history.history.values())
    assert history.epoch == [0, 1, 2]
    assert model.history is history
    xv, yv = toy_data(30, seed=1)
    history = model.fit(x, y, epochs=2, validation_data=(xv, yv), verbose=0)
    loss, acc = model.evaluate(xv, yv, verbose=0)
    assert history.history["val_loss"][-1] == pytest.approx(loss, rel=1e-6)
    assert history.history["val_accuracy"][-1] == pytest.approx(acc)


def test_validation_split_holds_out_the_last_samples_before_shuffling():
    model = small_model()
    x, y = toy_data(100)
    hist = model.fit(x, y, epochs=1, validation_split=0.25, verbose=0, shuffle=False)
    loss = model.evaluate(x[75:], y[75:], verbose=0, return_dict=True)["loss"]
    assert hist.history["val_loss"][0] == pytest.approx(loss, rel=1e-6)


def test_evaluate_return_forms():
    model = small_model()
    x, y = toy_data()
    loss, acc = model.evaluate(x, y, verbose=0)
    assert 0 <= acc <= 1 and loss > 0
    d = model.evaluate(x, y, verbose=0, return_dict=True)
    assert set(d) == {"loss", "accuracy"}
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    assert isinstance(model.evaluate(x, y, verbose=0), float)


def test_evaluate_matches_numpy_loss_and_accuracy():
    model = small_model()
    x, y = toy_data(64)
    p = model.predict(x, verbose=0).astype(np.float64)
    want_loss = -np.mean(np.log(np.clip(p[np.arange(64), y], 1e-7, 1 - 1e-7)))
    want_acc = np.mean(p.argmax(1) == y)
    loss, acc = model.evaluate(x, y, batch_size=10, verbose=0)
    assert loss == pytest.approx(want_loss, rel=1e-5)
    assert acc == pytest.approx(want_acc)


def test_train_on_batch_and_test_on_batch():
    model = small_model()
    x, y = toy_data(32)
    before = model.test_on_batch(x, y)
    losses = [model.train_on_batch(x, y)[0] for _ in range(20)]
    assert losses[-1] < losses[0]
    assert model.optimizer.iterations == 20
    after = model.test_on_batch(x, y, return_dict=True)
    assert after["loss"] < before[0]


def test_fit_counts_optimizer_steps_and_full_batch_mode():
    model = small_model()
    x, y = toy_data(100)
    model.fit(x, y, batch_size=32, epochs=2, verbose=0)
    assert model.optimizer.iterations == 2 * 4
    model.fit(x, y, batch_size=None, epochs=3, verbose=0)
    assert model.optimizer.iterations == 8 + 3


def test_accuracy_variants_follow_the_model():
    x, y = toy_data(60)
    onehot = fn.utils.to_categorical(y, 3)
    model = small_model(loss="categorical_crossentropy")
    hist = model.fit(x, onehot, epochs=1, verbose=0)
    p = model.predict(x, verbose=0)
    assert model.evaluate(x, onehot, verbose=0)[1] == pytest.approx(np.mean(p.argmax(1) == y))
    assert "accuracy" in hist.history
    binary = fn.Sequential([layers.Input((4,)), layers.Dense(1, activation="sigmoid")])
    binary.compile(optimizer="sgd", loss="mse", metrics=["accuracy"])
    yb = (x[:, 0] > 0).astype(np.float32)
    pb = binary.predict(x, verbose=0)[:, 0]
    assert binary.evaluate(x, yb, verbose=0)[1] == pytest.approx(np.mean((pb > 0.5) == (yb > 0.5)))


def test_optimizer_and_loss_objects():
    model = small_model(
        optimizer=fn.optimizers.SGD(learning_rate=0.05, momentum=0.9, nesterov=True),
        loss=fn.losses.SparseCategoricalCrossentropy(from_logits=False),
    )
    assert model.optimizer.learning_rate == pytest.approx(0.05)
    model.optimizer.learning_rate = 0.01
    assert model.optimizer.learning_rate == pytest.approx(0.01)
    x, y = toy_data()
    model.fit(x, y, verbose=0)
    assert model.optimizer.get_config()["momentum"] == 0.9


def test_from_logits_trains_with_a_linear_output():
    model = fn.Sequential([layers.Input((4,)), layers.Dense(16, activation="relu"), layers.Dense(3)])
    model.compile(
        optimizer=fn.optimizers.Adam(0.01),
        loss=fn.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    x, y = toy_data(200)
    hist = model.fit(x, y, epochs=30, verbose=0)
    assert hist.history["accuracy"][-1] > 0.9


def test_activation_layer_after_dense():
    model = fn.Sequential([layers.Input((4,)), layers.Dense(3), layers.Activation("softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x, _ = toy_data(5)
    w, b = model.get_weights()
    z = x @ w + b
    p = np.exp(z - z.max(1, keepdims=True))
    np.testing.assert_allclose(model.predict(x, verbose=0), p / p.sum(1, keepdims=True), rtol=1e-5)


def test_num_threads_round_trip():
    n = fn.get_num_threads()
    try:
        fn.set_num_threads(1)
        assert fn.get_num_threads() == 1
        fn.set_num_threads(2)
        assert fn.get_num_threads() == 2
    finally:
        fn.set_num_threads(n)
    with pytest.raises(ValueError):
        fn.set_num_threads(0)


def test_verbose_modes(capsys):
    model = small_model()
    x, y = toy_data(64)
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    assert capsys.readouterr().out == ""
    model.fit(x, y, epochs=2, batch_size=16, verbose=2)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Epoch 1/2" and out[1].startswith("4/4 - ") and "loss:" in out[1]
    assert len(out) == 4
    model.fit(x, y, epochs=1, batch_size=16)  # verbose="auto" means 1: a bar
    out = capsys.readouterr().out
    assert "Epoch 1/1" in out and "━" in out and "accuracy:" in out and "/step" in out


def test_summary_lists_layers_and_total(capsys):
    model = small_model()
    model.summary()
    out = capsys.readouterr().out
    assert "Dense" in out and "(None, 5)" in out and "Total params: 43" in out


def test_to_categorical():
    np.testing.assert_array_equal(fn.utils.to_categorical([0, 2], 3), [[1, 0, 0], [0, 0, 1]])
    with pytest.raises(ValueError):
        fn.utils.to_categorical([0, 3], 3)

"""Inputs with unknown dimensions (``keras.Input(shape=(None, None, 3))``): each call's data sets
their size, as Keras does for fully convolutional models and variable-length sequences."""

import numpy as np
import pytest

import ferronet as fn
from ferronet import layers

RNG = np.random.default_rng(0)


def images(n, h, w, c=2):
    return RNG.random((n, h, w, c), dtype=np.float32)


def fully_convolutional(shape):
    inp = fn.Input(shape=shape, name="image")
    h = layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inp)
    h = layers.MaxPooling2D(2, name="pool")(h)
    out = layers.Dense(3, activation="softmax", name="head")(layers.GlobalAveragePooling2D(name="gap")(h))
    return fn.Model(inp, out)


def test_symbolic_shapes_keep_none_through_the_layers():
    model = fully_convolutional((None, None, 2))
    assert model.get_layer("conv").output.shape == (None, None, None, 4)
    assert model.get_layer("pool").output.shape == (None, None, None, 4)
    assert model.output.shape == (None, 3)
    seq = fn.Input(shape=(None,), dtype="int32")
    assert (seq.shape, seq.dtype) == ((None, None), "int32")


def test_each_size_predicts_as_a_model_built_for_that_size():
    model = fully_convolutional((None, None, 2))
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(images(16, 8, 8), RNG.integers(0, 3, 16), epochs=1, batch_size=8, verbose=0)
    for h, w in [(12, 10), (5, 7), (12, 10)]:
        fixed = fully_convolutional((h, w, 2))
        fixed.set_weights(model.get_weights())
        x = images(3, h, w)
        np.testing.assert_array_equal(model.predict(x, verbose=0), fixed.predict(x, verbose=0))
    # Training and evaluation on other sizes.
    model.fit(images(8, 6, 6), RNG.integers(0, 3, 8), epochs=1, verbose=0)
    assert np.isfinite(model.evaluate(images(4, 9, 11), np.zeros(4), verbose=0)[0])


def test_known_dimensions_still_have_to_match():
    model = fully_convolutional((None, None, 2))
    with pytest.raises(ValueError, match=r"\(None, None, None, 2\)"):
        model.predict(images(2, 8, 8, 3), verbose=0)


def test_a_weight_sized_by_an_unknown_dimension_is_refused_at_the_call():
    with pytest.raises(ValueError, match="None"):
        layers.Dense(2)(fn.Input(shape=(None,)))
    with pytest.raises(ValueError, match="None"):
        layers.Dense(2)(layers.Flatten()(fn.Input(shape=(None, 3))))


def test_save_and_load_keep_the_unknown_dimensions(tmp_path):
    model = fully_convolutional((None, None, 2))
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(images(8, 8, 8), RNG.integers(0, 3, 8), epochs=1, verbose=0)
    model.save(tmp_path / "m.ferronet")
    loaded = fn.models.load_model(tmp_path / "m.ferronet")
    assert loaded.input.shape == (None, None, None, 2)
    x = images(2, 7, 9)
    np.testing.assert_array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))


def test_a_layer_built_for_unknown_sizes_runs_on_any_size_of_data():
    conv = layers.Conv2D(2, 3, padding="same")
    conv(fn.Input(shape=(None, None, 1)))
    assert conv(images(2, 5, 7, 1)).shape == (2, 5, 7, 2)
    assert conv(images(1, 9, 4, 1)).shape == (1, 9, 4, 2)
    dense = layers.Dense(3)
    dense(np.ones((2, 4), np.float32))
    with pytest.raises(ValueError, match="incompatible"):
        dense(np.ones((2, 5), np.float32))


def test_sequential_with_unknown_dimensions(tmp_path):
    model = fn.Sequential(
        [
            fn.Input((None, None, 1)),
            layers.Conv2D(3, 3, padding="same"),
            layers.GlobalMaxPooling2D(),
            layers.Dense(2),
        ]
    )
    assert model.input_shape == (None, None, None, 1)
    assert model.predict(images(2, 6, 9, 1), verbose=0).shape == (2, 2)
    model.compile("sgd", "mse")
    model.fit(images(4, 5, 5, 1), np.zeros((4, 2), np.float32), verbose=0)
    model.save(tmp_path / "s.ferronet")
    loaded = fn.models.load_model(tmp_path / "s.ferronet")
    x = images(2, 7, 3, 1)
    np.testing.assert_array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))
    with pytest.raises(ValueError, match="None"):
        fn.Sequential([fn.Input((None,)), layers.Dense(2)])

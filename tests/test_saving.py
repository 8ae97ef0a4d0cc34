"""Saving and loading whole models and weights: bit-identical predictions, resumed training,
and clear errors for missing, truncated or foreign files."""

import numpy as np
import pytest

import ferronet as fn
from ferronet import layers

rng = np.random.default_rng(0)


def rich_model():
    norm = layers.Normalization()
    norm.adapt(rng.normal(size=(50, 6, 6, 2)) * 3 + 1)
    model = fn.Sequential([
        layers.Input((6, 6, 2)),
        norm,
        layers.Conv2D(4, 3, padding="same", kernel_regularizer=fn.regularizers.L2(1e-3)),
        layers.BatchNormalization(),
        layers.PReLU(),
        layers.Residual([layers.Conv2D(4, 3, padding="same", activation="relu"), layers.Conv2D(4, 1)]),
        layers.MaxPooling2D(),
        layers.Flatten(),
        layers.Dropout(0.1),
        layers.Dense(3, activation="softmax"),
    ])  # fmt: skip
    model.compile(optimizer=fn.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy", fn.metrics.SparseTopKCategoricalAccuracy(k=2)])  # fmt: skip
    return model


X = rng.normal(size=(40, 6, 6, 2)).astype(np.float32)
Y = rng.integers(0, 3, size=40)


def test_save_and_load_model_predicts_bit_identically(tmp_path):
    model = rich_model()
    model.fit(X, Y, epochs=2, verbose=0)
    path = tmp_path / "model.ferronet"
    model.save(path)
    loaded = fn.models.load_model(path)
    np.testing.assert_array_equal(loaded.predict(X, verbose=0), model.predict(X, verbose=0))
    assert [type(la).__name__ for la in loaded.layers] == [type(la).__name__ for la in model.layers]
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert loaded.optimizer.iterations == model.optimizer.iterations
    assert loaded.metrics_names == model.metrics_names
    # Any file name works, ".keras" included.
    model.save(tmp_path / "model.keras")
    assert fn.models.load_model(tmp_path / "model.keras").count_params() == model.count_params()


def test_loaded_model_resumes_training_as_if_never_interrupted(tmp_path):
    def make():
        fn.utils.set_random_seed(5)
        body = [layers.Conv2D(3, 3), layers.BatchNormalization(), layers.Flatten(), layers.Dropout(0.3)]
        m = fn.Sequential([layers.Input((6, 6, 2)), *body, layers.Dense(3, activation="softmax")])
        m.compile(optimizer=fn.optimizers.Nadam(0.01), loss="sparse_categorical_crossentropy")
        return m

    straight = make()
    straight.fit(X, Y, epochs=3, batch_size=8, verbose=0)
    first = make()
    first.fit(X, Y, epochs=2, batch_size=8, verbose=0)
    first.save(tmp_path / "ckpt.ferronet")
    resumed = fn.models.load_model(tmp_path / "ckpt.ferronet")
    resumed.fit(X, Y, epochs=1, batch_size=8, verbose=0)
    for a, b in zip(resumed.get_weights(), straight.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_config_round_trip():
    model = rich_model()
    again = fn.Sequential.from_config(model.get_config())
    assert again.get_config()["layers"] == model.get_config()["layers"]


def test_bad_files_raise_clear_errors(tmp_path):
    model = rich_model()
    path = tmp_path / "m.ferronet"
    model.save(path)
    data = path.read_bytes()
    (tmp_path / "truncated").write_bytes(data[: len(data) // 2])
    (tmp_path / "foreign").write_bytes(b"PK\x03\x04 not a model at all")
    for name in ("truncated", "foreign"):
        with pytest.raises(ValueError, match="not a valid weights file"):
            fn.models.load_model(tmp_path / name)
        with pytest.raises(ValueError, match="not a valid weights file"):
            model.load_weights(tmp_path / name)
    with pytest.raises(FileNotFoundError):
        fn.models.load_model(tmp_path / "missing.ferronet")
    model.save_weights(tmp_path / "w.safetensors")
    with pytest.raises(ValueError, match="not a ferronet model file"):
        fn.models.load_model(tmp_path / "w.safetensors")
    other = fn.Sequential([layers.Input((3,)), layers.Dense(2)])
    with pytest.raises(ValueError, match="does not match"):
        other.load_weights(tmp_path / "w.safetensors")


def test_failed_save_keeps_the_previous_file(tmp_path):
    model = rich_model()
    path = tmp_path / "keep.ferronet"
    model.save(path)
    before = path.read_bytes()
    with pytest.raises(FileExistsError):
        model.save(path, overwrite=False)
    with pytest.raises(OSError):
        model.save(tmp_path / "no-such-dir" / "x.ferronet")
    assert path.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_weights_round_trip_between_models_built_alike(tmp_path):
    a, b = rich_model(), rich_model()
    a.save_weights(tmp_path / "w")
    b.load_weights(tmp_path / "w")
    np.testing.assert_array_equal(a.predict(X, verbose=0), b.predict(X, verbose=0))

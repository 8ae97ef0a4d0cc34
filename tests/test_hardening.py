"""Hardening: every layer survives save/load, damaged files of every kind are refused, models are
independent across threads, repeated calls do not grow the process."""

import json
import os
import threading

import numpy as np
import pytest

import ferronet as fn
from ferronet import _core, layers

rng = np.random.default_rng(0)


def image_model(*body):
    return fn.Sequential([layers.Input((6, 6, 2)), *body, layers.Flatten(), layers.Dense(2)])


def flat_model(*body):
    return fn.Sequential([layers.Input((6,)), *body, layers.Dense(2)])


def merge_model(merge):
    """A single-input Functional model whose hidden layer and input meet in ``merge``."""
    x = layers.Input((6,))
    h = layers.Dense(6, activation="tanh")(x)
    return fn.Model(x, layers.Dense(2)(merge([h, x])))


def adapted(layer, shape):
    layer.adapt(rng.normal(size=(20, *shape)) * 2 + 1)
    return layer


EVERY_LAYER = {
    "Dense": lambda: flat_model(layers.Dense(4, activation="gelu", kernel_regularizer="l2")),
    "Activation": lambda: flat_model(layers.Activation("softsign")),
    "ReLU": lambda: flat_model(layers.ReLU(negative_slope=0.1)),
    "LeakyReLU": lambda: flat_model(layers.LeakyReLU()),
    "Softmax": lambda: flat_model(layers.Softmax(temperature=2.0)),
    "PReLU": lambda: flat_model(layers.PReLU()),
    "Conv2D": lambda: image_model(layers.Conv2D(3, 3, strides=2, padding="same", dilation_rate=1)),
    "MaxPooling2D": lambda: image_model(layers.MaxPooling2D()),
    "AveragePooling2D": lambda: image_model(layers.AveragePooling2D(3, strides=2, padding="same")),
    "GlobalAveragePooling2D": lambda: image_model(layers.GlobalAveragePooling2D()),
    "GlobalMaxPooling2D": lambda: image_model(layers.GlobalMaxPooling2D()),
    "Reshape": lambda: flat_model(layers.Reshape((3, 2)), layers.Flatten()),
    "Flatten": lambda: image_model(layers.Flatten()),
    "Dropout": lambda: flat_model(layers.Dropout(0.3)),
    "SpatialDropout2D": lambda: image_model(layers.SpatialDropout2D(0.3)),
    "GaussianNoise": lambda: flat_model(layers.GaussianNoise(0.1)),
    "BatchNormalization": lambda: image_model(layers.BatchNormalization()),
    "LayerNormalization": lambda: flat_model(layers.LayerNormalization()),
    "GroupNormalization": lambda: image_model(layers.GroupNormalization(groups=2)),
    "Residual": lambda: flat_model(layers.Residual([layers.Dense(6, activation="relu")])),
    "Rescaling": lambda: flat_model(layers.Rescaling(0.5, 1.0)),
    "Normalization": lambda: flat_model(adapted(layers.Normalization(), (6,))),
    "MinMaxNormalization": lambda: image_model(adapted(layers.MinMaxNormalization(), (6, 6, 2))),
    "RandomFlip": lambda: image_model(layers.RandomFlip()),
    "RandomTranslation": lambda: image_model(layers.RandomTranslation(0.1, 0.2)),
    "RandomRotation": lambda: image_model(layers.RandomRotation(0.05)),
    "RandomZoom": lambda: image_model(layers.RandomZoom(0.1)),
    "Identity": lambda: flat_model(layers.Identity()),
    "Add": lambda: merge_model(layers.Add()),
    "Subtract": lambda: merge_model(layers.Subtract()),
    "Multiply": lambda: merge_model(layers.Multiply()),
    "Average": lambda: merge_model(layers.Average()),
    "Maximum": lambda: merge_model(layers.Maximum()),
    "Minimum": lambda: merge_model(layers.Minimum()),
    "Concatenate": lambda: merge_model(layers.Concatenate()),
    "Dot": lambda: merge_model(layers.Dot(axes=1, normalize=True)),
}


def test_the_list_covers_every_layer_class():
    abstract = {"Layer", "InputLayer", "Input", "Variable"}
    classes = {n for n in layers.__all__ if n[0].isupper()}
    assert classes - abstract == set(EVERY_LAYER)


@pytest.mark.parametrize("name", sorted(EVERY_LAYER))
def test_every_layer_round_trips_through_save_and_load(name, tmp_path):
    model = EVERY_LAYER[name]()
    model.compile(optimizer="adam", loss="mse")
    shape = model.input_shape[1:]
    x = rng.normal(size=(12, *shape)).astype(np.float32)
    model.fit(x, rng.normal(size=(12, 2)), epochs=2, verbose=0)
    model.save(tmp_path / "m")
    loaded = fn.models.load_model(tmp_path / "m")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert loaded.get_config()["layers"] == model.get_config()["layers"]


@pytest.fixture
def saved(tmp_path):
    model = EVERY_LAYER["Conv2D"]()
    model.compile(optimizer="adam", loss="mse")
    path = tmp_path / "good.ferronet"
    model.save(path)
    return model, path


def test_files_truncated_at_any_offset_are_refused(saved, tmp_path):
    model, path = saved
    data = path.read_bytes()
    for cut in [0, 1, 7, 8, 9, 50, len(data) // 3, len(data) // 2, len(data) - 1]:
        bad = tmp_path / f"cut{cut}"
        bad.write_bytes(data[:cut])
        with pytest.raises(ValueError):
            fn.models.load_model(bad)
        with pytest.raises(ValueError):
            model.load_weights(bad)


def test_random_bytes_json_and_other_tools_files_are_refused(saved, tmp_path):
    model, _ = saved
    before = model.get_weights()
    random_bytes = tmp_path / "random"
    random_bytes.write_bytes(rng.integers(0, 256, size=4096, dtype=np.uint8).tobytes())
    json_only = tmp_path / "config.json"
    json_only.write_text(json.dumps(model.get_config()))
    other_tool = tmp_path / "other.safetensors"
    _core.write_tensor_file(
        str(other_tool), [("embeddings.weight", np.ones((3, 4), np.float32))], {"format": "pt"}
    )
    for path in (random_bytes, json_only):
        with pytest.raises(ValueError, match="not a valid weights file"):
            fn.models.load_model(path)
    with pytest.raises(ValueError, match="not a ferronet model"):
        fn.models.load_model(other_tool)
    with pytest.raises(ValueError, match="does not match"):
        model.load_weights(other_tool)
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)


def test_predict_runs_while_another_model_fits():
    x = rng.normal(size=(3000, 32)).astype(np.float32)
    y = rng.integers(0, 4, size=3000)
    trainer = fn.Sequential([layers.Input((32,)), layers.Dense(64, activation="relu"), layers.Dense(4)])
    trainer.compile(optimizer="adam", loss=fn.losses.SparseCategoricalCrossentropy(from_logits=True))
    server = fn.Sequential([layers.Input((32,)), layers.Dense(4)])
    want = server.predict(x, verbose=0)
    t = threading.Thread(target=trainer.fit, args=(x, y), kwargs={"epochs": 3, "verbose": 0})
    t.start()
    outs = [server.predict(x, verbose=0) for _ in range(10)]
    t.join()
    for out in outs:
        np.testing.assert_array_equal(out, want)


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc")
def test_repeated_fit_and_predict_do_not_grow_the_process():
    x = rng.normal(size=(512, 64)).astype(np.float32)
    y = rng.integers(0, 10, size=512)
    model = fn.Sequential([layers.Input((64,)), layers.Dense(128, activation="relu"), layers.Dropout(0.1),
                           layers.BatchNormalization(), layers.Dense(10, activation="softmax")])  # fmt: skip
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    for _ in range(5):  # warm-up: buffers, allocator pools
        model.fit(x, y, epochs=1, verbose=0)
        model.predict(x, verbose=0)
    start = _rss_mb()
    for _ in range(50):
        model.fit(x, y, epochs=1, verbose=0)
        model.predict(x, verbose=0)
        model.evaluate(x, y, verbose=0)
    assert _rss_mb() - start < 10

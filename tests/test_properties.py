"""Property-based tests: random layer stacks, shapes and inputs through build, fit, predict,
save and load, asserting no crash and consistent shapes."""

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import ferronet as fn  # noqa: E402
from ferronet import layers  # noqa: E402

ACTIVATIONS = ["linear", "relu", "tanh", "sigmoid", "gelu", "swish", "elu", "softplus", "mish"]

dense_layer = st.builds(
    lambda units, act: layers.Dense(units, activation=act),
    st.integers(1, 12),
    st.sampled_from(ACTIVATIONS),
)
other_layer = st.sampled_from(["dropout", "bn", "ln", "noise", "prelu", "leaky"])


def make(kind):
    return {
        "dropout": lambda: layers.Dropout(0.2),
        "bn": layers.BatchNormalization,
        "ln": layers.LayerNormalization,
        "noise": lambda: layers.GaussianNoise(0.1),
        "prelu": layers.PReLU,
        "leaky": layers.LeakyReLU,
    }[kind]()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    features=st.integers(1, 10),
    rows=st.integers(1, 40),
    stack=st.lists(st.one_of(dense_layer, other_layer), min_size=0, max_size=5),
    out=st.integers(1, 5),
    batch=st.one_of(st.none(), st.integers(1, 50)),
    scale=st.floats(1e-3, 1e3),
    seed=st.integers(0, 2**31),
)
def test_random_stacks_build_fit_predict_save_and_load(
    tmp_path_factory, features, rows, stack, out, batch, scale, seed
):
    r = np.random.default_rng(seed)
    body = [make(s) if isinstance(s, str) else s for s in stack]
    model = fn.Sequential([layers.Input((features,)), *body, layers.Dense(out)])
    model.compile(optimizer="adam", loss="mse", metrics=["mae"])
    x = (r.normal(size=(rows, features)) * scale).astype(np.float32)
    y = r.normal(size=(rows, out)).astype(np.float32)
    hist = model.fit(x, y, batch_size=batch, epochs=2, verbose=0)
    assert len(hist.history["loss"]) == 2
    pred = model.predict(x, verbose=0)
    assert pred.shape == (rows, out) and pred.dtype == np.float32
    path = tmp_path_factory.mktemp("prop") / "m.ferronet"
    model.save(path)
    loaded = fn.models.load_model(path)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), pred)


@settings(max_examples=25, deadline=None)
@given(
    h=st.integers(3, 12),
    w=st.integers(3, 12),
    c=st.integers(1, 3),
    k=st.integers(1, 3),
    s=st.integers(1, 3),
    padding=st.sampled_from(["valid", "same"]),
    pool=st.booleans(),
)
def test_random_conv_shapes_are_consistent(h, w, c, k, s, padding, pool):
    stack = [layers.Conv2D(2, k, strides=s, padding=padding, activation="relu")]
    if pool:
        stack.append(layers.MaxPooling2D(padding="same"))
    model = fn.Sequential([layers.Input((h, w, c)), *stack, layers.GlobalAveragePooling2D(), layers.Dense(3)])
    x = np.random.default_rng(0).normal(size=(4, h, w, c)).astype(np.float32)
    assert model.predict(x, verbose=0).shape == (4, 3)
    model.compile(optimizer="sgd", loss="mse")
    model.fit(x, np.zeros((4, 3)), epochs=1, verbose=0)

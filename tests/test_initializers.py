"""Initializer statistics against their published definitions (note 004), on large kernels."""

import numpy as np
import pytest

import ferronet as fn
from ferronet import initializers as I  # noqa: N812
from ferronet import layers

FAN_IN, FAN_OUT = 400, 300


def kernel(init):
    model = fn.Sequential([layers.Input((FAN_IN,)), layers.Dense(FAN_OUT, kernel_initializer=init)])
    return model.get_weights()[0].astype(np.float64)


@pytest.mark.parametrize(
    "init, var, bound",
    [
        ("glorot_uniform", 2 / (FAN_IN + FAN_OUT), np.sqrt(6 / (FAN_IN + FAN_OUT))),
        ("he_uniform", 2 / FAN_IN, np.sqrt(6 / FAN_IN)),
        ("lecun_uniform", 1 / FAN_IN, np.sqrt(3 / FAN_IN)),
        ("glorot_normal", 2 / (FAN_IN + FAN_OUT), 2 * np.sqrt(2 / (FAN_IN + FAN_OUT)) / 0.8796256610342398),
        ("he_normal", 2 / FAN_IN, 2 * np.sqrt(2 / FAN_IN) / 0.8796256610342398),
        ("lecun_normal", 1 / FAN_IN, 2 * np.sqrt(1 / FAN_IN) / 0.8796256610342398),
    ],
)
def test_variance_scaling(init, var, bound):
    w = kernel(init)
    assert abs(w.mean()) < 4 * np.sqrt(var / w.size)
    assert w.var() == pytest.approx(var, rel=0.03)
    assert np.abs(w).max() <= bound * (1 + 1e-6)


def test_random_normal_uniform_and_constants():
    w = kernel(I.RandomNormal(mean=1.0, stddev=0.2))
    assert w.mean() == pytest.approx(1.0, abs=0.005) and w.std() == pytest.approx(0.2, rel=0.02)
    w = kernel(I.RandomUniform(minval=-0.3, maxval=0.1))
    assert w.min() >= -0.3 and w.max() <= 0.1 and w.mean() == pytest.approx(-0.1, abs=0.005)
    assert np.all(kernel("zeros") == 0) and np.all(kernel("ones") == 1)
    assert np.all(kernel(I.Constant(0.7)) == np.float32(0.7))


def test_seeded_initializer_is_reproducible_and_independent_of_the_global_seed():
    fn.utils.set_random_seed(1)
    a = kernel(I.HeNormal(seed=42))
    fn.utils.set_random_seed(2)
    b = kernel(I.HeNormal(seed=42))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, kernel(I.HeNormal(seed=43)))


def test_bias_initializer_and_names():
    model = fn.Sequential([layers.Input((3,)), layers.Dense(4, bias_initializer=I.Constant(0.5))])
    np.testing.assert_array_equal(model.get_weights()[1], 0.5)
    for name in ["glorot_uniform", "GlorotNormal", "he_normal", "HeUniform", "lecun_normal", "zeros", "Ones"]:
        assert isinstance(I.get(name), I.Initializer)
    with pytest.raises(ValueError, match="Unknown initializer"):
        I.get("xavier_magic")
    cfg = I.RandomNormal(0.1, 0.3, seed=5).get_config()
    assert I.RandomNormal.from_config(cfg).get_config() == cfg

import numpy as np
import pytest

import ferronet as fn


@pytest.fixture
def digits():
    """The bundled digits, shuffled, split 80/20 and z-scored with training statistics."""
    x, y = fn.datasets.load_digits()
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order].astype(np.float32), y[order].astype(np.int64)
    split = int(0.8 * len(x))
    mean, std = x[:split].mean(0), x[:split].std(0) + 1e-6
    x = (x - mean) / std
    return x[:split], y[:split], x[split:], y[split:]


@pytest.fixture(autouse=True)
def _seed():
    fn.utils.set_random_seed(1234)
    yield

"""Schedules at chosen steps against their formulas (note 004, note 002 §4.5), and the rate the
training loop actually used, recorded in History."""

import math

import numpy as np
import pytest

import ferronet as fn
from ferronet import layers
from ferronet.optimizers import schedules as S  # noqa: N812


def test_exponential_and_piecewise():
    s = S.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)
    assert [s(t) for t in (0, 5, 10, 20)] == pytest.approx([0.1, 0.1 * 0.5**0.5, 0.05, 0.025])
    s = S.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5, staircase=True)
    assert [s(t) for t in (9, 10, 19)] == pytest.approx([0.1, 0.05, 0.05])
    p = S.PiecewiseConstantDecay([100, 200], [1.0, 0.5, 0.1])
    assert [p(t) for t in (0, 100, 101, 200, 201)] == [1.0, 1.0, 0.5, 0.5, 0.1]


def test_polynomial():
    s = S.PolynomialDecay(1.0, decay_steps=10, end_learning_rate=0.1, power=2)
    assert [s(t) for t in (0, 5, 10, 50)] == pytest.approx([1.0, 0.9 * 0.25 + 0.1, 0.1, 0.1])


def test_cosine_with_warmup():
    s = S.CosineDecay(1.0, decay_steps=100, alpha=0.1)
    for t in (0, 25, 50, 100, 150):
        tt = min(t, 100) / 100
        assert s(t) == pytest.approx(0.9 * 0.5 * (1 + math.cos(math.pi * tt)) + 0.1)
    w = S.CosineDecay(0.0, decay_steps=10, warmup_target=1.0, warmup_steps=5)
    assert [w(t) for t in (0, 1, 5, 10, 15)] == pytest.approx([0.0, 0.2, 1.0, 0.5, 0.0], abs=1e-12)


def test_cosine_restarts():
    s = S.CosineDecayRestarts(1.0, first_decay_steps=10, t_mul=2.0, m_mul=0.5)
    assert s(0) == pytest.approx(1.0)
    assert s(10) == pytest.approx(0.5)  # restart, peak halved, period 20
    assert s(20) == pytest.approx(0.5 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert s(30) == pytest.approx(0.25)


def test_cyclical_triangular():
    s = S.CyclicalLearningRate(0.1, 1.0, step_size=4)
    assert [s(t) for t in (0, 2, 4, 6, 8, 12)] == pytest.approx([0.1, 0.55, 1.0, 0.55, 0.1, 1.0])


def test_linear_warmup_follows_note_002():
    s = S.LinearWarmup(0.2, warmup_epochs=4)
    # 3 steps per epoch: epoch i of 4 uses i * 0.2 / 4, then 0.2.
    assert [s(e * 3 + 2, steps_per_epoch=3) for e in range(6)] == pytest.approx(
        [0.05, 0.1, 0.15, 0.2, 0.2, 0.2]
    )
    chained = S.LinearWarmup(S.ExponentialDecay(0.2, 3, 0.5), warmup_epochs=2)
    assert chained(6, steps_per_epoch=3) == pytest.approx(0.2)
    assert chained(9, steps_per_epoch=3) == pytest.approx(0.1)


def test_history_records_the_rate_used_each_epoch():
    x = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    y = x.sum(1)
    model = fn.Sequential([layers.Input((3,)), layers.Dense(1)])
    warm = S.LinearWarmup(0.1, warmup_epochs=4)
    model.compile(optimizer=fn.optimizers.SGD(warm), loss="mse")
    hist = model.fit(x, y, batch_size=10, epochs=6, verbose=0)
    assert hist.history["learning_rate"] == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1, 0.1])


def test_bad_schedules():
    with pytest.raises(ValueError):
        S.ExponentialDecay(0.1, decay_steps=0, decay_rate=0.5)
    with pytest.raises(ValueError, match="one more"):
        S.PiecewiseConstantDecay([1, 2], [0.1])
    with pytest.raises(ValueError, match="warmup_epochs"):
        S.LinearWarmup(0.1, warmup_epochs=0)

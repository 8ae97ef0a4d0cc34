"""The engine's kernel choices never change results: every thread count (in float32 and under
mixed_bfloat16), the portable SIMD path against the wider one, and both wait policies of the
idle workers train to bit-identical weights. Each variant trains in its own process, since the
thread pool's size and the kernels are fixed per process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from ferronet import _core

# A network through every kernel family: implicit-GEMM convolutions (stride 1; on 3 channels, the
# weight gradient summed in sample groups; on 16 and 40, per kernel cell), a patch-matrix
# convolution (stride 2), batch normalization (chunked statistics), pooling, the dense GEMMs, a
# dropout mask large enough to be drawn in parallel chunks, and an Adam sweep.
SCRIPT = """
import json, sys
import numpy as np
import pytest
import ferronet as fn
fn.set_num_threads(int(sys.argv[1]))
fn.mixed_precision.set_global_policy(sys.argv[2])
fn.utils.set_random_seed(3)
L = fn.layers
rng = np.random.default_rng(0)
x = rng.normal(size=(96, 12, 12, 3)).astype(np.float32)
y = rng.integers(0, 4, size=96)
model = fn.Sequential([
    L.Input((12, 12, 3)),
    L.Conv2D(16, 3, padding="same"), L.BatchNormalization(), L.ReLU(),
    L.Conv2D(40, 3, padding="same", activation="relu"), L.MaxPooling2D(2),
    L.Conv2D(8, 2, padding="valid", activation="tanh"), L.Conv2D(8, 2, strides=2, activation="tanh"),
    L.Flatten(), L.Dense(520, activation="relu"), L.Dropout(0.3), L.Dense(4),
])
model.compile(optimizer=fn.optimizers.Adam(1e-2),
              loss=fn.losses.SparseCategoricalCrossentropy(from_logits=True))
model.fit(x, y, batch_size=32, epochs=2, verbose=0)
print(json.dumps([w.ravel().tolist() for w in model.get_weights()]))
"""


def train(threads: int, policy: str = "float32", **env: str) -> list[np.ndarray]:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(threads), policy],
        env={**os.environ, **env},
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [np.array(w, dtype=np.float32) for w in json.loads(out)]


def assert_identical(a: list[np.ndarray], b: list[np.ndarray]) -> None:
    assert len(a) == len(b)
    for i, (u, v) in enumerate(zip(a, b)):
        assert np.array_equal(u, v), f"weight {i} differs (max {np.abs(u - v).max()})"


def test_every_thread_count_trains_to_identical_weights():
    one = train(1)
    assert_identical(one, train(2))
    assert_identical(one, train(3))


@pytest.mark.skipif(not _core.cpu_info()["bf16"], reason="this CPU has no bf16 instructions")
def test_mixed_bfloat16_trains_to_identical_weights_at_every_thread_count():
    one = train(1, "mixed_bfloat16")
    assert_identical(one, train(2, "mixed_bfloat16"))
    assert_identical(one, train(3, "mixed_bfloat16"))
    as_float32 = train(1)
    # The first convolution's kernel and the last Dense kernel: bf16 really ran in both.
    assert not np.array_equal(one[0], as_float32[0]) and not np.array_equal(one[-2], as_float32[-2])


def test_portable_simd_path_trains_to_identical_weights():
    assert_identical(train(2), train(2, FERRONET_SIMD="baseline"))


def test_awake_and_sleeping_workers_train_to_identical_weights():
    # "active" keeps the idle workers looking for tasks during fit; "passive" lets them sleep.
    assert_identical(train(2, FERRONET_WAIT_POLICY="active"), train(2, FERRONET_WAIT_POLICY="passive"))


def test_an_unknown_wait_policy_is_named_in_a_warning_and_ignored():
    script = (
        "import warnings\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    import ferronet\n"
        "print([str(w.message) for w in caught if w.category is RuntimeWarning])\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "FERRONET_WAIT_POLICY": "spin"},
        check=True,
        capture_output=True,
        text=True,
    )
    assert 'FERRONET_WAIT_POLICY="spin" is neither "active" nor "passive"' in run.stdout


def kernels_picked(**env: str) -> str:
    script = "from ferronet import _core; print(_core.cpu_info()['kernels'])"
    run = subprocess.run(
        [sys.executable, "-c", script], env={**os.environ, **env}, check=True, capture_output=True, text=True
    )
    return run.stdout.strip()


def test_avx2_kernels_train_alike_and_the_same_at_every_thread_count():
    # The AVX2 in-place kernels add in the AVX-512 ones' order, but Dense products go to
    # matrixmultiply with AVX2 only, so the weights agree to float32 rounding.
    if kernels_picked(FERRONET_GEMM="avx2") != "avx2":
        pytest.skip("this CPU has no AVX2 + FMA")
    assert kernels_picked(FERRONET_GEMM="matrixmultiply") == "matrixmultiply"
    avx2 = train(1, FERRONET_GEMM="avx2")
    assert_identical(avx2, train(2, FERRONET_GEMM="avx2"))
    widest = train(2)
    # Weight 1, the first convolution's bias, feeds a BatchNormalization that cancels it: its
    # gradient is rounding noise, which Adam scales to full steps.
    for i, (u, v) in enumerate(zip(avx2, widest)):
        if i != 1:
            np.testing.assert_allclose(u, v, rtol=1e-4, atol=1e-5, err_msg=f"weight {i}")


@pytest.mark.parametrize("family", ["avx2", "matrixmultiply"])
def test_convolution_suite_passes_on_each_narrower_kernel_family(family):
    # The convolution tests (forward against numpy, gradients against finite differences) on the
    # paths other CPUs take: the AVX2 kernels, and im2col + matrixmultiply (no AVX2, or aarch64).
    if family == "avx2" and kernels_picked(FERRONET_GEMM="avx2") != "avx2":
        pytest.skip("this CPU has no AVX2 + FMA")
    suite = os.path.join(os.path.dirname(__file__), "test_conv.py")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", suite],
        env={**os.environ, "FERRONET_GEMM": family},
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout[-3000:]

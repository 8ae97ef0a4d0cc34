"""Hardening, round 2: catchable exceptions only, one model shared by threads, fork safety,
re-entrant fit refused, atomic set_weights, bounded class weights, careful saves, hostile model
files rejected cheaply, and the small argument checks."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np

import ferronet as fn
from ferronet import layers

rng = np.random.default_rng(0)


def run_isolated(code: str, address_space_gb: float | None = None, timeout: float = 60) -> str:
    """Runs ``code`` in a fresh interpreter (optionally under an address-space limit, so a huge
    allocation fails instead of swapping) and returns its stdout; fails on a signal, a hang or a
    non-zero exit."""
    prelude = "import resource\n"
    if address_space_gb is not None:
        limit = int(address_space_gb * 2**30)
        prelude += f"resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))\n"
    proc = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def small_model(units: int = 3, compiled: bool = True):
    m = fn.Sequential([layers.Input((4,)), layers.Dense(8, activation="relu"), layers.Dense(units)])
    if compiled:
        m.compile("adam", "mse")
    return m


def test_an_output_too_large_for_memory_raises_memory_error():
    out = run_isolated(
        """
        import numpy as np, ferronet as fn
        from ferronet import layers
        m = fn.Sequential([layers.Input((1,)), layers.Dense(100_000)])
        x = np.ones((20_000, 1), np.float32)
        try:
            m.predict(x, verbose=0)
        except MemoryError:
            print("MemoryError")
        print(m.predict(x[:2], verbose=0).shape)
        """,
        address_space_gb=3,
    )
    assert out.split() == ["MemoryError", "(2,", "100000)"]

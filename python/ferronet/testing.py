"""Gradient checking: the engine's analytic gradients against central finite differences."""

from __future__ import annotations

import numpy as np

__all__ = ["check_gradients"]


def check_gradients(model, x, y, epsilon: float = 5e-3, max_params_per_weight: int | None = None) -> float:
    """Max relative error between analytic and finite-difference gradients over the weights.

    The loss is the compiled loss (plus regularization) on ``x, y`` as one batch, in training
    mode with fixed dropout masks. Each weight value is perturbed by ``+-epsilon``; the relative
    error of a value is ``|a - n| / max(|a|, |n|, 1e-2)`` (the floor keeps float32 rounding of
    the loss from dominating tiny gradients). ``max_params_per_weight`` checks a
    random subset of each weight tensor (for larger models). Values of a few 1e-3 or below mean
    the gradients agree.
    """
    model._require_compiled("check_gradients")
    x, y, _ = model._prepare_xy(x, y, "check_gradients")
    core = model._core
    _, analytic = core.compute_gradients(x, y)
    weights = [w.astype(np.float32) for w in core.get_weights()]
    rng = np.random.default_rng(0)
    worst = 0.0
    for i, (w, a) in enumerate(zip(weights, analytic)):
        flat_idx = np.arange(w.size)
        if max_params_per_weight is not None and w.size > max_params_per_weight:
            flat_idx = rng.choice(w.size, max_params_per_weight, replace=False)
        for j in flat_idx:
            orig = w.flat[j]
            losses = []
            for sign in (1, -1):
                w.flat[j] = orig + sign * epsilon
                core.set_weight(i, w)
                losses.append(core.compute_gradients(x, y)[0])
            w.flat[j] = orig
            core.set_weight(i, w)
            step = (np.float32(orig + epsilon) - np.float32(orig - epsilon)).item()
            numeric = (losses[0] - losses[1]) / step
            an = float(a.flat[j])
            worst = max(worst, abs(an - numeric) / max(abs(an), abs(numeric), 1e-2))
    return worst

"""Training curves with matplotlib (an optional dependency: ``pip install matplotlib``)."""

from __future__ import annotations


def _pyplot():
    try:
        import matplotlib

        matplotlib.use(matplotlib.get_backend())
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError(
            "plotting needs matplotlib, an optional dependency: pip install matplotlib "
            "(or pip install 'ferronet[plot]')"
        ) from None
    return plt


def plot_history(history, keys=None):
    """One panel per quantity (``loss``, each metric, ``learning_rate``), with its ``val_``
    curve beside the training one."""
    plt = _pyplot()
    data = history.history
    if keys is None:
        keys = [k for k in data if not k.startswith(("val_", "grad_norm/"))]
    if not keys:
        raise ValueError("History.plot: nothing recorded yet (fit first)")
    fig, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 3.5), squeeze=False)
    epochs = [e + 1 for e in history.epoch]
    for ax, key in zip(axes[0], keys):
        ax.plot(epochs, data[key], label=key)
        if f"val_{key}" in data:
            val = data[f"val_{key}"]
            ax.plot(epochs[len(epochs) - len(val) :], val, label=f"val_{key}")
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.legend()
    fig.tight_layout()
    return fig


def plot_gradient_norms(history):
    """Each layer's mean gradient norm per epoch, log scale."""
    plt = _pyplot()
    keys = [k for k in history.history if k.startswith("grad_norm/")]
    if not keys:
        raise ValueError(
            "History.plot_gradients: no gradient norms recorded; fit with callbacks.GradientMonitor()"
        )
    fig, ax = plt.subplots(figsize=(6, 4))
    epochs = [e + 1 for e in history.epoch]
    for key in keys:
        ax.semilogy(epochs, history.history[key], label=key.split("/", 1)[1])
    ax.set_xlabel("epoch")
    ax.set_ylabel("gradient L2 norm")
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig

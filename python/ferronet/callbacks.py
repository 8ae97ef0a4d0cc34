"""Callbacks: hooks the training loop calls around training, epochs and (only when a callback
overrides them) batches. The loop runs in Rust; Python is entered per epoch, and per batch only
for a callback that defines ``on_train_batch_begin``/``on_train_batch_end``.

- ``History``: per-epoch logs (``loss``, metrics, ``val_*``, ``learning_rate``)
- ``EarlyStopping``: stop when ``monitor`` stops improving (note 002 "early stopping")
- ``ModelCheckpoint``: save weights (or the model) every epoch or when ``monitor`` improves
- ``LearningRateScheduler``: ``schedule(epoch, lr) -> lr`` at each epoch start
- ``ReduceLROnPlateau``: multiply the rate by ``factor`` after ``patience`` flat epochs
- ``TerminateOnNaN``: stop at the first batch whose loss is NaN/Inf, keeping the last finite
  weights (that batch's update is not applied)
- ``CSVLogger``, ``LambdaCallback``
- ``GradientMonitor``: each layer's weight-gradient L2 norm, averaged over the epoch's steps in
  the engine, into ``history["grad_norm/<layer>"]`` (note 002 appendix A: vanishing and
  exploding gradients made visible)
- ``SWA``: stochastic weight averaging (note 004): from ``start_epoch``, a running mean of the
  weights at each epoch end, swapped in when training ends
"""

from __future__ import annotations

import csv
import math
import os
import warnings
from typing import Any, Callable

import numpy as np

__all__ = [
    "Callback", "History", "CallbackList", "EarlyStopping", "ModelCheckpoint", "LearningRateScheduler",
    "ReduceLROnPlateau", "TerminateOnNaN", "CSVLogger", "LambdaCallback", "SWA", "GradientMonitor",
]  # fmt: skip

_BATCH_HOOKS = ("on_train_batch_begin", "on_train_batch_end")


class Callback:
    """Base class with Keras' hooks; override the ones you need."""

    def __init__(self):
        self.model = None
        self.params: dict[str, Any] = {}

    def set_model(self, model) -> None:
        self.model = model

    def set_params(self, params: dict[str, Any]) -> None:
        self.params = params

    def on_train_begin(self, logs=None): ...

    def on_train_end(self, logs=None): ...

    def on_epoch_begin(self, epoch: int, logs=None): ...

    def on_epoch_end(self, epoch: int, logs=None): ...

    def on_train_batch_begin(self, batch: int, logs=None): ...

    def on_train_batch_end(self, batch: int, logs=None): ...

    def _wants_batches(self) -> bool:
        """Whether a per-batch hook is defined (by a subclass or on the instance)."""
        return any(
            name in self.__dict__ or getattr(type(self), name) is not getattr(Callback, name)
            for name in _BATCH_HOOKS
        )


class History(Callback):
    """Records the logs of every epoch: ``history["loss"]``, metrics and ``val_*``."""

    def __init__(self):
        super().__init__()
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []

    def on_train_begin(self, logs=None):
        self.epoch = []

    def on_epoch_end(self, epoch: int, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)

    def plot(self, keys=None):
        """Loss, metrics (with their ``val_`` counterparts) and learning rate per epoch; returns
        the matplotlib figure (``pip install matplotlib``)."""
        from .plotting import plot_history

        return plot_history(self, keys)

    def plot_gradients(self):
        """Per-layer gradient norms per epoch on a log scale (needs ``GradientMonitor``)."""
        from .plotting import plot_gradient_norms

        return plot_gradient_norms(self)

    def __repr__(self) -> str:
        return f"<History epochs={len(self.epoch)} keys={list(self.history)}>"


class CallbackList:
    """Dispatches each hook to a list of callbacks."""

    def __init__(self, callbacks, model, params: dict[str, Any]):
        self.callbacks = list(callbacks)
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks must be ferronet.callbacks.Callback instances; got {cb!r}")
            cb.set_model(model)
            cb.set_params(params)
        self.wants_batches = any(cb._wants_batches() for cb in self.callbacks)
        self.monitors_gradients = any(isinstance(cb, GradientMonitor) for cb in self.callbacks)
        self.stops_on_nan = any(isinstance(cb, TerminateOnNaN) for cb in self.callbacks)

    def __getattr__(self, hook: str):
        if not hook.startswith("on_"):
            raise AttributeError(hook)

        def call(*args):
            for cb in self.callbacks:
                getattr(cb, hook)(*args)

        return call


def _monitor_op(monitor: str, mode: str) -> Callable[[float, float], bool]:
    """``better(a, b)``: whether ``a`` improves on ``b`` for ``mode`` (``auto`` maximises accuracy-like
    quantities and minimises the rest, as Keras does)."""
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max'; got {mode!r}")
    if mode == "auto":
        name = monitor.removeprefix("val_")
        mode = (
            "max"
            if name in ("acc", "accuracy", "auc", "precision", "recall") or name.endswith("accuracy")
            else "min"
        )
    return (lambda a, b: a > b) if mode == "max" else (lambda a, b: a < b)


class _Monitor(Callback):
    """Shared bookkeeping of callbacks that watch one logged quantity."""

    def __init__(self, monitor: str, mode: str, min_delta: float):
        super().__init__()
        self.monitor = monitor
        self.min_delta = abs(float(min_delta))
        self._better = _monitor_op(monitor, mode)
        self.best = math.inf if self._better(0, 1) else -math.inf

    def _improved(self, current: float, reference: float) -> bool:
        sign = -1 if self._better(0, 1) else 1
        return self._better(current - sign * self.min_delta, reference)

    def _current(self, logs) -> float | None:
        value = (logs or {}).get(self.monitor)
        if value is None:
            warnings.warn(
                f"{type(self).__name__}: '{self.monitor}' is not in the logs "
                f"(available: {sorted(logs or {})})",
                stacklevel=3,
            )
        return value

    def _reset_best(self) -> None:
        self.best = math.inf if self._better(0, 1) else -math.inf


class EarlyStopping(_Monitor):
    """Stops training when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs.

    With ``restore_best_weights`` the weights of the best epoch are put back when it stops.
    Epochs before ``start_from_epoch`` are not counted (a warm-up period)."""

    def __init__(self, monitor="val_loss", min_delta=0.0, patience=0, verbose=0, mode="auto", baseline=None,
                 restore_best_weights=False, start_from_epoch=0):  # fmt: skip
        super().__init__(monitor, mode, min_delta)
        self.patience, self.verbose, self.baseline = int(patience), int(verbose), baseline
        self.restore_best_weights, self.start_from_epoch = bool(restore_best_weights), int(start_from_epoch)

    def on_train_begin(self, logs=None):
        self.wait, self.stopped_epoch, self.best_epoch = 0, 0, 0
        self.best_weights = None
        self._reset_best()

    def on_epoch_end(self, epoch, logs=None):
        current = self._current(logs)
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.get_weights()
        self.wait += 1
        if self._improved(current, self.best):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._improved(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True
            if self.restore_best_weights and self.best_weights is not None:
                if self.verbose:
                    print(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
                self.model.set_weights(self.best_weights)

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")


class ModelCheckpoint(_Monitor):
    """Saves the weights (``save_weights_only=True``) or the whole model after every epoch, or
    only when ``monitor`` improves (``save_best_only``). ``filepath`` may contain ``{epoch}`` and
    log names, e.g. ``"ckpt-{epoch:02d}-{val_loss:.3f}.weights.safetensors"``."""

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False, save_weights_only=False,
                 mode="auto", save_freq="epoch", initial_value_threshold=None):  # fmt: skip
        super().__init__(monitor, mode, 0.0)
        if save_freq != "epoch":
            raise ValueError("ModelCheckpoint: only save_freq='epoch' is supported")
        self.filepath = os.fspath(filepath)
        self.verbose, self.save_best_only, self.save_weights_only = int(verbose), bool(save_best_only), bool(
            save_weights_only)  # fmt: skip
        self.initial_value_threshold = initial_value_threshold

    def on_train_begin(self, logs=None):
        self._reset_best()
        if self.initial_value_threshold is not None:
            self.best = float(self.initial_value_threshold)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        path = self.filepath.format(epoch=epoch + 1, **logs)
        if self.save_best_only:
            current = self._current(logs)
            if current is None or not self._improved(current, self.best):
                return
            if self.verbose:
                print(f"Epoch {epoch + 1}: {self.monitor} improved from {self.best:.5f} to {current:.5f}, "
                      f"saving to {path}")  # fmt: skip
            self.best = current
        if self.save_weights_only:
            self.model.save_weights(path)
        else:
            self.model.save(path)


class LearningRateScheduler(Callback):
    """Sets the learning rate at each epoch start to ``schedule(epoch, lr)`` (or ``schedule(epoch)``)."""

    def __init__(self, schedule, verbose=0):
        super().__init__()
        self.schedule, self.verbose = schedule, int(verbose)

    def on_epoch_begin(self, epoch, logs=None):
        lr = self.model.optimizer.learning_rate
        try:
            new = self.schedule(epoch, lr)
        except TypeError:
            new = self.schedule(epoch)
        new = float(new)
        if not math.isfinite(new) or new < 0:
            raise ValueError(f"LearningRateScheduler: the schedule returned an invalid rate {new!r}")
        self.model.optimizer.learning_rate = new
        if self.verbose:
            print(f"Epoch {epoch + 1}: LearningRateScheduler setting learning rate to {new}.")


class ReduceLROnPlateau(_Monitor):
    """Multiplies the learning rate by ``factor`` once ``monitor`` has not improved for ``patience``
    epochs, then waits ``cooldown`` epochs; never below ``min_lr``."""

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto", min_delta=1e-4,
                 cooldown=0, min_lr=0.0):  # fmt: skip
        super().__init__(monitor, mode, min_delta)
        if not 0 <= factor < 1:
            raise ValueError(f"ReduceLROnPlateau: factor must be in [0, 1); got {factor}")
        self.factor, self.patience, self.verbose = float(factor), int(patience), int(verbose)
        self.cooldown, self.min_lr = int(cooldown), float(min_lr)

    def on_train_begin(self, logs=None):
        self.wait, self.cooldown_counter = 0, 0
        self._reset_best()

    def on_epoch_end(self, epoch, logs=None):
        current = self._current(logs)
        if current is None:
            return
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._improved(current, self.best):
            self.best, self.wait = current, 0
        elif self.cooldown_counter <= 0:
            self.wait += 1
            if self.wait >= self.patience:
                old = self.model.optimizer.learning_rate
                if old > self.min_lr:
                    new = max(old * self.factor, self.min_lr)
                    self.model.optimizer.learning_rate = new
                    if self.verbose:
                        print(f"Epoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new}.")
                    self.cooldown_counter, self.wait = self.cooldown, 0


class TerminateOnNaN(Callback):
    """Stops training at the first batch whose loss is NaN or infinite. That batch's update is not
    applied, so the model keeps its last finite weights (the engine checks every batch)."""

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            self.model.stop_training = True


class CSVLogger(Callback):
    """Writes one row per epoch (``epoch`` and every log) to ``filename``."""

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        self.filename, self.separator, self.append = os.fspath(filename), separator, bool(append)
        self._file = None
        self._writer = None
        self._keys: list[str] | None = None

    def on_train_begin(self, logs=None):
        exists = self.append and os.path.exists(self.filename) and os.path.getsize(self.filename) > 0
        self._file = open(self.filename, "a" if self.append else "w", newline="")  # noqa: SIM115
        self._keys = None
        self._header_written = exists

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self._keys is None:
            self._keys = sorted(logs)
            self._writer = csv.writer(self._file, delimiter=self.separator)
            if not self._header_written:
                self._writer.writerow(["epoch", *self._keys])
        self._writer.writerow([epoch, *(logs.get(k, "NA") for k in self._keys)])
        self._file.flush()

    def on_train_end(self, logs=None):
        if self._file is not None:
            self._file.close()
            self._file = None


class LambdaCallback(Callback):
    """A callback from plain functions: ``LambdaCallback(on_epoch_end=lambda epoch, logs: ...)``."""

    def __init__(self, on_epoch_begin=None, on_epoch_end=None, on_train_begin=None, on_train_end=None,
                 on_train_batch_begin=None, on_train_batch_end=None):  # fmt: skip
        super().__init__()
        given = {
            "on_epoch_begin": on_epoch_begin,
            "on_epoch_end": on_epoch_end,
            "on_train_begin": on_train_begin,
            "on_train_end": on_train_end,
            "on_train_batch_begin": on_train_batch_begin,
            "on_train_batch_end": on_train_batch_end,
        }
        for name, fn in given.items():
            if fn is not None:
                setattr(self, name, fn)


class SWA(Callback):
    """Stochastic weight averaging (Izmailov et al. 2018; note 004).

    From ``start_epoch`` (0-based) on, every ``swa_freq`` epochs the weights are added to a running
    mean; when training ends the mean replaces the weights. With ``swa_lr`` the learning rate is
    held at that value from ``start_epoch`` on. Normalization statistics, which are not trained
    weights, would need a pass over the data afterwards; the current layers have none.
    """

    def __init__(self, start_epoch: int, swa_lr: float | None = None, swa_freq: int = 1, verbose: int = 0):
        super().__init__()
        if isinstance(start_epoch, bool) or not isinstance(start_epoch, int) or start_epoch < 0:
            raise ValueError(f"SWA: start_epoch must be a non-negative integer; got {start_epoch!r}")
        if isinstance(swa_freq, bool) or not isinstance(swa_freq, int) or swa_freq < 1:
            raise ValueError(f"SWA: swa_freq must be a positive integer; got {swa_freq!r}")
        self.start_epoch, self.swa_lr, self.swa_freq, self.verbose = (
            start_epoch,
            swa_lr,
            swa_freq,
            int(verbose),
        )

    def on_train_begin(self, logs=None):
        self.averaged = 0
        self._mean: list[np.ndarray] | None = None

    def on_epoch_begin(self, epoch, logs=None):
        if self.swa_lr is not None and epoch >= self.start_epoch:
            self.model.optimizer.learning_rate = self.swa_lr

    def on_epoch_end(self, epoch, logs=None):
        if epoch < self.start_epoch or (epoch - self.start_epoch) % self.swa_freq:
            return
        weights = [w.astype(np.float64) for w in self.model.get_weights()]
        self.averaged += 1
        if self._mean is None:
            self._mean = weights
        else:
            self._mean = [m + (w - m) / self.averaged for m, w in zip(self._mean, weights)]

    def on_train_end(self, logs=None):
        if self._mean is not None:
            self.model.set_weights([m.astype(np.float32) for m in self._mean])
            if self.verbose:
                print(f"SWA: weights set to the mean of {self.averaged} epochs")


class GradientMonitor(Callback):
    """Records, every epoch, the L2 norm of each layer's weight gradient averaged over the
    epoch's steps (computed in the engine, before clipping) as ``history["grad_norm/<layer>"]``.
    ``History.plot_gradients()`` draws them: norms shrinking layer after layer towards the input
    are the vanishing-gradient problem of notes 000, 002 and 004."""

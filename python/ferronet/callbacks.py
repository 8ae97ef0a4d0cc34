"""Callbacks: hooks the training loop calls at the start and end of training and of each epoch.

The loop runs in Rust and returns to Python only between epochs (and for throttled progress),
so per-batch hooks are not called here.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Callback", "History", "CallbackList"]


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

    def on_train_begin(self, logs=None):
        for cb in self.callbacks:
            cb.on_train_begin(logs)

    def on_train_end(self, logs=None):
        for cb in self.callbacks:
            cb.on_train_end(logs)

    def on_epoch_begin(self, epoch, logs=None):
        for cb in self.callbacks:
            cb.on_epoch_begin(epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        for cb in self.callbacks:
            cb.on_epoch_end(epoch, logs)

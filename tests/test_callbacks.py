"""Callbacks: the Keras hooks, early stopping, checkpoints, rate control, NaN handling, logging,
SWA, and fit's per-epoch options."""

import csv

import numpy as np
import pytest

import ferronet as fn
from ferronet import callbacks as C  # noqa: N812
from ferronet import layers

rng = np.random.default_rng(0)
X = rng.normal(size=(64, 4)).astype(np.float32)
Y = (X @ np.array([1.0, -2.0, 0.5, 0.0]) + 0.3).astype(np.float32)


def regression(lr=0.05, optimizer=None):
    model = fn.Sequential([layers.Input((4,)), layers.Dense(8, activation="tanh"), layers.Dense(1)])
    model.compile(optimizer=optimizer or fn.optimizers.SGD(lr), loss="mse")
    return model


class Recorder(C.Callback):
    def __init__(self):
        super().__init__()
        self.calls = []

    def on_train_begin(self, logs=None):
        self.calls.append("train_begin")

    def on_epoch_begin(self, epoch, logs=None):
        self.calls.append(f"epoch_begin {epoch}")

    def on_epoch_end(self, epoch, logs=None):
        self.calls.append(f"epoch_end {epoch} {sorted(logs)}")

    def on_train_end(self, logs=None):
        self.calls.append("train_end")


def test_hooks_order_and_no_batch_hooks_by_default():
    rec = Recorder()
    regression().fit(X, Y, epochs=2, batch_size=16, callbacks=[rec], verbose=0)
    assert rec.calls == [
        "train_begin",
        "epoch_begin 0",
        "epoch_end 0 ['learning_rate', 'loss']",
        "epoch_begin 1",
        "epoch_end 1 ['learning_rate', 'loss']",
        "train_end",
    ]
    assert not rec._wants_batches()


def test_batch_hooks_are_called_once_per_batch_when_overridden():
    seen = []
    cb = C.LambdaCallback(on_train_batch_end=lambda batch, logs: seen.append((batch, round(logs["loss"], 6))))
    regression().fit(X, Y, epochs=2, batch_size=16, callbacks=[cb], verbose=0)
    assert [b for b, _ in seen] == [0, 1, 2, 3, 0, 1, 2, 3]


def test_stop_training_from_a_callback():
    class StopAt(C.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 2:
                self.model.stop_training = True

    hist = regression().fit(X, Y, epochs=10, callbacks=[StopAt()], verbose=0)
    assert hist.epoch == [0, 1, 2]


def test_early_stopping_restores_the_best_weights_exactly():
    model = regression(lr=0.05)
    snapshots = []
    losses = iter([1.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 1.2])

    class FakeVal(C.Callback):
        """Forces a val_loss sequence and records the weights at each epoch end."""

        def on_epoch_end(self, epoch, logs=None):
            logs["val_loss"] = next(losses)
            snapshots.append(self.model.get_weights())

    es = C.EarlyStopping(monitor="val_loss", patience=3, restore_best_weights=True)
    hist = model.fit(X, Y, epochs=8, callbacks=[FakeVal(), es], verbose=0)
    assert hist.epoch == [0, 1, 2, 3, 4]
    assert es.best_epoch == 1 and es.stopped_epoch == 4
    for got, want in zip(model.get_weights(), snapshots[1]):
        np.testing.assert_array_equal(got, want)


def test_early_stopping_min_delta_mode_and_start_epoch():
    es = C.EarlyStopping(monitor="accuracy", patience=1, min_delta=0.1, start_from_epoch=2)
    vals = iter([0.1, 0.1, 0.5, 0.55, 0.58, 0.9])

    class Feed(C.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["accuracy"] = next(vals)

    hist = regression().fit(X, Y, epochs=6, callbacks=[Feed(), es], verbose=0)
    # 'accuracy' is maximised; from epoch 2 on, 0.55 and 0.58 are not 0.1 better than 0.5.
    assert hist.epoch == [0, 1, 2, 3]


def test_model_checkpoint_saves_weights(tmp_path):
    model = regression()
    path = tmp_path / "w-{epoch:02d}.safetensors"
    cb = C.ModelCheckpoint(str(path), monitor="loss", save_weights_only=True)
    model.fit(X, Y, epochs=3, callbacks=[cb], verbose=0)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["w-01.safetensors", "w-02.safetensors", "w-03.safetensors"]
    other = regression()
    other.load_weights(tmp_path / "w-03.safetensors")
    for a, b in zip(model.get_weights(), other.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_model_checkpoint_best_only(tmp_path):
    model = regression()
    vals = iter([0.5, 0.4, 0.6, 0.3])

    class Feed(C.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["val_loss"] = next(vals)

    saved = []
    model.save_weights = lambda p, overwrite=True: saved.append(p)
    cb = C.ModelCheckpoint(str(tmp_path / "{epoch}.w"), save_best_only=True, save_weights_only=True)
    model.fit(X, Y, epochs=4, callbacks=[Feed(), cb], verbose=0)
    assert [p.rsplit("/", 1)[-1] for p in saved] == ["1.w", "2.w", "4.w"]


def test_learning_rate_scheduler_and_history():
    model = regression()
    sched = C.LearningRateScheduler(lambda epoch, lr: 0.1 / (epoch + 1))
    hist = model.fit(X, Y, epochs=3, callbacks=[sched], verbose=0)
    assert hist.history["learning_rate"] == pytest.approx([0.1, 0.05, 0.1 / 3])


def test_reduce_lr_on_plateau():
    model = regression(lr=0.1)
    vals = iter([1.0, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9])

    class Feed(C.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["val_loss"] = next(vals)

    cb = C.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2, min_lr=0.02)
    hist = model.fit(X, Y, epochs=7, callbacks=[Feed(), cb], verbose=0)
    assert model.optimizer.learning_rate == pytest.approx(0.025)
    # The rate in the logs is the one used during the epoch, before the callback lowers it.
    assert hist.history["learning_rate"][:5] == pytest.approx([0.1, 0.1, 0.1, 0.1, 0.05])


def test_terminate_on_nan_keeps_the_last_finite_weights():
    model = regression(lr=1e4)  # diverges in a few steps
    kept = []

    class Track(C.Callback):
        def on_train_batch_end(self, batch, logs=None):
            kept.append(self.model.get_weights())

    hist = model.fit(X * 10, Y, epochs=50, batch_size=8, callbacks=[Track(), C.TerminateOnNaN()], verbose=0)
    assert len(hist.epoch) < 50
    weights = model.get_weights()
    assert all(np.all(np.isfinite(w)) for w in weights)
    for a, b in zip(weights, kept[-1]):
        np.testing.assert_array_equal(a, b)
    assert not np.isfinite(hist.history["loss"][-1])


def test_csv_logger(tmp_path):
    path = tmp_path / "log.csv"
    regression().fit(X, Y, epochs=3, validation_split=0.25, callbacks=[C.CSVLogger(str(path))], verbose=0)
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["0", "1", "2"]
    assert set(rows[0]) == {"epoch", "loss", "val_loss", "learning_rate"}


def test_swa_result_is_the_mean_of_the_averaged_epochs():
    model = regression(lr=0.05)
    per_epoch = []
    record = C.LambdaCallback(on_epoch_end=lambda epoch, logs: per_epoch.append(model.get_weights()))
    model.fit(X, Y, epochs=6, callbacks=[record, C.SWA(start_epoch=2, swa_lr=0.01)], verbose=0)
    want = [np.mean([e[i].astype(np.float64) for e in per_epoch[2:]], axis=0) for i in range(4)]
    for got, w in zip(model.get_weights(), want):
        np.testing.assert_allclose(got, w, rtol=1e-6, atol=1e-7)
    assert model.optimizer.learning_rate == pytest.approx(0.01)


def test_fit_options_initial_epoch_and_validation_freq():
    hist = regression().fit(
        X, Y, epochs=5, initial_epoch=2, validation_split=0.25, validation_freq=2, verbose=0
    )
    assert hist.epoch == [2, 3, 4]
    assert len(hist.history["val_loss"]) == 1  # only after epoch index 3 (the 2nd of every 2)


def test_sample_and_class_weights_change_the_loss_as_keras_defines():
    model = fn.Sequential([layers.Input((4,)), layers.Dense(3, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    labels = rng.integers(0, 3, size=64)
    p = model.predict(X, verbose=0).astype(np.float64)
    per_sample = -np.log(p[np.arange(64), labels])
    w = rng.uniform(0, 2, size=64)
    assert model.evaluate(X, labels, sample_weight=w, verbose=0) == pytest.approx(
        np.mean(w * per_sample), rel=1e-5
    )
    cw = {0: 1.0, 1: 3.0, 2: 0.5}
    weights = np.array([cw[c] for c in labels])
    loss = model.train_on_batch(X, labels, class_weight=cw)
    assert loss == pytest.approx(np.mean(weights * per_sample), rel=1e-5)


def test_callbacks_must_be_callback_objects():
    with pytest.raises(TypeError):
        regression().fit(X, Y, callbacks=[lambda: None], verbose=0)

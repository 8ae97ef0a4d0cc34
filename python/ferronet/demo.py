"""``python -m ferronet.demo``: trains an MLP on the bundled digits and prints the test accuracy.

80/20 split; the z-score scaling is fitted on the training part only and applied to both
(note 000, "buenas prácticas": the scaler comes from training data).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import ferronet as fn


def main(argv=None) -> float:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", type=int, default=2)
    args = parser.parse_args(argv)

    fn.utils.set_random_seed(args.seed)
    x, y = fn.datasets.load_digits()
    order = np.random.default_rng(args.seed).permutation(len(x))
    x, y = x[order].astype(np.float32), y[order]
    split = int(0.8 * len(x))
    x_train, x_test, y_train, y_test = x[:split], x[split:], y[:split], y[split:]
    mean, std = x_train.mean(axis=0), x_train.std(axis=0) + 1e-6
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std

    model = fn.Sequential(
        [
            fn.layers.Input(shape=(64,)),
            fn.layers.Dense(64, activation="relu"),
            fn.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    start = time.perf_counter()
    model.fit(x_train, y_train, batch_size=32, epochs=args.epochs, verbose=args.verbose)
    seconds = time.perf_counter() - start
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    print(
        f"digits: {len(x_train)} training / {len(x_test)} test samples, {args.epochs} epochs "
        f"in {seconds:.2f}s on {fn.get_num_threads()} thread(s)"
    )
    print(f"test loss {loss:.4f}  test accuracy {accuracy:.4f}")
    return accuracy


if __name__ == "__main__":
    main()

"""End-to-end training throughput: ferronet against PyTorch on the same workload, same machine.

Each measurement runs in its own process (frameworks never share a process or a thread pool);
ferronet and PyTorch alternate, each repeated ``--repeats`` times, and medians are reported with
their ratio and peak RSS. PyTorch is optional: give its interpreter with ``--torch-python`` (or
``FERRONET_TORCH_PYTHON``) when it lives in another virtual environment; without it only
ferronet is measured.

    python benches/e2e.py                      # mlp_mnist at 1 and 2 threads
    python benches/e2e.py --threads 1 --repeats 5
    python benches/e2e.py --all-optimizers --threads 1
    python benches/e2e.py --workload cnn_lenet
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

# name: (per-sample input shape, batch size, samples, epochs timed, default optimizer)
WORKLOADS = {
    "mlp_mnist": ((784,), 128, 60_000, 2, "adam"),
    "cnn_lenet": ((28, 28, 1), 64, 10_000, 1, "sgd_momentum"),
    "cnn_bn": ((32, 32, 3), 64, 5_000, 1, "adam"),
}


def synthetic(n: int, shape, classes: int = 10, seed: int = 0):
    """Gaussian inputs labelled by a random linear teacher (learnable, fixed per seed)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, *shape)).astype(np.float32)
    teacher = rng.normal(size=(int(np.prod(shape)), classes)).astype(np.float32)
    y = (x.reshape(n, -1) @ teacher).argmax(1).astype(np.int64)
    return x, y


def ferronet_model(workload: str):
    import ferronet as fn

    L = fn.layers  # noqa: N806
    if workload == "mlp_mnist":
        body = [L.Dense(256, activation="relu"), L.Dense(128, activation="relu"), L.Dense(10)]
    elif workload == "cnn_lenet":
        body = [
            L.Conv2D(32, 3, padding="same", activation="relu"), L.MaxPooling2D(2),
            L.Conv2D(64, 3, padding="same", activation="relu"), L.MaxPooling2D(2),
            L.Flatten(), L.Dense(128, activation="relu"), L.Dense(10),
        ]  # fmt: skip
    else:
        block = lambda f: [L.Conv2D(f, 3, padding="same"), L.BatchNormalization(), L.ReLU()]  # noqa: E731
        body = [*block(32), *block(32), L.MaxPooling2D(2), *block(64), *block(64), L.MaxPooling2D(2),
                L.Flatten(), L.Dense(10)]  # fmt: skip
    return fn.Sequential([L.Input(WORKLOADS[workload][0]), *body])


def torch_model(workload: str):
    from torch import nn

    if workload == "mlp_mnist":
        return nn.Sequential(
            nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10)
        )
    if workload == "cnn_lenet":
        return nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10),
        )  # fmt: skip

    def block(i, o):
        return [nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o, momentum=0.01, eps=1e-3), nn.ReLU()]

    return nn.Sequential(*block(3, 32), *block(32, 32), nn.MaxPool2d(2), *block(32, 64), *block(64, 64),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64 * 8 * 8, 10))  # fmt: skip


OPTIMIZERS = ("sgd", "sgd_momentum", "adam", "adamw", "rmsprop", "adagrad", "adamax", "nadam")


def ferronet_optimizer(name: str):
    import ferronet as fn

    o = fn.optimizers
    return {
        "sgd": lambda: o.SGD(0.01),
        "sgd_momentum": lambda: o.SGD(0.01, momentum=0.9),
        "adam": lambda: o.Adam(1e-3),
        "adamw": lambda: o.AdamW(1e-3, weight_decay=0.004),
        "rmsprop": lambda: o.RMSprop(1e-3),
        "adagrad": lambda: o.Adagrad(1e-3),
        "adamax": lambda: o.Adamax(1e-3),
        "nadam": lambda: o.Nadam(1e-3),
    }[name]()


def torch_optimizer(name: str, params):
    import torch

    t = torch.optim
    return {
        "sgd": lambda: t.SGD(params, lr=0.01),
        "sgd_momentum": lambda: t.SGD(params, lr=0.01, momentum=0.9),
        "adam": lambda: t.Adam(params, lr=1e-3, eps=1e-7),
        "adamw": lambda: t.AdamW(params, lr=1e-3, weight_decay=0.004, eps=1e-7),
        "rmsprop": lambda: t.RMSprop(params, lr=1e-3, alpha=0.9, eps=1e-7),
        "adagrad": lambda: t.Adagrad(params, lr=1e-3, initial_accumulator_value=0.1, eps=1e-7),
        "adamax": lambda: t.Adamax(params, lr=1e-3, eps=1e-7),
        "nadam": lambda: t.NAdam(params, lr=1e-3, eps=1e-7),
    }[name]()


def run_ferronet(workload: str, threads: int, optimizer: str) -> float:
    import ferronet as fn

    shape, batch, n, epochs, _ = WORKLOADS[workload]
    fn.set_num_threads(threads)
    fn.utils.set_random_seed(0)
    x, y = synthetic(n, shape)
    model = ferronet_model(workload)
    model.compile(
        optimizer=ferronet_optimizer(optimizer),
        loss=fn.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0)  # warm-up: buffers, caches
    start = time.perf_counter()
    model.fit(x, y, batch_size=batch, epochs=epochs, verbose=0)
    return epochs * n / (time.perf_counter() - start)


def run_torch(workload: str, threads: int, optimizer: str) -> float:
    import torch
    from torch import nn

    shape, batch, n, epochs, _ = WORKLOADS[workload]
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    x_np, y_np = synthetic(n, shape)
    if len(shape) == 3:  # PyTorch's native layout is NCHW
        x_np = x_np.transpose(0, 3, 1, 2).copy()
    x, y = torch.from_numpy(x_np), torch.from_numpy(y_np)
    model = torch_model(workload)
    opt = torch_optimizer(optimizer, model.parameters())
    loss_fn = nn.CrossEntropyLoss()

    def epoch():
        model.train()
        perm = torch.randperm(n)
        for i in range(0, n, batch):
            idx = perm[i : i + batch]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()

    epoch()
    start = time.perf_counter()
    for _ in range(epochs):
        epoch()
    return epochs * n / (time.perf_counter() - start)


def child(args) -> None:
    run = run_ferronet if args.framework == "ferronet" else run_torch
    sps = run(args.workload, args.threads[0], args.optimizer or WORKLOADS[args.workload][4])
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"samples_per_s": sps, "peak_rss_mb": rss_mb}))


def measure(python: str, framework: str, workload: str, threads: int, optimizer: str) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    cmd = [
        python,
        os.path.abspath(__file__),
        "--child",
        "--framework",
        framework,
        "--workload",
        workload,
        "--threads",
        str(threads),
        "--optimizer",
        optimizer,
    ]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def torch_python(explicit: str | None) -> str | None:
    candidates = [explicit, os.environ.get("FERRONET_TORCH_PYTHON"), sys.executable]
    for py in candidates:
        if py and subprocess.run([py, "-c", "import torch"], capture_output=True).returncode == 0:
            return py
    return None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workload", default="mlp_mnist", choices=sorted(WORKLOADS))
    p.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--torch-python", default=None)
    p.add_argument("--optimizer", default=None, choices=OPTIMIZERS, help="default: the workload's own")
    p.add_argument("--all-optimizers", action="store_true", help="one row per optimizer")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--framework", default="ferronet", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return
    tpy = torch_python(args.torch_python)
    if tpy is None:
        print("PyTorch not importable: measuring ferronet only", file=sys.stderr)
    shape, batch, n, _, default_opt = WORKLOADS[args.workload]
    optimizers = OPTIMIZERS if args.all_optimizers else (args.optimizer or default_opt,)
    print(f"workload {args.workload}: input {shape}, batch {batch}, {n} samples")
    print(
        f"{'optimizer':>9} {'threads':>7} {'ferronet samples/s':>19} {'torch samples/s':>16} {'ratio':>6} "
        f"{'ferronet RSS MB':>16} {'torch RSS MB':>13}"
    )
    for opt in optimizers:
        for t in args.threads:
            ours, theirs = [], []
            for _ in range(args.repeats):
                ours.append(measure(sys.executable, "ferronet", args.workload, t, opt))
                if tpy:
                    theirs.append(measure(tpy, "torch", args.workload, t, opt))
            o = statistics.median(r["samples_per_s"] for r in ours)
            o_rss = statistics.median(r["peak_rss_mb"] for r in ours)
            if theirs:
                th = statistics.median(r["samples_per_s"] for r in theirs)
                th_rss = statistics.median(r["peak_rss_mb"] for r in theirs)
                print(
                    f"{opt:>9} {t:>7} {o:>19,.0f} {th:>16,.0f} {o / th:>5.2f}x {o_rss:>16.0f} {th_rss:>13.0f}"
                )
            else:
                print(f"{opt:>9} {t:>7} {o:>19,.0f} {'-':>16} {'-':>6} {o_rss:>16.0f} {'-':>13}")


if __name__ == "__main__":
    main()

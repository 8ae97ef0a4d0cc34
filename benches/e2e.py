"""End-to-end training throughput: ferronet against PyTorch on the same workload, same machine.

Each measurement runs in its own process (frameworks never share a process or a thread pool);
ferronet and PyTorch alternate, each repeated ``--repeats`` times, and medians are reported with
their ratio and peak RSS. PyTorch is optional: give its interpreter with ``--torch-python`` (or
``FERRONET_TORCH_PYTHON``) when it lives in another virtual environment; without it only
ferronet is measured.

    python benches/e2e.py                      # mlp_mnist at 1 and 2 threads
    python benches/e2e.py --threads 1 --repeats 5
    python benches/e2e.py --all-optimizers --threads 1
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

WORKLOADS = {
    # name: (layer widths, batch size, samples, epochs timed)
    "mlp_mnist": ((784, 256, 128, 10), 128, 60_000, 2),
}


def synthetic(n: int, widths, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, widths[0])).astype(np.float32)
    teacher = rng.normal(size=(widths[0], widths[-1])).astype(np.float32)
    y = (x @ teacher).argmax(1).astype(np.int64)
    return x, y


OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop", "adagrad", "adamax", "nadam")


def ferronet_optimizer(name: str):
    import ferronet as fn

    o = fn.optimizers
    return {
        "sgd": lambda: o.SGD(0.01),
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
        "adam": lambda: t.Adam(params, lr=1e-3, eps=1e-7),
        "adamw": lambda: t.AdamW(params, lr=1e-3, weight_decay=0.004, eps=1e-7),
        "rmsprop": lambda: t.RMSprop(params, lr=1e-3, alpha=0.9, eps=1e-7),
        "adagrad": lambda: t.Adagrad(params, lr=1e-3, initial_accumulator_value=0.1, eps=1e-7),
        "adamax": lambda: t.Adamax(params, lr=1e-3, eps=1e-7),
        "nadam": lambda: t.NAdam(params, lr=1e-3, eps=1e-7),
    }[name]()


def run_ferronet(widths, batch, n, epochs, threads, optimizer="adam") -> float:
    import ferronet as fn

    fn.set_num_threads(threads)
    fn.utils.set_random_seed(0)
    x, y = synthetic(n, widths)
    model = fn.Sequential([fn.layers.Input((widths[0],))])
    for w in widths[1:-1]:
        model.add(fn.layers.Dense(w, activation="relu"))
    model.add(fn.layers.Dense(widths[-1]))
    model.compile(
        optimizer=ferronet_optimizer(optimizer),
        loss=fn.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0)  # warm-up: buffers, caches
    start = time.perf_counter()
    model.fit(x, y, batch_size=batch, epochs=epochs, verbose=0)
    return epochs * n / (time.perf_counter() - start)


def run_torch(widths, batch, n, epochs, threads, optimizer="adam") -> float:
    import torch
    from torch import nn

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    x_np, y_np = synthetic(n, widths)
    x, y = torch.from_numpy(x_np), torch.from_numpy(y_np)
    mods = []
    for a, b in zip(widths[:-2], widths[1:-1]):
        mods += [nn.Linear(a, b), nn.ReLU()]
    model = nn.Sequential(*mods, nn.Linear(widths[-2], widths[-1]))
    opt = torch_optimizer(optimizer, model.parameters())
    loss_fn = nn.CrossEntropyLoss()

    def epoch():
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
    widths, batch, n, epochs = WORKLOADS[args.workload]
    fn = run_ferronet if args.framework == "ferronet" else run_torch
    sps = fn(widths, batch, n, epochs, args.threads[0], args.optimizer)
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
    p.add_argument("--optimizer", default="adam", choices=OPTIMIZERS)
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
    widths, batch, n, _ = WORKLOADS[args.workload]
    optimizers = OPTIMIZERS if args.all_optimizers else (args.optimizer,)
    print(f"workload {args.workload}: MLP {'-'.join(map(str, widths))}, batch {batch}, {n} samples")
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

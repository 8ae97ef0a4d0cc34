"""End-to-end throughput: ferronet against PyTorch on the same workload, same machine.

Each measurement runs in its own process (frameworks never share a process or a thread pool);
ferronet and PyTorch alternate, each repeated ``--repeats`` times, and medians are reported with
their ratio and peak RSS. PyTorch is optional: give its interpreter with ``--torch-python`` (or
``FERRONET_TORCH_PYTHON``) when it lives in another virtual environment; without it only
ferronet is measured.

    python benches/e2e.py                          # every workload at 1 and 2 threads
    python benches/e2e.py --workload mlp_mnist --threads 1 --repeats 5
    python benches/e2e.py --workload mlp_mnist --all-optimizers --threads 1
    python benches/e2e.py --markdown               # the table for benches/README.md
    python benches/e2e.py --policy mixed_bfloat16  # bf16 products: PyTorch under CPU autocast

It first prints the CPU (model, vector extension, caches) and its fp32 peak measured at each
thread count (FMA chains, ``ferronet._core.measure_fp32_peak``); each row then gives ferronet's
achieved GFLOPS (multiply-adds of the Dense and Conv2D layers: forward ``F``; training
``3F`` less the input gradient of the first layer) as a fraction of that peak.
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
from dataclasses import dataclass
from pathlib import Path

DIGITS = Path(__file__).resolve().parent.parent / "python" / "ferronet" / "data" / "digits.npz"


@dataclass(frozen=True)
class Workload:
    input_shape: tuple
    batch: int
    samples: int  # synthetic samples (ignored for the digits)
    epochs: int  # epochs timed after one warm-up epoch (passes over the data for `predict`)
    optimizer: str
    data: str = "synthetic"  # or "digits": the bundled 8x8 digits, scaled to [0, 1]
    predict: bool = False  # time inference of the trained network instead of training


WORKLOADS = {
    "mlp_mnist": Workload((784,), 128, 60_000, 2, "adam"),
    "mlp_wide": Workload((784,), 256, 20_000, 1, "adam"),
    "mlp_bn_dropout": Workload((784,), 128, 60_000, 1, "adamw"),
    "mlp_tiny": Workload((64,), 32, 0, 20, "sgd", data="digits"),
    "cnn_lenet": Workload((28, 28, 1), 64, 10_000, 1, "sgd_momentum"),
    "cnn_bn": Workload((32, 32, 3), 64, 5_000, 1, "adam"),
    "predict_mlp": Workload((784,), 1024, 60_000, 5, "adam", predict=True),
}


def dataset(w: Workload, seed: int = 0):
    """Gaussian inputs labelled by a random linear teacher (learnable, fixed per seed), or the digits."""
    import numpy as np

    if w.data == "digits":
        with np.load(DIGITS) as d:
            return (d["x"] / np.float32(16)).astype(np.float32), d["y"].astype(np.int64)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(w.samples, *w.input_shape)).astype(np.float32)
    teacher = rng.normal(size=(int(np.prod(w.input_shape)), 10)).astype(np.float32)
    y = (x.reshape(w.samples, -1) @ teacher).argmax(1).astype(np.int64)
    return x, y


def ferronet_model(workload: str):
    import ferronet as fn

    L = fn.layers  # noqa: N806
    if workload in ("mlp_mnist", "predict_mlp"):
        body = [L.Dense(256, activation="relu"), L.Dense(128, activation="relu"), L.Dense(10)]
    elif workload == "mlp_wide":
        body = [L.Dense(1024, activation="relu"), L.Dense(1024, activation="relu"), L.Dense(10)]
    elif workload == "mlp_bn_dropout":
        hidden = lambda u: [L.Dense(u), L.BatchNormalization(), L.ReLU(), L.Dropout(0.2)]  # noqa: E731
        body = [*hidden(512), *hidden(256), L.Dense(10)]
    elif workload == "mlp_tiny":
        body = [L.Dense(32, activation="relu"), L.Dense(10)]
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
    return fn.Sequential([L.Input(WORKLOADS[workload].input_shape), *body])


def torch_model(workload: str):
    from torch import nn

    def mlp(*units):
        layers = [m for i, o in zip(units, units[1:]) for m in (nn.Linear(i, o), nn.ReLU())]
        return nn.Sequential(*layers[:-1])

    if workload in ("mlp_mnist", "predict_mlp"):
        return mlp(784, 256, 128, 10)
    if workload == "mlp_wide":
        return mlp(784, 1024, 1024, 10)
    if workload == "mlp_bn_dropout":

        def hidden(i, o):  # Keras's BatchNormalization defaults: momentum 0.99, epsilon 1e-3
            return [nn.Linear(i, o), nn.BatchNorm1d(o, momentum=0.01, eps=1e-3), nn.ReLU(), nn.Dropout(0.2)]

        return nn.Sequential(*hidden(784, 512), *hidden(512, 256), nn.Linear(256, 10))
    if workload == "mlp_tiny":
        return mlp(64, 32, 10)
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


def flops_per_sample(model, training: bool) -> float:
    """FLOPs per sample of the Dense and Conv2D layers: ``2 x`` multiply-adds forward; training
    adds the weight gradient and the input gradient (none for the first layer)."""
    import numpy as np

    forward = []
    for layer in model.layers:
        kernel = next((w for w in layer.weights if w.name.endswith("kernel")), None)
        if kernel is None:
            continue
        macs = int(np.prod(kernel.shape))
        if len(kernel.shape) == 4:  # Conv2D: per output position
            _, oh, ow, _ = layer.output_shape
            macs *= oh * ow
        forward.append(2.0 * macs)
    if not training:
        return sum(forward)
    return 3 * sum(forward) - (forward[0] if forward else 0.0)


def cpu_header(threads: list[int]) -> tuple[str, dict[int, float]]:
    """A line naming the CPU, and its measured fp32 peak (GFLOPS) per thread count."""
    from ferronet import _core

    info = _core.cpu_info()
    model = info["model"] or "unknown CPU"
    try:
        with open(
            os.path.join(os.sep, "proc", "cpuinfo")
        ) as f:  # the kernel's name is often more precise than CPUID's
            named = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
        model = named if len(named) > len(model) else model
    except OSError:
        pass
    peaks = {t: _core.measure_fp32_peak(t, 0.5) for t in threads}
    caches = ", ".join(f"{k[:-4].upper()} {info[k]} KiB" for k in ("l1d_kib", "l2_kib", "l3_kib") if info[k])
    shown = ", ".join(f"{peaks[t]:.0f} GFLOPS on {t} thread{'s' if t > 1 else ''}" for t in threads)
    line = (
        f"CPU: {model} ({info['vendor']}, {info['simd']}, {info['kernels']} kernels"
        f"{', bf16 products' if info.get('bf16') else ''}, "
        f"{info['logical_cpus']} logical CPUs; {caches}); "
    )
    return line + f"measured fp32 peak: {shown}", peaks


def run_ferronet(workload: str, threads: int, optimizer: str, policy: str = "float32") -> float:
    """Samples per second: of `fit` after a warm-up epoch, or of `predict` after one epoch of training."""
    import ferronet as fn

    w = WORKLOADS[workload]
    fn.mixed_precision.set_global_policy(policy)
    fn.set_num_threads(threads)
    fn.utils.set_random_seed(0)
    x, y = dataset(w)
    model = ferronet_model(workload)
    model.compile(
        optimizer=ferronet_optimizer(optimizer),
        loss=fn.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(x, y, batch_size=w.batch, epochs=1, verbose=0)  # warm-up: buffers, caches
    start = time.perf_counter()
    if w.predict:
        for _ in range(w.epochs):
            model.predict(x, batch_size=w.batch, verbose=0)
    else:
        model.fit(x, y, batch_size=w.batch, epochs=w.epochs, verbose=0)
    sps = w.epochs * len(x) / (time.perf_counter() - start)
    return sps, flops_per_sample(model, training=not w.predict)


def run_torch(workload: str, threads: int, optimizer: str, policy: str = "float32") -> float:
    """The same measurement with PyTorch's idiomatic loop: randperm, index, zero_grad, backward, step;
    under ``mixed_bfloat16``, the forward pass and the loss in ``torch.autocast("cpu", torch.bfloat16)``."""
    import torch
    from torch import nn

    w = WORKLOADS[workload]
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    x_np, y_np = dataset(w)
    if len(w.input_shape) == 3:  # PyTorch's native layout is NCHW
        x_np = x_np.transpose(0, 3, 1, 2).copy()
    x, y = torch.from_numpy(x_np), torch.from_numpy(y_np)
    n = len(x)
    model = torch_model(workload)
    opt = torch_optimizer(optimizer, model.parameters())
    loss_fn = nn.CrossEntropyLoss()
    bf16 = policy == "mixed_bfloat16"

    def autocast():
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)

    def epoch():
        model.train()
        perm = torch.randperm(n)
        for i in range(0, n, w.batch):
            idx = perm[i : i + w.batch]
            opt.zero_grad(set_to_none=True)
            with autocast():
                loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()

    def predict():
        model.eval()
        with torch.inference_mode(), autocast():
            return torch.cat([model(x[i : i + w.batch]).float() for i in range(0, n, w.batch)]).numpy()

    epoch()
    start = time.perf_counter()
    for _ in range(w.epochs):
        predict() if w.predict else epoch()
    return w.epochs * n / (time.perf_counter() - start)


def child(args) -> None:
    run = run_ferronet if args.framework == "ferronet" else run_torch
    result = run(
        args.workload[0],
        args.threads[0],
        args.optimizer or WORKLOADS[args.workload[0]].optimizer,
        args.policy,
    )
    sps, flops = result if isinstance(result, tuple) else (result, None)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"samples_per_s": sps, "peak_rss_mb": rss_mb, "flops_per_sample": flops}))


def measure(python: str, framework: str, workload: str, threads: int, optimizer: str, policy: str) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    cmd = [python, os.path.abspath(__file__), "--child", "--framework", framework]
    cmd += ["--workload", workload, "--threads", str(threads), "--optimizer", optimizer, "--policy", policy]
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
    p.add_argument("--workload", nargs="*", default=list(WORKLOADS), choices=list(WORKLOADS))
    p.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--torch-python", default=None)
    p.add_argument("--optimizer", default=None, choices=OPTIMIZERS, help="default: the workload's own")
    p.add_argument("--all-optimizers", action="store_true", help="one row per optimizer")
    p.add_argument("--markdown", action="store_true", help="print a markdown table")
    policy_help = "ferronet's dtype policy; PyTorch runs under bf16 autocast for mixed_bfloat16"
    p.add_argument("--policy", default="float32", choices=("float32", "mixed_bfloat16"), help=policy_help)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--framework", default="ferronet", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return
    tpy = torch_python(args.torch_python)
    if tpy is None:
        print("PyTorch not importable: measuring ferronet only", file=sys.stderr)
    header, peaks = cpu_header(args.threads)
    if args.policy != "float32":
        header += f"; policy {args.policy} (PyTorch: bf16 autocast); % of peak is of the fp32 peak"
    print(header + "\n", flush=True)
    columns = ["workload", "optimizer", "threads", "ferronet samples/s", "PyTorch samples/s", "ratio",
               "ferronet GFLOPS", "% of peak", "ferronet RSS MB", "PyTorch RSS MB"]  # fmt: skip
    if args.markdown:
        print("| " + " | ".join(columns) + " |")
        print("| --- | --- |" + " ---: |" * (len(columns) - 2))
    else:
        print(" ".join(f"{c:>18}" for c in columns))
    for workload in args.workload:
        w = WORKLOADS[workload]
        optimizers = OPTIMIZERS if args.all_optimizers else (args.optimizer or w.optimizer,)
        for opt in optimizers:
            for t in args.threads:
                ours, theirs = [], []
                for _ in range(args.repeats):
                    ours.append(measure(sys.executable, "ferronet", workload, t, opt, args.policy))
                    if tpy:
                        theirs.append(measure(tpy, "torch", workload, t, opt, args.policy))
                o = statistics.median(r["samples_per_s"] for r in ours)
                o_rss = statistics.median(r["peak_rss_mb"] for r in ours)
                gflops = o * ours[0]["flops_per_sample"] / 1e9
                row = [workload, opt, str(t), f"{o:,.0f}", "-", "-", f"{gflops:.1f}",
                       f"{100 * gflops / peaks[t]:.0f}%", f"{o_rss:.0f}", "-"]  # fmt: skip
                if theirs:
                    th = statistics.median(r["samples_per_s"] for r in theirs)
                    th_rss = statistics.median(r["peak_rss_mb"] for r in theirs)
                    row[4:6] = [f"{th:,.0f}", f"{o / th:.2f}x"]
                    row[9] = f"{th_rss:.0f}"
                if args.markdown:
                    print("| " + " | ".join(row) + " |", flush=True)
                else:
                    print(" ".join(f"{c:>18}" for c in row), flush=True)


if __name__ == "__main__":
    main()

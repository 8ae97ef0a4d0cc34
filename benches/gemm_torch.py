"""GEMM against PyTorch: torch.mm's GFLOP/s on the shapes of `benches/kernels/benches/gemm.rs`
(same layouts: transposed operands are strided views, as ferronet's are), beside ferronet's
latest criterion figures and the machine's fp32 peak (`--bench peak`), as a markdown table.

    cargo bench -p ferronet-benches --bench gemm && cargo bench -p ferronet-benches --bench peak
    python benches/gemm_torch.py --torch-python /path/to/torch-venv/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
CRITERION = ROOT.parent / "target" / "criterion"

TORCH_CHILD = """
import json, sys, time, torch
torch.set_num_threads(int(sys.argv[1]))
out = {}
for shape in json.loads(sys.argv[2]):
    m, k, n, layout = shape
    a = torch.randn(k, m).t() if layout == "TN" else torch.randn(m, k)
    b = torch.randn(n, k).t() if layout == "NT" else torch.randn(k, n)
    c = torch.empty(m, n)
    reps = max(1, int(3e8 / (2 * m * k * n)))
    for _ in range(3):
        torch.mm(a, b, out=c)
    times = []
    for _ in range(9):
        t = time.perf_counter()
        for _ in range(reps):
            torch.mm(a, b, out=c)
        times.append((time.perf_counter() - t) / reps)
    out[f"{m}x{k}x{n}_{layout}"] = 2 * m * k * n / sorted(times)[4] / 1e9
print(json.dumps(out))
"""


def shapes() -> list[tuple[int, int, int, str]]:
    """The SHAPES table of the criterion bench, so both measure the same products."""
    text = (ROOT / "kernels" / "benches" / "gemm.rs").read_text()
    return [
        (int(m), int(k), int(n), lay) for m, k, n, lay in re.findall(r'\((\d+), (\d+), (\d+), "(\w\w)"', text)
    ]


def criterion_gflops(group: str, function: str, bench_id: str) -> float | None:
    d = CRITERION / group / function / bench_id / "new"
    if not d.exists():
        return None
    flops = json.loads((d / "benchmark.json").read_text())["throughput"]["Elements"]
    return flops / json.loads((d / "estimates.json").read_text())["median"]["point_estimate"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--torch-python", default=os.environ.get("FERRONET_TORCH_PYTHON", sys.executable))
    p.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    args = p.parse_args()
    todo = shapes()
    columns = ["m x k x n", "layout", "threads", "ferronet GFLOP/s", "torch.mm GFLOP/s", "ferronet / torch"]
    print("| " + " | ".join([*columns, "of peak"]) + " |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for t in args.threads:
        env = dict(os.environ, OMP_NUM_THREADS=str(t), MKL_NUM_THREADS=str(t))
        run = subprocess.run(
            [args.torch_python, "-c", TORCH_CHILD, str(t), json.dumps(todo)],
            env=env,
            capture_output=True,
            text=True,
        )
        torch = json.loads(run.stdout) if run.returncode == 0 else {}
        if not torch:
            print(
                f"torch.mm not measured ({args.torch_python}): {run.stderr.strip()[-200:]}", file=sys.stderr
            )
        peak = criterion_gflops("peak_fp32", "avx512_fma", f"t{t}")
        for m, k, n, layout in todo:
            key = f"{m}x{k}x{n}_{layout}"
            ours = criterion_gflops(f"gemm_t{t}", "ferronet", key)
            theirs = torch.get(key)
            cells = [
                f"{ours:.1f}" if ours else "-",
                f"{theirs:.1f}" if theirs else "-",
                f"{ours / theirs:.0%}" if ours and theirs else "-",
                f"{ours / peak:.0%}" if ours and peak else "-",
            ]
            print(f"| {m}x{k}x{n} | {layout} | {t} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()

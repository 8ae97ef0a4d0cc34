"""Prints the latest criterion results of the kernel benches as a markdown table.

    cargo bench -p ferronet-benches --bench gemm && python benches/criterion_table.py gemm_t1 gemm_t2

Rows are the benchmark ids, columns the functions; cells are the median throughput: in G/s
(GFLOP/s for GEMM and the peak, GB/s for the optimizer sweeps), per second for small counts
(samples/s for the conv layers), or the median time in microseconds for benches without one.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "target" / "criterion"


def cell(bench_dir: Path) -> str:
    info = json.loads((bench_dir / "new" / "benchmark.json").read_text())
    median_ns = json.loads((bench_dir / "new" / "estimates.json").read_text())["median"]["point_estimate"]
    throughput = info.get("throughput") or {}
    amount = throughput.get("Elements") or throughput.get("Bytes")
    if not amount:
        return f"{median_ns / 1e3:.1f} µs"
    per_ns = amount / median_ns
    return f"{per_ns:.1f}" if per_ns >= 0.1 else f"{per_ns * 1e9:,.0f}/s"


def table(group: str) -> None:
    functions = sorted(d.name for d in (ROOT / group).iterdir() if d.is_dir() and d.name != "report")
    ids: list[str] = []
    for f in functions:
        for d in sorted((ROOT / group / f).iterdir()):
            if d.is_dir() and d.name != "report" and d.name not in ids:
                ids.append(d.name)
    print(f"\n{group}\n")
    print("| shape | " + " | ".join(functions) + " |")
    print("| --- |" + " ---: |" * len(functions))
    for i in ids:
        dirs = [ROOT / group / f / i for f in functions]
        cells = [cell(d) if (d / "new").exists() else "-" for d in dirs]
        print(f"| {i} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    for g in sys.argv[1:]:
        table(g)

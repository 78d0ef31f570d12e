"""Benchmark the synthetic bank generator.

    uv run python bench/bench_generate.py --customers 1000000 --days 365

Generates into a temporary directory (deleted afterwards unless --keep), prints wall time,
rows per source, rows/s and peak RSS, and writes the numbers to bench/results/generate.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from c360.synth import generate  # noqa: E402


def _peak_rss_mb() -> dict[str, float]:
    """Peak resident set size of this process and of its (finished) worker children."""
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"main_mb": round(self_kb / 1024, 1), "largest_worker_mb": round(child_kb / 1024, 1)}


def _cpu_seconds() -> float:
    """User + system CPU time of this process and its finished workers."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--as-of", type=dt.date.fromisoformat, default=dt.date(2026, 6, 30))
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--dirty-rate", type=float, default=0.0)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--out", type=Path, default=None, help="landing dir (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the generated files")
    ap.add_argument("--results", type=Path, default=Path(__file__).parent / "results" / "generate.json")
    args = ap.parse_args()

    landing = args.out or Path(tempfile.mkdtemp(prefix="c360-bench-"))
    stage_times: dict[str, float] = {}
    t0 = time.perf_counter()
    last = {"stage": None}

    def progress(stage: str, done: int, total: int) -> None:
        if last["stage"] != stage:
            last["stage"] = stage
            print(f"[{time.perf_counter() - t0:7.1f}s] {stage} ...", flush=True)
        stage_times[stage] = round(time.perf_counter() - t0, 2)

    try:
        summary = generate(args.customers, args.days, args.as_of, args.seed, landing, args.dirty_rate,
                           progress=progress, workers=args.workers, overwrite=args.out is not None)
        wall = time.perf_counter() - t0
        size = _dir_size(landing)
    finally:
        if not args.keep:
            shutil.rmtree(landing, ignore_errors=True)

    rows = summary.rows_in_files
    total = sum(rows.values())
    result = {
        "customers": args.customers,
        "days": args.days,
        "as_of": args.as_of.isoformat(),
        "seed": args.seed,
        "dirty_rate": args.dirty_rate,
        "workers": args.workers,
        "wall_seconds": round(wall, 1),
        # CPU time is robust to other load on a shared machine: wall >= cpu / workers
        "cpu_seconds": round(_cpu_seconds(), 1),
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "stage_end_seconds": stage_times,
        "rows": rows,
        "rows_total": total,
        "rows_per_second": round(total / wall),
        "files_written": summary.files_written,
        "output_bytes": size,
        "peak_rss": _peak_rss_mb(),
        "truth": summary.truth,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
    }
    print(f"wall time      {wall:8.1f} s   (cpu {result['cpu_seconds']:.1f} s, "
          f"load average {result['load_average_1m_at_end']})")
    for source, n in rows.items():
        print(f"  {source:<20}{n:>14,}")
    print(f"  {'total':<20}{total:>14,}  ({total / wall:,.0f} rows/s)")
    print(f"output         {size / 1e9:8.2f} GB in {summary.files_written} files")
    print(f"peak RSS       main {result['peak_rss']['main_mb']:.0f} MB, "
          f"largest worker {result['peak_rss']['largest_worker_mb']:.0f} MB")
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"results written to {args.results}")


if __name__ == "__main__":
    main()

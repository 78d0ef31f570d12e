"""Stress test of the engine connection: many small ingests, failures counted.

    .venv/bin/python bench/stress_engine.py --runs 200
    .venv/bin/python bench/stress_engine.py --runs 20 --processes   # a fresh process per run

A small bank (``--customers``, ``--days``, core banking sources only by default) is
generated once into ``<dir>/landing``; each run then ingests it into a fresh lake, checks
the rows loaded against the generator's counts and removes the lake. By default every run
shares one engine in this process (as the test suite does); ``--processes`` starts a
``c360 run --steps ingest`` process per run instead (as ``c360 run`` does).

A run fails when ingest raises, a source reports an error, or a count differs; gRPC's
"Exception deserializing message!" log lines are counted separately (issue #25), and the
bytes of such a response are saved under ``<dir>/undecodable/`` and parsed once more (to
tell bytes that arrived damaged from a parse that went wrong). In-process runs call
``jobs.ingest.run`` directly, without the pipeline's retry of a step after a transient
engine error, so every such error counts; ``--processes`` runs go through ``c360 run``
(with the retry) and count a run whose output mentions a decode error. The summary (runs,
failures, decode errors, responses parsed and the largest, seconds) is printed and written
as JSON to ``--out`` when given.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("RUST_LOG", "warn")

CORE = ["customers", "product_catalog", "holdings", "transactions"]
AS_OF = date(2026, 6, 30)


class _DecodeErrors(logging.Handler):
    """Counts gRPC's 'Exception deserializing message!' log records."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "deserializing" in record.getMessage():
            self.count += 1


RESPONSES = {"count": 0, "largest_bytes": 0}  # every gRPC response the client parsed


def _keep_undecodable(folder: Path) -> None:
    """On a response gRPC cannot decode: save its bytes under ``folder`` and parse them once
    more, to tell bytes that arrived corrupt from a parse that went wrong."""
    import grpc._channel as channel
    from grpc import _common

    real = _common.deserialize

    def deserialize(data, deserializer):
        if data is not None:
            RESPONSES["count"] += 1
            RESPONSES["largest_bytes"] = max(RESPONSES["largest_bytes"], len(data))
        out = real(data, deserializer)
        if out is None and deserializer is not None and data is not None:
            folder.mkdir(parents=True, exist_ok=True)
            name = folder / f"undecodable-{time.time_ns()}.bin"
            name.write_bytes(bytes(data))
            try:
                deserializer(bytes(data))
                again = "parses on a second try: the bytes were intact"
            except Exception as exc:  # noqa: BLE001 - reported
                again = f"fails again ({exc}): the bytes themselves are corrupt"
            print(f"UNDECODABLE {len(data)} bytes saved to {name}; {again}", flush=True)
        return out

    channel._common.deserialize = deserialize


def make_landing(root: Path, customers: int, days: int, sources: list[str]) -> dict[str, int]:
    """Generate the bank once (kept between invocations) and return rows per source."""
    from c360.synth import generate

    landing = root / "landing"
    counts_file = root / "counts.json"
    if not counts_file.exists():
        shutil.rmtree(landing, ignore_errors=True)
        summary = generate(customers=customers, days=days, as_of=AS_OF, landing=landing, seed=42)
        for src in {p.name for p in landing.iterdir() if p.is_dir() and not p.name.startswith("_")} - set(sources):
            shutil.rmtree(landing / src)
        counts = {s: int(summary.rows_in_files[s]) for s in sources}
        counts_file.write_text(json.dumps(counts))
    return json.loads(counts_file.read_text())


def run_in_process(settings, runs: int, expected: dict[str, int], root: Path, keep: bool = False) -> list[str]:
    from c360.engine import spark_session
    from jobs import ingest

    failures: list[str] = []
    with spark_session(settings) as eng:
        for i in range(runs):
            lake = root / f"lake-{i}"
            shutil.rmtree(lake, ignore_errors=True)  # a kept or interrupted run's lake: start empty
            s = settings.with_paths(landing=root / "landing", lake=lake)
            failed = None
            try:
                res = ingest.run(eng.spark, s, as_of=AS_OF, sources=list(expected))
                loaded = {n: r.rows_loaded for n, r in res.items() if n in expected}  # not "(landing)": _meta/
                if loaded != expected:
                    failed = f"run {i}: rows loaded {loaded} != {expected}"
            except Exception as exc:  # counted, then the next run
                failed = f"run {i}: {type(exc).__name__}: {str(exc)[:1000]}"
            if failed:
                failures.append(failed)
                print("FAILED", failed, flush=True)
            if failed and keep:
                print(f"lake kept at {lake}", flush=True)
            else:
                shutil.rmtree(lake, ignore_errors=True)
            print(f"run {i + 1}/{runs}: {len(failures)} failed so far", flush=True)
    return failures


def run_in_processes(runs: int, root: Path) -> list[str]:
    failures: list[str] = []
    for i in range(runs):
        lake = root / f"lake-{i}"
        shutil.rmtree(lake, ignore_errors=True)
        proc = subprocess.run([sys.executable, "-m", "c360.cli", "run", "--as-of", AS_OF.isoformat(),
                               "--landing", str(root / "landing"), "--lake", str(lake), "--steps", "ingest"],
                              cwd=ROOT, capture_output=True, text=True)
        out = proc.stdout + proc.stderr
        if proc.returncode != 0 or "deserializing" in out:
            failures.append(f"run {i}: exit {proc.returncode}: {out[-1500:]}")
            print("FAILED", failures[-1], flush=True)
        shutil.rmtree(lake, ignore_errors=True)
        print(f"run {i + 1}/{runs}: {len(failures)} failed so far", flush=True)
    return failures


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--customers", type=int, default=1229)
    ap.add_argument("--days", type=int, default=60)
    ap.add_argument("--all-sources", action="store_true", help="every source, not only core banking")
    ap.add_argument("--processes", action="store_true", help="a fresh c360 process per run")
    ap.add_argument("--dir", type=Path, default=None, help="working directory (default: a temporary one)")
    ap.add_argument("--keep-failed", action="store_true", help="keep the lake of a failed run")
    ap.add_argument("--out", type=Path, default=None, help="write the summary here as JSON")
    args = ap.parse_args(argv)

    from c360.contract import SOURCES
    from c360.settings import load_settings

    root = args.dir or Path(tempfile.mkdtemp(prefix="c360-stress-"))
    root.mkdir(parents=True, exist_ok=True)
    sources = list(SOURCES) if args.all_sources else CORE
    expected = make_landing(root, args.customers, args.days, sources)
    _keep_undecodable(root / "undecodable")
    decode = _DecodeErrors()
    logging.getLogger("grpc").addHandler(decode)
    logging.getLogger().addHandler(logging.StreamHandler())
    logging.getLogger().setLevel(logging.WARNING)
    t0 = time.perf_counter()
    if args.processes:
        failures = run_in_processes(args.runs, root)
    else:
        failures = run_in_process(load_settings(), args.runs, expected, root, args.keep_failed)
    summary = {"runs": args.runs, "failures": len(failures), "decode_errors_logged": decode.count,
               "seconds": round(time.perf_counter() - t0, 1), "processes": args.processes,
               "responses_parsed": RESPONSES["count"], "largest_response_bytes": RESPONSES["largest_bytes"],
               "customers": args.customers, "days": args.days, "sources": sources, "details": failures}
    print(json.dumps(summary, indent=1))
    if args.out:
        args.out.write_text(json.dumps(summary, indent=1))
    if args.dir is None:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

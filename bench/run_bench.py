"""End-to-end benchmark of the pipeline: full rebuild, daily run, engines compared, maintenance.

    uv run --frozen python bench/run_bench.py --customers 20000 --days 395
    make bench CUSTOMERS=1000000 DAYS=365 BENCH_DIR=/data/bench

Phases, in order (``--phases`` picks some; each is timed separately):

generate  a synthetic bank of ``days + 1`` days ending the day after ``--as-of``; the last
          day's deliveries are held back in ``<bench-dir>/held_back`` (the next day's data).
          An existing landing generated with the same parameters is reused.
full      a fresh lake; every step of ``jobs.pipeline.STEPS`` for ``--as-of``.
compare   the profile's transaction aggregation on the same silver transactions: by hand
          in DuckDB (the single-node reference), with the pipeline's code on Sail, and
          with the same code on classic local JVM Spark (a subprocess); outputs checked
          against each other.
daily     the held-back day is delivered into the landing zone, then the daily steps run
          for ``--as-of + 1`` (ingest, silver, profile, segments, score, export).
          ``--redo daily`` first rewinds the lake to before the earlier daily run (Delta
          restore), so the same day is measured again in a fresh process.
layout    which files and partitions the daily run wrote (from the Delta logs), and file
          counts and average file size per table.
models    train (next best product and attrition; month-end profiles missing from
          gold/customer_360 are computed first, inside the step's time), then score and
          export, for the lake's latest as_of: the scoring half of a daily run once a
          champion exists.
maintain  ``jobs.maintain`` (compaction, vacuum, checkpoint) over every table, timed.

Per step: wall time, rows in (read from the landing zone, or rows of the step's input
tables), rows written (rows in the files the step's commits added), rows/s, and the peak
resident memory of the whole process tree: this process, the embedded Sail engine that
lives in it, the generator's workers and the JVM subprocess (sampled every 0.2 s).

Everything generated goes to ``--bench-dir`` (``$BENCH_DIR``, default /tmp/c360-bench),
never into the repository. Progress is kept in ``<bench-dir>/state.json``: run again with
the same parameters and finished phases are not redone (``--fresh`` starts over). The
results go to ``bench/results/<name>.json`` and ``.md``, rewritten after every phase.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT, ROOT / "bench"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))
os.environ.setdefault("RUST_LOG", "warn")
# A generated bank: the bench asks for development mode (the public built-in PII key) unless
# the caller sets C360_ENV (and then a key).
os.environ.setdefault("C360_ENV", "development")

import txn_features  # noqa: E402

PHASES = ("generate", "full", "compare", "daily", "layout", "models", "maintain")
MODEL_STEPS = ("train", "score", "export")
DAILY_STEPS = ("ingest", "silver", "profile", "segments", "score", "export")
BOOKKEEPING = ("ops/run_log", "ops/audit_log")
T0 = time.perf_counter()


def say(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:8.1f}s] {msg}", flush=True)


# --------------------------------------------------------------------------- memory

class MemorySampler:
    """Polls the resident memory of this process and all its descendants.

    ``tree``: this process (Python, the embedded Sail engine, DuckDB) plus children (the
    generator's workers, the JVM subprocess); ``children``: the descendants only. RSS
    counts pages shared between a parent and its forked workers in both, so the sum can
    overstate memory use a little while the generator's workers run.
    """

    def __init__(self, interval: float = 0.2):
        self.interval = interval
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.peak = [0, 0]  # whole run: [tree, children] bytes
        self.windows: dict[str, list[int]] = {}  # named windows, e.g. "phase", "step"
        try:
            import psutil

            self._me = psutil.Process(os.getpid())
            self._psutil = psutil
        except ImportError:  # pragma: no cover - psutil is a dependency; /proc as a fallback
            self._me = self._psutil = None
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)

    def _sample(self) -> tuple[int, int]:
        try:
            if self._me is not None:
                me = self._me.memory_info().rss
                kids = 0
                for c in self._me.children(recursive=True):
                    try:
                        kids += c.memory_info().rss
                    except (self._psutil.NoSuchProcess, self._psutil.AccessDenied):
                        pass
                return me + kids, kids
            return _proc_tree_rss(os.getpid())
        except Exception:  # noqa: BLE001 - a process may vanish between listing and reading
            return 0, 0

    def _update(self, tree: int, kids: int) -> None:
        with self._lock:
            for w in (self.peak, *self.windows.values()):
                w[0], w[1] = max(w[0], tree), max(w[1], kids)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._update(*self._sample())
            self._stop.wait(self.interval)

    def start(self) -> "MemorySampler":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def reset_window(self, name: str = "step") -> None:
        tree, kids = self._sample()
        with self._lock:
            self.windows[name] = [tree, kids]

    def window_mb(self, name: str = "step") -> dict[str, float]:
        self._update(*self._sample())
        with self._lock:
            tree, kids = self.windows.get(name, self.peak)
        return {"peak_rss_mb": round(tree / 2**20, 1), "peak_children_rss_mb": round(kids / 2**20, 1)}


def _proc_tree_rss(pid: int) -> tuple[int, int]:
    """(tree, children) RSS in bytes from /proc (no psutil)."""
    page = os.sysconf("SC_PAGE_SIZE")
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text().rsplit(")", 1)[1].split()
            parents[int(d.name)] = int(stat[1])
            rss[int(d.name)] = int(stat[21]) * page
        except (OSError, IndexError, ValueError):
            continue
    kids, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier} - kids
        kids |= frontier
    k = sum(rss.get(p, 0) for p in kids)
    return rss.get(pid, 0) + k, k


# --------------------------------------------------------------------------- Delta logs

def commits(path: str, after: int | None, upto: int | None) -> list[dict]:
    """Actions of the commits ``after < version <= upto`` of one table (from its JSON log):
    per commit the operation, files added (path, bytes, rows, partition values) and removed."""
    log = Path(path) / "_delta_log"
    if upto is None or not log.is_dir():
        return []
    out = []
    for v in range((after if after is not None else -1) + 1, upto + 1):
        f = log / f"{v:020d}.json"
        if not f.exists():
            continue
        c = {"version": v, "operation": None, "added": [], "removed": 0}
        for line in f.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            a = json.loads(line)
            if "commitInfo" in a:
                c["operation"] = a["commitInfo"].get("operation")
            elif "add" in a:
                add = a["add"]
                stats = add.get("stats")
                rows = None
                if stats:
                    try:
                        rows = json.loads(stats).get("numRecords")
                    except (TypeError, ValueError):
                        rows = None
                c["added"].append({"path": add.get("path"), "bytes": add.get("size", 0), "rows": rows,
                                   "partition": add.get("partitionValues") or {}})
            elif "remove" in a:
                c["removed"] += 1
        out.append(c)
    return out


def summarize_commits(cs: list[dict]) -> dict:
    added = [a for c in cs for a in c["added"]]
    parts = sorted({", ".join(f"{k}={v}" for k, v in sorted(a["partition"].items())) for a in added} - {""})
    return {"commits": len(cs), "operations": sorted({c["operation"] or "?" for c in cs}),
            "files_added": len(added), "files_removed": sum(c["removed"] for c in cs),
            "bytes_added": sum(a["bytes"] or 0 for a in added),
            "rows_written": sum(a["rows"] or 0 for a in added),
            "partitions_written": parts}


def partition_columns(path: str) -> list[str]:
    from deltalake import DeltaTable

    return list(DeltaTable(path).metadata().partition_columns)


def table_rows(path: str, as_of: dt.date | None = None) -> int | None:
    """Rows of the current version from the log's statistics; for a table partitioned by
    ``as_of_date``, only the ``as_of`` partition (what the steps read)."""
    from deltalake import DeltaTable

    if not (Path(path) / "_delta_log").is_dir():
        return None
    t = DeltaTable(path)
    actions = t.get_add_actions(flatten=True)
    if "num_records" not in actions.schema.names:
        return None
    nums = actions.column("num_records").to_pylist()
    if as_of is not None and "as_of_date" in t.metadata().partition_columns:
        col = next((c for c in actions.schema.names if c in ("partition.as_of_date", "partition_values.as_of_date")),
                   None)
        if col is not None:
            days = [str(d) for d in actions.column(col).to_pylist()]
            nums = [n for n, d in zip(nums, days) if d == as_of.isoformat()]
    return int(sum(n for n in nums if n is not None))


def _files_and_partitions(path: str, version: int | None) -> tuple[int | None, set[str]]:
    """Files and partition values (``k=v, ...``) of one version of a table (None: no table then)."""
    from deltalake import DeltaTable

    if version is None:
        return None, set()
    actions = DeltaTable(path, version=version).get_add_actions(flatten=True)
    pcols = [c for c in actions.schema.names if c.startswith("partition.")]
    if not pcols:
        return actions.num_rows, set()
    cols = {c.removeprefix("partition."): [str(v) for v in actions.column(c).to_pylist()] for c in pcols}
    parts = {", ".join(f"{k}={cols[k][i]}" for k in sorted(cols)) for i in range(actions.num_rows)}
    return actions.num_rows, parts


def file_layout(lake_dir: Path) -> dict[str, dict]:
    """Files, bytes, average file size and partitions of every table's current version."""
    from deltalake import DeltaTable

    from c360 import lake

    out = {}
    for name in lake.tables(lake_dir):
        if "/_" in name:
            continue
        t = DeltaTable(str(lake_dir / name))
        actions = t.get_add_actions(flatten=True)
        sizes = [s or 0 for s in actions.column("size_bytes").to_pylist()] if actions.num_rows else []
        rows = (sum(n or 0 for n in actions.column("num_records").to_pylist())
                if "num_records" in actions.schema.names else None)
        pcols = list(t.metadata().partition_columns)
        out[name] = {"files": actions.num_rows, "bytes": sum(sizes), "rows": rows,
                     "avg_file_mb": round(sum(sizes) / len(sizes) / 1e6, 3) if sizes else 0.0,
                     "partition_columns": pcols, "version": t.version()}
    return out


# --------------------------------------------------------------------------- bench

class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.dir = Path(args.bench_dir).resolve()
        if self.dir == ROOT or ROOT in self.dir.parents:
            raise SystemExit(f"--bench-dir {self.dir} is inside the repository; choose a directory outside it")
        self.landing = self.dir / "landing"
        self.held = self.dir / "held_back"
        self.lake = self.dir / "lake"
        self.as_of: dt.date = args.as_of
        self.next_day = self.as_of + dt.timedelta(days=1)
        self.params = {"customers": args.customers, "days": args.days, "as_of": self.as_of.isoformat(),
                       "seed": args.seed, "dirty_rate": args.dirty_rate}
        if args.full_steps:
            self.params["full_steps"] = args.full_steps
        self.state_path = self.dir / "state.json"
        self.state = self._load_state()
        self.mem = MemorySampler().start()
        self.engine = None
        self._engine_cm = None
        self.settings = None
        self.previous: dict[str, dict] = {}  # a phase's result from an earlier run, while it is redone

    # ---- state and results

    def _load_state(self) -> dict:
        if self.state_path.exists() and not self.args.fresh:
            state = json.loads(self.state_path.read_text(encoding="utf-8"))
            if state.get("params") == self.params:
                return state
            say(f"{self.state_path}: other parameters ({state.get('params')}); starting over")
        return {"params": self.params, "phases": {}}

    def save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=1, default=str), encoding="utf-8")
        tmp.replace(self.state_path)
        write_results(self)

    def done(self, phase: str) -> bool:
        return self.state["phases"].get(phase, {}).get("status") == "succeeded"

    # ---- engine

    def settings_(self):
        if self.settings is None:
            from c360.settings import load_settings

            self.settings = load_settings().with_paths(landing=self.landing, lake=self.lake)
        return self.settings

    def spark(self):
        if self.engine is None:
            from c360.engine import spark_session

            self._engine_cm = spark_session(self.settings_())
            self.engine = self._engine_cm.__enter__()
            say(f"engine: {'embedded Sail' if self.engine.embedded else 'Spark Connect'} at {self.engine.url}")
        return self.engine.spark

    def close(self) -> None:
        if self._engine_cm is not None:
            self._engine_cm.__exit__(None, None, None)
            self._engine_cm = self.engine = None
        self.mem.stop()

    # ---- phases

    def run(self) -> int:
        wanted = [p for p in PHASES if p in self.args.phases]
        status = 0
        try:
            for phase in wanted:
                if self.done(phase) and phase != "generate" and phase not in self.args.redo:
                    say(f"{phase}: done in an earlier run with the same parameters (--fresh to redo)")
                    continue
                say(f"=== {phase}")
                self.previous[phase] = self.state["phases"].get(phase, {})
                started = time.perf_counter()
                self.mem.reset_window("phase")
                self.state["phases"][phase] = {"status": "running"}
                try:
                    result = getattr(self, f"phase_{phase}")()
                except Exception as exc:  # noqa: BLE001 - record it, keep what was measured
                    self.state["phases"][phase] = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"[:2000],
                                                   **self.state["phases"][phase].get("partial", {})}
                    self.save()
                    say(f"{phase} FAILED: {type(exc).__name__}: {str(exc)[:500]}")
                    if self.args.debug:
                        raise
                    status = 1
                    break
                result.update(status="succeeded", seconds=round(time.perf_counter() - started, 2),
                              **self.mem.window_mb("phase"))
                self.state["phases"][phase] = result
                self.save()
                say(f"{phase}: {result['seconds']:.1f} s, peak RSS {result['peak_rss_mb']:,.0f} MB")
        finally:
            self.close()
        self.state["finished_at"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        self.save()
        print()
        print(Path(self.args.results_md).read_text(encoding="utf-8"))
        return status

    def phase_generate(self) -> dict:
        from c360.synth import generate

        meta = self.landing / "_meta" / "generation.json"
        want = {"customers": self.args.customers, "days": self.args.days + 1, "as_of": self.next_day.isoformat(),
                "seed": self.args.seed, "dirty_rate": self.args.dirty_rate}
        if meta.exists() and not self.args.fresh:
            have = json.loads(meta.read_text(encoding="utf-8"))
            day = self.next_day.isoformat()
            next_day_there = (self.held / "transactions" / day).is_dir() or \
                (self.landing / "transactions" / day).is_dir()
            if {k: have.get(k) for k in want} == want and next_day_there:
                say(f"reusing the landing zone in {self.landing} (same parameters)")
                prev = self.state["phases"].get("generate", {})
                return {"reused": True, "rows": have["rows_in_files"], "rows_total": sum(have["rows_in_files"].values()),
                        "files": have.get("files_written"),
                        **{k: prev[k] for k in ("generate_seconds", "rows_per_second", "bytes") if k in prev}}
            say(f"{meta} has other parameters: generating again")
        shutil.rmtree(self.held, ignore_errors=True)
        # a new landing zone: any lake built from the old one is stale
        shutil.rmtree(self.lake, ignore_errors=True)
        for p in ("full", "compare", "daily", "layout", "models", "maintain"):
            self.state["phases"].pop(p, None)
        last = {"stage": None}

        def progress(stage: str, done: int, total: int) -> None:
            if last["stage"] != stage or done == total or done % max(1, total // 10) == 0:
                say(f"  generate: {stage} {done}/{total}")
                last["stage"] = stage

        t = time.perf_counter()
        summary = generate(self.args.customers, self.args.days + 1, self.next_day, self.args.seed, self.landing,
                           self.args.dirty_rate, progress=progress, workers=self.args.workers, overwrite=True)
        wall = time.perf_counter() - t
        self.hold_back()
        total = sum(summary.rows_in_files.values())
        return {"reused": False, "generate_seconds": round(wall, 1), "rows": summary.rows_in_files,
                "rows_total": total, "rows_per_second": round(total / wall) if wall else None,
                "files": summary.files_written,
                "bytes": sum(f.stat().st_size for f in self.landing.rglob("*") if f.is_file())}

    def hold_back(self) -> dict[str, int]:
        """Move the next day's delivery folders from the landing zone to ``held_back``."""
        day = self.next_day.isoformat()
        moved = {}
        for src in sorted(p for p in self.landing.iterdir() if p.is_dir() and not p.name.startswith("_")):
            folder = src / day
            if folder.is_dir():
                dest = self.held / src.name / day
                dest.parent.mkdir(parents=True, exist_ok=True)
                if dest.exists():
                    shutil.rmtree(dest)
                shutil.move(str(folder), str(dest))
                moved[src.name] = sum(1 for _ in dest.rglob("*") if _.is_file())
        return moved

    def deliver(self) -> dict[str, dict]:
        """Move the held-back day into the landing zone; files and bytes per source."""
        day = self.next_day.isoformat()
        out = {}
        if not self.held.is_dir():
            raise RuntimeError(f"{self.held} is missing: run the generate phase")
        for src in sorted(p for p in self.held.iterdir() if p.is_dir()):
            folder = src / day
            if not folder.is_dir():
                continue
            files = [f for f in folder.rglob("*") if f.is_file()]
            out[src.name] = {"files": len(files), "bytes": sum(f.stat().st_size for f in files)}
            dest = self.landing / src.name / day
            if dest.exists():
                shutil.rmtree(dest)
            shutil.move(str(folder), str(dest))
        return out

    def _steps(self, as_of: dt.date, names: list, phase: str) -> dict:
        """Run the steps ``names`` in order for ``as_of``."""
        from c360 import ops
        from jobs import pipeline

        settings = self.settings_()
        spark = self.spark()
        run_id = f"bench-{phase}-{uuid.uuid4().hex[:6]}"
        steps: list[dict] = []
        partial = self.state["phases"][phase].setdefault("partial", {})
        partial["steps"] = steps
        last = {"stage": None}

        def progress(stage: str, done: int, total: int) -> None:
            if stage != last["stage"]:
                last["stage"] = stage
                say(f"    {stage} ({done}/{total})")

        versions_start = ops.snapshot_versions(self.lake)
        for i, name in enumerate(names):
            say(f"  {phase} [{i + 1}/{len(names)}] {name} (as_of {as_of})")
            before = ops.snapshot_versions(self.lake)
            inputs = pipeline.STEP_INPUTS.get(name, ()) if hasattr(pipeline, "STEP_INPUTS") else ()
            rows_in_tables = self._input_rows(inputs, before, as_of)
            self.mem.reset_window()
            t = time.perf_counter()
            res = pipeline.run_step(spark, settings, name, as_of, run_id=run_id, progress=progress)
            wall = time.perf_counter() - t
            mem = self.mem.window_mb()
            after = ops.snapshot_versions(self.lake)
            outputs = {tb: v for tb, v in after.items()
                       if before.get(tb) != v and tb not in BOOKKEEPING and "/_" not in tb}
            writes = {tb: summarize_commits(commits(str(self.lake / tb), before.get(tb), v)) for tb, v in outputs.items()}
            metrics = res.metrics or {}
            per_source = {k: m for k, m in metrics.items() if isinstance(m, dict) and "rows_read" in m}
            if name == "ingest":
                rows_in = sum(int(m.get("rows_read") or 0) for m in per_source.values())
                rows_loaded = sum(int(m.get("rows_loaded") or 0) for m in per_source.values())
            else:
                rows_in, rows_loaded = sum(rows_in_tables.values()), None
            rows_written = sum(w["rows_written"] for w in writes.values())
            rec = {"step": name, "seconds": round(wall, 2), "rows_in": rows_in, "rows_written": rows_written,
                   "rows_per_second": round(rows_in / wall) if wall and rows_in else None,
                   **mem, "load_avg_1m": round(os.getloadavg()[0], 1), "input_rows": rows_in_tables, "writes": writes,
                   "output_rows": self._audit_counts(run_id, name)}
            if rows_loaded is not None:
                rec["rows_loaded"] = rows_loaded
                rec["ingest"] = {k: {f: m.get(f) for f in ("files_new", "rows_read", "rows_loaded", "rows_quarantined")}
                                 for k, m in per_source.items()}
            if name == "train":  # where the time went, per model (data, sample, fit, evaluate, log)
                rec["timings"] = {k: v.get("timings") for k, v in metrics.items() if isinstance(v, dict)}
            steps.append(rec)
            self.save()
            say(f"  {phase} {name}: {wall:.1f} s, rows in {rows_in:,}, rows written {rows_written:,}, "
                f"peak RSS {mem['peak_rss_mb']:,.0f} MB")
        versions_end = ops.snapshot_versions(self.lake)
        total = round(sum(s["seconds"] for s in steps), 2)
        return {"as_of": as_of.isoformat(), "run_id": run_id, "steps": steps, "steps_seconds": total,
                "versions_before": versions_start, "versions_after": versions_end}

    def _input_rows(self, inputs, versions: dict[str, int], as_of: dt.date) -> dict[str, int]:
        out = {}
        for t in versions:
            if "/_" in t or not any(t == w or (w.endswith("/") and t.startswith(w)) for w in inputs):
                continue
            if t.startswith("ops/"):
                continue  # bookkeeping inputs (ingested files, persona models): not data rows
            n = table_rows(str(self.lake / t), as_of)
            if n is not None:
                out[t] = n
        return out

    def _audit_counts(self, run_id: str, job: str) -> dict[str, int]:
        """``row_counts`` of the step's ``ops/audit_log`` row (rows in each output table after it)."""
        path = self.lake / "ops" / "audit_log"
        if not (path / "_delta_log").is_dir():
            return {}
        try:
            import pyarrow.dataset as ds
            from deltalake import DeltaTable

            t = DeltaTable(str(path)).to_pyarrow_dataset().to_table(
                columns=["row_counts"], filter=(ds.field("run_id") == run_id) & (ds.field("job") == job))
            rows = t.column("row_counts").to_pylist()
            return dict(rows[-1]) if rows and rows[-1] else {}
        except Exception as exc:  # noqa: BLE001 - informative only
            return {"_error": str(exc)[:200]}

    def phase_full(self) -> dict:
        from jobs import pipeline

        moved = self.hold_back()  # a previous daily phase may have delivered it
        if moved:
            say(f"  held back again: {moved}")
        names = [s for s in pipeline.STEPS if not self.args.full_steps or s in self.args.full_steps]
        if "ingest" not in names:
            # the later steps of a full run that stopped: they continue on the lake as it is
            say(f"  continuing on the lake {self.lake} (steps {', '.join(names)})")
        elif self.lake.exists():
            say(f"  removing the previous lake {self.lake}")
            shutil.rmtree(self.lake)
        for p in ("compare", "daily", "layout", "models", "maintain"):
            self.state["phases"].pop(p, None)
        res = self._steps(self.as_of, names, "full")
        res["lake_as_of"] = self.as_of.isoformat()
        self.state["lake_as_of"] = self.as_of.isoformat()
        res["layout"] = file_layout(self.lake)
        return res

    def phase_daily(self) -> dict:
        from jobs import pipeline

        if not self.done("full"):
            raise RuntimeError("the daily phase needs the full phase first")
        before = self.previous.get("daily", {}).get("versions_before")
        if before and self.state.get("lake_as_of") == self.next_day.isoformat():
            self.rewind(before)
        delivered = self.deliver()
        say(f"  delivered {self.next_day}: " + ", ".join(f"{k} {v['files']} file(s)" for k, v in delivered.items()))
        names = [s for s in self.args.daily_steps if s in pipeline.STEPS]
        res = self._steps(self.next_day, names, "daily")
        self.state["lake_as_of"] = self.next_day.isoformat()
        res["delivered"] = delivered
        return res

    def rewind(self, versions: dict[str, int]) -> None:
        """Put the lake back as it was before an earlier daily run (``--redo daily`` measures
        the same day again without a new full phase): every Delta table is restored to its
        version then (delta-rs ``restore``, a new commit), tables that run created are removed,
        and the day's deliveries go back to ``held_back``. Files the export step wrote are
        overwritten by the new run."""
        from deltalake import DeltaTable

        from c360 import ops

        restored, removed = 0, 0
        for table, version in sorted(ops.snapshot_versions(self.lake).items()):
            if "/_" in table:
                continue
            if table not in versions:
                shutil.rmtree(self.lake / table)
                removed += 1
            elif version != versions[table]:
                DeltaTable(str(self.lake / table)).restore(versions[table])
                restored += 1
        moved = self.hold_back()
        self.state["lake_as_of"] = self.as_of.isoformat()
        say(f"  rewound the lake to before the earlier daily run: {restored} table(s) restored, "
            f"{removed} removed, {sum(moved.values())} delivery file(s) held back again")

    def phase_models(self) -> dict:
        if not (self.done("full") and self.state.get("lake_as_of")):
            raise RuntimeError("the models phase needs the full phase first")
        as_of = dt.date.fromisoformat(self.state["lake_as_of"])
        return self._steps(as_of, list(MODEL_STEPS), "models")

    def phase_layout(self) -> dict:
        daily = self.state["phases"].get("daily", {})
        if daily.get("status") != "succeeded":
            raise RuntimeError("the layout phase reads the daily run's commits: run the daily phase first")
        before, after = daily["versions_before"], daily["versions_after"]
        written = {}
        for t, v in sorted(after.items()):
            if before.get(t) == v or "/_" in t:
                continue
            cs = commits(str(self.lake / t), before.get(t), v)
            s = summarize_commits(cs)
            before_files, before_parts = _files_and_partitions(str(self.lake / t), before.get(t))
            s["files_before"] = before_files
            s["partition_columns"] = partition_columns(str(self.lake / t))
            new_parts = [p for p in s["partitions_written"] if p not in before_parts]
            s["new_partitions"] = len(new_parts)
            if s["files_removed"]:
                s["kind"] = "rewrote existing files"
            elif s["partition_columns"] and len(new_parts) == len(s["partitions_written"]):
                s["kind"] = "new partitions only"
            elif s["partition_columns"]:
                s["kind"] = "added files to existing partitions"
            else:
                s["kind"] = "appended files (no partitions, none rewritten)"
            written[t] = s
        return {"daily_as_of": daily["as_of"], "tables_written": written, "layout": file_layout(self.lake)}

    def phase_compare(self) -> dict:
        import duckdb
        from deltalake import DeltaTable

        from c360 import lake

        settings = self.settings_()
        as_of = dt.date.fromisoformat(self.state.get("lake_as_of") or self.as_of.isoformat())
        path = lake.table_path(self.lake, "silver", "transactions")
        if not lake.exists(path):
            raise RuntimeError(f"{path} does not exist: run the full phase first")
        table = DeltaTable(path)
        features = set(getattr(table.protocol(), "writer_features", None) or [])
        if "deletionVectors" in features:
            raise RuntimeError("silver/transactions uses deletion vectors: its files cannot be read as plain Parquet")
        files = table.file_uris()
        rows_in = table_rows(path)
        out_dir = self.dir / "compare"
        shutil.rmtree(out_dir, ignore_errors=True)
        out_dir.mkdir(parents=True)
        conf = settings.profile.as_dict()
        tz = settings.bank.timezone
        res: dict = {"as_of": as_of.isoformat(), "rows_in": rows_in, "files_in": len(files),
                     "bytes_in": sum(Path(f.removeprefix("file://")).stat().st_size for f in files
                                     if Path(f.removeprefix("file://")).exists()),
                     "features": len(txn_features.feature_columns()), "engines": {}}
        partial = self.state["phases"]["compare"].setdefault("partial", {})
        partial["engines"] = res["engines"]

        # (c1) DuckDB, by hand, over the table's current Parquet files
        say(f"  duckdb: {len(files)} file(s), {rows_in:,} rows")
        self.mem.reset_window()
        t = time.perf_counter()
        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET preserve_insertion_order = false")
        if self.args.duckdb_threads:
            con.execute(f"SET threads = {int(self.args.duckdb_threads)}")
        src = txn_features.parquet_source(files)
        sql = txn_features.duckdb_sql(src, txn_features.txn_ts_is_tz(con, src), as_of, tz, conf)
        duck_out = out_dir / "duckdb.parquet"
        con.execute(f"COPY ({sql}) TO '{duck_out}' (FORMAT parquet)")
        wall = time.perf_counter() - t
        rows_out = con.execute(f"SELECT count(*) FROM read_parquet('{duck_out}')").fetchone()[0]
        threads = con.execute("SELECT current_setting('threads')").fetchone()[0]
        res["engines"]["duckdb"] = {"seconds": round(wall, 2), "rows_out": rows_out, "load_avg_1m": round(os.getloadavg()[0], 1),
                                    "rows_per_second": round(rows_in / wall), "threads": threads,
                                    "duckdb_version": duckdb.__version__, **self.mem.window_mb()}
        say(f"  duckdb: {wall:.1f} s, {rows_out:,} customers")
        self.save()

        # (c2) the pipeline's code on the engine (Sail unless SPARK_REMOTE says otherwise)
        spark = self.spark()
        self.mem.reset_window()
        t = time.perf_counter()
        df = txn_features.spark_txn_features(lake.read(spark, path), as_of, tz, conf)
        sail_out = out_dir / "sail"
        df.write.mode("overwrite").parquet(str(sail_out))
        wall = time.perf_counter() - t
        rows_out = con.execute(f"SELECT count(*) FROM read_parquet('{sail_out}/*.parquet')").fetchone()[0]
        res["engines"]["sail"] = {"seconds": round(wall, 2), "rows_out": rows_out, "load_avg_1m": round(os.getloadavg()[0], 1),
                                  "rows_per_second": round(rows_in / wall), "engine_url": self.engine.url,
                                  "embedded": self.engine.embedded, **self.mem.window_mb()}
        say(f"  sail: {wall:.1f} s, {rows_out:,} customers")
        self.save()

        # (d) the same code on classic local JVM Spark, in a subprocess
        if self.args.no_jvm or shutil.which("java") is None:
            res["engines"]["jvm"] = {"skipped": "--no-jvm" if self.args.no_jvm else "java not installed"}
        else:
            jvm_out = out_dir / "jvm"
            req = {"files": files, "as_of": as_of.isoformat(), "bank_timezone": tz, "profile_conf": conf,
                   "out": str(jvm_out), "driver_memory": self.args.jvm_memory, "cores": self.args.jvm_cores,
                   "shuffle_partitions": settings.engine.shuffle_partitions}
            req_path = out_dir / "jvm_request.json"
            req_path.write_text(json.dumps(req, default=str), encoding="utf-8")
            env = {k: v for k, v in os.environ.items()
                   if k not in ("SPARK_REMOTE", "SPARK_CONNECT_MODE_ENABLED", "SPARK_LOCAL_REMOTE",
                                "PYSPARK_SUBMIT_ARGS", "SPARK_HOME")}
            say(f"  jvm: classic local[{self.args.jvm_cores}] Spark, driver memory {self.args.jvm_memory}")
            self.mem.reset_window()
            t = time.perf_counter()
            proc = subprocess.run([sys.executable, str(ROOT / "bench" / "jvm_txn.py"), str(req_path)], cwd=ROOT,
                                  env=env, capture_output=True, text=True, timeout=self.args.jvm_timeout)
            wall = time.perf_counter() - t
            mem = self.mem.window_mb()
            if proc.returncode != 0:
                tail = "\n".join((proc.stderr or proc.stdout).splitlines()[-15:])
                res["engines"]["jvm"] = {"error": f"exit {proc.returncode}: {tail[-1500:]}", "process_seconds": wall}
                say(f"  jvm FAILED (exit {proc.returncode}):\n{tail}")
            else:
                info = json.loads(proc.stdout.strip().splitlines()[-1])
                res["engines"]["jvm"] = {**info, "process_seconds": round(wall, 2), "load_avg_1m": round(os.getloadavg()[0], 1),
                                         "rows_per_second": round(rows_in / info["seconds"]),
                                         "peak_rss_mb": mem["peak_children_rss_mb"],
                                         "peak_tree_rss_mb": mem["peak_rss_mb"]}
                say(f"  jvm: {info['seconds']:.1f} s aggregation (+{info['startup_seconds']:.1f} s JVM start), "
                    f"{info['rows_out']:,} customers")
        self.save()

        # (e) the same code on a Spark standalone cluster of this machine (--cluster): two
        # workers of one core, Delta Lake, through Spark Connect (c360/cluster.py)
        cluster_out = out_dir / "cluster"
        if self.args.cluster:
            res["engines"]["cluster"] = self.compare_on_cluster(path, as_of, tz, conf, cluster_out, rows_in)
            self.save()

        # self-check: the hand-written DuckDB SQL, the JVM and the cluster agree with Sail
        checks = {}
        sail_src = f"read_parquet('{sail_out}/*.parquet')"
        checks["duckdb_vs_sail"] = txn_features.compare_outputs(con, f"read_parquet('{duck_out}')", sail_src)
        if "seconds" in res["engines"].get("jvm", {}):
            checks["jvm_vs_sail"] = txn_features.compare_outputs(con, f"read_parquet('{jvm_out}/*.parquet')", sail_src)
        if "seconds" in res["engines"].get("cluster", {}):
            checks["cluster_vs_sail"] = txn_features.compare_outputs(con, f"read_parquet('{cluster_out}/*.parquet')",
                                                                     sail_src)
        res["checks"] = checks
        for k, c in checks.items():
            say(f"  check {k}: {'MATCH' if c['match'] else 'MISMATCH'} ({c['customers_compared']:,} customers, "
                f"{c['features_compared']} features, {c['customers_differing']} differing)")
        e = res["engines"]
        res["ratios"] = {
            "sail_over_duckdb": round(e["sail"]["seconds"] / e["duckdb"]["seconds"], 2),
            "jvm_over_sail": (round(e["jvm"]["seconds"] / e["sail"]["seconds"], 2) if "seconds" in e.get("jvm", {})
                              else None),
            "jvm_with_startup_over_sail": (round(e["jvm"]["process_seconds"] / e["sail"]["seconds"], 2)
                                           if "seconds" in e.get("jvm", {}) else None),
            "cluster_over_sail": (round(e["cluster"]["seconds"] / e["sail"]["seconds"], 2)
                                  if "seconds" in e.get("cluster", {}) else None),
        }
        say(f"  ratios: Sail/DuckDB {res['ratios']['sail_over_duckdb']}, JVM/Sail {res['ratios']['jvm_over_sail']}")
        con.close()
        if not self.args.keep_compare:
            shutil.rmtree(out_dir, ignore_errors=True)
        return res

    def compare_on_cluster(self, path: str, as_of: dt.date, tz: str, conf: dict, out: Path, rows_in: int) -> dict:
        """The profile's transaction aggregation on a local Spark standalone cluster started
        (and stopped) here: the Delta table read by Delta Lake on the JVM, Parquet written.
        Seconds of the aggregation only; the cluster's start is reported apart."""
        from pyspark.sql import SparkSession

        from c360 import cluster as cluster_mod

        say("  cluster: starting a master, 2 workers (1 core, 1.5 GB each) and Spark Connect")
        t = time.perf_counter()
        try:
            cl = cluster_mod.up(self.dir / "cluster", say=lambda m: say(f"  cluster: {m}"))
        except Exception as exc:  # noqa: BLE001 - reported in the results, the other engines stand
            say(f"  cluster FAILED to start: {exc}")
            return {"error": f"cluster start: {str(exc)[-1500:]}"}
        startup = time.perf_counter() - t
        try:
            spark = SparkSession.builder.remote(cl.connect_url).config("spark.sql.session.timeZone", "UTC") \
                .config("spark.sql.shuffle.partitions", "8").create()
            try:
                self.mem.reset_window()
                t = time.perf_counter()
                df = txn_features.spark_txn_features(spark.read.format("delta").load(path), as_of, tz, conf)
                df.write.mode("overwrite").parquet(str(out))
                wall = time.perf_counter() - t
                executors = {e["id"]: e["completedTasks"] for e in cl.executors()}
            finally:
                spark.stop()
            import duckdb

            rows_out = duckdb.connect().execute(f"SELECT count(*) FROM read_parquet('{out}/*.parquet')").fetchone()[0]
            mem = self.mem.window_mb()
            say(f"  cluster: {wall:.1f} s aggregation (+{startup:.0f} s cluster start), {rows_out:,} customers, "
                f"tasks per executor {executors}")
            return {"seconds": round(wall, 2), "startup_seconds": round(startup, 1), "rows_out": rows_out,
                    "rows_per_second": round(rows_in / wall), "load_avg_1m": round(os.getloadavg()[0], 1),
                    "workers": cluster_mod.WORKERS, "worker_cores": cluster_mod.WORKER_CORES,
                    "worker_memory": cluster_mod.WORKER_MEMORY, "executor_memory": cluster_mod.EXECUTOR_MEMORY,
                    "delta_package": cluster_mod.DELTA_PACKAGE, "tasks_per_executor": executors,
                    "peak_rss_mb": mem["peak_children_rss_mb"]}
        except Exception as exc:  # noqa: BLE001
            say(f"  cluster FAILED: {exc}")
            return {"error": str(exc)[-1500:], "startup_seconds": round(startup, 1)}
        finally:
            cl.stop()

    def phase_maintain(self) -> dict:
        from jobs import maintain

        spark = self.spark()
        last = {"n": 0}

        def progress(stage: str, done: int, total: int) -> None:
            if done == total or done - last["n"] >= max(1, total // 5):
                last["n"] = done
                say(f"    {stage} ({done}/{total})")

        t = time.perf_counter()
        summary = maintain.run(self.settings_(), spark, retention_hours=self.args.vacuum_retention_hours,
                               progress=progress)
        wall = time.perf_counter() - t
        say(f"  maintain: {summary['files_before']:,} -> {summary['files_after']:,} files, "
            f"{summary['vacuumed_files']:,} vacuumed, {wall:.1f} s")
        return {"maintain_seconds": round(wall, 2), **summary}


# --------------------------------------------------------------------------- report

def _mb(b: int | None) -> str:
    return "-" if b is None else f"{b / 1e6:,.1f}"


def _n(v) -> str:
    return "-" if v is None else f"{v:,}" if isinstance(v, int) else f"{v:,.0f}" if isinstance(v, float) else str(v)


def render_markdown(state: dict, meta: dict) -> str:
    p, ph = state["params"], state["phases"]
    lines = [f"# Pipeline benchmark: {p['customers']:,} customers, {p['days']} days to {p['as_of']}", ""]
    lines.append(f"Machine: {meta['machine']['cpus']} cores, {meta['machine'].get('memory_gb', '?')} GB RAM, "
                 f"Python {meta['machine']['python']}; engine {meta.get('engine', 'embedded Sail')}; "
                 f"seed {p['seed']}, dirty rate {p['dirty_rate']}. Generated with `bench/run_bench.py` "
                 f"({meta.get('generated_at', '')}).")
    lines.append("")
    g = ph.get("generate", {})
    if g.get("rows_total"):
        lines.append(f"Landing zone: {g['rows_total']:,} rows in {_n(g.get('files'))} files "
                     + ("(reused from an earlier run)" if g.get("reused") else
                        f"generated in {g.get('generate_seconds')} s") + "; the last day held back for the daily run.")
        lines.append("")

    def steps_table(title: str, r: dict) -> None:
        lines.extend([f"## {title}", ""])
        if r.get("status") not in ("succeeded", "failed") or not r.get("steps"):
            lines.extend([f"({r.get('status', 'not run')})", ""])
            return
        if r.get("status") == "failed":
            lines.extend([f"**Failed**: {r.get('error', '')[:300]}", ""])
        lines.append("| step | seconds | rows in | rows written | rows in / s | peak RSS (MB) | load (1 min) |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|")
        for s in r["steps"]:
            lines.append(f"| {s['step']} | {s['seconds']:.1f} | {_n(s['rows_in'])} | {_n(s['rows_written'])} | "
                         f"{_n(s['rows_per_second'])} | {s['peak_rss_mb']:,.0f} | {s.get('load_avg_1m', '-')} |")
        total = sum(s["seconds"] for s in r["steps"])
        peak = max(s["peak_rss_mb"] for s in r["steps"])
        lines.append(f"| **total** | **{total:.1f}** | | | | **{peak:,.0f}** | |")
        lines.append("")

    steps_table(f"Full rebuild ({'steps ' + ', '.join(p['full_steps']) if p.get('full_steps') else 'every step'}, "
                f"as_of {p['as_of']})", ph.get("full", {}))
    lines.append("Rows in: rows read from new landing files (ingest) or rows of the step's input tables "
                 "(for tables partitioned by `as_of_date`, the as_of partition). Rows written: rows in the "
                 "files the step's commits added (a MERGE rewrites whole files, so this counts rewritten rows "
                 "too). Peak RSS: this process, the embedded Sail engine in it, and its child processes.")
    lines.append("")
    d = ph.get("daily", {})
    steps_table(f"Daily run (next day {d.get('as_of', '')} delivered, daily steps)", d)
    if d.get("delivered"):
        lines.append("Delivered: " + ", ".join(f"{k} {v['files']} file(s) {_mb(v['bytes'])} MB"
                                               for k, v in d["delivered"].items()) + ".")
        lines.append("")

    m = ph.get("models", {})
    if m:
        steps_table(f"Models: train, then score and export (as_of {m.get('as_of', '')})", m)
        train = next((s for s in m.get("steps", []) if s["step"] == "train"), None)
        if train:
            lines.append("Train includes computing month-end profile partitions missing from gold/customer_360 "
                         "(none when daily runs left them).")
            lines.append("")

    c = ph.get("compare", {})
    lines.extend(["## The profile's transaction aggregation on three engines", ""])
    if c.get("engines"):
        lines.append(f"Silver transactions at as_of {c.get('as_of')}: {_n(c.get('rows_in'))} rows in "
                     f"{_n(c.get('files_in'))} Parquet file(s) ({_mb(c.get('bytes_in'))} MB); "
                     f"{c.get('features')} features per customer (counts, inflow and outflow per 30/90/365 days, "
                     "tickets, recency, active days, night/weekend ratios, channel and spend shares, volatility, "
                     "salary), written to Parquet.")
        lines.append("")
        lines.append("| engine | seconds | rows in / s | customers out | peak RSS (MB) | note |")
        lines.append("|---|---:|---:|---:|---:|---|")
        e = c["engines"]
        if "duckdb" in e:
            x = e["duckdb"]
            lines.append(f"| DuckDB {x['duckdb_version']} (hand-written SQL) | {x['seconds']:.1f} | "
                         f"{_n(x['rows_per_second'])} | {_n(x['rows_out'])} | {x['peak_rss_mb']:,.0f} | "
                         f"{x['threads']} threads, in process |")
        if "sail" in e:
            x = e["sail"]
            lines.append(f"| Sail (features.profile) | {x['seconds']:.1f} | {_n(x['rows_per_second'])} | "
                         f"{_n(x['rows_out'])} | {x['peak_rss_mb']:,.0f} | "
                         f"{'embedded' if x.get('embedded') else x.get('engine_url')}, reads the Delta table |")
        x = e.get("jvm", {})
        if "seconds" in x:
            lines.append(f"| JVM Spark {x['spark_version']} local[{x['cores']}] (features.profile) | "
                         f"{x['seconds']:.1f} | {_n(x['rows_per_second'])} | {_n(x['rows_out'])} | "
                         f"{x['peak_rss_mb']:,.0f} | +{x['startup_seconds']:.1f} s JVM start, driver memory "
                         f"{x['driver_memory']}, reads the Parquet files |")
        elif x:
            lines.append(f"| JVM Spark | - | - | - | - | {x.get('skipped') or x.get('error', '')[:120]} |")
        x = e.get("cluster", {})
        if "seconds" in x:
            lines.append(f"| Spark standalone cluster, {x['workers']} workers x {x['worker_cores']} core, "
                         f"Spark Connect (features.profile) | {x['seconds']:.1f} | {_n(x['rows_per_second'])} | "
                         f"{_n(x['rows_out'])} | {x['peak_rss_mb']:,.0f} | +{x['startup_seconds']:.0f} s cluster "
                         f"start; executors {x['executor_memory']}; reads the Delta table ({x['delta_package']}); "
                         f"tasks per executor {x['tasks_per_executor']} |")
        elif x:
            lines.append(f"| Spark standalone cluster | - | - | - | - | {x.get('error', '')[:120]} |")
        lines.append("")
        lines.append("Peak RSS of DuckDB and Sail is this whole process's (it also holds the embedded engine's "
                     "memory from earlier phases); of the JVM, its subprocess tree's.")
        lines.append("")
        r = c.get("ratios") or {}
        if r:
            lines.append(f"Ratios: **Sail / DuckDB = {r.get('sail_over_duckdb')}**, "
                         f"**JVM / Sail = {r.get('jvm_over_sail')}** "
                         f"({r.get('jvm_with_startup_over_sail')} with the JVM's start-up)"
                         + (f", **cluster / Sail = {r['cluster_over_sail']}**" if r.get("cluster_over_sail") else "")
                         + ".")
            lines.append("")
        for k, chk in (c.get("checks") or {}).items():
            verdict = "match" if chk["match"] else "**differ**"
            lines.append(f"- Check {k.replace('_', ' ')}: {verdict}: {chk['customers_compared']:,} customers, "
                         f"{chk['features_compared']} features (relative tolerance 1e-6), "
                         f"{chk['customers_differing']} customers differ"
                         + (f"; by feature {chk['mismatches_by_feature']}; e.g. {chk['examples'][:2]}"
                            if chk["mismatches_by_feature"] else "")
                         + (f"; only on one side: {chk['only_left']} / {chk['only_right']}"
                            if chk["only_left"] or chk["only_right"] else "") + ".")
        lines.append("")
    else:
        lines.extend([f"({c.get('status', 'not run')}{': ' + c.get('error', '') if c.get('error') else ''})", ""])

    lay = ph.get("layout", {})
    lines.extend(["## What the daily run wrote (from the Delta logs)", ""])
    if lay.get("tables_written"):
        lines.append("| table | partitioned by | commits | operations | files before | files added | files removed "
                     "| rows written | partitions written | kind of write |")
        lines.append("|---|---|---:|---|---:|---:|---:|---:|---|---|")
        for t, s in lay["tables_written"].items():
            parts = s["partitions_written"]
            ptxt = ", ".join(parts[:3]) + (f" (+{len(parts) - 3} more)" if len(parts) > 3 else "") if parts else "-"
            lines.append(f"| {t} | {', '.join(s['partition_columns']) or '-'} | {s['commits']} | "
                         f"{', '.join(s['operations'])} | {_n(s.get('files_before'))} | {s['files_added']} | "
                         f"{s['files_removed']} | {_n(s['rows_written'])} | {ptxt} | {s.get('kind', '')} |")
        lines.append("")
        kinds: dict[str, list[str]] = {}
        for t, s in lay["tables_written"].items():
            kinds.setdefault(s.get("kind", "?"), []).append(t)
        for k, ts in sorted(kinds.items()):
            lines.append(f"- {k}: {len(ts)} tables ({', '.join(ts)})")
        lines.append("")
    else:
        lines.extend([f"({lay.get('status', 'not run')})", ""])

    m = ph.get("maintain", {})
    layout = lay.get("layout") or ph.get("full", {}).get("layout") or {}
    lines.extend(["## Files per table and maintenance", ""])
    if layout:
        mt = m.get("tables", {}) if m.get("status") == "succeeded" else {}
        lines.append("| table | rows | files | avg file (MB) | after `c360 maintain`: files | avg file (MB) | seconds |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|")
        big = sorted(layout.items(), key=lambda kv: -(kv[1]["bytes"] or 0))
        for t, s in big:
            if not (t.startswith(("bronze/", "silver/", "gold/")) or s["files"] > 50):
                continue
            x = mt.get(t, {})
            lines.append(f"| {t} | {_n(s['rows'])} | {s['files']:,} | {s['avg_file_mb']:.2f} | "
                         f"{_n(x.get('files_after'))} | "
                         f"{x['avg_file_mb_after']:.2f} | {x['seconds']:.1f} |" if "files_after" in x else
                         f"| {t} | {_n(s['rows'])} | {s['files']:,} | {s['avg_file_mb']:.2f} | - | - | - |")
        lines.append("")
    if m.get("status") == "succeeded":
        lines.append(f"`jobs.maintain` over all {len(m['tables'])} tables (compaction, vacuum with retention "
                     f"{m['retention_hours']} h, checkpoint): {m['maintain_seconds']:.1f} s; files "
                     f"{m['files_before']:,} -> {m['files_after']:,}, {m['vacuumed_files']:,} unreferenced files "
                     f"deleted, peak RSS {m['peak_rss_mb']:,.0f} MB.")
        lines.append("")
    failed = {k: v.get("error") for k, v in ph.items() if v.get("status") == "failed"}
    if failed:
        lines.extend(["## Failed phases", ""] + [f"- {k}: {v}" for k, v in failed.items()] + [""])
    return "\n".join(lines)


def machine() -> dict:
    mem_gb = None
    try:
        mem_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        pass
    return {"cpus": os.cpu_count(), "memory_gb": mem_gb, "python": platform.python_version(),
            "platform": platform.platform()}


def write_results(bench: Bench) -> None:
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for pkg in ("pysail", "pyspark", "deltalake", "duckdb"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = None
    eng = bench.engine
    meta = {"generated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "machine": machine(), "versions": versions,
            "engine": (f"{'embedded Sail' if eng.embedded else 'Spark Connect'} {eng.url}" if eng else
                       bench.state.get("engine", "embedded Sail")),
            "load_average_1m": round(os.getloadavg()[0], 2), "bench_dir": str(bench.dir)}
    if eng:
        bench.state["engine"] = meta["engine"]
    result = {**meta, "params": bench.state["params"], "phases": bench.state["phases"]}
    Path(bench.args.results_json).parent.mkdir(parents=True, exist_ok=True)
    Path(bench.args.results_json).write_text(json.dumps(result, indent=1, default=str, ensure_ascii=False) + "\n",
                                             encoding="utf-8")
    Path(bench.args.results_md).write_text(render_markdown(bench.state, meta) + "\n", encoding="utf-8")


def _default_name(customers: int) -> str:
    if customers >= 1_000_000 and customers % 1_000_000 == 0:
        return f"pipeline_{customers // 1_000_000}m"
    if customers >= 1000 and customers % 1000 == 0:
        return f"pipeline_{customers // 1000}k"
    return f"pipeline_{customers}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--customers", type=int, default=20_000)
    ap.add_argument("--days", type=int, default=395, help="days of history of the full run (default 395, 13 months)")
    ap.add_argument("--as-of", type=dt.date.fromisoformat, default=dt.date(2026, 6, 30),
                    help="business date of the full run; the daily run is the day after")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--dirty-rate", type=float, default=0.0)
    ap.add_argument("--workers", type=int, default=None, help="generator processes (default: its own choice)")
    ap.add_argument("--bench-dir", default=os.environ.get("BENCH_DIR") or "/tmp/c360-bench",
                    help="where the landing zone, lake and scratch files go [env BENCH_DIR, default /tmp/c360-bench]")
    ap.add_argument("--name", default=None, help="results name: bench/results/<name>.json|.md")
    ap.add_argument("--phases", default=",".join(PHASES), help=f"comma-separated, from {', '.join(PHASES)}")
    ap.add_argument("--daily-steps", default=",".join(DAILY_STEPS))
    ap.add_argument("--full-steps", default="",
                    help="steps of the full phase (default: every step of jobs.pipeline.STEPS); e.g. ingest,silver "
                         "to measure only the engine comparison on a large bank")
    ap.add_argument("--fresh", action="store_true", help="ignore the saved progress and generated landing zone")
    ap.add_argument("--redo", default="", help="comma-separated phases to run again although done (e.g. compare)")
    ap.add_argument("--no-jvm", action="store_true", help="leave JVM Spark out of the comparison")
    ap.add_argument("--cluster", action="store_true",
                    help="also run the comparison on a local Spark standalone cluster (c360/cluster.py)")
    ap.add_argument("--jvm-memory", default=None, help="JVM driver memory (default: a third of RAM, 2g..12g)")
    ap.add_argument("--jvm-cores", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--jvm-timeout", type=int, default=4 * 3600)
    ap.add_argument("--duckdb-threads", type=int, default=None)
    ap.add_argument("--vacuum-retention-hours", type=int, default=0,
                    help="vacuum retention of the maintain phase (default 0: the bench lake needs no time travel)")
    ap.add_argument("--keep-compare", action="store_true", help="keep the engines' outputs in <bench-dir>/compare")
    ap.add_argument("--debug", action="store_true", help="stop with the traceback on a failure")
    args = ap.parse_args(argv)
    args.phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    bad = [p for p in args.phases if p not in PHASES]
    if bad:
        ap.error(f"unknown phase(s) {', '.join(bad)}; phases are {', '.join(PHASES)}")
    args.daily_steps = [s.strip() for s in args.daily_steps.split(",") if s.strip()]
    args.redo = [p.strip() for p in args.redo.split(",") if p.strip()]
    args.full_steps = [p.strip() for p in args.full_steps.split(",") if p.strip()]
    if args.jvm_memory is None:
        gb = machine()["memory_gb"] or 6
        args.jvm_memory = f"{int(min(12, max(2, gb // 3)))}g"
    name = args.name or _default_name(args.customers)
    results = ROOT / "bench" / "results"
    args.results_json = str(results / f"{name}.json")
    args.results_md = str(results / f"{name}.md")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    bench = Bench(args)
    say(f"bench: {args.customers:,} customers, {args.days} days to {args.as_of} (+1 daily day), "
        f"phases {', '.join(args.phases)}; data in {bench.dir}; results {args.results_md}")
    return bench.run()


if __name__ == "__main__":
    sys.exit(main())

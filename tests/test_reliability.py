"""Reliability (issue #6): one run per lake, crash safety, repeatable runs.

- A second run on a lake that another process holds refuses at once, with one line that
  names the holder (in process through ``run_step``, through the CLI, through an Airflow
  task, which Airflow retries); a SIGKILLed holder frees the lake at once.
- ``c360 run`` killed with SIGKILL inside a Delta write (data files written, no commit:
  bronze during ingest, silver/transactions during silver) and right after a commit (bronze,
  before its files are recorded as ingested), then run again, ends with exactly the tables
  of a clean run. The kills land at named points through the test-only fault injection of
  :mod:`c360.faults` (``C360_TEST_KILL_AT``), never at a moment guessed from the outside.
- Running the daily steps twice for the same as_of leaves every gold partition unchanged.

Banks are small (60 customers x 20 days); the lakes live under pytest's tmp paths.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from urllib.parse import unquote

import pytest
from typer.testing import CliRunner

from c360 import lake, lock
from c360.faults import KILL_AT
from c360.lock import LakeBusy, lake_lock

REPO = Path(__file__).resolve().parents[1]
AS_OF = date(2026, 6, 30)
CRASH_STEPS = ["ingest", "silver", "profile"]
DAILY_STEPS = ["ingest", "dq_bronze", "silver", "dq_silver", "profile", "segments", "kpis", "score", "export"]

# Columns that record when or by which run a row was written, not what it says: they differ
# between two runs of the same data by design, so comparisons leave them out.
#   _batch_id, batch_id           the run id of the ingest that wrote the row
#   _ingested_at, ingested_at     when that ingest ran
#   quarantined_at                when the row was quarantined
#   _redelivered                  whether bronze held the key when the row was loaded (a run
#                                 killed after a bronze write loads its batch again: held)
RUNTIME_COLUMNS = ("_batch_id", "_ingested_at", "batch_id", "ingested_at", "quarantined_at", "_redelivered")


@pytest.fixture(scope="module")
def landing(banks) -> Path:
    """A small clean bank's deliveries (the session's, shared read-only by every lake)."""
    return banks.landing(customers=60, days=20, as_of=AS_OF, seed=5, dirty_rate=0.0).landing


def child_env(landing: Path, lake_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SPARK_REMOTE", "MLFLOW_TRACKING_URI")}
    return env | {"C360_LANDING": str(landing), "C360_LAKE": str(lake_dir), "RUST_LOG": "warn",
                  "PYTHONWARNINGS": "ignore"}


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the child's whole process group (the embedded engine runs inside the child)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


@contextmanager
def quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the development PII key warning, library notices
        yield


# ---------------------------------------------------------------------------------------
# 1. the lake lock

HOLDER = """
import sys, time
from datetime import date
from c360.lock import lake_lock
with lake_lock(sys.argv[1], run_id="holder-run", step="silver", as_of=date(2026, 6, 30)):
    print("locked", flush=True)
    time.sleep(600)
"""


@pytest.fixture
def holder(tmp_path):
    """A separate process holding the lock of ``tmp_path/lake``; killed at the end."""
    lake_dir = tmp_path / "lake"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(lake_dir)], cwd=REPO, stdout=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        yield proc, lake_dir
    finally:
        kill_group(proc)


def test_second_run_on_a_busy_lake_refuses_with_one_line_and_a_killed_holder_frees_it(
        holder, spark, settings, landing, monkeypatch):
    proc, lake_dir = holder
    s = settings.with_paths(landing=landing, lake=lake_dir)
    assert lock.is_locked(lake_dir)
    expected = re.compile(
        rf"^lake {re.escape(str(lake_dir))} is in use by run holder-run \(step silver, as_of 2026-06-30, "
        rf"pid {proc.pid} on host {re.escape(socket.gethostname())}, user [^,]+, "
        r"since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\); wait for it to finish and run again")

    # in process, as c360 run and the DAG tasks call it: refused before anything is written
    from jobs.pipeline import run_step, run_steps

    started = time.monotonic()
    with pytest.raises(LakeBusy) as busy:
        run_step(spark, s, "silver", AS_OF)
    assert time.monotonic() - started < 5  # fails fast, never waits
    assert expected.match(str(busy.value)), str(busy.value)
    assert "\n" not in str(busy.value)
    assert busy.value.holder["pid"] == proc.pid
    with pytest.raises(LakeBusy):
        run_steps(spark, s, AS_OF, ["ingest", "silver"])
    assert lake.tables(lake_dir) == []  # no run_log row, no table: nothing was written

    # the command line: one line on stderr and exit code 75 (EX_TEMPFAIL), no traceback
    from c360.cli import EXIT_LAKE_BUSY, app

    r = CliRunner().invoke(app, ["run", "--landing", str(landing), "--lake", str(lake_dir), "--as-of",
                                 "2026-06-30", "--steps", "ingest,silver"])
    assert r.exit_code == EXIT_LAKE_BUSY == 75
    lines = [ln for ln in r.output.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and expected.match(lines[0].removeprefix("error: ")), r.output
    assert "Traceback" not in r.output

    # an Airflow task: LakeBusy propagates as it is (retried with back-off), not as a
    # non-retried AirflowFailException
    import jobs.airflow_tasks as tasks

    monkeypatch.setattr(tasks, "_variable", lambda name: {tasks.VAR_LAKE: str(lake_dir),
                                                          tasks.VAR_LANDING: str(landing)}.get(name))
    with pytest.raises(LakeBusy, match="is in use by run holder-run"):
        tasks.run_pipeline_step("silver", logical_date=datetime(2026, 6, 30, 2), run_id="airflow-run")

    # SIGKILL the holder: the kernel drops the flock with the process, no stale lock
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert lock.read_holder(lake_dir)["pid"] == proc.pid  # the file still names the dead holder ...
    assert not lock.is_locked(lake_dir)  # ... but the lake is free at once
    with lake_lock(lake_dir, run_id="next", step="ingest") as record:
        assert record["pid"] == os.getpid() and lock.is_locked(lake_dir)
        assert lock.read_holder(lake_dir)["run_id"] == "next"
    assert not lock.is_locked(lake_dir)


def test_lock_is_reentrant_in_one_thread_and_exclusive_across_threads(spark, settings, tmp_path, monkeypatch):
    import jobs.pipeline as pipeline

    lake_dir = tmp_path / "lake"
    s = settings.with_paths(landing=tmp_path / "landing", lake=lake_dir)
    seen: list[dict] = []

    def from_other_thread() -> str:
        out: list[str] = []

        def go():
            try:
                with lake_lock(lake_dir, run_id="intruder"):
                    out.append("entered")
            except LakeBusy as exc:
                out.append(str(exc))
        t = threading.Thread(target=go)
        t.start()
        t.join()
        return out[0]

    def probe(spark, settings, as_of, run_id, progress):
        seen.append({**lock.read_holder(lake_dir), "other_thread": from_other_thread()})
        return {}

    monkeypatch.setitem(pipeline.STEPS, "probe_a", probe)
    monkeypatch.setitem(pipeline.STEPS, "probe_b", probe)
    results = pipeline.run_steps(spark, s, AS_OF, ["probe_a", "probe_b"], run_id="outer-run")
    assert [r.status for r in results] == ["succeeded", "succeeded"]
    # held across both steps by the same run, the current step recorded, other threads refused
    assert [(h["run_id"], h["step"], h["pid"]) for h in seen] == [("outer-run", "probe_a", os.getpid()),
                                                                   ("outer-run", "probe_b", os.getpid())]
    assert all(h["other_thread"].startswith(f"lake {lake_dir} is in use by run outer-run") for h in seen)
    assert not lock.is_locked(lake_dir)
    # nested blocks restore the outer record and release only at the outermost exit
    with lake_lock(lake_dir, run_id="r", step="outer"):
        with lake_lock(lake_dir, step="inner"):
            assert lock.read_holder(lake_dir)["step"] == "inner"
        assert lock.read_holder(lake_dir)["step"] == "outer" and lock.is_locked(lake_dir)
    assert not lock.is_locked(lake_dir) and from_other_thread() == "entered"
    # a local path this machine does not have, with a remote engine (the cluster's disk), is not locked here
    remote = settings.model_copy(update={"engine": settings.engine.model_copy(update={"remote": "sc://x:15002"})})
    with lock.for_settings(remote.with_paths(lake=tmp_path / "on-the-cluster"), run_id="x") as record:
        assert record == {}
    # (a lake on S3 has a lock object: tests/test_object_storage.py)


# ---------------------------------------------------------------------------------------
# 2. SIGKILL in the middle of a write, then run again

def data_files(table: Path) -> set[str]:
    out = set()
    for root, dirs, files in os.walk(table):
        if "_delta_log" in dirs:
            dirs.remove("_delta_log")
        out |= {os.path.relpath(os.path.join(root, f), table) for f in files if f.endswith(".parquet")}
    return out


def committed_files(table: Path) -> set[str]:
    """Data files added by any commit of the table's log (the JSON commits, read as text)."""
    import json

    out = set()
    log_dir = table / "_delta_log"
    if not log_dir.is_dir():
        return out
    for commit in log_dir.glob("*.json"):
        if not commit.stem.isdigit():
            continue
        for line in commit.read_text(encoding="utf-8").splitlines():
            if '"add"' in line:
                action = json.loads(line).get("add")
                if action:
                    out.add(unquote(action["path"]))
    return out


def start_run(landing: Path, lake_dir: Path, log_file: Path, kill_at: str | None = None) -> subprocess.Popen:
    env = child_env(landing, lake_dir) | ({KILL_AT: kill_at} if kill_at else {})
    with open(log_file, "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "c360.cli", "run", "--as-of", AS_OF.isoformat(),
                                 "--steps", ",".join(CRASH_STEPS)], cwd=REPO, env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def run_killed_at(landing: Path, lake_dir: Path, log_file: Path, kill_at: str) -> dict:
    """``c360 run`` with the test-only fault injection ``C360_TEST_KILL_AT=kill_at``
    (:mod:`c360.faults`): the run must die of SIGKILL at that point, releasing its lake.
    Returns the step it died in and the table's data files no commit references."""
    table = lake_dir / kill_at.partition(":")[2]
    baseline = data_files(table)  # orphans of an earlier killed write do not count
    proc = start_run(landing, lake_dir, log_file, kill_at)
    try:
        code = proc.wait(timeout=900)
    finally:
        kill_group(proc)
    assert code == -signal.SIGKILL, (code, log_file.read_text(errors="replace")[-3000:])
    holder = lock.read_holder(lake_dir)
    assert holder["pid"] == proc.pid  # the run held its lake ...
    assert not lock.is_locked(lake_dir)  # ... and the kill released it at once
    return {"step": holder["step"], "uncommitted": (data_files(table) - baseline) - committed_files(table)}


def business(df):
    return df.drop(*[c for c in df.columns if c in RUNTIME_COLUMNS])


def assert_same_table(spark, left: str, right: str, name: str) -> int:
    """Same columns, same rows (as a multiset: duplicates count) after RUNTIME_COLUMNS."""
    a, b = business(lake.read(spark, left)), business(lake.read(spark, right))
    assert sorted(a.columns) == sorted(b.columns), name
    b = b.select(*a.columns)
    n = a.count()
    assert n == b.count(), name
    assert a.exceptAll(b).count() == 0 and b.exceptAll(a).count() == 0, name
    return n


def assert_unique(spark, path: str, keys: list[str], name: str, where: str | None = None) -> None:
    df = lake.read(spark, path)
    if where:
        df = df.where(where)
    dup = df.groupBy(*keys).count().where("count > 1")
    assert dup.count() == 0, f"{name}: duplicate keys {[r.asDict() for r in dup.limit(5).collect()]}"


@pytest.mark.slow
def test_sigkill_during_writes_then_rerun_equals_a_clean_run(landing, spark, settings, tmp_path):
    from c360.contract import SOURCES
    from jobs.pipeline import run_steps

    # the reference: a clean run of the same bank, in this process
    ref = tmp_path / "ref"
    with quiet():
        run_steps(spark, settings.with_paths(landing=landing, lake=ref), AS_OF, CRASH_STEPS)

    crash = tmp_path / "crash"
    log_file = tmp_path / "runs.log"
    timings = {}
    t0 = time.monotonic()
    # run 1: killed inside ingest's first write into bronze/transactions, its data files
    # written and not committed (the sources before it loaded and their files recorded, no
    # transactions file recorded yet)
    kills = [run_killed_at(landing, crash, log_file, "before-commit:bronze/transactions")]
    recorded = {r.source for r in lake.read(spark, str(crash / "ops" / "ingested_files")).collect()}
    assert recorded and "transactions" not in recorded, recorded
    # run 2: killed right after that write committed, before its files are recorded as ingested
    kills.append(run_killed_at(landing, crash, log_file, "after-commit:bronze/transactions"))
    assert lake.row_count(str(crash / "bronze" / "transactions")) > 0
    recorded = {r.source for r in lake.read(spark, str(crash / "ops" / "ingested_files")).collect()}
    assert "transactions" not in recorded, recorded
    # run 3: killed inside silver's write of silver/transactions, data files not committed
    kills.append(run_killed_at(landing, crash, log_file, "before-commit:silver/transactions"))
    assert [k["step"] for k in kills] == ["ingest", "ingest", "silver"], kills
    # the killed writes left data files that no commit references (what a crash inside a
    # write leaves); the kill after the commit left none
    assert kills[0]["uncommitted"] and kills[2]["uncommitted"] and not kills[1]["uncommitted"], kills
    timings["killed runs"] = time.monotonic() - t0
    # run 4: to completion
    t0 = time.monotonic()
    proc = start_run(landing, crash, log_file)
    assert proc.wait(timeout=900) == 0, log_file.read_text(errors="replace")[-3000:]
    timings["re-run"] = time.monotonic() - t0
    print(f"\nkills: {[(k['step'], len(k['uncommitted'])) for k in kills]}; timings: {timings}")

    # every table of the clean run, with the same rows; nothing else (no leftover staging)
    tables = lake.tables(ref)
    assert lake.tables(crash) == tables
    t0 = time.monotonic()
    for name in tables:
        if name.startswith("ops/"):
            continue  # bookkeeping of the runs themselves: checked below
        assert_same_table(spark, str(ref / name), str(crash / name), name)
    for name, src in SOURCES.items():
        assert_unique(spark, str(crash / "bronze" / name), list(src.key), f"bronze/{name}")
        if name != "customers":
            assert_unique(spark, str(crash / "silver" / name), list(src.key), f"silver/{name}")
    assert_unique(spark, str(crash / "silver" / "customers"), ["customer_id"], "silver/customers", "is_current")
    assert_unique(spark, str(crash / "gold" / "customer_360"), ["customer_id", "as_of_date"], "gold/customer_360")
    assert_unique(spark, str(crash / "gold" / "customer_tags"), ["customer_id", "as_of_date", "tag"],
                  "gold/customer_tags")

    # ops/ingested_files: every file recorded once, as in the clean run, none loaded twice
    files = str(crash / "ops" / "ingested_files")
    assert_same_table(spark, str(ref / "ops" / "ingested_files"), files, "ops/ingested_files")
    assert_unique(spark, files, ["file_path"], "ops/ingested_files")
    assert_unique(spark, files, ["sha256"], "ops/ingested_files (loaded)", "status = 'loaded'")
    # run_log: the killed runs left no row (they died inside their first unfinished step's
    # write); the completed run recorded each step once
    run_log = lake.read(spark, str(crash / "ops" / "run_log"))
    steps = sorted((r.step, r.status) for r in run_log.collect())
    assert ("ingest", "succeeded") in steps and ("silver", "succeeded") in steps
    assert steps.count(("profile", "succeeded")) == 1
    print(f"compared {len(tables)} tables in {time.monotonic() - t0:.0f} s")


# ---------------------------------------------------------------------------------------
# 3. the same as_of twice: gold unchanged

GOLD_KEYS = {
    "customer_360": ["customer_id"], "customer_tags": ["customer_id", "tag"],
    "customer_segments": ["customer_id"], "personas": ["persona_id"],
    "segment_kpis": ["dimension", "segment"], "recommendations": ["customer_id", "product_code"],
    "experience_kpis": ["dimension", "value"], "service_kpis": ["dimension", "value"],
    "complaint_kpis": ["dimension", "value"], "topic_kpis": ["source", "value", "topic"],
}


@pytest.mark.slow
def test_running_the_daily_steps_twice_for_one_as_of_changes_no_gold_partition(landing, spark, settings,
                                                                                tmp_path, monkeypatch):
    from test_scoring import register_champion, train_tiny

    from jobs.pipeline import run_steps

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    s = settings.with_paths(landing=landing, lake=tmp_path / "lake")
    # a cheap real champion (tiny LightGBM in the lake's own MLflow registry), so that score
    # and export run for real instead of skipping
    booster, spec = train_tiny("nbp")
    register_champion(s, "next_best_product", booster, spec)
    booster, spec = train_tiny("attrition")
    register_champion(s, "attrition_risk", booster, spec)

    timings = {}
    t0 = time.monotonic()
    with quiet():
        first = run_steps(spark, s, AS_OF, DAILY_STEPS, run_id="first")
    timings["first"] = time.monotonic() - t0
    score_metrics = next(r.metrics for r in first if r.step == "score")
    assert "skipped" not in score_metrics and score_metrics["recommendations"] > 0, score_metrics
    gold = [t for t in lake.tables(s.lake) if t.startswith("gold/")]
    assert {"gold/customer_360", "gold/customer_tags", "gold/customer_segments", "gold/personas",
            "gold/segment_kpis", "gold/recommendations", "gold/attrition_risk", "gold/experience_kpis",
            "gold/service_kpis", "gold/complaint_kpis", "gold/topic_kpis"} <= set(gold), gold
    versions = {t: lake.version(str(s.lake / t)) for t in gold}
    from jobs.export import export_root

    export_dir = export_root(s) / AS_OF.isoformat()
    exported = {p.name: p.read_bytes() for p in sorted(export_dir.iterdir())}

    t0 = time.monotonic()
    with quiet():
        run_steps(spark, s, AS_OF, DAILY_STEPS, run_id="second")
    timings["second"] = time.monotonic() - t0
    print(f"\ntimings: {timings}")

    partition = f"as_of_date = DATE'{AS_OF.isoformat()}'"
    assert [t for t in lake.tables(s.lake) if t.startswith("gold/")] == gold
    for t in gold:
        path = str(s.lake / t)
        before = lake.read(spark, path, version=versions[t]).where(partition)
        after = lake.read(spark, path).where(partition)
        # gold tables carry no run-time columns (no created_at / run_id): all columns compared
        assert not set(after.columns) & {"created_at", "run_id", "scored_at", *RUNTIME_COLUMNS}, t
        n = before.count()
        assert n == after.count(), t
        assert before.exceptAll(after).count() == 0 and after.exceptAll(before).count() == 0, t
        name = t.split("/")[1]
        if name in GOLD_KEYS:
            assert_unique(spark, path, GOLD_KEYS[name], t, partition)
    # the CRM export folder is rewritten byte for byte
    assert {p.name: p.read_bytes() for p in sorted(export_dir.iterdir())} == exported


def test_overwrite_staged_replaces_a_table_from_a_frame_that_reads_it(spark, tmp_path):
    """c360.lake.overwrite_staged: a frame computed from the table it replaces (here the
    table plus one row, and a replaceWhere of one partition) lands whole, and the staging
    table is gone afterwards."""
    from pyspark.sql import functions as F

    from c360 import lake

    path, staging = str(tmp_path / "t"), str(tmp_path / "_staging_t")
    spark.createDataFrame([(1, "a"), (2, "b")], "id int, p string").write.format("delta").partitionBy("p").save(path)
    grown = lake.read(spark, path).unionByName(spark.createDataFrame([(3, "a")], "id int, p string"))
    lake.overwrite_staged(grown, path, staging, partition_by=["p"])
    assert sorted(tuple(r) for r in lake.read(spark, path).collect()) == [(1, "a"), (2, "b"), (3, "a")]
    assert not lake.exists(staging)
    doubled = lake.read(spark, path).where("p = 'a'").withColumn("id", F.col("id") * 10)
    lake.overwrite_staged(doubled, path, staging, partition_by=["p"], replace_where="p = 'a'")
    assert sorted(tuple(r) for r in lake.read(spark, path).collect()) == [(2, "b"), (10, "a"), (30, "a")]
    assert not lake.exists(staging)


@pytest.mark.unit
def test_the_kill_hook_is_inert_unless_armed_for_that_table_and_refuses_a_malformed_point(monkeypatch):
    """c360.faults: unset, or armed for another point or table, a write goes on untouched
    (the frame is not even looked at: None stands in for it); a malformed value is an error,
    not a silently ignored test."""
    from c360 import faults

    monkeypatch.delenv(KILL_AT, raising=False)
    assert faults.before_commit(None, "/lake/bronze/transactions") is None
    assert faults.after_commit("/lake/bronze/transactions") is None
    monkeypatch.setenv(KILL_AT, "before-commit:silver/transactions")
    assert faults.before_commit(None, "/lake/bronze/transactions") is None
    assert faults.before_commit(None, "/lake/silver/_staging/transactions") is None
    assert faults.after_commit("/lake/silver/transactions") is None
    for bad in ("mid-write:bronze/transactions", "before-commit", "bronze/transactions"):
        monkeypatch.setenv(KILL_AT, bad)
        with pytest.raises(ValueError, match="expected <point>:<layer>/<name>"):
            faults.after_commit("/lake/bronze/transactions")

"""The pipeline's own bookkeeping tables under ``<lake>/ops``.

- ``ops/ingested_files``: every landing file seen, with size, checksum, row counts and
  what happened to it (loaded, quarantined, duplicate). A checksum found here is never
  ingested again, whatever the file's name.
  A file rejected for its path (a folder that is not a date, an unsupported extension)
  is recorded as ``rejected``: its checksum blocks nothing, so the same bytes delivered
  again at a valid path are loaded.
- ``ops/landing_issues``: every entry of the landing zone that was not read (a nested
  folder, a loose or hidden file, a wrong-case source folder, a link outside the landing
  zone, a file that could not be read now), one row per path and reason, with when it was
  first and last seen.
- ``ops/run_log``: one row per step of every run (status, timing, metrics, error).
- ``ops/audit_log``: one row per job run (pipeline steps, erasures): who ran it, which
  table versions it read and wrote, row counts of what it wrote, status, duration, error.
  It holds table names, versions and counts only, never customer data.
- ``ops/derived_watermarks``: per table derived from another one incrementally (e.g.
  ``silver/transactions_daily``), the source's ``_ingested_at`` up to which it is complete.
- ``ops/pending_partitions``: partitions of a source such a table must summarise again
  although they hold no newer row (a row moved out of them to another partition).
"""

from __future__ import annotations

import getpass
import json
import os
import socket
from datetime import date, datetime, timezone

from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from c360 import lake, storage

INGESTED_FILES_SCHEMA = T.StructType([
    T.StructField("source", T.StringType()),
    T.StructField("file_path", T.StringType()),
    T.StructField("sha256", T.StringType()),
    T.StructField("size_bytes", T.LongType()),
    T.StructField("delivery_date", T.DateType()),
    T.StructField("status", T.StringType()),  # loaded | quarantined | duplicate | rejected (for its path)
    T.StructField("reason", T.StringType()),
    T.StructField("rows_read", T.LongType()),
    T.StructField("rows_loaded", T.LongType()),
    T.StructField("rows_quarantined", T.LongType()),
    T.StructField("batch_id", T.StringType()),
    T.StructField("ingested_at", T.TimestampType()),
    T.StructField("modified_ns", T.LongType()),  # the file's modification time (ns) when it was read
])

LANDING_ISSUES_SCHEMA = T.StructType([
    T.StructField("path", T.StringType()),
    T.StructField("source", T.StringType()),  # null: at the landing root, of no source
    T.StructField("kind", T.StringType()),  # unexpected | outside | unreadable
    T.StructField("reason", T.StringType()),
    T.StructField("first_seen_at", T.TimestampType()),
    T.StructField("first_batch_id", T.StringType()),
    T.StructField("last_seen_at", T.TimestampType()),
    T.StructField("last_batch_id", T.StringType()),
])

RUN_LOG_SCHEMA = T.StructType([
    T.StructField("run_id", T.StringType()),
    T.StructField("step", T.StringType()),
    T.StructField("as_of", T.DateType()),
    T.StructField("status", T.StringType()),  # succeeded | failed
    T.StructField("started_at", T.TimestampType()),
    T.StructField("finished_at", T.TimestampType()),
    T.StructField("duration_s", T.DoubleType()),
    T.StructField("metrics", T.StringType()),  # JSON
    T.StructField("error", T.StringType()),
])

AUDIT_LOG_SCHEMA = T.StructType([
    T.StructField("run_id", T.StringType()),
    T.StructField("job", T.StringType()),
    T.StructField("as_of", T.DateType()),
    T.StructField("user", T.StringType()),
    T.StructField("host", T.StringType()),
    T.StructField("status", T.StringType()),  # succeeded | failed
    T.StructField("started_at", T.TimestampType()),
    T.StructField("finished_at", T.TimestampType()),
    T.StructField("duration_s", T.DoubleType()),
    T.StructField("input_versions", T.MapType(T.StringType(), T.LongType())),   # layer/name -> version read
    T.StructField("output_versions", T.MapType(T.StringType(), T.LongType())),  # layer/name -> version written
    T.StructField("row_counts", T.MapType(T.StringType(), T.LongType())),       # layer/name -> rows after the job
    T.StructField("details", T.StringType()),  # JSON, job-specific, never customer data
    T.StructField("error", T.StringType()),
])


DERIVED_WATERMARKS_SCHEMA = T.StructType([
    T.StructField("table", T.StringType()),
    T.StructField("ingested_through", T.TimestampType()),
    T.StructField("updated_at", T.TimestampType()),
])


def utcnow() -> datetime:
    """Now, timezone-aware in UTC (a naive datetime would be read in the local zone by PySpark)."""
    return datetime.now(timezone.utc)


def ingested_checksums(spark: SparkSession, lake_dir) -> set[str]:
    """Checksums of files already loaded or quarantined for their content (bounded: one row
    per file). Files rejected for their path are not in it, nor are those recorded as
    ``quarantined`` for a path reason before the ``rejected`` status existed."""
    from c360.landing import PATH_PROBLEMS

    path = lake.table_path(lake_dir, "ops", "ingested_files")
    if not lake.exists(path):
        return set()
    path_reasons = ", ".join("'" + r.replace("'", "''") + "'" for r in PATH_PROBLEMS)
    rows = lake.read(spark, path).where(
        f"status = 'loaded' OR (status = 'quarantined' AND coalesce(reason, '') NOT IN ({path_reasons}))"
    ).select("sha256").distinct().collect()
    return {r.sha256 for r in rows}


def ingested_files(spark: SparkSession, lake_dir) -> dict[str, tuple[int, int | None, str]]:
    """``path -> (size, modified_ns, sha256)`` of every file loaded, quarantined or rejected
    (bounded: one row per file), for :func:`c360.landing.discover` to skip unchanged known files.
    Files recorded before ``modified_ns`` existed are not in it (they are hashed again)."""
    path = lake.table_path(lake_dir, "ops", "ingested_files")
    if not lake.exists(path):
        return {}
    df = lake.read(spark, path)
    if "modified_ns" not in df.columns:
        return {}
    rows = df.where("status IN ('loaded', 'quarantined', 'rejected') AND modified_ns IS NOT NULL") \
        .orderBy("ingested_at").select("file_path", "size_bytes", "modified_ns", "sha256").collect()
    return {r.file_path: (r.size_bytes, r.modified_ns, r.sha256) for r in rows}  # the latest per path wins


def remember_modified(spark: SparkSession, lake_dir, files: list[tuple[str, str, int]]) -> None:
    """Fill ``modified_ns`` of recorded files (``(path, sha256, modified_ns)``) that have
    none, so the next run skips them unread: files recorded by a version without the column
    are hashed once more, then not again."""
    path = lake.table_path(lake_dir, "ops", "ingested_files")
    if not files or not lake.exists(path):
        return
    if "modified_ns" not in lake.read(spark, path).columns:  # add the column (rows recorded before: null)
        spark.createDataFrame([], INGESTED_FILES_SCHEMA).write.format("delta").mode("append") \
            .option("mergeSchema", "true").save(path)
    schema = T.StructType([T.StructField("file_path", T.StringType()), T.StructField("sha256", T.StringType()),
                           T.StructField("modified_ns", T.LongType())])
    spark.createDataFrame(files, schema).createOrReplaceTempView("_known_files")
    try:
        spark.sql(f"MERGE INTO delta.`{path}` t USING _known_files s "
                  "ON t.file_path = s.file_path AND t.sha256 = s.sha256 "
                  "WHEN MATCHED AND t.modified_ns IS NULL THEN UPDATE SET modified_ns = s.modified_ns").collect()
    finally:
        spark.catalog.dropTempView("_known_files")


def record_files(spark: SparkSession, lake_dir, rows: list[dict]) -> None:
    if not rows:
        return
    path = lake.table_path(lake_dir, "ops", "ingested_files")
    lake.create_if_missing(spark, path, INGESTED_FILES_SCHEMA)
    df = spark.createDataFrame([tuple(r.get(f.name) for f in INGESTED_FILES_SCHEMA.fields) for r in rows],
                               INGESTED_FILES_SCHEMA)
    lake.merge(spark, df, path, ["file_path", "sha256"], update_when="")


def record_landing_issues(spark: SparkSession, lake_dir, entries: list[tuple[str, str | None, str, str]],
                          batch_id: str) -> set[tuple[str, str]]:
    """Record ``(path, source, kind, reason)`` entries not read by this run in
    ``ops/landing_issues`` (one row per path and reason: a re-run only moves its
    ``last_seen_*``); returns the ``(path, reason)`` pairs seen for the first time."""
    if not entries:
        return set()
    path = lake.table_path(lake_dir, "ops", "landing_issues")
    lake.create_if_missing(spark, path, LANDING_ISSUES_SCHEMA)
    # bounded: one row per entry the landing zone should not hold
    before = {(r.path, r.reason) for r in lake.read(spark, path).select("path", "reason").collect()}
    now = utcnow()
    rows = {(p, r): (p, src, kind, r, now, batch_id, now, batch_id) for p, src, kind, r in entries}
    df = spark.createDataFrame(list(rows.values()), LANDING_ISSUES_SCHEMA)
    view = "_landing_issues_seen"
    df.createOrReplaceTempView(view)
    try:
        spark.sql(f"MERGE INTO delta.`{path}` t USING {view} s ON t.path = s.path AND t.reason = s.reason "
                  "WHEN MATCHED THEN UPDATE SET last_seen_at = s.last_seen_at, last_batch_id = s.last_batch_id "
                  "WHEN NOT MATCHED THEN INSERT *").collect()
    finally:
        spark.catalog.dropTempView(view)
    return set(rows) - before


def derived_watermark(spark: SparkSession, lake_dir, table: str) -> datetime | None:
    """The source ``_ingested_at`` through which the derived ``table`` is complete (None: never built)."""
    path = lake.table_path(lake_dir, "ops", "derived_watermarks")
    if not lake.exists(path):
        return None
    row = lake.read(spark, path).where(f"`table` = '{table}'").select("ingested_through").first()
    return row["ingested_through"] if row else None


def save_derived_watermark(spark: SparkSession, lake_dir, table: str, through: datetime | None) -> None:
    path = lake.table_path(lake_dir, "ops", "derived_watermarks")
    lake.create_if_missing(spark, path, DERIVED_WATERMARKS_SCHEMA)
    row = spark.createDataFrame([(table, through, utcnow())], DERIVED_WATERMARKS_SCHEMA)
    lake.merge(spark, row, path, ["table"], update_when="")


PENDING_PARTITIONS_SCHEMA = T.StructType([
    T.StructField("table", T.StringType()),
    T.StructField("partition", T.DateType()),
    T.StructField("noted_at", T.TimestampType()),
])


def note_pending_partitions(spark: SparkSession, lake_dir, table: str, partitions: list[str]) -> None:
    """Note that the derived ``table`` must summarise ``partitions`` (dates) of its source
    again although none of their rows is newer than its watermark (rows moved out of them).
    Noted before the source is written, cleared by :func:`clear_pending_partitions` once the
    table is refreshed: a refresh that never ran or stopped is redone by the next one."""
    if not partitions:
        return
    path = lake.table_path(lake_dir, "ops", "pending_partitions")
    lake.create_if_missing(spark, path, PENDING_PARTITIONS_SCHEMA)
    now = utcnow()
    rows = spark.createDataFrame([(table, date.fromisoformat(p), now) for p in partitions], PENDING_PARTITIONS_SCHEMA)
    lake.merge(spark, rows, path, ["table", "partition"], update_when=None)


def pending_partitions(spark: SparkSession, lake_dir, table: str) -> list[str]:
    """The partitions noted for ``table`` (:func:`note_pending_partitions`), as ISO dates."""
    path = lake.table_path(lake_dir, "ops", "pending_partitions")
    if not lake.exists(path):
        return []
    # bounded: partitions rows moved out of, few
    found = lake.read(spark, path).where(F.col("table") == F.lit(table)).select("partition").collect()
    return sorted(str(r["partition"]) for r in found)


def clear_pending_partitions(spark: SparkSession, lake_dir, table: str, partitions: list[str]) -> None:
    """Forget ``partitions`` noted for ``table`` (it has summarised them again)."""
    path = lake.table_path(lake_dir, "ops", "pending_partitions")
    if not partitions or not lake.exists(path):
        return
    done = {(table, p) for p in partitions}
    kept = [tuple(r) for r in lake.read(spark, path).collect()  # bounded: few rows
            if (r["table"], str(r["partition"])) not in done]
    lake.overwrite(spark.createDataFrame(kept, PENDING_PARTITIONS_SCHEMA), path, schema=PENDING_PARTITIONS_SCHEMA)


def record_step(spark: SparkSession, lake_dir, run_id: str, step: str, as_of: date, status: str,
                started_at: datetime, metrics: dict, error: str | None) -> None:
    path = lake.table_path(lake_dir, "ops", "run_log")
    lake.create_if_missing(spark, path, RUN_LOG_SCHEMA)
    finished = utcnow()
    row = (run_id, step, as_of, status, started_at, finished, (finished - started_at).total_seconds(),
           json.dumps(metrics, default=str, ensure_ascii=False), error)
    lake.merge(spark, spark.createDataFrame([row], RUN_LOG_SCHEMA), path, ["run_id", "step"], update_when="")


def current_user() -> str:
    """Who runs the job: ``C360_USER`` (set by schedulers), else the operating-system user."""
    explicit = os.environ.get("C360_USER")
    if explicit:
        return explicit
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 (no passwd entry in some containers)
        return f"uid:{os.getuid()}"


def snapshot_versions(lake_dir) -> dict[str, int]:
    """``layer/name -> version`` of every Delta table in the lake (a listing, no table read)."""
    out = {}
    for name in lake.tables(lake_dir):
        v = lake.log_version(storage.join(lake_dir, name))
        if v is not None:
            out[name] = v
    return out


def record_audit(spark: SparkSession, lake_dir, *, run_id: str, job: str, as_of: date | None, status: str,
                 started_at: datetime, inputs: dict[str, int], outputs: dict[str, int],
                 row_counts: dict[str, int], details: dict | None = None, error: str | None = None) -> None:
    """Append one ``ops/audit_log`` row (idempotent per run id and job)."""
    path = lake.table_path(lake_dir, "ops", "audit_log")
    lake.create_if_missing(spark, path, AUDIT_LOG_SCHEMA)
    finished = utcnow()
    row = (run_id, job, as_of, current_user(), socket.gethostname(), status, started_at, finished,
           (finished - started_at).total_seconds(), inputs, outputs, row_counts,
           json.dumps(details or {}, default=str, ensure_ascii=False), error)
    lake.merge(spark, spark.createDataFrame([row], AUDIT_LOG_SCHEMA), path, ["run_id", "job"], update_when="")

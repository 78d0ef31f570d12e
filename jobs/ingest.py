"""Ingest: landing zone -> ``bronze/<source>`` exactly once, bad rows -> quarantine.

For every source: discover new files (by checksum, so a re-sent file under any name is
skipped) and cut them into batches of at most ``ingest.batch_mb`` delivered megabytes,
oldest delivery first (a year of history loads in bounded memory). For every batch: read
the files in the engine as text, validate against the contract, stage the validated batch
once, then

- quarantine rejected rows (reason, file, line, raw text) and unreadable files,
- upsert the latest version of each key into bronze (:func:`c360.lake.upsert`: new keys
  are appended, keys already there go through ``MERGE``, where a re-sent or late older
  version never overwrites a newer one; new columns are added; ``_redelivered`` tells
  the two apart),
- record the batch's files in ``ops/ingested_files``.

Each of these writes is idempotent, so a run killed at any point is safely re-run.
"""

from __future__ import annotations

import logging
import shutil
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from c360 import lake, ops
from c360.contract import SOURCES, Source
from c360.landing import LandingFile, discover, make_reader
from c360.settings import Settings
from features.bronze import (REDELIVERED, ValidationRules, bronze_schema, latest_per_key, repeated_keys, validate,
                             with_version)

log = logging.getLogger(__name__)

QUARANTINE_SCHEMA = T.StructType([
    T.StructField("source", T.StringType()),
    T.StructField("reason", T.StringType()),
    T.StructField("source_file", T.StringType()),
    T.StructField("file_sha256", T.StringType()),
    T.StructField("line", T.LongType()),
    T.StructField("raw", T.StringType()),
    T.StructField("delivery_date", T.DateType()),
    T.StructField("batch_id", T.StringType()),
    T.StructField("quarantined_at", T.TimestampType()),
])
QUARANTINE_KEY = ["file_sha256", "line"]

# Sources whose every version is kept (SCD2 history is built from it in silver).
VERSIONED = {"customers": ("customer_id", "updated_at")}


@dataclass
class SourceResult:
    source: str
    files_new: int = 0
    files_skipped: int = 0  # already ingested (same checksum)
    files_duplicate: int = 0  # same content as another file of this run
    files_quarantined: int = 0
    rows_read: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    reasons: Counter = field(default_factory=Counter)
    error: str | None = None  # an unexpected failure: this source's new files were not recorded


class IngestError(RuntimeError):
    """Some sources failed unexpectedly; the others were ingested (``results``)."""

    def __init__(self, message: str, results: dict[str, SourceResult]):
        super().__init__(message)
        self.results = results


def rules_from(settings: Settings) -> ValidationRules:
    return ValidationRules(bank_timezone=settings.bank.timezone,
                           max_future_days=settings.ingest.max_future_days,
                           min_date=settings.ingest.min_date)


def _plan(files: list[LandingFile], done: set[str], as_of: date | None):
    """Split discovered files into: to read, unreadable, duplicates in this run, skipped."""
    to_read, unreadable, duplicates, skipped = [], [], [], []
    seen: dict[str, LandingFile] = {}
    for f in files:
        if as_of is not None and f.delivery_date is not None and f.delivery_date > as_of:
            continue  # delivered after as_of: a later run takes it
        if f.sha256 in done:
            skipped.append(f)
        elif f.sha256 in seen:
            duplicates.append((f, seen[f.sha256]))
        else:
            seen[f.sha256] = f
            (unreadable if f.problem else to_read).append(f)
    return to_read, unreadable, duplicates, skipped


def plan_batches(files: list[LandingFile], max_bytes: int) -> list[list[LandingFile]]:
    """``files`` in delivery-date order, cut into consecutive batches of at most ``max_bytes``
    (a bigger file is a batch of its own). Older deliveries are loaded first, so a batch
    never holds data delivered after the next batch's."""
    ordered = sorted(files, key=lambda f: (f.delivery_date or date.min, f.path))
    batches: list[list[LandingFile]] = []
    size = 0
    for f in ordered:
        if batches and size + f.size_bytes <= max_bytes:
            batches[-1].append(f)
            size += f.size_bytes
        else:
            batches.append([f])
            size = f.size_bytes
    return batches


def _file_rows_df(spark: SparkSession, files: list[LandingFile]) -> DataFrame:
    schema = T.StructType([
        T.StructField("path", T.StringType()), T.StructField("fmt", T.StringType()),
        T.StructField("header", T.ArrayType(T.StringType())), T.StructField("delivery_date", T.DateType()),
        T.StructField("sha256", T.StringType()),
    ])
    rows = [(f.path, f.fmt, list(f.header), f.delivery_date, f.sha256) for f in files]
    return spark.createDataFrame(rows, schema)


def read_landing_files(spark: SparkSession, source: Source, files: list[LandingFile],
                       read_tasks: int = 8) -> DataFrame:
    """Text rows of ``files`` with their file's checksum, read in the engine by at most
    ``read_tasks`` tasks."""
    extras = sorted({c for f in files for c in f.header} - set(source.column_names))
    reader, ddl, _ = make_reader(source.column_names + extras)
    files_df = _file_rows_df(spark, files)
    return files_df.repartition(max(1, min(len(files), read_tasks))).mapInArrow(reader, ddl)


def ingest_source(spark: SparkSession, settings: Settings, source: Source, files: list[LandingFile],
                  batch_id: str, result: SourceResult) -> dict[str, dict]:
    """Read, validate, quarantine and upsert one source's new files; per-file counts out."""
    lake_dir = settings.lake
    rules = rules_from(settings)
    clock = _Clock(f"ingest {source.name} ({len(files)} files)")
    # Stage the validated batch once: the landing files are read a single time, and
    # quarantine, bronze and the counts all work from the staged table.
    staging = lake.table_path(lake_dir, "bronze", f"_staging/{source.name}")
    text = read_landing_files(spark, source, files, settings.ingest.read_tasks)
    lake.overwrite(validate(text, source, rules), staging)
    clock.lap("read and validated")
    everything = lake.read(spark, staging)
    staged = everything.where("_file_error IS NULL").drop("_file_error")
    broken = everything.where("_file_error IS NOT NULL").select(
        "_source_file", "_file_sha256", "_delivery_date", F.col("_file_error").alias("_reason"))
    now = F.lit(ops.utcnow()).cast("timestamp")

    # 1. quarantine: rejected rows, and files that could not be read
    q_rows = staged.where("_reason IS NOT NULL").select(
        F.lit(source.name).alias("source"), F.col("_reason").alias("reason"),
        F.col("_source_file").alias("source_file"), F.col("_file_sha256").alias("file_sha256"),
        F.col("_line").alias("line"), F.col("_raw").alias("raw"), F.col("_delivery_date").alias("delivery_date"),
        F.lit(batch_id).alias("batch_id"), now.alias("quarantined_at"))
    q_files = broken.select(
        F.lit(source.name).alias("source"), F.col("_reason").alias("reason"),
        F.col("_source_file").alias("source_file"), F.col("_file_sha256").alias("file_sha256"),
        F.lit(0).cast("bigint").alias("line"), F.lit(None).cast("string").alias("raw"),
        F.col("_delivery_date").alias("delivery_date"), F.lit(batch_id).alias("batch_id"), now.alias("quarantined_at"))
    quarantine = lake.table_path(lake_dir, "quarantine", source.name)
    lake.create_if_missing(spark, quarantine, QUARANTINE_SCHEMA)
    lake.upsert(spark, q_rows.unionByName(q_files).to(QUARANTINE_SCHEMA), quarantine, QUARANTINE_KEY,
                update_when=None)
    clock.lap("quarantine")

    # 2. bronze: the latest version of each key
    good = staged.where("_reason IS NULL").drop("_reason", "_raw")
    extras = [c for c in good.columns if c not in source.column_names and not c.startswith("_")]
    schema = bronze_schema(source, extras)
    # New keys are appended, keys bronze already holds are merged (lake.upsert), which reads
    # its source up to four times. Only the keys repeated within the batch are staged (a grouping over
    # the key columns); the latest rows are then picked from the staged batch on each read,
    # and with no repeated key every good row is taken as it is. Staging the deduplicated
    # batch instead wrote every row once more (12-14 s per 7.5M transactions, 22 s per 14M
    # holdings rows at 1M customers).
    targets = [(lake.table_path(lake_dir, "bronze", source.name), list(source.key))]
    if source.name in VERSIONED:  # every distinct version of a key, not just the latest
        targets.append((lake.table_path(lake_dir, "bronze", f"{source.name}_versions"),
                        list(VERSIONED[source.name])))
    repeated_staging = f"{staging}__repeated"
    for target, keys in targets:
        lake.overwrite(repeated_keys(good, keys), repeated_staging)
        n_repeated = lake.count_rows(spark, repeated_staging)
        rows = latest_per_key(good, source, keys, repeated=lake.read(spark, repeated_staging)) if n_repeated \
            else with_version(good, source)
        rows = rows.withColumn("_batch_id", F.lit(batch_id)).withColumn("_ingested_at", now).to(schema)
        clock.lap(f"{n_repeated:,} keys repeated in the batch for {Path(target).name}")
        lake.create_if_missing(spark, target, bronze_schema(source))
        # REDELIVERED marks the rows whose key bronze held already: only those can have an
        # older row elsewhere in silver (an event time that moved to another partition)
        done = lake.upsert(spark, rows, target, keys, update_when="s._version >= t._version", mark=REDELIVERED)
        clock.lap(f"{Path(target).name}: {done['appended']:,} appended, {done['merged']:,} merged")
    shutil.rmtree(repeated_staging, ignore_errors=True)

    # 3. per-file counts (one row per file: bounded)
    counts = {r["_source_file"]: r.asDict() for r in staged.groupBy("_source_file").agg(
        F.count(F.lit(1)).alias("rows_read"),
        F.count_if(F.col("_reason").isNull()).alias("rows_loaded"),
        F.count_if(F.col("_reason").isNotNull()).alias("rows_quarantined")).collect()}
    for r in broken.select("_source_file", "_reason").collect():
        counts[r["_source_file"]] = {"file_error": r["_reason"], "rows_read": 0, "rows_loaded": 0,
                                     "rows_quarantined": 0}
    for r in staged.where("_reason IS NOT NULL").groupBy(
            F.regexp_extract("_reason", r"^([^:;']*)", 1).alias("kind")).count().collect():
        result.reasons[r["kind"].strip()] += r["count"]
    shutil.rmtree(staging, ignore_errors=True)
    clock.lap("counted")
    return counts


class _Clock:
    """Logs how long each part of a source's ingest took (INFO), for operators at scale."""

    def __init__(self, what: str):
        self.what, self.t = what, time.perf_counter()

    def lap(self, part: str) -> None:
        now = time.perf_counter()
        log.info("%s: %s in %.1f s", self.what, part, now - self.t)
        self.t = now


def run(spark: SparkSession, settings: Settings, as_of: date | None = None, sources: list[str] | None = None,
        batch_id: str | None = None, progress=None) -> dict[str, SourceResult]:
    """Ingest every new landing file delivered on or before ``as_of`` (all, when None)."""
    batch_id = batch_id or uuid.uuid4().hex[:12]
    names = sources or list(SOURCES)
    # files already ingested and unchanged since (path, size, modification time) are not
    # hashed again: a daily run reads only the new deliveries, not a year of landing files
    files = discover(Path(settings.landing), names, ops.ingested_files(spark, settings.lake))
    done = ops.ingested_checksums(spark, settings.lake)
    to_read, unreadable, duplicates, skipped = _plan(files, done, as_of)
    results = {n: SourceResult(n) for n in names}
    for f in skipped:
        results[f.source].files_skipped += 1
    # skipped by checksum after hashing (recorded before modification times were): remember
    # their time so the next run does not hash them again
    ops.remember_modified(spark, settings.lake, [(f.path, f.sha256, f.modified_ns) for f in skipped
                                                 if not f.known and f.modified_ns is not None])
    now = ops.utcnow()
    records: list[dict] = []
    for f, original in duplicates:
        results[f.source].files_duplicate += 1
        records.append(dict(source=f.source, file_path=f.path, sha256=f.sha256, size_bytes=f.size_bytes,
                            delivery_date=f.delivery_date, status="duplicate",
                            reason=f"same content as {original.path}", batch_id=batch_id, ingested_at=now,
                            modified_ns=f.modified_ns))
    if unreadable:
        _quarantine_unreadable(spark, settings, unreadable, batch_id)
        for f in unreadable:
            results[f.source].files_quarantined += 1
            results[f.source].reasons[f.problem] += 1
            records.append(dict(source=f.source, file_path=f.path, sha256=f.sha256, size_bytes=f.size_bytes,
                                delivery_date=f.delivery_date, status="quarantined", reason=f.problem,
                                rows_read=0, rows_loaded=0, rows_quarantined=0, batch_id=batch_id,
                                ingested_at=now, modified_ns=f.modified_ns))
    by_source: dict[str, list[LandingFile]] = {}
    for f in to_read:
        by_source.setdefault(f.source, []).append(f)
    batches = [(name, part) for name in names
               for part in plan_batches(by_source.get(name, []), settings.ingest.batch_mb << 20)]
    for i, (name, src_files) in enumerate(batches):
        if progress:
            mb = sum(f.size_bytes for f in src_files) / 1e6
            progress(f"ingest {name} {src_files[0].delivery_date}..{src_files[-1].delivery_date} "
                     f"({len(src_files)} files, {mb:,.0f} MB)", i, len(batches))
        res = results[name]
        if res.error:
            continue  # an earlier batch of this source failed: later ones wait for the re-run
        try:
            counts = ingest_source(spark, settings, SOURCES[name], src_files, batch_id, res)
        except Exception as exc:  # one source's failure must not stop the others
            # Its files are not recorded, so the next run retries them (every write is idempotent).
            log.exception("ingest of %s failed", name)
            res.error = f"{type(exc).__name__}: {str(exc)[:300]}"
            continue
        loaded: list[dict] = []
        for f in src_files:
            c = counts.get(f.path, {"rows_read": 0, "rows_loaded": 0, "rows_quarantined": 0})
            status = "quarantined" if c.get("file_error") else "loaded"
            res.files_new += 1
            res.files_quarantined += status == "quarantined"
            if c.get("file_error"):
                res.reasons[c["file_error"]] += 1
            res.rows_read += c["rows_read"]
            res.rows_loaded += c["rows_loaded"]
            res.rows_quarantined += c["rows_quarantined"]
            loaded.append(dict(source=name, file_path=f.path, sha256=f.sha256, size_bytes=f.size_bytes,
                               delivery_date=f.delivery_date, status=status, reason=c.get("file_error"),
                               rows_read=c["rows_read"], rows_loaded=c["rows_loaded"],
                               rows_quarantined=c["rows_quarantined"], batch_id=batch_id, ingested_at=now,
                               modified_ns=f.modified_ns))
        # recorded per batch: a run stopped later resumes after this batch
        ops.record_files(spark, settings.lake, loaded)
    ops.record_files(spark, settings.lake, records)
    if progress:
        progress("ingest", len(batches), len(batches))
    failed = {n: r.error for n, r in results.items() if r.error}
    if failed:
        raise IngestError("ingest failed for " + "; ".join(f"{n} ({e})" for n, e in failed.items())
                          + "; the other sources were ingested", results)
    return results


def _quarantine_unreadable(spark: SparkSession, settings: Settings, files: list[LandingFile], batch_id: str) -> None:
    now = ops.utcnow()
    by_source: dict[str, list] = {}
    for f in files:
        by_source.setdefault(f.source, []).append(
            (f.source, f.problem, f.path, f.sha256, 0, None, f.delivery_date, batch_id, now))
    for name, rows in by_source.items():
        path = lake.table_path(settings.lake, "quarantine", name)
        lake.create_if_missing(spark, path, QUARANTINE_SCHEMA)
        lake.merge(spark, spark.createDataFrame(rows, QUARANTINE_SCHEMA), path, QUARANTINE_KEY, update_when=None)

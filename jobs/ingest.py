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

Nothing in the landing zone is lost, blocked or skipped silently: a file at a wrong path
(folder not a date, unsupported extension) is quarantined with its reason and recorded as
``rejected``, which blocks nothing (the same bytes at a valid path load); a file that cannot
be read now (permission denied, vanished or changed while read) is left for the next run,
unrecorded, and every other file and source loads; every other entry not read (nested
folders, loose, hidden or wrong-case entries, links outside the landing zone) is counted in
the results and listed in ``ops/landing_issues`` (see :func:`c360.landing.scan`).

Each of these writes is idempotent, so a run killed at any point is safely re-run.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from typing import NamedTuple

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from c360 import lake, ops, storage
from c360.contract import SOURCES, Source
from c360.landing import LEFT_FOR_NEXT_RUN, LandingFile, make_reader, scan
from c360.settings import Settings
from features.bronze import (REDELIVERED, ValidationRules, bronze_schema, bronze_table_schema, latest_per_key,
                             repeated_in_file, repeated_keys, validate, with_version)

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

# Sources whose every version is kept (SCD2 history is built from it in silver): customers
# per update; complaints per status and delivery (a complaint resolved, then re-opened and
# resolved again keeps each step: silver/complaint_history).
VERSIONED = {"customers": ("customer_id", "updated_at"),
             "complaints": ("complaint_id", "status", "_delivery_date")}


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
    # valid rows repeating the key and version of a later line of their file with the same
    # values: loaded once (one with other values is quarantined: "conflicting duplicate key")
    rows_repeated_in_file: int = 0
    error: str | None = None  # an unexpected failure: this source's new files were not recorded
    files_deferred: int = 0  # could not be read now (permission, vanished): left for the next run
    entries_not_read: int = 0  # nested folders, loose/hidden/wrong-case entries, links outside...
    # ``{path, kind, reason}`` of the entries not read first seen in this run, and of every
    # file left for the next run (at most MAX_ISSUES_LISTED; all are in ops/landing_issues)
    issues: list = field(default_factory=list)


# The results' key for entries at the landing root that belong to no source.
LANDING_ROOT = "(landing)"
MAX_ISSUES_LISTED = 100


class IngestError(RuntimeError):
    """Some sources failed unexpectedly; the others were ingested (``results``)."""

    def __init__(self, message: str, results: dict[str, SourceResult]):
        super().__init__(message)
        self.results = results


def rules_from(settings: Settings) -> ValidationRules:
    return ValidationRules(bank_timezone=settings.bank.timezone,
                           max_future_days=settings.ingest.max_future_days,
                           min_date=settings.ingest.min_date)


class Plan(NamedTuple):
    to_read: list[LandingFile]
    quarantine: list[LandingFile]  # content defects found at discovery: their checksum is recorded
    rejected: list[LandingFile]  # path problems seen for the first time (folder, extension)
    deferred: list[LandingFile]  # could not be read now: neither quarantined nor recorded
    duplicates: list[tuple[LandingFile, LandingFile]]  # (file, the file of this run with its content)
    skipped: list[LandingFile]  # already ingested (same checksum) or already rejected (same path)


def _plan(files: list[LandingFile], done: set[str], as_of: date | None) -> Plan:
    """Split discovered files by what happens to them (see :class:`Plan`).

    A path rejection never takes part in the checksum checks: its bytes are neither
    skipped as already done nor do they make another file of the run a duplicate."""
    plan = Plan([], [], [], [], [], [])
    seen: dict[str, LandingFile] = {}
    for f in files:
        if as_of is not None and f.delivery_date is not None and f.delivery_date > as_of:
            continue  # delivered after as_of: a later run takes it
        if f.fault == "io":
            plan.deferred.append(f)
        elif f.fault == "path":
            # known: this path was recorded with this size and time: rejected already
            (plan.skipped if f.known else plan.rejected).append(f)
        elif f.sha256 in done:
            plan.skipped.append(f)
        elif f.sha256 in seen:
            plan.duplicates.append((f, seen[f.sha256]))
        else:
            seen[f.sha256] = f
            (plan.quarantine if f.problem else plan.to_read).append(f)
    return plan


def _changed_since_discovery(f: LandingFile) -> str | None:
    """Why ``f`` may have failed to read for a reason other than its content (it vanished,
    changed or cannot be opened now), or None when it is still as discovered."""
    try:
        st = storage.info(f.path)
        if st.size != f.size_bytes or st.mtime_ns != f.modified_ns:
            return f"changed while being read: {LEFT_FOR_NEXT_RUN}"
        with storage.open_input(f.path) as fh:
            fh.read(1)
    except FileNotFoundError:
        return f"vanished while being read: {LEFT_FOR_NEXT_RUN}"
    except OSError as exc:
        return f"could not be read ({type(exc).__name__}: {exc.strerror or exc}): {LEFT_FOR_NEXT_RUN}"
    return None


def cap_new_columns(spark: SparkSession, settings: Settings, files: list[LandingFile]
                    ) -> tuple[list[LandingFile], list[LandingFile]]:
    """``files`` split into those to read and those with more new columns than
    ``ingest.max_new_columns_per_file`` (with their ``problem`` set: quarantined whole).

    A new column is in neither the contract nor the source's bronze table. Each one is
    added to bronze and silver for good, so a file with thousands of them (a pivoted export,
    a header shifted into the data) would slow every later run. The whole file is held back
    rather than loaded without those columns: nothing is lost or half loaded, and the reason
    names the columns, so the bank can fix and re-deliver it. Like any content defect its
    checksum is recorded: after raising the cap, the same bytes need delivering again."""
    cap = settings.ingest.max_new_columns_per_file
    known: dict[str, set[str]] = {}
    to_read, capped = [], []
    for f in files:
        if f.source not in known:
            path = lake.table_path(settings.lake, "bronze", f.source)
            known[f.source] = set(SOURCES[f.source].column_names) | \
                (set(lake.read(spark, path).columns) if lake.exists(path) else set())
        new = [c for c in f.header if c not in known[f.source]]
        if len(new) <= cap:
            to_read.append(f)
            continue
        shown = ", ".join(c[:40] for c in new[:5]) + (", ..." if len(new) > 5 else "")
        capped.append(dataclasses.replace(
            f, fault="content", problem=f"{len(new)} new columns, more than ingest.max_new_columns_per_file ({cap}): {shown}"))
    return to_read, capped


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
    reader, ddl, _ = make_reader(source.column_names + extras, source)
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
    # A file the reader failed on that vanished, changed or cannot be opened since discovery
    # failed for that, not for its content: left for the next run (neither quarantined nor
    # recorded, so its checksum blocks nothing). One row per broken file: bounded.
    broken_files = {r["_source_file"]: r["_reason"] for r in broken.select("_source_file", "_reason").collect()}
    by_path = {f.path: f for f in files}
    deferred = {p: why for p in broken_files if (why := _changed_since_discovery(by_path[p]))}
    if deferred:
        broken = broken.where(~F.col("_source_file").isin(list(deferred)))

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
    in_file: dict[str, int] = {}  # file -> rows quarantined as conflicting duplicates
    for target, keys in targets:
        lake.overwrite(repeated_keys(good, keys), repeated_staging)
        n_repeated = lake.count_rows(spark, repeated_staging)
        if n_repeated and keys == list(source.key):
            in_file = _quarantine_repeated_in_file(spark, good, source, lake.read(spark, repeated_staging),
                                                   quarantine, batch_id, now, result)
        rows = latest_per_key(good, source, keys, repeated=lake.read(spark, repeated_staging)) if n_repeated \
            else with_version(good, source)
        rows = rows.withColumn("_batch_id", F.lit(batch_id)).withColumn("_ingested_at", now).to(schema)
        clock.lap(f"{n_repeated:,} keys repeated in the batch for {storage.name(target)}")
        lake.create_if_missing(spark, target, bronze_table_schema(source))
        # REDELIVERED marks the rows whose key bronze held already: only those can have an
        # older row elsewhere in silver (an event time that moved to another partition)
        done = lake.upsert(spark, rows, target, keys, update_when="s._version >= t._version", mark=REDELIVERED)
        clock.lap(f"{storage.name(target)}: {done['appended']:,} appended, {done['merged']:,} merged")
    storage.remove_tree(repeated_staging)

    # 3. per-file counts (one row per file: bounded)
    counts = {r["_source_file"]: r.asDict() for r in staged.groupBy("_source_file").agg(
        F.count(F.lit(1)).alias("rows_read"),
        F.count_if(F.col("_reason").isNull()).alias("rows_loaded"),
        F.count_if(F.col("_reason").isNotNull()).alias("rows_quarantined")).collect()}
    for path, n in in_file.items():  # valid, but quarantined (above) rather than loaded
        counts[path]["rows_loaded"] -= n
        counts[path]["rows_quarantined"] += n
    for path, reason in broken_files.items():
        counts[path] = {"file_error": reason, "rows_read": 0, "rows_loaded": 0, "rows_quarantined": 0}
    for path, why in deferred.items():
        counts[path] = {"deferred": why, "rows_read": 0, "rows_loaded": 0, "rows_quarantined": 0}
    for r in staged.where("_reason IS NOT NULL").groupBy(
            F.regexp_extract("_reason", r"^([^:;']*)", 1).alias("kind")).count().collect():
        result.reasons[r["kind"].strip()] += r["count"]
    storage.remove_tree(staging)
    clock.lap("counted")
    return counts


def _quarantine_repeated_in_file(spark: SparkSession, good: DataFrame, source: Source, repeated: DataFrame,
                                 quarantine: str, batch_id: str, now, result: SourceResult) -> dict[str, int]:
    """Quarantine the valid rows whose key and version a later line of their file repeats
    with other values (:func:`features.bronze.repeated_in_file`; the last line is loaded),
    count identical copies in ``result``; the quarantined rows per file out."""
    rows = repeated_in_file(good, source, repeated)
    keys = ", ".join(source.key)
    lake.upsert(spark, rows.where("_conflict").select(
        F.lit(source.name).alias("source"),
        F.concat(F.lit(f"conflicting duplicate key in file: {keys} also on line "), F.col("_kept_line").cast("string"),
                 F.lit(" with other values (that line was loaded)")).alias("reason"),
        F.col("_source_file").alias("source_file"), F.col("_file_sha256").alias("file_sha256"),
        F.col("_line").alias("line"), F.col("_raw").alias("raw"), F.col("_delivery_date").alias("delivery_date"),
        F.lit(batch_id).alias("batch_id"), now.alias("quarantined_at")).to(QUARANTINE_SCHEMA),
        quarantine, QUARANTINE_KEY, update_when=None)
    per_file: dict[str, int] = {}
    for r in rows.groupBy("_source_file", "_conflict").count().collect():  # one row per file: bounded
        if r["_conflict"]:
            per_file[r["_source_file"]] = r["count"]
            result.reasons["conflicting duplicate key in file"] += r["count"]
        else:
            result.rows_repeated_in_file += r["count"]
    return per_file


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
    found = scan(settings.landing, names, ops.ingested_files(spark, settings.lake))
    done = ops.ingested_checksums(spark, settings.lake)
    plan = _plan(found.files, done, as_of)
    to_read, capped = cap_new_columns(spark, settings, plan.to_read)
    plan = plan._replace(to_read=to_read, quarantine=plan.quarantine + capped)
    results = {n: SourceResult(n) for n in names}

    def result(source: str | None) -> SourceResult:
        key = source if source in results else LANDING_ROOT
        return results.setdefault(key, SourceResult(key))

    # entries not read: (path, source, kind, reason), recorded in ops/landing_issues at the end
    not_read: list[tuple[str, str | None, str, str]] = []
    for e in found.unexpected:
        result(e.source).entries_not_read += 1
        not_read.append((e.path, e.source, e.kind, e.reason))
    for f in plan.deferred:
        result(f.source).files_deferred += 1
        not_read.append((f.path, f.source, "unreadable", f.problem))
    for f in plan.skipped:
        results[f.source].files_skipped += 1
    # skipped by checksum after hashing (recorded before modification times were): remember
    # their time so the next run does not hash them again
    ops.remember_modified(spark, settings.lake, [(f.path, f.sha256, f.modified_ns) for f in plan.skipped
                                                 if not f.known and f.modified_ns is not None])
    now = ops.utcnow()
    records: list[dict] = []
    for f, original in plan.duplicates:
        results[f.source].files_duplicate += 1
        records.append(dict(source=f.source, file_path=f.path, sha256=f.sha256, size_bytes=f.size_bytes,
                            delivery_date=f.delivery_date, status="duplicate",
                            reason=f"same content as {original.path}", batch_id=batch_id, ingested_at=now,
                            modified_ns=f.modified_ns))
    if plan.quarantine or plan.rejected:
        _quarantine_unreadable(spark, settings, plan.quarantine + plan.rejected, batch_id)
        for f in plan.quarantine + plan.rejected:
            results[f.source].files_quarantined += 1
            results[f.source].reasons[f.problem] += 1
            # a path rejection is "rejected": its checksum blocks nothing (ops.ingested_checksums)
            records.append(dict(source=f.source, file_path=f.path, sha256=f.sha256, size_bytes=f.size_bytes,
                                delivery_date=f.delivery_date,
                                status="rejected" if f.fault == "path" else "quarantined", reason=f.problem,
                                rows_read=0, rows_loaded=0, rows_quarantined=0, batch_id=batch_id,
                                ingested_at=now, modified_ns=f.modified_ns))
    by_source: dict[str, list[LandingFile]] = {}
    for f in plan.to_read:
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
            if c.get("deferred"):  # vanished or changed while read: not recorded, the next run retries
                res.files_deferred += 1
                not_read.append((f.path, f.source, "unreadable", c["deferred"]))
                continue
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
    _report_not_read(spark, settings, not_read, batch_id, result)
    if progress:
        progress("ingest", len(batches), len(batches))
    failed = {n: r.error for n, r in results.items() if r.error}
    if failed:
        raise IngestError("ingest failed for " + "; ".join(f"{n} ({e})" for n, e in failed.items())
                          + "; the other sources were ingested", results)
    return results


def _report_not_read(spark: SparkSession, settings: Settings, entries: list[tuple[str, str | None, str, str]],
                     batch_id: str, result) -> None:
    """Record the entries not read in ``ops/landing_issues`` and list in the results those
    seen for the first time, and every file left for the next run."""
    new = ops.record_landing_issues(spark, settings.lake, entries, batch_id)
    for path, source, kind, reason in entries:
        res = result(source)
        if ((path, reason) in new or kind == "unreadable") and len(res.issues) < MAX_ISSUES_LISTED:
            res.issues.append({"path": path, "kind": kind, "reason": reason})


def _quarantine_unreadable(spark: SparkSession, settings: Settings, files: list[LandingFile], batch_id: str) -> None:
    """Quarantine files rejected as a whole at discovery (one row each, ``line`` 0)."""
    now = ops.utcnow()
    by_source: dict[str, dict] = {}
    for f in files:  # one row per quarantine key (checksum, line 0): the same bytes at two bad paths
        by_source.setdefault(f.source, {}).setdefault(
            f.sha256, (f.source, f.problem, f.path, f.sha256, 0, None, f.delivery_date, batch_id, now))
    for name, rows in by_source.items():
        path = lake.table_path(settings.lake, "quarantine", name)
        lake.create_if_missing(spark, path, QUARANTINE_SCHEMA)
        lake.merge(spark, spark.createDataFrame(list(rows.values()), QUARANTINE_SCHEMA), path, QUARANTINE_KEY,
                   update_when=None)

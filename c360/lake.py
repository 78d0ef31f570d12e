"""Delta Lake I/O: where tables live and how they are written.

Layout: ``<lake>/<layer>/<name>`` with the layers

- ``bronze``      raw rows, parsed and typed, upserted per source key (restricted: has PII)
- ``silver``      cleaned, conformed, one row per key, PII tokenised
- ``restricted``  the only place raw PII is kept after bronze (``restricted/customer_pii``)
- ``quarantine``  rows and files that failed parsing or validation, with the reason
- ``gold``        profiles, segments, recommendations (later steps)
- ``ops``         the pipeline's own bookkeeping: ingested files, run log
- ``marketing``   what marketing and the CRM may see: views of consenting customers'
                  segments and tags (``customer_id``, no PII, no raw features), persona
                  cards, KPIs, migration, offer outcomes; also the CRM exports
                  (``marketing/exports/crm/<as_of>/``) and the marketing report
                  (``marketing/reports/<as_of>/``). Grant it apart from the other layers
                  (README, "Data zones and who gets access").

Writes go through Spark (Sail or a Spark cluster). Maintenance that Sail's SQL does not
have (VACUUM, OPTIMIZE, history) uses the ``deltalake`` package on the same tables.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import BooleanType, StructField, StructType

from c360 import faults, storage

LAYERS = ("bronze", "silver", "restricted", "quarantine", "gold", "ops", "marketing")


def table_path(lake: Path | str, layer: str, name: str) -> str:
    if layer not in LAYERS:
        raise ValueError(f"unknown layer {layer!r}; layers are {', '.join(LAYERS)}")
    return storage.join(lake, layer, name)


def delta_table(path: str, version: int | None = None):
    """The ``deltalake`` table at ``path`` (a local path or a URI, with the storage options
    of c360.storage)."""
    from deltalake import DeltaTable

    return DeltaTable(str(path), version=version, storage_options=storage.delta_options(path))


def exists(path: str) -> bool:
    """True when ``path`` holds a Delta table (a ``_delta_log`` with at least one commit)."""
    if storage.is_uri(path):
        return any(i.path.endswith(".json") for i in storage.listdir(storage.join(path, "_delta_log")))
    log = Path(path) / "_delta_log"
    return log.is_dir() and any(log.glob("*.json"))


# The open recordings of :func:`recording_reads` (usually none, or the running step's).
_recordings: list[dict[str, int | None]] = []


@contextmanager
def recording_reads() -> Iterator[dict[str, int | None]]:
    """Record the tables :func:`read` opens inside the block, as ``path -> version``: the
    version asked for, else the latest committed one when the table was opened (what a
    read without a version sees). The first read of a path counts. The pipeline records
    each step's reads this way for the audit log's input versions (jobs/pipeline.py)."""
    reads: dict[str, int | None] = {}
    _recordings.append(reads)
    try:
        yield reads
    finally:
        _recordings.remove(reads)


def read(spark: SparkSession, path: str, version: int | None = None) -> DataFrame:
    if any(str(path) not in reads for reads in _recordings):  # the log is read once per path
        seen = version if version is not None else log_version(path)
        for reads in _recordings:
            reads.setdefault(str(path), seen)
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    return reader.load(path)


def read_or_empty(spark: SparkSession, path: str, schema: StructType) -> DataFrame:
    """The table, or an empty DataFrame of ``schema`` when it does not exist yet."""
    return read(spark, path) if exists(path) else spark.createDataFrame([], schema)


def create_if_missing(spark: SparkSession, path: str, schema: StructType, partition_by: list[str] | None = None) -> None:
    """Create an empty table with the declared (nullable) schema, unless it exists."""
    if exists(path):
        return
    writer = spark.createDataFrame([], schema).write.format("delta").mode("append")
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    writer.save(path)


def plain_strings(df: DataFrame) -> DataFrame:
    """``df`` with its string columns (and arrays of strings) cast to the plain ``string`` type.

    Spark 4.2 gives the results of some expressions an explicitly collated string type
    (``string collate UTF8_BINARY``: the default collation, but named), and Delta Lake on
    the JVM writes that name into the table's schema. The ``deltalake`` package (row counts,
    versions, maintenance) cannot read such a table ("Unsupported Delta table type: 'string
    collate UTF8_BINARY'"). The client cannot tell the two types apart, so every string
    column is cast; on the same type the cast is a no-op (Sail has no collations)."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import ArrayType, StringType

    cols, cast = [], False
    for f in df.schema.fields:
        col = F.col(f"`{f.name}`")
        if isinstance(f.dataType, StringType):
            col, cast = col.cast("string").alias(f.name), True
        elif (isinstance(f.dataType, ArrayType) and isinstance(f.dataType.elementType, StringType)
              and f.dataType.containsNull):
            col, cast = col.cast("array<string>").alias(f.name), True
        cols.append(col)
    return df.select(*cols) if cast else df


def overwrite(df: DataFrame, path: str, schema: StructType | None = None, partition_by: list[str] | None = None,
              replace_where: str | None = None) -> None:
    """Replace the table's content (or the part matching ``replace_where``) atomically.

    ``schema`` declares the table's columns and types; literal-made columns would
    otherwise be written non-nullable.
    """
    df = plain_strings(df.to(schema) if schema is not None else df)
    if replace_where and exists(path):
        # Sail cannot add columns in a replaceWhere overwrite ("schema evolution not yet
        # implemented"): add a new column (e.g. one a source started delivering) with an
        # empty mergeSchema append first; rows already in the table get null in it.
        current = read(df.sparkSession, path).columns
        if any(c not in current for c in df.columns):
            df.limit(0).write.format("delta").mode("append").option("mergeSchema", "true").save(path)
            current = read(df.sparkSession, path).columns
            df = df.select(*[f"`{c}`" for c in current if c in df.columns],
                           *[f"`{c}`" for c in df.columns if c not in current])
    writer = df.write.format("delta").mode("overwrite")
    if replace_where:
        writer = writer.option("replaceWhere", replace_where).option("mergeSchema", "true")
    else:
        writer = writer.option("overwriteSchema", "true")
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    faults.before_commit(df, path, partition_by)
    writer.save(path)
    faults.after_commit(path)


def _with_new_columns_added(df: DataFrame, path: str) -> DataFrame:
    """Before a replaceWhere overwrite of the existing table at ``path``: Sail cannot add
    columns there ("schema evolution not yet implemented"), so a column of ``df`` the table
    lacks (e.g. one a source started delivering, or a new gold column) is added to the
    table's schema first (a Delta metadata commit by ``deltalake``, no data rewritten); rows
    already in the table read null in it. (Not an empty mergeSchema append: Sail 0.7
    ignores mergeSchema, silently, on a table with an array column.) ``df`` is returned with
    its columns in the table's order."""
    import json

    def columns() -> list[str]:
        # the table's columns from its Delta log (not lake.read: the write's own target is
        # not an input of the step, for the audit log)
        return [f.name for f in delta_table(path).schema().fields]

    current = columns()
    new = [f for f in df.schema.fields if f.name not in current]
    if new:
        from deltalake.schema import Field

        delta_table(path).alter.add_columns(
            [Field.from_json(json.dumps({**f.jsonValue(), "nullable": True})) for f in new])
        current = columns()
        df = df.select(*[f"`{c}`" for c in current if c in df.columns],
                       *[f"`{c}`" for c in df.columns if c not in current])
    return df


def by_partition(df: DataFrame, *columns: str) -> DataFrame:
    """``df`` hash-partitioned on ``columns`` into ``spark.sql.shuffle.partitions`` parts, so
    that a write partitioned by those columns puts each partition value in one file.

    The count is passed explicitly: Sail 0.7 reads ``repartition(col)`` without one as a
    single partition (one task wrote every row; 7.5M transactions into 57 day partitions
    took 11-17 s, against 5-8 s in 8 parts). JVM Spark uses the same setting either way."""
    n = int(df.sparkSession.conf.get("spark.sql.shuffle.partitions") or 8)
    return df.repartition(n, *columns)


def overwrite_staged(df: DataFrame, path: str, staging: str, partition_by: list[str] | None = None,
                     replace_where: str | None = None) -> None:
    """:func:`overwrite` for a ``df`` that reads the table it replaces: ``df`` is written to
    the table ``staging`` first and the table replaced from there (rows partitioned by
    ``partition_by`` before the write), then ``staging`` is removed, whatever happened."""
    try:
        overwrite(df, staging)
        staged = read(df.sparkSession, staging)
        overwrite(by_partition(staged, *partition_by) if partition_by else staged, path, partition_by=partition_by,
                  replace_where=replace_where)
    finally:
        storage.remove_tree(staging)


def append(df: DataFrame, path: str, schema: StructType | None = None) -> None:
    df = plain_strings(df.to(schema) if schema is not None else df)
    faults.before_commit(df, path)
    df.write.format("delta").mode("append").option("mergeSchema", "true").save(path)
    faults.after_commit(path)


_view_counter = 0


def merge(
    spark: SparkSession,
    source: DataFrame,
    path: str,
    keys: list[str],
    *,
    update_when: str | None = "",
    insert: bool = True,
    schema_evolution: bool = True,
) -> None:
    """Upsert ``source`` into the Delta table at ``path`` on ``keys``.

    ``update_when``: ``None`` never updates matched rows (insert-only, for append-style
    tables made idempotent); ``""`` always updates; an SQL condition over ``s`` (source)
    and ``t`` (target) updates only when it holds (e.g. ``s.updated_at >= t.updated_at``).
    The source must hold at most one row per key. New source columns are added to the
    table (schema evolution) unless ``schema_evolution`` is false.
    """
    global _view_counter
    _view_counter += 1
    view = f"_merge_src_{_view_counter}"
    source = plain_strings(source)
    source.createOrReplaceTempView(view)
    on = " AND ".join(f"t.`{k}` <=> s.`{k}`" for k in keys)
    clauses = []
    if update_when is not None:
        cond = f" AND ({update_when})" if update_when else ""
        clauses.append(f"WHEN MATCHED{cond} THEN UPDATE SET *")
    if insert:
        clauses.append("WHEN NOT MATCHED THEN INSERT *")
    evolution = " WITH SCHEMA EVOLUTION" if schema_evolution else ""
    faults.before_commit(source, path)
    try:
        spark.sql(f"MERGE{evolution} INTO delta.`{path}` t USING {view} s ON {on} {' '.join(clauses)}").collect()
    finally:
        spark.catalog.dropTempView(view)
    faults.after_commit(path)


def upsert(
    spark: SparkSession,
    source: DataFrame,
    path: str,
    keys: list[str],
    *,
    update_when: str | None = "",
    mark: str | None = None,
) -> dict[str, int]:
    """:func:`merge` for big, mostly-new batches: new keys are appended, only the keys the
    table already holds go through ``MERGE``.

    A ``MERGE`` joins and rewrites whole target files, which at tens of millions of rows
    costs minutes and gigabytes even when every key is new (the usual case for events,
    transactions and snapshots). Here both halves are split against one pinned version
    of the table: the keys already there are found by a join of key columns only and
    staged (``<layer>/_staging/<name>_known``, few rows: re-sent and corrected ones), the
    source rows with those keys are merged with ``update_when`` (skipped when there are
    none), and every other source row is appended (a plain write). The result equals
    :func:`merge`'s. Re-running after a crash between the two writes is safe: the rows
    appended by the first attempt are then "already there" and merge onto themselves.

    ``source`` must hold at most one row per key. It is read up to four times (statistics,
    known keys, merge, append), three of them for its key columns only: a table, or a
    cheap plan over one. Returns ``{"appended": n, "merged": m}`` (``merged`` counts the
    source rows whose key existed, updated or not).

    ``mark``: the name of a boolean column written with every row, true on the rows merged
    onto a key the table already held (re-delivered, corrected), false on the appended ones
    (null on rows written before the column existed). Whoever reads the rows loaded since
    some time can tell from it which keys may have had an earlier row (silver uses it to
    find rows whose event time moved). It costs nothing: the split is made anyway.
    """
    from pyspark.sql import functions as F

    if not exists(path):
        raise FileNotFoundError(f"{path}: no Delta table (create it first)")
    stats = source.agg(F.count(F.lit(1)).alias("n"), *[
        f(F.col(f"`{k}`")).alias(f"{name}{i}") for i, k in enumerate(keys)
        for name, f in (("lo", F.min), ("hi", F.max), ("nulls", lambda c: F.count_if(c.isNull())))]).first()
    if not stats["n"]:
        return {"appended": 0, "merged": 0}
    if mark is not None and mark not in read(spark, path).columns:
        # Added empty and declared nullable first. Written from a literal, Sail would add it
        # non-nullable, and a table that gained a non-nullable column by schema evolution
        # silently drops the new columns of every later write (a new delivered column lost).
        append(spark.createDataFrame([], StructType([*read(spark, path).schema.fields,
                                                     StructField(mark, BooleanType(), True)])), path)
    # Only target rows whose keys lie within the batch's key ranges can match. Said as a
    # filter, it lets the engine skip the files whose statistics lie outside (keys that grow
    # with time, like dated ids and snapshot dates, are clustered by load order).
    pinned = version(path)
    target = read(spark, path, version=pinned).select(*keys)
    for i, k in enumerate(keys):
        col, lo, hi = F.col(f"`{k}`"), stats[f"lo{i}"], stats[f"hi{i}"]
        cond = [col.between(F.lit(lo), F.lit(hi))] if lo is not None else []
        cond += [col.isNull()] if stats[f"nulls{i}"] else []
        target = target.where(cond[0] if len(cond) == 1 else cond[0] | cond[1])

    def on(left: str, right: str):
        return [F.col(f"{left}.`{k}`").eqNullSafe(F.col(f"{right}.`{k}`")) for k in keys]

    def marked(df: DataFrame, known_key: bool) -> DataFrame:
        return df if mark is None else df.withColumn(mark, F.lit(known_key))

    # The target's keys are the join's left (build) side and the batch's keys stream past.
    known_path = storage.join(storage.parent(path), "_staging", f"{storage.name(path)}_known")
    try:
        overwrite(target.alias("t").join(source.select(*keys).alias("s"), on("t", "s"), "inner")
                  .select(*[F.col(f"t.`{k}`") for k in keys]), known_path)
        merged = count_rows(spark, known_path)
        if merged:
            # Merge before appending: the appended keys are new, so they cannot collide.
            known = read(spark, known_path)
            merge(spark, marked(known.alias("k").join(source.alias("s"), on("k", "s"), "inner").select("s.*"), True),
                  path, keys, update_when=update_when)
            if merged == stats["n"]:
                return {"appended": 0, "merged": merged}
            # the few known keys are the build side; the batch streams past them
            new = (known.withColumn("_upsert_known", F.lit(True)).alias("k")
                   .join(source.alias("s"), on("k", "s"), "right")
                   .where(F.col("k._upsert_known").isNull()).select("s.*"))
        else:
            new = source
        append(marked(new, False), path)
    finally:
        storage.remove_tree(known_path)
    return {"appended": stats["n"] - merged, "merged": merged}


def tables(lake: Path | str) -> list[str]:
    """Every Delta table under the lake, as ``layer/name`` (``bronze/_staging/x`` included)."""
    if storage.is_uri(lake):
        found = set()
        for i in storage.listdir(lake, recursive=True):
            rel = storage.relative(i.path, lake)
            if "/_delta_log/" in f"/{rel}/" and rel.split("/")[0] in LAYERS:
                found.add(rel.split("/_delta_log", 1)[0] if not rel.startswith("_delta_log") else "")
        return sorted(f for f in found if f)
    root = Path(lake)
    if not root.is_dir():
        return []
    found = []
    for log in root.glob("**/_delta_log"):
        rel = log.parent.relative_to(root).as_posix()
        if rel.split("/")[0] in LAYERS:
            found.append(rel)
    return sorted(found)


def log_version(path: str) -> int | None:
    """Latest committed version from the ``_delta_log`` listing (no table read), or None."""
    if storage.is_uri(path):
        names = [storage.name(i.path) for i in storage.listdir(storage.join(path, "_delta_log"))]
        versions = [int(n[:-5]) for n in names if n.endswith(".json") and n[:-5].isdigit()]
        return max(versions) if versions else None
    log = Path(path) / "_delta_log"
    versions = [int(p.stem) for p in log.glob("*.json") if p.stem.isdigit()] if log.is_dir() else []
    return max(versions) if versions else None


def row_count(path: str) -> int | None:
    """Rows in the current version, from the Delta log's file statistics (no data scan);
    None when the table does not exist or a file has no row count in the log."""
    if not exists(path):
        return None
    actions = delta_table(path).get_add_actions(flatten=True)
    if actions.num_rows == 0:
        return 0
    if "num_records" not in actions.schema.names:
        return None
    counts = actions.column("num_records").to_pylist()
    return None if any(v is None for v in counts) else int(sum(counts))


def partition_values(path: str, column: str) -> set[str] | None:
    """The values of partition ``column`` in the table's current files, as strings, from
    the Delta log (no data scan); None when the log does not list them (callers must then
    take every value as present)."""
    actions = delta_table(path).get_add_actions(flatten=True)
    # the flattened name differs between deltalake releases
    for name in (f"partition.{column}", f"partition_values.{column}"):
        if name in actions.schema.names:
            return {str(v) for v in actions.column(name).to_pylist() if v is not None}
    return set() if actions.num_rows == 0 else None


def count_rows(spark: SparkSession, path: str) -> int:
    """Rows in the table: from the Delta log (:func:`row_count`) when every file has its
    statistics, otherwise counted by the engine. For decisions that must be right, where
    a writer that keeps no statistics would make :func:`row_count` None."""
    n = row_count(path)
    return n if n is not None else read(spark, path).count()


def version(path: str) -> int | None:
    """Current version of the table, or None when it does not exist."""
    if not exists(path):
        return None
    return delta_table(path).version()


def write_partition(df: DataFrame, path: str, partition_column: str, predicate: str,
                    schema: StructType | None = None) -> None:
    """Replace one partition (``predicate``, e.g. ``as_of_date = DATE'2026-06-30'``) of a
    table partitioned by ``partition_column``, creating the table on first use. Other
    partitions are untouched, so re-running one date is idempotent and history stays."""
    df = plain_strings(df.to(schema) if schema is not None else df)
    if exists(path):
        df = _with_new_columns_added(df, path)
    writer = df.write.format("delta").partitionBy(partition_column)
    faults.before_commit(df, path, [partition_column])
    if exists(path):
        writer.mode("overwrite").option("replaceWhere", predicate).option("mergeSchema", "true").save(path)
    else:
        writer.mode("append").save(path)
    faults.after_commit(path)

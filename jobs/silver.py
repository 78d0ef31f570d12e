"""Silver: bronze -> clean, conformed, private ``silver/<source>`` tables.

Event sources (transactions, events, holdings, interactions, feedback, complaints,
campaign responses) are maintained incrementally and partitioned by ``partition_date``
(the local day or month of the event time, ``conf/base.yaml`` ``silver.partition``): a
run takes only the bronze rows ingested since the table's last run (``_ingested_at``
watermark), conforms them, and rewrites only the partitions they fall in (the rows
already there, minus the changed keys, plus the changed rows; ``replaceWhere``). A daily
run therefore reads one day of bronze and writes one day of silver; re-running it finds
nothing new and writes nothing. The first run (or a table without ``partition_date``)
builds the whole table. A re-delivered row whose event time moved to another partition
also rewrites the partition its older row was in, without it (bronze marks re-delivered
rows, so only those few keys are looked up in the table; see :func:`_moved_from`).

Customers come from every delivered version (``bronze/customers_versions``) as SCD2
history; a run recomputes only the customers with a newly ingested version
(:func:`refresh_customers`) and rebuilds the small product catalogue; raw PII goes only to
``restricted/customer_pii``; digital events get their customer through logins (earlier
days' logins are read as context); survey comments get a sentiment score
(``features.sentiment``), computed once per new row, and so do complaint descriptions.
Complaints also keep every delivered status version in ``silver/complaint_history``
(rebuilt from ``bronze/complaints_versions``; :func:`refresh_complaint_history`). A column a source adds beyond the
contract reaches silver as a string (rows delivered before it: null), except for customers,
where only columns declared non-PII in ``privacy.non_pii_extra_columns`` do.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from c360 import lake, ops, storage
from c360.contract import SOURCES, Source
from c360.privacy import KeyRef, pii_key_ref
from c360.settings import Settings
from features.bronze import REDELIVERED
from features.complaints import complaint_history
from features.profile import (BALANCE_LAG_DAYS, LAGGED_TABLE, LATEST_TABLE, by_customer, latest_snapshots,
                              transactions_daily)
from features.sentiment import sentiment_columns
from features.silver import (LOGIN_COLUMNS, attribute_events, conform, customer_pii, customers_silver, silver_extras,
                             with_partition_date)

log = logging.getLogger(__name__)


def _contract_only(df, source, settings: Settings | None = None):
    """Contract columns, bookkeeping columns (``_...``) and the extra delivered columns allowed
    into silver: all of them for a source without PII; for customers only those declared in
    ``privacy.non_pii_extra_columns`` (none without ``settings``). See ``features.silver.silver_extras``."""
    non_pii = settings.privacy.non_pii_extra_columns.get(source.name, []) if settings else []
    extras = set(silver_extras(df.columns, source, non_pii))
    keep = [c for c in df.columns if c in source.column_names or c.startswith("_") or c in extras]
    return df.select(*[f"`{c}`" for c in keep])


PARTITION = "partition_date"


def run(spark: SparkSession, settings: Settings, progress=None) -> dict[str, dict]:
    """Bring every silver table up to date with bronze.

    Returns ``rows`` (rows in each table afterwards, from the Delta log), ``changed_rows``
    (bronze rows processed this run) and ``partitions_written`` per table.
    """
    key = pii_key_ref(settings)  # fails closed without a key; names it, the workers read it
    rows: dict[str, int] = {}
    changed: dict[str, int] = {}
    partitions: dict[str, list[str]] = {}
    names = list(SOURCES)
    for i, name in enumerate(names):
        if progress:
            progress(f"silver {name}", i, len(names))
        source = SOURCES[name]
        bronze_path = lake.table_path(settings.lake, "bronze", name)
        if not lake.exists(bronze_path):
            continue
        out = lake.table_path(settings.lake, "silver", name)
        if name == "customers":
            changed[name] = refresh_customers(spark, settings, source, key)
        elif not source.event_time:
            lake.overwrite(conform(_contract_only(lake.read(spark, bronze_path), source), source), out)
            changed[name] = -1
        else:
            changed[name], partitions[name], rebuilt = _incremental(spark, settings, source, bronze_path, out)
            if name == "transactions":
                partitions[DAILY] = refresh_transactions_daily(spark, settings, rebuild=rebuilt)
                rows[DAILY] = lake.row_count(lake.table_path(settings.lake, "silver", DAILY)) or 0
            elif name == "complaints":
                rows[HISTORY] = refresh_complaint_history(spark, settings)
            elif name == "holdings":
                changed[LATEST] = refresh_holdings_latest(spark, settings, rebuild=rebuilt)
                changed[LAGGED] = refresh_holdings_lagged(spark, settings, rebuild=rebuilt)
                for derived in (LATEST, LAGGED):
                    rows[derived] = lake.row_count(lake.table_path(settings.lake, "silver", derived)) or 0
        rows[name] = lake.row_count(out) or 0
    if progress:
        progress("silver", len(names), len(names))
    return {"rows": rows, "changed_rows": changed, "partitions_written": {n: len(p) for n, p in partitions.items()},
            "partitions": {n: p[:31] for n, p in partitions.items() if p}}


CUSTOMERS_MARK = "silver/customers"
HISTORY = "complaint_history"


def refresh_complaint_history(spark: SparkSession, settings: Settings) -> int:
    """Rebuild ``silver/complaint_history`` (:func:`features.complaints.complaint_history`)
    from every delivered complaint version (``bronze/complaints_versions``; a few per
    complaint, so small even at 1M customers). Returns its rows (0: no versions yet, e.g.
    bronze loaded before versions were kept; nothing is written)."""
    src = lake.table_path(settings.lake, "bronze", "complaints_versions")
    if not lake.exists(src):
        return 0
    out = lake.table_path(settings.lake, "silver", HISTORY)
    lake.overwrite(complaint_history(_contract_only(lake.read(spark, src), SOURCES["complaints"]),
                                     SOURCES["complaints"]), out)
    return lake.row_count(out) or 0


def _columns(df: DataFrame) -> list[tuple[str, str]]:
    return sorted((f.name, f.dataType.simpleString()) for f in df.schema.fields)


def refresh_customers(spark: SparkSession, settings: Settings, source: Source, key: KeyRef) -> int:
    """Bring ``silver/customers`` (SCD2 history, :func:`features.silver.customers_silver`) and
    ``restricted/customer_pii`` (:func:`features.silver.customer_pii`) up to date with every
    delivered version (``bronze/customers_versions``).

    A customer's rows depend on that customer's versions alone, so only the customers with a
    version ingested after the tables' watermark (``ops/derived_watermarks``, kept per PII
    key fingerprint) are recomputed, each from all of its versions; every other customer's
    rows are kept as they are, and the result is what a rebuild gives. Both tables are
    staged and replaced, then the watermark moves: a run stopped half-way is redone. Rebuilt
    whole on the first run, after a stopped rebuild, under another PII key, or when the
    columns changed (``privacy.non_pii_extra_columns``). At 1M customers the rebuild took
    20 s of every daily run (SCD2 windows, signatures and HMAC tokens over 1.16M versions).
    Returns the customers recomputed (-1: rebuilt)."""
    versions = _contract_only(
        lake.read(spark, lake.table_path(settings.lake, "bronze", "customers_versions")), source, settings)
    out = lake.table_path(settings.lake, "silver", "customers")
    pii_out = lake.table_path(settings.lake, "restricted", "customer_pii")
    mark = f"{CUSTOMERS_MARK} key={key.fingerprint}"
    since = ops.derived_watermark(spark, settings.lake, mark) if lake.exists(out) and lake.exists(pii_out) else None
    lineage = "_ingested_at" in versions.columns
    through = versions.agg(F.max("_ingested_at").alias("t")).first()["t"] if lineage else None
    # incremental only when the tables would have the same columns now (schemas only:
    # nothing is computed for this check)
    incremental = since is not None and lineage and \
        _columns(customers_silver(versions, source, key)) == _columns(lake.read(spark, out)) and \
        _columns(customer_pii(versions, source, key)) == _columns(lake.read(spark, pii_out))
    if incremental:
        if through is None or through <= since:
            return 0
        ids = versions.where(F.col("_ingested_at") > F.lit(since)).select("customer_id").distinct()
        mine = versions.join(ids, "customer_id", "left_semi")
        n = ids.count()
        for new, path, layer in ((customers_silver(mine, source, key), out, "silver"),
                                 (customer_pii(mine, source, key), pii_out, "restricted")):
            # the result reads the table it replaces: staged first (in the table's own layer)
            kept = lake.read(spark, path).join(ids, "customer_id", "left_anti")
            lake.overwrite_staged(kept.unionByName(new), path,
                                  lake.table_path(settings.lake, layer, f"_staging/{storage.name(path)}"))
        ops.save_derived_watermark(spark, settings.lake, mark, through)
        return n
    if since is not None:
        log.info("silver customers: the columns changed since the last run (or the versions carry no "
                 "_ingested_at); rebuilding")
    if lake.exists(out) or lake.exists(pii_out):
        ops.save_derived_watermark(spark, settings.lake, mark, None)  # until the rebuild completes
    lake.overwrite(customer_pii(versions, source, key), pii_out)
    lake.overwrite(customers_silver(versions, source, key), out)
    if through is not None:
        ops.save_derived_watermark(spark, settings.lake, mark, through)
    return -1


def _watermark(spark: SparkSession, out: str):
    """Latest ``_ingested_at`` already in the silver table (None: build it whole)."""
    if not lake.exists(out):
        return None, False
    current = lake.read(spark, out)
    if PARTITION not in current.columns or "_ingested_at" not in current.columns:
        return None, False  # written by an older version: rebuild with partitions
    return current.agg(F.max("_ingested_at").cast("string").alias("w")).first()["w"], True


def _in_partitions(dates: list[str]) -> str:
    listed = ", ".join(f"DATE'{d}'" for d in dates)
    return f"{PARTITION} IN ({listed})"


def plan_chunks(loads: list[tuple[datetime, int]], max_rows: int) -> list[tuple[datetime, int]]:
    """Ingest loads (``_ingested_at``, rows), oldest first, grouped into chunks of at most
    ``max_rows`` rows (one load bigger than that is a chunk of its own): the last
    ``_ingested_at`` of each chunk and its rows."""
    chunks: list[tuple[datetime, int]] = []
    rows = 0
    for at, n in loads:
        if chunks and rows + n <= max_rows:
            rows += n
            chunks[-1] = (at, rows)
        else:
            rows = n
            chunks.append((at, n))
    return chunks


def _incremental(spark: SparkSession, settings: Settings, source: Source, bronze_path: str,
                 out: str) -> tuple[int, list[str], bool]:
    """Process the bronze rows ingested since the last run, in chunks of at most
    ``silver.batch_rows`` rows (whole ingest loads, oldest first); each chunk rewrites only
    its partitions and moves the table's watermark, so the first build of a year of history
    runs in bounded memory and resumes where it stopped. Returns the bronze rows processed,
    the partitions written and whether the table was built from scratch."""
    watermark, incremental = _watermark(spark, out)
    ingested = F.col("_ingested_at")
    bronze = lake.read(spark, bronze_path)
    new = bronze.where(ingested > F.lit(watermark).cast("timestamp")) if watermark else bronze
    # bounded: one row per ingest batch since the watermark
    loads = [(r[0], r[1]) for r in new.groupBy(ingested).count().orderBy(ingested).collect() if r[0] is not None]
    chunks = plan_chunks(loads, settings.silver.batch_rows)
    total, dates = 0, set()
    for i, (through, n_rows) in enumerate(chunks):
        rows = new.where(ingested <= F.lit(through))
        if i > 0:
            rows = rows.where(ingested > F.lit(chunks[i - 1][0]))
        elif watermark is None:
            rows = new.where((ingested <= F.lit(through)) | ingested.isNull())
        if len(chunks) > 1:
            log.info("silver %s: chunk %d of %d (%d bronze rows)", source.name, i + 1, len(chunks), n_rows)
        # a build takes each key from one chunk only (bronze holds one row per key): rows can
        # move between partitions only in a table that held rows before this run
        n, written = _apply(spark, settings, source, rows, out, incremental, moves=watermark is not None)
        incremental = incremental or bool(written)  # a chunk that wrote built (or rebuilt) the table
        total += n
        dates.update(written)
    return total, sorted(dates), watermark is None


DAILY = "transactions_daily"


def refresh_transactions_daily(spark: SparkSession, settings: Settings, rebuild: bool = False) -> list[str]:
    """Bring ``silver/transactions_daily`` (:func:`features.profile.transactions_daily`, what
    the profile's transactions family reads) up to date with ``silver/transactions``.

    The silver partitions holding rows ingested after the table's watermark
    (``ops/derived_watermarks``) are summarised again whole and replace their days, a month
    of partitions at a time; the watermark moves only when all are written, so a stopped
    refresh is redone, never half-kept. A daily run therefore summarises one day (plus the
    days late rows fell in) and the profile no longer reads a year of transactions. The
    partitions a corrected row moved out of hold no newer row: silver notes them
    (``ops/pending_partitions``) and they are summarised too, then forgotten.
    ``rebuild`` (silver/transactions was built from scratch) or a missing table: every
    partition. Returns the partitions summarised."""
    src = lake.table_path(settings.lake, "silver", "transactions")
    out = lake.table_path(settings.lake, "silver", DAILY)
    if not lake.exists(src):
        return []
    silver = lake.read(spark, src)
    since = None if rebuild or not lake.exists(out) else ops.derived_watermark(spark, settings.lake, f"silver/{DAILY}")
    changed = silver if since is None else silver.where(F.col("_ingested_at") > F.lit(since))
    # bounded: one row per partition
    found = changed.groupBy(PARTITION).agg(F.max("_ingested_at").alias("through")).collect()
    pending = ops.pending_partitions(spark, settings.lake, f"silver/{DAILY}")
    parts = sorted({str(r[PARTITION]) for r in found} | (set() if since is None else set(pending)))
    through = max((r["through"] for r in found if r["through"] is not None), default=since)
    granularity = settings.silver.partition.get("transactions", settings.silver.default_partition)
    step = 31 if granularity == "day" else 1
    if since is None and lake.exists(out):
        # a rebuild: until it completes, the table counts as never built
        ops.save_derived_watermark(spark, settings.lake, f"silver/{DAILY}", None)
    for i in range(0, len(parts), step):
        chunk = parts[i:i + step]
        if len(parts) > step:
            log.info("silver %s: partitions %s to %s (%d of %d)", DAILY, chunk[0], chunk[-1], i + len(chunk),
                     len(parts))
        # hashed by customer first, like the profile's aggregation: each task's groups stay
        # in cache (a month at 1M customers: 10-17 s -> 8-9 s)
        daily = transactions_daily(by_customer(silver.where(_in_partitions(chunk)), settings.profile.aggregate_partitions),
                                   settings.bank.timezone)
        # a rebuild's first chunk replaces the whole table (days that lost their rows go too)
        replace = None if since is None and i == 0 else _days_of(chunk, granularity)
        lake.overwrite(lake.by_partition(daily, "day"), out, partition_by=["day"], replace_where=replace)
    if through is not None and (parts or since is None):
        ops.save_derived_watermark(spark, settings.lake, f"silver/{DAILY}", through)
    ops.clear_pending_partitions(spark, settings.lake, f"silver/{DAILY}", pending)
    return parts


LATEST = LATEST_TABLE
LAGGED = LAGGED_TABLE
CUT = "_cut_date"  # the snapshot date up to which silver/holdings_lagged holds the latest
# derived silver table -> the silver table it is made from
DERIVED = {DAILY: "transactions", LATEST: "holdings", LAGGED: "holdings"}
# silver table -> the derived tables summarising it partition by partition, which must redo
# the partitions a row moved out of (holdings cannot move: the snapshot date is in its key)
PARTITION_DERIVED = {"transactions": (DAILY,)}


def refresh_holdings_latest(spark: SparkSession, settings: Settings, rebuild: bool = False) -> int:
    """Bring ``silver/holdings_latest`` (one row per account: its latest snapshot,
    :func:`features.profile.latest_snapshots`) up to date with ``silver/holdings``: the
    table so far plus the holdings rows ingested after its watermark
    (``ops/derived_watermarks``), reduced to one row per account again and written whole
    (2.8M rows at 1M customers; from all 31M snapshot rows of a year 12 s at 1.6 GB). The
    score step's window over every snapshot, which it replaces, took 41 s and 4.5 GB.
    ``rebuild`` or a missing table: from every snapshot. Returns the holdings rows read (0:
    nothing new, nothing written)."""
    return _refresh_latest(spark, settings, LATEST, None, rebuild)


def refresh_holdings_lagged(spark: SparkSession, settings: Settings, rebuild: bool = False) -> int:
    """Bring ``silver/holdings_lagged`` up to date: one row per account, its latest snapshot
    on or before the cut date :data:`features.profile.BALANCE_LAG_DAYS` days before the
    newest snapshot in ``silver/holdings`` (column ``_cut_date``). A daily profile needs
    exactly that for the balances 90 days back; without it, it takes the latest snapshot
    per account over every snapshot up to then (23.9M rows at 1M customers).

    Kept like :func:`refresh_holdings_latest`: the table so far plus the snapshots after
    its cut up to the new cut, plus rows ingested after its watermark (late deliveries)
    with a snapshot on or before the new cut. A cut that moved back (an older snapshot
    became the newest, e.g. after a rebuild of holdings), ``rebuild`` or a missing table:
    from every snapshot up to the cut. Returns the holdings rows read."""
    latest = lake.table_path(settings.lake, "silver", LATEST)
    if not lake.exists(latest):
        return 0
    newest = lake.read(spark, latest).agg(F.max("snapshot_date").alias("d")).first()["d"]
    if newest is None:
        return 0
    return _refresh_latest(spark, settings, LAGGED, newest - timedelta(days=BALANCE_LAG_DAYS), rebuild)


def _refresh_latest(spark: SparkSession, settings: Settings, name: str, cut: date | None, rebuild: bool) -> int:
    """Latest snapshot per account into ``silver/<name>``, of every snapshot (``cut`` None) or
    of those on or before ``cut`` (stored in column :data:`CUT`); see the two callers."""
    src = lake.table_path(settings.lake, "silver", "holdings")
    out = lake.table_path(settings.lake, "silver", name)
    if not lake.exists(src):
        return 0
    mark = f"silver/{name}"
    silver = lake.read(spark, src)
    since = None if rebuild or not lake.exists(out) else ops.derived_watermark(spark, settings.lake, mark)
    previous_cut = None
    if cut is not None:
        if since is not None:
            previous_cut = lake.read(spark, out).agg(F.max(CUT).alias("c")).first()["c"]
            if previous_cut is None or previous_cut > cut:
                since = None  # an empty table or a cut that moved back: from every snapshot
        # partition_date is the snapshot's day or month start, never after it: prunes
        silver = silver.where((F.col(PARTITION) <= F.lit(cut)) & (F.col("snapshot_date") <= F.lit(cut)))
    if since is None:
        changed = silver
    else:
        new = F.col("_ingested_at") > F.lit(since)
        if previous_cut is not None and previous_cut < cut:
            new = new | (F.col("snapshot_date") > F.lit(previous_cut))
        changed = silver.where(new)
    # Rows loaded with a snapshot after the cut do not belong in a cut table (later cuts read
    # them by date): its watermark may move to the source's latest load, read before the rows.
    newest_load = None if cut is None else \
        lake.read(spark, src).agg(F.max("_ingested_at").alias("m")).first()["m"]
    found = changed.agg(F.count(F.lit(1)).alias("n"), F.max("_ingested_at").alias("through")).first()
    through = max((t for t in [since, newest_load, found["through"]] if t is not None), default=None)
    if since is not None and not found["n"] and previous_cut == cut:
        if through is not None and through > since:
            ops.save_derived_watermark(spark, settings.lake, mark, through)
        return 0
    current = None if since is None else lake.read(spark, out)
    if current is not None and CUT in current.columns:
        current = current.drop(CUT)
    rows = changed if current is None else changed.unionByName(current)
    result = latest_snapshots(rows)
    if cut is not None:
        result = result.withColumn(CUT, F.lit(cut))
    if current is None:
        lake.overwrite(result, out)
    else:  # the result reads the table it replaces: staged first
        lake.overwrite_staged(result, out, lake.table_path(settings.lake, "silver", f"_staging/{name}"))
    ops.save_derived_watermark(spark, settings.lake, mark, through)
    return int(found["n"])


def is_current(spark: SparkSession, settings: Settings, derived: str) -> bool:
    """Whether derived silver table ``derived`` (:data:`DERIVED`) holds every row of its
    source: its watermark is at or after the source's latest ``_ingested_at``. A silver run
    that stopped between the two leaves it behind; readers then use the source itself."""
    out = lake.table_path(settings.lake, "silver", derived)
    src = lake.table_path(settings.lake, "silver", DERIVED[derived])
    if not lake.exists(out) or not lake.exists(src):
        return False
    through = ops.derived_watermark(spark, settings.lake, f"silver/{derived}")
    if through is None:
        return False
    latest = lake.read(spark, src).agg(F.max("_ingested_at").alias("m")).first()["m"]
    return latest is None or latest <= through


def holdings_latest(spark: SparkSession, settings: Settings, as_of: date) -> DataFrame | None:
    """``silver/holdings_latest`` when it may stand for the latest snapshots at ``as_of``:
    current (:func:`is_current`) and no snapshot after ``as_of`` (an earlier as_of needs the
    window over the snapshots up to it). None otherwise."""
    if not is_current(spark, settings, LATEST):
        return None
    latest = lake.read(spark, lake.table_path(settings.lake, "silver", LATEST))
    newest = latest.agg(F.max("snapshot_date").alias("d")).first()["d"]
    return latest if newest is None or newest <= as_of else None


def holdings_stand_ins(spark: SparkSession, settings: Settings, as_of: date) -> dict[str, DataFrame]:
    """The derived holdings tables that may stand in for a window over silver holdings at
    ``as_of`` (:func:`holdings_latest`, :func:`holdings_lagged`), by the names
    :func:`features.profile.customer_360` reads them under."""
    found = {LATEST: holdings_latest(spark, settings, as_of), LAGGED: holdings_lagged(spark, settings, as_of)}
    return {name: table for name, table in found.items() if table is not None}


def holdings_lagged(spark: SparkSession, settings: Settings, as_of: date) -> DataFrame | None:
    """``silver/holdings_lagged`` without its cut column when it holds the latest snapshots
    at ``as_of`` minus :data:`features.profile.BALANCE_LAG_DAYS` days: current
    (:func:`is_current`) and cut at exactly that date. None otherwise (the profile then takes
    the latest snapshots up to that date from every snapshot)."""
    if not is_current(spark, settings, LAGGED):
        return None
    lagged = lake.read(spark, lake.table_path(settings.lake, "silver", LAGGED))
    cut = lagged.agg(F.max(CUT).alias("c")).first()["c"]
    return lagged.drop(CUT) if cut == as_of - timedelta(days=BALANCE_LAG_DAYS) else None


def _days_of(partitions: list[str], granularity: str) -> str:
    """The ``day`` values silver ``partitions`` (days or months) hold, as a predicate."""
    if granularity == "day":
        return "day IN (" + ", ".join(f"DATE'{d}'" for d in partitions) + ")"
    return " OR ".join(f"(day >= DATE'{m}' AND day < add_months(DATE'{m}', 1))" for m in partitions)


def _apply(spark: SparkSession, settings: Settings, source: Source, new: DataFrame, out: str,
           incremental: bool, moves: bool = True) -> tuple[int, list[str]]:
    """Conform ``new`` bronze rows and rewrite the silver partitions they fall in (the whole
    table when not ``incremental``).

    The rewrite replaces partitions with the changed rows plus whatever it takes from the
    table itself: the rows of partitions the table already holds, minus the changed keys,
    and (events) the earlier logins. Only those are staged before the write, and only when
    there are some: a chunk of a rebuild or a daily run mostly falls in new partitions.
    Staging the whole result as well wrote every row twice more (at 1M customers, 8-9 s
    per 7.5M transactions).

    A re-delivered row whose event time moved (``moves``; see :func:`_moved_from`) also
    rewrites the partitions its older row is in, without that row; derived tables
    summarising them per partition (:data:`PARTITION_DERIVED`) are told to redo them.
    Returns the bronze rows processed and the partitions written."""
    name = source.name
    granularity = settings.silver.partition.get(name, settings.silver.default_partition)
    # bronze holds one row per key (ingest upserts), so the chunk needs no deduplication
    conformed = with_partition_date(conform(_contract_only(new, source), source, deduplicate=False),
                                    source.event_time, granularity, settings.bank.timezone)
    kept_path = lake.table_path(settings.lake, "silver", f"_staging/{name}_kept")
    context_path = lake.table_path(settings.lake, "silver", f"_staging/{name}_context")
    resent_path = lake.table_path(settings.lake, "silver", f"_staging/{name}_resent")
    try:
        # The partitions and their row counts read only the event time (and the chunk's
        # bounds) from bronze; the rows themselves are conformed once, in the write (staging
        # them first cost a write and a read of every row: 3.5-5 s per 7.5M transactions).
        counts = conformed.groupBy(PARTITION).count().collect()  # bounded: one row per partition
        dates = sorted(str(r[0]) for r in counts)
        if not dates:
            return 0, []
        n_changed = sum(int(r["count"]) for r in counts)
        resent = None
        moved_from: list[str] = []
        if incremental and moves and not set(source.key) & {source.event_time}:
            resent, moved_from = _moved_from(spark, source, new, out, dates, resent_path)
        changed = _enrich(spark, settings, name, conformed, out if incremental else None, dates, context_path,
                          exclude=resent)
        if not incremental:
            lake.overwrite(lake.by_partition(changed, PARTITION), out, partition_by=[PARTITION])
            return n_changed, dates
        present = lake.partition_values(out, PARTITION)
        held = (dates if present is None else [d for d in dates if d in present]) + moved_from
        if held:
            kept = lake.read(spark, out).where(_in_partitions(held)) \
                .join(conformed.select(*source.key), list(source.key), "left_anti")
            lake.overwrite(kept, kept_path)
            changed = lake.read(spark, kept_path).unionByName(changed, allowMissingColumns=True)
        for derived in PARTITION_DERIVED.get(name, ()):
            # before the write: a refresh that never follows it is redone by the next run
            ops.note_pending_partitions(spark, settings.lake, f"silver/{derived}", moved_from)
        written = sorted(dates + moved_from)
        lake.overwrite(lake.by_partition(changed, PARTITION), out, partition_by=[PARTITION],
                       replace_where=_in_partitions(written))
        return n_changed, written
    finally:
        for path in (kept_path, context_path, resent_path):
            storage.remove_tree(path)


def _moved_from(spark: SparkSession, source: Source, new: DataFrame, out: str, dates: list[str],
                resent_path: str) -> tuple[DataFrame | None, list[str]]:
    """The keys of the ``new`` bronze rows that bronze held before (``_redelivered`` not
    false: re-delivered or corrected rows, null for rows loaded before the mark existed),
    staged at ``resent_path``, and the partitions of ``out`` outside ``dates`` that hold an
    older row of one of them: its event time moved, so that partition must be rewritten
    without it. (None, []) when no new row is re-delivered, the usual daily run: then the
    table is not read at all. Only a key bronze already held can have a row in silver, so
    the new keys (nearly every row) never take part in the join; the few re-delivered
    ones are its build side and the table's keys stream past them."""
    mark = F.col(REDELIVERED)
    # bronze written before the mark existed: every key may have been held before
    resent = new.where(mark.isNull() | mark) if REDELIVERED in new.columns else new
    if not resent.count():  # reads the chunk's mark and _ingested_at only
        return None, []
    lake.overwrite(conform(_contract_only(resent, source), source, deduplicate=False).select(*source.key),
                   resent_path)
    keys = lake.read(spark, resent_path)
    older = lake.read(spark, out).where(f"NOT ({_in_partitions(dates)})").select(*source.key, PARTITION)
    # bounded: one row per partition holding a moved row
    found = keys.join(older, list(source.key), "inner").select(PARTITION).distinct().collect()
    moved = sorted(str(r[PARTITION]) for r in found)
    if moved:
        log.info("silver %s: rows moved out of partitions %s", source.name, ", ".join(moved))
    return keys, moved


def _enrich(spark: SparkSession, settings: Settings, name: str, rows: DataFrame, existing: str | None,
            dates: list[str], context_path: str, exclude: DataFrame | None = None) -> DataFrame:
    """Source-specific silver columns for the changed ``rows`` (attribution, sentiment).
    Rows read from ``existing`` (events: the logins before the changed days) are staged at
    ``context_path`` first, as the result replaces partitions of that table; the keys in
    ``exclude`` (re-delivered rows: their older rows are being replaced) are left out."""
    if name == "events":
        context = None
        if existing:
            lookback = settings.silver.device_lookback_days
            first = (date.fromisoformat(dates[0]) - timedelta(days=lookback + 1)).isoformat()
            logins = lake.read(spark, existing).where(
                (F.col(PARTITION) >= F.lit(first).cast("date")) & (F.col(PARTITION) <= F.lit(dates[-1]).cast("date"))
                & (F.col("attributed_by") == "login")).select(*LOGIN_COLUMNS)
            if exclude is not None:
                logins = logins.join(exclude, list(exclude.columns), "left_anti")
            lake.overwrite(logins, context_path)
            context = lake.read(spark, context_path)
        return attribute_events(rows, context=context, device_lookback_days=settings.silver.device_lookback_days)
    if name == "feedback":
        return sentiment_columns(rows, "comment")
    if name == "complaints":
        return sentiment_columns(rows, "description")
    return rows


__all__ = ["run"]

"""Delivery completeness: did each source deliver what is expected for the run's as_of?

The expected deliveries (one row per source and date, or per weekly period) come from
``conf/quality.yaml`` ``completeness`` (:func:`c360.quality.expected_deliveries`); what
arrived comes from the ingest log ``ops/ingested_files`` (one row per landing file: its
delivery date, status and row counts) and when it arrived from the ingest steps of
``ops/run_log``. :func:`delivery_completeness` joins the two; it is a pure function of
small DataFrames (one row per file, per expected delivery, per ingest run), run by the
``dq_bronze`` gate (``jobs.quality``).
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

EXPECTED_SCHEMA = T.StructType([
    T.StructField("source", T.StringType()),
    T.StructField("cadence", T.StringType()),  # daily | weekly
    T.StructField("severity", T.StringType()),  # critical | warning: of a missing delivery
    T.StructField("expected_from", T.DateType()),  # any delivery date in [from, to] counts
    T.StructField("expected_to", T.DateType()),
    T.StructField("known_missing", T.StringType()),  # the conf's reason, when known not to come
])

# Statuses of ops/ingested_files that mean "a file for this date arrived at a valid path":
# loaded (some rows may be quarantined), quarantined whole (unreadable: delivered, empty),
# duplicate (same bytes as another file of the same run). ``rejected`` (wrong path) is not.
ARRIVED = ("loaded", "quarantined", "duplicate")

MISSING, EMPTY, LATE, KNOWN_MISSING = "missing", "empty", "late", "known_missing"


def delivery_completeness(expected: DataFrame, files: DataFrame, ingest_runs: DataFrame) -> DataFrame:
    """Each expected delivery with whether it arrived and why not.

    Args:
        expected: :data:`EXPECTED_SCHEMA` rows.
        files: the ingest log (``ops/ingested_files``): ``source``, ``delivery_date``,
            ``status``, ``rows_read``, ``rows_loaded``, ``ingested_at``.
        ingest_runs: the succeeded ingest steps (``ops/run_log``): ``as_of``, ``finished_at``.

    Returns the expected rows (the daily and weekday ones dated before the source's first
    delivery ever dropped: a lake starts with its first drop; a source that never
    delivered keeps them all) with ``files``, ``rows_read``, ``rows_loaded``,
    ``first_ingested_at``, ``delivered`` (a file arrived at a valid path) and ``reason``:

    - ``missing``: no file arrived (and the date is not known-missing);
    - ``known_missing``: no file arrived, and ``known_missing`` says why;
    - ``empty``: files arrived but no row of them was loaded (header only, every row
      quarantined, or unreadable: the reason is in quarantine);
    - ``late``: rows arrived after an ingest run whose as_of was on or after the expected
      date had finished (that run did not have them);
    - null: delivered on time with rows.
    """
    arrived = files.where(F.col("status").isin(*ARRIVED)).select(
        "source", "delivery_date", F.coalesce("rows_read", F.lit(0)).alias("rows_read"),
        F.coalesce("rows_loaded", F.lit(0)).alias("rows_loaded"), "ingested_at")
    first = arrived.groupBy(F.col("source").alias("_s")).agg(F.min("delivery_date").alias("_first"))
    per_date = arrived.groupBy(F.col("source").alias("_s"), F.col("delivery_date").alias("_d")).agg(
        F.count(F.lit(1)).alias("_files"), F.sum("rows_read").alias("_read"),
        F.sum("rows_loaded").alias("_loaded"), F.min("ingested_at").alias("_at"))
    keys = list(EXPECTED_SCHEMA.names)
    e = expected.join(first, expected["source"] == first["_s"], "left").where(
        (F.col("expected_from") != F.col("expected_to")) | F.col("_first").isNull()
        | (F.col("expected_to") >= F.col("_first"))).select(*keys)
    got = e.join(per_date, (e["source"] == per_date["_s"])
                 & per_date["_d"].between(e["expected_from"], e["expected_to"]), "left") \
        .groupBy(*keys).agg(
            F.coalesce(F.sum("_files"), F.lit(0)).alias("files"),
            F.coalesce(F.sum("_read"), F.lit(0)).alias("rows_read"),
            F.coalesce(F.sum("_loaded"), F.lit(0)).alias("rows_loaded"),
            F.min("_at").alias("first_ingested_at"),
            F.min(F.when(F.col("_loaded") > 0, F.col("_at"))).alias("_rows_at"))
    # the first ingest run that should have had the delivery: as_of on or after its date
    runs = ingest_runs.select(F.col("as_of").alias("_run_as_of"), F.col("finished_at").alias("_finished"))
    due = got.join(runs, runs["_run_as_of"] >= got["expected_to"], "left") \
        .groupBy(*keys, "files", "rows_read", "rows_loaded", "first_ingested_at", "_rows_at") \
        .agg(F.min("_finished").alias("_due"))
    delivered = F.col("files") > 0
    reason = (F.when(~delivered & F.col("known_missing").isNotNull(), F.lit(KNOWN_MISSING))
              .when(~delivered, F.lit(MISSING))
              .when(F.col("rows_loaded") == 0, F.lit(EMPTY))
              .when(F.col("_due").isNotNull() & (F.col("_rows_at") > F.col("_due")), F.lit(LATE)))
    return due.select(*keys, "files", "rows_read", "rows_loaded", "first_ingested_at",
                      delivered.alias("delivered"), reason.alias("reason"))

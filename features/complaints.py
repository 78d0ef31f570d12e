"""Complaint status history and complaint KPIs.

:func:`complaint_history`: every delivered version of every complaint
(``bronze/complaints_versions``: one per complaint, status and delivery date), conformed
like silver complaints (free text masked), with ``delivered_on``: the delivery date that
brought it. A complaint resolved, re-opened and resolved again keeps each step.

:func:`complaint_status_at`: each complaint as known at as_of, from the versions
delivered up to as_of (a later delivery is not known then): its latest version's status,
dates and attributes, and ``reopened`` (a version open or in progress delivered after one
resolved or rejected).

:func:`complaint_kpis` per category, product, channel and severity:

- ``opened``: complaints opened in the window (``window_days`` up to the end of as_of);
  ``rate_per_1000``: opened per 1,000 customers (``customers`` at as_of);
- ``closed``: complaints resolved or rejected at as_of whose ``closed_at`` falls in the
  window; ``resolution_p50_days`` / ``resolution_p90_days``: their days from opening to
  closing (exact percentiles, linear interpolation);
- ``sla_breaches_closed``: of those, closed after their severity's SLA (``sla_days``);
- ``backlog``: complaints open or in progress at as_of (opened before its end, whatever
  their age), ``backlog_age_p50_days`` / ``backlog_age_max_days`` (days from opening to the
  end of as_of), ``sla_breaches_open``: backlog older than its SLA;
- ``reopened``: complaints of the window re-opened at least once by as_of.

A complaint without a severity has no SLA (never a breach); a missing category, product,
channel or severity is grouped as :data:`UNKNOWN`.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from c360.contract import Source
from features.bronze import COMPLAINT_STATUS_RANK
from features.profile import AsOf
from features.silver import conform

UNKNOWN = "(unknown)"
CLOSED = ("resolved", "rejected")
COMPLAINT_DIMENSIONS = {"category": "category", "product": "product_code", "channel": "channel",
                        "severity": "severity"}
DELIVERED = "delivered_on"


def complaint_history(versions: DataFrame, source: Source) -> DataFrame:
    """Every delivered version of every complaint, conformed (:func:`features.silver.conform`:
    canonical spellings, contact details removed from descriptions), with ``delivered_on``
    (the delivery date of the version) and the lineage columns."""
    named = versions.withColumnRenamed("_delivery_date", DELIVERED)  # conform drops "_" columns
    out = conform(named.drop("_version") if "_version" in named.columns else named, source, deduplicate=False)
    return out.withColumn(DELIVERED, F.col(DELIVERED).cast("date"))  # an extra column to conform: a string


def _status_rank() -> Column:
    rank = None
    for status, r in COMPLAINT_STATUS_RANK.items():
        cond = F.col("status") == F.lit(status)
        rank = F.when(cond, F.lit(r)) if rank is None else rank.when(cond, F.lit(r))
    return rank


def complaint_status_at(history: DataFrame, at: AsOf) -> DataFrame:
    """One row per complaint opened by the end of as_of: the columns of its latest version
    delivered up to as_of (latest delivery, then the status's progress, then closing time,
    as the bronze ingest orders them) and ``reopened``."""
    known = history.where((F.col(DELIVERED) <= at.date_lit()) & (F.col("opened_at") < at.cutoff))
    order = Window.partitionBy("complaint_id").orderBy(
        F.col(DELIVERED).desc(), _status_rank().desc_nulls_last(), F.col("closed_at").desc_nulls_last())
    ranked = known.withColumn("_rn", F.row_number().over(order))
    closed = F.col("status").isin(*CLOSED)
    first_closed = known.groupBy("complaint_id").agg(F.min(F.when(closed, F.col(DELIVERED))).alias("_first_closed"))
    reopened = known.join(first_closed, "complaint_id") \
        .where(~closed & F.col("_first_closed").isNotNull() & (F.col(DELIVERED) > F.col("_first_closed"))) \
        .select("complaint_id").distinct().withColumn("reopened", F.lit(True))
    return ranked.where("_rn = 1").drop("_rn").join(reopened, "complaint_id", "left") \
        .withColumn("reopened", F.coalesce(F.col("reopened"), F.lit(False)))


def sla_days_of(sla_days: dict[str, float]) -> Column:
    """The SLA in days of each complaint's severity (null: no severity, no SLA)."""
    out = None
    for severity, days in sorted(sla_days.items()):
        cond = F.col("severity") == F.lit(severity)
        out = F.when(cond, F.lit(float(days))) if out is None else out.when(cond, F.lit(float(days)))
    return out


def _days(later: Column, earlier: Column) -> Column:
    return (F.unix_timestamp(later) - F.unix_timestamp(earlier)) / F.lit(86_400.0)


def _count_if(cond: Column) -> Column:
    return F.sum(F.when(cond, 1).otherwise(0)).cast("bigint")


def complaint_kpis(status: DataFrame, at: AsOf, window_days: int, sla_days: dict[str, float],
                   customers: int | None) -> DataFrame:
    """The KPIs of the module docstring per category, product, channel and severity of
    ``status`` (:func:`complaint_status_at`): rows of ``dimension``, ``value`` and the KPIs.
    ``customers``: customers at as_of (None: no rate)."""
    in_window = at.in_window(F.col("opened_at"), window_days)
    closed = F.col("status").isin(*CLOSED) & F.col("closed_at").isNotNull() & \
        at.in_window(F.col("closed_at"), window_days)
    backlog = ~F.col("status").isin(*CLOSED)
    sla = sla_days_of(sla_days)
    rows = status.select(
        *[F.coalesce(F.col(c).cast("string"), F.lit(UNKNOWN)).alias(f"_{d}") for d, c in COMPLAINT_DIMENSIONS.items()],
        in_window.alias("_opened"), closed.alias("_closed"), backlog.alias("_backlog"), "reopened",
        F.when(closed, _days(F.col("closed_at"), F.col("opened_at"))).alias("_resolution"),
        F.when(backlog, _days(at.cutoff, F.col("opened_at"))).alias("_age"), sla.alias("_sla")) \
        .where(F.col("_opened") | F.col("_closed") | F.col("_backlog"))  # older, settled ones count nowhere
    parts = []
    for dim in COMPLAINT_DIMENSIONS:
        agg = rows.groupBy(F.col(f"_{dim}").alias("value")).agg(
            _count_if(F.col("_opened")).alias("opened"),
            _count_if(F.col("_closed")).alias("closed"),
            F.percentile("_resolution", 0.5).alias("resolution_p50_days"),
            F.percentile("_resolution", 0.9).alias("resolution_p90_days"),
            _count_if(F.col("_closed") & (F.col("_resolution") > F.col("_sla"))).alias("sla_breaches_closed"),
            _count_if(F.col("_backlog")).alias("backlog"),
            F.percentile("_age", 0.5).alias("backlog_age_p50_days"),
            F.max("_age").alias("backlog_age_max_days"),
            _count_if(F.col("_backlog") & (F.col("_age") > F.col("_sla"))).alias("sla_breaches_open"),
            _count_if(F.col("_opened") & F.col("reopened")).alias("reopened"),
        )
        parts.append(agg.select(F.lit(dim).alias("dimension"), "*"))
    out = parts[0]
    for p in parts[1:]:
        out = out.unionByName(p)
    rate = F.col("opened") * F.lit(1000.0) / F.lit(float(customers)) if customers else F.lit(None).cast("double")
    return out.select("dimension", "value", "opened", rate.alias("rate_per_1000"), "closed", "resolution_p50_days",
                      "resolution_p90_days", "sla_breaches_closed", "backlog", "backlog_age_p50_days",
                      "backlog_age_max_days", "sla_breaches_open", "reopened")


__all__ = ["COMPLAINT_DIMENSIONS", "complaint_history", "complaint_kpis", "complaint_status_at", "sla_days_of"]

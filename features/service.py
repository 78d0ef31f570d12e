"""Service KPIs from service contacts (silver/interactions): waits, handle times,
first-contact resolution and contact reasons by branch, channel and hour of day.

Per group of contacts (:func:`service_kpis`):

- ``contacts``;
- ``wait_p50_s``, ``wait_p90_s``: percentiles of ``wait_seconds``; ``handle_p50_s`` of
  ``handle_seconds``. Exact, interpolated linearly between the two closest ranks (the
  engine's ``percentile``: the p50 of 10, 20, 30, 40 is 25); nulls are left out;
- ``over_target_share``: the share of contacts with a wait that waited longer than their
  channel's target (``wait_target_seconds``: per channel, ``default`` for the others);
- ``fcr_rate``: the share of contacts resolved at the first contact (of those that say);
- ``top_reasons``: the most frequent contact reasons, most frequent first (ties by name).

Hours are the bank's wall-clock hours (:mod:`features.localtime`). Point in time: only
contacts started in the window that ends with as_of (:func:`service_contacts`).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from features.profile import AsOf

# dimension -> the grouping columns of its rows (the others are null in the table)
SERVICE_DIMENSIONS = {"branch": ("branch_id",), "channel": ("channel",), "hour": ("hour",),
                      "branch_hour": ("branch_id", "hour")}
GROUP_COLUMNS = ("branch_id", "channel", "hour")


def service_contacts(interactions: DataFrame, at: AsOf, window_days: int) -> DataFrame:
    """The contacts started in the ``window_days`` days up to the end of as_of, with
    ``hour``: the hour (0-23) of ``started_at`` on the bank's clock."""
    return at.partitions(interactions, window_days) \
        .where(at.in_window(F.col("started_at"), window_days)) \
        .withColumn("hour", F.hour(at.local(F.col("started_at"))))


def wait_target(targets: dict[str, float]) -> Column:
    """Each contact's wait target in seconds: its channel's, else ``targets['default']``."""
    out = None
    for channel, seconds in sorted(targets.items()):
        if channel == "default":
            continue
        cond = F.col("channel") == F.lit(channel)
        out = F.when(cond, F.lit(float(seconds))) if out is None else out.when(cond, F.lit(float(seconds)))
    default = F.lit(float(targets["default"]))
    return default if out is None else out.otherwise(default)


def _label(dimension: str) -> Column:
    if dimension == "branch_hour":
        return F.concat_ws(" ", F.col("branch_id"), F.format_string("%02dh", F.col("hour")))
    if dimension == "hour":
        return F.format_string("%02dh", F.col("hour"))
    return F.col(SERVICE_DIMENSIONS[dimension][0]).cast("string")


def by_dimension(rows: DataFrame, dimensions: dict[str, tuple[str, ...]]) -> DataFrame:
    """``rows`` once per dimension, with ``dimension``, ``value`` (a label) and the
    dimension's grouping columns (the other :data:`GROUP_COLUMNS` null); rows without a
    value for a grouping column (a contact outside any branch) are left out of that
    dimension."""
    parts = []
    for dim, cols in dimensions.items():
        sel = rows
        for c in cols:
            sel = sel.where(F.col(c).isNotNull())
        keep = [F.col(c) if c in cols else F.lit(None).cast(t).alias(c)
                for c, t in (("branch_id", "string"), ("channel", "string"), ("hour", "int"))]
        parts.append(sel.select(F.lit(dim).alias("dimension"), _label(dim).alias("value"), *keep,
                                *[c for c in rows.columns if c not in GROUP_COLUMNS]))
    out = parts[0]
    for p in parts[1:]:
        out = out.unionByName(p)
    return out


def top_values(rows: DataFrame, keys: list[str], column: str, n: int, alias: str) -> DataFrame:
    """Per ``keys`` group, the ``n`` most frequent non-null values of ``column`` as an
    array, most frequent first (ties: alphabetical)."""
    counts = rows.where(F.col(column).isNotNull()).groupBy(*keys, column).agg(F.count(F.lit(1)).alias("_n"))
    rank = Window.partitionBy(*keys).orderBy(F.col("_n").desc(), F.col(column))
    top = counts.withColumn("_rank", F.row_number().over(rank)).where(F.col("_rank") <= F.lit(int(n)))
    ordered = F.sort_array(F.collect_list(F.struct(F.col("_rank"), F.col(column).alias("v"))))
    return top.groupBy(*keys).agg(F.transform(ordered, lambda x: x.getField("v")).alias(alias))


def service_kpis(contacts: DataFrame, wait_targets: dict[str, float], top_reasons: int) -> DataFrame:
    """The KPIs of the module docstring per branch, channel, hour and branch x hour of
    ``contacts`` (:func:`service_contacts`): rows of ``dimension``, ``value``,
    ``branch_id``, ``channel``, ``hour`` and the KPIs."""
    rows = contacts.select(
        "branch_id", "channel", "hour", "reason",
        F.col("wait_seconds").cast("double").alias("wait_seconds"),
        F.col("handle_seconds").cast("double").alias("handle_seconds"),
        F.col("resolved_first_contact").cast("double").alias("_fcr"),
        F.when(F.col("wait_seconds").isNotNull(),
               (F.col("wait_seconds") > wait_target(wait_targets)).cast("double")).alias("_over"))
    tagged = by_dimension(rows, SERVICE_DIMENSIONS)
    keys = ["dimension", "value", *GROUP_COLUMNS]
    agg = tagged.groupBy(*keys).agg(
        F.count(F.lit(1)).alias("contacts"),
        F.percentile("wait_seconds", 0.5).alias("wait_p50_s"),
        F.percentile("wait_seconds", 0.9).alias("wait_p90_s"),
        F.avg("_over").alias("over_target_share"),
        F.percentile("handle_seconds", 0.5).alias("handle_p50_s"),
        F.avg("_fcr").alias("fcr_rate"),
    )
    reasons = top_values(tagged, ["dimension", "value"], "reason", top_reasons, "top_reasons")
    return agg.join(reasons, ["dimension", "value"], "left").select(
        *keys, "contacts", "wait_p50_s", "wait_p90_s", "over_target_share", "handle_p50_s", "fcr_rate",
        F.coalesce(F.col("top_reasons"), F.array().cast("array<string>")).alias("top_reasons"))


__all__ = ["SERVICE_DIMENSIONS", "by_dimension", "service_contacts", "service_kpis", "top_values", "wait_target"]

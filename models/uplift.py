"""Did the recommendations work: adoption of the treated customers against the control group.

Pure: Spark column expressions and plain Python, no I/O. :func:`jobs.export.outcomes`
applies them to ``gold/recommendations`` and ``silver/holdings``.

**Adoption** is the next best product model's label (:func:`features.candidates.adoptions`,
conf ``models.next_best_product.horizon_days``): a recommendation of product P to customer
C on date D is adopted when C opened P in ``(D, D + horizon_days]`` (an account of P whose
``opened_date`` is in that window, in a holdings snapshot taken by the end of as_of).

**Groups.** The treated customers are the exported ones (not held out); the holdout
customers are the control group (``holdout`` in gold, conf ``scoring.holdout_share``): the
same hash draw decides it whatever the customer, so both groups have the same mix of
customers for a given product and persona, and the difference of their adoption rates
estimates what being contacted adds (the uplift).

**Interval.** ``uplift = treated_rate - holdout_rate``; its 95% confidence interval is the
normal approximation (Wald) for a difference of two independent proportions:
``uplift +- 1.959963984540054 * sqrt(p1 (1 - p1) / n1 + p0 (1 - p0) / n0)`` (``p1, n1``:
treated rate and count, ``p0, n0``: holdout). Null when either group is empty. The
approximation is poor for small groups or rates near 0 or 1 (both rates 0 give a
zero-width interval): read the counts beside it.
"""

from __future__ import annotations

import math
from datetime import date

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

Z95 = 1.959963984540054  # the 0.975 quantile of the standard normal

UPLIFT_COLUMNS = ["adoption_complete", "treated", "treated_adopted", "treated_adoption_rate", "holdout",
                  "holdout_adopted", "holdout_adoption_rate", "uplift", "uplift_ci_low", "uplift_ci_high"]


def interval(treated_adopted: int, treated: int, holdout_adopted: int, holdout: int) -> tuple | None:
    """(uplift, low, high) of the module's interval, in plain Python (the same formula as
    :func:`uplift`; for reports and tests). None when either group is empty."""
    if not treated or not holdout:
        return None
    p1, p0 = treated_adopted / treated, holdout_adopted / holdout
    d = p1 - p0
    half = Z95 * math.sqrt(p1 * (1 - p1) / treated + p0 * (1 - p0) / holdout)
    return d, d - half, d + half


def adopted(pairs: DataFrame, holdings: DataFrame, as_of: date, horizon_days: int) -> DataFrame:
    """``pairs`` (as_of_date, customer_id, product_code, ...) with ``adopted``: the customer
    opened the product in ``(as_of_date, as_of_date + horizon_days]``, as known from the
    holdings snapshots taken by the end of ``as_of``. Null when the window has not fully
    passed at ``as_of`` (``as_of_date + horizon_days > as_of``): an open window is not a
    non-adoption.

    ``holdings``: customer_id, product_code, opened_date (and snapshot_date, if present:
    snapshots after ``as_of`` are ignored). Only openings after the earliest pair date are
    read, one row per (customer, product, opening date)."""
    day = F.lit(as_of.isoformat()).cast("date")
    h = holdings
    if "snapshot_date" in h.columns:
        h = h.where(F.col("snapshot_date") <= day)
    opens = h.where(F.col("opened_date") <= day).select(
        F.col("customer_id").alias("_a_customer"), F.col("product_code").alias("_a_product"),
        F.col("opened_date").alias("_a_opened")).distinct()
    end = F.date_add(F.col("as_of_date"), horizon_days)
    cond = (F.col("customer_id") == F.col("_a_customer")) & (F.col("product_code") == F.col("_a_product")) \
        & (F.col("_a_opened") > F.col("as_of_date")) & (F.col("_a_opened") <= end)
    hits = pairs.select("as_of_date", "customer_id", "product_code").distinct() \
        .join(opens, cond, "inner").select("as_of_date", "customer_id", "product_code").distinct() \
        .withColumn("_hit", F.lit(True))
    complete = end <= day
    out = pairs.join(hits, ["as_of_date", "customer_id", "product_code"], "left")
    return out.withColumn("adopted", F.when(complete, F.coalesce(F.col("_hit"), F.lit(False)))).drop("_hit")


def _rate(hits: Column, n: Column) -> Column:
    return F.when(n > 0, hits / n)


def uplift_aggregates() -> list[Column]:
    """The aggregate columns :func:`finish` needs, for a ``groupBy`` over pairs with
    ``customer_id``, ``held`` and ``adopted`` (so that a caller can add its own aggregates
    to the same ``groupBy``)."""
    held = F.coalesce(F.col("held"), F.lit(False))
    return [F.count_distinct(F.when(~held, F.col("customer_id"))).alias("treated"),
            F.count_distinct(F.when(~held & F.col("adopted"), F.col("customer_id"))).alias("_t_hits"),
            F.count_distinct(F.when(held, F.col("customer_id"))).alias("holdout"),
            F.count_distinct(F.when(held & F.col("adopted"), F.col("customer_id"))).alias("_h_hits"),
            (F.min(F.when(F.col("adopted").isNotNull(), 1).otherwise(0)) == 1).alias("adoption_complete")]


def finish(agg: DataFrame) -> DataFrame:
    """``agg`` (grouped with :func:`uplift_aggregates`) with :data:`UPLIFT_COLUMNS` in place
    of the helper columns (its other columns kept, first)."""
    done = F.col("adoption_complete")
    n1, n0 = F.col("treated"), F.col("holdout")
    other = [c for c in agg.columns if c not in UPLIFT_COLUMNS and c not in ("_t_hits", "_h_hits")]
    agg = agg.select(*other, "adoption_complete", "treated", F.when(done, F.col("_t_hits")).alias("treated_adopted"),
                     F.when(done, _rate(F.col("_t_hits"), n1)).alias("treated_adoption_rate"), "holdout",
                     F.when(done, F.col("_h_hits")).alias("holdout_adopted"),
                     F.when(done, _rate(F.col("_h_hits"), n0)).alias("holdout_adoption_rate"))
    p1, p0 = F.col("treated_adoption_rate"), F.col("holdout_adoption_rate")
    both = (n1 > 0) & (n0 > 0) & p1.isNotNull() & p0.isNotNull()
    # every division under the guard (ANSI mode: a division by zero is an error)
    half = F.when(both, F.lit(Z95) * F.sqrt(p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0))
    diff = F.when(both, p1 - p0)
    return agg.select("*", diff.alias("uplift"), (diff - half).alias("uplift_ci_low"),
                      (diff + half).alias("uplift_ci_high"))


def uplift(pairs: DataFrame, keys: list[str]) -> DataFrame:
    """Per ``keys`` (which include ``as_of_date``): the columns :data:`UPLIFT_COLUMNS`.

    ``pairs``: one row per recommendation (customer, product, date; repeated rows count
    once), ``held`` (true: the control group) and ``adopted`` (:func:`adopted`: null while
    its window is open). ``treated`` / ``holdout``: customers of each group (distinct);
    ``*_adopted``: those of them who adopted; rates = adopted / customers (null for an
    empty group); ``uplift`` and its interval (module docstring; null when either group is
    empty). ``adoption_complete``: the window of the date has fully passed; when false the
    adopted counts, rates, uplift and interval are null (the counts of customers stay)."""
    return finish(pairs.groupBy(*keys).agg(*uplift_aggregates()))


__all__ = ["UPLIFT_COLUMNS", "Z95", "adopted", "finish", "interval", "uplift", "uplift_aggregates"]

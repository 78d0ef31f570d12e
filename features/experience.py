"""Experience KPIs from survey answers (silver/feedback): NPS, CSAT and CES, each with the
count it is computed over.

Definitions (the usual ones; a segment, touchpoint or channel is a group):

- ``nps`` (Net Promoter Score, -100..100 points): among the customers with an NPS answer
  in the window, each customer's latest answer (of the group, for a group of answers such
  as a touchpoint), the percentage of promoters (9-10) minus the percentage of detractors
  (0-6). ``nps_respondents`` customers, ``nps_promoters``, ``nps_detractors``; the mean of
  those 0-10 scores is ``nps_mean_score`` (not an NPS).
- ``csat`` (0..100 %): the percentage of CSAT answers (1-5) of 4 or 5, over
  ``csat_responses`` answers (``csat_satisfied`` of them 4-5).
- ``ces``: the mean customer effort score (1-7, high = hard) over ``ces_responses`` answers.

A KPI over fewer than ``min_respondents`` (its own count) is null: too few to mean
anything; the count stays, so a reader sees why. Point in time: :func:`survey_answers`
keeps only answers given in the window that ends at as_of.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from features.profile import AsOf

UNKNOWN = "(unknown)"  # a group value missing on the answer (no touchpoint, no channel)
EXPERIENCE_DIMENSIONS = ("touchpoint", "channel")
KPI_COLUMNS = ("nps", "nps_respondents", "nps_promoters", "nps_detractors", "nps_mean_score",
               "csat", "csat_responses", "csat_satisfied", "ces", "ces_responses")
COUNT_COLUMNS = ("nps_respondents", "nps_promoters", "nps_detractors", "csat_responses", "csat_satisfied",
                 "ces_responses")


def survey_answers(feedback: DataFrame, at: AsOf, window_days: int) -> DataFrame:
    """The survey answers given in the ``window_days`` days up to the end of as_of
    (``responded_at`` in the window; later answers are not known at as_of)."""
    return at.partitions(feedback, window_days).where(at.in_window(F.col("responded_at"), window_days))


def _count_if(cond: Column) -> Column:
    return F.sum(F.when(cond, 1).otherwise(0)).cast("bigint")


def _at_least(n: Column, min_respondents: int, value: Column) -> Column:
    return F.when(n >= F.lit(int(min_respondents)), value)


def experience_kpis(answers: DataFrame, groups: list[str], min_respondents: int) -> DataFrame:
    """NPS, CSAT and CES (module docstring) per value of the ``groups`` columns of
    ``answers`` (survey answers with ``customer_id``, ``survey_type``, ``score``,
    ``responded_at``, ``response_id``). One row per group with any answer: the group
    columns and :data:`KPI_COLUMNS`. A customer counts once in a group's NPS, with their
    latest answer there (ties on the time: the greatest response_id)."""
    is_nps = F.col("survey_type") == "nps"
    latest = Window.partitionBy(*groups, "customer_id").orderBy(F.col("responded_at").desc(),
                                                                F.col("response_id").desc())
    nps = answers.where(is_nps).withColumn("_rn", F.row_number().over(latest)).where("_rn = 1") \
        .select(*groups, "survey_type", F.col("score").cast("int").alias("score"))
    others = answers.where(F.col("survey_type").isin("csat", "ces")) \
        .select(*groups, "survey_type", F.col("score").cast("int").alias("score"))
    rows = nps.unionByName(others)
    kind = F.col("survey_type")
    score = F.col("score")
    agg = rows.groupBy(*groups).agg(
        _count_if(kind == "nps").alias("nps_respondents"),
        _count_if((kind == "nps") & (score >= 9)).alias("nps_promoters"),
        _count_if((kind == "nps") & (score <= 6)).alias("nps_detractors"),
        F.avg(F.when(kind == "nps", score)).alias("nps_mean_score"),
        _count_if(kind == "csat").alias("csat_responses"),
        _count_if((kind == "csat") & (score >= 4)).alias("csat_satisfied"),
        _count_if(kind == "ces").alias("ces_responses"),
        F.avg(F.when(kind == "ces", score)).alias("_ces"),
    )
    n_nps, n_csat, n_ces = F.col("nps_respondents"), F.col("csat_responses"), F.col("ces_responses")
    return agg.select(
        *groups,
        _at_least(n_nps, min_respondents,
                  F.lit(100.0) * (F.col("nps_promoters") - F.col("nps_detractors")) / n_nps).alias("nps"),
        "nps_respondents", "nps_promoters", "nps_detractors",
        _at_least(n_nps, min_respondents, F.col("nps_mean_score")).alias("nps_mean_score"),
        _at_least(n_csat, min_respondents, F.lit(100.0) * F.col("csat_satisfied") / n_csat).alias("csat"),
        "csat_responses", "csat_satisfied",
        _at_least(n_ces, min_respondents, F.col("_ces")).alias("ces"),
        "ces_responses",
    )


def experience_by_dimension(answers: DataFrame, min_respondents: int,
                            dimensions: tuple[str, ...] = EXPERIENCE_DIMENSIONS) -> DataFrame:
    """:func:`experience_kpis` per touchpoint and per channel of the answers: rows of
    ``dimension`` (the column's name), ``value`` (its value; :data:`UNKNOWN` when the
    answer has none) and :data:`KPI_COLUMNS`."""
    parts = []
    for dim in dimensions:
        labelled = answers.withColumn("value", F.coalesce(F.col(dim).cast("string"), F.lit(UNKNOWN)))
        parts.append(experience_kpis(labelled, ["value"], min_respondents)
                     .select(F.lit(dim).alias("dimension"), "value", *KPI_COLUMNS))
    out = parts[0]
    for p in parts[1:]:
        out = out.unionByName(p)
    return out


__all__ = ["COUNT_COLUMNS", "KPI_COLUMNS", "UNKNOWN", "experience_by_dimension", "experience_kpis", "survey_answers"]

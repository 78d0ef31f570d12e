"""KPIs: silver service data -> experience, service, complaint and topic KPIs for one as_of.

Writes, each partitioned by ``as_of_date`` (a run replaces only its own partition: a
re-run is idempotent and history stays comparable), aggregates only (no customer id, no
text):

- ``gold/experience_kpis``  NPS, CSAT, CES with their respondents per touchpoint and
  survey channel (:mod:`features.experience`; ``kpis.experience``)
- ``gold/service_kpis``     contacts, wait p50/p90, share over the wait target, handle
  time p50, first-contact resolution and top reasons per branch, channel, hour and
  branch x hour (:mod:`features.service`; ``kpis.service``)
- ``gold/complaint_kpis``   opened, rate per 1,000 customers, closed, resolution times,
  SLA breaches, backlog and its ages, re-opened, per category, product, channel and
  severity (:mod:`features.complaints`; ``kpis.complaints``)
- ``gold/topic_kpis``       topics of survey comments (per touchpoint) and complaint
  descriptions (per category) (:mod:`features.topics`; ``kpis.topics``)

and the service report ``<lake>/marketing/reports/<as_of>/service.html`` from them
(:mod:`c360.service_report`: experience KPIs, the wait heatmap, complaints and their trend
over the earlier as_of dates, top topics; aggregates only).

Point in time: only rows known at as_of count (answers, contacts and complaints up to its
end, complaint statuses delivered by then). A source the bank lacks leaves its table
without a partition for as_of (listed in the result under ``skipped``).
"""

from __future__ import annotations

from datetime import date

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from c360 import lake
from c360.settings import Settings
from features.complaints import DELIVERED, complaint_kpis, complaint_status_at
from features.experience import experience_by_dimension, survey_answers
from features.profile import AsOf
from features.service import service_contacts, service_kpis
from features.topics import topic_counts

_D, _S, _L, _I = T.DoubleType(), T.StringType(), T.LongType(), T.IntegerType()


def _schema(*fields: tuple[str, T.DataType]) -> T.StructType:
    return T.StructType([T.StructField("as_of_date", T.DateType()), *[T.StructField(n, t) for n, t in fields]])


EXPERIENCE_SCHEMA = _schema(
    ("dimension", _S), ("value", _S), ("nps", _D), ("nps_respondents", _L), ("nps_promoters", _L),
    ("nps_detractors", _L), ("nps_mean_score", _D), ("csat", _D), ("csat_responses", _L), ("csat_satisfied", _L),
    ("ces", _D), ("ces_responses", _L))
SERVICE_SCHEMA = _schema(
    ("dimension", _S), ("value", _S), ("branch_id", _S), ("channel", _S), ("hour", _I), ("contacts", _L),
    ("wait_p50_s", _D), ("wait_p90_s", _D), ("over_target_share", _D), ("handle_p50_s", _D), ("fcr_rate", _D),
    ("top_reasons", T.ArrayType(_S)))
COMPLAINT_SCHEMA = _schema(
    ("dimension", _S), ("value", _S), ("opened", _L), ("rate_per_1000", _D), ("closed", _L),
    ("resolution_p50_days", _D), ("resolution_p90_days", _D), ("sla_breaches_closed", _L), ("backlog", _L),
    ("backlog_age_p50_days", _D), ("backlog_age_max_days", _D), ("sla_breaches_open", _L), ("reopened", _L))
TOPIC_SCHEMA = _schema(
    ("source", _S), ("dimension", _S), ("value", _S), ("topic", _S), ("texts", _L), ("mentions", _L),
    ("share", _D), ("negative_mentions", _L), ("sentiment_avg", _D))
TABLES = {"experience_kpis": EXPERIENCE_SCHEMA, "service_kpis": SERVICE_SCHEMA,
          "complaint_kpis": COMPLAINT_SCHEMA, "topic_kpis": TOPIC_SCHEMA}


def _read(spark: SparkSession, settings: Settings, layer: str, name: str) -> DataFrame | None:
    path = lake.table_path(settings.lake, layer, name)
    return lake.read(spark, path) if lake.exists(path) else None


def _customers(spark: SparkSession, settings: Settings, as_of: date) -> int | None:
    """Customers at as_of (rows of gold/customer_360's as_of partition); None without it."""
    c360 = _read(spark, settings, "gold", "customer_360")
    if c360 is None:
        return None
    return c360.where(F.col("as_of_date") == F.lit(as_of.isoformat()).cast("date")).count() or None


def _complaint_history(spark: SparkSession, settings: Settings, at: AsOf) -> DataFrame | None:
    """``silver/complaint_history``; without it (a lake loaded before versions were kept),
    silver complaints' latest versions, each taken as delivered on the local date of its
    latest known change (closing, else opening)."""
    history = _read(spark, settings, "silver", "complaint_history")
    if history is not None:
        return history
    current = _read(spark, settings, "silver", "complaints")
    if current is None:
        return None
    return current.withColumn(DELIVERED, F.to_date(at.local(F.coalesce(F.col("closed_at"), F.col("opened_at")))))


def run(spark: SparkSession, settings: Settings, as_of: date, progress=None) -> dict:
    conf = settings.kpis
    at = AsOf(as_of, settings.bank.timezone)
    where = f"as_of_date = DATE'{as_of.isoformat()}'"
    as_of_lit = F.lit(as_of.isoformat()).cast("date")
    tables: dict[str, DataFrame] = {}

    feedback = _read(spark, settings, "silver", "feedback")
    answers = survey_answers(feedback, at, conf.experience.window_days) if feedback is not None else None
    if answers is not None:
        tables["experience_kpis"] = experience_by_dimension(answers, conf.experience.min_respondents)
    interactions = _read(spark, settings, "silver", "interactions")
    if interactions is not None:
        contacts = service_contacts(interactions, at, conf.service.window_days)
        tables["service_kpis"] = service_kpis(contacts, conf.service.wait_target_seconds, conf.service.top_reasons)
    history = _complaint_history(spark, settings, at)
    if history is not None:
        status = complaint_status_at(history, at)
        tables["complaint_kpis"] = complaint_kpis(status, at, conf.complaints.window_days,
                                                  conf.complaints.sla_days, _customers(spark, settings, as_of))
    texts = []
    if answers is not None:
        texts.append(answers.select(F.lit("feedback").alias("source"), F.lit("touchpoint").alias("dimension"),
                                    F.col("touchpoint").alias("group"), F.col("comment").alias("text"),
                                    "sentiment_score", "sentiment_label"))
    complaints = _read(spark, settings, "silver", "complaints")
    if complaints is not None and "sentiment_score" in complaints.columns:
        opened = at.partitions(complaints, conf.complaints.window_days) \
            .where(at.in_window(F.col("opened_at"), conf.complaints.window_days))
        texts.append(opened.select(F.lit("complaints").alias("source"), F.lit("category").alias("dimension"),
                                   F.col("category").alias("group"), F.col("description").alias("text"),
                                   "sentiment_score", "sentiment_label"))
    if texts and conf.topics:
        rows = texts[0] if len(texts) == 1 else texts[0].unionByName(texts[1])
        terms = {name: [*t.zh, *t.en] for name, t in conf.topics.items()}
        # a text's dimension rides along with its source: one per source
        dims = rows.select("source", "dimension").distinct()
        tables["topic_kpis"] = topic_counts(rows.drop("dimension"), terms).join(dims, "source") \
            .withColumnRenamed("group", "value")

    written, skipped = {}, sorted(set(TABLES) - set(tables))
    for i, (name, df) in enumerate(tables.items()):
        if progress:
            progress(f"kpis {name}", i, len(tables))
        schema = TABLES[name]
        path = lake.table_path(settings.lake, "gold", name)
        lake.write_partition(df.withColumn("as_of_date", as_of_lit).select(*schema.fieldNames()), path, "as_of_date",
                             where, schema=schema)
        written[name] = lake.read(spark, path).where(where).count()
    report = None
    if written:
        from c360.service_report import write_service_report

        report = str(write_service_report(spark, settings, as_of))
    if progress:
        progress("kpis", len(tables), len(tables))
    return {"as_of": as_of.isoformat(), "rows": written, "skipped": skipped, "report": report}


__all__ = ["TABLES", "run"]

"""Service recovery (服务补救): the customers who need a service contact now, and what
happened after they were listed.

:func:`recovery_signals`: one row per customer and reason (:data:`c360.settings.RECOVERY_REASONS`),
from what is known at the end of as_of:

- ``complaint_sla_breach``: a complaint open at as_of (not resolved or rejected) for longer
  than its severity's SLA (``kpis.complaints.sla_days``; no severity, no SLA);
- ``complaint_reopened``: a complaint open at as_of that was re-opened after being closed
  (:func:`features.complaints.complaint_status_at`);
- ``detractor``: the customer's latest NPS answer in the window scored at most
  ``detractor_max_score`` (0-6), with no service contact since;
- ``negative_comment``: the customer's latest survey answer in the window with a comment of
  negative sentiment (``sentiment_label``), with no service contact since;
- ``repeated_long_waits``: at least ``long_wait_min_count`` service contacts in the window
  that waited more than ``long_wait_factor`` times their channel's target
  (``kpis.service.wait_target_seconds``, :func:`features.service.wait_target`);
- ``high_attrition_risk``: the customer's ``gold/attrition_risk`` band at as_of is one of
  ``attrition_bands``.

A follow-up is any service contact (``silver/interactions``) of the customer that started
after the answer and before the end of as_of.

:func:`service_recovery`: one row per listed customer: ``reason_codes`` (highest points
first, ties by code), ``priority`` (the sum of the reasons' points), ``due_date`` (as_of
plus the fewest ``due_days`` of the reasons), the reasons' sentences (zh, en), the evidence
(``nps_score``, ``complaint_ids``, ``long_waits``) and the churn warning
(``attrition_band``, ``attrition_score`` of every listed customer with a score at as_of).
Marketing consent plays no part and nothing is offered: this is service, not marketing.

:func:`recovery_outcomes`: per earlier listing date and reason, ``listed`` customers,
``followed_up`` (a service contact within ``outcome_days`` after the listing date),
``improved`` (below) and ``improvement_rate`` (improved / listed). Improved, within
``outcome_days`` after the listing date and before the end of as_of:

- ``detractor``: a later NPS answer scored higher than the listed one;
- ``negative_comment``: a later survey answer whose comment is not negative;
- ``complaint_sla_breach`` / ``complaint_reopened``: every listed complaint closed
  (resolved or rejected) as known at as_of;
- ``repeated_long_waits``: later service contacts, none of them a long wait;
- ``high_attrition_risk``: the latest later attrition score puts the customer in a band
  not in ``attrition_bands``.
"""

from __future__ import annotations

from datetime import date, timedelta

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.window import Window

from c360.settings import RECOVERY_REASONS, ServiceRecovery
from features.complaints import CLOSED, sla_days_of
from features.profile import AsOf
from features.service import wait_target

SIGNAL_COLUMNS = ("customer_id", "reason", "nps_score", "complaint_ids", "long_waits")
RECOVERY_COLUMNS = ("customer_id", "as_of_date", "reason_codes", "priority", "due_date", "reason_text_zh",
                    "reason_text_en", "nps_score", "complaint_ids", "long_waits", "attrition_band",
                    "attrition_score", "attrition_model_version")


def _signal(df: DataFrame, reason: str, nps_score: Column | None = None, complaint_ids: Column | None = None,
            long_waits: Column | None = None) -> DataFrame:
    return df.select(
        "customer_id", F.lit(reason).alias("reason"),
        (nps_score if nps_score is not None else F.lit(None)).cast("int").alias("nps_score"),
        (complaint_ids if complaint_ids is not None else F.lit(None)).cast("array<string>").alias("complaint_ids"),
        (long_waits if long_waits is not None else F.lit(None)).cast("int").alias("long_waits"))


def _latest(df: DataFrame) -> DataFrame:
    w = Window.partitionBy("customer_id").orderBy(F.col("responded_at").desc(), F.col("response_id").desc())
    return df.withColumn("_rn", F.row_number().over(w)).where("_rn = 1").drop("_rn")


def not_followed_up(answers: DataFrame, contacts: DataFrame) -> DataFrame:
    """The ``answers`` with no service contact of their customer started after them (in
    ``contacts``, the contacts known at as_of)."""
    later = contacts.select(F.col("customer_id").alias("_c"), F.col("started_at").alias("_t"))
    cond = (F.col("customer_id") == F.col("_c")) & (F.col("_t") > F.col("responded_at"))
    return answers.join(later, cond, "left_anti")


def long_wait(factor: float, targets: dict[str, float]) -> Column:
    """A contact waited more than ``factor`` times its channel's target."""
    return F.col("wait_seconds") > wait_target(targets) * F.lit(float(factor))


def recovery_signals(answers: DataFrame | None, contacts: DataFrame | None, complaints: DataFrame | None,
                     attrition: DataFrame | None, at: AsOf, conf: ServiceRecovery, wait_targets: dict[str, float],
                     sla_days: dict[str, float]) -> DataFrame | None:
    """One row per (customer, reason) of the module docstring: :data:`SIGNAL_COLUMNS`.

    ``answers``: survey answers in the window (:func:`features.experience.survey_answers`);
    ``contacts``: service contacts in the window (:func:`features.service.service_contacts`);
    ``complaints``: each complaint as known at as_of (:func:`features.complaints.complaint_status_at`);
    ``attrition``: ``gold/attrition_risk`` rows of as_of. A missing input (None) gives no
    rows of its reasons; None when every input is missing."""
    parts = []
    if answers is not None:
        def open_(rows: DataFrame) -> DataFrame:
            return rows if contacts is None else not_followed_up(rows, contacts)

        nps = _latest(answers.where(F.col("survey_type") == "nps"))
        parts.append(_signal(open_(nps.where(F.col("score") <= F.lit(conf.detractor_max_score))), "detractor",
                             nps_score=F.col("score")))
        if "sentiment_label" in answers.columns:
            negative = _latest(answers.where(F.col("sentiment_label") == "negative"))
            parts.append(_signal(open_(negative), "negative_comment"))
    if complaints is not None:
        open_complaint = ~F.col("status").isin(*CLOSED)
        age = (F.unix_timestamp(at.cutoff) - F.unix_timestamp(F.col("opened_at"))) / F.lit(86_400.0)
        rows = complaints.where(open_complaint)
        for reason, cond in (("complaint_sla_breach", age > sla_days_of(sla_days)),
                             ("complaint_reopened", F.col("reopened"))):
            found = rows.where(F.coalesce(cond, F.lit(False))).groupBy("customer_id") \
                .agg(F.sort_array(F.collect_set(F.col("complaint_id").cast("string"))).alias("ids"))
            parts.append(_signal(found, reason, complaint_ids=F.col("ids")))
    if contacts is not None:
        waits = contacts.where(long_wait(conf.long_wait_factor, wait_targets)).groupBy("customer_id") \
            .agg(F.count_distinct("interaction_id").alias("n")).where(F.col("n") >= F.lit(conf.long_wait_min_count))
        parts.append(_signal(waits, "repeated_long_waits", long_waits=F.col("n")))
    if attrition is not None:
        parts.append(_signal(attrition.where(F.col("risk_band").isin(*conf.attrition_bands)), "high_attrition_risk"))
    if not parts:
        return None
    out = parts[0]
    for p in parts[1:]:
        out = out.unionByName(p)
    return out


def ordered_codes(conf: ServiceRecovery) -> list[str]:
    """The reason codes, highest points first, ties by code (the order of ``reason_codes``)."""
    return sorted(RECOVERY_REASONS, key=lambda c: (-conf.reasons[c].points, c))


def service_recovery(signals: DataFrame, attrition: DataFrame | None, as_of: date,
                     conf: ServiceRecovery) -> DataFrame:
    """The ``gold/service_recovery`` rows of as_of (unsorted): one per customer of
    ``signals`` (:func:`recovery_signals`), columns :data:`RECOVERY_COLUMNS` (module
    docstring). ``attrition``: ``gold/attrition_risk`` rows of as_of, or None (no attrition
    model: the churn columns are null)."""
    codes = ordered_codes(conf)
    per = signals.groupBy("customer_id").agg(
        F.collect_set("reason").alias("_reasons"), F.max("nps_score").alias("nps_score"),
        F.sort_array(F.array_distinct(F.flatten(F.collect_list(
            F.coalesce(F.col("complaint_ids"), F.array().cast("array<string>")))))).alias("complaint_ids"),
        F.max("long_waits").alias("long_waits"))
    has = {c: F.array_contains(F.col("_reasons"), F.lit(c)) for c in codes}
    priority = sum((F.when(has[c], F.lit(conf.reasons[c].points)).otherwise(F.lit(0)) for c in codes), F.lit(0))
    due_days = F.least(*[F.when(has[c], F.lit(conf.reasons[c].due_days)) for c in codes])
    out = per.select(
        "customer_id", F.lit(as_of.isoformat()).cast("date").alias("as_of_date"),
        # codes hold no comma: joined in order, then split (no higher-order function needed)
        F.split(F.concat_ws(",", *[F.when(has[c], F.lit(c)) for c in codes]), ",").alias("reason_codes"),
        priority.cast("int").alias("priority"),
        F.date_add(F.lit(as_of.isoformat()).cast("date"), due_days.cast("int")).alias("due_date"),
        # each sentence once, in the order of the codes (as models.scoring.sentences joins them)
        F.concat_ws("", *[F.when(has[c], F.lit(conf.reasons[c].zh)) for c in codes]).alias("reason_text_zh"),
        F.concat_ws(" ", *[F.when(has[c], F.lit(conf.reasons[c].en)) for c in codes]).alias("reason_text_en"),
        "nps_score",
        F.when(F.size("complaint_ids") > 0, F.col("complaint_ids")).alias("complaint_ids"),
        F.col("long_waits").cast("int").alias("long_waits"))
    if attrition is not None:
        out = out.join(attrition.select("customer_id", F.col("risk_band").alias("attrition_band"),
                                        F.col("risk_score").cast("double").alias("attrition_score"),
                                        F.col("model_version").cast("string").alias("attrition_model_version"))
                       .dropDuplicates(["customer_id"]), "customer_id", "left")
    else:
        out = out.select("*", F.lit(None).cast("string").alias("attrition_band"),
                         F.lit(None).cast("double").alias("attrition_score"),
                         F.lit(None).cast("string").alias("attrition_model_version"))
    return out.select(*RECOVERY_COLUMNS)


def recovery_changes(current: DataFrame, previous: DataFrame | None) -> DataFrame:
    """``new`` / ``changed`` (reasons, priority or due date) / ``withdrawn`` customers between
    two service files (columns ``customer_id``, ``reason_codes`` (text), ``priority``,
    ``due_date``); unsorted."""
    cur = current.select("customer_id", "reason_codes", "priority", "due_date")
    if previous is None:
        return cur.select(F.lit("new").alias("change"), "*", F.lit(None).cast("string").alias("previous_reason_codes"),
                          F.lit(None).cast("int").alias("previous_priority"),
                          F.lit(None).cast("date").alias("previous_due_date"))
    prev = previous.select("customer_id", F.col("reason_codes").alias("previous_reason_codes"),
                           F.col("priority").cast("int").alias("previous_priority"),
                           F.col("due_date").cast("date").alias("previous_due_date"))
    both = cur.withColumn("_cur", F.lit(True)).join(prev.withColumn("_prev", F.lit(True)), "customer_id", "full")
    differs = ~F.col("reason_codes").eqNullSafe(F.col("previous_reason_codes")) \
        | ~F.col("priority").eqNullSafe(F.col("previous_priority")) \
        | ~F.col("due_date").eqNullSafe(F.col("previous_due_date"))
    change = F.when(both["_prev"].isNull(), "new").when(both["_cur"].isNull(), "withdrawn").when(differs, "changed")
    return both.select(change.alias("change"), "customer_id", "reason_codes", "priority", "due_date",
                       "previous_reason_codes", "previous_priority", "previous_due_date") \
        .where(F.col("change").isNotNull())


OUTCOME_SCHEMA = T.StructType([
    T.StructField("as_of_date", T.DateType()),
    T.StructField("reason", T.StringType()),
    T.StructField("listed", T.LongType()),
    T.StructField("followed_up", T.LongType()),
    T.StructField("improved", T.LongType()),
    T.StructField("improvement_rate", T.DoubleType()),
])


def recovery_outcomes(listed: DataFrame, answers: DataFrame | None, contacts: DataFrame | None,
                      complaints: DataFrame | None, attrition: DataFrame | None, at: AsOf,
                      conf: ServiceRecovery, wait_targets: dict[str, float]) -> DataFrame:
    """``gold/service_recovery_outcomes`` rows (module docstring) for the listings of
    ``listed`` (``gold/service_recovery`` rows of dates before as_of).

    ``answers`` / ``contacts``: survey answers and service contacts that started before the
    end of as_of (any age); ``complaints``: each complaint as known at as_of;
    ``attrition``: ``gold/attrition_risk`` rows of dates up to as_of. A missing input counts
    nobody as followed up or improved by it."""
    tz = at.bank_timezone
    start = F.to_utc_timestamp(F.date_add(F.col("as_of_date"), 1).cast("timestamp"), tz)
    end = F.to_utc_timestamp(F.date_add(F.col("as_of_date"), 1 + conf.outcome_days).cast("timestamp"), tz)
    rows = listed.select("as_of_date", "customer_id", F.explode("reason_codes").alias("reason"), "nps_score",
                         "complaint_ids").withColumn("_start", start).withColumn("_end", end)
    keys = ["as_of_date", "customer_id", "reason"]

    def after(events: DataFrame, ts: str, *cols: str) -> DataFrame:
        """``rows`` x the customer's ``events`` at ``ts`` within [start, end) and before the cutoff."""
        ev = events.where(F.col(ts) < at.cutoff).select(F.col("customer_id").alias("_c"), F.col(ts).alias("_ts"),
                                                        *cols)
        cond = (F.col("customer_id") == F.col("_c")) & (F.col("_ts") >= F.col("_start")) & \
            (F.col("_ts") < F.col("_end"))
        return rows.join(ev, cond, "inner")

    flags = []
    if contacts is not None:
        c = after(contacts, "started_at", F.col("wait_seconds"), F.col("channel"))
        flags.append(c.withColumn("_long", F.coalesce(long_wait(conf.long_wait_factor, wait_targets), F.lit(False)))
                     .groupBy(*keys).agg(F.lit(True).alias("followed_up"), (~F.max("_long")).alias("_waits_ok")))
    if answers is not None:
        a = after(answers, "responded_at", F.col("survey_type"), F.col("score").alias("_score"),
                  (F.col("sentiment_label") if "sentiment_label" in answers.columns
                   else F.lit(None).cast("string")).alias("_label"))
        better = F.when(F.col("reason") == "detractor",
                        (F.col("survey_type") == "nps") & (F.col("_score") > F.col("nps_score"))) \
            .when(F.col("reason") == "negative_comment", F.col("_label").isNotNull() & (F.col("_label") != "negative"))
        flags.append(a.groupBy(*keys).agg(F.max(F.coalesce(better, F.lit(False))).alias("_answer_better")))
    if complaints is not None:
        ids = rows.where(F.col("reason").isin("complaint_sla_breach", "complaint_reopened")) \
            .select(*keys, "_end", F.explode("complaint_ids").alias("complaint_id"))
        st = complaints.select("complaint_id", F.col("status").alias("_status"), F.col("closed_at").alias("_closed_at"))
        closed = F.col("_status").isin(*CLOSED) & F.coalesce(F.col("_closed_at") < F.col("_end"), F.lit(True))
        flags.append(ids.join(st, "complaint_id", "left").groupBy(*keys)
                     .agg(F.min(F.coalesce(closed, F.lit(False))).alias("_complaints_closed")))
    if attrition is not None:
        later = attrition.select(F.col("customer_id").alias("_c"), F.col("as_of_date").alias("_d"),
                                 F.col("risk_band").alias("_band"))
        cond = (F.col("customer_id") == F.col("_c")) & (F.col("_d") > F.col("as_of_date")) & \
            (F.col("_d") <= F.date_add(F.col("as_of_date"), conf.outcome_days)) & (F.col("_d") <= at.date_lit())
        j = rows.where(F.col("reason") == "high_attrition_risk").join(later, cond, "inner")
        w = Window.partitionBy(*keys).orderBy(F.col("_d").desc())
        flags.append(j.withColumn("_rn", F.row_number().over(w)).where("_rn = 1")
                     .select(*keys, (~F.col("_band").isin(*conf.attrition_bands)).alias("_band_lower")))
    out = rows.select(*keys)
    for f in flags:
        out = out.join(f, keys, "left")
    col = {c: (F.coalesce(F.col(c), F.lit(False)) if c in out.columns else F.lit(False))
           for c in ("followed_up", "_waits_ok", "_answer_better", "_complaints_closed", "_band_lower")}
    improved = F.when(F.col("reason").isin("detractor", "negative_comment"), col["_answer_better"]) \
        .when(F.col("reason").isin("complaint_sla_breach", "complaint_reopened"), col["_complaints_closed"]) \
        .when(F.col("reason") == "repeated_long_waits", col["_waits_ok"]) \
        .when(F.col("reason") == "high_attrition_risk", col["_band_lower"]).otherwise(F.lit(False))
    agg = out.select("as_of_date", "reason", "customer_id", col["followed_up"].alias("f"), improved.alias("i")) \
        .groupBy("as_of_date", "reason").agg(
            F.count_distinct("customer_id").alias("listed"),
            F.count_distinct(F.when(F.col("f"), F.col("customer_id"))).alias("followed_up"),
            F.count_distinct(F.when(F.col("i"), F.col("customer_id"))).alias("improved"))
    return agg.select("as_of_date", "reason", F.col("listed").cast("long"), F.col("followed_up").cast("long"),
                      F.col("improved").cast("long"),
                      (F.col("improved") / F.col("listed")).cast("double").alias("improvement_rate"))


def outcome_window_start(as_of: date, conf: ServiceRecovery) -> date:
    """The earliest listing date whose outcome window reaches as_of (older listings' outcomes
    are final and not computed again)."""
    return as_of - timedelta(days=conf.outcome_days + 1)


__all__ = ["RECOVERY_COLUMNS", "SIGNAL_COLUMNS", "OUTCOME_SCHEMA", "recovery_signals", "service_recovery",
           "recovery_changes", "recovery_outcomes", "not_followed_up", "long_wait", "ordered_codes",
           "outcome_window_start"]

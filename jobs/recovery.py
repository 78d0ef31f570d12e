"""Recovery: who needs a service contact now -> ``gold/service_recovery`` and the CRM's
service-queue file ``<lake>/marketing/exports/service/<as_of>/``.

``gold/service_recovery`` (partitioned by ``as_of_date``; a run replaces its own date):
one row per customer with at least one reason of :mod:`features.recovery` (complaint past
its SLA or re-opened, NPS detractor or negative comment without a follow-up, repeated long
waits, high attrition risk), with ``reason_codes``, ``priority``, ``due_date``, the zh/en
reason sentences (conf ``service_recovery``, conf/kpis.yaml), the evidence and the churn
warning (``attrition_band``, ``attrition_score`` from ``gold/attrition_risk`` at as_of).

A service contact is not marketing: the list is NOT filtered by marketing consent, holds
no product or offer, and goes to its own folder beside the recommendations export
(:func:`jobs.export.service_export_root`), written the way the recommendations export is
(:mod:`jobs.export`: one CSV and one Parquet file streamed from the engine, CSV cells
through :mod:`c360.csvsafe`, staged then renamed into place, same bytes on a re-run):

- ``service_contacts.csv`` / ``service_contacts.parquet``: columns :data:`SERVICE_COLUMNS`
  (no PII: customer id, reasons, dates, scores), highest priority first, then due date,
  then customer; ``reason_codes`` and ``complaint_ids`` joined with ``|``;
- ``changes.csv``: ``new``, ``changed`` (reasons, priority or due date) and ``withdrawn``
  customers since the previous service file (the latest earlier as_of);
- ``manifest.json``: schema version, as_of, counts per reason, the churn warning's model
  version or why there is none (``attrition.skipped``), changes, sha256 of each file.

Without an attrition score at as_of (no attrition champion: the score step's run summary
says why) the churn columns are empty, ``attrition.skipped`` says why, and the other
reasons still list customers.

The step also refreshes ``gold/service_recovery_outcomes`` (:func:`features.recovery.recovery_outcomes`)
for the listing dates whose outcome window (``outcome_days``) still reaches as_of.

Point in time: answers, contacts and complaint statuses known by the end of as_of only.
"""

from __future__ import annotations

import json
import shutil
from datetime import date

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from c360 import lake, storage
from c360.settings import Reasons, Settings
from features.complaints import complaint_status_at
from features.experience import survey_answers
from features.profile import AsOf
from features.recovery import (OUTCOME_SCHEMA, RECOVERY_COLUMNS, outcome_window_start, recovery_changes,
                               recovery_outcomes, recovery_signals, service_recovery)
from features.service import service_contacts
from jobs import export
from jobs.kpis import _complaint_history

RECOVERY_SCHEMA = T.StructType([
    T.StructField("customer_id", T.StringType()),
    T.StructField("as_of_date", T.DateType()),
    T.StructField("reason_codes", T.ArrayType(T.StringType())),
    T.StructField("priority", T.IntegerType()),
    T.StructField("due_date", T.DateType()),
    T.StructField("reason_text_zh", T.StringType()),
    T.StructField("reason_text_en", T.StringType()),
    T.StructField("nps_score", T.IntegerType()),
    T.StructField("complaint_ids", T.ArrayType(T.StringType())),
    T.StructField("long_waits", T.IntegerType()),
    T.StructField("attrition_band", T.StringType()),
    T.StructField("attrition_score", T.DoubleType()),
    T.StructField("attrition_model_version", T.StringType()),
    # the churn warning's reasons (customers whose band is in service_recovery.attrition_bands)
    T.StructField("attrition_reason_codes", T.ArrayType(T.StringType())),
    T.StructField("attrition_reason_text_zh", T.StringType()),
    T.StructField("attrition_reason_text_en", T.StringType()),
])
REASON_COLUMNS = ("attrition_reason_codes", "attrition_reason_text_zh", "attrition_reason_text_en")
assert tuple(RECOVERY_SCHEMA.fieldNames()) == RECOVERY_COLUMNS + REASON_COLUMNS
SERVICE_COLUMNS = ["customer_id", "priority", "due_date", "reason_codes", "reason_text_zh", "reason_text_en",
                   "nps_score", "complaint_ids", "long_waits", "attrition_band", "attrition_score",
                   "attrition_reasons_zh", "attrition_reasons_en"]
SERVICE_SCHEMA = pa.schema([
    ("customer_id", pa.string()), ("priority", pa.int32()), ("due_date", pa.date32()), ("reason_codes", pa.string()),
    ("reason_text_zh", pa.string()), ("reason_text_en", pa.string()), ("nps_score", pa.int32()),
    ("complaint_ids", pa.string()), ("long_waits", pa.int32()), ("attrition_band", pa.string()),
    ("attrition_score", pa.float64()), ("attrition_reasons_zh", pa.string()), ("attrition_reasons_en", pa.string())])
CHANGES_SCHEMA = pa.schema([
    ("change", pa.string()), ("customer_id", pa.string()), ("reason_codes", pa.string()), ("priority", pa.int32()),
    ("due_date", pa.date32()), ("previous_reason_codes", pa.string()), ("previous_priority", pa.int32()),
    ("previous_due_date", pa.date32())])
DATA_FILE = "service_contacts.parquet"
FILES = ("service_contacts.csv", DATA_FILE, "changes.csv")
assert SERVICE_SCHEMA.names == SERVICE_COLUMNS


def _read(spark: SparkSession, settings: Settings, layer: str, name: str) -> DataFrame | None:
    path = lake.table_path(settings.lake, layer, name)
    return lake.read(spark, path) if lake.exists(path) else None


def file_rows(gold: DataFrame) -> DataFrame:
    """The service file's rows (:data:`SERVICE_COLUMNS`) of ``gold/service_recovery`` rows, sorted."""
    return gold.select(
        "customer_id", "priority", "due_date", F.array_join("reason_codes", "|").alias("reason_codes"),
        "reason_text_zh", "reason_text_en", "nps_score", F.array_join("complaint_ids", "|").alias("complaint_ids"),
        "long_waits", "attrition_band", F.round("attrition_score", export.SCORE_DECIMALS).alias("attrition_score"),
        F.col("attrition_reason_text_zh").alias("attrition_reasons_zh"),
        F.col("attrition_reason_text_en").alias("attrition_reasons_en")) \
        .orderBy(F.col("priority").desc(), F.col("due_date"), F.col("customer_id"))


def attrition_at(spark: SparkSession, settings: Settings, as_of: date) -> tuple[DataFrame | None, str | None]:
    """(``gold/attrition_risk`` rows of as_of, None), or (None, why there are none: the score
    step's own reason when it skipped the attrition model)."""
    summary = (export.score_metrics(spark, settings, as_of) or {}).get("attrition") or {}
    risk = _read(spark, settings, "gold", "attrition_risk")
    rows = risk.where(export.partition(as_of)) if risk is not None else None
    if rows is not None and rows.limit(1).count():
        return rows, None
    why = summary.get("skipped")
    return None, (f"no attrition model: {why}" if why else
                  f"gold/attrition_risk has no scores for {as_of} (the score step did not score attrition)")


def explain_attrition(features: DataFrame, champion, reasons: Reasons) -> DataFrame:
    """customer_id and :data:`REASON_COLUMNS` for the rows of ``features`` (customer_id and
    the champion's feature columns): each customer's own exact LightGBM contributions
    (``pred_contrib``) read by :func:`models.scoring.explain` (the rule of the
    recommendations' reasons) with ``reasons``' templates; in ``mapInArrow``."""
    spec_json, model_text = champion.spec.to_json(), champion.booster.model_to_string()
    names = list(champion.spec.columns)
    templates = {k: v.model_dump() for k, v in reasons.templates.items()}
    generic, k, floor = reasons.generic.model_dump(), reasons.per_recommendation, reasons.min_contribution
    schema = "customer_id string, " + ", ".join(f"{c} {t}" for c, t in zip(
        REASON_COLUMNS, ("array<string>", "string", "string")))

    def why(batches):
        import lightgbm as lgb
        import numpy as np
        import pyarrow as pa

        from models.frame import FeatureSpec, matrix
        from models.scoring import explain

        spec, booster = FeatureSpec.from_json(spec_json), lgb.Booster(model_str=model_text)
        for batch in batches:
            if batch.num_rows == 0:
                continue
            x = matrix(batch, spec)
            contrib = np.asarray(booster.predict(x, pred_contrib=True), dtype="float64")[:, :len(names)]
            out = [explain(names, contrib[i], x[i].tolist(), templates, generic, k, floor) for i in range(len(x))]
            yield pa.RecordBatch.from_arrays(
                [batch.column("customer_id"), pa.array([o[0] for o in out], pa.list_(pa.string())),
                 pa.array([o[1] for o in out], pa.string()), pa.array([o[2] for o in out], pa.string())],
                names=["customer_id", *REASON_COLUMNS])

    cols = ["customer_id"] + [c for c in names if c in features.columns and c != "customer_id"]
    return features.select(*cols).mapInArrow(why, schema)


def attrition_reasons(spark: SparkSession, settings: Settings, as_of: date, attrition: DataFrame
                      ) -> tuple[DataFrame | None, str]:
    """(the churn warning's reasons of the customers whose band at as_of is in
    ``attrition_bands``, how they were made), or (None, why there are none): no templates,
    no attrition champion, a champion other than the one that scored as_of, no profile."""
    from jobs.score import champion_or_none, model_names

    conf = settings.service_recovery
    if conf.attrition_reasons is None:
        return None, "no service_recovery.attrition_reasons in conf/kpis.yaml"
    name = model_names(settings)[1]
    champion, why = champion_or_none(settings, name)
    if champion is None:
        return None, f"no attrition champion to explain the scores: {why}"
    warned = attrition.where(F.col("risk_band").isin(*conf.attrition_bands))
    scored_by = {r["model_version"] for r in warned.select("model_version").distinct().collect()}  # one or two
    if scored_by - {str(champion.version)}:
        return None, (f"gold/attrition_risk of {as_of} was scored by version(s) {', '.join(sorted(scored_by))} of "
                      f"{name}, the champion is now version {champion.version}: re-run the score step")
    profile = _read(spark, settings, "gold", "customer_360")
    if profile is None:
        return None, "gold/customer_360 does not exist: the champion's features are unknown"
    features = warned.select("customer_id").join(profile.where(export.partition(as_of)), "customer_id", "inner")
    return explain_attrition(features, champion, conf.attrition_reasons), \
        f"exact contributions of {name} version {champion.version}, at most " \
        f"{conf.attrition_reasons.per_recommendation} per customer"


def run(spark: SparkSession, settings: Settings, as_of: date, run_id: str = "manual", progress=None) -> dict:
    conf, kconf = settings.service_recovery, settings.kpis
    step = (lambda stage, done: progress(stage, done, 3)) if progress else (lambda stage, done: None)
    at = AsOf(as_of, settings.bank.timezone)
    feedback = _read(spark, settings, "silver", "feedback")
    interactions = _read(spark, settings, "silver", "interactions")
    history = _complaint_history(spark, settings, at)
    status = complaint_status_at(history, at) if history is not None else None
    attrition, attrition_skipped = attrition_at(spark, settings, as_of)
    missing = [n for n, df in (("feedback", feedback), ("interactions", interactions), ("complaints", history),
                               ("attrition_risk", attrition)) if df is None]

    step("recovery list", 0)
    signals = recovery_signals(
        survey_answers(feedback, at, conf.window_days) if feedback is not None else None,
        service_contacts(interactions, at, conf.window_days) if interactions is not None else None,
        status, attrition, at, conf, kconf.service.wait_target_seconds, kconf.complaints.sla_days)
    path = lake.table_path(settings.lake, "gold", "service_recovery")
    reasons, reasons_note = (None, None) if attrition is None else attrition_reasons(spark, settings, as_of, attrition)
    if signals is None:
        rows = spark.createDataFrame([], RECOVERY_SCHEMA)
    else:
        rows = service_recovery(signals, attrition, as_of, conf)
        rows = rows.join(reasons, "customer_id", "left") if reasons is not None else \
            rows.select("*", *[F.lit(None).cast(f.dataType).alias(f.name) for f in RECOVERY_SCHEMA
                               if f.name in REASON_COLUMNS])
    lake.write_partition(rows, path, "as_of_date", export.partition(as_of), schema=RECOVERY_SCHEMA)
    gold = lake.read(spark, path).where(export.partition(as_of))
    by_reason = {r["reason"]: int(r["n"]) for r in
                 gold.select(F.explode("reason_codes").alias("reason")).groupBy("reason")
                 .agg(F.count(F.lit(1)).alias("n")).collect()}
    by_reason = {c: by_reason.get(c, 0) for c in sorted(conf.reasons)}

    step("recovery file", 1)
    churn = {"skipped": attrition_skipped} if attrition is None else {
        "model_version": gold.agg(F.max("attrition_model_version").alias("v")).first()["v"],
        "bands": list(conf.attrition_bands),
        ("reasons" if reasons is not None else "reasons_skipped"): reasons_note}
    written = write_service_file(spark, settings, as_of, run_id, gold, by_reason, churn)

    step("recovery outcomes", 2)
    outcomes = refresh_outcomes(spark, settings, as_of, feedback, interactions, status)
    # the service report (first written by the kpis step) again, now with the day's
    # recovery list and funnel and the outcomes the export step has just refreshed
    from c360.service_report import write_service_report

    report = write_service_report(spark, settings, as_of)
    step("recovery", 3)
    return {"report": str(report), "rows": written["rows"], "by_reason": by_reason, "attrition": churn, "sources_missing": missing,
            "path": written["path"], "previous_export": written["previous_export"], "changes": written["changes"],
            "files": written["files"], "outcomes": outcomes}


def write_service_file(spark: SparkSession, settings: Settings, as_of: date, run_id: str, gold: DataFrame,
                       by_reason: dict, churn: dict) -> dict:
    """The service folder of as_of (module docstring) from ``gold`` (the as_of rows of
    ``gold/service_recovery``), assembled in a staging folder and moved into place."""
    rows = file_rows(gold)
    export._check_no_pii(rows.columns)
    root = export.service_export_root(settings)
    remote, local_root, staging = export.staging_folder(root, as_of, run_id, "c360-service-")
    n = export.write_sorted(rows, SERVICE_SCHEMA, [export._CsvSink(staging / "service_contacts.csv", SERVICE_SCHEMA),
                                                   export._ParquetSink(staging / DATA_FILE, SERVICE_SCHEMA)])
    prev = export.previous_export(root, as_of, DATA_FILE)
    current_file = str(staging / DATA_FILE)
    if remote:  # where the engine reads it too
        current_file = storage.join(root, f".staging-{as_of.isoformat()}-{run_id}", DATA_FILE)
        storage.write_bytes(current_file, (staging / DATA_FILE).read_bytes())
    current = spark.read.parquet(current_file)
    previous = spark.read.parquet(storage.join(prev[1], DATA_FILE)) if prev else None
    counter = export._ChangeCounter()
    changed = export.write_sorted(recovery_changes(current, previous).orderBy("customer_id", "change"),
                                  CHANGES_SCHEMA, [export._CsvSink(staging / "changes.csv", CHANGES_SCHEMA), counter])
    manifest = {
        "as_of": as_of.isoformat(), "kind": "service_recovery",
        "purpose": "service contacts for the CRM service queue: not marketing, not filtered by marketing consent, "
                   "no offer",
        "schema_version": settings.service_recovery.schema_version,
        "previous_export": prev[0].isoformat() if prev else None,
        "by_reason": by_reason, "attrition": churn,
        "changes": {k: counter.counts.get(k, 0) for k in ("new", "changed", "withdrawn")},
        "columns": {"service_contacts": SERVICE_COLUMNS, "changes": CHANGES_SCHEMA.names},
        "files": {name: {"sha256": export.sha256(staging / name), "bytes": (staging / name).stat().st_size,
                         "rows": changed if name == "changes.csv" else n} for name in FILES},
    }
    (staging / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2, sort_keys=True) + "\n",
                                           encoding="utf-8")
    final = storage.join(root, as_of.isoformat()) if remote else root / as_of.isoformat()
    export._replace_dir(staging, final)
    if remote:
        storage.remove_tree(storage.parent(current_file))
        shutil.rmtree(local_root, ignore_errors=True)
    return {"path": str(final), "rows": n, "previous_export": manifest["previous_export"],
            "changes": manifest["changes"], "files": {k: v["sha256"] for k, v in manifest["files"].items()}}


def refresh_outcomes(spark: SparkSession, settings: Settings, as_of: date, feedback: DataFrame | None,
                     interactions: DataFrame | None, status: DataFrame | None) -> dict:
    """Rewrite ``gold/service_recovery_outcomes`` for the listing dates before as_of whose
    outcome window still reaches it (:func:`features.recovery.outcome_window_start`)."""
    conf = settings.service_recovery
    at = AsOf(as_of, settings.bank.timezone)
    first = outcome_window_start(as_of, conf)
    dates = f"as_of_date >= DATE'{first.isoformat()}' AND as_of_date < DATE'{as_of.isoformat()}'"
    listed = lake.read(spark, lake.table_path(settings.lake, "gold", "service_recovery")).where(dates)
    days = conf.outcome_days + 2  # the window of the oldest listing, with a day of slack either side
    risk = _read(spark, settings, "gold", "attrition_risk")
    out = recovery_outcomes(
        listed,
        survey_answers(feedback, at, days) if feedback is not None else None,
        service_contacts(interactions, at, days) if interactions is not None else None,
        status, risk.where(f"as_of_date > DATE'{first.isoformat()}'") if risk is not None else None, at, conf,
        settings.kpis.service.wait_target_seconds)
    path = lake.table_path(settings.lake, "gold", "service_recovery_outcomes")
    lake.write_partition(out, path, "as_of_date", dates, schema=OUTCOME_SCHEMA)
    agg = lake.read(spark, path).where(dates).agg(F.count(F.lit(1)).alias("rows"), F.sum("listed").alias("listed"),
                                                  F.sum("improved").alias("improved")).first()
    return {"rows": int(agg["rows"] or 0), "listed": int(agg["listed"] or 0), "improved": int(agg["improved"] or 0),
            "since": first.isoformat()}


__all__ = ["run", "file_rows", "attrition_at", "write_service_file", "refresh_outcomes", "RECOVERY_SCHEMA",
           "SERVICE_COLUMNS"]

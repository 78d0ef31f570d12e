"""Segments: ``gold/customer_360`` -> segments, personas, KPIs and migration for one as_of.

Writes, each partitioned by ``as_of_date`` (a run replaces only its own partition, so
re-running a date is idempotent and history stays comparable):

- ``gold/customer_segments``  customer_id, as_of_date, value_tier, lifecycle_stage,
  cluster_id, persona_id
- ``gold/personas``           one row per persona: names and descriptions (zh/en), size,
  share, distinguishing features and KPIs (JSON), centroid (for matching next time)
- ``gold/segment_kpis``       KPIs per segment of each dimension (NPS, CSAT and CES from
  ``silver/feedback``: :mod:`features.experience`)
- ``gold/segment_migration``  customers moving between segments since the previous
  as_of present in ``gold/customer_segments`` (nothing on the first run)
- ``ops/persona_model``       the clustering model of the run (features, scaling, k,
  silhouette per k) for audit
- ``<lake>/marketing/reports/<as_of>/segments.html``  the marketing report (aggregates only)
- ``<lake>/marketing/<table>``  the marketing zone's views (:func:`publish_marketing`):
  ``customer_segments`` (consenting customers only, labels and tags, no features),
  ``personas`` (cards without model internals), ``segment_kpis``, ``segment_migration``

Nothing here reads a restricted table: customer_360 and silver feedback carry no PII, and every output
holds ids, segment labels or aggregates only.
"""

from __future__ import annotations

import json
from datetime import date

import numpy as np
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from c360 import lake
from c360.settings import ConfigError, Settings
from features.experience import survey_answers
from features.personas import distinguishing, match_personas, persona_descriptions, persona_names
from features.segments import (ClusterModel, assign_clusters, fit, lifecycle_stage, segment_kpis,
                               segment_migration, training_sample, value_tier)
from features.profile import AsOf

SEGMENTS_SCHEMA = T.StructType([
    T.StructField("customer_id", T.StringType()),
    T.StructField("as_of_date", T.DateType()),
    T.StructField("value_tier", T.StringType()),
    T.StructField("lifecycle_stage", T.StringType()),
    T.StructField("cluster_id", T.IntegerType()),
    T.StructField("persona_id", T.StringType()),
])

PERSONAS_SCHEMA = T.StructType([
    T.StructField("persona_id", T.StringType()),
    T.StructField("persona_name_zh", T.StringType()),
    T.StructField("persona_name_en", T.StringType()),
    T.StructField("description_zh", T.StringType()),
    T.StructField("description_en", T.StringType()),
    T.StructField("cluster_id", T.IntegerType()),
    T.StructField("size", T.LongType()),
    T.StructField("share", T.DoubleType()),
    T.StructField("distinguishing_features", T.StringType()),  # JSON list
    T.StructField("kpis", T.StringType()),                     # JSON object (segment_kpis of the persona)
    T.StructField("centroid", T.ArrayType(T.DoubleType())),   # transformed, unscaled units
    T.StructField("centroid_features", T.ArrayType(T.StringType())),
    T.StructField("previous_persona_id", T.StringType()),      # matched persona of the previous as_of
    T.StructField("match_distance", T.DoubleType()),
    T.StructField("as_of_date", T.DateType()),
])

KPIS_SCHEMA = T.StructType([
    T.StructField("as_of_date", T.DateType()),
    T.StructField("dimension", T.StringType()),
    T.StructField("segment", T.StringType()),
    T.StructField("customers", T.LongType()),
    T.StructField("share", T.DoubleType()),
    T.StructField("aum_total", T.DoubleType()),
    T.StructField("aum_avg", T.DoubleType()),
    # experience KPIs (features.experience): null when over too few respondents
    T.StructField("nps", T.DoubleType()),              # -100..100 points
    T.StructField("nps_respondents", T.LongType()),
    T.StructField("nps_promoters", T.LongType()),
    T.StructField("nps_detractors", T.LongType()),
    T.StructField("nps_mean_score", T.DoubleType()),   # mean 0-10 answer: not an NPS
    T.StructField("csat", T.DoubleType()),             # % of CSAT answers of 4-5
    T.StructField("csat_responses", T.LongType()),
    T.StructField("csat_satisfied", T.LongType()),
    T.StructField("ces", T.DoubleType()),              # mean effort score 1-7
    T.StructField("ces_responses", T.LongType()),
    T.StructField("complaint_rate", T.DoubleType()),
    T.StructField("avg_wait_s", T.DoubleType()),
    T.StructField("churn_rate", T.DoubleType()),
    T.StructField("digital_share", T.DoubleType()),
])

MIGRATION_SCHEMA = T.StructType([
    T.StructField("from_as_of", T.DateType()),
    T.StructField("to_as_of", T.DateType()),
    T.StructField("dimension", T.StringType()),
    T.StructField("from_segment", T.StringType()),
    T.StructField("to_segment", T.StringType()),
    T.StructField("customers", T.LongType()),
    T.StructField("as_of_date", T.DateType()),  # = to_as_of (the partition)
])

MODEL_SCHEMA = T.StructType([
    T.StructField("as_of_date", T.DateType()),
    T.StructField("k", T.IntegerType()),
    T.StructField("criterion", T.StringType()),
    T.StructField("scores", T.StringType()),  # JSON {k: silhouette}
    T.StructField("features", T.ArrayType(T.StringType())),
    T.StructField("means", T.ArrayType(T.DoubleType())),
    T.StructField("stds", T.ArrayType(T.DoubleType())),
    T.StructField("sample_rows", T.LongType()),
    T.StructField("population", T.LongType()),
    T.StructField("model", T.StringType()),   # JSON of the whole ClusterModel
])

# The marketing zone (<lake>/marketing/<table>): what the marketing team and the CRM may see.
# Customer rows carry the bank's customer_id (the key the CRM acts on), segment labels and
# tags; never PII (names, national ids, phones, e-mails, birth dates), PII tokens, or the
# profile's raw features (income, balances, ages, complaints...). Only customers with
# marketing consent at as_of have a row; aggregates (personas, KPIs, migration) count all.
MARKETING_SEGMENTS_SCHEMA = T.StructType([
    T.StructField("customer_id", T.StringType()),
    T.StructField("as_of_date", T.DateType()),
    T.StructField("value_tier", T.StringType()),
    T.StructField("lifecycle_stage", T.StringType()),
    T.StructField("persona_id", T.StringType()),
    T.StructField("persona_name_zh", T.StringType()),
    T.StructField("persona_name_en", T.StringType()),
    T.StructField("tags", T.ArrayType(T.StringType())),
])
MARKETING_PERSONAS_SCHEMA = T.StructType([f for f in PERSONAS_SCHEMA.fields if f.name not in (
    "cluster_id", "centroid", "centroid_features", "match_distance")])  # model internals stay in gold
MARKETING_TABLES = {"customer_segments": MARKETING_SEGMENTS_SCHEMA, "personas": MARKETING_PERSONAS_SCHEMA,
                    "segment_kpis": KPIS_SCHEMA, "segment_migration": MIGRATION_SCHEMA}

TABLES = {"customer_segments": SEGMENTS_SCHEMA, "personas": PERSONAS_SCHEMA, "segment_kpis": KPIS_SCHEMA,
          "segment_migration": MIGRATION_SCHEMA}


def partition(as_of: date) -> str:
    return f"as_of_date = DATE'{as_of.isoformat()}'"


def path(settings: Settings, name: str) -> str:
    return lake.table_path(settings.lake, "ops" if name == "persona_model" else "gold", name)


def previous_as_of(spark: SparkSession, table: str, as_of: date) -> date | None:
    """The latest as_of_date before ``as_of`` in ``table``, or None."""
    if not lake.exists(table):
        return None
    return lake.read(spark, table).where(F.col("as_of_date") < F.lit(as_of.isoformat()).cast("date")) \
        .agg(F.max("as_of_date")).first()[0]


def publish_marketing(spark: SparkSession, settings: Settings, as_of: date) -> dict[str, int]:
    """Publish as_of's marketing views to ``<lake>/marketing/<table>`` (one partition per
    as_of_date, replaced on a re-run) from the gold tables just written; rows per table."""
    where = partition(as_of)
    gold = lambda n: lake.read(spark, lake.table_path(settings.lake, "gold", n)).where(where)  # noqa: E731
    consenting = gold("customer_360").where(F.col("marketing_consent") == F.lit(True)) \
        .select("customer_id", F.coalesce(F.col("tags"), F.array().cast("array<string>")).alias("tags"))
    names = gold("personas").select("persona_id", "persona_name_zh", "persona_name_en")
    views = {
        "customer_segments": gold("customer_segments").join(consenting, "customer_id", "inner")
        .join(names, "persona_id", "left"),
        "personas": gold("personas"),
        "segment_kpis": gold("segment_kpis"),
    }
    if lake.exists(path(settings, "segment_migration")):
        views["segment_migration"] = gold("segment_migration")
    counts = {}
    for name, df in views.items():
        schema = MARKETING_TABLES[name]
        dest = lake.table_path(settings.lake, "marketing", name)
        lake.write_partition(df.select(*schema.fieldNames()), dest, "as_of_date", where, schema=schema)
        counts[name] = lake.read(spark, dest).where(where).count()
    return counts


def check_lifecycle_rules(spark: SparkSession, conf: dict, schema: T.StructType) -> None:
    """Let the engine analyse every lifecycle rule on an empty profile: errors name the stage."""
    empty = spark.createDataFrame([], schema)
    for r in conf["lifecycle"]["rules"]:
        try:
            empty.selectExpr(f"CAST(({r['when']}) AS BOOLEAN) AS t").schema  # noqa: B018 (forces analysis)
        except Exception as exc:  # noqa: BLE001
            first = str(exc).strip().splitlines()[0][:200]
            raise ConfigError(f"conf/segments.yaml: lifecycle stage {r['stage']}: rule {r['when']!r} "
                              f"is not valid: {first}") from None


def _persona_column(ids: list[str]) -> F.Column:
    out = None
    for c, pid in enumerate(ids):
        cond = F.col("cluster_id") == F.lit(c)
        out = F.when(cond, F.lit(pid)) if out is None else out.when(cond, F.lit(pid))
    return out


def _clean(v):
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return None
    return v


def build_personas(model: ClusterModel, ids, kpis: dict[str, dict], conf: dict) -> list[dict]:
    """Persona rows (Python) from the model, the matches and the persona KPIs."""
    pconf = conf["personas"]
    raw = model.raw_centroids()
    feats = [distinguishing(np.asarray(model.centroids[c]), model.features, pconf["phrases"], pconf["top_features"],
                            pconf["min_abs_z"], raw[c], np.asarray(model.means)) for c in range(model.k)]
    names = persona_names(feats, [m.persona_id for m in ids], pconf)
    rows = []
    for c, m in enumerate(ids):
        k = {key: _clean(v) for key, v in kpis.get(m.persona_id, {}).items()
             if key not in ("as_of_date", "dimension", "segment")}
        size, share = int(k.get("customers") or 0), float(k.get("share") or 0.0)
        d_zh, d_en = persona_descriptions(feats[c], size, share, k)
        rows.append(dict(persona_id=m.persona_id, persona_name_zh=names[c][0], persona_name_en=names[c][1],
                         description_zh=d_zh, description_en=d_en, cluster_id=c, size=size, share=share,
                         distinguishing_features=json.dumps(feats[c], ensure_ascii=False),
                         kpis=json.dumps(k, ensure_ascii=False), centroid=[float(v) for v in raw[c]],
                         centroid_features=list(model.features), previous_persona_id=m.previous_id,
                         match_distance=m.distance))
    return rows


def run(spark: SparkSession, settings: Settings, as_of: date, progress=None) -> dict:
    if settings.segments is None:
        raise ConfigError("conf/segments.yaml: the segments block is missing")
    conf = settings.segments.as_dict()
    steps = 6

    def tick(stage: str, i: int) -> None:
        if progress:
            progress(f"segments {stage}", i, steps)

    tick("read", 0)
    c360_path = lake.table_path(settings.lake, "gold", "customer_360")
    if not lake.exists(c360_path):
        raise RuntimeError(f"gold/customer_360 does not exist under {settings.lake}: run the profile step")
    profile = lake.read(spark, c360_path).where(partition(as_of))
    check_lifecycle_rules(spark, conf, profile.schema)
    population = profile.count()
    if population == 0:
        raise RuntimeError(f"gold/customer_360 has no rows for as_of {as_of}: run the profile step for that date")

    tick("clusters", 1)
    sample = training_sample(profile, conf["clusters"], population)
    model = fit(sample, conf["clusters"])

    seg_path, per_path = path(settings, "customer_segments"), path(settings, "personas")
    prev_date = previous_as_of(spark, seg_path, as_of)
    prev_personas_date = previous_as_of(spark, per_path, as_of)
    previous_personas, used = [], set()
    if lake.exists(per_path):
        # point in time: only personas issued before as_of count (a re-run of as_of, or of
        # an earlier date, gives the same ids whatever was run after it)
        before = lake.read(spark, per_path).where(F.col("as_of_date") < F.lit(as_of.isoformat()).cast("date"))
        used = {r[0] for r in before.select("persona_id").distinct().collect()}
        if prev_personas_date is not None:
            previous_personas = [r.asDict() for r in before.where(partition(prev_personas_date))
                                 .select("persona_id", "centroid", "centroid_features").collect()]
    pconf = conf["personas"]
    ids = match_personas(model.raw_centroids(), model.features, model.means, model.stds, previous_personas,
                         used, pconf["id_prefix"], pconf["match_max_distance"])

    tick("assign", 2)
    segs = assign_clusters(profile.select(
        "customer_id", "as_of_date", *dict.fromkeys(f["name"] for f in conf["clusters"]["features"]),
        value_tier(conf["value_tier"]).alias("value_tier"),
        lifecycle_stage(conf["lifecycle"]["rules"], conf["lifecycle"]["default"]).alias("lifecycle_stage"),
    ), model).withColumn("persona_id", _persona_column([m.persona_id for m in ids]))
    lake.write_partition(segs.select(*SEGMENTS_SCHEMA.fieldNames()), seg_path, "as_of_date", partition(as_of),
                         schema=SEGMENTS_SCHEMA)
    current = lake.read(spark, seg_path).where(partition(as_of))
    previous = lake.read(spark, seg_path).where(partition(prev_date)) if prev_date is not None else None

    tick("kpis", 3)
    exp = settings.kpis.experience
    feedback_path = lake.table_path(settings.lake, "silver", "feedback")
    answers = survey_answers(lake.read(spark, feedback_path), AsOf(as_of, settings.bank.timezone), exp.window_days) \
        if lake.exists(feedback_path) else None
    kpi_df = segment_kpis(current, profile, previous, conf["lifecycle"]["churned_stage"], answers,
                          exp.min_respondents) \
        .withColumn("as_of_date", F.lit(as_of.isoformat()).cast("date"))
    kpi_path = path(settings, "segment_kpis")
    lake.write_partition(kpi_df.select(*KPIS_SCHEMA.fieldNames()), kpi_path, "as_of_date", partition(as_of),
                         schema=KPIS_SCHEMA)
    kpi_rows = [r.asDict() for r in lake.read(spark, kpi_path).where(partition(as_of)).collect()]

    tick("personas", 4)
    persona_kpis = {r["segment"]: r for r in kpi_rows if r["dimension"] == "persona"}
    rows = build_personas(model, ids, persona_kpis, conf)
    as_of_lit = F.lit(as_of.isoformat()).cast("date")
    personas_df = spark.createDataFrame([tuple(r[f] for f in PERSONAS_SCHEMA.fieldNames()[:-1]) for r in rows],
                                        T.StructType(PERSONAS_SCHEMA.fields[:-1])).withColumn("as_of_date", as_of_lit)
    lake.write_partition(personas_df, per_path, "as_of_date", partition(as_of), schema=PERSONAS_SCHEMA)
    model_df = spark.createDataFrame([(model.k, model.criterion, json.dumps({str(k): v for k, v in model.scores.items()}),
                                       model.features, model.means, model.stds, model.sample_rows, population,
                                       model.to_json())], T.StructType(MODEL_SCHEMA.fields[1:])) \
        .withColumn("as_of_date", as_of_lit)
    lake.write_partition(model_df.select(*MODEL_SCHEMA.fieldNames()), path(settings, "persona_model"), "as_of_date",
                         partition(as_of), schema=MODEL_SCHEMA)

    tick("migration", 5)
    mig_path = path(settings, "segment_migration")
    migration_rows = 0
    if previous is not None:
        mig = segment_migration(current, previous, prev_date, as_of).withColumn("as_of_date", as_of_lit)
        lake.write_partition(mig.select(*MIGRATION_SCHEMA.fieldNames()), mig_path, "as_of_date", partition(as_of),
                             schema=MIGRATION_SCHEMA)
        migration_rows = lake.read(spark, mig_path).where(partition(as_of)).count()
    elif lake.exists(mig_path):  # a re-run of a date that no longer has a predecessor: clear its partition
        lake.write_partition(spark.createDataFrame([], MIGRATION_SCHEMA), mig_path, "as_of_date", partition(as_of))

    marketing = publish_marketing(spark, settings, as_of)
    report = None
    if conf.get("report", True):
        from c360.report import write_segments_report

        report = str(write_segments_report(spark, settings, as_of))
    tick("done", 6)
    by_dim = lambda d: {r["segment"]: int(r["customers"]) for r in kpi_rows if r["dimension"] == d}  # noqa: E731
    return {
        "customers": population, "k": model.k, "criterion": model.criterion,
        "silhouette": round(model.scores.get(model.k, 0.0), 4),
        "silhouette_by_k": {str(k): round(v, 4) for k, v in model.scores.items()},
        "sample_rows": model.sample_rows,
        "personas": {m.persona_id: int(r["size"]) for m, r in zip(ids, rows)},
        "new_personas": [m.persona_id for m in ids if m.previous_id is None],
        "value_tier": by_dim("value_tier"), "lifecycle_stage": by_dim("lifecycle_stage"),
        "previous_as_of": prev_date.isoformat() if prev_date else None,
        "migration_rows": migration_rows, "report": report, "marketing": marketing,
    }


__all__ = ["run", "TABLES", "MARKETING_TABLES", "publish_marketing", "previous_as_of"]

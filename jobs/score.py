"""Score: ``gold/customer_360`` at as_of -> ``gold/recommendations`` (and ``gold/attrition_risk``).

Everything runs in the engine; only small counts come back to the driver:

1. candidates (:func:`features.candidates.candidates`: customer x active product not held)
   with the pair signals, the customer's offers in the contact window and recent declines;
2. eligibility and suitability (:mod:`models.scoring`) as column expressions: each
   candidate gets its first failing rule, counted by reason for the run summary;
3. eligible candidates scored by the ``champion`` booster in ``mapInArrow`` (the model
   travels as a string in the closure; :func:`models.frame.matrix` builds its input): the
   ``raw_score``;
4. rank per customer with a window, keep the top N (conf ``scoring.top_n``): by
   ``expected_value`` (the calibrated score, step 6, times the product's business weight,
   conf ``scoring.product_value``), ties by raw score, then product code. Without a
   calibration map, or when every product has the same weight, by raw score then product
   code (the same order, exactly, as expected value with equal weights);
5. reasons for the top-N rows: exact ``pred_contrib`` on a bounded sample of them gives
   each templated feature's effect per product; every row then gets its reason codes and
   zh/en text by lookup in ``mapInArrow`` (:mod:`models.scoring`), reading the templated
   features only;
6. ``score``: the probability of adopting the product within the training horizon, the
   champion's calibration map (isotonic breakpoints fitted on its out-of-time snapshot,
   :mod:`models.calibration`, verified with the champion by :mod:`models.registry`)
   applied to ``raw_score`` as a column expression. A champion registered without a map
   is not guessed at: ``score`` and ``expected_value`` are null, the reason is logged and
   in the run summary (``calibration``, ``ranking``), ``raw_score`` and the ranks are by
   raw score;
7. ``holdout``: the customer is in the control group (:func:`models.scoring.holdout`, conf
   ``scoring.holdout_share`` and ``holdout_salt``): the rows stay in gold, the export
   leaves them out (counted in the run summary, ``holdout``).

Candidates are narrow (keys, pair features, the few profile columns the rules read); the
model's other features are joined from the profile where they are scored.

Both tables are partitioned by ``as_of_date``; a run replaces only its own partition.
"""

from __future__ import annotations

import logging
from datetime import date

import numpy as np
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.window import Window

from c360 import lake
from c360.settings import ConfigError, Scoring, Settings
from features.candidates import (account_history, candidates, held_products, history_features, pair_inputs,
                                 product_signals, products, with_profile)
from features.profile import AsOf
from jobs import silver
from models import scoring as rules
from models.calibration import calibrated
from models.frame import FeatureSpec, matrix
from models.training import customer_bucket, score_in_engine, scratch

KEYS = ["customer_id", "product_code"]

RECOMMENDATIONS_SCHEMA = T.StructType([
    T.StructField("customer_id", T.StringType()),
    T.StructField("as_of_date", T.DateType()),
    T.StructField("rank", T.IntegerType()),
    T.StructField("product_code", T.StringType()),
    T.StructField("score", T.DoubleType()),      # calibrated adoption probability; null: no calibration
    T.StructField("raw_score", T.DoubleType()),  # the model's own score (ranks follow it)
    T.StructField("reason_codes", T.ArrayType(T.StringType())),
    T.StructField("reason_text_zh", T.StringType()),
    T.StructField("reason_text_en", T.StringType()),
    T.StructField("model_version", T.StringType()),
    # calibrated score x the product's value (conf scoring.product_value); null when score is
    # null. Added after the first release: older partitions read it as null.
    T.StructField("expected_value", T.DoubleType()),
    # the customer is in the control group (conf scoring.holdout_share): kept here, never
    # exported. Added after expected_value: older partitions read it as null (not held out).
    T.StructField("holdout", T.BooleanType()),
])
ATTRITION_SCHEMA = T.StructType([
    T.StructField("customer_id", T.StringType()),
    T.StructField("as_of_date", T.DateType()),
    T.StructField("risk_score", T.DoubleType()),
    T.StructField("risk_band", T.StringType()),
    T.StructField("model_version", T.StringType()),
])


log = logging.getLogger(__name__)


def partition(as_of: date) -> str:
    return f"as_of_date = DATE'{as_of.isoformat()}'"


# ---------------------------------------------------------------------------------------
# champion models (models.registry, written by the training step)

def model_names(settings: Settings) -> tuple[str, str]:
    """(next-best-product, attrition) registered model names: conf/scoring.yaml's
    ``model`` when set, else conf/models.yaml's ``registered_model``, else the defaults."""
    conf, models = settings.scoring, getattr(settings, "models", None)
    nbp = (conf.model if conf else None) or \
        (models.next_best_product.registered_model if models else None) or "next_best_product"
    attrition = (conf.attrition.model if conf else None) or \
        (models.attrition.registered_model if models else None) or "attrition_risk"
    return nbp, attrition


def champion_or_none(settings: Settings, name: str):
    """(champion, None), or (None, why) when registered model ``name`` has no usable champion:
    none yet, or one :func:`models.registry.load_champion` refuses (not a LightGBM text model,
    or not the model text whose hash was recorded at registration)."""
    from models.registry import NoChampionError, load_champion

    try:
        return load_champion(settings, name), None
    except NoChampionError as exc:
        return None, str(exc).splitlines()[0][:300]


# ---------------------------------------------------------------------------------------
# inputs

def _table(spark: SparkSession, settings: Settings, layer: str, name: str) -> DataFrame | None:
    path = lake.table_path(settings.lake, layer, name)
    return lake.read(spark, path) if lake.exists(path) else None


def profile_at(spark: SparkSession, settings: Settings, as_of: date) -> DataFrame:
    c360 = _table(spark, settings, "gold", "customer_360")
    if c360 is None:
        raise RuntimeError(f"gold/customer_360 does not exist under {settings.lake}: run the profile step")
    return c360.where(partition(as_of))


def contact_pressure(responses: DataFrame, at: AsOf, days: int) -> DataFrame:
    """(customer_id, offers sent in the last ``days`` days before the end of as_of)."""
    return responses.where(at.in_window(F.col("sent_at"), days)).groupBy("customer_id") \
        .agg(F.count_distinct("offer_id").alias(rules.OFFERS_COL))


def recent_declines(responses: DataFrame, at: AsOf, days: int) -> DataFrame:
    """(customer_id, product_code) declined within ``days`` days before the end of as_of."""
    when = F.coalesce(F.col("outcome_at"), F.col("sent_at"))
    return responses.where((F.col("outcome") == "declined") & at.in_window(when, days)) \
        .select(*KEYS).distinct().withColumn(rules.DECLINED_COL, F.lit(True))


def annotated_candidates(profile: DataFrame, catalog: DataFrame, holdings: DataFrame | None,
                         events: DataFrame | None, responses: DataFrame | None, at: AsOf,
                         conf: Scoring, latest: DataFrame | None = None,
                         ownership: list[str] | None = None) -> tuple[DataFrame, DataFrame]:
    """(candidates with ``exclusion_reason`` and one ``_fails_<rule>`` flag per rule, held pairs).

    The candidates are narrow: keys, :func:`features.candidates.pair_inputs` columns, the
    ownership vector over ``ownership`` (the champion's ``FeatureSpec.ownership``), product
    columns and pair features; the model's other customer features are joined in
    :func:`recommendations`. ``latest``: ``silver/holdings_latest`` when valid at as_of
    (:func:`jobs.silver.holdings_latest`), read instead of every snapshot."""
    spark = profile.sparkSession
    held = held_products(holdings, at, latest) if holdings is not None else \
        spark.createDataFrame([], "customer_id string, product_code string")
    history = history_features(profile, holdings, at, ownership or [], accounts=account_history(holdings, at, latest)) \
        if holdings is not None else None
    inputs, signals = pair_inputs(profile), product_signals(events, responses, at)
    # the KYC gate's input (not a pair input of training: models.nbp builds its own)
    if "kyc_status" not in profile.columns:
        raise RuntimeError("gold/customer_360 has no kyc_status column: re-run the profile step for this as_of "
                           "(the KYC gate needs it; a customer without a status gets no offer)")
    inputs = profile.select(*dict.fromkeys([*inputs.columns, "kyc_status"]))
    if responses is not None:
        # per customer before the pairs are made; per pair with the other pair signals, so
        # the pairs see a single join (features.candidates.candidates)
        e = conf.eligibility
        inputs = inputs.join(contact_pressure(responses, at, e.contact_window_days), "customer_id", "left")
        declines = recent_declines(responses, at, e.decline_cooldown_days)
        signals = declines if signals is None else signals.join(declines, KEYS, "full")
    pairs = candidates(inputs, catalog, held, signals, history)
    if responses is None:
        pairs = pairs.withColumn(rules.OFFERS_COL, F.lit(0).cast("bigint")) \
            .withColumn(rules.DECLINED_COL, F.lit(False))
    fails = rules.rule_failures(conf.eligibility.max_offers_per_window,
                                rules.risk_number(conf.suitability.unassessed_max_risk),
                                conf.eligibility.kyc_valid_statuses)
    pairs = pairs.select("*", *[c.alias(f"_fails_{r}") for r, c in fails.items()])
    return pairs.withColumn("exclusion_reason", rules.exclusion_reason(
        {r: F.col(f"_fails_{r}") for r in fails})), held


def exclusion_counts(annotated: DataFrame, profile: DataFrame, catalog: DataFrame, held: DataFrame) -> dict:
    """Candidates, eligible ones and exclusions: ``excluded_by_reason`` counts each excluded
    pair once, under its first failing rule (:data:`models.scoring.EXCLUSION_ORDER`);
    ``failing_by_rule`` counts each rule every pair fails (a pair can be in several)."""
    rows = annotated.groupBy("exclusion_reason").agg(
        F.count(F.lit(1)).alias("n"),
        *[F.sum(F.col(f"_fails_{r}").cast("bigint")).alias(r) for r in rules.CANDIDATE_RULES]).collect()
    first = {r["exclusion_reason"]: int(r["n"]) for r in rows}
    each = {rule: sum(int(r[rule] or 0) for r in rows) for rule in rules.CANDIDATE_RULES}
    # the pairs before the candidates (customer x catalogue product), counted without making
    # them: every customer with each inactive product; the held pairs of active products
    prods = products(catalog)
    customers = profile.select("customer_id").distinct()
    n_customers = customers.count()
    n_inactive = prods.where(~F.col("active")).select("product_code").distinct().count()
    held_active = held.join(prods.where(F.col("active")).select("product_code").distinct(), "product_code") \
        .join(customers, "customer_id", "left_semi").count()  # held: distinct pairs (held_products)
    by_reason = {"inactive_product": n_customers * n_inactive, "already_held": held_active}
    by_reason.update({r: first.get(r, 0) for r in rules.CANDIDATE_RULES})
    each = {"inactive_product": by_reason["inactive_product"], "already_held": by_reason["already_held"], **each}
    return {"customers": n_customers, "candidates": sum(first.values()),
            "eligible": first.get(None, 0), "excluded_by_reason": by_reason, "failing_by_rule": each,
            "exclusion_counting": "first failing rule in order " + ", ".join(rules.EXCLUSION_ORDER)}


# ---------------------------------------------------------------------------------------
# model application in the engine

def _feature_columns(df: DataFrame, spec) -> list[str]:
    return [c for c in spec.columns if c in df.columns and c not in KEYS]


def predict(df: DataFrame, champion, keys: list[str], out: str = "score", prediction=None) -> DataFrame:
    """``keys`` + ``out`` (the champion's prediction) for every row of ``df``, in the engine
    (:func:`models.training.score_in_engine`; ``prediction``: ``settings.models.prediction``,
    compiled or LightGBM)."""
    return score_in_engine(df, {out: (champion.booster.model_to_string(), champion.spec)}, keys, prediction)


def rank_top(scored: DataFrame, top_n: int, score: str | list[str] = "score") -> DataFrame:
    """``rank`` per customer (``score`` desc; a list: each desc in turn; ties by product
    code), the first ``top_n``."""
    scores = [score] if isinstance(score, str) else list(score)
    w = Window.partitionBy("customer_id").orderBy(*[F.col(c).desc() for c in scores], F.col("product_code"))
    return scored.withColumn("rank", F.row_number().over(w).cast("int")).where(F.col("rank") <= top_n)


def reason_features(champion, reasons: dict) -> tuple[list[str], list[str]]:
    """(templated features of the champion, in its column order; each one's ``requires``)."""
    tcols = rules.templated(list(champion.spec.columns), reasons["templates"])
    return [name for _, name, _ in tcols], [reasons["templates"][key].get("requires", "any") for _, _, key in tcols]


def _reason_spec(spec: FeatureSpec, features: list[str]) -> FeatureSpec:
    """The part of ``spec`` holding ``features`` (its matrix columns are ``features``, in order)."""
    sub = FeatureSpec(numeric=[f for f in spec.numeric if f in features],
                      categorical={f: c for f, c in spec.categorical.items() if f in features})
    assert sub.columns == features, "templated features follow the spec's column order"
    return sub


def sample_rate(rows: int, sample_rows: int) -> int:
    """Customer hash buckets (per mille, :func:`models.training.customer_bucket`) that hold
    about ``sample_rows`` of ``rows`` ranked rows: rounded up, then limited by the caller."""
    return max(1, min(1000, -(-1000 * sample_rows // max(rows, 1))))


def reason_effects_of(sample: DataFrame, champion, reasons: dict) -> dict:
    """Effects per product of the templated features (:func:`models.scoring.reason_effects`)
    from ``sample``: ranked rows with every model feature, already cut to whole customer
    hash buckets (:func:`sample_rate`); at most ``sample_rows`` of them, in key order, come
    to the driver, the only rows whose exact ``pred_contrib`` is computed."""
    spec = champion.spec
    features, requires = reason_features(champion, reasons)
    if not features:
        return {"*": np.zeros(0)}
    rows = sample.select(*dict.fromkeys(KEYS + _feature_columns(sample, spec))) \
        .orderBy(*KEYS).limit(reasons["sample_rows"]).toArrow()
    if rows.num_rows == 0:
        return {"*": np.full(len(features), np.nan)}
    values = matrix(rows, spec)
    contrib = np.asarray(champion.booster.predict(values, pred_contrib=True), dtype="float64")
    index = [spec.columns.index(f) for f in features]
    sub = _reason_spec(spec, features)
    return rules.reason_effects(rows.column("product_code").to_pylist(), contrib[:, index],
                                rules.holds_matrix(values[:, index], requires, [f in sub.categorical for f in features]))


def explain_top(top: DataFrame, champion, reasons: dict, effects: dict) -> DataFrame:
    """Reason codes and zh/en text for the top-N rows (:func:`models.scoring.explain_rows`
    in ``mapInArrow``, ``effects`` from :func:`reason_effects_of`).

    ``top``: customer_id, product_code, rank, raw_score and the templated feature columns
    (:func:`reason_features`).
    """
    features, requires = reason_features(champion, reasons)
    sub = _reason_spec(champion.spec, features)
    categorical = [f in sub.categorical for f in features]
    sub_json = sub.to_json()
    schema = ("customer_id string, product_code string, rank int, raw_score double, reason_codes array<string>, "
              "reason_text_zh string, reason_text_en string")
    templates, generic = reasons["templates"], reasons["generic"]
    k, floor = reasons["per_recommendation"], reasons["min_contribution"]

    def why(batches):
        import pyarrow as pa

        from models.frame import FeatureSpec as _Spec
        from models.frame import matrix as _matrix
        from models.scoring import explain_rows, holds_matrix

        spec = _Spec.from_json(sub_json)
        for batch in batches:
            if batch.num_rows == 0:
                continue
            held = holds_matrix(_matrix(batch, spec), requires, categorical)
            out = explain_rows(batch.column("product_code").to_pylist(), held, effects, features, templates,
                               generic, k, floor)
            yield pa.RecordBatch.from_arrays(
                [batch.column("customer_id"), batch.column("product_code"), batch.column("rank").cast(pa.int32()),
                 batch.column("raw_score").cast(pa.float64()), pa.array([o[0] for o in out], pa.list_(pa.string())),
                 pa.array([o[1] for o in out], pa.string()), pa.array([o[2] for o in out], pa.string())],
                names=["customer_id", "product_code", "rank", "raw_score", "reason_codes", "reason_text_zh",
                       "reason_text_en"])

    cols = ["customer_id", "product_code", "rank", "raw_score"] + [f for f in features if f in top.columns]
    return top.select(*dict.fromkeys(cols)).mapInArrow(why, schema)


def reasons_conf(conf: Scoring) -> dict:
    r = conf.reasons
    return {"templates": {k: v.model_dump() for k, v in r.templates.items()}, "generic": r.generic.model_dump(),
            "per_recommendation": r.per_recommendation, "min_contribution": r.min_contribution,
            "sample_rows": r.sample_rows}


def recommendations(annotated: DataFrame, profile: DataFrame, champion, conf: Scoring, as_of: date,
                    sc=None, prediction=None) -> DataFrame:
    """The ``gold/recommendations`` rows of as_of (not written): the eligible candidates of
    ``annotated`` with the model's features from ``profile``, scored (``raw_score``), ranked
    by it, the top ``conf.top_n`` explained, ``score`` calibrated (:func:`adoption_probability`).
    With ``sc`` (a scratch space) the ranked rows are
    materialised once there (counted, sampled and explained). ``prediction``: see
    :func:`predict`."""
    eligible = annotated.where(F.col("exclusion_reason").isNull())
    spec_columns = list(champion.spec.columns)
    raw = predict(with_profile(eligible, profile, ["customer_id"], spec_columns), champion, KEYS, "raw_score",
                  prediction)
    if value_ranked(champion, conf):
        top = rank_top(raw.withColumn("_expected_value", expected_value_of(F.col("raw_score"), champion, conf)),
                       conf.top_n, ["_expected_value", "raw_score"]).drop("_expected_value")
    else:
        top = rank_top(raw, conf.top_n, "raw_score")
    if sc is not None:
        top = sc.write(top, "top")
    reasons = reasons_conf(conf)

    def with_features(rows: DataFrame, columns: list[str]) -> DataFrame:
        # features again for the top rows only (a few per customer), not for every candidate
        pair = [c for c in columns if c in eligible.columns and c not in KEYS]
        return with_profile(rows.join(eligible.select(*KEYS, *pair), KEYS, "inner"), profile, ["customer_id"], columns)

    # every feature for the sample whose exact contributions give the effects (customer
    # buckets cut before the joins); the templated ones for every row
    n = top.count()
    rate = sample_rate(n, reasons["sample_rows"])
    effects = reason_effects_of(with_features(top.where(customer_bucket() < rate), spec_columns), champion, reasons)
    log.info("reason effects from the recommendations of customer buckets < %d/1000 (%d recommendations)", rate, n)
    explained = explain_top(with_features(top, reason_features(champion, reasons)[0]), champion, reasons, effects)
    return explained.select(
        "customer_id", F.lit(as_of.isoformat()).cast("date").alias("as_of_date"), "rank", "product_code",
        adoption_probability(F.col("raw_score"), champion).alias("score"), "raw_score", "reason_codes",
        "reason_text_zh", "reason_text_en", F.lit(str(champion.version)).alias("model_version"),
        expected_value_of(F.col("raw_score"), champion, conf).alias("expected_value"),
        rules.holdout(F.col("customer_id"), conf.holdout_share, conf.holdout_salt).alias("holdout"))


def expected_value_of(raw_score: Column, champion, conf: Scoring) -> Column:
    """The calibrated score of ``raw_score`` times the product's value (conf
    ``scoring.product_value``, :func:`models.scoring.product_value`); null without calibration."""
    pv = conf.product_value
    return rules.expected_value(adoption_probability(raw_score, champion),
                                rules.product_value(F.col("product_code"), pv.by_product, pv.default))


def value_ranked(champion, conf: Scoring) -> bool:
    """Offers are ranked by expected value: the champion has a calibration map and the
    products' values differ (with equal values the order is the raw score's, exactly: the
    map is monotone, and ties of the map are broken by raw score)."""
    return getattr(champion, "calibration", None) is not None and not conf.product_value.uniform


def ranking_note(champion, conf: Scoring, catalog_codes: set[str]) -> tuple[str, list[str]]:
    """(how the offers were ranked, in words; the product_value codes not in the catalogue)."""
    unknown = sorted(set(conf.product_value.by_product) - catalog_codes)
    pv = conf.product_value
    if getattr(champion, "calibration", None) is None:
        note = ("raw_score: the champion has no calibration, so expected_value is null and "
                "scoring.product_value is not applied")
    elif pv.uniform:
        note = (f"expected_value = score x product_value; every product has the same value ({pv.default:g}), "
                "so the order is the raw score's")
    else:
        note = (f"expected_value = score x product_value (default {pv.default:g}, {len(pv.by_product)} products "
                "weighted), ties by raw_score, then product_code")
    return note, unknown


def adoption_probability(raw_score: Column, champion) -> Column:
    """The calibrated probability of adoption within the horizon for ``raw_score``: the
    champion's calibration map (:func:`models.calibration.calibrated`), or null when it has
    none (registered before calibration: no map is guessed)."""
    cal = getattr(champion, "calibration", None)
    return calibrated(raw_score, cal) if cal is not None else F.lit(None).cast("double")


def attrition(profile: DataFrame, champion, conf: Scoring, as_of: date, prediction=None) -> DataFrame:
    """The ``gold/attrition_risk`` rows of as_of (not written)."""
    bands = conf.attrition.bands
    scored = predict(profile, champion, ["customer_id"], "risk_score", prediction)
    return scored.select("customer_id", F.lit(as_of.isoformat()).cast("date").alias("as_of_date"), "risk_score",
                         rules.risk_band(F.col("risk_score"), bands.medium, bands.high).alias("risk_band"),
                         F.lit(str(champion.version)).alias("model_version"))


# ---------------------------------------------------------------------------------------
# the step

def run(spark: SparkSession, settings: Settings, as_of: date, progress=None) -> dict:
    conf = settings.scoring
    if conf is None:
        raise ConfigError("conf/scoring.yaml: the scoring block is missing")
    step = (lambda stage, done: progress(stage, done, 4)) if progress else (lambda stage, done: None)
    at = AsOf(as_of, settings.bank.timezone)
    profile = profile_at(spark, settings, as_of)
    catalog = _table(spark, settings, "silver", "product_catalog")
    if catalog is None:
        raise RuntimeError(f"silver/product_catalog does not exist under {settings.lake}: run the silver step")
    nbp_name, attrition_name = model_names(settings)
    champion, why = champion_or_none(settings, nbp_name)
    if champion is None:
        # A new installation recommends nothing until the first model is promoted (nor with a
        # refused champion: the reason says why); the daily run still builds profiles and
        # segments, and the attrition champion, if there is one, is still applied.
        # Recorded in the run log, not an error.
        log.warning("score skipped: %s", why)
        return {"skipped": f"{why} (train a model: `c360 run --steps train` or the c360_train DAG)",
                "attrition": _score_attrition(spark, settings, profile, conf, attrition_name, as_of)}
    if champion.calibration is None:
        calibration = (f"none: {champion.calibration_missing}; score is null, raw_score and ranks as usual "
                       "(retrain to get calibrated scores)")
        log.warning("recommendations of %s are not calibrated: %s", as_of, calibration)
    else:
        calibration = (f"isotonic map of model {nbp_name} version {champion.version} "
                       f"({len(champion.calibration.x)} breakpoints, fitted on the OOT snapshot "
                       f"{champion.calibration.fitted_on.get('oot_snapshot', '?')})")

    codes = {r["product_code"] for r in catalog.select("product_code").distinct().collect()}  # a catalogue: small
    ranking, unknown_codes = ranking_note(champion, conf, codes)
    if unknown_codes:
        log.warning("conf/scoring.yaml scoring.product_value.by_product: %d product code(s) not in the catalogue, "
                    "ignored: %s", len(unknown_codes), ", ".join(unknown_codes))

    step("score candidates", 0)
    recs_path = lake.table_path(settings.lake, "gold", "recommendations")
    with scratch(spark, settings) as sc:
        annotated, held = annotated_candidates(
            profile, catalog, _table(spark, settings, "silver", "holdings"),
            _table(spark, settings, "silver", "events"), _table(spark, settings, "silver", "campaign_responses"),
            at, conf, silver.holdings_latest(spark, settings, as_of), champion.spec.ownership)
        # read three times below (counts, scoring, reasons): computed once
        annotated = sc.write(annotated, "annotated_candidates")
        counts = exclusion_counts(annotated, profile, catalog, held)

        step("score rank and explain", 1)
        lake.write_partition(recommendations(annotated, profile, champion, conf, as_of, sc,
                                             settings.models.prediction), recs_path,
                             "as_of_date", partition(as_of), schema=RECOMMENDATIONS_SCHEMA)
    written = lake.read(spark, recs_path).where(partition(as_of))
    summary = written.agg(F.count(F.lit(1)).alias("n"), F.count_distinct("customer_id").alias("customers"),
                          F.sum(F.when(F.size("reason_codes") == 0, 1).otherwise(0)).alias("generic"),
                          F.count_distinct(F.when(F.col("holdout"), F.col("customer_id"))).alias("held"),
                          F.sum(F.col("holdout").cast("bigint")).alias("held_rows")).first()
    by_product = {r["product_code"]: int(r["count"]) for r in written.groupBy("product_code").count().collect()}

    step("score attrition", 2)
    attrition_metrics = _score_attrition(spark, settings, profile, conf, attrition_name, as_of)
    step("score", 4)
    return {
        "model": nbp_name, "model_version": str(champion.version), "model_kind": champion.kind,
        "top_n": conf.top_n, "calibration": calibration, "ranking": ranking,
        "product_value_unknown_codes": unknown_codes, **counts,
        "recommendations": int(summary["n"] or 0),
        "customers_with_recommendation": int(summary["customers"] or 0),
        "customers_without_recommendation": counts["customers"] - int(summary["customers"] or 0),
        "recommendations_with_generic_reason": int(summary["generic"] or 0),
        "recommendations_by_product": dict(sorted(by_product.items())),
        "holdout": {"share": conf.holdout_share, "salt": conf.holdout_salt, "customers": int(summary["held"] or 0),
                    "recommendations": int(summary["held_rows"] or 0)},
        "attrition": attrition_metrics,
    }


def _score_attrition(spark: SparkSession, settings: Settings, profile: DataFrame, conf: Scoring, name: str,
                     as_of: date) -> dict:
    champion, why = champion_or_none(settings, name)
    if champion is None:
        return {"model": name, "skipped": why}
    path = lake.table_path(settings.lake, "gold", "attrition_risk")
    lake.write_partition(attrition(profile, champion, conf, as_of, settings.models.prediction), path, "as_of_date",
                         partition(as_of), schema=ATTRITION_SCHEMA)
    bands = {r["risk_band"]: int(r["count"]) for r in
             lake.read(spark, path).where(partition(as_of)).groupBy("risk_band").count().collect()}
    return {"model": name, "model_version": str(champion.version), "customers": sum(bands.values()),
            "by_band": {b: bands.get(b, 0) for b in ("low", "medium", "high")}}


__all__ = ["run", "annotated_candidates", "exclusion_counts", "recommendations", "attrition", "model_names",
           "champion_or_none", "RECOMMENDATIONS_SCHEMA", "ATTRITION_SCHEMA"]

"""Next-best-product model: training data, LightGBM ranker vs pooled binary, OOT evaluation.

Training data (no leakage): for each month-end snapshot ``s`` of
:func:`features.candidates.month_end_snapshots`, the candidates are the active catalogue
products a customer does not hold at ``s`` with the customer 360 features as of ``s``
(:func:`models.training.snapshot_profile`) and the pair features cut at ``s``
(:func:`features.candidates.product_signals`); the label is an opening of that product
in ``(s, s + horizon]`` (:func:`features.candidates.adoptions`). The latest snapshot is the
out-of-time (OOT) evaluation set, the earlier ones the training set.

Two LightGBM models are fitted on a bounded sample of the training snapshots:
``ranker`` (``LGBMRanker``, lambdarank, one query per customer within a snapshot; only
queries with an adoption, the others carry no gradient) and ``binary`` (pooled
``LGBMClassifier`` over every candidate, ``product_code`` categorical, down-sampled
negatives weighted back). Both are scored in the engine on every candidate of the OOT
snapshot's customers, at most ``oot_max_customers`` of them (whole customer hash buckets,
:func:`oot_customer_rate`); the one with the higher OOT ``map_at_7`` is logged and
registered, and the registry gate decides whether it becomes ``champion``. MAP@3 (the
short list of the CRM export) is reported beside it.

The winner's raw score is then calibrated on the same OOT rows (:func:`calibrate`,
:mod:`models.calibration`): the isotonic map to the probability of an adoption within the
horizon is logged as ``calibration.json`` with the version (its hash checked with the
champion, :mod:`models.registry`), with the expected calibration error of the calibrated
scores and a reliability chart.

Only narrow candidate pairs are materialised (:func:`snapshot_candidates`); the customer
360 columns are joined to the training sample and to the OOT rows being scored.
"""

from __future__ import annotations

import logging
import time
from datetime import date
from pathlib import Path

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from c360 import csvsafe, lake
from c360.settings import Settings
from features.candidates import (account_history, adoptions, candidates, held_pairs, history_features,
                                 history_start, label, month_end_snapshots, ownership_codes, pair_inputs,
                                 product_signals, with_profile)
from features.profile import AsOf
from models import registry, training
from models.calibration import ARTIFACT as CALIBRATION_ARTIFACT
from models.calibration import Calibration, calibrated, fit_points, score_points
from models.frame import FeatureSpec, prepare
from models.metrics import (K, auc_by_group, calibration, coverage, popularity_scores, ranked, ranking_metrics,
                            reliability_chart)

log = logging.getLogger(__name__)

GROUP = ["snapshot_date", "customer_id"]
SCORE_KEEP = ["customer_id", "product_code", "label"]
EXPERIMENT_TAGS = {"project": "c360", "task": "next_best_product"}


# ---------------------------------------------------------------------------- data

def snapshot_candidates(profile: DataFrame, tables: dict, snapshot: date, horizon_days: int,
                        bank_timezone: str, ownership: list[str] | None = None,
                        accounts: DataFrame | None = None) -> DataFrame:
    """Labelled candidates of one snapshot, narrow: keys, ``snapshot_date``, the
    :func:`features.candidates.pair_inputs` columns, the ownership vector over
    ``ownership`` (product codes; default: the catalogue's), product columns, pair features
    and ``label``. Features are cut at ``snapshot``, the label is an opening in
    ``(snapshot, snapshot + horizon_days]``; the other customer 360 columns are joined later
    (:func:`snapshot_features`, :func:`features.candidates.with_profile`). ``accounts``:
    :func:`features.candidates.account_history` at ``snapshot`` already materialised (held
    pairs, lags, ownership and peers all read it), else computed here."""
    at = AsOf(snapshot, bank_timezone)
    holdings, catalog = tables["holdings"], tables["product_catalog"]
    if accounts is None:
        accounts = account_history(holdings, at)
    history = history_features(profile, holdings, at, ownership_codes(catalog) if ownership is None else ownership,
                               accounts=accounts)
    held = held_pairs(accounts)
    signals = product_signals(tables.get("events"), tables.get("campaign_responses"), at)
    cands = candidates(pair_inputs(profile), catalog, held, signals, history)
    out = label(cands, adoptions(holdings, snapshot, horizon_days))
    return out.drop(*[c for c in ("as_of_date", "product_name") if c in out.columns]) \
        .withColumn("snapshot_date", F.lit(snapshot.isoformat()).cast("date"))


def snapshot_features(spark: SparkSession, settings: Settings, snapshots: list[date]) -> DataFrame:
    """Customer 360 features of the ``snapshots`` (their ``gold/customer_360`` partitions),
    one row per (``snapshot_date``, ``customer_id``), without ``tags``."""
    c360 = lake.read(spark, lake.table_path(settings.lake, "gold", "customer_360")) \
        .where(F.col("as_of_date").isin(*[d.isoformat() for d in snapshots]))
    return c360.drop(*[c for c in ("tags",) if c in c360.columns]).withColumnRenamed("as_of_date", "snapshot_date")


def build_training_table(spark: SparkSession, settings: Settings, tables: dict, snapshots: list[date],
                         horizon_days: int, sc: training.Scratch, progress=None,
                         ownership: list[str] | None = None) -> tuple[DataFrame, list[str]]:
    """Every labelled candidate of every snapshot (narrow, see :func:`snapshot_candidates`;
    ``ownership``: the ownership vector's product codes), materialised as a scratch table; a
    missing ``gold/customer_360`` partition of a snapshot is computed first. Returns (table,
    snapshot dates whose profile was computed now)."""
    built = []
    for i, s in enumerate(snapshots):
        training.step(progress, f"train nbp snapshot {s}", i, len(snapshots))
        profile, new = training.snapshot_profile(spark, settings, s)
        if new:
            built.append(s.isoformat())
        # each account's state at s, read four times (held, lags, ownership, peers): written once
        accounts = sc.write(account_history(tables["holdings"], AsOf(s, settings.bank.timezone)), "nbp_accounts")
        sc.write(snapshot_candidates(profile, tables, s, horizon_days, settings.bank.timezone, ownership, accounts),
                 "nbp_candidates", append=i > 0)
    return sc.read("nbp_candidates"), built


def oot_customer_rate(oot_pairs: DataFrame, max_customers: int) -> tuple[int, int]:
    """(customer rate per mille, customers) of the OOT evaluation: whole customer hash
    buckets, the largest rate with at most ``max_customers`` customers (one small query)."""
    rows = oot_pairs.groupBy(training.customer_bucket().alias("_bucket")) \
        .agg(F.count_distinct("customer_id").alias("n")).collect()
    by_bucket = {int(r["_bucket"]): int(r["n"]) for r in rows}
    rate = training.largest_rate(by_bucket, max_customers)
    return rate, sum(v for b, v in by_bucket.items() if b < rate)


def segment_grouping(spark: SparkSession, settings: Settings, cands: DataFrame, profiles: DataFrame,
                     train_dates: list[date], oot: date) -> tuple[DataFrame, list[str], str]:
    """The grouping of the segment-popularity baseline and ``cands`` with its columns.

    ``profiles``: customer features per (``snapshot_date``, ``customer_id``)
    (:func:`snapshot_features`); the group is decided once per customer and snapshot there
    and joined to the candidate pairs. ``persona_id`` of ``gold/customer_segments`` when that
    table has the OOT snapshot's partition and at least one training snapshot's; otherwise
    the persona the latest persona model assigns from each snapshot's features; otherwise
    ``value_tier`` when the features have it; otherwise the segments step's value-tier rule;
    otherwise ``age_band`` x ``income_band``.
    """
    keys = ["customer_id", "snapshot_date"]

    def grouped(groups: DataFrame, by: list[str], grouping: str):
        return cands.join(groups.select(*keys, *by), keys, "left"), by, grouping

    path = lake.table_path(settings.lake, "gold", "customer_segments")
    if lake.exists(path):
        seg = lake.read(spark, path)
        if {"customer_id", "as_of_date", "persona_id"} <= set(seg.columns):
            have = {r["as_of_date"] for r in seg.where(F.col("as_of_date").isin(
                *[d.isoformat() for d in [*train_dates, oot]])).select("as_of_date").distinct().collect()}
            if oot in have and any(d in have for d in train_dates):
                personas = seg.select("customer_id", F.col("as_of_date").alias("snapshot_date"),
                                      F.col("persona_id").cast("string").alias("_persona"))
                return grouped(personas, ["_persona"], "persona_id")
    personas = _latest_persona_model(spark, settings)
    if personas is not None:
        model, cluster_to_persona, model_date = personas
        from features.segments import assign_clusters

        mapping = None
        for cluster, persona in sorted(cluster_to_persona.items()):
            cond = F.col("_cluster") == F.lit(cluster)
            mapping = F.when(cond, F.lit(persona)) if mapping is None else mapping.when(cond, F.lit(persona))
        assigned = assign_clusters(profiles, model, column="_cluster").withColumn("_persona", mapping)
        return grouped(assigned, ["_persona"], f"persona_id (persona model of {model_date} applied at each snapshot)")
    if "value_tier" in profiles.columns:
        return grouped(profiles, ["value_tier"], "value_tier")
    tier = _value_tier_rule(settings)
    if tier is not None:
        # the segments step's own rule on each snapshot's features: point in time
        return grouped(profiles.withColumn("_value_tier", tier), ["_value_tier"],
                       "value_tier (segments rule at each snapshot)")
    return grouped(profiles, ["age_band", "income_band"], "age_band x income_band")


def _latest_persona_model(spark: SparkSession, settings: Settings):
    """(ClusterModel, {cluster_id: persona_id}, as_of) of the latest segments run, or None.

    Personas are defined by the clustering model; applying it to a snapshot's features
    gives each customer the persona they would have had then (features stay point in time).
    """
    import json as _json

    from features.segments import ClusterModel

    model_path = lake.table_path(settings.lake, "ops", "persona_model")
    personas_path = lake.table_path(settings.lake, "gold", "personas")
    if not (lake.exists(model_path) and lake.exists(personas_path)):
        return None
    row = lake.read(spark, model_path).orderBy(F.col("as_of_date").desc()).select("as_of_date", "model").first()
    if row is None:
        return None
    d = _json.loads(row["model"])
    d["scores"] = {int(k): v for k, v in (d.get("scores") or {}).items()}
    model = ClusterModel(**d)
    mapping = {r["cluster_id"]: r["persona_id"] for r in lake.read(spark, personas_path)
               .where(F.col("as_of_date") == F.lit(row["as_of_date"])).select("cluster_id", "persona_id").collect()}
    if len(mapping) != model.k:
        return None
    return model, mapping, row["as_of_date"]


def _value_tier_rule(settings: Settings):
    """The value-tier expression of ``conf/segments.yaml``, or None without that config."""
    seg = getattr(settings, "segments", None)
    if seg is None:
        return None
    try:
        from features.segments import value_tier

        return value_tier(seg.as_dict()["value_tier"])
    except Exception as exc:  # noqa: BLE001 - the baseline then uses the profile bands
        log.warning("value_tier rule unavailable for the segment baseline: %s", exc)
        return None


def baselines(spark: SparkSession, settings: Settings, cands: DataFrame, profiles: DataFrame,
              train_dates: list[date], oot: date,
              sc: training.Scratch | None = None) -> tuple[dict[str, float], str]:
    """OOT ``map_at_7`` of the popularity baselines (rates from the training snapshots).
    With ``sc`` the grouped candidates are materialised once (they are read four times)."""
    cands_g, by, grouping = segment_grouping(spark, settings, cands, profiles, train_dates, oot)
    cands_g = cands_g.select("snapshot_date", "customer_id", "product_code", "label", *by)
    if sc is not None:
        cands_g = sc.write(cands_g, "nbp_grouped")
    train = cands_g.where(F.col("snapshot_date") < F.lit(oot.isoformat()).cast("date"))
    target = cands_g.where(F.col("snapshot_date") == F.lit(oot.isoformat()).cast("date")) \
        .select("customer_id", "product_code", "label", *by)
    pop = ranking_metrics(popularity_scores(train.select("product_code", "label"), target))
    seg = ranking_metrics(popularity_scores(train.select(*by, "product_code", "label"), target, by))
    out = {f"baseline_popularity_{k}": v for k, v in pop.items() if k not in ("customers", "customers_with_positive")}
    out |= {f"baseline_segment_popularity_{k}": v for k, v in seg.items()
            if k not in ("customers", "customers_with_positive")}
    return out, grouping


def per_product_table(scored: DataFrame, score: str) -> pd.DataFrame:
    """Per product on the OOT snapshot: candidates, adoptions, AUC, times in a top 7 / top 1."""
    r = ranked(scored.withColumnRenamed(score, "score"))
    rows = r.groupBy("product_code").agg(
        F.count(F.lit(1)).alias("candidates"), F.sum("label").alias("adoptions"),
        F.sum(F.when(F.col("rank") <= K, 1).otherwise(0)).alias("in_top_7"),
        F.sum(F.when(F.col("rank") == 1, 1).otherwise(0)).alias("top_1"),
        F.sum(F.when((F.col("rank") <= K) & (F.col("label") == 1), 1).otherwise(0)).alias("adoptions_in_top_7"),
    ).toPandas()
    aucs = auc_by_group(scored, "product_code", score)
    rows["auc"] = rows["product_code"].map(aucs).astype("float64")
    rows["adoption_rate"] = rows["adoptions"] / rows["candidates"]
    return rows.sort_values("product_code").reset_index(drop=True)


def calibrate(scored: DataFrame, score: str, bins: int, fitted_on: dict) -> tuple[Calibration, dict, pd.DataFrame]:
    """The isotonic map from raw ``score`` to the adoption probability, fitted on every
    scored OOT row (:func:`models.calibration.score_points`, :func:`~models.calibration.fit_points`),
    and how well it calibrates: (map, metrics, reliability table).

    The map's fit on its own rows flatters it, so the reported ``calibration_ece`` and
    ``calibration_brier`` are cross-fitted: the OOT customers are split by the parity of
    their hash bucket, and each half is calibrated by the map fitted on the other half
    (the reliability table is of those scores, ``bins`` bins). The in-sample figures are
    reported too; without two non-empty halves the cross-fit figures are the in-sample ones.
    """
    raw = F.col(score)
    half = training.customer_bucket() % 2
    cal = fit_points(score_points(scored, score), fitted_on)
    in_sample = scored.withColumn("_calibrated", calibrated(raw, cal))
    _, brier_in, ece_in = calibration(in_sample, bins, "_calibrated", unit="candidates")
    points = {h: score_points(scored.where(half == h), score) for h in (0, 1)}
    crossed = None
    if all(len(p) for p in points.values()):
        maps = {h: fit_points(p) for h, p in points.items()}
        crossed = scored.withColumn("_calibrated", F.when(half == 0, calibrated(raw, maps[1]))
                                    .otherwise(calibrated(raw, maps[0])))
    table, brier, ece = calibration(crossed if crossed is not None else in_sample, bins, "_calibrated",
                                    unit="candidates")
    metrics = {"calibration_ece": ece, "calibration_brier": brier, "calibration_ece_in_sample": ece_in,
               "calibration_brier_in_sample": brier_in, "calibration_breakpoints": len(cal.x),
               "calibration_cross_fitted": 1.0 if crossed is not None else 0.0}
    return cal, metrics, table


# ---------------------------------------------------------------------------- training

def _fit(kind: str, pdf: pd.DataFrame, spec: FeatureSpec, conf, seed: int, threads: int = 1):
    params = conf.ranker if kind == "ranker" else conf.binary
    if kind == "ranker":
        data = pdf[pdf[training.GROUP_POSITIVE].astype(bool)]
        data, sizes = training.group_sizes(data, GROUP)
        return training.fit_lightgbm("ranker", prepare(data, spec), data["label"], params, seed, group=sizes,
                                        threads=threads)
    return training.fit_lightgbm("binary", prepare(pdf, spec), pdf["label"], params, seed,
                                 weight=pdf[training.WEIGHT], threads=threads)


def train(spark: SparkSession, settings: Settings, tables: dict, as_of: date, progress=None) -> dict:
    """Train, evaluate, log, register and gate the next-best-product model for ``as_of``."""
    m = training.models_settings(settings)
    conf = m.next_best_product
    t0 = time.time()
    training.require_sources("next_best_product", tables, ("holdings", "product_catalog"))
    # as many month ends as configured that have min_history_days of history behind them
    snapshots = month_end_snapshots(as_of, conf.snapshots, conf.horizon_days,
                                    history_start(tables["holdings"], conf.min_history_days))
    if len(snapshots) < 2:  # a short history: the month ends there are, rather than no model
        snapshots = month_end_snapshots(as_of, conf.snapshots, conf.horizon_days)
        log.warning("next_best_product: fewer than 2 month ends have %d days of history behind them; "
                    "training on %s", conf.min_history_days, [d.isoformat() for d in snapshots])
    train_dates, oot = training.split_snapshots(snapshots)
    codes = ownership_codes(tables["product_catalog"])  # the ownership vector, kept in the spec
    timings: dict[str, float] = {}
    with training.scratch(spark, settings) as sc:
        cands, built = build_training_table(spark, settings, tables, snapshots, conf.horizon_days, sc, progress,
                                            codes)
        profiles = snapshot_features(spark, settings, snapshots)
        timings["data_s"] = time.time() - t0
        stats = training.snapshot_stats(cands)
        training.check_training_data("next_best_product", stats, train_dates, oot, conf.min_positives,
                                     both_classes_in_oot=False)
        oot_lit = F.lit(oot.isoformat()).cast("date")

        # ---- bounded training sample -> driver (customer features joined to the sample only)
        t = time.time()
        training.step(progress, "train nbp sample", 0, 4)
        train_df = training.with_group_positive(cands.where(F.col("snapshot_date") < oot_lit), GROUP)
        pdf, info = training.bounded_sample(train_df, conf.sampling, m.seed, GROUP, sc,
                                            enrich=lambda df: with_profile(df, profiles, GROUP))
        if info.positives == 0:
            raise training.TrainingSkipped(
                "single_class", f"next_best_product: no adoption among the {info.rows} sampled training rows "
                                f"of {', '.join(d.isoformat() for d in train_dates)}")
        spec = training.fit_feature_spec(pdf)
        spec.ownership = codes  # scoring builds the same ownership columns from it
        timings["sample_s"] = time.time() - t

        # ---- fit both kinds
        t = time.time()
        fitted = {}
        for kind in conf.kinds:
            training.step(progress, f"train nbp fit {kind}", 1, 4)
            fitted[kind] = _fit(kind, pdf, spec, conf, m.seed, m.threads).booster_
        timings["fit_s"] = time.time() - t
        example = prepare(pdf.head(200), spec)
        del pdf

        # ---- score the full OOT snapshot in the engine (+ the current champion, same data)
        t = time.time()
        training.step(progress, "train nbp evaluate", 2, 4)
        champion = registry.champion_or_none(settings, conf.registered_model)
        to_score = {f"score_{k}": (b.model_to_string(), spec) for k, b in fitted.items()}
        if champion is not None:
            to_score["score_champion"] = (champion.booster.model_to_string(), champion.spec)
        oot_rate, oot_customers = oot_customer_rate(cands.where(F.col("snapshot_date") == oot_lit),
                                                    conf.oot_max_customers)
        # the evaluated customers; the baselines' rates come from their training snapshots
        # too (all customers of a bank the size of the cap; at 1M, 9M pairs instead of 90M)
        evaluated = training.customer_bucket() < oot_rate
        needed = sorted({c for _, sp in to_score.values() for c in sp.columns})
        oot_df = with_profile(cands.where((F.col("snapshot_date") == oot_lit) & evaluated),
                              profiles.where(F.col("snapshot_date") == oot_lit), GROUP, needed)
        scored = sc.write(training.score_in_engine(oot_df, to_score, SCORE_KEEP), "nbp_oot_scored")
        by_kind = {}
        for kind in fitted:
            mk = ranking_metrics(scored, score=f"score_{kind}")
            mk["coverage"] = coverage(scored, score=f"score_{kind}")
            by_kind[kind] = mk
        winner = max(conf.kinds, key=lambda k: (by_kind[k]["map_at_7"], -conf.kinds.index(k)))
        champion_map = ranking_metrics(scored, score="score_champion")["map_at_7"] if champion is not None else None
        base, grouping = baselines(spark, settings, cands.where(evaluated), profiles, train_dates, oot, sc)
        products = per_product_table(scored, f"score_{winner}")
        timings["evaluate_s"] = time.time() - t

        # ---- calibration of the winner's raw score on the OOT rows (data: breakpoints)
        t = time.time()
        fitted_on = {"oot_snapshot": oot.isoformat(), "horizon_days": conf.horizon_days, "model_kind": winner,
                     "customers": by_kind[winner]["customers"], "score": "raw score of the registered model"}
        cal, cal_metrics, cal_table = calibrate(scored, f"score_{winner}", conf.calibration_bins, fitted_on)
        cal_text = cal.to_json()
        timings["calibrate_s"] = time.time() - t

        # ---- MLflow: one run, the winner logged and registered, then the gate
        t = time.time()
        training.step(progress, "train nbp log", 3, 4)
        booster = fitted[winner]
        win = by_kind[winner]
        metrics = {k: win[k] for k in ("map_at_7", "map_at_3", "ndcg_at_7", "precision_at_3", "recall_at_7",
                                       "coverage")}
        metrics |= cal_metrics
        metrics |= {f"{kind}_{k}": v for kind, mk in by_kind.items() for k, v in mk.items()}
        metrics |= base
        metrics |= {f"auc_{training.metric_name(r.product_code)}": r.auc for r in products.itertuples()
                    if pd.notna(r.auc)}
        metrics["oot_customers"] = win["customers"]
        metrics["oot_customers_with_adoption"] = win["customers_with_positive"]
        if champion_map is not None:
            metrics["champion_map_at_7_same_oot"] = champion_map
        description = {
            "task": "next_best_product", "as_of": as_of.isoformat(),
            "train_snapshots": [d.isoformat() for d in train_dates], "oot_snapshot": oot.isoformat(),
            "horizon_days": conf.horizon_days, "label": f"product opened in (snapshot, snapshot + {conf.horizon_days}d]",
            "candidates": "active catalogue products not held at the snapshot",
            "per_snapshot": stats, "profiles_computed_now": built,
            "oot_evaluation": f"{oot_customers} customers, pmod(xxhash64(customer_id), 1000) < {oot_rate} "
                              f"(at most {conf.oot_max_customers})",
            "sample": info.__dict__, "features": {"numeric": len(spec.numeric), "categorical": len(spec.categorical)},
            "sampling_rule": "pmod(xxhash64(customer_id), 1000) < customer_rate_per_mille; (snapshot, customer) "
                             "groups without adoption kept at negative_rate, weighted 1/negative_rate in the binary "
                             "model; the ranker trains on the groups with an adoption only",
        }
        params = {
            "model_kind": winner, "kinds_compared": ",".join(conf.kinds), "selection_metric": "map_at_7",
            "train_snapshots": ",".join(d.isoformat() for d in train_dates), "oot_snapshot": oot.isoformat(),
            "oot_customer_rate_per_mille": oot_rate, "oot_max_customers": conf.oot_max_customers,
            "horizon_days": conf.horizon_days, "train_rows": info.rows, "train_positives": info.positives,
            "train_customers": info.customers, "sample_rate_per_mille": info.customer_rate_per_mille,
            "sample_rate_configured_per_mille": info.configured_rate_per_mille,
            "negative_rate": info.negative_rate, "negatives_weighted": info.negatives_weighted,
            "max_train_rows": info.max_train_rows, "sample_capped": info.capped,
            "train_population_rows": info.population_rows, "train_population_positives": info.population_positives,
            "segment_baseline_grouping": grouping, "seed": m.seed, "n_features": len(spec.columns),
            "promotion_margin": conf.promotion_margin,
            "calibration": "isotonic regression of OOT adoptions on the raw score (calibration.json)",
            "calibration_bins": conf.calibration_bins,
            **{f"{winner}_{k}": v for k, v in (conf.ranker if winner == "ranker" else conf.binary).as_kwargs().items()},
        }
        def artifacts(d: Path) -> None:
            csvsafe.write_frame(products, d / "per_product.csv")
            (d / CALIBRATION_ARTIFACT).write_text(cal_text, encoding="utf-8")
            csvsafe.write_frame(cal_table, d / "calibration.csv")
            reliability_chart(cal_table, d / "reliability.png", f"adoption rate within {conf.horizon_days} days",
                              f"next best product ({winner}), OOT {oot}: ECE {cal_metrics['calibration_ece']:.3f} "
                              "(cross-fitted)", unit="candidates")
            (d / "evaluation_report.html").write_text(
                _report(as_of, winner, by_kind, base, grouping, champion, champion_map, products, description,
                        (cal_metrics, cal_table)),
                encoding="utf-8")

        version, run_id = training.log_training_run(
            settings, conf.experiment, f"nbp-{as_of.isoformat()}-{winner}", EXPERIMENT_TAGS, params, metrics,
            description, spec, booster, example, conf.registered_model, winner, f"next best product ({winner})",
            artifacts)
        with registry.mlflow_session(settings) as client:  # before the gate: a champion has its map
            registry.hash_calibration(client, conf.registered_model, version, cal_text)
        gate = registry.apply_gate(settings, conf.registered_model, version, "map_at_7", win["map_at_7"],
                                   base["baseline_popularity_map_at_7"], conf.promotion_margin,
                                   champion_metric=champion_map)
        timings["log_s"] = time.time() - t
    training.step(progress, "train nbp", 4, 4)
    timings["total_s"] = time.time() - t0
    return {
        "model": conf.registered_model, "kind": winner, "version": version, "run_id": run_id,
        "promoted": gate.promoted, "aliases": gate.aliases, "previous_champion": gate.previous_champion,
        "map_at_7": win["map_at_7"], "map_at_3": win["map_at_3"], "ndcg_at_7": win["ndcg_at_7"],
        "precision_at_3": win["precision_at_3"],
        "recall_at_7": win["recall_at_7"], "coverage": win["coverage"],
        "map_at_7_by_kind": {k: v["map_at_7"] for k, v in by_kind.items()},
        "map_at_3_by_kind": {k: v["map_at_3"] for k, v in by_kind.items()},
        "calibration_ece": cal_metrics["calibration_ece"],
        "calibration_ece_in_sample": cal_metrics["calibration_ece_in_sample"],
        "calibration_breakpoints": len(cal.x),
        "champion_map_at_7": gate.new_metric if gate.promoted else gate.champion_metric,
        "previous_champion_map_at_7": champion_map,
        "baseline_popularity_map_at_7": base["baseline_popularity_map_at_7"],
        "baseline_segment_popularity_map_at_7": base["baseline_segment_popularity_map_at_7"],
        "segment_baseline_grouping": grouping,
        "train_snapshots": [d.isoformat() for d in train_dates], "oot_snapshot": oot.isoformat(),
        "train_rows": info.rows, "train_positives": info.positives,
        "sample_rate_per_mille": info.customer_rate_per_mille, "profiles_computed": built,
        "timings": {k: round(v, 1) for k, v in timings.items()},
    }


def _report(as_of, winner, by_kind, base, grouping, champion, champion_map, products, description,
            calibrated_scores=None) -> str:
    h = training.html_table
    keys = ("map_at_7", "map_at_3", "ndcg_at_7", "precision_at_3", "recall_at_7", "coverage", "customers",
            "customers_with_positive")
    rows = [{"model": f"LightGBM {k}" + (" (kept)" if k == winner else ""), **{c: v.get(c) for c in keys}}
            for k, v in by_kind.items()]
    for name, label_ in (("popularity", "baseline: popularity"),
                         ("segment_popularity", f"baseline: popularity within {grouping}")):
        rows.append({"model": label_, **{c: base.get(f"baseline_{name}_{c}") for c in keys[:5]}})
    if champion is not None:
        rows.append({"model": f"current champion v{champion.version} ({champion.kind})", "map_at_7": champion_map})
    sample = description["sample"]
    sections = [
        ("Out-of-time evaluation", f"<p>As of {as_of}; OOT snapshot {description['oot_snapshot']} "
                                   f"(every candidate of {description['oot_evaluation']}, scored in the engine); "
                                   f"kept: <b>{winner}</b>.</p>"
                                   + h(rows)),
        ("Training set", h([{"train snapshots": ", ".join(description["train_snapshots"]),
                             "rows": sample["rows"], "positives": sample["positives"],
                             "customers": sample["customers"],
                             "customer rate (per mille)": sample["customer_rate_per_mille"],
                             "negative rate": sample["negative_rate"], "weighted": sample["negatives_weighted"]}])
         + h(description["per_snapshot"])),
        ("Per product (OOT)", h(products)),
    ]
    images = ["feature_importance.png"]
    if calibrated_scores is not None:
        cm, table = calibrated_scores
        sections.append(("Calibration (OOT)", f"<p>Isotonic map of the raw score to the adoption probability "
                         f"({cm['calibration_breakpoints']} breakpoints, calibration.json). Expected calibration error "
                         f"{cm['calibration_ece']:.4f} cross-fitted (each half of the customers calibrated by the map "
                         f"of the other half), {cm['calibration_ece_in_sample']:.4f} in sample.</p>" + h(table)))
        images.append("reliability.png")
    return training.html_report("Next best product: training report", sections, images)

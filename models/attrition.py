"""Attrition risk: binary LightGBM on month-end snapshots, OOT AUC and calibration.

Population of a snapshot ``s``: customers who hold at least one product at ``s`` and were
active in the 90 days before it (a transaction or a login) - a customer already gone
cannot be lost again. Label (:func:`features.candidates.attrition_label`): within
``(s, s + horizon]`` the customer closes every product they held or goes dormant (no
transaction and no login). Features: customer 360 as of ``s``. The latest fully labelled
snapshot is the out-of-time evaluation set; AUC, Brier score and expected calibration
error are computed on all of it in the engine.
"""

from __future__ import annotations

import logging
import time
from datetime import date
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from c360 import csvsafe
from c360.settings import Settings
from features.candidates import attrition_label, month_end_snapshots
from models import registry, training
from models.frame import prepare
from models.metrics import auc, calibration, reliability_chart

log = logging.getLogger(__name__)

GROUP = ["snapshot_date", "customer_id"]
EXPERIMENT_TAGS = {"project": "c360", "task": "attrition_risk"}


def population(profile: DataFrame) -> DataFrame:
    """Customers holding a product and active (transaction or login) in the last 90 days."""
    active = F.lit(False)
    for c in ("txn_count_90d", "logins_90d"):
        if c in profile.columns:
            active = active | (F.coalesce(F.col(c), F.lit(0)) > 0)
    return profile.where((F.coalesce(F.col("n_products"), F.lit(0)) > 0) & active)


def snapshot_rows(profile: DataFrame, tables: dict, snapshot: date, horizon_days: int, bank_timezone: str) -> DataFrame:
    pop = population(profile.drop(*[c for c in ("tags",) if c in profile.columns]))
    labels = attrition_label(tables["holdings"], pop, snapshot, horizon_days, tables.get("transactions"),
                             tables.get("events"), bank_timezone)
    return pop.join(labels, "customer_id").drop("as_of_date") \
        .withColumn("snapshot_date", F.lit(snapshot.isoformat()).cast("date"))


def train(spark: SparkSession, settings: Settings, tables: dict, as_of: date, progress=None) -> dict:
    """Train, evaluate, log, register and gate the attrition-risk model for ``as_of``."""
    m = training.models_settings(settings)
    conf = m.attrition
    t0 = time.time()
    # the label needs holdings; the population, activity (transactions or logins)
    training.require_sources("attrition", tables, ("holdings",), ("transactions", "events"))
    snapshots = month_end_snapshots(as_of, conf.snapshots, conf.horizon_days)
    train_dates, oot = training.split_snapshots(snapshots)
    oot_lit = F.lit(oot.isoformat()).cast("date")
    timings: dict[str, float] = {}
    built = []
    with training.scratch(spark, settings) as sc:
        for i, s in enumerate(snapshots):
            training.step(progress, f"train attrition snapshot {s}", i, len(snapshots))
            profile, new = training.snapshot_profile(spark, settings, s)
            if new:
                built.append(s.isoformat())
            sc.write(snapshot_rows(profile, tables, s, conf.horizon_days, settings.bank.timezone), "attrition_rows",
                     append=i > 0)
        rows = sc.read("attrition_rows")
        stats = training.snapshot_stats(rows)
        training.check_training_data("attrition", stats, train_dates, oot, conf.min_positives,
                                     both_classes_in_oot=True)
        timings["data_s"] = time.time() - t0

        t = time.time()
        training.step(progress, "train attrition fit", 0, 3)
        train_df = rows.where(F.col("snapshot_date") < oot_lit).withColumn(
            training.GROUP_POSITIVE, F.col("label") == 1)
        pdf, info = training.bounded_sample(train_df, conf.sampling, m.seed, GROUP, sc)
        if info.positives == 0 or info.positives == info.rows:
            raise training.TrainingSkipped(
                "single_class", f"attrition: every one of the {info.rows} sampled training rows has label "
                                f"{1 if info.positives else 0}")
        spec = training.fit_feature_spec(pdf)
        model = training.fit_lightgbm("binary", prepare(pdf, spec), pdf["label"], conf.params, m.seed,
                                      weight=pdf[training.WEIGHT], threads=m.threads)
        booster = model.booster_
        example = prepare(pdf.head(200), spec)
        del pdf
        timings["fit_s"] = time.time() - t

        t = time.time()
        training.step(progress, "train attrition evaluate", 1, 3)
        champion = registry.champion_or_none(settings, conf.registered_model)
        to_score = {"score": (booster.model_to_string(), spec)}
        if champion is not None:
            to_score["score_champion"] = (champion.booster.model_to_string(), champion.spec)
        scored = sc.write(training.score_in_engine(rows.where(F.col("snapshot_date") == oot_lit), to_score,
                                                   ["customer_id", "label"]), "attrition_oot_scored")
        oot_auc = auc(scored, "score")
        table, brier, ece = calibration(scored, conf.calibration_bins)
        base_rate = scored.agg(F.avg("label")).first()[0]
        champion_auc = auc(scored, "score_champion") if champion is not None else None
        timings["evaluate_s"] = time.time() - t

        t = time.time()
        training.step(progress, "train attrition log", 2, 3)
        metrics = {"auc": oot_auc, "brier_score": brier, "expected_calibration_error": ece,
                   "brier_score_base_rate": float(base_rate or 0) * (1 - float(base_rate or 0)),
                   "oot_attrition_rate": float(base_rate or 0), "oot_customers": int(table["customers"].sum())}
        if champion_auc is not None:
            metrics["champion_auc_same_oot"] = champion_auc
        description = {
            "task": "attrition_risk", "as_of": as_of.isoformat(),
            "train_snapshots": [d.isoformat() for d in train_dates], "oot_snapshot": oot.isoformat(),
            "horizon_days": conf.horizon_days,
            "label": f"closes every product or goes dormant (no transaction, no login) within {conf.horizon_days}d",
            "population": "holds a product and had a transaction or login in the 90 days before the snapshot",
            "per_snapshot": stats, "profiles_computed_now": built, "sample": info.__dict__,
            "features": {"numeric": len(spec.numeric), "categorical": len(spec.categorical)},
        }
        params = {
            "model_kind": "binary", "train_snapshots": ",".join(d.isoformat() for d in train_dates),
            "oot_snapshot": oot.isoformat(), "horizon_days": conf.horizon_days, "train_rows": info.rows,
            "train_positives": info.positives, "train_customers": info.customers,
            "sample_rate_per_mille": info.customer_rate_per_mille,
            "sample_rate_configured_per_mille": info.configured_rate_per_mille, "negative_rate": info.negative_rate,
            "negatives_weighted": info.negatives_weighted, "max_train_rows": info.max_train_rows,
            "sample_capped": info.capped, "seed": m.seed, "n_features": len(spec.columns),
            "calibration_bins": conf.calibration_bins, "promotion_margin": conf.promotion_margin,
            "baseline_auc": 0.5, **{f"binary_{k}": v for k, v in conf.params.as_kwargs().items()},
        }
        def artifacts(d: Path) -> None:
            csvsafe.write_frame(table, d / "calibration.csv")
            reliability_chart(table, d / "reliability.png", "observed attrition rate",
                              f"attrition risk, OOT {oot}: AUC {oot_auc or float('nan'):.3f}, ECE {ece:.3f}")
            h = training.html_table
            rows_ = [{"model": "LightGBM binary", "auc": oot_auc, "brier_score": brier,
                      "expected_calibration_error": ece},
                     {"model": "baseline: constant base rate", "auc": 0.5,
                      "brier_score": metrics["brier_score_base_rate"], "expected_calibration_error": None}]
            if champion_auc is not None:
                rows_.append({"model": f"current champion v{champion.version}", "auc": champion_auc})
            (d / "evaluation_report.html").write_text(training.html_report(
                "Attrition risk: training report",
                [("Out-of-time evaluation", f"<p>As of {as_of}; OOT snapshot {oot}, "
                                            f"{metrics['oot_customers']} customers, attrition rate "
                                            f"{metrics['oot_attrition_rate']:.3%}.</p>" + h(rows_)),
                 ("Calibration", h(table)),
                 ("Training set", h(stats))],
                ["reliability.png", "feature_importance.png"]), encoding="utf-8")

        version, run_id = training.log_training_run(
            settings, conf.experiment, f"attrition-{as_of.isoformat()}", EXPERIMENT_TAGS, params, metrics,
            description, spec, booster, example, conf.registered_model, "binary", "attrition risk", artifacts)
        gate = registry.apply_gate(settings, conf.registered_model, version, "auc", oot_auc, 0.5,
                                   conf.promotion_margin, champion_metric=champion_auc)
        timings["log_s"] = time.time() - t
    training.step(progress, "train attrition", 3, 3)
    timings["total_s"] = time.time() - t0
    return {
        "model": conf.registered_model, "kind": "binary", "version": version, "run_id": run_id,
        "promoted": gate.promoted, "aliases": gate.aliases, "previous_champion": gate.previous_champion,
        "auc": oot_auc, "brier_score": brier, "expected_calibration_error": ece,
        "oot_attrition_rate": metrics["oot_attrition_rate"],
        "champion_auc": gate.new_metric if gate.promoted else gate.champion_metric,
        "previous_champion_auc": champion_auc,
        "train_snapshots": [d.isoformat() for d in train_dates], "oot_snapshot": oot.isoformat(),
        "train_rows": info.rows, "train_positives": info.positives, "profiles_computed": built,
        "timings": {k: round(v, 1) for k, v in timings.items()},
    }

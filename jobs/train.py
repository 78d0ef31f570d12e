"""Train: next-best-product and attrition-risk models for one as_of, logged to MLflow.

A model the lake's data cannot train (a source missing, too short a history, a single class,
too few positives: :class:`models.training.TrainingSkipped`) is skipped with its reason
(:func:`record_skip`); the other model still trains and the step succeeds.

Both trainers read silver (labels, pair features) and ``gold/customer_360`` partitions of
past month ends (written when missing), evaluate out of time on the latest fully labelled
month end, register the new version as ``challenger`` and promote it to ``champion`` only
through the gate of :mod:`models.registry`. Scoring reads the champions.

A newly promoted champion is compiled here (:mod:`models.compiled`, when
``models.prediction.compiled``), once, so that the daily score step only loads it: compiling
the 1M-customer next-best-product model takes about 30 s, which belongs to the run that
changed the model, not to the first daily run after it.
"""

from __future__ import annotations

import logging
import time
from datetime import date

from pyspark.sql import SparkSession

from c360.settings import Settings
from jobs.profile import silver_tables
from models import attrition, nbp, registry, training

log = logging.getLogger(__name__)

TASKS = ("next_best_product", "attrition")


def run(spark: SparkSession, settings: Settings, as_of: date, progress=None,
        tasks: tuple[str, ...] = TASKS) -> dict:
    """Train the models of ``tasks``; returns their metrics, versions and aliases."""
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"unknown training task(s) {unknown}; tasks are {', '.join(TASKS)}")
    m = training.models_settings(settings)  # a clear error when conf/models.yaml is missing
    tables = silver_tables(spark, settings)
    out: dict = {"tracking_uri": registry.tracking_uri(settings)}
    skipped: dict[str, str] = {}
    for task, trainer, conf, tags in (
            ("next_best_product", nbp.train, m.next_best_product, nbp.EXPERIMENT_TAGS),
            ("attrition", attrition.train, m.attrition, attrition.EXPERIMENT_TAGS)):
        if task not in tasks:
            continue
        try:
            out[task] = trainer(spark, settings, tables, as_of, progress)
        except training.TrainingSkipped as skip:
            out[task] = record_skip(settings, task, conf, tags, skip, as_of)
            skipped[task] = str(skip)
    for task in TASKS:
        result = out.get(task)
        if result is not None and "skipped" not in result:
            result["compiled_for_scoring"] = compile_champion(settings, result)
    if skipped:
        out["skipped_models"] = skipped
    return out


def record_skip(settings: Settings, task: str, conf, tags: dict, skip: training.TrainingSkipped, as_of: date) -> dict:
    """A model the data cannot train (:class:`models.training.TrainingSkipped`): logged as a
    warning and as an MLflow run tagged ``skipped`` in the model's experiment; the returned
    result (``skipped``: reason code, ``reason``: sentence) goes to the run summary and
    ``ops/run_log``. The champion, if an earlier run promoted one, stays and is scored."""
    log.warning("%s not trained (%s): %s", task, skip.reason, skip.message)
    run_id = training.log_skipped_run(
        settings, conf.experiment, f"{task}-{as_of.isoformat()}-skipped", tags, skip,
        {"as_of": as_of.isoformat(), "snapshots": conf.snapshots, "horizon_days": conf.horizon_days,
         "min_positives": conf.min_positives})
    return {"model": conf.registered_model, "skipped": skip.reason, "reason": skip.message, "run_id": run_id,
            "promoted": False}


def compile_champion(settings: Settings, result: dict) -> bool:
    """Compile the champion that ``result`` (a trainer's) has just promoted into the cache the
    score step reads (:func:`models.compiled.warm`, same model text as the score step's);
    False when nothing was promoted, compiled prediction is off, the champion is refused
    (:class:`models.registry.ModelRefusedError`: logged, the score step skips it with the
    reason) or compiling failed (the score step then compiles or falls back to LightGBM)."""
    prediction = settings.models.prediction
    if not result.get("promoted") or not prediction.compiled:
        return False
    from models import compiled

    try:
        champion = registry.load_champion(settings, result["model"])
    except registry.ModelRefusedError as exc:
        log.error("champion not compiled: %s", exc)
        return False
    t = time.time()
    ok = compiled.warm(champion.booster.model_to_string(), prediction.cache_dir)
    log.info("champion %s v%s %s in %.1f s", result["model"], champion.version,
             "compiled for scoring" if ok else "not compiled", time.time() - t)
    return ok


__all__ = ["run", "compile_champion", "record_skip", "TASKS"]

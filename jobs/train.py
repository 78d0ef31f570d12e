"""Train: next-best-product and attrition-risk models for one as_of, logged to MLflow.

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
    training.models_settings(settings)  # a clear error when conf/models.yaml is missing
    tables = silver_tables(spark, settings)
    missing = [t for t in ("holdings", "product_catalog") if t not in tables]
    if missing:
        raise RuntimeError(f"silver/{', silver/'.join(missing)} missing under {settings.lake}: "
                           "run the ingest and silver steps")
    out: dict = {"tracking_uri": registry.tracking_uri(settings)}
    if "next_best_product" in tasks:
        out["next_best_product"] = nbp.train(spark, settings, tables, as_of, progress)
    if "attrition" in tasks:
        out["attrition"] = attrition.train(spark, settings, tables, as_of, progress)
    for result in (out.get("next_best_product"), out.get("attrition")):
        if result is not None:
            result["compiled_for_scoring"] = compile_champion(settings, result)
    return out


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


__all__ = ["run", "compile_champion", "TASKS"]

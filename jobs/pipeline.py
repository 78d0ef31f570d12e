"""The pipeline: named steps in order, each a job function, each recorded in ``ops/run_log``.

``c360 run`` and the Airflow DAGs both call :func:`run_steps` / :func:`run_step`, so a
step does exactly the same thing whoever schedules it.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, is_dataclass
from datetime import date
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession

from c360 import lake, lock, ops, storage
from c360.engine import is_transient_engine_error
from c360.settings import Settings

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]


def _ingest(spark: SparkSession, settings: Settings, as_of: date, run_id: str, progress: Progress | None):
    from jobs import ingest

    results = ingest.run(spark, settings, as_of=as_of, batch_id=run_id, progress=progress)
    # asdict() would rebuild the reasons Counter from (key, count) pairs: keep it a plain dict
    return {name: {**asdict(r), "reasons": dict(r.reasons)} for name, r in results.items()}


def _silver(spark: SparkSession, settings: Settings, as_of: date, run_id: str, progress: Progress | None):
    from jobs import silver

    return silver.run(spark, settings, progress=progress)


def _dq_bronze(spark: SparkSession, settings: Settings, as_of: date, run_id: str, progress: Progress | None):
    from jobs import quality

    return quality.run(spark, settings, "bronze", as_of, run_id, progress)


def _dq_silver(spark: SparkSession, settings: Settings, as_of: date, run_id: str, progress: Progress | None):
    from jobs import quality

    return quality.run(spark, settings, "silver", as_of, run_id, progress)


def _dq_gold(spark: SparkSession, settings: Settings, as_of: date, run_id: str, progress: Progress | None):
    from jobs import quality

    return quality.run(spark, settings, "gold", as_of, run_id, progress)


def _profile(spark: SparkSession, settings: Settings, as_of: date, run_id: str, progress: Progress | None):
    from jobs import profile

    return profile.run(spark, settings, as_of, progress=progress)


def _segments(spark: SparkSession, settings: Settings, as_of: date, run_id: str, progress: Progress | None):
    from jobs import segments

    return segments.run(spark, settings, as_of, progress=progress)


def _kpis(spark: SparkSession, settings: Settings, as_of: date, run_id: str, progress: Progress | None):
    from jobs import kpis

    return kpis.run(spark, settings, as_of, progress=progress)


def _train(spark: SparkSession, settings: Settings, as_of: date, run_id: str, progress: Progress | None):
    from jobs import train

    return train.run(spark, settings, as_of, progress=progress)


def _score(spark: SparkSession, settings: Settings, as_of: date, run_id: str, progress: Progress | None):
    from jobs import score

    return score.run(spark, settings, as_of, progress=progress)


def _export(spark: SparkSession, settings: Settings, as_of: date, run_id: str, progress: Progress | None):
    from jobs import export

    return export.run(spark, settings, as_of, run_id=run_id, progress=progress)


def _recovery(spark: SparkSession, settings: Settings, as_of: date, run_id: str, progress: Progress | None):
    from jobs import recovery

    return recovery.run(spark, settings, as_of, run_id=run_id, progress=progress)


# Steps in pipeline order. Later issues append profile, segments, train, score, export.
STEPS: dict[str, Callable[..., Any]] = {
    "ingest": _ingest,
    "dq_bronze": _dq_bronze,
    "silver": _silver,
    "dq_silver": _dq_silver,
    "profile": _profile,
    "segments": _segments,
    "kpis": _kpis,
    "train": _train,
    "score": _score,
    "dq_gold": _dq_gold,
    "export": _export,
    "recovery": _recovery,
}


# What each step reads (``layer/`` prefixes or ``layer/name`` tables), as declared. The
# audit log records what the step did read (:func:`_inputs`); tests/test_audit.py runs every
# step and checks that the two agree, so this stays a true description of the steps.
# ``ops/derived_watermarks`` tells whether silver's derived tables (daily transaction
# summaries, latest and lagged holdings) are current.
STEP_INPUTS: dict[str, tuple[str, ...]] = {
    # bronze and quarantine: the tables it upserts into (their keys decide append or merge)
    "ingest": ("ops/ingested_files", "ops/landing_issues", "bronze/", "quarantine/"),
    # ops/ingested_files, ops/run_log: which deliveries arrived, and when (delivery completeness)
    "dq_bronze": ("bronze/", "ops/dq_watermarks", "ops/ingested_files", "ops/run_log"),
    # silver/, restricted/: the incremental refresh merges new rows into what is there
    "silver": ("bronze/", "silver/", "restricted/customer_pii", "ops/derived_watermarks"),
    "dq_silver": ("silver/", "ops/dq_watermarks"),
    "profile": ("silver/", "ops/derived_watermarks"),
    # earlier dates' segments and personas: migration, persona stability
    # silver/feedback: the NPS, CSAT and CES of each segment
    "segments": ("gold/customer_360", "gold/customer_segments", "gold/personas", "silver/feedback"),
    # gold/customer_360: the customers at as_of (complaints per 1,000)
    # gold/recommendation_outcomes: the uplift table of the service report
    # gold/recommendation_outcomes, gold/service_recovery(_outcomes): the service report's
    # uplift table and recovery funnel (as the day before left them)
    "kpis": ("silver/feedback", "silver/interactions", "silver/complaints", "silver/complaint_history",
             "gold/customer_360", "gold/recommendation_outcomes", "gold/service_recovery",
             "gold/service_recovery_outcomes"),
    # silver/: the features of past month ends it writes when missing; the persona model
    # for the segment baseline
    "train": ("silver/", "gold/customer_360", "gold/customer_segments", "gold/personas", "ops/persona_model",
              "ops/derived_watermarks"),
    "score": ("gold/customer_360", "silver/holdings", "silver/holdings_latest", "silver/product_catalog",
              "silver/campaign_responses", "silver/events", "ops/derived_watermarks"),
    "dq_gold": ("gold/customer_360", "gold/customer_segments", "gold/recommendations", "silver/product_catalog",
                "gold/experience_kpis", "gold/service_kpis", "gold/complaint_kpis",
                "gold/topic_kpis"),
    # ops/run_log: whether the day's score step succeeded, and why it skipped;
    # silver/holdings_latest: the accounts' opening dates for the outcomes' adoption (whether it
    # is current: silver/holdings and ops/derived_watermarks; silver/holdings itself when not)
    "export": ("gold/recommendations", "gold/customer_segments", "gold/customer_360", "silver/product_catalog",
               "silver/campaign_responses", "ops/run_log", "silver/holdings", "silver/holdings_latest",
               "ops/derived_watermarks"),
    # gold/attrition_risk: the churn warning at as_of and later bands (outcomes); ops/run_log:
    # why the score step skipped the attrition model; gold/customer_360: the attrition
    # champion's features of the warned customers (their reasons); silver/complaint_history:
    # the complaints' statuses at as_of (gold/service_recovery is read back after it is written)
    # (and the service report again: the kpis tables and the outcomes the export refreshed)
    "recovery": ("silver/feedback", "silver/interactions", "silver/complaint_history", "gold/attrition_risk",
                 "gold/customer_360", "ops/run_log", "gold/experience_kpis", "gold/service_kpis",
                 "gold/complaint_kpis", "gold/topic_kpis", "gold/recommendation_outcomes"),
}
# How many times a step that failed with a transient engine error (a response the client
# could not decode: c360.engine.is_transient_engine_error) is run again. Every step is
# idempotent (README: a step can be re-run at any point), so a second run is safe; a step
# that still fails after these retries fails as usual.
TRANSIENT_RETRIES = 2

# Bookkeeping tables every step writes; not outputs of the step itself.
_BOOKKEEPING = ("ops/run_log", "ops/audit_log")


def _inputs(lake_dir, reads: dict[str, int | None], before: dict[str, int]) -> dict[str, int]:
    """``layer/name -> version`` of the tables the step read (``reads``: path -> version,
    from :func:`c360.lake.recording_reads`) at the version they had when it started.
    Staging tables are not inputs, nor reads of versions the step wrote itself (tables it
    created, or read back after writing them): those are its outputs."""
    root = os.path.abspath(lake_dir)
    out = {}
    for path, version in reads.items():
        table = Path(os.path.relpath(os.path.abspath(path), root)).as_posix()
        if "/_" not in table and version is not None and before.get(table) == version:
            out[table] = version
    return out


def _outputs(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {t: v for t, v in after.items() if before.get(t) != v and t not in _BOOKKEEPING and "/_" not in t}


class StepFailed(RuntimeError):
    def __init__(self, step: str, cause: BaseException):
        super().__init__(f"step {step} failed: {cause}")
        self.step = step
        self.cause = cause


@dataclass
class StepResult:
    step: str
    status: str
    duration_s: float
    metrics: dict = field(default_factory=dict)
    error: str | None = None
    retries: int = 0  # runs again after a transient engine error (TRANSIENT_RETRIES at most)


def parse_steps(text: str | None) -> list[str]:
    """``"ingest,silver"`` -> ordered, validated step names (all steps when empty)."""
    if not text:
        return list(STEPS)
    wanted = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in STEPS]
    if unknown:
        raise ValueError(f"unknown step(s): {', '.join(unknown)}; steps are {', '.join(STEPS)}")
    return [s for s in STEPS if s in wanted]


def _check_step_config(settings: Settings) -> None:
    """Validate configuration blocks owned by steps (``quality``) before a step starts."""
    from c360.quality import config_from

    config_from(settings)


def run_step(spark: SparkSession, settings: Settings, step: str, as_of: date, run_id: str | None = None,
             progress: Progress | None = None) -> StepResult:
    """Run one step and record it in ``ops/run_log``; raises :class:`StepFailed` on failure.

    Holds the lake's lock (:mod:`c360.lock`, reentrant) for the whole step: a second run on
    the same lake raises :class:`c360.lock.LakeBusy` at once, before anything is written."""
    run_id = run_id or uuid.uuid4().hex[:12]
    with lock.for_settings(settings, run_id=run_id, step=step, as_of=as_of):
        return _run_step(spark, settings, step, as_of, run_id, progress)


def _run_step(spark: SparkSession, settings: Settings, step: str, as_of: date, run_id: str,
              progress: Progress | None) -> StepResult:
    _check_step_config(settings)
    started = ops.utcnow()
    before = ops.snapshot_versions(settings.lake)
    reads: dict[str, int | None] = {}
    retries = 0
    while True:
        try:
            with lake.recording_reads() as reads:
                metrics = STEPS[step](spark, settings, as_of, run_id, progress) or {}
            break
        except Exception as exc:
            if retries < TRANSIENT_RETRIES and is_transient_engine_error(exc):
                retries += 1
                log.warning("step %s (run %s): transient engine error, running the step again "
                            "(retry %d of %d): %s: %s", step, run_id, retries, TRANSIENT_RETRIES,
                            type(exc).__name__, str(exc)[:500])
                continue
            error = f"{type(exc).__name__}: {exc}"
            ops.record_step(spark, settings.lake, run_id, step, as_of, "failed", started, {}, error)
            _audit(spark, settings, run_id, step, as_of, "failed", started, before, reads, error)
            raise StepFailed(step, exc) from exc
    if is_dataclass(metrics):
        metrics = asdict(metrics)
    ops.record_step(spark, settings.lake, run_id, step, as_of, "succeeded", started, metrics, None)
    _audit(spark, settings, run_id, step, as_of, "succeeded", started, before, reads, None)
    return StepResult(step, "succeeded", (ops.utcnow() - started).total_seconds(), metrics, retries=retries)


def _audit(spark: SparkSession, settings: Settings, run_id: str, step: str, as_of: date, status: str,
           started, before: dict[str, int], reads: dict[str, int | None], error: str | None) -> None:
    """One ``ops/audit_log`` row: versions read and written, rows in what was written."""
    outputs = _outputs(before, ops.snapshot_versions(settings.lake))
    counts = {t: n for t in outputs if (n := lake.row_count(storage.join(settings.lake, t))) is not None}
    ops.record_audit(spark, settings.lake, run_id=run_id, job=step, as_of=as_of, status=status,
                     started_at=started, inputs=_inputs(settings.lake, reads, before), outputs=outputs,
                     row_counts=counts, error=error)


def run_steps(spark: SparkSession, settings: Settings, as_of: date, steps: list[str], run_id: str | None = None,
              progress: Progress | None = None) -> list[StepResult]:
    run_id = run_id or uuid.uuid4().hex[:12]
    with lock.for_settings(settings, run_id=run_id, step=",".join(steps), as_of=as_of):  # across the steps
        return [run_step(spark, settings, s, as_of, run_id, progress) for s in steps]

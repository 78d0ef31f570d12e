"""The pipeline: named steps in order, each a job function, each recorded in ``ops/run_log``.

``c360 run`` and the Airflow DAGs both call :func:`run_steps` / :func:`run_step`, so a
step does exactly the same thing whoever schedules it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, is_dataclass
from datetime import date
from typing import Any

from pyspark.sql import SparkSession

from c360 import ops
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

    return {"rows": silver.run(spark, settings, progress=progress)}


def _dq_bronze(spark: SparkSession, settings: Settings, as_of: date, run_id: str, progress: Progress | None):
    from jobs import quality

    return quality.run(spark, settings, "bronze", as_of, run_id, progress)


def _dq_silver(spark: SparkSession, settings: Settings, as_of: date, run_id: str, progress: Progress | None):
    from jobs import quality

    return quality.run(spark, settings, "silver", as_of, run_id, progress)


def _profile(spark: SparkSession, settings: Settings, as_of: date, run_id: str, progress: Progress | None):
    from jobs import profile

    return profile.run(spark, settings, as_of, progress=progress)


def _segments(spark: SparkSession, settings: Settings, as_of: date, run_id: str, progress: Progress | None):
    from jobs import segments

    return segments.run(spark, settings, as_of, progress=progress)


def _train(spark: SparkSession, settings: Settings, as_of: date, run_id: str, progress: Progress | None):
    from jobs import train

    return train.run(spark, settings, as_of, progress=progress)


def _score(spark: SparkSession, settings: Settings, as_of: date, run_id: str, progress: Progress | None):
    from jobs import score

    return score.run(spark, settings, as_of, progress=progress)


def _export(spark: SparkSession, settings: Settings, as_of: date, run_id: str, progress: Progress | None):
    from jobs import export

    return export.run(spark, settings, as_of, run_id=run_id, progress=progress)


# Steps in pipeline order. Later issues append profile, segments, train, score, export.
STEPS: dict[str, Callable[..., Any]] = {
    "ingest": _ingest,
    "dq_bronze": _dq_bronze,
    "silver": _silver,
    "dq_silver": _dq_silver,
    "profile": _profile,
    "segments": _segments,
    "train": _train,
    "score": _score,
    "export": _export,
}


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
    """Run one step and record it in ``ops/run_log``; raises :class:`StepFailed` on failure."""
    run_id = run_id or uuid.uuid4().hex[:12]
    _check_step_config(settings)
    started = ops.utcnow()
    try:
        metrics = STEPS[step](spark, settings, as_of, run_id, progress) or {}
    except Exception as exc:
        ops.record_step(spark, settings.lake, run_id, step, as_of, "failed", started, {}, f"{type(exc).__name__}: {exc}")
        raise StepFailed(step, exc) from exc
    if is_dataclass(metrics):
        metrics = asdict(metrics)
    ops.record_step(spark, settings.lake, run_id, step, as_of, "succeeded", started, metrics, None)
    return StepResult(step, "succeeded", (ops.utcnow() - started).total_seconds(), metrics)


def run_steps(spark: SparkSession, settings: Settings, as_of: date, steps: list[str], run_id: str | None = None,
              progress: Progress | None = None) -> list[StepResult]:
    run_id = run_id or uuid.uuid4().hex[:12]
    return [run_step(spark, settings, s, as_of, run_id, progress) for s in steps]

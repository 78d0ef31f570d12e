"""What the Airflow tasks run: the same job functions as ``c360 run``.

The DAG files in ``dags/`` only wire tasks together; each task calls
:func:`run_pipeline_step`, which opens the engine (``c360.engine.spark_session``), runs
``jobs.pipeline.run_step`` for the DAG run's business date with the DAG run id as run id
(so the step is recorded in ``ops/run_log`` exactly as a CLI run would be), and returns the
step's metrics (XCom).

Configuration, highest precedence first: Airflow Variables ``c360_landing``, ``c360_lake``,
``c360_spark_remote``; the environment (``C360_LANDING``, ``C360_LAKE``, ``SPARK_REMOTE``);
the repository's ``conf/``. Relative paths resolve against the repository root (where
``make demo`` writes ``./landing`` and ``./lake``), whatever the worker's directory.

This module imports neither Airflow nor Spark at import time, so DAG files parse fast.
"""

from __future__ import annotations

import json
import os
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from c360.settings import DEFAULT_CONF_DIR, REPO_ROOT, Settings

# Airflow Variables read by every task.
VAR_LANDING = "c360_landing"
VAR_LAKE = "c360_lake"
VAR_REMOTE = "c360_spark_remote"

# One slot: Spark-heavy tasks never run at the same time on one machine (the embedded engine
# uses every core). Created by `make airflow` (airflow pools set c360_spark 1 ...).
SPARK_POOL = "c360_spark"
SPARK_POOL_SLOTS = 1
SPARK_POOL_DESCRIPTION = "c360 Spark-heavy tasks (one at a time per machine)"

# Defaults of every c360 task: retried with exponential back-off (a lost engine or a full
# disk may pass); each step is idempotent (MERGE/overwrite, run_log keyed by run id + step).
DEFAULT_ARGS: dict[str, Any] = {
    "owner": "c360",
    "retries": 2,
    "retry_delay": timedelta(minutes=2),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=30),
    "execution_timeout": timedelta(hours=3),
    "pool": SPARK_POOL,
}

# c360_daily fires at 02:00 bank time on D+1 for business day D (a data interval schedule:
# its logical date is D 02:00). c360_train fires on Monday mornings for the Sunday before.
DAILY_CRON = "0 2 * * *"
DAILY_HOUR = 2
WEEKLY_TRAIN_CRON = "0 6 * * 1"

# Business dates are the bank's; the first date a fresh deployment runs (catchup goes from
# here to today). Override with C360_START_DATE=YYYY-MM-DD; backfill earlier dates with
# `airflow backfill create --dag-id c360_daily --from-date ... --to-date ...`.
DEFAULT_START_DATE = "2026-06-30"


# `make setup` writes this .pth file into the project venv's site-packages: every Python of
# the venv (`uv run airflow ...`, `.venv/bin/airflow ...`) then finds Airflow's home
# (<repo>/airflow_home, made by `make airflow-init` / `make demo`) and this repository's DAGs
# without exported variables. The repository is the venv's parent folder, found at start-up
# (so the clone can move); variables already set win (os.environ.setdefault), and nothing is
# set when <repo>/dags/c360_daily.py is gone.
AIRFLOW_ENV_PTH = "c360_airflow_env.pth"


def airflow_env_pth() -> str:
    """The line of :data:`AIRFLOW_ENV_PTH` (a ``.pth`` line starting with ``import`` is run by
    ``site`` at interpreter start)."""
    return ("import os, sys; _c360 = os.path.dirname(os.path.abspath(sys.prefix)); "
            "os.path.isfile(os.path.join(_c360, 'dags', 'c360_daily.py')) and [os.environ.setdefault(k, v) "
            "for k, v in (('AIRFLOW_HOME', os.path.join(_c360, 'airflow_home')), "
            "('AIRFLOW__CORE__DAGS_FOLDER', os.path.join(_c360, 'dags')), "
            "('AIRFLOW__CORE__LOAD_EXAMPLES', 'False'))]\n")


def install_airflow_env(site_packages: str | Path | None = None) -> Path:
    """Write :data:`AIRFLOW_ENV_PTH` into ``site_packages`` (default: this interpreter's)."""
    import sysconfig

    target = Path(site_packages or sysconfig.get_paths()["purelib"]) / AIRFLOW_ENV_PTH
    target.write_text(airflow_env_pth(), encoding="utf-8")
    return target


def _conf_block(name: str) -> dict:
    """One top-level block of base.yaml + local.yaml, read without loading all settings."""
    conf_dir = Path(os.environ.get("C360_CONF_DIR") or DEFAULT_CONF_DIR)
    out: dict = {}
    for f in ("base.yaml", "local.yaml"):
        path = conf_dir / f
        if path.exists():
            out.update(((yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get(name) or {}))
    return out


def bank_timezone() -> str:
    """The bank's time zone (``bank.timezone``): the DAG's schedule and business dates use it."""
    return str(_conf_block("bank").get("timezone") or "Asia/Shanghai")


def start_date() -> datetime:
    text = os.environ.get("C360_START_DATE") or DEFAULT_START_DATE
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"C360_START_DATE must be a date YYYY-MM-DD, got {text!r}") from None
    return datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(bank_timezone()))


def _variable(name: str) -> str | None:
    """An Airflow Variable, or None (also outside a task, or without Airflow)."""
    try:
        from airflow.sdk import Variable

        value = Variable.get(name, default=None)
    except Exception:  # noqa: BLE001 - not inside a task / no API server: no Variable
        return None
    return (str(value).strip() or None) if value is not None else None


def _resolve(path: Path | str) -> Path | str:
    from c360 import storage

    if storage.is_uri(path):  # s3://bucket/prefix: already absolute
        return str(path)
    p = Path(path).expanduser()
    return p if p.is_absolute() else (REPO_ROOT / p).resolve()


def task_settings(environ: dict[str, str] | None = None) -> Settings:
    """Settings for a task: Variables over environment over ``conf/``; paths made absolute."""
    from c360.settings import load_settings

    settings = load_settings(environ=environ)
    landing = _variable(VAR_LANDING) or settings.landing
    lake = _variable(VAR_LAKE) or settings.lake
    remote = _variable(VAR_REMOTE)
    if remote:
        engine = type(settings.engine)(**{**settings.engine.model_dump(), "remote": remote})  # validated
        settings = settings.model_copy(update={"engine": engine})
    return settings.with_paths(landing=_resolve(landing), lake=_resolve(lake))


def business_date(logical_date: datetime, timezone: str | None = None) -> date:
    """The as_of of a DAG run: its logical date, in the bank's time zone.

    With the daily data-interval schedule the logical date is the start of the business day
    being processed (the run fires when that day is over); ``airflow dags test c360_daily
    2026-06-30`` gives 2026-06-30 as well.
    """
    tz = ZoneInfo(timezone or bank_timezone())
    if logical_date.tzinfo is None:
        return logical_date.date()
    return logical_date.astimezone(tz).date()


def daily_run_logical_date(logical_date: datetime, **_: Any) -> datetime:
    """The logical date of c360_daily's run for the business day before ``logical_date``
    (for ExternalTaskSensor: computed in the bank's time zone, so DST shifts do not matter)."""
    tz = ZoneInfo(bank_timezone())
    day = logical_date.astimezone(tz).date() - timedelta(days=1)
    return datetime(day.year, day.month, day.day, DAILY_HOUR, tzinfo=tz)


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str, ensure_ascii=False))


def run_pipeline_step(step: str, days_back: int = 0, **context: Any) -> dict[str, Any]:
    """The body of every c360 pipeline task: one ``jobs.pipeline`` step for this DAG run.

    ``as_of`` is the run's business date minus ``days_back`` days (a DAG that fires on the
    morning after the day it processes uses 1). A failed quality gate or an invalid
    configuration fails the task without retries (the same data and configuration would fail
    again); other errors are retried by Airflow, among them :class:`c360.lock.LakeBusy` when
    another run (a ``c360 run``, another deployment) holds the lake: the retry with back-off
    tries again once it is done.
    """
    from c360.engine import spark_session
    from c360.lock import LakeBusy
    from c360.quality import QualityGateFailed
    from c360.settings import ConfigError
    from jobs.pipeline import StepFailed, run_step

    settings = task_settings()
    logical = context.get("logical_date") or context.get("data_interval_start")
    if logical is None:
        raise ValueError("the task context has no logical_date")
    as_of = business_date(logical, settings.bank.timezone) - timedelta(days=days_back)
    run_id = str(context.get("run_id") or f"airflow_{as_of.isoformat()}")
    try:
        with spark_session(settings) as engine:
            result = run_step(engine.spark, settings, step, as_of, run_id=run_id)
    except LakeBusy:
        raise  # retried: the lake is free again once the other run ends
    except (StepFailed, ConfigError) as exc:
        cause = getattr(exc, "cause", exc)
        if isinstance(cause, (QualityGateFailed, ConfigError)):
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(str(exc)) from exc
        raise
    return _json_safe({"step": step, "as_of": as_of.isoformat(), "run_id": run_id,
                       "duration_s": round(result.duration_s, 1), "metrics": result.metrics})


__all__ = ["install_airflow_env", "airflow_env_pth", "AIRFLOW_ENV_PTH", "run_pipeline_step", "task_settings", "business_date", "bank_timezone", "start_date",
           "daily_run_logical_date", "DAILY_CRON", "WEEKLY_TRAIN_CRON",
           "DEFAULT_ARGS", "SPARK_POOL", "SPARK_POOL_SLOTS", "VAR_LANDING", "VAR_LAKE", "VAR_REMOTE"]

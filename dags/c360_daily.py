"""c360_daily: the customer-360 pipeline for one business day, every day, in order.

Each task runs one step of ``jobs.pipeline`` (the same job function as ``c360 run``) for
the business day of the DAG run (its logical date in the bank's time zone), recorded in
``<lake>/ops/run_log`` under the DAG run id. The run for day D starts at 02:00 (bank time)
on D+1. ``catchup`` and ``max_active_runs=1`` make missed and backfilled days run one
after another, oldest first. A failed critical data-quality gate fails its task at once
(no retries) and nothing downstream runs for that day.

Configuration: Airflow Variables ``c360_landing``, ``c360_lake``, ``c360_spark_remote``,
else the environment (``C360_LANDING``, ``C360_LAKE``, ``SPARK_REMOTE``), else ``conf/``.
"""

from airflow.sdk import chain, dag, task
from airflow.timetables.interval import CronDataIntervalTimetable

from jobs.airflow_tasks import DAILY_CRON, DEFAULT_ARGS, bank_timezone, run_pipeline_step, start_date

# The pipeline steps this DAG runs, in order (names of jobs.pipeline.STEPS).
# Adding a step is one line here. Training runs weekly in c360_train; score and export
# use the champion it promotes (and skip, recorded in ops/run_log, before the first one).
STEPS = [
    "ingest",
    "dq_bronze",
    "silver",
    "dq_silver",
    "profile",
    "segments",
    "score",
    "export",
]


@dag(
    dag_id="c360_daily",
    schedule=CronDataIntervalTimetable(DAILY_CRON, timezone=bank_timezone()),
    start_date=start_date(),
    catchup=True,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["c360"],
    doc_md=__doc__,
)
def c360_daily():
    @task
    def step(name: str, **context):
        return run_pipeline_step(name, **context)

    chain(*[step.override(task_id=name)(name) for name in STEPS])


c360_daily()

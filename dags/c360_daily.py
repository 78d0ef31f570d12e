"""c360_daily: the customer-360 pipeline for one business day, every day, in order.

Each task runs one step of ``jobs.pipeline`` (the same job function as ``c360 run``) for
the business day of the DAG run (its logical date in the bank's time zone), recorded in
``<lake>/ops/run_log`` under the DAG run id. The run for day D starts at 02:00 (bank time)
on D+1. ``catchup`` and ``max_active_runs=1`` make missed days run one after another,
oldest first; every task also ``depends_on_past`` (a step for day D runs only once the same
step succeeded for the day before) and the first one ``wait_for_downstream`` (day D starts
only once day D-1's ingest and its quality gate succeeded), so a backfill, which may start
several runs at once, still processes the days in order and stops at a failed day:
``airflow backfill create --dag-id c360_daily --from-date 2026-06-01 --to-date 2026-06-29
--reprocess-behavior failed`` (Airflow asks for a reprocess behaviour when tasks depend on
the past). A failed critical data-quality gate (dq_bronze, dq_silver, dq_gold) fails its
task at once (no retries) and nothing downstream runs for that day.

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
    "kpis",
    "score",
    "dq_gold",
    "export",
    "recovery",
]

# Each day builds on the one before (silver and gold history, segment migration, export
# changes): a step runs only when it succeeded for the previous day; retries, back-off,
# timeouts and the c360_spark pool come from DEFAULT_ARGS.
DAILY_ARGS = {**DEFAULT_ARGS, "depends_on_past": True}


@dag(
    dag_id="c360_daily",
    schedule=CronDataIntervalTimetable(DAILY_CRON, timezone=bank_timezone()),
    start_date=start_date(),
    catchup=True,
    max_active_runs=1,
    default_args=DAILY_ARGS,
    tags=["c360"],
    doc_md=__doc__,
)
def c360_daily():
    @task
    def step(name: str, **context):
        return run_pipeline_step(name, **context)

    chain(*[step.override(task_id=name, wait_for_downstream=(i == 0))(name) for i, name in enumerate(STEPS)])


c360_daily()

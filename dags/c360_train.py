"""c360_train: retrain the next-best-product and attrition models once a week.

Runs on Monday mornings (06:00 bank time) for the business day that just ended (Sunday):
first waits until ``c360_daily`` has processed that day (its DAG run for Sunday succeeded:
silver is complete and passed its quality gates), then runs the pipeline step ``train``
(the same job function as ``c360 run --steps train``), which registers new model versions
and promotes them only through the champion/challenger gate. No catchup: only the latest
week matters.
"""

from datetime import timedelta

from airflow.providers.standard.sensors.external_task import ExternalTaskSensor
from airflow.sdk import chain, dag, task
from airflow.timetables.trigger import CronTriggerTimetable

from jobs.airflow_tasks import (DEFAULT_ARGS, WEEKLY_TRAIN_CRON, bank_timezone, daily_run_logical_date,
                                run_pipeline_step, start_date)


@dag(
    dag_id="c360_train",
    schedule=CronTriggerTimetable(WEEKLY_TRAIN_CRON, timezone=bank_timezone()),
    start_date=start_date(),
    catchup=False,
    max_active_runs=1,
    default_args={**DEFAULT_ARGS, "retries": 1, "execution_timeout": timedelta(hours=6)},
    tags=["c360"],
    doc_md=__doc__,
)
def c360_train():
    wait_for_daily = ExternalTaskSensor(
        task_id="wait_for_daily",
        external_dag_id="c360_daily",
        external_task_id=None,  # the whole DAG run
        execution_date_fn=daily_run_logical_date,  # c360_daily's run for the day before
        allowed_states=["success"],
        failed_states=["failed"],
        mode="reschedule",
        poke_interval=timedelta(minutes=15).total_seconds(),
        timeout=timedelta(hours=20).total_seconds(),
        pool="default_pool",  # waiting holds no Spark slot
        retries=0,
    )

    @task(task_id="train")
    def train(**context):
        return run_pipeline_step("train", days_back=1, **context)

    chain(wait_for_daily, train())


c360_train()

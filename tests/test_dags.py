"""Airflow DAGs: they import cleanly, wire the pipeline steps in order, and run end to end.

Airflow reads its configuration when first imported, so a session fixture points
AIRFLOW_HOME at a temporary folder (SQLite metadata database, this repository's dags/)
before anything imports ``airflow``, then runs ``airflow db migrate`` and creates the pool
and the Variables through Airflow's own command line (in this process, to spare the start
of another interpreter). ``dag.test()`` runs the tasks in this process, on the same
embedded Sail engine as the other tests.
"""

from __future__ import annotations

import json

import sys
import warnings
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from c360 import lake

REPO = Path(__file__).resolve().parents[1]
DAGS = REPO / "dags"
DAILY_STEPS = ["ingest", "dq_bronze", "silver", "dq_silver", "profile", "segments", "kpis", "score", "dq_gold",
               "export", "recovery"]
AS_OF = date(2026, 6, 30)


def airflow_cli(*args: str) -> None:
    """``airflow <args>``, run in this process."""
    from airflow.cli import cli_parser

    parsed = cli_parser.get_parser().parse_args(list(args))
    parsed.func(parsed)


@pytest.fixture(scope="session")
def airflow_env(tmp_path_factory):
    """A throw-away Airflow installation: AIRFLOW_HOME, SQLite database, pool, our dags/."""
    home = tmp_path_factory.mktemp("airflow_home")
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
    }
    if "airflow" in sys.modules:
        from airflow import configuration

        if Path(configuration.AIRFLOW_HOME) != home:
            pytest.fail("airflow was imported before the airflow_env fixture set AIRFLOW_HOME")
    mp = pytest.MonkeyPatch()
    for k, v in env.items():
        mp.setenv(k, v)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        airflow_cli("db", "migrate")
        from jobs.airflow_tasks import SPARK_POOL, SPARK_POOL_DESCRIPTION, SPARK_POOL_SLOTS

        airflow_cli("pools", "set", SPARK_POOL, str(SPARK_POOL_SLOTS), SPARK_POOL_DESCRIPTION)
    yield home
    mp.undo()


@pytest.fixture(scope="session")
def dagbag(airflow_env):
    from airflow.dag_processing.dagbag import DagBag

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return DagBag(dag_folder=str(DAGS), known_pools={"default_pool", "c360_spark"})


def test_every_dag_file_imports_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert {"c360_daily", "c360_train"} <= set(dagbag.dag_ids)
    assert all(f.name.startswith("c360_") or f.name == "__init__.py" for f in DAGS.glob("*.py"))


def test_daily_dag_runs_the_pipeline_steps_in_order(dagbag):
    from airflow.timetables.interval import CronDataIntervalTimetable

    dag = dagbag.get_dag("c360_daily")
    assert [t.task_id for t in dag.topological_sort()] == DAILY_STEPS
    for before, after in zip(DAILY_STEPS, DAILY_STEPS[1:]):
        assert dag.get_task(after).upstream_task_ids == {before}
    assert dag.get_task(DAILY_STEPS[0]).upstream_task_ids == set()
    assert dag.catchup is True and dag.max_active_runs == 1
    assert isinstance(dag.timetable, CronDataIntervalTimetable) and "0 2 * * *" in dag.timetable.summary
    for t in dag.tasks:
        assert t.pool == "c360_spark"
        assert t.retries >= 1 and t.retry_exponential_backoff
        assert t.execution_timeout and t.execution_timeout <= timedelta(hours=6)
        # backfills (which may start several runs at once) still go day by day, oldest first:
        # each step waits for the same step of the day before
        assert t.depends_on_past is True
    # and a day starts only when the day before has ingested and passed its bronze gate
    assert [t.task_id for t in dag.tasks if t.wait_for_downstream] == ["ingest"]
    assert dag.get_task("ingest").downstream_task_ids == {"dq_bronze"}
    assert dag.get_task("dq_gold").upstream_task_ids == {"score"}
    assert dag.get_task("export").upstream_task_ids == {"dq_gold"}
    assert dag.get_task("recovery").upstream_task_ids == {"export"}


def test_train_dag_waits_for_the_daily_run_of_the_day_before(dagbag):
    from zoneinfo import ZoneInfo

    from airflow.providers.standard.sensors.external_task import ExternalTaskSensor
    from airflow.timetables.trigger import CronTriggerTimetable

    from jobs.airflow_tasks import business_date, daily_run_logical_date

    dag = dagbag.get_dag("c360_train")
    assert [t.task_id for t in dag.topological_sort()] == ["wait_for_daily", "train"]
    assert dag.get_task("train").upstream_task_ids == {"wait_for_daily"}
    assert dag.catchup is False and dag.max_active_runs == 1
    assert isinstance(dag.timetable, CronTriggerTimetable) and "0 6 * * 1" in dag.timetable.summary
    sensor = dag.get_task("wait_for_daily")
    assert isinstance(sensor, ExternalTaskSensor) and sensor.external_dag_id == "c360_daily"
    assert sensor.mode == "reschedule" and sensor.pool != "c360_spark"
    assert dag.get_task("train").pool == "c360_spark"
    # Monday 2026-07-06 06:00 -> c360_daily's run for Sunday 2026-07-05 (logical date 02:00 that day)
    shanghai = ZoneInfo("Asia/Shanghai")
    monday = datetime(2026, 7, 6, 6, tzinfo=shanghai)
    target = daily_run_logical_date(monday)
    assert target == datetime(2026, 7, 5, 2, tzinfo=shanghai)
    from airflow.timetables.base import TimeRestriction

    daily = dagbag.get_dag("c360_daily").timetable  # the scheduled daily run at or after target is target
    info = daily.next_dagrun_info(last_automated_data_interval=None,
                                  restriction=TimeRestriction(earliest=target, latest=None, catchup=True))
    assert info.logical_date == target
    assert business_date(monday, "Asia/Shanghai") - timedelta(days=1) == date(2026, 7, 5)  # train's as_of


@pytest.mark.unit
def test_business_date_is_the_logical_date_in_the_bank_time_zone():
    from zoneinfo import ZoneInfo

    from jobs.airflow_tasks import business_date

    shanghai = ZoneInfo("Asia/Shanghai")
    # scheduled run for 2026-06-30: interval starts 02:00 bank time that day
    assert business_date(datetime(2026, 6, 30, 2, tzinfo=shanghai), "Asia/Shanghai") == AS_OF
    # `airflow dags test c360_daily 2026-06-30`: midnight UTC
    assert business_date(datetime(2026, 6, 30, tzinfo=ZoneInfo("UTC")), "Asia/Shanghai") == AS_OF


def test_task_settings_come_from_variables_then_environment_then_conf(airflow_env, monkeypatch, tmp_path):
    import jobs.airflow_tasks as tasks

    monkeypatch.delenv("SPARK_REMOTE", raising=False)
    monkeypatch.setenv("C360_LANDING", "relative/landing")
    monkeypatch.setenv("C360_LAKE", str(tmp_path / "env_lake"))
    # a Variable wins over the environment (here from Airflow's environment-variable backend)
    monkeypatch.setenv("AIRFLOW_VAR_C360_LAKE", str(tmp_path / "var_lake"))
    monkeypatch.setenv("AIRFLOW_VAR_C360_SPARK_REMOTE", "sc://spark-connect.internal:15002")
    monkeypatch.setattr(tasks, "_variable", lambda name, real=tasks._variable: real(name)
                        if name != tasks.VAR_LANDING else None)
    s = tasks.task_settings()
    assert s.lake == tmp_path / "var_lake"
    assert s.engine.remote == "sc://spark-connect.internal:15002"
    # no Variable: the environment; a relative path resolves against the repository root
    assert s.landing == REPO / "relative" / "landing"
    monkeypatch.setattr(tasks, "_variable", lambda name: None)
    monkeypatch.delenv("C360_LANDING")
    s = tasks.task_settings()
    assert s.lake == tmp_path / "env_lake" and s.landing == REPO / "landing" and s.engine.remote is None
    monkeypatch.setattr(tasks, "_variable",
                        lambda name: "http://not-spark-connect" if name == tasks.VAR_REMOTE else None)
    with pytest.raises(Exception, match="must be a Spark Connect URL"):
        tasks.task_settings()


def test_a_failed_quality_gate_fails_the_task_without_retries(airflow_env, monkeypatch):
    from contextlib import contextmanager
    from types import SimpleNamespace

    from airflow.sdk.exceptions import AirflowFailException

    import c360.engine
    import jobs.airflow_tasks as tasks
    import jobs.pipeline
    from c360.quality import QualityGateFailed
    from c360.settings import ConfigError

    @contextmanager
    def no_engine(settings):
        yield SimpleNamespace(spark=None)

    def failing(cause):
        def run_step(spark, settings, step, as_of, run_id=None):
            raise jobs.pipeline.StepFailed(step, cause)
        return run_step

    monkeypatch.setattr(c360.engine, "spark_session", no_engine)
    monkeypatch.setattr(tasks, "_variable", lambda name: None)
    context = {"logical_date": datetime(2026, 6, 30, 2), "run_id": "r1"}
    gate = QualityGateFailed([SimpleNamespace(message="silver/transactions expect_column_values_to_be_unique"
                                                      "(txn_id): 2 unexpected")])
    monkeypatch.setattr(jobs.pipeline, "run_step", failing(gate))
    with pytest.raises(AirflowFailException, match=r"quality gate failed: silver/transactions"):
        tasks.run_pipeline_step("dq_silver", **context)
    monkeypatch.setattr(jobs.pipeline, "run_step", failing(ConfigError("quality.yaml: quality.docs: bad")))
    with pytest.raises(AirflowFailException, match="quality.yaml"):
        tasks.run_pipeline_step("dq_silver", **context)
    monkeypatch.setattr(jobs.pipeline, "run_step", failing(OSError("disk full")))
    with pytest.raises(jobs.pipeline.StepFailed):  # anything else: Airflow retries
        tasks.run_pipeline_step("ingest", **context)


def test_the_silver_task_without_a_pii_key_fails_without_retries(airflow_env, monkeypatch, tmp_path):
    """An Airflow deployment given neither a key nor C360_ENV=development: the silver task
    fails at once (no retry would help), naming how to give a key; no token is made."""
    from airflow.sdk.exceptions import AirflowFailException

    import jobs.airflow_tasks as tasks

    for var in ("C360_ENV", "C360_PII_KEY", "C360_CONF_DIR", "SPARK_REMOTE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("C360_LAKE", str(tmp_path / "lake"))
    monkeypatch.setenv("C360_LANDING", str(tmp_path / "landing"))
    monkeypatch.setattr(tasks, "_variable", lambda name: None)
    with pytest.raises(AirflowFailException, match=r"no PII key \(env=production\).*C360_PII_KEY"):
        tasks.run_pipeline_step("silver", logical_date=datetime(2026, 6, 30, 2), run_id="no-key")


def build_landing(landing: Path) -> str:
    """The generated small bank when the generator exists, else the hand-written one."""
    try:
        from c360.synth import generate
    except ImportError:
        generate = None
    if generate is not None:
        generate(customers=40, days=3, as_of=AS_OF, seed=7, landing=landing, dirty_rate=0.0)
        return "synth"
    from test_quality import write_small_bank

    write_small_bank(landing)
    return "hand-written"


def test_daily_dag_runs_end_to_end(airflow_env, dagbag, engine, tmp_path):
    """``dag.test`` on a small bank: every step succeeds and writes its tables and run_log rows."""
    import pendulum

    landing, lake_dir = tmp_path / "landing", tmp_path / "lake"
    origin = build_landing(landing)
    airflow_cli("variables", "set", "c360_landing", str(landing))
    airflow_cli("variables", "set", "c360_lake", str(lake_dir))
    dag = dagbag.get_dag("c360_daily")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dr = dag.test(logical_date=pendulum.datetime(2026, 6, 30, 2, tz="Asia/Shanghai"))
    assert dr.state == "success", f"DAG run failed on the {origin} bank"
    spark = engine.spark

    log = lake.read(spark, lake.table_path(lake_dir, "ops", "run_log")).where(f"run_id = '{dr.run_id}'").collect()
    assert sorted((r.step, r.status, r.as_of) for r in log) == sorted((s, "succeeded", AS_OF) for s in DAILY_STEPS)
    for name in ("customers", "transactions", "holdings"):
        assert lake.read(spark, lake.table_path(lake_dir, "bronze", name)).count() > 0
        assert lake.read(spark, lake.table_path(lake_dir, "silver", name)).count() > 0
    dq = lake.read(spark, lake.table_path(lake_dir, "ops", "dq_results")).where(f"run_id = '{dr.run_id}'")
    assert dq.count() > 50 and dq.where("NOT success AND severity = 'critical'").count() == 0
    assert (lake_dir / "reports" / "dq" / "index.html").is_file()
    for table in ("customer_360", "customer_segments", "personas"):
        assert lake.read(spark, lake.table_path(lake_dir, "gold", table)).where(f"as_of_date = DATE'{AS_OF}'").count() > 0
    # no model has been trained in this lake: scoring and export skip, and say why
    score = next(r for r in log if r.step == "score")
    assert "no 'champion' version" in json.loads(score.metrics)["skipped"]
    # the service-recovery list is still made, without the churn warning, and says why
    recovery = json.loads(next(r for r in log if r.step == "recovery").metrics)
    assert recovery["attrition"]["skipped"].startswith("no attrition model: ")
    assert "champion" in recovery["attrition"]["skipped"]
    assert recovery["by_reason"]["high_attrition_risk"] == 0


SUNDAY = date(2026, 7, 5)


def small_models_conf(tmp_path: Path) -> Path:
    """A copy of conf/ whose local.yaml trains small models on few snapshots (as tests/test_train.py)."""
    import shutil

    from c360.settings import CONF_FILES

    conf = tmp_path / "conf"
    conf.mkdir()
    for name in ("base.yaml", *CONF_FILES):
        if (REPO / "conf" / name).exists():
            shutil.copy(REPO / "conf" / name, conf / name)
    for name in (REPO / "conf").glob("*.yaml"):  # files read by name (sentiment lexicon...)
        if not (conf / name.name).exists() and name.name != "local.yaml":
            shutil.copy(name, conf / name.name)
    small = {"n_estimators": 60, "num_leaves": 15, "min_child_samples": 20}
    (conf / "local.yaml").write_text(json.dumps({"models": {
        "next_best_product": {"snapshots": 4, "ranker": small, "binary": small},
        "attrition": {"snapshots": 3, "params": small}}}), encoding="utf-8")
    return conf


@pytest.mark.slow
def test_train_dag_runs_end_to_end_after_the_daily_run(airflow_env, dagbag, engine, tmp_path, monkeypatch):
    """c360_daily for Sunday, then c360_train on Monday morning: its sensor finds Sunday's
    successful daily run (the real wait, satisfied), training registers new model versions."""
    import pendulum
    from c360.synth import generate

    from jobs.airflow_tasks import task_settings
    from models.registry import mlflow_session

    landing, lake_dir = tmp_path / "landing", tmp_path / "lake"
    generate(customers=700, days=245, as_of=SUNDAY, seed=3, landing=landing, dirty_rate=0.0)
    airflow_cli("variables", "set", "c360_landing", str(landing))
    airflow_cli("variables", "set", "c360_lake", str(lake_dir))
    monkeypatch.setenv("C360_CONF_DIR", str(small_models_conf(tmp_path)))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        daily = dagbag.get_dag("c360_daily").test(logical_date=pendulum.datetime(2026, 7, 5, 2, tz="Asia/Shanghai"))
        assert daily.state == "success"
        dr = dagbag.get_dag("c360_train").test(logical_date=pendulum.datetime(2026, 7, 6, 6, tz="Asia/Shanghai"))
    assert dr.state == "success"
    assert {ti.task_id: ti.state for ti in dr.get_task_instances()} == {"wait_for_daily": "success",
                                                                         "train": "success"}
    spark = engine.spark
    log = lake.read(spark, lake.table_path(lake_dir, "ops", "run_log")).where(f"run_id = '{dr.run_id}'").collect()
    assert [(r.step, r.status, r.as_of) for r in log] == [("train", "succeeded", SUNDAY)]
    metrics = json.loads(log[0].metrics)
    nbp, att = metrics["next_best_product"], metrics["attrition"]
    assert (nbp["oot_snapshot"], att["oot_snapshot"]) == ("2026-05-31", "2026-03-31")
    assert metrics["tracking_uri"] == f"sqlite:///{lake_dir.resolve()}/mlflow.db"

    # the MLflow registry of this lake: version 1 of each model, champion when it beat the baseline
    settings = task_settings().with_paths(lake=lake_dir)  # (Variables are read inside tasks only)
    with mlflow_session(settings) as client:
        for name, out in (("next_best_product", nbp), ("attrition_risk", att)):
            versions = client.search_model_versions(f"name = '{name}'")
            assert [str(v.version) for v in versions] == ["1"]
            alias = "champion" if out["promoted"] else "challenger"
            assert out["aliases"] == {alias: "1"}
            assert str(client.get_model_version_by_alias(name, alias).version) == "1"
            assert {k: str(v) for k, v in client.get_registered_model(name).aliases.items()} == {alias: "1"}
            assert versions[0].run_id == out["run_id"]


@pytest.mark.unit
def test_venv_pth_points_airflow_at_the_repository_unless_told_otherwise(tmp_path):
    """The .pth `make setup` writes: AIRFLOW_HOME and the DAGs folder of the repository the
    venv sits in; variables already set win; nothing without the repository's DAGs."""
    import os
    import subprocess

    from jobs.airflow_tasks import install_airflow_env

    site_dir = tmp_path / "repo" / ".venv" / "site-packages"
    site_dir.mkdir(parents=True)
    assert install_airflow_env(site_dir).name == "c360_airflow_env.pth"
    keys = ("AIRFLOW_HOME", "AIRFLOW__CORE__DAGS_FOLDER", "AIRFLOW__CORE__LOAD_EXAMPLES")

    def env_after_site(**preset: str) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")} | preset
        code = (f"import json, os, sys; sys.prefix = {str(tmp_path / 'repo' / '.venv')!r}; import site; "
                f"site.addsitedir({str(site_dir)!r}); print(json.dumps({{k: os.environ.get(k) for k in {keys!r}}}))")
        out = subprocess.run([sys.executable, "-S", "-c", code], env=env, capture_output=True, text=True, check=True)
        return json.loads(out.stdout)

    root = tmp_path / "repo"
    assert env_after_site() == dict.fromkeys(keys)  # no dags/c360_daily.py: not a c360 repository
    (root / "dags").mkdir()
    (root / "dags" / "c360_daily.py").write_text("", encoding="utf-8")
    assert env_after_site() == {"AIRFLOW_HOME": str(root / "airflow_home"),
                                "AIRFLOW__CORE__DAGS_FOLDER": str(root / "dags"),
                                "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    assert env_after_site(AIRFLOW_HOME="/srv/airflow")["AIRFLOW_HOME"] == "/srv/airflow"  # explicit wins

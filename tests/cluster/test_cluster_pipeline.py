"""The whole pipeline on a real Spark cluster with its lake on S3, checked against embedded Sail.

A real S3 API server is started first (moto in server mode on 127.0.0.1), then a Spark
standalone cluster (``c360.cluster.up``: a master, two workers of one core each, a Spark
Connect server with Delta Lake and Hadoop's S3A connector, each its own JVM;
:func:`c360.cluster.s3a_conf` points S3A at the server, keys from the environment only).
One small generated bank is uploaded to ``s3://<bucket>/bank/landing`` and run twice with
``c360 run`` (every step, the CLI as an operator runs it) from that SAME landing zone: once
with ``SPARK_REMOTE`` set to the cluster and the lake on S3 (``s3://<bucket>/c360/lake``:
the JVM reads and writes the Delta tables through S3A, the workers' Python reads the
deliveries through pyarrow, the driver's Python the Delta logs, reports and CRM export
through ``deltalake`` and pyarrow), once on the embedded Sail engine into a local lake.
Then every gold and marketing table is compared: the same tables, the same keys, equal
values (floats within :data:`REL_TOL`/:data:`ABS_TOL`), the same recommended products for
at least 99% of customers. The master's JSON and the Connect server's REST API show that
the work ran on the workers' executors. Every process the test started is stopped at the
end, also on failure (``Cluster.stop``: a process group kill, from ``finally`` and
``atexit``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
import yaml

from c360 import cluster as cluster_mod
from c360 import lake, storage

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(5400)]

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from objectstore import moto_store  # noqa: E402  (tests/ is not a package)

AS_OF = date(2026, 6, 30)
CUSTOMERS, DAYS, SEED = 400, 240, 7

# Floats: the engines sum and average in different orders (partitioned differently), and the
# models are trained on features that may differ in their last bits, so scores agree to
# about 1e-6; compare within these.
REL_TOL, ABS_TOL = 1e-6, 1e-9
# Columns that must differ between two runs, whatever the engine: when and by which run a row
# was written, and which MLflow run or model version made it.
VOLATILE = {"run_id", "scored_at", "computed_at", "created_at", "updated_at", "exported_at", "loaded_at",
            "generated_at", "model_run_id", "_commit_version", "batch_id", "ingested_at"}
# Outcomes of recommendations made before as_of: a first run has none (on either engine).
EMPTY_ON_A_FIRST_RUN = {"gold/recommendation_outcomes"}
# Recommendation ranks may swap on near-equal scores: compared as per-customer sets (>= 99%).
RANKED_TABLES = {"gold/recommendations"}

# Small models, so that training takes seconds: the comparison is of engines, not models.
# Two shuffle partitions: the cluster has two cores, and every partition is a task to
# schedule (8 by default).
LOCAL_CONF = {"engine": {"shuffle_partitions": 2}, "models": {
    "next_best_product": {"snapshots": 4,
                          "ranker": {"n_estimators": 40, "num_leaves": 15, "min_child_samples": 20},
                          "binary": {"n_estimators": 40, "num_leaves": 15, "min_child_samples": 20}},
    "attrition": {"snapshots": 2, "params": {"n_estimators": 40, "num_leaves": 15, "min_child_samples": 20}},
}}
# (Two attrition snapshots: its month ends, Feb and Mar, are among the next-best-product
# model's four, Feb to May, so training computes four customer 360 snapshots, not five;
# each takes minutes on the cluster.)


@pytest.fixture(scope="module")
def s3():
    with moto_store() as store:
        yield store


@pytest.fixture(scope="module")
def cluster(s3, tmp_path_factory):
    c = cluster_mod.up(tmp_path_factory.mktemp("cluster"), say=lambda m: print(f"cluster: {m}", flush=True),
                       packages=(cluster_mod.HADOOP_AWS_PACKAGE,),
                       conf=cluster_mod.s3a_conf(s3.endpoint, os.environ["AWS_REGION"]))
    pids = dict(c.pids)
    try:
        yield c
    finally:
        c.stop()
        alive = [name for name, pid in pids.items() if cluster_mod._alive(pid)]
        assert not alive, f"still running after stop: {alive}"


def _c360_run(env: dict[str, str], lake_dir: Path | str, landing: str, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "c360.cli", "run", "--as-of", AS_OF.isoformat(), "--landing", str(landing),
           "--lake", str(lake_dir), "--debug"]
    out = open(log, "w", encoding="utf-8")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=log.parent)


@pytest.fixture(scope="module")
def runs(cluster, s3, tmp_path_factory):
    """Both pipelines, run at the same time (the cluster waits on its JVMs much of the time)."""
    from c360.synth import generate

    root = tmp_path_factory.mktemp("bank")
    generated = root / "generated"
    generate(customers=CUSTOMERS, days=DAYS, as_of=AS_OF, seed=SEED, landing=generated)
    bucket = s3.new_bucket()
    landing = f"s3://{bucket}/bank/landing"
    for p in sorted(generated.rglob("*")):
        if p.is_file() and not p.relative_to(generated).as_posix().startswith("_meta/"):
            storage.write_bytes(storage.join(landing, p.relative_to(generated).as_posix()), p.read_bytes())
    conf = root / "conf"
    shutil.copytree(ROOT / "conf", conf, ignore=shutil.ignore_patterns("local.yaml"))
    (conf / "local.yaml").write_text(yaml.safe_dump(LOCAL_CONF), encoding="utf-8")
    base = {k: v for k, v in os.environ.items() if k not in ("SPARK_REMOTE", "C360_LAKE", "C360_LANDING")}
    base.update(C360_CONF_DIR=str(conf), C360_ENV="development", PYTHONPATH=str(ROOT))
    lakes = {"cluster": f"s3://{bucket}/c360/lake", "sail": root / "sail" / "lake"}
    envs = {"cluster": {**base, "SPARK_REMOTE": cluster.connect_url,
                        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'cluster' / 'mlflow.db'}"},
            "sail": base}
    procs, seconds = {}, {}
    started = time.monotonic()
    for name in ("cluster", "sail"):
        (root / name).mkdir()
        procs[name] = _c360_run(envs[name], lakes[name], landing, root / name / "run.log")
    try:
        for name, p in procs.items():
            p.wait(timeout=5000)
            seconds[name] = round(time.monotonic() - started, 1)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
    for name, p in procs.items():
        log = (root / name / "run.log").read_text(encoding="utf-8", errors="replace")
        assert p.returncode == 0, f"c360 run on {name} exited {p.returncode}:\n{log[-6000:]}"
        print(f"c360 run on {name}: {seconds[name]} s", flush=True)
    return {**lakes, "root": root}


def test_strings_from_map_in_arrow_are_written_plain(cluster, tmp_path):
    """Spark 4.2 types a ``mapInArrow`` result's strings ``string collate UTF8_BINARY``, and
    Delta on the JVM wrote that into the schema, which the ``deltalake`` package cannot read
    (the landing reader is a ``mapInArrow``: ingest failed on the cluster). ``lake`` writes
    them as plain strings."""
    from pyspark.sql import SparkSession

    def identity(batches):  # defined here: pickled by value (the workers cannot import tests/)
        yield from batches

    spark = SparkSession.builder.remote(cluster.connect_url).create()
    try:
        df = spark.createDataFrame([("a", ["x"]), ("b", None)], "s string, l array<string>") \
            .mapInArrow(identity, "s string, l array<string>")
        path = str(tmp_path / "t")
        lake.overwrite(df, path)
        assert lake.row_count(path) == 2  # read by the deltalake package
        log = "".join(p.read_text() for p in (tmp_path / "t" / "_delta_log").glob("*.json"))
        assert "collate" not in log
        assert sorted(lake.read(spark, path).collect()) == [("a", ["x"]), ("b", None)]
    finally:
        spark.stop()


def _tables(lake_dir: Path | str) -> list[str]:
    return [t for t in lake.tables(lake_dir) if t.split("/")[0] in ("gold", "marketing") and "_staging" not in t]


def _frame(lake_dir: Path | str, table: str) -> pd.DataFrame:
    return lake.delta_table(storage.join(lake_dir, table)).to_pandas()  # local, or S3 through the URI


def _keys(df: pd.DataFrame) -> list[str]:
    """Columns that identify a row: every column that is not a float and not volatile."""
    return sorted(c for c in df.columns if c not in VOLATILE and not pd.api.types.is_float_dtype(df[c]))


def _canon(v):
    """A nested value (list, map, struct, JSON text) as comparable text, its floats to 6
    significant digits (persona centroids and KPIs hold floats computed by either engine)."""
    import numpy as np

    if isinstance(v, float | np.floating):
        return "nan" if v != v else f"{float(v):.6g}"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_canon(x)}" for k, x in sorted(v.items())) + "}"
    if isinstance(v, list | tuple | np.ndarray):
        return "[" + ", ".join(_canon(x) for x in v) + "]"
    if isinstance(v, str) and v[:1] in ("{", "["):  # JSON text (persona KPIs, features)
        try:
            return _canon(json.loads(v))
        except ValueError:
            pass
    return str(v)


def _normalise(df: pd.DataFrame) -> pd.DataFrame:
    df = df.drop(columns=[c for c in df.columns if c in VOLATILE])
    for c in df.columns:
        if df[c].dtype == object:  # text, dates, lists, maps: compared as canonical text
            df[c] = df[c].map(lambda v: None if v is None else _canon(v))
    return df


def _compare(table: str, a: pd.DataFrame, b: pd.DataFrame) -> list[str]:
    """Differences between the same table of the two lakes, as sentences (none: equal)."""
    a, b = _normalise(a), _normalise(b)
    if sorted(a.columns) != sorted(b.columns):
        return [f"{table}: columns differ: {sorted(set(a.columns) ^ set(b.columns))}"]
    keys = _keys(a)
    if len(a) != len(b):
        return [f"{table}: {len(a)} rows on the cluster, {len(b)} on Sail"]
    a = a.sort_values(keys, na_position="first", kind="stable").reset_index(drop=True)
    b = b[a.columns].sort_values(keys, na_position="first", kind="stable").reset_index(drop=True)
    problems = []
    key_diff = (a[keys].astype(str) != b[keys].astype(str)).any(axis=1)
    if key_diff.any():
        i = int(key_diff.idxmax())
        problems.append(f"{table}: {int(key_diff.sum())} rows differ outside float columns, e.g. "
                        f"cluster {a.loc[i, keys].to_dict()} vs sail {b.loc[i, keys].to_dict()}")
        return problems
    for c in a.columns:
        if c in keys:
            continue
        x, y = a[c].astype(float), b[c].astype(float)
        both_null = x.isna() & y.isna()
        close = (x - y).abs() <= ABS_TOL + REL_TOL * y.abs()
        bad = ~(both_null | close)
        if bad.any():
            i = int(bad.idxmax())
            problems.append(f"{table}.{c}: {int(bad.sum())} values differ, e.g. {x[i]!r} vs {y[i]!r} "
                            f"at {a.loc[i, keys].to_dict()}")
    return problems


def test_every_gold_and_marketing_table_is_the_same_on_both_engines(runs):
    tables = _tables(runs["cluster"])
    assert tables == _tables(runs["sail"])
    assert "gold/customer_360" in tables and "gold/recommendations" in tables, tables
    problems = []
    for t in tables:
        if t in RANKED_TABLES:
            continue
        a, b = _frame(runs["cluster"], t), _frame(runs["sail"], t)
        assert len(a) > 0 or t.startswith("marketing/") or t in EMPTY_ON_A_FIRST_RUN, f"{t} is empty"
        problems += _compare(t, a, b)
    assert not problems, "\n".join(problems)


def test_the_same_products_are_recommended(runs):
    def recommended(lake_dir: Path) -> pd.Series:
        df = _frame(lake_dir, "gold/recommendations")
        df = df[df["as_of_date"].astype(str) == AS_OF.isoformat()]
        return df.groupby("customer_id")["product_code"].agg(frozenset)

    a, b = recommended(runs["cluster"]), recommended(runs["sail"])
    assert set(a.index) == set(b.index) and len(a) > CUSTOMERS * 0.5
    same = (a.sort_index() == b.sort_index()).mean()
    assert same >= 0.99, f"the same products for only {same:.1%} of customers"


def test_the_work_ran_on_the_workers(runs, cluster):
    master = cluster.master_json()
    workers = [w for w in master["workers"] if w["state"] == "ALIVE"]
    assert len(workers) == 2 and all(w["cores"] == 1 for w in workers)
    apps = master.get("activeapps", []) + master.get("completedapps", [])
    assert any(a["name"] == "c360 Spark Connect" and a["cores"] == 2 for a in apps), apps
    executors = cluster.executors()
    tasks = {e["id"]: e["completedTasks"] for e in executors}
    assert sum(n > 0 for n in tasks.values()) >= 2, tasks
    print(f"tasks completed per executor: {tasks}")


def test_the_cluster_wrote_its_lake_on_s3(runs, s3, cluster):
    lake_uri = runs["cluster"]
    steps = lake.delta_table(storage.join(lake_uri, "ops/run_log")).to_pandas()
    assert set(steps["status"]) == {"succeeded"} and {"ingest", "train", "score", "export"} <= set(steps["step"]), \
        steps[["step", "status"]]
    objects = s3.objects(lake_uri)
    # every table is a Delta table on S3 whose first commit Spark on the JVM wrote (through S3A)
    for t in ("bronze/transactions", "silver/transactions", "gold/customer_360", "gold/recommendations"):
        first = objects[f"{lake_uri.split('/', 3)[3]}/{t}/_delta_log/00000000000000000000.json"]
        assert b"Apache-Spark" in first and b"Delta-Lake" in first, t
        assert lake.row_count(storage.join(lake_uri, t)) > 0, t
    # the CRM export and the reports are objects beside the tables
    rel = lake_uri.split("/", 3)[3]
    manifest = json.loads(objects[f"{rel}/marketing/exports/crm/{AS_OF.isoformat()}/manifest.json"])
    assert manifest["row_count"] > 0
    assert f"{rel}/marketing/reports/{AS_OF.isoformat()}/segments.html" in objects
    assert f"{rel}/.c360.lock" not in objects  # the lake's lock object was released
    # nothing of the lake went to a local disk instead (the run's folder: its log, MLflow)
    assert {p.name for p in (runs["root"] / "cluster").iterdir()} <= {"run.log", "mlflow.db", "mlruns"}
    # the keys reached the JVMs from the environment, never a command line or configuration
    key = os.environ["AWS_SECRET_ACCESS_KEY"]
    assert all(key not in " ".join(cmd) for cmd in cluster.commands.values())
    assert key not in json.dumps(cluster.api(f"applications/{cluster.api('applications')[0]['id']}/environment"))

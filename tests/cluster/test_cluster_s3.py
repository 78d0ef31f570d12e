"""The whole pipeline on a real Spark cluster with the lake and the landing zone on S3.

A real S3 API server (moto in server mode, on 127.0.0.1) is started first; then a Spark
standalone cluster (``c360.cluster.up``) whose Connect server has Hadoop's S3A connector
(``hadoop-aws``, resolved from Maven Central with the AWS SDK bundle) and
:func:`c360.cluster.s3a_conf` pointing it at that server. One small generated bank is
uploaded to ``s3://<bucket>/bank/landing`` and ``c360 run`` (every step, train, score and
export included) runs on the cluster with ``paths.lake`` = ``s3://<bucket>/c360/lake``:
the JVM reads and writes the Delta tables through S3A, the workers' Python (the landing
reader) reads the deliveries through pyarrow's S3 file system, the driver's Python
(``deltalake``: logs, statistics, schema changes; reports; the CRM export) through the same
URIs. Credentials reach every process from the environment only, never a command line.
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

import pytest
import yaml

from c360 import cluster as cluster_mod
from c360 import lake, storage

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(5400)]

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from objectstore import moto_store  # noqa: E402  (tests/ is not a package)
from test_cluster_pipeline import LOCAL_CONF  # noqa: E402

AS_OF = date(2026, 6, 30)
CUSTOMERS, DAYS, SEED = 300, 120, 11
STEPS = ["ingest", "dq_bronze", "silver", "dq_silver", "profile", "segments", "kpis", "train", "score", "dq_gold",
         "export"]


@pytest.fixture(scope="module")
def s3_cluster(tmp_path_factory):
    with moto_store() as store:
        c = cluster_mod.up(tmp_path_factory.mktemp("s3cluster"), say=lambda m: print(f"cluster: {m}", flush=True),
                           packages=(cluster_mod.HADOOP_AWS_PACKAGE,),
                           conf=cluster_mod.s3a_conf(store.endpoint, os.environ["AWS_REGION"]))
        pids = dict(c.pids)
        try:
            yield store, c
        finally:
            c.stop()
            alive = [name for name, pid in pids.items() if cluster_mod._alive(pid)]
            assert not alive, f"still running after stop: {alive}"


@pytest.fixture(scope="module")
def s3_run(s3_cluster, tmp_path_factory):
    from c360.synth import generate

    store, c = s3_cluster
    root = tmp_path_factory.mktemp("s3bank")
    generated = root / "generated"
    generate(customers=CUSTOMERS, days=DAYS, as_of=AS_OF, seed=SEED, landing=generated)
    bucket = store.new_bucket()
    lake_uri, landing_uri = f"s3://{bucket}/c360/lake", f"s3://{bucket}/bank/landing"
    for p in sorted(generated.rglob("*")):
        if p.is_file() and not p.relative_to(generated).as_posix().startswith("_meta/"):
            storage.write_bytes(storage.join(landing_uri, p.relative_to(generated).as_posix()), p.read_bytes())
    conf = root / "conf"
    shutil.copytree(ROOT / "conf", conf, ignore=shutil.ignore_patterns("local.yaml"))
    (conf / "local.yaml").write_text(yaml.safe_dump(LOCAL_CONF), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("SPARK_REMOTE", "C360_LAKE", "C360_LANDING")}
    env.update(C360_CONF_DIR=str(conf), C360_ENV="development", PYTHONPATH=str(ROOT), SPARK_REMOTE=c.connect_url,
               MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlflow.db'}")
    log = root / "run.log"
    started = time.monotonic()
    with open(log, "w", encoding="utf-8") as out:
        proc = subprocess.run([sys.executable, "-m", "c360.cli", "run", "--as-of", AS_OF.isoformat(),
                               "--landing", landing_uri, "--lake", lake_uri],
                              env=env, stdout=out, stderr=subprocess.STDOUT, cwd=root, timeout=5000)
    text = log.read_text(encoding="utf-8", errors="replace")
    assert proc.returncode == 0, f"c360 run on the cluster with the lake on S3 exited {proc.returncode}:\n{text[-6000:]}"
    print(f"c360 run on the cluster, lake on S3: {time.monotonic() - started:.0f} s", flush=True)
    return {"store": store, "cluster": c, "lake": lake_uri, "landing": landing_uri, "root": root, "log": text}


def test_every_step_ran_on_the_cluster_with_the_lake_on_s3(s3_run):
    store, c, lake_uri = s3_run["store"], s3_run["cluster"], s3_run["lake"]
    runs = lake.delta_table(storage.join(lake_uri, "ops/run_log")).to_pandas()
    assert sorted(runs.loc[runs["status"] == "succeeded", "step"]) == sorted(STEPS), runs[["step", "status"]]
    # the tables are Delta tables on S3, written by the JVM through S3A and read back here
    for t in ("bronze/transactions", "silver/transactions", "gold/customer_360", "gold/recommendations"):
        assert lake.row_count(storage.join(lake_uri, t)) > 0, t
    c360_rows = lake.delta_table(storage.join(lake_uri, "gold/customer_360")).to_pandas()
    assert c360_rows["customer_id"].nunique() == len(c360_rows) > CUSTOMERS * 0.8
    recs = lake.delta_table(storage.join(lake_uri, "gold/recommendations")).to_pandas()
    assert recs["customer_id"].nunique() > CUSTOMERS * 0.5
    # the CRM export and the reports are objects on S3 beside the lake
    objects = store.objects(lake_uri.rsplit("/", 1)[0])
    manifests = [k for k in objects if k.endswith(f"/{AS_OF.isoformat()}/manifest.json")]
    assert manifests, sorted(objects)[:20]
    manifest = json.loads(objects[manifests[0]])
    assert manifest["row_count"] > 0
    assert any(k.endswith(f"marketing/reports/{AS_OF.isoformat()}/segments.html") for k in objects)
    # nothing was written to a local lake instead, and the lock object was released
    assert not (s3_run["root"] / "lake").exists() and not (s3_run["root"] / "c360").exists()
    assert not any(k.endswith("/.c360.lock") for k in objects)
    # the Delta logs were written by Spark on the JVM (not by deltalake): S3A did the writing
    log0 = objects[[k for k in objects if k.endswith("gold/customer_360/_delta_log/00000000000000000000.json")][0]]
    assert b"Apache-Spark" in log0 and b"Delta-Lake" in log0


def test_the_s3_work_ran_on_the_workers(s3_run):
    c = s3_run["cluster"]
    tasks = {e["id"]: e["completedTasks"] for e in c.executors()}
    assert sum(n > 0 for n in tasks.values()) >= 2, tasks
    # the keys reached the JVM from the environment, not its command line or configuration
    key = os.environ["AWS_SECRET_ACCESS_KEY"]
    assert all(key not in " ".join(cmd) for cmd in c.commands.values())
    env = c.api(f"applications/{c.api('applications')[0]['id']}/environment")
    assert key not in json.dumps(env)

"""A lake and a landing zone on object storage (S3), against a real S3 API server on
127.0.0.1 (moto in server mode, tests/objectstore.py): the storage helpers, the lake lock
as a conditional-write lock object, and the URI mapping for a JVM Spark."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import textwrap
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from c360 import lock, storage
from c360.lock import LakeBusy, lake_lock

REPO = Path(__file__).resolve().parent.parent


def test_s3_uris_map_to_s3a_for_a_jvm_and_stay_uris_in_settings(settings):
    assert storage.jvm_uri("s3://bank-lake/c360/lake") == "s3a://bank-lake/c360/lake"
    assert storage.jvm_uri("s3a://bank-lake/lake") == "s3a://bank-lake/lake"
    assert storage.jvm_uri("gcs://b/lake") == "gs://b/lake"
    assert storage.jvm_uri("abfss://c@acct.dfs.core.windows.net/lake") == "abfss://c@acct.dfs.core.windows.net/lake"
    assert storage.jvm_uri("/data/lake") == "/data/lake" and storage.jvm_uri("lake") == "lake"
    s = settings.with_paths(lake="s3://bank-lake/c360/lake/", landing="/data/landing")
    assert s.lake == "s3://bank-lake/c360/lake" and s.landing == Path("/data/landing")  # no "s3:/" folding
    assert storage.join(s.lake, "gold", "customer_360") == "s3://bank-lake/c360/lake/gold/customer_360"
    from c360 import lake

    assert lake.table_path(s.lake, "gold", "x") == "s3://bank-lake/c360/lake/gold/x"
    from c360.settings import ConfigError, load_settings

    env = {k: v for k, v in os.environ.items() if k not in ("SPARK_REMOTE", "C360_LANDING")}
    with pytest.raises(ConfigError, match=r"paths\.lake.*unsupported storage scheme ftp://"):
        load_settings(environ={**env, "C360_LAKE": "ftp://host/lake"})


def test_storage_helpers_read_write_list_and_delete_objects(s3_store):
    root = f"s3://{s3_store.new_bucket()}/lake"
    assert not storage.exists(root) and storage.listdir(root) == []
    storage.write_text(storage.join(root, "a", "one.txt"), "1")
    storage.write_bytes(storage.join(root, "a", "b", "two.bin"), b"\x00\x02")
    assert storage.read_text(f"{root}/a/one.txt") == "1" and storage.info(f"{root}/a/b/two.bin").size == 2
    assert storage.is_dir(f"{root}/a") and not storage.is_dir(f"{root}/a/one.txt")
    files = [i.path for i in storage.listdir(root, recursive=True) if not i.is_dir]
    assert files == [f"{root}/a/b/two.bin", f"{root}/a/one.txt"]
    assert s3_store.objects(root) == {"lake/a/b/two.bin": b"\x00\x02", "lake/a/one.txt": b"1"}
    storage.remove_tree(f"{root}/a/b")
    storage.remove_tree(f"{root}/nothing")  # missing: no error
    # (pyarrow leaves an empty "folder" marker object for the parent it emptied)
    assert [k for k, v in s3_store.objects(root).items() if v] == ["lake/a/one.txt"]
    with pytest.raises(FileNotFoundError):
        storage.info(f"{root}/missing")
    # a folder is not a key prefix: "a" is not "a_daily" (silver/transactions beside
    # silver/transactions_daily), for listing, deleting and the test's own listing
    storage.write_text(f"{root}/a_daily/x.txt", "x")
    assert [i.path for i in storage.listdir(f"{root}/a", recursive=True) if not i.is_dir] == [f"{root}/a/one.txt"]
    assert "lake/a_daily/x.txt" not in s3_store.objects(f"{root}/a")
    storage.remove_tree(f"{root}/a")
    assert [k for k, v in s3_store.objects(root).items() if v] == ["lake/a_daily/x.txt"]


def test_compressed_deliveries_are_stored_and_read_byte_for_byte(s3_store, tmp_path):
    """A ``.csv.gz`` delivery is one gzip stream, whoever uploaded it: c360's own writes
    store exactly the bytes given and every read returns exactly the object's bytes (no
    compression added or removed by the name's extension), so the landing reader finds the
    same header, rows and checksum as on a local disk."""
    import gzip
    import hashlib

    import pyarrow as pa

    from c360.contract import SOURCES
    from c360.landing import inspect, make_reader

    txn = SOURCES["transactions"]
    text = (",".join(txn.column_names) + "\n" + ",".join(f"v{i}" for i in range(len(txn.column_names))) + "\n")
    delivered = gzip.compress(text.encode("utf-8"), mtime=0)
    local = tmp_path / "transactions_20260630.csv.gz"
    local.write_bytes(delivered)
    bucket = s3_store.new_bucket()
    ours = f"s3://{bucket}/landing/transactions/2026-06-30/transactions_20260630.csv.gz"
    storage.write_bytes(ours, delivered)  # as tests and `c360` upload a landing zone
    theirs = f"s3://{bucket}/landing/transactions/2026-06-29/transactions_20260629.csv.gz"
    s3_store.client().put_object(Bucket=bucket, Key=theirs.split("/", 3)[3], Body=delivered)  # the bank's tool
    for uri in (ours, theirs):
        key = uri.split("/", 3)[3]
        assert s3_store.objects(uri)[key] == delivered, "stored object differs from the bytes written"
        assert storage.read_bytes(uri) == delivered
        with storage.open_input(uri) as f:
            assert f.read() == delivered
        day = date.fromisoformat(uri.split("/")[-2])
        lf, lf_local = inspect(uri, txn, day), inspect(local, txn, day)
        assert lf.problem is None, lf.problem
        assert lf.sha256 == lf_local.sha256 == hashlib.sha256(delivered).hexdigest()
        assert lf.header == lf_local.header == tuple(txn.column_names)
        reader, _, _ = make_reader(list(txn.column_names), txn)
        rows = pa.Table.from_batches(list(reader(iter([pa.RecordBatch.from_pydict(
            {"path": [uri], "fmt": [lf.fmt], "header": [list(lf.header)], "delivery_date": [day]})]))))
        assert rows.column("_file_error").to_pylist() == [None]
        assert [rows.column(c)[0].as_py() for c in txn.column_names] == [f"v{i}" for i in range(len(txn.column_names))]
    # the same holds for the other extensions pyarrow would compress by
    for ext in ("bz2", "zst", "lz4", "br"):
        uri = f"s3://{bucket}/exports/file.{ext}"
        storage.write_bytes(uri, b"plain bytes")
        assert s3_store.objects(uri)[f"exports/file.{ext}"] == b"plain bytes" == storage.read_bytes(uri)


def test_conditional_put_is_honoured_by_the_server(s3_store):
    uri = f"s3://{s3_store.new_bucket()}/lake/.c360.lock"
    etag = storage.put_if_absent(uri, b"first")
    with pytest.raises(storage.PreconditionFailed):
        storage.put_if_absent(uri, b"second")
    assert storage.get_with_etag(uri) == (b"first", etag)
    with pytest.raises(storage.PreconditionFailed):
        storage.put_if_match(uri, b"third", '"not-the-etag"')
    new = storage.put_if_match(uri, b"fourth", etag)
    assert new != etag and storage.get_with_etag(uri)[0] == b"fourth"


HOLDER = textwrap.dedent("""
    import sys, time
    from c360.lock import lake_lock
    with lake_lock(sys.argv[1], run_id="holder-run", step="silver"):
        print("locked", flush=True)
        time.sleep(120)
""")


def test_second_taker_of_a_lake_on_s3_is_refused_with_one_line(s3_store):
    lake = f"s3://{s3_store.new_bucket()}/c360/lake"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, lake], cwd=REPO, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert proc.stdout.readline().strip() == "locked"
        assert lock.is_locked(lake)
        holder = json.loads(s3_store.objects(lake)["c360/lake/.c360.lock"])
        assert holder["run_id"] == "holder-run" and holder["pid"] == proc.pid
        with pytest.raises(LakeBusy) as busy:
            with lake_lock(lake, run_id="second", step="ingest"):
                pytest.fail("the second taker entered")
        msg = str(busy.value)
        assert re.match(rf"^lake {re.escape(lake)} is in use by run holder-run \(step silver, pid {proc.pid} on host "
                        rf"{re.escape(socket.gethostname())}, user [^,]+, since \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d "
                        r"UTC\); wait for it to finish and run again", msg), msg
        assert "\n" not in msg and "s3a://" not in msg
        # the same lake spelt s3a:// (as a JVM names it) is the same lock
        with pytest.raises(LakeBusy):
            with lake_lock(storage.jvm_uri(lake), run_id="third"):
                pass
        # the holder is still the first run
        assert json.loads(s3_store.objects(lake)["c360/lake/.c360.lock"])["run_id"] == "holder-run"
    finally:
        proc.kill()
        proc.wait(timeout=10)
    # killed on this host: its pid is gone, so the lock is stale and taken over at once
    assert not lock.is_locked(lake)
    with lake_lock(lake, run_id="next", step="ingest") as record:
        assert record["pid"] == os.getpid() and lock.read_holder(lake)["run_id"] == "next"
        with lake_lock(lake, step="inner"):  # re-entrant in one thread, the inner step recorded
            assert lock.read_holder(lake)["step"] == "inner"
        assert lock.read_holder(lake)["step"] == "ingest"
    assert "c360/lake/.c360.lock" not in s3_store.objects(lake)  # released: deleted
    assert not lock.is_locked(lake)


def test_lock_object_of_another_host_is_taken_over_only_after_its_heartbeat_stops(s3_store, monkeypatch):
    lake = f"s3://{s3_store.new_bucket()}/lake"
    uri = f"{lake}/.c360.lock"

    def planted(age_s: float) -> None:
        beat = (datetime.now(UTC) - timedelta(seconds=age_s)).isoformat(timespec="seconds")
        storage.write_text(uri, json.dumps({"run_id": "elsewhere", "step": "silver", "pid": 4242,
                                            "host": "other-host", "user": "u", "started_at": beat,
                                            "heartbeat_at": beat}))

    planted(10)  # a live run on another machine
    with pytest.raises(LakeBusy, match="in use by run elsewhere .*pid 4242 on host other-host"):
        with lake_lock(lake, run_id="mine"):
            pass
    planted(lock.STALE_AFTER_S + 60)  # its machine died: no heartbeat for longer than the limit
    with lake_lock(lake, run_id="mine") as record:
        assert lock.read_holder(lake)["run_id"] == "mine" == record["run_id"]
    # the heartbeat keeps a long run's lock fresh
    monkeypatch.setattr(lock, "HEARTBEAT_S", 0.2)
    with lake_lock(lake, run_id="long"):
        first = lock.read_holder(lake)["heartbeat_at"]
        import time

        deadline = time.monotonic() + 5
        while lock.read_holder(lake)["heartbeat_at"] == first and time.monotonic() < deadline:
            time.sleep(0.2)
        assert lock.read_holder(lake)["heartbeat_at"] > first


def test_a_lake_lock_on_a_store_without_conditional_writes_here_fails_clearly():
    with pytest.raises(storage.StorageError, match=r"lake gs://b/lake: the lake lock is implemented for S3"):
        with lake_lock("gs://b/lake"):
            pass


# ---------------------------------------------------------------------------------------
# The pipeline end to end with the lake AND the landing zone on S3, on the embedded engine

S3_AS_OF = date(2026, 6, 30)
S3_STEPS = ["ingest", "dq_bronze", "silver", "dq_silver", "profile", "segments", "train", "score", "dq_gold",
            "export"]
# small, fast models (the shape of conf/models.yaml); on a bank this small the customers whose
# only delivered row is defective orphan more than 1% of other rows: references tolerate 5%
S3_LOCAL_CONF = """
quality:
  reference_defaults: {mostly: 0.95}
models:
  next_best_product:
    snapshots: 4
    ranker: {n_estimators: 40, num_leaves: 15, min_child_samples: 20}
    binary: {n_estimators: 40, num_leaves: 15, min_child_samples: 20}
  attrition:
    snapshots: 3
    params: {n_estimators: 40, num_leaves: 15, min_child_samples: 20}
"""


def upload(local: Path, uri: str) -> int:
    n = 0
    for p in sorted(local.rglob("*")):
        if p.is_file():
            storage.write_bytes(storage.join(uri, p.relative_to(local).as_posix()), p.read_bytes())
            n += 1
    return n


@pytest.fixture(scope="module")
def s3_bank(s3_store, spark, tmp_path_factory):
    import shutil
    import warnings

    from c360.settings import load_settings
    from c360.synth import generate
    from jobs.pipeline import run_steps

    root = tmp_path_factory.mktemp("s3bank")
    conf = root / "conf"
    shutil.copytree(REPO / "conf", conf, ignore=shutil.ignore_patterns("local.yaml"))
    (conf / "local.yaml").write_text(S3_LOCAL_CONF, encoding="utf-8")
    bucket = s3_store.new_bucket()
    lake_uri, landing_uri = f"s3://{bucket}/c360/lake", f"s3://{bucket}/bank/landing"
    env = {k: v for k, v in os.environ.items() if k not in ("SPARK_REMOTE", "C360_LAKE", "C360_LANDING")}
    s = load_settings(conf, environ={**env, "C360_LAKE": lake_uri, "C360_LANDING": landing_uri})
    assert s.lake == lake_uri and s.landing == landing_uri
    generated = root / "generated"
    generate(customers=300, days=240, as_of=S3_AS_OF, seed=5, landing=generated, dirty_rate=0.01)
    uploaded = upload(generated, landing_uri)
    mlflow_db = root / "mlflow" / "mlflow.db"
    mlflow_db.parent.mkdir()
    saved = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{mlflow_db}"
    cwd_before = sorted(os.listdir(os.getcwd()))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the development PII key
            results = run_steps(spark, s, S3_AS_OF, S3_STEPS, run_id="s3-run")
    finally:
        if saved is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = saved
    return {"settings": s, "results": results, "generated": generated, "uploaded": uploaded,
            "cwd_before": cwd_before, "root": root}


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_pipeline_end_to_end_with_lake_and_landing_on_s3(s3_bank, s3_store, spark):
    from c360 import lake
    from c360.contract import SOURCES
    from jobs.export import export_root

    s, results = s3_bank["settings"], s3_bank["results"]
    assert [(r.step, r.status) for r in results] == [(step, "succeeded") for step in S3_STEPS]
    objects = s3_store.objects(s.lake)
    # the files quarantined whole are exactly those the generator broke on purpose (a
    # truncated .csv.gz, a GBK-encoded CSV): every other delivery, .csv.gz included, was read
    summary = json.loads((s3_bank["generated"] / "_meta" / "generation.json").read_text(encoding="utf-8"))
    broken = {d["path"] for d in summary["file_defects"] if d["kind"] in ("truncated_gzip", "gbk_encoding")}
    whole = {}
    for name in SOURCES:
        q = lake.table_path(s.lake, "quarantine", name)
        if lake.exists(q):
            whole |= {storage.relative(r.source_file, s.landing): r.reason
                      for r in lake.read(spark, q).where("line = 0").select("source_file", "reason").collect()}
    assert broken and set(whole) == broken, whole
    # every source was read from the landing zone on S3 and loaded into bronze on S3
    for name in SOURCES:
        assert lake.exists(lake.table_path(s.lake, "bronze", name)), name
        assert lake.count_rows(spark, lake.table_path(s.lake, "bronze", name)) > 0, name
    ingested = lake.read(spark, lake.table_path(s.lake, "ops", "ingested_files")).select("file_path").collect()
    assert ingested and all(r.file_path.startswith(s.landing + "/") for r in ingested)
    # gold, models, recommendations, CRM export, the marketing report and Data Docs: all on S3
    for t in ("gold/customer_360", "gold/customer_segments", "gold/recommendations", "marketing/customer_segments"):
        assert lake.count_rows(spark, f"{s.lake}/{t}") > 0, t
    rel = lambda p: p[len(f"s3://{s.lake.split('://', 1)[1].split('/', 1)[0]}/"):]  # noqa: E731
    exp = rel(storage.join(export_root(s), S3_AS_OF.isoformat()))
    manifest = json.loads(objects[f"{exp}/manifest.json"])
    csv_rows = objects[f"{exp}/recommendations.csv"].decode("utf-8").splitlines()
    assert manifest["row_count"] == len(csv_rows) - 1 > 0
    assert f"{rel(s.lake)}/marketing/reports/{S3_AS_OF.isoformat()}/segments.html" in objects
    assert f"{rel(s.lake)}/reports/dq/index.html" in objects
    # nothing of the lake was written to a local disk instead
    assert sorted(os.listdir(os.getcwd())) == s3_bank["cwd_before"]
    assert sorted(p.name for p in s3_bank["root"].iterdir()) == ["conf", "generated", "mlflow"]


@pytest.mark.slow
@pytest.mark.timeout(2400)  # the module's pipeline run (s3_bank) when run alone
def test_maintain_on_s3_compacts_and_vacuums_through_the_uri(s3_bank, s3_store, spark):
    from pyspark.sql import functions as F

    from c360 import lake
    from jobs import maintain

    s = s3_bank["settings"]
    t = "silver/transactions"
    path = storage.join(s.lake, t)
    # silver/transactions has one file per day partition, and compaction merges files of a
    # partition: append a second, small file to the first day, so that there is work to do
    table = lake.read(spark, path)
    first_day = table.agg(F.min("partition_date")).first()[0]
    extra = table.where(F.col("partition_date") == F.lit(first_day)).limit(3).collect()
    lake.append(spark.createDataFrame(extra, table.schema), path)
    rows, files = lake.row_count(path), maintain.table_stats(path).files
    data_objects = lambda: {k for k in s3_store.objects(path) if k.endswith(".parquet") and "/_delta_log/" not in k}  # noqa: E731
    before = data_objects()
    assert len(before) == files  # no object the table does not reference
    out = maintain.run(s, spark, tables=[t, "gold/customer_360"], retention_hours=0)
    assert out["failed"] == [] and set(out["tables"]) == {t, "gold/customer_360"}
    assert out["tables"][t]["rows_after"] == rows and lake.row_count(path) == rows
    assert lake.read(spark, path).count() == rows
    after = data_objects()
    # the first day's two files compacted into one, and both replaced objects deleted at once
    assert out["tables"][t]["files_after"] == files - 1 and len(after) == files - 1
    assert out["tables"][t]["vacuumed_files"] == len(before - after) == 2
    assert len(after - before) == 1 and f"partition_date={first_day.isoformat()}/" in next(iter(after - before))
    assert "c360/lake/.c360.lock" not in s3_store.objects(s.lake)  # the lock object was released


# ---------------------------------------------------------------------------------------
# `c360 erase` of a customer on a lake on S3: no object under the lake names it afterwards

E1, E2 = date(2026, 6, 20), date(2026, 6, 30)


@pytest.fixture(scope="module")
def s3_erase_bank(s3_store, settings, spark, tmp_path_factory):
    import warnings

    from test_scoring import register_champion, train_tiny

    from c360.synth import generate
    from jobs.export import DELIVERED_MARKER, export_root
    from jobs.pipeline import run_steps

    root = tmp_path_factory.mktemp("s3erase")
    bucket = s3_store.new_bucket()
    s = settings.with_paths(landing=f"s3://{bucket}/landing", lake=f"s3://{bucket}/lake")
    generate(customers=60, days=20, as_of=E2, seed=17, landing=root / "generated", dirty_rate=0.0)
    upload(root / "generated", s.landing)
    saved = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the development PII key
            for d in (E1, E2):
                run_steps(spark, s, d, ["ingest", "silver", "profile", "segments"])
            booster, spec = train_tiny("nbp")
            register_champion(s, "next_best_product", booster, spec)
            for d in (E1, E2):
                run_steps(spark, s, d, ["score", "export"])
    finally:
        if saved is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = saved
    # the CRM imported the first drop: it is the recipient's copy from now on
    storage.write_text(storage.join(export_root(s), E1.isoformat(), DELIVERED_MARKER), "imported 2026-06-21\n")
    return s, root / "generated"


def scan_objects(objects: dict[str, bytes], needles: list[str]) -> dict[str, list[str]]:
    """``key -> needles found`` over every object: raw bytes (the Delta log's JSON with its
    statistics, CSV, HTML, Parquet footers) and every decoded value of Parquet objects (data
    files, old versions, checkpoints), as tests/test_erase.py scans a local lake."""
    import io

    import pyarrow.parquet as pq

    hits = {}
    for key, data in sorted(objects.items()):
        found = {n for n in needles if n.encode("utf-8") in data}
        if data[:4] == b"PAR1":
            text = json.dumps(pq.read_table(io.BytesIO(data)).to_pylist(), default=str, ensure_ascii=False)
            found |= {n for n in needles if n in text}
        if found:
            hits[key] = sorted(found)
    return hits


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_erase_on_s3_leaves_the_customer_in_no_object(s3_erase_bank, s3_store, spark):
    import csv
    import io

    from pyspark.sql import functions as F
    from typer.testing import CliRunner

    from c360 import lake
    from c360.cli import app
    from jobs.export import export_root

    s, generated = s3_erase_bank
    people = []
    for f in sorted((generated / "customers").glob("*/*.csv")):
        people += list(csv.DictReader(io.StringIO(f.read_text(encoding="utf-8"), newline="")))
    exported = [{r["customer_id"] for r in csv.DictReader(io.StringIO(storage.read_text(
        storage.join(export_root(s), d.isoformat(), "recommendations.csv"))))} for d in (E1, E2)]
    names = {r["customer_id"]: r["full_name"] for r in people}
    cid = sorted(c for c in exported[0] & exported[1] if not any(names[c] in n for o, n in names.items() if o != c))[0]
    pii = sorted({r[k] for r in people if r["customer_id"] == cid for k in ("full_name", "national_id", "phone", "email")
                  if r[k]})
    row = lake.read(spark, lake.table_path(s.lake, "restricted", "customer_pii")).where(F.col("customer_id") == cid).first()
    tokens = sorted({row[c] for c in row.asDict() if c.endswith("_token") and row[c]})
    needles = [cid, *pii, *tokens]
    assert len(pii) >= 4 and len(tokens) >= 4
    before = scan_objects(s3_store.objects(s.lake), needles)
    assert any(k.startswith("lake/silver/customers/") for k in before)  # the scan sees the customer before

    r = CliRunner().invoke(app, ["erase", "--customer-id", cid, "--lake", s.lake, "--retention-hours", "0"],
                           env={"C360_LAKE": None, "C360_LANDING": None, "SPARK_REMOTE": None, "COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    hits = scan_objects(s3_store.objects(s.lake), needles)
    delivered = f"lake/marketing/exports/crm/{E1.isoformat()}/"
    # only the delivered export (the recipient's copy, no PII columns) still names the customer, by id
    assert hits and all(k.startswith(delivered) for k in hits), hits
    assert all(found == [cid] for found in hits.values()), hits
    # the undelivered export was rewritten without the customer, its manifest matching
    folder = storage.join(export_root(s), E2.isoformat())
    rows = list(csv.DictReader(io.StringIO(storage.read_text(storage.join(folder, "recommendations.csv")))))
    manifest = json.loads(storage.read_text(storage.join(folder, "manifest.json")))
    assert rows and manifest["row_count"] == len(rows) and cid not in {x["customer_id"] for x in rows}
    import hashlib

    for name, meta in manifest["files"].items():
        assert meta["sha256"] == hashlib.sha256(storage.read_bytes(storage.join(folder, name))).hexdigest(), name
    # every table still reads, and the lock object is gone
    for name in lake.tables(s.lake):
        lake.read(spark, storage.join(s.lake, name)).limit(1).collect()
    assert "lake/.c360.lock" not in s3_store.objects(s.lake)

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
from datetime import UTC, datetime, timedelta
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

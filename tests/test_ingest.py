"""jobs.ingest on real Delta tables: exactly once, upserts, late rows, quarantine, formats."""

from __future__ import annotations

import gzip
import json
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from c360 import lake, landing
from c360.contract import SOURCES
from helpers import write_landing
from jobs import ingest, silver

TXN_HEADER = ",".join(SOURCES["transactions"].column_names)
CUST_HEADER = ",".join(SOURCES["customers"].column_names)


def txn_line(txn_id, amount="10.00", ts="2026-06-01T10:00:00", channel="pos", desc=""):
    return f"{txn_id},A1,C1,{ts},{amount},debit,CNY,{channel},groceries,,{desc}"


def cust_line(cid, income, updated, risk="R3", consent="true"):
    return (f"{cid},王小明,110101199001011234,13800138000,xm@example.cn,1990-01-15,M,engineer,{income},上海,B01,"
            f"2020-03-01,{risk},verified,{consent},zh,{updated}")


def table(spark, s, layer, name):
    return lake.read(spark, lake.table_path(s.lake, layer, name))


def test_same_delivery_twice_changes_nothing(spark, lake_settings):
    s = lake_settings
    write_landing(s.landing, "transactions", "2026-06-01", "t.csv",
                  "\n".join([TXN_HEADER, txn_line("T1"), txn_line("T2")]) + "\n")
    first = ingest.run(spark, s)
    assert first["transactions"].rows_loaded == 2
    v1 = lake.version(lake.table_path(s.lake, "bronze", "transactions"))
    second = ingest.run(spark, s)
    assert second["transactions"].files_new == 0 and second["transactions"].files_skipped == 1
    assert lake.version(lake.table_path(s.lake, "bronze", "transactions")) == v1
    assert table(spark, s, "bronze", "transactions").count() == 2


@pytest.fixture
def hashed(monkeypatch) -> list[str]:
    """The paths ``landing.sha256_of`` hashes during the test (the hash is still computed);
    clear it before the run whose reads a test checks."""
    from c360 import landing

    seen: list[str] = []
    real = landing.sha256_of
    monkeypatch.setattr(landing, "sha256_of", lambda p, *a: seen.append(str(p)) or real(p, *a))
    return seen


def test_known_unchanged_files_are_not_read_again_and_a_file_changed_in_place_is(spark, lake_settings, hashed):
    """A daily run hashes only new deliveries: files recorded with the same path, size and
    modification time are skipped unread. A file rewritten in place (new time) is hashed and,
    with new content, ingested."""
    import os

    s = lake_settings
    old = write_landing(s.landing, "transactions", "2026-06-01", "t.csv",
                        "\n".join([TXN_HEADER, txn_line("T1")]) + "\n")
    ingest.run(spark, s)
    write_landing(s.landing, "transactions", "2026-06-02", "t.csv", "\n".join([TXN_HEADER, txn_line("T2")]) + "\n")
    hashed.clear()
    res = ingest.run(spark, s)["transactions"]
    assert hashed == [str(s.landing / "transactions" / "2026-06-02" / "t.csv")]
    assert (res.files_new, res.files_skipped, res.rows_loaded) == (1, 1, 1)
    # rewritten in place, same size, a later time: read again, and its new row lands
    old.write_text("\n".join([TXN_HEADER, txn_line("T3")]) + "\n", encoding="utf-8")
    st = old.stat()
    os.utime(old, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    hashed.clear()
    res = ingest.run(spark, s)["transactions"]
    assert hashed == [str(old)]
    assert (res.files_new, res.rows_loaded) == (1, 1)
    assert sorted(r.txn_id for r in table(spark, s, "bronze", "transactions").collect()) == ["T1", "T2", "T3"]


def test_same_content_under_another_name_is_a_duplicate(spark, lake_settings):
    s = lake_settings
    body = "\n".join([TXN_HEADER, txn_line("T1")]) + "\n"
    write_landing(s.landing, "transactions", "2026-06-01", "t.csv", body)
    write_landing(s.landing, "transactions", "2026-06-02", "t-resent.csv", body)
    res = ingest.run(spark, s)["transactions"]
    assert (res.files_new, res.files_duplicate, res.rows_loaded) == (1, 1, 1)
    files = {r.file_path.rsplit("/", 1)[1]: r.status for r in table(spark, s, "ops", "ingested_files").collect()}
    assert files == {"t.csv": "loaded", "t-resent.csv": "duplicate"}


def test_resent_rows_upsert_and_the_latest_version_wins(spark, lake_settings):
    s = lake_settings
    write_landing(s.landing, "customers", "2026-06-01", "c.csv",
                  "\n".join([CUST_HEADER, cust_line("C1", "100.00", "2026-06-01T09:00:00")]) + "\n")
    ingest.run(spark, s)
    write_landing(s.landing, "customers", "2026-06-02", "c.csv", "\n".join([
        CUST_HEADER,
        cust_line("C1", "200.00", "2026-06-02T09:00:00", risk="R4"),
        cust_line("C2", "50.00", "2026-06-02T09:00:00")]) + "\n")
    # a late re-send of an older version must not overwrite the newer one
    write_landing(s.landing, "customers", "2026-06-03", "c.csv",
                  "\n".join([CUST_HEADER, cust_line("C1", "90.00", "2026-05-30T09:00:00")]) + "\n")
    ingest.run(spark, s)
    rows = {r.customer_id: r for r in table(spark, s, "bronze", "customers").collect()}
    assert len(rows) == 2
    assert rows["C1"].annual_income == Decimal("200.00") and rows["C1"].risk_tolerance == "R4"
    versions = table(spark, s, "bronze", "customers_versions").where("customer_id = 'C1'").count()
    assert versions == 3  # every version kept for history


def test_late_rows_land(spark, lake_settings):
    s = lake_settings
    write_landing(s.landing, "transactions", "2026-06-01", "t.csv",
                  "\n".join([TXN_HEADER, txn_line("T1")]) + "\n")
    ingest.run(spark, s)
    # delivered on 06-05 about 05-28
    write_landing(s.landing, "transactions", "2026-06-05", "t.csv",
                  "\n".join([TXN_HEADER, txn_line("T0", ts="2026-05-28T10:00:00")]) + "\n")
    ingest.run(spark, s)
    late = table(spark, s, "bronze", "transactions").where("txn_id = 'T0'").first()
    assert late.txn_ts == datetime(2026, 5, 28, 2, 0) and late._delivery_date == date(2026, 6, 5)


def test_every_bad_row_is_quarantined_with_its_reason_and_no_good_row_is_lost(spark, lake_settings):
    s = lake_settings
    lines = [TXN_HEADER,
             txn_line("G1"),
             txn_line("B1", amount="-5"),
             txn_line("B2", amount="1.5x"),
             txn_line("B3", channel="fax"),
             txn_line("", amount="3.00"),
             txn_line("B5", ts="2026-13-45T10:00:00"),
             "B6,A1,C1,2026-06-01T10:00:00,10.00,debit",
             txn_line("G2", desc='"multi\nline, quoted"'),
             txn_line("B7", ts="2031-01-01T00:00:00"),
             txn_line("G3")]
    write_landing(s.landing, "transactions", "2026-06-01", "t.csv", "\n".join(lines) + "\n")
    res = ingest.run(spark, s)["transactions"]
    assert (res.rows_read, res.rows_loaded, res.rows_quarantined) == (10, 3, 7)
    assert sorted(r.txn_id for r in table(spark, s, "bronze", "transactions").collect()) == ["G1", "G2", "G3"]
    q = {r.line: r for r in table(spark, s, "quarantine", "transactions").collect()}
    assert q[3].reason == "negative or zero amount: -5.00"
    assert q[4].reason == "amount is not a decimal: '1.5x'"
    assert q[5].reason == "unknown value for channel: 'fax'"
    assert q[6].reason == "missing required field txn_id"
    assert q[7].reason == "impossible timestamp in txn_ts: '2026-13-45T10:00:00'"
    assert q[8].reason == "wrong column count: expected 11, got 6"
    assert q[8].raw == "B6,A1,C1,2026-06-01T10:00:00,10.00,debit"
    # G2's quoted value spans two lines, so B7 starts on physical line 11
    assert q[11].reason == "txn_ts in the future (after the delivery date)"
    assert all(r.source_file.endswith("/transactions/2026-06-01/t.csv") for r in q.values())
    # every row, kept or quarantined, carries its file's checksum (the reader passes it on)
    sha = landing.sha256_of(Path(s.landing) / "transactions" / "2026-06-01" / "t.csv")
    assert {r.file_sha256 for r in q.values()} == {sha}
    assert {r._file_sha256 for r in table(spark, s, "bronze", "transactions").collect()} == {sha}


def test_corrupt_files_are_quarantined_whole_and_other_sources_load(spark, lake_settings):
    s = lake_settings
    good = gzip.compress(("\n".join([TXN_HEADER] + [txn_line(f"T{i}") for i in range(2000)]) + "\n").encode())
    write_landing(s.landing, "transactions", "2026-06-01", "t.csv.gz", good[: len(good) // 2])  # truncated
    write_landing(s.landing, "customers", "2026-06-01", "gbk.csv", (CUST_HEADER + "\n" + cust_line(
        "C1", "1.00", "2026-06-01T09:00:00") + "\n").encode("gbk"))
    write_landing(s.landing, "customers", "2026-06-01", "no-key.csv", "full_name,email\n张三,a@b.cn\n")
    write_landing(s.landing, "feedback", "2026-06-01", "f.csv",
                  ",".join(SOURCES["feedback"].column_names) + "\nR1,C1,nps,9,很好,app,app,2026-06-01T10:00:00,\n")
    res = ingest.run(spark, s)
    assert res["transactions"].files_quarantined == 1 and res["transactions"].rows_loaded == 0
    assert res["customers"].files_quarantined == 2
    assert res["feedback"].rows_loaded == 1
    reasons = {r.source_file.rsplit("/", 1)[1]: r.reason for r in
               table(spark, s, "quarantine", "customers").unionByName(
                   table(spark, s, "quarantine", "transactions")).collect()}
    assert reasons["gbk.csv"] == "file is not valid UTF-8 text (wrong encoding?)"
    assert reasons["no-key.csv"].startswith("missing required column(s): customer_id")
    assert reasons["t.csv.gz"].startswith("truncated or corrupt compressed file")
    # a file the engine's reader gave up on is quarantined with its checksum
    (row,) = table(spark, s, "quarantine", "transactions").collect()
    assert row.file_sha256 == landing.sha256_of(Path(s.landing) / "transactions" / "2026-06-01" / "t.csv.gz")


def test_parquet_and_jsonl_deliveries(spark, lake_settings):
    s = lake_settings
    folder = s.landing / "holdings" / "2026-06-30"
    folder.mkdir(parents=True)
    pq.write_table(pa.table({
        "account_id": ["A1", "A2"], "customer_id": ["C1", "C1"], "product_code": ["CA01", "TD12"],
        "opened_date": ["2020-03-01", "2026-06-10"], "closed_date": [None, None], "status": ["active", "ACTIVE"],
        "balance": [1234.5, 50000.0], "credit_limit": [None, None], "currency": ["CNY", "CNY"],
        "snapshot_date": ["2026-06-30", "2026-06-30"]}), folder / "h.parquet")
    events = [{"event_id": "E1", "customer_id": None, "device_id": "D1", "session_id": "S1",
               "event_ts": "2026-06-01T10:00:00", "channel": "app", "event_type": "page_view", "duration_ms": 1200},
              {"event_id": "E2", "customer_id": "C1", "device_id": "D1", "session_id": "S1",
               "event_ts": "2026-06-01T10:01:00", "channel": "app", "event_type": "login"}]
    write_landing(s.landing, "events", "2026-06-01", "e.jsonl",
                  "\n".join(json.dumps(e) for e in events) + "\n{not json\n")
    res = ingest.run(spark, s)
    assert res["holdings"].rows_loaded == 2 and res["events"].rows_loaded == 2
    assert res["events"].rows_quarantined == 1
    bal = {r.account_id: r.balance for r in table(spark, s, "bronze", "holdings").collect()}
    assert bal == {"A1": Decimal("1234.50"), "A2": Decimal("50000.00")}
    assert table(spark, s, "quarantine", "events").first().line == 3


def test_deliveries_after_as_of_wait_for_a_later_run(spark, lake_settings):
    s = lake_settings
    write_landing(s.landing, "transactions", "2026-06-01", "t.csv", "\n".join([TXN_HEADER, txn_line("T1")]) + "\n")
    write_landing(s.landing, "transactions", "2026-06-02", "t.csv",
                  "\n".join([TXN_HEADER, txn_line("T2", ts="2026-06-02T10:00:00")]) + "\n")
    assert ingest.run(spark, s, as_of=date(2026, 6, 1))["transactions"].rows_loaded == 1
    assert ingest.run(spark, s, as_of=date(2026, 6, 2))["transactions"].rows_loaded == 1
    assert table(spark, s, "bronze", "transactions").count() == 2


def test_unknown_extra_column_is_kept_in_bronze(spark, lake_settings):
    s = lake_settings
    write_landing(s.landing, "transactions", "2026-06-01", "t.csv",
                  TXN_HEADER + ",loyalty_tier\n" + txn_line("T1") + ",gold\n")
    ingest.run(spark, s)
    assert table(spark, s, "bronze", "transactions").first().loyalty_tier == "gold"


def test_silver_after_ingest_keeps_scd2_history_and_no_raw_pii(spark, lake_settings):
    s = lake_settings
    write_landing(s.landing, "customers", "2026-06-01", "c.csv", "\n".join([
        CUST_HEADER, cust_line("C1", "100.00", "2026-06-01T09:00:00", risk="R2")]) + "\n")
    write_landing(s.landing, "customers", "2026-06-02", "c.csv", "\n".join([
        CUST_HEADER, cust_line("C1", "100.00", "2026-06-02T09:00:00", risk="R4")]) + "\n")
    ingest.run(spark, s)
    with pytest.warns(UserWarning, match="development PII key"):
        silver.run(spark, s)
    hist = table(spark, s, "silver", "customers").orderBy("valid_from").collect()
    assert [(h.risk_tolerance, h.is_current) for h in hist] == [("R2", False), ("R4", True)]
    assert hist[0].valid_to == hist[1].valid_from
    values = {str(v) for h in hist for v in h.asDict().values()}
    assert not values & {"王小明", "110101199001011234", "13800138000", "xm@example.cn"}
    pii = table(spark, s, "restricted", "customer_pii").first()
    assert pii.full_name == "王小明" and pii.full_name_token == hist[0].full_name_token


def _landing_file(day: str, size: int, path: str = "x.csv"):
    from c360.landing import LandingFile

    return LandingFile("transactions", f"/l/{day}/{path}", date.fromisoformat(day), "csv", size, f"{day}{path}")


@pytest.mark.unit
def test_plan_batches_cuts_a_backlog_by_size_in_delivery_order():
    files = [_landing_file("2026-06-03", 40), _landing_file("2026-06-01", 60), _landing_file("2026-06-02", 30),
             _landing_file("2026-06-04", 250), _landing_file("2026-06-05", 10), _landing_file("2026-06-01", 5, "a.csv")]
    batches = ingest.plan_batches(files, 100)
    assert [[(f.delivery_date.day, f.size_bytes) for f in b] for b in batches] == [
        [(1, 5), (1, 60), (2, 30)],  # 95 bytes; the next file would pass 100
        [(3, 40)],
        [(4, 250)],  # bigger than the bound: a batch of its own
        [(5, 10)],
    ]
    assert ingest.plan_batches([], 100) == []


def _txn_day(day: str, first: int, n: int, extra: list[str] = ()) -> str:
    lines = [TXN_HEADER] + [txn_line(f"T{i:06d}", amount=f"{i % 997}.25", ts=f"{day}T10:00:00",
                                     desc="x" * 40) for i in range(first, first + n)]
    return "\n".join(lines + list(extra)) + "\n"


def _bronze_content(spark, s, name):
    # _redelivered too: a key re-sent in a later batch was already held when that batch came
    return table(spark, s, "bronze", name).drop("_batch_id", "_ingested_at", "_redelivered")


def test_a_backlog_in_small_batches_loads_what_one_batch_loads(spark, tmp_path, settings):
    """Three ~0.85 MB days with batch_mb=1 load as three batches; bronze, the customer
    versions, quarantine and the file records equal a single-batch load, a key re-sent
    in a later batch keeps its latest version, and losing the file records (a crash
    after the writes) and re-running adds no row."""
    def lake_for(name, batch_mb):
        s = settings.with_paths(landing=tmp_path / "landing", lake=tmp_path / name)
        return s.model_copy(update={"ingest": s.ingest.model_copy(update={"batch_mb": batch_mb})})

    landing = tmp_path / "landing"
    write_landing(landing, "transactions", "2026-06-01", "t.csv", _txn_day("2026-06-01", 0, 8_000))
    write_landing(landing, "transactions", "2026-06-02", "t.csv", _txn_day("2026-06-02", 8_000, 8_000))
    # day 3 re-sends T000005 with a new amount (the later delivery wins) and has a bad row
    write_landing(landing, "transactions", "2026-06-03", "t.csv", _txn_day(
        "2026-06-03", 16_000, 8_000, [txn_line("T000005", amount="999.99", ts="2026-06-01T10:00:00"),
                                       txn_line("TBAD", amount="ten")]))
    for day, income in (("2026-06-01", "100.00"), ("2026-06-02", "200.00"), ("2026-06-03", "300.00")):
        write_landing(landing, "customers", day, "c.csv",
                      "\n".join([CUST_HEADER, cust_line("C1", income, f"{day}T09:00:00")]) + "\n")
    sizes = [p.stat().st_size for p in sorted((landing / "transactions").glob("*/t.csv"))]
    assert all(0.5e6 < n < 1 << 20 for n in sizes), sizes  # two of them do not fit in 1 MB

    batched, whole = lake_for("batched", 1), lake_for("whole", 1000)
    steps: list[str] = []
    res = ingest.run(spark, batched, progress=lambda msg, i, n: steps.append(msg))
    assert [m.split(" (")[0] for m in steps if m.startswith("ingest transactions")] == [
        "ingest transactions 2026-06-01..2026-06-01", "ingest transactions 2026-06-02..2026-06-02",
        "ingest transactions 2026-06-03..2026-06-03"]
    assert (res["transactions"].files_new, res["transactions"].rows_loaded,
            res["transactions"].rows_quarantined) == (3, 24_001, 1)
    ingest.run(spark, whole)

    for name in ("transactions", "customers", "customers_versions"):
        a, b = _bronze_content(spark, batched, name), _bronze_content(spark, whole, name)
        assert a.count() == b.count() and a.exceptAll(b).count() == 0 and b.exceptAll(a).count() == 0, name
    txns = _bronze_content(spark, batched, "transactions")
    assert txns.count() == 24_000 and txns.select("txn_id").distinct().count() == 24_000
    resent = txns.where("txn_id = 'T000005'").first()
    assert resent.amount == Decimal("999.99") and resent._delivery_date == date(2026, 6, 3)
    assert table(spark, batched, "bronze", "customers").first().annual_income == Decimal("300.00")
    assert table(spark, batched, "bronze", "customers_versions").count() == 3
    q = table(spark, batched, "quarantine", "transactions").collect()
    assert [r.raw.split(",")[0] for r in q] == ["TBAD"]

    # a crash after the writes but before the files were recorded: the re-run reads every
    # file again, and the rows already there merge onto themselves
    import shutil

    shutil.rmtree(lake.table_path(batched.lake, "ops", "ingested_files"))
    again = ingest.run(spark, batched)
    assert again["transactions"].files_new == 3
    for name in ("transactions", "customers_versions"):
        a, b = _bronze_content(spark, batched, name), _bronze_content(spark, whole, name)
        assert a.count() == b.count() and a.exceptAll(b).count() == 0, name
    assert table(spark, batched, "quarantine", "transactions").count() == 1


def test_upsert_appends_new_keys_and_merges_known_ones_null_keys_included(spark, tmp_path):
    from pyspark.sql import types as T

    schema = T.StructType([T.StructField("k", T.LongType()), T.StructField("v", T.StringType())])
    path = str(tmp_path / "t")
    lake.append(spark.createDataFrame([(1, "a"), (None, "b"), (50, "z")], schema), path)
    src = spark.createDataFrame([(None, "B"), (2, "c"), (1, "A")], schema)
    assert lake.upsert(spark, src, path, ["k"], update_when="") == {"appended": 1, "merged": 2}
    assert not list((tmp_path / "_staging").glob("*")), "the staged known keys are removed"
    assert sorted(lake.read(spark, path).collect(), key=lambda r: (r.k is not None, r.k)) == [
        (None, "B"), (1, "A"), (2, "c"), (50, "z")]
    # a condition keeps the newer row; an empty batch writes nothing
    assert lake.upsert(spark, spark.createDataFrame([(2, "a")], schema), path, ["k"],
                       update_when="s.v > t.v") == {"appended": 0, "merged": 1}
    assert lake.read(spark, path).where("k = 2").first().v == "c"
    v = lake.version(path)
    assert lake.upsert(spark, spark.createDataFrame([], schema), path, ["k"]) == {"appended": 0, "merged": 0}
    assert lake.version(path) == v


def test_upsert_counts_known_keys_in_the_engine_when_the_log_has_no_row_counts(spark, tmp_path, monkeypatch):
    """A writer that keeps no statistics (row_count None) must not make upsert take known
    keys for new ones: the known keys are then counted by the engine."""
    from pyspark.sql import types as T

    schema = T.StructType([T.StructField("k", T.LongType()), T.StructField("v", T.StringType())])
    path = str(tmp_path / "t")
    lake.append(spark.createDataFrame([(1, "a"), (2, "b")], schema), path)
    monkeypatch.setattr(lake, "row_count", lambda p: None)
    assert lake.count_rows(spark, path) == 2
    src = spark.createDataFrame([(2, "B"), (3, "c")], schema)
    assert lake.upsert(spark, src, path, ["k"], update_when="") == {"appended": 1, "merged": 1}
    assert sorted(lake.read(spark, path).collect()) == [(1, "a"), (2, "B"), (3, "c")]


def test_by_partition_puts_each_partition_value_in_one_file(spark, tmp_path):
    """Rows spread over several tasks, hashed by the partition column before a partitioned
    write: one file per value (not one per task and value), every row kept."""
    df = spark.createDataFrame([(i, f"2026-06-0{1 + i % 3}") for i in range(30)], "k long, d string").repartition(4)
    path = str(tmp_path / "p")
    lake.overwrite(lake.by_partition(df, "d"), path, partition_by=["d"])
    assert sorted(p.parent.name for p in Path(path).glob("d=*/*.parquet")) == [
        "d=2026-06-01", "d=2026-06-02", "d=2026-06-03"]
    assert sorted(r.k for r in lake.read(spark, path).collect()) == list(range(30))
    # the partition values from the log: what silver's partition rewrite checks first
    assert lake.partition_values(path, "d") == {"2026-06-01", "2026-06-02", "2026-06-03"}
    lake.create_if_missing(spark, str(tmp_path / "empty"), df.schema, partition_by=["d"])
    assert lake.partition_values(str(tmp_path / "empty"), "d") == set()


def test_files_recorded_without_a_modification_time_are_hashed_once_more_then_not(spark, lake_settings, hashed):
    """A lake whose ops/ingested_files predates modified_ns: the next run hashes each file
    once (and skips it by checksum), remembers its time, and the run after reads nothing."""
    from c360 import ops

    s = lake_settings
    write_landing(s.landing, "transactions", "2026-06-01", "t.csv", "\n".join([TXN_HEADER, txn_line("T1")]) + "\n")
    ingest.run(spark, s)
    path = lake.table_path(s.lake, "ops", "ingested_files")
    old = table(spark, s, "ops", "ingested_files").drop("modified_ns")
    lake.overwrite(old, path)  # as an earlier version wrote it
    assert ops.ingested_files(spark, s.lake) == {}
    hashed.clear()
    assert ingest.run(spark, s)["transactions"].files_skipped == 1
    assert len(hashed) == 1
    assert set(ops.ingested_files(spark, s.lake)) == {str(s.landing / "transactions" / "2026-06-01" / "t.csv")}
    hashed.clear()
    assert ingest.run(spark, s)["transactions"].files_skipped == 1
    assert hashed == []
    assert table(spark, s, "bronze", "transactions").count() == 1


def test_a_key_repeated_in_one_file_loads_once_and_a_conflicting_copy_is_quarantined(spark, lake_settings):
    """Within one file the last line of a key is loaded. An earlier line with other values
    is a conflict (which one the bank meant is unknowable): quarantined with a reason
    naming the kept line, and counted. An identical copy is dropped and counted. Spellings
    of one id (full-width, no-break and ideographic spaces, zero-width space) are one key.
    Two versions of one customer in one file (two ``updated_at``) are history, not a conflict."""
    s = lake_settings
    write_landing(s.landing, "transactions", "2026-06-01", "t.csv", "\n".join([
        TXN_HEADER,
        txn_line("T1", "10.00"),            # line 2: conflicts with line 4
        txn_line("T2", "5.00"),             # line 3
        txn_line("T1", "20.00"),            # line 4: kept
        txn_line("T2", "5.00"),             # line 5: identical to line 3
        txn_line("\uff34\uff13", "7.00"),   # line 6: "Ｔ３", conflicts with line 7
        txn_line("\u200bT3\u00a0\u3000", "8.00"),  # line 7: kept
        txn_line("T4", "9.00")]) + "\n")
    write_landing(s.landing, "customers", "2026-06-01", "c.csv", "\n".join([
        CUST_HEADER, cust_line("C1", "100.00", "2026-06-01T09:00:00"),
        cust_line("\uff23\uff11", "200.00", "2026-06-01T10:00:00")]) + "\n")
    res = ingest.run(spark, s)
    txn = res["transactions"]
    assert (txn.rows_read, txn.rows_loaded, txn.rows_quarantined) == (7, 5, 2)
    assert txn.reasons["conflicting duplicate key in file"] == 2 and txn.rows_repeated_in_file == 1
    bronze = {r.txn_id: r.amount for r in table(spark, s, "bronze", "transactions").collect()}
    assert bronze == {"T1": Decimal("20.00"), "T2": Decimal("5.00"), "T3": Decimal("8.00"), "T4": Decimal("9.00")}
    q = {r.line: r for r in table(spark, s, "quarantine", "transactions").collect()}
    assert sorted(q) == [2, 6]
    assert q[2].reason == "conflicting duplicate key in file: txn_id also on line 4 with other values (that line was loaded)"
    assert q[6].reason == "conflicting duplicate key in file: txn_id also on line 7 with other values (that line was loaded)"
    assert q[2].raw.startswith("T1,A1,C1,") and ",10.00," in q[2].raw
    files = {r.file_path.rsplit("/", 1)[1]: r for r in
             lake.read(spark, lake.table_path(s.lake, "ops", "ingested_files")).collect()}
    assert (files["t.csv"].rows_read, files["t.csv"].rows_loaded, files["t.csv"].rows_quarantined) == (7, 5, 2)
    # one customer (C1 in two spellings), two versions: both kept, nothing quarantined
    assert res["customers"].rows_quarantined == 0 and res["customers"].rows_repeated_in_file == 0
    assert [(r.customer_id, r.annual_income) for r in table(spark, s, "bronze", "customers").collect()] == \
        [("C1", Decimal("200.00"))]
    assert table(spark, s, "bronze", "customers_versions").count() == 2
    # re-run: nothing changes
    again = ingest.run(spark, s)
    assert again["transactions"].files_skipped == 1
    assert table(spark, s, "quarantine", "transactions").count() == 2

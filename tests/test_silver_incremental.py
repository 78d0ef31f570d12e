"""Incremental silver: a daily run processes only the newly ingested bronze rows, rewrites
only their partitions, ends where a full rebuild ends, and a repeat writes nothing."""

from __future__ import annotations

import warnings
from datetime import date, timedelta

import pytest
from pyspark.sql import functions as F

from c360 import lake
from c360.contract import SOURCES
from jobs import ingest, silver

AS_OF = date(2026, 6, 30)
LINEAGE = ["_batch_id", "_ingested_at", "_source_file"]


def _silver(spark, s):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # development PII key
        return silver.run(spark, s)


def _table(spark, s, name):
    return lake.read(spark, lake.table_path(s.lake, "silver", name))


@pytest.fixture(scope="module")
def lakes(tmp_path_factory, settings, spark):
    from c360.synth import generate

    root = tmp_path_factory.mktemp("incremental")
    generate(customers=60, days=8, as_of=AS_OF, seed=11, landing=root / "landing", dirty_rate=0.0)
    daily = settings.with_paths(landing=root / "landing", lake=root / "daily")
    full = settings.with_paths(landing=root / "landing", lake=root / "full")
    ingest.run(spark, daily, as_of=AS_OF - timedelta(days=2))
    first = _silver(spark, daily)
    versions = {n: lake.version(lake.table_path(daily.lake, "silver", n)) for n in SOURCES}
    ingest.run(spark, daily, as_of=AS_OF)
    second = _silver(spark, daily)
    ingest.run(spark, full, as_of=AS_OF)
    _silver(spark, full)
    return daily, full, first, second, versions


def test_a_daily_run_processes_only_new_rows_and_writes_only_their_partitions(lakes, spark):
    daily, _, first, second, _ = lakes
    bronze = lake.read(spark, lake.table_path(daily.lake, "bronze", "transactions"))
    last_batch = bronze.agg({"_ingested_at": "max"}).first()[0]
    assert second["changed_rows"]["transactions"] == bronze.where(bronze._ingested_at == last_batch).count() > 0
    # day partitions: the two new business days (and any late rows), never the whole history
    written = second["partitions"]["transactions"]
    assert {str(AS_OF - timedelta(days=1)), str(AS_OF)} <= set(written)
    assert len(written) < len(first["partitions"]["transactions"]) + 2
    assert first["partitions_written"]["transactions"] >= 6
    # a monthly table gets its month rewritten
    assert second["partitions"]["feedback"] == ["2026-06-01"]


def test_daily_runs_end_where_a_full_rebuild_ends(lakes, spark):
    daily, full, *_ = lakes
    present = [n for n in SOURCES if lake.exists(lake.table_path(full.lake, "silver", n))]
    assert len(present) >= 7
    for name in present:
        a, b = _table(spark, daily, name), _table(spark, full, name)
        cols = [c for c in b.columns if c not in LINEAGE]
        assert sorted(a.columns) == sorted(b.columns), name
        a, b = a.select(*cols), b.select(*cols)
        assert a.count() == b.count() > 0, name
        assert a.exceptAll(b).count() == 0 and b.exceptAll(a).count() == 0, name


def test_a_repeated_run_finds_nothing_new_and_writes_nothing(lakes, spark):
    daily, *_ = lakes
    names = [*SOURCES, silver.DAILY]
    pii = lake.table_path(daily.lake, "restricted", "customer_pii")
    before = {n: lake.version(lake.table_path(daily.lake, "silver", n)) for n in names}
    pii_before = lake.version(pii)
    again = _silver(spark, daily)
    assert all(again["changed_rows"][n] == 0 for n in again["changed_rows"] if n != "product_catalog")
    assert again["partitions_written"][silver.DAILY] == 0
    after = {n: lake.version(lake.table_path(daily.lake, "silver", n)) for n in names}
    kept = [n for n in SOURCES if SOURCES[n].event_time or n == "customers"] + [silver.DAILY]
    assert {n: after[n] for n in kept} == {n: before[n] for n in kept}
    assert lake.version(pii) == pii_before


def _pii(spark, s):
    return lake.read(spark, lake.table_path(s.lake, "restricted", "customer_pii"))


def test_customers_are_recomputed_only_when_they_have_a_new_version(lakes, spark, tmp_path):
    """A delivery changing two customers recomputes those two, from all of their versions;
    silver/customers and restricted/customer_pii then equal a rebuild from the same bronze."""
    import csv
    import shutil

    daily, _, first, *_ = lakes
    assert first["changed_rows"]["customers"] == -1  # the first run built them
    s = daily.with_paths(landing=tmp_path / "landing", lake=tmp_path / "lake")
    shutil.copytree(daily.landing, s.landing)
    shutil.copytree(daily.lake, s.lake)
    first_delivery = sorted((s.landing / "customers").glob("*/*.csv"))[0]  # every customer
    with first_delivery.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len({r["customer_id"] for r in rows[:2]}) == 2
    changed = [dict(r, city="Testville", updated_at="2026-07-01T09:00:00") for r in rows[:2]]
    day = AS_OF + timedelta(days=1)
    (s.landing / "customers" / day.isoformat()).mkdir()
    with (s.landing / "customers" / day.isoformat() / "customers_changes.csv").open("w", encoding="utf-8",
                                                                                   newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(changed)
    ingest.run(spark, s, as_of=day)
    assert _silver(spark, s)["changed_rows"]["customers"] == 2
    now = _table(spark, s, "customers").where("is_current AND city = 'Testville'")
    assert sorted(r.customer_id for r in now.collect()) == sorted(r["customer_id"] for r in changed)

    rebuilt = s.with_paths(landing=s.landing, lake=tmp_path / "rebuilt")
    shutil.copytree(lake.table_path(s.lake, "bronze", ""), lake.table_path(rebuilt.lake, "bronze", ""))
    assert _silver(spark, rebuilt)["changed_rows"]["customers"] == -1
    for a, b in ((_table(spark, s, "customers"), _table(spark, rebuilt, "customers")),
                 (_pii(spark, s), _pii(spark, rebuilt))):
        cols = [c for c in b.columns if c not in LINEAGE]
        assert sorted(a.columns) == sorted(b.columns)
        a, b = a.select(*cols), b.select(*cols)
        assert a.count() == b.count() > 0
        assert a.exceptAll(b).count() == 0 and b.exceptAll(a).count() == 0


def test_another_pii_key_rebuilds_the_customers(lakes, spark, tmp_path, monkeypatch):
    """Tokens made under one key are never kept next to another key's: a new key rebuilds."""
    import shutil

    from c360.privacy import pii_key_ref
    from features.silver import hmac_token

    daily, *_ = lakes
    other = daily.with_paths(landing=daily.landing, lake=tmp_path / "rekeyed")
    shutil.copytree(daily.lake, other.lake)
    monkeypatch.setenv(other.privacy.key_env, "another-secret-key-of-enough-length-0123456789")
    key = pii_key_ref(other)
    res = _silver(spark, other)
    assert res["changed_rows"]["customers"] == -1
    pii = _pii(spark, other)
    want = pii.select("customer_id", hmac_token(pii.phone, key).alias("t"))
    assert pii.where(pii.phone.isNotNull()).count() > 0
    current = _table(spark, other, "customers").where("is_current").select("customer_id", "phone_token")
    assert current.join(want, "customer_id").where("NOT (phone_token <=> t)").count() == 0
    assert _silver(spark, other)["changed_rows"]["customers"] == 0  # and the new key's watermark holds


def test_event_tables_are_partitioned_by_local_business_day(lakes, spark):
    daily, *_ = lakes
    from deltalake import DeltaTable

    for name, granularity in (("transactions", "day"), ("events", "day"), ("feedback", "month")):
        path = lake.table_path(daily.lake, "silver", name)
        assert DeltaTable(path).metadata().partition_columns == ["partition_date"]
        t = _table(spark, daily, name)
        if granularity == "month":
            assert {r[0].day for r in t.select("partition_date").distinct().collect()} == {1}
    tx = _table(spark, daily, "transactions").selectExpr(
        "partition_date", "to_date(from_utc_timestamp(txn_ts, 'Asia/Shanghai')) AS local_day")
    assert tx.where("partition_date <> local_day").count() == 0


@pytest.mark.unit
def test_plan_chunks_groups_whole_loads_oldest_first():
    from datetime import datetime

    t = [datetime(2026, 6, d) for d in range(1, 6)]
    loads = [(t[0], 4), (t[1], 5), (t[2], 20), (t[3], 3), (t[4], 3)]
    assert silver.plan_chunks(loads, 10) == [(t[1], 9), (t[2], 20), (t[4], 6)]
    assert silver.plan_chunks(loads, 100) == [(t[4], 35)]
    assert silver.plan_chunks([], 10) == []


def test_a_backlog_built_in_chunks_equals_one_build(lakes, spark, tmp_path):
    """silver.batch_rows=1: every ingest load of bronze is its own chunk; the tables equal
    the one-go build, and each chunk moved the watermark (the last one is the newest load)."""
    import shutil

    daily, full, *_ = lakes
    chunked = daily.with_paths(landing=daily.landing, lake=tmp_path / "chunked")
    shutil.copytree(lake.table_path(daily.lake, "bronze", ""), lake.table_path(chunked.lake, "bronze", ""))
    chunked = chunked.model_copy(update={"silver": chunked.silver.model_copy(update={"batch_rows": 1})})
    bronze = lake.read(spark, lake.table_path(chunked.lake, "bronze", "transactions"))
    loads = bronze.select("_ingested_at").distinct().count()
    assert loads >= 2
    res = _silver(spark, chunked)
    assert res["changed_rows"]["transactions"] == bronze.count()
    for name in [n for n in SOURCES if lake.exists(lake.table_path(full.lake, "silver", n))]:
        a, b = _table(spark, chunked, name), _table(spark, full, name)
        cols = [c for c in b.columns if c not in LINEAGE]
        a, b = a.select(*cols), b.select(*cols)
        assert a.count() == b.count() > 0, name
        assert a.exceptAll(b).count() == 0 and b.exceptAll(a).count() == 0, name
    versions = lake.version(lake.table_path(chunked.lake, "silver", "transactions"))
    assert versions >= loads - 1  # one commit per chunk (the first creates the table at version 0)
    assert _table(spark, chunked, "transactions").agg({"_ingested_at": "max"}).first()[0] == \
        bronze.agg({"_ingested_at": "max"}).first()[0]


def _daily(spark, s):
    return _table(spark, s, silver.DAILY).drop("_ingested_at")


def _same(a, b):
    b = b.select(*a.columns)
    return a.count() == b.count() and a.exceptAll(b).count() == 0 and b.exceptAll(a).count() == 0


def test_the_daily_transaction_summary_follows_silver_day_by_day(lakes, spark):
    """silver/transactions_daily is refreshed for the partitions a run wrote only, and ends
    equal to a summary of the whole silver table (and to the full rebuild's)."""
    from features.profile import transactions_daily

    daily, full, first, second, _ = lakes
    assert second["partitions"][silver.DAILY] == second["partitions"]["transactions"]
    assert first["partitions"][silver.DAILY] == first["partitions"]["transactions"]
    recomputed = transactions_daily(_table(spark, daily, "transactions"), daily.bank.timezone).drop("_ingested_at")
    assert _daily(spark, daily).count() > 0
    assert _same(_daily(spark, daily), recomputed)
    assert _same(_daily(spark, daily), _daily(spark, full))
    from deltalake import DeltaTable
    assert DeltaTable(lake.table_path(daily.lake, "silver", silver.DAILY)).metadata().partition_columns == ["day"]


def test_a_stopped_summary_refresh_is_redone_by_the_next_run(lakes, spark, tmp_path):
    """No new rows: nothing is written. A refresh whose watermark never moved (stopped
    halfway) summarises those partitions again on the next run; a lost summary table is
    rebuilt whole."""
    import shutil

    from c360 import ops

    daily, *_ = lakes
    copy = daily.with_paths(landing=daily.landing, lake=tmp_path / "copy")
    shutil.copytree(daily.lake, copy.lake)
    path = lake.table_path(copy.lake, "silver", silver.DAILY)
    expected = _daily(spark, copy)
    before = lake.version(path)
    assert silver.refresh_transactions_daily(spark, copy) == []
    assert lake.version(path) == before
    # the last load's refresh "stopped": its watermark is the first load's
    loads = sorted(r[0] for r in _table(spark, copy, "transactions").select("_ingested_at").distinct().collect())
    ops.save_derived_watermark(spark, copy.lake, f"silver/{silver.DAILY}", loads[0])
    from jobs.profile import silver_tables
    assert silver.DAILY not in silver_tables(spark, copy)  # behind: the profile reads transactions
    redone = silver.refresh_transactions_daily(spark, copy)
    assert silver.DAILY in silver_tables(spark, copy)
    assert 0 < len(redone) < len(_table(spark, copy, "transactions").select("partition_date").distinct().collect())
    assert _same(_daily(spark, copy), expected)
    assert ops.derived_watermark(spark, copy.lake, f"silver/{silver.DAILY}") == loads[-1]
    shutil.rmtree(path)
    silver.refresh_transactions_daily(spark, copy)
    assert _same(_daily(spark, copy), expected)


def test_the_latest_holdings_follow_silver_and_stand_in_only_when_valid(lakes, spark, tmp_path):
    """silver/holdings_latest is one row per account, the latest snapshot of silver
    holdings after each run (equal to the full rebuild's); it stands for the latest
    snapshots at as_of only when current and no snapshot is after as_of, and the holdings
    features and held products computed from it equal those from every snapshot."""
    import shutil

    from c360 import ops
    from features.candidates import held_products
    from features.profile import AsOf, aggregate_family, holdings_inputs, latest_snapshots

    daily, full, first, second, _ = lakes
    holdings = _table(spark, daily, "holdings")
    assert holdings.select("snapshot_date").distinct().count() >= 2  # the daily run added a snapshot
    assert first["changed_rows"][silver.LATEST] > 0 and second["changed_rows"][silver.LATEST] > 0
    latest = _table(spark, daily, silver.LATEST)
    assert latest.count() == holdings.select("account_id").distinct().count() == second["rows"][silver.LATEST]
    assert _same(latest, latest_snapshots(holdings))
    assert _same(latest.drop(*LINEAGE), _table(spark, full, silver.LATEST).drop(*LINEAGE))
    newest = holdings.agg({"snapshot_date": "max"}).first()[0]
    assert newest == AS_OF
    assert silver.holdings_latest(spark, daily, AS_OF) is not None
    assert silver.holdings_latest(spark, daily, AS_OF - timedelta(days=1)) is None  # a snapshot after as_of

    at, catalog = AsOf(AS_OF, daily.bank.timezone), _table(spark, daily, "product_catalog")
    with_latest = aggregate_family("holdings", holdings_inputs(holdings, catalog, at, latest), at)
    without = aggregate_family("holdings", holdings_inputs(holdings, catalog, at), at)
    assert with_latest.count() > 0 and _same(with_latest, without)
    assert _same(held_products(holdings, at, latest), held_products(holdings, at))

    # a refresh that "stopped" (watermark at the first load): not current, so not read;
    # the next refresh brings it back; with nothing new it writes nothing
    copy = daily.with_paths(landing=daily.landing, lake=tmp_path / "copy")
    shutil.copytree(daily.lake, copy.lake)
    path = lake.table_path(copy.lake, "silver", silver.LATEST)
    loads = sorted(r[0] for r in holdings.select("_ingested_at").distinct().collect())
    ops.save_derived_watermark(spark, copy.lake, f"silver/{silver.LATEST}", loads[0])
    assert not silver.is_current(spark, copy, silver.LATEST)
    assert silver.holdings_latest(spark, copy, AS_OF) is None
    assert silver.refresh_holdings_latest(spark, copy) > 0
    assert silver.is_current(spark, copy, silver.LATEST) and _same(_table(spark, copy, silver.LATEST), latest)
    before = lake.version(path)
    assert silver.refresh_holdings_latest(spark, copy) == 0 and lake.version(path) == before

    # a rebuild reads every snapshot and gives the same table
    assert silver.refresh_holdings_latest(spark, copy, rebuild=True) == holdings.count()
    assert _same(_table(spark, copy, silver.LATEST), latest)


HOLDINGS_DDL = ("account_id string, customer_id string, product_code string, opened_date date, closed_date date, "
                "status string, balance decimal(18,2), credit_limit decimal(18,2), currency string, "
                "snapshot_date date, partition_date date, _ingested_at timestamp")


def _load_holdings(spark, src: str, rows, at) -> None:
    """Append silver holdings rows (account, customer, product, opened, balance, snapshot)
    loaded at ``at``, partitioned by their snapshot day."""
    d = date.fromisoformat
    spark.createDataFrame(
        [(a, c, p, d(o), None, "active", bal, None, "CNY", d(snap), d(snap), at) for a, c, p, o, bal, snap in rows],
        HOLDINGS_DDL).write.format("delta").mode("append").partitionBy("partition_date").save(src)


def test_a_rebuild_of_the_derived_holdings_reads_every_snapshot(spark, lake_settings):
    """After silver holdings is rebuilt, both derived tables are rebuilt from every snapshot
    (what the silver step does): the latest and the lagged snapshot per account, a row
    re-sent later winning, both current, and a second rebuild gives the same tables."""
    from datetime import datetime, timezone
    from decimal import Decimal as D

    from features.profile import latest_snapshots

    s = lake_settings
    src = lake.table_path(s.lake, "silver", "holdings")
    t1, t2 = (datetime(2026, 7, day, 1, tzinfo=timezone.utc) for day in (1, 2))
    _load_holdings(spark, src, [("A", "c1", "SA001", "2025-12-01", D("100"), "2026-01-10"),
                                ("A", "c1", "SA001", "2025-12-01", D("200"), "2026-03-01"),
                                ("A", "c1", "SA001", "2025-12-01", D("300"), "2026-04-05"),
                                ("B", "c2", "TD003", "2026-01-20", D("50"), "2026-02-01"),
                                ("C", "c2", "SA001", "2026-04-01", D("70"), "2026-03-20")], t1)
    _load_holdings(spark, src, [("A", "c1", "SA001", "2025-12-01", D("400"), "2026-06-30"),
                                ("C", "c2", "SA001", "2026-04-01", D("80"), "2026-03-20")], t2)  # C re-sent later
    # cut 2026-06-30 - 90 days = 2026-04-01: 5 snapshots up to it, 2 after it
    assert silver.refresh_holdings_latest(spark, s, rebuild=True) == 7
    assert silver.refresh_holdings_lagged(spark, s, rebuild=True) == 5
    latest, lagged = _table(spark, s, silver.LATEST), _table(spark, s, silver.LAGGED)
    assert {r["account_id"]: r["balance"] for r in latest.collect()} == {
        "A": D("400.00"), "B": D("50.00"), "C": D("80.00")}
    assert {(r["account_id"], r["balance"], r[silver.CUT]) for r in lagged.collect()} == {
        ("A", D("200.00"), date(2026, 4, 1)), ("B", D("50.00"), date(2026, 4, 1)), ("C", D("80.00"), date(2026, 4, 1))}
    assert silver.is_current(spark, s, silver.LATEST) and silver.is_current(spark, s, silver.LAGGED)
    assert _same(latest, latest_snapshots(lake.read(spark, src)))
    built = {n: sorted(_table(spark, s, n).collect()) for n in (silver.LATEST, silver.LAGGED)}
    assert silver.refresh_holdings_latest(spark, s, rebuild=True) == 7
    assert silver.refresh_holdings_lagged(spark, s, rebuild=True) == 5
    assert {n: sorted(_table(spark, s, n).collect()) for n in built} == built


def test_the_lagged_holdings_follow_the_cut_and_late_rows_and_stand_in_only_for_their_as_of(spark, lake_settings):
    """silver/holdings_lagged: the latest snapshot per account on or before the newest
    snapshot minus 90 days. Each refresh equals the latest snapshots computed from every
    snapshot up to the cut, including a late delivery for an old date; the profile's
    holdings family from it equals the one without it; it is offered only for the as_of
    it was cut for, and only while current."""
    from datetime import datetime, timezone

    from c360 import ops
    from features.profile import BALANCE_LAG_DAYS, AsOf, aggregate_family, holdings_inputs, latest_snapshots

    s = lake_settings
    src = lake.table_path(s.lake, "silver", "holdings")
    out = lake.table_path(s.lake, "silver", silver.LAGGED)

    def load(rows, at: datetime):
        _load_holdings(spark, src, rows, at)

    def expected(cut: date):
        return latest_snapshots(lake.read(spark, src).where(F.col("snapshot_date") <= F.lit(cut)))

    def lagged():
        return _table(spark, s, silver.LAGGED)

    def refresh() -> int:  # in the silver step's order: the newest snapshot comes from holdings_latest
        silver.refresh_holdings_latest(spark, s)
        return silver.refresh_holdings_lagged(spark, s)

    t1, t2, t3, t4 = (datetime(2026, 7, day, 1, tzinfo=timezone.utc) for day in (1, 2, 3, 4))
    from decimal import Decimal as D
    load([("A", "c1", "SA001", "2025-12-01", D("100"), "2026-01-10"),
          ("A", "c1", "SA001", "2025-12-01", D("200"), "2026-03-01"),
          ("A", "c1", "SA001", "2025-12-01", D("300"), "2026-04-05"),
          ("A", "c1", "SA001", "2025-12-01", D("400"), "2026-06-30"),
          ("B", "c2", "TD003", "2026-01-20", D("50"), "2026-02-01"),
          ("C", "c2", "SA001", "2026-04-01", D("70"), "2026-04-02")], t1)
    assert refresh() == 3  # the snapshots up to 2026-04-01
    assert date(2026, 6, 30) - timedelta(days=BALANCE_LAG_DAYS) == date(2026, 4, 1)
    got = {r["account_id"]: (r["balance"], r[silver.CUT]) for r in lagged().collect()}
    assert got == {"A": (D("200.00"), date(2026, 4, 1)), "B": (D("50.00"), date(2026, 4, 1))}
    assert _same(lagged().drop(silver.CUT), expected(date(2026, 4, 1)))

    # the next day: a new snapshot moves the cut by a day, and a late row for B arrives
    load([("A", "c1", "SA001", "2025-12-01", D("500"), "2026-07-01"),
          ("B", "c2", "TD003", "2026-01-20", D("60"), "2026-03-15")], t2)
    assert refresh() == 2  # C's 04-02 snapshot and B's late row
    got = {r["account_id"]: r["balance"] for r in lagged().collect()}
    assert got == {"A": D("200.00"), "B": D("60.00"), "C": D("70.00")}
    assert _same(lagged().drop(silver.CUT), expected(date(2026, 4, 2)))
    assert ops.derived_watermark(spark, s.lake, f"silver/{silver.LAGGED}") == t2.replace(tzinfo=None)  # UTC

    # offered only for the as_of it was cut for
    table = silver.holdings_lagged(spark, s, date(2026, 7, 1))
    assert table is not None and silver.CUT not in table.columns
    assert silver.holdings_lagged(spark, s, date(2026, 6, 30)) is None
    # the profile job takes both stand-ins, under the names customer_360 reads, for that as_of only
    assert set(silver.holdings_stand_ins(spark, s, date(2026, 7, 1))) == {"holdings_latest", "holdings_lagged"}
    assert silver.holdings_stand_ins(spark, s, date(2026, 6, 30)) == {}

    # the profile's holdings family is the same with and without it
    catalog = spark.createDataFrame([("SA001", "savings"), ("TD003", "time_deposit")], "product_code string, family string")
    at = AsOf(date(2026, 7, 1), s.bank.timezone)
    holdings = lake.read(spark, src)
    with_lagged = aggregate_family("holdings", holdings_inputs(holdings, catalog, at, lagged=table), at)
    without = aggregate_family("holdings", holdings_inputs(holdings, catalog, at), at)
    assert _same(with_lagged, without)
    assert with_lagged.where("customer_id = 'c2'").first()["aum_90d_ago"] == 130.0  # B 60 + C 70

    # nothing new: nothing written
    version = lake.version(out)
    assert refresh() == 0 and lake.version(out) == version
    # a load after the cut only (nothing for this table) moves the watermark, keeps it current
    load([("A", "c1", "SA001", "2025-12-01", D("450"), "2026-06-01")], t3)
    assert not silver.is_current(spark, s, silver.LAGGED)
    assert refresh() == 0 and lake.version(out) == version
    assert silver.is_current(spark, s, silver.LAGGED)
    # a newer snapshot whose cut (2026-04-04) adds no snapshot: the same rows under the new cut
    load([("A", "c1", "SA001", "2025-12-01", D("600"), "2026-07-03")], t4)
    assert refresh() == 0 and lake.version(out) > version
    assert {r[silver.CUT] for r in lagged().collect()} == {date(2026, 4, 4)}
    assert _same(lagged().drop(silver.CUT), expected(date(2026, 4, 4)))
    assert silver.holdings_lagged(spark, s, date(2026, 7, 3)) is not None
    # a refresh that stopped (watermark behind the source): not offered
    ops.save_derived_watermark(spark, s.lake, f"silver/{silver.LAGGED}", t1)
    assert silver.holdings_lagged(spark, s, date(2026, 7, 1)) is None
    # a cut that moved back (holdings rebuilt without the newest days): from every snapshot
    holdings.where(F.col("snapshot_date") <= F.lit(date(2026, 6, 1))).write.format("delta").mode("overwrite") \
        .save(src + "_older")
    import shutil
    shutil.rmtree(src)
    shutil.move(src + "_older", src)
    silver.refresh_holdings_latest(spark, s, rebuild=True)
    assert silver.refresh_holdings_lagged(spark, s) == 3  # every snapshot up to 2026-03-03
    assert _same(lagged().drop(silver.CUT), expected(date(2026, 3, 3)))
    assert {r["account_id"] for r in lagged().collect()} == {"A", "B"}


def _correct(spark, s, name: str, key: str, changes: dict, day: date) -> None:
    """Deliver (on ``day``) the bronze row of ``name`` with key value ``key`` again, with ``changes``."""
    import csv
    import io

    from helpers import write_landing

    cols = SOURCES[name].column_names
    key_col = SOURCES[name].key[0]
    row = lake.read(spark, lake.table_path(s.lake, "bronze", name)).where(F.col(key_col) == key)
    values = row.select(*[F.col(c).cast("string") for c in cols]).first().asDict() | changes
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(cols)
    w.writerow(["" if values[c] is None else values[c] for c in cols])
    write_landing(s.landing, name, str(day), f"correction_{key}.csv", out.getvalue())


def _first(df, partition: date, order: str, condition: str = "true"):
    return df.where(F.col("partition_date") == F.lit(str(partition)).cast("date")).where(condition) \
        .orderBy(order).first()


def _day_n(spark, s, customer: str, day: date) -> int:
    row = _table(spark, s, silver.DAILY).where((F.col("customer_id") == customer) & (F.col("day") == F.lit(day))) \
        .select("n").first()
    return 0 if row is None else row["n"]


CORRECTED = AS_OF + timedelta(days=1)  # the corrections' delivery day
NEW_MONTH = date(2026, 5, 15)          # no interactions partition for May before the correction


@pytest.fixture(scope="module")
def moved(lakes, spark, tmp_path_factory):
    """The daily lake after one more delivery correcting event times: a transaction moved
    from the day before AS_OF to an earlier day that has rows, one moved to a day without
    a partition yet, an event moved to another day, and an interaction moved to a month
    without a partition. Returns the settings, the rows before (by source) and the run."""
    import shutil

    daily, *_ = lakes
    root = tmp_path_factory.mktemp("moved")
    s = daily.with_paths(landing=root / "landing", lake=root / "lake")
    shutil.copytree(daily.lake, s.lake)
    shutil.copytree(daily.landing, s.landing)
    tx, ev, it = (_table(spark, s, n) for n in ("transactions", "events", "interactions"))
    old = {
        "tx1": _first(tx, AS_OF - timedelta(days=1), "txn_id", "customer_id IS NOT NULL"),
        "tx2": _first(tx, AS_OF - timedelta(days=2), "txn_id", "customer_id IS NOT NULL"),
        "ev": _first(ev, AS_OF - timedelta(days=1), "event_id", "attributed_by = 'login'"),
        "it": _first(it, date(2026, 6, 1), "interaction_id", f"started_at >= TIMESTAMP'{AS_OF - timedelta(days=3)}'"),
    }
    assert not tx.where(F.col("partition_date") == F.lit(AS_OF - timedelta(days=20))).count()
    assert not it.where(F.col("partition_date") == F.lit(date(2026, 5, 1))).count()
    new_time = {"tx1": AS_OF - timedelta(days=4), "tx2": AS_OF - timedelta(days=20), "ev": AS_OF - timedelta(days=3),
                "it": NEW_MONTH}
    targets = {"tx1": ("transactions", "txn_ts", "txn_id"), "tx2": ("transactions", "txn_ts", "txn_id"),
               "ev": ("events", "event_ts", "event_id"), "it": ("interactions", "started_at", "interaction_id")}
    for k, (name, col, key) in targets.items():
        _correct(spark, s, name, old[k][key], {col: f"{new_time[k]}T12:00:00"}, CORRECTED)
    counts = {n: _table(spark, s, n).count() for n in ("transactions", "events", "interactions")}
    daily_n = {(k, d): _day_n(spark, s, old[k].customer_id, d) for k in ("tx1", "tx2")
               for d in (old[k].partition_date, new_time[k])}
    ingest.run(spark, s, as_of=CORRECTED)
    result = _silver(spark, s)
    return s, old, new_time, counts, daily_n, result


def test_a_corrected_event_time_moves_the_row_to_its_new_partition(moved, spark):
    """A re-delivered row whose event time moved to another partition (day or month, one
    the table held or not) is in silver once, in its new partition, for every partitioned
    source; the old partition was rewritten without it and nothing else was lost."""
    s, old, new_time, counts, _, result = moved
    for k, name, key, month in (("tx1", "transactions", "txn_id", False), ("tx2", "transactions", "txn_id", False),
                                ("ev", "events", "event_id", False), ("it", "interactions", "interaction_id", True)):
        after = _table(spark, s, name).where(F.col(key) == old[k][key]).collect()
        want = new_time[k].replace(day=1) if month else new_time[k]
        assert [r.partition_date for r in after] == [want], k
        assert str(old[k].partition_date) in result["partitions"][name], k
        assert str(want) in result["partitions"][name], k
    for name, n in counts.items():
        assert _table(spark, s, name).count() == n, name
    assert _table(spark, s, "events").where(F.col("event_id") == old["ev"].event_id).first().attributed_by == "login"


def test_bronze_marks_the_re_delivered_rows(moved, spark):
    """The ingest marks a row whose key bronze held already (what silver looks up), and
    only those: the keys appended by the daily loads are marked as new."""
    s, old, *_ = moved
    from features.bronze import REDELIVERED

    for name, key, ks in (("transactions", "txn_id", ("tx1", "tx2")), ("events", "event_id", ("ev",)),
                          ("interactions", "interaction_id", ("it",))):
        bronze = lake.read(spark, lake.table_path(s.lake, "bronze", name))
        marked = {r[key] for r in bronze.where(F.col(REDELIVERED)).select(key).collect()}
        assert marked == {old[k][key] for k in ks}, name
        assert bronze.where(~F.col(REDELIVERED)).count() == bronze.count() - len(ks), name


def test_the_day_summary_moves_the_corrected_transaction_to_its_new_day(moved, spark):
    """silver/transactions_daily no longer counts the moved transaction on its old day and
    counts it on the new one (a day that had no partition included), equals a summary of
    the whole silver table, and no partition is left pending."""
    from c360 import ops
    from features.profile import transactions_daily

    s, old, new_time, _, daily_n, result = moved
    for k in ("tx1", "tx2"):
        c, was, now = old[k].customer_id, old[k].partition_date, new_time[k]
        assert _day_n(spark, s, c, was) == daily_n[(k, was)] - 1, k
        assert _day_n(spark, s, c, now) == daily_n[(k, now)] + 1, k
        assert str(was) in result["partitions"][silver.DAILY], k
    recomputed = transactions_daily(_table(spark, s, "transactions"), s.bank.timezone).drop("_ingested_at")
    assert _same(_daily(spark, s), recomputed)
    assert ops.pending_partitions(spark, s.lake, f"silver/{silver.DAILY}") == []
    assert silver.is_current(spark, s, silver.DAILY)


def test_moved_rows_end_where_a_rebuild_ends_and_a_rerun_writes_nothing(moved, spark, tmp_path):
    """After the correction the incremental tables equal a rebuild from the same bronze
    (events: but for the attribution of other events, which a late row never redoes); a
    repeated run finds nothing new and writes nothing."""
    import shutil

    s, *_ = moved
    names = ["transactions", "events", "interactions", silver.DAILY]
    before = {n: lake.version(lake.table_path(s.lake, "silver", n)) for n in names}
    again = _silver(spark, s)
    assert all(again["changed_rows"][n] == 0 for n in ("transactions", "events", "interactions"))
    assert again["partitions_written"][silver.DAILY] == 0
    assert {n: lake.version(lake.table_path(s.lake, "silver", n)) for n in names} == before

    rebuilt = s.with_paths(landing=s.landing, lake=tmp_path / "rebuilt")
    shutil.copytree(lake.table_path(s.lake, "bronze", ""), lake.table_path(rebuilt.lake, "bronze", ""))
    _silver(spark, rebuilt)
    for name in [n for n in SOURCES if SOURCES[n].event_time and n != "customers"] + [silver.DAILY]:
        if not lake.exists(lake.table_path(rebuilt.lake, "silver", name)):
            continue
        a, b = _table(spark, s, name), _table(spark, rebuilt, name)
        drop = LINEAGE + (["customer_id", "attributed_by"] if name == "events" else [])
        cols = [c for c in b.columns if c not in drop]
        assert _same(a.select(*cols), b.select(*cols)), name


def test_a_summary_refresh_that_never_followed_the_move_is_redone(lakes, spark, tmp_path):
    """silver/transactions written with the moved row, then the run stopped before the day
    summary: the old day is noted as pending, and the next run summarises it again."""
    import shutil

    from c360 import ops
    from features.profile import transactions_daily

    daily, *_ = lakes
    s = daily.with_paths(landing=tmp_path / "landing", lake=tmp_path / "lake")
    shutil.copytree(daily.lake, s.lake)
    shutil.copytree(daily.landing, s.landing)
    row = _first(_table(spark, s, "transactions"), AS_OF - timedelta(days=1), "txn_id", "customer_id IS NOT NULL")
    _correct(spark, s, "transactions", row.txn_id, {"txn_ts": f"{AS_OF - timedelta(days=5)}T12:00:00"}, CORRECTED)
    ingest.run(spark, s, as_of=CORRECTED)
    n_old = _day_n(spark, s, row.customer_id, row.partition_date)
    silver._incremental(spark, s, SOURCES["transactions"], lake.table_path(s.lake, "bronze", "transactions"),
                        lake.table_path(s.lake, "silver", "transactions"))
    assert ops.pending_partitions(spark, s.lake, f"silver/{silver.DAILY}") == [str(row.partition_date)]
    assert _day_n(spark, s, row.customer_id, row.partition_date) == n_old  # not yet
    assert not silver.is_current(spark, s, silver.DAILY)  # so the profile reads transactions meanwhile
    result = _silver(spark, s)
    assert str(row.partition_date) in result["partitions"][silver.DAILY]
    assert _day_n(spark, s, row.customer_id, row.partition_date) == n_old - 1
    recomputed = transactions_daily(_table(spark, s, "transactions"), s.bank.timezone).drop("_ingested_at")
    assert _same(_daily(spark, s), recomputed)
    assert ops.pending_partitions(spark, s.lake, f"silver/{silver.DAILY}") == []


def test_upsert_marks_rows_of_known_keys(spark, tmp_path):
    """lake.upsert(mark=...): true on the rows merged onto a key the table held, false on the
    appended ones; rows written before the column existed keep null, untouched rows keep theirs."""
    from pyspark.sql import types as T

    schema = T.StructType([T.StructField("k", T.LongType()), T.StructField("v", T.StringType())])
    path = str(tmp_path / "t")
    lake.append(spark.createDataFrame([(1, "a"), (2, "b")], schema), path)
    src = spark.createDataFrame([(2, "B"), (3, "c")], schema)
    assert lake.upsert(spark, src, path, ["k"], mark="_known") == {"appended": 1, "merged": 1}
    got = {r.k: (r.v, r._known) for r in lake.read(spark, path).collect()}
    assert got == {1: ("a", None), 2: ("B", True), 3: ("c", False)}
    assert lake.upsert(spark, spark.createDataFrame([(4, "d")], schema), path, ["k"], mark="_known") == \
        {"appended": 1, "merged": 0}
    assert lake.upsert(spark, spark.createDataFrame([(3, "C")], schema), path, ["k"], mark="_known") == \
        {"appended": 0, "merged": 1}
    got = {r.k: (r.v, r._known) for r in lake.read(spark, path).collect()}
    assert got == {1: ("a", None), 2: ("B", True), 3: ("C", True), 4: ("d", False)}
    assert dict(lake.read(spark, path).dtypes)["_known"] == "boolean"
    # a column delivered later still reaches the table (a mark added non-nullable by schema
    # evolution made Sail drop every later new column)
    wider = T.StructType([*schema.fields, T.StructField("extra", T.StringType())])
    assert lake.upsert(spark, spark.createDataFrame([(5, "e", "x5")], wider), path, ["k"], mark="_known") == \
        {"appended": 1, "merged": 0}
    assert {r.k: r.extra for r in lake.read(spark, path).collect()} == {1: None, 2: None, 3: None, 4: None, 5: "x5"}

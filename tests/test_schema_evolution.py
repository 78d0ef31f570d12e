"""Schema evolution of deliveries: a new optional column flows through bronze and silver;
a removed required column stops only the files that lack it.

Decisions tested here (README, "Input: the landing zone"):

- a column a source adds beyond the contract is kept in bronze (MERGE with schema
  evolution) and reaches silver as a string under a sanitised name; rows delivered
  before it have null in it;
- customers is the source with PII: a new customers column reaches silver only when
  ``privacy.non_pii_extra_columns`` declares it non-PII, otherwise it stays in bronze;
- a file missing a required column is quarantined whole with a reason naming the column;
  the other sources load, and so does any other file of the same source that has the
  column (each file is judged on its own header; version ordering keeps that safe);
- a file with more new columns (neither in the contract nor yet in bronze) than
  ``ingest.max_new_columns_per_file`` is quarantined whole, naming them: bronze and silver
  never grow by thousands of columns, and nothing is half loaded.
"""

from __future__ import annotations

import warnings
from datetime import datetime

import pytest

from c360 import lake
from c360.contract import SOURCES
from helpers import write_landing
from jobs import ingest, silver

TXN_COLS = SOURCES["transactions"].column_names
TXN_HEADER = ",".join(TXN_COLS)
CUST_HEADER = ",".join(SOURCES["customers"].column_names)


def txn_line(txn_id, day="2026-06-01", channel="pos"):
    return f"{txn_id},A1,C1,{day}T10:00:00,10.00,debit,CNY,{channel},groceries,,"


def cust_line(cid, updated="2026-06-01T09:00:00"):
    return (f"{cid},王小明,110101199001011234,13800138000,xm@example.cn,1990-01-15,M,engineer,100.00,上海,B01,"
            f"2020-03-01,R3,verified,true,zh,{updated}")


def table(spark, s, layer, name):
    return lake.read(spark, lake.table_path(s.lake, layer, name))


def run_silver(spark, s):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the development PII key warns
        return silver.run(spark, s)


def deliver_two_days(s):
    write_landing(s.landing, "transactions", "2026-06-01", "t.csv",
                  "\n".join([TXN_HEADER, txn_line("T1"), txn_line("T2")]) + "\n")
    # day 2: a new optional column, delivered with a header spelling to be sanitised
    write_landing(s.landing, "transactions", "2026-06-02", "t.csv", "\n".join([
        TXN_HEADER + ",Channel Detail",
        txn_line("T3", "2026-06-02") + ",mobile-ios",
        txn_line("T4", "2026-06-02") + ","]) + "\n")


def assert_channel_detail(spark, s, layer):
    rows = {r.txn_id: r for r in table(spark, s, layer, "transactions").collect()}
    assert sorted(rows) == ["T1", "T2", "T3", "T4"]
    assert dict(table(spark, s, layer, "transactions").dtypes)["channel_detail"] == "string"
    assert {k: r.channel_detail for k, r in rows.items()} == {"T1": None, "T2": None, "T3": "mobile-ios", "T4": None}
    assert rows["T3"].channel == "pos" and rows["T3"].amount is not None  # contract columns unchanged


def test_new_optional_column_reaches_bronze_and_silver_with_nulls_for_older_rows(spark, lake_settings):
    s = lake_settings
    deliver_two_days(s)
    res = ingest.run(spark, s)["transactions"]
    assert (res.files_new, res.rows_loaded, res.rows_quarantined) == (2, 4, 0)
    run_silver(spark, s)
    assert_channel_detail(spark, s, "bronze")
    assert_channel_detail(spark, s, "silver")


def test_new_column_arriving_in_a_later_run_evolves_bronze_and_incremental_silver(spark, lake_settings):
    s = lake_settings
    deliver_two_days(s)
    ingest.run(spark, s, as_of=datetime(2026, 6, 1).date())
    run_silver(spark, s)
    assert "channel_detail" not in table(spark, s, "silver", "transactions").columns
    ingest.run(spark, s, as_of=datetime(2026, 6, 2).date())
    run_silver(spark, s)
    assert_channel_detail(spark, s, "bronze")
    assert_channel_detail(spark, s, "silver")


def test_a_new_customers_column_stays_in_bronze_unless_declared_non_pii(spark, lake_settings):
    s = lake_settings
    write_landing(s.landing, "customers", "2026-06-01", "c.csv", "\n".join([
        CUST_HEADER + ",loyalty_segment,spouse_phone",
        cust_line("C1") + ",gold,13912345678"]) + "\n")
    ingest.run(spark, s)
    bronze = table(spark, s, "bronze", "customers").first()
    assert (bronze.loyalty_segment, bronze.spouse_phone) == ("gold", "13912345678")

    run_silver(spark, s)  # nothing declared: neither new column reaches silver
    cols = table(spark, s, "silver", "customers").columns
    assert "loyalty_segment" not in cols and "spouse_phone" not in cols

    declared = s.model_copy(update={"privacy": s.privacy.model_copy(
        update={"non_pii_extra_columns": {"customers": ["Loyalty Segment"]}})})
    run_silver(spark, declared)
    row = table(spark, s, "silver", "customers").first()
    assert row.loyalty_segment == "gold"
    assert "spouse_phone" not in row.asDict()  # undeclared: may be PII, stays in bronze
    assert "13912345678" not in {str(v) for v in row.asDict().values()}


@pytest.mark.unit
def test_non_pii_declaration_names_only_known_sources(settings):
    with pytest.raises(ValueError, match="unknown source"):
        settings.privacy.model_validate({"non_pii_extra_columns": {"custmers": ["x"]}})


def test_a_file_missing_a_required_column_is_quarantined_and_the_rest_loads(spark, lake_settings):
    s = lake_settings
    no_channel = [c for c in TXN_COLS if c != "channel"]
    write_landing(s.landing, "transactions", "2026-06-01", "t.csv",
                  "\n".join([TXN_HEADER, txn_line("T1")]) + "\n")
    # day 2: the bank's export lost the required column "channel"
    write_landing(s.landing, "transactions", "2026-06-02", "t.csv", "\n".join([
        ",".join(no_channel), "T2,A1,C1,2026-06-02T10:00:00,10.00,debit,CNY,groceries,,"]) + "\n")
    # day 3: fixed again; judged on its own header, it loads
    write_landing(s.landing, "transactions", "2026-06-03", "t.csv",
                  "\n".join([TXN_HEADER, txn_line("T3", "2026-06-03")]) + "\n")
    write_landing(s.landing, "customers", "2026-06-02", "c.csv", "\n".join([CUST_HEADER, cust_line("C1")]) + "\n")
    res = ingest.run(spark, s)

    txn = res["transactions"]
    assert (txn.files_new + txn.files_quarantined, txn.files_quarantined) == (3, 1)
    assert txn.rows_loaded == 2
    assert txn.reasons == {"missing required column(s): channel": 1}  # what the run summary shows
    assert res["customers"].rows_loaded == 1 and res["customers"].files_quarantined == 0

    (q,) = table(spark, s, "quarantine", "transactions").collect()
    assert q.reason == "missing required column(s): channel" and q.line == 0
    assert q.source_file.endswith("/transactions/2026-06-02/t.csv")
    assert sorted(r.txn_id for r in table(spark, s, "bronze", "transactions").collect()) == ["T1", "T3"]
    files = {r.file_path.split("/transactions/")[-1]: (r.status, r.reason)
             for r in table(spark, s, "ops", "ingested_files").where("source = 'transactions'").collect()}
    assert files == {"2026-06-01/t.csv": ("loaded", None),
                     "2026-06-02/t.csv": ("quarantined", "missing required column(s): channel"),
                     "2026-06-03/t.csv": ("loaded", None)}
    # the bank re-delivers day 2 with the column: new content, so it is ingested
    write_landing(s.landing, "transactions", "2026-06-02", "t-fixed.csv",
                  "\n".join([TXN_HEADER, txn_line("T2", "2026-06-02")]) + "\n")
    assert ingest.run(spark, s)["transactions"].rows_loaded == 1
    assert table(spark, s, "bronze", "transactions").count() == 3


def _cap(s, n):
    return s.model_copy(update={"ingest": s.ingest.model_copy(update={"max_new_columns_per_file": n})})


def test_a_file_with_more_new_columns_than_the_cap_is_quarantined_whole(spark, lake_settings):
    """``ingest.max_new_columns_per_file`` (default 20): a file bringing more columns that
    neither the contract nor bronze has is quarantined whole with the count, the cap and
    the first names, and bronze gains none of them; a file with a few new columns loads.
    Columns bronze already has are not new: with a higher cap the wide file loads, and
    after that another file with the same columns passes the default cap."""
    s = lake_settings
    wide = [f"Extra {i}" for i in range(25)]
    write_landing(s.landing, "transactions", "2026-06-01", "wide.csv", "\n".join([
        TXN_HEADER + "," + ",".join(wide), txn_line("W1") + "," + ",".join(["x"] * 25)]) + "\n")
    write_landing(s.landing, "transactions", "2026-06-01", "t.csv", "\n".join([
        TXN_HEADER + ",Channel Detail,Promo", txn_line("T1") + ",ios,p1"]) + "\n")
    res = ingest.run(spark, s)["transactions"]
    assert (res.files_new, res.files_quarantined, res.rows_loaded) == (1, 1, 1)
    reason = ("25 new columns, more than ingest.max_new_columns_per_file (20): "
              "extra_0, extra_1, extra_2, extra_3, extra_4, ...")
    assert res.reasons[reason] == 1
    (q,) = table(spark, s, "quarantine", "transactions").collect()
    assert q.reason == reason and q.source_file.endswith("/wide.csv") and q.line == 0
    cols = table(spark, s, "bronze", "transactions").columns
    assert "channel_detail" in cols and "promo" in cols and not any(c.startswith("extra") for c in cols)

    # the columns, once in bronze, are no longer new
    write_landing(s.landing, "transactions", "2026-06-02", "wide2.csv", "\n".join([
        TXN_HEADER + "," + ",".join(wide), txn_line("W2", "2026-06-02") + "," + ",".join(["y"] * 25)]) + "\n")
    assert ingest.run(spark, _cap(s, 30))["transactions"].files_quarantined == 0
    write_landing(s.landing, "transactions", "2026-06-03", "wide3.csv", "\n".join([
        TXN_HEADER + "," + ",".join(wide), txn_line("W3", "2026-06-03") + "," + ",".join(["z"] * 25)]) + "\n")
    res = ingest.run(spark, s)["transactions"]
    assert (res.files_quarantined, res.rows_loaded) == (0, 1)
    assert {r.txn_id: r.extra_24 for r in table(spark, s, "bronze", "transactions").collect()} == \
        {"T1": None, "W2": "y", "W3": "z"}


@pytest.mark.unit
@pytest.mark.parametrize("value", ["-1", "10001", "many"])
def test_the_new_column_cap_is_validated_at_start_up(tmp_path, value):
    from c360.settings import ConfigError, load_settings

    assert load_settings(environ={}).ingest.max_new_columns_per_file == 20
    (tmp_path / "base.yaml").write_text(f"ingest:\n  max_new_columns_per_file: {value}\n")
    with pytest.raises(ConfigError, match="ingest.max_new_columns_per_file"):
        load_settings(tmp_path, environ={})

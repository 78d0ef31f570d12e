"""features.bronze: typing, validation reasons and version ordering on small DataFrames."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import pytest
from pyspark.sql import functions as F

from c360.contract import SOURCES
from features.bronze import ValidationRules, latest_per_key, repeated_keys, validate, with_version
from helpers import customer, text_rows, txn

RULES = ValidationRules(bank_timezone="Asia/Shanghai", max_future_days=1, min_date=date(1900, 1, 1))


def _validate(spark, source, rows, **kw):
    df = validate(text_rows(spark, source, rows, **kw), SOURCES[source], RULES)
    return {r["_line"]: r for r in df.collect()}


def test_good_transaction_is_typed_and_has_no_reason(spark):
    r = _validate(spark, "transactions", [txn()])[2]
    assert r["_reason"] is None and r["_raw"] is None
    assert r["amount"] == Decimal("12.50")
    assert r["direction"] == "debit"
    # 10:00 in Shanghai (no offset given) is 02:00 UTC
    assert r["txn_ts"] == datetime(2026, 6, 1, 2, 0)


@pytest.mark.parametrize("ts, utc", [
    ("2026-06-01T10:00:00+08:00", datetime(2026, 6, 1, 2, 0)),
    ("2026-06-01T10:00:00Z", datetime(2026, 6, 1, 10, 0)),
    ("2026-06-01 10:00:00", datetime(2026, 6, 1, 2, 0)),
    ("2026-06-01T10:00:00-05:00", datetime(2026, 6, 1, 15, 0)),
    ("2026-06-01", datetime(2026, 5, 31, 16, 0)),  # a date alone is midnight in the bank's zone
    ("2026-06-01T10:00", datetime(2026, 6, 1, 2, 0)),
])
def test_timestamps_become_utc_with_or_without_offset(spark, ts, utc):
    assert _validate(spark, "transactions", [txn(txn_ts=ts)])[2]["txn_ts"] == utc


@pytest.mark.parametrize("over, reason", [
    (dict(txn_id=None), "missing required field txn_id"),
    (dict(txn_id="  "), "missing required field txn_id"),
    (dict(amount="12,3a"), "amount is not a decimal: '12,3a'"),
    (dict(amount="-3"), "negative or zero amount: -3.00"),
    (dict(amount="0"), "negative or zero amount: 0.00"),
    (dict(direction="debitt"), "unknown value for direction: 'debitt'"),
    (dict(channel="fax"), "unknown value for channel: 'fax'"),
    (dict(txn_ts="2026-02-30T12:00:00"), "impossible timestamp in txn_ts: '2026-02-30T12:00:00'"),
    (dict(txn_ts="yesterday"), "malformed timestamp in txn_ts: 'yesterday'"),
    (dict(txn_ts="2026-06-05T12:00:00"), "txn_ts in the future (after the delivery date)"),
])
def test_each_bad_value_gets_its_reason(spark, over, reason):
    r = _validate(spark, "transactions", [txn(**over)])[2]
    assert r["_reason"] == reason
    assert r["_raw"].startswith(over.get("txn_id") or "")  # the record as delivered, as CSV


def test_several_problems_are_all_reported(spark):
    r = _validate(spark, "transactions", [txn(amount="-1", channel="fax")])[2]
    assert r["_reason"] == "negative or zero amount: -1.00; unknown value for channel: 'fax'"


def test_enum_case_is_canonicalised_not_rejected(spark):
    r = _validate(spark, "transactions", [txn(direction=" DEBIT ", channel="WeChat")])[2]
    assert r["_reason"] is None
    assert (r["direction"], r["channel"]) == ("debit", "wechat")


def test_reader_error_is_the_only_reason(spark):
    r = _validate(spark, "transactions", [dict(_row_error="wrong column count: expected 11, got 8")])[2]
    assert r["_reason"] == "wrong column count: expected 11, got 8"


def test_raw_text_is_quoted_csv(spark):
    r = _validate(spark, "transactions", [txn(amount="x", description='coffee, "large"')])[2]
    assert r["_raw"] == 'T1,A1,C1,2026-06-01T10:00:00,x,debit,CNY,pos,groceries,,"coffee, ""large"""'


@pytest.mark.parametrize("text, value", [("Y", True), ("yes", True), ("TRUE", True), ("1", True),
                                         ("n", False), ("No", False), ("false", False), ("0", False)])
def test_booleans_in_every_spelling(spark, text, value):
    r = _validate(spark, "customers", [customer(marketing_consent=text)])[2]
    assert r["_reason"] is None and r["marketing_consent"] is value


def test_customer_dates(spark):
    rows = _validate(spark, "customers", [
        customer(birth_date="1990-02-30"),
        customer(birth_date="15/01/1990", _line=3),
        customer(birth_date="1850-01-01", _line=4),
        customer(marketing_consent="maybe", _line=5),
    ])
    assert rows[2]["_reason"] == "impossible date in birth_date: '1990-02-30'"
    assert rows[3]["_reason"] == "malformed date in birth_date: '15/01/1990'"
    assert rows[4]["_reason"] == "impossible date in birth_date: '1850-01-01'"
    assert rows[5]["_reason"] == "marketing_consent is not a boolean: 'maybe'"


def test_survey_score_range_depends_on_type(spark):
    base = dict(response_id="R1", customer_id="C1", responded_at="2026-06-01T10:00:00")
    rows = _validate(spark, "feedback", [
        base | dict(survey_type="nps", score="9"),
        base | dict(survey_type="csat", score="9", _line=3),
        base | dict(survey_type="ces", score="0", _line=4),
    ])
    assert rows[2]["_reason"] is None and rows[2]["score"] == 9
    assert rows[3]["_reason"] == "score out of range for csat: 9"
    assert rows[4]["_reason"] == "score out of range for ces: 0"


def test_ordered_columns(spark):
    r = _validate(spark, "interactions", [dict(interaction_id="I1", customer_id="C1", channel="branch",
                                               started_at="2026-06-01T10:00:00", ended_at="2026-06-01T09:00:00")])[2]
    assert r["_reason"] == "ended_at before started_at"


def test_extra_columns_are_kept(spark):
    df = validate(text_rows(spark, "transactions", [txn() | {"loyalty_tier": "gold"}], extras=("loyalty_tier",)),
                  SOURCES["transactions"], RULES)
    assert "loyalty_tier" in df.columns and df.first()["loyalty_tier"] == "gold"


def test_latest_per_key_prefers_version_then_delivery_then_line(spark):
    src = SOURCES["customers"]
    rows = text_rows(spark, "customers", [
        customer(annual_income="1", updated_at="2026-06-01T09:00:00", _line=2),
        customer(annual_income="2", updated_at="2026-06-01T11:00:00", _line=3),
        # re-sent later, but an older version: must not win
        customer(annual_income="3", updated_at="2026-06-01T08:00:00", _line=2, _delivery_date=date(2026, 6, 2)),
        customer(customer_id="C2", annual_income="4", _line=4),
        customer(customer_id="C2", annual_income="5", _line=5),  # same version, later line wins
    ])
    latest = {r["customer_id"]: r for r in latest_per_key(validate(rows, src, RULES), src).collect()}
    assert latest["C1"]["annual_income"] == Decimal("2.00")
    assert latest["C2"]["annual_income"] == Decimal("5.00")


def test_complaints_latest_delivery_wins(spark):
    src = SOURCES["complaints"]
    base = dict(complaint_id="K1", customer_id="C1", opened_at="2026-05-20T10:00:00", category="fees")
    rows = text_rows(spark, "complaints", [
        base | dict(status="open", _delivery_date=date(2026, 5, 20)),
        base | dict(status="resolved", closed_at="2026-05-25T10:00:00", _delivery_date=date(2026, 5, 25)),
        base | dict(status="in_progress", _delivery_date=date(2026, 5, 22)),
    ])
    (r,) = latest_per_key(validate(rows, src, RULES), src).collect()
    assert r["status"] == "resolved"


def test_a_missing_version_value_never_wins(spark):
    src = SOURCES["complaints"]
    base = dict(complaint_id="K1", customer_id="C1", opened_at="2026-05-20T10:00:00", category="fees",
                status="resolved")
    rows = text_rows(spark, "complaints", [
        base | dict(closed_at="2026-05-25T10:00:00", _line=2),
        base | dict(closed_at=None, _line=3),  # same delivery and status, later line, but no closing time
    ])
    (r,) = latest_per_key(validate(rows, src, RULES), src).collect()
    assert r["closed_at"] is not None


def _customer_versions(spark):
    """Customer rows: C1 once, C2 in two versions (the later one "new"), the null key twice."""
    schema = "customer_id string, updated_at string, _delivery_date date, _line long, tag string"
    return spark.createDataFrame([
        ("C1", "2026-06-01 09:00:00", date(2026, 6, 1), 1, "only"),
        ("C2", "2026-06-01 09:00:00", date(2026, 6, 1), 2, "old"),
        ("C2", "2026-06-02 09:00:00", date(2026, 6, 1), 3, "new"),
        (None, None, date(2026, 6, 1), 4, "null-first"),
        (None, None, date(2026, 6, 2), 5, "null-later"),
    ], schema).withColumn("updated_at", F.col("updated_at").cast("timestamp"))


def test_latest_per_key_keeps_single_keys_and_one_row_per_repeated_key_null_included(spark):
    """Rows of keys that come once pass as they are; a repeated key (a null key too) keeps
    its latest version only."""
    src = SOURCES["customers"]
    df = _customer_versions(spark)
    got = {(r.customer_id, r.tag) for r in latest_per_key(df, src).collect()}
    assert got == {("C1", "only"), ("C2", "new"), (None, "null-later")}
    versions = latest_per_key(df, src, ["customer_id", "updated_at"]).collect()
    assert sorted(r.tag for r in versions) == ["new", "null-later", "old", "only"]


def test_repeated_keys_given_beforehand_give_the_same_latest_rows(spark):
    """What ingest does: the repeated keys are found first (null key included), and
    latest_per_key given them keeps the same rows as when it finds them itself; with_version
    (no repeated key) only adds the version."""
    src = SOURCES["customers"]
    df = _customer_versions(spark)
    repeated = repeated_keys(df, ["customer_id"])
    assert sorted((r.customer_id or "") for r in repeated.collect()) == ["", "C2"]
    given = {(r.customer_id, r.tag, r._version) for r in latest_per_key(df, src, repeated=repeated).collect()}
    assert given == {(r.customer_id, r.tag, r._version) for r in latest_per_key(df, src).collect()}
    assert {(c, t) for c, t, _ in given} == {("C1", "only"), ("C2", "new"), (None, "null-later")}
    once = df.where("_line = 1")
    assert repeated_keys(once, ["customer_id"]).count() == 0
    (r,) = with_version(once, src).collect()
    assert r.tag == "only" and r._version == latest_per_key(once, src).first()._version


@pytest.mark.parametrize("text, value, reason", [
    ("1990-01-15 00:00:00", date(1990, 1, 15), None),  # a spreadsheet's date
    ("1990-01-15T00:00:00.000000000", date(1990, 1, 15), None),  # a pandas date in Parquet
    ("1990-01-15T00:00Z", date(1990, 1, 15), None),
    ("1990-01-15T10:00", None, "time of day in date birth_date: '1990-01-15T10:00'"),
    ("1990-02-30T00:00:00", None, "impossible date in birth_date: '1990-02-30T00:00:00'"),
    ("1990-01-15T00:00:00+08:00", None, "malformed date in birth_date: '1990-01-15T00:00:00+08:00'"),
])
def test_a_date_with_a_time_is_the_date_at_midnight_and_rejected_otherwise(spark, text, value, reason):
    r = _validate(spark, "customers", [customer(birth_date=text)])[2]
    assert (r["birth_date"] if r["_reason"] is None else None, r["_reason"]) == (value, reason)


def test_repeated_in_file_compares_key_and_version(spark):
    """Two versions of a customer in one file are history; one version twice with other
    values is a conflict (the last line is kept); an identical copy is not."""
    from features.bronze import repeated_in_file

    rows = [customer(updated_at="2026-06-01T09:00:00"), customer(updated_at="2026-06-01T10:00:00"),
            customer(updated_at="2026-06-01T10:00:00", city="北京"), customer(updated_at="2026-06-01T10:00:00", city="北京"),
            customer(customer_id="C2")]
    df = validate(text_rows(spark, "customers", rows), SOURCES["customers"], RULES).drop("_reason", "_raw") \
        .withColumn("_file_sha256", F.lit("s"))
    out = repeated_in_file(df, SOURCES["customers"], repeated_keys(df, ["customer_id"]))
    got = {r["_line"]: (r["_kept_line"], r["_conflict"]) for r in out.collect()}
    assert got == {3: (5, True), 4: (5, False)}
    assert out.where("_line = 3").first()["_raw"].startswith("C1,王小明,")

"""Cases for the engine parity test (``tests/test_parity.py``), defined once for both engines.

Every case is a function ``case(spark) -> DataFrame``: it builds a small input with
``spark.createDataFrame`` (explicit schema, so both engines see the same types) and applies
one pure transform from ``features.bronze``, ``features.silver`` or ``features.profile``. :func:`render` turns a
result into engine-neutral JSON: timestamps are taken out of the engine as microseconds
since the epoch (no Python time-zone conversion on collect) and rendered in UTC, decimals
and dates as strings, rows sorted.

This module is imported by the Sail side (pytest, Spark Connect) and by
``tests/parity_jvm.py`` (classic local JVM Spark, in its own process); it must not import
anything that picks one of the two PySpark modes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from c360.contract import SOURCES
from c360.privacy import KeyRef
from features import bronze, silver

DELIVERY = date(2026, 6, 1)
RULES = bronze.ValidationRules(bank_timezone="Asia/Shanghai", max_future_days=1, min_date=date(1900, 1, 1))
# 45 bytes (the development key: padded to the 64-byte block) and 80 bytes (hashed first).
PII_KEY = b"c360-development-key-do-not-use-in-production"
LONG_PII_KEY = bytes(range(32, 112))
# Tokens are computed by Python workers that read the key by name (c360.privacy.KeyRef): the
# keys are put in this process's environment on import, before either engine starts its
# workers (the JVM's inherit it).
PII_KEY_ENV, LONG_PII_KEY_ENV = "C360_PARITY_PII_KEY", "C360_PARITY_LONG_PII_KEY"
os.environ[PII_KEY_ENV], os.environ[LONG_PII_KEY_ENV] = PII_KEY.decode(), LONG_PII_KEY.decode()


def _key(var: str) -> KeyRef:
    return KeyRef.from_env(var)

CASES: dict[str, Callable[[SparkSession], DataFrame]] = {}


def case(fn: Callable[[SparkSession], DataFrame]) -> Callable[[SparkSession], DataFrame]:
    CASES[fn.__name__.removeprefix("case_")] = fn
    return fn


def ts(text: str) -> datetime:
    """An aware UTC datetime (never naive: naive values would go through the local zone)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


# --------------------------------------------------------------------------- rendering

def _plain(v):
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, datetime):  # only reached for types we did not convert in the engine
        return "datetime:" + v.isoformat()
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, (bytes, bytearray)):
        return "hex:" + bytes(v).hex()
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if hasattr(v, "asDict"):
        return _plain(v.asDict())
    return repr(v)


def micros_to_text(v: int | None) -> str | None:
    if v is None:
        return None
    t = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=v)
    return t.isoformat().replace("+00:00", "Z")


def render(df: DataFrame) -> dict:
    """``{"schema": [[name, type], ...], "rows": [json line, ...]}`` with rows sorted."""
    schema = [[f.name, f.dataType.simpleString()] for f in df.schema.fields]
    micros = set()
    cols = []
    for f in df.schema.fields:
        c = F.col(f"`{f.name}`")
        if isinstance(f.dataType, T.TimestampType):
            cols.append(F.unix_micros(c).alias(f.name))
            micros.add(f.name)
        elif isinstance(f.dataType, T.TimestampNTZType):
            cols.append(F.unix_micros(c.cast("timestamp")).alias(f.name))
            micros.add(f.name)
        else:
            cols.append(c)
    rows = []
    for row in df.select(*cols).collect():
        values = {}
        for (name, _), v in zip(schema, row):
            values[name] = micros_to_text(v) if name in micros else _plain(v)
        rows.append(json.dumps(values, ensure_ascii=False))
    return {"schema": schema, "rows": sorted(rows)}


# --------------------------------------------------------------------------- inputs

def text_input(spark: SparkSession, source: str, rows: list[dict], extras: tuple[str, ...] = ()) -> DataFrame:
    """All-string input as the landing reader gives it: contract columns, extras, reader columns."""
    names = SOURCES[source].column_names + list(extras)
    schema = ", ".join(f"`{n}` string" for n in names)
    schema += ", _source_file string, _delivery_date date, _line bigint, _raw string, _row_error string"
    data = []
    for i, r in enumerate(rows):
        data.append(tuple(r.get(n) for n in names) + (
            r.get("_source_file", f"landing/{source}/{DELIVERY}/{source}.csv"),
            r.get("_delivery_date", DELIVERY),
            r.get("_line", i + 2),
            r.get("_raw"),
            r.get("_row_error"),
        ))
    return spark.createDataFrame(data, schema)


def typed_input(spark: SparkSession, schema: str, rows: list[tuple]) -> DataFrame:
    return spark.createDataFrame(rows, schema)


# --------------------------------------------------------------------------- bronze.validate

TXN = dict(account_id="A1", customer_id="C1", txn_ts="2026-06-01T10:00:00", amount="100.00",
           direction="debit", currency="CNY", channel="mobile", merchant_category="grocery",
           counterparty="Shop", description="lunch")


def _txn(txn_id: str, **kw) -> dict:
    return {**TXN, "txn_id": txn_id, **kw}


TRANSACTION_ROWS = [
    _txn("T01"),                                                     # good, no offset: bank time
    _txn("T02", txn_ts="2026-06-01T10:00:00+08:00", direction="DEBIT", channel=" ATM "),
    _txn("T03", txn_ts="2026-06-01T10:00:00Z", amount=" 12.345 "),  # rounds to scale 2
    _txn("T04", txn_ts="2026-06-01 10:00:00.123456"),
    _txn("T05", customer_id=""),                                     # missing required (empty)
    _txn("T06", direction=None),                                     # missing required (null)
    _txn("T07", amount="12,50"),                                     # malformed decimal
    _txn("T08", amount="-5"),                                        # negative amount
    _txn("T09", amount="0"),                                         # zero amount
    _txn("T10", channel="fax"),                                      # unknown enum
    _txn("T11", txn_ts="2026-02-30T10:00:00"),                       # impossible date
    _txn("T12", txn_ts="yesterday"),                                 # malformed timestamp
    _txn("T13", txn_ts="2026-06-05T00:00:00Z"),                      # future
    _txn("T14", txn_ts="2026-06-03T07:59:59"),                       # last second allowed (UTC 06-02 23:59:59)
    {"txn_id": None, "_raw": "T15,A1,oops", "_row_error": "expected 11 fields, got 3"},
    _txn("T16", amount="abc", description='said "hi", twice'),      # CSV quoting of _raw
    _txn("T17", amount="-1", direction="sideways", channel="Fax"),  # several problems
    _txn("T18", amount="1e3"),
    # Date only. NB: _OFFSET_RE takes the day "-01" for a UTC offset, so both engines read this
    # as UTC midnight, not bank midnight; compared across engines, its value not asserted.
    _txn("T19", txn_ts="2026-06-01"),
    _txn("T20", txn_ts="2026-06-01T10:00"),                          # no seconds
    _txn("T21", txn_ts="2026-06-01T10:00:00-05:00"),
    _txn("T22", amount="+7.5"),
]


@case
def case_validate_transactions(spark):
    return bronze.validate(text_input(spark, "transactions", TRANSACTION_ROWS), SOURCES["transactions"], RULES)


CUST = dict(full_name="张三", national_id="110101199003077777", phone="13812345678", email="zhang.san@example.cn",
            birth_date="1990-03-07", gender="m", occupation="Engineer", annual_income="250000.5",
            city="Shanghai", home_branch_id="B01", onboarding_date="2015-05-01", risk_tolerance="r3",
            kyc_status="Verified", marketing_consent="Y", preferred_language="ZH",
            updated_at="2026-05-31T09:00:00+08:00", segment_hint="gold")


def _cust(customer_id: str, **kw) -> dict:
    return {**CUST, "customer_id": customer_id, **kw}


CUSTOMER_ROWS = [
    _cust("C01"),                                                    # good; enums in odd case, Y
    _cust("C02", marketing_consent="n", preferred_language="En", gender="F"),
    _cust("C03", marketing_consent="yes", updated_at="2026-06-01T10:00:00"),
    _cust("C04", marketing_consent="0", updated_at="2026-06-01T10:00:00Z"),
    _cust("C05", marketing_consent="maybe"),
    _cust("C06", birth_date="2026-02-30"),                           # impossible date
    _cust("C07", birth_date="1990/03/07"),                           # malformed date
    _cust("C08", birth_date="1850-01-01"),                           # before min_date
    _cust("C09", birth_date="2016-01-01"),                           # after onboarding
    _cust("C10", marketing_consent=""),                              # missing required
    _cust("C11", gender="X", risk_tolerance="R6"),
    _cust("C12", annual_income="-1"),
    _cust("C13", onboarding_date=None, birth_date="2026-06-02"),    # missing; birth after delivery
    _cust("C14", updated_at="2026-13-01T00:00:00"),
    _cust("  C15  ", full_name="   ", city=" Beijing "),  # trimmed; blank -> null
]


@case
def case_validate_customers(spark):
    df = text_input(spark, "customers", CUSTOMER_ROWS, extras=("segment_hint",))
    return bronze.validate(df, SOURCES["customers"], RULES)


FB = dict(customer_id="C1", survey_type="nps", score="9", comment="服务很好", touchpoint="app",
          channel="app", responded_at="2026-06-01T10:00:00Z", interaction_id="I1")


def _fb(response_id: str, **kw) -> dict:
    return {**FB, "response_id": response_id, **kw}


FEEDBACK_ROWS = [
    _fb("F01", touchpoint="APP"),
    _fb("F02", survey_type="csat", score="6"),
    _fb("F03", survey_type="ces", score="0"),
    _fb("F04", survey_type="NPS", score="11"),
    _fb("F05", score="-1"),
    _fb("F06", score="7.5"),
    _fb("F07", survey_type="Email", score="3"),
    _fb("F08", touchpoint="fax"),
    _fb("F09", responded_at="2026-06-10T00:00:00+08:00"),
    _fb("F10", score=""),
    _fb("F11", survey_type="csat", score="5", responded_at="2026-06-01T10:00:00"),
    _fb("F12", survey_type="CES", score=" 7 "),
    _fb("F13", survey_type="csat", score="0"),
]


@case
def case_validate_feedback(spark):
    return bronze.validate(text_input(spark, "feedback", FEEDBACK_ROWS), SOURCES["feedback"], RULES)


PRODUCT_ROWS = [
    dict(product_code="P1", product_name="Deposit", family="Deposits", risk_level="r1", min_age="18",
         max_age="65", active="TRUE"),
    dict(product_code="P2", product_name="Fund", family="Funds", risk_level="R4", min_age="70",
         max_age="18", active="false"),
    dict(product_code="P3", product_name="Card", family="Cards", min_age="0", max_age="131", active="1"),
    dict(product_code="P4", product_name="Loan", family="Loans", min_age="-1", active="no"),
    dict(product_code="P5", product_name="Gold", family="Metals", active="2"),
    dict(product_code="P6", product_name="Bond", family="Bonds", min_age="12345678901234567890", active="y"),
    dict(product_code="P7", product_name=None, family="Bonds", active=None),
]


@case
def case_validate_product_catalog(spark):
    return bronze.validate(text_input(spark, "product_catalog", PRODUCT_ROWS), SOURCES["product_catalog"], RULES)


# --------------------------------------------------------------------------- bronze.latest_per_key

@case
def case_latest_customers(spark):
    d1, d2 = date(2026, 6, 1), date(2026, 6, 2)
    rows = [
        ("C1", "Shanghai", ts("2026-05-01T00:00:00Z"), d1, 2),
        ("C1", "Beijing", ts("2026-05-02T00:00:00Z"), d1, 3),
        ("C1", "Shenzhen", ts("2026-04-30T00:00:00Z"), d2, 2),   # re-sent older version, later delivery
        ("C2", "Hangzhou", ts("2026-05-01T00:00:00Z"), d1, 5),
        ("C2", "Suzhou", ts("2026-05-01T00:00:00Z"), d2, 4),     # same updated_at: later delivery wins
        ("C3", "Nanjing", ts("2026-05-01T00:00:00Z"), d1, 10),
        ("C3", "Wuxi", ts("2026-05-01T00:00:00Z"), d1, 9),       # same delivery: later line wins
        # a null version part sorts before any value: the dated row wins
        ("C4", "Xian", None, d2, 2),
        ("C4", "Chengdu", ts("2026-05-01T00:00:00.000001Z"), d1, 2),
        ("C5", "Tianjin", ts("2026-05-01T00:00:00Z"), d1, 7),
        ("C5", "Tianjin", ts("2026-05-01T00:00:00Z"), d1, 7),    # exact duplicate
    ]
    df = typed_input(spark, "customer_id string, city string, updated_at timestamp, "
                            "_delivery_date date, _line bigint", rows)
    return bronze.latest_per_key(df, SOURCES["customers"])


@case
def case_latest_complaints(spark):
    d1, d2 = date(2026, 6, 1), date(2026, 6, 2)
    rows = [
        ("K1", "open", None, d1, 2),
        ("K1", "resolved", ts("2026-06-01T05:00:00Z"), d1, 3),
        ("K1", "in_progress", None, d1, 4),                      # later line, lower status
        ("K2", "in_progress", None, d2, 2),
        ("K2", "resolved", ts("2026-06-01T05:00:00Z"), d1, 9),   # earlier delivery loses
        ("K3", "resolved", ts("2026-06-01T05:00:00Z"), d1, 3),
        ("K3", "rejected", ts("2026-06-02T05:00:00Z"), d1, 2),   # same rank: later closed_at wins
        ("K4", None, None, d1, 8),                               # null status rank loses to "open"
        ("K4", "open", None, d1, 2),
    ]
    df = typed_input(spark, "complaint_id string, status string, closed_at timestamp, "
                            "_delivery_date date, _line bigint", rows)
    return bronze.latest_per_key(df, SOURCES["complaints"])


# --------------------------------------------------------------------------- silver

FREE_TEXTS = [
    ("M01", "请联系13812345678谢谢"),
    ("M02", "call +86 13912345678 or +86-13712345678 today"),
    ("M03", "mail me at zhang.san@example.com."),
    ("M04", "身份证号110101199003077777，请核实"),
    ("M05", "ID 11010119900307777X and 11010119900307777x"),
    ("M06", "account 6222021234567890123 stays"),             # 19 digits: not an id, not a phone
    ("M07", "card 6222 0212 3456 7890, amount 12345678901"),  # 11 digits not starting 1[3-9]
    ("M08", "13812345678"),
    ("M09", "电话:13812345678,邮箱li.si@bank.com.cn,身份证110101199003077777"),
    ("M10", "no contact details here"),
    ("M11", None),
    ("M12", "2381234567890"),                                 # phone digits inside a longer number
    ("M13", "Tel 8613812345678。"),
    # two numbers one separator apart: both masked (the mask runs twice)
    ("M14", "13812345678,13912345678"),
    ("M15", "a@b.co,c@d.org 110101199003077777 110101199003077778"),
    # other spellings: separators between the digits, full-width digits and signs
    ("M16", "请回电138.0013.8000或(138) 0013 8000"),
    ("M17", "+86 (138) 0013-8000，0086 138 0013 8000"),
    ("M18", "电话１３８００１３８０００，＋８６　１３８－００１３－８０００"),
    ("M19", "id 1101 0119 9001 0112 3X, 110101.19900101.123ｘ"),
    ("M20", "身份证１１０１０１１９９００１０１１２３Ｘ mail li.lei＠bank.cn"),
    ("M21", "paid 2026-06-30 12:00, order 12345, card 6222 0212 3456 7890, 全角１２３４５"),
]


@case
def case_mask_free_text(spark):
    df = spark.createDataFrame(FREE_TEXTS, "id string, text string")
    return df.select("id", "text", silver.mask_free_text(F.col("text")).alias("masked"))


TOKEN_ROWS = [
    ("R1", "张三", "13812345678", "110101199003077777", date(1990, 3, 7)),
    ("R2", "Zoë O'Brien", "+86 139 1234 5678", "11010119900307777X", date(2000, 2, 29)),
    ("R3", "", "", "", None),
    ("R4", None, None, None, None),
    ("R5", "李四" * 40, "a" * 200, "x", date(1900, 1, 1)),      # longer than one SHA-256 block
]


@case
def case_tokenise(spark):
    df = spark.createDataFrame(TOKEN_ROWS, "id string, full_name string, phone string, "
                                           "national_id string, birth_date date")
    return silver.tokenise(df, ["full_name", "phone", "national_id", "birth_date", "not_a_column"], _key(PII_KEY_ENV))


@case
def case_hmac_long_key(spark):
    df = spark.createDataFrame(TOKEN_ROWS, "id string, full_name string, phone string, "
                                           "national_id string, birth_date date")
    return df.select("id", "full_name", silver.hmac_token(F.col("full_name"), _key(LONG_PII_KEY_ENV)).alias("token"))


BRONZE_TXN_SCHEMA = (
    "txn_id string, account_id string, customer_id string, txn_ts timestamp, amount decimal(18,2), "
    "direction string, currency string, channel string, merchant_category string, counterparty string, "
    "description string, _source_file string, _delivery_date date, _line bigint, _file_sha256 string, "
    "_batch_id string, _ingested_at timestamp, _version string"
)


@case
def case_conform_transactions(spark):
    t = ts("2026-06-01T02:00:00Z")
    ing = ts("2026-06-02T01:02:03.456789Z")
    d = date(2026, 6, 1)

    def row(txn_id, version, merchant, currency, description, amount="10.00"):
        return (txn_id, "A1", "C1", t, Decimal(amount), "debit", currency, "mobile", merchant, "Shop",
                description, "landing/transactions/2026-06-01/t.csv", d, 2, "ab" * 32, "B1", ing, version)

    rows = [
        row("T1", "00000000000000000001|20260601|000000000002", "grocery", "cny", "old version"),
        row("T1", "00000000000000000002|20260601|000000000003", " Grocery  Stores-Online ", " cny ",
            "转账给13812345678 / mail li.si@bank.com.cn 身份证 11010119900307777X", "12.35"),
        row("T2", "x", "Fuel\tStation", "usd", None),
        row("T3", "x", None, None, "refund to +86 139-1234-5678? no: 139 1234 5678"),  # NB: not masked
    ]
    return silver.conform(typed_input(spark, BRONZE_TXN_SCHEMA, rows), SOURCES["transactions"])


@case
def case_conform_customers(spark):
    rows = [
        ("C1", "Verified Plus", "Software-Engineer", " cny ", "src.csv", date(2026, 6, 1), 2),
        ("C2", " PENDING ", None, None, "src.csv", date(2026, 6, 1), 3),
    ]
    df = typed_input(spark, "customer_id string, kyc_status string, occupation string, currency string, "
                            "_source_file string, _delivery_date date, _line bigint", rows)
    return silver.conform(df, SOURCES["customers"])


@case
def case_scd2(spark):
    rows = [
        ("C1", ts("2026-01-01T00:00:00Z"), "Shanghai", Decimal("100.00"), date(1990, 3, 7), True),
        ("C1", ts("2026-02-01T00:00:00Z"), "Shanghai", Decimal("100.00"), date(1990, 3, 7), True),  # no change
        ("C1", ts("2026-03-01T00:00:00Z"), "Beijing", Decimal("100.00"), date(1990, 3, 7), True),
        ("C1", ts("2026-04-01T00:00:00Z"), "Shanghai", Decimal("100.00"), date(1990, 3, 7), True),  # back again
        ("C1", ts("2026-05-01T00:00:00Z"), "Shanghai", Decimal("100.00"), date(1990, 3, 7), None),  # to null
        ("C1", ts("2026-05-15T00:00:00Z"), "Shanghai", Decimal("100.00"), date(1990, 3, 7), None),  # no change
        ("C1", ts("2026-06-01T00:00:00Z"), "Shanghai", Decimal("100.10"), date(1990, 3, 7), None),
        ("C2", ts("2026-03-01T00:00:00Z"), "Wuhan", None, None, False),
        ("C3", ts("2026-03-01T00:00:00Z"), None, Decimal("5.00"), date(1980, 1, 1), False),
        ("C3", ts("2026-03-02T00:00:00Z"), None, Decimal("5.00"), date(1980, 1, 2), False),
    ]
    df = typed_input(spark, "customer_id string, updated_at timestamp, city string, income decimal(18,2), "
                            "birth_date date, consent boolean", rows)
    return silver.scd2(df, ["customer_id"], "updated_at", ["city", "income", "birth_date", "consent"])


SILVER_CUSTOMER_ROWS = [
    _cust("C01", updated_at="2026-05-01T09:00:00+08:00"),
    _cust("C01", updated_at="2026-05-02T09:00:00+08:00"),                 # same attributes: collapses
    _cust("C01", updated_at="2026-05-03T09:00:00+08:00", city="Beijing", occupation="Data  Scientist"),
    _cust("C02", updated_at="2026-05-03T09:00:00", birth_date="1985-12-31", phone=None, email=""),
]


@case
def case_customers_silver(spark):
    df = text_input(spark, "customers", SILVER_CUSTOMER_ROWS, extras=("segment_hint",))
    versions = bronze.validate(df, SOURCES["customers"], RULES).where("_reason is null")
    return silver.customers_silver(versions, SOURCES["customers"], _key(PII_KEY_ENV))


EVENTS = [
    # event_id, customer_id, device_id, session_id, event_ts, event_type
    ("E01", "c1", "d1", "s1", "2026-06-01T10:00:00Z", "login"),
    ("E02", None, "d1", "s1", "2026-06-01T10:05:00Z", "page_view"),      # session
    ("E03", None, "d1", "s1", "2026-06-01T09:59:00Z", "page_view"),      # session (before its login)
    ("E04", None, "d1", None, "2026-06-01T11:00:00Z", "page_view"),      # device
    ("E05", "c2", "d2", "s2", "2026-06-01T10:00:00Z", "login"),
    ("E06", "c3", "d2", "s2", "2026-06-01T10:01:00Z", "login"),
    ("E07", None, "d2", "s2", "2026-06-01T10:02:00Z", "page_view"),      # ambiguous session -> device c3
    ("E08", None, "d2", "s2", "2026-06-01T09:00:00Z", "page_view"),      # ambiguous, no earlier login
    ("E09", None, "d3", None, "2026-06-01T10:00:00Z", "page_view"),      # only a later login
    ("E10", "c4", "d3", "s9", "2026-06-01T12:00:00Z", "login"),
    ("E11", None, "d4", "s4", "2026-06-01T10:00:00Z", "search"),         # nobody
    ("E12", "c5", "d5", None, "2026-06-01T10:00:00Z", "login"),
    ("E11z", None, "d5", None, "2026-06-01T10:00:00Z", "page_view"),     # same instant, sorts before E12
    ("E13", None, "d5", None, "2026-06-01T10:00:00Z", "page_view"),      # same instant, after E12
    ("E14", "c6", "d1", "s5", "2026-06-01T12:00:00Z", "login"),
    ("E15", None, "d1", None, "2026-06-01T12:30:00Z", "page_view"),      # device: latest earlier login c6
    ("E16", "c1", "d6", "s6", "2026-06-01T10:00:00Z", "login"),
    ("E17", "c1", "d6", "s6", "2026-06-01T10:10:00Z", "login"),          # same customer twice: still one
    ("E18", None, "d7", "s6", "2026-06-01T10:20:00Z", "page_view"),      # session on another device
]


@case
def case_attribute_events(spark):
    rows = [(e, c, d, s, ts(t), k) for e, c, d, s, t, k in EVENTS]
    df = typed_input(spark, "event_id string, customer_id string, device_id string, session_id string, "
                            "event_ts timestamp, event_type string", rows)
    return silver.attribute_events(df)


# --------------------------------------------------------------------------- profile: transactions

DAILY_TXNS = [  # customer, UTC instant, amount, direction, channel, category, counterparty
    ("C1", "2026-06-30T15:00:00Z", "100.00", "debit", "pos", "dining", None),       # 23:00 local 06-30
    ("C1", "2026-06-29T16:30:00Z", "250.50", "debit", "mobile", "travel", None),    # 00:30 local 06-30
    ("C1", "2026-06-30T01:00:00Z", "8000.00", "credit", "online", None, "ACME"),
    ("C1", "2026-06-30T02:00:00Z", "8000.00", "credit", "online", None, "ACME"),    # same pair twice
    ("C1", "2026-06-30T02:00:00Z", "30.00", "credit", "atm", None, "Bob"),
    ("C1", "2026-06-29T15:59:59Z", "40.00", "debit", "pos", "groceries", None),     # 23:59 local 06-29
    ("C1", "2026-05-10T04:00:00Z", "7999.99", "credit", "online", None, "ACME"),
    ("C1", "2025-07-01T04:00:00Z", "70.00", "debit", "branch", None, None),         # first day of the year
    ("C1", "2026-07-01T04:00:00Z", "999.00", "debit", "pos", "dining", None),       # after as_of
    ("C2", "2026-03-01T23:00:00Z", "12.34", "debit", "wechat", "fuel", None),
    (None, "2026-06-30T03:00:00Z", "5.00", "debit", "pos", "dining", None),
]


def _daily_input(spark):
    from features.profile import transactions_daily

    rows = [(c, ts(t), Decimal(a), d, ch, cat, cp) for c, t, a, d, ch, cat, cp in DAILY_TXNS]
    df = typed_input(spark, "customer_id string, txn_ts timestamp, amount decimal(18,2), direction string, "
                            "channel string, merchant_category string, counterparty string", rows)
    return transactions_daily(df, "Asia/Shanghai")


@case
def case_transactions_daily(spark):
    return _daily_input(spark)


@case
def case_transactions_family(spark):
    from features.profile import AsOf, aggregate_family, transactions_inputs

    at = AsOf(date(2026, 6, 30), "Asia/Shanghai")
    conf = {"night_hours": {"start": 22, "end": 6}, "salary": {"min_months": 2, "min_amount": 2000}}
    return aggregate_family("transactions", transactions_inputs(_daily_input(spark), at, conf), at)


@case
def case_transactions_family_from_rows(spark):
    """The same features from one row per transaction (``transactions_rows``), as the
    profile reads raw transactions: the same values as from the daily summary."""
    from features.profile import AsOf, aggregate_family, transactions_inputs, transactions_rows

    at = AsOf(date(2026, 6, 30), "Asia/Shanghai")
    conf = {"night_hours": {"start": 22, "end": 6}, "salary": {"min_months": 2, "min_amount": 2000}}
    rows = [(c, ts(t), Decimal(a), d, ch, cat, cp) for c, t, a, d, ch, cat, cp in DAILY_TXNS]
    df = typed_input(spark, "customer_id string, txn_ts timestamp, amount decimal(18,2), direction string, "
                            "channel string, merchant_category string, counterparty string", rows)
    return aggregate_family("transactions", transactions_inputs(transactions_rows(df, "Asia/Shanghai"), at, conf),
                            at)


LOCAL_TIMES = ["2026-06-29T16:30:00Z", "2026-03-08T06:59:59Z", "2026-03-08T07:00:00Z", "2026-11-01T05:30:00Z",
               "2026-11-01T06:30:00Z", "1988-07-01T00:00:00Z", "1991-09-14T17:30:00Z"]


@case
def case_local_time(spark):
    """``local_time`` against the engine's own zone lookup: a fixed-offset zone (Shanghai,
    whose 1988-1991 summer time comes before the fixed offset), a zone with daylight
    saving (New York, around its 2026 changes) and a half-hour offset (Kolkata)."""
    from features.localtime import local_time

    df = typed_input(spark, "i int, ts timestamp", [(i, ts(t)) for i, t in enumerate(LOCAL_TIMES)])
    zones = {"sh": "Asia/Shanghai", "ny": "America/New_York", "in": "Asia/Kolkata"}
    return df.select("i", *[c for k, z in zones.items() for c in (
        local_time(F.col("ts"), z).alias(k), F.from_utc_timestamp("ts", z).alias(f"{k}_engine"))])


def run_all(spark: SparkSession, names: list[str] | None = None) -> dict[str, dict]:
    """Render every case (or ``names``); a case that raises gives ``{"error": ...}``."""
    import time

    out: dict[str, dict] = {}
    for name in names or list(CASES):
        started = time.monotonic()
        try:
            out[name] = render(CASES[name](spark))
        except Exception as e:  # noqa: BLE001 - reported per case by the test
            out[name] = {"error": f"{type(e).__name__}: {str(e)[:2000]}"}
        out[name]["seconds"] = round(time.monotonic() - started, 2)
    return out


# --------------------------------------------------------------------------- holdings: latest snapshots

@case
def case_latest_snapshots(spark):
    from features.profile import latest_snapshots

    rows = [("A1", date(2026, 5, 31), 100, ts("2026-06-01T00:00:00Z")),
            ("A1", date(2026, 6, 30), 200, ts("2026-07-01T00:00:00Z")),
            ("A2", date(2026, 6, 30), 300, ts("2026-07-01T00:00:00Z")),
            ("A2", date(2026, 6, 30), 310, ts("2026-07-02T00:00:00Z")),  # delivered again: the later ingest
            ("A2", date(2026, 4, 30), 290, ts("2026-07-03T00:00:00Z")),  # late and older
            ("A3", date(2026, 1, 31), 50, None)]
    df = typed_input(spark, "account_id string, snapshot_date date, balance int, _ingested_at timestamp", rows)
    return latest_snapshots(df).select("account_id", "snapshot_date", "balance")

"""features.silver: conformance, tokens, masking, SCD2 history and event attribution."""

from __future__ import annotations

import atexit
import hashlib
import hmac
import shutil
import tempfile
import unicodedata
from datetime import date, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from pyspark.sql import types as T

from c360.contract import SOURCES
from c360.privacy import KeyRef
from features.bronze import ValidationRules, validate
from features.silver import (attribute_events, conform, customer_pii, customers_silver, hmac_token, mask_free_text,
                             scd2, tokenise)
from helpers import customer, text_rows

KEY = b"test-key-0123456789abcdef"
KEY_ENV = "C360_TEST_SILVER_PII_KEY"
RULES = ValidationRules()
# Nothing generated inside the repository: no example database, Hypothesis' home in /tmp.
_HYPOTHESIS_HOME = tempfile.mkdtemp(prefix="c360-hypothesis-")
atexit.register(shutil.rmtree, _HYPOTHESIS_HOME, ignore_errors=True)
set_hypothesis_home_dir(_HYPOTHESIS_HOME)


@pytest.fixture
def key(monkeypatch) -> KeyRef:
    """KEY, where the token UDF finds it: an environment variable of this process (the
    embedded engine's Python workers run here)."""
    monkeypatch.setenv(KEY_ENV, KEY.decode())
    return KeyRef.from_env(KEY_ENV)


def test_hmac_token_matches_python_hmac(spark, key):
    df = spark.createDataFrame([("王小明",), ("13800138000",), (None,)], "v string")
    got = [r[0] for r in df.select(hmac_token(df.v, key)).collect()]
    assert got[:2] == [hmac.new(KEY, v.encode(), hashlib.sha256).hexdigest() for v in ("王小明", "13800138000")]
    assert got[2] is None


def test_tokenise_drops_raw_columns_and_is_deterministic(spark, key):
    df = spark.createDataFrame([("C1", "a@b.cn"), ("C2", "a@b.cn")], "customer_id string, email string")
    out = tokenise(df, ["email"], key)
    assert out.columns == ["customer_id", "email_token"]
    a, b = [r.email_token for r in out.orderBy("customer_id").collect()]
    assert a == b and len(a) == 64 and "a@b.cn" not in a


def _hmac_pads(key: bytes) -> tuple[bytes, bytes]:
    """The inner and outer HMAC-SHA256 pads of ``key`` (RFC 2104)."""
    k = (hashlib.sha256(key).digest() if len(key) > 64 else key).ljust(64, b"\0")
    return bytes(b ^ 0x36 for b in k), bytes(b ^ 0x5C for b in k)


def test_the_pii_key_is_in_no_query_plan(spark, monkeypatch, capsys):
    """The plans of silver customers and restricted customer_pii (sent to the engine, shown
    in its UI and logs) hold neither the key nor its HMAC pads, in any spelling; the tokens
    are still the HMAC-SHA256 of each value under that key."""
    import base64

    secret = b"plan-secret-Kx9-0123456789-abcdefghij"
    monkeypatch.setenv("C360_TEST_PLAN_PII_KEY", secret.decode())
    ref = KeyRef.from_env("C360_TEST_PLAN_PII_KEY")
    src = SOURCES["customers"]
    versions = validate(text_rows(spark, "customers", [customer(phone="13800138000")]), src, RULES) \
        .drop("_reason", "_raw", "_line", "_delivery_date")
    ipad, opad = _hmac_pads(secret)
    needles = {"key": secret, "key hex": secret.hex().encode(), "key base64": base64.b64encode(secret).rstrip(b"="),
               "ipad": ipad, "opad": opad, "ipad hex": ipad.hex().encode(), "opad hex": opad.hex().encode(),
               "ipad base64": base64.b64encode(ipad)[:40], "opad base64": base64.b64encode(opad)[:40]}
    for name, df in (("silver", customers_silver(versions, src, ref)), ("restricted", customer_pii(versions, src, ref))):
        proto = df._plan.to_proto(spark.client).SerializeToString()
        df.explain(extended=True)
        shown = capsys.readouterr().out.encode()
        assert b"phone_token" in shown  # the engine's plan text was captured
        for where, text in (("Spark Connect plan", proto), ("explain", shown), ("plan repr", repr(df._plan).encode())):
            for needle_name, needle in needles.items():
                for spelling in {needle, needle.upper(), needle.lower()}:
                    assert spelling not in text, f"{name}: the {needle_name} is in the {where}"
        phone_token = df.first()["phone_token"]
        assert phone_token == hmac.new(secret, b"13800138000", hashlib.sha256).hexdigest()


def test_tokens_need_a_key_reference_and_the_same_key_where_they_are_computed(spark, monkeypatch):
    """A key given as bytes would go into the plan: refused. A worker whose key differs from
    the one the job started with refuses to make tokens (they would not join the lake's)."""
    df = spark.createDataFrame([("a",)], "v string")
    with pytest.raises(TypeError, match="KeyRef"):
        hmac_token(df.v, KEY)
    monkeypatch.setenv("C360_TEST_MOVED_PII_KEY", "the-key-the-job-started-with")
    ref = KeyRef.from_env("C360_TEST_MOVED_PII_KEY")
    monkeypatch.setenv("C360_TEST_MOVED_PII_KEY", "another-key-on-the-workers")
    with pytest.raises(Exception, match="differs from the one the job started with"):
        df.select(hmac_token(df.v, ref)).collect()
    monkeypatch.delenv("C360_TEST_MOVED_PII_KEY")
    with pytest.raises(Exception, match=r"no PII key in \$C360_TEST_MOVED_PII_KEY where the tokens are computed"):
        df.select(hmac_token(df.v, ref)).collect()


def test_mask_free_text(spark):
    df = spark.createDataFrame([("请回电13800138000，谢谢",), ("mail me at li.lei@bank.cn please",),
                                ("身份证110101199001011234有问题",), ("order 12345 is fine",),
                                ("13812345678,13912345678",), ("call 139-1234-5678 or 139 1234 5678",),
                                ("11010119900101123X 110101199001011234",), ("no numbers here, 谢谢",), (None,),
                                ("x@y.cn",)], "t string")
    got = [r[0] for r in df.select(mask_free_text(df.t)).collect()]
    assert got == ["请回电[phone]，谢谢", "mail me at [email] please", "身份证[id]有问题", "order 12345 is fine",
                   "[phone],[phone]", "call [phone] or [phone]", "[id] [id]", "no numbers here, 谢谢", None,
                   "[email]"]


def _full_width(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else "\u3000" if c == " " else c for c in text)


SPELLINGS = [  # (text, masked)
    ("请回电138.0013.8000谢谢", "请回电[phone]谢谢"),
    ("call (138) 0013 8000 now", "call [phone] now"),
    ("call +86 138-0013-8000.", "call [phone]."),
    ("电话：+86 (138) 0013-8000", "电话：[phone]"),
    ("电话１３８００１３８０００", "电话[phone]"),
    ("电话" + _full_width("+86 138-0013-8000") + "，谢谢", "电话[phone]，谢谢"),
    ("0086 138 0013 8000", "[phone]"),
    ("tel 138\u30000013\u30008000", "tel [phone]"),
    ("id 1101 0119 9001 0112 3X ok", "id [id] ok"),
    ("身份证110101.19900101.123x", "身份证[id]"),
    ("身份证" + _full_width("11010119900101123X"), "身份证[id]"),
    ("id 110101-19900101-1234 and phone 139 1234 5678", "id [id] and phone [phone]"),
    ("mail li.lei＠bank.cn", "mail [email]"),
    # not contact details: left as they are
    ("card 6222 0212 3456 7890, amount 12345678901", "card 6222 0212 3456 7890, amount 12345678901"),
    ("paid 2026-06-30 12:00, order 12345", "paid 2026-06-30 12:00, order 12345"),
    ("account 6222021234567890123 stays", "account 6222021234567890123 stays"),
    ("全角数字１２３４５", "全角数字１２３４５"),
]


def test_mask_free_text_finds_other_spellings(spark):
    """Full-width digits, dots, brackets, spaces and dashes between the digits, country
    prefixes: masked like the plain spelling; other numbers stay."""
    df = spark.createDataFrame([(i, t) for i, (t, _) in enumerate(SPELLINGS)], "i int, t string")
    got = [r[0] for r in df.orderBy("i").select(mask_free_text(df.t)).collect()]
    assert got == [m for _, m in SPELLINGS]


_SEPARATORS = [" ", "-", ".", "  ", " - ", "\u3000", "－", "．", "·", ") ", "\u00a0"]
_PHONE_GROUPS = [(11,), (3, 4, 4), (3, 8), (3, 4, 4), (4, 4, 3), (1, 2, 4, 4)]
_ID_GROUPS = [(18,), (6, 8, 4), (4, 4, 4, 4, 2), (6, 4, 4, 4), (3, 3, 4, 4, 4)]
_PREFIXES = ["", "", "+86", "+86 ", "86", "0086 ", "(+86) ", "+86-"]
# text around the numbers: no digits (the property is that no digit survives)
_AROUND = st.text(alphabet=st.sampled_from(list("abcXYZ ,.:;!?()-+电话身份证号请联系谢谢，。：")), max_size=12)


@st.composite
def _spelled(draw) -> tuple[str, str]:
    """(a phone or national id spelled some way, its digits)."""
    if draw(st.booleans()):
        digits = "1" + draw(st.sampled_from("3456789")) + draw(st.text("0123456789", min_size=9, max_size=9))
        groups, prefix = draw(st.sampled_from(_PHONE_GROUPS)), draw(st.sampled_from(_PREFIXES))
        bracket = draw(st.booleans()) and len(groups) > 1
    else:
        digits = draw(st.text("0123456789", min_size=17, max_size=17)) + draw(st.sampled_from("0123456789Xx"))
        groups, prefix, bracket = draw(st.sampled_from(_ID_GROUPS)), "", False
    parts, i = [], 0
    for g in groups:
        parts.append(digits[i:i + g])
        i += g
    if bracket:
        parts[0] = f"({parts[0]})"
    sep = draw(st.sampled_from(_SEPARATORS))
    text = prefix + sep.join(parts) if sep != ") " else prefix + " ".join(parts)
    if draw(st.booleans()):
        text = _full_width(text)
    return text, digits


@settings(max_examples=25, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(_AROUND, _spelled(), _AROUND), min_size=1, max_size=40))
def test_masked_text_keeps_no_digit_of_a_phone_or_id_in_any_spelling(spark, texts):
    """Phones and national ids in many spellings inside random text: after masking, no
    digit (ASCII or full-width) is left, so no run of the original digits either."""
    rows = []
    for i, (before, (spelled, _), after) in enumerate(texts):
        # a word character between the text and the number, as in "tel138..." or "号1101..."
        rows.append((i, f"{before}x {spelled} x{after}"))
    df = spark.createDataFrame(rows, "i int, t string")
    got = {r[0]: r[1] for r in df.select("i", mask_free_text(df.t)).collect()}
    for i, text in rows:
        out = unicodedata.normalize("NFKC", got[i])
        assert not any(c.isdigit() for c in out), (text, got[i])
        assert "[phone]" in out or "[id]" in out, (text, got[i])


def test_conform_normalises_categories_and_drops_bookkeeping(spark):
    df = spark.createDataFrame(
        [("K1", "C1", " Service Attitude ", "cny", "call me 13912345678", "v1", "f.csv")],
        "complaint_id string, customer_id string, category string, currency string, description string, "
        "_version string, _source_file string")
    r = conform(df, SOURCES["complaints"]).first()
    assert r["category"] == "service_attitude"
    assert r["description"] == "call me [phone]"
    assert "_version" not in r.asDict() and r["_source_file"] == "f.csv"


def test_conform_keeps_the_latest_version_of_a_repeated_key(spark):
    df = spark.createDataFrame(
        [("K1", "C1", "late", "2"), ("K1", "C1", "early", "1"), ("K2", "C2", "only", "1"), ("K1", "C1", "mid", "15")],
        "complaint_id string, customer_id string, description string, _version string")
    got = {r["complaint_id"]: r["description"] for r in conform(df, SOURCES["complaints"]).collect()}
    assert got == {"K1": "late", "K2": "only"}  # "2" > "15" > "1": versions compare as text


def test_scd2_collapses_unchanged_versions(spark):
    df = spark.createDataFrame([
        ("C1", datetime(2026, 1, 1), "R2", "x"),
        ("C1", datetime(2026, 2, 1), "R2", "x"),  # no change: collapses into the first
        ("C1", datetime(2026, 3, 1), "R4", "x"),
        ("C2", datetime(2026, 1, 5), "R1", "y"),
    ], "customer_id string, updated_at timestamp, risk string, city string")
    rows = scd2(df, ["customer_id"], "updated_at", ["risk", "city"]).orderBy("customer_id", "valid_from").collect()
    assert [(r.customer_id, r.risk, r.valid_from, r.valid_to, r.is_current) for r in rows] == [
        ("C1", "R2", datetime(2026, 1, 1), datetime(2026, 3, 1), False),
        ("C1", "R4", datetime(2026, 3, 1), None, True),
        ("C2", "R1", datetime(2026, 1, 5), None, True),
    ]


def test_customers_silver_has_history_tokens_and_birth_month_only(spark, key):
    src = SOURCES["customers"]
    versions = validate(text_rows(spark, "customers", [
        customer(risk_tolerance="R2", updated_at="2026-01-01T09:00:00"),
        customer(risk_tolerance="R4", updated_at="2026-03-01T09:00:00", _line=3),
    ]), src, RULES).drop("_reason", "_raw", "_line", "_delivery_date")
    out = customers_silver(versions, src, key)
    for pii in src.pii_columns:
        assert pii not in out.columns and f"{pii}_token" in out.columns
    rows = out.orderBy("valid_from").collect()
    assert [(r.risk_tolerance, r.is_current) for r in rows] == [("R2", False), ("R4", True)]
    assert rows[0].birth_month == date(1990, 1, 1)


def test_attribute_events_by_login_session_and_device(spark):
    schema = T.StructType([T.StructField(n, t) for n, t in [
        ("event_id", T.StringType()), ("customer_id", T.StringType()), ("device_id", T.StringType()),
        ("session_id", T.StringType()), ("event_ts", T.TimestampType())]])
    ts = lambda h: datetime(2026, 6, 1, h)  # noqa: E731
    df = spark.createDataFrame([
        ("e1", None, "d1", "s1", ts(8)),     # before login, same session -> session
        ("e2", "C1", "d1", "s1", ts(9)),     # login
        ("e3", None, "d1", "s2", ts(10)),    # later session on the device, no login -> device
        ("e4", None, "d2", "s3", ts(10)),    # never logged in -> anonymous
        ("e5", None, "d3", "s4", ts(7)),     # before any login on the device, other session -> anonymous
        ("e6", "C9", "d3", "s5", ts(9)),
    ], schema)
    got = {r.event_id: (r.customer_id, r.attributed_by) for r in attribute_events(df).collect()}
    assert got == {"e1": ("C1", "session"), "e2": ("C1", "login"), "e3": ("C1", "device"),
                   "e4": (None, None), "e5": (None, None), "e6": ("C9", "login")}


def test_attribute_events_uses_earlier_logins_as_context_within_the_lookback(spark):
    """A daily run attributes new events through logins processed on earlier days (context),
    returns only the new events, and ignores device logins older than the look-back."""
    schema = T.StructType([T.StructField(n, t) for n, t in [
        ("event_id", T.StringType()), ("customer_id", T.StringType()), ("device_id", T.StringType()),
        ("session_id", T.StringType()), ("event_ts", T.TimestampType())]])
    context = spark.createDataFrame([
        ("old1", "C1", "d1", "s1", datetime(2026, 6, 30, 23, 50)),  # login yesterday, session s1 continues
        ("old2", "C2", "d2", "s7", datetime(2026, 5, 25, 9)),       # login 37 days ago on d2
        ("old3", "C3", "d3", "s8", datetime(2026, 2, 1, 9)),        # login 150 days ago on d3
    ], schema)
    new = spark.createDataFrame([
        ("n1", None, "d1", "s1", datetime(2026, 7, 1, 0, 5)),    # same session after midnight -> session
        ("n2", None, "d2", "s9", datetime(2026, 7, 1, 8)),       # device, login 37 days before -> device
        ("n3", None, "d3", "s10", datetime(2026, 7, 1, 8)),      # device login too old -> anonymous
        ("n4", "C4", "d4", "s11", datetime(2026, 7, 1, 9)),
    ], schema)
    got = {r.event_id: (r.customer_id, r.attributed_by)
           for r in attribute_events(new, context=context, device_lookback_days=90).collect()}
    assert got == {"n1": ("C1", "session"), "n2": ("C2", "device"), "n3": (None, None), "n4": ("C4", "login")}
    # without a look-back limit the 150-day-old login still counts
    unlimited = {r.event_id: r.customer_id for r in attribute_events(new, context=context).collect()}
    assert unlimited["n3"] == "C3"


def test_attribute_events_shared_session_falls_back_to_the_device(spark):
    """A session two customers logged in to (one of them in the context) attributes nobody;
    its anonymous event then takes its device's latest earlier login. Logins after an event
    never count, and logins of other sessions and devices change nothing."""
    schema = T.StructType([T.StructField(n, t) for n, t in [
        ("event_id", T.StringType()), ("customer_id", T.StringType()), ("device_id", T.StringType()),
        ("session_id", T.StringType()), ("event_ts", T.TimestampType())]])
    context = spark.createDataFrame([
        ("c1", "C1", "d1", "s1", datetime(2026, 6, 30, 23)),
        ("c0", "C0", "d1", "s0", datetime(2026, 6, 30, 20)),   # earlier login on d1: not the latest
        ("c2", "C2", "d9", "s5", datetime(2026, 6, 30, 22)),
        ("c3", "C3", "d8", "s8", datetime(2026, 6, 30, 21)),   # a device no new event is on
    ], schema)
    new = spark.createDataFrame([
        ("n1", None, "d1", "s1", datetime(2026, 7, 1, 0, 5)),   # s1: C1 and C2 -> device d1 -> C1
        ("n2", "C2", "d2", "s1", datetime(2026, 7, 1, 0, 10)),
        ("n3", None, "d9", "s6", datetime(2026, 7, 1, 1)),      # no login in s6 -> device d9 -> C2
        ("n4", None, "d2", "s7", datetime(2026, 7, 1, 0, 5)),   # d2's only login is later -> anonymous
    ], schema)
    got = {r.event_id: (r.customer_id, r.attributed_by)
           for r in attribute_events(new, context=context, device_lookback_days=90).collect()}
    assert got == {"n1": ("C1", "device"), "n2": ("C2", "login"), "n3": ("C2", "device"), "n4": (None, None)}

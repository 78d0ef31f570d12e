"""Engine parity: the pure bronze and silver transforms give the same rows on Sail and JVM Spark.

The cases live in ``tests/parity_cases.py``. Sail runs them here, through the session of
``conftest.py``; classic local JVM Spark runs them in a subprocess
(``tests/parity_jvm.py``), because PySpark fixes Spark Connect or classic mode once per
process. The JVM run starts first and Sail's cases run while it works.

Each case is checked twice: both engines must give the same schema and rows
(``test_engines_agree``), and each engine's rows must hold a few values known to be right
(``test_expected_values``), so that the engines cannot agree on a wrong answer unnoticed.
"""

from __future__ import annotations

import difflib
import hashlib
import hmac
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import parity_cases as pc

pytestmark = pytest.mark.jvm

ROOT = Path(__file__).resolve().parents[1]
JVM_SCRIPT = ROOT / "tests" / "parity_jvm.py"
JVM_TIMEOUT_S = 600
# Variables that would make the subprocess a Spark Connect client, or use other Spark jars.
CONNECT_ENV = ("SPARK_REMOTE", "SPARK_CONNECT_MODE_ENABLED", "SPARK_LOCAL_REMOTE", "PYSPARK_SUBMIT_ARGS",
               "SPARK_HOME")

# Cases on which the engines are known to differ: case -> what differs. Each is an
# xfail(strict=True) of test_engines_agree, so fixing the transform makes the test fail
# until the entry is removed. None at present (Sail 0.7.2, PySpark 4.2.1).
KNOWN_DIFFERENCES: dict[str, str] = {}
# Cases where one engine gives a known-wrong value: (case, "sail" | "jvm") -> what is wrong.
KNOWN_WRONG: dict[tuple[str, str], str] = {}

CASE_NAMES = list(pc.CASES)


def _param(name: str, side: str | None = None):
    if side is None:
        reason = KNOWN_DIFFERENCES.get(name)
        reason = reason and f"Sail and JVM Spark differ: {reason}"
        args, ident = (name,), name
    else:
        reason = KNOWN_WRONG.get((name, side))
        reason = reason and f"{side} gives a wrong value: {reason}"
        args, ident = (name, side), f"{name}-{side}"
    marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
    return pytest.param(*args, marks=marks, id=ident)


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def jvm_process(tmp_path_factory):
    """Start the JVM run (once for the module); yields (process, output dir, log file)."""
    if shutil.which("java") is None:
        pytest.skip("Java not installed: parity test skipped")
    out = tmp_path_factory.mktemp("parity_jvm")
    env = {k: v for k, v in os.environ.items() if k not in CONNECT_ENV}
    env["PYSPARK_PYTHON"] = sys.executable
    log_path = out / "jvm.log"
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen([sys.executable, str(JVM_SCRIPT), str(out / "results")], cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        yield proc, out / "results", log_path
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def results(jvm_process, spark) -> dict[str, dict[str, dict]]:
    """``{"sail": {case: rendered}, "jvm": {case: rendered}}``; Sail runs while the JVM works."""
    proc, out, log_path = jvm_process
    sail = pc.run_all(spark)
    try:
        rc = proc.wait(timeout=JVM_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"the JVM parity run took more than {JVM_TIMEOUT_S} s; log:\n{_tail(log_path)}")
    if rc != 0 or not (out / "manifest.json").exists():
        pytest.fail(f"the JVM parity run failed (exit {rc}); log:\n{_tail(log_path)}")
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    jvm: dict[str, dict] = {}
    for name, info in manifest["cases"].items():
        if "error" in info:
            jvm[name] = {"error": info["error"]}
        else:
            lines = (out / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
            jvm[name] = {"schema": info["schema"], "rows": lines}
    return {"sail": sail, "jvm": jvm}


def _tail(path: Path, lines: int = 60) -> str:
    text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _result(results, engine: str, name: str) -> dict:
    res = results[engine].get(name)
    if res is None:
        pytest.fail(f"{engine}: case {name} was not run")
    if "error" in res:
        pytest.fail(f"{engine}: case {name} raised {res['error']}")
    return res


def _rows(res: dict) -> list[dict]:
    return [json.loads(line) for line in res["rows"]]


# --------------------------------------------------------------------------- parity

@pytest.mark.parametrize("name", [_param(n) for n in CASE_NAMES])
def test_engines_agree(results, name):
    jvm, sail = _result(results, "jvm", name), _result(results, "sail", name)
    problems = []
    if jvm["schema"] != sail["schema"]:
        diff = difflib.unified_diff([f"{n}: {t}" for n, t in jvm["schema"]],
                                    [f"{n}: {t}" for n, t in sail["schema"]], "jvm", "sail", lineterm="")
        problems.append("schemas differ (name: type):\n" + "\n".join(diff))
    if jvm["rows"] != sail["rows"]:
        diff = difflib.unified_diff(jvm["rows"], sail["rows"], "jvm", "sail", lineterm="", n=0)
        problems.append(f"rows differ ({len(jvm['rows'])} on jvm, {len(sail['rows'])} on sail; "
                        f"-jvm +sail):\n" + "\n".join(diff))
    assert not problems, f"case {name}: Sail and JVM Spark disagree\n" + "\n\n".join(problems)


def test_every_case_ran_on_both_engines(results):
    assert sorted(results["jvm"]) == sorted(CASE_NAMES)
    assert sorted(results["sail"]) == sorted(CASE_NAMES)


# --------------------------------------------------------------------------- known-good values

def _by(rows: list[dict], key: str) -> dict:
    out = {}
    for r in rows:
        assert r[key] not in out, f"duplicate {key} {r[key]!r}"
        out[r[key]] = r
    return out


def _token(value: str | None, key: bytes = pc.PII_KEY) -> str | None:
    return None if value is None else hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()


def expect_validate_transactions(rows, schema):
    r = _by(rows, "txn_id")
    assert len(rows) == len(pc.TRANSACTION_ROWS)
    assert dict(schema)["txn_ts"] == "timestamp" and dict(schema)["amount"] == "decimal(18,2)"
    good = {k for k, v in r.items() if v["_reason"] is None}
    assert good == {"T01", "T02", "T03", "T04", "T14", "T19", "T20", "T21", "T22"}
    assert all(v["_raw"] is None for k, v in r.items() if k in good)
    # Time stamps: without offset in the bank's zone (UTC+8), with offset as given.
    assert r["T01"]["txn_ts"] == "2026-06-01T02:00:00Z"
    assert r["T02"]["txn_ts"] == "2026-06-01T02:00:00Z"
    assert r["T03"]["txn_ts"] == "2026-06-01T10:00:00Z"
    assert r["T04"]["txn_ts"] == "2026-06-01T02:00:00.123456Z"
    assert r["T20"]["txn_ts"] == "2026-06-01T02:00:00Z"
    assert r["T21"]["txn_ts"] == "2026-06-01T15:00:00Z"
    assert r["T14"]["txn_ts"] == "2026-06-02T23:59:59Z"
    # Enums canonical, decimals at scale 2 (rounded half up).
    assert (r["T02"]["direction"], r["T02"]["channel"]) == ("debit", "atm")
    assert r["T03"]["amount"] == "12.35"
    assert r["T22"]["amount"] == "7.50"
    reasons = {
        "T05": "missing required field customer_id",
        "T06": "missing required field direction",
        "T07": "amount is not a decimal: '12,50'",
        "T08": "negative or zero amount: -5.00",
        "T09": "negative or zero amount: 0.00",
        "T10": "unknown value for channel: 'fax'",
        "T11": "impossible timestamp in txn_ts: '2026-02-30T10:00:00'",
        "T12": "malformed timestamp in txn_ts: 'yesterday'",
        "T13": "txn_ts in the future (after the delivery date)",
        "T17": ("negative or zero amount: -1.00; unknown value for direction: 'sideways'; "
                "unknown value for channel: 'Fax'"),
        "T18": "amount is not a decimal: '1e3'",
        None: "expected 11 fields, got 3",
    }
    assert {k: r[k]["_reason"] for k in reasons} == reasons
    assert r["T05"]["_raw"] == "T05,A1,,2026-06-01T10:00:00,100.00,debit,CNY,mobile,grocery,Shop,lunch"
    assert r["T07"]["_raw"] == 'T07,A1,C1,2026-06-01T10:00:00,"12,50",debit,CNY,mobile,grocery,Shop,lunch'
    assert r["T16"]["_raw"].endswith(',Shop,"said ""hi"", twice"')
    assert (r[None]["_raw"], r[None]["_line"]) == ("T15,A1,oops", 16)
    assert r["T10"]["channel"] is None and r["T11"]["txn_ts"] is None


def expect_validate_customers(rows, schema):
    r = _by(rows, "customer_id")
    assert [n for n, _ in schema][-6:] == ["segment_hint", "_source_file", "_delivery_date", "_line", "_raw", "_reason"]
    c1 = r["C01"]
    assert c1["_reason"] is None
    assert (c1["gender"], c1["risk_tolerance"], c1["preferred_language"]) == ("M", "R3", "zh")
    assert (c1["marketing_consent"], c1["annual_income"], c1["birth_date"]) == (True, "250000.50", "1990-03-07")
    assert c1["updated_at"] == "2026-05-31T01:00:00Z" and c1["segment_hint"] == "gold"
    assert (r["C02"]["marketing_consent"], r["C02"]["preferred_language"]) == (False, "en")
    assert (r["C03"]["marketing_consent"], r["C03"]["updated_at"]) == (True, "2026-06-01T02:00:00Z")
    assert (r["C04"]["marketing_consent"], r["C04"]["updated_at"]) == (False, "2026-06-01T10:00:00Z")
    reasons = {
        "C05": "marketing_consent is not a boolean: 'maybe'",
        "C06": "impossible date in birth_date: '2026-02-30'",
        "C07": "malformed date in birth_date: '1990/03/07'",
        "C08": "impossible date in birth_date: '1850-01-01'",
        "C09": "birth_date after onboarding_date",
        "C10": "missing required field marketing_consent",
        "C11": "unknown value for gender: 'X'; unknown value for risk_tolerance: 'R6'",
        "C12": "negative annual_income: -1.00",
        "C13": "missing required field onboarding_date; birth_date after onboarding_date",
        "C14": "impossible timestamp in updated_at: '2026-13-01T00:00:00'",
    }
    assert {k: r[k]["_reason"] for k in reasons} == reasons
    assert r["C06"]["birth_date"] is None and r["C14"]["updated_at"] is None
    assert (r["C15"]["_reason"], r["C15"]["full_name"], r["C15"]["city"]) == (None, None, "Beijing")


def expect_validate_feedback(rows, schema):
    r = _by(rows, "response_id")
    assert dict(schema)["score"] == "bigint"
    assert {k for k, v in r.items() if v["_reason"] is None} == {"F01", "F11", "F12"}
    assert (r["F01"]["touchpoint"], r["F01"]["score"], r["F01"]["comment"]) == ("app", 9, "服务很好")
    assert r["F11"]["responded_at"] == "2026-06-01T02:00:00Z"
    assert (r["F12"]["survey_type"], r["F12"]["score"]) == ("ces", 7)
    assert r["F04"]["survey_type"] == "nps"
    assert r["F09"]["responded_at"] == "2026-06-09T16:00:00Z"
    reasons = {
        "F02": "score out of range for csat: 6",
        "F03": "score out of range for ces: 0",
        "F04": "score out of range for nps: 11",
        "F05": "negative score: -1; score out of range for nps: -1",
        "F06": "score is not an integer: '7.5'",
        "F07": "unknown value for survey_type: 'Email'",
        "F08": "unknown value for touchpoint: 'fax'",
        "F09": "responded_at in the future (after the delivery date)",
        "F10": "missing required field score",
        "F13": "score out of range for csat: 0",
    }
    assert {k: r[k]["_reason"] for k in reasons} == reasons


def expect_validate_product_catalog(rows, schema):
    r = _by(rows, "product_code")
    assert (r["P1"]["_reason"], r["P1"]["risk_level"], r["P1"]["active"], r["P1"]["min_age"]) == (None, "R1", True, 18)
    reasons = {
        "P2": "max_age before min_age",
        "P3": "max_age too large: 131",
        "P4": "negative min_age: -1",
        "P5": "active is not a boolean: '2'",
        "P6": "min_age out of range for an integer of at most 18 digits: '12345678901234567890'",
        "P7": "missing required field product_name; missing required field active",
    }
    assert {k: r[k]["_reason"] for k in reasons} == reasons


def expect_latest_customers(rows, schema):
    r = _by(rows, "customer_id")
    assert sorted(r) == ["C1", "C2", "C3", "C4", "C5"]
    assert {k: r[k]["city"] for k in ("C1", "C2", "C3", "C4", "C5")} == {
        "C1": "Beijing", "C2": "Suzhou", "C3": "Nanjing", "C4": "Chengdu", "C5": "Tianjin"}
    # each part: "1" + fixed-width value ("0" alone for null, which sorts first)
    assert r["C1"]["_version"] == "100001777680000000000|120260601|1000000000003"


def expect_latest_complaints(rows, schema):
    r = _by(rows, "complaint_id")
    assert {k: r[k]["status"] for k in ("K1", "K2", "K3", "K4")} == {
        "K1": "resolved", "K2": "in_progress", "K3": "rejected", "K4": "open"}
    assert r["K1"]["_version"] == "120260601|1000000000002|100001780290000000000|120260601|1000000000003"


MASKED = {
    "M01": "请联系[phone]谢谢",
    "M02": "call [phone] or [phone] today",
    "M03": "mail me at [email].",
    "M04": "身份证号[id]，请核实",
    "M05": "ID [id] and [id]",
    "M06": "account 6222021234567890123 stays",
    "M07": "card 6222 0212 3456 7890, amount 12345678901",
    "M08": "[phone]",
    "M09": "电话:[phone],邮箱[email],身份证[id]",
    "M10": "no contact details here",
    "M11": None,
    "M12": "2381234567890",
    "M13": "Tel [phone]。",
    "M14": "[phone],[phone]",
    "M15": "[email],[email] [id] [id]",
    # a number one character after another one: the first takes that character as its end,
    # so the second is found from its bracket or its digits (what is left holds none of it)
    "M16": "请回电[phone]或([phone]",
    "M17": "[phone]，0086 [phone]",
    "M18": "电话[phone]，＋[phone]",
    "M19": "id [id], [id]",
    "M20": "身份证[id] mail [email]",
    "M21": "paid 2026-06-30 12:00, order 12345, card 6222 0212 3456 7890, 全角１２３４５",
}


def expect_mask_free_text(rows, schema):
    r = _by(rows, "id")
    assert {k: r[k]["masked"] for k in MASKED} == MASKED


def expect_tokenise(rows, schema):
    assert [n for n, _ in schema] == ["id", "full_name_token", "phone_token", "national_id_token", "birth_date_token"]
    r = _by(rows, "id")
    for rid, name, phone, nid, birth in pc.TOKEN_ROWS:
        got = r[rid]
        want = {"full_name_token": _token(name), "phone_token": _token(phone), "national_id_token": _token(nid),
                "birth_date_token": _token(None if birth is None else birth.isoformat())}
        assert {k: got[k] for k in want} == want, rid


def expect_hmac_long_key(rows, schema):
    r = _by(rows, "id")
    for rid, name, *_ in pc.TOKEN_ROWS:
        assert r[rid]["token"] == _token(name, pc.LONG_PII_KEY), rid


def expect_conform_transactions(rows, schema):
    names = [n for n, _ in schema]
    assert names[-3:] == ["_source_file", "_batch_id", "_ingested_at"]
    assert not {"_delivery_date", "_line", "_file_sha256", "_version"} & set(names)
    r = _by(rows, "txn_id")
    t1 = r["T1"]
    assert (t1["amount"], t1["merchant_category"], t1["currency"]) == ("12.35", "grocery_stores_online", "CNY")
    assert t1["description"] == "转账给[phone] / mail [email] 身份证 [id]"
    assert t1["_ingested_at"] == "2026-06-02T01:02:03.456789Z" and t1["txn_ts"] == "2026-06-01T02:00:00Z"
    assert (r["T2"]["merchant_category"], r["T2"]["currency"]) == ("fuel_station", "USD")


def expect_conform_customers(rows, schema):
    assert [n for n, _ in schema] == ["customer_id", "kyc_status", "occupation", "currency", "_source_file"]
    r = _by(rows, "customer_id")
    assert (r["C1"]["kyc_status"], r["C1"]["occupation"], r["C1"]["currency"]) == (
        "verified_plus", "software_engineer", "CNY")
    assert r["C2"]["kyc_status"] == "pending"


def _history(rows):
    out: dict[str, list] = {}
    for row in sorted(rows, key=lambda x: (x["customer_id"], x["valid_from"])):
        out.setdefault(row["customer_id"], []).append((row["valid_from"][:10], (row["valid_to"] or "")[:10] or None,
                                                       row["is_current"]))
    return out


def expect_scd2(rows, schema):
    assert _history(rows) == {
        "C1": [("2026-01-01", "2026-03-01", False), ("2026-03-01", "2026-04-01", False),
               ("2026-04-01", "2026-05-01", False), ("2026-05-01", "2026-06-01", False),
               ("2026-06-01", None, True)],
        "C2": [("2026-03-01", None, True)],
        "C3": [("2026-03-01", "2026-03-02", False), ("2026-03-02", None, True)],
    }


def expect_customers_silver(rows, schema):
    names = {n for n, _ in schema}
    assert not {"full_name", "national_id", "phone", "email", "birth_date", "_delivery_date", "_raw"} & names
    assert {"birth_month", "valid_from", "valid_to", "is_current", "_source_file"} <= names
    hist = sorted(rows, key=lambda x: (x["customer_id"], x["valid_from"]))
    assert [(x["customer_id"], x["valid_from"], x["valid_to"], x["city"], x["occupation"]) for x in hist] == [
        ("C01", "2026-05-01T01:00:00Z", "2026-05-03T01:00:00Z", "Shanghai", "engineer"),
        ("C01", "2026-05-03T01:00:00Z", None, "Beijing", "data_scientist"),
        ("C02", "2026-05-03T01:00:00Z", None, "Shanghai", "engineer"),
    ]
    c = pc.CUST
    for x in hist:
        assert x["full_name_token"] == _token(c["full_name"]) and x["national_id_token"] == _token(c["national_id"])
    assert hist[0]["phone_token"] == _token(c["phone"]) and hist[0]["email_token"] == _token(c["email"])
    assert (hist[0]["birth_month"], hist[0]["birth_date_token"]) == ("1990-03-01", _token("1990-03-07"))
    assert (hist[2]["phone_token"], hist[2]["email_token"], hist[2]["birth_month"]) == (None, None, "1985-12-01")


def expect_attribute_events(rows, schema):
    assert [n for n, _ in schema][-2:] == ["customer_id", "attributed_by"]
    r = _by(rows, "event_id")
    want = {
        "E01": ("c1", "login"), "E02": ("c1", "session"), "E03": ("c1", "session"), "E04": ("c1", "device"),
        "E05": ("c2", "login"), "E06": ("c3", "login"), "E07": ("c3", "device"), "E08": (None, None),
        "E09": (None, None), "E10": ("c4", "login"), "E11": (None, None), "E11z": (None, None),
        "E12": ("c5", "login"), "E13": ("c5", "device"), "E14": ("c6", "login"), "E15": ("c6", "device"),
        "E16": ("c1", "login"), "E17": ("c1", "login"), "E18": ("c1", "session"),
    }
    assert {k: (v["customer_id"], v["attributed_by"]) for k, v in r.items()} == want


def expect_transactions_daily(rows, schema):
    assert dict(schema)["credits"] == "array<struct<counterparty:string,amount:decimal(18,2)>>"
    r = {(x["customer_id"], x["day"]): x for x in rows}
    assert sorted(r) == [("C1", "2025-07-01"), ("C1", "2026-05-10"), ("C1", "2026-06-29"), ("C1", "2026-06-30"),
                         ("C1", "2026-07-01"), ("C2", "2026-03-02")]  # local days; no row without a customer
    d = r[("C1", "2026-06-30")]
    assert (d["n"], d["n_debit"], d["n_credit"], d["inflow"], d["outflow"], d["max_debit"]) == \
        (5, 2, 3, "16030.00", "350.50", "250.50")
    assert (d["n_h23"], d["n_h00"], d["n_h09"], d["n_h10"]) == (1, 1, 1, 2)
    assert (d["n_online"], d["n_atm"], d["spend_travel"], d["spend_categorised"]) == (2, 1, "250.50", "350.50")
    assert d["credits"] == [["ACME", "8000.00"], ["ACME", "8000.00"], ["Bob", "30.00"]]  # sorted
    assert (r[("C1", "2026-06-29")]["n_h23"], r[("C2", "2026-03-02")]["n_h07"]) == (1, 1)


def expect_transactions_family(rows, schema):
    r = _by(rows, "customer_id")
    c1, c2 = r["C1"], r["C2"]
    assert (c1["txn_count_30d"], c1["txn_count_90d"], c1["txn_count_365d"]) == (6, 7, 8)
    assert (c1["inflow_90d"], c1["outflow_30d"], c1["outflow_365d"]) == ("24029.99", "390.5", "460.5")
    assert (c1["days_since_last_txn"], c1["active_days_90d"], c1["max_ticket_365d"]) == (0, 3, "250.50")
    assert float(c1["night_ratio_90d"]) == pytest.approx(3 / 7)
    assert float(c1["weekend_ratio_90d"]) == pytest.approx(1 / 7)  # Sunday 05-10
    assert float(c1["avg_ticket_90d"]) == pytest.approx(390.5 / 3)
    assert (c1["salary_months_90d"], float(c1["salary_amount"])) == (2, pytest.approx(23999.99 / 3))
    assert (c2["txn_count_90d"], c2["txn_count_365d"], c2["days_since_last_txn"]) == (0, 1, 120)
    assert float(c2["spend_share_fuel_365d"]) == 1.0 and c2["salary_months_90d"] is None
    # debits per month: 390.50 in June 2026, 70.00 in July 2025; C2 one month only
    assert float(c1["outflow_volatility_365d"]) == pytest.approx(160.25 / 230.25)
    assert float(c2["outflow_volatility_365d"]) == 0.0


def expect_transactions_family_from_rows(rows, schema):
    expect_transactions_family(rows, schema)


def expect_local_time(rows, schema):
    r = _by(rows, "i")
    for row in r.values():
        assert (row["sh"], row["ny"], row["in"]) == (row["sh_engine"], row["ny_engine"], row["in_engine"])
    assert r[0]["sh"] == "2026-06-30T00:30:00Z"  # wall-clock times, rendered as UTC strings
    assert (r[1]["ny"], r[2]["ny"]) == ("2026-03-08T01:59:59Z", "2026-03-08T03:00:00Z")  # spring forward
    assert (r[3]["ny"], r[4]["ny"]) == ("2026-11-01T01:30:00Z", "2026-11-01T01:30:00Z")  # fall back
    assert (r[5]["sh"], r[6]["sh"]) == ("1988-07-01T09:00:00Z", "1991-09-15T01:30:00Z")  # summer time then
    assert r[0]["in"] == "2026-06-29T22:00:00Z"


def expect_latest_snapshots(rows, schema):
    r = _by(rows, "account_id")
    assert {k: (v["snapshot_date"], v["balance"]) for k, v in r.items()} == \
        {"A1": ("2026-06-30", 200), "A2": ("2026-06-30", 310), "A3": ("2026-01-31", 50)}


EXPECTATIONS = {name.removeprefix("expect_"): fn for name, fn in globals().items() if name.startswith("expect_")}


@pytest.mark.unit
def test_every_case_has_expectations():
    assert sorted(EXPECTATIONS) == sorted(CASE_NAMES)


@pytest.mark.parametrize("name,side", [_param(n, e) for n in CASE_NAMES for e in ("sail", "jvm")])
def test_expected_values(results, name, side):
    res = _result(results, side, name)
    EXPECTATIONS[name](_rows(res), res["schema"])

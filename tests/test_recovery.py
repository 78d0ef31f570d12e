"""Service recovery (features.recovery, jobs.recovery, issue #26): who needs a service
contact now, each reason on planted rows and its near misses, priority and due dates, the
CRM service file (no PII, CSV-safe, byte-identical re-runs, changes), the churn warning or
its skip reason, and the outcomes of earlier listings."""

from __future__ import annotations

import csv
import json
from datetime import date, datetime, timedelta

import pytest

from c360.settings import RECOVERY_REASONS, ConfigError, load_settings
from features.profile import AsOf
from features.recovery import recovery_changes, recovery_outcomes, recovery_signals, service_recovery

AS_OF = date(2026, 6, 30)
AT = AsOf(AS_OF, "Asia/Shanghai")  # the day ends at 2026-06-30 16:00 UTC
FEEDBACK = "response_id string, customer_id string, survey_type string, score int, responded_at timestamp, " \
           "sentiment_label string"
CONTACTS = "interaction_id string, customer_id string, channel string, started_at timestamp, wait_seconds int"
COMPLAINTS = "complaint_id string, customer_id string, opened_at timestamp, closed_at timestamp, status string, " \
             "severity string, reopened boolean"
ATTRITION = "customer_id string, as_of_date date, risk_score double, risk_band string, model_version string"
TARGETS = {"call_center": 120.0, "branch": 900.0, "default": 600.0}
SLA = {"low": 5.0, "medium": 15.0, "high": 30.0}


def t(day: int, hour: int = 2, month: int = 6) -> datetime:
    return datetime(2026, month, day, hour)  # UTC


def _frames(spark):
    answers = spark.createDataFrame([
        ("F1", "D1", "nps", 5, t(20), None),          # detractor, no contact since: listed
        ("F2", "D2", "nps", 7, t(20), None),          # 7 is a passive: near miss
        ("F3", "D3", "nps", 3, t(20), None),          # detractor, contacted on the 22nd: followed up
        ("F4", "D4", "nps", 2, t(10), None),          # detractor earlier ...
        ("F5", "D4", "nps", 9, t(25), None),          # ... latest answer a promoter: not listed
        ("F6", "N1", "csat", 2, t(25), "negative"),   # negative comment, no contact since: listed
        ("F7", "N2", "csat", 2, t(20), "negative"),   # negative, contacted on the 21st
        ("F8", "N3", "csat", 3, t(20), "neutral"),    # not negative
    ], FEEDBACK)
    contacts = spark.createDataFrame([
        ("I1", "D3", "branch", t(22), 10), ("I2", "N2", "branch", t(21), 10),
        ("I3", "N1", "branch", t(24), 10),           # before N1's comment: not a follow-up
        ("I4", "W1", "call_center", t(10), 241), ("I5", "W1", "call_center", t(12), 300),  # 2 waits > 2 x 120
        ("I6", "W2", "call_center", t(10), 241), ("I7", "W2", "call_center", t(12), 240),  # 240 is not > 240
        ("I8", "W3", "branch", t(10), 1801), ("I9", "W3", "chatbot", t(11), 1201),        # branch, default
    ], CONTACTS)
    complaints = spark.createDataFrame([
        ("K1", "C1", t(20), None, "open", "low", False),          # ~10.6 days > 5: breach
        ("K2", "C2", t(26), None, "in_progress", "low", False),   # ~4.6 days: near miss
        ("K3", "C3", t(29), None, "open", "low", True),           # re-opened and open
        ("K4", "C4", t(1), t(28), "resolved", "low", True),       # re-opened once, closed again: not listed
        ("K5", "D1", t(1), None, "open", "high", False),          # ~29.6 days < 30: near miss ...
        ("K6", "D1", t(1), None, "open", "medium", False),        # ... 15 days for medium: breach
        ("K7", "C5", t(1), None, "open", None, False),            # no severity: no SLA
    ], COMPLAINTS)
    attrition = spark.createDataFrame([
        ("A1", AS_OF, 0.8, "high", "3"), ("A2", AS_OF, 0.5, "medium", "3"), ("D1", AS_OF, 0.1, "low", "3"),
    ], ATTRITION)
    return answers, contacts, complaints, attrition


@pytest.fixture(scope="module")
def conf(settings):
    return settings.service_recovery


def _listed(spark, conf, with_attrition=True):
    answers, contacts, complaints, attrition = _frames(spark)
    attrition = attrition if with_attrition else None
    signals = recovery_signals(answers, contacts, complaints, attrition, AT, conf, TARGETS, SLA)
    return {r["customer_id"]: r.asDict() for r in service_recovery(signals, attrition, AS_OF, conf).collect()}


def test_each_reason_fires_on_its_planted_rows_and_not_on_near_misses(spark, conf):
    rows = _listed(spark, conf)
    assert {c: r["reason_codes"] for c, r in rows.items()} == {
        "D1": ["complaint_sla_breach", "detractor"], "N1": ["negative_comment"], "C1": ["complaint_sla_breach"],
        "C3": ["complaint_reopened"], "W1": ["repeated_long_waits"], "W3": ["repeated_long_waits"],
        "A1": ["high_attrition_risk"]}
    assert rows["D1"]["nps_score"] == 5 and rows["D1"]["complaint_ids"] == ["K6"]
    assert rows["C3"]["complaint_ids"] == ["K3"] and rows["W1"]["long_waits"] == 2
    assert rows["N1"]["nps_score"] is None and rows["N1"]["complaint_ids"] is None


def test_priority_due_date_and_texts(spark, conf):
    rows = _listed(spark, conf)
    r = conf.reasons
    d1 = rows["D1"]
    assert d1["priority"] == r["complaint_sla_breach"].points + r["detractor"].points == 80
    assert d1["due_date"] == AS_OF + timedelta(days=min(r["complaint_sla_breach"].due_days, r["detractor"].due_days))
    assert d1["reason_text_zh"] == r["complaint_sla_breach"].zh + r["detractor"].zh
    assert d1["reason_text_en"] == r["complaint_sla_breach"].en + " " + r["detractor"].en
    assert rows["W1"]["priority"] == r["repeated_long_waits"].points
    assert rows["W1"]["due_date"] == AS_OF + timedelta(days=r["repeated_long_waits"].due_days)
    order = sorted(rows, key=lambda c: (-rows[c]["priority"], rows[c]["due_date"], c))
    assert order[:3] == ["D1", "C1", "C3"]


def test_churn_columns_with_and_without_an_attrition_model(spark, conf):
    rows = _listed(spark, conf)
    # every listed customer with a score carries its band, whatever their reason
    assert (rows["D1"]["attrition_band"], rows["D1"]["attrition_score"]) == ("low", 0.1)
    assert (rows["A1"]["attrition_band"], rows["A1"]["attrition_model_version"]) == ("high", "3")
    assert rows["N1"]["attrition_band"] is None
    without = _listed(spark, conf, with_attrition=False)
    assert set(without) == set(rows) - {"A1"}
    assert all(r["attrition_band"] is None and r["attrition_score"] is None for r in without.values())


def test_no_consent_filter_and_no_offer_columns(spark, conf):
    """The transform takes no profile (consent) and returns no product, offer or score of an offer."""
    cols = set(service_recovery(recovery_signals(*_frames(spark), AT, conf, TARGETS, SLA), None, AS_OF,
                                conf).columns)
    assert not {c for c in cols if "product" in c or "offer" in c or "consent" in c}


def test_attrition_band_threshold_is_configurable(spark, conf):
    medium = conf.model_copy(update={"attrition_bands": ["medium", "high"]})
    rows = _listed(spark, medium)
    assert rows["A2"]["reason_codes"] == ["high_attrition_risk"]


def test_changes_between_two_lists(spark):
    schema = "customer_id string, reason_codes string, priority int, due_date date"
    d = date(2026, 7, 1)
    prev = spark.createDataFrame([("A", "detractor", 30, d), ("B", "detractor", 30, d), ("C", "x", 1, d)], schema)
    cur = spark.createDataFrame([("A", "detractor", 30, d), ("B", "complaint_sla_breach|detractor", 80, d),
                                 ("E", "x", 1, d)], schema)
    got = {(r["change"], r["customer_id"]) for r in recovery_changes(cur, prev).collect()}
    assert got == {("changed", "B"), ("withdrawn", "C"), ("new", "E")}
    assert {r["change"] for r in recovery_changes(cur, None).collect()} == {"new"}


def test_outcomes_of_an_earlier_listing(spark, conf):
    """Listed on 2026-06-30; measured at 2026-07-31 (answers and contacts after the listing day)."""
    later = date(2026, 7, 31)
    at = AsOf(later, "Asia/Shanghai")
    listed = spark.createDataFrame([
        ("D1", AS_OF, ["complaint_sla_breach", "detractor"], 5, ["K1"]),
        ("D2", AS_OF, ["detractor"], 6, None),
        ("N1", AS_OF, ["negative_comment"], None, None),
        ("W1", AS_OF, ["repeated_long_waits"], None, None),
        ("W2", AS_OF, ["repeated_long_waits"], None, None),
        ("A1", AS_OF, ["high_attrition_risk"], None, None),
        ("A2", AS_OF, ["high_attrition_risk"], None, None),
    ], "customer_id string, as_of_date date, reason_codes array<string>, nps_score int, complaint_ids array<string>")
    answers = spark.createDataFrame([
        ("F1", "D1", "nps", 8, t(10, month=7), None),      # higher than 5: improved
        ("F2", "D2", "nps", 6, t(10, month=7), None),      # not higher than 6
        ("F3", "D2", "nps", 10, t(30, 10), None),          # on the listing day itself (bank time): not later
        ("F4", "N1", "csat", 2, t(5, month=7), "negative"),
    ], FEEDBACK)
    contacts = spark.createDataFrame([
        ("I1", "D1", "branch", t(5, month=7), 10),
        ("I2", "W1", "call_center", t(2, month=7), 30),     # a short wait: improved
        ("I3", "W2", "call_center", t(2, month=7), 30), ("I4", "W2", "call_center", t(3, month=7), 500),
        ("I5", "A1", "branch", t(31, 17, month=7), 10),     # after the end of as_of: not known
    ], CONTACTS)
    complaints = spark.createDataFrame([("K1", "D1", t(1), t(3, month=7), "resolved", "medium", False)], COMPLAINTS)
    attrition = spark.createDataFrame([
        ("A1", date(2026, 7, 15), 0.4, "medium", "3"), ("A1", date(2026, 7, 31), 0.35, "medium", "3"),
        ("A2", date(2026, 7, 15), 0.2, "low", "3"), ("A2", date(2026, 7, 20), 0.7, "high", "3"),
    ], ATTRITION)
    out = {r["reason"]: (r["listed"], r["followed_up"], r["improved"], r["improvement_rate"]) for r in
           recovery_outcomes(listed, answers, contacts, complaints, attrition, at, conf, TARGETS).collect()}
    assert out == {
        "complaint_sla_breach": (1, 1, 1, 1.0), "detractor": (2, 1, 1, 0.5), "negative_comment": (1, 0, 0, 0.0),
        "repeated_long_waits": (2, 2, 1, 0.5), "high_attrition_risk": (2, 0, 1, 0.5)}


@pytest.mark.unit
@pytest.mark.parametrize(("edit", "message"), [
    ("service_recovery:\n  long_wait_min_count: 1\n", "long_wait_min_count"),
    ("service_recovery:\n  attrition_bands: [severe]\n", "attrition_bands"),
    ("service_recovery:\n  reasons:\n    detractor: {points: 0, due_days: 1, zh: 低分, en: low}\n", "points"),
])
def test_invalid_recovery_configuration_fails_at_start_up(tmp_path, edit, message):
    import shutil

    from c360.settings import DEFAULT_CONF_DIR

    for p in DEFAULT_CONF_DIR.glob("*.yaml"):
        if p.name != "local.yaml":
            shutil.copy(p, tmp_path / p.name)
    (tmp_path / "local.yaml").write_text(edit, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_settings(tmp_path, environ={})


@pytest.mark.unit
def test_every_reason_has_points_due_days_and_text(settings):
    assert set(settings.service_recovery.reasons) == set(RECOVERY_REASONS)


# ---------------------------------------------------------------------------------------
# the step on a small generated bank: gold table, service file, re-run, churn or skip

HOSTILE_ID = '=HYPERLINK("http://x","y")'  # a delivered complaint id a spreadsheet would run
EARLIER = AS_OF - timedelta(days=14)


@pytest.fixture(scope="module")
def recovery_lake(spark, settings, banks, tmp_path_factory):
    """A small generated bank (500 customers, 120 days) with an overdue complaint of a
    hostile id; customers, interactions, feedback and complaints ingested into silver.
    Without gold/attrition_risk (no attrition model)."""
    import io
    import shutil
    import warnings

    from helpers import write_landing

    from c360.contract import SOURCES
    from jobs import ingest, silver

    root = tmp_path_factory.mktemp("recovery")
    shutil.copytree(banks.landing(500, 120, AS_OF, 26).landing, root / "landing")
    s = settings.with_paths(landing=root / "landing", lake=root / "lake")
    first = min((s.landing / "customers").glob("*/*.csv")).read_text(encoding="utf-8").splitlines()
    customer = next(csv.DictReader(first))["customer_id"]
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(SOURCES["complaints"].column_names)
    row = dict(complaint_id=HOSTILE_ID, customer_id=customer, opened_at="2026-06-01T10:00:00", channel="branch",
               category="fees", severity="low", status="open", description="手续费太高了")
    w.writerow([row.get(c, "") for c in SOURCES["complaints"].column_names])
    write_landing(s.landing, "complaints", "2026-06-30", "extra.csv", out.getvalue())
    ingest.run(spark, s, as_of=AS_OF, sources=["customers", "interactions", "feedback", "complaints"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # development PII key
        silver.run(spark, s)
    return s, customer


def _gold_rows(spark, s, day=AS_OF):
    from c360 import lake

    return {r["customer_id"]: r.asDict() for r in lake.read(spark, lake.table_path(s.lake, "gold", "service_recovery"))
            .where(f"as_of_date = DATE'{day.isoformat()}'").collect()}


def _folder_bytes(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_the_step_lists_customers_writes_a_safe_service_file_and_reruns_identically(spark, recovery_lake):
    from jobs import export
    from jobs.pipeline import STEP_INPUTS, run_step

    s, customer = recovery_lake
    first = run_step(spark, s, "recovery", EARLIER).metrics
    result = run_step(spark, s, "recovery", AS_OF).metrics
    rows = _gold_rows(spark, s)
    # the planted complaint: open 29 days, low severity (5-day SLA)
    assert "complaint_sla_breach" in rows[customer]["reason_codes"] and HOSTILE_ID in rows[customer]["complaint_ids"]
    assert sum(result["by_reason"].values()) >= len(rows) > 0
    for code in ("complaint_sla_breach", "detractor", "negative_comment"):
        assert result["by_reason"][code] > 0, code  # the generated bank has some of each
    # no attrition model: the churn columns are empty, the reason is said, other reasons list customers
    assert "gold/attrition_risk has no scores" in result["attrition"]["skipped"]
    assert all(r["attrition_band"] is None for r in rows.values())
    assert result["by_reason"]["high_attrition_risk"] == 0

    # consent plays no part: customers without marketing consent are listed too
    from c360 import lake
    no_consent = {r["customer_id"] for r in lake.read(spark, lake.table_path(s.lake, "silver", "customers"))
                  .where("NOT marketing_consent").select("customer_id").collect()}
    assert no_consent & set(rows)

    folder = export.service_export_root(s) / AS_OF.isoformat()
    assert folder == s.lake / "marketing" / "exports" / "service" / AS_OF.isoformat()
    assert result["path"] == str(folder) and result["previous_export"] == EARLIER.isoformat()
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["attrition"] == result["attrition"] and manifest["by_reason"] == result["by_reason"]
    for name, meta in manifest["files"].items():
        assert export.sha256(folder / name) == meta["sha256"]
    with open(folder / "service_contacts.csv", encoding="utf-8", newline="") as f:
        lines = list(csv.DictReader(f))
    header = list(lines[0])
    assert header == manifest["columns"]["service_contacts"]
    assert not [c for c in header if export.is_pii_column(c) or any(
        p in c for p in ("name", "phone", "email", "birth", "national", "id_number", "address", "product", "offer"))]
    assert len(lines) == len(rows) == manifest["files"]["service_contacts.csv"]["rows"]
    # highest priority first, then due date, then customer
    keys = [(-int(r["priority"]), r["due_date"], r["customer_id"]) for r in lines]
    assert keys == sorted(keys)
    # the hostile id is a text cell, neutralised, and did not split the row
    cell = next(r["complaint_ids"] for r in lines if r["customer_id"] == customer)
    assert cell.startswith("'=HYPERLINK(") and HOSTILE_ID in cell
    assert all(not (v or "").startswith(("=", "+", "-", "@")) for r in lines for v in r.values())
    # changes against the earlier file: every customer is new, changed, kept or withdrawn
    earlier = set(_gold_rows(spark, s, EARLIER))
    with open(folder / "changes.csv", encoding="utf-8", newline="") as f:
        changes = {(r["change"], r["customer_id"]) for r in csv.DictReader(f)}
    assert {c for k, c in changes if k == "new"} == set(rows) - earlier
    assert {c for k, c in changes if k == "withdrawn"} == earlier - set(rows)
    assert first["rows"] == len(earlier)

    # a re-run: the same bytes, manifest included
    before = _folder_bytes(folder)
    again = run_step(spark, s, "recovery", AS_OF).metrics
    assert _folder_bytes(folder) == before and again["files"] == result["files"]
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no staging left
    assert "recovery" in STEP_INPUTS


def test_the_churn_warning_reaches_the_file_when_attrition_is_scored(spark, recovery_lake):
    """gold/attrition_risk at as_of (as the score step writes it with an attrition champion):
    every listed customer carries its band and score, and high bands are listed."""
    from c360 import lake
    from jobs import export
    from jobs.pipeline import run_step
    from jobs.score import ATTRITION_SCHEMA

    s, customer = recovery_lake
    ids = sorted(r["customer_id"] for r in lake.read(spark, lake.table_path(s.lake, "silver", "customers"))
                 .select("customer_id").distinct().collect())
    risk = [(c, AS_OF, 0.9 if i % 10 == 0 else 0.1, "high" if i % 10 == 0 else "low", "7") for i, c in enumerate(ids)]
    lake.write_partition(spark.createDataFrame(risk, ATTRITION_SCHEMA),
                         lake.table_path(s.lake, "gold", "attrition_risk"), "as_of_date", export.partition(AS_OF),
                         schema=ATTRITION_SCHEMA)
    result = run_step(spark, s, "recovery", AS_OF).metrics
    rows = _gold_rows(spark, s)
    high = {c for c, _, _, band, _ in risk if band == "high"}
    assert {k: v for k, v in result["attrition"].items() if k != "reasons_skipped"} == \
        {"model_version": "7", "bands": ["high"]}
    # no attrition champion in this lake to explain the scores: said, and the reasons are empty
    assert result["attrition"]["reasons_skipped"].startswith("no attrition champion to explain the scores")
    assert all(r["attrition_reason_codes"] is None for r in rows.values())
    assert result["by_reason"]["high_attrition_risk"] == len(high)
    assert high <= set(rows) and all(r["attrition_band"] in ("high", "low") for r in rows.values())
    assert rows[customer]["attrition_score"] in (0.9, 0.1)
    with open(export.service_export_root(s) / AS_OF.isoformat() / "service_contacts.csv", encoding="utf-8",
              newline="") as f:
        lines = list(csv.DictReader(f))
    assert {r["attrition_band"] for r in lines} <= {"high", "low"} and all(r["attrition_score"] for r in lines)
    # outcomes of the earlier listing were measured (listed counts per reason)
    out = lake.read(spark, lake.table_path(s.lake, "gold", "service_recovery_outcomes")) \
        .where(f"as_of_date = DATE'{EARLIER.isoformat()}'").collect()
    earlier = _gold_rows(spark, s, EARLIER)
    assert {r["reason"]: r["listed"] for r in out} == {
        code: n for code in RECOVERY_REASONS if (n := sum(code in r["reason_codes"] for r in earlier.values()))}
    assert all(0 <= r["improved"] <= r["listed"] for r in out)


def test_the_churn_warning_carries_each_customers_own_top_reasons(spark, recovery_lake, monkeypatch):
    """With an attrition champion (a tiny one: deposit balance and age) that scored as_of,
    each warned customer's reasons are the templated features with the largest positive
    contribution to their own risk: what models.scoring.explain gives on the exact
    contributions (age has no template, so it is never read out)."""
    import numpy as np
    import pandas as pd
    from test_scoring import register_champion, train_tiny

    from c360 import lake
    from jobs import export
    from jobs.pipeline import run_step
    from jobs.score import ATTRITION_SCHEMA
    from models.frame import prepare
    from models.scoring import explain

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    s, _ = recovery_lake
    ids = sorted(r["customer_id"] for r in lake.read(spark, lake.table_path(s.lake, "silver", "customers"))
                 .select("customer_id").distinct().collect())
    rng = np.random.default_rng(3)
    profile = pd.DataFrame({"customer_id": ids, "deposit_balance": rng.uniform(0, 1e5, len(ids)),
                            "age": rng.integers(18, 80, len(ids)).astype("float64")})
    booster, spec = train_tiny("attrition")
    version = register_champion(s, "attrition_risk", booster, spec)
    x = prepare(profile[["deposit_balance", "age"]], spec)
    risk = booster.predict(x)
    contrib = booster.predict(x, pred_contrib=True)
    lake.write_partition(spark.createDataFrame(profile.assign(as_of_date=AS_OF)),
                         lake.table_path(s.lake, "gold", "customer_360"), "as_of_date", export.partition(AS_OF))
    bands = ["high" if p >= 0.6 else "medium" if p >= 0.3 else "low" for p in risk]
    lake.write_partition(spark.createDataFrame([(c, AS_OF, float(p), b, version) for c, p, b in zip(ids, risk, bands)],
                                               ATTRITION_SCHEMA), lake.table_path(s.lake, "gold", "attrition_risk"),
                         "as_of_date", export.partition(AS_OF), schema=ATTRITION_SCHEMA)

    result = run_step(spark, s, "recovery", AS_OF).metrics
    assert result["attrition"]["reasons"].startswith(f"exact contributions of attrition_risk version {version}")
    rows = _gold_rows(spark, s)
    r = s.service_recovery.attrition_reasons
    templates = {k: v.model_dump() for k, v in r.templates.items()}
    expected = {c: explain(["deposit_balance", "age"], contrib[i][:2], [profile.deposit_balance[i], profile.age[i]],
                           templates, r.generic.model_dump(), r.per_recommendation, r.min_contribution)
                for i, c in enumerate(ids) if bands[i] == "high"}
    assert expected and set(expected) <= set(rows)
    got = {c: (rows[c]["attrition_reason_codes"], rows[c]["attrition_reason_text_zh"],
               rows[c]["attrition_reason_text_en"]) for c in expected}
    assert got == {c: tuple(e) for c, e in expected.items()}
    assert any(codes == ["deposit_balance"] for codes, _, _ in got.values())
    # customers listed for another reason, not warned: no churn reasons
    assert all(rows[c]["attrition_reason_codes"] is None for c in rows if c not in expected)
    with open(export.service_export_root(s) / AS_OF.isoformat() / "service_contacts.csv", encoding="utf-8",
              newline="") as f:
        lines = {x["customer_id"]: x for x in csv.DictReader(f)}
    some = next(c for c, (codes, _, _) in got.items() if codes == ["deposit_balance"])
    assert lines[some]["attrition_reasons_en"] == r.templates["deposit_balance"].en


def test_erasure_finds_and_rewrites_the_service_file(spark, recovery_lake):
    """`c360 erase` finds the service folder by its manifest (jobs.erase.export_folders) and
    rewrites it without the customer: CSV, Parquet and changes, with the manifest's counts
    and checksums."""
    import pyarrow.parquet as pq

    from jobs import erase, export

    s, customer = recovery_lake
    folder = export.service_export_root(s) / AS_OF.isoformat()
    assert folder in erase.export_folders(s.lake)
    before = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    with open(folder / "changes.csv", encoding="utf-8", newline="") as f:
        in_changes = sum(r["customer_id"] == customer for r in csv.DictReader(f))
    found = erase.erase_export(folder, customer, "req-1", rewrite=True)
    assert found == {"service_contacts.csv": 1, "service_contacts.parquet": 1,
                     **({"changes.csv": in_changes} if in_changes else {})}
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    with open(folder / "service_contacts.csv", encoding="utf-8", newline="") as f:
        ids = [r["customer_id"] for r in csv.DictReader(f)]
    assert customer not in ids and customer not in pq.read_table(folder / "service_contacts.parquet") \
        .column("customer_id").to_pylist()
    assert manifest["files"]["service_contacts.csv"]["rows"] == len(ids) == \
        before["files"]["service_contacts.csv"]["rows"] - 1
    for name, meta in manifest["files"].items():
        assert export.sha256(folder / name) == meta["sha256"]
    assert manifest["erasure_requests"] == ["req-1"]


# ------------------------------------------------------------------ the funnel in service.html

def test_the_service_report_shows_the_recovery_funnel(settings):
    """One row per reason: listed today, listed in the outcome window before, followed up,
    improved and the rate, exactly as given; a reason without listings has no rate."""
    from test_kpis import _Rows

    from c360.service_report import render_service_report

    funnel = [dict(reason="complaint_sla_breach", listed_now=4, listed=10, followed_up=7, improved=3,
                   improvement_rate=0.3),
              dict(reason="detractor", listed_now=0, listed=0, followed_up=0, improved=0, improvement_rate=None)]
    data = {"experience_kpis": [], "service_kpis": [], "complaint_kpis": [], "topic_kpis": [], "complaint_trend": [],
            "uplift": [], "recovery": funnel}
    page = render_service_report(data, settings, AS_OF)
    assert _Rows(page)["recovery-row"] == [["complaint_sla_breach", "4", "10", "7", "3", "30.0%"],
                                           ["detractor", "0", "0", "0", "0", "—"]]
    assert f"listed in the {settings.service_recovery.outcome_days} days before" in page
    assert "Not available yet" not in page


def test_the_recovery_step_writes_the_funnel_into_the_service_report(spark, recovery_lake):
    """After the step the day's service.html holds the funnel: today's counts per reason as
    the step counted them, and the earlier listing's outcomes as the outcomes table holds them."""
    from test_kpis import _Rows

    from c360 import lake
    from c360.report import report_path
    from jobs.pipeline import run_step

    s, _ = recovery_lake
    run_step(spark, s, "recovery", EARLIER)
    result = run_step(spark, s, "recovery", AS_OF).metrics
    page = (report_path(s, AS_OF, "service.html")).read_text(encoding="utf-8")
    rows = {r[0]: r[1:] for r in _Rows(page)["recovery-row"]}
    assert set(rows) == set(s.service_recovery.reasons)
    outcomes = {r["reason"]: r for r in lake.read(spark, lake.table_path(s.lake, "gold", "service_recovery_outcomes"))
                .where(f"as_of_date = DATE'{EARLIER.isoformat()}'").collect()}
    assert outcomes  # the earlier listing has outcomes
    for reason, cells in rows.items():
        assert cells[0] == f"{result['by_reason'][reason]:,}", reason
        o = outcomes.get(reason)
        assert cells[1:4] == ([f"{o['listed']:,}", f"{o['followed_up']:,}", f"{o['improved']:,}"] if o
                              else ["0", "0", "0"]), reason
    assert sum(result["by_reason"].values()) > 0

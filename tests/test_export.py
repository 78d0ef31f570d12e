"""CRM export: files, consent, manifest checksums, byte-identical re-runs, changes between
two as_of dates, outcomes of past offers, no PII."""

from __future__ import annotations

import csv
import hashlib
import json
from datetime import date, datetime, timedelta

import pyarrow.parquet as pq
import pytest
from pyspark.sql import functions as F
from pyspark.sql import types as T

from c360 import lake
from jobs import export
from jobs.score import RECOMMENDATIONS_SCHEMA

D1, D2 = date(2026, 5, 31), date(2026, 6, 30)


def local(d: date, hour: int = 12) -> datetime:
    """``hour`` o'clock in Shanghai on ``d`` as the UTC instant the lake stores."""
    return datetime(d.year, d.month, d.day, hour) - timedelta(hours=8)


# customer_id -> marketing consent at D1, D2
CONSENT = {"C1": (True, True), "C2": (True, True), "C3": (False, False), "C4": (True, True), "C5": (True, True)}
RECS = {
    D1: [("C1", 1, "SV", 0.9), ("C1", 2, "BF", 0.5), ("C2", 1, "CA", 0.7), ("C3", 1, "SV", 0.8),
         ("C4", 1, "CC", 0.6),
         ("C2", 4, "SV", 0.3)],                         # rank 4: kept in gold, not exported (top 3)
    D2: [("C1", 1, "SV", 0.9),                          # unchanged
         ("C1", 2, "EF", 0.4),                          # new (BF withdrawn)
         ("C2", 1, "CA", 0.75),                         # score changed
         ("C3", 1, "SV", 0.8),                          # no consent: never exported
         ("C4", 1, "SV", 0.65), ("C4", 2, "CC", 0.6),   # SV new, CC rank changed
         ("C1", 4, "CC", 0.1),                          # rank 4: not exported
         ("C5", 1, "SV", 0.5), ("C5", 2, "CA", 0.3)],   # control group (holdout): never exported
}
HOLDOUT = {"C5"}


def raw(score: float) -> float:
    """The model's raw score of a recommendation (any scale; here 4 * score - 2)."""
    return round(4 * score - 2, 6)


VALUES = {"CC": 2.0}  # scoring.product_value: every other product 1


def value(product: str, score: float) -> float:
    """A recommendation's expected value (calibrated score x the product's value)."""
    return score * VALUES.get(product, 1.0)


# D1 was scored before gold/recommendations had expected_value: its partition lacks it
OLD_SCHEMA = T.StructType([f for f in RECOMMENDATIONS_SCHEMA.fields if f.name not in ("expected_value", "holdout")])
CATALOG = [("CA", "借记卡活期账户", "current_account", "R1", 16, 120, True),
           ("SV", "智能活期宝", "savings", "R1", 18, 120, True),
           ("BF", "稳利债券基金", "fund", "R3", 18, 80, True),
           ("EF", "均衡混合型基金", "fund", "R4", 18, 75, True),
           ("CC", "标准信用卡, 白金", "credit_card", None, 18, 65, True)]
OFFERS = [  # offer_id, customer, product, sent_at, outcome, outcome_at
    ("O1", "C1", "SV", local(date(2026, 6, 5)), "sent", None),
    ("O1", "C1", "SV", local(date(2026, 6, 5)), "converted", local(date(2026, 6, 10))),
    ("O2", "C1", "BF", local(date(2026, 6, 7)), "sent", None),
    ("O2", "C1", "BF", local(date(2026, 6, 7)), "declined", local(date(2026, 6, 8))),
    ("O3", "C1", "SV", local(date(2026, 5, 20)), "sent", None),             # before the recommendation
    ("O4", "C3", "SV", local(date(2026, 6, 5)), "converted", local(date(2026, 6, 6))),  # no consent at D1
    ("O5", "C4", "CC", local(date(2026, 7, 2)), "sent", None),              # after the validity window
]


def write_world(spark, s) -> None:
    c360 = lake.table_path(s.lake, "gold", "customer_360")
    recs = lake.table_path(s.lake, "gold", "recommendations")
    for i, d in enumerate((D1, D2)):
        rows = [(c, d, v[i], 40, "R3") for c, v in CONSENT.items()]
        lake.write_partition(spark.createDataFrame(rows, "customer_id string, as_of_date date, "
                                                         "marketing_consent boolean, age bigint, risk_tolerance string"),
                             c360, "as_of_date", export.partition(d))
        rows = [(c, d, r, p, sc, raw(sc), f"理由{p}", f"reason, {p}", "3", value(p, sc), c in HOLDOUT)
                for c, r, p, sc in RECS[d]]
        df = spark.createDataFrame(rows, "customer_id string, as_of_date date, rank int, product_code string, "
                                         "score double, raw_score double, reason_text_zh string, "
                                         "reason_text_en string, model_version string, expected_value double, "
                                         "holdout boolean") \
            .withColumn("reason_codes", F.array(F.lit("views_product_90d")))
        if d == D1:
            lake.write_partition(df.drop("expected_value", "holdout"), recs, "as_of_date", export.partition(d), schema=OLD_SCHEMA)
        else:
            lake.write_partition(df, recs, "as_of_date", export.partition(d), schema=RECOMMENDATIONS_SCHEMA)
    lake.write_partition(spark.createDataFrame([("C1", D2, 2, "gold"), ("C4", D2, 1, "mass")],
                                               "customer_id string, as_of_date date, persona_id int, value_tier string"),
                         lake.table_path(s.lake, "gold", "customer_segments"), "as_of_date", export.partition(D2))
    lake.overwrite(spark.createDataFrame(CATALOG, "product_code string, product_name string, family string, "
                                                  "risk_level string, min_age int, max_age int, active boolean"),
                   lake.table_path(s.lake, "silver", "product_catalog"))
    lake.overwrite(spark.createDataFrame(OFFERS, "offer_id string, customer_id string, product_code string, "
                                                 "sent_at timestamp, outcome string, outcome_at timestamp")
                   .selectExpr("offer_id", "customer_id", "product_code", "'sms' AS channel", "sent_at", "outcome",
                               "outcome_at"),
                   lake.table_path(s.lake, "silver", "campaign_responses"))


def files(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def read_csv(path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def exported(settings, spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    s = settings.with_paths(landing=root / "landing", lake=root / "lake")
    write_world(spark, s)
    m1 = export.run(spark, s, D1, run_id="r1")
    m2 = export.run(spark, s, D2, run_id="r2")
    first = files(export.export_root(s) / D2.isoformat())
    m2_again = export.run(spark, s, D2, run_id="r3")
    return {"settings": s, "m1": m1, "m2": m2, "m2_again": m2_again, "first": first}


def test_exports_live_in_the_marketing_zone(exported):
    s = exported["settings"]
    root = s.lake / "marketing" / "exports" / "crm"
    assert export.export_root(s) == root and export.export_root(s.lake) == root
    assert exported["m2"]["path"] == str(root / D2.isoformat())
    assert export.exports(s) == [(D1, root / D1.isoformat()), (D2, root / D2.isoformat())]
    assert not (s.lake / "exports").exists()


def test_export_files_and_consent_filter(exported):
    s = exported["settings"]
    folder = export.export_root(s) / D2.isoformat()
    assert sorted(p.name for p in folder.iterdir()) == ["changes.csv", "manifest.json", "recommendations.csv",
                                                        "recommendations.parquet"]
    assert not [p for p in export.export_root(s).iterdir() if p.name.startswith(".")]  # no staging left
    text = (folder / "recommendations.csv").read_text(encoding="utf-8")
    assert text.splitlines()[0] == ",".join(export.EXPORT_COLUMNS)
    rows = read_csv(folder / "recommendations.csv")
    assert [(r["customer_id"], r["rank"], r["product_code"]) for r in rows] == [
        ("C1", "1", "SV"), ("C1", "2", "EF"), ("C2", "1", "CA"), ("C4", "1", "SV"), ("C4", "2", "CC")]
    assert "C3" not in text  # no marketing consent: never exported
    assert rows[0] == {"customer_id": "C1", "product_code": "SV", "product_name": "智能活期宝", "rank": "1",
                       "score": "0.9", "raw_score": "1.6", "expected_value": "0.9", "reason_text_zh": "理由SV",
                       "reason_text_en": "reason, SV", "persona": "2", "value_tier": "gold", "valid_until": "2026-07-30"}
    assert rows[2]["persona"] == "" and rows[2]["value_tier"] == ""  # no segment row: null
    assert rows[4]["product_name"] == "标准信用卡, 白金"  # quoted, round-trips
    table = pq.read_table(folder / "recommendations.parquet")
    assert table.column_names == export.EXPORT_COLUMNS and table.num_rows == 5
    assert table.column("customer_id").to_pylist() == ["C1", "C1", "C2", "C4", "C4"]
    assert table.column("valid_until").to_pylist()[0] == date(2026, 7, 30)
    assert table.column("raw_score").to_pylist() == [raw(0.9), raw(0.4), raw(0.75), raw(0.65), raw(0.6)]
    # expected value: score x the product's value (CC 2)
    assert table.column("expected_value").to_pylist() == [0.9, 0.4, 0.75, 0.65, 1.2]
    # D1 was scored before expected_value existed: read as empty, the export is made all the same
    old = read_csv(export.export_root(s) / D1.isoformat() / "recommendations.csv")
    assert len(old) == 4 and {r["expected_value"] for r in old} == {""}
    assert list(old[0])[:7] == ["customer_id", "product_code", "product_name", "rank", "score", "raw_score",
                                "expected_value"]
    # gold keeps C1's rank 4 (CC); the export keeps ranks 1..export.top_n (3)
    assert exported["settings"].export.top_n == 3 and ("C1", "4", "CC") not in [
        (r["customer_id"], r["rank"], r["product_code"]) for r in rows]
    assert exported["m2"]["excluded_no_consent"] == 1 and exported["m2"]["rows"] == 5
    assert exported["m2"]["recommendations"] == 8  # of the top 3 (9 rows in gold)


def test_the_control_group_stays_in_gold_and_is_never_exported(spark, exported):
    """C5 is held out (gold/recommendations holdout = true): kept in gold, in no export file
    (nor in changes.csv), counted in the manifest and the run summary; not counted as
    recommended in the outcomes."""
    s = exported["settings"]
    gold = lake.read(spark, lake.table_path(s.lake, "gold", "recommendations"))
    assert sorted((r.customer_id, r.product_code) for r in gold.where("holdout").collect()) == \
        [("C5", "CA"), ("C5", "SV")]
    assert gold.where(f"as_of_date = DATE'{D1}'").where("holdout IS NOT NULL").count() == 0  # scored before it
    folder = export.export_root(s) / D2.isoformat()
    for name in ("recommendations.csv", "changes.csv"):
        assert "C5" not in (folder / name).read_text(encoding="utf-8")
    assert "C5" not in pq.read_table(folder / "recommendations.parquet").column("customer_id").to_pylist()
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["holdout"] == {"customers": 1, "recommendations": 2} == exported["m2"]["holdout"]
    assert exported["m1"]["holdout"] == {"customers": 0, "recommendations": 0}  # D1: no holdout column
    again = json.loads((export.export_root(s) / D2.isoformat() / "manifest.json").read_text(encoding="utf-8"))
    assert again == manifest  # re-run (m2_again): the same manifest
    # outcomes: had C1 been held out on D1, its SV and BF would not count as recommended
    # (nor as treated): they would be the control group's
    d1 = gold.where(f"as_of_date = DATE'{D1}'").withColumn("holdout", F.col("customer_id") == "C1")
    c360 = lake.read(spark, lake.table_path(s.lake, "gold", "customer_360"))
    responses = lake.read(spark, lake.table_path(s.lake, "silver", "campaign_responses"))
    out = export.outcomes(d1.where("rank <= 3"), c360, None, responses, D2, s.export, "Asia/Shanghai")
    assert sorted((r.product_code, r.recommended, r.treated, r.holdout) for r in out.collect()) == \
        [("BF", 0, 0, 1), ("CA", 1, 1, 0), ("CC", 1, 1, 0), ("SV", 0, 0, 1)]


def test_manifest_checksums_match_files(exported):
    folder = export.export_root(exported["settings"]) / D2.isoformat()
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert set(manifest["files"]) == {"recommendations.csv", "recommendations.parquet", "changes.csv"}
    for name, meta in manifest["files"].items():
        data = (folder / name).read_bytes()
        assert meta["sha256"] == hashlib.sha256(data).hexdigest() and meta["bytes"] == len(data)
    assert (manifest["as_of"], manifest["row_count"], manifest["model_version"], manifest["schema_version"]) == \
        (D2.isoformat(), 5, "3", 3)
    assert manifest["top_n"] == 3 and manifest["columns"]["recommendations"] == export.EXPORT_COLUMNS
    assert manifest["previous_export"] == D1.isoformat()
    assert manifest["files"]["recommendations.csv"]["rows"] == 5


def test_rerun_is_byte_identical(exported):
    again = files(export.export_root(exported["settings"]) / D2.isoformat())
    assert again.keys() == exported["first"].keys()
    for name, data in again.items():
        assert data == exported["first"][name], name
    assert exported["m2_again"]["files"] == exported["m2"]["files"]


def test_changes_between_two_exports(exported):
    s = exported["settings"]
    first = read_csv(export.export_root(s) / D1.isoformat() / "changes.csv")
    assert {r["change"] for r in first} == {"new"} and len(first) == 4  # no earlier export; C3 left out
    rows = read_csv(export.export_root(s) / D2.isoformat() / "changes.csv")
    got = [(r["change"], r["customer_id"], r["product_code"], r["rank"], r["score"], r["previous_rank"],
            r["previous_score"]) for r in rows]
    assert got == [
        ("withdrawn", "C1", "BF", "", "", "2", "0.5"),
        ("new", "C1", "EF", "2", "0.4", "", ""),
        ("changed", "C2", "CA", "1", "0.75", "1", "0.7"),
        ("changed", "C4", "CC", "2", "0.6", "1", "0.6"),
        ("new", "C4", "SV", "1", "0.65", "", ""),
    ]
    assert exported["m2"]["changes"] == {"new": 2, "changed": 2, "withdrawn": 1}


def test_a_score_becoming_empty_is_a_change(spark):
    """``score`` is null when the champion had no calibration: a score that becomes (or
    stops being) empty is a change; two empty scores at the same rank are not."""
    schema = "customer_id string, product_code string, rank int, score double"
    prev = spark.createDataFrame([("C1", "SV", 1, 0.5), ("C1", "BF", 2, None), ("C2", "CA", 1, None)], schema)
    cur = spark.createDataFrame([("C1", "SV", 1, None), ("C1", "BF", 2, None), ("C2", "CA", 1, 0.2)], schema)
    got = sorted((r.change, r.customer_id, r.product_code) for r in export.changes(cur, prev).collect())
    assert got == [("changed", "C1", "SV"), ("changed", "C2", "CA")]


@pytest.mark.parametrize("layer", ["gold", "marketing"])
def test_outcomes_of_past_recommendations(spark, exported, layer):
    out = lake.read(spark, lake.table_path(exported["settings"].lake, layer, "recommendation_outcomes"))
    got = {r.product_code: (r.as_of_date, r.persona_id, r.recommended, r.offers_sent, r.converted, r.conversion_rate)
           for r in out.collect()}
    assert got == {
        "SV": (D1, None, 1, 1, 1, 1.0),    # C1 converted O1; C3 (no consent) and C2 (rank 4: not exported)
                                           # not counted; O3 was before
        "BF": (D1, None, 1, 1, 0, 0.0),    # declined
        "CA": (D1, None, 1, 0, 0, None),
        "CC": (D1, None, 1, 0, 0, None),   # O5 after the validity window (and after as_of)
    }


def test_no_pii_columns_in_exports_or_gold_tables(spark, exported):
    s = exported["settings"]
    folder = export.export_root(s) / D2.isoformat()
    cols = read_csv(folder / "recommendations.csv")[0].keys()
    cols = list(cols) + pq.read_table(folder / "recommendations.parquet").column_names
    cols += (folder / "changes.csv").read_text(encoding="utf-8").splitlines()[0].split(",")
    cols += lake.read(spark, lake.table_path(s.lake, "gold", "recommendation_outcomes")).columns
    cols += lake.read(spark, lake.table_path(s.lake, "marketing", "recommendation_outcomes")).columns
    assert cols and not [c for c in cols if export.is_pii_column(c)]
    for pii in ("full_name", "national_id", "phone", "email", "birth_date", "birth_month", "phone_token"):
        assert export.is_pii_column(pii)


def test_export_refuses_a_date_that_was_not_scored(spark, exported):
    with pytest.raises(RuntimeError, match="run the score step"):
        export.run(spark, exported["settings"], date(2026, 7, 31))


@pytest.mark.unit
def test_csv_sink_quotes_and_neutralises_text_only(tmp_path):
    """The vectorised CSV writer: text quoted when it holds a comma, a quote, LF or CR (a
    lone CR too), quotes doubled; text a spreadsheet would run as a formula prefixed with
    ``'``; numbers (negative ones too), dates and nulls as they are. Python's csv module
    reads every row back whole."""
    import datetime as dt

    import pyarrow as pa

    from jobs.export import _CsvSink

    schema = pa.schema([("id", pa.string()), ("rank", pa.int32()), ("score", pa.float64()),
                        ("valid_until", pa.date32()), ("text", pa.string())])
    rows = [("C1", 1, 0.1, dt.date(2026, 7, 31), "您最近在手机银行多次浏览了该产品。"),
            ("C,2", None, 1.0, None, 'say "hi"'), (None, 3, 1e-05, dt.date(2026, 1, 1), "line\nbreak"),
            ("", -4, None, dt.date(2026, 1, 2), "cr\rx"), ("x y", 5, -0.0, None, "a,b"),
            ("C6", 6, 0.123456, dt.date(2026, 8, 1), ""), ("-7", -7, -0.5, None, "=1+1"),
            ("C8", 8, -1e-05, None, " @x")]
    table = pa.Table.from_pylist([dict(zip(schema.names, r)) for r in rows], schema=schema)
    sink = _CsvSink(tmp_path / "x.csv", schema)
    sink.write(table.slice(0, 2))
    sink.write(table.slice(2, 0))
    sink.write(table.slice(2))
    sink.close()
    assert (tmp_path / "x.csv").read_bytes().decode("utf-8") == (
        "id,rank,score,valid_until,text\n"
        "C1,1,0.1,2026-07-31,您最近在手机银行多次浏览了该产品。\n"
        '"C,2",,1.0,,"say ""hi"""\n'
        ',3,1e-05,2026-01-01,"line\nbreak"\n'
        ',-4,,2026-01-02,"cr\rx"\n'
        'x y,5,-0.0,,"a,b"\n'
        "C6,6,0.123456,2026-08-01,\n"
        "'-7,-7,-0.5,,'=1+1\n"
        "C8,8,-1e-05,,' @x\n")
    with open(tmp_path / "x.csv", encoding="utf-8", newline="") as f:
        back = list(csv.reader(f))
    assert len(back) == len(rows) + 1 and back[4] == ["", "-4", "", "2026-01-02", "cr\rx"]
    assert sink.rows == len(rows)


@pytest.mark.unit
@pytest.mark.parametrize("value, cell", [
    ('=HYPERLINK("http://x","click")', "'=HYPERLINK(\"http://x\",\"click\")"), ("+1", "'+1"), ("-2+3", "'-2+3"),
    ("@SUM(A1)", "'@SUM(A1)"), ("\tX", "'\tX"), ("\rX", "'\rX"), ("  =1+1", "'  =1+1"), ("\n-1", "'\n-1"),
    ("a\rb", "a\rb"), ("a=b", "a=b"), ("1-2", "1-2"), ("'=x", "'=x"), ("", ""), (" x", " x"), ("智能活期宝", "智能活期宝"),
])
def test_neutralise_text_cells(value, cell):
    import pyarrow as pa

    from c360 import csvsafe

    assert csvsafe.neutralise(value) == cell
    assert csvsafe.neutralise(cell) == cell  # twice is once
    assert csvsafe.text_cells(pa.array([value])).to_pylist() == [csvsafe.quote(cell)]


HOSTILE_NAMES = {"P1": '=HYPERLINK("http://x","click")', "P2": "+1", "P3": "-2+3", "P4": "@SUM(A1)", "P5": "\tX",
                 "P6": "a\rb", "=P7": " =cmd|' /C calc'!A0"}


def test_hostile_product_names_reach_the_csv_as_text(settings, spark, tmp_path):
    """Product names (and a product code) delivered by the bank that a spreadsheet would run
    as formulas, or that hold a lone CR, end up in the CRM CSV as text cells with a leading
    ``'``; the file reads back with the Parquet copy's row count (no row split), the
    numbers (a negative score) stay numbers, and the Parquet copy keeps the raw values."""
    s = settings.with_paths(landing=tmp_path / "landing", lake=tmp_path / "lake")
    s = s.model_copy(update={"export": s.export.model_copy(update={"top_n": 7})})  # every hostile name
    d = D2
    lake.write_partition(spark.createDataFrame([("C1", d, True, 40, "R3")], "customer_id string, as_of_date date, "
                                               "marketing_consent boolean, age bigint, risk_tolerance string"),
                         lake.table_path(s.lake, "gold", "customer_360"), "as_of_date", export.partition(d))
    codes = sorted(HOSTILE_NAMES)
    recs = [("C1", d, rank, code, 0.5 - rank / 10, "理由", "-reason, \r", "3") for rank, code in enumerate(codes, 1)]
    df = spark.createDataFrame(recs, "customer_id string, as_of_date date, rank int, product_code string, "
                                     "score double, reason_text_zh string, reason_text_en string, model_version string") \
        .withColumn("reason_codes", F.array(F.lit("views_product_90d"))).withColumn("raw_score", F.col("score") * 2) \
        .withColumn("expected_value", F.col("score")).withColumn("holdout", F.lit(False))
    lake.write_partition(df, lake.table_path(s.lake, "gold", "recommendations"), "as_of_date", export.partition(d),
                         schema=RECOMMENDATIONS_SCHEMA)
    lake.overwrite(spark.createDataFrame([(c, n, "fund", "R1", 18, 80, True) for c, n in HOSTILE_NAMES.items()],
                                         "product_code string, product_name string, family string, "
                                         "risk_level string, min_age int, max_age int, active boolean"),
                   lake.table_path(s.lake, "silver", "product_catalog"))
    m = export.run(spark, s, d, run_id="hostile")
    folder = export.export_root(s) / d.isoformat()
    parquet = pq.read_table(folder / "recommendations.parquet")
    rows = read_csv(folder / "recommendations.csv")
    assert len(rows) == parquet.num_rows == m["rows"] == len(HOSTILE_NAMES)
    raw = dict(zip(parquet.column("product_code").to_pylist(), parquet.column("product_name").to_pylist()))
    assert raw == HOSTILE_NAMES  # the system copy keeps what was delivered
    got = {r["product_code"]: r["product_name"] for r in rows}
    assert got == {("'" + c if c.startswith("=") else c): ("'" + n if n != "a\rb" else n)
                   for c, n in HOSTILE_NAMES.items()}
    assert {r["reason_text_en"] for r in rows} == {"'-reason, \r"}
    assert [float(r["score"]) for r in rows] == pytest.approx([0.5 - k / 10 for k in range(1, 8)])
    assert rows[-1]["score"] == "-0.2"  # a negative number stays a number
    changes = read_csv(folder / "changes.csv")
    assert len(changes) == len(HOSTILE_NAMES) and "'=P7" in {r["product_code"] for r in changes}
    numbers = {"rank", "score", "raw_score", "expected_value", "previous_rank", "previous_score"}
    for name in ("recommendations.csv", "changes.csv"):
        for row in read_csv(folder / name):
            text = [v for k, v in row.items() if k not in numbers]
            assert not [v for v in text if v.lstrip(" \n")[:1] in ("=", "+", "-", "@", "\t", "\r")], row


@pytest.mark.unit
def test_erasure_rewrite_keeps_the_export_format(tmp_path):
    """jobs.erase rewrites an undelivered export's CSV without a customer: the other rows keep
    their bytes (neutralised cells, a quoted lone CR) and read back whole."""
    import pyarrow as pa

    from jobs.erase import _filter_csv
    from jobs.export import _CsvSink

    schema = pa.schema([("customer_id", pa.string()), ("product_name", pa.string()), ("score", pa.float64())])
    rows = [("C1", "a\rb", -0.5), ("C2", "=1+1", 0.25), ("C3", "x,y", 1.0)]
    sink = _CsvSink(tmp_path / "in.csv", schema)
    sink.write(pa.Table.from_pylist([dict(zip(schema.names, r)) for r in rows], schema=schema))
    sink.close()
    assert _filter_csv(tmp_path / "in.csv", "C2", tmp_path / "out.csv") == (1, 2)
    before = (tmp_path / "in.csv").read_bytes().decode("utf-8")
    assert (tmp_path / "out.csv").read_bytes().decode("utf-8") == before.replace("C2,'=1+1,0.25\n", "")
    assert read_csv(tmp_path / "out.csv") == [{"customer_id": "C1", "product_name": "a\rb", "score": "-0.5"},
                                              {"customer_id": "C3", "product_name": "x,y", "score": "1.0"}]


@pytest.mark.unit
def test_csv_artifacts_of_training_are_safe(tmp_path):
    """MLflow CSV artifacts (per-product metrics keyed by delivered product codes, feature
    importance, calibration) go through the same writer."""
    import pandas as pd

    from c360 import csvsafe

    frame = pd.DataFrame({"product_code": ["=P1", "a\rb", None, "SV"], "auc": [0.5, -0.25, float("nan"), 1.0],
                          "n": [1, -2, 3, 4]})
    csvsafe.write_frame(frame, tmp_path / "per_product.csv")
    assert (tmp_path / "per_product.csv").read_bytes().decode("utf-8") == (
        "product_code,auc,n\n'=P1,0.5,1\n\"a\rb\",-0.25,-2\n,,3\nSV,1.0,4\n")
    assert len(read_csv(tmp_path / "per_product.csv")) == 4

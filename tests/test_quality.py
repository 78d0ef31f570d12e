"""Data quality gates: real Great Expectations suites on Spark Connect DataFrames (embedded Sail).

A small clean bank (every source, hand-written landing files) is ingested and built into
silver once per module; each test then works on its own copy of that lake and breaks it
in one way (duplicate key, orphan, null key...), through the landing zone where the
pipeline would let the defect through, or by writing the table directly where ingest
would have stopped it.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import warnings
from datetime import date, timedelta
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from c360 import lake
from c360.contract import SOURCES
from c360.quality import parse_config, suites
from c360.settings import ConfigError
from helpers import write_landing
from jobs.pipeline import StepFailed, run_step

AS_OF = date(2026, 6, 30)

# One small, clean bank: every source, every contract rule respected, every reference resolvable.
BANK: dict[str, list[dict]] = {
    "customers": [
        dict(customer_id=f"C{i}", full_name=f"客户{i}", national_id=f"11010119900101{i:04d}", phone=f"1380013{i:04d}",
             email=f"c{i}@example.cn", birth_date="1985-05-01", gender="F" if i % 2 else "M", occupation="engineer",
             annual_income="180000.00", city="上海", home_branch_id="B01", onboarding_date="2019-03-01",
             risk_tolerance="R3", kyc_status="verified", marketing_consent="Y", preferred_language="zh",
             updated_at="2026-06-29T09:00:00")
        for i in (1, 2, 3)
    ],
    "product_catalog": [
        dict(product_code="CA01", product_name="活期账户", family="current_account", risk_level="R1", min_age="16",
             max_age="100", active="true"),
        dict(product_code="TD12", product_name="一年定期", family="time_deposit", risk_level="R1", min_age="18",
             max_age="100", active="true"),
    ],
    "holdings": [
        dict(account_id=f"A{i}", customer_id=f"C{i}", product_code="CA01" if i < 3 else "TD12",
             opened_date="2020-01-10", status="active", balance="1000.00", currency="CNY", snapshot_date=day)
        for i in (1, 2, 3) for day in ("2026-06-29", "2026-06-30")
    ],
    "transactions": [
        dict(txn_id=f"T{n}", account_id=f"A{1 + n % 3}", customer_id=f"C{1 + n % 3}",
             txn_ts=f"2026-06-29T1{n}:00:00", amount=f"{10 + n}.50", direction="debit" if n % 2 else "credit",
             currency="CNY", channel="mobile", merchant_category="groceries")
        for n in range(6)
    ],
    "events": [
        dict(event_id="E1", customer_id="C1", device_id="D1", session_id="S1", event_ts="2026-06-29T10:00:00",
             channel="app", event_type="login"),
        dict(event_id="E2", customer_id="", device_id="D1", session_id="S1", event_ts="2026-06-29T10:01:00",
             channel="app", event_type="product_view", product_code="TD12", duration_ms="5200"),
    ],
    "interactions": [
        dict(interaction_id="I1", customer_id="C2", channel="call_center", started_at="2026-06-29T11:00:00",
             ended_at="2026-06-29T11:06:00", wait_seconds="40", handle_seconds="320", reason="card",
             resolved_first_contact="yes", agent_id="AG7"),
    ],
    "feedback": [
        dict(response_id="R1", customer_id="C1", survey_type="nps", score="9", comment="很好", touchpoint="app",
             channel="app", responded_at="2026-06-29T12:00:00"),
        dict(response_id="R2", customer_id="C2", survey_type="csat", score="4", touchpoint="branch_service",
             channel="branch", responded_at="2026-06-29T12:30:00", interaction_id="I1"),
    ],
    "complaints": [
        dict(complaint_id="K1", customer_id="C3", opened_at="2026-06-29T08:00:00", closed_at="2026-06-29T17:00:00",
             channel="branch", category="fees", severity="low", status="resolved", description="手续费"),
    ],
    "campaign_responses": [
        dict(offer_id="O1", customer_id="C1", product_code="TD12", channel="app", sent_at="2026-06-29T09:00:00",
             outcome="sent"),
        dict(offer_id="O1", customer_id="C1", product_code="TD12", channel="app", sent_at="2026-06-29T09:00:00",
             outcome="opened", outcome_at="2026-06-29T09:30:00"),
    ],
}


def csv_text(source: str, rows: list[dict]) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    cols = SOURCES[source].column_names
    w.writerow(cols)
    for r in rows:
        w.writerow([r.get(c, "") for c in cols])
    return out.getvalue()


def write_small_bank(landing: Path, day: str = "2026-06-30") -> None:
    """Write the clean small bank into ``landing`` as one delivery per source on ``day``."""
    for source, rows in BANK.items():
        write_landing(landing, source, day, f"{source}.csv", csv_text(source, rows))


def table(spark, s, layer, name):
    return lake.read(spark, lake.table_path(s.lake, layer, name))


def quiet_run(spark, s, step, run_id):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the development PII key warning of silver
        return run_step(spark, s, step, AS_OF, run_id=run_id)


@pytest.fixture(scope="module")
def clean_lake(spark, settings, tmp_path_factory):
    """The small bank through ingest, dq_bronze, silver, dq_silver (run id ``clean``)."""
    root = tmp_path_factory.mktemp("dq_clean")
    s = settings.with_paths(landing=root / "landing", lake=root / "lake")
    write_small_bank(s.landing)
    results = {step: quiet_run(spark, s, step, "clean") for step in ("ingest", "dq_bronze", "silver", "dq_silver")}
    return s, results


@pytest.fixture
def lake_copy(clean_lake, tmp_path):
    """Settings pointing at a private copy of the clean bank's landing zone and lake."""
    s, _ = clean_lake
    shutil.copytree(s.landing, tmp_path / "landing")
    shutil.copytree(s.lake, tmp_path / "lake")
    return s.with_paths(landing=tmp_path / "landing", lake=tmp_path / "lake")


def gate_error(excinfo) -> str:
    err = excinfo.value
    if isinstance(err, StepFailed):
        err = err.cause
    assert type(err).__name__ == "QualityGateFailed"
    return str(err)


def validate(spark, s, layer, run_id, tables, config=None):
    """One layer's quality gate on some of its tables (what the dq_<layer> step does for all)."""
    from jobs import quality

    return quality.run(spark, s, layer, AS_OF, run_id, config=config, tables=tables)


def test_clean_bank_passes_every_suite(spark, clean_lake):
    s, results = clean_lake
    bronze, silver = results["dq_bronze"].metrics, results["dq_silver"].metrics
    assert bronze["suites"] == silver["suites"] == len(SOURCES)
    assert (bronze["failed_critical"], bronze["failed_warning"]) == (0, 0), bronze["warnings"]
    assert (silver["failed_critical"], silver["failed_warning"]) == (0, 0), silver["warnings"]
    assert bronze["skipped"] == silver["skipped"] == []
    planned = sum(len(v) for layer in ("bronze", "silver") for v in suites(
        parse_config({}), layer, AS_OF).values())
    assert bronze["expectations"] + silver["expectations"] >= planned
    res = table(spark, s, "ops", "dq_results").where("run_id = 'clean'")
    assert res.count() == bronze["expectations"] + silver["expectations"]
    assert res.where("NOT success").count() == 0
    assert {r.suite for r in res.select("suite").distinct().collect()} == \
        {f"{layer}/{n}" for layer in ("bronze", "silver") for n in SOURCES}
    log = {r.step: r.status for r in table(spark, s, "ops", "run_log").where("run_id = 'clean'").collect()}
    assert log == {"ingest": "succeeded", "dq_bronze": "succeeded", "silver": "succeeded", "dq_silver": "succeeded"}


def test_data_docs_are_written_under_reports(clean_lake):
    s, results = clean_lake
    index = Path(s.lake) / "reports" / "dq" / "index.html"
    assert index.is_file() and results["dq_silver"].metrics["data_docs"] == str(index)
    html = index.read_text(encoding="utf-8")
    assert "silver.transactions" in html and "bronze.customers" in html
    assert list((Path(s.lake) / "reports" / "dq" / "validations").rglob("*.html"))
    assert (Path(s.lake) / "ops" / "gx" / "great_expectations.yml").is_file()


# a resource a page loads from the network: <script src>, <link href>, <img src>, CSS url()
NETWORK_LOAD = re.compile(r'(?:<(?:script|link|img)\b[^>]*?\b(?:src|href)\s*=\s*["\']?|\burl\(\s*["\']?)'
                          r'((?:https?:)?//[^"\'\s>)]*)', re.IGNORECASE)


def test_data_docs_load_nothing_from_the_network(clean_lake):
    """Every page of the Data Docs (and GE's stylesheets) loads its scripts, styles, fonts
    and images from the site's own folder: copies under static/vendor, each one there."""
    s, results = clean_lake
    docs = Path(s.lake) / "reports" / "dq"
    assert results["dq_silver"].metrics["data_docs_offline"].startswith("yes"), \
        results["dq_silver"].metrics["data_docs_offline"]
    pages = [p for p in docs.rglob("*") if p.suffix in (".html", ".css") and "static/vendor" not in p.as_posix()]
    assert len([p for p in pages if p.suffix == ".html"]) > 10
    local = set()
    for p in pages:
        text = p.read_text(encoding="utf-8")
        assert not NETWORK_LOAD.findall(text), f"{p.relative_to(docs)} loads {NETWORK_LOAD.findall(text)[:3]}"
        assert "integrity=" not in text and "crossorigin=" not in text
        for ref in re.findall(r'(?:src|href)="([^"#?]+\.(?:js|css|png))"', text):
            local.add((p.parent / ref).resolve())
    vendor = (docs / "static" / "vendor").resolve()
    assert {f.relative_to(vendor).parts[0] for f in local if vendor in f.parents} >= {
        "jquery", "popper.js", "bootstrap", "bootstrap-table", "bootstrap-datepicker", "fontawesome", "vega",
        "vega-lite", "vega-embed"}
    missing = [str(f) for f in local if not f.is_file()]
    assert not missing, missing[:5]
    assert list((vendor / "fontawesome" / "webfonts").glob("fa-solid-900.woff2"))  # all.min.css's ../webfonts/


def test_data_docs_show_the_validation_list_offline_in_a_browser(clean_lake):
    """Headless Chromium with the network cut off (every request to a dead proxy) draws the
    index's validation list: its rows exist only once jQuery and bootstrap-table ran."""
    from browser import dump_dom

    s, _ = clean_lake
    dom = dump_dom(Path(s.lake) / "reports" / "dq" / "index.html")
    rows = re.findall(r'<tr class="clickable-row" data-href="(validations/[^"]+)" data-index="\d+"', dom)
    assert len(rows) == 10 and all(r.startswith("validations/silver/") for r in rows), rows  # page 1, newest first
    assert any("/silver/transactions/" in r for r in rows)
    # bootstrap-table's pager over every validation result: the bronze and silver suites
    # of every source, some twice (new rows, whole table)
    shown = re.search(r"Showing 1 to 10 of (\d+) rows", dom)
    assert shown and int(shown.group(1)) >= 2 * len(SOURCES), dom[-3000:]


@pytest.mark.unit
def test_data_docs_without_installed_assets_keep_their_links_and_say_so(tmp_path, monkeypatch):
    """No assets installed: the pages stay as GE wrote them (CDN links) and the step's result
    says that the Data Docs need internet, and why."""
    from jobs.quality import offline_docs

    docs = tmp_path / "dq"
    docs.mkdir()
    page = docs / "index.html"
    page.write_text('<script src="https://code.jquery.com/jquery-3.7.1.min.js"></script>', encoding="utf-8")
    monkeypatch.setenv("C360_DQ_ASSETS", str(tmp_path / "nowhere"))
    said = offline_docs(docs)
    assert said.startswith("no: the Data Docs assets are not installed in") and "make setup" in said
    assert page.read_text(encoding="utf-8") == '<script src="https://code.jquery.com/jquery-3.7.1.min.js"></script>'
    assert not (docs / "static").exists()


@pytest.mark.unit
def test_a_page_loading_an_unknown_remote_file_is_reported(tmp_path):
    """A page GE wrote with a CDN reference this project does not know (a newer GE) is
    named in the step's result, with the file it would fetch; the known ones are rewritten."""
    from jobs.quality import offline_docs

    page = tmp_path / "dq" / "validations" / "x" / "p.html"
    page.parent.mkdir(parents=True)
    page.write_text('<script src="https://code.jquery.com/jquery-3.7.1.min.js"></script>\n'
                    '<link rel="stylesheet" href="https://cdn.example.org/new-lib.css">', encoding="utf-8")
    said = offline_docs(tmp_path / "dq")
    assert said == "no: Data Docs pages still load from the network: validations/x/p.html: " \
                   "https://cdn.example.org/new-lib.css"
    assert '<script src="../../static/vendor/jquery/jquery.min.js"></script>' in page.read_text(encoding="utf-8")
    assert (tmp_path / "dq" / "static" / "vendor" / "jquery" / "jquery.min.js").is_file()


@pytest.mark.unit
def test_run_summary_says_when_data_docs_need_internet():
    from rich.console import Console

    from c360.cli import _dq_tables

    m = {"layer": "bronze", "by_suite": {}, "data_docs": "/lake/reports/dq/index.html",
         "data_docs_offline": "no: the Data Docs assets are not installed in /opt/x (make setup installs them)"}
    console = Console(record=True, width=200)
    for t in _dq_tables(m):
        console.print(t)
    text = console.export_text()
    assert "Data Docs need internet" in text and "not installed in /opt/x" in text
    console = Console(record=True, width=200)
    for t in _dq_tables(m | {"data_docs_offline": "yes (3 pages pointed at static/vendor)"}):
        console.print(t)
    assert "need internet" not in console.export_text()


def test_rerun_of_the_same_run_replaces_its_results(spark, lake_copy):
    s = lake_copy
    before = table(spark, s, "ops", "dq_results").count()
    validate(spark, s, "silver", "clean", ["silver/transactions"])
    assert table(spark, s, "ops", "dq_results").count() == before
    # the copied GE context now points its Data Docs at the copy's own reports folder
    assert (Path(s.lake) / "reports" / "dq" / "index.html").is_file()


def test_duplicate_compound_key_fails_with_its_count_and_examples(spark, lake_copy):
    """A compound key check (a GROUP BY, see jobs.quality.ExpectKeyToBeUnique) gives its
    count and example rows."""
    s = lake_copy
    path = lake.table_path(s.lake, "silver", "holdings")
    one = lake.read(spark, path).orderBy("account_id", "snapshot_date").limit(1)
    (dup,) = one.select("account_id", "snapshot_date").collect()
    lake.append(one, path)
    with pytest.raises(StepFailed) as excinfo:
        quiet_run(spark, s, "dq_silver", "dupkey")
    assert gate_error(excinfo) == ("quality gate failed: silver/holdings "
                                   "expect_compound_columns_to_be_unique(account_id,snapshot_date): 2 unexpected")
    (row,) = table(spark, s, "ops", "dq_results").where("run_id = 'dupkey' AND NOT success").collect()
    assert (row.suite, row.expectation, row.unexpected_count) == \
        ("silver/holdings", "expect_compound_columns_to_be_unique", 2)
    assert json.loads(row.details)["unexpected_rows"] == \
        [{"account_id": dup.account_id, "snapshot_date": dup.snapshot_date.isoformat()}] * 2


def test_unordered_pair_in_bronze_fails_with_its_count_and_examples(spark, lake_copy):
    """A column pair check (ended_at after started_at) runs in the all-or-nothing first pass;
    failing there, it runs again for its count and examples."""
    s = lake_copy
    path = lake.table_path(s.lake, "bronze", "interactions")
    one = lake.read(spark, path).where("ended_at IS NOT NULL").orderBy("interaction_id").limit(1)
    bad = one.withColumn("interaction_id", F.lit("I-BAD")) \
        .withColumn("ended_at", F.col("started_at") - F.expr("INTERVAL 1 HOUR")) \
        .withColumn("_ingested_at", F.current_timestamp())
    lake.append(bad, path)
    with pytest.raises(StepFailed) as excinfo:
        quiet_run(spark, s, "dq_bronze", "order")
    assert gate_error(excinfo).startswith(
        "quality gate failed: bronze/interactions expect_column_pair_values_a_to_be_greater_than_b")
    assert gate_error(excinfo).endswith(": 1 unexpected")
    (row,) = table(spark, s, "ops", "dq_results").where("run_id = 'order' AND NOT success").collect()
    assert (row.suite, row.unexpected_count) == ("bronze/interactions", 1)
    (started,) = one.select("started_at").collect()
    ended = started.started_at - timedelta(hours=1)
    assert json.loads(row.details)["partial_unexpected_list"] == [[str(ended), str(started.started_at)]]


def test_duplicate_key_in_silver_stops_the_run(spark, lake_copy):
    s = lake_copy
    path = lake.table_path(s.lake, "silver", "transactions")
    lake.append(lake.read(spark, path).where("txn_id = 'T1'"), path)
    with pytest.raises(StepFailed) as excinfo:
        quiet_run(spark, s, "dq_silver", "dup")
    msg = gate_error(excinfo)
    assert msg == ("quality gate failed: silver/transactions expect_column_values_to_be_unique(txn_id): "
                   "2 unexpected")
    failed = table(spark, s, "ops", "run_log").where("run_id = 'dup'").first()
    assert failed.status == "failed" and msg in failed.error
    row = table(spark, s, "ops", "dq_results").where("run_id = 'dup' AND NOT success").collect()
    assert [(r.suite, r.expectation, r.column, r.severity, r.unexpected_count) for r in row] == \
        [("silver/transactions", "expect_column_values_to_be_unique", "txn_id", "critical", 2)]
    assert json.loads(row[0].details)["unexpected_rows"] == [{"txn_id": "T1"}, {"txn_id": "T1"}]


def test_more_unexpected_rows_than_fetched_are_counted_exactly(spark, lake_copy):
    """The unexpected rows are fetched once, up to 200; with more than that the count is
    still exact (a second query counts them) and 20 examples are kept."""
    s = lake_copy
    path = lake.table_path(s.lake, "silver", "transactions")
    t1 = lake.read(spark, path).where("txn_id = 'T1'")
    lake.append(t1.crossJoin(spark.range(130).select(F.col("id").alias("_copy"))).drop("_copy"), path)
    with pytest.raises(Exception) as excinfo:
        validate(spark, s, "silver", "many", ["silver/transactions"], config=parse_config({"incremental": False}))
    assert gate_error(excinfo) == ("quality gate failed: silver/transactions "
                                   "expect_column_values_to_be_unique(txn_id): 131 unexpected")
    row = table(spark, s, "ops", "dq_results").where("run_id = 'many' AND NOT success").first()
    assert row.unexpected_count == 131
    assert json.loads(row.details)["unexpected_rows"] == [{"txn_id": "T1"}] * 20
    # 131 rows of one key are 131 unexpected rows: fewer than 200, fetched and counted at once;
    # a second key repeated 100 times brings 231, more than one fetch holds
    t2 = lake.read(spark, path).where("txn_id = 'T2'")
    lake.append(t2.crossJoin(spark.range(99).select(F.col("id").alias("_copy"))).drop("_copy"), path)
    with pytest.raises(Exception) as excinfo:
        validate(spark, s, "silver", "more", ["silver/transactions"], config=parse_config({"incremental": False}))
    assert gate_error(excinfo).endswith("expect_column_values_to_be_unique(txn_id): 231 unexpected")


def test_orphan_transaction_is_caught(spark, lake_copy):
    s = lake_copy
    orphan = BANK["transactions"][0] | dict(txn_id="T99", customer_id="C404")
    write_landing(s.landing, "transactions", "2026-06-30", "late.csv", csv_text("transactions", [orphan]))
    quiet_run(spark, s, "ingest", "orphan")  # a valid row as far as the contract goes: it lands
    quiet_run(spark, s, "silver", "orphan")
    with pytest.raises(Exception) as excinfo:
        validate(spark, s, "silver", "orphan", ["silver/transactions"])
    assert gate_error(excinfo) == (
        "quality gate failed: silver/transactions "
        "expect_column_values_to_exist_in_table(customer_id in silver/customers.customer_id): 1 unexpected")
    row = table(spark, s, "ops", "dq_results").where("run_id = 'orphan' AND NOT success").first()
    assert json.loads(row.details)["unexpected_rows"] == [{"customer_id": "C404"}]
    # with a threshold, a few orphans are tolerated: the run goes on and they are reported
    # (`mostly` is a share of the rows checked: here the whole table; incrementally, the
    # new rows, of which the orphan is the only one)
    lenient = parse_config({"incremental": False, "references": [
        {"table": "silver/transactions", "column": "customer_id", "ref": "silver/customers", "mostly": 0.8}]})
    m = validate(spark, s, "silver", "orphan_tolerated", ["silver/transactions"], lenient)
    assert m["failed_critical"] == m["failed_warning"] == 0
    assert m["tolerated"] == ["silver/transactions expect_column_values_to_exist_in_table(customer_id in "
                              "silver/customers.customer_id): 1 unexpected (within mostly=0.8)"]


def test_null_customer_id_reaching_silver_is_caught(spark, lake_copy):
    s = lake_copy
    path = lake.table_path(s.lake, "silver", "transactions")
    df = lake.read(spark, path)
    bad = df.where("txn_id = 'T2'").withColumn("txn_id", F.lit("T77")) \
        .withColumn("customer_id", F.lit(None).cast("string")).withColumn("_ingested_at", F.current_timestamp())
    lake.overwrite(df.unionByName(bad), path + "_tmp")
    lake.overwrite(lake.read(spark, path + "_tmp"), path)
    with pytest.raises(Exception) as excinfo:
        validate(spark, s, "silver", "nullkey", ["silver/transactions"])
    assert gate_error(excinfo) == ("quality gate failed: silver/transactions "
                                   "expect_column_values_to_not_be_null(customer_id): 1 unexpected")


def test_contract_violation_in_bronze_is_caught(spark, lake_copy):
    s = lake_copy
    path = lake.table_path(s.lake, "bronze", "transactions")
    df = lake.read(spark, path)
    bad = df.where("txn_id = 'T3'").withColumn("txn_id", F.lit("T66")) \
        .withColumn("amount", F.lit(-5).cast("decimal(18,2)")) \
        .withColumn("channel", F.lit("fax")).withColumn("_ingested_at", F.current_timestamp())
    lake.append(bad, path)
    with pytest.raises(Exception) as excinfo:
        validate(spark, s, "bronze", "bronze_bad", ["bronze/transactions"])
    assert gate_error(excinfo) == (
        "quality gate failed: bronze/transactions expect_column_values_to_be_between(amount): 1 unexpected; "
        "bronze/transactions expect_column_values_to_be_in_set(channel): 1 unexpected")


HOSTILE = ("<script>alert(1)</script>", "<img src=x onerror=alert(1)>")


def test_data_docs_show_delivered_values_as_text(spark, lake_copy):
    """Delivered values that look like HTML reach the Data Docs as escaped text: a channel
    and a direction outside their enums (GE's example values, shown on the page) and a
    repeated transaction id (the example rows of our own unexpected-rows expectations)
    never become markup or script, in the pages or in the JSON they embed."""
    s = lake_copy
    path = lake.table_path(s.lake, "bronze", "transactions")
    bad = lake.read(spark, path).where("txn_id = 'T3'").withColumn("txn_id", F.lit(HOSTILE[1])) \
        .withColumn("channel", F.lit(HOSTILE[0])).withColumn("direction", F.lit(HOSTILE[1])) \
        .withColumn("_ingested_at", F.current_timestamp())
    lake.append(bad.unionByName(bad), path)
    with pytest.raises(Exception) as excinfo:
        validate(spark, s, "bronze", "hostile", ["bronze/transactions"])
    msg = gate_error(excinfo)
    assert "expect_column_values_to_be_unique(txn_id): 2 unexpected" in msg
    assert "expect_column_values_to_be_in_set(channel): 2 unexpected" in msg
    assert "expect_column_values_to_be_in_set(direction): 2 unexpected" in msg
    # the lake keeps the delivered values as they are (ops/dq_results is for systems)
    rows = {(r.expectation, r.column): json.loads(r.details) for r in
            table(spark, s, "ops", "dq_results").where("run_id = 'hostile' AND NOT success").collect()}
    assert rows["expect_column_values_to_be_unique", "txn_id"]["unexpected_rows"] == [{"txn_id": HOSTILE[1]}] * 2
    assert rows["expect_column_values_to_be_in_set", "channel"]["partial_unexpected_list"] == [HOSTILE[0]] * 2
    assert rows["expect_column_values_to_be_in_set", "direction"]["partial_unexpected_list"] == [HOSTILE[1]] * 2
    docs = Path(s.lake) / "reports" / "dq"
    pages = {p: p.read_text(encoding="utf-8") for p in docs.rglob("*") if p.is_file()
             and p.suffix in (".html", ".json", ".js")}
    hostile_pages = [p for p, text in pages.items() if "hostile" in str(p)]
    assert hostile_pages, sorted(pages)
    for p, text in pages.items():
        for raw in ("<script>alert", "<img src=x", "onerror=alert(1)>"):
            assert raw not in text, f"{p.relative_to(docs)} holds {raw!r} unescaped"
    shown = "".join(pages[p] for p in hostile_pages)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in shown  # still shown, as text
    assert "&lt;img src=x onerror=alert(1)&gt;" in shown


def test_row_checks_see_only_new_rows_and_cross_row_checks_the_whole_table(spark, lake_copy):
    """After a table passed, its row-level checks look at the rows ingested since; a bad
    row among those stops the run and keeps the watermark where it was. Uniqueness still
    sees the whole table, and ``incremental: false`` checks every row."""
    from jobs import quality

    s = lake_copy
    path = lake.table_path(s.lake, "silver", "transactions")
    passed = quality.watermark(spark, s.lake, "silver/transactions")
    assert passed == lake.read(spark, path).agg(F.max("_ingested_at")).first()[0]
    df = lake.read(spark, path)
    # an old row gone bad (as if written before the checks existed): outside the scope
    old_bad = df.where("txn_id = 'T2'").withColumn("txn_id", F.lit("T55")) \
        .withColumn("customer_id", F.lit(None).cast("string"))
    lake.append(old_bad, path)
    m = validate(spark, s, "silver", "scoped", ["silver/transactions"])
    assert m["failed_critical"] == 0
    assert m["by_suite"]["silver/transactions"]["rows_checked"] == f"rows ingested after {passed.isoformat(sep=' ')}"
    # a new bad row is inside it (and only it is counted); the failure keeps the watermark
    new_bad = df.where("txn_id = 'T3'").withColumn("txn_id", F.lit("T56")) \
        .withColumn("customer_id", F.lit(None).cast("string")).withColumn("_ingested_at", F.current_timestamp())
    lake.append(new_bad, path)
    with pytest.raises(Exception) as excinfo:
        validate(spark, s, "silver", "scoped_new", ["silver/transactions"])
    assert gate_error(excinfo) == ("quality gate failed: silver/transactions "
                                   "expect_column_values_to_not_be_null(customer_id): 1 unexpected")
    assert quality.watermark(spark, s.lake, "silver/transactions") == passed
    # a duplicate of an old row: uniqueness is checked on the whole table
    lake.overwrite(lake.read(spark, path).where("txn_id <> 'T56'"), path + "_tmp")
    lake.overwrite(lake.read(spark, path + "_tmp"), path)
    lake.append(lake.read(spark, path).where("txn_id = 'T1'"), path)
    with pytest.raises(Exception) as excinfo:
        validate(spark, s, "silver", "scoped_dup", ["silver/transactions"])
    assert gate_error(excinfo) == ("quality gate failed: silver/transactions "
                                   "expect_column_values_to_be_unique(txn_id): 2 unexpected")
    # every row, every check: the old bad row is found too
    whole = parse_config({"incremental": False})
    with pytest.raises(Exception) as excinfo:
        validate(spark, s, "silver", "whole", ["silver/transactions"], whole)
    assert "expect_column_values_to_not_be_null(customer_id): 1 unexpected" in gate_error(excinfo)


def test_warning_is_recorded_and_the_run_goes_on(spark, lake_copy):
    s = lake_copy
    path = lake.table_path(s.lake, "silver", "campaign_responses")
    df = lake.read(spark, path)
    stranger = df.where("outcome = 'sent'").withColumn("offer_id", F.lit("O9")).withColumn("customer_id", F.lit("C404")) \
        .withColumn("_ingested_at", F.current_timestamp())
    lake.append(stranger, path)
    m = validate(spark, s, "silver", "warn", ["silver/campaign_responses"])
    assert (m["failed_critical"], m["failed_warning"]) == (0, 1)
    assert m["warnings"] == ["silver/campaign_responses expect_column_values_to_exist_in_table"
                             "(customer_id in silver/customers.customer_id): 1 unexpected"]
    rows = table(spark, s, "ops", "dq_results").where("run_id = 'warn' AND NOT success").collect()
    assert [(r.suite, r.column, r.severity, r.success, r.observed_value) for r in rows] == \
        [("silver/campaign_responses", "customer_id", "warning", False, "1")]


def test_overrides_and_thresholds_change_severity(spark, lake_copy):
    s = lake_copy
    path = lake.table_path(s.lake, "silver", "interactions")
    df = lake.read(spark, path)
    lake.append(df.withColumn("interaction_id", F.lit("I2")).withColumn("customer_id", F.lit("C404"))
                .withColumn("_ingested_at", F.current_timestamp()), path)
    config = parse_config({"references": [
        {"table": "silver/interactions", "column": "customer_id", "ref": "silver/customers", "severity": "warning"}],
        "overrides": [{"suite": "silver/transactions", "type": "expect_column_values_to_not_be_null",
                       "column": "customer_id", "mostly": 0.5}]})
    m = validate(spark, s, "silver", "override", ["silver/interactions", "silver/transactions"], config)
    assert m["failed_critical"] == 0 and m["failed_warning"] == 1 and "silver/interactions" in m["warnings"][0]


@pytest.mark.unit
@pytest.mark.parametrize("raw, error", [
    ({"generated": {"silver": {"key_unique": "fatal"}}},
     "generated.silver.key_unique: Input should be 'critical' or 'warning'"),
    ({"expectations": {"silver/transactions": [{"type": "expect_column_values_to_be_betwen"}]}},
     "expectations.silver/transactions.0.type: unknown expectation type 'expect_column_values_to_be_betwen'"),
    ({"expectations": {"silver/transfers": []}}, "unknown table 'silver/transfers'"),
    ({"references": [{"table": "silver/transactions", "column": "customer_id", "ref": "customers"}]},
     "references.0.ref: not a table name"),
    ({"overrides": [{"suite": "silver/transactions", "type": "expect_column_values_to_be_unique",
                     "column": "amount", "severity": "warning"}]},
     "overrides[0]: matches no expectation (silver/transactions expect_column_values_to_be_unique(amount))"),
    ({"overrides": [{"suite": "silver/transactions", "type": "expect_column_values_to_be_unique", "mostly": 1.5}]},
     "overrides.0.mostly: Input should be less than or equal to 1"),
    ({"expectations": {"silver/transactions": [
        {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "txn_id"}}]}},
     "silver/transactions expect_column_values_to_be_unique(txn_id) is declared twice"),
    ({"timestamps": {"max_days_after_as_of": -1}}, "timestamps.max_days_after_as_of"),
    ({"reference_defaults": {"mostly": 0}}, "reference_defaults.mostly: Input should be greater than 0"),
    ({"result_fromat": "BASIC"}, "result_fromat: Extra inputs are not permitted"),
    ({"gold": {"customer_360": {"features": {"agee": {"min": 18}}}}},
     "gold.customer_360.features: 'agee' matches no customer-360 feature (did you mean age"),
    ({"gold": {"customer_360": {"features": {"age": {"min": 110, "max": 18}}}}},
     "gold.customer_360.features.age: min 110.0 is above max 18.0"),
    ({"gold": {"customer_360": {"features": {"city": {"min": 0}}}}},
     "gold.customer_360.features: 'city': min/max on a feature that is not numeric (city)"),
    ({"gold": {"customer_360": {"features": {"age": {}}}}},
     "gold.customer_360.features.age: a feature rule needs min, max and/or max_null_fraction"),
    ({"gold": {"customer_360": {"row_count_change": {"max_change": 0}}}},
     "gold.customer_360.row_count_change.max_change: Input should be greater than 0"),
    ({"gold": {"customer_segments": {"share_change": {"columns": ["tier"]}}}},
     "gold.customer_segments.share_change.columns: unknown segment column 'tier'"),
    ({"gold": {"recommendations": {"within_risk_tolerance": "fatal"}}},
     "gold.recommendations.within_risk_tolerance: Input should be 'critical' or 'warning'"),
])
def test_configuration_errors_are_clear(raw, error):
    with pytest.raises(ConfigError) as excinfo:
        parse_config(raw)
    assert error in str(excinfo.value)


def test_wrong_expectation_arguments_stop_the_step_before_validating(spark, lake_copy):
    from jobs import quality

    config = parse_config({"expectations": {"silver/transactions": [
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "amount", "min_valu": 0}}]}})
    with pytest.raises(ConfigError, match=r"quality.yaml: silver/transactions expect_column_values_to_be_between"
                                          r"\(amount\): invalid expectation arguments"):
        quality.run(spark, lake_copy, "silver", AS_OF, "badargs", config=config)
    assert not table(spark, lake_copy, "ops", "dq_results").where("run_id = 'badargs'").count()


@pytest.mark.unit
def test_run_summary_shows_quality_results():
    from rich.console import Console

    from c360.cli import _dq_tables

    m = {"layer": "silver", "by_suite": {"silver/events": {"expectations": 9, "failed": 1}},
         "warnings": ["silver/events expect_column_values_to_not_be_null(customer_id): 7 unexpected"],
         "tolerated": [], "skipped": ["silver/complaints: table absent"], "data_docs": "/lake/reports/dq/index.html"}
    console = Console(record=True, width=200)
    for t in _dq_tables(m):
        console.print(t)
    text = console.export_text()
    assert "silver/events" in text and "7 unexpected" in text and "table absent" in text and "index.html" in text


@pytest.mark.unit
def test_shipped_configuration_is_valid():
    from c360.quality import load_config

    config = load_config()
    assert {(r.table, r.column) for r in config.references} >= {
        ("silver/transactions", "customer_id"), ("silver/transactions", "account_id"),
        ("silver/holdings", "customer_id"), ("silver/feedback", "customer_id"),
        ("silver/complaints", "customer_id"), ("silver/interactions", "customer_id")}


# ---------------------------------------------------------------------------------------
# Gold suites (step dq_gold): the clean small bank profiled for two dates, with small
# segment and recommendation tables written directly; each test breaks one table.

PREV = date(2026, 6, 29)
# The checks on gold/customer_360 features are many; defect tests keep a few of them.
FEW_FEATURES = {"age": {"min": 18, "max": 110, "max_null_fraction": 0.0}, "risk_level": {"min": 1, "max": 5}}


def with_quality(s, raw: dict):
    """Settings whose quality block is ``raw`` (what conf/local.yaml would do)."""
    return s.model_copy(update={"extra": {**(s.extra or {}), "quality": raw}})


def segments_df(spark, rows):
    from jobs.segments import SEGMENTS_SCHEMA

    return spark.createDataFrame(rows, SEGMENTS_SCHEMA)


def write_gold(spark, s, name, day, df, schema=None):
    from jobs.profile import partition

    lake.write_partition(df, lake.table_path(s.lake, "gold", name), "as_of_date", partition(day), schema=schema)


def write_segments(spark, s, day, tiers: dict[str, str]):
    from jobs.segments import SEGMENTS_SCHEMA

    rows = [(c, day, tier, "mature", 0, "P01") for c, tier in sorted(tiers.items())]
    write_gold(spark, s, "customer_segments", day, segments_df(spark, rows), SEGMENTS_SCHEMA)


def write_recommendations(spark, s, day, recs: list[tuple]):
    """``recs``: (customer, product), ranked 1 with score 0.5 and raw score 0.2, or
    (customer, product, rank, score, raw_score)."""
    from jobs.score import RECOMMENDATIONS_SCHEMA

    rows = [(c, day, rank, p, score, raw, ["holds_same_family"], "理由", "reason", "1", score, False)
            for c, p, rank, score, raw in ((*r, 1, 0.5, 0.2) if len(r) == 2 else r for r in recs)]
    write_gold(spark, s, "recommendations", day, spark.createDataFrame(rows, RECOMMENDATIONS_SCHEMA),
               RECOMMENDATIONS_SCHEMA)


@pytest.fixture(scope="module")
def gold_clean(spark, clean_lake, tmp_path_factory):
    """The clean bank's customer_360 for PREV and AS_OF (the real profile step), stable
    segments, and recommendations within every customer's risk tolerance (R3: all R1 products)."""
    s0, _ = clean_lake
    root = tmp_path_factory.mktemp("dq_gold")
    shutil.copytree(s0.landing, root / "landing")
    shutil.copytree(s0.lake, root / "lake")
    s = s0.with_paths(landing=root / "landing", lake=root / "lake")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for day in (PREV, AS_OF):
            run_step(spark, s, "profile", day, run_id=f"profile_{day}")
    tiers = {"C1": "high_end", "C2": "mass", "C3": "mass"}
    for day in (PREV, AS_OF):
        write_segments(spark, s, day, tiers)
    write_recommendations(spark, s, AS_OF, [("C1", "TD12"), ("C2", "TD12")])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_step(spark, s, "kpis", AS_OF, run_id="kpis")  # experience, service, complaint, topic KPIs
    return s


@pytest.fixture
def gold_copy(gold_clean, tmp_path):
    shutil.copytree(gold_clean.lake, tmp_path / "lake")
    return gold_clean.with_paths(lake=tmp_path / "lake")


def test_clean_gold_tables_pass_the_gold_suites(spark, gold_clean):
    s = gold_clean
    r = quiet_run(spark, s, "dq_gold", "gold_clean")  # the shipped conf/quality.yaml
    m = r.metrics
    assert (m["failed_critical"], m["failed_warning"], m["skipped"]) == (0, 0, []), (m["warnings"], m["skipped"])
    from c360.quality import load_config

    planned = suites(load_config(), "gold", AS_OF)
    assert set(m["by_suite"]) == set(planned) == {"gold/customer_360", "gold/customer_segments",
                                                    "gold/recommendations", "gold/experience_kpis",
                                                    "gold/service_kpis", "gold/complaint_kpis", "gold/topic_kpis"}
    assert {t: v["expectations"] for t, v in m["by_suite"].items()} == {t: len(c) for t, c in planned.items()}
    assert m["by_suite"]["gold/customer_360"]["expectations"] > 50  # keys, row count, many feature rules
    res = table(spark, s, "ops", "dq_results").where("run_id = 'gold_clean'")
    assert res.where("NOT success").count() == 0
    got = {(x.suite, x.expectation, x.column): x.observed_value for x in res.collect()}
    assert got[("gold/customer_360", "expect_table_row_count_to_be_near_previous", None)] == "0"  # 0 unexpected
    assert ("gold/customer_360", "expect_column_values_to_be_unique", "customer_id") in got
    assert ("gold/customer_360", "expect_column_values_to_be_between", "age") in got
    assert ("gold/customer_segments", "expect_column_shares_to_be_near_previous", "lifecycle_stage") in got
    assert ("gold/recommendations", "expect_recommendations_within_risk_tolerance", None) in got
    assert ("gold/service_kpis", "expect_column_values_to_be_between", "over_target_share") in got
    assert table(spark, s, "ops", "run_log").where("run_id = 'gold_clean'").first().status == "succeeded"
    assert "gold.customer_360" in (Path(s.lake) / "reports" / "dq" / "index.html").read_text(encoding="utf-8")


def test_gold_suites_skip_absent_tables_and_missing_history(spark, clean_lake, tmp_path):
    """Before the first champion there are no recommendations; on the first date there is
    nothing to compare with: skipped with the reason, not failed."""
    s0, _ = clean_lake
    shutil.copytree(s0.lake, tmp_path / "lake")
    s = with_quality(s0.with_paths(lake=tmp_path / "lake"), {"gold": {"customer_360": {"features": FEW_FEATURES}}})
    quiet_run(spark, s, "profile", "first")
    m = quiet_run(spark, s, "dq_gold", "first").metrics
    assert (m["failed_critical"], m["failed_warning"]) == (0, 0)
    assert m["skipped"] == [
        "gold/customer_360 expect_table_row_count_to_be_near_previous: no as_of partition before 2026-06-30 "
        "to compare with",
        "gold/customer_segments: table absent",
        "gold/recommendations: table absent (no champion model yet, or the score step has not run)"]
    assert m["by_suite"] == {"gold/customer_360": {"expectations": 2 + 3, "failed": 0}}


def test_duplicate_customer_in_customer_360_stops_the_run(spark, gold_copy):
    s = with_quality(gold_copy, {"gold": {"customer_360": {"features": FEW_FEATURES}}})
    path = lake.table_path(s.lake, "gold", "customer_360")
    lake.append(lake.read(spark, path).where(f"as_of_date = DATE'{AS_OF}' AND customer_id = 'C2'"), path)
    with pytest.raises(StepFailed) as excinfo:
        quiet_run(spark, s, "dq_gold", "gold_dup")
    assert gate_error(excinfo) == ("quality gate failed: gold/customer_360 "
                                   "expect_column_values_to_be_unique(customer_id): 2 unexpected")
    failed = table(spark, s, "ops", "run_log").where("run_id = 'gold_dup'").first()
    assert failed.status == "failed" and "gold/customer_360 expect_column_values_to_be_unique" in failed.error
    rows = table(spark, s, "ops", "dq_results").where("run_id = 'gold_dup' AND NOT success").collect()
    assert sorted((r.suite, r.expectation, r.column, r.severity, r.unexpected_count) for r in rows) == [
        ("gold/customer_360", "expect_column_values_to_be_unique", "customer_id", "critical", 2),
        # one more row than on the previous date (3 -> 4): also a row-count warning
        ("gold/customer_360", "expect_table_row_count_to_be_near_previous", None, "warning", 1)]
    assert excinfo.value.cause.warnings[0].message == (
        "gold/customer_360 expect_table_row_count_to_be_near_previous: 1 unexpected "
        "(4 rows vs 3 on 2026-06-29: +33.3%, allowed ±10%)")
    # only the as_of partition is checked: the previous date has no duplicate and passes
    from jobs import quality

    m = quality.run(spark, s, "gold", PREV, "gold_prev", tables=["gold/customer_360"])
    assert m["failed_critical"] == 0 and m["by_suite"]["gold/customer_360"]["failed"] == 0


def test_a_service_kpi_out_of_range_stops_the_run(spark, gold_copy):
    """The KPI tables' expectations (the shipped conf/quality.yaml) gate dq_gold like the others."""
    s = gold_copy
    path = lake.table_path(s.lake, "gold", "service_kpis")
    bad = lake.read(spark, path).where(f"as_of_date = DATE'{AS_OF}' AND dimension = 'channel'").limit(1) \
        .withColumn("over_target_share", F.lit(1.5)).withColumn("value", F.lit("broken"))
    lake.append(bad, path)
    with pytest.raises(StepFailed) as excinfo:
        quiet_run(spark, s, "dq_gold", "gold_kpi")
    assert gate_error(excinfo) == ("quality gate failed: gold/service_kpis "
                                   "expect_column_values_to_be_between(over_target_share): 1 unexpected")


def test_segment_share_jump_warns_or_stops_per_severity(spark, gold_copy):
    from rich.console import Console

    from c360.cli import _dq_tables

    s = with_quality(gold_copy, {"gold": {"customer_360": {"features": FEW_FEATURES}}})
    # C2 moves from mass to high_end: high_end 33.3% -> 66.7% of customers, mass the reverse
    write_segments(spark, s, AS_OF, {"C1": "high_end", "C2": "high_end", "C3": "mass"})
    m = quiet_run(spark, s, "dq_gold", "gold_shift").metrics
    expected = ("gold/customer_segments expect_column_shares_to_be_near_previous(value_tier): 2 unexpected "
                "(shares moved more than 10 points since 2026-06-29: high_end 33.3% -> 66.7%, mass 66.7% -> 33.3%)")
    assert (m["failed_critical"], m["failed_warning"]) == (0, 1)
    assert m["warnings"] == [expected]
    logged = table(spark, s, "ops", "run_log").where("run_id = 'gold_shift'").first()
    assert logged.status == "succeeded" and json.loads(logged.metrics)["warnings"] == [expected]
    row = table(spark, s, "ops", "dq_results").where("run_id = 'gold_shift' AND NOT success").first()
    assert (row.suite, row.column, row.severity, row.unexpected_count) == \
        ("gold/customer_segments", "value_tier", "warning", 2)
    assert sorted(json.loads(row.details)["unexpected_rows"], key=lambda r: r["segment"])[0]["segment"] == "high_end"
    console = Console(record=True, width=300)
    for t in _dq_tables(m):
        console.print(t)
    assert "high_end 33.3% -> 66.7%" in console.export_text()  # the run summary shows it
    # a jump within the threshold passes; configured critical, a jump stops the run
    wide = {"features": FEW_FEATURES}
    assert quiet_run(spark, with_quality(s, {"gold": {"customer_360": wide, "customer_segments": {
        "share_change": {"max_points": 40}}}}), "dq_gold", "gold_wide").metrics["failed_warning"] == 0
    strict = with_quality(s, {"gold": {"customer_360": wide, "customer_segments": {
        "share_change": {"columns": ["value_tier"], "severity": "critical"}}}})
    with pytest.raises(StepFailed) as excinfo:
        quiet_run(spark, strict, "dq_gold", "gold_strict")
    assert gate_error(excinfo) == "quality gate failed: " + expected


def test_row_count_change_beyond_tolerance_is_reported(spark, gold_copy):
    s = with_quality(gold_copy, {"gold": {"customer_360": {"features": FEW_FEATURES},
                                          "customer_segments": {"share_change": None}}})
    path = lake.table_path(s.lake, "gold", "customer_360")
    df = lake.read(spark, path)
    write_gold(spark, s, "customer_360", AS_OF, df.where(f"as_of_date = DATE'{AS_OF}' AND customer_id <> 'C3'"))
    m = quiet_run(spark, s, "dq_gold", "gold_rows").metrics
    assert m["warnings"] == ["gold/customer_360 expect_table_row_count_to_be_near_previous: 1 unexpected "
                             "(2 rows vs 3 on 2026-06-29: -33.3%, allowed ±10%)"]


def test_recommendation_above_risk_tolerance_is_critical(spark, gold_copy):
    s = with_quality(gold_copy, {"gold": {"customer_360": {"features": FEW_FEATURES}}})
    # two more products: a fund rated R5, an unrated credit card
    cat_path = lake.table_path(s.lake, "silver", "product_catalog")
    cat = lake.read(spark, cat_path)
    extra = cat.where("product_code = 'TD12'").withColumn("product_code", F.lit("FD05")) \
        .withColumn("family", F.lit("fund")).withColumn("risk_level", F.lit("R5")) \
        .unionByName(cat.where("product_code = 'TD12'").withColumn("product_code", F.lit("CC01"))
                     .withColumn("family", F.lit("credit_card")).withColumn("risk_level", F.lit(None).cast("string")))
    lake.append(extra, cat_path)
    # C3 has no valid risk assessment on as_of
    path = lake.table_path(s.lake, "gold", "customer_360")
    day = lake.read(spark, path).where(f"as_of_date = DATE'{AS_OF}'")
    write_gold(spark, s, "customer_360", AS_OF, day.withColumn(
        "risk_level", F.when(F.col("customer_id") == "C3", F.lit(None)).otherwise(F.col("risk_level"))), day.schema)
    # C1 (R3): FD05 (R5) is above its tolerance; C2 (R3): unrated CC01 is allowed; C3 (not assessed):
    # TD12 (R1) is allowed, unrated CC01 is not. (A new table: Sail cannot replace a partition
    # of the fixture's table with an array column written from Python rows.)
    shutil.rmtree(lake.table_path(s.lake, "gold", "recommendations"))
    write_recommendations(spark, s, AS_OF, [("C1", "FD05", 1, 0.5, 0.2), ("C1", "TD12", 2, 0.4, 0.1),
                                            ("C2", "CC01", 1, 0.5, 0.2), ("C3", "TD12", 1, 0.5, 0.2),
                                            ("C3", "CC01", 2, 0.4, 0.1)])
    with pytest.raises(StepFailed) as excinfo:
        quiet_run(spark, s, "dq_gold", "gold_risk")
    assert gate_error(excinfo) == (
        "quality gate failed: gold/recommendations expect_recommendations_within_risk_tolerance: 2 unexpected "
        "(C1 FD05: product R5, customer R3; C3 CC01: product unrated, customer not assessed)")
    row = table(spark, s, "ops", "dq_results").where("run_id = 'gold_risk' AND NOT success").first()
    assert (row.suite, row.severity, row.unexpected_count) == ("gold/recommendations", "critical", 2)
    assert sorted((r["customer_id"], r["product_code"]) for r in json.loads(row.details)["unexpected_rows"]) == \
        [("C1", "FD05"), ("C3", "CC01")]


def test_recommendation_to_a_customer_without_valid_kyc_is_critical(spark, gold_copy):
    """The KYC gate checked again on gold: a recommended customer whose KYC status at as_of is
    not one of scoring.yaml eligibility.kyc_valid_statuses (none counts as not valid) stops
    the run; configured as a warning it is only reported."""
    s = with_quality(gold_copy, {"gold": {"customer_360": {"features": FEW_FEATURES}}})
    path = lake.table_path(s.lake, "gold", "customer_360")
    day = lake.read(spark, path).where(f"as_of_date = DATE'{AS_OF}'")
    kyc = F.when(F.col("customer_id") == "C1", F.lit(" Verified ")) \
        .when(F.col("customer_id") == "C2", F.lit("expired")).otherwise(F.lit(None).cast("string"))
    write_gold(spark, s, "customer_360", AS_OF, day.withColumn("kyc_status", kyc), day.schema)
    shutil.rmtree(lake.table_path(s.lake, "gold", "recommendations"))
    write_recommendations(spark, s, AS_OF, [("C1", "TD12"), ("C2", "TD12"), ("C3", "TD12", 1, 0.4, 0.1),
                                            ("C3", "CA01", 2, 0.3, 0.05)])
    with pytest.raises(StepFailed) as excinfo:
        quiet_run(spark, s, "dq_gold", "gold_kyc")
    expected = ("gold/recommendations expect_recommended_customers_to_have_valid_kyc: 3 unexpected "
                "(C2 TD12: KYC 'expired'; C3 CA01: KYC none; C3 TD12: KYC none)")
    assert gate_error(excinfo) == "quality gate failed: " + expected
    row = table(spark, s, "ops", "dq_results").where("run_id = 'gold_kyc' AND NOT success").first()
    assert (row.suite, row.severity, row.unexpected_count) == ("gold/recommendations", "critical", 3)
    assert sorted((r["customer_id"], r["product_code"]) for r in json.loads(row.details)["unexpected_rows"]) == \
        [("C2", "TD12"), ("C3", "CA01"), ("C3", "TD12")]
    # the valid statuses come from conf/scoring.yaml: with `expired` valid only C3 fails
    wider = s.model_copy(update={"scoring": s.scoring.model_copy(update={
        "eligibility": s.scoring.eligibility.model_copy(update={"kyc_valid_statuses": ["verified", "expired"]})})})
    with pytest.raises(StepFailed) as excinfo:
        quiet_run(spark, wider, "dq_gold", "gold_kyc_wider")
    assert gate_error(excinfo).endswith("2 unexpected (C3 CA01: KYC none; C3 TD12: KYC none)")
    # as a warning: reported, the run goes on
    warn = with_quality(gold_copy, {"gold": {"customer_360": {"features": FEW_FEATURES},
                                             "recommendations": {"valid_kyc": "warning"}}})
    m = quiet_run(spark, warn, "dq_gold", "gold_kyc_warn").metrics
    assert (m["failed_critical"], m["warnings"]) == (0, [expected])


def test_recommendation_ranks_and_scores_are_critical(spark, gold_copy):
    """gold/recommendations: ranks within 1..scoring.top_n, one row per (customer, rank) and
    per (customer, product), score a probability (null allowed: no calibration), raw_score set."""
    s = with_quality(gold_copy, {"gold": {"customer_360": {"features": FEW_FEATURES}}})
    s = s.model_copy(update={"scoring": s.scoring.model_copy(update={"top_n": 2})})
    shutil.rmtree(lake.table_path(s.lake, "gold", "recommendations"))
    write_recommendations(spark, s, AS_OF, [
        ("C1", "TD12", 1, None, 0.3),    # no calibration: a null score is fine
        ("C1", "FD05", 3, 0.1, 0.1),     # rank 3 > top_n 2
        ("C2", "TD12", 1, 1.2, 2.0),     # not a probability
        ("C2", "SV01", 1, 0.4, None),    # rank 1 twice; no raw score
        ("C3", "TD12", 1, 0.5, 0.2), ("C3", "TD12", 2, 0.4, 0.1)])  # the same product twice
    with pytest.raises(StepFailed):
        quiet_run(spark, s, "dq_gold", "gold_ranks")
    failed = {(r.expectation, r.column): r.unexpected_count for r in
              table(spark, s, "ops", "dq_results").where("run_id = 'gold_ranks' AND NOT success").collect()}
    assert failed == {("expect_recommendation_ranks_within_top_n", None): 1,
                      ("expect_compound_columns_to_be_unique", "customer_id,rank"): 2,
                      ("expect_compound_columns_to_be_unique", "customer_id,product_code"): 2,
                      ("expect_column_values_to_be_between", "score"): 1,
                      ("expect_column_values_to_not_be_null", "raw_score"): 1}
    row = table(spark, s, "ops", "dq_results").where(
        "run_id = 'gold_ranks' AND expectation = 'expect_recommendation_ranks_within_top_n'").first()
    assert row.severity == "critical" and json.loads(row.details)["unexpected_rows"] == [
        {"customer_id": "C1", "product_code": "FD05", "rank": "3"}]


def test_key_uniqueness_query_returns_every_row_of_a_repeated_key_and_skips_null_keys(spark):
    """The GROUP BY standing in for GE's uniqueness expectations (jobs.quality.ExpectKeyToBeUnique)
    counts rows as GE does: every row of a repeated key; rows whose whole key is null are not checked."""
    from c360.quality import Check
    from jobs.quality import ExpectKeyToBeUnique, to_expectation

    df = spark.createDataFrame([("A", 1), ("A", 1), ("A", 1), ("A", 2), ("B", None), ("B", None), (None, None),
                                (None, None), (None, 3), ("C", 1)], "k string, d int")
    df.createOrReplaceTempView("uq_batch")

    def unexpected(check):
        exp = to_expectation(check, 0)
        assert isinstance(exp, ExpectKeyToBeUnique)
        rows = spark.sql(exp.unexpected_rows_query.replace("{batch}", "uq_batch")).collect()
        return sorted(tuple(r) for r in rows)

    single = Check("t", "expect_column_values_to_be_unique", {"column": "k"})
    assert unexpected(single) == [("A",)] * 4 + [("B",)] * 2
    compound = Check("t", "expect_compound_columns_to_be_unique", {"column_list": ["k", "d"]})
    assert unexpected(compound) == [("A", 1)] * 3 + [("B", None)] * 2
    # with mostly, GE's own expectation (a share of the rows may repeat)
    lenient = Check("t", "expect_column_values_to_be_unique", {"column": "k", "mostly": 0.5})
    assert not isinstance(to_expectation(lenient, 0), ExpectKeyToBeUnique)

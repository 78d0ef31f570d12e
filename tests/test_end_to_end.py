"""End to end on a small generated bank: generate -> ingest -> silver (-> profile).

The bank is generated once per module with defects injected; every assertion compares
the lake with what the generator says it wrote.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from typer.testing import CliRunner

from c360 import lake
from c360.contract import SOURCES
from c360.synth import generate
from jobs import ingest, silver

AS_OF = date(2026, 6, 30)
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bank(tmp_path_factory, settings, spark):
    root = tmp_path_factory.mktemp("bank")
    s = settings.with_paths(landing=root / "landing", lake=root / "lake")
    summary = generate(customers=400, days=75, as_of=AS_OF, seed=11, landing=s.landing, dirty_rate=0.02)
    first = ingest.run(spark, s, as_of=AS_OF)
    with pytest.warns(UserWarning, match="development PII key"):
        silver_rows = silver.run(spark, s)
    return s, summary, first, silver_rows


def test_every_source_loads_and_defects_are_quarantined(bank, spark):
    s, summary, first, _ = bank
    for name in SOURCES:
        assert first[name].rows_loaded > 0, name
    total_quarantined = sum(r.rows_quarantined for r in first.values())
    assert total_quarantined > 0
    # every row read is either loaded or quarantined: nothing lost
    for r in first.values():
        assert r.rows_read == r.rows_loaded + r.rows_quarantined
    # files the generator broke on purpose are quarantined whole, with a reason
    broken = {Path(d["path"]).name for d in summary.file_defects if d.get("kind") in ("truncated_gzip", "gbk_encoding")}
    assert broken, "the dirty bank should contain unreadable files"
    q_files = set()
    for name in SOURCES:
        p = lake.table_path(s.lake, "quarantine", name)
        if lake.exists(p):
            q_files |= {Path(r.source_file).name for r in lake.read(spark, p).where("line = 0").collect()}
    assert broken <= q_files


def test_second_ingest_of_the_same_landing_changes_nothing(bank, spark):
    s, _, _, _ = bank
    versions = {n: lake.version(lake.table_path(s.lake, "bronze", n)) for n in SOURCES}
    again = ingest.run(spark, s, as_of=AS_OF)
    assert all(r.files_new == 0 and r.rows_loaded == 0 for r in again.values())
    assert {n: lake.version(lake.table_path(s.lake, "bronze", n)) for n in SOURCES} == versions


def test_bronze_keys_are_unique(bank, spark):
    s, _, _, _ = bank
    for name, src in SOURCES.items():
        df = lake.read(spark, lake.table_path(s.lake, "bronze", name))
        assert df.count() == df.select(*src.key).distinct().count(), name


def test_silver_is_conformed_and_private(bank, spark):
    s, _, _, rows = bank
    assert set(rows["rows"]) == set(SOURCES) | {"transactions_daily", "holdings_latest", "holdings_lagged",
                                                "complaint_history"}
    customers = lake.read(spark, lake.table_path(s.lake, "silver", "customers"))
    current = customers.where("is_current")
    assert current.count() == current.select("customer_id").distinct().count()
    pii = lake.read(spark, lake.table_path(s.lake, "restricted", "customer_pii"))
    assert pii.count() == current.count()
    secrets = {v for r in pii.select("full_name", "national_id", "phone", "email").collect() for v in r if v}
    for name in [*SOURCES, "transactions_daily", "holdings_latest", "holdings_lagged", "complaint_history"]:
        df = lake.read(spark, lake.table_path(s.lake, "silver", name))
        assert not set(df.columns) & set(SOURCES["customers"].pii_columns), name
        text_cols = [f.name for f in df.schema.fields if f.dataType.typeName() == "string"]
        if text_cols:
            values = {v for r in df.select(*text_cols).collect() for v in r if v}
            assert not values & secrets, f"raw PII found in silver/{name}"
    events = lake.read(spark, lake.table_path(s.lake, "silver", "events"))
    by = {r.attributed_by: r["count"] for r in events.groupBy("attributed_by").count().collect()}
    assert by.get("login", 0) > 0 and by.get("session", 0) + by.get("device", 0) > 0


def test_cli_generate_and_run(tmp_path, monkeypatch):
    from c360.cli import app

    runner = CliRunner()
    landing, lake_dir = tmp_path / "landing", tmp_path / "lake"
    r = runner.invoke(app, ["generate", "--customers", "120", "--days", "40", "--as-of", "2026-06-30",
                            "--seed", "3", "--landing", str(landing)])
    assert r.exit_code == 0, r.output
    assert "transactions" in r.output
    meta = json.loads((landing / "_meta" / "generation.json").read_text())
    assert meta["customers"] == 120
    r = runner.invoke(app, ["run", "--landing", str(landing), "--lake", str(lake_dir), "--as-of", "2026-06-30",
                            "--steps", "ingest,silver"])
    assert r.exit_code == 0, r.output
    assert "Ingestion" in r.output and "silver/customers" in r.output
    assert lake.exists(str(lake_dir / "silver" / "customers"))


@pytest.mark.parametrize("args, message", [
    (["run", "--as-of", "2026-13-01"], "--as-of must be a date YYYY-MM-DD"),
    (["run", "--as-of", "2026-06-30", "--steps", "ingest,bogus"], "unknown step(s): bogus"),
    (["run", "--as-of", "2026-06-30", "--landing", "/nonexistent/landing"], "does not exist"),
    (["generate", "--customers", "0", "--days", "5", "--as-of", "2026-06-30"], "customers"),
])
def test_cli_errors_are_one_clear_line(args, message, tmp_path):
    from c360.cli import app

    r = CliRunner().invoke(app, args + (["--lake", str(tmp_path / "lake")] if args[0] == "run" else
                                        ["--landing", str(tmp_path / "l")]))
    assert r.exit_code != 0
    assert message in r.output
    assert "Traceback" not in r.output

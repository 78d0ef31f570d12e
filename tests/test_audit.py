"""``ops/audit_log``: every job run leaves who, what it read and wrote, counts, status, error."""

from __future__ import annotations

import warnings
from datetime import date

import pytest

from c360 import lake
from jobs.pipeline import StepFailed, run_step
from test_quality import write_small_bank

AS_OF = date(2026, 6, 30)


def _run(spark, s, step, run_id):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return run_step(spark, s, step, AS_OF, run_id=run_id)


def test_each_step_records_versions_counts_user_and_status(spark, lake_settings, monkeypatch):
    s = lake_settings
    write_small_bank(s.landing)
    monkeypatch.setenv("C360_USER", "etl-bot")
    _run(spark, s, "ingest", "r1")
    _run(spark, s, "silver", "r1")
    audit = {r.job: r for r in lake.read(spark, lake.table_path(s.lake, "ops", "audit_log")).collect()}
    assert set(audit) == {"ingest", "silver"}
    ingest, silver = audit["ingest"], audit["silver"]
    assert (ingest.run_id, ingest.as_of, ingest.user, ingest.status, ingest.error) == ("r1", AS_OF, "etl-bot",
                                                                                      "succeeded", None)
    assert ingest.duration_s >= 0 and ingest.finished_at >= ingest.started_at
    # ingest wrote bronze tables; the counts are the rows now in them, read from the Delta log
    assert "bronze/customers" in ingest.output_versions
    bronze_rows = lake.read(spark, lake.table_path(s.lake, "bronze", "customers")).count()
    assert ingest.row_counts["bronze/customers"] == bronze_rows > 0
    # silver read exactly the bronze versions that ingest left, and wrote silver tables
    for table, version in silver.input_versions.items():
        assert table.startswith("bronze/")
        assert ingest.output_versions.get(table, version) == version
    assert set(silver.input_versions) >= {"bronze/customers", "bronze/transactions"}
    assert all(t.startswith(("silver/", "restricted/")) or t == "ops/derived_watermarks"
               for t in silver.output_versions)
    assert "silver/transactions_daily" in silver.output_versions
    assert silver.row_counts["silver/transactions"] == lake.read(
        spark, lake.table_path(s.lake, "silver", "transactions")).count()
    # bookkeeping and staging tables are not outputs
    assert not any(t.startswith("ops/run_log") or "_staging" in t for t in ingest.output_versions)


def test_a_failed_step_is_audited_with_its_error(spark, lake_settings):
    s = lake_settings
    with pytest.raises(StepFailed):
        _run(spark, s, "profile", "r2")  # no silver tables yet
    row = lake.read(spark, lake.table_path(s.lake, "ops", "audit_log")).collect()
    assert [(r.job, r.status) for r in row] == [("profile", "failed")]
    assert "silver/customers does not exist" in row[0].error
    assert row[0].output_versions == {}

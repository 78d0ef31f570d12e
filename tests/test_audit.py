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
    # (the customers' versions table, not bronze/customers: silver builds history from it)
    assert set(silver.input_versions) >= {"bronze/customers_versions", "bronze/transactions"}
    assert "bronze/customers" not in silver.input_versions
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


# ---------------------------------------------------------------------------------------
# input versions: the tables each step read, as recorded while it ran (issue #25)

D1 = date(2026, 7, 1)


@pytest.fixture(scope="module")
def two_days(spark, settings, tmp_path_factory):
    """A small clean bank (300 customers, 240 days, small models) through every step for
    AS_OF (train included) and the daily steps for the day after: by then every table a
    step can read exists before it starts. Returns the settings and the audit rows by
    (run id, job), oldest first."""
    from test_privacy import _ensure_champions
    from test_train import _fast_models

    from c360.synth import generate
    from jobs.pipeline import STEPS, run_steps

    root = tmp_path_factory.mktemp("audit_two_days")
    s = _fast_models(settings.with_paths(landing=root / "landing", lake=root / "lake"))
    generate(customers=300, days=240, as_of=D1, seed=5, landing=s.landing, dirty_rate=0.0)
    with pytest.MonkeyPatch.context() as mp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        run_steps(spark, s, AS_OF, list(STEPS), run_id="day1")
        _ensure_champions(s)  # a small bank's first model may stay challenger: score needs a champion
        run_steps(spark, s, D1, [x for x in STEPS if x != "train"], run_id="day2")
    rows = lake.read(spark, lake.table_path(s.lake, "ops", "audit_log")).orderBy("started_at").collect()
    return s, {(r.run_id, r.job): r for r in rows}


@pytest.mark.slow
def test_input_versions_are_the_tables_each_step_read_at_the_versions_it_found(two_days):
    _, audit = two_days
    assert all(r.status == "succeeded" for r in audit.values())
    inputs = {key: set(r.input_versions) for key, r in audit.items()}
    # what the declared list missed (issue #25): earlier dates' segments and personas,
    # events for the product signals, catalog and responses for the export, the persona model
    assert {"gold/customer_360", "gold/customer_segments", "gold/personas", "silver/feedback"} == \
        inputs["day2", "segments"]
    assert "silver/events" in inputs["day2", "score"]
    assert {"silver/product_catalog", "silver/campaign_responses"} <= inputs["day2", "export"]
    assert {"ops/persona_model", "gold/personas"} <= inputs["day1", "train"]
    # and no longer what a step writes without reading it first
    assert "ops/persona_model" not in inputs["day2", "segments"]
    # each version read is the one the last step writing that table left (steps run in order)
    latest: dict[str, int] = {}
    checked = 0
    for (run_id, job), row in audit.items():
        for table, version in row.input_versions.items():
            if table in latest:
                assert version == latest[table], (run_id, job, table)
                checked += 1
        assert not any("/_" in t for t in row.input_versions), (run_id, job)
        latest.update(row.output_versions)
    assert checked > 50


@pytest.mark.slow
def test_declared_step_inputs_are_what_the_steps_read(two_days):
    """``STEP_INPUTS`` (the declaration a table catalogue will take over) against the tables
    each step read: on the second day every step's inputs exist before it starts (train's
    on the first: it runs once). Both ways: every table read is declared, and every
    declaration was read."""
    from jobs.pipeline import STEP_INPUTS, STEPS

    _, audit = two_days

    def declares(w: str, table: str) -> bool:
        return table == w or (w.endswith("/") and table.startswith(w))

    # a clean bank quarantines nothing, so ingest merges no quarantine rows
    not_exercised = {("ingest", "quarantine/")}
    problems = []
    for step in STEPS:
        read = set(audit["day1" if step == "train" else "day2", step].input_versions)
        declared = STEP_INPUTS[step]
        problems += [f"{step} read {t}, not declared" for t in sorted(read)
                     if not any(declares(w, t) for w in declared)]
        problems += [f"{step} declares {w}, did not read it" for w in declared
                     if (step, w) not in not_exercised and not any(declares(w, t) for t in read)]
    assert problems == []

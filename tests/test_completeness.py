"""Delivery completeness (conf/quality.yaml ``completeness``, checked by dq_bronze).

The pure check (:func:`features.completeness.delivery_completeness`) on planted ingest
logs; the expected deliveries and their configuration; and a small generated bank with a
day of transactions deleted from its landing zone: dq_bronze stops the run naming the
source and the date, unless the day is lowered to a warning or marked known-missing, and
a late re-delivery is accepted and said to be late.
"""

from __future__ import annotations

import json
import shutil
import warnings
from datetime import date, datetime, timedelta, timezone

import pytest

from c360 import lake
from c360.quality import Completeness, expected_deliveries, parse_config
from c360.settings import ConfigError
from features.completeness import EXPECTED_SCHEMA, delivery_completeness
from jobs.pipeline import StepFailed, run_steps

AS_OF = date(2026, 6, 30)
FILES = "source string, delivery_date date, status string, rows_read bigint, rows_loaded bigint, " \
        "ingested_at timestamp"
RUNS = "as_of date, finished_at timestamp"


def d(day: int) -> date:
    return date(2026, 6, day)


def at(day: int, hour: int = 3) -> datetime:
    return datetime(2026, 6, day, hour, tzinfo=timezone.utc)


def check(spark, conf: dict, files: list[tuple], runs: list[tuple] = ()) -> dict[tuple, tuple]:
    """``(source, expected_to) -> (delivered, reason, files, rows_read, rows_loaded)``."""
    c = Completeness(**conf)
    expected = spark.createDataFrame(expected_deliveries(c, AS_OF), EXPECTED_SCHEMA)
    out = delivery_completeness(expected, spark.createDataFrame(files, FILES),
                                spark.createDataFrame(list(runs), RUNS)).collect()
    return {(r.source, r.expected_to): (r.delivered, r.reason, r.files, r.rows_read, r.rows_loaded) for r in out}


def loaded(source: str, day: int, rows: int = 10, loaded_rows: int | None = None, status: str = "loaded",
           ingested: datetime | None = None) -> tuple:
    return (source, d(day), status, rows, rows if loaded_rows is None else loaded_rows, ingested or at(30))


# ---------------------------------------------------------------------------------------
# the check on planted delivery logs


def test_a_daily_source_missing_one_day_is_a_critical_missing_delivery(spark):
    conf = {"lookback_days": 5, "sources": {"transactions": {"cadence": "daily", "severity": "critical"}}}
    files = [loaded("transactions", day) for day in (26, 27, 29, 30)]
    got = check(spark, conf, files)
    assert got == {("transactions", d(26)): (True, None, 1, 10, 10), ("transactions", d(27)): (True, None, 1, 10, 10),
                   ("transactions", d(28)): (False, "missing", 0, 0, 0),
                   ("transactions", d(29)): (True, None, 1, 10, 10), ("transactions", d(30)): (True, None, 1, 10, 10)}
    c = Completeness(**conf)
    severities = {r[3]: r[2] for r in expected_deliveries(c, AS_OF)}
    assert severities[d(28)] == "critical"


def test_dates_before_a_sources_first_delivery_are_not_expected_unless_it_never_delivered(spark):
    conf = {"lookback_days": 5, "sources": {"transactions": {"cadence": "daily"}, "events": {"cadence": "daily"}}}
    got = check(spark, conf, [loaded("transactions", 29), loaded("transactions", 30)])
    assert got == {("transactions", d(29)): (True, None, 1, 10, 10), ("transactions", d(30)): (True, None, 1, 10, 10),
                   **{("events", d(day)): (False, "missing", 0, 0, 0) for day in range(26, 31)}}


def test_a_weekly_source_delivered_within_the_week_is_ok(spark):
    conf = {"lookback_days": 14, "sources": {"holdings": {"cadence": "weekly", "severity": "warning"},
                                             "customers": {"cadence": "weekly", "weekday": "sunday"}}}
    # 2026-06-30 is a Tuesday: Sundays 06-21 and 06-28 in the 14 days ending then
    files = [loaded("holdings", 20), loaded("holdings", 26), loaded("customers", 21), loaded("customers", 28, 3)]
    got = check(spark, conf, files)
    assert got == {("holdings", d(30)): (True, None, 1, 10, 10),
                   ("customers", d(21)): (True, None, 1, 10, 10), ("customers", d(28)): (True, None, 1, 3, 3)}
    # the week without a holdings delivery
    got = check(spark, conf, [loaded("holdings", 20), loaded("customers", 21)])
    assert got[("holdings", d(30))] == (False, "missing", 0, 0, 0)
    assert got[("customers", d(28))] == (False, "missing", 0, 0, 0)


def test_an_optional_source_absent_expects_nothing(spark):
    conf = {"lookback_days": 7, "sources": {"events": {"cadence": "optional"}}}
    assert expected_deliveries(Completeness(**conf), AS_OF) == []
    assert check(spark, conf, []) == {}
    # a source not listed is optional too
    assert [r[0] for r in expected_deliveries(Completeness(lookback_days=2), AS_OF)] == ["transactions"] * 2


def test_a_fully_quarantined_or_header_only_delivery_is_delivered_but_empty(spark):
    conf = {"lookback_days": 4, "sources": {"transactions": {"cadence": "daily"}}}
    files = [loaded("transactions", 27),
             loaded("transactions", 28, rows=5, loaded_rows=0),  # every row quarantined
             loaded("transactions", 29, rows=0, status="quarantined"),  # unreadable file
             loaded("transactions", 30, rows=0),  # header only
             ("transactions", d(30), "rejected", 0, 0, at(30))]  # wrong path elsewhere: not counted
    got = check(spark, conf, files)
    assert got == {("transactions", d(27)): (True, None, 1, 10, 10),
                   ("transactions", d(28)): (True, "empty", 1, 5, 0),
                   ("transactions", d(29)): (True, "empty", 1, 0, 0),
                   ("transactions", d(30)): (True, "empty", 1, 0, 0)}


def test_a_delivery_ingested_after_the_run_that_should_have_had_it_is_late(spark):
    conf = {"lookback_days": 3, "sources": {"transactions": {"cadence": "daily"}}}
    runs = [(d(28), at(29, 1)), (d(29), at(30, 1)), (d(30), at(30, 23))]
    files = [loaded("transactions", 28, ingested=at(29, 0)),  # by the run of the 28th
             loaded("transactions", 29, ingested=at(30, 22)),  # after the run of the 29th finished
             loaded("transactions", 30, ingested=at(30, 22))]
    got = check(spark, conf, files, runs)
    assert got == {("transactions", d(28)): (True, None, 1, 10, 10),
                   ("transactions", d(29)): (True, "late", 1, 10, 10),
                   ("transactions", d(30)): (True, None, 1, 10, 10)}


def test_a_known_missing_date_is_not_missing_and_says_why(spark):
    conf = {"lookback_days": 3, "sources": {"transactions": {"cadence": "daily"}},
            "known_missing": [{"source": "transactions", "dates": ["2026-06-29"], "reason": "core banking outage"}]}
    assert [r[5] for r in expected_deliveries(Completeness(**conf), AS_OF)] == [None, "core banking outage", None]
    got = check(spark, conf, [loaded("transactions", 28), loaded("transactions", 30)])
    assert got[("transactions", d(29))] == (False, "known_missing", 0, 0, 0)


# ---------------------------------------------------------------------------------------
# configuration


@pytest.mark.unit
def test_shipped_configuration_makes_a_missing_day_of_transactions_critical():
    from c360.quality import load_config

    c = load_config().completeness
    assert (c.sources["transactions"].cadence, c.sources["transactions"].severity) == ("daily", "critical")
    assert Completeness().sources["transactions"].severity == "critical"  # also without the conf block


@pytest.mark.unit
@pytest.mark.parametrize("raw, error", [
    ({"sources": {"transaction": {"cadence": "daily"}}},
     "quality.completeness.sources: unknown source 'transaction' (did you mean transactions?)"),
    ({"sources": {"transactions": {"cadence": "hourly"}}},
     "quality.completeness.sources.transactions.cadence: Input should be 'daily', 'weekly' or 'optional'"),
    ({"sources": {"transactions": {"cadence": "daily", "weekday": "monday"}}},
     "quality.completeness.sources.transactions: weekday is for a weekly cadence, not daily"),
    ({"sources": {"holdings": {"cadence": "weekly", "weekday": "funday"}}},
     "quality.completeness.sources.holdings.weekday: Input should be 'monday'"),
    ({"sources": {"transactions": {"cadence": "daily", "severity": "fatal"}}},
     "quality.completeness.sources.transactions.severity: Input should be 'critical' or 'warning'"),
    ({"known_missing": [{"source": "txns", "dates": ["2026-06-29"], "reason": "x"}]},
     "quality.completeness.known_missing.0.source: unknown source 'txns'"),
    ({"known_missing": [{"dates": ["2026-06-29"]}]}, "quality.completeness.known_missing.0.reason: Field required"),
    ({"lookback_days": 0}, "quality.completeness.lookback_days: Input should be greater than or equal to 1"),
])
def test_completeness_configuration_errors_are_one_clear_line(raw, error):
    with pytest.raises(ConfigError) as excinfo:
        parse_config({"completeness": raw})
    assert error in str(excinfo.value) and "\n" not in str(excinfo.value)


# ---------------------------------------------------------------------------------------
# the gate on a generated bank with a day of transactions deleted

MISSING_DAY = AS_OF - timedelta(days=3)


def with_completeness(s, **block):
    quality = dict((s.extra or {}).get("quality") or {})
    quality["completeness"] = {**quality.get("completeness", {}), **block}
    return s.model_copy(update={"extra": {**(s.extra or {}), "quality": quality}})


def run_log(spark, s) -> list[tuple]:
    return sorted((r.run_id, r.step, r.status) for r in
                  lake.read(spark, lake.table_path(s.lake, "ops", "run_log")).collect())


@pytest.fixture(scope="module")
def gap(banks, settings, tmp_path_factory):
    """Settings on a copy of a small generated bank whose transactions of MISSING_DAY are deleted."""
    root = tmp_path_factory.mktemp("completeness")
    bank = banks.landing(customers=60, days=20, as_of=AS_OF, seed=5, dirty_rate=0.0)
    shutil.copytree(bank.landing, root / "landing")
    gone = root / "landing" / "transactions" / MISSING_DAY.isoformat()
    shutil.move(gone, root / "held_back")
    return settings.with_paths(landing=root / "landing", lake=root / "lake"), root


def test_a_missing_day_of_transactions_stops_the_run_at_dq_bronze_and_can_be_excused(spark, gap):
    s, root = gap
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(StepFailed) as excinfo:
            run_steps(spark, s, AS_OF, ["ingest", "dq_bronze", "silver", "dq_silver", "profile"], run_id="gap")
    assert excinfo.value.step == "dq_bronze"
    message = str(excinfo.value.cause)
    assert f"bronze/transactions expect_daily_delivery: missing {MISSING_DAY.isoformat()}" in message
    assert type(excinfo.value.cause).__name__ == "QualityGateFailed"
    # nothing downstream ran: no silver, no profile
    assert run_log(spark, s) == [("gap", "dq_bronze", "failed"), ("gap", "ingest", "succeeded")]
    assert not lake.exists(lake.table_path(s.lake, "silver", "transactions"))
    assert not lake.exists(lake.table_path(s.lake, "gold", "customer_360"))
    failed = lake.read(spark, lake.table_path(s.lake, "ops", "dq_results")) \
        .where("run_id = 'gap' AND NOT success").collect()
    assert [(r.suite, r.expectation, r.severity, r.observed_value, r.unexpected_count) for r in failed] == \
        [("bronze/transactions", "expect_daily_delivery", "critical", f"missing {MISSING_DAY.isoformat()}", 1)]
    assert json.loads(failed[0].details)["deliveries"] == [
        {"expected": MISSING_DAY.isoformat(), "reason": "missing", "files": 0, "rows_read": 0, "rows_loaded": 0}]

    # severity lowered to warning: reported and recorded, the run goes on
    lenient = with_completeness(s, sources={"transactions": {"cadence": "daily", "severity": "warning"}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = run_steps(spark, lenient, AS_OF, ["dq_bronze", "silver"], run_id="lenient")
    m = results[0].metrics
    assert m["failed_critical"] == 0
    assert m["warnings"] == [f"bronze/transactions expect_daily_delivery: missing {MISSING_DAY.isoformat()}"]
    assert [(r["source"], r["expected"], r["reason"]) for r in m["completeness"]["not_on_time"]] == \
        [("transactions", MISSING_DAY.isoformat(), "missing")]
    warned = lake.read(spark, lake.table_path(s.lake, "ops", "dq_results")) \
        .where("run_id = 'lenient' AND NOT success").collect()
    assert [(r.suite, r.severity, r.observed_value) for r in warned] == \
        [("bronze/transactions", "warning", f"missing {MISSING_DAY.isoformat()}")]
    logged = {r.step: r for r in lake.read(spark, lake.table_path(s.lake, "ops", "run_log"))
              .where("run_id = 'lenient'").collect()}
    assert {k: r.status for k, r in logged.items()} == {"dq_bronze": "succeeded", "silver": "succeeded"}
    assert json.loads(logged["dq_bronze"].metrics)["warnings"] == m["warnings"]

    # the day marked known-missing (a holiday, an outage): no warning, listed with the reason
    excused = with_completeness(s, known_missing=[{"source": "transactions", "dates": [MISSING_DAY.isoformat()],
                                                   "reason": "core banking outage"}])
    m = run_steps(spark, excused, AS_OF, ["dq_bronze"], run_id="excused")[0].metrics
    assert (m["failed_critical"], m["warnings"]) == (0, [])
    assert [(r["expected"], r["reason"], r["why"]) for r in m["completeness"]["not_on_time"]] == \
        [(MISSING_DAY.isoformat(), "known_missing", "core banking outage")]

    # delivered late: the next run ingests it, the gate passes and says it came late
    shutil.move(root / "held_back", s.landing / "transactions" / MISSING_DAY.isoformat())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = run_steps(spark, s, AS_OF, ["ingest", "dq_bronze"], run_id="redelivered")
    m = results[1].metrics
    assert (m["failed_critical"], m["warnings"]) == (0, [])
    assert [(r["expected"], r["reason"]) for r in m["completeness"]["not_on_time"]] == \
        [(MISSING_DAY.isoformat(), "late")]
    assert m["completeness"]["expected"] == 20 and m["completeness"]["delivered"] == 20


@pytest.mark.unit
def test_run_summary_lists_late_and_known_missing_deliveries():
    from rich.console import Console

    from c360.cli import _dq_tables

    m = {"layer": "bronze", "by_suite": {}, "skipped": [], "tolerated": [],
         "warnings": ["bronze/transactions expect_daily_delivery: missing 2026-06-27"],
         "completeness": {"expected": 3, "delivered": 1, "not_on_time": [
             {"source": "transactions", "expected": "2026-06-27", "reason": "missing"},
             {"source": "transactions", "expected": "2026-06-28", "reason": "late"},
             {"source": "transactions", "expected": "2026-06-29", "reason": "known_missing", "why": "outage"}]}}
    console = Console(record=True, width=200)
    for t in _dq_tables(m):
        console.print(t)
    text = console.export_text()
    assert "missing 2026-06-27" in text
    assert "transactions 2026-06-28: ingested after the run for its date" in text
    assert "transactions 2026-06-29: outage" in text

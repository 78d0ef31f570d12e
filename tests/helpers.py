"""Small builders for test DataFrames in the shape the landing reader produces."""

from __future__ import annotations

from datetime import date

from pyspark.sql import types as T

from c360.contract import SOURCES

DAY = date(2026, 6, 1)


def text_rows(spark, source: str, rows: list[dict], delivery_date: date = DAY, extras: tuple[str, ...] = ()):
    """A reader-shaped DataFrame: every contract column as text, plus reader metadata.

    ``rows`` give values by column name; a ``_row_error`` key sets a reader error.
    """
    cols = SOURCES[source].column_names + list(extras)
    fields = [T.StructField(c, T.StringType()) for c in cols] + [
        T.StructField("_source_file", T.StringType()), T.StructField("_delivery_date", T.DateType()),
        T.StructField("_line", T.LongType()), T.StructField("_raw", T.StringType()),
        T.StructField("_row_error", T.StringType())]
    data = [tuple(r.get(c) for c in cols) + (f"/landing/{source}/f.csv", r.get("_delivery_date", delivery_date),
                                             r.get("_line", i + 2), None, r.get("_row_error"))
            for i, r in enumerate(rows)]
    return spark.createDataFrame(data, T.StructType(fields))


def txn(**over) -> dict:
    base = dict(txn_id="T1", account_id="A1", customer_id="C1", txn_ts="2026-06-01T10:00:00", amount="12.50",
                direction="debit", currency="CNY", channel="pos", merchant_category="groceries")
    return base | over


def customer(**over) -> dict:
    base = dict(customer_id="C1", full_name="王小明", national_id="110101199001011234", phone="13800138000",
                email="xm@example.cn", birth_date="1990-01-15", gender="M", occupation="engineer",
                annual_income="250000.00", city="上海", home_branch_id="B01", onboarding_date="2020-03-01",
                risk_tolerance="R3", kyc_status="verified", marketing_consent="Y", preferred_language="zh",
                updated_at="2026-06-01T09:00:00")
    return base | over


def hypothesis_settings(pure_examples: int, engine_examples: int):
    """Hypothesis settings for a module's properties: ``(pure, with_engine)``.

    Nothing is generated inside the repository: no example database, and Hypothesis' home
    is a temporary folder removed at exit. ``with_engine`` also allows the function-scoped
    fixtures (the shared engine, tmp_path) that engine-backed properties take."""
    import atexit
    import shutil
    import tempfile

    from hypothesis import HealthCheck, settings
    from hypothesis.configuration import set_hypothesis_home_dir

    home = tempfile.mkdtemp(prefix="c360-hypothesis-")
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    set_hypothesis_home_dir(home)
    slow = [HealthCheck.too_slow, HealthCheck.data_too_large]
    return (settings(max_examples=pure_examples, deadline=None, database=None, suppress_health_check=slow),
            settings(max_examples=engine_examples, deadline=None, database=None,
                     suppress_health_check=[*slow, HealthCheck.function_scoped_fixture]))

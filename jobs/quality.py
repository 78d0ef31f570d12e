"""Data quality gates: run a layer's Great Expectations suites on its Delta tables.

Steps ``dq_bronze`` (after ingest), ``dq_silver`` (after silver) and ``dq_gold`` (after
score) call :func:`run`. The suites come from ``c360.quality`` (the contract +
``conf/quality.yaml``); each table is
validated by real GE on the engine: a file-based GE context under ``<lake>/ops/gx`` with a
Spark data source, one DataFrame asset per table, and a checkpoint per table run with the
table's Spark Connect DataFrame as the batch. GE computes its metrics in the engine
(aggregates, filtered counts, at most a few example rows come back to the driver).

Gold suites validate the table's as_of partition only. Comparisons with the previous as_of
partition (row count, segment shares) and the suitability check are GE custom SQL
expectations on that batch; what they compare with is computed in the engine first
(:func:`prepare_gold_check`: one count, or a share per segment as a temporary view). A gold
table that does not exist yet (no champion model: no recommendations) or has no rows for
as_of is skipped and listed with the reason, as is a comparison without a previous as_of.

Every result goes to the Delta table ``ops/dq_results`` (MERGE on run_id, suite,
expectation, column: a re-run of the same run replaces its rows), and the Data Docs site is
updated under ``<lake>/reports/dq``, with the scripts, styles and fonts its pages load copied
beside them (:func:`offline_docs`: the site works without internet); the pages show
delivered values (example unexpected values, observed values) as escaped text
(:func:`html_escaped`), never as markup. A failed ``critical`` expectation then raises
:class:`QualityGateFailed`, which stops the run; failed ``warning`` ones are only reported.

``dq_bronze`` also checks delivery completeness (:func:`delivery_outcomes`): each source's
expected deliveries for as_of (``conf/quality.yaml`` ``completeness``) against the ingest
log; a missing delivery fails ``bronze/<source> expect_<cadence>_delivery`` with the
source's severity, so a missing critical day stops the run before silver and profile.
"""

from __future__ import annotations

import copy
import html
import json
import logging
import math
import os
import warnings
from dataclasses import dataclass, replace
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, ClassVar

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from c360 import docs_assets, lake, ops, storage
from c360.ops import INGESTED_FILES_SCHEMA
from c360.quality import (CUSTOM_TYPES, EXISTS_IN_TABLE, ONE_CURRENT_ROW, RANKS_WITHIN_TOP_N, ROWS_NEAR_PREVIOUS,
                          RUNTIME_TYPES, SHARES_NEAR_PREVIOUS, VALID_KYC, WITHIN_RISK_TOLERANCE, Check, QualityConfig,
                          QualityGateFailed, config_from, expected_deliveries, row_level, suites)
from c360.settings import ConfigError, Settings
from features.completeness import EMPTY, EXPECTED_SCHEMA, KNOWN_MISSING, LATE, MISSING, delivery_completeness

# No usage statistics leave the machine.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

import great_expectations as gx  # noqa: E402
import great_expectations.expectations as gxe  # noqa: E402
from great_expectations.compatibility.pydantic import ValidationError as GXValidationError  # noqa: E402
from great_expectations.core.run_identifier import RunIdentifier  # noqa: E402
from great_expectations.data_context.types.base import ProgressBarsConfig  # noqa: E402
from great_expectations.data_context.types.resource_identifiers import ExpectationSuiteIdentifier  # noqa: E402
from great_expectations.expectations.expectation import (  # noqa: E402
    ColumnMapExpectation,
    ColumnPairMapExpectation,
    MulticolumnMapExpectation,
)
from great_expectations.constants import MAX_RESULT_RECORDS  # noqa: E402
from great_expectations.core.metric_domain_types import MetricDomainTypes  # noqa: E402
from great_expectations.core.result_format import ResultFormat  # noqa: E402
from great_expectations.execution_engine import SparkDFExecutionEngine  # noqa: E402
from great_expectations.expectations.metrics.metric_provider import metric_value  # noqa: E402
from great_expectations.expectations.metrics.query_metric_provider import QueryMetricProvider  # noqa: E402
from great_expectations.expectations.registry import get_expectation_impl  # noqa: E402

log = logging.getLogger(__name__)

UNIQUE_TYPES = ("expect_column_values_to_be_unique", "expect_compound_columns_to_be_unique")

DQ_RESULTS_SCHEMA = T.StructType([
    T.StructField("suite", T.StringType()),  # the table: silver/transactions
    T.StructField("expectation", T.StringType()),  # GE type, plus its qualifier if any
    T.StructField("column", T.StringType()),  # null for table-level expectations
    T.StructField("severity", T.StringType()),  # critical | warning
    T.StructField("success", T.BooleanType()),
    T.StructField("observed_value", T.StringType()),
    T.StructField("unexpected_count", T.LongType()),
    T.StructField("as_of", T.DateType()),
    T.StructField("run_id", T.StringType()),
    T.StructField("validated_at", T.TimestampType()),
    T.StructField("expectation_type", T.StringType()),  # the GE expectation type alone
    T.StructField("details", T.StringType()),  # JSON: example unexpected values, errors
])
DQ_RESULTS_KEY = ["run_id", "suite", "expectation", "column"]

# Per bronze/silver table: the rows ingested up to this instant have passed its row-level checks.
WATERMARK_SCHEMA = T.StructType([
    T.StructField("suite", T.StringType()),
    T.StructField("ingested_through", T.TimestampType()),
    T.StructField("as_of", T.DateType()),
    T.StructField("run_id", T.StringType()),
    T.StructField("validated_at", T.TimestampType()),
])
INGESTED = "_ingested_at"

SITE_NAME = "c360"
DATASOURCE = "c360_lake"
BATCH_DEFINITION = "whole_table"
EXAMPLES = 20  # unexpected values kept per failed expectation
NULL_SEGMENT = "(null)"  # a segment column's null value in share comparisons


# --- custom expectations: named UnexpectedRowsExpectation (GE's custom SQL expectation) ---


class UnexpectedRows(QueryMetricProvider):
    """An unexpected-rows query run once: ``{"count": n, "rows": [...]}`` with up to
    ``MAX_RESULT_RECORDS`` (200) rows. GE's own pair of metrics (``unexpected_rows_query.row_count``
    and ``.table``) runs the query twice, a count and a fetch; for a key's uniqueness that is
    two GROUP BYs over the table (49M transactions: 2 x 10 s). Here the rows are fetched
    once, one more than kept, and only when there are more than that is the query counted."""

    metric_name = "c360.unexpected_rows"
    value_keys = ("unexpected_rows_query",)
    query_param_name: ClassVar[str] = "unexpected_rows_query"

    @metric_value(engine=SparkDFExecutionEngine)
    def _spark(cls, execution_engine: SparkDFExecutionEngine, metric_domain_kwargs: dict, metric_value_kwargs: dict,
               metrics: dict, runtime_configuration: dict) -> dict:
        query = cls._get_query_from_metric_value_kwargs(metric_value_kwargs)
        df, _, _ = execution_engine.get_compute_domain(metric_domain_kwargs, domain_type=MetricDomainTypes.TABLE)
        df.createOrReplaceTempView("tmp_view")
        found = execution_engine.spark.sql(cls._format_query(query, batch="tmp_view"))
        rows = found.limit(MAX_RESULT_RECORDS + 1).collect()  # bounded
        count = len(rows) if len(rows) <= MAX_RESULT_RECORDS else found.count()
        return {"count": count, "rows": [r.asDict() for r in rows[:MAX_RESULT_RECORDS]]}


class _UnexpectedRowsWithExamples(gxe.UnexpectedRowsExpectation):
    """GE's custom SQL expectation with three changes:

    - the query runs once (:class:`UnexpectedRows`), not once for its count and once more
      for its rows;
    - ``mostly`` as in GE's column map expectations: success while unexpected rows are at
      most ``1 - mostly`` of the table's rows (GE's ``table.row_count`` metric);
    - a few example rows kept in BASIC/SUMMARY results too (GE's own reports them only in
      COMPLETE).
    """

    mostly: float = 1.0

    metric_dependencies: ClassVar[tuple[str, ...]] = (UnexpectedRows.metric_name, "table.row_count")
    success_keys: ClassVar[tuple[str, ...]] = (*gxe.UnexpectedRowsExpectation.success_keys, "mostly")

    def _validate(self, metrics: dict, runtime_configuration: dict | None = None, execution_engine=None):
        found = metrics[UnexpectedRows.metric_name]
        unexpected, total = found["count"], metrics.get("table.row_count")
        success = unexpected <= (1.0 - self.mostly) * total + 1e-9 if total else unexpected == 0
        result_format = self._get_result_format(runtime_configuration=runtime_configuration)
        if isinstance(result_format, dict):
            result_format = result_format.get("result_format", ResultFormat.SUMMARY)
        if result_format == ResultFormat.BOOLEAN_ONLY:
            return {"success": success}
        rows = found["rows"] if result_format == ResultFormat.COMPLETE else [
            {k: None if v is None else str(v) for k, v in r.items()} for r in found["rows"][:EXAMPLES]]
        result: dict[str, Any] = {"observed_value": unexpected, "details": {"unexpected_rows": rows}}
        if total is not None:
            result["element_count"] = total
            result["unexpected_percent"] = 100.0 * unexpected / total if total else 0.0
        return {"success": success, "result": result}


class ExpectColumnValuesToExistInTable(_UnexpectedRowsWithExamples):
    """Referential integrity: every non-null ``column`` value exists in ``ref_table.ref_column``."""

    column: str
    ref_table: str
    ref_column: str


class ExpectKeyToBeUnique(_UnexpectedRowsWithExamples):
    """Each value of ``column_list`` (one column, or a compound key) occurs in at most one
    row; the unexpected rows are every row of a repeated key, as GE's own uniqueness
    expectations count them (rows with the whole key null are not checked).

    Stands in for ``expect_column_values_to_be_unique`` / ``expect_compound_columns_to_be_unique``
    without ``mostly``: it runs as one GROUP BY, where GE's metric is a window over every
    row of the table, computed together with the other column checks (49M bronze
    transactions: about 18 GB of memory)."""

    column_list: list[str]


class ExpectExactlyOneCurrentRowPerKey(_UnexpectedRowsWithExamples):
    """SCD2 history: each ``column`` value has exactly one row whose ``current_flag`` is true."""

    column: str
    current_flag: str


class ExpectTableRowCountToBeNearPrevious(_UnexpectedRowsWithExamples):
    """The as_of partition has within ``max_change`` (relative) as many rows as the previous
    as_of partition (``previous_row_count`` rows on ``previous_as_of``)."""

    max_change: float
    previous_as_of: str
    previous_row_count: int


class ExpectColumnSharesToBeNearPrevious(_UnexpectedRowsWithExamples):
    """The share of rows per value of ``column`` moves by at most ``max_points`` percentage
    points from the previous as_of partition (its shares in the view ``previous_view``)."""

    column: str
    max_points: float
    previous_as_of: str
    previous_view: str


class ExpectRecommendationsWithinRiskTolerance(_UnexpectedRowsWithExamples):
    """No recommended product is rated above the customer's risk tolerance; a customer without
    a valid assessment gets only products rated up to ``unassessed_max_risk`` (and no unrated
    ones). The rules of ``models.scoring.rule_failures``."""

    customers_view: str
    products_view: str
    unassessed_max_risk: int


class ExpectRecommendedCustomersToHaveValidKyc(_UnexpectedRowsWithExamples):
    """Every recommended customer's KYC status at as_of (the view ``customers_view``) is,
    trimmed and in lower case, one of ``valid_statuses``; none is not valid. The KYC gate
    of ``models.scoring.rule_failures``."""

    customers_view: str
    valid_statuses: list[str]


class ExpectRecommendationRanksWithinTopN(_UnexpectedRowsWithExamples):
    """Every recommendation's ``rank`` is within 1..``top_n`` (conf/scoring.yaml
    ``scoring.top_n``, the ranks the score step keeps)."""

    top_n: int


def ref_view(table: str) -> str:
    """Temporary view holding a referenced table during validation (``dq_ref_silver_customers``)."""
    return "dq_ref_" + table.replace("/", "_")


def _q(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def to_expectation(check: Check, index: int):
    """The GE expectation for ``check``; ConfigError names the check if its arguments are wrong."""
    meta = {"c360_index": index, "origin": check.origin}
    kw = dict(check.kwargs)
    try:
        if check.type == EXISTS_IN_TABLE:
            col, ref_col = kw["column"], kw["ref_column"]
            # The referenced values (distinct, see run) are the join's left (build) side and the
            # checked table streams past them. Written as "t LEFT ANTI JOIN r" the engine held
            # the checked column in memory: 124 s against 15 s for 49M transactions' account_id
            # in 2.7M accounts (the same 154 orphans).
            query = (f"SELECT t.{_q(col)} FROM {ref_view(kw['ref_table'])} r RIGHT JOIN " + "{batch}"
                     + f" t ON t.{_q(col)} = r.{_q(ref_col)} WHERE r.{_q(ref_col)} IS NULL AND t.{_q(col)} IS NOT NULL")
            mostly = float(kw.get("mostly", 1.0))
            share = "Every" if mostly >= 1.0 else f"At least {mostly:.4g} of the"
            return ExpectColumnValuesToExistInTable(
                column=col, ref_table=kw["ref_table"], ref_column=ref_col, unexpected_rows_query=query,
                mostly=mostly, description=f"{share} {col} values exist in {kw['ref_table']}.{ref_col}",
                severity=check.severity, meta=meta)
        if check.type in UNIQUE_TYPES and set(kw) <= {"column", "column_list", "mostly"} \
                and float(kw.get("mostly", 1.0)) >= 1.0:
            cols = [kw["column"]] if check.type == UNIQUE_TYPES[0] else list(kw["column_list"])
            keys = ", ".join(_q(c) for c in cols)
            checked = " OR ".join(f"{_q(c)} IS NOT NULL" for c in cols)
            query = (f"SELECT {keys} FROM (SELECT {keys}, explode(sequence(1, _n)) AS _i FROM (SELECT {keys}, "
                     "CAST(count(*) AS INT) AS _n FROM {batch}" + f" WHERE {checked} GROUP BY {keys} "
                     "HAVING count(*) > 1) d) e")
            return ExpectKeyToBeUnique(
                column_list=cols, unexpected_rows_query=query, description=f"{', '.join(cols)} unique",
                severity=check.severity, meta=meta)
        if check.type == ONE_CURRENT_ROW:
            col, flag = kw["column"], kw["current_flag"]
            query = (f"SELECT {_q(col)}, count_if({_q(flag)}) AS current_rows FROM " + "{batch}"
                     + f" GROUP BY {_q(col)} HAVING count_if({_q(flag)}) <> 1")
            return ExpectExactlyOneCurrentRowPerKey(
                column=col, current_flag=flag, unexpected_rows_query=query,
                description=f"Exactly one row with {flag} = true per {col}", severity=check.severity, meta=meta)
        if check.type == ROWS_NEAR_PREVIOUS:
            lo, hi, prev = int(kw["min_value"]), int(kw["max_value"]), int(kw["previous_row_count"])
            query = (f"SELECT row_count, {prev} AS previous_row_count FROM (SELECT count(*) AS row_count FROM "
                     + "{batch}" + f") t WHERE row_count < {lo} OR row_count > {hi}")
            return ExpectTableRowCountToBeNearPrevious(
                max_change=float(kw["max_change"]), previous_as_of=str(kw["previous_as_of"]),
                previous_row_count=prev, unexpected_rows_query=query,
                description=f"Row count within ±{100 * float(kw['max_change']):.4g}% of the "
                            f"{kw['previous_as_of']} partition ({prev} rows): {lo} to {hi}",
                severity=check.severity, meta=meta)
        if check.type == SHARES_NEAR_PREVIOUS:
            col, view, points = kw["column"], kw["previous_view"], float(kw["max_points"])
            seg = f"coalesce(CAST({_q(col)} AS STRING), '{NULL_SEGMENT}')"
            query = (f"WITH cur AS (SELECT {seg} AS segment, count(*) AS n FROM " + "{batch}" + f" GROUP BY {seg}), "
                     "tot AS (SELECT sum(n) AS total FROM cur), "
                     "c AS (SELECT segment, n / total AS share FROM cur CROSS JOIN tot) "
                     "SELECT coalesce(c.segment, p.segment) AS segment, p.share AS previous_share, c.share AS share "
                     f"FROM c FULL OUTER JOIN {view} p ON c.segment = p.segment "
                     f"WHERE abs(coalesce(c.share, 0) - coalesce(p.share, 0)) > {points / 100.0 + 1e-9!r}")
            return ExpectColumnSharesToBeNearPrevious(
                column=col, max_points=points, previous_as_of=str(kw["previous_as_of"]), previous_view=view,
                unexpected_rows_query=query,
                description=f"The share of customers per {col} moves by at most {points:.4g} percentage points "
                            f"from {kw['previous_as_of']}",
                severity=check.severity, meta=meta)
        if check.type == WITHIN_RISK_TOLERANCE:
            cust, prod, top = kw["customers_view"], kw["products_view"], int(kw["unassessed_max_risk"])
            query = ("SELECT r.customer_id, r.product_code, c.risk_level AS customer_risk_level, "
                     "p.product_risk_level FROM {batch} r "
                     f"LEFT JOIN {cust} c ON r.customer_id = c.customer_id "
                     f"LEFT JOIN {prod} p ON r.product_code = p.product_code "
                     "WHERE CASE WHEN c.risk_level IS NOT NULL "
                     "THEN coalesce(p.product_risk_level > c.risk_level, false) "
                     f"ELSE (p.product_risk_level IS NULL OR p.product_risk_level > {top}) END")
            return ExpectRecommendationsWithinRiskTolerance(
                customers_view=cust, products_view=prod, unassessed_max_risk=top, unexpected_rows_query=query,
                description="No recommended product is rated above the customer's risk tolerance "
                            f"(without a valid assessment: rated R1-R{top} only)",
                severity=check.severity, meta=meta)
        if check.type == VALID_KYC:
            cust, valid = kw["customers_view"], [str(v) for v in kw["valid_statuses"]]
            listed = ", ".join("'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'" for v in valid)
            query = ("SELECT r.customer_id, r.product_code, c.kyc_status FROM {batch} r "
                     f"LEFT JOIN {cust} c ON r.customer_id = c.customer_id "
                     f"WHERE c.kyc_status IS NULL OR lower(trim(c.kyc_status)) NOT IN ({listed})")
            return ExpectRecommendedCustomersToHaveValidKyc(
                customers_view=cust, valid_statuses=valid, unexpected_rows_query=query,
                description=f"Every recommended customer's KYC status is one of {', '.join(valid)}",
                severity=check.severity, meta=meta)
        if check.type == RANKS_WITHIN_TOP_N:
            top = int(kw["top_n"])
            query = ("SELECT customer_id, product_code, `rank` FROM {batch} "
                     f"WHERE `rank` IS NULL OR `rank` < 1 OR `rank` > {top}")
            return ExpectRecommendationRanksWithinTopN(
                top_n=top, unexpected_rows_query=query,
                description=f"Every rank within 1..{top} (scoring.top_n)", severity=check.severity, meta=meta)
        impl = get_expectation_impl(check.type)
        return impl(**kw, severity=check.severity, meta=meta)
    except (GXValidationError, TypeError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()
        why = " ".join(first[:3]) if first else type(exc).__name__
        raise ConfigError(f"quality.yaml: {check.label}: invalid expectation arguments: {why}") from None


# --- results ---


@dataclass
class Outcome:
    check: Check
    success: bool
    observed_value: str | None
    unexpected_count: int | None
    details: dict

    @property
    def message(self) -> str:
        if self.details.get("error"):
            what = f"error: {self.details['error']}"
        elif self.unexpected_count is not None and self.check.type in RUNTIME_TYPES and \
                self.details.get("unexpected_rows"):
            what = f"{self.unexpected_count} unexpected ({_describe(self.check, self.details['unexpected_rows'])})"
        elif self.unexpected_count is not None:
            what = f"{self.unexpected_count} unexpected"
        elif self.observed_value is not None:
            what = f"observed {self.observed_value}"
        else:
            what = "failed"
        return f"{self.check.label}: {what}"


def _pct(v: Any) -> str:
    return "none" if v in (None, "None") else f"{100 * float(v):.1f}%"


def _risk(v: Any) -> str:
    return "not assessed" if v in (None, "None") else f"R{v}"


def _describe(check: Check, rows: list[dict]) -> str:
    """The unexpected rows of a gold drift or suitability check, in words (a few of them)."""
    kw = check.kwargs
    if check.type == ROWS_NEAR_PREVIOUS:
        r = rows[0]
        now, before = int(r["row_count"]), int(r["previous_row_count"])
        change = (now - before) / before if before else float("inf")
        return (f"{now} rows vs {before} on {kw.get('previous_as_of')}: {change:+.1%}, "
                f"allowed ±{float(kw['max_change']):.0%}")
    if check.type == SHARES_NEAR_PREVIOUS:
        moved = sorted(rows, key=lambda r: str(r["segment"]))[:5]
        return (f"shares moved more than {float(kw['max_points']):.4g} points since {kw.get('previous_as_of')}: "
                + ", ".join(f"{r['segment']} {_pct(r['previous_share'])} -> {_pct(r['share'])}" for r in moved))
    if check.type == WITHIN_RISK_TOLERANCE:
        shown = sorted(rows, key=lambda r: (str(r["customer_id"]), str(r["product_code"])))[:3]
        return "; ".join(f"{r['customer_id']} {r['product_code']}: product "
                         f"{'unrated' if r['product_risk_level'] in (None, 'None') else 'R' + str(r['product_risk_level'])}"
                         f", customer {_risk(r['customer_risk_level'])}" for r in shown)
    if check.type == VALID_KYC:
        shown = sorted(rows, key=lambda r: (str(r["customer_id"]), str(r["product_code"])))[:3]
        return "; ".join(f"{r['customer_id']} {r['product_code']}: KYC "
                         f"{'none' if r['kyc_status'] in (None, 'None') else repr(r['kyc_status'])}" for r in shown)
    if check.type == RANKS_WITHIN_TOP_N:
        shown = sorted(rows, key=lambda r: (str(r["customer_id"]), str(r["product_code"])))[:3]
        return f"top_n {kw.get('top_n')}: " + "; ".join(
            f"{r['customer_id']} {r['product_code']} rank {r['rank']}" for r in shown)
    return ""


def _exception_message(r) -> str | None:
    info = r.exception_info or {}
    if "raised_exception" in info:
        infos = [info]
    else:  # keyed by metric
        infos = [v for v in info.values() if isinstance(v, dict)]
    for i in infos:
        if i.get("raised_exception"):
            return str(i.get("exception_message") or "exception")[:500]
    return None


def _short(value: Any, limit: int = 500) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _example(v: Any) -> Any:
    """An unexpected value as text: a value, a pair's values (a list) or a row (column -> value)."""
    if isinstance(v, dict):
        return {k: str(x) for k, x in v.items()}
    if isinstance(v, (tuple, list)):
        return [str(x) for x in v]
    return str(v)


def _outcome(check: Check, r) -> Outcome:
    res = dict(r.result or {})
    details: dict[str, Any] = {}
    error = _exception_message(r)
    if error:
        details["error"] = error
    unexpected = res.get("unexpected_count")
    observed = res.get("observed_value")
    if check.type in CUSTOM_TYPES or r.expectation_config.type in ("unexpected_rows_expectation",
                                                                    ExpectKeyToBeUnique.expectation_type):
        unexpected = observed if isinstance(observed, int) else None
        rows = (res.get("details") or {}).get("unexpected_rows")
        if rows:
            details["unexpected_rows"] = [{k: str(v) for k, v in dict(x).items()} for x in list(rows)[:EXAMPLES]]
    elif res.get("partial_unexpected_list"):
        details["partial_unexpected_list"] = [_example(v) for v in res["partial_unexpected_list"][:EXAMPLES]]
    if observed is None and unexpected is not None and res.get("element_count") is not None:
        pct = res.get("unexpected_percent")
        observed = f"{unexpected} of {res['element_count']} unexpected" + (f" ({pct:.4g}%)" if pct else "")
    for k in ("element_count", "unexpected_percent", "missing_count"):
        if res.get(k) is not None:
            details[k] = res[k]
    success = bool(r.success) and not error
    return Outcome(check, success, _short(observed), None if unexpected is None else int(unexpected), details)


def record(spark: SparkSession, lake_dir, outcomes: list[Outcome], as_of: date, run_id: str,
           validated_at: datetime) -> None:
    """Upsert outcomes into ``ops/dq_results`` (idempotent per run, suite, expectation, column)."""
    if not outcomes:
        return
    path = lake.table_path(lake_dir, "ops", "dq_results")
    lake.create_if_missing(spark, path, DQ_RESULTS_SCHEMA)
    rows = [(o.check.suite, o.check.name, o.check.column, o.check.severity, o.success, o.observed_value,
             o.unexpected_count, as_of, run_id, validated_at, o.check.type,
             json.dumps(o.details, default=str, ensure_ascii=False) if o.details else None) for o in outcomes]
    lake.merge(spark, spark.createDataFrame(rows, DQ_RESULTS_SCHEMA), path, DQ_RESULTS_KEY, update_when="")


# --- the GE context ---


def docs_dir(lake_dir) -> Path | str:
    return storage.join(lake_dir, "reports", "dq") if storage.is_uri(lake_dir) else Path(lake_dir) / "reports" / "dq"


# what GE keeps of a lake: a lake on object storage has them copied to a local folder for a
# step and the changes uploaded afterwards (c360.storage.local_mirror)
GX_PREFIXES = ("ops/gx", "reports/dq")


def gx_context(lake_dir, config: QualityConfig):
    """The file-based GE context of this lake (``<lake>/ops/gx``), Data Docs in ``<lake>/reports/dq``.
    ``lake_dir`` is local (GE writes only local files): see :data:`GX_PREFIXES`."""
    ctx = gx.get_context(mode="file", project_root_dir=str(Path(lake_dir) / "ops"))
    # No config variables file (GE's place for secrets; we have none): otherwise GE re-parses
    # it with ruamel.yaml on every configuration lookup, hundreds of times per step.
    if ctx.variables.config_variables_file_path:
        ctx.variables.config_variables_file_path = None
        ctx.variables.save()
    bars = ctx.variables.progress_bars
    if (bars.get("globally") if isinstance(bars, dict) else getattr(bars, "globally", True)) is not False:
        ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        ctx.variables.save()
    site = {
        "class_name": "SiteBuilder",
        "show_how_to_buttons": False,
        "store_backend": {"class_name": "TupleFilesystemStoreBackend",
                          "base_directory": str(docs_dir(lake_dir).resolve())},
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder",
                               "validation_results_limit": config.docs.index_limit},
    }
    sites = ctx.variables.data_docs_sites or {}
    if "local_site" in sites:
        ctx.delete_data_docs_site("local_site")
    if SITE_NAME not in sites:
        ctx.add_data_docs_site(site_name=SITE_NAME, site_config=site)
    elif sites[SITE_NAME] != site:
        ctx.update_data_docs_site(site_name=SITE_NAME, site_config=site)
    return ctx


def offline_docs(local_docs: Path) -> str:
    """Point the Data Docs pages at the browser assets shipped with the lake
    (:mod:`c360.docs_assets`), so that they work without internet. Without the assets
    installed the pages keep GE's CDN links: said in the step's result and logged, the
    gate itself is not affected."""
    try:
        pages = docs_assets.localize(local_docs)
    except docs_assets.AssetsMissing as e:
        log.warning("Data Docs need internet: %s", e)
        return f"no: {e}"
    return f"yes ({pages} pages pointed at {docs_assets.VENDOR})"


def _datasource(ctx, spark: SparkSession):
    try:
        ds = ctx.data_sources.get(DATASOURCE)
    except Exception:  # noqa: BLE001 - GE raises different types for "not found" across versions
        ds = ctx.data_sources.add_spark(name=DATASOURCE, persist=False)
    # Validate with the DataFrames' own Spark Connect session (GE would otherwise call
    # SparkSession.builder.getOrCreate(), which may pick another session).
    ds._spark = spark
    return ds


def _batch_definition(ds, asset_name: str):
    try:
        asset = ds.get_asset(asset_name)
    except LookupError:
        asset = ds.add_dataframe_asset(name=asset_name)
    try:
        return asset.get_batch_definition(BATCH_DEFINITION)
    except (KeyError, LookupError, ValueError):
        return asset.add_batch_definition_whole_dataframe(BATCH_DEFINITION)


def gx_name(table: str) -> str:
    """GE store keys cannot contain '/': ``silver/transactions`` -> ``silver.transactions``."""
    return table.replace("/", ".")


def validate_table(ctx, ds, table: str, expectations: list, df, run_name: str, run_time: datetime,
                   result_format: str):
    """Run one table's suite through a GE checkpoint; (suite validation result, its id)."""
    name = gx_name(table)
    bd = _batch_definition(ds, name)
    suite = ctx.suites.add_or_update(gx.ExpectationSuite(name=name, expectations=expectations,
                                                         meta={"table": table}))
    vd = ctx.validation_definitions.add_or_update(gx.ValidationDefinition(name=name, data=bd, suite=suite))
    cp = ctx.checkpoints.add_or_update(gx.Checkpoint(name=name, validation_definitions=[vd], actions=[],
                                                     result_format={"result_format": result_format}))
    result = cp.run(batch_parameters={"dataframe": df},
                    run_id=RunIdentifier(run_name=run_name, run_time=run_time))
    (vrid, vr), = result.run_results.items()
    # What Data Docs render: the stored copy, with delivered values as HTML text.
    ctx.validation_results_store.set(vrid, html_escaped(vr))
    return vr, vrid


def _escape_values(value: Any) -> Any:
    if isinstance(value, str):
        return html.escape(value, quote=True)
    if isinstance(value, dict):
        return {k: _escape_values(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_escape_values(v) for v in value]
    return value


def html_escaped(vr):
    """A copy of a suite validation result whose ``result`` values (observed values, example
    unexpected values and rows) are HTML-escaped text.

    GE's Data Docs put those values into table cells as they are (its ``.j2`` templates are
    not auto-escaped; only string-template parameters are escaped), so a delivered value
    such as ``<script>...</script>`` would run in the reader's browser. The copy is what
    the GE validation store keeps and Data Docs render; ``ops/dq_results`` and the run's
    messages take the values from the original, unchanged. Expectation arguments and
    exception messages are left to GE, which escapes them (escaping them here too would
    show ``&amp;lt;`` on the page)."""
    out = copy.deepcopy(vr)
    for r in out.results:
        if r.result:
            r.result = _escape_values(dict(r.result))
    return out


def _all_or_nothing(check: Check, exp) -> bool:
    """A check that passes only with no unexpected row at all: a map expectation over one
    column (not null, in set, between...), a pair or several columns, without ``mostly``.
    (Key uniqueness without ``mostly`` is not one of them: :class:`ExpectKeyToBeUnique`.)"""
    return (isinstance(exp, (ColumnMapExpectation, ColumnPairMapExpectation, MulticolumnMapExpectation))
            and check.type not in CUSTOM_TYPES
            and float(check.kwargs.get("mostly", 1.0)) >= 1.0)


def validate_checks(ctx, ds, name: str, checks: list, rows, run_name: str, run_time: datetime,
                    result_format: str) -> tuple[list[Outcome], list]:
    """Outcomes of ``checks`` (pairs of check and GE expectation) on ``rows``, and the GE
    result and suite ids (for Data Docs).

    With ``BASIC``, the all-or-nothing checks (:func:`_all_or_nothing`) first run as
    ``BOOLEAN_ONLY``: GE then computes all their counts in one aggregate over the rows,
    where ``BASIC`` scans the rows once more per check for example values (on 49M
    transactions that was most of the gate's time). A check that passes there has no
    unexpected row; those that fail run again, with the other checks, in ``BASIC`` (suite
    ``<name>/details``), for their counts and examples.
    """
    outcomes: list[Outcome] = []
    ids: list = []
    quick = [a for a in checks if _all_or_nothing(*a)] if result_format == "BASIC" else []
    rest = [a for a in checks if not any(a is q for q in quick)]
    if quick:
        vr, vrid = validate_table(ctx, ds, name, [e for _, e in quick], rows, run_name, run_time, "BOOLEAN_ONLY")
        ids += [vrid, ExpectationSuiteIdentifier(name=gx_name(name))]
        for r in vr.results:
            check, exp = quick[_index(r, quick)]
            if r.success and not _exception_message(r):
                outcomes.append(Outcome(check, True, "0 unexpected", 0, {}))
            else:  # GE: an expectation belongs to one suite; the details suite gets a copy
                rest.append((check, copy.copy(exp)))
    if rest:
        suite = f"{name}/details" if quick else name
        vr, vrid = validate_table(ctx, ds, suite, [e for _, e in rest], rows, run_name, run_time, result_format)
        ids += [vrid, ExpectationSuiteIdentifier(name=gx_name(suite))]
        outcomes += [_outcome(rest[_index(r, rest)][0], r) for r in vr.results]
    return outcomes, ids


# --- the step ---


def run(spark: SparkSession, settings: Settings, layer: str, as_of: date, run_id: str, progress=None,
        config: QualityConfig | None = None, tables: list[str] | None = None) -> dict[str, Any]:
    """Validate every existing table of ``layer`` (or only ``tables``, e.g. ``["silver/holdings"]``);
    raise QualityGateFailed when a critical expectation fails."""
    config = config or config_from(settings)
    plan = suites(config, layer, as_of)
    if tables is not None:
        unknown = sorted(set(tables) - set(plan))
        if unknown:
            raise ValueError(f"no {layer} suite for {', '.join(unknown)}; suites are {', '.join(plan)}")
        plan = {t: checks for t, checks in plan.items() if t in tables}
    # Build every expectation first: wrong arguments stop the step before any validation.
    # (Gold comparisons are built when their runtime arguments are known; conf validated them.)
    built = {table: [(i, c, None if c.type in RUNTIME_TYPES else to_expectation(c, i)) for i, c in enumerate(checks)]
             for table, checks in plan.items()}
    lake_dir = settings.lake
    validated_at = ops.utcnow()
    run_time = validated_at.replace(tzinfo=timezone.utc)
    outcomes: list[Outcome] = []
    watermarks: list[tuple[str, datetime | None]] = []
    skipped: list[str] = []
    by_suite: dict[str, dict[str, int]] = {}
    result_ids: list = []
    views: set[str] = set()
    ctx = ds = None
    step = f"dq_{layer}"
    with warnings.catch_warnings(), storage.local_mirror(lake_dir, GX_PREFIXES) as gx_root:
        warnings.filterwarnings("ignore", module="great_expectations")
        for n, (table, triples) in enumerate(built.items()):
            if progress:
                progress(f"{step} {table}", n, len(built))
            path = lake.table_path(lake_dir, *table.split("/"))
            if not lake.exists(path):
                skipped.append(f"{table}: table absent" + (f" ({GOLD_ABSENT[table]})" if table in GOLD_ABSENT else ""))
                continue
            df = lake.read(spark, path)
            if layer == "gold":  # gold tables are partitioned by as_of_date: check this run's date
                df = df.where(as_of_partition(as_of))
                if df.limit(1).count() == 0:
                    skipped.append(f"{table}: no rows for as_of {as_of.isoformat()}")
                    continue
            # incremental: row-level checks on the rows new since the table last passed
            scope = _scope(spark, lake_dir, table, df, config) if layer in ("bronze", "silver") else None
            active = []
            for i, check, exp in triples:
                if check.type == EXISTS_IN_TABLE:
                    ref = check.kwargs["ref_table"]
                    ref_path = lake.table_path(lake_dir, *ref.split("/"))
                    if not lake.exists(ref_path):
                        skipped.append(f"{check.label}: {ref} absent")
                        continue
                    lake.read(spark, ref_path).select(check.kwargs["ref_column"]).distinct() \
                        .createOrReplaceTempView(ref_view(ref))
                    views.add(ref_view(ref))
                elif check.type in RUNTIME_TYPES:
                    check, note = prepare_gold_check(spark, settings, check, path, as_of, views)
                    if note:
                        skipped.append(f"{check.label}: {note}")
                        continue
                    exp = to_expectation(check, i)
                active.append((check, exp))
            if not active:
                continue
            if ctx is None:
                ctx = gx_context(gx_root, config)
                ds = _datasource(ctx, spark)
            # (suite name, checks, rows): one run on the whole table, or two when scoped
            runs = [(table, active, df)]
            if scope is not None:
                rows_new, whole = scope.rows, [a for a in active if not row_level(a[0])]
                runs = [(table, [a for a in active if row_level(a[0])], rows_new),
                        (f"{table}/whole", whole, df)]
            got = []
            for name, checks, rows in runs:
                if checks:
                    found, ids = validate_checks(ctx, ds, name, checks, rows, run_id, run_time, config.result_format)
                    got += found
                    result_ids += ids
            outcomes += got
            by_suite[table] = {"expectations": len(got), "failed": sum(not o.success for o in got)}
            if scope is not None:
                by_suite[table]["rows_checked"] = scope.describe
                if not any(not o.success and o.check.severity == "critical" for o in got):
                    watermarks.append((table, scope.through))
        for view in views:
            try:
                spark.catalog.dropTempView(view)
            except Exception:  # noqa: BLE001 - the view may not have been created
                pass
        docs = docs_offline = None
        if ctx is not None and config.docs.enabled and result_ids:
            ctx.build_data_docs(site_names=[SITE_NAME], resource_identifiers=result_ids)
            docs = storage.join(docs_dir(lake_dir), "index.html")
            docs_offline = offline_docs(docs_dir(gx_root))
    completeness = None
    if layer == "bronze":
        sources = [t.split("/", 1)[1] for t in plan] if tables is not None else None
        found, completeness = delivery_outcomes(spark, settings, config, as_of, sources)
        outcomes += found
    if progress:
        progress(step, len(built), len(built))
    record(spark, lake_dir, outcomes, as_of, run_id, validated_at)
    save_watermarks(spark, lake_dir, watermarks, as_of, run_id, validated_at)
    failures = [o for o in outcomes if not o.success and o.check.severity == "critical"]
    warned = [o for o in outcomes if not o.success and o.check.severity != "critical"]
    # passed thanks to a `mostly` threshold, yet with unexpected rows: reported, not failed
    tolerated = [o for o in outcomes if o.success and o.unexpected_count and "mostly" in o.check.kwargs]
    for o in warned:
        log.warning("data quality warning: %s", o.message)
    if failures:
        raise QualityGateFailed(failures, warned)
    return {
        "layer": layer,
        "suites": len(by_suite),
        "expectations": len(outcomes),
        "failed_critical": 0,
        "failed_warning": len(warned),
        "warnings": [o.message for o in warned],
        "tolerated": [f"{o.message} (within mostly={o.check.kwargs['mostly']})" for o in tolerated],
        "skipped": skipped,
        "by_suite": by_suite,
        "data_docs": docs,
        "data_docs_offline": docs_offline,
        **({"completeness": completeness} if completeness is not None else {}),
    }


# --- delivery completeness (dq_bronze) ---


@dataclass
class DeliveryOutcome(Outcome):
    """The outcome of a source's delivery check; its message names the dates:
    ``bronze/transactions expect_daily_delivery: missing 2026-06-27``."""

    @property
    def message(self) -> str:
        return f"{self.check.label}: {self.observed_value}"


NOT_ON_TIME_LISTED = 100  # deliveries listed in the step's metrics (all are in ops/dq_results)


def _expected_label(r) -> str:
    if r["expected_from"] == r["expected_to"]:
        return r["expected_to"].isoformat()
    return f"{r['expected_from'].isoformat()}..{r['expected_to'].isoformat()}"


def _dates(rows: list) -> str:
    shown = ", ".join(_expected_label(r) for r in rows[:5])
    return shown + (f" and {len(rows) - 5} more" if len(rows) > 5 else "")


def _delivery(r) -> dict:
    out = {"expected": _expected_label(r), "reason": r["reason"], "files": r["files"], "rows_read": r["rows_read"],
           "rows_loaded": r["rows_loaded"]}
    if r["reason"] == KNOWN_MISSING:
        out["why"] = r["known_missing"]
    return out


def delivery_outcomes(spark: SparkSession, settings: Settings, config: QualityConfig, as_of: date,
                      sources: list[str] | None = None) -> tuple[list[Outcome], dict]:
    """Delivery completeness for ``as_of`` (conf ``completeness``, of ``sources`` or all):
    per source with expected deliveries, ``bronze/<source> expect_<cadence>_delivery``
    (failed with the source's severity when a delivery is missing) and
    ``bronze/<source> expect_delivered_rows`` (a warning when a delivery loaded no row:
    header only, or every row quarantined); and a summary for the step's metrics.

    Reads the ingest log (``ops/ingested_files``) and the ingest steps of ``ops/run_log``
    (one row per file and per run: small); a lake without them has had nothing delivered."""
    expected = expected_deliveries(config.completeness, as_of, sources)
    if not expected:
        return [], {"expected": 0, "delivered": 0, "not_on_time": []}
    files_path = lake.table_path(settings.lake, "ops", "ingested_files")
    files = lake.read(spark, files_path) if lake.exists(files_path) else spark.createDataFrame([], INGESTED_FILES_SCHEMA)
    log_path = lake.table_path(settings.lake, "ops", "run_log")
    runs = lake.read(spark, log_path).where("step = 'ingest' AND status = 'succeeded'") \
        if lake.exists(log_path) else spark.createDataFrame([], ops.RUN_LOG_SCHEMA)
    checked = delivery_completeness(spark.createDataFrame(expected, EXPECTED_SCHEMA), files,
                                    runs.select("as_of", "finished_at"))
    rows = sorted(checked.collect(), key=lambda r: (r["source"], r["expected_to"]))  # bounded: one per expected
    outcomes: list[Outcome] = []
    by_source: dict[str, list] = {}
    for r in rows:
        by_source.setdefault(r["source"], []).append(r)
    for source, got in by_source.items():
        e = config.completeness.sources[source]
        missing = [r for r in got if r["reason"] == MISSING]
        noted = [r for r in got if r["reason"] in (MISSING, KNOWN_MISSING, LATE)]
        empty = [r for r in got if r["reason"] == EMPTY]
        late = [r for r in got if r["reason"] == LATE]
        excused = [r for r in got if r["reason"] == KNOWN_MISSING]
        if missing:
            observed = f"missing {_dates(missing)}"
        else:
            observed = "; ".join([f"{sum(bool(r['delivered']) for r in got)} of {len(got)} delivered"]
                                 + ([f"late: {_dates(late)}"] if late else [])
                                 + ([f"known missing: {_dates(excused)}"] if excused else []))
        suite = f"bronze/{source}"
        outcomes.append(DeliveryOutcome(
            Check(suite, f"expect_{e.cadence}_delivery", {}, e.severity, origin="completeness"), not missing,
            observed, len(missing), {"deliveries": [_delivery(r) for r in noted]} if noted else {}))
        outcomes.append(DeliveryOutcome(
            Check(suite, "expect_delivered_rows", {}, "warning", origin="completeness"), not empty,
            f"no rows loaded from {_dates(empty)} (header only, unreadable or every row quarantined)" if empty
            else "rows loaded from every delivery", len(empty),
            {"deliveries": [_delivery(r) for r in empty]} if empty else {}))
    not_on_time = [{"source": r["source"], **_delivery(r)} for r in rows if r["reason"] is not None]
    summary = {"expected": len(rows), "delivered": sum(bool(r["delivered"]) for r in rows),
               "not_on_time": not_on_time[:NOT_ON_TIME_LISTED]}
    return outcomes, summary


@dataclass(frozen=True)
class Scope:
    """The rows of a table its row-level checks look at: ingested after ``since`` (None:
    all, the table's first validation) up to ``through``."""

    rows: DataFrame
    since: datetime | None
    through: datetime | None

    @property
    def describe(self) -> str:
        if self.since is None:
            return "all rows (first validation)"
        return f"rows ingested after {self.since.isoformat(sep=' ')}"


def watermark(spark: SparkSession, lake_dir, table: str) -> datetime | None:
    path = lake.table_path(lake_dir, "ops", "dq_watermarks")
    if not lake.exists(path):
        return None
    row = lake.read(spark, path).where(F.col("suite") == table).select("ingested_through").first()
    return row["ingested_through"] if row else None


def _scope(spark: SparkSession, lake_dir, table: str, df: DataFrame, config: QualityConfig) -> Scope | None:
    """None when the whole table is checked (incremental off, or no ``_ingested_at``)."""
    if not config.incremental or INGESTED not in df.columns:
        return None
    through = df.agg(F.max(INGESTED).alias("m")).first()["m"]
    since = watermark(spark, lake_dir, table)
    rows = df if since is None else df.where(F.col(INGESTED) > F.lit(since))
    if through is not None:  # rows ingested while validating wait for the next run
        rows = rows.where(F.col(INGESTED) <= F.lit(through))
    return Scope(rows, since, through)


def save_watermarks(spark: SparkSession, lake_dir, marks: list[tuple[str, datetime | None]], as_of: date,
                    run_id: str, validated_at: datetime) -> None:
    """Move the watermark of every table that passed (a table with no rows keeps its own)."""
    rows = [(t, through, as_of, run_id, validated_at) for t, through in marks if through is not None]
    if not rows:
        return
    path = lake.table_path(lake_dir, "ops", "dq_watermarks")
    lake.create_if_missing(spark, path, WATERMARK_SCHEMA)
    lake.merge(spark, spark.createDataFrame(rows, WATERMARK_SCHEMA), path, ["suite"], update_when="")


# Why a gold table may be absent without anything being wrong.
GOLD_ABSENT = {
    "gold/recommendations": "no champion model yet, or the score step has not run",
}


def as_of_partition(as_of: date) -> str:
    return f"as_of_date = DATE'{as_of.isoformat()}'"


def previous_as_of(spark: SparkSession, path: str, as_of: date) -> date | None:
    """The latest ``as_of_date`` before ``as_of`` in the table at ``path`` (one aggregate), or None."""
    return lake.read(spark, path).where(F.col("as_of_date") < F.lit(as_of.isoformat()).cast("date")) \
        .agg(F.max("as_of_date")).first()[0]


def segment_shares(df: DataFrame, column: str) -> DataFrame:
    """(segment, share): the share of rows per value of ``column`` (null as ``(null)``), in the engine."""
    counts = df.groupBy(F.coalesce(F.col(column).cast("string"), F.lit(NULL_SEGMENT)).alias("segment")).count()
    total = counts.agg(F.sum("count").alias("_total"))
    return counts.crossJoin(total).select("segment", (F.col("count") / F.col("_total")).alias("share"))


def _view_name(*parts: str) -> str:
    return "dq_" + "_".join(p.replace("/", "_") for p in parts)


def prepare_gold_check(spark: SparkSession, settings: Settings, check: Check, path: str, as_of: date,
                       views: set[str]) -> tuple[Check, str | None]:
    """Complete a gold comparison check with what it compares to, computed in the engine as
    bounded aggregates (the previous partition's row count or segment shares; the customers'
    and products' risk levels as views). (check, None), or (check, why it is skipped)."""
    kw = dict(check.kwargs)
    if check.type in (ROWS_NEAR_PREVIOUS, SHARES_NEAR_PREVIOUS):
        prev = previous_as_of(spark, path, as_of)
        if prev is None:
            return check, f"no as_of partition before {as_of.isoformat()} to compare with"
        kw["previous_as_of"] = prev.isoformat()
        before = lake.read(spark, path).where(as_of_partition(prev))
        if check.type == ROWS_NEAR_PREVIOUS:
            n = before.count()
            kw |= {"previous_row_count": n, "min_value": math.ceil(n * (1 - kw["max_change"]) - 1e-9),
                   "max_value": math.floor(n * (1 + kw["max_change"]) + 1e-9)}
        else:
            view = _view_name("prev", check.suite, kw["column"])
            segment_shares(before, kw["column"]).createOrReplaceTempView(view)
            views.add(view)
            kw["previous_view"] = view
    elif check.type == WITHIN_RISK_TOLERANCE:
        from features.candidates import products
        from models.scoring import risk_number

        c360_path = lake.table_path(settings.lake, "gold", "customer_360")
        catalog_path = lake.table_path(settings.lake, "silver", "product_catalog")
        for name, p in (("gold/customer_360", c360_path), ("silver/product_catalog", catalog_path)):
            if not lake.exists(p):
                return check, f"{name} absent"
        cust, prod = _view_name("risk", "customers"), _view_name("risk", "products")
        lake.read(spark, c360_path).where(as_of_partition(as_of)).select("customer_id", "risk_level") \
            .createOrReplaceTempView(cust)
        products(lake.read(spark, catalog_path)).select("product_code", "product_risk_level") \
            .createOrReplaceTempView(prod)
        views |= {cust, prod}
        scoring = getattr(settings, "scoring", None)
        top = scoring.suitability.unassessed_max_risk if scoring is not None else "R2"
        kw |= {"customers_view": cust, "products_view": prod, "unassessed_max_risk": risk_number(top)}
    elif check.type == VALID_KYC:
        c360_path = lake.table_path(settings.lake, "gold", "customer_360")
        if not lake.exists(c360_path):
            return check, "gold/customer_360 absent"
        cust = _view_name("kyc", "customers")
        c360 = lake.read(spark, c360_path)
        kyc = F.col("kyc_status") if "kyc_status" in c360.columns else F.lit(None).cast("string")
        c360.where(as_of_partition(as_of)).select("customer_id", kyc.alias("kyc_status")) \
            .createOrReplaceTempView(cust)
        views.add(cust)
        scoring = getattr(settings, "scoring", None)
        kw |= {"customers_view": cust,
               "valid_statuses": list(scoring.eligibility.kyc_valid_statuses) if scoring is not None else ["verified"]}
    elif check.type == RANKS_WITHIN_TOP_N:
        scoring = getattr(settings, "scoring", None)
        if scoring is None:
            return check, "no scoring block in conf/scoring.yaml (top_n unknown)"
        kw["top_n"] = scoring.top_n
    return replace(check, kwargs=kw), None


def _index(r, active) -> int:
    """Position in ``active`` of the check a GE result belongs to (GE may reorder results)."""
    meta_index = (r.expectation_config.meta or {}).get("c360_index")
    for pos, (check, exp) in enumerate(active):
        if (exp.meta or {}).get("c360_index") == meta_index:
            return pos
    raise RuntimeError(f"GE returned a result for an unknown expectation: {r.expectation_config.type}")


def dq_bronze(spark, settings, as_of, run_id, progress=None):
    return run(spark, settings, "bronze", as_of, run_id, progress)


def dq_silver(spark, settings, as_of, run_id, progress=None):
    return run(spark, settings, "silver", as_of, run_id, progress)


def dq_gold(spark, settings, as_of, run_id, progress=None):
    return run(spark, settings, "gold", as_of, run_id, progress)


__all__ = ["run", "dq_bronze", "dq_silver", "dq_gold", "QualityGateFailed", "DQ_RESULTS_SCHEMA", "docs_dir", "gx_context"]

"""Data quality gates: run a layer's Great Expectations suites on its Delta tables.

Steps ``dq_bronze`` (after ingest) and ``dq_silver`` (after silver) call :func:`run`. The
suites come from ``c360.quality`` (the contract + ``conf/quality.yaml``); each table is
validated by real GE on the engine: a file-based GE context under ``<lake>/ops/gx`` with a
Spark data source, one DataFrame asset per table, and a checkpoint per table run with the
table's Spark Connect DataFrame as the batch. GE computes its metrics in the engine
(aggregates, filtered counts, at most a few example rows come back to the driver).

Every result goes to the Delta table ``ops/dq_results`` (MERGE on run_id, suite,
expectation, column: a re-run of the same run replaces its rows), and the Data Docs site is
updated under ``<lake>/reports/dq``. A failed ``critical`` expectation then raises
:class:`QualityGateFailed`, which stops the run; failed ``warning`` ones are only reported.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, ClassVar

from pyspark.sql import SparkSession
from pyspark.sql import types as T

from c360 import lake, ops
from c360.quality import (EXISTS_IN_TABLE, ONE_CURRENT_ROW, Check, QualityConfig, QualityGateFailed, config_from,
                          suites)
from c360.settings import ConfigError, Settings

# No usage statistics leave the machine.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

import great_expectations as gx  # noqa: E402
import great_expectations.expectations as gxe  # noqa: E402
from great_expectations.compatibility.pydantic import ValidationError as GXValidationError  # noqa: E402
from great_expectations.core.run_identifier import RunIdentifier  # noqa: E402
from great_expectations.data_context.types.base import ProgressBarsConfig  # noqa: E402
from great_expectations.data_context.types.resource_identifiers import ExpectationSuiteIdentifier  # noqa: E402
from great_expectations.expectations.registry import get_expectation_impl  # noqa: E402

log = logging.getLogger(__name__)

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

SITE_NAME = "c360"
DATASOURCE = "c360_lake"
BATCH_DEFINITION = "whole_table"
EXAMPLES = 20  # unexpected values kept per failed expectation


# --- custom expectations: named UnexpectedRowsExpectation (GE's custom SQL expectation) ---


class _UnexpectedRowsWithExamples(gxe.UnexpectedRowsExpectation):
    """GE's custom SQL expectation with two additions:

    - ``mostly`` as in GE's column map expectations: success while unexpected rows are at
      most ``1 - mostly`` of the table's rows (GE's ``table.row_count`` metric);
    - a few example rows kept in BASIC/SUMMARY results too (GE fetches up to 200 of them
      anyway, but by default reports them only in COMPLETE).
    """

    mostly: float = 1.0

    metric_dependencies: ClassVar[tuple[str, ...]] = (*gxe.UnexpectedRowsExpectation.metric_dependencies,
                                                      "table.row_count")
    success_keys: ClassVar[tuple[str, ...]] = (*gxe.UnexpectedRowsExpectation.success_keys, "mostly")

    def _validate(self, metrics: dict, runtime_configuration: dict | None = None, execution_engine=None):
        out = super()._validate(metrics, runtime_configuration, execution_engine)
        if not isinstance(out, dict):
            return out
        unexpected = metrics.get("unexpected_rows_query.row_count") or 0
        total = metrics.get("table.row_count")
        if total:
            out["success"] = unexpected <= (1.0 - self.mostly) * total + 1e-9
        result = out.get("result")
        if isinstance(result, dict):
            if total is not None:
                result["element_count"] = total
                result["unexpected_percent"] = 100.0 * unexpected / total if total else 0.0
            if "details" not in result:
                rows = metrics.get("unexpected_rows_query.table") or []
                result["details"] = {"unexpected_rows": [
                    {k: None if v is None else str(v) for k, v in dict(r).items()} for r in list(rows)[:EXAMPLES]]}
        return out


class ExpectColumnValuesToExistInTable(_UnexpectedRowsWithExamples):
    """Referential integrity: every non-null ``column`` value exists in ``ref_table.ref_column``."""

    column: str
    ref_table: str
    ref_column: str


class ExpectExactlyOneCurrentRowPerKey(_UnexpectedRowsWithExamples):
    """SCD2 history: each ``column`` value has exactly one row whose ``current_flag`` is true."""

    column: str
    current_flag: str


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
            query = (f"SELECT t.{_q(col)} FROM " + "{batch}" + f" t LEFT ANTI JOIN {ref_view(kw['ref_table'])} r "
                     f"ON t.{_q(col)} = r.{_q(ref_col)} WHERE t.{_q(col)} IS NOT NULL")
            mostly = float(kw.get("mostly", 1.0))
            share = "Every" if mostly >= 1.0 else f"At least {mostly:.4g} of the"
            return ExpectColumnValuesToExistInTable(
                column=col, ref_table=kw["ref_table"], ref_column=ref_col, unexpected_rows_query=query,
                mostly=mostly, description=f"{share} {col} values exist in {kw['ref_table']}.{ref_col}",
                severity=check.severity, meta=meta)
        if check.type == ONE_CURRENT_ROW:
            col, flag = kw["column"], kw["current_flag"]
            query = (f"SELECT {_q(col)}, count_if({_q(flag)}) AS current_rows FROM " + "{batch}"
                     + f" GROUP BY {_q(col)} HAVING count_if({_q(flag)}) <> 1")
            return ExpectExactlyOneCurrentRowPerKey(
                column=col, current_flag=flag, unexpected_rows_query=query,
                description=f"Exactly one row with {flag} = true per {col}", severity=check.severity, meta=meta)
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
        elif self.unexpected_count is not None:
            what = f"{self.unexpected_count} unexpected"
        elif self.observed_value is not None:
            what = f"observed {self.observed_value}"
        else:
            what = "failed"
        return f"{self.check.label}: {what}"


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


def _outcome(check: Check, r) -> Outcome:
    res = dict(r.result or {})
    details: dict[str, Any] = {}
    error = _exception_message(r)
    if error:
        details["error"] = error
    unexpected = res.get("unexpected_count")
    observed = res.get("observed_value")
    if check.type in (EXISTS_IN_TABLE, ONE_CURRENT_ROW) or r.expectation_config.type == "unexpected_rows_expectation":
        unexpected = observed if isinstance(observed, int) else None
        rows = (res.get("details") or {}).get("unexpected_rows")
        if rows:
            details["unexpected_rows"] = [{k: str(v) for k, v in dict(x).items()} for x in list(rows)[:EXAMPLES]]
    elif res.get("partial_unexpected_list"):
        details["partial_unexpected_list"] = [str(v) for v in res["partial_unexpected_list"][:EXAMPLES]]
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


def docs_dir(lake_dir) -> Path:
    return Path(lake_dir) / "reports" / "dq"


def gx_context(lake_dir, config: QualityConfig):
    """The file-based GE context of this lake (``<lake>/ops/gx``), Data Docs in ``<lake>/reports/dq``."""
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
    return vr, vrid


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
    built = {table: [(c, to_expectation(c, i)) for i, c in enumerate(checks)] for table, checks in plan.items()}
    lake_dir = settings.lake
    validated_at = ops.utcnow()
    run_time = validated_at.replace(tzinfo=timezone.utc)
    outcomes: list[Outcome] = []
    skipped: list[str] = []
    by_suite: dict[str, dict[str, int]] = {}
    result_ids: list = []
    ctx = ds = None
    step = f"dq_{layer}"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module="great_expectations")
        for i, (table, pairs) in enumerate(built.items()):
            if progress:
                progress(f"{step} {table}", i, len(built))
            path = lake.table_path(lake_dir, *table.split("/"))
            if not lake.exists(path):
                skipped.append(f"{table}: table absent")
                continue
            active = []
            for check, exp in pairs:
                if check.type == EXISTS_IN_TABLE:
                    ref = check.kwargs["ref_table"]
                    ref_path = lake.table_path(lake_dir, *ref.split("/"))
                    if not lake.exists(ref_path):
                        skipped.append(f"{check.label}: {ref} absent")
                        continue
                    lake.read(spark, ref_path).select(check.kwargs["ref_column"]) \
                        .createOrReplaceTempView(ref_view(ref))
                active.append((check, exp))
            if ctx is None:
                ctx = gx_context(lake_dir, config)
                ds = _datasource(ctx, spark)
            df = lake.read(spark, path)
            vr, vrid = validate_table(ctx, ds, table, [e for _, e in active], df, run_id, run_time,
                                      config.result_format)
            result_ids += [vrid, ExpectationSuiteIdentifier(name=gx_name(table))]
            got = [_outcome(active[_index(r, active)][0], r) for r in vr.results]
            outcomes += got
            by_suite[table] = {"expectations": len(got), "failed": sum(not o.success for o in got)}
        views = {ref_view(c.kwargs["ref_table"]) for t in built.values() for c, _ in t if c.type == EXISTS_IN_TABLE}
        for view in views:
            try:
                spark.catalog.dropTempView(view)
            except Exception:  # noqa: BLE001 - the view may not have been created
                pass
        docs = None
        if ctx is not None and config.docs.enabled and result_ids:
            ctx.build_data_docs(site_names=[SITE_NAME], resource_identifiers=result_ids)
            docs = str(docs_dir(lake_dir) / "index.html")
    if progress:
        progress(step, len(built), len(built))
    record(spark, lake_dir, outcomes, as_of, run_id, validated_at)
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
    }


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


__all__ = ["run", "dq_bronze", "dq_silver", "QualityGateFailed", "DQ_RESULTS_SCHEMA", "docs_dir", "gx_context"]

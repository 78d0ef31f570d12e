"""Data quality gates as data: ``conf/quality.yaml`` + the raw data contract -> suites.

A suite is named after the table it checks (``bronze/transactions``, ``silver/customers``,
``gold/customer_360``) and is a list of :class:`Check`: a Great Expectations expectation
type, its arguments and a severity. Most bronze and silver checks are generated from
``c360.contract`` (required columns, keys, enums, ranges, survey score ranges, ordered
columns, event-time sanity); ``conf/quality.yaml`` sets their severities, declares
referential integrity between tables, adds hand-written expectations of any GE type, and
overrides the severity or threshold (``mostly``) of any generated one.

Gold suites (its ``gold:`` block) check the as_of partition of ``gold/customer_360`` (one
row per customer, feature ranges and null rates, row count near the previous as_of's),
``gold/customer_segments`` (segment shares near the previous as_of's) and
``gold/recommendations`` (nothing above the customer's risk tolerance). The comparisons
with the previous as_of are completed at validation time by ``jobs.quality``.

Its ``completeness:`` block says what each source delivers (daily, weekly, optional) and
the severity of a missing delivery; :func:`expected_deliveries` lists what is expected for
an as_of, which ``dq_bronze`` compares with the ingest log (``features.completeness``).

Severity: ``critical`` stops the run (downstream steps do not run); ``warning`` is recorded
in ``ops/dq_results`` and shown in the run summary, and the run goes on.

This module is pure Python (no Spark session, no Great Expectations import; the feature
declarations it validates feature names against import pyspark's column API only), so the
configuration is validated at start-up quickly; ``jobs.quality`` turns checks into GE
expectations and runs them on the engine.
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import importlib.util
import json
import re
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from c360.contract import DATE, SOURCES, SURVEY_SCORE_RANGES, TIMESTAMP, Source
from c360.settings import DEFAULT_CONF_DIR, ConfigError, read_yaml

QUALITY_FILE = "quality.yaml"
SEVERITIES = ("critical", "warning")
Severity = Literal["critical", "warning"]
# Layers whose tables have suites; each is validated by its own pipeline step (dq_<layer>).
DQ_LAYERS = ("bronze", "silver", "gold")

# Expectation types implemented in jobs.quality (GE UnexpectedRowsExpectation subclasses).
EXISTS_IN_TABLE = "expect_column_values_to_exist_in_table"
ONE_CURRENT_ROW = "expect_exactly_one_current_row_per_key"
# Gold checks whose arguments are completed at validation time (jobs.quality): the previous
# as_of partition's row count or segment shares, the customers' and products' risk levels.
ROWS_NEAR_PREVIOUS = "expect_table_row_count_to_be_near_previous"
SHARES_NEAR_PREVIOUS = "expect_column_shares_to_be_near_previous"
WITHIN_RISK_TOLERANCE = "expect_recommendations_within_risk_tolerance"
RANKS_WITHIN_TOP_N = "expect_recommendation_ranks_within_top_n"
VALID_KYC = "expect_recommended_customers_to_have_valid_kyc"
RUNTIME_TYPES = (ROWS_NEAR_PREVIOUS, SHARES_NEAR_PREVIOUS, WITHIN_RISK_TOLERANCE, RANKS_WITHIN_TOP_N, VALID_KYC)
CUSTOM_TYPES = (EXISTS_IN_TABLE, ONE_CURRENT_ROW) + RUNTIME_TYPES
# Columns of gold/customer_segments whose shares can be compared between as_of dates.
SEGMENT_COLUMNS = ("value_tier", "lifecycle_stage", "cluster_id", "persona_id")

_SUITE_RE = re.compile(r"^(bronze|silver|gold)/[a-z][a-z0-9_]*$")
_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BronzeChecks(_Strict):
    """Severity of each kind of check generated from the contract for ``bronze/<source>``."""

    columns_exist: Severity = "critical"  # every required contract column is present
    required_not_null: Severity = "critical"  # required (*) columns are never null
    key_unique: Severity = "critical"  # the source key is unique
    enum_in_set: Severity = "critical"  # enum columns hold only contract values
    value_range: Severity = "critical"  # numeric ranges (amount > 0, ages 0-130, ...)
    survey_score_range: Severity = "critical"  # NPS 0-10, CSAT 1-5, CES 1-7
    ordered_columns: Severity = "critical"  # opened <= closed, started <= ended, ...


class SilverChecks(_Strict):
    """Severity of each kind of check generated for ``silver/<source>``."""

    required_not_null: Severity = "critical"
    key_unique: Severity = "critical"  # customers: (customer_id, valid_from)
    one_current_row: Severity = "critical"  # customers: exactly one is_current row per customer
    timestamp_range: Severity = "critical"  # dates/timestamps: not before min_date, event time not after as_of


class Generated(_Strict):
    bronze: BronzeChecks = BronzeChecks()
    silver: SilverChecks = SilverChecks()


class FeatureRule(_Strict):
    """Range and null rate of one ``gold/customer_360`` feature (or of every feature a glob
    such as ``txn_count_*`` matches; the longest matching key wins)."""

    min: float | None = None
    max: float | None = None
    max_null_fraction: float | None = Field(None, ge=0, le=1)  # share of customers without a value
    severity: Severity | None = None  # default: customer_360.feature_severity

    @model_validator(mode="after")
    def _consistent(self) -> "FeatureRule":
        if self.min is None and self.max is None and self.max_null_fraction is None:
            raise ValueError("a feature rule needs min, max and/or max_null_fraction")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self


class RowCountChange(_Strict):
    """The as_of partition's row count within ``max_change`` (relative) of the previous one."""

    max_change: float = Field(0.10, gt=0, le=10)
    severity: Severity = "warning"


class Customer360Checks(_Strict):
    one_row_per_customer: Severity = "critical"  # customer_id not null and unique within as_of
    feature_severity: Severity = "critical"  # default severity of the feature rules
    features: dict[str, FeatureRule] = Field(default_factory=dict)
    row_count_change: RowCountChange | None = RowCountChange()  # null: not checked

    @field_validator("features")
    @classmethod
    def _known_features(cls, v: dict[str, FeatureRule]) -> dict[str, FeatureRule]:
        names, numeric = customer_360_features()
        for key, rule in v.items():
            hits = [n for n in names if fnmatch.fnmatchcase(n, key)]
            if not hits:
                close = difflib.get_close_matches(key.replace("*", ""), names, n=3, cutoff=0.75)
                hint = f" (did you mean {', '.join(close)}?)" if close else ""
                raise ValueError(f"{key!r} matches no customer-360 feature{hint}")
            if rule.min is not None or rule.max is not None:
                text = [n for n in hits if n not in numeric]
                if text:
                    raise ValueError(f"{key!r}: min/max on a feature that is not numeric ({text[0]})")
        return v


class ShareChange(_Strict):
    """Share of customers per segment (per column) moving by more than ``max_points``
    percentage points since the previous as_of."""

    columns: list[str] = Field(default_factory=lambda: ["value_tier", "lifecycle_stage"])
    max_points: float = Field(10.0, gt=0, le=100)
    severity: Severity = "warning"

    @field_validator("columns")
    @classmethod
    def _segment_columns(cls, v: list[str]) -> list[str]:
        for c in v:
            if c not in SEGMENT_COLUMNS:
                raise ValueError(f"unknown segment column {c!r}; columns are {', '.join(SEGMENT_COLUMNS)}")
        if len(set(v)) != len(v):
            raise ValueError("a column is listed twice")
        return v


class SegmentChecks(_Strict):
    share_change: ShareChange | None = ShareChange()  # null: not checked


class RecommendationChecks(_Strict):
    # No recommended product above the customer's risk tolerance (the suitability rules of
    # models/scoring.py and conf/scoring.yaml suitability.unassessed_max_risk).
    within_risk_tolerance: Severity = "critical"
    # Every recommended customer's KYC status at as_of (gold/customer_360) is one of
    # conf/scoring.yaml eligibility.kyc_valid_statuses (no status: not valid).
    valid_kyc: Severity = "critical"
    # rank within 1..scoring.top_n (conf/scoring.yaml); one row per customer and rank, and per
    # customer and product
    ranks: Severity = "critical"
    # score (calibrated adoption probability; null when the champion has no calibration)
    # within [0, 1]; raw_score always set
    scores: Severity = "critical"


class GoldChecks(_Strict):
    """Checks of the gold tables, on their as_of partition (step ``dq_gold``)."""

    customer_360: Customer360Checks = Customer360Checks()
    customer_segments: SegmentChecks = SegmentChecks()
    recommendations: RecommendationChecks = RecommendationChecks()


class Timestamps(_Strict):
    min_date: date = date(1900, 1, 1)
    # A row's event time may lie at most this many days after the run's as_of date (end of day).
    max_days_after_as_of: int = Field(1, ge=0, le=3650)


class ReferenceDefaults(_Strict):
    severity: Severity = "critical"
    # Share of a table's rows whose reference must resolve (1.0: every row). Rows below the
    # threshold still show in ops/dq_results and in the run summary as "tolerated".
    mostly: float = Field(1.0, gt=0, le=1)


class Reference(_Strict):
    """Referential integrity: every non-null ``table.column`` exists in ``ref.ref_column``."""

    table: str
    column: str
    ref: str
    ref_column: str | None = None
    severity: Severity | None = None
    mostly: float | None = Field(None, gt=0, le=1)

    @field_validator("table", "ref")
    @classmethod
    def _table_name(cls, v: str) -> str:
        return _check_suite_name(v)

    @field_validator("column", "ref_column")
    @classmethod
    def _column_name(cls, v: str | None) -> str | None:
        if v is not None and not _IDENT_RE.match(v):
            raise ValueError(f"not a column name: {v!r}")
        return v


class HandWritten(_Strict):
    """Any GE expectation, by its snake_case type name and arguments."""

    type: str
    kwargs: dict[str, Any] = Field(default_factory=dict)
    severity: Severity = "critical"

    @field_validator("type")
    @classmethod
    def _known_type(cls, v: str) -> str:
        return _check_expectation_type(v)


class Override(_Strict):
    """Change the severity and/or threshold of the checks matching suite + type (+ column)."""

    suite: str
    type: str
    column: str | None = None
    severity: Severity | None = None
    mostly: float | None = Field(None, gt=0, le=1)

    @field_validator("suite")
    @classmethod
    def _suite(cls, v: str) -> str:
        return _check_suite_name(v)

    @field_validator("type")
    @classmethod
    def _known_type(cls, v: str) -> str:
        return _check_expectation_type(v)

    @model_validator(mode="after")
    def _changes_something(self) -> "Override":
        if self.severity is None and self.mostly is None:
            raise ValueError("an override needs severity and/or mostly")
        return self


WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


class DeliveryExpectation(_Strict):
    """How often one source delivers (``conf/quality.yaml`` ``completeness.sources``).

    ``daily``: a delivery folder for every date; ``weekly``: one on ``weekday`` each week,
    or, without a weekday, at least one in the 7 days ending at as_of; ``optional``: none
    expected (a bank may lack the system)."""

    cadence: Literal["daily", "weekly", "optional"]
    weekday: Literal[WEEKDAYS] | None = None  # weekly only
    severity: Severity = "critical"

    @model_validator(mode="after")
    def _weekday_for_weekly(self) -> "DeliveryExpectation":
        if self.weekday is not None and self.cadence != "weekly":
            raise ValueError(f"weekday is for a weekly cadence, not {self.cadence}")
        return self


class KnownMissing(_Strict):
    """Dates a source is known not to deliver (a holiday, an outage the bank accounted for):
    not counted as missing, listed as ``known_missing`` with the reason."""

    source: str | None = None  # None: every source
    dates: list[date] = Field(min_length=1)
    reason: str = Field(min_length=1)

    @field_validator("source")
    @classmethod
    def _known_source(cls, v: str | None) -> str | None:
        if v is not None and v not in SOURCES:
            raise ValueError(f"unknown source {v!r}; sources are {', '.join(SOURCES)}")
        return v


def _default_expectations() -> dict[str, DeliveryExpectation]:
    return {"transactions": DeliveryExpectation(cadence="daily", severity="critical")}


class Completeness(_Strict):
    """Delivery completeness, checked by ``dq_bronze`` on the ingest log (``ops/ingested_files``)."""

    # Days up to as_of (inclusive) in which expected deliveries are looked for. Dates before
    # a source's first delivery ever are not expected (a lake starts with its first drop).
    lookback_days: int = Field(31, ge=1, le=3660)
    # Sources not listed are optional.
    sources: dict[str, DeliveryExpectation] = Field(default_factory=_default_expectations)
    known_missing: list[KnownMissing] = Field(default_factory=list)

    @field_validator("sources")
    @classmethod
    def _known_sources(cls, v: dict[str, DeliveryExpectation]) -> dict[str, DeliveryExpectation]:
        for name in v:
            if name not in SOURCES:
                close = difflib.get_close_matches(name, list(SOURCES), n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise ValueError(f"unknown source {name!r}{hint}; sources are {', '.join(SOURCES)}")
        return v


class Docs(_Strict):
    enabled: bool = True
    # Validation results listed on the Data Docs index page (newest first).
    index_limit: int = Field(500, ge=1, le=100_000)


class QualityConfig(_Strict):
    generated: Generated = Generated()
    gold: GoldChecks = GoldChecks()
    timestamps: Timestamps = Timestamps()
    reference_defaults: ReferenceDefaults = ReferenceDefaults()
    references: list[Reference] = Field(default_factory=list)
    expectations: dict[str, list[HandWritten]] = Field(default_factory=dict)
    overrides: list[Override] = Field(default_factory=list)
    # GE result format: BASIC keeps counts and up to 20 example values per expectation.
    result_format: Literal["BOOLEAN_ONLY", "BASIC", "SUMMARY"] = "BASIC"
    docs: Docs = Docs()
    completeness: Completeness = Completeness()
    # Bronze and silver: row-level checks look only at the rows ingested since the table
    # last passed (its watermark in ops/dq_watermarks); checks across rows (uniqueness,
    # one current row, table-level expectations) always see the whole table.
    incremental: bool = True

    @field_validator("expectations")
    @classmethod
    def _suite_names(cls, v: dict[str, list[HandWritten]]) -> dict[str, list[HandWritten]]:
        for name in v:
            _check_suite_name(name)
        return v


class QualityGateFailed(RuntimeError):
    """A critical expectation failed. The message names each table, expectation and count:
    ``quality gate failed: silver/transactions expect_column_values_to_be_unique(txn_id): 2 unexpected``.
    ``failures`` and ``warnings`` hold the failed outcomes (objects with a ``message``)."""

    def __init__(self, failures: list, warnings: list | None = None):
        self.failures = list(failures)
        self.warnings = list(warnings or [])
        super().__init__("quality gate failed: " + "; ".join(f.message for f in self.failures))


# ---------------------------------------------------------------------------------------
# Checks


@dataclass(frozen=True)
class Check:
    """One expectation of one suite, with its severity."""

    suite: str  # "silver/transactions"
    type: str  # GE expectation type, snake_case
    kwargs: dict[str, Any] = field(default_factory=dict)
    severity: str = "critical"
    origin: str = "contract"  # contract | reference | conf | gold

    @property
    def column(self) -> str | None:
        k = self.kwargs
        if "column" in k:
            return k["column"]
        if "column_list" in k:
            return ",".join(k["column_list"])
        if "column_A" in k:
            return f"{k['column_A']},{k['column_B']}"
        return None

    @property
    def qualifier(self) -> str | None:
        """What tells two checks of the same type on the same column apart."""
        if self.type == EXISTS_IN_TABLE:
            return f"in {self.kwargs['ref_table']}.{self.kwargs['ref_column']}"
        if self.kwargs.get("row_condition"):
            return f"where {self.kwargs['row_condition']}"
        return None

    @property
    def name(self) -> str:
        """The check's identity within its suite (``ops/dq_results.expectation``)."""
        return f"{self.type} {self.qualifier}" if self.qualifier else self.type

    @property
    def label(self) -> str:
        """``silver/transactions expect_column_values_to_not_be_null(customer_id)``."""
        inside = " ".join(x for x in (self.column, self.qualifier) if x)
        return f"{self.suite} {self.type}({inside})" if inside else f"{self.suite} {self.type}"

    @property
    def key(self) -> tuple[str, str, str | None]:
        return (self.suite, self.name, self.column)


def _between(column: str, lo: Any, hi: Any, strict_min: bool = False, strict_max: bool = False,
             **extra: Any) -> dict[str, Any]:
    kw: dict[str, Any] = {"column": column}
    if lo is not None:
        kw["min_value"] = lo
        if strict_min:
            kw["strict_min"] = True
    if hi is not None:
        kw["max_value"] = hi
        if strict_max:
            kw["strict_max"] = True
    return kw | extra


def _num(v: float) -> int | float:
    return int(v) if float(v).is_integer() else v


def bronze_checks(source: Source, sev: BronzeChecks) -> list[Check]:
    """The raw data contract of ``source`` as checks on ``bronze/<source>``."""
    suite = f"bronze/{source.name}"
    out: list[Check] = []
    for c in source.required:
        out.append(Check(suite, "expect_column_to_exist", {"column": c}, sev.columns_exist))
    for c in source.required:
        out.append(Check(suite, "expect_column_values_to_not_be_null", {"column": c}, sev.required_not_null))
    out.append(_key_check(suite, list(source.key), sev.key_unique))
    for col in source.columns:
        if col.enum:
            out.append(Check(suite, "expect_column_values_to_be_in_set",
                             {"column": col.name, "value_set": list(col.enum)}, sev.enum_in_set))
        if col.min_value is not None or col.max_value is not None:
            lo = None if col.min_value is None else _num(col.min_value)
            hi = None if col.max_value is None else _num(col.max_value)
            out.append(Check(suite, "expect_column_values_to_be_between",
                             _between(col.name, lo, hi, strict_min=col.min_exclusive), sev.value_range))
    if source.name == "feedback":
        for survey, (lo, hi) in SURVEY_SCORE_RANGES.items():
            out.append(Check(suite, "expect_column_values_to_be_between",
                             _between("score", lo, hi, row_condition=f"survey_type = '{survey}'",
                                      condition_parser="spark"), sev.survey_score_range))
    for earlier, later in source.ordered:
        out.append(Check(suite, "expect_column_pair_values_a_to_be_greater_than_b",
                         {"column_A": later, "column_B": earlier, "or_equal": True,
                          "ignore_row_if": "either_value_is_missing"}, sev.ordered_columns))
    return out


def _key_check(suite: str, key: list[str], severity: str) -> Check:
    if len(key) == 1:
        return Check(suite, "expect_column_values_to_be_unique", {"column": key[0]}, severity)
    return Check(suite, "expect_compound_columns_to_be_unique", {"column_list": key}, severity)


def upper_time_bound(as_of: date, ts: Timestamps) -> datetime:
    """Event times must be before this instant (the end of as_of + max_days_after_as_of)."""
    return datetime.combine(as_of + timedelta(days=ts.max_days_after_as_of + 1), time(), tzinfo=timezone.utc)


def silver_checks(source: Source, sev: SilverChecks, ts: Timestamps, as_of: date) -> list[Check]:
    """Generated checks on ``silver/<source>`` (references come from the configuration)."""
    suite = f"silver/{source.name}"
    out: list[Check] = []
    pii = set(source.pii_columns)
    for c in source.required:
        out.append(Check(suite, "expect_column_values_to_not_be_null", {"column": c}, sev.required_not_null))
    if source.name == "customers":
        out.append(_key_check(suite, ["customer_id", "valid_from"], sev.key_unique))
        out.append(Check(suite, ONE_CURRENT_ROW, {"column": "customer_id", "current_flag": "is_current"},
                         sev.one_current_row))
    else:
        out.append(_key_check(suite, list(source.key), sev.key_unique))
    lo = datetime.combine(ts.min_date, time(), tzinfo=timezone.utc)
    for col in source.columns:
        if col.type not in (DATE, TIMESTAMP) or col.name in pii:
            continue
        low = lo if col.type == TIMESTAMP else ts.min_date
        if col.name == source.event_time:
            high = upper_time_bound(as_of, ts)
            if col.type == DATE:
                high = (high - timedelta(days=1)).date()  # a date is the whole day: <= as_of + n
                out.append(Check(suite, "expect_column_values_to_be_between", _between(col.name, low, high),
                                 sev.timestamp_range))
            else:
                out.append(Check(suite, "expect_column_values_to_be_between",
                                 _between(col.name, low, high, strict_max=True), sev.timestamp_range))
        else:
            out.append(Check(suite, "expect_column_values_to_be_between", _between(col.name, low, None),
                             sev.timestamp_range))
    return out


@functools.lru_cache(maxsize=1)
def customer_360_features() -> tuple[tuple[str, ...], frozenset[str]]:
    """(every declared customer-360 feature in declaration order, the numeric ones)."""
    import features.profile  # noqa: F401 (registers the features; imports pyspark, not a session)
    from features.registry import REGISTRY

    return tuple(REGISTRY), frozenset(n for n, f in REGISTRY.items() if f.dtype in ("double", "bigint"))


def feature_rules(rules: dict[str, FeatureRule]) -> dict[str, FeatureRule]:
    """Each feature with its rule: a glob key applies to every feature it matches, the
    longest matching key wins (``age`` over ``a*``)."""
    names, _ = customer_360_features()
    out: dict[str, FeatureRule] = {}
    for name in names:
        keys = [k for k in rules if fnmatch.fnmatchcase(name, k)]
        if keys:
            out[name] = rules[max(keys, key=lambda k: (k == name, len(k)))]
    return out


def gold_checks(gold: GoldChecks) -> list[Check]:
    """The checks of the gold suites (each runs on the table's as_of partition)."""
    out: list[Check] = []
    c = gold.customer_360
    suite = "gold/customer_360"
    out.append(Check(suite, "expect_column_values_to_not_be_null", {"column": "customer_id"},
                     c.one_row_per_customer, origin="gold"))
    out.append(Check(suite, "expect_column_values_to_be_unique", {"column": "customer_id"},
                     c.one_row_per_customer, origin="gold"))
    if c.row_count_change is not None:
        out.append(Check(suite, ROWS_NEAR_PREVIOUS, {"max_change": c.row_count_change.max_change},
                         c.row_count_change.severity, origin="gold"))
    for name, rule in feature_rules(c.features).items():
        severity = rule.severity or c.feature_severity
        if rule.min is not None or rule.max is not None:
            lo = None if rule.min is None else _num(rule.min)
            hi = None if rule.max is None else _num(rule.max)
            out.append(Check(suite, "expect_column_values_to_be_between", _between(name, lo, hi), severity,
                             origin="gold"))
        if rule.max_null_fraction is not None and rule.max_null_fraction < 1:
            kw: dict[str, Any] = {"column": name}
            if rule.max_null_fraction > 0:
                kw["mostly"] = round(1.0 - rule.max_null_fraction, 10)
            out.append(Check(suite, "expect_column_values_to_not_be_null", kw, severity, origin="gold"))
    share = gold.customer_segments.share_change
    if share is not None:
        for col in share.columns:
            out.append(Check("gold/customer_segments", SHARES_NEAR_PREVIOUS,
                             {"column": col, "max_points": share.max_points}, share.severity, origin="gold"))
    rec, suite = gold.recommendations, "gold/recommendations"
    out.append(Check(suite, WITHIN_RISK_TOLERANCE, {}, rec.within_risk_tolerance, origin="gold"))
    out.append(Check(suite, VALID_KYC, {}, rec.valid_kyc, origin="gold"))
    out.append(Check(suite, RANKS_WITHIN_TOP_N, {}, rec.ranks, origin="gold"))
    for keys in (["customer_id", "rank"], ["customer_id", "product_code"]):
        out.append(Check(suite, "expect_compound_columns_to_be_unique", {"column_list": keys}, rec.ranks,
                         origin="gold"))
    out.append(Check(suite, "expect_column_values_to_be_between", _between("score", 0.0, 1.0), rec.scores,
                     origin="gold"))
    out.append(Check(suite, "expect_column_values_to_not_be_null", {"column": "raw_score"}, rec.scores,
                     origin="gold"))
    return out


def reference_checks(config: QualityConfig, layer: str) -> list[Check]:
    out = []
    for r in config.references:
        if r.table.split("/")[0] != layer:
            continue
        kwargs = {"column": r.column, "ref_table": r.ref, "ref_column": r.ref_column or r.column}
        mostly = r.mostly if r.mostly is not None else config.reference_defaults.mostly
        if mostly < 1.0:
            kwargs["mostly"] = mostly
        out.append(Check(r.table, EXISTS_IN_TABLE, kwargs, r.severity or config.reference_defaults.severity,
                         origin="reference"))
    return out


# Expectations whose verdict on a row depends on that row alone (and on reference tables).
_ROW_LEVEL_PREFIXES = ("expect_column_values_to_", "expect_column_pair_values_", "expect_multicolumn_sum_",
                       "expect_select_column_values_to_be_unique_within_record")
_CROSS_ROW = frozenset({"expect_column_values_to_be_unique", "expect_compound_columns_to_be_unique",
                        ONE_CURRENT_ROW})


def row_level(check: Check) -> bool:
    """True when ``check`` judges each row on its own, so that checking only new rows is
    enough; false for uniqueness, one-current-row and table-level expectations (row counts,
    column means...), which must see the whole table."""
    if check.type in _CROSS_ROW:
        return False
    return check.type == EXISTS_IN_TABLE or check.type == "expect_column_to_exist" \
        or check.type.startswith(_ROW_LEVEL_PREFIXES)


def _apply_overrides(checks: list[Check], overrides: list[Override]) -> tuple[list[Check], set[int]]:
    used: set[int] = set()
    out = []
    for c in checks:
        for i, o in enumerate(overrides):
            if o.suite == c.suite and o.type == c.type and (o.column is None or o.column == c.column):
                used.add(i)
                if o.severity:
                    c = replace(c, severity=o.severity)
                if o.mostly is not None:
                    c = replace(c, kwargs={**c.kwargs, "mostly": o.mostly})
        out.append(c)
    return out, used


def all_checks(config: QualityConfig, as_of: date) -> list[Check]:
    """Every check of every layer, overrides applied; raises ConfigError when inconsistent."""
    checks: list[Check] = []
    for source in SOURCES.values():
        checks += bronze_checks(source, config.generated.bronze)
    for source in SOURCES.values():
        checks += silver_checks(source, config.generated.silver, config.timestamps, as_of)
    checks += gold_checks(config.gold)
    for layer in DQ_LAYERS:
        checks += reference_checks(config, layer)
    for suite, items in config.expectations.items():
        checks += [Check(suite, h.type, dict(h.kwargs), h.severity, origin="conf") for h in items]
    checks, used = _apply_overrides(checks, config.overrides)
    unused = [i for i in range(len(config.overrides)) if i not in used]
    if unused:
        o = config.overrides[unused[0]]
        raise ConfigError(f"{QUALITY_FILE}: overrides[{unused[0]}]: matches no expectation "
                          f"({o.suite} {o.type}{f'({o.column})' if o.column else ''})")
    seen: dict[tuple, Check] = {}
    for c in checks:
        if c.key in seen:
            raise ConfigError(f"{QUALITY_FILE}: {c.label} is declared twice; change a generated "
                              "expectation with `overrides` instead of repeating it")
        seen[c.key] = c
    return checks


def suites(config: QualityConfig, layer: str, as_of: date) -> dict[str, list[Check]]:
    """The suites of one layer, by table (``silver/transactions``), in a stable order."""
    if layer not in DQ_LAYERS:
        raise ValueError(f"unknown quality layer {layer!r}; layers are {', '.join(DQ_LAYERS)}")
    out: dict[str, list[Check]] = {}
    for c in all_checks(config, as_of):
        if c.suite.split("/")[0] == layer:
            out.setdefault(c.suite, []).append(c)
    return out


def expected_deliveries(c: Completeness, as_of: date, sources: list[str] | None = None) -> list[tuple]:
    """The deliveries ``c`` expects in its lookback window ending at ``as_of``, one tuple
    ``(source, cadence, severity, expected_from, expected_to, known_missing)`` each (the
    columns of ``features.completeness.EXPECTED_SCHEMA``): a daily source has one per date,
    a weekly one per ``weekday`` in the window, or, without a weekday, one for the 7 days
    ending at as_of (any delivery date in ``expected_from..expected_to`` counts).
    ``known_missing`` is the conf's reason when a date (for a weekly period: any of its
    dates) is known not to be delivered, else None. Only ``sources`` when given."""
    start = as_of - timedelta(days=c.lookback_days - 1)
    excused: dict[tuple[str, date], str] = {}
    for k in c.known_missing:
        for d in k.dates:
            for name in [k.source] if k.source else list(SOURCES):
                excused.setdefault((name, d), k.reason)
    days = [start + timedelta(days=i) for i in range(c.lookback_days)]
    rows: list[tuple] = []
    for name, e in c.sources.items():
        if sources is not None and name not in sources or e.cadence == "optional":
            continue
        if e.cadence == "daily" or e.weekday is not None:
            for d in days:
                if e.cadence == "daily" or d.weekday() == WEEKDAYS.index(e.weekday):
                    rows.append((name, e.cadence, e.severity, d, d, excused.get((name, d))))
        else:  # weekly, any day: the 7 days ending at as_of
            period = [as_of - timedelta(days=i) for i in range(6, -1, -1)]
            reason = next((excused[(name, d)] for d in period if (name, d) in excused), None)
            rows.append((name, e.cadence, e.severity, period[0], as_of, reason))
    return rows


# ---------------------------------------------------------------------------------------
# Loading


def _check_suite_name(v: str) -> str:
    if not _SUITE_RE.match(v):
        raise ValueError(f"not a table name <layer>/<table> with layer {', '.join(DQ_LAYERS)}: {v!r}")
    layer, table = v.split("/")
    if layer in ("bronze", "silver") and table not in SOURCES:
        raise ValueError(f"unknown table {v!r}; {layer} tables are {', '.join(SOURCES)}")
    return v


@functools.lru_cache(maxsize=1)
def known_expectation_types() -> frozenset[str]:
    """GE's core expectation types (one module per type), read without importing GE."""
    spec = importlib.util.find_spec("great_expectations")
    names: set[str] = set(CUSTOM_TYPES) | {"unexpected_rows_expectation"}
    for loc in (spec.submodule_search_locations or []) if spec else []:
        names |= {p.stem for p in (Path(loc) / "expectations" / "core").glob("expect_*.py")}
    return frozenset(names)


def _check_expectation_type(v: str) -> str:
    known = known_expectation_types()
    if len(known) > len(CUSTOM_TYPES) + 1 and v not in known:
        close = [k for k in sorted(known) if k.startswith(v[:20])][:3]
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ValueError(f"unknown expectation type {v!r}{hint}")
    return v


def _default_block() -> dict[str, Any]:
    """The repository's ``conf/quality.yaml`` block (used when the settings have none)."""
    path = DEFAULT_CONF_DIR / QUALITY_FILE
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the quality configuration: {exc}") from None
    return dict(raw.get("quality") or {})


def parse_config(raw: Any, where: str = QUALITY_FILE) -> QualityConfig:
    """Validate the ``quality:`` block (one clear line on error)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: quality: must be a mapping")
    try:
        config = QualityConfig(**raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        msg = first["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{where}: quality.{loc}: {msg}") from None
    all_checks(config, date.today())  # overrides match something, no check declared twice
    return config


_cache: dict[str, QualityConfig] = {}


def config_from(settings: Any) -> QualityConfig:
    """The validated quality configuration of ``settings`` (its ``quality`` block, loaded from
    ``conf/quality.yaml`` with the other conf files), validated once per distinct block."""
    extra = getattr(settings, "extra", None) or {}
    raw = extra["quality"] if "quality" in extra else _default_block()
    key = json.dumps(raw, sort_keys=True, default=str)
    if key not in _cache:
        if len(_cache) > 16:
            _cache.clear()
        _cache[key] = parse_config(raw)
    return _cache[key]


def load_config(path: Path | None = None) -> QualityConfig:
    """Read a quality.yaml file on its own (``quality:`` block)."""
    path = Path(path) if path else DEFAULT_CONF_DIR / QUALITY_FILE
    if not path.exists():
        raise ConfigError(f"{path}: quality configuration not found")
    return parse_config(read_yaml(path).get("quality") or {}, str(path))


__all__ = ["Check", "QualityConfig", "QualityGateFailed", "load_config", "parse_config", "config_from",
           "suites", "all_checks", "gold_checks", "feature_rules", "SEVERITIES", "DQ_LAYERS", "EXISTS_IN_TABLE",
           "ONE_CURRENT_ROW", "ROWS_NEAR_PREVIOUS", "SHARES_NEAR_PREVIOUS", "WITHIN_RISK_TOLERANCE",
           "RANKS_WITHIN_TOP_N", "VALID_KYC",
           "RUNTIME_TYPES", "upper_time_bound", "Completeness", "expected_deliveries"]

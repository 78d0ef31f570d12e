"""Project settings: ``conf/base.yaml``, then ``conf/local.yaml``, then environment.

Validated with pydantic at start-up, so that a typo or a wrong type stops the run with
one clear line (``conf/base.yaml: engine.shuffle_partitions: Input should be a valid
integer``) instead of failing halfway through a job.
"""

from __future__ import annotations

import os
import re
from datetime import date
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONF_DIR = REPO_ROOT / "conf"


class ConfigError(ValueError):
    """A configuration file or value is invalid; the message says which and why."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _location(v: Any) -> Any:
    """A local path (a Path) or an object-store URI kept as text (``s3://bucket/prefix``:
    a Path would fold its ``//``); an unknown scheme is refused (c360.storage)."""
    from c360 import storage

    if isinstance(v, str) and storage.is_uri(v):
        storage.check_uri(v)
        return v.rstrip("/")
    return Path(v) if isinstance(v, str) else v


class Paths(_Strict):
    # local folders, or URIs on object storage (see ``storage:`` below and c360/storage.py)
    landing: Path | str = Path("./landing")
    lake: Path | str = Path("./lake")

    _locations = field_validator("landing", "lake", mode="before")(_location)


class Storage(_Strict):
    """Where an object store is when the lake or landing zone is a URI. Credentials come
    only from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN),
    and the ``AWS_*`` variables below override these values too."""

    endpoint: str | None = None  # AWS_ENDPOINT_URL, e.g. http://minio.internal:9000; None: AWS
    region: str | None = None  # AWS_REGION
    allow_http: bool = False  # AWS_ALLOW_HTTP: plain HTTP to the endpoint (tests, a local MinIO)


class Engine(_Strict):
    remote: str | None = None
    shuffle_partitions: int = Field(8, ge=1, le=10_000)
    conf: dict[str, str] = Field(default_factory=dict)

    @field_validator("remote")
    @classmethod
    def _remote_is_url(cls, v: str | None) -> str | None:
        if v in (None, ""):
            return None
        if not v.startswith("sc://"):
            raise ValueError(f"must be a Spark Connect URL starting with sc://, got {v!r}")
        return v


class Bank(_Strict):
    timezone: str = "Asia/Shanghai"
    currency: str = "CNY"

    @field_validator("timezone")
    @classmethod
    def _tz_exists(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}") from None
        return v


class Ingest(_Strict):
    max_future_days: int = Field(1, ge=0, le=3650)
    min_date: date = date(1900, 1, 1)
    read_tasks: int = Field(8, ge=1, le=10_000)
    # Upper bound of one ingest batch, in delivered (on-disk) megabytes: a year of history
    # is loaded in delivery-date order, a batch at a time, so memory stays bounded.
    batch_mb: int = Field(256, ge=1, le=1_000_000)
    # A file bringing more columns than this that neither the contract nor bronze has is
    # quarantined whole (every new column stays in bronze and silver for good).
    max_new_columns_per_file: int = Field(20, ge=0, le=10_000)


class Silver(_Strict):
    # Partition granularity of each incremental silver table: "day" (local date of the
    # source's event time) or "month" (its first day). Big daily sources by day.
    partition: dict[str, Literal["day", "month"]] = Field(
        default_factory=lambda: {"transactions": "day", "events": "day", "holdings": "day"})
    default_partition: Literal["day", "month"] = "month"
    # An anonymous digital event is given the customer of the device's latest earlier
    # login only when that login is at most this many days old.
    device_lookback_days: int = Field(90, ge=1, le=3650)
    # Most bronze rows one silver table takes in one go: a backlog (the first build of a
    # year of history) is processed in chunks of whole ingest batches, oldest first.
    batch_rows: int = Field(8_000_000, ge=1)

    @field_validator("partition")
    @classmethod
    def _known_sources(cls, v: dict) -> dict:
        from c360.contract import SOURCES

        partitioned = {n for n, s in SOURCES.items() if s.event_time and n != "customers"}
        unknown = sorted(set(v) - partitioned)
        if unknown:
            raise ValueError(f"unknown or unpartitioned source(s) {', '.join(unknown)}; "
                             f"partitioned sources are {', '.join(sorted(partitioned))}")
        return v


class Privacy(_Strict):
    key_env: str = "C360_PII_KEY"
    key_file: Path | None = None
    # `c360 erase`: data files and _delta_log entries that held an erased customer are
    # physically deleted once older than this (0: before the command returns). Time travel
    # to versions older than this stops working on every table of the lake.
    erasure_retention_hours: int = Field(168, ge=0, le=8760)
    # Per source with PII (customers): extra delivered columns declared not PII, the only
    # extra columns of that source that reach silver.
    non_pii_extra_columns: dict[str, list[str]] = Field(default_factory=dict)

    @field_validator("non_pii_extra_columns")
    @classmethod
    def _known_sources(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        from c360.contract import SOURCES

        unknown = sorted(set(v) - set(SOURCES))
        if unknown:
            raise ValueError(f"unknown source(s) {', '.join(unknown)}; the contract has {', '.join(SOURCES)}")
        return v


class Maintenance(_Strict):
    """``maintenance`` in ``conf/base.yaml``: ``c360 maintain`` (compaction, vacuum)."""

    # Files no longer referenced by a table are deleted once older than this; time travel
    # to versions before that point stops working. 0 deletes them at once.
    vacuum_retention_hours: int = Field(168, ge=0, le=87_600)
    # Target size of compacted files (MB); None: delta-rs' default (100 MB).
    target_file_mb: int | None = Field(None, ge=1, le=4096)


class Band(_Strict):
    lower: float = Field(alias="from", ge=0)
    label: str


def _bands_ascending(bands: list[Band]) -> list[Band]:
    lowers = [b.lower for b in bands]
    if not bands or lowers[0] != 0 or lowers != sorted(set(lowers)):
        raise ValueError("bands must start at 0 and have strictly increasing 'from' values")
    return bands


class Salary(_Strict):
    min_months: int = Field(2, ge=1, le=3)
    min_amount: float = Field(2000, ge=0)


class NightHours(_Strict):
    start: int = Field(22, ge=0, le=23)
    end: int = Field(6, ge=0, le=23)


class Profile(_Strict):
    age_bands: list[Band]
    income_bands: list[Band]
    city_tiers: dict[int, list[str]] = Field(default_factory=dict)
    default_city_tier: int = Field(3, ge=1, le=5)
    salary: Salary = Salary()
    night_hours: NightHours = NightHours()
    aggregate_partitions: int = Field(16, ge=0, le=4096)

    _check_age = field_validator("age_bands")(classmethod(lambda cls, v: _bands_ascending(v)))
    _check_income = field_validator("income_bands")(classmethod(lambda cls, v: _bands_ascending(v)))

    def as_dict(self) -> dict[str, Any]:
        """Plain mapping for the feature code (bands as {'from', 'label'})."""
        return self.model_dump(by_alias=True)


class HighEndTier(_Strict):
    min_aum: float = Field(500_000, ge=0)
    min_income: float = Field(1_000_000, ge=0)


class LongTailTier(_Strict):
    max_aum: float = Field(10_000, ge=0)
    max_txn_90d: int = Field(3, ge=0)
    max_logins_90d: int = Field(2, ge=0)


class ValueTiers(_Strict):
    high_end: HighEndTier = HighEndTier()
    long_tail: LongTailTier = LongTailTier()


class StageRule(_Strict):
    stage: str = Field(pattern=r"^[a-z][a-z0-9_]{1,30}$")
    when: str = Field(min_length=3)


class Lifecycle(_Strict):
    rules: list[StageRule] = Field(min_length=1)
    default: str = Field("mature", pattern=r"^[a-z][a-z0-9_]{1,30}$")
    churned_stage: str = "churned"


class ClusterFeature(_Strict):
    name: str
    log1p: bool = False
    fill: float = 0.0


class Clusters(_Strict):
    features: list[ClusterFeature] = Field(min_length=2)
    k_min: int = Field(4, ge=2, le=50)
    k_max: int = Field(8, ge=2, le=50)
    criterion: Literal["silhouette"] = "silhouette"
    sample_rows: int = Field(50_000, ge=50, le=2_000_000)
    silhouette_rows: int = Field(5_000, ge=50, le=100_000)
    n_init: int = Field(10, ge=1, le=100)
    max_iter: int = Field(300, ge=10, le=10_000)
    seed: int = 42


class Phrase(_Strict):
    label_zh: str = Field(min_length=1)
    label_en: str = Field(min_length=1)
    high_zh: str = Field(min_length=1)
    high_en: str = Field(min_length=1)
    low_zh: str = Field(min_length=1)
    low_en: str = Field(min_length=1)


class Personas(_Strict):
    id_prefix: str = Field("P", pattern=r"^[A-Z]{1,3}$")
    match_max_distance: float = Field(0.75, gt=0)
    top_features: int = Field(3, ge=1, le=10)
    min_abs_z: float = Field(0.3, ge=0)
    default_name_zh: str = "大众均衡型"
    default_name_en: str = "Mainstream, balanced"
    phrases: dict[str, Phrase] = Field(default_factory=dict)


class Segments(_Strict):
    value_tier: ValueTiers = ValueTiers()
    lifecycle: Lifecycle
    clusters: Clusters
    personas: Personas = Personas()
    report: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> "Segments":
        from features.segments import check_conf  # lazy: the feature registry imports pyspark

        check_conf(self)
        return self

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump()


class Tag(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{1,40}$")
    label_zh: str
    description: str = Field(min_length=5)
    owner: str = Field(min_length=2)
    rule: str = Field(min_length=3)


class ReasonText(_Strict):
    """One reason sentence in both languages. ``requires``: when the feature's value must
    be non-null (``present``) or above zero / true (``positive``) for the sentence to be
    true of this customer; ``any`` reads it whenever the contribution is positive."""

    zh: str = Field(min_length=2)
    en: str = Field(min_length=2)
    requires: Literal["any", "present", "positive"] = "any"
    # Read after the customer's own reasons (e.g. the product's general popularity).
    secondary: bool = False


class Reasons(_Strict):
    per_recommendation: int = Field(2, ge=1, le=5)
    min_contribution: float = Field(0.0, ge=0)
    # recommendations whose exact contributions give each feature's effect (models.scoring)
    sample_rows: int = Field(5000, ge=100, le=1_000_000)
    generic: ReasonText
    templates: dict[str, ReasonText] = Field(default_factory=dict)

    @field_validator("templates")
    @classmethod
    def _template_keys(cls, v: dict[str, ReasonText]) -> dict[str, ReasonText]:
        import re

        for key in v:
            if not re.fullmatch(r"[a-z][a-z0-9_]*\*?", key):
                raise ValueError(f"template key {key!r} must be a feature name, or a feature-name prefix "
                                 "ending with '*' (e.g. 'logins_*')")
        return v


class Eligibility(_Strict):
    decline_cooldown_days: int = Field(30, ge=1, le=365)
    contact_window_days: int = Field(30, ge=1, le=365)
    max_offers_per_window: int = Field(4, ge=1, le=100)
    # KYC statuses that allow an offer (compared trimmed and case-insensitively; kept here
    # trimmed and lower case). A customer with another status, or none, gets no offer.
    kyc_valid_statuses: list[str] = Field(default_factory=lambda: ["verified"], min_length=1)

    @field_validator("kyc_valid_statuses")
    @classmethod
    def _kyc_statuses(cls, v: list[str]) -> list[str]:
        out = [s.strip().lower() for s in v]
        if any(not s for s in out):
            raise ValueError("a KYC status is empty")
        return list(dict.fromkeys(out))


class Suitability(_Strict):
    unassessed_max_risk: str = Field("R2", pattern=r"^R[1-5]$")


class AttritionBands(_Strict):
    medium: float = Field(0.3, gt=0, lt=1)
    high: float = Field(0.6, gt=0, lt=1)

    @model_validator(mode="after")
    def _ordered(self) -> "AttritionBands":
        if not self.medium < self.high:
            raise ValueError(f"bands.medium ({self.medium}) must be below bands.high ({self.high})")
        return self


class Attrition(_Strict):
    # Registered model name; None: models.attrition.registered_model (conf/models.yaml).
    model: str | None = Field(None, min_length=1)
    bands: AttritionBands = AttritionBands()


class ProductValue(_Strict):
    """``scoring.product_value``: each product's business weight (margin or any weight the
    bank chooses); a recommendation's expected value is its calibrated score times it."""

    # the weight of a product not listed in by_product
    default: float = Field(1.0, ge=0, allow_inf_nan=False)
    by_product: dict[str, float] = Field(default_factory=dict)

    @field_validator("by_product")
    @classmethod
    def _weights(cls, v: dict[str, float]) -> dict[str, float]:
        import math

        bad = [f"{code}: {w!r}" for code, w in v.items() if not (math.isfinite(w) and w >= 0)]
        if bad:
            raise ValueError(f"weights must be non-negative numbers ({', '.join(bad)})")
        if any(not code.strip() for code in v):
            raise ValueError("a product code is empty")
        return v

    @property
    def uniform(self) -> bool:
        """Every product has the same weight (the order of the offers is the raw score's)."""
        return all(w == self.default for w in self.by_product.values())


class Scoring(_Strict):
    """``conf/scoring.yaml`` ``scoring``: how the champion models are applied at as_of."""

    # Registered model name; None: models.next_best_product.registered_model (conf/models.yaml).
    model: str | None = Field(None, min_length=1)
    # Recommendations kept per customer in gold/recommendations (the export keeps export.top_n of them)
    top_n: int = Field(7, ge=1, le=20)
    eligibility: Eligibility = Eligibility()
    suitability: Suitability = Suitability()
    reasons: Reasons
    attrition: Attrition = Attrition()
    product_value: ProductValue = ProductValue()
    # Control group: this share of the customers with recommendations is held out (kept in
    # gold/recommendations with holdout = true, never exported), chosen by a hash of the
    # customer id and the salt: the same customers every day while the salt stays.
    holdout_share: float = Field(0.05, ge=0, lt=0.5)
    holdout_salt: str = Field("c360-holdout", min_length=1)


class Export(_Strict):
    """``conf/scoring.yaml`` ``export``: the CRM export."""

    validity_days: int = Field(30, ge=1, le=365)
    schema_version: int = Field(1, ge=1)
    # Recommendations per customer in the drop: ranks 1..top_n of gold/recommendations (at most scoring.top_n)
    top_n: int = Field(3, ge=1, le=20)


class LgbmParams(_Strict):
    """LightGBM hyper-parameters (scikit-learn names); ``extra`` passes other LightGBM
    parameters through unchanged (e.g. ``lambdarank_truncation_level``)."""

    n_estimators: int = Field(250, ge=1, le=20_000)
    learning_rate: float = Field(0.05, gt=0, le=1)
    num_leaves: int = Field(31, ge=2, le=4096)
    min_child_samples: int = Field(50, ge=1)
    subsample: float = Field(0.8, gt=0, le=1)
    colsample_bytree: float = Field(0.8, gt=0, le=1)
    reg_lambda: float = Field(1.0, ge=0)
    extra: dict[str, str | int | float | bool] = Field(default_factory=dict)

    @field_validator("extra")
    @classmethod
    def _not_reserved(cls, v: dict) -> dict:
        reserved = {"objective", "random_state", "seed", "n_jobs", "num_threads", "verbose", "verbosity"}
        bad = sorted(reserved & set(v))
        if bad:
            raise ValueError(f"{', '.join(bad)} cannot be set here (the training code sets them)")
        return v

    def as_kwargs(self) -> dict[str, Any]:
        d = self.model_dump(exclude={"extra"})
        if self.subsample < 1:
            d["subsample_freq"] = 1  # bagging only happens with a frequency
        return {**d, **self.extra}


class Sampling(_Strict):
    """What training brings to the driver: a deterministic sample by customer
    (``pmod(xxhash64(customer_id), 1000) < customer_rate_per_mille``), negatives kept at
    ``negative_rate`` (weighted 1/rate), never more than ``max_train_rows`` rows."""

    customer_rate_per_mille: int = Field(1000, ge=1, le=1000)
    negative_rate: float = Field(1.0, gt=0, le=1)
    max_train_rows: int = Field(250_000, ge=1_000, le=20_000_000)


class NbpTraining(_Strict):
    snapshots: int = Field(12, ge=2, le=36)
    # a snapshot needs this many days of holdings history before it (fewer snapshots otherwise)
    min_history_days: int = Field(90, ge=0, le=1096)
    horizon_days: int = Field(30, ge=1, le=366)
    experiment: str = Field("c360-next-best-product", min_length=1)
    registered_model: str = Field("next_best_product", pattern=r"^[A-Za-z][A-Za-z0-9_.-]{0,99}$")
    kinds: list[Literal["ranker", "binary"]] = Field(default_factory=lambda: ["ranker", "binary"], min_length=1)
    sampling: Sampling = Sampling(negative_rate=0.25)
    ranker: LgbmParams = LgbmParams()
    binary: LgbmParams = LgbmParams()
    promotion_margin: float = Field(0.0, ge=0, le=1)
    # OOT evaluation on at most this many customers (whole customer hash buckets)
    oot_max_customers: int = Field(100_000, ge=1_000)
    # fewer adoptions than this in the training snapshots: the model is skipped (too_few_positives)
    min_positives: int = Field(20, ge=1)
    # bins of the calibrated scores' reliability table and expected calibration error
    calibration_bins: int = Field(10, ge=2, le=100)

    @field_validator("kinds")
    @classmethod
    def _unique_kinds(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError(f"kinds must not repeat, got {v}")
        return v


class AttritionTraining(_Strict):
    snapshots: int = Field(6, ge=2, le=36)
    horizon_days: int = Field(90, ge=1, le=366)
    experiment: str = Field("c360-attrition", min_length=1)
    registered_model: str = Field("attrition_risk", pattern=r"^[A-Za-z][A-Za-z0-9_.-]{0,99}$")
    sampling: Sampling = Sampling()
    params: LgbmParams = LgbmParams(n_estimators=300, learning_rate=0.03, num_leaves=15)
    promotion_margin: float = Field(0.05, ge=0, lt=0.5)
    calibration_bins: int = Field(10, ge=2, le=100)
    # fewer leavers than this in the training snapshots: the model is skipped (too_few_positives)
    min_positives: int = Field(20, ge=1)


class Prediction(_Strict):
    """``models.prediction``: how the score step applies the champions in the engine. (The
    out-of-time evaluation in training predicts with LightGBM: compiling each new model for
    one evaluation would cost more than it saves.)"""

    # Compile each model with lleaves (models/compiled.py): same scores, about 2.3x faster
    # than LightGBM's own prediction; False, or lleaves missing: LightGBM predicts. The
    # train step compiles each champion it promotes (jobs.train.compile_champion).
    compiled: bool = True
    # Where compiled models are kept (one file per model and CPU); None: $C360_MODEL_CACHE,
    # else ~/.cache/c360/compiled-models. A local directory of the machine that scores.
    cache_dir: Path | None = None


class Models(_Strict):
    """``conf/models.yaml`` ``models``: training of the next-best-product and attrition models."""

    seed: int = Field(42, ge=0, le=2**31 - 1)
    # LightGBM threads. OpenMP threads spin when they cannot all run, so more threads than
    # idle cores is much slower, not faster: keep 1 on a shared machine.
    threads: int = Field(1, ge=1, le=256)
    prediction: Prediction = Prediction()
    next_best_product: NbpTraining = NbpTraining()
    attrition: AttritionTraining = AttritionTraining()

    @model_validator(mode="after")
    def _distinct_names(self) -> "Models":
        if self.next_best_product.registered_model == self.attrition.registered_model:
            raise ValueError("next_best_product.registered_model and attrition.registered_model must differ")
        return self


class ExperienceKpis(_Strict):
    window_days: int = Field(365, ge=1, le=3660)
    min_respondents: int = Field(30, ge=1)


class ServiceKpis(_Strict):
    window_days: int = Field(90, ge=1, le=3660)
    # seconds per contact channel; ``default`` for the others
    wait_target_seconds: dict[str, float] = Field(default_factory=lambda: {"default": 600.0})
    top_reasons: int = Field(3, ge=1, le=50)

    @field_validator("wait_target_seconds")
    @classmethod
    def _targets(cls, v: dict[str, float]) -> dict[str, float]:
        if "default" not in v:
            raise ValueError("needs a 'default' target (seconds) for channels not listed")
        bad = sorted(k for k, t in v.items() if not t > 0)
        if bad:
            raise ValueError(f"targets must be > 0 seconds: {', '.join(bad)}")
        return v


class ComplaintKpis(_Strict):
    window_days: int = Field(365, ge=1, le=3660)
    sla_days: dict[Literal["low", "medium", "high"], float] = Field(
        default_factory=lambda: {"low": 5.0, "medium": 15.0, "high": 30.0})

    @field_validator("sla_days")
    @classmethod
    def _all_severities(cls, v: dict[str, float]) -> dict[str, float]:
        missing = sorted({"low", "medium", "high"} - set(v))
        if missing:
            raise ValueError(f"no SLA for severity {', '.join(missing)}")
        bad = sorted(k for k, d in v.items() if not d > 0)
        if bad:
            raise ValueError(f"SLA days must be > 0: {', '.join(bad)}")
        return v


class TopicTerms(_Strict):
    zh: list[str] = Field(default_factory=list)
    en: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _some_terms(self) -> "TopicTerms":
        if not [t for t in [*self.zh, *self.en] if t.strip()]:
            raise ValueError("a topic needs at least one zh or en term")
        return self


class Kpis(_Strict):
    """``kpis`` in ``conf/kpis.yaml``: the experience, service, complaint and topic KPIs."""

    experience: ExperienceKpis = ExperienceKpis()
    service: ServiceKpis = ServiceKpis()
    complaints: ComplaintKpis = ComplaintKpis()
    topics: dict[str, TopicTerms] = Field(default_factory=dict)

    @field_validator("topics")
    @classmethod
    def _topic_names(cls, v: dict[str, TopicTerms]) -> dict[str, TopicTerms]:
        bad = sorted(k for k in v if not re.fullmatch(r"[a-z][a-z0-9_]*", k))
        if bad:
            raise ValueError(f"topic names must be lower snake case: {', '.join(bad)}")
        return v


RECOVERY_REASONS = ("complaint_sla_breach", "complaint_reopened", "detractor", "negative_comment",
                    "high_attrition_risk", "repeated_long_waits")


class RecoveryReason(_Strict):
    """One service-recovery reason: its priority points, the days until the contact is
    due, and its sentence in both languages (read to the service agent, not the customer)."""

    points: int = Field(ge=1, le=1000)
    due_days: int = Field(ge=0, le=90)
    zh: str = Field(min_length=2)
    en: str = Field(min_length=2)


class ServiceRecovery(_Strict):
    """``service_recovery`` in ``conf/kpis.yaml``: who needs a service contact now
    (``recovery`` step, :mod:`features.recovery`)."""

    # survey answers and service contacts in this many days up to as_of are read
    window_days: int = Field(30, ge=1, le=365)
    # an NPS answer scored this or lower is a detractor's
    detractor_max_score: int = Field(6, ge=0, le=9)
    # a wait longer than this many times its channel's target (kpis.service.wait_target_seconds)
    long_wait_factor: float = Field(2.0, ge=1.0, le=100.0)
    # this many long waits in the window make `repeated_long_waits`
    long_wait_min_count: int = Field(2, ge=2, le=100)
    # gold/attrition_risk bands that make `high_attrition_risk`
    attrition_bands: list[Literal["low", "medium", "high"]] = Field(default_factory=lambda: ["high"], min_length=1)
    # days after a listing within which a later answer or behaviour counts as its outcome
    outcome_days: int = Field(90, ge=1, le=365)
    schema_version: int = Field(1, ge=1)
    # the churn warning's reasons: the attrition champion's features with the largest
    # positive contribution to the customer's own risk (per_recommendation: per customer;
    # sample_rows is not used: every warned customer's contributions are exact). None: none.
    attrition_reasons: Reasons | None = None
    reasons: dict[str, RecoveryReason] = Field(default_factory=lambda: {
        code: RecoveryReason(points=10, due_days=7, zh=code, en=code) for code in RECOVERY_REASONS})

    @field_validator("reasons")
    @classmethod
    def _every_reason(cls, v: dict[str, RecoveryReason]) -> dict[str, RecoveryReason]:
        missing, unknown = sorted(set(RECOVERY_REASONS) - set(v)), sorted(set(v) - set(RECOVERY_REASONS))
        if missing or unknown:
            raise ValueError(f"reasons must be exactly {', '.join(RECOVERY_REASONS)}"
                             + (f"; missing: {', '.join(missing)}" if missing else "")
                             + (f"; unknown: {', '.join(unknown)}" if unknown else ""))
        return v


class Settings(_Strict):
    # Fail closed: only an explicit ``development`` (C360_ENV, conf/local.yaml, `c360 demo`)
    # lets the public built-in PII key be used (c360.privacy).
    env: Literal["development", "production", "staging", "test"] = "production"
    paths: Paths = Paths()
    storage: Storage = Storage()
    engine: Engine = Engine()
    bank: Bank = Bank()
    ingest: Ingest = Ingest()
    silver: Silver = Silver()
    privacy: Privacy = Privacy()
    maintenance: Maintenance = Maintenance()
    profile: Profile | None = None
    segments: Segments | None = None
    tags: list[Tag] = Field(default_factory=list)
    scoring: Scoring | None = None
    export: Export | None = None
    models: Models | None = None
    kpis: Kpis = Kpis()
    service_recovery: ServiceRecovery = ServiceRecovery()
    # Blocks owned by later steps (profile, segments, models...) are validated by
    # their own modules; they are kept here as raw mappings.
    extra: dict[str, Any] = Field(default_factory=dict)

    @property
    def landing(self) -> Path | str:
        return self.paths.landing

    @property
    def lake(self) -> Path | str:
        return self.paths.lake

    def with_paths(self, landing: Path | str | None = None, lake: Path | str | None = None) -> "Settings":
        paths = self.paths.model_copy(
            update={k: _location(str(v)) for k, v in (("landing", landing), ("lake", lake)) if v is not None}
        )
        return self.model_copy(update={"paths": paths})


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return data


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


_KNOWN = set(Settings.model_fields) - {"extra"}


# Configuration files merged in this order (each optional but base.yaml), then local.yaml.
CONF_FILES = ("base.yaml", "profile.yaml", "tags.yaml", "segments.yaml", "quality.yaml", "models.yaml",
              "scoring.yaml", "kpis.yaml")


def load_settings(conf_dir: Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Load and validate settings from ``conf_dir`` (default: the repository's ``conf/``).

    Order of precedence, lowest first: ``base.yaml`` and the other files of
    :data:`CONF_FILES`, ``local.yaml``, environment (``C360_ENV``, ``C360_LANDING``,
    ``C360_LAKE``, ``SPARK_REMOTE``). ``C360_CONF_DIR`` points at another folder.
    """
    environ = dict(os.environ if environ is None else environ)
    conf_dir = Path(conf_dir or environ.get("C360_CONF_DIR") or DEFAULT_CONF_DIR)
    base = conf_dir / "base.yaml"
    if not base.exists():
        raise ConfigError(f"{base}: configuration file not found")
    raw: dict[str, Any] = {}
    for name in CONF_FILES:
        if (conf_dir / name).exists():
            raw = _deep_merge(raw, read_yaml(conf_dir / name))
    local = conf_dir / "local.yaml"
    if local.exists():
        raw = _deep_merge(raw, read_yaml(local))
    if environ.get("C360_ENV"):
        raw["env"] = environ["C360_ENV"]
    paths = dict(raw.get("paths") or {})
    for key, var in (("landing", "C360_LANDING"), ("lake", "C360_LAKE")):
        if environ.get(var):
            paths[key] = environ[var]
    raw["paths"] = paths
    if environ.get("SPARK_REMOTE"):
        raw["engine"] = {**(raw.get("engine") or {}), "remote": environ["SPARK_REMOTE"]}
    known = {k: v for k, v in raw.items() if k in _KNOWN}
    extra = {k: v for k, v in raw.items() if k not in _KNOWN}
    try:
        settings = Settings(**known, extra=extra)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        if first["loc"][:1] == ("tags",) and len(first["loc"]) > 1 and isinstance(raw.get("tags"), list):
            idx = first["loc"][1]
            if isinstance(idx, int) and idx < len(raw["tags"]) and isinstance(raw["tags"][idx], dict):
                where = f"tags[{raw['tags'][idx].get('name', idx)}].{'.'.join(str(p) for p in first['loc'][2:])}"
        if first["loc"][:1] == ("models",):
            raise ConfigError(f"{conf_dir / 'models.yaml'}: {where}: {first['msg']}") from None
        if first["loc"][:1] in (("scoring",), ("export",)):
            raise ConfigError(f"{conf_dir / 'scoring.yaml'}: {where}: {first['msg']}") from None
        raise ConfigError(f"{base.parent}: {where}: {first['msg']}") from None
    if "quality" in extra:  # data quality gates and delivery completeness (c360.quality)
        from c360.quality import parse_config

        parse_config(extra["quality"], str(conf_dir / "quality.yaml"))
    if settings.tags:
        from features.tags import check_rules

        check_rules(settings.tags, source=str(conf_dir / "tags.yaml"))
    if settings.scoring is not None:
        from models.scoring import check_templates, known_features

        check_templates(settings.scoring.reasons.templates, known_features(), source=str(conf_dir / "scoring.yaml"))
        if settings.export is not None and settings.export.top_n > settings.scoring.top_n:
            raise ConfigError(f"{conf_dir / 'scoring.yaml'}: export.top_n ({settings.export.top_n}) is more than "
                              f"scoring.top_n ({settings.scoring.top_n}), the recommendations gold keeps per customer")
    if settings.service_recovery.attrition_reasons is not None:
        from models.scoring import check_templates, known_features

        check_templates(settings.service_recovery.attrition_reasons.templates, known_features(),
                        source=f"{conf_dir / 'kpis.yaml'}: service_recovery.attrition_reasons")
    return settings

"""The raw data contract (``shared/spec/raw-data-contract.md``) as code.

One declaration per landing-zone source: its columns in delivery order, their logical
types, which are required, allowed enum values, the business key, how to pick the
latest version of a key, and which columns hold PII. The generator writes exactly these
columns; ingestion parses and validates against them. Nothing else in the project
should restate the contract.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Logical types of the contract. Everything arrives as text (CSV, JSON) or as Parquet
# columns that ingestion first renders as text, then casts with these types.
STRING = "string"
DATE = "date"
TIMESTAMP = "timestamp"
DECIMAL = "decimal"  # money: DECIMAL(18, 2)
DECIMAL_SCALE = 2  # decimals of a DECIMAL value
BOOL = "bool"
INT = "int"  # 64-bit integer

RISK_LEVELS = ("R1", "R2", "R3", "R4", "R5")

TRUE_STRINGS = ("true", "1", "y", "yes")
FALSE_STRINGS = ("false", "0", "n", "no")


@dataclass(frozen=True)
class Column:
    name: str
    type: str = STRING
    required: bool = False
    enum: tuple[str, ...] | None = None  # allowed values, compared case-insensitively
    min_value: float | None = None  # inclusive lower bound for numbers
    min_exclusive: bool = False
    max_value: float | None = None  # inclusive upper bound for numbers
    pii: bool = False


@dataclass(frozen=True)
class Source:
    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    # Columns that order versions of one key, latest last (after them: delivery date,
    # then position in the delivery).
    version_by: tuple[str, ...] = ()
    # The business time of a row (used to detect late rows and future timestamps).
    event_time: str | None = None
    # Pairs (earlier, later) that must be ordered when both are present.
    ordered: tuple[tuple[str, str], ...] = ()
    description: str = ""
    extra_checks: tuple[str, ...] = field(default_factory=tuple)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def required(self) -> list[str]:
        return [c.name for c in self.columns if c.required]

    @property
    def pii_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.pii]

    @property
    def identifiers(self) -> list[str]:
        """Text columns that identify something: the key's text columns and every ``*_id`` /
        ``*_code`` column (references to other sources' keys). Their values are normalised
        when read (:func:`c360.landing.normalise_identifier`), so that one id is one key
        however it was spelled."""
        return [c.name for c in self.columns if c.type == STRING and not c.enum
                and (c.name in self.key or c.name.endswith(("_id", "_code")))]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.name} has no column {name!r}")


C = Column

SOURCES: dict[str, Source] = {
    s.name: s
    for s in [
        Source(
            "customers",
            (
                C("customer_id", required=True),
                C("full_name", pii=True),
                C("national_id", pii=True),
                C("phone", pii=True),
                C("email", pii=True),
                C("birth_date", DATE, pii=True),
                C("gender", enum=("M", "F", "U")),
                C("occupation"),
                C("annual_income", DECIMAL, min_value=0),
                C("city"),
                C("home_branch_id"),
                C("onboarding_date", DATE, required=True),
                C("risk_tolerance", enum=RISK_LEVELS),
                C("kyc_status"),
                C("marketing_consent", BOOL, required=True),
                C("preferred_language", enum=("zh", "en")),
                C("updated_at", TIMESTAMP, required=True),
            ),
            key=("customer_id",),
            version_by=("updated_at",),
            event_time="updated_at",
            description="CRM master data; full snapshot or changed rows.",
        ),
        Source(
            "product_catalog",
            (
                C("product_code", required=True),
                C("product_name", required=True),
                C("family", required=True),
                C("risk_level", enum=RISK_LEVELS),
                C("min_age", INT, min_value=0, max_value=130),
                C("max_age", INT, min_value=0, max_value=130),
                C("active", BOOL, required=True),
            ),
            key=("product_code",),
            ordered=(("min_age", "max_age"),),
            description="Products the bank sells, with their risk level and age limits.",
        ),
        Source(
            "holdings",
            (
                C("account_id", required=True),
                C("customer_id", required=True),
                C("product_code", required=True),
                C("opened_date", DATE, required=True),
                C("closed_date", DATE),
                C("status", required=True, enum=("active", "dormant", "closed")),
                C("balance", DECIMAL),
                C("credit_limit", DECIMAL, min_value=0),
                C("currency"),
                C("snapshot_date", DATE, required=True),
            ),
            key=("account_id", "snapshot_date"),
            event_time="snapshot_date",
            ordered=(("opened_date", "closed_date"), ("opened_date", "snapshot_date")),
            description="Accounts and contracts, one row per account and snapshot date.",
        ),
        Source(
            "transactions",
            (
                C("txn_id", required=True),
                C("account_id", required=True),
                C("customer_id", required=True),
                C("txn_ts", TIMESTAMP, required=True),
                C("amount", DECIMAL, required=True, min_value=0, min_exclusive=True),
                C("direction", required=True, enum=("debit", "credit")),
                C("currency"),
                C(
                    "channel",
                    required=True,
                    enum=("branch", "atm", "mobile", "online", "pos", "wechat", "call_center"),
                ),
                C("merchant_category"),
                C("counterparty"),
                C("description"),
            ),
            key=("txn_id",),
            event_time="txn_ts",
            description="Core-banking postings.",
        ),
        Source(
            "events",
            (
                C("event_id", required=True),
                C("customer_id"),
                C("device_id", required=True),
                C("session_id"),
                C("event_ts", TIMESTAMP, required=True),
                C("channel", required=True, enum=("app", "web", "wechat_mini", "atm", "vtm")),
                C(
                    "event_type",
                    required=True,
                    enum=(
                        "login",
                        "logout",
                        "page_view",
                        "product_view",
                        "search",
                        "offer_impression",
                        "offer_click",
                        "application_start",
                        "application_submit",
                        "error",
                    ),
                ),
                C("product_code"),
                C("page"),
                C("duration_ms", INT, min_value=0),
            ),
            key=("event_id",),
            event_time="event_ts",
            description="Digital behaviour: app, web, mini-program, self-service devices.",
        ),
        Source(
            "interactions",
            (
                C("interaction_id", required=True),
                C("customer_id", required=True),
                C("channel", required=True),
                C("branch_id"),
                C("started_at", TIMESTAMP, required=True),
                C("ended_at", TIMESTAMP),
                C("wait_seconds", INT, min_value=0),
                C("handle_seconds", INT, min_value=0),
                C("reason"),
                C("resolved_first_contact", BOOL),
                C("agent_id"),
            ),
            key=("interaction_id",),
            event_time="started_at",
            ordered=(("started_at", "ended_at"),),
            description="Service contacts: branch visits, call centre, chatbot, video.",
        ),
        Source(
            "feedback",
            (
                C("response_id", required=True),
                C("customer_id", required=True),
                C("survey_type", required=True, enum=("nps", "csat", "ces")),
                C("score", INT, required=True, min_value=0, max_value=10),
                C("comment"),
                C(
                    "touchpoint",
                    enum=(
                        "account_opening",
                        "transfer",
                        "wealth_consult",
                        "loan_application",
                        "complaint_handling",
                        "branch_service",
                        "app",
                    ),
                ),
                C("channel"),
                C("responded_at", TIMESTAMP, required=True),
                C("interaction_id"),
            ),
            key=("response_id",),
            event_time="responded_at",
            description="Surveys: NPS 0-10, CSAT 1-5, CES 1-7.",
        ),
        Source(
            "complaints",
            (
                C("complaint_id", required=True),
                C("customer_id", required=True),
                C("opened_at", TIMESTAMP, required=True),
                C("closed_at", TIMESTAMP),
                C("channel"),
                C("category", required=True),
                C("severity", enum=("low", "medium", "high")),
                C("status", required=True, enum=("open", "in_progress", "resolved", "rejected")),
                C("description"),
                C("product_code"),
                C("compensation_amount", DECIMAL, min_value=0),
            ),
            key=("complaint_id",),
            # The latest status change wins: later delivery first, then the status's
            # progress (open < in_progress < resolved/rejected), then closing time.
            version_by=("_delivery_date", "_status_rank", "closed_at"),
            event_time="opened_at",
            ordered=(("opened_at", "closed_at"),),
            description="Complaints with category, severity and resolution.",
        ),
        Source(
            "campaign_responses",
            (
                C("offer_id", required=True),
                C("customer_id", required=True),
                C("product_code", required=True),
                C("channel", required=True),
                C("sent_at", TIMESTAMP, required=True),
                C(
                    "outcome",
                    required=True,
                    enum=("sent", "opened", "clicked", "converted", "declined", "bounced"),
                ),
                C("outcome_at", TIMESTAMP),
            ),
            # One row per step of an offer's funnel, so response rates can be computed.
            key=("offer_id", "outcome"),
            event_time="sent_at",
            ordered=(("sent_at", "outcome_at"),),
            description="What happened to offers, including the pipeline's own.",
        ),
    ]
}

# Score ranges per survey type (inclusive).
SURVEY_SCORE_RANGES = {"nps": (0, 10), "csat": (1, 5), "ces": (1, 7)}

COMPLAINT_STATUS_RANK = {"open": 0, "in_progress": 1, "resolved": 2, "rejected": 2}

FILE_FORMATS = (".csv", ".csv.gz", ".parquet", ".jsonl")


_NOT_WORD = re.compile(r"[^\w]+")


def column_name(delivered: str) -> str:
    """A delivered column name as the pipeline names it: a safe lower-case identifier.

    ``" Channel Detail "`` -> ``channel_detail``: the UTF-8 BOM is dropped, runs of anything
    but letters, digits and ``_`` become one ``_``, and underscores at either end go (names
    that start with ``_`` are reserved for the pipeline's own columns such as ``_line``). Contract
    names already have this form, so a header spelled ``Customer ID`` matches ``customer_id``.
    Every layer uses these names, so a new column is safe in SQL, Delta and Parquet.
    """
    return _NOT_WORD.sub("_", delivered.replace("\ufeff", "").strip().lower()).strip("_")


def source(name: str) -> Source:
    try:
        return SOURCES[name]
    except KeyError:
        raise KeyError(f"unknown source {name!r}; the contract has {', '.join(SOURCES)}") from None

"""Silver transforms: bronze rows in, clean, conformed and private rows out.

- :func:`conform`: one row per key, canonical spellings, no bronze bookkeeping columns;
- :func:`tokenise`: PII columns replaced by keyed HMAC tokens (computed in the engine's Python
  workers, which read the key: it is never in the query plan);
- :func:`mask_free_text`: phone numbers, emails and national ids inside comments removed;
- :func:`scd2`: the versions of a record as SCD type 2 history (valid_from/valid_to);
- :func:`attribute_events`: anonymous digital events given to a customer through the
  session's or the device's logins;
- :func:`customers_silver`: the customer master as history, with PII tokenised and
  ``birth_month`` (age and age band stay computable, the exact birth date does not).
"""

from __future__ import annotations

import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from c360.contract import Source, column_name
from c360.privacy import KeyRef, hmac_hex
from features.bronze import keep_latest
from features.localtime import local_time

# Free-text categorical columns normalised to lower snake case in silver.
LOWER_CASE = {
    "product_catalog": ["family"],
    "customers": ["kyc_status", "occupation"],
    "interactions": ["channel", "reason"],
    "feedback": ["channel"],
    "complaints": ["channel", "category"],
    "campaign_responses": ["channel"],
    "transactions": ["merchant_category"],
}
UPPER_CASE = ["currency", "product_code"]
FREE_TEXT = {"feedback": ["comment"], "complaints": ["description"], "transactions": ["description"]}
LINEAGE = ["_source_file", "_batch_id", "_ingested_at"]

# Contact details as customers type them: ASCII or full-width digits (０-９, what a Chinese
# input method gives), and between any two digits up to four separators (spaces, dots,
# dashes, brackets, in ASCII or full-width forms): "138.0013.8000", "(138) 0013 8000",
# "+86 138-0013-8000", "１３８００１３８０００", "1101 0119 9001 0112 3X". The patterns match
# those spellings directly (the text around them is left as it is): equivalent to NFKC and
# removing the separators before matching. No look-around (Sail's regex engine has none):
# digit boundaries are captured and put back.
_D = "[0-9\uff10-\uff19]"
_NOT_D = "[^0-9\uff10-\uff19]"
_SEP = "[-_ \t\u00a0\u3000.\u00b7\u2010-\u2015\u30fb\uff0d\uff0e()\uff08\uff09]{0,4}"
_PHONE = (f"(^|{_NOT_D})[(\uff08]?(?:(?:\\+|\uff0b|00|\uff10\uff10)?[8\uff18][6\uff16]{_SEP})?"
          f"[1\uff11]{_SEP}[3-9\uff13-\uff19](?:{_SEP}{_D}){{9}}({_NOT_D}|$)")
_EMAIL = "[A-Za-z0-9._%+-]+[@\uff20][A-Za-z0-9.-]+\\.[A-Za-z]{2,}"
_NATIONAL_ID = f"(^|{_NOT_D}){_D}(?:{_SEP}{_D}){{16}}{_SEP}[0-9\uff10-\uff19Xx\uff38\uff58]({_NOT_D}|$)"
# Text without one of these holds no contact detail (one cheap test instead of five replacements).
_MAYBE_CONTACT = "[0-9\uff10-\uff19@\uff20]"


def _token_udf(ref: KeyRef):
    """A pandas UDF: string -> HMAC-SHA256 hex under the key ``ref`` names.

    Built per call, with a session active (under Spark Connect a UDF made without one is a
    classic-Spark UDF). The function is pickled into the plan with ``ref`` alone (names and
    a fingerprint); :func:`c360.privacy.hmac_hex` is pickled by reference and reads the key
    in the worker, so the key and its HMAC pads never appear in a plan.
    """
    from pyspark.sql.functions import pandas_udf

    def token(values: pd.Series) -> pd.Series:
        return hmac_hex(values, ref)

    return pandas_udf(token, "string")


def hmac_token(value: Column, key: KeyRef) -> Column:
    """HMAC-SHA256 of the UTF-8 text of ``value`` as 64 hex characters (null stays null).

    ``key`` names the key (:func:`c360.privacy.pii_key_ref`); the engine's Python workers
    read it (see :mod:`c360.privacy`).
    """
    if not isinstance(key, KeyRef):
        raise TypeError("hmac_token needs a c360.privacy.KeyRef (where the key is), not the key: "
                        "a key would be written into the query plan")
    return _token_udf(key)(value.cast("string"))


def tokenise(df: DataFrame, columns: list[str], key: KeyRef) -> DataFrame:
    """Replace each PII column ``c`` by ``c_token`` (keyed HMAC); the raw column is dropped."""
    out = df
    for c in columns:
        if c in out.columns:
            out = out.withColumn(f"{c}_token", hmac_token(F.col(c), key)).drop(c)
    return out


def mask_free_text(text: Column) -> Column:
    """Remove phone numbers, e-mail addresses and national ids that customers type into comments,
    in any of the spellings above (full-width digits, separators between the digits)."""
    t = F.regexp_replace(text, _EMAIL, "[email]")
    # Each match consumes the character after it, so a number right after another one
    # (one separator between) is only found by a second pass.
    for _ in range(2):
        t = F.regexp_replace(t, _NATIONAL_ID, "$1[id]$2")
        t = F.regexp_replace(t, _PHONE, "$1[phone]$2")
    # Text without a digit or an "@" holds none of them: one cheap test instead of five
    # replacements (7.5M transaction descriptions: conform 11.0 s -> 7.9 s).
    return F.when(text.rlike(_MAYBE_CONTACT), t).otherwise(text)


def _snake(c: Column) -> Column:
    return F.regexp_replace(F.lower(F.trim(c)), r"[\s\-]+", "_")


# Columns silver adds itself. A delivered extra column of one of these names would clash
# with them, so it reaches silver as ``extra_<name>``.
DERIVED = {
    "*": ("partition_date",),
    "customers": ("birth_month", "valid_from", "valid_to", "is_current"),
    "events": ("attributed_by",),
    "feedback": ("sentiment_score", "sentiment_label"),
    "complaints": ("sentiment_score", "sentiment_label"),
}


def silver_extras(columns: list[str], source: Source, non_pii: list[str] | tuple[str, ...] = ()) -> list[str]:
    """The delivered columns outside the contract (bronze keeps them all) that may go on to silver.

    A source whose contract has PII columns (customers) may carry more PII in a column the
    contract does not know, so only the extra columns declared non-PII (``non_pii``, from
    ``privacy.non_pii_extra_columns``) pass; every other source passes all of them.
    """
    extras = [c for c in columns if c not in source.column_names and not c.startswith("_")]
    if source.pii_columns:
        allowed = {column_name(n) for n in non_pii}
        extras = [c for c in extras if c in allowed]
    return extras


def _extra_name(name: str, source: Source) -> str:
    """Sanitised name of an extra column, moved aside when silver derives a column of that name."""
    safe = column_name(name) or "unnamed"
    reserved = set(DERIVED["*"]) | set(DERIVED.get(source.name, ())) | set(source.column_names) \
        | {f"{c}_token" for c in source.pii_columns}
    return f"extra_{safe}" if safe in reserved else safe


def conform(df: DataFrame, source: Source, deduplicate: bool = True) -> DataFrame:
    """One row per key with canonical spellings; bronze bookkeeping dropped, lineage kept.

    Enums were canonicalised when validated; here free-text categories become lower
    snake case, currencies and product codes upper case, and comments lose any contact
    details typed into them. If a key still has several rows (it should not after the
    bronze MERGE) the latest version wins; ``deduplicate=False`` skips that check for input
    known to hold one row per key (a grouping over every key of the input).

    Extra delivered columns (outside the contract; which ones reach this point is the
    caller's choice, see :func:`silver_extras`) are kept as strings under a sanitised name
    (``extra_<name>`` when silver derives a column of that name); rows delivered before the
    column existed have null in it.
    """
    if deduplicate and "_version" in df.columns:
        df = keep_latest(df, list(source.key), "_version")
    for c in LOWER_CASE.get(source.name, []):
        if c in df.columns:
            df = df.withColumn(c, _snake(F.col(c)))
    for c in UPPER_CASE:
        if c in df.columns:
            df = df.withColumn(c, F.upper(F.trim(F.col(c))))
    for c in FREE_TEXT.get(source.name, []):
        if c in df.columns:
            df = df.withColumn(c, mask_free_text(F.col(c)))
    drop = [c for c in df.columns if c.startswith("_") and c not in LINEAGE]
    df = df.drop(*drop)
    return df.select(*[F.col(f"`{c}`") if c in source.column_names or c.startswith("_")
                       else F.col(f"`{c}`").cast("string").alias(_extra_name(c, source)) for c in df.columns])


def scd2(versions: DataFrame, key: list[str], order_by: str, tracked: list[str]) -> DataFrame:
    """SCD type 2 history from the versions of a record.

    ``versions`` holds one row per (key, ``order_by``). Consecutive versions whose
    ``tracked`` columns are all equal collapse into one; each remaining version is valid
    from its ``order_by`` value until the next one's (``valid_to`` exclusive, null for the
    current row), and ``is_current`` marks the latest.
    """
    w = Window.partitionBy(*key).orderBy(order_by)
    signature = F.sha2(F.to_json(F.struct(*[F.col(c) for c in tracked])), 256)
    changed = versions.withColumn("_sig", signature) \
        .withColumn("_prev_sig", F.lag("_sig").over(w)) \
        .where(F.col("_prev_sig").isNull() | (F.col("_sig") != F.col("_prev_sig")))
    return changed.withColumn("valid_from", F.col(order_by)) \
        .withColumn("valid_to", F.lead(order_by).over(w)) \
        .withColumn("is_current", F.col("valid_to").isNull()) \
        .drop("_sig", "_prev_sig")


def customers_silver(versions: DataFrame, source: Source, key: KeyRef) -> DataFrame:
    """The customer master as SCD2 history, PII tokenised, ``birth_month`` kept for age.

    Tracked attributes are every contract column except the key and ``updated_at``, and
    the extra columns the caller let through (declared non-PII, see :func:`silver_extras`).
    """
    df = conform(versions.drop("_version"), source) if "_version" in versions.columns else conform(versions, source)
    df = df.withColumn("birth_month", F.trunc("birth_date", "MM"))
    tracked = [c for c in df.columns if c not in ("customer_id", "updated_at", "birth_month")
               and not c.startswith("_")]  # contract columns and the extra columns let through
    history = scd2(df, ["customer_id"], "updated_at", tracked)
    return tokenise(history, source.pii_columns, key)


def customer_pii(versions: DataFrame, source: Source, key: KeyRef) -> DataFrame:
    """The restricted table: current raw PII per customer, with its tokens for re-identification."""
    w = Window.partitionBy("customer_id").orderBy(F.col("updated_at").desc())
    current = versions.withColumn("_rn", F.row_number().over(w)).where("_rn = 1")
    cols = source.pii_columns
    return current.select(
        "customer_id", *cols, *[hmac_token(F.col(c), key).alias(f"{c}_token") for c in cols], "updated_at")


LOGIN_COLUMNS = ["session_id", "device_id", "event_ts", "event_id", "customer_id"]


def attribute_events(events: DataFrame, context: DataFrame | None = None,
                     device_lookback_days: int | None = None) -> DataFrame:
    """Give anonymous events a customer through logins.

    ``customer_id`` is kept when delivered (``attributed_by`` = 'login'). Otherwise the
    customer who logged in during the same session (when exactly one did) gets it
    ('session'); otherwise the customer of the latest earlier login on the same device
    ('device'), if that login is at most ``device_lookback_days`` old (any age when None).
    Later logins on a device are never used, so attribution does not look into the future
    beyond the session itself. Events with no such login stay anonymous.

    ``context``: earlier events with a delivered customer (same columns as ``events``,
    typically the already-processed logins of the look-back period). They take part in
    the session and device attribution but are not returned: this is how a daily run
    attributes one new day of events without re-reading the whole history.
    """
    cols = events.columns
    others = [c for c in cols if c != "customer_id"]
    known = events.where(F.col("customer_id").isNotNull())
    logins = known.select(*LOGIN_COLUMNS)
    if context is not None:
        logins = logins.unionByName(context.where(F.col("customer_id").isNotNull()).select(*LOGIN_COLUMNS))
    unknown = events.where(F.col("customer_id").isNull())
    # Sessions with exactly one customer, the anonymous events' build side (few columns).
    # Only the sessions anonymous events are in are grouped, and below only the logins of
    # devices still anonymous events were on are sorted: the logins of the other sessions
    # and devices cannot change any result (at 1M customers, 7.2M new events with 90 days
    # of earlier logins: 27.1 s -> 9.8 s, the same attribution).
    anonymous_sessions = unknown.where(F.col("session_id").isNotNull()).select("session_id").distinct()
    sessions = (logins.join(anonymous_sessions, "session_id", "left_semi").groupBy("session_id")
                .agg(F.count_distinct("customer_id").alias("_n"), F.max("customer_id").alias("_session_customer"))
                .where("_n = 1").select(F.col("session_id").alias("_sid"), "_session_customer"))
    anonymous = sessions.join(unknown, F.col("_sid") == F.col("session_id"), "right").drop("_sid")
    by_session = anonymous.where(F.col("_session_customer").isNotNull())
    rest = anonymous.where(F.col("_session_customer").isNull()).drop("_session_customer")
    # The rest: the device's latest earlier login. Only the logins' few columns and the
    # events still anonymous are sorted (a window over every event and column held ~14 GB
    # for 8M events). device_id is required by the contract, never null here.
    logins = logins.join(rest.select("device_id").distinct(), "device_id", "left_semi")
    login = F.when(F.col("customer_id").isNotNull(), F.struct(F.col("event_ts").alias("ts"),
                                                               F.col("customer_id").alias("cid")))
    device_w = Window.partitionBy("device_id").orderBy("event_ts", "event_id") \
        .rowsBetween(Window.unboundedPreceding, 0)
    marked = (logins.select("device_id", "event_ts", "event_id", login.alias("_login"), F.lit(False).alias("_anon"))
              .unionByName(rest.withColumn("_login", login).withColumn("_anon", F.lit(True)),
                           allowMissingColumns=True))
    by_device = marked.withColumn("_device_login", F.last("_login", ignorenulls=True).over(device_w)) \
        .where(F.col("_anon"))
    device_customer = F.col("_device_login.cid")
    if device_lookback_days is not None:
        recent = F.col("_device_login.ts") >= F.col("event_ts") - F.expr(f"INTERVAL {int(device_lookback_days)} DAYS")
        device_customer = F.when(recent, device_customer)
    return known.select(*others, "customer_id", F.when(F.col("customer_id").isNotNull(), F.lit("login"))
                        .alias("attributed_by")).unionByName(
        by_session.select(*others, F.col("_session_customer").alias("customer_id"),
                          F.when(F.col("_session_customer").isNotNull(), F.lit("session")).alias("attributed_by"))
    ).unionByName(
        by_device.select(*others, device_customer.alias("customer_id"),
                         F.when(device_customer.isNotNull(), F.lit("device")).alias("attributed_by")))


def with_partition_date(df: DataFrame, event_time: str, granularity: str, bank_timezone: str) -> DataFrame:
    """Add ``partition_date``: the local date (``day``) or month start (``month``) of ``event_time``.

    Timestamps are UTC instants and are converted to the bank's time zone first, so a
    day partition holds exactly one business day; a DATE column is taken as it is.
    """
    col = F.col(event_time)
    is_date = dict(df.dtypes).get(event_time) == "date"
    day = col if is_date else F.to_date(local_time(col, bank_timezone))
    if granularity == "month":
        day = F.trunc(day, "MM")
    elif granularity != "day":
        raise ValueError(f"partition granularity must be 'day' or 'month', not {granularity!r}")
    return df.withColumn("partition_date", day)

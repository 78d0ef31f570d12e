"""Customer 360 features, point in time.

Every function takes an :class:`AsOf` and reads only rows whose business time lies before
the end of ``as_of`` in the bank's time zone (``AsOf.cutoff``, an instant in UTC): nothing
after it can leak into a feature, which is what makes the same code usable for training
snapshots in the past.

Each family prepares its input rows (``<family>_inputs``), then its declared features are
aggregated per customer (:func:`aggregate_family`). :func:`customer_360` joins the families
onto the customers known at ``as_of`` and evaluates the cross-family ``post`` features.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from features.localtime import local_time
from features.registry import REGISTRY, Feature, by_family, declare

FAMILY_PRODUCTS = ("current_account", "savings", "time_deposit", "wealth_management", "fund", "insurance",
                   "credit_card", "personal_loan", "mortgage")
DEPOSIT_FAMILIES = ("current_account", "savings", "time_deposit")
WEALTH_FAMILIES = ("wealth_management", "fund", "insurance")
LOAN_FAMILIES = ("personal_loan", "mortgage")
SPEND_CATEGORIES = ("groceries", "dining", "travel", "e_commerce", "utilities", "education", "healthcare",
                    "luxury", "fuel", "entertainment")
TXN_CHANNELS = ("branch", "atm", "mobile", "online", "pos", "wechat")
CONTACT_CHANNELS = ("branch", "call_center", "chatbot", "video")
# The source families, in the order customer_360 aggregates them.
FAMILIES = ("holdings", "transactions", "digital", "service", "feedback", "complaints", "campaigns")


@dataclass(frozen=True)
class AsOf:
    """A business date and the instant its day ends in the bank's time zone."""

    as_of: date
    bank_timezone: str = "Asia/Shanghai"

    @property
    def cutoff_utc(self) -> datetime:
        local_end = datetime.combine(self.as_of + timedelta(days=1), datetime.min.time(),
                                     tzinfo=ZoneInfo(self.bank_timezone))
        return local_end.astimezone(timezone.utc).replace(tzinfo=None)

    @property
    def cutoff(self) -> Column:
        """End of ``as_of`` (exclusive) as a UTC timestamp literal."""
        return F.lit(self.cutoff_utc.strftime("%Y-%m-%d %H:%M:%S")).cast("timestamp")

    def since(self, days: int) -> Column:
        """Start of a window of ``days`` days ending at the cutoff."""
        start = self.cutoff_utc - timedelta(days=days)
        return F.lit(start.strftime("%Y-%m-%d %H:%M:%S")).cast("timestamp")

    def in_window(self, ts: Column, days: int) -> Column:
        return (ts >= self.since(days)) & (ts < self.cutoff)

    def date_lit(self, days_before: int = 0) -> Column:
        return F.lit((self.as_of - timedelta(days=days_before)).isoformat()).cast("date")

    def local(self, ts: Column) -> Column:
        return local_time(ts, self.bank_timezone)

    def partitions(self, df: DataFrame, days: int | None = None) -> DataFrame:
        """Skip silver partitions that cannot hold rows of the window (no-op when the
        table has no ``partition_date``). Only a read optimisation: the exact window is
        still applied on the event time. Month partitions are dated by their first day,
        hence the extra month of slack before the window."""
        if "partition_date" not in df.columns:
            return df
        cond = F.col("partition_date") <= self.date_lit()
        if days is not None:
            cond = cond & (F.col("partition_date") >= self.date_lit(days + 31))
        return df.where(cond)


def _count_if(cond: Column) -> Column:
    return F.sum(F.when(cond, 1).otherwise(0))


def _sum_if(cond: Column, value: Column) -> Column:
    """Sum of ``value`` over the rows where ``cond`` holds (0 without any), as a double.
    ``value`` is a decimal (every amount of the contract is) or an integer: summed exactly,
    so independent of the order the engine adds rows in (a double sum can differ in its
    last bits from one run to the next), and made a double once. Rows failing ``cond``
    are null, which the sum skips: faster than adding zeros, and no cast per row."""
    return F.coalesce(F.sum(F.when(cond, value)).cast("double"), F.lit(0.0))


def _ratio(num: str, den: str) -> Column:
    return F.when(F.col(den) > 0, F.col(num) / F.col(den))


# ---------------------------------------------------------------------------------------
# profile: who the customer is (from the SCD2 version valid at as_of)

declare(
    Feature("age", "profile", "Age in whole years at as_of (from birth month).", "bigint"),
    Feature("age_band", "profile", "Age band (conf/profile.yaml age_bands).", "string"),
    Feature("tenure_days", "profile", "Days since onboarding.", "bigint"),
    Feature("tenure_years", "profile", "Years since onboarding (decimal).", "double"),
    Feature("annual_income", "profile", "Declared annual income (CNY).", "double"),
    Feature("income_band", "profile", "Income band (conf/profile.yaml income_bands).", "string"),
    Feature("occupation", "profile", "Occupation as recorded in CRM.", "string"),
    Feature("gender", "profile", "M, F or U.", "string"),
    Feature("city", "profile", "City of residence.", "string"),
    Feature("city_tier", "profile", "City tier 1-3 (conf/profile.yaml city_tiers).", "bigint"),
    Feature("home_branch_id", "profile", "Home branch.", "string"),
    Feature("marketing_consent", "profile", "Customer agreed to marketing contact.", "boolean"),
    Feature("risk_tolerance", "profile", "Suitability questionnaire result R1-R5 (null: no valid assessment).",
            "string"),
    Feature("risk_level", "profile", "Risk tolerance as a number 1-5 (null: no valid assessment).", "bigint"),
    Feature("has_risk_assessment", "profile", "A valid risk assessment exists.", "boolean"),
    Feature("preferred_language", "profile", "zh or en.", "string"),
    Feature("kyc_status", "profile", "KYC status.", "string"),
)


def customers_at(customers: DataFrame, at: AsOf) -> DataFrame:
    """The SCD2 version of each customer valid at the end of ``as_of`` (onboarded by then)."""
    valid = (F.col("valid_from") < at.cutoff) & (F.col("valid_to").isNull() | (F.col("valid_to") >= at.cutoff))
    return customers.where(valid & (F.col("onboarding_date") <= at.date_lit()))


def _band(value: Column, bands: list[dict]) -> Column:
    out = None
    for band in sorted(bands, key=lambda b: -b["from"]):
        cond = value >= F.lit(band["from"])
        out = F.when(cond, F.lit(band["label"])) if out is None else out.when(cond, F.lit(band["label"]))
    return out


def profile_features(customers: DataFrame, at: AsOf, conf: dict) -> DataFrame:
    """Profile family: one row per customer known at ``as_of``."""
    base = customers_at(customers, at)
    age = F.floor(F.months_between(at.date_lit(), F.col("birth_month")) / 12).cast("bigint")
    tenure = F.datediff(at.date_lit(), F.col("onboarding_date"))
    tier = None
    for t, cities in sorted(conf["city_tiers"].items()):
        cond = F.col("city").isin(*cities)
        tier = F.when(cond, F.lit(int(t))) if tier is None else tier.when(cond, F.lit(int(t)))
    tier = (tier.otherwise(F.lit(conf["default_city_tier"])) if tier is not None
            else F.lit(conf["default_city_tier"]))
    risk_num = F.regexp_extract("risk_tolerance", r"^R([1-5])$", 1)
    income = F.col("annual_income").cast("double")
    return base.select(
        "customer_id",
        age.alias("age"),
        _band(age, conf["age_bands"]).alias("age_band"),
        tenure.cast("bigint").alias("tenure_days"),
        (tenure / F.lit(365.25)).alias("tenure_years"),
        income.alias("annual_income"),
        _band(income, conf["income_bands"]).alias("income_band"),
        "occupation", "gender", "city",
        F.when(F.col("city").isNotNull(), tier).cast("bigint").alias("city_tier"),
        "home_branch_id", "marketing_consent", "risk_tolerance",
        F.when(risk_num != "", risk_num.cast("bigint")).alias("risk_level"),
        F.col("risk_tolerance").isNotNull().alias("has_risk_assessment"),
        "preferred_language", "kyc_status",
    )


# ---------------------------------------------------------------------------------------
# holdings: the latest snapshot of each account at as_of, and 90 days before

BALANCE_LAG_DAYS = 90  # the balances of aum_90d_ago and the changes over 90 days
# the silver step's tables that stand in for windows over every snapshot (customer_360's ``tables``)
LATEST_TABLE, LAGGED_TABLE = "holdings_latest", "holdings_lagged"

def _held(at_date: Column) -> Column:
    return (F.col("status") != "closed") & (F.col("opened_date") <= at_date) & \
        (F.col("closed_date").isNull() | (F.col("closed_date") > at_date))


def latest_snapshots(holdings: DataFrame) -> DataFrame:
    """One row per account: the row of its latest ``snapshot_date`` (the same account and
    date delivered twice: the latest ``_ingested_at``). The silver step keeps this for the
    whole of silver holdings in ``silver/holdings_latest``; steps whose as_of is on or after
    every snapshot read that instead of a window over a year of snapshots.

    Each account's latest date is found by a grouping over two columns and its rows are
    joined back; only those (one per account, more for a date delivered twice) are ranked.
    A window over every snapshot held them all in sort buffers: 23.9M rows at 1M customers
    took 8-9 s per 6M rows in bounded chunks; this takes 11.4 s for all of them at 2.8 GB.
    Null dates and accounts match as nulls (an account with only null dates keeps one)."""
    order = [F.col("snapshot_date").desc()] + \
        ([F.col("_ingested_at").desc_nulls_last()] if "_ingested_at" in holdings.columns else [])
    newest = holdings.groupBy(F.col("account_id").alias("_account")).agg(F.max("snapshot_date").alias("_newest"))
    # the few columns of the newest dates are the join's left (build) side; the other way
    # round the engine held every snapshot row (18 GB)
    rows = newest.join(holdings, F.col("_account").eqNullSafe(F.col("account_id"))
                       & F.col("_newest").eqNullSafe(F.col("snapshot_date"))).drop("_account", "_newest")
    w = Window.partitionBy("account_id").orderBy(*order)
    return rows.withColumn("_rn", F.row_number().over(w)).where("_rn = 1").drop("_rn")


def holdings_inputs(holdings: DataFrame, catalog: DataFrame, at: AsOf,
                    latest: DataFrame | None = None, lagged: DataFrame | None = None) -> dict[str, DataFrame]:
    """One row per account: its latest snapshot at as_of, family, and balance
    :data:`BALANCE_LAG_DAYS` days before.

    ``latest``: :func:`latest_snapshots` of all of ``holdings``, given only when no snapshot
    is after as_of (then it is the latest snapshot at as_of of every account). ``lagged``:
    :func:`latest_snapshots` of the snapshots on or before as_of minus
    :data:`BALANCE_LAG_DAYS` days, given only when exactly that (``silver/holdings_lagged``).
    Either, when missing, is computed from ``holdings``."""
    fam = catalog.select("product_code", "family")
    lag = BALANCE_LAG_DAYS

    def latest_at(on: Column) -> DataFrame:
        return latest_snapshots(at.partitions(holdings).where(F.col("snapshot_date") <= on))

    now = latest if latest is not None else latest_at(at.date_lit())
    # The balance of the last snapshot 90 days back, unless the account had closed by then:
    # a closing date known at as_of applies even when that older snapshot predates it.
    before = (lagged if lagged is not None else latest_at(at.date_lit(lag))).select(
        "account_id", F.col("balance").cast("double").alias("_balance_then"),
        _held(at.date_lit(lag)).alias("_held_then"))
    closed_now = F.col("closed_date").isNotNull() & (F.col("closed_date") <= at.date_lit(lag))
    rows = now.join(fam, "product_code", "left").join(before, "account_id", "left") \
        .withColumn("balance_90d_ago", F.when(F.col("_held_then") & ~closed_now, F.col("_balance_then"))).select(
        "customer_id", "account_id", "product_code", "family", "status", "opened_date", "closed_date",
        F.col("balance").cast("double").alias("balance"), F.col("credit_limit").cast("double").alias("credit_limit"),
        "balance_90d_ago", _held(at.date_lit()).alias("held"))
    # 1 on one held account per (customer, product): products held are then a sum, not a
    # distinct count per customer (the engine keeps a hash set per group for those,
    # gigabytes at 1M customers)
    first = Window.partitionBy("customer_id", "product_code", "held").orderBy("account_id")
    rows = rows.withColumn("_first_held_product",
                           F.when(F.col("held") & F.col("product_code").isNotNull()
                                  & (F.row_number().over(first) == 1), 1).otherwise(0))
    return {"accounts": rows}


def _fam(*families: str) -> Column:
    return F.col("family").isin(*families)


declare(
    Feature("n_products", "holdings", "Distinct products held.", "bigint", fill=0,
            agg=lambda: F.sum("_first_held_product")),
    Feature("n_accounts", "holdings", "Accounts and contracts held (active or dormant).", "bigint", fill=0,
            agg=lambda: _count_if(F.col("held"))),
    Feature("n_dormant_accounts", "holdings", "Accounts held in dormant status.", "bigint", fill=0,
            agg=lambda: _count_if(F.col("held") & (F.col("status") == "dormant"))),
    *[Feature(f"holds_{fam}", "holdings", f"Holds at least one {fam.replace('_', ' ')} product.", "boolean",
              fill=False, agg=(lambda fam=fam: F.max(F.col("held") & (F.col("family") == fam))))
      for fam in FAMILY_PRODUCTS],
    Feature("deposit_balance", "holdings", "Current, savings and time deposit balances (CNY).", fill=0.0,
            agg=lambda: _sum_if(F.col("held") & _fam(*DEPOSIT_FAMILIES), F.col("balance"))),
    Feature("wealth_aum", "holdings", "Wealth management, fund and insurance balances (CNY).", fill=0.0,
            agg=lambda: _sum_if(F.col("held") & _fam(*WEALTH_FAMILIES), F.col("balance"))),
    Feature("loan_balance", "holdings", "Outstanding personal loan and mortgage balances (CNY).", fill=0.0,
            agg=lambda: _sum_if(F.col("held") & _fam(*LOAN_FAMILIES), F.col("balance"))),
    Feature("card_balance", "holdings", "Credit card balances (CNY).", fill=0.0,
            agg=lambda: _sum_if(F.col("held") & _fam("credit_card"), F.col("balance"))),
    Feature("credit_limit", "holdings", "Total credit card limit (CNY).", fill=0.0,
            agg=lambda: _sum_if(F.col("held") & _fam("credit_card"), F.col("credit_limit"))),
    Feature("aum_90d_ago", "holdings", "Deposits plus wealth 90 days before as_of (CNY).", fill=0.0, window=90,
            agg=lambda: _sum_if(_fam(*DEPOSIT_FAMILIES, *WEALTH_FAMILIES), F.col("balance_90d_ago"))),
    Feature("n_products_opened_365d", "holdings", "Accounts opened in the last 365 days.", "bigint", fill=0,
            window=365, agg=lambda: _count_if(F.col("opened_date") > F.date_sub(F.col("_as_of"), 365))),
    Feature("n_accounts_closed_365d", "holdings", "Accounts closed in the last 365 days.", "bigint", fill=0,
            window=365, agg=lambda: _count_if(F.col("closed_date").isNotNull()
                                              & (F.col("closed_date") > F.date_sub(F.col("_as_of"), 365))
                                              & (F.col("closed_date") <= F.col("_as_of")))),
    Feature("days_since_last_open", "holdings", "Days since the most recent account opening.", "bigint",
            agg=lambda: F.datediff(F.max(F.col("_as_of")), F.max("opened_date"))),
    Feature("total_aum", "holdings", "Assets under management: deposits plus wealth (CNY).",
            post=lambda: F.col("deposit_balance") + F.col("wealth_aum")),
    Feature("aum_change_90d", "holdings", "Change of AUM over 90 days (CNY).", window=90,
            post=lambda: F.col("deposit_balance") + F.col("wealth_aum") - F.col("aum_90d_ago")),
    Feature("aum_growth_90d", "holdings", "Relative AUM change over 90 days (null when AUM was 0).", window=90,
            post=lambda: F.when(F.col("aum_90d_ago") > 0, (F.col("deposit_balance") + F.col("wealth_aum"))
                                / F.col("aum_90d_ago") - 1)),
    Feature("credit_utilisation", "holdings", "Card balance over card limit.",
            post=lambda: _ratio("card_balance", "credit_limit")),
)


# ---------------------------------------------------------------------------------------
# transactions

def _txn_rows_base(txns: DataFrame, bank_timezone: str) -> DataFrame:
    local = local_time(F.col("txn_ts"), bank_timezone)
    return txns.where(F.col("customer_id").isNotNull() & F.col("txn_ts").isNotNull()).select(
        "customer_id", F.to_date(local).alias("day"), F.hour(local).alias("_hour"), "direction", "channel",
        "merchant_category", "counterparty", F.col("amount").cast("decimal(18,2)").alias("amount"),
        *[c for c in ("_ingested_at", "partition_date") if c in txns.columns])


def _txn_measures() -> tuple[dict[str, Column], dict[str, Column]]:
    """What a transaction adds to its summary row: ``(counts, amounts)``, each a column of
    the base rows (an indicator, or the amount when the condition holds, else 0)."""
    debit, credit = F.col("direction") == "debit", F.col("direction") == "credit"
    counts = {"n": F.lit(True), "n_debit": debit, "n_credit": credit,  # n: every row
              **{f"n_h{h:02d}": F.col("_hour") == h for h in range(24)},
              **{f"n_{ch}": F.col("channel") == ch for ch in TXN_CHANNELS}}
    amounts = {"inflow": credit, "outflow": debit,
               **{f"spend_{cat}": debit & (F.col("merchant_category") == cat) for cat in SPEND_CATEGORIES},
               "spend_categorised": debit & F.col("merchant_category").isNotNull()}
    zero = F.lit(0).cast("decimal(18,2)")
    return ({k: F.when(c, F.lit(1).cast("bigint")).otherwise(F.lit(0).cast("bigint")) for k, c in counts.items()},
            {k: F.when(c, F.col("amount")).otherwise(zero) for k, c in amounts.items()})


def _debit_amount() -> Column:
    return F.when(F.col("direction") == "debit", F.col("amount"))


def _named_credit() -> Column:
    return F.when((F.col("direction") == "credit") & F.col("counterparty").isNotNull(),
                  F.struct("counterparty", "amount"))


TXN_SUMMARY_COLUMNS = ("n", "n_debit", "n_credit", "inflow", "outflow", "max_debit",
                       *[f"n_h{h:02d}" for h in range(24)], *[f"n_{ch}" for ch in TXN_CHANNELS],
                       *[f"spend_{cat}" for cat in SPEND_CATEGORIES], "spend_categorised", "credits")
MONTHS_365D = 13  # calendar months a 365-day window can touch


def transactions_daily(txns: DataFrame, bank_timezone: str) -> DataFrame:
    """Silver transactions summarised per customer and local day (``day``, the bank's time
    zone), the table the profile job reads (``silver/transactions_daily``).

    Columns: ``n``, ``n_debit``, ``n_credit``; ``inflow``, ``outflow`` (exact decimal sums)
    and ``max_debit``; ``n_h00`` .. ``n_h23`` (transactions per local hour, so the night
    window stays a setting of the profile, not of this table); ``n_<channel>`` per
    :data:`TXN_CHANNELS`; ``spend_<category>`` (debits) per :data:`SPEND_CATEGORIES` and
    ``spend_categorised`` (debits with any category); ``credits``, the day's credits that
    name a counterparty as ``(counterparty, amount)``, sorted (the salary rule's thresholds
    are settings too); ``_ingested_at``, the latest ingest time among the day's rows.
    Rows without a customer are left out (a profile cannot use them).
    :func:`transactions_rows` gives the same columns with one row per transaction.
    """
    rows = _txn_rows_base(txns, bank_timezone)
    counts, amounts = _txn_measures()
    # n is a count: a sum of a constant is folded into a column the engine writes as
    # non-nullable, unlike the table's
    measures = {**{k: F.sum(c) for k, c in (counts | amounts).items()}, "n": F.count(F.lit(1)),
                "max_debit": F.max(_debit_amount()),
                "credits": F.array_sort(F.collect_list(_named_credit()))}
    return rows.groupBy("customer_id", "day").agg(
        *[measures[k].alias(k) for k in TXN_SUMMARY_COLUMNS],
        *([F.max("_ingested_at").alias("_ingested_at")] if "_ingested_at" in txns.columns else []))


def transactions_rows(txns: DataFrame, bank_timezone: str) -> DataFrame:
    """Silver transactions in the shape of :func:`transactions_daily`, one row per
    transaction: a transaction is the summary of itself (``n`` = 1, its amount in
    ``inflow`` or ``outflow``, 1 in its hour's and channel's count, ``credits`` a list of
    at most one; null when none). Amounts are the transaction's ``decimal(18,2)`` rather
    than a day's sum. :func:`transactions_inputs` and the features give the same values for
    either shape; this one needs no grouping by customer and day (44M groups at 1M
    customers), so the profile uses it when it is given raw transactions rather than the
    stored daily summary.
    """
    counts, amounts = _txn_measures()
    credit = _named_credit()
    measures = counts | amounts | {"max_debit": _debit_amount(),
                                   "credits": F.when(credit.isNotNull(), F.array(credit))}
    return _txn_rows_base(txns, bank_timezone).select(
        "customer_id", "day", *[measures[k].alias(k) for k in TXN_SUMMARY_COLUMNS],
        *[c for c in ("_ingested_at", "partition_date") if c in txns.columns])


def by_customer(df: DataFrame, partitions: int) -> DataFrame:
    """``df`` hashed by ``customer_id`` into ``partitions`` partitions (``profile.aggregate_partitions``;
    0: as it is). Aggregating per customer afterwards, each task holds a share of the
    customers in a hash table that stays in the CPU caches rather than all of them: the
    transactions family over 49M raw rows at 1M customers 38 s -> 31 s on Sail with 16.
    Best applied to the narrowest rows, before they are widened into summaries."""
    return df.repartition(partitions, "customer_id") if partitions else df


def transactions_inputs(summary: DataFrame, at: AsOf, conf: dict) -> dict[str, DataFrame]:
    """The transaction summaries of the last 365 days (:func:`transactions_daily` or
    :func:`transactions_rows`: the features give the same values for both) with window
    flags, the night count and the calendar month (``_month_back``: 0 for as_of's month, 1
    for the one before, ...), plus the salary candidates per counterparty. Windows are whole local days
    ending with ``as_of``: the same instants as the cutoff windows of the other families."""
    night = conf.get("night_hours", {"start": 22, "end": 6})
    night_hours = [h for h in range(24) if h >= night["start"] or h < night["end"]]
    day = F.col("day")

    def after(days: int) -> Column:
        return day > at.date_lit(days)

    month_index = F.year(day) * 12 + F.month(day)
    rows = at.partitions(summary, 365).where(after(365) & (day <= at.date_lit())) \
        .withColumn("_in30", after(30)).withColumn("_in90", after(90)) \
        .withColumn("_prev90", ~after(90) & after(180)) \
        .withColumn("_n_night", sum((F.col(f"n_h{h:02d}") for h in night_hours), F.lit(0).cast("bigint"))) \
        .withColumn("_weekend", F.dayofweek(day).isin(1, 7)) \
        .withColumn("_month_back", F.lit(at.as_of.year * 12 + at.as_of.month) - month_index)
    sal = conf.get("salary", {"min_months": 2, "min_amount": 2000})
    # n_credit first: a cheap test that spares most rows the list's
    credits = at.partitions(rows, 90).where(F.col("_in90") & (F.col("n_credit") > 0) & (F.size("credits") > 0)) \
        .select("customer_id", "_month_back", F.explode("credits").alias("c")) \
        .select("customer_id", "_month_back", F.col("c.counterparty").alias("counterparty"),
                F.col("c.amount").alias("amount"))
    salary = credits.where(F.col("amount") >= sal["min_amount"]) \
        .groupBy("customer_id", "counterparty") \
        .agg(F.count_distinct("_month_back").alias("months"),
             # exact sum, then one division: a decimal average rounds differently per engine
             (F.sum("amount").cast("double") / F.count(F.lit(1))).alias("avg_amount"),
             F.count(F.lit(1)).alias("n")) \
        .where(F.col("months") >= sal["min_months"])
    return {"txns": rows, "salary": salary}


def _txn_window(days: int) -> Column:
    return F.col("_in30") if days == 30 else F.col("_in90") if days == 90 else F.lit(True)


def _in90_sum(col: str, cond: Column | None = None) -> Column:
    c = F.col("_in90") if cond is None else F.col("_in90") & cond
    return F.coalesce(F.sum(F.when(c, F.col(col))), F.lit(0).cast("bigint"))


def _in90_share(col: str, cond: Column | None = None) -> Column:
    """Transactions counted in ``col`` over all transactions, last 90 days (null without any)."""
    return F.when(_in90_sum("n") > 0, _in90_sum(col, cond) / _in90_sum("n"))


def _active_days(days: int) -> Column:
    """Distinct days with a row among the last ``days`` days (as_of included), exact for
    summaries of any grain (a day may have several rows): one bit per day in masks of 63
    days, OR-ed together, then counted. A distinct count in the same aggregation as the
    sums doubled the time of the whole transactions family on Sail."""
    back = "datediff(_as_of, day)"  # SQL: classic PySpark's shiftleft takes no column as its shift
    total = F.lit(0).cast("bigint")
    for lo in range(0, days, 63):
        bit = F.expr(f"shiftleft(CAST(1 AS BIGINT), CAST({back} - {lo} AS INT))")
        mask = F.bit_or(F.when(F.expr(f"{back} >= {lo} AND {back} < {min(lo + 63, days)}"), bit))
        total = total + F.coalesce(F.bit_count(mask), F.lit(0)).cast("bigint")
    return total


declare(
    *[f for days in (30, 90, 365) for f in (
        Feature(f"txn_count_{days}d", "transactions", f"Transactions in the last {days} days.", "bigint", days,
                fill=0, agg=lambda d=days: F.coalesce(F.sum(F.when(_txn_window(d), F.col("n"))),
                                                      F.lit(0).cast("bigint"))),
        Feature(f"inflow_{days}d", "transactions", f"Credits in the last {days} days (CNY).", "double", days,
                fill=0.0, agg=lambda d=days: _sum_if(_txn_window(d), F.col("inflow"))),
        Feature(f"outflow_{days}d", "transactions", f"Debits in the last {days} days (CNY).", "double", days,
                fill=0.0, agg=lambda d=days: _sum_if(_txn_window(d), F.col("outflow"))),
    )],
    Feature("avg_ticket_90d", "transactions", "Average debit amount in the last 90 days (CNY).", window=90,
            agg=lambda: F.when(_in90_sum("n_debit") > 0,
                               _sum_if(F.col("_in90"), F.col("outflow")) / _in90_sum("n_debit"))),
    Feature("max_ticket_365d", "transactions", "Largest debit in the last 365 days (CNY).", window=365,
            agg=lambda: F.max("max_debit")),
    Feature("days_since_last_txn", "transactions", "Days since the last transaction (recency).", "bigint",
            window=365, agg=lambda: F.datediff(F.max(F.col("_as_of")), F.max("day")).cast("bigint")),
    Feature("active_days_90d", "transactions", "Distinct days with a transaction in the last 90 days.", "bigint",
            90, fill=0, agg=lambda: _active_days(90)),
    Feature("outflow_prev_90d", "transactions", "Debits in the 90 days before the last 90 (CNY).", window=180,
            fill=0.0, agg=lambda: _sum_if(F.col("_prev90"), F.col("outflow"))),
    Feature("night_ratio_90d", "transactions", "Share of transactions at night (local time) in 90 days.",
            window=90, agg=lambda: _in90_share("_n_night")),
    Feature("weekend_ratio_90d", "transactions", "Share of transactions on weekends in 90 days.", window=90,
            agg=lambda: _in90_share("n", F.col("_weekend"))),
    *[Feature(f"channel_share_{ch}_90d", "transactions", f"Share of transactions through {ch} in 90 days.",
              window=90, fill=0.0, agg=lambda ch=ch: _in90_share(f"n_{ch}"))
      for ch in TXN_CHANNELS],
    *[Feature(f"spend_share_{cat}_365d", "transactions", f"Share of card/merchant spend on {cat.replace('_', ' ')}"
              " in 365 days.", window=365, fill=0.0,
              agg=lambda cat=cat: _sum_if(F.lit(True), F.col(f"spend_{cat}"))
              / F.greatest(_sum_if(F.lit(True), F.col("spend_categorised")), F.lit(1e-9)))
      for cat in SPEND_CATEGORIES],
    Feature("net_flow_90d", "transactions", "Credits minus debits in 90 days (CNY).", window=90,
            post=lambda: F.col("inflow_90d") - F.col("outflow_90d")),
    Feature("spend_trend_90d", "transactions", "Debits of the last 90 days over the 90 days before (1 = flat).",
            window=180, post=lambda: _ratio("outflow_90d", "outflow_prev_90d")),
)


def _monthly_outflows() -> Column:
    """The debits of each calendar month of the window (as_of's month first), one exact sum
    each, null for a month without debits: computed in the same pass as the other
    features, gathered in an array for :func:`_coefficient_of_variation`."""
    return F.array(*[
        F.sum(F.when((F.col("_month_back") == k) & (F.col("n_debit") > 0), F.col("outflow"))).cast("double")
        for k in range(MONTHS_365D)])


def _coefficient_of_variation(df: DataFrame, name: str) -> DataFrame:
    """Column ``name`` (the month values of :func:`_monthly_outflows`) becomes the population
    standard deviation over the mean of the months present: the two-pass formula over the
    at most 13 values of the row (equal months give exactly 0; null without any), the
    count and mean computed first as columns. Written as one expression (the mean inside
    every month's term) the engine took 1.4 s to plan it; with array functions, 15 s more
    to run it at 1M customers."""
    ms = [F.col(name)[k] for k in range(MONTHS_365D)]
    present = sum((F.when(m.isNotNull(), 1).otherwise(0) for m in ms), F.lit(0))
    df = df.withColumn("_cv_n", F.when(present > 0, present.cast("double")))  # null, not a division by zero
    df = df.withColumn("_cv_mean", sum((F.coalesce(m, F.lit(0.0)) for m in ms), F.lit(0.0)) / F.col("_cv_n"))
    var = sum((F.coalesce((m - F.col("_cv_mean")) * (m - F.col("_cv_mean")), F.lit(0.0)) for m in ms),
              F.lit(0.0)) / F.col("_cv_n")
    return df.withColumn(name, F.sqrt(var) / F.greatest(F.col("_cv_mean"), F.lit(1e-9))).drop("_cv_n", "_cv_mean")


declare(
    Feature("outflow_volatility_365d", "transactions", "Coefficient of variation of monthly debits over a year.",
            window=365, agg=_monthly_outflows, finish=_coefficient_of_variation),
    Feature("salary_months_90d", "transactions", "Months of the last 3 with a salary-like regular credit.",
            "bigint", 90, fill=0, agg=lambda: F.max("months")),
    Feature("salary_amount", "transactions", "Average salary-like credit in the last 90 days (CNY).", window=90,
            agg=lambda: F.max("avg_amount")),
    Feature("is_salary_customer", "transactions", "Receives a regular salary-like credit.", "boolean",
            post=lambda: F.col("salary_months_90d") >= 2),
)
FEATURE_INPUT = {"salary_months_90d": "salary", "salary_amount": "salary"}


# ---------------------------------------------------------------------------------------
# digital behaviour

def digital_inputs(events: DataFrame, catalog: DataFrame, at: AsOf) -> dict[str, DataFrame]:
    rows = at.partitions(events, 90).where(F.col("customer_id").isNotNull() & at.in_window(F.col("event_ts"), 90)) \
        .join(catalog.select("product_code", F.col("family").alias("_product_family")), "product_code", "left") \
        .withColumn("_in30", at.in_window(F.col("event_ts"), 30)) \
        .withColumn("_day", F.to_date(at.local(F.col("event_ts"))))

    # 1 on the first event of each session, day, and day within 30 days, per customer:
    # sessions and active days are then sums, not distinct counts per customer (the engine
    # keeps a hash set per group for those: past 14 GB at 1M customers)
    def first_of(*cols: str, when: Column | None = None) -> Column:
        w = Window.partitionBy("customer_id", *cols).orderBy("event_ts", "event_id")
        cond = F.row_number().over(w) == 1
        for c in cols:
            cond = cond & F.col(c).isNotNull()
        return F.when(cond if when is None else cond & when, 1).otherwise(0)

    rows = rows.withColumn("_first_session", first_of("session_id")) \
        .withColumn("_first_day", first_of("_day")) \
        .withColumn("_first_day_30", first_of("_day", "_in30", when=F.col("_in30")))
    return {"events": rows}


def _ev(kind: str) -> Column:
    return F.col("event_type") == kind


declare(
    Feature("logins_30d", "digital", "Logins in the last 30 days.", "bigint", 30, fill=0,
            agg=lambda: _count_if(F.col("_in30") & _ev("login"))),
    Feature("logins_90d", "digital", "Logins in the last 90 days.", "bigint", 90, fill=0,
            agg=lambda: _count_if(_ev("login"))),
    Feature("sessions_90d", "digital", "Digital sessions in the last 90 days.", "bigint", 90, fill=0,
            agg=lambda: F.sum("_first_session")),
    Feature("active_days_digital_30d", "digital", "Distinct days with digital activity in 30 days.", "bigint", 30,
            fill=0, agg=lambda: F.sum("_first_day_30")),
    Feature("active_days_digital_90d", "digital", "Distinct days with digital activity in 90 days.", "bigint", 90,
            fill=0, agg=lambda: F.sum("_first_day")),
    Feature("app_share_90d", "digital", "Share of digital events in the mobile app.", window=90,
            agg=lambda: F.avg((F.col("channel") == "app").cast("double"))),
    *[Feature(f"product_views_{fam}_90d", "digital", f"Views of {fam.replace('_', ' ')} products in 90 days.",
              "bigint", 90, fill=0,
              agg=lambda fam=fam: _count_if(_ev("product_view") & (F.col("_product_family") == fam)))
      for fam in FAMILY_PRODUCTS],
    Feature("offer_impressions_90d", "digital", "Offers shown in digital channels in 90 days.", "bigint", 90,
            fill=0, agg=lambda: _count_if(_ev("offer_impression"))),
    Feature("offer_clicks_90d", "digital", "Offers clicked in digital channels in 90 days.", "bigint", 90,
            fill=0, agg=lambda: _count_if(_ev("offer_click"))),
    Feature("applications_started_90d", "digital", "Applications started in 90 days.", "bigint", 90, fill=0,
            agg=lambda: _count_if(_ev("application_start"))),
    Feature("applications_abandoned_90d", "digital", "Applications started but not submitted in 90 days.",
            "bigint", 90, fill=0,
            agg=lambda: F.greatest(_count_if(_ev("application_start")) - _count_if(_ev("application_submit")),
                                   F.lit(0))),
    Feature("digital_errors_90d", "digital", "Errors met in digital channels in 90 days.", "bigint", 90, fill=0,
            agg=lambda: _count_if(_ev("error"))),
    Feature("days_since_last_login", "digital", "Days since the last login (within 90 days; null: none).",
            "bigint", 90, agg=lambda: F.datediff(F.max(F.col("_as_of")), F.max(F.when(_ev("login"), F.col("_day"))))),
    Feature("offer_ctr_90d", "digital", "Offer clicks per impression in 90 days.", window=90,
            post=lambda: _ratio("offer_clicks_90d", "offer_impressions_90d")),
    Feature("digital_share_90d", "digital", "Digital sessions over all contacts (sessions plus service contacts).",
            window=90, post=lambda: F.when(F.col("sessions_90d") + F.col("contacts_90d") > 0,
                                           F.col("sessions_90d") / (F.col("sessions_90d") + F.col("contacts_90d")))),
)


# ---------------------------------------------------------------------------------------
# service contacts

def service_inputs(interactions: DataFrame, at: AsOf) -> dict[str, DataFrame]:
    rows = at.partitions(interactions, 365).where(at.in_window(F.col("started_at"), 365)) \
        .withColumn("_in90", at.in_window(F.col("started_at"), 90))
    return {"contacts": rows}


declare(
    Feature("contacts_90d", "service", "Service contacts in the last 90 days.", "bigint", 90, fill=0,
            agg=lambda: _count_if(F.col("_in90"))),
    Feature("contacts_365d", "service", "Service contacts in the last 365 days.", "bigint", 365, fill=0,
            agg=lambda: F.count(F.lit(1))),
    *[Feature(f"contacts_{ch}_90d", "service", f"Contacts through {ch.replace('_', ' ')} in 90 days.", "bigint", 90,
              fill=0, agg=lambda ch=ch: _count_if(F.col("_in90") & (F.col("channel") == ch)))
      for ch in CONTACT_CHANNELS],
    Feature("avg_wait_s_90d", "service", "Average wait before being served, 90 days (seconds).", window=90,
            agg=lambda: F.avg(F.when(F.col("_in90"), F.col("wait_seconds")))),
    Feature("max_wait_s_365d", "service", "Worst wait before being served, 365 days (seconds).", window=365,
            agg=lambda: F.max("wait_seconds").cast("double")),
    Feature("avg_handle_s_90d", "service", "Average handling time, 90 days (seconds).", window=90,
            agg=lambda: F.avg(F.when(F.col("_in90"), F.col("handle_seconds")))),
    Feature("fcr_rate_365d", "service", "Share of contacts resolved at first contact, 365 days.", window=365,
            agg=lambda: F.avg(F.col("resolved_first_contact").cast("double"))),
)


# ---------------------------------------------------------------------------------------
# feedback

def feedback_inputs(feedback: DataFrame, at: AsOf, negative_threshold: float = -0.15) -> dict[str, DataFrame]:
    """Survey answers of the last 365 days; ``sentiment_score`` must be present (silver)."""
    rows = at.partitions(feedback, 365).where(at.in_window(F.col("responded_at"), 365)) \
        .withColumn("_negative", F.col("sentiment_score") <= F.lit(negative_threshold))
    return {"surveys": rows}


def _survey(kind: str) -> Column:
    return F.col("survey_type") == kind


declare(
    Feature("surveys_365d", "feedback", "Survey answers in 365 days.", "bigint", 365, fill=0,
            agg=lambda: F.count(F.lit(1))),
    Feature("nps_latest", "feedback", "Most recent NPS score (0-10) in 365 days.", "double", 365,
            agg=lambda: F.max_by(F.when(_survey("nps"), F.col("score")),
                                 F.when(_survey("nps"), F.col("responded_at"))).cast("double")),
    Feature("nps_avg_365d", "feedback", "Average NPS score in 365 days.", window=365,
            agg=lambda: F.avg(F.when(_survey("nps"), F.col("score")))),
    Feature("csat_avg_365d", "feedback", "Average CSAT (1-5) in 365 days.", window=365,
            agg=lambda: F.avg(F.when(_survey("csat"), F.col("score")))),
    Feature("ces_avg_365d", "feedback", "Average customer effort score (1-7, high = hard) in 365 days.",
            window=365, agg=lambda: F.avg(F.when(_survey("ces"), F.col("score")))),
    Feature("sentiment_avg_365d", "feedback", "Average sentiment (-1..1) of comments in 365 days.", window=365,
            agg=lambda: F.avg(F.col("sentiment_score").cast("decimal(38,9)"))),  # exact: repeats bit for bit
    Feature("negative_comments_365d", "feedback", "Comments with negative sentiment in 365 days.", "bigint", 365,
            fill=0, agg=lambda: _count_if(F.col("_negative"))),
    Feature("nps_category", "feedback", "promoter (9-10), passive (7-8) or detractor (0-6) by the latest NPS.",
            "string", post=lambda: F.when(F.col("nps_latest") >= 9, "promoter")
            .when(F.col("nps_latest") >= 7, "passive").when(F.col("nps_latest").isNotNull(), "detractor")),
)


# ---------------------------------------------------------------------------------------
# complaints

def complaints_inputs(complaints: DataFrame, at: AsOf) -> dict[str, DataFrame]:
    rows = at.partitions(complaints).where(F.col("opened_at") < at.cutoff) \
        .withColumn("_in365", at.in_window(F.col("opened_at"), 365)) \
        .withColumn("_closed_by_as_of", F.col("closed_at").isNotNull() & (F.col("closed_at") < at.cutoff)) \
        .withColumn("_hours", ((F.unix_timestamp("closed_at") - F.unix_timestamp("opened_at")) / 3600.0)
                    .cast("decimal(38,6)"))  # decimal: its average repeats bit for bit
    return {"complaints": rows}


declare(
    Feature("complaints_365d", "complaints", "Complaints opened in 365 days.", "bigint", 365, fill=0,
            agg=lambda: _count_if(F.col("_in365"))),
    Feature("complaints_open", "complaints", "Complaints not closed at as_of.", "bigint", fill=0,
            agg=lambda: _count_if(~F.col("_closed_by_as_of"))),
    Feature("complaints_high_365d", "complaints", "High-severity complaints in 365 days.", "bigint", 365, fill=0,
            agg=lambda: _count_if(F.col("_in365") & (F.col("severity") == "high"))),
    Feature("complaint_resolution_hours_365d", "complaints", "Average hours to close complaints closed in 365 days.",
            window=365, agg=lambda: F.avg(F.when(F.col("_in365") & F.col("_closed_by_as_of"), F.col("_hours")))),
    Feature("days_since_last_complaint", "complaints", "Days since the last complaint (null: never).", "bigint",
            agg=lambda: F.datediff(F.max(F.col("_as_of")), F.to_date(F.max("opened_at")))),
    Feature("compensation_365d", "complaints", "Compensation paid for complaints in 365 days (CNY).", window=365,
            fill=0.0, agg=lambda: _sum_if(F.col("_in365"), F.col("compensation_amount"))),
)


# ---------------------------------------------------------------------------------------
# campaigns

def campaign_inputs(responses: DataFrame, at: AsOf) -> dict[str, DataFrame]:
    """One row per offer sent in 365 days, with 0/1 flags for its outcomes; an outcome
    counts only if it happened by as_of.

    Offers are counted as rows of this table, not with distinct counts per customer: the
    engine keeps a hash set per customer and distinct count, which at 1M customers needed
    more than 10 GB for 0.9M funnel rows.
    """
    rows = at.partitions(responses, 365).where(at.in_window(F.col("sent_at"), 365)) \
        .where((F.col("outcome") == "sent") | (F.coalesce(F.col("outcome_at"), F.col("sent_at")) < at.cutoff))

    def flag(cond: Column) -> Column:
        return F.max(F.when(cond, 1).otherwise(0))

    offers = rows.groupBy("customer_id", "offer_id").agg(
        F.max("sent_at").alias("sent_at"),
        flag(at.in_window(F.col("sent_at"), 90)).alias("_in90"),
        flag(F.col("outcome").isin("opened", "clicked", "converted")).alias("_responded"),
        flag(F.col("outcome") == "converted").alias("_converted"),
        flag(F.col("outcome") == "declined").alias("_declined"))
    return {"offers": offers}


declare(
    Feature("offers_365d", "campaigns", "Offers received in 365 days.", "bigint", 365, fill=0,
            agg=lambda: F.count(F.lit(1))),
    Feature("offers_90d", "campaigns", "Offers received in 90 days.", "bigint", 90, fill=0,
            agg=lambda: F.sum("_in90")),
    Feature("offers_responded_365d", "campaigns", "Offers opened, clicked or converted in 365 days.", "bigint", 365,
            fill=0, agg=lambda: F.sum("_responded")),
    Feature("offers_converted_365d", "campaigns", "Offers converted in 365 days.", "bigint", 365, fill=0,
            agg=lambda: F.sum("_converted")),
    Feature("offers_declined_90d", "campaigns", "Offers declined in 90 days.", "bigint", 90, fill=0,
            agg=lambda: F.sum(F.col("_in90") * F.col("_declined"))),
    Feature("days_since_last_offer", "campaigns", "Days since the last offer (null: none in 365 days).", "bigint",
            agg=lambda: F.datediff(F.max(F.col("_as_of")), F.to_date(F.max("sent_at")))),
    Feature("offer_response_rate_365d", "campaigns", "Responded offers over offers received, 365 days.",
            window=365, post=lambda: _ratio("offers_responded_365d", "offers_365d")),
    Feature("offer_conversion_rate_365d", "campaigns", "Converted offers over offers received, 365 days.",
            window=365, post=lambda: _ratio("offers_converted_365d", "offers_365d")),
)


# ---------------------------------------------------------------------------------------
# assembly

def aggregate_family(family: str, inputs: dict[str, DataFrame], at: AsOf) -> DataFrame:
    """Aggregate a family's declared ``agg`` features per customer from its inputs.

    Each input is grouped by ``customer_id`` with the features that read it (by default
    the family's first input; :data:`FEATURE_INPUT` names another), and the results are
    joined.
    """
    feats = [f for f in by_family(family) if f.agg is not None]
    default = next(iter(inputs))
    out = None
    for name, df in inputs.items():
        mine = [f for f in feats if FEATURE_INPUT.get(f.name, default) == name]
        if not mine:
            continue
        part = df.withColumn("_as_of", at.date_lit()).groupBy("customer_id") \
            .agg(*[f.agg().alias(f.name) for f in mine])
        for f in mine:
            if f.finish:
                part = f.finish(part, f.name)
        out = part if out is None else out.join(part, "customer_id", "full")
    return out


SPARK_TYPES = {"double": "double", "bigint": "bigint", "string": "string", "boolean": "boolean", "date": "date"}


def customer_360(tables: dict[str, DataFrame], at: AsOf, conf: dict,
                 stage: Callable[[str, DataFrame], DataFrame] | None = None) -> DataFrame:
    """The customer 360 profile at ``as_of``: one row per customer known then.

    ``tables``: silver ``customers`` (SCD2), ``product_catalog``, ``holdings``,
    ``transactions`` or its daily summary ``transactions_daily`` (:func:`transactions_daily`,
    used when given; raw transactions are read as :func:`transactions_rows`), ``holdings_latest`` (:func:`latest_snapshots`, optional: only when no
    snapshot is after as_of), ``holdings_lagged`` (optional: the latest snapshots at as_of
    minus :data:`BALANCE_LAG_DAYS` days, see :func:`holdings_inputs`), ``events``, ``interactions``, ``feedback`` (with
    ``sentiment_score``), ``complaints``, ``campaign_responses``. A missing source (a bank
    without that system) gives that family's defaults.
    Output: ``customer_id``, ``as_of_date`` and every declared feature, typed as declared,
    counts filled with 0 for customers without rows.

    ``stage(family, aggregate)``, when given, receives each family's per-customer aggregate
    and returns the DataFrame to join in its place. The profile job passes one that writes
    the aggregate to a staging table and reads it back, so the engine computes one family
    at a time (at 1M customers, all families in one plan needed more than 23 GB).
    """
    base = profile_features(tables["customers"], at, conf)
    catalog = tables.get("product_catalog")
    families: list[tuple[str, dict[str, DataFrame]]] = []
    if "holdings" in tables and catalog is not None:
        families.append(("holdings", holdings_inputs(tables["holdings"], catalog, at, tables.get(LATEST_TABLE),
                                                     tables.get(LAGGED_TABLE))))
    parts = conf.get("aggregate_partitions", 0)
    summary = tables.get("transactions_daily")
    if summary is not None:
        summary = by_customer(summary, parts)
    elif "transactions" in tables:
        summary = transactions_rows(by_customer(tables["transactions"], parts), at.bank_timezone)
    if summary is not None:
        families.append(("transactions", transactions_inputs(summary, at, conf)))
    if "events" in tables and catalog is not None:
        families.append(("digital", digital_inputs(tables["events"], catalog, at)))
    if "interactions" in tables:
        families.append(("service", service_inputs(tables["interactions"], at)))
    if "feedback" in tables:
        families.append(("feedback", feedback_inputs(tables["feedback"], at)))
    if "complaints" in tables:
        families.append(("complaints", complaints_inputs(tables["complaints"], at)))
    if "campaign_responses" in tables:
        families.append(("campaigns", campaign_inputs(tables["campaign_responses"], at)))
    out = base
    for family, inputs in families:
        agg = aggregate_family(family, inputs, at)
        out = out.join(stage(family, agg) if stage else agg, "customer_id", "left")
    # features of absent families: null (then filled below)
    for f in REGISTRY.values():
        if f.agg is not None and f.name not in out.columns:
            out = out.withColumn(f.name, F.lit(None).cast(SPARK_TYPES[f.dtype]))
    fills = {f.name: f.fill for f in REGISTRY.values() if f.fill is not None}
    out = out.select("customer_id", *[
        (F.coalesce(F.col(n), F.lit(fills[n])) if n in fills else F.col(n)).alias(n)
        for n in out.columns if n != "customer_id"])
    for f in REGISTRY.values():
        if f.post is not None:
            out = out.withColumn(f.name, f.post())
    return out.select(
        "customer_id", at.date_lit().alias("as_of_date"),
        *[F.col(f.name).cast(SPARK_TYPES[f.dtype]).alias(f.name) for f in REGISTRY.values()])


def feature_names() -> list[str]:
    return list(REGISTRY)

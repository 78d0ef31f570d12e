"""Next-best-product candidates, labels and product-level signals, point in time.

A *candidate* is a pair (customer, product) at a snapshot date: an active catalogue
product the customer does not hold then. Training labels it 1 when the customer opens
that product within the following ``horizon_days``; scoring ranks the candidates.

Features never read data after the snapshot (they come from :mod:`features.profile`,
:func:`product_signals` and :func:`history_features`, all cut at ``AsOf``); only the label
looks ahead, by design, and only at ``opened_date`` in holdings.

Features meant to carry over between banks and catalogues (none names a product or family
of one catalogue; the ownership columns are derived from the catalogue at training time and
kept in the model's :class:`models.frame.FeatureSpec`):

- ownership lags per (customer, product) from each account's opening and closing dates as
  known at the snapshot (:func:`ownership_lags`): held 1, 3, 6 and 12 months before, months
  since last opened and since last closed, number of openings and closings;
- the customer's ownership vector at the snapshot, one ``own_<code>`` column per catalogue
  product (:func:`ownership_vector`, :func:`ownership_columns`);
- views, applications, offers, clicks and declines of the product in 7, 30 and 90 days
  (:func:`product_signals`);
- the product's adoption rate in the last 90 days among customers of the same age band x
  income band cell, smoothed toward the rate of all customers (:func:`peer_adoption`).
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, timedelta

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from features.profile import AsOf, latest_snapshots

PRODUCT_FEATURES = ["product_code", "family", "product_risk_level", "min_age", "max_age"]
# Windows (days before the end of the snapshot) of the per-pair event and offer counts.
SIGNAL_WINDOWS = (7, 30, 90)
# Counts per (customer, product) of product_signals: 0 for pairs without a row there.
SIGNAL_COUNTS = [f"{name}_product_{w}d" for name in ("views", "applications", "offers", "declined")
                 for w in SIGNAL_WINDOWS] + ["offer_clicks_product_90d"]
# Ownership lags: months before the snapshot at which "held" is looked up.
LAG_MONTHS = (1, 3, 6, 12)
LAG_COUNTS = [f"held_product_{k}m" for k in LAG_MONTHS] + ["openings_product", "closings_product"]
LAG_FEATURES = LAG_COUNTS + ["months_since_opened_product", "months_since_closed_product"]
# Popularity among similar customers: the cell, its window and the smoothing weight (in
# customers at the global rate added to every cell).
PEER_CELL = ("age_band", "income_band")
PEER_WINDOW_DAYS = 90
PEER_PRIOR = 100.0
PEER_FEATURES = ["peer_adoption_rate_90d", "adoption_rate_90d", "peer_adoption_lift_90d"]
PAIR_FEATURES = SIGNAL_COUNTS + ["days_since_view_product"] + LAG_FEATURES + PEER_FEATURES + \
    ["holds_same_family", "risk_gap", "age_in_range"]
OWNERSHIP_PREFIX = "own_"


def _risk_num(c: Column) -> Column:
    n = F.regexp_extract(c, r"^R([1-5])$", 1)
    return F.when(n != "", n.cast("bigint"))


def products(catalog: DataFrame) -> DataFrame:
    """Catalogue rows with the product risk level as a number (R3 -> 3)."""
    return catalog.select("product_code", "product_name", "family", "active",
                          _risk_num(F.col("risk_level")).alias("product_risk_level"),
                          F.col("min_age").cast("bigint").alias("min_age"),
                          F.col("max_age").cast("bigint").alias("max_age"))


def held_products(holdings: DataFrame, at: AsOf, latest: DataFrame | None = None) -> DataFrame:
    """(customer_id, product_code) held at the end of ``as_of``: the latest snapshot of each
    account up to then, not closed, opened by then. ``latest``: those latest snapshots
    already made (:func:`features.profile.latest_snapshots` of all of ``holdings``; valid
    only when no snapshot is after as_of)."""
    d = at.date_lit()
    if latest is None:
        latest = latest_snapshots(holdings.where(F.col("snapshot_date") <= d))
    return latest.where(_held_at_snapshot(d)).select("customer_id", "product_code").distinct()


def _held_at_snapshot(d: Column) -> Column:
    """An account's latest snapshot row shows it held on date ``d`` (the as_of)."""
    return (F.col("status") != "closed") & (F.col("opened_date") <= d) & \
        (F.col("closed_date").isNull() | (F.col("closed_date") > d))


def months_before(d: date, months: int) -> date:
    """``d`` moved back ``months`` calendar months; a month end stays a month end and a day
    the target month lacks becomes its last day (2026-05-31 -> 1 month: 2026-04-30)."""
    y, m = divmod(d.year * 12 + d.month - 1 - months, 12)
    last = calendar.monthrange(y, m + 1)[1]
    at_end = d.day == calendar.monthrange(d.year, d.month)[1]
    return date(y, m + 1, last if at_end else min(d.day, last))


def account_history(holdings: DataFrame, at: AsOf, latest: DataFrame | None = None) -> DataFrame:
    """One row per account as known at the end of ``as_of``: ``customer_id``,
    ``product_code``, ``opened_date``, ``ended`` (the date it stopped being held:
    ``closed_date``, else the snapshot date of a row marked closed without one; null while
    open) and ``held`` (held at as_of, as in :func:`held_products`).

    Built from each account's latest snapshot on or before as_of only, so a closing or a
    balance reported later is never seen; accounts opened after as_of are left out.
    ``latest``: those latest snapshots already made (see :func:`held_products`)."""
    d = at.date_lit()
    if latest is None:
        latest = latest_snapshots(holdings.where(F.col("snapshot_date") <= d))
    ended = F.coalesce(F.col("closed_date"), F.when(F.col("status") == "closed", F.col("snapshot_date")))
    return latest.where(F.col("customer_id").isNotNull() & F.col("product_code").isNotNull()
                        & F.col("opened_date").isNotNull() & (F.col("opened_date") <= d)) \
        .select("customer_id", "product_code", "opened_date", ended.alias("ended"),
                F.coalesce(_held_at_snapshot(d), F.lit(False)).alias("held"))


def ownership_lags(accounts: DataFrame, at: AsOf) -> DataFrame:
    """Per (customer, product) with an account by as_of (``accounts``: :func:`account_history`):

    - ``held_product_<k>m`` (k in :data:`LAG_MONTHS`): 1 when an account of the product was
      open on the date k months before as_of (opened by then, not ended by then), else 0;
    - ``months_since_opened_product``: whole months from the latest opening to as_of;
    - ``months_since_closed_product``: whole months from the latest closing on or before
      as_of to as_of (null: never closed);
    - ``openings_product``, ``closings_product``: accounts of the product opened, and
      closed, on or before as_of.
    """
    d = at.date_lit()
    ended = F.col("ended")
    aggs = []
    for k in LAG_MONTHS:
        then = F.lit(months_before(at.as_of, k).isoformat()).cast("date")
        was_held = (F.col("opened_date") <= then) & (ended.isNull() | (ended > then))
        aggs.append(F.max(F.when(was_held, 1).otherwise(0)).cast("bigint").alias(f"held_product_{k}m"))
    closed = ended.isNotNull() & (ended <= d)
    aggs += [F.floor(F.months_between(d, F.max("opened_date"))).cast("bigint").alias("months_since_opened_product"),
             F.floor(F.months_between(d, F.max(F.when(closed, ended)))).cast("bigint")
             .alias("months_since_closed_product"),
             F.count(F.lit(1)).cast("bigint").alias("openings_product"),
             F.sum(F.when(closed, 1).otherwise(0)).cast("bigint").alias("closings_product")]
    return accounts.groupBy("customer_id", "product_code").agg(*aggs)


def ownership_codes(catalog: DataFrame) -> list[str]:
    """Every product code of the catalogue (active or not), sorted: the ownership vector's
    products, decided at training time (a catalogue is small; it comes to the driver)."""
    return sorted(r["product_code"] for r in catalog.select("product_code").distinct().collect()
                  if r["product_code"] is not None)


def ownership_columns(codes: list[str]) -> list[tuple[str, str]]:
    """(product code, column name) of the ownership vector: ``own_`` + the code in lower
    case with every run of other characters than letters and digits as ``_``; a name taken
    already (column names are case-insensitive) gets ``_2``, ``_3``... in the order of
    ``codes``, so the same list always gives the same names."""
    out, taken = [], set()
    for code in codes:
        base = OWNERSHIP_PREFIX + (re.sub(r"[^0-9a-z]+", "_", code.lower()).strip("_") or "x")
        name, i = base, 1
        while name in taken:
            i += 1
            name = f"{base}_{i}"
        taken.add(name)
        out.append((code, name))
    return out


def ownership_vector(accounts: DataFrame, codes: list[str]) -> DataFrame:
    """Per customer holding something at as_of (``accounts``: :func:`account_history`):
    one 0/1 column per product of ``codes`` (:func:`ownership_columns`), 1 when the customer
    holds that product at as_of. A code nobody holds (or that the catalogue no longer has)
    is a column of 0; products not in ``codes`` are not counted. Customers without a row
    here hold nothing: :func:`candidates` gives them 0 everywhere."""
    held = accounts.where(F.col("held"))
    cols = [F.max(F.when(F.col("product_code") == F.lit(code), 1).otherwise(0)).cast("bigint").alias(name)
            for code, name in ownership_columns(codes)]
    if not cols:
        return held.select("customer_id").distinct()
    return held.groupBy("customer_id").agg(*cols)


def _cell_key(profile: DataFrame, cell: tuple[str, ...] = PEER_CELL) -> Column:
    """The peer cell of each customer: the :data:`PEER_CELL` columns the profile has,
    joined with ``|`` (a missing value as ``?``); one cell for all without any of them."""
    present = [c for c in cell if c in profile.columns]
    if not present:
        return F.lit("*")
    return F.concat_ws("|", *[F.coalesce(F.col(c).cast("string"), F.lit("?")) for c in present])


def peer_adoption(profile: DataFrame, accounts: DataFrame, at: AsOf, days: int = PEER_WINDOW_DAYS,
                  prior: float = PEER_PRIOR) -> DataFrame:
    """Per (peer cell, product): how many customers of the cell opened the product in the
    ``days`` days up to as_of.

    ``profile``: one row per customer at as_of with the cell columns (:data:`PEER_CELL`);
    ``accounts``: :func:`account_history` at as_of. Output columns ``_cell``,
    ``product_code``, ``adoption_rate_90d`` (adopters over customers, all cells),
    ``peer_adoption_rate_90d`` (``(adopters in cell + prior x global rate) / (customers in
    cell + prior)``: a small cell stays near the global rate) and ``peer_adoption_lift_90d``
    (cell rate over global rate). Only products someone adopted have rows (the others are
    0 in :func:`candidates`). Small: cells x products."""
    cells = profile.select("customer_id", _cell_key(profile).alias("_cell"))
    since = F.lit((at.as_of - timedelta(days=days)).isoformat()).cast("date")
    adopters = accounts.where(F.col("opened_date") > since).select("customer_id", "product_code").distinct()
    per_cell = adopters.join(cells, "customer_id").groupBy("_cell", "product_code") \
        .agg(F.count(F.lit(1)).alias("_adopters"))
    sizes = cells.groupBy("_cell").agg(F.count(F.lit(1)).alias("_customers"))
    total = sizes.agg(F.sum("_customers").alias("_all"))
    overall = per_cell.groupBy("product_code").agg(F.sum("_adopters").alias("_adopters_all")).crossJoin(total) \
        .select("product_code", (F.col("_adopters_all") / F.col("_all")).alias("adoption_rate_90d"))
    rate = (F.coalesce(F.col("_adopters"), F.lit(0)) + F.lit(prior) * F.col("adoption_rate_90d")) / \
        (F.col("_customers") + F.lit(prior))
    return sizes.crossJoin(overall).join(per_cell, ["_cell", "product_code"], "left").select(
        "_cell", "product_code", F.col("adoption_rate_90d").cast("double"),
        rate.cast("double").alias("peer_adoption_rate_90d"),
        (rate / F.col("adoption_rate_90d")).cast("double").alias("peer_adoption_lift_90d"))


@dataclass
class History:
    """What holdings history adds to the candidates at one as_of (:func:`history_features`)."""

    lags: DataFrame         # per (customer, product): ownership_lags
    ownership: DataFrame    # per customer: ownership_vector
    codes: list[str]        # the ownership vector's products
    peers: DataFrame        # per (_cell, product): peer_adoption


def history_features(profile: DataFrame, holdings: DataFrame, at: AsOf, codes: list[str],
                     latest: DataFrame | None = None, accounts: DataFrame | None = None) -> History:
    """The holdings-history features of :func:`candidates` at ``at``: ownership lags,
    ownership vector over ``codes`` and peer adoption (customers of ``profile``).
    ``latest``: see :func:`held_products`; ``accounts``: :func:`account_history` at ``at``
    already made (e.g. materialised once), else built here."""
    if accounts is None:
        accounts = account_history(holdings, at, latest)
    return History(ownership_lags(accounts, at), ownership_vector(accounts, codes), list(codes),
                   peer_adoption(profile, accounts, at))


def adoptions(holdings: DataFrame, after: date, horizon_days: int) -> DataFrame:
    """(customer_id, product_code) opened in ``(after, after + horizon_days]``: the label."""
    end = after + timedelta(days=horizon_days)
    return holdings.where((F.col("opened_date") > F.lit(after.isoformat()).cast("date"))
                          & (F.col("opened_date") <= F.lit(end.isoformat()).cast("date"))) \
        .select("customer_id", "product_code").distinct()


def product_signals(events: DataFrame | None, responses: DataFrame | None, at: AsOf) -> DataFrame | None:
    """Per (customer, product), before the end of ``as_of``, in each window ``w`` of
    :data:`SIGNAL_WINDOWS` days: ``views_product_<w>d`` and ``applications_product_<w>d``
    (app ``product_view`` and ``application_start`` events), ``offers_product_<w>d`` (offers
    sent), ``declined_product_<w>d`` (offers sent in 90 days and declined within the last
    ``w`` days); ``offer_clicks_product_90d`` (offers of 90 days clicked or converted) and
    ``days_since_view_product`` (days from the latest view to as_of, bank time; null: none
    in 90 days). An offer's outcome counts only when it happened before the end of as_of
    (else the offer counts as sent). Rows only for pairs with some event or offer."""
    parts = []
    windows = sorted(SIGNAL_WINDOWS)
    longest = windows[-1]
    if events is not None:
        ev = events.where(F.col("customer_id").isNotNull() & F.col("product_code").isNotNull()
                          & at.in_window(F.col("event_ts"), longest))
        view, start = F.col("event_type") == "product_view", F.col("event_type") == "application_start"
        aggs = []
        for w in windows:
            recent = at.in_window(F.col("event_ts"), w) if w < longest else F.lit(True)
            aggs += [F.sum(F.when(view & recent, 1).otherwise(0)).alias(f"views_product_{w}d"),
                     F.sum(F.when(start & recent, 1).otherwise(0)).alias(f"applications_product_{w}d")]
        last_view = F.max(F.when(view, F.col("event_ts")))
        aggs.append(F.datediff(at.date_lit(), F.to_date(at.local(last_view))).cast("bigint")
                    .alias("days_since_view_product"))
        parts.append(ev.groupBy("customer_id", "product_code").agg(*aggs))
    if responses is not None:
        r = responses.where(at.in_window(F.col("sent_at"), longest)).where(
            (F.col("outcome") == "sent") | (F.coalesce(F.col("outcome_at"), F.col("sent_at")) < at.cutoff))
        # one row per offer first, then sums: distinct counts per (customer, product) keep a
        # hash set per group in the engine, gigabytes at 1M customers
        def flag(cond):
            return F.max(F.when(cond, 1).otherwise(0))

        declined = F.col("outcome") == "declined"
        offers = r.groupBy("customer_id", "product_code", "offer_id").agg(
            flag(F.col("outcome").isin("clicked", "converted")).alias("_clicked"),
            *[flag(at.in_window(F.col("sent_at"), w)).alias(f"_sent_{w}") for w in windows],
            *[flag(declined & (F.col("outcome_at") >= at.since(w))).alias(f"_declined_{w}") for w in windows])
        parts.append(offers.groupBy("customer_id", "product_code").agg(
            *[F.sum(f"_sent_{w}").alias(f"offers_product_{w}d") for w in windows],
            F.sum("_clicked").alias("offer_clicks_product_90d"),
            *[F.sum(f"_declined_{w}").alias(f"declined_product_{w}d") for w in windows]))
    if not parts:
        return None
    out = parts[0]
    for p in parts[1:]:
        out = out.join(p, ["customer_id", "product_code"], "full")
    return out


def left_join(big: DataFrame, small: DataFrame, on: list[str]) -> DataFrame:
    """``big`` left-joined with ``small`` on ``on`` (``big``'s columns, then ``small``'s others),
    written as ``small`` right-joined with ``big``: the engine keeps a hash join's left side
    in memory and streams the right one, so the many candidate pairs stream past the small
    side (at 1M customers: 7.2 s against 8.1 s for the candidates' join)."""
    extra = [c for c in small.columns if c not in on]
    return small.join(big, on, "right").select(*big.columns, *extra)


def pair_inputs(profile: DataFrame) -> DataFrame:
    """The few profile columns the pair features and the scoring rules read: ``customer_id``,
    ``age``, ``risk_level``, the peer cell (:data:`PEER_CELL`) and the ``holds_<family>`` flags.

    Candidates are built from these alone and the rest of the profile is joined where it is
    needed (:func:`with_profile`): at 1M customers x 20 products a pair table carrying all
    ~150 profile columns does not fit in memory, the narrow one takes a few gigabytes.
    """
    keep = ["customer_id", "age", "risk_level", *PEER_CELL] + [c for c in profile.columns if c.startswith("holds_")]
    return profile.select(*[c for c in keep if c in profile.columns])


def with_profile(pairs: DataFrame, profile: DataFrame, on: list[str] | tuple[str, ...] = ("customer_id",),
                 columns: list[str] | None = None) -> DataFrame:
    """``pairs`` with the profile columns it does not have yet (inner join on ``on``).

    ``columns``: only these profile columns (e.g. a model's features), else all of them.
    """
    have = set(pairs.columns)
    extra = [c for c in (columns if columns is not None else profile.columns) if c not in have and c not in on
             and c in profile.columns]
    return pairs.join(profile.select(*on, *extra), list(on), "inner")


def candidates(profile: DataFrame, catalog: DataFrame, held: DataFrame, signals: DataFrame | None,
               history: History | None = None) -> DataFrame:
    """Every active product each customer of ``profile`` does not hold, with pair features.

    ``profile``: customer 360 rows at one as_of, at least :func:`pair_inputs` (pass only
    those at scale and add the rest with :func:`with_profile`). Output: the ``profile``
    columns, the ownership vector of ``history`` (0 for a customer without a row there),
    the product columns (:data:`PRODUCT_FEATURES`, ``product_name``), the columns of
    ``signals`` (per customer and product) and the pair features (:data:`PAIR_FEATURES`):
    counts are 0 for pairs without a row in ``signals`` or ``history``, months since and
    days since are null then, and without ``history`` its rates are null. Eligibility and
    suitability are *not* applied here (scoring does that, and counts what it excludes);
    training sees every candidate.
    """
    keys = ["customer_id", "product_code"]
    prods = products(catalog).where(F.col("active"))
    if history is not None:
        own = ownership_columns(history.codes)
        profile = profile.join(history.ownership, "customer_id", "left").select(
            *profile.columns, *[F.coalesce(F.col(c), F.lit(0)).cast("bigint").alias(c) for _, c in own],
            _cell_key(profile).alias("_cell"))
    pairs = profile.crossJoin(prods.drop("active"))
    # what is known per pair (held, signals, ownership lags) joined to the pairs at once: one
    # join of the pairs, not several in a row (at 1M customers: 1.1 GB and 7 s against 6.6 GB
    # and 15 s for two)
    known = held.select(*keys).withColumn("_held", F.lit(True))
    for part in (signals, history.lags if history is not None else None):
        if part is not None:
            known = known.join(part, keys, "full")
    pairs = left_join(pairs, known, keys).where(F.col("_held").isNull()).drop("_held")
    if history is not None:
        pairs = left_join(pairs, history.peers, ["_cell", "product_code"]).drop("_cell")
    for c in SIGNAL_COUNTS + LAG_COUNTS:
        pairs = pairs.withColumn(c, F.coalesce(F.col(c).cast("bigint"), F.lit(0)) if c in pairs.columns
                                 else F.lit(0).cast("bigint"))
    for c in ["days_since_view_product", "months_since_opened_product", "months_since_closed_product"]:
        if c not in pairs.columns:
            pairs = pairs.withColumn(c, F.lit(None).cast("bigint"))
    for c in PEER_FEATURES:
        pairs = pairs.withColumn(c, F.coalesce(F.col(c), F.lit(0.0)) if c in pairs.columns
                                 else F.lit(None).cast("double"))
    family_held = None
    for fam_col in [c for c in profile.columns if c.startswith("holds_")]:
        cond = (F.col("family") == fam_col[len("holds_"):]) & F.col(fam_col)
        family_held = F.when(cond, F.lit(True)) if family_held is None else family_held.when(cond, F.lit(True))
    pairs = pairs.withColumn("holds_same_family", F.coalesce(family_held, F.lit(False)) if family_held is not None
                             else F.lit(False))
    pairs = pairs.withColumn("risk_gap", F.col("risk_level") - F.col("product_risk_level"))
    pairs = pairs.withColumn("age_in_range", (F.col("age") >= F.coalesce(F.col("min_age"), F.lit(0)))
                             & (F.col("age") <= F.coalesce(F.col("max_age"), F.lit(200))))
    return pairs


def label(pairs: DataFrame, adopted: DataFrame) -> DataFrame:
    """Add ``label`` (1 when the candidate product was opened within the horizon, else 0)."""
    return pairs.join(adopted.withColumn("label", F.lit(1)), ["customer_id", "product_code"], "left") \
        .withColumn("label", F.coalesce(F.col("label"), F.lit(0)).cast("int"))


def attrition_label(holdings: DataFrame, profile_at: DataFrame, after: date, horizon_days: int,
                    transactions: DataFrame | None = None, events: DataFrame | None = None,
                    bank_timezone: str = "Asia/Shanghai") -> DataFrame:
    """(customer_id, label) for customers of ``profile_at``: 1 when, within the horizon after
    ``after``, the customer closes every product they held or goes dormant (no transaction
    and no login during the horizon)."""
    end = AsOf(after + timedelta(days=horizon_days), bank_timezone)
    start = AsOf(after, bank_timezone)
    still_held = held_products(holdings, end).select("customer_id").distinct().withColumn("_holds", F.lit(True))
    active = None
    if transactions is not None:
        active = transactions.where((F.col("txn_ts") >= start.cutoff) & (F.col("txn_ts") < end.cutoff)) \
            .select("customer_id").distinct()
    if events is not None:
        logins = events.where((F.col("event_type") == "login") & F.col("customer_id").isNotNull()
                              & (F.col("event_ts") >= start.cutoff) & (F.col("event_ts") < end.cutoff)) \
            .select("customer_id").distinct()
        active = logins if active is None else active.unionByName(logins).distinct()
    out = profile_at.select("customer_id").join(still_held, "customer_id", "left")
    if active is not None:
        out = out.join(active.withColumn("_active", F.lit(True)), "customer_id", "left")
        churned = F.col("_holds").isNull() | F.col("_active").isNull()
    else:
        churned = F.col("_holds").isNull()
    return out.select("customer_id", churned.cast("int").alias("label"))


def month_end_snapshots(as_of: date, count: int, horizon_days: int, earliest: date | None = None) -> list[date]:
    """The last ``count`` month ends whose label window ends by ``as_of``, oldest first;
    with ``earliest``, none before it (fewer than ``count`` when the history is shorter)."""
    out: list[date] = []
    d = as_of.replace(day=1) - timedelta(days=1)
    while len(out) < count and (earliest is None or d >= earliest):
        if d + timedelta(days=horizon_days) <= as_of:
            out.append(d)
        d = d.replace(day=1) - timedelta(days=1)
    return sorted(out)


def history_start(holdings: DataFrame, min_history_days: int) -> date | None:
    """The first date a training snapshot may have: ``min_history_days`` after the earliest
    holdings snapshot (the first delivery), so every snapshot has that much history behind
    its features. None without any holdings snapshot (one small aggregate)."""
    first = holdings.agg(F.min("snapshot_date").alias("d")).first()["d"]
    return None if first is None else first + timedelta(days=min_history_days)

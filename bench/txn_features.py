"""The profile's transaction aggregation, three ways, for the engine comparison of the bench.

- :func:`spark_txn_features`: the pipeline's own code (``features.profile``
  ``transactions_rows`` + ``transactions_inputs`` + ``aggregate_family("transactions")``,
  from the raw transactions as DuckDB gets them, as ``customer_360`` reads raw transactions:
  hashed by customer first, ``profile.aggregate_partitions``) on any Spark session:
  Sail through Spark Connect, or classic JVM Spark (``bench/jvm_txn.py``).
- :func:`duckdb_sql`: the same features written once more by
  hand in DuckDB SQL, the single-node reference.
- :func:`compare_outputs`: checks, in DuckDB, that two engines' outputs hold the same
  customers and the same value of every feature (relative tolerance for sums of doubles).

Every output has ``customer_id`` and the transaction features that are aggregated per
customer (the ``agg`` ones; the cross-family ``post`` features such as ``net_flow_90d`` are
computed later in ``customer_360`` and are not part of this comparison).
"""

from __future__ import annotations

from datetime import date, timedelta

SPEND_CATEGORIES = ("groceries", "dining", "travel", "e_commerce", "utilities", "education", "healthcare",
                    "luxury", "fuel", "entertainment")
TXN_CHANNELS = ("branch", "atm", "mobile", "online", "pos", "wechat")


def feature_columns() -> list[str]:
    """The transaction features the comparison covers, in ``features.profile`` order."""
    cols = []
    for d in (30, 90, 365):
        cols += [f"txn_count_{d}d", f"inflow_{d}d", f"outflow_{d}d"]
    cols += ["avg_ticket_90d", "max_ticket_365d", "days_since_last_txn", "active_days_90d", "outflow_prev_90d",
             "night_ratio_90d", "weekend_ratio_90d"]
    cols += [f"channel_share_{ch}_90d" for ch in TXN_CHANNELS]
    cols += [f"spend_share_{c}_365d" for c in SPEND_CATEGORIES]
    cols += ["outflow_volatility_365d", "salary_months_90d", "salary_amount"]
    return cols


def spark_txn_features(txns, as_of: date, bank_timezone: str, profile_conf: dict):
    """The pipeline's transaction features per customer (a DataFrame; not computed yet)."""
    from features.profile import AsOf, aggregate_family, by_customer, transactions_inputs, transactions_rows

    at = AsOf(as_of, bank_timezone)
    rows = transactions_rows(by_customer(txns, profile_conf.get("aggregate_partitions", 0)), bank_timezone)
    out = aggregate_family("transactions", transactions_inputs(rows, at, profile_conf), at)
    return out.select("customer_id", *feature_columns())


def cutoff_utc(as_of: date, bank_timezone: str):
    """End of ``as_of`` in the bank's time zone, as a naive UTC datetime (as ``AsOf``)."""
    from datetime import datetime, timezone
    from zoneinfo import ZoneInfo

    local_end = datetime.combine(as_of + timedelta(days=1), datetime.min.time(), tzinfo=ZoneInfo(bank_timezone))
    return local_end.astimezone(timezone.utc).replace(tzinfo=None)


def duckdb_sql(source: str, ts_is_tz: bool, as_of: date, bank_timezone: str, profile_conf: dict) -> str:
    """DuckDB SQL computing :func:`feature_columns` per customer from ``source`` (a
    ``read_parquet([...])`` call or a table name). ``ts_is_tz``: ``txn_ts`` is read as
    TIMESTAMP WITH TIME ZONE (Parquet ``isAdjustedToUTC``); the session must be in UTC."""
    night = profile_conf.get("night_hours", {"start": 22, "end": 6})
    sal = profile_conf.get("salary", {"min_months": 2, "min_amount": 2000})
    cut = cutoff_utc(as_of, bank_timezone)

    def ts(days: int) -> str:
        return f"TIMESTAMP '{(cut - timedelta(days=days)):%Y-%m-%d %H:%M:%S}'"

    cutoff = f"TIMESTAMP '{cut:%Y-%m-%d %H:%M:%S}'"
    utc = "timezone('UTC', txn_ts)" if ts_is_tz else "txn_ts"
    local = ("timezone(" + repr(bank_timezone) + ", txn_ts)" if ts_is_tz
             else "timezone(" + repr(bank_timezone) + ", CAST(txn_ts AS TIMESTAMPTZ))")
    tz_sel = f"{utc} AS ts, {local} AS lt"
    chans = ",\n        ".join(
        f"avg(CASE WHEN in90 THEN CAST(channel = '{c}' AS DOUBLE) END) AS channel_share_{c}_90d" for c in TXN_CHANNELS)
    spends = ",\n        ".join(
        f"sum(CASE WHEN debit AND merchant_category = '{c}' THEN amount ELSE 0.0 END) / "
        f"greatest(sum(CASE WHEN debit AND merchant_category IS NOT NULL THEN amount ELSE 0.0 END), 1e-9) "
        f"AS spend_share_{c}_365d" for c in SPEND_CATEGORIES)
    windows = ",\n        ".join(
        f"sum(CASE WHEN {w} THEN 1 ELSE 0 END)::BIGINT AS txn_count_{d}d, "
        f"sum(CASE WHEN {w} AND credit THEN amount ELSE 0.0 END) AS inflow_{d}d, "
        f"sum(CASE WHEN {w} AND debit THEN amount ELSE 0.0 END) AS outflow_{d}d"
        for d, w in ((30, "in30"), (90, "in90"), (365, "TRUE")))
    return f"""
WITH raw AS (
    SELECT customer_id, direction, channel, merchant_category, counterparty,
           CAST(amount AS DOUBLE) AS amount, {tz_sel}
    FROM {source}
), rows AS (
    SELECT *,
        ts >= {ts(30)} AS in30,
        ts >= {ts(90)} AS in90,
        ts < {ts(90)} AND ts >= {ts(180)} AS prev90,
        hour(lt) >= {int(night['start'])} OR hour(lt) < {int(night['end'])} AS night,
        dayofweek(lt) IN (0, 6) AS weekend,
        date_trunc('month', lt) AS month,
        direction = 'debit' AS debit,
        direction = 'credit' AS credit
    FROM raw
    WHERE ts >= {ts(365)} AND ts < {cutoff}
), txn AS (
    SELECT customer_id,
        {windows},
        avg(CASE WHEN in90 AND debit THEN amount END) AS avg_ticket_90d,
        max(CASE WHEN debit THEN amount END) AS max_ticket_365d,
        date_diff('day', CAST(max(lt) AS DATE), DATE '{as_of.isoformat()}')::BIGINT AS days_since_last_txn,
        count(DISTINCT CASE WHEN in90 THEN CAST(lt AS DATE) END)::BIGINT AS active_days_90d,
        sum(CASE WHEN prev90 AND debit THEN amount ELSE 0.0 END) AS outflow_prev_90d,
        avg(CASE WHEN in90 THEN CAST(night AS DOUBLE) END) AS night_ratio_90d,
        avg(CASE WHEN in90 THEN CAST(weekend AS DOUBLE) END) AS weekend_ratio_90d,
        {chans},
        {spends}
    FROM rows GROUP BY customer_id
), monthly AS (
    SELECT customer_id, month, sum(amount) AS month_outflow FROM rows WHERE debit GROUP BY customer_id, month
), vol AS (
    SELECT customer_id, stddev_pop(month_outflow) / greatest(avg(month_outflow), 1e-9) AS outflow_volatility_365d
    FROM monthly GROUP BY customer_id
), salary_pairs AS (
    SELECT customer_id, counterparty, count(DISTINCT month) AS months, avg(amount) AS avg_amount
    FROM rows
    WHERE credit AND in90 AND amount >= {float(sal['min_amount'])} AND counterparty IS NOT NULL
    GROUP BY customer_id, counterparty
    HAVING count(DISTINCT month) >= {int(sal['min_months'])}
), salary AS (
    SELECT customer_id, max(months)::BIGINT AS salary_months_90d, max(avg_amount) AS salary_amount
    FROM salary_pairs GROUP BY customer_id
)
SELECT txn.*, vol.outflow_volatility_365d, salary.salary_months_90d, salary.salary_amount
FROM txn LEFT JOIN vol USING (customer_id) LEFT JOIN salary USING (customer_id)
"""


def parquet_source(files: list[str]) -> str:
    quoted = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
    return f"read_parquet([{quoted}])"


def txn_ts_is_tz(con, source: str) -> bool:
    kind = {r[0]: r[1] for r in con.execute(f"DESCRIBE SELECT txn_ts FROM {source}").fetchall()}["txn_ts"]
    return "TIME ZONE" in kind.upper()


def compare_outputs(con, left: str, right: str, rel_tol: float = 1e-6, samples: int = 5) -> dict:
    """Compare two outputs (``read_parquet`` sources or tables) of :func:`feature_columns`.

    Returns the row counts, customers missing on either side, per-feature mismatch counts
    (nulls must match; numbers within ``rel_tol`` relative or 1e-9 absolute) and a few
    mismatching examples. Runs in DuckDB: nothing large reaches Python.
    """
    cols = feature_columns()
    n_left = con.execute(f"SELECT count(*) FROM {left}").fetchone()[0]
    n_right = con.execute(f"SELECT count(*) FROM {right}").fetchone()[0]
    only_left = con.execute(f"SELECT count(*) FROM {left} l ANTI JOIN {right} r USING (customer_id)").fetchone()[0]
    only_right = con.execute(f"SELECT count(*) FROM {right} r ANTI JOIN {left} l USING (customer_id)").fetchone()[0]

    def differs(c: str) -> str:
        a, b = f"CAST(l.{c} AS DOUBLE)", f"CAST(r.{c} AS DOUBLE)"
        return (f"(({a} IS NULL) <> ({b} IS NULL) OR "
                f"abs({a} - {b}) > greatest({rel_tol} * greatest(abs({a}), abs({b})), 1e-9))")

    sums = ", ".join(f"count_if({differs(c)}) AS {c}" for c in cols)
    row = con.execute(f"SELECT count(*) AS n, {sums} FROM {left} l JOIN {right} r USING (customer_id)").fetchone()
    joined = row[0]
    by_feature = {c: int(v) for c, v in zip(cols, row[1:]) if v}
    examples = []
    for c in list(by_feature)[:samples]:
        ex = con.execute(f"SELECT customer_id, l.{c}, r.{c} FROM {left} l JOIN {right} r USING (customer_id) "
                     f"WHERE {differs(c)} ORDER BY customer_id LIMIT 1").fetchone()
        examples.append({"feature": c, "customer_id": ex[0], "left": ex[1], "right": ex[2]})
    any_diff = " OR ".join(differs(c) for c in cols)
    customers_differing = con.execute(
        f"SELECT count(*) FROM {left} l JOIN {right} r USING (customer_id) WHERE {any_diff}").fetchone()[0]
    return {"rows_left": int(n_left), "rows_right": int(n_right), "only_left": int(only_left),
            "only_right": int(only_right), "customers_compared": int(joined),
            "customers_differing": int(customers_differing), "features_compared": len(cols),
            "mismatches_by_feature": by_feature, "examples": examples,
            "match": n_left == n_right and not only_left and not only_right and not customers_differing}

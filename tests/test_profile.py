"""features.profile: each family on hand-made silver rows with known answers, point in time."""

from __future__ import annotations

from datetime import date, datetime

import pytest
from pyspark.sql import types as T

from c360.contract import SOURCES
from c360.settings import load_settings
from features.bronze import spark_type
from features.profile import AsOf, customer_360

AS_OF = date(2026, 6, 30)
AT = AsOf(AS_OF, "Asia/Shanghai")  # the day ends at 2026-06-30 16:00 UTC
CONF = load_settings(environ={}).profile.as_dict()


def utc(*a):
    return datetime(*a)


def silver(spark, source: str, rows: list[dict], extra: dict[str, T.DataType] | None = None):
    src = SOURCES[source]
    fields = [T.StructField(c.name, spark_type(c)) for c in src.columns if not c.pii]
    fields += [T.StructField(n, t) for n, t in (extra or {}).items()]
    return spark.createDataFrame([tuple(r.get(f.name) for f in fields) for r in rows], T.StructType(fields))


def customers(spark, rows=None):
    base = dict(customer_id="C1", gender="F", occupation="teacher", annual_income=300000, city="杭州",
                home_branch_id="B1", onboarding_date=date(2020, 7, 1), risk_tolerance="R3", kyc_status="verified",
                marketing_consent=True, preferred_language="zh", updated_at=utc(2020, 7, 1),
                birth_month=date(1990, 8, 1), valid_from=utc(2020, 7, 1), valid_to=None)
    rows = rows if rows is not None else [base]
    from decimal import Decimal
    rows = [base | r for r in rows]
    for r in rows:
        r["annual_income"] = Decimal(str(r["annual_income"]))
    return silver(spark, "customers", rows, {"birth_month": T.DateType(), "valid_from": T.TimestampType(),
                                             "valid_to": T.TimestampType()})


CATALOG = [dict(product_code=c, product_name=c, family=f, risk_level=r, active=True) for c, f, r in [
    ("CA", "current_account", "R1"), ("SV", "savings", "R1"), ("TD", "time_deposit", "R1"),
    ("WM", "wealth_management", "R2"), ("FD", "fund", "R4"), ("CC", "credit_card", "R2"),
    ("PL", "personal_loan", "R2"), ("MG", "mortgage", "R2")]]


def profile(spark, **tables):
    from decimal import Decimal
    t = {"customers": tables.pop("customers", None) or customers(spark),
         "product_catalog": silver(spark, "product_catalog", CATALOG)}
    money = {"amount", "balance", "credit_limit", "compensation_amount"}
    for name, rows in tables.items():
        rows = [{k: (Decimal(str(v)) if k in money and v is not None else v) for k, v in r.items()} for r in rows]
        extra = {"sentiment_score": T.DoubleType()} if name == "feedback" else None
        if name == "events":
            extra = {"attributed_by": T.StringType()}
        t[name] = silver(spark, name, rows, extra)
    return {r.customer_id: r for r in customer_360(t, AT, CONF).collect()}


def test_profile_family_and_scd2_point_in_time(spark):
    cust = customers(spark, [
        dict(risk_tolerance="R2", valid_to=utc(2026, 6, 30, 17)),       # valid until after the cutoff
        dict(risk_tolerance="R5", valid_from=utc(2026, 6, 30, 17)),     # a change after as_of: not seen
        dict(customer_id="C2", onboarding_date=date(2026, 7, 2), valid_from=utc(2026, 7, 2)),  # joins later
        dict(customer_id="C3", risk_tolerance=None, city="Lhasa", annual_income=50000, birth_month=date(1950, 1, 1)),
    ])
    p = profile(spark, customers=cust)
    assert set(p) == {"C1", "C3"}
    c1 = p["C1"]
    assert (c1.age, c1.age_band, c1.risk_tolerance, c1.risk_level) == (35, "35-44", "R2", 2)
    assert (c1.tenure_days, c1.city_tier, c1.income_band) == (2190, 2, "upper_middle")
    assert c1.as_of_date == AS_OF
    c3 = p["C3"]
    assert (c3.has_risk_assessment, c3.risk_level, c3.city_tier, c3.income_band, c3.age_band) == \
        (False, None, 3, "low", "65+")


def test_products_held_counts_each_product_once(spark):
    h = lambda **r: dict(customer_id="C1", currency="CNY", status="active", opened_date=date(2021, 1, 1),  # noqa
                         snapshot_date=date(2026, 6, 30), balance=100) | r
    p = profile(spark, holdings=[
        h(account_id="A1", product_code="CA"), h(account_id="A2", product_code="CA"),
        h(account_id="A3", product_code="WM", status="closed", closed_date=date(2026, 6, 1)),
        h(account_id="A4", product_code="WM", opened_date=date(2026, 7, 1)),  # opened after as_of
    ])["C1"]
    assert (p.n_products, p.n_accounts) == (1, 2)


def test_holdings_family(spark):
    h = lambda **r: dict(customer_id="C1", currency="CNY", status="active", opened_date=date(2021, 1, 1),  # noqa
                         snapshot_date=date(2026, 6, 30)) | r
    p = profile(spark, holdings=[
        h(account_id="A1", product_code="CA", balance=10000),
        h(account_id="A1", product_code="CA", balance=4000, snapshot_date=date(2026, 3, 31)),
        h(account_id="A2", product_code="WM", balance=50000, opened_date=date(2026, 5, 1)),
        h(account_id="A3", product_code="CC", balance=800, credit_limit=1000),
        h(account_id="A4", product_code="TD", balance=0, status="closed", closed_date=date(2026, 2, 1)),
        h(account_id="A4", product_code="TD", balance=20000, snapshot_date=date(2026, 1, 31)),
        h(account_id="A5", product_code="FD", balance=999, snapshot_date=date(2026, 7, 1)),  # after as_of
    ])["C1"]
    assert (p.n_products, p.n_accounts, p.holds_wealth_management, p.holds_time_deposit, p.holds_fund) == \
        (3, 3, True, False, False)
    assert (p.deposit_balance, p.wealth_aum, p.total_aum, p.card_balance) == (10000, 50000, 60000, 800)
    assert p.credit_utilisation == pytest.approx(0.8)
    assert p.aum_90d_ago == 4000  # snapshot of 2026-03-31; A4 was closed by 04-01
    assert p.aum_change_90d == 56000
    assert (p.n_products_opened_365d, p.n_accounts_closed_365d, p.days_since_last_open) == (1, 1, 60)


def test_transactions_family_in_local_time(spark):
    t = lambda i, ts, **r: dict(txn_id=f"T{i}", account_id="A1", customer_id="C1", txn_ts=ts, amount=100,  # noqa
                                direction="debit", channel="pos", merchant_category="dining") | r
    p = profile(spark, transactions=[
        t(1, utc(2026, 6, 30, 15)),                                     # 23:00 local on Tue: night
        t(2, utc(2026, 6, 27, 4), channel="mobile", merchant_category="travel", amount=300),  # Sat 12:00 local
        t(3, utc(2026, 5, 10, 4), direction="credit", amount=8000, counterparty="ACME", channel="online"),
        t(4, utc(2026, 6, 10, 4), direction="credit", amount=8000, counterparty="ACME", channel="online"),
        t(5, utc(2026, 1, 10, 4), amount=50),                           # in 365 only
        t(6, utc(2026, 6, 30, 17)),                                     # after as_of: never counted
    ])["C1"]
    assert (p.txn_count_30d, p.txn_count_90d, p.txn_count_365d) == (3, 4, 5)
    assert (p.outflow_30d, p.inflow_90d, p.net_flow_90d) == (400, 16000, 15600)
    assert p.days_since_last_txn == 0
    assert p.night_ratio_90d == pytest.approx(1 / 4)
    assert p.weekend_ratio_90d == pytest.approx(2 / 4)  # Sat 06-27 and Sun 05-10
    assert p.channel_share_online_90d == pytest.approx(0.5)
    assert p.spend_share_travel_365d == pytest.approx(300 / 450)
    assert (p.salary_months_90d, p.is_salary_customer, p.salary_amount) == (2, True, 8000)


def test_digital_family(spark):
    e = lambda i, kind, day, **r: dict(event_id=f"E{i}", customer_id="C1", device_id="D1", session_id=f"S{day}",  # noqa
                                       event_ts=utc(2026, 6, day, 2), channel="app", event_type=kind) | r
    p = profile(spark, events=[
        e(1, "login", 20), e(2, "product_view", 20, product_code="FD"), e(3, "application_start", 20),
        e(4, "login", 25), e(5, "product_view", 25, product_code="FD"), e(6, "offer_impression", 25),
        e(7, "offer_click", 25), e(8, "error", 25, channel="web"),
        e(9, "login", 1, event_ts=utc(2026, 4, 15, 2)),
        e(10, "login", 30, event_ts=utc(2026, 6, 30, 18)),  # after as_of
        e(11, "login", 26, customer_id=None),               # anonymous
    ], interactions=[dict(interaction_id="I1", customer_id="C1", channel="branch", started_at=utc(2026, 6, 1))])["C1"]
    assert (p.logins_30d, p.logins_90d, p.sessions_90d, p.active_days_digital_30d) == (2, 3, 3, 2)
    assert (p.product_views_fund_90d, p.product_views_savings_90d) == (2, 0)
    assert (p.applications_started_90d, p.applications_abandoned_90d, p.digital_errors_90d) == (1, 1, 1)
    assert (p.offer_ctr_90d, p.days_since_last_login) == (1.0, 5)
    assert p.digital_share_90d == pytest.approx(3 / 4)


def test_service_feedback_complaints_campaigns(spark):
    i = lambda n, ch, wait, fcr, **r: dict(interaction_id=f"I{n}", customer_id="C1", channel=ch,  # noqa
                                          started_at=utc(2026, 6, 1 + n), wait_seconds=wait, handle_seconds=300,
                                          resolved_first_contact=fcr) | r
    f = lambda n, kind, score, day, s=None: dict(response_id=f"R{n}", customer_id="C1", survey_type=kind,  # noqa
                                                 score=score, responded_at=utc(2026, 6, day), sentiment_score=s)
    k = lambda n, **r: dict(complaint_id=f"K{n}", customer_id="C1", category="fees", status="resolved") | r  # noqa
    o = lambda n, outcome, at, **r: dict(offer_id=f"O{n}", customer_id="C1", product_code="FD", channel="sms",  # noqa
                                         sent_at=utc(2026, 6, 1), outcome=outcome, outcome_at=at) | r
    p = profile(
        spark,
        interactions=[i(1, "branch", 1200, False), i(2, "call_center", 600, True), i(3, "branch", 0, True),
                      i(4, "branch", 99999, True, started_at=utc(2026, 7, 5))],
        feedback=[f(1, "nps", 9, 1, 0.6), f(2, "nps", 3, 20, -0.8), f(3, "csat", 2, 21, -0.5),
                  f(4, "nps", 10, 30, 0.9) | {"responded_at": utc(2026, 6, 30, 20)}],
        complaints=[k(1, opened_at=utc(2026, 6, 1), closed_at=utc(2026, 6, 3), severity="high"),
                    k(2, opened_at=utc(2026, 6, 20), closed_at=utc(2026, 7, 3), severity="low"),
                    k(3, opened_at=utc(2026, 7, 2), status="open")],
        campaign_responses=[o(1, "sent", None), o(1, "opened", utc(2026, 6, 2)), o(1, "converted", utc(2026, 6, 5)),
                            o(2, "sent", None), o(2, "clicked", utc(2026, 7, 2))],
    )["C1"]
    assert (p.contacts_90d, p.contacts_branch_90d, p.contacts_call_center_90d) == (3, 2, 1)
    assert (p.avg_wait_s_90d, p.max_wait_s_365d) == (600, 1200)
    assert p.fcr_rate_365d == pytest.approx(2 / 3)
    assert (p.nps_latest, p.nps_category, p.surveys_365d, p.csat_avg_365d) == (3, "detractor", 3, 2)
    assert (p.negative_comments_365d, p.sentiment_avg_365d) == (2, pytest.approx(-0.7 / 3))
    # K2 closed only after as_of: still open then; K3 opened after as_of: unseen
    assert (p.complaints_365d, p.complaints_open, p.complaints_high_365d) == (2, 1, 1)
    assert p.complaint_resolution_hours_365d == 48
    # O2's click happened after as_of
    assert (p.offers_365d, p.offers_responded_365d, p.offers_converted_365d) == (2, 1, 1)
    assert p.offer_response_rate_365d == 0.5


def test_customer_without_any_activity_gets_zero_counts(spark):
    p = profile(spark, transactions=[], events=[])["C1"]
    assert (p.txn_count_365d, p.logins_30d, p.outflow_90d, p.holds_credit_card) == (0, 0, 0.0, False)
    assert p.days_since_last_txn is None


@pytest.mark.unit
def test_every_family_is_declared_and_the_catalogue_is_current():
    from pathlib import Path

    from features.registry import FAMILIES, REGISTRY, by_family, catalogue_markdown

    assert len(REGISTRY) >= 60
    assert all(by_family(f) for f in FAMILIES)
    assert all(f.description.endswith((".", ")")) for f in REGISTRY.values())
    shipped = (Path(__file__).resolve().parent.parent / "features" / "CATALOGUE.md").read_text(encoding="utf-8")
    assert shipped == catalogue_markdown(), "features/CATALOGUE.md is stale: run `c360 catalogue`"


def test_partition_pruning_never_drops_rows_of_the_window(spark):
    """``AsOf.partitions`` keeps every partition a window can need (month partitions are
    dated by their first day) and drops those after as_of."""
    from features.profile import AsOf

    at = AsOf(date(2026, 6, 30), "Asia/Shanghai")
    df = spark.createDataFrame([(date(2025, 5, 1),), (date(2025, 6, 1),), (date(2026, 6, 30),), (date(2026, 7, 1),)],
                               "partition_date date")
    kept = sorted(r[0] for r in at.partitions(df, 365).collect())
    # the 365-day window starts 2025-07-01: the June 2025 month partition may still be needed
    assert kept == [date(2025, 6, 1), date(2026, 6, 30)]
    assert sorted(r[0] for r in at.partitions(df).collect()) == [date(2025, 5, 1), date(2025, 6, 1), date(2026, 6, 30)]
    no_partitions = spark.createDataFrame([(1,)], "x int")
    assert at.partitions(no_partitions, 30).count() == 1


def _txn(i, ts, **r):
    from decimal import Decimal
    row = dict(txn_id=f"T{i}", account_id="A1", customer_id="C1", txn_ts=ts, amount=100, direction="debit",
               channel="pos", merchant_category="dining") | r
    row["amount"] = Decimal(str(row["amount"]))
    return row


DAILY_ROWS = [
    _txn(1, utc(2026, 6, 30, 15)),                                    # 23:00 local, 06-30
    _txn(2, utc(2026, 6, 29, 16, 30), amount=250, channel="mobile"),  # 00:30 local, 06-30
    _txn(3, utc(2026, 6, 30, 1), direction="credit", amount=8000, counterparty="ACME", channel="online",
         merchant_category=None),                                     # 09:00 local, 06-30
    _txn(4, utc(2026, 6, 30, 2), direction="credit", amount=30, counterparty=None, merchant_category=None),
    _txn(5, utc(2026, 6, 29, 15, 59), amount=40, merchant_category="travel"),  # 23:59 local, 06-29
    _txn(6, utc(2026, 6, 30, 3), customer_id=None),                   # no customer: left out
]


def test_transactions_daily_summarises_each_customer_local_day(spark):
    from features.profile import transactions_daily

    days = {r.day: r for r in transactions_daily(silver(spark, "transactions", DAILY_ROWS), "Asia/Shanghai").collect()}
    assert sorted(days) == [date(2026, 6, 29), date(2026, 6, 30)]
    d = days[date(2026, 6, 30)]
    assert (d.customer_id, d.n, d.n_debit, d.n_credit) == ("C1", 4, 2, 2)
    assert (d.inflow, d.outflow, d.max_debit) == (8030, 350, 250)
    assert (d.n_h23, d.n_h00, d.n_h09, d.n_h10, d.n_h12) == (1, 1, 1, 1, 0)
    assert (d.n_pos, d.n_mobile, d.n_online) == (2, 1, 1)
    assert (d.spend_dining, d.spend_travel, d.spend_categorised) == (350, 0, 350)
    assert [(c.counterparty, c.amount) for c in d.credits] == [("ACME", 8000)]
    e = days[date(2026, 6, 29)]
    assert (e.n, e.n_h23, e.spend_travel, e.inflow, e.credits) == (1, 1, 40, 0, [])


def test_profile_from_the_daily_summary_equals_the_profile_from_transactions(spark):
    """The profile job reads silver/transactions_daily; tests and small runs may pass raw
    transactions: both give the same transactions family."""
    from features.profile import transactions_daily

    rows = DAILY_ROWS + [_txn(7, utc(2026, 5, 10, 4), direction="credit", amount=8000, counterparty="ACME"),
                         _txn(8, utc(2026, 6, 10, 4), direction="credit", amount=8000, counterparty="ACME"),
                         _txn(9, utc(2025, 7, 1, 4), amount=70), _txn(10, utc(2026, 7, 1, 4), amount=999)]
    txns = silver(spark, "transactions", rows)
    base = {"customers": customers(spark), "product_catalog": silver(spark, "product_catalog", CATALOG)}
    raw = customer_360(base | {"transactions": txns}, AT, CONF).collect()[0].asDict()
    daily = customer_360(base | {"transactions_daily": transactions_daily(txns, AT.bank_timezone)}, AT, CONF) \
        .collect()[0].asDict()
    assert raw == daily
    assert CONF["aggregate_partitions"] == 16  # hashed by customer first (the default)
    unhashed = customer_360(base | {"transactions": txns}, AT, CONF | {"aggregate_partitions": 0}) \
        .collect()[0].asDict()
    assert unhashed == raw
    assert (raw["txn_count_365d"], raw["max_ticket_365d"], raw["salary_months_90d"]) == (8, 250, 2)
    # seven transactions on four days in 90 days: distinct days, not rows
    assert (raw["txn_count_90d"], raw["active_days_90d"]) == (7, 4)
    # debits: 390 in June 2026, 70 in July 2025 (the year's first day)
    assert raw["outflow_volatility_365d"] == pytest.approx(160 / 230)
    assert raw["night_ratio_90d"] == pytest.approx(3 / 7)  # 23:00, 00:30 and 23:59 local
    assert raw["avg_ticket_90d"] == pytest.approx(390 / 3)


def test_transactions_rows_have_the_daily_summary_columns_one_row_per_transaction(spark):
    from features.profile import transactions_daily, transactions_rows

    txns = silver(spark, "transactions", DAILY_ROWS)
    rows = transactions_rows(txns, "Asia/Shanghai")
    daily = transactions_daily(txns, "Asia/Shanghai")
    assert rows.columns == daily.columns
    assert [t for t in rows.dtypes if not t[1].startswith("decimal")] == \
        [t for t in daily.dtypes if not t[1].startswith("decimal")]
    got = {(r.day, r.n_h23, r.n_h00, r.n_h09, r.n_h10): r for r in rows.collect()}
    assert len(got) == 5  # the row without a customer is left out
    t1 = got[(date(2026, 6, 30), 1, 0, 0, 0)]
    assert (t1.n, t1.n_debit, t1.n_credit, t1.outflow, t1.inflow, t1.max_debit, t1.spend_dining, t1.n_pos) == \
        (1, 1, 0, 100, 0, 100, 100, 1)
    assert t1.credits is None
    t3 = got[(date(2026, 6, 30), 0, 0, 1, 0)]
    assert (t3.n_credit, t3.inflow, t3.max_debit, t3.spend_categorised, t3.n_online) == (1, 8000, None, 0, 1)
    assert [(c.counterparty, c.amount) for c in t3.credits] == [("ACME", 8000)]
    assert got[(date(2026, 6, 30), 0, 0, 0, 1)].credits is None  # a credit without a counterparty


def test_by_customer_puts_each_customer_in_one_of_n_partitions(spark):
    from pyspark.sql import functions as F

    from features.profile import by_customer

    df = spark.createDataFrame([(f"C{i % 50}", i) for i in range(400)], "customer_id string, x int")
    placed = by_customer(df, 4).select("customer_id", F.spark_partition_id().alias("p"))
    per_customer = placed.groupBy("customer_id").agg(F.count_distinct("p").alias("n"), F.count("*").alias("rows"))
    assert {(r.n, r.rows) for r in per_customer.collect()} == {(1, 8)}
    assert {r.p for r in placed.select("p").distinct().collect()} <= {0, 1, 2, 3}
    assert len({r.p for r in placed.select("p").distinct().collect()}) > 1
    assert by_customer(df, 0) is df


def test_active_days_and_volatility_at_any_grain(spark):
    """active_days_90d counts distinct days (bit masks of 63 days: days 0, 62, 63 and 89
    back, two rows on one day, day 90 outside); monthly debits that are all equal have a
    volatility of exactly 0, a single month too."""
    from features.profile import aggregate_family, transactions_daily, transactions_inputs, transactions_rows

    def local_noon(d):  # 04:00 UTC is noon in Shanghai
        return datetime(d.year, d.month, d.day, 4)

    from datetime import timedelta
    days_back = [0, 0, 62, 63, 89, 90]
    rows = [_txn(i, local_noon(AS_OF - timedelta(days=b))) for i, b in enumerate(days_back)]
    rows += [_txn(20 + m, local_noon(date(2026, m, 15)), customer_id="C2", amount=125.5) for m in (1, 2, 3)]
    rows += [_txn(30, local_noon(date(2026, 2, 1)), customer_id="C3", amount=10)]
    txns = silver(spark, "transactions", rows)
    for shape in (transactions_rows, transactions_daily):
        out = {r.customer_id: r for r in aggregate_family(
            "transactions", transactions_inputs(shape(txns, AT.bank_timezone), AT, CONF), AT).collect()}
        assert (out["C1"].active_days_90d, out["C1"].txn_count_90d) == (4, 5), shape.__name__
        assert (out["C2"].outflow_volatility_365d, out["C3"].outflow_volatility_365d) == (0.0, 0.0), shape.__name__
        assert out["C2"].active_days_90d == 0  # January to March 15: all more than 90 days back


def test_latest_snapshots_keep_each_accounts_newest_row(spark):
    from features.profile import latest_snapshots

    rows = [("A1", date(2026, 5, 31), 100, utc(2026, 6, 1)), ("A1", date(2026, 6, 30), 200, utc(2026, 7, 1)),
            # the same account and date delivered again: the later ingest wins
            ("A2", date(2026, 6, 30), 300, utc(2026, 7, 1)), ("A2", date(2026, 6, 30), 310, utc(2026, 7, 2)),
            ("A2", date(2026, 4, 30), 290, utc(2026, 7, 3)),  # a late, older snapshot
            ("A3", date(2026, 1, 31), 50, None),
            # a null date never beats a date; an account with only null dates keeps one row
            ("A4", None, 70, utc(2026, 7, 5)), ("A4", date(2026, 3, 31), 60, utc(2026, 4, 1)),
            ("A5", None, 80, utc(2026, 7, 1))]
    df = spark.createDataFrame(rows, "account_id string, snapshot_date date, balance int, _ingested_at timestamp")
    got = {r.account_id: (r.snapshot_date, r.balance) for r in latest_snapshots(df).collect()}
    assert got == {"A1": (date(2026, 6, 30), 200), "A2": (date(2026, 6, 30), 310), "A3": (date(2026, 1, 31), 50),
                   "A4": (date(2026, 3, 31), 60), "A5": (None, 80)}
    assert latest_snapshots(df).count() == 5
    assert latest_snapshots(df).columns == df.columns

"""Next-best-product candidate features that carry over between banks: ownership lags and
ownership vector from holdings history, per-pair signals in several windows, adoption among
similar customers, and the snapshots history allows. Small hand-made frames, exact values."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from features.candidates import (PAIR_FEATURES, account_history, candidates, held_pairs, held_products,
                                 history_features, month_end_snapshots, months_before, ownership_columns, tenure_columns,
                                 ownership_lags, ownership_vector, peer_adoption, product_signals)
from features.profile import AsOf
from models.frame import FeatureSpec

S = date(2026, 5, 31)
AT = AsOf(S, "UTC")  # the snapshot ends at 2026-06-01 00:00 UTC

HOLDINGS_SCHEMA = ("account_id string, customer_id string, product_code string, opened_date date, "
                   "closed_date date, status string, snapshot_date date")


def _holdings(spark):
    return spark.createDataFrame([
        # C1: current account held throughout; its later snapshot (after S) must not matter
        ("A1", "C1", "CA", date(2020, 1, 1), None, "active", date(2026, 4, 30)),
        ("A1", "C1", "CA", date(2020, 1, 1), None, "active", date(2026, 5, 31)),
        ("A1", "C1", "CA", date(2020, 1, 1), date(2026, 6, 10), "closed", date(2026, 6, 30)),
        # C1: a credit card held from 2025-03-10 to 2026-03-15 (reported closed at the March end)
        ("A2", "C1", "CC", date(2025, 3, 10), None, "active", date(2026, 2, 28)),
        ("A2", "C1", "CC", date(2025, 3, 10), date(2026, 3, 15), "closed", date(2026, 3, 31)),
        # C1: a fund opened 2026-04-15, reported closed without a date on 2026-05-20
        ("A3", "C1", "FD", date(2026, 4, 15), None, "active", date(2026, 4, 30)),
        ("A3", "C1", "FD", date(2026, 4, 15), None, "closed", date(2026, 5, 20)),
        # C1: a second credit card, opened after S: not known at S
        ("A4", "C1", "CC", date(2026, 6, 5), None, "active", date(2026, 6, 30)),
        # C2: savings opened within the 90 days before S, still held
        ("A5", "C2", "SV", date(2026, 4, 1), None, "active", date(2026, 5, 31)),
    ], HOLDINGS_SCHEMA)


def test_months_before_keeps_month_ends():
    assert months_before(date(2026, 5, 31), 1) == date(2026, 4, 30)
    assert months_before(date(2026, 5, 31), 3) == date(2026, 2, 28)
    assert months_before(date(2026, 5, 31), 12) == date(2025, 5, 31)
    assert months_before(date(2026, 3, 30), 1) == date(2026, 2, 28)   # no Feb 30: its last day
    assert months_before(date(2026, 4, 15), 6) == date(2025, 10, 15)


def test_account_history_is_each_accounts_state_known_at_the_snapshot(spark):
    rows = account_history(_holdings(spark), AT).collect()
    got = {(r.customer_id, r.product_code, r.opened_date): (r.ended, r.held) for r in rows}
    assert got == {
        ("C1", "CA", date(2020, 1, 1)): (None, True),                    # the June closing is after S
        ("C1", "CC", date(2025, 3, 10)): (date(2026, 3, 15), False),
        ("C1", "FD", date(2026, 4, 15)): (date(2026, 5, 20), False),     # closed without a date: its snapshot
        ("C2", "SV", date(2026, 4, 1)): (None, True),
    }
    # held at S is exactly held_products
    assert sorted((r.customer_id, r.product_code) for r in rows if r.held) == \
        sorted((r.customer_id, r.product_code) for r in held_products(_holdings(spark), AT).collect()) == \
        sorted((r.customer_id, r.product_code) for r in held_pairs(account_history(_holdings(spark), AT)).collect()) \
        == [("C1", "CA"), ("C2", "SV")]


def test_ownership_lags_from_opening_and_closing_dates(spark):
    lags = ownership_lags(account_history(_holdings(spark), AT), AT)
    cols = ["held_product_1m", "held_product_3m", "held_product_6m", "held_product_12m",
            "months_since_opened_product", "months_since_closed_product", "openings_product", "closings_product"]
    got = {(r.customer_id, r.product_code): tuple(r[c] for c in cols) for r in lags.collect()}
    assert got == {
        ("C1", "CA"): (1, 1, 1, 1, 76, None, 1, 0),
        # open on 2025-05-31, 2025-11-30 and 2026-02-28; closed 2026-03-15 (2.5 months before S)
        ("C1", "CC"): (0, 1, 1, 1, 14, 2, 1, 1),
        # open on 2026-04-30 only; closed 11 days before S
        ("C1", "FD"): (1, 0, 0, 0, 1, 0, 1, 1),
        ("C2", "SV"): (1, 0, 0, 0, 1, None, 1, 0),
    }


def test_ownership_vector_columns_come_from_the_codes_given(spark):
    # names: lower case, other characters as _, a name taken twice numbered
    assert ownership_columns(["CA", "ca", "FD-1", "X"]) == \
        [("CA", "own_ca"), ("ca", "own_ca_2"), ("FD-1", "own_fd_1"), ("X", "own_x")]
    vec = ownership_vector(account_history(_holdings(spark), AT), ["CA", "CC", "SV", "GONE"])
    assert set(vec.columns) == {"customer_id", "own_ca", "own_cc", "own_sv", "own_gone"}
    got = {r.customer_id: (r.own_ca, r.own_cc, r.own_sv, r.own_gone) for r in vec.collect()}
    # CC was closed before S; GONE (unknown to the holdings) is 0
    assert got == {"C1": (1, 0, 0, 0), "C2": (0, 0, 1, 0)}


def test_tenure_vector_counts_months_since_each_products_latest_opening(spark):
    accounts = account_history(_holdings(spark), AT)
    vec = ownership_vector(accounts, ["CA", "CC", "SV", "GONE"], AT)
    assert [c for _, c in tenure_columns(["CA", "FD-1"])] == ["tenure_months_ca", "tenure_months_fd_1"]
    got = {r.customer_id: (r.own_cc, r.tenure_months_ca, r.tenure_months_cc, r.tenure_months_sv, r.tenure_months_gone)
           for r in vec.collect()}
    # by hand from _holdings at 2026-05-31: C1 opened CA 2020-01-01 (76 months 30 days) and
    # CC 2025-03-10 (14 months 21 days; closed since, own_cc 0, the tenure stays); C2 opened
    # SV 2026-04-01 (1 month 30 days); never opened: null
    assert got == {"C1": (0, 76, 14, None, None), "C2": (0, None, None, 1, None)}


def _profile(spark):
    return spark.createDataFrame([
        ("C1", 35, 3, "30-39", "high"), ("C2", 36, 3, "30-39", "high"),
        ("C3", 60, 2, "60+", "low"), ("C4", 61, None, "60+", "low")],
        "customer_id string, age bigint, risk_level bigint, age_band string, income_band string")


def test_peer_adoption_is_smoothed_toward_the_global_rate(spark):
    accounts = spark.createDataFrame([
        ("C1", "FD", date(2026, 5, 1), None, True),     # within 90 days
        ("C2", "CC", date(2026, 3, 3), None, True),     # 89 days before S: within
        ("C3", "FD", date(2026, 3, 2), None, True),     # 90 days before S: outside
        ("C3", "CC", date(2026, 4, 1), date(2026, 5, 1), False),  # closed since, still an adoption
        ("C9", "FD", date(2026, 5, 1), None, True),     # not a customer of the profile
    ], "customer_id string, product_code string, opened_date date, ended date, held boolean")
    peers = peer_adoption(_profile(spark), accounts, AT, prior=2.0)
    got = {(r._cell, r.product_code): (r.adoption_rate_90d, r.peer_adoption_rate_90d, r.peer_adoption_lift_90d)
           for r in peers.collect()}
    # FD: 1 of 4 customers; cell 30-39|high: 1 of 2 -> (1 + 2 x 0.25) / (2 + 2)
    assert got[("30-39|high", "FD")] == pytest.approx((0.25, 0.375, 1.5))
    assert got[("60+|low", "FD")] == pytest.approx((0.25, 0.125, 0.5))
    # CC: 2 of 4 customers, one in each cell
    assert got[("30-39|high", "CC")] == pytest.approx((0.5, 0.5, 1.0))
    assert got[("60+|low", "CC")] == pytest.approx((0.5, 0.5, 1.0))
    assert len(got) == 4


def test_product_signals_count_views_applications_offers_and_declines_per_window(spark):
    ts = lambda m, d, h=10: datetime(2026, m, d, h)  # noqa: E731
    events = spark.createDataFrame([
        ("C1", "FD", "product_view", ts(5, 28)),        # 3 days before S
        ("C1", "FD", "product_view", ts(5, 11)),        # 20 days
        ("C1", "FD", "product_view", ts(4, 1)),         # 60 days
        ("C1", "FD", "product_view", ts(2, 1)),         # 119 days: outside every window
        ("C1", "FD", "product_view", ts(6, 1, 0)),      # after the end of S: never read
        ("C1", "FD", "application_start", ts(5, 21)),   # 10 days
        ("C1", "CC", "application_start", ts(5, 30)),   # 1 day
        ("C1", None, "product_view", ts(5, 30)),
    ], "customer_id string, product_code string, event_type string, event_ts timestamp")
    responses = spark.createDataFrame([
        ("C1", "FD", "O1", "sent", ts(5, 26), None), ("C1", "FD", "O1", "declined", ts(5, 26), ts(5, 27)),
        ("C1", "FD", "O2", "sent", ts(4, 21), None), ("C1", "FD", "O2", "declined", ts(4, 21), ts(4, 26)),
        ("C1", "FD", "O3", "sent", ts(5, 15), None), ("C1", "FD", "O3", "declined", ts(5, 15), ts(6, 2)),
    ], "customer_id string, product_code string, offer_id string, outcome string, sent_at timestamp, "
       "outcome_at timestamp")
    got = {(r.customer_id, r.product_code): r.asDict() for r in product_signals(events, responses, AT).collect()}
    fd, cc = got[("C1", "FD")], got[("C1", "CC")]
    assert [fd[f"views_product_{w}d"] for w in (7, 30, 90)] == [1, 2, 3]
    assert [fd[f"applications_product_{w}d"] for w in (7, 30, 90)] == [0, 1, 1]
    assert fd["days_since_view_product"] == 3
    # O1 sent 5 days before S, O3 16 days, O2 40 days; O3's decline came after S
    assert [fd[f"offers_product_{w}d"] for w in (7, 30, 90)] == [1, 2, 3]
    assert [fd[f"declined_product_{w}d"] for w in (7, 30, 90)] == [1, 1, 2]
    assert fd["offer_clicks_product_90d"] == 0
    assert [cc[f"applications_product_{w}d"] for w in (7, 30, 90)] == [1, 1, 1]
    assert cc["days_since_view_product"] is None and cc["offers_product_90d"] is None  # no offer: no row there
    assert set(got) == {("C1", "FD"), ("C1", "CC")}


def test_candidates_carry_history_features_with_defaults(spark):
    catalog = spark.createDataFrame([
        ("CA", "活期", "current_account", "R1", None, None, True), ("CC", "卡", "credit_card", "R2", 18, 70, True),
        ("FD", "基金", "fund", "R4", 18, 70, True), ("SV", "储蓄", "savings", "R1", None, None, True),
        ("OLD", "旧", "savings", "R1", None, None, False)],
        "product_code string, product_name string, family string, risk_level string, min_age bigint, "
        "max_age bigint, active boolean")
    holdings, profile = _holdings(spark), _profile(spark).where("customer_id in ('C1', 'C2')")
    history = history_features(profile, holdings, AT, ["CA", "CC", "NEW", "SV"])
    pairs = candidates(profile, catalog, held_products(holdings, AT), None, history)
    assert set(PAIR_FEATURES) <= set(pairs.columns) and "_cell" not in pairs.columns
    got = {(r.customer_id, r.product_code): r.asDict() for r in pairs.collect()}
    assert sorted(got) == [("C1", "CC"), ("C1", "FD"), ("C1", "SV"), ("C2", "CA"), ("C2", "CC"), ("C2", "FD")]
    # the ownership vector on every pair of the customer (NEW: nobody holds it, 0)
    for (c, _), r in got.items():
        assert (r["own_ca"], r["own_cc"], r["own_new"], r["own_sv"]) == ((1, 0, 0, 0) if c == "C1" else (0, 0, 0, 1))
    assert (got[("C1", "CC")]["held_product_3m"], got[("C1", "CC")]["months_since_closed_product"]) == (1, 2)
    # a pair without history: counts 0, months null
    none = got[("C2", "FD")]
    assert (none["held_product_1m"], none["openings_product"], none["months_since_opened_product"],
            none["views_product_7d"], none["days_since_view_product"]) == (0, 0, None, 0, None)
    # FD opened by C1 (cell 30-39|high, 2 customers) within 90 days: rate 1/2 in all and in the cell
    assert got[("C2", "FD")]["adoption_rate_90d"] == pytest.approx(0.5)
    assert got[("C2", "FD")]["peer_adoption_rate_90d"] == pytest.approx(0.5)
    # CA: nobody adopted it in 90 days
    assert (got[("C2", "CA")]["adoption_rate_90d"], got[("C2", "CA")]["peer_adoption_rate_90d"]) == (0.0, 0.0)
    # without history the rates are unknown (null), the lags 0
    plain = {(r.customer_id, r.product_code): r for r in
             candidates(profile, catalog, held_products(holdings, AT), None).collect()}
    assert plain[("C2", "FD")]["peer_adoption_rate_90d"] is None and plain[("C2", "FD")]["held_product_12m"] == 0


def test_month_end_snapshots_stop_where_history_starts():
    # configured 12, history allows 4: those 4, no failure
    assert month_end_snapshots(date(2026, 6, 30), 12, 30, earliest=date(2026, 2, 1)) == \
        [date(2026, 2, 28), date(2026, 3, 31), date(2026, 4, 30), date(2026, 5, 31)]
    assert month_end_snapshots(date(2026, 6, 30), 2, 30, earliest=date(2025, 1, 1)) == \
        [date(2026, 4, 30), date(2026, 5, 31)]
    assert month_end_snapshots(date(2026, 6, 30), 12, 30, earliest=date(2026, 6, 1)) == []


def test_feature_spec_keeps_the_ownership_codes():
    spec = FeatureSpec(numeric=["own_ca"], categorical={"product_code": ["CA"]}, ownership=["CA"])
    assert FeatureSpec.from_json(spec.to_json()) == spec
    # a spec saved before ownership existed reads as none
    assert FeatureSpec.from_json('{"numeric": ["x"], "categorical": {}}').ownership == []


def test_every_candidate_feature_is_in_the_catalogue():
    from features.candidates import CANDIDATE_FEATURES, OWNERSHIP_PREFIX, TENURE_PREFIX

    documented = [name for name, *_ in CANDIDATE_FEATURES]
    assert sorted(documented) == sorted([*PAIR_FEATURES, f"{OWNERSHIP_PREFIX}<code>", f"{TENURE_PREFIX}<code>"])

"""models.metrics against hand-computed values; features.candidates on small tables."""

from __future__ import annotations

import math
from datetime import date

import pytest

from features.candidates import adoptions, candidates, held_products, label, month_end_snapshots
from features.profile import AsOf
from models.metrics import (auc, auc_by_group, calibration, coverage, per_customer, popularity_scores,
                            ranking_metrics)


def scored(spark, rows):
    return spark.createDataFrame(rows, "customer_id string, product_code string, score double, label int")


def test_map_ndcg_precision_recall_by_hand(spark):
    df = scored(spark, [
        # C1: positives ranked 1 and 3 -> AP = (1/1 + 2/3) / 2 ; DCG = 1 + 1/2 ; IDCG = 1 + 1/log2(3)
        ("C1", "A", 0.9, 1), ("C1", "B", 0.8, 0), ("C1", "C", 0.7, 1), ("C1", "D", 0.1, 0),
        # C2: one positive ranked 2 -> AP = 1/2 ; NDCG = (1/log2 3) / 1
        ("C2", "A", 0.9, 0), ("C2", "B", 0.5, 1),
        # C3: no positive -> AP = 0, excluded from ndcg/precision/recall
        ("C3", "A", 0.9, 0), ("C3", "B", 0.5, 0),
    ])
    m = ranking_metrics(df)
    ap1, ap2 = (1 + 2 / 3) / 2, 0.5
    assert m["map_at_7"] == pytest.approx((ap1 + ap2 + 0) / 3)
    ndcg1 = (1 + 1 / 2) / (1 + 1 / math.log2(3))
    assert m["ndcg_at_7"] == pytest.approx((ndcg1 + 1 / math.log2(3)) / 2)
    assert m["precision_at_3"] == pytest.approx((2 / 3 + 1 / 3) / 2)
    assert m["recall_at_7"] == pytest.approx(1.0)
    assert (m["customers"], m["customers_with_positive"]) == (3, 2)


def test_map_at_3_counts_the_top_three_only_by_hand(spark):
    df = scored(spark, [
        # C1: positives ranked 1, 3 and 5 -> AP@3 = (1/1 + 2/3) / min(3, 3); AP@7 adds 3/5
        ("C1", "A", 0.9, 1), ("C1", "B", 0.8, 0), ("C1", "C", 0.7, 1), ("C1", "D", 0.6, 0), ("C1", "E", 0.5, 1),
        # C2: one positive ranked 4 -> AP@3 = 0, AP@7 = 1/4
        ("C2", "A", 0.9, 0), ("C2", "B", 0.8, 0), ("C2", "C", 0.7, 0), ("C2", "D", 0.6, 1),
        # C3: one positive ranked 2 -> 1/2 for both
        ("C3", "A", 0.9, 0), ("C3", "B", 0.5, 1),
    ])
    m = ranking_metrics(df)
    assert m["map_at_3"] == pytest.approx(((1 + 2 / 3) / 3 + 0 + 1 / 2) / 3)
    assert m["map_at_7"] == pytest.approx(((1 + 2 / 3 + 3 / 5) / 3 + 1 / 4 + 1 / 2) / 3)


def test_expected_calibration_error_by_hand(spark):
    df = scored(spark, [("C1", "A", 0.05, 0), ("C2", "A", 0.15, 0), ("C3", "A", 0.15, 1), ("C4", "A", 0.85, 1),
                        ("C5", "A", 0.95, 1), ("C6", "A", 1.0, 1)])
    table, brier, ece = calibration(df, 10, unit="candidates")
    # bins of 0.1: [0, 0.1) 1 row, predicted 0.05, observed 0; [0.1, 0.2) 2 rows, 0.15 vs 0.5;
    # [0.8, 0.9) 1 row, 0.85 vs 1; [0.9, 1] (1.0 in the last bin) 2 rows, 0.975 vs 1
    assert table["bin"].tolist() == [0, 1, 8, 9] and table["candidates"].tolist() == [1, 2, 1, 2]
    assert ece == pytest.approx((1 * 0.05 + 2 * 0.35 + 1 * 0.15 + 2 * 0.025) / 6)
    assert brier == pytest.approx((0.05 ** 2 + 0.15 ** 2 + 0.85 ** 2 + 0.15 ** 2 + 0.05 ** 2 + 0) / 6)


def test_ap_only_counts_the_top_seven(spark):
    rows = [("C1", f"P{i:02d}", 1.0 - i / 100, 1 if i == 8 else 0) for i in range(10)]
    pc = {r.customer_id: r for r in per_customer(scored(spark, rows)).collect()}
    assert pc["C1"].ap_at_k == 0.0 and pc["C1"].hits_at_k == 0  # the positive is ranked 9th


def test_ties_are_broken_by_product_code(spark):
    df = scored(spark, [("C1", "B", 0.5, 1), ("C1", "A", 0.5, 0)])
    assert ranking_metrics(df)["map_at_7"] == pytest.approx(0.5)  # A ranks first on the tie


def test_auc_and_coverage(spark):
    df = scored(spark, [("C1", "A", 0.9, 1), ("C2", "A", 0.8, 0), ("C3", "A", 0.7, 1), ("C4", "A", 0.1, 0),
                        ("C1", "B", 0.2, 0), ("C2", "B", 0.3, 0)])
    # product A: pairs (pos, neg): (0.9>0.8),(0.9>0.1),(0.7<0.8),(0.7>0.1) -> 3/4
    assert auc_by_group(df) == {"A": pytest.approx(0.75), "B": None}
    assert auc(scored(spark, [("C", "x", 0.5, 1), ("D", "x", 0.5, 0)])) == pytest.approx(0.5)
    assert coverage(df, k=1) == pytest.approx(0.5)  # every top-1 is A; B never is
    assert coverage(scored(spark, [("C1", "A", 0.9, 0), ("C1", "B", 0.1, 0)]), k=1) == pytest.approx(0.5)


def test_popularity_baseline_with_group_fallback(spark):
    train = spark.createDataFrame(
        [("g1", "A", 1)] * 30 + [("g1", "B", 0)] * 30 + [("g2", "A", 0)] * 5 + [("g2", "B", 1)] * 5,
        "persona string, product_code string, label int")
    target = spark.createDataFrame([("C1", "g1", "A"), ("C1", "g1", "B"), ("C2", "g2", "A"), ("C2", "g2", "B")],
                                   "customer_id string, persona string, product_code string")
    s = {(r.customer_id, r.product_code): r.score for r in popularity_scores(train, target, ["persona"]).collect()}
    assert s[("C1", "A")] == 1.0 and s[("C1", "B")] == 0.0
    # g2 has fewer than 20 rows per product: overall rates
    assert s[("C2", "A")] == pytest.approx(30 / 35) and s[("C2", "B")] == pytest.approx(5 / 35)


def test_candidates_exclude_held_and_inactive_products_and_labels_look_ahead_only(spark):
    from decimal import Decimal

    hold = spark.createDataFrame([
        ("A1", "C1", "CA", date(2020, 1, 1), None, "active", Decimal("10"), None, "CNY", date(2026, 5, 31)),
        ("A2", "C1", "FD", date(2026, 6, 10), None, "active", Decimal("10"), None, "CNY", date(2026, 6, 30)),
        ("A3", "C1", "TD", date(2026, 5, 1), date(2026, 5, 20), "closed", Decimal("0"), None, "CNY",
         date(2026, 5, 31)),
    ], "account_id string, customer_id string, product_code string, opened_date date, closed_date date, "
       "status string, balance decimal(18,2), credit_limit decimal(18,2), currency string, snapshot_date date")
    catalog = spark.createDataFrame([
        ("CA", "活期", "current_account", "R1", None, None, True), ("FD", "基金", "fund", "R4", 18, 70, True),
        ("TD", "定期", "time_deposit", "R1", None, None, True), ("OLD", "旧", "savings", "R1", None, None, False)],
        "product_code string, product_name string, family string, risk_level string, min_age bigint, "
        "max_age bigint, active boolean")
    profile = spark.createDataFrame([("C1", 30, 2, True, False)],
                                    "customer_id string, age bigint, risk_level bigint, holds_current_account "
                                    "boolean, holds_fund boolean")
    at = AsOf(date(2026, 5, 31))
    held = held_products(hold, at)
    assert sorted((r.customer_id, r.product_code) for r in held.collect()) == [("C1", "CA")]
    pairs = label(candidates(profile, catalog, held, None), adoptions(hold, date(2026, 5, 31), 30))
    got = {r.product_code: (r.label, r.risk_gap, r.age_in_range) for r in pairs.collect()}
    assert got == {"FD": (1, -2, True), "TD": (0, 1, True)}  # TD was opened before the snapshot


@pytest.mark.unit
def test_month_end_snapshots_have_complete_label_windows():
    assert month_end_snapshots(date(2026, 6, 30), 3, 30) == [date(2026, 3, 31), date(2026, 4, 30),
                                                              date(2026, 5, 31)]
    # mid-June: May 31 + 30 days is after June 15, so the latest usable snapshot is April 30
    assert month_end_snapshots(date(2026, 6, 15), 2, 30) == [date(2026, 3, 31), date(2026, 4, 30)]

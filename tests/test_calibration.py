"""Calibrated adoption probabilities (models.calibration): the isotonic map of a small
hand-made score/label set, its JSON form, and the same values in numpy and in the engine."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pyspark.sql import functions as F

from models.calibration import (Calibration, CalibrationError, calibrated, fit_isotonic, fit_points,
                                score_points)

# raw scores (any scale: a lambdarank score) and adoptions. Pool adjacent violators by hand:
# 0 | 1 0 0 -> 1/3 each | 1 1; the fitted values at the scores are 0, 1/3, 1/3, 1/3, 1, 1.
SCORES = [-1.0, -0.5, 0.0, 0.5, 1.0, 2.0]
LABELS = [0, 1, 0, 0, 1, 1]
# between breakpoints linear, outside the first / last value
HAND = {-3.0: 0.0, -1.0: 0.0, -0.75: 1 / 6, -0.5: 1 / 3, 0.25: 1 / 3, 0.5: 1 / 3, 0.75: 2 / 3, 1.0: 1.0,
        1.5: 1.0, 9.0: 1.0}


def test_isotonic_map_of_a_hand_made_set_gives_the_hand_computed_values():
    cal = fit_isotonic(SCORES, LABELS)
    got = cal.apply(list(HAND))
    assert got == pytest.approx(list(HAND.values()), abs=1e-12)
    assert np.isnan(cal.apply([np.nan])[0])
    # monotone, within [0, 1]; the breakpoints are the ends of the flat runs
    assert list(cal.x) == sorted(cal.x) and list(cal.y) == sorted(cal.y) and 0 <= cal.y[0] and cal.y[-1] <= 1
    assert cal.y[0] == 0.0 and cal.y[-1] == 1.0


def test_the_map_is_data_and_the_same_after_a_round_trip():
    cal = fit_isotonic(SCORES, LABELS, fitted_on={"oot_snapshot": "2026-05-31", "rows": 6})
    text = cal.to_json()
    doc = json.loads(text)
    assert doc["method"] == "isotonic" and doc["x"] == list(cal.x) and doc["y"] == list(cal.y)
    back = Calibration.from_json(text)
    assert back == cal and back.fitted_on["rows"] == 6 and back.to_json() == text
    for bad, why in ((dict(doc, x=doc["x"][::-1]), "strictly increasing"),
                     (dict(doc, y=[0.5] + doc["y"][1:]), "non-decreasing"),
                     (dict(doc, y=[v * 2 for v in doc["y"]]), r"within \[0, 1\]"),
                     (dict(doc, y=doc["y"][:-1]), "as many"),
                     (dict(doc, format="pickle"), "format"),
                     (dict(doc, x=[float("nan")] * len(doc["x"])), "finite")):
        with pytest.raises(CalibrationError, match=why):
            Calibration.from_json(json.dumps(bad))


def test_the_engine_applies_the_map_as_numpy_does(spark):
    cal = fit_isotonic(SCORES, LABELS)
    values = [*HAND, None]
    df = spark.createDataFrame([(i, v) for i, v in enumerate(values)], "i int, raw double")
    got = {r.i: r.p for r in df.select("i", calibrated(df["raw"], cal).alias("p")).collect()}
    for i, v in enumerate(values[:-1]):
        assert got[i] == pytest.approx(HAND[v], abs=1e-12)
    assert got[len(values) - 1] is None
    one = Calibration((0.3,), (0.25,))  # a single breakpoint: a constant
    assert [r.p for r in df.select(calibrated(df["raw"], one).alias("p")).orderBy("i").collect()] == \
        [0.25] * len(HAND) + [None]


def test_points_from_the_engine_fit_the_same_map(spark):
    rows = [(f"C{i}", s, y) for i, (s, y) in enumerate(zip(SCORES, LABELS))] + [("CX", None, 1)]
    df = spark.createDataFrame(rows, "customer_id string, raw double, label int")
    points = score_points(df, "raw")
    assert points["rows"].tolist() == [1] * 6 and points["score"].tolist() == pytest.approx(SCORES)
    assert fit_points(points) == fit_isotonic(SCORES, LABELS)
    with pytest.raises(CalibrationError, match="no scored rows"):
        fit_points(score_points(df.where("raw IS NULL"), "raw"))


def test_training_calibrates_on_all_oot_rows_and_reports_the_cross_fitted_error(spark):
    """models.nbp.calibrate: the map is fitted on every OOT row; the reported ECE is that of
    each half of the customers (hash bucket parity) calibrated by the other half's map,
    recomputed here in numpy."""
    from models.nbp import calibrate

    rng = np.random.default_rng(5)
    n = 120
    raw = np.round(rng.normal(size=n), 1)  # repeated values: ties pooled alike
    label = (rng.random(n) < 1 / (1 + np.exp(-2 * raw))).astype(int)
    rows = [(f"C{i:03d}", "SV", float(s), int(y)) for i, (s, y) in enumerate(zip(raw, label))]
    df = spark.createDataFrame(rows, "customer_id string, product_code string, score_binary double, label int")
    half = np.array([r.h for r in df.select((F.pmod(F.xxhash64("customer_id"), F.lit(1000)) % 2).alias("h"))
                     .collect()])
    assert 0 < half.sum() < n

    cal, m, table = calibrate(df, "score_binary", 10, {"oot_snapshot": "2026-05-31"})
    ref = fit_isotonic(raw, label)  # the bins' mean scores: the tied raw scores, up to rounding
    assert np.allclose(cal.x, ref.x, rtol=0, atol=1e-12) and np.allclose(cal.y, ref.y, rtol=0, atol=1e-12)
    crossed = np.empty(n)
    for h in (0, 1):
        other = fit_isotonic(raw[half != h], label[half != h])
        crossed[half == h] = other.apply(raw[half == h])
    bins = np.minimum(np.floor(crossed * 10), 9)
    ece = sum(abs(label[bins == b].mean() - crossed[bins == b].mean()) * (bins == b).sum() for b in set(bins)) / n
    assert m["calibration_ece"] == pytest.approx(ece, abs=1e-9)
    assert m["calibration_brier"] == pytest.approx(np.mean((crossed - label) ** 2), abs=1e-9)
    assert m["calibration_cross_fitted"] == 1.0 and m["calibration_breakpoints"] == len(cal.x)
    inside = ref.apply(raw)
    assert m["calibration_brier_in_sample"] == pytest.approx(np.mean((inside - label) ** 2), abs=1e-9)
    assert table["candidates"].sum() == n

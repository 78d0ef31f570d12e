"""models.frame: the same frame at training and scoring time."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from models.frame import FeatureSpec, fit_spec, matrix, prepare

pytestmark = pytest.mark.unit


def test_spec_round_trip_and_fixed_categories():
    train = pd.DataFrame({"customer_id": ["C1", "C2"], "label": [1, 0], "age": [30, 40],
                          "holds_fund": [True, False], "product_code": ["FD", "TD"], "city": ["上海", "北京"],
                          "risk_gap": [None, 2], "deposit": [1.5, 2.0]})
    spec = fit_spec(train)
    assert spec.numeric == ["age", "holds_fund", "risk_gap", "deposit"]
    assert spec.categorical == {"product_code": ["FD", "TD"]}
    again = FeatureSpec.from_json(spec.to_json())
    score = pd.DataFrame({"product_code": ["TD", "NEW"], "age": [50, None], "holds_fund": [None, True],
                          "deposit": [Decimal("12.25"), None]})  # Spark decimals arrive as Decimal objects
    frame = prepare(score, again)
    assert list(frame.columns) == ["age", "holds_fund", "risk_gap", "deposit", "product_code"]
    assert list(frame["product_code"].cat.codes) == [1, -1]  # NEW is unknown: missing, not a new code
    assert frame["age"].tolist()[0] == 50.0 and np.isnan(frame["age"].tolist()[1])
    assert np.isnan(frame["risk_gap"]).all()  # absent column
    assert frame["holds_fund"].tolist()[1] == 1.0 and np.isnan(frame["holds_fund"].tolist()[0])
    assert frame["deposit"].tolist()[0] == 12.25 and np.isnan(frame["deposit"].tolist()[1])
    assert all(frame[c].dtype == np.float64 for c in spec.numeric)
    missing_cat = prepare(score.drop(columns=["product_code"]), again)["product_code"]
    assert list(missing_cat.cat.codes) == [-1, -1] and list(missing_cat.cat.categories) == ["FD", "TD"]


def test_matrix_from_arrow_matches_prepare_for_lightgbm():
    import lightgbm as lgb
    import pyarrow as pa

    rng = np.random.default_rng(7)
    n = 400
    train = pd.DataFrame({"age": rng.integers(18, 80, n).astype(float), "holds_fund": rng.random(n) < 0.3,
                          "deposit": rng.gamma(2.0, 1000.0, n), "product_code": rng.choice(["FD", "TD", "WM"], n)})
    y = ((train["age"] > 45) ^ (train["product_code"] == "WM") ^ train["holds_fund"]).astype(int)
    spec = fit_spec(train)
    booster = lgb.train({"objective": "binary", "verbose": -1, "min_data_in_leaf": 5, "num_threads": 1},
                        lgb.Dataset(prepare(train, spec), y), num_boost_round=20)
    # as the engine delivers a batch: ints, nullable bools, decimals, strings with nulls and
    # an unknown category, the spec's columns in another order, one column absent
    batch = pa.RecordBatch.from_pydict({
        "product_code": pa.array(["TD", "NEW", None, "WM", "FD"]),
        "deposit": pa.array([Decimal("12.25"), None, Decimal("3000.5"), Decimal(80), Decimal(0)],
                            pa.decimal128(18, 2)),
        "age": pa.array([50, None, 30, 61, 19], pa.int64()),
        "holds_fund": pa.array([None, True, False, True, False]),
        "customer_id": pa.array(["C1", "C2", "C3", "C4", "C5"]),
    })
    m = matrix(batch, spec)
    assert m.shape == (5, 4) and m.dtype == np.float64
    assert np.isnan(m[1, 3]) and np.isnan(m[2, 3]) and m[0, 3] == 1.0 and m[3, 3] == 2.0  # codes in spec order
    assert m[0, 2] == 12.25 and np.isnan(m[1, 2]) and np.isnan(m[1, 0]) and m[1, 1] == 1.0
    frame = prepare(batch.to_pandas(), spec)
    np.testing.assert_array_equal(booster.predict(m), booster.predict(frame))
    no_age = matrix(batch.drop_columns(["age"]), spec)
    assert np.isnan(no_age[:, 0]).all()
    np.testing.assert_array_equal(booster.predict(no_age), booster.predict(prepare(batch.to_pandas().drop(columns=["age"]), spec)))

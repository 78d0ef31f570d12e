"""models.frame: the same frame at training and scoring time."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pandas as pd

from models.frame import FeatureSpec, fit_spec, prepare


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

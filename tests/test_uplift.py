"""Did it work: adoption of the treated customers against the control group (holdout), the
uplift and its 95% interval (models/uplift.py, gold/recommendation_outcomes); and, end to
end, a generated bank whose CRM contacts the exported customers with a known lift."""

from __future__ import annotations

import math
from datetime import date

import pytest

from models import uplift

AS_OF = date(2026, 7, 31)
D1, D2 = date(2026, 6, 30), date(2026, 7, 15)  # D1 + 30 = 07-30 <= as_of; D2 + 30 = 08-14 > as_of

PAIRS = [  # as_of_date, customer, product, persona, held
    (D1, "C1", "SV", "1", False), (D1, "C1", "SV", "1", False),  # a repeated row counts once
    (D1, "C2", "SV", "1", False), (D1, "C3", "SV", "1", False), (D1, "C4", "SV", "1", False),
    (D1, "C7", "SV", "1", False),
    (D1, "C5", "SV", "1", True), (D1, "C6", "SV", "1", True),
    (D1, "C1", "CC", "1", False),                                  # no holdout customer
    (D2, "C8", "SV", "2", False), (D2, "C9", "SV", "2", True),     # window still open
]
HOLDINGS = [  # customer, product, opened, snapshot
    ("C1", "SV", date(2026, 7, 5), date(2026, 7, 31)),   # inside (D1, D1 + 30]: adopted
    ("C1", "SV", date(2026, 7, 5), date(2026, 7, 10)),   # the same account in an earlier snapshot
    ("C2", "SV", date(2026, 6, 30), date(2026, 7, 31)),  # opened on D1 itself: not after it
    ("C3", "SV", date(2026, 7, 31), date(2026, 7, 31)),  # the day after the window
    ("C4", "SV", date(2026, 7, 30), date(2026, 7, 31)),  # the window's last day: adopted
    ("C7", "SV", date(2026, 7, 1), date(2026, 7, 31)),   # the window's first day: adopted
    ("C5", "SV", date(2026, 7, 10), date(2026, 7, 31)),  # holdout, adopted
    ("C6", "SV", date(2026, 7, 10), date(2026, 8, 2)),   # known only after as_of: not yet
    ("C6", "CC", date(2026, 7, 10), date(2026, 7, 31)),  # another product
    ("C8", "SV", date(2026, 7, 20), date(2026, 7, 31)),  # D2's window is open: not counted
]


def test_interval_is_the_normal_approximation_by_hand():
    # 3 of 5 treated, 1 of 2 held out: 0.6 - 0.5, se = sqrt(0.6*0.4/5 + 0.5*0.5/2) = sqrt(0.173)
    d, lo, hi = uplift.interval(3, 5, 1, 2)
    assert d == pytest.approx(0.1)
    assert lo == pytest.approx(0.1 - 1.959963984540054 * math.sqrt(0.173))
    assert hi == pytest.approx(0.1 + 1.959963984540054 * math.sqrt(0.173))
    assert (lo, hi) == pytest.approx((-0.7152, 0.9152), abs=1e-4)
    assert uplift.interval(1, 1, 0, 0) is None and uplift.interval(0, 0, 1, 1) is None


def test_treated_and_holdout_adoption_uplift_and_interval(spark):
    pairs = spark.createDataFrame(PAIRS, "as_of_date date, customer_id string, product_code string, "
                                         "persona_id string, held boolean")
    holdings = spark.createDataFrame(HOLDINGS, "customer_id string, product_code string, opened_date date, "
                                               "snapshot_date date")
    out = uplift.uplift(uplift.adopted(pairs, holdings, AS_OF, 30), ["as_of_date", "product_code", "persona_id"])
    got = {(r.as_of_date, r.product_code): r.asDict() for r in out.collect()}
    assert set(got) == {(D1, "SV"), (D1, "CC"), (D2, "SV")}
    sv = got[(D1, "SV")]
    assert (sv["adoption_complete"], sv["treated"], sv["treated_adopted"], sv["holdout"], sv["holdout_adopted"]) == \
        (True, 5, 3, 2, 1)  # C1, C4, C7 of C1-C4, C7; C5 of C5, C6
    assert sv["treated_adoption_rate"] == pytest.approx(0.6) and sv["holdout_adoption_rate"] == pytest.approx(0.5)
    half = 1.959963984540054 * math.sqrt(0.6 * 0.4 / 5 + 0.5 * 0.5 / 2)
    assert sv["uplift"] == pytest.approx(0.1)
    assert (sv["uplift_ci_low"], sv["uplift_ci_high"]) == pytest.approx((0.1 - half, 0.1 + half))
    cc = got[(D1, "CC")]  # no holdout customer: rates where there is a group, no uplift
    assert (cc["treated"], cc["treated_adopted"], cc["treated_adoption_rate"], cc["holdout"],
            cc["holdout_adopted"], cc["holdout_adoption_rate"]) == (1, 0, 0.0, 0, 0, None)
    assert (cc["uplift"], cc["uplift_ci_low"], cc["uplift_ci_high"]) == (None, None, None)
    open_ = got[(D2, "SV")]  # the window has not passed: counts of customers only
    assert (open_["adoption_complete"], open_["treated"], open_["holdout"]) == (False, 1, 1)
    assert all(open_[c] is None for c in ("treated_adopted", "treated_adoption_rate", "holdout_adopted",
                                          "holdout_adoption_rate", "uplift", "uplift_ci_low", "uplift_ci_high"))

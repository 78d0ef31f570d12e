"""Scoring: eligibility and suitability edge cases, exclusion counts, reasons, ranking in the
engine with a real LightGBM champion from a real MLflow registry (sqlite, in tmp)."""

from __future__ import annotations

import shutil
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import functions as F

from c360 import lake
from c360.settings import ConfigError, load_settings
from features.candidates import with_profile
from features.profile import AsOf
from jobs import score
from models.frame import FeatureSpec, prepare
from models.scoring import EXCLUSION_ORDER, _holds, explain, explain_rows, reason_effects, template_key

AS_OF = date(2026, 6, 30)
AT = AsOf(AS_OF, "Asia/Shanghai")
REPO_CONF = Path(__file__).resolve().parent.parent / "conf"


def local_noon(d: date) -> datetime:
    """Noon in Shanghai on ``d``, as the UTC instant the lake stores."""
    return datetime(d.year, d.month, d.day, 12) - timedelta(hours=8)


def days_before(n: int) -> datetime:
    return local_noon(AS_OF - timedelta(days=n))


# product_code, product_name, family, risk_level, min_age, max_age, active
CATALOG = [
    ("CA", "借记卡活期账户", "current_account", "R1", 16, 120, True),
    ("SV", "智能活期宝", "savings", "R2", 18, 120, True),
    ("BF", "稳利债券基金", "fund", "R3", 18, 80, True),
    ("EF", "均衡混合型基金", "fund", "R4", 18, 75, True),
    ("CC", "标准信用卡", "credit_card", None, 18, 65, True),   # credit: no risk rating
    ("OLD", "保本理财（已停售）", "wealth_management", "R1", 18, 120, False),
]
# customer_id, age, risk_tolerance, deposit_balance, is_salary_customer, marketing_consent, kyc_status
CUSTOMERS = [
    ("C1", 40, "R3", 90000.0, True, True, "verified"),     # R4 excluded, R3 kept; holds CA
    ("C2", 40, None, 20000.0, False, True, " Verified "),  # no assessment: products rated R1-R2 only
    ("C3", 17, "R5", 1000.0, False, True, "VERIFIED"),     # 17: only CA (min_age 16)
    ("C4", 40, "R5", 60000.0, True, False, "verified"),    # declined SV 29 days ago, BF 31 days ago
    ("C5", 40, "R5", 50000.0, False, True, "verified"),    # 4 offers in 30 days: contact limit reached
    ("C6", 17, None, 0.0, False, True, "verified"),        # fails age and assessment: counted under age
    ("C7", 17, None, 0.0, False, True, "expired"),         # KYC expired (and C6's failures): counted under KYC
    ("C8", 40, "R5", 50000.0, True, True, None),           # no KYC status: not valid
]
SPEC = FeatureSpec(numeric=["views_product_90d", "deposit_balance", "is_salary_customer", "age", "risk_gap",
                            "holds_same_family"],
                   categorical={"product_code": ["BF", "CA", "CC", "EF", "SV"]})


def catalog_df(spark):
    return spark.createDataFrame(CATALOG, "product_code string, product_name string, family string, "
                                          "risk_level string, min_age int, max_age int, active boolean")


def profile_df(spark):
    rows = [(c, AS_OF, age, tol, int(tol[1]) if tol else None, tol is not None, consent, dep, sal, c == "C1", False,
             kyc) for c, age, tol, dep, sal, consent, kyc in CUSTOMERS]
    return spark.createDataFrame(rows, "customer_id string, as_of_date date, age bigint, risk_tolerance string, "
                                       "risk_level bigint, has_risk_assessment boolean, marketing_consent boolean, "
                                       "deposit_balance double, is_salary_customer boolean, "
                                       "holds_current_account boolean, holds_fund boolean, kyc_status string")


def holdings_df(spark):
    from decimal import Decimal
    return spark.createDataFrame(
        [("A1", "C1", "CA", date(2020, 1, 1), None, "active", Decimal("9000"), None, "CNY", date(2026, 6, 30))],
        "account_id string, customer_id string, product_code string, opened_date date, closed_date date, "
        "status string, balance decimal(18,2), credit_limit decimal(18,2), currency string, snapshot_date date")


def responses_df(spark):
    rows = [
        ("O41", "C4", "SV", "sms", days_before(40), "sent", None),
        ("O41", "C4", "SV", "sms", days_before(40), "declined", days_before(29)),   # inside the 30 days
        ("O42", "C4", "BF", "sms", days_before(45), "sent", None),
        ("O42", "C4", "BF", "sms", days_before(45), "declined", days_before(31)),   # outside
        *[(f"O5{i}", "C5", p, "app", days_before(3 + i), "sent", None) for i, p in enumerate(["CA", "SV", "BF", "CC"])],
        ("O55", "C5", "EF", "app", days_before(35), "sent", None),                  # outside the contact window
        *[(f"O2{i}", "C2", "SV", "app", days_before(5 + i), "sent", None) for i in range(3)],  # below the limit
    ]
    return spark.createDataFrame(rows, "offer_id string, customer_id string, product_code string, channel string, "
                                       "sent_at timestamp, outcome string, outcome_at timestamp")


def events_df(spark):
    views = [("C4", "BF")] * 5 + [("C2", "SV")] * 3 + [("C1", "BF")] * 2
    rows = [(f"E{i}", c, "D1", "S1", days_before(2 + i % 20), "app", "product_view", p, "detail", 1000)
            for i, (c, p) in enumerate(views)]
    return spark.createDataFrame(rows, "event_id string, customer_id string, device_id string, session_id string, "
                                       "event_ts timestamp, channel string, event_type string, product_code string, "
                                       "page string, duration_ms bigint")


# ---------------------------------------------------------------------------------------
# a real champion: tiny LightGBM models in a real MLflow registry (sqlite in tmp)

def train_tiny(kind: str, seed: int = 7):
    import lightgbm as lgb

    rng = np.random.default_rng(seed)
    n = 600
    if kind == "nbp":
        df = pd.DataFrame({"views_product_90d": rng.integers(0, 6, n), "deposit_balance": rng.uniform(0, 1e5, n),
                           "is_salary_customer": rng.integers(0, 2, n).astype(bool),
                           "age": rng.integers(16, 80, n), "risk_gap": rng.integers(-2, 4, n),
                           "holds_same_family": rng.integers(0, 2, n).astype(bool),
                           "product_code": rng.choice(SPEC.categorical["product_code"], n)})
        y = ((df.views_product_90d >= 2) | ((df.deposit_balance > 5e4) & df.is_salary_customer)
             | (rng.random(n) < 0.05)).astype(int)
        spec = SPEC
    else:
        df = pd.DataFrame({"deposit_balance": rng.uniform(0, 1e5, n), "age": rng.integers(18, 80, n)})
        y = ((df.deposit_balance < 2e4) | (rng.random(n) < 0.1)).astype(int)
        spec = FeatureSpec(numeric=["deposit_balance", "age"])
    params = {"objective": "binary", "num_leaves": 4, "min_data_in_leaf": 10, "learning_rate": 0.3,
              "verbose": -1, "seed": 1, "deterministic": True, "num_threads": 1}
    return lgb.train(params, lgb.Dataset(prepare(df, spec), y), num_boost_round=12), spec


def tiny_calibration(booster, spec, seed: int = 8):
    """An isotonic map of the tiny nbp model's score on fresh rows of its world (as training
    fits one on the OOT snapshot): a real map with several breakpoints."""
    from models.calibration import fit_isotonic

    rng = np.random.default_rng(seed)
    n = 400
    df = pd.DataFrame({"views_product_90d": rng.integers(0, 6, n), "deposit_balance": rng.uniform(0, 1e5, n),
                       "is_salary_customer": rng.integers(0, 2, n).astype(bool), "age": rng.integers(16, 80, n),
                       "risk_gap": rng.integers(-2, 4, n), "holds_same_family": rng.integers(0, 2, n).astype(bool),
                       "product_code": rng.choice(spec.categorical["product_code"], n)})
    raw = booster.predict(prepare(df, spec))
    adopted = (rng.random(n) < raw * 0.3).astype(int)  # the model's score overstates adoption
    return fit_isotonic(raw, adopted, fitted_on={"oot_snapshot": "2026-05-31"})


def register_champion(settings, name: str, booster, spec: FeatureSpec, kind: str = "binary",
                      calibration=None) -> str:
    """Log ``booster`` and ``feature_spec.json`` (and ``calibration.json`` when given) to
    the lake's MLflow (as the train step does), register it as ``name`` with the hash of
    its text (and of its calibration) and point the ``champion`` alias at it; the version."""
    import mlflow
    import mlflow.lightgbm

    from models.registry import (CHAMPION, KIND_TAG, SPEC_ARTIFACT, ensure_experiment, hash_calibration,
                                 hash_model_version, mlflow_session)

    with mlflow_session(settings) as client:
        with mlflow.start_run(experiment_id=ensure_experiment(client, settings, "test-scoring")):
            mlflow.log_text(spec.to_json(), SPEC_ARTIFACT)
            if calibration is not None:
                mlflow.log_text(calibration.to_json(), "calibration.json")
            info = mlflow.lightgbm.log_model(booster, name="model", registered_model_name=name,
                                             pip_requirements=["lightgbm"])
        version = str(info.registered_model_version)
        client.set_model_version_tag(name, version, KIND_TAG, kind)
        hash_model_version(client, name, version, booster.model_to_string())
        if calibration is not None:
            hash_calibration(client, name, version, calibration.to_json())
        client.set_registered_model_alias(name, CHAMPION, version)
    return version


def make_world(settings, spark, root: Path, top_n: int | None, calibrated: bool) -> dict:
    """A small lake at AS_OF (gold/customer_360 and silver inputs) and a registered champion,
    with a calibration map or (registered before calibration existed) without."""
    s = settings.with_paths(landing=root / "landing", lake=root / "lake")
    if top_n is not None:
        s = s.model_copy(update={"scoring": s.scoring.model_copy(update={"top_n": top_n})})
    lake.write_partition(profile_df(spark), lake.table_path(s.lake, "gold", "customer_360"), "as_of_date",
                         score.partition(AS_OF))
    for name, df in (("product_catalog", catalog_df(spark)), ("holdings", holdings_df(spark)),
                     ("campaign_responses", responses_df(spark)), ("events", events_df(spark))):
        lake.overwrite(df, lake.table_path(s.lake, "silver", name))
    booster, spec = train_tiny("nbp")
    cal = tiny_calibration(booster, spec) if calibrated else None
    version = register_champion(s, "next_best_product", booster, spec, calibration=cal)
    return {"settings": s, "booster": booster, "spec": spec, "version": version, "calibration": cal}


@pytest.fixture(scope="module")
def world(settings, spark, tmp_path_factory):
    """A small lake at AS_OF and a calibrated champion; gold keeps the top 2."""
    return make_world(settings, spark, tmp_path_factory.mktemp("scoring"), 2, calibrated=True)


@pytest.fixture(scope="module")
def scored(world, spark):
    metrics = score.run(spark, world["settings"], AS_OF)
    recs = lake.read(spark, lake.table_path(world["settings"].lake, "gold", "recommendations"))
    return metrics, recs.where(score.partition(AS_OF))


# ---------------------------------------------------------------------------------------
# rules

def annotate(spark, settings):
    return score.annotated_candidates(profile_df(spark), catalog_df(spark), holdings_df(spark), events_df(spark),
                                      responses_df(spark), AT, settings.scoring)


def test_eligibility_and_suitability_edge_cases(spark, settings):
    annotated, _ = annotate(spark, settings)
    got = {(r.customer_id, r.product_code): r.exclusion_reason
           for r in annotated.select("customer_id", "product_code", "exclusion_reason").collect()}
    # R4 above R3 excluded, R3 vs R3 kept; a product held (CA) or inactive (OLD) is never a candidate
    assert got[("C1", "EF")] == "risk_above_tolerance"
    assert got[("C1", "BF")] is None and got[("C1", "SV")] is None and got[("C1", "CC")] is None
    assert ("C1", "CA") not in got and not any(p == "OLD" for _, p in got)
    # no assessment: only products rated R1-R2 (the unrated card is excluded too)
    assert {p: got[("C2", p)] for p in ("CA", "SV", "BF", "EF", "CC")} == {
        "CA": None, "SV": None, "BF": "no_risk_assessment", "EF": "no_risk_assessment", "CC": "no_risk_assessment"}
    # age 17: min_age 18 excluded, min_age 16 kept
    assert {p: got[("C3", p)] for p in ("CA", "SV", "BF", "EF", "CC")} == {
        "CA": None, "SV": "age_limit", "BF": "age_limit", "EF": "age_limit", "CC": "age_limit"}
    # declined 29 days ago excluded, 31 days ago kept
    assert got[("C4", "SV")] == "declined_recently" and got[("C4", "BF")] is None
    # contact limit (4 offers in 30 days, limit 4): nothing; 3 offers is below the limit
    assert {got[("C5", p)] for p in ("CA", "SV", "BF", "EF", "CC")} == {"contact_limit"}
    assert got[("C2", "SV")] is None
    # several failures: the first in the fixed order
    assert got[("C6", "EF")] == "age_limit" and got[("C6", "CA")] is None
    # KYC (trimmed, any case: C2, C3 pass): expired or missing -> no candidate of the customer
    # is eligible, each counted under kyc_not_valid before anything else (C7 fails C6's rules too)
    assert {p: got[("C7", p)] for p in ("CA", "SV", "BF", "EF", "CC")} == dict.fromkeys(
        ("CA", "SV", "BF", "EF", "CC"), "kyc_not_valid")
    assert {got[("C8", p)] for p in ("CA", "SV", "BF", "EF", "CC")} == {"kyc_not_valid"}


def test_kyc_rule_on_a_small_frame(spark):
    from models.scoring import kyc_valid, rule_failures

    df = spark.createDataFrame([("A", "verified"), ("B", " Verified "), ("C", "pending"), ("D", None),
                                ("E", "EXPIRED"), ("F", ""), ("G", "renewed")], "id string, kyc_status string")
    got = {r.id: r.ok for r in df.select("id", kyc_valid(F.col("kyc_status"), ["verified"]).alias("ok")).collect()}
    assert got == {"A": True, "B": True, "C": False, "D": False, "E": False, "F": False, "G": False}
    got = {r.id: r.ok for r in df.select("id", kyc_valid(F.col("kyc_status"), ["verified", "renewed"])
                                         .alias("ok")).collect()}
    assert [k for k, v in sorted(got.items()) if v] == ["A", "B", "G"]
    fails = rule_failures(4, 2, ["verified"])
    assert next(iter(fails)) == "kyc_not_valid" == EXCLUSION_ORDER[2]
    got = {r.id: r.fails for r in df.select("id", fails["kyc_not_valid"].alias("fails")).collect()}
    assert got == {"A": False, "B": False, "C": True, "D": True, "E": True, "F": True, "G": True}


def test_candidates_get_the_champions_ownership_columns_whatever_the_catalogue(spark, settings):
    # the champion was trained with CA, SV and GONE (no longer in the catalogue); BF is new
    annotated, _ = score.annotated_candidates(profile_df(spark), catalog_df(spark), holdings_df(spark),
                                              events_df(spark), responses_df(spark), AT, settings.scoring,
                                              ownership=["CA", "GONE", "SV"])
    own = [c for c in annotated.columns if c.startswith("own_")]
    assert own == ["own_ca", "own_gone", "own_sv"]
    got = {r.customer_id: (r.own_ca, r.own_gone, r.own_sv) for r in annotated.select("customer_id", *own).collect()}
    assert got["C1"] == (1, 0, 0)  # C1 holds CA at as_of
    assert {v for c, v in got.items() if c != "C1"} == {(0, 0, 0)}
    # history features are there for every candidate (no holdings history here: counts 0)
    row = annotated.where("customer_id = 'C2' and product_code = 'SV'").first()
    assert (row.held_product_12m, row.openings_product, row.months_since_opened_product) == (0, 0, None)


def test_excluded_counts_by_reason(spark, settings):
    annotated, held = annotate(spark, settings)
    m = score.exclusion_counts(annotated, profile_df(spark), catalog_df(spark), held)
    assert list(m["excluded_by_reason"]) == list(EXCLUSION_ORDER)
    assert m["excluded_by_reason"] == {"inactive_product": 8, "already_held": 1, "kyc_not_valid": 10,
                                       "age_limit": 8, "declined_recently": 1, "contact_limit": 5,
                                       "no_risk_assessment": 3, "risk_above_tolerance": 1}
    # C6's BF, EF and CC fail the age and the assessment rules: counted once above, under each
    # here; C7 fails them too, counted under KYC above
    assert m["failing_by_rule"]["no_risk_assessment"] == 9 and m["failing_by_rule"]["age_limit"] == 12
    assert m["failing_by_rule"]["kyc_not_valid"] == 10
    assert (m["customers"], m["candidates"], m["eligible"]) == (8, 39, 11)


def test_rank_ties_broken_by_product_code_and_top_n(spark):
    df = spark.createDataFrame([("C1", "B", 0.5), ("C1", "A", 0.5), ("C1", "C", 0.9), ("C1", "D", 0.1),
                                ("C2", "A", 0.2)], "customer_id string, product_code string, score double")
    got = sorted((r.customer_id, r.rank, r.product_code) for r in score.rank_top(df, 2).collect())
    assert got == [("C1", 1, "C"), ("C1", 2, "A"), ("C2", 1, "A")]


# ---------------------------------------------------------------------------------------
# reasons

def templates(settings):
    return score.reasons_conf(settings.scoring)


@pytest.mark.unit
def test_reason_texts_for_a_known_contribution_vector(settings):
    r = templates(settings)
    names = ["views_product_90d", "deposit_balance", "is_salary_customer", "age", "complaints_365d", "product_code"]
    contrib = [0.8, 0.3, 0.5, -0.2, 0.9, 0.1]
    values = [5.0, 80000.0, 0.0, 40.0, 2.0, "FD"]
    codes, zh, en = explain(names, contrib, values, r["templates"], r["generic"], 2, 0.0)
    # complaints_365d has no template (never read out); is_salary_customer is false: not a reason
    assert codes == ["views_product_90d", "deposit_balance"]
    assert zh == "您最近在手机银行多次浏览了该产品。您在我行的存款余额较为充裕，可以考虑进一步规划资金。"
    assert en == ("You recently viewed this product several times in our app. "
                  "Your deposits with us leave room to plan your money further.")
    codes, zh, en = explain(names, contrib, [5.0, 80000.0, 1.0, 40.0, 2.0, "FD"], r["templates"], r["generic"], 3)
    assert codes == ["views_product_90d", "is_salary_customer", "deposit_balance"]
    assert en.split(". ")[1] == "Your salary is paid into your account with us, so your income is steady"
    # the product's general popularity (secondary) comes after the customer's own reasons
    big = [0.8, 0.3, 0.5, -0.2, 0.9, 2.0]
    assert explain(names, big, values, r["templates"], r["generic"], 2)[0] == ["views_product_90d", "deposit_balance"]
    codes, zh, en = explain(names, big, values, r["templates"], r["generic"], 3)
    assert codes[2] == "product_code" and en.endswith("This product is popular with our customers.")
    # only positive contributions: none -> the generic sentence, no codes
    codes, zh, en = explain(names, [-0.1, 0.0, -0.5, -0.2, -0.9, -0.1], values, r["templates"], r["generic"], 2)
    assert (codes, zh, en) == ([], r["generic"]["zh"], r["generic"]["en"])
    # two features with one sentence: both codes, the sentence once
    codes, zh, en = explain(["views_product_90d", "views_product_30d"], [0.5, 0.4], [3.0, 2.0], r["templates"],
                            r["generic"], 2)
    assert codes == ["views_product_90d", "views_product_30d"] and zh == "您最近在手机银行多次浏览了该产品。"


@pytest.mark.unit
def test_template_lookup_exact_then_longest_prefix(settings):
    t = templates(settings)["templates"]
    assert template_key("views_product_30d", t) == "views_product_*"
    assert template_key("holds_same_family", t) == "holds_same_family"
    assert template_key("holds_fund", t) == "holds_*"
    assert template_key("gender", t) is None


@pytest.mark.unit
def test_scoring_conf_is_validated(tmp_path):
    for name in ("base.yaml", "profile.yaml", "tags.yaml", "scoring.yaml"):
        shutil.copy(REPO_CONF / name, tmp_path / name)
    (tmp_path / "local.yaml").write_text("scoring: {top_n: 0}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"scoring\.top_n"):
        load_settings(tmp_path, environ={})
    (tmp_path / "local.yaml").write_text("scoring: {suitability: {unassessed_max_risk: R9}}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="unassessed_max_risk"):
        load_settings(tmp_path, environ={})
    (tmp_path / "local.yaml").write_text("scoring: {attrition: {bands: {medium: 0.7, high: 0.5}}}\n",
                                         encoding="utf-8")
    with pytest.raises(ConfigError, match="must be below"):
        load_settings(tmp_path, environ={})
    (tmp_path / "local.yaml").write_text(
        "scoring: {reasons: {templates: {viewz_product_90d: {zh: 浏览过, en: viewed it}}}}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="viewz_product_90d.*matches no feature"):
        load_settings(tmp_path, environ={})
    for bad in ("[]", "['  ']"):
        (tmp_path / "local.yaml").write_text(f"scoring: {{eligibility: {{kyc_valid_statuses: {bad}}}}}\n",
                                             encoding="utf-8")
        with pytest.raises(ConfigError, match="kyc_valid_statuses"):
            load_settings(tmp_path, environ={})
    (tmp_path / "local.yaml").write_text("scoring: {eligibility: {kyc_valid_statuses: [' Verified ', RENEWED, "
                                         "verified]}}\n", encoding="utf-8")
    assert load_settings(tmp_path, environ={}).scoring.eligibility.kyc_valid_statuses == ["verified", "renewed"]
    (tmp_path / "local.yaml").unlink()
    assert load_settings(tmp_path, environ={}).scoring.eligibility.kyc_valid_statuses == ["verified"]


# ---------------------------------------------------------------------------------------
# the step, in the engine, with the champion

def expected_top(spark, world, top_n: int, values: dict[str, float] | None = None):
    """What the step must produce, computed here in pandas from the eligible candidates:
    ranked by raw score, or with ``values`` (product -> weight, 1 if absent) by expected
    value (calibrated score x weight), ties by raw score."""
    annotated, _ = annotate(spark, world["settings"])
    assert "n_products" not in annotated.columns  # narrow: the step joins the model's features itself
    el = with_profile(annotated.where(F.col("exclusion_reason").isNull()), profile_df(spark)).toPandas()
    el["raw_score"] = world["booster"].predict(prepare(el, world["spec"]))
    el["score"] = world["calibration"].apply(el["raw_score"]) if world["calibration"] is not None else np.nan
    el["expected_value"] = el["score"] * el["product_code"].map(lambda p: (values or {}).get(p, 1.0))
    order = ["expected_value", "raw_score"] if values else ["raw_score"]
    el = el.sort_values(["customer_id", *order, "product_code"], ascending=[True, *[False] * len(order), True])
    el["rank"] = el.groupby("customer_id").cumcount() + 1
    return el[el["rank"] <= top_n].reset_index(drop=True)


def test_score_step_ranks_top_n_in_the_engine_with_reasons(spark, world, scored):
    metrics, recs = scored
    got = recs.orderBy("customer_id", "rank").toPandas()
    exp = expected_top(spark, world, 2)
    assert list(zip(got.customer_id, got["rank"], got.product_code)) == \
        list(zip(exp.customer_id, exp["rank"], exp.product_code))
    assert np.allclose(got.raw_score.to_numpy(), exp.raw_score.to_numpy(), rtol=0, atol=1e-12)
    # score: the champion's calibration map applied in the engine to the raw score
    assert np.allclose(got.score.to_numpy(), exp.score.to_numpy(), rtol=0, atol=1e-12)
    assert len(world["calibration"].x) >= 3 and ((got.score >= 0) & (got.score <= 1)).all()
    assert (got.score.to_numpy() < got.raw_score.to_numpy()).any()  # the raw score overstated adoption
    assert metrics["calibration"].startswith(f"isotonic map of model next_best_product version {world['version']}")
    # every product's value is 1 (the default): expected value = score, the order the raw score's
    assert np.allclose(got.expected_value.to_numpy(), got.score.to_numpy(), rtol=0, atol=1e-12)
    assert metrics["ranking"] == ("expected_value = score x product_value; every product has the same value (1), "
                                  "so the order is the raw score's") and metrics["product_value_unknown_codes"] == []
    assert set(got.customer_id) == {"C1", "C2", "C3", "C4", "C6"}  # C5: contact limit
    assert (got.model_version == world["version"]).all() and (got.as_of_date == AS_OF).all()
    # reasons: a templated feature's effect is its pred_contrib averaged over the day's
    # recommendations of the same product where it holds (here the sample is every row)
    r = templates(world["settings"])
    names = world["spec"].columns
    frame = prepare(exp, world["spec"])
    contrib = world["booster"].predict(frame, pred_contrib=True)[:, :len(names)]
    raw = frame.astype(object).where(frame.notna(), None).to_numpy()
    tcols = [(j, n, template_key(n, r["templates"])) for j, n in enumerate(names)
             if template_key(n, r["templates"])]
    assert {n for _, n, _ in tcols} >= {"views_product_90d", "holds_same_family", "risk_gap"}
    for i, row in got.iterrows():
        effects, values = [], []
        for j, n, key in tcols:
            req = r["templates"][key].get("requires", "any")
            same = [m for m in range(len(exp))
                    if exp.product_code[m] == exp.product_code[i] and _holds(raw[m, j], req)]
            effects.append(float(np.mean(contrib[same, j])) if same else -np.inf)
            values.append(raw[i, j])
        codes, zh, en = explain([n for _, n, _ in tcols], effects, values,
                                {n: r["templates"][key] for _, n, key in tcols}, r["generic"],
                                r["per_recommendation"], r["min_contribution"])
        assert (list(row.reason_codes), row.reason_text_zh, row.reason_text_en) == (codes, zh, en)
    assert sum(len(c) > 0 for c in got.reason_codes) >= 3  # most rows have a reason of their own
    c4 = got[(got.customer_id == "C4") & (got.product_code == "BF")].iloc[0]  # viewed 5 times
    assert c4["rank"] == 1 and "views_product_90d" in list(c4.reason_codes)
    assert "您最近在手机银行多次浏览了该产品。" in c4.reason_text_zh
    assert metrics["excluded_by_reason"]["contact_limit"] == 5 and metrics["eligible"] == 11
    assert metrics["excluded_by_reason"]["kyc_not_valid"] == 10  # C7 and C8: every candidate
    assert (metrics["recommendations"], metrics["customers_with_recommendation"],
            metrics["customers_without_recommendation"]) == (len(exp), 5, 3)
    assert metrics["model_version"] == world["version"] and metrics["model_kind"] == "binary"
    assert metrics["attrition"]["model"] == "attrition_risk" and "no 'champion'" in metrics["attrition"]["skipped"]


@pytest.mark.unit
def test_reason_effects_average_where_the_feature_holds_and_fall_back_to_all_products():
    templates = {"x": {"zh": "甲", "en": "X."}, "y": {"zh": "乙", "en": "Y."},
                 "z": {"zh": "丙", "en": "Z.", "secondary": True}}
    generic = {"zh": "通用", "en": "Generic."}
    products = ["A", "A", "B"]
    contrib = np.array([[0.5, 0.9, 0.2], [0.1, -0.2, 0.2], [0.0, 0.4, 0.9]])
    holds = np.array([[True, False, True], [True, True, True], [False, True, True]])
    eff = reason_effects(products, contrib, holds)
    np.testing.assert_allclose(eff["A"], [0.3, -0.2, 0.2])  # y held only in row 2 for A
    np.testing.assert_allclose(eff["B"][1:], [0.4, 0.9])
    assert np.isnan(eff["B"][0])
    np.testing.assert_allclose(eff["*"], [0.3, 0.1, 1.3 / 3])
    out = explain_rows(["A", "A", "B", "B"], np.array([[True, True, True], [False, True, False],
                                                       [True, False, True], [False, False, False]]),
                       eff, ["x", "y", "z"], templates, generic, 2, 0.0)
    assert out[0] == (["x", "z"], "甲丙", "X. Z.")  # y's effect for A is negative; z is secondary
    assert out[1] == ([], "通用", "Generic.")
    assert out[2] == (["x", "z"], "甲丙", "X. Z.")  # B never holds x: the all-products effect
    assert out[3] == ([], "通用", "Generic.")


def test_score_step_replaces_only_its_partition(spark, world, scored):
    s = world["settings"]
    path = lake.table_path(s.lake, "gold", "recommendations")
    other = date(2026, 5, 31)
    lake.write_partition(lake.read(spark, path).where(score.partition(AS_OF)).limit(1)
                         .withColumn("as_of_date", F.lit(other.isoformat()).cast("date")), path, "as_of_date",
                         score.partition(other), schema=score.RECOMMENDATIONS_SCHEMA)
    score.run(spark, s, AS_OF)
    counts = {r.as_of_date: r["count"] for r in lake.read(spark, path).groupBy("as_of_date").count().collect()}
    assert counts == {other: 1, AS_OF: scored[0]["recommendations"]}


def test_a_champion_without_calibration_gets_no_guessed_score_and_lists_run_to_seven(spark, settings,
                                                                                       tmp_path_factory, caplog):
    """A champion registered before calibration existed: ranks and raw scores as usual,
    ``score`` null (no map is guessed), the reason logged and in the summary; with the
    default top_n (7) every eligible product of a customer is kept (at most 5 here)."""
    import logging

    w = make_world(settings, spark, tmp_path_factory.mktemp("uncalibrated"), None, calibrated=False)
    assert w["settings"].scoring.top_n == 7
    with caplog.at_level(logging.WARNING, logger="jobs.score"):
        metrics = score.run(spark, w["settings"], AS_OF)
    got = lake.read(spark, lake.table_path(w["settings"].lake, "gold", "recommendations")) \
        .where(score.partition(AS_OF)).orderBy("customer_id", "rank").toPandas()
    exp = expected_top(spark, w, 7)
    assert list(zip(got.customer_id, got["rank"], got.product_code)) == \
        list(zip(exp.customer_id, exp["rank"], exp.product_code))
    assert len(got) == 11 and got.groupby("customer_id")["rank"].max().max() == 4  # every eligible one (C4: 4)
    assert np.allclose(got.raw_score.to_numpy(), exp.raw_score.to_numpy(), rtol=0, atol=1e-12)
    assert got.score.isna().all() and got.expected_value.isna().all()
    assert metrics["calibration"].startswith("none: model next_best_product version 1 has no calibration")
    assert metrics["ranking"].startswith("raw_score: the champion has no calibration")
    assert any("not calibrated" in r.getMessage() and "no calibration" in r.getMessage() for r in caplog.records)


def test_offers_ranked_by_expected_value_and_older_partitions_still_read(spark, settings, tmp_path_factory,
                                                                          caplog):
    """scoring.product_value: expected_value = calibrated score x the product's weight orders
    each customer's offers (ties by raw score). An unknown code is warned about once. A
    partition written before expected_value existed stays readable (null there)."""
    import logging

    from pyspark.sql import types as T

    w = make_world(settings, spark, tmp_path_factory.mktemp("valued"), 7, calibrated=True)
    s = w["settings"]
    path = lake.table_path(s.lake, "gold", "recommendations")
    old_day = date(2026, 5, 31)
    old_schema = T.StructType([f for f in score.RECOMMENDATIONS_SCHEMA.fields
                               if f.name not in ("expected_value", "holdout")])
    old_row = spark.createDataFrame([("C1", old_day, 1, "SV", 0.2, 0.4, "理由", "reason", "0")],
                                    "customer_id string, as_of_date date, rank int, product_code string, score double, "
                                    "raw_score double, reason_text_zh string, reason_text_en string, "
                                    "model_version string").withColumn("reason_codes", F.array(F.lit("age")))
    lake.write_partition(old_row, path, "as_of_date", score.partition(old_day), schema=old_schema)
    values = {"CC": 4.0, "BF": 0.0, "GONE": 3.0}
    s = s.model_copy(update={"scoring": s.scoring.model_copy(update={
        "product_value": s.scoring.product_value.model_copy(update={"by_product": values})})})
    with caplog.at_level(logging.WARNING, logger="jobs.score"):
        metrics = score.run(spark, s, AS_OF)
    warned = [r.getMessage() for r in caplog.records if "product_value" in r.getMessage()]
    assert warned == [("conf/scoring.yaml scoring.product_value.by_product: 1 product code(s) not in the "
                       "catalogue, ignored: GONE")]
    assert metrics["product_value_unknown_codes"] == ["GONE"]
    assert metrics["ranking"] == ("expected_value = score x product_value (default 1, 3 products weighted), "
                                  "ties by raw_score, then product_code")
    from rich.console import Console

    from c360.cli import _score_detail_tables

    console = Console(record=True, width=300)
    for t in _score_detail_tables(metrics):
        console.print(t)
    text = " ".join(console.export_text().split())  # the caption wraps at the table's width
    assert "ranking: expected_value = score x product_value" in text  # the run summary says so
    table = lake.read(spark, path)
    got = table.where(score.partition(AS_OF)).orderBy("customer_id", "rank").toPandas()
    exp = expected_top(spark, w, 7, values)
    assert list(zip(got.customer_id, got["rank"], got.product_code)) == \
        list(zip(exp.customer_id, exp["rank"], exp.product_code))
    assert np.allclose(got.expected_value.to_numpy(), exp.expected_value.to_numpy(), rtol=0, atol=1e-12)
    weight = got.product_code.map(lambda p: values.get(p, 1.0))
    assert np.allclose(got.expected_value.to_numpy(), (got.score * weight).to_numpy(), rtol=0, atol=1e-12)
    # the weights changed the order somewhere (else this test would prove nothing)
    by_raw = expected_top(spark, w, 7)
    assert list(zip(by_raw.customer_id, by_raw.product_code)) != list(zip(exp.customer_id, exp.product_code))
    # the partition written before expected_value existed: still read, expected_value null
    old = table.where(score.partition(old_day)).collect()
    assert [(r.customer_id, r.product_code, r.score, r.expected_value, r.holdout) for r in old] == \
        [("C1", "SV", 0.2, None, None)]


def test_equal_values_keep_the_raw_score_order_whatever_the_ties_of_the_map(spark):
    """The calibration map is monotone but flat in places: expected values tie where raw
    scores do not. Ranked by (expected value, raw score), equal weights give the raw-score
    order exactly; a higher weight moves a product up."""
    from models.calibration import Calibration, calibrated
    from models.scoring import expected_value, product_value

    cal = Calibration(x=(0.0, 0.3, 0.6, 1.0), y=(0.0, 0.1, 0.1, 0.5))  # flat from 0.3 to 0.6
    rows = [("C1", "A", 0.35), ("C1", "B", 0.55), ("C1", "C", 0.45), ("C1", "D", 0.9), ("C1", "E", 0.1),
            ("C2", "A", 0.5), ("C2", "B", 0.5), ("C2", "C", 0.2)]
    df = spark.createDataFrame(rows, "customer_id string, product_code string, raw_score double")

    def ranked(weights: dict, default: float = 1.0):
        ev = expected_value(calibrated(F.col("raw_score"), cal), product_value(F.col("product_code"), weights, default))
        out = score.rank_top(df.withColumn("ev", ev), 10, ["ev", "raw_score"])
        return sorted((r.customer_id, r["rank"], r.product_code) for r in out.collect())

    by_raw = sorted((r.customer_id, r["rank"], r.product_code) for r in score.rank_top(df, 10, "raw_score").collect())
    assert by_raw[:5] == [("C1", 1, "D"), ("C1", 2, "B"), ("C1", 3, "C"), ("C1", 4, "A"), ("C1", 5, "E")]
    assert ranked({}) == ranked({"A": 1.0, "B": 1.0}) == ranked({}, 2.5) == by_raw
    # C (0.1 x 5) passes D (0.4 x 1); a weight of 0 sends B last
    got = ranked({"C": 5.0, "B": 0.0})
    assert [p for c, _, p in got if c == "C1"] == ["C", "D", "A", "E", "B"]
    evs = {r.product_code: r.ev for r in df.where("customer_id = 'C1'").select(
        "product_code", product_value(F.col("product_code"), {"C": 3.0}, 2.0).alias("ev")).collect()}
    assert evs == {"A": 2.0, "B": 2.0, "C": 3.0, "D": 2.0, "E": 2.0}
    nulls = df.limit(1).select(expected_value(F.lit(None).cast("double"), F.lit(2.0)).alias("ev")).first().ev
    assert nulls is None


def test_holdout_is_a_stable_hash_share_of_the_customers(spark):
    """About holdout_share of ~10k ids are held out; the same ones on every run (whatever the
    partitioning), other ones with another salt; share 0 holds out nobody."""
    from models.scoring import holdout

    n = 10_000
    ids = spark.range(n).select(F.format_string("C%07d", F.col("id")).alias("customer_id"))

    def held(df, share=0.05, salt="c360-holdout"):
        return {r.customer_id for r in df.where(holdout(F.col("customer_id"), share, salt)).collect()}

    first = held(ids)
    assert abs(len(first) - 0.05 * n) <= 3 * (n * 0.05 * 0.95) ** 0.5  # 500 +- 65
    assert held(ids.repartition(7).orderBy(F.desc("customer_id"))) == first  # another run, another layout
    assert held(ids.where(F.col("customer_id") < "C0005000")) == {c for c in first if c < "C0005000"}  # per id
    other = held(ids, salt="campaign-2027")
    assert abs(len(other) - 0.05 * n) <= 3 * (n * 0.05 * 0.95) ** 0.5 and len(first & other) < 0.2 * len(first)
    bigger = held(ids, share=0.2)
    assert first <= bigger and abs(len(bigger) - 0.2 * n) <= 3 * (n * 0.2 * 0.8) ** 0.5  # nested shares
    assert held(ids, share=0.0) == set()
    nulls = spark.createDataFrame([(None,)], "customer_id string")
    assert nulls.select(holdout(F.col("customer_id"), 0.49, "x").alias("h")).first().h is False


def test_the_score_step_flags_the_holdout_and_keeps_its_rows(spark, settings, tmp_path_factory):
    """gold/recommendations: holdout = the hash rule per customer (all of a customer's rows
    alike), the held-out rows kept; the run summary counts them."""
    from models.scoring import holdout

    w = make_world(settings, spark, tmp_path_factory.mktemp("holdout"), 7, calibrated=True)
    s = w["settings"]
    s = s.model_copy(update={"scoring": s.scoring.model_copy(update={"holdout_share": 0.45,
                                                                     "holdout_salt": "test-salt"})})
    metrics = score.run(spark, s, AS_OF)
    got = lake.read(spark, lake.table_path(s.lake, "gold", "recommendations")).where(score.partition(AS_OF))
    rule = {r.customer_id: r.h for r in profile_df(spark).select(
        "customer_id", holdout(F.col("customer_id"), 0.45, "test-salt").alias("h")).collect()}
    rows = got.select("customer_id", "holdout").collect()
    assert len(rows) == 11 and all(r.holdout is rule[r.customer_id] for r in rows)  # every eligible row kept
    held = {r.customer_id for r in rows if r.holdout}
    assert held and held != {r.customer_id for r in rows}  # with 0.45 of 5 customers: some in, some out
    assert metrics["holdout"] == {"share": 0.45, "salt": "test-salt", "customers": len(held),
                                  "recommendations": sum(r.holdout for r in rows)}


def test_product_values_are_validated(tmp_path):
    for name in ("base.yaml", "profile.yaml", "tags.yaml", "scoring.yaml"):
        shutil.copy(REPO_CONF / name, tmp_path / name)
    s = load_settings(tmp_path, environ={})
    assert (s.scoring.product_value.default, s.scoring.product_value.by_product) == (1.0, {})
    for bad, message in (("{default: -1}", "product_value.default"), ("{by_product: {CC: -0.5}}", "CC: -0.5"),
                         ("{by_product: {CC: .nan}}", "non-negative"), ("{by_product: {CC: lots}}", "by_product.CC"),
                         ("{weights: {CC: 1}}", "weights")):
        (tmp_path / "local.yaml").write_text(f"scoring: {{product_value: {bad}}}\n", encoding="utf-8")
        with pytest.raises(ConfigError, match=message):
            load_settings(tmp_path, environ={})
    (tmp_path / "local.yaml").write_text("scoring: {product_value: {default: 0.5, by_product: {CC: 2, SV: 0}}}\n",
                                         encoding="utf-8")
    pv = load_settings(tmp_path, environ={}).scoring.product_value
    assert (pv.default, pv.by_product, pv.uniform) == (0.5, {"CC": 2.0, "SV": 0.0}, False)
    (tmp_path / "local.yaml").unlink()
    assert load_settings(tmp_path, environ={}).scoring.holdout_share == 0.05
    for bad in ("{holdout_share: 0.5}", "{holdout_share: -0.01}", "{holdout_salt: ''}"):
        (tmp_path / "local.yaml").write_text(f"scoring: {bad}\n", encoding="utf-8")
        with pytest.raises(ConfigError, match="holdout_s"):
            load_settings(tmp_path, environ={})


def test_export_top_n_cannot_exceed_what_gold_keeps(tmp_path):
    for name in ("base.yaml", "profile.yaml", "tags.yaml", "scoring.yaml"):
        shutil.copy(REPO_CONF / name, tmp_path / name)
    s = load_settings(tmp_path, environ={})
    assert (s.scoring.top_n, s.export.top_n) == (7, 3)
    (tmp_path / "local.yaml").write_text("scoring: {top_n: 2}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"export\.top_n \(3\) is more than scoring\.top_n \(2\)"):
        load_settings(tmp_path, environ={})
    (tmp_path / "local.yaml").write_text("export: {top_n: 0}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"export\.top_n"):
        load_settings(tmp_path, environ={})


def test_attrition_scored_only_with_a_champion(spark, world):
    s = world["settings"]
    profile = score.profile_at(spark, s, AS_OF)
    assert "no 'champion'" in score._score_attrition(spark, s, profile, s.scoring, "nope", AS_OF)["skipped"]
    booster, spec = train_tiny("attrition")
    version = register_champion(s, "attrition_test", booster, spec)
    conf = s.scoring
    m = score._score_attrition(spark, s, profile, conf, "attrition_test", AS_OF)
    got = lake.read(spark, lake.table_path(s.lake, "gold", "attrition_risk")).toPandas().sort_values("customer_id")
    exp = booster.predict(prepare(pd.DataFrame(
        {"deposit_balance": [c[3] for c in CUSTOMERS], "age": [c[1] for c in CUSTOMERS]}), spec))
    assert np.allclose(got.risk_score.to_numpy(), exp, atol=1e-12)
    bands = conf.attrition.bands
    assert list(got.risk_band) == ["high" if p >= bands.high else "medium" if p >= bands.medium else "low"
                                   for p in exp]
    assert (got.model_version == version).all() and m["customers"] == len(CUSTOMERS) == 8
    assert sum(m["by_band"].values()) == 8


def test_no_pii_in_gold_tables_written(spark, world, scored):
    from jobs.export import is_pii_column

    for name in ("recommendations", "attrition_risk"):
        path = lake.table_path(world["settings"].lake, "gold", name)
        if lake.exists(path):
            cols = lake.read(spark, path).columns
            assert not [c for c in cols if is_pii_column(c)], (name, cols)
    assert sorted(lake.read(spark, lake.table_path(world["settings"].lake, "gold", "recommendations")).columns) == \
        sorted(f.name for f in score.RECOMMENDATIONS_SCHEMA.fields)


@pytest.mark.unit
def test_model_names_follow_models_yaml_unless_overridden(settings):
    assert score.model_names(settings) == ("next_best_product", "attrition_risk")
    s = settings.model_copy(update={"scoring": settings.scoring.model_copy(update={"model": "nbp_b"})})
    assert score.model_names(s) == ("nbp_b", "attrition_risk")


@pytest.mark.unit
def test_holds_matrix_answers_as_holds_on_the_raw_values():
    import pyarrow as pa

    from models.frame import matrix
    from models.scoring import holds_matrix

    spec = FeatureSpec(numeric=["views", "risk_gap", "flag"], categorical={"family": ["fund", "savings"]})
    raw = {"views": [3, 0, None, -1], "risk_gap": [0.0, None, 2.5, -1.0], "flag": [True, False, None, True],
           "family": ["fund", None, "savings", "gold"]}  # gold: not a category of the model
    values = matrix(pa.RecordBatch.from_pydict(raw), spec)
    cats = [False, False, False, True]
    for req in ("any", "present", "positive"):
        got = holds_matrix(values, [req] * 4, cats)
        exp = [[_holds(raw[c][i], req) if not (c == "family" and raw[c][i] == "gold") else req == "any"
                for c in spec.columns] for i in range(4)]
        assert got.tolist() == exp, req
    assert holds_matrix(values, ["positive"] * 4, cats)[0].tolist() == [True, False, True, True]


@pytest.mark.unit
def test_sample_rate_takes_enough_customer_buckets_for_the_sample():
    assert score.sample_rate(2_972_375, 5000) == 2  # 1.68 per mille, rounded up
    assert score.sample_rate(5_000_000, 5000) == 1
    assert score.sample_rate(100, 5000) == 1000 and score.sample_rate(0, 5000) == 1000
    assert score.sample_rate(10_000, 5000) == 500


def test_left_join_keeps_every_big_row_once_with_the_small_columns_after(spark):
    """features.candidates.left_join: a left join written as a right join (the small side
    is the one held in memory): every row of the big side once, in its column order, the
    small side's other columns after, null where no key matches."""
    from features.candidates import left_join

    big = spark.createDataFrame([("c1", "P1", 1), ("c1", "P2", 2), ("c2", "P1", 3)],
                                "customer_id string, product_code string, n int")
    small = spark.createDataFrame([("P1", "c1", True, 7)], "product_code string, customer_id string, seen boolean, k int")
    out = left_join(big, small, ["customer_id", "product_code"])
    assert out.columns == ["customer_id", "product_code", "n", "seen", "k"]
    assert sorted(tuple(r) for r in out.collect()) == [
        ("c1", "P1", 1, True, 7), ("c1", "P2", 2, None, None), ("c2", "P1", 3, None, None)]


def test_a_partition_with_a_new_column_evolves_a_table_with_an_array_column(spark, tmp_path):
    """lake.write_partition adds a column the table lacks (gold/recommendations gaining
    expected_value and holdout): older partitions read null in it, the new one keeps its
    values. (Sail 0.7 ignores mergeSchema, silently, on a table with an array column: the
    new column used to be dropped.)"""
    path = str(tmp_path / "t")
    old = spark.createDataFrame([("C1", date(2026, 5, 31), 0.5)], "customer_id string, d date, score double") \
        .withColumn("codes", F.array(F.lit("age")))
    lake.write_partition(old, path, "d", "d = DATE'2026-05-31'")
    new = spark.createDataFrame([("C2", date(2026, 6, 30), 0.7, 1.4, True)],
                                "customer_id string, d date, score double, value double, flag boolean") \
        .withColumn("codes", F.array(F.lit("tenure")))
    lake.write_partition(new, path, "d", "d = DATE'2026-06-30'")
    got = {r.customer_id: (r.score, r.value, r.flag, list(r.codes)) for r in lake.read(spark, path).collect()}
    assert got == {"C1": (0.5, None, None, ["age"]), "C2": (0.7, 1.4, True, ["tenure"])}
    lake.write_partition(new.withColumn("value", F.lit(2.0)), path, "d", "d = DATE'2026-06-30'")  # idempotent
    assert sorted((r.customer_id, r.value) for r in lake.read(spark, path).collect()) == [("C1", None), ("C2", 2.0)]

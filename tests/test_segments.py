"""features.segments, features.personas, jobs.segments and the report: known answers."""

from __future__ import annotations

import json
import re
from datetime import date, datetime

import numpy as np
import pytest
from pyspark.sql import functions as F
from pyspark.sql import types as T

from c360 import lake
from c360.settings import DEFAULT_CONF_DIR, ConfigError, Segments, load_settings
from features.personas import distinguishing, match_personas, persona_descriptions, persona_names
from features.registry import REGISTRY
from features.segments import (ClusterModel, assign_clusters, choose_k, fit, lifecycle_stage, predict_numpy,
                               segment_kpis, segment_migration, training_sample, value_tier)

AS_OF = date(2026, 6, 30)
PREV = date(2026, 5, 31)
SETTINGS = load_settings(environ={})
CONF = SETTINGS.segments.as_dict()
PII = re.compile(r"full_name|national_id|phone|email|birth_date|_token$")

TYPES = {"double": T.DoubleType(), "bigint": T.LongType(), "string": T.StringType(), "boolean": T.BooleanType(),
         "date": T.DateType()}
C360_SCHEMA = T.StructType(
    [T.StructField("customer_id", T.StringType()), T.StructField("as_of_date", T.DateType())]
    + [T.StructField(f.name, TYPES[f.dtype]) for f in REGISTRY.values()])


def c360(spark, rows: list[dict], as_of: date = AS_OF):
    """A gold/customer_360-shaped DataFrame: every feature, its fill value unless given."""
    data = []
    for r in rows:
        base = {f.name: f.fill for f in REGISTRY.values()}
        base.update(as_of_date=as_of, **r)
        data.append(tuple(base.get(f.name) for f in C360_SCHEMA.fields))
    return spark.createDataFrame(data, C360_SCHEMA).withColumn("tags", F.array().cast("array<string>"))


# ---------------------------------------------------------------------------------------
# value tier and lifecycle stage

def test_value_tier_rules(spark):
    rows = [
        dict(customer_id="HE_AUM", total_aum=500_000.0, annual_income=0.0),             # boundary: high end
        dict(customer_id="HE_INC", total_aum=100.0, annual_income=1_000_000.0),         # income alone
        dict(customer_id="MASS", total_aum=499_999.0, annual_income=999_999.0),
        dict(customer_id="LT", total_aum=9_999.0, txn_count_90d=3, logins_90d=2),        # poor and inactive
        dict(customer_id="ACTIVE", total_aum=9_999.0, txn_count_90d=4, logins_90d=0),    # poor but active: mass
        dict(customer_id="APP", total_aum=500.0, txn_count_90d=0, logins_90d=3),         # logs in: mass
        dict(customer_id="TENK", total_aum=10_000.0, txn_count_90d=0, logins_90d=0),     # not below 10k: mass
        dict(customer_id="NULLS", total_aum=None, annual_income=None, txn_count_90d=None, logins_90d=None),
    ]
    got = {r.customer_id: r.t for r in c360(spark, rows).select("customer_id", value_tier(CONF["value_tier"])
                                                                   .alias("t")).collect()}
    assert got == {"HE_AUM": "high_end", "HE_INC": "high_end", "MASS": "mass", "LT": "long_tail",
                   "ACTIVE": "mass", "APP": "mass", "TENK": "mass", "NULLS": "long_tail"}


def test_lifecycle_rules_first_match_wins(spark):
    held = dict(n_accounts=2, tenure_days=2000, txn_count_90d=10, logins_90d=3)
    rows = [
        dict(customer_id="CHURNED", **{**held, "n_accounts": 0, "txn_count_90d": 0, "logins_90d": 0}),
        dict(customer_id="CLOSED_NEW", **{**held, "n_accounts": 0, "tenure_days": 30}),   # churned before new
        dict(customer_id="DORMANT", **{**held, "txn_count_90d": 0, "logins_90d": 0, "tenure_days": 30}),
        dict(customer_id="NEW", **{**held, "tenure_days": 179, "aum_growth_90d": -0.5}),    # new before declining
        dict(customer_id="DECL_AUM", **{**held, "aum_growth_90d": -0.2}),
        dict(customer_id="DECL_SPEND", **{**held, "aum_growth_90d": 0.5, "spend_trend_90d": 0.59}),
        dict(customer_id="GROW_AUM", **{**held, "aum_growth_90d": 0.1, "spend_trend_90d": 0.6}),
        dict(customer_id="GROW_PRODUCT", **{**held, "n_products_opened_365d": 1}),
        dict(customer_id="MATURE", **{**held, "tenure_days": 180, "aum_growth_90d": 0.05, "spend_trend_90d": 1.0}),
        dict(customer_id="MATURE_NULLS", **held),                        # null growth and trend: mature
    ]
    lc = CONF["lifecycle"]
    got = {r.customer_id: r.s for r in c360(spark, rows).select(
        "customer_id", lifecycle_stage(lc["rules"], lc["default"]).alias("s")).collect()}
    assert got == {"CHURNED": "churned", "CLOSED_NEW": "churned", "DORMANT": "dormant", "NEW": "new",
                   "DECL_AUM": "declining", "DECL_SPEND": "declining", "GROW_AUM": "growing",
                   "GROW_PRODUCT": "growing", "MATURE": "mature", "MATURE_NULLS": "mature"}


# ---------------------------------------------------------------------------------------
# clusters

FEATURES = [dict(name="logins_30d", log1p=True, fill=0.0), dict(name="wealth_aum", log1p=True, fill=0.0),
            dict(name="age", log1p=False, fill=40.0), dict(name="channel_share_branch_90d", log1p=False, fill=0.0)]
BLOBS = {  # raw feature centres: young digital, senior branch users, wealthy middle-aged
    "A": dict(logins_30d=20, wealth_aum=0.0, age=25, channel_share_branch_90d=0.05),
    "B": dict(logins_30d=0, wealth_aum=5_000.0, age=68, channel_share_branch_90d=0.8),
    "C": dict(logins_30d=4, wealth_aum=800_000.0, age=45, channel_share_branch_90d=0.3),
    "D": dict(logins_30d=40, wealth_aum=3_000_000.0, age=30, channel_share_branch_90d=0.0),
}


def blob_rows(sizes: dict[str, int], seed: int, jitter: float = 0.05) -> list[dict]:
    """Customers around the blob centres (ids stable across calls: <blob><n>)."""
    rng = np.random.default_rng(seed)
    rows = []
    for blob, n in sizes.items():
        c = BLOBS[blob]
        for i in range(n):
            rows.append(dict(
                customer_id=f"{blob}{i:04d}",
                logins_30d=int(max(0, round(c["logins_30d"] * (1 + rng.normal(0, jitter)) + rng.integers(0, 2)))),
                wealth_aum=float(max(0.0, c["wealth_aum"] * (1 + rng.normal(0, jitter)))),
                age=int(round(c["age"] + rng.normal(0, 2))),
                channel_share_branch_90d=float(np.clip(c["channel_share_branch_90d"] + rng.normal(0, 0.03), 0, 1)),
                total_aum=float(c["wealth_aum"] + 20_000), annual_income=200_000.0, n_accounts=2, tenure_days=1000,
                txn_count_90d=10, logins_90d=3 * int(c["logins_30d"]), nps_latest=8.0 if blob == "C" else 6.0,
                complaints_365d=1 if blob == "B" else 0))
    return rows


def transformed_numpy(rows: list[dict]) -> np.ndarray:
    x = np.array([[r.get(f["name"]) if r.get(f["name"]) is not None else f["fill"] for f in FEATURES]
                  for r in rows], dtype=float)
    for j, f in enumerate(FEATURES):
        if f["log1p"]:
            x[:, j] = np.sign(x[:, j]) * np.log1p(np.abs(x[:, j]))
    return x


@pytest.mark.unit
def test_choose_k_finds_three_well_separated_blobs():
    rng = np.random.default_rng(3)
    centres = np.array([[0, 0, 0, 0, 0], [8, 8, 0, 0, 0], [0, 8, 8, 8, 0]], dtype=float)
    z = np.vstack([c + rng.normal(0, 0.7, size=(150, 5)) for c in centres])
    k, scores, model = choose_k(z, dict(k_min=2, k_max=6, seed=42, silhouette_rows=200, n_init=4))
    assert k == 3 and sorted(scores) == [2, 3, 4, 5, 6]
    assert scores[3] == max(scores.values()) and scores[3] > 0.6
    assert len(set(model.labels_)) == 3
    # the range is respected even when the data would prefer another k
    k4, _, _ = choose_k(z, dict(k_min=4, k_max=6, seed=42, silhouette_rows=200, n_init=4))
    assert 4 <= k4 <= 6


def test_assignment_in_spark_equals_sklearn_predict(spark):
    from sklearn.cluster import KMeans

    rows = blob_rows({"A": 40, "B": 40, "C": 40}, seed=1, jitter=0.4)
    rows[0]["age"] = None  # nulls take the configured fill in both
    rows[1]["channel_share_branch_90d"] = None
    x = transformed_numpy(rows)
    means, stds = x.mean(axis=0), x.std(axis=0)
    z = (x - means) / stds
    km = KMeans(n_clusters=4, n_init=3, random_state=0).fit(z)
    model = ClusterModel(features=[f["name"] for f in FEATURES], log1p=[f["log1p"] for f in FEATURES],
                         fills=[f["fill"] for f in FEATURES], means=means.tolist(), stds=stds.tolist(),
                         centroids=km.cluster_centers_.tolist(), k=4)
    got = {r.customer_id: r.cluster_id for r in assign_clusters(c360(spark, rows), model)
           .select("customer_id", "cluster_id").collect()}
    expected = km.predict(z)
    assert [got[r["customer_id"]] for r in rows] == expected.tolist()
    assert predict_numpy(model, x).tolist() == expected.tolist()


def test_training_sample_is_bounded_seeded_and_fit_orders_clusters(spark):
    rows = blob_rows({"A": 120, "B": 60, "C": 30}, seed=2)
    df = c360(spark, rows)
    conf = dict(features=FEATURES, sample_rows=80, seed=7, k_min=2, k_max=5, silhouette_rows=60, n_init=3)
    s1, s2 = training_sample(df, conf), training_sample(df, conf)
    assert 50 <= len(s1) <= 80 and s1["customer_id"].tolist() == s2["customer_id"].tolist()
    assert list(s1.columns) == ["customer_id", *[f["name"] for f in FEATURES]]
    full = training_sample(df, conf | {"sample_rows": 1000})
    assert len(full) == 210
    model = fit(full, conf)
    assert model.k == 3 and model.sizes == [120, 60, 30]  # cluster 0 is the largest
    assert np.allclose(model.raw_centroids()[0], transformed_numpy([r for r in rows if r["customer_id"][0] == "A"])
                       .mean(axis=0))


# ---------------------------------------------------------------------------------------
# personas: stable ids, names

@pytest.mark.unit
def test_persona_matching_keeps_ids_and_numbers_new_clusters():
    feats = ["a", "b"]
    means, stds = [0.0, 0.0], [1.0, 1.0]
    prev = [dict(persona_id="P01", centroid=[0.0, 0.0], centroid_features=feats),
            dict(persona_id="P02", centroid=[5.0, 5.0], centroid_features=feats),
            dict(persona_id="P03", centroid=[-5.0, 5.0], centroid_features=feats)]
    used = {"P01", "P02", "P03", "P07"}  # P07 retired earlier: never reused
    # same clusters, in another order and slightly moved
    m = match_personas(np.array([[5.1, 4.9], [-4.9, 5.0], [0.1, -0.1]]), feats, means, stds, prev, used, "P", 0.5)
    assert [x.persona_id for x in m] == ["P02", "P03", "P01"]
    assert all(x.previous_id == x.persona_id and x.distance < 0.2 for x in m)
    # a genuinely new cluster gets the next id; a cluster moved too far gets a new id too
    m = match_personas(np.array([[0.0, 0.0], [5.0, 5.0], [20.0, -20.0], [-5.0, 7.0]]), feats, means, stds, prev,
                       used, "P", 0.5)
    assert [x.persona_id for x in m] == ["P01", "P02", "P08", "P09"]
    assert (m[2].previous_id, m[3].previous_id) == (None, None)
    # distances are measured in this run's standard deviations: a wider spread brings them under the threshold
    m = match_personas(np.array([[-5.0, 7.0]]), feats, means, [10.0, 10.0], prev, used, "P", 0.5)
    assert m[0].persona_id == "P03"
    # features matched by name, whatever their order; no previous personas: P01...
    m = match_personas(np.array([[5.0, 5.0]]), ["b", "a"], means, stds, prev, used, "P", 0.5)
    assert m[0].persona_id == "P02"
    assert [x.persona_id for x in match_personas(np.zeros((2, 2)), feats, means, stds, [], set(), "P", 0.5)] == \
        ["P01", "P02"]


@pytest.mark.unit
def test_persona_names_and_descriptions_come_from_distinguishing_features():
    phrases = CONF["personas"]["phrases"]
    feats = ["logins_30d", "wealth_aum", "age", "channel_share_branch_90d"]
    d1 = distinguishing(np.array([1.8, 1.2, -0.9, 0.1]), feats, phrases, top=3, min_abs_z=0.3)
    assert [(f["feature"], f["direction"]) for f in d1] == [("logins_30d", "high"), ("wealth_aum", "high"),
                                                           ("age", "low")]
    d2 = distinguishing(np.array([-1.0, 0.0, 2.0, 1.5]), feats, phrases, top=3, min_abs_z=0.3)
    d3 = distinguishing(np.array([1.7, 1.3, 0.5, 0.0]), feats, phrases, top=3, min_abs_z=0.3)   # same top 2 as d1
    d4 = distinguishing(np.array([0.1, -0.2, 0.0, 0.05]), feats, phrases, top=3, min_abs_z=0.3)  # nothing stands out
    names = persona_names([d1, d2, d3, d4], ["P01", "P02", "P03", "P04"], CONF["personas"])
    assert names[1] == ("银发·网点依赖", "Senior · Branch-reliant")
    assert names[0] == ("数字活跃·财富型·年轻", "Digitally active · Wealth holders · Young")  # made unique
    assert names[2] == ("数字活跃·财富型·银发", "Digitally active · Wealth holders · Senior")
    assert names[3] == (CONF["personas"]["default_name_zh"], CONF["personas"]["default_name_en"])
    assert len(set(names)) == 4
    zh, en = persona_descriptions(d1, 1234, 0.1234, dict(aum_avg=123456.0, nps=-12.5, nps_mean_score=7.8,
                                                          churn_rate=0.021, digital_share=0.8))
    assert "12.3%" in zh and "1,234人" in zh and "数字活跃" in zh and "30天登录次数高于平均1.8个标准差" in zh
    assert "年龄低于平均0.9个标准差" in zh and "12.3万元" in zh
    assert en.startswith("12.3% of customers (1,234)") and "digitally active (logins in 30 days 1.8 sd above" in en
    assert "CNY 123,456" in en and "churn rate 2.1%" in en
    # the NPS in points (% promoters - % detractors), never the mean 0-10 score under its name
    assert "NPS -12" in en and "净推荐值NPS -12" in zh and "7.8" not in en


# ---------------------------------------------------------------------------------------
# KPIs and migration

SEG_SCHEMA = "customer_id string, as_of_date date, value_tier string, lifecycle_stage string, cluster_id int, " \
             "persona_id string"


def test_segment_kpis(spark):
    cur = spark.createDataFrame([
        ("C1", AS_OF, "high_end", "mature", 0, "P01"),
        ("C2", AS_OF, "high_end", "growing", 0, "P01"),
        ("C3", AS_OF, "mass", "churned", 1, "P02"),
        ("C4", AS_OF, "long_tail", "churned", 1, "P02"),   # was high_end: lost to churn
        ("C5", AS_OF, "mass", "mature", 1, "P02"),
    ], SEG_SCHEMA)
    prev = spark.createDataFrame([
        ("C1", PREV, "high_end", "mature", 0, "P01"),
        ("C4", PREV, "high_end", "declining", 0, "P01"),
        ("C3", PREV, "mass", "declining", 1, "P02"),
        ("C5", PREV, "mass", "mature", 1, "P02"),
    ], SEG_SCHEMA)
    prof = c360(spark, [
        dict(customer_id="C1", total_aum=900_000.0, complaints_365d=0, avg_wait_s_90d=60.0, logins_90d=5),
        dict(customer_id="C2", total_aum=600_000.0, complaints_365d=2, avg_wait_s_90d=None, logins_90d=0),
        dict(customer_id="C3", total_aum=0.0, complaints_365d=1, avg_wait_s_90d=300.0),
        dict(customer_id="C4", total_aum=0.0),
        dict(customer_id="C5", total_aum=30_000.0, logins_90d=1),
    ])
    t = lambda d: datetime(2026, 6, d)  # noqa: E731
    answers = spark.createDataFrame([
        # C1: NPS 3 then 10 (latest: promoter); C2: 6 (detractor); C3: 9 (promoter); C4: 7 (passive)
        ("R1", "C1", "nps", 3, t(1)), ("R2", "C1", "nps", 10, t(20)), ("R3", "C2", "nps", 6, t(5)),
        ("R4", "C3", "nps", 9, t(5)), ("R5", "C4", "nps", 7, t(5)),
        ("R6", "C1", "csat", 5, t(2)), ("R7", "C1", "csat", 3, t(3)), ("R8", "C2", "csat", 4, t(3)),
        ("R9", "C3", "csat", 2, t(3)),
        ("R10", "C1", "ces", 2, t(2)), ("R11", "C2", "ces", 5, t(2)), ("R12", "C3", "ces", 6, t(2)),
    ], "response_id string, customer_id string, survey_type string, score int, responded_at timestamp")
    rows = {(r.dimension, r.segment): r for r in segment_kpis(cur, prof, prev, "churned", answers, 2).collect()}
    he = rows[("value_tier", "high_end")]  # C1, C2
    assert (he.customers, he.aum_total, he.aum_avg) == (2, 1_500_000, 750_000)
    # NPS: 1 promoter (C1's latest 10), 1 detractor (C2) of 2 respondents = 50% - 50% = 0
    assert (he.nps, he.nps_respondents, he.nps_promoters, he.nps_detractors, he.nps_mean_score) == (0.0, 2, 1, 1, 8.0)
    # CSAT: answers 5, 3, 4: two of three are 4-5; CES: mean of 2 and 5
    assert (he.csat, he.csat_responses, he.csat_satisfied) == (pytest.approx(200 / 3), 3, 2)
    assert (he.ces, he.ces_responses) == (3.5, 2)
    assert (he.complaint_rate, he.avg_wait_s, he.digital_share, he.share) == (0.5, 60.0, 0.5, 0.4)
    assert he.churn_rate == pytest.approx(1 / 3)  # C4 left high_end by churning: base C1, C2, C4
    mass = rows[("value_tier", "mass")]  # C3, C5: one respondent of each kind, fewer than 2
    assert (mass.customers, mass.churn_rate, mass.complaint_rate) == (2, 0.5, 0.5)
    assert (mass.nps, mass.nps_respondents, mass.nps_promoters, mass.nps_mean_score) == (None, 1, 1, None)
    assert (mass.csat, mass.csat_responses, mass.ces, mass.ces_responses) == (None, 1, None, 1)
    lt = rows[("value_tier", "long_tail")]  # C4: passive only
    assert lt.churn_rate == 1.0 and (lt.nps, lt.nps_respondents, lt.csat_responses) == (None, 1, 0)
    p2 = rows[("persona", "P02")]  # C3 promoter, C4 passive, C5 no answer: (50 - 0) points
    assert (p2.nps, p2.nps_respondents, p2.nps_mean_score) == (50.0, 2, 8.0)
    assert rows[("lifecycle_stage", "churned")].customers == 2 and rows[("lifecycle_stage", "churned")].churn_rate == 1
    assert rows[("lifecycle_stage", "mature")].churn_rate == 0.0
    p1 = rows[("persona", "P01")]
    assert (p1.customers, p1.churn_rate) == (2, pytest.approx(1 / 3))   # C4 was P01
    assert (p2.customers, p2.churn_rate, p2.aum_avg) == (3, pytest.approx(2 / 3), 10_000)
    assert {k for k in rows if k[0] == "persona"} == {("persona", "P01"), ("persona", "P02")}
    # first as_of: the share of current members who are churned; no feedback: counts 0, KPIs null
    first = {(r.dimension, r.segment): r for r in segment_kpis(cur, prof, None, "churned").collect()}
    assert first[("value_tier", "high_end")].churn_rate == 0.0
    assert first[("persona", "P02")].churn_rate == pytest.approx(2 / 3)
    assert (first[("persona", "P02")].nps, first[("persona", "P02")].nps_respondents) == (None, 0)


def test_segment_migration_counts(spark):
    prev = spark.createDataFrame([
        ("C1", PREV, "mass", "mature", 0, "P01"), ("C2", PREV, "mass", "mature", 0, "P01"),
        ("C3", PREV, "high_end", "growing", 1, "P02"), ("C9", PREV, "long_tail", "dormant", 0, "P01"),
    ], SEG_SCHEMA)
    cur = spark.createDataFrame([
        ("C1", AS_OF, "mass", "mature", 0, "P01"), ("C2", AS_OF, "high_end", "growing", 1, "P02"),
        ("C3", AS_OF, "high_end", "declining", 1, "P02"), ("C4", AS_OF, "mass", "new", 2, "P03"),
    ], SEG_SCHEMA)
    rows = segment_migration(cur, prev, PREV, AS_OF).collect()
    assert {(r.from_as_of, r.to_as_of) for r in rows} == {(PREV, AS_OF)}
    got = {(r.dimension, r.from_segment, r.to_segment): r.customers for r in rows}
    assert got == {
        ("value_tier", "mass", "mass"): 1, ("value_tier", "mass", "high_end"): 1,
        ("value_tier", "high_end", "high_end"): 1, ("value_tier", "long_tail", "(gone)"): 1,
        ("value_tier", "(new)", "mass"): 1,
        ("lifecycle_stage", "mature", "mature"): 1, ("lifecycle_stage", "mature", "growing"): 1,
        ("lifecycle_stage", "growing", "declining"): 1, ("lifecycle_stage", "dormant", "(gone)"): 1,
        ("lifecycle_stage", "(new)", "new"): 1,
        ("persona", "P01", "P01"): 1, ("persona", "P01", "P02"): 1, ("persona", "P02", "P02"): 1,
        ("persona", "P01", "(gone)"): 1, ("persona", "(new)", "P03"): 1,
    }


# ---------------------------------------------------------------------------------------
# the job on a small lake, two as_of dates

def _settings(lake_settings):
    d = SETTINGS.segments.model_dump()
    d["clusters"] |= dict(features=FEATURES, k_min=2, k_max=6, sample_rows=5000, silhouette_rows=400, n_init=4)
    return lake_settings.model_copy(update={"segments": Segments(**d)})


def _write_c360(spark, settings, rows, as_of):
    lake.write_partition(c360(spark, rows, as_of), lake.table_path(settings.lake, "gold", "customer_360"),
                         "as_of_date", f"as_of_date = DATE'{as_of.isoformat()}'")


def test_job_two_runs_stable_personas_migration_report_and_no_pii(spark, lake_settings):
    from jobs import segments

    s = _settings(lake_settings)
    _write_c360(spark, s, blob_rows({"A": 120, "B": 90, "C": 60}, seed=10), PREV)
    m1 = segments.run(spark, s, PREV)
    assert m1["k"] == 3 and m1["customers"] == 270 and m1["previous_as_of"] is None
    assert m1["personas"] == {"P01": 120, "P02": 90, "P03": 60} and m1["new_personas"] == ["P01", "P02", "P03"]
    gold = lambda n: lake.read(spark, lake.table_path(s.lake, "gold", n))  # noqa: E731
    seg1 = {r.customer_id: r.persona_id for r in gold("customer_segments").collect()}
    assert {seg1["A0000"], seg1["B0000"], seg1["C0000"]} == {"P01", "P02", "P03"}
    personas = {r.persona_id: r for r in gold("personas").collect()}
    senior = personas[seg1["B0000"]]
    assert "银发" in senior.persona_name_zh and "Senior" in senior.persona_name_en
    feats = json.loads(senior.distinguishing_features)
    assert feats[0]["z"] > 0 and any(f["feature"] == "age" for f in feats)
    for p in personas.values():
        assert p.persona_name_zh and p.persona_name_en and p.description_zh and p.description_en
        assert json.loads(p.distinguishing_features)[0]["phrase_zh"] in p.persona_name_zh
        assert json.loads(p.kpis)["customers"] == p.size and p.share == pytest.approx(p.size / 270)
        assert len(p.centroid) == len(p.centroid_features) == 4
    assert not lake.exists(lake.table_path(s.lake, "gold", "segment_migration"))

    # a month later: the same customers, perturbed, plus a genuinely new cluster
    rows2 = blob_rows({"A": 118, "B": 92, "C": 60, "D": 45}, seed=11)
    _write_c360(spark, s, rows2, AS_OF)
    m2 = segments.run(spark, s, AS_OF)
    assert m2["k"] == 4 and m2["previous_as_of"] == PREV.isoformat()
    seg2 = {r.customer_id: r.persona_id for r in gold("customer_segments").where(f"as_of_date = DATE'{AS_OF}'")
            .collect()}
    for blob in "ABC":
        assert seg2[f"{blob}0001"] == seg1[f"{blob}0001"]
    assert seg2["D0000"] == "P04" and m2["new_personas"] == ["P04"]
    p2 = {r.persona_id: r for r in gold("personas").where(f"as_of_date = DATE'{AS_OF}'").collect()}
    assert p2["P04"].previous_persona_id is None and p2[seg1["A0001"]].previous_persona_id == seg1["A0001"]
    # history kept: both partitions in every table
    for name in ("customer_segments", "personas", "segment_kpis"):
        assert {r[0] for r in gold(name).select("as_of_date").distinct().collect()} == {PREV, AS_OF}
    mig = {(r.dimension, r.from_segment, r.to_segment): r.customers for r in gold("segment_migration").collect()}
    assert mig[("persona", "(new)", "P04")] == 45
    assert mig[("persona", seg1["B0000"], seg1["B0000"])] == 90
    assert mig[("persona", seg1["A0000"], "(gone)")] == 2 and mig[("persona", "(new)", seg1["B0000"])] == 2
    assert sum(v for (d, _, _), v in mig.items() if d == "value_tier") == 270 + 47
    kp = {(r.dimension, r.segment): r.customers for r in gold("segment_kpis").where(f"as_of_date = DATE'{AS_OF}'")
          .collect()}
    assert kp[("persona", "P04")] == 45 and sum(v for (d, _), v in kp.items() if d == "lifecycle_stage") == 315

    # re-running a date replaces only its partition, with the same ids
    m3 = segments.run(spark, s, AS_OF)
    assert m3["personas"] == m2["personas"] and gold("customer_segments").count() == 270 + 315
    # ... also an earlier date: only history before it counts, so its ids do not change
    m4 = segments.run(spark, s, PREV)
    assert m4["personas"] == m1["personas"] and m4["previous_as_of"] is None
    assert gold("segment_migration").count() == len(mig)

    # no PII column in any table written
    for name in ("customer_segments", "personas", "segment_kpis", "segment_migration"):
        cols = gold(name).columns
        assert not [c for c in cols if PII.search(c)], (name, cols)
    assert not [c for c in lake.read(spark, lake.table_path(s.lake, "ops", "persona_model")).columns if PII.search(c)]

    # the report: written, self-contained, names every persona, no customer id
    html = (s.lake / "marketing" / "reports" / AS_OF.isoformat() / "segments.html").read_text(encoding="utf-8")
    assert m2["report"].endswith("marketing/reports/2026-06-30/segments.html")
    for p in p2.values():
        assert p.persona_id in html and p.persona_name_zh in html and p.persona_name_en in html
    assert "data:image/png;base64," in html and "<script" not in html and "http://" not in html
    assert "A0001" not in html and "D0000" not in html
    assert "Persona migration" in html and str(PREV) in html


@pytest.mark.unit
def test_step_registered_after_profile():
    from jobs.pipeline import STEPS

    names = list(STEPS)
    assert names.index("segments") == names.index("profile") + 1


@pytest.mark.unit
@pytest.mark.parametrize("edit, message", [
    (lambda d: d["lifecycle"]["rules"].append({"stage": "vip", "when": "total_aun > 1"}), "unknown feature 'total_aun'"),
    (lambda d: d["lifecycle"]["rules"].append({"stage": "new", "when": "age < 20"}), "stage 'new' has more than one"),
    (lambda d: d["lifecycle"].update(churned_stage="lost"), "churned_stage"),
    (lambda d: d["clusters"].update(k_min=6, k_max=4), "k_max"),
    (lambda d: d["clusters"]["features"].append({"name": "city"}), "not a number"),
    (lambda d: d["clusters"]["features"].append({"name": "logins_90d"}), "no phrase for cluster feature"),
    (lambda d: d["clusters"].update(criterion="elbow"), "clusters.criterion"),
    (lambda d: d["value_tier"]["long_tail"].update(max_aum=600000), "long_tail.max_aum"),
])
def test_invalid_segments_configuration_fails_at_start_up(tmp_path, edit, message):
    import shutil

    import yaml

    conf = tmp_path / "conf"
    shutil.copytree(DEFAULT_CONF_DIR, conf, ignore=shutil.ignore_patterns("local.yaml"))
    raw = yaml.safe_load((conf / "segments.yaml").read_text(encoding="utf-8"))
    edit(raw["segments"])
    (conf / "segments.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_settings(conf, environ={})

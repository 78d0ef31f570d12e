"""Model training: point-in-time training rows, bounded sampling, in-engine scoring, and the
train job end to end on generated banks (MLflow sqlite registry under tmp_path)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import functions as F
from pyspark.sql import types as T
from test_profile import CATALOG, customers, silver

from c360 import lake
from c360.settings import ConfigError, Prediction, load_settings
from jobs.profile import partition
from features.candidates import with_profile
from models import attrition, nbp, training
from models.frame import fit_spec, prepare

S = date(2026, 5, 31)  # the snapshot; the day ends at 2026-05-31 16:00 UTC (Asia/Shanghai)
TZ = "Asia/Shanghai"


def utc(*a):
    return datetime(*a)


# ---------------------------------------------------------------------------- configuration

@pytest.mark.unit
def test_models_block_is_validated_with_clear_errors(tmp_path):
    s = load_settings(environ={})
    m = s.models
    assert (m.next_best_product.snapshots, m.next_best_product.horizon_days, m.attrition.horizon_days) == (12, 30, 90)
    assert m.next_best_product.min_history_days == 90
    assert m.next_best_product.kinds == ["ranker", "binary"]
    assert m.next_best_product.registered_model == "next_best_product"
    assert m.attrition.registered_model == "attrition_risk"
    assert m.next_best_product.ranker.as_kwargs()["subsample_freq"] == 1

    conf = tmp_path / "conf"
    conf.mkdir()
    base = Path(__file__).resolve().parent.parent / "conf"
    (conf / "base.yaml").write_text((base / "base.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    for bad, expected in [
        ("models:\n  next_best_product:\n    horizon_days: 0\n", "next_best_product.horizon_days"),
        ("models:\n  next_best_product:\n    min_history_days: -1\n", "next_best_product.min_history_days"),
        ("models:\n  next_best_product:\n    kinds: [ranker, forest]\n", "kinds"),
        ("models:\n  attrition:\n    sampling:\n      negative_rate: 0\n", "attrition.sampling.negative_rate"),
        ("models:\n  next_best_product:\n    ranker:\n      extra: {objective: binary}\n", "objective"),
        ("models:\n  seeds: 3\n", "models.seeds"),
    ]:
        (conf / "models.yaml").write_text(bad, encoding="utf-8")
        with pytest.raises(ConfigError, match=expected) as err:
            load_settings(conf, environ={})
        assert "models.yaml" in str(err.value)


# ---------------------------------------------------------------------------- no leakage

def _money(rows, *cols):
    return [{k: (Decimal(str(v)) if k in cols and v is not None else v) for k, v in r.items()} for r in rows]


def _silver_rows(with_future: bool) -> dict[str, list[dict]]:
    """Silver rows around the snapshot S; ``with_future`` adds rows dated after S."""
    h = lambda acc, cust, prod, opened, snap, **r: dict(account_id=acc, customer_id=cust, product_code=prod,  # noqa
                                                        opened_date=opened, status="active", balance=1000,
                                                        currency="CNY", snapshot_date=snap) | r
    holdings = [
        h("A1", "C1", "CA", date(2020, 1, 1), date(2026, 5, 31)),
        h("A5", "C1", "TD", date(2026, 5, 31), date(2026, 5, 31)),   # opened on S: held at S, no candidate
        h("A6", "C2", "SV", date(2021, 1, 1), date(2026, 5, 31), balance=50000),
        # C2's credit card, held 2025-01-10 to 2026-03-15: ownership lags before S
        h("A7", "C2", "CC", date(2025, 1, 10), date(2026, 2, 28)),
        h("A7", "C2", "CC", date(2025, 1, 10), date(2026, 3, 31), balance=0, status="closed",
          closed_date=date(2026, 3, 15)),
    ]
    txns = [dict(txn_id="T1", account_id="A1", customer_id="C1", txn_ts=utc(2026, 5, 20, 4), amount=100,
                 direction="debit", channel="pos", merchant_category="dining"),
            dict(txn_id="T2", account_id="A6", customer_id="C2", txn_ts=utc(2026, 4, 15, 4), amount=50,
                 direction="debit", channel="pos", merchant_category="dining"),
            dict(txn_id="T3", account_id="A1", customer_id="C1", txn_ts=utc(2026, 5, 31, 15, 59), amount=70,
                 direction="debit", channel="pos", merchant_category="dining")]   # 23:59 local on S: counted
    events = [dict(event_id="E1", customer_id="C1", device_id="D1", session_id="S1", event_ts=utc(2026, 5, 25, 2),
                   channel="app", event_type="product_view", product_code="FD"),
              dict(event_id="E0", customer_id="C1", device_id="D1", session_id="S1", event_ts=utc(2026, 5, 25, 2),
                   channel="app", event_type="login")]
    offers = [dict(offer_id="O1", customer_id="C1", product_code="PL", channel="sms", sent_at=utc(2026, 5, 10, 3),
                   outcome="sent")]
    if with_future:
        holdings += [
            h("A1", "C1", "CA", date(2020, 1, 1), date(2026, 6, 30), balance=999999),  # later snapshot of A1
            h("A2", "C1", "FD", date(2026, 6, 1), date(2026, 6, 30)),    # S+1: label 1
            h("A3", "C1", "WM", date(2026, 6, 30), date(2026, 6, 30)),   # S+30: label 1 (window end included)
            h("A4", "C1", "CC", date(2026, 7, 1), date(2026, 7, 31)),    # S+31: outside the window
            h("A6", "C2", "SV", date(2021, 1, 1), date(2026, 6, 30), balance=0, status="closed",
              closed_date=date(2026, 6, 20)),                            # C2 closes everything
            h("A7", "C2", "CC", date(2025, 1, 10), date(2026, 6, 30), balance=0, status="closed",
              closed_date=date(2026, 5, 10)),                            # closing date corrected after S
        ]
        txns += [dict(txn_id="T9", account_id="A1", customer_id="C1", txn_ts=utc(2026, 5, 31, 16), amount=88888,
                      direction="credit", channel="online", merchant_category=None, counterparty="ACME")]  # 00:00 +1
        events += [dict(event_id="E9", customer_id="C1", device_id="D1", session_id="S9", event_ts=utc(2026, 6, 2, 2),
                        channel="app", event_type="product_view", product_code="CC"),
                   dict(event_id="E8", customer_id="C1", device_id="D1", session_id="S9", event_ts=utc(2026, 6, 2, 2),
                        channel="app", event_type="login")]
        offers += [dict(offer_id="O2", customer_id="C1", product_code="CC", channel="sms", sent_at=utc(2026, 6, 3, 3),
                        outcome="sent"),
                   dict(offer_id="O3", customer_id="C1", product_code="PL", channel="app", sent_at=utc(2026, 5, 30, 3),
                        outcome="clicked", outcome_at=utc(2026, 6, 1, 3))]   # answered after S
    return {"holdings": _money(holdings, "balance"), "transactions": _money(txns, "amount"), "events": events,
            "campaign_responses": offers}


def _write_silver(spark, settings, rows: dict[str, list[dict]]) -> None:
    cust = customers(spark, [dict(), dict(customer_id="C2", birth_month=date(1970, 3, 1))])
    tables = {"customers": cust, "product_catalog": silver(spark, "product_catalog", CATALOG)}
    for name, r in rows.items():
        tables[name] = silver(spark, name, r, {"attributed_by": T.StringType()} if name == "events" else None)
    for name, df in tables.items():
        lake.overwrite(df, lake.table_path(settings.lake, "silver", name))


def _rows_by_key(df, key):
    return {tuple(r[k] for k in key): r.asDict() for r in df.collect()}


def test_training_rows_never_read_data_after_the_snapshot(spark, settings, tmp_path):
    from jobs.profile import silver_tables

    full = settings.with_paths(lake=tmp_path / "full")
    past = settings.with_paths(lake=tmp_path / "past")
    _write_silver(spark, full, _silver_rows(with_future=True))
    _write_silver(spark, past, _silver_rows(with_future=False))

    out = {}
    for name, st in (("full", full), ("past", past)):
        profile, built = training.snapshot_profile(spark, st, S)
        assert built  # no gold partition yet: computed with the profile job's code and written
        assert training.snapshot_profile(spark, st, S)[1] is False  # now reused from gold
        gold = lake.read(spark, lake.table_path(st.lake, "gold", "customer_360")).where(partition(S))
        assert sorted(r.customer_id for r in gold.collect()) == ["C1", "C2"]
        tables = silver_tables(spark, st)
        cands = nbp.snapshot_candidates(profile, tables, S, 30, TZ)
        assert "txn_count_30d" not in cands.columns  # narrow: customer features are joined later
        wide = with_profile(cands, nbp.snapshot_features(spark, st, [S]), ["customer_id", "snapshot_date"])
        out[name] = (_rows_by_key(wide, ["customer_id", "product_code"]),
                     _rows_by_key(attrition.snapshot_rows(profile, tables, S, 90, TZ), ["customer_id"]))

    nbp_full, att_full = out["full"]
    nbp_past, att_past = out["past"]
    # candidates: active products not held at S (CA and TD held by C1, SV by C2)
    assert sorted(p for c, p in nbp_full if c == "C1") == ["CC", "FD", "MG", "PL", "SV", "WM"]
    assert ("C2", "SV") not in nbp_full and len(nbp_full) == 6 + 7
    # every feature of every row is the same without the rows dated after S; only labels differ
    assert set(nbp_full) == set(nbp_past)
    for key in nbp_full:
        f, p = dict(nbp_full[key]), dict(nbp_past[key])
        assert f.pop("label") in (0, 1) and p.pop("label") == 0
        assert f == p, key
    labels = {k: r["label"] for k, r in nbp_full.items() if r["label"]}
    assert labels == {("C1", "FD"): 1, ("C1", "WM"): 1}  # CC opened at S+31 is not a label
    # the features do see the past: the FD view and the PL offer before S, both C1 transactions
    c1 = nbp_full[("C1", "FD")]
    assert (c1["views_product_30d"], c1["txn_count_30d"], c1["outflow_30d"]) == (1, 2, 170.0)
    assert nbp_full[("C1", "CC")]["views_product_90d"] == 0 and nbp_full[("C1", "CC")]["offers_product_90d"] == 0
    assert nbp_full[("C1", "PL")]["offers_product_90d"] == 1  # O3 was answered after S: not seen
    assert nbp_full[("C1", "PL")]["offer_clicks_product_90d"] == 0
    # ownership history as of S: C2's card closed 2.5 months before (the correction after S unseen)
    c2cc = nbp_full[("C2", "CC")]
    assert (c2cc["held_product_1m"], c2cc["held_product_3m"], c2cc["held_product_12m"], c2cc["openings_product"],
            c2cc["closings_product"], c2cc["months_since_closed_product"]) == (0, 1, 1, 1, 1, 2)
    assert (c1["views_product_7d"], c1["days_since_view_product"]) == (1, 6)
    # the ownership vector at S (C2 still holds SV at S, C1 its CA and the TD opened on S)
    assert (c1["own_ca"], c1["own_td"], c1["own_sv"], c2cc["own_sv"], c2cc["own_cc"]) == (1, 1, 0, 1, 0)
    # TD opened on S by C1: 1 adoption in 90 days among 2 customers (FD at S+1 unseen)
    assert nbp_full[("C2", "TD")]["adoption_rate_90d"] == pytest.approx(0.5)
    assert nbp_full[("C2", "FD")]["adoption_rate_90d"] == 0.0
    # attrition: same features; C2 closes everything within 90 days, C1 stays active
    assert set(att_full) == set(att_past) == {("C1",), ("C2",)}
    for key in att_full:
        f, p = dict(att_full[key]), dict(att_past[key])
        f.pop("label"), p.pop("label")
        assert f == p, key
    assert (att_full[("C1",)]["label"], att_full[("C2",)]["label"]) == (0, 1)


def _profiles(cands):
    """One row per (customer, snapshot) with the customer columns of test candidates."""
    return cands.drop("product_code", "label").dropDuplicates(["customer_id", "snapshot_date"])


def test_segment_baseline_uses_personas_of_the_snapshot_dates_else_falls_back(spark, settings, tmp_path):
    st = settings.with_paths(lake=tmp_path / "lake")
    d1, d2 = date(2026, 4, 30), date(2026, 5, 31)
    cands = spark.createDataFrame(
        [("C1", "FD", d1, "25-34", "high", 0), ("C1", "FD", d2, "25-34", "high", 1),
         ("C2", "FD", d2, "35-44", "low", 0)],
        "customer_id string, product_code string, snapshot_date date, age_band string, income_band string, "
        "label int").withColumn("total_aum", F.lit(1.0)).withColumn("annual_income", F.lit(1.0)) \
        .withColumn("txn_count_90d", F.lit(9)).withColumn("logins_90d", F.lit(9))
    profiles = _profiles(cands)
    bands = st.model_copy(update={"segments": None})
    assert nbp.segment_grouping(spark, bands, cands, profiles, [d1], d2)[1:] == (["age_band", "income_band"],
                                                                                  "age_band x income_band")
    df, by, grouping = nbp.segment_grouping(spark, st, cands, profiles, [d1], d2)
    assert grouping == "value_tier (segments rule at each snapshot)"
    assert {r[by[0]] for r in df.collect()} == {"mass"}

    seg_path = lake.table_path(st.lake, "gold", "customer_segments")
    segs = spark.createDataFrame([("C1", d2, "P03"), ("C2", d2, "P01")],
                                 "customer_id string, as_of_date date, persona_id string")
    lake.write_partition(segs, seg_path, "as_of_date", partition(d2))
    # only the OOT date has personas: no training rates per persona, so not used
    assert nbp.segment_grouping(spark, st, cands, profiles, [d1], d2)[2] == \
        "value_tier (segments rule at each snapshot)"
    lake.write_partition(spark.createDataFrame([("C1", d1, "P02")], segs.schema), seg_path, "as_of_date",
                         partition(d1))
    df, by, grouping = nbp.segment_grouping(spark, st, cands, profiles, [d1], d2)
    assert grouping == "persona_id"
    got = {(r.customer_id, r.snapshot_date): r[by[0]] for r in df.collect()}
    assert got == {("C1", d1): "P02", ("C1", d2): "P03", ("C2", d2): "P01"}  # persona of each snapshot date


# ---------------------------------------------------------------------------- sampling, scoring

def _frame(spark, customers_n=400, snapshots=(date(2026, 1, 31), date(2026, 2, 28))):
    rows = []
    for s in snapshots:
        for i in range(customers_n):
            for j, p in enumerate(("A", "B", "C")):
                pos = 1 if (i % 10 == 0 and j == (i // 10) % 3) else 0
                rows.append((f"C{i:04d}", p, s, float(i % 7 + j), pos))
    df = spark.createDataFrame(rows, "customer_id string, product_code string, snapshot_date date, x double, "
                                     "label int")
    return training.with_group_positive(df, ["snapshot_date", "customer_id"])


def test_bounded_sample_is_deterministic_capped_and_weighted(spark):
    from c360.settings import Sampling

    df = _frame(spark)  # 2 snapshots x 400 customers x 3 products; 40 customers adopt per snapshot
    conf = Sampling(customer_rate_per_mille=1000, negative_rate=0.5, max_train_rows=1000)
    a, info = training.bounded_sample(df, conf, seed=7, group=["snapshot_date", "customer_id"])
    b, _ = training.bounded_sample(df, conf, seed=7, group=["snapshot_date", "customer_id"])
    assert len(a) <= 1000 and info.capped and info.customer_rate_per_mille < 1000
    # the largest rate that fits: one more customer bucket would pass the cap
    wider = Sampling(customer_rate_per_mille=info.customer_rate_per_mille + 1, negative_rate=0.5,
                     max_train_rows=10_000)
    assert len(training.bounded_sample(df, wider, seed=7, group=["snapshot_date", "customer_id"])[0]) > 1000
    pd.testing.assert_frame_equal(a.sort_values(["customer_id", "snapshot_date", "product_code"]).reset_index(drop=True),
                                  b.sort_values(["customer_id", "snapshot_date", "product_code"]).reset_index(drop=True))
    assert (info.population_rows, info.population_positives) == (2400, 80)
    # groups with an adoption are all kept (weight 1), the others at ~half with weight 2
    pos = a[a[training.GROUP_POSITIVE]]
    assert set(pos[training.WEIGHT]) == {1.0} and set(a.loc[~a[training.GROUP_POSITIVE], training.WEIGHT]) == {2.0}
    kept = {r.customer_id for r in df.where(training.customer_bucket() < info.customer_rate_per_mille)
            .select("customer_id").distinct().collect()}
    assert set(a["customer_id"]) <= kept
    expected_pos = {c for c in kept if int(c[1:]) % 10 == 0}
    assert set(pos["customer_id"]) == expected_pos and len(pos) == 6 * len(expected_pos)  # 2 snapshots x 3 products
    neg_groups = a.loc[~a[training.GROUP_POSITIVE], ["snapshot_date", "customer_id"]].drop_duplicates()
    all_neg_groups = 2 * (len(kept) - len(expected_pos))
    assert 0.35 < len(neg_groups) / all_neg_groups < 0.65
    # fetched in slices (here ~20 of them) it is the same frame
    order = ["customer_id", "snapshot_date", "product_code"]
    sliced = training.to_pandas_chunked(df, 2400, order, chunk_bytes=2400 * 6 * 12 // 20)
    whole = df.toPandas().sort_values(order).reset_index(drop=True)
    pd.testing.assert_frame_equal(sliced, whole)
    # without a cap everything comes with weight 1
    full, info = training.bounded_sample(df, Sampling(max_train_rows=10_000), 7, ["snapshot_date", "customer_id"])
    assert len(full) == 2400 and not info.capped and set(full[training.WEIGHT]) == {1.0}


def test_oot_evaluation_takes_whole_customer_buckets_under_the_cap(spark):
    assert training.largest_rate({0: 5, 1: 5, 2: 5}, 10) == 2
    assert training.largest_rate({0: 5, 1: 5, 2: 5}, 10, rate=1) == 1
    assert training.largest_rate({0: 20, 1: 5}, 10) == 1  # nothing fits: one bucket
    df = _frame(spark, customers_n=400, snapshots=(date(2026, 2, 28),))

    def customers(rate):
        return df.where(training.customer_bucket() < rate).select("customer_id").distinct().count()

    rate, n = nbp.oot_customer_rate(df, 150)
    assert customers(rate) == n <= 150 < customers(rate + 1)
    assert nbp.oot_customer_rate(df, 1000) == (1000, 400)


def test_in_engine_scoring_matches_local_prediction(spark, tmp_path):
    import lightgbm as lgb

    df = _frame(spark, customers_n=200)
    pdf = df.toPandas()
    spec = fit_spec(pdf.drop(columns=[training.GROUP_POSITIVE]))
    assert spec.numeric == ["x"] and spec.categorical == {"product_code": ["A", "B", "C"]}
    booster = lgb.LGBMClassifier(n_estimators=10, num_leaves=4, min_child_samples=5, verbose=-1, n_jobs=1) \
        .fit(prepare(pdf, spec), pdf["label"]).booster_
    ref = pdf.sort_values(["customer_id", "snapshot_date", "product_code"]).reset_index(drop=True)
    expected = booster.predict(prepare(ref, spec))
    for prediction in (None, Prediction(compiled=False), Prediction(compiled=True, cache_dir=tmp_path / "cache")):
        scored = training.score_in_engine(df, {"score": (booster.model_to_string(), spec)},
                                          ["customer_id", "product_code", "snapshot_date", "label"], prediction)
        assert scored.columns == ["customer_id", "product_code", "snapshot_date", "label", "score"]
        got = scored.toPandas().sort_values(["customer_id", "snapshot_date", "product_code"]).reset_index(drop=True)
        np.testing.assert_allclose(got["score"].to_numpy(), expected, rtol=1e-9)
    assert len(list((tmp_path / "cache").glob("*.so"))) == 1  # compiled in the driver, loaded by the workers

    # the workers really predict with the cached compiled model: a cache entry holding
    # another model's code (never the case in use: keys are content hashes) gives its scores
    import shutil

    from models import compiled

    other = lgb.LGBMClassifier(n_estimators=3, num_leaves=4, min_child_samples=5, verbose=-1, n_jobs=1) \
        .fit(prepare(pdf, spec), pdf["label"]).booster_
    planted = tmp_path / "planted"
    compiled.compiled(other.model_to_string(), planted)
    key, other_key = compiled.cache_key(booster.model_to_string()), compiled.cache_key(other.model_to_string())
    for ext in (".so", ".json"):  # the compiled file with its size and hash record
        shutil.move(planted / f"{other_key}{ext}", planted / f"{key}{ext}")
    scored = training.score_in_engine(df, {"score": (booster.model_to_string(), spec)},
                                      ["customer_id", "product_code", "snapshot_date", "label"],
                                      Prediction(compiled=True, cache_dir=planted))
    got = scored.toPandas().sort_values(["customer_id", "snapshot_date", "product_code"]).reset_index(drop=True)
    np.testing.assert_allclose(got["score"].to_numpy(), other.predict(prepare(ref, spec)), rtol=1e-9)
    assert not np.allclose(got["score"].to_numpy(), expected)


# ---------------------------------------------------------------------------- end to end

AS_OF = date(2026, 6, 30)


def _bank(spark, base_settings, root: Path, customers_n: int, days: int, seed: int, world: str = "demo"):
    from c360.synth import generate
    from jobs import ingest, silver

    st = base_settings.with_paths(landing=root / "landing", lake=root / "lake")
    generate(customers_n, days, AS_OF, seed, st.landing, world=world)
    ingest.run(spark, st, as_of=AS_OF)
    silver.run(spark, st)
    return st


def _fast_models(st, nbp_snapshots=4, att_snapshots=3, trees=60):
    m = st.models
    small = dict(n_estimators=trees, num_leaves=15, min_child_samples=20)
    # small test banks: a few positives are enough to train (plumbing, not model quality)
    nbp_conf = m.next_best_product.model_copy(update={
        "snapshots": nbp_snapshots, "min_positives": 5, "ranker": m.next_best_product.ranker.model_copy(update=small),
        "binary": m.next_best_product.binary.model_copy(update=small)})
    att_conf = m.attrition.model_copy(update={"snapshots": att_snapshots, "min_positives": 5,
                                              "params": m.attrition.params.model_copy(update=small)})
    return st.model_copy(update={"models": m.model_copy(update={"next_best_product": nbp_conf,
                                                                 "attrition": att_conf})})


def _run_artifacts(st, run_id: str) -> set[str]:
    from models.registry import mlflow_session

    with mlflow_session(st) as client:
        return {a.path for a in client.list_artifacts(run_id)}


def _run(st, run_id: str):
    from models.registry import mlflow_session

    with mlflow_session(st) as client:
        return client.get_run(run_id)


def _check_calibration(st, run_id: str, version: str) -> None:
    """The version's calibration.json is a monotone map within [0, 1] fitted on the OOT
    snapshot, with its hash recorded on the version."""
    import hashlib
    import tempfile

    from models.calibration import Calibration
    from models.registry import CALIBRATION_HASH_TAG, mlflow_session

    with mlflow_session(st) as client, tempfile.TemporaryDirectory() as tmp:
        data = Path(client.download_artifacts(run_id, "calibration.json", tmp)).read_bytes()
        tag = client.get_model_version("next_best_product", version).tags[CALIBRATION_HASH_TAG]
    assert tag == hashlib.sha256(data).hexdigest()
    cal = Calibration.from_json(data.decode("utf-8"))
    assert cal.fitted_on["oot_snapshot"] == "2026-05-31" and 0 <= cal.y[0] <= cal.y[-1] <= 1
    grid = np.linspace(cal.x[0] - 1, cal.x[-1] + 1, 101)
    assert (np.diff(cal.apply(grid)) >= 0).all()


@pytest.fixture(scope="module")
def trained_bank(spark, settings, tmp_path_factory):
    """A small generated bank of the ``sequence`` world (c360/synth/worlds.py), trained once
    by the train job with the fast model settings: ``(settings, train.run's output)``.

    In that world adoptions follow what the customer holds, so at 500 customers the next
    best product champion beats popularity and segment popularity by about 2x and attrition
    has an AUC above 0.8 (seeds 1-3 checked), where the demo world needed 4,000 customers
    and the full models (7 minutes) for the same margins. The tests below share this one
    training; the crippled challenger adds version 2 of next_best_product only."""
    from jobs import train

    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        st = _fast_models(_bank(spark, settings, tmp_path_factory.mktemp("sequence_bank"), 500, 240, seed=1,
                                world="sequence"))
        yield st, train.run(spark, st, AS_OF)


def test_train_job_on_a_small_generated_bank(trained_bank, spark, monkeypatch):
    from models.registry import load_champion, tracking_uri

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    st, out = trained_bank
    assert out["tracking_uri"] == f"sqlite:///{st.lake.resolve()}/mlflow.db"

    n = out["next_best_product"]
    assert n["train_snapshots"] == ["2026-02-28", "2026-03-31", "2026-04-30"] and n["oot_snapshot"] == "2026-05-31"
    assert n["kind"] in ("ranker", "binary") and n["version"] == "1"
    assert n["map_at_7"] == max(n["map_at_7_by_kind"].values())
    assert 0 < n["train_positives"] < n["train_rows"]
    # first version: champion exactly when it beats the popularity baseline, else challenger
    assert n["promoted"] == (n["map_at_7"] > n["baseline_popularity_map_at_7"])
    assert n["aliases"] == ({"champion": "1"} if n["promoted"] else {"challenger": "1"})
    assert n["compiled_for_scoring"] == n["promoted"]  # a champion is compiled for the score step
    # no gold/customer_segments here: the segments step's value-tier rule on each snapshot's features
    assert n["segment_baseline_grouping"] == "value_tier (segments rule at each snapshot)"

    run = _run(st, n["run_id"])
    metrics, params = run.data.metrics, run.data.params
    for k in ("map_at_7", "ndcg_at_7", "precision_at_3", "recall_at_7", "coverage", "ranker_map_at_7",
              "binary_map_at_7", "baseline_popularity_map_at_7", "baseline_segment_popularity_map_at_7"):
        assert k in metrics, k
    assert metrics["map_at_7"] == pytest.approx(n["map_at_7"])
    assert any(k.startswith("auc_") for k in metrics)
    assert params["model_kind"] == n["kind"] and params["segment_baseline_grouping"] == n["segment_baseline_grouping"]
    assert int(params["train_rows"]) == n["train_rows"]
    arts = _run_artifacts(st, n["run_id"])
    assert {"feature_spec.json", "training_set.json", "per_product.csv", "evaluation_report.html",
            "feature_importance.png"} <= arts
    # MAP@3 beside MAP@7; the winner's raw score calibrated on the OOT snapshot: the map is
    # data (calibration.json) whose hash the version records; ECE and a reliability chart logged
    assert 0 <= n["map_at_3"] <= 1 and metrics["map_at_3"] == pytest.approx(n["map_at_3"])
    assert {"ranker_map_at_3", "binary_map_at_3", "baseline_popularity_map_at_3"} <= set(metrics)
    assert {"calibration.json", "calibration.csv", "reliability.png"} <= arts
    assert 0 <= metrics["calibration_ece"] < 0.5 and metrics["calibration_ece"] == pytest.approx(n["calibration_ece"])
    assert 0 <= metrics["calibration_ece_in_sample"] < 0.5
    _check_calibration(st, n["run_id"], n["version"])
    # the snapshots' features were written to gold (5 month ends: 2026-01..05) and reused
    gold = lake.read(spark, lake.table_path(st.lake, "gold", "customer_360"))
    assert sorted(r.as_of_date.isoformat() for r in gold.select("as_of_date").distinct().collect()) == \
        ["2026-01-31", "2026-02-28", "2026-03-31", "2026-04-30", "2026-05-31"]
    assert not any((st.lake / "ops" / "_scratch").iterdir())  # scratch tables removed

    a = out["attrition"]
    assert a["oot_snapshot"] == "2026-03-31" and a["version"] == "1"
    assert 0 <= a["brier_score"] < 0.25 and 0 <= a["expected_calibration_error"] < 0.5
    assert a["promoted"] == (a["auc"] > 0.5 + st.models.attrition.promotion_margin)
    att_run = _run(st, a["run_id"])
    assert {"auc", "brier_score", "expected_calibration_error"} <= set(att_run.data.metrics)
    assert {"reliability.png", "calibration.csv", "feature_spec.json"} <= _run_artifacts(st, a["run_id"])
    if a["promoted"]:
        champ = load_champion(st, "attrition_risk")
        assert (champ.version, champ.kind) == ("1", "binary")
    assert tracking_uri(st).endswith("mlflow.db")


@pytest.mark.slow
def test_champion_beats_popularity_by_a_clear_margin_and_a_worse_challenger_stays(trained_bank, spark,
                                                                                   monkeypatch):
    from jobs import train
    from models import compiled
    from models.registry import load_champion

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    st, out = trained_bank
    n, a = out["next_best_product"], out["attrition"]
    assert n["promoted"] and n["aliases"] == {"champion": "1"}
    # a clear margin, not a tie won by noise (about 2x on this bank)
    assert n["map_at_7"] > 1.3 * n["baseline_popularity_map_at_7"]
    assert n["map_at_7"] > 1.3 * n["baseline_segment_popularity_map_at_7"]
    assert a["promoted"] and a["auc"] > 0.7
    champ = load_champion(st, "next_best_product")
    assert (champ.version, champ.kind) == ("1", n["kind"])
    # each new champion was compiled by training, under the key the score step looks up
    assert n["compiled_for_scoring"] and a["compiled_for_scoring"]
    for name in ("next_best_product", "attrition_risk"):
        key = compiled.cache_key(load_champion(st, name).booster.model_to_string())
        assert (compiled.default_cache_dir() / f"{key}.so").is_file(), name

    # a crippled model, compared with the champion re-scored on the same OOT snapshot: stays challenger
    m = st.models
    weak = m.next_best_product.model_copy(update={
        "kinds": ["binary"], "binary": m.next_best_product.binary.model_copy(
            update={"n_estimators": 1, "num_leaves": 2, "colsample_bytree": 0.05})})
    st2 = st.model_copy(update={"models": m.model_copy(update={"next_best_product": weak})})
    again = train.run(spark, st2, AS_OF, tasks=("next_best_product",))["next_best_product"]
    assert again["version"] == "2" and not again["promoted"] and not again["compiled_for_scoring"]
    assert again["previous_champion_map_at_7"] == pytest.approx(n["map_at_7"])  # same data, same model
    assert again["aliases"] == {"champion": "1", "challenger": "2"}
    assert load_champion(st, "next_best_product").version == "1"


def test_segment_baseline_applies_the_latest_persona_model_at_each_snapshot(spark, settings, tmp_path):
    from features.segments import ClusterModel

    st = settings.with_paths(lake=tmp_path / "lake")
    d1, d2, run = date(2026, 4, 30), date(2026, 5, 31), date(2026, 6, 30)
    model = ClusterModel(features=["total_aum"], log1p=[False], fills=[0.0], means=[0.0], stds=[1.0],
                         centroids=[[0.0], [100.0]], k=2)
    lake.write_partition(spark.createDataFrame([(run, model.to_json())], "as_of_date date, model string"),
                         lake.table_path(st.lake, "ops", "persona_model"), "as_of_date", partition(run))
    lake.write_partition(spark.createDataFrame([(run, 0, "P07"), (run, 1, "P02")],
                                               "as_of_date date, cluster_id int, persona_id string"),
                         lake.table_path(st.lake, "gold", "personas"), "as_of_date", partition(run))
    cands = spark.createDataFrame([("C1", "FD", d1, 5.0, 0), ("C1", "FD", d2, 90.0, 1)],
                                  "customer_id string, product_code string, snapshot_date date, total_aum double, "
                                  "label int")
    df, by, grouping = nbp.segment_grouping(spark, st, cands, _profiles(cands), [d1], d2)
    assert grouping == f"persona_id (persona model of {run} applied at each snapshot)"
    # the same customer belongs to different personas at the two snapshots, by their features then
    assert {r.snapshot_date: r[by[0]] for r in df.collect()} == {d1: "P07", d2: "P02"}


def test_product_signals_count_each_offer_once_per_outcome_kind(spark):
    from features.candidates import product_signals
    from features.profile import AsOf

    at = AsOf(date(2026, 6, 30), "UTC")
    schema = "customer_id string, product_code string, offer_id string, outcome string, sent_at timestamp, " \
             "outcome_at timestamp"
    d = lambda day: datetime(2026, 6, day, 10)  # noqa: E731
    responses = spark.createDataFrame([
        ("C1", "PL", "O1", "sent", d(1), None), ("C1", "PL", "O1", "opened", d(1), d(2)),
        ("C1", "PL", "O1", "clicked", d(1), d(3)),
        ("C1", "PL", "O2", "sent", d(5), None), ("C1", "PL", "O2", "declined", d(5), d(6)),
        ("C1", "CC", "O3", "sent", d(7), None),
        ("C1", "CC", "O4", "sent", datetime(2026, 1, 1), None),  # outside 90 days
        ("C2", "PL", "O5", "sent", d(8), None), ("C2", "PL", "O5", "converted", d(8), datetime(2026, 7, 2)),
    ], schema)
    got = {(r.customer_id, r.product_code): (r.offers_product_90d, r.offer_clicks_product_90d,
                                             r.declined_product_30d)
           for r in product_signals(None, responses, at).collect()}
    # C2's conversion happened after as_of: the offer counts as sent, not clicked
    assert got == {("C1", "PL"): (2, 1, 1), ("C1", "CC"): (1, 0, 0), ("C2", "PL"): (1, 0, 0)}


def test_scratch_spaces_left_by_killed_runs_are_removed(spark, settings, tmp_path):
    import os
    import time

    st = settings.with_paths(lake=tmp_path / "lake")
    parent = Path(lake.table_path(st.lake, "ops", "_scratch"))
    old, recent = parent / "killedrun", parent / "running"
    for d in (old, recent):
        (d / "table").mkdir(parents=True)
    two_days_ago = time.time() - 2 * 24 * 3600
    os.utime(old, (two_days_ago, two_days_ago))
    with training.scratch(spark, st) as sc:
        assert sc.root.parent == parent and sc.root.is_dir()
        assert not old.exists() and recent.is_dir()  # another run's live space is left alone
    assert not sc.root.exists() and recent.is_dir()

"""Worlds of the generator (other catalogues, other adoption drivers) and their truth, and
``c360 evaluate`` of recommendations against that truth."""

from __future__ import annotations

import hashlib
import json
import warnings
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from c360.landing import scan
from c360.synth import generate
from c360.synth.profiles import PRODUCT_CODES
from c360.synth.worlds import WORLDS

AS_OF = date(2026, 6, 30)
OTHER_WORLDS = [w for w in WORLDS if w != "demo"]


def _tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def banks(tmp_path_factory):
    """One 1,000-customer bank per world other than demo."""
    out = {}
    for world in OTHER_WORLDS:
        landing = tmp_path_factory.mktemp(world) / "landing"
        summary = generate(customers=1000, days=200, as_of=AS_OF, seed=5, landing=landing, world=world)
        out[world] = (landing, summary)
    return out


def _truth(landing: Path):
    probs = pq.read_table(landing / "_meta" / "truth" / "probabilities.parquet").to_pandas()
    adopted = pq.read_table(landing / "_meta" / "truth" / "adoptions.parquet").to_pandas()
    return probs, adopted


def _catalog_codes(landing: Path) -> list[str]:
    first = sorted((landing / "product_catalog").iterdir())[0]
    tab = pcsv.read_csv(next(first.iterdir()), convert_options=pcsv.ConvertOptions(strings_can_be_null=False))
    return tab.column("product_code").to_pylist()


@pytest.mark.parametrize("world", OTHER_WORLDS)
def test_world_has_its_own_catalogue_and_a_truth_for_every_customer_and_product(banks, world):
    landing, summary = banks[world]
    codes = _catalog_codes(landing)
    assert len(codes) >= 16 and not set(codes) & set(PRODUCT_CODES)  # other codes than the demo's
    probs, adopted = _truth(landing)
    customers = pq.read_table(landing / "_meta" / "customer_truth.parquet").column("customer_id").to_pylist()
    assert len(probs) == 1000 * len(codes)
    assert set(probs["product_code"]) == set(codes)
    assert probs.groupby("customer_id").size().eq(len(codes)).all() and set(probs["customer_id"]) == set(customers)
    assert probs["probability"].notna().all() and probs["probability"].between(0, 1).all()
    # nothing held or not sellable is adopted; held pairs have probability 0
    assert (probs.loc[probs["held"], "probability"] == 0).all()
    assert not probs.loc[probs["eligible"], "held"].any()
    assert set(adopted["product_code"]) <= set(codes)
    assert adopted["opened_date"].between("2026-07-01", "2026-07-30").all()
    world_json = json.loads((landing / "_meta" / "truth" / "world.json").read_text())
    assert world_json == {"world": world, "as_of": "2026-06-30", "horizon_days": 30, "products": codes}
    assert summary.truth["truth_adoptions_30d"] == len(adopted)


@pytest.mark.parametrize("world", OTHER_WORLDS)
def test_realised_adoptions_are_drawn_from_the_probabilities(banks, world):
    probs, adopted = _truth(banks[world][0])
    key = probs["customer_id"] + "|" + probs["product_code"]
    probs["adopted"] = key.isin(set(adopted["customer_id"] + "|" + adopted["product_code"]))
    assert probs["adopted"].sum() == len(adopted) > 20  # one adoption per pair at most
    assert probs.loc[probs["adopted"], "probability"].gt(0).all()
    mean_adopted = probs.loc[probs["adopted"], "probability"].mean()
    mean_not = probs.loc[~probs["adopted"], "probability"].mean()
    assert mean_adopted > 8 * mean_not
    # the number drawn matches the expectation (a sum of Bernoulli draws)
    expected = probs["probability"].sum()
    sd = np.sqrt((probs["probability"] * (1 - probs["probability"])).sum())
    assert abs(len(adopted) - expected) < 4 * sd


@pytest.mark.parametrize("world", OTHER_WORLDS)
def test_truth_is_not_delivered_and_the_landing_scanner_skips_meta(banks, world):
    landing, _ = banks[world]
    result = scan(landing)
    assert not any("_meta" in str(f.path) for f in result.files)
    notes = [n for n in result.unexpected if "_meta" in str(n.path)]
    assert notes and all(n.kind == "unexpected" for n in notes)
    # no delivered holding was opened after as_of
    for f in (landing / "holdings").rglob("*.parquet"):
        assert max(pq.read_table(f, columns=["opened_date"]).column("opened_date").to_pylist()) <= "2026-06-30"


def test_sequence_world_is_driven_by_ownership_sequences(banks):
    """Home insurance follows a recent mortgage: its true probability is far higher for a
    customer whose mortgage opened 1-2 months before as_of than for the other eligible ones."""
    landing, _ = banks["sequence"]
    probs, _ = _truth(landing)
    hold = pq.read_table(sorted((landing / "holdings").iterdir())[-1].joinpath(
        f"holdings_{AS_OF.strftime('%Y%m%d')}.parquet")).to_pandas()
    recent = hold[(hold["product_code"] == "MG700") & hold["opened_date"].between("2026-04-15", "2026-06-10")]
    ins = probs[(probs["product_code"] == "IN400") & probs["eligible"]]
    after = ins[ins["customer_id"].isin(set(recent["customer_id"]))]
    others = ins[~ins["customer_id"].isin(set(hold.loc[hold["product_code"] == "MG700", "customer_id"]))]
    assert len(after) >= 1 and after["probability"].mean() > 20 * others["probability"].mean()


def test_digital_world_is_driven_by_browsing(banks):
    """Customers who viewed a product in the app in the last 30 days have a far higher true
    probability of adopting it."""
    import pyarrow.json as pjson

    landing, _ = banks["digital"]
    probs, _ = _truth(landing)
    views = []
    for f in (landing / "events").rglob("*.jsonl"):
        if f.parent.name >= "2026-06-01":
            t = pjson.read_json(f).to_pandas()
            views.append(t[t["event_type"] == "product_view"][["customer_id", "product_code"]])
    import pandas as pd

    v = pd.concat(views).drop_duplicates()
    e = probs[probs["eligible"]]
    viewed = (e["customer_id"] + "|" + e["product_code"]).isin(set(v["customer_id"] + "|" + v["product_code"]))
    assert viewed.sum() > 20
    assert e.loc[viewed, "probability"].mean() > 5 * e.loc[~viewed, "probability"].mean()


@pytest.mark.parametrize("world", OTHER_WORLDS)
def test_a_world_is_deterministic_for_a_seed(tmp_path, world):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for root, seed in ((a, 9), (b, 9), (c, 10)):
        generate(customers=200, days=60, as_of=AS_OF, seed=seed, landing=root, world=world, dirty_rate=0.02)
    da, db = _tree_digest(a), _tree_digest(b)
    assert "_meta/truth/probabilities.parquet" in da and "_meta/truth/adoptions.parquet" in da
    assert da == db
    dc = _tree_digest(c)
    assert dc["_meta/truth/probabilities.parquet"] != da["_meta/truth/probabilities.parquet"]


def test_demo_world_is_unchanged(tmp_path):
    """The default world writes exactly what it wrote before (fingerprint of the files of main
    at 212f4af for these arguments: worlds, plus the complaint versions and branch-hour
    waits of #26; the worlds themselves left it as it was at df3ae7c), and no truth. A
    deliberate change to the demo bank updates the fingerprint in the same commit."""
    generate(customers=150, days=45, as_of=AS_OF, seed=3, landing=tmp_path, dirty_rate=0.02)
    h = hashlib.sha256()
    for p in sorted(tmp_path.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(tmp_path)).encode())
            h.update(p.read_bytes())
    assert h.hexdigest() == "3239fcbc91ddf89d939739e8817e59a88c6facaa48f360b4f99fab42b53aaf1e"
    assert not (tmp_path / "_meta" / "truth").exists()


def test_unknown_world_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="world must be one of demo, sequence, digital"):
        generate(customers=10, days=5, as_of=AS_OF, seed=1, landing=tmp_path, world="mars")


# ------------------------------------------------------------------------- evaluation

def test_evaluate_gives_hand_computed_map(spark):
    """Two customers, products A..D; hand-computed AP values.

    c1: eligible A, B, C (D held); adopted B and C. Model ranks C, A, B (D recommended too
    but not eligible: a miss at rank 4). Oracle (probabilities A .1, B .5, C .4) ranks B, C,
    A. Popularity (A 30, B 20, C 10, D 50) ranks A, B, C.
      model  AP@7 = (1/1 + 2/3) / 2 = 0.8333, AP@3 the same
      oracle AP@7 = (1 + 1) / 2 = 1
      popularity AP@7 = (1/2 + 2/3) / 2 = 0.5833
    c2: eligible A, D; adopted D, plus a non-eligible adoption of B (not a positive).
    Model ranks A, B (D not recommended): AP 0. Oracle (A .2, D .3): D first: AP 1.
    Popularity: D (50) first: AP 1.
    c3 (no recommendation) is not judged.
    """
    from models.evaluation import evaluate, evaluation_pairs

    recs = spark.createDataFrame(
        [("c1", "C", 1), ("c1", "A", 2), ("c1", "B", 3), ("c1", "D", 4), ("c2", "A", 1), ("c2", "B", 2)],
        "customer_id string, product_code string, rank int")
    truth = spark.createDataFrame(
        [("c1", "A", .1, True), ("c1", "B", .5, True), ("c1", "C", .4, True), ("c1", "D", 0.0, False),
         ("c2", "A", .2, True), ("c2", "B", .9, False), ("c2", "C", 0.0, False), ("c2", "D", .3, True),
         ("c3", "A", .9, True)],
        "customer_id string, product_code string, probability double, eligible boolean")
    adopted = spark.createDataFrame([("c1", "B"), ("c1", "C"), ("c2", "D"), ("c2", "B"), ("c3", "A")],
                                    "customer_id string, product_code string")
    popularity = spark.createDataFrame([("A", 30), ("B", 20), ("C", 10), ("D", 50)],
                                       "product_code string, popularity long")
    res = evaluate(evaluation_pairs(recs, truth, adopted, popularity))
    assert res["customers"] == 2 and res["customers_with_positive"] == 2 and res["positives"] == 3
    m = res["methods"]
    assert m["model"]["map_at_7"] == pytest.approx((5 / 6 + 0) / 2)
    assert m["model"]["map_at_3"] == pytest.approx((5 / 6 + 0) / 2)
    assert m["oracle"]["map_at_7"] == pytest.approx(1.0)
    assert m["popularity"]["map_at_7"] == pytest.approx((7 / 12 + 1) / 2)
    # at 3: popularity's c1 list is A, B, C (hits at 2 and 3) -> same as at 7
    assert m["popularity"]["map_at_3"] == pytest.approx((7 / 12 + 1) / 2)
    assert res["share_of_oracle_at_7"] == pytest.approx(5 / 12)
    assert res["ratio_to_popularity_at_7"] == pytest.approx((5 / 12) / (19 / 24))


def test_evaluate_counts_only_the_top_k_of_seven_recommendations(spark):
    """With 7 recommendations a customer, MAP@3 reads the first 3 only."""
    from models.evaluation import evaluate, evaluation_pairs

    codes = [f"P{i}" for i in range(8)]
    recs = spark.createDataFrame([("c1", c, i + 1) for i, c in enumerate(codes[:7])],
                                 "customer_id string, product_code string, rank int")
    truth = spark.createDataFrame([("c1", c, 0.1 + 0.01 * i, True) for i, c in enumerate(codes)],
                                  "customer_id string, product_code string, probability double, eligible boolean")
    adopted = spark.createDataFrame([("c1", "P4")], "customer_id string, product_code string")
    popularity = spark.createDataFrame([(c, 1) for c in codes], "product_code string, popularity long")
    res = evaluate(evaluation_pairs(recs, truth, adopted, popularity))
    assert res["methods"]["model"]["map_at_7"] == pytest.approx(1 / 5)
    assert res["methods"]["model"]["map_at_3"] == 0.0
    # oracle ranks P7..P0 by probability: P4 is 4th
    assert res["methods"]["oracle"]["map_at_7"] == pytest.approx(1 / 4)


def test_cli_evaluate_without_truth_is_one_clear_line(tmp_path):
    from typer.testing import CliRunner

    from c360.cli import app

    generate(customers=20, days=5, as_of=AS_OF, seed=1, landing=tmp_path / "landing")  # demo: no truth
    r = CliRunner().invoke(app, ["evaluate", "--landing", str(tmp_path / "landing"), "--lake", str(tmp_path / "lake"),
                                 "--as-of", "2026-06-30"])
    assert r.exit_code == 1
    assert "no truth under" in r.output and "--world sequence|digital" in r.output


# -------------------------------------------------------------------- end to end (slow)

@pytest.mark.slow
def test_pipeline_runs_on_another_world_and_is_evaluated(spark, settings, tmp_path, monkeypatch):
    """Every step of the pipeline on the digital world (its own catalogue codes), then the
    evaluation of its recommendations against the truth."""
    from jobs import evaluate as evaluate_job
    from jobs.pipeline import parse_steps, run_steps
    from test_train import _fast_models

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    st = _fast_models(settings.with_paths(landing=tmp_path / "landing", lake=tmp_path / "lake"),
                      nbp_snapshots=3, att_snapshots=2, trees=30)
    generate(customers=600, days=200, as_of=AS_OF, seed=4, landing=st.landing, world="digital")
    with warnings.catch_warnings():
        # the development PII key's warning (asserted in test_end_to_end and test_ingest);
        # under two test workers pytest.warns here missed it once: not this test's subject
        warnings.simplefilter("ignore")
        results = run_steps(spark, st, AS_OF, parse_steps(None))
    assert [r.status for r in results] == ["succeeded"] * len(results), [(r.step, r.status) for r in results]
    score = next(r for r in results if r.step == "score").metrics
    if "skipped" in score:  # the first model is champion only when it beats popularity
        pytest.fail(f"no champion to score with: {score['skipped']}")
    codes = set(json.loads((st.landing / "_meta" / "truth" / "world.json").read_text())["products"])
    assert set(score["recommendations_by_product"]) <= codes and score["recommendations"] > 0

    res = evaluate_job.run(spark, st, AS_OF)
    assert res["world"] == "digital" and res["customers"] == score["customers_with_recommendation"]
    methods = res["methods"]
    for m in ("model", "popularity", "oracle"):
        assert 0 <= methods[m]["map_at_3"] <= 1 and 0 <= methods[m]["map_at_7"] <= 1
    assert res["positives"] > 0 and methods["oracle"]["map_at_7"] > 0
    assert res["share_of_oracle_at_7"] == pytest.approx(methods["model"]["map_at_7"] / methods["oracle"]["map_at_7"])
    json_path, html_path = evaluate_job.report_paths(st, AS_OF)
    assert json.loads(json_path.read_text())["methods"] == methods
    assert "MAP@7" in html_path.read_text() and "oracle" in html_path.read_text()

"""A run that never dies on a model it cannot train (issue #23, point 1).

Banks unlike the demo: one where nobody leaves (in the ``sequence`` world); banks with three months of history and only
customers, product_catalog, holdings and transactions (the five other sources absent, or
delivered as header-only files). Each runs ``c360 run`` (every step) to the end: the model
the data cannot train is skipped with its reason (run summary, ``ops/run_log``, an MLflow
run tagged ``skipped``), the other one trains, recommendations are scored and exported, and
the run exits 0.

Small banks and small models (``local.yaml`` in a copy of ``conf/``) keep the module short:
three full runs (each every step of the pipeline).
"""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path

import pytest
from typer.testing import CliRunner

from c360 import lake
from c360.contract import SOURCES
from c360.settings import DEFAULT_CONF_DIR, load_settings
from models import training

pytestmark = pytest.mark.slow

AS_OF = date(2026, 6, 30)
OPTIONAL = ("events", "interactions", "feedback", "complaints", "campaign_responses")
# small models: 2 month ends of attrition (horizon 90 d, min_positives 20 as in conf/),
# 3 of next best product (30 d, at least 5 adoptions)
LOCAL_YAML = """\
models:
  next_best_product:
    snapshots: 3
    min_positives: 5
    ranker: {n_estimators: 30, num_leaves: 7, min_child_samples: 10}
    binary: {n_estimators: 30, num_leaves: 7, min_child_samples: 10}
  attrition:
    snapshots: 2
    params: {n_estimators: 30, num_leaves: 7, min_child_samples: 10}
"""


@pytest.fixture(scope="module")
def conf_dir(tmp_path_factory) -> Path:
    conf = tmp_path_factory.mktemp("conf")
    for path in DEFAULT_CONF_DIR.glob("*.yaml"):
        if path.name != "local.yaml":
            shutil.copy(path, conf / path.name)
    (conf / "local.yaml").write_text(LOCAL_YAML, encoding="utf-8")
    return conf


def _run_bank(root: Path, conf: Path, days: int, seed: int, leavers: bool = True, optional: str = "delivered",
              world: str = "demo"):
    """Generate a bank, make its optional sources ``absent`` or ``header_only`` if asked, run
    every step through the CLI; returns (settings, CLI result, ops/run_log metrics by step)."""
    from c360.cli import app
    from c360.synth import generate

    landing, lake_dir = root / "landing", root / "lake"
    generate(250, days, AS_OF, seed, landing, leavers=leavers, world=world)
    for name in OPTIONAL if optional != "delivered" else ():
        shutil.rmtree(landing / name)
        if optional == "header_only":
            folder = landing / name / AS_OF.isoformat()
            folder.mkdir(parents=True)
            (folder / f"{name}.csv").write_text(",".join(SOURCES[name].column_names) + "\n", encoding="utf-8")
    r = CliRunner().invoke(app, ["run", "--landing", str(landing), "--lake", str(lake_dir), "--as-of",
                                 AS_OF.isoformat()], env={"C360_CONF_DIR": str(conf), "COLUMNS": "250"})
    st = load_settings(conf).with_paths(landing=landing, lake=lake_dir)
    return st, r, _run_log(st)


def _run_log(st) -> dict[str, dict]:
    import deltalake

    log = deltalake.DeltaTable(str(lake.table_path(st.lake, "ops", "run_log"))).to_pandas()
    assert set(log["status"]) == {"succeeded"}, log[["step", "status", "error"]].to_dict("records")
    return {r.step: json.loads(r.metrics) for r in log.itertuples()}


def _skipped_runs(st, experiment: str) -> list:
    from models.registry import mlflow_session

    with mlflow_session(st) as client:
        exp = client.get_experiment_by_name(experiment)
        return client.search_runs([exp.experiment_id], "tags.skipped = 'true'")


def _recommendations_and_export(spark, st) -> tuple[int, int]:
    recs = lake.read(spark, lake.table_path(st.lake, "gold", "recommendations")) \
        .where(f"as_of_date = DATE'{AS_OF.isoformat()}'").count()
    drop = st.lake / "marketing" / "exports" / "crm" / AS_OF.isoformat()
    manifest = json.loads((drop / "manifest.json").read_text(encoding="utf-8"))
    assert (drop / "recommendations.csv").is_file()
    return recs, manifest["row_count"]


def _assert_skipped(st, r, logged: dict, task: str, reason: str, message: str) -> None:
    """``task`` skipped for ``reason``: in the CLI summary, ops/run_log and MLflow."""
    conf = getattr(st.models, task)
    train = logged["train"]
    assert train[task]["skipped"] == reason and message in train[task]["reason"]
    assert train["skipped_models"] == {task: f"{reason}: {train[task]['reason']}"}
    assert "Models not trained" in r.output and reason in r.output
    runs = _skipped_runs(st, conf.experiment)
    assert [(x.data.tags["skip_reason"], x.info.run_id) for x in runs] == [(reason, train[task]["run_id"])]
    assert message in runs[0].data.tags["skip_message"]
    assert runs[0].data.tags["task"] == ("attrition_risk" if task == "attrition" else task)


# ---------------------------------------------------------------------------- (a) nobody leaves

@pytest.fixture(scope="module")
def no_leavers(tmp_path_factory, conf_dir):
    # the `sequence` world (20 products, adoptions driven by what the customer holds): at 250
    # customers its next-best-product model beats popularity by a wide margin (about 2x), so
    # the promotion gate is not a coin toss here; on the demo world at this size (9 training
    # adoptions) it was one
    return _run_bank(tmp_path_factory.mktemp("no_leavers"), conf_dir, days=200, seed=5, leavers=False,
                     world="sequence")


def test_a_bank_without_leavers_skips_the_attrition_model_and_still_recommends(no_leavers, spark):
    st, r, logged = no_leavers
    assert r.exit_code == 0, r.output
    # nobody leaves or goes dormant; the label still catches the few customers whose last
    # time deposit matures or who stop transacting for 90 days: 5, fewer than the 20 needed
    _assert_skipped(st, r, logged, "attrition", "too_few_positives",
                    "attrition: 5 positive label(s) in the training snapshots, fewer than min_positives 20")
    nbp = logged["train"]["next_best_product"]
    assert "skipped" not in nbp and nbp["promoted"] and nbp["aliases"] == {"champion": "1"}
    # no attrition champion: the score step says why and still recommends; export writes the drop
    assert "no 'champion'" in logged["score"]["attrition"]["skipped"]
    assert not lake.exists(lake.table_path(st.lake, "gold", "attrition_risk"))
    recs, exported = _recommendations_and_export(spark, st)
    assert recs == logged["score"]["recommendations"] > 0
    assert exported == logged["export"]["rows"] > 0
    _assert_recovery_without_churn_warning(st, r, logged)


def _assert_recovery_without_churn_warning(st, r, logged: dict) -> None:
    """The service-recovery step ran without an attrition model: it says why (run summary,
    ops/run_log), lists nobody for attrition, and wrote its service file."""
    rec = logged["recovery"]
    assert rec["attrition"]["skipped"].startswith("no attrition model: ") and "no 'champion'" in rec["attrition"][
        "skipped"]
    assert rec["by_reason"]["high_attrition_risk"] == 0
    assert rec["rows"] == sum(1 for _ in open(st.lake / "marketing" / "exports" / "service" / AS_OF.isoformat()
                                              / "service_contacts.csv", encoding="utf-8")) - 1
    assert "Service recovery" in r.output


# ---------------------------------------------------------------- (b, c) three months, four sources

@pytest.fixture(scope="module", params=["absent", "header_only"])
def four_sources(request, tmp_path_factory, conf_dir):
    return request.param, _run_bank(tmp_path_factory.mktemp(request.param), conf_dir, days=90, seed=7,
                                    optional=request.param)


def test_three_months_and_four_sources_skip_attrition_and_export(four_sources, spark):
    optional, (st, r, logged) = four_sources
    assert r.exit_code == 0, r.output
    silver = logged["silver"]["rows"]
    if optional == "absent":
        assert not set(OPTIONAL) & set(silver)
    else:
        assert {name: silver[name] for name in OPTIONAL} == dict.fromkeys(OPTIONAL, 0)
    # attrition's month ends (horizon 90 days) are 2026-02-28 and 2026-03-31: before the history
    _assert_skipped(st, r, logged, "attrition", "too_few_snapshots",
                    "0 of 1 training snapshot(s) (2026-02-28) and 0 out-of-time snapshot (2026-03-31) have rows")
    nbp = logged["train"]["next_best_product"]
    assert "skipped" not in nbp and nbp["train_snapshots"] == ["2026-03-31", "2026-04-30"]
    assert nbp["oot_snapshot"] == "2026-05-31" and nbp["promoted"]
    recs, exported = _recommendations_and_export(spark, st)
    assert recs == logged["score"]["recommendations"] > 0
    assert exported == logged["export"]["rows"] > 0
    assert logged["segments"]["customers"] > 0
    _assert_recovery_without_churn_warning(st, r, logged)
    if optional == "absent":  # nothing to list from: said, and the file is empty
        assert logged["recovery"]["rows"] == 0
        assert logged["recovery"]["sources_missing"] == ["feedback", "interactions", "complaints", "attrition_risk"]


# ---------------------------------------------------------------------------- the checks alone

def test_missing_sources_are_a_skip_reason():
    with pytest.raises(training.TrainingSkipped) as err:
        training.require_sources("attrition", {"holdings": 1}, ("holdings",), ("transactions", "events"))
    assert err.value.reason == "missing_sources"
    assert err.value.message == ("attrition needs silver/transactions or events, which the lake does not have "
                                 "(the source was never delivered)")
    with pytest.raises(training.TrainingSkipped, match="missing_sources: next_best_product needs "
                                                       "silver/holdings, silver/product_catalog"):
        training.require_sources("next_best_product", {}, ("holdings", "product_catalog"))
    training.require_sources("attrition", {"holdings": 1, "events": 1}, ("holdings",), ("transactions", "events"))


@pytest.mark.parametrize("stats, reason, message", [
    ([{"snapshot": "2026-04-30", "rows": 10, "positives": 2}], "too_few_snapshots",
     "1 of 1 training snapshot(s) (2026-04-30) and 0 out-of-time snapshot (2026-05-31)"),
    ([{"snapshot": "2026-04-30", "rows": 10, "positives": 0}, {"snapshot": "2026-05-31", "rows": 9, "positives": 1}],
     "single_class", "every one of the 10 training rows (2026-04-30) has label 0"),
    ([{"snapshot": "2026-04-30", "rows": 10, "positives": 4}, {"snapshot": "2026-05-31", "rows": 9, "positives": 0}],
     "single_class", "every one of the 9 out-of-time rows (2026-05-31) has label 0"),
    ([{"snapshot": "2026-04-30", "rows": 10, "positives": 4}, {"snapshot": "2026-05-31", "rows": 9, "positives": 2}],
     "too_few_positives", "4 positive label(s) in the training snapshots, fewer than min_positives 5"),
])
def test_training_data_checks_name_the_reason(stats, reason, message):
    with pytest.raises(training.TrainingSkipped) as err:
        training.check_training_data("attrition", stats, [date(2026, 4, 30)], date(2026, 5, 31), 5, True)
    assert err.value.reason == reason and message in err.value.message
    ok = [{"snapshot": "2026-04-30", "rows": 10, "positives": 5}, {"snapshot": "2026-05-31", "rows": 9, "positives": 2}]
    training.check_training_data("attrition", ok, [date(2026, 4, 30)], date(2026, 5, 31), 5, True)


def test_min_positives_is_validated(tmp_path):
    from c360.settings import ConfigError

    conf = tmp_path / "conf"
    conf.mkdir()
    shutil.copy(DEFAULT_CONF_DIR / "base.yaml", conf / "base.yaml")
    assert load_settings(environ={}).models.attrition.min_positives == 20
    (conf / "models.yaml").write_text("models:\n  attrition:\n    min_positives: 0\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="models.yaml: models.attrition.min_positives"):
        load_settings(conf, environ={})


def test_generator_without_leavers_keeps_the_customers_and_drops_every_exit(tmp_path):
    import pyarrow.parquet as pq

    from c360.synth import generate

    truth = {}
    for leavers in (True, False):
        generate(300, 200, AS_OF, 5, tmp_path / str(leavers), leavers=leavers)
        truth[leavers] = pq.read_table(tmp_path / str(leavers) / "_meta" / "customer_truth.parquet").to_pandas()
    with_, without = truth[True], truth[False]
    assert with_["churned"].sum() > 0 and (with_["dormant"].sum() + with_["winding_down"].sum()) > 0
    assert without[["churned", "dormant", "winding_down"]].sum().tolist() == [0, 0, 0]
    same = ["customer_id", "onboarding_date", "annual_income", "city"]
    assert without[same].equals(with_[same])


def test_score_applies_the_attrition_champion_when_next_best_product_has_none(spark, settings, tmp_path,
                                                                               monkeypatch):
    """Only attrition could be trained: score recommends nothing (and says why) but writes the
    risk scores; export then skips the drop with the score step's reason."""
    from test_scoring import (
        CUSTOMERS,
        catalog_df,
        holdings_df,
        profile_df,
        register_champion,
        train_tiny,
    )

    from jobs import export, score
    from jobs.pipeline import run_step

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    s = settings.with_paths(landing=tmp_path / "landing", lake=tmp_path / "lake")
    lake.write_partition(profile_df(spark), lake.table_path(s.lake, "gold", "customer_360"), "as_of_date",
                         score.partition(AS_OF))
    for name, df in (("product_catalog", catalog_df(spark)), ("holdings", holdings_df(spark))):
        lake.overwrite(df, lake.table_path(s.lake, "silver", name))
    booster, spec = train_tiny("attrition")
    version = register_champion(s, "attrition_risk", booster, spec)

    m = run_step(spark, s, "score", AS_OF).metrics
    assert "no 'champion'" in m["skipped"] and "next_best_product" in m["skipped"]
    assert m["attrition"]["model_version"] == version and m["attrition"]["customers"] == len(CUSTOMERS)
    risk = lake.read(spark, lake.table_path(s.lake, "gold", "attrition_risk")).where(score.partition(AS_OF))
    assert risk.count() == len(CUSTOMERS)
    assert not lake.exists(lake.table_path(s.lake, "gold", "recommendations"))
    e = run_step(spark, s, "export", AS_OF).metrics
    assert e == {"skipped": f"nothing was scored for {AS_OF}: {m['skipped']}"}
    assert not (export.export_root(s) / AS_OF.isoformat()).exists()

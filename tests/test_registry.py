"""models.registry: the promotion gate, alone and on a real MLflow sqlite registry."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.frame import fit_spec, prepare
from models.registry import (
    CHALLENGER,
    CHAMPION,
    NoChampionError,
    apply_gate,
    load_champion,
    mlflow_session,
    promote,
    tracking_uri,
)


@pytest.mark.unit
def test_promote_gate_is_a_pure_function():
    # first version: must beat the baseline (by more than the margin)
    assert promote(0.12, None, 0.10) is True
    assert promote(0.10, None, 0.10) is False
    assert promote(0.08, None, 0.10) is False
    assert promote(0.56, None, 0.5, margin=0.05) is True   # attrition: AUC > 0.5 + margin
    assert promote(0.54, None, 0.5, margin=0.05) is False
    # with a champion: at least as good as the champion, whatever the baseline
    assert promote(0.15, 0.14, 0.20) is True
    assert promote(0.14, 0.14, 0.20) is True
    assert promote(0.139, 0.14, 0.01) is False
    # missing values never promote, a champion without a metric falls back to the baseline
    assert promote(None, 0.1, 0.0) is False
    assert promote(math.nan, None, 0.0) is False
    assert promote(0.2, math.nan, 0.1) is True
    assert promote(0.2, None, None) is False


@pytest.mark.unit
def test_tracking_uri_defaults_to_sqlite_in_the_lake_and_env_wins(lake_settings, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    lake = lake_settings.lake.resolve()
    assert tracking_uri(lake_settings) == f"sqlite:///{lake}/mlflow.db"
    assert tracking_uri(lake_settings).startswith("sqlite:////")  # absolute path
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")
    assert tracking_uri(lake_settings) == "http://mlflow.internal:5000"


def test_mlflow_session_does_not_leak_the_uri_into_the_environment(lake_settings, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with mlflow_session(lake_settings):
        assert os.environ["MLFLOW_TRACKING_URI"] == tracking_uri(lake_settings)
    assert "MLFLOW_TRACKING_URI" not in os.environ and "MLFLOW_REGISTRY_URI" not in os.environ


@pytest.fixture(scope="module")
def registry_settings(settings, tmp_path_factory):
    """One lake (and MLflow sqlite database) shared by the registry tests of this module."""
    root = tmp_path_factory.mktemp("registry")
    return settings.with_paths(landing=root / "landing", lake=root / "lake")


@pytest.fixture
def no_env_uri(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def _tiny_model(seed: int):
    import lightgbm as lgb

    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"customer_id": [f"C{i}" for i in range(120)], "x": rng.normal(size=120),
                       "product_code": rng.choice(["FD010", "TD003"], 120)})
    y = (df["x"] + rng.normal(0, 0.5, 120) > 0).astype(int)
    spec = fit_spec(df)
    X = prepare(df, spec)
    booster = lgb.LGBMClassifier(n_estimators=5, num_leaves=4, min_child_samples=5, verbose=-1,
                                 n_jobs=1).fit(X, y).booster_
    return booster, spec, X


def _log_version(settings, name: str, metric: float, seed: int, kind: str = "binary") -> str:
    """A training run as models.nbp logs it: metric, feature_spec.json, registered model."""
    import mlflow

    from models import registry, training

    booster, spec, X = _tiny_model(seed)
    with mlflow_session(settings) as client:
        exp = registry.ensure_experiment(client, settings, "c360-test")
        with mlflow.start_run(experiment_id=exp):
            mlflow.log_param("model_kind", kind)
            mlflow.log_metric("map_at_7", metric)
            mlflow.log_text(spec.to_json(), registry.SPEC_ARTIFACT)
            version = training.log_lightgbm_model(booster, X, name)
            client.set_model_version_tag(name, version, registry.KIND_TAG, kind)
    return version


def test_gate_on_a_real_sqlite_registry(registry_settings, no_env_uri):
    lake_settings = registry_settings
    name, baseline = "nbp_gate_test", 0.12

    # v1 does not beat the popularity baseline: challenger only, no champion
    v1 = _log_version(lake_settings, name, 0.10, seed=1)
    g1 = apply_gate(lake_settings, name, v1, "map_at_7", 0.10, baseline)
    assert (v1, g1.promoted, g1.aliases) == ("1", False, {CHALLENGER: "1"})
    with pytest.raises(NoChampionError, match="nbp_gate_test"):
        load_champion(lake_settings, name)

    # v2 beats the baseline: champion (and no longer challenger)
    v2 = _log_version(lake_settings, name, 0.15, seed=2, kind="ranker")
    g2 = apply_gate(lake_settings, name, v2, "map_at_7", 0.15, baseline)
    assert (g2.promoted, g2.previous_champion, g2.aliases) == (True, None, {CHAMPION: "2"})

    # v3 is worse than the champion (its logged map_at_7 is read from its run): stays challenger
    v3 = _log_version(lake_settings, name, 0.13, seed=3)
    g3 = apply_gate(lake_settings, name, v3, "map_at_7", 0.13, baseline)
    assert (g3.promoted, g3.champion_metric, g3.previous_champion) == (False, pytest.approx(0.15), "2")
    assert g3.aliases == {CHAMPION: "2", CHALLENGER: "3"}
    champ = load_champion(lake_settings, name)
    assert (champ.version, champ.kind, champ.name) == ("2", "ranker", name)

    # v4 measured against the champion re-evaluated on the same data (0.16): better -> champion
    v4 = _log_version(lake_settings, name, 0.17, seed=4)
    g4 = apply_gate(lake_settings, name, v4, "map_at_7", 0.17, baseline, champion_metric=0.16)
    assert (g4.promoted, g4.champion_metric, g4.aliases) == (True, 0.16, {CHAMPION: "4"})

    champ = load_champion(lake_settings, name)
    booster, spec, X = _tiny_model(4)
    assert (champ.version, champ.kind) == ("4", "binary")
    assert champ.spec == spec
    assert champ.metrics["map_at_7"] == pytest.approx(0.17)
    np.testing.assert_allclose(champ.booster.predict(prepare(X, champ.spec)), booster.predict(X))
    # runs and models keep their artifacts under <lake>/mlruns
    with mlflow_session(lake_settings) as client:
        exp = client.get_experiment_by_name("c360-test")
    assert exp.artifact_location == (lake_settings.lake.resolve() / "mlruns" / "c360-test").as_uri()
    assert any((lake_settings.lake / "mlruns" / "c360-test").rglob("feature_spec.json"))


def test_first_attrition_version_needs_auc_above_half_plus_margin(registry_settings, no_env_uri):
    lake_settings = registry_settings
    v1 = _log_version(lake_settings, "attrition_gate_test", 0.0, seed=5)
    assert apply_gate(lake_settings, "attrition_gate_test", v1, "auc", 0.53, 0.5, margin=0.05).promoted is False
    v2 = _log_version(lake_settings, "attrition_gate_test", 0.0, seed=6)
    g = apply_gate(lake_settings, "attrition_gate_test", v2, "auc", 0.58, 0.5, margin=0.05)
    assert g.promoted is True and g.aliases == {CHAMPION: "2"}


# ---------------------------------------------------------------------------- only LightGBM text, as promoted

def _model_dir(settings, name: str, version: str):
    """The local folder holding the artifacts of a registered version (file store in the lake)."""
    from urllib.parse import urlparse

    from models.registry import mlflow_session

    with mlflow_session(settings) as client:
        uri = client.get_model_version_download_uri(name, version)
    return Path(urlparse(uri).path)


def _register_as_champion(settings, name: str, log) -> str:
    """A run with the feature spec whose model ``log(registered_model_name)`` logs; champion."""
    import mlflow

    from models import registry

    _, spec, _ = _tiny_model(1)
    with mlflow_session(settings) as client:
        exp = registry.ensure_experiment(client, settings, "c360-test")
        with mlflow.start_run(experiment_id=exp):
            mlflow.log_text(spec.to_json(), registry.SPEC_ARTIFACT)
            version = str(log(name).registered_model_version)
        client.set_registered_model_alias(name, CHAMPION, version)
    return version


def test_a_pickled_champion_is_refused_and_never_unpickled(registry_settings, no_env_uri, tmp_path):
    import pickle

    import lightgbm as lgb
    import mlflow
    from mlflow.exceptions import MlflowException

    from jobs.score import champion_or_none
    from models.registry import ModelRefusedError

    _, _, X = _tiny_model(1)
    y = (X["x"] > 0).astype(int)
    wrapper = lgb.LGBMClassifier(n_estimators=3, num_leaves=4, min_child_samples=5, verbose=-1, n_jobs=1).fit(X, y)
    name = "nbp_pickled_test"
    version = _register_as_champion(registry_settings, name, lambda n: mlflow.lightgbm.log_model(
        wrapper, name="model", registered_model_name=n, serialization_format="cloudpickle",
        pip_requirements=["lightgbm"]))
    # whoever can write the store swaps the pickle for one that runs code when it is loaded
    marker = tmp_path / "code-ran"

    class Payload:
        def __reduce__(self):
            return eval, (f"__import__('pathlib').Path({str(marker)!r}).write_text('ran') "
                          f"and __import__('pickle').loads({pickle.dumps(wrapper)!r})",)

    (_model_dir(registry_settings, name, version) / "model.pkl").write_bytes(pickle.dumps(Payload()))

    with pytest.raises(ModelRefusedError, match=rf"{name} version {version}.*lightgbm.sklearn.LGBMClassifier"):
        load_champion(registry_settings, name)  # before: unpickled (the marker written), then used
    assert not marker.exists()
    # the score step skips that model with the reason (as without a champion), it does not fail
    champion, why = champion_or_none(registry_settings, name)
    assert champion is None and f"{name} version {version}" in why and "refused" in why
    # and MLflow's own loaders refuse pickles inside a session of this project
    with mlflow_session(registry_settings):
        with pytest.raises(MlflowException, match="MLFLOW_ALLOW_PICKLE_DESERIALIZATION"):
            mlflow.lightgbm.load_model(f"models:/{name}/{version}")
    assert not marker.exists()

    # a pyfunc model (a cloudpickled Python object): refused by name and version, not a crash
    class Echo(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return model_input

    name = "nbp_pyfunc_test"
    version = _register_as_champion(registry_settings, name, lambda n: mlflow.pyfunc.log_model(
        name="model", python_model=Echo(), registered_model_name=n, pip_requirements=["lightgbm"]))
    with pytest.raises(ModelRefusedError, match=rf"{name} version {version}.*no LightGBM flavour"):
        load_champion(registry_settings, name)  # before: an MlflowException the score step did not catch


def test_the_champion_must_match_the_hash_recorded_when_it_was_registered(registry_settings, no_env_uri):
    import hashlib
    import re

    import mlflow

    from jobs.score import champion_or_none
    from models.registry import MODEL_HASH_TAG, ModelRefusedError, record_model_hash

    name = "nbp_tamper_test"
    version = _log_version(registry_settings, name, 0.2, seed=7)
    assert apply_gate(registry_settings, name, version, "map_at_7", 0.2, 0.1).promoted
    stored = _model_dir(registry_settings, name, version) / "model.lgb"
    text = stored.read_bytes()
    with mlflow_session(registry_settings) as client:
        tag = client.get_model_version(name, version).tags[MODEL_HASH_TAG]
    assert tag == hashlib.sha256(text).hexdigest()  # recorded at registration
    champ = load_champion(registry_settings, name)
    assert champ.sha256 == tag and champ.booster.model_to_string().encode("utf-8") == text

    # one leaf value changed in the stored artifact: a valid LightGBM model, another one
    tampered = re.sub(rb"leaf_value=(\S+)", b"leaf_value=9.5", text, count=1)
    assert tampered != text
    stored.write_bytes(tampered)
    with pytest.raises(ModelRefusedError, match=rf"{name} version {version}: .*SHA-256"):
        load_champion(registry_settings, name)  # before: loaded and scored with
    champion, why = champion_or_none(registry_settings, name)
    assert champion is None and "SHA-256" in why
    stored.write_bytes(text)
    assert load_champion(registry_settings, name).version == version

    # a version registered without a hash (by hand, or before hashes were recorded) is refused
    # until someone who checked it records one
    booster, _, _ = _tiny_model(8)
    name = "nbp_unhashed_test"
    version = _register_as_champion(registry_settings, name, lambda n: mlflow.lightgbm.log_model(
        booster, name="model", registered_model_name=n, pip_requirements=["lightgbm"]))
    with pytest.raises(ModelRefusedError, match=rf"{name} version {version}: .*no {MODEL_HASH_TAG} tag"):
        load_champion(registry_settings, name)
    assert record_model_hash(registry_settings, name, version) == hashlib.sha256(
        booster.model_to_string().encode("utf-8")).hexdigest()
    assert load_champion(registry_settings, name).booster.model_to_string() == booster.model_to_string()


def test_the_calibration_map_is_verified_with_the_champion(registry_settings, no_env_uri):
    """A version's calibration.json (isotonic breakpoints) is hashed at registration and
    checked when the champion is loaded, like its model text; a version without one is
    loaded with no calibration and the reason."""
    from urllib.parse import urlparse

    import mlflow

    from models.calibration import fit_isotonic
    from models.registry import CALIBRATION_HASH_TAG, ModelRefusedError, hash_calibration

    cal = fit_isotonic([-1.0, 0.0, 1.0, 2.0], [0, 1, 0, 1])
    text = cal.to_json()
    name = "nbp_calibrated_test"
    version = _log_version(registry_settings, name, 0.2, seed=11)
    assert apply_gate(registry_settings, name, version, "map_at_7", 0.2, 0.1).promoted
    # registered before calibration: loaded, no map, and why
    before = load_champion(registry_settings, name)
    assert before.calibration is None and "no calibration" in before.calibration_missing
    with mlflow_session(registry_settings) as client:
        run_id = client.get_model_version(name, version).run_id
        with pytest.raises(ModelRefusedError, match="not the calibration that was logged"):
            hash_calibration(client, name, version, text)  # nothing stored yet
        with mlflow.start_run(run_id=run_id):
            mlflow.log_text(text, "calibration.json")
        digest = hash_calibration(client, name, version, text)
        assert client.get_model_version(name, version).tags[CALIBRATION_HASH_TAG] == digest
        stored = Path(urlparse(client.get_run(run_id).info.artifact_uri).path) / "calibration.json"
    champ = load_champion(registry_settings, name)
    assert champ.calibration == cal and champ.calibration_missing == ""
    assert champ.calibration.apply([-0.5, 1.5]).tolist() == pytest.approx(cal.apply([-0.5, 1.5]).tolist())

    # a changed map (still a valid one) is refused with the champion
    stored.write_text(text.replace(str(cal.y[-1]), "0.99", 1), encoding="utf-8")
    with pytest.raises(ModelRefusedError, match=rf"{name} version {version}: .*calibration.json.*changed"):
        load_champion(registry_settings, name)
    stored.unlink()
    with pytest.raises(ModelRefusedError, match="calibration.json.*missing"):
        load_champion(registry_settings, name)
    stored.write_text(text, encoding="utf-8")
    assert load_champion(registry_settings, name).calibration == cal

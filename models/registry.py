"""MLflow tracking and model registry: where runs go, the promotion gate, the champion.

- Tracking URI: ``$MLFLOW_TRACKING_URI``, else ``sqlite:///<lake>/mlflow.db`` (absolute);
  experiments created here keep their artifacts under ``<lake>/mlruns``.
- Every trained version of a registered model first gets the alias ``challenger``. The
  gate (:func:`promote`, a pure function) decides whether it also becomes ``champion``;
  a promoted version loses ``challenger`` (that alias always names a version that was
  evaluated and *not* promoted).
- Scoring reads only ``champion`` through :func:`load_champion`: the LightGBM booster, the
  :class:`~models.frame.FeatureSpec` saved with it (``feature_spec.json``), its kind.

Loading a model must not run code that whoever can write the tracking store put there
(scoring runs as the account that reads the customers' data). So the champion is read only
as LightGBM model text (``model.lgb`` of MLflow's ``lightgbm`` flavour for a ``Booster``),
parsed by LightGBM, never through MLflow's loaders: any other model (a scikit-learn wrapper
or a ``python_function`` model, which MLflow keeps as pickles) is refused
(:class:`ModelRefusedError`, naming model and version), and inside :func:`mlflow_session`
MLflow's own pickle loading is off (``MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false``). When a
version is registered, the SHA-256 of its model text is recorded as the version's tag
``model_sha256`` (:func:`hash_model_version`); :func:`load_champion` refuses a champion
whose stored text no longer has that hash, or that has none.

A next-best-product version also carries its calibration map (:mod:`models.calibration`:
isotonic breakpoints fitted on the out-of-time snapshot), the run artifact
``calibration.json``, whose SHA-256 is recorded as the version's tag ``calibration_sha256``
(:func:`hash_calibration`). :func:`load_champion` parses it as JSON breakpoints (never as
code) and refuses the champion when the artifact no longer has that hash or is not a
monotone map within [0, 1]; a version without the tag (registered before calibration
existed, or an attrition model) is loaded with ``calibration`` None and the reason.

MLflow keeps the tracking URI in a process global *and* in ``os.environ``; every function
here sets it only for its own duration (:func:`mlflow_session`) and restores both after, so
two lakes in one process (tests) never mix.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.frame import FeatureSpec

if TYPE_CHECKING:  # heavy imports stay lazy: `import models.registry` must be cheap
    import lightgbm
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from c360.settings import Settings
    from models.calibration import Calibration

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
SPEC_ARTIFACT = "feature_spec.json"
KIND_TAG = "kind"           # model version tag: "ranker" | "binary"
METRIC_TAG = "gate_metric"  # model version tag: the metric the gate compared
MODEL_HASH_TAG = "model_sha256"  # model version tag: SHA-256 of its model text, recorded at registration
CALIBRATION_HASH_TAG = "calibration_sha256"  # model version tag: SHA-256 of its run's calibration.json
CALIBRATION_ARTIFACT = "calibration.json"    # models.calibration.ARTIFACT (imported lazily: it needs Spark)
MODEL_FILE = "model.lgb"    # the model text in MLflow's lightgbm flavour of a Booster
BOOSTER_CLASS = "lightgbm.basic.Booster"


class NoChampionError(LookupError):
    """The registered model has no ``champion`` version (or does not exist)."""


class ModelRefusedError(NoChampionError):
    """A version is not loaded: it is not a LightGBM text model (loading it would unpickle,
    i.e. run, whatever the artifact holds), or its model text does not have the SHA-256
    recorded when it was registered. For the score step the model has no usable champion."""


@dataclass
class ChampionModel:
    booster: "lightgbm.Booster"
    spec: FeatureSpec
    version: str
    kind: str  # "ranker" | "binary"
    run_id: str
    name: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    sha256: str = ""  # of the model text, as recorded at registration
    calibration: Calibration | None = None  # raw score -> adoption probability (models.calibration)
    calibration_missing: str = ""  # why ``calibration`` is None


# ---------------------------------------------------------------------------- the gate

def promote(new_metric: float | None, champion_metric: float | None, baseline: float | None,
            margin: float = 0.0) -> bool:
    """Should a new version become champion?

    With a champion: when ``new_metric >= champion_metric`` (both measured on the same
    out-of-time data by the caller). Without one (first version, or a champion whose
    metric cannot be found): when ``new_metric > baseline + margin``. A missing or NaN new
    metric never promotes.
    """
    def ok(x: float | None) -> bool:
        return x is not None and not math.isnan(float(x))

    if not ok(new_metric):
        return False
    if ok(champion_metric):
        return float(new_metric) >= float(champion_metric)
    if not ok(baseline):
        return False
    return float(new_metric) > float(baseline) + margin


# ---------------------------------------------------------------------------- tracking

def tracking_uri(settings: "Settings") -> str:
    """``$MLFLOW_TRACKING_URI`` or ``sqlite:///<absolute lake>/mlflow.db``. A lake on object
    storage has no default: SQLite needs a local file, so MLflow's store must be named."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    from c360 import storage

    if storage.is_uri(settings.lake):
        raise storage.StorageError(
            f"lake {settings.lake} is on object storage, where MLflow's default store (SQLite in the lake) cannot "
            "work: set MLFLOW_TRACKING_URI to a tracking server (http://...) or a database (e.g. "
            "sqlite:////var/lib/c360/mlflow.db)")
    return f"sqlite:///{Path(settings.lake).resolve() / 'mlflow.db'}"


def artifact_root(settings: "Settings") -> str | None:
    """``file://`` URI of ``<lake>/mlruns`` (artifact location of experiments created here).
    For a lake on object storage: ``mlruns`` beside a SQLite store named by
    ``MLFLOW_TRACKING_URI``, else None (the tracking server's own artifact store)."""
    from c360 import storage

    if storage.is_uri(settings.lake):
        uri = tracking_uri(settings)
        if uri.startswith("sqlite:///"):
            return (Path(uri[len("sqlite:///"):]).resolve().parent / "mlruns").as_uri()
        return None
    return (Path(settings.lake).resolve() / "mlruns").as_uri()


NO_PICKLE = "MLFLOW_ALLOW_PICKLE_DESERIALIZATION"


@contextmanager
def mlflow_session(settings: "Settings") -> Iterator["MlflowClient"]:
    """Point MLflow (fluent API and a client) at this lake's tracking URI for the block, with
    its pickle deserialisation off."""
    import mlflow
    from mlflow import MlflowClient

    uri = tracking_uri(settings)
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", NO_PICKLE)}
    os.environ[NO_PICKLE] = "false"  # MLflow's loaders refuse pickled models (read per load)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield MlflowClient(tracking_uri=uri, registry_uri=uri)
    finally:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def ensure_experiment(client: "MlflowClient", settings: "Settings", name: str) -> str:
    """The experiment's id, creating it with its artifacts under ``<lake>/mlruns``."""
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    root = artifact_root(settings)
    return client.create_experiment(name, artifact_location=f"{root}/{name}" if root else None)


# ---------------------------------------------------------------------------- registry

def _version_by_alias(client: "MlflowClient", name: str, alias: str) -> "ModelVersion | None":
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def aliases(client: "MlflowClient", name: str) -> dict[str, str]:
    """{alias: version} of a registered model ({} when it does not exist)."""
    from mlflow.exceptions import MlflowException

    try:
        return {a: str(v) for a, v in client.get_registered_model(name).aliases.items()}
    except MlflowException:
        return {}


def version_metric(client: "MlflowClient", version: "ModelVersion", key: str) -> float | None:
    """The metric ``key`` logged by the run that produced ``version``."""
    if not version.run_id:
        return None
    value = client.get_run(version.run_id).data.metrics.get(key)
    return None if value is None else float(value)


@dataclass
class GateResult:
    name: str
    version: str
    promoted: bool
    metric: str
    new_metric: float | None
    champion_metric: float | None
    baseline: float | None
    previous_champion: str | None
    aliases: dict[str, str]


def apply_gate(settings: "Settings", name: str, version: str, metric: str, new_metric: float | None,
               baseline: float | None, margin: float = 0.0, champion_metric: float | None = None) -> GateResult:
    """Alias a new ``version`` ``challenger``, then make it ``champion`` when :func:`promote` says so.

    ``champion_metric``: the current champion measured on the same data as the new
    version; when None, the metric ``metric`` logged by the champion's own run is used.
    """
    version = str(version)
    with mlflow_session(settings) as client:
        current = _version_by_alias(client, name, CHAMPION)
        previous = str(current.version) if current is not None else None
        if current is not None and previous == version:
            current = previous = None  # re-gating the champion itself: compare to the baseline
        if current is not None and champion_metric is None:
            champion_metric = version_metric(client, current, metric)
            if champion_metric is None:
                log.warning("%s champion version %s has no metric %s: the gate compares to the baseline",
                            name, previous, metric)
        client.set_registered_model_alias(name, CHALLENGER, version)
        ok = promote(new_metric, champion_metric if current is not None else None, baseline, margin)
        client.set_model_version_tag(name, version, METRIC_TAG, metric)
        client.set_model_version_tag(name, version, "gate", "promoted" if ok else "not promoted")
        if ok:
            client.set_registered_model_alias(name, CHAMPION, version)
            client.delete_registered_model_alias(name, CHALLENGER)
        return GateResult(name, version, ok, metric, new_metric, champion_metric, baseline, previous,
                          aliases(client, name))


def _flavour_problem(mlmodel: Any) -> str | None:
    """None when an ``MLmodel`` document describes a LightGBM Booster saved as model text
    (flavours ``lightgbm`` and MLflow's own ``python_function`` for it, nothing else), else why not."""
    flavours = mlmodel.get("flavors") if isinstance(mlmodel, dict) else None
    flavours = flavours if isinstance(flavours, dict) else {}
    lgb = flavours.get("lightgbm")
    if not isinstance(lgb, dict):
        return f"no LightGBM flavour (flavours: {', '.join(map(str, flavours)) or 'none'})"
    if lgb.get("model_class") != BOOSTER_CLASS:
        return (f"its lightgbm flavour holds a {lgb.get('model_class')} ({lgb.get('serialization_format')}), "
                "which loading would unpickle; only Booster model text is loaded")
    if lgb.get("data") != MODEL_FILE or lgb.get("code"):
        return f"its lightgbm flavour reads {lgb.get('data')!r} (code {lgb.get('code')!r}), not {MODEL_FILE!r} alone"
    others = sorted(map(str, set(flavours) - {"lightgbm", "python_function"}))
    pyfunc = flavours.get("python_function", {})
    if others or not isinstance(pyfunc, dict) or (pyfunc and (
            pyfunc.get("loader_module") != "mlflow.lightgbm" or pyfunc.get("code") or "python_model" in pyfunc)):
        return f"other flavours or a python_function that is not LightGBM's own ({', '.join(others) or 'pyfunc'})"
    return None


def _model_text(client: "MlflowClient", name: str, version: str) -> bytes:
    """The stored model text of a version, after :func:`_flavour_problem` accepted its ``MLmodel``
    (read as plain YAML); :class:`ModelRefusedError` otherwise. Nothing is unpickled."""
    import yaml
    from mlflow.artifacts import download_artifacts

    uri = client.get_model_version_download_uri(name, version)
    with tempfile.TemporaryDirectory() as tmp:
        mlmodel = Path(download_artifacts(artifact_uri=f"{uri}/MLmodel", dst_path=tmp))
        try:
            problem = _flavour_problem(yaml.safe_load(mlmodel.read_text(encoding="utf-8")))
        except (UnicodeDecodeError, yaml.YAMLError) as exc:
            problem = f"its MLmodel file cannot be read ({type(exc).__name__})"
        if problem:
            raise ModelRefusedError(f"model {name} version {version}: refused, not a LightGBM text model: {problem}")
        return Path(download_artifacts(artifact_uri=f"{uri}/{MODEL_FILE}", dst_path=tmp)).read_bytes()


def hash_model_version(client: "MlflowClient", name: str, version: str, expected_text: str | None = None) -> str:
    """Record the SHA-256 of the stored model text of ``version`` as its tag ``model_sha256``
    and return it. With ``expected_text`` (the booster just logged) the stored text must be
    exactly that text; :class:`ModelRefusedError` otherwise, or when the version is not a
    LightGBM text model."""
    data = _model_text(client, name, str(version))
    if expected_text is not None and data != expected_text.encode("utf-8"):
        raise ModelRefusedError(f"model {name} version {version}: refused, its stored {MODEL_FILE} is not the "
                                "model that was logged")
    digest = hashlib.sha256(data).hexdigest()
    client.set_model_version_tag(name, str(version), MODEL_HASH_TAG, digest)
    return digest


def _run_artifact(client: "MlflowClient", run_id: str, path: str) -> bytes | None:
    """The bytes of run artifact ``path``, None when the run has no such artifact."""
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory() as tmp:
        try:
            return Path(client.download_artifacts(run_id, path, tmp)).read_bytes()
        except (MlflowException, OSError):
            return None


def hash_calibration(client: "MlflowClient", name: str, version: str, expected_text: str) -> str:
    """Record the SHA-256 of the calibration map stored with ``version`` (its run's
    ``calibration.json``) as the version's tag ``calibration_sha256`` and return it; the
    stored map must be exactly ``expected_text`` (the map just logged), a valid map
    (:meth:`models.calibration.Calibration.from_json`); :class:`ModelRefusedError` otherwise."""
    from models.calibration import Calibration

    mv = client.get_model_version(name, str(version))
    data = _run_artifact(client, mv.run_id, CALIBRATION_ARTIFACT) if mv.run_id else None
    if data is None or data != expected_text.encode("utf-8"):
        raise ModelRefusedError(f"model {name} version {version}: refused, its stored {CALIBRATION_ARTIFACT} is "
                                "not the calibration that was logged")
    Calibration.from_json(expected_text)
    digest = hashlib.sha256(data).hexdigest()
    client.set_model_version_tag(name, str(version), CALIBRATION_HASH_TAG, digest)
    return digest


def load_calibration(client: "MlflowClient", name: str, mv: "ModelVersion") -> tuple[Calibration | None, str]:
    """(calibration map of version ``mv``, "") after checking it against its recorded hash, or
    (None, why) when the version has no ``calibration_sha256`` tag; :class:`ModelRefusedError`
    when the tag is there and the artifact is missing, changed or not a valid map."""
    from models.calibration import Calibration, CalibrationError

    version, recorded = str(mv.version), (mv.tags or {}).get(CALIBRATION_HASH_TAG)
    if not recorded:
        return None, (f"model {name} version {version} has no calibration (no {CALIBRATION_HASH_TAG} tag: "
                      "registered before calibrated scores, or not a next-best-product model)")
    data = _run_artifact(client, mv.run_id, CALIBRATION_ARTIFACT) if mv.run_id else None
    if data is None:
        raise ModelRefusedError(f"model {name} version {version}: refused, its {CALIBRATION_ARTIFACT} "
                                f"(hash recorded as {CALIBRATION_HASH_TAG}) is missing")
    digest = hashlib.sha256(data).hexdigest()
    if not hmac.compare_digest(digest, str(recorded)):
        raise ModelRefusedError(
            f"model {name} version {version}: refused, the SHA-256 of its {CALIBRATION_ARTIFACT} ({digest[:12]}...) "
            f"is not the one recorded at registration ({str(recorded)[:12]}...): the calibration was changed")
    try:
        return Calibration.from_json(data.decode("utf-8")), ""
    except (UnicodeDecodeError, CalibrationError) as exc:
        raise ModelRefusedError(f"model {name} version {version}: refused, its {CALIBRATION_ARTIFACT} is not a "
                                f"calibration map ({exc})") from exc


def record_model_hash(settings: "Settings", name: str, version: str) -> str:
    """:func:`hash_model_version` for a version registered without a hash (by hand, or before
    hashes were recorded): whoever runs it vouches for the stored model text."""
    with mlflow_session(settings) as client:
        return hash_model_version(client, name, version)


def load_champion(settings: "Settings", name: str) -> ChampionModel:
    """The ``champion`` version of registered model ``name``: booster, feature spec, kind.

    The booster is parsed by LightGBM from the version's model text, whose SHA-256 must be
    the one recorded at registration; so must its calibration map's, when it has one
    (:func:`load_calibration`). Raises :class:`NoChampionError` (naming the model)
    when there is none, :class:`ModelRefusedError` (naming model and version, and why) when
    it is not a LightGBM text model, has no recorded hash or no longer matches it.
    """
    import lightgbm as lgb

    with mlflow_session(settings) as client:
        mv = _version_by_alias(client, name, CHAMPION)
        if mv is None:
            raise NoChampionError(
                f"registered model {name!r} has no '{CHAMPION}' version in {tracking_uri(settings)}: "
                "run the train step first (or check that a trained version passed the promotion gate)")
        version = str(mv.version)
        data = _model_text(client, name, version)
        digest, recorded = hashlib.sha256(data).hexdigest(), (mv.tags or {}).get(MODEL_HASH_TAG)
        if not recorded:
            raise ModelRefusedError(
                f"model {name} version {version}: refused, it has no {MODEL_HASH_TAG} tag (the hash of its {MODEL_FILE} "
                "recorded at registration): retrain, or check it and run models.registry.record_model_hash")
        if not hmac.compare_digest(digest, str(recorded)):
            raise ModelRefusedError(
                f"model {name} version {version}: refused, the SHA-256 of its {MODEL_FILE} ({digest[:12]}...) is "
                f"not the one recorded at registration ({str(recorded)[:12]}...): the artifact was changed")
        try:
            booster = lgb.Booster(model_str=data.decode("utf-8"))
        except (UnicodeDecodeError, lgb.basic.LightGBMError) as exc:
            raise ModelRefusedError(f"model {name} version {version}: refused, LightGBM cannot read its "
                                    f"{MODEL_FILE} ({type(exc).__name__}: {str(exc)[:100]})") from exc
        with tempfile.TemporaryDirectory() as tmp:
            path = client.download_artifacts(mv.run_id, SPEC_ARTIFACT, tmp)
            spec = FeatureSpec.from_json(Path(path).read_text(encoding="utf-8"))
        calibration, missing = load_calibration(client, name, mv)
        run = client.get_run(mv.run_id)
        kind = (mv.tags or {}).get(KIND_TAG) or run.data.params.get("model_kind") or "binary"
        return ChampionModel(booster=booster, spec=spec, version=version, kind=kind, run_id=mv.run_id,
                             name=name, metrics=dict(run.data.metrics), sha256=digest, calibration=calibration,
                             calibration_missing=missing)


def champion_or_none(settings: "Settings", name: str) -> ChampionModel | None:
    """The champion, or None when there is none or it cannot be loaded (then logged: the
    gate falls back to the metric the champion's own run logged)."""
    try:
        return load_champion(settings, name)
    except ModelRefusedError as exc:
        log.warning("champion of %s is not re-evaluated: %s", name, exc)
        return None
    except NoChampionError:
        return None
    except Exception as exc:  # noqa: BLE001 - a broken champion must not block training
        log.warning("champion of %s cannot be loaded (%s: %s); it is not re-evaluated", name,
                    type(exc).__name__, exc)
        return None


def describe(settings: "Settings", name: str) -> dict[str, Any]:
    """Aliases and latest version of a registered model, for reports."""
    with mlflow_session(settings) as client:
        al = aliases(client, name)
        try:
            versions = client.search_model_versions(f"name = '{name}'")
        except Exception:  # noqa: BLE001 - registry not created yet
            versions = []
        latest = max((int(v.version) for v in versions), default=None)
    return {"aliases": al, "latest_version": None if latest is None else str(latest)}


__all__ = ["ChampionModel", "NoChampionError", "ModelRefusedError", "GateResult", "promote", "hash_model_version",
           "hash_calibration", "load_calibration",
           "record_model_hash", "tracking_uri", "artifact_root",
           "mlflow_session", "ensure_experiment", "apply_gate", "load_champion", "champion_or_none", "aliases",
           "describe"]

"""Machinery shared by the model trainers (:mod:`models.nbp`, :mod:`models.attrition`).

- Snapshot features: the ``gold/customer_360`` partition of a month end, computed with the
  profile job's own code and written there when it is missing (:func:`snapshot_profile`).
- Scratch tables: labelled snapshots and OOT scores are materialised once as Delta tables
  under ``<lake>/ops/_scratch/<id>`` (deleted afterwards), so the many evaluation
  queries do not recompute the candidate joins.
- Bounded driver data: :func:`bounded_sample` is the only way training rows reach pandas.
- In-engine scoring: :func:`score_in_engine` applies LightGBM boosters with
  ``mapInArrow`` (model strings captured in the closure, :func:`models.frame.matrix`
  inside), so evaluation and the daily scoring never collect the candidates.
- LightGBM fitting, charts, HTML report, MLflow model logging.
"""

from __future__ import annotations

import html
import json
import logging
import math
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from c360 import csvsafe, lake, storage
from c360.settings import ConfigError, LgbmParams, Models, Sampling, Settings
from models.frame import FeatureSpec, fit_spec

log = logging.getLogger(__name__)

# Helper columns of training frames: never model inputs.
GROUP_POSITIVE = "_group_positive"
WEIGHT = "_weight"
HELPER_COLUMNS = {GROUP_POSITIVE, WEIGHT, "snapshot_date", "as_of_date", "tags", "label"}

Progress = Any  # callable(stage, done, total) or None


def models_settings(settings: Settings) -> Models:
    if settings.models is None:
        raise ConfigError("conf/models.yaml: the models block is missing (training needs it)")
    return settings.models


def step(progress: Progress, stage: str, done: int, total: int) -> None:
    if progress:
        progress(stage, done, total)


# ---------------------------------------------------------------------------- skipping

# Why a model cannot be trained on a lake's data: reason code -> what it means.
SKIP_REASONS = {
    "missing_sources": "a source the model needs was never delivered (no silver table)",
    "too_few_snapshots": "the out-of-time snapshot or every training snapshot has no rows (history too short)",
    "single_class": "every labelled row has the same label: nothing to learn or to evaluate",
    "too_few_positives": "fewer positive labels in the training snapshots than models.<task>.min_positives",
}


class TrainingSkipped(Exception):
    """A model the lake's data cannot train: ``reason`` (a code of :data:`SKIP_REASONS`) and a
    one-sentence ``message``. Raised by the trainers' checks before anything is fitted; the
    train step records it (``ops/run_log``, an MLflow run tagged ``skipped``) and goes on
    with the other model (:func:`jobs.train.run`)."""

    def __init__(self, reason: str, message: str):
        if reason not in SKIP_REASONS:
            raise ValueError(f"unknown skip reason {reason!r}; reasons are {', '.join(SKIP_REASONS)}")
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


def require_sources(task: str, tables: dict, required: tuple[str, ...], one_of: tuple[str, ...] = ()) -> None:
    """:class:`TrainingSkipped` (``missing_sources``) unless every ``required`` silver table and
    at least one of ``one_of`` is in ``tables``."""
    missing = [t for t in required if t not in tables]
    if one_of and not any(t in tables for t in one_of):
        missing.append(" or ".join(one_of))
    if missing:
        raise TrainingSkipped("missing_sources", f"{task} needs silver/{', silver/'.join(missing)}, which "
                                                 "the lake does not have (the source was never delivered)")


def check_training_data(task: str, stats: list[dict], train_dates: list[date], oot: date, min_positives: int,
                        both_classes_in_oot: bool) -> None:
    """:class:`TrainingSkipped` when the labelled snapshots (``stats``, :func:`snapshot_stats`)
    cannot train and evaluate a model: the OOT snapshot or every training snapshot has no rows
    (``too_few_snapshots``); the training rows, or with ``both_classes_in_oot`` the OOT rows,
    all have one label (``single_class``); fewer than ``min_positives`` positive training
    labels (``too_few_positives``). Runs on the per-snapshot counts only, before any sample."""
    by = {s["snapshot"]: s for s in stats}
    empty = {"rows": 0, "positives": 0}
    o = by.get(oot.isoformat(), empty)
    train = [by.get(d.isoformat(), empty) for d in train_dates]
    with_rows = [d.isoformat() for d, s in zip(train_dates, train) if s["rows"]]
    if not o["rows"] or not with_rows:
        raise TrainingSkipped(
            "too_few_snapshots",
            f"{task}: {len(with_rows)} of {len(train_dates)} training snapshot(s) "
            f"({', '.join(d.isoformat() for d in train_dates)}) and {'1' if o['rows'] else '0'} out-of-time "
            f"snapshot ({oot}) have rows; the history is too short for the label horizon")
    rows, positives = sum(s["rows"] for s in train), sum(s["positives"] for s in train)
    if positives in (0, rows):
        raise TrainingSkipped("single_class", f"{task}: every one of the {rows} training rows "
                                              f"({', '.join(with_rows)}) has label {1 if positives else 0}")
    if both_classes_in_oot and o["positives"] in (0, o["rows"]):
        raise TrainingSkipped("single_class", f"{task}: every one of the {o['rows']} out-of-time rows ({oot}) "
                                              f"has label {1 if o['positives'] else 0}: no AUC to evaluate")
    if positives < min_positives:
        raise TrainingSkipped("too_few_positives", f"{task}: {positives} positive label(s) in the training "
                                                   f"snapshots, fewer than min_positives {min_positives}")



# ---------------------------------------------------------------------------- snapshots

def _has_partition(spark: SparkSession, path: str, as_of: date) -> bool:
    from jobs.profile import partition

    return lake.exists(path) and lake.read(spark, path).where(partition(as_of)).limit(1).count() > 0


def snapshot_profile(spark: SparkSession, settings: Settings, as_of: date) -> tuple[DataFrame, bool]:
    """Customer 360 features as of ``as_of``: the ``gold/customer_360`` partition of that date,
    computed with :func:`jobs.profile.write_profile` and written as that partition when missing.

    Returns (features without ``tags``, whether it was computed now).
    """
    from jobs.profile import partition, write_profile

    path = lake.table_path(settings.lake, "gold", "customer_360")
    built = False
    if not _has_partition(spark, path, as_of):
        log.info("gold/customer_360 has no partition %s: computing it", as_of)
        write_profile(spark, settings, as_of)
        built = True
    df = lake.read(spark, path).where(partition(as_of))
    return df.drop(*[c for c in ("tags",) if c in df.columns]), built


@dataclass
class Scratch:
    """Delta tables living for one training or scoring run under ``<lake>/ops/_scratch/<id>``."""

    spark: SparkSession
    root: Path | str

    def path(self, name: str) -> str:
        return storage.join(self.root, name)

    def write(self, df: DataFrame, name: str, append: bool = False) -> DataFrame:
        writer = lake.plain_strings(df).write.format("delta").mode("append" if append else "overwrite")
        if not append:
            writer = writer.option("overwriteSchema", "true")
        writer.save(self.path(name))
        return self.read(name)

    def read(self, name: str) -> DataFrame:
        return lake.read(self.spark, self.path(name))


STALE_SCRATCH_S = 24 * 3600  # a scratch space untouched this long belongs to a run that was killed


@contextmanager
def scratch(spark: SparkSession, settings: Settings, keep: bool = False) -> Iterator[Scratch]:
    """A fresh scratch space, removed afterwards; spaces left by killed runs (untouched for
    :data:`STALE_SCRATCH_S`) are removed first."""
    parent = lake.table_path(settings.lake, "ops", "_scratch")
    if storage.is_uri(parent):
        now_ns = time.time_ns()
        for item in storage.listdir(parent):
            # an object store keeps no time for a prefix: a space is stale when its newest object is
            newest = max((i.mtime_ns or 0 for i in storage.listdir(item.path, recursive=True)), default=0)
            if item.is_dir and (now_ns - newest) / 1e9 > STALE_SCRATCH_S:
                log.info("removing scratch space %s left by an earlier run", item.path)
                storage.remove_tree(item.path)
        root = storage.join(parent, uuid.uuid4().hex[:12])
        try:
            yield Scratch(spark, root)
        finally:
            if not keep:
                storage.remove_tree(root)
        return
    parent = Path(parent)
    if parent.is_dir():
        now = time.time()
        for old in parent.iterdir():
            try:
                if old.is_dir() and now - old.stat().st_mtime > STALE_SCRATCH_S:
                    log.info("removing scratch space %s left by an earlier run", old)
                    shutil.rmtree(old, ignore_errors=True)
            except FileNotFoundError:  # another run removed it meanwhile
                pass
    root = parent / uuid.uuid4().hex[:12]
    root.mkdir(parents=True, exist_ok=True)
    try:
        yield Scratch(spark, root)
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


def split_snapshots(snapshots: list[date]) -> tuple[list[date], date]:
    """(training snapshots, OOT snapshot): the latest fully labelled one is held out."""
    if len(snapshots) < 2:
        raise TrainingSkipped("too_few_snapshots", "training needs at least 2 labelled month ends "
                              f"(train + out-of-time), the history gives {[d.isoformat() for d in snapshots]}")
    return snapshots[:-1], snapshots[-1]


def snapshot_stats(df: DataFrame) -> list[dict]:
    """Rows, positives and customers per snapshot (small, from the engine)."""
    rows = df.groupBy("snapshot_date").agg(F.count(F.lit(1)).alias("rows"), F.sum("label").alias("positives"),
                                           F.count_distinct("customer_id").alias("customers")) \
        .orderBy("snapshot_date").collect()
    return [{"snapshot": r["snapshot_date"].isoformat(), "rows": int(r["rows"]),
             "positives": int(r["positives"] or 0), "customers": int(r["customers"])} for r in rows]


# ---------------------------------------------------------------------------- sampling

def customer_bucket(col: str = "customer_id") -> Column:
    """0..999, a deterministic hash bucket of the customer (same in every snapshot)."""
    return F.pmod(F.xxhash64(F.col(col)), F.lit(1000))


def largest_rate(by_bucket: dict[int, int], cap: int, rate: int = 1000) -> int:
    """The largest customer rate <= ``rate`` (buckets ``0..rate-1``) whose total in
    ``by_bucket`` (bucket -> rows or customers) is at most ``cap``; 1 when no rate fits."""
    total = sum(v for b, v in by_bucket.items() if b < rate)
    while total > cap and rate > 1:
        rate -= 1
        total -= by_bucket.get(rate, 0)
    return rate


def with_group_positive(df: DataFrame, group: list[str]) -> DataFrame:
    """``_group_positive``: the row's group (e.g. customer within snapshot) has a positive.

    A join with the (few) groups that have one, not a window: a window sorts every row by
    group, ~90M candidate pairs at 1M customers."""
    pos = df.where(F.col("label") > 0).select(*group).distinct().withColumn(GROUP_POSITIVE, F.lit(True))
    return df.join(pos, group, "left").withColumn(GROUP_POSITIVE, F.coalesce(F.col(GROUP_POSITIVE), F.lit(False)))


@dataclass
class SampleInfo:
    customer_rate_per_mille: int
    configured_rate_per_mille: int
    negative_rate: float
    negatives_weighted: bool
    max_train_rows: int
    rows: int
    positives: int
    customers: int
    groups_with_positive: int
    capped: bool
    population_rows: int
    population_positives: int


CHUNK_BYTES = 32 << 20  # per toPandas() call: well under Spark Connect's 128 MiB message limit


def to_pandas_chunked(df: DataFrame, rows: int, order: list[str], chunk_bytes: int = CHUNK_BYTES) -> pd.DataFrame:
    """``df.toPandas()`` in slices by customer hash, each about ``chunk_bytes`` (~12 bytes a
    cell), sorted by ``order`` so the frame does not depend on the engine's row order."""
    chunks = max(1, math.ceil(rows * len(df.columns) * 12 / chunk_bytes))
    if chunks == 1:
        parts = [df.toPandas()]
    else:
        key = F.pmod(F.xxhash64(F.col("customer_id"), F.lit("chunk")), F.lit(chunks))
        parts = [df.where(key == i).toPandas() for i in range(chunks)]
    pdf = pd.concat([p for p in parts if len(p)] or parts[:1], ignore_index=True)
    return pdf.sort_values(order, kind="stable").reset_index(drop=True)


def bounded_sample(df: DataFrame, sampling: Sampling, seed: int, group: list[str],
                   sc: "Scratch | None" = None,
                   enrich: Callable[[DataFrame], DataFrame] | None = None) -> tuple[pd.DataFrame, SampleInfo]:
    """The training rows as pandas, after a deterministic bounded sample in the engine.

    1. customers with ``pmod(xxhash64(customer_id), 1000) < customer_rate_per_mille``;
    2. groups (``group`` columns, e.g. snapshot + customer) without a positive are kept at
       ``negative_rate`` (hash of the group and ``seed``) and weighted ``1 / negative_rate``
       (column ``_weight``); groups with a positive are all kept, weight 1;
    3. when the result exceeds ``max_train_rows`` the customer rate is lowered to the largest
       one that fits (row counts per customer bucket come from one pass over ``df``).

    ``df`` must have ``label`` and ``_group_positive`` (:func:`with_group_positive`). With
    ``sc`` the sample is materialised there before it is fetched (in slices, see
    :func:`to_pandas_chunked`). ``enrich`` adds columns to the sampled rows only (e.g. the
    customer features of narrow candidate pairs) before that; it must keep every row.
    """
    neg_cut = int(round(sampling.negative_rate * 1_000_000))
    keep_neg = F.pmod(F.xxhash64(*[F.col(c).cast("string") for c in group], F.lit(str(seed))),
                      F.lit(1_000_000)) < neg_cut
    kept = F.col(GROUP_POSITIVE) | keep_neg if sampling.negative_rate < 1 else F.lit(True)

    # one pass: per customer bucket, all rows, positives and the rows the sample keeps
    buckets = df.groupBy(customer_bucket().alias("_bucket")).agg(
        F.count(F.lit(1)).alias("n"), F.sum("label").alias("p"),
        F.sum(F.when(kept, 1).otherwise(0)).alias("k")).collect()
    population_rows = sum(int(r["n"]) for r in buckets)
    population_positives = sum(int(r["p"] or 0) for r in buckets)
    kept_by_bucket = {int(r["_bucket"]): int(r["k"]) for r in buckets}
    rate = largest_rate(kept_by_bucket, sampling.max_train_rows, sampling.customer_rate_per_mille)
    n = sum(kept_by_bucket.get(b, 0) for b in range(rate))
    capped = rate < sampling.customer_rate_per_mille or n > sampling.max_train_rows
    s = df.where(customer_bucket() < rate).where(kept).withColumn(
        WEIGHT, F.when(F.col(GROUP_POSITIVE), F.lit(1.0)).otherwise(F.lit(1.0 / sampling.negative_rate)))
    if n > sampling.max_train_rows:  # a single bucket is still too big: cut deterministically
        s = s.orderBy(F.xxhash64("customer_id", *group), *group).limit(sampling.max_train_rows)
        n = sampling.max_train_rows
    if enrich is not None:
        s = enrich(s)
    if sc is not None:
        s = sc.write(s, "train_sample")
    order = list(dict.fromkeys(["customer_id", *group] + (["product_code"] if "product_code" in df.columns else [])))
    pdf = to_pandas_chunked(s, n, order)
    info = SampleInfo(
        customer_rate_per_mille=rate, configured_rate_per_mille=sampling.customer_rate_per_mille,
        negative_rate=sampling.negative_rate, negatives_weighted=sampling.negative_rate < 1,
        max_train_rows=sampling.max_train_rows, rows=len(pdf), positives=int(pdf["label"].sum()),
        customers=int(pdf["customer_id"].nunique()),
        groups_with_positive=int(pdf.loc[pdf[GROUP_POSITIVE].astype(bool), group].drop_duplicates().shape[0]),
        capped=capped, population_rows=population_rows, population_positives=population_positives)
    return pdf, info


def feature_frame(pdf: pd.DataFrame) -> pd.DataFrame:
    """The candidate model inputs of a training frame (helpers and identifiers dropped)."""
    return pdf.drop(columns=[c for c in pdf.columns if c in HELPER_COLUMNS or c.startswith("_")])


def fit_feature_spec(pdf: pd.DataFrame) -> FeatureSpec:
    spec = fit_spec(feature_frame(pdf))
    if not spec.columns:
        raise ValueError("no usable feature columns in the training sample")
    return spec


# ---------------------------------------------------------------------------- LightGBM

def fit_lightgbm(kind: str, X: pd.DataFrame, y: pd.Series, params: LgbmParams, seed: int,
                 weight: pd.Series | None = None, group: list[int] | None = None, threads: int = 1):
    """A fitted ``LGBMRanker`` (lambdarank; ``group`` sizes in row order) or ``LGBMClassifier``."""
    import lightgbm as lgb

    kw = dict(params.as_kwargs(), random_state=seed, n_jobs=threads, verbose=-1)
    if kind == "ranker":
        model = lgb.LGBMRanker(objective="lambdarank", **kw)
        model.fit(X, y, group=group, sample_weight=weight)
    elif kind == "binary":
        model = lgb.LGBMClassifier(objective="binary", **kw)
        model.fit(X, y, sample_weight=weight)
    else:
        raise ValueError(f"unknown model kind {kind!r}")
    return model


def group_sizes(pdf: pd.DataFrame, group: list[str]) -> tuple[pd.DataFrame, list[int]]:
    """``pdf`` sorted by ``group`` and the group sizes in that order (for lambdarank)."""
    pdf = pdf.sort_values(group + ["product_code"] if "product_code" in pdf.columns else group, kind="stable")
    sizes = pdf.groupby(group, sort=False).size().tolist()
    return pdf.reset_index(drop=True), sizes


# ---------------------------------------------------------------------------- in-engine scoring

def _scorer(models: dict[str, tuple[str, str]], keep: list[str], use_compiled: bool, cache_dir: str | None):
    """The ``mapInArrow`` function: one predictor per output column, loaded once per partition
    (:func:`models.compiled.predictor`: the compiled model, else LightGBM); each batch becomes
    one float64 matrix per spec (:func:`models.frame.matrix`, no pandas)."""

    def score(batches):
        import pyarrow as pa

        from models.compiled import predictor as _predictor
        from models.frame import FeatureSpec as _Spec
        from models.frame import matrix as _matrix

        loaded = {col: (_predictor(text, use_compiled, cache_dir), key, _Spec.from_json(key))
                  for col, (text, key) in models.items()}
        for batch in batches:
            if batch.num_rows == 0:
                continue
            inputs = {}  # models fitted on the same sample share a spec: one matrix for them
            arrays = [batch.column(k) for k in keep]
            for predict, key, spec in loaded.values():
                if key not in inputs:
                    inputs[key] = _matrix(batch, spec)
                arrays.append(pa.array(predict(inputs[key])))
            yield pa.RecordBatch.from_arrays(arrays, names=keep + list(loaded))

    return score


def score_in_engine(df: DataFrame, models: dict[str, tuple[str, FeatureSpec]], keep: list[str],
                    prediction=None) -> DataFrame:
    """``keep`` columns plus one double column per model (``{out_column: (model_string, spec)}``),
    computed in the engine with ``mapInArrow``; only the columns the specs read are shipped.

    ``prediction`` (``settings.models.prediction``; None: LightGBM) chooses compiled prediction
    (:mod:`models.compiled`, same scores, about 2.3 times faster); the models are compiled
    here, in the driver, before the engine's workers load them.

    One thread per batch: the engine already runs one batch per core (both predictors release
    the GIL); on 2 cores 2.5M candidates took 35.5 s with LightGBM on 1 thread and 43.8 s on
    2 (OpenMP threads spin when no core is idle)."""
    from models import compiled

    use_compiled = bool(prediction is not None and prediction.compiled)
    cache_dir = str(prediction.cache_dir) if use_compiled and prediction.cache_dir else None
    if use_compiled:
        use_compiled = all(compiled.warm(text, cache_dir) for text, _ in models.values())
    specs = {col: spec for col, (_, spec) in models.items()}
    needed = list(dict.fromkeys(keep + [c for s in specs.values() for c in s.columns if c in df.columns]))
    schema = T.StructType([df.schema[c] for c in keep] + [T.StructField(c, T.DoubleType()) for c in models])
    payload = {col: (text, spec.to_json()) for col, (text, spec) in models.items()}
    return df.select(*needed).mapInArrow(_scorer(payload, keep, use_compiled, cache_dir), schema)


# ---------------------------------------------------------------------------- artefacts

def importance_table(booster, top: int | None = None) -> pd.DataFrame:
    imp = pd.DataFrame({"feature": booster.feature_name(),
                        "gain": booster.feature_importance(importance_type="gain"),
                        "splits": booster.feature_importance(importance_type="split")})
    imp = imp.sort_values("gain", ascending=False).reset_index(drop=True)
    total = imp["gain"].sum()
    imp["gain_share"] = imp["gain"] / total if total else 0.0
    return imp.head(top) if top else imp


def importance_chart(booster, path: Path, title: str, top: int = 25) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    imp = importance_table(booster, top).iloc[::-1]
    fig, ax = plt.subplots(figsize=(8, max(3, 0.3 * len(imp) + 1)))
    ax.barh(imp["feature"], imp["gain_share"], color="#3b6ea5")
    ax.set_xlabel("share of total gain")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.4f}"
    return html.escape("" if v is None else str(v))


def html_table(rows: list[dict] | pd.DataFrame) -> str:
    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)
    if df.empty:
        return "<p>(none)</p>"
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in r) + "</tr>"
                   for r in df.itertuples(index=False, name=None))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def html_report(title: str, sections: list[tuple[str, str]], images: list[str] = ()) -> str:
    """A self-contained HTML page: ``sections`` as (heading, HTML), images by file name."""
    style = ("body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;margin:.5em 0}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#eef}"
             "td:first-child{text-align:left}")
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1>"]
    for heading, body in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2>{body}")
    for img in images:
        parts.append(f"<p><img src='{html.escape(img)}' alt='{html.escape(img)}'></p>")
    parts.append("</body></html>")
    return "".join(parts)


def metric_name(text: str) -> str:
    """MLflow-safe metric key."""
    return "".join(ch if ch.isalnum() or ch in "_-./" else "_" for ch in str(text))


def log_json(obj: Any, path: Path) -> Path:
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=1, default=str), encoding="utf-8")
    return path


def model_requirements() -> list[str]:
    """Pinned requirements of a logged model (what scoring it needs), instead of letting
    MLflow infer them from the environment (slow, and it exports the whole uv project)."""
    from importlib.metadata import version

    return [f"{pkg}=={version(pkg)}" for pkg in ("lightgbm", "numpy", "pandas", "scikit-learn", "scipy")]


def log_lightgbm_model(booster, X_example: pd.DataFrame, registered_name: str) -> str:
    """Log the booster (signature + input example) and register it; returns the new version.

    The signature describes the prepared frame of :func:`models.frame.prepare` (categoricals
    as strings); scoring applies ``prepare`` with the ``feature_spec.json`` of the run. The
    booster (a ``lightgbm.Booster``: kept as model text, never pickled) is checked back from
    the store and the SHA-256 of its text recorded on the version
    (:func:`models.registry.hash_model_version`), which scoring verifies.
    """
    import mlflow
    from mlflow.models import infer_signature

    from models import registry

    example = X_example.head(5).copy()
    for c in example.columns:
        if isinstance(example[c].dtype, pd.CategoricalDtype):
            example[c] = example[c].astype("object")
    signature = infer_signature(example, booster.predict(X_example.head(5)))
    # MLflow re-reads the example from JSON (categoricals as plain strings) to validate
    # serving, which a categorical LightGBM model refuses; that warning is expected.
    mlog = logging.getLogger("mlflow.models.model")
    level = mlog.level
    mlog.setLevel(logging.ERROR)
    try:
        info = mlflow.lightgbm.log_model(booster, name="model", signature=signature, input_example=example,
                                         registered_model_name=registered_name,
                                         pip_requirements=model_requirements())
    finally:
        mlog.setLevel(level)
    version = str(info.registered_model_version)
    registry.hash_model_version(mlflow.MlflowClient(), registered_name, version, booster.model_to_string())
    return version


def log_training_run(settings, experiment: str, run_name: str, tags: dict, params: dict, metrics: dict,
                     description: dict, spec, booster, example: pd.DataFrame, registered_model: str, kind: str,
                     title: str, write_artifacts) -> tuple[str, str]:
    """One MLflow run of a training job: parameters, metrics, the common artifacts
    (``training_set.json``, the feature spec, feature importance table and chart), the
    job's own artifacts (``write_artifacts(folder)``), and the model, registered with its
    kind tag. Returns (model version, MLflow run id)."""
    import tempfile

    import mlflow

    from models import registry

    with registry.mlflow_session(settings) as client:
        exp_id = registry.ensure_experiment(client, settings, experiment)
        with mlflow.start_run(experiment_id=exp_id, run_name=run_name, tags=tags) as run:
            mlflow.log_params(params)
            mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v is not None})
            with tempfile.TemporaryDirectory() as tmp:
                d = Path(tmp)
                log_json(description, d / "training_set.json")
                (d / registry.SPEC_ARTIFACT).write_text(spec.to_json(), encoding="utf-8")
                csvsafe.write_frame(importance_table(booster), d / "feature_importance.csv")
                importance_chart(booster, d / "feature_importance.png", f"{title}: feature importance")
                write_artifacts(d)
                for f in sorted(d.iterdir()):
                    mlflow.log_artifact(str(f))
            version = log_lightgbm_model(booster, example, registered_model)
            client.set_model_version_tag(registered_model, version, registry.KIND_TAG, kind)
            return version, run.info.run_id


def log_skipped_run(settings, experiment: str, run_name: str, tags: dict, skip: TrainingSkipped,
                    params: dict) -> str:
    """An MLflow run in the model's ``experiment`` recording that training was skipped: tags
    ``skipped=true``, ``skip_reason`` (code) and ``skip_message``; no model. Returns its id."""
    import mlflow

    from models import registry

    with registry.mlflow_session(settings) as client:
        exp_id = registry.ensure_experiment(client, settings, experiment)
        with mlflow.start_run(experiment_id=exp_id, run_name=run_name,
                              tags={**tags, "skipped": "true", "skip_reason": skip.reason,
                                    "skip_message": skip.message[:5000]}) as run:
            mlflow.log_params(params)
            return run.info.run_id


__all__ = ["TrainingSkipped", "SKIP_REASONS", "require_sources", "check_training_data", "log_skipped_run",
           "snapshot_profile", "scratch", "split_snapshots", "largest_rate", "bounded_sample", "to_pandas_chunked", "score_in_engine",
           "fit_lightgbm", "fit_feature_spec", "log_lightgbm_model", "log_training_run", "importance_chart", "html_report"]

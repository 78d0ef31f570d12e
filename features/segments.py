"""Customer segments from the customer 360 profile, point in time.

Three segmentations of every customer at ``as_of`` (``conf/segments.yaml``):

- **value tier** (``high_end`` / ``mass`` / ``long_tail``) from AUM, income and activity
  thresholds (:func:`value_tier`);
- **lifecycle stage** from rules given as data: Spark SQL conditions over customer 360
  features, first match wins, ``default`` otherwise (:func:`lifecycle_stage`);
- **behavioural cluster**: k-means (scikit-learn) on standardised behavioural features,
  trained on a bounded sample drawn in Spark (:func:`training_sample`, :func:`fit`), k
  chosen in a range by the silhouette score (:func:`choose_k`), then applied to every
  customer in Spark as plain column expressions (:func:`assign_clusters`): no UDF, no
  collect. Clusters become personas in :mod:`features.personas`.

Then aggregates for marketing: :func:`segment_kpis` and :func:`segment_migration`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.window import Window

TIERS = ("high_end", "mass", "long_tail")
# segment_kpis / segment_migration dimension -> column of gold/customer_segments
DIMENSIONS = {"value_tier": "value_tier", "lifecycle_stage": "lifecycle_stage", "persona": "persona_id"}
NEW, GONE = "(new)", "(gone)"


# ---------------------------------------------------------------------------------------
# configuration checks (called by c360.settings.Segments at start-up)

def _features() -> dict:
    import features.profile  # noqa: F401 (registers the features)
    from features.registry import REGISTRY

    return REGISTRY


def check_conf(seg) -> None:
    """Raise ``ValueError`` naming the first inconsistent key of the segments block."""
    from features.tags import SQL_FUNCTIONS, SQL_WORDS, rule_identifiers

    registry = _features()
    lc = seg.lifecycle
    stages = [r.stage for r in lc.rules]
    dup = sorted({s for s in stages if stages.count(s) > 1})
    if dup:
        raise ValueError(f"lifecycle.rules: stage {dup[0]!r} has more than one rule (first match wins: merge them)")
    if lc.default in stages:
        raise ValueError(f"lifecycle.default: {lc.default!r} also has a rule")
    if lc.churned_stage not in [*stages, lc.default]:
        raise ValueError(f"lifecycle.churned_stage: {lc.churned_stage!r} is not one of the stages "
                         f"({', '.join([*stages, lc.default])})")
    for r in lc.rules:
        where = f"lifecycle.rules[{r.stage}]"
        if ";" in r.when:
            raise ValueError(f"{where}: a rule is one expression; ';' is not allowed")
        if r.when.count("(") != r.when.count(")"):
            raise ValueError(f"{where}: unbalanced parentheses in {r.when!r}")
        for ident, is_call in rule_identifiers(r.when):
            low = ident.lower()
            if is_call and low not in SQL_FUNCTIONS:
                raise ValueError(f"{where}: function {ident}() is not allowed "
                                 f"(allowed: {', '.join(sorted(SQL_FUNCTIONS))})")
            if not is_call and low not in SQL_WORDS and ident not in registry:
                close = sorted(f for f in registry if f.startswith(ident[:4]))[:3]
                hint = f" (did you mean {', '.join(close)}?)" if close else ""
                raise ValueError(f"{where}: unknown feature {ident!r} in {r.when!r}{hint}")
    vt = seg.value_tier
    if vt.long_tail.max_aum >= vt.high_end.min_aum:
        raise ValueError("value_tier: long_tail.max_aum must be below high_end.min_aum")
    cl = seg.clusters
    if cl.k_max < cl.k_min:
        raise ValueError(f"clusters: k_max ({cl.k_max}) must be >= k_min ({cl.k_min})")
    names = [f.name for f in cl.features]
    for f in cl.features:
        if f.name not in registry:
            raise ValueError(f"clusters.features: unknown feature {f.name!r}")
        if registry[f.name].dtype not in ("double", "bigint", "boolean"):
            raise ValueError(f"clusters.features: {f.name!r} is a {registry[f.name].dtype}, not a number")
        if names.count(f.name) > 1:
            raise ValueError(f"clusters.features: {f.name!r} is listed twice")
    missing = [n for n in names if n not in seg.personas.phrases]
    if missing:
        raise ValueError(f"personas.phrases: no phrase for cluster feature(s) {', '.join(missing)} "
                         "(label_zh, label_en, high_zh, high_en, low_zh, low_en)")
    unknown = [n for n in seg.personas.phrases if n not in registry]
    if unknown:
        raise ValueError(f"personas.phrases: unknown feature {unknown[0]!r}")


# ---------------------------------------------------------------------------------------
# value tier and lifecycle stage

def value_tier(conf: dict) -> Column:
    """``high_end``: AUM >= high_end.min_aum or income >= high_end.min_income; ``long_tail``:
    AUM < long_tail.max_aum and at most max_txn_90d transactions and max_logins_90d logins
    in 90 days; ``mass`` otherwise. Missing values count as 0."""
    he, lt = conf["high_end"], conf["long_tail"]
    aum = F.coalesce(F.col("total_aum"), F.lit(0.0))
    income = F.coalesce(F.col("annual_income"), F.lit(0.0))
    low_activity = (F.coalesce(F.col("txn_count_90d"), F.lit(0)) <= F.lit(lt["max_txn_90d"])) & \
        (F.coalesce(F.col("logins_90d"), F.lit(0)) <= F.lit(lt["max_logins_90d"]))
    return F.when((aum >= F.lit(float(he["min_aum"]))) | (income >= F.lit(float(he["min_income"]))), "high_end") \
        .when((aum < F.lit(float(lt["max_aum"]))) & low_activity, "long_tail").otherwise("mass")


def lifecycle_stage(rules: list[dict], default: str) -> Column:
    """The stage of the first rule whose ``when`` holds (a null condition does not hold)."""
    out = None
    for r in rules:
        cond = F.coalesce(F.expr(f"CAST(({r['when']}) AS BOOLEAN)"), F.lit(False))
        out = F.when(cond, F.lit(r["stage"])) if out is None else out.when(cond, F.lit(r["stage"]))
    return out.otherwise(F.lit(default)) if out is not None else F.lit(default)


# ---------------------------------------------------------------------------------------
# behavioural clusters

def feature_column(name: str, log1p: bool, fill: float) -> Column:
    """A cluster input as Spark computes it: null -> ``fill``; ``log1p`` is signed
    (sign(x) * log(1 + |x|), the plain log1p for amounts and counts >= 0)."""
    x = F.coalesce(F.col(name).cast("double"), F.lit(float(fill)))
    return F.signum(x) * F.log1p(F.abs(x)) if log1p else x


def transformed(df: DataFrame, features: list[dict]) -> list[Column]:
    return [feature_column(f["name"], f["log1p"], f["fill"]).alias(f["name"]) for f in features]


def training_sample(df: DataFrame, conf: dict, population: int | None = None) -> pd.DataFrame:
    """At most ``sample_rows`` customers, transformed, as pandas (sorted by customer_id).

    Drawn in Spark by a seeded hash of ``customer_id``: the same customers are drawn
    whatever the partitioning and from one as_of to the next, which keeps the clusters
    (and so the persona ids) stable. Only the sample leaves the engine."""
    n = population if population is not None else df.count()
    limit = int(conf["sample_rows"])
    rows = df.select("customer_id", *transformed(df, conf["features"]))
    if n > limit:
        buckets = 1_000_000
        keep = min(buckets, int(np.ceil(buckets * 1.1 * limit / n)))
        h = F.pmod(F.xxhash64(F.col("customer_id"), F.lit(int(conf["seed"]))), F.lit(buckets))
        rows = rows.withColumn("_h", h).where(F.col("_h") < keep).orderBy("_h", "customer_id").limit(limit).drop("_h")
    pdf = rows.toPandas().sort_values("customer_id", kind="stable").reset_index(drop=True)
    return pdf


@dataclass
class ClusterModel:
    """Standardisation and k-means centroids, enough to assign any customer in Spark.

    ``centroids`` are in standardised units, so a centroid's coordinates are the
    standardised differences of the cluster mean from the sample mean."""

    features: list[str]
    log1p: list[bool]
    fills: list[float]
    means: list[float]
    stds: list[float]
    centroids: list[list[float]]
    k: int
    criterion: str = "silhouette"
    scores: dict[int, float] = field(default_factory=dict)
    sample_rows: int = 0
    sizes: list[int] = field(default_factory=list)  # per cluster, in the sample

    def raw_centroids(self) -> np.ndarray:
        """Centroids in the transformed (log1p, unscaled) units, for matching across runs."""
        return np.asarray(self.centroids) * np.asarray(self.stds) + np.asarray(self.means)

    def standardise(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=float) - np.asarray(self.means)) / np.asarray(self.stds)

    def to_json(self) -> str:
        d = asdict(self)
        d["scores"] = {str(k): v for k, v in self.scores.items()}
        return json.dumps(d)


def _kmeans(k: int, conf: dict):
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=k, n_init=int(conf.get("n_init", 10)), max_iter=int(conf.get("max_iter", 300)),
                  random_state=int(conf.get("seed", 42)))


def choose_k(z: np.ndarray, conf: dict) -> tuple[int, dict[int, float], Any]:
    """Fit k-means for every k in ``k_min..k_max`` on the (standardised) sample ``z`` and
    keep the k with the highest mean silhouette coefficient, computed on a seeded
    sub-sample of at most ``silhouette_rows`` rows (silhouette is quadratic in rows).
    Ties go to the smaller k. The range is capped by the number of distinct rows.
    Returns (k, {k: silhouette}, fitted model for k)."""
    import sklearn.cluster  # noqa: F401 (load the OpenMP runtime first: the limit applies to loaded ones)
    import sklearn.metrics  # noqa: F401
    from threadpoolctl import threadpool_limits

    # One thread: OpenMP's spinning threads slow k-means down by an order of magnitude
    # when the engine or other jobs keep the cores busy; the results do not depend on it.
    with threadpool_limits(limits=1):
        return _choose_k(z, conf)


def _choose_k(z: np.ndarray, conf: dict) -> tuple[int, dict[int, float], Any]:
    from sklearn.metrics import silhouette_score

    distinct = len(np.unique(z, axis=0))
    if distinct < 2:
        model = _kmeans(1, conf).fit(z)
        return 1, {1: 0.0}, model
    k_max = min(int(conf["k_max"]), distinct - 1) if distinct > 2 else 2
    k_min = min(int(conf["k_min"]), k_max)
    rng = np.random.default_rng(int(conf.get("seed", 42)))
    m = min(len(z), int(conf.get("silhouette_rows", 5000)))
    idx = np.sort(rng.choice(len(z), size=m, replace=False)) if m < len(z) else np.arange(len(z))
    scores: dict[int, float] = {}
    models = {}
    for k in range(k_min, k_max + 1):
        model = _kmeans(k, conf).fit(z)
        labels = model.labels_[idx]
        scores[k] = float(silhouette_score(z[idx], labels)) if len(set(labels)) > 1 else -1.0
        models[k] = model
    best = max(scores, key=lambda k: (round(scores[k], 10), -k))
    return best, scores, models[best]


def fit(sample: pd.DataFrame, conf: dict) -> ClusterModel:
    """Standardise the sample (population std; constant features get std 1), choose k and
    fit k-means. Cluster ids are ordered by size in the sample (0 = largest)."""
    names = [f["name"] for f in conf["features"]]
    x = sample[names].to_numpy(dtype=float)
    if len(x) == 0:
        raise ValueError("no customers to cluster")
    means = x.mean(axis=0)
    stds = x.std(axis=0)
    stds = np.where(stds > 1e-12, stds, 1.0)
    z = (x - means) / stds
    k, scores, model = choose_k(z, conf)
    centroids = model.cluster_centers_
    counts = np.bincount(model.labels_, minlength=k)
    order = sorted(range(k), key=lambda c: (-counts[c], tuple(np.round(centroids[c], 9))))
    return ClusterModel(
        features=names, log1p=[bool(f["log1p"]) for f in conf["features"]],
        fills=[float(f["fill"]) for f in conf["features"]], means=means.tolist(), stds=stds.tolist(),
        centroids=[centroids[c].tolist() for c in order], k=k, criterion=conf.get("criterion", "silhouette"),
        scores=scores, sample_rows=len(x), sizes=[int(counts[c]) for c in order])


def assign_clusters(df: DataFrame, model: ClusterModel, column: str = "cluster_id") -> DataFrame:
    """Add the nearest centroid's id (int) to ``df`` with Spark column expressions only:
    the features are transformed and standardised with the model's literals, squared
    distances to every centroid summed, and the argmin taken (first on ties, as numpy)."""
    z = [(feature_column(n, lg, fl) - F.lit(mu)) / F.lit(sd)
         for n, lg, fl, mu, sd in zip(model.features, model.log1p, model.fills, model.means, model.stds)]
    tmp = [f"_d{c}" for c in range(model.k)]
    out = df
    for c, centroid in enumerate(model.centroids):
        dist = None
        for zi, ci in zip(z, centroid):
            term = (zi - F.lit(float(ci))) * (zi - F.lit(float(ci)))
            dist = term if dist is None else dist + term
        out = out.withColumn(tmp[c], dist)
    if model.k == 1:
        return out.withColumn(column, F.lit(0)).drop(*tmp)
    best = F.least(*[F.col(t) for t in tmp])
    pick = None
    for c, t in enumerate(tmp):
        pick = F.when(F.col(t) == best, F.lit(c)) if pick is None else pick.when(F.col(t) == best, F.lit(c))
    return out.withColumn(column, pick.cast("int")).drop(*tmp)


def predict_numpy(model: ClusterModel, x: np.ndarray) -> np.ndarray:
    """The same assignment in numpy on transformed rows (for checks)."""
    z = model.standardise(x)
    d = ((z[:, None, :] - np.asarray(model.centroids)[None, :, :]) ** 2).sum(axis=2)
    return d.argmin(axis=1)


# ---------------------------------------------------------------------------------------
# KPIs and migration

KPI_INPUTS = ("total_aum", "complaints_365d", "avg_wait_s_90d", "logins_90d")


def _exact(col: Column) -> Column:
    return col.cast("decimal(38,9)")


def segment_kpis(current: DataFrame, profile: DataFrame, previous: DataFrame | None, churned_stage: str,
                 answers: DataFrame | None = None, min_respondents: int = 1) -> DataFrame:
    """KPIs per segment of each dimension (value_tier, lifecycle_stage, persona).

    ``current``: gold/customer_segments rows at as_of; ``profile``: customer_360 at as_of
    (the KPI inputs); ``previous``: customer_segments at the previous as_of, or None;
    ``answers``: the survey answers of the experience window up to as_of
    (:func:`features.experience.survey_answers`), or None (no feedback source).

    Per segment, over its current members: ``customers``; ``aum_total`` and ``aum_avg``
    (total_aum); ``complaint_rate`` (share with complaints_365d > 0); ``avg_wait_s``
    (average of avg_wait_s_90d over customers who waited); ``digital_share`` (share who
    logged in digitally in the last 90 days, logins_90d > 0); the experience KPIs of the
    members' answers (:func:`features.experience.experience_kpis`: ``nps`` -100..100 with
    ``nps_respondents``, promoters and detractors, ``nps_mean_score``; ``csat`` % of 4-5
    answers with ``csat_responses``; ``ces`` with ``ces_responses``; a KPI over fewer than
    ``min_respondents`` is null, its count stays).

    ``churn_rate``: churned / base, where base is the segment's current members plus the
    customers who were in the segment at the previous as_of, are churned now and have
    since moved to another segment (a customer who churns usually leaves a high value
    tier or a persona, and would otherwise be missed), and churned is the customers of
    that base whose lifecycle_stage is now ``churned_stage``. On the first as_of (no
    previous) it is the share of current members who are churned. Only segments with
    current members get a row.
    """
    from features.experience import COUNT_COLUMNS, experience_kpis

    kpi = profile.select("customer_id", *KPI_INPUTS)
    cur = current.join(kpi, "customer_id", "left").withColumn(
        "_churned", (F.col("lifecycle_stage") == F.lit(churned_stage)).cast("int"))
    parts = []
    for dim, col in DIMENSIONS.items():
        agg = cur.groupBy(F.col(col).alias("segment")).agg(
            F.count(F.lit(1)).alias("customers"),
            # sums and averages of doubles as decimals: exact, so a re-run repeats them bit for bit
            F.sum(_exact(F.coalesce(F.col("total_aum"), F.lit(0.0)))).cast("double").alias("aum_total"),
            F.avg(_exact(F.coalesce(F.col("total_aum"), F.lit(0.0)))).cast("double").alias("aum_avg"),
            F.avg((F.coalesce(F.col("complaints_365d"), F.lit(0)) > 0).cast("double")).alias("complaint_rate"),
            F.avg(_exact(F.col("avg_wait_s_90d"))).cast("double").alias("avg_wait_s"),
            F.sum("_churned").alias("_churned_members"),
            F.avg((F.coalesce(F.col("logins_90d"), F.lit(0)) > 0).cast("double")).alias("digital_share"),
        )
        if previous is not None:
            lost = previous.select("customer_id", F.col(col).alias("_prev")) \
                .join(cur.select("customer_id", F.col(col).alias("_now"), "_churned"), "customer_id") \
                .where((F.col("_churned") == 1) & ~F.col("_now").eqNullSafe(F.col("_prev"))) \
                .groupBy(F.col("_prev").alias("segment")).agg(F.count(F.lit(1)).alias("_lost"))
            agg = agg.join(lost, "segment", "left")
        else:
            agg = agg.withColumn("_lost", F.lit(0))
        if answers is not None:
            members = current.select("customer_id", F.col(col).alias("segment"))
            exp = experience_kpis(members.join(answers, "customer_id", "inner"), ["segment"], min_respondents)
            agg = agg.join(exp, "segment", "left")
        else:
            for c, t in (("nps", "double"), ("nps_mean_score", "double"), ("csat", "double"), ("ces", "double")):
                agg = agg.withColumn(c, F.lit(None).cast(t))
        lost_n = F.coalesce(F.col("_lost"), F.lit(0))
        # a segment without answers has 0 respondents (null KPIs)
        counts = [F.coalesce(F.col(c), F.lit(0)).cast("bigint").alias(c) if answers is not None
                  else F.lit(0).cast("bigint").alias(c) for c in COUNT_COLUMNS]
        parts.append(agg.select(
            F.lit(dim).alias("dimension"), "segment", "customers", "aum_total", "aum_avg",
            "nps", "nps_mean_score", "csat", "ces", *counts,
            "complaint_rate", "avg_wait_s",
            ((F.col("_churned_members") + lost_n) / (F.col("customers") + lost_n)).alias("churn_rate"),
            "digital_share"))
    out = parts[0]
    for p in parts[1:]:
        out = out.unionByName(p)
    return out.withColumn("share", F.col("customers") / F.sum("customers").over(Window.partitionBy("dimension")))


def segment_migration(current: DataFrame, previous: DataFrame, from_as_of, to_as_of) -> DataFrame:
    """Customers per (dimension, from_segment, to_segment) from ``previous`` (segments at
    ``from_as_of``) to ``current`` (segments at ``to_as_of``).

    A customer present only now has from_segment ``(new)``; one present only before has
    to_segment ``(gone)``. Staying in the same segment is a row too (the diagonal)."""
    parts = []
    for dim, col in DIMENSIONS.items():
        j = previous.select("customer_id", F.col(col).alias("_from")) \
            .join(current.select("customer_id", F.col(col).alias("_to")), "customer_id", "full")
        parts.append(j.groupBy(F.coalesce("_from", F.lit(NEW)).alias("from_segment"),
                               F.coalesce("_to", F.lit(GONE)).alias("to_segment"))
                     .agg(F.count(F.lit(1)).alias("customers"))
                     .select(F.lit(dim).alias("dimension"), "from_segment", "to_segment", "customers"))
    out = parts[0]
    for p in parts[1:]:
        out = out.unionByName(p)
    return out.select(F.lit(from_as_of.isoformat()).cast("date").alias("from_as_of"),
                      F.lit(to_as_of.isoformat()).cast("date").alias("to_as_of"),
                      "dimension", "from_segment", "to_segment", "customers")

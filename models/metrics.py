"""Ranking and classification metrics, computed in the engine.

Input: one row per (customer, candidate product) with a ``score`` and a 0/1 ``label``.
Ranks are per customer by score (ties broken by product code, so results are
deterministic). Only small aggregates come back to the driver.

MAP@7 follows the Santander product recommendation benchmark: for each customer,
AP@7 = (1 / min(m, 7)) * sum over k = 1..7 of P(k) * rel(k), where m is the number of
products the customer actually added and P(k) the precision of the top k; AP is 0 when
m = 0; MAP@7 is the mean over *all* customers. MAP@3 is the same with 3 for 7: the
quality of the short list a CRM export keeps (jobs/export.py). NDCG@7, precision@3 and
recall@7 are averaged over the customers with at least one added product.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.window import Window

K = 7
SHORT_K = 3  # MAP@3 besides MAP@K


def ranked(df: DataFrame, score: str = "score", customer: str = "customer_id", item: str = "product_code") -> DataFrame:
    """Add ``rank`` (1 = best) per customer and the customer's positives ``n_pos``."""
    w = Window.partitionBy(customer).orderBy(F.col(score).desc(), F.col(item))
    return df.withColumn("rank", F.row_number().over(w)) \
        .withColumn("n_pos", F.sum("label").over(Window.partitionBy(customer)))


def per_customer(df: DataFrame, k: int = K, score: str = "score") -> DataFrame:
    """One row per customer: ap_at_k, ap_at_3, ndcg_at_k, hits_at_3, hits_at_k, n_pos."""
    return per_customer_ranked(ranked(df, score), k)


def per_customer_ranked(r: DataFrame, k: int = K) -> DataFrame:
    """:func:`per_customer` of rows already ranked: ``customer_id``, ``rank`` (1 = best; null
    for a product the ranking did not list, which then only counts as a positive to find),
    ``label`` and the customer's positives ``n_pos``."""
    w = Window.partitionBy("customer_id").orderBy(F.col("rank").asc_nulls_last()) \
        .rowsBetween(Window.unboundedPreceding, 0)
    r = r.withColumn("_hits", F.sum("label").over(w))
    top = F.col("rank") <= k
    idcg = F.lit(0.0)
    for i in range(1, k + 1):
        idcg = idcg + F.when(F.col("n_pos") >= i, F.lit(1.0 / math.log2(i + 1))).otherwise(0.0)
    agg = r.groupBy("customer_id").agg(
        F.max("n_pos").alias("n_pos"),
        F.sum(F.when(top & (F.col("label") == 1), F.col("_hits") / F.col("rank")).otherwise(0.0)).alias("_ap_sum"),
        F.sum(F.when((F.col("rank") <= SHORT_K) & (F.col("label") == 1), F.col("_hits") / F.col("rank"))
              .otherwise(0.0)).alias("_ap3_sum"),
        F.sum(F.when(top & (F.col("label") == 1), 1.0 / F.log2(F.col("rank") + 1)).otherwise(0.0)).alias("_dcg"),
        F.sum(F.when((F.col("rank") <= 3) & (F.col("label") == 1), 1).otherwise(0)).alias("hits_at_3"),
        F.sum(F.when(top & (F.col("label") == 1), 1).otherwise(0)).alias("hits_at_k"),
        F.max(idcg).alias("_idcg"),
    )
    return agg.select(
        "customer_id", "n_pos", "hits_at_3", "hits_at_k",
        F.when(F.col("n_pos") > 0, F.col("_ap_sum") / F.least(F.col("n_pos"), F.lit(k))).otherwise(0.0).alias("ap_at_k"),
        F.when(F.col("n_pos") > 0, F.col("_ap3_sum") / F.least(F.col("n_pos"), F.lit(SHORT_K))).otherwise(0.0)
        .alias("ap_at_3"),
        F.when(F.col("n_pos") > 0, F.col("_dcg") / F.col("_idcg")).alias("ndcg_at_k"),
    )


def ranking_metrics(df: DataFrame, k: int = K, score: str = "score") -> dict[str, float]:
    """map_at_7, map_at_3, ndcg_at_7, precision_at_3, recall_at_7, customers and customers
    with a positive."""
    return summarize(per_customer(df, k, score), k)


def ranked_metrics(r: DataFrame, k: int = K) -> dict[str, float]:
    """:func:`ranking_metrics` of rows already ranked (see :func:`per_customer_ranked`; ``n_pos``
    is added from ``label``)."""
    r = r.withColumn("n_pos", F.sum("label").over(Window.partitionBy("customer_id")))
    return summarize(per_customer_ranked(r, k), k)


def summarize(pc: DataFrame, k: int = K) -> dict[str, float]:
    """The means of :func:`per_customer` rows (MAP over all customers, the rest over those
    with a positive)."""
    pos = F.col("n_pos") > 0
    row = pc.agg(
        F.avg("ap_at_k").alias("map"),
        F.avg("ap_at_3").alias("map3"),
        F.avg(F.when(pos, F.col("ndcg_at_k"))).alias("ndcg"),
        F.avg(F.when(pos, F.col("hits_at_3") / 3.0)).alias("p3"),
        F.avg(F.when(pos, F.col("hits_at_k") / F.col("n_pos"))).alias("recall"),
        F.count(F.lit(1)).alias("customers"),
        F.sum(F.when(pos, 1).otherwise(0)).alias("customers_with_positive"),
    ).first()
    return {f"map_at_{k}": float(row["map"] or 0.0), f"map_at_{SHORT_K}": float(row["map3"] or 0.0),
            f"ndcg_at_{k}": float(row["ndcg"] or 0.0),
            "precision_at_3": float(row["p3"] or 0.0), f"recall_at_{k}": float(row["recall"] or 0.0),
            "customers": int(row["customers"]), "customers_with_positive": int(row["customers_with_positive"] or 0)}


def coverage(df: DataFrame, k: int = K, score: str = "score") -> float:
    """Share of the candidate products that appear in at least one customer's top k."""
    r = ranked(df, score)
    row = r.agg(F.count_distinct(F.when(F.col("rank") <= k, F.col("product_code"))).alias("top"),
                F.count_distinct("product_code").alias("all")).first()
    return float(row["top"]) / row["all"] if row["all"] else 0.0


def auc_by_group(df: DataFrame, group: str = "product_code", score: str = "score") -> dict[str, float | None]:
    """ROC AUC per group (Mann-Whitney with average ranks for ties); None without both classes."""
    w = Window.partitionBy(group, score)
    r = df.withColumn("_r", F.rank().over(Window.partitionBy(group).orderBy(score))) \
        .withColumn("_n_tie", F.count(F.lit(1)).over(w)) \
        .withColumn("_avg_rank", F.col("_r") + (F.col("_n_tie") - 1) / 2.0)
    rows = r.groupBy(group).agg(
        F.sum(F.when(F.col("label") == 1, F.col("_avg_rank")).otherwise(0.0)).alias("rank_sum"),
        F.sum("label").alias("pos"), F.count(F.lit(1)).alias("n")).collect()
    out: dict[str, float | None] = {}
    for row in rows:
        pos, neg = row["pos"], row["n"] - row["pos"]
        out[row[group]] = None if pos == 0 or neg == 0 else \
            (row["rank_sum"] - pos * (pos + 1) / 2.0) / (pos * neg)
    return dict(sorted(out.items()))


def auc(df: DataFrame, score: str = "score") -> float | None:
    """ROC AUC over all rows."""
    return auc_by_group(df.withColumn("_all", F.lit("all")), "_all", score).get("all")


def calibration(scored: DataFrame, bins: int, score: str = "score",
                unit: str = "customers") -> tuple[pd.DataFrame, float, float]:
    """(reliability table per score bin, Brier score, expected calibration error), in the engine.

    ``score``: a probability in [0, 1]; bins of width ``1 / bins`` (a score of 1 in the
    last). The table has per non-empty bin its ``unit`` (rows: customers, candidates),
    ``mean_predicted`` and ``observed_rate`` (mean ``label``); the ECE is the mean over
    rows of |observed_rate - mean_predicted| of their bin."""
    b = F.least(F.floor(F.col(score) * bins), F.lit(bins - 1)).cast("int")
    table = scored.withColumn("bin", b).groupBy("bin").agg(
        F.count(F.lit(1)).alias(unit), F.avg(score).alias("mean_predicted"),
        F.avg("label").alias("observed_rate")).orderBy("bin").toPandas()
    brier = scored.agg(F.avg((F.col(score) - F.col("label")) ** 2).alias("b")).first()["b"]
    n = table[unit].sum()
    ece = float(((table[unit] / n) * (table["observed_rate"] - table["mean_predicted"]).abs()).sum()) if n else 0.0
    table.insert(1, "from", table["bin"] / bins)
    table.insert(2, "to", (table["bin"] + 1) / bins)
    return table, float(brier or 0.0), ece


def reliability_chart(table: pd.DataFrame, path: Path, observed: str, title: str, unit: str = "customers") -> None:
    """Observed rate against mean prediction per bin of a :func:`calibration` table, and the
    ``unit`` count per bin below it, as a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(6, 7), gridspec_kw={"height_ratios": [3, 1]}, sharex=True)
    ax.plot([0, 1], [0, 1], ls="--", color="grey", label="perfectly calibrated")
    ax.plot(table["mean_predicted"], table["observed_rate"], marker="o", color="#b5443b", label="model")
    ax.set_ylabel(observed)
    ax.set_title(title)
    ax.legend(loc="upper left")
    ax2.bar((table["from"] + table["to"]) / 2, table[unit], width=(table["to"] - table["from"]) * 0.9,
            color="#3b6ea5")
    ax2.set_xlabel("predicted probability")
    ax2.set_ylabel(unit)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def popularity_scores(train: DataFrame, target: DataFrame, by: list[str] | None = None) -> DataFrame:
    """Baseline: score each target candidate by its product's adoption rate among
    non-holders in ``train`` (optionally within groups ``by``, e.g. persona), falling back
    to the overall rate where a group has no data."""
    overall = train.groupBy("product_code").agg(F.avg("label").alias("_p_all"))
    out = target.join(overall, "product_code", "left")
    if by:
        grouped = train.groupBy(*by, "product_code").agg(F.avg("label").alias("_p_grp"),
                                                         F.count(F.lit(1)).alias("_n_grp"))
        out = out.join(grouped, [*by, "product_code"], "left") \
            .withColumn("score", F.coalesce(F.when(F.col("_n_grp") >= 20, F.col("_p_grp")), F.col("_p_all"),
                                            F.lit(0.0))).drop("_p_grp", "_n_grp", "_p_all")
    else:
        out = out.withColumn("score", F.coalesce(F.col("_p_all"), F.lit(0.0))).drop("_p_all")
    return out

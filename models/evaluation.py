"""Recommendations judged against a simulated bank's truth, in the engine.

The generator of a world other than ``demo`` writes, per customer and product, the true
probability of adopting the product in the 30 days after as_of and what really happened
then (``<landing>/_meta/truth/``). Three rankings of the same customers' same eligible
products (not held at as_of, suitable: the truth's ``eligible``) are scored on what
happened, with :func:`models.metrics.ranked_metrics`:

* ``model``: ``gold/recommendations`` at as_of, by its ``rank`` (3 or 7 rows a customer);
* ``popularity``: products by how many customers opened them in the 90 days up to as_of;
* ``oracle``: products by their true probability (the best a ranking can expect).

A positive is an adoption of an eligible product within the horizon; customers are those
with recommendations at as_of (MAP is over all of them, 0 for a customer without one).
"""

from __future__ import annotations

from datetime import date, timedelta

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from models.metrics import ranked_metrics

KEYS = ["customer_id", "product_code"]
METHODS = ("model", "popularity", "oracle")
CUTOFFS = (7, 3)


def recent_popularity(holdings: DataFrame, as_of: date, days: int = 90) -> DataFrame:
    """(product_code, popularity): distinct customers who opened the product in the ``days``
    days up to ``as_of`` (from the holdings the bank delivered)."""
    start = F.lit((as_of - timedelta(days=days)).isoformat()).cast("date")
    end = F.lit(as_of.isoformat()).cast("date")
    return holdings.where((F.col("opened_date") > start) & (F.col("opened_date") <= end)) \
        .groupBy("product_code").agg(F.count_distinct("customer_id").alias("popularity"))


def evaluation_pairs(recs: DataFrame, truth: DataFrame, adopted: DataFrame, popularity: DataFrame) -> DataFrame:
    """One row per (customer, product) to judge: the eligible pairs of the customers of
    ``recs`` plus any recommended pair, with ``label`` and the rank of each method
    (``rank_model``, ``rank_popularity``, ``rank_oracle``; null where a method does not
    rank the pair).

    ``recs``: customer_id, product_code, rank (one as_of). ``truth``: customer_id,
    product_code, probability, eligible. ``adopted``: customer_id, product_code of the
    adoptions after as_of. ``popularity``: product_code, popularity.
    """
    customers = recs.select("customer_id").distinct()
    eligible = truth.where(F.col("eligible")).join(customers, "customer_id", "inner") \
        .select(*KEYS, "probability", F.lit(True).alias("_eligible"))
    model = recs.select(*KEYS, F.col("rank").cast("int").alias("rank_model"))
    pairs = eligible.join(model, KEYS, "full")
    pairs = pairs.join(adopted.select(*KEYS).distinct().withColumn("_adopted", F.lit(True)), KEYS, "left")
    pairs = pairs.join(popularity, "product_code", "left")
    pairs = pairs.withColumn("label", (F.coalesce(F.col("_eligible"), F.lit(False))
                                       & F.coalesce(F.col("_adopted"), F.lit(False))).cast("int"))
    def rank_by(col: str) -> F.Column:
        """Rank among the customer's eligible pairs by ``col`` (ties by product code)."""
        order = Window.partitionBy("customer_id", "_eligible") \
            .orderBy(F.coalesce(F.col(col), F.lit(0)).desc(), F.col("product_code"))
        return F.when(F.col("_eligible"), F.row_number().over(order))

    return pairs.withColumn("rank_popularity", rank_by("popularity").cast("int")) \
        .withColumn("rank_oracle", rank_by("probability").cast("int")) \
        .select(*KEYS, "label", "rank_model", "rank_popularity", "rank_oracle")


def evaluate(pairs: DataFrame) -> dict:
    """MAP@7 and MAP@3 of each method over :func:`evaluation_pairs`, the model's share of the
    oracle and its ratio to popularity; customers and positives judged."""
    out: dict = {"methods": {}}
    for method in METHODS:
        r = pairs.select("customer_id", "label", F.col(f"rank_{method}").alias("rank"))
        res = {}
        for k in CUTOFFS:
            m = ranked_metrics(r, k)
            res[f"map_at_{k}"] = m[f"map_at_{k}"]
            out["customers"] = m["customers"]
            out["customers_with_positive"] = m["customers_with_positive"]
        out["methods"][method] = res
    row = pairs.agg(F.sum("label").alias("positives")).first()
    out["positives"] = int(row["positives"] or 0)
    model, pop, oracle = (out["methods"][m] for m in ("model", "popularity", "oracle"))
    for k in CUTOFFS:
        key = f"map_at_{k}"
        out[f"share_of_oracle_at_{k}"] = model[key] / oracle[key] if oracle[key] else None
        out[f"ratio_to_popularity_at_{k}"] = model[key] / pop[key] if pop[key] else None
    return out


__all__ = ["evaluation_pairs", "evaluate", "recent_popularity", "METHODS", "CUTOFFS"]

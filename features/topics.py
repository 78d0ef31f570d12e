"""Topics of customer texts (survey comments, complaint descriptions) from a zh/en lexicon
(``kpis.topics`` in ``conf/kpis.yaml``), and their counts per touchpoint.

A text is about a topic when, lower-cased, it contains one of the topic's terms (plain
substrings: Chinese has no word boundaries; write English terms in lower case). A text may
be about several topics, or none.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

UNKNOWN = "(unknown)"


def mentions(text: Column, terms: list[str]) -> Column:
    """Whether ``text`` (lower-cased) contains any of ``terms`` (false for null text)."""
    low = F.lower(text)
    cond = None
    for term in sorted({t.strip().lower() for t in terms if t.strip()}):
        hit = F.instr(low, F.lit(term)) > 0
        cond = hit if cond is None else cond | hit
    return F.coalesce(cond, F.lit(False)) if cond is not None else F.lit(False)


def topic_counts(texts: DataFrame, topics: dict[str, list[str]]) -> DataFrame:
    """Per ``group`` of ``texts`` (columns ``source``, ``group``, ``text``,
    ``sentiment_score``, ``sentiment_label``: :func:`features.sentiment.sentiment_columns`)
    and topic: ``texts`` (non-blank texts in the group), ``mentions`` (those about the
    topic), ``share`` (mentions / texts), ``negative_mentions`` (mentions labelled
    negative) and ``sentiment_avg`` of the mentions. Topics without a mention in a group
    have no row there."""
    rows = texts.where(F.col("text").isNotNull() & (F.trim(F.col("text")) != "")) \
        .withColumn("group", F.coalesce(F.col("group").cast("string"), F.lit(UNKNOWN)))
    totals = rows.groupBy("source", "group").agg(F.count(F.lit(1)).alias("texts"))
    flags = F.array(*[F.when(mentions(F.col("text"), terms), F.lit(name)) for name, terms in sorted(topics.items())])
    hits = rows.select("source", "group", "sentiment_score", "sentiment_label", F.explode(flags).alias("topic")) \
        .where(F.col("topic").isNotNull())
    per_topic = hits.groupBy("source", "group", "topic").agg(
        F.count(F.lit(1)).alias("mentions"),
        F.sum(F.when(F.col("sentiment_label") == "negative", 1).otherwise(0)).cast("bigint").alias("negative_mentions"),
        F.avg(F.col("sentiment_score").cast("decimal(38,9)")).cast("double").alias("sentiment_avg"))
    return per_topic.join(totals, ["source", "group"]).select(
        "source", "group", "topic", "texts", "mentions", (F.col("mentions") / F.col("texts")).alias("share"),
        "negative_mentions", "sentiment_avg")


__all__ = ["mentions", "topic_counts"]

"""Profile: silver -> ``gold/customer_360`` and ``gold/customer_tags`` for one as_of.

Both tables are partitioned by ``as_of_date``; a run replaces only its own partition
(``replaceWhere``), so re-running a date is idempotent and earlier dates stay for
comparison and for training snapshots.
"""

from __future__ import annotations

import logging
from datetime import date

from pyspark.sql import SparkSession

from c360 import lake, storage
from c360.settings import ConfigError, Settings
from features.profile import FAMILIES, AsOf, customer_360
from features.tags import apply_tags, customer_tags
from jobs import silver

log = logging.getLogger(__name__)

STEPS = len(FAMILIES) + 2  # progress: each source family, the profile write, the tags

SILVER_INPUTS = ("customers", "product_catalog", "holdings", "transactions", "events", "interactions", "feedback",
                 "complaints", "campaign_responses")


def silver_tables(spark: SparkSession, settings: Settings, as_of: date | None = None) -> dict:
    """The silver tables the profile reads, plus the silver step's derived tables that may
    stand in for a source: ``transactions_daily`` when current, ``holdings_latest`` when
    current and no snapshot is after ``as_of`` (:func:`jobs.silver.holdings_latest`),
    ``holdings_lagged`` when current and cut for this ``as_of``
    (:func:`jobs.silver.holdings_lagged`)."""
    tables = {}
    for name in SILVER_INPUTS:
        path = lake.table_path(settings.lake, "silver", name)
        if lake.exists(path):
            tables[name] = lake.read(spark, path)
    if "customers" not in tables:
        raise RuntimeError(f"silver/customers does not exist under {settings.lake}: run the ingest and silver steps")
    daily = lake.table_path(settings.lake, "silver", silver.DAILY)
    if silver.is_current(spark, settings, silver.DAILY):
        tables[silver.DAILY] = lake.read(spark, daily)
    elif lake.exists(daily):
        log.warning("silver/%s is behind silver/transactions (a silver run stopped?): the profile reads every "
                    "transaction instead (slower); run the silver step first", silver.DAILY)
    if as_of is not None:
        tables.update(silver.holdings_stand_ins(spark, settings, as_of))
    return tables


def check_tag_rules(spark: SparkSession, settings: Settings, profile_schema) -> None:
    """Let the engine analyse every rule on an empty profile: SQL errors name the tag."""
    empty = spark.createDataFrame([], profile_schema)
    for tag in settings.tags:
        try:
            empty.selectExpr(f"CAST(({tag.rule}) AS BOOLEAN) AS t").schema  # noqa: B018 (forces analysis)
        except Exception as exc:  # noqa: BLE001
            first = str(exc).strip().splitlines()[0][:200]
            raise ConfigError(f"conf/tags.yaml: tag {tag.name}: rule {tag.rule!r} is not valid: {first}") from None


def partition(as_of: date) -> str:
    return f"as_of_date = DATE'{as_of.isoformat()}'"


def staging_dir(settings: Settings, as_of: date) -> str:
    return lake.table_path(settings.lake, "gold", f"_staging/profile_{as_of.isoformat()}")


def _staged_profile(spark: SparkSession, settings: Settings, as_of: date, progress=None):
    """The tagged customer 360 DataFrame for ``as_of`` (not written). Each source family's
    aggregate is computed and staged first (one family at a time, bounded memory) under
    :func:`staging_dir`; the result reads the staged tables, so only
    :func:`write_profile`, which writes it and then removes the staging directory, calls this."""
    if settings.profile is None:
        raise ConfigError("conf/profile.yaml: the profile block is missing")
    root = staging_dir(settings, as_of)
    storage.remove_tree(root)
    tables = silver_tables(spark, settings, as_of)
    done = []

    def stage(family: str, agg):
        if progress:
            progress(f"profile {family}", len(done), STEPS)
        path = f"{root}/{family}"
        lake.overwrite(agg, path)
        done.append(family)
        return lake.read(spark, path)

    profile = customer_360(tables, AsOf(as_of, settings.bank.timezone), settings.profile.as_dict(), stage=stage)
    check_tag_rules(spark, settings, profile.schema)
    return apply_tags(profile, settings.tags)


def write_profile(spark: SparkSession, settings: Settings, as_of: date, progress=None) -> str:
    """Compute the tagged profile for ``as_of`` and write it as that ``gold/customer_360``
    partition (replacing it); returns the table's path. The per-family staging tables are
    removed afterwards, whether the write succeeded or not."""
    c360_path = lake.table_path(settings.lake, "gold", "customer_360")
    try:
        profile = _staged_profile(spark, settings, as_of, progress)
        if progress:
            progress("profile customer_360", len(FAMILIES), STEPS)
        lake.write_partition(profile, c360_path, "as_of_date", partition(as_of))
    finally:
        storage.remove_tree(staging_dir(settings, as_of))
    return c360_path


def run(spark: SparkSession, settings: Settings, as_of: date, progress=None) -> dict:
    c360_path = write_profile(spark, settings, as_of, progress)
    written = lake.read(spark, c360_path).where(partition(as_of))
    if progress:
        progress("profile customer_tags", len(FAMILIES) + 1, STEPS)
    tags_path = lake.table_path(settings.lake, "gold", "customer_tags")
    lake.write_partition(customer_tags(written), tags_path, "as_of_date", partition(as_of))
    counts = {r["tag"]: r["count"] for r in lake.read(spark, tags_path).where(partition(as_of))
              .groupBy("tag").count().collect()}
    customers = written.count()
    if progress:
        progress("profile", STEPS, STEPS)
    return {"customers": customers, "features": len(written.columns) - 3,
            "tags": {t.name: counts.get(t.name, 0) for t in settings.tags}}


__all__ = ["run", "write_profile", "silver_tables"]

"""Profile: silver -> ``gold/customer_360`` and ``gold/customer_tags`` for one as_of.

Both tables are partitioned by ``as_of_date``; a run replaces only its own partition
(``replaceWhere``), so re-running a date is idempotent and earlier dates stay for
comparison and for training snapshots.
"""

from __future__ import annotations

import shutil
from datetime import date

from pyspark.sql import SparkSession

from c360 import lake
from c360.settings import ConfigError, Settings
from features.profile import AsOf, customer_360
from features.tags import apply_tags, customer_tags

SILVER_INPUTS = ("customers", "product_catalog", "holdings", "transactions", "events", "interactions", "feedback",
                 "complaints", "campaign_responses")


def silver_tables(spark: SparkSession, settings: Settings) -> dict:
    tables = {}
    for name in SILVER_INPUTS:
        path = lake.table_path(settings.lake, "silver", name)
        if lake.exists(path):
            tables[name] = lake.read(spark, path)
    if "customers" not in tables:
        raise RuntimeError(f"silver/customers does not exist under {settings.lake}: run the ingest and silver steps")
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


def build(spark: SparkSession, settings: Settings, as_of: date, progress=None):
    """The tagged customer 360 DataFrame for ``as_of`` (not written). Each source family's
    aggregate is computed and staged first (one family at a time, bounded memory); the
    result reads the staged tables: write it, then :func:`drop_staging`."""
    if settings.profile is None:
        raise ConfigError("conf/profile.yaml: the profile block is missing")
    root = staging_dir(settings, as_of)
    shutil.rmtree(root, ignore_errors=True)

    def stage(family: str, agg):
        if progress:
            progress(f"profile {family}", 0, 2)
        path = f"{root}/{family}"
        lake.overwrite(agg, path)
        return lake.read(spark, path)

    profile = customer_360(silver_tables(spark, settings), AsOf(as_of, settings.bank.timezone),
                           settings.profile.as_dict(), stage=stage)
    check_tag_rules(spark, settings, profile.schema)
    return apply_tags(profile, settings.tags)


def drop_staging(settings: Settings, as_of: date) -> None:
    shutil.rmtree(staging_dir(settings, as_of), ignore_errors=True)


def write_profile(spark: SparkSession, settings: Settings, as_of: date, progress=None) -> str:
    """Compute the tagged profile for ``as_of`` and write it as that ``gold/customer_360``
    partition (replacing it); returns the table's path."""
    c360_path = lake.table_path(settings.lake, "gold", "customer_360")
    try:
        lake.write_partition(build(spark, settings, as_of, progress), c360_path, "as_of_date", partition(as_of))
    finally:
        drop_staging(settings, as_of)
    return c360_path


def run(spark: SparkSession, settings: Settings, as_of: date, progress=None) -> dict:
    if progress:
        progress("profile customer_360", 0, 2)
    c360_path = write_profile(spark, settings, as_of, progress)
    written = lake.read(spark, c360_path).where(partition(as_of))
    if progress:
        progress("profile customer_tags", 1, 2)
    tags_path = lake.table_path(settings.lake, "gold", "customer_tags")
    lake.write_partition(customer_tags(written), tags_path, "as_of_date", partition(as_of))
    counts = {r["tag"]: r["count"] for r in lake.read(spark, tags_path).where(partition(as_of))
              .groupBy("tag").count().collect()}
    customers = written.count()
    if progress:
        progress("profile", 2, 2)
    return {"customers": customers, "features": len(written.columns) - 3,
            "tags": {t.name: counts.get(t.name, 0) for t in settings.tags}}


__all__ = ["run", "build", "write_profile", "silver_tables"]

"""Silver: bronze -> clean, conformed, private ``silver/<source>`` tables.

Rebuilt from bronze on every run (an overwrite is atomic and idempotent). Customers come
from every delivered version (``bronze/customers_versions``) as SCD2 history; raw PII
goes only to ``restricted/customer_pii``; digital events get their customer through
logins; survey comments get a sentiment score (``features.sentiment``). Unknown extra columns stay in bronze, as the contract says.
"""

from __future__ import annotations

import logging

from pyspark.sql import SparkSession

from c360 import lake
from c360.contract import SOURCES
from c360.privacy import pii_key
from c360.settings import Settings
from features.sentiment import sentiment_columns
from features.silver import attribute_events, conform, customer_pii, customers_silver

log = logging.getLogger(__name__)


def _contract_only(df, source):
    keep = [c for c in df.columns if c in source.column_names or c.startswith("_")]
    return df.select(*keep)


def run(spark: SparkSession, settings: Settings, progress=None) -> dict[str, int]:
    """Rebuild every silver table whose bronze table exists; rows written per table out."""
    key = pii_key(settings)
    written: dict[str, int] = {}
    names = list(SOURCES)
    for i, name in enumerate(names):
        if progress:
            progress(f"silver {name}", i, len(names))
        source = SOURCES[name]
        bronze_path = lake.table_path(settings.lake, "bronze", name)
        if not lake.exists(bronze_path):
            continue
        out = lake.table_path(settings.lake, "silver", name)
        if name == "customers":
            versions = _contract_only(
                lake.read(spark, lake.table_path(settings.lake, "bronze", "customers_versions")), source)
            df = customers_silver(versions, source, key)
            lake.overwrite(customer_pii(versions, source, key),
                           lake.table_path(settings.lake, "restricted", "customer_pii"))
        else:
            df = conform(_contract_only(lake.read(spark, bronze_path), source), source)
            if name == "events":
                df = attribute_events(df)
            elif name == "feedback":
                df = sentiment_columns(df, "comment")
        lake.overwrite(df, out)
        written[name] = lake.read(spark, out).count()
    if progress:
        progress("silver", len(names), len(names))
    return written


__all__ = ["run"]

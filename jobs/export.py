"""Export: ``gold/recommendations`` of as_of -> the CRM drop ``<lake>/marketing/exports/crm/<as_of>/``.

The drop lives in the marketing zone (``<lake>/marketing/``), apart from the restricted and
internal layers, so that the CRM import service and the marketing team can be granted that
prefix alone. :func:`export_root` is the one place that says where exports live; every
complete export is a folder named by its as_of date holding a ``manifest.json``
(:func:`exports` lists them).

Files (UTF-8, no timestamps inside, the same bytes when the same as_of is exported again):

- ``recommendations.csv`` and ``recommendations.parquet``: one row per recommendation of a
  customer with marketing consent at as_of and not in the control group (``holdout`` in
  gold, conf ``scoring.holdout_share``), the first ``export.top_n`` ranks of
  ``gold/recommendations`` (which keeps ``scoring.top_n``), sorted by customer and rank,
  columns :data:`EXPORT_COLUMNS` (no PII: no names, ids, phones, emails, birth dates or
  tokens). ``score`` is the calibrated probability of adoption within the model's horizon
  (empty when the champion had no calibration), ``raw_score`` the model's own score,
  ``expected_value`` the score times the product's business weight (conf
  ``scoring.product_value``; empty without calibration, and for recommendations scored
  before it existed), which orders each customer's ranks;
- ``changes.csv``: what changed since the previous export (the latest earlier as_of under
  ``marketing/exports/crm``): ``new``, ``changed`` (rank or score, a score becoming empty
  included) and ``withdrawn`` recommendations;
- ``manifest.json``: row counts, sha256 of each file, schema version, model version, as_of,
  and ``holdout``: the customers (and their recommendations) of the control group who
  would otherwise have been in the drop.

The CSV files are for people and spreadsheets: every text cell goes through
:mod:`c360.csvsafe` (a value that a spreadsheet would run as a formula, such as a delivered
product name ``=HYPERLINK(...)``, ``+1`` or ``@SUM(A1)``, is written with a leading ``'``;
a field holding a comma, a quote, LF or CR is quoted, so no value splits a row). Numbers
and dates are written as they are. The Parquet file is for systems and keeps every value
exactly as delivered.

The engine joins, filters and sorts; the sorted result is streamed to the driver in Arrow
batches and written by one writer per file (memory: one batch and one Parquet row group),
so each format is a single file with a deterministic order and layout. (Sail 0.7 splits a
write into one file per core even after ``coalesce(1)``, so the engine's own writer cannot
produce one file.) The drop is assembled in a staging folder and renamed into place.

The step also refreshes ``gold/recommendation_outcomes``: for every earlier recommendation
date, offers of the same product to the same customer sent within ``validity_days`` after
it, and how many converted, per product and persona; the same aggregates (no customer
rows) are published to ``marketing/recommendation_outcomes``. Only the exported ranks
(``rank <= export.top_n``) of customers not held out count as recommended there. The same
ranks of the held-out customers are the control group: per date, product and persona the
table also holds the adoption of the treated and the held-out customers within the next
best product model's horizon, the uplift and its 95% interval (:mod:`models.uplift`), for
the dates whose window has passed (:func:`refresh_outcomes`).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from c360 import csvsafe, lake, storage
from c360.contract import SOURCES
from c360.settings import ConfigError, Export, Settings
from features.profile import AsOf
from jobs import silver
from models import uplift

EXPORT_COLUMNS = ["customer_id", "product_code", "product_name", "rank", "score", "raw_score", "expected_value",
                  "reason_text_zh", "reason_text_en", "persona", "value_tier", "valid_until"]
EXPORT_SCHEMA = pa.schema([
    ("customer_id", pa.string()), ("product_code", pa.string()), ("product_name", pa.string()),
    ("rank", pa.int32()), ("score", pa.float64()), ("raw_score", pa.float64()), ("expected_value", pa.float64()),
    ("reason_text_zh", pa.string()),
    ("reason_text_en", pa.string()),
    ("persona", pa.string()), ("value_tier", pa.string()), ("valid_until", pa.date32())])
CHANGES_SCHEMA = pa.schema([
    ("change", pa.string()), ("customer_id", pa.string()), ("product_code", pa.string()), ("rank", pa.int32()),
    ("score", pa.float64()), ("previous_rank", pa.int32()), ("previous_score", pa.float64())])
OUTCOMES_SCHEMA = T.StructType([
    T.StructField("as_of_date", T.DateType()),
    T.StructField("product_code", T.StringType()),
    T.StructField("persona_id", T.StringType()),
    T.StructField("recommended", T.LongType()),
    T.StructField("offers_sent", T.LongType()),
    T.StructField("converted", T.LongType()),
    T.StructField("conversion_rate", T.DoubleType()),
    # adoption of the treated and the control group, and the uplift (models/uplift.py)
    T.StructField("adoption_complete", T.BooleanType()),
    T.StructField("treated", T.LongType()),
    T.StructField("treated_adopted", T.LongType()),
    T.StructField("treated_adoption_rate", T.DoubleType()),
    T.StructField("holdout", T.LongType()),
    T.StructField("holdout_adopted", T.LongType()),
    T.StructField("holdout_adoption_rate", T.DoubleType()),
    T.StructField("uplift", T.DoubleType()),
    T.StructField("uplift_ci_low", T.DoubleType()),
    T.StructField("uplift_ci_high", T.DoubleType()),
])
FILES = ("recommendations.csv", "recommendations.parquet", "changes.csv")
SCORE_DECIMALS = 6
ROW_GROUP_ROWS = 100_000
PII_COLUMNS = frozenset(c.name for s in SOURCES.values() for c in s.columns if c.pii) | {"birth_month"}


def is_pii_column(name: str) -> bool:
    return name in PII_COLUMNS or name.endswith("_token")


def _check_no_pii(columns) -> None:
    bad = [c for c in columns if is_pii_column(c)]
    if bad:
        raise RuntimeError(f"refusing to export PII columns: {', '.join(bad)}")


def export_root(settings: Settings | Path | str) -> Path | str:
    """Where CRM exports live: ``<lake>/marketing/exports/crm`` (one folder per as_of date,
    each with a ``manifest.json``). Takes the settings or the lake root. A Path for a local
    lake, a URI (text) for a lake on object storage."""
    lake_root = getattr(settings, "lake", settings)
    if storage.is_uri(lake_root):
        return storage.join(lake_root, "marketing", "exports", "crm")
    return Path(lake_root) / "marketing" / "exports" / "crm"


def service_export_root(settings: Settings | Path | str) -> Path | str:
    """Where the CRM's service-queue files live: ``<lake>/marketing/exports/service``, the
    sibling of :func:`export_root` (one folder per as_of date, each with a ``manifest.json``;
    written by :mod:`jobs.recovery`)."""
    crm = export_root(settings)
    return storage.join(storage.parent(crm), "service") if storage.is_uri(crm) else crm.parent / "service"


def _dated_folders(root: Path | str, *required: str) -> list[tuple[date, Path | str]]:
    """``(date, folder)`` of the date folders under ``root`` holding every ``required`` file."""
    if not storage.is_uri(root):
        root = Path(root)
        if not root.is_dir():
            return []
        return [(day, d) for d in root.iterdir() if (day := _day(d.name)) is not None
                and all((d / name).is_file() for name in required)]
    files: dict[str, set[str]] = {}
    for item in storage.listdir(root, recursive=True):
        parts = storage.relative(item.path, root).split("/")
        if not item.is_dir and len(parts) == 2:
            files.setdefault(parts[0], set()).add(parts[1])
    return [(day, storage.join(root, d)) for d, names in files.items()
            if (day := _day(d)) is not None and set(required) <= names]


def _day(name: str) -> date | None:
    try:
        return date.fromisoformat(name)
    except ValueError:  # staging or old folders of an interrupted run
        return None


def exports(settings: Settings | Path | str) -> list[tuple[date, Path | str]]:
    """Every complete export (a date folder with ``manifest.json``), oldest first."""
    return sorted(_dated_folders(export_root(settings), "manifest.json"))


# Written into an export folder by the CRM side once it has imported the drop (any
# content; its presence is what counts). A delivered export is the recipient's copy:
# `c360 erase` leaves it alone and lists it for the recipient's own erasure; an export
# without it is still ours and is rewritten without the erased customer.
DELIVERED_MARKER = "_DELIVERED"


def is_delivered(folder: Path | str) -> bool:
    """True when the CRM has marked the export folder as imported (:data:`DELIVERED_MARKER`)."""
    return storage.exists(storage.join(folder, DELIVERED_MARKER))


def partition(as_of: date) -> str:
    return f"as_of_date = DATE'{as_of.isoformat()}'"


def _table(spark: SparkSession, settings: Settings, layer: str, name: str) -> DataFrame | None:
    path = lake.table_path(settings.lake, layer, name)
    return lake.read(spark, path) if lake.exists(path) else None


# ---------------------------------------------------------------------------------------
# what is exported

def _segments(segments: DataFrame | None) -> DataFrame | None:
    """customer_id, as_of_date, persona, value_tier from gold/customer_segments (whichever exist)."""
    if segments is None:
        return None
    cols = set(segments.columns)
    return segments.select(
        "customer_id", "as_of_date",
        (F.col("persona_id").cast("string") if "persona_id" in cols else F.lit(None).cast("string")).alias("persona"),
        (F.col("value_tier").cast("string") if "value_tier" in cols else F.lit(None).cast("string"))
        .alias("value_tier"))


def held_out(recs: DataFrame) -> Column:
    """True for a recommendation of the control group (``holdout``; false where null, or in
    partitions scored before the column existed)."""
    return F.coalesce(F.col("holdout"), F.lit(False)) if "holdout" in recs.columns else F.lit(False)


def offered(recs: DataFrame, profile: DataFrame, conf: Export) -> DataFrame:
    """The first ``conf.top_n`` recommendations of customers with marketing consent at as_of
    (control group included)."""
    consenting = profile.where(F.col("marketing_consent") == F.lit(True)).select("customer_id").distinct()
    return recs.where(F.col("rank") <= F.lit(conf.top_n)).join(consenting, "customer_id", "left_semi")


def export_rows(recs: DataFrame, profile: DataFrame, catalog: DataFrame | None, segments: DataFrame | None,
                as_of: date, conf: Export) -> DataFrame:
    """The export rows of as_of (unsorted): the first ``conf.top_n`` recommendations of
    customers with marketing consent at as_of who are not held out (:func:`held_out`), with
    product name, persona, value tier and ``valid_until``."""
    out = offered(recs, profile, conf)
    out = out.where(~held_out(out))
    if catalog is not None:
        out = out.join(catalog.select("product_code", "product_name").dropDuplicates(["product_code"]),
                       "product_code", "left")
    else:
        out = out.withColumn("product_name", F.lit(None).cast("string"))
    segs = _segments(segments)
    if segs is not None:
        out = out.join(segs.where(partition(as_of)).drop("as_of_date").dropDuplicates(["customer_id"]),
                       "customer_id", "left")
    else:
        out = out.withColumn("persona", F.lit(None).cast("string")).withColumn("value_tier", F.lit(None).cast("string"))
    valid_until = as_of + timedelta(days=conf.validity_days)
    return out.select(
        "customer_id", "product_code", "product_name", F.col("rank").cast("int").alias("rank"),
        F.round(F.col("score"), SCORE_DECIMALS).alias("score"),
        (F.round(F.col("raw_score"), SCORE_DECIMALS) if "raw_score" in out.columns else F.lit(None).cast("double"))
        .alias("raw_score"),
        (F.round(F.col("expected_value"), SCORE_DECIMALS) if "expected_value" in out.columns
         else F.lit(None).cast("double")).alias("expected_value"), "reason_text_zh", "reason_text_en",
        "persona", "value_tier", F.lit(valid_until.isoformat()).cast("date").alias("valid_until"))


def changes(current: DataFrame, previous: DataFrame | None) -> DataFrame:
    """``new`` / ``changed`` (rank or score) / ``withdrawn`` rows between two exports (unsorted)."""
    cur = current.select("customer_id", "product_code", "rank", "score")
    if previous is None:
        return cur.select(F.lit("new").alias("change"), "customer_id", "product_code", "rank", "score",
                          F.lit(None).cast("int").alias("previous_rank"),
                          F.lit(None).cast("double").alias("previous_score"))
    prev = previous.select("customer_id", "product_code", F.col("rank").cast("int").alias("previous_rank"),
                           F.col("score").cast("double").alias("previous_score"))
    both = cur.withColumn("_cur", F.lit(True)).join(prev.withColumn("_prev", F.lit(True)),
                                                    ["customer_id", "product_code"], "full")
    change = F.when(both["_prev"].isNull(), "new").when(both["_cur"].isNull(), "withdrawn") \
        .when((F.col("rank") != F.col("previous_rank")) | ~F.col("score").eqNullSafe(F.col("previous_score")),
              "changed")
    return both.select(change.alias("change"), "customer_id", "product_code", "rank", "score", "previous_rank",
                       "previous_score").where(F.col("change").isNotNull())


def previous_export(root: Path | str, as_of: date, data_file: str = "recommendations.parquet"
                    ) -> tuple[date, Path | str] | None:
    """The latest complete export (with a manifest and ``data_file``) of a date before ``as_of``."""
    found = [(day, d) for day, d in _dated_folders(root, "manifest.json", data_file) if day < as_of]
    return max(found, key=lambda t: t[0]) if found else None


# ---------------------------------------------------------------------------------------
# writing: a sorted result streamed from the engine, one file per format

def arrow_batches(df: DataFrame) -> Iterator[pa.Table]:
    """The rows of ``df`` as Arrow tables, in the order the engine returns them, without
    collecting them all (Spark Connect streams the result batch by batch)."""
    session = df.sparkSession
    client, plan = getattr(session, "client", None), getattr(df, "_plan", None)
    if client is not None and plan is not None and hasattr(client, "to_table_as_iterator"):
        for item in client.to_table_as_iterator(plan.to_proto(client), plan.observations):
            if isinstance(item, pa.Table) and item.num_rows:
                yield item
        return
    names, buf = df.columns, []  # public API fallback (slower: rows through Python)
    for row in df.toLocalIterator():
        buf.append(tuple(row))
        if len(buf) >= 50_000:
            yield pa.Table.from_pylist([dict(zip(names, r)) for r in buf])
            buf = []
    if buf:
        yield pa.Table.from_pylist([dict(zip(names, r)) for r in buf])


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    cols = [table.column(f.name).cast(f.type) if table.column(f.name).type != f.type else table.column(f.name)
            for f in schema]
    return pa.Table.from_arrays(cols, schema=schema)


def csv_field(col) -> pa.Array:
    """One column's CSV fields: null -> empty; floats as ``repr``; other numbers and dates
    as Arrow writes them; text through :func:`c360.csvsafe.text_cells` (a cell a
    spreadsheet would run as a formula gets a leading ``'``; quoted when it holds a comma,
    a quote, LF or CR). Vectorised in Arrow except for the floats' ``repr`` (Arrow writes
    1.0 as ``1`` and 1e-05 as ``0.00001``)."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if pa.types.is_floating(col.type):
        return pa.array([None if v is None else repr(v) for v in col.to_pylist()], pa.string()).fill_null("")
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        return pc.cast(col, pa.string()).fill_null("")
    return csvsafe.text_cells(col)


class _CsvSink:
    """CSV with a header row, ``\n`` line ends, fields as :func:`csv_field` makes them
    (the format of :mod:`c360.csvsafe`, which :mod:`jobs.erase` also writes; 2.3M export
    rows in a few seconds)."""

    def __init__(self, path: Path, schema: pa.Schema):
        self.f = open(path, "w", encoding="utf-8", newline="")
        self.f.write(csvsafe.line(schema.names))
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        lines = pc.binary_join_element_wise(*[csv_field(c) for c in table.columns], ",")
        self.f.write("\n".join(lines.to_pylist()))
        self.f.write("\n")
        self.rows += table.num_rows

    def close(self) -> None:
        self.f.close()


class _ParquetSink:
    """Fixed-size row groups whatever the batch sizes, so the bytes depend only on the rows."""

    def __init__(self, path: Path, schema: pa.Schema):
        self.w = pq.ParquetWriter(path, schema, compression="zstd", compression_level=3)
        self.pending: list[pa.Table] = []
        self.n = 0

    def write(self, table: pa.Table) -> None:
        self.pending.append(table)
        self.n += table.num_rows
        while self.n >= ROW_GROUP_ROWS:
            self._flush(ROW_GROUP_ROWS)

    def _flush(self, rows: int) -> None:
        t = pa.concat_tables(self.pending).combine_chunks()
        self.w.write_table(t.slice(0, rows), row_group_size=rows)
        rest = t.slice(rows)
        self.pending, self.n = ([rest] if rest.num_rows else []), rest.num_rows

    def close(self) -> None:
        if self.n:
            self._flush(self.n)
        self.w.close()


def write_sorted(df: DataFrame, schema: pa.Schema, sinks: list) -> int:
    rows = 0
    try:
        for table in arrow_batches(df):
            t = _conform(table, schema)
            for s in sinks:
                s.write(t)
            rows += t.num_rows
    finally:
        for s in sinks:
            s.close()
    return rows


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def staging_folder(root: Path | str, as_of: date, run_id: str, prefix: str) -> tuple[bool, Path, Path]:
    """(whether ``root`` is on object storage, the local folder the files are written in,
    an empty staging folder in it) for a delivery of ``as_of`` under ``root``. The files
    are written locally first: in ``root`` itself, or in a new temporary folder (``prefix``)
    for a lake on object storage, uploaded by :func:`_replace_dir` (the caller removes it)."""
    remote = storage.is_uri(root)
    local_root = Path(tempfile.mkdtemp(prefix=prefix)) if remote else Path(root)
    local_root.mkdir(parents=True, exist_ok=True)
    staging = local_root / f".staging-{as_of.isoformat()}-{run_id}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    return remote, local_root, staging


def _replace_dir(staging: Path, final: Path | str) -> None:
    if storage.is_uri(final):
        _publish(staging, final)
        return
    old = final.with_name(f".old-{final.name}")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        final.rename(old)
    staging.rename(final)
    if old.exists():
        shutil.rmtree(old)


def _publish(staging: Path, final: str) -> None:
    """The local ``staging`` folder's files uploaded to the export folder ``final`` on object
    storage (which has no atomic folder rename): the old manifest is deleted first, so that
    the folder is not a complete export while it changes, then every data file, then the
    new manifest; objects of an earlier run of the date not written again are deleted."""
    names = sorted(p.name for p in staging.iterdir() if p.is_file())
    storage.remove(storage.join(final, "manifest.json"))
    for item in storage.listdir(final):
        if not item.is_dir and storage.name(item.path) not in names and storage.name(item.path) != DELIVERED_MARKER:
            storage.remove(item.path)
    for name in [n for n in names if n != "manifest.json"] + ["manifest.json"]:
        storage.write_bytes(storage.join(final, name), (staging / name).read_bytes())
    shutil.rmtree(staging, ignore_errors=True)


# ---------------------------------------------------------------------------------------
# outcomes of past recommendations

def outcomes(recs: DataFrame, profiles: DataFrame | None, segments: DataFrame | None, responses: DataFrame | None,
             as_of: date, conf: Export, bank_timezone: str, holdings: DataFrame | None = None,
             horizon_days: int = 30) -> DataFrame:
    """``gold/recommendation_outcomes`` rows for every recommendation date before as_of.

    Offers: a recommendation of date D (of a customer with consent at D, not held out) is
    matched to the offers of the same product to the same customer sent from the end of D
    (bank time) up to ``validity_days`` later, as known at the end of as_of; an offer
    converted when it has a ``converted`` outcome by then. ``recommended``: those
    customers; ``conversion_rate`` = converted / offers_sent (null without offers). An
    offer inside the windows of several recommendation dates counts for each of them.

    Adoption and uplift (:mod:`models.uplift`): the recommendations of customers with
    consent at D, treated (exported) and held out (the control group), adopted when the
    customer opened the product within ``horizon_days`` after D (the next best product
    model's label, conf ``models.next_best_product.horizon_days``) in the ``holdings``
    snapshots taken by the end of as_of; the columns :data:`models.uplift.UPLIFT_COLUMNS`.
    Adoption figures only for the dates whose window has fully passed at as_of
    (``adoption_complete``); without ``holdings`` none is known (``adoption_complete``
    false). Grouped by (D, product, persona at D).
    """
    at = AsOf(as_of, bank_timezone)
    before = F.col("as_of_date") < F.lit(as_of.isoformat()).cast("date")
    r = recs.where(before).select("as_of_date", "customer_id", "product_code", held_out(recs).alias("held"))
    if profiles is not None:
        r = r.join(profiles.where(before & (F.col("marketing_consent") == F.lit(True)))
                   .select("as_of_date", "customer_id").distinct(), ["as_of_date", "customer_id"], "left_semi")
    segs = _segments(segments)
    if segs is not None:
        r = r.join(segs.where(before).select("as_of_date", "customer_id", F.col("persona").alias("persona_id"))
                   .dropDuplicates(["as_of_date", "customer_id"]), ["as_of_date", "customer_id"], "left")
    else:
        r = r.withColumn("persona_id", F.lit(None).cast("string"))
    if holdings is not None:
        r = uplift.adopted(r, holdings, as_of, horizon_days)
    else:
        r = r.withColumn("adopted", F.lit(None).cast("boolean"))
    if responses is not None:
        done = F.coalesce(F.col("outcome_at"), F.col("sent_at")) < at.cutoff
        offers = responses.where(F.col("sent_at") < at.cutoff).groupBy("offer_id", "customer_id", "product_code").agg(
            F.min("sent_at").alias("o_sent_at"),
            F.max((F.col("outcome") == "converted") & done).alias("o_converted")) \
            .withColumnRenamed("customer_id", "o_customer_id").withColumnRenamed("product_code", "o_product_code")
        start = F.to_utc_timestamp(F.date_add(F.col("as_of_date"), 1).cast("timestamp"), bank_timezone)
        end = F.to_utc_timestamp(F.date_add(F.col("as_of_date"), 1 + conf.validity_days).cast("timestamp"),
                                 bank_timezone)
        cond = (F.col("customer_id") == F.col("o_customer_id")) & (F.col("product_code") == F.col("o_product_code")) \
            & (F.col("o_sent_at") >= start) & (F.col("o_sent_at") < end) & ~F.col("held")
        r = r.join(offers, cond, "left")
    else:
        r = r.withColumn("offer_id", F.lit(None).cast("string")).withColumn("o_converted", F.lit(None).cast("boolean"))
    agg = uplift.finish(r.groupBy("as_of_date", "product_code", "persona_id").agg(
        F.count_distinct(F.when(~F.col("held"), F.col("customer_id"))).alias("recommended"),
        F.count_distinct("offer_id").alias("offers_sent"),
        F.count_distinct(F.when(F.col("o_converted"), F.col("offer_id"))).alias("converted"),
        *uplift.uplift_aggregates()))
    return agg.select("as_of_date", "product_code", "persona_id", "recommended", "offers_sent", "converted",
                      F.when(F.col("offers_sent") > 0, F.col("converted") / F.col("offers_sent"))
                      .alias("conversion_rate"), *uplift.UPLIFT_COLUMNS)


# ---------------------------------------------------------------------------------------
# the step

def run(spark: SparkSession, settings: Settings, as_of: date, run_id: str = "manual", progress=None) -> dict:
    conf = settings.export
    if conf is None:
        raise ConfigError("conf/scoring.yaml: the export block is missing")
    step = (lambda stage, done: progress(stage, done, 4)) if progress else (lambda stage, done: None)
    recs_all = _table(spark, settings, "gold", "recommendations")
    skipped = _score_skipped(spark, settings, as_of)
    if skipped:
        # Scoring skipped this date (no champion yet): write nothing, so the CRM withdraws nothing.
        return {"skipped": f"nothing was scored for {as_of}: {skipped}"}
    if recs_all is None:
        raise RuntimeError(f"gold/recommendations does not exist under {settings.lake}: run the score step")
    c360 = _table(spark, settings, "gold", "customer_360")
    if c360 is None:
        raise RuntimeError(f"gold/customer_360 does not exist under {settings.lake}: run the profile step")
    segments = _table(spark, settings, "gold", "customer_segments")
    catalog = _table(spark, settings, "silver", "product_catalog")
    recs = recs_all.where(partition(as_of)).where(F.col("rank") <= F.lit(conf.top_n))
    head = recs.agg(F.count(F.lit(1)).alias("n"), F.max("model_version").alias("model_version"),
                    F.count_distinct("model_version").alias("versions")).first()
    if not head["n"] and not _scored(spark, settings, as_of):
        # An empty drop would withdraw every recommendation in the CRM: only when scoring
        # really ran for as_of and recommended nothing.
        raise RuntimeError(f"gold/recommendations has no rows for {as_of}: run the score step for that date")

    step("export files", 0)
    profile = c360.where(partition(as_of))
    offers = offered(recs, profile, conf)
    held = offers.where(held_out(offers)).agg(F.count(F.lit(1)).alias("n"),
                                              F.count_distinct("customer_id").alias("customers")).first()
    holdout = {"customers": int(held["customers"] or 0), "recommendations": int(held["n"] or 0)}
    rows = export_rows(recs, profile, catalog, segments, as_of, conf)
    _check_no_pii(rows.columns)
    root = export_root(settings)
    remote, local_root, staging = staging_folder(root, as_of, run_id, "c360-export-")
    n = write_sorted(rows.orderBy("customer_id", "rank", "product_code"), EXPORT_SCHEMA,
                     [_CsvSink(staging / "recommendations.csv", EXPORT_SCHEMA),
                      _ParquetSink(staging / "recommendations.parquet", EXPORT_SCHEMA)])

    step("export changes", 1)
    prev = previous_export(root, as_of)
    current_file = str(staging / "recommendations.parquet")
    if remote:  # where the engine (maybe a cluster) reads it too
        current_file = storage.join(root, f".staging-{as_of.isoformat()}-{run_id}", "recommendations.parquet")
        storage.write_bytes(current_file, (staging / "recommendations.parquet").read_bytes())
    current = spark.read.parquet(current_file)
    previous = spark.read.parquet(storage.join(prev[1], "recommendations.parquet")) if prev else None
    counter = _ChangeCounter()
    changed_rows = write_sorted(changes(current, previous).orderBy("customer_id", "product_code", "change"),
                                CHANGES_SCHEMA, [_CsvSink(staging / "changes.csv", CHANGES_SCHEMA), counter])
    manifest = {
        "as_of": as_of.isoformat(), "schema_version": conf.schema_version, "top_n": conf.top_n,
        "model_version": head["model_version"], "row_count": n,
        "valid_until": (as_of + timedelta(days=conf.validity_days)).isoformat(),
        "previous_export": prev[0].isoformat() if prev else None,
        "changes": {k: counter.counts.get(k, 0) for k in ("new", "changed", "withdrawn")},
        "holdout": holdout,
        "columns": {"recommendations": EXPORT_COLUMNS, "changes": CHANGES_SCHEMA.names},
        "files": {name: {"sha256": sha256(staging / name), "bytes": (staging / name).stat().st_size,
                         "rows": n if name.startswith("recommendations") else changed_rows} for name in FILES},
    }
    (staging / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2, sort_keys=True) + "\n",
                                           encoding="utf-8")
    final = storage.join(root, as_of.isoformat()) if remote else root / as_of.isoformat()
    _replace_dir(staging, final)
    if remote:
        storage.remove_tree(storage.parent(current_file))
        shutil.rmtree(local_root, ignore_errors=True)

    step("export outcomes", 2)
    outcome_rows = refresh_outcomes(spark, settings, as_of)
    step("export", 4)
    return {
        "path": str(final), "rows": n, "recommendations": int(head["n"]),
        "excluded_no_consent": int(head["n"]) - n - holdout["recommendations"], "holdout": holdout,
        "model_version": head["model_version"],
        "model_versions": int(head["versions"]), "previous_export": manifest["previous_export"],
        "changes": manifest["changes"], "files": {k: v["sha256"] for k, v in manifest["files"].items()},
        "outcomes": outcome_rows,
    }


def _horizon_days(settings: Settings) -> int:
    """The next best product model's label horizon (conf ``models.next_best_product.horizon_days``)."""
    models = getattr(settings, "models", None)
    return models.next_best_product.horizon_days if models is not None else 30


def _holdings(spark: SparkSession, settings: Settings, as_of: date) -> DataFrame | None:
    """The accounts' opening dates known at as_of: ``silver/holdings_latest`` (one row per
    account) when it may stand for the snapshots up to as_of, else ``silver/holdings``
    (:func:`models.uplift.adopted` ignores its snapshots after as_of); None without either."""
    latest = silver.holdings_latest(spark, settings, as_of)
    return latest if latest is not None else _table(spark, settings, "silver", "holdings")


def refresh_outcomes(spark: SparkSession, settings: Settings, as_of: date) -> dict:
    """Write ``gold/recommendation_outcomes`` (:func:`outcomes`) for every recommendation date
    before as_of and publish it (:func:`publish_outcomes`); the export step's last part, which
    needs no recommendation of as_of itself. Returns its totals."""
    conf = settings.export
    recs_all = _table(spark, settings, "gold", "recommendations")
    c360 = _table(spark, settings, "gold", "customer_360")
    if recs_all is None or c360 is None:
        raise RuntimeError(f"gold/recommendations or gold/customer_360 does not exist under {settings.lake}")
    out_path = lake.table_path(settings.lake, "gold", "recommendation_outcomes")
    lake.write_partition(outcomes(recs_all.where(F.col("rank") <= F.lit(conf.top_n)), c360,
                                  _table(spark, settings, "gold", "customer_segments"),
                                  _table(spark, settings, "silver", "campaign_responses"), as_of, conf,
                                  settings.bank.timezone, _holdings(spark, settings, as_of),
                                  _horizon_days(settings)),
                         out_path, "as_of_date", f"as_of_date < DATE'{as_of.isoformat()}'", schema=OUTCOMES_SCHEMA)
    publish_outcomes(spark, settings, as_of)
    row = lake.read(spark, out_path).where(f"as_of_date < DATE'{as_of.isoformat()}'").agg(
        F.count(F.lit(1)).alias("n"), F.sum("offers_sent").alias("sent"), F.sum("converted").alias("conv"),
        F.sum("treated_adopted").alias("t_adopted"), F.sum("holdout_adopted").alias("h_adopted")).first()
    return {"rows": int(row["n"] or 0), "offers_sent": int(row["sent"] or 0), "converted": int(row["conv"] or 0),
            "treated_adopted": int(row["t_adopted"] or 0), "holdout_adopted": int(row["h_adopted"] or 0)}


def publish_outcomes(spark: SparkSession, settings: Settings, as_of: date) -> str:
    """Copy ``gold/recommendation_outcomes`` (aggregates per date, product and persona: no
    customer rows) for every date before as_of to ``marketing/recommendation_outcomes``."""
    before = f"as_of_date < DATE'{as_of.isoformat()}'"
    src = lake.read(spark, lake.table_path(settings.lake, "gold", "recommendation_outcomes")).where(before)
    dest = lake.table_path(settings.lake, "marketing", "recommendation_outcomes")
    lake.write_partition(src.select(*OUTCOMES_SCHEMA.fieldNames()), dest, "as_of_date", before,
                         schema=OUTCOMES_SCHEMA)
    return dest


def _scored(spark: SparkSession, settings: Settings, as_of: date) -> bool:
    """The score step succeeded for ``as_of`` (ops/run_log)."""
    log = _table(spark, settings, "ops", "run_log")
    if log is None:
        return False
    day = F.lit(as_of.isoformat()).cast("date")
    return log.where((F.col("step") == "score") & (F.col("status") == "succeeded") & (F.col("as_of") == day)) \
        .limit(1).count() > 0


def score_metrics(spark: SparkSession, settings: Settings, as_of: date) -> dict | None:
    """The run summary (``metrics``) of the latest successful score run for ``as_of``, or None."""
    log = _table(spark, settings, "ops", "run_log")
    if log is None:
        return None
    day = F.lit(as_of.isoformat()).cast("date")
    row = log.where((F.col("step") == "score") & (F.col("status") == "succeeded") & (F.col("as_of") == day)) \
        .orderBy(F.col("finished_at").desc()).select("metrics").first()
    if row is None or not row["metrics"]:
        return None
    return json.loads(row["metrics"])


def _score_skipped(spark: SparkSession, settings: Settings, as_of: date) -> str | None:
    """Why the latest successful score run for ``as_of`` skipped, or None if it did not."""
    return (score_metrics(spark, settings, as_of) or {}).get("skipped")


class _ChangeCounter:
    def __init__(self):
        self.counts: dict[str, int] = {}

    def write(self, table: pa.Table) -> None:
        for k, v in zip(*[table.column("change").value_counts().field(i).to_pylist() for i in (0, 1)]):
            self.counts[k] = self.counts.get(k, 0) + v

    def close(self) -> None:
        pass


__all__ = ["run", "export_rows", "offered", "held_out", "changes", "outcomes", "previous_export", "export_root", "exports",
           "publish_outcomes", "refresh_outcomes", "is_delivered", "service_export_root", "score_metrics", "staging_folder",
           "DELIVERED_MARKER", "EXPORT_COLUMNS", "is_pii_column"]

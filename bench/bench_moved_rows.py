"""Cost of finding moved rows in a daily silver run (issue #25), on synthetic Delta tables.

    uv run --frozen python bench/bench_moved_rows.py [ROWS [CHUNK]]   # default 5,000,000 and 140,000

A bronze/transactions-like table of ROWS rows over 60 days (hashed ids: file statistics
cannot prune a join), silver/transactions built from it by the job, and a new day of CHUNK
rows (about a day at 1M customers). Times ``jobs.silver._apply`` for the chunk: moves off
(the work before the fix), moves on with no re-delivered row (the usual day), moves on
with 10 re-delivered rows whose txn_ts moved 3 days back; then the look-up alone for the 10
marked keys and, for comparison, for every key of the chunk (what the look-up would cost
without bronze's mark). Data goes to ``$BENCH_DIR`` (default /tmp/c360-bench-moved)."""
import os
import shutil
import sys
import time
from datetime import datetime

sys.path.insert(0, os.getcwd())
from pyspark.sql import functions as F

from c360 import lake
from c360.contract import SOURCES
from c360.engine import spark_session
from c360.settings import load_settings
from jobs import silver

N = int(sys.argv[1]) if len(sys.argv) > 1 else 5_000_000
DAYS = 60
CHUNK = int(sys.argv[2]) if len(sys.argv) > 2 else 140_000
K = 10
base = os.environ.get("BENCH_DIR", "/tmp/c360-bench-moved")
root = f"{base}/lake"
env = {k: v for k, v in os.environ.items() if k not in ("SPARK_REMOTE", "C360_LAKE", "C360_LANDING")}
settings = load_settings(environ=env).with_paths(landing=f"{base}/landing", lake=root)
src = SOURCES["transactions"]
T0 = datetime(2026, 7, 1, 1)
T1 = datetime(2026, 7, 2, 1)


def rows(spark, n, offset, day0, days, at, redelivered):
    cols = {c.name: F.lit(None).cast("string") for c in src.columns}
    df = spark.range(offset, offset + n).select(
        # hashed: ids in no order, so file statistics cannot prune the join (the worst case)
        F.substring(F.sha2(F.col("id").cast("string"), 256), 1, 20).alias("txn_id"),
        F.format_string("A%07d", (F.col("id") % 1000000)).alias("account_id"),
        F.format_string("C%07d", (F.col("id") % 1000000)).alias("customer_id"),
        (F.lit(day0).cast("timestamp").cast("long") + (F.col("id") % days) * 86400 + 4 * 3600
         ).cast("timestamp").alias("txn_ts"),
        (F.col("id") % 9000 / 3).cast("decimal(18,2)").alias("amount"),
        F.lit("CNY").alias("currency"),
        F.when(F.col("id") % 2 == 0, "debit").otherwise("credit").alias("direction"),
        F.lit("pos").alias("channel"),
        F.lit("grocery").alias("merchant_category"),
        F.lit(None).cast("string").alias("counterparty"),
        F.lit("shop 123").alias("description"),
        F.lit(at).cast("timestamp").alias("_ingested_at"),
        F.lit("b").alias("_batch_id"), F.lit("f").alias("_source_file"), F.lit("v").alias("_version"),
        F.lit(redelivered).alias("_redelivered"))
    return df.select(*[F.col(c.name).cast(df.schema[c.name].dataType) if c.name in df.columns
                       else cols[c.name].alias(c.name) for c in src.columns], "_ingested_at", "_batch_id",
                     "_source_file", "_version", "_redelivered")


def timed(label, fn):
    t = time.perf_counter()
    out = fn()
    print(f"{label}: {time.perf_counter() - t:.2f} s", flush=True)
    return out


with spark_session(settings) as eng:
    spark = eng.spark
    shutil.rmtree(root, ignore_errors=True)
    bronze_path = lake.table_path(root, "bronze", "transactions")
    out = lake.table_path(root, "silver", "transactions")
    timed(f"bronze {N:,} rows", lambda: lake.overwrite(rows(spark, N, 0, "2026-05-01", DAYS, T0, False), bronze_path))
    # silver built by the job itself
    timed("silver build", lambda: silver._incremental(spark, settings, src, bronze_path, out))
    print("silver rows", lake.row_count(out), "partitions", len(lake.partition_values(out, "partition_date")))
    snapshot = f"{base}/silver_snapshot"
    shutil.rmtree(snapshot, ignore_errors=True)
    shutil.copytree(out, snapshot)

    def restore():
        shutil.rmtree(out)
        shutil.copytree(snapshot, out)

    chunk = rows(spark, CHUNK, N, "2026-06-30", 1, T1, False)
    chunk_path = lake.table_path(root, "bronze", "_chunk")
    lake.overwrite(chunk, chunk_path)
    # K re-delivered keys of old rows, their txn_ts moved 3 days back
    resent = rows(spark, K, 0, "2026-05-01", DAYS, T1, True).withColumn(
        "txn_ts", (F.col("txn_ts").cast("long") - 3 * 86400).cast("timestamp"))
    resent_chunk_path = lake.table_path(root, "bronze", "_chunk_resent")
    lake.overwrite(lake.read(spark, chunk_path).limit(CHUNK - K).unionByName(resent), resent_chunk_path)

    def apply(path, moves):
        new = lake.read(spark, path)
        return silver._apply(spark, settings, src, new, out, True, moves=moves)

    for rep in range(2):
        restore()
        timed(f"[{rep}] apply, moves off (before the fix)", lambda: apply(chunk_path, False))
        restore()
        timed(f"[{rep}] apply, moves on, none re-delivered", lambda: apply(chunk_path, True))
        restore()
        r = timed(f"[{rep}] apply, moves on, {K} re-delivered moved", lambda: apply(resent_chunk_path, True))
        print("   written partitions", len(r[1]))
        restore()
        timed(f"[{rep}] apply, moves off, {K} re-delivered (wrong result: duplicates)",
              lambda: apply(resent_chunk_path, False))
        # parts measured alone
        new = lake.read(spark, chunk_path)
        m = F.col("_redelivered")
        timed(f"[{rep}]   mark count alone", lambda: new.where(m.isNull() | m).count())
        restore()
        keys = lake.read(spark, resent_chunk_path).where(m).select("txn_id")
        timed(f"[{rep}]   join of {K} keys against the table alone", lambda: keys.join(
            lake.read(spark, out).where("partition_date <> DATE'2026-06-30'").select("txn_id", "partition_date"),
            "txn_id").select("partition_date").distinct().collect())
        allkeys = lake.read(spark, chunk_path).select("txn_id")
        timed(f"[{rep}]   naive: join of all {CHUNK:,} chunk keys against the table", lambda: allkeys.join(
            lake.read(spark, out).where("partition_date <> DATE'2026-06-30'").select("txn_id", "partition_date"),
            "txn_id").select("partition_date").distinct().collect())

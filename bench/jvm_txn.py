"""The profile's transaction aggregation on classic local JVM Spark (a bench subprocess).

    python bench/jvm_txn.py REQUEST.json

``REQUEST.json``: ``files`` (the Parquet files of the silver transactions table's current
version: there are no Delta jars here, so the table is read as plain Parquet), ``as_of``,
``bank_timezone``, ``profile_conf``, ``out`` (Parquet directory written), ``driver_memory``,
``cores``, ``shuffle_partitions``. Prints one JSON line: JVM start-up seconds, seconds for
the aggregation (read, compute, write), rows out, Spark version.

PySpark picks Spark Connect or classic mode once per process, and the bench process is a
Spark Connect client of Sail: hence a subprocess, as ``tests/parity_jvm.py`` does. The
transforms are the pipeline's own (``features.profile``), unchanged.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import date
from pathlib import Path

# Classic mode, whatever the caller's environment says; before pyspark is imported.
for _var in ("SPARK_REMOTE", "SPARK_CONNECT_MODE_ENABLED", "SPARK_LOCAL_REMOTE", "PYSPARK_SUBMIT_ARGS", "SPARK_HOME"):
    os.environ.pop(_var, None)
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT, ROOT / "bench"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    req = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    t0 = time.perf_counter()
    from pyspark.sql import SparkSession

    import txn_features

    spark = (SparkSession.builder.master(f"local[{int(req.get('cores', 2))}]")
             .appName("c360-bench-jvm")
             .config("spark.sql.session.timeZone", "UTC")
             .config("spark.ui.enabled", "false")
             .config("spark.ui.showConsoleProgress", "false")
             .config("spark.driver.memory", req.get("driver_memory", "4g"))
             .config("spark.sql.shuffle.partitions", str(req.get("shuffle_partitions", 8)))
             .config("spark.default.parallelism", str(int(req.get("cores", 2))))
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    if spark.__class__.__module__.startswith("pyspark.sql.connect"):
        print("jvm_txn: got a Spark Connect session, expected classic JVM Spark", file=sys.stderr)
        return 3
    started = time.perf_counter() - t0
    try:
        t1 = time.perf_counter()
        txns = spark.read.parquet(*req["files"])
        rows_in = None
        out = txn_features.spark_txn_features(txns, date.fromisoformat(req["as_of"]), req["bank_timezone"],
                                              req["profile_conf"])
        out.write.mode("overwrite").parquet(req["out"])
        seconds = time.perf_counter() - t1
        rows_out = spark.read.parquet(req["out"]).count()
        import pyspark

        print(json.dumps({"engine": "jvm", "spark_version": pyspark.__version__, "startup_seconds": round(started, 2),
                          "seconds": round(seconds, 2), "rows_in": rows_in, "rows_out": rows_out,
                          "driver_memory": req.get("driver_memory"), "cores": req.get("cores")}))
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

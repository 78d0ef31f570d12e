"""Run the parity cases on classic local JVM Spark and write their results.

    python tests/parity_jvm.py OUTDIR [CASE ...]

Writes ``OUTDIR/<case>.jsonl`` (one rendered row per line, sorted) and
``OUTDIR/manifest.json`` (per case: schema, row count, or the error it raised).
Run by ``tests/test_parity.py`` in a subprocess: PySpark picks Spark Connect or classic
mode once per process, and the test process is already a Spark Connect client of Sail.
Needs Java; no Delta, no network (the pyspark wheel carries the Spark jars).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

# Classic mode, whatever the caller's environment says; before pyspark is imported.
for _var in ("SPARK_REMOTE", "SPARK_CONNECT_MODE_ENABLED", "SPARK_LOCAL_REMOTE", "PYSPARK_SUBMIT_ARGS"):
    os.environ.pop(_var, None)
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT, ROOT / "tests"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))


def main(argv: list[str]) -> int:
    if len(argv) < 1:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()

    import parity_cases
    from pyspark.sql import SparkSession

    spark = (SparkSession.builder.master("local[2]")
             .appName("c360-parity")
             .config("spark.sql.session.timeZone", "UTC")
             .config("spark.ui.enabled", "false")
             .config("spark.ui.showConsoleProgress", "false")
             .config("spark.sql.shuffle.partitions", "2")
             .config("spark.default.parallelism", "2")
             .config("spark.driver.memory", "1g")
             # A short run: the C1 compiler alone and the serial GC halve the JVM's CPU time
             # (no effect on results).
             .config("spark.driver.extraJavaOptions", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
             .config("spark.sql.adaptive.enabled", "false")
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    if spark.__class__.__module__.startswith("pyspark.sql.connect"):
        print("parity_jvm: got a Spark Connect session, expected classic JVM Spark", file=sys.stderr)
        return 3
    try:
        names = argv[1:] or list(parity_cases.CASES)
        results = parity_cases.run_all(spark, names)
    finally:
        spark.stop()

    manifest = {"engine": "jvm", "spark_version": None, "seconds": None, "cases": {}}
    import pyspark

    manifest["spark_version"] = pyspark.__version__
    for name, res in results.items():
        if "error" in res:
            manifest["cases"][name] = {"error": res["error"], "seconds": res["seconds"]}
            continue
        (out / f"{name}.jsonl").write_text("".join(r + "\n" for r in res["rows"]), encoding="utf-8")
        manifest["cases"][name] = {"schema": res["schema"], "rows": len(res["rows"]), "seconds": res["seconds"]}
    manifest["seconds"] = round(time.monotonic() - started, 1)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False), encoding="utf-8")
    errors = [n for n, r in results.items() if "error" in r]
    print(f"parity_jvm: {len(results)} cases in {manifest['seconds']} s"
          + (f"; errors in {', '.join(errors)}" if errors else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""``evaluate``: score ``gold/recommendations`` at as_of against the truth of a simulated bank.

Reads the truth the generator wrote under ``<landing>/_meta/truth/`` (worlds other than
``demo``; the pipeline itself never reads it), ``gold/recommendations`` at as_of and the
silver holdings (popularity), computes the metrics in the engine
(:mod:`models.evaluation`) and writes ``<lake>/reports/evaluation/<as_of>.json`` and
``.html``.
"""

from __future__ import annotations

import html
import json
from datetime import date, timedelta
from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from c360 import lake
from c360.settings import Settings
from models.evaluation import CUTOFFS, METHODS, evaluate, evaluation_pairs, recent_popularity


def truth_dir(landing: Path | str) -> Path:
    return Path(landing) / "_meta" / "truth"


def report_paths(settings: Settings, as_of: date) -> tuple[Path, Path]:
    base = Path(settings.lake) / "reports" / "evaluation"
    return base / f"{as_of.isoformat()}.json", base / f"{as_of.isoformat()}.html"


def read_world(landing: Path | str, as_of: date) -> dict:
    """The truth's ``world.json`` (world, as_of, horizon_days, products).

    Raises:
        ValueError: no truth in the landing zone, or a truth of another as_of.
    """
    tdir = truth_dir(landing)
    meta = tdir / "world.json"
    if not meta.is_file():
        raise ValueError(f"no truth under {tdir}: generate a world other than demo "
                         "(`c360 generate --world sequence|digital`)")
    world = json.loads(meta.read_text(encoding="utf-8"))
    if world["as_of"] != as_of.isoformat():
        raise ValueError(f"the truth under {tdir} is for as_of {world['as_of']}, not {as_of.isoformat()}")
    return world


def run(spark: SparkSession, settings: Settings, as_of: date) -> dict:
    """Evaluate; return the result (also written as JSON and HTML, see :func:`report_paths`).

    Raises:
        ValueError: no truth (:func:`read_world`) or no recommendations at as_of.
    """
    world = read_world(settings.landing, as_of)
    tdir = truth_dir(settings.landing)
    recs_path = lake.table_path(settings.lake, "gold", "recommendations")
    if not lake.exists(recs_path):
        raise ValueError(f"gold/recommendations does not exist under {settings.lake}: run the score step")
    recs = lake.read(spark, recs_path).where(F.col("as_of_date") == F.lit(as_of.isoformat()).cast("date")) \
        .select("customer_id", "product_code", "rank")
    if recs.limit(1).count() == 0:
        raise ValueError(f"gold/recommendations has no rows at {as_of.isoformat()}: run the score step for it")
    truth = spark.read.parquet(str(tdir / "probabilities.parquet"))
    end = as_of + timedelta(days=int(world["horizon_days"]))
    adopted = spark.read.parquet(str(tdir / "adoptions.parquet")) \
        .where((F.col("opened_date").cast("date") > F.lit(as_of.isoformat()).cast("date"))
               & (F.col("opened_date").cast("date") <= F.lit(end.isoformat()).cast("date")))
    holdings = lake.read(spark, lake.table_path(settings.lake, "silver", "holdings"))
    pairs = evaluation_pairs(recs, truth, adopted, recent_popularity(holdings, as_of))
    result = {"as_of": as_of.isoformat(), "world": world["world"], "horizon_days": world["horizon_days"],
              **evaluate(pairs)}
    json_path, html_path = report_paths(settings, as_of)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    html_path.write_text(render_html(result), encoding="utf-8")
    result["json"], result["html"] = str(json_path), str(html_path)
    return result


def table_rows(result: dict) -> list[list[str]]:
    """Rows (method, MAP@7, MAP@3, share of oracle @7, ratio to popularity @7) for display."""
    rows = []
    oracle, pop = result["methods"]["oracle"], result["methods"]["popularity"]
    for m in METHODS:
        r = result["methods"][m]
        share = r["map_at_7"] / oracle["map_at_7"] if oracle["map_at_7"] else None
        ratio = r["map_at_7"] / pop["map_at_7"] if pop["map_at_7"] else None
        rows.append([m, *(f"{r[f'map_at_{k}']:.4f}" for k in CUTOFFS),
                     "-" if share is None else f"{share:.1%}", "-" if ratio is None else f"{ratio:.2f}x"])
    return rows


def render_html(result: dict) -> str:
    head = ["method", *(f"MAP@{k}" for k in CUTOFFS), "share of oracle (MAP@7)", "ratio to popularity (MAP@7)"]
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in table_rows(result))
    title = f"Recommendations against the truth: world {result['world']}, as_of {result['as_of']}"
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head><body>"
            f"<h1>{html.escape(title)}</h1><p>{result['customers']:,} customers, "
            f"{result['customers_with_positive']:,} with an adoption in the {result['horizon_days']} days after "
            f"as_of ({result['positives']:,} adoptions of eligible products).</p>"
            "<table border='1' cellpadding='4'><thead><tr>"
            + "".join(f"<th>{html.escape(h)}</th>" for h in head) + f"</tr></thead><tbody>{body}</tbody></table>"
            "</body></html>\n")


__all__ = ["run", "read_world", "report_paths", "truth_dir", "table_rows", "render_html"]

"""The marketing report on segments and personas: one self-contained HTML file.

``<lake>/marketing/reports/<as_of>/segments.html`` (the marketing zone, :func:`report_path`)
opens in any browser with nothing installed:
CSS is inline, charts are PNG images (matplotlib) embedded as base64, and the text is
bilingual (zh/en; chart labels are in English so that they render without a CJK font).
It is built from aggregated gold tables only (personas, segment KPIs, migration, and
segment counts): no customer row, no customer id ever reaches it.
"""

from __future__ import annotations

import base64
import io
import json
from datetime import date
from pathlib import Path

from pyspark.sql import SparkSession

from c360 import lake, storage
from c360.settings import Settings

TEMPLATES = Path(__file__).resolve().parent / "templates"
TIER_ORDER = ["high_end", "mass", "long_tail"]
TIER_ZH = {"high_end": "高端", "mass": "大众", "long_tail": "长尾"}
STAGE_ZH = {"new": "新客", "growing": "成长", "mature": "成熟", "declining": "衰退", "dormant": "沉睡",
            "churned": "流失"}
PALETTE = ["#1f5fa8", "#e07b39", "#3a9a5b", "#b83b5e", "#7d5ba6", "#c9a227", "#2a9d8f", "#6c757d", "#d1495b",
           "#00798c", "#edae49", "#66a182"]
KPI_CHARTS = [("aum_avg", "Average AUM (CNY)", "{:,.0f}"), ("nps", "NPS (% promoters - % detractors)", "{:+.0f}"),
              ("complaint_rate", "Complaint rate", "{:.1%}"), ("churn_rate", "Churn rate", "{:.1%}"),
              ("digital_share", "Digitally active (logins 90 d)", "{:.0%}"), ("avg_wait_s", "Average wait (s)",
                                                                                "{:,.0f}")]


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.family": "DejaVu Sans", "font.size": 9, "axes.spines.top": False,
                         "axes.spines.right": False, "axes.titleweight": "bold", "axes.titlesize": 10})
    return plt


def _persona_label(p: dict) -> str:
    name = p["persona_name_en"]
    return f"{p['persona_id']} {name if len(name) <= 34 else name[:32] + '…'}"


def persona_size_chart(personas: list[dict]) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.2, 0.45 * len(personas) + 0.9))
    labels = [_persona_label(p) for p in personas][::-1]
    shares = [p["share"] for p in personas][::-1]
    colors = [PALETTE[i % len(PALETTE)] for i in range(len(personas))][::-1]
    bars = ax.barh(labels, shares, color=colors)
    for b, p in zip(bars, personas[::-1]):
        ax.text(b.get_width(), b.get_y() + b.get_height() / 2, f"  {p['share']:.1%}  ({p['size']:,})",
                va="center", fontsize=8)
    ax.set_xlim(0, max(shares) * 1.35 if shares else 1)
    ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:.0%}"))
    ax.set_title("Persona size (share of customers)")
    return _png(fig)


def kpi_chart(personas: list[dict], population: dict) -> str:
    plt = _plt()
    fig, axes = plt.subplots(2, 3, figsize=(11, 5.6))
    ids = [p["persona_id"] for p in personas]
    colors = [PALETTE[i % len(PALETTE)] for i in range(len(personas))]
    for ax, (key, title, fmt) in zip(axes.flat, KPI_CHARTS):
        vals = [p["kpis"].get(key) for p in personas]
        ax.bar(ids, [v if v is not None else 0 for v in vals], color=colors)
        for i, v in enumerate(vals):
            label = fmt.format(v) if v is not None else "too few" if _respondents(personas[i]["kpis"], key) else "n/a"
            ax.text(i, v if v is not None else 0, label, ha="center", va="bottom", fontsize=7)
        ref = population.get(key)
        if ref is not None:
            ax.axhline(ref, color="#333", lw=0.9, ls="--")
            ax.text(len(ids) - 0.5, ref, f" all: {fmt.format(ref)}", fontsize=7, va="bottom", ha="right")
        ax.set_title(title)
        if key in ("complaint_rate", "churn_rate", "digital_share"):
            ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:.0%}"))
        ax.margins(y=0.18)
    fig.suptitle("KPIs by persona (dashed line: all customers)", fontweight="bold")
    fig.tight_layout()
    return _png(fig)


def distribution_chart(tiers: list[dict], stages: list[dict]) -> str:
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3.4), gridspec_kw={"width_ratios": [1, 1.7]})
    for ax, rows, title, color in ((a1, tiers, "Value tier", "#1f5fa8"), (a2, stages, "Lifecycle stage", "#3a9a5b")):
        labels = [r["segment"] for r in rows]
        shares = [r["share"] for r in rows]
        bars = ax.bar(labels, shares, color=color)
        for b, r in zip(bars, rows):
            ax.text(b.get_x() + b.get_width() / 2, b.get_height(), f"{r['share']:.1%}\n{r['customers']:,}",
                    ha="center", va="bottom", fontsize=7.5)
        ax.set_title(f"{title} (share of customers)")
        ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:.0%}"))
        ax.margins(y=0.3)
    fig.tight_layout()
    return _png(fig)


# experience KPI -> the count it is computed over (gold/segment_kpis, features.experience)
EXPERIENCE_COUNTS = {"nps": "nps_respondents", "nps_mean_score": "nps_respondents", "csat": "csat_responses",
                     "ces": "ces_responses"}


def _respondents(row: dict, key: str) -> int:
    """The respondents behind experience KPI ``key`` of a segment row (0 for another KPI)."""
    return int(row.get(EXPERIENCE_COUNTS.get(key, ""), 0) or 0)


def experience_value(row: dict, key: str, nd: int = 0, signed: bool = False) -> str:
    """An experience KPI as the report shows it: the value; "too few" (with the count)
    when there were respondents but fewer than the minimum (the table holds null); "—"
    without any."""
    v = row.get(key)
    if v is not None:
        return f"{v:+.{nd}f}" if signed else f"{v:,.{nd}f}"
    n = _respondents(row, key)
    return f"too few 样本不足 (n={n})" if n else "—"


def _population(kpis: list[dict], min_respondents: int = 1) -> dict:
    """All-customer KPIs, weighted from the value-tier rows (every customer has one tier).
    NPS and CSAT are exact (from the promoter, detractor and satisfied counts); CES is the
    tiers' CES weighted by their answers (tiers with too few left out)."""
    rows = [r for r in kpis if r["dimension"] == "value_tier"]
    n = sum(r["customers"] for r in rows)
    out = {"customers": n}
    if not n:
        return out
    for key in ("aum_avg", "complaint_rate", "churn_rate", "digital_share"):
        out[key] = sum((r[key] or 0) * r["customers"] for r in rows) / n
    resp = {c: sum(r.get(c) or 0 for r in rows) for c in ("nps_respondents", "nps_promoters", "nps_detractors",
                                                           "csat_responses", "csat_satisfied", "ces_responses")}
    out.update(resp)
    n_nps, n_csat = resp["nps_respondents"], resp["csat_responses"]
    enough = max(int(min_respondents), 1)
    out["nps"] = 100.0 * (resp["nps_promoters"] - resp["nps_detractors"]) / n_nps if n_nps >= enough else None
    out["csat"] = 100.0 * resp["csat_satisfied"] / n_csat if n_csat >= enough else None
    ces = [(r["ces"], r.get("ces_responses") or 0) for r in rows if r.get("ces") is not None]
    w_ces = sum(c for _, c in ces)
    out["ces"] = sum(v * c for v, c in ces) / w_ces if w_ces and resp["ces_responses"] >= enough else None
    for key in ("avg_wait_s",):
        # averages over customers with a value: weight by segment size (an approximation
        # when answer rates differ between tiers)
        vals = [(r[key], r["customers"]) for r in rows if r[key] is not None]
        w = sum(c for _, c in vals)
        out[key] = sum(v * c for v, c in vals) / w if w else None
    out["aum_total"] = sum(r["aum_total"] or 0 for r in rows)
    return out


def _matrix(rows: list[dict], order: list[str] | None = None) -> dict:
    """A migration matrix: row and column labels, counts, row shares."""
    froms = sorted({r["from_segment"] for r in rows}, key=lambda s: _sort_key(s, order))
    tos = sorted({r["to_segment"] for r in rows}, key=lambda s: _sort_key(s, order))
    cell = {(r["from_segment"], r["to_segment"]): r["customers"] for r in rows}
    out_rows = []
    for f in froms:
        total = sum(cell.get((f, t), 0) for t in tos)
        cells = []
        for t in tos:
            n = cell.get((f, t), 0)
            share = n / total if total else 0
            cells.append({"n": n, "share": share, "diag": f == t,
                          "bg": f"rgba(31,95,168,{0.08 + 0.75 * share:.2f})" if n else "transparent",
                          "fg": "#fff" if share > 0.55 else "#222"})
        out_rows.append({"label": f, "cells": cells, "total": total})
    moved = sum(c["n"] for r in out_rows for c in r["cells"] if not c["diag"])
    total = sum(r["total"] for r in out_rows)
    return {"cols": tos, "rows": out_rows, "moved": moved, "total": total}


def _sort_key(s: str, order: list[str] | None):
    if s == "(new)":
        return (2, 0, s)
    if s == "(gone)":
        return (3, 0, s)
    if order and s in order:
        return (0, order.index(s), s)
    return (1, 0, s)


def jinja_env():
    """The reports' template environment: every value rendered into a page is HTML-escaped
    (autoescape), with the number filters ``pct`` (a share as %), ``num`` and ``exp``
    (:func:`experience_value`); "—" for a missing value. The shared style sheet is
    ``templates/report_style.css`` (included inline: a report is one self-contained file)."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html", "j2"]))
    env.filters["pct"] = lambda v, nd=1: "—" if v is None else f"{100 * v:.{nd}f}%"
    env.filters["num"] = lambda v, nd=0: "—" if v is None else f"{v:,.{nd}f}"
    env.filters["exp"] = experience_value
    return env


def report_data(spark: SparkSession, settings: Settings, as_of: date) -> dict:
    """Everything the report shows, as plain Python (aggregates only)."""
    where = f"as_of_date = DATE'{as_of.isoformat()}'"
    gold = lambda n: lake.table_path(settings.lake, "gold", n)  # noqa: E731
    personas = [r.asDict() for r in lake.read(spark, gold("personas")).where(where).drop("centroid").collect()]
    for p in personas:
        p["kpis"] = json.loads(p["kpis"] or "{}")
        p["features"] = json.loads(p["distinguishing_features"] or "[]")
    personas.sort(key=lambda p: (-p["size"], p["persona_id"]))
    kpis = [r.asDict() for r in lake.read(spark, gold("segment_kpis")).where(where).collect()]
    seg = lake.read(spark, gold("customer_segments")).where(where)
    cross = [r.asDict() for r in seg.groupBy("value_tier", "lifecycle_stage").count().collect()]
    migration = []
    if lake.exists(gold("segment_migration")):
        migration = [r.asDict() for r in lake.read(spark, gold("segment_migration")).where(where).collect()]
    # names of the personas on both sides of the migration (a persona may have retired)
    names = {}
    if migration:
        prev = f"as_of_date = DATE'{migration[0]['from_as_of'].isoformat()}'"
        for r in lake.read(spark, gold("personas")).where(prev).select("persona_id", "persona_name_zh",
                                                                          "persona_name_en").collect():
            names[r.persona_id] = (r.persona_name_zh, r.persona_name_en)
    names.update({p["persona_id"]: (p["persona_name_zh"], p["persona_name_en"]) for p in personas})
    model = None
    mpath = lake.table_path(settings.lake, "ops", "persona_model")
    if lake.exists(mpath):
        m = lake.read(spark, mpath).where(where).select("k", "criterion", "scores", "sample_rows", "population") \
            .collect()
        model = m[0].asDict() if m else None
        if model:
            model["scores"] = {int(k): v for k, v in json.loads(model["scores"]).items()}
    return {"personas": personas, "kpis": kpis, "cross": cross, "migration": migration, "model": model,
            "names": names}


def _stage_order(settings: Settings) -> list[str]:
    """Display order: the usual lifecycle (new ... churned), then any other configured stage."""
    seg = settings.segments
    configured = [r.stage for r in seg.lifecycle.rules] + [seg.lifecycle.default] if seg else []
    return [s for s in STAGE_ZH if s in configured or not configured] + [s for s in configured if s not in STAGE_ZH]


def render_segments_report(data: dict, settings: Settings, as_of: date) -> str:
    """The report's HTML from :func:`report_data`'s output."""
    personas, kpis = data["personas"], data["kpis"]
    stages_order = _stage_order(settings)
    tiers = sorted([r for r in kpis if r["dimension"] == "value_tier"], key=lambda r: _sort_key(r["segment"], TIER_ORDER))
    stages = sorted([r for r in kpis if r["dimension"] == "lifecycle_stage"],
                    key=lambda r: _sort_key(r["segment"], stages_order))
    population = _population(kpis, settings.kpis.experience.min_respondents)
    for i, p in enumerate(personas):
        p["color"] = PALETTE[i % len(PALETTE)]
    charts = {}
    if personas:
        charts["sizes"] = persona_size_chart(personas)
        charts["kpis"] = kpi_chart(personas, population)
    if tiers:
        charts["distribution"] = distribution_chart(tiers, stages)
    # tier x lifecycle crosstab
    cross = {(r["value_tier"], r["lifecycle_stage"]): r["count"] for r in data["cross"]}
    total = sum(cross.values()) or 1
    ct_tiers = [t for t in TIER_ORDER if any(k[0] == t for k in cross)]
    ct_stages = [s for s in stages_order if any(k[1] == s for k in cross)]
    crosstab = {"tiers": ct_tiers, "stages": ct_stages, "rows": [
        {"tier": t, "cells": [{"n": cross.get((t, s), 0),
                               "bg": f"rgba(58,154,91,{0.06 + 0.9 * (cross.get((t, s), 0) / total) ** 0.5:.2f})"}
                              for s in ct_stages], "total": sum(cross.get((t, s), 0) for s in ct_stages)}
        for t in ct_tiers]}
    mig = data["migration"]
    names = data.get("names") or {p["persona_id"]: (p["persona_name_zh"], p["persona_name_en"]) for p in personas}
    matrices = []
    for dim, title_zh, title_en, order in (("persona", "画像迁移", "Persona migration", None),
                                           ("value_tier", "价值分层迁移", "Value tier migration", TIER_ORDER),
                                           ("lifecycle_stage", "生命周期迁移", "Lifecycle migration", stages_order)):
        rows = [r for r in mig if r["dimension"] == dim]
        if rows:
            matrices.append({"dim": dim, "title_zh": title_zh, "title_en": title_en, **_matrix(rows, order)})
    from_as_of = mig[0]["from_as_of"] if mig else None
    seg = settings.segments
    return jinja_env().get_template("segments_report.html.j2").render(
        as_of=as_of.isoformat(), personas=personas, tiers=tiers, stages=stages, population=population,
        charts=charts, crosstab=crosstab, matrices=matrices, from_as_of=from_as_of, model=data["model"],
        names=names, tier_zh=TIER_ZH, stage_zh=STAGE_ZH, currency=settings.bank.currency,
        value_tier=seg.value_tier if seg else None, lifecycle=seg.lifecycle if seg else None)


def report_path(settings: Settings, as_of: date, name: str = "segments.html") -> Path | str:
    """``<lake>/marketing/reports/<as_of>/<name>`` (segments.html, service.html): in the
    marketing zone, apart from ``<lake>/reports/dq`` (Data Docs of the restricted bronze
    layer, for operators)."""
    if storage.is_uri(settings.lake):
        return storage.join(settings.lake, "marketing", "reports", as_of.isoformat(), name)
    return Path(settings.lake) / "marketing" / "reports" / as_of.isoformat() / name


def write_segments_report(spark: SparkSession, settings: Settings, as_of: date) -> Path | str:
    """Write :func:`report_path` and return it."""
    html = render_segments_report(report_data(spark, settings, as_of), settings, as_of)
    out = report_path(settings, as_of)
    storage.write_text(out, html)  # (creates a local folder; one PUT on object storage)
    return out


__all__ = ["experience_value", "jinja_env", "render_segments_report", "report_data", "report_path",
           "write_segments_report"]

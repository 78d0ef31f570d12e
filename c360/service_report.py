"""The service report: one self-contained HTML file for the people who run branches,
the contact centre and complaint handling.

``<lake>/marketing/reports/<as_of>/service.html`` (:func:`c360.report.report_path`), written
by the ``kpis`` step from its gold tables (``experience_kpis``, ``service_kpis``,
``complaint_kpis``, ``topic_kpis``: aggregates only, no customer id or text):

- experience KPIs per touchpoint and survey channel: NPS (-100..100 points), CSAT (% of
  4-5 answers), CES, each with its respondents; "too few" under ``kpis.experience.min_respondents``;
- the wait heatmap: median wait per branch and hour of day (bank time), and the service
  KPIs per channel and branch;
- complaints: opened, closed, SLA breaches, backlog and its ages per severity, category,
  channel and product, and their trend over the earlier as_of dates in the table;
- the most mentioned topics of survey comments and complaint descriptions;
- the uplift of offers: for the latest recommendation date whose adoption window has
  passed, treated vs holdout adoption, the uplift and its 95% interval per product and
  persona (``gold/recommendation_outcomes``, written by the export step: aggregates);
- the service recovery funnel: the customers listed for a service contact at as_of per
  reason (``gold/service_recovery``), and for the listings of the last ``outcome_days``
  days before it, how many were followed up and how many improved
  (``gold/service_recovery_outcomes``).

Like the segments report (:mod:`c360.report`, whose template environment and style sheet
it shares) it opens in any browser with nothing installed and nothing fetched: CSS inline,
charts as inline SVG, a CJK font stack, UTF-8. Every value from the tables reaches the
page HTML-escaped (the template environment's autoescape), branch names included.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from c360 import lake, storage
from c360.report import jinja_env, report_path
from c360.settings import Settings

REPORT_NAME = "service.html"
TREND_DATES = 12  # as_of dates shown in the complaint trend (the latest ones up to as_of)
HEATMAP_BRANCHES = 40  # branches in the wait heatmap: the slowest by median wait
TOP_TOPICS = 10  # topic rows per source
COMPLAINT_SUMS = ("opened", "closed", "backlog", "sla_breaches_closed", "sla_breaches_open", "reopened")
DIMENSION_ZH = {"touchpoint": "触点", "channel": "渠道", "branch": "网点", "hour": "时段", "category": "类别",
                "product": "产品", "severity": "严重程度", "feedback": "问卷评论", "complaints": "投诉描述"}


def _rows(spark: SparkSession, settings: Settings, name: str, where: str) -> list[dict]:
    """Rows of the gold KPI table ``name`` matching ``where`` as dicts ([] without the table).
    These tables are small aggregates (groups of touchpoints, channels, branches x hours)."""
    path = lake.table_path(settings.lake, "gold", name)
    if not lake.exists(path):
        return []
    return [r.asDict() for r in lake.read(spark, path).where(where).collect()]


def service_report_data(spark: SparkSession, settings: Settings, as_of: date) -> dict:
    """Everything the report shows, as plain Python (aggregates only)."""
    day = f"as_of_date = DATE'{as_of.isoformat()}'"
    data = {name: _rows(spark, settings, name, day) for name in
            ("experience_kpis", "service_kpis", "complaint_kpis", "topic_kpis")}
    # complaint totals per as_of up to this one: the severity rows add up to every complaint
    # (a complaint without a severity is in the "(unknown)" row)
    trend = []
    path = lake.table_path(settings.lake, "gold", "complaint_kpis")
    if lake.exists(path):
        sums = lake.read(spark, path).where(f"dimension = 'severity' AND as_of_date <= DATE'{as_of.isoformat()}'") \
            .groupBy("as_of_date").agg(*[F.sum(c).alias(c) for c in COMPLAINT_SUMS],
                                       F.max("backlog_age_max_days").alias("backlog_age_max_days"))
        trend = [r.asDict() for r in sums.orderBy(F.col("as_of_date").desc()).limit(TREND_DATES).collect()][::-1]
    data["complaint_trend"] = trend
    data["uplift"] = uplift_rows(spark, settings, as_of)
    data["recovery"] = recovery_funnel(spark, settings, as_of)
    return data


def recovery_funnel(spark: SparkSession, settings: Settings, as_of: date) -> list[dict]:
    """One row per recovery reason: ``listed_now`` (customers listed at as_of), and over the
    listings of the ``outcome_days`` days before as_of: ``listed``, ``followed_up``,
    ``improved`` and ``improvement_rate`` (improved / listed, None without listings).
    [] when neither table exists (a lake the recovery step has not run on)."""
    conf = settings.service_recovery
    now_path = lake.table_path(settings.lake, "gold", "service_recovery")
    out_path = lake.table_path(settings.lake, "gold", "service_recovery_outcomes")
    if not lake.exists(now_path) and not lake.exists(out_path):
        return []
    day = F.lit(as_of.isoformat()).cast("date")
    now: dict[str, int] = {}
    if lake.exists(now_path):
        now = {r["reason"]: int(r["n"]) for r in lake.read(spark, now_path).where(F.col("as_of_date") == day)
               .select(F.explode("reason_codes").alias("reason")).groupBy("reason")
               .agg(F.count(F.lit(1)).alias("n")).collect()}
    earlier: dict[str, dict] = {}
    if lake.exists(out_path):
        since = F.date_sub(day, conf.outcome_days)
        earlier = {r["reason"]: r.asDict() for r in lake.read(spark, out_path)
                   .where((F.col("as_of_date") < day) & (F.col("as_of_date") >= since)).groupBy("reason")
                   .agg(*[F.sum(c).alias(c) for c in ("listed", "followed_up", "improved")]).collect()}
    rows = []
    for reason in sorted(set(conf.reasons) | set(now) | set(earlier)):
        e = earlier.get(reason, {})
        listed = int(e.get("listed") or 0)
        rows.append({"reason": reason, "listed_now": now.get(reason, 0), "listed": listed,
                     "followed_up": int(e.get("followed_up") or 0), "improved": int(e.get("improved") or 0),
                     "improvement_rate": (int(e.get("improved") or 0) / listed) if listed else None})
    return rows


def uplift_rows(spark: SparkSession, settings: Settings, as_of: date) -> list[dict]:
    """The ``gold/recommendation_outcomes`` rows (one per product and persona) of the latest
    recommendation date before as_of whose adoption window has passed (``adoption_complete``);
    [] without one (or without the table, or before it had the uplift columns)."""
    path = lake.table_path(settings.lake, "gold", "recommendation_outcomes")
    if not lake.exists(path):
        return []
    out = lake.read(spark, path)
    if "adoption_complete" not in out.columns:
        return []
    done = out.where(f"as_of_date < DATE'{as_of.isoformat()}' AND adoption_complete")
    latest = done.agg(F.max("as_of_date").alias("d")).first()["d"]
    if latest is None:
        return []
    rows = [r.asDict() for r in done.where(F.col("as_of_date") == F.lit(latest)).collect()]  # products x personas
    return sorted(rows, key=lambda r: (str(r["product_code"]), r["persona_id"] is None, str(r["persona_id"])))


def _heat(v: float | None, top: float) -> str:
    """A cell colour from white (no wait) to deep red (the longest median wait)."""
    if v is None or top <= 0:
        return "#f0f3f7"
    x = max(0.0, min(1.0, v / top))
    r, g, b = (255 + (184 - 255) * x, 255 + (59 - 255) * x, 255 + (94 - 255) * x)
    return f"rgb({r:.0f},{g:.0f},{b:.0f})"


def heatmap(service: list[dict]) -> dict | None:
    """The branch x hour grid of median waits: branches (slowest first, at most
    :data:`HEATMAP_BRANCHES`), hours, cells with colour and values; None without data."""
    cells = [r for r in service if r["dimension"] == "branch_hour"]
    if not cells:
        return None
    by_branch = {r["value"]: r for r in service if r["dimension"] == "branch"}
    branches = sorted({r["branch_id"] for r in cells},
                      key=lambda b: (-((by_branch.get(b) or {}).get("wait_p50_s") or 0), b))
    shown = branches[:HEATMAP_BRANCHES]
    hours = list(range(min(r["hour"] for r in cells), max(r["hour"] for r in cells) + 1))
    at = {(r["branch_id"], r["hour"]): r for r in cells}
    top = max((r["wait_p50_s"] or 0) for r in cells)
    rows = []
    for b in shown:
        row = []
        for h in hours:
            c = at.get((b, h))
            p50 = c["wait_p50_s"] if c else None
            row.append({"hour": h, "p50_min": None if p50 is None else p50 / 60, "fill": _heat(p50, top),
                        "contacts": c["contacts"] if c else 0, "over": c["over_target_share"] if c else None,
                        "dark": p50 is not None and p50 / top > 0.55})
        rows.append({"branch": b, "cells": row})
    return {"hours": hours, "rows": rows, "top_min": top / 60, "branches": len(branches), "shown": len(shown),
            "legend": [{"min": top / 60 * i / 4, "fill": _heat(top * i / 4, top)} for i in range(5)]}


def trend_chart(trend: list[dict], width: int = 720, height: int = 220) -> dict | None:
    """Polylines (inline SVG) of opened, closed and backlog over the as_of dates."""
    if len(trend) < 2:
        return None
    left, right, top_pad, bottom = 48, 44, 14, 34  # (room for the last date's label)
    series = [("opened", "新增 opened", "#1f5fa8"), ("closed", "结案 closed", "#3a9a5b"),
              ("backlog", "积压 backlog", "#b83b5e")]
    top = max(max((t[k] or 0) for t in trend) for k, _, _ in series) or 1
    step = (width - left - right) / (len(trend) - 1)

    def y(v):
        return top_pad + (height - top_pad - bottom) * (1 - (v or 0) / top)

    lines = [{"label": label, "colour": colour,
              "points": " ".join(f"{left + i * step:.1f},{y(t[k]):.1f}" for i, t in enumerate(trend)),
              "dots": [{"x": left + i * step, "y": y(t[k]), "v": t[k] or 0} for i, t in enumerate(trend)]}
             for k, label, colour in series]
    ticks = [{"y": y(top * i / 4), "v": top * i / 4} for i in range(5)]
    dates = [{"x": left + i * step, "d": t["as_of_date"].isoformat()} for i, t in enumerate(trend)]
    return {"width": width, "height": height, "left": left, "right": width - right, "bottom": height - bottom,
            "lines": lines, "ticks": ticks, "dates": dates}


def _by(rows: list[dict], dimension: str, key: str, reverse: bool = True) -> list[dict]:
    return sorted([r for r in rows if r["dimension"] == dimension],
                  key=lambda r: (-(r.get(key) or 0) if reverse else (r.get(key) or 0), str(r["value"])))


def top_topics(topics: list[dict]) -> list[dict]:
    """Per source (survey comments, complaint descriptions): topics by mentions over all its
    groups, and the groups where each topic is mentioned most."""
    out = []
    for source in sorted({r["source"] for r in topics}):
        rows = [r for r in topics if r["source"] == source]
        totals: dict[str, dict] = {}
        for r in rows:
            t = totals.setdefault(r["topic"], {"topic": r["topic"], "mentions": 0, "negative": 0, "groups": []})
            t["mentions"] += r["mentions"] or 0
            t["negative"] += r["negative_mentions"] or 0
            if r["mentions"]:
                t["groups"].append((r["mentions"], r["value"], r["share"]))
        texts = {}
        for r in rows:  # the texts of a group, repeated on each of its topic rows
            texts[r["value"]] = r["texts"] or 0
        ranked = sorted((t for t in totals.values() if t["mentions"]), key=lambda t: (-t["mentions"], t["topic"]))
        for t in ranked:
            t["groups"] = [{"value": v, "mentions": m, "share": s} for m, v, s in sorted(t["groups"], reverse=True)[:3]]
        out.append({"source": source, "dimension": rows[0]["dimension"], "texts": sum(texts.values()),
                    "topics": ranked[:TOP_TOPICS]})
    return out


def render_service_report(data: dict, settings: Settings, as_of: date) -> str:
    """The report's HTML from :func:`service_report_data`'s output."""
    exp, svc, cmp_ = data["experience_kpis"], data["service_kpis"], data["complaint_kpis"]
    sev = {r["value"]: r for r in cmp_ if r["dimension"] == "severity"}
    totals = {k: sum((r.get(k) or 0) for r in sev.values()) for k in COMPLAINT_SUMS} if sev else {}
    if sev:
        ages = [r["backlog_age_max_days"] for r in sev.values() if r["backlog_age_max_days"] is not None]
        totals["backlog_age_max_days"] = max(ages) if ages else None
    conf = settings.kpis
    targets = conf.service.wait_target_seconds
    return jinja_env().get_template("service_report.html.j2").render(
        as_of=as_of.isoformat(), min_respondents=conf.experience.min_respondents,
        experience=[(d, _by(exp, d, "nps_respondents")) for d in ("touchpoint", "channel")
                    if any(r["dimension"] == d for r in exp)],
        heatmap=heatmap(svc), channels=_by(svc, "channel", "contacts"), branches=_by(svc, "branch", "wait_p50_s")[:20],
        n_branches=len([r for r in svc if r["dimension"] == "branch"]),
        branch_target_min=targets.get("branch", targets["default"]) / 60,
        wait_targets=sorted(targets.items()), service_window=conf.service.window_days,
        complaints=[(d, _by(cmp_, d, "opened")) for d in ("severity", "category", "channel", "product")
                    if any(r["dimension"] == d for r in cmp_)],
        totals=totals, sla_days=sorted(conf.complaints.sla_days.items(), key=lambda kv: kv[1]),
        complaint_window=conf.complaints.window_days, trend=data["complaint_trend"],
        trend_chart=trend_chart(data["complaint_trend"]), topics=top_topics(data["topic_kpis"]),
        dimension_zh=DIMENSION_ZH, experience_window=conf.experience.window_days,
        uplift=data.get("uplift") or [], uplift_date=(data.get("uplift") or [{}])[0].get("as_of_date"),
        horizon_days=_horizon_days(settings), recovery=data.get("recovery") or [],
        outcome_days=settings.service_recovery.outcome_days)


def _horizon_days(settings: Settings) -> int | None:
    models = getattr(settings, "models", None)
    return models.next_best_product.horizon_days if models is not None else None


def write_service_report(spark: SparkSession, settings: Settings, as_of: date) -> Path | str:
    """Write ``<lake>/marketing/reports/<as_of>/service.html`` and return its path."""
    html = render_service_report(service_report_data(spark, settings, as_of), settings, as_of)
    out = report_path(settings, as_of, REPORT_NAME)
    storage.write_text(out, html)
    return out


__all__ = ["recovery_funnel", "render_service_report", "service_report_data", "uplift_rows", "write_service_report"]

"""String tables of the low-volume sources simulated in phase 1.

Each function returns ``(table, day)``: a table of strings in contract column order and
the drop day (index) of every row, sorted by day, so the caller can cut one file per day.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from c360.contract import SOURCES

from . import fmt
from .lifecycle import OUTCOMES
from .population import customer_rows
from .profiles import (
    DEMO_CATALOGUE,
    Catalogue,
    OFFER_CHANNELS,
    SERVICE_CHANNELS,
)
from .service import COMPLAINT_CHANNELS, REASONS, SEVERITIES
from .vocab import COMMENTS, COMPLAINT_CATEGORIES, COMPLAINT_TEXT, SURVEY_CHANNELS
from .world import World, rng_for

DAY = 86_400
TOUCHPOINTS = SOURCES["feedback"].column("touchpoint").enum
SURVEYS = ("nps", "csat", "ces")


def _split(t: np.ndarray):
    t = np.asarray(t, dtype=np.int64)
    return t // DAY, t % DAY


def customers(w: World) -> tuple[pa.Table, np.ndarray]:
    """Full snapshot on day 0, onboarding rows on their day, then changed rows."""
    rng = rng_for(w.seed, "crm", 1)
    snap = np.flatnonzero(w.onboard <= 0)
    new = np.flatnonzero(w.onboard > 0)
    new = new[np.argsort(w.onboard[new], kind="stable")]
    parts = [
        customer_rows(w, snap, np.zeros(len(snap), np.int64), rng.integers(3600, 2 * 3600, len(snap))),
        customer_rows(w, new, w.onboard[new].astype(np.int64), rng.integers(9 * 3600, 18 * 3600, len(new))),
    ]
    days = [np.zeros(len(snap), np.int64), w.onboard[new].astype(np.int64)]
    ch = w.crm_changes
    if len(ch["c"]):
        order = np.lexsort((ch["sec"], ch["day"]))
        state = {k: ch[k][order] for k in ("city", "branch", "income", "risk", "consent", "phone", "email_version")}
        parts.append(customer_rows(w, ch["c"][order], ch["day"][order], ch["sec"][order], state))
        days.append(ch["day"][order])
    cols = SOURCES["customers"].column_names
    tab = pa.concat_tables([fmt.table(p, cols) for p in parts])
    day = np.concatenate(days)
    order = np.argsort(day, kind="stable")
    return tab.take(pa.array(order)), day[order]


def catalog(changed: bool, cat: Catalogue = DEMO_CATALOGUE) -> pa.Table:
    """The product catalogue ``cat``; ``changed`` applies the one change of the later re-send."""
    rows = {c: [] for c in SOURCES["product_catalog"].column_names}
    for p in cat.products:
        max_age = p.max_age
        if changed and p.code == cat.change[0]:
            max_age = cat.change[2]
        rows["product_code"].append(p.code)
        rows["product_name"].append(p.name)
        rows["family"].append(p.family)
        rows["risk_level"].append(p.risk)
        rows["min_age"].append(str(p.min_age))
        rows["max_age"].append(str(max_age))
        rows["active"].append("true" if p.active else "false")
    return pa.table({k: pa.array(v, pa.string()) for k, v in rows.items()})


def interactions(w: World) -> tuple[pa.Table, np.ndarray]:
    it = w.interactions
    n = len(it["c"])
    day, sec = _split(it["t"])
    end = it["t"] + it["wait"] + it["handle"]
    eday, esec = _split(end)
    agent_prefix = np.array(["AG", "CC", "", "VD"])[it["chan"]]
    agent = fmt.mask(
        pa.compute.binary_join_element_wise(pa.array(agent_prefix), fmt.ids("", np.maximum(it["agent"], 0), 6), ""),
        it["agent"] < 0)
    cols = {
        "interaction_id": fmt.ids("I", np.arange(n), 10),
        "customer_id": w.customer_ids.take(pa.array(it["c"])),
        "channel": fmt.pick(SERVICE_CHANNELS, it["chan"]),
        "branch_id": fmt.mask(w.branch_ids.take(pa.array(np.maximum(it["branch"], 0))), it["branch"] < 0),
        "started_at": w.cal.timestamps(day, sec),
        # an end time after midnight is capped at 23:59:59 (contacts do not span days)
        "ended_at": w.cal.timestamps(day, np.where(eday > day, 86_399, esec)),
        "wait_seconds": fmt.ints(it["wait"]),
        "handle_seconds": fmt.ints(it["handle"]),
        "reason": fmt.pick(REASONS, it["reason"]),
        "resolved_first_contact": fmt.bools(it["resolved"]),
        "agent_id": agent,
    }
    return fmt.table(cols, SOURCES["interactions"].column_names), day


def feedback(w: World) -> tuple[pa.Table, np.ndarray]:
    fb = w.feedback
    n = len(fb["c"])
    day, sec = _split(fb["t"])
    lang = w.lang_en[fb["c"]]
    # comment lookup: 4 blocks of 40 templates: (zh,neg) (zh,pos) (en,neg) (en,pos)
    labels = []
    for lg in ("zh", "en"):
        for pol in ("neg", "pos"):
            labels.extend(COMMENTS[(lg, pol)][:40])
    block = lang.astype(np.int64) * 2 + fb["polarity"]
    comment = fmt.mask(fmt.pick(labels, block * 40 + np.maximum(fb["comment"], 0)), fb["comment"] < 0)
    inter = fb["inter"]
    cols = {
        "response_id": fmt.ids("F", np.arange(n), 10),
        "customer_id": w.customer_ids.take(pa.array(fb["c"])),
        "survey_type": fmt.pick(SURVEYS, fb["survey"]),
        "score": fmt.ints(fb["score"]),
        "comment": comment,
        "touchpoint": fmt.pick(TOUCHPOINTS, fb["touch"]),
        "channel": fmt.pick(SURVEY_CHANNELS, fb["channel"]),
        "responded_at": w.cal.timestamps(day, sec),
        "interaction_id": fmt.mask(fmt.ids("I", np.maximum(inter, 0), 10), inter < 0),
    }
    return fmt.table(cols, SOURCES["feedback"].column_names), day


def complaints(w: World) -> tuple[pa.Table, np.ndarray]:
    """One row per status change (open, in_progress, resolved/rejected), in its day's drop."""
    cp = w.complaints
    n = len(cp["c"])
    H = w.cal.days
    ix = np.arange(n)
    steps = []
    for status, t in ((0, cp["t_open"]), (1, cp["t_prog"]), (2, cp["t_final"])):
        ok = t // DAY < H
        steps.append((ix[ok], np.full(ok.sum(), status), t[ok]))
    row = np.concatenate([s[0] for s in steps])
    step = np.concatenate([s[1] for s in steps])
    t_row = np.concatenate([s[2] for s in steps])
    order = np.lexsort((step, row, t_row))
    row, step, t_row = row[order], step[order], t_row[order]
    final = step == 2
    status = np.where(final, 2 + cp["final"][row], step)  # open, in_progress, resolved, rejected
    lang = w.lang_en[cp["c"][row]].astype(np.int64)
    labels = []
    for lg in ("zh", "en"):
        for cat in COMPLAINT_CATEGORIES:
            labels.extend(COMPLAINT_TEXT[lg][cat])
    text_ix = (lang * len(COMPLAINT_CATEGORIES) + cp["cat"][row]) * 3 + row % 3
    od, osec = _split(cp["t_open"][row])
    fd, fsec = _split(cp["t_final"][row])
    prod = cp["product"][row]
    comp = cp["comp"][row] & final
    cols = {
        "complaint_id": fmt.ids("CP", row, 8),
        "customer_id": w.customer_ids.take(pa.array(cp["c"][row])),
        "opened_at": w.cal.timestamps(od, osec),
        "closed_at": fmt.mask(w.cal.timestamps(np.minimum(fd, H - 1), fsec), ~final),
        "channel": fmt.pick(COMPLAINT_CHANNELS, cp["chan"][row]),
        "category": fmt.pick(COMPLAINT_CATEGORIES, cp["cat"][row]),
        "severity": fmt.pick(SEVERITIES, cp["severity"][row]),
        "status": fmt.pick(("open", "in_progress", "resolved", "rejected"), status),
        "description": fmt.pick(labels, text_ix),
        "product_code": fmt.mask(fmt.pick(w.cat.codes, np.maximum(prod, 0)), prod < 0),
        "compensation_amount": fmt.mask(fmt.money(cp["comp_cents"][row]), ~comp),
    }
    return fmt.table(cols, SOURCES["complaints"].column_names), t_row // DAY


def campaign_responses(w: World) -> tuple[pa.Table, np.ndarray]:
    of = w.offers
    o = of["offer"]
    sday, ssec = _split(of["t_sent"][o])
    oday, osec = _split(of["t"])
    month_tag = fmt.ymd_int(w.cal.start64 + sday) // 100  # YYYYMM of the sending
    cols = {
        "offer_id": pa.compute.binary_join_element_wise(
            fmt.ids("OF", month_tag, 6), fmt.ids("", o, 8), ""),
        "customer_id": w.customer_ids.take(pa.array(of["c"][o])),
        "product_code": fmt.pick(w.cat.codes, of["prod"][o]),
        "channel": fmt.pick(OFFER_CHANNELS, of["chan"][o]),
        "sent_at": w.cal.timestamps(sday, ssec),
        "outcome": fmt.pick(OUTCOMES, of["outcome"]),
        "outcome_at": w.cal.timestamps(oday, osec),
    }
    return fmt.table(cols, SOURCES["campaign_responses"].column_names), oday

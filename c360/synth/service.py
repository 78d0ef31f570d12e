"""Service experience: interactions, complaints and survey feedback.

Causality that segmentation / churn models can discover:
* wait times depend on the branch (some are chronically slow) and the hour (lunchtime and
  after-work peaks: :data:`BRANCH_HOUR_WAIT`);
* long waits and unresolved contacts cause complaints;
* complaints (and bad experiences) raise the probability of winding down (see churn.py);
* survey scores follow the experience: long waits, unresolved contacts and open
  complaints lower them; comments match the score's polarity and the customer's language.

Times are kept as absolute seconds since day 0 of the history (``t = day * 86400 + sec``).
"""

from __future__ import annotations

import numpy as np

from .population import categorical
from .profiles import SERVICE_CHANNELS, type_array, type_matrix
from .vocab import COMPLAINT_CATEGORIES, INTERACTION_REASONS, REASON_DIFFICULTY
from .world import NEVER, World, rng_for

DAY = 86_400
REASONS = tuple(sorted(REASON_DIFFICULTY))
REASON_IX = {r: i for i, r in enumerate(REASONS)}
DIFFICULTY = np.array([REASON_DIFFICULTY[r] for r in REASONS])
HANDLE_MEDIAN = {"wealth_consult": 1500, "loan_inquiry": 900, "complaint": 700, "account_service": 500,
                 "document_update": 400, "transaction_dispute": 600, "account_closure": 600}
HANDLE = np.array([HANDLE_MEDIAN.get(r, 240) for r in REASONS], dtype=np.float64)
SEVERITIES = ("low", "medium", "high")
FINAL_STATUS = ("resolved", "rejected")
COMPLAINT_CHANNELS = ("branch", "call_center", "app", "email", "letter")
# Opening hours profile per service channel: weights over the 24 hours.
_H = np.arange(24)
HOUR_W = {
    "branch": np.where((_H >= 9) & (_H < 17), 1.0, 0.0) + np.where((_H == 12) | (_H == 13), 0.9, 0.0),
    "call_center": np.where((_H >= 8) & (_H < 22), 1.0, 0.0) + np.where((_H == 12) | (_H == 19), 0.6, 0.0),
    "chatbot": np.where((_H >= 7), 1.0, 0.25),
    "video": np.where((_H >= 9) & (_H < 21), 1.0, 0.0),
}
LONG_WAIT = {"branch": 1500, "call_center": 480, "chatbot": 60, "video": 600}
# Branch waits by hour of day (bank time): a lunchtime peak (staff at lunch, customers on
# their break) and an after-work peak in the last hour before closing. Times the branch's
# own factor (world.branch_slow: some branches are chronically slow). gold/service_kpis
# recovers both (tests/test_kpis.py).
BRANCH_HOUR_WAIT = np.where((_H == 12) | (_H == 13), 1.9, np.where(_H == 16, 1.5, 1.0))


def _hours(rng, chan_idx: np.ndarray) -> np.ndarray:
    probs = np.array([HOUR_W[c] / HOUR_W[c].sum() for c in SERVICE_CHANNELS])
    return categorical(rng, probs, chan_idx)


def simulate_interactions(w: World) -> None:
    rng = rng_for(w.seed, "service")
    days = w.cal.days
    lo = np.maximum(w.onboard, 0).astype(np.int64)
    span = np.maximum(days - lo, 0)
    lam = type_array("service_per_year")[w.ctype] * span / 365
    k = rng.poisson(lam)
    c = np.repeat(np.arange(w.n, dtype=np.int64), k)
    day = lo[c] + (rng.random(len(c)) * span[c]).astype(np.int64)
    chan = categorical(rng, type_matrix("service_channels"), w.ctype[c])
    _add_interactions(w, rng, c, day, chan, reason=None)


def _add_interactions(w: World, rng, c, day, chan, reason) -> None:
    n = len(c)
    hour = _hours(rng, chan)
    t = day * DAY + hour * 3600 + rng.integers(0, 3600, n)
    is_branch = chan == 0
    branch = np.where(is_branch, w.branch[c], -1)
    lunch = (hour == 12) | (hour == 13)
    evening = (hour >= 18) & (hour <= 19)
    wait = np.select(
        [chan == 0, chan == 1, chan == 2],
        [rng.lognormal(np.log(540), 0.55, n) * w.branch_slow[np.maximum(branch, 0)] * BRANCH_HOUR_WAIT[hour],
         rng.lognormal(np.log(70), 0.8, n) * np.where(lunch | evening, 1.8, 1.0),
         rng.integers(0, 6, n).astype(np.float64)],
        rng.lognormal(np.log(120), 0.5, n),
    ).astype(np.int64)
    if reason is None:
        reason = np.empty(n, dtype=np.int64)
        for ci, ch in enumerate(SERVICE_CHANNELS):
            sel = chan == ci
            opts = np.array([REASON_IX[r] for r in INTERACTION_REASONS[ch]])
            reason[sel] = opts[rng.integers(0, len(opts), sel.sum())]
    handle = (rng.lognormal(0, 0.5, n) * HANDLE[reason] * np.where(chan == 2, 0.5, 1.0)).astype(np.int64)
    long_wait = wait > np.array([LONG_WAIT[ch] for ch in SERVICE_CHANNELS])[chan]
    p_res = 0.93 - DIFFICULTY[reason] - 0.20 * long_wait - np.where(chan == 2, 0.2, 0.0)
    resolved = rng.random(n) < p_res
    agent = np.select([chan == 0, chan == 1, chan == 3],
                      [np.maximum(branch, 0) * 100 + rng.integers(0, 6, n), rng.integers(0, 300, n),
                       rng.integers(0, 40, n)], -1)
    new = dict(c=c, t=t, chan=chan, branch=branch, wait=wait, handle=handle, reason=reason,
               resolved=resolved, agent=agent, long=long_wait)
    if w.interactions:
        w.interactions = {k: np.concatenate([w.interactions[k], v]) for k, v in new.items()}
    else:
        w.interactions = new


def simulate_complaints(w: World) -> None:
    """Complaints caused by bad contacts, plus spontaneous ones (fraud, app, fees)."""
    rng = rng_for(w.seed, "service", 1)
    it = w.interactions
    n = len(it["c"])
    is_complaint_reason = it["reason"] == REASON_IX["complaint"]
    p = 0.004 + 0.05 * it["long"] + 0.05 * ~it["resolved"] + 0.12 * is_complaint_reason
    src = np.flatnonzero(rng.random(n) < p)
    cat = np.where(it["long"][src], COMPLAINT_CATEGORIES.index("wait_time"),
                   np.where(it["reason"][src] == REASON_IX["loan_inquiry"], COMPLAINT_CATEGORIES.index("loan_process"),
                            np.where(it["reason"][src] == REASON_IX["transaction_dispute"],
                                     COMPLAINT_CATEGORIES.index("card_fraud"),
                                     np.where(rng.random(len(src)) < 0.6, COMPLAINT_CATEGORIES.index("service_attitude"),
                                              COMPLAINT_CATEGORIES.index("fees")))))
    t_open = it["t"][src] + it["wait"][src] + it["handle"][src] + rng.integers(60, 2 * DAY, len(src))
    chan = np.where(it["chan"][src] == 0, 0, 1)  # raised at the branch or by phone
    # Spontaneous complaints.
    days = w.cal.days
    lo = np.maximum(w.onboard, 0).astype(np.int64)
    span = np.maximum(days - lo, 0)
    k = rng.poisson(0.04 * span / 365 * (1.5 - w.satisfaction))
    c2 = np.repeat(np.arange(w.n, dtype=np.int64), k)
    t2 = (lo[c2] + (rng.random(len(c2)) * span[c2]).astype(np.int64)) * DAY + rng.integers(7 * 3600, 23 * 3600, len(c2))
    cat2 = rng.choice([COMPLAINT_CATEGORIES.index(x) for x in ("app_failure", "card_fraud", "fees", "account_freeze")],
                      size=len(c2), p=[0.4, 0.2, 0.3, 0.1])
    chan2 = rng.choice(len(COMPLAINT_CHANNELS), size=len(c2), p=[0.2, 0.4, 0.3, 0.08, 0.02])
    _add_complaints(w, rng, np.concatenate([it["c"][src], c2]), np.concatenate([t_open, t2]),
                    np.concatenate([cat, cat2]), np.concatenate([chan, chan2]))


def _add_complaints(w: World, rng, c, t_open, cat, chan, product=None) -> None:
    n = len(c)
    high_risk = np.isin(cat, [COMPLAINT_CATEGORIES.index("card_fraud"), COMPLAINT_CATEGORIES.index("wealth_mis_selling")])
    u = rng.random(n)
    severity = np.where(high_risk, np.where(u < 0.5, 2, np.where(u < 0.9, 1, 0)),
                        np.where(u < 0.5, 0, np.where(u < 0.9, 1, 2)))
    t_prog = t_open + rng.integers(2 * 3600, 3 * DAY, n)
    res_days = rng.lognormal(np.log(np.array([3.0, 8.0, 20.0])[severity]), 0.5)
    t_final = np.maximum(t_open + (res_days * DAY).astype(np.int64), t_prog + 3600)
    final = (rng.random(n) < 0.15).astype(np.int8)  # 0 resolved, 1 rejected
    money_cat = np.isin(cat, [COMPLAINT_CATEGORIES.index(x) for x in ("fees", "card_fraud", "wealth_mis_selling", "app_failure")])
    comp = (final == 0) & money_cat & (rng.random(n) < 0.4)
    comp_median = np.array([80, 0, 0, 50, 3000, 8000, 0, 0], dtype=np.float64)[cat]
    comp_cents = np.where(comp, np.round(rng.lognormal(np.log(np.maximum(comp_median, 1)), 0.6) * 100), 0).astype(np.int64)
    if product is None:
        product = np.full(n, -1, dtype=np.int64)
    new = dict(c=np.asarray(c, np.int64), t_open=t_open, t_prog=t_prog, t_final=t_final, cat=cat,
               chan=chan, severity=severity, final=final, comp=comp, comp_cents=comp_cents, product=product)
    if w.complaints:
        w.complaints = {k: np.concatenate([w.complaints[k], v]) for k, v in new.items()}
    else:
        w.complaints = new


def drop_after_exit(w: World) -> None:
    """Remove contacts after a customer closed (or went dormant), add closure visits."""
    rng = rng_for(w.seed, "service", 2)
    it = w.interactions
    day = it["t"] // DAY
    keep = (day < w.close[it["c"]]) & ((day < w.dormant[it["c"]]) | (rng.random(len(day)) < 0.1))
    w.interactions = {k: v[keep] for k, v in it.items()}
    cp = w.complaints
    keep = cp["t_open"] // DAY < np.minimum(w.close[cp["c"]], w.dormant[cp["c"]])
    w.complaints = {k: v[keep] for k, v in cp.items()}
    # Closing visit / call on the closing day.
    closers = np.flatnonzero(w.close < w.cal.days)
    chan = np.where(rng.random(len(closers)) < 0.7, 0, 1)
    _add_interactions(w, rng, closers, w.close[closers].astype(np.int64), chan,
                      np.full(len(closers), REASON_IX["account_closure"]))
    order = np.lexsort((w.interactions["c"], w.interactions["t"]))
    w.interactions = {k: v[order] for k, v in w.interactions.items()}


def add_mis_selling(w: World) -> None:
    """Customers sold a product above their risk tolerance often complain weeks later."""
    rng = rng_for(w.seed, "service", 3)
    ad = w.adoptions
    risk_level = w.cat.risk_digit[ad["prod"]]
    tol = np.maximum(w.risk[ad["c"]], 1)
    bad = np.flatnonzero((risk_level > tol) & (rng.random(len(ad["c"])) < 0.4))
    t = (ad["day"][bad].astype(np.int64) + rng.integers(20, 120, len(bad))) * DAY + rng.integers(9 * 3600, 21 * 3600, len(bad))
    ok = t // DAY < np.minimum(w.close[ad["c"][bad]], w.cal.days)
    bad, t = bad[ok], t[ok]
    _add_complaints(w, rng, ad["c"][bad], t, np.full(len(bad), COMPLAINT_CATEGORIES.index("wealth_mis_selling")),
                    rng.choice([0, 1], size=len(bad)), product=ad["prod"][bad].astype(np.int64))
    order = np.lexsort((w.complaints["c"], w.complaints["t_open"]))
    w.complaints = {k: v[order] for k, v in w.complaints.items()}


def open_complaint_at(w: World, c: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Whether customer c had a complaint open (opened, not yet closed) at time t."""
    cp = w.complaints
    result = np.zeros(len(c), dtype=bool)
    if len(cp["c"]) == 0:
        return result
    order = np.argsort(cp["c"], kind="stable")
    cc, t_open, t_final = cp["c"][order], cp["t_open"][order], cp["t_final"][order]
    lo = np.searchsorted(cc, c, side="left")
    hi = np.searchsorted(cc, c, side="right")
    for j in range(int((hi - lo).max(initial=0))):  # loop over "j-th complaint of the customer"
        has = lo + j < hi
        k = lo[has] + j
        result[has] |= (t[has] >= t_open[k]) & (t[has] < t_final[k])
    return result


def simulate_feedback(w: World) -> None:
    """Post-contact surveys and periodic relationship NPS surveys."""
    rng = rng_for(w.seed, "service", 4)
    it = w.interactions
    n_it = len(it["c"])
    take = np.flatnonzero(rng.random(n_it) < 0.30)
    c = it["c"][take]
    t = it["t"][take] + it["wait"][take] + it["handle"][take] + rng.integers(600, 2 * DAY, len(take))
    chan = it["chan"][take]
    wait_norm = np.minimum(it["wait"][take] / np.array([2400, 900, 120, 900])[chan], 1.0)
    q = (w.satisfaction[c] + 0.12 - 0.45 * wait_norm - 0.30 * ~it["resolved"][take]
         + rng.normal(0, 0.10, len(take)))
    u = rng.random(len(take))
    survey = np.where(chan == 0, np.where(u < 0.4, 0, 1), np.where(chan == 1, np.where(u < 0.5, 1, 2), 1))
    reason = it["reason"][take]
    touch = np.select(
        [reason == REASON_IX["wealth_consult"], reason == REASON_IX["loan_inquiry"],
         reason == REASON_IX["complaint"], reason == REASON_IX["transfer"], chan == 2, chan == 0],
        [2, 3, 4, 1, 6, 5], 5)
    inter_ix = take
    # Relationship NPS every quarter for a sample of active customers.
    rc, rt = [], []
    for q_start in range(0, w.cal.days, 91):
        alive = (np.maximum(w.onboard, 0) < q_start + 45) & (w.close > q_start + 45) & (w.dormant > q_start + 45)
        s = np.flatnonzero(alive & (rng.random(w.n) < 0.05))
        rc.append(s)
        rt.append((q_start + rng.integers(0, min(91, w.cal.days - q_start), len(s))) * DAY
                  + rng.integers(9 * 3600, 22 * 3600, len(s)))
    rc = np.concatenate(rc) if rc else np.array([], np.int64)
    rt = np.concatenate(rt) if rt else np.array([], np.int64)
    # bad experiences so far lower relationship scores
    ncomp = np.bincount(w.complaints["c"], minlength=w.n)
    q2 = w.satisfaction[rc] - 0.12 * np.minimum(ncomp[rc], 3) + rng.normal(0, 0.10, len(rc))
    wd = rt // DAY >= w.winddown[rc]
    q2 = q2 - 0.25 * wd
    c = np.concatenate([c, rc])
    t = np.concatenate([t, rt])
    q = np.concatenate([q, q2])
    survey = np.concatenate([survey, np.zeros(len(rc), dtype=np.int64)])
    digital = type_array("digital_p")[w.ctype[rc]] > 0.5
    touch = np.concatenate([touch, np.where(digital, 6, 5)])
    inter_ix = np.concatenate([inter_ix, np.full(len(rc), -1)])
    # an open complaint at answer time makes any score worse
    q = q - 0.25 * open_complaint_at(w, c, t)
    keep = (t // DAY < w.cal.days) & (t // DAY < w.close[c])
    q = np.clip(q, 0.0, 1.0)
    fb = dict(c=c, t=t, q=q, survey=survey, touch=touch, inter=inter_ix)
    fb = {k: v[keep] for k, v in fb.items()}
    n = len(fb["c"])
    fb["score"] = np.select([fb["survey"] == 0, fb["survey"] == 1],
                            [np.round(fb["q"] * 10), 1 + np.round(fb["q"] * 4)], 1 + np.round(fb["q"] * 6)).astype(np.int64)
    fb["channel"] = rng.integers(0, 4, n)
    # comments: polarity follows the score; middling scores mostly leave no comment
    has = rng.random(n) < np.where((fb["q"] > 0.4) & (fb["q"] < 0.65), 0.2, 0.6)
    fb["polarity"] = np.where(fb["q"] >= 0.55, 1, 0)  # 1 positive, 0 negative
    fb["comment"] = np.where(has, rng.integers(0, 40, n), -1)
    order = np.lexsort((fb["c"], fb["t"]))
    w.feedback = {k: v[order] for k, v in fb.items()}


__all__ = ["simulate_interactions", "simulate_complaints", "drop_after_exit", "add_mis_selling",
           "simulate_feedback", "NEVER", "REASONS", "SEVERITIES", "FINAL_STATUS", "COMPLAINT_CHANNELS"]

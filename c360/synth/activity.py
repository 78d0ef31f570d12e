"""Phase 2: the high-volume sources, rendered one calendar month at a time.

For a month, per-customer daily rates (type x individual level x weekday x activity,
which includes onboarding, wind-down, closing and dormancy) are turned into events by
*thinning*: draw Poisson counts at the maximal rate, place them on uniform days, keep each
with probability rate(day) / max rate. Everything is vectorised over all customers of
the month; the only Python loops are over days (to write one file per day), types and
small lookup tables.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from c360.contract import SOURCES

from . import fmt
from .population import categorical
from .profiles import (
    CATEGORY_CHANNELS,
    EVENT_CHANNELS,
    SPEND_MEDIAN,
    TXN_CHANNELS,
    TYPES,
    spend_matrix,
    type_array,
    type_matrix,
)
from .vocab import MERCHANTS, PAGES, SPEND_CATEGORIES
from .world import World, rng_for, scramble

# ------------------------------------------------------------------ lookup tables
_MERCH_FLAT = [m for cat in SPEND_CATEGORIES for m in MERCHANTS[cat]]
_MERCH_OFF = np.cumsum([0] + [len(MERCHANTS[c]) for c in SPEND_CATEGORIES])
CP_TRANSFER_IN, CP_BUSINESS, CP_REFUND, CP_PENSION, CP_LOAN = range(len(_MERCH_FLAT), len(_MERCH_FLAT) + 5)
_CP_FIXED = _MERCH_FLAT + ["个人转账", "商户收款", "退款", "社会保险基金管理中心", "本行个人贷款中心"]
DESCRIPTIONS = ("消费", "网购", "取现", "转账", "转账收入", "工资", "养老金", "贷款还款", "退款", "缴费")
_CAT_DESC = {"e_commerce": 1, "cash_withdrawal": 2, "transfer_out": 3, "utilities": 9}
CAT_DESC = np.array([_CAT_DESC.get(c, 0) for c in SPEND_CATEGORIES])
CARD_CATS = np.array([c not in ("cash_withdrawal", "transfer_out") for c in SPEND_CATEGORIES])
CH = {c: i for i, c in enumerate(TXN_CHANNELS)}
CREDIT_P = np.array([0.35 if t.name == "small_business_owner" else 0.12 for t in TYPES])

EVENT_TYPES = ("login", "logout", "page_view", "product_view", "search", "offer_impression",
               "offer_click", "application_start", "application_submit", "error")
ET = {e: i for i, e in enumerate(EVENT_TYPES)}
MID_EVENTS = np.array([ET[e] for e in ("page_view", "product_view", "search", "offer_impression",
                                       "offer_click", "error", "application_start")])
MID_P = np.array([0.42, 0.14, 0.10, 0.16, 0.05, 0.11, 0.02])
PAGE_OF = {"login": "login", "product_view": "product_detail", "search": "search_results",
           "offer_impression": "offers", "offer_click": "offers", "application_start": "application",
           "application_submit": "application"}
PAGE_LABELS = PAGES + ("login", "application")


def hour_pmf() -> np.ndarray:
    """(types x 24) hour-of-day distribution: a daytime curve plus a type-specific night share."""
    shape = np.array([0.2, 0.1, 0.05, 0.05, 0.05, 0.1, 0.3, 0.8, 1.2, 1.3, 1.3, 1.4,
                      1.6, 1.3, 1.2, 1.2, 1.3, 1.5, 1.8, 1.9, 1.6, 1.2, 0.8, 0.4])
    night = np.zeros(24, dtype=bool)
    night[[20, 21, 22, 23, 0, 1]] = True
    out = []
    for t in TYPES:
        day_part = np.where(night, 0, shape) / shape[~night].sum() * (1 - t.night_share)
        night_part = np.where(night, shape, 0) / shape[night].sum() * t.night_share
        out.append(day_part + night_part)
    return np.array(out)


HOUR_PMF = hour_pmf()


def _thin(w: World, rng, per_year: np.ndarray, a: int, b: int, digital: bool):
    """Customer and day of each occurrence in [a, b) (see module docstring)."""
    nd = b - a
    wf = type_array("weekend_factor")
    wmax = np.maximum(wf, 1.0)[w.ctype]
    lam = per_year[w.ctype] / 365 * w.level * wmax * nd
    k = rng.poisson(lam)
    c = np.repeat(np.arange(w.n, dtype=np.int64), k)
    day = a + rng.integers(0, nd, len(c))
    weekend = w.cal.weekday[day] >= 5
    f = np.where(weekend, wf[w.ctype[c]], 1.0) / wmax[c]
    act = w.digital_activity(c, day) if digital else w.activity(c, day)
    keep = rng.random(len(c)) < f * act
    return c[keep], day[keep]


def _seconds(rng, ctype: np.ndarray) -> np.ndarray:
    return categorical(rng, HOUR_PMF, ctype) * 3600 + rng.integers(0, 3600, len(ctype))


def _month_first(w: World, a: int) -> int:
    return a - (w.cal.date(a).day - 1)


# ================================================================== transactions
def transactions(w: World, m: int, a: int, b: int) -> tuple[pa.Table, np.ndarray]:
    rng = rng_for(w.seed, "txn", m)
    c, day = _thin(w, rng, type_array("txn_per_year"), a, b, digital=False)
    t = w.ctype[c]
    n = len(c)
    credit = rng.random(n) < CREDIT_P[t]
    cat = categorical(rng, spend_matrix(), t)
    inc_f = np.clip(w.income[c] / 100_000, 0.05, 20)
    amount = np.where(
        credit,
        rng.lognormal(np.log(1500 * inc_f**0.5), 0.9),
        rng.lognormal(np.log(np.array([SPEND_MEDIAN[x] for x in SPEND_CATEGORIES])[cat] * inc_f**0.3), 0.7),
    )
    amount = np.where(~credit & (cat == SPEND_CATEGORIES.index("cash_withdrawal")),
                      np.maximum(np.round(amount / 100), 1) * 100, amount)
    cents = np.maximum(np.round(amount * 100), 100).astype(np.int64)
    # channel: category's natural channels mixed with the type's habits
    K = len(SPEND_CATEGORIES) + 1
    credit_ch = np.array([0.15, 0.05, 0.45, 0.25, 0.0, 0.10, 0.0])
    cat_ch = np.array([CATEGORY_CHANNELS[x] for x in SPEND_CATEGORIES] + [credit_ch])
    type_ch = type_matrix("txn_channels")
    mix = 0.6 * cat_ch[None, :, :] + 0.4 * type_ch[:, None, :]
    mix = (mix / mix.sum(axis=2, keepdims=True)).reshape(len(TYPES) * K, len(TXN_CHANNELS))
    cat_or_credit = np.where(credit, K - 1, cat)
    chan = categorical(rng, mix, t.astype(np.int64) * K + cat_or_credit)
    # account: card spending goes to the credit card when the customer has an open one
    cc = w.cc_acct[c]
    has_cc = (cc >= 0) & (w.acct_open[np.maximum(cc, 0)] <= day) & (w.acct_close[np.maximum(cc, 0)] > day)
    use_cc = has_cc & ~credit & CARD_CATS[cat] & (rng.random(n) < 0.45)
    acct = np.where(use_cc, cc, w.ca_acct[c])
    merchant = _MERCH_OFF[cat] + (rng.random(n) * (_MERCH_OFF[cat + 1] - _MERCH_OFF[cat])).astype(np.int64)
    cp = np.where(credit, np.where(w.ctype[c] == 4, CP_BUSINESS, np.where(rng.random(n) < 0.1, CP_REFUND, CP_TRANSFER_IN)),
                  merchant)
    desc = np.where(credit, np.where(cp == CP_REFUND, 8, 4), CAT_DESC[cat])
    sec = _seconds(rng, t)
    cat_out = np.where(credit, -1, cat)

    parts = [dict(c=c, acct=acct, day=day, sec=sec, cents=cents, credit=credit, chan=chan, cat=cat_out, cp=cp, desc=desc)]
    parts.append(_regular_credits_and_debits(w, rng, a, b))
    tx = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    order = np.lexsort((tx["c"], tx["sec"], tx["day"]))
    tx = {k: v[order] for k, v in tx.items()}
    return _txn_table(w, tx, a, b), tx["day"]


def _regular_credits_and_debits(w: World, rng, a: int, b: int) -> dict:
    """Monthly payroll and pension credits, loan repayments (strong, regular signals)."""
    first = _month_first(w, a)
    out = []
    # payroll: stops ~20 days after a leaver starts winding down (salary moved elsewhere)
    c = np.flatnonzero(w.has_salary)
    day = first + w.payday[c].astype(np.int64) - 1
    ok = (day >= a) & (day < b) & (day > w.onboard[c]) & (day < w.winddown[c].astype(np.int64) + 20) \
        & (day < w.close[c]) & (day < w.dormant[c])
    c, day = c[ok], day[ok]
    cents = np.round(w.income[c] / 12 * rng.uniform(0.97, 1.08, len(c)) * 100).astype(np.int64)
    out.append(dict(c=c, acct=w.ca_acct[c], day=day, sec=rng.integers(2 * 3600, 9 * 3600, len(c)), cents=cents,
                    credit=np.ones(len(c), bool), chan=np.full(len(c), CH["online"]), cat=np.full(len(c), -1),
                    cp=len(_CP_FIXED) + w.employer[c].astype(np.int64), desc=np.full(len(c), 5)))
    # pensions for senior savers on the 15th
    c = np.flatnonzero(w.ctype == 3)
    day = np.full(len(c), first + 14)
    ok = (day >= a) & (day < b) & (day > w.onboard[c]) & (day < w.close[c]) & (day < w.dormant[c])
    c, day = c[ok], day[ok]
    cents = np.round(w.income[c] / 12 * 100).astype(np.int64)
    out.append(dict(c=c, acct=w.ca_acct[c], day=day, sec=rng.integers(1 * 3600, 7 * 3600, len(c)), cents=cents,
                    credit=np.ones(len(c), bool), chan=np.full(len(c), CH["online"]), cat=np.full(len(c), -1),
                    cp=np.full(len(c), CP_PENSION), desc=np.full(len(c), 6)))
    # loan repayments on the 20th, from the current account
    la = w.loan_accts
    day = np.full(len(la), first + 19)
    lc = w.acct_cust[la].astype(np.int64)
    ok = (day >= a) & (day < b) & (w.acct_open[la] < day) & (w.acct_close[la] > day) & (w.dormant[lc] > day)
    la, day, lc = la[ok], day[ok], lc[ok]
    rate = np.where(w.cat.family[w.acct_prod[la]] == "mortgage", 0.003, 0.005)
    cents = np.round(w.acct_amount[la] * (1.0 / np.maximum(w.acct_term[la], 1) + rate) * 100).astype(np.int64)
    out.append(dict(c=lc, acct=w.ca_acct[lc], day=day, sec=rng.integers(0, 3 * 3600, len(la)), cents=np.maximum(cents, 100),
                    credit=np.zeros(len(la), bool), chan=np.full(len(la), CH["online"]), cat=np.full(len(la), -1),
                    cp=np.full(len(la), CP_LOAN), desc=np.full(len(la), 7)))
    return {k: np.concatenate([o[k] for o in out]) for k in out[0]}


def _day_seq(day: np.ndarray, a: int, b: int) -> np.ndarray:
    """0-based sequence number of each row within its (sorted) day."""
    starts = np.searchsorted(day, np.arange(a, b))
    return np.arange(len(day)) - starts[day - a]


def _day_prefix(w: World, prefix: str, day: np.ndarray, a: int, b: int) -> pa.Array:
    labels = [prefix + w.cal.date_str(d).replace("-", "") for d in range(a, b)]
    return fmt.pick(labels, day - a)


def _txn_table(w: World, tx: dict, a: int, b: int) -> pa.Table:
    cp_labels = pa.concat_arrays([pa.array(_CP_FIXED), w.employers])
    cols = {
        "txn_id": pc.binary_join_element_wise(_day_prefix(w, "T", tx["day"], a, b),
                                              fmt.ids("", _day_seq(tx["day"], a, b), 8), ""),
        "account_id": w.account_ids.take(pa.array(tx["acct"])),
        "customer_id": w.customer_ids.take(pa.array(tx["c"])),
        "txn_ts": w.cal.timestamps(tx["day"], tx["sec"]),
        "amount": fmt.money(tx["cents"]),
        "direction": fmt.pick(("debit", "credit"), tx["credit"].astype(np.int64)),
        "currency": fmt.const("CNY", len(tx["c"])),
        "channel": fmt.pick(TXN_CHANNELS, tx["chan"]),
        "merchant_category": fmt.mask(fmt.pick(SPEND_CATEGORIES, np.maximum(tx["cat"], 0)), tx["cat"] < 0),
        "counterparty": cp_labels.take(pa.array(tx["cp"])),
        "description": fmt.pick(DESCRIPTIONS, tx["desc"]),
    }
    return fmt.table(cols, SOURCES["transactions"].column_names)


# ======================================================================= events
def events(w: World, m: int, a: int, b: int) -> tuple[pa.Table, np.ndarray]:
    rng = rng_for(w.seed, "events", m)
    c, day = _thin(w, rng, type_array("sessions_per_year"), a, b, digital=True)
    sec = _seconds(rng, w.ctype[c])
    kind = np.zeros(len(c), dtype=np.int64)  # 0 browse, 1 product interest, 2 application
    prod = np.full(len(c), -1, dtype=np.int64)
    # sessions caused by product interest / applications (phase 1)
    it = w.interest
    sel = (it["day"] >= a) & (it["day"] < b)
    c = np.concatenate([c, it["c"][sel]])
    day = np.concatenate([day, it["day"][sel]])
    sec = np.concatenate([sec, it["sec"][sel]])
    kind = np.concatenate([kind, np.where(it["apply"][sel], 2, 1)])
    prod = np.concatenate([prod, it["prod"][sel]])
    sec = np.minimum(sec, 84_000)
    order = np.lexsort((c, sec, day))
    c, day, sec, kind, prod = c[order], day[order], sec[order], kind[order], prod[order]
    ns = len(c)

    chan = categorical(rng, type_matrix("event_channels"), w.ctype[c])
    chan = np.where((kind > 0) & (chan >= 3), 0, chan)  # research happens in app/web/mini-program
    kiosk = chan >= 3
    n_pre = np.where(kiosk | (kind > 0), 0, (rng.random(ns) < 0.3) * (1 + (rng.random(ns) < 0.3)))
    n_mid = np.select([kind == 1, kind == 2], [1, 3], rng.geometric(0.6, ns))
    logout = rng.random(ns) < 0.6
    total = n_pre + 1 + n_mid + logout
    # devices: personal devices (1-3 per customer) or a self-service terminal
    k = (rng.random(ns) * w.n_devices[c]).astype(np.int64)
    dev_no = scramble(w.device_perm[c * 3 + k], 10**10, (w.seed * 13 + 5) % 10**9, "device")
    dev = pc.if_else(pa.array(kiosk), fmt.ids("KIOSK", rng.integers(0, 5000, ns), 5), fmt.ids("DV", dev_no, 10))

    # expand sessions to events
    sid = np.repeat(np.arange(ns), total)
    start = np.cumsum(total) - total
    pos = np.arange(len(sid)) - start[sid]
    pre = pos < n_pre[sid]
    is_login = pos == n_pre[sid]
    is_logout = logout[sid] & (pos == total[sid] - 1)
    mid_pos = pos - n_pre[sid] - 1
    ne = len(sid)
    etype = MID_EVENTS[np.searchsorted(np.cumsum(MID_P), rng.random(ne) * MID_P.sum())]
    forced = np.select([mid_pos == 0, mid_pos == 1, mid_pos == 2],
                       [ET["product_view"], ET["application_start"], ET["application_submit"]], ET["page_view"])
    etype = np.where(kind[sid] > 0, forced, etype)
    etype = np.where(pre, ET["page_view"], etype)
    etype = np.where(is_login, ET["login"], etype)
    etype = np.where(is_logout, ET["logout"], etype)
    has_prod = np.isin(etype, [ET[e] for e in ("product_view", "offer_impression", "offer_click",
                                                "application_start", "application_submit")])
    buyable = w.cat.buyable
    eprod = np.where(kind[sid] > 0, prod[sid], buyable[rng.integers(0, len(buyable), ne)])
    eprod = np.where(has_prod, eprod, -1)
    gap = rng.integers(2, 120, ne)
    gap[start] = 0
    cum = np.cumsum(gap)
    esec = np.minimum(sec[sid] + cum - cum[start][sid], 86_399)
    eday = day[sid]
    page_ix = rng.integers(0, len(PAGES), ne)
    for e, p in PAGE_OF.items():
        page_ix = np.where(etype == ET[e], PAGE_LABELS.index(p), page_ix)
    dur = np.where(np.isin(etype, [ET["page_view"], ET["product_view"]]),
                   rng.lognormal(np.log(9000), 0.9, ne).astype(np.int64), -1)
    session_seq = _day_seq(day, a, b)
    cols = {
        "event_id": pc.binary_join_element_wise(_day_prefix(w, "E", eday, a, b), fmt.ids("", _day_seq(eday, a, b), 9), ""),
        "customer_id": fmt.mask(w.customer_ids.take(pa.array(c[sid])), pre),
        "device_id": dev.take(pa.array(sid)),
        "session_id": pc.binary_join_element_wise(_day_prefix(w, "S", day, a, b), fmt.ids("", session_seq, 8), "").take(pa.array(sid)),
        "event_ts": w.cal.timestamps(eday, esec),
        "channel": fmt.pick(EVENT_CHANNELS, chan[sid]),
        "event_type": fmt.pick(EVENT_TYPES, etype),
        "product_code": fmt.mask(fmt.pick(w.cat.codes, np.maximum(eprod, 0)), eprod < 0),
        "page": fmt.mask(fmt.pick(PAGE_LABELS, page_ix), is_logout),
        "duration_ms": fmt.mask(fmt.ints(np.maximum(dur, 0)), dur < 0),
    }
    return fmt.table(cols, SOURCES["events"].column_names), eday


# ===================================================================== holdings
def snapshot_days(w: World) -> list[int]:
    """Initial load (day 0), every month end in the history, and as_of."""
    cal = w.cal
    out = {0, cal.days - 1}
    for _, a, b in cal.months:
        if cal.date(b - 1).month != cal.date(b).month:  # b - 1 is the last day of its month
            out.add(b - 1)
    return sorted(out)


def holdings(w: World, s: int, prev: int) -> pa.Table:
    """Snapshot at day s: open accounts plus those closed since the previous snapshot."""
    rng = rng_for(w.seed, "holdings", s)
    m = int(w.cal.month_of_day[s])
    op, cl = w.acct_open, w.acct_close
    sel = np.flatnonzero((op <= s) & ((cl > s) | (cl > prev)))
    c = w.acct_cust[sel].astype(np.int64)
    p = w.acct_prod[sel].astype(np.int64)
    closed = cl[sel] <= s
    dormant = ~closed & (w.dormant[c].astype(np.int64) + 60 <= s)
    status = np.where(closed, 2, np.where(dormant, 1, 0))
    fam = w.cat.family[p]
    asset = np.isin(fam, ("current_account", "savings", "time_deposit", "wealth_management", "fund",
                          "insurance", "pension", "gold")) & ~closed
    wsum = np.bincount(c[asset], weights=w.acct_weight[sel][asset], minlength=w.n)
    share = np.where(asset, w.acct_weight[sel] / np.maximum(wsum[c], 1e-9), 0.0)
    bal = w.wealth[c, m] * share * rng.lognormal(0, 0.05, len(sel))
    is_cc = fam == "credit_card"
    act = w.activity(c, np.full(len(c), s))
    bal = np.where(is_cc, w.acct_amount[sel] * rng.uniform(0, 0.6, len(sel)) * act, bal)
    is_loan = np.isin(fam, ("personal_loan", "mortgage"))
    elapsed = (s - op[sel]) / 30.4
    bal = np.where(is_loan, w.acct_amount[sel] * np.clip(1 - elapsed / np.maximum(w.acct_term[sel], 1), 0, 1), bal)
    bal = np.where(closed, 0.0, bal)
    cols = {
        "account_id": w.account_ids.take(pa.array(sel)),
        "customer_id": w.customer_ids.take(pa.array(c)),
        "product_code": fmt.pick(w.cat.codes, p),
        "opened_date": w.cal.dates(op[sel]),
        "closed_date": fmt.mask(w.cal.dates(np.where(closed, cl[sel], 0)), ~closed),
        "status": fmt.pick(("active", "dormant", "closed"), status),
        "balance": fmt.money(np.round(bal * 100).astype(np.int64)),
        "credit_limit": fmt.mask(fmt.money(np.round(w.acct_amount[sel] * 100).astype(np.int64)), ~is_cc),
        "currency": fmt.const("CNY", len(sel)),
        "snapshot_date": fmt.const(w.cal.date_str(s), len(sel)),
    }
    return fmt.table(cols, SOURCES["holdings"].column_names)


__all__ = ["transactions", "events", "holdings", "snapshot_days"]

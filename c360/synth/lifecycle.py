"""Customer fate and product life cycle: churn, dormancy, holdings, adoption, offers.

Adoption is simulated month by month. For every alive customer and every active product
not yet held, a monthly propensity combines:

* the latent type's affinity for the product and the customer's life stage (age);
* observable signals: deposit-wealth growth over the last months (investment products),
  payroll credits (cards, loans), low balances (credit seekers);
* suitability (products riskier than the customer's risk tolerance are rarely sold);
* browsing intent: a customer interested in a product views it in the app *before*
  buying, and interest multiplies the adoption probability;
* offers: an offer for the product multiplies it too, and a purchase after the offer is
  reported as a ``converted`` campaign response;
* activity (leavers and dormant customers stop buying).

Intent and offers are random, so next month's adoptions are predictable from the past
(views, offers, balance trend, life stage) but not trivially.
"""

from __future__ import annotations

import numpy as np

from . import fmt
from .population import categorical
from .profiles import (
    CATALOG_CHANGE,
    CREDIT_FAMILIES,
    INVEST_FAMILIES,
    PRODUCT_INDEX,
    PRODUCTS,
    affinity_matrix,
    type_array,
    type_matrix,
)
from .world import NEVER, World, rng_for, scramble

DAY = 86_400
FAMILY = np.array([p.family for p in PRODUCTS])
ACTIVE = np.array([p.active for p in PRODUCTS])
MIN_AGE = np.array([p.min_age for p in PRODUCTS], dtype=np.float64)
MAX_AGE = np.array([p.max_age for p in PRODUCTS], dtype=np.float64)
RISK_LEVEL = np.array([int(p.risk[1]) if p.risk and p.family not in ("current_account",) else 1 for p in PRODUCTS])
IS_INVEST = np.isin(FAMILY, INVEST_FAMILIES)
IS_CREDIT = np.isin(FAMILY, CREDIT_FAMILIES)
# Monthly adoption rate of a product at affinity 1 (before multipliers), by family.
FAMILY_RATE = {"current_account": 0.0, "savings": 0.012, "time_deposit": 0.010, "wealth_management": 0.011,
               "fund": 0.010, "insurance": 0.006, "credit_card": 0.012, "personal_loan": 0.008,
               "mortgage": 0.0035, "pension": 0.007, "gold": 0.006}
BASE_RATE = np.array([FAMILY_RATE[f] for f in FAMILY])
ASSET_SHARE = {"current_account": 1.0, "savings": 1.5, "time_deposit": 2.0, "wealth_management": 2.5,
               "fund": 1.5, "insurance": 1.0, "pension": 0.5, "gold": 0.5}
TD_PRODUCTS = np.flatnonzero(FAMILY == "time_deposit")
CA = PRODUCT_INDEX["CA001"]


def decide_fates(w: World, leavers: bool = True) -> None:
    """Who winds down and leaves (and when), who goes dormant.

    Complaints and bad experiences raise the churn hazard; a complaint often comes
    5-60 days before the wind-down starts. Closing follows 30-90 days after.
    ``leavers=False``: nobody leaves or goes dormant (a bank without attrition; the random
    draws are the same, so everything else about the customers is unchanged).
    """
    rng = rng_for(w.seed, "churn")
    days = w.cal.days
    ncomp = np.bincount(w.complaints["c"], minlength=w.n)
    first_comp = np.full(w.n, np.iinfo(np.int64).max)
    np.minimum.at(first_comp, w.complaints["c"], w.complaints["t_open"] // DAY)
    it = w.interactions
    bad = np.bincount(it["c"], weights=(it["long"] | ~it["resolved"]).astype(np.float64), minlength=w.n)
    mult = 1.0 + 2.5 * (ncomp > 0) + 0.5 * np.minimum(bad, 3)
    mult = mult / mult.mean()  # complaints shift churn between customers, not the overall rate
    p = np.clip(type_array("churn_p")[w.ctype] * days / 365 * mult, 0, 0.9)
    lo = np.maximum(w.onboard.astype(np.int64) + 60, -45)
    churner = (rng.random(w.n) < p) & (lo < days - 10)
    from_complaint = churner & (first_comp < days) & (rng.random(w.n) < 0.7)
    wd_rand = lo + (rng.random(w.n) * np.maximum(days - 10 - lo, 1)).astype(np.int64)
    wd_comp = np.where(first_comp < days, first_comp, 0) + rng.integers(5, 60, w.n)
    wd = np.where(from_complaint, np.maximum(wd_comp, lo), wd_rand)
    close = wd + rng.integers(30, 91, w.n)
    w.winddown = np.where(churner, wd, NEVER).astype(np.int32)
    w.close = np.where(churner, close, NEVER).astype(np.int32)
    # Dormancy (no closing): mostly the long tail, some of it already before the history.
    pd = np.clip(type_array("dormant_p")[w.ctype] * max(days, 180) / 365, 0, 0.5)
    dorm = ~churner & (rng.random(w.n) < pd)
    dlo = np.maximum(w.onboard.astype(np.int64) + 90, -200)
    dday = dlo + (rng.random(w.n) * np.maximum(days - dlo, 1)).astype(np.int64)
    w.dormant = np.where(dorm & (dlo < days), dday, NEVER).astype(np.int32)
    if not leavers:
        w.winddown[:] = NEVER
        w.close[:] = NEVER
        w.dormant[:] = NEVER


def _age_ok(age: np.ndarray, p: int, max_age: float | None = None) -> np.ndarray:
    return (age >= MIN_AGE[p]) & (age <= (MAX_AGE[p] if max_age is None else max_age))


def _suitable(risk: np.ndarray) -> np.ndarray:
    """(products x customers) 1 if the product's risk level fits, a small leak otherwise."""
    tol = np.maximum(risk, 1)[None, :]
    return np.where(RISK_LEVEL[:, None] <= tol, np.float32(1.0), np.float32(0.03))


class _Accounts:
    """Append-only account list built during the simulation."""

    def __init__(self):
        self.parts = {k: [] for k in ("c", "p", "open", "weight", "amount", "term")}

    def add(self, rng, w: World, c, p, open_day):
        c = np.asarray(c, np.int64)
        p = np.asarray(p, np.int64)
        n = len(c)
        family = w.cat.family
        fam = family[p]
        mult = w.cat.amount_multipliers()[p]  # premium cards and business loans: larger amounts
        weight = np.array([ASSET_SHARE.get(f, 0.0) for f in family])[p] * rng.lognormal(0, 0.5, n)
        inc = w.income[c]
        tier_price = np.array([1_800_000, 1_000_000, 550_000])[_tier(w.city[c])]
        amount = np.select(
            [fam == "credit_card", fam == "personal_loan", fam == "mortgage"],
            [np.maximum(np.round(inc * rng.uniform(0.08, 0.25, n) / 1000) * 1000, 5000)
             * mult,
             np.round(inc * rng.uniform(0.2, 1.0, n) * mult / 1000) * 1000 + 10_000,
             np.round(tier_price * rng.lognormal(0, 0.3, n) / 10_000) * 10_000],
            0.0)
        term = np.select([fam == "personal_loan", fam == "mortgage"],
                         [rng.choice([12, 24, 36, 60], n), rng.choice([240, 300, 360], n)], 0)
        for k, v in (("c", c), ("p", p), ("open", open_day), ("weight", weight), ("amount", amount), ("term", term)):
            self.parts[k].append(np.asarray(v))

    def arrays(self):
        return {k: np.concatenate(v) for k, v in self.parts.items()}


def _tier(city: np.ndarray) -> np.ndarray:
    from .vocab import CITIES
    return np.array([c[1] for c in CITIES])[city] - 1


def simulate_products(w: World) -> None:
    """Initial holdings, then month-by-month adoption with intent, offers and wealth."""
    rng = rng_for(w.seed, "lifecycle")
    cal, n = w.cal, w.n
    days = cal.days
    A = affinity_matrix()
    P = len(PRODUCTS)
    # Matrices are products x customers (each product's row is contiguous in memory).
    aff = A.T[:, w.ctype].astype(np.float32)  # (P x n)
    acc = _Accounts()
    all_c = np.arange(n)

    # ---------------------------------------------------------- initial holdings
    age0 = w.age_years(all_c, 0)
    suit = _suitable(w.risk)  # (P x n)
    held = np.zeros((P, n), dtype=bool)
    held[CA] = True
    acc.add(rng, w, all_c, np.full(n, CA), w.onboard)  # everyone has a current account
    existing = w.onboard < 0
    for p in range(len(PRODUCTS)):
        if p == CA:
            continue
        prob = aff[p] * 0.55 * _age_ok(age0, p) * suit[p] * (1.0 if ACTIVE[p] else 0.5)
        has = existing & (rng.random(n) < prob)
        c = np.flatnonzero(has)
        on = w.onboard[c].astype(np.int64)
        open_day = on + (rng.random(len(c)) * (-on)).astype(np.int64)
        open_day = np.minimum(open_day, -1)
        if FAMILY[p] == "personal_loan":  # running loans were taken recently
            open_day = np.maximum(open_day, -rng.integers(30, 700, len(c)))
        acc.add(rng, w, c, np.full(len(c), p), open_day)
        held[p, c] = True

    base = aff * BASE_RATE[:, None].astype(np.float32)  # (P x n) type affinity x family rate
    base[~ACTIVE] = 0.0
    base[CA] = 0.0
    invest, credit = np.flatnonzero(IS_INVEST), np.flatnonzero(IS_CREDIT)
    base[invest] *= suit[invest]  # suitability: products above the risk tolerance rarely sold
    del suit

    # ------------------------------------------------------------- wealth path
    months = cal.months
    M = len(months)
    wealth = np.zeros((n, M), dtype=np.float32)
    w0 = w.income * type_array("wealth_multiple")[w.ctype] * rng.lognormal(0, 0.6, n)
    growth = type_array("monthly_growth")[w.ctype] + rng.normal(0, 0.01, n)
    w.growth = growth.astype(np.float32)
    digital_p = type_array("digital_p")[w.ctype]
    offer_ch = type_matrix("offer_channels")
    resend_day = w.catalog_resend_day
    change_p = PRODUCT_INDEX[CATALOG_CHANGE[0]]

    adopt_parts = {k: [] for k in ("c", "prod", "day", "sec", "via_offer", "intent")}
    interest_parts = {k: [] for k in ("c", "prod", "day", "sec", "apply")}
    offer_parts = {k: [] for k in ("c", "prod", "t_sent", "chan", "t_conv")}
    td_close = []  # (account index, day) of matured time deposits

    prev_w = w0
    for m, (_, a, b) in enumerate(months):
        mid = (a + b) // 2
        # deposit wealth: drift + noise, drained while winding down
        shock = rng.normal(0, 0.03, n)
        cur = prev_w * (1 + growth + shock)
        cur = np.where(mid >= w.winddown, prev_w * 0.55, cur)
        cur = np.where(mid >= w.close, 0.0, cur)
        cur = np.maximum(cur, 0.0)
        wealth[:, m] = cur
        prev_w = cur
        past = wealth[:, max(m - 3, 0)]
        gsig = np.where(m >= 1, cur / np.maximum(past, 1.0) - 1, growth * 3)

        act = w.activity(all_c, np.full(n, mid))
        alive = (act > 0.05) & (w.onboard < b - 1)
        age = w.age_years(all_c, mid)
        consent = w.consent_by_month[m] & (w.consent_by_month[m - 1] if m else True)

        # ---- monthly propensity (P x n)
        max_age = MAX_AGE.copy()
        if a >= resend_day:  # the catalogue re-send changed one product's age limit
            max_age[change_p] = CATALOG_CHANGE[2]
        age32 = age.astype(np.float32)
        eligible = (age32 >= MIN_AGE[:, None]) & (age32 <= max_age[:, None]) & ~held
        S = base * eligible
        S *= (alive * act).astype(np.float32)
        # life stage
        S[FAMILY == "mortgage"] *= np.where((age >= 26) & (age <= 42), 2.0, 0.5).astype(np.float32) \
            * ~held[PRODUCT_INDEX["MG001"]]
        S[FAMILY == "pension"] *= np.where((age >= 35) & (age <= 59), 2.0, 0.5).astype(np.float32)
        S[FAMILY == "insurance"] *= np.where((age >= 28) & (age <= 50), 1.5, 1.0).astype(np.float32)
        S[FAMILY == "time_deposit"] *= np.where(age >= 55, 1.4, 1.0).astype(np.float32)
        S[PRODUCT_INDEX["CC003"]] *= np.where(age < 26, 1.5, 0.8).astype(np.float32)
        # observable signals: balance growth and payroll for investments, payroll and low
        # balances for credit
        S[invest] *= (np.clip(1 + 8 * np.clip(gsig, -0.1, 0.25), 0.2, None)
                      * np.where(w.has_salary, 1.2, 1.0)).astype(np.float32)
        S[credit] *= np.where(w.has_salary, 1.6, 1.0).astype(np.float32)
        S[FAMILY == "personal_loan"] *= np.where(cur < 0.05 * w.income, 1.8, 1.0).astype(np.float32)

        # ---- offers: ~5% of consenting alive customers, product chosen by propensity + noise
        targeted = np.flatnonzero(alive & consent & (rng.random(n) < 0.05))
        S_t = S[:, targeted].T
        # offers go to sellable products the customer may buy; propensity-led, with noise
        can_buy = (eligible[:, targeted] & (base[:, targeted] > 0)).T
        W_off = (S_t + 0.3 * S_t.mean(axis=1, keepdims=True)) * can_buy
        tot = W_off.sum(axis=1)
        targeted, W_off, tot = targeted[tot > 0], W_off[tot > 0], tot[tot > 0]
        cum = np.cumsum(W_off / tot[:, None], axis=1)
        offer_prod = np.minimum((cum < rng.random(len(targeted))[:, None]).sum(axis=1), P - 1)
        sent_day = np.maximum(a + rng.integers(0, max(1, min(20, b - a)), len(targeted)), w.onboard[targeted] + 1)
        before_exit = sent_day < np.minimum(w.close[targeted], w.winddown[targeted])
        targeted, offer_prod, sent_day = targeted[before_exit], offer_prod[before_exit], sent_day[before_exit]
        t_sent = sent_day * DAY + rng.integers(9 * 3600, 20 * 3600, len(targeted))
        chan = categorical(rng, offer_ch, w.ctype[targeted])
        offered = np.zeros((P, n), dtype=bool)
        offered[offer_prod, targeted] = True
        offer_day_of = np.full(n, -1, dtype=np.int64)
        offer_day_of[targeted] = sent_day

        # ---- intent and adoption
        intent = rng.random((P, n), dtype=np.float32) < np.minimum(8 * S, 0.5)
        prob = S * (0.4 + 12 * intent) * (1 + 5 * offered)
        adopt = rng.random((P, n), dtype=np.float32) < prob
        del prob
        ap, ac = np.nonzero(adopt)
        via = offered[ap, ac]
        day = np.where(via, offer_day_of[ac] + rng.integers(1, 15, len(ac)), rng.integers(a, b, len(ac)))
        day = np.clip(day, np.maximum(a, w.onboard[ac] + 1), min(b, days) - 1)
        ok = day < w.close[ac]
        ac, ap, via, day = ac[ok], ap[ok], via[ok], day[ok]
        via = via & (day > offer_day_of[ac])
        sec = rng.integers(9 * 3600, 21 * 3600, len(ac))
        held[ap, ac] = True
        acc.add(rng, w, ac, ap, day)
        for k, v in (("c", ac), ("prod", ap), ("day", day), ("sec", sec), ("via_offer", via),
                     ("intent", intent[ap, ac])):
            adopt_parts[k].append(v)

        # conversions of this month's offers
        t_conv = np.full(len(targeted), -1, dtype=np.int64)
        conv_of = np.full(n, -1, dtype=np.int64)
        vi = np.flatnonzero(via)
        conv_of[ac[vi]] = day[vi] * DAY + sec[vi]
        hit = conv_of[targeted] >= 0
        hit &= adopt[offer_prod, targeted]
        t_conv[hit] = conv_of[targeted[hit]]
        for k, v in (("c", targeted), ("prod", offer_prod), ("t_sent", t_sent), ("chan", chan), ("t_conv", t_conv)):
            offer_parts[k].append(v)

        # ---- browsing: intent shows up as product views (for customers who research online)
        ip, ic = np.nonzero(intent & alive[None, :])
        seen = rng.random(len(ic)) < digital_p[ic]
        ic, ip = ic[seen], ip[seen]
        adopted_now = adopt[ip, ic] & held[ip, ic]
        lookup = {}
        if len(ac):
            key = ac.astype(np.int64) * len(PRODUCTS) + ap
            order = np.argsort(key)
            lookup = (key[order], day[order], sec[order])
        adopt_day = np.full(len(ic), -1, dtype=np.int64)
        adopt_sec = np.zeros(len(ic), dtype=np.int64)
        if len(ac) and len(ic):
            k2 = ic.astype(np.int64) * len(PRODUCTS) + ip
            pos = np.clip(np.searchsorted(lookup[0], k2), 0, len(lookup[0]) - 1)
            found = adopted_now & (lookup[0][pos] == k2)
            adopt_day[found] = lookup[1][pos[found]]
            adopt_sec[found] = lookup[2][pos[found]]
        nviews = 1 + (rng.random(len(ic)) < 0.4) + (rng.random(len(ic)) < 0.15)
        rc = np.repeat(ic, nviews)
        rp = np.repeat(ip, nviews)
        rad = np.repeat(adopt_day, nviews)
        vday = np.where(rad >= 0, rad - rng.integers(1, 12, len(rc)), rng.integers(a, b, len(rc)))
        vsec = rng.integers(7 * 3600, 23 * 3600, len(rc))
        okv = (vday >= np.maximum(w.onboard[rc], 0)) & (vday < days)
        for k, v in (("c", rc[okv]), ("prod", rp[okv]), ("day", vday[okv]), ("sec", vsec[okv]),
                     ("apply", np.zeros(okv.sum(), dtype=bool))):
            interest_parts[k].append(v)
        # digital applications on the adoption day, shortly before the account opens
        app = np.flatnonzero((adopt_day >= 0) & (rng.random(len(ic)) < 0.6))
        for k, v in (("c", ic[app]), ("prod", ip[app]), ("day", adopt_day[app]),
                     ("sec", np.maximum(adopt_sec[app] - rng.integers(300, 3000, len(app)), 0)),
                     ("apply", np.ones(len(app), dtype=bool))):
            interest_parts[k].append(v)

        # ---- time deposits mature and close (the customer may buy again later)
        cur_acc = acc.arrays()
        td_open = np.flatnonzero(np.isin(cur_acc["p"], TD_PRODUCTS) & (cur_acc["open"] < a))
        closed_already = np.zeros(len(cur_acc["c"]), dtype=bool)
        if td_close:
            closed_already[np.concatenate([x[0] for x in td_close])] = True
        td_open = td_open[~closed_already[td_open]]
        mature = td_open[rng.random(len(td_open)) < 0.04]
        mday = rng.integers(a, b, len(mature))
        td_close.append((mature, mday))
        held[cur_acc["p"][mature], cur_acc["c"][mature]] = False
        del S, intent, adopt, offered, eligible

    # -------------------------------------------------------------- finalize
    finalize_products(w, rng, acc, td_close, wealth, adopt_parts, interest_parts, offer_parts)


def finalize_products(w: World, rng, acc: _Accounts, td_close: list, wealth: np.ndarray, adopt_parts: dict,
                      interest_parts: dict, offer_parts: dict) -> None:
    """Accounts, closings, transaction accounts, adoptions, browsing and offers onto ``w``."""
    n = w.n
    family, ca = w.cat.family, w.cat.current_account
    acc_arr = acc.arrays()
    na = len(acc_arr["c"])
    close = np.full(na, NEVER, dtype=np.int64)
    if td_close:
        close[np.concatenate([x[0] for x in td_close])] = np.concatenate([x[1] for x in td_close])
    # leavers close everything over a few days around their closing day
    cust_close = w.close[acc_arr["c"]].astype(np.int64)
    leaving = cust_close < NEVER
    # (the current account closes last, on the closing day itself)
    lc = cust_close - np.where(acc_arr["p"] == ca, 0, rng.integers(0, 4, na))
    close = np.where(leaving & (lc < close), np.maximum(lc, acc_arr["open"] + 1), close)
    w.acct_cust = acc_arr["c"].astype(np.int32)
    w.acct_prod = acc_arr["p"].astype(np.int16)
    w.acct_open = acc_arr["open"].astype(np.int32)
    w.acct_close = np.minimum(close, NEVER).astype(np.int32)
    w.acct_weight = acc_arr["weight"].astype(np.float32)
    w.acct_amount = acc_arr["amount"]
    w.acct_term = acc_arr["term"].astype(np.int16)
    w.account_ids = fmt.ids("A", scramble(rng.permutation(na), 10**12, (w.seed * 7 + 3) % 10**11 + 987, "account"), 12)
    w.wealth = wealth
    # transaction accounts: the current account and the first credit card
    w.ca_acct = np.full(n, -1, dtype=np.int64)
    is_ca = w.acct_prod == ca
    w.ca_acct[w.acct_cust[is_ca]] = np.flatnonzero(is_ca)
    cc = np.flatnonzero(family[w.acct_prod] == "credit_card")
    cc = cc[np.lexsort((w.acct_open[cc], w.acct_cust[cc]))[::-1]]  # earliest last => wins below
    w.cc_acct = np.full(n, -1, dtype=np.int64)
    w.cc_acct[w.acct_cust[cc]] = cc
    w.loan_accts = np.flatnonzero(np.isin(family[w.acct_prod], ("personal_loan", "mortgage")))

    w.adoptions = {k: np.concatenate(v) for k, v in adopt_parts.items()}
    w.interest = {k: np.concatenate(v) for k, v in interest_parts.items()}
    order = np.lexsort((w.interest["sec"], w.interest["day"]))
    w.interest = {k: v[order] for k, v in w.interest.items()}
    w.offers = _offer_outcomes(w, {k: np.concatenate(v) for k, v in offer_parts.items()})


OUTCOMES = ("sent", "opened", "clicked", "converted", "declined", "bounced")


def _offer_outcomes(w: World, of: dict) -> dict:
    """One row per funnel step: sent -> (bounced | opened -> clicked -> converted/declined)."""
    rng = rng_for(w.seed, "offers")
    n = len(of["c"])
    chan = of["chan"]
    conv = of["t_conv"] >= 0
    bounced = np.isin(chan, [0, 2]) & (rng.random(n) < 0.04) & ~conv
    p_open = np.array([0.35, 0.5, 0.25, 0.9, 0.85])[chan]
    opened = ~bounced & ((rng.random(n) < p_open) | conv)
    clicked = opened & ((rng.random(n) < np.where(np.isin(chan, [3, 4]), 0.5, 0.3)) | conv)
    declined = opened & ~conv & (rng.random(n) < 0.25)
    t_open = of["t_sent"] + rng.integers(60, 2 * DAY, n)
    t_open = np.where(conv, np.minimum(t_open, of["t_conv"] - 120), t_open)
    t_open = np.maximum(t_open, of["t_sent"] + 30)
    t_click = t_open + rng.integers(5, 3600, n)
    t_click = np.where(conv, np.minimum(t_click, of["t_conv"] - 60), t_click)
    t_click = np.maximum(t_click, t_open + 1)
    t_decl = t_click + rng.integers(3600, 10 * DAY, n)
    rows = []
    ix = np.arange(n)
    for code, mask_, t in ((0, np.ones(n, bool), of["t_sent"]), (1, opened, t_open), (2, clicked, t_click),
                           (3, conv, of["t_conv"]), (4, declined, t_decl), (5, bounced, of["t_sent"] + 300)):
        rows.append((ix[mask_], np.full(mask_.sum(), code), t[mask_]))
    offer_ix = np.concatenate([r[0] for r in rows])
    outcome = np.concatenate([r[1] for r in rows])
    t_out = np.concatenate([r[2] for r in rows])
    keep = t_out // DAY < w.cal.days  # steps after as_of have not happened yet
    offer_ix, outcome, t_out = offer_ix[keep], outcome[keep], t_out[keep]
    order = np.lexsort((outcome, offer_ix, t_out))
    return dict(offer=offer_ix[order], outcome=outcome[order], t=t_out[order],
                c=of["c"], prod=of["prod"], t_sent=of["t_sent"], chan=of["chan"], t_conv=of["t_conv"])

"""Other simulated banks ("worlds"): another catalogue, other adoption drivers, and truth.

``demo`` is the original bank (:func:`c360.synth.lifecycle.simulate_products`). The worlds
here sell other products and adopt them for other reasons, so that a recommender can be
judged on more than one kind of bank:

* ``sequence`` (20 products): ownership sequences. Holding product A makes product B
  likely some months after A was opened (a mortgage is followed by home insurance within
  weeks, a classic card by a gold card after about nine months, a savings account by a
  time deposit, then wealth management, then funds...). The driver is visible in the
  holdings history (which products, opened when).
* ``digital`` (16 products): life events and digital interest. A customer enters an
  *interest episode* for a product (more likely after a move for home products, after an
  income rise for investments: both are CRM updates in ``customers``), browses it in the
  app during the episode, and adopts it far more often while the episode lasts. The
  driver is visible in the events (product views, applications) and the customer updates.

Both share the rest of the demo bank (population, service, churn, offers, balances).

Adoption is a hazard model, month by month: a customer-product pair has a monthly hazard
``lam`` (0 when held, not sellable or the customer has left) and adopts within the month
with probability ``1 - exp(-lam)``. After ``as_of`` the same model runs for 30 more days
from the state at ``as_of`` (no campaigns then): the probability of each pair is
:attr:`World.truth_prob`, and the adoptions drawn from it (never delivered as landing
data) are :attr:`World.truth_adoptions`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .lifecycle import FAMILY_RATE, _Accounts, finalize_products
from .population import categorical
from .profiles import TYPES, Catalogue, Product, family_affinity, type_array, type_matrix
from .world import NEVER, World, rng_for

DAY = 86_400
TRUTH_DAYS = 30  # the horizon of the truth after as_of


@dataclass(frozen=True)
class Sequence:
    """Holding ``after`` makes ``then`` likely about ``months`` (sd ``sd``) after ``after`` opened."""

    after: str
    then: str
    months: float
    sd: float
    hazard: float  # monthly hazard added at the peak


@dataclass(frozen=True)
class WorldSpec:
    cat: Catalogue
    factor: dict[str, float]  # product weight within its family (default 1)
    base: float  # multiplier of the demo's family adoption rates (the driver-free hazard)
    sequences: tuple[Sequence, ...] = ()
    # interest episodes (digital world)
    episode_rate: float = 0.0  # monthly hazard of starting an episode at affinity 1
    episode_hazard: float = 0.0  # monthly adoption hazard added during an episode (after its first month)
    episode_first: float = 0.2  # share of that hazard in the episode's first month (still browsing)
    life_events: dict[str, tuple[int, float]] = field(default_factory=dict)  # family -> (crm kind, multiplier)


def _p(code, name, family, risk, lo, hi, active=True) -> Product:
    return Product(code, name, family, risk, lo, hi, active)


SEQUENCE = WorldSpec(
    cat=Catalogue("sequence", (
        _p("AC100", "日常结算账户", "current_account", "R1", 16, 120),
        _p("SV110", "零钱储蓄账户", "savings", "R1", 18, 120),
        _p("SV120", "高息储蓄账户", "savings", "R1", 18, 120),
        _p("TD130", "六个月定期存款", "time_deposit", "R1", 18, 120),
        _p("TD140", "两年期定期存款", "time_deposit", "R1", 18, 120),
        _p("WM200", "稳健理财90天", "wealth_management", "R2", 18, 120),
        _p("WM210", "进取理财一年期", "wealth_management", "R3", 18, 75),
        _p("FD300", "纯债基金", "fund", "R2", 18, 80),
        _p("FD310", "偏股混合基金", "fund", "R4", 18, 75),
        _p("FD320", "宽基指数基金", "fund", "R4", 18, 75),
        _p("IN400", "家庭财产保险", "insurance", "R1", 18, 75),
        _p("IN410", "定期寿险", "insurance", "R1", 18, 60),
        _p("IN420", "百万医疗保险", "insurance", "R1", 18, 65),
        _p("CC500", "标准信用卡", "credit_card", None, 18, 65),
        _p("CC510", "金卡信用卡", "credit_card", None, 22, 70),
        _p("PL600", "消费贷款", "personal_loan", None, 22, 60),
        _p("PL610", "汽车贷款", "personal_loan", None, 22, 60),
        _p("MG700", "住房按揭贷款", "mortgage", None, 22, 65),
        _p("PN800", "个人养老金账户", "pension", "R1", 18, 60),
        _p("GD900", "黄金积存账户", "gold", "R3", 18, 75),
    ), change=("PN800", "max_age", 63), amount_mult={"CC510": 2.0}),
    factor={"SV120": 0.8, "TD140": 0.8, "WM210": 0.8, "FD310": 0.8, "PL610": 0.8, "GD900": 0.8},
    base=0.25,
    sequences=(
        Sequence("AC100", "SV110", 1.5, 0.8, 0.6),
        Sequence("AC100", "CC500", 2.5, 0.8, 0.5),
        Sequence("SV110", "SV120", 6.0, 1.0, 0.5),
        Sequence("SV110", "TD130", 3.0, 1.0, 0.5),
        Sequence("SV120", "TD140", 3.0, 1.0, 0.6),
        Sequence("TD130", "WM200", 5.0, 1.0, 0.6),
        Sequence("TD140", "WM210", 6.0, 1.0, 0.7),
        Sequence("WM200", "FD300", 4.0, 1.0, 0.6),
        Sequence("WM200", "GD900", 7.0, 1.0, 0.5),
        Sequence("FD300", "FD310", 5.0, 1.0, 0.6),
        Sequence("FD300", "FD320", 3.0, 1.0, 0.6),
        Sequence("CC500", "CC510", 9.0, 1.0, 0.5),
        Sequence("CC500", "PL600", 5.0, 1.0, 0.5),
        Sequence("PL600", "PL610", 6.0, 1.0, 0.6),
        Sequence("CC510", "MG700", 8.0, 1.5, 0.5),
        Sequence("MG700", "IN400", 1.5, 0.7, 1.2),
        Sequence("IN400", "IN420", 4.0, 1.0, 0.8),
        Sequence("PL610", "IN410", 2.0, 0.8, 0.9),
        Sequence("IN410", "PN800", 5.0, 1.0, 0.8),
    ),
)

DIGITAL = WorldSpec(
    cat=Catalogue("digital", (
        _p("CUR01", "数字借记账户", "current_account", "R1", 16, 120),
        _p("SAV01", "活期增利宝", "savings", "R1", 18, 120),
        _p("SAV02", "目标储蓄计划", "savings", "R1", 18, 120),
        _p("TDP01", "一年期智能存款", "time_deposit", "R1", 18, 120),
        _p("WMP01", "稳健理财月月享", "wealth_management", "R2", 18, 120),
        _p("WMP02", "积极理财季季盈", "wealth_management", "R3", 18, 75),
        _p("FND01", "债券基金精选", "fund", "R3", 18, 80),
        _p("FND02", "科技主题股票基金", "fund", "R5", 18, 70),
        _p("INS01", "家财安心保", "insurance", "R1", 18, 75),
        _p("INS02", "终身寿险", "insurance", "R2", 25, 60),
        _p("CRD01", "数字信用卡", "credit_card", None, 18, 65),
        _p("CRD02", "旅行白金卡", "credit_card", None, 25, 70),
        _p("LON01", "线上消费贷", "personal_loan", None, 22, 60),
        _p("LON02", "装修贷款", "personal_loan", None, 25, 60),
        _p("HML01", "首套房按揭", "mortgage", None, 22, 60),
        _p("GLD01", "数字黄金", "gold", "R3", 18, 75),
    ), change=("INS02", "max_age", 65), amount_mult={"CRD02": 2.5, "LON02": 1.5}),
    factor={"SAV02": 0.6, "WMP02": 0.7, "FND02": 0.7, "INS02": 0.7, "CRD02": 0.7, "LON02": 0.6},
    base=0.05,
    episode_rate=0.05,
    episode_hazard=0.8,
    episode_first=0.15,
    # CRM update kinds (population.simulate_crm_changes): 0 = move, 1 = income update
    life_events={"mortgage": (0, 12.0), "insurance": (0, 4.0), "personal_loan": (0, 3.0),
                 "wealth_management": (1, 5.0), "fund": (1, 5.0), "gold": (1, 4.0)},
)

WORLDS: dict[str, WorldSpec | None] = {"demo": None, "sequence": SEQUENCE, "digital": DIGITAL}
LIFE_EVENT_DAYS = 60  # a move or an income update drives interest for this many days


class _Model:
    """The world's hazards over (products x customers) and the state they depend on."""

    def __init__(self, w: World, spec: WorldSpec):
        self.w, self.spec, self.cat = w, spec, spec.cat
        prods = self.cat.products
        self.P = len(prods)
        fam = self.cat.family
        fa = family_affinity()
        aff = np.array([[fa[t.name].get(f, 0.0) * spec.factor.get(p.code, 1.0) for p, f in zip(prods, fam)]
                        for t in TYPES])  # (types x P)
        self.aff = aff.T[:, w.ctype].astype(np.float32)  # (P x n)
        self.rate = np.array([FAMILY_RATE.get(f, 0.006) for f in fam], dtype=np.float32)
        self.active = np.array([p.active for p in prods]) & (fam != "current_account")
        self.min_age = np.array([p.min_age for p in prods], dtype=np.float32)
        self.max_age = np.array([p.max_age for p in prods], dtype=np.float32)
        risk = self.cat.risk_digit
        tol = np.maximum(w.risk_now, 1)
        self.suitable = (risk[:, None] <= tol[None, :])  # unrated (credit) products: 0 <= tol
        self.fam = fam
        ix = self.cat.index
        self.seq = [(ix[s.after], ix[s.then], s) for s in spec.sequences]
        self.held = np.zeros((self.P, w.n), dtype=bool)
        self.opened = np.full((self.P, w.n), NEVER, dtype=np.int32)  # last opening day of a held product
        self.episode = np.zeros((self.P, w.n), dtype=np.int8)  # months of interest left
        self.life_mult = np.ones(self.P, dtype=np.float32)

    def eligible(self, age: np.ndarray, day: int) -> np.ndarray:
        """(P x n) sellable and not held, age within the limits on ``day``."""
        max_age = self.max_age.copy()
        if day >= self.w.catalog_resend_day:
            max_age[self.cat.index[self.cat.change[0]]] = self.cat.change[2]
        a = age.astype(np.float32)[None, :]
        return self.active[:, None] & ~self.held & (a >= self.min_age[:, None]) & (a <= max_age[:, None])

    def base(self, age: np.ndarray, day: int, act: np.ndarray) -> np.ndarray:
        """(P x n) monthly hazard without the world's driver (episodes excluded)."""
        w, spec = self.w, self.spec
        lam = self.aff * (self.rate * spec.base)[:, None]
        lam = lam * np.where(self.suitable, np.float32(1.0), np.float32(0.03))
        lam *= self.eligible(age, day)
        lam *= act.astype(np.float32)[None, :]
        fam = self.fam
        lam[fam == "mortgage"] *= np.where((age >= 26) & (age <= 42), 2.0, 0.5).astype(np.float32)
        lam[fam == "pension"] *= np.where((age >= 35) & (age <= 59), 2.0, 0.5).astype(np.float32)
        credit = np.isin(fam, ("credit_card", "personal_loan", "mortgage"))
        lam[credit] *= np.where(w.has_salary, 1.6, 1.0).astype(np.float32)
        if self.seq:
            drive = np.zeros_like(lam)
            for a, b, s in self.seq:
                since = (day - self.opened[a]) / 30.4
                bump = np.exp(-0.5 * ((since - s.months) / s.sd) ** 2) * self.held[a]
                drive[b] += (s.hazard * bump * (0.5 + self.aff[b])).astype(np.float32)
            ok = self.eligible(age, day) & self.suitable
            lam += drive * ok * act.astype(np.float32)[None, :]
        return lam

    def episode_start(self, age: np.ndarray, day: int, act: np.ndarray, moved: np.ndarray,
                      raised: np.ndarray) -> np.ndarray:
        """(P x n) monthly hazard of starting an interest episode (digital world)."""
        spec = self.spec
        if spec.episode_rate == 0:
            return np.zeros((self.P, self.w.n), dtype=np.float32)
        lam = self.aff * np.float32(spec.episode_rate) * self.eligible(age, day) * self.suitable
        lam *= act.astype(np.float32)[None, :]
        for f, (kind, mult) in spec.life_events.items():
            flag = moved if kind == 0 else raised
            lam[self.fam == f] *= np.where(flag, mult, 1.0).astype(np.float32)
        return lam * (self.episode == 0)


def _recent_events(w: World, day: int) -> tuple[np.ndarray, np.ndarray]:
    """Customers with a move / an income update in the ``LIFE_EVENT_DAYS`` before ``day``."""
    ch = w.crm_changes
    moved = np.zeros(w.n, dtype=bool)
    raised = np.zeros(w.n, dtype=bool)
    if len(ch["c"]):
        recent = (ch["day"] < day) & (ch["day"] >= day - LIFE_EVENT_DAYS)
        moved[ch["c"][recent & (ch["kind"] == 0)]] = True
        raised[ch["c"][recent & (ch["kind"] == 1)]] = True
    return moved, raised


def simulate_world_products(w: World, spec: WorldSpec) -> None:
    """Initial holdings, month-by-month adoption by the world's drivers, then the truth of
    the 30 days after as_of (see the module docstring)."""
    rng = rng_for(w.seed, "lifecycle")
    cal, n = w.cal, w.n
    days = cal.days
    w.cat = spec.cat
    m = _Model(w, spec)
    P = m.P
    ca = spec.cat.current_account
    acc = _Accounts()
    all_c = np.arange(n)

    # ---------------------------------------------------------- initial holdings
    m.held[ca] = True
    m.opened[ca] = w.onboard
    acc.add(rng, w, all_c, np.full(n, ca), w.onboard)
    existing = w.onboard < 0
    age0 = w.age_years(all_c, 0)
    for p in range(P):
        if p == ca:
            continue
        ok = (age0 >= m.min_age[p]) & (age0 <= m.max_age[p]) & m.suitable[p]
        prob = m.aff[p] * 0.45 * ok * (1.0 if spec.cat.products[p].active else 0.5)
        c = np.flatnonzero(existing & (rng.random(n) < prob))
        on = w.onboard[c].astype(np.int64)
        open_day = np.minimum(on + (rng.random(len(c)) * (-on)).astype(np.int64), -1)
        # many openings are recent, so the sequences are under way when the history starts
        open_day = np.maximum(open_day, -1 - rng.exponential(365, len(c)).astype(np.int64))
        acc.add(rng, w, c, np.full(len(c), p), open_day)
        m.held[p, c] = True
        m.opened[p, c] = open_day

    # ------------------------------------------------------------- wealth path
    M = len(cal.months)
    wealth = np.zeros((n, M), dtype=np.float32)
    w0 = w.income * type_array("wealth_multiple")[w.ctype] * rng.lognormal(0, 0.6, n)
    growth = type_array("monthly_growth")[w.ctype] + rng.normal(0, 0.01, n)
    w.growth = growth.astype(np.float32)
    digital_p = type_array("digital_p")[w.ctype]
    view_p = 0.5 + 0.5 * digital_p  # share of an episode's months with app views
    offer_ch = type_matrix("offer_channels")

    adopt_parts = {k: [] for k in ("c", "prod", "day", "sec", "via_offer", "intent")}
    interest_parts = {k: [] for k in ("c", "prod", "day", "sec", "apply")}
    offer_parts = {k: [] for k in ("c", "prod", "t_sent", "chan", "t_conv")}

    prev_w = w0
    for mi, (_, a, b) in enumerate(cal.months):
        mid = (a + b) // 2
        scale = np.float32((b - a) / 30.4)
        shock = rng.normal(0, 0.03, n)
        cur = prev_w * (1 + growth + shock)
        cur = np.where(mid >= w.winddown, prev_w * 0.55, cur)
        cur = np.where(mid >= w.close, 0.0, cur)
        cur = np.maximum(cur, 0.0)
        wealth[:, mi] = cur
        prev_w = cur
        act = w.activity(all_c, np.full(n, mid))
        alive = (act > 0.05) & (w.onboard < b - 1)
        act = act * alive
        age = w.age_years(all_c, mid)
        consent = w.consent_by_month[mi] & (w.consent_by_month[mi - 1] if mi else True)

        lam = m.base(age, a, act) * scale
        moved, raised = _recent_events(w, a)
        start = m.episode_start(age, a, act, moved, raised) * scale
        new_ep = rng.random((P, n), dtype=np.float32) < (1 - np.exp(-start))
        dur = 2 + (rng.random((P, n), dtype=np.float32) < 0.6) + (rng.random((P, n), dtype=np.float32) < 0.3)
        m.episode = np.where(new_ep, dur, m.episode).astype(np.int8)
        in_ep = (m.episode > 0) & m.eligible(age, a)
        strength = np.where(new_ep, np.float32(spec.episode_first), np.float32(1.0))
        lam = lam + np.float32(spec.episode_hazard) * scale * in_ep * strength * act.astype(np.float32)[None, :]

        # ---- offers: ~5% of consenting alive customers, product led by the hazard + noise
        targeted = np.flatnonzero(alive & consent & (rng.random(n) < 0.05))
        L_t = lam[:, targeted].T
        can_buy = (m.eligible(age, a)[:, targeted] & m.suitable[:, targeted]).T
        W_off = (L_t + 0.3 * L_t.mean(axis=1, keepdims=True) + 1e-6) * can_buy
        tot = W_off.sum(axis=1)
        keep = tot > 0
        targeted, W_off, tot = targeted[keep], W_off[keep], tot[keep]
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

        # ---- adoption
        lam = lam * np.where(offered, np.float32(3.0), np.float32(1.0))
        adopt = rng.random((P, n), dtype=np.float32) < (1 - np.exp(-lam))
        ap, ac = np.nonzero(adopt)
        via = offered[ap, ac]
        day = np.where(via, offer_day_of[ac] + rng.integers(1, 15, len(ac)), rng.integers(a, b, len(ac)))
        day = np.clip(day, np.maximum(a, w.onboard[ac] + 1), min(b, days) - 1)
        ok = day < w.close[ac]
        ac, ap, via, day = ac[ok], ap[ok], via[ok], day[ok]
        via = via & (day > offer_day_of[ac])
        sec = rng.integers(9 * 3600, 21 * 3600, len(ac))
        m.held[ap, ac] = True
        m.opened[ap, ac] = day
        acc.add(rng, w, ac, ap, day)
        for k, v in (("c", ac), ("prod", ap), ("day", day), ("sec", sec), ("via_offer", via),
                     ("intent", in_ep[ap, ac])):
            adopt_parts[k].append(v)
        t_conv = np.full(len(targeted), -1, dtype=np.int64)
        conv_of = np.full(n, -1, dtype=np.int64)
        vi = np.flatnonzero(via)
        conv_of[ac[vi]] = day[vi] * DAY + sec[vi]
        hit = (conv_of[targeted] >= 0) & adopt[offer_prod, targeted]
        t_conv[hit] = conv_of[targeted[hit]]
        for k, v in (("c", targeted), ("prod", offer_prod), ("t_sent", t_sent), ("chan", chan), ("t_conv", t_conv)):
            offer_parts[k].append(v)

        # ---- browsing: episodes show up as product views; buyers often research first
        adopt_day = np.full((P, n), -1, dtype=np.int64)
        adopt_day[ap, ac] = day
        adopt_sec = np.zeros((P, n), dtype=np.int64)
        adopt_sec[ap, ac] = sec
        ep_p, ep_c = np.nonzero(in_ep & alive[None, :])
        seen = rng.random(len(ep_c)) < view_p[ep_c]
        buy_p, buy_c = ap, ac
        buy_seen = (rng.random(len(buy_c)) < digital_p[buy_c]) & ~in_ep[buy_p, buy_c]
        ic = np.concatenate([ep_c[seen], buy_c[buy_seen]])
        ip = np.concatenate([ep_p[seen], buy_p[buy_seen]])
        nviews = 1 + (rng.random(len(ic)) < 0.5) + (rng.random(len(ic)) < 0.25)
        rc, rp = np.repeat(ic, nviews), np.repeat(ip, nviews)
        rad = adopt_day[rp, rc]
        vday = np.where(rad >= 0, rad - rng.integers(1, 12, len(rc)), rng.integers(a, b, len(rc)))
        vsec = rng.integers(7 * 3600, 23 * 3600, len(rc))
        okv = (vday >= np.maximum(w.onboard[rc], 0)) & (vday < days)
        for k, v in (("c", rc[okv]), ("prod", rp[okv]), ("day", vday[okv]), ("sec", vsec[okv]),
                     ("apply", np.zeros(okv.sum(), dtype=bool))):
            interest_parts[k].append(v)
        app = np.flatnonzero((adopt_day[ip, ic] >= 0) & (rng.random(len(ic)) < 0.6))
        app_day = adopt_day[ip[app], ic[app]]
        app_sec = np.maximum(adopt_sec[ip[app], ic[app]] - rng.integers(300, 3000, len(app)), 0)
        for k, v in (("c", ic[app]), ("prod", ip[app]), ("day", app_day), ("sec", app_sec),
                     ("apply", np.ones(len(app), dtype=bool))):
            interest_parts[k].append(v)
        # episodes end with the purchase or when their months run out
        m.episode = np.where(m.held, 0, np.maximum(m.episode - 1, 0)).astype(np.int8)
        del lam, adopt, offered, adopt_day, adopt_sec

    finalize_products(w, rng, acc, [], wealth, adopt_parts, interest_parts, offer_parts)
    _truth(w, m)


def _truth(w: World, m: _Model) -> None:
    """The true 30-day adoption probability of every pair after as_of, and a draw of it.

    Same hazards as the history, from the state at the end of as_of, for the 30 days
    after it, without campaigns. A pair outside an interest episode may start one within
    the 30 days: its probability is the mixture
    ``1 - exp(-lam0) * (1 - q + q * exp(-f * h))`` (``q``: chance to start one, ``h``: the
    episode's hazard, ``f``: its share in a first month); the draw first decides the
    episode, then the adoption, so its expectation is exactly that probability.
    """
    rng = rng_for(w.seed, "truth")
    n, H = w.n, w.cal.days
    all_c = np.arange(n)
    mid = H + TRUTH_DAYS // 2
    act = w.activity(all_c, np.full(n, mid))
    alive = (act > 0.05) & (w.onboard < H)
    act = act * alive
    age = w.age_years(all_c, mid)
    scale = np.float32(TRUTH_DAYS / 30.4)
    lam0 = m.base(age, H, act) * scale
    moved, raised = _recent_events(w, H)
    q = 1 - np.exp(-m.episode_start(age, H, act, moved, raised) * scale)
    eligible = m.eligible(age, H)
    h = np.float32(m.spec.episode_hazard) * scale * eligible * act.astype(np.float32)[None, :]
    on = m.episode > 0
    first = np.float32(m.spec.episode_first)
    stay = np.exp(-lam0) * np.where(on, np.exp(-h), 1 - q + q * np.exp(-first * h))
    prob = (1 - stay).astype(np.float32)
    w.truth_prob = np.where(eligible, prob, np.float32(0.0))
    w.truth_eligible = eligible & m.suitable & alive[None, :]
    starts = ~on & (rng.random(q.shape, dtype=np.float32) < q)
    lam = lam0 + h * np.where(on, np.float32(1.0), first * starts)
    adopt = (rng.random(lam.shape, dtype=np.float32) < (1 - np.exp(-lam))) & eligible
    ap, ac = np.nonzero(adopt)
    w.truth_adoptions = {"c": ac, "prod": ap, "day": H + rng.integers(0, TRUTH_DAYS, len(ac))}


__all__ = ["WORLDS", "WorldSpec", "simulate_world_products", "TRUTH_DAYS"]

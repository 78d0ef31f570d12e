"""Customers: latent types, demographics, CRM master data and its changes over time."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import fmt
from .fmt import Calendar
from .profiles import TYPES, occupation_matrix, type_array, type_matrix
from .vocab import (
    BRANCHES_PER_TIER,
    CITIES,
    CN_GIVEN_FEMALE,
    CN_GIVEN_MALE,
    CN_SURNAMES,
    EMAIL_DOMAINS,
    EMPLOYER_PREFIX,
    EMPLOYER_SUFFIX,
    EN_FIRST_FEMALE,
    EN_FIRST_MALE,
    EN_LAST,
    OCCUPATIONS,
)
from .world import NEVER, World, rng_for, scramble

CITY_TIER = np.array([c[1] for c in CITIES])
TIER_INCOME = {1: 1.30, 2: 1.00, 3: 0.75}
KYC = ("verified", "pending", "expired")
PHONE_PREFIXES = np.array([130, 131, 132, 133, 135, 136, 137, 138, 139, 150, 151, 152, 153, 155,
                           156, 157, 158, 159, 166, 170, 173, 176, 177, 178, 180, 181, 182, 183,
                           185, 186, 187, 188, 189, 191, 198, 199])
ID_WEIGHTS = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2])
ID_CHECK = np.array(list("10X98765432"))


def categorical(rng: np.random.Generator, probs: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """One draw per element from row-specific categorical distributions.

    probs: (k x m) matrix of weights; rows: which row to use for each draw. Inverse-CDF
    sampling in one ``searchsorted``: row r's cumulative distribution is shifted to
    (r, r + 1], so all rows form a single increasing array.
    """
    k, m = probs.shape
    cum = np.cumsum(probs, axis=1, dtype=np.float64)
    cum = cum / np.where(cum[:, -1:] > 0, cum[:, -1:], 1.0)
    cum[:, -1] = 1.0
    flat = (cum + np.arange(k)[:, None]).ravel()
    rows = np.asarray(rows, dtype=np.int64)
    u = rng.random(len(rows))
    idx = np.searchsorted(flat, rows + u, side="right") - rows * m
    return np.clip(idx, 0, m - 1)


def build_branches(seed: int):
    rng = rng_for(seed, "population", 99)
    city, ids = [], []
    for ci, (_, tier, _) in enumerate(CITIES):
        for k in range(BRANCHES_PER_TIER[tier]):
            city.append(ci)
            ids.append(f"BR{ci + 1:02d}{k + 1:02d}")
    city = np.array(city)
    # Some branches are chronically slow (understaffed): waits x2.2.
    slow = np.where(rng.random(len(city)) < 0.15, 2.2, 1.0) * rng.lognormal(0, 0.15, len(city))
    return pa.array(ids), city, slow


def build_population(cal: Calendar, n: int, seed: int) -> World:
    rng = rng_for(seed, "population")
    days = cal.days
    shares = type_array("share")
    ctype = rng.choice(len(TYPES), size=n, p=shares / shares.sum()).astype(np.int8)

    # Age at day 0.
    age_par = np.array([t.age for t in TYPES], dtype=np.float64)
    years = rng.normal(age_par[ctype, 0], age_par[ctype, 1])
    years = np.clip(years, age_par[ctype, 2], age_par[ctype, 3])
    age_days = (years * 365.25 + rng.random(n) * 365).astype(np.int32)

    gender = np.where(rng.random(n) < 0.5, 1, 0).astype(np.int8)
    gender[rng.random(n) < 0.01] = 2

    # City by tier preference, home branch in the city.
    tier = categorical(rng, type_matrix("tier_p"), ctype) + 1
    city = np.empty(n, dtype=np.int16)
    for t in (1, 2, 3):
        cities_t = np.flatnonzero(CITY_TIER == t)
        sel = tier == t
        city[sel] = cities_t[rng.integers(0, len(cities_t), sel.sum())]
    branch_ids, branch_city, branch_slow = build_branches(seed)
    first_branch = np.searchsorted(branch_city, np.arange(len(CITIES)))
    n_branch = np.bincount(branch_city, minlength=len(CITIES))
    branch = (first_branch[city] + (rng.random(n) * n_branch[city]).astype(np.int64)).astype(np.int32)

    tier_factor = np.array([TIER_INCOME[t] for t in (1, 2, 3)])[tier - 1]
    med = type_array("income_median")[ctype]
    income = med * tier_factor * rng.lognormal(0, type_array("income_sigma")[ctype])
    income = np.round(income / 100) * 100

    # Onboarding: most customers joined years ago; a share joins during the history.
    new_share = min(0.30, 0.08 * days / 365)
    is_new = rng.random(n) < new_share
    tenure_days = np.minimum(rng.exponential(6 * 365, n), np.maximum(age_days - 18 * 365, 30))
    onboard = np.where(is_new, rng.integers(0, days, n), -1 - tenure_days.astype(np.int64)).astype(np.int32)
    onboard = np.maximum(onboard, cal.min_day + 1)

    # Risk tolerance from the suitability questionnaire; older people are capped at R2.
    risk = (categorical(rng, type_matrix("risk_p"), ctype) + 1).astype(np.int8)
    risk = np.where(years > 65, np.minimum(risk, 2), risk).astype(np.int8)
    risk[rng.random(n) < 0.05] = 0  # no valid assessment

    consent = rng.random(n) < 0.80
    lang_en = rng.random(n) < type_array("en_p")[ctype]
    has_salary = rng.random(n) < type_array("salary_p")[ctype]
    employers = pa.array([p + s for p in EMPLOYER_PREFIX for s in EMPLOYER_SUFFIX])
    employer = rng.integers(0, len(employers), n).astype(np.int32)
    payday = rng.choice(np.array([5, 10, 15, 20, 25, 28]), n).astype(np.int8)
    digital = type_array("digital_p")[ctype]
    n_devices = (1 + rng.binomial(2, 0.45 * digital)).astype(np.int8)
    level = rng.lognormal(-0.125, 0.5, n).astype(np.float32)  # mean ~1
    satisfaction = np.clip(type_array("satisfaction")[ctype] + rng.normal(0, 0.08, n), 0.2, 0.98)

    customer_ids = fmt.ids("C", scramble(rng_for(seed, "population", 1).permutation(n), 10**10, seed % 10**9 + 12345, "customer"), 10)
    world = World(
        cal=cal, seed=seed, n=n, ctype=ctype, age_days=age_days, gender=gender, income=income,
        city=city, branch=branch, onboard=onboard, risk=risk, consent=consent, lang_en=lang_en,
        has_salary=has_salary, employer=employer, payday=payday, n_devices=n_devices,
        level=level, satisfaction=satisfaction.astype(np.float32),
        winddown=np.full(n, NEVER, np.int32), close=np.full(n, NEVER, np.int32),
        dormant=np.full(n, NEVER, np.int32), customer_ids=customer_ids,
        branch_ids=branch_ids, branch_city=branch_city, branch_slow=branch_slow, employers=employers,
    )
    world.occupation = categorical(rng, occupation_matrix(), ctype).astype(np.int16)
    world.kyc = np.where(rng.random(n) < 0.94, 0, np.where(rng.random(n) < 0.5, 1, 2)).astype(np.int8)
    world.phone = PHONE_PREFIXES[rng.integers(0, len(PHONE_PREFIXES), n)] * 10**8 + rng.integers(0, 10**8, n)
    world.email_no = rng.integers(0, len(EMAIL_DOMAINS) * 10**7, n)
    world.name_a = rng.integers(0, 1 << 30, n)  # raw draws for names, resolved in names()
    world.name_b = rng.integers(0, 1 << 30, n)
    world.id_seq = rng.integers(0, 500, n)
    world.english_name = lang_en | (rng.random(n) < 0.01)
    world.device_perm = rng_for(seed, "population", 2).permutation(3 * n)  # device numbering
    return world


# ----------------------------------------------------------------- PII rendering
def names(w: World, c: np.ndarray) -> pa.Array:
    """Chinese names for most customers, English names for English speakers and a few more."""
    a, b, g = w.name_a[c], w.name_b[c], w.gender[c]
    male = g == 0
    sur = fmt.pick(CN_SURNAMES, a % len(CN_SURNAMES))
    given = pc.if_else(pa.array(male), fmt.pick(CN_GIVEN_MALE, b % len(CN_GIVEN_MALE)),
                       fmt.pick(CN_GIVEN_FEMALE, b % len(CN_GIVEN_FEMALE)))
    cn = pc.binary_join_element_wise(sur, given, "")
    first = pc.if_else(pa.array(male), fmt.pick(EN_FIRST_MALE, b % len(EN_FIRST_MALE)),
                       fmt.pick(EN_FIRST_FEMALE, b % len(EN_FIRST_FEMALE)))
    en = pc.binary_join_element_wise(first, fmt.pick(EN_LAST, a % len(EN_LAST)), " ")
    return pc.if_else(pa.array(w.english_name[c]), en, cn)


def national_ids(w: World, c: np.ndarray) -> pa.Array:
    """18-character ids: region(6) + birth date(8) + sequence(3, odd = male) + check digit."""
    region = np.array([int(x[2]) for x in CITIES], dtype=np.int64)[w.city[c]]
    birth = np.datetime64(w.cal.start.isoformat(), "D") - w.age_days[c].astype("timedelta64[D]")
    ymd_num = fmt.ymd_int(birth)
    seq = w.id_seq[c] * 2 + np.where(w.gender[c] == 1, 0, 1)  # odd for men, even for women
    body = region * 10**11 + ymd_num * 10**3 + seq  # 17 digits
    digits = (body[:, None] // (10 ** np.arange(16, -1, -1))) % 10
    check = ID_CHECK[(digits * ID_WEIGHTS).sum(axis=1) % 11]
    return pc.binary_join_element_wise(fmt.ints(body), pa.array(check), "")


def emails(w: World, c: np.ndarray, version: np.ndarray | None = None) -> pa.Array:
    no = w.email_no[c] if version is None else (w.email_no[c] + version * 7919) % (len(EMAIL_DOMAINS) * 10**7)
    local = pc.binary_join_element_wise("u", fmt.ints(no % 10**7 + 10**7), "")
    return pc.binary_join_element_wise(local, fmt.pick(EMAIL_DOMAINS, no // 10**7), "@")


def customer_rows(w: World, c: np.ndarray, upd_day: np.ndarray, upd_sec: np.ndarray,
                  state: dict | None = None) -> dict:
    """Column strings of customer rows (initial state, or the changed ``state`` values)."""
    s = state or {}
    city = s.get("city", w.city[c])
    branch = s.get("branch", w.branch[c])
    income = s.get("income", w.income[c])
    risk = s.get("risk", w.risk[c])
    consent = s.get("consent", w.consent[c])
    phone = s.get("phone", w.phone[c])
    birth = np.datetime64(w.cal.start.isoformat(), "D") - w.age_days[c].astype("timedelta64[D]")
    return {
        "customer_id": w.customer_ids.take(pa.array(c)),
        "full_name": names(w, c),
        "national_id": national_ids(w, c),
        "phone": fmt.ints(phone),
        "email": emails(w, c, s.get("email_version")),
        "birth_date": pa.array(np.datetime_as_string(birth, unit="D")),
        "gender": fmt.pick(("M", "F", "U"), w.gender[c]),
        "occupation": fmt.pick(OCCUPATIONS, w.occupation[c]),
        "annual_income": fmt.money(np.round(income * 100).astype(np.int64)),
        "city": fmt.pick([x[0] for x in CITIES], city),
        "home_branch_id": w.branch_ids.take(pa.array(branch)),
        "onboarding_date": w.cal.dates(w.onboard[c]),
        "risk_tolerance": fmt.mask(fmt.pick(("R1", "R1", "R2", "R3", "R4", "R5"), risk), risk == 0),
        "kyc_status": fmt.pick(KYC, w.kyc[c]),
        "marketing_consent": fmt.bools(consent),
        "preferred_language": fmt.pick(("zh", "en"), w.lang_en[c].astype(np.int64)),
        "updated_at": w.cal.timestamps(upd_day, upd_sec),
    }


def simulate_crm_changes(w: World) -> None:
    """Monthly CRM changes (moves, income updates, risk re-assessment, consent, phone).

    The current state evolves month by month (later phases read it, e.g. consent for
    offers); each change emits a full customer row with a later ``updated_at``.
    """
    rng = rng_for(w.seed, "crm")
    cal = w.cal
    state = {
        "city": w.city.copy(), "branch": w.branch.copy(), "income": w.income.copy(),
        "risk": w.risk.copy(), "consent": w.consent.copy(), "phone": w.phone.copy(),
        "email_version": np.zeros(w.n, dtype=np.int64),
    }
    first_branch = np.searchsorted(w.branch_city, np.arange(len(CITIES)))
    n_branch = np.bincount(w.branch_city, minlength=len(CITIES))
    out = {k: [] for k in ("c", "day", "sec", "kind", *state)}
    w.consent_by_month = []
    kinds = ("move", "income", "risk", "consent", "contact")
    kind_p = np.array([0.15, 0.30, 0.20, 0.15, 0.20])
    for _, a, b in cal.months:
        mid = (a + b) // 2
        alive = (w.onboard < a) & (w.close > mid) & (w.dormant > mid)
        p = 0.015 * (b - a) / 30
        c = np.flatnonzero(alive & (rng.random(w.n) < p))
        k = rng.choice(len(kinds), size=len(c), p=kind_p)
        day = rng.integers(a, b, len(c))
        sec = rng.integers(8 * 3600, 22 * 3600, len(c))
        # apply the changes to the current state
        mv = c[k == 0]
        newcity = rng.integers(0, len(CITIES), len(mv))
        state["city"][mv] = newcity
        state["branch"][mv] = first_branch[newcity] + (rng.random(len(mv)) * n_branch[newcity]).astype(np.int64)
        inc = c[k == 1]
        state["income"][inc] = np.round(state["income"][inc] * rng.lognormal(0.04, 0.10, len(inc)) / 100) * 100
        rk = c[k == 2]
        old = state["risk"][rk].astype(np.int64)
        new = np.where(old == 0, rng.integers(1, 4, len(rk)), np.clip(old + rng.choice([-1, 1], len(rk)), 1, 5))
        state["risk"][rk] = new
        cs = c[k == 3]
        state["consent"][cs] = ~state["consent"][cs]
        ct = c[k == 4]
        state["phone"][ct] = PHONE_PREFIXES[rng.integers(0, len(PHONE_PREFIXES), len(ct))] * 10**8 + rng.integers(0, 10**8, len(ct))
        state["email_version"][ct] += 1
        out["c"].append(c)
        out["day"].append(day)
        out["sec"].append(sec)
        out["kind"].append(k)
        for key in state:
            out[key].append(state[key][c].copy())
        # the consent effective for this month's offers
        w.consent_by_month.append(state["consent"].copy())
    w.crm_changes = {k: (np.concatenate(v) if v else np.array([], dtype=np.int64)) for k, v in out.items()}
    w.risk_now = state["risk"]

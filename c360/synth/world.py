"""The simulated bank at customer level (phase 1 of generation).

Phase 1 decides *what happens* to every customer over the whole history, vectorised over
customers and looping only over months: who they are (population), their service
experience (interactions, complaints, surveys), whether they wind down and leave, which
products they hold and adopt and why (life stage, balance growth, salary, browsing intent,
offers), and their deposit wealth month by month. The result is a ``World``: plain numpy
arrays plus a few small pyarrow string arrays.

Phase 2 (``activity.py``) then renders the high-volume sources (transactions, digital
events, holdings snapshots) month by month from the World, which is cheap to share with
worker processes because they are forked after it is built.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from .fmt import Calendar
from .profiles import DEMO_CATALOGUE, Catalogue

NEVER = np.int32(10**8)  # "no such day" (not churning, never closed, ...)

# Independent random streams. A stream is seeded with (seed, stream id[, month]) so that
# adding draws in one part of the generator does not shift any other part.
STREAMS = {
    "population": 1, "service": 2, "churn": 3, "lifecycle": 4, "crm": 5, "offers": 6,
    "txn": 11, "events": 12, "holdings": 13, "defects": 21, "files": 22, "truth": 31,
    "contact": 41,
}


def rng_for(seed: int, stream: str, *extra: int) -> np.random.Generator:
    return np.random.default_rng([seed, STREAMS[stream], *extra])


def stable_hash(text: str) -> int:
    return zlib.crc32(text.encode("utf-8"))


# Multipliers for scramble(), one per kind of id (odd, not multiples of 5: coprime with 10^k).
ID_MULT = {"customer": 2_654_435_761, "account": 3_266_489_917, "device": 2_246_822_519}


def scramble(numbers: np.ndarray, modulus: int, salt: int, kind: str) -> np.ndarray:
    """A bijection of [0, modulus) that makes sequential ids look random (and stay unique).

    ``(x + salt) * mult mod 10^k`` is a permutation because ``mult`` is coprime with
    ``10^k``; different id kinds use different multipliers so ids do not echo each other.
    """
    x = (np.asarray(numbers, dtype=np.int64) + salt) % modulus
    # the product may exceed int64: split the multiplier into two halves
    hi, lo = divmod(ID_MULT[kind], 1 << 16)
    return ((x * hi % modulus) * (1 << 16) % modulus + x * lo) % modulus


@dataclass
class World:
    """Everything phase 2 needs, indexed by customer (c) or account (a) number."""

    cal: Calendar
    seed: int
    n: int
    # ---- customers (state at the start of the history / at onboarding)
    ctype: np.ndarray  # int8 latent type
    age_days: np.ndarray  # int32 age in days at day 0
    gender: np.ndarray  # int8 0=M 1=F 2=U
    income: np.ndarray  # float64 annual income at onboarding
    city: np.ndarray  # int16
    branch: np.ndarray  # int32 home branch
    onboard: np.ndarray  # int32 onboarding day index (negative = before the history)
    risk: np.ndarray  # int8 0 = not assessed, 1..5 = R1..R5
    consent: np.ndarray  # bool marketing consent
    lang_en: np.ndarray  # bool
    has_salary: np.ndarray  # bool
    employer: np.ndarray  # int32
    payday: np.ndarray  # int8 day of month of payroll
    n_devices: np.ndarray  # int8
    level: np.ndarray  # float32 individual activity multiplier (mean 1)
    satisfaction: np.ndarray  # float32 baseline satisfaction 0..1
    # ---- fate
    winddown: np.ndarray  # int32 day the customer starts to leave (NEVER if not)
    close: np.ndarray  # int32 day all accounts are closed (NEVER if not)
    dormant: np.ndarray  # int32 day activity stops without closing (NEVER if not)
    # ---- ids
    customer_ids: pa.Array  # string per customer
    branch_ids: pa.Array  # string per branch
    branch_city: np.ndarray
    branch_slow: np.ndarray
    employers: pa.Array
    # ---- accounts
    acct_cust: np.ndarray = field(default=None)  # int32
    acct_prod: np.ndarray = field(default=None)  # int16
    acct_open: np.ndarray = field(default=None)  # int32 day
    acct_close: np.ndarray = field(default=None)  # int32 day or NEVER
    acct_weight: np.ndarray = field(default=None)  # float32 share weight of asset accounts
    acct_amount: np.ndarray = field(default=None)  # float64 credit limit / principal (CNY)
    acct_term: np.ndarray = field(default=None)  # int16 loan term in months
    account_ids: pa.Array = field(default=None)
    wealth: np.ndarray = field(default=None)  # float32 (customers x months) deposit wealth
    ca_acct: np.ndarray = field(default=None)  # int32 current account of each customer
    cc_acct: np.ndarray = field(default=None)  # int32 first credit card (-1 if none)
    # ---- browsing intent and applications seen digitally: (cust, prod, day, sec, apply)
    interest: dict = field(default_factory=dict)
    # ---- truth of adoptions (cust, prod, day, via_offer, intent)
    adoptions: dict = field(default_factory=dict)
    # ---- small sources produced in phase 1 (dict of column arrays, ready to format)
    offers: dict = field(default_factory=dict)
    interactions: dict = field(default_factory=dict)
    complaints: dict = field(default_factory=dict)
    feedback: dict = field(default_factory=dict)
    crm_changes: dict = field(default_factory=dict)
    catalog_resend_day: int = 0
    # ---- further per-customer attributes (set by population.build_population)
    occupation: np.ndarray = field(default=None)  # int16 index into vocab.OCCUPATIONS
    kyc: np.ndarray = field(default=None)  # int8 0 verified, 1 pending, 2 expired
    phone: np.ndarray = field(default=None)  # int64 11-digit mobile number
    email_no: np.ndarray = field(default=None)  # int64 mailbox number and domain
    name_a: np.ndarray = field(default=None)  # raw draws resolved into names by population.names
    name_b: np.ndarray = field(default=None)
    id_seq: np.ndarray = field(default=None)  # national id sequence number
    english_name: np.ndarray = field(default=None)  # bool
    device_perm: np.ndarray = field(default=None)  # permutation numbering devices (3 per customer)
    # ---- set by later phase-1 steps
    consent_by_month: list = field(default_factory=list)  # marketing consent after each month's changes
    risk_now: np.ndarray = field(default=None)  # risk tolerance at the end of the history
    growth: np.ndarray = field(default=None)  # float32 monthly wealth drift
    loan_accts: np.ndarray = field(default=None)  # account indices of loans and mortgages
    # ---- the world simulated (products sold, adoption drivers) and its truth after as_of
    cat: Catalogue = field(default=DEMO_CATALOGUE)
    world: str = "demo"
    # (P x n) float32 true probability of adopting each product in the 30 days after as_of
    # (0 where not eligible), the eligibility mask and the adoptions drawn from it
    truth_prob: np.ndarray = field(default=None)
    truth_eligible: np.ndarray = field(default=None)
    truth_adoptions: dict = field(default_factory=dict)  # c, prod, day (day index after as_of: H..H+29)

    # ------------------------------------------------------------------ helpers
    def activity(self, c: np.ndarray, day: np.ndarray) -> np.ndarray:
        """Relative activity of customers c on days (0 before onboarding / after closing).

        Churners wind down linearly from 100% to 10% between ``winddown`` and ``close``;
        dormant customers keep 3%.
        """
        day = np.asarray(day, dtype=np.int64)
        on = self.onboard[c]
        wd = self.winddown[c].astype(np.int64)
        cl = self.close[c].astype(np.int64)
        span = np.maximum(cl - wd, 1)
        frac = np.clip((day - wd) / span, 0.0, 1.0)
        a = 1.0 - 0.9 * frac
        a = np.where(day < on, 0.0, a)
        a = np.where(day >= cl, 0.0, a)
        a = np.where(day >= self.dormant[c], 0.03, a)
        return a

    def digital_activity(self, c: np.ndarray, day: np.ndarray) -> np.ndarray:
        """Digital engagement falls faster than payments for leavers (logins stop first)."""
        a = self.activity(c, day)
        winding = np.asarray(day) >= self.winddown[c]
        return np.where(winding, a**3, a)

    def age_years(self, c: np.ndarray, day) -> np.ndarray:
        return (self.age_days[c] + np.asarray(day)) / 365.25
